/*
 * bal_journal.c -- the journal store's connection, schema and write path on SQLite.
 *
 * A handle is one SQLite connection in WAL mode with every statement prepared at open.
 * The writer creates the file, switches it to WAL and brings the schema to
 * BAL_JOURNAL_SCHEMA_VERSION through the migration steps below (PRAGMA user_version counts
 * the steps applied; each step commits together with its new version number). A batch is
 * one BEGIN IMMEDIATE transaction: read the shard's position, insert the rows through one
 * reused statement, upsert the position, COMMIT. Reads live in bal_journal_read.c.
 */
#include "bal_journal.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bal_hash.h"
#include "bal_journal_internal.h"

/* STRICT tables arrived in SQLite 3.37.0. */
#define BAL_JOURNAL_SQLITE_VERSION_MIN 3037000
/* The database page size of a new file. 2 and 8 KiB pages measured no better: smaller
 * pages halve the bytes of each dirtied index leaf but deepen the trees, larger ones the
 * reverse. */
#define BAL_JOURNAL_PAGE_SIZE 4096
/* Pages in the WAL before the writer's commit checkpoints them into the database (4 KiB
 * pages: 256 MiB), and the size the WAL file is cut back to afterwards. Every insert
 * dirties a leaf of each index at a random place, so a commit of a few thousand rows
 * appends about as many pages to the WAL; at SQLite's default of 1000 pages (or the 4096
 * used before) nearly every batch paid a checkpoint with its two fsyncs. A checkpoint
 * copies a page once however often it was rewritten since the last one, so a longer
 * interval also copies less: measured with the benchmark, 64 MiB gained about 5% over
 * 16 MiB and 256 MiB another 10-20% (batches of 1,000 rows gain most). The price: the
 * WAL file keeps up to this size plus one batch on disk, recovery after a crash reads it
 * all, and a reader looking for a page probes up to one
 * WAL-index hash table per 4096 frames (16 here) before it reads the database file. The
 * size limit lies above the interval (a checkpoint starts only after the commit that
 * crossed it) so that the file is reused instead of cut back and grown again block by
 * block in every cycle. */
#define BAL_JOURNAL_WAL_AUTOCHECKPOINT_PAGES 65536
#define BAL_JOURNAL_WAL_SIZE_LIMIT_BYTES (320 * 1024 * 1024)

/*
 * Migration steps: step i takes a file from user_version i to i + 1. Never edit a step
 * that has shipped; append a new one and raise BAL_JOURNAL_SCHEMA_VERSION.
 *
 * journal: keyed (shard, sequence, leg) -- the log's own order, so replays collide with
 * what is stored instead of duplicating it. WITHOUT ROWID keeps rows in that key order
 * (a shard's rows append) and saves the separate key index a rowid table would need.
 * Two secondary indexes, paid for on inserts (bal_journal.h says why these):
 *   journal_by_transaction (transaction_hash), partial: the look-up by id. Only a head row
 *     has a hash -- the lowest leg of a (shard, sequence) in its batch -- because the other
 *     rows of that (shard, sequence) are the same command's and are found by key from it.
 *     Not leg 0: the legs of a command that spans shards are stored by each shard under its
 *     own (shard, sequence), and leg 0 may be missing from a shard's rows.
 *   journal_by_account (account_id, sequence, leg): the history, newest first; a currency
 *     is a filter on this range rather than an index of its own.
 *
 * Step 2 (version 2): journal_by_account holds one entry per account and command, not per
 * row. A command's legs on one account (a trade settles base and quote for each side)
 * share the entry of the lowest of them, the account's head in that (shard, sequence);
 * every row records that leg in account_head_leg, and the history reaches the rest from
 * the head by key. In the benchmark's mix that is 1.5 entries per command instead of 2.3,
 * and with random accounts each entry costs a commit about one index page written to the
 * WAL (bal_journal.h, Indexes). Existing rows get their head leg from their siblings; that
 * rewrites the table once, on the first open by this version.
 *
 * Step 3 (version 3): the two indexes move out of the journal table into tables of their
 * own keyed by a leading run number (journal_by_transaction_run, journal_by_account_run),
 * listed in journal_runs; the writer inserts the entries of the rows it stores, seals and
 * merges runs (bal_journal.h, Indexes). Existing entries become run 0 at level
 * BAL_JOURNAL_RUN_LEVEL_MIGRATED (copied in key order, once), and run 1 is opened. Each
 * row records in index_run the run its entries went to, which tells a replayed row (stored
 * before, with its entries) from a new one.
 */
static const char *const bal_journal_migrations[BAL_JOURNAL_SCHEMA_VERSION] = {
    "CREATE TABLE journal ("
    "  shard INTEGER NOT NULL CHECK (shard >= 0),"
    "  sequence INTEGER NOT NULL CHECK (sequence >= 0),"
    "  leg INTEGER NOT NULL CHECK (leg >= 0),"
    "  transaction_id TEXT NOT NULL,"
    /* The u64 hash of transaction_id as its two's-complement i64, on the first row (lowest
     * leg) the shard stores of the transaction; NULL on its other rows. */
    "  transaction_hash INTEGER,"
    /* Written as comparisons: SQLite evaluates "type IN (<7 constants>)" in a CHECK by
     * building a temporary b-tree of the list for every inserted row. */
    "  type TEXT NOT NULL CHECK (type = 'DEPOSIT' OR type = 'WITHDRAW' OR type = 'FREEZE' OR"
    "                           type = 'UNFREEZE' OR type = 'DEDUCT_FROZEN' OR type = 'TRANSFER' OR"
    "                           type = 'EVENT'),"
    "  account_id INTEGER NOT NULL,"  /* u64 as its two's-complement i64 */
    "  currency TEXT NOT NULL,"
    "  amount TEXT,"                  /* canonical decimal; NULL for EVENT */
    "  to_account_id INTEGER,"        /* TRANSFER only */
    "  leg_available_delta TEXT,"     /* EVENT only: the leg as requested */
    "  leg_frozen_delta TEXT,"
    "  result TEXT NOT NULL,"
    "  time_ms INTEGER NOT NULL,"
    "  memo TEXT,"
    "  available_before TEXT NOT NULL,"
    "  available_after TEXT NOT NULL,"
    "  frozen_before TEXT NOT NULL,"
    "  frozen_after TEXT NOT NULL,"
    "  available_delta TEXT NOT NULL,"
    "  frozen_delta TEXT NOT NULL,"
    "  PRIMARY KEY (shard, sequence, leg)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE INDEX journal_by_transaction ON journal (transaction_hash) WHERE transaction_hash IS NOT NULL;"
    "CREATE INDEX journal_by_account ON journal (account_id, sequence, leg);"
    "CREATE TABLE persist_position ("
    "  shard INTEGER PRIMARY KEY,"
    "  lsn INTEGER NOT NULL CHECK (lsn >= 0)"
    ") STRICT;",

    "ALTER TABLE journal ADD COLUMN account_head_leg INTEGER;"
    "UPDATE journal SET account_head_leg = (SELECT min(sibling.leg) FROM journal AS sibling"
    "  WHERE sibling.shard = journal.shard AND sibling.sequence = journal.sequence"
    "  AND sibling.account_id = journal.account_id);"
    "DROP INDEX journal_by_account;"
    "CREATE INDEX journal_by_account ON journal (account_id, sequence, leg) WHERE account_head_leg = leg;",

    "ALTER TABLE journal ADD COLUMN index_run INTEGER NOT NULL DEFAULT 0;"
    "CREATE TABLE journal_runs ("
    "  run INTEGER PRIMARY KEY CHECK (run >= 0),"
    "  level INTEGER NOT NULL CHECK (level >= 0 AND level <= " BAL_JOURNAL_TEXT(BAL_JOURNAL_RUN_LEVEL_MIGRATED) "),"
    "  rows INTEGER NOT NULL CHECK (rows >= 0),"
    "  merging_into INTEGER"
    ") STRICT;"
    "CREATE TABLE journal_by_transaction_run ("
    "  run INTEGER NOT NULL, transaction_hash INTEGER NOT NULL, shard INTEGER NOT NULL, sequence INTEGER NOT NULL,"
    "  PRIMARY KEY (run, transaction_hash, shard, sequence)"
    ") STRICT, WITHOUT ROWID;"
    "CREATE TABLE journal_by_account_run ("
    "  run INTEGER NOT NULL, account_id INTEGER NOT NULL, sequence INTEGER NOT NULL, leg INTEGER NOT NULL,"
    "  shard INTEGER NOT NULL,"
    "  PRIMARY KEY (run, account_id, sequence, leg, shard)"
    ") STRICT, WITHOUT ROWID;"
    /* WHERE EXISTS, not HAVING without GROUP BY: SQLite accepts that only from 3.39. */
    "INSERT INTO journal_runs (run, level, rows) SELECT 0, " BAL_JOURNAL_TEXT(BAL_JOURNAL_RUN_LEVEL_MIGRATED) ","
    "  (SELECT count(*) FROM journal) WHERE EXISTS (SELECT 1 FROM journal);"
    "INSERT INTO journal_by_transaction_run (run, transaction_hash, shard, sequence)"
    "  SELECT 0, transaction_hash, shard, sequence FROM journal WHERE transaction_hash IS NOT NULL"
    "  ORDER BY 2, 3, 4;"
    "INSERT INTO journal_by_account_run (run, account_id, sequence, leg, shard)"
    "  SELECT 0, account_id, sequence, leg, shard FROM journal WHERE account_head_leg = leg ORDER BY 2, 3, 4, 5;"
    "DROP INDEX journal_by_transaction;"
    "DROP INDEX journal_by_account;"
    "INSERT INTO journal_runs (run, level, rows) VALUES (1, 0, 0);",
};

uint64_t bal_journal_transaction_hash(const char *id, size_t length) {
    assert(id != NULL);
    return bal_hash_bytes(id, length, BAL_JOURNAL_TRANSACTION_HASH_SEED);
}

void bal_journal_set_hash_for_testing(bal_journal *journal, bal_journal_hash_fn hash) {
    assert(journal != NULL && hash != NULL);
    journal->hash = hash;
}

bal_journal_options bal_journal_options_default(void) {
    bal_journal_options options = {
        .read_only = false,
        .synchronous_full = false,
        .busy_timeout_ms = BAL_JOURNAL_BUSY_TIMEOUT_MS_DEFAULT,
        .cache_kib = BAL_JOURNAL_CACHE_KIB_DEFAULT,
    };
    return options;
}

bal_journal_status bal_journal_sqlite_failure(const bal_journal *journal, int rc, const char *what,
                                              char *errstr, size_t errstr_size) {
    assert(what != NULL);
    assert(rc != SQLITE_OK && rc != SQLITE_DONE && rc != SQLITE_ROW);
    const char *message = journal != NULL && journal->db != NULL ? sqlite3_errmsg(journal->db)
                                                                 : sqlite3_errstr(rc);
    bal_journal_describe(errstr, errstr_size, "%s: %s (%s)", what, message, sqlite3_errstr(rc));
    switch (rc & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED: return BAL_JOURNAL_BUSY;
    case SQLITE_NOMEM: return BAL_JOURNAL_NO_MEMORY;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB: return BAL_JOURNAL_CORRUPT;
    default: return BAL_JOURNAL_STORAGE;
    }
}

int bal_journal_step_done(sqlite3_stmt *statement) {
    assert(statement != NULL);
    int rc = sqlite3_step(statement);
    sqlite3_reset(statement);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* Leaves a failed transaction: resets the statements that may be mid-step, rolls back. */
static void bal_journal_abandon(bal_journal *journal) {
    assert(journal != NULL && journal->db != NULL);
    sqlite3_stmt *statement = NULL;
    while ((statement = sqlite3_next_stmt(journal->db, statement)) != NULL) sqlite3_reset(statement);
    if (!sqlite3_get_autocommit(journal->db)) (void)bal_journal_step_done(journal->rollback);
    assert(sqlite3_get_autocommit(journal->db));
}

int bal_journal_query_int(sqlite3 *db, const char *sql, int64_t *value_out) {
    assert(db != NULL && sql != NULL && value_out != NULL);
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(db, sql, -1, &statement, NULL);
    if (rc != SQLITE_OK) return rc;
    rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        *value_out = sqlite3_column_int64(statement, 0);
        rc = SQLITE_OK;
    }
    sqlite3_finalize(statement);
    return rc;
}

/* Connection settings: the writer chooses durability and checkpointing, a reader promises
 * never to write (query_only). */
static bal_journal_status bal_journal_configure(bal_journal *journal, const bal_journal_options *options,
                                                char *errstr, size_t errstr_size) {
    assert(journal != NULL && options != NULL);
    char sql[256];
    int rc = sqlite3_busy_timeout(journal->db, (int)options->busy_timeout_ms);
    snprintf(sql, sizeof sql, "PRAGMA cache_size = -%u; PRAGMA temp_store = MEMORY;", options->cache_kib);
    if (rc == SQLITE_OK) rc = sqlite3_exec(journal->db, sql, NULL, NULL, NULL);
    if (rc == SQLITE_OK && options->read_only) {
        rc = sqlite3_exec(journal->db, "PRAGMA query_only = 1;", NULL, NULL, NULL);
    }
    if (rc == SQLITE_OK && !options->read_only) {
        /* The page size takes effect only in a new file (before its first table) and is
         * fixed from then on; it is set rather than left to the SQLite build's default
         * because the intervals below are counted in pages. */
        snprintf(sql, sizeof sql,
                 "PRAGMA page_size = %d; PRAGMA synchronous = %s; PRAGMA wal_autocheckpoint = %d; "
                 "PRAGMA journal_size_limit = %d;",
                 BAL_JOURNAL_PAGE_SIZE, options->synchronous_full ? "FULL" : "NORMAL",
                 BAL_JOURNAL_WAL_AUTOCHECKPOINT_PAGES, BAL_JOURNAL_WAL_SIZE_LIMIT_BYTES);
        rc = sqlite3_exec(journal->db, sql, NULL, NULL, NULL);
    }
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "configure", errstr, errstr_size);
    return BAL_JOURNAL_OK;
}

/* Writer only, after the file proved to be ours (or empty): WAL is persistent in the file.
 * journal_mode answers with the mode in force; anything but "wal" (e.g. a file system
 * without shared memory) would break the concurrent readers this design relies on. */
static bal_journal_status bal_journal_enable_wal(bal_journal *journal, char *errstr, size_t errstr_size) {
    assert(journal != NULL && journal->db != NULL);
    assert(!journal->read_only);
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(journal->db, "PRAGMA journal_mode = WAL", -1, &statement, NULL);
    if (rc == SQLITE_OK && (rc = sqlite3_step(statement)) == SQLITE_ROW) {
        const unsigned char *mode = sqlite3_column_text(statement, 0);
        rc = mode != NULL && strcmp((const char *)mode, "wal") == 0 ? SQLITE_OK : SQLITE_CANTOPEN;
    }
    sqlite3_finalize(statement);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "set WAL journal mode", errstr, errstr_size);
    return BAL_JOURNAL_OK;
}

/* Reads the file's identity: application_id, user_version and whether it has any object. */
static int bal_journal_read_identity(sqlite3 *db, int64_t *application_id, int64_t *version,
                                     int64_t *object_count) {
    assert(db != NULL);
    assert(application_id != NULL && version != NULL && object_count != NULL);
    int rc = bal_journal_query_int(db, "PRAGMA application_id", application_id);
    if (rc == SQLITE_OK) rc = bal_journal_query_int(db, "PRAGMA user_version", version);
    if (rc == SQLITE_OK) rc = bal_journal_query_int(db, "SELECT count(*) FROM sqlite_schema", object_count);
    return rc;
}

/* Decides from the identity whether this is our file and at which version. */
static bal_journal_status bal_journal_check_identity(int64_t application_id, int64_t version,
                                                     int64_t object_count, bool read_only,
                                                     char *errstr, size_t errstr_size) {
    assert(version >= INT32_MIN && version <= INT32_MAX); /* user_version is 32 bits */
    bool fresh = application_id == 0 && version == 0 && object_count == 0;
    if (!fresh && application_id != BAL_JOURNAL_APPLICATION_ID) {
        bal_journal_describe(errstr, errstr_size, "not a journal file (application_id %lld)",
                             (long long)application_id);
        return BAL_JOURNAL_SCHEMA;
    }
    if (version > BAL_JOURNAL_SCHEMA_VERSION || version < 0) {
        bal_journal_describe(errstr, errstr_size, "journal schema version %lld is newer than %d",
                             (long long)version, BAL_JOURNAL_SCHEMA_VERSION);
        return BAL_JOURNAL_SCHEMA;
    }
    if (read_only && version != BAL_JOURNAL_SCHEMA_VERSION) {
        bal_journal_describe(errstr, errstr_size,
                             "journal schema version %lld, expected %d (the writer migrates it)",
                             (long long)version, BAL_JOURNAL_SCHEMA_VERSION);
        return BAL_JOURNAL_SCHEMA;
    }
    return BAL_JOURNAL_OK;
}

/* Applies the missing migration steps, each in its own transaction with its version. */
static int bal_journal_migrate(sqlite3 *db, int64_t version) {
    assert(db != NULL);
    assert(version >= 0 && version <= BAL_JOURNAL_SCHEMA_VERSION);
    int rc = SQLITE_OK;
    for (int64_t step = version; step < BAL_JOURNAL_SCHEMA_VERSION && rc == SQLITE_OK; step++) {
        char sql[160];
        snprintf(sql, sizeof sql, "PRAGMA application_id = %d; PRAGMA user_version = %lld; COMMIT;",
                 BAL_JOURNAL_APPLICATION_ID, (long long)(step + 1));
        rc = sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, bal_journal_migrations[step], NULL, NULL, NULL);
        if (rc == SQLITE_OK) rc = sqlite3_exec(db, sql, NULL, NULL, NULL);
        if (rc != SQLITE_OK && !sqlite3_get_autocommit(db)) sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
    }
    return rc;
}

/* Checks that the file is a journal (or empty), switches the writer to WAL and brings the
 * schema up to date. Nothing is changed in a file that is not ours. */
static bal_journal_status bal_journal_open_schema(bal_journal *journal, char *errstr, size_t errstr_size) {
    assert(journal != NULL && journal->db != NULL);
    int64_t application_id = 0, version = 0, object_count = 0;
    int rc = bal_journal_read_identity(journal->db, &application_id, &version, &object_count);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "read schema version", errstr, errstr_size);
    bal_journal_status status = bal_journal_check_identity(application_id, version, object_count,
                                                           journal->read_only, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK || journal->read_only) return status;

    status = bal_journal_enable_wal(journal, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK || version == BAL_JOURNAL_SCHEMA_VERSION) return status;
    rc = bal_journal_migrate(journal->db, version);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "migrate schema", errstr, errstr_size);
    return BAL_JOURNAL_OK;
}

int bal_journal_prepare(bal_journal *journal, const char *sql, sqlite3_stmt **statement_out) {
    assert(journal != NULL && sql != NULL && statement_out != NULL);
    /* PERSISTENT: these statements live as long as the connection. */
    return sqlite3_prepare_v3(journal->db, sql, -1, SQLITE_PREPARE_PERSISTENT, statement_out, NULL);
}

/* The writer's INSERT of rows rows: the column list, then rows groups of placeholders,
 * numbered in order (row r's value v is parameter r * BAL_JOURNAL_INSERT_PARAMETERS + v + 1;
 * the last value of a row is its account_head_leg). */
static int bal_journal_prepare_insert(bal_journal *journal, int rows, sqlite3_stmt **statement_out) {
    assert(rows >= 1 && rows <= BAL_JOURNAL_INSERT_GROUP_ROWS);
    static const char head[] =
        "INSERT OR IGNORE INTO journal (" BAL_JOURNAL_COLUMNS ", account_head_leg, index_run) VALUES ";
    char sql[sizeof head + BAL_JOURNAL_INSERT_GROUP_ROWS * (4 + 2 * BAL_JOURNAL_INSERT_PARAMETERS)];
    size_t length = sizeof head - 1;
    memcpy(sql, head, length);
    for (int r = 0; r < rows; r++) {
        if (r > 0) sql[length++] = ',';
        sql[length++] = '(';
        for (int c = 0; c < BAL_JOURNAL_INSERT_PARAMETERS; c++) {
            if (c > 0) sql[length++] = ',';
            sql[length++] = '?';
        }
        sql[length++] = ')';
    }
    assert(length < sizeof sql);
    sql[length] = '\0';
    int rc = bal_journal_prepare(journal, sql, statement_out);
    assert(rc != SQLITE_OK || sqlite3_bind_parameter_count(*statement_out) == rows * BAL_JOURNAL_INSERT_PARAMETERS);
    return rc;
}

/* The index entries' INSERT (which 0: by id, 1: by account) of BAL_JOURNAL_INSERT_GROUP_ROWS
 * entries; unused entries are bound to NULL, which NOT NULL with OR IGNORE skips. OR IGNORE
 * also drops an entry that is there already: a replayed row stored earlier in the open run,
 * or the second head of a log position split over two calls. */
static int bal_journal_prepare_entries(bal_journal *journal, int which, sqlite3_stmt **statement_out) {
    static const char *const heads[2] = {
        "INSERT OR IGNORE INTO journal_by_transaction_run (run, transaction_hash, shard, sequence) VALUES ",
        "INSERT OR IGNORE INTO journal_by_account_run (run, account_id, sequence, leg, shard) VALUES ",
    };
    int columns = BAL_JOURNAL_ENTRY_COLUMNS(which);
    char sql[256 + BAL_JOURNAL_INSERT_GROUP_ROWS * 16];
    size_t length = (size_t)snprintf(sql, sizeof sql, "%s", heads[which]);
    for (int r = 0; r < BAL_JOURNAL_INSERT_GROUP_ROWS; r++) {
        length += (size_t)snprintf(sql + length, sizeof sql - length, "%s(?%s)", r ? "," : "",
                                   columns == 4 ? ",?,?,?" : ",?,?,?,?");
    }
    assert(length < sizeof sql);
    return bal_journal_prepare(journal, sql, statement_out);
}

static int bal_journal_prepare_writers(bal_journal *journal) {
    assert(journal != NULL && !journal->read_only);
    int rc = bal_journal_prepare(journal, "BEGIN IMMEDIATE", &journal->begin_write);
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal,
                                 "INSERT INTO persist_position (shard, lsn) VALUES (?1, ?2) "
                                 "ON CONFLICT (shard) DO UPDATE SET lsn = excluded.lsn",
                                 &journal->position_set);
    }
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, "SELECT run, rows FROM journal_runs WHERE level = 0 ORDER BY run DESC LIMIT 1",
                                 &journal->run_open_get);
    }
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, "UPDATE journal_runs SET rows = rows + ?2 WHERE run = ?1", &journal->run_rows_add);
    }
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal,
                                 "INSERT INTO journal_runs (run, level, rows) "
                                 "SELECT coalesce(max(run), -1) + 1, 0, 0 FROM journal_runs",
                                 &journal->run_open_new);
    }
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal,
                                 "SELECT DISTINCT merging_into FROM journal_runs WHERE merging_into IS NOT NULL ORDER BY 1",
                                 &journal->merge_targets);
    }
    if (rc == SQLITE_OK) rc = bal_journal_prepare_entries(journal, 0, &journal->entries_insert[0]);
    if (rc == SQLITE_OK) rc = bal_journal_prepare_entries(journal, 1, &journal->entries_insert[1]);
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, "SELECT index_run FROM journal WHERE shard = ?1 AND sequence = ?2 AND leg = ?3",
                                 &journal->row_run_get);
    }
    if (rc == SQLITE_OK) rc = bal_journal_prepare_insert(journal, 1, &journal->insert_row);
    if (rc == SQLITE_OK) rc = bal_journal_prepare_insert(journal, BAL_JOURNAL_INSERT_GROUP_ROWS, &journal->insert_group);
    return rc;
}

/* Statements every handle has; the queries' own are prepared by bal_journal_read.c. */
static int bal_journal_prepare_common(bal_journal *journal) {
    assert(journal != NULL && journal->db != NULL);
    int rc = bal_journal_prepare(journal, "BEGIN", &journal->begin_read);
    if (rc == SQLITE_OK) rc = bal_journal_prepare(journal, "COMMIT", &journal->commit);
    if (rc == SQLITE_OK) rc = bal_journal_prepare(journal, "ROLLBACK", &journal->rollback);
    if (rc == SQLITE_OK) {
        rc = bal_journal_prepare(journal, "SELECT lsn FROM persist_position WHERE shard = ?1",
                                 &journal->position_get);
    }
    return rc;
}

static bal_journal_status bal_journal_open_checked(bal_journal *journal, const char *path,
                                                   const bal_journal_options *options,
                                                   char *errstr, size_t errstr_size);

bal_journal_status bal_journal_open(const char *path, const bal_journal_options *options,
                                    bal_journal **journal_out, char *errstr, size_t errstr_size) {
    assert(journal_out != NULL);
    *journal_out = NULL;
    bal_journal_options defaults = bal_journal_options_default();
    if (options == NULL) options = &defaults;
    if (path == NULL || path[0] == '\0' || strlen(path) > BAL_JOURNAL_PATH_LENGTH_MAX ||
        options->busy_timeout_ms > BAL_JOURNAL_BUSY_TIMEOUT_MS_MAX ||
        options->cache_kib > BAL_JOURNAL_CACHE_KIB_MAX || (options->read_only && options->synchronous_full)) {
        bal_journal_describe(errstr, errstr_size, "invalid journal path or options");
        return BAL_JOURNAL_INVALID_ARGUMENT;
    }
    if (sqlite3_libversion_number() < BAL_JOURNAL_SQLITE_VERSION_MIN || !sqlite3_threadsafe()) {
        bal_journal_describe(errstr, errstr_size, "SQLite %s is too old or built without threads",
                             sqlite3_libversion());
        return BAL_JOURNAL_STORAGE;
    }
    bal_journal *journal = calloc(1, sizeof *journal);
    const char **lookup_ids = calloc(BAL_JOURNAL_LOOKUP_IDS_MAX, sizeof *lookup_ids);
    int64_t *lookup_hashes = calloc(BAL_JOURNAL_LOOKUP_IDS_MAX, sizeof *lookup_hashes);
    if (journal == NULL || lookup_ids == NULL || lookup_hashes == NULL) {
        free(journal);
        free(lookup_ids);
        free(lookup_hashes);
        bal_journal_describe(errstr, errstr_size, "out of memory opening the journal");
        return BAL_JOURNAL_NO_MEMORY;
    }
    journal->lookup_ids = lookup_ids;
    journal->lookup_hashes = lookup_hashes;
    journal->writeback_fds[0] = journal->writeback_fds[1] = -1;
    journal->hash = bal_journal_transaction_hash;
    journal->read_only = options->read_only;
    journal->run_rows_max = BAL_JOURNAL_RUN_ROWS;
    journal->runs_per_merge = BAL_JOURNAL_RUNS_PER_MERGE;
    bal_journal_status status = bal_journal_open_checked(journal, path, options, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) {
        bal_journal_close(journal);
        return status;
    }
    *journal_out = journal;
    return BAL_JOURNAL_OK;
}

/* Opens the connection, configures it, checks or migrates the schema, prepares statements. */
static bal_journal_status bal_journal_open_checked(bal_journal *journal, const char *path,
                                                   const bal_journal_options *options,
                                                   char *errstr, size_t errstr_size) {
    assert(journal != NULL && path != NULL && options != NULL);
    /* NOMUTEX: a handle belongs to one thread at a time, so SQLite's per-connection mutex
     * would only cost. Readers open read-write (without CREATE) because a read-only
     * connection cannot always join a WAL database; query_only keeps them from writing. */
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX | (options->read_only ? 0 : SQLITE_OPEN_CREATE);
    int rc = sqlite3_open_v2(path, &journal->db, flags, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_extended_result_codes(journal->db, 1);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, path, errstr, errstr_size);

    bal_journal_status status = bal_journal_configure(journal, options, errstr, errstr_size);
    if (status == BAL_JOURNAL_OK) status = bal_journal_open_schema(journal, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;

    rc = bal_journal_prepare_common(journal);
    if (rc == SQLITE_OK) rc = bal_journal_prepare_queries(journal);
    if (rc == SQLITE_OK && !journal->read_only) rc = bal_journal_prepare_writers(journal);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "prepare statements", errstr, errstr_size);
    assert(journal->position_get != NULL && journal->history_all != NULL);
    return BAL_JOURNAL_OK;
}

void bal_journal_close(bal_journal *journal) {
    if (journal == NULL) return;
    if (journal->db != NULL) {
        sqlite3_stmt *statement = NULL;
        while ((statement = sqlite3_next_stmt(journal->db, NULL)) != NULL) sqlite3_finalize(statement);
        int rc = sqlite3_close(journal->db);
        assert(rc == SQLITE_OK); /* every statement is finalized above */
        (void)rc;
    }
    for (int i = 0; i < 2; i++) {
        if (journal->writeback_fds[i] >= 0) close(journal->writeback_fds[i]);
    }
    free(journal->lookup_ids);
    free(journal->lookup_hashes);
    free(journal->order);
    free(journal->order_scratch);
    free(journal);
}

/* Reads the shard's position inside the current transaction (or as its own statement). */
static int bal_journal_read_position(bal_journal *journal, uint32_t shard, uint64_t *lsn_out) {
    assert(journal != NULL && lsn_out != NULL);
    sqlite3_stmt *statement = journal->position_get;
    int rc = sqlite3_bind_int64(statement, 1, shard);
    if (rc == SQLITE_OK) rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        int64_t lsn = sqlite3_column_int64(statement, 0);
        rc = lsn >= 0 ? SQLITE_OK : SQLITE_CORRUPT;
        *lsn_out = (uint64_t)lsn;
    } else if (rc == SQLITE_DONE) {
        *lsn_out = 0;
        rc = SQLITE_OK;
    }
    sqlite3_reset(statement);
    return rc;
}

bal_journal_status bal_journal_position(bal_journal *journal, uint32_t shard, uint64_t *lsn_out,
                                        char *errstr, size_t errstr_size) {
    assert(journal != NULL && lsn_out != NULL);
    if (shard >= BAL_JOURNAL_SHARDS_MAX) {
        bal_journal_describe(errstr, errstr_size, "shard %u out of range", shard);
        return BAL_JOURNAL_INVALID_ARGUMENT;
    }
    int rc = bal_journal_read_position(journal, shard, lsn_out);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "read position", errstr, errstr_size);
    assert(*lsn_out <= BAL_JOURNAL_LSN_MAX);
    return BAL_JOURNAL_OK;
}

/* Binds an amount as canonical text into a scratch slot (or NULL if absent) as parameter
 * of statement. Zero, the most common value (frozen balances, rejected deltas), is bound
 * from a constant and skips the 128-bit divisions of formatting. */
static int bal_journal_bind_amount(sqlite3_stmt *statement, int parameter, char *slot, bal_amount amount,
                                   bool present) {
    assert(statement != NULL && slot != NULL);
    if (!present) return sqlite3_bind_null(statement, parameter);
    if (amount == 0) return sqlite3_bind_text(statement, parameter, "0", 1, SQLITE_STATIC);
    size_t length = bal_money_format(amount, slot);
    return sqlite3_bind_text(statement, parameter, slot, (int)length, SQLITE_STATIC);
}

/* Binds a checked row to the parameters of statement from first + 1 on, in column order,
 * then its account_head_leg, with its amounts formatted into amounts. Texts are bound
 * SQLITE_STATIC: the row and the scratch buffers outlive the step that reads them. */
static int bal_journal_bind_row(const bal_journal *journal, sqlite3_stmt *s, int first, const bal_journal_row *row,
                                const bal_journal_order_key *key, char (*amounts)[BAL_MONEY_TEXT_MAX + 1]) {
    assert(journal != NULL && s != NULL && row != NULL && key != NULL && amounts != NULL);
    assert(key->account_head_leg <= row->leg);
    bool head = key->head;
    bool event = row->type == BAL_JOURNAL_TYPE_EVENT;
    size_t id_length = strlen(row->transaction_id); /* checked: 1 .. BAL_TRANSACTION_ID_LENGTH_MAX */
    int rc = SQLITE_OK;
#define BAL_JOURNAL_BIND(call) \
    do { if (rc == SQLITE_OK) rc = (call); } while (0)
#define P(column) (first + BAL_JOURNAL_COLUMN_##column + 1)
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(SHARD), row->shard));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(SEQUENCE), (int64_t)row->sequence));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(LEG), row->leg));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, P(TRANSACTION_ID), row->transaction_id, (int)id_length, SQLITE_STATIC));
    if (head) {
        uint64_t hash = journal->hash(row->transaction_id, id_length);
        BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(TRANSACTION_HASH), bal_journal_u64_to_sql(hash)));
    } else {
        BAL_JOURNAL_BIND(sqlite3_bind_null(s, P(TRANSACTION_HASH)));
    }
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, P(TYPE), bal_journal_type_name(row->type), -1, SQLITE_STATIC));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(ACCOUNT_ID), bal_journal_account_to_sql(row->account_id)));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, P(CURRENCY), row->currency, -1, SQLITE_STATIC));
    BAL_JOURNAL_BIND(bal_journal_bind_amount(s, P(AMOUNT), amounts[0], row->amount, !event));
    if (row->type == BAL_JOURNAL_TYPE_TRANSFER) {
        BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(TO_ACCOUNT_ID), bal_journal_account_to_sql(row->to_account_id)));
    } else {
        BAL_JOURNAL_BIND(sqlite3_bind_null(s, P(TO_ACCOUNT_ID)));
    }
    BAL_JOURNAL_BIND(bal_journal_bind_amount(s, P(LEG_AVAILABLE_DELTA), amounts[1], row->leg_available_delta, event));
    BAL_JOURNAL_BIND(bal_journal_bind_amount(s, P(LEG_FROZEN_DELTA), amounts[2], row->leg_frozen_delta, event));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, P(RESULT), row->result, -1, SQLITE_STATIC));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(TIME_MS), row->time_ms));
    if (row->has_memo) {
        BAL_JOURNAL_BIND(sqlite3_bind_text(s, P(MEMO), row->memo, row->memo_length, SQLITE_STATIC));
    } else {
        BAL_JOURNAL_BIND(sqlite3_bind_null(s, P(MEMO)));
    }
    _Static_assert(BAL_JOURNAL_COLUMN_FROZEN_DELTA == BAL_JOURNAL_COLUMN_AVAILABLE_BEFORE + 5,
                   "the six balance columns are contiguous");
    _Static_assert(BAL_JOURNAL_ROW_AMOUNTS == 3 + 6, "three request amounts and six balance amounts");
    const bal_amount balances[6] = {row->available_before, row->available_after, row->frozen_before,
                                     row->frozen_after, row->available_delta, row->frozen_delta};
    for (int i = 0; i < 6; i++) {
        BAL_JOURNAL_BIND(bal_journal_bind_amount(s, P(AVAILABLE_BEFORE) + i, amounts[3 + i], balances[i], true));
    }
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(COUNT), key->account_head_leg));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, P(COUNT) + 1, journal->open_run));
#undef P
#undef BAL_JOURNAL_BIND
    return rc;
}

/* a before b in the journal_by_account order (account as stored, then sequence and leg),
 * or, when by_position, in the log's order with the earlier row of the batch first. */
static bool bal_journal_key_before(const bal_journal_order_key *a, const bal_journal_order_key *b,
                                   bool by_position) {
    if (!by_position && a->account != b->account) return a->account < b->account;
    if (a->position != b->position) return a->position < b->position;
    return a->index < b->index;
}

/* Bottom-up merge sort of keys[0..count) with scratch[0..count): O(n log n) whatever the
 * input, no recursion, no allocation. Returns whichever buffer holds the result. */
static bal_journal_order_key *bal_journal_sort_keys(bal_journal_order_key *keys, bal_journal_order_key *scratch,
                                                    size_t count, bool by_position) {
    bal_journal_order_key *from = keys, *to = scratch;
    for (size_t width = 1; width < count; width *= 2) {
        for (size_t start = 0; start < count; start += 2 * width) {
            size_t middle = start + width < count ? start + width : count;
            size_t end = middle + width < count ? middle + width : count;
            size_t i = start, j = middle, k = start;
            while (i < middle && j < end) {
                to[k++] = bal_journal_key_before(&from[j], &from[i], by_position) ? from[j++] : from[i++];
            }
            while (i < middle) to[k++] = from[i++];
            while (j < end) to[k++] = from[j++];
        }
        bal_journal_order_key *swap = from;
        from = to;
        to = swap;
    }
    return from;
}

size_t bal_journal_order_batch(const bal_journal_row *rows, size_t count, bal_journal_order_key *keys,
                               bal_journal_order_key *scratch) {
    assert(rows != NULL || count == 0);
    assert(count <= BAL_JOURNAL_BATCH_ROWS_MAX);
    bool ascending = true;
    for (size_t i = 0; i < count; i++) {
        keys[i].account = bal_journal_account_to_sql(rows[i].account_id);
        keys[i].position = rows[i].sequence * BAL_JOURNAL_LEGS_MAX + rows[i].leg;
        keys[i].index = (uint32_t)i;
        keys[i].head = i == 0 || rows[i].sequence != rows[i - 1].sequence;
        if (i > 0 && keys[i].position <= keys[i - 1].position) ascending = false;
    }
    size_t kept = count;
    if (!ascending) {
        /* A batch in strictly ascending (sequence, leg) order -- what the persister sends --
         * cannot repeat a key and has each sequence's rows together, lowest leg first; any
         * other is put in log order to find the repeats, so that the first occurrence stays
         * the one stored, as in an insert in the caller's order, and the heads. */
        bal_journal_order_key *sorted = bal_journal_sort_keys(keys, scratch, count, true);
        kept = 0;
        for (size_t i = 0; i < count; i++) {
            if (kept > 0 && keys[kept - 1].position == sorted[i].position) continue;
            keys[kept] = sorted[i]; /* kept <= i: never overwrites an unread key of sorted */
            keys[kept].head = kept == 0 || keys[kept - 1].position / BAL_JOURNAL_LEGS_MAX !=
                                               keys[kept].position / BAL_JOURNAL_LEGS_MAX;
            kept++;
        }
    }
    bal_journal_order_key *sorted = bal_journal_sort_keys(keys, scratch, kept, false);
    if (sorted != keys) memcpy(keys, sorted, kept * sizeof keys[0]);
    /* An account's rows of one sequence are adjacent now, lowest leg first. */
    for (size_t i = 0; i < kept; i++) {
        bool same_group = i > 0 && keys[i].account == keys[i - 1].account &&
                          keys[i].position / BAL_JOURNAL_LEGS_MAX == keys[i - 1].position / BAL_JOURNAL_LEGS_MAX;
        keys[i].account_head_leg = same_group ? keys[i - 1].account_head_leg
                                              : (uint32_t)(keys[i].position % BAL_JOURNAL_LEGS_MAX);
        assert(keys[i].account_head_leg <= keys[i].position % BAL_JOURNAL_LEGS_MAX);
    }
    return kept;
}

/* Makes the writer's order scratch hold count keys. */
static bool bal_journal_reserve_order(bal_journal *journal, size_t count) {
    assert(journal != NULL);
    if (count <= journal->order_capacity) return true;
    size_t capacity = journal->order_capacity < 1024 ? 1024 : journal->order_capacity;
    while (capacity < count) capacity *= 2;
    bal_journal_order_key *order = malloc(capacity * sizeof *order);
    bal_journal_order_key *scratch = malloc(capacity * sizeof *scratch);
    if (order == NULL || scratch == NULL) {
        free(order);
        free(scratch);
        return false;
    }
    free(journal->order);
    free(journal->order_scratch);
    journal->order = order;
    journal->order_scratch = scratch;
    journal->order_capacity = capacity;
    return true;
}

/* Runs statement with rows order[0 .. count) bound (count = its number of rows). */
static int bal_journal_insert_statement(bal_journal *journal, sqlite3_stmt *statement, const bal_journal_row *rows,
                                        const bal_journal_order_key *order, size_t count) {
    assert(count >= 1 && count <= BAL_JOURNAL_INSERT_GROUP_ROWS);
    assert(sqlite3_bind_parameter_count(statement) == (int)count * BAL_JOURNAL_INSERT_PARAMETERS);
    int rc = SQLITE_OK;
    for (size_t i = 0; i < count && rc == SQLITE_OK; i++) {
        rc = bal_journal_bind_row(journal, statement, (int)i * BAL_JOURNAL_INSERT_PARAMETERS, &rows[order[i].index],
                                  &order[i], journal->amount_text[i]);
    }
    if (rc == SQLITE_OK) rc = bal_journal_step_done(statement);
    return rc;
}

/* Inserts the pending entries of one index (which) and empties the list. */
static int bal_journal_flush_entries(bal_journal *journal, int which) {
    sqlite3_stmt *statement = journal->entries_insert[which];
    int columns = BAL_JOURNAL_ENTRY_COLUMNS(which);
    uint32_t count = journal->entry_count[which];
    if (count == 0) return SQLITE_OK;
    int rc = SQLITE_OK;
    for (uint32_t e = 0; e < BAL_JOURNAL_INSERT_GROUP_ROWS && rc == SQLITE_OK; e++) {
        for (int c = 0; c < columns && rc == SQLITE_OK; c++) {
            int parameter = (int)e * columns + c + 1;
            rc = e < count ? sqlite3_bind_int64(statement, parameter, journal->entries[which][e][c])
                           : sqlite3_bind_null(statement, parameter);
        }
    }
    if (rc == SQLITE_OK) rc = bal_journal_step_done(statement);
    journal->entry_count[which] = 0;
    return rc;
}

/* Adds one entry to an index's pending list, flushing it when full. */
static int bal_journal_add_entry(bal_journal *journal, int which, const int64_t *values) {
    int rc = SQLITE_OK;
    if (journal->entry_count[which] == BAL_JOURNAL_INSERT_GROUP_ROWS) rc = bal_journal_flush_entries(journal, which);
    if (rc != SQLITE_OK) return rc;
    memcpy(journal->entries[which][journal->entry_count[which]++], values,
           (size_t)BAL_JOURNAL_ENTRY_COLUMNS(which) * sizeof values[0]);
    return SQLITE_OK;
}

/* Whether the row at key was stored by this batch's INSERT (its index_run is the open
 * run) rather than found stored before: only for a statement that ignored some rows. */
static int bal_journal_row_is_new(bal_journal *journal, const bal_journal_row *row, bool *new_out) {
    sqlite3_stmt *statement = journal->row_run_get;
    int rc = sqlite3_bind_int64(statement, 1, row->shard);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 2, (int64_t)row->sequence);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(statement, 3, row->leg);
    if (rc == SQLITE_OK) rc = sqlite3_step(statement);
    *new_out = rc == SQLITE_ROW && sqlite3_column_int64(statement, 0) == journal->open_run;
    if (rc == SQLITE_ROW) rc = SQLITE_OK;
    else if (rc == SQLITE_DONE) rc = SQLITE_CORRUPT; /* the INSERT just stored or found it */
    sqlite3_reset(statement);
    return rc;
}

/* Queues the index entries of the count rows one INSERT statement just wrote (order[0 ..
 * count)): an entry by id for a head, by account for an account's head. all_new: the
 * statement stored every row; otherwise each row is asked whether it was stored now, and a
 * replayed row stored in an earlier run, which has its entries there, gets none. A replayed
 * row of the open run itself gets its entries again, and OR IGNORE drops them. */
static int bal_journal_index_rows(bal_journal *journal, const bal_journal_row *rows, const bal_journal_order_key *order,
                                  size_t count, bool all_new) {
    int rc = SQLITE_OK;
    for (size_t i = 0; i < count && rc == SQLITE_OK; i++) {
        const bal_journal_row *row = &rows[order[i].index];
        bool account_head = order[i].account_head_leg == row->leg;
        if (!order[i].head && !account_head) continue;
        bool fresh = true;
        if (!all_new) rc = bal_journal_row_is_new(journal, row, &fresh);
        if (rc != SQLITE_OK || !fresh) continue;
        if (order[i].head) {
            int64_t entry[4] = {journal->open_run,
                                bal_journal_u64_to_sql(journal->hash(row->transaction_id, strlen(row->transaction_id))),
                                row->shard, (int64_t)row->sequence};
            rc = bal_journal_add_entry(journal, 0, entry);
        }
        if (rc == SQLITE_OK && account_head) {
            int64_t entry[5] = {journal->open_run, bal_journal_account_to_sql(row->account_id), (int64_t)row->sequence,
                                row->leg, row->shard};
            rc = bal_journal_add_entry(journal, 1, entry);
        }
    }
    return rc;
}

/* Inserts the rows inside the open transaction in the order of keys (kept of row_count
 * rows; the others repeat an earlier key and count as ignored), BAL_JOURNAL_INSERT_GROUP_ROWS
 * per statement and the rest one by one, counting fresh and already-present keys. */
static int bal_journal_insert_rows(bal_journal *journal, const bal_journal_row *rows, size_t row_count,
                                   size_t kept, bal_journal_write_outcome *outcome) {
    assert(journal != NULL && outcome != NULL);
    assert(kept <= row_count);
    assert(!sqlite3_get_autocommit(journal->db));
    size_t done = 0;
    while (done < kept) {
        bool group = kept - done >= BAL_JOURNAL_INSERT_GROUP_ROWS;
        size_t count = group ? BAL_JOURNAL_INSERT_GROUP_ROWS : 1;
        int rc = bal_journal_insert_statement(journal, group ? journal->insert_group : journal->insert_row, rows,
                                              journal->order + done, count);
        if (rc != SQLITE_OK) return rc;
        /* INSERT OR IGNORE counts only the rows it stored: the rest had their key already. */
        int changes = sqlite3_changes(journal->db);
        assert(changes >= 0 && (size_t)changes <= count);
        outcome->rows_inserted += (uint32_t)changes;
        outcome->rows_ignored += (uint32_t)(count - (size_t)changes);
        if (changes > 0) rc = bal_journal_index_rows(journal, rows, journal->order + done, count, (size_t)changes == count);
        if (rc != SQLITE_OK) return rc;
        done += count;
    }
    int rc = bal_journal_flush_entries(journal, 0);
    if (rc == SQLITE_OK) rc = bal_journal_flush_entries(journal, 1);
    if (rc != SQLITE_OK) return rc;
    outcome->rows_ignored += (uint32_t)(row_count - kept);
    assert(outcome->rows_inserted + outcome->rows_ignored == row_count);
    return SQLITE_OK;
}

static bal_journal_status bal_journal_check_batch(uint32_t shard, const bal_journal_row *rows,
                                                  size_t row_count, uint64_t last_lsn,
                                                  char *errstr, size_t errstr_size) {
    assert(rows != NULL || row_count == 0);
    if (shard >= BAL_JOURNAL_SHARDS_MAX || row_count > BAL_JOURNAL_BATCH_ROWS_MAX || last_lsn == 0 ||
        last_lsn > BAL_JOURNAL_LSN_MAX) {
        bal_journal_describe(errstr, errstr_size, "batch: shard %u, %zu rows, lsn %llu out of range",
                             shard, row_count, (unsigned long long)last_lsn);
        return BAL_JOURNAL_INVALID_ARGUMENT;
    }
    for (size_t i = 0; i < row_count; i++) {
        if (rows[i].shard != shard) {
            bal_journal_describe(errstr, errstr_size, "batch row %zu belongs to shard %u, not %u", i,
                                 rows[i].shard, shard);
            return BAL_JOURNAL_INVALID_ARGUMENT;
        }
        bal_journal_status status = bal_journal_row_check(&rows[i], errstr, errstr_size);
        if (status != BAL_JOURNAL_OK) return status;
    }
    return BAL_JOURNAL_OK;
}

/* Opens a new, empty run of level 0 (the largest number yet) and makes it the open run. */
static int bal_journal_open_new_run(bal_journal *journal) {
    int rc = bal_journal_step_done(journal->run_open_new);
    journal->open_run = sqlite3_last_insert_rowid(journal->db);
    journal->open_run_rows = 0;
    return rc;
}

/* Reads the open run (the newest of level 0) into the handle; a file without one (which
 * only a hand-edited file can be) gets a new one. Inside the write transaction. */
static int bal_journal_read_open_run(bal_journal *journal) {
    assert(journal != NULL && !sqlite3_get_autocommit(journal->db));
    sqlite3_stmt *statement = journal->run_open_get;
    int rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        journal->open_run = sqlite3_column_int64(statement, 0);
        journal->open_run_rows = sqlite3_column_int64(statement, 1);
        rc = journal->open_run >= 0 && journal->open_run_rows >= 0 ? SQLITE_OK : SQLITE_CORRUPT;
    }
    sqlite3_reset(statement);
    if (rc != SQLITE_DONE) return rc;
    return bal_journal_open_new_run(journal);
}

/* Counts the rows just inserted into the open run; once it holds run_rows_max rows, a new
 * open run takes over (the full one is sealed) and *sealed_out is set. */
static int bal_journal_count_run_rows(bal_journal *journal, uint32_t inserted, bool *sealed_out) {
    assert(journal != NULL && sealed_out != NULL);
    *sealed_out = false;
    if (inserted == 0) return SQLITE_OK;
    int rc = sqlite3_bind_int64(journal->run_rows_add, 1, journal->open_run);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(journal->run_rows_add, 2, inserted);
    if (rc == SQLITE_OK) rc = bal_journal_step_done(journal->run_rows_add);
    if (rc != SQLITE_OK || journal->open_run_rows + inserted < journal->run_rows_max) return rc;
    *sealed_out = true;
    return bal_journal_open_new_run(journal);
}

/* The batch between BEGIN IMMEDIATE and COMMIT; *what names the step that failed. The
 * write lock is taken before the position is read, so no other writer can move it between
 * the check and the commit. */
static int bal_journal_write_transaction(bal_journal *journal, uint32_t shard, const bal_journal_row *rows,
                                         size_t row_count, size_t kept, uint64_t last_lsn,
                                         bal_journal_write_outcome *outcome, const char **what) {
    assert(journal != NULL && outcome != NULL && what != NULL);
    assert(last_lsn > 0 && last_lsn <= BAL_JOURNAL_LSN_MAX);
    *what = "begin batch";
    int rc = bal_journal_step_done(journal->begin_write);
    if (rc != SQLITE_OK) return rc;
    *what = "read position";
    uint64_t position = 0;
    rc = bal_journal_read_position(journal, shard, &position);
    if (rc != SQLITE_OK) return rc;
    if (last_lsn <= position) {
        /* Stored already: a replayed batch. Nothing was written, so it ends in a rollback. */
        outcome->skipped = true;
        *what = "end skipped batch";
        return bal_journal_step_done(journal->rollback);
    }
    *what = "read open index run";
    rc = bal_journal_read_open_run(journal);
    if (rc != SQLITE_OK) return rc;
    *what = "insert rows";
    rc = bal_journal_insert_rows(journal, rows, row_count, kept, outcome);
    if (rc != SQLITE_OK) return rc;
    *what = "count index run rows";
    bool sealed = false;
    rc = bal_journal_count_run_rows(journal, outcome->rows_inserted, &sealed);
    if (rc != SQLITE_OK) return rc;
    *what = "merge index runs";
    rc = bal_journal_runs_upkeep(journal, outcome->rows_inserted, sealed);
    if (rc != SQLITE_OK) return rc;
    *what = "store position";
    rc = sqlite3_bind_int64(journal->position_set, 1, shard);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(journal->position_set, 2, (int64_t)last_lsn);
    if (rc == SQLITE_OK) rc = bal_journal_step_done(journal->position_set);
    if (rc != SQLITE_OK) return rc;
    *what = "commit batch";
    return bal_journal_step_done(journal->commit);
}

uint64_t bal_journal_merge_count(const bal_journal *journal) {
    assert(journal != NULL);
    return journal->merge_count;
}

void bal_journal_set_runs_for_testing(bal_journal *journal, int64_t rows_per_run, int64_t runs_per_merge,
                                      int64_t merge_step) {
    assert(journal != NULL && rows_per_run >= 1 && runs_per_merge >= 2 && merge_step >= 0);
    assert(runs_per_merge <= BAL_JOURNAL_RUNS_PER_MERGE_MAX);
    journal->run_rows_max = rows_per_run;
    journal->runs_per_merge = runs_per_merge;
    journal->merge_step = merge_step;
}

/* The writer's own descriptor of its -wal (which 0) or database (which 1) file, opened on
 * first use and kept until bal_journal_close: closing a descriptor of a file drops every
 * POSIX lock this process holds on it, SQLite's included, so none is closed while SQLite
 * has the file open. -1 (errno set) if it cannot be opened yet, e.g. the -wal file before
 * the first commit. */
static int bal_journal_file_fd(bal_journal *journal, int which) {
    assert(journal != NULL && !journal->read_only && (which == 0 || which == 1));
    if (journal->writeback_fds[which] >= 0) return journal->writeback_fds[which];
    const char *database = sqlite3_db_filename(journal->db, "main");
    assert(database != NULL && database[0] != '\0');
    const char *path = which == 0 ? sqlite3_filename_wal(database) : database;
    journal->writeback_fds[which] = open(path, O_RDONLY | O_CLOEXEC);
    return journal->writeback_fds[which];
}

/* Starts writing a committed batch's pages to the disk without waiting for them to get
 * there (Linux sync_file_range, SYNC_FILE_RANGE_WRITE, over both files: only their dirty
 * pages are visited; the call itself may block while the device's queue is full, which
 * holds up only this writer). Durability is unchanged -- that is still bal_journal_sync's -- but the pages
 * leave in steady pieces, one batch at a time. Left to the kernel, they accumulated for
 * seconds and then went out in bursts of hundreds of megabytes, and every fdatasync of the
 * service's log, which must wait for the device's queue and cache flush, waited behind
 * them: 100-500 ms stalls, the p99 of an open-loop load at a sixth of the maximum rate at
 * ~100 ms; with this, 10-20 ms (docs/benchmarks.md). Best effort: a descriptor that cannot
 * be opened (the -wal file before the first commit) is tried again after the next batch. */
static void bal_journal_start_writeback(bal_journal *journal) {
#ifdef SYNC_FILE_RANGE_WRITE
    const char *database = sqlite3_db_filename(journal->db, "main");
    if (database == NULL || database[0] == '\0') return; /* in memory: nothing to write */
    for (int i = 0; i < 2; i++) {
        int fd = bal_journal_file_fd(journal, i);
        if (fd >= 0) (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
    }
    journal->writeback_count++;
#else
    (void)journal;
#endif
}

uint64_t bal_journal_writeback_count(const bal_journal *journal) {
    assert(journal != NULL);
    return journal->writeback_count;
}

bal_journal_status bal_journal_write_batch(bal_journal *journal, uint32_t shard,
                                           const bal_journal_row *rows, size_t row_count,
                                           uint64_t last_lsn, bal_journal_write_outcome *outcome_out,
                                           char *errstr, size_t errstr_size) {
    assert(journal != NULL && !journal->read_only);
    assert(sqlite3_get_autocommit(journal->db)); /* no transaction left open by a previous call */
    bal_journal_write_outcome outcome = {0};
    if (outcome_out != NULL) *outcome_out = outcome;
    bal_journal_status status = bal_journal_check_batch(shard, rows, row_count, last_lsn, errstr, errstr_size);
    if (status != BAL_JOURNAL_OK) return status;
    /* Ordered before the write lock is taken; a skipped batch wastes only this sort. */
    if (!bal_journal_reserve_order(journal, row_count)) {
        bal_journal_describe(errstr, errstr_size, "out of memory ordering a batch of %zu rows", row_count);
        return BAL_JOURNAL_NO_MEMORY;
    }
    size_t kept = bal_journal_order_batch(rows, row_count, journal->order, journal->order_scratch);

    const char *what = NULL;
    int rc = bal_journal_write_transaction(journal, shard, rows, row_count, kept, last_lsn, &outcome, &what);
    if (rc != SQLITE_OK) {
        status = bal_journal_sqlite_failure(journal, rc, what, errstr, errstr_size);
        bal_journal_abandon(journal);
        journal->merges_pending = 0; /* rolled back with the batch */
        journal->entry_count[0] = journal->entry_count[1] = 0;
        return status;
    }
    assert(sqlite3_get_autocommit(journal->db));
    if (outcome_out != NULL) *outcome_out = outcome;
    journal->merge_count += journal->merges_pending;
    journal->merges_pending = 0;
    if (!outcome.skipped) bal_journal_start_writeback(journal); /* a replay wrote nothing */
    return BAL_JOURNAL_OK;
}

bal_journal_status bal_journal_checkpoint(bal_journal *journal, char *errstr, size_t errstr_size) {
    assert(journal != NULL && !journal->read_only);
    assert(sqlite3_get_autocommit(journal->db));
    /* FULL waits (through the busy handler) until no reader holds an older snapshot, then
     * copies every frame into the database and syncs it. */
    int log_frames = 0, checkpointed_frames = 0;
    int rc = sqlite3_wal_checkpoint_v2(journal->db, NULL, SQLITE_CHECKPOINT_FULL, &log_frames,
                                       &checkpointed_frames);
    if (rc != SQLITE_OK) return bal_journal_sqlite_failure(journal, rc, "checkpoint", errstr, errstr_size);
    assert(log_frames == checkpointed_frames);
    return BAL_JOURNAL_OK;
}

/* fdatasync()s the writer's -wal (which 0; a missing one is fine) or database file. */
static bal_journal_status bal_journal_sync_file(bal_journal *journal, int which, char *errstr, size_t errstr_size) {
    int fd = bal_journal_file_fd(journal, which);
    if (fd < 0 && errno == ENOENT && which == 0) return BAL_JOURNAL_OK;
    if (fd < 0 || fdatasync(fd) != 0) {
        int error = errno;
        const char *database = sqlite3_db_filename(journal->db, "main");
        bal_journal_describe(errstr, errstr_size, "sync %s: %s", which == 0 ? sqlite3_filename_wal(database) : database,
                             strerror(error));
        return BAL_JOURNAL_STORAGE;
    }
    return BAL_JOURNAL_OK;
}

/* fsync()s the directory at path (no SQLite lock lives on a directory: opened and closed). */
static bal_journal_status bal_journal_sync_directory(const char *path, char *errstr, size_t errstr_size) {
    assert(path != NULL && path[0] != '\0');
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_DIRECTORY);
    int result = fd < 0 ? -1 : fsync(fd);
    int error = errno;
    if (fd >= 0) close(fd);
    if (result != 0) {
        bal_journal_describe(errstr, errstr_size, "sync %s: %s", path, strerror(error));
        return BAL_JOURNAL_STORAGE;
    }
    return BAL_JOURNAL_OK;
}

/*
 * Why syncing the files is enough: a committed transaction is a run of frames ending in a
 * commit frame in the -wal file, and recovery after a power loss rebuilds everything from
 * the -wal file and the database file. So once both files (and the directory holding the
 * -wal file's name) are on disk, every commit made before is durable, whether or not it
 * has been checkpointed; no reader is waited for.
 */
bal_journal_status bal_journal_sync(bal_journal *journal, char *errstr, size_t errstr_size) {
    assert(journal != NULL && !journal->read_only);
    assert(sqlite3_get_autocommit(journal->db));
    sqlite3_filename database = sqlite3_db_filename(journal->db, "main");
    assert(database != NULL && database[0] != '\0'); /* opened from a file path */
    char directory[BAL_JOURNAL_PATH_LENGTH_MAX + 1];
    size_t length = strlen(database); /* SQLite's absolute form of the path opened */
    if (length > BAL_JOURNAL_PATH_LENGTH_MAX) {
        bal_journal_describe(errstr, errstr_size, "journal path longer than %d bytes", BAL_JOURNAL_PATH_LENGTH_MAX);
        return BAL_JOURNAL_STORAGE;
    }
    memcpy(directory, database, length);
    directory[length] = '\0';
    char *slash = strrchr(directory, '/');
    if (slash == directory) slash[1] = '\0';  /* a file in / */
    else if (slash != NULL) *slash = '\0';
    else strcpy(directory, ".");

    /* The -wal file exists while the writer is open and has written; without it every
     * commit is already in the database file. */
    bal_journal_status status = bal_journal_sync_file(journal, 0, errstr, errstr_size);
    if (status == BAL_JOURNAL_OK) status = bal_journal_sync_file(journal, 1, errstr, errstr_size);
    if (status == BAL_JOURNAL_OK) status = bal_journal_sync_directory(directory, errstr, errstr_size);
    return status;
}
