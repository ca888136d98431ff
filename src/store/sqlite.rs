//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` so
//! a committed transaction is on disk before `insert_requests` returns.
//! Write transactions start with `BEGIN IMMEDIATE` so that they queue on the
//! busy timeout instead of failing on a read-to-write lock upgrade.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};

use super::{
    Claimed, DeliveryRecord, DeliveryStatus, Inserted, NewEvent, NewRequest, QueueStats, Rejection,
    RejectionRecord, Requeue, Retry, Store, StoreError, StoreResult, StoredEvent,
};
use crate::catalog::TypePattern;

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

const DELIVERY_COLUMNS: &str = "id, source, provider, provider_event_id, provider_event_type, \
     status, attempts, last_error, violations, received_at, next_attempt_at";

fn delivery_record(row: &sqlx::sqlite::SqliteRow) -> StoreResult<DeliveryRecord> {
    let status: String = row.try_get("status").map_err(unavailable)?;
    Ok(DeliveryRecord {
        id: row.try_get("id").map_err(unavailable)?,
        source: row.try_get("source").map_err(unavailable)?,
        provider: row.try_get("provider").map_err(unavailable)?,
        provider_event_id: row.try_get("provider_event_id").map_err(unavailable)?,
        provider_event_type: row.try_get("provider_event_type").map_err(unavailable)?,
        status: DeliveryStatus::parse(&status)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
        attempts: row.try_get::<i64, _>("attempts").map_err(unavailable)? as u32,
        last_error: row.try_get("last_error").map_err(unavailable)?,
        violations: row.try_get("violations").map_err(unavailable)?,
        received_at_ms: row.try_get("received_at").map_err(unavailable)?,
        next_attempt_at_ms: row.try_get("next_attempt_at").map_err(unavailable)?,
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>> {
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        let mut results = Vec::with_capacity(batch.len());
        for req in batch {
            sqlx::query(
                "INSERT INTO requests (id, source, received_at, remote_addr, headers, body) \
                 VALUES (?, ?, ?, ?, ?, ?)",
            )
            .bind(&req.id)
            .bind(&req.source)
            .bind(req.received_at_ms)
            .bind(&req.remote_addr)
            .bind(&req.headers_json)
            .bind(&req.body)
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
            let mut outcome = Vec::with_capacity(req.deliveries.len());
            for d in &req.deliveries {
                let inserted: Option<(String,)> = sqlx::query_as(
                    "INSERT INTO deliveries (id, request_id, item_index, source, provider, \
                     provider_event_id, provider_event_type, occurred_at, received_at, status, \
                     attempts, next_attempt_at, violations, updated_at) \
                     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?) \
                     ON CONFLICT (source, provider_event_id) DO NOTHING RETURNING id",
                )
                .bind(&d.id)
                .bind(&req.id)
                .bind(d.item_index)
                .bind(&req.source)
                .bind(&req.provider)
                .bind(&d.provider_event_id)
                .bind(&d.provider_event_type)
                .bind(d.occurred_at_ms)
                .bind(req.received_at_ms)
                .bind(d.status.as_str())
                .bind(req.received_at_ms)
                .bind(&d.violations)
                .bind(req.received_at_ms)
                .fetch_optional(&mut *tx)
                .await
                .map_err(unavailable)?;
                let found = match inserted {
                    Some((id,)) => Inserted {
                        id,
                        provider_event_id: d.provider_event_id.clone(),
                        duplicate: false,
                        status: d.status,
                    },
                    None => {
                        let (id, status): (String, String) = sqlx::query_as(
                            "SELECT id, status FROM deliveries \
                             WHERE source = ? AND provider_event_id = ?",
                        )
                        .bind(&req.source)
                        .bind(&d.provider_event_id)
                        .fetch_one(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                        Inserted {
                            id,
                            provider_event_id: d.provider_event_id.clone(),
                            duplicate: true,
                            status: DeliveryStatus::parse(&status).ok_or_else(|| {
                                StoreError::Corrupt(format!("unknown status {status:?}"))
                            })?,
                        }
                    }
                };
                outcome.push(found);
            }
            if outcome.iter().all(|o| o.duplicate) {
                // Nothing new: don't keep a second copy of the bytes.
                sqlx::query("DELETE FROM requests WHERE id = ?")
                    .bind(&req.id)
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
            }
            results.push(outcome);
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

    async fn complete_many(
        &self,
        done: &[(String, Vec<NewEvent>)],
        now_ms: i64,
    ) -> StoreResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let _writer = self.write.lock().await;
        let mut tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(unavailable)?;
        for (delivery_id, events) in done {
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
        }
        tx.commit().await.map_err(unavailable)
    }

    async fn fail(
        &self,
        delivery_id: &str,
        error: &str,
        retry: Retry,
        now_ms: i64,
    ) -> StoreResult<()> {
        let (status, next) = match retry {
            Retry::At(at) => ("failed", at),
            Retry::Dead => ("dead", now_ms),
        };
        let _writer = self.write.lock().await;
        sqlx::query(
            "UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_until = NULL, \
             last_error = ?, updated_at = ? WHERE id = ? AND status = 'processing'",
        )
        .bind(status)
        .bind(next)
        .bind(error)
        .bind(now_ms)
        .bind(delivery_id)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    async fn record_rejections(&self, batch: &[Rejection]) -> StoreResult<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(
            "INSERT INTO rejections (id, source, code, message, remote_addr, received_at) ",
        );
        qb.push_values(batch, |mut b, r| {
            b.push_bind(&r.id)
                .push_bind(&r.source)
                .push_bind(&r.code)
                .push_bind(&r.message)
                .push_bind(&r.remote_addr)
                .push_bind(r.received_at_ms);
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
        let row = sqlx::query(&format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        row.as_ref().map(delivery_record).transpose()
    }

    async fn list_deliveries(
        &self,
        source: Option<&str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>> {
        let mut qb: QueryBuilder<Sqlite> = QueryBuilder::new(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 = 1"
        ));
        if let Some(s) = source {
            qb.push(" AND source = ").push_bind(s);
        }
        if let Some(s) = status {
            qb.push(" AND status = ").push_bind(s.as_str());
        }
        qb.push(" ORDER BY received_at, id LIMIT ")
            .push_bind(i64::from(limit));
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(delivery_record).collect()
    }

    async fn list_rejections(&self, limit: u32) -> StoreResult<Vec<RejectionRecord>> {
        let rows: Vec<(String, String, String, String, Option<String>, i64)> = sqlx::query_as(
            "SELECT id, source, code, message, remote_addr, received_at FROM rejections \
             ORDER BY received_at DESC, id DESC LIMIT ?",
        )
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(rows
            .into_iter()
            .map(
                |(id, source, code, message, remote_addr, received_at_ms)| RejectionRecord {
                    id,
                    source,
                    code,
                    message,
                    remote_addr,
                    received_at_ms,
                },
            )
            .collect())
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
        Ok(QueueStats {
            by_status,
            oldest_waiting_ms,
            sink_lag,
        })
    }

    async fn requeue(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        now_ms: i64,
    ) -> StoreResult<Requeue> {
        let current: Option<String> =
            sqlx::query_scalar("SELECT status FROM deliveries WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await
                .map_err(unavailable)?;
        let Some(current) = current else {
            return Ok(Requeue::NotFound);
        };
        let status = DeliveryStatus::parse(&current)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown status {current:?}")))?;
        if !allowed.contains(&status) {
            return Ok(Requeue::Refused(status));
        }
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ?1, \
             lease_until = NULL, last_error = NULL, updated_at = ?1 \
             WHERE id = ?2 AND status = ?3",
        )
        .bind(now_ms)
        .bind(id)
        .bind(&current)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        if done.rows_affected() == 0 {
            // It changed status between the two statements (a worker took it).
            return Ok(Requeue::Refused(DeliveryStatus::Processing));
        }
        Ok(Requeue::Requeued)
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
