//! The ingress contract, for every provider: valid → 200 and a catalog
//! event; tampered, wrong secret, stale → 401; rotation; duplicates;
//! quarantine and reject modes; 404 / 413 / 415 / 400.

use serde_json::{json, Value};

use crate::helpers::*;

/// One provider as a test sends to it.
struct Case {
    source: &'static str,
    provider: &'static str,
    secret: String,
    old_secret: String,
    wrong_secret: String,
    fixture: &'static str,
    /// Where the sender's id lives in the body; `None` = in a header.
    id_pointer: Option<&'static str>,
    type_pointer: &'static str,
    signs_timestamp: bool,
    expect_type: &'static str,
}

fn cases() -> Vec<Case> {
    vec![
        Case {
            source: "stripe",
            provider: "stripe",
            secret: "whsec_test_new_secret".into(),
            old_secret: "whsec_test_old_secret".into(),
            wrong_secret: "whsec_test_wrong_secret".into(),
            fixture: "invoice.paid",
            id_pointer: Some("/id"),
            type_pointer: "/type",
            signs_timestamp: true,
            expect_type: "invoice.paid",
        },
        Case {
            source: "standard-webhooks",
            provider: "standard-webhooks",
            secret: SW_SECRET.into(),
            old_secret: SW_OLD_SECRET.into(),
            // Valid whsec_ format, different key.
            wrong_secret: "whsec_dGhpcyBpcyBub3QgdGhlIHJpZ2h0IGtleSE=".into(),
            fixture: "invoice.paid",
            id_pointer: None,
            type_pointer: "/type",
            signs_timestamp: true,
            expect_type: "invoice.paid",
        },
        Case {
            // Standard Webhooks v1a: Ed25519, verified with the whpk_ key.
            source: "standard-webhooks",
            provider: "standard-webhooks",
            secret: sw_signing_key(),
            old_secret: SW_SECRET.into(),
            wrong_secret: {
                use base64::Engine;
                format!(
                    "whsk_{}",
                    base64::engine::general_purpose::STANDARD.encode([7u8; 32])
                )
            },
            fixture: "invoice.paid",
            id_pointer: None,
            type_pointer: "/type",
            signs_timestamp: true,
            expect_type: "invoice.paid",
        },
        Case {
            source: "pagerduty",
            provider: "pagerduty",
            secret: "pd-secret-new".into(),
            old_secret: "pd-secret-old".into(),
            wrong_secret: "pd-secret-wrong".into(),
            fixture: "incident.triggered",
            id_pointer: Some("/event/id"),
            type_pointer: "/event/event_type",
            signs_timestamp: false,
            expect_type: "alert.triggered",
        },
        Case {
            source: "dnsimple",
            provider: "dnsimple",
            secret: "dnsimple-token-new".into(),
            old_secret: "dnsimple-token-old".into(),
            wrong_secret: "dnsimple-token-wrong".into(),
            fixture: "domain.renew",
            id_pointer: Some("/request_identifier"),
            type_pointer: "/name",
            signs_timestamp: false,
            expect_type: "domain.renewed",
        },
    ]
}

impl Case {
    /// The fixture body with the sender's id set to `id`.
    fn body(&self, id: &str) -> Vec<u8> {
        let mut v = fixture(self.provider, self.fixture);
        if let Some(p) = self.id_pointer {
            set_pointer(&mut v, p, json!(id));
        }
        serde_json::to_vec(&v).unwrap()
    }

    fn request(&self, id: &str) -> Outgoing {
        self.request_with(&self.secret, &self.body(id), NOW, id)
    }

    fn request_with(&self, secret: &str, body: &[u8], ts: i64, id: &str) -> Outgoing {
        signed(self.source, self.provider, secret, body, ts, id)
    }

    fn label(&self) -> String {
        format!("{} ({})", self.source, &self.secret[..6])
    }
}

fn unique(case: &Case, tag: &str) -> String {
    format!("{}-{}-{}", tag, case.provider, ulid::Ulid::new())
}

async fn ingest_valid_request_becomes_a_catalog_event(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        let id = unique(&case, "valid");
        let body = app.send_expect(&case.request(&id), 200).await;
        assert_eq!(body["status"], "accepted", "{}: {body}", case.label());
        assert_eq!(body["duplicate"], false);
        let delivery_id = body["id"].as_str().unwrap().to_string();
        assert!(delivery_id.starts_with("dlv_"));

        app.drain().await;
        let events = app.all_events().await;
        let mine: Vec<&Value> = events
            .iter()
            .filter(|e| e["provider_event_id"] == id.as_str())
            .collect();
        assert_eq!(mine.len(), 1, "{}: {events:?}", case.label());
        let e = mine[0];
        assert_eq!(e["type"], case.expect_type);
        assert_eq!(e["source"], case.source);
        assert_eq!(e["provider"], case.provider);
        assert_eq!(e["version"], 1);
        assert!(e["id"].as_str().unwrap().starts_with("evt_"));
        assert!(e["data"].is_object());
        // The event is addressable by id too.
        let (status, one) = app
            .get(&format!("/v1/events/{}", e["id"].as_str().unwrap()))
            .await;
        assert_eq!(status, 200);
        assert_eq!(&one, e);
        assert_eq!(app.delivery(&delivery_id).await["status"], "done");
    }
}

async fn ingest_tampered_body_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    // DNSimple signs nothing (its path token is all the authentication it
    // has), so a changed body cannot be detected for it.
    for case in cases().into_iter().filter(|c| c.provider != "dnsimple") {
        let id = unique(&case, "tamper");
        let mut req = case.request(&id);
        // Change one byte of the signed body (a digit inside the JSON
        // stays valid JSON, so only the signature can catch it).
        let pos = req.body.iter().rposition(|b| b.is_ascii_digit()).unwrap();
        req.body[pos] = if req.body[pos] == b'9' {
            b'8'
        } else {
            req.body[pos] + 1
        };
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 401, "{}: {}", case.label(), reply.json);
        assert_eq!(reply.code(), "invalid_signature", "{}", case.label());
    }
}

async fn ingest_wrong_secret_is_401_and_recorded(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        let id = unique(&case, "wrong");
        let req = case.request_with(&case.wrong_secret, &case.body(&id), NOW, &id);
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 401, "{}: {}", case.label(), reply.json);
        assert_eq!(reply.code(), "invalid_signature");
        let msg = reply.json["error"]["message"].as_str().unwrap();
        assert!(!msg.contains(&case.wrong_secret) && !msg.contains(&case.secret));
    }
    app.drain().await;
    assert!(app.all_events().await.is_empty());
    // Rejections are audited (asynchronously, best effort): wait for them.
    let mut rejections = Value::Null;
    for _ in 0..100 {
        let (_, r) = app.get("/v1/admin/rejections").await;
        if r["rejections"].as_array().map(Vec::len).unwrap_or(0) >= cases().len() {
            rejections = r;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let list = rejections["rejections"]
        .as_array()
        .expect("rejections recorded");
    assert!(list.iter().all(|r| r["code"] == "invalid_signature"));
    assert!(list.iter().any(|r| r["source"] == "pagerduty"));
}

async fn ingest_timestamp_outside_tolerance_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases().into_iter().filter(|c| c.signs_timestamp) {
        for skew in [-301, 301, -100_000] {
            let id = unique(&case, "stale");
            let req = case.request_with(&case.secret, &case.body(&id), NOW + skew, &id);
            let reply = app.send(&req).await;
            assert_eq!(
                reply.status,
                401,
                "{} skew {skew}: {}",
                case.label(),
                reply.json
            );
            assert_eq!(
                reply.code(),
                "timestamp_out_of_tolerance",
                "{}",
                case.label()
            );
        }
        // Inside the window is fine.
        let id = unique(&case, "fresh");
        let req = case.request_with(&case.secret, &case.body(&id), NOW - 299, &id);
        app.send_expect(&req, 200).await;
    }
}

async fn ingest_rotated_secrets_both_verify(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        for secret in [&case.secret, &case.old_secret] {
            let id = unique(&case, "rotate");
            let req = case.request_with(secret, &case.body(&id), NOW, &id);
            let body = app.send_expect(&req, 200).await;
            assert_eq!(body["duplicate"], false, "{}", case.label());
        }
    }
}

async fn ingest_duplicate_is_acknowledged_once(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        let id = unique(&case, "dup");
        let first = app.send_expect(&case.request(&id), 200).await;
        app.drain().await;
        // A retry by the sender: same event id, freshly signed.
        let again = app.send_expect(&case.request(&id), 200).await;
        assert_eq!(again["duplicate"], true, "{}", case.label());
        assert_eq!(again["id"], first["id"]);
        assert_eq!(app.drain().await, 0, "nothing enqueued again");
        let events = app.all_events().await;
        let n = events
            .iter()
            .filter(|e| e["provider_event_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "{}", case.label());
    }
}

/// An attacker resends a captured, valid request byte for byte: inside
/// the window it is the sender's own retry (a duplicate, not processed
/// again); after the tolerance window, schemes that sign a timestamp
/// refuse it, and the others still answer it as a duplicate.
async fn ingest_captured_request_replayed_later_is_refused_or_a_duplicate(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        app.clock.set_unix(NOW);
        let id = unique(&case, "replay");
        let captured = case.request(&id);
        let first = app.send_expect(&captured, 200).await;
        app.drain().await;
        let soon = app.send_expect(&captured, 200).await;
        assert_eq!(soon["duplicate"], true, "{}", case.label());
        app.clock.set_unix(NOW + 301);
        let reply = app.send(&captured).await;
        if case.signs_timestamp {
            assert_eq!(reply.status, 401, "{}: {}", case.label(), reply.json);
            assert_eq!(reply.code(), "timestamp_out_of_tolerance");
        } else {
            assert_eq!(reply.status, 200, "{}", case.label());
            assert_eq!(reply.json["duplicate"], true, "{}", case.label());
            assert_eq!(reply.json["id"], first["id"]);
        }
        assert_eq!(
            app.drain().await,
            0,
            "{}: nothing processed again",
            case.label()
        );
        let n = app
            .all_events()
            .await
            .iter()
            .filter(|e| e["provider_event_id"] == id.as_str())
            .count();
        assert_eq!(n, 1, "{}", case.label());
    }
}

async fn ingest_concurrent_duplicates_store_one_delivery(backend: Backend) {
    let app = std::sync::Arc::new(spawn_app(backend).await);
    let case = &cases()[0];
    let id = unique(case, "race");
    let req = case.request(&id);
    let replies = futures_util::future::join_all((0..16).map(|_| {
        let app = app.clone();
        let req = req.clone();
        async move { app.send_expect(&req, 200).await }
    }))
    .await;
    let originals: Vec<&Value> = replies.iter().filter(|r| r["duplicate"] == false).collect();
    assert_eq!(originals.len(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| r["id"] == originals[0]["id"]));
    app.drain().await;
    let n = app
        .all_events()
        .await
        .iter()
        .filter(|e| e["provider_event_id"] == id.as_str())
        .count();
    assert_eq!(n, 1);
}

async fn ingest_schema_violation_is_quarantined_by_default(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        let id = unique(&case, "quarantine");
        let mut v: Value = serde_json::from_slice(&case.body(&id)).unwrap();
        set_pointer(&mut v, case.type_pointer, json!(12345));
        let body = serde_json::to_vec(&v).unwrap();
        let req = case.request_with(&case.secret, &body, NOW, &id);
        let reply = app.send_expect(&req, 200).await;
        assert_eq!(reply["status"], "quarantined", "{}: {reply}", case.label());
        let paths: Vec<&str> = reply["violations"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&case.type_pointer),
            "{}: {paths:?}",
            case.label()
        );
        let delivery = app.delivery(reply["id"].as_str().unwrap()).await;
        assert_eq!(delivery["status"], "quarantined");
    }
    assert_eq!(
        app.drain().await,
        0,
        "quarantined deliveries are not processed"
    );
    assert!(app.all_events().await.is_empty());
}

async fn ingest_schema_violation_in_reject_mode_is_422_with_paths(backend: Backend) {
    let app = spawn_app(backend).await;
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/type", json!(12345));
    let body = serde_json::to_vec(&v).unwrap();
    let req = signed(
        "stripe-strict",
        "stripe",
        "whsec_test_new_secret",
        &body,
        NOW,
        "x",
    );
    let reply = app.send(&req).await;
    assert_eq!(reply.status, 422, "{}", reply.json);
    assert_eq!(reply.code(), "schema_violation");
    let paths = reply.json["error"]["paths"].as_array().unwrap();
    assert!(paths.contains(&json!("/type")), "{paths:?}");
    app.drain().await;
    assert!(app.all_events().await.is_empty());
    let (_, list) = app.get("/v1/admin/deliveries?source=stripe-strict").await;
    assert!(
        list["deliveries"].as_array().unwrap().is_empty(),
        "nothing stored"
    );
}

async fn ingest_unknown_source_is_404(backend: Backend) {
    let app = spawn_app(backend).await;
    let case = &cases()[0];
    for path in [
        "/v1/webhooks/nope",
        "/v1/webhooks/..%2Fstripe",
        "/v1/webhooks/STRIPE",
        "/v1/webhooks/str%C3%ADpe",
        // A token segment on a source that does not use one.
        "/v1/webhooks/stripe/whsec_test_new_secret",
    ] {
        let mut req = case.request("x");
        req.path = path.into();
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 404, "{path}: {}", reply.json);
        assert_eq!(reply.code(), "unknown_source", "{path}");
    }
    // The token-authenticated source without its token is not authentic.
    let dns = &cases()[4];
    let mut req = dns.request("y");
    req.path = "/v1/webhooks/dnsimple".into();
    let reply = app.send(&req).await;
    assert_eq!(reply.status, 401);
    assert_eq!(reply.code(), "missing_signature");
}

async fn ingest_oversized_body_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let case = &cases()[0];
    let mut v = fixture("stripe", "invoice.paid");
    set_pointer(&mut v, "/id", json!("big"));
    v["padding"] = json!("x".repeat(70 * 1024));
    let body = serde_json::to_vec(&v).unwrap();
    let req = case.request_with(&case.secret, &body, NOW, "big");
    let reply = app.send(&req).await;
    assert_eq!(reply.status, 413, "{}", reply.json);
    assert_eq!(reply.code(), "payload_too_large");
}

async fn ingest_oversized_chunked_body_is_413(backend: Backend) {
    let app = spawn_app(backend).await;
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..100).map(|_| Ok(vec![b' '; 1024])).collect();
    let response = app
        .client
        .post(format!("{}/v1/webhooks/stripe", app.address))
        .header("content-type", "application/json")
        .header("stripe-signature", "t=1,v1=00")
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 413);
}

async fn ingest_wrong_content_type_is_415(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        let req = case.request("ct").header("content-type", "text/plain");
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 415, "{}", case.label());
        assert_eq!(reply.code(), "unsupported_media_type");
    }
    // Parameters don't matter.
    let case = &cases()[0];
    let req = case
        .request("ct-charset")
        .header("content-type", "application/json; charset=utf-8");
    app.send_expect(&req, 200).await;
}

async fn ingest_malformed_json_is_400(backend: Backend) {
    let app = spawn_app(backend).await;
    for case in cases() {
        for body in [&b"{\"id\": "[..], b"", b"\xff\xfe{}", b"[1,2"] {
            let req = case.request_with(&case.secret, body, NOW, "malformed");
            let reply = app.send(&req).await;
            assert_eq!(reply.status, 400, "{}: {:?}", case.label(), body);
            assert_eq!(reply.code(), "invalid_body");
        }
    }
}

async fn ingest_deeply_nested_json_is_400_not_a_crash(backend: Backend) {
    let app = spawn_app(backend).await;
    let case = &cases()[0];
    let body = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let req = case.request_with(&case.secret, body.as_bytes(), NOW, "deep");
    let reply = app.send(&req).await;
    assert_eq!(reply.status, 400, "{}", reply.json);
    // The server is still there.
    app.send_expect(&case.request("after-deep"), 200).await;
}

async fn ingest_missing_signature_is_401(backend: Backend) {
    let app = spawn_app(backend).await;
    for (case, header) in cases().iter().zip([
        "stripe-signature",
        "webhook-signature",
        "webhook-signature",
        "x-pagerduty-signature",
    ]) {
        let req = case.request("nosig").without_header(header);
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 401, "{}", case.label());
        assert_eq!(reply.code(), "missing_signature", "{}", case.label());
    }
}

async fn ingest_svix_headers_are_accepted(backend: Backend) {
    let app = spawn_app(backend).await;
    let case = &cases()[1];
    let id = unique(case, "svix");
    let req = case.request(&id);
    let mut svix = req.clone();
    svix.headers = req
        .headers
        .iter()
        .map(|(k, v)| (k.replace("webhook-", "svix-"), v.clone()))
        .collect();
    let body = app.send_expect(&svix, 200).await;
    assert_eq!(body["duplicate"], false);
    // The id came from svix-id: the webhook-id copy is a duplicate.
    let again = app.send_expect(&req, 200).await;
    assert_eq!(again["duplicate"], true);
}

async fn ingest_errors_never_echo_signatures(backend: Backend) {
    let app = spawn_app(backend).await;
    let case = &cases()[0];
    let req = case
        .request("echo")
        .header("stripe-signature", "t=1765000000,v1=deadbeefcafe0123");
    let reply = app.send(&req).await;
    assert_eq!(reply.status, 401);
    assert!(!reply.json.to_string().contains("deadbeefcafe0123"));
}

crate::backend_tests!(
    ingest_allow_ips_refuses_other_senders,
    ingest_valid_request_becomes_a_catalog_event,
    ingest_tampered_body_is_401,
    ingest_wrong_secret_is_401_and_recorded,
    ingest_timestamp_outside_tolerance_is_401,
    ingest_rotated_secrets_both_verify,
    ingest_duplicate_is_acknowledged_once,
    ingest_concurrent_duplicates_store_one_delivery,
    ingest_captured_request_replayed_later_is_refused_or_a_duplicate,
    ingest_schema_violation_is_quarantined_by_default,
    ingest_schema_violation_in_reject_mode_is_422_with_paths,
    ingest_unknown_source_is_404,
    ingest_oversized_body_is_413,
    ingest_oversized_chunked_body_is_413,
    ingest_wrong_content_type_is_415,
    ingest_malformed_json_is_400,
    ingest_deeply_nested_json_is_400_not_a_crash,
    ingest_missing_signature_is_401,
    ingest_svix_headers_are_accepted,
    ingest_errors_never_echo_signatures
);

async fn ingest_allow_ips_refuses_other_senders(backend: Backend) {
    let spawn = |trusted: Vec<String>| {
        spawn_app_configured(
            Spawn {
                backend,
                ..Spawn::default()
            },
            move |s| {
                s.server.trusted_proxies = trusted;
                for src in &mut s.sources {
                    src.allow_ips = vec!["10.1.2.0/24".into(), "192.0.2.9".into()];
                }
            },
        )
    };
    let case = &cases()[0];
    // Direct from 127.0.0.1, not in the list; a forged X-Forwarded-For is
    // not believed without a trusted proxy.
    let app = spawn(vec![]).await;
    for xff in [None, Some("10.1.2.3")] {
        let mut req = case.request(&unique(case, "ip"));
        if let Some(x) = xff {
            req = req.header("x-forwarded-for", x);
        }
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 403, "{xff:?}: {}", reply.json);
        assert_eq!(reply.code(), "forbidden_address");
    }
    // Behind a trusted proxy (127.0.0.1), the right-most untrusted hop counts.
    let app = spawn(vec!["127.0.0.1/32".into()]).await;
    for (xff, status) in [
        ("10.1.2.3", 200),
        ("192.0.2.9", 200),
        ("10.1.2.3, 198.51.100.7", 403),
        ("198.51.100.7, 10.1.2.3", 200),
        ("not-an-ip", 403),
    ] {
        let req = case
            .request(&unique(case, "ip"))
            .header("x-forwarded-for", xff);
        let reply = app.send(&req).await;
        assert_eq!(reply.status, status, "{xff}: {}", reply.json);
    }
}
