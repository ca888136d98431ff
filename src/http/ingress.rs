//! `POST /v1/webhooks/{source}[/{token}]`: read the raw body within the
//! source's limit, hand it to the ingest pipeline, answer per the contract.
//! Every refusal is audited before it is answered; the body only for an
//! authentic request refused for its payload.

use std::net::IpAddr;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use futures_util::StreamExt;
use serde_json::json;
use tracing::Instrument;

use super::error::ApiError;
use super::AppState;
use crate::ingest::{Inbound, IngestError, Outcome, Source};
use crate::store::Inserted;
use crate::telemetry::metrics as m;
use crate::verify::Headers;

pub async fn receive(
    req: HttpRequest,
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    handle(req, path.into_inner(), None, payload, state).await
}

pub async fn receive_with_token(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (source, token) = path.into_inner();
    handle(req, source, Some(token), payload, state).await
}

async fn handle(
    req: HttpRequest,
    source_name: String,
    token: Option<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let started = std::time::Instant::now();
    let client = client_ip(&req, &state.trusted_proxies);
    let remote = client.map(|ip| ip.to_string());
    // Only configured names become label values.
    let label = match state.ingestor.source(&source_name) {
        Some(s) => s.name.clone(),
        None => "unknown".to_string(),
    };
    metrics::counter!(m::RECEIVED, "source" => label.clone()).increment(1);
    // The request's span carries what the worker's `process` span carries
    // (source, provider, provider event id, hookgate delivery id); the ids
    // are recorded once the commit returned them. A batch records its
    // count, and each delivery's "delivery stored" event names its ids.
    let span = tracing::info_span!(
        "ingress",
        source = %source_name,
        provider = tracing::field::Empty,
        provider_event_id = tracing::field::Empty,
        delivery_id = tracing::field::Empty,
        deliveries = tracing::field::Empty,
        outcome = tracing::field::Empty,
    );
    if let Some(source) = state.ingestor.source(&source_name) {
        span.record("provider", source.provider.name.as_str());
    }
    let result = run(
        &req,
        client,
        &source_name,
        token.as_deref(),
        payload,
        &state,
    )
    .instrument(span.clone())
    .await;
    match result {
        Ok(outcome) => {
            let (deliveries, quarantined) = match &outcome {
                Outcome::Accepted { deliveries, .. } => (deliveries, false),
                Outcome::Quarantined { deliveries, .. } => (deliveries, true),
            };
            span.record("deliveries", deliveries.len());
            if let [only] = deliveries.as_slice() {
                span.record("provider_event_id", only.provider_event_id.as_str());
                span.record("delivery_id", only.id.as_str());
            }
            let verdict = match (quarantined, deliveries.iter().all(|d| d.duplicate)) {
                (true, _) => "quarantined",
                (false, true) if !deliveries.is_empty() => "duplicate",
                _ => "accepted",
            };
            span.record("outcome", verdict);
            for d in deliveries {
                let name = match (d.duplicate, quarantined) {
                    (true, _) => m::DUPLICATE,
                    (false, true) => m::QUARANTINED,
                    (false, false) => m::ACCEPTED,
                };
                metrics::counter!(name, "source" => label.clone()).increment(1);
            }
            metrics::histogram!(m::INGEST_SECONDS, "source" => label)
                .record(started.elapsed().as_secs_f64());
            Ok(respond(outcome))
        }
        Err(Refused { error: e, body }) => {
            span.record("outcome", e.code());
            span.in_scope(|| tracing::info!(code = e.code(), "request refused"));
            metrics::counter!(m::REJECTED, "source" => label, "reason" => e.code()).increment(1);
            state
                .ingestor
                .record_rejection(&source_name, &e, remote, body);
            Err(e.into())
        }
    }
}

/// A refused request: why, and its body once it was read (the rejection
/// log decides whether to keep it).
struct Refused {
    error: IngestError,
    body: Option<Vec<u8>>,
}

impl From<IngestError> for Refused {
    fn from(error: IngestError) -> Refused {
        Refused { error, body: None }
    }
}

async fn run(
    req: &HttpRequest,
    client: Option<IpAddr>,
    source_name: &str,
    token: Option<&str>,
    payload: web::Payload,
    state: &AppState,
) -> Result<Outcome, Refused> {
    let content_type = req
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok());
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let source = state
        .ingestor
        .preflight(source_name, client, content_type, content_length)?;
    // A token segment only exists for sources that authenticate by it (one
    // that does, called without it, fails verification as unsigned).
    if token.is_some() && !uses_path_token(&source) {
        return Err(IngestError::UnknownSource.into());
    }
    let body = read_body(payload, source.max_body_bytes, state.body_timeout).await?;
    let mut headers = Headers::new();
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            headers.push(name.as_str(), v);
        }
    }
    let path_and_query = req
        .uri()
        .path_and_query()
        .map_or_else(|| req.path().to_owned(), |p| p.as_str().to_owned());
    let url = source.public_url.resolve(
        &path_and_query,
        rebuilt_url(req, &state.trusted_proxies, &path_and_query),
    );
    let inbound = Inbound {
        headers,
        body: &body,
        path_token: token,
        remote_addr: client.map(|ip| ip.to_string()),
        url,
    };
    match state.ingestor.ingest(&source, inbound).await {
        Ok(outcome) => Ok(outcome),
        Err(error) => Err(Refused {
            error,
            body: Some(body),
        }),
    }
}

/// The sender's address: the peer, or — when the peer is a trusted proxy —
/// the right-most `X-Forwarded-For` entry that isn't one (entries further
/// left are the client's own claims and can be forged).
fn client_ip(req: &HttpRequest, trusted: &[ipnet::IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr()?.ip();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|n| n.contains(ip));
    if !is_trusted(&peer) {
        return Some(peer);
    }
    let mut hops: Vec<IpAddr> = Vec::new();
    for value in req.headers().get_all("x-forwarded-for") {
        let Ok(v) = value.to_str() else {
            return Some(peer);
        };
        for part in v.split(',') {
            match part.trim().parse::<IpAddr>() {
                Ok(ip) => hops.push(ip),
                Err(_) => return Some(peer),
            }
        }
    }
    Some(
        hops.into_iter()
            .rev()
            .find(|ip| !is_trusted(ip))
            .unwrap_or(peer),
    )
}

/// The URL the sender called, as far as the request tells: scheme and host
/// from `X-Forwarded-Proto` / `X-Forwarded-Host` when the peer is a trusted
/// proxy, else `http` and the `Host` header.
fn rebuilt_url(
    req: &HttpRequest,
    trusted: &[ipnet::IpNet],
    path_and_query: &str,
) -> Option<String> {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let via_proxy = req
        .peer_addr()
        .is_some_and(|p| trusted.iter().any(|n| n.contains(&p.ip())));
    let scheme = via_proxy
        .then(|| header("x-forwarded-proto"))
        .flatten()
        .unwrap_or_else(|| "http".into());
    let host = via_proxy
        .then(|| header("x-forwarded-host"))
        .flatten()
        .or_else(|| header("host"))?;
    Some(format!("{scheme}://{host}{path_and_query}"))
}

fn uses_path_token(source: &Source) -> bool {
    matches!(source.scheme, crate::verify::SchemeConfig::PathToken(_))
}

#[derive(serde::Deserialize)]
pub struct ChallengeQuery {
    bt_challenge: Option<String>,
}

/// `GET /v1/webhooks/{source}?bt_challenge=…`: the handshake a sender
/// makes before it sends anything (Braintree), answered with the source's
/// key. Nothing is stored; other GETs are 405 as before.
pub async fn challenge(
    req: HttpRequest,
    path: web::Path<String>,
    query: web::Query<ChallengeQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let client = client_ip(&req, &state.trusted_proxies);
    let source = state
        .ingestor
        .source(&path)
        .ok_or(IngestError::UnknownSource)?;
    if !source.allow_ips.is_empty()
        && !client.is_some_and(|ip| source.allow_ips.iter().any(|n| n.contains(&ip)))
    {
        return Err(IngestError::ForbiddenAddress.into());
    }
    let Some(challenge) = query.bt_challenge.as_deref() else {
        return Err(ApiError::MethodNotAllowed);
    };
    match source.verifier.challenge(challenge) {
        Some(answer) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(answer)),
        None if matches!(source.scheme, crate::verify::SchemeConfig::Braintree(_)) => Err(
            ApiError::BadRequest("bt_challenge must be 20 to 32 lowercase hex digits".into()),
        ),
        None => Err(ApiError::MethodNotAllowed),
    }
}

/// The body as sent, cut off as soon as it passes the limit (chunked bodies
/// have no Content-Length to check up front), and given up on when it has
/// not arrived in full within `timeout` (a slow sender holds no more than
/// that).
async fn read_body(
    mut payload: web::Payload,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Vec<u8>, IngestError> {
    let read = async {
        let mut body = Vec::new();
        while let Some(chunk) = payload.next().await {
            let chunk = chunk
                .map_err(|e| IngestError::InvalidBody(format!("could not read the body: {e}")))?;
            if body.len() + chunk.len() > limit {
                return Err(IngestError::PayloadTooLarge { limit });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(body)
    };
    tokio::time::timeout(timeout, read)
        .await
        .unwrap_or(Err(IngestError::BodyTimeout {
            timeout_ms: timeout.as_millis() as u64,
        }))
}

fn delivery_json(d: &Inserted) -> serde_json::Value {
    json!({ "id": d.id, "provider_event_id": d.provider_event_id, "duplicate": d.duplicate })
}

fn respond(outcome: Outcome) -> HttpResponse {
    let (status, deliveries, batch, violations, reply) = match outcome {
        Outcome::Accepted {
            deliveries,
            batch,
            reply,
        } => ("accepted", deliveries, batch, None, reply),
        Outcome::Quarantined {
            deliveries,
            batch,
            violations,
            reply,
        } => ("quarantined", deliveries, batch, Some(violations), reply),
    };
    // The sender's own protocol wins over our JSON (still a 200 after the
    // commit); the delivery ids, and whether they were all duplicates, are
    // in headers for operators.
    if let Some(reply) = reply {
        let ids: Vec<&str> = deliveries.iter().map(|d| d.id.as_str()).collect();
        let duplicate = !deliveries.is_empty() && deliveries.iter().all(|d| d.duplicate);
        return HttpResponse::Ok()
            .content_type(reply.content_type)
            .insert_header(("hookgate-delivery-ids", ids.join(",")))
            .insert_header(("hookgate-status", status))
            .insert_header((
                "hookgate-duplicate",
                if duplicate { "true" } else { "false" },
            ))
            .body(reply.body);
    }
    let mut body = if batch {
        json!({ "status": status, "deliveries": deliveries.iter().map(delivery_json).collect::<Vec<_>>() })
    } else {
        match deliveries.first() {
            Some(d) => json!({ "status": status, "id": d.id, "duplicate": d.duplicate }),
            None => json!({ "status": status }),
        }
    };
    if let Some(v) = violations {
        body["violations"] = json!(v);
    }
    HttpResponse::Ok().json(body)
}
