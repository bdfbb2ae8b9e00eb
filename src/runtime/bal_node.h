/*
 * bal_node.h -- the embedded node: HTTP API, shards with their write-ahead logs and
 * snapshots, the cross-shard coordinator, and the journal persister, in one process.
 *
 * bal_node_run() recovers every shard (newest valid snapshot + log replay), starts the
 * threads, serves until SIGTERM or SIGINT, then stops accepting, finishes and persists the
 * work in flight, syncs, and returns the process exit code. See docs/embedded.md.
 */
#ifndef BAL_NODE_H
#define BAL_NODE_H

#include <stdbool.h>
#include <stdint.h>

#define BAL_NODE_SHARDS_MAX 64u
#define BAL_NODE_PATH_MAX 1024u

typedef struct bal_node_config {
    char listen_host[64];
    uint16_t listen_port;               /* 0: any free port (logged) */
    char data_dir[BAL_NODE_PATH_MAX];
    uint32_t shard_count;               /* 1 .. BAL_NODE_SHARDS_MAX; fixed for a data directory */
    uint32_t http_threads;
    uint32_t connections_max;
    uint64_t balance_capacity;          /* balances per shard */
    uint32_t idempotency_count;         /* recent ids per shard */
    uint64_t idempotency_bytes;         /* their memory per shard */
    int64_t idempotency_retention_ms;
    uint32_t batch_max;                 /* commands per shard batch (one log sync) */
    uint32_t queue_depth;               /* entries per shard queue */
    uint64_t snapshot_every;            /* log records per shard between snapshots; 0: never */
    uint64_t wal_segment_bytes;
    uint32_t read_wait_ms;              /* how long a read waits for the journal to catch up */
    uint64_t id_filter_bytes;           /* the node's filter of every id used (bal_ids.h) */
    uint32_t journal_lag_max;           /* ids logged but not yet in the journal, node-wide */
    char keys_file[BAL_NODE_PATH_MAX];  /* API keys (docs/auth.md); empty: no keys, loopback only */
    uint32_t nonce_memory;              /* signed requests' nonces remembered at once (docs/auth.md) */
} bal_node_config;

void bal_node_config_default(bal_node_config *config);
/* Checks ranges and relations; writes a sentence into error on failure. */
bool bal_node_config_check(const bal_node_config *config, char *error, size_t error_size);

/* Blocks SIGTERM, SIGINT and SIGHUP (and ignores SIGPIPE) in the calling thread and every
 * thread it starts later: call it first in main. The node takes them with sigwait. */
void bal_node_block_signals(void);

/* Runs the node until SIGTERM/SIGINT; returns the exit code (0 after a clean stop). */
int bal_node_run(const bal_node_config *config);

#endif
