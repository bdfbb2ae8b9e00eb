-- 0003: the outbox. A producer that must publish an event and change the database at once
-- writes the event here in the same database transaction; a relay sends PENDING rows to
-- Kafka in id order and marks them SENT. event_id is unique, so a retried write is refused
-- and a consumer can drop a redelivered event by its id.
--
-- payload holds the exact bytes to publish. It is not of the JSON type on purpose: MySQL 8
-- stores JSON in a binary form and gives back a normalised text (other key order, other
-- spacing), MariaDB keeps the text as written; bytes are the same on both.
CREATE TABLE IF NOT EXISTS outbox_events (
    id             BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
    event_id       VARCHAR(64)  CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    topic          VARCHAR(249) CHARACTER SET ascii COLLATE ascii_bin NOT NULL,
    partition_key  VARBINARY(255) NOT NULL,
    payload        MEDIUMBLOB   NOT NULL,
    status         ENUM('PENDING', 'SENT', 'FAILED') NOT NULL DEFAULT 'PENDING',
    attempts       INT UNSIGNED NOT NULL DEFAULT 0,
    last_error     VARCHAR(512) NULL,
    created_at     DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at        DATETIME(6)  NULL,
    PRIMARY KEY (id),
    UNIQUE KEY uk_outbox_events_event (event_id),
    KEY idx_outbox_events_status (status, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
