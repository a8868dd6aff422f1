-- Every verdict a validator publishes carries its signature: sr25519 by the
-- validator's hotkey over karpa-verdict:v1:<sha256 of the verdict's RFC 8785 form>.
-- Verdicts recorded before this migration, and local judgments without a key, have none.
ALTER TABLE verdicts
    ADD COLUMN validator TEXT,
    ADD COLUMN signature TEXT,
    ADD CONSTRAINT verdicts_signed_whole CHECK ((validator IS NULL) = (signature IS NULL));
