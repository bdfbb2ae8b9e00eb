/*
 * net_test_client.c -- a blocking HTTP/1.1 test client (see net_test_client.h).
 */
#include "net_test_client.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

bool net_test_connect(net_test_client *client, uint16_t port) {
    memset(client, 0, sizeof *client);
    client->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (client->fd < 0) return false;
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons(port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (connect(client->fd, (struct sockaddr *)&address, sizeof address) != 0) {
        close(client->fd);
        client->fd = -1;
        return false;
    }
    int one = 1;
    setsockopt(client->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    client->buffer = malloc(NET_TEST_RESPONSE_MAX);
    return client->buffer != NULL;
}

void net_test_close(net_test_client *client) {
    if (client->fd >= 0) close(client->fd);
    client->fd = -1;
    free(client->buffer);
    client->buffer = NULL;
}

bool net_test_send(net_test_client *client, const void *data, size_t length) {
    const char *bytes = data;
    while (length > 0) {
        ssize_t sent = send(client->fd, bytes, length, MSG_NOSIGNAL);
        if (sent < 0 && errno == EINTR) continue;
        if (sent <= 0) return false;
        bytes += sent;
        length -= (size_t)sent;
    }
    return true;
}

bool net_test_send_text(net_test_client *client, const char *text) {
    return net_test_send(client, text, strlen(text));
}

/* Reads more bytes; returns the count, 0 on EOF, -1 on timeout or error. */
static ssize_t net_test_fill(net_test_client *client, int timeout_ms) {
    if (client->length == NET_TEST_RESPONSE_MAX) return -1;
    struct pollfd poll_fd = {.fd = client->fd, .events = POLLIN};
    int ready = poll(&poll_fd, 1, timeout_ms);
    if (ready <= 0) return -1;
    ssize_t count = recv(client->fd, client->buffer + client->length,
                         NET_TEST_RESPONSE_MAX - client->length, 0);
    if (count < 0) return errno == ECONNRESET ? 0 : -1;
    client->length += (size_t)count;
    return count;
}

static const char *net_test_find_header(const char *head, const char *name) {
    size_t name_length = strlen(name);
    const char *line = strstr(head, "\r\n");
    while (line != NULL && line[2] != '\0') {
        line += 2;
        if (strncasecmp(line, name, name_length) == 0 && line[name_length] == ':') {
            const char *value = line + name_length + 1;
            while (*value == ' ') value++;
            return value;
        }
        line = strstr(line, "\r\n");
    }
    return NULL;
}

bool net_test_has_header(const net_test_response *response, const char *name, const char *value) {
    const char *found = net_test_find_header(response->head, name);
    return found != NULL && strncasecmp(found, value, strlen(value)) == 0;
}

/* Parses a complete head at the front of the buffer; returns its length or 0. */
static size_t net_test_parse_head(net_test_client *client, net_test_response *response) {
    char *end = memmem(client->buffer, client->length, "\r\n\r\n", 4);
    if (end == NULL) return 0;
    size_t head_length = (size_t)(end - client->buffer) + 4;
    if (head_length >= sizeof response->head) return 0;
    memcpy(response->head, client->buffer, head_length);
    response->head[head_length] = '\0';
    if (sscanf(response->head, "HTTP/1.%*d %d", &response->status) != 1) return 0;
    response->connection_close = net_test_has_header(response, "Connection", "close");
    response->connection_keep_alive = net_test_has_header(response, "Connection", "keep-alive");
    const char *length_text = net_test_find_header(response->head, "Content-Length");
    response->body_length = length_text != NULL ? strtoull(length_text, NULL, 10) : 0;
    return head_length;
}

bool net_test_read_response(net_test_client *client, net_test_response *response) {
    memset(response, 0, sizeof *response);
    size_t head_length = 0;
    while ((head_length = net_test_parse_head(client, response)) == 0) {
        if (net_test_fill(client, NET_TEST_READ_TIMEOUT_MS) <= 0) return false;
    }
    size_t total = head_length + response->body_length;
    if (total > NET_TEST_RESPONSE_MAX) return false;
    while (client->length < total) {
        if (net_test_fill(client, NET_TEST_READ_TIMEOUT_MS) <= 0) return false;
    }
    response->body = malloc(response->body_length + 1);
    if (response->body == NULL) return false;
    memcpy(response->body, client->buffer + head_length, response->body_length);
    response->body[response->body_length] = '\0';
    memmove(client->buffer, client->buffer + total, client->length - total);
    client->length -= total;
    return true;
}

void net_test_response_free(net_test_response *response) {
    free(response->body);
    response->body = NULL;
}

bool net_test_wait_closed(net_test_client *client, int timeout_ms) {
    size_t before = client->length;
    ssize_t count = net_test_fill(client, timeout_ms);
    while (count > 0) count = net_test_fill(client, timeout_ms);
    return count == 0 && client->length == before;
}

bool net_test_read_until(net_test_client *client, const char *needle) {
    while (memmem(client->buffer, client->length, needle, strlen(needle)) == NULL) {
        if (net_test_fill(client, NET_TEST_READ_TIMEOUT_MS) <= 0) return false;
    }
    return true;
}

void net_test_reset(net_test_client *client) {
    struct linger linger = {.l_onoff = 1, .l_linger = 0};
    setsockopt(client->fd, SOL_SOCKET, SO_LINGER, &linger, sizeof linger);
    net_test_close(client);
}
