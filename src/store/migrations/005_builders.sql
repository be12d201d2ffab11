-- The builder pool (issue 10). Numbered 005: 004 is left to the webhooks branch.
-- builder: the name of the builder the build runs or last ran on; NULL while queued.
-- attempts: how many times the build was claimed to run; a build that loses its
--   builder at the last allowed attempt fails instead of going back to the queue.
ALTER TABLE builds ADD COLUMN builder TEXT;
ALTER TABLE builds ADD COLUMN attempts INTEGER NOT NULL DEFAULT 0;
