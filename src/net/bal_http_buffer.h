/*
 * bal_http_buffer.h -- a growable byte buffer for connection input and output.
 *
 * The buffer only grows when asked to and reports allocation failure to the caller, who
 * decides what a failure means (503, close). Bounds are the caller's: the server checks
 * every size against its configured limits before it asks for room.
 */
#ifndef BAL_HTTP_BUFFER_H
#define BAL_HTTP_BUFFER_H

#include <stdbool.h>
#include <stddef.h>

typedef struct bal_http_buffer {
    char *data;
    size_t length;   /* bytes in use, from data[0] */
    size_t capacity; /* bytes allocated */
} bal_http_buffer;

/* Makes capacity at least `capacity` bytes, keeping the content. False if out of memory. */
bool bal_http_buffer_reserve(bal_http_buffer *buffer, size_t capacity);
/* Appends bytes, growing geometrically. False if out of memory (nothing appended then). */
bool bal_http_buffer_append(bal_http_buffer *buffer, const void *data, size_t length);
/* Drops the first `count` bytes, moving the rest to the front. */
void bal_http_buffer_consume(bal_http_buffer *buffer, size_t count);
/* Frees the memory; the buffer is empty and reusable afterwards. */
void bal_http_buffer_free(bal_http_buffer *buffer);

#endif
