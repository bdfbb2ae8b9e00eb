-- 0004: leadership and recovery, one row per shard in each table.
--
-- leader_locks is the lease. A node takes a free or expired lease with one conditional
-- UPDATE that also increments fencing_token, and renews it before expires_at. Times are the
-- database's clock (NOW(6)), never a node's, so clock skew between nodes cannot make two
-- leaders. Every store transaction of a leader re-reads its shard's row (SELECT ... FOR
-- UPDATE) and commits only if fencing_token is still its own: a deposed leader that wakes up
-- late cannot write (split brain).
CREATE TABLE IF NOT EXISTS leader_locks (
    shard_id       INT UNSIGNED    NOT NULL,
    owner_id       VARCHAR(255) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    fencing_token  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    acquired_at    DATETIME(6)     NOT NULL,
    renewed_at     DATETIME(6)     NOT NULL,
    expires_at     DATETIME(6)     NOT NULL,
    PRIMARY KEY (shard_id),
    KEY idx_leader_locks_expires (expires_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- shard_offsets is where recovery starts: the position in the shard's log (Kafka offset or
-- WAL position) of the last record whose effects are in this database, written in the same
-- transaction as those effects. A new leader loads the balances and replays the log from
-- log_offset + 1. fencing_token records which leader wrote it.
CREATE TABLE IF NOT EXISTS shard_offsets (
    shard_id       INT UNSIGNED    NOT NULL,
    log_offset     BIGINT          NOT NULL DEFAULT -1,
    sequence       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    fencing_token  BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at     DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (shard_id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
