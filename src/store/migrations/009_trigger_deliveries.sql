-- Push events a trigger accepted (signature checked), newest last: what the
-- trigger list shows, and what a redelivery or a repeated commit is matched on.
CREATE TABLE trigger_deliveries (
    id INTEGER PRIMARY KEY,
    trigger_name TEXT NOT NULL,
    -- The sender's delivery id; NULL when it sent none.
    delivery_id TEXT,
    git_ref TEXT NOT NULL,
    commit_sha TEXT NOT NULL,
    -- "repository:tag,tag": the same commit built to the same tags is one build.
    target TEXT NOT NULL,
    -- 'built', 'duplicate' or 'ignored'.
    outcome TEXT NOT NULL,
    build_id INTEGER,
    received_at TEXT NOT NULL
);
CREATE INDEX trigger_deliveries_by_delivery ON trigger_deliveries (trigger_name, delivery_id);
CREATE INDEX trigger_deliveries_by_commit ON trigger_deliveries (trigger_name, commit_sha, target);
-- A trigger's newest build, delivered or run by hand.
CREATE INDEX builds_by_trigger ON builds (json_extract(source, '$.trigger.name'));
