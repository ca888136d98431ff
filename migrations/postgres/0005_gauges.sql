-- The queue's gauges (`/metrics`, the dashboard) count each status group
-- through an index that holds only that group (see QUEUE_BY_STATUS in
-- src/store/sql.rs). Pending, failed and processing deliveries have theirs
-- (0004); these cover the parked ones and dead push messages. Rows reach
-- them rarely, so ingest does not pay for them.
CREATE INDEX deliveries_parked ON deliveries (status) WHERE status IN ('dead', 'quarantined');
CREATE INDEX push_messages_dead ON push_messages (subscription) WHERE status = 'dead';
