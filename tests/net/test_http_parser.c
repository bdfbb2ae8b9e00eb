/*
 * Unit tests of the HTTP request head parser: valid requests, framing, every refusal, the
 * head limit, and the incremental scan (byte-by-byte arrival gives the same result).
 */
#include "bal_http_parser.h"
#include "bal_test.h"

#define HEAD_MAX 16384u

static bal_http_head head;

static bal_http_parse_status parse(const char *text) {
    size_t scan = 0;
    return bal_http_parse_head(text, strlen(text), HEAD_MAX, &scan, &head);
}

static bool span_is(const char *data, size_t length, const char *text) {
    return data != NULL && length == strlen(text) && memcmp(data, text, length) == 0;
}

static void test_simple_post(void) {
    const char *text = "POST /v1/transactions?x=1&y=2 HTTP/1.1\r\nHost: a\r\n"
                       "Content-Type: application/json\r\nContent-Length: 42\r\n"
                       "X-Api-Key:  key-1 \r\n\r\nBODY";
    CHECK(parse(text) == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.method == BAL_HTTP_METHOD_POST);
    CHECK(span_is(head.method_text, head.method_length, "POST"));
    CHECK(span_is(head.path, head.path_length, "/v1/transactions"));
    CHECK(span_is(head.query, head.query_length, "x=1&y=2"));
    CHECK(span_is(head.target, head.target_length, "/v1/transactions?x=1&y=2"));
    CHECK(head.version_minor == 1 && head.keep_alive);
    CHECK(head.has_content_length && head.content_length == 42);
    CHECK(head.header_count == 4);
    CHECK(head.head_length == strlen(text) - 4);
    const char *value = NULL;
    size_t length = 0;
    CHECK(bal_http_head_find(&head, "x-api-KEY", &value, &length) && span_is(value, length, "key-1"));
    CHECK(bal_http_head_find(&head, "content-type", &value, &length) &&
          span_is(value, length, "application/json"));
    CHECK(!bal_http_head_find(&head, "X-Nonce", &value, &length) && value == NULL && length == 0);
}

static void test_get_and_versions(void) {
    CHECK(parse("GET /health HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.method == BAL_HTTP_METHOD_GET && head.query == NULL && head.content_length == 0);
    CHECK(!head.has_content_length && head.keep_alive);
    CHECK(parse("GET / HTTP/1.0\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.version_minor == 0 && !head.keep_alive);
    CHECK(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.keep_alive);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nConnection: upgrade, close\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(!head.keep_alive);
    CHECK(parse("GET / HTTP/2.0\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_VERSION_UNSUPPORTED);
    CHECK(parse("GET / HTTP/1.2\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_VERSION_UNSUPPORTED);
    CHECK(parse("GET / HTTP/1.x\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / http/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1 \r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("get / HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.method == BAL_HTTP_METHOD_OTHER); /* methods are case-sensitive */
    CHECK(parse("HEAD / HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.method == BAL_HTTP_METHOD_HEAD);
    CHECK_STR(bal_http_method_string(BAL_HTTP_METHOD_DELETE), "DELETE");
}

static void test_targets(void) {
    CHECK(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(span_is(head.path, head.path_length, "*"));
    CHECK(parse("GET http://example.com/a/b?c HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(span_is(head.path, head.path_length, "/a/b") && span_is(head.query, head.query_length, "c"));
    CHECK(parse("GET http://example.com HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(span_is(head.path, head.path_length, "/") && head.query == NULL);
    CHECK(parse("GET /? HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.query != NULL && head.query_length == 0);
    CHECK(parse("GET relative HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET /a\x01 HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET /\xc3\xa9 HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET  / HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET /a b HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
}

static void test_framing_refusals(void) {
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n") ==
          BAL_HTTP_PARSE_LENGTH_REQUIRED);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n") ==
          BAL_HTTP_PARSE_CODING_UNSUPPORTED);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n") ==
          BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n") ==
          BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n") ==
          BAL_HTTP_PARSE_COMPLETE);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1 2\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999\r\n\r\n") ==
          BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 9999999999999999999\r\n\r\n") ==
          BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.content_length == 9999999999999999999ull);
    CHECK(parse("GET / HTTP/1.1\r\n\r\n") == BAL_HTTP_PARSE_INVALID);                 /* no Host */
    CHECK(parse("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("POST / HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n") ==
          BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.expect_continue);
}

static void test_malformed_fields(void) {
    CHECK(parse("GET / HTTP/1.1\r\nHost : h\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nNoColon\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\n: empty\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x01z\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\x7fz\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("GET / HTTP/1.1\nHost: h\n\n") == BAL_HTTP_PARSE_INVALID);           /* bare LF */
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: a\nY: b\r\n\r\n") == BAL_HTTP_PARSE_INVALID);
    CHECK(head.error != NULL);
    CHECK(parse("GET / HTTP/1.1\r\nHost: h\r\nX: caf\xc3\xa9\tok\r\nEmpty:\r\n\r\n") ==
          BAL_HTTP_PARSE_COMPLETE);                                                  /* obs-text */
    const char *value = NULL;
    size_t length = 0;
    CHECK(bal_http_head_find(&head, "empty", &value, &length) && length == 0);
    /* Garbage is refused at once, without waiting for a line end that may never come. */
    CHECK(parse("\x16\x03\x01\x02") == BAL_HTTP_PARSE_INVALID);                     /* TLS hello */
    CHECK(parse("{\"json\":1}") == BAL_HTTP_PARSE_INVALID);
    CHECK(parse("ABCDEFGHIJKLMNOPQRSTUVWXYZ") == BAL_HTTP_PARSE_INVALID);            /* method too long */
    CHECK(parse("GET") == BAL_HTTP_PARSE_INCOMPLETE);
    CHECK(parse("") == BAL_HTTP_PARSE_INCOMPLETE);
    CHECK(parse("\r") == BAL_HTTP_PARSE_INCOMPLETE);
    CHECK(parse("\n") == BAL_HTTP_PARSE_INVALID);
}

static void test_leading_empty_lines(void) {
    CHECK(parse("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n") == BAL_HTTP_PARSE_COMPLETE);
    CHECK(head.head_length == strlen("\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n"));
    CHECK(parse("\r\n") == BAL_HTTP_PARSE_INCOMPLETE);
}

static void test_limits(void) {
    char text[HEAD_MAX + 200];
    int written = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: h\r\nX-Big: ");
    memset(text + written, 'a', HEAD_MAX);
    text[written + HEAD_MAX] = '\0';
    size_t scan = 0;
    CHECK(bal_http_parse_head(text, strlen(text), HEAD_MAX, &scan, &head) == BAL_HTTP_PARSE_HEAD_TOO_LARGE);
    /* A head exactly at the limit is fine; one byte less of limit is not. */
    const char *exact = "GET / HTTP/1.1\r\nHost: h\r\n\r\n";
    scan = 0;
    CHECK(bal_http_parse_head(exact, strlen(exact), strlen(exact), &scan, &head) == BAL_HTTP_PARSE_COMPLETE);
    scan = 0;
    CHECK(bal_http_parse_head(exact, strlen(exact), strlen(exact) - 1, &scan, &head) ==
          BAL_HTTP_PARSE_HEAD_TOO_LARGE);
    /* Too many fields. */
    int offset = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: h\r\n");
    for (int i = 0; i < BAL_HTTP_HEADERS_MAX; i++) offset += snprintf(text + offset, sizeof text - (size_t)offset, "X%d: v\r\n", i);
    snprintf(text + offset, sizeof text - (size_t)offset, "\r\n");
    CHECK(parse(text) == BAL_HTTP_PARSE_TOO_MANY_HEADERS);
}

/* Feeding the head one byte at a time, with the scan offset carried over, gives the same
 * result as parsing it whole, and the scan offset never moves backwards. */
static void test_incremental(void) {
    const char *texts[] = {
        "POST /v1/transactions HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}",
        "\r\nGET /x?y HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nX: a\nY: b\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
    };
    for (size_t t = 0; t < sizeof texts / sizeof texts[0]; t++) {
        const char *text = texts[t];
        size_t length = strlen(text);
        bal_http_parse_status whole = parse(text);
        size_t whole_head = head.head_length;
        size_t scan = 0;
        bal_http_parse_status status = BAL_HTTP_PARSE_INCOMPLETE;
        size_t fed = 0;
        while (status == BAL_HTTP_PARSE_INCOMPLETE && fed < length) {
            fed++;
            size_t before = scan;
            status = bal_http_parse_head(text, fed, HEAD_MAX, &scan, &head);
            CHECK(scan <= fed);
            if (status == BAL_HTTP_PARSE_INCOMPLETE) CHECK(scan >= before);
        }
        CHECK(status == whole);
        if (status == BAL_HTTP_PARSE_COMPLETE) CHECK(head.head_length == whole_head);
    }
}

static bool rfc_tchar(int c) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
    return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Every byte value in a field name, a field value and the target, against RFC 9110's sets. */
static void test_character_classes(void) {
    for (int c = 0; c < 256; c++) {
        if (c == '\r' || c == '\n' || c == ':') continue;
        char text[128];
        int length = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: h\r\nX%cY: v\r\n\r\n", c == 0 ? '#' : c);
        if (c == 0) text[26] = '\0';
        size_t scan = 0;
        bal_http_parse_status status = bal_http_parse_head(text, (size_t)length, HEAD_MAX, &scan, &head);
        CHECK((status == BAL_HTTP_PARSE_COMPLETE) == rfc_tchar(c));
        length = snprintf(text, sizeof text, "GET / HTTP/1.1\r\nHost: h\r\nX: a%cb\r\n\r\n", c == 0 ? '#' : c);
        if (c == 0) text[29] = '\0';
        scan = 0;
        status = bal_http_parse_head(text, (size_t)length, HEAD_MAX, &scan, &head);
        bool value_char = c == '\t' || (c >= 0x20 && c != 0x7f);
        CHECK((status == BAL_HTTP_PARSE_COMPLETE) == value_char);
        /* Long values are checked 16 bytes at a time: the byte at every position of one. */
        for (int position = 0; position < 40; position++) {
            static const char prefix[] = "GET / HTTP/1.1\r\nHost: h\r\nX: ";
            char value[41];
            memset(value, 'v', 40);
            value[40] = '\0';
            value[position] = c == 0 ? '#' : (char)c;
            length = snprintf(text, sizeof text, "%s%s\r\n\r\n", prefix, value);
            if (c == 0) text[sizeof prefix - 1 + (size_t)position] = '\0';
            scan = 0;
            status = bal_http_parse_head(text, (size_t)length, HEAD_MAX, &scan, &head);
            CHECK((status == BAL_HTTP_PARSE_COMPLETE) == value_char);
        }
        length = snprintf(text, sizeof text, "GET /a%cb HTTP/1.1\r\nHost: h\r\n\r\n", c == 0 ? '#' : c);
        if (c == 0) text[6] = '\0';
        scan = 0;
        status = bal_http_parse_head(text, (size_t)length, HEAD_MAX, &scan, &head);
        CHECK((status == BAL_HTTP_PARSE_COMPLETE) == (c > 0x20 && c < 0x7f));
    }
}

static void test_strings(void) {
    CHECK_STR(bal_http_parse_status_string(BAL_HTTP_PARSE_LENGTH_REQUIRED), "length_required");
    CHECK(bal_http_equals_ignore_case("Content-LENGTH", 14, "content-length"));
    CHECK(!bal_http_equals_ignore_case("Content-Lengt", 13, "content-length"));
    CHECK(!bal_http_equals_ignore_case("Content-Lengthx", 15, "content-length"));
}

/* Several names in one pass: any case, the first value and the count of repeats, absent
 * names empty, names that share a prefix or a length kept apart. */
static void test_find_all(void) {
    const char *text = "GET / HTTP/1.1\r\nHost: h\r\nX-NONCE: n1\r\nx-api-key: k\r\nX-Nonce: n2\r\n"
                       "X-Noncf: other\r\nX-Nonce-Extra: longer\r\nX-Timestamp:  17 \r\n\r\n";
    size_t scan = 0;
    CHECK(bal_http_parse_head(text, strlen(text), HEAD_MAX, &scan, &head) == BAL_HTTP_PARSE_COMPLETE);
    static const char *const names[] = {"x-nonce", "x-api-key", "x-timestamp", "x-signature", "host"};
    bal_http_field fields[5];
    bal_http_head_find_all(&head, names, 5, fields);
    CHECK(fields[0].count == 2 && fields[0].length == 2 && memcmp(fields[0].value, "n1", 2) == 0);
    CHECK(fields[1].count == 1 && fields[1].length == 1 && fields[1].value[0] == 'k');
    CHECK(fields[2].count == 1 && fields[2].length == 2 && memcmp(fields[2].value, "17", 2) == 0);
    CHECK(fields[3].count == 0 && fields[3].value == NULL && fields[3].length == 0);
    CHECK(fields[4].count == 1 && fields[4].length == 1 && fields[4].value[0] == 'h');
    bal_http_head_find_all(&head, names, 0, fields); /* no names: nothing to do */
}

int main(void) {
    test_simple_post();
    test_find_all();
    test_get_and_versions();
    test_targets();
    test_framing_refusals();
    test_malformed_fields();
    test_leading_empty_lines();
    test_limits();
    test_incremental();
    test_character_classes();
    test_strings();
    return bal_test_finish("test_http_parser");
}
