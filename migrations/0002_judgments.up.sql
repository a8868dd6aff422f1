-- One row per judge job: the check run it owns on GitHub and, once judged, the
-- verdict. Keyed by the job's dedupe key (repo, PR, head sha, bundle).
CREATE TABLE judgments (
    job_key        TEXT        PRIMARY KEY,
    repo           TEXT        NOT NULL,
    pr             BIGINT      NOT NULL,
    head_sha       TEXT        NOT NULL,
    check_run_id   BIGINT,
    bundle_digest  TEXT,
    class          TEXT,
    verdict        JSONB,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    judged_at      TIMESTAMPTZ
);
CREATE INDEX judgments_by_pr ON judgments (repo, pr);
