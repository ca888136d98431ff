//! Provider definitions are data: `providers/<name>/provider.toml` (scheme,
//! content types, where the event id / type / time live), `schemas/*.json`
//! and `mapping.toml`. This module loads and compiles them once at start
//! and names the file and field of anything broken; at request time it only
//! reads the compiled form. What data can't express is a `verify::SchemeConfig`
//! variant the data refers to.

pub mod mapping;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::verify::{Headers, SchemeConfig};
use mapping::Mapping;

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Category {
    Payment,
    Registrar,
    Monitoring,
    Generic,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProviderFile {
    name: String,
    category: Category,
    description: String,
    docs: Option<String>,
    content_types: Vec<String>,
    signature: SchemeConfig,
    event: EventFile,
    schema: Option<SchemaFile>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SchemaFile {
    file: PathBuf,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventFile {
    id: LocatorFile,
    #[serde(rename = "type")]
    event_type: LocatorFile,
    occurred_at: Option<LocatorFile>,
    items: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocatorFile {
    pointer: Option<String>,
    header: Option<String>,
    headers: Option<Vec<String>>,
    derive: Option<String>,
    join: Option<Vec<String>>,
    separator: Option<String>,
    format: Option<TimeFormat>,
}

#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum TimeFormat {
    Unix,
    UnixMs,
    Rfc3339,
}

/// Where a value lives in a request.
#[derive(Debug, Clone)]
pub enum Locator {
    Pointer(String),
    /// The first of these headers that is present.
    Headers(Vec<String>),
    /// SHA-256 of the raw body (or of the batch item), for senders that
    /// don't send an id.
    Sha256,
    /// The values at several pointers joined with a separator, for senders
    /// whose id or type is spread over fields (Adyen: pspReference,
    /// eventCode, success, originalReference). The first names the object
    /// and must be present; the others qualify it and stand as "" when
    /// absent.
    Join {
        pointers: Vec<String>,
        separator: String,
    },
}

impl Locator {
    /// `allow_derive`: the id may be derived from the body; `allow_join`:
    /// the id and the type may be joined from several fields.
    fn from_file(
        f: LocatorFile,
        field: &str,
        allow_derive: bool,
        allow_join: bool,
    ) -> Result<Locator, String> {
        let set = [
            f.pointer.is_some(),
            f.header.is_some(),
            f.headers.is_some(),
            f.derive.is_some(),
            f.join.is_some(),
        ]
        .iter()
        .filter(|x| **x)
        .count();
        if set != 1 {
            return Err(format!(
                "{field}: give exactly one of `pointer`, `header`, `headers`{}{}",
                if allow_derive { ", `derive`" } else { "" },
                if allow_join { ", `join`" } else { "" }
            ));
        }
        if f.separator.is_some() && f.join.is_none() {
            return Err(format!("{field}.separator: only goes with `join`"));
        }
        if let Some(pointers) = f.join {
            if !allow_join {
                return Err(format!("{field}.join: is not supported here"));
            }
            if pointers.is_empty() {
                return Err(format!("{field}.join: must not be empty"));
            }
            if let Some(p) = pointers.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("{field}.join: {p:?} must start with '/'"));
            }
            return Ok(Locator::Join {
                pointers,
                separator: f.separator.unwrap_or_else(|| ":".to_owned()),
            });
        }
        if let Some(p) = f.pointer {
            if !p.starts_with('/') {
                return Err(format!("{field}.pointer: {p:?} must start with '/'"));
            }
            return Ok(Locator::Pointer(p));
        }
        if let Some(h) = f.header {
            return Ok(Locator::Headers(vec![h]));
        }
        if let Some(hs) = f.headers {
            if hs.is_empty() {
                return Err(format!("{field}.headers: must not be empty"));
            }
            return Ok(Locator::Headers(hs));
        }
        match f.derive.as_deref() {
            Some("sha256") if allow_derive => Ok(Locator::Sha256),
            Some(other) => Err(format!(
                "{field}.derive: {other:?} is not supported here (only \"sha256\", for the event id)"
            )),
            None => unreachable!("one locator form is set"),
        }
    }
}

#[derive(Debug, Clone)]
pub struct EventSpec {
    pub id: Locator,
    pub event_type: Locator,
    pub occurred_at: Option<(Locator, TimeFormat)>,
    /// Pointer to the array of provider events in a batch payload.
    pub items: Option<String>,
}

/// A loaded provider definition, compiled.
pub struct Provider {
    pub name: String,
    pub category: Category,
    pub description: String,
    pub docs: Option<String>,
    pub content_types: Vec<String>,
    pub scheme: SchemeConfig,
    pub event: EventSpec,
    pub schema: Option<jsonschema::Validator>,
    pub mapping: Mapping,
    pub dir: PathBuf,
}

impl std::fmt::Debug for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Provider")
            .field("name", &self.name)
            .field("scheme", &self.scheme.name())
            .finish_non_exhaustive()
    }
}

/// One failed schema rule: the JSON path in the payload and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Violation {
    pub path: String,
    pub message: String,
}

/// One provider event found in a request (a batch holds several).
#[derive(Debug, Clone, PartialEq)]
pub struct ExtractedEvent {
    pub provider_event_id: String,
    pub provider_event_type: Option<String>,
    pub occurred_at: Option<OffsetDateTime>,
    /// Index into the batch array; `None` for a single-event payload.
    pub item_index: Option<usize>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("{0}")]
pub struct ExtractError(pub String);

const MAX_ID_LEN: usize = 255;

impl Provider {
    pub fn accepts_content_type(&self, content_type: Option<&str>) -> bool {
        let media = content_type
            .and_then(|c| c.split(';').next())
            .map(|m| m.trim().to_ascii_lowercase());
        match media {
            Some(m) => self
                .content_types
                .iter()
                .any(|c| c.eq_ignore_ascii_case(&m)),
            None => false,
        }
    }

    /// The schema's violations (empty = valid), at most 20.
    pub fn schema_violations(&self, payload: &Value) -> Vec<Violation> {
        match &self.schema {
            Some(v) => v
                .iter_errors(payload)
                .take(20)
                .map(|e| {
                    let path = e.instance_path.as_str();
                    Violation {
                        path: if path.is_empty() {
                            "/".into()
                        } else {
                            path.into()
                        },
                        message: e.to_string(),
                    }
                })
                .collect(),
            None => Vec::new(),
        }
    }

    /// The provider events this request carries, each with its own id.
    /// `lenient` (a quarantined payload) falls back to the derived id when
    /// the sender's id can't be found, so an authentic but malformed
    /// payload is still stored once.
    pub fn extract(
        &self,
        payload: &Value,
        raw_body: &[u8],
        headers: &Headers,
        lenient: bool,
    ) -> Result<Vec<ExtractedEvent>, ExtractError> {
        let Some(items_ptr) = &self.event.items else {
            return Ok(vec![
                self.extract_one(payload, raw_body, headers, None, lenient)?
            ]);
        };
        match payload.pointer(items_ptr) {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let bytes = serde_json::to_vec(item).unwrap_or_default();
                    self.extract_one(item, &bytes, headers, Some(i), lenient)
                })
                .collect(),
            _ if lenient => Ok(vec![
                self.extract_one(payload, raw_body, headers, None, true)?
            ]),
            _ => Err(ExtractError(format!(
                "{items_ptr} must be a non-empty array of events"
            ))),
        }
    }

    fn extract_one(
        &self,
        item: &Value,
        raw: &[u8],
        headers: &Headers,
        item_index: Option<usize>,
        lenient: bool,
    ) -> Result<ExtractedEvent, ExtractError> {
        let derived = || format!("sha256:{}", hex::encode(Sha256::digest(raw)));
        let id = match &self.event.id {
            Locator::Sha256 => Some(derived()),
            other => locate_text(other, item, headers),
        };
        let provider_event_id = match id {
            Some(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => id,
            Some(_) if !lenient => {
                return Err(ExtractError(format!(
                    "the event id must be 1 to {MAX_ID_LEN} bytes"
                )))
            }
            None if !lenient => {
                return Err(ExtractError(format!(
                    "no event id at {}",
                    describe(&self.event.id)
                )))
            }
            _ => derived(),
        };
        let provider_event_type =
            locate_text(&self.event.event_type, item, headers).map(|t| truncate(t, MAX_ID_LEN));
        let occurred_at = self
            .event
            .occurred_at
            .as_ref()
            .and_then(|(loc, fmt)| parse_time(loc, *fmt, item, headers));
        Ok(ExtractedEvent {
            provider_event_id,
            provider_event_type,
            occurred_at,
            item_index,
        })
    }
}

fn truncate(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
    s
}

fn describe(loc: &Locator) -> String {
    match loc {
        Locator::Pointer(p) => p.clone(),
        Locator::Headers(h) => format!("header {}", h.join(" or ")),
        Locator::Sha256 => "sha256(body)".into(),
        Locator::Join { pointers, .. } => pointers[0].clone(),
    }
}

fn locate<'a>(loc: &Locator, item: &'a Value, headers: &'a Headers) -> Option<LocatedValue<'a>> {
    match loc {
        Locator::Pointer(p) => item
            .pointer(p)
            .filter(|v| !v.is_null())
            .map(LocatedValue::Json),
        Locator::Headers(names) => names
            .iter()
            .find_map(|n| headers.get(n))
            .map(LocatedValue::Text),
        Locator::Sha256 | Locator::Join { .. } => None,
    }
}

enum LocatedValue<'a> {
    Json(&'a Value),
    Text(&'a str),
}

fn locate_text(loc: &Locator, item: &Value, headers: &Headers) -> Option<String> {
    if let Locator::Join {
        pointers,
        separator,
    } = loc
    {
        let text = |p: &String| match item.pointer(p)? {
            Value::Bool(b) => Some(b.to_string()),
            other => json_text(other),
        };
        let mut parts = vec![text(&pointers[0])?];
        parts.extend(pointers[1..].iter().map(|p| text(p).unwrap_or_default()));
        return Some(parts.join(separator));
    }
    match locate(loc, item, headers)? {
        LocatedValue::Text(t) => Some(t.trim().to_string()),
        LocatedValue::Json(v) => json_text(v),
    }
}

/// A JSON string as it is, a number as JSON spells it; nothing else.
fn json_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn parse_time(
    loc: &Locator,
    fmt: TimeFormat,
    item: &Value,
    headers: &Headers,
) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    let text = locate_text(loc, item, headers)?;
    match fmt {
        TimeFormat::Unix => OffsetDateTime::from_unix_timestamp(text.parse().ok()?).ok(),
        TimeFormat::UnixMs => {
            OffsetDateTime::from_unix_timestamp_nanos(text.parse::<i128>().ok()? * 1_000_000).ok()
        }
        TimeFormat::Rfc3339 => OffsetDateTime::parse(&text, &Rfc3339).ok(),
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct LoadError {
    pub file: PathBuf,
    pub message: String,
}

/// Every provider definition under `providers/`, by name.
#[derive(Debug, Default)]
pub struct Registry {
    providers: BTreeMap<String, Arc<Provider>>,
}

impl Registry {
    pub fn load(dir: &Path, catalog: &Catalog) -> Result<Registry, LoadError> {
        let entries = std::fs::read_dir(dir).map_err(|e| LoadError {
            file: dir.to_path_buf(),
            message: format!("cannot read the providers directory: {e}"),
        })?;
        let mut dirs: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("provider.toml").is_file())
            .collect();
        dirs.sort();
        let mut providers = BTreeMap::new();
        for d in dirs {
            let p = load_provider(&d, catalog)?;
            providers.insert(p.name.clone(), Arc::new(p));
        }
        Ok(Registry { providers })
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Provider>> {
        self.providers.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Provider>> {
        self.providers.values()
    }

    pub fn len(&self) -> usize {
        self.providers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.providers.is_empty()
    }
}

/// Only the scheme of one provider: what `hookgate sign` needs.
pub fn load_scheme(providers_dir: &Path, name: &str) -> Result<SchemeConfig, LoadError> {
    let file = providers_dir.join(name).join("provider.toml");
    let text = std::fs::read_to_string(&file).map_err(|e| LoadError {
        file: file.clone(),
        message: e.to_string(),
    })?;
    let parsed: ProviderFile = toml::from_str(&text).map_err(|e| LoadError {
        file: file.clone(),
        message: e.to_string(),
    })?;
    Ok(parsed.signature)
}

fn load_provider(dir: &Path, catalog: &Catalog) -> Result<Provider, LoadError> {
    let file = dir.join("provider.toml");
    let fail = |file: &Path, message: String| LoadError {
        file: file.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(&file).map_err(|e| fail(&file, e.to_string()))?;
    let parsed: ProviderFile = toml::from_str(&text).map_err(|e| fail(&file, e.to_string()))?;
    let folder = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    if parsed.name != folder {
        return Err(fail(
            &file,
            format!(
                "field `name`: {:?} must equal the folder name {folder:?}",
                parsed.name
            ),
        ));
    }
    if parsed.content_types.is_empty() {
        return Err(fail(
            &file,
            "field `content_types`: must not be empty".into(),
        ));
    }
    let occurred_at = match parsed.event.occurred_at {
        Some(mut l) => {
            let fmt = l.format.take().unwrap_or(TimeFormat::Rfc3339);
            Some((
                Locator::from_file(l, "event.occurred_at", false, false)
                    .map_err(|m| fail(&file, m))?,
                fmt,
            ))
        }
        None => None,
    };
    if let Some(items) = &parsed.event.items {
        if !items.starts_with('/') {
            return Err(fail(
                &file,
                "field `event.items`: must be a JSON pointer".into(),
            ));
        }
    }
    let event = EventSpec {
        id: Locator::from_file(parsed.event.id, "event.id", true, true)
            .map_err(|m| fail(&file, m))?,
        event_type: Locator::from_file(parsed.event.event_type, "event.type", false, true)
            .map_err(|m| fail(&file, m))?,
        occurred_at,
        items: parsed.event.items,
    };
    let schema = match parsed.schema {
        Some(s) => {
            let path = dir.join(&s.file);
            let text = std::fs::read_to_string(&path).map_err(|e| {
                fail(
                    &file,
                    format!("field `schema.file`: cannot read {}: {e}", path.display()),
                )
            })?;
            let json: Value =
                serde_json::from_str(&text).map_err(|e| fail(&path, format!("not JSON: {e}")))?;
            Some(
                jsonschema::validator_for(&json)
                    .map_err(|e| fail(&path, format!("invalid JSON Schema: {e}")))?,
            )
        }
        None => None,
    };
    let mapping_file = dir.join("mapping.toml");
    let mapping = match std::fs::read_to_string(&mapping_file) {
        Ok(text) => Mapping::parse(&text, catalog).map_err(|m| fail(&mapping_file, m))?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Mapping::default(),
        Err(e) => return Err(fail(&mapping_file, e.to_string())),
    };
    Ok(Provider {
        name: parsed.name,
        category: parsed.category,
        description: parsed.description,
        docs: parsed.docs,
        content_types: parsed
            .content_types
            .into_iter()
            .map(|c| c.to_ascii_lowercase())
            .collect(),
        scheme: parsed.signature,
        event,
        schema,
        mapping,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn locator(toml_text: &str, allow_derive: bool, allow_join: bool) -> Result<Locator, String> {
        let file: LocatorFile = toml::from_str(toml_text).unwrap();
        Locator::from_file(file, "event.id", allow_derive, allow_join)
    }

    #[test]
    fn locator_join_renders_present_fields_and_blanks_absent_qualifiers() {
        let loc = locator(
            r#"join = ["/psp", "/code", "/success", "/original"]"#,
            true,
            true,
        )
        .unwrap();
        let headers = Headers::new();
        let item = json!({"psp": "8835", "code": "REFUND", "success": "true", "original": "8834"});
        assert_eq!(
            locate_text(&loc, &item, &headers).as_deref(),
            Some("8835:REFUND:true:8834")
        );
        // Absent or null qualifiers stand as "", numbers and booleans as JSON
        // spells them.
        let item = json!({"psp": 8835, "code": "AUTHORISATION", "success": true, "original": null});
        assert_eq!(
            locate_text(&loc, &item, &headers).as_deref(),
            Some("8835:AUTHORISATION:true:")
        );
        // Without the first field there is no id.
        assert_eq!(locate_text(&loc, &json!({"code": "X"}), &headers), None);
        let dotted = locator(
            r#"join = ["/object_type", "/event_type"]
separator = ".""#,
            false,
            true,
        )
        .unwrap();
        assert_eq!(
            locate_text(
                &dotted,
                &json!({"object_type": "subscription", "event_type": "created"}),
                &headers
            )
            .as_deref(),
            Some("subscription.created")
        );
    }

    #[test]
    fn locator_join_is_checked_at_load() {
        for (text, allow_join, expected) in [
            (r#"join = []"#, true, "must not be empty"),
            (r#"join = ["id"]"#, true, "must start with '/'"),
            (r#"join = ["/id"]"#, false, "not supported here"),
            (
                r#"pointer = "/id"
separator = ":""#,
                true,
                "only goes with `join`",
            ),
            (
                r#"pointer = "/id"
join = ["/id"]"#,
                true,
                "exactly one of",
            ),
        ] {
            let err = locator(text, true, allow_join).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
