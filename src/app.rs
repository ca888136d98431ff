//! Start-up: settings → catalog → provider definitions → sources → store →
//! ingest pipeline, queue workers and HTTP server. The listener is bound
//! before anything is served, `port()` tells which port it got, and the app
//! runs until its server stops (a signal, or `stop()`), then stops the
//! workers and closes the store.

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{web, App, HttpServer};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::bus::nats::NatsSink;
use crate::bus::Publisher;
use crate::catalog::{Catalog, CatalogError};
use crate::clock::{Clock, SystemClock};
use crate::config::{resolve_secret, ProcessEnv, SecretEnv, Settings};
use crate::http::{self, AppState};
use crate::ingest::{build_sources, Ingestor, SourceError};
use crate::providers::{LoadError, Registry};
use crate::push::Push;
use crate::queue::Processor;
use crate::retention::Retention;
use crate::store::{self, DynStore, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("catalog: {0}")]
    Catalog(#[from] CatalogError),
    #[error("provider definition: {0}")]
    Provider(#[from] LoadError),
    #[error("config: {0}")]
    Source(#[from] SourceError),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("bus: {0}")]
    Bus(String),
    #[error("subscriptions: {0}")]
    Push(String),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: String,
        source: std::io::Error,
    },
}

/// What a test (or an embedding program) may swap.
pub struct Options {
    pub clock: Arc<dyn Clock>,
    pub env: Arc<dyn SecretEnv>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            clock: Arc::new(SystemClock),
            env: Arc::new(ProcessEnv),
        }
    }
}

/// Everything `hookgate check` verifies, without opening storage or binding.
pub struct Loaded {
    pub catalog: Arc<Catalog>,
    pub registry: Arc<Registry>,
    pub sources: usize,
    pub subscriptions: usize,
}

pub fn load_definitions(settings: &Settings, env: &dyn SecretEnv) -> Result<Loaded, StartupError> {
    let catalog = Arc::new(Catalog::load(&settings.paths.catalog)?);
    let registry = Arc::new(Registry::load(&settings.paths.providers, &catalog)?);
    let sources = build_sources(settings, &registry, env)?;
    let subscriptions = crate::push::check_subscriptions(&settings.subscriptions, env)
        .map_err(StartupError::Push)?;
    Ok(Loaded {
        catalog,
        registry,
        sources: sources.len(),
        subscriptions,
    })
}

pub struct Application {
    port: u16,
    server: actix_web::dev::Server,
    store: DynStore,
    processor: Arc<Processor>,
    retention: Arc<Retention>,
    publisher: Option<Arc<Publisher>>,
    push: Arc<Push>,
    state: web::Data<AppState>,
    workers: Vec<JoinHandle<()>>,
    shutdown: watch::Sender<bool>,
}

impl Application {
    pub async fn build(settings: Settings, options: Options) -> Result<Application, StartupError> {
        let catalog = Arc::new(Catalog::load(&settings.paths.catalog)?);
        let registry = Arc::new(Registry::load(&settings.paths.providers, &catalog)?);
        let sources = build_sources(&settings, &registry, options.env.as_ref())?;
        let mut api_tokens = Vec::new();
        for (i, reference) in settings.api.tokens.iter().enumerate() {
            let field = format!("api.tokens[{i}]");
            api_tokens.push(
                resolve_secret(reference, &field, options.env.as_ref()).map_err(|e| {
                    SourceError {
                        field,
                        message: e.to_string(),
                    }
                })?,
            );
        }
        if api_tokens.is_empty() {
            tracing::warn!(
                "no [api] tokens configured: /v1/events and /v1/catalog refuse every call"
            );
        }

        crate::telemetry::metrics::handle();
        let store = store::open(&settings.storage.url).await?;
        let released = store
            .recover_leases(crate::clock::unix_ms(options.clock.now()))
            .await?;
        if released > 0 {
            tracing::info!(
                released,
                "released deliveries left processing by a previous run"
            );
        }
        let wake = Arc::new(Notify::new());
        let events_wake = Arc::new(Notify::new());
        store.listen(wake.clone(), events_wake.clone());
        let ingestor = Ingestor::new(
            sources,
            store.clone(),
            &settings.storage,
            options.clock.clone(),
            wake.clone(),
        );
        let catalog_sources = Arc::new(registry.catalog_sources());
        let processor = Arc::new(Processor::new(
            store.clone(),
            ingestor.committer().clone(),
            registry,
            catalog.clone(),
            options.clock.clone(),
            settings.queue.clone(),
            wake,
            events_wake.clone(),
        ));
        let (shutdown, shutdown_rx) = watch::channel(false);
        let mut workers = processor.spawn_workers(shutdown_rx.clone());
        workers.push(crate::telemetry::metrics::spawn_upkeep(shutdown_rx.clone()));
        let retention = Arc::new(Retention::new(
            store.clone(),
            options.clock.clone(),
            settings.retention.clone(),
        ));
        workers.extend(retention.clone().spawn(shutdown_rx.clone()));
        let instance = crate::ingest::new_id("inst", crate::clock::unix_ms(options.clock.now()));
        let push = Arc::new(
            Push::new(
                store.clone(),
                catalog.clone(),
                options.clock.clone(),
                settings.push.clone(),
                &settings.subscriptions,
                options.env.as_ref(),
                instance.clone(),
                events_wake.clone(),
            )
            .map_err(StartupError::Push)?,
        );
        push.upsert_config().await?;
        if settings.queue.workers > 0 {
            workers.extend(push.spawn(shutdown_rx.clone()));
        }
        let publisher = match &settings.bus.nats {
            Some(nats) => {
                let sink = NatsSink::connect(nats.clone())
                    .await
                    .map_err(|e| StartupError::Bus(e.to_string()))?;
                let publisher = Arc::new(Publisher::new(
                    store.clone(),
                    Arc::new(sink),
                    instance.clone(),
                    options.clock.clone(),
                    events_wake.clone(),
                    nats.batch,
                    std::time::Duration::from_millis(nats.max_backoff_ms),
                ));
                if settings.queue.workers > 0 {
                    workers.push(publisher.clone().spawn(shutdown_rx));
                }
                Some(publisher)
            }
            None => None,
        };

        let state = web::Data::new(AppState {
            body_timeout: std::time::Duration::from_millis(settings.server.body_timeout_ms),
            ingestor,
            store: store.clone(),
            catalog,
            catalog_sources,
            push: push.clone(),
            api_tokens,
            trusted_proxies: crate::config::parse_networks(
                &settings.server.trusted_proxies,
                "server.trusted_proxies",
            )
            .map_err(|e| SourceError {
                field: "server.trusted_proxies".into(),
                message: e.to_string(),
            })?,
            events_wake,
            stream_keepalive: std::time::Duration::from_secs(settings.api.stream_keepalive_secs),
        });
        let listener =
            TcpListener::bind(&settings.server.listen).map_err(|source| StartupError::Listen {
                addr: settings.server.listen.clone(),
                source,
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
        let server_state = state.clone();
        let mut server = HttpServer::new(move || {
            App::new()
                .app_data(server_state.clone())
                .configure(http::routes)
                .default_service(web::to(http::not_found))
        })
        .shutdown_timeout(30)
        .client_request_timeout(std::time::Duration::from_millis(
            settings.server.header_timeout_ms,
        ))
        .listen(listener)
        .map_err(|source| StartupError::Listen {
            addr: settings.server.listen.clone(),
            source,
        })?;
        if settings.server.http_workers > 0 {
            server = server.workers(settings.server.http_workers);
        }
        let server = server.run();
        Ok(Application {
            port,
            server,
            store,
            processor,
            retention,
            publisher,
            push,
            state,
            workers,
            shutdown,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn store(&self) -> DynStore {
        self.store.clone()
    }

    /// The queue, for driving it by hand (`drain`) in tests.
    pub fn processor(&self) -> Arc<Processor> {
        self.processor.clone()
    }

    /// The retention task, for running a pass by hand in tests.
    pub fn retention(&self) -> Arc<Retention> {
        self.retention.clone()
    }

    /// The bus publisher, when `[bus.nats]` is configured (tests drive it
    /// with `drain` when queue workers are off).
    pub fn publisher(&self) -> Option<Arc<Publisher>> {
        self.publisher.clone()
    }

    /// The push subscriptions' router and dispatcher (tests drive them with
    /// `drain` when queue workers are off).
    pub fn push(&self) -> Arc<Push> {
        self.push.clone()
    }

    /// Group-commit counters (commits vs. rows), for tests and benchmarks.
    pub fn ingestor_stats(&self) -> Arc<crate::store::group_commit::Stats> {
        self.state.ingestor.committer().stats()
    }

    /// A handle that stops the server gracefully (in-flight requests finish).
    pub fn server_handle(&self) -> actix_web::dev::ServerHandle {
        self.server.handle()
    }

    /// Serve until the server stops (SIGINT/SIGTERM or a handle), then stop
    /// the workers, let them finish their current delivery, close the store.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.shutdown.send(true);
        for w in self.workers {
            let _ = w.await;
        }
        self.store.close().await;
        result
    }
}
