-- The name of the API token that submitted the build (never the token itself);
-- NULL when tokens were off.
ALTER TABLE builds ADD COLUMN submitted_by TEXT;
CREATE INDEX builds_submitted_by ON builds (submitted_by, id);
