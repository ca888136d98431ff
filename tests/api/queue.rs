//! The processing queue: workers wake on insert, failures retry with
//! backoff and end `dead`, reprocessing never duplicates a catalog event,
//! concurrent requests are all stored and processed. (Group commit's
//! batching itself is tested deterministically in `store::group_commit`.)

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::helpers::*;

async fn queue_workers_wake_on_insert(backend: Backend) {
    // The sweep is set long, so only the insert's wake-up can explain a
    // prompt catalog event.
    let app = spawn_app_with(Spawn {
        backend,
        workers: 1,
        ..Spawn::default()
    })
    .await;
    app.send_expect(&stripe_request("evt_wake"), 200).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let events = app.all_events().await;
        if events.iter().any(|e| e["provider_event_id"] == "evt_wake") {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "worker never processed the delivery"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn queue_failing_delivery_retries_with_backoff_then_dies(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        max_attempts: 3,
        ..Spawn::default()
    })
    .await;
    // Valid for the provider schema, but the mapping's catalog schema
    // requires an invoice id the payload lacks: processing fails.
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!("evt_poison"));
    v["data"]["object"].as_object_mut().unwrap().remove("id");
    let body = serde_json::to_vec(&v).unwrap();
    let req = signed("stripe", "stripe", "whsec_test_new_secret", &body, NOW, "p");
    let reply = app.send_expect(&req, 200).await;
    let id = reply["id"].as_str().unwrap().to_string();

    assert_eq!(app.drain().await, 1);
    let d = app.delivery(&id).await;
    assert_eq!(d["status"], "failed");
    assert_eq!(d["attempts"], 1);
    assert!(
        d["last_error"].as_str().unwrap().contains("invoice_id"),
        "{d}"
    );
    // Not due yet: the backoff holds it.
    assert_eq!(app.drain().await, 0);
    let next = d["next_attempt_at_ms"].as_i64().unwrap();
    assert!(next > NOW * 1000, "retry is in the future");

    for attempt in 2..=3 {
        app.clock.advance_ms(3_600_000);
        assert_eq!(app.drain().await, 1, "attempt {attempt}");
    }
    let d = app.delivery(&id).await;
    assert_eq!(d["status"], "dead", "{d}");
    assert_eq!(d["attempts"], 3);
    app.clock.advance_ms(3_600_000);
    assert_eq!(app.drain().await, 0, "dead letters stay put");
    assert!(app.all_events().await.is_empty());
}

async fn queue_expired_lease_is_reclaimed_without_duplicate_events(backend: Backend) {
    let app = spawn_app(backend).await;
    app.send_expect(&stripe_request("evt_lease"), 200).await;
    // Claim it like a worker that then crashes: the lease expires.
    let store = hookgate::store::open(&app.db.url).await.unwrap();
    let claimed = store
        .claim(NOW * 1000, NOW * 1000 + 60_000, 10)
        .await
        .unwrap();
    assert_eq!(claimed.len(), 1);
    // Still leased: nobody else takes it.
    assert_eq!(app.drain().await, 0);
    app.clock.advance_ms(61_000);
    assert_eq!(app.drain().await, 1, "the expired lease is reclaimed");
    // The crashed worker comes back and completes with the same events:
    // deterministic ids mean no second copy.
    app.clock.advance_ms(61_000);
    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    let id = events[0]["id"].as_str().unwrap().to_string();
    let again = hookgate::store::NewEvent {
        id,
        event_type: "invoice.paid".into(),
        source: "stripe".into(),
        payload_json: events[0].to_string(),
    };
    let (_, list) = app.get("/v1/admin/deliveries?source=stripe").await;
    let delivery_id = list["deliveries"][0]["id"].as_str().unwrap().to_string();
    store
        .complete(&delivery_id, &[again], NOW * 1000)
        .await
        .unwrap();
    assert_eq!(app.all_events().await.len(), 1);
}

async fn queue_unmapped_event_type_is_done_with_no_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let v = fixture("pagerduty", "incident.priority_updated");
    let body = serde_json::to_vec(&v).unwrap();
    let req = signed("pagerduty", "pagerduty", "pd-secret-new", &body, NOW, "x");
    let reply = app.send_expect(&req, 200).await;
    app.drain().await;
    assert_eq!(
        app.delivery(reply["id"].as_str().unwrap()).await["status"],
        "done"
    );
    assert!(app.all_events().await.is_empty());
}

async fn queue_concurrent_requests_are_all_stored_and_processed(backend: Backend) {
    let app = Arc::new(spawn_app(backend).await);
    let before = app
        .app_stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed);
    let n = 64;
    let replies = futures_util::future::join_all((0..n).map(|i| {
        let app = app.clone();
        async move {
            app.send_expect(&stripe_request(&format!("evt_gc_{i}")), 200)
                .await
        }
    }))
    .await;
    assert!(replies.iter().all(|r| r["duplicate"] == false));
    let commits = app
        .app_stats
        .commits
        .load(std::sync::atomic::Ordering::Relaxed)
        - before;
    let rows = app
        .app_stats
        .requests
        .load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(rows, n as u64);
    assert!(
        commits >= 1 && commits <= n as u64,
        "{commits} commits for {n} requests"
    );
    assert_eq!(app.drain().await, n);
    assert_eq!(app.all_events().await.len(), n);
}

crate::backend_tests!(
    queue_workers_wake_on_insert,
    queue_failing_delivery_retries_with_backoff_then_dies,
    queue_expired_lease_is_reclaimed_without_duplicate_events,
    queue_unmapped_event_type_is_done_with_no_event,
    queue_concurrent_requests_are_all_stored_and_processed
);
