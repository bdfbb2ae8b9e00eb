/*
 * bal_http_response.c -- formats HTTP/1.1 response messages (see bal_http_response.h).
 *
 * The Date header is required of an origin server with a clock (RFC 9110 section 6.6.1);
 * each thread keeps its text and rebuilds it only when the second changes.
 */
#include "bal_http_response.h"

#include <assert.h>
#include <string.h>
#include <time.h>

/* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
#define BAL_HTTP_DATE_LINE_LENGTH 37
/* Content-Length digits: a size_t has at most 20. */
#define BAL_HTTP_DECIMAL_DIGITS_MAX 20

static __thread time_t bal_http_date_second = -1;
static __thread char bal_http_date_line[BAL_HTTP_DATE_LINE_LENGTH + 1];

const char *bal_http_reason_phrase(int status) {
    switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 304: return "Not Modified";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    default: return "Unknown";
    }
}

static void bal_http_two_digits(char *out, int value) {
    assert(value >= 0 && value < 100);
    out[0] = (char)('0' + value / 10);
    out[1] = (char)('0' + value % 10);
}

static const char *bal_http_date(void) {
    static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    time_t now = time(NULL);
    if (now == bal_http_date_second) return bal_http_date_line;
    struct tm utc;
    gmtime_r(&now, &utc);
    char *line = bal_http_date_line;
    memcpy(line, "Date: ", 6);
    memcpy(line + 6, days[utc.tm_wday % 7], 3);
    memcpy(line + 9, ", ", 2);
    bal_http_two_digits(line + 11, utc.tm_mday);
    line[13] = ' ';
    memcpy(line + 14, months[utc.tm_mon % 12], 3);
    line[17] = ' ';
    int year = (utc.tm_year + 1900) % 10000;
    bal_http_two_digits(line + 18, year / 100);
    bal_http_two_digits(line + 20, year % 100);
    line[22] = ' ';
    bal_http_two_digits(line + 23, utc.tm_hour);
    line[25] = ':';
    bal_http_two_digits(line + 26, utc.tm_min);
    line[28] = ':';
    bal_http_two_digits(line + 29, utc.tm_sec % 60);
    memcpy(line + 31, " GMT\r\n", 6);
    line[BAL_HTTP_DATE_LINE_LENGTH] = '\0';
    bal_http_date_second = now;
    return line;
}

/* Writes value in decimal at out; returns the number of digits. */
static size_t bal_http_decimal(char *out, size_t value) {
    char digits[BAL_HTTP_DECIMAL_DIGITS_MAX];
    size_t count = 0;
    do {
        digits[count++] = (char)('0' + value % 10);
        value /= 10;
    } while (value != 0);
    for (size_t i = 0; i < count; i++) out[i] = digits[count - 1 - i];
    return count;
}

static size_t bal_http_decimal_length(size_t value) {
    size_t count = 1;
    while (value >= 10) {
        value /= 10;
        count++;
    }
    return count;
}

/* 1xx, 204 and 304 responses have neither Content-Length nor body (RFC 9110 8.6). */
static bool bal_http_status_has_body(int status) {
    return !(status < 200 || status == 204 || status == 304);
}

size_t bal_http_response_size(const bal_http_response_parts *parts) {
    assert(parts != NULL);
    assert(parts->status >= 100 && parts->status <= 599);
    size_t size = strlen("HTTP/1.1 000 ") + strlen(bal_http_reason_phrase(parts->status)) + 2;
    if (parts->content_type != NULL) size += strlen("Content-Type: ") + strlen(parts->content_type) + 2;
    if (bal_http_status_has_body(parts->status)) {
        size += strlen("Content-Length: ") + bal_http_decimal_length(parts->body_length) + 2;
    }
    size += BAL_HTTP_DATE_LINE_LENGTH;
    if (parts->extra_headers != NULL) size += strlen(parts->extra_headers);
    if (parts->connection_close) size += strlen("Connection: close\r\n");
    if (parts->connection_keep_alive) size += strlen("Connection: keep-alive\r\n");
    size += 2;
    if (!parts->omit_body) size += parts->body_length;
    return size;
}

static char *bal_http_put(char *out, const char *text, size_t length) {
    memcpy(out, text, length);
    return out + length;
}

#define BAL_HTTP_PUT_LITERAL(out, literal) bal_http_put((out), (literal), sizeof(literal) - 1)

static char *bal_http_put_head(char *out, const bal_http_response_parts *parts) {
    out = BAL_HTTP_PUT_LITERAL(out, "HTTP/1.1 ");
    out += bal_http_decimal(out, (size_t)parts->status);
    *out++ = ' ';
    const char *reason = bal_http_reason_phrase(parts->status);
    out = bal_http_put(out, reason, strlen(reason));
    out = BAL_HTTP_PUT_LITERAL(out, "\r\n");
    if (parts->content_type != NULL) {
        out = BAL_HTTP_PUT_LITERAL(out, "Content-Type: ");
        out = bal_http_put(out, parts->content_type, strlen(parts->content_type));
        out = BAL_HTTP_PUT_LITERAL(out, "\r\n");
    }
    if (bal_http_status_has_body(parts->status)) {
        out = BAL_HTTP_PUT_LITERAL(out, "Content-Length: ");
        out += bal_http_decimal(out, parts->body_length);
        out = BAL_HTTP_PUT_LITERAL(out, "\r\n");
    }
    out = bal_http_put(out, bal_http_date(), BAL_HTTP_DATE_LINE_LENGTH);
    if (parts->extra_headers != NULL) {
        out = bal_http_put(out, parts->extra_headers, strlen(parts->extra_headers));
    }
    if (parts->connection_close) out = BAL_HTTP_PUT_LITERAL(out, "Connection: close\r\n");
    if (parts->connection_keep_alive) out = BAL_HTTP_PUT_LITERAL(out, "Connection: keep-alive\r\n");
    return BAL_HTTP_PUT_LITERAL(out, "\r\n");
}

bool bal_http_response_append(bal_http_buffer *buffer, const bal_http_response_parts *parts) {
    assert(buffer != NULL && parts != NULL);
    assert(parts->body != NULL || parts->body_length == 0);
    assert(bal_http_status_has_body(parts->status) || parts->body_length == 0);
    assert(!(parts->connection_close && parts->connection_keep_alive));
    if (parts->extra_headers != NULL) {
        size_t extra_length = strlen(parts->extra_headers);
        assert(extra_length == 0 || (extra_length >= 2 &&
                                     memcmp(parts->extra_headers + extra_length - 2, "\r\n", 2) == 0));
        (void)extra_length;
    }
    size_t size = bal_http_response_size(parts);
    if (!bal_http_buffer_reserve(buffer, buffer->length + size)) return false;
    char *start = buffer->data + buffer->length;
    char *out = bal_http_put_head(start, parts);
    if (!parts->omit_body && parts->body_length > 0) out = bal_http_put(out, parts->body, parts->body_length);
    assert((size_t)(out - start) == size);
    buffer->length += size;
    return true;
}

size_t bal_http_error_body(char *out, size_t size, const char *code, const char *message) {
    assert(out != NULL && code != NULL && message != NULL);
    assert(strpbrk(code, "\"\\") == NULL && strpbrk(message, "\"\\") == NULL);
    size_t code_length = strlen(code);
    size_t message_length = strlen(message);
    size_t length = strlen("{\"error\":\"\",\"message\":\"\"}") + code_length + message_length;
    assert(length < size);
    char *cursor = out;
    cursor = BAL_HTTP_PUT_LITERAL(cursor, "{\"error\":\"");
    cursor = bal_http_put(cursor, code, code_length);
    cursor = BAL_HTTP_PUT_LITERAL(cursor, "\",\"message\":\"");
    cursor = bal_http_put(cursor, message, message_length);
    cursor = BAL_HTTP_PUT_LITERAL(cursor, "\"}");
    *cursor = '\0';
    assert((size_t)(cursor - out) == length);
    return length;
}
