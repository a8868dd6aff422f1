-- A maintainer's request (`/karpa release minor`) that the next crown on a
-- repository be released as recipe-vX.(Y+1).0 instead of a patch bump. One
-- pending request per repository; the crown that uses it deletes it inside the
-- merge lock's transaction, so a crown that fails half-way keeps it.
CREATE TABLE release_bumps (
    repo          TEXT        PRIMARY KEY,
    requested_by  TEXT        NOT NULL,
    requested_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
