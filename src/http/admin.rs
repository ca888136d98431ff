//! The operator API under `/v1/admin` (bearer tokens, like the consumer
//! API): deliveries listed by filter with cursor paging, a delivery's full
//! record (redacted headers, raw body, verification, attempts, the catalog
//! events it produced), replay one or many, release or discard quarantined
//! ones, and the rejection log.
//!
//! Filters, cursors, redaction and body rendering are plain functions at the
//! top of this file; the handlers only wire them to the store. The queries
//! the dashboard (`http::ui`) shares — `delivery_page`, `delivery_detail`,
//! `replay`, `release`, `discard`, `rejection_page` — take the state, not a request, and leave
//! authorization to their caller.

use actix_web::{web, HttpRequest, HttpResponse};
use base64::Engine;
use serde::Deserialize;
use serde_json::{json, Value};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

use super::api::{authorize, MAX_LIMIT};
use super::error::ApiError;
use super::AppState;
use crate::clock::{from_unix_ms, rfc3339, unix_ms};
use crate::ingest::IngestError;
use crate::store::{
    AttemptRecord, DeliveryFilter, DeliveryRecord, DeliveryStatus, Position, RejectionFilter,
    RejectionRecord, RequestRecord, Transition,
};

const DEFAULT_LIMIT: u32 = 50;

/// Statuses a replay may start from: processed ones. Quarantined ones are
/// released instead (re-validated first).
pub const REPLAYABLE: [DeliveryStatus; 3] = [
    DeliveryStatus::Done,
    DeliveryStatus::Failed,
    DeliveryStatus::Dead,
];

/// Statuses an operator may discard: the ones waiting for a decision.
pub const DISCARDABLE: [DeliveryStatus; 2] = [DeliveryStatus::Quarantined, DeliveryStatus::Dead];

/// The parameters of the listing (query string) and of the bulk actions
/// (JSON body): the same filter fields. Unknown fields are refused, so a
/// misspelt filter can't silently widen a bulk replay.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryParams {
    pub source: Option<String>,
    pub provider: Option<String>,
    /// One status or several, comma-separated.
    pub status: Option<String>,
    /// The provider's event type (`invoice.payment_succeeded`).
    pub event_type: Option<String>,
    /// The provider's event id.
    pub event_id: Option<String>,
    /// RFC 3339; received at or after.
    pub since: Option<String>,
    /// RFC 3339; received before.
    pub until: Option<String>,
    /// Listing only.
    pub limit: Option<u32>,
    /// Listing only: `next_cursor` of the page before.
    pub cursor: Option<String>,
    /// Bulk actions only: count, change nothing.
    pub dry_run: Option<bool>,
}

impl DeliveryParams {
    pub fn filter(&self) -> Result<DeliveryFilter, ApiError> {
        let statuses = match self.status.as_deref() {
            None | Some("") => Vec::new(),
            Some(list) => list
                .split(',')
                .map(|s| {
                    DeliveryStatus::parse(s.trim())
                        .ok_or_else(|| ApiError::BadRequest(format!("unknown status {s:?}")))
                })
                .collect::<Result<_, _>>()?,
        };
        let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
        Ok(DeliveryFilter {
            source: text(&self.source),
            provider: text(&self.provider),
            statuses,
            provider_event_type: text(&self.event_type),
            provider_event_id: text(&self.event_id),
            since_ms: parse_time("since", self.since.as_deref())?,
            until_ms: parse_time("until", self.until.as_deref())?,
        })
    }
}

/// An RFC 3339 time (`2026-05-18T10:00:00Z`) as unix milliseconds.
pub fn parse_time(field: &str, value: Option<&str>) -> Result<Option<i64>, ApiError> {
    match value {
        None | Some("") => Ok(None),
        Some(v) => OffsetDateTime::parse(v, &Rfc3339)
            .map(|t| Some(unix_ms(t)))
            .map_err(|_| {
                ApiError::BadRequest(format!(
                    "{field}: {v:?} is not an RFC 3339 time (e.g. 2026-05-18T10:00:00Z)"
                ))
            }),
    }
}

/// The opaque cursor: the keyset position of a page's last row.
pub fn encode_cursor(p: &Position) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(format!("{}.{}", p.received_at_ms, p.id))
}

pub fn decode_cursor(cursor: Option<&str>) -> Result<Option<Position>, ApiError> {
    let Some(cursor) = cursor.filter(|c| !c.is_empty()) else {
        return Ok(None);
    };
    let invalid = || ApiError::BadRequest(format!("invalid cursor {cursor:?}"));
    let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(cursor)
        .map_err(|_| invalid())?;
    let raw = String::from_utf8(raw).map_err(|_| invalid())?;
    let (ms, id) = raw.split_once('.').ok_or_else(invalid)?;
    let received_at_ms = ms.parse::<i64>().map_err(|_| invalid())?;
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid());
    }
    Ok(Some(Position {
        received_at_ms,
        id: id.to_string(),
    }))
}

fn limit(requested: Option<u32>) -> u32 {
    requested.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT)
}

/// Header names whose values are credentials or signatures: shown by name
/// only. Credentials are not even stored (see `ingest`); this also covers
/// rows stored before a scheme marked a header secret, and signatures,
/// which are no secret but nothing an operator needs to copy around.
const SENSITIVE_PARTS: [&str; 9] = [
    "signature",
    "auth",
    "token",
    "secret",
    "hmac",
    "password",
    "cookie",
    "api-key",
    "apikey",
];

pub const REDACTED: &str = "[redacted]";

pub fn is_sensitive_header(name: &str, secret_headers: &[String]) -> bool {
    let name = name.to_ascii_lowercase();
    secret_headers.iter().any(|h| h.eq_ignore_ascii_case(&name))
        || SENSITIVE_PARTS.iter().any(|part| name.contains(part))
}

/// The stored headers (`{"name": ["value", ...]}`) with sensitive values
/// replaced.
pub fn redact_headers(headers_json: &str, secret_headers: &[String]) -> Value {
    let Ok(Value::Object(mut map)) = serde_json::from_str::<Value>(headers_json) else {
        return json!({});
    };
    for (name, values) in map.iter_mut() {
        if is_sensitive_header(name, secret_headers) {
            let n = values.as_array().map(Vec::len).unwrap_or(1);
            *values = Value::Array(vec![json!(REDACTED); n]);
        }
    }
    Value::Object(map)
}

/// A raw body as JSON: text when it is UTF-8, base64 otherwise.
pub fn body_json(body: &[u8]) -> Value {
    match std::str::from_utf8(body) {
        Ok(text) => json!({ "encoding": "utf-8", "bytes": body.len(), "text": text }),
        Err(_) => json!({
            "encoding": "base64",
            "bytes": body.len(),
            "base64": base64::engine::general_purpose::STANDARD.encode(body),
        }),
    }
}

fn time(ms: i64) -> String {
    rfc3339(from_unix_ms(ms))
}

fn parsed(json_text: Option<&str>) -> Value {
    json_text
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or(Value::Null)
}

/// Received → done, for a done delivery (a replay's counts from the
/// original arrival).
pub fn latency_ms(d: &DeliveryRecord) -> Option<i64> {
    (d.status == DeliveryStatus::Done).then(|| (d.updated_at_ms - d.received_at_ms).max(0))
}

fn delivery_summary(d: &DeliveryRecord) -> Value {
    json!({
        "id": d.id,
        "source": d.source,
        "provider": d.provider,
        "provider_event_id": d.provider_event_id,
        "provider_event_type": d.provider_event_type,
        "status": d.status,
        "attempts": d.attempts,
        "last_error": d.last_error,
        "violations": parsed(d.violations.as_deref()),
        "received_at": time(d.received_at_ms),
        "received_at_ms": d.received_at_ms,
        "updated_at": time(d.updated_at_ms),
        "latency_ms": latency_ms(d),
        "next_attempt_at_ms": d.next_attempt_at_ms,
        "discard_reason": d.discard_reason,
    })
}

fn attempt_json(a: &AttemptRecord) -> Value {
    json!({
        "attempt": a.attempt,
        "started_at": time(a.started_at_ms),
        "finished_at": time(a.finished_at_ms),
        "duration_ms": a.finished_at_ms - a.started_at_ms,
        "outcome": a.outcome,
        "error": a.error,
        "retry_at": a.retry_at_ms.map(time),
        "events": parsed(Some(&a.events_json)),
    })
}

fn request_json(r: &RequestRecord, secret_headers: &[String]) -> Value {
    json!({
        "id": r.id,
        "remote_addr": r.remote_addr,
        "headers": redact_headers(&r.headers_json, secret_headers),
        "body": if r.purged_at_ms.is_some() { Value::Null } else { body_json(&r.body) },
        "body_purged_at": r.purged_at_ms.map(time),
    })
}

fn rejection_json(r: &RejectionRecord) -> Value {
    json!({
        "id": r.id,
        "source": r.source,
        "code": r.code,
        "message": r.message,
        "remote_addr": r.remote_addr,
        "received_at": time(r.received_at_ms),
        "received_at_ms": r.received_at_ms,
        "body_kept": r.has_body,
    })
}

/// `GET /v1/admin/deliveries`: newest first; `next_cursor` is set while
/// there may be more.
pub async fn list_deliveries(
    req: HttpRequest,
    query: web::Query<DeliveryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    if query.dry_run.is_some() {
        return Err(ApiError::BadRequest(
            "dry_run is for the bulk actions (POST)".into(),
        ));
    }
    let (rows, next_cursor) = delivery_page(&state, &query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "deliveries": rows.iter().map(delivery_summary).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

/// One page of the delivery listing, newest first, and the cursor of the
/// next page while there may be one (the API and the dashboard).
pub async fn delivery_page(
    state: &AppState,
    params: &DeliveryParams,
) -> Result<(Vec<DeliveryRecord>, Option<String>), ApiError> {
    let filter = params.filter()?;
    let after = decode_cursor(params.cursor.as_deref())?;
    let limit = limit(params.limit);
    // One more than asked says whether another page exists.
    let mut rows = state
        .store
        .list_deliveries(&filter, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|d| {
        encode_cursor(&Position {
            received_at_ms: d.received_at_ms,
            id: d.id.clone(),
        })
    });
    Ok((rows, next_cursor))
}

/// `GET /v1/admin/deliveries/{id}`: everything known about one delivery.
pub async fn get_delivery(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    Ok(HttpResponse::Ok().json(delivery_detail(&state, &id).await?))
}

/// A delivery's full record as the API answers it (the dashboard renders
/// the same value): redacted headers, body, verification, attempts, events.
pub async fn delivery_detail(state: &AppState, id: &str) -> Result<Value, ApiError> {
    let d = state
        .store
        .get_delivery(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such delivery".into()))?;
    let request = state.store.delivery_request(id).await?;
    let attempts = state.store.delivery_attempts(id).await?;
    let events = state.store.delivery_events(id).await?;
    let source = state.ingestor.source(&d.source);
    let secret_headers = source
        .map(|s| s.scheme.secret_headers())
        .unwrap_or_default();
    let mut body = delivery_summary(&d);
    body["request_id"] = json!(d.request_id);
    body["batch_item"] = json!(d.item_index);
    body["occurred_at"] = json!(d.occurred_at_ms.map(time));
    body["discarded"] = match (&d.discard_reason, d.discarded_at_ms) {
        (Some(reason), Some(at)) => json!({ "reason": reason, "at": time(at) }),
        _ => Value::Null,
    };
    // Only requests that verified are ever stored as deliveries.
    body["verification"] = json!({
        "verified": true,
        "scheme": source.map(|s| s.scheme.name()),
    });
    body["schema"] = json!({
        "valid": d.violations.is_none(),
        "violations": parsed(d.violations.as_deref()),
    });
    body["request"] = request
        .as_ref()
        .map(|r| request_json(r, &secret_headers))
        .unwrap_or(Value::Null);
    body["attempt_log"] = json!(attempts.iter().map(attempt_json).collect::<Vec<_>>());
    body["events"] = json!(events
        .iter()
        .map(|(id, t)| json!({ "id": id, "type": t }))
        .collect::<Vec<_>>());
    Ok(body)
}

/// `POST /v1/admin/deliveries/{id}/replay`: process a done, failed or dead
/// delivery again from its stored raw bytes. Catalog event ids are
/// deterministic, so a replay never duplicates an event downstream.
pub async fn replay_delivery(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    replay(&state, &id).await?;
    Ok(HttpResponse::Accepted().json(json!({ "id": id.as_str(), "status": "pending" })))
}

/// Make a done, failed or dead delivery pending again and wake the workers
/// (the API's replay and the dashboard's Replay button).
pub async fn replay(state: &AppState, id: &str) -> Result<(), ApiError> {
    let now = state.ingestor.now_ms();
    let outcome = state.store.requeue(id, &REPLAYABLE, now).await?;
    requeued(state, id, outcome, "replayed")
}

impl DeliveryParams {
    /// A bulk action's filter: at least one field (an empty body must not
    /// mean "everything"), no paging.
    fn bulk_filter(&self) -> Result<DeliveryFilter, ApiError> {
        if self.limit.is_some() || self.cursor.is_some() {
            return Err(ApiError::BadRequest(
                "limit and cursor page the listing; a bulk action takes every match".into(),
            ));
        }
        let filter = self.filter()?;
        if filter.is_empty() {
            return Err(ApiError::BadRequest(
                "give at least one filter (source, provider, status, event_type, event_id, since, until)"
                    .into(),
            ));
        }
        Ok(filter)
    }
}

/// `POST /v1/admin/deliveries/replay`: replay every done, failed or dead
/// delivery that matches (e.g. `{"source": "stripe", "status": "dead"}`);
/// `dry_run` only counts them.
pub async fn replay_matching(
    req: HttpRequest,
    body: web::Json<DeliveryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let filter = body.bulk_filter()?;
    let dry_run = body.dry_run.unwrap_or(false);
    if let Some(s) = filter.statuses.iter().find(|s| !REPLAYABLE.contains(s)) {
        return Err(ApiError::BadRequest(format!(
            "{} deliveries can't be replayed (done, failed and dead can; quarantined ones are released)",
            s.as_str()
        )));
    }
    let now = state.ingestor.now_ms();
    let count = state
        .store
        .requeue_matching(&filter, &REPLAYABLE, now, dry_run)
        .await?;
    if !dry_run && count > 0 {
        state.ingestor.wake_workers();
        tracing::info!(count, ?filter, "deliveries replayed by an operator");
    }
    Ok(HttpResponse::Ok().json(json!({ "dry_run": dry_run, "count": count })))
}

/// `POST /v1/admin/deliveries/{id}/release`: a quarantined delivery is
/// re-validated against the provider's current schema and, if it passes,
/// processed; otherwise 422 with what still fails.
pub async fn release_delivery(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    release(&state, &id).await?;
    Ok(HttpResponse::Accepted().json(json!({ "id": id.as_str(), "status": "pending" })))
}

/// Re-validate a quarantined delivery and, when it now passes, make it
/// pending (the API's release and the dashboard's Release button).
pub async fn release(state: &AppState, id: &str) -> Result<(), ApiError> {
    let delivery = state
        .store
        .get_delivery(id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such delivery".into()))?;
    if delivery.status != DeliveryStatus::Quarantined {
        return Err(ApiError::Conflict(format!(
            "only quarantined deliveries are released; this one is {}",
            delivery.status.as_str()
        )));
    }
    let violations = revalidate(state, &delivery).await?;
    if !violations.is_empty() {
        return Err(ApiError::Ingest(IngestError::SchemaViolation(violations)));
    }
    let now = state.ingestor.now_ms();
    let outcome = state
        .store
        .requeue(id, &[DeliveryStatus::Quarantined], now)
        .await?;
    requeued(state, id, outcome, "released")
}

/// What still fails the schema for a quarantined delivery's stored body.
async fn revalidate(
    state: &AppState,
    delivery: &DeliveryRecord,
) -> Result<Vec<crate::providers::Violation>, ApiError> {
    let (body, _) = state
        .store
        .delivery_body(&delivery.id)
        .await?
        .ok_or_else(|| ApiError::Conflict("the raw body is no longer kept".into()))?;
    state
        .ingestor
        .revalidate(&delivery.source, &body, None)
        .map_err(|e| match e {
            IngestError::UnknownSource => ApiError::Conflict(format!(
                "source {:?} is no longer configured",
                delivery.source
            )),
            other => ApiError::Ingest(other),
        })
}

/// At most this many still-failing deliveries are listed in a bulk
/// release's answer.
const FAILURES_SHOWN: usize = 20;

/// `POST /v1/admin/deliveries/release`: re-validate every quarantined
/// delivery that matches and process those that now pass; `dry_run` only
/// reports which would.
pub async fn release_matching(
    req: HttpRequest,
    body: web::Json<DeliveryParams>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let mut filter = body.bulk_filter()?;
    let dry_run = body.dry_run.unwrap_or(false);
    if filter
        .statuses
        .iter()
        .any(|s| *s != DeliveryStatus::Quarantined)
    {
        return Err(ApiError::BadRequest(
            "only quarantined deliveries are released".into(),
        ));
    }
    filter.statuses = vec![DeliveryStatus::Quarantined];
    let (mut released, mut still_failing, mut skipped) = (0u64, 0u64, 0u64);
    let mut failures = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let page = state
            .store
            .list_deliveries(&filter, after.as_ref(), 200)
            .await?;
        let Some(last) = page.last() else { break };
        after = Some(Position {
            received_at_ms: last.received_at_ms,
            id: last.id.clone(),
        });
        for d in &page {
            let violations = match revalidate(&state, d).await {
                Ok(v) => v,
                Err(ApiError::Conflict(reason)) => {
                    skipped += 1;
                    if failures.len() < FAILURES_SHOWN {
                        failures.push(json!({ "id": d.id, "reason": reason }));
                    }
                    continue;
                }
                Err(other) => return Err(other),
            };
            if !violations.is_empty() {
                still_failing += 1;
                if failures.len() < FAILURES_SHOWN {
                    failures.push(json!({ "id": d.id, "violations": violations }));
                }
                continue;
            }
            if dry_run {
                released += 1;
                continue;
            }
            let now = state.ingestor.now_ms();
            match state
                .store
                .requeue(&d.id, &[DeliveryStatus::Quarantined], now)
                .await?
            {
                Transition::Applied => released += 1,
                _ => skipped += 1,
            }
        }
    }
    if !dry_run && released > 0 {
        state.ingestor.wake_workers();
        tracing::info!(
            released,
            still_failing,
            "quarantined deliveries released by an operator"
        );
    }
    Ok(HttpResponse::Ok().json(json!({
        "dry_run": dry_run,
        "released": released,
        "still_failing": still_failing,
        "skipped": skipped,
        "failures": failures,
    })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiscardBody {
    reason: String,
}

/// `POST /v1/admin/deliveries/{id}/discard {"reason": "..."}`: set a
/// quarantined or dead delivery aside for good, recording why.
pub async fn discard_delivery(
    req: HttpRequest,
    id: web::Path<String>,
    body: web::Json<DiscardBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let reason = body.reason.trim();
    let at = discard(&state, &id, reason).await?;
    Ok(HttpResponse::Ok().json(json!({
        "id": id.as_str(),
        "status": "discarded",
        "reason": reason,
        "discarded_at": time(at),
    })))
}

/// Set a quarantined or dead delivery aside with a reason (1 to 1000
/// characters); returns when (the API's discard and the dashboard's).
pub async fn discard(state: &AppState, id: &str, reason: &str) -> Result<i64, ApiError> {
    if reason.is_empty() || reason.chars().count() > 1000 {
        return Err(ApiError::BadRequest(
            "reason: say why, in 1 to 1000 characters".into(),
        ));
    }
    let now = state.ingestor.now_ms();
    match state.store.discard(id, &DISCARDABLE, reason, now).await? {
        Transition::Applied => {
            tracing::info!(delivery_id = %id, reason, "delivery discarded by an operator");
            Ok(now)
        }
        Transition::NotFound => Err(ApiError::NotFound("no such delivery".into())),
        Transition::Refused(status) => Err(ApiError::Conflict(format!(
            "a {} delivery can't be discarded (quarantined and dead ones can)",
            status.as_str()
        ))),
        Transition::BodyPurged => Err(ApiError::Conflict("the raw body is no longer kept".into())),
    }
}

fn requeued(state: &AppState, id: &str, outcome: Transition, verb: &str) -> Result<(), ApiError> {
    match outcome {
        Transition::Applied => {
            state.ingestor.wake_workers();
            tracing::info!(
                delivery_id = id,
                action = verb,
                "delivery requeued by an operator"
            );
            Ok(())
        }
        Transition::NotFound => Err(ApiError::NotFound("no such delivery".into())),
        Transition::Refused(status) => Err(ApiError::Conflict(format!(
            "a {} delivery can't be {verb}",
            status.as_str()
        ))),
        Transition::BodyPurged => Err(ApiError::Conflict(format!(
            "the raw body was removed by retention; this delivery can't be {verb}"
        ))),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectionsQuery {
    pub source: Option<String>,
    /// The refusal's error code (`invalid_signature`, `schema_violation`).
    #[serde(alias = "code")]
    pub reason: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub limit: Option<u32>,
    pub cursor: Option<String>,
}

/// `GET /v1/admin/rejections`: refused requests, newest first.
pub async fn list_rejections(
    req: HttpRequest,
    query: web::Query<RejectionsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (rows, next_cursor) = rejection_page(&state, &query).await?;
    Ok(HttpResponse::Ok().json(json!({
        "rejections": rows.iter().map(rejection_json).collect::<Vec<_>>(),
        "next_cursor": next_cursor,
    })))
}

/// One page of the rejection log, newest first, and the next page's cursor.
pub async fn rejection_page(
    state: &AppState,
    query: &RejectionsQuery,
) -> Result<(Vec<RejectionRecord>, Option<String>), ApiError> {
    let text = |v: &Option<String>| v.clone().filter(|s| !s.is_empty());
    let filter = RejectionFilter {
        source: text(&query.source),
        code: text(&query.reason),
        since_ms: parse_time("since", query.since.as_deref())?,
        until_ms: parse_time("until", query.until.as_deref())?,
    };
    let after = decode_cursor(query.cursor.as_deref())?;
    let limit = limit(query.limit);
    let mut rows = state
        .store
        .list_rejections(&filter, after.as_ref(), limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next_cursor = more.then(|| rows.last()).flatten().map(|r| {
        encode_cursor(&Position {
            received_at_ms: r.received_at_ms,
            id: r.id.clone(),
        })
    });
    Ok((rows, next_cursor))
}

/// `GET /v1/admin/rejections/{id}`: one rejection, with the body when it
/// was kept (authentic requests refused for their payload).
pub async fn get_rejection(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (record, body) = state
        .store
        .get_rejection(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such rejection".into()))?;
    let mut answer = rejection_json(&record);
    answer["body"] = body.as_deref().map(body_json).unwrap_or(Value::Null);
    Ok(HttpResponse::Ok().json(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_round_trips_and_rejects_tampering() {
        let p = Position {
            received_at_ms: 1_765_000_000_123,
            id: "dlv_01KBQ1AAAAAAAAAAAAAAAAAAAA".into(),
        };
        let c = encode_cursor(&p);
        assert_eq!(decode_cursor(Some(&c)).unwrap(), Some(p));
        assert_eq!(decode_cursor(None).unwrap(), None);
        assert_eq!(decode_cursor(Some("")).unwrap(), None);
        let bad = |raw: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        for c in [
            "not base64!".to_string(),
            bad("12"),
            bad("x.dlv_1"),
            bad("12."),
            bad("12.dlv 1"),
        ] {
            assert!(decode_cursor(Some(&c)).is_err(), "{c} accepted");
        }
    }

    #[test]
    fn redact_headers_hides_signatures_and_scheme_secrets() {
        let stored = json!({
            "stripe-signature": ["t=1,v1=abc"],
            "x-hub-signature-256": ["sha256=abc"],
            "x-shopify-hmac-sha256": ["abc"],
            "x-auth-token": ["t1", "t2"],
            "cf-webhook-auth": ["s3cret"],
            "content-type": ["application/json"],
            "user-agent": ["Stripe/1.0"],
        })
        .to_string();
        let shown = redact_headers(&stored, &["cf-webhook-auth".to_string()]);
        for name in [
            "stripe-signature",
            "x-hub-signature-256",
            "x-shopify-hmac-sha256",
            "cf-webhook-auth",
        ] {
            assert_eq!(shown[name], json!([REDACTED]), "{name}");
        }
        assert_eq!(shown["x-auth-token"], json!([REDACTED, REDACTED]));
        assert_eq!(shown["content-type"], json!(["application/json"]));
        assert_eq!(shown["user-agent"], json!(["Stripe/1.0"]));
        assert!(!shown.to_string().contains("abc"));
    }

    #[test]
    fn body_json_is_text_for_utf8_and_base64_otherwise() {
        assert_eq!(
            body_json(b"{\"a\":1}"),
            json!({ "encoding": "utf-8", "bytes": 7, "text": "{\"a\":1}" })
        );
        assert_eq!(
            body_json(&[0xff, 0x00, 0x61]),
            json!({ "encoding": "base64", "bytes": 3, "base64": "/wBh" })
        );
    }

    #[test]
    fn delivery_params_parse_statuses_and_times() {
        let p = DeliveryParams {
            status: Some("dead, failed".into()),
            since: Some("2025-12-06T05:46:40Z".into()),
            source: Some(String::new()),
            ..DeliveryParams::default()
        };
        let f = p.filter().unwrap();
        assert_eq!(
            f.statuses,
            vec![DeliveryStatus::Dead, DeliveryStatus::Failed]
        );
        assert_eq!(f.since_ms, Some(1_765_000_000_000));
        assert_eq!(f.source, None, "an empty parameter is no filter");
        for bad in [
            DeliveryParams {
                status: Some("deadish".into()),
                ..DeliveryParams::default()
            },
            DeliveryParams {
                until: Some("yesterday".into()),
                ..DeliveryParams::default()
            },
        ] {
            assert!(bad.filter().is_err());
        }
    }
}
