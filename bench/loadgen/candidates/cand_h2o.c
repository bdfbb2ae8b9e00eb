/*
 * cand_h2o.c -- candidate: libh2o-evloop 2.2 (Debian libh2o-evloop-dev), one event loop.
 *   cand_h2o PORT [COMMIT_US]   (COMMIT_US given: deferred answers through a shard thread,
 *                                handed back with h2o_multithread_send_message)
 */
#include <h2o.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <signal.h>

#include "cand_common.h"

static h2o_globalconf_t config;
static h2o_context_t context;
static h2o_accept_ctx_t accept_context;
static h2o_multithread_receiver_t receiver;
static cand_shard shard;
static int deferred;

typedef struct answer {
    h2o_multithread_message_t super;
    h2o_req_t *req;
} answer;

static void respond(h2o_req_t *req) {
    static h2o_iovec_t content_type = {H2O_STRLIT("application/json")};
    req->res.status = 200;
    req->res.reason = "OK";
    req->res.content_length = sizeof CAND_BODY - 1;
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, content_type.base, content_type.len);
    h2o_send_inline(req, H2O_STRLIT(CAND_BODY));
}

static int on_request(h2o_handler_t *self, h2o_req_t *req) {
    (void)self;
    if (!deferred) {
        respond(req);
        return 0;
    }
    answer *item = calloc(1, sizeof *item);
    item->req = req;
    cand_shard_push(&shard, item);
    return 0;
}

static void deliver(void **items, size_t count, void *unused) {
    (void)unused;
    for (size_t i = 0; i < count; i++) h2o_multithread_send_message(&receiver, &((answer *)items[i])->super);
}

static void on_answers(h2o_multithread_receiver_t *self, h2o_linklist_t *messages) {
    (void)self;
    while (!h2o_linklist_is_empty(messages)) {
        answer *item = H2O_STRUCT_FROM_MEMBER(answer, super.link, messages->next);
        h2o_linklist_unlink(&item->super.link);
        respond(item->req);
        free(item);
    }
}

static void on_accept(h2o_socket_t *listener, const char *err) {
    if (err != NULL) return;
    h2o_socket_t *sock = h2o_evloop_socket_accept(listener);
    if (sock != NULL) h2o_accept(&accept_context, sock);
}

int main(int argc, char **argv) {
    int port = argc > 1 ? atoi(argv[1]) : 8080;
    deferred = argc > 2;
    signal(SIGPIPE, SIG_IGN); /* a client closing early must not kill the server */
    h2o_config_init(&config);
    h2o_hostconf_t *host = h2o_config_register_host(&config, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_create_handler(path, sizeof(h2o_handler_t))->on_req = on_request;
    h2o_context_init(&context, h2o_evloop_create(), &config);
    accept_context.ctx = &context;
    accept_context.hosts = config.hosts;
    if (deferred) {
        h2o_multithread_register_receiver(context.queue, &receiver, on_answers);
        cand_shard_start(&shard, (unsigned)atoi(argv[2]), deliver, NULL);
    }
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    struct sockaddr_in address = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port),
                                  .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    if (bind(fd, (struct sockaddr *)&address, sizeof address) != 0 || listen(fd, 1024) != 0) return 1;
    h2o_socket_read_start(h2o_evloop_socket_create(context.loop, fd, H2O_SOCKET_FLAG_DONT_READ), on_accept);
    while (h2o_evloop_run(context.loop, INT32_MAX) == 0) {
    }
    return 0;
}
