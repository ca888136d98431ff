//! Test helpers: start the real application on port 0 with a fresh SQLite
//! database in a temporary directory, sign requests the way each provider
//! would, and drive the queue deterministically (`drain`) instead of
//! sleeping.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use hookgate::app::{Application, Options};
use hookgate::clock::ManualClock;
use hookgate::config::{OnSchemaViolation, Settings, SourceSettings};
use hookgate::queue::Processor;
use hookgate::verify::{self, SchemeConfig};
use serde_json::Value;

/// The fixed "now" of every test app (2025-12-06T05:46:40Z).
pub const NOW: i64 = 1_765_000_000;
pub const API_TOKEN: &str = "test-api-token";

/// Every source secret and API token an in-process test app was started
/// with, whichever test started it.
static SECRETS: Mutex<Vec<String>> = Mutex::new(Vec::new());
/// Log lines and span fields, from any in-process app, that held one.
static LEAKS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn register_secrets(settings: &Settings) {
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    let configured = settings
        .sources
        .iter()
        .flat_map(|s| s.secrets.iter())
        .chain(settings.api.tokens.iter());
    for secret in configured {
        // A short value could occur by chance; every test secret is longer.
        if secret.len() >= 8 && !secrets.contains(secret) {
            secrets.push(secret.clone());
        }
    }
}

fn secret_in(text: &str) -> Option<String> {
    SECRETS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .find(|s| text.contains(s.as_str()))
        .cloned()
}

/// Panics if `text` (an answer the gateway gave) holds any secret or
/// token configured anywhere in this test run, or if any log line did.
/// Every answer the helpers read passes through here.
pub fn assert_no_secret(context: &str, text: &str) {
    if let Some(secret) = secret_in(text) {
        panic!("{context}: a configured secret ({secret:?}) is in the answer: {text}");
    }
    let leaks = LEAKS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    assert!(leaks.is_empty(), "configured secrets in logs: {leaks:?}");
}

/// A tracing layer (in the process-wide subscriber, at debug level for
/// hookgate) that records every event and span field holding a secret.
pub struct LeakLayer;

struct Text(String);

impl tracing::field::Visit for Text {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        self.0.push_str(&format!(" {}={value}", field.name()));
    }
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        self.0.push_str(&format!(" {}={value:?}", field.name()));
    }
}

impl LeakLayer {
    fn check(what: &str, name: &str, text: Text) {
        if secret_in(&text.0).is_some() {
            LEAKS
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(format!("{what} {name}:{}", text.0));
        }
    }
}

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for LeakLayer {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        let mut text = Text(String::new());
        event.record(&mut text);
        Self::check("event", event.metadata().target(), text);
    }

    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        _: &tracing::span::Id,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut text = Text(String::new());
        attrs.record(&mut text);
        Self::check("span", attrs.metadata().name(), text);
    }

    fn on_record(
        &self,
        _: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        _: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut text = Text(String::new());
        values.record(&mut text);
        Self::check("span record", "", text);
    }
}

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A configured test source and the secrets it holds.
pub struct SourceSpec {
    pub name: &'static str,
    pub provider: &'static str,
    pub secrets: Vec<&'static str>,
    pub on_schema_violation: OnSchemaViolation,
}

/// Standard Webhooks' official test secret, and the RFC 8032 test-1 key
/// pair in Standard Webhooks' whsk_/whpk_ encodings (v1a).
pub const SW_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
pub const SW_OLD_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

pub fn sw_signing_key() -> String {
    use base64::Engine;
    let seed =
        hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60").unwrap();
    format!(
        "whsk_{}",
        base64::engine::general_purpose::STANDARD.encode(seed)
    )
}

pub fn sw_public_key() -> String {
    use base64::Engine;
    let public =
        hex::decode("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a").unwrap();
    format!(
        "whpk_{}",
        base64::engine::general_purpose::STANDARD.encode(public)
    )
}

pub fn default_sources() -> Vec<SourceSpec> {
    let q = OnSchemaViolation::Quarantine;
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    vec![
        SourceSpec {
            name: "stripe",
            provider: "stripe",
            secrets: vec!["whsec_test_new_secret", "whsec_test_old_secret"],
            on_schema_violation: q,
        },
        SourceSpec {
            name: "stripe-strict",
            provider: "stripe",
            secrets: vec!["whsec_test_new_secret"],
            on_schema_violation: OnSchemaViolation::Reject,
        },
        SourceSpec {
            name: "standard-webhooks",
            provider: "standard-webhooks",
            secrets: vec![SW_SECRET, SW_OLD_SECRET, leak(sw_public_key())],
            on_schema_violation: q,
        },
        SourceSpec {
            name: "pagerduty",
            provider: "pagerduty",
            secrets: vec!["pd-secret-new", "pd-secret-old"],
            on_schema_violation: q,
        },
        SourceSpec {
            name: "dnsimple",
            provider: "dnsimple",
            secrets: vec!["dnsimple-token-new", "dnsimple-token-old"],
            on_schema_violation: q,
        },
    ]
}

/// Which storage backend a test runs on; every integration test runs on
/// both (`backend_tests!`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Generate a `sqlite::name` and a `postgres::name` test for each
/// `async fn name(backend: Backend)`.
#[macro_export]
macro_rules! backend_tests {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $( #[tokio::test]
               async fn $name() { super::$name($crate::helpers::Backend::Sqlite).await } )*
        }
        mod postgres {
            $( #[tokio::test]
               async fn $name() { super::$name($crate::helpers::Backend::Postgres).await } )*
        }
    };
}

/// The PostgreSQL server tests create their databases on (trust auth).
pub fn pg_admin_url() -> String {
    std::env::var("HOOKGATE_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

/// A fresh database for one test; dropped (forcibly) when the test ends.
pub struct TestDb {
    pub url: String,
    pub name: Option<String>,
}

impl TestDb {
    pub async fn new(backend: Backend, dir: &Path) -> TestDb {
        match backend {
            Backend::Sqlite => TestDb {
                url: format!("sqlite://{}", dir.join("hookgate.db").display()),
                name: None,
            },
            Backend::Postgres => {
                use sqlx::Connection;
                let name = format!("hg_test_{}", ulid::Ulid::new().to_string().to_lowercase());
                let mut conn = sqlx::PgConnection::connect(&format!("{}/postgres", pg_admin_url()))
                    .await
                    .expect("PostgreSQL is reachable (see .ci/run)");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                TestDb {
                    url: format!("{}/{name}", pg_admin_url()),
                    name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.name.take() else { return };
        // Drop runs inside the test's runtime: do the async work on a
        // thread of its own.
        let admin = format!("{}/postgres", pg_admin_url());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                use sqlx::Connection;
                if let Ok(mut conn) = sqlx::PgConnection::connect(&admin).await {
                    let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                        .execute(&mut conn)
                        .await;
                }
            });
        })
        .join();
    }
}

pub struct TestApp {
    pub address: String,
    pub client: reqwest::Client,
    pub clock: Arc<ManualClock>,
    pub processor: Arc<Processor>,
    pub retention: Arc<hookgate::retention::Retention>,
    pub app_stats: Arc<hookgate::store::group_commit::Stats>,
    pub publisher: Option<Arc<hookgate::bus::Publisher>>,
    /// The app's store, for tests that set up state no API exposes.
    pub store: hookgate::store::DynStore,
    /// Push subscriptions' router and dispatcher (`push.drain()`).
    pub push: Arc<hookgate::push::Push>,
    pub db: TestDb,
    /// Keeps the test's files alive as long as the app.
    pub _dir: tempfile::TempDir,
}

pub struct Spawn {
    pub backend: Backend,
    /// Share this database (another instance's) instead of a fresh one.
    pub db_url: Option<String>,
    pub sources: Vec<SourceSpec>,
    pub workers: usize,
    pub max_attempts: u32,
    pub max_body_bytes: usize,
}

impl Default for Spawn {
    fn default() -> Self {
        Spawn {
            backend: Backend::Sqlite,
            db_url: None,
            sources: default_sources(),
            workers: 0,
            max_attempts: 3,
            max_body_bytes: 64 * 1024,
        }
    }
}

pub fn settings_for(dir: &Path, db_url: &str, spawn: &Spawn) -> Settings {
    let mut settings = Settings::default();
    settings.server.listen = "127.0.0.1:0".into();
    settings.server.http_workers = 1;
    settings.server.max_body_bytes = spawn.max_body_bytes;
    let _ = dir;
    settings.storage.url = db_url.to_string();
    settings.paths.providers = repo().join("providers");
    settings.paths.catalog = repo().join("catalog");
    settings.api.tokens = vec![API_TOKEN.into()];
    settings.queue.workers = spawn.workers;
    settings.queue.max_attempts = spawn.max_attempts;
    settings.queue.backoff_base_ms = 1_000;
    settings.queue.sweep_interval_ms = 200;
    // Tests run retention passes by hand, at the clock they set.
    settings.retention.interval_secs = 0;
    settings.sources = spawn
        .sources
        .iter()
        .map(|s| SourceSettings {
            name: s.name.into(),
            provider: s.provider.into(),
            secrets: s.secrets.iter().map(|x| x.to_string()).collect(),
            on_schema_violation: s.on_schema_violation,
            max_body_bytes: None,
            allow_ips: Vec::new(),
            auth: None,
            public_url: None,
            rate_limit: None,
        })
        .collect();
    settings
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(Spawn {
        backend,
        ..Spawn::default()
    })
    .await
}

pub async fn spawn_app_with(spawn: Spawn) -> TestApp {
    spawn_app_configured(spawn, |_| {}).await
}

/// `spawn_app_with`, letting the test adjust the settings last.
pub async fn spawn_app_configured(spawn: Spawn, adjust: impl FnOnce(&mut Settings)) -> TestApp {
    let dir = tempfile::tempdir().unwrap();
    let db = match &spawn.db_url {
        Some(url) => TestDb {
            url: url.clone(),
            name: None,
        },
        None => TestDb::new(spawn.backend, dir.path()).await,
    };
    let mut settings = settings_for(dir.path(), &db.url, &spawn);
    adjust(&mut settings);
    // Every app logs through the process-wide subscriber, whose leak layer
    // checks each line against every secret configured so far.
    crate::telemetry::global();
    register_secrets(&settings);
    assert_no_secret("before start", "");
    let clock = Arc::new(ManualClock::at_unix(NOW));
    let app = Application::build(
        settings,
        Options {
            clock: clock.clone(),
            env: Arc::new(std::collections::HashMap::<String, String>::new()),
        },
    )
    .await
    .expect("the test app builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let processor = app.processor();
    let retention = app.retention();
    let app_stats = app.ingestor_stats();
    let publisher = app.publisher();
    let store = app.store();
    let push = app.push();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        client: reqwest::Client::new(),
        clock,
        processor,
        retention,
        app_stats,
        publisher,
        store,
        push,
        db,
        _dir: dir,
    }
}

/// A request as a sender would make it.
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Outgoing {
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.into(), value.into()));
        self
    }

    pub fn without_header(mut self, name: &str) -> Self {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }
}

pub fn scheme(provider: &str) -> SchemeConfig {
    hookgate::providers::load_scheme(&repo().join("providers"), provider).unwrap()
}

/// Sign `body` for `source` (of `provider`) with `secret` at `timestamp`.
pub fn signed(
    source: &str,
    provider: &str,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Outgoing {
    signed_for_url(source, provider, secret, body, timestamp, id, None)
}

/// [`signed`] for schemes that sign the URL: `base` is the app's address
/// (`http://127.0.0.1:PORT`), the URL signed is `base` + the path.
pub fn signed_for_url(
    source: &str,
    provider: &str,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
    base: Option<&str>,
) -> Outgoing {
    signed_with(
        source,
        &scheme(provider),
        secret,
        body,
        (timestamp, id),
        base,
        None,
    )
}

/// [`signed_for_url`] with the scheme given (a source's `auth` override)
/// and an optional query string the sender puts on the URL.
pub fn signed_with(
    source: &str,
    scheme: &SchemeConfig,
    secret: &str,
    body: &[u8],
    (timestamp, id): (i64, &str),
    base: Option<&str>,
    query: Option<&str>,
) -> Outgoing {
    let query = query.map(|q| format!("?{q}")).unwrap_or_default();
    let url = base.map(|b| format!("{b}/v1/webhooks/{source}{query}"));
    let (body, signed) = verify::sign_full(
        scheme,
        secret,
        &verify::SignInput {
            body,
            timestamp,
            id,
            url: url.as_deref(),
        },
    )
    .unwrap();
    let path = match &signed.path_token {
        Some(token) => format!("/v1/webhooks/{source}/{token}{query}"),
        None => format!("/v1/webhooks/{source}{query}"),
    };
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    headers.extend(signed.headers);
    Outgoing {
        path,
        headers,
        body,
    }
}

pub struct Reply {
    pub status: u16,
    pub json: Value,
    /// The raw body, for replies that are not JSON (a provider's own ack).
    pub text: String,
    pub headers: reqwest::header::HeaderMap,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.json["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestApp {
    pub async fn send(&self, req: &Outgoing) -> Reply {
        // Like a real sender, retry when the connection breaks before an
        // answer (a pooled keep-alive connection the server just closed):
        // no answer means nothing was acknowledged, and ingest is idempotent.
        let mut attempt = 0;
        let response = loop {
            let mut builder = self
                .client
                .post(format!("{}{}", self.address, req.path))
                .body(req.body.clone());
            for (k, v) in &req.headers {
                builder = builder.header(k, v);
            }
            match builder.send().await {
                Ok(r) => break r,
                Err(e) if attempt < 3 && (e.is_request() || e.is_connect()) => attempt += 1,
                Err(e) => panic!("request not sent: {e}"),
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        assert_no_secret(&req.path, &text);
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Reply {
            status,
            json,
            text,
            headers,
        }
    }

    /// `send` and assert the status, returning the JSON body.
    pub async fn send_expect(&self, req: &Outgoing, status: u16) -> Value {
        let reply = self.send(req).await;
        assert_eq!(
            reply.status, status,
            "{} answered {} {}",
            req.path, reply.status, reply.json
        );
        reply.json
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .client
            .get(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_no_secret(path, &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// An operator's POST, with a JSON body when given.
    pub async fn post(&self, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut req = self
            .client
            .post(format!("{}{path}", self.address))
            .bearer_auth(API_TOKEN);
        if let Some(body) = body {
            req = req.json(&body);
        }
        let response = req.send().await.expect("request sent");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        assert_no_secret(path, &text);
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Every catalog event, paging through the cursor.
    pub async fn all_events(&self) -> Vec<Value> {
        let mut out = Vec::new();
        let mut after = String::from("0");
        loop {
            let (status, page) = self
                .get(&format!("/v1/events?after={after}&limit=50"))
                .await;
            assert_eq!(status, 200, "{page}");
            let events = page["events"].as_array().unwrap().clone();
            if events.is_empty() {
                return out;
            }
            after = page["next"].as_str().unwrap().to_string();
            out.extend(events);
        }
    }

    pub async fn drain(&self) -> usize {
        self.processor.drain().await.expect("queue drains")
    }

    pub async fn delivery(&self, id: &str) -> Value {
        let (status, d) = self.get(&format!("/v1/admin/deliveries/{id}")).await;
        assert_eq!(status, 200, "{d}");
        d
    }
}

/// Copy a directory tree (e.g. `providers/`, to change a definition).
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A provider's fixture payload, parsed.
pub fn fixture(provider: &str, name: &str) -> Value {
    let path = repo()
        .join("providers")
        .join(provider)
        .join("fixtures")
        .join(format!("{name}.json"));
    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap()
}

/// Set a JSON pointer's value (the parent must exist).
pub fn set_pointer(v: &mut Value, pointer: &str, new: Value) {
    let (parent, key) = pointer.rsplit_once('/').unwrap();
    let target = if parent.is_empty() {
        v
    } else {
        v.pointer_mut(parent).unwrap()
    };
    target[key] = new;
}

/// The Stripe invoice.paid fixture with sender event id `id`, signed for
/// the default `stripe` source at `NOW`.
pub fn stripe_request(id: &str) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", serde_json::json!(id));
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        NOW,
        id,
    )
}
