/*
 * bal_loadgen_response.h -- frames HTTP/1.1 responses for the load generator.
 *
 * Pure and allocation-free: given the bytes received so far, says whether a complete
 * response is at the front, how long it is, its status, and whether the server will close
 * the connection after it. Bodies must be framed by Content-Length (every server we load
 * sends it); chunked or close-delimited responses are reported as unsupported.
 */
#ifndef BAL_LOADGEN_RESPONSE_H
#define BAL_LOADGEN_RESPONSE_H

#include <stdbool.h>
#include <stddef.h>

/* A response head longer than this is treated as garbage. */
#define BAL_LOADGEN_RESPONSE_HEAD_MAX (64u * 1024u)

typedef enum bal_loadgen_response_status {
    BAL_LOADGEN_RESPONSE_COMPLETE = 0,
    BAL_LOADGEN_RESPONSE_INCOMPLETE,
    BAL_LOADGEN_RESPONSE_INVALID,     /* not HTTP/1.x, or a head too large */
    BAL_LOADGEN_RESPONSE_UNSUPPORTED, /* chunked or without Content-Length */
} bal_loadgen_response_status;

typedef struct bal_loadgen_response {
    int status;          /* 100..599; 1xx are interim and carry no body */
    size_t total_length; /* head + body */
    bool close;          /* "Connection: close" */
} bal_loadgen_response;

bal_loadgen_response_status bal_loadgen_response_parse(const char *data, size_t length,
                                                       bal_loadgen_response *response);

#endif
