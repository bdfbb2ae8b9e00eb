/*
 * bal_loadgen_response.c -- frames HTTP/1.1 responses (see bal_loadgen_response.h).
 */
#include "bal_loadgen_response.h"

#include <assert.h>
#include <string.h>
#include <strings.h>

/* Content-Length digits that always fit in 64 bits. */
#define BAL_LOADGEN_LENGTH_DIGITS_MAX 18

static bool bal_loadgen_header_is(const char *line, size_t length, const char *name,
                                  const char **value, size_t *value_length) {
    size_t name_length = strlen(name);
    if (length <= name_length || line[name_length] != ':') return false;
    if (strncasecmp(line, name, name_length) != 0) return false;
    size_t start = name_length + 1;
    while (start < length && (line[start] == ' ' || line[start] == '\t')) start++;
    size_t end = length;
    while (end > start && (line[end - 1] == ' ' || line[end - 1] == '\t')) end--;
    *value = line + start;
    *value_length = end - start;
    return true;
}

static bool bal_loadgen_parse_length(const char *value, size_t length, size_t *out) {
    if (length == 0 || length > BAL_LOADGEN_LENGTH_DIGITS_MAX) return false;
    size_t number = 0;
    for (size_t i = 0; i < length; i++) {
        if (value[i] < '0' || value[i] > '9') return false;
        number = number * 10 + (size_t)(value[i] - '0');
    }
    *out = number;
    return true;
}

static bool bal_loadgen_parse_status_line(const char *data, size_t length, int *status) {
    /* "HTTP/1.x NNN" at least. */
    if (length < 12 || memcmp(data, "HTTP/1.", 7) != 0 || data[8] != ' ') return false;
    int value = 0;
    for (int i = 9; i < 12; i++) {
        if (data[i] < '0' || data[i] > '9') return false;
        value = value * 10 + (data[i] - '0');
    }
    if (value < 100 || value > 599) return false;
    *status = value;
    return true;
}

bal_loadgen_response_status bal_loadgen_response_parse(const char *data, size_t length,
                                                       bal_loadgen_response *response) {
    assert(data != NULL || length == 0);
    assert(response != NULL);
    memset(response, 0, sizeof *response);
    size_t window = length < BAL_LOADGEN_RESPONSE_HEAD_MAX ? length : BAL_LOADGEN_RESPONSE_HEAD_MAX;
    const char *end = memmem(data, window, "\r\n\r\n", 4);
    if (end == NULL) {
        return length >= BAL_LOADGEN_RESPONSE_HEAD_MAX ? BAL_LOADGEN_RESPONSE_INVALID
                                                       : BAL_LOADGEN_RESPONSE_INCOMPLETE;
    }
    size_t head_length = (size_t)(end - data) + 4;
    if (!bal_loadgen_parse_status_line(data, head_length, &response->status)) return BAL_LOADGEN_RESPONSE_INVALID;
    bool has_length = false;
    bool chunked = false;
    size_t body_length = 0;
    const char *line = memchr(data, '\n', head_length) + 1;
    while (line < data + head_length - 2) {
        const char *line_end = memchr(line, '\n', (size_t)(data + head_length - line));
        size_t line_length = (size_t)(line_end - line) - (line_end > line && line_end[-1] == '\r' ? 1 : 0);
        const char *value = NULL;
        size_t value_length = 0;
        if (bal_loadgen_header_is(line, line_length, "Content-Length", &value, &value_length)) {
            if (!bal_loadgen_parse_length(value, value_length, &body_length)) return BAL_LOADGEN_RESPONSE_INVALID;
            has_length = true;
        } else if (bal_loadgen_header_is(line, line_length, "Transfer-Encoding", &value, &value_length)) {
            chunked = true;
        } else if (bal_loadgen_header_is(line, line_length, "Connection", &value, &value_length)) {
            response->close = value_length == 5 && strncasecmp(value, "close", 5) == 0;
        }
        line = line_end + 1;
    }
    bool bodyless = response->status < 200 || response->status == 204 || response->status == 304;
    if (bodyless) body_length = 0;
    else if (chunked || !has_length) return BAL_LOADGEN_RESPONSE_UNSUPPORTED;
    response->total_length = head_length + body_length;
    return length >= response->total_length ? BAL_LOADGEN_RESPONSE_COMPLETE : BAL_LOADGEN_RESPONSE_INCOMPLETE;
}
