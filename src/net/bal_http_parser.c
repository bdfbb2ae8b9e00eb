/*
 * bal_http_parser.c -- a pure HTTP/1.x request head parser (see bal_http_parser.h).
 *
 * The grammar is RFC 9112's, read strictly where leniency is a known source of request
 * smuggling: CRLF line ends only, no white space before the colon, no obsolete line
 * folding, one Host, Content-Length and Transfer-Encoding never together, Content-Length
 * digits only. The parse runs in two passes: first find the end of the head (cheap, and
 * resumable through the scan offset), then parse the complete head line by line. Garbage
 * in the method (a TLS handshake, binary noise) is refused as soon as it arrives instead of
 * waiting for a line end that may never come.
 */
#include "bal_http_parser.h"

#include <assert.h>
#include <string.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

static const char bal_http_root_path[] = "/";

/* Character classes, one table lookup per byte: parsing is most of a pipelined request's
 * CPU time. */
enum {
    BAL_HTTP_TCHAR = 1,  /* token characters (RFC 9110 5.6.2): methods, field names */
    BAL_HTTP_VALUE = 2,  /* field value characters: VCHAR, SP, HTAB, obs-text */
    BAL_HTTP_TARGET = 4, /* request target characters: visible ASCII */
};

#define BAL_HTTP_TOKEN_AND_MORE (BAL_HTTP_TCHAR | BAL_HTTP_VALUE | BAL_HTTP_TARGET)
#define BAL_HTTP_VISIBLE (BAL_HTTP_VALUE | BAL_HTTP_TARGET)

#define T BAL_HTTP_TOKEN_AND_MORE
#define V BAL_HTTP_VISIBLE
static const unsigned char bal_http_class[256] = {
    ['\t'] = BAL_HTTP_VALUE, [' '] = BAL_HTTP_VALUE,
    ['!'] = T, ['"'] = V, ['#' ... '\''] = T, ['('] = V, [')'] = V, ['*'] = T, ['+'] = T,
    [','] = V, ['-'] = T, ['.'] = T, ['/'] = V, ['0' ... '9'] = T, [':' ... '@'] = V,
    ['A' ... 'Z'] = T, ['['] = V, ['\\'] = V, [']'] = V, ['^' ... 'z'] = T, ['{'] = V,
    ['|'] = T, ['}'] = V, ['~'] = T, [0x80 ... 0xff] = BAL_HTTP_VALUE,
};
#undef T
#undef V

static bool bal_http_is_tchar(unsigned char c) {
    return (bal_http_class[c] & BAL_HTTP_TCHAR) != 0;
}

static bool bal_http_is_field_value_char(unsigned char c) {
    return (bal_http_class[c] & BAL_HTTP_VALUE) != 0;
}

/* True if every byte of value[0..length) is a field value character: all but the controls
 * other than HTAB (0x00-0x08, 0x0a-0x1f) and DEL (0x7f). Values are most of a signed
 * request's head (a signature alone is 64 characters), so 16 bytes are checked at a time. */
static bool bal_http_field_value_valid(const char *value, size_t length) {
    size_t i = 0;
#if defined(__SSE2__)
    const __m128i control_max = _mm_set1_epi8(0x1f), tab = _mm_set1_epi8('\t'), del = _mm_set1_epi8(0x7f);
    for (; i + 16 <= length; i += 16) {
        __m128i bytes = _mm_loadu_si128((const __m128i *)(value + i));
        __m128i control = _mm_cmpeq_epi8(_mm_min_epu8(bytes, control_max), bytes); /* <= 0x1f, unsigned */
        __m128i bad = _mm_or_si128(_mm_andnot_si128(_mm_cmpeq_epi8(bytes, tab), control), _mm_cmpeq_epi8(bytes, del));
        if (_mm_movemask_epi8(bad) != 0) return false;
    }
#endif
    for (; i < length; i++) {
        if (!bal_http_is_field_value_char((unsigned char)value[i])) return false;
    }
    return true;
}

/* A field name (token characters only) against a lower-case name of letters and '-':
 * setting bit 0x20 lower-cases a letter and leaves '-' alone, and no other token character
 * turns into a letter or '-' that way. */
static bool bal_http_name_is(const char *name, const char *lower, size_t length) {
    for (size_t i = 0; i < length; i++) {
        if (((unsigned char)name[i] | 0x20) != (unsigned char)lower[i]) return false;
    }
    return true;
}

static unsigned char bal_http_lower(unsigned char c) {
    return (c >= 'A' && c <= 'Z') ? (unsigned char)(c + ('a' - 'A')) : c;
}

bool bal_http_equals_ignore_case(const char *data, size_t length, const char *text) {
    assert(data != NULL || length == 0);
    assert(text != NULL);
    for (size_t i = 0; i < length; i++) {
        if (text[i] == '\0') return false;
        if (bal_http_lower((unsigned char)data[i]) != bal_http_lower((unsigned char)text[i])) {
            return false;
        }
    }
    return text[length] == '\0';
}

bool bal_http_head_find(const bal_http_head *head, const char *name, const char **value,
                        size_t *value_length) {
    assert(head != NULL && name != NULL);
    assert(value != NULL && value_length != NULL);
    assert(head->header_count <= BAL_HTTP_HEADERS_MAX);
    for (size_t i = 0; i < head->header_count; i++) {
        const bal_http_header *header = &head->headers[i];
        if (bal_http_equals_ignore_case(header->name, header->name_length, name)) {
            *value = header->value;
            *value_length = header->value_length;
            return true;
        }
    }
    *value = NULL;
    *value_length = 0;
    return false;
}

void bal_http_head_find_all(const bal_http_head *head, const char *const *names, size_t count,
                            bal_http_field *fields) {
    assert(head != NULL && (names != NULL || count == 0) && (fields != NULL || count == 0));
    assert(head->header_count <= BAL_HTTP_HEADERS_MAX);
    uint8_t lengths[BAL_HTTP_FIELD_NAMES_MAX];
    assert(count <= BAL_HTTP_FIELD_NAMES_MAX);
    for (size_t n = 0; n < count; n++) {
        size_t length = strlen(names[n]);
        assert(length >= 1 && length <= BAL_HTTP_FIELD_NAME_MAX);
        lengths[n] = (uint8_t)length;
        fields[n] = (bal_http_field){.value = NULL, .length = 0, .count = 0};
    }
    /* A length compare rules out almost every pair; the names compare only when it matches. */
    for (size_t i = 0; i < head->header_count; i++) {
        const bal_http_header *header = &head->headers[i];
        for (size_t n = 0; n < count; n++) {
            if (header->name_length != lengths[n] || !bal_http_name_is(header->name, names[n], lengths[n])) continue;
            if (fields[n].count++ == 0) {
                fields[n].value = header->value;
                fields[n].length = header->value_length;
            }
        }
    }
}

static bal_http_parse_status bal_http_fail(bal_http_head *head, bal_http_parse_status status,
                                           const char *error) {
    assert(status != BAL_HTTP_PARSE_COMPLETE && status != BAL_HTTP_PARSE_INCOMPLETE);
    assert(error != NULL);
    head->error = error;
    return status;
}

/* Skips the empty lines a client may send before the request line. */
static size_t bal_http_skip_leading_lines(const char *data, size_t length) {
    size_t start = 0;
    while (start + 1 < length && data[start] == '\r' && data[start + 1] == '\n') start += 2;
    return start;
}

/* Refuses a request whose method is not a token before the whole line has arrived. */
static bool bal_http_method_prefix_valid(const char *data, size_t length) {
    size_t limit = length < BAL_HTTP_METHOD_LENGTH_MAX + 1 ? length : BAL_HTTP_METHOD_LENGTH_MAX + 1;
    for (size_t i = 0; i < limit; i++) {
        unsigned char c = (unsigned char)data[i];
        if (c == ' ') return i > 0;
        if (!bal_http_is_tchar(c)) {
            /* "\r" is only fine as the start of a leading empty line still arriving. */
            return c == '\r' && i == 0 && length == 1;
        }
    }
    return length <= BAL_HTTP_METHOD_LENGTH_MAX;
}

/*
 * Finds the blank line ending the head. Returns COMPLETE with *head_length, INCOMPLETE,
 * INVALID (bare LF) or HEAD_TOO_LARGE. Only bytes from *scan_offset on are searched.
 */
static bal_http_parse_status bal_http_find_end(const char *data, size_t length, size_t line_start,
                                               size_t head_bytes_max, size_t *scan_offset,
                                               bal_http_head *head) {
    size_t limit = length < head_bytes_max ? length : head_bytes_max;
    size_t position = *scan_offset > line_start ? *scan_offset : line_start;
    while (position < limit) {
        const char *newline = memchr(data + position, '\n', limit - position);
        if (newline == NULL) {
            position = limit;
            break;
        }
        size_t index = (size_t)(newline - data);
        if (index == 0 || data[index - 1] != '\r') {
            return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "line ends with a bare LF");
        }
        if (index >= line_start + 3 && data[index - 2] == '\n' && data[index - 3] == '\r') {
            head->head_length = index + 1;
            /* Left on the final CR, so parsing the same head again finds its end at once. */
            *scan_offset = index - 1;
            return BAL_HTTP_PARSE_COMPLETE;
        }
        position = index + 1;
    }
    assert(position <= length);
    *scan_offset = position;
    if (length >= head_bytes_max) {
        return bal_http_fail(head, BAL_HTTP_PARSE_HEAD_TOO_LARGE, "request head too large");
    }
    return BAL_HTTP_PARSE_INCOMPLETE;
}

static bal_http_method bal_http_method_from_text(const char *text, size_t length) {
    static const struct {
        const char *name;
        bal_http_method method;
    } methods[] = {
        {"GET", BAL_HTTP_METHOD_GET},         {"HEAD", BAL_HTTP_METHOD_HEAD},
        {"POST", BAL_HTTP_METHOD_POST},       {"PUT", BAL_HTTP_METHOD_PUT},
        {"DELETE", BAL_HTTP_METHOD_DELETE},   {"OPTIONS", BAL_HTTP_METHOD_OPTIONS},
        {"PATCH", BAL_HTTP_METHOD_PATCH},
    };
    /* Methods are case-sensitive (RFC 9110 section 9.1): "get" is another method. */
    for (size_t i = 0; i < sizeof methods / sizeof methods[0]; i++) {
        if (strlen(methods[i].name) == length && memcmp(methods[i].name, text, length) == 0) {
            return methods[i].method;
        }
    }
    return BAL_HTTP_METHOD_OTHER;
}

/* Splits the request target into path and query; accepts origin-, absolute- and asterisk-form. */
static bool bal_http_parse_target(const char *target, size_t length, bal_http_head *head) {
    assert(length > 0);
    for (size_t i = 0; i < length; i++) {
        if ((bal_http_class[(unsigned char)target[i]] & BAL_HTTP_TARGET) == 0) return false;
    }
    const char *path = target;
    size_t path_room = length;
    if (length == 1 && target[0] == '*') {
        head->path = target;
        head->path_length = 1;
        return true;
    }
    if (target[0] != '/') {
        size_t scheme = 0;
        if (length >= 7 && bal_http_equals_ignore_case(target, 7, "http://")) scheme = 7;
        if (length >= 8 && bal_http_equals_ignore_case(target, 8, "https://")) scheme = 8;
        if (scheme == 0 || scheme == length) return false;
        size_t authority_end = scheme;
        while (authority_end < length && target[authority_end] != '/' && target[authority_end] != '?') {
            authority_end++;
        }
        path = target + authority_end;
        path_room = length - authority_end;
    }
    const char *question = path_room > 0 ? memchr(path, '?', path_room) : NULL;
    size_t path_length = question != NULL ? (size_t)(question - path) : path_room;
    head->path = path_length > 0 ? path : bal_http_root_path;
    head->path_length = path_length > 0 ? path_length : 1;
    if (question != NULL) {
        head->query = question + 1;
        head->query_length = path_room - path_length - 1;
    }
    return true;
}

static bal_http_parse_status bal_http_parse_version(const char *text, size_t length,
                                                    bal_http_head *head) {
    if (length != 8 || memcmp(text, "HTTP/", 5) != 0 || text[6] != '.') {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed HTTP version");
    }
    if (text[5] < '0' || text[5] > '9' || text[7] < '0' || text[7] > '9') {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed HTTP version");
    }
    if (text[5] != '1' || text[7] > '1') {
        return bal_http_fail(head, BAL_HTTP_PARSE_VERSION_UNSUPPORTED,
                             "only HTTP/1.0 and HTTP/1.1 are supported");
    }
    head->version_minor = (uint8_t)(text[7] - '0');
    return BAL_HTTP_PARSE_COMPLETE;
}

/* Parses "METHOD SP target SP HTTP/1.x" (the line without its CRLF). */
static bal_http_parse_status bal_http_parse_request_line(const char *line, size_t length,
                                                         bal_http_head *head) {
    const char *first_space = memchr(line, ' ', length);
    if (first_space == NULL || first_space == line) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed request line");
    }
    size_t method_length = (size_t)(first_space - line);
    if (method_length > BAL_HTTP_METHOD_LENGTH_MAX) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "method too long");
    }
    for (size_t i = 0; i < method_length; i++) {
        if (!bal_http_is_tchar((unsigned char)line[i])) {
            return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed method");
        }
    }
    const char *target = first_space + 1;
    const char *line_end = line + length;
    const char *second_space = memchr(target, ' ', (size_t)(line_end - target));
    if (second_space == NULL || second_space == target) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed request line");
    }
    head->method_text = line;
    head->method_length = method_length;
    head->method = bal_http_method_from_text(line, method_length);
    head->target = target;
    head->target_length = (size_t)(second_space - target);
    if (!bal_http_parse_target(target, head->target_length, head)) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed request target");
    }
    const char *version = second_space + 1;
    return bal_http_parse_version(version, (size_t)(line_end - version), head);
}

/* Content-Length: 1 to 19 digits, nothing else (no sign, no list, no white space inside). */
static bool bal_http_parse_content_length(const char *value, size_t length, uint64_t *out) {
    if (length == 0 || length > BAL_HTTP_CONTENT_LENGTH_DIGITS_MAX) return false;
    uint64_t number = 0;
    for (size_t i = 0; i < length; i++) {
        if (value[i] < '0' || value[i] > '9') return false;
        number = number * 10 + (uint64_t)(value[i] - '0');
    }
    *out = number;
    return true;
}

/* Does a comma-separated list contain this token (case-insensitive)? */
static bool bal_http_list_contains(const char *value, size_t length, const char *token) {
    size_t start = 0;
    while (start < length) {
        size_t end = start;
        while (end < length && value[end] != ',') end++;
        size_t first = start;
        size_t last = end;
        while (first < last && (value[first] == ' ' || value[first] == '\t')) first++;
        while (last > first && (value[last - 1] == ' ' || value[last - 1] == '\t')) last--;
        if (bal_http_equals_ignore_case(value + first, last - first, token)) return true;
        start = end + 1;
    }
    return false;
}

/* What the fields say about framing, gathered while they are parsed. */
typedef struct bal_http_framing {
    uint32_t host_count;
    bool transfer_encoding;
    bool chunked;
    bool connection_close;
    bool connection_keep_alive;
} bal_http_framing;

static bal_http_parse_status bal_http_apply_field(const bal_http_header *field, bal_http_head *head,
                                                  bal_http_framing *framing) {
    const char *name = field->name;
    size_t length = field->name_length;
    /* Most fields are none of these; the length picks the one name worth comparing. */
    const char *known = NULL;
    switch (length) {
    case 4: known = "host"; break;
    case 6: known = "expect"; break;
    case 10: known = "connection"; break;
    case 14: known = "content-length"; break;
    case 17: known = "transfer-encoding"; break;
    default: return BAL_HTTP_PARSE_COMPLETE;
    }
    /* The switch made the lengths equal. */
    if (!bal_http_name_is(name, known, length)) return BAL_HTTP_PARSE_COMPLETE;
    if (length == 14) {
        uint64_t value = 0;
        if (!bal_http_parse_content_length(field->value, field->value_length, &value)) {
            return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed Content-Length");
        }
        if (head->has_content_length && head->content_length != value) {
            return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "conflicting Content-Length");
        }
        head->has_content_length = true;
        head->content_length = value;
    } else if (length == 17) {
        framing->transfer_encoding = true;
        if (bal_http_list_contains(field->value, field->value_length, "chunked")) framing->chunked = true;
    } else if (length == 10) {
        if (bal_http_list_contains(field->value, field->value_length, "close")) {
            framing->connection_close = true;
        }
        if (bal_http_list_contains(field->value, field->value_length, "keep-alive")) {
            framing->connection_keep_alive = true;
        }
    } else if (length == 6) {
        head->expect_continue =
            bal_http_equals_ignore_case(field->value, field->value_length, "100-continue");
    } else {
        assert(length == 4);
        framing->host_count++;
    }
    return BAL_HTTP_PARSE_COMPLETE;
}

/* Parses one "name: value" line (without CRLF) into the next header slot. */
static bal_http_parse_status bal_http_parse_field(const char *line, size_t length,
                                                  bal_http_head *head, bal_http_framing *framing) {
    if (line[0] == ' ' || line[0] == '\t') {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "obsolete header line folding");
    }
    size_t colon = 0;
    while (colon < length && bal_http_is_tchar((unsigned char)line[colon])) colon++;
    if (colon == 0 || colon == length || line[colon] != ':') {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed header field name");
    }
    size_t first = colon + 1;
    size_t last = length;
    while (first < last && (line[first] == ' ' || line[first] == '\t')) first++;
    while (last > first && (line[last - 1] == ' ' || line[last - 1] == '\t')) last--;
    if (!bal_http_field_value_valid(line + first, last - first)) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "control character in header value");
    }
    if (head->header_count == BAL_HTTP_HEADERS_MAX) {
        return bal_http_fail(head, BAL_HTTP_PARSE_TOO_MANY_HEADERS, "too many header fields");
    }
    bal_http_header *field = &head->headers[head->header_count++];
    field->name = line;
    field->name_length = colon;
    field->value = line + first;
    field->value_length = last - first;
    return bal_http_apply_field(field, head, framing);
}

/* Derives keep-alive and refuses framings we do not implement, once every field is known. */
static bal_http_parse_status bal_http_check_framing(const bal_http_framing *framing,
                                                    bal_http_head *head) {
    if (framing->host_count > 1 || (head->version_minor == 1 && framing->host_count == 0)) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "an HTTP/1.1 request needs one Host");
    }
    if (framing->transfer_encoding) {
        if (head->has_content_length) {
            return bal_http_fail(head, BAL_HTTP_PARSE_INVALID,
                                 "Content-Length and Transfer-Encoding together");
        }
        if (framing->chunked) {
            return bal_http_fail(head, BAL_HTTP_PARSE_LENGTH_REQUIRED,
                                 "chunked request bodies are not supported; send Content-Length");
        }
        return bal_http_fail(head, BAL_HTTP_PARSE_CODING_UNSUPPORTED, "unsupported transfer coding");
    }
    if (head->version_minor == 1) {
        head->keep_alive = !framing->connection_close;
    } else {
        head->keep_alive = framing->connection_keep_alive && !framing->connection_close;
    }
    return BAL_HTTP_PARSE_COMPLETE;
}

/* Parses a complete head: data[line_start..head_length) ends with CRLF CRLF. */
static bal_http_parse_status bal_http_parse_lines(const char *data, size_t line_start,
                                                  bal_http_head *head) {
    size_t end = head->head_length;
    assert(end >= line_start + 4);
    const char *newline = memchr(data + line_start, '\n', end - line_start);
    assert(newline != NULL);
    size_t line_end = (size_t)(newline - data);
    bal_http_parse_status status =
        bal_http_parse_request_line(data + line_start, line_end - 1 - line_start, head);
    if (status != BAL_HTTP_PARSE_COMPLETE) return status;
    bal_http_framing framing = {0};
    size_t position = line_end + 1;
    while (position < end - 2) {
        newline = memchr(data + position, '\n', end - position);
        assert(newline != NULL);
        line_end = (size_t)(newline - data);
        assert(line_end > position + 1 && data[line_end - 1] == '\r');
        status = bal_http_parse_field(data + position, line_end - 1 - position, head, &framing);
        if (status != BAL_HTTP_PARSE_COMPLETE) return status;
        position = line_end + 1;
    }
    assert(position == end - 2);
    return bal_http_check_framing(&framing, head);
}

bal_http_parse_status bal_http_parse_head(const char *data, size_t length, size_t head_bytes_max,
                                          size_t *scan_offset, bal_http_head *head) {
    assert(data != NULL || length == 0);
    assert(scan_offset != NULL && *scan_offset <= length);
    assert(head != NULL && head_bytes_max > 0);
    /* The header array is filled as far as header_count says; clearing it would cost 2 KiB. */
    memset(head, 0, offsetof(bal_http_head, headers));
    head->method = BAL_HTTP_METHOD_OTHER;
    head->error = NULL;
    /* Only bytes within the head limit are looked at, so that the verdict on a long input
     * is the same whether it arrives whole or in pieces. */
    size_t visible = length < head_bytes_max ? length : head_bytes_max;
    size_t line_start = bal_http_skip_leading_lines(data, visible);
    if (!bal_http_method_prefix_valid(data + line_start, visible - line_start)) {
        return bal_http_fail(head, BAL_HTTP_PARSE_INVALID, "malformed method");
    }
    bal_http_parse_status status =
        bal_http_find_end(data, length, line_start, head_bytes_max, scan_offset, head);
    if (status != BAL_HTTP_PARSE_COMPLETE) return status;
    assert(head->head_length <= length && head->head_length <= head_bytes_max);
    status = bal_http_parse_lines(data, line_start, head);
    assert(status != BAL_HTTP_PARSE_INCOMPLETE);
    return status;
}

const char *bal_http_parse_status_string(bal_http_parse_status status) {
    switch (status) {
    case BAL_HTTP_PARSE_COMPLETE: return "complete";
    case BAL_HTTP_PARSE_INCOMPLETE: return "incomplete";
    case BAL_HTTP_PARSE_INVALID: return "invalid";
    case BAL_HTTP_PARSE_HEAD_TOO_LARGE: return "head_too_large";
    case BAL_HTTP_PARSE_TOO_MANY_HEADERS: return "too_many_headers";
    case BAL_HTTP_PARSE_VERSION_UNSUPPORTED: return "version_unsupported";
    case BAL_HTTP_PARSE_LENGTH_REQUIRED: return "length_required";
    case BAL_HTTP_PARSE_CODING_UNSUPPORTED: return "coding_unsupported";
    }
    return "unknown";
}

const char *bal_http_method_string(bal_http_method method) {
    switch (method) {
    case BAL_HTTP_METHOD_OTHER: return "OTHER";
    case BAL_HTTP_METHOD_GET: return "GET";
    case BAL_HTTP_METHOD_HEAD: return "HEAD";
    case BAL_HTTP_METHOD_POST: return "POST";
    case BAL_HTTP_METHOD_PUT: return "PUT";
    case BAL_HTTP_METHOD_DELETE: return "DELETE";
    case BAL_HTTP_METHOD_OPTIONS: return "OPTIONS";
    case BAL_HTTP_METHOD_PATCH: return "PATCH";
    }
    return "UNKNOWN";
}
