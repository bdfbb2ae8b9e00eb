/* Unit tests of the JSON tokenizer and the request decoder: every field's rule and error
 * code, legacy type codes, EVENT legs, batches. */
#include <stdlib.h>

#include "bal_decode.h"
#include "bal_test.h"

static bal_json_token *tokens;

static bal_decode_error decode(const char *body, bal_command *c, bal_decode_diagnostic *d) {
    return bal_decode_transaction(body, strlen(body), tokens, 4096, 42, c, d);
}

static const char *code_of(const char *body) {
    bal_command c;
    bal_decode_diagnostic d;
    return bal_decode_error_code(decode(body, &c, &d));
}

static void test_json(void) {
    const char *good[] = {"{}", "[]", "{\"a\":[1,2,{\"b\":null}]}", " [true,false,null,-0.5e+3] ",
                          "\"\\u00e9\\ud83d\\ude00\"", "{\"a\":{}}", "[[],[[]]]"};
    const char *bad[] = {"", "{", "}", "[1,]", "{\"a\":1,}", "{\"a\"}", "{a:1}", "[01]", "[1.]",
                         "[.5]", "\"\x01\"", "\"\\x\"", "[1]x", "\"\xff\"", "\"\xc0\xaf\"", "tru",
                         "[\"\\u12\"]", "{\"a\":1 \"b\":2}", "[}", "{]"};
    uint32_t count;
    size_t offset;
    for (size_t i = 0; i < sizeof(good) / sizeof(*good); i++) {
        CHECK(bal_json_parse(good[i], strlen(good[i]), tokens, 4096, &count, &offset) == BAL_JSON_OK);
    }
    for (size_t i = 0; i < sizeof(bad) / sizeof(*bad); i++) {
        bal_json_status s = bal_json_parse(bad[i], strlen(bad[i]), tokens, 4096, &count, &offset);
        if (s == BAL_JSON_OK) fprintf(stderr, "accepted bad json: %s\n", bad[i]);
        CHECK(s != BAL_JSON_OK);
    }
    const char *nested = "{\"a\":[1,2,{\"b\":null}],\"c\":\"d\"}";
    CHECK(bal_json_parse(nested, strlen(nested), tokens, 4096, &count, &offset) == BAL_JSON_OK);
    CHECK(count == 10 && tokens[0].size == 2 && tokens[2].size == 3 && tokens[2].next == 8 && tokens[5].next == 8);
    char deep[64];
    memset(deep, '[', 40);
    memset(deep + 40, ']', 20);
    CHECK(bal_json_parse(deep, 60, tokens, 4096, &count, &offset) == BAL_JSON_TOO_DEEP);
    CHECK(bal_json_parse("[1,2,3]", 7, tokens, 3, &count, &offset) == BAL_JSON_TOO_MANY_TOKENS);
    const char *escaped = "\"a\\n\\u00e9\\ud83d\\ude00\"";
    CHECK(bal_json_parse(escaped, strlen(escaped), tokens, 4096, &count, &offset) == BAL_JSON_OK);
    char out[32];
    size_t n = 0;
    CHECK(bal_json_string_copy(escaped, &tokens[0], out, sizeof(out), &n) && n == 8);
    CHECK(memcmp(out, "a\n\xc3\xa9\xf0\x9f\x98\x80", 8) == 0);
}

static void test_typed(void) {
    bal_command c;
    bal_decode_diagnostic d;
    CHECK(decode("{\"transaction_id\":\"t-1\",\"type\":\"DEPOSIT\",\"account_id\":7,\"currency\":\"USDT\","
                 "\"amount\":\"100.50\",\"memo\":\"hi\"}", &c, &d) == BAL_DECODE_OK);
    CHECK(c.type == BAL_OP_DEPOSIT && c.account_id == 7 && c.amount == 1005 * BAL_MONEY_ONE / 10);
    CHECK(c.time_ms == 42 && c.memo_length == 2 && c.has_memo && c.transaction_id_length == 3);
    CHECK(decode("{\"transaction_id\":\"t\",\"type\":4,\"account_id\":\"18446744073709551615\","
                 "\"to_account_id\":1,\"currency\":\"BTC\",\"amount\":\"1\"}", &c, &d) == BAL_DECODE_OK);
    CHECK(c.type == BAL_OP_TRANSFER && c.account_id == UINT64_MAX && c.to_account_id == 1);
    /* Legacy code and name give the same digest; so do "10" and "10.000". */
    bal_command a, b;
    decode("{\"transaction_id\":\"x\",\"type\":1,\"account_id\":1,\"currency\":\"A\",\"amount\":\"10\"}", &a, &d);
    decode("{\"type\":\"WITHDRAW\",\"amount\":\"10.000\",\"currency\":\"A\",\"account_id\":\"1\",\"transaction_id\":\"x\"}", &b, &d);
    CHECK(bal_digest_equal(bal_command_digest(&a), bal_command_digest(&b)));
}

static void test_errors(void) {
    CHECK_STR(code_of("nope"), "invalid_json");
    CHECK_STR(code_of("[]"), "invalid_json");
    CHECK_STR(code_of("{\"type\":\"DEPOSIT\",\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\"}"), "invalid_transaction_id");
    CHECK_STR(code_of("{\"transaction_id\":\"a b\",\"type\":\"DEPOSIT\"}"), "invalid_transaction_id");
    char long_id[200];
    snprintf(long_id, sizeof(long_id), "{\"transaction_id\":\"%065d\",\"type\":0}", 1);
    CHECK_STR(code_of(long_id), "invalid_transaction_id");
    CHECK_STR(code_of("{\"transaction_id\":\"\",\"type\":0}"), "invalid_transaction_id");
    CHECK_STR(code_of("{\"transaction_id\":\"a\",\"type\":\"deposit\"}"), "invalid_type");
    CHECK_STR(code_of("{\"transaction_id\":\"a\",\"type\":5}"), "invalid_type");
    CHECK_STR(code_of("{\"transaction_id\":\"a\"}"), "invalid_type");
    const char *base = "{\"transaction_id\":\"a\",\"type\":\"DEPOSIT\",";
    char body[1024];
#define WITH(rest) (snprintf(body, sizeof(body), "%s%s}", base, rest), body)
    CHECK_STR(code_of(WITH("\"account_id\":0,\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":-1,\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":1.5,\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":18446744073709551616,\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":\"01\",\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"currency\":\"A\",\"amount\":\"1\"")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"usdt\",\"amount\":\"1\"")), "invalid_currency");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"ABCDEFGHIJK\",\"amount\":\"1\"")), "invalid_currency");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"\",\"amount\":\"1\"")), "invalid_currency");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"amount\":\"1\"")), "invalid_currency");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":1")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"0\"")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"-1\"")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1e5\"")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"0.0000000000000000001\"")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\"")), "invalid_amount");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"memo\":5")), "invalid_memo");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"memo\":\"a\\u0000b\"")), "invalid_memo");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"memo\":null")), "ok");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"to_account_id\":2")), "invalid_account");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"extra\":2")), "unknown_field");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"account_id\":2,\"currency\":\"A\",\"amount\":\"1\"")), "invalid_json");
    CHECK_STR(code_of(WITH("\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"legs\":[]")), "invalid_legs");
    char memo[600];
    snprintf(memo, sizeof(memo), "\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"memo\":\"%0257d\"", 0);
    CHECK_STR(code_of(WITH(memo)), "invalid_memo");
    snprintf(memo, sizeof(memo), "\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\",\"memo\":\"%0256d\"", 0);
    CHECK_STR(code_of(WITH(memo)), "ok");
#undef WITH
    CHECK_STR(code_of("{\"transaction_id\":\"a\",\"type\":\"TRANSFER\",\"account_id\":1,\"to_account_id\":1,"
                      "\"currency\":\"A\",\"amount\":\"1\"}"), "invalid_account");
    CHECK_STR(code_of("{\"transaction_id\":\"a\",\"type\":\"TRANSFER\",\"account_id\":1,"
                      "\"currency\":\"A\",\"amount\":\"1\"}"), "invalid_account");
}

static void test_event(void) {
    bal_command c;
    bal_decode_diagnostic d;
    CHECK(decode("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":["
                 "{\"account_id\":1,\"currency\":\"USDT\",\"available_delta\":\"-5\",\"frozen_delta\":\"0\"},"
                 "{\"account_id\":2,\"currency\":\"USDT\",\"available_delta\":\"5\"}]}", &c, &d) == BAL_DECODE_OK);
    CHECK(c.leg_count == 2 && c.legs[0].available_delta == -5 * BAL_MONEY_ONE && c.legs[1].frozen_delta == 0);
    CHECK(c.account_id == 1);
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\"}"), "invalid_legs");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[]}"), "invalid_legs");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[1]}"), "invalid_legs");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[{\"account_id\":1,\"currency\":\"A\"},"
                      "{\"account_id\":1,\"currency\":\"A\"}]}"), "invalid_legs");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"amount\":\"1\",\"legs\":[{\"account_id\":1,\"currency\":\"A\"}]}"), "invalid_amount");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[{\"account_id\":1,\"currency\":\"A\",\"available_delta\":\"+1\"}]}"), "invalid_amount");
    CHECK_STR(code_of("{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[{\"account_id\":1,\"currency\":\"A\",\"x\":1}]}"), "unknown_field");
    char body[4096];
    size_t n = (size_t)snprintf(body, sizeof(body), "{\"transaction_id\":\"e\",\"type\":\"EVENT\",\"legs\":[");
    for (int i = 0; i < 17; i++) {
        n += (size_t)snprintf(body + n, sizeof(body) - n, "%s{\"account_id\":%d,\"currency\":\"A\"}", i ? "," : "", i + 1);
    }
    snprintf(body + n, sizeof(body) - n, "]}");
    CHECK_STR(code_of(body), "too_many_legs");
}

static void test_batch(void) {
    uint32_t first, count;
    bal_decode_diagnostic d;
    const char *body = "{\"transactions\":[{\"transaction_id\":\"a\",\"type\":0,\"account_id\":1,\"currency\":\"A\",\"amount\":\"1\"},"
                       "{\"transaction_id\":\"b\",\"type\":0},{\"nope\":1}]}";
    CHECK(bal_decode_batch(body, strlen(body), tokens, 4096, &first, &count, &d) == BAL_DECODE_OK && count == 3);
    bal_command c;
    CHECK(bal_decode_object(body, tokens, first, 1, &c, &d) == BAL_DECODE_OK);
    uint32_t second = tokens[first].next;
    CHECK(bal_decode_object(body, tokens, second, 1, &c, &d) == BAL_DECODE_INVALID_ACCOUNT);
    CHECK_STR(d.transaction_id, "b");
    CHECK(bal_decode_object(body, tokens, tokens[second].next, 1, &c, &d) == BAL_DECODE_UNKNOWN_FIELD);
    const char *named = "{\"transactions\":[{\"transaction_id\":\"z-1\",\"extra\":1}]}";
    CHECK(bal_decode_batch(named, strlen(named), tokens, 4096, &first, &count, &d) == BAL_DECODE_OK);
    CHECK(bal_decode_object(named, tokens, first, 1, &c, &d) == BAL_DECODE_UNKNOWN_FIELD);
    CHECK_STR(d.transaction_id, "z-1");
    CHECK(bal_decode_batch("{\"transactions\":{}}", 19, tokens, 4096, &first, &count, &d) == BAL_DECODE_INVALID_BATCH);
    CHECK(bal_decode_batch("[]", 2, tokens, 4096, &first, &count, &d) == BAL_DECODE_INVALID_BATCH);
    size_t size = 20 + 8193 * 3;
    char *big = malloc(size);
    size_t n = (size_t)snprintf(big, size, "{\"transactions\":[");
    for (int i = 0; i < 8193; i++) n += (size_t)snprintf(big + n, size - n, "%s{}", i ? "," : "");
    n += (size_t)snprintf(big + n, size - n, "]}");
    bal_json_token *many = malloc(sizeof(*many) * 20000);
    CHECK(bal_decode_batch(big, n, many, 20000, &first, &count, &d) == BAL_DECODE_BATCH_TOO_LARGE);
    free(many);
    free(big);
}

int main(void) {
    tokens = malloc(sizeof(*tokens) * 4096);
    test_json();
    test_typed();
    test_errors();
    test_event();
    test_batch();
    free(tokens);
    return bal_test_finish("test_decode");
}
