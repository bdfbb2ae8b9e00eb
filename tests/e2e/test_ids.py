#!/usr/bin/env python3
"""test_ids.py -- transaction ids across shards, after memory eviction and after restarts.

Runs a 4-shard server whose id memory holds only 16 ids per shard, so that nearly every id
leaves memory at once and the node-wide id filter, the id claims and the journal must
answer instead (docs/embedded.md, "Transaction ids across shards"):
  - races: the same id sent at the same moment for two different accounts (mostly on
    different shards) applies exactly once; the other request is a conflict;
  - eviction: ids retried right after they were used (gone from memory, maybe not yet in
    the journal) are duplicates with the original result and sequence, never applied again;
  - restart: after a clean stop and after kill -9, every used id is still a duplicate, and
    fresh ids are answered without asking the journal (the filter is loaded from it);
  - balances equal the effects of the acknowledged ok transactions throughout.

    python3 tests/e2e/test_ids.py [--bin build/balanced] [--seed N]
"""

import os
import re
import signal
import sys
import threading

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness as h  # noqa: E402
from harness import Decimal, deposit, new_id  # noqa: E402

ARGS = h.parse_args(__doc__)
SEED, RNG = h.rng_from(ARGS.seed)
suite = h.Suite("e2e_ids", ARGS)
S = {}
ACCOUNTS = list(range(5001, 5001 + 64))
APPLIED = {}      # txid -> (account, amount, sequence) of the ok use
EXPECTED = {}     # account -> Decimal USDT


def server():
    return S["server"]


def metric(name):
    text = server().client().get("/metrics").raw.decode("utf-8")
    m = re.search(r"^%s (\d+)" % re.escape(name), text, re.M)
    return int(m.group(1)) if m else None


def record_ok(body, item):
    APPLIED[body["transaction_id"]] = (body["account_id"], body["amount"], item.get("sequence"))
    EXPECTED[body["account_id"]] = EXPECTED.get(body["account_id"], Decimal(0)) + Decimal(body["amount"])


def check_balances(c, what):
    k = server().client()
    for account in ACCOUNTS:
        body = k.balance(account, "USDT")
        want = EXPECTED.get(account, Decimal(0))
        c.eq(Decimal(body.get("available", "0")), want, "%s: account %d available (%r)" % (what, account, body))


def send_batches(bodies, size=100):
    """Posts bodies in batches; returns the result items in order."""
    k = server().client()
    items = []
    for i in range(0, len(bodies), size):
        r = k.batch(bodies[i:i + size])
        if r.status != 200 or not isinstance(r.body, dict):
            raise h.Failure("batch failed: %r" % (r,))
        items += r.body.get("results", [])
    return items


@suite.test
def races_across_shards(c):
    ids = [new_id("race") for _ in range(300)]
    pairs = []
    for txid in ids:
        a, b = RNG.sample(ACCOUNTS, 2)
        pairs.append((deposit(a, "USDT", "1", txid=txid), deposit(b, "USDT", "2", txid=txid)))
    answers = [[None, None] for _ in ids]
    barrier = threading.Barrier(2)

    def run(side):
        k = server().client()
        barrier.wait()
        for n, pair in enumerate(pairs):
            r = k.tx(pair[side])
            answers[n][side] = (r.status, r.body)

    threads = [threading.Thread(target=run, args=(side,)) for side in (0, 1)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    conflicts = 0
    for n, (first, second) in enumerate(answers):
        results = []
        for side, (status, body) in enumerate((first, second)):
            result = body.get("result") if isinstance(body, dict) else None
            c.ok(status == (409 if result == "conflict" else 200), "race %d side %d: %r" % (n, side, (status, body)))
            results.append(result)
        if not c.eq(sorted(results), ["conflict", "ok"], "race %d results" % n):
            continue
        winner = results.index("ok")
        record_ok(pairs[n][winner], answers[n][winner][1])
        conflicts += 1
    c.eq(conflicts, len(ids), "races with exactly one winner")
    check_balances(c, "after the races")


@suite.test
def retries_after_eviction(c):
    bodies = [deposit(RNG.choice(ACCOUNTS), "USDT", str(RNG.randrange(1, 100)), txid=new_id("evict"))
              for _ in range(3000)]
    lookups_before = metric("balanced_id_lookups_total")
    first = send_batches(bodies)
    c.require(len(first) == len(bodies), "one result per item")
    for body, item in zip(bodies, first):
        c.require(item.get("result") == "ok" and not item.get("duplicate"), "first use: %r" % (item,))
        record_ok(body, item)
    lookups = metric("balanced_id_lookups_total") - lookups_before
    # Fresh ids are ruled out by the filter; only its rare false "maybe"s reach the journal.
    c.ok(lookups < len(bodies) // 20, "fresh ids asked of the journal: %d of %d" % (lookups, len(bodies)))
    again = send_batches(bodies, size=250)
    for body, item, original in zip(bodies, again, first):
        c.ok(item.get("duplicate") is True and item.get("result") == "ok" and
             item.get("sequence") == original.get("sequence"),
             "retry of %s: %r (first %r)" % (body["transaction_id"], item, original))
    # The same ids on other accounts: conflicts, nothing applied.
    moved = [dict(b, account_id=ACCOUNTS[(ACCOUNTS.index(b["account_id"]) + 1) % len(ACCOUNTS)]) for b in bodies[:500]]
    for body, item in zip(moved, send_batches(moved)):
        c.ok(item.get("result") == "conflict", "moved %s: %r" % (body["transaction_id"], item))
    check_balances(c, "after the retries")


@suite.test
def crossing_batches(c):
    """Three clients send batches drawn from one small pool of fresh ids, each id with its
    own account per client, in shuffled orders, so that the shards contest each other's
    claims in every order: no request may hang, and every id applies exactly once."""
    pool = [new_id("cross") for _ in range(120)]
    accounts = {txid: RNG.sample(ACCOUNTS, 3) for txid in pool}
    answers = {}
    lock = threading.Lock()
    barrier = threading.Barrier(3)

    def run(side, seed):
        import random
        rng = random.Random(seed)
        k = server().client()
        barrier.wait()
        for _ in range(8):
            chosen = rng.sample(pool, 40)
            bodies = [deposit(accounts[txid][side], "USDT", "1", txid=txid) for txid in chosen]
            r = k.batch(bodies)
            with lock:
                for body, item in zip(bodies, r.body.get("results", []) if isinstance(r.body, dict) else []):
                    answers.setdefault(body["transaction_id"], []).append((side, body, item))

    threads = [threading.Thread(target=run, args=(side, RNG.randrange(1 << 30))) for side in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    c.require(not any(t.is_alive() for t in threads), "a batch did not come back within 120 s")
    c.eq(sum(len(uses) for uses in answers.values()), 3 * 8 * 40, "answered items")
    for txid, uses in answers.items():
        first_ok = [(side, body, item) for side, body, item in uses if item.get("result") == "ok" and not item.get("duplicate")]
        if not c.eq(len(first_ok), 1, "first applications of %s" % txid):
            continue
        winner, body, item = first_ok[0]
        record_ok(body, item)
        for side, _, other in uses:
            want = "ok" if side == winner else "conflict"
            c.ok(other.get("result") == want and other.get("sequence") == item.get("sequence"),
                 "%s from client %d: %r (first use %r)" % (txid, side, other, item))
    check_balances(c, "after the crossing batches")


def retry_all(c, what):
    ids = list(APPLIED)
    RNG.shuffle(ids)
    k = server().client()
    for txid in ids[:400]:
        account, amount, sequence = APPLIED[txid]
        r = k.tx(deposit(account, "USDT", amount, txid=txid))
        body = r.body if isinstance(r.body, dict) else {}
        c.ok(r.status == 200 and body.get("duplicate") is True and body.get("sequence") == sequence,
             "%s: retry of %s: %r" % (what, txid, r))


@suite.test
def restart_keeps_every_id(c):
    server().stop()
    server().start()
    retry_all(c, "after a clean stop")
    skips = metric("balanced_id_filter_skips_total")
    fresh = [deposit(RNG.choice(ACCOUNTS), "USDT", "3", txid=new_id("fresh")) for _ in range(200)]
    for body, item in zip(fresh, send_batches(fresh)):
        c.ok(item.get("result") == "ok" and not item.get("duplicate"), "fresh: %r" % (item,))
        record_ok(body, item)
    c.ok(metric("balanced_id_filter_skips_total") - skips >= 150, "the filter loaded from the journal answers fresh ids")
    server().proc.send_signal(signal.SIGKILL)
    server().wait_exit(10)
    server().start()
    retry_all(c, "after kill -9")
    check_balances(c, "after the restarts")


@suite.test
def replay_after_snapshots(c):
    """Snapshots every 100 records, then a clean stop: at start-up the id filter holds the
    journal's ids up to each shard's snapshot and replay adds the rest as it goes, without
    asking the journal about the replayed commands' own ids; every id is still a duplicate
    afterwards, with its original sequence."""
    node = h.Server(h.find_binary(ARGS.bin), shards=2,
                    args=["--idempotency-count", "16", "--id-filter-bytes", "1048576", "--snapshot-every", "100"])
    node.start()
    try:
        k = node.client()
        used = {}
        bodies = [deposit(7001 + i % 16, "USDT", "1", txid=new_id("replay")) for i in range(600)]
        for i in range(0, len(bodies), 50):
            r = k.batch(bodies[i:i + 50])
            c.ok(r.status == 200 and isinstance(r.body, dict), "batch: %r" % (r,))
            for body, item in zip(bodies[i:i + 50], r.body.get("results", [])):
                c.ok(item.get("result") == "ok", "deposit: %r" % (item,))
                used[body["transaction_id"]] = item.get("sequence")
        c.eq(node.stop(signal.SIGTERM), 0, "clean stop")
        node.start()
        loaded = [e for e in node.log_events() if e.get("event") == "id_filter_loaded"]
        c.ok(len(loaded) == 1 and loaded[0].get("ids", 0) > 0 and loaded[0].get("left_to_replay", 0) > 0,
             "the filter loaded ids up to the snapshots and left the rest to replay: %r" % (loaded,))
        k = node.client()
        text = k.get("/metrics").raw.decode("utf-8")
        m = re.search(r"^balanced_id_lookups_total (\d+)", text, re.M)
        lookups = int(m.group(1)) if m else -1
        left = loaded[0].get("left_to_replay", 0) if loaded else 0
        c.ok(0 <= lookups < max(5, left // 10), "replay asked the journal %d times for %d replayed ids" % (lookups, left))
        for body in bodies:
            r = k.tx(body)
            got = r.body if isinstance(r.body, dict) else {}
            c.ok(r.status == 200 and got.get("duplicate") is True and got.get("sequence") == used[body["transaction_id"]],
                 "retry of %s after the restart: %r" % (body["transaction_id"], r))
        for account in range(7001, 7017):
            got = k.balance(account, "USDT")
            c.eq(Decimal(got.get("available", "0")), Decimal(sum(1 for i in range(600) if 7001 + i % 16 == account)),
                 "account %d after the restart (%r)" % (account, got))
    finally:
        node.stop()


def setup():
    binary = h.find_binary(ARGS.bin)
    h.require_binary(binary)
    S["server"] = h.Server(binary, shards=4, args=["--idempotency-count", "16", "--id-filter-bytes", "1048576"])
    S["server"].start()


def teardown():
    if "server" in S:
        S["server"].stop()


if __name__ == "__main__":
    print("e2e ids: seed %d" % SEED, flush=True)
    suite.main(setup, teardown)
