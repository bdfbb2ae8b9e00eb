/*
 * bal_json.h -- a strict, allocation-free JSON tokenizer for request bodies.
 *
 * Parses RFC 8259 JSON into a caller-provided array of tokens (objects, arrays, strings,
 * numbers, literals), each pointing into the input: nothing is copied or allocated. Limits:
 * the token array's size and BAL_JSON_DEPTH_MAX nesting. Strings are validated (escapes,
 * no control characters, well-formed UTF-8) but not unescaped; bal_json_string_copy does
 * that on demand. Duplicate keys are the decoder's business (it rejects them).
 */
#ifndef BAL_JSON_H
#define BAL_JSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define BAL_JSON_DEPTH_MAX 16

typedef enum bal_json_type {
    BAL_JSON_OBJECT = 1,
    BAL_JSON_ARRAY,
    BAL_JSON_STRING,    /* start/length exclude the quotes */
    BAL_JSON_NUMBER,
    BAL_JSON_TRUE,
    BAL_JSON_FALSE,
    BAL_JSON_NULL,
} bal_json_type;

typedef struct bal_json_token {
    uint32_t start;     /* byte offset into the input */
    uint32_t length;
    uint32_t size;      /* objects: member count; arrays: element count */
    uint32_t next;      /* index of the token after this one's whole subtree */
    uint8_t type;       /* bal_json_type */
    uint8_t escaped;    /* strings: contains a backslash escape */
} bal_json_token;

typedef enum bal_json_status {
    BAL_JSON_OK = 0,
    BAL_JSON_SYNTAX,
    BAL_JSON_TOO_DEEP,
    BAL_JSON_TOO_MANY_TOKENS,
    BAL_JSON_TOO_LARGE,
} bal_json_status;

/* Tokenizes text. On success, tokens[0] is the root and *count_out the number used. On
 * failure, *error_offset_out tells where. Input larger than UINT32_MAX is refused. */
bal_json_status bal_json_parse(const char *text, size_t length, bal_json_token *tokens,
                               uint32_t token_max, uint32_t *count_out, size_t *error_offset_out);

/* Unescapes a string token into buffer (no NUL added). Returns false if it does not fit. */
bool bal_json_string_copy(const char *text, const bal_json_token *token, char *buffer,
                          size_t buffer_size, size_t *length_out);

/* True if a string token equals a plain (escape-free) key. */
bool bal_json_string_equals(const char *text, const bal_json_token *token, const char *key);

const char *bal_json_status_name(bal_json_status status);

#endif
