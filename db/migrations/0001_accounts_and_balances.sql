-- 0001: accounts and their balances.
--
-- Amounts are DECIMAL(36,18): 18 integer and 18 fractional digits, exactly the range of the
-- service's fixed-point money type (src/core/bal_money.h), so every value the engine holds
-- is stored without rounding. Identifiers that the service compares byte for byte (currency
-- codes here, transaction ids in 0002) use the ascii_bin collation: 'usdt' never equals
-- 'USDT', and comparisons are the same on MySQL 8 and MariaDB, whose default collations
-- differ. Every statement can run twice without harm (see scripts/migrate.sh).

-- One row per account: which shard owns it. The account id is the exchange's own id.
CREATE TABLE IF NOT EXISTS accounts (
    account_id  BIGINT UNSIGNED NOT NULL,
    shard_id    INT UNSIGNED    NOT NULL,
    created_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    updated_at  DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (account_id),
    KEY idx_accounts_shard (shard_id),
    CONSTRAINT ck_accounts_account_id CHECK (account_id > 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;

-- One row per (account, currency), created by the first credit. The primary key is the
-- unique (account_id, currency_code): InnoDB clusters rows by it, so a batch of balance
-- upserts touches each balance through one index, and an account's balances sit together.
--
-- log_offset and sequence are the position in the shard's log of the last change written to
-- the row. The persister writes a balance only when its position is newer, which makes a
-- replayed batch a no-op instead of a double write. The CHECKs repeat the engine's rule that
-- no balance is ever negative, as a last line of defence.
CREATE TABLE IF NOT EXISTS account_balances (
    account_id     BIGINT UNSIGNED NOT NULL,
    currency_code  VARCHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    available      DECIMAL(36,18)  NOT NULL DEFAULT 0,
    frozen         DECIMAL(36,18)  NOT NULL DEFAULT 0,
    shard_id       INT UNSIGNED    NOT NULL,
    log_offset     BIGINT          NOT NULL DEFAULT -1,
    sequence       BIGINT UNSIGNED NOT NULL DEFAULT 0,
    updated_at     DATETIME(6)     NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
    PRIMARY KEY (account_id, currency_code),
    KEY idx_account_balances_shard (shard_id),
    CONSTRAINT ck_account_balances_available CHECK (available >= 0),
    CONSTRAINT ck_account_balances_frozen CHECK (frozen >= 0)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
