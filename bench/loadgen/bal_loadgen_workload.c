/*
 * bal_loadgen_workload.c -- request templates of the load generator (see the header).
 *
 * Rendering runs once per request on the generator's hot path, so it appends pieces to a
 * reusable buffer and formats numbers by hand; a workload without placeholders or hook is
 * rendered once and copied.
 */
#include "bal_loadgen_workload.h"

#include <assert.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Digits of a 64-bit number. */
#define BAL_WORKLOAD_DIGITS_MAX 20

static const char bal_workload_deposit[] =
    "{\"transaction_id\":\"{tx}\",\"type\":\"DEPOSIT\",\"account_id\":{account},"
    "\"currency\":\"{currency}\",\"amount\":\"{amount}\"}";
static const char bal_workload_withdraw[] =
    "{\"transaction_id\":\"{tx}\",\"type\":\"WITHDRAW\",\"account_id\":{account},"
    "\"currency\":\"{currency}\",\"amount\":\"{amount}\"}";
static const char bal_workload_transfer[] =
    "{\"transaction_id\":\"{tx}\",\"type\":\"TRANSFER\",\"account_id\":{account},"
    "\"to_account_id\":{account2},\"currency\":\"{currency}\",\"amount\":\"{amount}\"}";

const char *bal_workload_builtin(const char *name) {
    assert(name != NULL);
    if (strcmp(name, "deposit") == 0) return bal_workload_deposit;
    if (strcmp(name, "withdraw") == 0) return bal_workload_withdraw;
    if (strcmp(name, "transfer") == 0) return bal_workload_transfer;
    return NULL;
}

/* Replaces every `name` in text by `value`; returns a new string or NULL. */
static char *bal_workload_substitute(const char *text, const char *name, const char *value) {
    size_t name_length = strlen(name);
    size_t value_length = strlen(value);
    size_t count = 0;
    for (const char *at = strstr(text, name); at != NULL; at = strstr(at + name_length, name)) count++;
    size_t length = strlen(text) + count * value_length + 1;
    char *result = malloc(length);
    if (result == NULL) return NULL;
    char *out = result;
    const char *from = text;
    for (const char *at = strstr(from, name); at != NULL; at = strstr(from, name)) {
        memcpy(out, from, (size_t)(at - from));
        out += at - from;
        memcpy(out, value, value_length);
        out += value_length;
        from = at + name_length;
    }
    strcpy(out, from);
    return result;
}

static bal_template_kind bal_template_placeholder(const char *text, size_t *length) {
    static const struct {
        const char *name;
        bal_template_kind kind;
    } names[] = {{"{tx}", BAL_TEMPLATE_TRANSACTION_ID}, {"{account}", BAL_TEMPLATE_ACCOUNT},
                 {"{account2}", BAL_TEMPLATE_ACCOUNT_OTHER}, {"{seq}", BAL_TEMPLATE_SEQUENCE}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        size_t name_length = strlen(names[i].name);
        if (strncmp(text, names[i].name, name_length) == 0) {
            *length = name_length;
            return names[i].kind;
        }
    }
    *length = 0;
    return BAL_TEMPLATE_LITERAL;
}

static bool bal_template_add(bal_template *template_, bal_template_kind kind, const char *text,
                             size_t length) {
    if (kind == BAL_TEMPLATE_LITERAL && length == 0) return true;
    if (template_->segment_count == BAL_TEMPLATE_SEGMENTS_MAX) return false;
    bal_template_segment *segment = &template_->segments[template_->segment_count++];
    segment->kind = kind;
    segment->text = text;
    segment->length = length;
    if (kind != BAL_TEMPLATE_LITERAL) template_->fixed = false;
    return true;
}

bool bal_template_compile(bal_template *template_, const char *text, const char *amount,
                          const char *currency, char *errstr, size_t errstr_size) {
    assert(template_ != NULL && text != NULL && amount != NULL && currency != NULL);
    memset(template_, 0, sizeof *template_);
    template_->fixed = true;
    char *with_amount = bal_workload_substitute(text, "{amount}", amount);
    template_->text = with_amount != NULL ? bal_workload_substitute(with_amount, "{currency}", currency) : NULL;
    free(with_amount);
    if (template_->text == NULL) {
        snprintf(errstr, errstr_size, "out of memory");
        return false;
    }
    const char *literal = template_->text;
    const char *cursor = template_->text;
    while (*cursor != '\0') {
        size_t length = 0;
        bal_template_kind kind = *cursor == '{' ? bal_template_placeholder(cursor, &length) : BAL_TEMPLATE_LITERAL;
        if (kind == BAL_TEMPLATE_LITERAL) {
            cursor++;
            continue;
        }
        if (!bal_template_add(template_, BAL_TEMPLATE_LITERAL, literal, (size_t)(cursor - literal)) ||
            !bal_template_add(template_, kind, cursor, length)) {
            snprintf(errstr, errstr_size, "template has more than %d parts", BAL_TEMPLATE_SEGMENTS_MAX);
            return false;
        }
        cursor += length;
        literal = cursor;
    }
    if (!bal_template_add(template_, BAL_TEMPLATE_LITERAL, literal, (size_t)(cursor - literal))) {
        snprintf(errstr, errstr_size, "template has more than %d parts", BAL_TEMPLATE_SEGMENTS_MAX);
        return false;
    }
    return true;
}

void bal_template_free(bal_template *template_) {
    assert(template_ != NULL);
    free(template_->text);
    memset(template_, 0, sizeof *template_);
}

/* xorshift64*: fast, good enough to spread accounts, and reproducible from the seed. */
static uint64_t bal_workload_random(bal_workload_state *state) {
    uint64_t x = state->random;
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    state->random = x;
    return x * 0x2545F4914F6CDD1Dull;
}

static bool bal_workload_append_decimal(bal_http_buffer *out, uint64_t value) {
    char digits[BAL_WORKLOAD_DIGITS_MAX];
    size_t count = 0;
    do {
        digits[BAL_WORKLOAD_DIGITS_MAX - 1 - count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    return bal_http_buffer_append(out, digits + BAL_WORKLOAD_DIGITS_MAX - count, count);
}

/* Fresh values for one operation. */
typedef struct bal_workload_values {
    uint64_t account;
    uint64_t account_other;
} bal_workload_values;

static void bal_workload_draw(const bal_workload *workload, bal_workload_state *state,
                              bal_workload_values *values) {
    uint64_t accounts = workload->accounts;
    assert(accounts > 0);
    values->account = 1 + bal_workload_random(state) % accounts;
    values->account_other = values->account;
    if (accounts > 1) {
        /* Any other account, uniformly: skip over the first one. */
        uint64_t other = 1 + bal_workload_random(state) % (accounts - 1);
        values->account_other = other >= values->account ? other + 1 : other;
    }
}

static bool bal_workload_append_transaction_id(const bal_workload *workload, bal_workload_state *state,
                                               bal_http_buffer *out) {
    return bal_http_buffer_append(out, workload->run_id, strlen(workload->run_id)) &&
           bal_http_buffer_append(out, "-", 1) &&
           bal_workload_append_decimal(out, state->thread_index) &&
           bal_http_buffer_append(out, "-", 1) &&
           bal_workload_append_decimal(out, state->transaction_counter++);
}

static bool bal_template_render(const bal_workload *workload, const bal_template *template_,
                                bal_workload_state *state, bal_http_buffer *out) {
    bal_workload_values values;
    bal_workload_draw(workload, state, &values);
    bool ok = true;
    for (size_t i = 0; i < template_->segment_count && ok; i++) {
        const bal_template_segment *segment = &template_->segments[i];
        switch (segment->kind) {
        case BAL_TEMPLATE_LITERAL: ok = bal_http_buffer_append(out, segment->text, segment->length); break;
        case BAL_TEMPLATE_TRANSACTION_ID: ok = bal_workload_append_transaction_id(workload, state, out); break;
        case BAL_TEMPLATE_ACCOUNT: ok = bal_workload_append_decimal(out, values.account); break;
        case BAL_TEMPLATE_ACCOUNT_OTHER: ok = bal_workload_append_decimal(out, values.account_other); break;
        case BAL_TEMPLATE_SEQUENCE: ok = bal_workload_append_decimal(out, state->sequence); break;
        }
    }
    return ok;
}

static const bal_template *bal_workload_pick(const bal_workload *workload, bal_workload_state *state) {
    if (workload->operation_count == 1) return &workload->operations[0];
    uint64_t draw = bal_workload_random(state) % workload->weight_total;
    for (uint32_t i = 0; i < workload->operation_count; i++) {
        if (draw < workload->weights[i]) return &workload->operations[i];
        draw -= workload->weights[i];
    }
    return &workload->operations[workload->operation_count - 1];
}

/* Renders the body into state->body; *operations gets how many it carries. */
static bool bal_workload_render_body(const bal_workload *workload, bal_workload_state *state,
                                     uint32_t *operations) {
    state->body.length = 0;
    *operations = 1;
    if (workload->operation_count == 0) return true;
    if (workload->batch == 0) {
        return bal_template_render(workload, bal_workload_pick(workload, state), state, &state->body);
    }
    static const char open[] = "{\"transactions\":[";
    bool ok = bal_http_buffer_append(&state->body, open, sizeof open - 1);
    for (uint32_t i = 0; i < workload->batch && ok; i++) {
        if (i > 0) ok = bal_http_buffer_append(&state->body, ",", 1);
        if (ok) ok = bal_template_render(workload, bal_workload_pick(workload, state), state, &state->body);
    }
    *operations = workload->batch;
    return ok && bal_http_buffer_append(&state->body, "]}", 2);
}

static bool bal_workload_append_head(const bal_workload *workload, bal_workload_state *state,
                                     bal_http_buffer *out) {
    bool ok = bal_http_buffer_append(out, workload->method, strlen(workload->method)) &&
              bal_http_buffer_append(out, " ", 1) &&
              bal_http_buffer_append(out, state->path.data, state->path.length) &&
              bal_http_buffer_append(out, " HTTP/1.1\r\nHost: ", 17) &&
              bal_http_buffer_append(out, workload->host_header, strlen(workload->host_header)) &&
              bal_http_buffer_append(out, "\r\n", 2);
    if (ok && workload->operation_count > 0) {
        static const char type[] = "Content-Type: application/json\r\nContent-Length: ";
        ok = bal_http_buffer_append(out, type, sizeof type - 1) &&
             bal_workload_append_decimal(out, state->body.length) && bal_http_buffer_append(out, "\r\n", 2);
    }
    if (ok && workload->extra_headers != NULL) {
        ok = bal_http_buffer_append(out, workload->extra_headers, strlen(workload->extra_headers));
    }
    return ok && bal_http_buffer_append(out, state->headers.data, state->headers.length) &&
           bal_http_buffer_append(out, "\r\n", 2);
}

static bool bal_workload_build(const bal_workload *workload, bal_workload_state *state,
                               bal_http_buffer *out, uint32_t *operations) {
    state->path.length = 0;
    state->headers.length = 0;
    if (!bal_template_render(workload, &workload->path, state, &state->path)) return false;
    if (!bal_workload_render_body(workload, state, operations)) return false;
    if (workload->hook != NULL) {
        bal_loadgen_request_view view = {
            .method = workload->method, .path = state->path.data, .path_length = state->path.length,
            .body = state->body.data, .body_length = state->body.length, .sequence = state->sequence,
            .thread_index = state->thread_index};
        if (!workload->hook(workload->hook_context, &view, &state->headers)) return false;
    }
    bool ok = bal_workload_append_head(workload, state, out) &&
              bal_http_buffer_append(out, state->body.data, state->body.length);
    state->sequence++;
    return ok;
}

bool bal_workload_pregenerate(const bal_workload *workload, bal_workload_state *state, uint64_t count) {
    assert(workload != NULL && state != NULL && count >= 1);
    assert(state->prepared_count == 0); /* once per state */
    if (count > SIZE_MAX / sizeof *state->prepared_end) return false;
    state->prepared_end = malloc((size_t)count * sizeof *state->prepared_end);
    state->prepared_operations = malloc((size_t)count * sizeof *state->prepared_operations);
    if (state->prepared_end == NULL || state->prepared_operations == NULL) return false;
    for (uint64_t i = 0; i < count; i++) {
        if (!bal_workload_build(workload, state, &state->prepared, &state->prepared_operations[i])) return false;
        if (state->prepared.length > BAL_WORKLOAD_PREGENERATED_BYTES_MAX) return false;
        state->prepared_end[i] = state->prepared.length;
    }
    state->prepared_count = count;
    state->prepared_next = 0;
    return true;
}

/* Hands out the next pre-generated request; false once they are all sent. */
static bool bal_workload_take_prepared(bal_workload_state *state, bal_http_buffer *out, uint32_t *operations) {
    if (state->prepared_next == state->prepared_count) return false;
    uint64_t index = state->prepared_next++;
    size_t start = index == 0 ? 0 : state->prepared_end[index - 1];
    assert(state->prepared_end[index] > start && state->prepared_end[index] <= state->prepared.length);
    *operations = state->prepared_operations[index];
    return bal_http_buffer_append(out, state->prepared.data + start, state->prepared_end[index] - start);
}

bool bal_workload_append_request(const bal_workload *workload, bal_workload_state *state,
                                 bal_http_buffer *out, uint32_t *operations) {
    assert(workload != NULL && state != NULL && out != NULL && operations != NULL);
    if (state->prepared_end != NULL) return bal_workload_take_prepared(state, out, operations);
    if (workload->fixed) {
        state->sequence++;
        *operations = workload->batch == 0 ? 1 : workload->batch;
        return bal_http_buffer_append(out, workload->fixed_request.data, workload->fixed_request.length);
    }
    return bal_workload_build(workload, state, out, operations);
}

bool bal_workload_prepare(bal_workload *workload) {
    assert(workload != NULL && workload->method != NULL && workload->accounts > 0);
    assert(workload->operation_count <= BAL_WORKLOAD_OPERATIONS_MAX);
    assert(workload->batch <= BAL_WORKLOAD_BATCH_MAX);
    workload->weight_total = 0;
    bool fixed = workload->path.fixed && workload->hook == NULL;
    for (uint32_t i = 0; i < workload->operation_count; i++) {
        workload->weight_total += workload->weights[i];
        fixed = fixed && workload->operations[i].fixed;
    }
    assert(workload->operation_count == 0 || workload->weight_total > 0);
    workload->fixed = false;
    if (!fixed) return true;
    bal_workload_state state;
    bal_workload_state_init(&state, 0, 1);
    uint32_t operations = 0;
    bool ok = bal_workload_build(workload, &state, &workload->fixed_request, &operations);
    bal_workload_state_free(&state);
    workload->fixed = ok;
    return ok;
}

void bal_workload_free(bal_workload *workload) {
    assert(workload != NULL);
    bal_template_free(&workload->path);
    for (uint32_t i = 0; i < BAL_WORKLOAD_OPERATIONS_MAX; i++) bal_template_free(&workload->operations[i]);
    free(workload->extra_headers);
    workload->extra_headers = NULL;
    bal_http_buffer_free(&workload->fixed_request);
}

void bal_workload_state_init(bal_workload_state *state, uint32_t thread_index, uint64_t seed) {
    assert(state != NULL);
    memset(state, 0, sizeof *state);
    state->thread_index = thread_index;
    /* Distinct, never zero: xorshift must not start at 0. */
    state->random = (seed ^ (0x9E3779B97F4A7C15ull * (thread_index + 1))) | 1;
}

void bal_workload_state_free(bal_workload_state *state) {
    assert(state != NULL);
    bal_http_buffer_free(&state->path);
    bal_http_buffer_free(&state->body);
    bal_http_buffer_free(&state->headers);
    bal_http_buffer_free(&state->prepared);
    free(state->prepared_end);
    free(state->prepared_operations);
    state->prepared_end = NULL;
    state->prepared_operations = NULL;
    state->prepared_count = 0;
}
