//! The consumer API (bearer tokens, constant-time compare): catalog events
//! by cursor, the catalog itself; metrics and health checks. The operator
//! API is `http::admin`.

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::ExposeSecret;
use serde::Deserialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use super::AppState;
use crate::catalog::TypePattern;
use crate::store::StoredEvent;

/// Compare SHA-256 digests so neither content nor length leaks through
/// timing.
pub(super) fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        // The scheme name is case-insensitive (RFC 9110 §11.1).
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token)
        .ok_or(ApiError::Unauthorized)?;
    match token_index(state, presented) {
        Some(_) => Ok(()),
        None => Err(ApiError::Unauthorized),
    }
}

/// Which configured token `presented` is (the dashboard's login keys its
/// session to it). Every token is compared, none short-circuits.
pub(super) fn token_index(state: &AppState, presented: &str) -> Option<usize> {
    let presented = Sha256::digest(presented.trim().as_bytes());
    let mut found = None;
    for (i, token) in state.api_tokens.iter().enumerate() {
        let same = Sha256::digest(token.expose_secret().as_bytes()).ct_eq(&presented);
        if bool::from(same) && found.is_none() {
            found = Some(i);
        }
    }
    found
}

pub(super) const MAX_LIMIT: u32 = 1000;

/// A consumer cursor (`after=`, `Last-Event-ID`): an event's `seq`, `>= 0`.
pub(super) fn parse_cursor(what: &str, value: &str) -> Result<i64, ApiError> {
    value
        .trim()
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0)
        .ok_or_else(|| ApiError::BadRequest(format!("invalid {what} {value:?}")))
}

#[derive(Debug, Deserialize)]
pub struct EventsQuery {
    after: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
    limit: Option<u32>,
}

fn event_json(e: &StoredEvent) -> Result<Value, ApiError> {
    serde_json::from_str(&e.payload_json)
        .map_err(|err| ApiError::Unavailable(crate::store::StoreError::Corrupt(err.to_string())))
}

/// `GET /v1/events?after=&type=&limit=`: commit order; `next` is the cursor
/// to pass as `after` (unchanged when the page is empty).
pub async fn list_events(
    req: HttpRequest,
    query: web::Query<EventsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let after = match query.after.as_deref() {
        None | Some("") => 0,
        Some(c) => parse_cursor("cursor", c)?,
    };
    let types = match query.event_type.as_deref() {
        Some(t) => TypePattern::parse_list(t).map_err(ApiError::BadRequest)?,
        None => Vec::new(),
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let events = state.store.list_events(after, &types, limit).await?;
    let next = events.last().map(|e| e.seq).unwrap_or(after);
    let events = events
        .iter()
        .map(event_json)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(json!({ "events": events, "next": next.to_string() })))
}

pub async fn get_event(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    match state.store.get_event(&id).await? {
        Some(e) => Ok(HttpResponse::Ok().json(event_json(&e)?)),
        None => Err(ApiError::NotFound("no such event".into())),
    }
}

/// `GET /v1/catalog`: every type with its version, fields, schema, example,
/// the provider events that map to it and its version history.
pub async fn catalog(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let types: Vec<Value> = state
        .catalog
        .types()
        .map(|t| crate::catalog::docs::type_json(t, &state.catalog_sources))
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "types": types })))
}

/// `GET /metrics`: Prometheus text format. Counters and histograms come
/// from the process's recorder; the queue gauges are read from this
/// instance's database at scrape time (right across instances) and written
/// directly, so they never mix with another app's in the same process.
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    use crate::telemetry::metrics as m;
    use std::fmt::Write;
    let mut text = m::handle().render();
    if let Ok(stats) = state.store.queue_stats().await {
        let _ = writeln!(text, "# TYPE {} gauge", m::QUEUE_DEPTH);
        for status in ["pending", "processing", "failed", "dead", "quarantined"] {
            let n = stats
                .by_status
                .iter()
                .find(|(s, _)| s == status)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            let _ = writeln!(text, "{}{{status=\"{status}\"}} {n}", m::QUEUE_DEPTH);
        }
        let now = state.ingestor.now_ms();
        let age = stats
            .oldest_waiting_ms
            .map(|t| (now - t).max(0) as f64 / 1000.0)
            .unwrap_or(0.0);
        let _ = writeln!(text, "# TYPE {} gauge", m::OLDEST_PENDING);
        let _ = writeln!(text, "{} {age}", m::OLDEST_PENDING);
        let _ = writeln!(text, "# TYPE {} gauge", m::PUBLISH_LAG);
        for (sink, lag) in stats.sink_lag {
            let _ = writeln!(text, "{}{{sink=\"{sink}\"}} {lag}", m::PUBLISH_LAG);
        }
        // Age of the oldest event a sink has yet to publish (0 when none).
        let _ = writeln!(text, "# TYPE {} gauge", m::PUBLISH_LAG_SECONDS);
        for (sink, oldest) in stats.sink_oldest_pending_ms {
            let age = oldest
                .map(|t| (now - t).max(0) as f64 / 1000.0)
                .unwrap_or(0.0);
            let _ = writeln!(text, "{}{{sink=\"{sink}\"}} {age}", m::PUBLISH_LAG_SECONDS);
        }
        let _ = writeln!(text, "# TYPE {} gauge", m::PUSH_BACKLOG);
        for (subscription, status, n) in stats.push_backlog {
            let _ = writeln!(
                text,
                "{}{{subscription=\"{subscription}\",status=\"{status}\"}} {n}",
                m::PUSH_BACKLOG
            );
        }
    }
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text)
}

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// Ready when the database answers and its migrations are applied.
pub async fn readyz(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    state.store.ping().await?;
    Ok(HttpResponse::Ok().json(json!({ "status": "ready" })))
}
