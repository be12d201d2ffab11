-- A retried build names the build it repeats.
ALTER TABLE builds ADD COLUMN retry_of INTEGER REFERENCES builds (id) ON DELETE SET NULL;
