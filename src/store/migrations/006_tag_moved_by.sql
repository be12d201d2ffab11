-- Same-tag builds (issue 20).
-- tag_moved_by: JSON object tag -> id of the build that later took this build's
--   tag over (pushed another image under it, or moved the local tag on the same
--   builder); '{}' while the build still owns all its tags.
ALTER TABLE builds ADD COLUMN tag_moved_by TEXT NOT NULL DEFAULT '{}';
-- Which other builds name an image on a builder (delete, retention, retry).
CREATE INDEX builds_by_image ON builds (image_id);
