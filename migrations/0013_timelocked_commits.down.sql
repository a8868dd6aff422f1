DELETE FROM chain_epochs WHERE mode = 'timelocked' OR state IN ('revealed', 'dropped');
DROP INDEX chain_epochs_due;
CREATE INDEX chain_epochs_due ON chain_epochs (next_try_at) WHERE state NOT IN ('finalized', 'failed');
ALTER TABLE chain_epochs DROP COLUMN tlock_commit, DROP COLUMN reveal_round, DROP COLUMN reveal_block,
    DROP COLUMN sent_block, DROP COLUMN commit_reveal_version;
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_state_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_state_check CHECK (state IN
    ('blocked', 'pending', 'submitted', 'committed', 'revealing', 'finalized', 'failed'));
ALTER TABLE chain_epochs DROP CONSTRAINT chain_epochs_mode_check;
ALTER TABLE chain_epochs ADD CONSTRAINT chain_epochs_mode_check CHECK (mode IN ('set', 'commit'));
