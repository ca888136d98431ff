//! NATS JetStream: every catalog event is published once, with
//! `Nats-Msg-Id` = its id, in sequence order; a NATS outage never blocks
//! ingestion and the backlog drains when NATS returns.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hookgate::config::NatsSettings;

use crate::helpers::*;

/// A stream and subject prefix no other test uses.
pub fn nats_settings(url: &str) -> NatsSettings {
    let tag = ulid::Ulid::new().to_string().to_lowercase();
    NatsSettings {
        url: url.into(),
        subject_prefix: format!("hgtest{tag}"),
        stream: format!("HGTEST_{tag}"),
        max_backoff_ms: 200,
        ack_timeout_ms: 2_000,
        ..NatsSettings::default()
    }
}

/// Every message in the stream: (Nats-Msg-Id, subject).
pub async fn stream_messages(url: &str, stream: &str) -> Vec<(String, String)> {
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let mut s = js.get_stream(stream).await.unwrap();
    let state = s.info().await.unwrap().state.clone();
    let mut out = Vec::new();
    if state.messages == 0 {
        return out;
    }
    for seq in state.first_sequence..=state.last_sequence {
        let m = s.get_raw_message(seq).await.unwrap();
        let id = match m.headers.get(async_nats::header::NATS_MESSAGE_ID) {
            Some(v) => v.as_str().to_string(),
            None => panic!("no Nats-Msg-Id in {:?} payload {:?}", m.headers, m.payload),
        };
        out.push((id, m.subject.to_string()));
    }
    out
}

pub async fn delete_stream(url: &str, stream: &str) {
    if let Ok(client) = async_nats::connect(url).await {
        let _ = async_nats::jetstream::new(client)
            .delete_stream(stream)
            .await;
    }
}

async fn publish_all_and_check(backend: Backend) {
    let nats = nats_settings("nats://127.0.0.1:4222");
    let app = spawn_app_configured(
        Spawn {
            backend,
            ..Spawn::default()
        },
        |s| s.bus.nats = Some(nats.clone()),
    )
    .await;
    for i in 0..20 {
        app.send_expect(&stripe_request(&format!("evt_bus_{i}")), 200)
            .await;
    }
    // A duplicate delivery produces no second event, hence no second message.
    app.send_expect(&stripe_request("evt_bus_3"), 200).await;
    app.drain().await;
    let publisher = app.publisher.clone().expect("a publisher");
    assert_eq!(publisher.drain().await.unwrap(), 20);
    // Publishing again (a restart re-reading the outbox) sends nothing new.
    assert_eq!(publisher.drain().await.unwrap(), 0);

    let events = app.all_events().await;
    let messages = stream_messages(&nats.url, &nats.stream).await;
    let ids: Vec<&str> = messages.iter().map(|(id, _)| id.as_str()).collect();
    let expected: Vec<&str> = events.iter().map(|e| e["id"].as_str().unwrap()).collect();
    assert_eq!(ids, expected, "every event once, in sequence order");
    assert!(messages
        .iter()
        .all(|(_, subject)| *subject == format!("{}.invoice.paid", nats.subject_prefix)));
    delete_stream(&nats.url, &nats.stream).await;
}

/// A private nats-server on a port of its own, killed on drop.
struct PrivateNats {
    child: Child,
}

impl PrivateNats {
    fn start(port: u16, store: &Path) -> PrivateNats {
        let child = Command::new("/usr/sbin/nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string(), "-js", "-sd"])
            .arg(store)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server runs");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                std::time::Instant::now() < deadline,
                "nats-server did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        PrivateNats { child }
    }

    fn stop(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

async fn outage_never_blocks_ingestion_and_backlog_drains(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let url = format!("nats://127.0.0.1:{port}");
    let nats = PrivateNats::start(port, &dir.path().join("js"));
    let settings = nats_settings(&url);
    let app = spawn_app_configured(
        Spawn {
            backend,
            workers: 1,
            ..Spawn::default()
        },
        |s| s.bus.nats = Some(settings.clone()),
    )
    .await;
    let wait_for = |n: usize| {
        let url = url.clone();
        let stream = settings.stream.clone();
        async move {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                if tokio::time::Instant::now() > deadline {
                    panic!("stream never reached {n} messages");
                }
                if let Ok(client) = async_nats::connect(url.as_str()).await {
                    let js = async_nats::jetstream::new(client);
                    if let Ok(mut s) = js.get_stream(&stream).await {
                        if s.info().await.map(|i| i.state.messages).unwrap_or(0) as usize >= n {
                            return;
                        }
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    };
    for i in 0..5 {
        app.send_expect(&stripe_request(&format!("evt_out_a{i}")), 200)
            .await;
    }
    wait_for(5).await;

    nats.stop();
    // NATS is down: ingestion and processing go on.
    for i in 0..10 {
        app.send_expect(&stripe_request(&format!("evt_out_b{i}")), 200)
            .await;
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while app.all_events().await.len() < 15 {
        assert!(tokio::time::Instant::now() < deadline, "processing stalled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // NATS returns on the same port with its data: the backlog drains.
    let _nats = PrivateNats::start(port, &dir.path().join("js"));
    wait_for(15).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let messages = stream_messages(&url, &settings.stream).await;
    let mut count: HashMap<&str, usize> = HashMap::new();
    for (id, _) in &messages {
        *count.entry(id.as_str()).or_default() += 1;
    }
    let events = app.all_events().await;
    assert_eq!(events.len(), 15);
    for e in &events {
        assert_eq!(
            count.get(e["id"].as_str().unwrap()),
            Some(&1),
            "{}",
            e["id"]
        );
    }
    assert_eq!(messages.len(), 15, "none twice");
}

crate::backend_tests!(
    publish_all_and_check,
    outage_never_blocks_ingestion_and_backlog_drains
);
