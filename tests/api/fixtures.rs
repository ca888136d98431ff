//! Data-driven: every file in `providers/*/fixtures/` is signed the way its
//! provider signs, sent through the real HTTP interface (with the headers of
//! an optional `<name>.headers.json`, for senders that put the event type
//! or id in headers, and of an optional `<name>.query`, the query string
//! the sender adds to the URL), processed, and the catalog events it produced — one
//! delivery per item for a batch — are compared with `<name>.expected.json`,
//! as are each delivery's `provider_event_id` and `occurred_at` (as the admin
//! API shows them, in item order): where `provider.toml`'s `[event]` finds the
//! sender's id and time, or the derived key, in this payload.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::helpers::*;

/// PayPal signs with the receiver's webhook id, which a source sets.
pub(crate) const PAYPAL_WEBHOOK_ID: &str = "5GP028458E2496506";

/// The scheme a provider's source verifies with: the provider's, plus
/// the per-account setting a source must add (PayPal's webhook id).
fn source_scheme(provider: &str) -> hookgate::verify::SchemeConfig {
    match provider {
        "paypal" => serde_json::from_value(paypal_auth()).unwrap(),
        _ => scheme(provider),
    }
}

pub(crate) fn paypal_auth() -> Value {
    json!({ "scheme": "paypal", "webhook_id": PAYPAL_WEBHOOK_ID })
}

/// A secret in the format each scheme expects.
pub(crate) fn secret_for(scheme: &hookgate::verify::SchemeConfig) -> &'static str {
    match scheme.name() {
        "standard-webhooks" => SW_SECRET,
        "stripe" => "whsec_fixture_secret",
        // Basic auth secrets are `user:password`.
        "basic" => "hookgate:fixture-secret",
        // The key pair the SDK signed the fixtures with (SOURCES.md).
        "braintree" => "hookgate_public_key:hookgate_private_key",
        // RFC 8032 test 1 key pair (seed, public key): signs and verifies.
        "ed25519" => "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
        // Adyen's HMAC keys are hex (this is the Adyen SDK tests' key).
        "adyen-items" => "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056",
        // The self-made certificate and its key (tests/vectors/README.md):
        // the gateway verifies with the certificate, the test signs with
        // the key.
        "paypal" => concat!(
            include_str!("../vectors/paypal_test_cert.pem"),
            include_str!("../vectors/paypal_test_key.pem")
        ),
        _ => "fixture-secret",
    }
}

/// Every folder under `providers/`, sorted.
pub(crate) fn provider_names() -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(repo().join("providers"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("provider.toml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// A provider's request fixtures (`*.json`, `*.form`), sorted; at least one.
pub(crate) fn fixture_files(name: &str) -> Vec<std::path::PathBuf> {
    let dir = repo().join("providers").join(name).join("fixtures");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|_| panic!("{name} has no fixtures/"))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let f = p.file_name().unwrap().to_string_lossy();
            (f.ends_with(".json") || f.ends_with(".form"))
                && !f.ends_with(".expected.json")
                && !f.ends_with(".headers.json")
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{name} has no fixtures");
    files
}

/// An app with one source per provider, named like it, holding the secret
/// `secret_for` gives its scheme (PayPal's with its webhook id).
pub(crate) async fn app_with_every_provider(
    backend: Backend,
    on_schema_violation: hookgate::config::OnSchemaViolation,
) -> TestApp {
    let specs = provider_names()
        .into_iter()
        .map(|name| {
            let secret = secret_for(&scheme(&name));
            let leaked: &'static str = Box::leak(name.into_boxed_str());
            SourceSpec {
                name: leaked,
                provider: leaked,
                secrets: vec![secret],
                on_schema_violation,
            }
        })
        .collect();
    spawn_app_configured(
        Spawn {
            backend,
            sources: specs,
            ..Spawn::default()
        },
        |s| {
            for source in s.sources.iter_mut().filter(|s| s.provider == "paypal") {
                source.auth = Some(paypal_auth());
            }
        },
    )
    .await
}

async fn fixtures_every_provider_fixture_maps_as_expected(backend: Backend) {
    let names = provider_names();
    let fixtures: Vec<(String, std::path::PathBuf)> = names
        .iter()
        .flat_map(|name| fixture_files(name).into_iter().map(|f| (name.clone(), f)))
        .collect();
    let app = app_with_every_provider(backend, hookgate::config::OnSchemaViolation::Reject).await;

    let mut seen_events = 0;
    let mut per_provider: BTreeMap<String, usize> = BTreeMap::new();
    for (provider, file) in &fixtures {
        let label = file.strip_prefix(repo()).unwrap().display().to_string();
        let body = std::fs::read(file).unwrap();
        let stem = file.file_stem().unwrap().to_string_lossy().into_owned();
        let expected_file = file.with_file_name(format!("{stem}.expected.json"));
        let expected: Value = serde_json::from_slice(
            &std::fs::read(&expected_file)
                .unwrap_or_else(|_| panic!("{label}: no {}", expected_file.display())),
        )
        .unwrap();
        let scheme = source_scheme(provider);
        let form = file.extension().is_some_and(|e| e == "form");
        let mut req = if scheme.name() == "braintree" {
            // Signed by Braintree's SDK: the signature is in the body.
            Outgoing {
                path: format!("/v1/webhooks/{provider}"),
                headers: Vec::new(),
                body: body.clone(),
            }
        } else {
            // The query string a sender puts on the URL (Mercado Pago's
            // `data.id`, which it signs).
            let query = std::fs::read_to_string(file.with_file_name(format!("{stem}.query"))).ok();
            signed_with(
                provider,
                &scheme,
                secret_for(&scheme),
                &body,
                (NOW, &format!("msg_{}", stem.replace('.', "_"))),
                Some(&app.address),
                query.as_deref().map(str::trim),
            )
        };
        req = req.header(
            "content-type",
            if form {
                "application/x-www-form-urlencoded"
            } else {
                "application/json"
            },
        );
        // Headers the sender puts beside the body (event type, delivery id).
        let headers_file = file.with_file_name(format!("{stem}.headers.json"));
        if let Ok(bytes) = std::fs::read(&headers_file) {
            let extra: serde_json::Map<String, Value> = serde_json::from_slice(&bytes).unwrap();
            for (k, v) in extra {
                req = req.header(&k, v.as_str().unwrap());
            }
        }
        let reply = app.send(&req).await;
        assert_eq!(reply.status, 200, "{label}: {}", reply.text);
        // A provider with its own ack gets it (`expected.reply`); the
        // delivery ids are then in a header.
        let delivery_ids: Vec<String> = match expected.get("reply") {
            Some(want) => {
                assert_eq!(reply.text, want.as_str().unwrap(), "{label}: reply body");
                assert_eq!(reply.headers["hookgate-status"], "accepted", "{label}");
                reply.headers["hookgate-delivery-ids"]
                    .to_str()
                    .unwrap()
                    .split(',')
                    .map(String::from)
                    .collect()
            }
            None => {
                assert_eq!(reply.json["status"], "accepted", "{label}: {}", reply.json);
                match reply.json["deliveries"].as_array() {
                    Some(list) => list
                        .iter()
                        .map(|d| d["id"].as_str().unwrap().to_string())
                        .collect(),
                    None => vec![reply.json["id"].as_str().unwrap().to_string()],
                }
            }
        };
        app.drain().await;

        let events = app.all_events().await;
        let new: Vec<Value> = events[seen_events..].to_vec();
        seen_events = events.len();
        let got: Vec<Value> = new
            .iter()
            .map(|e| json!({ "type": e["type"], "data": e["data"] }))
            .collect();
        assert_eq!(
            Value::Array(got),
            expected["events"],
            "{label}: catalog events differ from {}",
            expected_file.display()
        );
        // A batch reply lists one delivery per provider event.
        let batch = delivery_ids.len() > 1 || reply.json["deliveries"].is_array();
        if !batch {
            if let Some(first) = new.first() {
                assert_eq!(
                    first["provider_event_type"], expected["provider_event_type"],
                    "{label}"
                );
            }
        }
        let mut identities = Vec::new();
        for id in &delivery_ids {
            let delivery = app.delivery(id).await;
            assert_eq!(delivery["status"], "done", "{label}");
            if !batch {
                assert_eq!(
                    delivery["provider_event_type"], expected["provider_event_type"],
                    "{label}"
                );
            }
            identities.push(json!({
                "provider_event_id": delivery["provider_event_id"],
                "occurred_at": delivery["occurred_at"],
            }));
        }
        assert_eq!(
            Value::Array(identities),
            expected["deliveries"],
            "{label}: delivery ids / event times differ from {}",
            expected_file.display()
        );
        *per_provider.entry(provider.clone()).or_default() += 1;
    }
    for name in &names {
        assert!(
            per_provider.get(name).copied().unwrap_or(0) > 0,
            "{name}: no fixture ran"
        );
    }
}

crate::backend_tests!(fixtures_every_provider_fixture_maps_as_expected);
