//! `GET /v1/events/stream`: catalog events as Server-Sent Events, for
//! consumers that want them as they commit rather than by polling
//! `/v1/events`.
//!
//! The stream is a tail of the same `seq` cursor the pull API pages by:
//! every frame's `id:` is the event's `seq`, so a client that reconnects
//! with `Last-Event-ID` (or `?after=`) resumes exactly after the last event
//! it saw. Because `seq` order is commit order on both backends, reading
//! "everything after the cursor" can't skip an event that committed while
//! the client was away. New commits wake the stream through the same
//! broadcast `Notify` the bus publisher waits on (fed by PostgreSQL
//! LISTEN/NOTIFY across instances); the keep-alive tick re-reads too, so an
//! instance whose LISTEN connection is down is late, never silent.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use bytes::Bytes;
use serde::Deserialize;
use tokio::sync::Notify;

use super::api::{authorize, parse_cursor};
use super::error::ApiError;
use super::AppState;
use crate::catalog::TypePattern;
use crate::store::{DynStore, StoredEvent};

/// Events read per round trip while catching up.
const PAGE: u32 = 200;

#[derive(Debug, Deserialize)]
pub struct StreamQuery {
    after: Option<String>,
    #[serde(rename = "type")]
    event_type: Option<String>,
}

/// `GET /v1/events/stream?type=&after=`, resuming from `Last-Event-ID`
/// (which wins over `after`: a reconnecting browser keeps the original URL).
pub async fn stream_events(
    req: HttpRequest,
    query: web::Query<StreamQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    authorize(&req, &state)?;
    let last_event_id = req
        .headers()
        .get("last-event-id")
        .map(|v| {
            v.to_str()
                .map_err(|_| ApiError::BadRequest("invalid Last-Event-ID".into()))
        })
        .transpose()?;
    let cursor = match (last_event_id, query.after.as_deref()) {
        (Some(id), _) if !id.trim().is_empty() => parse_cursor("Last-Event-ID", id)?,
        (_, Some(after)) if !after.is_empty() => parse_cursor("cursor", after)?,
        _ => 0,
    };
    let types = match query.event_type.as_deref() {
        Some(t) => TypePattern::parse_list(t).map_err(ApiError::BadRequest)?,
        None => Vec::new(),
    };
    let tail = Tail {
        store: state.store.clone(),
        types,
        cursor,
        wake: state.events_wake.clone(),
        keepalive: state.stream_keepalive,
        buffered: VecDeque::new(),
        opened: false,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        // Reverse proxies (nginx) would otherwise buffer the stream.
        .insert_header(("x-accel-buffering", "no"))
        .streaming(futures_util::stream::unfold(tail, Tail::next_frame)))
}

/// One client's position in the event log.
struct Tail {
    store: DynStore,
    types: Vec<TypePattern>,
    cursor: i64,
    wake: Arc<Notify>,
    keepalive: Duration,
    buffered: VecDeque<StoredEvent>,
    opened: bool,
}

impl Tail {
    /// The next frame: an event, or a keep-alive comment after a quiet
    /// `keepalive`. A storage error ends the stream; the client reconnects
    /// with its `Last-Event-ID` and loses nothing.
    async fn next_frame(mut self) -> Option<(Result<Bytes, actix_web::Error>, Tail)> {
        if !self.opened {
            // Sent at once so clients and proxies see the stream open; `retry`
            // is the reconnection delay a browser's EventSource uses.
            self.opened = true;
            return Some((Ok(Bytes::from_static(b"retry: 2000\n\n")), self));
        }
        loop {
            if let Some(event) = self.buffered.pop_front() {
                self.cursor = event.seq;
                return Some((Ok(frame(&event)), self));
            }
            let wake = self.wake.clone();
            let notified = wake.notified();
            tokio::pin!(notified);
            // Registered before the read: a commit between the read and the
            // wait still wakes us.
            notified.as_mut().enable();
            match self.store.list_events(self.cursor, &self.types, PAGE).await {
                Ok(events) if !events.is_empty() => {
                    self.buffered.extend(events);
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "event stream ends: storage unavailable");
                    return None;
                }
            }
            tokio::select! {
                _ = &mut notified => continue,
                _ = tokio::time::sleep(self.keepalive) => {
                    return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), self));
                }
            }
        }
    }
}

/// `id: <seq>`, `event: <type>`, and the catalog event as `data:` lines
/// (a newline inside the JSON would end an SSE field, so each line of it
/// is a `data:` line of its own; clients join them with `\n`).
fn frame(event: &StoredEvent) -> Bytes {
    let mut out = String::with_capacity(event.payload_json.len() + 64);
    out.push_str("id: ");
    out.push_str(&event.seq.to_string());
    out.push_str("\nevent: ");
    out.push_str(&event.event_type);
    out.push('\n');
    for line in event.payload_json.split('\n') {
        out.push_str("data: ");
        out.push_str(line.strip_suffix('\r').unwrap_or(line));
        out.push('\n');
    }
    out.push('\n');
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(seq: i64, payload: &str) -> StoredEvent {
        StoredEvent {
            seq,
            id: format!("evt_{seq}"),
            event_type: "invoice.paid".into(),
            source: "stripe".into(),
            payload_json: payload.into(),
        }
    }

    #[test]
    fn frame_carries_seq_type_and_json() {
        let f = frame(&stored(42, r#"{"id":"evt_42"}"#));
        assert_eq!(
            f,
            Bytes::from("id: 42\nevent: invoice.paid\ndata: {\"id\":\"evt_42\"}\n\n")
        );
    }

    #[test]
    fn frame_splits_multiline_json_into_data_lines() {
        let f = frame(&stored(7, "{\r\n  \"a\": 1\n}"));
        assert_eq!(
            f,
            Bytes::from("id: 7\nevent: invoice.paid\ndata: {\ndata:   \"a\": 1\ndata: }\n\n")
        );
    }

    #[test]
    fn parse_cursor_refuses_negative_and_garbage() {
        assert_eq!(parse_cursor("cursor", " 12 ").unwrap(), 12);
        assert!(parse_cursor("cursor", "-1").is_err());
        assert!(parse_cursor("cursor", "abc").is_err());
        assert!(parse_cursor("cursor", "99999999999999999999").is_err());
    }
}
