/*
 * bal_journal.h -- the embedded node's journal store: one SQLite file in the data directory
 * holding every processed transaction as journal rows (one per touched balance) and, per
 * shard, the last log position whose rows are stored.
 *
 * Who owns what
 *   - The service's write-ahead log is the source of truth; this store is a projection of
 *     it. A persister thread feeds each shard's applied batches through
 *     bal_journal_write_batch(); API threads answer GET /v1/transactions/{id} and the account
 *     history from it, and the shard asks it, in one batched look-up, whether transaction
 *     ids too old for the core's memory were used before.
 *   - A bal_journal handle is one SQLite connection. It belongs to one thread at a time
 *     (no locks inside). Open exactly one writer handle per file (for the persister) and one
 *     reader handle (options.read_only) per API thread. WAL mode lets the readers run while
 *     the writer commits; a reader statement sees the file as of the moment it started.
 *
 * Position and idempotency
 *   bal_journal_write_batch() inserts a batch's rows AND moves the shard's position to the
 *   batch's last log sequence number in ONE SQLite transaction, so the stored position can
 *   never be ahead of the rows nor behind them: after any crash the log is replayed from
 *   position + 1 and nothing is skipped or repeated. A batch whose last_lsn is not beyond the
 *   stored position is a no-op, and rows are keyed (shard, sequence, leg) and inserted with
 *   INSERT OR IGNORE, so a replay cut into different batches is harmless too. The rows of
 *   one log position must be written in one call. A key given twice within one call is
 *   stored from its first occurrence (the later one counts as ignored), whatever order the
 *   writer inserts the rows in (see Write path).
 *
 * Durability
 *   Default synchronous=NORMAL: a commit is atomic and survives a crash of the process
 *   (kill -9) at once, but reaches the disk only at the next checkpoint or
 *   bal_journal_sync(); the batch itself pays no fsync. After a power loss
 *   the newest batches may be gone -- rows and position together, never one without the
 *   other -- and are replayed from the service's log. Checkpoints come about every 256 MiB
 *   of WAL (see Storage formats), so without bal_journal_sync() that can be many batches.
 *   Hence the rule for the log's owner:
 *   log records up to a shard's position may be discarded only after a bal_journal_sync()
 *   called after that position was written returned BAL_JOURNAL_OK (or at once, when the
 *   file was opened with options.synchronous_full, which fsyncs every batch instead).
 *   After each commit the writer starts the writeback of both files without waiting
 *   (sync_file_range; bal_journal_writeback_count): it changes no guarantee, only when
 *   the pages go to the disk -- steadily, instead of in the kernel's bursts that stalled
 *   every other file's fdatasync on the same device.
 *
 * Read-your-writes
 *   The persister runs behind the shards, so a reader sees a transaction once its batch is
 *   written. Callers that must show an acknowledged transaction at once wait until the
 *   shard's position covers it (bal_journal_position) or answer it from memory.
 *
 * Storage formats (why)
 *   - Amounts are canonical decimal TEXT ("100.5", "-0.000000000000000001") in STRICT
 *     TEXT columns: exact (the money module's own round trip), readable with the sqlite3
 *     shell during an audit, the same text the API and MySQL DECIMAL(36,18) use, and shorter
 *     than a 16-byte BLOB for typical values. The store never sorts or sums amounts in SQL,
 *     so a numeric encoding would buy nothing. Rows read back are parsed strictly and
 *     checked; a value that does not decode is reported as BAL_JOURNAL_CORRUPT.
 *   - account_id (u64) is stored in a signed 64-bit INTEGER by its two's-complement bit
 *     pattern: 1 .. 2^63-1 as themselves, 2^63 .. 2^64-1 as -2^63 .. -1. Only equality is
 *     ever asked of it, which the mapping preserves; ids keep the compact integer encoding.
 *   - transaction_hash is bal_hash_bytes(transaction_id, its length,
 *     BAL_JOURNAL_TRANSACTION_HASH_SEED), a u64 stored by the same two's-complement
 *     mapping, on the head row of each (shard, sequence) -- the lowest leg of it in the
 *     write_batch call that stored it, which is its lowest leg overall since a log
 *     position's rows come in one call (a caller breaking that rule leaves two heads;
 *     look-ups still return each row once) -- and NULL on the other rows. It exists only
 *     to be indexed: an 8-byte integer key is smaller than the id text (up to 64 bytes; a
 *     UUID is 36) and cheaper to compare. Distinct ids can share a hash, so a look-up
 *     keeps only the rows whose id is exactly one of those asked for; a head whose stored
 *     hash is not its id's reads back as BAL_JOURNAL_CORRUPT. The seed is fixed so that
 *     every handle and every version computes the same value; it is not a secret (a
 *     client that manufactures ids with equal hashes makes the look-ups of those ids read
 *     more rows, nothing worse).
 *   - Pages are 4 KiB; the WAL is checkpointed into the database file about every 256 MiB.
 *   - The history cursor is one u64: (sequence * BAL_JOURNAL_LEGS_MAX + leg) + 1, so 0 can
 *     mean "none" (start from the newest / no further page).
 *
 * Indexes (why these two, why in runs)
 *   Two look-ups need an index: by transaction id and by account. An entry at a random key
 *   in a large b-tree costs every insert a descent and, with rows spread over many accounts
 *   and ids, about one more 4 KiB page written to the WAL per entry -- what bounded the
 *   write rate when these were plain SQLite indexes on the journal (schema version 2). So
 *   since version 3 the journal table has no secondary index; each index is a table of
 *   its own, keyed with a leading run number, into which the writer inserts the entries
 *   of the rows its INSERT stored (in statements of many entries each; a row that INSERT OR
 *   IGNORE found stored already gets no new entry -- its index_run tells, when a statement
 *   stored only some of its rows -- so a replay adds none). Triggers did this at first and
 *   cost more: 4.5-4.7 against 3.9 us per row in batches of 10,000, 4.0-4.7 against
 *   3.5-3.8 in batches of 1,000 (bench_journal, docs/benchmarks.md):
 *   - journal_by_transaction_run (run, transaction_hash, shard, sequence):
 *     bal_journal_find_transactions(). One entry per transaction per shard that stored
 *     rows of it (its head row, the one with a transaction_hash), not per row: all rows of
 *     one (shard, sequence) belong to one command, so the entry leads to the rest by key.
 *     Not "leg 0 only": the legs of a command that spans shards are stored by each shard
 *     under its own (shard, sequence), and a shard's rows may lack leg 0.
 *   - journal_by_account_run (run, account_id, sequence, leg, shard):
 *     bal_journal_history(). One entry per account and command, not per row: a command's
 *     rows on one account (a trade's base and quote legs) name the lowest of them, the
 *     account's head there, in account_head_leg (a column only the writer sets), and the
 *     history reaches the others from the head by key (shard, sequence, leg). In the
 *     benchmark's mix that is 1.5 entries per command instead of 2.3. Each row names one
 *     head -- the lowest leg of its account among the rows of its write_batch call -- so
 *     a caller that splits a log position's rows over two calls leaves two heads, each
 *     leading to its own rows, and a page still lists each row once. A currency is a
 *     filter on the account's range, not an index of its own (a third index would cost
 *     every insert again). Pages stay exact, since the limit counts only rows that pass
 *     the filter, but the cost of a page grows with the rows of the account's other
 *     currencies passed over to fill it: each is a look-up of the full row. For an account
 *     with many currencies asking for a rare one -- say 100 rows of a currency that has 1%
 *     of the account's rows -- a page reads about 10,000 rows instead of 100 (milliseconds
 *     instead of tens of microseconds), and an account with no row of that currency is read
 *     to its first row before the empty answer.
 *   Runs (journal_runs: run, level, rows, merging_into): the writer puts a batch's entries
 *   into the open run -- the newest run of level 0, whose number the rows carry in
 *   index_run -- so inserts land in a small, recently written key range
 *   of each index table instead of anywhere in it: a commit of thousands of rows rewrites
 *   a few hundred pages, not one per entry. Once the open run holds BAL_JOURNAL_RUN_ROWS
 *   rows (checked after each batch) it is sealed and a new one opened. Once a level holds
 *   BAL_JOURNAL_RUNS_PER_MERGE sealed runs, they are merged into one run of the next level
 *   (about 1 million rows at level 1, 16 million at level 2, ...), and a merge is spread
 *   over the batches that follow, inside their transactions: each batch moves, per index
 *   and merge under way, the smallest keys of the merge's sources into its target (twice
 *   as many entries as the batch inserted rows, at least 512), so no transaction holds
 *   the writer for long and merges keep pace with the entries arriving at each level
 *   (bal_journal_runs.c). A merge takes every sealed run of its level that is free, up to
 *   64, so a level that fell behind catches up in one merge. An entry is in exactly one run at every commit, so a reader
 *   sees each entry once, merge or not. Every entry is thus copied once per level it
 *   passes: about 0.5 us per entry and level in a bare SQLite measurement, 1.3-1.6 us in
 *   a loaded node -- what the runs cost in exchange for cheap inserts. A file migrated from an earlier version keeps its rows in run 0 at
 *   level BAL_JOURNAL_RUN_LEVEL_MIGRATED, which no merge reaches. index_run is the run a
 *   row's entries were first written to; after a merge it names a run that is gone, and
 *   nothing reads it again.
 *   Readers visit every run: a look-up seeks each hash in each run, and a history page
 *   walks the runs newest first -- level 0 by descending number, then level 1 the same
 *   way, and so on -- and stops when the page is full. That order is the rows' order: an
 *   account's rows are all its shard's (a precondition: the node keeps each account on
 *   one shard; an account whose rows came from two shards would page out of order), a shard's rows reach the runs in log order, a
 *   merge's target is older than every run left at its sources' level and newer than
 *   every other run at its own, and while a merge is under way the entries it has moved
 *   (the smallest keys, so the oldest of any account whose entries it splits) sit in the
 *   target, the rest in the sources, which are read first. (Rows of one log position
 *   split over two calls, which the contract forbids, can break that order at a seal
 *   between the calls.) The price: with R runs a look-up costs about R seeks per id and a
 *   page of an account with few rows up to R short range scans. A level holds up to
 *   BAL_JOURNAL_RUNS_PER_MERGE runs, plus those sealed while its merge is under way (about
 *   half as many again), and levels grow by a factor of 16: R stays below about 25 under
 *   a million rows, 50 under 16 million, 75 under 268 million (a simulation of the
 *   schedule found 18, 39 and 48).
 *
 * Write path
 *   write_batch validates the rows, orders them by (account_id as stored, sequence, leg)
 *   -- sorting an array of small keys, the rows are not moved -- and inserts them in that
 *   order, many rows per prepared statement, so the open run of the account index is
 *   filled front to back instead of at random places (and each account's head leg in a
 *   sequence is the first of its group). The order is invisible to readers: the batch
 *   commits as a whole. The same transaction counts the rows into the open run, seals it
 *   when full, starts the merges that became due and moves each merge under way one step
 *   (see Indexes), so the runs are always in step with the rows.
 *
 * Errors: every function returns a bal_journal_status; errors are described into the
 * caller's errstr buffer (may be NULL when errstr_size is 0). Business outcomes
 * (insufficient_available, ...) are data here (row.result), never errors.
 */
#ifndef BAL_JOURNAL_H
#define BAL_JOURNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_limits.h"
#include "bal_money.h"

/* The file's name inside the data directory. */
#define BAL_JOURNAL_FILE_NAME "journal.sqlite3"
/* PRAGMA user_version of the schema this code writes; older files are migrated on open. */
#define BAL_JOURNAL_SCHEMA_VERSION 3
/* PRAGMA application_id: "bal1", so a foreign SQLite file is refused, not altered. */
#define BAL_JOURNAL_APPLICATION_ID 0x62616C31
/* The seed of transaction_hash = bal_hash_bytes(transaction_id, its length, this seed),
 * the look-up's index key (see Storage formats). Part of the file format: another seed
 * would make every stored row unfindable by its id, so it changes only together with a
 * migration that recomputes the column. The value is the text "baltxid1" read as a
 * little-endian u64 and has no other meaning. */
#define BAL_JOURNAL_TRANSACTION_HASH_SEED 0x31646978746C6162ull

/* The id and history indexes are kept in runs (see Indexes): the open run takes a batch's
 * entries until it holds this many rows, then it is sealed and a new one opened ... */
#define BAL_JOURNAL_RUN_ROWS 65536
/* ... and once a level holds this many sealed runs, they are merged into one run of the
 * next level (a bound for tests' settings too) ... */
#define BAL_JOURNAL_RUNS_PER_MERGE 16
#define BAL_JOURNAL_RUNS_PER_MERGE_MAX 32
/* ... up to this level, which is also where a file written before runs existed keeps its
 * rows (one run, never merged). */
#define BAL_JOURNAL_RUN_LEVEL_MIGRATED 32
/* Rows per write_batch call: a full HTTP batch whose every command touches the most
 * balances a command can (one log position's rows must fit one call). */
#define BAL_JOURNAL_BATCH_ROWS_MAX (BAL_BATCH_ITEMS_MAX * BAL_COMMAND_BALANCES_MAX)
/* Ids per find_transactions call: one HTTP batch's worth. */
#define BAL_JOURNAL_LOOKUP_IDS_MAX BAL_BATCH_ITEMS_MAX
/* Ids bound into one SQL statement (IN list). 500 ids already spread the cost of a
 * statement thin, keep the prepared statement small and stay below even the 999-variable
 * limit of older SQLite builds. */
#define BAL_JOURNAL_LOOKUP_CHUNK_IDS 500
/* History page size: 0 asks for the default; larger requests are capped to the maximum. */
#define BAL_JOURNAL_HISTORY_LIMIT_DEFAULT 100
#define BAL_JOURNAL_HISTORY_LIMIT_MAX 1000
/* Journal rows per transaction (an EVENT's legs; a TRANSFER uses 2). */
#define BAL_JOURNAL_LEGS_MAX BAL_COMMAND_BALANCES_MAX
/* Shards: the store itself needs no bound; this one catches garbage in shard numbers. */
#define BAL_JOURNAL_SHARDS_MAX 65536u
/* Sequence numbers: small enough that the history cursor fits a u64 (about 1.15e18: 36,000
 * years at a million commands a second). */
#define BAL_JOURNAL_SEQUENCE_MAX ((UINT64_MAX / BAL_JOURNAL_LEGS_MAX) - 1)
/* Log positions: SQLite integers are signed 64-bit; 0 means "nothing stored yet". */
#define BAL_JOURNAL_LSN_MAX ((uint64_t)INT64_MAX)
/* A result code ("ok", "insufficient_available", ...): 1 to 32 of a-z and '_'. */
#define BAL_JOURNAL_RESULT_LENGTH_MAX 32
/* How long a handle waits for a lock (a checkpoint waiting for readers, a reader during
 * WAL recovery) before reporting BAL_JOURNAL_BUSY. */
#define BAL_JOURNAL_BUSY_TIMEOUT_MS_DEFAULT 5000u
#define BAL_JOURNAL_BUSY_TIMEOUT_MS_MAX 600000u
/* Longest path of the journal file (Linux PATH_MAX less its terminator). */
#define BAL_JOURNAL_PATH_LENGTH_MAX 4095
/* Page cache per connection. What matters is the writer's: its cache survives its own
 * commits, and it should hold the pages that inserts keep touching (the open runs of both
 * indexes, a few MiB, and the paths down to them) and the ends of the runs a merge reads
 * from and writes to. A reader's cache is emptied by SQLite whenever the
 * file changed since the reader's previous read transaction, so beyond one query's pages a
 * larger one buys a reader little; it costs nothing until pages are actually read. */
#define BAL_JOURNAL_CACHE_KIB_DEFAULT (64u * 1024u)
#define BAL_JOURNAL_CACHE_KIB_MAX (4u * 1024u * 1024u)

/* "No cursor": as input, start from the newest entry; as output, there is no further page. */
#define BAL_JOURNAL_CURSOR_NONE 0u

_Static_assert(BAL_JOURNAL_LOOKUP_CHUNK_IDS <= BAL_JOURNAL_LOOKUP_IDS_MAX, "a chunk fits a look-up");
_Static_assert(BAL_JOURNAL_LOOKUP_CHUNK_IDS <= 999, "below SQLite's oldest variable limit");
_Static_assert(BAL_JOURNAL_HISTORY_LIMIT_DEFAULT <= BAL_JOURNAL_HISTORY_LIMIT_MAX, "default within max");
_Static_assert(BAL_JOURNAL_LEGS_MAX >= 2, "a TRANSFER writes two rows");
_Static_assert(BAL_JOURNAL_SEQUENCE_MAX <= (uint64_t)INT64_MAX, "sequences fit SQLite integers");
_Static_assert(BAL_JOURNAL_SEQUENCE_MAX + 1 <= UINT64_MAX / BAL_JOURNAL_LEGS_MAX,
               "the largest cursor, (SEQUENCE_MAX + 1) * LEGS_MAX, fits a u64");
_Static_assert(BAL_JOURNAL_BATCH_ROWS_MAX <= UINT32_MAX, "row counts fit 32 bits");

typedef enum bal_journal_status {
    BAL_JOURNAL_OK = 0,
    BAL_JOURNAL_INVALID_ARGUMENT, /* an argument or a row breaks a documented rule; nothing done */
    BAL_JOURNAL_SCHEMA,           /* not a journal file, or written by a newer version */
    BAL_JOURNAL_CORRUPT,          /* stored data does not decode (or SQLite reports corruption) */
    BAL_JOURNAL_BUSY,             /* a lock was not obtained within the busy timeout */
    BAL_JOURNAL_NO_MEMORY,
    BAL_JOURNAL_STORAGE,          /* SQLite failed: I/O error, disk full, cannot open, ... */
    BAL_JOURNAL_ABORTED,          /* the row callback asked to stop */
} bal_journal_status;

/* Transaction types, stored by name ("DEPOSIT", ...). The order is part of no format. */
typedef enum bal_journal_type {
    BAL_JOURNAL_TYPE_DEPOSIT = 0,
    BAL_JOURNAL_TYPE_WITHDRAW,
    BAL_JOURNAL_TYPE_FREEZE,
    BAL_JOURNAL_TYPE_UNFREEZE,
    BAL_JOURNAL_TYPE_DEDUCT_FROZEN,
    BAL_JOURNAL_TYPE_TRANSFER,
    BAL_JOURNAL_TYPE_EVENT,
    BAL_JOURNAL_TYPE_COUNT,
} bal_journal_type;

/*
 * One journal row: one balance touched by one processed transaction. The request fields
 * (transaction_id, type, amount, to_account_id, time_ms, memo, result) repeat on every row
 * of the transaction, so each row stands alone in an account's history and the request can
 * be rebuilt from the rows:
 *   DEPOSIT .. DEDUCT_FROZEN  1 row, leg 0: account_id, currency, amount.
 *   TRANSFER                  2 rows: leg 0 the source (account_id), leg 1 the destination
 *                             (account_id == to_account_id); amount and to_account_id on both.
 *   EVENT                     one row per leg, leg i = request leg i: its account_id,
 *                             currency, leg_available_delta and leg_frozen_delta; no amount.
 * available_delta/frozen_delta are what happened to this balance (after - before), so a
 * rejected transaction has before == after and zero deltas, and summing the deltas of all
 * rows replays the balances exactly; what an EVENT leg asked for is in leg_*_delta.
 */
typedef struct bal_journal_row {
    uint32_t shard;
    uint32_t leg;                   /* 0 .. BAL_JOURNAL_LEGS_MAX-1; every transaction has leg 0 */
    uint64_t sequence;              /* the shard's command sequence, 0 .. BAL_JOURNAL_SEQUENCE_MAX */
    int64_t time_ms;                /* Unix milliseconds, from the command; >= 0 */
    bal_journal_type type;
    uint64_t account_id;            /* this row's balance; > 0 */
    uint64_t to_account_id;         /* TRANSFER: the destination (> 0, != source); else 0 */
    bal_amount amount;              /* not EVENT: the request's amount, > 0; EVENT: 0 (stored NULL) */
    bal_amount leg_available_delta; /* EVENT: the leg as requested; else 0 (stored NULL) */
    bal_amount leg_frozen_delta;
    bal_amount available_before;    /* balances: 0 .. BAL_MONEY_MAX */
    bal_amount available_after;
    bal_amount frozen_before;
    bal_amount frozen_after;
    bal_amount available_delta;     /* == available_after - available_before */
    bal_amount frozen_delta;        /* == frozen_after - frozen_before */
    bool has_memo;                  /* false: no memo (NULL); true: memo, possibly empty */
    uint16_t memo_length;           /* bytes in memo, 0 .. BAL_MEMO_LENGTH_MAX */
    char transaction_id[BAL_TRANSACTION_ID_LENGTH_MAX + 1]; /* NUL-terminated */
    char currency[BAL_CURRENCY_LENGTH_MAX + 1];             /* NUL-terminated */
    char result[BAL_JOURNAL_RESULT_LENGTH_MAX + 1];         /* NUL-terminated, "ok" = applied */
    char memo[BAL_MEMO_LENGTH_MAX + 1]; /* memo_length bytes (any bytes), then a NUL */
} bal_journal_row;

typedef struct bal_journal_options {
    bool read_only;          /* a reader handle: queries only, the file must exist */
    bool synchronous_full;   /* fsync every batch (see Durability); writer only */
    uint32_t busy_timeout_ms;
    uint32_t cache_kib;      /* SQLite page cache of this connection */
} bal_journal_options;

/* What write_batch did. */
typedef struct bal_journal_write_outcome {
    bool skipped;            /* last_lsn <= stored position: nothing written */
    uint32_t rows_inserted;
    uint32_t rows_ignored;   /* key (shard, sequence, leg) present already: a replayed range */
} bal_journal_write_outcome;

typedef struct bal_journal_history_query {
    uint64_t account_id;     /* > 0 */
    const char *currency;    /* NULL: every currency */
    uint32_t limit;          /* 0: BAL_JOURNAL_HISTORY_LIMIT_DEFAULT; capped to _MAX */
    uint64_t before;         /* BAL_JOURNAL_CURSOR_NONE or a next_before returned earlier */
} bal_journal_history_query;

/* Receives one row (valid only during the call); returns false to stop the query. */
typedef bool (*bal_journal_row_fn)(void *context, const bal_journal_row *row);

typedef struct bal_journal bal_journal;

bal_journal_options bal_journal_options_default(void);

/* Opens (the writer: creates, sets WAL mode and migrates the schema of) the file at path.
 * A reader handle needs the file to exist with the current schema. */
bal_journal_status bal_journal_open(const char *path, const bal_journal_options *options,
                                    bal_journal **journal_out, char *errstr, size_t errstr_size);
/* Closes the handle (NULL is allowed). Nothing is pending: every write commits before
 * write_batch returns. */
void bal_journal_close(bal_journal *journal);

/* Writer only. Validates every row (all belong to shard), then in one SQLite transaction
 * inserts them and sets shard's position to last_lsn (1 .. BAL_JOURNAL_LSN_MAX); a no-op
 * if last_lsn <= the stored position. row_count may be 0 (a log batch without rows still
 * moves the position). outcome_out may be NULL. Every row of one account must come from
 * the same shard, in every call over the file's life: the history pages in sequence order
 * across the index runs on that premise (see Indexes). */
bal_journal_status bal_journal_write_batch(bal_journal *journal, uint32_t shard,
                                           const bal_journal_row *rows, size_t row_count,
                                           uint64_t last_lsn, bal_journal_write_outcome *outcome_out,
                                           char *errstr, size_t errstr_size);

/* Writer: how many committed batches (not replays) have had their pages handed to the
 * disk at once (sync_file_range; see Durability). 0 where that call does not exist. */
uint64_t bal_journal_writeback_count(const bal_journal *journal);

/* Writer: how many merges of index runs this handle has made (see Indexes). */
uint64_t bal_journal_merge_count(const bal_journal *journal);

/* The shard's stored position; 0 if nothing was stored for it. */
bal_journal_status bal_journal_position(bal_journal *journal, uint32_t shard, uint64_t *lsn_out,
                                        char *errstr, size_t errstr_size);

/* Writer only. Makes every batch committed so far durable: fdatasync of the -wal file, the
 * database file and their directory (about one fsync's time; never waits for readers). */
bal_journal_status bal_journal_sync(bal_journal *journal, char *errstr, size_t errstr_size);

/* Writer only. Copies the whole -wal file into the database file and syncs it (e.g. before
 * copying the file away). Not needed for durability (see bal_journal_sync) nor for the
 * -wal file's size (commits checkpoint passively on their own). Waits until every reader is
 * on the newest snapshot; under a steady stream of readers that can take longer than the
 * busy timeout: BAL_JOURNAL_BUSY. */
bal_journal_status bal_journal_checkpoint(bal_journal *journal, char *errstr, size_t errstr_size);

/* For each of the ids (0 .. BAL_JOURNAL_LOOKUP_IDS_MAX valid transaction ids; duplicates
 * allowed) that is stored, calls fn with each of its rows. Transactions come in ascending
 * byte order of their ids, a transaction's rows together in (shard, sequence, leg) order;
 * unknown ids give no call. One consistent snapshot, chunked SQL underneath: rows are found
 * by transaction_hash and compared by id (see Storage formats). */
bal_journal_status bal_journal_find_transactions(bal_journal *journal, const char *const *ids,
                                                 size_t id_count, bal_journal_row_fn fn,
                                                 void *context, char *errstr, size_t errstr_size);

/* One page of an account's journal, newest first by (sequence, leg), rejected transactions
 * included (one read transaction: fn must not use this handle): calls fn for up to limit rows older than query->before and sets *next_before_out
 * to the cursor of the next page, or BAL_JOURNAL_CURSOR_NONE when no older row exists. With
 * query->currency, only that currency's rows count and come back; see Indexes for what
 * such a page costs in an account with many currencies. */
bal_journal_status bal_journal_history(bal_journal *journal, const bal_journal_history_query *query,
                                       bal_journal_row_fn fn, void *context,
                                       uint64_t *next_before_out, char *errstr, size_t errstr_size);

/* Checks one row against every rule above (the writer does this before storing; readers
 * after decoding). BAL_JOURNAL_OK or BAL_JOURNAL_INVALID_ARGUMENT with the reason. */
bal_journal_status bal_journal_row_check(const bal_journal_row *row, char *errstr, size_t errstr_size);

/* The cursor that resumes a history listing right after (older than) this row. */
uint64_t bal_journal_cursor_after(uint64_t sequence, uint32_t leg);

/* "DEPOSIT", ...; NULL for a value outside the enum. */
const char *bal_journal_type_name(bal_journal_type type);
/* Parses a type name (exact, upper case); false if unknown. */
bool bal_journal_type_parse(const char *text, size_t length, bal_journal_type *type_out);
/* True if text[0..length) is a valid transaction id / currency (SPEC character sets). */
bool bal_journal_transaction_id_valid(const char *text, size_t length);
bool bal_journal_currency_valid(const char *text, size_t length);

const char *bal_journal_status_name(bal_journal_status status);

#endif
