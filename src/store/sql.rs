//! SQL that both backends run: written once here, executed by each backend
//! on its own pool. Fixed statements use numbered `$n` placeholders, which
//! sqlx's SQLite driver binds by number just as PostgreSQL does; statements
//! whose shape depends on a filter are built with a `QueryBuilder` generic
//! over the database. Rows decode into the `FromRow` types below, so
//! integer columns are selected as `BIGINT` (SQLite's `INTEGER` and
//! PostgreSQL's `INTEGER` would otherwise decode to different widths).

use secrecy::SecretString;
use sqlx::{Database, Encode, QueryBuilder, Type};

use super::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, ManagedBy, MessageRecord,
    NewMessage, Position, PushAttemptRecord, RejectionFilter, RejectionRecord, RequestRecord,
    StoreError, StoreResult, SubscriptionRecord, SubscriptionStatus, Transition,
};

/// The columns `DeliveryRow` reads.
pub const DELIVERY_COLUMNS: &str = "id, request_id, item_index, source, provider, \
     provider_event_id, provider_event_type, status, CAST(attempts AS BIGINT) AS attempts, \
     last_error, violations, occurred_at, received_at, next_attempt_at, updated_at, \
     discard_reason, discarded_at";

#[derive(sqlx::FromRow)]
pub struct DeliveryRow {
    id: String,
    request_id: String,
    item_index: Option<i64>,
    source: String,
    provider: String,
    provider_event_id: String,
    provider_event_type: Option<String>,
    status: String,
    attempts: i64,
    last_error: Option<String>,
    violations: Option<String>,
    occurred_at: Option<i64>,
    received_at: i64,
    next_attempt_at: i64,
    updated_at: i64,
    discard_reason: Option<String>,
    discarded_at: Option<i64>,
}

impl TryFrom<DeliveryRow> for DeliveryRecord {
    type Error = StoreError;

    fn try_from(r: DeliveryRow) -> StoreResult<DeliveryRecord> {
        Ok(DeliveryRecord {
            status: parse_status(&r.status)?,
            id: r.id,
            request_id: r.request_id,
            item_index: r.item_index,
            source: r.source,
            provider: r.provider,
            provider_event_id: r.provider_event_id,
            provider_event_type: r.provider_event_type,
            attempts: r.attempts.clamp(0, i64::from(u32::MAX)) as u32,
            last_error: r.last_error,
            violations: r.violations,
            occurred_at_ms: r.occurred_at,
            received_at_ms: r.received_at,
            next_attempt_at_ms: r.next_attempt_at,
            updated_at_ms: r.updated_at,
            discard_reason: r.discard_reason,
            discarded_at_ms: r.discarded_at,
        })
    }
}

pub fn parse_status(s: &str) -> StoreResult<DeliveryStatus> {
    DeliveryStatus::parse(s).ok_or_else(|| StoreError::Corrupt(format!("unknown status {s:?}")))
}

pub fn deliveries(rows: Vec<DeliveryRow>) -> StoreResult<Vec<DeliveryRecord>> {
    rows.into_iter().map(DeliveryRecord::try_from).collect()
}

pub fn get_delivery() -> String {
    format!("SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE id = $1")
}

/// `$1` = delivery id.
pub const DELIVERY_REQUEST: &str = "SELECT r.id, r.remote_addr, r.headers, r.body, r.purged_at \
     FROM deliveries d JOIN requests r ON r.id = d.request_id WHERE d.id = $1";

#[derive(sqlx::FromRow)]
pub struct RequestRow {
    id: String,
    remote_addr: Option<String>,
    headers: String,
    body: Vec<u8>,
    purged_at: Option<i64>,
}

impl From<RequestRow> for RequestRecord {
    fn from(r: RequestRow) -> RequestRecord {
        RequestRecord {
            id: r.id,
            remote_addr: r.remote_addr,
            headers_json: r.headers,
            body: r.body,
            purged_at_ms: r.purged_at,
        }
    }
}

/// `$1` = delivery id.
pub const DELIVERY_ATTEMPTS: &str = "SELECT CAST(attempt AS BIGINT) AS attempt, started_at, \
     finished_at, outcome, error, retry_at, events FROM attempts WHERE delivery_id = $1 ORDER BY id";

#[derive(sqlx::FromRow)]
pub struct AttemptRow {
    attempt: i64,
    started_at: i64,
    finished_at: i64,
    outcome: String,
    error: Option<String>,
    retry_at: Option<i64>,
    events: String,
}

impl From<AttemptRow> for AttemptRecord {
    fn from(r: AttemptRow) -> AttemptRecord {
        AttemptRecord {
            attempt: r.attempt,
            started_at_ms: r.started_at,
            finished_at_ms: r.finished_at,
            outcome: r.outcome,
            error: r.error,
            retry_at_ms: r.retry_at,
            events_json: r.events,
        }
    }
}

/// `$1` = delivery id.
pub const DELIVERY_EVENTS: &str = "SELECT id, type FROM events WHERE delivery_id = $1 ORDER BY seq";

/// Record one finished attempt; its number is the delivery's attempt count
/// at that moment (set by the claim). `$1` delivery id, `$2` started,
/// `$3` finished, `$4` outcome, `$5` error, `$6` retry at, `$7` events JSON.
pub const INSERT_ATTEMPT: &str = "INSERT INTO attempts \
     (delivery_id, attempt, started_at, finished_at, outcome, error, retry_at, events) \
     SELECT id, attempts, $2, $3, $4, $5, $6, $7 FROM deliveries WHERE id = $1";

/// A failed attempt's status change. `$1` status, `$2` next attempt, `$3`
/// error, `$4` now, `$5` delivery id.
pub const FAIL: &str = "UPDATE deliveries SET status = $1, next_attempt_at = $2, \
     lease_until = NULL, last_error = $3, updated_at = $4 \
     WHERE id = $5 AND status = 'processing'";

/// What an operator's transition needs to know first. `$1` = delivery id.
pub const TRANSITION_STATE: &str = "SELECT d.status, r.purged_at FROM deliveries d \
     JOIN requests r ON r.id = d.request_id WHERE d.id = $1";

/// Back to pending with a fresh budget, if the status is still `$3`.
/// `$1` now, `$2` delivery id.
pub const REQUEUE: &str = "UPDATE deliveries SET status = 'pending', attempts = 0, \
     next_attempt_at = $1, lease_until = NULL, last_error = NULL, updated_at = $1 \
     WHERE id = $2 AND status = $3";

/// Set aside, if the status is still `$4`. `$1` reason, `$2` now, `$3` id.
pub const DISCARD: &str = "UPDATE deliveries SET status = 'discarded', discard_reason = $1, \
     discarded_at = $2, lease_until = NULL, updated_at = $2 WHERE id = $3 AND status = $4";

/// Whether an operator's transition may go ahead, given the delivery's
/// `TRANSITION_STATE` row: its current status if so. `needs_body`: the
/// transition processes it again, which needs the raw body.
pub fn decide(
    row: Option<(String, Option<i64>)>,
    allowed: &[DeliveryStatus],
    needs_body: bool,
) -> StoreResult<Result<DeliveryStatus, Transition>> {
    let Some((current, purged_at)) = row else {
        return Ok(Err(Transition::NotFound));
    };
    let status = parse_status(&current)?;
    Ok(if !allowed.contains(&status) {
        Err(Transition::Refused(status))
    } else if needs_body && purged_at.is_some() {
        Err(Transition::BodyPurged)
    } else {
        Ok(status)
    })
}

/// The outcome of the conditional update that follows `decide`: no row
/// means a worker took the delivery in between.
pub fn applied(rows: u64) -> Transition {
    if rows == 0 {
        Transition::Refused(DeliveryStatus::Processing)
    } else {
        Transition::Applied
    }
}

/// The JSON the audit trail keeps of the catalog events an attempt produced.
pub fn events_json(events: &[super::NewEvent]) -> String {
    serde_json::Value::Array(
        events
            .iter()
            .map(|e| serde_json::json!({ "id": e.id, "type": e.event_type }))
            .collect(),
    )
    .to_string()
}

/// `AND ...` for every field the filter sets.
fn push_delivery_filter<'a, DB: Database>(qb: &mut QueryBuilder<'a, DB>, f: &DeliveryFilter)
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let text = [
        ("source", &f.source),
        ("provider", &f.provider),
        ("provider_event_type", &f.provider_event_type),
        ("provider_event_id", &f.provider_event_id),
    ];
    for (column, value) in text {
        if let Some(v) = value {
            qb.push(format_args!(" AND {column} = "))
                .push_bind(v.clone());
        }
    }
    push_status_in(qb, &f.statuses);
    if let Some(t) = f.since_ms {
        qb.push(" AND received_at >= ").push_bind(t);
    }
    if let Some(t) = f.until_ms {
        qb.push(" AND received_at < ").push_bind(t);
    }
}

fn push_status_in<'a, DB: Database>(qb: &mut QueryBuilder<'a, DB>, statuses: &[DeliveryStatus])
where
    String: Encode<'a, DB> + Type<DB>,
{
    if statuses.is_empty() {
        return;
    }
    qb.push(" AND status IN (");
    let mut list = qb.separated(", ");
    for s in statuses {
        list.push_bind(s.as_str().to_string());
    }
    qb.push(")");
}

/// Newest first, strictly after `after` (a keyset on `received_at`, id).
fn push_page<'a, DB: Database>(qb: &mut QueryBuilder<'a, DB>, after: Option<&Position>, limit: u32)
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(p) = after {
        qb.push(" AND (received_at < ")
            .push_bind(p.received_at_ms)
            .push(" OR (received_at = ")
            .push_bind(p.received_at_ms)
            .push(" AND id < ")
            .push_bind(p.id.clone())
            .push("))");
    }
    qb.push(" ORDER BY received_at DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
}

pub fn list_deliveries<'a, DB: Database>(
    f: &DeliveryFilter,
    after: Option<&Position>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE 1 = 1"
    ));
    push_delivery_filter(&mut qb, f);
    push_page(&mut qb, after, limit);
    qb
}

/// Bulk replay: count (dry run) or requeue the deliveries that match, have
/// an allowed status and still have their raw body.
pub fn requeue_matching<'a, DB: Database>(
    f: &DeliveryFilter,
    allowed: &[DeliveryStatus],
    now_ms: i64,
    dry_run: bool,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new("");
    if dry_run {
        qb.push("SELECT count(*) FROM deliveries WHERE 1 = 1");
    } else {
        qb.push("UPDATE deliveries SET status = 'pending', attempts = 0, next_attempt_at = ")
            .push_bind(now_ms)
            .push(", lease_until = NULL, last_error = NULL, updated_at = ")
            .push_bind(now_ms)
            .push(" WHERE 1 = 1");
    }
    // Only statuses both the filter and the action allow; none = nothing.
    let narrowed = DeliveryFilter {
        statuses: allowed
            .iter()
            .copied()
            .filter(|s| f.statuses.is_empty() || f.statuses.contains(s))
            .collect(),
        ..f.clone()
    };
    if narrowed.statuses.is_empty() {
        qb.push(" AND 1 = 0");
    }
    push_delivery_filter(&mut qb, &narrowed);
    qb.push(
        " AND EXISTS (SELECT 1 FROM requests r \
         WHERE r.id = deliveries.request_id AND r.purged_at IS NULL)",
    );
    qb
}

pub const REJECTION_COLUMNS: &str =
    "id, source, code, message, remote_addr, received_at, body IS NOT NULL AS has_body";

#[derive(sqlx::FromRow)]
pub struct RejectionRow {
    id: String,
    source: String,
    code: String,
    message: String,
    remote_addr: Option<String>,
    received_at: i64,
    has_body: bool,
}

impl From<RejectionRow> for RejectionRecord {
    fn from(r: RejectionRow) -> RejectionRecord {
        RejectionRecord {
            id: r.id,
            source: r.source,
            code: r.code,
            message: r.message,
            remote_addr: r.remote_addr,
            received_at_ms: r.received_at,
            has_body: r.has_body,
        }
    }
}

pub fn list_rejections<'a, DB: Database>(
    f: &RejectionFilter,
    after: Option<&Position>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {REJECTION_COLUMNS} FROM rejections WHERE 1 = 1"
    ));
    if let Some(s) = &f.source {
        qb.push(" AND source = ").push_bind(s.clone());
    }
    if let Some(c) = &f.code {
        qb.push(" AND code = ").push_bind(c.clone());
    }
    if let Some(t) = f.since_ms {
        qb.push(" AND received_at >= ").push_bind(t);
    }
    if let Some(t) = f.until_ms {
        qb.push(" AND received_at < ").push_bind(t);
    }
    push_page(&mut qb, after, limit);
    qb
}

pub fn get_rejection() -> String {
    format!("SELECT {REJECTION_COLUMNS}, body FROM rejections WHERE id = $1")
}

/// Retention, raw bodies: requests whose every delivery is done or
/// discarded and was last updated before `$1` lose their body (set to
/// `$2`, empty) and get `purged_at = $3`. At most `$4` per statement.
pub const PURGE_BODIES: &str = "UPDATE requests SET body = $2, purged_at = $3 \
     WHERE id IN (SELECT r.id FROM requests r WHERE r.purged_at IS NULL AND r.received_at < $1 \
       AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = r.id \
         AND (d.status NOT IN ('done', 'discarded') OR d.updated_at >= $1)) \
       LIMIT $4)";

/// Retention, rejections received before `$1`, at most `$2` per statement.
pub const PURGE_REJECTIONS: &str = "DELETE FROM rejections WHERE id IN \
     (SELECT id FROM rejections WHERE received_at < $1 LIMIT $2)";

/// Retention, dedupe keys: done or discarded deliveries last updated before
/// `$1` whose catalog events every sink has published (`$2` stands for "no
/// sink"). At most `$3`. Their attempts, events and (when no other delivery
/// shares it) request go with them.
pub const EXPIRED_DELIVERIES: &str = "SELECT d.id, d.request_id FROM deliveries d \
     WHERE d.status IN ('done', 'discarded') AND d.updated_at < $1 \
       AND NOT EXISTS (SELECT 1 FROM events e WHERE e.delivery_id = d.id \
         AND e.seq > coalesce((SELECT min(cursor_seq) FROM sinks), $2)) \
     LIMIT $3";

/// `DELETE FROM <table> WHERE <column> IN (<ids>)`.
pub fn delete_in<'a, DB: Database>(
    table: &str,
    column: &str,
    ids: &[String],
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!("DELETE FROM {table} WHERE {column} IN ("));
    let mut list = qb.separated(", ");
    for id in ids {
        list.push_bind(id.clone());
    }
    qb.push(")");
    qb
}

/// Requests among `ids` that no delivery refers to any more.
pub fn delete_orphan_requests<'a, DB: Database>(ids: &[String]) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
{
    let mut qb = delete_in("requests", "id", ids);
    qb.push(" AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.request_id = requests.id)");
    qb
}

/// `source_stats`: deliveries received since `$1`, per source, with how
/// many of them fail or wait in quarantine now.
pub const SOURCE_RECEIVED: &str = "SELECT source, CAST(count(*) AS BIGINT), \
     CAST(coalesce(sum(CASE WHEN status IN ('failed', 'dead') THEN 1 ELSE 0 END), 0) AS BIGINT), \
     CAST(coalesce(sum(CASE WHEN status = 'quarantined' THEN 1 ELSE 0 END), 0) AS BIGINT) \
     FROM deliveries WHERE received_at >= $1 GROUP BY source";

/// `source_stats`: rejections since `$1`, per source.
pub const SOURCE_REJECTED: &str = "SELECT source, CAST(count(*) AS BIGINT) \
     FROM rejections WHERE received_at >= $1 GROUP BY source";

// The queue's gauges are read on every `/metrics` scrape and dashboard
// view, so they must cost the backlog, not the table: `done` rows pile up
// (kept at least 7 days as dedupe keys). Each statement reads one status
// group per branch, a group each backend has an index for (PostgreSQL:
// the partial indexes deliveries_due, deliveries_leased, deliveries_parked;
// SQLite: deliveries_due, which starts with the status). One statement
// with `status <> 'done'` or `IN (...)` over all of them made PostgreSQL
// scan the whole table. Measured with `EXPLAIN ANALYZE` on 1 M deliveries
// (999 pending, 30 dead or quarantined, the rest done): by status 63 ms ->
// 0.4 ms, oldest waiting 238 ms -> 0.2 ms, per source 83 ms -> 0.6 ms.
// `received_at + 0` keeps the planners from answering `min(received_at)`
// by walking the received_at index from the oldest row and skipping every
// done one (the 238 ms).

/// `queue_stats`: deliveries per status, `done` excluded.
pub const QUEUE_BY_STATUS: &str = "\
     SELECT status, count(*) FROM deliveries WHERE status IN ('pending', 'failed') GROUP BY status \
     UNION ALL SELECT status, count(*) FROM deliveries WHERE status = 'processing' GROUP BY status \
     UNION ALL SELECT status, count(*) FROM deliveries \
     WHERE status IN ('dead', 'quarantined') GROUP BY status";

/// `queue_stats`: arrival time of the oldest delivery still to process.
pub const OLDEST_WAITING: &str = "SELECT min(m) FROM (\
     SELECT min(received_at + 0) AS m FROM deliveries WHERE status IN ('pending', 'failed') \
     UNION ALL SELECT min(received_at + 0) FROM deliveries WHERE status = 'processing') w";

/// `source_stats`: the oldest delivery still waiting, per source.
pub const SOURCE_WAITING: &str = "SELECT source, min(received_at) FROM (\
     SELECT source, received_at FROM deliveries WHERE status IN ('pending', 'failed') \
     UNION ALL SELECT source, received_at FROM deliveries WHERE status = 'processing') w \
     GROUP BY source";

/// `queue_stats`: per sink, when its oldest unpublished event was stored
/// (the first one after its cursor, by the `seq` index).
pub const SINK_OLDEST_PENDING: &str = "SELECT s.name, \
     (SELECT e.created_at FROM events e WHERE e.seq > s.cursor_seq ORDER BY e.seq LIMIT 1) \
     FROM sinks s";
// ---- push subscriptions ----

/// The columns `SubscriptionRow` reads.
pub const SUBSCRIPTION_COLUMNS: &str = "name, url, types, source, secret, previous_secret, \
     previous_until, signing_key, CAST(timeout_ms AS BIGINT) AS timeout_ms, retry_schedule, \
     allow_private, CAST(disable_after AS BIGINT) AS disable_after, \
     CAST(disable_after_hours AS BIGINT) AS disable_after_hours, status, status_reason, \
     managed_by, CAST(start_seq AS BIGINT) AS start_seq, \
     CAST(consecutive_dead AS BIGINT) AS consecutive_dead, failing_since, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub struct SubscriptionRow {
    name: String,
    url: String,
    types: String,
    source: Option<String>,
    secret: Option<String>,
    previous_secret: Option<String>,
    previous_until: Option<i64>,
    signing_key: Option<String>,
    timeout_ms: i64,
    retry_schedule: String,
    allow_private: bool,
    disable_after: i64,
    disable_after_hours: i64,
    status: String,
    status_reason: Option<String>,
    managed_by: String,
    start_seq: i64,
    consecutive_dead: i64,
    failing_since: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

impl TryFrom<SubscriptionRow> for SubscriptionRecord {
    type Error = StoreError;

    fn try_from(r: SubscriptionRow) -> StoreResult<SubscriptionRecord> {
        let corrupt = |what: &str| StoreError::Corrupt(format!("subscription {}: {what}", r.name));
        let types: Vec<String> =
            serde_json::from_str(&r.types).map_err(|_| corrupt("types is not a JSON array"))?;
        let retry_schedule_ms: Vec<i64> = serde_json::from_str(&r.retry_schedule)
            .map_err(|_| corrupt("retry_schedule is not a JSON array"))?;
        let status = SubscriptionStatus::parse(&r.status).ok_or_else(|| corrupt("status"))?;
        let managed_by = match r.managed_by.as_str() {
            "config" => ManagedBy::Config,
            "api" => ManagedBy::Api,
            _ => return Err(corrupt("managed_by")),
        };
        Ok(SubscriptionRecord {
            name: r.name,
            url: r.url,
            types,
            source: r.source,
            secret: r.secret.map(SecretString::from),
            previous_secret: r.previous_secret.map(SecretString::from),
            previous_until_ms: r.previous_until,
            signing_key: r.signing_key.map(SecretString::from),
            timeout_ms: r.timeout_ms,
            retry_schedule_ms,
            allow_private: r.allow_private,
            disable_after: r.disable_after.clamp(0, i64::from(u32::MAX)) as u32,
            disable_after_hours: r.disable_after_hours.clamp(0, i64::from(u32::MAX)) as u32,
            status,
            status_reason: r.status_reason,
            managed_by,
            start_seq: r.start_seq,
            consecutive_dead: r.consecutive_dead.clamp(0, i64::from(u32::MAX)) as u32,
            failing_since_ms: r.failing_since,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        })
    }
}

pub fn subscriptions(rows: Vec<SubscriptionRow>) -> StoreResult<Vec<SubscriptionRecord>> {
    rows.into_iter().map(SubscriptionRecord::try_from).collect()
}

pub fn list_subscriptions() -> String {
    format!("SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions ORDER BY name")
}

pub fn get_subscription() -> String {
    format!("SELECT {SUBSCRIPTION_COLUMNS} FROM push_subscriptions WHERE name = $1")
}

/// The JSON a subscription's types and schedule are stored as.
pub fn json_list<T: serde::Serialize>(items: &[T]) -> String {
    serde_json::to_string(items).unwrap_or_else(|_| "[]".into())
}

/// A config-file subscription. `$1` name, `$2` url, `$3` types, `$4`
/// source, `$5` timeout, `$6` schedule, `$7` allow private, `$8` disable
/// after (dead letters), `$9` now, `$10` disable after (hours). New ones start after the newest catalog event; one
/// back in the file after it was removed is active again.
pub const UPSERT_CONFIG_SUBSCRIPTION: &str = "INSERT INTO push_subscriptions (name, url, types, \
     source, secret, previous_secret, previous_until, signing_key, timeout_ms, retry_schedule, \
     allow_private, disable_after, disable_after_hours, status, managed_by, start_seq, \
     created_at, updated_at) \
     VALUES ($1, $2, $3, $4, NULL, NULL, NULL, NULL, $5, $6, $7, $8, $10, 'active', 'config', \
       (SELECT coalesce(max(seq), 0) FROM events), $9, $9) \
     ON CONFLICT (name) DO UPDATE SET url = $2, types = $3, source = $4, secret = NULL, \
       previous_secret = NULL, previous_until = NULL, signing_key = NULL, timeout_ms = $5, \
       retry_schedule = $6, allow_private = $7, disable_after = $8, \
       disable_after_hours = $10, managed_by = 'config', updated_at = $9, \
       status = CASE WHEN push_subscriptions.status_reason = 'no longer in the config file' \
         THEN 'active' ELSE push_subscriptions.status END, \
       status_reason = CASE WHEN push_subscriptions.status_reason = 'no longer in the config file' \
         THEN NULL ELSE push_subscriptions.status_reason END";

/// Config subscriptions the config file no longer names: disabled (their
/// secrets are gone with the file), kept for their dead letters.
pub fn disable_removed_config_subscriptions<'a, DB: Database>(
    names: &'a [String],
    now_ms: i64,
) -> QueryBuilder<'a, DB>
where
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "UPDATE push_subscriptions SET status = 'disabled', \
         status_reason = 'no longer in the config file', updated_at = ",
    );
    qb.push_bind(now_ms)
        .push(" WHERE managed_by = 'config' AND status <> 'disabled'");
    if !names.is_empty() {
        qb.push(" AND name NOT IN (");
        let mut list = qb.separated(", ");
        for n in names {
            list.push_bind(n.as_str());
        }
        qb.push(")");
    }
    qb
}

/// An API-created subscription. `$1` name, `$2` url, `$3` types, `$4`
/// source, `$5` secret, `$6` signing key, `$7` timeout, `$8` schedule,
/// `$9` allow private, `$10` disable after (dead letters), `$11` now,
/// `$12` disable after (hours).
pub const CREATE_SUBSCRIPTION: &str = "INSERT INTO push_subscriptions (name, url, types, \
     source, secret, previous_secret, previous_until, signing_key, timeout_ms, retry_schedule, \
     allow_private, disable_after, disable_after_hours, status, managed_by, start_seq, \
     created_at, updated_at) \
     VALUES ($1, $2, $3, $4, $5, NULL, NULL, $6, $7, $8, $9, $10, $12, 'active', 'api', \
       (SELECT coalesce(max(seq), 0) FROM events), $11, $11) \
     ON CONFLICT (name) DO NOTHING";

/// `$1` name, `$2` status, `$3` reason, `$4` now. Resuming starts a new
/// dead-letter streak.
pub const SET_SUBSCRIPTION_STATUS: &str = "UPDATE push_subscriptions SET status = $2, \
     status_reason = $3, updated_at = $4, \
     consecutive_dead = CASE WHEN $2 = 'active' THEN 0 ELSE consecutive_dead END, \
     failing_since = CASE WHEN $2 = 'active' THEN NULL ELSE failing_since END \
     WHERE name = $1";

/// The push router's cursor row, once no subscription is left. `$1` its
/// name.
pub const DROP_IDLE_ROUTER: &str = "DELETE FROM sinks WHERE name = $1 \
     AND NOT EXISTS (SELECT 1 FROM push_subscriptions)";

/// `$1` name, `$2` new secret, `$3` old one signs until, `$4` now.
pub const ROTATE_SECRET: &str = "UPDATE push_subscriptions SET previous_secret = secret, \
     previous_until = $3, secret = $2, updated_at = $4 WHERE name = $1 AND managed_by = 'api'";

/// `$1` name, `$2` reason, `$3` now: only an active one.
pub const DISABLE_SUBSCRIPTION: &str = "UPDATE push_subscriptions SET status = 'disabled', \
     status_reason = $2, updated_at = $3 WHERE name = $1 AND status = 'active'";

/// Queue messages (idempotent).
pub fn enqueue_messages<'a, DB: Database>(messages: &'a [NewMessage]) -> QueryBuilder<'a, DB>
where
    &'a str: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "INSERT INTO push_messages (id, subscription, event_id, event_seq, event_type, entity, \
         status, attempts, next_attempt_at, created_at, updated_at) ",
    );
    qb.push_values(messages, |mut row, m| {
        row.push_bind(m.id.as_str())
            .push_bind(m.subscription.as_str())
            .push_bind(m.event_id.as_str())
            .push_bind(m.event_seq)
            .push_bind(m.event_type.as_str())
            .push_bind(m.entity.as_str())
            .push("'pending'")
            .push("0")
            .push_bind(m.created_at_ms)
            .push_bind(m.created_at_ms)
            .push_bind(m.created_at_ms);
    });
    qb.push(" ON CONFLICT (subscription, event_id) DO NOTHING");
    qb
}

/// The messages a dispatcher may take: due (or their lease expired), of
/// an active subscription, and the oldest unfinished one of their entity.
/// `$1` now, `$2` limit.
pub const DUE_MESSAGES: &str = "SELECT m.id FROM push_messages m \
     JOIN push_subscriptions s ON s.name = m.subscription \
     WHERE s.status = 'active' \
       AND ((m.status IN ('pending', 'failed') AND m.next_attempt_at <= $1) \
         OR (m.status = 'delivering' AND m.lease_until < $1)) \
       AND NOT EXISTS (SELECT 1 FROM push_messages p \
         WHERE p.subscription = m.subscription AND p.entity = m.entity \
           AND p.event_seq < m.event_seq \
           AND p.status IN ('pending', 'failed', 'delivering')) \
     ORDER BY m.next_attempt_at, m.event_seq LIMIT $2";

/// `$1` message id: the catalog event it carries.
pub const MESSAGE_PAYLOAD: &str = "SELECT e.payload FROM push_messages m \
     JOIN events e ON e.id = m.event_id WHERE m.id = $1";

/// `$1` id, `$2` status, `$3` next attempt, `$4` error, `$5` now.
pub const FINISH_MESSAGE: &str = "UPDATE push_messages SET status = $2, next_attempt_at = $3, \
     lease_until = NULL, last_error = $4, updated_at = $5 \
     WHERE id = $1 AND status = 'delivering'";

/// `$1` message id, `$2` started, `$3` finished, `$4` status code, `$5`
/// latency, `$6` body, `$7` error, `$8` outcome. The attempt number is the
/// message's count, set by the claim.
pub const INSERT_PUSH_ATTEMPT: &str = "INSERT INTO push_attempts (message_id, subscription, \
     attempt, started_at, finished_at, status_code, latency_ms, response_body, error, outcome) \
     SELECT id, subscription, attempts, $2, $3, $4, $5, $6, $7, $8 FROM push_messages \
     WHERE id = $1";

/// `$1` name, `$2` outcome, `$3` when the attempt failed: a delivery ends
/// both streaks, a dead letter extends the dead-letter one, any failure
/// starts the failing one if it isn't running.
pub const COUNT_DEAD_STREAK: &str = "UPDATE push_subscriptions SET consecutive_dead = \
     CASE WHEN $2 = 'delivered' THEN 0 WHEN $2 = 'dead' THEN consecutive_dead + 1 \
     ELSE consecutive_dead END, \
     failing_since = CASE WHEN $2 = 'delivered' THEN NULL \
     ELSE coalesce(failing_since, $3) END WHERE name = $1 \
     RETURNING CAST(consecutive_dead AS BIGINT), failing_since";

pub const MESSAGE_COLUMNS: &str = "id, subscription, event_id, \
     CAST(event_seq AS BIGINT) AS event_seq, event_type, entity, status, \
     CAST(attempts AS BIGINT) AS attempts, next_attempt_at, last_error, created_at, updated_at";

#[derive(sqlx::FromRow)]
pub struct MessageRow {
    id: String,
    subscription: String,
    event_id: String,
    event_seq: i64,
    event_type: String,
    entity: String,
    status: String,
    attempts: i64,
    next_attempt_at: i64,
    last_error: Option<String>,
    created_at: i64,
    updated_at: i64,
}

impl From<MessageRow> for MessageRecord {
    fn from(r: MessageRow) -> MessageRecord {
        MessageRecord {
            id: r.id,
            subscription: r.subscription,
            event_id: r.event_id,
            event_seq: r.event_seq,
            event_type: r.event_type,
            entity: r.entity,
            status: r.status,
            attempts: r.attempts,
            next_attempt_at_ms: r.next_attempt_at,
            last_error: r.last_error,
            created_at_ms: r.created_at,
            updated_at_ms: r.updated_at,
        }
    }
}

pub fn list_messages<'a, DB: Database>(
    subscription: &str,
    status: Option<&str>,
    before_seq: Option<i64>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(format!(
        "SELECT {MESSAGE_COLUMNS} FROM push_messages WHERE subscription = "
    ));
    qb.push_bind(subscription.to_string());
    if let Some(status) = status {
        qb.push(" AND status = ").push_bind(status.to_string());
    }
    if let Some(seq) = before_seq {
        qb.push(" AND event_seq < ").push_bind(seq);
    }
    qb.push(" ORDER BY event_seq DESC, id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

#[derive(sqlx::FromRow)]
pub struct PushAttemptRow {
    id: i64,
    message_id: String,
    event_id: String,
    attempt: i64,
    started_at: i64,
    finished_at: i64,
    status_code: Option<i64>,
    latency_ms: i64,
    response_body: Option<String>,
    error: Option<String>,
    outcome: String,
}

impl From<PushAttemptRow> for PushAttemptRecord {
    fn from(r: PushAttemptRow) -> PushAttemptRecord {
        PushAttemptRecord {
            id: r.id,
            message_id: r.message_id,
            event_id: r.event_id,
            attempt: r.attempt,
            started_at_ms: r.started_at,
            finished_at_ms: r.finished_at,
            status_code: r.status_code,
            latency_ms: r.latency_ms,
            response_body: r.response_body,
            error: r.error,
            outcome: r.outcome,
        }
    }
}

pub fn list_push_attempts<'a, DB: Database>(
    subscription: &str,
    message_id: Option<&str>,
    before_id: Option<i64>,
    limit: u32,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    let mut qb = QueryBuilder::new(
        "SELECT CAST(a.id AS BIGINT) AS id, a.message_id, m.event_id, \
         CAST(a.attempt AS BIGINT) AS attempt, a.started_at, a.finished_at, \
         CAST(a.status_code AS BIGINT) AS status_code, CAST(a.latency_ms AS BIGINT) AS latency_ms, \
         a.response_body, a.error, a.outcome \
         FROM push_attempts a JOIN push_messages m ON m.id = a.message_id \
         WHERE a.subscription = ",
    );
    qb.push_bind(subscription.to_string());
    if let Some(id) = message_id {
        qb.push(" AND a.message_id = ").push_bind(id.to_string());
    }
    if let Some(id) = before_id {
        qb.push(" AND a.id < ").push_bind(id);
    }
    qb.push(" ORDER BY a.id DESC LIMIT ")
        .push_bind(i64::from(limit));
    qb
}

/// Dead letters pending again. `$1` subscription, `$2` now, and the
/// caller appends `AND id = $3` for one.
pub const REPLAY_MESSAGES: &str = "UPDATE push_messages SET status = 'pending', attempts = 0, \
     next_attempt_at = $2, lease_until = NULL, last_error = NULL, updated_at = $2 \
     WHERE subscription = $1 AND status = 'dead'";

/// The push backlog for `/metrics`: undelivered messages per subscription
/// and status, one branch per indexed status group, as for the deliveries above
/// (PostgreSQL: push_messages_due and push_messages_dead).
pub const PUSH_BACKLOG: &str = "SELECT subscription, status, count(*) FROM push_messages \
     WHERE status IN ('pending', 'failed', 'delivering') GROUP BY subscription, status \
     UNION ALL SELECT subscription, status, count(*) FROM push_messages \
     WHERE status = 'dead' GROUP BY subscription, status";

/// Retention: delivered messages last updated before `$1`, at most `$2`.
pub const EXPIRED_PUSH_MESSAGES: &str = "SELECT id FROM push_messages \
     WHERE status = 'delivered' AND updated_at < $1 LIMIT $2";

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::{Postgres, Sqlite};

    fn filter() -> DeliveryFilter {
        DeliveryFilter {
            source: Some("stripe".into()),
            statuses: vec![DeliveryStatus::Dead, DeliveryStatus::Failed],
            since_ms: Some(5),
            ..DeliveryFilter::default()
        }
    }

    #[test]
    fn list_deliveries_sql_is_the_same_but_for_placeholders() {
        let after = Position {
            received_at_ms: 9,
            id: "dlv_x".into(),
        };
        let pg = list_deliveries::<Postgres>(&filter(), Some(&after), 10)
            .sql()
            .to_string();
        let lite = list_deliveries::<Sqlite>(&filter(), Some(&after), 10)
            .sql()
            .to_string();
        assert!(
            pg.contains(
                "AND source = $1 AND status IN ($2, $3) AND received_at >= $4 \
             AND (received_at < $5 OR (received_at = $6 AND id < $7)) \
             ORDER BY received_at DESC, id DESC LIMIT $8"
            ),
            "{pg}"
        );
        let mut n = 0;
        let numbered: String = lite
            .chars()
            .map(|c| {
                if c == '?' {
                    n += 1;
                    format!("${n}")
                } else {
                    c.to_string()
                }
            })
            .collect();
        assert_eq!(numbered, pg);
    }

    #[test]
    fn requeue_matching_only_touches_allowed_statuses() {
        let allowed = [
            DeliveryStatus::Done,
            DeliveryStatus::Failed,
            DeliveryStatus::Dead,
        ];
        let sql = requeue_matching::<Postgres>(&filter(), &allowed, 1, false)
            .sql()
            .to_string();
        // The filter's dead and failed, both allowed: two statuses, and
        // the body must still be there.
        assert!(
            sql.contains("AND status IN ($4, $5)") && sql.contains("purged_at IS NULL"),
            "{sql}"
        );
        assert_eq!(sql.matches("status IN").count(), 1, "{sql}");
        let pending_only = DeliveryFilter {
            statuses: vec![DeliveryStatus::Pending],
            ..DeliveryFilter::default()
        };
        let sql = requeue_matching::<Postgres>(&pending_only, &allowed, 1, true)
            .sql()
            .to_string();
        assert!(
            sql.starts_with("SELECT count(*)") && sql.contains("1 = 0"),
            "{sql}"
        );
    }
}
