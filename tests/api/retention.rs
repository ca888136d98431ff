//! Retention: done deliveries lose their raw bodies, old rejections go,
//! dedupe keys stay at least `dedupe_days`; dead and quarantined
//! deliveries are kept until handled. Time moves on the injected clock and
//! each pass is run by hand.

use serde_json::{json, Value};

use crate::helpers::*;

const DAY: i64 = 24 * 3600;

/// A Stripe invoice.paid with sender event id `id`, signed at `at`.
fn stripe_at(id: &str, at: i64, mutate: impl FnOnce(&mut Value)) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    mutate(&mut v);
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        at,
        id,
    )
}

async fn retention_removes_done_bodies_old_rejections_and_expired_dedupe_keys(backend: Backend) {
    let app = spawn_app_configured(
        Spawn {
            backend,
            max_attempts: 1,
            ..Spawn::default()
        },
        |s| {
            s.retention.raw_body_days = 1;
            s.retention.rejections_days = 2;
            s.retention.dedupe_days = 7;
        },
    )
    .await;
    let id_of = |r: Value| r["id"].as_str().unwrap().to_string();
    let done = id_of(
        app.send_expect(&stripe_at("evt_done", NOW, |_| {}), 200)
            .await,
    );
    let dead = id_of(
        app.send_expect(
            &stripe_at("evt_dead", NOW, |v| {
                v["data"]["object"].as_object_mut().unwrap().remove("id");
            }),
            200,
        )
        .await,
    );
    let quarantined = id_of(
        app.send_expect(&stripe_at("evt_q", NOW, |v| v["type"] = json!(7)), 200)
            .await,
    );
    let discarded = id_of(
        app.send_expect(&stripe_at("evt_x", NOW, |v| v["type"] = json!(7)), 200)
            .await,
    );
    app.drain().await;
    let (status, _) = app
        .post(
            &format!("/v1/admin/deliveries/{discarded}/discard"),
            Some(json!({ "reason": "sandbox noise" })),
        )
        .await;
    assert_eq!(status, 200);
    // Arrives later and is never processed (no drain after it).
    let pending = id_of(
        app.send_expect(&stripe_at("evt_pending", NOW, |_| {}), 200)
            .await,
    );
    let forged = stripe_at("evt_forged", NOW, |_| {}).header("stripe-signature", "t=1,v1=00");
    assert_eq!(app.send(&forged).await.status, 401);
    for _ in 0..250 {
        let (_, r) = app.get("/v1/admin/rejections").await;
        if !r["rejections"].as_array().unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(app.delivery(&done).await["status"], "done");
    assert_eq!(app.delivery(&dead).await["status"], "dead");
    let event = app.all_events().await;
    assert_eq!(event.len(), 1);

    let body_of = |id: String| {
        let app = &app;
        async move { app.delivery(&id).await["request"]["body"].clone() }
    };
    let pass = || async { app.retention.run_once().await.expect("retention pass") };

    // Not a day yet: nothing goes.
    app.clock.set_unix(NOW + DAY - 1);
    assert_eq!(pass().await, Default::default());
    assert!(body_of(done.clone()).await.is_object());

    // A day on: the raw bodies of the done and the discarded delivery go.
    app.clock.set_unix(NOW + DAY + 1);
    let purged = pass().await;
    assert_eq!(
        (purged.bodies, purged.rejections, purged.deliveries),
        (2, 0, 0)
    );
    for id in [&done, &discarded] {
        let d = app.delivery(id).await;
        assert_eq!(d["request"]["body"], Value::Null, "{d}");
        assert_eq!(d["request"]["body_purged_at"], "2025-12-07T05:46:41Z");
    }
    for id in [&dead, &quarantined, &pending] {
        assert!(body_of(id.clone()).await["text"].is_string(), "{id} kept");
    }
    // Without its body a delivery can't be processed again.
    let (status, r) = app
        .post(&format!("/v1/admin/deliveries/{done}/replay"), None)
        .await;
    assert_eq!(status, 409, "{r}");
    let (_, r) = app
        .post(
            "/v1/admin/deliveries/replay",
            Some(json!({ "source": "stripe", "status": "done", "dry_run": true })),
        )
        .await;
    assert_eq!(r["count"], 0);
    // The dedupe key still holds: the sender's late retry is a duplicate.
    let retry = app
        .send_expect(&stripe_at("evt_done", NOW + DAY + 1, |_| {}), 200)
        .await;
    assert_eq!(
        (retry["id"].as_str(), retry["duplicate"].as_bool()),
        (Some(done.as_str()), Some(true))
    );
    assert_eq!(pass().await, Default::default(), "nothing more to remove");

    // Two days: the rejection goes.
    app.clock.set_unix(NOW + 2 * DAY + 1);
    assert_eq!(pass().await.rejections, 1);
    let (_, r) = app.get("/v1/admin/rejections").await;
    assert_eq!(r["rejections"], json!([]));

    // Seven days: the done and the discarded delivery go, with their
    // catalog event; dead, quarantined and pending ones stay.
    app.clock.set_unix(NOW + 7 * DAY - 1);
    assert_eq!(pass().await.deliveries, 0);
    app.clock.set_unix(NOW + 7 * DAY + 1);
    assert_eq!(pass().await.deliveries, 2);
    for id in [&done, &discarded] {
        let (status, _) = app.get(&format!("/v1/admin/deliveries/{id}")).await;
        assert_eq!(status, 404, "{id}");
    }
    for (id, status) in [
        (&dead, "dead"),
        (&quarantined, "quarantined"),
        (&pending, "pending"),
    ] {
        assert_eq!(app.delivery(id).await["status"], status);
    }
    assert!(app.all_events().await.is_empty());
    // Past the dedupe window, the same sender event id is new again.
    let again = app
        .send_expect(&stripe_at("evt_done", NOW + 7 * DAY + 1, |_| {}), 200)
        .await;
    assert_eq!(again["duplicate"], false);
    assert_ne!(again["id"].as_str(), Some(done.as_str()));
}

crate::backend_tests!(retention_removes_done_bodies_old_rejections_and_expired_dedupe_keys);
