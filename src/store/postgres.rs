//! The PostgreSQL backend, for several hookgate instances on one database.
//!
//! - Group commit: a batch is ONE statement (its own transaction) over
//!   multi-row `UNNEST` inputs, idempotent with `ON CONFLICT (source,
//!   provider_event_id) DO NOTHING`. Rows are sorted by that key so two
//!   instances inserting overlapping batches take row locks in the same
//!   order and can't deadlock.
//! - Workers claim with `FOR UPDATE SKIP LOCKED` and a lease, reading
//!   partial indexes in processing order.
//! - Catalog event sequence values are taken under a transaction-scoped
//!   advisory lock that is held until commit: the transaction that took
//!   `seq = n` has committed before any transaction can take `n + 1`, so a
//!   reader that sees `n + 1` also sees `n`, and the cursor of `/v1/events`
//!   never skips an event that commits late.
//! - `NOTIFY` on commit wakes workers and publishers of every instance.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgListener, PgPool, PgPoolOptions};
use sqlx::{Postgres, QueryBuilder, Row};
use tokio::sync::Notify;

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

/// The advisory lock that orders catalog event sequence values.
const EVENT_SEQ_LOCK: i64 = 0x686f_6f6b_6761_7465; // "hookgate"
pub const DELIVERIES_CHANNEL: &str = "hookgate_deliveries";
pub const EVENTS_CHANNEL: &str = "hookgate_events";
/// Push messages per multi-row insert: 7 parameters a row, far below
/// PostgreSQL's 65 535.
const MESSAGE_ROWS_PER_STATEMENT: usize = 1000;

pub struct PgStore {
    pool: PgPool,
    url: String,
    closed: tokio::sync::watch::Sender<bool>,
}

fn unavailable(e: sqlx::Error) -> StoreError {
    match e {
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::Decode(_) => {
            StoreError::Corrupt(e.to_string())
        }
        other => StoreError::Unavailable(other.to_string()),
    }
}

impl PgStore {
    pub async fn open(url: &str) -> StoreResult<PgStore> {
        let options = PgConnectOptions::from_str(url).map_err(unavailable)?;
        let pool = PgPoolOptions::new()
            .max_connections(16)
            // A request waits at most this long for the database before it
            // is answered 503 with Retry-After.
            .acquire_timeout(Duration::from_secs(3))
            .connect_with(options)
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("migrations/postgres")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
        Ok(PgStore {
            pool,
            url: url.to_string(),
            closed: tokio::sync::watch::channel(false).0,
        })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }
}

fn stored_event(row: &sqlx::postgres::PgRow) -> StoreResult<StoredEvent> {
    Ok(StoredEvent {
        seq: row.try_get("seq").map_err(unavailable)?,
        id: row.try_get("id").map_err(unavailable)?,
        event_type: row.try_get("type").map_err(unavailable)?,
        source: row.try_get("source").map_err(unavailable)?,
        payload_json: row.try_get("payload").map_err(unavailable)?,
    })
}

/// Insert catalog events in the current transaction, taking their sequence
/// values under the advisory lock (held until this transaction ends). Also
/// the protocol the cursor test drives by hand.
pub async fn insert_events(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    delivery_id: &str,
    events: &[NewEvent],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    let rows: Vec<(&str, &NewEvent)> = events.iter().map(|e| (delivery_id, e)).collect();
    insert_event_rows(tx, &rows, now_ms).await
}

/// `insert_events` for the events of several deliveries at once (a
/// worker's batch): one lock, one insert, one notification, sequence
/// values in the order given.
async fn insert_event_rows(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    events: &[(&str, &NewEvent)],
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    if events.is_empty() {
        return Ok(());
    }
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_SEQ_LOCK)
        .execute(&mut **tx)
        .await?;
    let ids: Vec<&str> = events.iter().map(|(_, e)| e.id.as_str()).collect();
    let types: Vec<&str> = events.iter().map(|(_, e)| e.event_type.as_str()).collect();
    let sources: Vec<&str> = events.iter().map(|(_, e)| e.source.as_str()).collect();
    let payloads: Vec<&str> = events
        .iter()
        .map(|(_, e)| e.payload_json.as_str())
        .collect();
    let deliveries: Vec<&str> = events.iter().map(|(d, _)| *d).collect();
    // Existing ids (a reprocessed delivery) are skipped before nextval is
    // called, so they burn no sequence values either.
    sqlx::query(
        "INSERT INTO events (seq, id, type, source, delivery_id, created_at, payload) \
         SELECT nextval('events_seq'), t.id, t.type, t.source, t.delivery, $6, t.payload \
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[]) \
              WITH ORDINALITY AS t(id, type, source, payload, delivery, n) \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = t.id) \
         ORDER BY t.n \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&ids)
    .bind(&types)
    .bind(&sources)
    .bind(&payloads)
    .bind(&deliveries)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A catalog event of hookgate's own (no delivery), its `seq` taken under
/// the same advisory lock as `insert_events`.
async fn insert_system_event(
    tx: &mut sqlx::Transaction<'_, Postgres>,
    event: &NewEvent,
    now_ms: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(EVENT_SEQ_LOCK)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "INSERT INTO events (seq, id, type, source, delivery_id, created_at, payload) \
         SELECT nextval('events_seq'), $1, $2, $3, NULL, $4, $5 \
         WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.id = $1) \
         ON CONFLICT (id) DO NOTHING",
    )
    .bind(&event.id)
    .bind(&event.event_type)
    .bind(&event.source)
    .bind(now_ms)
    .bind(&event.payload_json)
    .execute(&mut **tx)
    .await?;
    sqlx::query("SELECT pg_notify($1, '')")
        .bind(EVENTS_CHANNEL)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

impl PgStore {
    /// The current status of a delivery an operator wants to move, if the
    /// move is allowed; the conditional update that follows catches a
    /// worker taking it in between.
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

    /// Wake the workers of every instance.
    async fn notify_deliveries(&self) -> StoreResult<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(DELIVERIES_CHANNEL)
            .execute(&self.pool)
            .await
            .map_err(unavailable)?;
        Ok(())
    }
}

#[async_trait]
impl Store for PgStore {
    async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>> {
        // Flatten, sorted by the idempotency key for a stable lock order.
        let mut rows: Vec<(usize, usize)> = batch
            .iter()
            .enumerate()
            .flat_map(|(r, req)| (0..req.deliveries.len()).map(move |d| (r, d)))
            .collect();
        rows.sort_by(|a, b| {
            let ka = (
                &batch[a.0].source,
                &batch[a.0].deliveries[a.1].provider_event_id,
            );
            let kb = (
                &batch[b.0].source,
                &batch[b.0].deliveries[b.1].provider_event_id,
            );
            ka.cmp(&kb).then(a.cmp(b))
        });

        let col = |f: &dyn Fn(&NewRequest, &super::NewDelivery) -> Option<String>| {
            rows.iter()
                .map(|(r, d)| f(&batch[*r], &batch[*r].deliveries[*d]))
                .collect::<Vec<Option<String>>>()
        };
        let ids = col(&|_, d| Some(d.id.clone()));
        let request_ids = col(&|r, _| Some(r.id.clone()));
        let sources = col(&|r, _| Some(r.source.clone()));
        let providers = col(&|r, _| Some(r.provider.clone()));
        let event_ids = col(&|_, d| Some(d.provider_event_id.clone()));
        let event_types = col(&|_, d| d.provider_event_type.clone());
        let statuses = col(&|_, d| Some(d.status.as_str().to_string()));
        let violations = col(&|_, d| d.violations.clone());
        let item_index: Vec<Option<i64>> = rows
            .iter()
            .map(|(r, d)| batch[*r].deliveries[*d].item_index)
            .collect();
        let occurred: Vec<Option<i64>> = rows
            .iter()
            .map(|(r, d)| batch[*r].deliveries[*d].occurred_at_ms)
            .collect();
        let received: Vec<i64> = rows.iter().map(|(r, _)| batch[*r].received_at_ms).collect();

        // ONE statement, so one round trip and its own transaction: the
        // deliveries first (sorted by key, `ON CONFLICT DO NOTHING`), then
        // only the requests that got a delivery (a request whose events
        // were all duplicates is never written). The foreign key is checked
        // at the end of the statement, when both are in. For each row it
        // answers whether ours went in and, if not, the delivery that holds
        // its key as of the statement's snapshot.
        let answer: Vec<(String, bool, Option<String>, Option<String>)> = sqlx::query_as(
            "WITH t AS ( \
               SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], \
                 $5::text[], $6::text[], $7::text[], $8::bigint[], $9::bigint[], $10::text[], \
                 $11::text[]) WITH ORDINALITY AS t(id, request_id, item_index, source, \
                 provider, event_id, event_type, occurred, received, status, violations, n)), \
             ins AS ( \
               INSERT INTO deliveries (id, request_id, item_index, source, provider, \
                 provider_event_id, provider_event_type, occurred_at, received_at, status, \
                 attempts, next_attempt_at, violations, updated_at) \
               SELECT t.id, t.request_id, t.item_index, t.source, t.provider, t.event_id, \
                 t.event_type, t.occurred, t.received, t.status, 0, t.received, \
                 t.violations, t.received \
               FROM t ORDER BY t.n \
               ON CONFLICT (source, provider_event_id) DO NOTHING \
               RETURNING id, request_id), \
             req AS ( \
               INSERT INTO requests (id, source, received_at, remote_addr, headers, body) \
               SELECT r.id, r.source, r.received_at, r.remote_addr, r.headers, r.body \
               FROM UNNEST($12::text[], $13::text[], $14::bigint[], $15::text[], $16::text[], \
                 $17::bytea[]) AS r(id, source, received_at, remote_addr, headers, body) \
               WHERE r.id IN (SELECT request_id FROM ins)) \
             SELECT t.id, i.id IS NOT NULL, d.id, d.status \
             FROM t LEFT JOIN ins i ON i.id = t.id \
             LEFT JOIN deliveries d ON i.id IS NULL \
               AND d.source = t.source AND d.provider_event_id = t.event_id \
             CROSS JOIN (SELECT count(pg_notify($18, '')) FROM \
               (SELECT 1 FROM ins LIMIT 1) AS one) AS woken \
             ORDER BY t.n",
        )
        .bind(&ids)
        .bind(&request_ids)
        .bind(&item_index)
        .bind(&sources)
        .bind(&providers)
        .bind(&event_ids)
        .bind(&event_types)
        .bind(&occurred)
        .bind(&received)
        .bind(&statuses)
        .bind(&violations)
        .bind(batch.iter().map(|r| r.id.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|r| r.source.as_str()).collect::<Vec<_>>())
        .bind(batch.iter().map(|r| r.received_at_ms).collect::<Vec<_>>())
        .bind(
            batch
                .iter()
                .map(|r| r.remote_addr.as_deref())
                .collect::<Vec<_>>(),
        )
        .bind(
            batch
                .iter()
                .map(|r| r.headers_json.as_str())
                .collect::<Vec<_>>(),
        )
        .bind(batch.iter().map(|r| r.body.as_slice()).collect::<Vec<_>>())
        .bind(DELIVERIES_CHANNEL)
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;

        // Which key went to which delivery: ours; one earlier in this
        // group (its own row conflicted with ours); one committed before
        // the statement began; or one committed while it ran, which the
        // statement's snapshot can't show (looked up afterwards: the
        // conflict waited for that commit, so it is visible now).
        let key = |k: usize| {
            let (r, d) = rows[k];
            (
                batch[r].source.clone(),
                batch[r].deliveries[d].provider_event_id.clone(),
            )
        };
        let mut inserted: std::collections::HashSet<String> = std::collections::HashSet::new();
        let mut existing: HashMap<(String, String), (String, String)> = HashMap::new();
        let mut unresolved: Vec<usize> = Vec::new();
        for (k, (id, ours, other_id, other_status)) in answer.into_iter().enumerate() {
            if ours {
                // A later row of this group with the same key conflicted
                // with this one.
                let (r, d) = rows[k];
                let status = batch[r].deliveries[d].status.as_str().to_string();
                existing.insert(key(k), (id.clone(), status));
                inserted.insert(id);
            } else if let (Some(other), Some(status)) = (other_id, other_status) {
                existing.insert(key(k), (other, status));
            } else {
                unresolved.push(k);
            }
        }
        let late: Vec<(String, String)> = unresolved
            .into_iter()
            .map(key)
            .filter(|k| !existing.contains_key(k))
            .collect();
        if !late.is_empty() {
            let late_sources: Vec<&str> = late.iter().map(|(s, _)| s.as_str()).collect();
            let late_ids: Vec<&str> = late.iter().map(|(_, e)| e.as_str()).collect();
            let found: Vec<(String, String, String, String)> = sqlx::query_as(
                "SELECT d.source, d.provider_event_id, d.id, d.status FROM deliveries d \
                 JOIN UNNEST($1::text[], $2::text[]) AS k(source, event_id) \
                   ON d.source = k.source AND d.provider_event_id = k.event_id",
            )
            .bind(&late_sources)
            .bind(&late_ids)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
            for (s, e, id, status) in found {
                existing.insert((s, e), (id, status));
            }
        }

        let mut results: Vec<Vec<Inserted>> = Vec::with_capacity(batch.len());
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
                } else {
                    let (id, status) = existing
                        .get(&(req.source.clone(), d.provider_event_id.clone()))
                        .ok_or_else(|| {
                            StoreError::Unavailable("a conflicting delivery vanished".into())
                        })?;
                    outcome.push(Inserted {
                        id: id.clone(),
                        provider_event_id: d.provider_event_id.clone(),
                        duplicate: true,
                        status: DeliveryStatus::parse(status).ok_or_else(|| {
                            StoreError::Corrupt(format!("unknown status {status:?}"))
                        })?,
                    });
                }
            }
            results.push(outcome);
        }
        Ok(results)
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        // One statement: the claim and the bodies it needs. Each arm reads
        // its partial index in processing order and stops after `limit`
        // rows (migration 0004), whatever the backlog.
        let rows = sqlx::query(
            "WITH due AS ( \
               SELECT * FROM (SELECT id, next_attempt_at, received_at, request_id, item_index \
                 FROM deliveries WHERE status IN ('pending', 'failed') AND next_attempt_at <= $1 \
                 ORDER BY next_attempt_at, received_at, request_id, item_index LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) AS waiting \
               UNION ALL \
               SELECT * FROM (SELECT id, next_attempt_at, received_at, request_id, item_index \
                 FROM deliveries WHERE status = 'processing' AND lease_until < $1 \
                 ORDER BY next_attempt_at, received_at, request_id, item_index LIMIT $3 \
                 FOR UPDATE SKIP LOCKED) AS expired \
               ORDER BY next_attempt_at, received_at, request_id, item_index LIMIT $3), \
             c AS ( \
               UPDATE deliveries d SET status = 'processing', attempts = d.attempts + 1, \
                 lease_until = $2, updated_at = $1 \
               FROM due WHERE d.id = due.id \
               RETURNING d.id, d.request_id, d.source, d.provider, d.provider_event_id, \
                 d.provider_event_type, d.occurred_at, d.received_at, d.item_index, d.attempts) \
             SELECT c.*, r.body, r.headers FROM c LEFT JOIN requests r ON r.id = c.request_id",
        )
        .bind(now_ms)
        .bind(lease_until_ms)
        .bind(i64::from(limit))
        .fetch_all(&self.pool)
        .await
        .map_err(unavailable)?;
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            let body: Option<Vec<u8>> = row.try_get("body").map_err(unavailable)?;
            let headers_json: Option<String> = row.try_get("headers").map_err(unavailable)?;
            let (Some(body), Some(headers_json)) = (body, headers_json) else {
                let request_id: String = row.try_get("request_id").map_err(unavailable)?;
                return Err(StoreError::Corrupt(format!(
                    "request {request_id} is missing"
                )));
            };
            claimed.push(Claimed {
                id: row.try_get("id").map_err(unavailable)?,
                source: row.try_get("source").map_err(unavailable)?,
                provider: row.try_get("provider").map_err(unavailable)?,
                provider_event_id: row.try_get("provider_event_id").map_err(unavailable)?,
                provider_event_type: row.try_get("provider_event_type").map_err(unavailable)?,
                occurred_at_ms: row.try_get("occurred_at").map_err(unavailable)?,
                received_at_ms: row.try_get("received_at").map_err(unavailable)?,
                item_index: row.try_get("item_index").map_err(unavailable)?,
                attempts: row.try_get::<i32, _>("attempts").map_err(unavailable)? as u32,
                body,
                headers_json,
            });
        }
        claimed.sort_by_key(|c| (c.received_at_ms, c.item_index));
        Ok(claimed)
    }

    async fn complete_many(&self, done: &[Completed], now_ms: i64) -> StoreResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // The statuses first: row locks on the deliveries, then the
        // sequence lock, always in this order. With them, the audit trail:
        // one attempt row each, numbered by the claim.
        let ids: Vec<&str> = done.iter().map(|c| c.delivery_id.as_str()).collect();
        let started: Vec<i64> = done.iter().map(|c| c.started_at_ms).collect();
        let produced: Vec<String> = done.iter().map(|c| sql::events_json(&c.events)).collect();
        sqlx::query(
            "WITH u AS ( \
               UPDATE deliveries SET status = 'done', lease_until = NULL, last_error = NULL, \
                 updated_at = $1 WHERE id = ANY($2) RETURNING id, attempts) \
             INSERT INTO attempts (delivery_id, attempt, started_at, finished_at, outcome, events) \
             SELECT u.id, u.attempts, t.started, $1, 'done', t.events \
             FROM UNNEST($2::text[], $3::bigint[], $4::text[]) AS t(id, started, events) \
             JOIN u ON u.id = t.id",
        )
        .bind(now_ms)
        .bind(&ids)
        .bind(&started)
        .bind(&produced)
        .execute(&mut *tx)
        .await
        .map_err(unavailable)?;
        let events: Vec<(&str, &NewEvent)> = done
            .iter()
            .flat_map(|c| c.events.iter().map(|e| (c.delivery_id.as_str(), e)))
            .collect();
        insert_event_rows(&mut tx, &events, now_ms)
            .await
            .map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut qb: QueryBuilder<Postgres> = QueryBuilder::new(
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
        qb.build().execute(&self.pool).await.map_err(unavailable)?;
        Ok(())
    }

    async fn list_events(
        &self,
        after_seq: i64,
        types: &[TypePattern],
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>> {
        let mut qb: QueryBuilder<Postgres> =
            QueryBuilder::new("SELECT seq, id, type, source, payload FROM events WHERE seq > ");
        qb.push_bind(after_seq);
        super::push_type_filter(&mut qb, types);
        qb.push(" ORDER BY seq LIMIT ").push_bind(i64::from(limit));
        let rows = qb
            .build()
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        rows.iter().map(stored_event).collect()
    }

    async fn get_event(&self, id: &str) -> StoreResult<Option<StoredEvent>> {
        let row = sqlx::query("SELECT seq, id, type, source, payload FROM events WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(unavailable)?;
        row.as_ref().map(stored_event).transpose()
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
        let rows: Vec<sql::DeliveryRow> = sql::list_deliveries::<Postgres>(filter, after, limit)
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
        let rows: Vec<sql::RejectionRow> = sql::list_rejections::<Postgres>(filter, after, limit)
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

    async fn recover_leases(&self, _now_ms: i64) -> StoreResult<u64> {
        // Other instances may hold live leases: let expiry decide.
        Ok(0)
    }

    async fn sink_lease(
        &self,
        sink: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Option<i64>> {
        let cursor: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sinks (name, cursor_seq, owner, lease_until) VALUES ($1, 0, $2, $4) \
             ON CONFLICT (name) DO UPDATE SET owner = $2, lease_until = $4 \
             WHERE sinks.owner = $2 OR sinks.lease_until < $3 OR sinks.owner IS NULL \
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
            "UPDATE sinks SET cursor_seq = $3 WHERE name = $1 AND owner = $2 AND cursor_seq < $3",
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
        sqlx::query(
            "UPDATE sinks SET owner = NULL, lease_until = 0 WHERE name = $1 AND owner = $2",
        )
        .bind(sink)
        .bind(owner)
        .execute(&self.pool)
        .await
        .map_err(unavailable)?;
        Ok(())
    }

    fn listen(&self, deliveries: Arc<Notify>, events: Arc<Notify>) {
        let url = self.url.clone();
        let mut closed = self.closed.subscribe();
        tokio::spawn(async move {
            let run = async move {
                loop {
                    match PgListener::connect(&url).await {
                        Ok(mut listener) => {
                            if let Err(e) = listener
                                .listen_all([DELIVERIES_CHANNEL, EVENTS_CHANNEL])
                                .await
                            {
                                tracing::warn!(error = %e, "LISTEN failed");
                            } else {
                                // Anything committed while we weren't listening.
                                deliveries.notify_waiters();
                                events.notify_waiters();
                                loop {
                                    // `try_recv` reports a lost connection as
                                    // `None` and reconnects on the next call.
                                    match listener.try_recv().await {
                                        Ok(Some(n)) if n.channel() == DELIVERIES_CHANNEL => {
                                            deliveries.notify_waiters()
                                        }
                                        Ok(Some(_)) => events.notify_waiters(),
                                        Ok(None) => {
                                            deliveries.notify_waiters();
                                            events.notify_waiters();
                                        }
                                        Err(e) => {
                                            tracing::warn!(error = %e, "LISTEN connection lost");
                                            break;
                                        }
                                    }
                                }
                            }
                        }
                        Err(e) => tracing::warn!(error = %e, "cannot connect for LISTEN"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            };
            tokio::select! {
                _ = run => {}
                _ = closed.wait_for(|c| *c) => {}
            }
        });
    }

    async fn queue_stats(&self) -> StoreResult<QueueStats> {
        let by_status: Vec<(String, i64)> = sqlx::query_as(sql::QUEUE_BY_STATUS)
            .fetch_all(&self.pool)
            .await
            .map_err(unavailable)?;
        let oldest_waiting_ms: Option<i64> = sqlx::query_scalar(sql::OLDEST_WAITING)
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
        let outcome = sql::applied(done.rows_affected());
        if outcome == Transition::Applied {
            self.notify_deliveries().await?;
        }
        Ok(outcome)
    }

    async fn requeue_matching(
        &self,
        filter: &DeliveryFilter,
        allowed: &[DeliveryStatus],
        now_ms: i64,
        dry_run: bool,
    ) -> StoreResult<u64> {
        let mut qb = sql::requeue_matching::<Postgres>(filter, allowed, now_ms, dry_run);
        if dry_run {
            let n: i64 = qb
                .build_query_scalar()
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
            return Ok(n.max(0) as u64);
        }
        let n = qb
            .build()
            .execute(&self.pool)
            .await
            .map_err(unavailable)?
            .rows_affected();
        if n > 0 {
            self.notify_deliveries().await?;
        }
        Ok(n)
    }

    async fn discard(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Transition> {
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
             JOIN requests r ON r.id = d.request_id WHERE d.id = $1",
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
                let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
                    sql::delete_in::<Postgres>(table, column, &ids)
                        .build()
                        .execute(&mut *tx)
                        .await
                        .map_err(unavailable)?;
                }
                sql::delete_in::<Postgres>("deliveries", "id", &ids)
                    .build()
                    .execute(&mut *tx)
                    .await
                    .map_err(unavailable)?;
                sql::delete_orphan_requests::<Postgres>(&requests)
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        sql::disable_removed_config_subscriptions::<Postgres>(&names, now_ms)
            .build()
            .execute(&mut *tx)
            .await
            .map_err(unavailable)?;
        tx.commit().await.map_err(unavailable)
    }

    async fn create_subscription(&self, sub: &NewSubscription, now_ms: i64) -> StoreResult<bool> {
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        let mut n = 0;
        for chunk in messages.chunks(MESSAGE_ROWS_PER_STATEMENT) {
            n += sql::enqueue_messages::<Postgres>(chunk)
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
        // SKIP LOCKED: instances claim disjoint messages without waiting;
        // a message whose earlier sibling another instance holds is not
        // due (the NOT EXISTS sees that sibling unfinished).
        let rows: Vec<(String, String, String, String, i64)> = sqlx::query_as(&format!(
            "WITH due AS ({} FOR UPDATE OF m SKIP LOCKED) \
             UPDATE push_messages SET status = 'delivering', attempts = attempts + 1, \
             lease_until = $3, updated_at = $1 FROM due WHERE push_messages.id = due.id \
             RETURNING push_messages.id, subscription, event_id, event_type, attempts",
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
        insert_system_event(&mut tx, event, now_ms)
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
            sql::list_messages::<Postgres>(subscription, status, before_seq, limit)
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
            sql::list_push_attempts::<Postgres>(subscription, message_id, before_id, limit)
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
            let mut tx = self.pool.begin().await.map_err(unavailable)?;
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
                sql::delete_in::<Postgres>(table, column, &ids)
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
        let _ = self.closed.send(true);
        self.pool.close().await;
    }
}
