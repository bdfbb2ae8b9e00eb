/*
 * bal_http_response.h -- formats HTTP/1.1 response messages.
 *
 * Used by the server on the I/O thread (answers written straight into the connection's
 * output) and on whatever thread answers a deferred request. Formatting is by hand, not
 * printf: it runs once per response at hundreds of thousands of responses a second.
 */
#ifndef BAL_HTTP_RESPONSE_H
#define BAL_HTTP_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

#include "bal_http_buffer.h"

typedef struct bal_http_response_parts {
    int status;                /* 100 .. 599 */
    const char *content_type;  /* NULL: no Content-Type */
    const char *extra_headers; /* NULL or lines each ending in CRLF */
    const char *body;
    size_t body_length;
    bool omit_body;            /* a response to HEAD: Content-Length is sent, the body is not */
    bool connection_close;     /* "Connection: close" */
    bool connection_keep_alive; /* "Connection: keep-alive" (HTTP/1.0 clients that asked) */
} bal_http_response_parts;

/* The standard reason phrase, or "Unknown". */
const char *bal_http_reason_phrase(int status);
/* The exact size of the formatted message. */
size_t bal_http_response_size(const bal_http_response_parts *parts);
/* Appends the formatted message; false if out of memory (the buffer is unchanged then). */
bool bal_http_response_append(bal_http_buffer *buffer, const bal_http_response_parts *parts);
/* Formats a JSON error body {"error":"<code>","message":"<message>"} into out[0..size).
 * Returns its length; code and message must need no JSON escaping and must fit. */
size_t bal_http_error_body(char *out, size_t size, const char *code, const char *message);

#endif
