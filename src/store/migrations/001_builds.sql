-- One row per submitted build. AUTOINCREMENT so a deleted build's id (and its
-- stored files' folder) is never handed to another build.
CREATE TABLE builds (
    id                INTEGER PRIMARY KEY AUTOINCREMENT,
    status            TEXT    NOT NULL,
    repository        TEXT    NOT NULL,
    tags              TEXT    NOT NULL,  -- JSON array of tag strings
    push              INTEGER NOT NULL,
    registry_username TEXT,              -- the password is never stored
    image_id          TEXT,
    digest            TEXT,
    error             TEXT,
    created_at        TEXT    NOT NULL,
    started_at        TEXT,
    built_at          TEXT,
    finished_at       TEXT
);

CREATE INDEX builds_by_status ON builds (status, id);

CREATE TABLE build_logs (
    build_id INTEGER NOT NULL REFERENCES builds (id) ON DELETE CASCADE,
    seq      INTEGER NOT NULL,
    line     TEXT    NOT NULL,
    PRIMARY KEY (build_id, seq)
) WITHOUT ROWID;
