//! Targets of the mapping engine and the payload side of a provider:
//! `Mapping::parse` on mutated `mapping.toml` files, and every real
//! provider's body decoding (JSON, form, XML), event extraction, schema
//! validation, reply and `Mapping::apply` on arbitrary JSON, on fixtures
//! with subtrees replaced by arbitrary JSON, and on mutated raw bodies.

use std::collections::BTreeSet;

use hookgate::catalog::Catalog;
use hookgate::providers::mapping::Mapping;
use hookgate::providers::Provider;
use hookgate::verify::Headers;
use proptest::prelude::*;
use serde_json::Value;

use super::{arb_mutation, catalog, fixtures, registry, repo, runner, Executions, Mutation};

/// What the gateway does with a body, from decoding to catalog events,
/// as ingest and the queue do it; the results are dropped, only returning
/// matters.
pub fn through_pipeline(
    provider: &Provider,
    raw: &[u8],
    content_type: Option<&str>,
    catalog: &Catalog,
) {
    let _ = provider.accepts_content_type(content_type);
    let Ok(payload) = provider.decode(raw, content_type) else {
        return;
    };
    let _ = provider.schema_violations(&payload);
    let _ = provider.reply_for(&payload);
    let headers = Headers::new();
    for lenient in [false, true] {
        let Ok(events) = provider.extract(&payload, raw, &headers, lenient) else {
            continue;
        };
        for e in events {
            let item = match (e.item_index, &provider.event.items) {
                (Some(i), Some(ptr)) => payload.pointer(ptr).and_then(|items| items.get(i)),
                _ => Some(&payload),
            };
            if let (Some(item), Some(ty)) = (item, e.provider_event_type.as_deref()) {
                let _ = provider.mapping.apply(ty, item, catalog);
            }
        }
    }
}

/// Every object key of every fixture: arbitrary JSON is built from them
/// so that mappings' pointers and conditions find something.
fn fixture_keys(registry: &hookgate::providers::Registry) -> Vec<String> {
    fn walk(v: &Value, out: &mut BTreeSet<String>) {
        match v {
            Value::Object(o) => {
                for (k, v) in o {
                    out.insert(k.clone());
                    walk(v, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|v| walk(v, out)),
            _ => {}
        }
    }
    let mut keys = BTreeSet::new();
    for p in registry.iter() {
        for body in fixtures(&p.name) {
            if let Ok(v) = serde_json::from_slice::<Value>(&body) {
                walk(&v, &mut keys);
            }
        }
    }
    keys.into_iter().collect()
}

fn arb_json(keys: Vec<String>) -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        ".{0,20}".prop_map(Value::String),
        prop_oneof![
            Just("2026-05-18T10:00:00Z"),
            Just("2026-13-45T99:99:99Z"),
            Just("1765000000"),
            Just("99999999999999999999999999"),
            Just("-1"),
            Just(""),
            Just("USD"),
            Just("invoice.paid"),
        ]
        .prop_map(|s| Value::String(s.to_string())),
    ];
    let key = prop_oneof![4 => prop::sample::select(keys), 1 => ".{0,8}"];
    leaf.prop_recursive(5, 48, 6, move |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            proptest::collection::btree_map(key.clone(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

/// Every JSON pointer into `v` (the root included).
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, v) in o {
                let k = k.replace('~', "~0").replace('/', "~1");
                pointers(v, format!("{at}/{k}"), out);
            }
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                pointers(v, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

/// The provider event types a mapping names (`on`), prefixes completed.
fn mapped_types(provider: &Provider) -> Vec<String> {
    provider
        .mapping
        .routes()
        .into_iter()
        .map(|r| {
            r.on.trim_end_matches('*').to_string() + if r.on.ends_with('*') { "x" } else { "" }
        })
        .collect()
}

#[test]
fn mapping_apply_arbitrary_json_never_panics() {
    let catalog = catalog();
    let registry = registry(&catalog);
    let providers: Vec<_> = registry.iter().cloned().collect();
    let fixture_values: Vec<Vec<Value>> = providers
        .iter()
        .map(|p| {
            fixtures(&p.name)
                .iter()
                .filter_map(|b| {
                    p.decode(b, p.content_types.first().map(String::as_str))
                        .ok()
                })
                .collect()
        })
        .collect();
    let executions = Executions::new("mapping_apply");
    let mut runner = runner(256, file!());
    let cases = runner.config().cases;
    let strategy = (
        0..providers.len(),
        arb_json(fixture_keys(&registry)),
        any::<prop::sample::Index>(),
        any::<prop::sample::Index>(),
        prop_oneof![4 => Just(None), 1 => ".{0,20}".prop_map(Some)],
    );
    runner
        .run(&strategy, |(i, json, fixture_at, pointer_at, odd_type)| {
            let p = &providers[i];
            let mut types = mapped_types(p);
            types.extend(odd_type);
            // Arbitrary JSON, and a fixture with one subtree replaced by it.
            let mut items = vec![json.clone()];
            if !fixture_values[i].is_empty() {
                let mut v = fixture_values[i][fixture_at.index(fixture_values[i].len())].clone();
                let mut all = Vec::new();
                pointers(&v, String::new(), &mut all);
                let target = &all[pointer_at.index(all.len())];
                if let Some(slot) = v.pointer_mut(target) {
                    *slot = json;
                }
                items.push(v);
            }
            for item in &items {
                for ty in &types {
                    let _ = p.mapping.apply(ty, item, &catalog);
                    executions.add(1);
                }
                let raw = serde_json::to_vec(item).unwrap();
                for lenient in [false, true] {
                    let _ = p.extract(item, &raw, &Headers::new(), lenient);
                }
                let _ = p.schema_violations(item);
                let _ = p.reply_for(item);
                executions.add(4);
            }
            Ok(())
        })
        .unwrap();
    executions.report(cases);
}

#[test]
fn provider_decode_mutated_bodies_never_panics() {
    let catalog = catalog();
    let registry = registry(&catalog);
    let providers: Vec<_> = registry.iter().cloned().collect();
    let bodies: Vec<Vec<Vec<u8>>> = providers.iter().map(|p| fixtures(&p.name)).collect();
    let executions = Executions::new("provider_decode_pipeline");
    let mut runner = runner(512, file!());
    let cases = runner.config().cases;
    let content_type = prop_oneof![
        Just(None),
        Just(Some("application/json")),
        Just(Some("application/x-www-form-urlencoded")),
        Just(Some("text/xml")),
        Just(Some("application/json; charset=utf-8")),
        Just(Some("")),
    ];
    let strategy = (
        0..providers.len(),
        any::<prop::sample::Index>(),
        proptest::collection::vec(arb_mutation(), 0..6),
        content_type,
    );
    runner
        .run(&strategy, |(i, at, mutations, ct)| {
            let p = &providers[i];
            let mut body = if bodies[i].is_empty() {
                b"{}".to_vec()
            } else {
                bodies[i][at.index(bodies[i].len())].clone()
            };
            for m in &mutations {
                m.apply(&mut body);
            }
            for ct in [ct, p.content_types.first().map(String::as_str)] {
                through_pipeline(p, &body, ct, &catalog);
                executions.add(1);
            }
            Ok(())
        })
        .unwrap();
    executions.report(cases);
}

#[test]
fn mapping_parse_mutated_files_never_panics() {
    let catalog = catalog();
    let dir = repo().join("providers");
    let mut texts: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path().join("mapping.toml")).ok())
        .collect();
    texts.sort();
    let registry = registry(&catalog);
    let samples: Vec<Value> = registry
        .iter()
        .flat_map(|p| fixtures(&p.name))
        .filter_map(|b| serde_json::from_slice(&b).ok())
        .collect();
    let executions = Executions::new("mapping_parse");
    let parsed = std::cell::Cell::new(0u64);
    let mut runner = runner(512, file!());
    let cases = runner.config().cases;
    let strategy = (
        0..texts.len(),
        proptest::collection::vec(arb_mutation(), 1..4),
        any::<prop::sample::Index>(),
    );
    runner
        .run(&strategy, |(i, mutations, sample)| {
            let mut text = texts[i].clone();
            for m in &mutations {
                text = m.apply_str(&text);
            }
            executions.add(1);
            let Ok(mapping) = Mapping::parse(&text, &catalog) else {
                return Ok(());
            };
            parsed.set(parsed.get() + 1);
            // A mapping that parses is applied to a real payload.
            let item = &samples[sample.index(samples.len())];
            for route in mapping.routes() {
                let _ = mapping.apply(route.on.trim_end_matches('*'), item, &catalog);
                executions.add(1);
            }
            Ok(())
        })
        .unwrap();
    println!(
        "fuzz figures: target=mapping_parse mappings_that_parsed={}",
        parsed.get()
    );
    executions.report(cases);
}

/// A regression guard that the mutation helpers themselves don't panic on
/// empty input (they index into what they mutate).
#[test]
fn mutation_on_empty_input_is_harmless() {
    let mut runner = runner(256, file!());
    runner
        .run(&arb_mutation(), |m: Mutation| {
            let mut empty = Vec::new();
            m.apply(&mut empty);
            let _ = m.apply_str("");
            Ok(())
        })
        .unwrap();
}

/// The XML inside Braintree's `bt_payload`, from its fixtures.
fn braintree_xml() -> Vec<Vec<u8>> {
    use base64::Engine;
    fixtures("braintree")
        .iter()
        .filter_map(|form| {
            let (_, payload) = form_urlencoded::parse(form).find(|(k, _)| k == "bt_payload")?;
            let compact: String = payload.chars().filter(|c| !c.is_whitespace()).collect();
            base64::engine::general_purpose::STANDARD
                .decode(compact)
                .ok()
        })
        .collect()
}

#[test]
fn xml_to_json_mutated_documents_never_panics() {
    use base64::Engine;
    let catalog = catalog();
    let registry = registry(&catalog);
    let braintree = registry
        .get("braintree")
        .expect("the braintree provider")
        .clone();
    let samples = braintree_xml();
    assert!(!samples.is_empty(), "no Braintree XML samples");
    let executions = Executions::new("xml_to_json");
    let mut runner = runner(512, file!());
    let cases = runner.config().cases;
    let piece = prop_oneof![
        Just(b"<a>".to_vec()),
        Just(b"</a>".to_vec()),
        Just(b"<b type=\"integer\">".to_vec()),
        Just(b"<c type=\"array\">".to_vec()),
        Just(b"<d nil=\"true\"/>".to_vec()),
        Just(b"<![CDATA[x]]>".to_vec()),
        Just(b"&amp;&#x0;&#99999999;&unknown;".to_vec()),
        Just(b"<?xml version=\"1.0\"?>".to_vec()),
        Just(b"<!DOCTYPE x [<!ENTITY e \"e\">]>".to_vec()),
        proptest::collection::vec(any::<u8>(), 0..8),
    ];
    let strategy = (
        any::<prop::sample::Index>(),
        proptest::collection::vec(arb_mutation(), 0..6),
        proptest::collection::vec((any::<prop::sample::Index>(), piece), 0..4),
    );
    runner
        .run(&strategy, |(at, mutations, inserts)| {
            let mut xml = samples[at.index(samples.len())].clone();
            for m in &mutations {
                m.apply(&mut xml);
            }
            for (i, p) in &inserts {
                let n = i.index(xml.len() + 1);
                xml.splice(n..n, p.iter().copied());
            }
            let _ = hookgate::providers::body::xml_to_json(&xml);
            // And as Braintree sends it: base64 in a form field.
            let payload = base64::engine::general_purpose::STANDARD.encode(&xml);
            let form: String = form_urlencoded::Serializer::new(String::new())
                .append_pair("bt_signature", "hookgate_public_key|00")
                .append_pair("bt_payload", &payload)
                .finish();
            through_pipeline(
                &braintree,
                form.as_bytes(),
                Some("application/x-www-form-urlencoded"),
                &catalog,
            );
            executions.add(2);
            Ok(())
        })
        .unwrap();
    executions.report(cases);
}
