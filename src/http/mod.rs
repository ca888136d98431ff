//! HTTP: actix-web routes over the ingest pipeline, the consumer API, the
//! operator API (`admin`), the dashboard (`ui`, HTML over `admin`) and health checks. This layer issues no SQL and owns no business rule; it
//! turns requests into typed calls and results into responses
//! (`error.rs` maps every error in one place).

pub mod admin;
pub mod api;
pub mod error;
pub mod ingress;
pub mod stream;
pub mod subscriptions;
pub mod ui;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use secrecy::SecretString;

use crate::catalog::Catalog;
use crate::ingest::Ingestor;
use crate::store::DynStore;
use error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub ingestor: Ingestor,
    pub store: DynStore,
    pub catalog: Arc<Catalog>,
    /// Which provider events produce each catalog type (`GET /v1/catalog`).
    pub catalog_sources: Arc<crate::catalog::docs::Sources>,
    /// Push subscriptions: the operator actions that need more than a
    /// store call (validation, secrets, waking the dispatcher).
    pub push: Arc<crate::push::Push>,
    pub api_tokens: Vec<SecretString>,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// How long a webhook body may take to arrive (`server.body_timeout_ms`).
    pub body_timeout: std::time::Duration,
    /// Signalled (to every waiter) when catalog events commit, here or, on
    /// PostgreSQL, on another instance: wakes `/v1/events/stream`.
    pub events_wake: Arc<tokio::sync::Notify>,
    pub stream_keepalive: std::time::Duration,
}

/// Route patterns whose handlers `authorize` a bearer token first.
const TOKEN_ROUTES: [&str; 3] = ["/v1/admin/", "/v1/events", "/v1/catalog"];

/// An extractor's refusal. Extractors run before the handler's
/// `authorize`, so on a route that needs a token, a caller without a valid
/// one gets the 401, not a 400 describing the query or body it should send.
fn malformed(req: &HttpRequest, message: String) -> actix_web::Error {
    let needs_token = req
        .match_pattern()
        .is_some_and(|p| TOKEN_ROUTES.iter().any(|prefix| p.starts_with(prefix)));
    let state = req.app_data::<web::Data<AppState>>();
    match state {
        Some(state) if needs_token && api::authorize(req, state).is_err() => {
            ApiError::Unauthorized.into()
        }
        _ => ApiError::BadRequest(message).into(),
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.app_data(
        web::QueryConfig::default()
            .error_handler(|e, req| malformed(req, format!("invalid query: {e}"))),
    )
    .app_data(
        web::JsonConfig::default()
            .error_handler(|e, req| malformed(req, format!("invalid JSON body: {e}"))),
    )
    .app_data(
        web::PathConfig::default()
            .error_handler(|e, req| malformed(req, format!("invalid path: {e}"))),
    )
    .service(
        web::resource("/v1/webhooks/{source}")
            .route(web::post().to(ingress::receive))
            .route(web::get().to(ingress::challenge))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/webhooks/{source}/{token}")
            .route(web::post().to(ingress::receive_with_token))
            .default_service(web::to(method_not_allowed)),
    )
    .route("/v1/events", web::get().to(api::list_events))
    // Before `{id}`, which would take "stream" for an event id.
    .route("/v1/events/stream", web::get().to(stream::stream_events))
    .route("/v1/events/{id}", web::get().to(api::get_event))
    .route("/v1/catalog", web::get().to(api::catalog))
    // The fixed paths before `{id}`: a resource answers 405 for a method it
    // lacks instead of passing the request on.
    .route(
        "/v1/admin/deliveries",
        web::get().to(admin::list_deliveries),
    )
    .route(
        "/v1/admin/deliveries/replay",
        web::post().to(admin::replay_matching),
    )
    .route(
        "/v1/admin/deliveries/release",
        web::post().to(admin::release_matching),
    )
    .route(
        "/v1/admin/deliveries/{id}",
        web::get().to(admin::get_delivery),
    )
    .route(
        "/v1/admin/deliveries/{id}/replay",
        web::post().to(admin::replay_delivery),
    )
    .route(
        "/v1/admin/deliveries/{id}/release",
        web::post().to(admin::release_delivery),
    )
    .route(
        "/v1/admin/deliveries/{id}/discard",
        web::post().to(admin::discard_delivery),
    )
    .route(
        "/v1/admin/rejections",
        web::get().to(admin::list_rejections),
    )
    .route(
        "/v1/admin/rejections/{id}",
        web::get().to(admin::get_rejection),
    )
    .configure(ui::routes)
    .service(
        web::resource("/v1/admin/subscriptions")
            .route(web::get().to(subscriptions::list))
            .route(web::post().to(subscriptions::create))
            .default_service(web::to(method_not_allowed)),
    )
    .service(
        web::resource("/v1/admin/subscriptions/{name}")
            .route(web::get().to(subscriptions::get))
            .route(web::delete().to(subscriptions::delete))
            .default_service(web::to(method_not_allowed)),
    )
    .route(
        "/v1/admin/subscriptions/{name}/pause",
        web::post().to(subscriptions::pause),
    )
    .route(
        "/v1/admin/subscriptions/{name}/resume",
        web::post().to(subscriptions::resume),
    )
    .route(
        "/v1/admin/subscriptions/{name}/rotate-secret",
        web::post().to(subscriptions::rotate),
    )
    .route(
        "/v1/admin/subscriptions/{name}/messages",
        web::get().to(subscriptions::messages),
    )
    .route(
        "/v1/admin/subscriptions/{name}/attempts",
        web::get().to(subscriptions::attempts),
    )
    .route(
        "/v1/admin/subscriptions/{name}/dead-letters",
        web::get().to(subscriptions::dead_letters),
    )
    .route(
        "/v1/admin/subscriptions/{name}/dead-letters/replay",
        web::post().to(subscriptions::replay_all),
    )
    .route(
        "/v1/admin/subscriptions/{name}/dead-letters/{id}/replay",
        web::post().to(subscriptions::replay_one),
    )
    .route("/metrics", web::get().to(api::metrics))
    .route("/healthz", web::get().to(api::healthz))
    .route("/readyz", web::get().to(api::readyz));
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let _ = req;
    Err(ApiError::NotFound("no such route".into()))
}
