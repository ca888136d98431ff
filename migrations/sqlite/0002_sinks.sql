-- Where each sink (e.g. the NATS publisher) has got to, and which instance
-- holds the right to publish.
CREATE TABLE sinks (
    name         TEXT PRIMARY KEY,
    cursor_seq   INTEGER NOT NULL DEFAULT 0,
    owner        TEXT,
    lease_until  INTEGER NOT NULL DEFAULT 0
);
