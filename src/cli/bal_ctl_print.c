/*
 * bal_ctl_print.c -- human-readable output of the server's JSON responses.
 *
 * Outcome lines keep one balance per line with the result and id repeated, so that grep
 * and awk work on them; reads print aligned tables. Fields are taken by name, and a field
 * the server does not send shows as "-", so a newer server never breaks an older client.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_ctl.h"

/* Display buffers: memos are at most 256 bytes; anything longer is shown cut. */
#define VALUE_MAX 320

/* Unix milliseconds as UTC ISO 8601 ("2026-01-02T03:04:05.678Z"); other text unchanged. */
static void format_time(const char *ms_text, char *out, size_t size) {
    char *end = NULL;
    long long ms = strtoll(ms_text, &end, 10);
    struct tm tm;
    time_t seconds = (time_t)(ms / 1000);
    if (end == ms_text || *end != '\0' || ms < 0 || gmtime_r(&seconds, &tm) == NULL) {
        snprintf(out, size, "%s", ms_text);
        return;
    }
    char date[32];
    strftime(date, sizeof(date), "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, size, "%s.%03uZ", date, (unsigned)(ms % 1000));
}

static void print_item_error(FILE *out, const bal_ctl_json *doc, uint32_t object, bal_ctl_tally *tally) {
    char id[VALUE_MAX], code[VALUE_MAX], message[VALUE_MAX];
    bal_ctl_json_field(doc, object, "transaction_id", "-", id, sizeof(id));
    bal_ctl_json_field(doc, object, "error", "-", code, sizeof(code));
    bal_ctl_json_field(doc, object, "message", "", message, sizeof(message));
    fputs("error  ", out);
    bal_ctl_print_safe(out, id);
    fputs("  ", out);
    bal_ctl_print_safe(out, code);
    if (message[0] != '\0') fputs(": ", out);
    bal_ctl_print_safe(out, message);
    fputc('\n', out);
    tally->invalid++;
}

void bal_ctl_print_outcome(FILE *out, const bal_ctl_json *doc, uint32_t object, bal_ctl_tally *tally) {
    if (bal_ctl_json_member(doc, object, "result") == BAL_CTL_JSON_NONE) {
        print_item_error(out, doc, object, tally);
        return;
    }
    char result[VALUE_MAX], id[VALUE_MAX], sequence[32];
    bal_ctl_json_field(doc, object, "result", "-", result, sizeof(result));
    bal_ctl_json_field(doc, object, "transaction_id", "-", id, sizeof(id));
    bal_ctl_json_field(doc, object, "sequence", "-", sequence, sizeof(sequence));
    bool ok = strcmp(result, "ok") == 0;
    bool duplicate = bal_ctl_json_is(doc, bal_ctl_json_member(doc, object, "duplicate"), BAL_JSON_TRUE);
    tally->ok += ok;
    tally->duplicate += ok && duplicate;
    tally->rejected += !ok;
    char prefix[3 * VALUE_MAX];
    snprintf(prefix, sizeof(prefix), "%s%s  %s  seq %s", result, duplicate ? " (duplicate)" : "", id, sequence);
    uint32_t balances = bal_ctl_json_member(doc, object, "balances");
    uint32_t count = bal_ctl_json_is(doc, balances, BAL_JSON_ARRAY) ? doc->tokens[balances].size : 0;
    if (count == 0) {
        bal_ctl_print_safe(out, prefix);
        fputc('\n', out);
    }
    for (uint32_t i = 0, at = balances + 1; i < count; i++, at = doc->tokens[at].next) {
        char account[32], currency[VALUE_MAX], available[64], frozen[64];
        bal_ctl_json_field(doc, at, "account_id", "-", account, sizeof(account));
        bal_ctl_json_field(doc, at, "currency", "-", currency, sizeof(currency));
        bal_ctl_json_field(doc, at, "available", "-", available, sizeof(available));
        bal_ctl_json_field(doc, at, "frozen", "-", frozen, sizeof(frozen));
        bal_ctl_print_safe(out, prefix);
        fprintf(out, "  %s ", account);
        bal_ctl_print_safe(out, currency);
        fprintf(out, " available %s frozen %s\n", available, frozen);
    }
}

void bal_ctl_print_batch(FILE *out, const bal_ctl_json *doc, bal_ctl_tally *tally) {
    uint32_t results = bal_ctl_json_member(doc, 0, "results");
    uint32_t count = bal_ctl_json_is(doc, results, BAL_JSON_ARRAY) ? doc->tokens[results].size : 0;
    for (uint32_t i = 0, at = results + 1; i < count; i++, at = doc->tokens[at].next) {
        bal_ctl_print_outcome(out, doc, at, tally);
    }
    fprintf(out, "batch: %u items, %u ok (%u duplicate), %u rejected, %u invalid\n", count, tally->ok,
            tally->duplicate, tally->rejected, tally->invalid);
}

/* Rows of an array of objects, one column per key. */
static void add_rows(bal_ctl_table *table, const bal_ctl_json *doc, uint32_t array, const char *const *keys) {
    uint32_t count = bal_ctl_json_is(doc, array, BAL_JSON_ARRAY) ? doc->tokens[array].size : 0;
    char values[BAL_CTL_TABLE_COLUMNS_MAX][VALUE_MAX];
    const char *cells[BAL_CTL_TABLE_COLUMNS_MAX];
    for (uint32_t i = 0, at = array + 1; i < count; i++, at = doc->tokens[at].next) {
        for (unsigned c = 0; c < table->columns; c++) {
            bal_ctl_json_field(doc, at, keys[c], "-", values[c], sizeof(values[c]));
            cells[c] = values[c];
        }
        bal_ctl_table_add(table, cells);
    }
}

static void print_array_table(FILE *out, const bal_ctl_json *doc, uint32_t array, unsigned columns,
                              const char *const *keys, const char *const *headers, const bal_ctl_align *align) {
    bal_ctl_table table;
    bal_ctl_table_init(&table, columns, align);
    bal_ctl_table_add(&table, headers);
    add_rows(&table, doc, array, keys);
    bal_ctl_table_print(out, &table);
    bal_ctl_table_free(&table);
}

void bal_ctl_print_balances(FILE *out, const bal_ctl_json *doc) {
    static const char *const keys[] = {"currency", "available", "frozen"};
    static const char *const headers[] = {"CURRENCY", "AVAILABLE", "FROZEN"};
    static const bal_ctl_align align[] = {BAL_CTL_LEFT, BAL_CTL_DECIMAL, BAL_CTL_DECIMAL};
    uint32_t balances = bal_ctl_json_member(doc, 0, "balances");
    char account[32];
    bal_ctl_json_field(doc, 0, "account_id", "-", account, sizeof(account));
    if (!bal_ctl_json_is(doc, balances, BAL_JSON_ARRAY) || doc->tokens[balances].size == 0) {
        fprintf(out, "account %s has no balances\n", account);
        return;
    }
    print_array_table(out, doc, balances, 3, keys, headers, align);
}

void bal_ctl_print_balance(FILE *out, const bal_ctl_json *doc) {
    char account[32], currency[VALUE_MAX], available[64], frozen[64];
    bal_ctl_json_field(doc, 0, "account_id", "-", account, sizeof(account));
    bal_ctl_json_field(doc, 0, "currency", "-", currency, sizeof(currency));
    bal_ctl_json_field(doc, 0, "available", "-", available, sizeof(available));
    bal_ctl_json_field(doc, 0, "frozen", "-", frozen, sizeof(frozen));
    fprintf(out, "%s ", account);
    bal_ctl_print_safe(out, currency);
    fprintf(out, " available %s frozen %s\n", available, frozen);
}

/* Scalar members as "key  value" lines; arrays (legs, balances) follow as tables. */
static void print_scalars(FILE *out, const bal_ctl_json *doc) {
    bal_ctl_table table;
    static const bal_ctl_align align[] = {BAL_CTL_LEFT, BAL_CTL_LEFT};
    bal_ctl_table_init(&table, 2, align);
    table.has_header = false;
    uint32_t at = 1;
    for (uint32_t m = 0; bal_ctl_json_is(doc, 0, BAL_JSON_OBJECT) && m < doc->tokens[0].size; m++) {
        uint32_t value = at + 1;
        char key[64], text[VALUE_MAX], when[64];
        bal_ctl_json_text(doc, at, "-", key, sizeof(key));
        bal_json_type type = (bal_json_type)doc->tokens[value].type;
        if (type != BAL_JSON_ARRAY && type != BAL_JSON_OBJECT) {
            bal_ctl_json_text(doc, value, "-", text, sizeof(text));
            if (type == BAL_JSON_NULL) snprintf(text, sizeof(text), "-");
            if (strcmp(key, "time") == 0 && type == BAL_JSON_NUMBER) {
                format_time(text, when, sizeof(when));
                snprintf(text, sizeof(text), "%s", when);
            }
            const char *row[] = {key, text};
            bal_ctl_table_add(&table, row);
        }
        at = doc->tokens[value].next;
    }
    bal_ctl_table_print(out, &table);
    bal_ctl_table_free(&table);
}

void bal_ctl_print_transaction(FILE *out, const bal_ctl_json *doc) {
    static const char *const leg_keys[] = {"account_id", "currency", "available_delta", "frozen_delta"};
    static const char *const leg_headers[] = {"ACCOUNT", "CURRENCY", "AVAILABLE_DELTA", "FROZEN_DELTA"};
    static const char *const balance_keys[] = {"account_id", "currency", "available", "frozen"};
    static const char *const balance_headers[] = {"ACCOUNT", "CURRENCY", "AVAILABLE", "FROZEN"};
    static const bal_ctl_align align[] = {BAL_CTL_RIGHT, BAL_CTL_LEFT, BAL_CTL_DECIMAL, BAL_CTL_DECIMAL};
    print_scalars(out, doc);
    uint32_t legs = bal_ctl_json_member(doc, 0, "legs");
    if (bal_ctl_json_is(doc, legs, BAL_JSON_ARRAY)) {
        fputs("\nlegs:\n", out);
        print_array_table(out, doc, legs, 4, leg_keys, leg_headers, align);
    }
    uint32_t balances = bal_ctl_json_member(doc, 0, "balances");
    if (bal_ctl_json_is(doc, balances, BAL_JSON_ARRAY) && doc->tokens[balances].size > 0) {
        fputs("\nbalances after:\n", out);
        print_array_table(out, doc, balances, 4, balance_keys, balance_headers, align);
    }
}

static void add_history_rows(bal_ctl_table *table, const bal_ctl_json *doc, uint32_t array) {
    static const char *const keys[] = {"time", "sequence", "transaction_id", "type", "currency", "amount",
                                       "result", "available_delta", "frozen_delta", "available_after",
                                       "frozen_after", "memo"};
    char values[12][VALUE_MAX], when[64];
    const char *cells[12];
    uint32_t count = doc->tokens[array].size;
    for (uint32_t i = 0, at = array + 1; i < count; i++, at = doc->tokens[at].next) {
        for (unsigned c = 0; c < 12; c++) {
            uint32_t value = bal_ctl_json_member(doc, at, keys[c]);
            bal_ctl_json_text(doc, value, "-", values[c], sizeof(values[c]));
            if (bal_ctl_json_is(doc, value, BAL_JSON_NULL)) snprintf(values[c], sizeof(values[c]), "%s", c == 11 ? "" : "-");
            cells[c] = values[c];
        }
        format_time(values[0], when, sizeof(when));
        cells[0] = when;
        bal_ctl_table_add(table, cells);
    }
}

void bal_ctl_print_history(FILE *out, const bal_ctl_json *doc) {
    static const char *const headers[] = {"TIME", "SEQ", "TRANSACTION", "TYPE", "CURRENCY", "AMOUNT", "RESULT",
                                          "AVAILABLE_DELTA", "FROZEN_DELTA", "AVAILABLE", "FROZEN", "MEMO"};
    static const bal_ctl_align align[] = {BAL_CTL_LEFT, BAL_CTL_RIGHT, BAL_CTL_LEFT, BAL_CTL_LEFT, BAL_CTL_LEFT,
                                          BAL_CTL_DECIMAL, BAL_CTL_LEFT, BAL_CTL_DECIMAL, BAL_CTL_DECIMAL,
                                          BAL_CTL_DECIMAL, BAL_CTL_DECIMAL, BAL_CTL_LEFT};
    uint32_t array = bal_ctl_json_member(doc, 0, "transactions");
    char account[32], next[VALUE_MAX];
    bal_ctl_json_field(doc, 0, "account_id", "-", account, sizeof(account));
    if (!bal_ctl_json_is(doc, array, BAL_JSON_ARRAY) || doc->tokens[array].size == 0) {
        fprintf(out, "account %s: no transactions\n", account);
    } else {
        bal_ctl_table table;
        bal_ctl_table_init(&table, 12, align);
        bal_ctl_table_add(&table, headers);
        add_history_rows(&table, doc, array);
        bal_ctl_table_print(out, &table);
        bal_ctl_table_free(&table);
    }
    uint32_t cursor = bal_ctl_json_member(doc, 0, "next_before");
    if (bal_ctl_json_is(doc, cursor, BAL_JSON_STRING)) {
        bal_ctl_json_text(doc, cursor, "", next, sizeof(next));
        fputs("next page: --before ", out);
        bal_ctl_print_safe(out, next);
        fputc('\n', out);
    }
}

void bal_ctl_tally_batch(const bal_ctl_json *doc, bal_ctl_tally *tally) {
    uint32_t results = bal_ctl_json_member(doc, 0, "results");
    uint32_t count = bal_ctl_json_is(doc, results, BAL_JSON_ARRAY) ? doc->tokens[results].size : 0;
    for (uint32_t i = 0, at = results + 1; i < count; i++, at = doc->tokens[at].next) {
        char result[64];
        if (bal_ctl_json_member(doc, at, "result") == BAL_CTL_JSON_NONE) {
            tally->invalid++;
            continue;
        }
        bal_ctl_json_field(doc, at, "result", "-", result, sizeof(result));
        bool ok = strcmp(result, "ok") == 0;
        tally->ok += ok;
        tally->duplicate += ok && bal_ctl_json_is(doc, bal_ctl_json_member(doc, at, "duplicate"), BAL_JSON_TRUE);
        tally->rejected += !ok;
    }
}
