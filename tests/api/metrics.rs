//! `/metrics`: Prometheus counters move as requests flow.

use serde_json::json;

use crate::helpers::*;

/// The value of the first sample of `name` whose labels include all of
/// `labels` (`key="value"` strings).
fn sample(text: &str, name: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .find(|l| labels.iter().all(|lab| l.contains(lab)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_count_requests_by_outcome(backend: Backend) {
    // A source name no other test uses: the recorder is process-wide.
    let name: &'static str =
        Box::leak(format!("m{}", ulid::Ulid::new().to_string().to_lowercase()).into_boxed_str());
    let app = spawn_app_with(Spawn {
        backend,
        sources: vec![SourceSpec {
            name,
            provider: "stripe",
            secrets: vec!["whsec_metrics"],
            on_schema_violation: hookgate::config::OnSchemaViolation::Quarantine,
        }],
        ..Spawn::default()
    })
    .await;
    let req = |id: &str, secret: &str| {
        let mut v = fixture("stripe", "invoice.paid");
        set_pointer(&mut v, "/id", json!(id));
        signed(
            name,
            "stripe",
            secret,
            &serde_json::to_vec(&v).unwrap(),
            NOW,
            id,
        )
    };
    app.send_expect(&req("evt_m1", "whsec_metrics"), 200).await;
    app.send_expect(&req("evt_m2", "whsec_metrics"), 200).await;
    app.send_expect(&req("evt_m1", "whsec_metrics"), 200).await;
    app.send_expect(&req("evt_m3", "whsec_wrong"), 401).await;

    let scrape = || async {
        let r = app
            .client
            .get(format!("{}/metrics", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let text = r.text().await.unwrap();
        assert_no_secret("/metrics", &text);
        text
    };
    let text = scrape().await;
    let src = format!("source=\"{name}\"");
    let src = src.as_str();
    assert_eq!(
        sample(&text, "hookgate_requests_received_total", &[src]),
        Some(4.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hookgate_deliveries_accepted_total", &[src]),
        Some(2.0)
    );
    assert_eq!(
        sample(&text, "hookgate_deliveries_duplicate_total", &[src]),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            "hookgate_requests_rejected_total",
            &[src, "reason=\"invalid_signature\""]
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hookgate_ingest_duration_seconds_count", &[src]),
        Some(3.0)
    );
    // Two deliveries wait in this database before processing...
    assert_eq!(
        sample(&text, "hookgate_queue_depth", &["status=\"pending\""]),
        Some(2.0)
    );

    app.drain().await;
    let text = scrape().await;
    assert_eq!(
        sample(
            &text,
            "hookgate_processing_attempts_total",
            &[src, "provider_event_type=\"invoice.paid\""]
        ),
        Some(2.0)
    );
    // ...and none after.
    assert_eq!(
        sample(&text, "hookgate_queue_depth", &["status=\"pending\""]),
        Some(0.0)
    );
    assert!(
        sample(
            &text,
            "hookgate_catalog_events_total",
            &["type=\"invoice.paid\""]
        )
        .unwrap()
            >= 2.0
    );
    // Unknown sources are counted under one label, not their path segment.
    let mut bogus = req("evt_m4", "whsec_metrics");
    bogus.path = "/v1/webhooks/zz-made-up".into();
    app.send_expect(&bogus, 404).await;
    let text = scrape().await;
    assert!(!text.contains("zz-made-up"));
    assert!(sample(
        &text,
        "hookgate_requests_received_total",
        &["source=\"unknown\""]
    )
    .is_some());

    // The queue gauges, read from the database at scrape time: one
    // delivery quarantined, one waiting that arrived 90 s ago.
    let mut quarantined = fixture("stripe", "invoice.paid");
    set_pointer(&mut quarantined, "/id", json!("evt_m5"));
    set_pointer(&mut quarantined, "/type", json!(7));
    let quarantined = signed(
        name,
        "stripe",
        "whsec_metrics",
        &serde_json::to_vec(&quarantined).unwrap(),
        NOW,
        "evt_m5",
    );
    assert_eq!(
        app.send_expect(&quarantined, 200).await["status"],
        "quarantined"
    );
    app.send_expect(&req("evt_m6", "whsec_metrics"), 200).await;
    app.clock.advance_ms(90_000);
    let text = scrape().await;
    for (status, n) in [
        ("pending", 1.0),
        ("processing", 0.0),
        ("failed", 0.0),
        ("dead", 0.0),
        ("quarantined", 1.0),
    ] {
        let label = format!("status=\"{status}\"");
        assert_eq!(
            sample(&text, "hookgate_queue_depth", &[&label]),
            Some(n),
            "{status}"
        );
    }
    assert_eq!(
        sample(&text, "hookgate_oldest_pending_age_seconds", &[]),
        Some(90.0)
    );
    app.drain().await;
    let text = scrape().await;
    assert_eq!(
        sample(&text, "hookgate_oldest_pending_age_seconds", &[]),
        Some(0.0)
    );
}

async fn scrape(app: &TestApp) -> String {
    let text = app
        .client
        .get(format!("{}/metrics", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_no_secret("/metrics", &text);
    text
}

async fn metrics_publish_lag_per_sink_in_events_and_seconds(backend: Backend) {
    let app = spawn_app(backend).await;
    let now = NOW * 1000;
    // A sink (as a publisher registers it) with nothing published yet.
    let cursor = app
        .store
        .sink_lease("lag-sink", "test", now, now + 60_000)
        .await
        .unwrap();
    assert_eq!(cursor, Some(0));
    let text = scrape(&app).await;
    let lag = |text: &str, name: &str| sample(text, name, &["sink=\"lag-sink\""]);
    assert_eq!(lag(&text, "hookgate_publish_lag_events"), Some(0.0));
    assert_eq!(lag(&text, "hookgate_publish_lag_seconds"), Some(0.0));

    app.send_expect(&stripe_request("evt_lag_1"), 200).await;
    app.drain().await;
    app.clock.advance_ms(7_000);
    let text = scrape(&app).await;
    assert_eq!(
        lag(&text, "hookgate_publish_lag_events"),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        lag(&text, "hookgate_publish_lag_seconds"),
        Some(7.0),
        "{text}"
    );

    let seq = app.all_events().await.len() as i64;
    assert!(app
        .store
        .advance_sink("lag-sink", "test", seq)
        .await
        .unwrap());
    let text = scrape(&app).await;
    assert_eq!(lag(&text, "hookgate_publish_lag_events"), Some(0.0));
    assert_eq!(lag(&text, "hookgate_publish_lag_seconds"), Some(0.0));
}

/// A sink that refuses its first publish, then takes everything.
struct FlakySink {
    name: String,
    calls: std::sync::atomic::AtomicUsize,
}

#[async_trait::async_trait]
impl hookgate::bus::Sink for FlakySink {
    fn name(&self) -> &str {
        &self.name
    }

    async fn publish(
        &self,
        events: &[hookgate::store::StoredEvent],
    ) -> Result<usize, hookgate::bus::SinkError> {
        if self.calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0 {
            return Err(hookgate::bus::SinkError::Unavailable("down".into()));
        }
        Ok(events.len())
    }
}

async fn metrics_count_failures_dead_letters_and_publishing(backend: Backend) {
    // Names no other test uses: the recorder is process-wide.
    let tag = ulid::Ulid::new().to_string().to_lowercase();
    let name: &'static str = Box::leak(format!("f{tag}").into_boxed_str());
    let app = spawn_app_with(Spawn {
        backend,
        max_attempts: 1,
        sources: vec![SourceSpec {
            name,
            provider: "stripe",
            secrets: vec!["whsec_metrics"],
            on_schema_violation: hookgate::config::OnSchemaViolation::Quarantine,
        }],
        ..Spawn::default()
    })
    .await;
    let req = |id: &str, poison: bool| {
        let mut v = fixture("stripe", "invoice.paid");
        set_pointer(&mut v, "/id", json!(id));
        if poison {
            // Valid for Stripe's schema, but the catalog needs the invoice id.
            v["data"]["object"].as_object_mut().unwrap().remove("id");
        }
        signed(
            name,
            "stripe",
            "whsec_metrics",
            &serde_json::to_vec(&v).unwrap(),
            NOW,
            id,
        )
    };
    app.send_expect(&req("evt_f1", true), 200).await;
    app.send_expect(&req("evt_f2", false), 200).await;
    app.drain().await;
    let src = format!("source=\"{name}\"");
    let text = scrape(&app).await;
    assert_eq!(
        sample(
            &text,
            "hookgate_processing_failures_total",
            &[&src, "provider_event_type=\"invoice.paid\""]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "hookgate_dead_letters_total", &[&src]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hookgate_queue_depth", &["status=\"dead\""]),
        Some(1.0)
    );

    let sink_name = format!("s{tag}");
    let publisher = hookgate::bus::Publisher::new(
        app.store.clone(),
        std::sync::Arc::new(FlakySink {
            name: sink_name.clone(),
            calls: Default::default(),
        }),
        "test".into(),
        app.clock.clone(),
        std::sync::Arc::new(tokio::sync::Notify::new()),
        10,
        std::time::Duration::from_millis(10),
    );
    let sink = format!("sink=\"{sink_name}\"");
    assert!(publisher.run_once().await.is_err(), "the sink refuses");
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "hookgate_publish_failures_total", &[&sink]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hookgate_publish_lag_events", &[&sink]),
        Some(1.0)
    );
    assert_eq!(publisher.drain().await.unwrap(), 1);
    let text = scrape(&app).await;
    assert_eq!(
        sample(&text, "hookgate_published_total", &[&sink]),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, "hookgate_publish_lag_events", &[&sink]),
        Some(0.0)
    );
}

crate::backend_tests!(
    metrics_count_requests_by_outcome,
    metrics_publish_lag_per_sink_in_events_and_seconds,
    metrics_count_failures_dead_letters_and_publishing,
);
