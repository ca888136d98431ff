//! Provider definitions are data: `providers/<name>/provider.toml` (scheme,
//! content types, where the event id / type / time live), `schemas/*.json`
//! and `mapping.toml`. This module loads and compiles them once at start
//! and names the file and field of anything broken; at request time it only
//! reads the compiled form. What data can't express is a `verify::SchemeConfig`
//! variant the data refers to.

pub mod body;
pub mod json;
pub mod mapping;
pub mod reply;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde::Deserialize;
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use crate::catalog::Catalog;
use crate::verify::{Headers, SchemeConfig};
use body::{BodyFile, BodySpec};
use mapping::Mapping;
use reply::{ProviderReply, ReplyFile, ReplySpec};

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
    body: Option<BodyFile>,
    reply: Option<ReplyFile>,
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
    /// Absent for a sender whose payload format is not documented: every
    /// delivery is stored without a type (and so without catalog events).
    #[serde(rename = "type")]
    event_type: Option<LocatorFile>,
    occurred_at: Option<LocatorFile>,
    items: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LocatorFile {
    pointer: Option<String>,
    /// The first of these pointers that finds a value (payloads of several
    /// shapes, e.g. Statuspage's incident and component updates).
    pointers: Option<Vec<String>>,
    header: Option<String>,
    headers: Option<Vec<String>>,
    derive: Option<String>,
    /// For the event id: `"sha256"` when the located id is absent (a
    /// handshake or a payload shape without one).
    fallback: Option<String>,
    /// With `derive = "sha256"`: hash these fields of the event (the batch
    /// item, or the whole payload) instead of the raw bytes.
    fields: Option<Vec<String>>,
    /// With `derive = "sha256"` in a batch: fields of the whole payload (the
    /// envelope around the items) that go into the hash too.
    payload_fields: Option<Vec<String>>,
    /// Pointers whose values are joined (`separator`, default ":").
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
    /// The first of these pointers that finds a non-null value.
    Pointers(Vec<String>),
    /// The first of these headers that is present.
    Headers(Vec<String>),
    /// SHA-256 of the raw body (or of the batch item), for senders that
    /// don't send an id.
    Sha256,
    /// SHA-256 of chosen fields, for senders that send no id but whose
    /// events are identified by a few fields (Alertmanager: the group key,
    /// the alert's fingerprint, status and start). Unlike [`Locator::Sha256`]
    /// it ignores fields that change on every resend (timestamps of the
    /// notification itself, an updated `endsAt`), so a resend dedupes.
    Fields {
        /// Pointers into the event (the batch item, or the whole payload).
        fields: Vec<String>,
        /// Pointers into the whole payload, for batches.
        payload_fields: Vec<String>,
    },
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
            f.pointers.is_some(),
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
                "{field}: give exactly one of `pointer`, `pointers`, `header`, `headers`{}{}",
                if allow_derive { ", `derive`" } else { "" },
                if allow_join { ", `join`" } else { "" }
            ));
        }
        if f.fallback.is_some() {
            return Err(format!("{field}.fallback: only event.id takes a fallback"));
        }
        if (f.fields.is_some() || f.payload_fields.is_some()) && f.derive.is_none() {
            return Err(format!(
                "{field}: `fields` and `payload_fields` go with `derive = \"sha256\"`"
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
        if let Some(ps) = f.pointers {
            if ps.is_empty() {
                return Err(format!("{field}.pointers: must not be empty"));
            }
            if let Some(p) = ps.iter().find(|p| !p.starts_with('/')) {
                return Err(format!("{field}.pointers: {p:?} must start with '/'"));
            }
            return Ok(Locator::Pointers(ps));
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
        let derive_fields = f.fields.is_some() || f.payload_fields.is_some();
        match f.derive.as_deref() {
            Some("sha256") if allow_derive && derive_fields => {
                let fields = f.fields.unwrap_or_default();
                let payload_fields = f.payload_fields.unwrap_or_default();
                if fields.is_empty() && payload_fields.is_empty() {
                    return Err(format!(
                        "{field}: `fields` / `payload_fields` must not both be empty"
                    ));
                }
                for p in fields.iter().chain(&payload_fields) {
                    if !p.starts_with('/') {
                        return Err(format!("{field}.fields: {p:?} must start with '/'"));
                    }
                }
                Ok(Locator::Fields {
                    fields,
                    payload_fields,
                })
            }
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
    /// Derive the id from the body's SHA-256 when `id` finds nothing.
    pub id_fallback_sha256: bool,
    /// `None`: the provider's payload format is not documented, so no type
    /// is read.
    pub event_type: Option<Locator>,
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
    pub body: BodySpec,
    pub reply: ReplySpec,
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

    /// The payload a raw body (sent with `content_type`) carries: what
    /// schemas, locators and mappings read. Without a content type (a stored
    /// body whose headers are not at hand) JSON is tried first, then a form
    /// if the provider accepts forms.
    pub fn decode(&self, raw: &[u8], content_type: Option<&str>) -> Result<Value, String> {
        match content_type {
            Some(_) => self.body.decode(raw, content_type),
            None => self
                .body
                .decode(raw, Some("application/json"))
                .or_else(|e| {
                    if self.content_types.iter().any(|c| c == body::FORM) {
                        self.body.decode(raw, Some(body::FORM))
                    } else {
                        Err(e)
                    }
                }),
        }
    }

    /// [`Provider::decode`] for a stored request: the content type comes
    /// from its stored headers (`{"name": ["value", ...]}`).
    pub fn decode_stored(&self, raw: &[u8], headers_json: &str) -> Result<Value, String> {
        let headers: BTreeMap<String, Vec<String>> =
            serde_json::from_str(headers_json).unwrap_or_default();
        let content_type = headers
            .get("content-type")
            .and_then(|v| v.first())
            .map(String::as_str);
        self.decode(raw, content_type)
    }

    /// The body the sender expects in its 200, when it expects one.
    pub fn reply_for(&self, payload: &Value) -> Option<ProviderReply> {
        self.reply.reply_for(payload)
    }

    /// The schema's violations (empty = valid), at most 20.
    pub fn schema_violations(&self, payload: &Value) -> Vec<Violation> {
        match &self.schema {
            // The common case first: `is_valid` stops at the first failure
            // and builds no error values, several times cheaper than
            // walking every error of a valid payload.
            Some(v) if v.is_valid(payload) => Vec::new(),
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
            return Ok(vec![self.extract_one(
                payload, payload, raw_body, headers, None, lenient,
            )?]);
        };
        match payload.pointer(items_ptr) {
            Some(Value::Array(items)) if !items.is_empty() => items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    let bytes = serde_json::to_vec(item).unwrap_or_default();
                    self.extract_one(payload, item, &bytes, headers, Some(i), lenient)
                })
                .collect(),
            _ if lenient => {
                Ok(vec![self.extract_one(
                    payload, payload, raw_body, headers, None, true,
                )?])
            }
            _ => Err(ExtractError(format!(
                "{items_ptr} must be a non-empty array of events"
            ))),
        }
    }

    fn extract_one(
        &self,
        payload: &Value,
        item: &Value,
        raw: &[u8],
        headers: &Headers,
        item_index: Option<usize>,
        lenient: bool,
    ) -> Result<ExtractedEvent, ExtractError> {
        let derived = || format!("sha256:{}", hex::encode(Sha256::digest(raw)));
        let id = match &self.event.id {
            Locator::Sha256 => Some(derived()),
            Locator::Fields {
                fields,
                payload_fields,
            } => derive_from_fields(payload, payload_fields, item, fields),
            other => locate_text(other, item, headers),
        };
        let provider_event_id = match id {
            Some(id) if !id.is_empty() && id.len() <= MAX_ID_LEN => id,
            Some(_) if !lenient => {
                return Err(ExtractError(format!(
                    "the event id must be 1 to {MAX_ID_LEN} bytes"
                )))
            }
            None if self.event.id_fallback_sha256 => derived(),
            None if !lenient => {
                return Err(ExtractError(format!(
                    "no event id at {}",
                    describe(&self.event.id)
                )))
            }
            _ => derived(),
        };
        let provider_event_type = self
            .event
            .event_type
            .as_ref()
            .and_then(|loc| locate_text(loc, item, headers))
            .map(|t| truncate(t, MAX_ID_LEN));
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
        Locator::Pointers(ps) => ps.join(" or "),
        Locator::Headers(h) => format!("header {}", h.join(" or ")),
        Locator::Sha256 => "sha256(body)".into(),
        Locator::Fields {
            fields,
            payload_fields,
        } => format!(
            "sha256 of {}",
            payload_fields
                .iter()
                .map(|p| format!("payload {p}"))
                .chain(fields.iter().cloned())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Locator::Join { pointers, .. } => pointers[0].clone(),
    }
}

/// `sha256:<hex>` of the JSON array of the fields' values (payload fields
/// first, each in its listed order); `None` when one of them is absent or
/// null, since a key missing a part could merge distinct events.
fn derive_from_fields(
    payload: &Value,
    payload_fields: &[String],
    item: &Value,
    fields: &[String],
) -> Option<String> {
    let values = payload_fields
        .iter()
        .map(|p| payload.pointer(p))
        .chain(fields.iter().map(|p| item.pointer(p)))
        .map(|v| v.filter(|v| !v.is_null()).cloned())
        .collect::<Option<Vec<Value>>>()?;
    let canonical = serde_json::to_vec(&values).ok()?;
    Some(format!("sha256:{}", hex::encode(Sha256::digest(canonical))))
}

fn locate<'a>(loc: &Locator, item: &'a Value, headers: &'a Headers) -> Option<LocatedValue<'a>> {
    match loc {
        Locator::Pointer(p) => item
            .pointer(p)
            .filter(|v| !v.is_null())
            .map(LocatedValue::Json),
        Locator::Pointers(ps) => ps
            .iter()
            .find_map(|p| item.pointer(p).filter(|v| !v.is_null()))
            .map(LocatedValue::Json),
        Locator::Headers(names) => names
            .iter()
            .find_map(|n| headers.get(n))
            .map(LocatedValue::Text),
        Locator::Sha256 | Locator::Fields { .. } | Locator::Join { .. } => None,
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
        // A sender's number may be beyond any date: no time, not an overflow.
        TimeFormat::UnixMs => OffsetDateTime::from_unix_timestamp_nanos(
            text.parse::<i128>().ok()?.checked_mul(1_000_000)?,
        )
        .ok(),
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

    /// Which provider events map to which catalog type, for the catalog's
    /// documentation (`catalog::docs`).
    pub fn catalog_sources(&self) -> crate::catalog::docs::Sources {
        let mut sources = crate::catalog::docs::Sources::default();
        for p in self.providers.values() {
            for route in p.mapping.routes() {
                match route.emit {
                    Some(ty) => sources.by_type.entry(ty).or_default().push(
                        crate::catalog::docs::MappedFrom {
                            provider: p.name.clone(),
                            provider_event_type: route.on,
                            conditional: route.conditional,
                        },
                    ),
                    None => {
                        if !sources.passthrough.contains(&p.name) {
                            sources.passthrough.push(p.name.clone());
                        }
                    }
                }
            }
        }
        for from in sources.by_type.values_mut() {
            from.sort();
            from.dedup();
        }
        sources
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
    let mut id_file = parsed.event.id;
    let id_fallback_sha256 = match id_file.fallback.take().as_deref() {
        None => false,
        Some("sha256") => true,
        Some(other) => {
            return Err(fail(
                &file,
                format!("field `event.id.fallback`: {other:?} is not supported (only \"sha256\")"),
            ))
        }
    };
    let event = EventSpec {
        id: Locator::from_file(id_file, "event.id", true, true).map_err(|m| fail(&file, m))?,
        id_fallback_sha256,
        event_type: parsed
            .event
            .event_type
            .map(|l| Locator::from_file(l, "event.type", false, true))
            .transpose()
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
    let body = BodySpec::from_file(parsed.body).map_err(|m| fail(&file, m))?;
    let reply = ReplySpec::from_file(parsed.reply).map_err(|m| fail(&file, m))?;
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
        body,
        reply,
        dir: dir.to_path_buf(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verify::NoneConfig;
    use serde_json::json;

    fn locator(toml_text: &str, allow_derive: bool) -> Result<Locator, String> {
        let f: LocatorFile = toml::from_str(toml_text).unwrap();
        Locator::from_file(f, "event.id", allow_derive, true)
    }

    fn join_locator(
        toml_text: &str,
        allow_derive: bool,
        allow_join: bool,
    ) -> Result<Locator, String> {
        let file: LocatorFile = toml::from_str(toml_text).unwrap();
        Locator::from_file(file, "event.id", allow_derive, allow_join)
    }

    fn provider(id: Locator, event_type: Option<Locator>, items: Option<&str>) -> Provider {
        Provider {
            name: "test".into(),
            category: Category::Monitoring,
            description: String::new(),
            docs: None,
            content_types: vec!["application/json".into()],
            scheme: SchemeConfig::None(NoneConfig {}),
            event: EventSpec {
                id,
                id_fallback_sha256: false,
                event_type,
                occurred_at: None,
                items: items.map(str::to_owned),
            },
            schema: None,
            mapping: Mapping::default(),
            body: BodySpec::default(),
            reply: ReplySpec::default(),
            dir: PathBuf::new(),
        }
    }

    fn batch() -> Value {
        json!({
            "groupKey": "{}:{alertname=\"Down\"}",
            "alerts": [
                {"status": "firing", "fingerprint": "aa", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:05:00Z"},
                {"status": "firing", "fingerprint": "bb", "startsAt": "2026-01-01T00:00:00Z", "endsAt": "2026-01-01T00:05:00Z"}
            ]
        })
    }

    fn am_provider() -> Provider {
        let id = locator(
            r#"derive = "sha256"
fields = ["/fingerprint", "/status", "/startsAt"]
payload_fields = ["/groupKey"]"#,
            true,
        )
        .unwrap();
        provider(
            id,
            Some(Locator::Pointer("/status".into())),
            Some("/alerts"),
        )
    }

    fn ids(p: &Provider, payload: &Value, lenient: bool) -> Result<Vec<String>, ExtractError> {
        let body = serde_json::to_vec(payload).unwrap();
        Ok(p.extract(payload, &body, &Headers::new(), lenient)?
            .into_iter()
            .map(|e| e.provider_event_id)
            .collect())
    }

    /// Found by `tests/fuzz` (a mutated Datadog body): a millisecond
    /// timestamp of 36 digits overflowed `i128` when scaled to nanoseconds.
    #[test]
    fn parse_time_milliseconds_beyond_any_date_are_no_time_not_a_panic() {
        let at = |v: Value| {
            parse_time(
                &Locator::Pointer("/t".into()),
                TimeFormat::UnixMs,
                &json!({ "t": v }),
                &Headers::new(),
            )
        };
        assert_eq!(at(json!("9".repeat(36))), None);
        assert_eq!(at(json!(format!("-{}", "9".repeat(36)))), None);
        assert_eq!(
            at(json!(1_765_000_000_123u64)).map(|t| t.unix_timestamp()),
            Some(1_765_000_000)
        );
    }

    #[test]
    fn derived_fields_id_is_stable_across_resends_and_distinct_per_alert() {
        let p = am_provider();
        let first = ids(&p, &batch(), false).unwrap();
        assert_eq!(first.len(), 2);
        assert_ne!(first[0], first[1]);
        assert!(first[0].starts_with("sha256:") && first[0].len() == 7 + 64);
        // A resend with a moved endsAt (Alertmanager extends it on every
        // repeat) is the same event.
        let mut resend = batch();
        resend["alerts"][0]["endsAt"] = json!("2026-01-01T00:09:00Z");
        assert_eq!(ids(&p, &resend, false).unwrap(), first);
        // Resolved, another group or another start: another event.
        for (ptr, v) in [
            ("/alerts/0/status", json!("resolved")),
            ("/groupKey", json!("{}:{alertname=\"Other\"}")),
            ("/alerts/0/startsAt", json!("2026-01-02T00:00:00Z")),
        ] {
            let mut changed = batch();
            *changed.pointer_mut(ptr).unwrap() = v;
            let got = ids(&p, &changed, false).unwrap();
            assert_ne!(got[0], first[0], "{ptr}");
            assert_eq!(got[1] == first[1], ptr != "/groupKey", "{ptr}");
        }
    }

    #[test]
    fn derived_fields_id_needs_every_field_unless_lenient() {
        let p = am_provider();
        let mut missing = batch();
        missing["alerts"][1]
            .as_object_mut()
            .unwrap()
            .remove("fingerprint");
        let err = ids(&p, &missing, false).unwrap_err();
        assert!(err.0.contains("/fingerprint"), "{}", err.0);
        // Lenient (quarantine) falls back to the item's bytes.
        let got = ids(&p, &missing, true).unwrap();
        assert!(got[1].starts_with("sha256:"));
        let mut null_key = batch();
        null_key["groupKey"] = Value::Null;
        assert!(ids(&p, &null_key, false).is_err());
    }

    #[test]
    fn derived_fields_on_a_single_event_payload() {
        let id = locator(
            "derive = \"sha256\"\nfields = [\"/monitor\", \"/state\"]",
            true,
        )
        .unwrap();
        let p = provider(id, None, None);
        let a = ids(&p, &json!({"monitor": 7, "state": "down", "at": 1}), false).unwrap();
        let b = ids(&p, &json!({"monitor": 7, "state": "down", "at": 2}), false).unwrap();
        let c = ids(&p, &json!({"monitor": 7, "state": "up", "at": 1}), false).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn locator_file_rejects_misused_derive_fields_and_pointers() {
        for (text, derive, what) in [
            (
                "pointer = \"/id\"\nfields = [\"/a\"]",
                true,
                "go with `derive",
            ),
            (
                "derive = \"sha256\"\nfields = []",
                true,
                "must not both be empty",
            ),
            (
                "derive = \"sha256\"\nfields = [\"a\"]",
                true,
                "must start with '/'",
            ),
            (
                "derive = \"sha256\"\nfields = [\"/a\"]",
                false,
                "not supported",
            ),
            ("pointers = []", false, "must not be empty"),
            ("pointers = [\"/a\", \"b\"]", false, "must start with '/'"),
            (
                "pointers = [\"/a\"]\npointer = \"/b\"",
                false,
                "exactly one",
            ),
        ] {
            let err = locator(text, derive).unwrap_err();
            assert!(err.contains(what), "{text}: {err}");
        }
    }

    #[test]
    fn pointers_locator_takes_the_first_value_found_and_type_may_be_absent() {
        let loc = locator(
            "pointers = [\"/incident/status\", \"/component_update/new_status\"]",
            false,
        )
        .unwrap();
        let p = provider(Locator::Sha256, Some(loc), None);
        let types = |v: Value| {
            let body = serde_json::to_vec(&v).unwrap();
            p.extract(&v, &body, &Headers::new(), false).unwrap()[0]
                .provider_event_type
                .clone()
        };
        assert_eq!(
            types(json!({"incident": {"status": "investigating"}})).as_deref(),
            Some("investigating")
        );
        assert_eq!(
            types(json!({"incident": null, "component_update": {"new_status": "major_outage"}}))
                .as_deref(),
            Some("major_outage")
        );
        assert_eq!(types(json!({"page": {}})), None);
        // No type locator at all: stored without a type.
        let untyped = provider(Locator::Sha256, None, None);
        let v = json!({"anything": 1});
        let got = untyped
            .extract(&v, &serde_json::to_vec(&v).unwrap(), &Headers::new(), false)
            .unwrap();
        assert_eq!(got[0].provider_event_type, None);
    }

    #[test]
    fn locator_join_renders_present_fields_and_blanks_absent_qualifiers() {
        let loc = join_locator(
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
        let dotted = join_locator(
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
            let err = join_locator(text, true, allow_join).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
    }
}
