-- Webhook deliveries (issue 11).
-- builds.callback_url: the per-build `callback_url` the request gave; NULL when none.
ALTER TABLE builds ADD COLUMN callback_url TEXT;

-- One row per webhook delivery: a build event sent to one URL, with its attempts.
-- No foreign key to builds: a `cancelled` delivery must still go out when the
-- build is deleted right after (DELETE ?force=true); a finished delivery of a
-- deleted build is removed when it ends (see store/deliveries.rs).
-- The signing secret is never stored: secret_env names the environment variable
-- (read at start) that holds it.
CREATE TABLE deliveries (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    delivery_id     TEXT    NOT NULL UNIQUE,   -- X-Dockpub-Delivery, the same on every attempt
    build_id        INTEGER NOT NULL,
    event           TEXT    NOT NULL,          -- started, succeeded, failed, cancelled
    url             TEXT    NOT NULL,
    secret_env      TEXT    NOT NULL,
    body            TEXT    NOT NULL,          -- the exact JSON sent and signed
    state           TEXT    NOT NULL,          -- pending, delivered, failed
    attempts        INTEGER NOT NULL DEFAULT 0,
    last_status     INTEGER,                   -- the receiver's last HTTP status
    last_error      TEXT,                      -- or why the last attempt got none / failed
    next_attempt_at TEXT,                      -- when a pending delivery is tried next
    created_at      TEXT    NOT NULL,
    finished_at     TEXT,
    redelivery_of   INTEGER
);

CREATE INDEX deliveries_due ON deliveries (state, next_attempt_at);
CREATE INDEX deliveries_by_build ON deliveries (build_id, id);
