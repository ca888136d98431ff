//! The event catalog: hookgate's own small, stable event types
//! (`invoice.paid`, `alert.triggered`, ...), one JSON Schema per type under
//! `catalog/<type>.json` describing the event's `data`, with its version
//! (`x-version`) and an example (`examples[0]`). Loaded and compiled once at
//! start; every catalog event is validated against its schema before it is
//! stored. Pure: no I/O after loading, no clock.

pub mod docs;
pub mod evolution;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::Value;

/// The wire shape of a catalog event (DESIGN.md §3). Only these cross to the
/// bus and to consumers; provider payload types never do.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CatalogEvent {
    pub id: String,
    #[serde(rename = "type")]
    pub event_type: String,
    pub version: u32,
    pub occurred_at: String,
    pub received_at: String,
    pub source: String,
    pub provider: String,
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub data: Value,
}

pub struct CatalogType {
    pub name: String,
    pub version: u32,
    pub description: String,
    pub schema: Value,
    pub example: Value,
    /// What each version changed, oldest first; the last is `version`.
    pub history: Vec<VersionNote>,
    validator: jsonschema::Validator,
}

/// One entry of a type's `x-history`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VersionNote {
    pub version: u32,
    pub change: String,
}

impl std::fmt::Debug for CatalogType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CatalogType")
            .field("name", &self.name)
            .field("version", &self.version)
            .finish_non_exhaustive()
    }
}

impl CatalogType {
    /// Check a `data` object; the error lists each failing path.
    pub fn validate(&self, data: &Value) -> Result<(), Vec<String>> {
        if self.validator.is_valid(data) {
            return Ok(());
        }
        let errors: Vec<String> = self
            .validator
            .iter_errors(data)
            .map(|e| describe_violation(&e))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Top-level property names the schema declares (used to check mappings
    /// at load time).
    pub fn properties(&self) -> impl Iterator<Item = &str> {
        self.schema
            .get("properties")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|o| o.keys().map(String::as_str))
    }
}

/// `"/data/amount: \"x\" is not of type \"integer\""` — the JSON path first.
pub fn describe_violation(e: &jsonschema::ValidationError<'_>) -> String {
    let path = e.instance_path.as_str();
    let path = if path.is_empty() { "/" } else { path };
    format!("{path}: {e}")
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct CatalogError {
    pub file: PathBuf,
    pub message: String,
}

#[derive(Debug, Default)]
pub struct Catalog {
    types: BTreeMap<String, CatalogType>,
}

impl Catalog {
    pub fn load(dir: &Path) -> Result<Catalog, CatalogError> {
        let err = |file: &Path, message: String| CatalogError {
            file: file.to_path_buf(),
            message,
        };
        let entries = std::fs::read_dir(dir).map_err(|e| err(dir, e.to_string()))?;
        let mut files: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "json"))
            .collect();
        files.sort();
        let mut types = BTreeMap::new();
        for file in files {
            let name = file
                .file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or_default()
                .to_string();
            if !valid_type_name(&name) {
                return Err(err(
                    &file,
                    format!("{name:?} is not a catalog type name (object.verb, lowercase)"),
                ));
            }
            let text = std::fs::read_to_string(&file).map_err(|e| err(&file, e.to_string()))?;
            let schema: Value =
                serde_json::from_str(&text).map_err(|e| err(&file, format!("not JSON: {e}")))?;
            let ty = compile_type(name, schema).map_err(|m| err(&file, m))?;
            types.insert(ty.name.clone(), ty);
        }
        if types.is_empty() {
            return Err(err(dir, "no catalog types (*.json) found".into()));
        }
        Ok(Catalog { types })
    }

    pub fn get(&self, name: &str) -> Option<&CatalogType> {
        self.types.get(name)
    }

    pub fn types(&self) -> impl Iterator<Item = &CatalogType> {
        self.types.values()
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }
}

fn compile_type(name: String, schema: Value) -> Result<CatalogType, String> {
    if schema.get("title").and_then(Value::as_str) != Some(name.as_str()) {
        return Err(format!("field `title` must be {name:?}"));
    }
    let version = schema
        .get("x-version")
        .and_then(Value::as_u64)
        .filter(|v| *v >= 1 && *v <= u64::from(u32::MAX))
        .ok_or("field `x-version` must be a positive integer")? as u32;
    let description = schema
        .get("description")
        .and_then(Value::as_str)
        .ok_or("field `description` is missing")?
        .to_string();
    let example = schema
        .get("examples")
        .and_then(|e| e.get(0))
        .cloned()
        .ok_or("field `examples` must hold at least one example")?;
    let history = history(&schema, version)?;
    let validator =
        jsonschema::validator_for(&schema).map_err(|e| format!("invalid JSON Schema: {e}"))?;
    let ty = CatalogType {
        name,
        version,
        description,
        schema,
        example,
        history,
        validator,
    };
    if let Err(errors) = ty.validate(&ty.example) {
        return Err(format!(
            "field `examples[0]` does not satisfy the schema: {}",
            errors.join("; ")
        ));
    }
    Ok(ty)
}

/// `x-history`: one note per version, 1 to `version` in order. A type still
/// at version 1 may leave it out.
fn history(schema: &Value, version: u32) -> Result<Vec<VersionNote>, String> {
    let Some(raw) = schema.get("x-history") else {
        return if version == 1 {
            Ok(vec![VersionNote {
                version: 1,
                change: "First version.".into(),
            }])
        } else {
            Err(format!(
                "field `x-history` must say what changed in each version up to {version}"
            ))
        };
    };
    let notes: Vec<VersionNote> = serde_json::from_value(raw.clone())
        .map_err(|e| format!("field `x-history`: {e} (a list of {{version, change}})"))?;
    let numbers: Vec<u32> = notes.iter().map(|n| n.version).collect();
    if numbers != (1..=version).collect::<Vec<u32>>() {
        return Err(format!(
            "field `x-history` must hold versions 1 to {version} in order, has {numbers:?}"
        ));
    }
    Ok(notes)
}

/// `family.verb` with optional further dotted parts, lowercase and `_`.
pub fn valid_type_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split('.').collect();
    parts.len() >= 2
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        })
}

/// A consumer's `type` filter: exact names and `family.*` prefixes,
/// comma-separated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypePattern {
    Exact(String),
    Prefix(String),
}

impl TypePattern {
    pub fn parse_list(s: &str) -> Result<Vec<TypePattern>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .map(|p| {
                if p == "*" {
                    Ok(TypePattern::Prefix(String::new()))
                } else if let Some(prefix) = p.strip_suffix(".*") {
                    if valid_type_name(&format!("{prefix}.x")) {
                        Ok(TypePattern::Prefix(format!("{prefix}.")))
                    } else {
                        Err(format!("invalid type pattern {p:?}"))
                    }
                } else if valid_type_name(p) {
                    Ok(TypePattern::Exact(p.to_string()))
                } else {
                    Err(format!("invalid type pattern {p:?}"))
                }
            })
            .collect()
    }

    pub fn matches(&self, ty: &str) -> bool {
        match self {
            TypePattern::Exact(e) => e == ty,
            TypePattern::Prefix(p) => ty.starts_with(p.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn type_pattern_parses_exact_and_prefix() {
        let p = TypePattern::parse_list("invoice.*, payment.failed").unwrap();
        assert!(p[0].matches("invoice.paid"));
        assert!(!p[0].matches("invoices.paid"));
        assert!(p[1].matches("payment.failed"));
        assert!(!p[1].matches("payment.failed2"));
        assert!(TypePattern::parse_list("invoice.%").is_err());
        assert!(TypePattern::parse_list("'; drop").is_err());
    }

    fn schema_at(version: u32, history: Option<serde_json::Value>) -> serde_json::Value {
        let mut schema = json!({
            "title": "invoice.paid", "description": "d", "x-version": version,
            "type": "object", "required": ["invoice_id"],
            "properties": {"invoice_id": {"type": "string"}},
            "examples": [{"invoice_id": "in_1"}]
        });
        if let Some(h) = history {
            schema["x-history"] = h;
        }
        schema
    }

    #[test]
    fn compile_type_reads_or_defaults_the_version_history() {
        let t = compile_type("invoice.paid".into(), schema_at(1, None)).unwrap();
        assert_eq!(t.history.len(), 1);
        let h = json!([{"version": 1, "change": "First."}, {"version": 2, "change": "amount in minor units."}]);
        let t = compile_type("invoice.paid".into(), schema_at(2, Some(h))).unwrap();
        assert_eq!(t.history[1].change, "amount in minor units.");
    }

    #[test]
    fn compile_type_requires_a_history_note_per_version() {
        let err = compile_type("invoice.paid".into(), schema_at(2, None)).unwrap_err();
        assert!(err.contains("x-history"), "{err}");
        let gap = json!([{"version": 1, "change": "a"}, {"version": 3, "change": "b"}]);
        let err = compile_type("invoice.paid".into(), schema_at(3, Some(gap))).unwrap_err();
        assert!(err.contains("versions 1 to 3"), "{err}");
        let short = json!([{"version": 1, "change": "a"}]);
        assert!(compile_type("invoice.paid".into(), schema_at(2, Some(short))).is_err());
    }

    #[test]
    fn compile_type_rejects_example_that_fails_schema() {
        let schema = json!({
            "title": "invoice.paid", "description": "d", "x-version": 1,
            "type": "object", "required": ["invoice_id"],
            "properties": {"invoice_id": {"type": "string"}},
            "examples": [{"invoice_id": 5}]
        });
        let err = compile_type("invoice.paid".into(), schema).unwrap_err();
        assert!(
            err.contains("examples[0]") && err.contains("/invoice_id"),
            "{err}"
        );
    }

    #[test]
    fn catalog_loads_repo_catalog_and_examples_validate() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("catalog");
        let catalog = Catalog::load(&dir).unwrap();
        for required in [
            "invoice.paid",
            "payment.failed",
            "alert.triggered",
            "domain.renewed",
        ] {
            assert!(catalog.get(required).is_some(), "{required} missing");
        }
    }
}
