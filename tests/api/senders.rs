//! What some senders need beyond "verify a header and store JSON": a
//! per-source choice of authentication, the URL they signed behind a proxy,
//! form bodies, their own acknowledgement bodies and handshakes.

use serde_json::json;

use crate::helpers::*;

fn source(name: &'static str, provider: &'static str, secret: &'static str) -> SourceSpec {
    SourceSpec {
        name,
        provider,
        secrets: vec![secret],
        on_schema_violation: hookgate::config::OnSchemaViolation::Reject,
    }
}

const KUMA_BODY: &[u8] = br#"{"heartbeat":{"monitorID":7,"status":0,"time":"2026-12-01 10:00:00","msg":"timeout"},"monitor":{"id":7,"name":"web","url":"https://example.com"},"msg":"[web] [DOWN] timeout"}"#;

/// A source picks another scheme than its provider's default: uptime-kuma
/// (header token by default) behind basic auth, and one spelled out as
/// `auth = "none"`; the credential header is not stored.
async fn senders_source_auth_overrides_the_provider_scheme(backend: Backend) {
    let app = spawn_app_configured(
        Spawn {
            backend,
            sources: vec![
                source("kuma-basic", "uptime-kuma", "ops:s3cret-pass"),
                source("kuma-open", "uptime-kuma", "unused"),
            ],
            ..Spawn::default()
        },
        |s| {
            s.sources[0].auth = Some(json!({ "scheme": "basic" }));
            s.sources[1].auth = Some(json!("none"));
            s.sources[1].secrets.clear();
        },
    )
    .await;
    let post = |source: &str| Outgoing {
        path: format!("/v1/webhooks/{source}"),
        headers: vec![("content-type".into(), "application/json".into())],
        body: KUMA_BODY.to_vec(),
    };
    use base64::Engine as _;
    let basic = |cred: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(cred)
        )
    };
    let refused = app.send(&post("kuma-basic")).await;
    assert_eq!((refused.status, refused.code()), (401, "missing_signature"));
    let wrong = app
        .send(&post("kuma-basic").header("authorization", &basic("ops:nope")))
        .await;
    assert_eq!((wrong.status, wrong.code()), (401, "invalid_signature"));
    let ok = app
        .send(&post("kuma-basic").header("authorization", &basic("ops:s3cret-pass")))
        .await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let stored = app.delivery(ok.json["id"].as_str().unwrap()).await;
    // Stored and accepted (a worker may already have processed it).
    assert!(
        stored["status"] == "pending" || stored["status"] == "done",
        "{stored}"
    );
    let stored_headers = stored.to_string().to_ascii_lowercase();
    assert!(!stored_headers.contains("s3cret"), "{stored}");

    let open = app.send(&post("kuma-open")).await;
    assert_eq!(open.status, 200, "{}", open.text);
}

/// Square signs the URL it was given. Behind a proxy the gateway sees
/// another one: the source's `public_url` is what counts.
async fn senders_square_verifies_against_the_configured_public_url(backend: Backend) {
    const PUBLIC: &str = "https://hooks.example.com/square-in";
    let app = spawn_app_configured(
        Spawn {
            backend,
            sources: vec![source("square", "square", "sq-signature-key")],
            ..Spawn::default()
        },
        |s| s.sources[0].public_url = Some(PUBLIC.into()),
    )
    .await;
    let body =
        std::fs::read(repo().join("providers/square/fixtures/payment.updated.completed.json"))
            .unwrap();
    let sign_for = |url: &str| {
        let signed = hookgate::verify::sign_request(
            &scheme("square"),
            "sq-signature-key",
            &hookgate::verify::SignInput {
                body: &body,
                timestamp: NOW,
                id: "",
                url: Some(url),
            },
        )
        .unwrap();
        let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
        headers.extend(signed.headers);
        Outgoing {
            path: "/v1/webhooks/square".into(),
            headers,
            body: body.clone(),
        }
    };
    // Signed for the address the gateway itself sees: not what Square signs.
    let local = app
        .send(&sign_for(&format!("{}/v1/webhooks/square", app.address)))
        .await;
    assert_eq!((local.status, local.code()), (401, "invalid_signature"));
    let public = app.send(&sign_for(PUBLIC)).await;
    assert_eq!(public.status, 200, "{}", public.text);
    assert_eq!(public.json["status"], "accepted");
}

/// Twilio behind a TLS proxy: with `server.public_url` the signed URL is the
/// public base + the request's path and query.
async fn senders_twilio_form_verifies_with_server_public_url_and_query(backend: Backend) {
    let app = spawn_app_configured(
        Spawn {
            backend,
            sources: vec![source("twilio", "twilio", "twilio-auth-token")],
            ..Spawn::default()
        },
        |s| s.server.public_url = Some("https://hooks.example.com/".into()),
    )
    .await;
    let body =
        std::fs::read(repo().join("providers/twilio/fixtures/message_status.delivered.form"))
            .unwrap();
    let url = "https://hooks.example.com/v1/webhooks/twilio?tenant=acme";
    let signed = hookgate::verify::sign_request(
        &scheme("twilio"),
        "twilio-auth-token",
        &hookgate::verify::SignInput {
            body: &body,
            timestamp: NOW,
            id: "",
            url: Some(url),
        },
    )
    .unwrap();
    let mut req = Outgoing {
        path: "/v1/webhooks/twilio?tenant=acme".into(),
        headers: vec![(
            "content-type".into(),
            "application/x-www-form-urlencoded".into(),
        )],
        body: body.clone(),
    };
    req.headers.extend(signed.headers.clone());
    let ok = app.send(&req).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    let delivery = app.delivery(ok.json["id"].as_str().unwrap()).await;
    assert_eq!(delivery["provider_event_type"], "delivered");
    // The same signature on another query string is refused.
    let mut moved = req;
    moved.path = "/v1/webhooks/twilio?tenant=evil".into();
    let refused = app.send(&moved).await;
    assert_eq!((refused.status, refused.code()), (401, "invalid_signature"));
}

/// Braintree's GET handshake is answered with the source's key, as the SDK
/// computes it; a malformed challenge is 400, other GETs 405.
async fn senders_braintree_challenge_is_answered(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        sources: vec![
            source(
                "braintree",
                "braintree",
                "integration_public_key:integration_private_key",
            ),
            source("stripe", "stripe", "whsec_x"),
        ],
        ..Spawn::default()
    })
    .await;
    let get = |path: &str| {
        let client = app.client.clone();
        let url = format!("{}{path}", app.address);
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap())
        }
    };
    // braintree_python tests/unit/test_webhooks.py
    assert_eq!(
        get("/v1/webhooks/braintree?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53").await,
        (
            200,
            "integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4".to_string()
        )
    );
    assert_eq!(
        get("/v1/webhooks/braintree?bt_challenge=not-hex").await.0,
        400
    );
    assert_eq!(get("/v1/webhooks/braintree").await.0, 405);
    assert_eq!(
        get("/v1/webhooks/stripe?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53")
            .await
            .0,
        405
    );
    assert_eq!(
        get("/v1/webhooks/nope?bt_challenge=20f9f8ed05f77439fe955c977e4c8a53")
            .await
            .0,
        404
    );
}

/// A provider's own ack body comes only with a durable 200: a retried
/// Slack challenge is a duplicate and still gets its echo; a bad signature
/// gets our JSON error, never the ack.
async fn senders_provider_ack_only_after_commit(backend: Backend) {
    let app = spawn_app_with(Spawn {
        backend,
        sources: vec![source("slack", "slack", "slack-signing-secret")],
        ..Spawn::default()
    })
    .await;
    let body = br#"{"token":"t","challenge":"c-123","type":"url_verification"}"#;
    let req = signed("slack", "slack", "slack-signing-secret", body, NOW, "");
    let first = app.send(&req).await;
    assert_eq!((first.status, first.text.as_str()), (200, "c-123"));
    let again = app.send(&req).await;
    assert_eq!((again.status, again.text.as_str()), (200, "c-123"));
    assert_eq!(
        first.headers["hookgate-delivery-ids"], again.headers["hookgate-delivery-ids"],
        "the retry is the same stored delivery"
    );
    assert_eq!(first.headers["hookgate-duplicate"], "false");
    assert_eq!(again.headers["hookgate-duplicate"], "true");
    let bad = signed("slack", "slack", "another-secret", body, NOW, "");
    let refused = app.send(&bad).await;
    assert_eq!(refused.status, 401);
    assert_eq!(refused.code(), "invalid_signature");
}

crate::backend_tests!(
    senders_source_auth_overrides_the_provider_scheme,
    senders_square_verifies_against_the_configured_public_url,
    senders_twilio_form_verifies_with_server_public_url_and_query,
    senders_braintree_challenge_is_answered,
    senders_provider_ack_only_after_commit,
);
