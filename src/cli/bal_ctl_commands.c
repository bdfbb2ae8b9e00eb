/*
 * bal_ctl_commands.c -- the commands: build the request, send it, report the answer.
 *
 * Bodies are built with bal_text (the JSON escaping the server's renderer uses) and then
 * decoded with the server's own decoder before sending: a body the server would refuse as
 * malformed is caught here, where the message can name the argument.
 */
#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bal_ctl.h"
#include "bal_decode.h"
#include "bal_types.h"

typedef enum report_kind {
    REPORT_OUTCOME,
    REPORT_BATCH,
    REPORT_BALANCES,
    REPORT_BALANCE,
    REPORT_TRANSACTION,
    REPORT_HISTORY,
    REPORT_STATUS,
    REPORT_TEXT,
} report_kind;

static int usage_failure(const bal_ctl_error *error) {
    bal_ctl_error_print(error);
    return BAL_CTL_EXIT_USAGE;
}

/* ---- reporting the response ------------------------------------------------------------ */

/* A non-2xx answer that is not a business outcome: report its error code. */
static int report_refusal(const bal_ctl_response *r, const bal_ctl_json *doc, bool parsed) {
    bal_ctl_error error;
    char code[64] = "", message[400] = "";
    if (parsed) {
        bal_ctl_json_field(doc, 0, "error", "", code, sizeof(code));
        bal_ctl_json_field(doc, 0, "message", "", message, sizeof(message));
        if (code[0] == '\0') bal_ctl_json_field(doc, 0, "status", "", message, sizeof(message));
    } else {
        /* Not our JSON (a proxy's page, say): show its start. */
        snprintf(message, sizeof(message), "%.200s", r->body != NULL ? r->body : "");
        message[strcspn(message, "\r\n")] = '\0';
    }
    if (code[0] == '\0') snprintf(code, sizeof(code), "http_%d", r->status);
    bool retry = r->retry_after[0] != '\0';
    bal_ctl_error_set(&error, code, "%s%s%s%s%s", message, retry && message[0] != '\0' ? "; " : "",
                      retry ? "retry after " : "", r->retry_after, retry ? " s" : "");
    bal_ctl_error_print(&error);
    return r->status >= 400 && r->status < 500 ? BAL_CTL_EXIT_REFUSED : BAL_CTL_EXIT_UNAVAILABLE;
}

static int report_batch(const bal_ctl_context *context, const bal_ctl_json *doc) {
    bal_ctl_tally tally = {0};
    if (context->json) bal_ctl_tally_batch(doc, &tally);
    else bal_ctl_print_batch(stdout, doc, &tally);
    if (tally.invalid == 0 && tally.rejected == 0) return BAL_CTL_EXIT_OK;
    fflush(stdout);
    fprintf(stderr, "balancectl: batch: %u rejected, %u invalid\n", tally.rejected, tally.invalid);
    /* Malformed items need fixing before a retry; rejections may just need funds. */
    return tally.invalid > 0 ? BAL_CTL_EXIT_REFUSED : BAL_CTL_EXIT_REJECTED;
}

/* A 2xx answer: print it, and say whether it was ok. */
static int report_success(const bal_ctl_context *context, report_kind kind, const bal_ctl_json *doc) {
    if (kind == REPORT_BATCH) return report_batch(context, doc);
    char result[64] = "ok";
    if (kind == REPORT_OUTCOME) bal_ctl_json_field(doc, 0, "result", "-", result, sizeof(result));
    if (!context->json) {
        bal_ctl_tally tally = {0};
        if (kind == REPORT_OUTCOME) bal_ctl_print_outcome(stdout, doc, 0, &tally);
        if (kind == REPORT_BALANCES) bal_ctl_print_balances(stdout, doc);
        if (kind == REPORT_BALANCE) bal_ctl_print_balance(stdout, doc);
        if (kind == REPORT_TRANSACTION) bal_ctl_print_transaction(stdout, doc);
        if (kind == REPORT_HISTORY) bal_ctl_print_history(stdout, doc);
        if (kind == REPORT_STATUS) {
            char status[64];
            bal_ctl_json_field(doc, 0, "status", "-", status, sizeof(status));
            bal_ctl_print_safe(stdout, status);
            fputc('\n', stdout);
        }
    }
    if (strcmp(result, "ok") == 0) return BAL_CTL_EXIT_OK;
    fflush(stdout);
    fputs("balancectl: ", stderr);
    bal_ctl_print_safe(stderr, result);
    fputc('\n', stderr);
    return BAL_CTL_EXIT_REJECTED;
}

static int report(const bal_ctl_context *context, report_kind kind, const bal_ctl_response *r) {
    assert(r->body != NULL && r->body[r->body_length] == '\0');
    if (context->json || kind == REPORT_TEXT) {
        fwrite(r->body, 1, r->body_length, stdout);
        if (r->body_length > 0 && r->body[r->body_length - 1] != '\n') fputc('\n', stdout);
    }
    bool success = r->status >= 200 && r->status < 300;
    if (kind == REPORT_TEXT && success) return BAL_CTL_EXIT_OK;
    bal_ctl_json doc;
    bool loaded = bal_ctl_json_load(&doc, r->body, r->body_length);
    bool parsed = loaded && bal_ctl_json_is(&doc, 0, BAL_JSON_OBJECT);
    int status;
    if (success && !parsed) {
        fflush(stdout);
        fprintf(stderr, "balancectl: bad_response: HTTP %d with a body that is not a JSON object\n", r->status);
        status = BAL_CTL_EXIT_UNAVAILABLE;
    } else if (success) {
        status = report_success(context, kind, &doc);
    } else if (parsed && kind == REPORT_OUTCOME && bal_ctl_json_member(&doc, 0, "result") != BAL_CTL_JSON_NONE) {
        /* A business outcome (422, 409, 507): processed, its id consumed, not applied. */
        bal_ctl_tally tally = {0};
        char result[64];
        if (!context->json) bal_ctl_print_outcome(stdout, &doc, 0, &tally);
        bal_ctl_json_field(&doc, 0, "result", "-", result, sizeof(result));
        fflush(stdout);
        fputs("balancectl: ", stderr);
        bal_ctl_print_safe(stderr, result);
        fputc('\n', stderr);
        status = BAL_CTL_EXIT_REJECTED;
    } else {
        status = report_refusal(r, &doc, parsed);
    }
    if (loaded) bal_ctl_json_free(&doc);
    return status;
}

static int send_request(bal_ctl_context *context, report_kind kind, const char *method, const char *target,
                        const bal_text *body) {
    bal_ctl_response response;
    bal_ctl_error error;
    fflush(stderr);
    if (!bal_ctl_http_exchange(&context->endpoint, &context->key, context->timeout_ms, method, target,
                               body != NULL ? body->data : NULL, body != NULL ? body->length : 0, &response,
                               &error)) {
        bal_ctl_error_print(&error);
        return BAL_CTL_EXIT_UNAVAILABLE;
    }
    int status = report(context, kind, &response);
    bal_ctl_response_free(&response);
    if (fflush(stdout) != 0 && status == BAL_CTL_EXIT_OK) {
        fputs("balancectl: output_failed: could not write to standard output\n", stderr);
        status = BAL_CTL_EXIT_UNAVAILABLE;
    }
    return status;
}

/* ---- transactions ------------------------------------------------------------------------ */

/* --id as given, or a fresh id, announced so that a retry (after a timeout, say) can pass
 * it again and get the original answer instead of a second effect. */
static bool transaction_id(const bal_ctl_cli *cli, char *out, size_t size, bal_ctl_error *error) {
    if (cli->id != NULL) {
        if (!bal_ctl_check_transaction_id(cli->id, error)) return false;
        snprintf(out, size, "%s", cli->id);
        return true;
    }
    if (!bal_ctl_generate_id(out, size, error)) return false;
    fprintf(stderr, "balancectl: transaction id %s (pass --id %s to retry)\n", out, out);
    return true;
}

static void body_begin(bal_text *body, const char *id, const char *type) {
    bal_text_cstr(body, "{\"transaction_id\":");
    bal_text_json_string(body, id, strlen(id));
    bal_text_cstr(body, ",\"type\":\"");
    bal_text_cstr(body, type);
    bal_text_cstr(body, "\"");
}

static void body_field(bal_text *body, const char *name, const char *value, bool quoted) {
    bal_text_cstr(body, ",\"");
    bal_text_cstr(body, name);
    bal_text_cstr(body, quoted ? "\":\"" : "\":");
    bal_text_cstr(body, value);
    if (quoted) bal_text_cstr(body, "\"");
}

/* Closes the body and runs the server's decoder over it. */
static bool body_end(bal_text *body, const bal_ctl_cli *cli, bal_ctl_error *error) {
    if (cli->memo != NULL) {
        bal_text_cstr(body, ",\"memo\":");
        bal_text_json_string(body, cli->memo, strlen(cli->memo));
    }
    bal_text_cstr(body, "}");
    if (bal_text_failed(body)) {
        bal_ctl_error_set(error, "out_of_memory", "request body");
        return false;
    }
    bal_json_token tokens[256];
    bal_command command;
    bal_decode_diagnostic diagnostic;
    bal_decode_error e = bal_decode_transaction(body->data, body->length, tokens, 256, 0, &command, &diagnostic);
    if (e == BAL_DECODE_OK) return true;
    bal_ctl_error_set(error, "usage", "%s: %s", bal_decode_error_code(e), diagnostic.message);
    return false;
}

static int post_transaction(const bal_ctl_cli *cli, bal_ctl_context *context, bal_text *body) {
    bal_ctl_error error;
    if (!body_end(body, cli, &error)) return usage_failure(&error);
    return send_request(context, REPORT_OUTCOME, "POST", "/v1/transactions", body);
}

static bool check_memo_option(const bal_ctl_cli *cli, bal_ctl_error *error) {
    return cli->memo == NULL || bal_ctl_check_memo(cli->memo, strlen(cli->memo), error);
}

int bal_ctl_run_typed(const char *type, const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    uint64_t account;
    char amount[BAL_MONEY_TEXT_MAX + 1], id[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
    if (!bal_ctl_check_account(cli->args[1], "ACCOUNT", &account, &error) ||
        !bal_ctl_check_currency(cli->args[2], "CURRENCY", &error) ||
        !bal_ctl_check_amount(cli->args[3], "AMOUNT", amount, &error) || !check_memo_option(cli, &error) ||
        !transaction_id(cli, id, sizeof(id), &error)) {
        return usage_failure(&error);
    }
    bal_text body;
    bal_text_init(&body, BAL_BODY_BYTES_MAX);
    body_begin(&body, id, type);
    body_field(&body, "account_id", cli->args[1], false);
    body_field(&body, "currency", cli->args[2], true);
    body_field(&body, "amount", amount, true);
    int status = post_transaction(cli, context, &body);
    bal_text_free(&body);
    return status;
}

int bal_ctl_run_transfer(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    uint64_t from, to;
    char amount[BAL_MONEY_TEXT_MAX + 1], id[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
    bool ok = bal_ctl_check_account(cli->args[1], "FROM", &from, &error) &&
              bal_ctl_check_account(cli->args[2], "TO", &to, &error);
    if (ok && from == to) {
        bal_ctl_error_set(&error, "usage", "FROM and TO must be different accounts");
        ok = false;
    }
    if (!ok || !bal_ctl_check_currency(cli->args[3], "CURRENCY", &error) ||
        !bal_ctl_check_amount(cli->args[4], "AMOUNT", amount, &error) || !check_memo_option(cli, &error) ||
        !transaction_id(cli, id, sizeof(id), &error)) {
        return usage_failure(&error);
    }
    bal_text body;
    bal_text_init(&body, BAL_BODY_BYTES_MAX);
    body_begin(&body, id, "TRANSFER");
    body_field(&body, "account_id", cli->args[1], false);
    body_field(&body, "to_account_id", cli->args[2], false);
    body_field(&body, "currency", cli->args[3], true);
    body_field(&body, "amount", amount, true);
    int status = post_transaction(cli, context, &body);
    bal_text_free(&body);
    return status;
}

/* One --leg ACCOUNT:CURRENCY:AVAILABLE_DELTA:FROZEN_DELTA, appended as a leg object. */
static bool event_leg(const char *spec, unsigned index, bal_text *body, char seen[][48], bal_ctl_error *error) {
    char copy[256], what[64], available[BAL_MONEY_TEXT_MAX + 1], frozen[BAL_MONEY_TEXT_MAX + 1];
    char *parts[5] = {NULL};
    unsigned count = 0;
    uint64_t account;
    snprintf(copy, sizeof(copy), "%s", spec);
    for (char *p = copy; count < 5 && p != NULL; count++) {
        parts[count] = p;
        p = strchr(p, ':');
        if (p != NULL) *p++ = '\0';
    }
    snprintf(what, sizeof(what), "--leg %u", index + 1);
    if (count != 4 || strlen(spec) >= sizeof(copy)) {
        bal_ctl_error_set(error, "usage", "%s must be ACCOUNT:CURRENCY:AVAILABLE_DELTA:FROZEN_DELTA, not \"%.80s\"",
                          what, spec);
        return false;
    }
    if (!bal_ctl_check_account(parts[0], what, &account, error) || !bal_ctl_check_currency(parts[1], what, error) ||
        !bal_ctl_check_delta(parts[2], what, available, error) || !bal_ctl_check_delta(parts[3], what, frozen, error)) {
        return false;
    }
    snprintf(seen[index], 48, "%s:%s", parts[0], parts[1]);
    for (unsigned i = 0; i < index; i++) {
        if (strcmp(seen[i], seen[index]) == 0) {
            bal_ctl_error_set(error, "usage", "two legs on account %s currency %s", parts[0], parts[1]);
            return false;
        }
    }
    bal_text_cstr(body, index == 0 ? "{\"account_id\":" : ",{\"account_id\":");
    bal_text_cstr(body, parts[0]);
    body_field(body, "currency", parts[1], true);
    body_field(body, "available_delta", available, true);
    body_field(body, "frozen_delta", frozen, true);
    bal_text_cstr(body, "}");
    return true;
}

int bal_ctl_run_event(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    char id[BAL_TRANSACTION_ID_LENGTH_MAX + 1], seen[BAL_EVENT_LEGS_MAX][48];
    if (cli->leg_count == 0 || cli->leg_count > BAL_EVENT_LEGS_MAX) {
        bal_ctl_error_set(&error, "usage", "an event needs 1 to %d --leg options", BAL_EVENT_LEGS_MAX);
        return usage_failure(&error);
    }
    bal_text legs;
    bal_text_init(&legs, BAL_BODY_BYTES_MAX);
    bool ok = true;
    for (unsigned i = 0; ok && i < cli->leg_count; i++) ok = event_leg(cli->legs[i], i, &legs, seen, &error);
    ok = ok && check_memo_option(cli, &error) && transaction_id(cli, id, sizeof(id), &error);
    int status = BAL_CTL_EXIT_USAGE;
    if (!ok) {
        bal_ctl_error_print(&error);
    } else {
        bal_text body;
        bal_text_init(&body, BAL_BODY_BYTES_MAX);
        body_begin(&body, id, "EVENT");
        bal_text_cstr(&body, ",\"legs\":[");
        bal_text_append(&body, legs.data, legs.length);
        bal_text_cstr(&body, "]");
        status = post_transaction(cli, context, &body);
        bal_text_free(&body);
    }
    bal_text_free(&legs);
    return status;
}

int bal_ctl_run_batch(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    bal_text body;
    uint32_t items = 0;
    bal_text_init(&body, BAL_BODY_BYTES_MAX);
    int status;
    if (!bal_ctl_batch_load(cli->args[1], cli->format, &body, &items, &error)) {
        status = usage_failure(&error);
    } else {
        status = send_request(context, REPORT_BATCH, "POST", "/v1/transactions/batch", &body);
    }
    bal_text_free(&body);
    return status;
}

/* ---- reads ------------------------------------------------------------------------------- */

int bal_ctl_run_balance(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    uint64_t account;
    char target[BAL_CTL_PATH_MAX];
    if (!bal_ctl_check_account(cli->args[1], "ACCOUNT", &account, &error)) return usage_failure(&error);
    if (cli->arg_count > 2 && !bal_ctl_check_currency(cli->args[2], "CURRENCY", &error)) return usage_failure(&error);
    if (cli->arg_count > 2) {
        snprintf(target, sizeof(target), "/v1/accounts/%s/balances/%s", cli->args[1], cli->args[2]);
        return send_request(context, REPORT_BALANCE, "GET", target, NULL);
    }
    snprintf(target, sizeof(target), "/v1/accounts/%s/balances", cli->args[1]);
    return send_request(context, REPORT_BALANCES, "GET", target, NULL);
}

int bal_ctl_run_tx(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    char target[BAL_CTL_PATH_MAX];
    /* The id's characters (A-Z a-z 0-9 . _ : -) need no escaping in a path. */
    if (!bal_ctl_check_transaction_id(cli->args[1], &error)) return usage_failure(&error);
    snprintf(target, sizeof(target), "/v1/transactions/%s", cli->args[1]);
    return send_request(context, REPORT_TRANSACTION, "GET", target, NULL);
}

/* Percent-encodes all but RFC 3986's unreserved characters. */
static void query_value(bal_text *out, const char *value) {
    static const char hex[] = "0123456789ABCDEF";
    for (const unsigned char *p = (const unsigned char *)value; *p != '\0'; p++) {
        bool plain = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') || (*p >= '0' && *p <= '9') ||
                     *p == '-' || *p == '.' || *p == '_' || *p == '~';
        char escaped[3] = {'%', hex[*p >> 4], hex[*p & 15]};
        bal_text_append(out, plain ? (const char *)p : escaped, plain ? 1 : 3);
    }
}

static bool check_history_options(const bal_ctl_cli *cli, bal_ctl_error *error) {
    if (cli->currency != NULL && !bal_ctl_check_currency(cli->currency, "--currency", error)) return false;
    if (cli->limit != NULL) {
        char *end = NULL;
        unsigned long limit = strtoul(cli->limit, &end, 10);
        if (cli->limit[0] < '0' || cli->limit[0] > '9' || *end != '\0' || limit < 1 || limit > 1000) {
            bal_ctl_error_set(error, "usage", "--limit must be a number from 1 to 1000, not \"%.40s\"", cli->limit);
            return false;
        }
    }
    if (cli->before != NULL && (cli->before[0] == '\0' || strlen(cli->before) > 256)) {
        bal_ctl_error_set(error, "usage", "--before takes the next_before cursor of the previous page");
        return false;
    }
    return true;
}

int bal_ctl_run_history(const bal_ctl_cli *cli, bal_ctl_context *context) {
    bal_ctl_error error;
    uint64_t account;
    if (!bal_ctl_check_account(cli->args[1], "ACCOUNT", &account, &error) || !check_history_options(cli, &error)) {
        return usage_failure(&error);
    }
    bal_text target;
    bal_text_init(&target, BAL_CTL_PATH_MAX);
    bal_text_cstr(&target, "/v1/accounts/");
    bal_text_cstr(&target, cli->args[1]);
    bal_text_cstr(&target, "/transactions");
    const char *names[] = {"currency", "limit", "before"};
    const char *values[] = {cli->currency, cli->limit, cli->before};
    char separator = '?';
    for (int i = 0; i < 3; i++) {
        if (values[i] == NULL) continue;
        bal_text_append(&target, &separator, 1);
        bal_text_cstr(&target, names[i]);
        bal_text_cstr(&target, "=");
        query_value(&target, values[i]);
        separator = '&';
    }
    bal_text_append(&target, "", 1); /* the NUL */
    int status = bal_text_failed(&target) ? BAL_CTL_EXIT_USAGE
                                          : send_request(context, REPORT_HISTORY, "GET", target.data, NULL);
    bal_text_free(&target);
    return status;
}

int bal_ctl_run_service(const char *path, const bal_ctl_cli *cli, bal_ctl_context *context) {
    (void)cli;
    return send_request(context, strcmp(path, "/metrics") == 0 ? REPORT_TEXT : REPORT_STATUS, "GET", path, NULL);
}
