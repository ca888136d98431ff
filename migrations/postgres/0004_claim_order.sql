-- Claims read due deliveries in the order they are processed, straight off
-- an index that has that order, and stop after `limit` rows: the old
-- claimable index made every claim sort the whole backlog (13 ms at 7 000
-- pending rows, growing with the backlog a claim is meant to drain).
-- Expired leases have an index of their own.
CREATE INDEX deliveries_due ON deliveries (next_attempt_at, received_at, request_id, item_index)
    WHERE status IN ('pending', 'failed');
CREATE INDEX deliveries_leased ON deliveries (lease_until) WHERE status = 'processing';
DROP INDEX deliveries_claimable;

-- A stored request of a few KiB stays in its row, uncompressed: PostgreSQL
-- would otherwise try to compress every body over ~2 KiB (a webhook's
-- typical size) on the ingest path. Larger bodies still go to TOAST.
ALTER TABLE requests SET (toast_tuple_target = 8160);
