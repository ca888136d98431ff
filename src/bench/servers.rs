//! The comparison servers of `hookgate bench` (run as `hookgate
//! bench-server`, a child process like the gateway, so that every stage is
//! measured the same way): a bare actix-web server that answers 200 after
//! reading the body (the ceiling), and two that stop the gateway's work
//! part-way — after the signature check, and after the schema check and
//! event-id extraction — built from the library's own pieces. They never
//! touch storage.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

use crate::catalog::Catalog;
use crate::config::{ProcessEnv, Settings};
use crate::ingest::{build_sources, Source};
use crate::providers::Registry;
use crate::verify::{Headers, RequestView};

/// How far a comparison server goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ServerKind {
    /// Read the body, answer 200.
    Ceiling,
    /// + verify the signature on the raw bytes.
    Verify,
    /// + parse, validate against the provider's schema, extract the event id.
    Schema,
}

struct State {
    kind: ServerKind,
    sources: std::collections::HashMap<String, Arc<Source>>,
}

/// Bind, print the same "listening" line as `hookgate serve`, serve until
/// killed.
pub async fn serve(kind: ServerKind, settings: Settings, workers: usize) -> anyhow::Result<()> {
    let sources = if kind == ServerKind::Ceiling {
        Default::default()
    } else {
        let catalog = Catalog::load(&settings.paths.catalog)?;
        let registry = Registry::load(&settings.paths.providers, &catalog)?;
        build_sources(&settings, &registry, &ProcessEnv)?
    };
    let state = web::Data::new(State { kind, sources });
    let listener = TcpListener::bind(&settings.server.listen)?;
    let port = listener.local_addr()?.port();
    let limit = settings.server.max_body_bytes;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(web::PayloadConfig::new(limit))
            .route("/v1/webhooks/{source}", web::post().to(handle))
    })
    .workers(workers.max(1))
    .listen(listener)?
    .run();
    println!("hookgate listening on http://127.0.0.1:{port}");
    server.await?;
    Ok(())
}

async fn handle(
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
    state: web::Data<State>,
) -> HttpResponse {
    if state.kind == ServerKind::Ceiling {
        return HttpResponse::Ok().json(serde_json::json!({ "status": "accepted" }));
    }
    let Some(source) = state.sources.get(path.as_str()) else {
        return HttpResponse::NotFound().finish();
    };
    let mut headers = Headers::new();
    for (name, value) in req.headers() {
        if let Ok(v) = value.to_str() {
            headers.push(name.as_str(), v);
        }
    }
    let view = RequestView {
        headers: &headers,
        body: &body,
        path_token: None,
        url: None,
    };
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    if source.verifier.verify(&view, now).is_err() {
        return HttpResponse::Unauthorized().finish();
    }
    if state.kind == ServerKind::Schema {
        let Ok(payload) = serde_json::from_slice::<serde_json::Value>(&body) else {
            return HttpResponse::BadRequest().finish();
        };
        let provider = &source.provider;
        if !provider.schema_violations(&payload).is_empty() {
            return HttpResponse::UnprocessableEntity().finish();
        }
        match provider.extract(&payload, &body, &headers, false) {
            Ok(events) => {
                return HttpResponse::Ok().json(serde_json::json!({
                    "status": "accepted",
                    "id": events.first().map(|e| e.provider_event_id.as_str()),
                }))
            }
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    }
    HttpResponse::Ok().json(serde_json::json!({ "status": "accepted" }))
}
