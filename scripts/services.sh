#!/usr/bin/env bash
# Brings up the servers that the cluster deployment and the integration tests need: MariaDB
# (or MySQL), Redis and a single-node Apache Kafka broker in KRaft mode.
#
#   scripts/services.sh up       use what answers, start what is installed but stopped,
#                                install what is missing (Debian packages; Kafka jars from
#                                Maven Central), then apply the schema (scripts/migrate.sh)
#   scripts/services.sh down     stop what `up` started, and nothing else
#   scripts/services.sh status   say what runs where (exit status 0 only if all answer)
#
# Every host, port and credential comes from a BALANCED_* environment variable with a
# default (see docs/operations.md). A server that already answers is used as it is and is
# never stopped by `down`: the state file in the cache folder remembers what `up` started.
# Running `up` twice is harmless; concurrent runs wait for each other (flock).
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_dir=${BALANCED_CACHE_DIR:-$repo_dir/.cache}
state_dir=$cache_dir/services
state_file=$state_dir/state

mysql_host=${BALANCED_MYSQL_HOST:-127.0.0.1}
mysql_port=${BALANCED_MYSQL_PORT:-3306}
redis_host=${BALANCED_REDIS_HOST:-127.0.0.1}
redis_port=${BALANCED_REDIS_PORT:-6379}
kafka_bootstrap=${BALANCED_KAFKA_BOOTSTRAP:-127.0.0.1:9092}
kafka_host=${kafka_bootstrap%:*}
kafka_port=${kafka_bootstrap##*:}
kafka_controller_port=${BALANCED_KAFKA_CONTROLLER_PORT:-9093}
kafka_heap=${BALANCED_KAFKA_HEAP:--Xms512m -Xmx1g}
kafka_start_timeout_s=${BALANCED_KAFKA_START_TIMEOUT:-180}
server_start_timeout_s=60

kafka_template_dir=$repo_dir/scripts/kafka
kafka_dir=$cache_dir/kafka
kafka_libs=$kafka_dir/libs
kafka_data=$kafka_dir/data
kafka_log=$kafka_dir/kafka.log
kafka_pid_file=$kafka_dir/kafka.pid
kafka_version=$(sed -n 's:.*<kafka.version>\(.*\)</kafka.version>.*:\1:p' "$kafka_template_dir/pom.xml")

redis_pid_file=$state_dir/redis.pid
redis_log=$state_dir/redis.log
mariadb_pid_file=/run/mysqld/balanced-mariadbd.pid
mariadb_log=$state_dir/mariadbd.log

log() { printf 'services: %s\n' "$*" >&2; }
die() { printf 'services: ERROR: %s\n' "$*" >&2; exit 1; }

# --- small helpers --------------------------------------------------------------------------

# True when something accepts TCP connections on host:port. Bash's /dev/tcp needs no client.
port_open() {
  # shellcheck disable=SC2016 # the inner shell expands $1 and $2, on purpose.
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$1/$2"' _ "$1" "$2" 2>/dev/null
}

# Only a server on this machine can be started or installed by this script.
is_local_host() {
  case "$1" in 127.0.0.1 | localhost | ::1 | 0.0.0.0) return 0 ;; *) return 1 ;; esac
}

as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi
}

apt_updated=0
apt_install() {
  log "installing Debian packages: $*"
  export DEBIAN_FRONTEND=noninteractive
  if ((apt_updated == 0)); then
    as_root apt-get update -qq || die "apt-get update failed; cannot install $*"
    apt_updated=1
  fi
  # The packages' scripts may start their servers; those must not inherit our lock (fd 9).
  as_root apt-get install -y -qq --no-install-recommends "$@" >/dev/null 9>&- ||
    die "apt-get install $* failed"
}

# wait_until SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s; says once what it
# waits for when that takes longer than 10 s.
wait_until() {
  local timeout_s=$1 what=$2
  shift 2
  local deadline=$((SECONDS + timeout_s)) patience=$((SECONDS + 10))
  until "$@"; do
    ((SECONDS < deadline)) || return 1
    if ((patience > 0 && SECONDS >= patience)); then
      log "still waiting for $what (at most ${timeout_s}s)"
      patience=0
    fi
    sleep 0.2
  done
}

# /proc rather than kill -0, which fails for another user's process when not root. A zombie
# (a broker that died during start-up and is not reaped yet) counts as dead.
pid_alive() {
  local state
  [[ -n "$1" && -r "/proc/$1/stat" ]] || return 1
  state=$(sed -E 's/^.*\) ([A-Za-z]).*$/\1/' "/proc/$1/stat" 2>/dev/null) || return 1
  [[ -n "$state" && "$state" != Z ]]
}

# The pid in a pid file, if the process lives and its command line contains the pattern;
# guards against a recycled pid.
pid_from_file() {
  local file=$1 pattern=$2 pid
  [[ -r "$file" ]] || return 1
  pid=$(tr -dc '0-9' <"$file")
  pid_alive "$pid" || return 1
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$pattern" || return 1
  printf '%s\n' "$pid"
}

pid_gone() {
  ! pid_alive "$1"
}

stop_pid() {
  local pid=$1 what=$2 timeout_s=${3:-60}
  as_root kill -TERM "$pid" 2>/dev/null || return 0
  if ! wait_until "$timeout_s" "$what to stop" pid_gone "$pid"; then
    log "$what (pid $pid) did not stop within ${timeout_s}s; killing it"
    as_root kill -KILL "$pid" 2>/dev/null || true
  fi
}

# --- the state file: one "service=how" line for each server that `up` started ----------------

state_get() {
  [[ -r "$state_file" ]] || return 0
  sed -n "s/^$1=//p" "$state_file" | tail -n 1
}

state_set() {
  local tmp
  mkdir -p "$state_dir"
  tmp=$(mktemp "$state_dir/state.XXXXXX")
  if [[ -r "$state_file" ]]; then grep -v "^$1=" "$state_file" >"$tmp" || true; fi
  [[ -n "$2" ]] && printf '%s=%s\n' "$1" "$2" >>"$tmp"
  mv "$tmp" "$state_file"
}

# --- MariaDB / MySQL ------------------------------------------------------------------------

mariadb_server_binary() {
  local b
  for b in /usr/sbin/mariadbd /usr/sbin/mysqld; do
    [[ -x "$b" ]] && { printf '%s\n' "$b"; return 0; }
  done
  return 1
}

mysql_up() {
  local how binary
  how=$(state_get mysql)
  # A recorded start whose process is gone (a reboot) is forgotten, so that `down` never
  # stops a server that someone else started since.
  if [[ "$how" == daemon ]] && ! pid_from_file "$mariadb_pid_file" "$(basename "$(mariadb_server_binary || echo mariadbd)")" >/dev/null; then
    state_set mysql ""
    how=""
  fi
  if port_open "$mysql_host" "$mysql_port"; then
    log "MariaDB: answering on $mysql_host:$mysql_port (${how:+started by this script, }using it)"
    return 0
  fi
  is_local_host "$mysql_host" ||
    die "MariaDB: nothing answers on $mysql_host:$mysql_port, and a remote server cannot be started from here"
  if ! binary=$(mariadb_server_binary); then
    apt_install mariadb-server mariadb-client
    binary=$(mariadb_server_binary) || die "MariaDB: mariadb-server installed but no server binary found"
    # The package's own scripts may already have started it.
    if wait_until 10 "MariaDB" port_open "$mysql_host" "$mysql_port"; then
      state_set mysql service
      log "MariaDB: installed and started by the package on $mysql_host:$mysql_port"
      return 0
    fi
  fi
  command -v mariadb >/dev/null || command -v mysql >/dev/null || apt_install mariadb-client
  mariadb_start "$binary"
  if ! wait_until "$server_start_timeout_s" "MariaDB" port_open "$mysql_host" "$mysql_port"; then
    die "MariaDB: started $binary but $mysql_host:$mysql_port did not answer within ${server_start_timeout_s}s; see $mariadb_log and the server's error log (/var/log/mysql/)"
  fi
  log "MariaDB: started on $mysql_host:$mysql_port"
}

# Starts the installed server with its own configuration (data directory, socket, user),
# overriding only where it listens. Under systemd the unit is used, so that systemd stays
# in charge of the process; elsewhere (containers, chroots) start-stop-daemon runs it.
mariadb_start() {
  local binary=$1 bind=$mysql_host
  [[ "$bind" == localhost ]] && bind=127.0.0.1
  mkdir -p "$state_dir"
  if [[ -d /run/systemd/system ]] && command -v systemctl >/dev/null; then
    log "MariaDB: starting with systemctl"
    as_root systemctl start mariadb 9>&- || die "MariaDB: systemctl start mariadb failed"
    state_set mysql systemd
    return 0
  fi
  log "MariaDB: starting $binary"
  as_root install -d -o mysql -g mysql -m 0755 /run/mysqld
  if [[ ! -d /var/lib/mysql/mysql ]]; then
    as_root mariadb-install-db --user=mysql >>"$mariadb_log" 2>&1 ||
      die "MariaDB: mariadb-install-db failed; see $mariadb_log"
  fi
  # --pidfile makes start-stop-daemon look for our own instance only, not for any mariadbd.
  as_root start-stop-daemon --start --oknodo --background --output "$mariadb_log" \
    --pidfile "$mariadb_pid_file" --exec "$binary" -- --user=mysql --pid-file="$mariadb_pid_file" \
    --port="$mysql_port" --bind-address="$bind" 9>&- ||
    die "MariaDB: start-stop-daemon could not start $binary; see $mariadb_log"
  state_set mysql daemon
}

mysql_down() {
  local how pid
  how=$(state_get mysql)
  case "$how" in
    "") log "MariaDB: left alone (it was running before 'up', or is not ours)"; return 0 ;;
    systemd) as_root systemctl stop mariadb || log "MariaDB: systemctl stop failed" ;;
    service) as_root service mariadb stop >/dev/null || log "MariaDB: service mariadb stop failed" ;;
    daemon)
      if pid=$(pid_from_file "$mariadb_pid_file" mariadbd) || pid=$(pid_from_file "$mariadb_pid_file" mysqld); then
        stop_pid "$pid" "MariaDB" 120
      fi
      ;;
  esac
  state_set mysql ""
  log "MariaDB: stopped"
}

# --- Redis ----------------------------------------------------------------------------------

redis_ping() {
  [[ "$(redis-cli -h "$redis_host" -p "$redis_port" ping 2>/dev/null)" == PONG ]]
}

redis_up() {
  local how
  how=$(state_get redis)
  if [[ "$how" == daemon ]] && ! pid_from_file "$redis_pid_file" redis-server >/dev/null; then
    state_set redis ""
    how=""
  fi
  if port_open "$redis_host" "$redis_port"; then
    log "Redis: answering on $redis_host:$redis_port (${how:+started by this script, }using it)"
    return 0
  fi
  is_local_host "$redis_host" ||
    die "Redis: nothing answers on $redis_host:$redis_port, and a remote server cannot be started from here"
  if ! command -v redis-server >/dev/null; then
    apt_install redis-server redis-tools
    if [[ "$redis_port" == 6379 ]] && wait_until 10 "Redis" port_open "$redis_host" "$redis_port"; then
      state_set redis service
      log "Redis: installed and started by the package on $redis_host:$redis_port"
      return 0
    fi
  fi
  command -v redis-cli >/dev/null || apt_install redis-tools
  mkdir -p "$state_dir/redis-data"
  local bind=$redis_host
  [[ "$bind" == localhost ]] && bind=127.0.0.1
  # A cache of read snapshots: nothing is saved to disk, the log and MySQL are the truth.
  redis-server --daemonize yes --bind "$bind" --port "$redis_port" --save "" --appendonly no \
    --dir "$state_dir/redis-data" --pidfile "$redis_pid_file" --logfile "$redis_log" 9>&- ||
    die "Redis: redis-server failed to start; see $redis_log"
  state_set redis daemon
  wait_until "$server_start_timeout_s" "Redis" redis_ping ||
    die "Redis: started but $redis_host:$redis_port does not answer PING; see $redis_log"
  log "Redis: started on $redis_host:$redis_port"
}

redis_down() {
  local how pid
  how=$(state_get redis)
  case "$how" in
    "") log "Redis: left alone (it was running before 'up', or is not ours)"; return 0 ;;
    systemd) as_root systemctl stop redis-server || log "Redis: systemctl stop failed" ;;
    service) as_root service redis-server stop >/dev/null || log "Redis: service redis-server stop failed" ;;
    daemon)
      if pid=$(pid_from_file "$redis_pid_file" redis-server); then
        stop_pid "$pid" "Redis" 30
      fi
      ;;
  esac
  state_set redis ""
  log "Redis: stopped"
}

# --- Kafka ----------------------------------------------------------------------------------

kafka_pid() {
  pid_from_file "$kafka_pid_file" kafka.Kafka
}

kafka_ready() {
  grep -q 'Kafka Server started' "$kafka_log" 2>/dev/null && port_open "$kafka_host" "$kafka_port"
}

# The jars are fetched once into the cache and reused while pom.xml is unchanged; the stamp
# holds the pom's checksum. A failed fetch leaves no half-filled folder behind.
kafka_fetch_jars() {
  local stamp wanted
  wanted=$(sha256sum "$kafka_template_dir/pom.xml" | cut -d' ' -f1)
  stamp=$kafka_libs/.pom.sha256
  if [[ -r "$stamp" && "$(cat "$stamp")" == "$wanted" ]]; then
    return 0
  fi
  command -v mvn >/dev/null || apt_install maven
  log "Kafka: fetching the jars of Apache Kafka $kafka_version from Maven Central (once)"
  rm -rf "$kafka_libs" "$kafka_libs.tmp"
  mkdir -p "$kafka_dir"
  if ! mvn -B -q -f "$kafka_template_dir/pom.xml" -DoutputDirectory="$kafka_libs.tmp" \
    dependency:copy-dependencies >"$kafka_dir/mvn.log" 2>&1; then
    tail -n 20 "$kafka_dir/mvn.log" >&2
    die "Kafka: Maven could not fetch the broker jars (is Maven Central reachable?); see $kafka_dir/mvn.log"
  fi
  compgen -G "$kafka_libs.tmp/kafka_2.13-$kafka_version.jar" >/dev/null ||
    die "Kafka: Maven ran but kafka_2.13-$kafka_version.jar is missing from $kafka_libs.tmp"
  printf '%s\n' "$wanted" >"$kafka_libs.tmp/.pom.sha256"
  mv "$kafka_libs.tmp" "$kafka_libs"
}

kafka_write_config() {
  sed -e "s|@KAFKA_HOST@|$kafka_host|g" -e "s|@KAFKA_PORT@|$kafka_port|g" \
    -e "s|@KAFKA_CONTROLLER_PORT@|$kafka_controller_port|g" -e "s|@KAFKA_DATA_DIR@|$kafka_data|g" \
    "$kafka_template_dir/server.properties.in" >"$kafka_dir/server.properties"
}

# Formats the storage folder once; `-g` makes a repeated format a harmless no-op.
kafka_format() {
  local cluster_id
  [[ -r "$kafka_data/meta.properties" ]] && return 0
  mkdir -p "$kafka_data"
  if [[ ! -s "$kafka_dir/cluster.id" ]]; then
    cluster_id=$(java -Dlog4j.configuration="file:$kafka_template_dir/tools-log4j.properties" \
      -cp "$kafka_libs/*" kafka.tools.StorageTool random-uuid) ||
      die "Kafka: kafka.tools.StorageTool random-uuid failed"
    printf '%s\n' "$cluster_id" >"$kafka_dir/cluster.id"
  fi
  cluster_id=$(cat "$kafka_dir/cluster.id")
  java -Dlog4j.configuration="file:$kafka_template_dir/tools-log4j.properties" \
    -cp "$kafka_libs/*" kafka.tools.StorageTool format -g -t "$cluster_id" \
    -c "$kafka_dir/server.properties" >>"$kafka_dir/format.log" 2>&1 ||
    die "Kafka: formatting $kafka_data failed; see $kafka_dir/format.log"
}

# The listener the running broker was started with; a broker of ours on another address
# than BALANCED_KAFKA_BOOTSTRAP asks now is not the one wanted.
kafka_running_listener() {
  cat "$kafka_dir/kafka.listener" 2>/dev/null || true
}

kafka_up() {
  local pid="" how
  how=$(state_get kafka)
  pid=$(kafka_pid) || pid=""
  if [[ -n "$pid" && "$(kafka_running_listener)" == "$kafka_bootstrap" ]]; then
    if ! kafka_ready; then
      log "Kafka: pid $pid is starting; waiting"
      wait_until "$kafka_start_timeout_s" "Kafka" kafka_ready ||
        die "Kafka: pid $pid did not become ready within ${kafka_start_timeout_s}s; see $kafka_log"
    fi
    [[ -n "$how" ]] || state_set kafka daemon
    log "Kafka: running on $kafka_bootstrap (pid $pid, started by this script)"
    return 0
  fi
  if port_open "$kafka_host" "$kafka_port"; then
    log "Kafka: answering on $kafka_bootstrap (using it)"
    # A state entry without a live broker of ours is stale.
    [[ -n "$pid" || -z "$how" ]] || state_set kafka ""
    return 0
  fi
  is_local_host "$kafka_host" ||
    die "Kafka: nothing answers on $kafka_bootstrap, and a remote broker cannot be started from here"
  if [[ -n "$pid" ]]; then
    die "Kafka: the broker started by this script (pid $pid) listens on $(kafka_running_listener), not on $kafka_bootstrap; run 'scripts/services.sh down' with the old settings first"
  fi
  if port_open "$kafka_host" "$kafka_controller_port"; then
    die "Kafka: controller port $kafka_host:$kafka_controller_port is taken by another program (set BALANCED_KAFKA_CONTROLLER_PORT)"
  fi
  command -v java >/dev/null || apt_install default-jre-headless
  kafka_fetch_jars
  kafka_write_config
  kafka_format
  start_kafka_process
}

start_kafka_process() {
  local pid
  [[ -e "$kafka_log" ]] && mv -f "$kafka_log" "$kafka_log.1"
  log "Kafka: starting Apache Kafka $kafka_version (KRaft, node 1) on $kafka_bootstrap"
  # setsid and the redirections detach the broker from this shell: a caller that waits for
  # the end of our output (ctest does) must not wait for the broker too. Closing descriptor 9
  # (the lock of this script) keeps the broker from holding the lock for its whole life.
  # shellcheck disable=SC2086 # kafka_heap holds several JVM options on purpose.
  setsid java $kafka_heap -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$kafka_template_dir/log4j.properties" \
    -Dkafka.logs.dir="$kafka_dir" \
    -cp "$kafka_libs/*" kafka.Kafka "$kafka_dir/server.properties" \
    </dev/null >"$kafka_log" 2>&1 9>&- &
  pid=$!
  printf '%s\n' "$pid" >"$kafka_pid_file"
  printf '%s\n' "$kafka_bootstrap" >"$kafka_dir/kafka.listener"
  state_set kafka daemon
  local deadline=$((SECONDS + kafka_start_timeout_s))
  until kafka_ready; do
    if ! pid_alive "$pid"; then
      tail -n 30 "$kafka_log" >&2 || true
      state_set kafka ""
      die "Kafka: the broker exited during start-up; see $kafka_log"
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$kafka_log" >&2 || true
      die "Kafka: not ready within ${kafka_start_timeout_s}s (no 'Kafka Server started' in $kafka_log)"
    fi
    sleep 0.2
  done
  log "Kafka: started on $kafka_bootstrap (pid $pid, log $kafka_log)"
}

kafka_down() {
  local how pid
  how=$(state_get kafka)
  if [[ -z "$how" ]]; then
    log "Kafka: left alone (it was running before 'up', or is not ours)"
    return 0
  fi
  if pid=$(kafka_pid); then
    # A controlled shutdown takes a few seconds; the next start then skips log recovery.
    stop_pid "$pid" "Kafka" 90
  fi
  rm -f "$kafka_pid_file"
  state_set kafka ""
  log "Kafka: stopped"
}

# --- commands -------------------------------------------------------------------------------

# "started by services.sh (how)" or "not started by services.sh" for a state entry.
origin() {
  if [[ -n "$1" ]]; then printf 'started by services.sh (%s)' "$1"; else printf 'not started by services.sh'; fi
}

status() {
  local ok=0 pid
  if port_open "$mysql_host" "$mysql_port"; then
    printf 'mysql   up    %s:%s  %s\n' "$mysql_host" "$mysql_port" "$(origin "$(state_get mysql)")"
  else
    printf 'mysql   down  %s:%s\n' "$mysql_host" "$mysql_port"
    ok=1
  fi
  if port_open "$redis_host" "$redis_port"; then
    printf 'redis   up    %s:%s  %s\n' "$redis_host" "$redis_port" "$(origin "$(state_get redis)")"
  else
    printf 'redis   down  %s:%s\n' "$redis_host" "$redis_port"
    ok=1
  fi
  if pid=$(kafka_pid) && [[ "$(kafka_running_listener)" == "$kafka_bootstrap" ]] &&
    port_open "$kafka_host" "$kafka_port"; then
    printf 'kafka   up    %s  Apache Kafka %s, pid %s, %s, log %s\n' "$kafka_bootstrap" \
      "$kafka_version" "$pid" "$(origin "$(state_get kafka)")" "$kafka_log"
  elif port_open "$kafka_host" "$kafka_port"; then
    printf 'kafka   up    %s  not started by services.sh\n' "$kafka_bootstrap"
  else
    printf 'kafka   down  %s\n' "$kafka_bootstrap"
    ok=1
  fi
  return "$ok"
}

with_lock() {
  mkdir -p "$state_dir"
  exec 9>"$state_dir/lock"
  flock -w 900 9 || die "another services.sh is still running (lock $state_dir/lock)"
  "$@"
}

up() {
  local started=$SECONDS
  mysql_up
  redis_up
  kafka_up
  if [[ "${BALANCED_SKIP_MIGRATE:-0}" != 1 ]]; then
    "$repo_dir/scripts/migrate.sh" || die "MariaDB: the schema migration failed (scripts/migrate.sh)"
  fi
  log "all services up ($((SECONDS - started))s)"
}

down() {
  kafka_down
  redis_down
  mysql_down
}

case "${1:-}" in
  up) with_lock up ;;
  down) with_lock down ;;
  status) status ;;
  *)
    echo "usage: $0 up|down|status" >&2
    exit 2
    ;;
esac
