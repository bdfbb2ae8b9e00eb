/*
 * fuzz_auth.c -- libFuzzer target for request authentication and the keys file parser
 * (src/auth).
 *
 * Input layout: byte 0 holds flags, byte 1 moves the server's clock, then up to six
 * fields separated by '\n' -- method, path, X-Api-Key, X-Timestamp, X-Nonce, X-Signature --
 * and the rest is the body. A field that is exactly one 0x7f byte stands for an absent
 * header; missing trailing fields are absent too.
 *   flags bit 0: replace the signature with the correct one (when the key is one of the
 *                fixed keys), so the fuzzer gets past the HMAC to the nonce memory,
 *                the permission check and the token buckets;
 *   flags bits 1-2: the permission needed (read, write, admin, read+write);
 *   flags bit 3: instead, feed everything after byte 1 to the keys file parser.
 * Beyond "no crash, no leak", it checks the decision's promises: a refusal has a known
 * status, code and reason and a JSON-safe message; an allowance names the key. The
 * signature field also goes through bal_sign_hex_decode, checked against a plain decoder.
 * Links bal_auth.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bal_auth.h"
#include "bal_sign.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_FIELDS 6
#define FUZZ_ABSENT 0x7f
#define FUZZ_NOW_MS INT64_C(1700000000000)
/* Each step of byte 1 moves the clock by 10 s: +-21 minutes reaches both sides of the
   replay window and makes the nonce memory reclaim. */
#define FUZZ_CLOCK_STEP_MS 10000
/* Small, so that the fuzzer fills it. */
#define FUZZ_NONCE_COUNT 64

static const char fuzz_keys[] =
    "reader fuzz-reader-secret-0123456789abcdefghij read 1000 1000 100000 100000\n"
    "writer fuzz-writer-secret-0123456789abcdefghij write 2 2 10 10\n"
    "admin fuzz-admin-secret-0123456789abcdefghijkl admin 1000000 1000000 1000000 1000000\n";

static const struct {
    const char *id;
    const char *secret;
} fuzz_secrets[] = {
    {"reader", "fuzz-reader-secret-0123456789abcdefghij"},
    {"writer", "fuzz-writer-secret-0123456789abcdefghij"},
    {"admin", "fuzz-admin-secret-0123456789abcdefghijkl"},
};

static bal_auth *fuzz_auth_fixed;
static bal_auth *fuzz_auth_parsed;

static void fuzz_setup(void) {
    if (fuzz_auth_fixed != NULL) return;
    bal_auth_config config;
    bal_auth_config_default(&config);
    config.nonce_count_max = FUZZ_NONCE_COUNT;
    if (bal_auth_create(&config, &fuzz_auth_fixed, NULL, 0) != BAL_AUTH_OK) abort();
    if (bal_auth_create(&config, &fuzz_auth_parsed, NULL, 0) != BAL_AUTH_OK) abort();
    if (bal_auth_load_text(fuzz_auth_fixed, fuzz_keys, strlen(fuzz_keys), "fuzz", NULL, 0) != BAL_AUTH_OK) abort();
}

static bool fuzz_json_safe(const char *text) {
    for (const char *c = text; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7e || *c == '"' || *c == '\\') return false;
    }
    return true;
}

static void fuzz_check_decision(bool allowed, const bal_auth_decision *decision) {
    if (memchr(decision->message, '\0', sizeof decision->message) == NULL) abort();
    if (memchr(decision->key_id, '\0', sizeof decision->key_id) == NULL) abort();
    if (allowed) {
        if (decision->http_status != 0 || decision->error != NULL || decision->reason != NULL) abort();
        if (decision->key_id[0] == '\0') abort();
        return;
    }
    int status = decision->http_status;
    if (status != 401 && status != 403 && status != 429 && status != 503) abort();
    if (decision->error == NULL || decision->reason == NULL || decision->message[0] == '\0') abort();
    if (!fuzz_json_safe(decision->message)) abort();
    if ((status == 429 || status == 503) != (decision->retry_after_s >= 1)) abort();
}

static void fuzz_keys_file(const uint8_t *data, size_t size) {
    char errstr[256];
    size_t before = bal_auth_key_count(fuzz_auth_parsed);
    bal_auth_status status = bal_auth_load_text(fuzz_auth_parsed, (const char *)data, size, "fuzz", errstr,
                                                sizeof errstr);
    size_t after = bal_auth_key_count(fuzz_auth_parsed);
    if (status != BAL_AUTH_OK && after != before) abort(); /* a failed load keeps the old set */
    if (status == BAL_AUTH_OK && (after == 0 || after > BAL_AUTH_KEYS_MAX)) abort();
    if (status != BAL_AUTH_OK && memchr(errstr, '\0', sizeof errstr) == NULL) abort();
}

/* bal_sign_hex_decode against the plainest reading of its contract: lower-case digits only,
   high nibble first. The signature field's bytes, whatever they are, are the input. */
static void fuzz_hex_decode(const char *text, size_t length) {
    uint8_t decoded[BAL_SIGN_HEX_LENGTH / 2];
    size_t byte_count = length / 2 < sizeof decoded ? length / 2 : sizeof decoded;
    bool valid = bal_sign_hex_decode(text, decoded, byte_count);
    bool expected = true;
    for (size_t i = 0; i < 2 * byte_count; i++) {
        char c = text[i];
        expected = expected && ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'));
    }
    if (valid != expected) abort();
    for (size_t i = 0; valid && i < 2 * byte_count; i++) {
        char c = text[i];
        unsigned value = c <= '9' ? (unsigned)(c - '0') : (unsigned)(c - 'a' + 10);
        unsigned nibble = i % 2 == 0 ? (unsigned)decoded[i / 2] >> 4 : (unsigned)decoded[i / 2] & 15u;
        if (nibble != value) abort();
    }
}

static const char *fuzz_secret_of(const char *key, size_t key_length) {
    for (size_t i = 0; i < sizeof fuzz_secrets / sizeof fuzz_secrets[0]; i++) {
        if (strlen(fuzz_secrets[i].id) == key_length && memcmp(fuzz_secrets[i].id, key, key_length) == 0) {
            return fuzz_secrets[i].secret;
        }
    }
    return NULL;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_setup();
    if (size < 2) return 0;
    uint8_t flags = data[0];
    int64_t now_ms = FUZZ_NOW_MS + (int64_t)(int8_t)data[1] * FUZZ_CLOCK_STEP_MS;
    data += 2;
    size -= 2;
    if (flags & 8) {
        fuzz_keys_file(data, size);
        return 0;
    }
    /* Split into fields; they point into a private copy so that the sanitizer sees reads
       past each field's end. */
    char *copy = malloc(size + 1);
    if (copy == NULL) return 0;
    memcpy(copy, data, size);
    const char *fields[FUZZ_FIELDS] = {0};
    size_t lengths[FUZZ_FIELDS] = {0};
    size_t offset = 0;
    for (size_t i = 0; i < FUZZ_FIELDS && offset <= size; i++) {
        const char *newline = memchr(copy + offset, '\n', size - offset);
        size_t length = newline != NULL ? (size_t)(newline - (copy + offset)) : size - offset;
        bool absent = length == 1 && (uint8_t)copy[offset] == FUZZ_ABSENT;
        fields[i] = absent ? NULL : copy + offset;
        lengths[i] = absent ? 0 : length;
        offset += length + 1;
    }
    if (fields[5] != NULL) fuzz_hex_decode(fields[5], lengths[5]);
    const char *body = offset <= size ? copy + offset : NULL;
    size_t body_length = offset <= size ? size - offset : 0;
    char signature[BAL_SIGN_HEX_LENGTH + 1];
    const char *secret = fields[2] != NULL ? fuzz_secret_of(fields[2], lengths[2]) : NULL;
    bool can_sign = fields[0] != NULL && fields[1] != NULL && fields[3] != NULL && fields[4] != NULL;
    if ((flags & 1) && secret != NULL && can_sign) {
        bal_sign_request(secret, strlen(secret), fields[0], lengths[0], fields[1], lengths[1], fields[3], lengths[3],
                         fields[4], lengths[4], body, body_length, signature);
        fields[5] = signature;
        lengths[5] = BAL_SIGN_HEX_LENGTH;
    }
    bal_auth_request request = {
        .method = fields[0] != NULL ? fields[0] : "GET",
        .method_length = fields[0] != NULL ? lengths[0] : 3,
        .path_with_query = fields[1] != NULL ? fields[1] : "/",
        .path_length = fields[1] != NULL ? lengths[1] : 1,
        .api_key = fields[2], .api_key_length = lengths[2],
        .timestamp = fields[3], .timestamp_length = lengths[3],
        .nonce = fields[4], .nonce_length = lengths[4],
        .signature = fields[5], .signature_length = lengths[5],
        .body = body, .body_length = body_length,
        .now_ms = now_ms,
    };
    static const bal_permission needs[4] = {BAL_PERMISSION_READ, BAL_PERMISSION_WRITE, BAL_PERMISSION_ADMIN,
                                            BAL_PERMISSION_READ | BAL_PERMISSION_WRITE};
    bal_auth_decision decision;
    bool allowed = bal_auth_check(fuzz_auth_fixed, &request, needs[(flags >> 1) & 3], &decision);
    fuzz_check_decision(allowed, &decision);
    if (allowed) {
        uint32_t operations = (uint32_t)(body_length > 8192 ? 8192 : body_length);
        allowed = bal_auth_charge(fuzz_auth_fixed, decision.key_id, operations, now_ms, &decision);
        fuzz_check_decision(allowed, &decision);
    }
    free(copy);
    return 0;
}
