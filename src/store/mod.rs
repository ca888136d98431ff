//! Storage: one trait, backends behind it (SQLite now; PostgreSQL is the next
//! backend). The store knows rows and transactions, never HTTP; the only
//! errors it reports are "unavailable" (retry later) and "corrupt" (a row we
//! can't read back). Times cross this boundary as unix milliseconds.

pub mod group_commit;
pub mod postgres;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;

use crate::catalog::TypePattern;

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeliveryStatus {
    Pending,
    Processing,
    Done,
    Failed,
    Dead,
    Quarantined,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Processing => "processing",
            DeliveryStatus::Done => "done",
            DeliveryStatus::Failed => "failed",
            DeliveryStatus::Dead => "dead",
            DeliveryStatus::Quarantined => "quarantined",
        }
    }

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        Some(match s {
            "pending" => DeliveryStatus::Pending,
            "processing" => DeliveryStatus::Processing,
            "done" => DeliveryStatus::Done,
            "failed" => DeliveryStatus::Failed,
            "dead" => DeliveryStatus::Dead,
            "quarantined" => DeliveryStatus::Quarantined,
            _ => return None,
        })
    }
}

/// One accepted request and the provider events it carries.
#[derive(Debug, Clone)]
pub struct NewRequest {
    pub id: String,
    pub source: String,
    pub provider: String,
    pub received_at_ms: i64,
    pub remote_addr: Option<String>,
    /// JSON object of the stored headers.
    pub headers_json: String,
    pub body: Vec<u8>,
    pub deliveries: Vec<NewDelivery>,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub id: String,
    pub item_index: Option<i64>,
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub occurred_at_ms: Option<i64>,
    /// `Pending` or `Quarantined`.
    pub status: DeliveryStatus,
    pub violations: Option<String>,
}

/// What the insert found for one provider event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    /// The delivery's id: the new one, or the original's for a duplicate.
    pub id: String,
    pub provider_event_id: String,
    pub duplicate: bool,
    pub status: DeliveryStatus,
}

/// A delivery leased by a worker, with what processing needs.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub id: String,
    pub source: String,
    pub provider: String,
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub occurred_at_ms: Option<i64>,
    pub received_at_ms: i64,
    pub item_index: Option<i64>,
    pub attempts: u32,
    pub body: Vec<u8>,
    pub headers_json: String,
}

/// A catalog event ready to store (already validated).
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub payload_json: String,
}

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: String,
    pub event_type: String,
    pub source: String,
    pub payload_json: String,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct DeliveryRecord {
    pub id: String,
    pub source: String,
    pub provider: String,
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub violations: Option<String>,
    pub received_at_ms: i64,
    pub next_attempt_at_ms: i64,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub id: String,
    pub source: String,
    pub code: String,
    pub message: String,
    pub remote_addr: Option<String>,
    pub received_at_ms: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct RejectionRecord {
    pub id: String,
    pub source: String,
    pub code: String,
    pub message: String,
    pub remote_addr: Option<String>,
    pub received_at_ms: i64,
}

/// What `/metrics` reports about the queue at scrape time.
#[derive(Debug, Clone, Default)]
pub struct QueueStats {
    /// Deliveries per status, `done` excluded (it only grows).
    pub by_status: Vec<(String, i64)>,
    /// Arrival time of the oldest delivery still waiting to be processed.
    pub oldest_waiting_ms: Option<i64>,
    /// Events each sink has yet to publish.
    pub sink_lag: Vec<(String, i64)>,
}

/// What a request to process a delivery again found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requeue {
    Requeued,
    NotFound,
    /// Its status does not allow it (e.g. it is being processed).
    Refused(DeliveryStatus),
}

/// How a failed attempt ends: retried later, or dead.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    At(i64),
    Dead,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The database can't be reached or refused the write: answer 503.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("stored data is not readable: {0}")]
    Corrupt(String),
}

pub type StoreResult<T> = Result<T, StoreError>;

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Insert requests and their deliveries in ONE transaction, idempotent
    /// on `(source, provider_event_id)`; returns, per request, what each
    /// provider event became. Returns only after the commit is durable.
    async fn insert_requests(&self, batch: &[NewRequest]) -> StoreResult<Vec<Vec<Inserted>>>;

    /// Lease up to `limit` due deliveries (pending, failed and due, or
    /// processing with an expired lease) until `lease_until_ms`.
    async fn claim(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<Claimed>>;

    /// Store the catalog events (ids are deterministic; existing ones are
    /// kept) and mark the delivery done, in one transaction.
    async fn complete(
        &self,
        delivery_id: &str,
        events: &[NewEvent],
        now_ms: i64,
    ) -> StoreResult<()> {
        self.complete_many(&[(delivery_id.to_string(), events.to_vec())], now_ms)
            .await
    }

    /// `complete` for several deliveries in ONE transaction: a worker's
    /// whole claimed batch costs one commit.
    async fn complete_many(&self, done: &[(String, Vec<NewEvent>)], now_ms: i64)
        -> StoreResult<()>;

    /// Record a failed attempt.
    async fn fail(
        &self,
        delivery_id: &str,
        error: &str,
        retry: Retry,
        now_ms: i64,
    ) -> StoreResult<()>;

    async fn record_rejections(&self, batch: &[Rejection]) -> StoreResult<()>;

    async fn list_events(
        &self,
        after_seq: i64,
        types: &[TypePattern],
        limit: u32,
    ) -> StoreResult<Vec<StoredEvent>>;

    async fn get_event(&self, id: &str) -> StoreResult<Option<StoredEvent>>;

    async fn get_delivery(&self, id: &str) -> StoreResult<Option<DeliveryRecord>>;

    async fn list_deliveries(
        &self,
        source: Option<&str>,
        status: Option<DeliveryStatus>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    async fn list_rejections(&self, limit: u32) -> StoreResult<Vec<RejectionRecord>>;

    /// Called once at start-up, before workers run. A backend whose
    /// database serves a single instance (SQLite) hands back the leases a
    /// killed predecessor held, so its deliveries don't wait for the lease
    /// to expire; shared backends leave leases to expire. Returns how many
    /// deliveries were released.
    async fn recover_leases(&self, now_ms: i64) -> StoreResult<u64>;

    /// Take or renew the right to publish to `sink` until `until_ms` (a
    /// lease: when its holder dies, another instance takes over after
    /// expiry). Returns the sink's cursor when `owner` holds the lease.
    async fn sink_lease(
        &self,
        sink: &str,
        owner: &str,
        now_ms: i64,
        until_ms: i64,
    ) -> StoreResult<Option<i64>>;

    /// Move the sink's cursor forward to `seq` (only for the lease holder).
    async fn advance_sink(&self, sink: &str, owner: &str, seq: i64) -> StoreResult<bool>;

    /// Give the lease up (graceful shutdown).
    async fn release_sink(&self, sink: &str, owner: &str) -> StoreResult<()>;

    /// Wake these when another instance commits deliveries or events. A
    /// single-instance backend has nothing to listen to.
    fn listen(&self, _deliveries: Arc<tokio::sync::Notify>, _events: Arc<tokio::sync::Notify>) {}

    async fn queue_stats(&self) -> StoreResult<QueueStats>;

    /// Make a delivery whose status is one of `allowed` pending again, with
    /// a fresh attempt budget (replay, quarantine release). Catalog event
    /// ids are deterministic, so processing it again adds no duplicate.
    async fn requeue(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        now_ms: i64,
    ) -> StoreResult<Requeue>;

    /// The raw body a delivery arrived in, and its batch item index.
    async fn delivery_body(&self, id: &str) -> StoreResult<Option<(Vec<u8>, Option<i64>)>>;

    /// Reachable and migrated.
    async fn ping(&self) -> StoreResult<()>;

    /// Wait for in-flight work and close connections.
    async fn close(&self);
}

pub type DynStore = Arc<dyn Store>;

/// The consumer's `type` filter as SQL, for either backend: `type = ?` for
/// exact names; a half-open range for `family.*` so the index serves it and
/// no LIKE wildcard (`_`) needs escaping.
pub(crate) fn push_type_filter<'a, DB: sqlx::Database>(
    qb: &mut sqlx::QueryBuilder<'a, DB>,
    types: &[TypePattern],
) where
    String: sqlx::Encode<'a, DB> + sqlx::Type<DB>,
{
    if types.is_empty() || types.contains(&TypePattern::Prefix(String::new())) {
        return;
    }
    qb.push(" AND (");
    for (i, t) in types.iter().enumerate() {
        if i > 0 {
            qb.push(" OR ");
        }
        match t {
            TypePattern::Exact(name) => {
                qb.push("type = ").push_bind(name.clone());
            }
            TypePattern::Prefix(prefix) => {
                // prefix ends with '.'; '/' is the next byte after '.'.
                let upper = format!("{}/", &prefix[..prefix.len() - 1]);
                qb.push("(type >= ")
                    .push_bind(prefix.clone())
                    .push(" AND type < ")
                    .push_bind(upper)
                    .push(")");
            }
        }
    }
    qb.push(")");
}

/// Open the backend named by the URL and apply its migrations.
pub async fn open(url: &str) -> Result<DynStore, StoreError> {
    if url.starts_with("sqlite:") {
        Ok(Arc::new(sqlite::SqliteStore::open(url).await?))
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Arc::new(postgres::PgStore::open(url).await?))
    } else {
        Err(StoreError::Unavailable(format!(
            "unsupported storage URL scheme in {:?}",
            url.split(':').next().unwrap_or_default()
        )))
    }
}
