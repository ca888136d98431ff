//! The mapping engine: `mapping.toml` turns one provider event into zero or
//! more catalog events. Entries match on the provider event type (exact,
//! `prefix.*` or `*`) and optional conditions on the payload; their data
//! fields are JSON pointers, constants and a few transforms. Pure: it sees a
//! parsed payload and returns catalog data; ids and timestamps are added by
//! the queue.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::Value;

use crate::catalog::Catalog;
use crate::clock::rfc3339;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct MappingFile {
    #[serde(default)]
    map: Vec<EntryFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EntryFile {
    on: String,
    emit: String,
    #[serde(default)]
    when: Vec<Condition>,
    data_from: Option<String>,
    #[serde(default)]
    data: BTreeMap<String, FieldFile>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum FieldFile {
    Pointer(String),
    Spec(FieldSpec),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct FieldSpec {
    pointer: Option<String>,
    value: Option<Value>,
    transform: Option<Transform>,
    default: Option<Value>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum Transform {
    Lowercase,
    Uppercase,
    String,
    /// Unix seconds or an RFC 3339 string → RFC 3339 in UTC.
    Rfc3339,
    /// A number or a numeric string → an integer.
    Integer,
    /// A URL → its last non-empty path segment (`…/captures/ABC` → `ABC`),
    /// for providers that name a related object only by its link.
    UrlLastSegment,
}

/// `{ pointer, equals | not_equals | exists | in }`; all conditions of an
/// entry must hold.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Condition {
    pointer: String,
    equals: Option<Value>,
    not_equals: Option<Value>,
    exists: Option<bool>,
    #[serde(rename = "in")]
    one_of: Option<Vec<Value>>,
}

impl Condition {
    fn holds(&self, item: &Value) -> bool {
        let found = item.pointer(&self.pointer).filter(|v| !v.is_null());
        if let Some(expected) = &self.equals {
            if found != Some(expected) {
                return false;
            }
        }
        if let Some(unexpected) = &self.not_equals {
            if found == Some(unexpected) {
                return false;
            }
        }
        if let Some(exists) = self.exists {
            if found.is_some() != exists {
                return false;
            }
        }
        if let Some(set) = &self.one_of {
            if !found.is_some_and(|v| set.contains(v)) {
                return false;
            }
        }
        true
    }
}

#[derive(Debug, Clone)]
enum Field {
    Pointer {
        pointer: String,
        transform: Option<Transform>,
        default: Option<Value>,
    },
    Constant(Value),
}

#[derive(Debug, Clone)]
enum Emit {
    Type(String),
    /// `$type`: the provider event type is itself a catalog type.
    ProviderType,
}

#[derive(Debug, Clone)]
enum On {
    Any,
    Exact(String),
    Prefix(String),
}

impl On {
    fn parse(s: &str) -> On {
        if s == "*" {
            On::Any
        } else if let Some(p) = s.strip_suffix('*') {
            On::Prefix(p.to_string())
        } else {
            On::Exact(s.to_string())
        }
    }

    fn matches(&self, ty: &str) -> bool {
        match self {
            On::Any => true,
            On::Exact(e) => e == ty,
            On::Prefix(p) => ty.starts_with(p.as_str()),
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    on: On,
    emit: Emit,
    when: Vec<Condition>,
    data_from: Option<String>,
    fields: Vec<(String, Field)>,
}

#[derive(Debug, Clone, Default)]
pub struct Mapping {
    entries: Vec<Entry>,
}

/// What one mapping entry turns into what, for documentation
/// (`docs/catalog.md`, `GET /v1/catalog`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The provider event type as written in `on`: exact, `prefix*` or `*`.
    pub on: String,
    /// The catalog type, or `None` for `emit = "$type"` (the provider's type
    /// is itself a catalog type).
    pub emit: Option<String>,
    /// The entry has `when` conditions: not every event of that type maps.
    pub conditional: bool,
}

/// One catalog event the mapping produced, before ids and times are added.
#[derive(Debug, Clone, PartialEq)]
pub struct Emitted {
    pub event_type: String,
    pub data: Value,
    /// Stable within a delivery: `<type>#<n>` for the n-th event of that type.
    /// Catalog event ids derive from it, so re-processing can't duplicate.
    pub key: String,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum MapError {
    #[error("mapping for {provider_type:?} produced an invalid {catalog_type}: {violations}")]
    InvalidEvent {
        provider_type: String,
        catalog_type: String,
        violations: String,
    },
    #[error("field {field}: {message}")]
    Transform { field: String, message: String },
}

fn check_pointer(p: &str, field: &str) -> Result<(), String> {
    if p.is_empty() || p.starts_with('/') {
        Ok(())
    } else {
        Err(format!(
            "{field}: {p:?} is not a JSON pointer (it must start with '/')"
        ))
    }
}

impl Mapping {
    /// Parse and check a mapping against the catalog: every `emit` exists,
    /// every data field is a property of that type, every pointer is one.
    pub fn parse(text: &str, catalog: &Catalog) -> Result<Mapping, String> {
        let file: MappingFile = toml::from_str(text).map_err(|e| e.to_string())?;
        let mut entries = Vec::with_capacity(file.map.len());
        for (i, e) in file.map.into_iter().enumerate() {
            let at = format!("map[{i}]");
            let emit = if e.emit == "$type" {
                Emit::ProviderType
            } else {
                let ty = catalog.get(&e.emit).ok_or_else(|| {
                    format!(
                        "{at}.emit: {:?} is not a catalog type (no catalog/{}.json)",
                        e.emit, e.emit
                    )
                })?;
                let known: Vec<&str> = ty.properties().collect();
                for name in e.data.keys() {
                    if !known.contains(&name.as_str()) {
                        return Err(format!(
                            "{at}.data.{name}: {:?} has no field {name:?} (fields: {})",
                            e.emit,
                            known.join(", ")
                        ));
                    }
                }
                Emit::Type(e.emit)
            };
            for (j, c) in e.when.iter().enumerate() {
                check_pointer(&c.pointer, &format!("{at}.when[{j}].pointer"))?;
            }
            if let Some(p) = &e.data_from {
                check_pointer(p, &format!("{at}.data_from"))?;
            }
            let mut fields = Vec::with_capacity(e.data.len());
            for (name, f) in e.data {
                let field_at = format!("{at}.data.{name}");
                let field = match f {
                    FieldFile::Pointer(pointer) => {
                        check_pointer(&pointer, &field_at)?;
                        Field::Pointer {
                            pointer,
                            transform: None,
                            default: None,
                        }
                    }
                    FieldFile::Spec(spec) => match (spec.pointer, spec.value) {
                        (Some(pointer), None) => {
                            check_pointer(&pointer, &field_at)?;
                            Field::Pointer {
                                pointer,
                                transform: spec.transform,
                                default: spec.default,
                            }
                        }
                        (None, Some(v)) => Field::Constant(v),
                        _ => {
                            return Err(format!(
                                "{field_at}: give exactly one of `pointer` or `value`"
                            ))
                        }
                    },
                };
                fields.push((name, field));
            }
            entries.push(Entry {
                on: On::parse(&e.on),
                emit,
                when: e.when,
                data_from: e.data_from,
                fields,
            });
        }
        Ok(Mapping { entries })
    }

    /// Each entry's provider type → catalog type, in file order.
    pub fn routes(&self) -> Vec<Route> {
        self.entries
            .iter()
            .map(|e| Route {
                on: match &e.on {
                    On::Any => "*".into(),
                    On::Exact(t) => t.clone(),
                    On::Prefix(p) => format!("{p}*"),
                },
                emit: match &e.emit {
                    Emit::Type(t) => Some(t.clone()),
                    Emit::ProviderType => None,
                },
                conditional: !e.when.is_empty(),
            })
            .collect()
    }

    /// Every matching entry emits one event, validated against its catalog
    /// schema. No match is not an error: the delivery completes with nothing.
    pub fn apply(
        &self,
        provider_type: &str,
        item: &Value,
        catalog: &Catalog,
    ) -> Result<Vec<Emitted>, MapError> {
        let mut out: Vec<Emitted> = Vec::new();
        for entry in &self.entries {
            if !entry.on.matches(provider_type) || !entry.when.iter().all(|c| c.holds(item)) {
                continue;
            }
            let event_type = match &entry.emit {
                Emit::Type(t) => t.clone(),
                Emit::ProviderType => match catalog.get(provider_type) {
                    Some(_) => provider_type.to_string(),
                    None => continue,
                },
            };
            // A copied object keeps only the fields the catalog type
            // declares: a sender's extra fields are not an error, and they
            // don't leak past the catalog either.
            let mut data = match (&entry.data_from, catalog.get(&event_type)) {
                (Some(p), Some(ty)) => match item.pointer(p) {
                    Some(Value::Object(o)) => {
                        let known: Vec<&str> = ty.properties().collect();
                        o.iter()
                            .filter(|(k, _)| known.contains(&k.as_str()))
                            .map(|(k, v)| (k.clone(), v.clone()))
                            .collect()
                    }
                    _ => serde_json::Map::new(),
                },
                _ => serde_json::Map::new(),
            };
            for (name, field) in &entry.fields {
                if let Some(v) =
                    field_value(field, item).map_err(|message| MapError::Transform {
                        field: name.clone(),
                        message,
                    })?
                {
                    data.insert(name.clone(), v);
                }
            }
            let data = Value::Object(data);
            if let Some(ty) = catalog.get(&event_type) {
                ty.validate(&data)
                    .map_err(|violations| MapError::InvalidEvent {
                        provider_type: provider_type.to_string(),
                        catalog_type: event_type.clone(),
                        violations: violations.join("; "),
                    })?;
            }
            let n = out.iter().filter(|e| e.event_type == event_type).count();
            out.push(Emitted {
                key: format!("{event_type}#{n}"),
                event_type,
                data,
            });
        }
        Ok(out)
    }
}

fn field_value(field: &Field, item: &Value) -> Result<Option<Value>, String> {
    match field {
        Field::Constant(v) => Ok(Some(v.clone())),
        Field::Pointer {
            pointer,
            transform,
            default,
        } => {
            let found = item.pointer(pointer).filter(|v| !v.is_null()).cloned();
            let Some(v) = found.or_else(|| default.clone()) else {
                return Ok(None);
            };
            match transform {
                None => Ok(Some(v)),
                Some(t) => apply_transform(*t, v).map(Some),
            }
        }
    }
}

fn apply_transform(t: Transform, v: Value) -> Result<Value, String> {
    let as_text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    Ok(match t {
        Transform::Lowercase => Value::String(as_text(&v).to_lowercase()),
        Transform::Uppercase => Value::String(as_text(&v).to_uppercase()),
        Transform::String => Value::String(as_text(&v)),
        Transform::Integer => match &v {
            Value::Number(n) if n.is_i64() || n.is_u64() => v,
            Value::Number(n) => match n.as_f64() {
                Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => Value::from(f as i64),
                _ => return Err(format!("{v} is not an integer")),
            },
            Value::String(s) => s
                .trim()
                .parse::<i64>()
                .map(Value::from)
                .map_err(|_| format!("{s:?} is not an integer"))?,
            _ => return Err(format!("{v} is not an integer")),
        },
        Transform::Rfc3339 => Value::String(to_rfc3339(&v)?),
        Transform::UrlLastSegment => {
            let text = as_text(&v);
            let rest = text.split(['?', '#']).next().unwrap_or_default();
            // After `scheme://host`, or the whole text for a bare path.
            let path = match rest.split_once("://") {
                Some((_, after)) => after.find('/').map_or("", |at| &after[at..]),
                None => rest,
            };
            match path.rsplit('/').find(|s| !s.is_empty()) {
                Some(segment) if path.starts_with('/') => Value::String(segment.to_owned()),
                _ => return Err(format!("{text:?} has no path segment")),
            }
        }
    })
}

/// Unix seconds (number or numeric string) or an RFC 3339 string → RFC 3339
/// UTC. Shared with the occurred_at extraction.
pub fn to_rfc3339(v: &Value) -> Result<String, String> {
    use time::format_description::well_known::Rfc3339;
    use time::OffsetDateTime;
    let secs = match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse::<i64>().ok(),
        _ => None,
    };
    if let Some(secs) = secs {
        return OffsetDateTime::from_unix_timestamp(secs)
            .map(rfc3339)
            .map_err(|_| format!("{secs} is out of range"));
    }
    match v {
        Value::String(s) => OffsetDateTime::parse(s, &Rfc3339)
            .map(rfc3339)
            .map_err(|_| format!("{s:?} is not an RFC 3339 time")),
        other => Err(format!("{other} is not a time")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::path::Path;

    fn catalog() -> Catalog {
        Catalog::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog")).unwrap()
    }

    #[test]
    fn mapping_rejects_unknown_catalog_type_and_field() {
        let c = catalog();
        let err = Mapping::parse("[[map]]\non='x'\nemit='invoice.payed'\n", &c).unwrap_err();
        assert!(err.contains("map[0].emit"), "{err}");
        let err = Mapping::parse(
            "[[map]]\non='x'\nemit='invoice.paid'\n[map.data]\ninvoise_id='/id'\n",
            &c,
        )
        .unwrap_err();
        assert!(err.contains("map[0].data.invoise_id"), "{err}");
        let err = Mapping::parse(
            "[[map]]\non='x'\nemit='invoice.paid'\n[map.data]\ninvoice_id='id'\n",
            &c,
        )
        .unwrap_err();
        assert!(err.contains("JSON pointer"), "{err}");
    }

    #[test]
    fn mapping_applies_conditions_and_transforms() {
        let c = catalog();
        let m = Mapping::parse(
            r#"
[[map]]
on = "invoice.*"
emit = "invoice.paid"
when = [{ pointer = "/paid", equals = true }]
[map.data]
invoice_id = "/id"
currency = { pointer = "/cur", transform = "lowercase" }
"#,
            &c,
        )
        .unwrap();
        let out = m
            .apply(
                "invoice.x",
                &json!({"id": "in_1", "cur": "USD", "paid": true}),
                &c,
            )
            .unwrap_or_default();
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].data["currency"], "usd");
        assert_eq!(out[0].key, "invoice.paid#0");
        let none = m
            .apply("invoice.x", &json!({"id": "in_1", "paid": false}), &c)
            .unwrap();
        assert!(none.is_empty());
        assert!(m
            .apply("other", &json!({"paid": true}), &c)
            .unwrap()
            .is_empty());
    }

    #[test]
    fn url_last_segment_takes_the_id_out_of_a_link() {
        let t = Transform::UrlLastSegment;
        for (url, want) in [
            (
                "https://api.paypal.com/v2/payments/captures/42311647XV020574X",
                "42311647XV020574X",
            ),
            ("https://x.test/a/b/?q=1#f", "b"),
            ("/v1/things/th_1", "th_1"),
        ] {
            assert_eq!(
                apply_transform(t, json!(url)).unwrap(),
                json!(want),
                "{url}"
            );
        }
        assert!(apply_transform(t, json!("no-slash")).is_err());
        assert!(apply_transform(t, json!("https://api.paypal.com")).is_err());
        assert!(apply_transform(t, json!("/")).is_err());
    }

    #[test]
    fn to_rfc3339_accepts_unix_and_rfc3339() {
        assert_eq!(to_rfc3339(&json!(0)).unwrap(), "1970-01-01T00:00:00Z");
        assert_eq!(
            to_rfc3339(&json!("2020-01-01T01:00:00+01:00")).unwrap(),
            "2020-01-01T00:00:00Z"
        );
        assert!(to_rfc3339(&json!("yesterday")).is_err());
        assert!(to_rfc3339(&json!(i64::MAX)).is_err());
    }
}
