/*
 * bal_node.c -- the node's life: configuration, data directory, recovery, threads,
 * replies, and the orderly stop.
 *
 * Data directory:
 *   node.meta                 the shard count (an account's shard depends on it)
 *   journal.sqlite3           journal rows of every shard (bal_journal.h)
 *   shard-<i>/wal/            the shard's log segments (bal_wal.h)
 *   shard-<i>/snapshots/      its newest two snapshots (bal_snapfile.h)
 *
 * Start-up, per shard: open the log (a torn tail is cut and logged), load the newest valid
 * snapshot (a corrupt one is set aside and the previous used), complete a command that
 * spans shards if only some logs hold it, replay the log after the snapshot through the
 * same path as live batches, and hand the replayed batches the journal lacks to the
 * persister. Then serve.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bal_hash.h"
#include "bal_log.h"
#include "bal_node_internal.h"
#include "bal_render.h"
#include "bal_snapfile.h"
#include "bal_wait.h"

static bool start_auth(bal_node *node);

/* The routing function's seed: fixed for ever, since data directories depend on it. */
#define SHARD_ROUTING_SEED 0x62616c616e636564ull

void bal_node_config_default(bal_node_config *c) {
    memset(c, 0, sizeof(*c));
    snprintf(c->listen_host, sizeof(c->listen_host), "127.0.0.1");
    c->listen_port = 8080;
    snprintf(c->data_dir, sizeof(c->data_dir), "./data");
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    c->shard_count = cores > 0 ? (uint32_t)(cores > (long)BAL_NODE_SHARDS_MAX ? BAL_NODE_SHARDS_MAX : cores) : 1;
    c->http_threads = c->shard_count;
    c->connections_max = 10000;
    c->balance_capacity = 1u << 20;
    c->idempotency_count = 1u << 19;
    c->idempotency_bytes = 64ull << 20;
    c->idempotency_retention_ms = 24ll * 3600 * 1000;
    c->batch_max = 4096;
    c->queue_depth = 65536;
    c->snapshot_every = 1000000;
    c->wal_segment_bytes = 64ull << 20;
    c->read_wait_ms = 5000;
    c->id_filter_bytes = BAL_IDS_FILTER_BYTES_DEFAULT;
    c->journal_lag_max = BAL_IDS_CLAIMS_DEFAULT;
    c->nonce_memory = BAL_AUTH_NONCE_COUNT_DEFAULT;
}

bool bal_node_config_check(const bal_node_config *c, char *error, size_t size) {
#define REQUIRE(condition, ...)                  \
    do {                                         \
        if (!(condition)) {                      \
            snprintf(error, size, __VA_ARGS__);  \
            return false;                        \
        }                                        \
    } while (0)
    REQUIRE(c->shard_count >= 1 && c->shard_count <= BAL_NODE_SHARDS_MAX, "shards must be 1..%u", BAL_NODE_SHARDS_MAX);
    REQUIRE(c->http_threads >= 1 && c->http_threads <= 256, "http-threads must be 1..256");
    REQUIRE(c->connections_max >= 1 && c->connections_max <= 1000000, "connections must be 1..1000000");
    REQUIRE(c->balance_capacity >= 1 && c->balance_capacity <= BAL_BALANCES_MAX, "balance-capacity must be 1..%llu",
            (unsigned long long)BAL_BALANCES_MAX);
    REQUIRE(c->idempotency_count >= 16 && c->idempotency_count <= BAL_IDEMPOTENCY_COUNT_MAX,
            "idempotency-count must be 16..%u", BAL_IDEMPOTENCY_COUNT_MAX);
    REQUIRE(c->idempotency_bytes >= (1u << 20) && c->idempotency_bytes <= (32ull << 30), "idempotency-bytes must be 1 MiB..32 GiB");
    REQUIRE(c->idempotency_retention_ms >= 1000, "idempotency-retention-ms must be at least 1000");
    REQUIRE(c->batch_max >= 1 && c->batch_max <= BAL_BATCH_ITEMS_MAX, "batch-max must be 1..%u", BAL_BATCH_ITEMS_MAX);
    REQUIRE(c->queue_depth >= BAL_BATCH_ITEMS_MAX && c->queue_depth <= (1u << 24), "queue-depth must be %u..%u",
            BAL_BATCH_ITEMS_MAX, 1u << 24);
    REQUIRE(c->wal_segment_bytes >= 4096 && c->wal_segment_bytes <= (1ull << 30), "wal-segment-bytes must be 4096..1 GiB");
    REQUIRE(c->read_wait_ms >= 1 && c->read_wait_ms <= 600000, "read-wait-ms must be 1..600000");
    REQUIRE(c->id_filter_bytes >= BAL_IDS_FILTER_BYTES_MIN && c->id_filter_bytes <= BAL_IDS_FILTER_BYTES_MAX &&
                (c->id_filter_bytes & (c->id_filter_bytes - 1)) == 0,
            "id-filter-bytes must be a power of two from 1 MiB to 16 GiB");
    REQUIRE(c->journal_lag_max >= BAL_IDS_CLAIMS_MIN && c->journal_lag_max <= BAL_IDS_CLAIMS_MAX,
            "journal-lag-max must be %u..%u", BAL_IDS_CLAIMS_MIN, BAL_IDS_CLAIMS_MAX);
    /* The claims of batches being claimed (at most shards x batch-max) must never fill the
     * ring: a shard waiting for a slot would then wait for a batch that waits too. */
    REQUIRE((uint64_t)c->journal_lag_max >= 2ull * c->shard_count * c->batch_max + 2,
            "journal-lag-max must be at least 2 x shards x batch-max + 2 (%llu here)",
            2ull * c->shard_count * c->batch_max + 2);
    REQUIRE(c->nonce_memory >= 1 && c->nonce_memory <= BAL_AUTH_NONCE_COUNT_MAX, "nonce-memory must be 1..%u",
            (unsigned)BAL_AUTH_NONCE_COUNT_MAX);
    REQUIRE(c->data_dir[0] != '\0', "data-dir must not be empty");
#undef REQUIRE
    return true;
}

int64_t bal_node_now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec;
}

uint32_t bal_node_shard_of(const bal_node *node, uint64_t account_id) {
    return (uint32_t)bal_hash_reduce(bal_hash_u64(account_id, SHARD_ROUTING_SEED), node->config.shard_count);
}

/* ---------------- replies ---------------- */

static void send_with(bal_http_request *request, const char *request_id, int status, const char *content_type,
                      const char *body, size_t body_length, uint32_t retry_after_s) {
    char header[BAL_REQUEST_ID_MAX + 64];
    if (retry_after_s > 0) {
        snprintf(header, sizeof(header), "X-Request-Id: %s\r\nRetry-After: %u\r\n", request_id, retry_after_s);
    } else {
        /* Every response has this header: copied, not formatted. */
        static const char name[] = "X-Request-Id: ";
        size_t id_length = strnlen(request_id, BAL_REQUEST_ID_MAX);
        memcpy(header, name, sizeof(name) - 1);
        memcpy(header + sizeof(name) - 1, request_id, id_length);
        memcpy(header + sizeof(name) - 1 + id_length, "\r\n", 3);
    }
    bal_http_respond(request, status, content_type, header, body, body_length);
    if (status >= 500) bal_log(BAL_LOG_WARN, "request_failed", "\"request_id\":\"%s\",\"status\":%d", request_id, status);
}

void bal_node_send(bal_http_request *request, const char *request_id, int status, const char *content_type,
                   const char *body, size_t body_length) {
    send_with(request, request_id, status, content_type, body, body_length, 0);
}

void bal_node_send_retry(bal_http_request *request, const char *request_id, int status, const char *code,
                         const char *message, uint32_t retry_after_s) {
    char body[512];
    bal_text text;
    bal_text_init_with(&text, body, sizeof(body), sizeof(body));
    bal_render_error(&text, code, message);
    send_with(request, request_id, status, "application/json", text.data, text.length, retry_after_s);
}

void bal_node_send_error(bal_http_request *request, const char *request_id, int status, const char *code,
                         const char *message) {
    bal_node_send_retry(request, request_id, status, code, message, 0);
}

static void observe_request(bal_node *node, const bal_reply *reply) {
    if (reply->received_ns > 0) {
        bal_metrics_observe_ns(&node->metrics.request_duration, (uint64_t)(bal_node_now_ns() - reply->received_ns));
    }
}

static void finish_batch(bal_node *node, bal_batch_reply *batch) {
    bal_text body;
    bal_text_init(&body, BAL_NODE_RESPONSE_BYTES_MAX);
    bal_text_cstr(&body, "{\"results\":[");
    for (uint32_t i = 0; i < batch->count; i++) {
        if (i > 0) bal_text_append(&body, ",", 1);
        bal_text_append(&body, batch->items[i].data, batch->items[i].length);
        bal_text_free(&batch->items[i]);
    }
    bal_text_cstr(&body, "]}");
    if (bal_text_failed(&body)) {
        bal_node_send_error(batch->request, batch->request_id, 500, "response_too_large", "the response could not be built");
    } else {
        bal_node_send(batch->request, batch->request_id, 200, "application/json", body.data, body.length);
    }
    atomic_fetch_add(&node->metrics.requests[BAL_ROUTE_BATCH][bal_text_failed(&body) ? 5 : 2], 1);
    bal_reply whole = {.received_ns = batch->received_ns};
    observe_request(node, &whole);
    bal_text_free(&body);
    free(batch->items);
    free(batch);
}

/* One item of a batch is done: the last one answers the request. */
void bal_batch_item_done(bal_node *node, bal_batch_reply *batch);
void bal_batch_item_done(bal_node *node, bal_batch_reply *batch) {
    if (atomic_fetch_sub(&batch->remaining, 1) == 1) finish_batch(node, batch);
}

void bal_node_reply_text(bal_node *node, const bal_reply *reply, int status, bal_text *body) {
    if (reply->batch != NULL) {
        bal_text *slot = &reply->batch->items[reply->index];
        bal_text_init(slot, BAL_NODE_RESPONSE_BYTES_MAX);
        bal_text_append(slot, body->data, body->length);
        bal_batch_item_done(node, reply->batch);
        return;
    }
    if (bal_text_failed(body)) {
        bal_node_send_error(reply->request, reply->request_id, 500, "response_too_large", "the response could not be built");
        return;
    }
    bal_node_send(reply->request, reply->request_id, status, "application/json", body->data, body->length);
}

void bal_node_reply(bal_node *node, const bal_reply *reply, const bal_command *command,
                    const bal_outcome *outcome, const bal_change *changes) {
    bal_text body;
    char inline_buffer[2048];
    bal_text_init_with(&body, inline_buffer, sizeof(inline_buffer), BAL_NODE_RESPONSE_BYTES_MAX); /* most fit */
    bal_render_outcome(&body, command, outcome, changes);
    int status = bal_render_http_status((bal_result)outcome->result);
    if (reply->batch == NULL) {
        atomic_fetch_add(&node->metrics.requests[BAL_ROUTE_TRANSACTION][status / 100], 1);
        observe_request(node, reply);
    }
    bal_node_reply_text(node, reply, status, &body);
    bal_text_free(&body);
}

/* ---------------- data directory ---------------- */

static bool make_directory(const char *path) {
    if (mkdir(path, 0755) == 0 || errno == EEXIST) return true;
    bal_log(BAL_LOG_ERROR, "mkdir_failed", "\"path\":\"%.300s\",\"error\":\"%s\"", path, strerror(errno));
    return false;
}

/* The shard count is part of the data: refuse to start with another one. */
static bool check_meta(const bal_node_config *config) {
    char path[BAL_NODE_PATH_MAX + 32];
    snprintf(path, sizeof(path), "%s/node.meta", config->data_dir);
    FILE *file = fopen(path, "r");
    if (file != NULL) {
        unsigned shards = 0;
        int matched = fscanf(file, "shards=%u", &shards);
        fclose(file);
        if (matched != 1 || shards != config->shard_count) {
            bal_log(BAL_LOG_ERROR, "shard_count_mismatch",
                    "\"path\":\"%.300s\",\"stored\":%u,\"configured\":%u,\"hint\":\"start with --shards %u\"",
                    path, shards, config->shard_count, shards);
            return false;
        }
        return true;
    }
    char temporary[BAL_NODE_PATH_MAX + 48];
    snprintf(temporary, sizeof(temporary), "%s.tmp", path);
    int fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) return false;
    char text[32];
    int n = snprintf(text, sizeof(text), "shards=%u\n", config->shard_count);
    bool ok = write(fd, text, (size_t)n) == n && fsync(fd) == 0;
    close(fd);
    ok = ok && rename(temporary, path) == 0;
    int directory = open(config->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (directory >= 0) {
        fsync(directory);
        close(directory);
    }
    return ok;
}

static bool allocate_scratch(bal_shard *shard, size_t batch) {
    shard->entries = calloc(batch, sizeof(bal_entry));
    shard->commands = calloc(batch, sizeof(bal_command));
    shard->replies = calloc(batch, sizeof(bal_reply));
    shard->outcomes = calloc(batch, sizeof(bal_outcome));
    shard->changes = calloc(batch * BAL_COMMAND_BALANCES_MAX, sizeof(bal_change));
    shard->encoded = malloc(batch * BAL_COMMAND_ENCODED_MAX);
    shard->offsets = calloc(batch + 1, sizeof(uint32_t));
    shard->lsns = calloc(batch, sizeof(uint64_t));
    shard->recalls = calloc(batch, sizeof(bal_ledger_recall));
    shard->recalled_commands = calloc(batch, sizeof(bal_command));
    shard->recalled_outcomes = calloc(batch, sizeof(bal_outcome));
    shard->recalled_changes = calloc(batch * BAL_COMMAND_BALANCES_MAX, sizeof(bal_change));
    shard->lookup_indexes = calloc(batch, sizeof(uint32_t));
    shard->id_hashes = calloc(batch, sizeof(uint64_t));
    shard->fresh = calloc(batch, sizeof(bool));
    shard->claims = calloc(batch, sizeof(bal_ids_owner));
    shard->claim_hashes = calloc(batch, sizeof(uint64_t));
    shard->claim_outcomes = calloc(batch, sizeof(bal_ids_outcome));
    shard->claim_owners = calloc(batch, sizeof(bal_ids_owner));
    shard->claim_contested = calloc(batch, sizeof(bool));
    return shard->entries && shard->commands && shard->replies && shard->outcomes && shard->changes &&
           shard->encoded && shard->offsets && shard->lsns && shard->recalls && shard->recalled_commands &&
           shard->recalled_outcomes && shard->recalled_changes && shard->lookup_indexes && shard->id_hashes &&
           shard->fresh && shard->claims && shard->claim_hashes && shard->claim_outcomes && shard->claim_owners &&
           shard->claim_contested;
}

static void free_scratch(bal_shard *shard) {
    free(shard->entries); free(shard->commands); free(shard->replies); free(shard->outcomes);
    free(shard->changes); free(shard->encoded); free(shard->offsets); free(shard->lsns);
    free(shard->recalls); free(shard->recalled_commands); free(shard->recalled_outcomes);
    free(shard->recalled_changes); free(shard->lookup_indexes); free(shard->id_hashes); free(shard->fresh);
    free(shard->claims); free(shard->claim_hashes); free(shard->claim_outcomes); free(shard->claim_owners);
    free(shard->claim_contested);
}

static bool open_log(bal_node *node, bal_shard *shard) {
    bal_wal_options options = {.segment_bytes = node->config.wal_segment_bytes};
    bal_wal_open_report report;
    char error[512];
    bal_wal_status status = bal_wal_open(shard->wal_directory, &options, &shard->wal, &report, error, sizeof(error));
    if (status != BAL_WAL_OK) {
        bal_log(BAL_LOG_ERROR, "wal_open_failed", "\"shard\":%u,\"status\":\"%s\",\"detail\":\"%.400s\"",
                shard->index, bal_wal_status_name(status), error);
        return false;
    }
    if (report.tail_truncated) {
        bal_log(BAL_LOG_WARN, "wal_tail_truncated", "\"shard\":%u,\"offset\":%llu,\"bytes\":%llu,\"detail\":\"%.300s\"",
                shard->index, (unsigned long long)report.tail_offset, (unsigned long long)report.tail_bytes_removed,
                report.message);
    }
    return true;
}

static bool load_snapshot(bal_shard *shard) {
    uint64_t lsn = 0;
    void *bytes = NULL;
    size_t length = 0;
    bal_snapfile_load_report report;
    char error[512];
    bal_snapfile_status status = bal_snapfile_load_latest(shard->snapshot_directory, &lsn, &bytes, &length, &report,
                                                          error, sizeof(error));
    for (uint32_t i = 0; i < report.rejected_count && i < 8; i++) {
        bal_log(BAL_LOG_WARN, "snapshot_rejected", "\"shard\":%u,\"file\":\"%.200s\",\"reason\":\"%.200s\"",
                shard->index, report.rejected[i].name, report.rejected[i].reason);
    }
    if (status == BAL_SNAPFILE_NONE) return true;
    if (status != BAL_SNAPFILE_OK) {
        bal_log(BAL_LOG_ERROR, "snapshot_load_failed", "\"shard\":%u,\"status\":%d,\"detail\":\"%.300s\"",
                shard->index, (int)status, error);
        return false;
    }
    bal_ledger_status decoded = bal_ledger_snapshot_decode(shard->ledger, bytes, length);
    bal_snapfile_free(bytes);
    if (decoded != BAL_LEDGER_OK) {
        bal_log(BAL_LOG_ERROR, "snapshot_decode_failed", "\"shard\":%u,\"lsn\":%llu,\"status\":\"%s\"",
                shard->index, (unsigned long long)lsn, bal_ledger_status_name(decoded));
        return false;
    }
    shard->snapshot_lsn = lsn;
    return true;
}

static bool open_shard(bal_node *node, uint32_t index) {
    bal_shard *shard = &node->shards[index];
    shard->index = index;
    shard->node = node;
    snprintf(shard->directory, sizeof(shard->directory), "%s/shard-%u", node->config.data_dir, index);
    snprintf(shard->wal_directory, sizeof(shard->wal_directory), "%s/wal", shard->directory);
    snprintf(shard->snapshot_directory, sizeof(shard->snapshot_directory), "%s/snapshots", shard->directory);
    if (!make_directory(shard->directory) || !make_directory(shard->wal_directory) ||
        !make_directory(shard->snapshot_directory)) return false;
    bal_ledger_config ledger_config;
    bal_ledger_config_default(&ledger_config);
    ledger_config.balance_capacity = node->config.balance_capacity;
    ledger_config.idempotency_count_max = node->config.idempotency_count;
    ledger_config.idempotency_bytes_max = node->config.idempotency_bytes;
    ledger_config.idempotency_retention_ms = node->config.idempotency_retention_ms;
    ledger_config.hash_seed = bal_hash_u64((uint64_t)bal_node_now_ns(), index);
    if (bal_ledger_create(&ledger_config, &shard->ledger) != BAL_LEDGER_OK) {
        bal_log(BAL_LOG_ERROR, "ledger_create_failed", "\"shard\":%u", index);
        return false;
    }
    /* Always ask about ids missing from memory: the node's id filter (bal_ids.h) answers
     * most of them without the journal, and the claims need every new id. */
    bal_ledger_set_forgetful(shard->ledger);
    pthread_mutex_init(&shard->park_mutex, NULL);
    pthread_cond_init(&shard->park_cond, NULL);
    size_t batch = node->config.batch_max;
    return allocate_scratch(shard, batch) && bal_queue_init(&shard->queue, sizeof(bal_entry), node->config.queue_depth) &&
           open_log(node, shard) && load_snapshot(shard);
}

/* ---------------- recovery ---------------- */

typedef struct last_record {
    bool found;
    bal_command command;
} last_record;

static int keep_last(void *context, uint64_t lsn, const void *payload, size_t length) {
    (void)lsn;
    last_record *last = context;
    last->found = bal_command_decode(payload, length, &last->command);
    return 0;
}

static void read_last(bal_shard *shard, last_record *last) {
    last->found = false;
    uint64_t next = bal_wal_next_lsn(shard->wal);
    if (next <= bal_wal_first_lsn(shard->wal) || next <= 1) return;
    bal_wal_replay(shard->wal, next - 1, keep_last, last);
}

/* The shards and leg masks of a command, leg 0's shard first. */
static uint32_t route_legs(const bal_node *node, const bal_command *command, uint32_t *shards, uint16_t *masks) {
    bal_leg legs[BAL_COMMAND_BALANCES_MAX];
    unsigned total = bal_command_legs(command, legs);
    uint32_t count = 0;
    for (unsigned leg = 0; leg < total; leg++) {
        uint32_t shard = bal_node_shard_of(node, legs[leg].account_id);
        uint32_t k = 0;
        while (k < count && shards[k] != shard) k++;
        if (k == count) {
            shards[count] = shard;
            masks[count++] = 0;
        }
        masks[k] |= (uint16_t)(1u << leg);
    }
    return count;
}

uint32_t bal_node_route(const bal_node *node, const bal_command *command, uint32_t *shards, uint16_t *masks);
uint32_t bal_node_route(const bal_node *node, const bal_command *command, uint32_t *shards, uint16_t *masks) {
    return route_legs(node, command, shards, masks);
}

/* A command spanning shards is the last record of every involved log that holds it (its
 * shards wrote nothing until all logs had synced it). If a crash came between those
 * syncs, append it where it is missing, with that shard's legs and the same decision. */
static bool complete_cross_commands(bal_node *node) {
    uint32_t n = node->config.shard_count;
    for (uint32_t s = 0; s < n; s++) {
        last_record mine;
        read_last(&node->shards[s], &mine);
        if (!mine.found || mine.command.leg_mask == 0) continue;
        uint32_t shards[BAL_EVENT_LEGS_MAX];
        uint16_t masks[BAL_EVENT_LEGS_MAX];
        uint32_t count = route_legs(node, &mine.command, shards, masks);
        bal_digest digest = bal_command_digest(&mine.command);
        for (uint32_t k = 0; k < count; k++) {
            if (shards[k] == s) continue;
            bal_shard *other = &node->shards[shards[k]];
            last_record theirs;
            read_last(other, &theirs);
            if (theirs.found && theirs.command.leg_mask != 0 &&
                bal_digest_equal(bal_command_digest(&theirs.command), digest)) continue;
            bal_command missing = mine.command;
            missing.leg_mask = masks[k];
            uint8_t buffer[BAL_COMMAND_ENCODED_MAX];
            size_t length = bal_command_encode(&missing, buffer);
            uint64_t lsn = 0;
            if (bal_wal_append(other->wal, buffer, length, &lsn) != BAL_WAL_OK || bal_wal_sync(other->wal) != BAL_WAL_OK) {
                bal_log(BAL_LOG_ERROR, "cross_completion_failed", "\"shard\":%u", other->index);
                return false;
            }
            bal_log(BAL_LOG_WARN, "cross_command_completed", "\"transaction_id\":\"%.*s\",\"from_shard\":%u,\"to_shard\":%u,\"lsn\":%llu",
                    mine.command.transaction_id_length, mine.command.transaction_id, s, other->index, (unsigned long long)lsn);
        }
    }
    return true;
}

typedef struct replay_state {
    bal_shard *shard;
    size_t count;
    size_t batch;
    uint64_t journal_lsn;
    uint64_t replayed;
    bool failed;
} replay_state;

static void replay_flush(replay_state *state) {
    bal_shard *shard = state->shard;
    if (state->count == 0) return;
    uint64_t last_lsn = shard->lsns[state->count - 1];
    bal_shard_flush(shard, state->count, true);
    if (last_lsn > state->journal_lsn) {
        bal_persister_submit(shard->node, shard, state->count, shard->outcomes, shard->changes, last_lsn);
    }
    atomic_store(&shard->acked_lsn, last_lsn);
    state->replayed += state->count;
    state->count = 0;
}

static int replay_record(void *context, uint64_t lsn, const void *payload, size_t length) {
    replay_state *state = context;
    bal_shard *shard = state->shard;
    size_t i = state->count;
    if (!bal_command_decode(payload, length, &shard->commands[i])) {
        bal_log(BAL_LOG_ERROR, "wal_record_undecodable", "\"shard\":%u,\"lsn\":%llu", shard->index, (unsigned long long)lsn);
        state->failed = true;
        return 1;
    }
    if (i == 0) shard->offsets[0] = 0;
    memcpy(shard->encoded + shard->offsets[i], payload, length);
    shard->offsets[i + 1] = shard->offsets[i] + (uint32_t)length;
    shard->lsns[i] = lsn;
    memset(&shard->replies[i], 0, sizeof(bal_reply));
    state->count++;
    if (state->count == state->batch) replay_flush(state);
    return 0;
}

static bool replay_shard(bal_node *node, bal_shard *shard) {
    int64_t start = bal_node_now_ns();
    uint64_t journal_lsn = 0;
    char error[512];
    if (bal_journal_position(node->writer, shard->index, &journal_lsn, error, sizeof(error)) != BAL_JOURNAL_OK) {
        bal_log(BAL_LOG_ERROR, "journal_position_failed", "\"shard\":%u,\"detail\":\"%.300s\"", shard->index, error);
        return false;
    }
    /* The log may lose only records nobody was told about (a torn tail). If the snapshot or
     * the journal covers records beyond the log's end, records that were acknowledged are
     * gone (a deleted segment, a damaged disk): refuse rather than run on without them. */
    uint64_t last_lsn = bal_wal_next_lsn(shard->wal) - 1;
    if (last_lsn < shard->snapshot_lsn || last_lsn < journal_lsn) {
        bal_log(BAL_LOG_ERROR, "wal_missing_records",
                "\"shard\":%u,\"wal_directory\":\"%.300s\",\"log_ends_at\":%llu,\"snapshot_lsn\":%llu,\"journal_lsn\":%llu,"
                "\"detail\":\"the log ends before records that the snapshot or the journal hold: acknowledged records are "
                "missing from the log; restore its segments from a backup\"",
                shard->index, shard->wal_directory, (unsigned long long)last_lsn, (unsigned long long)shard->snapshot_lsn,
                (unsigned long long)journal_lsn);
        return false;
    }
    if (journal_lsn < shard->snapshot_lsn) {
        bal_log(BAL_LOG_ERROR, "journal_behind_snapshot",
                "\"shard\":%u,\"journal_lsn\":%llu,\"snapshot_lsn\":%llu,\"detail\":\"journal rows between them are missing\"",
                shard->index, (unsigned long long)journal_lsn, (unsigned long long)shard->snapshot_lsn);
    }
    atomic_store(&shard->persisted_lsn, journal_lsn);
    atomic_store(&shard->acked_lsn, shard->snapshot_lsn);
    size_t batch = node->config.batch_max;
    if (batch > bal_ledger_batch_max(shard->ledger)) batch = bal_ledger_batch_max(shard->ledger);
    replay_state state = {shard, 0, batch, journal_lsn, 0, false};
    uint64_t from = shard->snapshot_lsn + 1;
    if (from < bal_wal_next_lsn(shard->wal)) {
        bal_wal_status status = bal_wal_replay(shard->wal, from, replay_record, &state);
        if (status != BAL_WAL_OK && status != BAL_WAL_STOPPED) {
            bal_log(BAL_LOG_ERROR, "wal_replay_failed", "\"shard\":%u,\"status\":\"%s\",\"detail\":\"%.300s\"",
                    shard->index, bal_wal_status_name(status), bal_wal_errstr(shard->wal));
            return false;
        }
    }
    if (state.failed) return false;
    replay_flush(&state);
    atomic_store(&shard->acked_lsn, bal_wal_next_lsn(shard->wal) - 1);
    bal_digest hash = bal_ledger_hash(shard->ledger);
    bal_log(BAL_LOG_INFO, "shard_recovered",
            "\"shard\":%u,\"snapshot_lsn\":%llu,\"replayed\":%llu,\"next_lsn\":%llu,\"balances\":%llu,\"sequence\":%llu,"
            "\"state_hash\":\"%016llx%016llx\",\"ms\":%.1f",
            shard->index, (unsigned long long)shard->snapshot_lsn, (unsigned long long)state.replayed,
            (unsigned long long)bal_wal_next_lsn(shard->wal), (unsigned long long)bal_ledger_balance_count(shard->ledger),
            (unsigned long long)bal_ledger_sequence(shard->ledger), (unsigned long long)hash.high,
            (unsigned long long)hash.low, (double)(bal_node_now_ns() - start) / 1e6);
    return true;
}

/* ---------------- threads and the orderly stop ---------------- */

/* Signals are blocked in every thread (bal_node_block_signals, called before any thread
 * starts) and taken here with sigwait: SIGTERM and SIGINT stop the server, SIGHUP reloads
 * the API keys. A handler could do neither safely. */
void bal_node_block_signals(void) {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &set, NULL);
    signal(SIGPIPE, SIG_IGN);
}

static void *signal_main(void *argument) {
    bal_node *node = argument;
    bal_thread_name("bal-signal", -1);
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    for (;;) {
        int number = 0;
        if (sigwait(&set, &number) != 0) continue;
        if (number == SIGHUP) {
            bal_node_reload_keys(node);
            continue;
        }
        bal_log(BAL_LOG_INFO, "signal", "\"signal\":\"%s\"", number == SIGTERM ? "SIGTERM" : "SIGINT");
        bal_http_server_stop(node->server);
        return NULL;
    }
}

static bool open_journal(bal_node *node) {
    snprintf(node->journal_path, sizeof(node->journal_path), "%s/journal.sqlite3", node->config.data_dir);
    char error[512];
    bal_journal_options options = bal_journal_options_default();
    if (bal_journal_open(node->journal_path, &options, &node->writer, error, sizeof(error)) != BAL_JOURNAL_OK) {
        bal_log(BAL_LOG_ERROR, "journal_open_failed", "\"path\":\"%.300s\",\"detail\":\"%.300s\"", node->journal_path, error);
        return false;
    }
    bal_journal_options reader = bal_journal_options_default();
    reader.read_only = true;
    node->readers = calloc(node->config.http_threads, sizeof(bal_journal *));
    node->single_tokens = calloc(node->config.http_threads, sizeof(bal_json_token *));
    node->batch_tokens = calloc(node->config.http_threads, sizeof(bal_json_token *));
    if (node->readers == NULL || node->single_tokens == NULL || node->batch_tokens == NULL) return false;
    for (uint32_t i = 0; i < node->config.http_threads; i++) {
        if (bal_journal_open(node->journal_path, &reader, &node->readers[i], error, sizeof(error)) != BAL_JOURNAL_OK) return false;
    }
    for (uint32_t s = 0; s < node->config.shard_count; s++) {
        if (bal_journal_open(node->journal_path, &reader, &node->shards[s].reader, error, sizeof(error)) != BAL_JOURNAL_OK) return false;
    }
    return true;
}

static bool init_shared(bal_node *node) {
    pthread_mutex_init(&node->cross_route_mutex, NULL);
    pthread_mutex_init(&node->progress_mutex, NULL);
    bal_wait_cond_init(&node->progress_cond);
    return bal_queue_init(&node->coordinator_queue, sizeof(bal_cross *), node->config.queue_depth) &&
           bal_queue_init(&node->persister_queue, sizeof(bal_persist_item), 4096);
}

/* What the start-up scan of the journal's ids needs. */
typedef struct id_load {
    bal_ids *ids;
    uint32_t shard_count;
    const uint64_t *snapshot_sequence; /* per shard: the last sequence its snapshot covers */
    uint64_t remembered;
    size_t pending;                    /* hashes waiting in batch: remembered together, */
    uint64_t batch[256];               /* so that the filter can prefetch their blocks */
} id_load;

static void remember_batch(id_load *load) {
    bal_ids_remember(load->ids, load->batch, NULL, load->pending);
    load->remembered += load->pending;
    load->pending = 0;
}

static void remember_hash(void *context, uint64_t hash, uint32_t shard, uint64_t sequence) {
    id_load *load = context;
    /* A row after its shard's snapshot belongs to a command that the log replays, and replay
     * adds the ids of its commands to the filter as it goes (each the moment it first
     * appears). Left out here, a replayed command's id is new to the filter at its first use
     * and needs no journal look-up, which made most of a replay's time after a clean stop
     * (every replayed id is in the journal then). A later use of the same id finds it in the
     * filter again. */
    if (shard < load->shard_count && sequence > load->snapshot_sequence[shard]) return;
    load->batch[load->pending++] = hash;
    if (load->pending == sizeof(load->batch) / sizeof(load->batch[0])) remember_batch(load);
}

/* The id filter starts with every id the journal holds up to each shard's snapshot; replay
 * adds the log's newer ones. */
static bool load_ids(bal_node *node) {
    if (!bal_ids_create(node->config.id_filter_bytes, node->config.journal_lag_max, node->config.shard_count, &node->ids)) {
        bal_log(BAL_LOG_ERROR, "id_filter_create_failed", "\"bytes\":%llu", (unsigned long long)node->config.id_filter_bytes);
        return false;
    }
    int64_t start = bal_node_now_ns();
    uint64_t count = 0;
    uint64_t snapshot_sequence[BAL_NODE_SHARDS_MAX];
    for (uint32_t s = 0; s < node->config.shard_count; s++) snapshot_sequence[s] = bal_ledger_sequence(node->shards[s].ledger);
    id_load load = {.ids = node->ids, .shard_count = node->config.shard_count, .snapshot_sequence = snapshot_sequence};
    char error[512];
    if (bal_journal_scan_transaction_hashes(node->writer, remember_hash, &load, &count, error, sizeof(error)) !=
        BAL_JOURNAL_OK) {
        bal_log(BAL_LOG_ERROR, "id_filter_load_failed", "\"detail\":\"%.300s\"", error);
        return false;
    }
    remember_batch(&load);
    uint64_t design_ids = node->config.id_filter_bytes * 8 / 16;
    bal_log(count > design_ids ? BAL_LOG_WARN : BAL_LOG_INFO, "id_filter_loaded",
            "\"ids\":%llu,\"left_to_replay\":%llu,\"design_ids\":%llu,\"bytes\":%llu,\"ms\":%.1f",
            (unsigned long long)load.remembered, (unsigned long long)(count - load.remembered),
            (unsigned long long)design_ids, (unsigned long long)node->config.id_filter_bytes,
            (double)(bal_node_now_ns() - start) / 1e6);
    return true;
}

/* Replayed ids are in the filter but hold no claims: until their rows are in the journal,
 * another shard could not find them there. Serving starts once the journal has caught up. */
static void wait_journal(bal_node *node) {
    int64_t start = bal_node_now_ns();
    while (!bal_node_wait_persisted(node, -1, 10000)) {
        bal_log(BAL_LOG_INFO, "waiting_for_journal", "\"seconds\":%.0f", (double)(bal_node_now_ns() - start) / 1e9);
    }
}

static bool recover(bal_node *node) {
    for (uint32_t s = 0; s < node->config.shard_count; s++) {
        if (!open_shard(node, s)) return false;
    }
    if (!open_journal(node) || !load_ids(node) || !complete_cross_commands(node)) return false;
    if (pthread_create(&node->persister_thread, NULL, bal_persister_main, node) != 0) return false;
    for (uint32_t s = 0; s < node->config.shard_count; s++) {
        if (!replay_shard(node, &node->shards[s])) return false;
    }
    wait_journal(node);
    return true;
}

static bool start_server(bal_node *node) {
    bal_http_config http;
    bal_http_config_init(&http);
    http.host = node->config.listen_host;
    http.port = node->config.listen_port;
    http.thread_count = node->config.http_threads;
    http.connections_max = node->config.connections_max;
    http.body_bytes_max = BAL_BODY_BYTES_MAX;
    char error[512];
    bal_http_status status = bal_http_server_create(&http, bal_routes_handle, node, &node->server, error, sizeof(error));
    if (status != BAL_HTTP_OK) {
        bal_log(BAL_LOG_ERROR, "listen_failed", "\"host\":\"%s\",\"port\":%u,\"detail\":\"%.300s\"",
                node->config.listen_host, node->config.listen_port, error);
        return false;
    }
    return true;
}

static void stop_threads(bal_node *node, uint32_t shards_started, bool coordinator_started) {
    for (uint32_t s = 0; s < node->config.shard_count; s++) bal_queue_close(&node->shards[s].queue);
    for (uint32_t s = 0; s < shards_started; s++) pthread_join(node->shards[s].thread, NULL);
    bal_queue_close(&node->coordinator_queue);
    if (coordinator_started) pthread_join(node->coordinator_thread, NULL);
    bal_queue_close(&node->persister_queue);
    pthread_join(node->persister_thread, NULL);
}

static void close_all(bal_node *node) {
    char error[256];
    if (node->writer != NULL) bal_journal_checkpoint(node->writer, error, sizeof(error));
    for (uint32_t s = 0; s < node->config.shard_count; s++) {
        bal_shard *shard = &node->shards[s];
        if (shard->wal != NULL && bal_wal_close(shard->wal, error, sizeof(error)) != BAL_WAL_OK) {
            bal_log(BAL_LOG_ERROR, "wal_close_failed", "\"shard\":%u,\"detail\":\"%.200s\"", s, error);
        }
        bal_journal_close(shard->reader);
        bal_ledger_destroy(shard->ledger);
        bal_queue_destroy(&shard->queue);
        free_scratch(shard);
    }
    for (uint32_t i = 0; node->readers != NULL && i < node->config.http_threads; i++) bal_journal_close(node->readers[i]);
    for (uint32_t i = 0; node->single_tokens != NULL && i < node->config.http_threads; i++) free(node->single_tokens[i]);
    for (uint32_t i = 0; node->batch_tokens != NULL && i < node->config.http_threads; i++) free(node->batch_tokens[i]);
    free(node->readers);
    free(node->single_tokens);
    free(node->batch_tokens);
    bal_journal_close(node->writer);
    bal_queue_destroy(&node->coordinator_queue);
    bal_queue_destroy(&node->persister_queue);
    bal_ids_destroy(node->ids);
}

static void log_start(const bal_node_config *c) {
    bal_log(BAL_LOG_INFO, "starting",
            "\"listen\":\"%s:%u\",\"data_dir\":\"%.300s\",\"shards\":%u,\"http_threads\":%u,\"balance_capacity\":%llu,"
            "\"idempotency_count\":%u,\"idempotency_bytes\":%llu,\"idempotency_retention_ms\":%lld,\"batch_max\":%u,"
            "\"queue_depth\":%u,\"snapshot_every\":%llu,\"wal_segment_bytes\":%llu,\"id_filter_bytes\":%llu,"
            "\"journal_lag_max\":%u,\"keys_file\":\"%.300s\",\"nonce_memory\":%u",
            c->listen_host, c->listen_port, c->data_dir, c->shard_count, c->http_threads,
            (unsigned long long)c->balance_capacity, c->idempotency_count, (unsigned long long)c->idempotency_bytes,
            (long long)c->idempotency_retention_ms, c->batch_max, c->queue_depth, (unsigned long long)c->snapshot_every,
            (unsigned long long)c->wal_segment_bytes, (unsigned long long)c->id_filter_bytes, c->journal_lag_max,
            c->keys_file[0] ? c->keys_file : "(none)", c->nonce_memory);
}

int bal_node_run(const bal_node_config *config) {
    bal_node *node = calloc(1, sizeof(*node));
    if (node == NULL) return 1;
    node->config = *config;
    node->start_time_seconds = (double)time(NULL);
    log_start(config);
    int64_t start = bal_node_now_ns();
    if (!start_auth(node) || !make_directory(config->data_dir) || !check_meta(config) || !init_shared(node) ||
        !recover(node) || !start_server(node)) {
        bal_log(BAL_LOG_ERROR, "start_failed", "\"detail\":\"see the lines above\"");
        _exit(1); /* threads may be blocked on half-built state: leave at once; the log is intact */
    }
    uint32_t started = 0;
    bool coordinator = pthread_create(&node->coordinator_thread, NULL, bal_coordinator_main, node) == 0;
    for (uint32_t s = 0; coordinator && s < config->shard_count; s++, started++) {
        if (pthread_create(&node->shards[s].thread, NULL, bal_shard_main, &node->shards[s]) != 0) break;
    }
    pthread_t signal_thread;
    if (pthread_create(&signal_thread, NULL, signal_main, node) != 0) _exit(1);
    pthread_detach(signal_thread);
    atomic_store(&node->ready, 1);
    bal_log(BAL_LOG_INFO, "listening", "\"host\":\"%s\",\"port\":%u,\"recovery_ms\":%.1f", config->listen_host,
            bal_http_server_port(node->server), (double)(bal_node_now_ns() - start) / 1e6);
    bal_http_server_run(node->server); /* until SIGTERM/SIGINT; every deferred request answered */
    atomic_store(&node->stopping, 1);
    bal_log(BAL_LOG_INFO, "stopping", "\"reason\":\"signal\"");
    stop_threads(node, started, coordinator);
    bal_http_server_destroy(node->server);
    close_all(node);
    for (uint32_t i = 0; node->auth_readers != NULL && i < config->http_threads; i++) {
        bal_auth_reader_close(node->auth_readers[i]);
    }
    free(node->auth_readers);
    bal_auth_destroy(node->auth);
    bal_log(BAL_LOG_INFO, "stopped", "\"exit_code\":0");
    free(node);
    return 0;
}

void bal_node_reload_keys(bal_node *node) {
    if (node->auth == NULL) {
        bal_log(BAL_LOG_INFO, "keys_reload_skipped", "\"detail\":\"no keys file configured\"");
        return;
    }
    char error[512];
    bal_auth_status status = bal_auth_load(node->auth, node->config.keys_file, error, sizeof(error));
    if (status != BAL_AUTH_OK) {
        bal_log(BAL_LOG_ERROR, "keys_reload_failed", "\"status\":\"%s\",\"detail\":\"%.300s\",\"kept\":\"the previous keys\"",
                bal_auth_status_name(status), error);
        return;
    }
    bal_log(BAL_LOG_INFO, "keys_reloaded", "\"keys\":%zu", bal_auth_key_count(node->auth));
}

static bool is_loopback(const char *host) {
    return strncmp(host, "127.", 4) == 0 || strcmp(host, "::1") == 0 || strcmp(host, "localhost") == 0;
}

/* With keys, every API request is signed and checked; without, the node serves loopback
 * only (SPEC: Security) and refuses to listen anywhere else. */
static bool start_auth(bal_node *node) {
    if (node->config.keys_file[0] == '\0') {
        if (!is_loopback(node->config.listen_host)) {
            bal_log(BAL_LOG_ERROR, "keys_required", "\"listen\":\"%s\",\"detail\":\"no API keys are configured "
                    "(--keys-file): the node listens on loopback only\"", node->config.listen_host);
            return false;
        }
        bal_log(BAL_LOG_WARN, "no_api_keys", "\"detail\":\"no --keys-file: requests are not authenticated; "
                "listening on loopback only\"");
        return true;
    }
    bal_auth_config config;
    bal_auth_config_default(&config);
    config.nonce_count_max = node->config.nonce_memory;
    char error[512];
    bal_auth_status status = bal_auth_create(&config, &node->auth, error, sizeof(error));
    if (status == BAL_AUTH_OK) status = bal_auth_load(node->auth, node->config.keys_file, error, sizeof(error));
    if (status != BAL_AUTH_OK) {
        bal_log(BAL_LOG_ERROR, "keys_load_failed", "\"status\":\"%s\",\"detail\":\"%.300s\"", bal_auth_status_name(status), error);
        return false;
    }
    /* Each HTTP thread checks through its own reader: no lock for the key set per request. */
    node->auth_readers = calloc(node->config.http_threads, sizeof(bal_auth_reader *));
    bool opened = node->auth_readers != NULL;
    for (uint32_t i = 0; opened && i < node->config.http_threads; i++) {
        node->auth_readers[i] = bal_auth_reader_open(node->auth);
        opened = node->auth_readers[i] != NULL;
    }
    if (!opened) {
        bal_log(BAL_LOG_ERROR, "out_of_memory", "\"where\":\"auth_readers\"");
        return false;
    }
    bal_log(BAL_LOG_INFO, "keys_loaded", "\"keys\":%zu", bal_auth_key_count(node->auth));
    return true;
}
