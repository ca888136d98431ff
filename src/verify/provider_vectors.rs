//! Published vectors run through the scheme parameters the provider
//! definitions actually use: the `[signature]` table of each
//! `providers/<name>/provider.toml` is compiled in and must verify the
//! provider's official vector (or its official SDK's output where the
//! provider publishes none), so a wrong key derivation or header setting in
//! the data fails here. Provenance: tests/vectors/README.md.

use secrecy::SecretString;

use super::*;

fn scheme_of(provider_toml: &str) -> SchemeConfig {
    #[derive(serde::Deserialize)]
    struct File {
        signature: SchemeConfig,
    }
    // The rest of provider.toml is the providers module's business.
    let value: toml::Value = toml::from_str(provider_toml).unwrap();
    let signature = value.get("signature").unwrap().clone();
    let mut table = toml::value::Table::new();
    table.insert("signature".into(), signature);
    toml::Value::Table(table)
        .try_into::<File>()
        .unwrap()
        .signature
}

fn verify_with(
    scheme: &SchemeConfig,
    secrets: &[&str],
    headers: &[(&str, &str)],
    body: &[u8],
    now: i64,
) -> Result<Verified, VerifyError> {
    let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
    let v = Verifier::new(scheme, &secrets).unwrap();
    let mut h = Headers::new();
    for (n, val) in headers {
        h.push(n, val);
    }
    v.verify(
        &RequestView {
            headers: &h,
            body,
            path_token: None,
            url: None,
        },
        now,
    )
}

/// `body` verifies with `secret` and the published `header` value, not
/// with another secret nor with one byte changed, and `sign` reproduces it.
fn assert_vector(scheme: &SchemeConfig, secret: &str, header: (&str, &str), body: &[u8], ts: i64) {
    assert!(
        verify_with(scheme, &[secret], &[header], body, ts).is_ok(),
        "{}: the official vector does not verify",
        header.0
    );
    assert!(verify_with(scheme, &["other-secret", secret], &[header], body, ts).is_ok());
    assert_eq!(
        verify_with(scheme, &["not-the-secret"], &[header], body, ts).unwrap_err(),
        VerifyError::InvalidSignature
    );
    let mut tampered = body.to_vec();
    tampered[body.len() / 2] ^= 0x01;
    assert_eq!(
        verify_with(scheme, &[secret], &[header], &tampered, ts).unwrap_err(),
        VerifyError::InvalidSignature
    );
    let signed = sign(scheme, secret, body, ts, "msg").unwrap();
    assert_eq!(
        signed.headers[0],
        (header.0.to_owned(), header.1.to_owned()),
        "sign() differs from the official value"
    );
}

const PADDLE_SECRET: &str =
    "pdl_ntfset_01hs0t3tw21j988db1pam5xg8m_GrOWLNef+vmtjJYq4mSnHNzvc8uWoJ1I";

#[test]
fn provider_paddle_sdk_payload_vectors_verify() {
    let scheme = scheme_of(include_str!("../../providers/paddle/provider.toml"));
    assert_vector(
        &scheme,
        PADDLE_SECRET,
        (
            "Paddle-Signature",
            "ts=1710498758;h1=558bf93944dbeb4790c7a8af6cb2ea435c8ca9c8396aafc1a4e37424ac132744",
        ),
        include_bytes!("../../tests/vectors/paddle_standard_payload.json"),
        1710498758,
    );
    assert_vector(
        &scheme,
        PADDLE_SECRET,
        (
            "Paddle-Signature",
            "ts=1710498288;h1=38219b3ba1578184e625c29d201a27cd25bd69e2ec9c3ab87dcb90d87ff73a41",
        ),
        include_bytes!("../../tests/vectors/paddle_special_chars_payload.json"),
        1710498288,
    );
    // The same bodies are the provider's customer.created fixtures.
    assert_eq!(
        include_bytes!("../../providers/paddle/fixtures/customer.created.json"),
        include_bytes!("../../tests/vectors/paddle_standard_payload.json")
    );
    assert_eq!(
        include_bytes!("../../providers/paddle/fixtures/customer.created.special-chars.json"),
        include_bytes!("../../tests/vectors/paddle_special_chars_payload.json")
    );
    // The SDK's other vector: a dummy h1 beside the real one.
    assert!(verify_with(
        &scheme,
        &["pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh"],
        &[(
            "Paddle-Signature",
            "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"
        )],
        b"hello-world",
        1696195954,
    )
    .is_ok());
}

#[test]
fn provider_coinbase_commerce_sdk_vector_verifies() {
    let scheme = scheme_of(include_str!(
        "../../providers/coinbase-commerce/provider.toml"
    ));
    let body = include_bytes!("../../tests/vectors/coinbase_commerce_charge_created.json");
    assert_eq!(body.len(), 816);
    assert_vector(
        &scheme,
        "30291a20-0bd1-4267-9b0f-e6e7b123c0bf",
        (
            "X-CC-Webhook-Signature",
            "8be7742c7d372f08a6a3224edadf18a22b65fa9e28f3f2de97376cdaa092590d",
        ),
        body,
        0,
    );
    assert_eq!(
        include_bytes!("../../providers/coinbase-commerce/fixtures/charge.created.json"),
        body
    );
}

#[test]
fn provider_gocardless_sdk_vector_verifies() {
    let scheme = scheme_of(include_str!("../../providers/gocardless/provider.toml"));
    let body = include_bytes!("../../tests/vectors/gocardless_webhook_body.json");
    assert_eq!(body.len(), 550);
    assert_vector(
        &scheme,
        "ED7D658C-D8EB-4941-948B-3973214F2D49",
        (
            "Webhook-Signature",
            "2693754819d3e32d7e8fcb13c729631f316c6de8dc1cf634d6527f1c07276e7e",
        ),
        body,
        0,
    );
    assert_eq!(
        include_bytes!("../../providers/gocardless/fixtures/subscriptions.created.json"),
        body
    );
}

#[test]
fn provider_razorpay_sdk_vector_verifies() {
    let scheme = scheme_of(include_str!("../../providers/razorpay/provider.toml"));
    // The whole file, its final newline included.
    let body = include_bytes!("../../tests/vectors/razorpay_payment_authorized.json");
    assert_eq!(body.len(), 971);
    assert_eq!(body.last(), Some(&b'\n'));
    assert_vector(
        &scheme,
        "key_secret",
        (
            "X-Razorpay-Signature",
            "d60e67fd884556c045e9be7dad57903e33efc7172c17c6e3ef77db42d2b366e9",
        ),
        body,
        0,
    );
    assert_eq!(
        include_bytes!("../../providers/razorpay/fixtures/payment.authorized.json"),
        body
    );
}

/// octokit/webhooks-methods `sign("mysecret", '{"foo":"bar"}')`, with the
/// header GitHub sends (see also the docs vector in hmac.rs), and the docs
/// vector through the provider's own table.
#[test]
fn provider_github_octokit_vector_verifies() {
    let scheme = scheme_of(include_str!("../../providers/github/provider.toml"));
    assert_vector(
        &scheme,
        "mysecret",
        (
            "X-Hub-Signature-256",
            "sha256=4864d2759938a15468b5df9ade20bf161da9b4f737ea61794142f3484236bda3",
        ),
        br#"{"foo":"bar"}"#,
        0,
    );
    assert_vector(
        &scheme,
        "It's a Secret to Everybody",
        (
            "X-Hub-Signature-256",
            "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17",
        ),
        b"Hello, World!",
        0,
    );
}

/// Shopify publishes no fixed vector. This one is the official Node
/// library's output: @shopify/shopify-api 15.0.0 `createSHA256HMAC("hush",
/// body, HashFormat.Base64)` over the orders/paid fixture, which the same
/// library's `shopify.webhooks.validate` accepts (and rejects with one byte
/// added). Provenance: tests/vectors/README.md.
#[test]
fn provider_shopify_sdk_vector_verifies() {
    let scheme = scheme_of(include_str!("../../providers/shopify/provider.toml"));
    let body = include_bytes!("../../providers/shopify/fixtures/orders.paid.json");
    assert_eq!(body.len(), 1998);
    assert_vector(
        &scheme,
        "hush",
        (
            "X-Shopify-Hmac-Sha256",
            "79DRaS+0xhQ68I6xUDp0abXLwcwhb8rjsuAjtcNcU+w=",
        ),
        body,
        0,
    );
}

/// Verify with a URL, for the schemes that sign it.
fn verify_at(
    scheme: &SchemeConfig,
    secret: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    url: &str,
) -> Result<Verified, VerifyError> {
    let v = Verifier::new(scheme, &[SecretString::from(secret.to_owned())]).unwrap();
    let mut h = Headers::new();
    for (n, val) in headers {
        h.push(n, val);
    }
    v.verify(
        &RequestView {
            headers: &h,
            body,
            path_token: None,
            url: Some(url),
        },
        0,
    )
}

#[test]
fn provider_square_sdk_vectors_verify_with_the_url_only() {
    // square/square-python-sdk legacy/tests/utilities/test_webhooks_helper.py;
    // the first also accepted by PyPI squareup 46.0.0.20260916
    // `square.utils.webhooks_helper.verify_signature`.
    let scheme = scheme_of(include_str!("../../providers/square/provider.toml"));
    let header = "x-square-hmacsha256-signature";
    let body = include_bytes!("../../providers/square/fixtures/webhooks.test_notification.json");
    let url = "https://webhook.site/679a4f3a-dcfa-49ee-bac5-9d0edad886b9";
    let sig = "GF4YkrJgGBDZ9NIYbNXBnMzqb2HoL4RW/S6vkZ9/2N4=";
    assert!(verify_at(
        &scheme,
        "Ibxx_5AKakO-3qeNVR61Dw",
        &[(header, sig)],
        body,
        url
    )
    .is_ok());
    // Another URL (a proxy's view of it), another key, or no URL at all fail.
    assert!(verify_at(
        &scheme,
        "Ibxx_5AKakO-3qeNVR61Dw",
        &[(header, sig)],
        body,
        "https://webhook.site/other"
    )
    .is_err());
    assert!(verify_at(&scheme, "other", &[(header, sig)], body, url).is_err());
    assert!(verify_with(
        &scheme,
        &["Ibxx_5AKakO-3qeNVR61Dw"],
        &[(header, sig)],
        body,
        0
    )
    .is_err());
    assert!(verify_at(
        &scheme,
        "signature-key",
        &[(header, "Cxt7+aTi4rKgcA0bC4g9EHdVtLSDWdqccmL5MvihU4U=")],
        br#"{"data":{"type":"webhooks","id":">id<"}}"#,
        "https://webhook.site/webhooks"
    )
    .is_ok());
    let signed = sign_request(
        &scheme,
        "Ibxx_5AKakO-3qeNVR61Dw",
        &SignInput {
            body,
            timestamp: 0,
            id: "",
            url: Some(url),
        },
    )
    .unwrap();
    assert_eq!(signed.headers[0].1, sig);
    assert!(
        sign(&scheme, "k", body, 0, "").is_err(),
        "signing the URL needs one"
    );
}

#[test]
fn provider_slack_sdk_vector_verifies() {
    // python-slack-sdk tests/slack_sdk/signature/test_signature_verifier.py.
    let scheme = scheme_of(include_str!("../../providers/slack/provider.toml"));
    let body = include_bytes!("../../providers/slack/fixtures/slash_command.form");
    let headers = [
        (
            "X-Slack-Signature",
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503",
        ),
        ("X-Slack-Request-Timestamp", "1531420618"),
    ];
    assert!(verify_with(
        &scheme,
        &["8f742231b10e8888abcd99yyyzzz85a5"],
        &headers,
        body,
        1531420618
    )
    .is_ok());
    assert_eq!(
        verify_with(
            &scheme,
            &["8f742231b10e8888abcd99yyyzzz85a5"],
            &headers,
            body,
            1531420618 + 301
        )
        .unwrap_err(),
        VerifyError::TimestampOutOfTolerance
    );
    assert!(verify_with(&scheme, &["other"], &headers, body, 1531420618).is_err());
}

#[test]
fn provider_twilio_braintree_discord_definitions_verify_sdk_values() {
    // The scheme modules test the vectors in depth; this checks the provider
    // definitions select them.
    let twilio = scheme_of(include_str!("../../providers/twilio/provider.toml"));
    assert!(verify_at(
        &twilio,
        "12345",
        &[("X-Twilio-Signature", "RSOYDt4T1cUTdK1PDd93/VVr8B8=")],
        include_bytes!("../../providers/twilio/fixtures/gather.form"),
        "https://mycompany.com/myapp.php?foo=1&bar=2"
    )
    .is_ok());
    let braintree = scheme_of(include_str!("../../providers/braintree/provider.toml"));
    assert!(verify_with(
        &braintree,
        &["hookgate_public_key:hookgate_private_key"],
        &[],
        include_bytes!("../../providers/braintree/fixtures/subscription_charged_successfully.form"),
        0
    )
    .is_ok());
    let discord = scheme_of(include_str!("../../providers/discord/provider.toml"));
    assert_eq!(discord.name(), "ed25519");
}

/// Grafana publishes no fixed vector (grafana/alerting's http/hmac_test.go
/// signs at run time). These values come from Grafana's own signing code:
/// `HMACRoundTripper` of grafana/alerting `http/hmac.go` (commit 783ce041),
/// run on the grafana alerts.firing fixture with a fixed clock, without and
/// with a timestamp header. Provenance: tests/vectors/README.md.
#[test]
fn provider_grafana_hmac_roundtripper_vectors_verify() {
    let scheme = scheme_of(include_str!("../../providers/grafana/provider.toml"));
    let body = include_bytes!("../../providers/grafana/fixtures/alerts.firing.json");
    assert_eq!(body.len(), 2324);
    let secret = "grafana-hmac-secret";
    // Timestamp header configured: "{ts}:{body}" is signed.
    let headers = [
        (
            "X-Grafana-Alerting-Signature",
            "92ad69d98ff02d5d82d543742a3fe3befa51772a42d50acbedeb609e45c81c99",
        ),
        ("X-Grafana-Alerting-Timestamp", "1765000000"),
    ];
    let ok = verify_with(&scheme, &[secret], &headers, body, 1_765_000_000).unwrap();
    assert_eq!(ok.timestamp, Some(1_765_000_000));
    assert_eq!(
        verify_with(&scheme, &[secret], &headers, body, 1_765_000_301).unwrap_err(),
        VerifyError::TimestampOutOfTolerance
    );
    assert_eq!(
        verify_with(&scheme, &["other"], &headers, body, 1_765_000_000).unwrap_err(),
        VerifyError::InvalidSignature
    );
    let signed = sign(&scheme, secret, body, 1_765_000_000, "msg").unwrap();
    assert_eq!(
        signed.headers,
        headers
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect::<Vec<_>>()
    );
    // No timestamp header configured in Grafana: the body alone.
    let plain = (
        "X-Grafana-Alerting-Signature",
        "041b3849391649e4edf78a955f18ce5475db93804e1931cd12f896493fba2b77",
    );
    assert!(verify_with(&scheme, &[secret], &[plain], body, 0).is_ok());
    assert!(verify_with(&scheme, &["other", secret], &[plain], body, 0).is_ok());
    let mut tampered = body.to_vec();
    tampered[100] ^= 1;
    assert_eq!(
        verify_with(&scheme, &[secret], &[plain], &tampered, 0).unwrap_err(),
        VerifyError::InvalidSignature
    );
    // The timestamped signature does not pass as a plain one.
    assert_eq!(
        verify_with(&scheme, &[secret], &headers[..1], body, 0).unwrap_err(),
        VerifyError::InvalidSignature
    );
    // grafana/alerting's own test case "Valid signing with timestamp"
    // (secret "secret", body "test message", mock clock at the epoch), with
    // its header names, through the same kind of table.
    let test_case = SchemeConfig::Hmac(HmacConfig {
        header: "X-Signature".into(),
        timestamp_header: Some("X-Timestamp".into()),
        ..match &scheme {
            SchemeConfig::Hmac(c) => c.clone(),
            _ => unreachable!(),
        }
    });
    let value = "ac18a483a582b60a883e974541afe25aa1026136163e94665649743324183ef1";
    assert!(verify_with(
        &test_case,
        &["secret"],
        &[("X-Signature", value), ("X-Timestamp", "0")],
        b"test message",
        0
    )
    .is_ok());
}

/// Sentry publishes no fixed vector. Secret made up; the value is accepted
/// by the verifier of Sentry's official example app
/// (getsentry/integration-platform-example, `is_correct_sentry_signature`).
#[test]
fn provider_sentry_vector_verifies() {
    let scheme = scheme_of(include_str!("../../providers/sentry/provider.toml"));
    let body = include_bytes!("../../providers/sentry/fixtures/issue.created.json");
    assert_eq!(body.len(), 1059);
    assert_vector(
        &scheme,
        "3c1f5e9a7b2d4c6e8f0a1b3c5d7e9f2a4b6c8d0e1f3a5b7c9d2e4f6a8b0c1d3e",
        (
            "Sentry-Hook-Signature",
            "0738d1434ba70ebef55fa0e16869d75405e54c6dfb2482ddf54128614944af51",
        ),
        body,
        0,
    );
}

/// Svix: the official `test_sign_function` vector of svix/svix-webhooks
/// (the same as Standard Webhooks') sent with the svix-* headers, and a
/// fixture signed by the official Python library (PyPI `svix` 2.9.1).
#[test]
fn provider_svix_vectors_verify_with_svix_headers() {
    let scheme = scheme_of(include_str!("../../providers/svix/provider.toml"));
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let cases: [(&str, &str, &[u8], &str); 2] = [
        (
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            "1614265330",
            include_bytes!("../../providers/svix/fixtures/test.json"),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
        ),
        (
            "msg_2rV9pNq3ZkXyT8bW1cLd4Hf6Js0",
            "1765000000",
            include_bytes!("../../providers/svix/fixtures/monitor.down.json"),
            "v1,Y8RlMQ0kPgZlJ9vHFFpF+1BJ6fYMQRxC5pX4csRJrIg=",
        ),
    ];
    for (id, ts, body, sig) in cases {
        let now: i64 = ts.parse().unwrap();
        let headers = [
            ("svix-id", id),
            ("svix-timestamp", ts),
            ("svix-signature", sig),
        ];
        let ok = verify_with(&scheme, &[secret], &headers, body, now).unwrap();
        assert_eq!(ok.timestamp, Some(now));
        assert_eq!(
            verify_with(&scheme, &[secret], &headers, body, now + 301).unwrap_err(),
            VerifyError::TimestampOutOfTolerance
        );
        let other_id = [
            ("svix-id", "msg_other"),
            ("svix-timestamp", ts),
            ("svix-signature", sig),
        ];
        assert_eq!(
            verify_with(&scheme, &[secret], &other_id, body, now).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let mut tampered = body.to_vec();
        tampered[body.len() / 2] ^= 1;
        assert_eq!(
            verify_with(&scheme, &[secret], &headers, &tampered, now).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let signed = sign(&scheme, secret, body, now, id).unwrap();
        assert!(signed.headers.iter().any(|(_, v)| v == sig), "{signed:?}");
    }
    assert_eq!(
        include_bytes!("../../providers/svix/fixtures/test.json"),
        br#"{"test": 2432232314}"#
    );
}
