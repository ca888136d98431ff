-- Push subscriptions: internal endpoints that catalog events are POSTed to,
-- signed with Standard Webhooks. One message per (subscription, event),
-- delivered in catalog order per entity, retried on a schedule, then dead.

-- A system event (`hookgate.subscription.disabled`) comes from no delivery:
-- `events.delivery_id` becomes nullable. SQLite can't drop a NOT NULL in
-- place, so `events` is rebuilt; nothing references it. The AUTOINCREMENT
-- high-water mark is carried over so a retention-deleted `seq` is never
-- handed out again (a consumer's cursor may already be past it).
CREATE TABLE events_new (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    delivery_id  TEXT REFERENCES deliveries(id),  -- NULL for hookgate's own events
    created_at   INTEGER NOT NULL,
    payload      TEXT NOT NULL
);
INSERT INTO events_new (seq, id, type, source, delivery_id, created_at, payload)
    SELECT seq, id, type, source, delivery_id, created_at, payload FROM events;
UPDATE sqlite_sequence SET seq = max(seq, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'events'), 0))
    WHERE name = 'events_new';
INSERT INTO sqlite_sequence (name, seq)
    SELECT 'events_new', seq FROM sqlite_sequence WHERE name = 'events'
    AND NOT EXISTS (SELECT 1 FROM sqlite_sequence WHERE name = 'events_new');
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_delivery ON events (delivery_id);

-- One row per subscription, from the config file (`managed_by = 'config'`,
-- its secrets stay in the config's references and are NULL here) or the
-- admin API (secrets stored here: they must sign on every instance).
CREATE TABLE push_subscriptions (
    name                 TEXT PRIMARY KEY,
    url                  TEXT NOT NULL,
    types                TEXT NOT NULL,          -- JSON array of type patterns
    source               TEXT,                   -- only events of this source
    secret               TEXT,                   -- whsec_...; NULL when managed by config
    previous_secret      TEXT,                   -- still signs until previous_until
    previous_until       INTEGER,
    signing_key          TEXT,                   -- whsk_... (v1a); NULL when managed by config
    timeout_ms           INTEGER NOT NULL,
    retry_schedule       TEXT NOT NULL,          -- JSON array of delays (ms)
    allow_private        INTEGER NOT NULL DEFAULT 0,
    disable_after        INTEGER NOT NULL,       -- consecutive dead letters; 0 = never
    disable_after_hours  INTEGER NOT NULL DEFAULT 0,  -- failing without a success this long; 0 = never
    status               TEXT NOT NULL CHECK (status IN ('active','paused','disabled')),
    status_reason        TEXT,
    managed_by           TEXT NOT NULL CHECK (managed_by IN ('config','api')),
    start_seq            INTEGER NOT NULL,       -- events up to this seq are not for it
    consecutive_dead     INTEGER NOT NULL DEFAULT 0,
    failing_since        INTEGER,                -- first failure since the last success
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL
);

-- One row per (subscription, catalog event). `entity` orders delivery:
-- a message waits while an earlier one (lower event_seq) of the same
-- subscription and entity is still pending, failed or being delivered.
CREATE TABLE push_messages (
    id               TEXT PRIMARY KEY,
    subscription     TEXT NOT NULL,
    event_id         TEXT NOT NULL,
    event_seq        INTEGER NOT NULL,
    event_type       TEXT NOT NULL,
    entity           TEXT NOT NULL,
    status           TEXT NOT NULL CHECK (status IN ('pending','delivering','failed','delivered','dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    next_attempt_at  INTEGER NOT NULL,
    lease_until      INTEGER,
    last_error       TEXT,
    created_at       INTEGER NOT NULL,
    updated_at       INTEGER NOT NULL,
    UNIQUE (subscription, event_id)
);
CREATE INDEX push_messages_due ON push_messages (status, next_attempt_at);
CREATE INDEX push_messages_entity ON push_messages (subscription, entity, event_seq);
CREATE INDEX push_messages_listing ON push_messages (subscription, status, event_seq);

-- Every HTTP attempt: what the endpoint answered (or why there was no
-- answer), how long it took, and the start of its body.
CREATE TABLE push_attempts (
    id             INTEGER PRIMARY KEY,
    message_id     TEXT NOT NULL REFERENCES push_messages(id),
    subscription   TEXT NOT NULL,
    attempt        INTEGER NOT NULL,
    started_at     INTEGER NOT NULL,
    finished_at    INTEGER NOT NULL,
    status_code    INTEGER,
    latency_ms     INTEGER NOT NULL,
    response_body  TEXT,                   -- truncated
    error          TEXT,
    outcome        TEXT NOT NULL CHECK (outcome IN ('delivered','failed','dead'))
);
CREATE INDEX push_attempts_subscription ON push_attempts (subscription, id);
CREATE INDEX push_attempts_message ON push_attempts (message_id, id);
