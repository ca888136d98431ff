//! The embedded SQLite backend: one file, WAL journal, `synchronous=FULL` so
//! a committed transaction is on disk before `insert_requests` returns.
//!
//! Every write goes through ONE dedicated connection behind an in-process
//! mutex (SQLite has one writer anyway): its page cache stays warm, since no
//! other connection's commits invalidate it, and writers queue in process
//! instead of on SQLite's busy handler. Reads use a pool of their own.
//!
//! The group-commit writer's batches (ingested requests, the queue's
//! completions and claims) run as one multi-statement query from `BEGIN
//! IMMEDIATE` to `COMMIT`: one round trip to sqlx's SQLite thread per
//! commit instead of one per statement, which is what bounded the ingest
//! rate once flushes were grouped. WAL checkpoints run in the background on
//! a connection of their own, not inside the writer's commits.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Row, Sqlite, SqlitePool};
use tokio::sync::Notify;

use super::sql;
use super::{
    AttemptOutcome, AttemptRecord, ClaimRequest, Claimed, ClaimedMessage, CompleteBatch, Completed,
    DeliveryFilter, DeliveryRecord, DeliveryStatus, FailureStreak, GroupOutcome, Inserted,
    MessageOutcome, MessageRecord, NewDelivery, NewEvent, NewMessage, NewRequest, NewSubscription,
    Position, Purge, Purged, PushAttempt, PushAttemptRecord, QueueStats, Rejection,
    RejectionFilter, RejectionRecord, RequestRecord, Retry, SourceStats, Store, StoreError,
    StoreResult, StoredEvent, SubscriptionRecord, SubscriptionStatus, Transition, WriteGroup,
};
use crate::catalog::TypePattern;
use secrecy::{ExposeSecret, SecretString};

/// Rows per multi-row statement: 14 parameters a delivery row keeps a
/// statement far below SQLite's 32 766 bound parameters.
const ROWS_PER_STATEMENT: usize = 500;

/// The writer's page cache (KiB): the unique index on (source,
/// provider_event_id) takes random inserts, so its pages are the ones a
/// small cache keeps reading back.
const WRITER_CACHE_KIB: i64 = 16 * 1024;

/// How long commits accumulate in the WAL before the background
/// checkpoint copies them into the database file: pages written several
/// times in that window (index pages) are copied once.
const CHECKPOINT_INTERVAL: Duration = Duration::from_millis(200);

/// The writer checkpoints by itself only when the WAL passes this many
/// pages (~40 MiB): a backstop for a checkpointer that fell behind. SQLite's
/// default (1000) made every few commits copy the WAL into the database and
/// flush it inside the commit, on the writer's serial path.
const WRITER_AUTOCHECKPOINT_PAGES: u32 = 10_000;

pub struct SqliteStore {
    /// Readers.
    pool: SqlitePool,
    /// The one writer.
    /// `None` once the store is closed: nothing writes after `close`.
    writer: tokio::sync::Mutex<Option<SqliteConnection>>,
    /// Signalled after commits: the background checkpointer's cue.
    committed: Arc<Notify>,
    /// Tells the checkpointer to close its connection and end.
    stop_checkpoints: tokio::sync::watch::Sender<bool>,
    checkpointer: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Ok(Some(task)) = self.checkpointer.get_mut().map(Option::take) {
            task.abort();
        }
    }
}

/// Copy committed WAL frames into the database file off the writer's path
/// (a PASSIVE checkpoint on a connection of its own runs beside the
/// writer). Durability doesn't depend on it: a commit is durable once its
/// WAL frames are flushed.
///
/// On `stop` (or when its sender is gone) it closes its connection before
/// it ends, so `close` can wait until no file handle is left open.
fn spawn_checkpointer(
    mut conn: SqliteConnection,
    committed: Arc<Notify>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = committed.notified() => {}
                _ = stop.changed() => break,
            }
            tokio::select! {
                _ = tokio::time::sleep(CHECKPOINT_INTERVAL) => {}
                _ = stop.changed() => break,
            }
            if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
                .execute(&mut conn)
                .await
            {
                tracing::warn!(error = %e, "background WAL checkpoint failed");
            }
        }
        let _ = conn.close().await;
    })
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
            // For a new database only (an existing one keeps its page
            // size): a stored request is ~2.5 KiB, so a 4 KiB page held
            // one and every request cost a page of its own in the WAL;
            // 8 KiB pages hold three. Fewer, larger WAL frames measured
            // ~20 % more rows per second on this workload.
            .page_size(8192)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true)
            // Statement journals (a multi-row statement inside a
            // transaction needs one) in memory, not a temp file created
            // and unlinked per transaction.
            .pragma("temp_store", "memory");
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
            .connect_with(options.clone())
            .await
            .map_err(unavailable)?;
        sqlx::migrate!("migrations/sqlite")
            .run(&pool)
            .await
            .map_err(|e| StoreError::Unavailable(format!("migrations: {e}")))?;
        let checkpoints = options.clone().connect().await.map_err(unavailable)?;
        let writer = options
            .pragma("cache_size", (-WRITER_CACHE_KIB).to_string())
            .pragma(
                "wal_autocheckpoint",
                WRITER_AUTOCHECKPOINT_PAGES.to_string(),
            )
            .connect()
            .await
            .map_err(unavailable)?;
        let committed = Arc::new(Notify::new());
        let (stop_checkpoints, stop) = tokio::sync::watch::channel(false);
        Ok(SqliteStore {
            pool,
            writer: tokio::sync::Mutex::new(Some(writer)),
            checkpointer: std::sync::Mutex::new(Some(spawn_checkpointer(
                checkpoints,
                committed.clone(),
                stop,
            ))),
            stop_checkpoints,
            committed,
        })
    }

    /// Commit a group in one transaction. Should that fail and the group
    /// mix callers (ingest and the queue), each part is tried again on its
    /// own, so that a failing completion can't refuse an ingest or the
    /// other way round: only the part that fails by itself reports it.
    async fn commit_group(&self, group: Group<'_>) -> GroupOutcome {
        let mut w = match self.writer().await {
            Ok(w) => w,
            Err(e) => return group.failed(&e),
        };
        let error = match run_group(&mut w, &group).await {
            Ok(outcome) => {
                self.committed.notify_one();
                return outcome;
            }
            Err(e) => e,
        };
        self.committed.notify_one();
        let parts =
            usize::from(!group.requests.is_empty()) + group.completes.len() + group.claims.len();
        if parts <= 1 {
            return group.failed(&error);
        }
        tracing::warn!(error = %error, parts, "group commit failed; retrying its parts one by one");
        let inserted = if group.requests.is_empty() {
            Ok(Vec::new())
        } else {
            let part = Group {
                requests: group.requests,
                ..Group::default()
            };
            match run_group(&mut w, &part).await {
                Ok(o) => o.inserted,
                Err(e) => Err(e),
            }
        };
        let mut completes = Vec::with_capacity(group.completes.len());
        for c in group.completes.chunks(1) {
            let part = Group {
                completes: c,
                ..Group::default()
            };
            completes.push(match run_group(&mut w, &part).await {
                Ok(o) => o.completes.into_iter().next().unwrap_or(Ok(())),
                Err(e) => Err(e),
            });
        }
        let mut claims = Vec::with_capacity(group.claims.len());
        for c in group.claims.chunks(1) {
            let part = Group {
                claims: c,
                ..Group::default()
            };
            claims.push(match run_group(&mut w, &part).await {
                Ok(o) => o
                    .claims
                    .into_iter()
                    .next()
                    .unwrap_or_else(|| Ok(Vec::new())),
                Err(e) => Err(e),
            });
        }
        GroupOutcome {
            inserted,
            completes,
            claims,
        }
    }
}

/// A `WriteGroup` by reference, so that its parts can be retried alone
/// without copying bodies.
#[derive(Clone, Copy, Default)]
struct Group<'a> {
    requests: &'a [NewRequest],
    completes: &'a [CompleteBatch],
    claims: &'a [ClaimRequest],
}

impl Group<'_> {
    fn failed(&self, e: &StoreError) -> GroupOutcome {
        GroupOutcome {
            inserted: if self.requests.is_empty() {
                Ok(Vec::new())
            } else {
                Err(e.clone())
            },
            completes: self.completes.iter().map(|_| Err(e.clone())).collect(),
            claims: self.claims.iter().map(|_| Err(e.clone())).collect(),
        }
    }
}

/// The first column of every row the group's query returns: which
/// statement it came from. Claims are `CLAIMED + i` for the i-th claim.
const KEY_ROW: i64 = 0;
const CLAIMED: i64 = 1;

/// Due deliveries in arrival order, `limit` of them. Appears twice per
/// claim (rows to return, rows to update); the order is total, so both
/// see the same set within the transaction.
///
/// One arm per status, each the first `limit` by the index on (status,
/// next_attempt_at): the top `limit` of their union is the top `limit` of
/// all due rows. A single `status IN (…) OR …` condition sorted the whole
/// backlog on every claim — milliseconds per claim, on the writer's serial
/// path, growing with the backlog it was meant to drain.
fn push_due<'a>(q: &mut QueryBuilder<'a, Sqlite>, c: &ClaimRequest) {
    const ORDER: &str = " ORDER BY next_attempt_at, received_at, request_id, item_index LIMIT ";
    q.push("SELECT id FROM (");
    let arms = [
        "status = 'pending' AND next_attempt_at <= ",
        "status = 'failed' AND next_attempt_at <= ",
        "status = 'processing' AND lease_until < ",
    ];
    for (i, arm) in arms.into_iter().enumerate() {
        if i > 0 {
            q.push(" UNION ALL ");
        }
        q.push(
            "SELECT * FROM (SELECT id, next_attempt_at, received_at, request_id, item_index \
             FROM deliveries WHERE ",
        )
        .push(arm)
        .push_bind(c.now_ms)
        .push(ORDER)
        .push_bind(i64::from(c.limit))
        .push(")");
    }
    q.push(")").push(ORDER).push_bind(i64::from(c.limit));
}

/// The group as one multi-statement query, `BEGIN IMMEDIATE` to `COMMIT`.
/// Order: the requests (so the idempotency lookups see them), the
/// completions, then the claims (which may lease what this very group
/// inserted).
fn group_query<'a>(group: &Group<'a>) -> QueryBuilder<'a, Sqlite> {
    let mut q = QueryBuilder::<Sqlite>::new("BEGIN IMMEDIATE;\n");
    for chunk in group.requests.chunks(ROWS_PER_STATEMENT) {
        q.push("INSERT INTO requests (id, source, received_at, remote_addr, headers, body) ");
        q.push_values(chunk, |mut row, req| {
            row.push_bind(&req.id)
                .push_bind(&req.source)
                .push_bind(req.received_at_ms)
                .push_bind(&req.remote_addr)
                .push_bind(&req.headers_json)
                .push_bind(&req.body);
        });
        q.push(";\n");
    }
    // Every delivery in batch order: within one statement SQLite inserts
    // the rows in order, so of two with the same key in this group the
    // first is stored and the second is its duplicate, as if sent one
    // after the other.
    let rows: Vec<(&NewRequest, &NewDelivery)> = group
        .requests
        .iter()
        .flat_map(|req| req.deliveries.iter().map(move |d| (req, d)))
        .collect();
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        q.push(
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
        q.push(" ON CONFLICT (source, provider_event_id) DO NOTHING;\n");
    }
    // A request all of whose events were duplicates keeps no second copy
    // of the bytes.
    for chunk in group.requests.chunks(ROWS_PER_STATEMENT) {
        q.push("DELETE FROM requests WHERE id IN (");
        let mut ids = q.separated(", ");
        for req in chunk {
            ids.push_bind(&req.id);
        }
        q.push(") AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = requests.id);\n");
    }
    // What each key holds now: our delivery, or the original (committed
    // earlier, or earlier in this group).
    for chunk in rows.chunks(ROWS_PER_STATEMENT) {
        q.push("SELECT ").push(KEY_ROW).push(
            ", source, provider_event_id, id, status FROM deliveries \
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
        q.push(");\n");
    }

    for batch in group.completes.iter().filter(|c| !c.done.is_empty()) {
        let events: Vec<(&Completed, &super::NewEvent)> = batch
            .done
            .iter()
            .flat_map(|c| c.events.iter().map(move |e| (c, e)))
            .collect();
        for chunk in events.chunks(ROWS_PER_STATEMENT) {
            q.push("INSERT INTO events (id, type, source, delivery_id, created_at, payload) ");
            q.push_values(chunk, |mut row, (c, e)| {
                row.push_bind(&e.id)
                    .push_bind(&e.event_type)
                    .push_bind(&e.source)
                    .push_bind(&c.delivery_id)
                    .push_bind(batch.now_ms)
                    .push_bind(&e.payload_json);
            });
            q.push(" ON CONFLICT (id) DO NOTHING;\n");
        }
        for chunk in batch.done.chunks(ROWS_PER_STATEMENT) {
            q.push(
                "UPDATE deliveries SET status = 'done', lease_until = NULL, last_error = NULL, \
                 updated_at = ",
            )
            .push_bind(batch.now_ms)
            .push(" WHERE id IN (");
            let mut ids = q.separated(", ");
            for c in chunk {
                ids.push_bind(&c.delivery_id);
            }
            q.push(");\n");
            // The audit rows, numbered by the delivery's attempts (as
            // `sql::INSERT_ATTEMPT` does one at a time).
            q.push(
                "INSERT INTO attempts \
                 (delivery_id, attempt, started_at, finished_at, outcome, error, retry_at, events) \
                 SELECT d.id, d.attempts, v.column2, ",
            )
            .push_bind(batch.now_ms)
            .push(", ")
            .push_bind(AttemptOutcome::Done.as_str())
            .push(", NULL, NULL, v.column3 FROM (VALUES ");
            let mut values = q.separated(", ");
            for c in chunk {
                values
                    .push("(")
                    .push_bind_unseparated(&c.delivery_id)
                    .push_unseparated(", ")
                    .push_bind_unseparated(c.started_at_ms)
                    .push_unseparated(", ")
                    .push_bind_unseparated(sql::events_json(&c.events))
                    .push_unseparated(")");
            }
            q.push(") AS v JOIN deliveries d ON d.id = v.column1;\n");
        }
    }

    for (i, c) in group.claims.iter().enumerate() {
        // The rows first (with the attempt they are about to become), then
        // the lease. A delivery whose request row is gone still comes back
        // (with an empty body, so processing fails and retries) rather
        // than staying leased and unseen.
        q.push("SELECT ").push(CLAIMED + i as i64).push(
            ", d.id, d.source, d.provider, d.provider_event_id, d.provider_event_type, \
                 d.occurred_at, d.received_at, d.item_index, d.attempts + 1, r.body, r.headers \
                 FROM deliveries d LEFT JOIN requests r ON r.id = d.request_id WHERE d.id IN (",
        );
        push_due(&mut q, c);
        q.push(");\nUPDATE deliveries SET status = 'processing', attempts = attempts + 1, lease_until = ")
            .push_bind(c.lease_until_ms)
            .push(", updated_at = ")
            .push_bind(c.now_ms)
            .push(" WHERE id IN (");
        push_due(&mut q, c);
        q.push(");\n");
    }
    q.push("COMMIT;");
    q
}

/// Run the group's query on the writer and sort out what came back. On an
/// error the transaction is rolled back (the query stops at the failing
/// statement, inside it).
async fn run_group(conn: &mut SqliteConnection, group: &Group<'_>) -> StoreResult<GroupOutcome> {
    let mut q = group_query(group);
    // Groups of requests alone recur with the same shape under a steady
    // load and are worth caching; mixed ones rarely repeat.
    let persistent = group.completes.is_empty() && group.claims.is_empty();
    let rows = match q.build().persistent(persistent).fetch_all(&mut *conn).await {
        Ok(rows) => rows,
        Err(e) => {
            // Nothing to roll back when BEGIN itself failed; that error
            // is the one that matters.
            let _ = sqlx::query("ROLLBACK").execute(&mut *conn).await;
            return Err(unavailable(e));
        }
    };
    read_group(group, rows)
}

fn read_group(group: &Group<'_>, rows: Vec<SqliteRow>) -> StoreResult<GroupOutcome> {
    let mut stored: HashMap<(String, String), (String, String)> = HashMap::new();
    let mut claims: Vec<Vec<Claimed>> = vec![Vec::new(); group.claims.len()];
    for row in rows {
        let kind: i64 = row.try_get(0).map_err(unavailable)?;
        if kind == KEY_ROW {
            let source: String = row.try_get(1).map_err(unavailable)?;
            let event: String = row.try_get(2).map_err(unavailable)?;
            let id: String = row.try_get(3).map_err(unavailable)?;
            let status: String = row.try_get(4).map_err(unavailable)?;
            stored.insert((source, event), (id, status));
            continue;
        }
        let Some(claimed) = usize::try_from(kind - CLAIMED)
            .ok()
            .and_then(|i| claims.get_mut(i))
        else {
            return Err(StoreError::Corrupt(format!("unexpected row kind {kind}")));
        };
        let body: Option<Vec<u8>> = row.try_get(10).map_err(unavailable)?;
        let headers_json: Option<String> = row.try_get(11).map_err(unavailable)?;
        claimed.push(Claimed {
            id: row.try_get(1).map_err(unavailable)?,
            source: row.try_get(2).map_err(unavailable)?,
            provider: row.try_get(3).map_err(unavailable)?,
            provider_event_id: row.try_get(4).map_err(unavailable)?,
            provider_event_type: row.try_get(5).map_err(unavailable)?,
            occurred_at_ms: row.try_get(6).map_err(unavailable)?,
            received_at_ms: row.try_get(7).map_err(unavailable)?,
            item_index: row.try_get(8).map_err(unavailable)?,
            attempts: row.try_get::<i64, _>(9).map_err(unavailable)?.max(0) as u32,
            body: body.unwrap_or_default(),
            headers_json: headers_json.unwrap_or_else(|| "{}".into()),
        });
    }
    for c in &mut claims {
        // Process in arrival order, and a batch in item order.
        c.sort_by_key(|c| (c.received_at_ms, c.item_index));
    }

    let mut inserted = Vec::with_capacity(group.requests.len());
    for req in group.requests {
        let mut outcome = Vec::with_capacity(req.deliveries.len());
        for d in &req.deliveries {
            let Some((id, status)) = stored.get(&(req.source.clone(), d.provider_event_id.clone()))
            else {
                return Err(StoreError::Unavailable(
                    "a conflicting delivery vanished".into(),
                ));
            };
            outcome.push(if *id == d.id {
                Inserted {
                    id: d.id.clone(),
                    provider_event_id: d.provider_event_id.clone(),
                    duplicate: false,
                    status: d.status,
                }
            } else {
                Inserted {
                    id: id.clone(),
                    provider_event_id: d.provider_event_id.clone(),
                    duplicate: true,
                    status: DeliveryStatus::parse(status)
                        .ok_or_else(|| StoreError::Corrupt(format!("unknown status {status:?}")))?,
                }
            });
        }
        inserted.push(outcome);
    }
    Ok(GroupOutcome {
        inserted: Ok(inserted),
        completes: group.completes.iter().map(|_| Ok(())).collect(),
        claims: claims.into_iter().map(Ok).collect(),
    })
}

#[async_trait]
impl Store for SqliteStore {
    async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>> {
        self.commit_group(Group {
            requests: batch,
            ..Group::default()
        })
        .await
        .inserted
    }

    async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>> {
        let claim = [ClaimRequest {
            now_ms,
            lease_until_ms,
            limit,
        }];
        let outcome = self
            .commit_group(Group {
                claims: &claim,
                ..Group::default()
            })
            .await;
        outcome
            .claims
            .into_iter()
            .next()
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    async fn complete_many(&self, done: &[Completed], now_ms: i64) -> StoreResult<()> {
        if done.is_empty() {
            return Ok(());
        }
        let batch = [CompleteBatch {
            done: done.to_vec(),
            now_ms,
        }];
        let outcome = self
            .commit_group(Group {
                completes: &batch,
                ..Group::default()
            })
            .await;
        outcome.completes.into_iter().next().unwrap_or(Ok(()))
    }

    fn single_writer(&self) -> bool {
        true
    }

    async fn write_group(&self, group: &WriteGroup) -> GroupOutcome {
        self.commit_group(Group {
            requests: &group.requests,
            completes: &group.completes,
            claims: &group.claims,
        })
        .await
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
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        qb.build().execute(&mut *w).await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "UPDATE deliveries SET status = 'pending', lease_until = NULL, updated_at = ? \
             WHERE status = 'processing'",
        )
        .bind(now_ms)
        .execute(&mut *w)
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
        let mut w = self.writer().await?;
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
        .fetch_optional(&mut *w)
        .await
        .map_err(unavailable)?;
        Ok(cursor)
    }

    async fn advance_sink(&self, sink: &str, owner: &str, seq: i64) -> StoreResult<bool> {
        let mut w = self.writer().await?;
        let done = sqlx::query(
            "UPDATE sinks SET cursor_seq = ?3 WHERE name = ?1 AND owner = ?2 AND cursor_seq < ?3",
        )
        .bind(sink)
        .bind(owner)
        .bind(seq)
        .execute(&mut *w)
        .await
        .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_sink(&self, sink: &str, owner: &str) -> StoreResult<()> {
        let mut w = self.writer().await?;
        sqlx::query("UPDATE sinks SET owner = NULL, lease_until = 0 WHERE name = ? AND owner = ?")
            .bind(sink)
            .bind(owner)
            .execute(&mut *w)
            .await
            .map_err(unavailable)?;
        Ok(())
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
        let mut w = self.writer().await?;
        let current = match self.transition_state(id, allowed, true).await? {
            Ok(current) => current,
            Err(refused) => return Ok(refused),
        };
        let done = sqlx::query(sql::REQUEUE)
            .bind(now_ms)
            .bind(id)
            .bind(current.as_str())
            .execute(&mut *w)
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
        let mut w = self.writer().await?;
        let done = qb.build().execute(&mut *w).await.map_err(unavailable)?;
        Ok(done.rows_affected())
    }

    async fn discard(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Transition> {
        let mut w = self.writer().await?;
        let current = match self.transition_state(id, allowed, false).await? {
            Ok(current) => current,
            Err(refused) => return Ok(refused),
        };
        let done = sqlx::query(sql::DISCARD)
            .bind(reason)
            .bind(now_ms)
            .bind(id)
            .bind(current.as_str())
            .execute(&mut *w)
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
                let mut w = self.writer().await?;
                let n = sqlx::query(sql::PURGE_BODIES)
                    .bind(before)
                    .bind(Vec::<u8>::new())
                    .bind(now_ms)
                    .bind(chunk)
                    .execute(&mut *w)
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
                let mut w = self.writer().await?;
                let n = sqlx::query(sql::PURGE_REJECTIONS)
                    .bind(before)
                    .bind(chunk)
                    .execute(&mut *w)
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
                let mut w = self.writer().await?;
                let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
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
            .execute(&mut *w)
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
        let mut w = self.writer().await?;
        let done = sqlx::query(sql::SET_SUBSCRIPTION_STATUS)
            .bind(name)
            .bind(status.as_str())
            .bind(reason)
            .bind(now_ms)
            .execute(&mut *w)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn delete_subscription(&self, name: &str) -> StoreResult<bool> {
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let done = sqlx::query(sql::ROTATE_SECRET)
            .bind(name)
            .bind(secret.expose_secret())
            .bind(previous_until_ms)
            .bind(now_ms)
            .execute(&mut *w)
            .await
            .map_err(unavailable)?;
        Ok(done.rows_affected() == 1)
    }

    async fn enqueue_messages(&self, messages: &[NewMessage]) -> StoreResult<u64> {
        if messages.is_empty() {
            return Ok(0);
        }
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        let mut w = self.writer().await?;
        let done = match message_id {
            Some(id) => {
                sqlx::query(&format!("{} AND id = $3", sql::REPLAY_MESSAGES))
                    .bind(subscription)
                    .bind(now_ms)
                    .bind(id)
                    .execute(&mut *w)
                    .await
            }
            None => {
                sqlx::query(sql::REPLAY_MESSAGES)
                    .bind(subscription)
                    .bind(now_ms)
                    .execute(&mut *w)
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
            let mut w = self.writer().await?;
            let mut tx = w.begin_with("BEGIN IMMEDIATE").await.map_err(unavailable)?;
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
        // The checkpointer closes its connection and ends; waited for, so
        // that no file handle is left when `close` returns.
        let _ = self.stop_checkpoints.send(true);
        let checkpointer = self.checkpointer.lock().ok().and_then(|mut t| t.take());
        if let Some(task) = checkpointer {
            let _ = task.await;
        }
        // The writer's file handles go now, not when the last reference to
        // the store is dropped.
        if let Some(writer) = self.writer.lock().await.take() {
            let _ = writer.close().await;
        }
        self.pool.close().await;
        // sqlx's `Pool::close` does not wait for a connection on its way
        // back to the pool (closing an idle connection hands its semaphore
        // a permit the connection had already returned): that connection's
        // task saw the pool open, and after its ping it is pushed to the
        // idle queue, open until the pool is dropped. Close those as they
        // arrive.
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.pool.size() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(2)).await;
            let _ = tokio::time::timeout_at(deadline, self.pool.close()).await;
        }
    }
}

impl SqliteStore {
    /// The one writer connection, held until the guard drops.
    async fn writer(&self) -> StoreResult<tokio::sync::MappedMutexGuard<'_, SqliteConnection>> {
        tokio::sync::MutexGuard::try_map(self.writer.lock().await, Option::as_mut)
            .map_err(|_| StoreError::Unavailable("the store is closed".into()))
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::group_commit::GroupCommitter;
    use crate::store::NewEvent;
    use std::sync::atomic::Ordering;

    async fn open() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("w.db").display());
        let store = SqliteStore::open(&url).await.unwrap();
        (dir, store)
    }

    fn request(n: usize, event_id: &str) -> NewRequest {
        NewRequest {
            id: format!("req_{n}"),
            source: "s".into(),
            provider: "p".into(),
            received_at_ms: 1_000 + n as i64,
            remote_addr: None,
            headers_json: "{}".into(),
            body: format!("{{\"n\":{n}}}").into_bytes(),
            deliveries: vec![NewDelivery {
                id: format!("dlv_{n}"),
                item_index: None,
                provider_event_id: event_id.into(),
                provider_event_type: Some("t".into()),
                occurred_at_ms: None,
                status: DeliveryStatus::Pending,
                violations: None,
            }],
        }
    }

    fn event(n: usize, delivery: &str) -> NewEvent {
        NewEvent {
            id: format!("evt_{n}"),
            event_type: "invoice.paid".into(),
            source: "s".into(),
            payload_json: format!("{{\"delivery\":\"{delivery}\"}}"),
        }
    }

    async fn request_rows(store: &SqliteStore) -> Vec<String> {
        sqlx::query_scalar("SELECT id FROM requests ORDER BY id")
            .fetch_all(&store.pool)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn write_group_dedupes_within_the_group_and_claims_what_it_inserted() {
        let (_dir, store) = open().await;
        store.insert_requests(&[request(0, "e0")]).await.unwrap();
        let group = WriteGroup {
            // e1 twice in this group, e0 committed before.
            requests: vec![request(1, "e1"), request(2, "e1"), request(3, "e0")],
            completes: Vec::new(),
            claims: vec![ClaimRequest {
                now_ms: 10_000,
                lease_until_ms: 20_000,
                limit: 10,
            }],
        };
        let outcome = store.write_group(&group).await;
        let inserted = outcome.inserted.unwrap();
        assert_eq!(inserted.len(), 3);
        assert!(!inserted[0][0].duplicate);
        assert_eq!(inserted[0][0].id, "dlv_1");
        assert!(inserted[1][0].duplicate, "the second copy in one group");
        assert_eq!(inserted[1][0].id, "dlv_1");
        assert!(inserted[2][0].duplicate);
        assert_eq!(inserted[2][0].id, "dlv_0");
        // Requests whose every event was a duplicate keep no row.
        assert_eq!(request_rows(&store).await, vec!["req_0", "req_1"]);
        // The claim in the same transaction saw this group's insert, with
        // the bodies and the attempt it is about to make.
        let claimed = outcome.claims.into_iter().next().unwrap().unwrap();
        let ids: Vec<&str> = claimed.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["dlv_0", "dlv_1"]);
        assert_eq!(claimed[1].body, b"{\"n\":1}");
        assert!(claimed.iter().all(|c| c.attempts == 1));
        // Leased: nothing is due any more.
        assert!(store.claim(10_000, 20_000, 10).await.unwrap().is_empty());
    }

    #[tokio::test]
    async fn write_group_completes_with_events_and_audit_rows() {
        let (_dir, store) = open().await;
        store
            .insert_requests(&[request(0, "e0"), request(1, "e1")])
            .await
            .unwrap();
        let claimed = store.claim(10_000, 20_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 2);
        let done = claimed
            .iter()
            .enumerate()
            .map(|(n, c)| Completed {
                delivery_id: c.id.clone(),
                started_at_ms: 10_000,
                events: if n == 0 {
                    vec![event(n, &c.id)]
                } else {
                    Vec::new()
                },
            })
            .collect::<Vec<_>>();
        store.complete_many(&done, 11_000).await.unwrap();
        let statuses: Vec<(String, String)> =
            sqlx::query_as("SELECT id, status FROM deliveries ORDER BY id")
                .fetch_all(&store.pool)
                .await
                .unwrap();
        assert!(statuses.iter().all(|(_, s)| s == "done"), "{statuses:?}");
        let attempts = store.delivery_attempts("dlv_0").await.unwrap();
        assert_eq!(attempts.len(), 1);
        assert_eq!(attempts[0].attempt, 1);
        assert_eq!(attempts[0].started_at_ms, 10_000);
        assert_eq!(attempts[0].finished_at_ms, 11_000);
        assert_eq!(attempts[0].outcome, "done");
        assert!(attempts[0].events_json.contains("evt_0"));
        assert_eq!(store.delivery_attempts("dlv_1").await.unwrap().len(), 1);
        let events = store.list_events(0, &[], 10).await.unwrap();
        assert_eq!(events.len(), 1);
        assert_eq!(events[0].id, "evt_0");
    }

    #[tokio::test]
    async fn write_group_failing_part_does_not_fail_the_others() {
        let (_dir, store) = open().await;
        // An event for a delivery that doesn't exist breaks its foreign
        // key: that completion fails, the requests beside it don't.
        let bogus = CompleteBatch {
            done: vec![Completed {
                delivery_id: "dlv_missing".into(),
                started_at_ms: 1,
                events: vec![event(9, "dlv_missing")],
            }],
            now_ms: 2,
        };
        let group = WriteGroup {
            requests: vec![request(0, "e0")],
            completes: vec![bogus],
            claims: Vec::new(),
        };
        let outcome = store.write_group(&group).await;
        assert!(!outcome.inserted.unwrap()[0][0].duplicate);
        assert!(outcome.completes[0].is_err());
        assert_eq!(request_rows(&store).await, vec!["req_0"]);
        assert!(store.list_events(0, &[], 10).await.unwrap().is_empty());
        // And the writer is usable afterwards (no transaction left open).
        let again = store.insert_requests(&[request(1, "e0")]).await.unwrap();
        assert!(again[0][0].duplicate);
    }

    #[tokio::test]
    async fn claim_takes_due_rows_of_every_status_in_arrival_order() {
        let (_dir, store) = open().await;
        let requests: Vec<NewRequest> = (0..4).map(|n| request(n, &format!("e{n}"))).collect();
        store.insert_requests(&requests).await.unwrap();
        // dlv_0: failed, due at 1500; dlv_1: processing, lease expired;
        // dlv_2: failed, not due yet; dlv_3: pending since 1003.
        let mut w = store.writer().await.unwrap();
        for (id, status, next, lease) in [
            ("dlv_0", "failed", 1_500, None),
            ("dlv_1", "processing", 1_001, Some(1_900)),
            ("dlv_2", "failed", 99_000, None),
        ] {
            sqlx::query(
                "UPDATE deliveries SET status = ?, next_attempt_at = ?, lease_until = ? WHERE id = ?",
            )
            .bind(status)
            .bind(next)
            .bind(lease)
            .bind(id)
            .execute(&mut *w)
            .await
            .unwrap();
        }
        drop(w);
        let first = store.claim(2_000, 9_000, 2).await.unwrap();
        let ids: Vec<&str> = first.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["dlv_1", "dlv_3"], "earliest next attempts first");
        let second = store.claim(2_000, 9_000, 10).await.unwrap();
        let ids: Vec<&str> = second.iter().map(|c| c.id.as_str()).collect();
        assert_eq!(ids, vec!["dlv_0"], "dlv_2 is not due");
    }

    /// Files under `dir` this process still has open.
    fn open_files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
            .filter(|target| target.starts_with(dir))
            .collect()
    }

    #[tokio::test]
    async fn close_leaves_no_file_open_even_with_a_connection_on_its_way_back() {
        for round in 0..20 {
            let (dir, store) = open().await;
            // A pooled connection dropped just before `close`: sqlx returns
            // it from a spawned task, which can push it back to the idle
            // queue after `Pool::close` has emptied that queue.
            let conn = store.pool.acquire().await.unwrap();
            drop(conn);
            store.close().await;
            let open = open_files_under(dir.path());
            assert!(open.is_empty(), "round {round}: still open: {open:?}");
        }
    }

    #[tokio::test]
    async fn group_committer_routes_queue_writes_through_the_writer() {
        let (_dir, store) = open().await;
        let store = Arc::new(store);
        let gc = GroupCommitter::spawn(store.clone(), 64, std::time::Duration::from_secs(30));
        gc.insert(request(0, "e0")).await.unwrap();
        let claimed = gc.claim(10_000, 20_000, 10).await.unwrap();
        assert_eq!(claimed.len(), 1);
        gc.complete_many(
            vec![Completed {
                delivery_id: claimed[0].id.clone(),
                started_at_ms: 10_000,
                events: vec![event(0, &claimed[0].id)],
            }],
            11_000,
        )
        .await
        .unwrap();
        let stats = gc.stats();
        assert_eq!(stats.queue_ops.load(Ordering::Relaxed), 2);
        assert_eq!(stats.commits.load(Ordering::Relaxed), 3);
        let record = store.get_delivery("dlv_0").await.unwrap().unwrap();
        assert_eq!(record.status, DeliveryStatus::Done);
        assert_eq!(store.list_events(0, &[], 10).await.unwrap().len(), 1);
    }
}
