-- The corpus: every submission a validator judged, failures included, with the
-- bundle it brought and each verdict it got. Every write is an upsert on a
-- natural key, so recording the same judgment twice changes nothing.

CREATE EXTENSION IF NOT EXISTS pg_trgm;

-- A sealed bundle, by the digest of its manifest.
CREATE TABLE bundles (
    digest          TEXT        PRIMARY KEY CHECK (digest ~ '^[0-9a-f]{64}$'),
    locator         TEXT,
    size_bytes      BIGINT      CHECK (size_bytes >= 0),
    config          TEXT        NOT NULL,
    seed            BIGINT      NOT NULL,
    harness_digest  TEXT        NOT NULL,
    tier            TEXT,
    sealed_at       TIMESTAMPTZ,
    manifest        JSONB       NOT NULL,
    -- The training curve, thinned: [[tokens_seen, loss], ...] and the public-val points.
    train_curve     JSONB       NOT NULL DEFAULT '[]',
    val_curve       JSONB       NOT NULL DEFAULT '[]'
);

-- One pull-request head with one bundle. The id is stable and citable: it is
-- derived from (repo, pr, head, bundle) alone, so every validator's corpus
-- gives the same submission the same id.
CREATE TABLE submissions (
    id              TEXT        PRIMARY KEY CHECK (id ~ '^ks-[0-9a-f]{16}$'),
    repo            TEXT        NOT NULL,
    forge           TEXT        NOT NULL CHECK (forge IN ('github', 'local')),
    pr              BIGINT      NOT NULL CHECK (pr > 0),
    head_sha        TEXT        NOT NULL,
    bundle_digest   TEXT        REFERENCES bundles (digest),
    hotkey          TEXT,
    github_login    TEXT,
    king_tag        TEXT,
    king_commit     TEXT,
    config          TEXT,
    title           TEXT        NOT NULL DEFAULT '',
    rationale       TEXT        NOT NULL DEFAULT '',
    diff            TEXT        NOT NULL DEFAULT '',
    -- The latest verdict, copied here so that lists and filters read one table.
    class           TEXT        NOT NULL,
    challenger_bpb  DOUBLE PRECISION,
    gain            DOUBLE PRECISION,
    findings_text   TEXT        NOT NULL DEFAULT '',
    submitted_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    judged_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    -- Weighted full-text search: the rationale matters most, then what the judge
    -- found, then the code. The diff is capped so that one huge patch cannot
    -- make a row unindexable.
    search          tsvector GENERATED ALWAYS AS (
                        setweight(to_tsvector('english'::regconfig, title), 'A') ||
                        setweight(to_tsvector('english'::regconfig, left(rationale, 20000)), 'A') ||
                        setweight(to_tsvector('english'::regconfig, findings_text), 'B') ||
                        setweight(to_tsvector('simple'::regconfig, left(diff, 60000)), 'C')
                    ) STORED,
    UNIQUE (repo, pr, head_sha, bundle_digest)
);
CREATE INDEX submissions_search ON submissions USING GIN (search);
CREATE INDEX submissions_recent ON submissions (judged_at DESC, id DESC);
CREATE INDEX submissions_class ON submissions (class, judged_at DESC);
CREATE INDEX submissions_hotkey ON submissions (hotkey, judged_at DESC);
CREATE INDEX submissions_king ON submissions (king_tag, judged_at DESC);
CREATE INDEX submissions_login_trgm ON submissions USING GIN (github_login gin_trgm_ops);
CREATE INDEX submissions_hotkey_trgm ON submissions USING GIN (hotkey gin_trgm_ops);

-- Each miner's standing, kept current by every recorded judgment (the home
-- page's leaderboard reads this instead of aggregating every submission).
CREATE TABLE miners (
    hotkey        TEXT             PRIMARY KEY,
    github_login  TEXT,
    submissions   BIGINT           NOT NULL DEFAULT 0,
    crowns        BIGINT           NOT NULL DEFAULT 0,
    best_gain     DOUBLE PRECISION,
    last_seen     TIMESTAMPTZ      NOT NULL DEFAULT now()
);
CREATE INDEX miners_board ON miners (crowns DESC, best_gain DESC NULLS LAST);

-- Every verdict a submission got: once per king it was judged against (a
-- re-judge after a new crown adds a row; a retried job rewrites its own).
CREATE TABLE verdicts (
    id              BIGSERIAL   PRIMARY KEY,
    submission_id   TEXT        NOT NULL REFERENCES submissions (id) ON DELETE CASCADE,
    judged_king     TEXT        NOT NULL DEFAULT '',
    class           TEXT        NOT NULL,
    summary         TEXT        NOT NULL,
    challenger_bpb  DOUBLE PRECISION,
    king_mean       DOUBLE PRECISION,
    sigma           DOUBLE PRECISION,
    n               INT,
    gain            DOUBLE PRECISION,
    threshold       DOUBLE PRECISION,
    confirmation_mean DOUBLE PRECISION,
    findings        JSONB       NOT NULL DEFAULT '[]',
    stages          JSONB       NOT NULL DEFAULT '[]',
    judge_version   TEXT        NOT NULL,
    verdict         JSONB       NOT NULL,
    judged_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (submission_id, judged_king)
);

-- The kings gain what the corpus shows: their measured numbers and who crowned them.
ALTER TABLE kings
    ADD COLUMN mean_bpb     DOUBLE PRECISION,
    ADD COLUMN sigma        DOUBLE PRECISION,
    ADD COLUMN runs         INT,
    ADD COLUMN crowned_by   TEXT,
    ADD COLUMN submission_id TEXT;

-- Each king's noise floor, as a verdict used it.
CREATE TABLE noise_floors (
    repo        TEXT             NOT NULL,
    king_tag    TEXT             NOT NULL,
    config      TEXT             NOT NULL,
    mean_bpb    DOUBLE PRECISION NOT NULL,
    sigma       DOUBLE PRECISION NOT NULL,
    n           INT              NOT NULL CHECK (n > 0),
    measured_at TIMESTAMPTZ      NOT NULL DEFAULT now(),
    PRIMARY KEY (repo, king_tag, config)
);
