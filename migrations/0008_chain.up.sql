-- The chain outbox: one row per (subnet, epoch) with the weights Karpa owes the
-- chain for it, and where their submission stands. Planning an epoch twice
-- changes nothing (the key); every transition is a conditional UPDATE, so a
-- restarted validator resumes exactly where the last one stopped.
--
--   set:    pending ─▶ submitted (tx hash) ─▶ finalized (block hash)
--   commit: pending ─▶ submitted ─▶ committed ─(reveal epoch)─▶ revealing ─▶ finalized
--   blocked: the epoch could not be planned (a miner missing from the metagraph);
--   planned again on the next run.
--   an error keeps the state (a call in flight is sent again), attempts + 1, and
--   waits a backoff; after max attempts: failed (kept, shown by `karpa chain status`).
CREATE TABLE chain_epochs (
    netuid        INT         NOT NULL CHECK (netuid BETWEEN 0 AND 65535),
    epoch         BIGINT      NOT NULL CHECK (epoch >= 0),
    repo          TEXT        NOT NULL,
    king_tag      TEXT,
    -- [{"target": {"hotkey": "5…"} | "burn", "share": 0.9}, …]
    scores        JSONB       NOT NULL,
    uids          JSONB       NOT NULL,
    weights       JSONB       NOT NULL,
    version_key   BIGINT      NOT NULL,
    mode          TEXT        NOT NULL CHECK (mode IN ('set', 'commit')),
    -- Commit-reveal: the salt and hash, kept until the reveal is final.
    salt          JSONB,
    commit_hash   TEXT,
    reveal_epoch  BIGINT,
    state         TEXT        NOT NULL DEFAULT 'pending'
                  CHECK (state IN ('blocked', 'pending', 'submitted', 'committed', 'revealing', 'finalized', 'failed')),
    tx_hash       TEXT,
    block_hash    TEXT,
    attempts      INT         NOT NULL DEFAULT 0,
    last_error    TEXT,
    next_try_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (netuid, epoch)
);
CREATE INDEX chain_epochs_due ON chain_epochs (next_try_at) WHERE state NOT IN ('finalized', 'failed');
