/*
 * test_mariadb.c -- what the MySQL/MariaDB store adapter relies on, checked through
 * libmariadb against a real server (scripts/services.sh up starts one), in a throwaway
 * database <BALANCED_MYSQL_DATABASE>_test_<pid>_<time> that is dropped at the end.
 *
 *  1. Migrations: scripts/migrate.sh --apply-only applies every file of db/migrations to the
 *     empty database; a second run changes nothing; a new file is applied alone; an applied
 *     file that changed afterwards stops the run. The tables have the expected shape.
 *  2. Money: int128 amounts (src/core/bal_money.h) go into DECIMAL(36,18) columns and come
 *     back bit for bit: 0, 10^-18, 1, the maximum 999999999999999999.999999999999999999,
 *     negatives where a column allows them (deltas), and a few thousand random values of
 *     every length. Out-of-range values are refused by the server, not clamped, and the
 *     CHECK constraints refuse negative balances and inconsistent journal rows.
 *  3. The journal: a few thousand rows of a small simulated ledger (DEPOSIT, TRANSFER and
 *     EVENT legs) go in with multi-row prepared statements in one transaction; the sums of
 *     the deltas give the simulated balances; (transaction_id, leg_index) is unique and
 *     case-sensitive; a failing statement rolls the whole transaction back.
 *
 * Protocol choice. Writes use prepared statements (binary protocol): one statement of
 * JOURNAL_ROWS_PER_STATEMENT rows is parsed once and executed again and again, values need
 * no escaping (the memo is arbitrary bytes), and nothing the client sends can change the
 * statement. DECIMAL values travel as exact decimal text in both protocols, so the choice
 * costs nothing in precision. The same rows are also written once through the text protocol
 * (one multi-row INSERT with escaped literals) to compare the two, and the timings of both
 * are printed. Reads of aggregates use the text protocol for brevity; the money round trip
 * reads through a prepared statement with string result buffers.
 */
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mysql.h>
#include <mysqld_error.h>

#include "bal_itest.h"
#include "bal_money.h"

extern char **environ;

#define SQL_MODE                                                                               \
    "STRICT_ALL_TABLES,NO_ZERO_IN_DATE,NO_ZERO_DATE,ERROR_FOR_DIVISION_BY_ZERO,"               \
    "NO_ENGINE_SUBSTITUTION"
#define NAME_MAX_LENGTH 64
#define PATH_MAX_LENGTH 4096
#define SQL_TEXT_MAX 4096
#define RANDOM_VALUE_COUNT 3000
#define ROUND_TRIP_VALUE_MAX (64 + RANDOM_VALUE_COUNT)
#define JOURNAL_TRANSACTION_COUNT 1800
#define JOURNAL_ROWS_MAX (JOURNAL_TRANSACTION_COUNT * 3)
#define JOURNAL_ROWS_PER_STATEMENT 256
#define JOURNAL_COLUMN_COUNT 18
#define LEDGER_ACCOUNT_COUNT 50
#define LEDGER_CURRENCY_COUNT 3
/* MariaDB and MySQL number the CHECK violation differently. */
#define BAL_ER_CONSTRAINT_FAILED_MARIADB 4025
#define BAL_ER_CHECK_CONSTRAINT_VIOLATED_MYSQL 3819

static const char *host, *user, *password, *base_database;
static unsigned port;
static const char *migrate_script, *migrations_dir;
static char database[NAME_MAX_LENGTH + 1];
static char scratch_dir[PATH_MAX_LENGTH];
static MYSQL *connection;
static bool database_created;

/* --- connection and small query helpers --------------------------------------------------- */

static MYSQL *connect_to(const char *schema) {
    MYSQL *handle = mysql_init(NULL);
    REQUIRE(handle != NULL, "mysql_init: out of memory");
    unsigned timeout_s = 10;
    unsigned protocol = MYSQL_PROTOCOL_TCP;
    mysql_optionsv(handle, MYSQL_OPT_CONNECT_TIMEOUT, &timeout_s);
    mysql_optionsv(handle, MYSQL_OPT_PROTOCOL, &protocol);
    mysql_optionsv(handle, MYSQL_SET_CHARSET_NAME, "utf8mb4");
    /* The adapter fixes the session's rules instead of inheriting the server's defaults,
     * which differ between MySQL 8 and MariaDB. */
    mysql_optionsv(handle, MYSQL_INIT_COMMAND,
                   "SET SESSION sql_mode='" SQL_MODE "', time_zone='+00:00', "
                   "group_concat_max_len=1048576");
    /* The statement, not the variable: MariaDB 10.11 calls the variable tx_isolation, MySQL 8
     * transaction_isolation. READ COMMITTED avoids the gap locks that REPEATABLE READ takes
     * on batched upserts. */
    mysql_optionsv(handle, MYSQL_INIT_COMMAND,
                   "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED");
    if (mysql_real_connect(handle, host, user, password, schema, port, NULL, 0) == NULL) {
        bal_itest_fail(__FILE__, __LINE__, "mysql_real_connect",
                       "MariaDB: cannot connect to %s:%u as '%s'%s%s: %s (errno %u); start the "
                       "servers and create the user with scripts/services.sh up",
                       host, port, user, schema ? " to database " : "", schema ? schema : "",
                       mysql_error(handle), mysql_errno(handle));
    }
    return handle;
}

static void execute(const char *sql) {
    REQUIRE(mysql_query(connection, sql) == 0, "%s: %s", sql, mysql_error(connection));
}

/* Runs sql and returns the server's error number (0 on success), for statements that are
 * expected to fail. */
static unsigned execute_expecting_error(const char *sql) {
    if (mysql_query(connection, sql) == 0) {
        MYSQL_RES *result = mysql_store_result(connection);
        if (result != NULL) {
            mysql_free_result(result);
        }
        return 0;
    }
    return mysql_errno(connection);
}

/* The first column of the first row as text ("" for NULL or no row). */
static void query_text(const char *sql, char *out, size_t size) {
    execute(sql);
    MYSQL_RES *result = mysql_store_result(connection);
    REQUIRE(result != NULL, "%s: %s", sql, mysql_error(connection));
    MYSQL_ROW row = mysql_fetch_row(result);
    snprintf(out, size, "%s", (row != NULL && row[0] != NULL) ? row[0] : "");
    mysql_free_result(result);
}

static unsigned long long query_number(const char *sql) {
    char text[64];
    query_text(sql, text, sizeof text);
    char *end = NULL;
    unsigned long long value = strtoull(text, &end, 10);
    REQUIRE(end != text && *end == '\0', "%s: not a number: '%s'", sql, text);
    return value;
}

static bal_amount parse_signed(const char *text) {
    bal_amount amount = 0;
    bal_money_status status = bal_money_parse_signed(text, strlen(text), &amount);
    REQUIRE(status == BAL_MONEY_OK, "the server sent '%s', which is not money: %s", text,
            bal_money_status_name(status));
    return amount;
}

/* --- running scripts/migrate.sh ------------------------------------------------------------ */

static int run_migrate(const char *directory) {
    REQUIRE(setenv("BALANCED_MYSQL_DATABASE", database, 1) == 0, "setenv: %s", strerror(errno));
    REQUIRE(setenv("BALANCED_MIGRATIONS_DIR", directory, 1) == 0, "setenv: %s", strerror(errno));
    char *const arguments[] = {(char *)migrate_script, (char *)"--apply-only", NULL};
    /* Our buffered output must come before the script's, which goes straight to the fds. */
    fflush(NULL);
    pid_t child = 0;
    int spawn_error = posix_spawn(&child, migrate_script, NULL, NULL, arguments, environ);
    REQUIRE(spawn_error == 0, "cannot run %s: %s", migrate_script, strerror(spawn_error));
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child, "waitpid: %s", strerror(errno));
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128;
}

static bool is_migration_name(const char *name) {
    size_t length = strlen(name);
    if (length < 10 || strcmp(name + length - 4, ".sql") != 0 || name[4] != '_') {
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if (name[i] < '0' || name[i] > '9') {
            return false;
        }
    }
    return true;
}

static void copy_file(const char *from, const char *to, const char *appended) {
    size_t length = 0;
    char *text = bal_itest_read_file(from, &length);
    REQUIRE(text != NULL, "cannot read %s", from);
    FILE *out = fopen(to, "wb");
    REQUIRE(out != NULL, "cannot write %s: %s", to, strerror(errno));
    REQUIRE(fwrite(text, 1, length, out) == length, "write %s", to);
    if (appended != NULL) {
        fputs(appended, out);
    }
    REQUIRE(fclose(out) == 0, "close %s", to);
    free(text);
}

/* Copies the migrations into scratch_dir (emptied first), appending text to the file whose
 * name starts with changed_prefix; returns how many it copied. */
static size_t copy_migrations(const char *changed_prefix, const char *appended) {
    DIR *directory = opendir(migrations_dir);
    REQUIRE(directory != NULL, "cannot open %s: %s", migrations_dir, strerror(errno));
    size_t count = 0;
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        char from[PATH_MAX_LENGTH], to[PATH_MAX_LENGTH];
        if (!is_migration_name(entry->d_name)) {
            continue;
        }
        snprintf(from, sizeof from, "%s/%s", migrations_dir, entry->d_name);
        snprintf(to, sizeof to, "%s/%s", scratch_dir, entry->d_name);
        bool changed = changed_prefix != NULL &&
                       strncmp(entry->d_name, changed_prefix, strlen(changed_prefix)) == 0;
        copy_file(from, to, changed ? appended : NULL);
        count++;
    }
    closedir(directory);
    return count;
}

static void empty_scratch_dir(void) {
    DIR *directory = opendir(scratch_dir);
    if (directory == NULL) {
        return;
    }
    struct dirent *entry;
    while ((entry = readdir(directory)) != NULL) {
        if (entry->d_name[0] != '.') {
            char path[PATH_MAX_LENGTH];
            snprintf(path, sizeof path, "%s/%s", scratch_dir, entry->d_name);
            unlink(path);
        }
    }
    closedir(directory);
}

static void write_text_file(const char *path, const char *text) {
    FILE *out = fopen(path, "wb");
    REQUIRE(out != NULL, "cannot write %s: %s", path, strerror(errno));
    fputs(text, out);
    REQUIRE(fclose(out) == 0, "close %s", path);
}

/* "version:checksum:applied_at,..." -- changes whenever any migration is (re)applied. */
static void migration_fingerprint(char *out, size_t size) {
    query_text("SELECT GROUP_CONCAT(version, ':', checksum, ':', applied_at ORDER BY version) "
               "FROM schema_migrations",
               out, size);
}

static void check_schema_shape(void) {
    char sql[SQL_TEXT_MAX], text[SQL_TEXT_MAX];
    /* Compared as a count, because information_schema's collation orders '_' differently on
     * MySQL and MariaDB. */
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*), SUM(table_name IN ('accounts', 'account_balances', "
             "'balance_transactions', 'outbox_events', 'leader_locks', 'shard_offsets', "
             "'schema_migrations')) FROM information_schema.tables WHERE table_schema = '%s'",
             database);
    execute(sql);
    MYSQL_RES *tables = mysql_store_result(connection);
    MYSQL_ROW table_row = mysql_fetch_row(tables);
    CHECK_STR(table_row[0], "7");
    CHECK_STR(table_row[1], "7");
    mysql_free_result(tables);
    /* Every amount column is DECIMAL(36,18): two balances, and in the journal the amount,
     * four balances before and after, and two deltas. */
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*), SUM(numeric_precision = 36 AND numeric_scale = 18) FROM "
             "information_schema.columns WHERE table_schema = '%s' AND data_type = 'decimal'",
             database);
    execute(sql);
    MYSQL_RES *result = mysql_store_result(connection);
    MYSQL_ROW row = mysql_fetch_row(result);
    CHECK_STR(row[0], "9");
    CHECK_STR(row[1], "9");
    mysql_free_result(result);
    snprintf(sql, sizeof sql,
             "SELECT GROUP_CONCAT(table_name, '.', index_name, '(', columns, ')' ORDER BY "
             "table_name, index_name) FROM (SELECT table_name, index_name, "
             "GROUP_CONCAT(column_name ORDER BY seq_in_index) AS columns FROM "
             "information_schema.statistics WHERE table_schema = '%s' AND non_unique = 0 AND "
             "table_name IN ('account_balances', 'balance_transactions') GROUP BY table_name, "
             "index_name) AS unique_keys",
             database);
    query_text(sql, text, sizeof text);
    CHECK_STR(text, "account_balances.PRIMARY(account_id,currency_code),"
                    "balance_transactions.PRIMARY(id),"
                    "balance_transactions.uk_balance_transactions_leg(transaction_id,leg_index)");
}

static void check_migrations(void) {
    size_t file_count = copy_migrations(NULL, NULL);
    empty_scratch_dir();
    REQUIRE(file_count >= 4, "only %zu migration files in %s", file_count, migrations_dir);

    REQUIRE(run_migrate(migrations_dir) == 0, "migrate.sh failed on the empty database %s",
            database);
    CHECK(query_number("SELECT COUNT(*) FROM schema_migrations") == file_count);
    check_schema_shape();
    char before[SQL_TEXT_MAX], after[SQL_TEXT_MAX];
    migration_fingerprint(before, sizeof before);

    REQUIRE(run_migrate(migrations_dir) == 0, "the second migrate.sh run failed");
    migration_fingerprint(after, sizeof after);
    CHECK_STR(after, before);
    printf("mariadb: %zu migrations applied to the empty database %s; a second run changed "
           "nothing\n",
           file_count, database);

    /* A new migration is applied alone; the applied ones stay as they were. */
    copy_migrations(NULL, NULL);
    char path[PATH_MAX_LENGTH];
    snprintf(path, sizeof path, "%s/9999_probe.sql", scratch_dir);
    write_text_file(path, "CREATE TABLE IF NOT EXISTS migration_probe (id INT PRIMARY KEY);\n");
    REQUIRE(run_migrate(scratch_dir) == 0, "migrate.sh with a new migration failed");
    CHECK(query_number("SELECT COUNT(*) FROM schema_migrations") == file_count + 1);
    CHECK(query_number("SELECT COUNT(*) FROM migration_probe") == 0);
    char prefix[SQL_TEXT_MAX];
    migration_fingerprint(after, sizeof after);
    snprintf(prefix, sizeof prefix, "%s,9999:", before);
    CHECK(strncmp(after, prefix, strlen(prefix)) == 0);
    execute("DROP TABLE migration_probe");
    execute("DELETE FROM schema_migrations WHERE version = 9999");
    empty_scratch_dir();

    /* An applied migration that changed afterwards stops the run and changes nothing. */
    copy_migrations("0001_", "-- edited after it was applied\n");
    printf("mariadb: the next migrate.sh run must refuse an edited migration:\n");
    CHECK(run_migrate(scratch_dir) != 0);
    migration_fingerprint(after, sizeof after);
    CHECK_STR(after, before);
    empty_scratch_dir();
}

/* --- money round trips --------------------------------------------------------------------- */

static uint64_t random_state = 0x9e3779b97f4a7c15u;

static uint64_t random_next(void) {
    /* xorshift64*: deterministic, so a failure reproduces with the same values. */
    random_state ^= random_state >> 12;
    random_state ^= random_state << 25;
    random_state ^= random_state >> 27;
    return random_state * 0x2545f4914f6cdd1du;
}

/* A random amount in [0, BAL_MONEY_MAX] with a random number of digits, so that short and
 * long values are equally likely. */
static bal_amount random_amount(void) {
    unsigned digits = 1 + (unsigned)(random_next() % 36);
    bal_amount value = 0;
    for (unsigned i = 0; i < digits; i++) {
        value = value * 10 + (bal_amount)(random_next() % 10);
    }
    return value;
}

static size_t round_trip_values(bal_amount *values) {
    const bal_amount one = BAL_MONEY_ONE;
    const bal_amount edges[] = {
        0, 1, 2, 9, 10, one / 10 - 1, one - 1, one, one + 1, 10 * one,
        one * 1000000000 + 123456789, one * (one / 10), one * (one / 10) - 1,
        (bal_amount)123456789012345678 * one + 123456789012345678, BAL_MONEY_MAX / 2,
        BAL_MONEY_MAX - one, BAL_MONEY_MAX - 1, BAL_MONEY_MAX,
    };
    size_t count = 0;
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        values[count++] = edges[i];
    }
    for (size_t i = 0; i < RANDOM_VALUE_COUNT; i++) {
        values[count++] = random_amount();
    }
    REQUIRE(count <= ROUND_TRIP_VALUE_MAX, "%zu round-trip values", count);
    return count;
}

/* Binds a string parameter or result column. */
static void bind_text(MYSQL_BIND *bind, char *buffer, unsigned long *length, unsigned long size) {
    memset(bind, 0, sizeof *bind);
    bind->buffer_type = MYSQL_TYPE_STRING;
    bind->buffer = buffer;
    bind->buffer_length = size;
    bind->length = length;
}

static void check_balance_round_trip(const bal_amount *values, size_t count) {
    MYSQL_STMT *insert = mysql_stmt_init(connection);
    const char *insert_sql = "INSERT INTO account_balances (account_id, currency_code, available, "
                             "frozen, shard_id) VALUES (?, 'BTC', ?, ?, 0)";
    REQUIRE(mysql_stmt_prepare(insert, insert_sql, strlen(insert_sql)) == 0, "prepare: %s",
            mysql_stmt_error(insert));
    unsigned long long account_id = 0;
    char available[BAL_MONEY_TEXT_MAX + 1], frozen[BAL_MONEY_TEXT_MAX + 1];
    unsigned long available_length = 0, frozen_length = 0;
    MYSQL_BIND parameters[3];
    memset(parameters, 0, sizeof parameters);
    parameters[0].buffer_type = MYSQL_TYPE_LONGLONG;
    parameters[0].buffer = &account_id;
    parameters[0].is_unsigned = 1;
    bind_text(&parameters[1], available, &available_length, sizeof available);
    bind_text(&parameters[2], frozen, &frozen_length, sizeof frozen);
    REQUIRE(mysql_stmt_bind_param(insert, parameters) == 0, "bind: %s", mysql_stmt_error(insert));
    execute("START TRANSACTION");
    for (size_t i = 0; i < count; i++) {
        account_id = i + 1;
        /* available holds the value, frozen its complement: both ends of the range at once. */
        available_length = bal_money_format(values[i], available);
        frozen_length = bal_money_format(BAL_MONEY_MAX - values[i], frozen);
        REQUIRE(mysql_stmt_execute(insert) == 0, "insert %s: %s", available,
                mysql_stmt_error(insert));
    }
    execute("COMMIT");
    mysql_stmt_close(insert);

    MYSQL_STMT *select = mysql_stmt_init(connection);
    const char *select_sql = "SELECT account_id, available, frozen FROM account_balances WHERE "
                             "currency_code = 'BTC' ORDER BY account_id";
    REQUIRE(mysql_stmt_prepare(select, select_sql, strlen(select_sql)) == 0, "prepare: %s",
            mysql_stmt_error(select));
    REQUIRE(mysql_stmt_execute(select) == 0, "select: %s", mysql_stmt_error(select));
    MYSQL_BIND columns[3];
    memset(columns, 0, sizeof columns);
    columns[0].buffer_type = MYSQL_TYPE_LONGLONG;
    columns[0].buffer = &account_id;
    columns[0].is_unsigned = 1;
    bind_text(&columns[1], available, &available_length, sizeof available);
    bind_text(&columns[2], frozen, &frozen_length, sizeof frozen);
    REQUIRE(mysql_stmt_bind_result(select, columns) == 0, "bind: %s", mysql_stmt_error(select));
    size_t read = 0;
    int fetched;
    while ((fetched = mysql_stmt_fetch(select)) == 0) {
        REQUIRE(account_id == read + 1, "row for account %llu out of order", account_id);
        bal_amount expected = values[read];
        CHECK(parse_signed(available) == expected);
        CHECK(parse_signed(frozen) == BAL_MONEY_MAX - expected);
        read++;
    }
    REQUIRE(fetched == MYSQL_NO_DATA, "fetch: %d %s", fetched, mysql_stmt_error(select));
    CHECK(read == count);
    mysql_stmt_close(select);
}

/* Signed values through the journal's delta columns: every value v goes in as +v and -v,
 * with balances before and after chosen so that the CHECKs (after = before + delta, no
 * negative balance) hold. The row's sequence says which value it carries. */
static void check_delta_round_trip(const bal_amount *values, size_t count) {
    MYSQL_STMT *insert = mysql_stmt_init(connection);
    const char *insert_sql =
        "INSERT INTO balance_transactions (transaction_id, leg_index, type, account_id, "
        "currency_code, available_before, available_after, available_delta, frozen_before, "
        "frozen_after, frozen_delta, result, shard_id, sequence, log_offset, created_at) VALUES "
        "(CONCAT('delta-', ?), 0, 'EVENT', 1, 'BTC', ?, ?, ?, ?, ?, ?, 'ok', 0, ?, 0, "
        "'2024-01-01 00:00:00')";
    REQUIRE(mysql_stmt_prepare(insert, insert_sql, strlen(insert_sql)) == 0, "prepare: %s",
            mysql_stmt_error(insert));
    unsigned long long sequence = 0;
    char text[7][BAL_MONEY_TEXT_MAX + 1];
    unsigned long length[7];
    MYSQL_BIND parameters[8];
    memset(parameters, 0, sizeof parameters);
    for (size_t c = 0; c < 7; c++) {
        bind_text(&parameters[c], text[c], &length[c], sizeof text[c]);
    }
    parameters[7].buffer_type = MYSQL_TYPE_LONGLONG;
    parameters[7].buffer = &sequence;
    parameters[7].is_unsigned = 1;
    REQUIRE(mysql_stmt_bind_param(insert, parameters) == 0, "bind: %s", mysql_stmt_error(insert));
    execute("START TRANSACTION");
    for (size_t i = 0; i < 2 * count; i++) {
        bal_amount v = (i % 2 == 0) ? values[i / 2] : -values[i / 2];
        bal_amount positive_part = v > 0 ? v : 0, negative_part = v < 0 ? -v : 0;
        const bal_amount columns[6] = {negative_part, positive_part, v,
                                       positive_part, negative_part, -v};
        sequence = i;
        length[0] = (unsigned long)snprintf(text[0], sizeof text[0], "%zu", i);
        for (size_t c = 0; c < 6; c++) {
            length[c + 1] = bal_money_format(columns[c], text[c + 1]);
        }
        REQUIRE(mysql_stmt_execute(insert) == 0, "insert delta %s: %s", text[3],
                mysql_stmt_error(insert));
    }
    execute("COMMIT");
    mysql_stmt_close(insert);

    MYSQL_STMT *select = mysql_stmt_init(connection);
    const char *select_sql =
        "SELECT sequence, available_before, available_after, available_delta, frozen_before, "
        "frozen_after, frozen_delta FROM balance_transactions WHERE transaction_id LIKE "
        "'delta-%' ORDER BY sequence";
    REQUIRE(mysql_stmt_prepare(select, select_sql, strlen(select_sql)) == 0, "prepare: %s",
            mysql_stmt_error(select));
    REQUIRE(mysql_stmt_execute(select) == 0, "select: %s", mysql_stmt_error(select));
    MYSQL_BIND results[7];
    memset(results, 0, sizeof results);
    results[0].buffer_type = MYSQL_TYPE_LONGLONG;
    results[0].buffer = &sequence;
    results[0].is_unsigned = 1;
    for (size_t c = 1; c < 7; c++) {
        bind_text(&results[c], text[c], &length[c], sizeof text[c]);
    }
    REQUIRE(mysql_stmt_bind_result(select, results) == 0, "bind: %s", mysql_stmt_error(select));
    size_t read = 0;
    int fetched;
    while ((fetched = mysql_stmt_fetch(select)) == 0) {
        REQUIRE(sequence == read, "row %llu out of order", sequence);
        bal_amount v = (read % 2 == 0) ? values[read / 2] : -values[read / 2];
        bal_amount positive_part = v > 0 ? v : 0, negative_part = v < 0 ? -v : 0;
        CHECK(parse_signed(text[1]) == negative_part);
        CHECK(parse_signed(text[2]) == positive_part);
        CHECK(parse_signed(text[3]) == v);
        CHECK(parse_signed(text[4]) == positive_part);
        CHECK(parse_signed(text[5]) == negative_part);
        CHECK(parse_signed(text[6]) == -v);
        read++;
    }
    REQUIRE(fetched == MYSQL_NO_DATA, "fetch: %d %s", fetched, mysql_stmt_error(select));
    CHECK(read == 2 * count);
    mysql_stmt_close(select);
    char edge[128];
    query_text("SELECT available_delta FROM balance_transactions WHERE transaction_id = "
               "CONCAT('delta-', 2 * 17 + 1)",
               edge, sizeof edge);
    CHECK_STR(edge, "-999999999999999999.999999999999999999");
}

/* The text the server gives back for edge values: 18 fractional digits, always. */
static void check_server_text(void) {
    char text[128];
    query_text("SELECT available FROM account_balances WHERE account_id = 2", text, sizeof text);
    CHECK_STR(text, "0.000000000000000001");
    query_text("SELECT available FROM account_balances WHERE account_id = 1", text, sizeof text);
    CHECK_STR(text, "0.000000000000000000");
    query_text("SELECT frozen FROM account_balances WHERE account_id = 1", text, sizeof text);
    CHECK_STR(text, "999999999999999999.999999999999999999");
}

/* The server refuses what does not fit, in the session's strict mode, instead of clamping;
 * the CHECK constraints refuse negative balances and journal rows whose arithmetic is off. */
static void check_refusals(void) {
    unsigned err = execute_expecting_error(
        "INSERT INTO account_balances (account_id, currency_code, available, shard_id) "
        "VALUES (1000000, 'ETH', 1000000000000000000, 0)");
    CHECK(err == ER_WARN_DATA_OUT_OF_RANGE);
    err = execute_expecting_error(
        "INSERT INTO account_balances (account_id, currency_code, available, shard_id) "
        "VALUES (1000000, 'ETH', -0.000000000000000001, 0)");
    CHECK(err == BAL_ER_CONSTRAINT_FAILED_MARIADB || err == BAL_ER_CHECK_CONSTRAINT_VIOLATED_MYSQL);
    err = execute_expecting_error(
        "INSERT INTO balance_transactions (transaction_id, leg_index, type, account_id, "
        "currency_code, amount, available_before, available_after, frozen_before, frozen_after, "
        "available_delta, frozen_delta, result, shard_id, sequence, log_offset, created_at) "
        "VALUES ('bad-arithmetic', 0, 'DEPOSIT', 1, 'BTC', 1, 0, 2, 0, 0, 1, 0, 'ok', 0, 1, 0, "
        "'2024-01-01 00:00:00')");
    CHECK(err == BAL_ER_CONSTRAINT_FAILED_MARIADB || err == BAL_ER_CHECK_CONSTRAINT_VIOLATED_MYSQL);
    /* A 19th fractional digit is rounded away with only a note, even in strict mode: the
     * server does not protect against it, so the adapter must only send what
     * bal_money_format wrote (at most 18 fractional digits). */
    err = execute_expecting_error(
        "INSERT INTO account_balances (account_id, currency_code, available, shard_id) "
        "VALUES (1000001, 'ETH', 0.0000000000000000009, 0)");
    unsigned warnings = mysql_warning_count(connection);
    char text[128] = "(refused)";
    if (err == 0) {
        query_text("SELECT available FROM account_balances WHERE account_id = 1000001", text,
                   sizeof text);
        execute("DELETE FROM account_balances WHERE account_id = 1000001");
    }
    CHECK(err != 0 || warnings > 0);
    printf("mariadb: a 19th fractional digit: error %u, %u warning(s), stored %s\n", err,
           warnings, text);
}

/* --- the journal --------------------------------------------------------------------------- */

typedef struct journal_row {
    char transaction_id[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
    unsigned short leg_index;
    const char *type;
    unsigned long long account_id;
    char currency[BAL_CURRENCY_LENGTH_MAX + 1];
    bool has_amount;
    bal_amount amount;
    bal_amount available_before, available_after, frozen_before, frozen_after;
    bal_amount available_delta, frozen_delta;
    const char *result;
    unsigned shard_id;
    unsigned long long sequence;
    long long log_offset;
    MYSQL_TIME created_at;
    unsigned char memo[BAL_MEMO_LENGTH_MAX];
    unsigned long memo_length;
} journal_row;

static journal_row journal[JOURNAL_ROWS_MAX];
static size_t journal_count;
static bal_amount ledger_available[LEDGER_ACCOUNT_COUNT][LEDGER_CURRENCY_COUNT];
static const char *const ledger_currencies[LEDGER_CURRENCY_COUNT] = {"USDT", "BTC", "ETH"};

static journal_row *journal_add(const char *transaction_id, unsigned short leg, const char *type,
                                size_t account, size_t currency, bal_amount delta,
                                unsigned long long sequence) {
    REQUIRE(journal_count < JOURNAL_ROWS_MAX, "journal full");
    journal_row *row = &journal[journal_count++];
    memset(row, 0, sizeof *row);
    snprintf(row->transaction_id, sizeof row->transaction_id, "%s", transaction_id);
    row->leg_index = leg;
    row->type = type;
    row->account_id = account + 1;
    snprintf(row->currency, sizeof row->currency, "%s", ledger_currencies[currency]);
    bal_amount *balance = &ledger_available[account][currency];
    bal_amount after = 0;
    REQUIRE(bal_money_add(*balance, delta, &after) && after >= 0, "ledger went negative");
    row->available_before = *balance;
    row->available_after = after;
    row->available_delta = delta;
    *balance = after;
    row->result = "ok";
    row->sequence = sequence;
    row->log_offset = (long long)sequence * 10;
    row->created_at = (MYSQL_TIME){.year = 2024, .month = 5, .day = 17, .hour = 12,
                                   .minute = (unsigned)(sequence / 60 % 60),
                                   .second = (unsigned)(sequence % 60),
                                   .second_part = (unsigned long)(sequence * 7 % 1000000),
                                   .time_type = MYSQL_TIMESTAMP_DATETIME};
    return row;
}

/* A small deterministic ledger: deposits, transfers between accounts and three-legged
 * events (a trade settlement moving two currencies and a fee), never overdrawing. */
static void build_journal(const char *prefix) {
    memset(ledger_available, 0, sizeof ledger_available);
    journal_count = 0;
    random_state = 0x853c49e6748fea9bu;
    for (size_t t = 0; t < JOURNAL_TRANSACTION_COUNT; t++) {
        char id[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
        snprintf(id, sizeof id, "%s-%zu", prefix, t);
        size_t account = random_next() % LEDGER_ACCOUNT_COUNT;
        size_t currency = random_next() % LEDGER_CURRENCY_COUNT;
        bal_amount amount = 1 + (bal_amount)(random_next() % 1000000) * BAL_MONEY_ONE / 1000;
        unsigned long long sequence = t + 1;
        bal_amount balance = ledger_available[account][currency];
        if (t % 3 == 0 || balance < 3) {
            journal_row *row = journal_add(id, 0, "DEPOSIT", account, currency, amount, sequence);
            row->has_amount = true;
            row->amount = amount;
        } else if (t % 3 == 1) {
            size_t target = (account + 1 + random_next() % (LEDGER_ACCOUNT_COUNT - 1)) %
                            LEDGER_ACCOUNT_COUNT;
            bal_amount moved = 1 + balance / 2;
            journal_row *from = journal_add(id, 0, "TRANSFER", account, currency, -moved, sequence);
            journal_row *to = journal_add(id, 1, "TRANSFER", target, currency, moved, sequence);
            from->has_amount = to->has_amount = true;
            from->amount = to->amount = moved;
        } else {
            size_t other = (account + 1) % LEDGER_ACCOUNT_COUNT;
            bal_amount paid = 1 + balance / 3, fee = 1 + balance / 100;
            journal_add(id, 0, "EVENT", account, currency, -paid, sequence);
            journal_add(id, 1, "EVENT", other, currency, paid - fee, sequence);
            journal_add(id, 2, "EVENT", LEDGER_ACCOUNT_COUNT - 1 - account % 2, currency, fee,
                        sequence);
        }
    }
    /* One memo of every byte value that needs care: NUL, quotes, backslash, high bytes. */
    journal_row *row = &journal[0];
    for (size_t i = 0; i < BAL_MEMO_LENGTH_MAX; i++) {
        row->memo[i] = (unsigned char)(255 - i);
    }
    row->memo[10] = '\'';
    row->memo[11] = '\\';
    row->memo[12] = '"';
    row->memo_length = BAL_MEMO_LENGTH_MAX;
    for (size_t i = 1; i < journal_count; i += 97) {
        journal[i].memo_length = (unsigned long)snprintf((char *)journal[i].memo,
                                                         sizeof journal[i].memo, "memo %zu", i);
    }
}

static const char journal_columns[] =
    "transaction_id, leg_index, type, account_id, currency_code, amount, available_before, "
    "available_after, frozen_before, frozen_after, available_delta, frozen_delta, result, "
    "shard_id, sequence, log_offset, created_at, memo";

/* The parameter buffers of one multi-row statement. */
typedef struct journal_binding {
    MYSQL_BIND binds[JOURNAL_ROWS_PER_STATEMENT * JOURNAL_COLUMN_COUNT];
    char decimals[JOURNAL_ROWS_PER_STATEMENT][7][BAL_MONEY_TEXT_MAX + 1];
    unsigned long lengths[JOURNAL_ROWS_PER_STATEMENT][JOURNAL_COLUMN_COUNT];
    char is_null[JOURNAL_ROWS_PER_STATEMENT][JOURNAL_COLUMN_COUNT];
} journal_binding;

static journal_binding binding;

static MYSQL_STMT *prepare_journal_insert(void) {
    static char sql[JOURNAL_ROWS_PER_STATEMENT * 64 + 512];
    size_t used = (size_t)snprintf(sql, sizeof sql, "INSERT INTO balance_transactions (%s) VALUES ",
                                   journal_columns);
    for (size_t r = 0; r < JOURNAL_ROWS_PER_STATEMENT; r++) {
        used += (size_t)snprintf(sql + used, sizeof sql - used,
                                 "%s(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)", r == 0 ? "" : ",");
        REQUIRE(used < sizeof sql, "statement buffer too small");
    }
    MYSQL_STMT *statement = mysql_stmt_init(connection);
    REQUIRE(mysql_stmt_prepare(statement, sql, used) == 0, "prepare: %s",
            mysql_stmt_error(statement));
    REQUIRE(mysql_stmt_param_count(statement) ==
                JOURNAL_ROWS_PER_STATEMENT * JOURNAL_COLUMN_COUNT,
            "%lu parameters", mysql_stmt_param_count(statement));
    return statement;
}

static void bind_row(size_t slot, journal_row *row) {
    MYSQL_BIND *b = &binding.binds[slot * JOURNAL_COLUMN_COUNT];
    unsigned long *length = binding.lengths[slot];
    char *is_null = binding.is_null[slot];
    memset(b, 0, sizeof(MYSQL_BIND) * JOURNAL_COLUMN_COUNT);
    memset(is_null, 0, JOURNAL_COLUMN_COUNT);
    for (size_t c = 0; c < JOURNAL_COLUMN_COUNT; c++) {
        b[c].length = &length[c];
        b[c].is_null = &is_null[c];
    }
    b[0].buffer_type = MYSQL_TYPE_STRING;
    b[0].buffer = row->transaction_id;
    length[0] = strlen(row->transaction_id);
    b[1].buffer_type = MYSQL_TYPE_SHORT;
    b[1].buffer = &row->leg_index;
    b[1].is_unsigned = 1;
    b[2].buffer_type = MYSQL_TYPE_STRING;
    b[2].buffer = (char *)row->type;
    length[2] = strlen(row->type);
    b[3].buffer_type = MYSQL_TYPE_LONGLONG;
    b[3].buffer = &row->account_id;
    b[3].is_unsigned = 1;
    b[4].buffer_type = MYSQL_TYPE_STRING;
    b[4].buffer = row->currency;
    length[4] = strlen(row->currency);
    const bal_amount amounts[7] = {row->amount, row->available_before, row->available_after,
                                   row->frozen_before, row->frozen_after, row->available_delta,
                                   row->frozen_delta};
    for (size_t d = 0; d < 7; d++) {
        b[5 + d].buffer_type = MYSQL_TYPE_STRING;
        b[5 + d].buffer = binding.decimals[slot][d];
        length[5 + d] = bal_money_format(amounts[d], binding.decimals[slot][d]);
    }
    is_null[5] = !row->has_amount;
    b[12].buffer_type = MYSQL_TYPE_STRING;
    b[12].buffer = (char *)row->result;
    length[12] = strlen(row->result);
    b[13].buffer_type = MYSQL_TYPE_LONG;
    b[13].buffer = &row->shard_id;
    b[13].is_unsigned = 1;
    b[14].buffer_type = MYSQL_TYPE_LONGLONG;
    b[14].buffer = &row->sequence;
    b[14].is_unsigned = 1;
    b[15].buffer_type = MYSQL_TYPE_LONGLONG;
    b[15].buffer = &row->log_offset;
    b[16].buffer_type = MYSQL_TYPE_DATETIME;
    b[16].buffer = &row->created_at;
    b[17].buffer_type = MYSQL_TYPE_BLOB;
    b[17].buffer = row->memo;
    length[17] = row->memo_length;
    is_null[17] = row->memo_length == 0;
}

/* Writes journal rows [first, first + count) with the prepared statement; count must be
 * JOURNAL_ROWS_PER_STATEMENT. Returns the server's error number, 0 on success. */
static unsigned insert_prepared(MYSQL_STMT *statement, journal_row *rows) {
    for (size_t r = 0; r < JOURNAL_ROWS_PER_STATEMENT; r++) {
        bind_row(r, &rows[r]);
    }
    REQUIRE(mysql_stmt_bind_param(statement, binding.binds) == 0, "bind: %s",
            mysql_stmt_error(statement));
    return mysql_stmt_execute(statement) == 0 ? 0 : mysql_stmt_errno(statement);
}

static double insert_journal_prepared(void) {
    MYSQL_STMT *statement = prepare_journal_insert();
    size_t full = journal_count / JOURNAL_ROWS_PER_STATEMENT * JOURNAL_ROWS_PER_STATEMENT;
    uint64_t started_ns = bal_itest_now_ns();
    execute("START TRANSACTION");
    for (size_t first = 0; first < full; first += JOURNAL_ROWS_PER_STATEMENT) {
        unsigned err = insert_prepared(statement, &journal[first]);
        REQUIRE(err == 0, "journal insert at row %zu: %s", first, mysql_stmt_error(statement));
    }
    execute("COMMIT");
    double elapsed_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;
    mysql_stmt_close(statement);
    journal_count = full;
    return elapsed_ms;
}

static size_t append_decimal(char *sql, size_t used, size_t size, bool present, bal_amount value) {
    char text[BAL_MONEY_TEXT_MAX + 1];
    bal_money_format(value, text);
    return used + (size_t)snprintf(sql + used, size - used, ",%s", present ? text : "NULL");
}

/* The same rows through the text protocol: one multi-row INSERT with literal values. */
static double insert_journal_text(const char *prefix) {
    size_t size = journal_count * 1400 + 1024;
    char *sql = malloc(size);
    REQUIRE(sql != NULL, "out of memory");
    size_t used = (size_t)snprintf(sql, size, "INSERT INTO balance_transactions (%s) VALUES ",
                                   journal_columns);
    for (size_t r = 0; r < journal_count; r++) {
        const journal_row *row = &journal[r];
        const char *dash = strchr(row->transaction_id, '-');
        used += (size_t)snprintf(sql + used, size - used, "%s('%s%s',%u,'%s',%llu,'%s'",
                                 r == 0 ? "" : ",", prefix, dash, row->leg_index, row->type,
                                 row->account_id, row->currency);
        used = append_decimal(sql, used, size, row->has_amount, row->amount);
        const bal_amount rest[6] = {row->available_before, row->available_after,
                                    row->frozen_before, row->frozen_after,
                                    row->available_delta, row->frozen_delta};
        for (size_t d = 0; d < 6; d++) {
            used = append_decimal(sql, used, size, true, rest[d]);
        }
        const MYSQL_TIME *t = &row->created_at;
        used += (size_t)snprintf(sql + used, size - used,
                                 ",'%s',%u,%llu,%lld,'%04u-%02u-%02u %02u:%02u:%02u.%06lu',",
                                 row->result, row->shard_id, row->sequence, row->log_offset,
                                 t->year, t->month, t->day, t->hour, t->minute, t->second,
                                 t->second_part);
        if (row->memo_length == 0) {
            used += (size_t)snprintf(sql + used, size - used, "NULL)");
        } else {
            /* A hexadecimal literal needs no escaping and keeps every byte. */
            used += (size_t)snprintf(sql + used, size - used, "X'");
            for (size_t i = 0; i < row->memo_length; i++) {
                used += (size_t)snprintf(sql + used, size - used, "%02X", row->memo[i]);
            }
            used += (size_t)snprintf(sql + used, size - used, "')");
        }
        REQUIRE(used < size, "text statement buffer too small");
    }
    uint64_t started_ns = bal_itest_now_ns();
    execute("START TRANSACTION");
    REQUIRE(mysql_real_query(connection, sql, used) == 0, "text journal insert: %s",
            mysql_error(connection));
    execute("COMMIT");
    double elapsed_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;
    free(sql);
    return elapsed_ms;
}

/* What the server holds for the rows whose ids start with prefix must match the ledger. */
static void check_journal_contents(const char *prefix) {
    char sql[SQL_TEXT_MAX];
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM balance_transactions WHERE transaction_id LIKE '%s-%%'", prefix);
    CHECK(query_number(sql) == journal_count);
    snprintf(sql, sizeof sql,
             "SELECT COUNT(*) FROM balance_transactions WHERE transaction_id LIKE '%s-%%' AND "
             "amount IS NULL",
             prefix);
    size_t event_legs = 0;
    for (size_t r = 0; r < journal_count; r++) {
        event_legs += !journal[r].has_amount;
    }
    CHECK(query_number(sql) == event_legs);

    /* Replaying the journal (summing deltas) gives every balance exactly. */
    bal_amount expected[LEDGER_ACCOUNT_COUNT][LEDGER_CURRENCY_COUNT];
    memset(expected, 0, sizeof expected);
    for (size_t r = 0; r < journal_count; r++) {
        size_t c = 0;
        while (strcmp(ledger_currencies[c], journal[r].currency) != 0) {
            c++;
        }
        expected[journal[r].account_id - 1][c] = journal[r].available_after;
    }
    snprintf(sql, sizeof sql,
             "SELECT account_id, currency_code, SUM(available_delta) "
             "FROM balance_transactions WHERE transaction_id LIKE '%s-%%' GROUP BY account_id, "
             "currency_code",
             prefix);
    execute(sql);
    MYSQL_RES *result = mysql_store_result(connection);
    REQUIRE(result != NULL, "%s", mysql_error(connection));
    size_t balances = 0;
    MYSQL_ROW row;
    while ((row = mysql_fetch_row(result)) != NULL) {
        size_t account = strtoull(row[0], NULL, 10) - 1, c = 0;
        while (c < LEDGER_CURRENCY_COUNT && strcmp(ledger_currencies[c], row[1]) != 0) {
            c++;
        }
        REQUIRE(account < LEDGER_ACCOUNT_COUNT && c < LEDGER_CURRENCY_COUNT, "row %s %s", row[0],
                row[1]);
        CHECK(parse_signed(row[2]) == expected[account][c]);
        balances++;
    }
    mysql_free_result(result);
    CHECK(balances > LEDGER_ACCOUNT_COUNT);

    /* The 256-byte memo comes back byte for byte. */
    snprintf(sql, sizeof sql,
             "SELECT HEX(memo) FROM balance_transactions WHERE transaction_id = '%s-0' AND "
             "leg_index = 0",
             prefix);
    char hex[2 * BAL_MEMO_LENGTH_MAX + 1], expected_hex[2 * BAL_MEMO_LENGTH_MAX + 1];
    query_text(sql, hex, sizeof hex);
    for (size_t i = 0; i < journal[0].memo_length; i++) {
        snprintf(expected_hex + 2 * i, 3, "%02X", journal[0].memo[i]);
    }
    CHECK_STR(hex, expected_hex);
}

static void check_journal_keys(void) {
    /* A leg written twice is refused... */
    unsigned err = execute_expecting_error(
        "INSERT INTO balance_transactions (transaction_id, leg_index, type, account_id, "
        "currency_code, amount, available_before, available_after, frozen_before, frozen_after, "
        "available_delta, frozen_delta, result, shard_id, sequence, log_offset, created_at) "
        "SELECT transaction_id, leg_index, type, account_id, currency_code, amount, "
        "available_before, available_after, frozen_before, frozen_after, available_delta, "
        "frozen_delta, result, shard_id, sequence, log_offset, created_at FROM "
        "balance_transactions WHERE transaction_id = 'prepared-1' AND leg_index = 0");
    CHECK(err == ER_DUP_ENTRY);
    /* ...while ids that differ only in case are different ids (ascii_bin). */
    static const char *const ids[] = {"Case-Id", "case-id", "CASE-ID"};
    for (size_t i = 0; i < 3; i++) {
        char sql[SQL_TEXT_MAX];
        snprintf(sql, sizeof sql,
                 "INSERT INTO balance_transactions (transaction_id, leg_index, type, account_id, "
                 "currency_code, amount, available_before, available_after, frozen_before, "
                 "frozen_after, available_delta, frozen_delta, result, shard_id, sequence, "
                 "log_offset, created_at) VALUES ('%s', 0, 'WITHDRAW', 1, 'BTC', 5, 1, 1, 0, 0, "
                 "0, 0, 'insufficient_available', 0, 1, 0, '2024-01-01 00:00:00')",
                 ids[i]);
        execute(sql);
    }
    CHECK(query_number("SELECT COUNT(*) FROM balance_transactions WHERE transaction_id = "
                       "'case-id'") == 1);
}

/* A batch is all or nothing: when one statement fails, ROLLBACK removes the statements
 * before it too, which is what lets the persister retry a batch as a whole. */
static void check_rollback(void) {
    build_journal("rollback");
    MYSQL_STMT *statement = prepare_journal_insert();
    execute("START TRANSACTION");
    REQUIRE(insert_prepared(statement, &journal[0]) == 0, "first statement: %s",
            mysql_stmt_error(statement));
    /* The second statement repeats the last row of the first: a duplicate key. */
    journal[JOURNAL_ROWS_PER_STATEMENT + 7] = journal[JOURNAL_ROWS_PER_STATEMENT - 1];
    unsigned err = insert_prepared(statement, &journal[JOURNAL_ROWS_PER_STATEMENT]);
    CHECK(err == ER_DUP_ENTRY);
    execute("ROLLBACK");
    mysql_stmt_close(statement);
    CHECK(query_number("SELECT COUNT(*) FROM balance_transactions WHERE transaction_id LIKE "
                       "'rollback-%'") == 0);
}

static void check_journal(void) {
    build_journal("prepared");
    double prepared_ms = insert_journal_prepared();
    check_journal_contents("prepared");
    double text_ms = insert_journal_text("text");
    check_journal_contents("text");
    size_t event_legs = 0;
    for (size_t r = 0; r < journal_count; r++) {
        event_legs += !journal[r].has_amount;
    }
    printf("mariadb: %zu journal rows (%zu of them EVENT legs) in one transaction: prepared "
           "statements of %d rows %.1f ms, one text-protocol INSERT %.1f ms\n",
           journal_count, event_legs, JOURNAL_ROWS_PER_STATEMENT, prepared_ms, text_ms);
    check_journal_keys();
    check_rollback();
}

/* --- set-up and clean-up ------------------------------------------------------------------- */

static void cleanup(void) {
    if (scratch_dir[0] != '\0') {
        empty_scratch_dir();
        rmdir(scratch_dir);
    }
    if (database_created) {
        /* After a failure the connection may be unusable: use a fresh one. */
        MYSQL *handle = connect_to(NULL);
        char sql[SQL_TEXT_MAX];
        snprintf(sql, sizeof sql, "DROP DATABASE IF EXISTS `%s`", database);
        if (mysql_query(handle, sql) != 0) {
            fprintf(stderr, "could not drop %s: %s\n", database, mysql_error(handle));
        }
        mysql_close(handle);
        database_created = false;
    }
}

static void create_database(void) {
    char suffix[64], sql[SQL_TEXT_MAX];
    bal_itest_run_suffix(suffix, sizeof suffix);
    int length = snprintf(database, sizeof database, "%s_test_%s", base_database, suffix);
    REQUIRE(length > 0 && (size_t)length < sizeof database, "database name too long");
    snprintf(sql, sizeof sql, "CREATE DATABASE `%s` CHARACTER SET utf8mb4 COLLATE utf8mb4_bin",
             database);
    if (mysql_query(connection, sql) != 0) {
        bal_itest_fail(__FILE__, __LINE__, "CREATE DATABASE",
                       "user '%s' cannot create the throwaway database %s: %s (scripts/migrate.sh "
                       "grants it databases named %s_test_*)",
                       user, database, mysql_error(connection), base_database);
    }
    database_created = true;
    REQUIRE(mysql_select_db(connection, database) == 0, "USE %s: %s", database,
            mysql_error(connection));
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/balanced-migrations-XXXXXX");
    REQUIRE(mkdtemp(scratch_dir) != NULL, "mkdtemp: %s", strerror(errno));
}

int main(int argc, char **argv) {
    REQUIRE(argc == 3, "usage: %s <scripts/migrate.sh> <db/migrations>", argv[0]);
    migrate_script = argv[1];
    migrations_dir = argv[2];
    host = bal_itest_env("BALANCED_MYSQL_HOST", "127.0.0.1");
    port = bal_itest_env_port("BALANCED_MYSQL_PORT", 3306);
    user = bal_itest_env("BALANCED_MYSQL_USER", "balanced");
    password = getenv("BALANCED_MYSQL_PASSWORD") ? getenv("BALANCED_MYSQL_PASSWORD") : "balanced";
    base_database = bal_itest_env("BALANCED_MYSQL_DATABASE", "balanced");

    REQUIRE(mysql_library_init(0, NULL, NULL) == 0, "mysql_library_init");
    connection = connect_to(NULL);
    printf("mariadb: libmariadb %s, server %s at %s:%u\n", mysql_get_client_info(),
           mysql_get_server_info(connection), host, port);
    bal_itest_set_cleanup(cleanup);
    create_database();

    check_migrations();
    bal_amount *values = calloc(ROUND_TRIP_VALUE_MAX, sizeof *values);
    REQUIRE(values != NULL, "out of memory");
    size_t count = round_trip_values(values);
    check_balance_round_trip(values, count);
    check_delta_round_trip(values, count);
    check_server_text();
    check_refusals();
    printf("mariadb: %zu DECIMAL(36,18) values (edges and random; signed in the delta columns) "
           "round-tripped exactly\n",
           count);
    free(values);
    check_journal();

    bal_itest_set_cleanup(NULL);
    mysql_close(connection);
    connection = NULL;
    cleanup();
    mysql_library_end();
    return bal_test_finish("integration/mariadb");
}
