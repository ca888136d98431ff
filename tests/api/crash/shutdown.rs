//! Graceful shutdown: SIGTERM to the real binary under load. Requests in
//! flight when the signal arrives finish (each gets its answer, and what
//! was acknowledged is stored), the process exits by itself with success,
//! and its workers leave nothing behind: no delivery `processing`, no
//! publisher lease held. A restart then processes and publishes every
//! acknowledged event exactly once.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{account, request, Db, Figures, Gateway, Load, Outcome};
use crate::bus::{delete_stream, nats_settings};
use crate::helpers::*;

/// A request whose head and first half of the body are on the wire, the
/// rest still to come: certainly in flight at the server. The head asks
/// `Expect: 100-continue`, and the body starts only after the `100`: a
/// connection the kernel or actix's accept thread took but no worker has
/// read yet is dropped by a stopping worker (a sender sees a reset and
/// resends); one whose head a worker answered is in flight.
struct Slow {
    id: String,
    stream: TcpStream,
    rest: Vec<u8>,
}

fn host_port(address: &str) -> &str {
    address.trim_start_matches("http://")
}

impl Slow {
    async fn begin(address: &str, id: &str) -> Slow {
        let req = request(id);
        let mut head = format!(
            "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Length: {}\r\nConnection: close\r\n",
            req.path,
            host_port(address),
            req.body.len()
        );
        for (k, v) in &req.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("Expect: 100-continue\r\n\r\n");
        let mut stream = TcpStream::connect(host_port(address)).await.unwrap();
        let half = req.body.len() / 2;
        stream.write_all(head.as_bytes()).await.unwrap();
        let mut interim = Vec::new();
        while !interim.ends_with(b"\r\n\r\n") {
            let byte = tokio::time::timeout(Duration::from_secs(30), stream.read_u8())
                .await
                .expect("a 100 Continue within 30 s")
                .expect("the connection stays up until the 100 Continue");
            interim.push(byte);
        }
        let interim = String::from_utf8_lossy(&interim);
        assert!(
            interim.starts_with("HTTP/1.1 100 "),
            "an interim 100, not {interim:?}"
        );
        stream.write_all(&req.body[..half]).await.unwrap();
        stream.flush().await.unwrap();
        Slow {
            id: id.to_string(),
            stream,
            rest: req.body[half..].to_vec(),
        }
    }

    /// Send the rest of the body; the status and JSON body of the answer.
    async fn finish(mut self) -> (String, u16, Value) {
        self.stream.write_all(&self.rest).await.unwrap();
        let mut answer = Vec::new();
        tokio::time::timeout(
            Duration::from_secs(30),
            self.stream.read_to_end(&mut answer),
        )
        .await
        .expect("an answer within 30 s")
        .expect("the connection stays up until the answer");
        let text = String::from_utf8_lossy(&answer).into_owned();
        let status = text
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no status line in {text:?}"));
        let body = text
            .split_once("\r\n\r\n")
            .and_then(|(_, b)| serde_json::from_str(b).ok())
            .unwrap_or(Value::Null);
        (self.id, status, body)
    }
}

async fn shutdown_sigterm_under_load_finishes_in_flight_and_releases_leases(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(backend, dir.path()).await;
    let nats = nats_settings("nats://127.0.0.1:4222");
    let config = super::write_config(dir.path(), &db.url, Some(&nats));
    let log = dir.path().join("hookgate.log");
    let mut gw = Gateway::start(&config, &log);
    let addresses = Arc::new(RwLock::new(vec![gw.address().to_string()]));

    let load = Load::start(addresses, 6, "term");
    assert!(
        load.acked_at_least(100, Duration::from_secs(60)).await,
        "no load"
    );
    let mut slow = Vec::new();
    for i in 0..4 {
        slow.push(Slow::begin(gw.address(), &format!("evt_term_slow_{i}")).await);
    }

    gw.terminate();
    let mut answers = Vec::new();
    for s in slow {
        answers.push(s.finish().await);
    }
    let outcomes = load.stop().await;
    let exit = gw
        .exited_within(Duration::from_secs(60))
        .await
        .expect("the gateway exits by itself after SIGTERM");
    assert!(exit.success(), "exit status {exit}");

    let reader = Db::connect(&db.url).await;
    let rows = reader.deliveries().await;
    let processing: Vec<&String> = rows
        .iter()
        .filter(|(_, _, status)| status == "processing")
        .map(|(id, _, _)| id)
        .collect();
    let held: Vec<String> = reader
        .sinks()
        .await
        .into_iter()
        .filter_map(|(name, _, owner)| owner.map(|o| format!("{name} by {o}")))
        .collect();

    let mut figures = Figures {
        scenario: format!(
            "sigterm-under-load/{}",
            match backend {
                Backend::Sqlite => "sqlite",
                Backend::Postgres => "postgres",
            }
        ),
        nats: true,
        ..Figures::default()
    };
    let mut acked: HashMap<String, String> = HashMap::new();
    let mut sent: HashSet<String> = HashSet::new();
    for (id, outcome) in &outcomes {
        sent.insert(id.clone());
        match outcome {
            Outcome::Acked { delivery } => {
                figures.acknowledged += 1;
                acked.insert(id.clone(), delivery.clone());
            }
            Outcome::Refused(_) => figures.refused += 1,
            Outcome::Unknown => figures.unknown += 1,
            Outcome::NotConnected => figures.not_connected += 1,
        }
    }
    let mut in_flight_failed = Vec::new();
    for (id, status, body) in &answers {
        sent.insert(id.clone());
        match (status, body["id"].as_str()) {
            (200, Some(delivery)) => {
                figures.acknowledged += 1;
                acked.insert(id.clone(), delivery.to_string());
            }
            _ => in_flight_failed.push(format!("{id}: {status} {body}")),
        }
    }
    figures.sent = sent.len();
    // Stored as acknowledged, before any restart.
    account(&mut figures, &reader, &acked, &sent, None).await;
    let lost_at_exit = figures.lost;
    let duplicates_at_exit = figures.duplicates_stored;

    // A restart processes and publishes what was left pending.
    let gw = Gateway::start(&config, &log);
    let done = reader.all_done_within(Duration::from_secs(60)).await;
    let published = reader.published_within(Duration::from_secs(60)).await;
    account(&mut figures, &reader, &acked, &sent, Some(&nats)).await;
    figures.print();
    super::assert_log_keeps_secrets(&log);
    println!(
        "shutdown figures: scenario={} in_flight_at_sigterm={} answered_200={} \
         left_processing={} sink_leases_held={} exit={exit}",
        figures.scenario,
        answers.len(),
        answers.len() - in_flight_failed.len(),
        processing.len(),
        held.len(),
    );

    assert!(
        in_flight_failed.is_empty(),
        "requests in flight at SIGTERM got no 200: {in_flight_failed:?}"
    );
    assert!(
        processing.is_empty(),
        "left processing after a graceful stop: {processing:?}"
    );
    assert!(held.is_empty(), "sink lease still held: {held:?}");
    assert_eq!(lost_at_exit, 0, "acknowledged but not stored at exit");
    assert_eq!(duplicates_at_exit, 0);
    assert!(done, "deliveries left unfinished after the restart");
    assert!(published, "the stream never caught up");
    figures.assert_clean();

    reader.close().await;
    gw.kill();
    delete_stream(&nats.url, &nats.stream).await;
}

crate::backend_tests!(shutdown_sigterm_under_load_finishes_in_flight_and_releases_leases);
