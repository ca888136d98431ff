//! `GET /v1/events/stream`: Server-Sent Events in commit order, resuming
//! from `Last-Event-ID` without a gap or a repeat, type filters,
//! keep-alives, auth.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{json, Value};

use crate::helpers::*;

/// One SSE frame as a client sees it.
#[derive(Debug, Default)]
struct Frame {
    id: Option<String>,
    event: Option<String>,
    data: Vec<String>,
    comment: bool,
}

impl Frame {
    fn json(&self) -> Value {
        serde_json::from_str(&self.data.join("\n")).unwrap()
    }
}

/// An open stream and the bytes read past the last whole frame.
struct Client {
    body: futures_util::stream::BoxStream<'static, reqwest::Result<bytes::Bytes>>,
    buf: String,
}

impl Client {
    async fn open(app: &TestApp, query: &str, last_event_id: Option<&str>) -> Client {
        let mut req = app
            .client
            .get(format!("{}/v1/events/stream{query}", app.address))
            .bearer_auth(API_TOKEN);
        if let Some(id) = last_event_id {
            req = req.header("last-event-id", id);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200);
        assert_eq!(
            r.headers()["content-type"].to_str().unwrap(),
            "text/event-stream"
        );
        let mut client = Client {
            body: r.bytes_stream().boxed(),
            buf: String::new(),
        };
        let hello = client.frame().await;
        assert!(hello.id.is_none() && hello.data.is_empty(), "{hello:?}");
        client
    }

    /// The next frame; the timeout only keeps a broken build from hanging.
    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(end) = self.buf.find("\n\n") {
                let text: String = self.buf.drain(..end + 2).collect();
                let mut f = Frame::default();
                for line in text.lines() {
                    if line.starts_with(':') {
                        f.comment = true;
                    } else if let Some(v) = line.strip_prefix("id: ") {
                        f.id = Some(v.into());
                    } else if let Some(v) = line.strip_prefix("event: ") {
                        f.event = Some(v.into());
                    } else if let Some(v) = line.strip_prefix("data: ") {
                        f.data.push(v.into());
                    }
                }
                return f;
            }
            let chunk = tokio::time::timeout(Duration::from_secs(20), self.body.next())
                .await
                .expect("a frame within 20 s")
                .expect("the stream is open")
                .unwrap();
            self.buf.push_str(std::str::from_utf8(&chunk).unwrap());
        }
    }

    /// The next event frame, skipping keep-alives.
    async fn event(&mut self) -> Frame {
        loop {
            let f = self.frame().await;
            if !f.comment {
                return f;
            }
        }
    }
}

async fn send_invoice(app: &TestApp, id: &str) {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    let body = serde_json::to_vec(&v).unwrap();
    app.send_expect(
        &signed("stripe", "stripe", "whsec_test_new_secret", &body, NOW, id),
        200,
    )
    .await;
}

async fn send_customer(app: &TestApp, id: &str) {
    let mut v = fixture("stripe", "customer.created");
    set_pointer(&mut v, "/id", json!(id));
    let body = serde_json::to_vec(&v).unwrap();
    app.send_expect(
        &signed("stripe", "stripe", "whsec_test_new_secret", &body, NOW, id),
        200,
    )
    .await;
}

async fn stream_sends_events_in_order_and_resumes_after_last_event_id(backend: Backend) {
    let app = spawn_app(backend).await;
    // One drain each: events of one processed batch may take their seq
    // in any order, and this test is about the stream keeping seq order.
    for id in ["evt_1", "evt_2"] {
        send_invoice(&app, id).await;
        app.drain().await;
    }

    let mut client = Client::open(&app, "", None).await;
    let first = client.event().await;
    let second = client.event().await;
    assert_eq!(first.event.as_deref(), Some("invoice.paid"));
    assert_eq!(first.json()["provider_event_id"], "evt_1");
    assert_eq!(second.json()["provider_event_id"], "evt_2");
    // The frame id is the pull API's cursor.
    let (_, page) = app.get("/v1/events").await;
    assert_eq!(second.id.as_deref(), page["next"].as_str());
    drop(client);

    // Committed while no client is connected.
    for id in ["evt_3", "evt_4"] {
        send_invoice(&app, id).await;
        app.drain().await;
    }
    let mut client = Client::open(&app, "?after=0", second.id.as_deref()).await;
    let ids = [client.event().await, client.event().await]
        .map(|f| f.json()["provider_event_id"].as_str().unwrap().to_string());
    assert_eq!(ids, ["evt_3", "evt_4"], "Last-Event-ID wins over after=");

    // Committed while connected: the commit wakes the stream.
    send_invoice(&app, "evt_5").await;
    app.drain().await;
    let live = client.event().await;
    assert_eq!(live.json()["provider_event_id"], "evt_5");
    assert_eq!(live.json()["type"], "invoice.paid");
}

async fn stream_filters_by_type_and_keeps_alive(backend: Backend) {
    let app = spawn_app_configured(
        Spawn {
            backend,
            ..Spawn::default()
        },
        |s| s.api.stream_keepalive_secs = 1,
    )
    .await;
    send_customer(&app, "evt_c1").await;
    send_invoice(&app, "evt_i1").await;
    app.drain().await;

    let mut client = Client::open(&app, "?type=invoice.*", None).await;
    let f = client.event().await;
    assert_eq!(f.json()["provider_event_id"], "evt_i1");
    // Nothing more matches: a keep-alive comment, not an event.
    let quiet = client.frame().await;
    assert!(quiet.comment && quiet.id.is_none(), "{quiet:?}");
    send_customer(&app, "evt_c2").await;
    send_invoice(&app, "evt_i2").await;
    app.drain().await;
    let f = client.event().await;
    assert_eq!(f.json()["provider_event_id"], "evt_i2");
}

/// A writer commits events one by one while a reader reads a few, hangs
/// up, and reconnects with its `Last-Event-ID`, over and over: the reader
/// ends with every event exactly once, in commit order.
async fn stream_reconnecting_reader_misses_nothing_under_concurrent_commits(backend: Backend) {
    const EVENTS: usize = 40;
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let writer = {
        let app = app.clone();
        tokio::spawn(async move {
            for i in 0..EVENTS {
                send_invoice(&app, &format!("evt_w{i:03}")).await;
                app.drain().await;
            }
        })
    };
    let mut seen: Vec<String> = Vec::new();
    let mut last: Option<String> = None;
    while seen.len() < EVENTS {
        let mut client = Client::open(&app, "", last.as_deref()).await;
        for _ in 0..3 {
            if seen.len() == EVENTS {
                break;
            }
            let f = client.event().await;
            last = f.id.clone();
            seen.push(f.json()["provider_event_id"].as_str().unwrap().into());
        }
    }
    writer.await.unwrap();
    let expected: Vec<String> = (0..EVENTS).map(|i| format!("evt_w{i:03}")).collect();
    assert_eq!(seen, expected);
}

async fn stream_refuses_bad_tokens_and_cursors(backend: Backend) {
    let app = spawn_app(backend).await;
    let url = format!("{}/v1/events/stream", app.address);
    let r = app.client.get(&url).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    let r = app
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
    for (header, query) in [(Some("-3"), ""), (Some("abc"), ""), (None, "?after=x")] {
        let mut req = app
            .client
            .get(format!("{url}{query}"))
            .bearer_auth(API_TOKEN);
        if let Some(h) = header {
            req = req.header("last-event-id", h);
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), 400, "{header:?} {query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "bad_request");
    }
    let r = app
        .client
        .get(format!("{url}?type=Invoice"))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
}

crate::backend_tests!(
    stream_sends_events_in_order_and_resumes_after_last_event_id,
    stream_filters_by_type_and_keeps_alive,
    stream_reconnecting_reader_misses_nothing_under_concurrent_commits,
    stream_refuses_bad_tokens_and_cursors
);
