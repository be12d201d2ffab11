-- A push that lands is recorded whatever happens after (issue 26).
-- tags_pushed: JSON array of the tags a build that did not succeed wrote to the
--   registry, or may have (its push got as far as the manifest before it failed,
--   was cancelled or stalled): the registry may serve its image under them.
--   '[]' for a build that succeeded (its digests say) or never got that far.
ALTER TABLE builds ADD COLUMN tags_pushed TEXT NOT NULL DEFAULT '[]';
