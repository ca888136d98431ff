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

/// A Stripe invoice.paid signed at the app's current time.
fn stripe_now(app: &TestApp, id: &str) -> Outgoing {
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!(id));
    let at = hookgate::clock::Clock::now(app.clock.as_ref()).unix_timestamp();
    signed(
        "stripe",
        "stripe",
        "whsec_test_new_secret",
        &serde_json::to_vec(&v).unwrap(),
        at,
        id,
    )
}

/// Every delivery id the listing returns for `query`, following
/// `next_cursor` `limit` rows at a time; `between` runs after each page.
async fn page_through<F, Fut>(
    app: &TestApp,
    query: &str,
    limit: usize,
    mut between: F,
) -> Vec<String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut ids = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = format!("/v1/admin/deliveries?{query}&limit={limit}");
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let (status, page) = app.get(&path).await;
        assert_eq!(status, 200, "{page}");
        let rows = page["deliveries"].as_array().unwrap();
        assert!(rows.len() <= limit);
        ids.extend(rows.iter().map(|d| d["id"].as_str().unwrap().to_string()));
        between().await;
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return ids,
        }
    }
}

async fn admin_delivery_list_filters_and_pages_without_skips_or_repeats(backend: Backend) {
    let app = spawn_app(backend).await;
    // Seven stripe deliveries, two of them in the same millisecond (the
    // id breaks the tie), and two pagerduty ones.
    let mut stripe_ids = Vec::new();
    for n in 0..7 {
        if n != 4 {
            app.clock.advance_ms(1_000);
        }
        let r = app
            .send_expect(&stripe_now(&app, &format!("evt_list_{n}")), 200)
            .await;
        stripe_ids.push(r["id"].as_str().unwrap().to_string());
    }
    let at = hookgate::clock::Clock::now(app.clock.as_ref()).unix_timestamp();
    let mut pd_ids = Vec::new();
    for name in ["incident.triggered", "incident.resolved"] {
        app.clock.advance_ms(1_000);
        let body = serde_json::to_vec(&fixture("pagerduty", name)).unwrap();
        let req = signed(
            "pagerduty",
            "pagerduty",
            "pd-secret-new",
            &body,
            at + 1,
            "x",
        );
        let r = app.send_expect(&req, 200).await;
        pd_ids.push(r["id"].as_str().unwrap().to_string());
    }
    // Newest first; the two of one millisecond by id, descending.
    let mut newest_first: Vec<String> = stripe_ids.iter().rev().cloned().collect();
    if newest_first[2] < newest_first[3] {
        newest_first.swap(2, 3);
    }

    // Paging while new deliveries keep arriving: they are newer than the
    // position, so every page goes on where the last ended.
    let arrivals = std::cell::Cell::new(0);
    let paged = page_through(&app, "source=stripe", 3, || {
        let n = arrivals.get();
        arrivals.set(n + 1);
        let app = &app;
        async move {
            app.clock.advance_ms(1_000);
            app.send_expect(&stripe_now(app, &format!("evt_late_{n}")), 200)
                .await;
        }
    })
    .await;
    assert_eq!(paged, newest_first, "no skip, no repeat, newest first");
    let late = arrivals.get();
    assert_eq!(late, 3);
    // The late ones are at the top of a fresh listing.
    let all = page_through(&app, "source=stripe", 4, || async {}).await;
    assert_eq!(all.len(), 7 + late);
    assert_eq!(&all[late..], &newest_first[..]);
    newest_first = all;

    // Filters.
    let ids = |q: &'static str| {
        let app = &app;
        async move { page_through(app, q, 100, || async {}).await }
    };
    assert_eq!(
        ids("source=pagerduty").await,
        vec![pd_ids[1].clone(), pd_ids[0].clone()]
    );
    assert_eq!(ids("provider=pagerduty").await.len(), 2);
    assert_eq!(ids("provider=stripe").await, newest_first);
    assert_eq!(
        ids("event_type=incident.resolved").await,
        vec![pd_ids[1].clone()]
    );
    assert_eq!(
        ids("event_id=evt_list_3").await,
        vec![stripe_ids[3].clone()]
    );
    assert_eq!(ids("status=done").await.len(), 0);
    assert_eq!(ids("status=pending,done").await.len(), 7 + late + 2);
    // Received in [NOW+2s, NOW+4s): evt_list_1 and evt_list_2.
    assert_eq!(
        ids("since=2025-12-06T05:46:42Z&until=2025-12-06T05:46:44Z").await,
        vec![stripe_ids[2].clone(), stripe_ids[1].clone()]
    );
    assert_eq!(
        ids("source=stripe&event_id=evt_list_0&since=2025-12-06T05:46:42Z")
            .await
            .len(),
        0,
        "filters combine"
    );
    app.drain().await;
    assert_eq!(ids("status=done&source=pagerduty").await.len(), 2);

    for bad in [
        "status=nope",
        "since=yesterday",
        "cursor=abc",
        "limit=-1",
        "stauts=dead",
    ] {
        let (status, body) = app.get(&format!("/v1/admin/deliveries?{bad}")).await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

async fn admin_delivery_detail_shows_request_redacted_and_produced_events(backend: Backend) {
    let app = spawn_app(backend).await;
    let req = stripe("evt_detail", |_| {})
        .header("authorization", "Bearer sender-credential")
        .header("x-custom-token", "another-credential")
        .header("x-request-source", "tests");
    let body_sent = String::from_utf8(req.body.clone()).unwrap();
    let signature = req
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("stripe-signature"))
        .unwrap()
        .1
        .clone();
    let reply = app.send_expect(&req, 200).await;
    let id = reply["id"].as_str().unwrap();
    let d = app.delivery(id).await;
    assert_eq!(d["status"], "pending");
    assert_eq!(d["provider_event_id"], "evt_detail");
    assert_eq!(d["provider_event_type"], "invoice.paid");
    assert_eq!(d["received_at"], "2025-12-06T05:46:40Z");
    assert_eq!(
        d["verification"],
        json!({ "verified": true, "scheme": "stripe" })
    );
    assert_eq!(d["schema"]["valid"], true);
    assert_eq!(d["events"], json!([]));
    let request = &d["request"];
    assert_eq!(request["remote_addr"], "127.0.0.1");
    assert_eq!(request["body"]["encoding"], "utf-8");
    assert_eq!(request["body"]["text"], body_sent);
    let headers = &request["headers"];
    assert_eq!(headers["stripe-signature"], json!(["[redacted]"]));
    assert_eq!(headers["x-custom-token"], json!(["[redacted]"]));
    assert_eq!(headers["x-request-source"], json!(["tests"]));
    assert_eq!(headers["content-type"], json!(["application/json"]));
    assert!(headers.get("authorization").is_none(), "never stored");
    let shown = d.to_string();
    for secret in [
        "sender-credential",
        "another-credential",
        signature.as_str(),
    ] {
        assert!(!shown.contains(secret), "{secret} shown");
    }

    app.drain().await;
    let d = app.delivery(id).await;
    let events = app.all_events().await;
    assert_eq!(d["status"], "done");
    assert_eq!(
        d["events"],
        json!([{ "id": events[0]["id"], "type": "invoice.paid" }])
    );

    // A quarantined delivery shows what failed.
    let q = app
        .send_expect(&stripe("evt_detail_q", |v| v["type"] = json!(7)), 200)
        .await;
    let d = app.delivery(q["id"].as_str().unwrap()).await;
    assert_eq!(d["schema"]["valid"], false);
    assert!(
        d["violations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v["path"] == "/type"),
        "{d}"
    );

    let (status, _) = app.get("/v1/admin/deliveries/dlv_nope").await;
    assert_eq!(status, 404);
    let r = app
        .client
        .get(format!("{}/v1/admin/deliveries/{id}", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

async fn admin_bulk_replay_counts_first_and_never_duplicates_downstream(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        max_attempts: 1,
        ..Spawn::default()
    })
    .await;
    let mut done = Vec::new();
    for n in 0..3 {
        let r = app
            .send_expect(&stripe(&format!("evt_bulk_{n}"), |_| {}), 200)
            .await;
        done.push(r["id"].as_str().unwrap().to_string());
    }
    let dead = app.send_expect(&poison("evt_bulk_dead"), 200).await;
    let dead = dead["id"].as_str().unwrap().to_string();
    let body = serde_json::to_vec(&fixture("pagerduty", "incident.triggered")).unwrap();
    let pd = signed("pagerduty", "pagerduty", "pd-secret-new", &body, NOW, "x");
    app.send_expect(&pd, 200).await;
    app.drain().await;
    let before = app.all_events().await;
    assert_eq!(before.len(), 4, "three invoices, one incident");
    assert_eq!(app.delivery(&dead).await["status"], "dead");

    let bulk = |body: Value| {
        let app = &app;
        async move { app.post("/v1/admin/deliveries/replay", Some(body)).await }
    };
    // A dry run counts and changes nothing.
    let (status, r) = bulk(json!({ "source": "stripe", "dry_run": true })).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r, json!({ "dry_run": true, "count": 4 }));
    let (_, r) = bulk(json!({ "source": "stripe", "status": "dead", "dry_run": true })).await;
    assert_eq!(r["count"], 1);
    for id in &done {
        assert_eq!(app.delivery(id).await["status"], "done");
    }
    assert_eq!(app.drain().await, 0, "nothing requeued by a dry run");

    for _ in 0..2 {
        let (status, r) = bulk(json!({ "source": "stripe", "status": "done" })).await;
        assert_eq!(status, 200, "{r}");
        assert_eq!(r, json!({ "dry_run": false, "count": 3 }));
        for id in &done {
            assert_eq!(app.delivery(id).await["status"], "pending");
        }
        assert_eq!(app.delivery(&dead).await["status"], "dead", "filtered out");
        assert_eq!(app.drain().await, 3);
        assert_eq!(
            app.all_events().await,
            before,
            "same events, same ids, once"
        );
    }

    for (body, why) in [
        (json!({}), "no filter"),
        (json!({ "dry_run": true }), "no filter"),
        (json!({ "status": "pending" }), "not replayable"),
        (json!({ "status": "quarantined" }), "released, not replayed"),
        (json!({ "stauts": "dead" }), "misspelt filter"),
        (json!({ "source": "stripe", "limit": 5 }), "paging"),
    ] {
        let (status, r) = bulk(body).await;
        assert_eq!(status, 400, "{why}: {r}");
    }
    let r = app
        .client
        .post(format!("{}/v1/admin/deliveries/replay", app.address))
        .json(&json!({ "source": "stripe" }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401);
}

async fn admin_discard_records_reason_and_time(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        max_attempts: 1,
        ..Spawn::default()
    })
    .await;
    let q = app
        .send_expect(&stripe("evt_discard_q", |v| v["type"] = json!(7)), 200)
        .await;
    let q = q["id"].as_str().unwrap().to_string();
    // Received a second later: listed first (newest first).
    app.clock.advance_ms(1_000);
    let dead = app.send_expect(&poison("evt_discard_dead"), 200).await;
    let dead = dead["id"].as_str().unwrap().to_string();
    let ok = app
        .send_expect(&stripe("evt_discard_ok", |_| {}), 200)
        .await;
    let ok = ok["id"].as_str().unwrap().to_string();
    app.drain().await;

    let discard = |id: &str, body: Option<Value>| {
        let app = &app;
        let path = format!("/v1/admin/deliveries/{id}/discard");
        async move { app.post(&path, body).await }
    };
    for body in [None, Some(json!({})), Some(json!({ "reason": "  " }))] {
        let (status, r) = discard(&q, body).await;
        assert_eq!(status, 400, "{r}");
    }
    assert_eq!(app.delivery(&q).await["status"], "quarantined");

    app.clock.advance_ms(5_000);
    let (status, r) = discard(
        &q,
        Some(json!({ "reason": "test payload from the sender's sandbox" })),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["status"], "discarded");
    let d = app.delivery(&q).await;
    assert_eq!(d["status"], "discarded");
    assert_eq!(
        d["discarded"],
        json!({ "reason": "test payload from the sender's sandbox", "at": "2025-12-06T05:46:46Z" })
    );
    let (status, r) = discard(&dead, Some(json!({ "reason": "customer deleted" }))).await;
    assert_eq!(status, 200, "{r}");

    // Only what waits for a decision can be discarded, and only once.
    for id in [&q, &ok] {
        let (status, r) = discard(id, Some(json!({ "reason": "again" }))).await;
        assert_eq!(status, 409, "{r}");
    }
    let (status, _) = discard("dlv_nope", Some(json!({ "reason": "x" }))).await;
    assert_eq!(status, 404);
    // A discarded delivery is neither released nor replayed nor processed.
    let (status, _) = app
        .post(&format!("/v1/admin/deliveries/{q}/release"), None)
        .await;
    assert_eq!(status, 409);
    let (status, _) = app
        .post(&format!("/v1/admin/deliveries/{dead}/replay"), None)
        .await;
    assert_eq!(status, 409);
    assert_eq!(app.drain().await, 0);

    let (_, list) = app.get("/v1/admin/deliveries?status=discarded").await;
    let listed: Vec<&str> = list["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, vec![dead.as_str(), q.as_str()]);
    assert_eq!(
        list["deliveries"][1]["discard_reason"],
        "test payload from the sender's sandbox"
    );
}

async fn admin_bulk_release_revalidates_each_against_the_fixed_schema(backend: Backend) {
    // The first gateway runs with a stricter Stripe schema than the
    // payloads meet: they are quarantined.
    let dir = tempfile::tempdir().unwrap();
    let strict = dir.path().join("providers");
    copy_tree(&repo().join("providers"), &strict);
    let schema_file = strict.join("stripe/schemas/event.json");
    let mut schema: Value = serde_json::from_slice(&std::fs::read(&schema_file).unwrap()).unwrap();
    schema["required"]
        .as_array_mut()
        .unwrap()
        .push(json!("x_required_by_a_test"));
    std::fs::write(&schema_file, serde_json::to_vec(&schema).unwrap()).unwrap();
    let first = spawn_app_configured(
        Spawn {
            backend,
            ..Spawn::default()
        },
        |s| s.paths.providers = strict.clone(),
    )
    .await;
    let mut quarantined = Vec::new();
    for n in 0..2 {
        let r = first
            .send_expect(&stripe(&format!("evt_rel_{n}"), |_| {}), 200)
            .await;
        assert_eq!(r["status"], "quarantined", "{r}");
        quarantined.push(r["id"].as_str().unwrap().to_string());
    }
    // This one also fails the real schema.
    let bad = first
        .send_expect(&stripe("evt_rel_bad", |v| v["type"] = json!(7)), 200)
        .await;
    let bad = bad["id"].as_str().unwrap().to_string();

    // The schema is fixed: a gateway with the real definitions, same
    // database.
    let app = spawn_app_with(Spawn {
        backend,
        db_url: Some(first.db.url.clone()),
        ..Spawn::default()
    })
    .await;
    let release = |body: Value| {
        let app = &app;
        async move { app.post("/v1/admin/deliveries/release", Some(body)).await }
    };
    let (status, r) = release(json!({ "source": "stripe", "dry_run": true })).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["released"], 2, "{r}");
    assert_eq!(r["still_failing"], 1);
    assert_eq!(r["failures"][0]["id"], bad.as_str());
    assert!(
        r["failures"][0]["violations"].to_string().contains("/type"),
        "{r}"
    );
    assert_eq!(app.drain().await, 0, "a dry run releases nothing");

    let (status, r) = release(json!({ "source": "stripe", "status": "quarantined" })).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(
        (r["released"].as_u64(), r["still_failing"].as_u64()),
        (Some(2), Some(1))
    );
    for id in &quarantined {
        assert_eq!(app.delivery(id).await["status"], "pending");
    }
    assert_eq!(app.delivery(&bad).await["status"], "quarantined");
    assert_eq!(app.drain().await, 2);
    assert_eq!(app.all_events().await.len(), 2);

    let (status, _) = release(json!({ "source": "stripe", "status": "dead" })).await;
    assert_eq!(status, 400);
    let (status, _) = release(json!({})).await;
    assert_eq!(status, 400);
}

/// The rejection log is written in the background (best effort): wait
/// until it holds `n` rows.
pub async fn rejections_recorded(app: &TestApp, n: usize) {
    for _ in 0..250 {
        let (_, r) = app.get("/v1/admin/rejections?limit=1000").await;
        if r["rejections"].as_array().map(Vec::len).unwrap_or(0) >= n {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("{n} rejections were not recorded");
}

async fn admin_rejections_keep_authentic_bodies_with_filters_and_paging(backend: Backend) {
    let app = spawn_app(backend).await;
    let strict = |id: &str, at: i64| {
        let mut v = fixture("stripe", "invoice.paid");
        set_pointer(&mut v, "/id", json!(id));
        v["type"] = json!(7);
        signed(
            "stripe-strict",
            "stripe",
            "whsec_test_new_secret",
            &serde_json::to_vec(&v).unwrap(),
            at,
            id,
        )
    };
    let first = strict("evt_rej_1", NOW);
    assert_eq!(app.send(&first).await.status, 422);
    app.clock.advance_ms(1_000);
    let forged = signed(
        "stripe",
        "stripe",
        "whsec_not_the_secret",
        &first.body,
        NOW,
        "x",
    );
    assert_eq!(app.send(&forged).await.status, 401);
    app.clock.advance_ms(9_000);
    assert_eq!(app.send(&strict("evt_rej_2", NOW + 10)).await.status, 422);
    rejections_recorded(&app, 3).await;

    let list = |q: &'static str| {
        let app = &app;
        async move {
            let (status, r) = app.get(&format!("/v1/admin/rejections?{q}")).await;
            assert_eq!(status, 200, "{q}: {r}");
            r
        }
    };
    let all = list("").await["rejections"].as_array().unwrap().clone();
    let codes: Vec<&str> = all.iter().map(|r| r["code"].as_str().unwrap()).collect();
    assert_eq!(
        codes,
        ["schema_violation", "invalid_signature", "schema_violation"],
        "newest first"
    );
    assert_eq!(all[0]["received_at"], "2025-12-06T05:46:50Z");
    assert!(all.iter().all(|r| r["remote_addr"] == "127.0.0.1"));
    assert_eq!(
        all[1]["body_kept"], false,
        "an unverified body is never kept"
    );
    assert_eq!(all[2]["body_kept"], true);
    assert!(
        all[2]["message"].as_str().unwrap().contains("/type"),
        "{all:?}"
    );

    let count = |r: Value| r["rejections"].as_array().unwrap().len();
    assert_eq!(count(list("source=stripe-strict").await), 2);
    assert_eq!(count(list("reason=schema_violation").await), 2);
    assert_eq!(
        count(list("reason=invalid_signature&source=stripe").await),
        1
    );
    assert_eq!(count(list("since=2025-12-06T05:46:45Z").await), 1);
    assert_eq!(count(list("until=2025-12-06T05:46:45Z").await), 2);

    // One at a time: three pages, each row once.
    let mut seen = Vec::new();
    let mut cursor = String::new();
    loop {
        let (_, page) = app
            .get(&format!("/v1/admin/rejections?limit=1&cursor={cursor}"))
            .await;
        seen.extend(
            page["rejections"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["id"].clone()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = c.to_string(),
            None => break,
        }
    }
    assert_eq!(
        seen,
        all.iter().map(|r| r["id"].clone()).collect::<Vec<_>>()
    );

    // The authentic body, as received; none for the forged request.
    let (status, detail) = app
        .get(&format!(
            "/v1/admin/rejections/{}",
            all[2]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{detail}");
    assert_eq!(
        detail["body"]["text"],
        String::from_utf8(first.body.clone()).unwrap()
    );
    let (_, detail) = app
        .get(&format!(
            "/v1/admin/rejections/{}",
            all[1]["id"].as_str().unwrap()
        ))
        .await;
    assert_eq!(detail["body"], Value::Null);
    let (status, _) = app.get("/v1/admin/rejections/rej_nope").await;
    assert_eq!(status, 404);
    for bad in ["since=x", "cursor=x", "reasn=schema_violation"] {
        let (status, _) = app.get(&format!("/v1/admin/rejections?{bad}")).await;
        assert_eq!(status, 400, "{bad}");
    }
}

/// Every operator route, with the ids of things that exist: without a
/// token, with a wrong one, or with the right token under another scheme,
/// each answers 401 with nothing but the error (no id, no record), and
/// changes nothing.
async fn admin_every_route_refuses_a_missing_or_wrong_token(backend: Backend) {
    let app = spawn_app(backend).await;
    let done = app.send_expect(&stripe("evt_auth_done", |_| {}), 200).await;
    let done = done["id"].as_str().unwrap().to_string();
    let quarantined = app
        .send_expect(&stripe("evt_auth_q", |v| v["type"] = json!(7)), 200)
        .await;
    assert_eq!(quarantined["status"], "quarantined");
    let quarantined = quarantined["id"].as_str().unwrap().to_string();
    app.drain().await;
    let forged = signed("stripe", "stripe", "whsec_wrong", b"{}", NOW, "x");
    assert_eq!(app.send(&forged).await.status, 401);
    rejections_recorded(&app, 1).await;
    let (_, rejections) = app.get("/v1/admin/rejections").await;
    let rejection = rejections["rejections"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (status, sub) = app
        .post(
            "/v1/admin/subscriptions",
            Some(json!({
                "name": "ops",
                "url": "http://127.0.0.1:9/hook",
                "types": ["*"],
                "allow_private_targets": true,
            })),
        )
        .await;
    assert_eq!(status, 201, "{sub}");

    let snapshot = || async {
        let (_, deliveries) = app.get("/v1/admin/deliveries").await;
        let (_, subscriptions) = app.get("/v1/admin/subscriptions").await;
        (deliveries, subscriptions)
    };
    let before = snapshot().await;
    let filter = json!({ "source": "stripe" });
    let routes: Vec<(&str, String, Option<Value>)> = vec![
        ("GET", "/v1/admin/deliveries".into(), None),
        (
            "POST",
            "/v1/admin/deliveries/replay".into(),
            Some(filter.clone()),
        ),
        ("POST", "/v1/admin/deliveries/release".into(), Some(filter)),
        ("GET", format!("/v1/admin/deliveries/{done}"), None),
        ("POST", format!("/v1/admin/deliveries/{done}/replay"), None),
        (
            "POST",
            format!("/v1/admin/deliveries/{quarantined}/release"),
            None,
        ),
        (
            "POST",
            format!("/v1/admin/deliveries/{quarantined}/discard"),
            Some(json!({ "reason": "not ours" })),
        ),
        ("GET", "/v1/admin/rejections".into(), None),
        ("GET", format!("/v1/admin/rejections/{rejection}"), None),
        ("GET", "/v1/admin/subscriptions".into(), None),
        (
            "POST",
            "/v1/admin/subscriptions".into(),
            Some(json!({
                "name": "intruder",
                "url": "http://127.0.0.1:9/steal",
                "types": ["*"],
                "allow_private_targets": true,
            })),
        ),
        ("GET", "/v1/admin/subscriptions/ops".into(), None),
        ("DELETE", "/v1/admin/subscriptions/ops".into(), None),
        ("POST", "/v1/admin/subscriptions/ops/pause".into(), None),
        ("POST", "/v1/admin/subscriptions/ops/resume".into(), None),
        (
            "POST",
            "/v1/admin/subscriptions/ops/rotate-secret".into(),
            Some(json!({ "overlap_secs": 0 })),
        ),
        ("GET", "/v1/admin/subscriptions/ops/messages".into(), None),
        ("GET", "/v1/admin/subscriptions/ops/attempts".into(), None),
        (
            "GET",
            "/v1/admin/subscriptions/ops/dead-letters".into(),
            None,
        ),
        (
            "POST",
            "/v1/admin/subscriptions/ops/dead-letters/replay".into(),
            None,
        ),
        (
            "POST",
            "/v1/admin/subscriptions/ops/dead-letters/msg_01J0000000000000000000000/replay".into(),
            None,
        ),
    ];
    let basic = format!("Basic {API_TOKEN}");
    let refused = json!({
        "error": { "code": "unauthorized", "message": "a valid bearer token is required" }
    });
    for (method, path, body) in &routes {
        // As the route expects it, and malformed: an unknown query
        // parameter, no body, a body that isn't JSON. The token is checked
        // before the query or body is looked at.
        let mut requests = vec![(path.clone(), body.as_ref().map(|b| b.to_string()))];
        if *method == "GET" {
            requests.push((format!("{path}?bogus=1"), None));
        } else {
            requests.push((path.clone(), None));
            requests.push((path.clone(), Some("{not json".to_string())));
        }
        for auth in [None, Some("Bearer wrong-token"), Some(basic.as_str())] {
            for (target, body) in &requests {
                let mut req = app
                    .client
                    .request(method.parse().unwrap(), format!("{}{target}", app.address));
                if let Some(a) = auth {
                    req = req.header("authorization", a);
                }
                if let Some(b) = body {
                    req = req
                        .header("content-type", "application/json")
                        .body(b.clone());
                }
                let r = req.send().await.unwrap();
                let what = format!("{method} {target} auth {auth:?} body {body:?}");
                assert_eq!(r.status().as_u16(), 401, "{what}");
                assert_eq!(r.headers()["www-authenticate"], "Bearer", "{what}");
                let text = r.text().await.unwrap();
                let answer: Value = serde_json::from_str(&text)
                    .unwrap_or_else(|_| panic!("{what}: not JSON: {text}"));
                assert_eq!(answer, refused, "{what}: only the error");
            }
        }
    }
    // Without a token, which routes exist is not told either: an unknown
    // path and a method a route lacks are 401 too...
    let probes = [
        ("GET", "/v1/admin/no-such-route", 404),
        ("PUT", "/v1/admin/subscriptions", 405),
        ("DELETE", "/v1/admin/deliveries", 405),
        ("GET", "/v1/admin/deliveries/replay", 405),
        ("GET", "/v1/events/evt_x/no-such-route", 404),
        ("POST", "/v1/catalog", 405),
    ];
    for (method, path, _) in probes {
        let r = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 401, "{method} {path}");
    }
    // ...and with one, they are what they are.
    for (method, path, status) in probes {
        let r = app
            .client
            .request(method.parse().unwrap(), format!("{}{path}", app.address))
            .bearer_auth(API_TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status, "{method} {path}");
    }
    // With the token, the same malformed requests are the caller's mistake.
    let (status, answer) = app.get("/v1/admin/deliveries?bogus=1").await;
    assert_eq!(status, 400, "{answer}");
    let (status, answer) = app.post("/v1/admin/deliveries/replay", None).await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(snapshot().await, before, "nothing changed");
    assert_eq!(app.drain().await, 0, "nothing was requeued");
}

crate::backend_tests!(
    admin_replay_twice_creates_no_second_event,
    admin_release_revalidates_quarantined_delivery,
    admin_attempts_are_audited_with_outcome_error_and_times,
    admin_delivery_list_filters_and_pages_without_skips_or_repeats,
    admin_delivery_detail_shows_request_redacted_and_produced_events,
    admin_bulk_replay_counts_first_and_never_duplicates_downstream,
    admin_discard_records_reason_and_time,
    admin_bulk_release_revalidates_each_against_the_fixed_schema,
    admin_rejections_keep_authentic_bodies_with_filters_and_paging,
    admin_every_route_refuses_a_missing_or_wrong_token,
);
