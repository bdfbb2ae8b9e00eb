/*
 * test_auth.c -- tests of src/auth: signatures against independently computed answers,
 * tampering, header syntax, the replay window, the nonce memory, permissions, token
 * buckets, the keys file, reloads and concurrent checks during reloads.
 *
 * Usage: test_auth <case>; each case is one CTest test (tests/auth/CMakeLists.txt).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "bal_auth.h"
#include "bal_auth_nonce.h"
#include "bal_sign.h"
#include "bal_test.h"

/* ---- Fixtures ---- */

/* The known-answer example of docs/auth.md. The expected values were computed with:
 *   printf '%s' "$BODY" | openssl dgst -sha256
 *   printf 'POST\n/v1/transactions\n1700000000000\nnonce-0001\n%s' "$BODY_HASH" |
 *       openssl dgst -sha256 -hmac "$SECRET"
 */
#define KAT_KEY "kat-key"
#define KAT_SECRET "kat-secret-0123456789abcdefghijklmnopqrstuv"
#define KAT_TIMESTAMP "1700000000000"
#define KAT_NOW_MS INT64_C(1700000000000)
#define KAT_POST_PATH "/v1/transactions"
#define KAT_POST_NONCE "nonce-0001"
#define KAT_POST_BODY "{\"transaction_id\":\"t-1\",\"type\":\"DEPOSIT\",\"account_id\":1,\"currency\":\"USDT\",\"amount\":\"100\"}"
#define KAT_POST_BODY_HASH "a5080a039a43a5424342f216155b8daa4b9db59645f01159991adc136800de78"
#define KAT_POST_SIGNATURE "31ddd215053b778641b025950e97c66a5457c150f1cad5d996d4179e3db1c09b"
#define KAT_GET_PATH "/v1/accounts/1/transactions?currency=USDT&limit=10"
#define KAT_GET_NONCE "nonce-0002"
#define KAT_EMPTY_HASH "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
#define KAT_GET_SIGNATURE "7f2f0caedeec42dcbcd4351817d6dbbef1b531659d6f03cc34e394ab8f011951"

#define SECRET_READER "reader-secret-0123456789abcdefghijklmnop"
#define SECRET_WRITER "writer-secret-0123456789abcdefghijklmnop"
#define SECRET_BOTH "both-secret-0123456789abcdefghijklmnopqrs"
#define SECRET_ADMIN "admin-secret-0123456789abcdefghijklmnopqr"

static const char standard_keys[] =
    "# Test keys: id, secret, permissions, requests/s, burst, operations/s, burst.\n"
    "\n"
    "kat-key " KAT_SECRET " read,write 1000000 1000000 1000000 1000000\n"
    "reader\t" SECRET_READER "\tread 1000000 1000000 1000000 1000000\r\n"
    "  writer " SECRET_WRITER " write 1000000 1000000 1000000 1000000\n"
    "both " SECRET_BOTH " write,read 1000000 1000000 1000000 1000000\n"
    "admin " SECRET_ADMIN " admin 1000000 1000000 1000000 1000000";

static bal_auth *auth_with(const char *keys, uint32_t nonce_count_max) {
    bal_auth_config config;
    bal_auth_config_default(&config);
    if (nonce_count_max != 0) config.nonce_count_max = nonce_count_max;
    bal_auth *auth = NULL;
    char errstr[256];
    if (bal_auth_create(&config, &auth, errstr, sizeof errstr) != BAL_AUTH_OK) {
        fprintf(stderr, "bal_auth_create: %s\n", errstr);
        exit(2);
    }
    if (keys != NULL && bal_auth_load_text(auth, keys, strlen(keys), "keys", errstr, sizeof errstr) != BAL_AUTH_OK) {
        fprintf(stderr, "bal_auth_load_text: %s\n", errstr);
        exit(2);
    }
    return auth;
}

/* A request with its own storage for the header values it signs. */
typedef struct test_request {
    bal_auth_request request;
    char timestamp[32];
    char nonce[128];
    char signature[BAL_SIGN_HEX_LENGTH + 1];
} test_request;

static void test_request_sign(test_request *t, const char *key_id, const char *secret, const char *method,
                              const char *path, int64_t timestamp_ms, const char *nonce, const char *body,
                              int64_t now_ms) {
    memset(t, 0, sizeof *t);
    snprintf(t->timestamp, sizeof t->timestamp, "%" PRId64, timestamp_ms);
    snprintf(t->nonce, sizeof t->nonce, "%s", nonce);
    size_t body_length = body != NULL ? strlen(body) : 0;
    bal_sign_request(secret, strlen(secret), method, strlen(method), path, strlen(path), t->timestamp,
                     strlen(t->timestamp), t->nonce, strlen(t->nonce), body, body_length, t->signature);
    t->request = (bal_auth_request){
        .method = method, .method_length = strlen(method),
        .path_with_query = path, .path_length = strlen(path),
        .api_key = key_id, .api_key_length = strlen(key_id),
        .timestamp = t->timestamp, .timestamp_length = strlen(t->timestamp),
        .nonce = t->nonce, .nonce_length = strlen(t->nonce),
        .signature = t->signature, .signature_length = BAL_SIGN_HEX_LENGTH,
        .body = body, .body_length = body_length,
        .now_ms = now_ms,
    };
}

/* A message goes into JSON unescaped: printable ASCII without quotes or backslashes. */
static bool message_is_json_safe(const char *message) {
    for (const char *c = message; *c != '\0'; c++) {
        if (*c < 0x20 || *c > 0x7e || *c == '"' || *c == '\\') return false;
    }
    return true;
}

static bool refused_with(bool allowed, const bal_auth_decision *decision, int http_status, const char *reason) {
    if (allowed) {
        fprintf(stderr, "  expected %d %s, but allowed\n", http_status, reason);
        return false;
    }
    bool ok = decision->http_status == http_status && decision->reason != NULL &&
              strcmp(decision->reason, reason) == 0 && message_is_json_safe(decision->message) &&
              decision->message[0] != '\0';
    if (!ok) {
        fprintf(stderr, "  expected %d %s, got %d %s (%s)\n", http_status, reason, decision->http_status,
                decision->reason != NULL ? decision->reason : "(null)", decision->message);
    }
    return ok;
}

static bool allowed_as(bool allowed, const bal_auth_decision *decision, const char *key_id) {
    if (!allowed) {
        fprintf(stderr, "  expected allowed, got %d %s (%s)\n", decision->http_status,
                decision->reason != NULL ? decision->reason : "(null)", decision->message);
        return false;
    }
    return decision->http_status == 0 && decision->error == NULL && decision->reason == NULL &&
           strcmp(decision->key_id, key_id) == 0;
}

/* ---- Scratch files ---- */

static char scratch_dir[64];

static void scratch_init(void) {
    snprintf(scratch_dir, sizeof scratch_dir, "/tmp/bal_auth_test.XXXXXX");
    if (mkdtemp(scratch_dir) == NULL) {
        perror("mkdtemp");
        exit(2);
    }
}

static void scratch_path(const char *name, char *out, size_t size) {
    snprintf(out, size, "%s/%s", scratch_dir, name);
}

/* Writes a file with exactly this mode (open's mode is subject to the umask; fchmod is not). */
static void scratch_write(const char *name, const char *text, mode_t mode) {
    char path[128];
    scratch_path(name, path, sizeof path);
    unlink(path);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd < 0 || write(fd, text, strlen(text)) != (ssize_t)strlen(text) || fchmod(fd, mode) != 0) {
        perror(path);
        exit(2);
    }
    close(fd);
}

static void scratch_remove(const char *name) {
    char path[128];
    scratch_path(name, path, sizeof path);
    unlink(path);
}

/* ---- Cases ---- */

static void test_known_answer(void) {
    char hash[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_sha256_hex(KAT_POST_BODY, strlen(KAT_POST_BODY), hash);
    CHECK_STR(hash, KAT_POST_BODY_HASH);
    bal_sign_sha256_hex(NULL, 0, hash);
    CHECK_STR(hash, KAT_EMPTY_HASH);

    char signature[BAL_SIGN_HEX_LENGTH + 1];
    bal_sign_request(KAT_SECRET, strlen(KAT_SECRET), "POST", 4, KAT_POST_PATH, strlen(KAT_POST_PATH), KAT_TIMESTAMP,
                     strlen(KAT_TIMESTAMP), KAT_POST_NONCE, strlen(KAT_POST_NONCE), KAT_POST_BODY,
                     strlen(KAT_POST_BODY), signature);
    CHECK_STR(signature, KAT_POST_SIGNATURE);
    bal_sign_request(KAT_SECRET, strlen(KAT_SECRET), "GET", 3, KAT_GET_PATH, strlen(KAT_GET_PATH), KAT_TIMESTAMP,
                     strlen(KAT_TIMESTAMP), KAT_GET_NONCE, strlen(KAT_GET_NONCE), NULL, 0, signature);
    CHECK_STR(signature, KAT_GET_SIGNATURE);

    /* The same requests through bal_auth_check, with the signatures as literals. */
    bal_auth *auth = auth_with(standard_keys, 0);
    bal_auth_request post = {
        .method = "POST", .method_length = 4, .path_with_query = KAT_POST_PATH,
        .path_length = strlen(KAT_POST_PATH), .api_key = KAT_KEY, .api_key_length = strlen(KAT_KEY),
        .timestamp = KAT_TIMESTAMP, .timestamp_length = strlen(KAT_TIMESTAMP), .nonce = KAT_POST_NONCE,
        .nonce_length = strlen(KAT_POST_NONCE), .signature = KAT_POST_SIGNATURE, .signature_length = 64,
        .body = KAT_POST_BODY, .body_length = strlen(KAT_POST_BODY), .now_ms = KAT_NOW_MS,
    };
    bal_auth_decision decision;
    CHECK(allowed_as(bal_auth_check(auth, &post, BAL_PERMISSION_WRITE, &decision), &decision, KAT_KEY));
    bal_auth_request get = {
        .method = "GET", .method_length = 3, .path_with_query = KAT_GET_PATH, .path_length = strlen(KAT_GET_PATH),
        .api_key = KAT_KEY, .api_key_length = strlen(KAT_KEY), .timestamp = KAT_TIMESTAMP,
        .timestamp_length = strlen(KAT_TIMESTAMP), .nonce = KAT_GET_NONCE, .nonce_length = strlen(KAT_GET_NONCE),
        .signature = KAT_GET_SIGNATURE, .signature_length = 64, .body = NULL, .body_length = 0,
        .now_ms = KAT_NOW_MS + 1234,
    };
    CHECK(allowed_as(bal_auth_check(auth, &get, BAL_PERMISSION_READ, &decision), &decision, KAT_KEY));
    /* Upper-case hex is not the signature format. */
    char upper[65];
    for (size_t i = 0; i < 64; i++) upper[i] = (char)(KAT_GET_SIGNATURE[i] >= 'a' ? KAT_GET_SIGNATURE[i] - 32 : KAT_GET_SIGNATURE[i]);
    upper[64] = '\0';
    get.signature = upper;
    get.nonce = "nonce-0003";
    get.nonce_length = 10;
    CHECK(refused_with(bal_auth_check(auth, &get, BAL_PERMISSION_READ, &decision), &decision, 401, "malformed_header"));
    bal_auth_destroy(auth);
}

/* The pieces the check is built from: hex decoding (every byte value, as either digit),
 * the raw digests against the hex ones, SHA-256's FIPS 180-2 answer, and the per-thread
 * keyed context switching between secrets, including one too long to keep (checked against
 * OpenSSL's one-shot HMAC). */
static void test_sign_primitives(void) {
    for (int c = 0; c < 256; c++) {
        bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        int value = c <= '9' ? c - '0' : c - 'a' + 10;
        char pair[2] = {(char)c, '7'};
        uint8_t byte = 0;
        CHECK(bal_sign_hex_decode(pair, &byte, 1) == digit);
        if (digit) CHECK(byte == (uint8_t)(value << 4 | 7));
        pair[0] = 'e';
        pair[1] = (char)c;
        CHECK(bal_sign_hex_decode(pair, &byte, 1) == digit);
        if (digit) CHECK(byte == (uint8_t)(0xe0 | value));
    }
    uint8_t bytes[BAL_SIGN_DIGEST_BYTES];
    /* A whole signature decodes 16 digits at a time: every byte value at every position. */
    for (int c = 0; c < 256; c++) {
        bool digit = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f');
        int value = c <= '9' ? c - '0' : c - 'a' + 10;
        for (size_t position = 0; position < BAL_SIGN_HEX_LENGTH; position++) {
            char text[BAL_SIGN_HEX_LENGTH + 1];
            memcpy(text, KAT_POST_SIGNATURE, sizeof text);
            text[position] = (char)c;
            uint8_t expected[BAL_SIGN_DIGEST_BYTES];
            CHECK(bal_sign_hex_decode(KAT_POST_SIGNATURE, expected, BAL_SIGN_DIGEST_BYTES));
            bool valid = bal_sign_hex_decode(text, bytes, BAL_SIGN_DIGEST_BYTES);
            CHECK(valid == digit);
            if (!digit) continue;
            unsigned shift = position % 2 == 0 ? 4 : 0;
            expected[position / 2] = (uint8_t)((expected[position / 2] & ~(0x0f << shift)) | value << shift);
            CHECK(memcmp(bytes, expected, sizeof bytes) == 0);
        }
    }
    char bad[BAL_SIGN_HEX_LENGTH + 1];
    for (size_t i = 0; i < BAL_SIGN_HEX_LENGTH; i++) {
        memcpy(bad, KAT_POST_SIGNATURE, sizeof bad);
        bad[i] = 'g';
        CHECK(!bal_sign_hex_decode(bad, bytes, BAL_SIGN_DIGEST_BYTES));
    }
    CHECK(bal_sign_hex_decode(KAT_POST_SIGNATURE, bytes, BAL_SIGN_DIGEST_BYTES));
    uint8_t digest[BAL_SIGN_DIGEST_BYTES];
    bal_sign_request_digest(KAT_SECRET, strlen(KAT_SECRET), "POST", 4, KAT_POST_PATH, strlen(KAT_POST_PATH),
                            KAT_TIMESTAMP, strlen(KAT_TIMESTAMP), KAT_POST_NONCE, strlen(KAT_POST_NONCE),
                            KAT_POST_BODY, strlen(KAT_POST_BODY), digest);
    CHECK(memcmp(digest, bytes, sizeof digest) == 0);
    bal_sign_sha256("abc", 3, digest);
    CHECK(bal_sign_hex_decode("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", bytes,
                              BAL_SIGN_DIGEST_BYTES));
    CHECK(memcmp(digest, bytes, sizeof digest) == 0);

    char long_secret[BAL_SIGN_SECRET_CACHE_MAX + 45];
    memset(long_secret, 'L', sizeof long_secret - 1);
    long_secret[sizeof long_secret - 1] = '\0';
    const char *const secrets[] = {KAT_SECRET, SECRET_READER, long_secret, long_secret, KAT_SECRET, SECRET_READER};
    for (size_t i = 0; i < sizeof secrets / sizeof secrets[0]; i++) {
        const char *secret = secrets[i];
        char signature[BAL_SIGN_HEX_LENGTH + 1];
        bal_sign_request(secret, strlen(secret), "GET", 3, KAT_GET_PATH, strlen(KAT_GET_PATH), KAT_TIMESTAMP,
                         strlen(KAT_TIMESTAMP), KAT_GET_NONCE, strlen(KAT_GET_NONCE), NULL, 0, signature);
        char text[256];
        int length = snprintf(text, sizeof text, "GET\n%s\n%s\n%s\n%s", KAT_GET_PATH, KAT_TIMESTAMP, KAT_GET_NONCE,
                              KAT_EMPTY_HASH);
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int mac_length = 0;
        HMAC(EVP_sha256(), secret, (int)strlen(secret), (const unsigned char *)text, (size_t)length, mac, &mac_length);
        CHECK(mac_length == BAL_SIGN_DIGEST_BYTES && bal_sign_hex_decode(signature, bytes, BAL_SIGN_DIGEST_BYTES) &&
              memcmp(mac, bytes, BAL_SIGN_DIGEST_BYTES) == 0);
        if (i == 0 || i == 4) CHECK_STR(signature, KAT_GET_SIGNATURE); /* KAT_SECRET */
    }
}

static void test_tampering(void) {
    bal_auth *auth = auth_with(standard_keys, 0);
    bal_auth_decision decision;
    test_request t;
    const int64_t now = KAT_NOW_MS;
    const char *body = "{\"transaction_id\":\"t-9\"}";
    /* Each signed part changed after signing: bad_signature, and the nonce is not used up. */
    for (int part = 0; part < 7; part++) {
        test_request_sign(&t, "both", SECRET_BOTH, "POST", "/v1/transactions?x=1", now, "tamper", body, now);
        bal_auth_request tampered = t.request;
        char buffer[128];
        switch (part) {
        case 0: tampered.method = "PUT"; tampered.method_length = 3; break;
        case 1: tampered.path_with_query = "/v1/transactions?x=2"; break;
        case 2: tampered.path_length -= 1; break; /* the query cut short */
        case 3:
            snprintf(buffer, sizeof buffer, "%" PRId64, now + 1);
            tampered.timestamp = buffer;
            tampered.timestamp_length = strlen(buffer);
            break;
        case 4: tampered.nonce = "tampes"; break;
        case 5: tampered.body = "{\"transaction_id\":\"t-8\"}"; break;
        case 6: tampered.body_length -= 1; break;
        }
        CHECK(refused_with(bal_auth_check(auth, &tampered, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                           "bad_signature"));
        CHECK(decision.key_id[0] == '\0');
    }
    /* Signed with another key's secret. */
    test_request_sign(&t, "both", SECRET_WRITER, "POST", "/v1/transactions", now, "tamper", body, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "bad_signature"));
    /* Every digit of the signature changed in turn. */
    test_request_sign(&t, "both", SECRET_BOTH, "POST", "/v1/transactions", now, "tamper", body, now);
    for (size_t i = 0; i < BAL_SIGN_HEX_LENGTH; i++) {
        char original = t.signature[i];
        t.signature[i] = original == '0' ? '1' : '0';
        CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                           "bad_signature"));
        t.signature[i] = original;
    }
    /* The untouched request still passes: failed attempts did not consume its nonce. */
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "both"));
    bal_auth_destroy(auth);
}

static void test_headers(void) {
    bal_auth *auth = auth_with(standard_keys, 0);
    bal_auth_decision decision;
    test_request t;
    const int64_t now = KAT_NOW_MS;
    static const char *const missing_names[4] = {"X-Api-Key", "X-Timestamp", "X-Nonce", "X-Signature"};
    for (int header = 0; header < 4; header++) {
        test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "n-missing", NULL, now);
        if (header == 0) t.request.api_key = NULL;
        if (header == 1) t.request.timestamp = NULL;
        if (header == 2) t.request.nonce = NULL;
        if (header == 3) t.request.signature = NULL;
        CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                           "missing_headers"));
        CHECK(strstr(decision.message, missing_names[header]) != NULL);
        CHECK_STR(decision.error, "unauthorized");
    }
    struct {
        int header; /* 0 key, 1 timestamp, 2 nonce, 3 signature */
        const char *value;
    } malformed[] = {
        {0, ""}, {0, "bad key"}, {0, "key\"quote"}, {0, "k\xc3\xa9y"},
        {0, "k123456789012345678901234567890123456789012345678901234567890123456"}, /* 65 */
        {1, ""}, {1, "+1700000000000"}, {1, "-1"}, {1, "17000000000x0"}, {1, "1700000000000.5"},
        {1, "12345678901234567"}, /* 17 digits */
        {2, ""}, {2, "has space"}, {2, "quote\"d"}, {2, "back\\slash"}, {2, "nul\0byte"}, {2, "\xff"},
        {2, "n1234567890123456789012345678901234567890123456789012345678901234"}, /* 65 */
        {3, ""}, {3, "abc"},
        {3, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdeg"},
        {3, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef0"},
    };
    for (size_t i = 0; i < sizeof malformed / sizeof malformed[0]; i++) {
        test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "n-malformed", NULL, now);
        const char *value = malformed[i].value;
        size_t length = strlen(value);
        if (i == 15) length = 8; /* "nul\0byte": the NUL is part of the value */
        switch (malformed[i].header) {
        case 0: t.request.api_key = value; t.request.api_key_length = length; break;
        case 1: t.request.timestamp = value; t.request.timestamp_length = length; break;
        case 2: t.request.nonce = value; t.request.nonce_length = length; break;
        case 3: t.request.signature = value; t.request.signature_length = length; break;
        }
        bool allowed = bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision);
        if (!refused_with(allowed, &decision, 401, "malformed_header")) fprintf(stderr, "  case %zu\n", i);
        CHECK(!allowed && strcmp(decision.reason, "malformed_header") == 0);
    }
    /* Longest accepted forms. */
    const char *nonce64 = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789+/";
    CHECK(strlen(nonce64) == BAL_AUTH_NONCE_LENGTH_MAX);
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, nonce64, NULL, now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "reader"));
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "a.b_c:d-e+f/g=", NULL, now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "reader"));
    /* Leading zeros in the timestamp are digits like any other (and signed as sent). */
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "n-zeros", NULL, now);
    snprintf(t.timestamp, sizeof t.timestamp, "000%" PRId64, now);
    t.request.timestamp_length = strlen(t.timestamp);
    bal_sign_request(SECRET_READER, strlen(SECRET_READER), "GET", 3, "/v1/x", 5, t.timestamp, strlen(t.timestamp),
                     "n-zeros", 7, NULL, 0, t.signature);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "reader"));
    /* 64 characters are a well-formed key id (unknown here), 65 are not. */
    char id[BAL_AUTH_KEY_ID_LENGTH_MAX + 2];
    memset(id, 'k', sizeof id - 1);
    id[BAL_AUTH_KEY_ID_LENGTH_MAX] = '\0';
    test_request_sign(&t, id, SECRET_READER, "GET", "/v1/x", now, "n-64", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "unknown_key"));
    t.request.api_key_length = BAL_AUTH_KEY_ID_LENGTH_MAX + 1;
    id[BAL_AUTH_KEY_ID_LENGTH_MAX] = 'k';
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "malformed_header"));
    /* A well-formed but unknown key; a key id that differs only in case. */
    test_request_sign(&t, "nobody", SECRET_READER, "GET", "/v1/x", now, "n-unknown", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "unknown_key"));
    test_request_sign(&t, "Reader", SECRET_READER, "GET", "/v1/x", now, "n-unknown", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "unknown_key"));
    /* Before any load, every key is unknown. */
    bal_auth *empty = auth_with(NULL, 0);
    CHECK(bal_auth_key_count(empty) == 0);
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "n-empty", NULL, now);
    CHECK(refused_with(bal_auth_check(empty, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "unknown_key"));
    bal_auth_destroy(empty);
    bal_auth_destroy(auth);
}

static void test_timestamp_skew(void) {
    bal_auth *auth = auth_with(standard_keys, 0);
    bal_auth_decision decision;
    test_request t;
    const int64_t now = KAT_NOW_MS;
    const int64_t window = BAL_AUTH_REPLAY_WINDOW_MS;
    CHECK(window == 300000);
    struct {
        int64_t offset_ms;
        bool allowed;
        const char *word;
    } cases[] = {
        {0, true, NULL},           {-window, true, NULL},       {window, true, NULL},
        {-window - 1, false, "behind"}, {window + 1, false, "ahead"}, {-window + 1, true, NULL},
        {window - 1, true, NULL},  {-86400000, false, "behind"}, {86400000, false, "ahead"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char nonce[32];
        snprintf(nonce, sizeof nonce, "skew-%zu", i);
        test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now + cases[i].offset_ms, nonce, NULL, now);
        bool allowed = bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision);
        if (cases[i].allowed) {
            CHECK(allowed_as(allowed, &decision, "reader"));
        } else {
            CHECK(refused_with(allowed, &decision, 401, "stale_timestamp"));
            CHECK(strstr(decision.message, cases[i].word) != NULL);
        }
    }
    /* Timestamp 0 against a real clock, and the largest 16-digit timestamp. */
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", 0, "skew-zero", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "stale_timestamp"));
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", INT64_C(9999999999999999), "skew-max", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "stale_timestamp"));
    /* A stale request is refused before its signature is looked at. */
    test_request_sign(&t, "reader", SECRET_WRITER, "GET", "/v1/x", now - window - 1, "skew-bad", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "stale_timestamp"));
    bal_auth_destroy(auth);
}

static void test_nonce_replay(void) {
    bal_auth *auth = auth_with(standard_keys, 0);
    bal_auth_decision decision;
    test_request t;
    const int64_t now = KAT_NOW_MS;
    const int64_t window = BAL_AUTH_REPLAY_WINDOW_MS;
    test_request_sign(&t, "both", SECRET_BOTH, "POST", "/v1/transactions", now, "replay-1", "{}", now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "both"));
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "replayed_nonce"));
    CHECK(decision.key_id[0] == '\0');
    /* The replay stays refused until the end of the window, on the same clock or later. */
    t.request.now_ms = now + window;
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "replayed_nonce"));
    /* After the window the timestamp alone refuses it. */
    t.request.now_ms = now + window + 1;
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "stale_timestamp"));
    /* The same nonce with a different timestamp or body within the window: still a replay. */
    test_request_sign(&t, "both", SECRET_BOTH, "GET", "/v1/y", now + 5000, "replay-1", NULL, now + 1000);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "replayed_nonce"));
    /* Nonces are per key: another key may use the same one. */
    test_request_sign(&t, "admin", SECRET_ADMIN, "POST", "/v1/transactions", now, "replay-1", "{}", now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "admin"));
    /* A forbidden request was still authenticated: its nonce is used up too. */
    test_request_sign(&t, "reader", SECRET_READER, "POST", "/v1/transactions", now, "replay-2", "{}", now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 403,
                       "permission"));
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "replayed_nonce"));
    /* Once the first use is older than the window, the nonce may be used again with a fresh
       timestamp. */
    int64_t later = now + window + 1;
    test_request_sign(&t, "both", SECRET_BOTH, "POST", "/v1/transactions", later, "replay-1", "{}", later);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "both"));
    /* A nonce sent with a timestamp a full window ahead is remembered for two windows. */
    test_request_sign(&t, "both", SECRET_BOTH, "POST", "/v1/transactions", later + window, "replay-3", "{}", later);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "both"));
    t.request.now_ms = later + 2 * window;
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 401,
                       "replayed_nonce"));
    bal_auth_destroy(auth);
}

/* The nonce memory on its own: expiry is inclusive, reclamation never early. */
static void test_nonce_memory(void) {
    bal_auth_nonce_memory *memory = bal_auth_nonce_create(8);
    CHECK(memory != NULL);
    uint8_t a[BAL_AUTH_NONCE_DIGEST_BYTES], b[BAL_AUTH_NONCE_DIGEST_BYTES], c[BAL_AUTH_NONCE_DIGEST_BYTES];
    bal_auth_nonce_digest(memory, "k", 1, "n", 1, a);
    bal_auth_nonce_digest(memory, "kn", 2, "", 0, b);
    bal_auth_nonce_digest(memory, "k2", 2, "n", 1, c);
    CHECK(memcmp(a, b, sizeof a) != 0); /* the key id length separates key and nonce */
    CHECK(memcmp(a, c, sizeof a) != 0);
    const int64_t now = 1000000;
    CHECK(bal_auth_nonce_remember(memory, a, now + 500, now, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    CHECK(bal_auth_nonce_remember(memory, a, now + 500, now, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, a, now + 600, now + 500, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, a, now + 600, now + 501, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    CHECK(bal_auth_nonce_count(memory) <= 2);
    /* A thread with an older clock reading inserts behind the cursor: kept, never dropped early. */
    CHECK(bal_auth_nonce_remember(memory, b, now + 700000, now + 100000, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    CHECK(bal_auth_nonce_remember(memory, c, now + 99000, now + 50000, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    CHECK(bal_auth_nonce_remember(memory, c, now + 99000, now + 99000, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, b, now + 700000, now + 699999, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, b, now + 700000, now + 700000, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, c, now + 702000, now + 702000, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    /* a and b reclaimed; c twice: the copy inserted with an old clock reading landed in a
       slot already passed and waits for that slot's next turn (one lap), never less. */
    CHECK(bal_auth_nonce_count(memory) == 2);
    /* A jump of hours reclaims everything in one lap. */
    CHECK(bal_auth_nonce_remember(memory, a, now + 36000000, now + 36000000, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    CHECK(bal_auth_nonce_count(memory) == 1);
    /* Fill it; full refuses new digests but still recognises replays. */
    uint8_t digests[8][BAL_AUTH_NONCE_DIGEST_BYTES];
    int64_t base = now + 36000000;
    for (int i = 0; i < 7; i++) {
        char nonce[8];
        snprintf(nonce, sizeof nonce, "f%d", i);
        bal_auth_nonce_digest(memory, "k", 1, nonce, strlen(nonce), digests[i]);
        CHECK(bal_auth_nonce_remember(memory, digests[i], base + 1000 * (i + 1), base, NULL) ==
              BAL_AUTH_NONCE_REMEMBERED);
    }
    bal_auth_nonce_digest(memory, "k", 1, "f7", 2, digests[7]);
    int64_t retry_ms = 0;
    CHECK(bal_auth_nonce_remember(memory, digests[7], base + 5000, base, &retry_ms) == BAL_AUTH_NONCE_FULL);
    CHECK(retry_ms >= 1 && retry_ms <= 2000); /* a expires at base: reclaimed when the next second starts */
    CHECK(bal_auth_nonce_remember(memory, digests[3], base + 5000, base, NULL) == BAL_AUTH_NONCE_REPLAYED);
    CHECK(bal_auth_nonce_remember(memory, digests[7], base + 5000, base + 1000, NULL) == BAL_AUTH_NONCE_REMEMBERED);
    bal_auth_nonce_destroy(memory);
}

static void test_nonce_memory_full(void) {
    bal_auth *auth = auth_with(standard_keys, 4);
    bal_auth_decision decision;
    test_request t;
    const int64_t now = KAT_NOW_MS;
    const int64_t window = BAL_AUTH_REPLAY_WINDOW_MS;
    for (int i = 0; i < 4; i++) {
        char nonce[16];
        snprintf(nonce, sizeof nonce, "full-%d", i);
        test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, nonce, NULL, now);
        CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "reader"));
    }
    /* Full: a new nonce is refused (503), never let in by forgetting a live one. */
    test_request_sign(&t, "writer", SECRET_WRITER, "GET", "/v1/x", now, "full-4", NULL, now + 10);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 503,
                       "nonce_memory_full"));
    CHECK_STR(decision.error, "unavailable");
    CHECK(decision.retry_after_s >= 1 && decision.retry_after_s <= 301);
    /* Replays of remembered nonces are still recognised as such. */
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", now, "full-2", NULL, now + 20);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "replayed_nonce"));
    /* Still full at the last millisecond of the window... */
    test_request_sign(&t, "writer", SECRET_WRITER, "GET", "/v1/x", now + window, "full-5", NULL, now + window);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 503,
                       "nonce_memory_full"));
    CHECK(decision.retry_after_s == 1);
    /* ...and reclaimed once the window has passed (at the next second boundary). */
    int64_t later = now + window + 1000;
    test_request_sign(&t, "writer", SECRET_WRITER, "GET", "/v1/x", later, "full-6", NULL, later);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, "writer"));
    for (int i = 0; i < 3; i++) {
        char nonce[16];
        snprintf(nonce, sizeof nonce, "full-later-%d", i);
        test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", later, nonce, NULL, later);
        CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "reader"));
    }
    test_request_sign(&t, "reader", SECRET_READER, "GET", "/v1/x", later, "full-later-3", NULL, later);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 503,
                       "nonce_memory_full"));
    CHECK(decision.retry_after_s >= 299 && decision.retry_after_s <= 301);
    bal_auth_destroy(auth);
}

static void test_permissions(void) {
    bal_auth *auth = auth_with(standard_keys, 0);
    const struct {
        const char *key;
        const char *secret;
        bool read, write, admin;
    } keys[] = {
        {"reader", SECRET_READER, true, false, false},
        {"writer", SECRET_WRITER, false, true, false},
        {"both", SECRET_BOTH, true, true, false},
        {"admin", SECRET_ADMIN, true, true, true},
    };
    const struct {
        const char *method;
        bal_permission needed;
    } routes[] = {{"GET", BAL_PERMISSION_READ}, {"POST", BAL_PERMISSION_WRITE}, {"POST", BAL_PERMISSION_ADMIN},
                  {"GET", BAL_PERMISSION_ADMIN}};
    int counter = 0;
    for (size_t k = 0; k < sizeof keys / sizeof keys[0]; k++) {
        for (size_t r = 0; r < sizeof routes / sizeof routes[0]; r++) {
            bool expected = routes[r].needed == BAL_PERMISSION_READ    ? keys[k].read
                            : routes[r].needed == BAL_PERMISSION_WRITE ? keys[k].write
                                                                       : keys[k].admin;
            char nonce[16];
            snprintf(nonce, sizeof nonce, "perm-%d", counter++);
            test_request t;
            const char *body = strcmp(routes[r].method, "POST") == 0 ? "{}" : NULL;
            test_request_sign(&t, keys[k].key, keys[k].secret, routes[r].method, "/v1/route", KAT_NOW_MS, nonce, body,
                              KAT_NOW_MS);
            bal_auth_decision decision;
            bool allowed = bal_auth_check(auth, &t.request, routes[r].needed, &decision);
            if (expected) {
                CHECK(allowed_as(allowed, &decision, keys[k].key));
            } else {
                CHECK(refused_with(allowed, &decision, 403, "permission"));
                CHECK_STR(decision.error, "forbidden");
                CHECK_STR(decision.key_id, keys[k].key); /* authenticated, so logged by name */
            }
        }
    }
    bal_auth_destroy(auth);
}

static void test_buckets(void) {
    const char *keys = "slow slow-secret-0123456789abcdefghijklmnopqr read,write 10 5 100 200\n"
                       "tiny tiny-secret-0123456789abcdefghijklmnopqr read,write 1 1 1 1\n";
    bal_auth *auth = auth_with(keys, 0);
    bal_auth_decision decision;
    int64_t now = KAT_NOW_MS;
    /* Requests: a burst of 5, then one every 100 ms. */
    for (int i = 0; i < 5; i++) CHECK(allowed_as(bal_auth_charge(auth, "slow", 0, now, &decision), &decision, "slow"));
    CHECK(refused_with(bal_auth_charge(auth, "slow", 0, now, &decision), &decision, 429, "requests"));
    CHECK_STR(decision.error, "rate_limited");
    CHECK(decision.retry_after_s == 1);
    CHECK_STR(decision.key_id, "slow");
    CHECK(refused_with(bal_auth_charge(auth, "slow", 0, now + 99, &decision), &decision, 429, "requests"));
    CHECK(allowed_as(bal_auth_charge(auth, "slow", 0, now + 100, &decision), &decision, "slow"));
    CHECK(refused_with(bal_auth_charge(auth, "slow", 0, now + 100, &decision), &decision, 429, "requests"));
    /* Refill over time, capped at the burst. */
    now += 10000;
    for (int i = 0; i < 5; i++) CHECK(bal_auth_charge(auth, "slow", 1, now, &decision));
    CHECK(!bal_auth_charge(auth, "slow", 1, now, &decision));
    /* Operations: 200 burst minus the 5 just taken; a batch counts its items. */
    now += 10000;
    CHECK(allowed_as(bal_auth_charge(auth, "slow", 150, now, &decision), &decision, "slow"));
    CHECK(refused_with(bal_auth_charge(auth, "slow", 100, now, &decision), &decision, 429, "operations"));
    CHECK(decision.retry_after_s == 1); /* 50 missing at 100/s: 500 ms */
    CHECK(strstr(decision.message, "100 operations") != NULL);
    /* Both or neither: the refused batch did not take a request token. */
    for (int i = 0; i < 4; i++) CHECK(bal_auth_charge(auth, "slow", 0, now, &decision));
    CHECK(refused_with(bal_auth_charge(auth, "slow", 0, now, &decision), &decision, 429, "requests"));
    now += 500;
    CHECK(allowed_as(bal_auth_charge(auth, "slow", 100, now, &decision), &decision, "slow"));
    /* A batch larger than the burst passes from a full bucket and leaves a debt. */
    now += 100000;
    CHECK(allowed_as(bal_auth_charge(auth, "slow", 8192, now, &decision), &decision, "slow"));
    CHECK(refused_with(bal_auth_charge(auth, "slow", 1, now, &decision), &decision, 429, "operations"));
    CHECK(decision.retry_after_s == 80); /* 7993 tokens at 100/s: 79.93 s */
    CHECK(allowed_as(bal_auth_charge(auth, "slow", 0, now, &decision), &decision, "slow")); /* reads go on */
    CHECK(!bal_auth_charge(auth, "slow", 1, now + 79920, &decision));
    CHECK(bal_auth_charge(auth, "slow", 1, now + 79930, &decision));
    /* Both refused: the longer wait is the Retry-After. */
    CHECK(allowed_as(bal_auth_charge(auth, "tiny", 1, now, &decision), &decision, "tiny"));
    CHECK(refused_with(bal_auth_charge(auth, "tiny", 1, now, &decision), &decision, 429, "requests"));
    CHECK(decision.retry_after_s == 1);
    CHECK(bal_auth_charge(auth, "tiny", 10000, now + 1000, &decision));
    CHECK(refused_with(bal_auth_charge(auth, "tiny", 1, now + 2000, &decision), &decision, 429, "operations"));
    CHECK(decision.retry_after_s == 9999);
    /* Long idle periods refill to the burst without overflow; a clock that goes back
       earns nothing. */
    now += INT64_C(1000000000000);
    CHECK(bal_auth_charge(auth, "tiny", UINT32_MAX, now, &decision));
    CHECK(refused_with(bal_auth_charge(auth, "tiny", 1, now + 1000, &decision), &decision, 429, "operations"));
    CHECK(decision.retry_after_s == UINT32_MAX - 1);
    CHECK(bal_auth_charge(auth, "tiny", 0, now + 1000, &decision));
    CHECK(!bal_auth_charge(auth, "tiny", 0, now - 5000, &decision));
    CHECK(bal_auth_charge(auth, "tiny", 0, now + 2000, &decision));
    /* Unknown keys; key_id pointing into the decision it fills. */
    CHECK(refused_with(bal_auth_charge(auth, "nobody", 1, now, &decision), &decision, 401, "unknown_key"));
    CHECK(refused_with(bal_auth_charge(auth, "", 1, now, &decision), &decision, 401, "unknown_key"));
    snprintf(decision.key_id, sizeof decision.key_id, "slow");
    CHECK(allowed_as(bal_auth_charge(auth, decision.key_id, 0, now, &decision), &decision, "slow"));
    bal_auth_destroy(auth);
}

/* Accepted syntax: comments, blank lines, tabs, CR LF, no final newline, admin expanded. */
static void test_keys_file(void) {
    scratch_init();
    scratch_write("keys", standard_keys, 0600);
    char path[128];
    scratch_path("keys", path, sizeof path);
    bal_auth *auth = auth_with(NULL, 0);
    char errstr[256] = "";
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_OK);
    CHECK(bal_auth_key_count(auth) == 5);
    scratch_write("keys", standard_keys, 0400);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_OK);
    /* The longest key id (64) and secret (256), the largest rates. */
    char long_id[BAL_AUTH_KEY_ID_LENGTH_MAX + 1], long_secret[BAL_AUTH_SECRET_LENGTH_MAX + 1];
    memset(long_id, 'I', BAL_AUTH_KEY_ID_LENGTH_MAX);
    long_id[BAL_AUTH_KEY_ID_LENGTH_MAX] = '\0';
    memset(long_secret, 'S', BAL_AUTH_SECRET_LENGTH_MAX);
    long_secret[BAL_AUTH_SECRET_LENGTH_MAX] = '\0';
    char tricky[1024];
    snprintf(tricky, sizeof tricky,
             "#\n   # indented comment\n\t\n"
             "a.b_c-D9 s3cr3t#with#hashes-and-$ymbols!0123456789 read 1 1 1 1\r\n"
             "%s %s admin,read 1000000000 1000000000 1000000000 1000000000",
             long_id, long_secret);
    CHECK(bal_auth_load_text(auth, tricky, strlen(tricky), "tricky", errstr, sizeof errstr) == BAL_AUTH_OK);
    if (bal_auth_key_count(auth) != 2) fprintf(stderr, "  %s\n", errstr);
    CHECK(bal_auth_key_count(auth) == 2);
    test_request t;
    bal_auth_decision decision;
    test_request_sign(&t, "a.b_c-D9", "s3cr3t#with#hashes-and-$ymbols!0123456789", "GET", "/", KAT_NOW_MS, "n", NULL,
                      KAT_NOW_MS);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "a.b_c-D9"));
    /* The example of docs/auth.md. */
    const char *documented =
        "# key_id      secret                                     permissions  req/s  req_burst  ops/s   ops_burst\n"
        "exchange-1    Xq3bT9f2LwPz8KmN4vR7yHc1sD6gJ0eA5uWoQiZt   read,write   500    1000       100000  200000\n"
        "reporting     2c6f1e0b9a8d7c5e4f3a2b1c0d9e8f7a6b5c4d3e   read         50     100        1       1\n"
        "ops-admin     Jm0+3xT/9qK8w7E6r5Y4u3I2o1P0aSdFgHjKlZxC   admin        10     20         10000   8192\n";
    bal_auth *docs = auth_with(documented, 0);
    CHECK(bal_auth_key_count(docs) == 3);
    bal_auth_destroy(docs);
    /* Admin implies read and write. */
    test_request_sign(&t, long_id, long_secret, "POST", "/", KAT_NOW_MS, "n", "{}", KAT_NOW_MS);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, long_id));
    scratch_remove("keys");
    rmdir(scratch_dir);
    bal_auth_destroy(auth);
}

#define DISTINCT_SECRET "Zq9-distinctive-secret-value-0123456789"

static void test_keys_file_errors(void) {
    char long_id[80], long_secret[300], long_line[1100];
    memset(long_id, 'i', 65);
    long_id[65] = '\0';
    memset(long_secret, 'Q', 257);
    memcpy(long_secret, DISTINCT_SECRET, strlen(DISTINCT_SECRET));
    long_secret[257] = '\0';
    snprintf(long_line, sizeof long_line, "# %01030d", 0);
    char text_long_id[256], text_long_secret[400], text_long_line[1200];
    snprintf(text_long_id, sizeof text_long_id, "%s " DISTINCT_SECRET " read 1 1 1 1\n", long_id);
    snprintf(text_long_secret, sizeof text_long_secret, "k1 %s read 1 1 1 1\n", long_secret);
    snprintf(text_long_line, sizeof text_long_line, "k1 " DISTINCT_SECRET " read 1 1 1 1\n%s\n", long_line);
    static const char nul_text[] = "k1 " DISTINCT_SECRET " read 1 1 1 1\nk2 " DISTINCT_SECRET "\0 read 1 1 1 1\n";
    const struct {
        const char *text;
        size_t length; /* 0: strlen */
        unsigned line; /* 0: no line in the message */
        const char *fragment;
    } cases[] = {
        {"# c\nk1 " DISTINCT_SECRET " read 1 1 1\n", 0, 2, "expected 7 fields"},
        {"k1 " DISTINCT_SECRET " read 1 1 1 1 extra\n", 0, 1, "found more than 7"},
        {"k1 " DISTINCT_SECRET " read 1 1 1 1 # comment\n", 0, 1, "expected 7 fields"},
        {"k/1 " DISTINCT_SECRET " read 1 1 1 1\n", 0, 1, "key id may only"},
        {"k\xc3\xa9 " DISTINCT_SECRET " read 1 1 1 1\n", 0, 1, "key id may only"},
        {text_long_id, 0, 1, "longer than 64"},
        {"k1 short-secret-only-26-chars read 1 1 1 1\n", 0, 1, "secret is 26 characters"},
        {text_long_secret, 0, 1, "secret is 257 characters"},
        {"k1 " DISTINCT_SECRET "\x01 read 1 1 1 1\n", 0, 1, "printable ASCII"},
        {"k1 " DISTINCT_SECRET "\xc3\xa9 read 1 1 1 1\n", 0, 1, "printable ASCII"},
        {DISTINCT_SECRET " k1 read 1 1 1 1\n", 0, 1, "secret is 2 characters"}, /* columns swapped */
        {"k1 " DISTINCT_SECRET " trade 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " read,,write 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " read, 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " ,read 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " read,read 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " READ 1 1 1 1\n", 0, 1, "permissions"},
        {"k1 " DISTINCT_SECRET " read 0 1 1 1\n", 0, 1, "requests_per_second must be"},
        {"k1 " DISTINCT_SECRET " read 1x 1 1 1\n", 0, 1, "requests_per_second must be"},
        {"k1 " DISTINCT_SECRET " read 1000000001 1 1 1\n", 0, 1, "requests_per_second must be"},
        {"k1 " DISTINCT_SECRET " read 1 0 1 1\n", 0, 1, "requests_burst must be"},
        {"k1 " DISTINCT_SECRET " read 1 1 -5 1\n", 0, 1, "operations_per_second must be"},
        {"k1 " DISTINCT_SECRET " read 1 1 1.5 1\n", 0, 1, "operations_per_second must be"},
        {"k1 " DISTINCT_SECRET " read 1 1 1 12345678901\n", 0, 1, "operations_burst must be"},
        {"k1 " DISTINCT_SECRET " read 1 1 1 1\n\nk1 " DISTINCT_SECRET "x write 1 1 1 1\n", 0, 3,
         "duplicate key id (first defined on line 1)"},
        {text_long_line, 0, 2, "longer than 1024"},
        {nul_text, sizeof nul_text - 1, 2, "NUL"},
        {"# only comments\n\n   \n", 0, 0, "no keys"},
        {"", 0, 0, "no keys"},
    };
    bal_auth *auth = auth_with(standard_keys, 0);
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char errstr[512] = "";
        size_t length = cases[i].length != 0 ? cases[i].length : strlen(cases[i].text);
        bal_auth_status status = bal_auth_load_text(auth, cases[i].text, length, "keys.txt", errstr, sizeof errstr);
        bool ok = status == BAL_AUTH_INVALID_FILE && strstr(errstr, cases[i].fragment) != NULL &&
                  strncmp(errstr, "keys.txt: ", 10) == 0;
        if (cases[i].line != 0) {
            char where[32];
            snprintf(where, sizeof where, "keys.txt: line %u: ", cases[i].line);
            ok = ok && strncmp(errstr, where, strlen(where)) == 0;
        }
        /* The secret is never echoed, not even in part. */
        ok = ok && strstr(errstr, "distinctive") == NULL && strstr(errstr, "QQQQ") == NULL;
        if (!ok) fprintf(stderr, "  case %zu: status %s, message: %s\n", i, bal_auth_status_name(status), errstr);
        CHECK(ok);
        CHECK(bal_auth_key_count(auth) == 5); /* the previous set stays */
    }
    /* A small errstr truncates but stays terminated; NULL errstr is allowed. */
    char small[8];
    CHECK(bal_auth_load_text(auth, "x", 1, "keys.txt", small, sizeof small) == BAL_AUTH_INVALID_FILE);
    CHECK(strlen(small) == 7);
    CHECK(bal_auth_load_text(auth, "x", 1, "keys.txt", NULL, 0) == BAL_AUTH_INVALID_FILE);
    CHECK_STR(bal_auth_status_name(BAL_AUTH_INVALID_FILE), "invalid_file");
    CHECK_STR(bal_auth_status_name(BAL_AUTH_INSECURE_FILE), "insecure_file");
    CHECK_STR(bal_auth_status_name(BAL_AUTH_IO_ERROR), "io_error");
    /* Configuration limits. */
    bal_auth_config config;
    bal_auth_config_default(&config);
    CHECK(config.nonce_count_max == BAL_AUTH_NONCE_COUNT_DEFAULT);
    config.nonce_count_max = 0;
    bal_auth *other = NULL;
    char errstr[128];
    CHECK(bal_auth_create(&config, &other, errstr, sizeof errstr) == BAL_AUTH_INVALID_CONFIG && other == NULL);
    config.nonce_count_max = BAL_AUTH_NONCE_COUNT_MAX + 1;
    CHECK(bal_auth_create(&config, &other, errstr, sizeof errstr) == BAL_AUTH_INVALID_CONFIG && other == NULL);
    bal_auth_destroy(auth);
}

static void test_file_mode(void) {
    scratch_init();
    bal_auth *auth = auth_with(standard_keys, 0);
    char path[128], errstr[512];
    const char *keys = "k1 " DISTINCT_SECRET " read 1 1 1 1\n";
    const mode_t refused[] = {0644, 0640, 0604, 0660, 0606, 0610, 0601, 0666, 0777};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        scratch_write("keys", keys, refused[i]);
        scratch_path("keys", path, sizeof path);
        CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_INSECURE_FILE);
        CHECK(strstr(errstr, "chmod 600") != NULL && strstr(errstr, path) != NULL);
        CHECK(strstr(errstr, "distinctive") == NULL);
        CHECK(bal_auth_key_count(auth) == 5);
    }
    scratch_write("keys", keys, 0600);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_OK);
    CHECK(bal_auth_key_count(auth) == 1);
    scratch_write("keys", keys, 0700);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_OK);
    /* Not a file; not there; a syntax error in a file names the path and the line. */
    CHECK(bal_auth_load(auth, scratch_dir, errstr, sizeof errstr) == BAL_AUTH_INSECURE_FILE);
    CHECK(strstr(errstr, "not a regular file") != NULL);
    scratch_path("absent", path, sizeof path);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_IO_ERROR);
    CHECK(strstr(errstr, "cannot open") != NULL);
    scratch_write("keys", "# header\nk1 " DISTINCT_SECRET " read 1 1\n", 0600);
    scratch_path("keys", path, sizeof path);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_INVALID_FILE);
    char expected[256];
    snprintf(expected, sizeof expected, "%s: line 2: expected 7 fields", path);
    CHECK(strncmp(errstr, expected, strlen(expected)) == 0);
    CHECK(strstr(errstr, "distinctive") == NULL);
    scratch_write("keys", "", 0600);
    CHECK(bal_auth_load(auth, path, errstr, sizeof errstr) == BAL_AUTH_INVALID_FILE);
    CHECK(bal_auth_key_count(auth) == 1);
    scratch_remove("keys");
    rmdir(scratch_dir);
    bal_auth_destroy(auth);
}

static void test_reload(void) {
    const char *first = "keep keep-secret-0123456789abcdefghijklmnopqr read,write 1 3 1000 1000\n"
                        "gone gone-secret-0123456789abcdefghijklmnopqr read 1000 1000 1000 1000\n";
    /* keep: new secret, new permissions, lower burst; gone: removed; new: added. */
    const char *second = "keep keep-secret-2-0123456789abcdefghijklmnop read 1 2 1000 1000\n"
                         "new new-secret-0123456789abcdefghijklmnopqrst admin 1000 1000 1000 1000\n";
    bal_auth *auth = auth_with(first, 0);
    bal_auth_decision decision;
    test_request t;
    int64_t now = KAT_NOW_MS;
    CHECK(bal_auth_charge(auth, "keep", 0, now, &decision));
    CHECK(bal_auth_charge(auth, "keep", 0, now, &decision));
    /* One request token left of 3. A bad file changes nothing. */
    char errstr[256];
    CHECK(bal_auth_load_text(auth, "keep short read 1 1 1 1", 23, "bad", errstr, sizeof errstr) ==
          BAL_AUTH_INVALID_FILE);
    CHECK(bal_auth_key_count(auth) == 2);
    test_request_sign(&t, "gone", "gone-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "r-1", NULL, now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, "gone"));
    CHECK(bal_auth_load_text(auth, second, strlen(second), "second", errstr, sizeof errstr) == BAL_AUTH_OK);
    CHECK(bal_auth_key_count(auth) == 2);
    /* The bucket of "keep" kept its state: one token left (the new burst of 2 is above it). */
    CHECK(bal_auth_charge(auth, "keep", 0, now, &decision));
    CHECK(refused_with(bal_auth_charge(auth, "keep", 0, now, &decision), &decision, 429, "requests"));
    /* The new secret and permissions apply at once. */
    test_request_sign(&t, "keep", "keep-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "r-2", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "bad_signature"));
    test_request_sign(&t, "keep", "keep-secret-2-0123456789abcdefghijklmnop", "POST", "/", now, "r-3", "{}", now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_WRITE, &decision), &decision, 403,
                       "permission"));
    /* Nonces survive a reload: the request seen before it is still a replay. */
    CHECK(bal_auth_load_text(auth, first, strlen(first), "first", errstr, sizeof errstr) == BAL_AUTH_OK);
    test_request_sign(&t, "gone", "gone-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "r-1", NULL, now);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "replayed_nonce"));
    CHECK(bal_auth_load_text(auth, second, strlen(second), "second", errstr, sizeof errstr) == BAL_AUTH_OK);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "unknown_key"));
    CHECK(refused_with(bal_auth_charge(auth, "gone", 0, now, &decision), &decision, 401, "unknown_key"));
    test_request_sign(&t, "new", "new-secret-0123456789abcdefghijklmnopqrst", "POST", "/", now, "r-4", "{}", now);
    CHECK(allowed_as(bal_auth_check(auth, &t.request, BAL_PERMISSION_ADMIN, &decision), &decision, "new"));
    /* A lowered burst clips saved tokens: refilled for a long time, "keep" holds 2, not 3. */
    now += 1000000;
    CHECK(bal_auth_charge(auth, "keep", 0, now, &decision));
    CHECK(bal_auth_charge(auth, "keep", 0, now, &decision));
    CHECK(!bal_auth_charge(auth, "keep", 0, now, &decision));
    bal_auth_destroy(auth);
}

/* A grant carries the check's key to the charge: the same buckets as a charge by name, an
 * empty grant after a refusal, and a key removed by a reload in between still charged (its
 * set lives until the release; ASan checks that it is then freed). With and without a
 * reader; with one, a reload is seen at the reader's next check. */
static void grants_with(bool use_reader) {
    const char *first = "tiny tiny-secret-0123456789abcdefghijklmnopqr read,write 1 2 1 1\n"
                        "gone gone-secret-0123456789abcdefghijklmnopqr read 1000 1000 1000 1000\n";
    const char *second = "tiny tiny-secret-0123456789abcdefghijklmnopqr read,write 1 2 1 1\n";
    bal_auth *auth = auth_with(first, 0);
    bal_auth_reader *reader = use_reader ? bal_auth_reader_open(auth) : NULL;
    CHECK(!use_reader || reader != NULL);
    bal_auth_decision decision;
    bal_auth_grant grant;
    test_request t;
    int64_t now = KAT_NOW_MS;
    test_request_sign(&t, "tiny", "tiny-secret-0123456789abcdefghijklmnopqr", "POST", "/", now, "g-1", "{}", now);
    CHECK(allowed_as(bal_auth_check_grant(auth, reader, &t.request, BAL_PERMISSION_WRITE, &decision, &grant),
                     &decision, "tiny"));
    CHECK(grant.set != NULL && grant.key != NULL && grant.referenced == !use_reader);
    CHECK(allowed_as(bal_auth_charge_grant(&grant, 1, now, &decision), &decision, "tiny"));
    /* The operation bucket (burst 1) is empty now, for a charge by name too. */
    CHECK(refused_with(bal_auth_charge_grant(&grant, 1, now, &decision), &decision, 429, "operations"));
    CHECK(refused_with(bal_auth_charge(auth, "tiny", 1, now, &decision), &decision, 429, "operations"));
    bal_auth_grant_release(&grant);
    CHECK(grant.set == NULL && grant.key == NULL);
    bal_auth_grant_release(&grant); /* an empty grant: nothing to do */
    /* A refused check leaves the grant empty. */
    test_request_sign(&t, "tiny", "tiny-secret-0123456789abcdefghijklmnopqr", "POST", "/", now, "g-1", "{}", now);
    CHECK(refused_with(bal_auth_check_grant(auth, reader, &t.request, BAL_PERMISSION_WRITE, &decision, &grant),
                       &decision, 401, "replayed_nonce"));
    CHECK(grant.set == NULL && grant.key == NULL);
    bal_auth_grant_release(&grant);
    /* Checked, then its key removed, then charged: the grant's key still answers. */
    test_request_sign(&t, "gone", "gone-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "g-2", NULL, now);
    CHECK(allowed_as(bal_auth_check_grant(auth, reader, &t.request, BAL_PERMISSION_READ, &decision, &grant),
                     &decision, "gone"));
    char errstr[256];
    CHECK(bal_auth_load_text(auth, second, strlen(second), "second", errstr, sizeof errstr) == BAL_AUTH_OK);
    CHECK(refused_with(bal_auth_charge(auth, "gone", 0, now, &decision), &decision, 401, "unknown_key"));
    CHECK(allowed_as(bal_auth_charge_grant(&grant, 0, now, &decision), &decision, "gone"));
    bal_auth_grant_release(&grant);
    /* The next check sees the reload: the key is gone. */
    test_request_sign(&t, "gone", "gone-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "g-3", NULL, now);
    CHECK(refused_with(bal_auth_check_grant(auth, reader, &t.request, BAL_PERMISSION_READ, &decision, &grant),
                       &decision, 401, "unknown_key"));
    /* And a key added by a reload is known at once. */
    CHECK(bal_auth_load_text(auth, first, strlen(first), "first", errstr, sizeof errstr) == BAL_AUTH_OK);
    test_request_sign(&t, "gone", "gone-secret-0123456789abcdefghijklmnopqr", "GET", "/", now, "g-4", NULL, now);
    CHECK(allowed_as(bal_auth_check_grant(auth, reader, &t.request, BAL_PERMISSION_READ, &decision, &grant),
                     &decision, "gone"));
    bal_auth_grant_release(&grant);
    bal_auth_reader_close(reader);
    bal_auth_destroy(auth);
}

static void test_grants(void) {
    grants_with(false);
    grants_with(true);
}

/* ---- Concurrency: checks and charges on several threads while another reloads ---- */

#define CONCURRENT_THREADS 4
#define CONCURRENT_REQUESTS 3000

static const char concurrent_keys_a[] =
    "stable stable-secret-0123456789abcdefghijklmn read,write 1000000000 1000000000 1000000000 1000000000\n"
    "flaky flaky-secret-0123456789abcdefghijklmnop read 1000000000 1000000000 1000000000 1000000000\n";
static const char concurrent_keys_b[] =
    "other other-secret-0123456789abcdefghijklmnop read 5 5 5 5\n"
    "stable stable-secret-0123456789abcdefghijklmn write,read 1000000000 1000000000 1000000000 1000000000\n";

typedef struct concurrent_context {
    bal_auth *auth;
    unsigned thread_index;
    atomic_bool *stop;
    unsigned unexpected;
} concurrent_context;

static void *concurrent_checker(void *argument) {
    concurrent_context *context = argument;
    bal_auth_reader *reader = bal_auth_reader_open(context->auth);
    if (reader == NULL) context->unexpected++;
    for (unsigned i = 0; i < CONCURRENT_REQUESTS; i++) {
        bool flaky = i % 3 == 0;
        char nonce[32];
        snprintf(nonce, sizeof nonce, "t%u-%u", context->thread_index, i);
        test_request t;
        int64_t now = KAT_NOW_MS + i;
        test_request_sign(&t, flaky ? "flaky" : "stable",
                          flaky ? "flaky-secret-0123456789abcdefghijklmnop" : "stable-secret-0123456789abcdefghijklmn",
                          "POST", "/v1/transactions", now, nonce, "{\"x\":1}", now);
        bal_auth_decision decision;
        bool allowed;
        if (i % 2 == 0) {
            allowed = bal_auth_check(context->auth, &t.request, BAL_PERMISSION_READ, &decision);
            if (allowed) allowed = bal_auth_charge(context->auth, decision.key_id, 3, now, &decision);
        } else { /* as the node does it: through this thread's reader */
            bal_auth_grant grant;
            allowed = bal_auth_check_grant(context->auth, reader, &t.request, BAL_PERMISSION_READ, &decision, &grant);
            if (allowed) allowed = bal_auth_charge_grant(&grant, 3, now, &decision);
            bal_auth_grant_release(&grant);
        }
        /* "stable" is in every key set; "flaky" comes and goes with the reloads. */
        bool expected = allowed || (flaky && strcmp(decision.reason, "unknown_key") == 0);
        if (!expected) {
            context->unexpected++;
            fprintf(stderr, "  thread %u request %u: %d %s\n", context->thread_index, i, decision.http_status,
                    decision.reason);
        }
    }
    bal_auth_reader_close(reader);
    return NULL;
}

static void *concurrent_reloader(void *argument) {
    concurrent_context *context = argument;
    char errstr[256];
    for (unsigned round = 0; !atomic_load(context->stop); round++) {
        const char *text = round % 3 == 0 ? concurrent_keys_a : round % 3 == 1 ? concurrent_keys_b : "bad file";
        bal_auth_status status = bal_auth_load_text(context->auth, text, strlen(text), "k", errstr, sizeof errstr);
        if ((status == BAL_AUTH_OK) != (round % 3 != 2)) context->unexpected++;
        size_t count = bal_auth_key_count(context->auth);
        if (count != 2) context->unexpected++;
    }
    return NULL;
}

static void test_concurrent(void) {
    bal_auth *auth = auth_with(concurrent_keys_a, 0);
    atomic_bool stop;
    atomic_init(&stop, false);
    pthread_t checkers[CONCURRENT_THREADS], reloader;
    concurrent_context contexts[CONCURRENT_THREADS + 1];
    for (unsigned i = 0; i <= CONCURRENT_THREADS; i++) {
        contexts[i] = (concurrent_context){.auth = auth, .thread_index = i, .stop = &stop};
    }
    CHECK(pthread_create(&reloader, NULL, concurrent_reloader, &contexts[CONCURRENT_THREADS]) == 0);
    for (unsigned i = 0; i < CONCURRENT_THREADS; i++) {
        CHECK(pthread_create(&checkers[i], NULL, concurrent_checker, &contexts[i]) == 0);
    }
    for (unsigned i = 0; i < CONCURRENT_THREADS; i++) pthread_join(checkers[i], NULL);
    atomic_store(&stop, true);
    pthread_join(reloader, NULL);
    for (unsigned i = 0; i <= CONCURRENT_THREADS; i++) CHECK(contexts[i].unexpected == 0);
    /* Every nonce was remembered once: a second pass of any of them is a replay. */
    test_request t;
    bal_auth_decision decision;
    test_request_sign(&t, "stable", "stable-secret-0123456789abcdefghijklmn", "POST", "/v1/transactions",
                      KAT_NOW_MS + 1, "t0-1", "{\"x\":1}", KAT_NOW_MS + 1);
    CHECK(refused_with(bal_auth_check(auth, &t.request, BAL_PERMISSION_READ, &decision), &decision, 401,
                       "replayed_nonce"));
    bal_auth_destroy(auth);
}

int main(int argc, char **argv) {
    static const struct {
        const char *name;
        void (*run)(void);
    } cases[] = {
        {"known_answer", test_known_answer},
        {"sign_primitives", test_sign_primitives},
        {"tampering", test_tampering},
        {"headers", test_headers},
        {"timestamp_skew", test_timestamp_skew},
        {"nonce_replay", test_nonce_replay},
        {"nonce_memory", test_nonce_memory},
        {"nonce_memory_full", test_nonce_memory_full},
        {"permissions", test_permissions},
        {"buckets", test_buckets},
        {"keys_file", test_keys_file},
        {"keys_file_errors", test_keys_file_errors},
        {"file_mode", test_file_mode},
        {"reload", test_reload},
        {"grants", test_grants},
        {"concurrent", test_concurrent},
    };
    bool ran = false;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        if (argc < 2 || strcmp(argv[1], cases[i].name) == 0) {
            cases[i].run();
            ran = true;
        }
    }
    if (!ran) {
        fprintf(stderr, "usage: %s [case]\n", argv[0]);
        return 2;
    }
    return bal_test_finish(argc < 2 ? "auth" : argv[1]);
}
