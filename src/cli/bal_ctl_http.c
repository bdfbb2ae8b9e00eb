/*
 * bal_ctl_http.c -- one HTTP/1.1 request over a blocking socket, with deadlines.
 *
 * The client sends "Connection: close" and reads one response: by Content-Length, by
 * chunked framing, or up to the end of the stream. Connecting has its own deadline; the
 * request and the whole response share a second one, so a server that trickles bytes
 * cannot hold the client beyond it. Each blocking call gets the remaining time as its
 * socket timeout. Everything read is bounded (headers 64 KiB, body 64 MiB).
 */
#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "bal_ctl.h"

/* Raw bytes we accept: the body bound plus headers and chunk framing. */
#define RAW_BYTES_MAX ((size_t)BAL_CTL_RESPONSE_BYTES_MAX + 2u * BAL_CTL_HEADER_BYTES_MAX)

typedef struct reader {
    int fd;
    int64_t deadline_ms;      /* CLOCK_MONOTONIC milliseconds */
    unsigned timeout_ms;
    char *data;
    size_t length;
    size_t capacity;
    bool eof;
} reader;

typedef struct head {
    int status;
    size_t length;            /* bytes of the status line and headers, blank line included */
    long long content_length; /* -1: none */
    bool chunked;
    char retry_after[32];
} head;

static int64_t monotonic_ms(void) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (int64_t)now.tv_sec * 1000 + now.tv_nsec / 1000000;
}

/* ---- URL -------------------------------------------------------------------------------- */

static bool port_valid(const char *text, size_t length) {
    if (length == 0 || length > 5) return false;
    unsigned value = 0;
    for (size_t i = 0; i < length; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
        value = value * 10 + (unsigned)(text[i] - '0');
    }
    return value >= 1 && value <= 65535;
}

static bool split_authority(const char *authority, size_t length, bal_ctl_endpoint *e) {
    const char *host = authority, *port = NULL;
    size_t host_length = length;
    if (length > 0 && authority[0] == '[') {
        const char *close = memchr(authority, ']', length);
        if (close == NULL) return false;
        host = authority + 1;
        host_length = (size_t)(close - host);
        if (close + 1 < authority + length) {
            if (close[1] != ':') return false;
            port = close + 2;
        }
    } else {
        const char *colon = memchr(authority, ':', length);
        if (colon != NULL) {
            host_length = (size_t)(colon - authority);
            port = colon + 1;
            if (memchr(port, ':', (size_t)(authority + length - port)) != NULL) return false;
        }
    }
    size_t port_length = port == NULL ? 0 : (size_t)(authority + length - port);
    if (host_length == 0 || host_length >= sizeof(e->host) || (port != NULL && !port_valid(port, port_length))) {
        return false;
    }
    memcpy(e->host, host, host_length);
    e->host[host_length] = '\0';
    snprintf(e->port, sizeof(e->port), "%.*s", port == NULL ? 2 : (int)port_length, port == NULL ? "80" : port);
    memcpy(e->authority, authority, length);
    e->authority[length] = '\0';
    return true;
}

bool bal_ctl_url_parse(const char *url, bal_ctl_endpoint *endpoint, bal_ctl_error *error) {
    memset(endpoint, 0, sizeof(*endpoint));
    const char *rest = url;
    if (strncasecmp(url, "http://", 7) == 0) {
        rest = url + 7;
    } else if (strstr(url, "://") != NULL) {
        bal_ctl_error_set(error, "usage", "--url: only http:// URLs are supported, not \"%.80s\"", url);
        return false;
    }
    size_t length = strcspn(rest, "/?#");
    /* Requests are signed over the path the server sees, so a path prefix (as behind a
     * rewriting proxy) would break signatures: only a bare authority is accepted. */
    bool path_ok = rest[length] == '\0' || strcmp(rest + length, "/") == 0;
    if (!path_ok || memchr(rest, '@', length) != NULL || length >= sizeof(endpoint->authority) ||
        !split_authority(rest, length, endpoint)) {
        bal_ctl_error_set(error, "usage", "--url must look like http://HOST:PORT, not \"%.80s\"", url);
        return false;
    }
    return true;
}

/* ---- connecting ------------------------------------------------------------------------- */

static int connect_one(const struct addrinfo *ai, int64_t deadline_ms, int *errno_out) {
    int fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, ai->ai_protocol);
    if (fd < 0) {
        *errno_out = errno;
        return -1;
    }
    int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
    if (rc < 0 && errno == EINPROGRESS) {
        struct pollfd p = {.fd = fd, .events = POLLOUT};
        int64_t left;
        do {
            left = deadline_ms - monotonic_ms();
            rc = left > 0 ? poll(&p, 1, (int)left) : 0;
        } while (rc < 0 && errno == EINTR);
        int so_error = ETIMEDOUT;
        socklen_t size = sizeof(so_error);
        if (rc > 0 && getsockopt(fd, SOL_SOCKET, SO_ERROR, &so_error, &size) < 0) so_error = errno;
        errno = so_error;
        rc = so_error == 0 ? 0 : -1;
    }
    if (rc < 0) {
        *errno_out = errno;
        close(fd);
        return -1;
    }
    /* Back to blocking: from here on, each call is bounded by a socket timeout. */
    int flags = fcntl(fd, F_GETFL);
    int one = 1;
    if (flags < 0 || fcntl(fd, F_SETFL, flags & ~O_NONBLOCK) < 0) {
        *errno_out = errno;
        close(fd);
        return -1;
    }
    /* Head and body go out in two writes; without this, Nagle would hold the body back
     * until the server's delayed acknowledgement of the head. */
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    return fd;
}

static int connect_endpoint(const bal_ctl_endpoint *e, unsigned timeout_ms, bal_ctl_error *error) {
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    struct addrinfo *list = NULL;
    int rc = getaddrinfo(e->host, e->port, &hints, &list);
    if (rc != 0) {
        bal_ctl_error_set(error, "connection_failed", "resolve %s: %s", e->host,
                          rc == EAI_SYSTEM ? strerror(errno) : gai_strerror(rc));
        return -1;
    }
    int64_t deadline = monotonic_ms() + timeout_ms;
    int fd = -1, last_errno = ECONNREFUSED;
    for (const struct addrinfo *ai = list; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = connect_one(ai, deadline, &last_errno);
    }
    freeaddrinfo(list);
    if (fd < 0) {
        if (last_errno == ETIMEDOUT) {
            bal_ctl_error_set(error, "connection_failed", "connect to %s: no answer within %u ms", e->authority,
                              timeout_ms);
        } else {
            bal_ctl_error_set(error, "connection_failed", "connect to %s: %s", e->authority, strerror(last_errno));
        }
    }
    return fd;
}

/* ---- sending and receiving ------------------------------------------------------------- */

/* Sets the socket timeout of the next blocking call to what is left; false if nothing is. */
static bool arm(int fd, int option, int64_t deadline_ms) {
    int64_t left = deadline_ms - monotonic_ms();
    if (left <= 0) return false;
    struct timeval tv = {.tv_sec = (time_t)(left / 1000), .tv_usec = (suseconds_t)(left % 1000) * 1000};
    return setsockopt(fd, SOL_SOCKET, option, &tv, sizeof(tv)) == 0;
}

static bool send_all(reader *r, const char *data, size_t length, bal_ctl_error *error) {
    while (length > 0) {
        if (!arm(r->fd, SO_SNDTIMEO, r->deadline_ms)) break;
        ssize_t n = send(r->fd, data, length, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) {
            bal_ctl_error_set(error, "connection_failed", "send: %s", strerror(errno));
            return false;
        }
        data += n;
        length -= (size_t)n;
    }
    if (length == 0) return true;
    bal_ctl_error_set(error, "timeout", "could not send the request within %u ms", r->timeout_ms);
    return false;
}

/* Reads more bytes into r->data; sets r->eof at the end of the stream. */
static bool receive_more(reader *r, bal_ctl_error *error) {
    assert(r->fd >= 0 && r->length <= r->capacity && r->capacity <= RAW_BYTES_MAX);
    if (r->length == RAW_BYTES_MAX) {
        bal_ctl_error_set(error, "response_too_large", "the response exceeds %u bytes", BAL_CTL_RESPONSE_BYTES_MAX);
        return false;
    }
    if (r->capacity - r->length < 4096 && r->capacity < RAW_BYTES_MAX) {
        size_t capacity = r->capacity == 0 ? 16384 : r->capacity * 2;
        if (capacity > RAW_BYTES_MAX) capacity = RAW_BYTES_MAX;
        char *data = realloc(r->data, capacity + 1); /* +1: room for a terminating NUL */
        if (data == NULL) {
            bal_ctl_error_set(error, "out_of_memory", "response buffer of %zu bytes", capacity);
            return false;
        }
        r->data = data;
        r->capacity = capacity;
    }
    for (;;) {
        if (!arm(r->fd, SO_RCVTIMEO, r->deadline_ms)) break;
        ssize_t n = recv(r->fd, r->data + r->length, r->capacity - r->length, 0);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
        if (n < 0) {
            bal_ctl_error_set(error, "connection_failed", "receive: %s", strerror(errno));
            return false;
        }
        r->length += (size_t)n;
        r->eof = n == 0;
        return true;
    }
    bal_ctl_error_set(error, "timeout", "no complete response within %u ms", r->timeout_ms);
    return false;
}

/* ---- parsing the response -------------------------------------------------------------- */

static bool header_value(const char *line, size_t length, const char *name, const char **value, size_t *value_length) {
    size_t name_length = strlen(name);
    if (length <= name_length || line[name_length] != ':' || strncasecmp(line, name, name_length) != 0) return false;
    const char *v = line + name_length + 1, *end = line + length;
    while (v < end && (*v == ' ' || *v == '\t')) v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t')) end--;
    *value = v;
    *value_length = (size_t)(end - v);
    return true;
}

static bool parse_header_line(head *h, const char *line, size_t length) {
    const char *v;
    size_t n;
    if (header_value(line, length, "Content-Length", &v, &n)) {
        long long value = 0;
        if (n == 0 || n > 18) return false;
        for (size_t i = 0; i < n; i++) {
            if (v[i] < '0' || v[i] > '9') return false;
            value = value * 10 + (v[i] - '0');
        }
        if (h->content_length >= 0 && h->content_length != value) return false;
        h->content_length = value;
    } else if (header_value(line, length, "Transfer-Encoding", &v, &n)) {
        h->chunked = n >= 7 && strncasecmp(v + n - 7, "chunked", 7) == 0;
    } else if (header_value(line, length, "Retry-After", &v, &n)) {
        snprintf(h->retry_after, sizeof(h->retry_after), "%.*s", (int)(n < 31 ? n : 31), v);
    }
    return true;
}

/* Parses the status line and headers in text[0 .. h->length). */
static bool parse_head(const char *text, head *h) {
    if (h->length < 12 || strncmp(text, "HTTP/1.", 7) != 0 || text[8] != ' ') return false;
    for (int i = 9; i < 12; i++) {
        if (text[i] < '0' || text[i] > '9') return false;
    }
    h->status = (text[9] - '0') * 100 + (text[10] - '0') * 10 + (text[11] - '0');
    const char *line = memchr(text, '\n', h->length);
    const char *end = text + h->length;
    while (line != NULL && ++line < end) {
        const char *eol = memchr(line, '\n', (size_t)(end - line));
        size_t length = (size_t)(eol - line);
        if (length > 0 && line[length - 1] == '\r') length--;
        if (length > 0 && !parse_header_line(h, line, length)) return false;
        line = eol;
    }
    return true;
}

/* Finds the blank line ending the head in r's data; 0 while it is not there yet. */
static size_t head_end(const reader *r) {
    for (size_t i = 0; i + 1 < r->length; i++) {
        if (r->data[i] != '\n') continue;
        if (r->data[i + 1] == '\n') return i + 2;
        if (i + 2 < r->length && r->data[i + 1] == '\r' && r->data[i + 2] == '\n') return i + 3;
    }
    return 0;
}

/* Reads until a final (non-1xx) head is complete and parses it. */
static bool read_head(reader *r, head *h, bal_ctl_error *error) {
    for (;;) {
        size_t end = head_end(r);
        if (end == 0) {
            if (r->length >= BAL_CTL_HEADER_BYTES_MAX) {
                bal_ctl_error_set(error, "bad_response", "response headers exceed %u bytes", BAL_CTL_HEADER_BYTES_MAX);
                return false;
            }
            if (r->eof) {
                bal_ctl_error_set(error, "bad_response", r->length == 0 ? "the server closed the connection "
                                  "without answering" : "the connection closed inside the response headers");
                return false;
            }
            if (!receive_more(r, error)) return false;
            continue;
        }
        memset(h, 0, sizeof(*h));
        h->content_length = -1;
        h->length = end;
        if (!parse_head(r->data, h)) {
            bal_ctl_error_set(error, "bad_response", "malformed HTTP response head");
            return false;
        }
        if (h->status >= 200 || h->status == 101) return true;
        /* An interim 1xx answer: drop it and wait for the real one. */
        memmove(r->data, r->data + end, r->length - end);
        r->length -= end;
    }
}

static int hex_digit(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Walks chunked framing in text[0 .. length): 1 complete, 0 incomplete, -1 malformed.
 * With out non-NULL, also copies the data (out must hold `length` bytes). */
static int chunked_scan(const char *text, size_t length, char *out, size_t *out_length) {
    size_t at = 0, total = 0;
    for (;;) {
        const char *eol = memchr(text + at, '\n', length - at);
        if (eol == NULL) return length - at > 4096 ? -1 : 0;
        size_t size = 0, digits = 0;
        for (const char *p = text + at; p < eol && digits <= 15 && hex_digit(*p) >= 0; p++, digits++) {
            size = size * 16 + (size_t)hex_digit(*p);
        }
        if (digits == 0 || digits > 15) return -1;
        at = (size_t)(eol - text) + 1;
        if (size == 0) {
            /* Trailers, if any, end with a blank line. */
            for (;;) {
                const char *next = memchr(text + at, '\n', length - at);
                if (next == NULL) return 0;
                size_t line = (size_t)(next - (text + at));
                at = (size_t)(next - text) + 1;
                if (line == 0 || (line == 1 && next[-1] == '\r')) break;
            }
            *out_length = total;
            return 1;
        }
        if (size > BAL_CTL_RESPONSE_BYTES_MAX - total) return -1;
        if (length - at < size + 1) return 0;
        if (out != NULL) memcpy(out + total, text + at, size);
        total += size;
        at += size;
        if (text[at] == '\r') at++;
        if (at >= length) return 0;
        if (text[at++] != '\n') return -1;
    }
}

static bool read_chunked_body(reader *r, size_t start, bal_ctl_response *response, bal_ctl_error *error) {
    size_t length = 0;
    int state;
    while ((state = chunked_scan(r->data + start, r->length - start, NULL, &length)) == 0) {
        if (r->eof) break;
        if (!receive_more(r, error)) return false;
    }
    if (state <= 0) {
        bal_ctl_error_set(error, "bad_response", state < 0 ? "malformed chunked body" : "the connection closed "
                          "inside the response body");
        return false;
    }
    assert(length <= BAL_CTL_RESPONSE_BYTES_MAX);
    response->body = malloc(length + 1);
    if (response->body == NULL) {
        bal_ctl_error_set(error, "out_of_memory", "response body of %zu bytes", length);
        return false;
    }
    chunked_scan(r->data + start, r->length - start, response->body, &length);
    response->body[length] = '\0';
    response->body_length = length;
    return true;
}

/* Reads a Content-Length body, or everything up to the end of the stream without one. */
static bool read_plain_body(reader *r, const head *h, bal_ctl_response *response, bal_ctl_error *error) {
    bool no_body = h->status == 204 || h->status == 304;
    size_t want = no_body ? 0 : (size_t)h->content_length;
    if (!no_body && h->content_length < 0) {
        while (!r->eof) {
            if (r->length - h->length > BAL_CTL_RESPONSE_BYTES_MAX) break;
            if (!receive_more(r, error)) return false;
        }
        want = r->length - h->length;
    }
    if (want > BAL_CTL_RESPONSE_BYTES_MAX) {
        bal_ctl_error_set(error, "response_too_large", "the response body exceeds %u bytes", BAL_CTL_RESPONSE_BYTES_MAX);
        return false;
    }
    while (r->length - h->length < want) {
        if (r->eof) {
            bal_ctl_error_set(error, "bad_response", "the connection closed inside the response body");
            return false;
        }
        if (!receive_more(r, error)) return false;
    }
    response->body = malloc(want + 1);
    if (response->body == NULL) {
        bal_ctl_error_set(error, "out_of_memory", "response body of %zu bytes", want);
        return false;
    }
    memcpy(response->body, r->data + h->length, want);
    response->body[want] = '\0';
    response->body_length = want;
    return true;
}

/* ---- the exchange ------------------------------------------------------------------------ */

static bool build_head(const bal_ctl_endpoint *e, const bal_ctl_key *key, const char *method, const char *target,
                       const char *body, size_t body_length, bal_text *out, bal_ctl_error *error) {
    bal_text_cstr(out, method);
    bal_text_cstr(out, " ");
    bal_text_cstr(out, target);
    bal_text_cstr(out, " HTTP/1.1\r\nHost: ");
    bal_text_cstr(out, e->authority);
    bal_text_cstr(out, "\r\nUser-Agent: balancectl\r\nAccept: */*\r\nConnection: close\r\n");
    if (body != NULL) {
        bal_text_cstr(out, "Content-Type: application/json\r\nContent-Length: ");
        bal_text_u64(out, body_length);
        bal_text_cstr(out, "\r\n");
    }
    if (key != NULL && key->present &&
        !bal_ctl_sign_headers(key, method, target, body, body != NULL ? body_length : 0, out, error)) {
        return false;
    }
    bal_text_cstr(out, "\r\n");
    if (bal_text_failed(out)) {
        bal_ctl_error_set(error, "out_of_memory", "request head");
        return false;
    }
    return true;
}

static bool exchange_on(reader *r, const bal_text *request_head, const char *body, size_t body_length,
                        bal_ctl_response *response, bal_ctl_error *error) {
    head h;
    bal_ctl_error send_error;
    bool sent = send_all(r, request_head->data, request_head->length, &send_error) &&
                (body == NULL || send_all(r, body, body_length, &send_error));
    /* A server may answer before reading the whole body (401 for a bad signature, 413)
     * and close: its answer says more than the broken pipe does, so look for it. */
    if (!sent && strcmp(send_error.code, "connection_failed") != 0) {
        *error = send_error;
        return false;
    }
    if (!read_head(r, &h, error)) {
        if (!sent) *error = send_error;
        return false;
    }
    response->status = h.status;
    snprintf(response->retry_after, sizeof(response->retry_after), "%s", h.retry_after);
    if (h.chunked) return read_chunked_body(r, h.length, response, error);
    return read_plain_body(r, &h, response, error);
}

bool bal_ctl_http_exchange(const bal_ctl_endpoint *endpoint, const bal_ctl_key *key, unsigned timeout_ms,
                           const char *method, const char *target, const char *body, size_t body_length,
                           bal_ctl_response *response, bal_ctl_error *error) {
    assert(endpoint != NULL && method != NULL && target != NULL && target[0] == '/');
    assert(timeout_ms > 0 && (body != NULL || body_length == 0));
    memset(response, 0, sizeof(*response));
    bal_text request_head;
    bal_text_init(&request_head, BAL_CTL_HEADER_BYTES_MAX);
    bool ok = build_head(endpoint, key, method, target, body, body_length, &request_head, error);
    reader r = {.fd = -1, .timeout_ms = timeout_ms};
    if (ok) r.fd = connect_endpoint(endpoint, timeout_ms, error);
    ok = ok && r.fd >= 0;
    if (ok) {
        r.deadline_ms = monotonic_ms() + timeout_ms;
        ok = exchange_on(&r, &request_head, body, body_length, response, error);
    }
    if (r.fd >= 0) close(r.fd);
    free(r.data);
    bal_text_free(&request_head);
    if (!ok) bal_ctl_response_free(response);
    return ok;
}

void bal_ctl_response_free(bal_ctl_response *response) {
    free(response->body);
    response->body = NULL;
    response->body_length = 0;
}
