/*
 * bal_text.h -- a growable text buffer for rendering responses.
 *
 * Appends never fail silently: once an allocation fails or the buffer would pass its
 * limit, the buffer is marked failed, further appends are ignored, and the caller checks
 * bal_text_failed() once at the end (and answers 500). Allocation happens on the response
 * path only, never in the core.
 */
#ifndef BAL_TEXT_H
#define BAL_TEXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "bal_money.h"

typedef struct bal_text {
    char *data;
    size_t length;
    size_t capacity;
    size_t limit;       /* the most bytes this buffer may hold */
    bool failed;
    bool borrowed;      /* data is the caller's buffer: copy out on growth, never free */
} bal_text;

void bal_text_init(bal_text *text, size_t limit);
/* Starts in the caller's buffer (e.g. on the stack); moves to the heap if it grows. */
void bal_text_init_with(bal_text *text, char *buffer, size_t capacity, size_t limit);
void bal_text_free(bal_text *text);
void bal_text_reset(bal_text *text);
bool bal_text_failed(const bal_text *text);

void bal_text_append(bal_text *text, const char *bytes, size_t length);
void bal_text_cstr(bal_text *text, const char *string);
void bal_text_u64(bal_text *text, uint64_t value);
void bal_text_i64(bal_text *text, int64_t value);
/* An amount as a JSON string in canonical form: "100.5". */
void bal_text_amount(bal_text *text, bal_amount amount);
/* A JSON string with escaping (quotes, backslash, control characters; UTF-8 kept). */
void bal_text_json_string(bal_text *text, const char *bytes, size_t length);

#endif
