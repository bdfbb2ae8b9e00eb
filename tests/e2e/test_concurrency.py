#!/usr/bin/env python3
"""test_concurrency.py -- many clients at once against a 4-shard server.

16 threads, each on its own keep-alive connection, send random deposits, withdrawals,
freezes, unfreezes, deductions, transfers, EVENTs (trade settlements) and small batches
over 200 accounts and two currencies, for a bounded number of operations and a bounded
time. Every request's outcome is recorded (a request whose connection failed is retried
with the same body until it has an answer: it is idempotent). Afterwards:
  - every balance read from the API equals the sum of the effects of the acknowledged
    `ok` transactions, and none is negative;
  - per currency, the total of all balances equals deposits - withdrawals - deductions;
  - each account's history replays from zero to its balances and lists every
    acknowledged transaction that touched it (rejected ones too);
  - retries seen during the load were duplicates with the original result and sequence.

    python3 tests/e2e/test_concurrency.py [--bin build/balanced] [--seed N]
        [--threads 16] [--ops 400] [--seconds 8]
"""

import os
import signal
import sys
import threading
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import Decimal, canon, dec  # noqa: E402


def extra_args(p):
    p.add_argument("--threads", type=int, default=int(os.environ.get("BALANCED_CONC_THREADS", "16")))
    p.add_argument("--ops", type=int, default=int(os.environ.get("BALANCED_CONC_OPS", "400")),
                   help="operations per thread at most")
    p.add_argument("--seconds", type=float, default=float(os.environ.get("BALANCED_CONC_SECONDS", "8")))
    p.add_argument("--accounts", type=int, default=200)


ARGS = h.parse_args(__doc__, extra_args)
SEED, RNG = h.rng_from(ARGS.seed)
suite = h.Suite("e2e_concurrency", ARGS)
CURRENCIES = ("USDT", "BTC")
STATE = {}


class Recorder:
    def __init__(self):
        self.lock = threading.Lock()
        self.bodies = {}      # txid -> request body
        self.results = {}     # txid -> result
        self.sequences = {}   # txid -> sequence
        self.problems = []
        self.unanswered = []  # txids that never got an answer
        self.retries_checked = 0
        self.reconnects = 0

    def problem(self, text):
        with self.lock:
            if len(self.problems) < 200:
                self.problems.append(text)


def check_item(rec, body, item, what):
    """Checks one transaction result object; returns its result or None."""
    if not isinstance(item, dict):
        rec.problem("%s: result is not an object: %r" % (what, item))
        return None
    if "error" in item:
        rec.problem("%s: unexpected validation error %r for %s" % (what, item, body))
        return None
    result = item.get("result")
    if result not in ("ok", "insufficient_available", "insufficient_frozen", "overflow"):
        rec.problem("%s: unexpected result %r" % (what, item))
        return None
    if item.get("transaction_id") != body["transaction_id"]:
        rec.problem("%s: answer for another transaction: %r" % (what, item))
    bals = item.get("balances")
    keys = h.touched(body)
    if not isinstance(bals, list) or [(b.get("account_id"), b.get("currency")) for b in bals] != keys:
        rec.problem("%s: balances do not list the touched pairs %r: %r" % (what, keys, bals))
    else:
        for b in bals:
            try:
                if dec(b["available"]) < 0 or dec(b["frozen"]) < 0:
                    rec.problem("%s: negative balance %r" % (what, b))
            except (KeyError, ArithmeticError):
                rec.problem("%s: bad balance %r" % (what, b))
    return result


def record(rec, body, item, retried):
    txid = body["transaction_id"]
    result = item.get("result")
    with rec.lock:
        if txid in rec.results:
            if rec.results[txid] != result or rec.sequences[txid] != item.get("sequence"):
                rec.problems.append("%s answered twice differently: %r then %r"
                                    % (txid, (rec.results[txid], rec.sequences[txid]), item))
            return
        rec.results[txid] = result
        rec.sequences[txid] = item.get("sequence")
    if item.get("duplicate") and not retried:
        rec.problem("%s: first answer flagged duplicate: %r" % (txid, item))


def random_body(rng, accounts, tag):
    a = rng.choice(accounts)
    cur = rng.choice(CURRENCIES)
    scale = 1 if cur == "USDT" else 1000
    amt = canon(Decimal(rng.randrange(1, 3000000)) / (1000 * scale))
    txid = h.new_id(tag)
    k = rng.random()
    if k < 0.18:
        return h.deposit(a, cur, amt, txid)
    if k < 0.34:
        return h.withdraw(a, cur, amt, txid)
    if k < 0.46:
        return h.freeze(a, cur, amt, txid)
    if k < 0.55:
        return h.unfreeze(a, cur, amt, txid)
    if k < 0.60:
        return h.deduct(a, cur, amt, txid)
    if k < 0.85:
        b = rng.choice(accounts)
        while b == a:
            b = rng.choice(accounts)
        return h.transfer(a, b, cur, amt, txid)
    b = rng.choice(accounts)
    while b == a:
        b = rng.choice(accounts)
    q = canon(Decimal(rng.randrange(1, 200000)) / 1000)
    p = canon(Decimal(rng.randrange(1, 200000)) / 1000000)
    from_frozen = rng.random() < 0.5
    legs = [h.leg(a, "USDT", frozen_delta="-" + q) if from_frozen else h.leg(a, "USDT", "-" + q),
            h.leg(b, "USDT", q), h.leg(b, "BTC", "-" + p), h.leg(a, "BTC", p)]
    return h.event(legs, txid)


def send_with_retry(rec, client_box, server, fn, what):
    """Calls fn(client) until it returns a response (reconnecting on errors), at most 8 tries."""
    last = None
    for attempt in range(8):
        try:
            return fn(client_box[0]), attempt > 0
        except (OSError, h.http.client.HTTPException) as e:
            last = e
            with rec.lock:
                rec.reconnects += 1
            client_box[0].close()
            time.sleep(0.05 * (attempt + 1))
            client_box[0] = server.client()
    rec.problem("%s: no answer after 8 tries: %s" % (what, last))
    return None, True


def worker(index, server, accounts, rec, deadline):
    rng = h.random.Random(SEED * 1000 + index)
    box = [server.client()]
    mine = []  # (body, result, sequence) of this thread's answered requests
    tag = "c%d" % index
    for n in range(ARGS.ops):
        if time.monotonic() > deadline:
            break
        roll = rng.random()
        if roll < 0.03 and mine:
            body, result, seq = rng.choice(mine)
            resp, _ = send_with_retry(rec, box, server, lambda c: c.tx(body), "retry " + body["transaction_id"])
            if resp is not None:
                item = resp.body if isinstance(resp.body, dict) else {}
                if (item.get("duplicate"), item.get("result"), item.get("sequence")) != (True, result, seq):
                    rec.problem("retry of %s: expected duplicate %s seq %s, got %r" % (body["transaction_id"], result, seq, resp))
                with rec.lock:
                    rec.retries_checked += 1
            continue
        if roll < 0.13:
            bodies = [random_body(rng, accounts, tag) for _ in range(rng.randrange(2, 20))]
            with rec.lock:
                for b in bodies:
                    rec.bodies[b["transaction_id"]] = b
            resp, retried = send_with_retry(rec, box, server, lambda c: c.batch(bodies), "batch")
            if resp is None:
                with rec.lock:
                    rec.unanswered.extend(b["transaction_id"] for b in bodies)
                continue
            if resp.status != 200 or not isinstance(resp.body, dict):
                rec.problem("batch: HTTP %r" % resp)
                continue
            items = resp.body.get("results") or []
            if len(items) != len(bodies):
                rec.problem("batch: %d results for %d items" % (len(items), len(bodies)))
                continue
            for b, item in zip(bodies, items):
                result = check_item(rec, b, item, "batch item " + b["transaction_id"])
                if result is not None:
                    record(rec, b, item, retried)
                    mine.append((b, result, item.get("sequence")))
            continue
        body = random_body(rng, accounts, tag)
        with rec.lock:
            rec.bodies[body["transaction_id"]] = body
        resp, retried = send_with_retry(rec, box, server, lambda c: c.tx(body), body["transaction_id"])
        if resp is None:
            with rec.lock:
                rec.unanswered.append(body["transaction_id"])
            continue
        item = resp.body if isinstance(resp.body, dict) else {}
        result = check_item(rec, body, item, body["transaction_id"])
        if result is None:
            continue
        expected_status = {"ok": 200, "insufficient_available": 422, "insufficient_frozen": 422, "overflow": 422}[result]
        if resp.status != expected_status:
            rec.problem("%s: HTTP %d for result %s" % (body["transaction_id"], resp.status, result))
        record(rec, body, item, retried)
        mine.append((body, result, item.get("sequence")))
    box[0].close()


@suite.test
def concurrent_load(c):
    server = STATE["server"]
    accounts = sorted(set(RNG.randrange(1, 2**63) for _ in range(ARGS.accounts)))
    rec = Recorder()
    k = server.client()
    funding = [h.deposit(a, cur, amt) for a in accounts for cur, amt in (("USDT", "10000"), ("BTC", "10"))]
    for i in range(0, len(funding), 1000):
        part = funding[i:i + 1000]
        r = k.batch(part)
        c.require(r.status == 200 and isinstance(r.body, dict), "funding batch: %r" % r)
        for b, item in zip(part, r.body.get("results") or []):
            rec.bodies[b["transaction_id"]] = b
            if check_item(rec, b, item, "funding"):
                record(rec, b, item, False)
    k.close()
    deadline = time.monotonic() + ARGS.seconds
    threads = [threading.Thread(target=worker, args=(i, server, accounts, rec, deadline), daemon=True)
               for i in range(ARGS.threads)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(ARGS.seconds + 300)
        c.require(not t.is_alive(), "a worker thread did not finish")
    elapsed = time.monotonic() - t0
    counts = {}
    for r in rec.results.values():
        counts[r] = counts.get(r, 0) + 1
    print("    %d transactions answered in %.1f s (%.0f/s), results %s, %d retries checked, %d reconnects"
          % (len(rec.results), elapsed, len(rec.results) / max(elapsed, 1e-9), counts, rec.retries_checked,
             rec.reconnects), flush=True)
    for p in rec.problems:
        c.fail(p)
    c.ok(counts.get("ok", 0) > 100, "too few ok transactions: %r" % counts)
    c.ok(sum(v for k_, v in counts.items() if k_ != "ok") > 0, "the load never hit a rejection: %r" % counts)
    # Requests that never got an answer: ask once more; they apply at most once.
    if rec.unanswered:
        k = server.client()
        for txid in rec.unanswered:
            body = rec.bodies[txid]
            r = k.tx(body)
            item = r.body if isinstance(r.body, dict) else {}
            if check_item(rec, body, item, "late retry " + txid):
                record(rec, body, item, True)
        k.close()
    STATE.update(rec=rec, accounts=accounts)


def expected_state(rec):
    model = h.Model()
    totals = {cur: Decimal(0) for cur in CURRENCIES}
    for txid, result in rec.results.items():
        if result != "ok":
            continue
        body = rec.bodies[txid]
        model.apply(body)
        t = body["type"]
        if t in ("DEPOSIT", "WITHDRAW", "DEDUCT_FROZEN"):
            sign = 1 if t == "DEPOSIT" else -1
            totals[body["currency"]] += sign * dec(body["amount"])
        elif t == "EVENT":
            for leg in body["legs"]:
                totals[leg["currency"]] += dec(leg.get("available_delta", "0")) + dec(leg.get("frozen_delta", "0"))
    return model, totals


@suite.test
def final_balances_match_acknowledged(c):
    c.require("rec" in STATE, "the load did not run")
    rec, accounts = STATE["rec"], STATE["accounts"]
    model, totals = expected_state(rec)
    k = STATE["server"].client()
    seen = {cur: Decimal(0) for cur in CURRENCIES}
    mismatches = 0
    for a in accounts:
        got = k.balances(a)
        listed = set()
        for b in got.get("balances", []):
            cur = b.get("currency")
            listed.add(cur)
            av, fr = dec(b["available"]), dec(b["frozen"])
            c.ok(av >= 0 and fr >= 0, "negative balance %d %s: %r" % (a, cur, b))
            exp = model.get(a, cur)
            if (av, fr) != tuple(exp):
                mismatches += 1
                if mismatches <= 20:
                    c.fail("balance %d %s: API (%s, %s), acknowledged effects (%s, %s)"
                           % (a, cur, av, fr, canon(exp[0]), canon(exp[1])))
            seen[cur] = seen.get(cur, Decimal(0)) + av + fr
        for cur in CURRENCIES:
            if cur not in listed and model.get(a, cur) != [0, 0]:
                c.fail("balance %d %s missing from the API, expected %r" % (a, cur, model.get(a, cur)))
    c.eq(mismatches, 0, "balances that differ from the acknowledged effects")
    for cur in CURRENCIES:
        c.eq(canon(seen[cur]), canon(totals[cur]), "conservation of %s: total of balances vs deposits - "
                                                   "withdrawals - deductions" % cur)
    k.close()


@suite.test
def history_replays_to_balances(c):
    c.require("rec" in STATE, "the load did not run")
    rec, accounts = STATE["rec"], STATE["accounts"]
    per_account = {}
    for txid in rec.results:
        for a, cur in h.touched(rec.bodies[txid]):
            per_account.setdefault(a, []).append((txid, cur))
    k = STATE["server"].client()
    rng = h.random.Random(SEED + 7)
    sample = rng.sample(accounts, min(60, len(accounts)))
    for a in sample:
        entries = k.full_history(a, limit=rng.choice((37, 100, 1000)))
        state, problems = h.replay_history(entries)
        for p in problems[:5]:
            c.fail("history of %d: %s" % (a, p))
        bal = k.balances(a)
        for b in bal.get("balances", []):
            got = state.get(b["currency"], [Decimal(0), Decimal(0)])
            c.eq((canon(got[0]), canon(got[1])), (b["available"], b["frozen"]),
                 "history replay of %d %s vs balance" % (a, b["currency"]))
        listed = sorted((e.get("transaction_id"), e.get("currency")) for e in entries)
        expected = sorted(per_account.get(a, []))
        if listed != expected:
            extra = set(listed) - set(expected)
            missing = set(expected) - set(listed)
            c.fail("history of %d: %d entries, expected %d; missing %s; extra %s"
                   % (a, len(listed), len(expected), sorted(missing)[:5], sorted(extra)[:5]))
        for e in entries:
            txid = e.get("transaction_id")
            if txid in rec.results:
                c.eq((e.get("result"), e.get("sequence")) if e.get("type") not in ("TRANSFER", "EVENT") else e.get("result"),
                     (rec.results[txid], rec.sequences[txid]) if e.get("type") not in ("TRANSFER", "EVENT")
                     else rec.results[txid], "history entry %s vs its answer" % txid)
    k.close()


@suite.test
def lookups_match_answers(c):
    c.require("rec" in STATE, "the load did not run")
    rec = STATE["rec"]
    k = STATE["server"].client()
    rng = h.random.Random(SEED + 11)
    ids = sorted(rec.results)
    for txid in rng.sample(ids, min(300, len(ids))):
        r = k.lookup(txid)
        body = r.body if isinstance(r.body, dict) else {}
        c.eq((r.status, body.get("result"), body.get("sequence")), (200, rec.results[txid], rec.sequences[txid]),
             "lookup of %s" % txid)
    k.close()


@suite.test
def threads_are_named(c):
    """Every thread but the main one (which keeps the process's name) says what it is."""
    task_dir = "/proc/%d/task" % STATE["server"].proc.pid
    names = []
    for tid in os.listdir(task_dir):
        try:
            with open(os.path.join(task_dir, tid, "comm")) as f:
                names.append(f.read().strip())
        except FileNotFoundError:  # a short-lived thread (bal-cross-sync) ended meanwhile
            continue
    for name in ["bal-persist", "bal-coord", "bal-signal", "bal-shard-0", "bal-shard-3"]:
        c.ok(name in names, "a thread named %s among %s" % (name, sorted(names)))
    if (os.cpu_count() or 1) > 1:  # --http-threads defaults to the cores; loop 0 is the main thread
        c.ok(any(n.startswith("bal-http-") for n in names), "an HTTP loop thread among %s" % sorted(names))


@suite.test
def server_stops_cleanly(c):
    c.eq(STATE["server"].stop(signal.SIGTERM), 0, "exit code after SIGTERM")


def setup():
    h.require_binary(ARGS.bin)
    print("e2e_concurrency: binary %s, seed %d, %d threads x %d ops, %.0f s"
          % (ARGS.bin, SEED, ARGS.threads, ARGS.ops, ARGS.seconds), flush=True)
    STATE["server"] = h.Server(ARGS.bin, shards=4, args=["--snapshot-every", "50"]).start()
    STATE["server"].wait_ready()


if __name__ == "__main__":
    suite.main(setup)
