//! The consumer API: bearer auth, cursor paging in commit order, type
//! patterns, the catalog, health.

use serde_json::json;

use crate::helpers::*;

async fn seed(app: &TestApp) {
    for (fixture_name, id) in [
        ("invoice.paid", "evt_a"),
        ("invoice.created", "evt_b"),
        ("customer.created", "evt_c"),
        ("invoice.voided", "evt_d"),
    ] {
        let mut v = fixture("stripe", fixture_name);
        set_pointer(&mut v, "/id", json!(id));
        let body = serde_json::to_vec(&v).unwrap();
        app.send_expect(
            &signed("stripe", "stripe", "whsec_test_new_secret", &body, NOW, id),
            200,
        )
        .await;
        app.drain().await;
    }
}

async fn consumer_api_requires_a_bearer_token(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in [
        "/v1/events",
        "/v1/catalog",
        "/v1/events/evt_x",
        "/v1/events/stream",
        "/v1/admin/deliveries",
        "/v1/admin/rejections",
    ] {
        let long = format!("Bearer {}", "t".repeat(8 * 1024));
        let prefix = format!("Bearer {}", &API_TOKEN[..API_TOKEN.len() - 1]);
        let extended = format!("Bearer {API_TOKEN}x");
        let no_space = format!("Bearer{API_TOKEN}");
        let twice = format!("Bearer {API_TOKEN} {API_TOKEN}");
        for auth in [
            None,
            Some("Bearer wrong"),
            Some("Basic dGVzdA=="),
            Some("Bearer "),
            Some("Bearer"),
            Some(long.as_str()),
            Some(prefix.as_str()),
            Some(extended.as_str()),
            Some(no_space.as_str()),
            Some(twice.as_str()),
        ] {
            let mut req = app.client.get(format!("{}{path}", app.address));
            if let Some(a) = auth {
                req = req.header("authorization", a);
            }
            let r = req.send().await.unwrap();
            assert_eq!(r.status().as_u16(), 401, "{path} {auth:?}");
            let body: serde_json::Value = r.json().await.unwrap();
            assert_eq!(body["error"]["code"], "unauthorized");
        }
    }
    // The scheme name is case-insensitive; the token is not.
    let r = app
        .client
        .get(format!("{}/v1/events", app.address))
        .header("authorization", format!("bearer {API_TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
}

async fn consumer_events_page_in_commit_order_with_type_filter(backend: Backend) {
    let app = spawn_app(backend).await;
    seed(&app).await;
    let all = app.all_events().await;
    let ids: Vec<&str> = all
        .iter()
        .map(|e| e["provider_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["evt_a", "evt_b", "evt_c", "evt_d"]);

    let (_, page) = app.get("/v1/events?limit=2").await;
    assert_eq!(page["events"].as_array().unwrap().len(), 2);
    let next = page["next"].as_str().unwrap();
    let (_, rest) = app.get(&format!("/v1/events?after={next}")).await;
    let rest_ids: Vec<&str> = rest["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["provider_event_id"].as_str().unwrap())
        .collect();
    assert_eq!(rest_ids, ["evt_c", "evt_d"]);
    // An empty page keeps the cursor.
    let last = rest["next"].as_str().unwrap();
    let (_, empty) = app.get(&format!("/v1/events?after={last}")).await;
    assert!(empty["events"].as_array().unwrap().is_empty());
    assert_eq!(empty["next"], last);

    let (_, invoices) = app.get("/v1/events?type=invoice.*").await;
    let types: Vec<&str> = invoices["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["invoice.paid", "invoice.created", "invoice.voided"]);
    let (_, exact) = app.get("/v1/events?type=customer.created").await;
    assert_eq!(exact["events"].as_array().unwrap().len(), 1);
    let (_, both) = app
        .get("/v1/events?type=customer.created,invoice.paid")
        .await;
    assert_eq!(both["events"].as_array().unwrap().len(), 2);
}

async fn consumer_bad_queries_are_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for q in ["after=-1", "after=abc", "type=invoice.%25", "limit=x"] {
        let (status, body) = app.get(&format!("/v1/events?{q}")).await;
        assert_eq!(status, 400, "{q}: {body}");
        assert!(body["error"]["code"].is_string());
    }
    let (status, body) = app.get("/v1/events/evt_nope").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");
}

async fn consumer_catalog_lists_types_with_schema_and_example(backend: Backend) {
    let app = spawn_app(backend).await;
    let (status, body) = app.get("/v1/catalog").await;
    assert_eq!(status, 200);
    let types = body["types"].as_array().unwrap();
    let paid = types
        .iter()
        .find(|t| t["type"] == "invoice.paid")
        .expect("invoice.paid");
    assert_eq!(paid["version"], 1);
    assert!(paid["schema"]["properties"]["invoice_id"].is_object());
    assert!(paid["example"]["invoice_id"].is_string());
    let field = paid["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "invoice_id")
        .expect("invoice_id is listed");
    assert_eq!(field["type"], "string");
    assert_eq!(field["required"], true);
    assert!(
        paid["mapped_from"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["provider"] == "stripe" && m["provider_event_type"] == "invoice.paid"),
        "{}",
        paid["mapped_from"]
    );
    assert_eq!(paid["history"][0]["version"], 1);
    assert!(paid["passthrough_providers"]
        .as_array()
        .unwrap()
        .contains(&json!("standard-webhooks")));
    for required in [
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "subscription.created",
        "subscription.plan_changed",
        "subscription.paused",
        "subscription.cancelled",
        "subscription.reactivated",
        "invoice.created",
        "invoice.finalized",
        "invoice.paid",
        "invoice.voided",
        "payment.succeeded",
        "payment.failed",
        "payment.refunded",
        "payment.disputed",
        "alert.triggered",
        "alert.acknowledged",
        "alert.resolved",
        "domain.registered",
        "domain.renewed",
        "domain.transferred",
    ] {
        assert!(
            types.iter().any(|t| t["type"] == required),
            "{required} missing"
        );
    }
}

async fn consumer_health_endpoints_answer(backend: Backend) {
    let app = spawn_app(backend).await;
    for (path, status) in [
        ("/healthz", 200),
        ("/readyz", 200),
        ("/nope", 404),
        ("/v1/webhooks/stripe", 405),
    ] {
        let r = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{path}");
    }
}

crate::backend_tests!(
    consumer_api_requires_a_bearer_token,
    consumer_events_page_in_commit_order_with_type_filter,
    consumer_bad_queries_are_400,
    consumer_catalog_lists_types_with_schema_and_example,
    consumer_health_endpoints_answer
);
