#!/usr/bin/env python3
"""test_api.py -- end-to-end tests of balanced's HTTP API against a real server.

Every route of SPEC.md, every operation's success and business rejections, every
validation error code, duplicates and conflicts, amounts at the edges, batches, history
paging, transaction look-up, HTTP behaviour (404/405, 413, pipelining, keep-alive,
malformed requests), the command line, cross-shard operations on a 4-shard server, and a
restart that must keep everything.

    python3 tests/e2e/test_api.py [--bin build/balanced] [--only NAME] [--seed N]
"""

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import (MAX_AMOUNT, MIN_AMOUNT, U64_MAX, Decimal, Model, canon, dec, deduct,  # noqa: E402
                     deposit, event, freeze, leg, new_id, transfer, unfreeze, withdraw)

ARGS = h.parse_args(__doc__)
SEED, RNG = h.rng_from(ARGS.seed)
suite = h.Suite("e2e_api", ARGS)

S = {}  # "main": 2-shard server for most tests; "four": 4-shard server


def main_server():
    return S["main"]


_account = [1000]
_account_lock = threading.Lock()


def acct():
    """A fresh account id (spread out so that the shards all get some)."""
    with _account_lock:
        _account[0] += 1
        return _account[0] * 7919 + RNG.randrange(0, 7919)


def cli():
    return main_server().client()


# ---------------------------------------------------------------------------------------
# Checks shared by the tests.

def check_balances(c, resp, model, keys, what):
    """resp.body["balances"] equals the model's values for keys, in that order."""
    body = resp.body if isinstance(resp.body, dict) else {}
    got = body.get("balances")
    if not isinstance(got, list):
        c.fail("%s: balances is not a list: %r" % (what, resp))
        return False
    expected = []
    for account, currency in keys:
        a, f = model.get(account, currency)
        expected.append({"account_id": int(account), "currency": currency, "available": canon(a),
                         "frozen": canon(f)})
    if got != expected:
        c.fail("%s: balances: expected %s, got %s" % (what, json.dumps(expected), json.dumps(got)))
        return False
    for b in got:
        if not isinstance(b.get("account_id"), int):
            c.fail("%s: account_id in balances is not a JSON number: %r" % (what, b))
    return True


def check_tx(c, resp, body, result, status, duplicate=False, what=None):
    what = what or "%s %s" % (body.get("type"), body.get("transaction_id"))
    ok = c.status(resp, status, what)
    r = resp.body
    if not isinstance(r, dict):
        c.fail("%s: body is not a JSON object: %r" % (what, resp))
        return False
    ok &= c.eq(r.get("transaction_id"), body.get("transaction_id"), what + ": transaction_id")
    ok &= c.eq(r.get("result"), result, what + ": result")
    ok &= c.eq(r.get("duplicate"), duplicate, what + ": duplicate")
    seq = r.get("sequence")
    if result != "conflict":
        ok &= c.ok(isinstance(seq, int) and not isinstance(seq, bool) and seq > 0,
                   "%s: sequence must be a positive integer: %r" % (what, resp))
    return ok


def apply_ok(c, client, body, model, what=None):
    r = client.tx(body)
    model.apply(body)
    if check_tx(c, r, body, "ok", 200, what=what):
        check_balances(c, r, model, h.touched(body), what or body["transaction_id"])
    return r


def apply_reject(c, client, body, model, result, what=None):
    r = client.tx(body)
    if check_tx(c, r, body, result, 422, what=what):
        check_balances(c, r, model, h.touched(body), what or body["transaction_id"])
    return r


def check_stored(c, client, model, keys, what):
    for account, currency in keys:
        b = client.balance(account, currency)
        a, f = model.get(account, currency)
        c.eq((b.get("available"), b.get("frozen")), (canon(a), canon(f)),
             "%s: GET balance %s/%s" % (what, account, currency))


def check_error(c, client, body, code, what, status=400, path="/v1/transactions"):
    r = client.post(path, body)
    c.error(r, status, code, what)
    return r


# ---------------------------------------------------------------------------------------
# Service routes and the command line.

@suite.test
def health_ready_metrics(c):
    k = cli()
    r = k.get("/health")
    c.status(r, 200, "GET /health")
    c.eq(r.body, {"status": "ok"}, "/health body")
    r = k.get("/ready")
    c.status(r, 200, "GET /ready")
    c.eq(r.body, {"status": "ready"}, "/ready body")
    k.tx(deposit(acct(), "USDT", "1"))
    r = k.get("/metrics")
    c.status(r, 200, "GET /metrics")
    text = r.raw.decode("utf-8", "replace")
    for name in ("balanced_requests_total", "balanced_results_total", "balanced_wal_fsync_seconds_bucket",
                 "balanced_wal_fsync_seconds_count", "balanced_batch_size_bucket",
                 "balanced_request_duration_seconds_bucket", "balanced_request_duration_seconds_sum"):
        c.ok(name in text, "/metrics lacks %s" % name)
    c.ok("text/plain" in r.headers.get("content-type", ""),
         "/metrics content-type should be text/plain: %r" % r.headers.get("content-type"))
    for line in text.splitlines():
        if line and not line.startswith("#"):
            parts = line.rsplit(" ", 1)
            try:
                float(parts[-1])
            except ValueError:
                c.fail("/metrics line is not 'name value': %r" % line)
                break
    k.close()


@suite.test
def data_dir_layout(c):
    d = main_server().data_dir
    for i in range(main_server().shards):
        c.ok(len(h.wal_segments(d, i)) >= 1, "no wal segment in %s/shard-%d/wal" % (d, i))
    c.ok(os.path.isfile(os.path.join(d, "journal.sqlite3")), "no journal.sqlite3 in %s" % d)


def run_cli(args, env=None, timeout=20):
    e = {k: v for k, v in os.environ.items() if not k.startswith("BALANCED_")}
    e.update(env or {})
    try:
        p = subprocess.run([ARGS.bin] + args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, timeout=timeout, env=e)
        return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")
    except subprocess.TimeoutExpired:
        return None, "", "(did not exit within %d s)" % timeout


@suite.test
def cli_help_and_invalid_flags(c):
    code, out, err = run_cli(["--help"])
    c.eq(code, 0, "--help exit code")
    text = out + err
    for flag in ("--listen", "--data-dir", "--shards", "--http-threads", "--balance-capacity",
                 "--snapshot-every", "--log-level", "--nonce-memory"):
        c.ok(flag in text, "--help does not mention %s" % flag)
    d = h.make_temp_dir()
    base = ["--listen", "127.0.0.1:0", "--data-dir", d]
    bad = [["--shards", "abc"], ["--shards", "0"], ["--shards", "-1"], ["--listen", "127.0.0.1:notaport"],
           ["--http-threads", "x"], ["--balance-capacity", "lots"], ["--snapshot-every", "-3"],
           ["--log-level", "loud"], ["--no-such-flag", "1"], ["--nonce-memory", "0"],
           ["--nonce-memory", "67108865"]]
    for extra in bad:
        flags = {"--listen": "127.0.0.1:0", "--data-dir": d, "--shards": "1"}
        flags[extra[0]] = extra[1]
        args = [x for kv in flags.items() for x in kv]
        code, out, err = run_cli(args)
        c.ok(code is not None and code != 0, "%s: expected a non-zero exit, got %r (stderr %r)" % (extra, code, err[-300:]))
        c.ok(err.strip() != "", "%s: expected a message on stderr" % (extra,))
    code, out, err = run_cli([], env={"BALANCED_LISTEN": "127.0.0.1:0", "BALANCED_DATA_DIR": d, "BALANCED_SHARDS": "abc"})
    c.ok(code is not None and code != 0, "BALANCED_SHARDS=abc: expected a non-zero exit, got %r" % (code,))


@suite.test
def env_configuration_and_sigint(c):
    d = h.make_temp_dir()
    s = h.Server(ARGS.bin, data_dir=d, use_flags=False,
                 env={"BALANCED_LISTEN": "127.0.0.1:0", "BALANCED_DATA_DIR": d, "BALANCED_SHARDS": "3"})
    s.start()
    k = s.client()
    a = acct()
    r = k.tx(deposit(a, "USDT", "5"))
    c.status(r, 200, "deposit on env-configured server")
    k.close()
    for i in range(3):
        c.ok(os.path.isdir(os.path.join(d, "shard-%d" % i)), "BALANCED_SHARDS=3: no shard-%d in %s" % (i, d))
    c.ok(not os.path.isdir(os.path.join(d, "shard-3")), "BALANCED_SHARDS=3 made a shard-3")
    code = s.stop(signal.SIGINT)
    c.eq(code, 0, "exit code after SIGINT")
    s.start()
    k = s.client()
    c.eq(k.balance(a, "USDT").get("available"), "5", "balance after SIGINT restart")
    k.close()
    c.eq(s.stop(signal.SIGTERM), 0, "exit code after SIGTERM")


# ---------------------------------------------------------------------------------------
# Operations.

@suite.test
def deposit_withdraw(c):
    k, m, a = cli(), Model(), acct()
    r = apply_ok(c, k, deposit(a, "USDT", "100.5"), m)
    seq1 = r.body.get("sequence") if isinstance(r.body, dict) else 0
    r = apply_ok(c, k, withdraw(a, "USDT", "0.5"), m)
    seq2 = r.body.get("sequence") if isinstance(r.body, dict) else 0
    c.ok(isinstance(seq1, int) and isinstance(seq2, int) and seq2 > seq1, "sequence grows: %r then %r" % (seq1, seq2))
    apply_reject(c, k, withdraw(a, "USDT", "100.000000000000000001"), m, "insufficient_available")
    apply_reject(c, k, withdraw(a, "BTC", "1"), m, "insufficient_available", "withdraw of a never-credited currency")
    apply_ok(c, k, withdraw(a, "USDT", "100"), m)
    check_stored(c, k, m, [(a, "USDT"), (a, "BTC")], "deposit_withdraw")
    b = acct()
    apply_reject(c, k, withdraw(b, "USDT", "1"), m, "insufficient_available", "withdraw from a new account")
    k.close()


@suite.test
def freeze_unfreeze_deduct(c):
    k, m, a = cli(), Model(), acct()
    apply_ok(c, k, deposit(a, "BTC", "10"), m)
    apply_ok(c, k, freeze(a, "BTC", "4"), m)
    apply_reject(c, k, freeze(a, "BTC", "6.1"), m, "insufficient_available")
    apply_ok(c, k, unfreeze(a, "BTC", "1.5"), m)
    apply_reject(c, k, unfreeze(a, "BTC", "2.6"), m, "insufficient_frozen")
    apply_ok(c, k, deduct(a, "BTC", "2"), m)
    apply_reject(c, k, deduct(a, "BTC", "0.500000000000000001"), m, "insufficient_frozen")
    apply_ok(c, k, deduct(a, "BTC", "0.5"), m)
    apply_reject(c, k, unfreeze(a, "BTC", "0.000000000000000001"), m, "insufficient_frozen")
    apply_reject(c, k, deduct(a, "ETH", "1"), m, "insufficient_frozen", "deduct of a never-credited currency")
    check_stored(c, k, m, [(a, "BTC")], "freeze_unfreeze_deduct")
    c.eq(m.get(a, "BTC"), [Decimal("7.5"), Decimal(0)], "model sanity")
    k.close()


@suite.test
def transfer_ops(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    apply_ok(c, k, deposit(a, "USDT", "50"), m)
    r = apply_ok(c, k, transfer(a, b, "USDT", "20"), m)
    apply_ok(c, k, transfer(b, a, "USDT", "5"), m)
    apply_reject(c, k, transfer(a, b, "USDT", "35.000000000000000001"), m, "insufficient_available")
    apply_ok(c, k, freeze(a, "USDT", "30"), m)
    apply_reject(c, k, transfer(a, b, "USDT", "5.1"), m, "insufficient_available", "transfer must not use frozen funds")
    apply_ok(c, k, transfer(a, b, "USDT", "5"), m)
    apply_ok(c, k, unfreeze(a, "USDT", "30"), m)
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT")], "transfer")
    # account ids given as strings of digits
    body = transfer(str(b), str(a), "USDT", "1")
    r = k.tx(body)
    m.apply(body)
    if check_tx(c, r, body, "ok", 200, what="transfer with string account ids"):
        check_balances(c, r, m, [(b, "USDT"), (a, "USDT")], "transfer with string ids")
    k.close()


@suite.test
def event_settlement(c):
    k, m, buyer, seller = cli(), Model(), acct(), acct()
    apply_ok(c, k, deposit(buyer, "USDT", "1000"), m)
    apply_ok(c, k, deposit(seller, "BTC", "2"), m)
    apply_ok(c, k, freeze(buyer, "USDT", "600"), m)
    apply_ok(c, k, freeze(seller, "BTC", "1"), m)
    trade = event([leg(buyer, "USDT", frozen_delta="-500"), leg(buyer, "BTC", available_delta="0.99"),
                   leg(seller, "BTC", frozen_delta="-1"), leg(seller, "USDT", available_delta="499.5")],
                  memo="trade 1")
    r = apply_ok(c, k, trade, m, "trade settlement EVENT")
    check_stored(c, k, m, [(buyer, "USDT"), (buyer, "BTC"), (seller, "BTC"), (seller, "USDT")], "event")
    # a leg with both deltas, and a missing delta counts as zero
    ev = event([leg(buyer, "USDT", available_delta="-100", frozen_delta="100"), leg(seller, "ETH", "3")])
    apply_ok(c, k, ev, m, "EVENT with both deltas and an omitted delta")
    # 16 legs is the maximum
    legs = [leg(acct(), "USDT", available_delta="1") for _ in range(16)]
    apply_ok(c, k, event(legs), m, "EVENT with 16 legs")
    k.close()


@suite.test
def event_atomicity(c):
    k, m, a, b, x = cli(), Model(), acct(), acct(), acct()
    apply_ok(c, k, deposit(a, "USDT", "100"), m)
    apply_ok(c, k, deposit(b, "BTC", "1"), m)
    apply_ok(c, k, freeze(b, "BTC", "0.5"), m)
    keys = [(a, "USDT"), (b, "USDT"), (b, "BTC"), (a, "BTC"), (x, "ETH")]
    cases = [
        ("last leg short of available", [leg(a, "USDT", "-10"), leg(b, "USDT", "10"), leg(x, "ETH", "5"),
                                         leg(b, "BTC", "-1.000000000000000001")], "insufficient_available"),
        ("first leg short of available", [leg(a, "USDT", "-100.1"), leg(b, "USDT", "100.1")], "insufficient_available"),
        ("frozen short", [leg(a, "BTC", "1"), leg(b, "BTC", frozen_delta="-0.6")], "insufficient_frozen"),
        ("overflow", [leg(a, "USDT", "-1"), leg(x, "ETH", MAX_AMOUNT), leg(b, "USDT", "1")], None),
    ]
    for what, legs, result in cases:
        body = event(legs)
        if result is None:  # needs a balance at the maximum first
            apply_ok(c, k, deposit(x, "ETH", MAX_AMOUNT), m)
            result = "overflow"
        r = apply_reject(c, k, body, m, result, "EVENT " + what)
        if isinstance(r.body, dict) and isinstance(r.body.get("balances"), list):
            c.eq(len(r.body["balances"]), len(legs), "EVENT %s: one balance per leg" % what)
        check_stored(c, k, m, keys, "after failed EVENT (%s)" % what)
    lookup = k.lookup(body["transaction_id"])
    c.status(lookup, 200, "lookup of a rejected EVENT")
    if isinstance(lookup.body, dict):
        c.eq(lookup.body.get("result"), "overflow", "rejected EVENT lookup result")
    hist = k.history(b).body
    entries = hist.get("transactions", []) if isinstance(hist, dict) else []
    for e in entries:
        if e.get("result") != "ok":
            c.ok(dec(e.get("available_delta", "1")) == 0 and dec(e.get("frozen_delta", "1")) == 0,
                 "a rejected EVENT's history entry must have zero deltas: %r" % e)
    k.close()


@suite.test
def legacy_numeric_types(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    for t, name, amount, extra in ((0, "DEPOSIT", "10", {}), (1, "WITHDRAW", "1", {}), (2, "FREEZE", "3", {}),
                                   (3, "UNFREEZE", "1", {}), (4, "TRANSFER", "2", {"to_account_id": b})):
        body = {"transaction_id": new_id("legacy"), "type": t, "account_id": a, "currency": "USDT",
                "amount": amount}
        body.update(extra)
        r = apply_ok(c, k, body, m, "legacy type %d" % t)
        lk = k.lookup(body["transaction_id"])
        if c.status(lk, 200, "lookup legacy %d" % t) and isinstance(lk.body, dict):
            c.eq(lk.body.get("type"), name, "stored type of legacy %d" % t)
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT")], "legacy")
    for bad in (5, -1, 6, 1.5, True, None, "deposit", "Deposit", "FOO", "", "0"):
        body = {"transaction_id": new_id("legacy"), "type": bad, "account_id": a, "currency": "USDT", "amount": "1"}
        check_error(c, k, body, "invalid_type", "type %r" % (bad,))
    body = {"transaction_id": new_id("legacy"), "account_id": a, "currency": "USDT", "amount": "1"}
    check_error(c, k, body, "invalid_type", "missing type")
    k.close()


# ---------------------------------------------------------------------------------------
# Idempotency.

@suite.test
def duplicates(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    first = deposit(a, "USDT", "10")
    r1 = apply_ok(c, k, first, m)
    first_seq = (r1.body or {}).get("sequence")
    apply_ok(c, k, deposit(a, "USDT", "5"), m)  # balances move on after the original
    for what, body in (("same body", dict(first)),
                       ("same body, other key order", dict(reversed(list(first.items())))),
                       ("amount by value", dict(first, amount="10.000")),
                       ("legacy type equals its name", dict(first, type=0)),
                       ("account id as a string", dict(first, account_id=str(a)))):
        r2 = k.tx(body)
        if check_tx(c, r2, first, "ok", 200, duplicate=True, what="duplicate (%s)" % what):
            c.eq(r2.body.get("sequence"), r1.body.get("sequence"), "duplicate (%s): sequence" % what)
            c.eq(r2.body.get("balances"), r1.body.get("balances"), "duplicate (%s): balances as after the original" % what)
    check_stored(c, k, m, [(a, "USDT")], "no second effect")
    # duplicates of a transfer and an event
    t = transfer(a, b, "USDT", "3")
    r1 = apply_ok(c, k, t, m)
    e = event([leg(a, "USDT", "-1"), leg(b, "USDT", "1")])
    e1 = apply_ok(c, k, e, m)
    for body, orig in ((t, r1), (e, e1)):
        r2 = k.tx(body)
        if check_tx(c, r2, body, "ok", 200, duplicate=True):
            c.eq(r2.body.get("sequence"), orig.body.get("sequence"), "duplicate %s: sequence" % body["type"])
            c.eq(r2.body.get("balances"), orig.body.get("balances"), "duplicate %s: balances" % body["type"])
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT")], "duplicates of transfer/event")
    # a duplicate sent on another connection, and inside a batch
    k2 = cli()
    r2 = k2.tx(t)
    check_tx(c, r2, t, "ok", 200, duplicate=True, what="duplicate on another connection")
    rb = k2.batch([t, first])
    if c.status(rb, 200, "batch of duplicates") and isinstance(rb.body, dict):
        res = rb.body.get("results") or []
        c.eq([x.get("duplicate") for x in res], [True, True], "batch duplicates flagged")
        c.eq([x.get("sequence") for x in res], [r1.body.get("sequence"), first_seq], "batch duplicate sequences")
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT")], "after duplicate batch")
    k.close()
    k2.close()


@suite.test
def conflicts(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    first = deposit(a, "USDT", "10", memo="one")
    r1 = apply_ok(c, k, first, m)
    variants = [("other amount", dict(first, amount="11")), ("other account", dict(first, account_id=b)),
                ("other currency", dict(first, currency="BTC")), ("other type", dict(first, type="WITHDRAW")),
                ("transfer", dict(first, type="TRANSFER", to_account_id=b)),
                ("event", event([leg(a, "USDT", "10")], txid=first["transaction_id"]))]
    for what, body in variants:
        r = k.tx(body)
        if check_tx(c, r, body, "conflict", 409, duplicate=r.body.get("duplicate") if isinstance(r.body, dict) else None,
                    what="conflict (%s)" % what):
            c.eq(r.body.get("balances"), [], "conflict (%s): balances" % what)
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT"), (a, "BTC")], "nothing applied by conflicts")
    lk = k.lookup(first["transaction_id"])
    if c.status(lk, 200, "lookup after conflicts") and isinstance(lk.body, dict):
        c.eq(lk.body.get("amount"), "10", "the original stays")
        c.eq(lk.body.get("sequence"), r1.body.get("sequence"), "the original's sequence")
    # the original still answers as a duplicate
    r = k.tx(first)
    check_tx(c, r, first, "ok", 200, duplicate=True, what="original after conflicts")
    k.close()


@suite.test
def rejected_consumes_id(c):
    k, m, a = cli(), Model(), acct()
    w = withdraw(a, "USDT", "5")
    r1 = apply_reject(c, k, w, m, "insufficient_available")
    apply_ok(c, k, deposit(a, "USDT", "100"), m)
    r2 = k.tx(w)
    if check_tx(c, r2, w, "insufficient_available", 422, duplicate=True, what="retry of a rejected withdraw"):
        c.eq(r2.body.get("sequence"), r1.body.get("sequence"), "retry: same sequence")
        c.eq(r2.body.get("balances"), r1.body.get("balances"), "retry: balances as after the original")
    check_stored(c, k, m, [(a, "USDT")], "retry had no effect")
    r3 = k.tx(dict(w, amount="1"))
    check_tx(c, r3, w, "conflict", 409, duplicate=r3.body.get("duplicate") if isinstance(r3.body, dict) else None,
             what="rejected id with other content")
    # also for an EVENT and in a batch
    e = event([leg(a, "USDT", "-1000")])
    e1 = apply_reject(c, k, e, m, "insufficient_available")
    apply_ok(c, k, deposit(a, "USDT", "1000"), m)
    rb = k.batch([e])
    if c.status(rb, 200, "batch retry of rejected event") and isinstance(rb.body, dict):
        item = (rb.body.get("results") or [{}])[0]
        c.eq((item.get("result"), item.get("duplicate"), item.get("sequence")),
             ("insufficient_available", True, e1.body.get("sequence") if isinstance(e1.body, dict) else None),
             "batch retry of rejected EVENT")
    check_stored(c, k, m, [(a, "USDT")], "event retry had no effect")
    k.close()


# ---------------------------------------------------------------------------------------
# Amounts.

@suite.test
def amount_edges(c):
    k, m = cli(), Model()
    a, b, x = acct(), acct(), acct()
    apply_ok(c, k, deposit(a, "USDT", MIN_AMOUNT), m, "deposit of the smallest amount")
    apply_ok(c, k, withdraw(a, "USDT", MIN_AMOUNT), m)
    apply_reject(c, k, withdraw(a, "USDT", MIN_AMOUNT), m, "insufficient_available")
    apply_ok(c, k, deposit(b, "USDT", MAX_AMOUNT), m, "deposit of the largest amount")
    apply_reject(c, k, deposit(b, "USDT", MIN_AMOUNT), m, "overflow", "deposit past the maximum")
    apply_reject(c, k, event([leg(b, "USDT", MIN_AMOUNT)]), m, "overflow", "EVENT past the maximum")
    apply_ok(c, k, freeze(b, "USDT", MAX_AMOUNT), m, "freeze of the maximum")
    apply_ok(c, k, deposit(b, "USDT", MAX_AMOUNT), m, "available and frozen both at the maximum")
    apply_reject(c, k, unfreeze(b, "USDT", MIN_AMOUNT), m, "overflow", "unfreeze into a full available")
    apply_ok(c, k, withdraw(b, "USDT", MAX_AMOUNT), m)
    apply_ok(c, k, unfreeze(b, "USDT", MAX_AMOUNT), m)
    apply_ok(c, k, deposit(x, "USDT", "0.1"), m)
    apply_ok(c, k, deposit(x, "USDT", "0.2"), m)
    r = k.balance(x, "USDT")
    c.eq(r.get("available"), "0.3", "0.1 + 0.2 is exactly 0.3")
    apply_ok(c, k, deposit(x, "USDT", "1.000000000000000000"), m, "18 fractional zeros")
    apply_ok(c, k, deposit(x, "USDT", "123456789012345678"), m, "18 integer digits")
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT"), (x, "USDT")], "amount edges")
    k.close()


@suite.test
def canonical_amounts(c):
    k, a = cli(), acct()
    for amount, expected in (("100.500", "100.5"), ("7.000", "107.5"), ("0.50", "108"), ("1.0", "109")):
        r = k.tx(deposit(a, "USDT", amount))
        if c.status(r, 200, "deposit %s" % amount) and isinstance(r.body, dict):
            c.eq(r.body["balances"][0]["available"], expected, "canonical after deposit %s" % amount)
    lk = None
    body = deposit(a, "USDT", "2.50")
    k.tx(body)
    lk = k.lookup(body["transaction_id"])
    if c.status(lk, 200, "lookup") and isinstance(lk.body, dict):
        c.eq(lk.body.get("amount"), "2.5", "stored amount is canonical")
    bal = k.balance(a, "USDT")
    c.eq((bal.get("available"), bal.get("frozen")), ("111.5", "0"), "canonical GET")
    k.close()


# ---------------------------------------------------------------------------------------
# Validation errors.

def base(**kw):
    body = {"transaction_id": new_id("bad"), "type": "DEPOSIT", "account_id": 42, "currency": "USDT",
            "amount": "1"}
    body.update(kw)
    return body


def drop(body, key):
    body = dict(body)
    del body[key]
    return body


def check_not_consumed(c, k, txid, what):
    if isinstance(txid, str) and txid and all(ch.isalnum() or ch in "._:-" for ch in txid) and len(txid) <= 64:
        r = k.lookup(txid)
        c.status(r, 404, "%s: the id must not be consumed" % what)


@suite.test
def errors_invalid_json(c):
    k = cli()
    tid = new_id("bad")
    good = '"transaction_id":"%s","type":"DEPOSIT","account_id":42,"currency":"USDT","amount":"1"' % tid
    for what, raw in (("empty body", ""), ("not json", "not json"), ("truncated", "{" + good),
                      ("duplicate key", "{" + good + ',"amount":"2"}'),
                      ("duplicate transaction_id", '{"transaction_id":"x1",' + good + "}"),
                      ("trailing garbage", "{" + good + "} x"), ("single quotes", "{'a': 1}"),
                      ("trailing comma", "{" + good + ",}"), ("bare string", '"hello"')):
        r = k.post("/v1/transactions", raw)
        c.error(r, 400, "invalid_json", what)
    check_not_consumed(c, k, tid, "invalid_json")
    r = k.post("/v1/transactions/batch", "{not json")
    c.error(r, 400, "invalid_json", "batch that is not json")
    k.close()


@suite.test
def errors_transaction_id(c):
    k = cli()
    for what, value in (("empty", ""), ("65 chars", "a" * 65), ("space", "has space"), ("non-ascii", "caf\u00e9"),
                        ("slash", "a/b"), ("hash", "a#b"), ("number", 42), ("null", None), ("object", {"a": 1}),
                        ("plus", "a+b")):
        check_error(c, k, base(transaction_id=value), "invalid_transaction_id", "transaction_id %s" % what)
    check_error(c, k, drop(base(), "transaction_id"), "invalid_transaction_id", "missing transaction_id")
    m = Model()
    for tid in ("a" * 64, "AZaz09._:-" + new_id("x"), "9" + h._run_tag.replace("-", "") + "7"):
        body = base(transaction_id=tid, account_id=acct())
        apply_ok(c, k, body, m, "valid transaction_id %r" % tid)
        r = k.lookup(tid)
        c.status(r, 200, "lookup of %r" % tid)
    k.close()


@suite.test
def errors_account(c):
    k = cli()
    for what, value in (("zero", 0), ("zero string", "0"), ("negative", -1), ("2^64", 2**64),
                        ("2^64 string", str(2**64)), ("leading zero", "0123"), ("letters", "abc"),
                        ("fraction", 1.5), ("empty", ""), ("null", None), ("digits and letters", "12a"),
                        ("bool", True), ("exponent", 1e3), ("negative string", "-5"), ("spaced", " 5")):
        body = base(account_id=value)
        check_error(c, k, body, "invalid_account", "account_id %s" % what)
        check_not_consumed(c, k, body["transaction_id"], "account_id %s" % what)
    check_error(c, k, drop(base(), "account_id"), "invalid_account", "missing account_id")
    check_error(c, k, base(to_account_id=7), "invalid_account", "to_account_id on a DEPOSIT")
    check_error(c, k, base(type="WITHDRAW", to_account_id=7), "invalid_account", "to_account_id on a WITHDRAW")
    check_error(c, k, base(type="TRANSFER"), "invalid_account", "TRANSFER without to_account_id")
    check_error(c, k, base(type="TRANSFER", to_account_id=42), "invalid_account", "TRANSFER to itself")
    check_error(c, k, base(type="TRANSFER", to_account_id="42"), "invalid_account", "TRANSFER to itself (string)")
    check_error(c, k, base(type="TRANSFER", to_account_id=0), "invalid_account", "TRANSFER to account 0")
    check_error(c, k, base(type=4, to_account_id=2**64), "invalid_account", "legacy TRANSFER to 2^64")
    m = Model()
    for value in (U64_MAX, str(U64_MAX - 1), 1, "2"):
        body = base(account_id=value)
        apply_ok(c, k, body, m, "account_id %r" % (value,))
        b = k.balance(int(value), "USDT")
        c.eq(b.get("account_id"), int(value), "GET balance account_id as a number")
    k.close()


@suite.test
def errors_currency(c):
    k = cli()
    for what, value in (("empty", ""), ("lower case", "usdt"), ("mixed case", "Usdt"), ("11 chars", "ABCDEFGHIJK"),
                        ("dash", "US-D"), ("space", "US D"), ("number", 5), ("null", None), ("non-ascii", "\u00c9UR")):
        body = base(currency=value)
        check_error(c, k, body, "invalid_currency", "currency %s" % what)
        check_not_consumed(c, k, body["transaction_id"], "currency %s" % what)
    check_error(c, k, drop(base(), "currency"), "invalid_currency", "missing currency")
    m = Model()
    a = acct()
    for cur in ("ABCDEFGHIJ", "1INCH", "X", "0"):
        apply_ok(c, k, base(account_id=a, currency=cur), m, "currency %r" % cur)
    r = k.balances(a)
    c.eq([b.get("currency") for b in r.get("balances", [])], sorted(["ABCDEFGHIJ", "1INCH", "X", "0"]),
         "balances sorted by currency")
    k.close()


@suite.test
def errors_amount(c):
    k = cli()
    for what, value in (("zero", "0"), ("zero with decimals", "0.000000000000000000"), ("negative", "-1"),
                        ("exponent", "1e3"), ("19 fractional digits", "1.0000000000000000001"),
                        ("19 integer digits", "1000000000000000000"), ("JSON number", 5), ("JSON float", 1.5),
                        ("empty", ""), ("letters", "abc"), ("leading space", " 1"), ("plus sign", "+1"),
                        ("two dots", "1.2.3"), ("null", None), ("hex", "0x10"), ("infinity", "Infinity"),
                        ("comma", "1,5"), ("array", ["1"])):
        body = base(amount=value)
        check_error(c, k, body, "invalid_amount", "amount %s" % what)
        check_not_consumed(c, k, body["transaction_id"], "amount %s" % what)
    check_error(c, k, drop(base(), "amount"), "invalid_amount", "missing amount")
    check_error(c, k, base(type="TRANSFER", to_account_id=43, amount="0"), "invalid_amount", "TRANSFER of 0")
    check_error(c, k, base(type="FREEZE", amount="-5"), "invalid_amount", "FREEZE of -5")
    k.close()


@suite.test
def errors_memo(c):
    k, m, a = cli(), Model(), acct()
    for what, value in (("257 bytes", "m" * 257), ("258 bytes in UTF-8", "\u00e9" * 129), ("number", 5),
                        ("array", ["x"]), ("NUL", "a\u0000b"), ("object", {})):
        body = base(account_id=a, memo=value)
        check_error(c, k, body, "invalid_memo", "memo %s" % what)
        check_not_consumed(c, k, body["transaction_id"], "memo %s" % what)
    for what, value in (("256 bytes", "m" * 256), ("256 bytes in UTF-8", "\u00e9" * 128), ("null", None),
                        ("empty", ""), ("quotes and escapes", 'say "hi"\n\\ \u20ac')):
        body = base(account_id=a, memo=value)
        if value is None:
            body["memo"] = None
        apply_ok(c, k, body, m, "memo %s" % what)
        lk = k.lookup(body["transaction_id"])
        if c.status(lk, 200, "lookup memo %s" % what) and isinstance(lk.body, dict):
            if value:
                c.eq(lk.body.get("memo"), value, "stored memo %s" % what)
            else:
                c.ok(lk.body.get("memo") in ("", None), "stored memo %s: %r" % (what, lk.body.get("memo")))
    k.close()


@suite.test
def errors_legs(c):
    k = cli()
    a, b = acct(), acct()
    good_leg = leg(a, "USDT", "1")
    cases = [
        ("legs on a DEPOSIT", base(legs=[good_leg]), "invalid_legs"),
        ("legs on a TRANSFER", base(type="TRANSFER", to_account_id=b, legs=[good_leg]), "invalid_legs"),
        ("EVENT without legs", {"transaction_id": new_id("bad"), "type": "EVENT"}, "invalid_legs"),
        ("EVENT with empty legs", event([]), "invalid_legs"),
        ("EVENT with legs not an array", dict(event([]), legs={"a": 1}), "invalid_legs"),
        ("EVENT with a leg not an object", dict(event([]), legs=[1]), "invalid_legs"),
        ("two legs on the same account and currency", event([leg(a, "USDT", "1"), leg(a, "USDT", "2")]), "invalid_legs"),
        ("same pair, account as string", event([leg(a, "USDT", "1"), leg(str(a), "USDT", "2")]), "invalid_legs"),
        ("17 legs", event([leg(acct(), "USDT", "1") for _ in range(17)]), "too_many_legs"),
        ("leg with a bad currency", event([leg(a, "usdt", "1")]), "invalid_currency"),
        ("leg without a currency", event([{"account_id": a, "available_delta": "1"}]), "invalid_currency"),
        ("leg with a bad account", event([leg(0, "USDT", "1")]), "invalid_account"),
        ("leg without an account", event([{"currency": "USDT", "available_delta": "1"}]), "invalid_account"),
        ("leg with a bad delta", event([leg(a, "USDT", "abc")]), "invalid_amount"),
        ("leg with a number delta", event([leg(a, "USDT", 1)]), "invalid_amount"),
        ("leg delta with 19 decimals", event([leg(a, "USDT", "1.0000000000000000001")]), "invalid_amount"),
        ("leg frozen delta with exponent", event([leg(a, "USDT", frozen_delta="1e2")]), "invalid_amount"),
        ("leg with an unknown field", event([dict(leg(a, "USDT", "1"), amount="1")]), "unknown_field"),
        ("EVENT with account_id", dict(event([good_leg]), account_id=a), "invalid_account"),
        ("EVENT with to_account_id", dict(event([good_leg]), to_account_id=a), "invalid_account"),
        ("EVENT with currency", dict(event([good_leg]), currency="USDT"), "invalid_currency"),
        ("EVENT with amount", dict(event([good_leg]), amount="1"), "invalid_amount"),
    ]
    for what, body, code in cases:
        check_error(c, k, body, code, what)
        check_not_consumed(c, k, body["transaction_id"], what)
    c.eq(k.balance(a, "USDT").get("available"), "0", "nothing applied by invalid EVENTs")
    k.close()


@suite.test
def errors_unknown_field(c):
    k = cli()
    for what, body in (("extra field", base(foo=1)), ("capitalised field", dict(drop(base(), "amount"), Amount="1")),
                       ("extra null field", base(extra=None)), ("sequence", base(sequence=5)),
                       ("duplicate", base(duplicate=True))):
        check_error(c, k, body, "unknown_field", what)
        check_not_consumed(c, k, body["transaction_id"], what)
    k.close()


@suite.test
def malformed_does_not_consume_id(c):
    k, m, a = cli(), Model(), acct()
    tid = new_id("reuse")
    check_error(c, k, base(transaction_id=tid, account_id=a, amount="0"), "invalid_amount", "zero amount")
    check_error(c, k, base(transaction_id=tid, account_id=a, currency="usd"), "invalid_currency", "bad currency")
    r = apply_ok(c, k, base(transaction_id=tid, account_id=a, amount="3"), m, "valid request with a previously refused id")
    check_stored(c, k, m, [(a, "USDT")], "after reuse")
    k.close()


# ---------------------------------------------------------------------------------------
# Batches.

@suite.test
def batch_mixed(c):
    k, m = cli(), Model()
    a, b = acct(), acct()
    items = [
        deposit(a, "USDT", "100"),                                     # 0 ok
        withdraw(a, "USDT", "30"),                                     # 1 ok: sees item 0
        dict(deposit(a, "USDT", "0")),                                 # 2 invalid_amount
        {"type": "DEPOSIT", "account_id": a, "currency": "USDT", "amount": "1"},  # 3 no id
        transfer(a, b, "USDT", "70"),                                  # 4 ok
        withdraw(a, "USDT", "0.000000000000000001"),                   # 5 insufficient
        deposit(b, "usdt", "1"),                                       # 6 invalid_currency
        event([leg(b, "USDT", "-70"), leg(a, "BTC", "1")]),            # 7 ok
        "not an object",                                               # 8 malformed
        dict(deposit(b, "USDT", "5"), bogus=1),                        # 9 unknown_field
        {"transaction_id": 12345, "type": "DEPOSIT", "account_id": a, "currency": "USDT", "amount": "1"},  # 10
        freeze(a, "BTC", "1"),                                         # 11 ok
    ]
    expect = ["ok", "ok", "invalid_amount", "invalid_transaction_id", "ok", "insufficient_available",
              "invalid_currency", "ok", None, "unknown_field", "invalid_transaction_id", "ok"]
    r = k.batch(items)
    if not c.status(r, 200, "mixed batch") or not isinstance(r.body, dict):
        return
    res = r.body.get("results")
    if not c.ok(isinstance(res, list) and len(res) == len(items), "results: one per item: %r" % r):
        return
    for i, (item, want, got) in enumerate(zip(items, expect, res)):
        what = "batch item %d" % i
        if want in ("ok", "insufficient_available"):
            if want == "ok":
                m.apply(item)
            c.eq(got.get("transaction_id"), item["transaction_id"], what + " transaction_id")
            c.eq(got.get("result"), want, what + " result")
            c.eq(got.get("duplicate"), False, what + " duplicate")
            c.ok(isinstance(got.get("sequence"), int), what + " sequence")
            c.ok("error" not in got, what + " must not carry an error: %r" % got)
            exp = [{"account_id": acc, "currency": cur, "available": canon(m.get(acc, cur)[0]),
                    "frozen": canon(m.get(acc, cur)[1])} for acc, cur in h.touched(item)]
            c.eq(got.get("balances"), exp, what + " balances")
        else:
            c.ok("result" not in got or got.get("result") is None, what + " must carry no result: %r" % got)
            if want is not None:
                c.eq(got.get("error"), want, what + " error")
            else:
                c.ok(isinstance(got.get("error"), str), what + " error code: %r" % got)
            c.ok(isinstance(got.get("message"), str) and got.get("message"), what + " message")
            if isinstance(item, dict) and isinstance(item.get("transaction_id"), str):
                c.eq(got.get("transaction_id"), item["transaction_id"], what + " echoes its readable id")
            else:
                c.ok("transaction_id" in got and got["transaction_id"] is None,
                     what + " transaction_id must be null: %r" % got)
    check_stored(c, k, m, [(a, "USDT"), (b, "USDT"), (a, "BTC")], "after mixed batch")
    for i in (2, 6, 9):
        check_not_consumed(c, k, items[i]["transaction_id"], "batch item %d" % i)
    k.close()


@suite.test
def batch_order_and_duplicates_within(c):
    k, m, a = cli(), Model(), acct()
    d = deposit(a, "ETH", "5")
    items = [withdraw(a, "ETH", "1"), d, withdraw(a, "ETH", "5"), d, withdraw(a, "ETH", "4"),
             dict(d, amount="6")]
    r = k.batch(items)
    if not c.status(r, 200, "ordered batch") or not isinstance(r.body, dict):
        return
    res = r.body.get("results") or []
    c.eq([x.get("result") for x in res],
         ["insufficient_available", "ok", "ok", "ok", "insufficient_available", "conflict"], "batch results in order")
    c.eq([x.get("duplicate") for x in res[:5]], [False, False, False, True, False], "duplicate flags")
    if len(res) == 6:
        c.eq(res[3].get("sequence"), res[1].get("sequence"), "in-batch duplicate has the original sequence")
        c.eq(res[3].get("balances"), res[1].get("balances"), "in-batch duplicate has the original balances")
        seqs = [x.get("sequence") for x in res[:3]]
        c.ok(all(isinstance(s, int) for s in seqs) and seqs[0] < seqs[1] < seqs[2], "sequences grow: %r" % seqs)
    c.eq(k.balance(a, "ETH").get("available"), "0", "balance after ordered batch")
    k.close()


@suite.test
def batch_errors(c):
    k = cli()
    for what, raw in (("array body", "[]"), ("object without transactions", "{}"),
                      ("transactions not an array", '{"transactions": {}}'),
                      ("transactions null", '{"transactions": null}'),
                      ("extra top-level field", '{"transactions": [], "x": 1}')):
        r = k.post("/v1/transactions/batch", raw)
        c.error(r, 400, "invalid_batch", what)
    r = k.post("/v1/transactions/batch", '{"transactions": []}')
    c.ok(r.status == 200 and isinstance(r.body, dict) and r.body.get("results") == []
         or r.status == 400 and isinstance(r.body, dict) and r.body.get("error") == "invalid_batch",
         "empty batch: 200 with no results or 400 invalid_batch: %r" % r)
    a = acct()
    items = [deposit(a, "USDT", "1", txid=new_id("big")) for _ in range(8193)]
    r = k.batch(items)
    c.error(r, 400, "batch_too_large", "batch of 8193")
    check_not_consumed(c, k, items[0]["transaction_id"], "batch_too_large item")
    c.eq(k.balance(a, "USDT").get("available"), "0", "nothing of an oversized batch applied")
    k.close()


@suite.test
def batch_full_size(c):
    k = cli()
    accounts = [acct() for _ in range(64)]
    items = []
    for i in range(8192):
        items.append(deposit(accounts[i % 64], "USDT", "0.5", txid=new_id("full")))
    t0 = time.monotonic()
    r = k.batch(items)
    if not c.status(r, 200, "batch of 8192") or not isinstance(r.body, dict):
        return
    res = r.body.get("results") or []
    c.eq(len(res), 8192, "results of 8192")
    c.ok(all(x.get("result") == "ok" for x in res), "all ok")
    c.ok([x.get("transaction_id") for x in res] == [x["transaction_id"] for x in items], "results in order")
    for a in accounts[:8]:
        c.eq(k.balance(a, "USDT").get("available"), "64", "balance after full batch")
    print("    8192-item batch took %.2f s" % (time.monotonic() - t0))
    k.close()


# ---------------------------------------------------------------------------------------
# Reads.

@suite.test
def balances_routes(c):
    k, m, a = cli(), Model(), acct()
    r = k.get("/v1/accounts/%d/balances" % a)
    c.status(r, 200, "balances of a new account")
    c.eq(r.body, {"account_id": a, "balances": []}, "balances of a new account")
    r = k.get("/v1/accounts/%d/balances/USDT" % a)
    c.status(r, 200, "balance never credited")
    c.eq(r.body, {"account_id": a, "currency": "USDT", "available": "0", "frozen": "0"}, "never credited")
    for cur, amt in (("USDT", "10"), ("BTC", "1"), ("AAA", "3"), ("ZZZ", "4"), ("ETH", "2")):
        apply_ok(c, k, deposit(a, cur, amt), m)
    apply_ok(c, k, freeze(a, "ETH", "0.5"), m)
    r = k.get("/v1/accounts/%d/balances" % a)
    exp = [{"currency": cur, "available": canon(m.get(a, cur)[0]), "frozen": canon(m.get(a, cur)[1])}
           for cur in sorted(["USDT", "BTC", "AAA", "ZZZ", "ETH"])]
    c.eq(r.body, {"account_id": a, "balances": exp}, "balances sorted by currency")
    r = k.get("/v1/accounts/%d/balances/ETH" % a)
    c.eq(r.body, {"account_id": a, "currency": "ETH", "available": "1.5", "frozen": "0.5"}, "one balance")
    for bad in ("0", "abc", str(2**64), "-1", "01", "1.5"):
        c.error(k.get("/v1/accounts/%s/balances" % bad), 400, "invalid_account", "balances of account %r" % bad)
        c.error(k.get("/v1/accounts/%s/balances/USDT" % bad), 400, "invalid_account", "balance of account %r" % bad)
        c.error(k.get("/v1/accounts/%s/transactions" % bad), 400, "invalid_account", "history of account %r" % bad)
    for bad in ("usdt", "ABCDEFGHIJK", "U-S"):
        c.error(k.get("/v1/accounts/%d/balances/%s" % (a, bad)), 400, "invalid_currency", "balance in %r" % bad)
    r = k.get("/v1/accounts/%d/balances/USDT" % U64_MAX)
    c.status(r, 200, "balance of account 2^64-1")
    k.close()


def check_entry_shape(c, e, what):
    for field in ("transaction_id", "type", "currency", "amount", "result", "sequence", "time", "memo",
                  "available_before", "available_after", "frozen_before", "frozen_after", "available_delta",
                  "frozen_delta"):
        if field not in e:
            c.fail("%s: history entry lacks %s: %r" % (what, field, e))
            return False
    for field in ("available_before", "available_after", "frozen_before", "frozen_after", "available_delta",
                  "frozen_delta"):
        if not h.is_canonical(e[field]):
            c.fail("%s: %s not canonical: %r" % (what, field, e[field]))
            return False
    return True


@suite.test
def history_paging(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    sent = []  # (txid, currency) in submission order, one per entry of a
    for i in range(23):
        cur = "USDT" if i % 3 else "BTC"
        if i in (5, 17):
            body = withdraw(a, cur, "1000000", memo="too much %d" % i)
            apply_reject(c, k, body, m, "insufficient_available")
        elif i % 7 == 6:
            apply_ok(c, k, deposit(b, cur, "1"), m)
            body = transfer(b, a, cur, "1")
            apply_ok(c, k, body, m)
        else:
            body = deposit(a, cur, str(i + 1), memo="d%d" % i)
            apply_ok(c, k, body, m)
        sent.append((body["transaction_id"], cur))
    expected = [t for t, _ in reversed(sent)]
    seen, pages, before = [], 0, None
    while pages < 50:
        r = k.history(a, limit=5, before=before)
        if not c.status(r, 200, "history page %d" % pages) or not isinstance(r.body, dict):
            return
        c.eq(r.body.get("account_id"), a, "history account_id")
        page = r.body.get("transactions") or []
        c.ok(len(page) <= 5, "page longer than limit: %d" % len(page))
        seen.extend(page)
        pages += 1
        before = r.body.get("next_before")
        if before is None:
            break
        c.ok(isinstance(before, str) and before, "next_before is an opaque string: %r" % (before,))
        if not page:
            c.fail("an empty page with next_before %r" % (before,))
            break
    c.eq([e.get("transaction_id") for e in seen], expected, "paged history: all entries, newest first, no repeats")
    c.ok(pages in (5, 6), "23 entries in pages of 5 take 5 (or 6) pages: %d" % pages)
    # (a transfer from b may carry another shard's sequence: compare a's own operations)
    seqs = [e.get("sequence") for e in seen if e.get("type") != "TRANSFER"]
    c.ok(all(isinstance(s, int) for s in seqs) and all(x > y for x, y in zip(seqs, seqs[1:])),
         "sequences strictly decrease: %r" % seqs)
    for e in seen:
        check_entry_shape(c, e, "history of %d" % a)
    state, problems = h.replay_history(seen)
    for p in problems:
        c.fail("history replay: " + p)
    for cur in ("USDT", "BTC"):
        got = state.get(cur, [Decimal(0), Decimal(0)])
        c.eq([canon(x) for x in got], [canon(x) for x in m.get(a, cur)], "replayed history equals the balance " + cur)
    rejected = [e for e in seen if e.get("result") == "insufficient_available"]
    c.eq(len(rejected), 2, "rejected transactions are in the history")
    for e in rejected:
        c.eq((e.get("available_delta"), e.get("frozen_delta")), ("0", "0"), "rejected entry deltas")
        c.eq(e.get("amount"), "1000000", "rejected entry amount")
    memo = {e.get("transaction_id"): e.get("memo") for e in seen}
    c.eq(memo.get(sent[0][0]), "d0", "memo in history")
    # filter by currency
    usdt = k.full_history(a, currency="USDT", limit=4)
    c.eq([e.get("transaction_id") for e in usdt], [t for t, cur in reversed(sent) if cur == "USDT"],
         "history filtered by currency")
    c.ok(all(e.get("currency") == "USDT" for e in usdt), "filter returns only that currency")
    # transfer entries on both sides
    hb = k.full_history(b)
    c.ok(all(dec(e.get("available_delta", "0")) <= 0 for e in hb if e.get("type") == "TRANSFER"),
         "transfer source entries have a negative delta")
    ta = [e for e in seen if e.get("type") == "TRANSFER"]
    c.ok(ta and all(e.get("available_delta") == "1" for e in ta), "transfer destination entries: +1: %r" % ta)
    k.close()


@suite.test
def history_limits_and_empty(c):
    k, a = cli(), acct()
    items = [deposit(a, "USDT", "1", txid=new_id("h")) for _ in range(105)]
    r = k.batch(items)
    c.status(r, 200, "batch of 105")
    r = k.history(a)
    if c.status(r, 200, "history default limit") and isinstance(r.body, dict):
        c.eq(len(r.body.get("transactions") or []), 100, "default limit 100")
        c.ok(isinstance(r.body.get("next_before"), str), "next_before after a full default page")
        rest = k.history(a, before=r.body.get("next_before"))
        if c.status(rest, 200, "second page") and isinstance(rest.body, dict):
            c.eq(len(rest.body.get("transactions") or []), 5, "second page has the remaining 5")
            c.eq(rest.body.get("next_before"), None, "next_before null at the end")
    r = k.history(a, limit=1000)
    if c.status(r, 200, "limit=1000") and isinstance(r.body, dict):
        c.eq(len(r.body.get("transactions") or []), 105, "limit=1000 returns all 105")
        c.eq(r.body.get("next_before"), None, "all on one page: next_before null")
    r = k.history(a, limit=105)
    if c.status(r, 200, "limit=105") and isinstance(r.body, dict):
        nb = r.body.get("next_before")
        if nb is not None:
            r2 = k.history(a, limit=105, before=nb)
            c.eq((r2.status, (r2.body or {}).get("transactions"), (r2.body or {}).get("next_before")),
                 (200, [], None), "a page after the exact end is empty")
    c.error(k.history(a, limit=1001), 400, "invalid_limit", "limit=1001")
    c.status(k.history(a, limit="abc"), 400, "limit=abc")
    c.status(k.history(a, limit=-1), 400, "limit=-1")
    c.error(k.history(a, currency="usdt"), 400, "invalid_currency", "currency filter usdt")
    r = k.history(a, limit=3, currency="BTC")
    c.eq((r.status, r.body), (200, {"account_id": a, "transactions": [], "next_before": None}),
         "history in a currency never used")
    b = acct()
    r = k.history(b)
    c.eq((r.status, r.body), (200, {"account_id": b, "transactions": [], "next_before": None}),
         "history of a new account")
    k.close()


@suite.test
def history_event_entries(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    apply_ok(c, k, deposit(a, "USDT", "10"), m)
    ev = event([leg(a, "USDT", "-4", "1"), leg(b, "USDT", "3"), leg(a, "BTC", "2")])
    apply_ok(c, k, ev, m)
    ha = k.full_history(a)
    evs = [e for e in ha if e.get("transaction_id") == ev["transaction_id"]]
    c.eq(len(evs), 2, "an EVENT gives one history entry per leg of the account")
    for e in evs:
        c.eq(e.get("type"), "EVENT", "event entry type")
        c.ok("amount" in e and e["amount"] is None, "event entry amount must be null: %r" % e)
    by_cur = {e.get("currency"): e for e in evs}
    if "USDT" in by_cur:
        e = by_cur["USDT"]
        c.eq((e.get("available_before"), e.get("available_after"), e.get("frozen_before"), e.get("frozen_after"),
              e.get("available_delta"), e.get("frozen_delta")), ("10", "6", "0", "1", "-4", "1"), "event entry numbers")
    hb = k.full_history(b)
    c.eq([(e.get("transaction_id"), e.get("available_delta")) for e in hb], [(ev["transaction_id"], "3")],
         "event entry on the other account")
    k.close()


@suite.test
def transaction_lookup(c):
    k, m, a, b = cli(), Model(), acct(), acct()
    d = deposit(a, "USDT", "12.50", memo="first deposit")
    rd = apply_ok(c, k, d, m)
    t = transfer(a, b, "USDT", "2")
    rt = apply_ok(c, k, t, m)
    e = event([leg(a, "USDT", "-1"), leg(b, "BTC", "0.1")])
    re_ = apply_ok(c, k, e, m)
    w = withdraw(a, "USDT", "1000")
    rw = apply_reject(c, k, w, m, "insufficient_available")
    apply_ok(c, k, deposit(a, "USDT", "100"), m)  # later changes must not alter the stored "after"
    for body, resp in ((d, rd), (t, rt), (e, re_), (w, rw)):
        what = "lookup %s" % body["type"]
        r = k.lookup(body["transaction_id"])
        if not c.status(r, 200, what) or not isinstance(r.body, dict) or not isinstance(resp.body, dict):
            continue
        x = r.body
        c.eq(x.get("transaction_id"), body["transaction_id"], what + " transaction_id")
        c.eq(x.get("type"), body["type"], what + " type")
        c.eq(x.get("result"), resp.body.get("result"), what + " result")
        c.eq(x.get("sequence"), resp.body.get("sequence"), what + " sequence")
        c.ok("time" in x and x["time"] is not None, what + " has a time")
        c.ok("memo" in x, what + " has a memo field")
        c.eq(x.get("memo"), body.get("memo"), what + " memo")
        c.eq(x.get("balances"), resp.body.get("balances"), what + " balances as after the transaction")
        if body["type"] != "EVENT":
            c.eq(x.get("account_id"), body["account_id"], what + " account_id")
            c.eq(x.get("currency"), body["currency"], what + " currency")
            c.eq(x.get("amount"), canon(dec(body["amount"])), what + " amount")
        if body["type"] == "TRANSFER":
            c.eq(x.get("to_account_id"), b, what + " to_account_id")
        if body["type"] == "EVENT":
            legs = x.get("legs")
            if c.ok(isinstance(legs, list) and len(legs) == 2, what + " legs: %r" % (legs,)):
                c.eq([(l.get("account_id"), l.get("currency")) for l in legs], [(a, "USDT"), (b, "BTC")],
                     what + " legs accounts")
                c.eq([(l.get("available_delta", "0"), l.get("frozen_delta", "0")) for l in legs],
                     [("-1", "0"), ("0.1", "0")], what + " legs deltas")
    r = k.lookup(new_id("unknown"))
    c.error(r, 404, "not_found", "lookup of an unknown id")
    k.close()


@suite.test
def read_your_writes(c):
    writer, reader = cli(), cli()
    m = Model()
    accounts = [acct() for _ in range(12)]
    for i in range(60):
        a = accounts[i % len(accounts)]
        b = accounts[(i * 5 + 1) % len(accounts)]
        if i % 4 == 3 and a != b and m.get(a, "USDT")[0] >= 1:
            body = transfer(a, b, "USDT", "1")
        else:
            body = deposit(a, "USDT", "%d.25" % (i + 1))
        r = writer.tx(body)
        if not c.status(r, 200, "write %d" % i):
            continue
        m.apply(body)
        seq = r.body.get("sequence")
        got = reader.balance(a, "USDT")
        c.eq(got.get("available"), canon(m.get(a, "USDT")[0]), "read %d sees the write" % i)
        lk = reader.lookup(body["transaction_id"])
        c.ok(lk.status == 200 and isinstance(lk.body, dict) and lk.body.get("sequence") == seq,
             "lookup %d sees the write at once: %r" % (i, lk))
        hist = reader.history(a, limit=1)
        top = (hist.body or {}).get("transactions") or [{}]
        c.eq(top[0].get("transaction_id"), body["transaction_id"], "history %d shows the write first" % i)
    writer.close()
    reader.close()


# ---------------------------------------------------------------------------------------
# HTTP.

@suite.test
def not_found_and_method(c):
    k = cli()
    for path in ("/", "/nope", "/v1", "/v1/transaction", "/v1/accounts", "/v1/accounts/5", "/v2/transactions",
                 "/v1/accounts/5/balances/USDT/extra", "/healthz"):
        c.error(k.get(path), 404, "not_found", "GET %s" % path)
    for method, path in (("GET", "/v1/transactions"), ("PUT", "/v1/transactions"), ("DELETE", "/v1/transactions"),
                         ("POST", "/health"), ("POST", "/ready"),
                         ("POST", "/metrics"), ("POST", "/v1/accounts/5/balances"),
                         ("DELETE", "/v1/accounts/5/balances/USDT"), ("PUT", "/v1/transactions/abc"),
                         ("PATCH", "/v1/accounts/5/transactions")):
        body = "{}" if method in ("POST", "PUT", "PATCH") else None
        r = k.request(method, path, body)
        c.error(r, 405, "method_not_allowed", "%s %s" % (method, path))
    r = k.get("/health")
    c.status(r, 200, "the connection still works")
    k.close()


@suite.test
def body_too_large(c):
    s = main_server()
    raw = s.raw(timeout=15)
    size = 32 * 1024 * 1024 + 1
    head = ("POST /v1/transactions/batch HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            "Content-Length: %d\r\n\r\n" % size).encode()
    closed_early = False
    try:
        raw.send(head)
        chunk = b" " * (1 << 20)
        sent = 0
        while sent < size:
            n = min(len(chunk), size - sent)
            raw.sock.sendall(chunk[:n])
            sent += n
    except (BrokenPipeError, ConnectionResetError, socket.timeout):
        closed_early = True
    try:
        resp = raw.read_response()
    except (ConnectionError, socket.timeout, OSError):
        resp = None
    if resp is None:
        c.ok(True, "")
        print("    (the server closed the connection%s)" % (" early" if closed_early else ""))
    else:
        status, headers, body = resp
        c.eq(status, 413, "oversized body status")
        try:
            err = json.loads(body)
            c.eq(err.get("error"), "body_too_large", "413 error code")
        except ValueError:
            c.fail("413 body is not JSON: %r" % body[:200])
    raw.close()
    # a body just under the limit is read (and refused as JSON, not as too large)
    raw = s.raw(timeout=60)
    size = 32 * 1024 * 1024
    prefix = b'{"transactions": ['
    payload = prefix + b" " * (size - len(prefix) - 2) + b"]}"
    try:
        raw.send(("POST /v1/transactions/batch HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(payload)).encode())
        raw.send(payload)
        resp = raw.read_response()
        c.ok(resp is not None and resp[0] != 413, "a 32 MiB body is allowed: %r" % (resp[:2] if resp else None,))
    except OSError as e:
        c.fail("a 32 MiB body: %s" % e)
    raw.close()
    k = s.client()
    c.status(k.get("/health"), 200, "server alive after oversized bodies")
    k.close()


@suite.test
def malformed_http(c):
    s = main_server()
    cases = [("garbage request line", b"GARBAGE\r\n\r\n"),
             ("bad version", b"GET /health HTTP/9.9\r\n\r\n"),
             ("header without colon", b"GET /health HTTP/1.1\r\nHost 127.0.0.1\r\n\r\n"),
             ("bad content-length", b"POST /v1/transactions HTTP/1.1\r\nContent-Length: abc\r\n\r\n"),
             ("negative content-length", b"POST /v1/transactions HTTP/1.1\r\nContent-Length: -5\r\n\r\n"),
             ("two content-lengths", b"POST /v1/transactions HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}x"),
             ("binary junk", bytes(range(256)) + b"\r\n\r\n"),
             ("huge header", b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n")]
    for what, data in cases:
        raw = s.raw(timeout=10)
        try:
            raw.send(data)
        except OSError:
            pass
        try:
            resp = raw.read_response()
        except (ConnectionError, socket.timeout, OSError, ValueError, IndexError) as e:
            resp = ("error", str(e))
        if resp is None:
            pass  # closed: acceptable
        elif resp[0] == "error":
            c.ok("timed out" not in resp[1], "%s: no answer and no close: %s" % (what, resp[1]))
        else:
            c.ok(resp[0] in (400, 413, 414, 431, 501, 505), "%s: expected a 4xx/5xx refusal, got %r" % (what, resp[:2]))
        raw.close()
    k = s.client()
    c.status(k.get("/health"), 200, "server alive after malformed HTTP")
    k.close()


@suite.test
def slow_clients_and_many_connections(c):
    s = main_server()
    # a half-sent request must not hold up anyone else
    slow = s.raw(timeout=10)
    slow.send(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"trans")
    k = s.client(timeout=5)
    c.status(k.get("/health"), 200, "another client while a request is half sent")
    a = acct()
    c.status(k.tx(deposit(a, "USDT", "1")), 200, "a write while a request is half sent")
    k.close()
    # the rest of the slow request arrives later: it is answered
    body = json.dumps(deposit(a, "USDT", "2")).encode()
    slow.close()
    slow = s.raw(timeout=10)
    slow.send(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body) + body[:10])
    time.sleep(0.3)
    slow.send(body[10:])
    resp = slow.read_response()
    c.ok(resp is not None and resp[0] == 200, "a request sent in two parts: %r" % (resp[:2] if resp else None,))
    slow.close()
    # a chunked body is either read or refused, never left hanging
    raw = s.raw(timeout=10)
    b = json.dumps(deposit(a, "USDT", "4")).encode()
    raw.send(b"POST /v1/transactions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
             + (b"%x\r\n" % len(b)) + b + b"\r\n0\r\n\r\n")
    try:
        resp = raw.read_response()
    except (OSError, ConnectionError) as e:
        resp = None
        c.fail("chunked request: %s" % e)
    if resp is not None:
        c.ok(resp[0] in (200, 400, 411, 501), "chunked request: %r" % (resp[:2],))
    raw.close()
    # 300 connections at once
    conns = []
    try:
        for _ in range(300):
            conns.append(s.raw(timeout=20))
        for cn in conns:
            cn.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        answered = sum(1 for cn in conns if (cn.read_response() or (0,))[0] == 200)
        c.eq(answered, 300, "300 simultaneous connections answered")
    finally:
        for cn in conns:
            cn.close()


@suite.test
def pipelining(c):
    s = main_server()
    a = acct()
    raw = s.raw(timeout=30)
    data = b""
    kinds = []
    total = Decimal(0)
    for i in range(50):
        if i % 2 == 0:
            body = deposit(a, "USDT", str(i + 1), txid="pipe-%s-%d" % (h._run_tag, i))
            total += i + 1
            data += h.http_request_bytes("POST", "/v1/transactions", body)
            kinds.append(("post", body["transaction_id"], canon(total)))
        else:
            data += h.http_request_bytes("GET", "/v1/accounts/%d/balances/USDT" % a)
            kinds.append(("get", None, canon(total)))
    raw.send(data)
    for i, (kind, txid, bal) in enumerate(kinds):
        try:
            resp = raw.read_response()
        except (OSError, ConnectionError) as e:
            c.fail("pipelined response %d: %s" % (i, e))
            break
        if resp is None:
            c.fail("connection closed after %d of 50 pipelined responses" % i)
            break
        status, headers, body = resp
        obj = json.loads(body) if body else {}
        c.eq(status, 200, "pipelined response %d status" % i)
        if kind == "post":
            c.eq(obj.get("transaction_id"), txid, "pipelined response %d is for its request" % i)
            c.eq(obj["balances"][0]["available"] if obj.get("balances") else None, bal, "pipelined POST %d balance" % i)
        else:
            c.eq(obj.get("available"), bal, "pipelined GET %d sees every earlier POST" % i)
    raw.close()


@suite.test
def keep_alive_and_close(c):
    s = main_server()
    k = s.client()
    a = acct()
    k.get("/health")
    sock = k.conn.sock
    for i in range(200):
        r = k.tx(deposit(a, "USDT", "1")) if i % 2 else k.get("/v1/accounts/%d/balances" % a)
        if not c.status(r, 200, "keep-alive request %d" % i):
            break
        c.ok(r.headers.get("connection", "").lower() != "close", "server closed a keep-alive connection at %d" % i)
    c.ok(k.conn.sock is sock and sock is not None, "all 200 requests used one connection")
    k.close()
    raw = s.raw(timeout=10)
    raw.send(b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    resp = raw.read_response()
    c.ok(resp is not None and resp[0] == 200, "Connection: close request answered: %r" % (resp,))
    c.ok(raw.read_until_close(10), "server closes after Connection: close")
    raw.close()
    raw = s.raw(timeout=10)
    raw.send(b"GET /health HTTP/1.0\r\n\r\n")
    resp = raw.read_response()
    c.ok(resp is not None and resp[0] == 200, "HTTP/1.0 request answered: %r" % (resp,))
    c.ok(raw.read_until_close(10), "server closes an HTTP/1.0 connection without keep-alive")
    raw.close()


@suite.test
def capacity_exceeded(c):
    server = None
    for capacity in (64, 1024, 65536):
        try:
            server = h.Server(ARGS.bin, shards=1, args=["--balance-capacity", str(capacity)]).start()
            break
        except h.ServerError as e:
            print("    --balance-capacity %d refused: %s" % (capacity, str(e).splitlines()[0]))
            server = None
    if not c.ok(server is not None, "no --balance-capacity value was accepted"):
        return
    k = server.client()
    first = 10**9
    apply_ok(c, k, deposit(first, "USDT", "5"), Model(), "first balance")
    full_at = None
    n = 1
    for batch_no in range(300):
        items = [deposit(first + n + i, "USDT", "1", txid=new_id("cap")) for i in range(500)]
        n += 500
        r = k.batch(items)
        if not c.status(r, 200, "capacity batch"):
            break
        res = r.body.get("results") or []
        bad = [x for x in res if x.get("result") != "ok"]
        if bad:
            c.ok(all(x.get("result") == "capacity_exceeded" for x in bad), "only capacity_exceeded once full: %r" % bad[:3])
            full_at = first + n
            break
    if not c.ok(full_at is not None, "the balance table never filled (150000 new balances)"):
        k.close()
        return
    body = deposit(full_at + 10**6, "USDT", "1")
    r = k.tx(body)
    c.status(r, 507, "deposit to a new balance when full")
    c.eq((r.body or {}).get("result"), "capacity_exceeded", "result when full")
    r = k.tx(deposit(first, "USDT", "1"))
    c.status(r, 200, "an existing balance still works when full")
    c.eq(k.balance(first, "USDT").get("available"), "6", "existing balance")
    c.eq(k.balance(full_at + 10**6, "USDT").get("available"), "0", "nothing applied when full")
    e = event([leg(first, "USDT", "-1"), leg(full_at + 10**6 + 1, "USDT", "1")])
    r = k.tx(e)
    c.status(r, 507, "EVENT with a new balance when full")
    c.eq(k.balance(first, "USDT").get("available"), "6", "a refused EVENT leaves no trace")
    k.close()
    c.eq(server.stop(), 0, "SIGTERM exit code")


# ---------------------------------------------------------------------------------------
# Cross-shard and restart on a 4-shard server.

CROSS = {}


@suite.test
def cross_shard(c):
    s = S["four"]
    k = s.client()
    m = Model()
    rng = RNG
    accounts = [rng.randrange(1, 2**63) for _ in range(48)] + list(range(1, 17))
    dep = [deposit(a, cur, amt) for a in accounts for cur, amt in (("USDT", "1000"), ("BTC", "10"))]
    r = k.batch(dep)
    if not c.status(r, 200, "deposits") or not isinstance(r.body, dict):
        return
    for body, res in zip(dep, r.body.get("results") or []):
        if c.eq(res.get("result"), "ok", "deposit"):
            m.apply(body)
    bodies = []
    for i in range(300):
        kind = rng.random()
        if kind < 0.6:
            a, b = rng.sample(accounts, 2)
            cur = rng.choice(("USDT", "BTC"))
            amt = canon(Decimal(rng.randrange(1, 400000)) / (1000 if cur == "USDT" else 100000))
            body = transfer(a, b, cur, amt)
            ok = m.get(a, cur)[0] >= dec(amt)
            expect = "ok" if ok else "insufficient_available"
        else:
            a, b, x, y = rng.sample(accounts, 4)
            q = canon(Decimal(rng.randrange(1, 2000000)) / 10000)
            p = canon(Decimal(rng.randrange(1, 300000)) / 100000)
            legs = [leg(a, "USDT", "-" + q), leg(b, "USDT", q), leg(b, "BTC", "-" + p), leg(a, "BTC", p),
                    leg(x, "USDT", "0.01"), leg(y, "USDT", "-0.01")]
            body = event(legs)
            fails = [l for l in legs if m.get(l["account_id"], l["currency"])[0] + dec(l["available_delta"]) < 0]
            expect = "ok" if not fails else "insufficient_available"
        single = i % 3 != 0
        if single:
            r = k.tx(body)
            got = r.body if isinstance(r.body, dict) else {}
            c.status(r, 200 if expect == "ok" else 422, "cross-shard %s %d" % (body["type"], i))
        else:
            r = k.batch([body])
            got = ((r.body or {}).get("results") or [{}])[0]
        if not c.eq(got.get("result"), expect, "cross-shard %s %d result (%s)" % (body["type"], i, json.dumps(body))):
            if got.get("result") == "ok":
                m.apply(body)
            continue
        if expect == "ok":
            m.apply(body)
        exp = [{"account_id": acc, "currency": cur, "available": canon(m.get(acc, cur)[0]),
                "frozen": canon(m.get(acc, cur)[1])} for acc, cur in h.touched(body)]
        c.eq(got.get("balances"), exp, "cross-shard %s %d balances" % (body["type"], i))
        bodies.append((body, got))
    # 16 legs over 16 accounts (so over every shard), zero-sum; then the same with one leg short
    sixteen = rng.sample(accounts, 16)
    legs = [leg(x, "USDT", "-0.125" if j % 2 else "0.125") for j, x in enumerate(sixteen)]
    body = event(legs)
    expect = "ok" if all(m.get(x, "USDT")[0] >= Decimal("0.125") for x in sixteen[1::2]) else "insufficient_available"
    r = k.tx(body)
    if c.eq((r.body or {}).get("result"), expect, "16-leg cross-shard EVENT") and expect == "ok":
        m.apply(body)
        bodies.append((body, r.body))
    poor = min(sixteen, key=lambda x: m.get(x, "USDT")[0])
    legs = [leg(x, "USDT", "1") for x in sixteen if x != poor] + [leg(poor, "USDT", "-" + canon(m.get(poor, "USDT")[0] + 1))]
    r = k.tx(event(legs))
    c.eq((r.status, (r.body or {}).get("result")), (422, "insufficient_available"), "16-leg EVENT with one leg short")
    totals = {"USDT": Decimal(0), "BTC": Decimal(0)}
    for a in accounts:
        r = k.balances(a)
        for b in r.get("balances", []):
            exp = m.get(a, b["currency"])
            c.eq((b.get("available"), b.get("frozen")), (canon(exp[0]), canon(exp[1])),
                 "balance of %d %s" % (a, b["currency"]))
            totals[b["currency"]] = totals.get(b["currency"], Decimal(0)) + dec(b["available"]) + dec(b["frozen"])
            c.ok(dec(b["available"]) >= 0 and dec(b["frozen"]) >= 0, "negative balance %r" % b)
    c.eq(canon(totals["USDT"]), canon(Decimal(1000 * len(accounts))), "USDT conserved across shards")
    c.eq(canon(totals["BTC"]), canon(Decimal(10 * len(accounts))), "BTC conserved across shards")
    # duplicates of cross-shard operations
    for body, got in bodies[:20]:
        r = k.tx(body)
        rb = r.body if isinstance(r.body, dict) else {}
        c.eq((rb.get("duplicate"), rb.get("result"), rb.get("sequence"), rb.get("balances")),
             (True, got.get("result"), got.get("sequence"), got.get("balances")), "cross-shard duplicate")
    # history on each side agrees with the balances
    for a in accounts[:16]:
        state, problems = h.replay_history(k.full_history(a))
        for p in problems:
            c.fail("history of %d: %s" % (a, p))
        for cur in ("USDT", "BTC"):
            got = state.get(cur, [Decimal(0), Decimal(0)])
            c.eq([canon(x) for x in got], [canon(x) for x in m.get(a, cur)], "history replay of %d %s" % (a, cur))
    CROSS.update(model=m, accounts=accounts, bodies=bodies)
    k.close()


@suite.test
def restart_keeps_everything(c):
    s = S["four"]
    k = s.client()
    if "model" not in CROSS:
        m, accounts, bodies = Model(), [acct() for _ in range(8)], []
        for a in accounts:
            body = deposit(a, "USDT", "10")
            r = k.tx(body)
            m.apply(body)
            bodies.append((body, r.body))
    else:
        m, accounts, bodies = CROSS["model"], CROSS["accounts"], CROSS["bodies"]
    before_bal = {a: k.balances(a) for a in accounts}
    before_hist = {a: k.full_history(a) for a in accounts[:20]}
    before_lookup = {b["transaction_id"]: k.lookup(b["transaction_id"]).body for b, _ in bodies[:50]}
    k.close()
    code = s.stop(signal.SIGTERM)
    c.eq(code, 0, "exit code after SIGTERM")
    s.start()
    s.wait_ready()
    k = s.client()
    for a in accounts:
        c.eq(k.balances(a), before_bal[a], "balances of %d after restart" % a)
    for a, hist in before_hist.items():
        c.eq(k.full_history(a), hist, "history of %d after restart" % a)
    for txid, body in before_lookup.items():
        c.eq(k.lookup(txid).body, body, "lookup of %s after restart" % txid)
    for body, got in bodies[:50]:
        r = k.tx(body)
        rb = r.body if isinstance(r.body, dict) else {}
        c.eq((rb.get("duplicate"), rb.get("result"), rb.get("sequence"), rb.get("balances")),
             (True, got.get("result"), got.get("sequence"), got.get("balances")),
             "duplicate after restart of %s" % body["transaction_id"])
    a = accounts[0]
    last_seq = max([e.get("sequence", 0) for e in before_hist.get(a, [])] or [0])
    body = deposit(a, "USDT", "1")
    r = k.tx(body)
    if c.status(r, 200, "new deposit after restart"):
        c.ok(r.body.get("sequence", 0) > last_seq, "sequence continues after restart: %r <= %r"
             % (r.body.get("sequence"), last_seq))
    k.close()
    # a second restart, with a kill -9 this time, must keep the same
    s.kill()
    s.start()
    s.wait_ready()
    k = s.client()
    m.apply(body)
    for a in accounts:
        got = k.balances(a)
        for b in got.get("balances", []):
            exp = m.get(a, b["currency"])
            c.eq((b["available"], b["frozen"]), (canon(exp[0]), canon(exp[1])), "balance of %d after kill -9" % a)
    k.close()


@suite.test
def concurrent_same_id(c):
    """The same new request from 8 connections at once applies exactly once."""
    s = main_server()
    for round_no in range(5):
        a, b = acct(), acct()
        k = s.client()
        k.tx(deposit(a, "USDT", "100"))
        k.close()
        body = transfer(a, b, "USDT", "7") if round_no % 2 else deposit(a, "USDT", "7")
        answers = []
        lock = threading.Lock()
        gate = threading.Barrier(8)

        def send():
            cl = s.client()
            try:
                gate.wait(10)
                r = cl.tx(body)
                with lock:
                    answers.append(r.body if isinstance(r.body, dict) else {"raw": repr(r)})
            finally:
                cl.close()

        threads = [threading.Thread(target=send, daemon=True) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        c.eq(len(answers), 8, "answers to 8 identical requests")
        c.eq(sum(1 for x in answers if x.get("duplicate") is False), 1, "exactly one is not a duplicate: %r" % answers)
        c.eq(len({(x.get("result"), x.get("sequence"), json.dumps(x.get("balances"))) for x in answers}), 1,
             "all 8 answers agree on result, sequence and balances")
        k = s.client()
        exp = "107" if body["type"] == "DEPOSIT" else "93"
        c.eq(k.balance(a, "USDT").get("available"), exp, "applied once (%s)" % body["type"])
        k.close()


@suite.test
def idempotency_beyond_memory(c):
    """With 16 ids kept in memory for 1 s, older ids must be found in the journal: retries
    are duplicates with the original answer, changed requests are conflicts, before and
    after restarts."""
    try:
        s = h.Server(ARGS.bin, shards=2, args=["--idempotency-count", "16", "--idempotency-retention-ms", "1000",
                                               "--snapshot-every", "50"]).start()
    except h.ServerError as e:
        c.fail("server with --idempotency-count 16 --idempotency-retention-ms 1000 did not start: %s" % e)
        return
    k = s.client()
    m = Model()
    accounts = [acct() for _ in range(20)]
    sent = []
    for i in range(240):
        a = accounts[i % 20]
        b = accounts[(i * 7 + 3) % 20]
        kind = i % 6
        if kind in (0, 1):
            body = deposit(a, "USDT", "%d.5" % (i + 1))
        elif kind == 2:
            body = withdraw(a, "USDT", "100000")  # rejected
        elif kind == 3 and a != b:
            body = transfer(a, b, "USDT", "1")
        elif kind == 4 and a != b:
            body = event([leg(a, "USDT", "-0.5"), leg(b, "BTC", "0.25")])
        else:
            body = freeze(a, "USDT", "0.25")
        r = k.tx(body) if i % 3 else k.batch([body])
        item = r.body if i % 3 else ((r.body or {}).get("results") or [{}])[0]
        if not isinstance(item, dict) or item.get("result") is None:
            c.fail("request %d: %r" % (i, r))
            continue
        if item.get("result") == "ok":
            m.apply(body)
        sent.append((body, item))
    time.sleep(1.5)

    def check_retries(what):
        bad = 0
        for i, (body, item) in enumerate(sent):
            if i % 2:
                r = k.tx(body)
                got = r.body if isinstance(r.body, dict) else {}
            else:
                r = k.batch([body])
                got = ((r.body or {}).get("results") or [{}])[0] if isinstance(r.body, dict) else {}
            want = dict(item, duplicate=True)
            if got != want:
                bad += 1
                if bad <= 5:
                    c.fail("%s: retry of %s: expected %s, got %r" % (what, body["transaction_id"], json.dumps(want), r))
        c.eq(bad, 0, "%s: retries that were not exact duplicates" % what)
        for body, item in sent[:60:3]:
            changed = dict(body, memo="changed")
            r = k.tx(changed)
            c.eq((r.status, (r.body or {}).get("result")), (409, "conflict"),
                 "%s: changed request with old id %s" % (what, body["transaction_id"]))
        for a in accounts:
            for cur in ("USDT", "BTC"):
                exp = m.get(a, cur)
                got = k.balance(a, cur)
                c.eq((got.get("available"), got.get("frozen")), (canon(exp[0]), canon(exp[1])),
                     "%s: balance %d %s unchanged by retries" % (what, a, cur))

    check_retries("ids out of memory")
    k.close()
    c.eq(s.stop(), 0, "SIGTERM exit code")
    s.start()
    k = s.client()
    check_retries("after a restart")
    k.close()
    s.kill()
    s.start()
    k = s.client()
    check_retries("after kill -9")
    k.close()
    c.eq(s.stop(), 0, "SIGTERM exit code")


@suite.test
def sigterm_under_load(c):
    """SIGTERM while requests are in flight: exit 0 within 30 s, and every answered
    request is there after a restart."""
    s = h.Server(ARGS.bin, shards=2).start()
    answered = {}
    lock = threading.Lock()
    stop = threading.Event()

    def load(n):
        k = s.client(timeout=40)
        for i in range(100000):
            if stop.is_set():
                break
            items = [deposit(n * 100 + j % 50 + 1, "USDT", "1", txid=new_id("term%d" % n)) for j in range(50)]
            try:
                r = k.batch(items) if i % 2 else k.tx(items[0])
            except Exception:
                break
            if r.status == 200 and isinstance(r.body, dict):
                res = r.body.get("results") if "results" in r.body else [r.body]
                with lock:
                    for item in res or []:
                        if item.get("result") == "ok":
                            answered[item["transaction_id"]] = item.get("sequence")
            elif r.status != 503:
                with lock:
                    answered.setdefault("__bad__", repr(r))
        k.close()

    threads = [threading.Thread(target=load, args=(n,), daemon=True) for n in range(6)]
    for t in threads:
        t.start()
    time.sleep(1.0)
    t0 = time.monotonic()
    code = s.stop(signal.SIGTERM, timeout=35)
    took = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(30)
    c.eq(code, 0, "exit code of SIGTERM under load")
    c.ok(took < 30, "SIGTERM took %.1f s" % took)
    bad = answered.pop("__bad__", None)
    c.ok(bad is None, "unexpected answer during shutdown: %s" % bad)
    c.ok(len(answered) > 0, "nothing was answered before SIGTERM")
    s.start()
    k = s.client()
    missing = 0
    sample = sorted(answered.items())
    if len(sample) > 3000:
        sample = RNG.sample(sample, 3000)
    for txid, seq in sample:
        r = k.lookup(txid)
        if r.status != 200 or (r.body or {}).get("sequence") != seq:
            missing += 1
            if missing <= 5:
                c.fail("answered %s (seq %s) after SIGTERM and restart: %r" % (txid, seq, r))
    c.eq(missing, 0, "answered transactions missing after SIGTERM")
    print("    %d answered transactions, SIGTERM took %.2f s" % (len(answered), took))
    k.close()
    c.eq(s.stop(), 0, "second SIGTERM")


@suite.test
def metrics_after_traffic(c):
    k = cli()
    r = k.get("/metrics")
    text = r.raw.decode("utf-8", "replace")
    counts = {}
    for line in text.splitlines():
        if line.startswith("balanced_requests_total") or line.startswith("balanced_results_total"):
            name = line.split("{")[0].split(" ")[0]
            try:
                counts[name] = counts.get(name, 0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    c.ok(counts.get("balanced_requests_total", 0) > 100, "balanced_requests_total counts requests: %r" % counts)
    c.ok(counts.get("balanced_results_total", 0) > 100, "balanced_results_total counts results: %r" % counts)
    for hist in ("balanced_wal_fsync_seconds", "balanced_batch_size", "balanced_request_duration_seconds"):
        c.ok(('%s_bucket{le="+Inf"}' % hist) in text or ("%s_bucket{" % hist in text and 'le="+Inf"' in text),
             "%s has a +Inf bucket" % hist)
        cnt = [l for l in text.splitlines() if l.startswith(hist + "_count")]
        c.ok(cnt and any(float(l.rsplit(" ", 1)[1]) > 0 for l in cnt), "%s_count > 0" % hist)
    k.close()


def setup():
    h.require_binary(ARGS.bin)
    print("e2e_api: binary %s, seed %d" % (ARGS.bin, SEED), flush=True)
    S["main"] = h.Server(ARGS.bin, shards=2, args=["--snapshot-every", "50"]).start()
    S["four"] = h.Server(ARGS.bin, shards=4, args=["--snapshot-every", "50"]).start()
    S["main"].wait_ready()
    S["four"].wait_ready()


def teardown():
    for s in S.values():
        if s.running():
            code = s.stop()
            if code != 0:
                raise AssertionError("server exit code %r after SIGTERM; log tail:\n%s" % (code, s.stderr_tail()))


if __name__ == "__main__":
    suite.main(setup, teardown)
