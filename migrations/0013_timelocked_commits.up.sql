-- Timelocked commits (commit-reveal v4): the weights encrypted to a drand
-- quicknet round; the chain decrypts and applies them by itself in the reveal
-- epoch, and says nothing when it cannot, so the validator looks for them.
--
--   timelocked: pending ─▶ submitted (the ciphertext, its drand round and reveal
--               epoch) ─▶ committed ─(our weights seen on chain from the reveal
--               epoch)─▶ revealed ─(the reveal epoch over)─▶ finalized
--               committed ─(the reveal epoch over, weights not seen)─▶ dropped
--               (kept with the reason; the current epoch commits again)
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_mode_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_mode_check CHECK (mode IN ('set', 'commit', 'timelocked'));
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_state_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_state_check CHECK (state IN
    ('blocked', 'pending', 'submitted', 'committed', 'revealing', 'revealed', 'finalized', 'dropped', 'failed'));
ALTER TABLE chain_epochs
    ADD COLUMN tlock_commit          BYTEA,
    ADD COLUMN reveal_round          BIGINT,
    ADD COLUMN commit_reveal_version INT;
DROP INDEX chain_epochs_due;
CREATE INDEX chain_epochs_due ON chain_epochs (next_try_at) WHERE state NOT IN ('finalized', 'failed', 'dropped');
