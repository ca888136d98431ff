//! Settings: one TOML file, every key overridable by `HOOKGATE_*` environment
//! variables (`HOOKGATE_SERVER__LISTEN`, `HOOKGATE_STORAGE__URL`, ...), with
//! embedded defaults underneath. Secrets are references (`env:NAME`,
//! `file:PATH`, or a literal, accepted with a warning) resolved once at start
//! into `SecretString`s; this module never logs a resolved value.
//!
//! Relative paths (the SQLite file, `providers/`, `catalog/`) are resolved
//! against the directory of the config file, so a config works from any
//! working directory.

use std::path::{Path, PathBuf};

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use secrecy::SecretString;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    #[serde(default)]
    pub server: ServerSettings,
    #[serde(default)]
    pub storage: StorageSettings,
    #[serde(default)]
    pub api: ApiSettings,
    #[serde(default)]
    pub queue: QueueSettings,
    #[serde(default)]
    pub paths: PathSettings,
    #[serde(default)]
    pub log: LogSettings,
    #[serde(default)]
    pub telemetry: TelemetrySettings,
    #[serde(default)]
    pub bus: BusSettings,
    #[serde(default)]
    pub retention: RetentionSettings,
    #[serde(default)]
    pub sources: Vec<SourceSettings>,
    #[serde(default)]
    pub push: PushSettings,
    #[serde(default)]
    pub subscriptions: Vec<SubscriptionSettings>,
}

/// How push subscriptions are delivered (every subscription alike).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PushSettings {
    /// Messages claimed (and sent concurrently) per round.
    pub batch: u32,
    /// How long a claim is held before another instance may take it over;
    /// longer than any subscription's timeout.
    pub lease_secs: u64,
    /// The sweep for due retries; new catalog events wake the dispatcher
    /// at once.
    pub sweep_interval_ms: u64,
    /// Bytes of an endpoint's answer kept with each attempt.
    pub response_body_bytes: usize,
}

impl Default for PushSettings {
    fn default() -> Self {
        Self {
            batch: 16,
            lease_secs: 120,
            sweep_interval_ms: 1_000,
            response_body_bytes: 1024,
        }
    }
}

/// `[[subscriptions]]`: an internal endpoint that catalog events are
/// POSTed to, signed with Standard Webhooks.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubscriptionSettings {
    /// Same alphabet as source names.
    pub name: String,
    /// `https://…` (or `http://…`).
    pub url: String,
    /// Catalog type patterns: `invoice.*`, `payment.failed`, `*`.
    pub types: Vec<String>,
    /// Only events of this source.
    #[serde(default)]
    pub source: Option<String>,
    /// Reference (`env:NAME`, `file:PATH`) to the `whsec_…` HMAC secret.
    pub secret: String,
    /// Reference to a `whsk_…` Ed25519 key: adds a `v1a` signature.
    #[serde(default)]
    pub signing_key: Option<String>,
    #[serde(default = "default_subscription_timeout_ms")]
    pub timeout_ms: u64,
    /// Delays before each retry (`5s`, `5m`, `2h`, `250ms`); after the last
    /// one fails the message is a dead letter.
    #[serde(default = "default_retry_schedule")]
    pub retry_schedule: Vec<String>,
    /// Allow targets on private, loopback and link-local addresses.
    #[serde(default)]
    pub allow_private_targets: bool,
    /// Dead letters in a row that disable the subscription; 0 = never.
    #[serde(default = "default_disable_after")]
    pub disable_after_dead_letters: u32,
    /// Hours of failed attempts without a delivered one that disable the
    /// subscription; 0 = never.
    #[serde(default)]
    pub disable_after_failing_hours: u32,
}

pub fn default_subscription_timeout_ms() -> u64 {
    10_000
}

/// About 32 hours of retries in all.
pub fn default_retry_schedule() -> Vec<String> {
    ["5s", "5m", "30m", "2h", "5h", "10h", "10h", "5h"]
        .iter()
        .map(|s| s.to_string())
        .collect()
}

pub fn default_disable_after() -> u32 {
    5
}

/// What the retention task removes, and when. 0 days = keep for ever.
/// Dead and quarantined deliveries are kept until an operator handles them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// Raw bodies of requests whose deliveries are all done (or discarded),
    /// this many days after that. Such deliveries can't be replayed any more.
    pub raw_body_days: u32,
    /// Rejections (with the bodies kept of authentic ones), after this many
    /// days.
    pub rejections_days: u32,
    /// Done and discarded deliveries themselves (the dedupe keys that make a
    /// sender's retry a duplicate), with their attempts and catalog events,
    /// after this many days. At least 7: longer than any sender retries.
    pub dedupe_days: u32,
    /// How often the task runs; 0 = never (tests run it by hand).
    pub interval_secs: u64,
    /// Push messages delivered this many days ago, with their attempts.
    /// Dead letters stay until an operator replays them or deletes the
    /// subscription.
    pub push_days: u32,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        Self {
            raw_body_days: 7,
            rejections_days: 30,
            dedupe_days: 30,
            interval_secs: 3600,
            push_days: 7,
        }
    }
}

/// Senders retry for up to 3 days (Stripe); dedupe keys outlive that.
pub const MIN_DEDUPE_DAYS: u32 = 7;

#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct BusSettings {
    /// Publish every catalog event to NATS JetStream when set.
    pub nats: Option<NatsSettings>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NatsSettings {
    pub url: String,
    /// Events go to `<subject_prefix>.<type>`, e.g. `hookgate.invoice.paid`.
    pub subject_prefix: String,
    /// The JetStream stream that captures `<subject_prefix>.>`.
    pub stream: String,
    /// Create the stream at start if it does not exist.
    pub create_stream: bool,
    /// Retention of the created stream (0 = unlimited).
    pub max_age_secs: u64,
    /// JetStream drops a message whose `Nats-Msg-Id` it saw within this
    /// window. Keep it above the longest NATS outage you want re-publishes
    /// after to stay duplicate-free (default 24 h; the retry gap itself is
    /// at most `max_backoff_ms`).
    pub duplicate_window_secs: u64,
    /// Publish retry backoff cap while NATS is unreachable.
    pub max_backoff_ms: u64,
    /// Events read from the outbox per round.
    pub batch: u32,
    /// How long a publish waits for its ack.
    pub ack_timeout_ms: u64,
}

impl Default for NatsSettings {
    fn default() -> Self {
        Self {
            url: "nats://127.0.0.1:4222".into(),
            subject_prefix: "hookgate".into(),
            stream: "HOOKGATE".into(),
            create_stream: true,
            max_age_secs: 7 * 24 * 3600,
            duplicate_window_secs: 24 * 3600,
            max_backoff_ms: 30_000,
            batch: 256,
            ack_timeout_ms: 5_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// `host:port`; port 0 picks a free port (tests).
    pub listen: String,
    /// Default body limit for every source (413 above it).
    pub max_body_bytes: usize,
    /// actix-web worker threads; 0 = one per core.
    pub http_workers: usize,
    /// Proxies (CIDRs) whose `X-Forwarded-For` is believed when finding a
    /// sender's address for `allow_ips`; empty = use the peer address.
    pub trusted_proxies: Vec<String>,
    /// The gateway's public base URL as senders call it
    /// (`https://hooks.example.com`), for schemes that sign the URL (Square,
    /// Twilio). Unset: the URL is rebuilt from the request's Host header
    /// (and `X-Forwarded-Proto` / `X-Forwarded-Host` from trusted proxies).
    pub public_url: Option<String>,
    /// A client must send its request line and headers within this long
    /// after connecting (or after the previous request on a keep-alive
    /// connection), else the connection is cut with 408: slow-header
    /// clients hold no worker for long.
    pub header_timeout_ms: u64,
    /// A webhook body must arrive in full within this long after the
    /// headers, else 408 `request_timeout` (one byte a second never
    /// finishes a body).
    pub body_timeout_ms: u64,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_body_bytes: 1024 * 1024,
            http_workers: 0,
            trusted_proxies: Vec::new(),
            public_url: None,
            header_timeout_ms: 5_000,
            body_timeout_ms: 10_000,
        }
    }
}

/// `sources[].rate_limit`: at most `per_second` requests a second on
/// average, with bursts of up to `burst` at once (GCRA). Above it: 429
/// `rate_limited` with `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Sustained rate; fractions allowed (`0.5` = one every two seconds).
    pub per_second: f64,
    /// Requests allowed at once after a quiet period; at least 1.
    pub burst: u32,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageSettings {
    /// `sqlite://hookgate.db` (relative to the config file) or an absolute
    /// `sqlite:///var/lib/hookgate/hookgate.db`.
    pub url: String,
    /// Most inserts grouped into one transaction (group commit).
    pub max_batch: usize,
    /// A group commit that has not finished after this long is abandoned
    /// (its connection dropped) and its requests answered 503: a database
    /// behind a network partition answers nothing, and the writer must not
    /// wait for the operating system's TCP timeout while senders pile up.
    pub commit_timeout_ms: u64,
    /// Group commits in flight at once on a backend with concurrent
    /// writers (PostgreSQL): while one group waits for its flush, the next
    /// is already being written. Worth raising when the database is on
    /// another machine (round trips dominate); on a 2-core machine shared
    /// with PostgreSQL, one is fastest (README, Performance). SQLite has
    /// one writer whatever this says.
    pub writers: usize,
}

impl Default for StorageSettings {
    fn default() -> Self {
        Self {
            url: "sqlite://hookgate.db".into(),
            max_batch: 256,
            commit_timeout_ms: 10_000,
            writers: 1,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiSettings {
    /// Bearer tokens accepted by `/v1/events` and `/v1/catalog` (references).
    pub tokens: Vec<String>,
    /// `GET /v1/events/stream` sends a comment line this often when no
    /// event comes, so proxies keep the connection and clients notice a
    /// dead one.
    pub stream_keepalive_secs: u64,
}

impl Default for ApiSettings {
    fn default() -> Self {
        Self {
            tokens: Vec::new(),
            stream_keepalive_secs: 15,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueueSettings {
    /// Processing workers in this process; 0 disables them (tests drive the
    /// queue by hand).
    pub workers: usize,
    /// Deliveries claimed per round trip.
    pub batch: usize,
    /// After this many failed attempts a delivery is `dead`.
    pub max_attempts: u32,
    /// How long a claim is held before another worker may take it over.
    pub lease_secs: u64,
    /// The slow sweep: due retries and expired leases are picked up at
    /// least this often. New deliveries wake the workers at once.
    pub sweep_interval_ms: u64,
    /// First retry delay; doubles per attempt, with jitter, up to the max.
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
}

impl Default for QueueSettings {
    fn default() -> Self {
        Self {
            workers: 2,
            batch: 32,
            max_attempts: 8,
            lease_secs: 60,
            sweep_interval_ms: 5_000,
            backoff_base_ms: 2_000,
            backoff_max_ms: 3_600_000,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PathSettings {
    pub providers: PathBuf,
    pub catalog: PathBuf,
}

impl Default for PathSettings {
    fn default() -> Self {
        Self {
            providers: "providers".into(),
            catalog: "catalog".into(),
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Pretty,
    Json,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSettings {
    pub format: LogFormat,
    /// An `EnvFilter` directive, e.g. `info,hookgate=debug`.
    pub level: String,
}

impl Default for LogSettings {
    fn default() -> Self {
        Self {
            format: LogFormat::Pretty,
            level: "info".into(),
        }
    }
}

/// Trace export; off unless `[telemetry.otlp]` is present.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct TelemetrySettings {
    pub otlp: Option<OtlpSettings>,
}

/// OpenTelemetry export of the `tracing` spans over OTLP/HTTP (protobuf).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSettings {
    /// The collector's OTLP/HTTP address, e.g. `http://127.0.0.1:4318`;
    /// `/v1/traces` is added when the URL has no path.
    pub endpoint: String,
    /// `service.name` of the exported resource.
    pub service_name: String,
    /// How long one export request may take.
    pub timeout_ms: u64,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            endpoint: "http://127.0.0.1:4318".into(),
            service_name: "hookgate".into(),
            timeout_ms: 10_000,
        }
    }
}

#[derive(Debug, Clone, Copy, Serialize, Deserialize, Default, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum OnSchemaViolation {
    /// Store the authentic payload as `quarantined`, answer 200, don't process.
    #[default]
    Quarantine,
    /// Answer 422 `schema_violation` with the failing paths.
    Reject,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourceSettings {
    /// The path segment: `POST /v1/webhooks/{name}`.
    pub name: String,
    /// A folder under `providers/`.
    pub provider: String,
    /// Secret references; several while rotating.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub on_schema_violation: OnSchemaViolation,
    /// Overrides `server.max_body_bytes` for this source.
    #[serde(default)]
    pub max_body_bytes: Option<usize>,
    /// Sender addresses (CIDRs or single addresses) allowed to call this
    /// source; empty = any. Refused with 403 before the body is read.
    #[serde(default)]
    pub allow_ips: Vec<String>,
    /// How this source authenticates, instead of the provider's own
    /// `[signature]`: a scheme table (`{ scheme = "basic" }`,
    /// `{ scheme = "bearer" }`, `{ scheme = "header-token", header = "X-Token" }`,
    /// `{ scheme = "path-token" }`) for senders that offer several, or
    /// `"none"`, spelled out, for a source without any authentication.
    #[serde(default)]
    pub auth: Option<serde_json::Value>,
    /// The exact URL the sender was given for this source, when it signs
    /// the URL and it differs from `server.public_url` + the path.
    #[serde(default)]
    pub public_url: Option<String>,
    /// Protects the database (and every other source) from a flood on
    /// this one: checked before the body is read.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// Parse CIDRs (`10.0.0.0/8`) and single addresses (`192.0.2.7`).
pub fn parse_networks(list: &[String], field: &str) -> Result<Vec<ipnet::IpNet>, ConfigError> {
    list.iter()
        .enumerate()
        .map(|(i, s)| {
            s.parse::<ipnet::IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    field: format!("{field}[{i}]"),
                    message: format!("{s:?} is not an IP address or CIDR"),
                })
        })
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Load(#[from] Box<figment::Error>),
    #[error("{field}: {message}")]
    Invalid { field: String, message: String },
}

impl Settings {
    /// Embedded defaults, then the file, then `HOOKGATE_*` variables
    /// (`__` separates levels). Relative paths are made absolute against the
    /// file's directory.
    pub fn load(path: &Path) -> Result<Settings, ConfigError> {
        // Every setting lives in a section, so only variables naming one
        // (`HOOKGATE_SERVER__LISTEN`) are settings; others that share the
        // prefix (`HOOKGATE_API_TOKEN`, a secret an `env:` reference
        // names) are not.
        let figment = Figment::from(Serialized::defaults(Settings::default()))
            .merge(Toml::file_exact(path))
            .merge(
                Env::prefixed("HOOKGATE_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            );
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        let base = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        settings.make_paths_absolute(&base);
        settings.check()?;
        Ok(settings)
    }

    /// Parse a config from a string, relative paths against `base`
    /// (used by tests and `hookgate check`).
    pub fn from_toml(text: &str, base: &Path) -> Result<Settings, ConfigError> {
        let figment =
            Figment::from(Serialized::defaults(Settings::default())).merge(Toml::string(text));
        let mut settings: Settings = figment.extract().map_err(Box::new)?;
        settings.make_paths_absolute(base);
        settings.check()?;
        Ok(settings)
    }

    pub fn make_paths_absolute(&mut self, base: &Path) {
        let abs = |p: &Path| {
            if p.is_absolute() {
                p.to_path_buf()
            } else {
                base.join(p)
            }
        };
        self.paths.providers = abs(&self.paths.providers);
        self.paths.catalog = abs(&self.paths.catalog);
        if let Some(rest) = self.storage.url.strip_prefix("sqlite://") {
            let file = rest.split('?').next().unwrap_or(rest);
            if !file.is_empty() && !Path::new(file).is_absolute() {
                self.storage.url = format!("sqlite://{}", abs(Path::new(rest)).display());
            }
        }
    }

    /// Structural checks figment can't express; each names the field.
    pub fn check(&self) -> Result<(), ConfigError> {
        let mut seen = std::collections::HashSet::new();
        for (i, source) in self.sources.iter().enumerate() {
            let field = format!("sources[{i}].name");
            if !valid_source_name(&source.name) {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!(
                        "{:?} is not a valid source name (lowercase letters, digits, '-' and '_', 1 to 64 characters, starting with a letter or digit)",
                        source.name
                    ),
                });
            }
            if !seen.insert(source.name.as_str()) {
                return Err(ConfigError::Invalid {
                    field,
                    message: format!("source {:?} is defined twice", source.name),
                });
            }
        }
        parse_networks(&self.server.trusted_proxies, "server.trusted_proxies")?;
        if self.api.stream_keepalive_secs == 0 {
            return Err(ConfigError::Invalid {
                field: "api.stream_keepalive_secs".into(),
                message: "must be at least 1".into(),
            });
        }
        let urls = std::iter::once(("server.public_url".to_string(), &self.server.public_url))
            .chain(
                self.sources
                    .iter()
                    .enumerate()
                    .map(|(i, s)| (format!("sources[{i}].public_url"), &s.public_url)),
            );
        for (field, url) in urls {
            if let Some(url) = url {
                if !(url.starts_with("https://") || url.starts_with("http://")) {
                    return Err(ConfigError::Invalid {
                        field,
                        message: format!("{url:?} must be an http:// or https:// URL"),
                    });
                }
            }
        }
        if let Some(nats) = &self.bus.nats {
            // JetStream refuses such a stream (error 10052); said here,
            // not as publish retries for ever.
            if nats.max_age_secs > 0 && nats.duplicate_window_secs > nats.max_age_secs {
                return Err(ConfigError::Invalid {
                    field: "bus.nats.duplicate_window_secs".into(),
                    message: format!(
                        "{} s is longer than max_age_secs ({} s): JetStream can't keep ids longer than the messages",
                        nats.duplicate_window_secs, nats.max_age_secs
                    ),
                });
            }
        }
        for (i, source) in self.sources.iter().enumerate() {
            parse_networks(&source.allow_ips, &format!("sources[{i}].allow_ips"))?;
            if let Some(limit) = &source.rate_limit {
                if !(limit.per_second.is_finite() && limit.per_second > 0.0) || limit.burst == 0 {
                    return Err(ConfigError::Invalid {
                        field: format!("sources[{i}].rate_limit"),
                        message: "per_second must be a positive number and burst at least 1".into(),
                    });
                }
            }
        }
        for (field, ms) in [
            ("storage.commit_timeout_ms", self.storage.commit_timeout_ms),
            ("storage.writers", self.storage.writers as u64),
            ("server.header_timeout_ms", self.server.header_timeout_ms),
            ("server.body_timeout_ms", self.server.body_timeout_ms),
        ] {
            if ms == 0 {
                return Err(ConfigError::Invalid {
                    field: field.into(),
                    message: "must be at least 1".into(),
                });
            }
        }
        let r = &self.retention;
        if r.dedupe_days != 0 && r.dedupe_days < MIN_DEDUPE_DAYS {
            return Err(ConfigError::Invalid {
                field: "retention.dedupe_days".into(),
                message: format!(
                    "must be at least {MIN_DEDUPE_DAYS} (longer than any sender's retries), or 0 to keep deliveries for ever; got {}",
                    r.dedupe_days
                ),
            });
        }
        if r.dedupe_days != 0 && (r.raw_body_days == 0 || r.raw_body_days > r.dedupe_days) {
            return Err(ConfigError::Invalid {
                field: "retention.raw_body_days".into(),
                message: format!(
                    "raw bodies go with their deliveries after dedupe_days = {}: give at most that many days",
                    r.dedupe_days
                ),
            });
        }
        let mut names = std::collections::HashSet::new();
        for (i, sub) in self.subscriptions.iter().enumerate() {
            if !valid_source_name(&sub.name) {
                return Err(ConfigError::Invalid {
                    field: format!("subscriptions[{i}].name"),
                    message: format!(
                        "{:?} is not a valid subscription name (lowercase letters, digits, '-' and '_', 1 to 64 characters)",
                        sub.name
                    ),
                });
            }
            if !names.insert(sub.name.as_str()) {
                return Err(ConfigError::Invalid {
                    field: format!("subscriptions[{i}].name"),
                    message: format!("subscription {:?} is defined twice", sub.name),
                });
            }
            if sub.timeout_ms == 0 || sub.timeout_ms >= self.push.lease_secs.saturating_mul(1000) {
                return Err(ConfigError::Invalid {
                    field: format!("subscriptions[{i}].timeout_ms"),
                    message: format!(
                        "must be above 0 and below push.lease_secs ({} s)",
                        self.push.lease_secs
                    ),
                });
            }
        }
        if self.queue.max_attempts == 0 {
            return Err(ConfigError::Invalid {
                field: "queue.max_attempts".into(),
                message: "must be at least 1".into(),
            });
        }
        if let Some(otlp) = &self.telemetry.otlp {
            // The exporter's client is built without TLS (a collector
            // normally runs beside the gateway).
            if !otlp.endpoint.starts_with("http://") {
                return Err(ConfigError::Invalid {
                    field: "telemetry.otlp.endpoint".into(),
                    message: format!(
                        "{:?} must be an http:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318; put a local collector in front of a TLS one)",
                        otlp.endpoint
                    ),
                });
            }
        }
        Ok(())
    }
}

/// Source names are URL path segments: a closed alphabet keeps traversal,
/// percent-encoding and unicode tricks out.
pub fn valid_source_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 64
        && bytes[0].is_ascii_alphanumeric()
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'_')
}

/// Where secret references are looked up. Production reads the process
/// environment; tests pass a map instead of touching it.
pub trait SecretEnv: Send + Sync {
    fn var(&self, name: &str) -> Option<String>;
}

pub struct ProcessEnv;

impl SecretEnv for ProcessEnv {
    fn var(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }
}

impl SecretEnv for std::collections::HashMap<String, String> {
    fn var(&self, name: &str) -> Option<String> {
        self.get(name).cloned()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error("{field}: environment variable {name} is not set")]
    MissingEnv { field: String, name: String },
    #[error("{field}: cannot read secret file {path}: {reason}")]
    File {
        field: String,
        path: String,
        reason: String,
    },
    #[error("{field}: secret is empty")]
    Empty { field: String },
}

/// Resolve one reference. `field` names it in errors (e.g.
/// `sources[0].secrets[1]`); the value itself never appears in an error.
pub fn resolve_secret(
    reference: &str,
    field: &str,
    env: &dyn SecretEnv,
) -> Result<SecretString, SecretError> {
    let value = if let Some(name) = reference.strip_prefix("env:") {
        env.var(name).ok_or_else(|| SecretError::MissingEnv {
            field: field.into(),
            name: name.into(),
        })?
    } else if let Some(path) = reference.strip_prefix("file:") {
        std::fs::read_to_string(path)
            .map_err(|e| SecretError::File {
                field: field.into(),
                path: path.into(),
                reason: e.kind().to_string(),
            })?
            .trim_end_matches(['\r', '\n'])
            .to_string()
    } else {
        tracing::warn!(
            field,
            "secret given as a literal in the config; use env:NAME or file:PATH in production"
        );
        reference.to_string()
    };
    if value.is_empty() {
        return Err(SecretError::Empty {
            field: field.into(),
        });
    }
    Ok(SecretString::from(value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    #[test]
    fn source_name_rejects_traversal_and_unicode() {
        for bad in [
            "",
            "../etc",
            "a/b",
            "A",
            "stripe%2f",
            "strípe",
            "-x",
            &"a".repeat(65),
        ] {
            assert!(!valid_source_name(bad), "{bad:?} accepted");
        }
        for good in ["stripe", "stripe-main", "pd_2", "0x"] {
            assert!(valid_source_name(good), "{good:?} refused");
        }
    }

    #[test]
    fn resolve_secret_reads_env_and_names_field_not_value() {
        let env: HashMap<String, String> = [("S".to_string(), "v4lue".to_string())].into();
        let s = resolve_secret("env:S", "f", &env).unwrap();
        assert_eq!(s.expose_secret(), "v4lue");
        let err = resolve_secret("env:NOPE", "sources[0].secrets[0]", &env).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("sources[0].secrets[0]") && msg.contains("NOPE"));
    }

    #[test]
    fn settings_relative_paths_follow_config_dir() {
        let s = Settings::from_toml(
            "[storage]\nurl = \"sqlite://data/h.db\"\n",
            Path::new("/etc/hookgate"),
        )
        .unwrap();
        assert_eq!(s.storage.url, "sqlite:///etc/hookgate/data/h.db");
        assert_eq!(s.paths.providers, Path::new("/etc/hookgate/providers"));
    }

    #[test]
    fn settings_refuse_a_nats_duplicate_window_longer_than_max_age() {
        let err = Settings::from_toml(
            "[bus.nats]\nmax_age_secs = 3600\nduplicate_window_secs = 86400\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("bus.nats.duplicate_window_secs"),
            "{err}"
        );
        for ok in [
            "[bus.nats]\nmax_age_secs = 3600\nduplicate_window_secs = 600\n",
            "[bus.nats]\nmax_age_secs = 0\nduplicate_window_secs = 86400\n",
            "[bus.nats]\n",
        ] {
            Settings::from_toml(ok, Path::new("/")).unwrap();
        }
    }

    #[test]
    fn settings_keep_dedupe_keys_at_least_seven_days() {
        for days in [1, 6] {
            let err = Settings::from_toml(
                &format!("[retention]\ndedupe_days = {days}\nraw_body_days = 1\n"),
                Path::new("/"),
            )
            .unwrap_err();
            assert!(err.to_string().contains("retention.dedupe_days"), "{err}");
        }
        for ok in [
            "[retention]\ndedupe_days = 7\nraw_body_days = 1\n",
            "[retention]\ndedupe_days = 0\nraw_body_days = 0\n",
            "",
        ] {
            Settings::from_toml(ok, Path::new("/")).unwrap();
        }
        let err = Settings::from_toml(
            "[retention]\ndedupe_days = 10\nraw_body_days = 20\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("retention.raw_body_days"), "{err}");
    }

    #[test]
    fn settings_read_subscriptions_with_defaults_and_name_bad_fields() {
        let s = Settings::from_toml(
            "[[subscriptions]]\nname = \"billing\"\nurl = \"https://b.example.com/h\"\n\
             types = [\"invoice.*\"]\nsecret = \"env:BILLING_PUSH_SECRET\"\n",
            Path::new("/"),
        )
        .unwrap();
        let sub = &s.subscriptions[0];
        assert_eq!(sub.timeout_ms, 10_000);
        assert_eq!(sub.retry_schedule, default_retry_schedule());
        assert_eq!(sub.disable_after_dead_letters, 5);
        assert!(!sub.allow_private_targets);
        for (toml, field) in [
            (
                "[[subscriptions]]\nname = \"Bad\"\nurl = \"https://x\"\ntypes = [\"*\"]\nsecret = \"env:S\"\n",
                "subscriptions[0].name",
            ),
            (
                "[[subscriptions]]\nname = \"a\"\nurl = \"https://x\"\ntypes = [\"*\"]\nsecret = \"env:S\"\ntimeout_ms = 600000\n",
                "subscriptions[0].timeout_ms",
            ),
        ] {
            let err = Settings::from_toml(toml, Path::new("/")).unwrap_err();
            assert!(err.to_string().contains(field), "{err}");
        }
    }

    #[test]
    fn settings_reject_duplicate_sources_naming_field() {
        let err = Settings::from_toml(
            "[[sources]]\nname=\"a\"\nprovider=\"stripe\"\n[[sources]]\nname=\"a\"\nprovider=\"stripe\"\n",
            Path::new("/"),
        )
        .unwrap_err();
        assert!(err.to_string().contains("sources[1].name"), "{err}");
    }
}
