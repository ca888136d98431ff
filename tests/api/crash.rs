//! Crash safety with the real binary. `crash::` holds the harness (start
//! the `hookgate` binary on a config file, SIGKILL or SIGTERM it, read the
//! database behind it) and the simplest case: deliveries are acknowledged,
//! the process is killed with SIGKILL right after the 200s, restarted on the
//! same database, and every acknowledged delivery is there and becomes
//! catalog events exactly once. `crash::load` kills under continuous load
//! (and with NATS configured), `crash::shutdown` stops with SIGTERM under
//! load.

mod load;
mod shutdown;

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use hookgate::config::NatsSettings;
use serde_json::{json, Value};

use crate::helpers::*;

/// The secret of the `stripe` source of every crash-test config.
const SECRET: &str = "whsec_crash_secret";

/// Nothing the gateways wrote to `log` over a scenario (every start, every
/// kill, every restart, at `info`) carries the source's secret or the API
/// token.
pub fn assert_log_keeps_secrets(log: &Path) {
    let text = std::fs::read_to_string(log).unwrap();
    assert!(!text.is_empty(), "the gateways logged nothing");
    for (name, secret) in [
        ("the stripe source's secret", SECRET),
        ("the API token", API_TOKEN),
    ] {
        assert!(!text.contains(secret), "{name} is in the gateway log");
    }
}

/// One running `hookgate serve` process.
pub struct Gateway {
    child: Child,
    address: String,
}

impl Gateway {
    /// Start the binary on `config` and wait for its first stdout line,
    /// `hookgate listening on http://…` (printed once it serves). Its
    /// stderr is appended to `log` (for a failing test's post-mortem).
    pub fn start(config: &Path, log: &Path) -> Gateway {
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_hookgate"))
            .args(["serve", "--config"])
            .arg(config)
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("the hookgate binary starts");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).unwrap();
        let address = match line.trim().strip_prefix("hookgate listening on ") {
            Some(address) => address.to_string(),
            None => {
                let _ = child.kill();
                let _ = child.wait();
                let log = std::fs::read_to_string(log).unwrap_or_default();
                panic!("unexpected first line {line:?}; stderr:\n{log}");
            }
        };
        Gateway { child, address }
    }

    pub fn address(&self) -> &str {
        &self.address
    }

    /// SIGKILL: no graceful anything.
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    /// SIGTERM: the graceful stop.
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("kill(1) runs");
        assert!(status.success(), "kill -TERM failed");
    }

    /// Wait (polling, up to `limit`) for the process to exit by itself.
    pub async fn exited_within(&mut self, limit: Duration) -> Option<std::process::ExitStatus> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status);
            }
            if tokio::time::Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A config file in `dir`: one `stripe` source, two queue workers, short
/// leases (PostgreSQL leaves a killed instance's leases to expire, other
/// instances may share the database), NATS when given.
pub fn write_config(dir: &Path, db_url: &str, nats: Option<&NatsSettings>) -> PathBuf {
    let config = dir.join("hookgate.toml");
    let bus = match nats {
        Some(n) => format!(
            r#"
[bus.nats]
url = "{}"
subject_prefix = "{}"
stream = "{}"
max_backoff_ms = {}
ack_timeout_ms = {}
"#,
            n.url, n.subject_prefix, n.stream, n.max_backoff_ms, n.ack_timeout_ms
        ),
        None => String::new(),
    };
    let text = format!(
        r#"
[server]
listen = "127.0.0.1:0"
http_workers = 2

[storage]
url = "{db}"

[paths]
providers = "{providers}"
catalog = "{catalog}"

[api]
tokens = ["{token}"]

[queue]
workers = 2
sweep_interval_ms = 200
lease_secs = 2

[log]
level = "info"
{bus}
[[sources]]
name = "stripe"
provider = "stripe"
secrets = ["{secret}"]
"#,
        db = db_url,
        providers = repo().join("providers").display(),
        catalog = repo().join("catalog").display(),
        token = API_TOKEN,
        secret = SECRET,
    );
    std::fs::write(&config, text).unwrap();
    config
}

/// A Stripe `invoice.paid` with sender event id `id`, signed now.
pub fn request(id: &str) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    signed(
        "stripe",
        "stripe",
        SECRET,
        &serde_json::to_vec(&v).unwrap(),
        now,
        id,
    )
}

/// The database behind the gateways, read directly.
pub enum Db {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A `deliveries` row: (id, provider_event_id, status).
pub type DeliveryRow = (String, String, String);

impl Db {
    pub async fn connect(url: &str) -> Db {
        if url.starts_with("sqlite:") {
            Db::Sqlite(sqlx::SqlitePool::connect(url).await.unwrap())
        } else {
            Db::Postgres(sqlx::PgPool::connect(url).await.unwrap())
        }
    }

    pub async fn deliveries(&self) -> Vec<DeliveryRow> {
        let q = "SELECT id, provider_event_id, status FROM deliveries";
        match self {
            Db::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
        }
    }

    /// Every catalog event: (id, delivery_id), in sequence order.
    pub async fn events(&self) -> Vec<(String, String)> {
        let q = "SELECT id, delivery_id FROM events ORDER BY seq";
        match self {
            Db::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
        }
    }

    /// Deliveries not yet `done`.
    pub async fn unfinished(&self) -> i64 {
        let q = "SELECT count(*) FROM deliveries WHERE status <> 'done'";
        match self {
            Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
        }
    }

    /// Each sink's (name, cursor, owner): where a publisher got to and
    /// who holds the right to publish.
    pub async fn sinks(&self) -> Vec<(String, i64, Option<String>)> {
        let q = "SELECT name, cursor_seq, owner FROM sinks";
        match self {
            Db::Sqlite(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_as(q).fetch_all(p).await.unwrap(),
        }
    }

    pub async fn max_seq(&self) -> i64 {
        let q = "SELECT COALESCE(MAX(seq), 0) FROM events";
        match self {
            Db::Sqlite(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
            Db::Postgres(p) => sqlx::query_scalar(q).fetch_one(p).await.unwrap(),
        }
    }

    /// Poll until every delivery is `done` (or `limit` passes).
    pub async fn all_done_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if self.unfinished().await == 0 {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Poll until the sink cursor reaches the last event (every catalog
    /// event was acknowledged by NATS), or `limit` passes.
    pub async fn published_within(&self, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let last = self.max_seq().await;
            let cursor = self.sinks().await.first().map(|s| s.1).unwrap_or(0);
            if cursor >= last {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    pub async fn close(self) {
        match self {
            Db::Sqlite(p) => p.close().await,
            Db::Postgres(p) => p.close().await,
        }
    }
}

async fn events(client: &reqwest::Client, address: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after = "0".to_string();
    loop {
        let page: Value = client
            .get(format!("{address}/v1/events?after={after}&limit=1000"))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let batch = page["events"].as_array().unwrap().clone();
        if batch.is_empty() {
            return out;
        }
        after = page["next"].as_str().unwrap().to_string();
        out.extend(batch);
    }
}

async fn crash_sigkill_after_ack_loses_nothing_and_duplicates_nothing(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let config = write_config(dir.path(), &db.url, None);
    let log = dir.path().join("hookgate.log");
    let client = reqwest::Client::new();
    let mut acknowledged: HashMap<String, String> = HashMap::new();

    for round in 0..3 {
        let gw = Gateway::start(&config, &log);
        let ids: Vec<String> = (0..40).map(|i| format!("evt_crash_{round}_{i}")).collect();
        let replies = futures_util::future::join_all(ids.iter().map(|id| {
            let client = client.clone();
            let address = gw.address().to_string();
            let req = request(id);
            async move {
                let mut b = client.post(format!("{address}{}", req.path)).body(req.body);
                for (k, v) in req.headers {
                    b = b.header(k, v);
                }
                let r = b.send().await.ok()?;
                if r.status().as_u16() != 200 {
                    return None;
                }
                let body: Value = r.json().await.ok()?;
                Some(body["id"].as_str()?.to_string())
            }
        }))
        .await;
        for (id, reply) in ids.iter().zip(replies) {
            if let Some(delivery) = reply {
                acknowledged.insert(id.clone(), delivery);
            }
        }
        // SIGKILL, right after the 200s: no graceful anything.
        gw.kill();
    }
    assert_eq!(acknowledged.len(), 120, "every request was acknowledged");

    // Restart on the same database and let the workers finish.
    let gw = Gateway::start(&config, &log);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let all = loop {
        let all = events(&client, gw.address()).await;
        if all.len() >= acknowledged.len() || std::time::Instant::now() > deadline {
            break all;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Give any (wrong) second copy a chance to appear before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let all = if all.len() == acknowledged.len() {
        events(&client, gw.address()).await
    } else {
        all
    };
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for e in &all {
        *per_id
            .entry(e["provider_event_id"].as_str().unwrap())
            .or_default() += 1;
    }
    for id in acknowledged.keys() {
        assert_eq!(
            per_id.get(id.as_str()).copied(),
            Some(1),
            "{id}: exactly one catalog event"
        );
    }
    assert_eq!(all.len(), acknowledged.len());
    // Each acknowledged delivery id is the one stored.
    for (id, delivery) in acknowledged.iter().take(10) {
        let d: Value = client
            .get(format!("{}/v1/admin/deliveries/{delivery}", gw.address()))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["provider_event_id"], id.as_str());
        assert_eq!(d["status"], "done");
        assert!(
            !d.to_string().contains(SECRET),
            "an admin answer carries the secret"
        );
    }
    gw.kill();
    assert_log_keeps_secrets(&log);
}

crate::backend_tests!(crash_sigkill_after_ack_loses_nothing_and_duplicates_nothing);

/// What one request of the load generator got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `200 accepted`: the gateway promised it is stored, under this id.
    Acked { delivery: String },
    /// An answer other than 200 (must not count as accepted).
    Refused(u16),
    /// The connection died before a complete answer: it may or may not
    /// be stored, but never twice.
    Unknown,
    /// No connection (the gateway was down): nothing reached it.
    NotConnected,
}

/// Concurrent senders posting unique signed events, spread over the
/// gateways in `addresses` (which the test updates after each restart).
pub struct Load {
    stop: Arc<AtomicBool>,
    acked: Arc<AtomicUsize>,
    outcomes: Arc<Mutex<Vec<(String, Outcome)>>>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    pub fn start(addresses: Arc<RwLock<Vec<String>>>, senders: usize, tag: &str) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(AtomicUsize::new(0));
        let outcomes = Arc::new(Mutex::new(Vec::new()));
        let counter = Arc::new(AtomicUsize::new(0));
        let client = reqwest::Client::new();
        let tasks = (0..senders)
            .map(|_| {
                let (stop, acked, outcomes, counter) = (
                    stop.clone(),
                    acked.clone(),
                    outcomes.clone(),
                    counter.clone(),
                );
                let (addresses, client, tag) = (addresses.clone(), client.clone(), tag.to_string());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let n = counter.fetch_add(1, Ordering::Relaxed);
                        let id = format!("evt_{tag}_{n}");
                        let address = {
                            let a = addresses.read().unwrap();
                            a[n % a.len()].clone()
                        };
                        let outcome = send(&client, &address, &request(&id)).await;
                        match &outcome {
                            Outcome::Acked { .. } => {
                                acked.fetch_add(1, Ordering::Relaxed);
                            }
                            // A gateway being restarted refuses connections:
                            // back off a little instead of spinning.
                            Outcome::NotConnected => {
                                tokio::time::sleep(Duration::from_millis(20)).await
                            }
                            Outcome::Unknown | Outcome::Refused(_) => {}
                        }
                        outcomes.lock().unwrap().push((id, outcome));
                    }
                })
            })
            .collect();
        Load {
            stop,
            acked,
            outcomes,
            tasks,
        }
    }

    pub fn acked(&self) -> usize {
        self.acked.load(Ordering::Relaxed)
    }

    /// Poll until `n` events are acknowledged in all; false after `limit`.
    pub async fn acked_at_least(&self, n: usize, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        while self.acked() < n {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }

    /// Stop sending, wait for the requests in flight; every request's outcome.
    pub async fn stop(self) -> Vec<(String, Outcome)> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        let outcomes = self.outcomes.lock().unwrap();
        outcomes.clone()
    }
}

/// POST `req` once, classifying the answer.
pub async fn send(client: &reqwest::Client, address: &str, req: &Outgoing) -> Outcome {
    let mut b = client
        .post(format!("{address}{}", req.path))
        // Only against hanging forever; a healthy answer takes milliseconds.
        .timeout(Duration::from_secs(30))
        .body(req.body.clone());
    for (k, v) in &req.headers {
        b = b.header(k, v);
    }
    let response = match b.send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() => return Outcome::NotConnected,
        Err(_) => return Outcome::Unknown,
    };
    let status = response.status().as_u16();
    let Ok(body) = response.json::<Value>().await else {
        // A 200 whose body was cut off is no promise: unknown.
        return if status == 200 {
            Outcome::Unknown
        } else {
            Outcome::Refused(status)
        };
    };
    match (status, body["status"].as_str(), body["id"].as_str()) {
        (200, Some("accepted"), Some(id)) => Outcome::Acked {
            delivery: id.to_string(),
        },
        _ => Outcome::Refused(status),
    }
}

/// Resend `id` the way a sender retries (new connections, until an
/// answer): once every gateway is up, the answer must be a 200.
pub async fn resend(client: &reqwest::Client, address: &str, id: &str) -> (Outcome, bool) {
    let req = request(id);
    for _ in 0..5 {
        let mut b = client
            .post(format!("{address}{}", req.path))
            .timeout(Duration::from_secs(30))
            .body(req.body.clone());
        for (k, v) in &req.headers {
            b = b.header(k, v);
        }
        let Ok(response) = b.send().await else {
            continue;
        };
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        return match (status, body["id"].as_str()) {
            (200, Some(delivery)) => (
                Outcome::Acked {
                    delivery: delivery.to_string(),
                },
                body["duplicate"] == true,
            ),
            _ => (Outcome::Refused(status), false),
        };
    }
    (Outcome::Unknown, false)
}

/// The counts a scenario ends with; every "must be 0" is asserted by
/// [`Figures::assert_clean`] after the line is printed.
#[derive(Debug, Default)]
pub struct Figures {
    pub scenario: String,
    pub kills: usize,
    pub sent: usize,
    pub acknowledged: usize,
    pub unknown: usize,
    /// Requests that found no gateway to connect to.
    pub not_connected: usize,
    pub refused: usize,
    /// Unknown or refused requests that were stored after all (their
    /// resend answered `duplicate: true`).
    pub unknown_stored: usize,
    /// Never connected, yet stored (their resend said `duplicate: true`).
    pub phantoms: usize,
    /// Acknowledged, but not stored under the acknowledged id.
    pub lost: usize,
    /// Extra rows for one sender event id.
    pub duplicates_stored: usize,
    /// Stored deliveries with no catalog event after processing.
    pub unprocessed: usize,
    /// Extra catalog events for one delivery.
    pub duplicate_catalog_events: usize,
    /// Extra copies in the NATS stream (0 when NATS is not configured).
    pub duplicates_downstream: usize,
    /// Catalog events missing from the stream.
    pub unpublished: usize,
    /// Rows or messages that match nothing sent.
    pub strays: usize,
    pub nats: bool,
}

impl Figures {
    /// One line for the README table (`cargo test … -- --nocapture`).
    pub fn print(&self) {
        println!(
            "crash figures: scenario={} kills={} sent={} acknowledged={} unknown={} not_connected={} refused={} \
             unknown_stored={} phantoms={} lost={} duplicates_stored={} unprocessed={} \
             duplicate_catalog_events={} duplicates_downstream={} unpublished={} strays={} nats={}",
            self.scenario,
            self.kills,
            self.sent,
            self.acknowledged,
            self.unknown,
            self.not_connected,
            self.refused,
            self.unknown_stored,
            self.phantoms,
            self.lost,
            self.duplicates_stored,
            self.unprocessed,
            self.duplicate_catalog_events,
            self.duplicates_downstream,
            self.unpublished,
            self.strays,
            self.nats,
        );
    }

    pub fn assert_clean(&self) {
        let bad = [
            ("lost", self.lost),
            ("phantoms", self.phantoms),
            ("duplicates_stored", self.duplicates_stored),
            ("unprocessed", self.unprocessed),
            ("duplicate_catalog_events", self.duplicate_catalog_events),
            ("duplicates_downstream", self.duplicates_downstream),
            ("unpublished", self.unpublished),
            ("strays", self.strays),
        ];
        for (name, n) in bad {
            assert_eq!(n, 0, "{}: {name} must be 0", self.scenario);
        }
    }
}

/// Compare what the senders were told with what the database (and the
/// stream) hold: `acked` maps each acknowledged sender event id to the
/// delivery id it was given; `sent` is every id sent.
pub async fn account(
    figures: &mut Figures,
    db: &Db,
    acked: &HashMap<String, String>,
    sent: &HashSet<String>,
    nats: Option<&NatsSettings>,
) {
    let mut stored: HashMap<String, Vec<String>> = HashMap::new();
    for (id, provider_event_id, _) in db.deliveries().await {
        stored.entry(provider_event_id).or_default().push(id);
    }
    figures.lost = acked
        .iter()
        .filter(|(event, delivery)| stored.get(*event) != Some(&vec![(*delivery).clone()]))
        .count();
    figures.duplicates_stored = stored.values().map(|v| v.len() - 1).sum();
    figures.strays = stored.keys().filter(|k| !sent.contains(*k)).count();

    let events = db.events().await;
    let mut per_delivery: HashMap<&str, usize> = HashMap::new();
    for (_, delivery) in &events {
        *per_delivery.entry(delivery.as_str()).or_default() += 1;
    }
    // A Stripe invoice.paid maps to exactly one catalog event.
    figures.unprocessed = stored
        .values()
        .flatten()
        .filter(|d| !per_delivery.contains_key(d.as_str()))
        .count();
    figures.duplicate_catalog_events = per_delivery.values().map(|n| n - 1).sum();
    let delivery_ids: HashSet<&str> = stored.values().flatten().map(|d| d.as_str()).collect();
    figures.strays += per_delivery
        .keys()
        .filter(|d| !delivery_ids.contains(*d))
        .count();

    if let Some(nats) = nats {
        let mut copies: HashMap<String, usize> = HashMap::new();
        for (id, _) in crate::bus::stream_messages(&nats.url, &nats.stream).await {
            *copies.entry(id).or_default() += 1;
        }
        figures.duplicates_downstream = copies.values().map(|n| n - 1).sum();
        let ids: HashSet<&str> = events.iter().map(|(id, _)| id.as_str()).collect();
        figures.unpublished = ids.iter().filter(|id| !copies.contains_key(**id)).count();
        figures.strays += copies
            .keys()
            .filter(|id| !ids.contains(id.as_str()))
            .count();
    }
}
