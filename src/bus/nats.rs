//! NATS JetStream sink: each catalog event goes to `<prefix>.<type>` as
//! JSON with `Nats-Msg-Id` = the catalog event id, and counts as published
//! only once JetStream acknowledged it. Events are published one at a time
//! in sequence order, so a failure can't let a later event overtake an
//! earlier one. The connection is made in the background: a NATS outage,
//! at start or later, never blocks ingestion; the publisher retries.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_trait::async_trait;

use super::{Sink, SinkError};
use crate::config::NatsSettings;
use crate::store::StoredEvent;

pub struct NatsSink {
    js: jetstream::Context,
    settings: NatsSettings,
    stream_ready: AtomicBool,
    name: String,
}

impl NatsSink {
    /// Returns at once; the client connects (and reconnects) by itself.
    pub async fn connect(settings: NatsSettings) -> Result<NatsSink, SinkError> {
        let client = async_nats::ConnectOptions::new()
            .retry_on_initial_connect()
            .connection_timeout(Duration::from_secs(2))
            .connect(settings.url.as_str())
            .await
            .map_err(|e| SinkError::Unavailable(e.to_string()))?;
        Ok(NatsSink {
            js: jetstream::new(client),
            name: format!("nats:{}", settings.stream),
            settings,
            stream_ready: AtomicBool::new(false),
        })
    }

    async fn ensure_stream(&self) -> Result<(), SinkError> {
        if self.stream_ready.load(Ordering::Acquire) {
            return Ok(());
        }
        let s = &self.settings;
        if s.create_stream {
            self.js
                .get_or_create_stream(stream::Config {
                    name: s.stream.clone(),
                    subjects: vec![format!("{}.>", s.subject_prefix)],
                    storage: stream::StorageType::File,
                    max_age: Duration::from_secs(s.max_age_secs),
                    duplicate_window: Duration::from_secs(s.duplicate_window_secs),
                    ..Default::default()
                })
                .await
                .map_err(|e| SinkError::Unavailable(format!("stream {}: {e}", s.stream)))?;
        } else {
            self.js
                .get_stream(&s.stream)
                .await
                .map_err(|e| SinkError::Unavailable(format!("stream {}: {e}", s.stream)))?;
        }
        self.stream_ready.store(true, Ordering::Release);
        Ok(())
    }

    pub fn subject(&self, event_type: &str) -> String {
        format!("{}.{}", self.settings.subject_prefix, event_type)
    }
}

#[async_trait]
impl Sink for NatsSink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(&self, events: &[StoredEvent]) -> Result<usize, SinkError> {
        self.ensure_stream().await?;
        let timeout = Duration::from_millis(self.settings.ack_timeout_ms);
        for (done, e) in events.iter().enumerate() {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(async_nats::header::NATS_MESSAGE_ID, e.id.as_str());
            let sent = async {
                let ack = self
                    .js
                    .publish_with_headers(
                        self.subject(&e.event_type),
                        headers,
                        e.payload_json.clone().into(),
                    )
                    .await
                    .map_err(|err| err.to_string())?;
                ack.await.map_err(|err| err.to_string())
            };
            match tokio::time::timeout(timeout, sent).await {
                Ok(Ok(_ack)) => {}
                Ok(Err(err)) if done > 0 => {
                    tracing::warn!(error = %err, "publish stopped mid-batch");
                    return Ok(done);
                }
                Ok(Err(err)) => return Err(SinkError::Unavailable(err)),
                Err(_) if done > 0 => return Ok(done),
                Err(_) => return Err(SinkError::Unavailable("publish ack timed out".into())),
            }
        }
        Ok(events.len())
    }
}
