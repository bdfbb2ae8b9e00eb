/*
 * fuzz_http.c -- libFuzzer target for the HTTP request head parser (bal_http_parser.c).
 *
 * Beyond "does not crash", it checks the parser's promises on every input: every pointer
 * it returns lies inside the head it reports, the counts respect their limits, an error
 * always comes with a reason, and feeding the same bytes in pieces (carrying the scan
 * offset, as the server does) gives exactly the result of parsing them whole.
 * Links bal_net.
 */
#include <assert.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bal_http_parser.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Small enough that the fuzzer reaches the limit, large enough for real heads. */
#define FUZZ_HEAD_BYTES_MAX 2048u
/* Pieces of this many bytes for the incremental parse. */
#define FUZZ_PIECE_BYTES 7u

static bool fuzz_inside(const char *base, size_t length, const char *pointer, size_t pointer_length) {
    return pointer >= base && pointer_length <= length && (size_t)(pointer - base) <= length - pointer_length;
}

static void fuzz_check_complete(const char *text, size_t size, const bal_http_head *head) {
    size_t length = head->head_length;
    if (length > size || length > FUZZ_HEAD_BYTES_MAX || length < 4) abort();
    if (memcmp(text + length - 4, "\r\n\r\n", 4) != 0) abort();
    if (head->header_count > BAL_HTTP_HEADERS_MAX) abort();
    if (head->method_length == 0 || head->method_length > BAL_HTTP_METHOD_LENGTH_MAX) abort();
    if (!fuzz_inside(text, length, head->method_text, head->method_length)) abort();
    if (!fuzz_inside(text, length, head->target, head->target_length)) abort();
    bool root = head->path_length == 1 && head->path[0] == '/';
    if (!root && !fuzz_inside(text, length, head->path, head->path_length)) abort();
    if (head->query != NULL && !fuzz_inside(text, length, head->query, head->query_length)) abort();
    if (head->version_minor > 1) abort();
    for (size_t i = 0; i < head->header_count; i++) {
        const bal_http_header *header = &head->headers[i];
        if (header->name_length == 0) abort();
        if (!fuzz_inside(text, length, header->name, header->name_length)) abort();
        if (!fuzz_inside(text, length, header->value, header->value_length)) abort();
        if (memchr(header->value, '\n', header->value_length) != NULL) abort();
    }
}

static bal_http_parse_status fuzz_parse_in_pieces(const char *text, size_t size, bal_http_head *head) {
    size_t scan = 0;
    size_t fed = 0;
    bal_http_parse_status status = BAL_HTTP_PARSE_INCOMPLETE;
    while (status == BAL_HTTP_PARSE_INCOMPLETE && fed < size) {
        fed = fed + FUZZ_PIECE_BYTES < size ? fed + FUZZ_PIECE_BYTES : size;
        size_t before = scan;
        status = bal_http_parse_head(text, fed, FUZZ_HEAD_BYTES_MAX, &scan, head);
        if (scan > fed) abort();
        if (status == BAL_HTTP_PARSE_INCOMPLETE && scan < before) abort();
    }
    return status;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static bal_http_head whole;
    static bal_http_head pieces;
    const char *text = (const char *)data;
    size_t scan = 0;
    bal_http_parse_status status = bal_http_parse_head(text, size, FUZZ_HEAD_BYTES_MAX, &scan, &whole);
    if (scan > size) abort();
    if (status == BAL_HTTP_PARSE_COMPLETE) {
        fuzz_check_complete(text, size, &whole);
        /* Parsing the same head again from the returned offset gives the same head. */
        size_t again_scan = scan;
        if (bal_http_parse_head(text, size, FUZZ_HEAD_BYTES_MAX, &again_scan, &pieces) != status) abort();
        if (pieces.head_length != whole.head_length) abort();
    } else if (status != BAL_HTTP_PARSE_INCOMPLETE) {
        if (whole.error == NULL) abort();
    }
    bal_http_parse_status piecewise = fuzz_parse_in_pieces(text, size, &pieces);
    if (piecewise != status) abort();
    if (status == BAL_HTTP_PARSE_COMPLETE) {
        if (pieces.head_length != whole.head_length || pieces.header_count != whole.header_count) abort();
        if (pieces.content_length != whole.content_length || pieces.keep_alive != whole.keep_alive) abort();
    }
    return 0;
}
