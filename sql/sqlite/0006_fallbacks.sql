-- Fallback chains (shared/fallbacks.py, docs/jobs.md "Fallbacks"): the slot's steps, each job's
-- snapshot of them, the attempts a job made and which step served it.
ALTER TABLE slot ADD COLUMN fallbacks TEXT NOT NULL DEFAULT '[]';
ALTER TABLE job ADD COLUMN fallbacks TEXT NOT NULL DEFAULT '[]';
ALTER TABLE job ADD COLUMN attempt_log TEXT NOT NULL DEFAULT '[]';
ALTER TABLE job ADD COLUMN served_by TEXT;
ALTER TABLE job ADD COLUMN fallback_step INTEGER;
