-- Operations: the audit trail of processing attempts, a `discarded` status
-- with its reason and time, the bodies of authentic requests refused for
-- their schema, and raw-body retention.

-- SQLite can't change a CHECK constraint in place: `deliveries` is rebuilt.
-- Foreign keys stay on (this runs inside the migration's transaction, where
-- they can't be switched off), so their check is deferred to the commit:
-- dropping the table orphans `events` rows for a moment, and copying the
-- rows back gives them their parent again before the commit checks.
PRAGMA defer_foreign_keys = ON;

CREATE TEMP TABLE deliveries_copy AS SELECT * FROM deliveries;
DROP TABLE deliveries;

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
    status              TEXT NOT NULL CHECK (status IN ('pending','processing','done','failed','dead','quarantined','discarded')),
    attempts            INTEGER NOT NULL DEFAULT 0,
    next_attempt_at     INTEGER NOT NULL,
    lease_until         INTEGER,
    last_error          TEXT,
    violations          TEXT,             -- JSON array of schema violations (quarantined)
    updated_at          INTEGER NOT NULL,
    discard_reason      TEXT,             -- why an operator discarded it
    discarded_at        INTEGER,
    UNIQUE (source, provider_event_id)
);

INSERT INTO deliveries (id, request_id, item_index, source, provider, provider_event_id,
    provider_event_type, occurred_at, received_at, status, attempts, next_attempt_at,
    lease_until, last_error, violations, updated_at)
SELECT id, request_id, item_index, source, provider, provider_event_id,
    provider_event_type, occurred_at, received_at, status, attempts, next_attempt_at,
    lease_until, last_error, violations, updated_at
FROM deliveries_copy;
DROP TABLE deliveries_copy;

-- The queue's claim query: due work in arrival order.
CREATE INDEX deliveries_due ON deliveries (status, next_attempt_at);
-- The admin listing (newest first, keyset paging) and retention.
CREATE INDEX deliveries_received ON deliveries (received_at, id);
CREATE INDEX deliveries_request ON deliveries (request_id);

-- One row per finished processing attempt, written in the transaction that
-- records its outcome. `attempt` restarts at 1 after a replay (the
-- delivery gets a fresh budget); `id` orders the rows.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  TEXT NOT NULL REFERENCES deliveries(id),
    attempt      INTEGER NOT NULL,
    started_at   INTEGER NOT NULL,
    finished_at  INTEGER NOT NULL,
    outcome      TEXT NOT NULL CHECK (outcome IN ('done','failed','dead')),
    error        TEXT,
    retry_at     INTEGER,                 -- when a failed attempt is tried again
    events       TEXT NOT NULL DEFAULT '[]' -- JSON: [{"id","type"}] produced
);
CREATE INDEX attempts_delivery ON attempts (delivery_id, id);

-- Set when retention removed the raw body (it is then empty); such a
-- request can no longer be replayed.
ALTER TABLE requests ADD COLUMN purged_at INTEGER;

-- The body of a request whose signature verified but whose payload failed
-- the schema (authentic; kept for debugging until rejection retention).
ALTER TABLE rejections ADD COLUMN body BLOB;
CREATE INDEX rejections_source ON rejections (source, received_at);
