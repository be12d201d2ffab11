-- Where a build's context was fetched from, as JSON {git, ref, commit}; NULL for
-- uploaded contexts. Never a password: URLs holding one are refused.
ALTER TABLE builds ADD COLUMN source TEXT;
