//! The load generator: N keep-alive HTTP/1.1 connections (hyper's low-level
//! client, one task per connection, one request in flight on each), every
//! request unique and correctly signed at send time, a configurable share
//! of them re-sends of an earlier event (a sender's retry: same event id,
//! fresh signature). Latency is measured from just before the request is
//! written to the end of the response body, in an HDR histogram.
//!
//! Closed loop by default (each connection sends as soon as it has its
//! answer); with a `rate`, each connection is paced so that all of them
//! together offer that rate.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use hdrhistogram::Histogram;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpStream;

use crate::verify::{self, SchemeConfig};

/// When a stage's load stops.
#[derive(Debug, Clone, Copy)]
pub enum Stop {
    /// Send for this long after the warm-up.
    Duration(Duration),
    /// Send exactly this many requests in total (no warm-up).
    Count(u64),
}

#[derive(Debug, Clone)]
pub struct LoadSpec {
    pub connections: usize,
    pub stop: Stop,
    /// Requests sent during the warm-up are not counted (duration mode).
    pub warmup: Duration,
    /// Total offered rate in requests per second; `None` = closed loop.
    pub rate: Option<f64>,
    /// Share of requests (0..1) that re-send an earlier event.
    pub duplicate_share: f64,
}

/// What the load generator saw in the measured window.
#[derive(Debug, Clone)]
pub struct LoadStats {
    pub sent: u64,
    /// 200 answers for a new event (or any 200 from a server that does not
    /// say `duplicate`).
    pub accepted: u64,
    /// 200 answers with `"duplicate":true`.
    pub duplicates: u64,
    /// Everything else, by HTTP status or `io` (connection failed) or
    /// `quarantined` (a 200 that says the payload broke the schema: a
    /// harness bug).
    pub errors: BTreeMap<String, u64>,
    pub elapsed: Duration,
    /// Microseconds, answers of every kind.
    pub latency: Histogram<u64>,
}

impl LoadStats {
    pub fn error_count(&self) -> u64 {
        self.errors.values().sum()
    }

    /// 200 answers per second (accepted + duplicates).
    pub fn ok_rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            (self.accepted + self.duplicates) as f64 / secs
        } else {
            0.0
        }
    }

    fn merge(&mut self, other: LoadStats) {
        self.sent += other.sent;
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
        for (k, v) in other.errors {
            *self.errors.entry(k).or_default() += v;
        }
        let _ = self.latency.add(&other.latency);
    }

    fn empty() -> LoadStats {
        LoadStats {
            sent: 0,
            accepted: 0,
            duplicates: 0,
            errors: BTreeMap::new(),
            elapsed: Duration::ZERO,
            latency: new_histogram(),
        }
    }
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 120_000_000, 3).expect("valid histogram bounds")
}

/// Which scheme the generated requests are signed with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scheme {
    Stripe,
    StandardWebhooks,
}

impl Scheme {
    pub fn provider(self) -> &'static str {
        match self {
            Scheme::Stripe => "stripe",
            Scheme::StandardWebhooks => "standard-webhooks",
        }
    }

    /// A realistic event of about 2 KiB before padding.
    pub fn default_fixture(self) -> &'static str {
        match self {
            Scheme::Stripe => "stripe/fixtures/payment_intent.succeeded.json",
            Scheme::StandardWebhooks => "standard-webhooks/fixtures/invoice.paid.json",
        }
    }

    pub fn secret(self) -> &'static str {
        match self {
            Scheme::Stripe => "whsec_bench_only_not_a_secret",
            // Standard Webhooks' published test secret.
            Scheme::StandardWebhooks => "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
        }
    }
}

const ID_PLACEHOLDER: &str = "__HOOKGATE_BENCH_ID__";

/// Builds signed requests: the fixture with a unique id spliced in, padded
/// to the wanted size with a `bench_padding` field.
pub struct RequestFactory {
    scheme: Scheme,
    config: SchemeConfig,
    secret: String,
    host: String,
    path: String,
    prefix: Vec<u8>,
    suffix: Vec<u8>,
    run: String,
}

impl RequestFactory {
    pub fn new(
        scheme: Scheme,
        config: SchemeConfig,
        fixture: &[u8],
        body_bytes: usize,
        addr: SocketAddr,
        path: &str,
    ) -> anyhow::Result<RequestFactory> {
        let mut value: Value = serde_json::from_slice(fixture)?;
        let obj = value
            .as_object_mut()
            .ok_or_else(|| anyhow::anyhow!("the fixture is not a JSON object"))?;
        // Stripe's event id is the body's `id`; Standard Webhooks' is the
        // webhook-id header, and the body carries it only to be unique.
        let id_field = match scheme {
            Scheme::Stripe => "id",
            Scheme::StandardWebhooks => "bench_id",
        };
        obj.insert(id_field.into(), Value::String(ID_PLACEHOLDER.into()));
        obj.insert("bench_padding".into(), Value::String(String::new()));
        let unpadded = serde_json::to_vec(&value)?.len() - ID_PLACEHOLDER.len() + 24;
        let pad = body_bytes.saturating_sub(unpadded);
        value["bench_padding"] = Value::String("x".repeat(pad));
        let text = serde_json::to_string(&value)?;
        let (prefix, suffix) = text
            .split_once(ID_PLACEHOLDER)
            .ok_or_else(|| anyhow::anyhow!("placeholder lost"))?;
        Ok(RequestFactory {
            scheme,
            config,
            secret: scheme.secret().into(),
            host: addr.to_string(),
            path: path.into(),
            prefix: prefix.as_bytes().to_vec(),
            suffix: suffix.as_bytes().to_vec(),
            run: format!("{:08x}", rand::random::<u32>()),
        })
    }

    /// The event id of request `seq` on connection `conn` (24 bytes).
    pub fn event_id(&self, conn: usize, seq: u64) -> String {
        match self.scheme {
            Scheme::Stripe => format!("evt_{}{conn:03x}{seq:09x}", self.run),
            Scheme::StandardWebhooks => format!("msg_{}{conn:03x}{seq:09x}", self.run),
        }
    }

    pub fn body(&self, event_id: &str) -> Bytes {
        let mut body = Vec::with_capacity(self.prefix.len() + event_id.len() + self.suffix.len());
        body.extend_from_slice(&self.prefix);
        body.extend_from_slice(event_id.as_bytes());
        body.extend_from_slice(&self.suffix);
        Bytes::from(body)
    }

    /// Sign `body` now, as the sender would (a retry is signed afresh).
    pub fn request(
        &self,
        event_id: &str,
        body: Bytes,
    ) -> anyhow::Result<hyper::Request<Full<Bytes>>> {
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let signed = verify::sign(&self.config, &self.secret, &body, now, event_id)?;
        let mut builder = hyper::Request::post(&self.path)
            .header("host", &self.host)
            .header("content-type", "application/json")
            .header("user-agent", "hookgate-bench");
        for (k, v) in &signed.headers {
            builder = builder.header(k, v);
        }
        Ok(builder.body(Full::new(body))?)
    }
}

/// Where the processing stage records when each event was acknowledged
/// and when a consumer first saw it; whichever comes second gives the
/// 200 → readable latency.
#[derive(Default)]
pub struct Tracker {
    inner: Mutex<TrackerInner>,
    /// A second consumer timed from the same 200s (the NATS subscriber
    /// beside the `/v1/events` poller).
    next: Option<Arc<Tracker>>,
}

#[derive(Default)]
struct TrackerInner {
    acked: HashMap<String, Instant>,
    seen: HashMap<String, Instant>,
    latency_us: Vec<u64>,
}

impl Tracker {
    /// A tracker whose acknowledgements also go to `next`.
    pub fn chained(next: Arc<Tracker>) -> Tracker {
        Tracker {
            inner: Default::default(),
            next: Some(next),
        }
    }

    pub fn acked(&self, id: String, at: Instant) {
        if let Some(next) = &self.next {
            next.acked(id.clone(), at);
        }
        let mut g = self.inner.lock().unwrap();
        match g.seen.remove(&id) {
            // Read before the client had the 200: processing was faster
            // than the answer's way back.
            Some(_) => g.latency_us.push(0),
            None => {
                g.acked.insert(id, at);
            }
        }
    }

    pub fn seen(&self, id: String, at: Instant) {
        let mut g = self.inner.lock().unwrap();
        match g.acked.remove(&id) {
            Some(t) => {
                let us = at.saturating_duration_since(t).as_micros() as u64;
                g.latency_us.push(us);
            }
            None => {
                g.seen.insert(id, at);
            }
        }
    }

    /// Acknowledged events no consumer has seen yet.
    pub fn outstanding(&self) -> usize {
        self.inner.lock().unwrap().acked.len()
    }

    pub fn histogram(&self) -> Histogram<u64> {
        let mut h = new_histogram();
        for us in &self.inner.lock().unwrap().latency_us {
            let _ = h.record((*us).max(1));
        }
        h
    }
}

struct Shared {
    factory: RequestFactory,
    addr: SocketAddr,
    spec: LoadSpec,
    remaining: AtomicU64,
    measure_from: Instant,
    deadline: Option<Instant>,
    tracker: Option<Arc<Tracker>>,
}

/// Run the load and return what was measured.
pub async fn run(
    factory: RequestFactory,
    addr: SocketAddr,
    spec: LoadSpec,
    tracker: Option<Arc<Tracker>>,
) -> anyhow::Result<LoadStats> {
    let start = Instant::now();
    let (measure_from, deadline, remaining) = match spec.stop {
        Stop::Duration(d) => (start + spec.warmup, Some(start + spec.warmup + d), u64::MAX),
        Stop::Count(n) => (start, None, n),
    };
    let shared = Arc::new(Shared {
        factory,
        addr,
        spec: spec.clone(),
        remaining: AtomicU64::new(remaining),
        measure_from,
        deadline,
        tracker,
    });
    let tasks: Vec<_> = (0..spec.connections.max(1))
        .map(|conn| tokio::spawn(connection(shared.clone(), conn)))
        .collect();
    let mut total = LoadStats::empty();
    for t in tasks {
        total.merge(t.await?);
    }
    let end = Instant::now();
    total.elapsed = match spec.stop {
        // Requests started before the deadline are counted; their answers
        // arrive a little after it.
        Stop::Duration(d) => d,
        Stop::Count(_) => end - start,
    };
    Ok(total)
}

async fn connect(addr: SocketAddr) -> anyhow::Result<SendRequest<Full<Bytes>>> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

/// `true` for the requests (by per-connection sequence) that re-send an
/// earlier event: evenly spread, so small runs have them too.
fn is_duplicate(seq: u64, share: f64) -> bool {
    if share <= 0.0 || seq == 0 {
        return false;
    }
    ((seq + 1) as f64 * share).floor() > (seq as f64 * share).floor()
}

async fn connection(shared: Arc<Shared>, conn: usize) -> LoadStats {
    let mut stats = LoadStats::empty();
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut last_new: Option<(String, Bytes)> = None;
    let mut fresh_seq: u64 = 0;
    let mut pacing = shared.spec.rate.map(|rate| {
        let period = Duration::from_secs_f64(shared.spec.connections.max(1) as f64 / rate);
        // Stagger the connections across one period.
        let offset = period.mul_f64(conn as f64 / shared.spec.connections.max(1) as f64);
        let mut iv = tokio::time::interval_at(tokio::time::Instant::now() + offset, period);
        iv.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
        iv
    });
    let mut seq: u64 = 0;
    loop {
        if let Some(iv) = pacing.as_mut() {
            iv.tick().await;
        }
        if let Some(deadline) = shared.deadline {
            if Instant::now() >= deadline {
                break;
            }
        } else if shared
            .remaining
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
            .is_err()
        {
            break;
        }
        let duplicate = last_new.is_some() && is_duplicate(seq, shared.spec.duplicate_share);
        seq += 1;
        let (event_id, body) = match (&last_new, duplicate) {
            (Some((id, body)), true) => (id.clone(), body.clone()),
            _ => {
                let id = shared.factory.event_id(conn, fresh_seq);
                fresh_seq += 1;
                let body = shared.factory.body(&id);
                last_new = Some((id.clone(), body.clone()));
                (id, body)
            }
        };
        let request = match shared.factory.request(&event_id, body) {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "cannot build a request");
                break;
            }
        };
        let started = Instant::now();
        let counted = started >= shared.measure_from;
        let outcome = send(&mut sender, shared.addr, request).await;
        let done = Instant::now();
        if !counted {
            continue;
        }
        stats.sent += 1;
        let _ = stats
            .latency
            .record(((done - started).as_micros() as u64).max(1));
        match outcome {
            Ok((200, body)) => {
                if contains(&body, b"\"duplicate\":true") {
                    stats.duplicates += 1;
                } else if contains(&body, b"\"status\":\"quarantined\"") {
                    *stats.errors.entry("quarantined".into()).or_default() += 1;
                } else {
                    stats.accepted += 1;
                    if let Some(t) = &shared.tracker {
                        t.acked(event_id, done);
                    }
                }
            }
            Ok((status, _)) => *stats.errors.entry(status.to_string()).or_default() += 1,
            Err(_) => *stats.errors.entry("io".into()).or_default() += 1,
        }
    }
    stats
}

async fn send(
    sender: &mut Option<SendRequest<Full<Bytes>>>,
    addr: SocketAddr,
    request: hyper::Request<Full<Bytes>>,
) -> anyhow::Result<(u16, Bytes)> {
    let usable = match sender.as_mut() {
        Some(s) => s.ready().await.is_ok(),
        None => false,
    };
    if !usable {
        *sender = Some(connect(addr).await?);
    }
    let s = sender.as_mut().expect("connected above");
    let result = async {
        let response = s.send_request(request).await?;
        let status = response.status().as_u16();
        let body = response.into_body().collect().await?.to_bytes();
        anyhow::Ok((status, body))
    }
    .await;
    if result.is_err() {
        *sender = None;
    }
    result
}

/// The gateway's group-commit counters from `GET /metrics`: (commits,
/// requests, queue writes). `None` when the server has no such metrics
/// (the comparison servers).
pub async fn group_commit_counters(addr: SocketAddr) -> Option<(f64, f64, f64)> {
    let mut sender = None;
    let request = hyper::Request::get("/metrics")
        .header("host", addr.to_string())
        .body(Full::new(Bytes::new()))
        .ok()?;
    let (status, body) = send(&mut sender, addr, request).await.ok()?;
    if status != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&body);
    let value = |name: &str| {
        text.lines().find_map(|l| {
            l.strip_prefix(name)?
                .strip_prefix(' ')?
                .trim()
                .parse::<f64>()
                .ok()
        })
    };
    Some((
        value(crate::telemetry::metrics::GROUP_COMMITS)?,
        value(crate::telemetry::metrics::GROUP_COMMIT_REQUESTS).unwrap_or(0.0),
        value(crate::telemetry::metrics::GROUP_COMMIT_QUEUE_WRITES).unwrap_or(0.0),
    ))
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Poll `GET /v1/events` as a consumer would, marking every event seen,
/// until `stop` turns true. Sleeps `interval` when a page comes back empty.
pub async fn poll_events(
    addr: SocketAddr,
    token: &str,
    tracker: Arc<Tracker>,
    interval: Duration,
    stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    let mut sender: Option<SendRequest<Full<Bytes>>> = None;
    let mut cursor = String::from("0");
    let mut seen = 0u64;
    while !*stop.borrow() {
        let request = hyper::Request::get(format!("/v1/events?after={cursor}&limit=1000"))
            .header("host", addr.to_string())
            .header("authorization", format!("Bearer {token}"))
            .body(Full::new(Bytes::new()))?;
        let (status, body) = send(&mut sender, addr, request).await?;
        let at = Instant::now();
        anyhow::ensure!(status == 200, "GET /v1/events answered {status}");
        let page: Value = serde_json::from_slice(&body)?;
        let events = page["events"].as_array().cloned().unwrap_or_default();
        for e in &events {
            if let Some(id) = e["provider_event_id"].as_str() {
                tracker.seen(id.to_string(), at);
                seen += 1;
            }
        }
        if let Some(next) = page["next"].as_str() {
            cursor = next.to_string();
        }
        if events.len() < 1000 {
            tokio::time::sleep(interval).await;
        }
    }
    Ok(seen)
}

/// Mark every catalog event that arrives on `subject` (a core NATS
/// subscription beside the JetStream stream the gateway publishes into)
/// as seen, until `stop` turns true.
pub async fn subscribe_events(
    client: async_nats::Client,
    subject: String,
    tracker: Arc<Tracker>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> anyhow::Result<u64> {
    use futures_util::StreamExt;
    let mut messages = client.subscribe(subject).await?;
    let mut seen = 0u64;
    loop {
        let message = tokio::select! {
            m = messages.next() => m,
            _ = stop.changed() => None,
        };
        let Some(message) = message else { break };
        let at = Instant::now();
        let event: Value = serde_json::from_slice(&message.payload)?;
        if let Some(id) = event["provider_event_id"].as_str() {
            tracker.seen(id.to_string(), at);
            seen += 1;
        }
    }
    Ok(seen)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_duplicate_spreads_the_share_evenly() {
        let n = (0..1000).filter(|s| is_duplicate(*s, 0.2)).count();
        assert_eq!(n, 200);
        assert!(!is_duplicate(0, 0.5));
        assert_eq!((0..100).filter(|s| is_duplicate(*s, 0.0)).count(), 0);
    }
}
