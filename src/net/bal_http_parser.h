/*
 * bal_http_parser.h -- a pure HTTP/1.x request head parser.
 *
 * The parser reads the request line and the header fields of one request from a byte
 * buffer and fills a bal_http_head with pointers into that buffer: it allocates nothing,
 * copies nothing, keeps no state between calls and has no side effects, so it can be
 * fuzzed and tested in isolation. It also derives the message framing (Content-Length,
 * keep-alive, Expect: 100-continue) and refuses what the server does not implement
 * (request bodies with Transfer-Encoding, obsolete line folding, bare LF line ends).
 *
 * Incremental use: a server that receives the head in pieces passes the same scan offset
 * back on every call, so the search for the end of the head never rescans bytes it has
 * already seen (a client dribbling one byte at a time costs O(n), not O(n^2)).
 */
#ifndef BAL_HTTP_PARSER_H
#define BAL_HTTP_PARSER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Header fields per request. More gets 431: our clients send about ten. */
#define BAL_HTTP_HEADERS_MAX 64
/* A method longer than this is not one we could route; refused as malformed. */
#define BAL_HTTP_METHOD_LENGTH_MAX 16
/* Content-Length digits: 19 decimal digits always fit in 64 bits. */
#define BAL_HTTP_CONTENT_LENGTH_DIGITS_MAX 19

typedef enum bal_http_method {
    BAL_HTTP_METHOD_OTHER = 0, /* a syntactically valid method we do not name */
    BAL_HTTP_METHOD_GET,
    BAL_HTTP_METHOD_HEAD,
    BAL_HTTP_METHOD_POST,
    BAL_HTTP_METHOD_PUT,
    BAL_HTTP_METHOD_DELETE,
    BAL_HTTP_METHOD_OPTIONS,
    BAL_HTTP_METHOD_PATCH,
} bal_http_method;

typedef enum bal_http_parse_status {
    BAL_HTTP_PARSE_COMPLETE = 0,          /* the head is complete and valid */
    BAL_HTTP_PARSE_INCOMPLETE,            /* more bytes are needed */
    BAL_HTTP_PARSE_INVALID,               /* malformed: 400 */
    BAL_HTTP_PARSE_HEAD_TOO_LARGE,        /* head longer than the limit: 431 */
    BAL_HTTP_PARSE_TOO_MANY_HEADERS,      /* more than BAL_HTTP_HEADERS_MAX fields: 431 */
    BAL_HTTP_PARSE_VERSION_UNSUPPORTED,   /* HTTP/2.0, HTTP/1.2, ...: 505 */
    BAL_HTTP_PARSE_LENGTH_REQUIRED,       /* chunked request body: 411 */
    BAL_HTTP_PARSE_CODING_UNSUPPORTED,    /* another transfer coding: 501 */
} bal_http_parse_status;

typedef struct bal_http_header {
    const char *name; /* as sent; compare case-insensitively */
    size_t name_length;
    const char *value; /* leading and trailing white space removed */
    size_t value_length;
} bal_http_header;

typedef struct bal_http_head {
    bal_http_method method;
    const char *method_text;
    size_t method_length;
    const char *target; /* the request target as sent */
    size_t target_length;
    const char *path; /* the target up to '?' (absolute-form: the path part only) */
    size_t path_length;
    const char *query; /* after '?', without it; NULL when there is no '?' */
    size_t query_length;
    uint8_t version_minor; /* HTTP/1.<minor>: 0 or 1 */
    bool keep_alive;       /* from the version and the Connection header */
    bool has_content_length;
    bool expect_continue; /* Expect: 100-continue */
    uint64_t content_length; /* 0 when absent */
    size_t head_length;      /* bytes from the start of the buffer to the body */
    size_t header_count;
    bal_http_header headers[BAL_HTTP_HEADERS_MAX];
    const char *error; /* a static sentence saying what is wrong, when not COMPLETE */
} bal_http_head;

/*
 * Parses one request head at the start of data[0..length).
 *   head_bytes_max: a head (request line + fields + blank line) longer than this is refused.
 *   scan_offset: in/out; set it to 0 for a new request and hand it back unchanged on the
 *   next call with more bytes of the same request. While INCOMPLETE it only advances, never
 *   past length;
 *   after COMPLETE it rests just before the end of the head, so a second parse of the same
 *   head (the body was still arriving) is cheap and gives the same result.
 * Returns COMPLETE with *head filled, INCOMPLETE, or an error with head->error set.
 * Leading empty lines before the request line are skipped (RFC 9112 section 2.2).
 */
bal_http_parse_status bal_http_parse_head(const char *data, size_t length, size_t head_bytes_max,
                                          size_t *scan_offset, bal_http_head *head);

/* Finds a header by name (case-insensitive); the first one wins. Returns false if absent. */
bool bal_http_head_find(const bal_http_head *head, const char *name, const char **value,
                        size_t *value_length);

/* What bal_http_head_find_all found for one name: the first such header's value and how
 * many headers have that name (0: value is NULL). */
typedef struct bal_http_field {
    const char *value;
    size_t length;
    uint32_t count;
} bal_http_field;

/* Looks up several names in one pass over the headers. names[i] are lower-case letters and
 * '-' only, each 1 to BAL_HTTP_FIELD_NAME_MAX long, count at most BAL_HTTP_FIELD_NAMES_MAX;
 * fields[i] receives what was found for names[i] (matched case-insensitively). */
#define BAL_HTTP_FIELD_NAME_MAX 32
#define BAL_HTTP_FIELD_NAMES_MAX 8 /* names per call */
void bal_http_head_find_all(const bal_http_head *head, const char *const *names, size_t count,
                            bal_http_field *fields);

/* Compares a byte range with a NUL-terminated string, ignoring ASCII case. */
bool bal_http_equals_ignore_case(const char *data, size_t length, const char *text);

const char *bal_http_parse_status_string(bal_http_parse_status status);
const char *bal_http_method_string(bal_http_method method);

#endif
