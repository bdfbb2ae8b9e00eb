/*
 * test_redis.c -- what the Redis snapshot adapter relies on, checked through hiredis against
 * a real server (scripts/services.sh up starts one). Every key starts with
 * "balanced:it:<pid>_<time>:" and is deleted at the end.
 *
 *  1. Pipelining: PIPELINE_COUNT commands are queued with redisAppendCommand and sent in one
 *     go; every reply is read back, in order, and checked; then the values are read back with
 *     a second pipeline. Amounts are written in the money module's canonical text.
 *  2. The snapshot script src/cluster/snapshot_lww.lua, loaded with SCRIPT LOAD and called
 *     with EVALSHA: a write with an older version (log position) never replaces a newer one,
 *     in both orders; an equal version changes nothing; versions above 2^53, where doubles
 *     fail, still compare right; malformed calls are errors; a pipeline of shuffled versions
 *     leaves every key at its highest version. An unknown sha gives NOSCRIPT, the signal on
 *     which the adapter loads the script again.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <hiredis.h>

#include "bal_itest.h"
#include "bal_money.h"

#define PIPELINE_COUNT 10000
#define LWW_KEY_COUNT 100
#define LWW_VERSIONS_PER_KEY 50
#define KEY_TEXT_MAX 128
#define SHA_TEXT_MAX 41

static redisContext *context;
static char key_prefix[KEY_TEXT_MAX];
static char script_sha[SHA_TEXT_MAX];

/* hiredis formats are printf-like plus %b (binary string with length) but without the z
 * length modifier, so the compiler's printf format checking cannot be applied to these two
 * wrappers: sizes are passed as unsigned long long with %llu. */
static redisReply *command(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    redisReply *reply = redisvCommand(context, format, arguments);
    va_end(arguments);
    REQUIRE(reply != NULL, "Redis: connection lost: %s", context->errstr);
    return reply;
}

static redisReply *read_reply(void) {
    void *reply = NULL;
    REQUIRE(redisGetReply(context, &reply) == REDIS_OK && reply != NULL,
            "Redis: reading a pipelined reply failed: %s", context->errstr);
    return reply;
}

static void append_command(const char *format, ...) {
    va_list arguments;
    va_start(arguments, format);
    int status = redisvAppendCommand(context, format, arguments);
    va_end(arguments);
    REQUIRE(status == REDIS_OK, "redisAppendCommand: %s", context->errstr);
}

static void connect_to_redis(void) {
    const char *host = bal_itest_env("BALANCED_REDIS_HOST", "127.0.0.1");
    unsigned port = bal_itest_env_port("BALANCED_REDIS_PORT", 6379);
    struct timeval timeout = {.tv_sec = 5};
    context = redisConnectWithTimeout(host, (int)port, timeout);
    REQUIRE(context != NULL && context->err == 0,
            "Redis: cannot connect to %s:%u: %s; start it with scripts/services.sh up", host, port,
            context != NULL ? context->errstr : "out of memory");
    REQUIRE(redisSetTimeout(context, (struct timeval){.tv_sec = 30}) == REDIS_OK,
            "redisSetTimeout");
    redisReply *reply = command("PING");
    REQUIRE(reply->type == REDIS_REPLY_STATUS && strcmp(reply->str, "PONG") == 0,
            "Redis at %s:%u does not answer PING", host, port);
    freeReplyObject(reply);
    printf("redis: connected to %s:%u\n", host, port);
}

/* --- pipelining ---------------------------------------------------------------------------- */

static void check_pipeline(void) {
    uint64_t started_ns = bal_itest_now_ns();
    /* Writes: a balance hash per index, amounts spread over the whole money range. */
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        char available[BAL_MONEY_TEXT_MAX + 1], frozen[BAL_MONEY_TEXT_MAX + 1];
        bal_money_format((bal_amount)i * BAL_MONEY_ONE + (bal_amount)i, available);
        bal_money_format(BAL_MONEY_MAX - (bal_amount)i, frozen);
        append_command("HSET %spipe:%llu available %s frozen %s", key_prefix, (unsigned long long)i,
                       available, frozen);
    }
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        redisReply *reply = read_reply();
        /* HSET answers with the number of fields it added: 2 for a new hash. */
        CHECK(reply->type == REDIS_REPLY_INTEGER && reply->integer == 2);
        freeReplyObject(reply);
    }
    double write_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;

    started_ns = bal_itest_now_ns();
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        append_command("HMGET %spipe:%llu available frozen", key_prefix, (unsigned long long)i);
    }
    size_t matching = 0;
    for (size_t i = 0; i < PIPELINE_COUNT; i++) {
        redisReply *reply = read_reply();
        REQUIRE(reply->type == REDIS_REPLY_ARRAY && reply->elements == 2, "HMGET reply type %d",
                reply->type);
        bal_amount available = -1, frozen = -1;
        REQUIRE(reply->element[0]->type == REDIS_REPLY_STRING &&
                    reply->element[1]->type == REDIS_REPLY_STRING,
                "HMGET %zu: missing field", i);
        CHECK(bal_money_parse(reply->element[0]->str, reply->element[0]->len, &available) ==
              BAL_MONEY_OK);
        CHECK(bal_money_parse(reply->element[1]->str, reply->element[1]->len, &frozen) ==
              BAL_MONEY_OK);
        if (available == (bal_amount)i * BAL_MONEY_ONE + (bal_amount)i &&
            frozen == BAL_MONEY_MAX - (bal_amount)i) {
            matching++;
        }
        freeReplyObject(reply);
    }
    CHECK(matching == PIPELINE_COUNT);
    double read_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;
    printf("redis: %d pipelined HSET in %.1f ms, %d pipelined HMGET in %.1f ms, all replies "
           "checked\n",
           PIPELINE_COUNT, write_ms, PIPELINE_COUNT, read_ms);
}

/* --- the last-write-wins script ------------------------------------------------------------ */

static void load_script(const char *path) {
    size_t length = 0;
    char *source = bal_itest_read_file(path, &length);
    REQUIRE(source != NULL, "cannot read the script %s", path);
    redisReply *reply = command("SCRIPT LOAD %b", source, length);
    REQUIRE(reply->type == REDIS_REPLY_STRING && reply->len == SHA_TEXT_MAX - 1,
            "SCRIPT LOAD %s: %s", path, reply->type == REDIS_REPLY_ERROR ? reply->str : "?");
    snprintf(script_sha, sizeof script_sha, "%s", reply->str);
    freeReplyObject(reply);
    free(source);
    printf("redis: loaded %s as %s\n", path, script_sha);
}

/* Calls the script; returns 1 (written), 0 (stale) or -1 (error reply). */
static long long snapshot_write(const char *key, const char *version, const char *available,
                                const char *frozen) {
    redisReply *reply = command("EVALSHA %s 1 %s%s %s available %s frozen %s", script_sha,
                                key_prefix, key, version, available, frozen);
    long long result = -1;
    if (reply->type == REDIS_REPLY_INTEGER) {
        result = reply->integer;
    } else {
        REQUIRE(reply->type == REDIS_REPLY_ERROR, "EVALSHA reply type %d", reply->type);
    }
    freeReplyObject(reply);
    return result;
}

/* The stored snapshot as "version available frozen". */
static void snapshot_read(const char *key, char *out, size_t size) {
    redisReply *reply = command("HMGET %s%s version available frozen", key_prefix, key);
    REQUIRE(reply->type == REDIS_REPLY_ARRAY && reply->elements == 3, "HMGET %s", key);
    snprintf(out, size, "%s %s %s",
             reply->element[0]->type == REDIS_REPLY_STRING ? reply->element[0]->str : "-",
             reply->element[1]->type == REDIS_REPLY_STRING ? reply->element[1]->str : "-",
             reply->element[2]->type == REDIS_REPLY_STRING ? reply->element[2]->str : "-");
    freeReplyObject(reply);
}

static void check_lww_orders(void) {
    char snapshot[256];
    /* Newer first: the late older write is ignored. */
    CHECK(snapshot_write("lww:newer-first", "5", "50", "5") == 1);
    CHECK(snapshot_write("lww:newer-first", "3", "30", "3") == 0);
    snapshot_read("lww:newer-first", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "5 50 5");
    /* Older first: the newer write replaces it. */
    CHECK(snapshot_write("lww:older-first", "3", "30", "3") == 1);
    CHECK(snapshot_write("lww:older-first", "5", "50", "5") == 1);
    snapshot_read("lww:older-first", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "5 50 5");
    /* The same version again changes nothing, even with other contents. */
    CHECK(snapshot_write("lww:older-first", "5", "99", "9") == 0);
    snapshot_read("lww:older-first", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "5 50 5");
    /* Version 10 is newer than 9 although "10" < "9" as text. */
    CHECK(snapshot_write("lww:digits", "9", "9", "0") == 1);
    CHECK(snapshot_write("lww:digits", "10", "10", "0") == 1);
    CHECK(snapshot_write("lww:digits", "9", "9", "0") == 0);
    snapshot_read("lww:digits", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "10 10 0");
    /* 2^53 and 2^53 + 1 are one double; as log positions they differ. Both orders. */
    CHECK(snapshot_write("lww:big-a", "9007199254740993", "new", "0") == 1);
    CHECK(snapshot_write("lww:big-a", "9007199254740992", "old", "0") == 0);
    snapshot_read("lww:big-a", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "9007199254740993 new 0");
    CHECK(snapshot_write("lww:big-b", "9007199254740992", "old", "0") == 1);
    CHECK(snapshot_write("lww:big-b", "9007199254740993", "new", "0") == 1);
    snapshot_read("lww:big-b", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "9007199254740993 new 0");
    /* The largest Kafka offset. */
    CHECK(snapshot_write("lww:big-b", "9223372036854775807", "max", "0") == 1);
    CHECK(snapshot_write("lww:big-b", "9223372036854775806", "old", "0") == 0);
    snapshot_read("lww:big-b", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "9223372036854775807 max 0");
    printf("redis: last write wins by version in both orders, also above 2^53\n");
}

static void check_lww_refusals(void) {
    char snapshot[256];
    CHECK(snapshot_write("lww:bad", "-1", "1", "0") == -1);
    CHECK(snapshot_write("lww:bad", "007", "1", "0") == -1);
    CHECK(snapshot_write("lww:bad", "1.5", "1", "0") == -1);
    CHECK(snapshot_write("lww:bad", "", "1", "0") == -1);
    CHECK(snapshot_write("lww:bad", "12345678901234567890", "1", "0") == -1);
    snapshot_read("lww:bad", snapshot, sizeof snapshot);
    CHECK_STR(snapshot, "- - -");
    /* An odd field list and the reserved field name are refused too. */
    redisReply *reply = command("EVALSHA %s 1 %slww:bad 1 available", script_sha, key_prefix);
    CHECK(reply->type == REDIS_REPLY_ERROR);
    freeReplyObject(reply);
    reply = command("EVALSHA %s 1 %slww:bad 1 version 7", script_sha, key_prefix);
    CHECK(reply->type == REDIS_REPLY_ERROR);
    freeReplyObject(reply);
    /* A sha that the server does not know: the adapter's cue to SCRIPT LOAD again. */
    reply = command("EVALSHA 0000000000000000000000000000000000000000 1 %slww:bad 1 a b",
                    key_prefix);
    CHECK(reply->type == REDIS_REPLY_ERROR && strncmp(reply->str, "NOSCRIPT", 8) == 0);
    freeReplyObject(reply);
}

/* Many writers racing: every key gets its versions in a shuffled order through one pipeline.
 * Each key must end at its highest version, and the script must report a write exactly when
 * the version beats every one before it. */
static void check_lww_pipeline(void) {
    static unsigned versions[LWW_KEY_COUNT * LWW_VERSIONS_PER_KEY];
    static size_t keys[LWW_KEY_COUNT * LWW_VERSIONS_PER_KEY];
    size_t count = 0;
    for (size_t k = 0; k < LWW_KEY_COUNT; k++) {
        for (unsigned v = 1; v <= LWW_VERSIONS_PER_KEY; v++) {
            keys[count] = k;
            versions[count] = v * 1000 + (unsigned)k;
            count++;
        }
    }
    uint64_t state = 0x2545f4914f6cdd1du;
    for (size_t i = count - 1; i > 0; i--) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        size_t j = (size_t)(state % (i + 1));
        size_t key = keys[i];
        unsigned version = versions[i];
        keys[i] = keys[j];
        versions[i] = versions[j];
        keys[j] = key;
        versions[j] = version;
    }
    uint64_t started_ns = bal_itest_now_ns();
    for (size_t i = 0; i < count; i++) {
        append_command("EVALSHA %s 1 %slww:race:%llu %u available %u frozen 0", script_sha,
                       key_prefix, (unsigned long long)keys[i], versions[i], versions[i]);
    }
    unsigned highest[LWW_KEY_COUNT] = {0};
    size_t expected_writes = 0, writes = 0;
    for (size_t i = 0; i < count; i++) {
        redisReply *reply = read_reply();
        REQUIRE(reply->type == REDIS_REPLY_INTEGER, "EVALSHA in a pipeline: %s",
                reply->type == REDIS_REPLY_ERROR ? reply->str : "not an integer");
        bool newer = versions[i] > highest[keys[i]];
        if (newer) {
            highest[keys[i]] = versions[i];
            expected_writes++;
        }
        CHECK(reply->integer == (newer ? 1 : 0));
        writes += (size_t)reply->integer;
        freeReplyObject(reply);
    }
    double elapsed_ms = (double)(bal_itest_now_ns() - started_ns) / 1e6;
    CHECK(writes == expected_writes);
    for (size_t k = 0; k < LWW_KEY_COUNT; k++) {
        char key[64], snapshot[256], expected[256];
        snprintf(key, sizeof key, "lww:race:%zu", k);
        snapshot_read(key, snapshot, sizeof snapshot);
        snprintf(expected, sizeof expected, "%u %u 0", highest[k], highest[k]);
        CHECK_STR(snapshot, expected);
        CHECK(highest[k] == LWW_VERSIONS_PER_KEY * 1000 + k);
    }
    printf("redis: %zu pipelined EVALSHA with shuffled versions in %.1f ms: %zu writes, %zu "
           "stale writes ignored, every key at its highest version\n",
           count, elapsed_ms, writes, count - writes);
}

/* --- clean-up ------------------------------------------------------------------------------ */

static void delete_test_keys(void) {
    char cursor[32] = "0";
    size_t deleted = 0;
    do {
        redisReply *reply = redisCommand(context, "SCAN %s MATCH %s* COUNT 1000", cursor,
                                         key_prefix);
        if (reply == NULL || reply->type != REDIS_REPLY_ARRAY || reply->elements != 2) {
            fprintf(stderr, "SCAN failed; keys %s* may remain\n", key_prefix);
            if (reply != NULL) {
                freeReplyObject(reply);
            }
            return;
        }
        snprintf(cursor, sizeof cursor, "%s", reply->element[0]->str);
        redisReply *batch = reply->element[1];
        for (size_t i = 0; i < batch->elements; i++) {
            redisReply *deleted_reply =
                redisCommand(context, "UNLINK %b", batch->element[i]->str, batch->element[i]->len);
            if (deleted_reply != NULL) {
                if (deleted_reply->type == REDIS_REPLY_INTEGER) {
                    deleted += (size_t)deleted_reply->integer;
                }
                freeReplyObject(deleted_reply);
            }
        }
        freeReplyObject(reply);
    } while (strcmp(cursor, "0") != 0);
    printf("redis: deleted %zu test keys\n", deleted);
}

static void cleanup(void) {
    if (context != NULL && context->err == 0) {
        delete_test_keys();
    }
}

int main(int argc, char **argv) {
    REQUIRE(argc == 2, "usage: %s <src/cluster/snapshot_lww.lua>", argv[0]);
    char suffix[64];
    bal_itest_run_suffix(suffix, sizeof suffix);
    snprintf(key_prefix, sizeof key_prefix, "balanced:it:%s:", suffix);
    connect_to_redis();
    bal_itest_set_cleanup(cleanup);

    check_pipeline();
    load_script(argv[1]);
    check_lww_orders();
    check_lww_refusals();
    check_lww_pipeline();

    bal_itest_set_cleanup(NULL);
    cleanup();
    redisFree(context);
    return bal_test_finish("integration/redis");
}
