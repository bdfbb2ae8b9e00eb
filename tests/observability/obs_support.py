"""obs_support.py -- shared support of the observability tests (Python 3 standard library only).

- find the balanced binary (--bin, $BALANCED_BIN, else build/balanced) and the Prometheus
  tools (promtool, prometheus), failing with a clear message when they are missing;
- start a real balanced node on 127.0.0.1 (port 0, found from its "listening" log line)
  with a temporary data directory, and a real Prometheus server on a free 127.0.0.1 port
  with a temporary storage directory;
- send traffic to the node and read its /metrics;
- a tiny test runner that prints "PASS"/"FAIL" per check and a last line
  "observability: N passed, M failed", and exits non-zero on any failure.

Every process started here is stopped, and every temporary directory removed, when the
script exits (normal exit, exception, SIGTERM, SIGINT); children also get SIGKILL if the
test process dies without cleaning up (PR_SET_PDEATHSIG).
"""

import argparse
import atexit
import ctypes
import http.client
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
REPO_ROOT = os.path.dirname(os.path.dirname(HERE))
PROM_DIR = os.path.join(REPO_ROOT, "deploy", "prometheus")
ALERTS_FILE = os.path.join(PROM_DIR, "alerts.yml")
ALERTS_TEST_FILE = os.path.join(PROM_DIR, "alerts_test.yml")
DASHBOARD_FILE = os.path.join(REPO_ROOT, "deploy", "grafana", "balanced-dashboard.json")

# Metric families of the node, by Prometheus type. EXPORTED_FAMILIES: exported today, missing
# one is a failure. PLANNED_FAMILIES: used by the rules and the dashboard already; absent is
# only noted, but once exported they must have this type.
EXPORTED_FAMILIES = {
    "balanced_requests_total": "counter",
    "balanced_results_total": "counter",
    "balanced_duplicates_total": "counter",
    "balanced_decode_errors_total": "counter",
    "balanced_cross_shard_total": "counter",
    "balanced_id_lookups_total": "counter",
    "balanced_id_filter_skips_total": "counter",
    "balanced_id_claim_waits_total": "counter",
    "balanced_id_filter_ids": "gauge",
    "balanced_journal_lag_ids": "gauge",
    "balanced_journal_lag_waits_total": "counter",
    "balanced_snapshots_total": "counter",
    "balanced_last_snapshot_timestamp_seconds": "gauge",
    "balanced_request_duration_seconds": "histogram",
    "balanced_wal_fsync_seconds": "histogram",
    "balanced_apply_seconds": "histogram",
    "balanced_batch_size": "histogram",
    "balanced_queue_depth": "gauge",
    "balanced_persister_lag_records": "gauge",
    "balanced_balances": "gauge",
    "balanced_ready": "gauge",
}
PLANNED_FAMILIES = {
    "balanced_auth_rejected_total": "counter",
    "balanced_rate_limited_total": "counter",
    "balanced_data_dir_free_bytes": "gauge",
    "balanced_data_dir_size_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_resident_memory_bytes": "gauge",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}

NODE_START_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 30.0

# ---------------------------------------------------------------------------------------
# Cleanup: processes and temporary directories made here go away at exit.

_processes = []
_temp_dirs = []


def _cleanup():
    for proc in reversed(_processes):
        stop_process(proc)
    _processes.clear()
    for path in _temp_dirs:
        if os.environ.get("BALANCED_KEEP_TEMP"):
            print("observability: keeping %s" % path, file=sys.stderr)
            continue
        shutil.rmtree(path, ignore_errors=True)
    _temp_dirs.clear()


atexit.register(_cleanup)


def _on_signal(signum, frame):
    _cleanup()
    os._exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


def make_temp_dir(prefix):
    path = tempfile.mkdtemp(prefix=prefix)
    _temp_dirs.append(path)
    return path


def _die_with_parent():
    """preexec_fn: the child gets SIGKILL when this process dies (Linux)."""
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except Exception:
        pass


def spawn(cmd, log_path, env=None):
    log = open(log_path, "ab")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                preexec_fn=_die_with_parent)
    finally:
        log.close()
    _processes.append(proc)
    return proc


def stop_process(proc, timeout=STOP_TIMEOUT_S):
    """SIGTERM, then SIGKILL after timeout. Only ever the process started here, by its pid."""
    if proc.poll() is not None:
        return proc.returncode
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        return proc.wait(10)
    except OSError:
        return proc.poll()


def forget_process(proc):
    if proc in _processes:
        _processes.remove(proc)


def read_tail(path, limit=4000):
    try:
        with open(path, "rb") as f:
            data = f.read()
        return data[-limit:].decode("utf-8", "replace")
    except OSError:
        return ""


# ---------------------------------------------------------------------------------------
# Tools.

class SetupError(Exception):
    """Something the test needs is missing: the test fails with this message."""


def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bin", default=None, help="path of the balanced binary")
    parser.add_argument("--verbose", action="store_true")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.bin = os.path.abspath(args.bin or os.environ.get("BALANCED_BIN")
                               or os.path.join(REPO_ROOT, "build", "balanced"))
    return args


def require_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise SetupError("the balanced binary %s does not exist or is not executable "
                         "(build it: make, or cmake --build build --target balanced)" % path)
    return path


def require_tool(name):
    """The path of promtool or prometheus; SetupError (a failure, never a skip) if missing."""
    path = shutil.which(name)
    if path is None:
        for candidate in ("/usr/bin/" + name, "/usr/local/bin/" + name):
            if os.access(candidate, os.X_OK):
                path = candidate
                break
    if path is None:
        raise SetupError("%s is not installed: the observability tests need the Debian package "
                         "'prometheus' (run scripts/deps.sh, or apt-get install prometheus)" % name)
    return path


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------------------
# HTTP.

def http_request(port, method, path, body=None, timeout=HTTP_TIMEOUT_S, headers=None):
    """(status, body bytes). Only 127.0.0.1."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        data = None
        all_headers = dict(headers or {})
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            all_headers.setdefault("Content-Type", "application/json")
        conn.request(method, path, body=data, headers=all_headers)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


class KeepAlive:
    """One keep-alive connection to the node for sending many requests."""

    def __init__(self, port):
        self.port = port
        self.conn = None

    def request(self, method, path, body=None):
        for attempt in (1, 2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=HTTP_TIMEOUT_S)
            try:
                data = None if body is None else (body if isinstance(body, bytes) else json.dumps(body).encode())
                headers = {"Content-Type": "application/json"} if data is not None else {}
                self.conn.request(method, path, body=data, headers=headers)
                response = self.conn.getresponse()
                payload = response.read()
                if response.getheader("Connection", "").lower() == "close":
                    self.close()
                return response.status, payload
            except (http.client.HTTPException, OSError):
                self.close()
                if attempt == 2:
                    raise

    def close(self):
        if self.conn is not None:
            self.conn.close()
            self.conn = None


# ---------------------------------------------------------------------------------------
# A balanced node.

class Node:
    def __init__(self, binary, shards=2):
        self.binary = require_binary(binary)
        self.shards = shards
        self.dir = make_temp_dir("balanced-obs-node-")
        self.data_dir = os.path.join(self.dir, "data")
        self.log_path = os.path.join(self.dir, "node.log")
        self.proc = None
        self.port = None

    def start(self, timeout=NODE_START_TIMEOUT_S):
        env = {k: v for k, v in os.environ.items() if not k.startswith("BALANCED_")}
        cmd = [self.binary, "--listen", "127.0.0.1:0", "--data-dir", self.data_dir,
               "--shards", str(self.shards)]
        self.proc = spawn(cmd, self.log_path, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            port = self._listening_port()
            if port is not None:
                self.port = port
                return self
            if self.proc.poll() is not None:
                raise SetupError("balanced exited with status %s before listening; log:\n%s"
                                 % (self.proc.returncode, read_tail(self.log_path)))
            time.sleep(0.05)
        raise SetupError("balanced did not log \"listening\" within %.0f s; log:\n%s"
                         % (timeout, read_tail(self.log_path)))

    def _listening_port(self):
        try:
            with open(self.log_path, "rb") as f:
                lines = f.read().splitlines()
        except OSError:
            return None
        for raw in lines:
            try:
                event = json.loads(raw)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("event") == "listening" and isinstance(event.get("port"), int):
                return event["port"]
        return None

    def wait_ready(self, timeout=NODE_START_TIMEOUT_S):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                status, _ = http_request(self.port, "GET", "/ready", timeout=5)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise SetupError("balanced did not become ready within %.0f s" % timeout)

    def metrics(self):
        status, body = http_request(self.port, "GET", "/metrics")
        if status != 200:
            raise AssertionError("GET /metrics answered %d" % status)
        return body

    def stop(self):
        if self.proc is not None:
            code = stop_process(self.proc)
            forget_process(self.proc)
            return code
        return None


def send_traffic(port, run_id, deposits=20, rejections=5):
    """Deposits, rejections (insufficient_available), one duplicate, one malformed request,
    one batch, one transfer, some reads and a 404. Returns the expected business results:
    {"ok": n, "insufficient_available": m} (the duplicate counts as ok)."""
    client = KeepAlive(port)
    expected = {"ok": 0, "insufficient_available": 0}
    try:
        def post(body, want):
            status, payload = client.request("POST", "/v1/transactions", body)
            if status != want:
                raise AssertionError("POST %s answered %d, not %d: %r" % (body.get("transaction_id"), status, want, payload[:200]))
            return json.loads(payload) if payload else None
        for i in range(deposits):
            post({"transaction_id": "%s-dep-%d" % (run_id, i), "type": "DEPOSIT", "account_id": 1 + i % 10,
                  "currency": "USD", "amount": "100"}, 200)
            expected["ok"] += 1
        for i in range(rejections):
            result = post({"transaction_id": "%s-wd-%d" % (run_id, i), "type": "WITHDRAW", "account_id": 1 + i % 10,
                           "currency": "USD", "amount": "1000000"}, 422)
            if result.get("result") != "insufficient_available":
                raise AssertionError("unexpected result %r" % result)
            expected["insufficient_available"] += 1
        # A retry of the first deposit: a duplicate, counted as ok.
        post({"transaction_id": "%s-dep-0" % run_id, "type": "DEPOSIT", "account_id": 1,
              "currency": "USD", "amount": "100"}, 200)
        expected["ok"] += 1
        post({"transaction_id": "%s-tr-0" % run_id, "type": "TRANSFER", "account_id": 1, "to_account_id": 2,
              "currency": "USD", "amount": "1"}, 200)
        expected["ok"] += 1
        status, payload = client.request("POST", "/v1/transactions/batch", {"transactions": [
            {"transaction_id": "%s-b-%d" % (run_id, i), "type": "DEPOSIT", "account_id": 20 + i,
             "currency": "EUR", "amount": "5"} for i in range(3)]})
        if status != 200:
            raise AssertionError("batch answered %d: %r" % (status, payload[:200]))
        expected["ok"] += 3
        status, _ = client.request("POST", "/v1/transactions", b"{not json")
        if status != 400:
            raise AssertionError("malformed body answered %d, not 400" % status)
        status, _ = client.request("GET", "/v1/accounts/1/balances/USD")
        if status != 200:
            raise AssertionError("balance read answered %d" % status)
        status, _ = client.request("GET", "/v1/no/such/route")
        if status != 404:
            raise AssertionError("unknown route answered %d, not 404" % status)
    finally:
        client.close()
    return expected


# ---------------------------------------------------------------------------------------
# Prometheus text format (enough for checks of our own output).

def parse_exposition(text):
    """{family: type} from # TYPE lines and [(name, {labels}, value)] of the samples."""
    types = {}
    samples = []
    for line in text.splitlines():
        if not line.strip():
            continue
        if line.startswith("# TYPE "):
            parts = line.split()
            if len(parts) >= 4:
                types[parts[2]] = parts[3]
            continue
        if line.startswith("#"):
            continue
        if "{" in line:
            name, rest = line.split("{", 1)
            label_text, value_text = rest.rsplit("}", 1)
            labels = {}
            for item in _split_labels(label_text):
                key, val = item.split("=", 1)
                labels[key.strip()] = json.loads(val)
        else:
            name, value_text = line.split(None, 1)
            labels = {}
        samples.append((name.strip(), labels, float(value_text.split()[0])))
    return types, samples


def _split_labels(text):
    items, current, quoted, escaped = [], "", False, False
    for ch in text:
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == '"':
            current += ch
            quoted = not quoted
        elif ch == "," and not quoted:
            if current.strip():
                items.append(current)
            current = ""
        else:
            current += ch
    if current.strip():
        items.append(current)
    return items


# ---------------------------------------------------------------------------------------
# A Prometheus server.

class Prometheus:
    def __init__(self, binary, scrape_port, rule_files=(), scrape_interval="1s"):
        self.binary = binary
        self.dir = make_temp_dir("balanced-obs-prometheus-")
        self.config_path = os.path.join(self.dir, "prometheus.yml")
        self.log_path = os.path.join(self.dir, "prometheus.log")
        self.storage = os.path.join(self.dir, "data")
        self.proc = None
        self.port = None
        lines = [
            "global:",
            "  scrape_interval: %s" % scrape_interval,
            "  scrape_timeout: %s" % scrape_interval,
            "  evaluation_interval: %s" % scrape_interval,
        ]
        if rule_files:
            lines.append("rule_files:")
            lines += ["  - %s" % json.dumps(path) for path in rule_files]
        lines += [
            "scrape_configs:",
            "  - job_name: balanced",
            "    metrics_path: /metrics",
            "    static_configs:",
            "      - targets: [\"127.0.0.1:%d\"]" % scrape_port,
        ]
        with open(self.config_path, "w") as f:
            f.write("\n".join(lines) + "\n")

    def start(self, timeout=60.0):
        last_error = ""
        for attempt in range(3):  # the free port may be taken between the probe and the bind
            self.port = free_port()
            cmd = [self.binary,
                   "--config.file=" + self.config_path,
                   "--storage.tsdb.path=" + self.storage,
                   "--web.listen-address=127.0.0.1:%d" % self.port,
                   "--storage.tsdb.retention.time=1h",
                   "--log.level=warn"]
            self.proc = spawn(cmd, self.log_path)
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if self.proc.poll() is not None:
                    break
                try:
                    status, _ = http_request(self.port, "GET", "/-/ready", timeout=2)
                    if status == 200:
                        return self
                except OSError:
                    pass
                time.sleep(0.2)
            last_error = read_tail(self.log_path)
            stop_process(self.proc)
            forget_process(self.proc)
            if "address already in use" not in last_error:
                break
        raise SetupError("prometheus did not become ready (/-/ready) within %.0f s; log:\n%s" % (timeout, last_error))

    def api(self, path, params=None):
        query = "?" + urllib.parse.urlencode(params) if params else ""
        status, body = http_request(self.port, "GET", path + query, timeout=10)
        data = json.loads(body)
        if status != 200 or data.get("status") != "success":
            raise AssertionError("%s%s answered %d: %s" % (path, query, status, body[:300]))
        return data["data"]

    def query(self, expr):
        return self.api("/api/v1/query", {"query": expr})

    def stop(self):
        if self.proc is not None:
            stop_process(self.proc)
            forget_process(self.proc)


def wait_for(description, predicate, timeout, interval=0.5):
    """Polls predicate() until it returns a true value (returned); AssertionError on timeout
    with the last value or exception."""
    deadline = time.monotonic() + timeout
    last = None
    while True:
        try:
            value = predicate()
            if value:
                return value
            last = value
        except Exception as error:  # noqa: BLE001 -- reported on timeout
            last = "%s: %s" % (type(error).__name__, error)
        if time.monotonic() >= deadline:
            raise AssertionError("%s: not reached within %.0f s (last: %s)" % (description, timeout, last))
        time.sleep(interval)


# ---------------------------------------------------------------------------------------
# Runner.

class Suite:
    def __init__(self, name="observability"):
        self.name = name
        self.passed = 0
        self.failed = 0

    def check(self, title, function, *args):
        """Runs one check; records PASS/FAIL. Returns the function's value or None."""
        started = time.monotonic()
        try:
            value = function(*args)
        except SetupError as error:
            self.failed += 1
            print("FAIL %s: %s" % (title, error), flush=True)
            return None
        except Exception as error:  # noqa: BLE001 -- every failure is reported
            self.failed += 1
            print("FAIL %s: %s" % (title, error), flush=True)
            if not isinstance(error, AssertionError):
                traceback.print_exc(file=sys.stdout)
            return None
        self.passed += 1
        print("PASS %s (%.1f s)" % (title, time.monotonic() - started), flush=True)
        return value if value is not None else True

    def finish(self):
        _cleanup()
        print("%s: %d passed, %d failed" % (self.name, self.passed, self.failed), flush=True)
        sys.exit(0 if self.failed == 0 and self.passed > 0 else 1)
