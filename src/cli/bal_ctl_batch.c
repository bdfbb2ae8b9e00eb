/*
 * bal_ctl_batch.c -- batch files: JSON sent as written, CSV turned into the batch body.
 *
 * A JSON file is checked for syntax and shape ({"transactions": [...]} or a bare array,
 * at most 8192 items) but its items are left to the server: a malformed item gets its own
 * error in the response while the others apply, as the API defines. A CSV file is ours to
 * translate, so every row is checked completely (with the server's decoder) and a bad row
 * stops the batch before anything is sent, naming its line.
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_ctl.h"
#include "bal_decode.h"
#include "bal_types.h"

#define CSV_COLUMNS 7
#define CSV_FIELD_MAX 1024

enum { COL_ID, COL_TYPE, COL_ACCOUNT, COL_CURRENCY, COL_AMOUNT, COL_TO, COL_MEMO };
static const char *const column_names[CSV_COLUMNS] = {"transaction_id", "type", "account_id", "currency",
                                                      "amount", "to_account_id", "memo"};

/* ---- reading the file --------------------------------------------------------------------- */

static bool read_file(const char *path, char **text_out, size_t *length_out, bal_ctl_error *error) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0) {
        bal_ctl_error_set(error, "usage", "%s: %s", path, strerror(errno));
        if (fd >= 0) close(fd);
        return false;
    }
    /* The server takes bodies up to 32 MiB; a larger file could never be sent. */
    if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size > BAL_BODY_BYTES_MAX) {
        bal_ctl_error_set(error, "usage", "%s: %s", path, S_ISREG(st.st_mode) ? "larger than 32 MiB" :
                          "not a regular file");
        close(fd);
        return false;
    }
    size_t size = (size_t)st.st_size, length = 0;
    char *text = malloc(size + 1);
    ssize_t n = 1;
    while (text != NULL && length < size && (n = read(fd, text + length, size - length)) != 0) {
        if (n < 0 && errno != EINTR) break;
        if (n > 0) length += (size_t)n;
    }
    close(fd);
    if (text == NULL || n < 0) {
        bal_ctl_error_set(error, "usage", "%s: %s", path, text == NULL ? "out of memory" : strerror(errno));
        free(text);
        return false;
    }
    text[length] = '\0';
    *text_out = text;
    *length_out = length;
    return true;
}

/* Line and column (1-based) of a byte offset, for error messages. */
static void position(const char *text, size_t offset, unsigned *line, unsigned *column) {
    *line = 1;
    *column = 1;
    for (size_t i = 0; i < offset; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *column = 1;
        } else {
            (*column)++;
        }
    }
}

/* ---- JSON files ----------------------------------------------------------------------------- */

static bool json_syntax(const char *path, const char *text, size_t length, bal_ctl_error *error) {
    size_t want = length / 2 + 2;
    uint32_t token_max = want > BAL_DECODE_TOKENS_MAX ? BAL_DECODE_TOKENS_MAX : (uint32_t)want;
    bal_json_token *tokens = malloc((size_t)token_max * sizeof(*tokens));
    uint32_t count = 0;
    size_t offset = 0;
    bal_json_status status = tokens == NULL ? BAL_JSON_TOO_MANY_TOKENS
                                            : bal_json_parse(text, length, tokens, token_max, &count, &offset);
    free(tokens);
    if (status == BAL_JSON_OK) return true;
    unsigned line, column;
    position(text, offset, &line, &column);
    bal_ctl_error_set(error, "usage", "%s:%u:%u: not valid JSON (%s)", path, line, column,
                      bal_json_status_name(status));
    return false;
}

static bool json_load(const char *path, const char *text, size_t length, bal_text *body, uint32_t *items_out,
                      bal_ctl_error *error) {
    if (length >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0) {
        text += 3; /* a byte order mark, as some editors write: not part of the JSON */
        length -= 3;
    }
    if (!json_syntax(path, text, length, error)) return false;
    size_t skip = strspn(text, " \t\r\n");
    if (text[skip] == '[') bal_text_cstr(body, "{\"transactions\":");
    bal_text_append(body, text, length);
    if (text[skip] == '[') bal_text_cstr(body, "}");
    if (bal_text_failed(body)) {
        bal_ctl_error_set(error, "usage", "%s: the batch body would exceed 32 MiB", path);
        return false;
    }
    size_t want = body->length / 2 + 2;
    uint32_t token_max = want > BAL_DECODE_TOKENS_MAX ? BAL_DECODE_TOKENS_MAX : (uint32_t)want;
    bal_json_token *tokens = malloc((size_t)token_max * sizeof(*tokens));
    bal_decode_diagnostic diagnostic = {.error = BAL_DECODE_INVALID_BATCH};
    snprintf(diagnostic.message, sizeof(diagnostic.message), "out of memory");
    uint32_t first = 0;
    bal_decode_error e = tokens == NULL ? BAL_DECODE_INVALID_BATCH
                                        : bal_decode_batch(body->data, body->length, tokens, token_max, &first,
                                                           items_out, &diagnostic);
    free(tokens);
    if (e == BAL_DECODE_OK) return true;
    bal_ctl_error_set(error, "usage", "%s: %s: %s (a batch file holds {\"transactions\": [...]} or [...])", path,
                      bal_decode_error_code(e), diagnostic.message);
    return false;
}

/* ---- CSV files ------------------------------------------------------------------------------ */

typedef struct csv {
    const char *path;
    const char *text;
    size_t length;
    size_t at;
    unsigned line;            /* line of the next character */
    unsigned record_line;     /* line where the current record began */
    char fields[CSV_COLUMNS][CSV_FIELD_MAX + 1];
    size_t lengths[CSV_COLUMNS];
    unsigned count;
} csv;

static bool csv_put(csv *c, char ch, bal_ctl_error *error) {
    if (ch == '\0') {
        bal_ctl_error_set(error, "usage", "%s:%u: a NUL byte", c->path, c->record_line);
        return false;
    }
    if (c->count >= CSV_COLUMNS) {
        bal_ctl_error_set(error, "usage", "%s:%u: more than %d fields", c->path, c->record_line, CSV_COLUMNS);
        return false;
    }
    if (c->lengths[c->count] == CSV_FIELD_MAX) {
        bal_ctl_error_set(error, "usage", "%s:%u: a field is longer than %d bytes", c->path, c->record_line,
                          CSV_FIELD_MAX);
        return false;
    }
    assert(c->lengths[c->count] < CSV_FIELD_MAX);
    c->fields[c->count][c->lengths[c->count]++] = ch;
    return true;
}

/* A quoted field, from its opening quote: "" is a quote; commas and newlines are data. */
static bool csv_quoted(csv *c, bal_ctl_error *error) {
    for (c->at++; c->at < c->length; c->at++) {
        char ch = c->text[c->at];
        if (ch == '"' && c->at + 1 < c->length && c->text[c->at + 1] == '"') {
            c->at++;
        } else if (ch == '"') {
            c->at++;
            if (c->at < c->length && strchr(",\r\n", c->text[c->at]) == NULL) break;
            return true;
        }
        if (ch == '\n') c->line++;
        if (!csv_put(c, ch, error)) return false;
    }
    bal_ctl_error_set(error, "usage", "%s:%u: %s", c->path, c->record_line,
                      c->at >= c->length ? "a quoted field is not closed" : "text after a closing quote");
    return false;
}

/* Reads one record into c->fields: 1 read, 0 end of file, -1 error (in error). */
static int csv_record(csv *c, bal_ctl_error *error) {
    if (c->at >= c->length) return 0;
    memset(c->lengths, 0, sizeof(c->lengths));
    c->count = 0;
    c->record_line = c->line;
    bool field_start = true;
    while (c->at < c->length) {
        char ch = c->text[c->at];
        if (ch == '\n' || ch == '\r') {
            c->at += (ch == '\r' && c->at + 1 < c->length && c->text[c->at + 1] == '\n') ? 2 : 1;
            c->line++;
            break;
        }
        if (ch == ',') {
            if (++c->count >= CSV_COLUMNS) {
                bal_ctl_error_set(error, "usage", "%s:%u: more than %d fields", c->path, c->record_line, CSV_COLUMNS);
                return -1;
            }
            field_start = true;
            c->at++;
            continue;
        }
        if (ch == '"' && field_start) {
            if (!csv_quoted(c, error)) return -1;
            field_start = false;
            continue;
        }
        if (ch == '"') {
            bal_ctl_error_set(error, "usage", "%s:%u: a quote inside an unquoted field", c->path, c->record_line);
            return -1;
        }
        if (!csv_put(c, ch, error)) return -1;
        field_start = false;
        c->at++;
    }
    c->count++;
    for (unsigned i = 0; i < c->count; i++) c->fields[i][c->lengths[i]] = '\0';
    return 1;
}

/* Spreadsheets pad cells; spaces never belong in ids, accounts, currencies or amounts. */
static char *trimmed(char *field) {
    while (*field == ' ' || *field == '\t') field++;
    size_t length = strlen(field);
    while (length > 0 && (field[length - 1] == ' ' || field[length - 1] == '\t')) field[--length] = '\0';
    return field;
}

/* Maps header names to columns: map[i] is the column of field i. */
static bool csv_header(csv *c, int *map, bal_ctl_error *error) {
    int seen[CSV_COLUMNS] = {0};
    for (unsigned i = 0; i < c->count; i++) {
        const char *name = trimmed(c->fields[i]);
        int column = -1;
        for (int k = 0; k < CSV_COLUMNS; k++) {
            if (strcasecmp(name, column_names[k]) == 0) column = k;
        }
        if (column < 0 || seen[column]++) {
            bal_ctl_error_set(error, "usage", "%s:%u: %s column \"%.40s\" in the header (expected "
                              "transaction_id,type,account_id,currency,amount,to_account_id,memo)", c->path,
                              c->record_line, column < 0 ? "unknown" : "repeated", name);
            return false;
        }
        map[i] = column;
    }
    for (int k = 0; k <= COL_AMOUNT; k++) {
        if (!seen[k]) {
            bal_ctl_error_set(error, "usage", "%s:%u: the header lacks the %s column", c->path, c->record_line,
                              column_names[k]);
            return false;
        }
    }
    return true;
}

static bool csv_type(const char *text, const char **name_out) {
    static const char *const legacy[] = {"DEPOSIT", "WITHDRAW", "FREEZE", "UNFREEZE", "TRANSFER"};
    bal_op op;
    if (text[0] >= '0' && text[0] <= '4' && text[1] == '\0') {
        *name_out = legacy[text[0] - '0'];
        return true;
    }
    if (!bal_op_from_name(text, strlen(text), &op) || op == BAL_OP_EVENT) return false;
    *name_out = bal_op_name(op);
    return true;
}

/* Checks one row's values with the client's messages; fills the canonical amount. */
static bool csv_row_check(const csv *c, char **v, const char **type, char *amount, bal_ctl_error *error) {
    uint64_t account, to;
    bal_ctl_error e;
    bool ok = bal_ctl_check_transaction_id(v[COL_ID], &e);
    if (ok && !(ok = csv_type(v[COL_TYPE], type))) {
        bal_ctl_error_set(&e, "usage", "type must be DEPOSIT, WITHDRAW, FREEZE, UNFREEZE, DEDUCT_FROZEN, TRANSFER "
                          "or 0..4 (EVENT needs legs: use a JSON batch), not \"%.40s\"", v[COL_TYPE]);
    }
    ok = ok && bal_ctl_check_account(v[COL_ACCOUNT], "account_id", &account, &e) &&
         bal_ctl_check_currency(v[COL_CURRENCY], "currency", &e) && bal_ctl_check_amount(v[COL_AMOUNT], "amount", amount, &e);
    bool transfer = ok && strcmp(*type, "TRANSFER") == 0;
    if (ok && transfer && (ok = bal_ctl_check_account(v[COL_TO], "to_account_id", &to, &e)) && to == account) {
        bal_ctl_error_set(&e, "usage", "a TRANSFER needs to_account_id different from account_id");
        ok = false;
    }
    if (ok && !transfer && v[COL_TO][0] != '\0') {
        bal_ctl_error_set(&e, "usage", "to_account_id is only for TRANSFER");
        ok = false;
    }
    ok = ok && bal_ctl_check_memo(v[COL_MEMO], strlen(v[COL_MEMO]), &e);
    if (!ok) bal_ctl_error_set(error, "usage", "%s:%u: %s", c->path, c->record_line, e.message);
    return ok;
}

/* Appends one row as a transaction object, then has the server's decoder check it. */
static bool csv_row(csv *c, const int *map, bal_text *body, bal_ctl_error *error) {
    static char empty[1] = "";
    char *v[CSV_COLUMNS] = {empty, empty, empty, empty, empty, empty, empty};
    for (unsigned i = 0; i < c->count; i++) v[map[i]] = map[i] == COL_MEMO ? c->fields[i] : trimmed(c->fields[i]);
    const char *type = NULL;
    char amount[BAL_MONEY_TEXT_MAX + 1];
    if (!csv_row_check(c, v, &type, amount, error)) return false;
    size_t start = body->length;
    bal_text_cstr(body, "{\"transaction_id\":");
    bal_text_json_string(body, v[COL_ID], strlen(v[COL_ID]));
    bal_text_cstr(body, ",\"type\":\"");
    bal_text_cstr(body, type);
    bal_text_cstr(body, "\",\"account_id\":");
    bal_text_cstr(body, v[COL_ACCOUNT]);
    bal_text_cstr(body, ",\"currency\":\"");
    bal_text_cstr(body, v[COL_CURRENCY]);
    bal_text_cstr(body, "\",\"amount\":\"");
    bal_text_cstr(body, amount);
    bal_text_cstr(body, "\"");
    if (v[COL_TO][0] != '\0') {
        bal_text_cstr(body, ",\"to_account_id\":");
        bal_text_cstr(body, v[COL_TO]);
    }
    if (v[COL_MEMO][0] != '\0') {
        bal_text_cstr(body, ",\"memo\":");
        bal_text_json_string(body, v[COL_MEMO], strlen(v[COL_MEMO]));
    }
    bal_text_cstr(body, "}");
    if (bal_text_failed(body)) {
        bal_ctl_error_set(error, "usage", "%s: the batch body would exceed 32 MiB", c->path);
        return false;
    }
    bal_json_token tokens[64];
    bal_command command;
    bal_decode_diagnostic diagnostic;
    bal_decode_error e = bal_decode_transaction(body->data + start, body->length - start, tokens, 64, 0, &command,
                                                &diagnostic);
    if (e == BAL_DECODE_OK) return true;
    bal_ctl_error_set(error, "usage", "%s:%u: %s: %s", c->path, c->record_line, bal_decode_error_code(e),
                      diagnostic.message);
    return false;
}

static bool csv_load(const char *path, const char *text, size_t length, bal_text *body, uint32_t *items_out,
                     bal_ctl_error *error) {
    csv *c = calloc(1, sizeof(*c));
    if (c == NULL) {
        bal_ctl_error_set(error, "out_of_memory", "CSV parser");
        return false;
    }
    bool bom = length >= 3 && memcmp(text, "\xEF\xBB\xBF", 3) == 0;
    *c = (csv){.path = path, .text = text, .length = length, .at = bom ? 3 : 0, .line = 1};
    int map[CSV_COLUMNS];
    int state = csv_record(c, error);
    bool ok = state > 0 && csv_header(c, map, error);
    if (state == 0) bal_ctl_error_set(error, "usage", "%s: empty file (expected a header row)", path);
    uint32_t items = 0;
    bal_text_cstr(body, "{\"transactions\":[");
    while (ok && (state = csv_record(c, error)) > 0) {
        if (c->count == 1 && c->lengths[0] == 0) continue; /* a blank line */
        if (++items > BAL_BATCH_ITEMS_MAX) {
            bal_ctl_error_set(error, "usage", "%s:%u: more than %d rows", path, c->record_line, BAL_BATCH_ITEMS_MAX);
            ok = false;
            break;
        }
        if (items > 1) bal_text_cstr(body, ",");
        ok = csv_row(c, map, body, error);
    }
    ok = ok && state == 0;
    bal_text_cstr(body, "]}");
    if (ok && items == 0) {
        bal_ctl_error_set(error, "usage", "%s: no rows after the header", path);
        ok = false;
    }
    *items_out = items;
    free(c);
    return ok;
}

/* ---- entry ------------------------------------------------------------------------------------ */

static const char *batch_format(const char *path, const char *format) {
    if (format != NULL) return strcasecmp(format, "json") == 0 ? "json" : strcasecmp(format, "csv") == 0 ? "csv" : NULL;
    const char *dot = strrchr(path, '.');
    if (dot != NULL && strcasecmp(dot, ".json") == 0) return "json";
    if (dot != NULL && strcasecmp(dot, ".csv") == 0) return "csv";
    return NULL;
}

bool bal_ctl_batch_load(const char *path, const char *format, bal_text *body, uint32_t *items_out,
                        bal_ctl_error *error) {
    const char *kind = batch_format(path, format);
    if (kind == NULL) {
        if (format != NULL) bal_ctl_error_set(error, "usage", "--format must be json or csv");
        else bal_ctl_error_set(error, "usage", "%s: name the file .json or .csv, or pass --format json|csv", path);
        return false;
    }
    char *text = NULL;
    size_t length = 0;
    if (!read_file(path, &text, &length, error)) return false;
    bool ok = strcmp(kind, "json") == 0 ? json_load(path, text, length, body, items_out, error)
                                        : csv_load(path, text, length, body, items_out, error);
    free(text);
    return ok;
}
