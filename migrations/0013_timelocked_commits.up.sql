-- Timelocked commits (commit-reveal v4): the weights encrypted to a drand
-- quicknet round; the chain decrypts and applies them by itself in the reveal
-- epoch, and says nothing when it cannot, so the validator looks for them.
--
--   timelocked: pending ─(sent: the ciphertext, its drand round, the reveal
--               epoch and block, the block it was sent at)─▶ submitted ─(final)─▶
--               committed ─(our weights on chain, set at or after the reveal
--               block)─▶ revealed ─(the reveal epoch over)─▶ finalized
--               committed ─(the reveal epoch over, not seen)─▶ dropped
--               pending of a past epoch ─▶ dropped (superseded, never sent late)
--               submitted whose watch failed ─(its mortality over)─▶ committed,
--               never sent twice: the reveal decides whether it landed.
--   dropped epochs are kept with the reason; the current epoch commits again.
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_mode_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_mode_check CHECK (mode IN ('set', 'commit', 'timelocked'));
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_state_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_state_check CHECK (state IN
    ('blocked', 'pending', 'submitted', 'committed', 'revealing', 'revealed', 'finalized', 'dropped', 'failed'));
ALTER TABLE chain_epochs
    ADD COLUMN tlock_commit          BYTEA,
    ADD COLUMN reveal_round          BIGINT,
    ADD COLUMN reveal_block          BIGINT,
    ADD COLUMN sent_block            BIGINT,
    ADD COLUMN commit_reveal_version INT;
DROP INDEX chain_epochs_due;
CREATE INDEX chain_epochs_due ON chain_epochs (next_try_at) WHERE state NOT IN ('finalized', 'failed', 'dropped');
