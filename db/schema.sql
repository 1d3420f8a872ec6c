-- Source tables captured by the CDC pipeline. Database-agnostic on purpose: the seeder
-- (and tests) choose the database, so this file never says USE or CREATE DATABASE.
--
-- No foreign key from posts to accounts: deleting an account must reach the binlog as
-- exactly the rows the application deleted; an ON DELETE CASCADE would remove posts
-- inside InnoDB without the CDC consumer seeing a matching intent.
-- DATETIME(3) rather than TIMESTAMP: values are stored as UTC wall-clock and are not
-- shifted by the session time zone, so every consumer reads the same instant.

CREATE TABLE IF NOT EXISTS accounts (
  id           BIGINT       NOT NULL,
  platform     VARCHAR(16)  NOT NULL,
  handle       VARCHAR(64)  NOT NULL,
  display_name VARCHAR(128) NULL,
  followers    BIGINT       NOT NULL DEFAULT 0,
  bio          TEXT         NULL,
  country      CHAR(2)      NULL,
  created_at   DATETIME(3)  NOT NULL,
  updated_at   DATETIME(3)  NOT NULL,
  PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

CREATE TABLE IF NOT EXISTS posts (
  id           BIGINT       NOT NULL,
  account_id   BIGINT       NOT NULL,
  platform     VARCHAR(16)  NOT NULL,
  title        VARCHAR(512) NOT NULL,
  description  TEXT         NULL,
  url          VARCHAR(512) NULL,
  published_at DATETIME(3)  NOT NULL,
  views        BIGINT       NOT NULL DEFAULT 0,
  likes        BIGINT       NOT NULL DEFAULT 0,
  comments     BIGINT       NOT NULL DEFAULT 0,
  updated_at   DATETIME(3)  NOT NULL,
  PRIMARY KEY (id),
  -- Serves "latest posts of an account" for viability rules and re-embedding an account.
  KEY idx_posts_account_published (account_id, published_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;

-- Debezium's signalling table (connector property signal.data.collection = influential.debezium_signal).
-- Incremental snapshots write their open/close watermarks here, so the connector fails on its first
-- snapshot signal without it; the Debezium user needs INSERT, UPDATE, DELETE on it (docs/deploy.md).
-- Column names and types as the Debezium docs define the signalling table (id, type, data).
CREATE TABLE IF NOT EXISTS debezium_signal (
  id   VARCHAR(42)   NOT NULL PRIMARY KEY,
  type VARCHAR(32)   NOT NULL,
  data VARCHAR(2048) NULL
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_unicode_ci;
