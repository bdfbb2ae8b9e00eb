/*
 * net_test_client.h -- a blocking HTTP/1.1 test client for the server tests.
 *
 * Connects over loopback, sends raw bytes (so tests can send malformed and pipelined
 * input), and reads responses one at a time, keeping what arrives beyond one response for
 * the next read. Every read has a timeout so a broken server fails a test, not hangs it.
 */
#ifndef NET_TEST_CLIENT_H
#define NET_TEST_CLIENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Largest response a test reads: a 1 MiB echo plus its head. */
#define NET_TEST_RESPONSE_MAX (2u * 1024u * 1024u)
#define NET_TEST_READ_TIMEOUT_MS 5000

typedef struct net_test_client {
    int fd;
    char *buffer; /* NET_TEST_RESPONSE_MAX bytes */
    size_t length;
} net_test_client;

typedef struct net_test_response {
    int status;
    bool connection_close;
    bool connection_keep_alive;
    char head[4096];   /* the head as text, for header checks */
    char *body;        /* NUL-terminated copy, owned: net_test_response_free */
    size_t body_length;
} net_test_response;

bool net_test_connect(net_test_client *client, uint16_t port);
void net_test_close(net_test_client *client);
bool net_test_send(net_test_client *client, const void *data, size_t length);
bool net_test_send_text(net_test_client *client, const char *text);
/* Reads one response (interim 1xx ones included); false on timeout, close or garbage. */
bool net_test_read_response(net_test_client *client, net_test_response *response);
void net_test_response_free(net_test_response *response);
/* True if the server closes the connection (EOF or reset) within the timeout and sends
 * nothing more before that. */
bool net_test_wait_closed(net_test_client *client, int timeout_ms);
/* Reads until the received bytes contain `needle` (kept in client->buffer); false on timeout. */
bool net_test_read_until(net_test_client *client, const char *needle);
/* Closes with a reset (SO_LINGER 0) instead of a FIN: the server sees the peer vanish. */
void net_test_reset(net_test_client *client);
/* Does the response head contain this header line prefix (case-insensitive)? */
bool net_test_has_header(const net_test_response *response, const char *name, const char *value);

#endif
