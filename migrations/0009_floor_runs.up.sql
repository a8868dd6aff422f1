-- Noise floors as state (issue 14): one row per finished seeded run of a king,
-- measured by `floor-run` jobs on any runner. A floor is complete when the
-- rule's `floor_seeds` runs of one (king, config, device class) are in. A run
-- redone after a lost lease has the same validator-chosen seed and key, so the
-- first row stands and no floor counts a run twice.
CREATE TABLE floor_runs (
    repo            TEXT             NOT NULL,
    king_tag        TEXT             NOT NULL,
    config          TEXT             NOT NULL,
    -- Like with like: a challenger is compared only with a floor of its class.
    device_class    TEXT             NOT NULL,
    seed            BIGINT           NOT NULL CHECK (seed >= 0),
    hidden_bpb      DOUBLE PRECISION NOT NULL,
    -- Every scored token's hidden nats (little-endian f32): the causality
    -- check aims its pairs with their mean over the floor's runs.
    nats            BYTEA            NOT NULL,
    harness_digest  TEXT             NOT NULL,
    runner          TEXT             NOT NULL,
    started_at      TIMESTAMPTZ      NOT NULL,
    finished_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, king_tag, config, device_class, seed)
);
