//! The processing queue: deliveries are rows in the same database. Workers
//! lease them, normalize each provider event through its mapping into
//! catalog events, and store those events and the `done` status in one
//! transaction. Catalog event ids derive from the delivery and the mapping
//! entry, so processing twice (after a crash, or a replay) can't duplicate
//! an event. Failures retry with exponential backoff and jitter until
//! `max_attempts`, then the delivery is `dead`.
//!
//! Workers sleep on a `Notify` that the ingest path signals after each
//! commit; a slow sweep timer only covers due retries and expired leases.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tracing::Instrument;

use crate::catalog::{Catalog, CatalogEvent};
use crate::clock::{from_unix_ms, rfc3339, unix_ms, Clock};
use crate::config::QueueSettings;
use crate::providers::Registry;
use crate::store::group_commit::GroupCommitter;
use crate::store::{Claimed, Completed, DynStore, NewEvent, Retry, StoreResult};
use crate::telemetry::metrics as m;

pub struct Processor {
    store: DynStore,
    /// Claims and completions go through the group-commit writer (which
    /// sends them straight to the store where that has several writers).
    writes: GroupCommitter,
    registry: Arc<Registry>,
    catalog: Arc<Catalog>,
    clock: Arc<dyn Clock>,
    settings: QueueSettings,
    wake: Arc<Notify>,
    events_wake: Arc<Notify>,
}

impl Processor {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: DynStore,
        writes: GroupCommitter,
        registry: Arc<Registry>,
        catalog: Arc<Catalog>,
        clock: Arc<dyn Clock>,
        settings: QueueSettings,
        wake: Arc<Notify>,
        events_wake: Arc<Notify>,
    ) -> Processor {
        Processor {
            store,
            writes,
            registry,
            catalog,
            clock,
            settings,
            wake,
            events_wake,
        }
    }

    /// Claim one batch of due deliveries and process it; returns how many
    /// were claimed (0 = nothing due).
    pub async fn run_once(&self) -> StoreResult<usize> {
        let now_ms = unix_ms(self.clock.now());
        let lease_until = now_ms + (self.settings.lease_secs as i64) * 1000;
        let claimed = self
            .writes
            .claim(now_ms, lease_until, self.settings.batch.max(1) as u32)
            .await?;
        let n = claimed.len();
        let mut done = Vec::with_capacity(n);
        for delivery in claimed {
            if let Some(ok) = self.process_one(delivery, now_ms).await? {
                done.push(ok);
            }
        }
        // One commit for the batch's successes (and their audit rows).
        let produced = done.iter().any(|c| !c.events.is_empty());
        self.writes
            .complete_many(done, unix_ms(self.clock.now()))
            .await?;
        if produced {
            self.events_wake.notify_waiters();
        }
        Ok(n)
    }

    /// Process until nothing is due (tests: deterministic, no sleeping).
    pub async fn drain(&self) -> StoreResult<usize> {
        let mut total = 0;
        loop {
            let n = self.run_once().await?;
            if n == 0 {
                return Ok(total);
            }
            total += n;
        }
    }

    /// Normalize one delivery claimed at `started_ms`: its catalog events
    /// to commit with the batch, or `None` when it failed (recorded here,
    /// with its retry).
    async fn process_one(&self, d: Claimed, started_ms: i64) -> StoreResult<Option<Completed>> {
        let span = tracing::info_span!(
            "process",
            source = %d.source,
            provider = %d.provider,
            provider_event_id = %d.provider_event_id,
            delivery_id = %d.id,
            attempt = d.attempts,
        );
        // `instrument`, never `span.enter()`: an entered guard held across
        // an `.await` leaves the span "current" on a thread that goes on to
        // poll other tasks, and once the span closes, tracing-subscriber
        // panics in whatever task clones the current span next (sqlx's
        // `begin` does) — the group-commit writer among them.
        self.process_in_span(d, started_ms).instrument(span).await
    }

    async fn process_in_span(&self, d: Claimed, started_ms: i64) -> StoreResult<Option<Completed>> {
        let now_ms = unix_ms(self.clock.now());
        let labels = [
            ("source", d.source.clone()),
            (
                "provider_event_type",
                d.provider_event_type.clone().unwrap_or_else(|| "-".into()),
            ),
        ];
        metrics::counter!(m::ATTEMPTS, &labels).increment(1);
        match self.normalize(&d) {
            Ok(events) => {
                let count = events.len();
                for e in &events {
                    metrics::counter!(m::CATALOG_EVENTS, "type" => e.event_type.clone())
                        .increment(1);
                }
                if count == 0 {
                    metrics::counter!(m::UNMAPPED, "source" => d.source.clone()).increment(1);
                }
                if count == 0 {
                    tracing::info!(
                        provider_event_type = d.provider_event_type.as_deref().unwrap_or("-"),
                        "no mapping for this provider event type; done with no catalog event"
                    );
                } else {
                    tracing::info!(count, "delivery normalized; commits with its batch");
                }
                Ok(Some(Completed {
                    delivery_id: d.id,
                    started_at_ms: started_ms,
                    events,
                }))
            }
            Err(error) => {
                let retry = if d.attempts >= self.settings.max_attempts {
                    Retry::Dead
                } else {
                    Retry::At(now_ms + self.backoff_ms(d.attempts))
                };
                tracing::warn!(%error, dead = matches!(retry, Retry::Dead), "processing failed");
                metrics::counter!(m::FAILURES, &labels).increment(1);
                if matches!(retry, Retry::Dead) {
                    metrics::counter!(m::DEAD, "source" => d.source.clone()).increment(1);
                }
                self.store
                    .fail(&d.id, started_ms, &error, retry, now_ms)
                    .await?;
                Ok(None)
            }
        }
    }

    /// Exponential backoff with jitter: the n-th retry waits a random time
    /// in [d/2, d] where d = base · 2^(n-1), capped.
    fn backoff_ms(&self, attempts: u32) -> i64 {
        let exp = attempts.saturating_sub(1).min(30);
        let full = self
            .settings
            .backoff_base_ms
            .saturating_mul(1u64 << exp)
            .min(self.settings.backoff_max_ms)
            .max(1);
        rand::thread_rng().gen_range(full / 2..=full) as i64
    }

    /// The provider event → catalog events, validated. Pure apart from
    /// reading the registry and catalog.
    fn normalize(&self, d: &Claimed) -> Result<Vec<NewEvent>, String> {
        let provider = self
            .registry
            .get(&d.provider)
            .ok_or_else(|| format!("provider {:?} is no longer loaded", d.provider))?;
        let payload: Value = provider
            .decode_stored(&d.body, &d.headers_json)
            .map_err(|e| format!("stored body: {e}"))?;
        let item = match (d.item_index, &provider.event.items) {
            (Some(i), Some(ptr)) => payload
                .pointer(ptr)
                .and_then(|items| items.get(i as usize))
                .ok_or_else(|| format!("batch item {ptr}/{i} not found"))?,
            _ => &payload,
        };
        let Some(provider_type) = d.provider_event_type.as_deref() else {
            return Ok(Vec::new());
        };
        let emitted = provider
            .mapping
            .apply(provider_type, item, &self.catalog)
            .map_err(|e| e.to_string())?;
        let received_at = rfc3339(from_unix_ms(d.received_at_ms));
        let occurred_at = d
            .occurred_at_ms
            .map(|ms| rfc3339(from_unix_ms(ms)))
            .unwrap_or_else(|| received_at.clone());
        emitted
            .into_iter()
            .map(|e| {
                let version = self
                    .catalog
                    .get(&e.event_type)
                    .map(|t| t.version)
                    .unwrap_or(1);
                let event = CatalogEvent {
                    id: event_id(&d.id, &e.key, d.received_at_ms),
                    event_type: e.event_type,
                    version,
                    occurred_at: occurred_at.clone(),
                    received_at: received_at.clone(),
                    source: d.source.clone(),
                    provider: d.provider.clone(),
                    provider_event_id: d.provider_event_id.clone(),
                    provider_event_type: d.provider_event_type.clone(),
                    data: e.data,
                };
                Ok(NewEvent {
                    id: event.id.clone(),
                    event_type: event.event_type.clone(),
                    source: event.source.clone(),
                    payload_json: serde_json::to_string(&event).map_err(|e| e.to_string())?,
                })
            })
            .collect()
    }

    /// Run `workers` loops until `shutdown` turns true.
    pub fn spawn_workers(self: &Arc<Self>, shutdown: watch::Receiver<bool>) -> Vec<JoinHandle<()>> {
        (0..self.settings.workers)
            .map(|n| {
                let this = self.clone();
                let mut shutdown = shutdown.clone();
                tokio::spawn(async move {
                    let sweep = Duration::from_millis(this.settings.sweep_interval_ms.max(10));
                    while !*shutdown.borrow() {
                        // Register for the wake-up before looking, so an
                        // insert between the look and the wait isn't missed.
                        let notified = this.wake.notified();
                        tokio::pin!(notified);
                        notified.as_mut().enable();
                        match this.run_once().await {
                            Ok(0) => {}
                            Ok(_) => continue,
                            Err(e) => tracing::warn!(worker = n, error = %e, "queue worker: storage error"),
                        }
                        tokio::select! {
                            _ = &mut notified => {}
                            _ = tokio::time::sleep(sweep) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                })
            })
            .collect()
    }
}

/// `evt_<ULID>`: the delivery's arrival time, then 80 bits of
/// SHA-256(delivery id, mapping key). Deterministic, and sortable by time.
pub fn event_id(delivery_id: &str, key: &str, received_at_ms: i64) -> String {
    let digest = Sha256::new()
        .chain_update(delivery_id.as_bytes())
        .chain_update([0u8])
        .chain_update(key.as_bytes())
        .finalize();
    let mut random = [0u8; 16];
    random[6..].copy_from_slice(&digest[..10]);
    let ulid = ulid::Ulid::from_parts(received_at_ms.max(0) as u64, u128::from_be_bytes(random));
    format!("evt_{ulid}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_id_is_deterministic_and_distinct_per_key() {
        let a = event_id("dlv_1", "invoice.paid#0", 1_700_000_000_000);
        assert_eq!(a, event_id("dlv_1", "invoice.paid#0", 1_700_000_000_000));
        assert_ne!(a, event_id("dlv_1", "invoice.paid#1", 1_700_000_000_000));
        assert_ne!(a, event_id("dlv_2", "invoice.paid#0", 1_700_000_000_000));
        assert!(a.starts_with("evt_") && a.len() == 30);
    }
}
