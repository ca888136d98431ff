//! PostgreSQL made unreachable in the middle of a load, through a TCP proxy
//! the test controls: the gateway answers 503 with `Retry-After` and never
//! a 200 it did not commit, recovers by itself when the database is back,
//! and — once senders retry what was refused — every event is stored and
//! turned into its catalog event exactly once.
//!
//! Two ways to lose a database: connections reset (a restart, a failover)
//! and a black hole (a partition: packets vanish, nothing answers).

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::helpers::*;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Fault {
    Reset,
    BlackHole,
}

/// `127.0.0.1:<port>` → the PostgreSQL server, until told otherwise.
struct Proxy {
    port: u16,
    /// `None` = forwarding; `Some(fault)` = the database is gone.
    state: watch::Sender<Option<Fault>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (state, _) = watch::channel(None);
        let states = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    return;
                };
                let mut rx = states.subscribe();
                let upstream = upstream.clone();
                tokio::spawn(async move {
                    let now = *rx.borrow_and_update();
                    match now {
                        Some(Fault::Reset) => return,
                        // Accepted, never answered, until the fault ends.
                        Some(Fault::BlackHole) => {
                            let _ = rx.wait_for(|s| s.is_none()).await;
                            return;
                        }
                        None => {}
                    }
                    let Ok(server) = TcpStream::connect(&upstream).await else {
                        return;
                    };
                    pipe(client, server, rx).await;
                });
            }
        });
        Proxy { port, state }
    }

    fn set(&self, fault: Option<Fault>) {
        self.state.send_replace(fault);
    }
}

/// Copy both ways until either side closes or a fault starts: a reset
/// drops both sockets, a black hole stops copying and holds them open
/// until the fault ends.
async fn pipe(client: TcpStream, server: TcpStream, mut rx: watch::Receiver<Option<Fault>>) {
    let (mut cr, mut cw) = client.into_split();
    let (mut sr, mut sw) = server.into_split();
    let copy = async {
        tokio::select! {
            _ = tokio::io::copy(&mut cr, &mut sw) => {}
            _ = tokio::io::copy(&mut sr, &mut cw) => {}
        }
    };
    let fault = tokio::select! {
        _ = copy => None,
        fault = rx.wait_for(|s| s.is_some()) => fault.ok().and_then(|f| *f),
    };
    if fault == Some(Fault::BlackHole) {
        let _ = rx.wait_for(|s| s.is_none()).await;
    }
}

/// What each event id got, over every try.
#[derive(Default)]
struct Tally {
    acknowledged: HashSet<String>,
    refused: HashSet<String>,
    other: Vec<String>,
}

async fn send_one(app: &TestApp, id: &str) -> (u16, Option<String>) {
    let req = stripe_request(id);
    let mut b = app
        .client
        .post(format!("{}{}", app.address, req.path))
        .timeout(Duration::from_secs(60))
        .body(req.body);
    for (k, v) in req.headers {
        b = b.header(k, v);
    }
    match b.send().await {
        Ok(r) => {
            let status = r.status().as_u16();
            let retry_after = r
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .map(String::from);
            (status, retry_after)
        }
        Err(e) => panic!("{id}: no answer: {e}"),
    }
}

async fn outage_mid_load(fault: Fault) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Postgres, dir.path()).await;
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let via_proxy = db
        .url
        .replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(via_proxy, db.url, "the test database is on 127.0.0.1:5432");
    let app = Arc::new(
        spawn_app_configured(
            Spawn {
                backend: Backend::Postgres,
                db_url: Some(via_proxy),
                ..Spawn::default()
            },
            // A black hole answers nothing: commits give up after this.
            |s| s.storage.commit_timeout_ms = 2_000,
        )
        .await,
    );

    const TOTAL: usize = 240;
    const SENDERS: usize = 8;
    let next = Arc::new(AtomicUsize::new(0));
    let acked = Arc::new(AtomicUsize::new(0));
    let refused_during = Arc::new(AtomicUsize::new(0));
    let down = Arc::new(AtomicBool::new(false));
    let mut senders = Vec::new();
    for _ in 0..SENDERS {
        let (app, next, acked, refused_during, down) = (
            app.clone(),
            next.clone(),
            acked.clone(),
            refused_during.clone(),
            down.clone(),
        );
        senders.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= TOTAL {
                    return tally;
                }
                let id = format!("evt_outage_{i:04}");
                let (status, retry_after) = send_one(&app, &id).await;
                match status {
                    200 => {
                        acked.fetch_add(1, Ordering::SeqCst);
                        tally.acknowledged.insert(id);
                    }
                    503 => {
                        if retry_after.is_none() {
                            tally.other.push(format!("{id}: 503 without Retry-After"));
                        }
                        if down.load(Ordering::SeqCst) {
                            refused_during.fetch_add(1, Ordering::SeqCst);
                        }
                        tally.refused.insert(id);
                    }
                    s => tally.other.push(format!("{id}: {s}")),
                }
            }
        }));
    }
    // The outage starts mid-load and lasts until requests have been refused
    // for it (or, bounded, a while).
    wait_until(
        || acked.load(Ordering::SeqCst) >= 60,
        "60 acknowledged before the outage",
    )
    .await;
    down.store(true, Ordering::SeqCst);
    proxy.set(Some(fault));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    while refused_during.load(Ordering::SeqCst) < 2 * SENDERS
        && tokio::time::Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    proxy.set(None);
    down.store(false, Ordering::SeqCst);

    let mut tally = Tally::default();
    for s in senders {
        let t = s.await.unwrap();
        tally.acknowledged.extend(t.acknowledged);
        tally.refused.extend(t.refused);
        tally.other.extend(t.other);
    }
    assert!(tally.other.is_empty(), "{fault:?}: {:?}", tally.other);
    // Each sender was answered 503 during the outage instead of hanging
    // on until the database came back.
    assert!(
        refused_during.load(Ordering::SeqCst) >= SENDERS,
        "{fault:?}: only {} answered 503 during the outage",
        refused_during.load(Ordering::SeqCst)
    );

    // Recovered by itself; senders retry what was refused, until accepted.
    for id in tally.refused.clone() {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let (status, _) = send_one(&app, &id).await;
            if status == 200 {
                tally.acknowledged.insert(id.clone());
                break;
            }
            assert_eq!(status, 503, "{fault:?} {id}");
            assert!(
                tokio::time::Instant::now() < deadline,
                "{fault:?}: never recovered"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    assert_eq!(tally.acknowledged.len(), TOTAL);

    // Every event once: stored, processed, one catalog event.
    app.drain().await;
    let events = app.all_events().await;
    let mut per_id: HashMap<String, usize> = HashMap::new();
    for e in &events {
        *per_id
            .entry(e["provider_event_id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice: Vec<&String> = per_id
        .iter()
        .filter(|(_, n)| **n > 1)
        .map(|(id, _)| id)
        .collect();
    assert!(
        twice.is_empty(),
        "{fault:?}: duplicates downstream: {twice:?}"
    );
    let lost: Vec<&String> = tally
        .acknowledged
        .iter()
        .filter(|id| !per_id.contains_key(*id))
        .collect();
    assert!(lost.is_empty(), "{fault:?}: lost: {lost:?}");
    assert_eq!(events.len(), TOTAL);
    let (_, ready) = app.get("/readyz").await;
    assert_eq!(ready, serde_json::json!({"status": "ready"}));
    println!(
        "postgres outage ({fault:?}) mid-load: {TOTAL} events, {} refused with 503 and retried, 0 lost, 0 duplicates",
        tally.refused.len()
    );
}

async fn wait_until(cond: impl Fn() -> bool, what: &str) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_outage_reset_mid_load_is_503_then_recovers_losing_nothing() {
    outage_mid_load(Fault::Reset).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn db_outage_black_hole_mid_load_is_503_then_recovers_losing_nothing() {
    outage_mid_load(Fault::BlackHole).await;
}
