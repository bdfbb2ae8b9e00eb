"""harness.py -- black-box test support for the balanced server.

Starts and stops real server processes on loopback, each with its own temporary data
directory, finds the port from the server's "listening" log line, and talks to it with a
small keep-alive JSON client (http.client) or a raw socket (for malformed HTTP and
pipelining). Only the Python standard library is used.

The binary comes from --bin PATH, else $BALANCED_BIN, else build/balanced under the
repository root. Every server started here is killed, and every temporary directory
removed, when the script exits (atexit), whatever happened.

Each suite is a plain script: it registers test functions with Suite.test, runs them
with Suite.main(), prints "<suite>: N passed, M failed" last and exits non-zero on any
failure.
"""

import argparse
import atexit
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import decimal
from decimal import Decimal, getcontext

# 36 significant digits plus room: exact for DECIMAL(36,18). Contexts are per thread and new
# threads copy DefaultContext, so set both.
decimal.DefaultContext.prec = 80
getcontext().prec = 80

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
START_TIMEOUT_S = 30.0
STOP_TIMEOUT_S = 35.0
REQUEST_TIMEOUT_S = 60.0

MAX_AMOUNT = "999999999999999999.999999999999999999"
MIN_AMOUNT = "0.000000000000000001"
U64_MAX = 2**64 - 1

# ---------------------------------------------------------------------------------------
# Cleanup registry: every server and temp dir made here goes away at exit.

_servers = []
_temp_dirs = []
_cleanup_lock = threading.Lock()


def _cleanup():
    for server in list(_servers):
        try:
            server.kill()
        except Exception:
            pass
    for path in list(_temp_dirs):
        if os.environ.get("BALANCED_KEEP_TEMP"):
            print("harness: keeping %s" % path, file=sys.stderr)
            continue
        shutil.rmtree(path, ignore_errors=True)


atexit.register(_cleanup)


def _on_signal(signum, frame):
    _cleanup()
    sys.exit(128 + signum)


for _sig in (signal.SIGTERM, signal.SIGHUP):
    try:
        signal.signal(_sig, _on_signal)
    except (ValueError, OSError):
        pass


def make_temp_dir(prefix="balanced-test-"):
    path = tempfile.mkdtemp(prefix=prefix)
    with _cleanup_lock:
        _temp_dirs.append(path)
    return path


# ---------------------------------------------------------------------------------------
# Command line of the test scripts.

def parse_args(description, extra=None):
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--bin", default=None, help="path of the balanced binary")
    parser.add_argument("--seed", type=int, default=None, help="random seed")
    parser.add_argument("--only", default=None, help="run only tests whose name contains this")
    parser.add_argument("--verbose", action="store_true")
    if extra is not None:
        extra(parser)
    args = parser.parse_args()
    args.bin = find_binary(args.bin)
    return args


def find_binary(arg_bin=None):
    path = arg_bin or os.environ.get("BALANCED_BIN") or os.path.join(REPO_ROOT, "build", "balanced")
    return os.path.abspath(path)


def require_binary(path):
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        raise ServerError("the server binary %s does not exist or is not executable (give --bin or BALANCED_BIN)"
                          % path)


# ---------------------------------------------------------------------------------------
# Server process.

class ServerError(Exception):
    pass


class Server:
    """One balanced process. start() waits for the "listening" log line."""

    def __init__(self, binary, data_dir=None, shards=1, args=(), env=None, use_flags=True,
                 log_level=None, name="balanced"):
        self.binary = binary
        self.data_dir = data_dir or make_temp_dir()
        self.shards = shards
        self.extra_args = list(args)
        self.extra_env = dict(env or {})
        self.use_flags = use_flags
        self.log_level = log_level
        self.name = name
        self.proc = None
        self.port = None
        self.lines = []            # every stderr line, all starts of this object
        self.start_line_index = 0  # index in lines where the current process began
        self._lines_lock = threading.Lock()
        self._reader = None
        self._listening = threading.Event()
        self.log_path = os.path.join(make_temp_dir("balanced-log-"), "server.log")
        self.start_count = 0

    # -- process control --
    def command(self):
        cmd = [self.binary]
        if self.use_flags:
            cmd += ["--listen", "127.0.0.1:0", "--data-dir", self.data_dir, "--shards", str(self.shards)]
            if self.log_level:
                cmd += ["--log-level", self.log_level]
        cmd += self.extra_args
        return cmd

    def spawn(self):
        """Starts the process without waiting for it to listen."""
        if self.proc is not None and self.proc.poll() is None:
            raise ServerError("server already running")
        env = dict(os.environ)
        for key in list(env):
            if key.startswith("BALANCED_") and key != "BALANCED_BIN":
                del env[key]  # the caller's settings must not leak into the test
        env.update(self.extra_env)
        self._listening.clear()
        self.port = None
        with self._lines_lock:
            self.start_line_index = len(self.lines)
        self.start_count += 1
        self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.PIPE, env=env)
        with _cleanup_lock:
            if self not in _servers:
                _servers.append(self)
        self._reader = threading.Thread(target=self._read_stderr, args=(self.proc,), daemon=True)
        self._reader.start()
        return self.proc

    def start(self, timeout=START_TIMEOUT_S):
        self.spawn()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._listening.wait(0.05):
                return self
            if self.proc.poll() is not None:
                self._reader.join(2.0)
                raise ServerError("server exited with %s before listening; stderr:\n%s"
                                  % (self.proc.returncode, self.stderr_tail()))
        self.kill()
        raise ServerError("server did not log \"listening\" within %.0f s; stderr:\n%s"
                          % (timeout, self.stderr_tail()))

    def _read_stderr(self, proc):
        with open(self.log_path, "ab") as log:
            for raw in iter(proc.stderr.readline, b""):
                log.write(raw)
                log.flush()
                line = raw.decode("utf-8", "replace").rstrip("\n")
                with self._lines_lock:
                    self.lines.append(line)
                if not self._listening.is_set() and '"listening"' in line:
                    port = _port_from_line(line)
                    if port:
                        self.port = port
                        self._listening.set()
        try:
            proc.stderr.close()
        except Exception:
            pass

    def wait_exit(self, timeout):
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, sig=signal.SIGTERM, timeout=STOP_TIMEOUT_S):
        """Sends sig and waits; returns the exit code (kills with SIGKILL after timeout)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
            except ProcessLookupError:
                pass
        code = self.wait_exit(timeout)
        if code is None:
            self.kill()
            raise ServerError("server did not exit within %.0f s of signal %d" % (timeout, sig))
        if self._reader:
            self._reader.join(5.0)
        return code

    def kill(self):
        """SIGKILL, no questions asked (kill -9)."""
        if self.proc is not None and self.proc.poll() is None:
            try:
                self.proc.kill()
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                pass
        if self._reader:
            self._reader.join(5.0)
        return self.proc.returncode if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    # -- logs --
    def current_lines(self):
        with self._lines_lock:
            return list(self.lines[self.start_line_index:])

    def stderr_tail(self, count=40):
        lines = self.current_lines()
        return "\n".join(lines[-count:])

    def log_events(self):
        events = []
        for line in self.current_lines():
            try:
                events.append(json.loads(line))
            except ValueError:
                pass
        return events

    # -- clients --
    def client(self, timeout=REQUEST_TIMEOUT_S):
        if not self.port:
            raise ServerError("server is not listening")
        return Client("127.0.0.1", self.port, timeout)

    def raw(self, timeout=REQUEST_TIMEOUT_S):
        return RawConnection("127.0.0.1", self.port, timeout)

    def wait_ready(self, timeout=30.0):
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                c = self.client(timeout=5)
                status, body = c.get("/ready")
                c.close()
                last = (status, body)
                if status == 200:
                    return True
            except (OSError, http.client.HTTPException) as e:
                last = e
            time.sleep(0.05)
        raise ServerError("server not ready within %.0f s (last: %r)" % (timeout, last))


def _port_from_line(line):
    try:
        obj = json.loads(line)
        if isinstance(obj, dict) and obj.get("event") == "listening":
            port = obj.get("port")
            if isinstance(port, int) and 0 < port < 65536:
                return port
    except ValueError:
        pass
    if '"event":"listening"' in line.replace(" ", ""):
        m = re.search(r'"port"\s*:\s*(\d+)', line)
        if m:
            return int(m.group(1))
    return None


# ---------------------------------------------------------------------------------------
# Keep-alive JSON client.

class Response:
    __slots__ = ("status", "headers", "body", "raw")

    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.body = json.loads(raw.decode("utf-8")) if raw else None
        except ValueError:
            self.body = None

    def __iter__(self):  # status, body = client.get(...)
        return iter((self.status, self.body))

    def __repr__(self):
        text = self.raw[:600].decode("utf-8", "replace")
        return "HTTP %s %s" % (self.status, text)


class Client:
    """One HTTP/1.1 keep-alive connection. Methods return Response objects."""

    def __init__(self, host, port, timeout=REQUEST_TIMEOUT_S):
        self.host = host
        self.port = port
        self.timeout = timeout
        self.conn = http.client.HTTPConnection(host, port, timeout=timeout)
        self.connects = 0

    def close(self):
        self.conn.close()

    def reconnect(self):
        self.conn.close()
        self.conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)

    def request(self, method, path, body=None, headers=None):
        """body: a dict/list (sent as JSON), str or bytes (sent as is), or None."""
        if isinstance(body, (dict, list)):
            data = json.dumps(body).encode()
        elif isinstance(body, str):
            data = body.encode()
        else:
            data = body
        hdrs = {"Content-Type": "application/json"} if data is not None else {}
        if headers:
            hdrs.update(headers)
        if self.conn.sock is None:
            self.connects += 1
        try:
            self.conn.request(method, path, body=data, headers=hdrs)
            resp = self.conn.getresponse()
            raw = resp.read()
        except Exception:
            self.conn.close()
            raise
        result = Response(resp.status, {k.lower(): v for k, v in resp.getheaders()}, raw)
        if result.headers.get("connection", "").lower() == "close":
            self.conn.close()
        return result

    def get(self, path):
        return self.request("GET", path)

    def post(self, path, body):
        return self.request("POST", path, body)

    # -- API helpers --
    def tx(self, body):
        return self.post("/v1/transactions", body)

    def batch(self, items):
        return self.post("/v1/transactions/batch", {"transactions": items})

    def balance(self, account, currency):
        r = self.get("/v1/accounts/%s/balances/%s" % (account, currency))
        if r.status != 200 or not isinstance(r.body, dict):
            raise AssertionError("GET balance %s/%s: %r" % (account, currency, r))
        return r.body

    def balances(self, account):
        r = self.get("/v1/accounts/%s/balances" % account)
        if r.status != 200 or not isinstance(r.body, dict):
            raise AssertionError("GET balances %s: %r" % (account, r))
        return r.body

    def lookup(self, txid):
        return self.get("/v1/transactions/%s" % txid)

    def history(self, account, currency=None, limit=None, before=None):
        q = []
        if currency is not None:
            q.append("currency=" + currency)
        if limit is not None:
            q.append("limit=%s" % limit)
        if before is not None:
            q.append("before=" + _quote(before))
        path = "/v1/accounts/%s/transactions" % account
        if q:
            path += "?" + "&".join(q)
        return self.get(path)

    def full_history(self, account, currency=None, limit=1000, max_pages=100000):
        """All history entries, newest first, following next_before to the end."""
        entries = []
        before = None
        for _ in range(max_pages):
            r = self.history(account, currency=currency, limit=limit, before=before)
            if r.status != 200 or not isinstance(r.body, dict):
                raise AssertionError("GET history %s: %r" % (account, r))
            entries.extend(r.body.get("transactions", []))
            before = r.body.get("next_before")
            if before is None:
                return entries
        raise AssertionError("history of %s did not end within %d pages" % (account, max_pages))


def _quote(text):
    import urllib.parse
    return urllib.parse.quote(str(text), safe="")


# ---------------------------------------------------------------------------------------
# Raw socket connection for malformed HTTP, pipelining and huge bodies.

class RawConnection:
    def __init__(self, host, port, timeout=REQUEST_TIMEOUT_S):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.buf = b""
        self.eof = False

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def send(self, data):
        self.sock.sendall(data)

    def _fill(self):
        if self.eof:
            return False
        try:
            chunk = self.sock.recv(65536)
        except ConnectionResetError:
            chunk = b""
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def read_response(self):
        """Reads one response: (status, headers dict lowercased, body bytes), or None at EOF."""
        while b"\r\n\r\n" not in self.buf:
            if not self._fill():
                return None
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = self._read_chunked()
        else:
            length = int(headers.get("content-length", "0"))
            while len(self.buf) < length:
                if not self._fill():
                    raise ConnectionError("EOF inside a response body")
            body, self.buf = self.buf[:length], self.buf[length:]
        return status, headers, body

    def _read_chunked(self):
        body = b""
        for _ in range(1000000):
            while b"\r\n" not in self.buf:
                if not self._fill():
                    raise ConnectionError("EOF inside chunked body")
            size_line, self.buf = self.buf.split(b"\r\n", 1)
            size = int(size_line.split(b";")[0], 16)
            while len(self.buf) < size + 2:
                if not self._fill():
                    raise ConnectionError("EOF inside chunk")
            body += self.buf[:size]
            self.buf = self.buf[size + 2:]
            if size == 0:
                return body
        raise ConnectionError("too many chunks")

    def read_until_close(self, timeout=10.0):
        """True if the peer closes within timeout (anything buffered is discarded)."""
        self.sock.settimeout(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if not self._fill():
                    return True
            except socket.timeout:
                return False
        return False


def http_request_bytes(method, path, body=None, headers=None, version="HTTP/1.1"):
    if isinstance(body, (dict, list)):
        body = json.dumps(body).encode()
    elif isinstance(body, str):
        body = body.encode()
    lines = ["%s %s %s" % (method, path, version), "Host: 127.0.0.1"]
    hdrs = dict(headers or {})
    if body is not None:
        hdrs.setdefault("Content-Type", "application/json")
        hdrs.setdefault("Content-Length", str(len(body)))
    for k, v in hdrs.items():
        lines.append("%s: %s" % (k, v))
    data = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return data + (body or b"")


# ---------------------------------------------------------------------------------------
# Money.

def dec(text):
    return Decimal(str(text))


def canon(value):
    """Canonical decimal text: no exponent, no trailing fractional zeros, no trailing dot."""
    d = Decimal(value)
    if d == 0:
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def is_canonical(text):
    if not isinstance(text, str):
        return False
    if not re.fullmatch(r"-?(0|[1-9][0-9]{0,17})(\.[0-9]{0,17}[1-9])?", text):
        return False
    return text != "-0"


# ---------------------------------------------------------------------------------------
# Test runner.

class Failure(AssertionError):
    pass


class Check:
    """Per-test context: soft checks (the test goes on) and hard ones (require)."""

    def __init__(self, name):
        self.name = name
        self.failures = []

    def fail(self, message):
        self.failures.append(message)
        print("    FAIL %s: %s" % (self.name, message), flush=True)

    def ok(self, cond, message):
        if not cond:
            self.fail(message)
        return bool(cond)

    def eq(self, actual, expected, message=""):
        if actual != expected:
            self.fail("%s: expected %r, got %r" % (message, expected, actual))
            return False
        return True

    def require(self, cond, message):
        if not cond:
            raise Failure(message)

    def status(self, resp, expected, what):
        """Checks an HTTP status (int or tuple of ints); returns whether it matched."""
        allowed = expected if isinstance(expected, tuple) else (expected,)
        if resp.status not in allowed:
            self.fail("%s: expected HTTP %s, got %r" % (what, "/".join(map(str, allowed)), resp))
            return False
        return True

    def error(self, resp, status, code, what):
        """An error response: HTTP status and {"error": code, "message": text}."""
        good = self.status(resp, status, what)
        body = resp.body
        if not isinstance(body, dict):
            self.fail("%s: error body is not a JSON object: %r" % (what, resp))
            return False
        if body.get("error") != code:
            self.fail("%s: expected error %r, got %r" % (what, code, resp))
            good = False
        if not isinstance(body.get("message"), str) or not body.get("message"):
            self.fail("%s: error has no message: %r" % (what, resp))
            good = False
        return good


class Suite:
    def __init__(self, name, args):
        self.name = name
        self.args = args
        self.tests = []
        self.passed = 0
        self.failed = 0
        self.failed_names = []
        self.skipped = []

    def test(self, fn):
        self.tests.append(fn)
        return fn

    def run_one(self, fn):
        name = fn.__name__
        check = Check(name)
        t0 = time.monotonic()
        try:
            result = fn(check)
        except Failure as e:
            check.fail(str(e))
            result = None
        except Exception as e:
            check.fail("exception: %s\n%s" % (e, traceback.format_exc()))
            result = None
        elapsed = time.monotonic() - t0
        if result == "skip" and not check.failures:
            self.skipped.append(name)
            print("  SKIP %s (%.1fs)" % (name, elapsed), flush=True)
        elif check.failures:
            self.failed += 1
            self.failed_names.append(name)
            print("  FAILED %s (%.1fs, %d failures)" % (name, elapsed, len(check.failures)), flush=True)
        else:
            self.passed += 1
            print("  ok %s (%.1fs)" % (name, elapsed), flush=True)

    def main(self, setup=None, teardown=None):
        code = 1
        try:
            if setup is not None:
                setup()
            for fn in self.tests:
                if self.args.only and self.args.only not in fn.__name__:
                    continue
                self.run_one(fn)
        except Exception as e:
            self.failed += 1
            self.failed_names.append("<setup>")
            print("  FAILED <setup>: %s\n%s" % (e, traceback.format_exc()), flush=True)
        finally:
            if teardown is not None:
                try:
                    teardown()
                except Exception as e:
                    self.failed += 1
                    print("  FAILED <teardown>: %s" % e, flush=True)
            _cleanup()
        if self.failed_names:
            print("failed: %s" % ", ".join(self.failed_names))
        if self.skipped:
            print("skipped: %s" % ", ".join(self.skipped))
        print("%s: %d passed, %d failed" % (self.name, self.passed, self.failed), flush=True)
        code = 0 if self.failed == 0 and self.passed > 0 else 1
        sys.exit(code)


# ---------------------------------------------------------------------------------------
# Request builders.

_id_counter = [0]
_id_lock = threading.Lock()
_run_tag = "%x%04x" % (int(time.time()) & 0xFFFFFF, os.getpid() & 0xFFFF)


def new_id(prefix="t"):
    with _id_lock:
        _id_counter[0] += 1
        n = _id_counter[0]
    return "%s-%s-%d" % (prefix, _run_tag, n)


def op(type_, account, currency, amount, txid=None, to=None, memo=None):
    body = {"transaction_id": txid or new_id(), "type": type_, "account_id": account,
            "currency": currency, "amount": amount}
    if to is not None:
        body["to_account_id"] = to
    if memo is not None:
        body["memo"] = memo
    return body


def deposit(account, currency, amount, txid=None, **kw):
    return op("DEPOSIT", account, currency, amount, txid, **kw)


def withdraw(account, currency, amount, txid=None, **kw):
    return op("WITHDRAW", account, currency, amount, txid, **kw)


def freeze(account, currency, amount, txid=None, **kw):
    return op("FREEZE", account, currency, amount, txid, **kw)


def unfreeze(account, currency, amount, txid=None, **kw):
    return op("UNFREEZE", account, currency, amount, txid, **kw)


def deduct(account, currency, amount, txid=None, **kw):
    return op("DEDUCT_FROZEN", account, currency, amount, txid, **kw)


def transfer(account, to, currency, amount, txid=None, **kw):
    return op("TRANSFER", account, currency, amount, txid, to=to, **kw)


def leg(account, currency, available_delta=None, frozen_delta=None):
    item = {"account_id": account, "currency": currency}
    if available_delta is not None:
        item["available_delta"] = available_delta
    if frozen_delta is not None:
        item["frozen_delta"] = frozen_delta
    return item


def event(legs, txid=None, memo=None):
    body = {"transaction_id": txid or new_id("ev"), "type": "EVENT", "legs": legs}
    if memo is not None:
        body["memo"] = memo
    return body


# ---------------------------------------------------------------------------------------
# Expected effects of a request (for models that check the server).

def effects(body):
    """[(account, currency, d_available, d_frozen)] of a request if it applies (result ok)."""
    t = body["type"]
    t = {0: "DEPOSIT", 1: "WITHDRAW", 2: "FREEZE", 3: "UNFREEZE", 4: "TRANSFER"}.get(t, t)
    if t == "EVENT":
        return [(int(l["account_id"]), l["currency"], dec(l.get("available_delta", "0")),
                 dec(l.get("frozen_delta", "0"))) for l in body["legs"]]
    a = dec(body["amount"])
    acct = int(body["account_id"])
    cur = body["currency"]
    if t == "DEPOSIT":
        return [(acct, cur, a, Decimal(0))]
    if t == "WITHDRAW":
        return [(acct, cur, -a, Decimal(0))]
    if t == "FREEZE":
        return [(acct, cur, -a, a)]
    if t == "UNFREEZE":
        return [(acct, cur, a, -a)]
    if t == "DEDUCT_FROZEN":
        return [(acct, cur, Decimal(0), -a)]
    if t == "TRANSFER":
        return [(acct, cur, -a, Decimal(0)), (int(body["to_account_id"]), cur, a, Decimal(0))]
    raise ValueError("unknown type %r" % (t,))


def touched(body):
    return [(a, c) for a, c, _, _ in effects(body)]


class Model:
    """Expected balances: {(account, currency): [available, frozen]}."""

    def __init__(self):
        self.bal = {}

    def get(self, account, currency):
        return self.bal.get((int(account), currency), [Decimal(0), Decimal(0)])

    def apply(self, body):
        for acct, cur, da, df in effects(body):
            cell = self.bal.setdefault((acct, cur), [Decimal(0), Decimal(0)])
            cell[0] += da
            cell[1] += df

    def totals(self):
        out = {}
        for (acct, cur), (a, f) in self.bal.items():
            out[cur] = out.get(cur, Decimal(0)) + a + f
        return out


def replay_history(entries):
    """Replays one account's history (newest first) from zero: {currency: [avail, frozen]},
    and a list of inconsistencies found on the way."""
    problems = []
    state = {}
    for e in reversed(entries):
        cur = e.get("currency")
        cell = state.setdefault(cur, [Decimal(0), Decimal(0)])
        try:
            ab, aa = dec(e["available_before"]), dec(e["available_after"])
            fb, fa = dec(e["frozen_before"]), dec(e["frozen_after"])
            ad, fd = dec(e["available_delta"]), dec(e["frozen_delta"])
        except (KeyError, TypeError, ArithmeticError) as ex:
            problems.append("entry %s lacks a field: %s" % (e.get("transaction_id"), ex))
            continue
        if ab != cell[0] or fb != cell[1]:
            problems.append("entry %s (%s): before (%s, %s) but the replay has (%s, %s)"
                            % (e.get("transaction_id"), cur, ab, fb, cell[0], cell[1]))
        if aa - ab != ad or fa - fb != fd:
            problems.append("entry %s: deltas do not match before/after" % e.get("transaction_id"))
        if e.get("result") != "ok" and (ad != 0 or fd != 0):
            problems.append("entry %s: result %s with nonzero deltas" % (e.get("transaction_id"), e.get("result")))
        cell[0] = cell[0] + ad
        cell[1] = cell[1] + fd
    return state, problems


def balance_map(body):
    """{(account, currency): (available, frozen)} of a response's balances list."""
    out = {}
    for b in body.get("balances") or []:
        out[(int(b["account_id"]), b["currency"])] = (dec(b["available"]), dec(b["frozen"]))
    return out


def wal_segments(data_dir, shard):
    d = os.path.join(data_dir, "shard-%d" % shard, "wal")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if re.fullmatch(r"\d{20}\.wal", n))


def snapshots(data_dir, shard):
    d = os.path.join(data_dir, "shard-%d" % shard, "snapshots")
    if not os.path.isdir(d):
        return []
    return sorted(os.path.join(d, n) for n in os.listdir(d) if re.fullmatch(r"\d{20}\.snap", n))


def rng_from(seed):
    if seed is None:
        seed = int(os.environ.get("BALANCED_TEST_SEED", "0")) or random.SystemRandom().randrange(1, 2**31)
    return seed, random.Random(seed)
