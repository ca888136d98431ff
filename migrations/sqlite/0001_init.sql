-- hookgate schema (SQLite). Times are unix milliseconds (INTEGER).

-- One row per accepted HTTP request: the raw bytes and the headers needed to
-- re-verify it (secrets never stored). A batch request holds several
-- provider events, each a row in `deliveries`.
CREATE TABLE requests (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    received_at  INTEGER NOT NULL,
    remote_addr  TEXT,
    headers      TEXT NOT NULL,          -- JSON object: name -> [values]
    body         BLOB NOT NULL
);

-- One row per provider event. (source, provider_event_id) is the
-- idempotency key; it outlives raw-body retention.
CREATE TABLE deliveries (
    id                  TEXT PRIMARY KEY,
    request_id          TEXT NOT NULL REFERENCES requests(id),
    item_index          INTEGER,          -- position in a batch; NULL for a single event
    source              TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_event_id   TEXT NOT NULL,
    provider_event_type TEXT,
    occurred_at         INTEGER,
    received_at         INTEGER NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending','processing','done','failed','dead','quarantined')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_until         INTEGER,
    last_error          TEXT,
    violations          TEXT,             -- JSON array of schema violations (quarantined)
    updated_at          INTEGER NOT NULL,
    UNIQUE (source, provider_event_id)
);

-- The queue's claim query: due work in arrival order.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);

-- Catalog events. `seq` is the consumer cursor; with SQLite's single writer
-- it increases in commit order.
CREATE TABLE events (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL REFERENCES deliveries(id),
    created_at   INTEGER NOT NULL,
    payload      TEXT NOT NULL            -- the catalog event as JSON
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_delivery ON events (delivery_id);

-- Audit of refused requests: why, from where, when. Never the body.
CREATE TABLE rejections (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    code         TEXT NOT NULL,
    message      TEXT NOT NULL,
    remote_addr  TEXT,
    received_at  INTEGER NOT NULL
);
CREATE INDEX rejections_time ON rejections (received_at);
