//! Retention: a background task that removes what `[retention]` says may
//! go — raw bodies of done deliveries, old rejections, and eventually done
//! deliveries themselves (their dedupe keys, kept at least 7 days, longer
//! than any sender retries). Dead and quarantined deliveries are never
//! touched: they wait for an operator. Delivered push messages go after
//! `push_days` (dead letters, like dead deliveries, stay). Time comes from the injected clock,
//! so tests move it instead of sleeping and call `run_once`.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::{unix_ms, Clock};
use crate::config::RetentionSettings;
use crate::store::{DynStore, Purge, Purged, StoreResult};
use crate::telemetry::metrics as m;

const DAY_MS: i64 = 24 * 3600 * 1000;

/// Rows removed per statement: short transactions, so ingestion never
/// waits long behind retention.
const CHUNK: u32 = 500;

pub struct Retention {
    store: DynStore,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
}

impl Retention {
    pub fn new(store: DynStore, clock: Arc<dyn Clock>, settings: RetentionSettings) -> Retention {
        Retention {
            store,
            clock,
            settings,
        }
    }

    /// The cutoffs for `now_ms`; 0 days keeps for ever.
    pub fn cutoffs(&self, now_ms: i64) -> Purge {
        let before = |days: u32| (days > 0).then(|| now_ms - i64::from(days) * DAY_MS);
        Purge {
            bodies_before_ms: before(self.settings.raw_body_days),
            rejections_before_ms: before(self.settings.rejections_days),
            deliveries_before_ms: before(self.settings.dedupe_days),
            chunk: CHUNK,
        }
    }

    /// One pass: remove everything past its retention now.
    pub async fn run_once(&self) -> StoreResult<Purged> {
        let now_ms = unix_ms(self.clock.now());
        let purged = self.store.purge(&self.cutoffs(now_ms), now_ms).await?;
        if self.settings.push_days > 0 {
            let before = now_ms - i64::from(self.settings.push_days) * DAY_MS;
            let n = self.store.purge_push_messages(before, CHUNK).await?;
            if n > 0 {
                metrics::counter!(m::RETENTION_REMOVED, "kind" => "push_message").increment(n);
                tracing::info!(
                    push_messages = n,
                    "retention removed delivered push messages"
                );
            }
        }
        for (kind, n) in [
            ("raw_body", purged.bodies),
            ("rejection", purged.rejections),
            ("delivery", purged.deliveries),
        ] {
            if n > 0 {
                metrics::counter!(m::RETENTION_REMOVED, "kind" => kind).increment(n);
            }
        }
        if purged != Purged::default() {
            tracing::info!(
                raw_bodies = purged.bodies,
                rejections = purged.rejections,
                deliveries = purged.deliveries,
                "retention removed expired data"
            );
        }
        Ok(purged)
    }

    /// Run a pass at start and then every `interval_secs` until `shutdown`
    /// turns true; `None` when the interval is 0.
    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> Option<JoinHandle<()>> {
        if self.settings.interval_secs == 0 {
            return None;
        }
        let every = Duration::from_secs(self.settings.interval_secs);
        Some(tokio::spawn(async move {
            while !*shutdown.borrow() {
                if let Err(e) = self.run_once().await {
                    tracing::warn!(error = %e, "retention pass failed; trying again next interval");
                }
                tokio::select! {
                    _ = tokio::time::sleep(every) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }))
    }
}
