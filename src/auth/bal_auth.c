/*
 * bal_auth.c -- authentication, permissions and rate limits (see bal_auth.h).
 *
 * The key set in force is an immutable, reference-counted bal_auth_keyset. A check takes
 * a reference under keyset_lock (a pointer copy and an increment), works on the set
 * without any lock, and drops the reference; a reload parses the new set outside every
 * lock but load_lock, swaps the pointer under keyset_lock and drops the old set's
 * reference, so the last check still using it frees it. The expensive steps -- SHA-256 of
 * the body and the HMAC -- run outside every lock.
 */
#include "bal_auth.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "bal_auth_bucket.h"
#include "bal_auth_keys.h"
#include "bal_auth_nonce.h"
#include "bal_sign.h"

_Static_assert(BAL_AUTH_SIGNATURE_LENGTH == BAL_SIGN_HEX_LENGTH, "the header carries the signer's hex");
_Static_assert(BAL_AUTH_TIMESTAMP_DIGITS_MAX <= 18, "a timestamp cannot overflow int64 while read");

#define BAL_AUTH_MS_PER_S 1000

struct bal_auth {
    pthread_mutex_t keyset_lock; /* guards the keyset pointer: held for a copy and an increment */
    bal_auth_keyset *keyset;     /* never NULL; empty before the first load */
    pthread_mutex_t load_lock;   /* serialises loads, so attaching states sees a stable old set */
    atomic_size_t key_count;
    _Atomic uint64_t generation; /* key sets loaded so far: a reader's set is current while equal */
    bal_auth_nonce_memory *nonces;
};

struct bal_auth_reader {
    bal_auth *auth;
    bal_auth_keyset *set; /* a reference */
    uint64_t generation;  /* auth->generation when set was taken */
};

const char *bal_auth_status_name(bal_auth_status status) {
    switch (status) {
    case BAL_AUTH_OK: return "ok";
    case BAL_AUTH_INVALID_CONFIG: return "invalid_config";
    case BAL_AUTH_OUT_OF_MEMORY: return "out_of_memory";
    case BAL_AUTH_IO_ERROR: return "io_error";
    case BAL_AUTH_INSECURE_FILE: return "insecure_file";
    case BAL_AUTH_INVALID_FILE: return "invalid_file";
    }
    return "unknown";
}

void bal_auth_config_default(bal_auth_config *config) {
    assert(config != NULL);
    memset(config, 0, sizeof *config);
    config->nonce_count_max = BAL_AUTH_NONCE_COUNT_DEFAULT;
}


bal_auth_status bal_auth_create(const bal_auth_config *config, bal_auth **out, char *errstr, size_t errstr_size) {
    assert(config != NULL && out != NULL);
    if (config->nonce_count_max < 1 || config->nonce_count_max > BAL_AUTH_NONCE_COUNT_MAX) {
        bal_auth_keys_message(errstr, errstr_size, "nonce_count_max must be 1 to %u", (unsigned)BAL_AUTH_NONCE_COUNT_MAX);
        return BAL_AUTH_INVALID_CONFIG;
    }
    bal_auth *auth = calloc(1, sizeof *auth);
    if (auth == NULL) goto out_of_memory;
    auth->keyset = bal_auth_keyset_empty();
    auth->nonces = bal_auth_nonce_create(config->nonce_count_max);
    if (auth->keyset == NULL || auth->nonces == NULL) goto out_of_memory;
    if (pthread_mutex_init(&auth->keyset_lock, NULL) != 0) goto out_of_memory;
    if (pthread_mutex_init(&auth->load_lock, NULL) != 0) {
        pthread_mutex_destroy(&auth->keyset_lock);
        goto out_of_memory;
    }
    atomic_init(&auth->key_count, 0);
    atomic_init(&auth->generation, 0);
    *out = auth;
    return BAL_AUTH_OK;
out_of_memory:
    if (auth != NULL) {
        bal_auth_keyset_free(auth->keyset);
        bal_auth_nonce_destroy(auth->nonces);
        free(auth);
    }
    bal_auth_keys_message(errstr, errstr_size, "out of memory (or no randomness) for %u nonces",
                    (unsigned)config->nonce_count_max);
    return BAL_AUTH_OUT_OF_MEMORY;
}

void bal_auth_destroy(bal_auth *auth) {
    if (auth == NULL) return;
    /* Nothing else runs now, so ours is the last reference. */
    assert(atomic_load(&auth->keyset->references) == 1);
    bal_auth_keyset_free(auth->keyset);
    bal_auth_nonce_destroy(auth->nonces);
    pthread_mutex_destroy(&auth->keyset_lock);
    pthread_mutex_destroy(&auth->load_lock);
    free(auth);
}

/* A reference to the key set in force and, if generation is not NULL, its generation. */
static bal_auth_keyset *bal_auth_acquire_counted(bal_auth *auth, uint64_t *generation) {
    pthread_mutex_lock(&auth->keyset_lock);
    bal_auth_keyset *set = auth->keyset;
    atomic_fetch_add_explicit(&set->references, 1, memory_order_relaxed);
    if (generation != NULL) *generation = atomic_load_explicit(&auth->generation, memory_order_relaxed);
    pthread_mutex_unlock(&auth->keyset_lock);
    return set;
}

static bal_auth_keyset *bal_auth_acquire(bal_auth *auth) {
    return bal_auth_acquire_counted(auth, NULL);
}

static void bal_auth_release(bal_auth_keyset *set) {
    unsigned before = atomic_fetch_sub_explicit(&set->references, 1, memory_order_acq_rel);
    assert(before >= 1);
    if (before == 1) bal_auth_keyset_free(set);
}

bal_auth_status bal_auth_load_text(bal_auth *auth, const char *text, size_t length, const char *source_name,
                                   char *errstr, size_t errstr_size) {
    assert(auth != NULL && source_name != NULL);
    bal_auth_keyset *set = NULL;
    pthread_mutex_lock(&auth->load_lock);
    bal_auth_status status = bal_auth_keyset_parse(text, length, source_name, &set, errstr, errstr_size);
    if (status == BAL_AUTH_OK && !bal_auth_keyset_attach_states(set, auth->keyset)) {
        bal_auth_keys_message(errstr, errstr_size, "%s: out of memory", source_name);
        bal_auth_keyset_free(set);
        status = BAL_AUTH_OUT_OF_MEMORY;
    }
    if (status == BAL_AUTH_OK) {
        pthread_mutex_lock(&auth->keyset_lock);
        bal_auth_keyset *old = auth->keyset;
        auth->keyset = set;
        atomic_store(&auth->key_count, set->count);
        atomic_fetch_add(&auth->generation, 1); /* readers take the new set at their next check */
        pthread_mutex_unlock(&auth->keyset_lock);
        bal_auth_release(old);
    }
    pthread_mutex_unlock(&auth->load_lock);
    return status;
}

/* Reads the whole file into memory: fstat on the open descriptor, so the mode checked is
   the mode of the file read. */
static bal_auth_status bal_auth_read_file(const char *path, char **text_out, size_t *length_out, char *errstr,
                                          size_t errstr_size) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        bal_auth_keys_message(errstr, errstr_size, "%s: cannot open: %s", path, strerror(errno));
        return BAL_AUTH_IO_ERROR;
    }
    struct stat info;
    bal_auth_status status = BAL_AUTH_OK;
    if (fstat(fd, &info) != 0) {
        bal_auth_keys_message(errstr, errstr_size, "%s: cannot stat: %s", path, strerror(errno));
        status = BAL_AUTH_IO_ERROR;
    } else if (!S_ISREG(info.st_mode)) {
        bal_auth_keys_message(errstr, errstr_size, "%s: not a regular file", path);
        status = BAL_AUTH_INSECURE_FILE;
    } else if ((info.st_mode & (S_IRWXG | S_IRWXO)) != 0) {
        /* Secrets that other users can read are compromised already; refusing makes the
           operator fix the mode instead of running with leaked keys. */
        bal_auth_keys_message(errstr, errstr_size, "%s: accessible by group or others (mode %04o); chmod 600 it", path,
                        (unsigned)(info.st_mode & 07777));
        status = BAL_AUTH_INSECURE_FILE;
    } else if ((uint64_t)info.st_size > BAL_AUTH_FILE_BYTES_MAX) {
        bal_auth_keys_message(errstr, errstr_size, "%s: larger than %u bytes", path, (unsigned)BAL_AUTH_FILE_BYTES_MAX);
        status = BAL_AUTH_INVALID_FILE;
    }
    if (status != BAL_AUTH_OK) {
        close(fd);
        return status;
    }
    /* One byte more than allowed: a file that grew since fstat is caught, not truncated. */
    size_t capacity = (size_t)info.st_size + 1, length = 0;
    char *text = malloc(capacity);
    if (text == NULL) {
        close(fd);
        bal_auth_keys_message(errstr, errstr_size, "%s: out of memory", path);
        return BAL_AUTH_OUT_OF_MEMORY;
    }
    while (length < capacity) {
        ssize_t got = read(fd, text + length, capacity - length);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            bal_auth_keys_message(errstr, errstr_size, "%s: cannot read: %s", path, strerror(errno));
            status = BAL_AUTH_IO_ERROR;
            break;
        }
        if (got == 0) break;
        length += (size_t)got;
    }
    close(fd);
    if (status == BAL_AUTH_OK && length == capacity) {
        bal_auth_keys_message(errstr, errstr_size, "%s: changed while being read", path);
        status = BAL_AUTH_IO_ERROR;
    }
    if (status != BAL_AUTH_OK) {
        explicit_bzero(text, length);
        free(text);
        return status;
    }
    *text_out = text;
    *length_out = length;
    return BAL_AUTH_OK;
}

bal_auth_status bal_auth_load(bal_auth *auth, const char *path, char *errstr, size_t errstr_size) {
    assert(auth != NULL && path != NULL);
    char *text = NULL;
    size_t length = 0;
    bal_auth_status status = bal_auth_read_file(path, &text, &length, errstr, errstr_size);
    if (status != BAL_AUTH_OK) return status;
    status = bal_auth_load_text(auth, text, length, path, errstr, errstr_size);
    explicit_bzero(text, length); /* the file's secrets do not stay in freed memory */
    free(text);
    return status;
}

bal_auth_reader *bal_auth_reader_open(bal_auth *auth) {
    assert(auth != NULL);
    bal_auth_reader *reader = malloc(sizeof *reader);
    if (reader == NULL) return NULL;
    reader->auth = auth;
    reader->set = bal_auth_acquire_counted(auth, &reader->generation);
    return reader;
}

void bal_auth_reader_close(bal_auth_reader *reader) {
    if (reader == NULL) return;
    bal_auth_release(reader->set);
    free(reader);
}

/* The reader's set, taken anew if a reload replaced it since: one shared load when not. */
static bal_auth_keyset *bal_auth_reader_set(bal_auth_reader *reader) {
    uint64_t generation = atomic_load_explicit(&reader->auth->generation, memory_order_acquire);
    if (generation != reader->generation) {
        bal_auth_keyset *old = reader->set;
        reader->set = bal_auth_acquire_counted(reader->auth, &reader->generation);
        bal_auth_release(old);
    }
    return reader->set;
}

size_t bal_auth_key_count(const bal_auth *auth) {
    assert(auth != NULL);
    return atomic_load(&auth->key_count);
}

/* ---- Decisions ---- */

__attribute__((format(printf, 5, 6))) static bool bal_auth_refuse(bal_auth_decision *decision, int http_status,
                                                                  const char *error, const char *reason,
                                                                  const char *format, ...) {
    decision->http_status = http_status;
    decision->error = error;
    decision->reason = reason;
    va_list arguments;
    va_start(arguments, format);
    vsnprintf(decision->message, sizeof decision->message, format, arguments);
    va_end(arguments);
    return false;
}

/* Every field empty; the text buffers only as empty strings (they are read as strings). */
static void bal_auth_decision_clear(bal_auth_decision *decision) {
    decision->http_status = 0;
    decision->error = NULL;
    decision->reason = NULL;
    decision->message[0] = '\0';
    decision->retry_after_s = 0;
    decision->key_id[0] = '\0';
}

static uint32_t bal_auth_seconds_ceiling(uint64_t milliseconds) {
    uint64_t seconds = (milliseconds + BAL_AUTH_MS_PER_S - 1) / BAL_AUTH_MS_PER_S;
    if (seconds < 1) seconds = 1;
    return seconds > UINT32_MAX ? UINT32_MAX : (uint32_t)seconds;
}

/* ---- Header syntax ---- */

/* Character classes of the header values, as bits of one table: every request checks about
 * a hundred characters, and a loop that ANDs table entries runs without branches, where a
 * chain of comparisons per character mispredicts on random nonces. (The signature's digits
 * are checked by decoding them: bal_sign_hex_decode.) Ranges are a GNU C extension. */
#define BAL_AUTH_CLASS_DIGIT 1u /* X-Timestamp: 0-9 */
#define BAL_AUTH_CLASS_NONCE 2u /* X-Nonce: A-Z a-z 0-9 . _ : - + / = */
static const uint8_t bal_auth_classes[256] = {
    ['0' ... '9'] = BAL_AUTH_CLASS_DIGIT | BAL_AUTH_CLASS_NONCE,
    ['A' ... 'Z'] = BAL_AUTH_CLASS_NONCE,
    ['a' ... 'z'] = BAL_AUTH_CLASS_NONCE,
    ['.'] = BAL_AUTH_CLASS_NONCE, ['_'] = BAL_AUTH_CLASS_NONCE, [':'] = BAL_AUTH_CLASS_NONCE,
    ['-'] = BAL_AUTH_CLASS_NONCE, ['+'] = BAL_AUTH_CLASS_NONCE, ['/'] = BAL_AUTH_CLASS_NONCE,
    ['='] = BAL_AUTH_CLASS_NONCE,
};

/* True if every character of text is in the class. */
static bool bal_auth_all(const char *text, size_t length, uint8_t class) {
    assert(text != NULL && length > 0); /* an empty value is refused before */
    assert(class == BAL_AUTH_CLASS_DIGIT || class == BAL_AUTH_CLASS_NONCE);
    uint8_t all = 0xff;
    for (size_t i = 0; i < length; i++) all &= bal_auth_classes[(unsigned char)text[i]];
    return (all & class) != 0;
}

/* Checks the four headers' syntax (step 2) and decodes X-Signature into signature. */
static bool bal_auth_check_headers(const bal_auth_request *request, uint8_t signature[BAL_SIGN_DIGEST_BYTES],
                                   bal_auth_decision *decision) {
    static const char *const names[4] = {"X-Api-Key", "X-Timestamp", "X-Nonce", "X-Signature"};
    const char *values[4] = {request->api_key, request->timestamp, request->nonce, request->signature};
    for (size_t i = 0; i < 4; i++) {
        if (values[i] == NULL) {
            return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "missing_headers",
                                   "the %s header is missing", names[i]);
        }
    }
    if (!bal_auth_key_id_valid(request->api_key, request->api_key_length)) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "malformed_header",
                               "X-Api-Key must be 1 to %d characters of A-Z a-z 0-9 . _ -",
                               BAL_AUTH_KEY_ID_LENGTH_MAX);
    }
    if (request->timestamp_length == 0 || request->timestamp_length > BAL_AUTH_TIMESTAMP_DIGITS_MAX ||
        !bal_auth_all(request->timestamp, request->timestamp_length, BAL_AUTH_CLASS_DIGIT)) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "malformed_header",
                               "X-Timestamp must be Unix milliseconds: 1 to %d decimal digits",
                               BAL_AUTH_TIMESTAMP_DIGITS_MAX);
    }
    if (request->nonce_length == 0 || request->nonce_length > BAL_AUTH_NONCE_LENGTH_MAX ||
        !bal_auth_all(request->nonce, request->nonce_length, BAL_AUTH_CLASS_NONCE)) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "malformed_header",
                               "X-Nonce must be 1 to %d characters of A-Z a-z 0-9 . _ : - + / =",
                               BAL_AUTH_NONCE_LENGTH_MAX);
    }
    if (request->signature_length != BAL_AUTH_SIGNATURE_LENGTH ||
        !bal_sign_hex_decode(request->signature, signature, BAL_SIGN_DIGEST_BYTES)) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "malformed_header",
                               "X-Signature must be %d lower-case hex digits", BAL_AUTH_SIGNATURE_LENGTH);
    }
    return true;
}

static int64_t bal_auth_parse_timestamp(const char *digits, size_t length) {
    assert(length >= 1 && length <= BAL_AUTH_TIMESTAMP_DIGITS_MAX);
    int64_t value = 0;
    for (size_t i = 0; i < length; i++) value = value * 10 + (digits[i] - '0');
    return value;
}

/* ---- The check ---- */

static bool bal_auth_check_timestamp(const bal_auth_request *request, int64_t timestamp_ms,
                                     bal_auth_decision *decision) {
    int64_t behind_ms = request->now_ms - timestamp_ms;
    if (behind_ms > BAL_AUTH_REPLAY_WINDOW_MS) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "stale_timestamp",
                               "X-Timestamp is %lld ms behind the server clock; at most %d ms are accepted",
                               (long long)behind_ms, BAL_AUTH_REPLAY_WINDOW_MS);
    }
    if (-behind_ms > BAL_AUTH_REPLAY_WINDOW_MS) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "stale_timestamp",
                               "X-Timestamp is %lld ms ahead of the server clock; at most %d ms are accepted",
                               (long long)-behind_ms, BAL_AUTH_REPLAY_WINDOW_MS);
    }
    return true;
}

static bool bal_auth_check_signature(const bal_auth_key *key, const bal_auth_request *request,
                                     const char body_hash[BAL_SIGN_HEX_LENGTH],
                                     const uint8_t signature[BAL_SIGN_DIGEST_BYTES], bal_auth_decision *decision) {
    uint8_t expected[BAL_SIGN_DIGEST_BYTES];
    bal_sign_request_digest_hashed(key->secret, key->secret_length, request->method, request->method_length,
                                   request->path_with_query, request->path_length, request->timestamp,
                                   request->timestamp_length, request->nonce, request->nonce_length, body_hash,
                                   expected);
    /* Constant time: the position of the first differing byte must not leak. Comparing the
       decoded bytes is comparing the hex: lower-case hex and bytes map one to one. */
    bool equal = bal_sign_equal(expected, signature, BAL_SIGN_DIGEST_BYTES);
    explicit_bzero(expected, sizeof expected);
    if (!equal) {
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "bad_signature",
                               "X-Signature does not match the request");
    }
    return true;
}

static bool bal_auth_check_nonce(bal_auth *auth, const bal_auth_request *request, int64_t timestamp_ms,
                                 const uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES], bal_auth_decision *decision) {
    int64_t retry_ms = 0;
    /* A replay is accepted by the timestamp check until timestamp + window, inclusive. */
    switch (bal_auth_nonce_remember(auth->nonces, digest, timestamp_ms + BAL_AUTH_REPLAY_WINDOW_MS, request->now_ms,
                                    &retry_ms)) {
    case BAL_AUTH_NONCE_REMEMBERED: return true;
    case BAL_AUTH_NONCE_REPLAYED:
        return bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "replayed_nonce",
                               "X-Nonce was already used with this key; send a new nonce with every request");
    case BAL_AUTH_NONCE_FULL:
        decision->retry_after_s = bal_auth_seconds_ceiling((uint64_t)retry_ms);
        return bal_auth_refuse(decision, 503, BAL_AUTH_ERROR_UNAVAILABLE, "nonce_memory_full",
                               "the server remembers too many recent nonces to accept a new one; retry later");
    }
    assert(false);
    return false;
}

/* Steps 5 and 6 for a known key with a fresh timestamp. The nonce memory's two cache misses
 * hide behind the hashing: its bucket is prefetched before the body's hash, the chain's
 * first entry (which the bucket names) before the HMAC. Nothing is remembered unless the
 * signature is right. */
static bool bal_auth_check_signed(bal_auth *auth, const bal_auth_key *key, const bal_auth_request *request,
                                  int64_t timestamp_ms, const uint8_t signature[BAL_SIGN_DIGEST_BYTES],
                                  bal_auth_decision *decision) {
    assert(key != NULL && key->id_length >= 1);
    assert(request->nonce != NULL && request->nonce_length >= 1);
    uint8_t digest[BAL_AUTH_NONCE_DIGEST_BYTES];
    bal_auth_nonce_digest(auth->nonces, key->id, key->id_length, request->nonce, request->nonce_length, digest);
    bal_auth_nonce_prefetch(auth->nonces, digest);
    char body_hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(request->body, request->body_length, body_hash);
    bal_auth_nonce_prefetch_entry(auth->nonces, digest);
    return bal_auth_check_signature(key, request, body_hash, signature, decision) &&
           bal_auth_check_nonce(auth, request, timestamp_ms, digest, decision);
}

static const char *bal_auth_permission_name(bal_permission permission) {
    switch (permission) {
    case BAL_PERMISSION_READ: return "read";
    case BAL_PERMISSION_WRITE: return "write";
    case BAL_PERMISSION_ADMIN: return "admin";
    }
    return "required";
}

bool bal_auth_check_grant(bal_auth *auth, bal_auth_reader *reader, const bal_auth_request *request,
                          bal_permission needed, bal_auth_decision *decision, bal_auth_grant *grant) {
    assert(auth != NULL && request != NULL && decision != NULL && grant != NULL);
    assert(reader == NULL || reader->auth == auth);
    grant->set = NULL;
    grant->key = NULL;
    grant->referenced = false;
    assert(request->method != NULL && request->path_with_query != NULL);
    assert(request->body != NULL || request->body_length == 0);
    assert(request->now_ms >= 0);
    assert(needed != 0 && (needed & ~(BAL_PERMISSION_READ | BAL_PERMISSION_WRITE | BAL_PERMISSION_ADMIN)) == 0);
    bal_auth_decision_clear(decision);
    uint8_t signature[BAL_SIGN_DIGEST_BYTES];
    if (!bal_auth_check_headers(request, signature, decision)) return false;
    int64_t timestamp_ms = bal_auth_parse_timestamp(request->timestamp, request->timestamp_length);
    bal_auth_keyset *set = reader != NULL ? bal_auth_reader_set(reader) : bal_auth_acquire(auth);
    const bal_auth_key *key = bal_auth_keyset_find(set, request->api_key, request->api_key_length);
    bool allowed = false;
    if (key == NULL) {
        bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "unknown_key", "X-Api-Key names no known key");
    } else if (bal_auth_check_timestamp(request, timestamp_ms, decision) &&
               bal_auth_check_signed(auth, key, request, timestamp_ms, signature, decision)) {
        memcpy(decision->key_id, key->id, (size_t)key->id_length + 1);
        if ((key->permissions & needed) != needed) {
            bal_auth_refuse(decision, 403, BAL_AUTH_ERROR_FORBIDDEN, "permission",
                            "this key lacks the %s permission", bal_auth_permission_name(needed));
        } else {
            allowed = true;
        }
    }
    if (allowed) {
        grant->set = set;
        grant->key = key;
        grant->referenced = reader == NULL;
    } else if (reader == NULL) {
        bal_auth_release(set);
    }
    return allowed;
}

void bal_auth_grant_release(bal_auth_grant *grant) {
    assert(grant != NULL);
    if (grant->set != NULL && grant->referenced) bal_auth_release(grant->set);
    grant->set = NULL;
    grant->key = NULL;
    grant->referenced = false;
}

bool bal_auth_check(bal_auth *auth, const bal_auth_request *request, bal_permission needed,
                    bal_auth_decision *decision) {
    bal_auth_grant grant;
    bool allowed = bal_auth_check_grant(auth, NULL, request, needed, decision, &grant);
    bal_auth_grant_release(&grant);
    return allowed;
}

/* Refills both buckets, then charges both or neither. Under the key's lock. */
static bool bal_auth_charge_key(const bal_auth_key *key, uint32_t operations, int64_t now_ms,
                                bal_auth_decision *decision) {
    bal_auth_key_state *state = key->state;
    pthread_mutex_lock(&state->lock);
    bal_auth_bucket_refill(&state->requests, key->requests_per_second, key->requests_burst, now_ms);
    bal_auth_bucket_refill(&state->operations, key->operations_per_second, key->operations_burst, now_ms);
    uint64_t requests_wait_ms = bal_auth_bucket_wait_ms(&state->requests, key->requests_per_second,
                                                        key->requests_burst, 1);
    /* A read costs no operations: it must not wait for a batch's debt. */
    uint64_t operations_wait_ms = operations == 0 ? 0
                                                  : bal_auth_bucket_wait_ms(&state->operations,
                                                                            key->operations_per_second,
                                                                            key->operations_burst, operations);
    if (requests_wait_ms == 0 && operations_wait_ms == 0) {
        bal_auth_bucket_take(&state->requests, 1);
        if (operations > 0) bal_auth_bucket_take(&state->operations, operations);
    }
    pthread_mutex_unlock(&state->lock);
    if (requests_wait_ms == 0 && operations_wait_ms == 0) return true;
    uint64_t wait_ms = requests_wait_ms > operations_wait_ms ? requests_wait_ms : operations_wait_ms;
    decision->retry_after_s = bal_auth_seconds_ceiling(wait_ms);
    if (requests_wait_ms > 0) {
        return bal_auth_refuse(decision, 429, BAL_AUTH_ERROR_RATE_LIMITED, "requests",
                               "over this key's limit of %u requests per second (burst %u)",
                               (unsigned)key->requests_per_second, (unsigned)key->requests_burst);
    }
    return bal_auth_refuse(decision, 429, BAL_AUTH_ERROR_RATE_LIMITED, "operations",
                           "%u operations are over this key's limit of %u per second (burst %u)", (unsigned)operations,
                           (unsigned)key->operations_per_second, (unsigned)key->operations_burst);
}

bool bal_auth_charge(bal_auth *auth, const char *key_id, uint32_t operations, int64_t now_ms,
                     bal_auth_decision *decision) {
    assert(auth != NULL && key_id != NULL && decision != NULL);
    /* key_id may live in *decision, which is about to be cleared. */
    char id[BAL_AUTH_KEY_ID_LENGTH_MAX + 1];
    size_t id_length = strnlen(key_id, sizeof id);
    if (id_length > BAL_AUTH_KEY_ID_LENGTH_MAX) id_length = 0; /* not a key id: found nowhere */
    memcpy(id, key_id, id_length);
    id[id_length] = '\0';
    bal_auth_decision_clear(decision);
    bal_auth_keyset *set = bal_auth_acquire(auth);
    const bal_auth_key *key = bal_auth_keyset_find(set, id, id_length);
    bool allowed = false;
    if (key == NULL) {
        bal_auth_refuse(decision, 401, BAL_AUTH_ERROR_UNAUTHORIZED, "unknown_key",
                        "the key was removed from the key set");
    } else {
        memcpy(decision->key_id, id, id_length + 1);
        allowed = bal_auth_charge_key(key, operations, now_ms, decision);
    }
    bal_auth_release(set);
    return allowed;
}

bool bal_auth_charge_grant(const bal_auth_grant *grant, uint32_t operations, int64_t now_ms,
                           bal_auth_decision *decision) {
    assert(grant != NULL && grant->set != NULL && grant->key != NULL && decision != NULL);
    bal_auth_decision_clear(decision);
    memcpy(decision->key_id, grant->key->id, (size_t)grant->key->id_length + 1);
    return bal_auth_charge_key(grant->key, operations, now_ms, decision);
}
