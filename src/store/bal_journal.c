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

#include "bal_journal_internal.h"

/* STRICT tables arrived in SQLite 3.37.0. */
#define BAL_JOURNAL_SQLITE_VERSION_MIN 3037000
/* Pages in the WAL before the writer's commit checkpoints them into the database (4 KiB
 * pages: 16 MiB), and the size the WAL file is cut back to afterwards. Larger than
 * SQLite's default of 1000 pages so that large batches do not checkpoint on every commit. */
#define BAL_JOURNAL_WAL_AUTOCHECKPOINT_PAGES 4096
#define BAL_JOURNAL_WAL_SIZE_LIMIT_BYTES (64 * 1024 * 1024)

/*
 * Migration steps: step i takes a file from user_version i to i + 1. Never edit a step
 * that has shipped; append a new one and raise BAL_JOURNAL_SCHEMA_VERSION.
 *
 * journal: keyed (shard, sequence, leg) -- the log's own order, so replays collide with
 * what is stored instead of duplicating it. WITHOUT ROWID keeps rows in that key order
 * (a shard's rows append) and saves the separate key index a rowid table would need.
 * Indexes: look-up by transaction id only needs each transaction's leg 0 (a partial index:
 * an EVENT's other legs cost nothing there); history needs (account, sequence, leg) newest
 * first, and the same per currency.
 */
static const char *const bal_journal_migrations[BAL_JOURNAL_SCHEMA_VERSION] = {
    "CREATE TABLE journal ("
    "  shard INTEGER NOT NULL CHECK (shard >= 0),"
    "  sequence INTEGER NOT NULL CHECK (sequence >= 0),"
    "  leg INTEGER NOT NULL CHECK (leg >= 0),"
    "  transaction_id TEXT NOT NULL,"
    "  type TEXT NOT NULL CHECK (type IN ('DEPOSIT', 'WITHDRAW', 'FREEZE', 'UNFREEZE',"
    "                                     'DEDUCT_FROZEN', 'TRANSFER', 'EVENT')),"
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
    "CREATE INDEX journal_by_transaction ON journal (transaction_id);"
    "CREATE INDEX journal_by_account ON journal (account_id, sequence, leg);"
    "CREATE INDEX journal_by_account_currency ON journal (account_id, currency, sequence, leg);"
    "CREATE TABLE persist_position ("
    "  shard INTEGER PRIMARY KEY,"
    "  lsn INTEGER NOT NULL CHECK (lsn >= 0)"
    ") STRICT;",
};

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

/* Runs "PRAGMA name" (or any one-integer query) into *value_out. */
static int bal_journal_query_int(sqlite3 *db, const char *sql, int64_t *value_out) {
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
        snprintf(sql, sizeof sql,
                 "PRAGMA synchronous = %s; PRAGMA wal_autocheckpoint = %d; PRAGMA journal_size_limit = %d;",
                 options->synchronous_full ? "FULL" : "NORMAL", BAL_JOURNAL_WAL_AUTOCHECKPOINT_PAGES,
                 BAL_JOURNAL_WAL_SIZE_LIMIT_BYTES);
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
        rc = bal_journal_prepare(journal,
                                 "INSERT OR IGNORE INTO journal (" BAL_JOURNAL_COLUMNS ") VALUES "
                                 "(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, "
                                 "?15, ?16, ?17, ?18, ?19, ?20)",
                                 &journal->insert_row);
    }
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
    if (journal == NULL || lookup_ids == NULL) {
        free(journal);
        free(lookup_ids);
        bal_journal_describe(errstr, errstr_size, "out of memory opening the journal");
        return BAL_JOURNAL_NO_MEMORY;
    }
    journal->lookup_ids = lookup_ids;
    journal->read_only = options->read_only;
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
    free(journal->lookup_ids);
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

/* Binds an amount as canonical text into the handle's scratch slot (or NULL if absent). */
static int bal_journal_bind_amount(bal_journal *journal, int column, int slot, bal_amount amount,
                                   bool present) {
    assert(slot >= 0 && slot < BAL_JOURNAL_ROW_AMOUNTS);
    assert(column >= 0 && column < BAL_JOURNAL_COLUMN_COUNT);
    if (!present) return sqlite3_bind_null(journal->insert_row, column + 1);
    size_t length = bal_money_format(amount, journal->amount_text[slot]);
    return sqlite3_bind_text(journal->insert_row, column + 1, journal->amount_text[slot], (int)length,
                             SQLITE_STATIC);
}

/* Binds a checked row to the insert statement. Texts are bound SQLITE_STATIC: the row and
 * the scratch buffers outlive the step that reads them. */
static int bal_journal_bind_row(bal_journal *journal, const bal_journal_row *row) {
    assert(journal != NULL && row != NULL);
    sqlite3_stmt *s = journal->insert_row;
    bool event = row->type == BAL_JOURNAL_TYPE_EVENT;
    int rc = SQLITE_OK;
#define BAL_JOURNAL_BIND(call) \
    do { if (rc == SQLITE_OK) rc = (call); } while (0)
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_SHARD + 1, row->shard));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_SEQUENCE + 1, (int64_t)row->sequence));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_LEG + 1, row->leg));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, BAL_JOURNAL_COLUMN_TRANSACTION_ID + 1, row->transaction_id, -1,
                                       SQLITE_STATIC));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, BAL_JOURNAL_COLUMN_TYPE + 1, bal_journal_type_name(row->type), -1,
                                       SQLITE_STATIC));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_ACCOUNT_ID + 1,
                                        bal_journal_account_to_sql(row->account_id)));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, BAL_JOURNAL_COLUMN_CURRENCY + 1, row->currency, -1, SQLITE_STATIC));
    BAL_JOURNAL_BIND(bal_journal_bind_amount(journal, BAL_JOURNAL_COLUMN_AMOUNT, 0, row->amount, !event));
    if (row->type == BAL_JOURNAL_TYPE_TRANSFER) {
        BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_TO_ACCOUNT_ID + 1,
                                            bal_journal_account_to_sql(row->to_account_id)));
    } else {
        BAL_JOURNAL_BIND(sqlite3_bind_null(s, BAL_JOURNAL_COLUMN_TO_ACCOUNT_ID + 1));
    }
    BAL_JOURNAL_BIND(bal_journal_bind_amount(journal, BAL_JOURNAL_COLUMN_LEG_AVAILABLE_DELTA, 1,
                                             row->leg_available_delta, event));
    BAL_JOURNAL_BIND(bal_journal_bind_amount(journal, BAL_JOURNAL_COLUMN_LEG_FROZEN_DELTA, 2,
                                             row->leg_frozen_delta, event));
    BAL_JOURNAL_BIND(sqlite3_bind_text(s, BAL_JOURNAL_COLUMN_RESULT + 1, row->result, -1, SQLITE_STATIC));
    BAL_JOURNAL_BIND(sqlite3_bind_int64(s, BAL_JOURNAL_COLUMN_TIME_MS + 1, row->time_ms));
    if (row->has_memo) {
        BAL_JOURNAL_BIND(sqlite3_bind_text(s, BAL_JOURNAL_COLUMN_MEMO + 1, row->memo, row->memo_length,
                                           SQLITE_STATIC));
    } else {
        BAL_JOURNAL_BIND(sqlite3_bind_null(s, BAL_JOURNAL_COLUMN_MEMO + 1));
    }
    _Static_assert(BAL_JOURNAL_COLUMN_FROZEN_DELTA == BAL_JOURNAL_COLUMN_AVAILABLE_BEFORE + 5,
                   "the six balance columns are contiguous");
    const bal_amount balances[6] = {row->available_before, row->available_after, row->frozen_before,
                                     row->frozen_after, row->available_delta, row->frozen_delta};
    for (int i = 0; i < 6; i++) {
        BAL_JOURNAL_BIND(bal_journal_bind_amount(journal, BAL_JOURNAL_COLUMN_AVAILABLE_BEFORE + i, 3 + i,
                                                 balances[i], true));
    }
#undef BAL_JOURNAL_BIND
    return rc;
}

/* Inserts the rows inside the open transaction, counting fresh and already-present keys. */
static int bal_journal_insert_rows(bal_journal *journal, const bal_journal_row *rows, size_t row_count,
                                   bal_journal_write_outcome *outcome) {
    assert(journal != NULL && outcome != NULL);
    assert(!sqlite3_get_autocommit(journal->db));
    for (size_t i = 0; i < row_count; i++) {
        int rc = bal_journal_bind_row(journal, &rows[i]);
        if (rc == SQLITE_OK) rc = bal_journal_step_done(journal->insert_row);
        if (rc != SQLITE_OK) return rc;
        if (sqlite3_changes(journal->db) == 1) outcome->rows_inserted++;
        else outcome->rows_ignored++;
    }
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

/* The batch between BEGIN IMMEDIATE and COMMIT; *what names the step that failed. The
 * write lock is taken before the position is read, so no other writer can move it between
 * the check and the commit. */
static int bal_journal_write_transaction(bal_journal *journal, uint32_t shard, const bal_journal_row *rows,
                                         size_t row_count, uint64_t last_lsn,
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
    *what = "insert rows";
    rc = bal_journal_insert_rows(journal, rows, row_count, outcome);
    if (rc != SQLITE_OK) return rc;
    *what = "store position";
    rc = sqlite3_bind_int64(journal->position_set, 1, shard);
    if (rc == SQLITE_OK) rc = sqlite3_bind_int64(journal->position_set, 2, (int64_t)last_lsn);
    if (rc == SQLITE_OK) rc = bal_journal_step_done(journal->position_set);
    if (rc != SQLITE_OK) return rc;
    *what = "commit batch";
    return bal_journal_step_done(journal->commit);
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

    const char *what = NULL;
    int rc = bal_journal_write_transaction(journal, shard, rows, row_count, last_lsn, &outcome, &what);
    if (rc != SQLITE_OK) {
        status = bal_journal_sqlite_failure(journal, rc, what, errstr, errstr_size);
        bal_journal_abandon(journal);
        return status;
    }
    assert(sqlite3_get_autocommit(journal->db));
    if (outcome_out != NULL) *outcome_out = outcome;
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

/* fdatasync()s the file (or the directory) at path; a missing file is fine when allowed. */
static bal_journal_status bal_journal_sync_path(const char *path, bool directory, bool may_be_missing,
                                                char *errstr, size_t errstr_size) {
    assert(path != NULL && path[0] != '\0');
    int fd = open(path, O_RDONLY | O_CLOEXEC | (directory ? O_DIRECTORY : 0));
    if (fd < 0 && errno == ENOENT && may_be_missing) return BAL_JOURNAL_OK;
    int result = fd < 0 ? -1 : (directory ? fsync(fd) : fdatasync(fd));
    int error = errno;
    if (fd >= 0) close(fd);
    if (result != 0) {
        bal_journal_describe(errstr, errstr_size, "sync %s: %s", path, strerror(error));
        return BAL_JOURNAL_STORAGE;
    }
    assert(fd >= 0);
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
    bal_journal_status status = bal_journal_sync_path(sqlite3_filename_wal(database), false, true, errstr, errstr_size);
    if (status == BAL_JOURNAL_OK) status = bal_journal_sync_path(database, false, false, errstr, errstr_size);
    if (status == BAL_JOURNAL_OK) status = bal_journal_sync_path(directory, true, false, errstr, errstr_size);
    return status;
}
