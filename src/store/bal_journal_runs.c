/*
 * bal_journal_runs.c -- the writer's upkeep of the index runs (bal_journal.h, Indexes):
 * sealing the open run, starting merges and moving each merge a step further, all inside
 * the transaction of the batch that pays for it.
 *
 * A merge of level k takes the sealed runs of level k that are neither being merged nor
 * still receiving a merge's entries (the oldest BAL_JOURNAL_MERGE_SOURCES_MAX of them),
 * marks them with the number of a new, empty run of level k + 1 (merging_into) and from
 * then on, in every batch, moves the smallest keys of its sources into that run: one
 * INSERT of a k-way merge (a compound SELECT whose arms each read one source in key order,
 * so no sorter is needed), then one range DELETE per source up to the last key moved. An
 * entry is in exactly one run at every commit, so readers, who visit every run, see each
 * entry once whether a merge is under way or not. When the sources are empty their catalog
 * rows go and the target is an ordinary run.
 */
#include <assert.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "bal_journal_internal.h"

/* Sources of one merge, at most: a level whose merges fell behind catches up in steps of
 * this many runs (the compound SELECT has one arm per source; SQLite allows 500). */
#define BAL_JOURNAL_MERGE_SOURCES_MAX (2 * BAL_JOURNAL_RUNS_PER_MERGE_MAX)
_Static_assert(BAL_JOURNAL_RUNS_PER_MERGE <= BAL_JOURNAL_RUNS_PER_MERGE_MAX, "a merge's sources fit");
/* Entries a merge moves per index and batch, at least (a trickle of small batches still
 * finishes a merge) ... */
#define BAL_JOURNAL_MERGE_STEP_MIN 512
/* ... and per row the batch inserted: every level's merge must move entries faster than
 * entries arrive at that level, which is at most one per row and index. */
#define BAL_JOURNAL_MERGE_STEP_PER_ROW 2
/* A key as SQL text: "(" and up to four 20-digit signed integers with separators, ")". */
#define BAL_JOURNAL_RUN_KEY_TEXT_BYTES 128
/* Longest statement text: a compound SELECT of BAL_JOURNAL_MERGE_SOURCES_MAX arms. */
#define BAL_JOURNAL_MERGE_SQL_BYTES_MAX (512 + BAL_JOURNAL_MERGE_SOURCES_MAX * 160)

_Static_assert(BAL_JOURNAL_MERGE_SOURCES_MAX <= 500, "within SQLite's compound SELECT limit");

/* One index table as the merge sees it: its key after the run number. */
typedef struct bal_journal_index_table {
    const char *name;
    const char *key;      /* "a, b, c" */
    const char *key_desc; /* "a DESC, b DESC, c DESC" */
    const char *order;    /* "1, 2, 3": the key's positions in SELECT <key> */
    int key_columns;
} bal_journal_index_table;

static const bal_journal_index_table bal_journal_index_tables[2] = {
    {"journal_by_transaction_run", "transaction_hash, shard, sequence",
     "transaction_hash DESC, shard DESC, sequence DESC", "2, 3, 4", 3},
    {"journal_by_account_run", "account_id, sequence, leg, shard",
     "account_id DESC, sequence DESC, leg DESC, shard DESC", "2, 3, 4, 5", 4},
};

/* A statement being written: text[0 .. length) of capacity bytes. */
typedef struct bal_journal_sql {
    char *text;
    size_t length;
    size_t capacity;
} bal_journal_sql;

/* Appends formatted text; false if it does not fit (the text is then unusable). */
__attribute__((format(printf, 2, 3)))
static bool bal_journal_sql_append(bal_journal_sql *sql, const char *format, ...) {
    assert(sql->length < sql->capacity);
    va_list arguments;
    va_start(arguments, format);
    int written = vsnprintf(sql->text + sql->length, sql->capacity - sql->length, format, arguments);
    va_end(arguments);
    if (written < 0 || (size_t)written >= sql->capacity - sql->length) return false;
    sql->length += (size_t)written;
    return true;
}

/* Runs one statement text with no result rows. */
static int bal_journal_exec(bal_journal *journal, const char *sql) {
    return sqlite3_exec(journal->db, sql, NULL, NULL, NULL);
}

/* Reads the run numbers a statement returns into runs (and resets it); *count_out how
 * many. More than capacity cannot happen in a catalog the writer kept (a merge has at most
 * BAL_JOURNAL_MERGE_SOURCES_MAX sources, at most one merge per level is under way), so it
 * is reported as corruption rather than cut short. */
static int bal_journal_step_runs(sqlite3_stmt *statement, int64_t *runs, size_t capacity, size_t *count_out) {
    *count_out = 0;
    int rc;
    while ((rc = sqlite3_step(statement)) == SQLITE_ROW) {
        if (*count_out == capacity) {
            rc = SQLITE_CORRUPT;
            break;
        }
        runs[(*count_out)++] = sqlite3_column_int64(statement, 0);
    }
    sqlite3_reset(statement);
    return rc == SQLITE_DONE ? SQLITE_OK : rc;
}

/* The same for a statement text, prepared for this one use. */
static int bal_journal_query_runs(bal_journal *journal, const char *sql, int64_t *runs, size_t capacity,
                                  size_t *count_out) {
    sqlite3_stmt *statement = NULL;
    *count_out = 0;
    int rc = sqlite3_prepare_v2(journal->db, sql, -1, &statement, NULL);
    if (rc == SQLITE_OK) rc = bal_journal_step_runs(statement, runs, capacity, count_out);
    sqlite3_finalize(statement);
    return rc;
}

/* Appends "(s1, s2, ...)". */
static bool bal_journal_sql_runs(bal_journal_sql *sql, const int64_t *runs, size_t count) {
    bool ok = bal_journal_sql_append(sql, "(");
    for (size_t i = 0; i < count && ok; i++) ok = bal_journal_sql_append(sql, "%s%" PRId64, i ? ", " : "", runs[i]);
    return ok && bal_journal_sql_append(sql, ")");
}

/* The target's largest key of table as SQL text "(k1, k2, ...)" into text; *found_out false
 * if the target has no entry there. */
static int bal_journal_target_top(bal_journal *journal, const bal_journal_index_table *table, int64_t target,
                                  char text[BAL_JOURNAL_RUN_KEY_TEXT_BYTES], bool *found_out) {
    char sql[256];
    *found_out = false;
    snprintf(sql, sizeof sql, "SELECT %s FROM %s WHERE run = %" PRId64 " ORDER BY %s LIMIT 1", table->key, table->name,
             target, table->key_desc);
    sqlite3_stmt *statement = NULL;
    int rc = sqlite3_prepare_v2(journal->db, sql, -1, &statement, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(statement);
    if (rc == SQLITE_ROW) {
        bal_journal_sql key = {text, 0, BAL_JOURNAL_RUN_KEY_TEXT_BYTES};
        bool ok = bal_journal_sql_append(&key, "(");
        for (int c = 0; c < table->key_columns && ok; c++) {
            ok = sqlite3_column_type(statement, c) == SQLITE_INTEGER &&
                 bal_journal_sql_append(&key, "%s%" PRId64, c ? ", " : "", (int64_t)sqlite3_column_int64(statement, c));
        }
        rc = ok && bal_journal_sql_append(&key, ")") ? SQLITE_OK : SQLITE_CORRUPT;
        *found_out = rc == SQLITE_OK;
    } else if (rc == SQLITE_DONE) {
        rc = SQLITE_OK;
    }
    sqlite3_finalize(statement);
    return rc;
}

/* Moves up to step of the smallest keys of table from the sources into target. */
static int bal_journal_merge_move(bal_journal *journal, const bal_journal_index_table *table, int64_t target,
                                  const int64_t *sources, size_t source_count, int64_t step) {
    char text[BAL_JOURNAL_MERGE_SQL_BYTES_MAX];
    bal_journal_sql sql = {text, 0, sizeof text};
    /* INSERT OR IGNORE: two heads of one (shard, sequence), which only a writer that split a
     * log position over two calls leaves, can share an id-index key; one entry leads to all
     * the rows of that position, so the second is dropped. */
    bool ok = bal_journal_sql_append(&sql, "INSERT OR IGNORE INTO %s (run, %s) SELECT * FROM (", table->name,
                                     table->key);
    for (size_t i = 0; i < source_count && ok; i++) {
        ok = bal_journal_sql_append(&sql, "%sSELECT %" PRId64 ", %s FROM %s WHERE run = %" PRId64,
                                    i ? " UNION ALL " : "", target, table->key, table->name, sources[i]);
    }
    ok = ok && bal_journal_sql_append(&sql, " ORDER BY %s LIMIT %" PRId64 ")", table->order, step);
    if (!ok) return SQLITE_TOOBIG;
    int rc = bal_journal_exec(journal, text);
    if (rc != SQLITE_OK) return rc;
    /* Everything up to the target's largest key has moved (or was a dropped twin): delete
     * it from every source. The bound goes into the statement as numbers, not as a
     * subquery: with a subquery SQLite 3.40 seeks on the key's first column only, and
     * every step would walk all the remaining entries of the account at the boundary --
     * for a busy account, a cost that grows with the square of its entries. */
    char top[BAL_JOURNAL_RUN_KEY_TEXT_BYTES];
    bool found = false;
    rc = bal_journal_target_top(journal, table, target, top, &found);
    if (rc != SQLITE_OK || !found) return rc; /* an empty target: nothing has moved */
    sql.length = 0;
    ok = bal_journal_sql_append(&sql, "DELETE FROM %s WHERE run IN ", table->name) &&
         bal_journal_sql_runs(&sql, sources, source_count) && bal_journal_sql_append(&sql, " AND (%s) <= %s", table->key, top);
    if (!ok) return SQLITE_TOOBIG;
    return bal_journal_exec(journal, text);
}

/* One step of the merge into target; ends it once its sources are empty (*ended_out). */
static int bal_journal_merge_step(bal_journal *journal, int64_t target, int64_t step, bool *ended_out) {
    int64_t sources[BAL_JOURNAL_MERGE_SOURCES_MAX];
    size_t source_count = 0;
    char text[BAL_JOURNAL_MERGE_SQL_BYTES_MAX];
    snprintf(text, sizeof text, "SELECT run FROM journal_runs WHERE merging_into = %" PRId64 " ORDER BY run", target);
    int rc = bal_journal_query_runs(journal, text, sources, BAL_JOURNAL_MERGE_SOURCES_MAX, &source_count);
    if (rc != SQLITE_OK || source_count == 0) return rc;
    int64_t left = 0;
    for (int t = 0; t < 2 && rc == SQLITE_OK; t++) {
        rc = bal_journal_merge_move(journal, &bal_journal_index_tables[t], target, sources, source_count, step);
        if (rc != SQLITE_OK) break;
        bal_journal_sql sql = {text, 0, sizeof text};
        bool ok = bal_journal_sql_append(&sql, "SELECT EXISTS (SELECT 1 FROM %s WHERE run IN ",
                                         bal_journal_index_tables[t].name) &&
                  bal_journal_sql_runs(&sql, sources, source_count) && bal_journal_sql_append(&sql, ")");
        if (!ok) return SQLITE_TOOBIG;
        int64_t exists = 0;
        rc = bal_journal_query_int(journal->db, text, &exists);
        left += exists;
    }
    if (rc != SQLITE_OK || left > 0) return rc;
    snprintf(text, sizeof text, "DELETE FROM journal_runs WHERE merging_into = %" PRId64, target);
    rc = bal_journal_exec(journal, text);
    if (rc == SQLITE_OK) journal->merges_pending++; /* counted once the batch commits */
    *ended_out = rc == SQLITE_OK;
    return rc;
}

/* Starts a merge of level if it has runs_per_merge sealed runs free to merge and no merge
 * into level + 1 is under way. */
static int bal_journal_merge_start(bal_journal *journal, int64_t level, int64_t open_run) {
    char text[BAL_JOURNAL_MERGE_SQL_BYTES_MAX];
    int64_t busy = 0;
    snprintf(text, sizeof text,
             "SELECT EXISTS (SELECT 1 FROM journal_runs AS t WHERE t.level = %" PRId64
             " AND EXISTS (SELECT 1 FROM journal_runs AS s WHERE s.merging_into = t.run))", level + 1);
    int rc = bal_journal_query_int(journal->db, text, &busy);
    if (rc != SQLITE_OK || busy) return rc;
    int64_t sources[BAL_JOURNAL_MERGE_SOURCES_MAX];
    size_t source_count = 0;
    snprintf(text, sizeof text,
             "SELECT run FROM journal_runs AS c WHERE c.level = %" PRId64 " AND c.merging_into IS NULL AND c.run <> %" PRId64
             " AND NOT EXISTS (SELECT 1 FROM journal_runs AS s WHERE s.merging_into = c.run) ORDER BY run LIMIT %d",
             level, open_run, BAL_JOURNAL_MERGE_SOURCES_MAX);
    rc = bal_journal_query_runs(journal, text, sources, BAL_JOURNAL_MERGE_SOURCES_MAX, &source_count);
    if (rc != SQLITE_OK || (int64_t)source_count < journal->runs_per_merge) return rc;
    /* The target's number is the largest yet: among its level it is the newest run. */
    bal_journal_sql sql = {text, 0, sizeof text};
    bool ok = bal_journal_sql_append(&sql,
                                     "INSERT INTO journal_runs (run, level, rows) SELECT (SELECT max(run) + 1 FROM "
                                     "journal_runs), %" PRId64 ", sum(rows) FROM journal_runs WHERE run IN ",
                                     level + 1) &&
              bal_journal_sql_runs(&sql, sources, source_count) &&
              bal_journal_sql_append(&sql, "; UPDATE journal_runs SET merging_into = last_insert_rowid() WHERE run IN ") &&
              bal_journal_sql_runs(&sql, sources, source_count);
    if (!ok) return SQLITE_TOOBIG;
    return bal_journal_exec(journal, text);
}

int bal_journal_runs_upkeep(bal_journal *journal, int64_t rows_inserted, bool sealed) {
    assert(journal != NULL && !sqlite3_get_autocommit(journal->db));
    assert(rows_inserted >= 0);
    if (rows_inserted == 0) return SQLITE_OK;
    int64_t step = rows_inserted * BAL_JOURNAL_MERGE_STEP_PER_ROW;
    if (step < BAL_JOURNAL_MERGE_STEP_MIN) step = BAL_JOURNAL_MERGE_STEP_MIN;
    if (journal->merge_step > 0) step = journal->merge_step;
    /* The merges under way, one step each. */
    int64_t targets[BAL_JOURNAL_RUN_LEVEL_MIGRATED];
    size_t target_count = 0;
    int rc = bal_journal_step_runs(journal->merge_targets, targets, BAL_JOURNAL_RUN_LEVEL_MIGRATED, &target_count);
    bool ended = false;
    for (size_t i = 0; i < target_count && rc == SQLITE_OK; i++) {
        bool this_ended = false;
        rc = bal_journal_merge_step(journal, targets[i], step, &this_ended);
        ended |= this_ended;
    }
    /* New merges only when a level may have filled: a seal adds a run to level 0, and a
     * merge that ended adds one to its level and frees the level below to merge into it. */
    if (rc != SQLITE_OK || (!sealed && !ended)) return rc;
    int64_t top = 0;
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT coalesce(max(level), 0) FROM journal_runs WHERE level < %d",
             BAL_JOURNAL_RUN_LEVEL_MIGRATED);
    rc = bal_journal_query_int(journal->db, sql, &top);
    for (int64_t level = 0; level <= top && level + 1 < BAL_JOURNAL_RUN_LEVEL_MIGRATED && rc == SQLITE_OK; level++) {
        rc = bal_journal_merge_start(journal, level, journal->open_run);
    }
    return rc;
}
