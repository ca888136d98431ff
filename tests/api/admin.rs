//! Operator actions: replay is idempotent downstream; quarantined
//! deliveries are released only once they pass the schema.

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

crate::backend_tests!(
    admin_replay_twice_creates_no_second_event,
    admin_release_revalidates_quarantined_delivery
);
