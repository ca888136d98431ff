//! The operator API: the audit trail of attempts, listing by filter with
//! cursor paging, a delivery's full record, replay (one or by filter) that
//! never duplicates downstream, quarantine release and discard.

use serde_json::{json, Value};

use crate::helpers::*;

async fn post(app: &TestApp, path: &str) -> (u16, Value) {
    let r = app
        .client
        .post(format!("{}{path}", app.address))
        .bearer_auth(API_TOKEN)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

fn stripe(id: &str, mutate: impl FnOnce(&mut Value)) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    mutate(&mut v);
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        NOW,
        id,
    )
}

async fn admin_replay_twice_creates_no_second_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let reply = app.send_expect(&stripe("evt_replay", |_| {}), 200).await;
    let id = reply["id"].as_str().unwrap();
    app.drain().await;
    let before = app.all_events().await;
    assert_eq!(before.len(), 1);

    for _ in 0..2 {
        let (status, body) = post(&app, &format!("/v1/admin/deliveries/{id}/replay")).await;
        assert_eq!(status, 202, "{body}");
        assert_eq!(app.delivery(id).await["status"], "pending");
        assert_eq!(app.drain().await, 1, "processed again");
    }
    assert_eq!(app.all_events().await, before, "same event, same id, once");

    let (status, _) = post(&app, "/v1/admin/deliveries/dlv_nope/replay").await;
    assert_eq!(status, 404);
    let r = app
        .client
        .post(format!("{}/v1/admin/deliveries/{id}/replay", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "operators only");
}

async fn admin_release_revalidates_quarantined_delivery(backend: Backend) {
    let app = spawn_app(backend).await;
    let bad = app
        .send_expect(&stripe("evt_q", |v| v["type"] = json!(7)), 200)
        .await;
    assert_eq!(bad["status"], "quarantined");
    let id = bad["id"].as_str().unwrap();
    // Still violating the (unchanged) schema: stays quarantined.
    let (status, body) = post(&app, &format!("/v1/admin/deliveries/{id}/release")).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "schema_violation");
    assert_eq!(app.delivery(id).await["status"], "quarantined");
    // Replay is for processed deliveries; quarantine goes through release.
    let (status, _) = post(&app, &format!("/v1/admin/deliveries/{id}/replay")).await;
    assert_eq!(status, 409);
    // A valid delivery is not quarantined, so it can't be released.
    let ok = app.send_expect(&stripe("evt_ok", |_| {}), 200).await;
    let (status, _) = post(
        &app,
        &format!(
            "/v1/admin/deliveries/{}/release",
            ok["id"].as_str().unwrap()
        ),
    )
    .await;
    assert_eq!(status, 409);
}

/// A Stripe invoice.paid whose processing fails: valid for the provider
/// schema, but the catalog's invoice id is missing.
fn poison(id: &str) -> Outgoing {
    stripe(id, |v| {
        v["data"]["object"].as_object_mut().unwrap().remove("id");
    })
}

async fn admin_attempts_are_audited_with_outcome_error_and_times(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        max_attempts: 2,
        ..Spawn::default()
    })
    .await;
    let failing = app.send_expect(&poison("evt_poison"), 200).await;
    let failing = failing["id"].as_str().unwrap();
    assert_eq!(app.drain().await, 1);
    app.clock.advance_ms(3_600_000);
    assert_eq!(app.drain().await, 1);
    let d = app.delivery(failing).await;
    assert_eq!(d["status"], "dead", "{d}");
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{d}");
    assert_eq!(log[0]["attempt"], 1);
    assert_eq!(log[0]["outcome"], "failed");
    assert_eq!(log[0]["started_at"], "2025-12-06T05:46:40Z");
    assert_eq!(log[0]["finished_at"], "2025-12-06T05:46:40Z");
    let retry_at = time::OffsetDateTime::parse(
        log[0]["retry_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    assert!(retry_at.unix_timestamp_nanos() > i128::from(NOW) * 1_000_000_000);
    assert!(
        log[0]["error"].as_str().unwrap().contains("invoice_id"),
        "{log:?}"
    );
    assert_eq!(log[1]["attempt"], 2);
    assert_eq!(log[1]["outcome"], "dead");
    assert_eq!(log[1]["started_at"], "2025-12-06T06:46:40Z");
    assert_eq!(log[1]["retry_at"], Value::Null);
    assert_eq!(log[1]["events"], json!([]));

    // Signed at NOW: sent at NOW.
    app.clock.set_unix(NOW);
    let ok = app.send_expect(&stripe("evt_ok", |_| {}), 200).await;
    let ok = ok["id"].as_str().unwrap();
    app.drain().await;
    let events = app.all_events().await;
    assert_eq!(events.len(), 1);
    let produced = json!([{ "id": events[0]["id"], "type": "invoice.paid" }]);
    let d = app.delivery(ok).await;
    assert_eq!(d["events"], produced, "{d}");
    assert_eq!(d["attempt_log"].as_array().unwrap().len(), 1);
    assert_eq!(d["attempt_log"][0]["outcome"], "done");
    assert_eq!(d["attempt_log"][0]["events"], produced);

    // A replay is a new attempt (numbered from 1 again: a fresh budget)
    // that produces the same event, not a second one.
    app.clock.advance_ms(1_000);
    let (status, _) = app
        .post(&format!("/v1/admin/deliveries/{ok}/replay"), None)
        .await;
    assert_eq!(status, 202);
    app.drain().await;
    let d = app.delivery(ok).await;
    let log = d["attempt_log"].as_array().unwrap();
    assert_eq!(log.len(), 2, "{d}");
    assert_eq!(log[1]["attempt"], 1);
    assert_eq!(log[1]["outcome"], "done");
    assert_eq!(log[1]["started_at"], "2025-12-06T05:46:41Z");
    assert_eq!(log[1]["events"], produced);
    assert_eq!(d["events"], produced);
}

crate::backend_tests!(
    admin_replay_twice_creates_no_second_event,
    admin_release_revalidates_quarantined_delivery,
    admin_attempts_are_audited_with_outcome_error_and_times,
);
