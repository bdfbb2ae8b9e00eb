-- 0002: the journal. One row per balance that a processed transaction touched (a "leg"):
-- one for DEPOSIT, WITHDRAW, FREEZE, UNFREEZE and DEDUCT_FROZEN; two for TRANSFER (leg 0 the
-- source account, leg 1 the target); one per leg for EVENT (1 to 16). A transaction rejected
-- for a business reason is journaled too, with its result and unchanged balances.
--
-- Uniqueness is (transaction_id, leg_index): a transaction id is consumed once for ever,
-- and leg 0 always exists, so the key also makes each transaction id unique, while an EVENT
-- or a TRANSFER can still have several rows.
--
-- The deltas are what was applied (zero for a rejected transaction), so that
-- after = before + delta holds on every row and replaying the journal from zero gives the
-- balances exactly; the CHECKs make the server refuse a row that breaks this. amount is the
-- requested amount of a typed operation and NULL for EVENT legs, which carry only deltas.
--
-- created_at is the time that came with the command (UTC), not the time of the insert:
-- the journal must read the same when it is rebuilt from the log. memo is bytes, as sent.
CREATE TABLE IF NOT EXISTS balance_transactions (
    id                BIGINT UNSIGNED   NOT NULL AUTO_INCREMENT,
    transaction_id    VARCHAR(64) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    leg_index         SMALLINT UNSIGNED NOT NULL,
    type              ENUM('DEPOSIT', 'WITHDRAW', 'FREEZE', 'UNFREEZE', 'DEDUCT_FROZEN',
                           'TRANSFER', 'EVENT') NOT NULL,
    account_id        BIGINT UNSIGNED   NOT NULL,
    currency_code     VARCHAR(10) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    amount            DECIMAL(36,18)    NULL,
    available_before  DECIMAL(36,18)    NOT NULL,
    available_after   DECIMAL(36,18)    NOT NULL,
    frozen_before     DECIMAL(36,18)    NOT NULL,
    frozen_after      DECIMAL(36,18)    NOT NULL,
    available_delta   DECIMAL(36,18)    NOT NULL,
    frozen_delta      DECIMAL(36,18)    NOT NULL,
    result            ENUM('ok', 'insufficient_available', 'insufficient_frozen', 'overflow') NOT NULL,
    shard_id          INT UNSIGNED      NOT NULL,
    sequence          BIGINT UNSIGNED   NOT NULL,
    log_offset        BIGINT            NOT NULL,
    created_at        DATETIME(6)       NOT NULL,
    memo              VARBINARY(256)    NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_balance_transactions_leg (transaction_id, leg_index),
    -- History pages, newest first, for an account and optionally one currency.
    KEY idx_balance_transactions_account (account_id, id),
    KEY idx_balance_transactions_account_currency (account_id, currency_code, id),
    -- Audit and recovery: a shard's journal in log order.
    KEY idx_balance_transactions_shard (shard_id, sequence),
    CONSTRAINT ck_balance_transactions_leg CHECK (leg_index < 16),
    CONSTRAINT ck_balance_transactions_amount CHECK ((type = 'EVENT') = (amount IS NULL) AND (amount IS NULL OR amount > 0)),
    CONSTRAINT ck_balance_transactions_balances CHECK (available_before >= 0 AND available_after >= 0
                                                       AND frozen_before >= 0 AND frozen_after >= 0),
    CONSTRAINT ck_balance_transactions_available_delta CHECK (available_after = available_before + available_delta),
    CONSTRAINT ck_balance_transactions_frozen_delta CHECK (frozen_after = frozen_before + frozen_delta)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
