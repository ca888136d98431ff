//! Targets of `src/verify/`: every real provider's verifier (hence every
//! scheme and every signature-header parser) fed mutations of a validly
//! signed request and wholly arbitrary requests, and `Verifier::new` /
//! `sign_full` fed arbitrary `[signature]` tables.

use std::collections::BTreeSet;

use hookgate::verify::{self, Headers, RequestView, SchemeConfig, SignInput, Verifier};
use proptest::prelude::*;
use secrecy::SecretString;

use super::{arb_mutation, catalog, fixtures, registry, runner, secret_for, source_scheme};
use super::{Executions, Mutation};

/// The signing time of every baseline request.
const NOW: i64 = 1_765_000_000;

/// One provider's verifier and a request it accepts.
struct Target {
    provider: String,
    verifier: Verifier,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    path_token: Option<String>,
    url: String,
}

fn targets() -> Vec<Target> {
    let catalog = catalog();
    let registry = registry(&catalog);
    registry
        .iter()
        .map(|p| {
            let scheme = source_scheme(p);
            let secret = secret_for(&scheme);
            let verifier = Verifier::new(&scheme, &[SecretString::from(secret)])
                .unwrap_or_else(|e| panic!("{}: {e}", p.name));
            let body = fixtures(&p.name)
                .into_iter()
                .next()
                .unwrap_or_else(|| b"{}".to_vec());
            let url = format!("https://hooks.example.com/v1/webhooks/{}", p.name);
            let input = SignInput {
                body: &body,
                timestamp: NOW,
                id: "msg_2mD8ZkDxy2ZCOJcXvYR9fQpWdZM",
                url: Some(&url),
            };
            // Braintree's fixtures are signed by its SDK inside the body.
            let (body, headers, path_token) = match verify::sign_full(&scheme, secret, &input) {
                Ok((body, signed)) => (body, signed.headers, signed.path_token),
                Err(_) => (body.clone(), Vec::new(), None),
            };
            Target {
                provider: p.name.clone(),
                verifier,
                headers,
                body,
                path_token,
                url,
            }
        })
        .collect()
}

fn check(
    v: &Verifier,
    headers: &[(String, String)],
    body: &[u8],
    token: Option<&str>,
    url: Option<&str>,
    now: i64,
) -> bool {
    let mut h = Headers::new();
    for (k, val) in headers {
        h.push(k, val);
    }
    let req = RequestView {
        headers: &h,
        body,
        path_token: token,
        url,
    };
    v.verify(&req, now).is_ok()
}

#[derive(Debug, Clone)]
enum Edit {
    HeaderValue(prop::sample::Index, Mutation),
    HeaderName(prop::sample::Index, Mutation),
    /// The same header again with another value (which one wins?).
    Duplicate(prop::sample::Index, String),
    Drop(prop::sample::Index),
    Body(Mutation),
    Token(Mutation),
    Url(Mutation),
}

fn arb_edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        4 => (any::<prop::sample::Index>(), arb_mutation()).prop_map(|(i, m)| Edit::HeaderValue(i, m)),
        1 => (any::<prop::sample::Index>(), arb_mutation()).prop_map(|(i, m)| Edit::HeaderName(i, m)),
        1 => (any::<prop::sample::Index>(), ".{0,80}").prop_map(|(i, v)| Edit::Duplicate(i, v)),
        1 => any::<prop::sample::Index>().prop_map(Edit::Drop),
        3 => arb_mutation().prop_map(Edit::Body),
        1 => arb_mutation().prop_map(Edit::Token),
        1 => arb_mutation().prop_map(Edit::Url),
    ]
}

/// The receiver's clock: near the signing time, or anything at all.
fn arb_now() -> impl Strategy<Value = i64> {
    prop_oneof![
        3 => (-400i64..400).prop_map(|d| NOW + d),
        1 => (-1_000_000_000i64..1_000_000_000).prop_map(|d| NOW + d),
        1 => any::<i64>(),
        1 => prop_oneof![Just(i64::MIN), Just(i64::MAX), Just(0), Just(-1)],
    ]
}

#[test]
fn verify_mutated_signed_requests_never_panic() {
    let targets = targets();
    // The baseline: each unmutated request verifies (or the mutations
    // would mostly test the "missing" branches).
    let unverified: Vec<&str> = targets
        .iter()
        .filter(|t| {
            !check(
                &t.verifier,
                &t.headers,
                &t.body,
                t.path_token.as_deref(),
                Some(&t.url),
                NOW,
            )
        })
        .map(|t| t.provider.as_str())
        .collect();
    assert!(
        unverified.is_empty(),
        "baseline requests that do not verify: {unverified:?}"
    );
    let executions = Executions::new("verify_mutated_signed_requests");
    let mut runner = runner(256, file!());
    let cases = runner.config().cases;
    let strategy = (
        0..targets.len(),
        proptest::collection::vec(arb_edit(), 1..5),
        arb_now(),
    );
    runner
        .run(&strategy, |(which, edits, now)| {
            let t = &targets[which];
            let mut headers = t.headers.clone();
            let mut body = t.body.clone();
            let mut token = t.path_token.clone();
            let mut url = t.url.clone();
            for edit in &edits {
                match edit {
                    Edit::HeaderValue(i, m) if !headers.is_empty() => {
                        let n = i.index(headers.len());
                        headers[n].1 = m.apply_str(&headers[n].1);
                    }
                    Edit::HeaderName(i, m) if !headers.is_empty() => {
                        let n = i.index(headers.len());
                        headers[n].0 = m.apply_str(&headers[n].0);
                    }
                    Edit::Duplicate(i, v) if !headers.is_empty() => {
                        let n = i.index(headers.len());
                        let name = headers[n].0.clone();
                        headers.insert(n, (name, v.clone()));
                    }
                    Edit::Drop(i) if !headers.is_empty() => {
                        headers.remove(i.index(headers.len()));
                    }
                    Edit::Body(m) => m.apply(&mut body),
                    Edit::Token(m) => token = Some(m.apply_str(token.as_deref().unwrap_or(""))),
                    Edit::Url(m) => url = m.apply_str(&url),
                    _ => {}
                }
            }
            // Against its own verifier, and every other one (a request
            // meant for one scheme arriving at another).
            for other in &targets {
                check(
                    &other.verifier,
                    &headers,
                    &body,
                    token.as_deref(),
                    Some(&url),
                    now,
                );
                check(
                    &other.verifier,
                    &headers,
                    &body,
                    token.as_deref(),
                    None,
                    now,
                );
            }
            executions.add(2 * targets.len() as u64);
            Ok(())
        })
        .unwrap();
    executions.report(cases);
}

/// Header values built from the pieces real signature headers are made
/// of, or anything at all.
fn arb_header_value() -> impl Strategy<Value = String> {
    let piece = prop_oneof![
        Just("t=".to_owned()),
        Just("v1=".to_owned()),
        Just("v1,".to_owned()),
        Just("v1a,".to_owned()),
        Just("ts=".to_owned()),
        Just("h1=".to_owned()),
        Just("sha256=".to_owned()),
        Just("sha1=".to_owned()),
        Just("Basic ".to_owned()),
        Just("Bearer ".to_owned()),
        Just("SHA256withRSA".to_owned()),
        Just("https://api.paypal.com/v1/notifications/certs/CERT-1".to_owned()),
        Just(";".to_owned()),
        Just(",".to_owned()),
        Just(" ".to_owned()),
        Just("=".to_owned()),
        "[0-9]{0,25}",
        "-[0-9]{1,20}",
        "[0-9a-fA-F]{0,130}",
        "[A-Za-z0-9+/=_-]{0,90}",
        any::<String>(),
    ];
    prop_oneof![
        4 => proptest::collection::vec(piece, 0..12).prop_map(|v| v.concat()),
        1 => any::<String>(),
    ]
}

fn arb_body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..256),
        "[{}\\[\\]\":,a-z0-9=&%+ ]{0,200}".prop_map(String::into_bytes),
        Just(br#"{"notificationItems":[{"NotificationRequestItem":{"additionalData":{"hmacSignature":"x"}}}]}"#.to_vec()),
        Just(b"bt_signature=a%7Cb&bt_payload=PHg%2B".to_vec()),
    ]
}

/// Every header name a provider signs with, and the usual others.
fn header_names(targets: &[Target]) -> Vec<String> {
    let mut names: BTreeSet<String> = targets
        .iter()
        .flat_map(|t| t.headers.iter().map(|(k, _)| k.to_ascii_lowercase()))
        .collect();
    for extra in ["content-type", "authorization", "x-forwarded-proto", "host"] {
        names.insert(extra.to_string());
    }
    names.into_iter().collect()
}

#[test]
fn verify_arbitrary_requests_never_verify_or_panic() {
    let targets = targets();
    let names = header_names(&targets);
    let executions = Executions::new("verify_arbitrary_requests");
    let mut runner = runner(256, file!());
    let cases = runner.config().cases;
    let name = prop_oneof![4 => prop::sample::select(names), 1 => "[A-Za-z-]{1,20}"];
    let strategy = (
        proptest::collection::vec((name, arb_header_value()), 0..10),
        arb_body(),
        proptest::option::of(arb_header_value()),
        proptest::option::of(prop_oneof![
            Just("https://hooks.example.com/v1/webhooks/x?a=1&b=2".to_string()),
            ".{0,60}",
        ]),
        arb_now(),
    );
    runner
        .run(&strategy, |(headers, body, token, url, now)| {
            for t in &targets {
                let ok = check(
                    &t.verifier,
                    &headers,
                    &body,
                    token.as_deref(),
                    url.as_deref(),
                    now,
                );
                // Made-up input must not verify (except where nothing is
                // checked: `none`).
                let unauthenticated = t.verifier.scheme_name() == "none";
                prop_assert!(
                    !ok || unauthenticated,
                    "{} verified {:?}",
                    t.provider,
                    headers
                );
            }
            executions.add(targets.len() as u64);
            Ok(())
        })
        .unwrap();
    executions.report(cases);
}

/// Every real `[signature]` table, and the field names and values they
/// use: the dictionary arbitrary tables are drawn from.
struct Dictionary {
    tables: Vec<toml::map::Map<String, toml::Value>>,
    keys: Vec<String>,
    values: Vec<toml::Value>,
}

fn signature_dictionary() -> Dictionary {
    let mut tables = Vec::new();
    let mut keys = BTreeSet::new();
    let mut values = Vec::new();
    let dir = super::repo().join("providers");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path().join("provider.toml"))
        .collect();
    files.sort();
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let parsed: toml::Value = toml::from_str(&text).unwrap();
        if let Some(sig) = parsed.get("signature").and_then(|s| s.as_table()) {
            for (k, v) in sig {
                keys.insert(k.clone());
                values.push(v.clone());
            }
            tables.push(sig.clone());
        }
    }
    for k in [
        "webhook_id",
        "tolerance_secs",
        "header",
        "prefix",
        "encoding",
        "algorithm",
    ] {
        keys.insert(k.to_string());
    }
    Dictionary {
        tables,
        keys: keys.into_iter().collect(),
        values,
    }
}

fn arb_toml_value(dictionary: Vec<toml::Value>) -> impl Strategy<Value = toml::Value> {
    let template_piece = prop_oneof![
        Just("{timestamp}".to_string()),
        Just("{body}".to_string()),
        Just("{id}".to_string()),
        Just("{url}".to_string()),
        Just("{sorted_json}".to_string()),
        Just("{header:x-sig}".to_string()),
        Just("{query:data.id}".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just(".".to_string()),
        Just(":".to_string()),
        "[a-z0-9_-]{0,12}",
    ];
    prop_oneof![
        4 => prop::sample::select(dictionary),
        2 => proptest::collection::vec(template_piece, 0..6).prop_map(|v| toml::Value::String(v.concat())),
        1 => any::<i64>().prop_map(toml::Value::Integer),
        1 => any::<bool>().prop_map(toml::Value::Boolean),
        1 => ".{0,20}".prop_map(toml::Value::String),
        1 => proptest::collection::vec("[a-z0-9-]{0,10}".prop_map(toml::Value::String), 0..4)
            .prop_map(toml::Value::Array),
    ]
}

const SCHEMES: &[&str] = &[
    "stripe",
    "standard-webhooks",
    "hmac",
    "timestamped-hmac",
    "path-token",
    "basic",
    "bearer",
    "header-token",
    "ed25519",
    "twilio",
    "braintree",
    "paypal",
    "none",
    "adyen-items",
];

/// A field edit of a `[signature]` table: set (or add) a field, or
/// remove one.
#[derive(Debug, Clone)]
enum FieldEdit {
    Set(String, toml::Value),
    Remove(prop::sample::Index),
}

#[test]
fn verifier_new_and_sign_from_arbitrary_signature_tables_never_panic() {
    let dictionary = signature_dictionary();
    let executions = Executions::new("verifier_from_arbitrary_signature_tables");
    let mut runner = runner(512, file!());
    let cases = runner.config().cases;
    let scheme_name = prop_oneof![
        8 => prop::sample::select(SCHEMES.to_vec()).prop_map(str::to_string),
        1 => "[a-z-]{0,12}",
    ];
    let edit = prop_oneof![
        3 => (
            prop::sample::select(dictionary.keys.clone()),
            arb_toml_value(dictionary.values.clone()),
        )
            .prop_map(|(k, v)| FieldEdit::Set(k, v)),
        1 => any::<prop::sample::Index>().prop_map(FieldEdit::Remove),
    ];
    // A real table with a few fields changed, or one made up from scratch.
    let base = prop_oneof![
        3 => prop::sample::select(dictionary.tables.clone()),
        1 => scheme_name.prop_map(|name| {
            let mut t = toml::map::Map::new();
            t.insert("scheme".into(), toml::Value::String(name));
            t
        }),
    ];
    let strategy = (
        base,
        proptest::collection::vec(edit, 0..3),
        prop_oneof![Just(None), ".{0,40}".prop_map(Some)],
        arb_body(),
        prop_oneof![Just(NOW), any::<i64>()],
    );
    let parsed = std::cell::Cell::new(0u64);
    runner
        .run(
            &strategy,
            |(mut table, edits, extra_secret, body, timestamp)| {
                for e in edits {
                    match e {
                        FieldEdit::Set(k, v) => {
                            table.insert(k, v);
                        }
                        FieldEdit::Remove(i) if !table.is_empty() => {
                            let k = table.keys().nth(i.index(table.len())).unwrap().clone();
                            table.remove(&k);
                        }
                        FieldEdit::Remove(_) => {}
                    }
                }
                let text = toml::to_string(&toml::Value::Table(table)).unwrap();
                executions.add(1);
                let Ok(config) = toml::from_str::<SchemeConfig>(&text) else {
                    return Ok(());
                };
                parsed.set(parsed.get() + 1);
                let _ = config.secret_headers();
                let _ = config.authenticates_body();
                let mut secrets = vec![SecretString::from(secret_for(&config))];
                if let Some(s) = extra_secret {
                    secrets.push(SecretString::from(s));
                }
                executions.add(1);
                let input = SignInput {
                    body: &body,
                    timestamp,
                    id: "msg_1",
                    url: Some("https://hooks.example.com/v1/webhooks/x?data.id=1"),
                };
                executions.add(1);
                let signed = verify::sign_full(&config, secret_for(&config), &input);
                let Ok(verifier) = Verifier::new(&config, &secrets) else {
                    return Ok(());
                };
                if let Ok((body, signed)) = signed {
                    executions.add(1);
                    check(
                        &verifier,
                        &signed.headers,
                        &body,
                        signed.path_token.as_deref(),
                        input.url,
                        timestamp,
                    );
                }
                let _ = verifier.challenge("x");
                Ok(())
            },
        )
        .unwrap();
    println!(
        "fuzz figures: target=verifier_from_arbitrary_signature_tables tables_that_parse={}",
        parsed.get()
    );
    executions.report(cases);
}
