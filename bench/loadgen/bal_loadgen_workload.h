/*
 * bal_loadgen_workload.h -- what the load generator sends: request templates.
 *
 * A workload is a method, a path template, one to three operation templates with weights,
 * and a batch size. Templates are text with placeholders, compiled once:
 *   {tx}        a fresh transaction id: <run id>-<thread>-<counter>, unique for ever
 *               across runs as long as run ids differ (the default run id is the clock)
 *   {account}   a random account id in 1..accounts
 *   {account2}  another random account id, different from {account} (for TRANSFER)
 *   {seq}       the request's sequence number within its thread
 *   {amount} and {currency} are the configured texts.
 * A body with batch size N > 0 is {"transactions":[op,op,...]} with N operations, each
 * drawn by weight and rendered with fresh values; with N = 0 it is one operation.
 *
 * Headers: fixed extra lines, then an optional per-request hook that sees the method,
 * path and body of the request it signs -- the place for HMAC request signing.
 *
 * Pre-generation: bal_workload_pregenerate renders a thread's next N requests (hook and
 * all) into one buffer ahead of time; bal_workload_append_request then copies them out in
 * order. A benchmark uses it to keep rendering and signing out of its measured window, so
 * that a signed and an unsigned run cost the generator the same per request.
 */
#ifndef BAL_LOADGEN_WORKLOAD_H
#define BAL_LOADGEN_WORKLOAD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_http_buffer.h"

/* Placeholders plus literal runs in one template. */
#define BAL_TEMPLATE_SEGMENTS_MAX 64
/* Operation kinds mixed in one workload (deposit, withdraw, transfer). */
#define BAL_WORKLOAD_OPERATIONS_MAX 3
/* Operations per batch body; the service accepts up to 8192. */
#define BAL_WORKLOAD_BATCH_MAX 8192
/* Run id text, e.g. the clock in hex. */
#define BAL_WORKLOAD_RUN_ID_MAX 24
/* Pre-generated requests held by one generator thread, in bytes: a few hundred bytes per
   request, so about two million single-operation requests. */
#define BAL_WORKLOAD_PREGENERATED_BYTES_MAX (4ull * 1024ull * 1024ull * 1024ull)

typedef enum bal_template_kind {
    BAL_TEMPLATE_LITERAL = 0,
    BAL_TEMPLATE_TRANSACTION_ID,
    BAL_TEMPLATE_ACCOUNT,
    BAL_TEMPLATE_ACCOUNT_OTHER,
    BAL_TEMPLATE_SEQUENCE,
} bal_template_kind;

typedef struct bal_template_segment {
    bal_template_kind kind;
    const char *text; /* LITERAL: points into the template's own copy */
    size_t length;
} bal_template_segment;

typedef struct bal_template {
    char *text; /* owned: the source with {amount}/{currency} already substituted */
    size_t segment_count;
    bal_template_segment segments[BAL_TEMPLATE_SEGMENTS_MAX];
    bool fixed; /* no placeholders: renders the same every time */
} bal_template;

/* One request being built, as the header hook sees it. */
typedef struct bal_loadgen_request_view {
    const char *method;
    const char *path;
    size_t path_length;
    const char *body;
    size_t body_length;
    uint64_t sequence;
    uint32_t thread_index;
} bal_loadgen_request_view;

/* Appends header lines ("Name: value\r\n" each) for one request; false on failure. Called
 * on the generator's threads concurrently: the context must be read-only or per thread. */
typedef bool (*bal_loadgen_header_hook)(void *context, const bal_loadgen_request_view *request,
                                        bal_http_buffer *headers);

typedef struct bal_workload {
    const char *method;
    char host_header[300]; /* host (up to 255) ":" port */
    bal_template path;
    bal_template operations[BAL_WORKLOAD_OPERATIONS_MAX];
    uint32_t weights[BAL_WORKLOAD_OPERATIONS_MAX];
    uint32_t operation_count; /* 0: requests without a body */
    uint32_t weight_total;
    uint32_t batch;           /* 0: one operation per body; N: a batch body of N */
    uint64_t accounts;
    char run_id[BAL_WORKLOAD_RUN_ID_MAX];
    char *extra_headers;      /* owned, lines ending in CRLF, or NULL */
    bal_loadgen_header_hook hook;
    void *hook_context;
    bool fixed;               /* the whole request is the same every time */
    bal_http_buffer fixed_request;
} bal_workload;

/* Per thread: random state, id counter and scratch buffers. */
typedef struct bal_workload_state {
    uint32_t thread_index;
    uint64_t random;
    uint64_t sequence;            /* requests built */
    uint64_t transaction_counter; /* {tx} ids issued */
    bal_http_buffer path;
    bal_http_buffer body;
    bal_http_buffer headers;
    /* Pre-generated requests, back to back; request i ends at prepared_end[i]. */
    bal_http_buffer prepared;
    size_t *prepared_end;
    uint32_t *prepared_operations;
    uint64_t prepared_count;
    uint64_t prepared_next; /* the next one to hand out */
} bal_workload_state;

/* Compiles a template; `amount` and `currency` replace {amount} and {currency}. Returns
 * false with a reason in errstr for an unknown placeholder or too many segments. */
bool bal_template_compile(bal_template *template_, const char *text, const char *amount,
                          const char *currency, char *errstr, size_t errstr_size);
void bal_template_free(bal_template *template_);

/* The built-in operation templates: "deposit", "withdraw", "transfer"; NULL if unknown. */
const char *bal_workload_builtin(const char *name);

/* Finishes a workload whose fields were filled: decides whether it is fixed and, if so,
 * renders the request once. */
bool bal_workload_prepare(bal_workload *workload);
void bal_workload_free(bal_workload *workload);

void bal_workload_state_init(bal_workload_state *state, uint32_t thread_index, uint64_t seed);
void bal_workload_state_free(bal_workload_state *state);

/* Renders the thread's next `count` requests now (count >= 1), to be handed out by
   bal_workload_append_request in order; after the last one it fails. False when out of
   memory, over BAL_WORKLOAD_PREGENERATED_BYTES_MAX, or when a request cannot be built. */
bool bal_workload_pregenerate(const bal_workload *workload, bal_workload_state *state, uint64_t count);

/* Appends one complete request to out; *operations gets the operation count it carries. */
bool bal_workload_append_request(const bal_workload *workload, bal_workload_state *state,
                                 bal_http_buffer *out, uint32_t *operations);

#endif
