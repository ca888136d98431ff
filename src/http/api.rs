//! The consumer and operator API (bearer tokens, constant-time compare):
//! catalog events by cursor, the catalog itself, a read-only view of
//! deliveries and rejections, and health checks.

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
use crate::store::{DeliveryStatus, StoredEvent};

/// Compare SHA-256 digests so neither content nor length leaks through
/// timing.
fn authorize(req: &HttpRequest, state: &AppState) -> Result<(), ApiError> {
    let presented = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or(ApiError::Unauthorized)?;
    let presented = Sha256::digest(presented.trim().as_bytes());
    let mut ok = subtle::Choice::from(0);
    for token in &state.api_tokens {
        ok |= Sha256::digest(token.expose_secret().as_bytes()).ct_eq(&presented);
    }
    if bool::from(ok) {
        Ok(())
    } else {
        Err(ApiError::Unauthorized)
    }
}

const MAX_LIMIT: u32 = 1000;

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
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| ApiError::BadRequest(format!("invalid cursor {c:?}")))?,
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

/// `GET /v1/catalog`: every type with its version, schema and example.
pub async fn catalog(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let types: Vec<Value> = state
        .catalog
        .types()
        .map(|t| {
            json!({
                "type": t.name,
                "version": t.version,
                "description": t.description,
                "schema": t.schema,
                "example": t.example,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "types": types })))
}

#[derive(Debug, Deserialize)]
pub struct DeliveriesQuery {
    source: Option<String>,
    status: Option<String>,
    limit: Option<u32>,
}

pub async fn list_deliveries(
    req: HttpRequest,
    query: web::Query<DeliveriesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let status = match query.status.as_deref() {
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::BadRequest(format!("unknown status {s:?}")))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(100).clamp(1, MAX_LIMIT);
    let deliveries = state
        .store
        .list_deliveries(query.source.as_deref(), status, limit)
        .await?;
    Ok(HttpResponse::Ok().json(json!({ "deliveries": deliveries })))
}

pub async fn get_delivery(
    req: HttpRequest,
    id: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    match state.store.get_delivery(&id).await? {
        Some(d) => Ok(HttpResponse::Ok().json(d)),
        None => Err(ApiError::NotFound("no such delivery".into())),
    }
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
    let now = state.ingestor.now_ms();
    let allowed = [
        DeliveryStatus::Done,
        DeliveryStatus::Failed,
        DeliveryStatus::Dead,
    ];
    requeued(
        &state,
        &id,
        state.store.requeue(&id, &allowed, now).await?,
        "replayed",
    )
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
    let delivery = state
        .store
        .get_delivery(&id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such delivery".into()))?;
    if delivery.status != DeliveryStatus::Quarantined {
        return Err(ApiError::Conflict(format!(
            "only quarantined deliveries are released; this one is {}",
            delivery.status.as_str()
        )));
    }
    let (body, _) = state
        .store
        .delivery_body(&id)
        .await?
        .ok_or_else(|| ApiError::Conflict("the raw body is no longer kept".into()))?;
    let violations = state
        .ingestor
        .revalidate(&delivery.source, &body, None)
        .map_err(|e| match e {
            crate::ingest::IngestError::UnknownSource => ApiError::Conflict(format!(
                "source {:?} is no longer configured",
                delivery.source
            )),
            other => ApiError::Ingest(other),
        })?;
    if !violations.is_empty() {
        return Err(ApiError::Ingest(
            crate::ingest::IngestError::SchemaViolation(violations),
        ));
    }
    let now = state.ingestor.now_ms();
    let outcome = state
        .store
        .requeue(&id, &[DeliveryStatus::Quarantined], now)
        .await?;
    requeued(&state, &id, outcome, "released")
}

fn requeued(
    state: &AppState,
    id: &str,
    outcome: crate::store::Requeue,
    verb: &str,
) -> Result<HttpResponse, ApiError> {
    use crate::store::Requeue;
    match outcome {
        Requeue::Requeued => {
            state.ingestor.wake_workers();
            tracing::info!(
                delivery_id = id,
                action = verb,
                "delivery requeued by an operator"
            );
            Ok(HttpResponse::Accepted().json(json!({ "id": id, "status": "pending" })))
        }
        Requeue::NotFound => Err(ApiError::NotFound("no such delivery".into())),
        Requeue::Refused(status) => Err(ApiError::Conflict(format!(
            "a {} delivery can't be {verb}",
            status.as_str()
        ))),
    }
}

pub async fn list_rejections(
    req: HttpRequest,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let rejections = state.store.list_rejections(100).await?;
    Ok(HttpResponse::Ok().json(json!({ "rejections": rejections })))
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
