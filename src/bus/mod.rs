//! Hand-off to internal consumers. Catalog events are stored first (the
//! `events` table is the outbox); a `Publisher` then pushes them to a
//! `Sink` in sequence order and moves the sink's cursor only past events
//! the sink acknowledged. One instance publishes at a time (a lease in the
//! database), so order holds across instances; a dead publisher's lease
//! expires and another instance carries on from the cursor. Everything here
//! is at-least-once: a sink must drop duplicates by event id (JetStream
//! does, by `Nats-Msg-Id`).

pub mod nats;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;

use crate::clock::{unix_ms, Clock};
use crate::store::{DynStore, StoreError, StoredEvent};
use crate::telemetry::metrics as m;

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("sink unavailable: {0}")]
    Unavailable(String),
}

/// Where catalog events go. Open set: NATS now, HTTP push later.
#[async_trait]
pub trait Sink: Send + Sync + 'static {
    fn name(&self) -> &str;

    /// Publish in order; return how many of `events` (a prefix) were
    /// acknowledged. An error means none of the remaining ones were.
    async fn publish(&self, events: &[StoredEvent]) -> Result<usize, SinkError>;
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Sink(#[from] SinkError),
}

pub struct Publisher {
    store: DynStore,
    sink: Arc<dyn Sink>,
    owner: String,
    clock: Arc<dyn Clock>,
    wake: Arc<Notify>,
    batch: u32,
    max_backoff: Duration,
    /// The lease this publisher holds and the cursor as it last left it.
    /// While more than half of the lease is left, a round reads neither
    /// (a lease write per round took the database's one writer from the
    /// group commits on SQLite).
    held: std::sync::Mutex<Option<Held>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    until_ms: i64,
    /// Published up to here.
    cursor: i64,
    /// The cursor as the database has it, and when it was written.
    saved: i64,
    saved_at_ms: i64,
}

/// Lease on the right to publish; renewed once less than half of it is
/// left, well before expiry.
const LEASE_MS: i64 = 15_000;
/// The cursor is written at most this often while events keep coming (and
/// whenever the publisher catches up or stops): after a crash, at most
/// this much is published again, and the sink drops it by event id.
const CURSOR_SAVE_MS: i64 = 250;
const IDLE_RECHECK: Duration = Duration::from_secs(5);

impl Publisher {
    pub fn new(
        store: DynStore,
        sink: Arc<dyn Sink>,
        owner: String,
        clock: Arc<dyn Clock>,
        wake: Arc<Notify>,
        batch: u32,
        max_backoff: Duration,
    ) -> Publisher {
        Publisher {
            store,
            sink,
            owner,
            clock,
            wake,
            batch: batch.max(1),
            max_backoff,
            held: std::sync::Mutex::new(None),
        }
    }

    /// One round: take the lease (renewed once half of it is gone), publish
    /// what follows the cursor, write the cursor (at most every
    /// `CURSOR_SAVE_MS` while events keep coming, and whenever the
    /// publisher catches up, fails or renews). Returns how many events were
    /// published; `Ok(None)` when another instance holds the lease.
    pub async fn run_once(&self) -> Result<Option<usize>, PublishError> {
        let now = unix_ms(self.clock.now());
        // Taken out: it goes back only when this round ends well, so an
        // error makes the next round ask the database again.
        let taken = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
        let mut held = match taken {
            Some(h) if now < h.until_ms - LEASE_MS / 2 => h,
            taken => {
                // Renewing: what was published goes to the database first,
                // so the renewal's cursor includes it.
                if let Some(mut old) = taken {
                    self.save(&mut old, now).await?;
                }
                let until_ms = now + LEASE_MS;
                let Some(cursor) = self
                    .store
                    .sink_lease(self.sink.name(), &self.owner, now, until_ms)
                    .await?
                else {
                    return Ok(None);
                };
                Held {
                    until_ms,
                    cursor,
                    saved: cursor,
                    saved_at_ms: now,
                }
            }
        };
        let events = self.store.list_events(held.cursor, &[], self.batch).await?;
        if events.is_empty() {
            // Caught up: the cursor goes to the database now (and, if the
            // lease is gone, the next round asks for it again).
            if self.save(&mut held, now).await? {
                self.keep(held);
            }
            return Ok(Some(0));
        }
        let result = self.sink.publish(&events).await;
        let published = match &result {
            Ok(n) => *n,
            Err(_) => 0,
        };
        if result.is_err() {
            metrics::counter!(m::PUBLISH_FAILURES, "sink" => self.sink.name().to_string())
                .increment(1);
        }
        if published > 0 {
            metrics::counter!(m::PUBLISHED, "sink" => self.sink.name().to_string())
                .increment(published as u64);
            held.cursor = events[published - 1].seq;
        }
        let due = result.is_err() || now - held.saved_at_ms >= CURSOR_SAVE_MS;
        if due && !self.save(&mut held, now).await? {
            // The lease went to another instance: ask again next round.
            result?;
            return Ok(Some(published));
        }
        self.keep(held);
        result?;
        Ok(Some(published))
    }

    /// Write the cursor if it moved since it was last written. False when
    /// the lease is no longer ours.
    async fn save(&self, held: &mut Held, now: i64) -> Result<bool, PublishError> {
        if held.cursor == held.saved {
            return Ok(true);
        }
        if !self
            .store
            .advance_sink(self.sink.name(), &self.owner, held.cursor)
            .await?
        {
            return Ok(false);
        }
        held.saved = held.cursor;
        held.saved_at_ms = now;
        Ok(true)
    }

    fn keep(&self, held: Held) {
        *self.held.lock().unwrap_or_else(|e| e.into_inner()) = Some(held);
    }

    /// Publish until nothing is left (tests).
    pub async fn drain(&self) -> Result<usize, PublishError> {
        let mut total = 0;
        loop {
            match self.run_once().await? {
                Some(0) | None => return Ok(total),
                Some(n) => total += n,
            }
        }
    }

    pub fn spawn(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) -> JoinHandle<()> {
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(100);
            while !*shutdown.borrow() {
                let notified = self.wake.notified();
                tokio::pin!(notified);
                notified.as_mut().enable();
                let pause = match self.run_once().await {
                    Ok(Some(n)) if n > 0 => {
                        backoff = Duration::from_millis(100);
                        continue;
                    }
                    Ok(_) => {
                        backoff = Duration::from_millis(100);
                        IDLE_RECHECK
                    }
                    Err(e) => {
                        tracing::warn!(sink = self.sink.name(), error = %e, retry_in_ms = backoff.as_millis() as u64, "publish failed; retrying");
                        let pause = backoff;
                        backoff = (backoff * 2).min(self.max_backoff);
                        // A failing sink is retried on the backoff, not on
                        // every new event.
                        tokio::select! {
                            _ = tokio::time::sleep(pause) => {}
                            _ = shutdown.changed() => {}
                        }
                        continue;
                    }
                };
                tokio::select! {
                    _ = &mut notified => {}
                    _ = tokio::time::sleep(pause) => {}
                    _ = shutdown.changed() => {}
                }
            }
            let held = self.held.lock().unwrap_or_else(|e| e.into_inner()).take();
            if let Some(mut held) = held {
                let now = unix_ms(self.clock.now());
                let _ = self.save(&mut held, now).await;
            }
            let _ = self.store.release_sink(self.sink.name(), &self.owner).await;
        })
    }
}
