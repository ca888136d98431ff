//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` so
//! a committed transaction is on disk before `insert_requests` returns.
//! Write transactions start with `BEGIN IMMEDIATE` so that they queue on the
//! busy timeout instead of failing on a read-to-write lock upgrade.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::sql;
use super::{
    AttemptOutcome, AttemptRecord, Claimed, ClaimedMessage, Completed, DeliveryFilter,
    DeliveryRecord, DeliveryStatus, FailureStreak, Inserted, MessageOutcome, MessageRecord,
    NewEvent, NewMessage, NewRequest, NewSubscription, Position, Purge, Purged, PushAttempt,
    PushAttemptRecord, QueueStats, Rejection, RejectionFilter, RejectionRecord, RequestRecord,
    Retry, SourceStats, Store, StoreError, StoreResult, StoredEvent, SubscriptionRecord,
    SubscriptionStatus, Transition,
};
use crate::catalog::TypePattern;
use secrecy::{ExposeSecret, SecretString};

/// Rows per multi-row statement: 14 parameters a delivery row keeps a
/// statement far below SQLite's 32 766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

pub struct SqliteStore {
    pool: SqlitePool,
    /// SQLite has one writer. Writers queue here, in process, instead of
    /// on SQLite's busy handler, which sleeps in steps of up to 100 ms and
    /// turned every collision between the group commit and the queue's
    /// transactions into a latency spike.
    write: tokio::sync::Mutex<()>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl SqliteStore {
    pub async fn open(url: &str) -> StoreResult<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)
            .map_err(unavailable)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .acquire_timeout(Duration::from_secs(10))
            // A connection whose transaction was dropped instead of
            // committed (an error path) is closed, not pooled again. SQLite
            // rolls some failures back by itself (SQLITE_FULL, SQLITE_IOERR),
            // after which sqlx's own ROLLBACK fails and its transaction depth
            // stays at 1: pooled, that connection would refuse every later
            // BEGIN, and a full disk that got space back would stay 503.
            .after_release(|conn, _| {
                Box::pin(async move {
                    use sqlx::TransactionManager;
                    Ok(sqlx::sqlite::SqliteTransactionManager::get_transaction_depth(conn) == 0)
                })
            })
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
        Ok(SqliteStore {
            pool,
            write: tokio::sync::Mutex::new(()),
        })
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>> {
        // A few multi-row statements per batch, not two per request: each
        // statement is a round trip to sqlx's SQLite thread, and those
        // round trips, not the flush, bounded the ingest rate.
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO requests (id, source, received_at, remote_addr, headers, body) ",
            );
            q.push_values(chunk, |mut row, req| {
                row.push_bind(&req.id)
                    .push_bind(&req.source)
                    .push_bind(req.received_at_ms)
                    .push_bind(&req.remote_addr)
                    .push_bind(&req.headers_json)
                    .push_bind(&req.body);
            });
            q.build().execute(&mut *tx).await.map_err(unavailable)?;
        }

        // Every delivery in batch order: within one statement SQLite inserts
        // the rows in order, so of two with the same key in this batch the
        // first is stored and the second is its duplicate, as if sent one
        // after the other.
        let rows: Vec<(&NewRequest, &super::NewDelivery)> = batch
            .iter()
            .flat_map(|req| req.deliveries.iter().map(move |d| (req, d)))
            .collect();
        let mut inserted: std::collections::HashSet<String> =
            std::collections::HashSet::with_capacity(rows.len());
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "INSERT INTO deliveries (id, request_id, item_index, source, provider, \
                 provider_event_id, provider_event_type, occurred_at, received_at, status, \
                 attempts, next_attempt_at, violations, updated_at) ",
            );
            q.push_values(chunk, |mut row, (req, d)| {
                row.push_bind(&d.id)
                    .push_bind(&req.id)
                    .push_bind(d.item_index)
                    .push_bind(&req.source)
                    .push_bind(&req.provider)
                    .push_bind(&d.provider_event_id)
                    .push_bind(&d.provider_event_type)
                    .push_bind(d.occurred_at_ms)
                    .push_bind(req.received_at_ms)
                    .push_bind(d.status.as_str())
                    .push("0")
                    .push_bind(req.received_at_ms)
                    .push_bind(&d.violations)
                    .push_bind(req.received_at_ms);
            });
            q.push(" ON CONFLICT (source, provider_event_id) DO NOTHING RETURNING id");
            let ids: Vec<(String,)> = q
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            inserted.extend(ids.into_iter().map(|(id,)| id));
        }

        // The originals of the duplicates: committed earlier, or earlier in
        // this batch.
        let duplicates: Vec<&(&NewRequest, &super::NewDelivery)> = rows
            .iter()
            .filter(|(_, d)| !inserted.contains(&d.id))
            .collect();
        let mut existing: std::collections::HashMap<(String, String), (String, String)> =
            std::collections::HashMap::with_capacity(duplicates.len());
        for chunk in duplicates.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new(
                "SELECT source, provider_event_id, id, status FROM deliveries \
                 WHERE (source, provider_event_id) IN (",
            );
            let mut keys = q.separated(", ");
            for (req, d) in chunk {
                keys.push("(")
                    .push_bind_unseparated(&req.source)
                    .push_unseparated(", ")
                    .push_bind_unseparated(&d.provider_event_id)
                    .push_unseparated(")");
            }
            q.push(")");
            let found: Vec<(String, String, String, String)> = q
                .build_query_as()
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            existing.extend(
                found
                    .into_iter()
                    .map(|(source, event, id, status)| ((source, event), (id, status))),
            );
        }

        let mut results = Vec::with_capacity(batch.len());
        let mut unused: Vec<&str> = Vec::new();
        for req in batch {
            let mut outcome = Vec::with_capacity(req.deliveries.len());
            for d in &req.deliveries {
                if inserted.contains(&d.id) {
                    outcome.push(Inserted {
                        id: d.id.clone(),
                        provider_event_id: d.provider_event_id.clone(),
                        duplicate: false,
                        status: d.status,
                    });
                    continue;
                }
                let (id, status) = existing
                    .get(&(req.source.clone(), d.provider_event_id.clone()))
                    .ok_or_else(|| {
                        StoreError::Unavailable("a conflicting delivery vanished".into())
                    })?;
                outcome.push(Inserted {
                    id: id.clone(),
                    provider_event_id: d.provider_event_id.clone(),
                    duplicate: true,
                    status: DeliveryStatus::parse(status)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
                });
            }
            if outcome.iter().all(|o| o.duplicate) {
                // Nothing new: don't keep a second copy of the bytes.
                unused.push(&req.id);
            }
            results.push(outcome);
        }
        for chunk in unused.chunks(ROWS_PER_STATEMENT) {
            let mut q = QueryBuilder::<Sqlite>::new("DELETE FROM requests WHERE id IN (");
            let mut ids = q.separated(", ");
            for id in chunk {
                ids.push_bind(*id);
            }
            q.push(")");
            q.build().execute(&mut *tx).await.map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(results)
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let rows = sqlx::query(
            "UPDATE deliveries SET status = 'processing', attempts = attempts + 1, \
             lease_until = ?2, updated_at = ?1 \
             WHERE id IN (SELECT id FROM deliveries \
               WHERE (status IN ('pending', 'failed') AND next_attempt_at <= ?1) \
                  OR (status = 'processing' AND lease_until < ?1) \
               ORDER BY next_attempt_at, received_at, request_id, item_index LIMIT ?3) \
             RETURNING id, request_id, source, provider, provider_event_id, \
               provider_event_type, occurred_at, received_at, item_index, attempts",
        )
        .bind(now_ms)
        .bind(lease_until_ms)
        .bind(i64::from(limit))
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in rows {
            let request_id: String = row.try_get("request_id").map_err(unavailable)?;
            let (body, headers_json): (Vec<u8>, String) =
                sqlx::query_as("SELECT body, headers FROM requests WHERE id = ?")
                    .bind(&request_id)
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            claimed.push(Claimed {
                id: row.try_get("id").map_err(unavailable)?,
                source: row.try_get("source").map_err(unavailable)?,
                provider: row.try_get("provider").map_err(unavailable)?,
                provider_event_id: row.try_get("provider_event_id").map_err(unavailable)?,
                provider_event_type: row.try_get("provider_event_type").map_err(unavailable)?,
                occurred_at_ms: row.try_get("occurred_at").map_err(unavailable)?,
                received_at_ms: row.try_get("received_at").map_err(unavailable)?,
                item_index: row.try_get("item_index").map_err(unavailable)?,
                attempts: row.try_get::<i64, _>("attempts").map_err(unavailable)? as u32,
                body,
                headers_json,
            });
        }
        tx.commit().await.map_err(unavailable)?;
        // RETURNING order is unspecified; process in arrival order, and a
        // batch in item order.
        claimed.sort_by_key(|c| (c.received_at_ms, c.item_index));
        Ok(claimed)
    }

    async fn complete_many(&self, done: &[Completed], now_ms: i64) -> StoreResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        for Completed {
            delivery_id,
            started_at_ms,
            events,
        } in done
        {
            for e in events {
                sqlx::query(
                    "INSERT INTO events (id, type, source, delivery_id, created_at, payload) \
                     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING",
                )
                .bind(&e.id)
                .bind(&e.event_type)
                .bind(&e.source)
                .bind(delivery_id)
                .bind(now_ms)
                .bind(&e.payload_json)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
            }
            sqlx::query(
                "UPDATE deliveries SET status = 'done', lease_until = NULL, last_error = NULL, \
                 updated_at = ? WHERE id = ?",
            )
            .bind(now_ms)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            sqlx::query(sql::INSERT_ATTEMPT)
                .bind(delivery_id)
                .bind(started_at_ms)
                .bind(now_ms)
                .bind(AttemptOutcome::Done.as_str())
                .bind(None::<String>)
                .bind(None::<i64>)
                .bind(sql::events_json(events))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn fail(
        &self,
        delivery_id: &str,
        started_at_ms: i64,
        error: &str,
        retry: Retry,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (outcome, next, retry_at) = match retry {
            Retry::At(at) => (AttemptOutcome::Failed, at, Some(at)),
            Retry::Dead => (AttemptOutcome::Dead, now_ms, None),
        };
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::FAIL)
            .bind(outcome.as_str())
            .bind(next)
            .bind(error)
            .bind(now_ms)
            .bind(delivery_id)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::INSERT_ATTEMPT)
            .bind(delivery_id)
            .bind(started_at_ms)
            .bind(now_ms)
            .bind(outcome.as_str())
            .bind(error)
            .bind(retry_at)
            .bind("[]")
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn record_rejections(&self, batch: &[Rejection]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO rejections (id, source, code, message, remote_addr, received_at, body) ",
        );
        qb.push_values(batch, |mut b, r| {
            b.push_bind(&r.id)
                .push_bind(&r.source)
                .push_bind(&r.code)
                .push_bind(&r.message)
                .push_bind(&r.remote_addr)
                .push_bind(r.received_at_ms)
                .push_bind(&r.body);
        });
        let _writer = self.write.lock().await;
        qb.build().execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_events(
        &self,
        after_seq: i64,
        types: &[TypePattern],
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut qb: QueryBuilder<Sqlite> =
            QueryBuilder::new("SELECT seq, id, type, source, payload FROM events WHERE seq > ");
        qb.push_bind(after_seq);
        super::push_type_filter(&mut qb, types);
        qb.push(" ORDER BY seq LIMIT ");
        qb.push_bind(i64::from(limit));
        let rows: Vec<(i64, String, String, String, String)> = qb
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    async fn get_event(&self, id: &str) -> StoreResult<Option<StoredEvent>> {
        let row: Option<(i64, String, String, String, String)> =
            sqlx::query_as("SELECT seq, id, type, source, payload FROM events WHERE id = ?")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(row.map(stored_event))
    }

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>> {
        let row: Option<sql::DeliveryRow> = sqlx::query_as(&sql::get_delivery())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(DeliveryRecord::try_from).transpose()
    }

    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<&Position>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let rows: Vec<sql::DeliveryRow> = sql::list_deliveries::<Sqlite>(filter, after, limit)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        sql::deliveries(rows)
    }

    async fn delivery_request(&self, id: &str) -> StoreResult<Option<RequestRecord>> {
        let row: Option<sql::RequestRow> = sqlx::query_as(sql::DELIVERY_REQUEST)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(row.map(RequestRecord::from))
    }

    async fn delivery_attempts(&self, id: &str) -> StoreResult<Vec<AttemptRecord>> {
        let rows: Vec<sql::AttemptRow> = sqlx::query_as(sql::DELIVERY_ATTEMPTS)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(AttemptRecord::from).collect())
    }

    async fn delivery_events(&self, id: &str) -> StoreResult<Vec<(String, String)>> {
        sqlx::query_as(sql::DELIVERY_EVENTS)
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)
    }

    async fn list_rejections(
        &self,
        filter: &RejectionFilter,
        after: Option<&Position>,
        limit: u32,
    ) -> StoreResult<Vec<RejectionRecord>> {
        let rows: Vec<sql::RejectionRow> = sql::list_rejections::<Sqlite>(filter, after, limit)
            .build_query_as()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(rows.into_iter().map(RejectionRecord::from).collect())
    }

    async fn get_rejection(
        &self,
        id: &str,
    ) -> StoreResult<Option<(RejectionRecord, Option<Vec<u8>>)>> {
        let row = sqlx::query(&sql::get_rejection())
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(|row| {
            let record =
                <sql::RejectionRow as sqlx::FromRow<_>>::from_row(&row).map_err(unavailable)?;
            let body: Option<Vec<u8>> = row.try_get("body").map_err(unavailable)?;
            Ok((record.into(), body))
        })
        .transpose()
    }

    async fn recover_leases(&self, now_ms: i64) -> StoreResult<u64> {
        // Processing twice is harmless (catalog event ids are
        // deterministic), so releasing is safe even if another process
        // shares the file.
        let _writer = self.write.lock().await;
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ? \
             WHERE status = 'processing'",
        )
        .bind(now_ms)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn sink_lease(
        &self,
        sink: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Option<i64>> {
        let cursor: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sinks (name, cursor_seq, owner, lease_until) VALUES (?1, 0, ?2, ?4) \
             ON CONFLICT (name) DO UPDATE SET owner = ?2, lease_until = ?4 \
             WHERE sinks.owner = ?2 OR sinks.lease_until < ?3 OR sinks.owner IS NULL \
             RETURNING cursor_seq",
        )
        .bind(sink)
        .bind(owner)
        .bind(now_ms)
        .bind(until_ms)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(cursor)
    }

    async fn advance_sink(&self, sink: &str, owner: &str, seq: i64) -> StoreResult<bool> {
        let done = sqlx::query(
            "UPDATE sinks SET cursor_seq = ?3 WHERE name = ?1 AND owner = ?2 AND cursor_seq < ?3",
        )
        .bind(sink)
        .bind(owner)
        .bind(seq)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_sink(&self, sink: &str, owner: &str) -> StoreResult<()> {
        sqlx::query("UPDATE sinks SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?")
            .bind(sink)
            .bind(owner)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let by_status: Vec<(String, i64)> = sqlx::query_as(
            "SELECT status, count(*) FROM deliveries WHERE status <> 'done' GROUP BY status",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let oldest_waiting_ms: Option<i64> = sqlx::query_scalar(
            "SELECT min(received_at) FROM deliveries \
             WHERE status IN ('pending', 'failed', 'processing')",
        )
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        let sink_lag: Vec<(String, i64)> = sqlx::query_as(
            "SELECT name, (SELECT coalesce(max(seq), 0) FROM events) - cursor_seq FROM sinks",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let sink_oldest_pending_ms: Vec<(String, Option<i64>)> =
            sqlx::query_as(sql::SINK_OLDEST_PENDING)
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        let push_backlog: Vec<(String, String, i64)> = sqlx::query_as(sql::PUSH_BACKLOG)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(QueueStats {
            by_status,
            oldest_waiting_ms,
            sink_lag,
            sink_oldest_pending_ms,
            push_backlog,
        })
    }

    async fn source_stats(&self, since_ms: i64) -> StoreResult<Vec<SourceStats>> {
        let received: Vec<(String, i64, i64, i64)> = sqlx::query_as(sql::SOURCE_RECEIVED)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let rejected: Vec<(String, i64)> = sqlx::query_as(sql::SOURCE_REJECTED)
            .bind(since_ms)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let waiting: Vec<(String, Option<i64>)> = sqlx::query_as(sql::SOURCE_WAITING)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(super::merge_source_stats(received, rejected, waiting))
    }

    async fn requeue(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        now_ms: i64,
    ) -> StoreResult<Transition> {
        let _writer = self.write.lock().await;
        let current = match self.transition_state(id, allowed, true).await? {
            Ok(current) => current,
            Err(refused) => return Ok(refused),
        };
        let done = sqlx::query(sql::REQUEUE)
            .bind(now_ms)
            .bind(id)
            .bind(current.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(sql::applied(done.rows_affected()))
    }

    async fn requeue_matching(
        &self,
        filter: &DeliveryFilter,
        allowed: &[DeliveryStatus],
        now_ms: i64,
        dry_run: bool,
    ) -> StoreResult<u64> {
        let mut qb = sql::requeue_matching::<Sqlite>(filter, allowed, now_ms, dry_run);
        if dry_run {
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
            return Ok(n.max(0) as u64);
        }
        let _writer = self.write.lock().await;
        let done = qb.build().execute(&self.pool).await.map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn discard(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Transition> {
        let _writer = self.write.lock().await;
        let current = match self.transition_state(id, allowed, false).await? {
            Ok(current) => current,
            Err(refused) => return Ok(refused),
        };
        let done = sqlx::query(sql::DISCARD)
            .bind(reason)
            .bind(now_ms)
            .bind(id)
            .bind(current.as_str())
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(sql::applied(done.rows_affected()))
    }

    async fn delivery_body(&self, id: &str) -> StoreResult<Option<(Vec<u8>, Option<i64>)>> {
        let row: Option<(Vec<u8>, Option<i64>)> = sqlx::query_as(
            "SELECT r.body, d.item_index FROM deliveries d \
             JOIN requests r ON r.id = d.request_id WHERE d.id = ?1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(row)
    }

    async fn purge(&self, purge: &Purge, now_ms: i64) -> StoreResult<Purged> {
        let chunk = i64::from(purge.chunk.max(1));
        let mut purged = Purged::default();
        if let Some(before) = purge.bodies_before_ms {
            loop {
                let _writer = self.write.lock().await;
                let n = sqlx::query(sql::PURGE_BODIES)
                    .bind(before)
                    .bind(Vec::<u8>::new())
                    .bind(now_ms)
                    .bind(chunk)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                purged.bodies += n;
                if n < chunk as u64 {
                    break;
                }
            }
        }
        if let Some(before) = purge.rejections_before_ms {
            loop {
                let _writer = self.write.lock().await;
                let n = sqlx::query(sql::PURGE_REJECTIONS)
                    .bind(before)
                    .bind(chunk)
                    .execute(&self.pool)
                    .await
                    .map_err(unavailable)?
                    .rows_affected();
                purged.rejections += n;
                if n < chunk as u64 {
                    break;
                }
            }
        }
        if let Some(before) = purge.deliveries_before_ms {
            loop {
                let _writer = self.write.lock().await;
                let mut tx = self
                    .pool
                    .begin_with("BEGIN IMMEDIATE")
                    .await
                    .map_err(unavailable)?;
                let expired: Vec<(String, String)> = sqlx::query_as(sql::EXPIRED_DELIVERIES)
                    .bind(before)
                    .bind(i64::MAX)
                    .bind(chunk)
                    .fetch_all(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                if expired.is_empty() {
                    break;
                }
                let (ids, requests): (Vec<String>, Vec<String>) = expired.into_iter().unzip();
                for (table, column) in [("attempts", "delivery_id"), ("events", "delivery_id")] {
                    sql::delete_in::<Sqlite>(table, column, &ids)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                sql::delete_in::<Sqlite>("deliveries", "id", &ids)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sql::delete_orphan_requests::<Sqlite>(&requests)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                tx.commit().await.map_err(unavailable)?;
                purged.deliveries += ids.len() as u64;
                if (ids.len() as i64) < chunk {
                    break;
                }
            }
        }
        Ok(purged)
    }

    async fn upsert_config_subscriptions(
        &self,
        subs: &[NewSubscription],
        now_ms: i64,
    ) -> StoreResult<()> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        for sub in subs {
            sqlx::query(sql::UPSERT_CONFIG_SUBSCRIPTION)
                .bind(&sub.name)
                .bind(&sub.url)
                .bind(sql::json_list(&sub.types))
                .bind(&sub.source)
                .bind(sub.timeout_ms)
                .bind(sql::json_list(&sub.retry_schedule_ms))
                .bind(sub.allow_private)
                .bind(i64::from(sub.disable_after))
                .bind(now_ms)
                .bind(i64::from(sub.disable_after_hours))
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        let names: Vec<String> = subs.iter().map(|s| s.name.clone()).collect();
        sql::disable_removed_config_subscriptions::<Sqlite>(&names, now_ms)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn create_subscription(&self, sub: &NewSubscription, now_ms: i64) -> StoreResult<bool> {
        let _writer = self.write.lock().await;
        let done = sqlx::query(sql::CREATE_SUBSCRIPTION)
            .bind(&sub.name)
            .bind(&sub.url)
            .bind(sql::json_list(&sub.types))
            .bind(&sub.source)
            .bind(sub.secret.as_ref().map(|s| s.expose_secret().to_string()))
            .bind(
                sub.signing_key
                    .as_ref()
                    .map(|s| s.expose_secret().to_string()),
            )
            .bind(sub.timeout_ms)
            .bind(sql::json_list(&sub.retry_schedule_ms))
            .bind(sub.allow_private)
            .bind(i64::from(sub.disable_after))
            .bind(now_ms)
            .bind(i64::from(sub.disable_after_hours))
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn list_subscriptions(&self) -> StoreResult<Vec<SubscriptionRecord>> {
        let rows: Vec<sql::SubscriptionRow> = sqlx::query_as(&sql::list_subscriptions())
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        sql::subscriptions(rows)
    }

    async fn get_subscription(&self, name: &str) -> StoreResult<Option<SubscriptionRecord>> {
        let row: Option<sql::SubscriptionRow> = sqlx::query_as(&sql::get_subscription())
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.map(SubscriptionRecord::try_from).transpose()
    }

    async fn set_subscription_status(
        &self,
        name: &str,
        status: SubscriptionStatus,
        reason: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let _writer = self.write.lock().await;
        let done = sqlx::query(sql::SET_SUBSCRIPTION_STATUS)
            .bind(name)
            .bind(status.as_str())
            .bind(reason)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_subscription(&self, name: &str) -> StoreResult<bool> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        // The subscription row first (see `finish_message`).
        let done = sqlx::query("DELETE FROM push_subscriptions WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        for statement in [
            "DELETE FROM push_attempts WHERE subscription = $1",
            "DELETE FROM push_messages WHERE subscription = $1",
        ] {
            sqlx::query(statement)
                .bind(name)
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?;
        }
        sqlx::query(sql::DROP_IDLE_ROUTER)
            .bind(super::PUSH_ROUTER_SINK)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn rotate_subscription_secret(
        &self,
        name: &str,
        secret: &SecretString,
        previous_until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let _writer = self.write.lock().await;
        let done = sqlx::query(sql::ROTATE_SECRET)
            .bind(name)
            .bind(secret.expose_secret())
            .bind(previous_until_ms)
            .bind(now_ms)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let mut n = 0;
        for chunk in messages.chunks(ROWS_PER_STATEMENT) {
            n += sql::enqueue_messages::<Sqlite>(chunk)
                .build()
                .execute(&mut *tx)
                .await
                .map_err(unavailable)?
                .rows_affected();
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(n)
    }

    async fn claim_messages(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMessage>> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(&format!(
            "UPDATE push_messages SET status = 'delivering', attempts = attempts + 1, \
             lease_until = $3, updated_at = $1 WHERE id IN ({}) \
             RETURNING id, subscription, event_id, event_type, CAST(attempts AS BIGINT)",
            sql::DUE_MESSAGES
        ))
        .bind(now_ms)
        .bind(i64::from(limit))
        .bind(lease_until_ms)
        .fetch_all(&mut *tx)
        .await
        .map_err(unavailable)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for (id, subscription, event_id, event_type, attempts) in rows {
            let payload_json: Option<String> = sqlx::query_scalar(sql::MESSAGE_PAYLOAD)
                .bind(&id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
            claimed.push(ClaimedMessage {
                id,
                subscription,
                event_id,
                event_type,
                attempts: attempts.clamp(0, i64::from(u32::MAX)) as u32,
                payload_json,
            });
        }
        tx.commit().await.map_err(unavailable)?;
        Ok(claimed)
    }

    async fn finish_message(
        &self,
        attempt: &PushAttempt,
        now_ms: i64,
    ) -> StoreResult<FailureStreak> {
        let (next, error) = match attempt.outcome {
            MessageOutcome::Retry(at) => (at, attempt.error.as_deref()),
            MessageOutcome::Delivered => (now_ms, None),
            MessageOutcome::Dead => (now_ms, attempt.error.as_deref()),
        };
        let outcome = attempt.outcome.as_str();
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        // The subscription row first, as `delete_subscription` does: a
        // delete racing an attempt waits for it (or it for the delete)
        // instead of deadlocking or orphaning the attempt row.
        let streak: Option<(i64, Option<i64>)> = sqlx::query_as(sql::COUNT_DEAD_STREAK)
            .bind(&attempt.subscription)
            .bind(outcome)
            .bind(attempt.started_at_ms)
            .fetch_optional(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::FINISH_MESSAGE)
            .bind(&attempt.message_id)
            .bind(outcome)
            .bind(next)
            .bind(error)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        sqlx::query(sql::INSERT_PUSH_ATTEMPT)
            .bind(&attempt.message_id)
            .bind(attempt.started_at_ms)
            .bind(attempt.finished_at_ms)
            .bind(attempt.status_code.map(i64::from))
            .bind(attempt.latency_ms)
            .bind(&attempt.response_body)
            .bind(&attempt.error)
            .bind(outcome)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(streak
            .map(|(dead, since)| FailureStreak {
                dead_letters: dead.clamp(0, i64::from(u32::MAX)) as u32,
                failing_since_ms: since,
            })
            .unwrap_or_default())
    }

    async fn disable_subscription(
        &self,
        name: &str,
        reason: &str,
        event: &NewEvent,
        now_ms: i64,
    ) -> StoreResult<bool> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let done = sqlx::query(sql::DISABLE_SUBSCRIPTION)
            .bind(name)
            .bind(reason)
            .bind(now_ms)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO events (id, type, source, delivery_id, created_at, payload) \
             VALUES ($1, $2, $3, NULL, $4, $5) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&event.id)
        .bind(&event.event_type)
        .bind(&event.source)
        .bind(now_ms)
        .bind(&event.payload_json)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)?;
        Ok(true)
    }

    async fn list_messages(
        &self,
        subscription: &str,
        status: Option<&str>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<MessageRecord>> {
        let rows: Vec<sql::MessageRow> =
            sql::list_messages::<Sqlite>(subscription, status, before_seq, limit)
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(rows.into_iter().map(MessageRecord::from).collect())
    }

    async fn list_push_attempts(
        &self,
        subscription: &str,
        message_id: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<PushAttemptRecord>> {
        let rows: Vec<sql::PushAttemptRow> =
            sql::list_push_attempts::<Sqlite>(subscription, message_id, before_id, limit)
                .build_query_as()
                .fetch_all(&self.pool)
                .await
                .map_err(unavailable)?;
        Ok(rows.into_iter().map(PushAttemptRecord::from).collect())
    }

    async fn replay_messages(
        &self,
        subscription: &str,
        message_id: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<u64> {
        let _writer = self.write.lock().await;
        let done = match message_id {
            Some(id) => {
                sqlx::query(&format!("{} AND id = $3", sql::REPLAY_MESSAGES))
                    .bind(subscription)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&self.pool)
                    .await
            }
            None => {
                sqlx::query(sql::REPLAY_MESSAGES)
                    .bind(subscription)
                    .bind(now_ms)
                    .execute(&self.pool)
                    .await
            }
        }
        .map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn purge_push_messages(&self, before_ms: i64, chunk: u32) -> StoreResult<u64> {
        let chunk = i64::from(chunk.max(1));
        let mut purged = 0;
        loop {
            let _writer = self.write.lock().await;
            let mut tx = self
                .pool
                .begin_with("BEGIN IMMEDIATE")
                .await
                .map_err(unavailable)?;
            let ids: Vec<String> = sqlx::query_scalar(sql::EXPIRED_PUSH_MESSAGES)
                .bind(before_ms)
                .bind(chunk)
                .fetch_all(&mut *tx)
                .await
                .map_err(unavailable)?;
            if ids.is_empty() {
                break;
            }
            for (table, column) in [("push_attempts", "message_id"), ("push_messages", "id")] {
                sql::delete_in::<Sqlite>(table, column, &ids)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            tx.commit().await.map_err(unavailable)?;
            purged += ids.len() as u64;
            if (ids.len() as i64) < chunk {
                break;
            }
        }
        Ok(purged)
    }

    async fn ping(&self) -> StoreResult<()> {
        sqlx::query("SELECT 1 FROM _sqlx_migrations LIMIT 1")
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}

impl SqliteStore {
    /// The current status of a delivery an operator wants to move, if the
    /// move is allowed (the caller holds the write lock, so it can't change
    /// before the update). `needs_body`: the move processes it again.
    async fn transition_state(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        needs_body: bool,
    ) -> StoreResult<Result<DeliveryStatus, Transition>> {
        let row: Option<(String, Option<i64>)> = sqlx::query_as(sql::TRANSITION_STATE)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        sql::decide(row, allowed, needs_body)
    }
}

fn stored_event(
    (seq, id, event_type, source, payload_json): (i64, String, String, String, String),
) -> StoredEvent {
    StoredEvent {
        seq,
        id,
        event_type,
        source,
        payload_json,
    }
}
