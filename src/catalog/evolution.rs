//! Schema evolution: the catalog's promise is that a type's fields are
//! added, never removed, retyped or made optional, without a new
//! `version`. `catalog/catalog.lock` records, per type, the version and the
//! fields as consumers last saw them; `breaking_changes` compares the
//! catalog against it, and a test fails on any change the version does not
//! cover. `hookgate catalog lock` rewrites the lock once the change is
//! right (it refuses while a change is breaking).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Catalog;

/// What consumers rely on in one type: its version, its fields with their
/// JSON types, and which fields are always there.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockedType {
    pub version: u32,
    pub fields: BTreeMap<String, Value>,
    pub required: Vec<String>,
}

/// The whole lock file, types by name.
pub type Lock = BTreeMap<String, LockedType>;

/// The catalog as it is now, in the lock's shape.
pub fn snapshot(catalog: &Catalog) -> Lock {
    catalog
        .types()
        .map(|t| {
            let fields = t
                .schema
                .get("properties")
                .and_then(Value::as_object)
                .map(|props| {
                    props
                        .iter()
                        .map(|(name, p)| (name.clone(), p.get("type").cloned().unwrap_or_default()))
                        .collect()
                })
                .unwrap_or_default();
            let mut required: Vec<String> = t
                .schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| {
                    r.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default();
            required.sort();
            (
                t.name.clone(),
                LockedType {
                    version: t.version,
                    fields,
                    required,
                },
            )
        })
        .collect()
}

/// The lock file's text: pretty JSON, keys sorted, one trailing newline.
pub fn render(lock: &Lock) -> String {
    let mut text = serde_json::to_string_pretty(lock).expect("a lock serializes");
    text.push('\n');
    text
}

/// Every change from `locked` to `current` that breaks a consumer of the
/// locked version without a version bump, in words. Empty means
/// compatible. A type whose version went up may change freely; a version
/// going down, or a type disappearing, is always breaking.
pub fn breaking_changes(locked: &Lock, current: &Lock) -> Vec<String> {
    let mut out = Vec::new();
    for (name, old) in locked {
        let Some(new) = current.get(name) else {
            out.push(format!("{name}: the type was removed"));
            continue;
        };
        if new.version < old.version {
            out.push(format!(
                "{name}: version went down from {} to {}",
                old.version, new.version
            ));
            continue;
        }
        if new.version > old.version {
            continue;
        }
        for (field, ty) in &old.fields {
            match new.fields.get(field) {
                None => out.push(format!(
                    "{name}: field `{field}` was removed without a new version (still {})",
                    new.version
                )),
                Some(t) if t != ty => out.push(format!(
                    "{name}: field `{field}` changed type from {ty} to {t} without a new version (still {})",
                    new.version
                )),
                Some(_) => {}
            }
        }
        for field in &old.required {
            if !new.required.contains(field) {
                out.push(format!(
                    "{name}: field `{field}` is no longer required, without a new version (still {})",
                    new.version
                ));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn locked(version: u32, fields: &[(&str, &str)], required: &[&str]) -> Lock {
        let mut lock = Lock::new();
        lock.insert(
            "invoice.paid".into(),
            LockedType {
                version,
                fields: fields
                    .iter()
                    .map(|(f, t)| (f.to_string(), json!(t)))
                    .collect(),
                required: required.iter().map(|s| s.to_string()).collect(),
            },
        );
        lock
    }

    #[test]
    fn breaking_changes_allow_added_fields_and_newly_required_ones() {
        let old = locked(1, &[("invoice_id", "string")], &["invoice_id"]);
        let new = locked(
            1,
            &[("invoice_id", "string"), ("amount_minor", "integer")],
            &["amount_minor", "invoice_id"],
        );
        assert!(breaking_changes(&old, &new).is_empty());
    }

    #[test]
    fn breaking_changes_catch_removed_retyped_and_unrequired_fields() {
        let old = locked(
            1,
            &[("invoice_id", "string"), ("amount_minor", "integer")],
            &["invoice_id"],
        );
        let removed = locked(1, &[("invoice_id", "string")], &["invoice_id"]);
        let retyped = locked(
            1,
            &[("invoice_id", "string"), ("amount_minor", "string")],
            &["invoice_id"],
        );
        let unrequired = locked(
            1,
            &[("invoice_id", "string"), ("amount_minor", "integer")],
            &[],
        );
        let one = |new: &Lock| {
            let c = breaking_changes(&old, new);
            assert_eq!(c.len(), 1, "{c:?}");
            c[0].clone()
        };
        assert!(one(&removed).contains("`amount_minor` was removed"));
        assert!(one(&retyped).contains("changed type from \"integer\" to \"string\""));
        assert!(one(&unrequired).contains("no longer required"));
    }

    #[test]
    fn breaking_changes_accept_anything_under_a_new_version_but_not_going_back() {
        let old = locked(1, &[("invoice_id", "string")], &["invoice_id"]);
        let v2 = locked(2, &[("id", "integer")], &[]);
        assert!(breaking_changes(&old, &v2).is_empty());
        let back = breaking_changes(&v2, &old);
        assert!(back[0].contains("version went down"), "{back:?}");
        assert!(breaking_changes(&old, &Lock::new())[0].contains("type was removed"));
    }
}
