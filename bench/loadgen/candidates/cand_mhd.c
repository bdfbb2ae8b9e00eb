/*
 * cand_mhd.c -- candidate: GNU libmicrohttpd 0.9.75 (Debian libmicrohttpd-dev), one
 * internal epoll thread.
 *   cand_mhd PORT [COMMIT_US]   (COMMIT_US given: the connection is suspended and handed
 *                                to a shard thread, which resumes it after the commit)
 */
#include <arpa/inet.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <unistd.h>

#include <signal.h>

#include "cand_common.h"

typedef struct pending {
    struct MHD_Connection *connection;
    bool queued;
    volatile bool committed;
} pending;

static struct MHD_Response *response;
static cand_shard shard;
static int deferred;

static void deliver(void **items, size_t count, void *unused) {
    (void)unused;
    for (size_t i = 0; i < count; i++) {
        pending *item = items[i];
        item->committed = true;
        MHD_resume_connection(item->connection); /* thread-safe with MHD_ALLOW_SUSPEND_RESUME */
    }
}

static enum MHD_Result on_request(void *unused, struct MHD_Connection *connection, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_data_size, void **state) {
    (void)unused, (void)url, (void)method, (void)version, (void)upload_data;
    if (*state == NULL) { /* first call: headers only */
        *state = calloc(1, sizeof(pending));
        return MHD_YES;
    }
    if (*upload_data_size != 0) { /* body pieces: consumed, not needed */
        *upload_data_size = 0;
        return MHD_YES;
    }
    pending *item = *state;
    if (deferred && !item->committed) {
        if (!item->queued) {
            item->queued = true;
            item->connection = connection;
            MHD_suspend_connection(connection);
            cand_shard_push(&shard, item);
        }
        return MHD_YES;
    }
    return MHD_queue_response(connection, 200, response);
}

static void on_completed(void *unused, struct MHD_Connection *connection, void **state,
                         enum MHD_RequestTerminationCode code) {
    (void)unused, (void)connection, (void)code;
    free(*state);
    *state = NULL;
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    deferred = argc > 2;
    signal(SIGPIPE, SIG_IGN); /* a client closing early must not kill the server */
    response = MHD_create_response_from_buffer(sizeof CAND_BODY - 1, (void *)CAND_BODY, MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(response, "Content-Type", "application/json");
    if (deferred) cand_shard_start(&shard, (unsigned)atoi(argv[2]), deliver, NULL);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    struct MHD_Daemon *daemon = MHD_start_daemon(
        MHD_USE_EPOLL_INTERNAL_THREAD | MHD_ALLOW_SUSPEND_RESUME, (uint16_t)port, NULL, NULL, on_request, NULL,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, NULL, MHD_OPTION_CONNECTION_LIMIT, 10000u,
        MHD_OPTION_CONNECTION_TIMEOUT, 60u, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&address, MHD_OPTION_END);
    if (daemon == NULL) return 1;
    for (;;) pause();
}
