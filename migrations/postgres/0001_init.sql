-- hookgate schema (PostgreSQL). Times are unix milliseconds (BIGINT), as in
-- the SQLite schema, so both backends read and write the same values.

CREATE TABLE requests (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    received_at  BIGINT NOT NULL,
    remote_addr  TEXT,
    headers      TEXT NOT NULL,
    body         BYTEA NOT NULL
);

CREATE TABLE deliveries (
    id                  TEXT PRIMARY KEY,
    request_id          TEXT NOT NULL REFERENCES requests(id),
    item_index          BIGINT,
    source              TEXT NOT NULL,
    provider            TEXT NOT NULL,
    provider_event_id   TEXT NOT NULL,
    provider_event_type TEXT,
    occurred_at         BIGINT,
    received_at         BIGINT NOT NULL,
    status              TEXT NOT NULL CHECK (status IN ('pending','processing','done','failed','dead','quarantined')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     BIGINT NOT NULL,
    lease_until         BIGINT,
    last_error          TEXT,
    violations          TEXT,
    updated_at          BIGINT NOT NULL,
    UNIQUE (source, provider_event_id)
);
CREATE INDEX deliveries_request ON deliveries (request_id);
-- Only rows a worker may claim: the claim query stays small however many
-- deliveries are done.
CREATE INDEX deliveries_claimable ON deliveries (next_attempt_at, received_at)
    WHERE status IN ('pending', 'failed', 'processing');

-- `seq` is taken under a transaction-scoped advisory lock held until commit
-- (see store/postgres.rs), so sequence values become visible in order and
-- a cursor never skips an event that commits late.
CREATE SEQUENCE events_seq;
CREATE TABLE events (
    seq          BIGINT PRIMARY KEY,
    id           TEXT NOT NULL UNIQUE,
    type         TEXT NOT NULL,
    source       TEXT NOT NULL,
    delivery_id  TEXT NOT NULL REFERENCES deliveries(id),
    created_at   BIGINT NOT NULL,
    payload      TEXT NOT NULL
);
CREATE INDEX events_type ON events (type, seq);
CREATE INDEX events_delivery ON events (delivery_id);

CREATE TABLE rejections (
    id           TEXT PRIMARY KEY,
    source       TEXT NOT NULL,
    code         TEXT NOT NULL,
    message      TEXT NOT NULL,
    remote_addr  TEXT,
    received_at  BIGINT NOT NULL
);
CREATE INDEX rejections_time ON rejections (received_at);

-- Where each sink (e.g. the NATS publisher) has got to, and which instance
-- holds the right to publish (a lease, so a dead instance's turn passes on).
CREATE TABLE sinks (
    name         TEXT PRIMARY KEY,
    cursor_seq   BIGINT NOT NULL DEFAULT 0,
    owner        TEXT,
    lease_until  BIGINT NOT NULL DEFAULT 0
);
