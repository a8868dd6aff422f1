-- Loss-curve images (SVG) drawn from each judged bundle's log, served at
-- /curves/{bundle_digest}.svg for the check run. Keyed by the bundle: the same
-- bundle always draws the same curve.
CREATE TABLE loss_curves (
    bundle_digest  TEXT        PRIMARY KEY,
    svg            TEXT        NOT NULL,
    drawn_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
