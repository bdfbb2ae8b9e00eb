/*
 * bal_routes.c -- the HTTP API of SPEC on top of the node.
 *
 * Runs on the HTTP I/O threads. Writes decode the body into commands and queue them to
 * their shard (or, spanning shards, to the coordinator) and defer the request: the answer
 * comes from the shard once the command is durable and applied. Balance reads are queued
 * to the owning shard as well. Journal reads (transaction look-up, history) wait until the
 * journal holds everything acknowledged so far, then query this thread's connection.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bal_log.h"
#include "bal_node_internal.h"
#include "bal_render.h"

/* Tokens for one transaction body; batch bodies use the large per-thread array. */
#define SINGLE_TOKENS_MAX 4096u

uint32_t bal_node_route(const bal_node *node, const bal_command *command, uint32_t *shards, uint16_t *masks);
void bal_batch_item_done(bal_node *node, bal_batch_reply *batch);

/* The id of the request this thread is handling (handlers run to completion on it). */
static _Thread_local char request_id[BAL_REQUEST_ID_MAX + 1];
static _Thread_local uint64_t request_counter;

static bool request_id_valid(const char *text, size_t length) {
    if (length == 0 || length > BAL_REQUEST_ID_MAX) return false;
    for (size_t i = 0; i < length; i++) {
        char c = text[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == ':' || c == '-')) return false;
    }
    return true;
}

/* The headers the routes read, looked up in one pass per request. */
enum { FIELD_REQUEST_ID, FIELD_API_KEY, FIELD_TIMESTAMP, FIELD_NONCE, FIELD_SIGNATURE, FIELD_COUNT };
static const char *const field_names[FIELD_COUNT] = {"x-request-id", "x-api-key", "x-timestamp", "x-nonce",
                                                     "x-signature"};

/* value as `digits` lower-case hex digits (its low 4 * digits bits). */
static void put_hex(char *out, uint64_t value, int digits) {
    static const char hex[] = "0123456789abcdef";
    for (int i = digits - 1; i >= 0; i--) {
        out[i] = hex[value & 15];
        value >>= 4;
    }
}

/* The client's X-Request-Id if it is usable, else thread, time and a counter in hex. */
static void set_request_id(bal_http_request *request, const bal_http_field *client_id) {
    if (client_id->count > 0 && request_id_valid(client_id->value, client_id->length)) {
        memcpy(request_id, client_id->value, client_id->length);
        request_id[client_id->length] = '\0';
        return;
    }
    static _Atomic uint64_t process_salt;
    uint64_t salt = atomic_load(&process_salt);
    if (salt == 0) {
        uint64_t expected = 0;
        atomic_compare_exchange_strong(&process_salt, &expected, (uint64_t)bal_node_now_ns() | 1);
        salt = atomic_load(&process_salt);
    }
    /* 8 digits of salt, 2 of thread, 6 of counter */
    put_hex(request_id, (uint32_t)(salt >> 13), 8);
    put_hex(request_id + 8, bal_http_request_thread_index(request) & 0xff, 2);
    put_hex(request_id + 10, ++request_counter & 0xffffff, 6);
    request_id[16] = '\0';
}

static void fill_reply(bal_reply *reply, bal_http_request *request) {
    memset(reply, 0, sizeof(*reply));
    reply->request = request;
    memcpy(reply->request_id, request_id, sizeof(request_id));
}

static int64_t unix_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_REALTIME, &t);
    return (int64_t)t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

static void respond_error(bal_node *node, bal_http_request *request, int route, int status, const char *code,
                          const char *message) {
    atomic_fetch_add(&node->metrics.requests[route][status / 100], 1);
    bal_node_send_error(request, request_id, status, code, message);
}

static void respond_text(bal_node *node, bal_http_request *request, int route, int status, bal_text *text) {
    atomic_fetch_add(&node->metrics.requests[route][status / 100], 1);
    if (bal_text_failed(text)) {
        bal_node_send_error(request, request_id, 500, "response_too_large", "the response could not be built");
        return;
    }
    bal_node_send(request, request_id, status, route == BAL_ROUTE_METRICS ? "text/plain; version=0.0.4" : "application/json",
                  text->data, text->length);
}

/* ---- authentication ---- */

/* This thread's request once authenticated: its key, held until the request is handled. */
static _Thread_local bal_auth_grant request_grant;

/* The time of this thread's request: read once, for the signature's window, the charge and
   the commands' timestamps. */
static _Thread_local int64_t request_now_ms;

/* A header that must appear at most once: a second one makes it "" (malformed to the check). */
static void single_header(const bal_http_field *field, const char **value, size_t *length) {
    *value = field->count == 0 ? NULL : field->count == 1 ? field->value : "";
    *length = field->count == 1 ? field->length : 0;
}

static void refuse(bal_node *node, bal_http_request *request, int route, const bal_auth_decision *decision) {
    if (decision->http_status == 429) {
        atomic_fetch_add(&node->metrics.rate_limited, 1);
    } else {
        atomic_fetch_add(&node->metrics.auth_rejected[bal_metrics_auth_reason(decision->reason)], 1);
    }
    atomic_fetch_add(&node->metrics.requests[route][decision->http_status / 100], 1);
    bal_log(BAL_LOG_INFO, "request_refused", "\"request_id\":\"%s\",\"status\":%d,\"reason\":\"%s\",\"key\":\"%s\"",
            request_id, decision->http_status, decision->reason, decision->key_id);
    bal_node_send_retry(request, request_id, decision->http_status, decision->error, decision->message,
                        decision->http_status == 429 || decision->http_status == 503 ? decision->retry_after_s : 0);
}

/* Checks the signature and permission of an API request (no-op without keys). */
static bool authenticate(bal_node *node, bal_http_request *request, const bal_http_head *head,
                         const bal_http_field *fields, const char *body, size_t body_length, int route) {
    if (node->auth == NULL) return true;
    bal_auth_request auth = {
        .method = head->method_text, .method_length = head->method_length,
        .path_with_query = head->target, .path_length = head->target_length,
        .body = body, .body_length = body_length, .now_ms = request_now_ms,
    };
    single_header(&fields[FIELD_API_KEY], &auth.api_key, &auth.api_key_length);
    single_header(&fields[FIELD_TIMESTAMP], &auth.timestamp, &auth.timestamp_length);
    single_header(&fields[FIELD_NONCE], &auth.nonce, &auth.nonce_length);
    single_header(&fields[FIELD_SIGNATURE], &auth.signature, &auth.signature_length);
    bal_permission needed = head->method == BAL_HTTP_METHOD_POST ? BAL_PERMISSION_WRITE : BAL_PERMISSION_READ;
    bal_auth_decision decision;
    bal_auth_reader *reader = node->auth_readers[bal_http_request_thread_index(request)];
    if (!bal_auth_check_grant(node->auth, reader, &auth, needed, &decision, &request_grant)) {
        refuse(node, request, route, &decision);
        return false;
    }
    return true;
}

/* Charges the key's budgets: one request and `operations` operations (a batch counts its
 * items). No-op without keys. */
static bool charge(bal_node *node, bal_http_request *request, int route, uint32_t operations) {
    if (node->auth == NULL) return true;
    bal_auth_decision decision;
    if (bal_auth_charge_grant(&request_grant, operations, request_now_ms, &decision)) return true;
    refuse(node, request, route, &decision);
    return false;
}

/* Queues one decoded command for its shard(s); the command is heap-owned from here on. */
static bool submit(bal_node *node, bal_command *command, const bal_reply *reply) {
    uint32_t shards[BAL_EVENT_LEGS_MAX];
    uint16_t masks[BAL_EVENT_LEGS_MAX];
    uint32_t count = bal_node_route(node, command, shards, masks);
    if (count == 1) {
        bal_entry entry = {.kind = BAL_ENTRY_COMMAND, .command = command, .reply = *reply};
        return bal_queue_push(&node->shards[shards[0]].queue, &entry);
    }
    bal_cross *cross = calloc(1, sizeof(*cross));
    if (cross == NULL) return false;
    cross->command = command;
    cross->reply = *reply;
    cross->shard_count = count;
    memcpy(cross->shards, shards, count * sizeof(uint32_t));
    memcpy(cross->masks, masks, count * sizeof(uint16_t));
    /* One mutex orders every cross-shard command the same way in every queue. */
    pthread_mutex_lock(&node->cross_route_mutex);
    cross->ticket = ++node->cross_tickets;
    bool ok = true;
    for (uint32_t k = 0; k < count && ok; k++) {
        bal_entry park = {.kind = BAL_ENTRY_PARK, .cross = cross};
        ok = bal_queue_push(&node->shards[shards[k]].queue, &park);
    }
    ok = ok && bal_queue_push(&node->coordinator_queue, &cross);
    pthread_mutex_unlock(&node->cross_route_mutex);
    return ok;
}

/* This thread's token array (the node frees them at stop). */
static bal_json_token *tokens_for(bal_json_token **slots, bal_http_request *request, size_t count) {
    bal_json_token **slot = &slots[bal_http_request_thread_index(request)];
    if (*slot == NULL) *slot = malloc(count * sizeof(bal_json_token));
    return *slot;
}

static void post_transaction(bal_node *node, bal_http_request *request, const char *body, size_t length) {
    bal_json_token *single_tokens = tokens_for(node->single_tokens, request, SINGLE_TOKENS_MAX);
    bal_command *command = malloc(sizeof(bal_command));
    if (single_tokens == NULL || command == NULL) {
        free(command);
        respond_error(node, request, BAL_ROUTE_TRANSACTION, 503, "server_busy", "out of memory");
        return;
    }
    bal_decode_diagnostic diagnostic;
    bal_decode_error error = bal_decode_transaction(body, length, single_tokens, SINGLE_TOKENS_MAX, request_now_ms, command,
                                                    &diagnostic);
    if (!charge(node, request, BAL_ROUTE_TRANSACTION, error == BAL_DECODE_OK ? 1 : 0)) {
        free(command);
        return;
    }
    if (error != BAL_DECODE_OK) {
        free(command);
        atomic_fetch_add(&node->metrics.decode_errors, 1);
        respond_error(node, request, BAL_ROUTE_TRANSACTION, 400, bal_decode_error_code(error), diagnostic.message);
        return;
    }
    bal_http_request_defer(request);
    bal_reply reply;
    fill_reply(&reply, request);
    reply.received_ns = bal_node_now_ns();
    if (!submit(node, command, &reply)) {
        free(command);
        bal_node_send_error(request, request_id, 503, "stopping", "the node is stopping");
    }
}

static void batch_item_error(bal_node *node, bal_batch_reply *batch, uint32_t index, const bal_decode_diagnostic *d) {
    atomic_fetch_add(&node->metrics.decode_errors, 1);
    bal_text *slot = &batch->items[index];
    bal_text_init(slot, BAL_NODE_RESPONSE_BYTES_MAX);
    bal_render_item_error(slot, d);
    bal_batch_item_done(node, batch);
}

static void post_batch(bal_node *node, bal_http_request *request, const char *body, size_t length) {
    bal_json_token *batch_tokens = tokens_for(node->batch_tokens, request, BAL_DECODE_TOKENS_MAX);
    if (batch_tokens == NULL) {
        respond_error(node, request, BAL_ROUTE_BATCH, 503, "server_busy", "out of memory");
        return;
    }
    uint32_t first = 0, count = 0;
    bal_decode_diagnostic diagnostic;
    bal_decode_error error = bal_decode_batch(body, length, batch_tokens, BAL_DECODE_TOKENS_MAX, &first, &count, &diagnostic);
    if (!charge(node, request, BAL_ROUTE_BATCH, error == BAL_DECODE_OK ? count : 0)) return;
    if (error != BAL_DECODE_OK) {
        atomic_fetch_add(&node->metrics.decode_errors, 1);
        respond_error(node, request, BAL_ROUTE_BATCH, error == BAL_DECODE_INVALID_JSON && strstr(diagnostic.message, "too_many_tokens") ? 413 : 400,
                      bal_decode_error_code(error), diagnostic.message);
        return;
    }
    bal_batch_reply *batch = calloc(1, sizeof(*batch));
    bal_text *items = calloc(count ? count : 1, sizeof(bal_text));
    if (batch == NULL || items == NULL) {
        free(batch);
        free(items);
        respond_error(node, request, BAL_ROUTE_BATCH, 503, "server_busy", "out of memory");
        return;
    }
    bal_http_request_defer(request);
    batch->request = request;
    memcpy(batch->request_id, request_id, sizeof(request_id));
    batch->count = count;
    batch->items = items;
    batch->received_ns = bal_node_now_ns();
    atomic_store(&batch->remaining, count + 1); /* + 1: held until every item is queued */
    int64_t now = request_now_ms;
    uint32_t item = first;
    for (uint32_t i = 0; i < count; i++, item = batch_tokens[item].next) {
        bal_command *command = malloc(sizeof(bal_command));
        if (command == NULL) {
            diagnostic = (bal_decode_diagnostic){.error = BAL_DECODE_INVALID_BATCH};
            snprintf(diagnostic.message, sizeof(diagnostic.message), "out of memory");
            batch_item_error(node, batch, i, &diagnostic);
            continue;
        }
        if (bal_decode_object(body, batch_tokens, item, now, command, &diagnostic) != BAL_DECODE_OK) {
            free(command);
            batch_item_error(node, batch, i, &diagnostic);
            continue;
        }
        bal_reply reply = {.batch = batch, .index = i};
        memcpy(reply.request_id, request_id, sizeof(request_id));
        if (!submit(node, command, &reply)) {
            free(command);
            snprintf(diagnostic.message, sizeof(diagnostic.message), "the node is stopping");
            batch_item_error(node, batch, i, &diagnostic);
        }
    }
    bal_batch_item_done(node, batch);
}

static void read_balances(bal_node *node, bal_http_request *request, uint64_t account, const char *currency, size_t length) {
    bal_entry entry = {.kind = BAL_ENTRY_READ_ACCOUNT, .account_id = account};
    int route = BAL_ROUTE_BALANCES;
    if (currency != NULL) {
        route = BAL_ROUTE_BALANCE;
        if (!bal_currency_parse(currency, length, &entry.currency)) {
            respond_error(node, request, route, 400, "invalid_currency", "currency must be 1 to 10 characters of A-Z 0-9");
            return;
        }
        entry.kind = BAL_ENTRY_READ_BALANCE;
    }
    atomic_fetch_add(&node->metrics.requests[route][2], 1);
    bal_http_request_defer(request);
    fill_reply(&entry.reply, request);
    if (!bal_queue_push(&node->shards[bal_node_shard_of(node, account)].queue, &entry)) {
        bal_node_send_error(request, request_id, 503, "stopping", "the node is stopping");
    }
}

/* ---- journal reads ---- */

typedef struct rows_collector {
    bal_journal_row *rows;
    size_t count;
    size_t capacity;
} rows_collector;

static bool collect_row(void *context, const bal_journal_row *row) {
    rows_collector *c = context;
    if (c->count == c->capacity) return false;
    c->rows[c->count++] = *row;
    return true;
}

static void amount_field(bal_text *t, const char *name, bal_amount amount) {
    bal_text_cstr(t, name);
    bal_text_amount(t, amount);
}

static void transaction_body(bal_text *t, const bal_journal_row *rows, size_t count) {
    const bal_journal_row *first = &rows[0];
    bal_text_cstr(t, "{\"transaction_id\":");
    bal_text_json_string(t, first->transaction_id, strlen(first->transaction_id));
    bal_text_cstr(t, ",\"type\":\"");
    bal_text_cstr(t, bal_journal_type_name(first->type));
    bal_text_cstr(t, "\",\"result\":\"");
    bal_text_cstr(t, first->result);
    bal_text_cstr(t, "\",\"sequence\":");
    bal_text_u64(t, first->sequence);
    bal_text_cstr(t, ",\"time\":");
    bal_text_i64(t, first->time_ms);
    bal_text_cstr(t, ",\"memo\":");
    if (first->has_memo) bal_text_json_string(t, first->memo, first->memo_length); else bal_text_cstr(t, "null");
    if (first->type == BAL_JOURNAL_TYPE_EVENT) {
        bal_text_cstr(t, ",\"legs\":[");
        for (size_t i = 0; i < count; i++) {
            bal_text_cstr(t, i ? ",{\"account_id\":" : "{\"account_id\":");
            bal_text_u64(t, rows[i].account_id);
            bal_text_cstr(t, ",\"currency\":");
            bal_text_json_string(t, rows[i].currency, strlen(rows[i].currency));
            amount_field(t, ",\"available_delta\":", rows[i].leg_available_delta);
            amount_field(t, ",\"frozen_delta\":", rows[i].leg_frozen_delta);
            bal_text_cstr(t, "}");
        }
        bal_text_cstr(t, "]");
    } else {
        bal_text_cstr(t, ",\"account_id\":");
        bal_text_u64(t, first->leg == 0 ? first->account_id : first->account_id);
        bal_text_cstr(t, ",\"currency\":");
        bal_text_json_string(t, first->currency, strlen(first->currency));
        amount_field(t, ",\"amount\":", first->amount);
        if (first->type == BAL_JOURNAL_TYPE_TRANSFER) {
            bal_text_cstr(t, ",\"to_account_id\":");
            bal_text_u64(t, first->to_account_id);
        }
    }
    bal_text_cstr(t, ",\"balances\":[");
    for (size_t i = 0; i < count; i++) {
        bal_currency currency = {0};
        bal_currency_parse(rows[i].currency, strlen(rows[i].currency), &currency); /* checked when read */
        if (i > 0) bal_text_append(t, ",", 1);
        bal_render_balance(t, rows[i].account_id, currency, rows[i].available_after, rows[i].frozen_after);
    }
    bal_text_cstr(t, "]}");
}

/* Rows of one id come in (shard, sequence, leg) order; put them in leg order. */
static void sort_by_leg(bal_journal_row *rows, size_t count) {
    for (size_t i = 1; i < count; i++) {
        for (size_t j = i; j > 0 && rows[j - 1].leg > rows[j].leg; j--) {
            bal_journal_row swap = rows[j];
            rows[j] = rows[j - 1];
            rows[j - 1] = swap;
        }
    }
}

static void get_transaction(bal_node *node, bal_http_request *request, const char *id, size_t length) {
    char text[BAL_TRANSACTION_ID_LENGTH_MAX + 1];
    if (!bal_transaction_id_valid(id, length)) {
        respond_error(node, request, BAL_ROUTE_TRANSACTION_LOOKUP, 400, "invalid_transaction_id",
                      "transaction_id must be 1 to 64 characters of A-Z a-z 0-9 . _ : -");
        return;
    }
    memcpy(text, id, length);
    text[length] = '\0';
    if (!bal_node_wait_persisted(node, -1, node->config.read_wait_ms)) {
        respond_error(node, request, BAL_ROUTE_TRANSACTION_LOOKUP, 503, "journal_behind", "the journal is catching up; retry");
        return;
    }
    static _Thread_local bal_journal_row rows[BAL_COMMAND_BALANCES_MAX];
    rows_collector collector = {rows, 0, BAL_COMMAND_BALANCES_MAX};
    const char *ids[1] = {text};
    char error[256];
    bal_journal *reader = node->readers[bal_http_request_thread_index(request)];
    if (bal_journal_find_transactions(reader, ids, 1, collect_row, &collector, error, sizeof(error)) != BAL_JOURNAL_OK &&
        collector.count == 0) {
        respond_error(node, request, BAL_ROUTE_TRANSACTION_LOOKUP, 500, "journal_error", "the journal could not be read");
        return;
    }
    if (collector.count == 0) {
        respond_error(node, request, BAL_ROUTE_TRANSACTION_LOOKUP, 404, "not_found", "no transaction has this id");
        return;
    }
    sort_by_leg(rows, collector.count);
    bal_text body;
    bal_text_init(&body, BAL_NODE_RESPONSE_BYTES_MAX);
    transaction_body(&body, rows, collector.count);
    respond_text(node, request, BAL_ROUTE_TRANSACTION_LOOKUP, 200, &body);
    bal_text_free(&body);
}

typedef struct history_render {
    bal_text *text;
    size_t count;
} history_render;

static bool history_row(void *context, const bal_journal_row *row) {
    history_render *h = context;
    bal_text *t = h->text;
    bal_text_cstr(t, h->count++ ? ",{\"transaction_id\":" : "{\"transaction_id\":");
    bal_text_json_string(t, row->transaction_id, strlen(row->transaction_id));
    bal_text_cstr(t, ",\"type\":\"");
    bal_text_cstr(t, bal_journal_type_name(row->type));
    bal_text_cstr(t, "\",\"currency\":");
    bal_text_json_string(t, row->currency, strlen(row->currency));
    if (row->type == BAL_JOURNAL_TYPE_EVENT) bal_text_cstr(t, ",\"amount\":null"); else amount_field(t, ",\"amount\":", row->amount);
    bal_text_cstr(t, ",\"result\":\"");
    bal_text_cstr(t, row->result);
    bal_text_cstr(t, "\",\"sequence\":");
    bal_text_u64(t, row->sequence);
    bal_text_cstr(t, ",\"time\":");
    bal_text_i64(t, row->time_ms);
    bal_text_cstr(t, ",\"memo\":");
    if (row->has_memo) bal_text_json_string(t, row->memo, row->memo_length); else bal_text_cstr(t, "null");
    amount_field(t, ",\"available_before\":", row->available_before);
    amount_field(t, ",\"available_after\":", row->available_after);
    amount_field(t, ",\"frozen_before\":", row->frozen_before);
    amount_field(t, ",\"frozen_after\":", row->frozen_after);
    amount_field(t, ",\"available_delta\":", row->available_delta);
    amount_field(t, ",\"frozen_delta\":", row->frozen_delta);
    bal_text_cstr(t, "}");
    return true;
}

/* Finds name=value in a query string; value points into the query (not decoded: the
 * values we accept need no percent-decoding). */
static bool query_value(const char *query, size_t length, const char *name, const char **value, size_t *value_length) {
    size_t n = strlen(name);
    size_t i = 0;
    while (query != NULL && i < length) {
        size_t end = i;
        while (end < length && query[end] != '&') end++;
        if (end - i > n && memcmp(query + i, name, n) == 0 && query[i + n] == '=') {
            *value = query + i + n + 1;
            *value_length = end - i - n - 1;
            return true;
        }
        i = end + 1;
    }
    return false;
}

static bool parse_u64(const char *text, size_t length, uint64_t *out) {
    return bal_decode_account_id(text, length, out); /* digits, no leading zero, 1..2^64-1 */
}

static void get_history(bal_node *node, bal_http_request *request, uint64_t account, const bal_http_head *head) {
    const char *value;
    size_t length;
    char currency[BAL_CURRENCY_LENGTH_MAX + 1];
    bal_journal_history_query query = {.account_id = account};
    if (query_value(head->query, head->query_length, "currency", &value, &length) && length > 0) {
        bal_currency parsed;
        if (!bal_currency_parse(value, length, &parsed)) {
            respond_error(node, request, BAL_ROUTE_HISTORY, 400, "invalid_currency", "currency must be 1 to 10 characters of A-Z 0-9");
            return;
        }
        memcpy(currency, value, length);
        currency[length] = '\0';
        query.currency = currency;
    }
    uint64_t number = 0;
    if (query_value(head->query, head->query_length, "limit", &value, &length)) {
        if (!parse_u64(value, length, &number) || number > BAL_JOURNAL_HISTORY_LIMIT_MAX) {
            respond_error(node, request, BAL_ROUTE_HISTORY, 400, "invalid_limit", "limit must be an integer from 1 to 1000");
            return;
        }
        query.limit = (uint32_t)number;
    }
    if (query_value(head->query, head->query_length, "before", &value, &length) && length > 0) {
        if (!parse_u64(value, length, &number)) {
            respond_error(node, request, BAL_ROUTE_HISTORY, 400, "invalid_before", "before must be a next_before value from an earlier page");
            return;
        }
        query.before = number;
    }
    if (!bal_node_wait_persisted(node, bal_node_shard_of(node, account), node->config.read_wait_ms)) {
        respond_error(node, request, BAL_ROUTE_HISTORY, 503, "journal_behind", "the journal is catching up; retry");
        return;
    }
    bal_text body;
    bal_text_init(&body, BAL_NODE_RESPONSE_BYTES_MAX);
    bal_text_cstr(&body, "{\"account_id\":");
    bal_text_u64(&body, account);
    bal_text_cstr(&body, ",\"transactions\":[");
    history_render render = {&body, 0};
    uint64_t next = BAL_JOURNAL_CURSOR_NONE;
    char error[256];
    bal_journal *reader = node->readers[bal_http_request_thread_index(request)];
    if (bal_journal_history(reader, &query, history_row, &render, &next, error, sizeof(error)) != BAL_JOURNAL_OK) {
        bal_text_free(&body);
        respond_error(node, request, BAL_ROUTE_HISTORY, 500, "journal_error", "the journal could not be read");
        return;
    }
    bal_text_cstr(&body, "],\"next_before\":");
    if (next == BAL_JOURNAL_CURSOR_NONE) {
        bal_text_cstr(&body, "null}");
    } else {
        bal_text_cstr(&body, "\"");
        bal_text_u64(&body, next);
        bal_text_cstr(&body, "\"}");
    }
    respond_text(node, request, BAL_ROUTE_HISTORY, 200, &body);
    bal_text_free(&body);
}

static void get_metrics(bal_node *node, bal_http_request *request) {
    bal_metrics_gauges gauges;
    memset(&gauges, 0, sizeof(gauges));
    gauges.shard_count = node->config.shard_count;
    gauges.ready = (uint64_t)atomic_load(&node->ready);
    gauges.id_filter_ids = bal_ids_remembered(node->ids);
    gauges.journal_lag_ids = bal_ids_unstored(node->ids);
    gauges.journal_lag_waits = bal_ids_ring_waits(node->ids);
    bal_metrics_process(&gauges, node->config.data_dir, node->start_time_seconds);
    for (uint32_t s = 0; s < node->config.shard_count && s < 64; s++) {
        bal_shard *shard = &node->shards[s];
        gauges.queue_depth[s] = bal_queue_depth(&shard->queue);
        uint64_t acked = atomic_load(&shard->acked_lsn), persisted = atomic_load(&shard->persisted_lsn);
        gauges.persister_lag[s] = acked > persisted ? acked - persisted : 0;
        gauges.balances[s] = atomic_load(&shard->balance_count);
    }
    bal_text body;
    bal_text_init(&body, 1u << 20);
    bal_metrics_render(&node->metrics, &gauges, &body);
    respond_text(node, request, BAL_ROUTE_METRICS, 200, &body);
    bal_text_free(&body);
}

/* ---- dispatch ---- */

static bool path_is(const bal_http_head *head, const char *path) {
    size_t n = strlen(path);
    return head->path_length == n && memcmp(head->path, path, n) == 0;
}

/* Splits "/v1/accounts/{id}/rest" into the id and rest (without the slash). */
static bool account_path(const bal_http_head *head, const char **id, size_t *id_length, const char **rest, size_t *rest_length) {
    static const char prefix[] = "/v1/accounts/";
    size_t p = sizeof(prefix) - 1;
    if (head->path_length <= p || memcmp(head->path, prefix, p) != 0) return false;
    const char *start = head->path + p;
    const char *slash = memchr(start, '/', head->path_length - p);
    if (slash == NULL) return false;
    *id = start;
    *id_length = (size_t)(slash - start);
    *rest = slash + 1;
    *rest_length = head->path_length - p - *id_length - 1;
    return true;
}

static void wrong_method(bal_node *node, bal_http_request *request, int route) {
    respond_error(node, request, route, 405, "method_not_allowed", "this route does not take that method");
}

static void accounts_route(bal_node *node, bal_http_request *request, const bal_http_head *head) {
    const char *id, *rest;
    size_t id_length, rest_length;
    uint64_t account = 0;
    if (!account_path(head, &id, &id_length, &rest, &rest_length)) {
        respond_error(node, request, BAL_ROUTE_OTHER, 404, "not_found", "no such route");
        return;
    }
    bool balances = rest_length >= 8 && memcmp(rest, "balances", 8) == 0 && (rest_length == 8 || rest[8] == '/');
    bool history = rest_length == 12 && memcmp(rest, "transactions", 12) == 0;
    int route = history ? BAL_ROUTE_HISTORY : rest_length > 8 ? BAL_ROUTE_BALANCE : BAL_ROUTE_BALANCES;
    if (!balances && !history) {
        respond_error(node, request, BAL_ROUTE_OTHER, 404, "not_found", "no such route");
        return;
    }
    if (head->method != BAL_HTTP_METHOD_GET && head->method != BAL_HTTP_METHOD_HEAD) {
        wrong_method(node, request, route);
        return;
    }
    if (!bal_decode_account_id(id, id_length, &account)) {
        respond_error(node, request, route, 400, "invalid_account", "account_id must be an integer from 1 to 18446744073709551615");
        return;
    }
    if (history) {
        get_history(node, request, account, head);
    } else if (rest_length == 8) {
        read_balances(node, request, account, NULL, 0);
    } else if (memchr(rest + 9, '/', rest_length - 9) != NULL) {
        respond_error(node, request, BAL_ROUTE_OTHER, 404, "not_found", "no such route");
    } else {
        read_balances(node, request, account, rest + 9, rest_length - 9);
    }
}

static void simple_json(bal_node *node, bal_http_request *request, int route, int status, const char *json) {
    bal_text text;
    char buffer[128];
    bal_text_init_with(&text, buffer, sizeof(buffer), sizeof(buffer));
    bal_text_cstr(&text, json);
    respond_text(node, request, route, status, &text);
}

/* Authenticates an API request, then hands it to its route. */
static void dispatch(bal_node *node, bal_http_request *request, const bal_http_head *head, const bal_http_field *fields,
                     const char *body, size_t body_length) {
    bool get = head->method == BAL_HTTP_METHOD_GET || head->method == BAL_HTTP_METHOD_HEAD;
    bool post = head->method == BAL_HTTP_METHOD_POST;
    /* Every /v1 route is authenticated; /health, /ready and /metrics are for probes and
     * scrapers, which cannot sign (restrict them by network). GETs are charged at once; a
     * POST is charged once its body tells how many operations it carries. */
    bool api = head->path_length >= 4 && memcmp(head->path, "/v1/", 4) == 0;
    if (api && (get || post)) {
        if (!authenticate(node, request, head, fields, body, body_length, BAL_ROUTE_OTHER)) return;
        if (get && !charge(node, request, BAL_ROUTE_OTHER, 0)) return;
    }
    if (path_is(head, "/v1/transactions")) {
        if (post) post_transaction(node, request, body, body_length); else wrong_method(node, request, BAL_ROUTE_TRANSACTION);
    } else if (path_is(head, "/v1/transactions/batch")) {
        if (post) post_batch(node, request, body, body_length); else wrong_method(node, request, BAL_ROUTE_BATCH);
    } else if (head->path_length > 17 && memcmp(head->path, "/v1/transactions/", 17) == 0) {
        if (get) get_transaction(node, request, head->path + 17, head->path_length - 17);
        else wrong_method(node, request, BAL_ROUTE_TRANSACTION_LOOKUP);
    } else if (head->path_length > 13 && memcmp(head->path, "/v1/accounts/", 13) == 0) {
        accounts_route(node, request, head);
    } else if (path_is(head, "/health")) {
        if (get) simple_json(node, request, BAL_ROUTE_HEALTH, 200, "{\"status\":\"ok\"}"); else wrong_method(node, request, BAL_ROUTE_HEALTH);
    } else if (path_is(head, "/ready")) {
        bool ready = atomic_load(&node->ready) && !atomic_load(&node->stopping);
        if (!get) wrong_method(node, request, BAL_ROUTE_READY);
        else simple_json(node, request, BAL_ROUTE_READY, ready ? 200 : 503, ready ? "{\"status\":\"ready\"}" : "{\"status\":\"not_ready\"}");
    } else if (path_is(head, "/metrics")) {
        if (get) get_metrics(node, request); else wrong_method(node, request, BAL_ROUTE_METRICS);
    } else {
        respond_error(node, request, BAL_ROUTE_OTHER, 404, "not_found", "no such route");
    }
}

void bal_routes_handle(void *context, bal_http_request *request, const bal_http_head *head, const char *body,
                       size_t body_length) {
    bal_node *node = context;
    bal_http_field fields[FIELD_COUNT];
    bal_http_head_find_all(head, field_names, FIELD_COUNT, fields);
    set_request_id(request, &fields[FIELD_REQUEST_ID]);
    request_now_ms = unix_ms();
    dispatch(node, request, head, fields, body, body_length);
    bal_auth_grant_release(&request_grant);
}
