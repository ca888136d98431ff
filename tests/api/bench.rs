//! The benchmark harness itself, run for a handful of requests so that it
//! can't rot unnoticed: its counts must add up. Nothing here looks at time.

use std::time::Duration;

use hookgate::bench::{Harness, LoadSpec, Scheme, Stage, Stop};

use crate::helpers::repo;

async fn run_small(scheme: Scheme) {
    let mut harness = Harness::new(
        env!("CARGO_BIN_EXE_hookgate").into(),
        repo().join("providers"),
        repo().join("catalog"),
        scheme,
    )
    .unwrap();
    harness.http_workers = 1;
    harness.queue_workers = 1;
    harness.gateway_log = "warn".into();
    let spec = LoadSpec {
        connections: 2,
        stop: Stop::Count(50),
        warmup: Duration::ZERO,
        rate: None,
        duplicate_share: 0.2,
    };
    let outcome = harness
        .run(&Stage::Gateway { storage_url: None }, spec, false)
        .await
        .unwrap();
    let s = &outcome.load;
    assert_eq!(s.sent, 50);
    assert_eq!(s.accepted + s.duplicates + s.error_count(), s.sent, "{s:?}");
    assert_eq!(s.error_count(), 0, "{:?}", s.errors);
    // Every fifth request per connection re-sends the previous event.
    assert!(s.duplicates >= 8, "{s:?}");
    assert_eq!(s.latency.len(), 50);
    assert!(outcome.peak_rss_kib.is_some_and(|k| k > 0));
}

#[tokio::test]
async fn bench_harness_counts_add_up_on_sqlite_stripe() {
    run_small(Scheme::Stripe).await;
}

#[tokio::test]
async fn bench_harness_counts_add_up_on_sqlite_standard_webhooks() {
    run_small(Scheme::StandardWebhooks).await;
}

/// The processing stage with `--nats-url`: every accepted event is timed
/// once on `/v1/events` and once as a message on NATS (its own stream,
/// deleted afterwards), and nothing is left outstanding.
#[tokio::test]
async fn bench_harness_times_events_on_the_api_and_on_nats() {
    let mut harness = Harness::new(
        env!("CARGO_BIN_EXE_hookgate").into(),
        repo().join("providers"),
        repo().join("catalog"),
        Scheme::Stripe,
    )
    .unwrap();
    harness.http_workers = 1;
    harness.queue_workers = 1;
    harness.gateway_log = "warn".into();
    harness.nats_url = Some("nats://127.0.0.1:4222".to_string());
    let spec = LoadSpec {
        connections: 2,
        stop: Stop::Count(40),
        warmup: Duration::ZERO,
        rate: None,
        duplicate_share: 0.2,
    };
    let outcome = harness
        .run(&Stage::Gateway { storage_url: None }, spec, true)
        .await
        .unwrap();
    let s = &outcome.load;
    assert_eq!(s.error_count(), 0, "{:?}", s.errors);
    let readable = outcome.processing.expect("timed on /v1/events");
    let published = outcome.published.expect("timed on NATS");
    // One catalog event per accepted request (a duplicate adds none).
    assert_eq!(readable.events_timed, s.accepted);
    assert_eq!(published.events_timed, s.accepted);
    assert!(readable.drain_ms.is_some() && published.drain_ms.is_some());
}
