//! The operator API of push subscriptions under `/v1/admin/subscriptions`
//! (bearer tokens, like the rest of `/v1/admin`): create, list, show,
//! pause, resume, delete, rotate the secret; a subscription's messages,
//! attempts and dead letters, and replaying them.
//!
//! Secrets never appear in an answer, except a secret hookgate generated,
//! once, in the answer to the create or rotate call that generated it.

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::{json, Value};

use super::api::{authorize, MAX_LIMIT};
use super::error::ApiError;
use super::AppState;
use crate::clock::{from_unix_ms, rfc3339};
use crate::push::{format_delay, CreateRequest};
use crate::store::{MessageRecord, PushAttemptRecord, SubscriptionRecord, SubscriptionStatus};

const DEFAULT_LIMIT: u32 = 50;
/// Overlap of the old secret after a rotation, unless the call says.
const DEFAULT_OVERLAP_SECS: u64 = 24 * 3600;

fn time(ms: i64) -> String {
    rfc3339(from_unix_ms(ms))
}

fn subscription_json(state: &AppState, s: &SubscriptionRecord) -> Value {
    let now_ms = state.push.now();
    let previous_until = s
        .previous_secret
        .as_ref()
        .and(s.previous_until_ms)
        .filter(|until| *until > now_ms);
    json!({
        "name": s.name,
        "url": s.url,
        "types": s.types,
        "source": s.source,
        "status": s.status,
        "status_reason": s.status_reason,
        "managed_by": s.managed_by,
        "timeout_ms": s.timeout_ms,
        "retry_schedule": s.retry_schedule_ms.iter().map(|ms| format_delay(*ms)).collect::<Vec<_>>(),
        "allow_private_targets": s.allow_private,
        "disable_after_dead_letters": s.disable_after,
        "disable_after_failing_hours": s.disable_after_hours,
        "consecutive_dead_letters": s.consecutive_dead,
        "failing_since": s.failing_since_ms.map(time),
        "signing": {
            "v1": true,
            "v1a": state.push.signs_v1a(s),
            "previous_secret_signs_until": previous_until.map(time),
        },
        "created_at": time(s.created_at_ms),
        "updated_at": time(s.updated_at_ms),
    })
}

fn message_json(m: &MessageRecord) -> Value {
    json!({
        "id": m.id,
        "event_id": m.event_id,
        "event_seq": m.event_seq,
        "event_type": m.event_type,
        "entity": m.entity,
        "status": m.status,
        "attempts": m.attempts,
        "next_attempt_at": time(m.next_attempt_at_ms),
        "last_error": m.last_error,
        "created_at": time(m.created_at_ms),
        "updated_at": time(m.updated_at_ms),
    })
}

fn attempt_json(a: &PushAttemptRecord) -> Value {
    json!({
        "id": a.id,
        "message_id": a.message_id,
        "event_id": a.event_id,
        "attempt": a.attempt,
        "started_at": time(a.started_at_ms),
        "finished_at": time(a.finished_at_ms),
        "status_code": a.status_code,
        "latency_ms": a.latency_ms,
        "response_body": a.response_body,
        "error": a.error,
        "outcome": a.outcome,
    })
}

async fn found(state: &AppState, name: &str) -> Result<SubscriptionRecord, ApiError> {
    state
        .store
        .get_subscription(name)
        .await?
        .ok_or_else(|| ApiError::NotFound("no such subscription".into()))
}

/// `GET /v1/admin/subscriptions`.
pub async fn list(req: HttpRequest, state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let subs = state.store.list_subscriptions().await?;
    Ok(HttpResponse::Ok().json(json!({
        "subscriptions": subs.iter().map(|s| subscription_json(&state, s)).collect::<Vec<_>>(),
    })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateBody {
    name: String,
    url: String,
    types: Vec<String>,
    source: Option<String>,
    /// A `whsec_…` secret; generated (and returned once) when absent.
    secret: Option<SecretString>,
    /// A `whsk_…` Ed25519 key: adds a `v1a` signature.
    signing_key: Option<SecretString>,
    timeout_ms: Option<u64>,
    retry_schedule: Option<Vec<String>>,
    #[serde(default)]
    allow_private_targets: bool,
    disable_after_dead_letters: Option<u32>,
    disable_after_failing_hours: Option<u32>,
}

/// `POST /v1/admin/subscriptions`: 201 with the subscription, and
/// `secret` when hookgate generated it.
pub async fn create(
    req: HttpRequest,
    body: web::Json<CreateBody>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let body = body.into_inner();
    let (record, generated) = state
        .push
        .create(CreateRequest {
            name: body.name,
            url: body.url,
            types: body.types,
            source: body.source,
            secret: body.secret,
            signing_key: body.signing_key,
            timeout_ms: body.timeout_ms,
            retry_schedule: body.retry_schedule,
            allow_private_targets: body.allow_private_targets,
            disable_after_dead_letters: body.disable_after_dead_letters,
            disable_after_failing_hours: body.disable_after_failing_hours,
        })
        .await?;
    let mut answer = subscription_json(&state, &record);
    if let Some(secret) = generated {
        answer["secret"] = json!(secret.expose_secret());
    }
    Ok(HttpResponse::Created().json(answer))
}

/// `GET /v1/admin/subscriptions/{name}`, with its message counts.
pub async fn get(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let sub = found(&state, &name).await?;
    Ok(HttpResponse::Ok().json(subscription_json(&state, &sub)))
}

/// `DELETE /v1/admin/subscriptions/{name}`: with its messages and attempts.
pub async fn delete(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    state.push.delete(&name).await?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /v1/admin/subscriptions/{name}/pause`: messages queue up.
pub async fn pause(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let sub = state
        .push
        .set_status(&name, SubscriptionStatus::Paused)
        .await?;
    Ok(HttpResponse::Ok().json(subscription_json(&state, &sub)))
}

/// `POST /v1/admin/subscriptions/{name}/resume`: also after an automatic
/// disable; the backlog goes out in order.
pub async fn resume(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let sub = state
        .push
        .set_status(&name, SubscriptionStatus::Active)
        .await?;
    Ok(HttpResponse::Ok().json(subscription_json(&state, &sub)))
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct RotateBody {
    /// The new `whsec_…` secret; generated (and returned once) when absent.
    secret: Option<SecretString>,
    /// How long the old secret keeps signing too (default 24 h; 0 = stop
    /// at once).
    overlap_secs: Option<u64>,
}

/// `POST /v1/admin/subscriptions/{name}/rotate-secret`.
pub async fn rotate(
    req: HttpRequest,
    name: web::Path<String>,
    body: web::Bytes,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    // No body means the defaults; a body that doesn't parse is refused
    // (a misspelt field must not rotate to a generated secret instead).
    let body: RotateBody = if body.iter().all(u8::is_ascii_whitespace) {
        RotateBody::default()
    } else {
        serde_json::from_slice(&body)
            .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {e}")))?
    };
    let (sub, generated) = state
        .push
        .rotate(
            &name,
            body.secret,
            body.overlap_secs.unwrap_or(DEFAULT_OVERLAP_SECS),
        )
        .await?;
    let mut answer = subscription_json(&state, &sub);
    if let Some(secret) = generated {
        answer["secret"] = json!(secret.expose_secret());
    }
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MessagesQuery {
    /// `pending`, `delivering`, `failed`, `delivered` or `dead`.
    status: Option<String>,
    limit: Option<u32>,
    /// `next_cursor` of the page before.
    cursor: Option<String>,
}

const MESSAGE_STATUSES: [&str; 5] = ["pending", "delivering", "failed", "delivered", "dead"];

fn cursor(c: Option<&str>) -> Result<Option<i64>, ApiError> {
    match c.filter(|c| !c.is_empty()) {
        None => Ok(None),
        Some(c) => c
            .parse::<i64>()
            .map(Some)
            .map_err(|_| ApiError::BadRequest(format!("invalid cursor {c:?}"))),
    }
}

async fn messages_page(
    state: &AppState,
    name: &str,
    status: Option<&str>,
    query: &MessagesQuery,
) -> Result<HttpResponse, ApiError> {
    found(state, name).await?;
    if let Some(s) = status {
        if !MESSAGE_STATUSES.contains(&s) {
            return Err(ApiError::BadRequest(format!(
                "unknown status {s:?} (one of {})",
                MESSAGE_STATUSES.join(", ")
            )));
        }
    }
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let mut rows = state
        .store
        .list_messages(name, status, cursor(query.cursor.as_deref())?, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|m| m.event_seq.to_string());
    Ok(HttpResponse::Ok().json(json!({
        "messages": rows.iter().map(message_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}

/// `GET /v1/admin/subscriptions/{name}/messages?status=`: newest first.
pub async fn messages(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<MessagesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let status = query.status.clone().filter(|s| !s.is_empty());
    messages_page(&state, &name, status.as_deref(), &query).await
}

/// `GET /v1/admin/subscriptions/{name}/dead-letters`.
pub async fn dead_letters(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<MessagesQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    if query.status.is_some() {
        return Err(ApiError::BadRequest(
            "dead letters are the dead messages; use /messages?status= for others".into(),
        ));
    }
    messages_page(&state, &name, Some("dead"), &query).await
}

/// `POST /v1/admin/subscriptions/{name}/dead-letters/replay`: every dead
/// letter of the subscription, with a fresh attempt budget.
pub async fn replay_all(
    req: HttpRequest,
    name: web::Path<String>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let count = state.push.replay(&name, None).await?;
    Ok(HttpResponse::Accepted().json(json!({ "count": count })))
}

/// `POST /v1/admin/subscriptions/{name}/dead-letters/{id}/replay`.
pub async fn replay_one(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let (name, id) = path.into_inner();
    if state.push.replay(&name, Some(&id)).await? == 0 {
        return Err(ApiError::Conflict(
            "no dead letter with this id in this subscription".into(),
        ));
    }
    Ok(HttpResponse::Accepted().json(json!({ "id": id, "status": "pending" })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttemptsQuery {
    message_id: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

/// `GET /v1/admin/subscriptions/{name}/attempts?message_id=`: every HTTP
/// attempt, newest first.
pub async fn attempts(
    req: HttpRequest,
    name: web::Path<String>,
    query: web::Query<AttemptsQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    found(&state, &name).await?;
    let limit = query.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let message = query.message_id.as_deref().filter(|m| !m.is_empty());
    let mut rows = state
        .store
        .list_push_attempts(&name, message, cursor(query.cursor.as_deref())?, limit + 1)
        .await?;
    let more = rows.len() > limit as usize;
    rows.truncate(limit as usize);
    let next = more
        .then(|| rows.last())
        .flatten()
        .map(|a| a.id.to_string());
    Ok(HttpResponse::Ok().json(json!({
        "attempts": rows.iter().map(attempt_json).collect::<Vec<_>>(),
        "next_cursor": next,
    })))
}
