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

use actix_web::{web, HttpResponse};
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

/// An extractor's refusal: the query, body or path it could not read.
/// On the token-protected routes the token was checked before (see
/// `require_token`), so this never tells a caller without one what the
/// route expects.
fn malformed(message: String) -> actix_web::Error {
    ApiError::BadRequest(message).into()
}

/// The bearer-token check of the consumer and operator APIs, as
/// middleware on their scopes: it runs before routing inside the scope and
/// before any extractor, so a caller without a valid token gets 401 and
/// nothing else (not a 400 describing the query or body, nor 404/405
/// telling which routes exist), and a route added to a scope is protected
/// without doing anything. Handlers keep their own `authorize` call as a
/// second line.
async fn require_token(
    req: actix_web::dev::ServiceRequest,
    next: actix_web::middleware::Next<actix_web::body::BoxBody>,
) -> Result<actix_web::dev::ServiceResponse<actix_web::body::BoxBody>, actix_web::Error> {
    let authorized = req
        .app_data::<web::Data<AppState>>()
        .is_some_and(|state| api::authorize(req.request(), state).is_ok());
    if !authorized {
        return Err(ApiError::Unauthorized.into());
    }
    next.call(req).await
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    use actix_web::middleware::from_fn;
    cfg.app_data(
        web::QueryConfig::default().error_handler(|e, _| malformed(format!("invalid query: {e}"))),
    )
    .app_data(
        web::JsonConfig::default()
            .error_handler(|e, _| malformed(format!("invalid JSON body: {e}"))),
    )
    .app_data(
        web::PathConfig::default().error_handler(|e, _| malformed(format!("invalid path: {e}"))),
    )
    .service(
        resource("/v1/webhooks/{source}", web::post().to(ingress::receive))
            .route(web::get().to(ingress::challenge)),
    )
    .service(resource(
        "/v1/webhooks/{source}/{token}",
        web::post().to(ingress::receive_with_token),
    ))
    .service(
        web::scope("/v1/events")
            .wrap(from_fn(require_token))
            .service(resource("", web::get().to(api::list_events)))
            // Before `{id}`, which would take "stream" for an event id.
            .service(resource("/stream", web::get().to(stream::stream_events)))
            .service(resource("/{id}", web::get().to(api::get_event))),
    )
    .service(resource("/v1/catalog", web::get().to(api::catalog)).wrap(from_fn(require_token)))
    .service(
        web::scope("/v1/admin")
            .wrap(from_fn(require_token))
            // The fixed paths before `{id}`: a resource answers 405 for a
            // method it lacks instead of passing the request on.
            .service(resource(
                "/deliveries",
                web::get().to(admin::list_deliveries),
            ))
            .service(resource(
                "/deliveries/replay",
                web::post().to(admin::replay_matching),
            ))
            .service(resource(
                "/deliveries/release",
                web::post().to(admin::release_matching),
            ))
            .service(resource(
                "/deliveries/{id}",
                web::get().to(admin::get_delivery),
            ))
            .service(resource(
                "/deliveries/{id}/replay",
                web::post().to(admin::replay_delivery),
            ))
            .service(resource(
                "/deliveries/{id}/release",
                web::post().to(admin::release_delivery),
            ))
            .service(resource(
                "/deliveries/{id}/discard",
                web::post().to(admin::discard_delivery),
            ))
            .service(resource(
                "/rejections",
                web::get().to(admin::list_rejections),
            ))
            .service(resource(
                "/rejections/{id}",
                web::get().to(admin::get_rejection),
            ))
            .service(
                resource("/subscriptions", web::get().to(subscriptions::list))
                    .route(web::post().to(subscriptions::create)),
            )
            .service(
                resource("/subscriptions/{name}", web::get().to(subscriptions::get))
                    .route(web::delete().to(subscriptions::delete)),
            )
            .service(resource(
                "/subscriptions/{name}/pause",
                web::post().to(subscriptions::pause),
            ))
            .service(resource(
                "/subscriptions/{name}/resume",
                web::post().to(subscriptions::resume),
            ))
            .service(resource(
                "/subscriptions/{name}/rotate-secret",
                web::post().to(subscriptions::rotate),
            ))
            .service(resource(
                "/subscriptions/{name}/messages",
                web::get().to(subscriptions::messages),
            ))
            .service(resource(
                "/subscriptions/{name}/attempts",
                web::get().to(subscriptions::attempts),
            ))
            .service(resource(
                "/subscriptions/{name}/dead-letters",
                web::get().to(subscriptions::dead_letters),
            ))
            .service(resource(
                "/subscriptions/{name}/dead-letters/replay",
                web::post().to(subscriptions::replay_all),
            ))
            .service(resource(
                "/subscriptions/{name}/dead-letters/{id}/replay",
                web::post().to(subscriptions::replay_one),
            ))
            .default_service(web::to(not_found)),
    )
    .configure(ui::routes)
    .route("/metrics", web::get().to(api::metrics))
    .route("/healthz", web::get().to(api::healthz))
    .route("/readyz", web::get().to(api::readyz));
}

/// A resource at `path` answering `route` (chain `.route()` for more
/// methods): any other method is a 405 (a bare `App::route` would fall
/// through to the next route, then to 404).
pub(crate) fn resource(path: &str, route: actix_web::Route) -> actix_web::Resource {
    web::resource(path)
        .route(route)
        .default_service(web::to(method_not_allowed))
}

async fn method_not_allowed() -> Result<HttpResponse, ApiError> {
    Err(ApiError::MethodNotAllowed)
}

pub async fn not_found() -> Result<HttpResponse, ApiError> {
    Err(ApiError::NotFound("no such route".into()))
}
