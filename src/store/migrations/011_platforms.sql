-- A build of several platforms: each platform's {platform, image_id, digest},
-- as the image index its tags name lists them. '[]' for single-platform builds.
ALTER TABLE builds ADD COLUMN platforms TEXT NOT NULL DEFAULT '[]';
