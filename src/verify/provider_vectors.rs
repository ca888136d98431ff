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
