-- Confirmation runs as jobs (issue 14): the validator's own trainings of a
-- challenger, with seeds it chose, claimed in parallel by the runners. A run
-- redone after a lost lease has the same seed, so the first row stands and no
-- verdict counts a run twice. A run the recipe failed keeps its finding.
CREATE TABLE confirmation_runs (
    bundle_digest   TEXT             NOT NULL,
    device_class    TEXT             NOT NULL,
    run             INT              NOT NULL CHECK (run >= 0),
    seed            BIGINT           NOT NULL,
    hidden_bpb      DOUBLE PRECISION,
    -- The recipe's failure (a Finding as JSON), when it failed.
    finding         JSONB,
    runner          TEXT             NOT NULL,
    started_at      TIMESTAMPTZ      NOT NULL,
    finished_at     TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (bundle_digest, device_class, run),
    CHECK ((hidden_bpb IS NULL) <> (finding IS NULL))
);
