/*
 * bal_auth.h -- API keys, request authentication, permissions, replay protection and rate
 * limits (SPEC's Security section; the wire format is in docs/auth.md).
 *
 * A bal_auth holds the current key set (loaded from a keys file), the nonce memory and each
 * key's token buckets. The HTTP routes call, for every request:
 *
 *   bal_auth_check()   headers present and well formed, key known, timestamp within
 *                      BAL_AUTH_REPLAY_WINDOW_MS of the server's clock, signature correct
 *                      (constant-time comparison), nonce not seen in the window (then
 *                      remembered), and the key holds the permission the route needs;
 *   bal_auth_charge()  the key's request bucket (one token) and operation bucket (one token
 *                      per operation: a batch of 8192 items costs 8192).
 *
 * Both fill a bal_auth_decision that the route turns into the response as it stands.
 *
 * Threads: bal_auth_check, bal_auth_charge and bal_auth_key_count may be called from any
 * number of threads at once, and concurrently with bal_auth_load (a reload on SIGHUP). The
 * key set is an immutable object swapped under a short lock and reference counted, so a
 * check that started on the old set finishes on it; a failed load leaves the old set in
 * force. Token buckets belong to the key id and survive reloads that keep the key.
 * bal_auth_create and bal_auth_destroy are not concurrent with anything.
 *
 * Secrets: no message written by this module (errstr, decision->message) ever contains a
 * secret or any other text taken from the keys file or from a request; key ids appear only
 * in decision->key_id, after the request was authenticated. Secrets are wiped from memory
 * when a key set is freed.
 */
#ifndef BAL_AUTH_H
#define BAL_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Limits. Each is checked where data enters (the keys file, the request headers). */

/* Requests whose X-Timestamp is further than this from the server's clock are refused,
   and a nonce is remembered for as long as its request could still be accepted. */
#define BAL_AUTH_REPLAY_WINDOW_MS (5 * 60 * 1000)
/* Key id: 1 to 64 characters of A-Z a-z 0-9 . _ - */
#define BAL_AUTH_KEY_ID_LENGTH_MAX 64
/* Secret: 32 to 256 printable ASCII characters without spaces; 32 characters of a random
   alphabet carry at least the 128 bits an HMAC key needs. */
#define BAL_AUTH_SECRET_LENGTH_MIN 32
#define BAL_AUTH_SECRET_LENGTH_MAX 256
/* X-Nonce: 1 to 64 characters of A-Z a-z 0-9 . _ : - + / = (counters, UUIDs, base64). */
#define BAL_AUTH_NONCE_LENGTH_MAX 64
/* X-Timestamp: decimal digits only; 16 digits hold any millisecond time until year 2286
   and keep the value far from int64 overflow. */
#define BAL_AUTH_TIMESTAMP_DIGITS_MAX 16
/* X-Signature: lower-case hex of 32 bytes. */
#define BAL_AUTH_SIGNATURE_LENGTH 64
/* Keys per file: a hash table of this many entries is a few megabytes at most. */
#define BAL_AUTH_KEYS_MAX 65536
/* One line of the keys file, without its line end. */
#define BAL_AUTH_LINE_LENGTH_MAX 1024
/* The keys file as a whole. */
#define BAL_AUTH_FILE_BYTES_MAX (16u * 1024u * 1024u)
/* Rates (per second) and bursts of the token buckets. */
#define BAL_AUTH_RATE_MAX 1000000000u
#define BAL_AUTH_BURST_MAX 1000000000u
/* Nonce memory: remembered nonces across all keys (the configured count may be lower). */
#define BAL_AUTH_NONCE_COUNT_MAX (1u << 26)
#define BAL_AUTH_NONCE_COUNT_DEFAULT (1u << 20)
/* bal_auth_decision.message, with its NUL; the longest sentence is about 100 bytes. */
#define BAL_AUTH_MESSAGE_BYTES 160

_Static_assert(BAL_AUTH_SECRET_LENGTH_MIN <= BAL_AUTH_SECRET_LENGTH_MAX, "secret bounds are ordered");
_Static_assert(BAL_AUTH_KEY_ID_LENGTH_MAX + BAL_AUTH_SECRET_LENGTH_MAX < BAL_AUTH_LINE_LENGTH_MAX,
               "a line holds the longest key id and secret with room for the other fields");
_Static_assert(BAL_AUTH_NONCE_COUNT_DEFAULT <= BAL_AUTH_NONCE_COUNT_MAX, "default within bound");

typedef enum bal_permission {
    BAL_PERMISSION_READ = 1,  /* GET routes */
    BAL_PERMISSION_WRITE = 2, /* POST routes */
    BAL_PERMISSION_ADMIN = 4, /* implies read and write */
} bal_permission;

typedef enum bal_auth_status {
    BAL_AUTH_OK = 0,
    BAL_AUTH_INVALID_CONFIG,  /* a bal_auth_config field out of range */
    BAL_AUTH_OUT_OF_MEMORY,
    BAL_AUTH_IO_ERROR,        /* the keys file cannot be opened or read */
    BAL_AUTH_INSECURE_FILE,   /* not a regular file, or accessible by group or others */
    BAL_AUTH_INVALID_FILE,    /* a syntax or validation error; errstr names the line */
} bal_auth_status;

const char *bal_auth_status_name(bal_auth_status status);

typedef struct bal_auth_config {
    /* Nonces remembered at once, 1 .. BAL_AUTH_NONCE_COUNT_MAX; about 32 bytes each,
       allocated at creation. Size it for the peak request rate times the replay window
       (a nonce is kept until its timestamp is 5 minutes old). */
    uint32_t nonce_count_max;
} bal_auth_config;

void bal_auth_config_default(bal_auth_config *config);

typedef struct bal_auth bal_auth;

/* Creates an instance with no keys (every request is refused as unknown_key until a
   successful bal_auth_load). */
bal_auth_status bal_auth_create(const bal_auth_config *config, bal_auth **out, char *errstr,
                                size_t errstr_size);
void bal_auth_destroy(bal_auth *auth);

/*
 * (Re)loads the keys file at path (format in docs/auth.md). The file must be a regular file
 * with no permission bits for group or others (chmod 600 or 400): a secret that others can
 * read is refused, not warned about. On any error the previous key set stays in force and
 * errstr says what is wrong (and on which line) without quoting the file. Safe to call
 * while other threads check and charge; concurrent loads are serialised.
 */
bal_auth_status bal_auth_load(bal_auth *auth, const char *path, char *errstr, size_t errstr_size);

/* The same from text in memory (tests, fuzzing, embedding); source_name only labels the
   messages. No file-mode check. */
bal_auth_status bal_auth_load_text(bal_auth *auth, const char *text, size_t length, const char *source_name,
                                   char *errstr, size_t errstr_size);

/* Keys in the set now in force. */
size_t bal_auth_key_count(const bal_auth *auth);

typedef struct bal_auth_request { /* everything as received; not NUL-terminated */
    const char *method;
    size_t method_length;
    const char *path_with_query; /* the request target as sent, e.g. "/v1/x?a=1" */
    size_t path_length;
    const char *api_key; /* X-Api-Key; NULL if the header is absent */
    size_t api_key_length;
    const char *timestamp; /* X-Timestamp (Unix milliseconds); NULL if absent */
    size_t timestamp_length;
    const char *nonce; /* X-Nonce; NULL if absent */
    size_t nonce_length;
    const char *signature; /* X-Signature; NULL if absent */
    size_t signature_length;
    const void *body; /* may be NULL when body_length is 0 */
    size_t body_length;
    int64_t now_ms; /* the server's clock, Unix milliseconds, passed in (testable) */
} bal_auth_request;

/* Values of bal_auth_decision.error. */
#define BAL_AUTH_ERROR_UNAUTHORIZED "unauthorized"   /* 401 */
#define BAL_AUTH_ERROR_FORBIDDEN "forbidden"         /* 403 */
#define BAL_AUTH_ERROR_RATE_LIMITED "rate_limited"   /* 429, with Retry-After */
#define BAL_AUTH_ERROR_UNAVAILABLE "unavailable"     /* 503, with Retry-After */

typedef struct bal_auth_decision {
    int http_status;   /* 0 = allowed; else 401, 403, 429 or 503 */
    const char *error; /* a BAL_AUTH_ERROR_* code; NULL when allowed */
    /* A stable reason for metrics; NULL when allowed. 401: missing_headers,
       malformed_header, unknown_key, stale_timestamp, bad_signature, replayed_nonce.
       403: permission. 429: requests, operations. 503: nonce_memory_full. */
    const char *reason;
    /* A sentence for the client: printable ASCII without quotes or backslashes (it goes
       into JSON as it is), never a secret, never text copied from the request. */
    char message[BAL_AUTH_MESSAGE_BYTES];
    uint32_t retry_after_s; /* 429 and 503: whole seconds, at least 1; else 0 */
    char key_id[BAL_AUTH_KEY_ID_LENGTH_MAX + 1]; /* the key, once authenticated; else "" */
} bal_auth_decision;

/*
 * Authenticates the request and checks that its key holds `needed` (a bal_permission; GET
 * routes need READ, POST routes WRITE). The checks run in this order and the first failure
 * decides: missing_headers, malformed_header, unknown_key, stale_timestamp (|now_ms -
 * timestamp| > BAL_AUTH_REPLAY_WINDOW_MS; exactly the window is still accepted),
 * bad_signature, replayed_nonce or nonce_memory_full (the nonce is remembered only for a
 * correctly signed request), permission. Fills *decision; returns true if allowed.
 */
bool bal_auth_check(bal_auth *auth, const bal_auth_request *request, bal_permission needed,
                    bal_auth_decision *decision);

/*
 * Charges key_id's token buckets: one request and `operations` operations (0 for a read,
 * 1 for a transaction, the item count for a batch). Both or neither are charged. A cost
 * larger than the burst is accepted when the bucket is full and leaves it in debt, so a
 * large batch is slowed down, never refused for ever. On refusal *decision gets 429, the
 * reason (requests or operations) and retry_after_s, the whole seconds until the charge
 * would succeed. A key id no longer in the key set (removed by a reload since the check)
 * gets 401 unknown_key. key_id may point into decision->key_id.
 */
bool bal_auth_charge(bal_auth *auth, const char *key_id, uint32_t operations, int64_t now_ms,
                     bal_auth_decision *decision);

/*
 * A reader: for a thread that checks many requests (an HTTP thread), it holds a reference to
 * the key set in force and keeps it until a reload replaces the set, so that a check through
 * it takes no lock and writes no memory shared with other threads to find the key set (a
 * load of the reload counter says whether the set is still current). One thread uses a
 * reader at a time. Close every reader before bal_auth_destroy; until then the reader keeps
 * the last set it used alive (with its secrets), at most until its next check after a
 * reload or its close. NULL when out of memory.
 */
typedef struct bal_auth_reader bal_auth_reader;
bal_auth_reader *bal_auth_reader_open(bal_auth *auth);
void bal_auth_reader_close(bal_auth_reader *reader);

/*
 * The same check and charge for a caller that does both for one request: the check keeps
 * its key set in a grant (its own reference, or the reader's when reader is not NULL), and
 * the charge uses the key found then instead of looking the set up and the key again. A
 * grant that bal_auth_check_grant filled (it returned true) must be released with
 * bal_auth_grant_release, charged or not, before the reader's next check; a refused check
 * leaves it empty (releasing it then does nothing). Its key set outlives a reload until the
 * release, so a charge under a grant finds the key the check found.
 */
typedef struct bal_auth_grant {
    struct bal_auth_keyset *set; /* NULL: empty */
    const struct bal_auth_key *key;
    bool referenced; /* the grant holds its own reference to set (no reader) */
} bal_auth_grant;

bool bal_auth_check_grant(bal_auth *auth, bal_auth_reader *reader, const bal_auth_request *request,
                          bal_permission needed, bal_auth_decision *decision, bal_auth_grant *grant);
bool bal_auth_charge_grant(const bal_auth_grant *grant, uint32_t operations, int64_t now_ms,
                           bal_auth_decision *decision);
void bal_auth_grant_release(bal_auth_grant *grant);

#endif
