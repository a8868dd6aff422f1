-- The models of the record: a release exported as a model folder (`karpa model
-- export`), verified against its crown note and published with a download link
-- (`karpa model publish`). Its numbers are config.json's, its card the README.
CREATE TABLE models (
    id             BIGSERIAL   PRIMARY KEY,
    repo           TEXT        NOT NULL,
    name           TEXT        NOT NULL,
    tag            TEXT        NOT NULL,
    config         TEXT        NOT NULL,
    params         BIGINT      NOT NULL,
    hidden_bpb     DOUBLE PRECISION NOT NULL,
    sigma          DOUBLE PRECISION NOT NULL,
    floor_n        INTEGER     NOT NULL,
    val_bpb        DOUBLE PRECISION NOT NULL,
    weights_sha256 TEXT        NOT NULL,
    download_url   TEXT,
    model_config   JSONB       NOT NULL,
    card           TEXT        NOT NULL,
    published_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (repo, name)
);
CREATE INDEX models_by_release ON models (repo, tag);
