-- The line of kings per recipe repository: each crowned release, what it beat
-- and the bundle that proved it. The newest row is the current king.
CREATE TABLE kings (
    repo           TEXT        NOT NULL,
    tag            TEXT        NOT NULL,
    commit_sha     TEXT        NOT NULL,
    pr             BIGINT,
    bundle_digest  TEXT,
    hidden_bpb     DOUBLE PRECISION,
    verdict        JSONB,
    crowned_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, tag)
);
