-- The bot's durable state: what GitHub told us, what we must do, and what we
-- have seen. One migration history for the bot and the corpus (sqlx migrate).

-- Every verified delivery, once per (app, GUID): the dedupe key of the webhook.
CREATE TABLE deliveries (
    app_id       BIGINT      NOT NULL,
    guid         TEXT        NOT NULL,
    event        TEXT        NOT NULL,
    action       TEXT,
    repo         TEXT,
    received_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- What the webhook did with it: a job id, or why it did nothing.
    outcome      TEXT        NOT NULL,
    PRIMARY KEY (app_id, guid)
);

-- Repositories the App is installed on (from installation events or a sync).
CREATE TABLE installed_repos (
    installation_id BIGINT NOT NULL,
    repo            TEXT   NOT NULL PRIMARY KEY,
    installed_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX installed_repos_by_installation ON installed_repos (installation_id);

-- The work queue. A job is claimed with FOR UPDATE SKIP LOCKED under a lease;
-- a lease that runs out (a killed worker) makes the job claimable again;
-- failures back off; after max_attempts the job is dead (kept, never lost).
CREATE TABLE jobs (
    id            BIGSERIAL   PRIMARY KEY,
    kind          TEXT        NOT NULL,
    -- Idempotency: one job per effect, e.g. judge:owner/repo#12@<sha>.
    dedupe_key    TEXT        NOT NULL UNIQUE,
    payload       JSONB       NOT NULL,
    state         TEXT        NOT NULL DEFAULT 'queued'
                  CHECK (state IN ('queued', 'running', 'done', 'dead')),
    attempts      INT         NOT NULL DEFAULT 0,
    max_attempts  INT         NOT NULL DEFAULT 5 CHECK (max_attempts > 0),
    run_after     TIMESTAMPTZ NOT NULL DEFAULT now(),
    leased_by     TEXT,
    lease_until   TIMESTAMPTZ,
    last_error    TEXT,
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX jobs_claimable ON jobs (run_after, id) WHERE state IN ('queued', 'running');

-- The judge's ledger: nonces and normalised diffs, first bundle wins.
CREATE TABLE claims (
    kind        TEXT NOT NULL CHECK (kind IN ('nonce', 'diff')),
    key         TEXT NOT NULL,
    bundle      TEXT NOT NULL,
    claimed_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, key)
);
