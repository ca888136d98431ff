//! HTTP push subscriptions: catalog events POSTed to internal endpoints,
//! signed with Standard Webhooks (`webhook-id` = the catalog event id, a
//! fresh `webhook-timestamp`, `webhook-signature` with `v1` HMAC and, when
//! the subscription has a signing key, `v1a` Ed25519).
//!
//! Two loops, both over the store:
//! - the router follows the `events` outbox with a leased cursor (the
//!   `push` row of `sinks`, like a bus publisher) and queues one message per
//!   matching subscription and event, with the event's entity key;
//! - the dispatcher claims due messages (leases; `SKIP LOCKED` on
//!   PostgreSQL), each the oldest unfinished one of its subscription and
//!   entity, sends them, and records every attempt. A failure waits for the
//!   next delay of the subscription's retry schedule (with jitter); after
//!   the last one the message is a dead letter. Enough dead letters in a row
//!   disable the subscription and record `hookgate.subscription.disabled`.
//!
//! New catalog events wake the router, new messages the dispatcher; a
//! sweep timer only covers due retries. Requests never follow redirects,
//! and reach private addresses only when the subscription allows it
//! (`target`). Secrets are `SecretString`s from end to end and never
//! logged.

pub mod target;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use rand::{Rng, RngCore};
use secrecy::{ExposeSecret, SecretString};
use serde_json::{json, Value};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::catalog::{Catalog, CatalogEvent, TypePattern};
use crate::clock::{from_unix_ms, rfc3339, unix_ms, Clock};
use crate::config::{resolve_secret, PushSettings, SecretEnv, SubscriptionSettings};
use crate::ingest::new_id;
use crate::store::{
    ClaimedMessage, DynStore, FailureStreak, ManagedBy, MessageOutcome, NewEvent, NewMessage,
    NewSubscription, PushAttempt, StoreError, StoredEvent, SubscriptionRecord, SubscriptionStatus,
};
use crate::verify::{self, SchemeConfig, StandardWebhooksConfig};

/// The `sinks` row of the router's cursor and lease.
pub use crate::store::PUSH_ROUTER_SINK as ROUTER_SINK;
/// The catalog type recorded when a subscription is disabled.
pub const DISABLED_TYPE: &str = "hookgate.subscription.disabled";
const ROUTER_LEASE_MS: i64 = 15_000;
const ROUTE_BATCH: u32 = 500;
const USER_AGENT: &str = concat!("hookgate/", env!("CARGO_PKG_VERSION"));

/// What went wrong with an operator's request about subscriptions.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("{0}")]
    Invalid(String),
    #[error("no such subscription")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A duration of a retry schedule: `250ms`, `5s`, `5m`, `2h`.
pub fn parse_delay(text: &str) -> Result<i64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let n: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a delay such as 5s, 5m or 2h"))?;
    let factor = match unit.trim() {
        "ms" => 1,
        "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        _ => return Err(format!("{text:?}: the unit is one of ms, s, m, h")),
    };
    n.checked_mul(factor)
        .filter(|ms| *ms <= 7 * 24 * 3_600_000)
        .ok_or_else(|| format!("{text:?} is longer than a week"))
}

pub fn parse_schedule(items: &[String]) -> Result<Vec<i64>, String> {
    if items.len() > 50 {
        return Err("at most 50 retries".into());
    }
    items.iter().map(|s| parse_delay(s)).collect()
}

/// `5000` → `5s`, for answers.
pub fn format_delay(ms: i64) -> String {
    match ms {
        ms if ms % 3_600_000 == 0 && ms > 0 => format!("{}h", ms / 3_600_000),
        ms if ms % 60_000 == 0 && ms > 0 => format!("{}m", ms / 60_000),
        ms if ms % 1_000 == 0 && ms > 0 => format!("{}s", ms / 1_000),
        ms => format!("{ms}ms"),
    }
}

pub fn parse_types(items: &[String]) -> Result<Vec<TypePattern>, String> {
    if items.is_empty() {
        return Err("give at least one type pattern (invoice.*, payment.failed, *)".into());
    }
    let mut out = Vec::new();
    for item in items {
        let parsed = TypePattern::parse_list(item)?;
        if parsed.len() != 1 {
            return Err(format!("{item:?}: one pattern per entry"));
        }
        out.extend(parsed);
    }
    Ok(out)
}

/// The delay before retry number `attempt` (1-based: after the first
/// failure), never shorter than the schedule says, up to 20 % longer so
/// endpoints that fail together aren't retried together.
pub fn retry_delay_ms(schedule: &[i64], attempt: u32) -> Option<i64> {
    let base = *schedule.get(attempt.checked_sub(1)? as usize)?;
    let jitter = if base > 0 {
        rand::thread_rng().gen_range(0..=base / 5)
    } else {
        0
    };
    Some(base + jitter)
}

/// Data fields that name the entity an event is about, most specific first.
const ENTITY_FIELDS: [&str; 10] = [
    "invoice_id",
    "subscription_id",
    "payment_id",
    "dispute_id",
    "customer_id",
    "domain",
    "alert_id",
    "monitor_id",
    "certificate_id",
    "ticket_id",
];

/// The ordering key of a catalog event: its family's own identifier
/// (`invoice_id` for `invoice.*`, `domain` for `domain.*`), else the first
/// known identifier in `data`, else the source alone. Events with the same
/// key reach a subscription in catalog order.
pub fn entity_key(event_type: &str, source: &str, payload_json: &str) -> String {
    let data = serde_json::from_str::<Value>(payload_json)
        .ok()
        .and_then(|v| v.get("data").cloned())
        .unwrap_or(Value::Null);
    let family = event_type.split('.').next().unwrap_or_default();
    let own = [format!("{family}_id"), family.to_string()];
    let fields = own
        .iter()
        .map(String::as_str)
        .chain(ENTITY_FIELDS.iter().copied());
    for field in fields {
        let value = match data.get(field) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => continue,
        };
        return format!("{source}/{field}={value}");
    }
    source.to_string()
}

/// A new HMAC secret in Standard Webhooks' encoding.
pub fn generate_secret() -> SecretString {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    SecretString::from(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

fn scheme() -> SchemeConfig {
    SchemeConfig::StandardWebhooks(StandardWebhooksConfig::default())
}

/// Check that `key` signs (a `whsec_` secret, or with `ed25519` a `whsk_`
/// key); the error never shows the key.
pub fn check_key(key: &SecretString, ed25519: bool, field: &str) -> Result<(), String> {
    let value = key.expose_secret();
    let (prefix, what) = if ed25519 {
        ("whsk_", "a whsk_ Ed25519 secret key")
    } else {
        ("whsec_", "a whsec_ secret")
    };
    if !value.starts_with(prefix) {
        return Err(format!("{field}: must be {what}"));
    }
    verify::sign(&scheme(), value, b"{}", 0, "msg_check")
        .map(|_| ())
        .map_err(|e| format!("{field}: {e}"))
}

/// The `webhook-signature` value: one `v1` per HMAC secret, a `v1a` for the
/// signing key.
pub fn signature_header(
    secrets: &[&SecretString],
    signing_key: Option<&SecretString>,
    id: &str,
    timestamp: i64,
    body: &[u8],
) -> Result<String, String> {
    let mut signatures = Vec::new();
    for key in secrets.iter().copied().chain(signing_key) {
        let signed = verify::sign(&scheme(), key.expose_secret(), body, timestamp, id)
            .map_err(|e| format!("cannot sign: {e}"))?;
        let value = signed
            .headers
            .into_iter()
            .find(|(name, _)| name == "webhook-signature")
            .map(|(_, v)| v)
            .ok_or("cannot sign: no signature produced")?;
        signatures.push(value);
    }
    if signatures.is_empty() {
        return Err("the subscription has no secret".into());
    }
    Ok(signatures.join(" "))
}

/// A config subscription's secrets, resolved at start.
struct ConfigKeys {
    secret: SecretString,
    signing_key: Option<SecretString>,
}

/// What an operator asks to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    pub name: String,
    pub url: String,
    pub types: Vec<String>,
    pub source: Option<String>,
    /// `None`: one is generated and returned once.
    pub secret: Option<SecretString>,
    pub signing_key: Option<SecretString>,
    pub timeout_ms: Option<u64>,
    pub retry_schedule: Option<Vec<String>>,
    pub allow_private_targets: bool,
    pub disable_after_dead_letters: Option<u32>,
    pub disable_after_failing_hours: Option<u32>,
}

pub struct Push {
    store: DynStore,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    settings: PushSettings,
    owner: String,
    config: Vec<NewSubscription>,
    config_keys: HashMap<String, ConfigKeys>,
    /// Resolves through `target::GuardedResolver`.
    guarded: reqwest::Client,
    /// For subscriptions that allow private targets.
    open: reqwest::Client,
    /// Signalled when catalog events commit.
    events_wake: Arc<Notify>,
    /// Signalled when messages become due (queued, replayed, resumed).
    wake: Arc<Notify>,
}

/// Settings of one subscription, checked, as the store keeps them.
fn subscription_from_settings(
    i: usize,
    s: &SubscriptionSettings,
    env: &dyn SecretEnv,
) -> Result<(NewSubscription, ConfigKeys), String> {
    let field = |name: &str| format!("subscriptions[{i}].{name}");
    target::parse_url(&s.url).map_err(|e| format!("{}: {e}", field("url")))?;
    parse_types(&s.types).map_err(|e| format!("{}: {e}", field("types")))?;
    let schedule = parse_schedule(&s.retry_schedule)
        .map_err(|e| format!("{}: {e}", field("retry_schedule")))?;
    let secret = resolve_secret(&s.secret, &field("secret"), env).map_err(|e| e.to_string())?;
    check_key(&secret, false, &field("secret"))?;
    let signing_key = match &s.signing_key {
        Some(reference) => {
            let key =
                resolve_secret(reference, &field("signing_key"), env).map_err(|e| e.to_string())?;
            check_key(&key, true, &field("signing_key"))?;
            Some(key)
        }
        None => None,
    };
    Ok((
        NewSubscription {
            name: s.name.clone(),
            url: s.url.clone(),
            types: s.types.clone(),
            source: s.source.clone(),
            secret: None,
            signing_key: None,
            timeout_ms: s.timeout_ms as i64,
            retry_schedule_ms: schedule,
            allow_private: s.allow_private_targets,
            disable_after: s.disable_after_dead_letters,
            disable_after_hours: s.disable_after_failing_hours,
        },
        ConfigKeys {
            secret,
            signing_key,
        },
    ))
}

/// `hookgate check`: every `[[subscriptions]]` entry checked and its
/// secrets resolved, as at start; returns how many there are.
pub fn check_subscriptions(
    subscriptions: &[SubscriptionSettings],
    env: &dyn SecretEnv,
) -> Result<usize, String> {
    for (i, s) in subscriptions.iter().enumerate() {
        subscription_from_settings(i, s, env)?;
    }
    Ok(subscriptions.len())
}

fn client(guarded: bool) -> Result<reqwest::Client, String> {
    let mut builder = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .no_proxy()
        .user_agent(USER_AGENT)
        .connect_timeout(Duration::from_secs(10))
        .pool_idle_timeout(Duration::from_secs(30));
    if guarded {
        builder = builder.dns_resolver(Arc::new(target::GuardedResolver));
    }
    builder.build().map_err(|e| format!("HTTP client: {e}"))
}

/// A reqwest error with its causes, which name what failed (the resolver's
/// refusal, a refused connection), without the request's headers.
fn describe(e: reqwest::Error, timeout_ms: i64) -> String {
    if e.is_timeout() {
        return format!("timed out after {timeout_ms} ms");
    }
    let e = e.without_url();
    let mut text = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(cause) = source {
        let s = cause.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = cause.source();
    }
    text
}

impl Push {
    /// Check the config's subscriptions and resolve their secrets; errors
    /// name the field.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: DynStore,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        settings: PushSettings,
        subscriptions: &[SubscriptionSettings],
        env: &dyn SecretEnv,
        owner: String,
        events_wake: Arc<Notify>,
    ) -> Result<Push, String> {
        let mut config = Vec::new();
        let mut config_keys = HashMap::new();
        for (i, s) in subscriptions.iter().enumerate() {
            let (sub, keys) = subscription_from_settings(i, s, env)?;
            config_keys.insert(sub.name.clone(), keys);
            config.push(sub);
        }
        Ok(Push {
            store,
            catalog,
            clock,
            settings,
            owner,
            config,
            config_keys,
            guarded: client(true)?,
            open: client(false)?,
            events_wake,
            wake: Arc::new(Notify::new()),
        })
    }

    fn now_ms(&self) -> i64 {
        unix_ms(self.clock.now())
    }

    /// Write the config's subscriptions to the store (at start).
    pub async fn upsert_config(&self) -> Result<(), StoreError> {
        self.store
            .upsert_config_subscriptions(&self.config, self.now_ms())
            .await
    }

    /// Wake the dispatcher (something became due).
    pub fn wake(&self) {
        self.wake.notify_waiters();
    }

    /// One router round: queue messages for the catalog events after the
    /// cursor. `Ok(None)` when another instance routes.
    pub async fn route_once(&self) -> Result<Option<usize>, StoreError> {
        let subs = self.store.list_subscriptions().await?;
        if subs.is_empty() {
            // No cursor row while there is nothing to route (the store
            // drops it with the last subscription): an idle router neither
            // writes nor holds retention back.
            return Ok(Some(0));
        }
        let now = self.now_ms();
        let Some(mut cursor) = self
            .store
            .sink_lease(ROUTER_SINK, &self.owner, now, now + ROUTER_LEASE_MS)
            .await?
        else {
            return Ok(None);
        };
        // Nothing before the oldest subscription's start is for anyone.
        let oldest = subs.iter().map(|s| s.start_seq).min().unwrap_or(0);
        if cursor < oldest {
            self.store
                .advance_sink(ROUTER_SINK, &self.owner, oldest)
                .await?;
            cursor = oldest;
        }
        let events = self.store.list_events(cursor, &[], ROUTE_BATCH).await?;
        let Some(last) = events.last().map(|e| e.seq) else {
            return Ok(Some(0));
        };
        // Read again after the events: a subscription created before they
        // were read is matched; one created after starts past them
        // (`start_seq`), so none misses an event it was due.
        let subs = self.store.list_subscriptions().await?;
        let compiled: Vec<(&SubscriptionRecord, Vec<TypePattern>)> = subs
            .iter()
            .map(|s| (s, parse_types(&s.types).unwrap_or_default()))
            .collect();
        let messages: Vec<NewMessage> = events
            .iter()
            .flat_map(|e| {
                compiled
                    .iter()
                    .filter(move |(s, patterns)| matches(s, patterns, e))
                    .map(move |(s, _)| NewMessage {
                        id: new_id("msg", now),
                        subscription: s.name.clone(),
                        event_id: e.id.clone(),
                        event_seq: e.seq,
                        event_type: e.event_type.clone(),
                        entity: entity_key(&e.event_type, &e.source, &e.payload_json),
                        created_at_ms: now,
                    })
            })
            .collect();
        let queued = self.store.enqueue_messages(&messages).await?;
        self.store
            .advance_sink(ROUTER_SINK, &self.owner, last)
            .await?;
        if queued > 0 {
            self.wake.notify_waiters();
        }
        Ok(Some(events.len()))
    }

    /// One dispatcher round: claim due messages, send them concurrently,
    /// record each attempt. Returns how many were sent.
    pub async fn deliver_once(&self) -> Result<usize, StoreError> {
        let subs = self.store.list_subscriptions().await?;
        if !subs.iter().any(|s| s.status == SubscriptionStatus::Active) {
            // Nothing can be due: skip the claim, a write transaction.
            return Ok(0);
        }
        let now = self.now_ms();
        let lease_until = now + (self.settings.lease_secs as i64) * 1000;
        let claimed = self
            .store
            .claim_messages(now, lease_until, self.settings.batch.max(1))
            .await?;
        if claimed.is_empty() {
            return Ok(0);
        }
        // The list read before the claim serves, unless a claimed message
        // belongs to a subscription created since.
        let subs: HashMap<String, SubscriptionRecord> = if claimed
            .iter()
            .all(|m| subs.iter().any(|s| s.name == m.subscription))
        {
            subs.into_iter().map(|s| (s.name.clone(), s)).collect()
        } else {
            self.store
                .list_subscriptions()
                .await?
                .into_iter()
                .map(|s| (s.name.clone(), s))
                .collect()
        };
        let attempts = futures_util::future::join_all(
            claimed
                .iter()
                .map(|m| self.attempt(m, subs.get(&m.subscription))),
        )
        .await;
        for attempt in &attempts {
            let streak = self.store.finish_message(attempt, self.now_ms()).await?;
            let label = attempt.subscription.clone();
            metrics::counter!(crate::telemetry::metrics::PUSH_ATTEMPTS, "subscription" => label.clone(), "outcome" => attempt.outcome.as_str())
                .increment(1);
            let Some(sub) = subs.get(&attempt.subscription) else {
                continue;
            };
            if let Some(reason) = disable_reason(sub, &streak, attempt, self.now_ms()) {
                self.disable(sub, &reason, streak.dead_letters, attempt.error.as_deref())
                    .await?;
            }
        }
        Ok(claimed.len())
    }

    /// Route and deliver until nothing is due (tests: no sleeping).
    pub async fn drain(&self) -> Result<usize, StoreError> {
        let mut sent = 0;
        loop {
            let mut routed = 0;
            while let Some(n) = self.route_once().await? {
                if n == 0 {
                    break;
                }
                routed += n;
            }
            let n = self.deliver_once().await?;
            sent += n;
            if n == 0 && routed == 0 {
                return Ok(sent);
            }
        }
    }

    /// Send one message; the attempt as it ended.
    async fn attempt(&self, m: &ClaimedMessage, sub: Option<&SubscriptionRecord>) -> PushAttempt {
        let started = self.now_ms();
        let clock = Instant::now();
        let (status_code, response_body, error) = match sub {
            None => (None, None, Some("the subscription was deleted".to_string())),
            Some(sub) => match self.send(m, sub).await {
                Ok((status, body)) if (200..300).contains(&status) => (Some(status), body, None),
                Ok((status, body)) => {
                    let why = if (300..400).contains(&status) {
                        format!("HTTP {status}: redirects are not followed")
                    } else {
                        format!("HTTP {status}")
                    };
                    (Some(status), body, Some(why))
                }
                Err(e) => (None, None, Some(e)),
            },
        };
        let latency_ms = clock.elapsed().as_millis().min(i64::MAX as u128) as i64;
        let finished = self.now_ms();
        let gone = m.payload_json.is_none() || sub.is_none();
        let outcome = match &error {
            None => MessageOutcome::Delivered,
            Some(_) if gone => MessageOutcome::Dead,
            Some(_) => {
                let schedule = sub.map(|s| s.retry_schedule_ms.as_slice()).unwrap_or(&[]);
                match retry_delay_ms(schedule, m.attempts) {
                    Some(delay) => MessageOutcome::Retry(finished + delay),
                    None => MessageOutcome::Dead,
                }
            }
        };
        if let Some(e) = &error {
            tracing::warn!(
                subscription = %m.subscription,
                message_id = %m.id,
                event_id = %m.event_id,
                attempt = m.attempts,
                error = %e,
                dead = outcome == MessageOutcome::Dead,
                "push attempt failed"
            );
        }
        PushAttempt {
            message_id: m.id.clone(),
            subscription: m.subscription.clone(),
            started_at_ms: started,
            finished_at_ms: finished,
            status_code,
            latency_ms,
            response_body,
            error,
            outcome,
        }
    }

    /// The HTTP request: status and the start of the body, or why there
    /// was no answer.
    async fn send(
        &self,
        m: &ClaimedMessage,
        sub: &SubscriptionRecord,
    ) -> Result<(u16, Option<String>), String> {
        let body = m
            .payload_json
            .as_deref()
            .ok_or("the catalog event was removed by retention")?;
        let url = target::parse_url(&sub.url)?;
        target::check_literal(&url, sub.allow_private)?;
        let now = self.now_ms();
        let (secret, previous, signing_key) = match sub.managed_by {
            ManagedBy::Config => {
                let keys = self
                    .config_keys
                    .get(&sub.name)
                    .ok_or("the subscription is no longer in this instance's config")?;
                (Some(&keys.secret), None, keys.signing_key.as_ref())
            }
            ManagedBy::Api => (
                sub.secret.as_ref(),
                sub.previous_secret
                    .as_ref()
                    .filter(|_| sub.previous_until_ms.is_some_and(|until| until > now)),
                sub.signing_key.as_ref(),
            ),
        };
        let secrets: Vec<&SecretString> = secret.into_iter().chain(previous).collect();
        let timestamp = now.div_euclid(1000);
        let signature = signature_header(
            &secrets,
            signing_key,
            &m.event_id,
            timestamp,
            body.as_bytes(),
        )?;
        let client = if sub.allow_private {
            &self.open
        } else {
            &self.guarded
        };
        let timeout_ms = sub.timeout_ms.max(1);
        let response = client
            .post(url)
            .timeout(Duration::from_millis(timeout_ms as u64))
            .header("content-type", "application/json")
            .header("webhook-id", &m.event_id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(body.to_string())
            .send()
            .await
            .map_err(|e| describe(e, timeout_ms))?;
        let status = response.status().as_u16();
        let kept = self.read_start(response).await;
        Ok((status, kept))
    }

    /// Up to `response_body_bytes` of the answer; a body that fails midway
    /// keeps what arrived.
    async fn read_start(&self, mut response: reqwest::Response) -> Option<String> {
        let limit = self.settings.response_body_bytes;
        let mut kept = Vec::new();
        while kept.len() < limit {
            match response.chunk().await {
                Ok(Some(chunk)) => kept.extend_from_slice(&chunk),
                _ => break,
            }
        }
        kept.truncate(limit);
        (!kept.is_empty()).then(|| String::from_utf8_lossy(&kept).into_owned())
    }

    /// Disable a subscription that keeps failing (`reason` says how; its
    /// dead letters in a row are `streak`) and record
    /// `hookgate.subscription.disabled`.
    async fn disable(
        &self,
        sub: &SubscriptionRecord,
        reason: &str,
        streak: u32,
        last_error: Option<&str>,
    ) -> Result<(), StoreError> {
        let now = self.now_ms();
        let mut data = json!({
            "subscription": sub.name,
            "reason": reason,
            "dead_letters": streak,
        });
        if let Some(e) = last_error {
            data["last_error"] = json!(e.chars().take(500).collect::<String>());
        }
        let id = new_id("evt", now);
        let version = match self.catalog.get(DISABLED_TYPE) {
            Some(t) => {
                if let Err(errors) = t.validate(&data) {
                    tracing::error!(?errors, "{DISABLED_TYPE} does not match its catalog schema");
                }
                t.version
            }
            None => 1,
        };
        let at = rfc3339(from_unix_ms(now));
        let event = CatalogEvent {
            id: id.clone(),
            event_type: DISABLED_TYPE.into(),
            version,
            occurred_at: at.clone(),
            received_at: at,
            source: "hookgate".into(),
            provider: "hookgate".into(),
            provider_event_id: id.clone(),
            provider_event_type: None,
            data,
        };
        let payload_json =
            serde_json::to_string(&event).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let disabled = self
            .store
            .disable_subscription(
                &sub.name,
                reason,
                &NewEvent {
                    id,
                    event_type: DISABLED_TYPE.into(),
                    source: "hookgate".into(),
                    payload_json,
                },
                now,
            )
            .await?;
        if disabled {
            metrics::counter!(crate::telemetry::metrics::PUSH_DISABLED, "subscription" => sub.name.clone())
                .increment(1);
            tracing::warn!(subscription = %sub.name, streak, "push subscription disabled");
            self.events_wake.notify_waiters();
        }
        Ok(())
    }

    /// Create an API-managed subscription; the generated secret, when the
    /// request brought none (shown to the operator once).
    pub async fn create(
        &self,
        req: CreateRequest,
    ) -> Result<(SubscriptionRecord, Option<SecretString>), PushError> {
        if !crate::config::valid_source_name(&req.name) {
            return Err(PushError::Invalid(format!(
                "name: {:?} is not valid (lowercase letters, digits, '-' and '_', 1 to 64 characters)",
                req.name
            )));
        }
        if let Some(source) = req.source.as_deref().filter(|s| !s.is_empty()) {
            if !crate::config::valid_source_name(source) {
                return Err(PushError::Invalid(format!(
                    "source: {source:?} is not a source name"
                )));
            }
        }
        let url =
            target::parse_url(&req.url).map_err(|e| PushError::Invalid(format!("url: {e}")))?;
        target::check_literal(&url, req.allow_private_targets)
            .map_err(|e| PushError::Invalid(format!("url: {e}")))?;
        parse_types(&req.types).map_err(|e| PushError::Invalid(format!("types: {e}")))?;
        let schedule = match &req.retry_schedule {
            Some(items) => parse_schedule(items),
            None => parse_schedule(&crate::config::default_retry_schedule()),
        }
        .map_err(|e| PushError::Invalid(format!("retry_schedule: {e}")))?;
        let timeout_ms = req
            .timeout_ms
            .unwrap_or_else(crate::config::default_subscription_timeout_ms);
        if timeout_ms == 0 || timeout_ms >= self.settings.lease_secs.saturating_mul(1000) {
            return Err(PushError::Invalid(format!(
                "timeout_ms: must be above 0 and below {} s",
                self.settings.lease_secs
            )));
        }
        let generated = req.secret.is_none().then(generate_secret);
        let secret = req.secret.clone().or_else(|| generated.clone());
        if let Some(s) = &secret {
            check_key(s, false, "secret").map_err(PushError::Invalid)?;
        }
        if let Some(k) = &req.signing_key {
            check_key(k, true, "signing_key").map_err(PushError::Invalid)?;
        }
        let sub = NewSubscription {
            name: req.name.clone(),
            url: req.url,
            types: req.types,
            source: req.source.filter(|s| !s.is_empty()),
            secret,
            signing_key: req.signing_key,
            timeout_ms: timeout_ms as i64,
            retry_schedule_ms: schedule,
            allow_private: req.allow_private_targets,
            disable_after: req
                .disable_after_dead_letters
                .unwrap_or_else(crate::config::default_disable_after),
            disable_after_hours: req.disable_after_failing_hours.unwrap_or(0),
        };
        if !self.store.create_subscription(&sub, self.now_ms()).await? {
            return Err(PushError::Conflict(format!(
                "a subscription named {:?} exists",
                req.name
            )));
        }
        tracing::info!(subscription = %req.name, "push subscription created");
        let record = self
            .store
            .get_subscription(&req.name)
            .await?
            .ok_or(PushError::NotFound)?;
        Ok((record, generated))
    }

    /// Pause or resume; resuming wakes the dispatcher for the backlog.
    pub async fn set_status(
        &self,
        name: &str,
        status: SubscriptionStatus,
    ) -> Result<SubscriptionRecord, PushError> {
        let reason = (status == SubscriptionStatus::Paused).then_some("paused by an operator");
        if !self
            .store
            .set_subscription_status(name, status, reason, self.now_ms())
            .await?
        {
            return Err(PushError::NotFound);
        }
        tracing::info!(subscription = %name, status = status.as_str(), "push subscription status changed");
        if status == SubscriptionStatus::Active {
            self.wake();
        }
        self.store
            .get_subscription(name)
            .await?
            .ok_or(PushError::NotFound)
    }

    /// Delete an API-managed subscription, or a config one that is no
    /// longer in the config file (one that is would come back at the next
    /// start).
    pub async fn delete(&self, name: &str) -> Result<(), PushError> {
        self.store
            .get_subscription(name)
            .await?
            .ok_or(PushError::NotFound)?;
        if self.config_keys.contains_key(name) {
            return Err(PushError::Conflict(
                "this subscription is defined in the config file; remove it there (pause it meanwhile)"
                    .into(),
            ));
        }
        if !self.store.delete_subscription(name).await? {
            return Err(PushError::NotFound);
        }
        tracing::info!(subscription = %name, "push subscription deleted");
        Ok(())
    }

    /// A new secret for an API-managed subscription; the old one keeps
    /// signing (a second `v1` signature) for `overlap_secs`. Returns the
    /// generated secret when none was given.
    pub async fn rotate(
        &self,
        name: &str,
        secret: Option<SecretString>,
        overlap_secs: u64,
    ) -> Result<(SubscriptionRecord, Option<SecretString>), PushError> {
        let sub = self
            .store
            .get_subscription(name)
            .await?
            .ok_or(PushError::NotFound)?;
        if sub.managed_by == ManagedBy::Config {
            return Err(PushError::Conflict(
                "this subscription's secret is a reference in the config file; rotate it there"
                    .into(),
            ));
        }
        if overlap_secs > 7 * 24 * 3600 {
            return Err(PushError::Invalid("overlap_secs: at most a week".into()));
        }
        let generated = secret.is_none().then(generate_secret);
        let new = secret
            .or_else(|| generated.clone())
            .ok_or(PushError::NotFound)?;
        check_key(&new, false, "secret").map_err(PushError::Invalid)?;
        let now = self.now_ms();
        let until = now + (overlap_secs as i64) * 1000;
        if !self
            .store
            .rotate_subscription_secret(name, &new, until, now)
            .await?
        {
            return Err(PushError::NotFound);
        }
        tracing::info!(subscription = %name, overlap_secs, "push subscription secret rotated");
        let record = self
            .store
            .get_subscription(name)
            .await?
            .ok_or(PushError::NotFound)?;
        Ok((record, generated))
    }

    /// Replay one dead letter (or all of them).
    pub async fn replay(&self, name: &str, message_id: Option<&str>) -> Result<u64, PushError> {
        if self.store.get_subscription(name).await?.is_none() {
            return Err(PushError::NotFound);
        }
        let n = self
            .store
            .replay_messages(name, message_id, self.now_ms())
            .await?;
        if n > 0 {
            tracing::info!(subscription = %name, count = n, "dead letters replayed by an operator");
            self.wake();
        }
        Ok(n)
    }

    pub fn now(&self) -> i64 {
        self.now_ms()
    }

    /// Whether pushes to `sub` carry a `v1a` (Ed25519) signature.
    pub fn signs_v1a(&self, sub: &SubscriptionRecord) -> bool {
        match sub.managed_by {
            ManagedBy::Api => sub.signing_key.is_some(),
            ManagedBy::Config => self
                .config_keys
                .get(&sub.name)
                .is_some_and(|k| k.signing_key.is_some()),
        }
    }

    /// The router and the dispatcher, until `shutdown`.
    pub fn spawn(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        let router = {
            let this = self.clone();
            let mut shutdown = shutdown.clone();
            tokio::spawn(async move {
                let sweep = Duration::from_millis(this.settings.sweep_interval_ms.max(10));
                while !*shutdown.borrow() {
                    let notified = this.events_wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match this.route_once().await {
                        Ok(Some(n)) if n > 0 => continue,
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "push router: storage error"),
                    }
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(sweep) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                let _ = this.store.release_sink(ROUTER_SINK, &this.owner).await;
            })
        };
        let dispatcher = {
            let this = self.clone();
            let mut shutdown = shutdown;
            tokio::spawn(async move {
                let sweep = Duration::from_millis(this.settings.sweep_interval_ms.max(10));
                while !*shutdown.borrow() {
                    let notified = this.wake.notified();
                    tokio::pin!(notified);
                    notified.as_mut().enable();
                    match this.deliver_once().await {
                        Ok(0) => {}
                        Ok(_) => continue,
                        Err(e) => tracing::warn!(error = %e, "push dispatcher: storage error"),
                    }
                    tokio::select! {
                        _ = &mut notified => {}
                        _ = tokio::time::sleep(sweep) => {}
                        _ = shutdown.changed() => {}
                    }
                }
            })
        };
        vec![router, dispatcher]
    }
}

/// Why an attempt's outcome disables its subscription, if it does.
fn disable_reason(
    sub: &SubscriptionRecord,
    streak: &FailureStreak,
    attempt: &PushAttempt,
    now_ms: i64,
) -> Option<String> {
    match attempt.outcome {
        MessageOutcome::Delivered => None,
        MessageOutcome::Dead
            if sub.disable_after > 0 && streak.dead_letters >= sub.disable_after =>
        {
            Some(format!("{} dead letters in a row", streak.dead_letters))
        }
        _ => {
            let hours = i64::from(sub.disable_after_hours);
            let since = streak.failing_since_ms?;
            (hours > 0 && now_ms - since >= hours * 3_600_000)
                .then(|| format!("failing without a delivery for {hours} hours or more"))
        }
    }
}

fn matches(sub: &SubscriptionRecord, patterns: &[TypePattern], e: &StoredEvent) -> bool {
    let source_ok = match sub.source.as_deref() {
        Some(s) => s == e.source,
        None => true,
    };
    e.seq > sub.start_seq && source_ok && patterns.iter().any(|p| p.matches(&e.event_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_delay_reads_units_and_refuses_nonsense() {
        assert_eq!(parse_delay("250ms").unwrap(), 250);
        assert_eq!(parse_delay("5s").unwrap(), 5_000);
        assert_eq!(parse_delay("5m").unwrap(), 300_000);
        assert_eq!(parse_delay("10h").unwrap(), 36_000_000);
        for bad in ["", "5", "s", "5d", "-5s", "99999999999h"] {
            assert!(parse_delay(bad).is_err(), "{bad:?} accepted");
        }
        assert_eq!(format_delay(300_000), "5m");
        assert_eq!(format_delay(250), "250ms");
    }

    #[test]
    fn default_schedule_retries_for_at_least_a_day() {
        let total: i64 = parse_schedule(&crate::config::default_retry_schedule())
            .unwrap()
            .iter()
            .sum();
        assert!(total >= 24 * 3_600_000, "{total}");
    }

    #[test]
    fn retry_delay_follows_the_schedule_with_bounded_jitter() {
        let schedule = [1_000, 60_000];
        for _ in 0..100 {
            let d = retry_delay_ms(&schedule, 1).unwrap();
            assert!((1_000..=1_200).contains(&d), "{d}");
            let d = retry_delay_ms(&schedule, 2).unwrap();
            assert!((60_000..=72_000).contains(&d), "{d}");
        }
        assert_eq!(retry_delay_ms(&schedule, 3), None);
        assert_eq!(retry_delay_ms(&schedule, 0), None);
    }

    #[test]
    fn entity_key_prefers_the_family_identifier_then_known_ones_then_source() {
        let e = |data: Value| json!({ "data": data }).to_string();
        assert_eq!(
            entity_key(
                "invoice.paid",
                "stripe",
                &e(json!({"customer_id": "c", "invoice_id": "in_1"}))
            ),
            "stripe/invoice_id=in_1"
        );
        assert_eq!(
            entity_key(
                "payment.failed",
                "stripe",
                &e(json!({"invoice_id": "in_1", "payment_id": "pi"}))
            ),
            "stripe/payment_id=pi"
        );
        assert_eq!(
            entity_key(
                "domain.renewed",
                "dns",
                &e(json!({"domain": "example.com"}))
            ),
            "dns/domain=example.com"
        );
        assert_eq!(
            entity_key("monitor.down", "up", &e(json!({"monitor_id": 12}))),
            "up/monitor_id=12"
        );
        assert_eq!(entity_key("x.y", "src", &e(json!({}))), "src");
        assert_eq!(entity_key("x.y", "src", "not json"), "src");
    }

    #[test]
    fn signature_header_lists_one_signature_per_key() {
        let a = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw".to_string());
        let b = generate_secret();
        let one = signature_header(&[&a], None, "evt_1", 1, b"{}").unwrap();
        assert!(one.starts_with("v1,") && !one.contains(' '), "{one}");
        let two = signature_header(&[&a, &b], None, "evt_1", 1, b"{}").unwrap();
        assert_eq!(two.split(' ').count(), 2);
        assert!(signature_header(&[], None, "evt_1", 1, b"{}").is_err());
    }

    #[test]
    fn check_key_refuses_wrong_kinds_without_echoing_them() {
        let err =
            check_key(&SecretString::from("hunter2".to_string()), false, "secret").unwrap_err();
        assert!(err.contains("whsec_") && !err.contains("hunter2"), "{err}");
        check_key(&generate_secret(), false, "secret").unwrap();
        assert!(check_key(&generate_secret(), true, "signing_key").is_err());
    }
}
