-- The crowned verdict a judge job is releasing, written before the squash merge:
-- a job retried after a crash part-way through the release resumes it with this
-- verdict (every release step is idempotent) instead of judging a merged PR.
ALTER TABLE judgments ADD COLUMN crowning JSONB;
