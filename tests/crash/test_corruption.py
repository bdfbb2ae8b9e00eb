#!/usr/bin/env python3
"""test_corruption.py -- damaged data directories: what start-up must do with them.

Each case builds a data directory with a real server (stopped with kill -9, so that the log
is left as a crash leaves it), damages it, and starts the server again:
  - torn tail: the last record of the last WAL segment cut in the middle, or zero bytes
    appended after it -> the server starts, logs the truncation, and every transaction
    acknowledged before the last record is intact (the last one is either fully there or
    fully absent, consistently in balances, look-up and history);
  - a flipped byte inside a record that is followed by valid records, a damaged record in a
    segment that is not the last, a damaged segment header, a deleted middle segment ->
    the server refuses to start: non-zero exit and a message naming the file (and offset);
  - the newest snapshot damaged -> the server falls back to the previous snapshot and the
    log, and has all the data.
Cases that need several WAL segments use a segment-size option when --help shows one;
without one they are skipped with a note (counted as neither passed nor failed).

WAL layout (little-endian): segment files shard-<i>/wal/<20-digit first lsn>.wal with a
32-byte header (magic "bal-wal\\n", version u32, header size u32, first lsn u64, reserved
u32, crc32c u32), then records: crc32c u32 | payload length u32 | lsn u64 | payload, the CRC
covering length, lsn and payload. Snapshots: shard-<i>/snapshots/<20-digit lsn>.snap with a
40-byte header, then the payload.

    python3 tests/crash/test_corruption.py [--bin build/balanced]
"""

import os
import re
import shutil
import signal
import struct
import subprocess
import sys
import time

sys.dont_write_bytecode = True  # keep the source tree clean
sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "e2e"))
import harness as h  # noqa: E402

ARGS = h.parse_args(__doc__)
SEED, RNG = h.rng_from(ARGS.seed)
suite = h.Suite("crash_corruption", ARGS)
STATE = {}
SEGMENT_HEADER = 32
RECORD_HEADER = 16
REFUSE_TIMEOUT_S = 30.0
BIG_SNAPSHOT_EVERY = "100000000"

# ---------------------------------------------------------------------------------------
# CRC32C (Castagnoli), to read the log the way the server does.

_CRC_TABLE = []
for _i in range(256):
    _c = _i
    for _ in range(8):
        _c = (_c >> 1) ^ 0x82F63B78 if _c & 1 else _c >> 1
    _CRC_TABLE.append(_c)


def crc32c(data):
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


assert crc32c(b"123456789") == 0xE3069283


def read_segment(path):
    """(header_ok, [(offset, total_bytes, lsn)], end_of_valid_records, file_size)."""
    with open(path, "rb") as f:
        data = f.read()
    header_ok = (len(data) >= SEGMENT_HEADER and data[:8] == b"bal-wal\n"
                 and struct.unpack_from("<I", data, 28)[0] == crc32c(data[:28]))
    records = []
    off = SEGMENT_HEADER
    while off + RECORD_HEADER <= len(data):
        crc, length, lsn = struct.unpack_from("<IIQ", data, off)
        end = off + RECORD_HEADER + length
        if end > len(data) or crc != crc32c(data[off + 4:end]):
            break
        records.append((off, RECORD_HEADER + length, lsn))
        off = end
    return header_ok, records, off, len(data)


def zeros_after(path, offset):
    """Whether every byte of the file from offset on is zero: the space the log prepares
    ahead of its records (docs/embedded.md), left as it was by a crash."""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().count(0) == os.path.getsize(path) - offset


def flip_byte(path, offset):
    with open(path, "r+b") as f:
        f.seek(offset)
        b = f.read(1)
        f.seek(offset)
        f.write(bytes([b[0] ^ 0x5A]))
        f.flush()
        os.fsync(f.fileno())


# ---------------------------------------------------------------------------------------
# Fixtures: data directories made by a real server.

def server_help():
    if "help" not in STATE:
        try:
            p = subprocess.run([ARGS.bin, "--help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=20)
            STATE["help"] = p.stdout.decode("utf-8", "replace")
        except (subprocess.TimeoutExpired, OSError):
            STATE["help"] = ""
    return STATE["help"]


def segment_flag():
    """The option that sets the WAL segment size, if the server has one."""
    m = re.search(r"(--wal-segment[a-z-]*|--segment[a-z-]*)", server_help())
    return m.group(1) if m else None


def build_fixture(name, count, snapshot_every=BIG_SNAPSHOT_EVERY, extra=(), restarts=0):
    """A stopped (kill -9) 1-shard data dir where account 1000+i got deposit i+1 in
    transaction fx-<name>-<i>, one request after another. Returns (dir, ids, accounts)."""
    d = h.make_temp_dir("balanced-fixture-")
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", str(snapshot_every)] + list(extra))
    ids, accounts = [], []
    per_start = count // (restarts + 1)
    i = 0
    for start in range(restarts + 1):
        s.start()
        k = s.client()
        n = per_start if start < restarts else count - i
        for _ in range(n):
            txid = "fx-%s-%d" % (name, i)
            r = k.tx(h.deposit(1000 + i, "USDT", str(i + 1), txid))
            if r.status != 200:
                raise AssertionError("fixture %s: deposit %d: %r" % (name, i, r))
            ids.append(txid)
            accounts.append(1000 + i)
            i += 1
        k.close()
        # let the journal store catch up (it trails the log), then crash
        time.sleep(1.0)
        s.kill()
    return d, ids, accounts


def copy_fixture(src):
    dst = h.make_temp_dir("balanced-case-")
    shutil.rmtree(dst)
    shutil.copytree(src, dst)
    return dst


def expect_refusal(c, data_dir, what, file_name, shards=1, args=()):
    """Starts the server on a damaged dir: it must exit non-zero, naming the file."""
    s = h.Server(ARGS.bin, data_dir=data_dir, shards=shards, args=list(args))
    s.spawn()
    deadline = time.monotonic() + REFUSE_TIMEOUT_S
    code = None
    while time.monotonic() < deadline:
        code = s.proc.poll()
        if code is not None or s.port:
            break
        time.sleep(0.05)
    if code is None:
        listening = bool(s.port)
        s.kill()
        c.fail("%s: the server %s instead of refusing to start" % (what, "started listening" if listening
                                                                  else "neither exited nor listened within 30 s"))
        return False
    s._reader.join(5)
    text = "\n".join(s.current_lines())
    c.ok(code != 0, "%s: exit code %d, expected non-zero" % (what, code))
    c.ok(file_name in text, "%s: the message must name %s; stderr:\n%s" % (what, file_name, text[-1500:]))
    c.ok("offset" in text.lower(), "%s: the message should give the offset; stderr:\n%s" % (what, text[-800:]))
    return True


def check_data(c, client, ids, accounts, what, last_optional=False):
    """Account 1000+i has i+1 and fx id i is found. With last_optional the last one's
    balance may be zero (its record was cut); its journal is checked by check_cut_record."""
    n = len(ids)
    for i, (txid, a) in enumerate(zip(ids, accounts)):
        bal = client.balance(a, "USDT").get("available")
        if last_optional and i == n - 1:
            c.ok(bal in ("0", str(i + 1)), "%s: balance of the cut account %d is %r, neither 0 nor %d"
                 % (what, a, bal, i + 1))
            continue
        look = client.lookup(txid)
        hist = client.full_history(a)
        c.eq(bal, str(i + 1), "%s: balance of account %d" % (what, a))
        c.eq(look.status, 200, "%s: look-up of %s" % (what, txid))
        c.eq([e.get("transaction_id") for e in hist], [txid], "%s: history of %d" % (what, a))


def check_cut_record(c, client, txid, account, amount, what):
    """The last transaction lost its log record: balances, look-up and history must agree
    on whether it happened (SPEC: replaying the journal gives the balances)."""
    bal = client.balance(account, "USDT").get("available")
    look = client.lookup(txid)
    hist = client.full_history(account)
    present = (bal, look.status, [e.get("transaction_id") for e in hist])
    if bal == "0":
        c.eq(present, ("0", 404, []), "%s: %s is not in the balances after its log record was cut, so the "
                                       "look-up and the history must not show it either (balance, look-up "
                                       "status, history ids)" % (what, txid))
    else:
        c.eq(present, (amount, 200, [txid]), "%s: %s kept (balance, look-up status, history ids)" % (what, txid))
    return bal


def check_write_after_recovery(c, client, txid, sequence, what):
    """A transaction acknowledged after a recovery is in the journal after a restart."""
    look = client.lookup(txid)
    c.eq((look.status, (look.body or {}).get("sequence") if isinstance(look.body, dict) else None),
         (200, sequence), "%s: look-up after a restart of %s, acknowledged (sequence %s) after the recovery"
         % (what, txid, sequence))
    hist = [e.get("transaction_id") for e in client.full_history(999)]
    c.ok(txid in hist, "%s: %s, acknowledged after the recovery, is missing from the history after a restart"
         % (what, txid))


def start_and_check(c, d, ids, accounts, what, last_optional=False, expect_log=None):
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", BIG_SNAPSHOT_EVERY])
    try:
        s.start()
    except h.ServerError as e:
        c.fail("%s: the server did not start: %s" % (what, e))
        return None
    s.wait_ready()
    if expect_log:
        text = "\n".join(s.current_lines()).lower()
        c.ok(any(word in text for word in expect_log), "%s: no log line mentions %s; log:\n%s"
             % (what, " or ".join(expect_log), "\n".join(s.current_lines())[-1500:]))
    k = s.client()
    check_data(c, k, ids, accounts, what, last_optional)
    # the repaired directory works on: a new write, and another restart
    after_id = "fx-after-%s" % h.new_id()
    r = k.tx(h.deposit(999, "USDT", "1", after_id))
    c.status(r, 200, "%s: a write after recovery" % what)
    after_seq = (r.body or {}).get("sequence") if isinstance(r.body, dict) else None
    k.close()
    c.eq(s.stop(signal.SIGTERM), 0, "%s: exit code after SIGTERM" % what)
    s.start()
    k = s.client()
    check_data(c, k, ids, accounts, what + " (second start)", last_optional)
    check_write_after_recovery(c, k, after_id, after_seq, what)
    k.close()
    s.stop(signal.SIGTERM)
    return s


def last_segment_with_records(d):
    segs = h.wal_segments(d, 0)
    for path in reversed(segs):
        ok, records, end, size = read_segment(path)
        if records:
            return path, records, segs
    return None, [], segs


# ---------------------------------------------------------------------------------------
# Cases.

@suite.test
def wal_format_readable(c):
    d, ids, accounts = STATE["plain"]
    segs = h.wal_segments(d, 0)
    c.require(segs, "no WAL segment in %s/shard-0/wal" % d)
    total = 0
    for path in segs:
        ok, records, end, size = read_segment(path)
        c.ok(ok, "segment header of %s does not match the documented layout" % path)
        c.ok(zeros_after(path, end), "%s: after the records at %d, the file holds more than zeros up to %d (a "
             "crashed log must be valid up to what was written)" % (os.path.basename(path), end, size))
        lsns = [r[2] for r in records]
        c.ok(all(b == a + 1 for a, b in zip(lsns, lsns[1:])), "%s: LSNs are not consecutive" % path)
        if records:
            first_lsn = int(os.path.basename(path)[:20])
            c.eq(lsns[0], first_lsn, "%s: the first record's LSN is the file's name" % path)
        total += len(records)
    c.ok(total >= len(ids), "the log holds %d records for %d acknowledged transactions" % (total, len(ids)))


def append_torn_record(path, records, keep):
    """Appends the first `keep` bytes of a record with the next LSN (a copy of the last
    record's payload, with a CRC that would be valid if it were whole): what a crash in the
    middle of an append leaves. Nothing acknowledged is lost by cutting it."""
    off, total, lsn = records[-1]
    with open(path, "rb") as f:
        f.seek(off + RECORD_HEADER)
        payload = f.read(total - RECORD_HEADER)
    body = struct.pack("<IQ", len(payload), lsn + 1) + payload
    record = struct.pack("<I", crc32c(body)) + body
    with open(path, "r+b") as f:  # over the zeros prepared after the last record, if any
        f.seek(off + total)
        f.write(record[:keep(len(record))])
    return lsn + 1


@suite.test
def torn_tail_cut_mid_record(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(path, "no WAL record to copy")
    size = records[-1][0] + records[-1][1]
    lsn = append_torn_record(path, records, lambda n: n // 2)
    print("    appended half of a record (lsn %d) to %s" % (lsn, os.path.basename(path)))
    start_and_check(c, d, ids, accounts, "torn tail", expect_log=("trunc", "torn"))
    ok, recs, end, now = read_segment(path)
    c.ok(zeros_after(path, end), "after recovery (and later writes) the segment holds only whole records and "
         "zeros, no torn bytes")
    c.ok(end >= size, "the segment lost whole records: %d bytes of records before, %d after" % (size, end))


@suite.test
def torn_tail_record_header_only(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(path, "no WAL record to copy")
    append_torn_record(path, records, lambda n: 7)  # not even a whole record header
    start_and_check(c, d, ids, accounts, "torn record header", expect_log=("trunc", "torn"))


@suite.test
def torn_tail_payload_short_by_one(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(path, "no WAL record to copy")
    append_torn_record(path, records, lambda n: n - 1)
    start_and_check(c, d, ids, accounts, "record short by one byte", expect_log=("trunc", "torn"))


@suite.test
def acknowledged_last_record_cut(c):
    """The last record cut although it was acknowledged (and is in the journal): damage,
    not a crash. The server must refuse to start (naming the log) or start with the
    journal and the balances in agreement and keep every later write."""
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(path, "no WAL record to cut")
    off, total, lsn = records[-1]
    with open(path, "r+b") as f:
        f.truncate(off + total // 2)
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", BIG_SNAPSHOT_EVERY])
    s.spawn()
    deadline = time.monotonic() + REFUSE_TIMEOUT_S
    while time.monotonic() < deadline and s.proc.poll() is None and not s.port:
        time.sleep(0.05)
    if s.proc.poll() is not None:
        s._reader.join(5)
        text = "\n".join(s.current_lines())
        c.ok(s.proc.returncode != 0, "refused with exit code 0")
        c.ok("wal" in text.lower(), "the refusal should name the log; stderr:\n%s" % text[-1500:])
        print("    refused: the journal holds the cut record")
        return
    if not s.port:
        s.kill()
        c.fail("neither refused nor listened within 30 s")
        return
    print("    started: checking that the journal agrees with the balances")
    k = s.client()
    check_data(c, k, ids, accounts, "acknowledged record cut", last_optional=True)
    txid, account, amount = ids[-1], accounts[-1], str(len(ids))
    bal = check_cut_record(c, k, txid, account, amount, "acknowledged record cut")
    r = k.tx(h.deposit(account, "USDT", amount, txid))
    body = r.body if isinstance(r.body, dict) else {}
    c.eq(body.get("duplicate"), bal != "0", "retry of the cut transaction: duplicate iff it was kept")
    hist = k.full_history(account)
    c.eq([e.get("transaction_id") for e in hist], [txid], "history after the retry: the transaction once")
    after_id = "fx-after-%s" % h.new_id()
    r = k.tx(h.deposit(999, "USDT", "1", after_id))
    after_seq = (r.body or {}).get("sequence") if isinstance(r.body, dict) else None
    k.close()
    c.eq(s.stop(), 0, "exit code after SIGTERM")
    s.start()
    k = s.client()
    check_write_after_recovery(c, k, after_id, after_seq, "acknowledged record cut")
    k.close()
    s.stop()


@suite.test
def torn_tail_zero_filled(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    with open(segs[-1], "ab") as f:
        f.write(b"\0" * 4096)
    start_and_check(c, d, ids, accounts, "zero-filled tail", last_optional=False, expect_log=("trunc", "torn"))


@suite.test
def torn_tail_garbage_after_last_record(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    ok, records, end, size = read_segment(segs[-1])
    with open(segs[-1], "r+b") as f:  # right after the last record, over any zeros prepared there
        f.seek(end)
        f.write(struct.pack("<IIQ", 0xDEADBEEF, 40, 10**9) + b"x" * 13)
    start_and_check(c, d, ids, accounts, "half-written record after the last", last_optional=False,
                    expect_log=("trunc", "torn"))


@suite.test
def flipped_byte_followed_by_valid_records(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(len(records) >= 3, "too few records to damage one in the middle")
    off, total, lsn = records[len(records) // 2]
    target = off + RECORD_HEADER + (total - RECORD_HEADER) // 2
    flip_byte(path, target)
    print("    flipped byte %d of %s (record lsn %d)" % (target, os.path.basename(path), lsn))
    expect_refusal(c, d, "damaged record followed by valid ones", os.path.basename(path))
    # and the directory is left as it was: nothing dropped silently
    ok, recs, end, size = read_segment(path)
    c.eq(size, os.path.getsize(os.path.join(src, os.path.relpath(path, d))),
         "a refused start must not truncate the damaged segment")


@suite.test
def flipped_length_field(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    path, records, segs = last_segment_with_records(d)
    c.require(len(records) >= 3, "too few records")
    off, total, lsn = records[1]
    flip_byte(path, off + 4)  # the record's length
    expect_refusal(c, d, "damaged record length in the middle of the log", os.path.basename(path))


@suite.test
def damaged_segment_header(c):
    src, ids, accounts = STATE["plain"]
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    flip_byte(segs[0], 3)  # inside the magic
    expect_refusal(c, d, "damaged segment header", os.path.basename(segs[0]))


def multi_segment_fixture(c):
    if "multi" in STATE:
        return STATE["multi"]
    flag = segment_flag()
    result = None
    if flag:
        for size in ("4096", "4KiB", "4k"):
            try:
                d, ids, accounts = build_fixture("multi", 400, extra=[flag, size])
            except h.ServerError:
                continue
            if len(h.wal_segments(d, 0)) >= 3:
                result = (d, ids, accounts)
                break
    if result is None:
        # without a size option: maybe each start opens a new segment
        d, ids, accounts = build_fixture("restarts", 60, restarts=3)
        if len(h.wal_segments(d, 0)) >= 3:
            result = (d, ids, accounts)
    STATE["multi"] = result
    if result is None:
        print("    NOTE: the server has no WAL segment-size option (--help: %s) and never made 3 segments; "
              "the multi-segment cases are skipped" % (flag or "none"))
    return result


@suite.test
def damaged_record_in_earlier_segment(c):
    fx = multi_segment_fixture(c)
    if fx is None:
        return "skip"
    src, ids, accounts = fx
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    path = segs[len(segs) // 2 - 1] if len(segs) > 2 else segs[0]
    ok, records, end, size = read_segment(path)
    c.require(records, "no records in %s" % path)
    off, total, lsn = records[-1]  # the LAST record of a segment that is not the last one
    flip_byte(path, off + total - 1)
    expect_refusal(c, d, "damaged last record of an earlier segment", os.path.basename(path))
    base = os.path.basename(path)
    d = copy_fixture(src)
    path = os.path.join(d, "shard-0", "wal", base)
    ok, records, end, size = read_segment(path)
    with open(path, "r+b") as f:
        f.truncate(records[-1][0] + 5)
    expect_refusal(c, d, "truncated earlier segment", os.path.basename(path))


@suite.test
def deleted_middle_segment(c):
    fx = multi_segment_fixture(c)
    if fx is None:
        return "skip"
    src, ids, accounts = fx
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    victim = segs[len(segs) // 2]
    os.remove(victim)
    print("    deleted %s of %d segments" % (os.path.basename(victim), len(segs)))
    s = h.Server(ARGS.bin, data_dir=d, shards=1)
    s.spawn()
    deadline = time.monotonic() + REFUSE_TIMEOUT_S
    while time.monotonic() < deadline and s.proc.poll() is None and not s.port:
        time.sleep(0.05)
    code = s.proc.poll()
    if code is None:
        s.kill()
        c.fail("deleted middle segment %s: the server started instead of refusing" % os.path.basename(victim))
        return
    s._reader.join(5)
    text = "\n".join(s.current_lines())
    c.ok(code != 0, "deleted middle segment: exit code %d" % code)
    nxt = segs[segs.index(victim) + 1]
    c.ok(os.path.basename(nxt) in text or os.path.basename(victim) in text or "segment" in text.lower(),
         "deleted middle segment: the message should name the gap; stderr:\n%s" % text[-1500:])


@suite.test
def newest_snapshot_damaged_falls_back(c):
    src, ids, accounts = STATE["snap"]
    snaps = h.snapshots(src, 0)
    c.require(len(snaps) >= 2, "only %d snapshot(s) after %d records with --snapshot-every 20: cannot test the "
                               "fall-back (snapshots: %s)" % (len(snaps), len(ids), snaps))
    d = copy_fixture(src)
    snaps = h.snapshots(d, 0)
    newest = snaps[-1]
    size = os.path.getsize(newest)
    flip_byte(newest, 40 + max(0, (size - 40) // 2) if size > 40 else size // 2)
    print("    damaged %s (%d bytes); older: %s" % (os.path.basename(newest), size,
                                                     [os.path.basename(p) for p in snaps[:-1]]))
    start_and_check(c, d, ids, accounts, "damaged newest snapshot")


@suite.test
def truncated_newest_snapshot_falls_back(c):
    src, ids, accounts = STATE["snap"]
    snaps = h.snapshots(src, 0)
    c.require(len(snaps) >= 2, "fewer than 2 snapshots")
    d = copy_fixture(src)
    newest = h.snapshots(d, 0)[-1]
    with open(newest, "r+b") as f:
        f.truncate(max(1, os.path.getsize(newest) // 2))
    start_and_check(c, d, ids, accounts, "truncated newest snapshot")


def trimmed_fixture():
    """Snapshots every 20 records and 4 KiB segments: the log is really trimmed behind the
    oldest kept snapshot. None when the server has no segment-size option."""
    if "trimmed" not in STATE:
        flag = segment_flag()
        STATE["trimmed"] = None
        if flag:
            d, ids, accounts = build_fixture("trim", 310, snapshot_every=20, extra=[flag, "4096"])
            segs = h.wal_segments(d, 0)
            print("    fixture trimmed: segments %s, snapshots %s" % (
                [os.path.basename(p) for p in segs], [os.path.basename(p) for p in h.snapshots(d, 0)]))
            STATE["trimmed"] = (d, ids, accounts, flag)
        else:
            print("    NOTE: no segment-size option; the trimmed-log cases are skipped")
    return STATE["trimmed"]


def start_trimmed(c, d, ids, accounts, flag, what):
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", "20", flag, "4096"])
    try:
        s.start()
    except h.ServerError as e:
        return None, str(e)
    s.wait_ready()
    return s, None


@suite.test
def trimmed_log_newest_snapshot_damaged(c):
    fx = trimmed_fixture()
    if fx is None:
        return "skip"
    src, ids, accounts, flag = fx
    segs = h.wal_segments(src, 0)
    c.ok(int(os.path.basename(segs[0])[:20]) > 1, "the log was never trimmed (first segment %s)" % segs[0])
    d = copy_fixture(src)
    snaps = h.snapshots(d, 0)
    c.require(len(snaps) >= 2, "fewer than 2 snapshots: %s" % snaps)
    flip_byte(snaps[-1], 40 + (os.path.getsize(snaps[-1]) - 40) // 2)
    s, err = start_trimmed(c, d, ids, accounts, flag, "trimmed log")
    if not c.ok(s is not None, "trimmed log, newest snapshot damaged: the server did not start: %s" % err):
        return
    k = s.client()
    check_data(c, k, ids, accounts, "trimmed log, newest snapshot damaged")
    k.close()
    c.eq(s.stop(), 0, "exit code")


@suite.test
def trimmed_log_every_snapshot_damaged(c):
    """No valid snapshot and a trimmed log: the state cannot be rebuilt, so the server must
    refuse rather than start with part of the data."""
    fx = trimmed_fixture()
    if fx is None:
        return "skip"
    src, ids, accounts, flag = fx
    d = copy_fixture(src)
    for snap in h.snapshots(d, 0):
        flip_byte(snap, 40 + (os.path.getsize(snap) - 40) // 2)
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", "20", flag, "4096"])
    s.spawn()
    deadline = time.monotonic() + REFUSE_TIMEOUT_S
    while time.monotonic() < deadline and s.proc.poll() is None and not s.port:
        time.sleep(0.05)
    if s.proc.poll() is not None:
        c.ok(s.proc.returncode != 0, "every snapshot damaged: exit code %d" % s.proc.returncode)
        return
    if not s.port:
        s.kill()
        c.fail("every snapshot damaged: neither refused nor listened within 30 s")
        return
    k = s.client()
    check_data(c, k, ids, accounts, "every snapshot damaged, server started anyway")
    k.close()
    s.kill()


@suite.test
def deleted_last_segment(c):
    """The newest segment deleted: records acknowledged in it are gone from the log. The
    server must refuse (the journal and the snapshots know the log went further) or still
    have every acknowledged transaction."""
    fx = trimmed_fixture()
    if fx is None:
        return "skip"
    src, ids, accounts, flag = fx
    d = copy_fixture(src)
    segs = h.wal_segments(d, 0)
    c.require(len(segs) >= 2, "need 2 segments")
    os.remove(segs[-1])
    s = h.Server(ARGS.bin, data_dir=d, shards=1, args=["--snapshot-every", "20", flag, "4096"])
    s.spawn()
    deadline = time.monotonic() + REFUSE_TIMEOUT_S
    while time.monotonic() < deadline and s.proc.poll() is None and not s.port:
        time.sleep(0.05)
    if s.proc.poll() is not None:
        c.ok(s.proc.returncode != 0, "deleted last segment: exit code %d" % s.proc.returncode)
        return
    if not s.port:
        s.kill()
        c.fail("deleted last segment: neither refused nor listened within 30 s")
        return
    k = s.client()
    lost = [t for t, a, in zip(ids, accounts) if k.balance(a, "USDT").get("available") == "0"]
    found = [t for t in lost if k.lookup(t).status == 200]
    c.ok(not lost, "deleted last segment %s: the server started and lost %d acknowledged transactions "
                   "(%s..%s); the journal still has %d of them"
         % (os.path.basename(segs[-1]), len(lost), lost[:1], lost[-1:], len(found)))
    after_id = "fx-after-%s" % h.new_id()
    r = k.tx(h.deposit(999, "USDT", "1", after_id))
    after_seq = (r.body or {}).get("sequence") if isinstance(r.body, dict) else None
    k.close()
    s.stop()
    s.start()
    k = s.client()
    check_write_after_recovery(c, k, after_id, after_seq, "deleted last segment")
    k.close()
    s.kill()


@suite.test
def snapshot_fixture_recovers_untouched(c):
    src, ids, accounts = STATE["snap"]
    d = copy_fixture(src)
    start_and_check(c, d, ids, accounts, "undamaged snapshot directory")


def setup():
    h.require_binary(ARGS.bin)
    print("crash_corruption: binary %s" % ARGS.bin, flush=True)
    STATE["plain"] = build_fixture("plain", 40)
    STATE["snap"] = build_fixture("snap", 150, snapshot_every=20)
    for name in ("plain", "snap"):
        d = STATE[name][0]
        print("    fixture %s: segments %s, snapshots %s" % (
            name, [os.path.basename(p) for p in h.wal_segments(d, 0)],
            [os.path.basename(p) for p in h.snapshots(d, 0)]), flush=True)


if __name__ == "__main__":
    suite.main(setup)
