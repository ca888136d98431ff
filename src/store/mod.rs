//! Storage: one trait, backends behind it (SQLite, PostgreSQL). The store
//! knows rows and transactions, never HTTP; the only errors it reports are
//! "unavailable" (retry later) and "corrupt" (a row we can't read back).
//! Times cross this boundary as unix milliseconds. SQL that differs between
//! the backends only in placeholders lives once, in `store::sql`.

pub mod group_commit;
pub mod postgres;
pub mod sql;
pub mod sqlite;

use std::sync::Arc;

use async_trait::async_trait;
use secrecy::SecretString;

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
    /// Set aside by an operator, with a recorded reason; never processed.
    Discarded,
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
            DeliveryStatus::Discarded => "discarded",
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
            "discarded" => DeliveryStatus::Discarded,
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

/// A delivery as operators see it (no body; see `RequestRecord`).
#[derive(Debug, Clone)]
pub struct DeliveryRecord {
    pub id: String,
    pub request_id: String,
    pub item_index: Option<i64>,
    pub source: String,
    pub provider: String,
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// JSON array of schema violations (quarantined deliveries).
    pub violations: Option<String>,
    pub occurred_at_ms: Option<i64>,
    pub received_at_ms: i64,
    pub next_attempt_at_ms: i64,
    pub updated_at_ms: i64,
    pub discard_reason: Option<String>,
    pub discarded_at_ms: Option<i64>,
}

/// Which deliveries an operator means: every field narrows the set; the
/// default is every delivery.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeliveryFilter {
    pub source: Option<String>,
    pub provider: Option<String>,
    /// Any of these; empty = any status.
    pub statuses: Vec<DeliveryStatus>,
    pub provider_event_type: Option<String>,
    pub provider_event_id: Option<String>,
    /// `received_at >= since`.
    pub since_ms: Option<i64>,
    /// `received_at < until`.
    pub until_ms: Option<i64>,
}

impl DeliveryFilter {
    /// True when no field narrows the set.
    pub fn is_empty(&self) -> bool {
        *self == DeliveryFilter::default()
    }
}

/// A keyset position in a newest-first listing: the last row of the page
/// before. Rows arriving meanwhile are newer, so they land before the
/// position and never shift a page (no skip, no repeat).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Position {
    pub received_at_ms: i64,
    pub id: String,
}

/// The stored request a delivery came in: what was received.
#[derive(Debug, Clone)]
pub struct RequestRecord {
    pub id: String,
    pub remote_addr: Option<String>,
    /// JSON object: name -> [values] (credentials were never stored).
    pub headers_json: String,
    /// Empty once retention removed it (`purged_at_ms` is then set).
    pub body: Vec<u8>,
    pub purged_at_ms: Option<i64>,
}

/// How a processing attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptOutcome {
    Done,
    Failed,
    Dead,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Done => "done",
            AttemptOutcome::Failed => "failed",
            AttemptOutcome::Dead => "dead",
        }
    }
}

/// One finished processing attempt (the audit trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRecord {
    /// 1-based within the delivery's current attempt budget (a replay
    /// starts again at 1).
    pub attempt: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    /// `done`, `failed` or `dead`.
    pub outcome: String,
    pub error: Option<String>,
    pub retry_at_ms: Option<i64>,
    /// JSON array of `{"id","type"}`: the catalog events it produced.
    pub events_json: String,
}

/// A processed delivery to mark done, with what the attempt produced.
#[derive(Debug, Clone)]
pub struct Completed {
    pub delivery_id: String,
    /// When the worker claimed it (the attempt's start).
    pub started_at_ms: i64,
    pub events: Vec<NewEvent>,
}

/// A worker's request for due deliveries (see `Store::claim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClaimRequest {
    pub now_ms: i64,
    pub lease_until_ms: i64,
    pub limit: u32,
}

/// A worker's processed batch to mark done (see `Store::complete_many`).
#[derive(Debug, Clone)]
pub struct CompleteBatch {
    pub done: Vec<Completed>,
    pub now_ms: i64,
}

/// Everything the group-commit writer took at one moment: ingested
/// requests, and — on a backend with a single writer — the queue's
/// completions and claims, to commit together with ONE flush.
#[derive(Debug, Clone, Default)]
pub struct WriteGroup {
    pub requests: Vec<NewRequest>,
    pub completes: Vec<CompleteBatch>,
    pub claims: Vec<ClaimRequest>,
}

/// Each part's own result, so that one caller's failure is not another's:
/// `inserted` has one entry per request, in order; `completes` and
/// `claims` one per batch and claim.
#[derive(Debug)]
pub struct GroupOutcome {
    pub inserted: StoreResult<Vec<Vec<Inserted>>>,
    pub completes: Vec<StoreResult<()>>,
    pub claims: Vec<StoreResult<Vec<Claimed>>>,
}

#[derive(Debug, Clone)]
pub struct Rejection {
    pub id: String,
    pub source: String,
    pub code: String,
    pub message: String,
    pub remote_addr: Option<String>,
    pub received_at_ms: i64,
    /// Only for authentic requests (the signature verified) refused for
    /// their payload.
    pub body: Option<Vec<u8>>,
}

#[derive(Debug, Clone)]
pub struct RejectionRecord {
    pub id: String,
    pub source: String,
    pub code: String,
    pub message: String,
    pub remote_addr: Option<String>,
    pub received_at_ms: i64,
    pub has_body: bool,
}

/// Which rejections an operator means.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RejectionFilter {
    pub source: Option<String>,
    /// The error code (`invalid_signature`, `schema_violation`, ...).
    pub code: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
}

/// What retention removes, as cutoffs (`None` = keep).
#[derive(Debug, Clone, Copy, Default)]
pub struct Purge {
    /// Raw bodies of requests whose deliveries are all done or discarded
    /// and were last updated before this.
    pub bodies_before_ms: Option<i64>,
    /// Rejections received before this.
    pub rejections_before_ms: Option<i64>,
    /// Done and discarded deliveries (their dedupe keys, attempts and
    /// catalog events) last updated before this, once every sink has
    /// published their events.
    pub deliveries_before_ms: Option<i64>,
    /// Rows removed per statement, so no transaction holds locks long.
    pub chunk: u32,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub bodies: u64,
    pub rejections: u64,
    pub deliveries: u64,
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
    /// When the oldest event each sink has yet to publish was stored
    /// (`None`: nothing pending).
    pub sink_oldest_pending_ms: Vec<(String, Option<i64>)>,
    /// Push messages not yet delivered: (subscription, status, count).
    pub push_backlog: Vec<(String, String, i64)>,
}

/// One source's traffic since a point in time, for the dashboard's
/// overview.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SourceStats {
    pub source: String,
    /// Deliveries received in the window.
    pub received: i64,
    /// Of those, how many are `failed` or `dead` now.
    pub failing: i64,
    /// Of those, how many are `quarantined` now.
    pub quarantined: i64,
    /// Requests refused in the window.
    pub rejected: i64,
    /// Arrival time of the source's oldest delivery still waiting to be
    /// processed (any age, not only the window's).
    pub oldest_waiting_ms: Option<i64>,
}

/// What an operator's change of a delivery's status found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transition {
    Applied,
    NotFound,
    /// Its status does not allow it (e.g. it is being processed).
    Refused(DeliveryStatus),
    /// Retention removed its raw body: it can't be processed again.
    BodyPurged,
}

/// How a failed attempt ends: retried later, or dead.
#[derive(Debug, Clone, Copy)]
pub enum Retry {
    At(i64),
    Dead,
}

/// The `sinks` row of the push router's cursor and lease. It goes with the
/// last subscription (`delete_subscription`), so a gateway without
/// subscriptions has no cursor holding retention back.
pub const PUSH_ROUTER_SINK: &str = "push";

/// Whether a push subscription is being delivered to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SubscriptionStatus {
    Active,
    /// Paused by an operator: messages queue up and go out on resume.
    Paused,
    /// Paused automatically after too many dead letters in a row.
    Disabled,
}

impl SubscriptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionStatus::Active => "active",
            SubscriptionStatus::Paused => "paused",
            SubscriptionStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<SubscriptionStatus> {
        Some(match s {
            "active" => SubscriptionStatus::Active,
            "paused" => SubscriptionStatus::Paused,
            "disabled" => SubscriptionStatus::Disabled,
            _ => return None,
        })
    }
}

/// Where a subscription is defined: the config file (upserted at start,
/// its secrets stay in the config's references) or the admin API (its
/// secrets are stored, so every instance can sign).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ManagedBy {
    Config,
    Api,
}

impl ManagedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            ManagedBy::Config => "config",
            ManagedBy::Api => "api",
        }
    }
}

/// A push subscription as stored. Secrets are `SecretString`s, so `Debug`
/// never prints them.
#[derive(Debug, Clone)]
pub struct SubscriptionRecord {
    pub name: String,
    pub url: String,
    /// Type patterns (`invoice.*`, `payment.failed`).
    pub types: Vec<String>,
    pub source: Option<String>,
    /// `whsec_…`; `None` when managed by config.
    pub secret: Option<SecretString>,
    /// The secret before the last rotation, still signing until
    /// `previous_until_ms`.
    pub previous_secret: Option<SecretString>,
    pub previous_until_ms: Option<i64>,
    /// `whsk_…` (Ed25519, v1a); `None` when managed by config.
    pub signing_key: Option<SecretString>,
    pub timeout_ms: i64,
    pub retry_schedule_ms: Vec<i64>,
    pub allow_private: bool,
    /// Consecutive dead letters that disable it; 0 = never.
    pub disable_after: u32,
    /// Hours of failures without a success that disable it; 0 = never.
    pub disable_after_hours: u32,
    pub status: SubscriptionStatus,
    pub status_reason: Option<String>,
    pub managed_by: ManagedBy,
    /// Catalog events up to this `seq` predate it.
    pub start_seq: i64,
    pub consecutive_dead: u32,
    /// The first failed attempt since the last delivered one.
    pub failing_since_ms: Option<i64>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// What creating (API) or upserting (config) a subscription writes.
#[derive(Debug, Clone)]
pub struct NewSubscription {
    pub name: String,
    pub url: String,
    pub types: Vec<String>,
    pub source: Option<String>,
    pub secret: Option<SecretString>,
    pub signing_key: Option<SecretString>,
    pub timeout_ms: i64,
    pub retry_schedule_ms: Vec<i64>,
    pub allow_private: bool,
    pub disable_after: u32,
    pub disable_after_hours: u32,
}

/// How a subscription has been failing, after an attempt was recorded.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FailureStreak {
    /// Dead letters in a row.
    pub dead_letters: u32,
    /// The first failure since the last success; `None` after a success.
    pub failing_since_ms: Option<i64>,
}

/// One catalog event to push to one subscription.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: String,
    pub subscription: String,
    pub event_id: String,
    pub event_seq: i64,
    pub event_type: String,
    /// Messages of the same subscription and entity go out in `event_seq`
    /// order.
    pub entity: String,
    pub created_at_ms: i64,
}

/// A message leased by a dispatcher, with the catalog event's JSON
/// (`None` when retention removed the event).
#[derive(Debug, Clone)]
pub struct ClaimedMessage {
    pub id: String,
    pub subscription: String,
    pub event_id: String,
    pub event_type: String,
    /// Including this one.
    pub attempts: u32,
    pub payload_json: Option<String>,
}

/// How a push attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageOutcome {
    Delivered,
    /// Failed; tried again at this time.
    Retry(i64),
    /// Failed for the last time: a dead letter.
    Dead,
}

impl MessageOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageOutcome::Delivered => "delivered",
            MessageOutcome::Retry(_) => "failed",
            MessageOutcome::Dead => "dead",
        }
    }
}

/// One finished HTTP attempt of a message.
#[derive(Debug, Clone)]
pub struct PushAttempt {
    pub message_id: String,
    pub subscription: String,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub status_code: Option<u16>,
    pub latency_ms: i64,
    /// The start of the response body.
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: MessageOutcome,
}

/// A message as operators see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageRecord {
    pub id: String,
    pub subscription: String,
    pub event_id: String,
    pub event_seq: i64,
    pub event_type: String,
    pub entity: String,
    /// `pending`, `delivering`, `failed`, `delivered` or `dead`.
    pub status: String,
    pub attempts: i64,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// A recorded push attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushAttemptRecord {
    pub id: i64,
    pub message_id: String,
    pub event_id: String,
    pub attempt: i64,
    pub started_at_ms: i64,
    pub finished_at_ms: i64,
    pub status_code: Option<i64>,
    pub latency_ms: i64,
    pub response_body: Option<String>,
    pub error: Option<String>,
    pub outcome: String,
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
        self.complete_many(
            &[Completed {
                delivery_id: delivery_id.to_string(),
                started_at_ms: now_ms,
                events: events.to_vec(),
            }],
            now_ms,
        )
        .await
    }

    /// `complete` for several deliveries in ONE transaction: a worker's
    /// whole claimed batch costs one commit. Each attempt is recorded in
    /// the audit trail in the same transaction.
    async fn complete_many(&self, done: &[Completed], now_ms: i64) -> StoreResult<()>;

    /// True when the backend has one writer (SQLite): then the queue's
    /// claims and completions go through the group-commit writer and share
    /// its transactions instead of queueing behind them, each with a flush
    /// of its own. Backends with concurrent writers keep them separate.
    fn single_writer(&self) -> bool {
        false
    }

    /// Commit a group's parts. The default runs them one after the other,
    /// each in its own transaction; a single-writer backend overrides it
    /// with one transaction for the whole group.
    async fn write_group(&self, group: &WriteGroup) -> GroupOutcome {
        let inserted = if group.requests.is_empty() {
            Ok(Vec::new())
        } else {
            self.insert_requests(&group.requests).await
        };
        let mut completes = Vec::with_capacity(group.completes.len());
        for c in &group.completes {
            completes.push(self.complete_many(&c.done, c.now_ms).await);
        }
        let mut claims = Vec::with_capacity(group.claims.len());
        for c in &group.claims {
            claims.push(self.claim(c.now_ms, c.lease_until_ms, c.limit).await);
        }
        GroupOutcome {
            inserted,
            completes,
            claims,
        }
    }

    /// Record a failed attempt (its status, and the audit trail row, in one
    /// transaction).
    async fn fail(
        &self,
        delivery_id: &str,
        started_at_ms: i64,
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

    /// Newest first (`received_at`, then id, descending), after `after`.
    async fn list_deliveries(
        &self,
        filter: &DeliveryFilter,
        after: Option<&Position>,
        limit: u32,
    ) -> StoreResult<Vec<DeliveryRecord>>;

    /// The request (headers, raw body) a delivery arrived in.
    async fn delivery_request(&self, id: &str) -> StoreResult<Option<RequestRecord>>;

    /// A delivery's processing attempts, oldest first.
    async fn delivery_attempts(&self, id: &str) -> StoreResult<Vec<AttemptRecord>>;

    /// The catalog events a delivery produced: `(id, type)` in commit order.
    async fn delivery_events(&self, id: &str) -> StoreResult<Vec<(String, String)>>;

    /// Newest first, after `after`.
    async fn list_rejections(
        &self,
        filter: &RejectionFilter,
        after: Option<&Position>,
        limit: u32,
    ) -> StoreResult<Vec<RejectionRecord>>;

    /// One rejection with its kept body, if any.
    async fn get_rejection(
        &self,
        id: &str,
    ) -> StoreResult<Option<(RejectionRecord, Option<Vec<u8>>)>>;

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

    /// Per source: deliveries and rejections received at or after
    /// `since_ms`, and the oldest waiting delivery; sorted by source.
    async fn source_stats(&self, since_ms: i64) -> StoreResult<Vec<SourceStats>>;

    /// Make a delivery whose status is one of `allowed` pending again, with
    /// a fresh attempt budget (replay, quarantine release). Catalog event
    /// ids are deterministic, so processing it again adds no duplicate.
    /// Refused once retention removed its raw body.
    async fn requeue(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        now_ms: i64,
    ) -> StoreResult<Transition>;

    /// `requeue` every delivery that matches `filter`, has a status in
    /// `allowed` and still has its raw body; with `dry_run`, only count
    /// them. Returns how many (would have) changed.
    async fn requeue_matching(
        &self,
        filter: &DeliveryFilter,
        allowed: &[DeliveryStatus],
        now_ms: i64,
        dry_run: bool,
    ) -> StoreResult<u64>;

    /// Set a delivery whose status is one of `allowed` aside as
    /// `discarded`, recording why and when.
    async fn discard(
        &self,
        id: &str,
        allowed: &[DeliveryStatus],
        reason: &str,
        now_ms: i64,
    ) -> StoreResult<Transition>;

    /// The raw body a delivery arrived in, and its batch item index.
    async fn delivery_body(&self, id: &str) -> StoreResult<Option<(Vec<u8>, Option<i64>)>>;

    /// Retention: remove what `purge` names, in chunks.
    async fn purge(&self, purge: &Purge, now_ms: i64) -> StoreResult<Purged>;

    /// Push subscriptions from the config file: inserted, or updated in
    /// place (status, counters and messages kept; stored secrets cleared,
    /// the config's references sign). Config subscriptions the file no
    /// longer names are disabled, in the same transaction.
    async fn upsert_config_subscriptions(
        &self,
        subs: &[NewSubscription],
        now_ms: i64,
    ) -> StoreResult<()>;

    /// An API-created subscription; `false` when the name is taken. It
    /// receives catalog events committed after it.
    async fn create_subscription(&self, sub: &NewSubscription, now_ms: i64) -> StoreResult<bool>;

    /// Every subscription, by name.
    async fn list_subscriptions(&self) -> StoreResult<Vec<SubscriptionRecord>>;

    async fn get_subscription(&self, name: &str) -> StoreResult<Option<SubscriptionRecord>>;

    /// Pause, disable or resume; resuming resets the dead-letter streak.
    /// `false` when there is no such subscription.
    async fn set_subscription_status(
        &self,
        name: &str,
        status: SubscriptionStatus,
        reason: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// The subscription, its messages and their attempts (and the push
    /// router's cursor row when it was the last subscription).
    async fn delete_subscription(&self, name: &str) -> StoreResult<bool>;

    /// An API-managed subscription's new secret; the current one keeps
    /// signing until `previous_until_ms`. `false` when there is no such
    /// API-managed subscription.
    async fn rotate_subscription_secret(
        &self,
        name: &str,
        secret: &SecretString,
        previous_until_ms: i64,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// Queue messages, idempotent on (subscription, event id).
    async fn enqueue_messages(&self, messages: &[NewMessage]) -> StoreResult<u64>;

    /// Lease up to `limit` due messages of active subscriptions, each the
    /// oldest unfinished one of its (subscription, entity).
    async fn claim_messages(
        &self,
        now_ms: i64,
        lease_until_ms: i64,
        limit: u32,
    ) -> StoreResult<Vec<ClaimedMessage>>;

    /// Record an attempt and the message's new state in one transaction;
    /// returns how the subscription has been failing.
    async fn finish_message(
        &self,
        attempt: &PushAttempt,
        now_ms: i64,
    ) -> StoreResult<FailureStreak>;

    /// Disable an active subscription and record `event` (a catalog event
    /// of hookgate's own) in one transaction; `false` when it was not
    /// active.
    async fn disable_subscription(
        &self,
        name: &str,
        reason: &str,
        event: &NewEvent,
        now_ms: i64,
    ) -> StoreResult<bool>;

    /// A subscription's messages, newest first, optionally one status,
    /// with `event_seq` below `before_seq`.
    async fn list_messages(
        &self,
        subscription: &str,
        status: Option<&str>,
        before_seq: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<MessageRecord>>;

    /// A subscription's push attempts, newest first, optionally of one
    /// message, with ids below `before_id`.
    async fn list_push_attempts(
        &self,
        subscription: &str,
        message_id: Option<&str>,
        before_id: Option<i64>,
        limit: u32,
    ) -> StoreResult<Vec<PushAttemptRecord>>;

    /// Dead letters of `subscription` (one, or all when `message_id` is
    /// `None`) pending again with a fresh attempt budget. Returns how many.
    async fn replay_messages(
        &self,
        subscription: &str,
        message_id: Option<&str>,
        now_ms: i64,
    ) -> StoreResult<u64>;

    /// Retention: delivered push messages last updated before
    /// `before_ms`, with their attempts, at most `chunk` per transaction.
    /// Returns how many messages went.
    async fn purge_push_messages(&self, before_ms: i64, chunk: u32) -> StoreResult<u64>;

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

/// Merge the three per-source result sets of `source_stats` (rows are
/// `(source, ...)`), sorted by source.
pub(crate) fn merge_source_stats(
    received: Vec<(String, i64, i64, i64)>,
    rejected: Vec<(String, i64)>,
    waiting: Vec<(String, Option<i64>)>,
) -> Vec<SourceStats> {
    use std::collections::BTreeMap;
    fn entry(map: &mut BTreeMap<String, SourceStats>, source: String) -> &mut SourceStats {
        map.entry(source.clone()).or_insert_with(|| SourceStats {
            source,
            ..SourceStats::default()
        })
    }
    let mut by_source = BTreeMap::new();
    for (source, received, failing, quarantined) in received {
        let s = entry(&mut by_source, source);
        s.received = received;
        s.failing = failing;
        s.quarantined = quarantined;
    }
    for (source, n) in rejected {
        entry(&mut by_source, source).rejected = n;
    }
    for (source, oldest) in waiting {
        entry(&mut by_source, source).oldest_waiting_ms = oldest;
    }
    by_source.into_values().collect()
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
