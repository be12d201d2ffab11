-- Build contexts, build options and per-tag digests.
-- options: JSON object of the build options as validated (BuildOptions); '{}' for
--   builds from before this migration, which read as the defaults.
-- digests: JSON object tag -> manifest digest the registry confirmed.
-- context_dockerfile: where the daemon finds the Dockerfile inside the stored
--   builds/{id}/context.tar; NULL when the build has no context.
ALTER TABLE builds ADD COLUMN options TEXT NOT NULL DEFAULT '{}';
ALTER TABLE builds ADD COLUMN digests TEXT NOT NULL DEFAULT '{}';
ALTER TABLE builds ADD COLUMN context_dockerfile TEXT;
