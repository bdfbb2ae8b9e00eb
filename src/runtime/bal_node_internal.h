/*
 * bal_node_internal.h -- what the node's threads share. Not a public contract.
 *
 * Threads and who owns what:
 *   - HTTP I/O threads decode requests into commands and push entries to the shard that
 *     owns the command's account, or, for a command spanning shards, PARK entries to every
 *     involved shard and the command to the coordinator (under one mutex, so that every
 *     queue sees cross-shard commands in the same order). Reads of balances go through the
 *     owning shard's queue too (read-your-writes, and the ledger has one owner).
 *   - A shard thread owns its ledger and log: batch, look up forgotten ids in the journal,
 *     append, sync once, apply, reply, hand the batch to the persister, snapshot.
 *   - The coordinator runs a command that spans shards while those shards are parked at
 *     its PARK entry, writes the decided command into each one's log and applies it.
 *   - The persister owns the journal's writer connection.
 */
#ifndef BAL_NODE_INTERNAL_H
#define BAL_NODE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>

#include "bal_auth.h"
#include "bal_decode.h"
#include "bal_http.h"
#include "bal_ids.h"
#include "bal_journal.h"
#include "bal_journal_ids.h"
#include "bal_ledger.h"
#include "bal_metrics.h"
#include "bal_node.h"
#include "bal_queue.h"
#include "bal_text.h"
#include "bal_thread.h"
#include "bal_wal.h"

/* Responses bigger than this are refused with 500 rather than built (a full batch of
 * EVENTs renders to about 20 MiB). */
#define BAL_NODE_RESPONSE_BYTES_MAX (64u << 20)

/* A request's id: the client's X-Request-Id when it is 1..40 of [A-Za-z0-9._:-], else one
 * made here. It is returned in every response's X-Request-Id header and logged. */
#define BAL_REQUEST_ID_MAX 40

/* A batch request in flight: one rendered slot per item; the last finisher responds. */
typedef struct bal_batch_reply {
    char request_id[BAL_REQUEST_ID_MAX + 1];
    bal_http_request *request;
    uint32_t count;
    _Atomic uint32_t remaining;
    int64_t received_ns;
    bal_text *items;
} bal_batch_reply;

/* Where a command's answer goes: a single request, or a slot of a batch. */
typedef struct bal_reply {
    char request_id[BAL_REQUEST_ID_MAX + 1];
    bal_http_request *request;
    bal_batch_reply *batch;
    uint32_t index;
    int64_t received_ns;
} bal_reply;

typedef struct bal_cross {
    uint64_t ticket;           /* unique, increasing: what shards park at and are released from */
    bal_command *command;
    bal_reply reply;
    uint32_t shard_count;
    uint32_t shards[BAL_EVENT_LEGS_MAX];
    uint16_t masks[BAL_EVENT_LEGS_MAX];
} bal_cross;

typedef enum bal_entry_kind {
    BAL_ENTRY_COMMAND = 1,
    BAL_ENTRY_PARK,
    BAL_ENTRY_READ_ACCOUNT,
    BAL_ENTRY_READ_BALANCE,
} bal_entry_kind;

typedef struct bal_entry {
    uint8_t kind;
    bal_command *command;      /* COMMAND: heap, freed by the shard */
    bal_cross *cross;          /* PARK */
    bal_reply reply;
    uint64_t account_id;       /* READ_* */
    bal_currency currency;     /* READ_BALANCE */
} bal_entry;

/* A shard batch handed to the persister: commands in log encoding plus their outcomes. */
typedef struct bal_persist_item {
    uint32_t shard;
    uint32_t count;
    uint64_t last_lsn;
    uint64_t claims_mark;      /* the shard's id claims below this are stored with these rows */
    uint8_t *encoded;          /* count commands, back to back */
    uint32_t *offsets;         /* count + 1 */
    bal_outcome *outcomes;     /* first_change indexes into changes */
    bal_change *changes;
    /* A checkpoint request instead (encoded == NULL): done is set, then signalled. */
    _Atomic int *done;
} bal_persist_item;

struct bal_node;

typedef struct bal_shard {
    uint32_t index;
    struct bal_node *node;
    pthread_t thread;
    bal_queue queue;
    bal_ledger *ledger;
    bal_wal *wal;
    bal_journal *reader;       /* this thread's journal connection, for id look-ups */
    char directory[BAL_NODE_PATH_MAX + 32];
    char wal_directory[BAL_NODE_PATH_MAX + 48];
    char snapshot_directory[BAL_NODE_PATH_MAX + 48];
    /* Scratch for one batch, allocated at start. */
    bal_entry *entries;
    bal_command *commands;
    bal_reply *replies;
    bal_outcome *outcomes;
    bal_change *changes;
    uint8_t *encoded;
    uint32_t *offsets;
    uint64_t *lsns;
    bal_ledger_recall *recalls;
    bal_command *recalled_commands;
    bal_outcome *recalled_outcomes;
    bal_change *recalled_changes;
    uint32_t *lookup_indexes;
    /* Id claims (bal_ids.h), per command of the batch, and per id claimed at once. */
    uint64_t *id_hashes;
    bool *fresh;                     /* the id is new to this shard: the filter gets it; claims[]
                                      * holds its claim if this batch made one (position 0: none) */
    bal_ids_owner *claims;
    uint64_t *claim_hashes;
    bal_ids_outcome *claim_outcomes;
    bal_ids_owner *claim_owners;
    bool *claim_contested;
    /* Parking for the coordinator. */
    pthread_mutex_t park_mutex;
    pthread_cond_t park_cond;
    uint64_t parked_ticket;
    uint64_t released_ticket;
    /* Progress, read by other threads. */
    _Atomic uint64_t acked_lsn;      /* results released up to this log record */
    _Atomic uint64_t persisted_lsn;  /* journal rows stored up to this log record */
    _Atomic uint64_t balance_count;
    uint64_t snapshot_lsn;           /* newest snapshot */
    uint64_t previous_snapshot_lsn;  /* the one before (kept as a fallback) */
    uint64_t records_since_snapshot;
} bal_shard;

typedef struct bal_node {
    bal_node_config config;
    bal_shard shards[BAL_NODE_SHARDS_MAX];
    bal_metrics metrics;
    bal_http_server *server;
    bal_journal *writer;             /* the persister's */
    bal_journal **readers;           /* one per HTTP thread */
    bal_json_token **single_tokens;  /* per HTTP thread, allocated on first use */
    bal_json_token **batch_tokens;   /* per HTTP thread: BAL_DECODE_TOKENS_MAX, on first batch */
    char journal_path[BAL_NODE_PATH_MAX + 32];
    bal_queue coordinator_queue;     /* bal_cross * */
    pthread_t coordinator_thread;
    pthread_mutex_t cross_route_mutex;
    uint64_t cross_tickets;          /* under cross_route_mutex */
    bal_queue persister_queue;       /* bal_persist_item */
    pthread_t persister_thread;
    pthread_mutex_t progress_mutex;  /* with progress_cond: persister progress */
    pthread_cond_t progress_cond;
    bal_auth *auth;                  /* NULL: no keys (loopback only) */
    bal_auth_reader **auth_readers;  /* with auth: one per HTTP thread, by its index */
    bal_ids *ids;                    /* the id filter and claims across shards */
    _Atomic int ready;
    _Atomic int stopping;
    double start_time_seconds;       /* Unix time of the start, for process_start_time_seconds */
} bal_node;

/* Routing: the documented function that maps an account to its shard. */
uint32_t bal_node_shard_of(const bal_node *node, uint64_t account_id);

int64_t bal_node_now_ns(void);

/* Sends a response with the request's id in an X-Request-Id header. */
void bal_node_send(bal_http_request *request, const char *request_id, int status, const char *content_type,
                   const char *body, size_t body_length);
void bal_node_send_error(bal_http_request *request, const char *request_id, int status, const char *code,
                         const char *message);
/* An error with a Retry-After header (seconds). */
void bal_node_send_retry(bal_http_request *request, const char *request_id, int status, const char *code,
                         const char *message, uint32_t retry_after_s);

/* Answers a command (single request or batch slot). */
void bal_node_reply(bal_node *node, const bal_reply *reply, const bal_command *command,
                    const bal_outcome *outcome, const bal_change *changes);
void bal_node_reply_text(bal_node *node, const bal_reply *reply, int status, bal_text *body);

/* shard thread */
void *bal_shard_main(void *argument);
/* Runs commands through a shard's full path (look-up, log, sync, apply, persist); used
 * by the shard thread and by recovery (replay = true: no log append, no replies). */
void bal_shard_flush(bal_shard *shard, size_t count, bool replay);
bool bal_shard_snapshot(bal_shard *shard);
/* For the coordinator, with the shard parked, on shard->commands[0]: if the ledger does
 * not hold the id, claim it for this shard (when claim is set: once per command, on its
 * first shard) and look it up in the journal unless the id filter rules it out (true if
 * the ledger did not hold it; foreign_out is the sequence + 1 of another shard's use,
 * else 0). bal_shard_log_one appends it to the log, bal_shard_sync syncs the log. */
bool bal_shard_recall_one(bal_shard *shard, bool claim, bal_ledger_recall *recall_out, uint64_t *foreign_out);
/* Gives up the id claims of the batch's first count commands (they were not logged). */
void bal_shard_release_claims(bal_shard *shard, size_t count);
/* Adds the ids of the batch's first count commands to the node's id filter. */
void bal_shard_remember_ids(bal_shard *shard, size_t count);
void bal_shard_log_one(bal_shard *shard);
void bal_shard_sync(bal_shard *shard);

/* coordinator */
void *bal_coordinator_main(void *argument);

/* persister */
void *bal_persister_main(void *argument);
void bal_persister_submit(bal_node *node, bal_shard *shard, size_t count, const bal_outcome *outcomes,
                          const bal_change *changes, uint64_t last_lsn);
/* Asks the persister to make the journal durable (bal_journal_sync) and waits for it. */
bool bal_persister_checkpoint(bal_node *node);
/* Waits until every shard's journal covers what it had acknowledged when called. */
bool bal_node_wait_persisted(bal_node *node, int64_t shard /* -1: all */, uint32_t timeout_ms);

/* journal bridge: journal rows <-> commands and outcomes */
size_t bal_bridge_rows(uint32_t shard, const bal_command *command, const bal_outcome *outcome,
                       const bal_change *changes, bal_journal_row *rows);
/* Rebuilds, from all rows of one transaction id, the original request and, from this
 * shard's rows, its outcome. Returns 1 if rebuilt, 0 if only other shards' rows exist
 * (foreign_sequence_out then set), -1 if the rows do not form a transaction. */
int bal_bridge_recall(uint32_t shard, const bal_journal_row *rows, size_t row_count,
                      bal_command *command_out, bal_outcome *outcome_out, bal_change *changes_out,
                      uint64_t *foreign_sequence_out);

/* Reloads the API keys file (SIGHUP); the old keys stay in force if it is invalid. */
void bal_node_reload_keys(bal_node *node);

/* HTTP */
void bal_routes_handle(void *context, bal_http_request *request, const bal_http_head *head,
                       const char *body, size_t body_length);

#endif
