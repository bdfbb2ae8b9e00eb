#!/usr/bin/env bash
# Applies the versioned schema migrations in db/migrations/ (NNNN_name.sql, in order of NNNN)
# to the project's MySQL/MariaDB database, each exactly once, and records each one in the
# table schema_migrations with the SHA-256 of its file.
#
#   scripts/migrate.sh               create the database and the project's user (as the admin
#                                    user), then apply what is pending (as the project's user)
#   scripts/migrate.sh --apply-only  only apply what is pending; the database must exist
#   scripts/migrate.sh --status      list the migrations and whether each is applied
#
# A migration that was applied and whose file changed afterwards stops the run: history is
# never rewritten; write a new migration instead. MySQL commits DDL implicitly, so a
# migration that fails halfway is not rolled back: every statement in a migration file is
# written to be safe to run again (CREATE TABLE IF NOT EXISTS, ...), so fixing the cause and
# rerunning finishes it.
#
# Settings (environment, with defaults): BALANCED_MYSQL_HOST=127.0.0.1,
# BALANCED_MYSQL_PORT=3306, BALANCED_MYSQL_USER=balanced, BALANCED_MYSQL_PASSWORD=balanced,
# BALANCED_MYSQL_DATABASE=balanced, BALANCED_MYSQL_ADMIN_USER=root,
# BALANCED_MYSQL_ADMIN_PASSWORD= (empty), BALANCED_MYSQL_USER_HOSTS="% 127.0.0.1 localhost",
# BALANCED_MYSQL_GRANT_TEST_DATABASES=1, BALANCED_MIGRATIONS_DIR=db/migrations.
set -euo pipefail

repo_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
host=${BALANCED_MYSQL_HOST:-127.0.0.1}
port=${BALANCED_MYSQL_PORT:-3306}
user=${BALANCED_MYSQL_USER:-balanced}
password=${BALANCED_MYSQL_PASSWORD-balanced}
database=${BALANCED_MYSQL_DATABASE:-balanced}
admin_user=${BALANCED_MYSQL_ADMIN_USER:-root}
admin_password=${BALANCED_MYSQL_ADMIN_PASSWORD:-}
user_hosts=${BALANCED_MYSQL_USER_HOSTS:-% 127.0.0.1 localhost}
grant_test_databases=${BALANCED_MYSQL_GRANT_TEST_DATABASES:-1}
migrations_dir=${BALANCED_MIGRATIONS_DIR:-$repo_dir/db/migrations}

# Every session runs in the same strict mode, whatever the server's default: an out-of-range
# DECIMAL or a bad date is an error, never a silent clamp (MySQL 8 and MariaDB differ here).
sql_mode="STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,NO_ENGINE_SUBSTITUTION"

log() { printf 'migrate: %s\n' "$*" >&2; }
die() { printf 'migrate: ERROR: %s\n' "$*" >&2; exit 1; }

mode=all
case "${1:-}" in
  "") ;;
  --apply-only) mode=apply ;;
  --status) mode=status ;;
  *) echo "usage: $0 [--apply-only|--status]" >&2; exit 2 ;;
esac

# Names go into SQL text unquoted by any driver, so only plain ones are accepted.
[[ "$database" =~ ^[A-Za-z0-9_]{1,64}$ ]] || die "BALANCED_MYSQL_DATABASE must be 1-64 of A-Z a-z 0-9 _"
[[ "$user" =~ ^[A-Za-z0-9_]{1,32}$ ]] || die "BALANCED_MYSQL_USER must be 1-32 of A-Z a-z 0-9 _"
[[ "$admin_user" =~ ^[A-Za-z0-9_]{1,32}$ ]] || die "BALANCED_MYSQL_ADMIN_USER must be 1-32 of A-Z a-z 0-9 _"
for h in $user_hosts; do
  [[ "$h" =~ ^[A-Za-z0-9_.%:-]{1,255}$ ]] || die "BALANCED_MYSQL_USER_HOSTS: bad host pattern '$h'"
done

client=$(command -v mariadb || command -v mysql) ||
  die "neither the mariadb nor the mysql command-line client is installed (Debian: mariadb-client)"

work_dir=$(mktemp -d)
trap 'rm -rf "$work_dir"' EXIT

# Passwords go to the client through option files (mode 0600), never on the command line
# where ps would show them.
write_option_file() {
  local file=$1 name=$2 secret=$3
  secret=${secret//\\/\\\\}
  secret=${secret//\"/\\\"}
  (umask 077 && printf '[client]\nuser="%s"\npassword="%s"\n' "$name" "$secret" >"$file")
}
write_option_file "$work_dir/user.cnf" "$user" "$password"
write_option_file "$work_dir/admin.cnf" "$admin_user" "$admin_password"

# The project's user always comes in over TCP, like the service does.
user_sql() {
  "$client" --defaults-extra-file="$work_dir/user.cnf" --protocol=TCP -h "$host" -P "$port" \
    --batch --skip-column-names --init-command="SET SESSION sql_mode='$sql_mode'" "$@"
}

# The admin user may come in over TCP (password) or, on this machine as the operating
# system's root, over the Unix socket: a fresh Debian MariaDB lets root in that way only.
admin_via=""
admin_sql() {
  if [[ "$admin_via" == socket ]]; then
    "$client" --defaults-extra-file="$work_dir/admin.cnf" --batch --skip-column-names "$@"
  else
    "$client" --defaults-extra-file="$work_dir/admin.cnf" --protocol=TCP -h "$host" -P "$port" \
      --batch --skip-column-names "$@"
  fi
}

find_admin() {
  local tcp_error
  if tcp_error=$(admin_sql -e 'SELECT 1' 2>&1 >/dev/null); then
    admin_via=tcp
    return 0
  fi
  case "$host" in
    127.0.0.1 | localhost | ::1)
      admin_via=socket
      if admin_sql -e 'SELECT 1' >/dev/null 2>&1; then return 0; fi
      ;;
  esac
  admin_via=""
  log "cannot connect as admin user '$admin_user' to $host:$port: $tcp_error"
  return 1
}

sql_string() {
  local s=$1
  s=${s//\\/\\\\}
  s=${s//\'/\'\'}
  printf "'%s'" "$s"
}

# Creates the database and the project's user and keeps the user's password equal to
# BALANCED_MYSQL_PASSWORD. With BALANCED_MYSQL_GRANT_TEST_DATABASES=1 (development) the user
# may also create and drop databases named <database>_test_*, which the integration tests
# use as throwaway databases; set it to 0 in production.
bootstrap() {
  if ! find_admin; then
    if user_sql -e "USE \`$database\`" 2>/dev/null; then
      log "no admin access, but database '$database' and user '$user' already work; continuing"
      return 0
    fi
    die "cannot create database '$database' and user '$user': set BALANCED_MYSQL_ADMIN_USER and BALANCED_MYSQL_ADMIN_PASSWORD to an account that may"
  fi
  local h sql pattern
  pattern="${database//_/\\_}\\_test\\_%"
  sql="CREATE DATABASE IF NOT EXISTS \`$database\` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin;"
  for h in $user_hosts; do
    sql+="CREATE USER IF NOT EXISTS '$user'@'$h' IDENTIFIED BY $(sql_string "$password");"
    sql+="ALTER USER '$user'@'$h' IDENTIFIED BY $(sql_string "$password");"
    sql+="GRANT ALL PRIVILEGES ON \`$database\`.* TO '$user'@'$h';"
    if [[ "$grant_test_databases" == 1 ]]; then
      sql+="GRANT ALL PRIVILEGES ON \`$pattern\`.* TO '$user'@'$h';"
    fi
  done
  admin_sql -e "$sql" || die "creating database '$database' and user '$user' failed (as '$admin_user' via $admin_via)"
  log "database '$database' and user '$user' ready (as '$admin_user' via $admin_via)"
}

ensure_migrations_table() {
  user_sql "$database" -e "
    CREATE TABLE IF NOT EXISTS schema_migrations (
      version    INT UNSIGNED NOT NULL PRIMARY KEY,
      name       VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
      checksum   CHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
      applied_at DATETIME(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin" ||
    die "cannot use database '$database' as '$user'@$host:$port (run scripts/migrate.sh without --apply-only, or scripts/services.sh up)"
}

# The migration files, sorted by version; two files with one version are an error.
list_migrations() {
  local f base seen=""
  shopt -s nullglob
  for f in "$migrations_dir"/[0-9][0-9][0-9][0-9]_*.sql; do
    base=${f##*/}
    case " $seen " in *" ${base%%_*} "*) die "two migrations with version ${base%%_*}" ;; esac
    seen+=" ${base%%_*}"
    printf '%s\n' "$f"
  done
}

apply_pending() {
  local f base version checksum applied_checksum applied_rows count=0 total=0
  declare -A applied=()
  # With --status a missing database or table just means that nothing is applied; when
  # applying, not knowing what is applied is an error.
  if ! applied_rows=$(user_sql "$database" -e "SELECT version, checksum FROM schema_migrations ORDER BY version" 2>&1); then
    [[ "$mode" == status ]] || die "cannot read schema_migrations in '$database': $applied_rows"
    applied_rows=""
  fi
  while read -r version checksum; do
    [[ -n "$version" ]] && applied[$version]=$checksum
  done <<<"$applied_rows"
  while read -r f; do
    base=${f##*/}
    version=$((10#${base%%_*}))
    checksum=$(sha256sum "$f" | cut -d' ' -f1)
    total=$((total + 1))
    applied_checksum=${applied[$version]:-}
    if [[ -n "$applied_checksum" ]]; then
      [[ "$applied_checksum" == "$checksum" ]] ||
        die "$base changed after it was applied to '$database' (recorded sha256 $applied_checksum); never edit an applied migration, add a new one"
      continue
    fi
    if [[ "$mode" == status ]]; then
      printf 'pending  %s\n' "$base"
      continue
    fi
    { cat "$f"; printf '\nINSERT INTO schema_migrations (version, name, checksum) VALUES (%d, %s, %s);\n' \
      "$version" "$(sql_string "$base")" "$(sql_string "$checksum")"; } |
      user_sql "$database" || die "migration $base failed on '$database'; nothing after it was applied"
    log "applied $base"
    count=$((count + 1))
  done < <(list_migrations)
  for version in "${!applied[@]}"; do
    compgen -G "$migrations_dir/$(printf '%04d' "$version")_*.sql" >/dev/null ||
      log "warning: '$database' has migration $version applied, but no file for it exists here"
  done
  if [[ "$mode" == status ]]; then
    printf 'applied  %d of %d migrations in %s\n' "${#applied[@]}" "$total" "$database"
  elif ((count == 0)); then
    log "'$database' is up to date ($total migrations)"
  else
    log "'$database': applied $count of $total migrations"
  fi
}

[[ -d "$migrations_dir" ]] || die "no migrations folder $migrations_dir"
lock_dir=${BALANCED_CACHE_DIR:-$repo_dir/.cache}
# Two runs on this machine wait for each other; across machines, run one migrator at a time.
if command -v flock >/dev/null && mkdir -p "$lock_dir" 2>/dev/null; then
  exec 8>"$lock_dir/migrate.lock"
  flock -w 300 8 || die "another migrate.sh is still running"
fi
if [[ "$mode" == all ]]; then
  bootstrap
fi
# --status only reads: a missing table then simply means that nothing is applied.
if [[ "$mode" != status ]]; then
  ensure_migrations_table
fi
apply_pending
