//! The ingest pipeline, free of HTTP types: source lookup, limits, content
//! type, signature verification on the raw bytes, parsing, schema
//! validation, event-id extraction, and the durable idempotent insert
//! through the group committer. `http::ingress` adapts it to actix-web and
//! maps `IngestError` to status codes; nothing here knows a status code.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use secrecy::SecretString;
use serde_json::Value;
use tokio::sync::{mpsc, Notify};

use crate::clock::{unix_ms, Clock};
use crate::config::{resolve_secret, OnSchemaViolation, SecretEnv, Settings};
use crate::providers::reply::ProviderReply;
use crate::providers::{Provider, Registry, Violation};
use crate::store::group_commit::GroupCommitter;
use crate::store::{
    DeliveryStatus, DynStore, Inserted, NewDelivery, NewRequest, Rejection, StoreError,
};
use crate::verify::{
    Headers, KeyError, NoneConfig, RequestView, SchemeConfig, Verifier, VerifyError,
};

/// Where the URL a sender called comes from, for schemes that sign it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublicUrl {
    /// `sources[].public_url`: the whole URL, as given to the sender.
    Exact(String),
    /// `server.public_url`: the base, followed by the request's path and query.
    Base(String),
    /// Rebuilt from the request (Host, and forwarded headers from trusted proxies).
    FromRequest,
}

impl PublicUrl {
    /// The URL for a request to `path_and_query`, `rebuilt` being the URL
    /// the HTTP edge reconstructed from the request itself.
    pub fn resolve(&self, path_and_query: &str, rebuilt: Option<String>) -> Option<String> {
        match self {
            PublicUrl::Exact(url) => Some(url.clone()),
            PublicUrl::Base(base) => {
                Some(format!("{}{path_and_query}", base.trim_end_matches('/')))
            }
            PublicUrl::FromRequest => rebuilt,
        }
    }
}

/// The scheme a source authenticates with: its `auth` override (`"none"` or
/// a scheme table) or the provider's `[signature]`.
fn source_scheme(
    auth: Option<&Value>,
    provider: &Provider,
    field: &str,
) -> Result<SchemeConfig, SourceError> {
    let invalid = |message: String| SourceError {
        field: field.to_string(),
        message,
    };
    match auth {
        None => Ok(provider.scheme.clone()),
        Some(Value::String(s)) if s == "none" => Ok(SchemeConfig::None(NoneConfig {})),
        Some(Value::String(s)) => Err(invalid(format!(
            "{s:?}: give \"none\" or a table such as {{ scheme = \"basic\" }}"
        ))),
        Some(table) => serde_json::from_value::<SchemeConfig>(table.clone())
            .map_err(|e| invalid(format!("not a valid scheme table: {e}"))),
    }
}

/// A configured source: a provider definition plus this source's secrets.
pub struct Source {
    pub name: String,
    pub provider: Arc<Provider>,
    /// The provider's `[signature]`, or the source's `auth` override.
    pub scheme: SchemeConfig,
    pub verifier: Verifier,
    /// The exact URL senders call for this source (`sources[].public_url`),
    /// or the base URL before the path (`server.public_url`).
    pub public_url: PublicUrl,
    pub on_schema_violation: OnSchemaViolation,
    pub max_body_bytes: usize,
    /// Empty = any sender address.
    pub allow_ips: Vec<ipnet::IpNet>,
    pub rate_limit: Option<RateLimiter>,
}

/// A source's request budget (`sources[].rate_limit`), shared by every
/// HTTP worker of this process.
pub struct RateLimiter(governor::DefaultDirectRateLimiter);

impl RateLimiter {
    pub fn new(limit: &crate::config::RateLimit) -> RateLimiter {
        let period = std::time::Duration::from_secs_f64(1.0 / limit.per_second)
            .max(std::time::Duration::from_nanos(1));
        let burst = std::num::NonZeroU32::new(limit.burst).unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(burst);
        RateLimiter(governor::RateLimiter::direct(quota))
    }

    /// Take one request from the budget, or say how many whole seconds
    /// until one is free (at least 1, for `Retry-After`).
    pub fn check(&self) -> Result<(), u64> {
        use governor::clock::{Clock, DefaultClock};
        self.0.check().map_err(|not_until| {
            let wait = not_until.wait_time_from(DefaultClock::default().now());
            (wait.as_secs_f64().ceil() as u64).max(1)
        })
    }
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("name", &self.name)
            .field("provider", &self.provider.name)
            .field("verifier", &self.verifier)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{field}: {message}")]
pub struct SourceError {
    pub field: String,
    pub message: String,
}

/// Resolve every source's provider and secrets and build its verifier.
pub fn build_sources(
    settings: &Settings,
    registry: &Registry,
    env: &dyn SecretEnv,
) -> Result<HashMap<String, Arc<Source>>, SourceError> {
    let mut sources = HashMap::new();
    for (i, s) in settings.sources.iter().enumerate() {
        let provider = registry.get(&s.provider).ok_or_else(|| SourceError {
            field: format!("sources[{i}].provider"),
            message: format!(
                "unknown provider {:?} (known: {})",
                s.provider,
                registry
                    .iter()
                    .map(|p| p.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        let scheme = source_scheme(s.auth.as_ref(), provider, &format!("sources[{i}].auth"))?;
        let mut secrets: Vec<SecretString> = Vec::with_capacity(s.secrets.len());
        for (j, reference) in s.secrets.iter().enumerate() {
            let field = format!("sources[{i}].secrets[{j}]");
            secrets.push(
                resolve_secret(reference, &field, env).map_err(|e| SourceError {
                    field: field.clone(),
                    message: e.to_string(),
                })?,
            );
        }
        if secrets.is_empty() && scheme.needs_secrets() {
            return Err(SourceError {
                field: format!("sources[{i}].secrets"),
                message: format!(
                    "source {:?} authenticates with scheme {:?}: give at least one secret",
                    s.name,
                    scheme.name()
                ),
            });
        }
        if !scheme.needs_secrets() {
            tracing::warn!(
                source = %s.name,
                provider = %provider.name,
                "source accepts requests without any authentication (scheme \"none\")"
            );
        }
        let verifier = Verifier::new(&scheme, &secrets).map_err(|e| match e {
            // A bad scheme parameter is the source's `auth` or the provider
            // definition's fault.
            KeyError::Config(_) if s.auth.is_some() => SourceError {
                field: format!("sources[{i}].auth"),
                message: e.to_string(),
            },
            KeyError::Config(_) => SourceError {
                field: format!(
                    "{}: field `signature`",
                    provider.dir.join("provider.toml").display()
                ),
                message: e.to_string(),
            },
            _ => SourceError {
                field: format!("sources[{i}].secrets"),
                message: e.to_string(),
            },
        })?;
        sources.insert(
            s.name.clone(),
            Arc::new(Source {
                name: s.name.clone(),
                provider: provider.clone(),
                scheme,
                verifier,
                public_url: match (&s.public_url, &settings.server.public_url) {
                    (Some(exact), _) => PublicUrl::Exact(exact.clone()),
                    (None, Some(base)) => PublicUrl::Base(base.clone()),
                    (None, None) => PublicUrl::FromRequest,
                },
                on_schema_violation: s.on_schema_violation,
                max_body_bytes: s.max_body_bytes.unwrap_or(settings.server.max_body_bytes),
                allow_ips: crate::config::parse_networks(
                    &s.allow_ips,
                    &format!("sources[{i}].allow_ips"),
                )
                .map_err(|e| SourceError {
                    field: format!("sources[{i}].allow_ips"),
                    message: e.to_string(),
                })?,
                rate_limit: s.rate_limit.as_ref().map(RateLimiter::new),
            }),
        );
    }
    Ok(sources)
}

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error("no source is configured under this name")]
    UnknownSource,
    #[error("this source does not accept requests from this address")]
    ForbiddenAddress,
    #[error("too many requests for this source, retry in {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error("the body did not arrive within {timeout_ms} ms")]
    BodyTimeout { timeout_ms: u64 },
    #[error("the body exceeds the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("this source accepts {expected}")]
    UnsupportedMediaType { expected: String },
    #[error(transparent)]
    Verify(#[from] VerifyError),
    #[error("the body is not valid: {0}")]
    InvalidBody(String),
    #[error("the payload violates the provider's schema")]
    SchemaViolation(Vec<Violation>),
    #[error("storage is unavailable, retry later")]
    Unavailable(#[from] StoreError),
}

impl IngestError {
    /// The contract's stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            IngestError::UnknownSource => "unknown_source",
            IngestError::ForbiddenAddress => "forbidden_address",
            IngestError::RateLimited { .. } => "rate_limited",
            IngestError::BodyTimeout { .. } => "request_timeout",
            IngestError::PayloadTooLarge { .. } => "payload_too_large",
            IngestError::UnsupportedMediaType { .. } => "unsupported_media_type",
            IngestError::Verify(v) => v.code(),
            IngestError::InvalidBody(_) => "invalid_body",
            IngestError::SchemaViolation(_) => "schema_violation",
            IngestError::Unavailable(_) => "unavailable",
        }
    }
}

/// A request as the HTTP edge read it.
pub struct Inbound<'a> {
    pub headers: Headers,
    pub body: &'a [u8],
    pub path_token: Option<&'a str>,
    pub remote_addr: Option<String>,
    /// The URL the sender called, for schemes that sign it.
    pub url: Option<String>,
}

#[derive(Debug)]
pub enum Outcome {
    Accepted {
        deliveries: Vec<Inserted>,
        batch: bool,
        /// The body the provider expects instead of ours.
        reply: Option<ProviderReply>,
    },
    Quarantined {
        deliveries: Vec<Inserted>,
        batch: bool,
        violations: Vec<Violation>,
        reply: Option<ProviderReply>,
    },
}

/// Headers never written to the database: credentials, not evidence.
const UNSTORED_HEADERS: [&str; 3] = ["authorization", "cookie", "proxy-authorization"];

pub struct Ingestor {
    sources: HashMap<String, Arc<Source>>,
    committer: GroupCommitter,
    rejections: mpsc::Sender<Rejection>,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
}

impl Ingestor {
    pub fn new(
        sources: HashMap<String, Arc<Source>>,
        store: DynStore,
        storage: &crate::config::StorageSettings,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
    ) -> Ingestor {
        Ingestor {
            sources,
            committer: GroupCommitter::spawn_writers(
                store.clone(),
                storage.max_batch,
                storage.writers,
                std::time::Duration::from_millis(storage.commit_timeout_ms),
            ),
            rejections: spawn_rejection_log(store),
            clock,
            wake,
        }
    }

    pub fn committer(&self) -> &GroupCommitter {
        &self.committer
    }

    pub fn source(&self, name: &str) -> Option<&Arc<Source>> {
        self.sources.get(name)
    }

    /// Every configured source, in name order.
    pub fn sources(&self) -> Vec<&Arc<Source>> {
        let mut all: Vec<_> = self.sources.values().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// The injected clock's now, in unix milliseconds.
    pub fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    /// Wake this instance's workers (other instances hear the database).
    pub fn wake_workers(&self) {
        self.wake.notify_waiters();
    }

    /// Re-check a stored (quarantined) payload against its source's current
    /// provider schema: the violations that remain, empty when it now
    /// passes.
    pub fn revalidate(
        &self,
        source: &str,
        body: &[u8],
        content_type: Option<&str>,
    ) -> Result<Vec<Violation>, IngestError> {
        let source = self.sources.get(source).ok_or(IngestError::UnknownSource)?;
        let payload = source
            .provider
            .decode(body, content_type)
            .map_err(IngestError::InvalidBody)?;
        Ok(source.provider.schema_violations(&payload))
    }

    /// Checks that need no body: the source exists, the sender's address is
    /// allowed, the declared length is within its limit, the content type
    /// is one it accepts.
    pub fn preflight(
        &self,
        name: &str,
        client: Option<std::net::IpAddr>,
        content_type: Option<&str>,
        content_length: Option<u64>,
    ) -> Result<Arc<Source>, IngestError> {
        let source = self.sources.get(name).ok_or(IngestError::UnknownSource)?;
        if !source.allow_ips.is_empty()
            && !client.is_some_and(|ip| source.allow_ips.iter().any(|n| n.contains(&ip)))
        {
            return Err(IngestError::ForbiddenAddress);
        }
        if let Some(limiter) = &source.rate_limit {
            limiter
                .check()
                .map_err(|retry_after_secs| IngestError::RateLimited { retry_after_secs })?;
        }
        if content_length.is_some_and(|n| n > source.max_body_bytes as u64) {
            return Err(IngestError::PayloadTooLarge {
                limit: source.max_body_bytes,
            });
        }
        if !source.provider.accepts_content_type(content_type) {
            return Err(IngestError::UnsupportedMediaType {
                expected: source.provider.content_types.join(" or "),
            });
        }
        Ok(source.clone())
    }

    /// Verify, validate, extract and durably store one request. Returns only
    /// after the commit: an `Ok` may be answered 200.
    pub async fn ingest(
        &self,
        source: &Source,
        inbound: Inbound<'_>,
    ) -> Result<Outcome, IngestError> {
        let now = self.clock.now();
        let view = RequestView {
            headers: &inbound.headers,
            body: inbound.body,
            path_token: inbound.path_token,
            url: inbound.url.as_deref(),
        };
        // Nothing about the body is trusted, or even parsed, before this.
        let _verified = source.verifier.verify(&view, now.unix_timestamp())?;

        if inbound.body.is_empty() {
            return Err(IngestError::InvalidBody("the body is empty".into()));
        }
        let provider = &source.provider;
        let payload = provider
            .decode(inbound.body, inbound.headers.get("content-type"))
            .map_err(IngestError::InvalidBody)?;
        let mut violations = provider.schema_violations(&payload);
        let extracted = if violations.is_empty() {
            match provider.extract(&payload, inbound.body, &inbound.headers, false) {
                Ok(events) => events,
                Err(e) => {
                    violations.push(Violation {
                        path: "/".into(),
                        message: e.0,
                    });
                    provider
                        .extract(&payload, inbound.body, &inbound.headers, true)
                        .map_err(|e| IngestError::InvalidBody(e.0))?
                }
            }
        } else {
            provider
                .extract(&payload, inbound.body, &inbound.headers, true)
                .map_err(|e| IngestError::InvalidBody(e.0))?
        };
        let quarantine = !violations.is_empty();
        if quarantine && source.on_schema_violation == OnSchemaViolation::Reject {
            return Err(IngestError::SchemaViolation(violations));
        }

        let now_ms = unix_ms(now);
        let violations_json =
            quarantine.then(|| serde_json::to_string(&violations).unwrap_or_default());
        let status = if quarantine {
            DeliveryStatus::Quarantined
        } else {
            DeliveryStatus::Pending
        };
        let request = NewRequest {
            id: new_id("req", now_ms),
            source: source.name.clone(),
            provider: provider.name.clone(),
            received_at_ms: now_ms,
            remote_addr: inbound.remote_addr,
            headers_json: stored_headers(&inbound.headers, &source.scheme.secret_headers()),
            body: inbound.body.to_vec(),
            deliveries: extracted
                .iter()
                .map(|e| NewDelivery {
                    id: new_id("dlv", now_ms),
                    item_index: e.item_index.map(|i| i as i64),
                    provider_event_id: e.provider_event_id.clone(),
                    provider_event_type: e.provider_event_type.clone(),
                    occurred_at_ms: e.occurred_at.map(unix_ms),
                    status,
                    violations: violations_json.clone(),
                })
                .collect(),
        };
        let deliveries = self.committer.insert(request).await?;
        if deliveries
            .iter()
            .any(|d| !d.duplicate && d.status == DeliveryStatus::Pending)
        {
            self.wake.notify_waiters();
        }
        for d in &deliveries {
            tracing::info!(
                source = %source.name,
                provider = %provider.name,
                provider_event_id = %d.provider_event_id,
                delivery_id = %d.id,
                duplicate = d.duplicate,
                status = d.status.as_str(),
                "delivery stored"
            );
        }
        let batch = provider.event.items.is_some();
        let reply = provider.reply_for(&payload);
        Ok(if quarantine {
            Outcome::Quarantined {
                deliveries,
                batch,
                violations,
                reply,
            }
        } else {
            Outcome::Accepted {
                deliveries,
                batch,
                reply,
            }
        })
    }

    /// Audit a refused request. Its body is kept only when the request was
    /// authentic and refused for its payload (`schema_violation`): an
    /// unverified body is never stored. Best effort: the log is bounded,
    /// and a flood of bad requests can't stall ingestion.
    pub fn record_rejection(
        &self,
        source: &str,
        error: &IngestError,
        remote_addr: Option<String>,
        body: Option<Vec<u8>>,
    ) {
        // Not written: a storage outage can't store it, and a flood over a
        // rate limit would turn into the very database load the limit is
        // there to prevent. Both are counted in the rejection metrics.
        if matches!(
            error,
            IngestError::Unavailable(_) | IngestError::RateLimited { .. }
        ) {
            return;
        }
        let now_ms = unix_ms(self.clock.now());
        let message = match error {
            IngestError::SchemaViolation(v) => v
                .iter()
                .map(|v| format!("{}: {}", v.path, v.message))
                .collect::<Vec<_>>()
                .join("; "),
            other => other.to_string(),
        };
        let rejection = Rejection {
            id: new_id("rej", now_ms),
            source: source.chars().take(64).collect(),
            code: error.code().to_string(),
            message: message.chars().take(1000).collect(),
            remote_addr,
            received_at_ms: now_ms,
            body: body.filter(|_| matches!(error, IngestError::SchemaViolation(_))),
        };
        if self.rejections.try_send(rejection).is_err() {
            metrics::counter!(crate::telemetry::metrics::REJECTIONS_UNRECORDED).increment(1);
            tracing::debug!(
                source,
                "rejection log is full; a rejection was not recorded"
            );
        }
    }
}

/// The headers kept for re-verification and inspection: everything but
/// credentials (the fixed list, and any header the scheme carries a secret
/// in, e.g. `cf-webhook-auth`).
fn stored_headers(headers: &Headers, secret_headers: &[String]) -> String {
    let mut map: BTreeMap<String, Vec<&str>> = BTreeMap::new();
    for (name, value) in headers.iter() {
        let name = name.to_ascii_lowercase();
        if !UNSTORED_HEADERS.contains(&name.as_str()) && !secret_headers.contains(&name) {
            map.entry(name).or_default().push(value);
        }
    }
    serde_json::to_string(&map).unwrap_or_else(|_| "{}".into())
}

/// `prefix_<ULID>`: unique, sortable by creation time.
pub fn new_id(prefix: &str, now_ms: i64) -> String {
    let ulid = ulid::Ulid::from_parts(now_ms.max(0) as u64, rand::random::<u128>());
    format!("{prefix}_{ulid}")
}

/// How long the rejection log retries a batch the database refuses before
/// it gives the batch up (counted in `hookgate_rejections_unrecorded_total`).
const REJECTION_RETRY_FOR: std::time::Duration = std::time::Duration::from_secs(600);

/// The audit trail of refusals, written off the request path in batches.
/// While the database is away a batch is retried (an outage's refusals are
/// kept), and up to 1 024 more wait in the channel; past that, refusals are
/// counted but not kept, so a flood of bad requests cannot queue without
/// bound.
fn spawn_rejection_log(store: DynStore) -> mpsc::Sender<Rejection> {
    let (tx, mut rx) = mpsc::channel::<Rejection>(1024);
    tokio::spawn(async move {
        let mut batch = Vec::with_capacity(64);
        while let Some(first) = rx.recv().await {
            batch.push(first);
            while batch.len() < 256 {
                match rx.try_recv() {
                    Ok(r) => batch.push(r),
                    Err(_) => break,
                }
            }
            let started = tokio::time::Instant::now();
            let mut backoff = std::time::Duration::from_millis(100);
            let mut warned = false;
            while let Err(e) = store.record_rejections(&batch).await {
                if started.elapsed() >= REJECTION_RETRY_FOR {
                    tracing::warn!(error = %e, count = batch.len(), "could not record rejections; given up");
                    metrics::counter!(crate::telemetry::metrics::REJECTIONS_UNRECORDED)
                        .increment(batch.len() as u64);
                    break;
                }
                if !warned {
                    warned = true;
                    tracing::warn!(error = %e, count = batch.len(), "could not record rejections; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_secs(5));
            }
            batch.clear();
        }
    });
    tx
}
