/*
 * bench_json.c -- request-body JSON: bal_json/bal_decode against jansson and cJSON.
 *
 * Two workloads, both made of valid TRANSFER requests whose ids, accounts, currencies,
 * amounts and memos vary (nothing repeats, so no branch or cache is trained on one body):
 *
 *   single   8192 distinct bodies of about 150 bytes, one request each
 *   batch    8 distinct bodies {"transactions":[...]} of 1000 items each, one request each
 *
 * Each library is measured in up to three steps:
 *
 *   parse     jansson json_loadb + json_decref, cJSON_ParseWithLength + cJSON_Delete,
 *             bal_json_parse (tokens into a caller array; nothing to free)
 *   extract   parse, then look every field up by key, copy the strings into a fixed struct
 *             (the amount as its raw text), read account ids as integers, refuse unknown
 *             fields by comparing the member count; for bal_* this step is the real
 *             decoder, bal_decode_transaction / bal_decode_batch + bal_decode_object,
 *             which also validates every field and builds a bal_command
 *   validate  jansson/cJSON only: extract, then the same checks and conversions as the
 *             decoder (id charset, type name, currency packing, exact amount parsing,
 *             TRANSFER rules, bal_command_valid) into a bal_command: equal work to bal_decode
 *
 * One process, one thread. All candidates run interleaved: each of ROUNDS rounds runs
 * every (workload, candidate) pair once for about RUN_SECONDS, in an order rotated per
 * round, and the table reports each pair's median round. Before timing, an untimed pass
 * checks that every candidate accepts every body and extracts the same values, and counts
 * allocations: jansson through json_set_alloc_funcs, cJSON through cJSON_InitHooks, and
 * bal_api/bal_core through linker wraps of malloc/calloc/realloc (see CMakeLists.txt).
 *
 * Run: bench_json [seconds_per_run]   (default 0.3)
 */
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cJSON.h>
#include <jansson.h>

#include "bal_decode.h"
#include "bal_json.h"

#define ROUNDS 5
#define SINGLE_BODIES 8192
#define BATCH_BODIES 8
#define BATCH_ITEMS 1000
#define SINGLE_TOKENS_MAX 4096u /* what the service gives one transaction body */
#define CHUNK 256               /* single requests between clock reads (batches: 1) */

/* ---- allocation counting ------------------------------------------------------------ */

static uint64_t alloc_calls;
static uint64_t alloc_bytes;

/* bal_api/bal_core (and this file) reach malloc through these when linked with --wrap. */
void *__real_malloc(size_t size);
void *__real_calloc(size_t count, size_t size);
void *__real_realloc(void *pointer, size_t size);
void *__wrap_malloc(size_t size);
void *__wrap_calloc(size_t count, size_t size);
void *__wrap_realloc(void *pointer, size_t size);

void *__wrap_malloc(size_t size) {
    alloc_calls++;
    alloc_bytes += size;
    return __real_malloc(size);
}
void *__wrap_calloc(size_t count, size_t size) {
    alloc_calls++;
    alloc_bytes += count * size;
    return __real_calloc(count, size);
}
void *__wrap_realloc(void *pointer, size_t size) {
    alloc_calls++;
    alloc_bytes += size;
    return __real_realloc(pointer, size);
}

/* Hooks for the libraries: they allocate inside their shared objects, which --wrap does
 * not reach. Installed only for the counting pass; the timed runs use plain malloc/free. */
static void *hook_malloc(size_t size) {
    alloc_calls++;
    alloc_bytes += size;
    return __real_malloc(size);
}
static void hook_free(void *pointer) {
    free(pointer);
}

static void counting_hooks(bool on) {
    if (on) {
        json_set_alloc_funcs(hook_malloc, hook_free);
        cJSON_Hooks hooks = {hook_malloc, hook_free};
        cJSON_InitHooks(&hooks);
    } else {
        json_set_alloc_funcs(__real_malloc, free); /* plain `malloc` here would be the wrap */
        cJSON_InitHooks(NULL);
    }
}

/* ---- the bodies --------------------------------------------------------------------- */

typedef struct body {
    char *text;
    size_t length;
    uint32_t items;
    uint64_t check; /* sum over items of account_id + to_account_id + id length + memo length */
} body;

static body singles[SINGLE_BODIES];
static body batches[BATCH_BODIES];

static uint64_t rng = 0x9E3779B97F4A7C15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void die(const char *what) {
    fprintf(stderr, "bench_json: %s\n", what);
    exit(1);
}

static void *xmalloc(size_t size) {
    void *p = malloc(size);
    if (p == NULL) die("out of memory");
    return p;
}

/* One transaction object, e.g.
 * {"transaction_id":"bench-000123","type":"TRANSFER","account_id":123456,"to_account_id":654321,
 *  "currency":"USDT","amount":"1234.56789","memo":"order 42"} */
static size_t make_item(char *out, size_t capacity, uint32_t serial, uint64_t *check) {
    static const char *const currencies[] = {"USDT", "USDC", "BTC", "ETH"};
    uint64_t from = 100000 + rnd() % 900000;
    uint64_t to = 100000 + (from - 100000 + 1 + rnd() % 899999) % 900000;
    char id[32], memo[32];
    int id_length = snprintf(id, sizeof(id), "bench-%06" PRIu32, serial);
    int memo_length = snprintf(memo, sizeof(memo), "order %" PRIu64, rnd() % 1000);
    int n = snprintf(out, capacity,
                     "{\"transaction_id\":\"%s\",\"type\":\"TRANSFER\",\"account_id\":%" PRIu64
                     ",\"to_account_id\":%" PRIu64 ",\"currency\":\"%s\",\"amount\":\"%" PRIu64 ".%05" PRIu64
                     "\",\"memo\":\"%s\"}",
                     id, from, to, currencies[rnd() % 4], 1 + rnd() % 9999, rnd() % 100000, memo);
    if (n < 0 || (size_t)n >= capacity) die("item does not fit");
    *check += from + to + (uint64_t)id_length + (uint64_t)memo_length;
    return (size_t)n;
}

static void make_bodies(void) {
    uint32_t serial = 1;
    char item[512];
    for (size_t i = 0; i < SINGLE_BODIES; i++) {
        body *b = &singles[i];
        b->check = 0;
        b->length = make_item(item, sizeof(item), serial++, &b->check);
        b->text = xmalloc(b->length + 1);
        memcpy(b->text, item, b->length + 1);
        b->items = 1;
    }
    for (size_t i = 0; i < BATCH_BODIES; i++) {
        body *b = &batches[i];
        size_t capacity = 32 + (size_t)BATCH_ITEMS * 256;
        b->text = xmalloc(capacity);
        b->check = 0;
        size_t n = (size_t)snprintf(b->text, capacity, "{\"transactions\":[");
        for (uint32_t k = 0; k < BATCH_ITEMS; k++) {
            if (k > 0) b->text[n++] = ',';
            n += make_item(b->text + n, capacity - n, serial++, &b->check);
        }
        n += (size_t)snprintf(b->text + n, capacity - n, "]}");
        b->length = n;
        b->items = BATCH_ITEMS;
    }
}

/* ---- extraction into a plain struct (jansson, cJSON) -------------------------------- */

typedef struct extracted {
    uint64_t account_id;
    uint64_t to_account_id;
    uint8_t transaction_id_length, type_length, currency_length, amount_length;
    uint16_t memo_length;
    bool has_memo;
    char transaction_id[BAL_TRANSACTION_ID_LENGTH_MAX];
    char type[16];
    char currency[BAL_CURRENCY_LENGTH_MAX];
    char amount[BAL_MONEY_TEXT_MAX];
    char memo[BAL_MEMO_LENGTH_MAX];
} extracted;

static bool copy_text(const char *text, size_t length, char *out, size_t capacity, size_t *length_out) {
    if (text == NULL || length > capacity) return false;
    memcpy(out, text, length);
    *length_out = length;
    return true;
}

#define COPY_FIELD(text, length, field, length_field)                                  \
    do {                                                                               \
        size_t copied_ = 0;                                                            \
        if (!copy_text((text), (length), x->field, sizeof(x->field), &copied_)) return false; \
        x->length_field = (__typeof__(x->length_field))copied_;                        \
    } while (0)

static uint64_t extracted_check(const extracted *x) {
    return x->account_id + x->to_account_id + x->transaction_id_length + x->memo_length;
}

/* jansson keeps integers as json_int_t (long long): exact up to 2^63-1; larger ones make
 * json_loadb fail ("too big integer"), so valid account ids in [2^63, 2^64-1] are lost. */
static bool jansson_account(const json_t *value, uint64_t *out) {
    if (json_is_integer(value)) {
        json_int_t v = json_integer_value(value);
        if (v <= 0) return false;
        *out = (uint64_t)v;
        return true;
    }
    return json_is_string(value) && bal_decode_account_id(json_string_value(value), json_string_length(value), out);
}

static bool jansson_extract_object(const json_t *object, extracted *x) {
    if (!json_is_object(object)) return false;
    size_t found = 0;
    const json_t *v;
    x->has_memo = false;
    x->memo_length = 0;
    x->to_account_id = 0;
    if ((v = json_object_get(object, "transaction_id")) == NULL || !json_is_string(v)) return false;
    found++;
    COPY_FIELD(json_string_value(v), json_string_length(v), transaction_id, transaction_id_length);
    if ((v = json_object_get(object, "type")) == NULL) return false;
    found++;
    if (json_is_string(v)) {
        COPY_FIELD(json_string_value(v), json_string_length(v), type, type_length);
    } else if (json_is_integer(v) && json_integer_value(v) >= 0 && json_integer_value(v) <= 4) {
        x->type[0] = (char)('0' + json_integer_value(v));
        x->type_length = 1;
    } else {
        return false;
    }
    if ((v = json_object_get(object, "account_id")) == NULL || !jansson_account(v, &x->account_id)) return false;
    found++;
    if ((v = json_object_get(object, "to_account_id")) != NULL) {
        if (!jansson_account(v, &x->to_account_id)) return false;
        found++;
    }
    if ((v = json_object_get(object, "currency")) == NULL || !json_is_string(v)) return false;
    found++;
    COPY_FIELD(json_string_value(v), json_string_length(v), currency, currency_length);
    if ((v = json_object_get(object, "amount")) == NULL || !json_is_string(v)) return false;
    found++;
    COPY_FIELD(json_string_value(v), json_string_length(v), amount, amount_length);
    if ((v = json_object_get(object, "memo")) != NULL) {
        found++;
        if (json_is_string(v)) {
            COPY_FIELD(json_string_value(v), json_string_length(v), memo, memo_length);
            x->has_memo = true;
        } else if (!json_is_null(v)) {
            return false;
        }
    }
    return found == json_object_size(object); /* anything else is an unknown field */
}

/* cJSON keeps every number as a double: account ids above 2^53 are silently rounded (and
 * valueint saturates at INT_MAX), so the id has to come from valuedouble and is inexact. */
static bool cjson_account(const cJSON *value, uint64_t *out) {
    if (cJSON_IsNumber(value)) {
        double d = value->valuedouble;
        if (!(d >= 1.0 && d < 18446744073709551616.0) || d != (double)(uint64_t)d) return false;
        *out = (uint64_t)d;
        return true;
    }
    return cJSON_IsString(value) && bal_decode_account_id(value->valuestring, strlen(value->valuestring), out);
}

static bool cjson_extract_object(const cJSON *object, extracted *x) {
    if (!cJSON_IsObject(object)) return false;
    int found = 0;
    const cJSON *v;
    x->has_memo = false;
    x->memo_length = 0;
    x->to_account_id = 0;
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "transaction_id")) == NULL || !cJSON_IsString(v)) return false;
    found++;
    COPY_FIELD(v->valuestring, strlen(v->valuestring), transaction_id, transaction_id_length);
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "type")) == NULL) return false;
    found++;
    if (cJSON_IsString(v)) {
        COPY_FIELD(v->valuestring, strlen(v->valuestring), type, type_length);
    } else if (cJSON_IsNumber(v) && (v->valuedouble == 0 || v->valuedouble == 1 || v->valuedouble == 2 ||
                                     v->valuedouble == 3 || v->valuedouble == 4)) {
        x->type[0] = (char)('0' + v->valueint);
        x->type_length = 1;
    } else {
        return false;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "account_id")) == NULL || !cjson_account(v, &x->account_id)) return false;
    found++;
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "to_account_id")) != NULL) {
        if (!cjson_account(v, &x->to_account_id)) return false;
        found++;
    }
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "currency")) == NULL || !cJSON_IsString(v)) return false;
    found++;
    COPY_FIELD(v->valuestring, strlen(v->valuestring), currency, currency_length);
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "amount")) == NULL || !cJSON_IsString(v)) return false;
    found++;
    COPY_FIELD(v->valuestring, strlen(v->valuestring), amount, amount_length);
    if ((v = cJSON_GetObjectItemCaseSensitive(object, "memo")) != NULL) {
        found++;
        if (cJSON_IsString(v)) {
            COPY_FIELD(v->valuestring, strlen(v->valuestring), memo, memo_length);
            x->has_memo = true;
        } else if (!cJSON_IsNull(v)) {
            return false;
        }
    }
    return found == cJSON_GetArraySize(object); /* counts members; duplicates count too */
}

/* The decoder's checks on an extracted struct (typed operations; the workload has no EVENT). */
static bool validate(const extracted *x, bal_command *c) {
    memset(c, 0, offsetof(bal_command, memo));
    if (!bal_transaction_id_valid(x->transaction_id, x->transaction_id_length)) return false;
    memcpy(c->transaction_id, x->transaction_id, x->transaction_id_length);
    c->transaction_id_length = x->transaction_id_length;
    bal_op op;
    if (x->type_length == 1 && x->type[0] >= '0' && x->type[0] <= '4') {
        op = (bal_op)(x->type[0] - '0');
    } else if (!bal_op_from_name(x->type, x->type_length, &op) || op == BAL_OP_EVENT) {
        return false;
    }
    c->type = (uint8_t)op;
    if (x->has_memo) {
        if (memchr(x->memo, '\0', x->memo_length) != NULL) return false;
        memcpy(c->memo, x->memo, x->memo_length);
        c->memo_length = x->memo_length;
        c->has_memo = 1;
    }
    c->account_id = x->account_id;
    if (!bal_currency_parse(x->currency, x->currency_length, &c->currency)) return false;
    if (bal_money_parse(x->amount, x->amount_length, &c->amount) != BAL_MONEY_OK || c->amount == 0) return false;
    if (op == BAL_OP_TRANSFER) {
        if (x->to_account_id == 0 || x->to_account_id == x->account_id) return false;
        c->to_account_id = x->to_account_id;
    } else if (x->to_account_id != 0) {
        return false;
    }
    return bal_command_valid(c);
}

static uint64_t command_check(const bal_command *c) {
    return c->account_id + c->to_account_id + c->transaction_id_length + c->memo_length;
}

/* ---- the candidates: one call handles one request body; 0 means failure ------------- */

static bal_json_token *tokens;
static uint32_t tokens_max;

static uint64_t jansson_parse(const body *b) {
    json_error_t error;
    json_t *root = json_loadb(b->text, b->length, 0, &error);
    if (root == NULL) return 0;
    uint64_t r = json_object_size(root);
    json_decref(root);
    return r;
}

static uint64_t cjson_parse(const body *b) {
    cJSON *root = cJSON_ParseWithLength(b->text, b->length);
    if (root == NULL) return 0;
    uint64_t r = root->child != NULL;
    cJSON_Delete(root);
    return r;
}

static uint64_t bal_parse(const body *b) {
    uint32_t count = 0;
    size_t offset = 0;
    if (bal_json_parse(b->text, b->length, tokens, tokens_max, &count, &offset) != BAL_JSON_OK) return 0;
    return count;
}

static uint64_t jansson_work(const body *b, bool check) {
    json_error_t error;
    json_t *root = json_loadb(b->text, b->length, check ? JSON_REJECT_DUPLICATES : 0, &error);
    if (root == NULL) return 0;
    uint64_t sum = 0;
    extracted x;
    bal_command c;
    if (b->items == 1) {
        if (jansson_extract_object(root, &x) && (!check || validate(&x, &c))) sum = check ? command_check(&c) : extracted_check(&x);
    } else {
        const json_t *array = json_object_get(root, "transactions");
        size_t n = json_array_size(array);
        if (json_object_size(root) != 1 || !json_is_array(array) || n > BAL_BATCH_ITEMS_MAX) n = 0;
        for (size_t i = 0; i < n; i++) {
            if (!jansson_extract_object(json_array_get(array, i), &x) || (check && !validate(&x, &c))) {
                sum = 0;
                break;
            }
            sum += check ? command_check(&c) : extracted_check(&x);
        }
    }
    json_decref(root);
    return sum;
}

static uint64_t cjson_work(const body *b, bool check) {
    cJSON *root = cJSON_ParseWithLength(b->text, b->length);
    if (root == NULL) return 0;
    uint64_t sum = 0;
    extracted x;
    bal_command c;
    if (b->items == 1) {
        if (cjson_extract_object(root, &x) && (!check || validate(&x, &c))) sum = check ? command_check(&c) : extracted_check(&x);
    } else {
        const cJSON *array = cJSON_GetObjectItemCaseSensitive(root, "transactions");
        if (cJSON_GetArraySize(root) == 1 && cJSON_IsArray(array)) {
            const cJSON *item;
            cJSON_ArrayForEach(item, array) {
                if (!cjson_extract_object(item, &x) || (check && !validate(&x, &c))) {
                    sum = 0;
                    break;
                }
                sum += check ? command_check(&c) : extracted_check(&x);
            }
        }
    }
    cJSON_Delete(root);
    return sum;
}

static uint64_t jansson_extract(const body *b) { return jansson_work(b, false); }
static uint64_t jansson_validate(const body *b) { return jansson_work(b, true); }
static uint64_t cjson_extract(const body *b) { return cjson_work(b, false); }
static uint64_t cjson_validate(const body *b) { return cjson_work(b, true); }

static uint64_t bal_decode(const body *b) {
    bal_command c;
    bal_decode_diagnostic d;
    if (b->items == 1) {
        if (bal_decode_transaction(b->text, b->length, tokens, tokens_max, 1, &c, &d) != BAL_DECODE_OK) return 0;
        return command_check(&c);
    }
    uint32_t first = 0, count = 0;
    if (bal_decode_batch(b->text, b->length, tokens, tokens_max, &first, &count, &d) != BAL_DECODE_OK) return 0;
    uint64_t sum = 0;
    for (uint32_t i = 0, item = first; i < count; i++, item = tokens[item].next) {
        if (bal_decode_object(b->text, tokens, item, 1, &c, &d) != BAL_DECODE_OK) return 0;
        sum += command_check(&c);
    }
    return sum;
}

typedef struct candidate {
    const char *library;
    const char *step;
    uint64_t (*run)(const body *b);
    bool checks_values; /* returns the body's check sum (else: any non-zero) */
} candidate;

static const candidate candidates[] = {
    {"jansson 2.14", "parse", jansson_parse, false},
    {"cJSON 1.7.15", "parse", cjson_parse, false},
    {"bal_json", "parse", bal_parse, false},
    {"jansson 2.14", "extract", jansson_extract, true},
    {"cJSON 1.7.15", "extract", cjson_extract, true},
    {"bal_decode", "extract+validate", bal_decode, true},
    {"jansson 2.14", "extract+validate", jansson_validate, true},
    {"cJSON 1.7.15", "extract+validate", cjson_validate, true},
};
#define CANDIDATES (sizeof(candidates) / sizeof(candidates[0]))

typedef struct workload {
    const char *name;
    const body *bodies;
    size_t count;
    uint32_t tokens_max;
} workload;

static const workload workloads[] = {
    {"single", singles, SINGLE_BODIES, SINGLE_TOKENS_MAX},
    {"batch-1000", batches, BATCH_BODIES, BAL_DECODE_TOKENS_MAX},
};
#define WORKLOADS (sizeof(workloads) / sizeof(workloads[0]))

typedef struct figures {
    double requests_per_s[ROUNDS];
    double allocs_per_request;
    double alloc_bytes_per_request;
} figures;

static figures results[WORKLOADS][CANDIDATES];
static volatile uint64_t sink;

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

/* Untimed: every body accepted with the right values; allocations counted. */
static void check_and_count(const workload *w, const candidate *c, figures *f) {
    tokens_max = w->tokens_max;
    bool hooks = strncmp(c->library, "bal_", 4) != 0;
    if (hooks) counting_hooks(true);
    alloc_calls = alloc_bytes = 0;
    for (size_t i = 0; i < w->count; i++) {
        uint64_t r = c->run(&w->bodies[i]);
        if (r == 0 || (c->checks_values && r != w->bodies[i].check)) {
            fprintf(stderr, "bench_json: %s %s rejected or misread %s body %zu\n", c->library, c->step, w->name, i);
            exit(1);
        }
    }
    f->allocs_per_request = (double)alloc_calls / (double)w->count;
    f->alloc_bytes_per_request = (double)alloc_bytes / (double)w->count;
    if (hooks) counting_hooks(false);
}

static double timed_run(const workload *w, const candidate *c, double seconds) {
    tokens_max = w->tokens_max;
    uint64_t requests = 0, sum = 0;
    size_t next = (size_t)(rnd() % w->count);
    int chunk = w->bodies[0].items == 1 ? CHUNK : 1;
    double start = now_s(), elapsed;
    do {
        for (int k = 0; k < chunk; k++) {
            sum += c->run(&w->bodies[next]);
            if (++next == w->count) next = 0;
        }
        requests += (uint64_t)chunk;
        elapsed = now_s() - start;
    } while (elapsed < seconds);
    sink += sum;
    return (double)requests / elapsed;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* ---- strictness and number fidelity (a few bodies, printed after the table) --------- */

static void strictness(void) {
    static const struct {
        const char *name;
        const char *text;
    } cases[] = {
        {"trailing bytes `{\"a\":1}x`", "{\"a\":1}x"},
        {"invalid UTF-8 byte 0xFF", "{\"a\":\"\xff\"}"},
        {"raw control character", "{\"a\":\"\x01\"}"},
        {"leading zero `01`", "{\"a\":01}"},
        {"`\\u0000` in a string", "{\"a\":\"x\\u0000y\"}"},
        {"duplicate key", "{\"a\":1,\"a\":2}"},
        {"account 2^53+1", "{\"a\":9007199254740993}"},
        {"account 2^64-1", "{\"a\":18446744073709551615}"},
    };
    printf("\n| input | bal_json | jansson | cJSON |\n|---|---|---|---|\n");
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *t = cases[i].text;
        size_t n = strlen(t);
        char ours[64], theirs[64], cj[64];
        uint32_t count = 0;
        size_t offset = 0;
        bool number = strncmp(cases[i].name, "account", 7) == 0;
        tokens_max = SINGLE_TOKENS_MAX;
        if (bal_json_parse(t, n, tokens, tokens_max, &count, &offset) != BAL_JSON_OK) {
            snprintf(ours, sizeof(ours), "rejected");
        } else if (number) {
            uint64_t id = 0;
            if (bal_decode_account_id(t + tokens[2].start, tokens[2].length, &id)) {
                snprintf(ours, sizeof(ours), "%" PRIu64, id);
            } else {
                snprintf(ours, sizeof(ours), "rejected");
            }
        } else {
            snprintf(ours, sizeof(ours), "accepted");
        }
        json_error_t error;
        json_t *j = json_loadb(t, n, 0, &error);
        if (j == NULL) {
            snprintf(theirs, sizeof(theirs), "rejected");
        } else if (number) {
            snprintf(theirs, sizeof(theirs), "%" PRId64, (int64_t)json_integer_value(json_object_get(j, "a")));
        } else {
            snprintf(theirs, sizeof(theirs), "accepted");
        }
        json_decref(j);
        cJSON *c = cJSON_ParseWithLength(t, n);
        if (c == NULL) {
            snprintf(cj, sizeof(cj), "rejected");
        } else if (number) {
            uint64_t id = 0;
            if (cjson_account(cJSON_GetObjectItemCaseSensitive(c, "a"), &id)) {
                snprintf(cj, sizeof(cj), "%" PRIu64 " (double)", id);
            } else {
                snprintf(cj, sizeof(cj), "out of range");
            }
        } else {
            snprintf(cj, sizeof(cj), "accepted");
        }
        cJSON_Delete(c);
        printf("| %s | %s | %s | %s |\n", cases[i].name, ours, theirs, cj);
    }
}

/* ---- main --------------------------------------------------------------------------- */

static void print_machine(void) {
    char model[256] = "unknown";
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f != NULL) {
        char line[512];
        while (fgets(line, sizeof(line), f) != NULL) {
            if (strncmp(line, "model name", 10) == 0) {
                char *colon = strchr(line, ':');
                if (colon != NULL) {
                    snprintf(model, sizeof(model), "%s", colon + 2);
                    model[strcspn(model, "\n")] = '\0';
                }
                break;
            }
        }
        fclose(f);
    }
    double load[3] = {0, 0, 0};
    if (getloadavg(load, 3) < 0) load[0] = -1;
    printf("cpu: %s, nproc %ld, load average at start %.2f %.2f %.2f\n", model, sysconf(_SC_NPROCESSORS_ONLN),
           load[0], load[1], load[2]);
    printf("jansson %s, cJSON %s\n", JANSSON_VERSION, cJSON_Version());
}

int main(int argc, char **argv) {
    double seconds = argc > 1 ? atof(argv[1]) : 0.3;
    if (!(seconds > 0)) die("usage: bench_json [seconds_per_run]");
    make_bodies();
    tokens = xmalloc(BAL_DECODE_TOKENS_MAX * sizeof(*tokens));
    print_machine();
    for (size_t w = 0; w < WORKLOADS; w++) {
        size_t bytes = 0;
        for (size_t i = 0; i < workloads[w].count; i++) bytes += workloads[w].bodies[i].length;
        printf("%s: %zu distinct bodies, %.1f bytes on average\n", workloads[w].name, workloads[w].count,
               (double)bytes / (double)workloads[w].count);
    }
    for (size_t w = 0; w < WORKLOADS; w++) {
        for (size_t c = 0; c < CANDIDATES; c++) check_and_count(&workloads[w], &candidates[c], &results[w][c]);
    }
    printf("%d rounds x %zu runs of %.2f s, interleaved\n", ROUNDS, WORKLOADS * CANDIDATES, seconds);
    fflush(stdout);
    for (int r = 0; r < ROUNDS; r++) {
        for (size_t k = 0; k < WORKLOADS * CANDIDATES; k++) {
            size_t slot = (k + (size_t)r * 3) % (WORKLOADS * CANDIDATES); /* rotate the order per round */
            size_t w = slot / CANDIDATES, c = slot % CANDIDATES;
            results[w][c].requests_per_s[r] = timed_run(&workloads[w], &candidates[c], seconds);
        }
        fprintf(stderr, "round %d/%d done\n", r + 1, ROUNDS);
    }

    printf("\n| workload | library | step | requests/s | items/s | MB/s | ns/item | spread | allocs/request | bytes allocated/request |\n");
    printf("|---|---|---|---:|---:|---:|---:|---:|---:|---:|\n");
    for (size_t w = 0; w < WORKLOADS; w++) {
        const workload *wl = &workloads[w];
        double bytes = 0;
        for (size_t i = 0; i < wl->count; i++) bytes += (double)wl->bodies[i].length;
        bytes /= (double)wl->count;
        double items = wl->bodies[0].items;
        for (size_t c = 0; c < CANDIDATES; c++) {
            figures *f = &results[w][c];
            double sorted[ROUNDS];
            memcpy(sorted, f->requests_per_s, sizeof(sorted));
            qsort(sorted, ROUNDS, sizeof(double), compare_double);
            double median = sorted[ROUNDS / 2];
            printf("| %s | %s | %s | %.0f | %.0f | %.0f | %.0f | %.0f%% | %.0f | %.0f |\n", wl->name,
                   candidates[c].library, candidates[c].step, median, median * items, median * bytes / 1e6,
                   1e9 / (median * items), 100.0 * (sorted[ROUNDS - 1] - sorted[0]) / median,
                   f->allocs_per_request, f->alloc_bytes_per_request);
        }
    }
    strictness();
    return sink == 42 ? 2 : 0;
}
