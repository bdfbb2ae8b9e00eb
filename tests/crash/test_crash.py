#!/usr/bin/env python3
"""test_crash.py -- kill -9 under load, restart, and check that nothing acknowledged is lost.

Several seeded rounds (BALANCED_CRASH_ROUNDS, default 5) on one data directory: start the
server (2 shards, a small --snapshot-every so that snapshots and log trimming happen),
load it from several threads with single and batch requests (unique ids, ~100 accounts),
kill -9 it at a random moment, start it again on the same directory, then check:
  - every acknowledged transaction is found by GET /v1/transactions/{id} with the
    acknowledged result and sequence;
  - retrying every acknowledged request answers duplicate, same result, same sequence;
  - a request that got no answer is either already applied (its look-up and its retry
    agree, duplicate) or applies now: exactly once either way;
  - with every outcome known, each balance equals the sum of the `ok` effects (so nothing
    was applied twice or lost), no balance is negative, and totals are conserved;
  - each account's history replays from zero to its balances.
One more round sends SIGTERM and then kill -9 while the shutdown is under way; a last one
stops the server with SIGTERM (exit 0) and checks the same after a restart. Rounds vary
--snapshot-every, and some keep only 16 ids in memory for 1 s (so that retries are answered
from the journal) or use 64 KiB log segments (rotation and trimming).

    python3 tests/crash/test_crash.py [--bin build/balanced] [--seed N] [--rounds N]
"""

import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
import harness as h  # noqa: E402
from harness import Decimal, canon, dec  # noqa: E402


def extra_args(p):
    p.add_argument("--rounds", type=int, default=int(os.environ.get("BALANCED_CRASH_ROUNDS", "5")))
    p.add_argument("--threads", type=int, default=8)
    p.add_argument("--accounts", type=int, default=100)


ARGS = h.parse_args(__doc__, extra_args)
SEED, RNG = h.rng_from(ARGS.seed)
suite = h.Suite("crash", ARGS)
CURRENCIES = ("USDT", "BTC")


class Ledger:
    """Everything sent and everything known about its outcome, across rounds."""

    def __init__(self):
        self.lock = threading.Lock()
        self.bodies = {}     # txid -> body
        self.outcome = {}    # txid -> (result, sequence), once known
        self.acked = []      # txids acknowledged in the current round
        self.unacked = []    # txids sent without an answer in the current round
        self.problems = []

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 100:
                self.problems.append(text)


LEDGER = Ledger()
STATE = {}


def make_body(rng, accounts, tag):
    a = rng.choice(accounts)
    cur = rng.choice(CURRENCIES)
    div = 1000 if cur == "USDT" else 100000
    amt = canon(Decimal(rng.randrange(1, 500000)) / div)
    txid = h.new_id(tag)
    k = rng.random()
    if k < 0.40:
        return h.deposit(a, cur, amt, txid)
    if k < 0.55:
        return h.withdraw(a, cur, amt, txid)
    if k < 0.80:
        b = rng.choice([x for x in accounts if x != a])
        return h.transfer(a, b, cur, amt, txid)
    if k < 0.90:
        return h.freeze(a, cur, amt, txid)
    if k < 0.95:
        return h.unfreeze(a, cur, amt, txid)
    b = rng.choice([x for x in accounts if x != a])
    q = canon(Decimal(rng.randrange(1, 100000)) / 1000)
    p = canon(Decimal(rng.randrange(1, 100000)) / 10000000)
    return h.event([h.leg(a, "USDT", "-" + q), h.leg(b, "USDT", q), h.leg(b, "BTC", "-" + p),
                    h.leg(a, "BTC", p)], txid)


RESULTS = ("ok", "insufficient_available", "insufficient_frozen", "overflow")


def note_answer(body, item, where):
    txid = body["transaction_id"]
    if not isinstance(item, dict) or item.get("result") not in RESULTS:
        LEDGER.problem("%s: %s: unexpected answer %r" % (where, txid, item))
        return
    if item.get("transaction_id") != txid:
        LEDGER.problem("%s: answer for another transaction: %r" % (where, item))
    with LEDGER.lock:
        LEDGER.outcome[txid] = (item["result"], item.get("sequence"))
        LEDGER.acked.append(txid)


def load_worker(index, server, accounts, stop, round_no):
    rng = h.random.Random(SEED * 7919 + round_no * 101 + index)
    try:
        client = server.client(timeout=30)
    except Exception:
        return
    tag = "r%dw%d" % (round_no, index)
    for _ in range(100000):
        if stop.is_set():
            break
        if rng.random() < 0.3:
            bodies = [make_body(rng, accounts, tag) for _ in range(rng.randrange(2, 30))]
        else:
            bodies = [make_body(rng, accounts, tag)]
        with LEDGER.lock:
            for b in bodies:
                LEDGER.bodies[b["transaction_id"]] = b
        try:
            if len(bodies) == 1:
                r = client.tx(bodies[0])
                items = [r.body]
            else:
                r = client.batch(bodies)
                items = (r.body or {}).get("results") if isinstance(r.body, dict) else None
                if r.status != 200 or not isinstance(items, list) or len(items) != len(bodies):
                    LEDGER.problem("batch answer: %r" % r)
                    items = None
        except Exception:
            with LEDGER.lock:
                LEDGER.unacked.extend(b["transaction_id"] for b in bodies)
            break  # the server is gone
        if items is None:
            with LEDGER.lock:
                LEDGER.unacked.extend(b["transaction_id"] for b in bodies)
            continue
        for b, item in zip(bodies, items):
            note_answer(b, item, "load")
    client.close()


def run_load_and_kill(server, accounts, round_no, rng, during_shutdown=False):
    stop = threading.Event()
    threads = [threading.Thread(target=load_worker, args=(i, server, accounts, stop, round_no), daemon=True)
               for i in range(ARGS.threads)]
    for t in threads:
        t.start()
    delay = rng.uniform(0.3, 3.0)
    time.sleep(delay)
    if during_shutdown:  # SIGTERM, then kill -9 while the shutdown is under way
        server.proc.send_signal(signal.SIGTERM)
        time.sleep(rng.uniform(0.0, 0.05))
    server.kill()
    stop.set()
    for t in threads:
        t.join(60)
    return delay


def retry_in_batches(client, txids, what):
    """Retries the requests (batches of 500); returns {txid: item}."""
    out = {}
    for i in range(0, len(txids), 500):
        part = txids[i:i + 500]
        r = client.batch([LEDGER.bodies[t] for t in part])
        items = (r.body or {}).get("results") if isinstance(r.body, dict) else None
        if r.status != 200 or not isinstance(items, list) or len(items) != len(part):
            LEDGER.problem("%s: retry batch answered %r" % (what, r))
            continue
        for t, item in zip(part, items):
            out[t] = item
    return out


def verify_after_restart(c, server, accounts, what):
    k = server.client()
    acked = list(LEDGER.acked)
    unacked = [t for t in LEDGER.unacked if t not in LEDGER.outcome]
    # 1. acknowledged transactions are there, with their result and sequence
    lost = 0
    for txid in acked:
        r = k.lookup(txid)
        res, seq = LEDGER.outcome[txid]
        body = r.body if isinstance(r.body, dict) else {}
        if (r.status, body.get("result"), body.get("sequence")) != (200, res, seq):
            lost += 1
            if lost <= 10:
                c.fail("%s: acknowledged %s (%s, seq %s) after restart: %r" % (what, txid, res, seq, r))
    c.eq(lost, 0, "%s: acknowledged transactions lost or changed" % what)
    # 2. retries of acknowledged requests are duplicates with the same answer
    answers = retry_in_batches(k, acked, what)
    bad = 0
    for txid, item in answers.items():
        res, seq = LEDGER.outcome[txid]
        if (item.get("duplicate"), item.get("result"), item.get("sequence")) != (True, res, seq):
            bad += 1
            if bad <= 10:
                c.fail("%s: retry of acknowledged %s (%s, seq %s) answered %r" % (what, txid, res, seq, item))
    c.eq(bad, 0, "%s: retries of acknowledged requests that were not exact duplicates" % what)
    # 3. unanswered requests: look-up and retry agree; afterwards the outcome is known
    applied_before = 0
    looked = {}
    for txid in unacked:
        r = k.lookup(txid)
        if r.status == 200 and isinstance(r.body, dict):
            looked[txid] = (r.body.get("result"), r.body.get("sequence"))
            applied_before += 1
        elif r.status != 404:
            c.fail("%s: lookup of unanswered %s: %r" % (what, txid, r))
    answers = retry_in_batches(k, unacked, what)
    for txid, item in answers.items():
        if not isinstance(item, dict) or item.get("result") not in RESULTS:
            c.fail("%s: retry of unanswered %s: %r" % (what, txid, item))
            continue
        if txid in looked:
            c.eq((item.get("duplicate"), item.get("result"), item.get("sequence")),
                 (True,) + looked[txid], "%s: retry of unanswered %s found by look-up" % (what, txid))
        else:
            c.eq(item.get("duplicate"), False, "%s: retry of unanswered %s not found by look-up" % (what, txid))
        LEDGER.outcome[txid] = (item["result"], item.get("sequence"))
    print("    %s: %d acknowledged, %d unanswered (%d of them applied before the crash)"
          % (what, len(acked), len(unacked), applied_before), flush=True)
    # 4. balances equal the sum of the ok effects; conservation; nothing negative
    model = h.Model()
    totals = {cur: Decimal(0) for cur in CURRENCIES}
    for txid, (res, _) in LEDGER.outcome.items():
        if res != "ok":
            continue
        body = LEDGER.bodies[txid]
        model.apply(body)
        if body["type"] in ("DEPOSIT", "WITHDRAW"):
            totals[body["currency"]] += dec(body["amount"]) * (1 if body["type"] == "DEPOSIT" else -1)
    seen = {cur: Decimal(0) for cur in CURRENCIES}
    mismatches = 0
    for a in accounts:
        got = k.balances(a)
        listed = {}
        for b in got.get("balances", []):
            av, fr = dec(b["available"]), dec(b["frozen"])
            listed[b["currency"]] = (av, fr)
            c.ok(av >= 0 and fr >= 0, "%s: negative balance %d %r" % (what, a, b))
            seen[b["currency"]] = seen.get(b["currency"], Decimal(0)) + av + fr
        for cur in CURRENCIES:
            exp = tuple(model.get(a, cur))
            if listed.get(cur, (Decimal(0), Decimal(0))) != exp:
                mismatches += 1
                if mismatches <= 10:
                    c.fail("%s: balance %d %s is %r, the known outcomes give %r"
                           % (what, a, cur, listed.get(cur), exp))
        # 5. the journal agrees with the balances
        state, problems = h.replay_history(k.full_history(a))
        for p in problems[:3]:
            c.fail("%s: history of %d: %s" % (what, a, p))
        for cur, (av, fr) in listed.items():
            hs = state.get(cur, [Decimal(0), Decimal(0)])
            if (hs[0], hs[1]) != (av, fr):
                c.fail("%s: history of %d %s replays to (%s, %s), balance (%s, %s)"
                       % (what, a, cur, hs[0], hs[1], av, fr))
    c.eq(mismatches, 0, "%s: balances that differ from the known outcomes" % what)
    for cur in CURRENCIES:
        c.eq(canon(seen[cur]), canon(totals[cur]), "%s: conservation of %s" % (what, cur))
    k.close()
    with LEDGER.lock:
        LEDGER.acked = []
        LEDGER.unacked = []


def make_round(round_no):
    def crash_round(c):
        rng = h.random.Random(SEED + round_no)
        server, accounts = STATE["server"], STATE["accounts"]
        server.extra_args = ["--snapshot-every", str(rng.choice((10, 25, 50, 100)))]
        if rng.random() < 0.5:  # ids leave memory quickly: retries must find them in the journal
            server.extra_args += ["--idempotency-count", "16", "--idempotency-retention-ms", "1000"]
        if "--wal-segment-bytes" in STATE["help"] and rng.random() < 0.5:  # rotation and trimming
            server.extra_args += ["--wal-segment-bytes", "65536"]
        server.start()
        server.wait_ready()
        delay = run_load_and_kill(server, accounts, round_no, rng)
        print("    round %d: killed after %.2f s (%s)" % (round_no, delay, " ".join(server.extra_args)), flush=True)
        for p in LEDGER.problems:
            c.fail(p)
        LEDGER.problems.clear()
        c.ok(len(LEDGER.acked) > 0, "round %d: nothing was acknowledged before the kill" % round_no)
        server.start()
        server.wait_ready()
        verify_after_restart(c, server, accounts, "round %d" % round_no)
        for p in LEDGER.problems:
            c.fail(p)
        LEDGER.problems.clear()
        server.kill()
    crash_round.__name__ = "crash_round_%d" % round_no
    return crash_round


def kill_during_shutdown(c):
    rng = h.random.Random(SEED + 999)
    server, accounts = STATE["server"], STATE["accounts"]
    server.extra_args = ["--snapshot-every", "25"]
    server.start()
    server.wait_ready()
    delay = run_load_and_kill(server, accounts, 1000, rng, during_shutdown=True)
    print("    SIGTERM then kill -9 after %.2f s of load" % delay, flush=True)
    for p in LEDGER.problems:
        c.fail(p)
    LEDGER.problems.clear()
    server.start()
    server.wait_ready()
    verify_after_restart(c, server, accounts, "kill during shutdown")
    server.kill()


def clean_restart(c):
    server, accounts = STATE["server"], STATE["accounts"]
    server.start()
    server.wait_ready()
    k = server.client()
    bodies = [make_body(RNG, accounts, "final") for _ in range(200)]
    for b in bodies:
        LEDGER.bodies[b["transaction_id"]] = b
    for i in range(0, len(bodies), 50):
        r = k.batch(bodies[i:i + 50])
        for b, item in zip(bodies[i:i + 50], (r.body or {}).get("results") or []):
            note_answer(b, item, "final")
    k.close()
    c.eq(server.stop(signal.SIGTERM), 0, "exit code after SIGTERM")
    server.start()
    server.wait_ready()
    verify_after_restart(c, server, accounts, "clean restart")
    c.eq(server.stop(signal.SIGTERM), 0, "exit code after the last SIGTERM")


def setup():
    h.require_binary(ARGS.bin)
    try:
        STATE["help"] = h.subprocess.run([ARGS.bin, "--help"], stdout=h.subprocess.PIPE, stderr=h.subprocess.STDOUT,
                                         timeout=20).stdout.decode("utf-8", "replace")
    except (OSError, h.subprocess.TimeoutExpired):
        STATE["help"] = ""
    print("crash: binary %s, seed %d, %d rounds" % (ARGS.bin, SEED, ARGS.rounds), flush=True)
    accounts = sorted(set(RNG.randrange(1, 2**63) for _ in range(ARGS.accounts)))
    STATE["accounts"] = accounts
    STATE["server"] = h.Server(ARGS.bin, shards=2)
    # fund everyone once, so that the load has something to move
    server = STATE["server"]
    server.extra_args = ["--snapshot-every", "50"]
    server.start()
    k = server.client()
    funding = [h.deposit(a, cur, amt) for a in accounts for cur, amt in (("USDT", "5000"), ("BTC", "5"))]
    for b in funding:
        LEDGER.bodies[b["transaction_id"]] = b
    r = k.batch(funding)
    if r.status != 200:
        raise AssertionError("funding batch: %r" % r)
    for b, item in zip(funding, r.body.get("results") or []):
        note_answer(b, item, "funding")
    LEDGER.acked = []
    k.close()
    server.kill()


for _n in range(1, ARGS.rounds + 1):
    suite.test(make_round(_n))
suite.test(kill_during_shutdown)
suite.test(clean_restart)

if __name__ == "__main__":
    suite.main(setup)
