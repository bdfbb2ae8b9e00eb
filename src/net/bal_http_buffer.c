/*
 * bal_http_buffer.c -- a growable byte buffer (see bal_http_buffer.h).
 */
#include "bal_http_buffer.h"

#include <assert.h>
#include <stdlib.h>
#include <string.h>

/* Small buffers grow to at least this, so a few appends do not each reallocate. */
#define BAL_HTTP_BUFFER_CAPACITY_MIN 1024u

bool bal_http_buffer_reserve(bal_http_buffer *buffer, size_t capacity) {
    assert(buffer != NULL);
    assert(buffer->length <= buffer->capacity);
    if (capacity <= buffer->capacity) return true;
    char *data = realloc(buffer->data, capacity);
    if (data == NULL) return false;
    buffer->data = data;
    buffer->capacity = capacity;
    return true;
}

bool bal_http_buffer_append(bal_http_buffer *buffer, const void *data, size_t length) {
    assert(buffer != NULL);
    assert(data != NULL || length == 0);
    if (length == 0) return true;
    size_t needed = buffer->length + length;
    assert(needed > buffer->length); /* no overflow: lengths are bounded far below SIZE_MAX */
    if (needed > buffer->capacity) {
        size_t capacity = buffer->capacity * 2;
        if (capacity < BAL_HTTP_BUFFER_CAPACITY_MIN) capacity = BAL_HTTP_BUFFER_CAPACITY_MIN;
        if (capacity < needed) capacity = needed;
        if (!bal_http_buffer_reserve(buffer, capacity)) return false;
    }
    memcpy(buffer->data + buffer->length, data, length);
    buffer->length = needed;
    return true;
}

void bal_http_buffer_consume(bal_http_buffer *buffer, size_t count) {
    assert(buffer != NULL);
    assert(count <= buffer->length);
    if (count == 0) return;
    size_t rest = buffer->length - count;
    if (rest > 0) memmove(buffer->data, buffer->data + count, rest);
    buffer->length = rest;
}

void bal_http_buffer_free(bal_http_buffer *buffer) {
    assert(buffer != NULL);
    free(buffer->data);
    buffer->data = NULL;
    buffer->length = 0;
    buffer->capacity = 0;
}
