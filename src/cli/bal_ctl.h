/*
 * bal_ctl.h -- the parts of balancectl, the command-line client of the HTTP API.
 *
 * balancectl.c parses the command line and runs one command; the other files hold what
 * the commands share: argument validation (bal_ctl_args.c), the HTTP/1.1 client
 * (bal_ctl_http.c), request signing (bal_ctl_sign.c), reading response JSON
 * (bal_ctl_json.c), batch files (bal_ctl_batch.c), and human-readable output
 * (bal_ctl_print.c, bal_ctl_table.c). Every invocation sends at most one request.
 */
#ifndef BAL_CTL_H
#define BAL_CTL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "bal_json.h"
#include "bal_limits.h"
#include "bal_text.h"

/* Exit statuses: scripts branch on these, so they are part of the interface (docs/cli.md). */
enum {
    BAL_CTL_EXIT_OK = 0,          /* applied (also a duplicate), or a read/service call answered 2xx */
    BAL_CTL_EXIT_REJECTED = 1,    /* a business result other than ok: insufficient_*, overflow, conflict */
    BAL_CTL_EXIT_USAGE = 2,       /* bad command line, bad local file, refused key file */
    BAL_CTL_EXIT_REFUSED = 3,     /* the server refused the request: 4xx (400, 401, 403, 404, 429...) */
    BAL_CTL_EXIT_UNAVAILABLE = 4, /* 5xx, connection failure, timeout, or a response we cannot read */
};

/* A response body may be large (a batch of 8192 results, a history page): bounded anyway. */
#define BAL_CTL_RESPONSE_BYTES_MAX (64u * 1024u * 1024u)
/* Response headers beyond this are refused. */
#define BAL_CTL_HEADER_BYTES_MAX (64u * 1024u)
/* Longest request target we build (paths are short; a history cursor is opaque but small). */
#define BAL_CTL_PATH_MAX 1024
/* Key id and secret bounds for what we accept from a key file or the environment. */
#define BAL_CTL_KEY_ID_MAX 128
#define BAL_CTL_SECRET_MAX 512

/* ---- errors ------------------------------------------------------------------------- */

/* A failure to report as "balancectl: CODE: MESSAGE". */
typedef struct bal_ctl_error {
    char code[40];
    char message[480];
} bal_ctl_error;

void bal_ctl_error_set(bal_ctl_error *error, const char *code, const char *format, ...)
    __attribute__((format(printf, 3, 4)));
/* Prints "balancectl: CODE[: MESSAGE]" on stderr. */
void bal_ctl_error_print(const bal_ctl_error *error);

/* ---- argument validation (bal_ctl_args.c) --------------------------------------------- */

/* Each returns false and fills error (code "usage") with a message naming `what`. */
bool bal_ctl_check_account(const char *text, const char *what, uint64_t *account_out, bal_ctl_error *error);
bool bal_ctl_check_currency(const char *text, const char *what, bal_ctl_error *error);
/* A positive amount in canonical form (out: BAL_MONEY_TEXT_MAX + 1 bytes). */
bool bal_ctl_check_amount(const char *text, const char *what, char *canonical_out, bal_ctl_error *error);
/* A signed delta in canonical form (out: BAL_MONEY_TEXT_MAX + 1 bytes). */
bool bal_ctl_check_delta(const char *text, const char *what, char *canonical_out, bal_ctl_error *error);
bool bal_ctl_check_transaction_id(const char *text, bal_ctl_error *error);
bool bal_ctl_check_memo(const char *text, size_t length, bal_ctl_error *error);
/* True if bytes are well-formed UTF-8. */
bool bal_ctl_utf8_valid(const char *bytes, size_t length);
/* Fills buffer with random bytes from getrandom(). */
bool bal_ctl_random(void *buffer, size_t length, bal_ctl_error *error);
/* A fresh transaction id "ctl-<unix ms>-<16 hex>" (out: 64 + 1 bytes). */
bool bal_ctl_generate_id(char *out, size_t size, bal_ctl_error *error);
/* Unix time in milliseconds. */
int64_t bal_ctl_now_ms(void);

/* ---- signing (bal_ctl_sign.c) --------------------------------------------------------- */

typedef struct bal_ctl_key {
    bool present;
    char id[BAL_CTL_KEY_ID_MAX + 1];
    char secret[BAL_CTL_SECRET_MAX + 1];
    size_t secret_length;
} bal_ctl_key;

/* Loads the key from key_file if given, else from BALANCED_API_KEY/BALANCED_API_SECRET;
 * neither: key->present is false and requests go unsigned. */
bool bal_ctl_key_load(bal_ctl_key *key, const char *key_file, bal_ctl_error *error);
/* Appends the X-Api-Key, X-Timestamp, X-Nonce and X-Signature header lines. */
bool bal_ctl_sign_headers(const bal_ctl_key *key, const char *method, const char *target, const char *body,
                          size_t body_length, bal_text *headers, bal_ctl_error *error);
/* Overwrites the secret in memory. */
void bal_ctl_key_clear(bal_ctl_key *key);

/* ---- HTTP (bal_ctl_http.c) ------------------------------------------------------------ */

typedef struct bal_ctl_endpoint {
    char host[256];          /* without IPv6 brackets, for getaddrinfo */
    char port[8];
    char authority[272];     /* the Host header: host[:port] as given */
} bal_ctl_endpoint;

typedef struct bal_ctl_response {
    int status;
    char *body;              /* NUL-terminated; body_length excludes the NUL */
    size_t body_length;
    char retry_after[32];    /* the Retry-After header, if any */
} bal_ctl_response;

/* Parses "http://HOST[:PORT][/]" ([v6] hosts too; default port 80). */
bool bal_ctl_url_parse(const char *url, bal_ctl_endpoint *endpoint, bal_ctl_error *error);

/* Sends one request (Connection: close) and reads the whole response. body may be NULL
 * for none. Fails with codes connection_failed, timeout, bad_response, response_too_large. */
bool bal_ctl_http_exchange(const bal_ctl_endpoint *endpoint, const bal_ctl_key *key, unsigned timeout_ms,
                           const char *method, const char *target, const char *body, size_t body_length,
                           bal_ctl_response *response, bal_ctl_error *error);
void bal_ctl_response_free(bal_ctl_response *response);

/* ---- response JSON (bal_ctl_json.c) --------------------------------------------------- */

#define BAL_CTL_JSON_NONE UINT32_MAX

typedef struct bal_ctl_json {
    const char *text;
    size_t length;
    bal_json_token *tokens;
    uint32_t count;
} bal_ctl_json;

/* Tokenizes text (kept by reference). False if it is not JSON. */
bool bal_ctl_json_load(bal_ctl_json *doc, const char *text, size_t length);
void bal_ctl_json_free(bal_ctl_json *doc);
/* The value of member key of the object at index, or BAL_CTL_JSON_NONE. */
uint32_t bal_ctl_json_member(const bal_ctl_json *doc, uint32_t object, const char *key);
/* Copies a value as display text: strings unescaped, other values as written; a missing
 * value gives fallback. Truncates to fit (with "..."), always NUL-terminates. */
void bal_ctl_json_text(const bal_ctl_json *doc, uint32_t index, const char *fallback, char *out, size_t size);
/* The member's text, as bal_ctl_json_text. */
void bal_ctl_json_field(const bal_ctl_json *doc, uint32_t object, const char *key, const char *fallback,
                        char *out, size_t size);
bool bal_ctl_json_is(const bal_ctl_json *doc, uint32_t index, bal_json_type type);

/* ---- batch files (bal_ctl_batch.c) ---------------------------------------------------- */

/* Reads a batch file (.json: {"transactions": [...]} or [...]; .csv: see docs/cli.md) and
 * builds the request body. format: "json", "csv" or NULL to go by the extension. */
bool bal_ctl_batch_load(const char *path, const char *format, bal_text *body, uint32_t *items_out,
                        bal_ctl_error *error);

/* ---- output (bal_ctl_print.c) --------------------------------------------------------- */

typedef struct bal_ctl_tally {
    unsigned ok;
    unsigned duplicate;
    unsigned rejected;        /* business results other than ok */
    unsigned invalid;         /* malformed items of a batch */
} bal_ctl_tally;

/* One transaction response: a line per balance ("ok  t-1  seq 12  42 USDT available ..."). */
void bal_ctl_print_outcome(FILE *out, const bal_ctl_json *doc, uint32_t object, bal_ctl_tally *tally);
void bal_ctl_print_batch(FILE *out, const bal_ctl_json *doc, bal_ctl_tally *tally);
void bal_ctl_print_balances(FILE *out, const bal_ctl_json *doc);
void bal_ctl_print_balance(FILE *out, const bal_ctl_json *doc);
void bal_ctl_print_transaction(FILE *out, const bal_ctl_json *doc);
void bal_ctl_print_history(FILE *out, const bal_ctl_json *doc);
/* Writes text for a terminal: control characters are shown as \n, \t, \xNN. */
void bal_ctl_print_safe(FILE *out, const char *text);

/* Counts the results of a batch response without printing them. */
void bal_ctl_tally_batch(const bal_ctl_json *doc, bal_ctl_tally *tally);

/* ---- tables (bal_ctl_table.c) --------------------------------------------------------- */

typedef enum bal_ctl_align { BAL_CTL_LEFT, BAL_CTL_RIGHT, BAL_CTL_DECIMAL } bal_ctl_align;

#define BAL_CTL_TABLE_COLUMNS_MAX 16

typedef struct bal_ctl_table {
    unsigned columns;
    bal_ctl_align align[BAL_CTL_TABLE_COLUMNS_MAX];
    char **cells;             /* rows * columns, row-major, each malloc'ed and display-safe */
    size_t rows;
    size_t capacity;
    bool failed;
    bool has_header;          /* the first row is a header (the default) */
} bal_ctl_table;

void bal_ctl_table_init(bal_ctl_table *table, unsigned columns, const bal_ctl_align *align);
/* Adds a row of `columns` cells (copied); the first row is the header unless has_header
 * is cleared after init. */
void bal_ctl_table_add(bal_ctl_table *table, const char *const *cells);
void bal_ctl_table_print(FILE *out, const bal_ctl_table *table);
void bal_ctl_table_free(bal_ctl_table *table);

/* ---- commands (bal_ctl_commands.c) ----------------------------------------------------- */

/* Options, as bits: each command accepts the global ones and its own. */
enum {
    BAL_CTL_OPT_URL = 1u << 0,
    BAL_CTL_OPT_KEY_FILE = 1u << 1,
    BAL_CTL_OPT_TIMEOUT = 1u << 2,
    BAL_CTL_OPT_JSON = 1u << 3,
    BAL_CTL_OPT_HELP = 1u << 4,
    BAL_CTL_OPT_ID = 1u << 5,
    BAL_CTL_OPT_MEMO = 1u << 6,
    BAL_CTL_OPT_LEG = 1u << 7,
    BAL_CTL_OPT_CURRENCY = 1u << 8,
    BAL_CTL_OPT_LIMIT = 1u << 9,
    BAL_CTL_OPT_BEFORE = 1u << 10,
    BAL_CTL_OPT_FORMAT = 1u << 11,
};
#define BAL_CTL_OPT_GLOBAL (BAL_CTL_OPT_URL | BAL_CTL_OPT_KEY_FILE | BAL_CTL_OPT_TIMEOUT | BAL_CTL_OPT_JSON | \
                            BAL_CTL_OPT_HELP)

#define BAL_CTL_ARGS_MAX 8

/* The parsed command line. */
typedef struct bal_ctl_cli {
    unsigned given;                      /* BAL_CTL_OPT_* bits seen */
    const char *url, *key_file, *timeout, *id, *memo, *currency, *limit, *before, *format;
    const char *legs[BAL_EVENT_LEGS_MAX + 1];
    unsigned leg_count;
    const char *args[BAL_CTL_ARGS_MAX];  /* args[0] is the command */
    unsigned arg_count;
} bal_ctl_cli;

/* What every command needs to talk to the server. */
typedef struct bal_ctl_context {
    bal_ctl_endpoint endpoint;
    bal_ctl_key key;
    unsigned timeout_ms;
    bool json;
} bal_ctl_context;

/* Each returns the exit status. */
int bal_ctl_run_typed(const char *type, const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_transfer(const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_event(const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_batch(const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_balance(const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_tx(const bal_ctl_cli *cli, bal_ctl_context *context);
int bal_ctl_run_history(const bal_ctl_cli *cli, bal_ctl_context *context);
/* health, ready, metrics: a GET of path. */
int bal_ctl_run_service(const char *path, const bal_ctl_cli *cli, bal_ctl_context *context);

#endif
