//! How a provider's raw body becomes the JSON value that schemas, event
//! locators and mappings read. JSON bodies are parsed as they are; a form
//! body (`application/x-www-form-urlencoded`: Twilio, Slack commands,
//! Braintree) becomes an object of its fields, and a `[body] field` names a
//! field that carries the real payload, JSON (Slack interactivity's
//! `payload`, GitHub's form deliveries) or base64 XML (Braintree's
//! `bt_payload`).
//!
//! Decoding happens after verification, on the stored bytes, in the ingest
//! path and again in the queue: the raw bytes stay the source of truth.

use serde::Deserialize;
use serde_json::{Map, Value};

pub const FORM: &str = "application/x-www-form-urlencoded";

/// Deepest XML nesting accepted (a payload is a few levels deep; this only
/// bounds hostile input).
const MAX_XML_DEPTH: usize = 64;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BodyFile {
    /// A form field that carries the payload; the whole form is the payload
    /// when absent (or when a form doesn't have it).
    field: Option<String>,
    #[serde(default)]
    field_encoding: FieldEncoding,
    #[serde(default)]
    field_format: FieldFormat,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FieldEncoding {
    #[default]
    None,
    Base64,
}

#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum FieldFormat {
    #[default]
    Json,
    Xml,
}

/// The compiled `[body]` table.
#[derive(Debug, Clone, Default)]
pub struct BodySpec {
    field: Option<(String, FieldEncoding, FieldFormat)>,
}

impl BodySpec {
    pub fn from_file(file: Option<BodyFile>) -> Result<BodySpec, String> {
        let Some(f) = file else {
            return Ok(BodySpec::default());
        };
        match f.field {
            Some(name) if name.is_empty() => Err("body.field: must not be empty".into()),
            Some(name) => Ok(BodySpec {
                field: Some((name, f.field_encoding, f.field_format)),
            }),
            None if f.field_encoding != FieldEncoding::None
                || f.field_format != FieldFormat::Json =>
            {
                Err("body.field_encoding / field_format need body.field".into())
            }
            None => Ok(BodySpec::default()),
        }
    }

    /// The payload of `raw`, sent with `content_type`.
    pub fn decode(&self, raw: &[u8], content_type: Option<&str>) -> Result<Value, String> {
        if !is_form(content_type) {
            return super::json::parse(raw).map_err(|e| format!("not JSON: {e}"));
        }
        let form = form_object(raw);
        let Some((name, encoding, format)) = &self.field else {
            return Ok(Value::Object(form));
        };
        let Some(field) = form.get(name) else {
            return Ok(Value::Object(form));
        };
        let Some(text) = field.as_str() else {
            return Err(format!("form field {name:?} is repeated"));
        };
        let bytes = match encoding {
            FieldEncoding::None => text.as_bytes().to_vec(),
            FieldEncoding::Base64 => {
                use base64::Engine as _;
                let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
                base64::engine::general_purpose::STANDARD
                    .decode(compact)
                    .map_err(|e| format!("form field {name:?} is not base64: {e}"))?
            }
        };
        match format {
            FieldFormat::Json => super::json::parse(&bytes)
                .map_err(|e| format!("form field {name:?} is not JSON: {e}")),
            FieldFormat::Xml => {
                xml_to_json(&bytes).map_err(|e| format!("form field {name:?} is not XML: {e}"))
            }
        }
    }
}

/// Whether `content_type`'s media type is a form.
pub fn is_form(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|c| c.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case(FORM))
}

/// Form fields as an object of strings; a repeated field becomes an array
/// of its values in order.
fn form_object(raw: &[u8]) -> Map<String, Value> {
    let mut map = Map::new();
    for (k, v) in form_urlencoded::parse(raw) {
        let v = Value::String(v.into_owned());
        match map.get_mut(k.as_ref()) {
            None => {
                map.insert(k.into_owned(), v);
            }
            Some(Value::Array(list)) => list.push(v),
            Some(existing) => {
                let first = existing.take();
                *existing = Value::Array(vec![first, v]);
            }
        }
    }
    map
}

struct Element {
    name: String,
    kind: Option<String>,
    nil: bool,
    children: Vec<(String, Value)>,
    text: String,
}

impl Element {
    fn new(e: &quick_xml::events::BytesStart<'_>) -> Result<Element, String> {
        let name = String::from_utf8_lossy(e.name().as_ref()).into_owned();
        let mut kind = None;
        let mut nil = false;
        for attr in e.attributes() {
            let attr = attr.map_err(|e| e.to_string())?;
            let value = attr.unescape_value().map_err(|e| e.to_string())?;
            match attr.key.as_ref() {
                b"type" => kind = Some(value.into_owned()),
                b"nil" => nil = value == "true",
                _ => {}
            }
        }
        Ok(Element {
            name,
            kind,
            nil,
            children: Vec::new(),
            text: String::new(),
        })
    }

    /// Braintree's XML conventions: `type="array"` lists its children,
    /// `integer` / `boolean` are typed, `nil="true"` is null; an element
    /// with children is an object (repeated names become arrays), else its
    /// text.
    fn into_value(self) -> Value {
        if self.nil {
            return Value::Null;
        }
        if self.kind.as_deref() == Some("array") {
            return Value::Array(self.children.into_iter().map(|(_, v)| v).collect());
        }
        if !self.children.is_empty() {
            let mut map = Map::new();
            for (name, value) in self.children {
                match map.get_mut(&name) {
                    None => {
                        map.insert(name, value);
                    }
                    Some(Value::Array(list)) => list.push(value),
                    Some(existing) => {
                        let first = existing.take();
                        *existing = Value::Array(vec![first, value]);
                    }
                }
            }
            return Value::Object(map);
        }
        let text = self.text.trim();
        match self.kind.as_deref() {
            Some("integer") => text
                .parse::<i64>()
                .map(Value::from)
                .unwrap_or_else(|_| Value::String(text.into())),
            Some("boolean") => match text {
                "true" => Value::Bool(true),
                "false" => Value::Bool(false),
                _ => Value::String(text.into()),
            },
            _ => Value::String(text.into()),
        }
    }
}

/// An XML document as `{root_name: value}`.
pub fn xml_to_json(bytes: &[u8]) -> Result<Value, String> {
    use quick_xml::events::Event;
    let mut reader = quick_xml::Reader::from_reader(bytes);
    let mut stack: Vec<Element> = Vec::new();
    let mut buf = Vec::new();
    loop {
        let event = reader
            .read_event_into(&mut buf)
            .map_err(|e| e.to_string())?;
        match event {
            Event::Start(e) => {
                if stack.len() == MAX_XML_DEPTH {
                    return Err(format!("nested deeper than {MAX_XML_DEPTH} levels"));
                }
                stack.push(Element::new(&e)?);
            }
            Event::Empty(e) => {
                let element = Element::new(&e)?;
                let name = element.name.clone();
                let value = element.into_value();
                match stack.last_mut() {
                    Some(parent) => parent.children.push((name, value)),
                    None => return Ok(single(name, value)),
                }
            }
            Event::Text(t) => {
                if let Some(top) = stack.last_mut() {
                    let text = t.decode().map_err(|e| e.to_string())?;
                    let text = quick_xml::escape::unescape(&text).map_err(|e| e.to_string())?;
                    top.text.push_str(&text);
                }
            }
            Event::CData(t) => {
                if let Some(top) = stack.last_mut() {
                    top.text.push_str(&String::from_utf8_lossy(&t));
                }
            }
            Event::GeneralRef(r) => {
                if let Some(top) = stack.last_mut() {
                    let name = String::from_utf8_lossy(&r).into_owned();
                    let reference = format!("&{name};");
                    let text =
                        quick_xml::escape::unescape(&reference).map_err(|e| e.to_string())?;
                    top.text.push_str(&text);
                }
            }
            Event::End(_) => {
                let element = stack.pop().ok_or("unbalanced end tag")?;
                let name = element.name.clone();
                let value = element.into_value();
                match stack.last_mut() {
                    Some(parent) => parent.children.push((name, value)),
                    None => return Ok(single(name, value)),
                }
            }
            Event::Eof => return Err("the document ends before its root element closes".into()),
            _ => {}
        }
        buf.clear();
    }
}

fn single(name: String, value: Value) -> Value {
    let mut map = Map::new();
    map.insert(name, value);
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(toml: &str) -> BodySpec {
        BodySpec::from_file(Some(toml::from_str(toml).unwrap())).unwrap()
    }

    #[test]
    fn json_is_parsed_and_forms_become_objects() {
        let s = BodySpec::default();
        assert_eq!(
            s.decode(br#"{"a":1}"#, Some("application/json")).unwrap(),
            json!({"a":1})
        );
        assert!(s.decode(b"a=1", Some("application/json")).is_err());
        assert_eq!(
            s.decode(
                b"a=1&b=x%2By&a=2&c=",
                Some("application/x-www-form-urlencoded; charset=utf-8")
            )
            .unwrap(),
            json!({"a": ["1", "2"], "b": "x+y", "c": ""})
        );
    }

    #[test]
    fn a_json_field_is_the_payload_when_present() {
        let s = spec(r#"field = "payload""#);
        assert_eq!(
            s.decode(
                b"payload=%7B%22type%22%3A%22block_actions%22%7D",
                Some(FORM)
            )
            .unwrap(),
            json!({"type": "block_actions"})
        );
        // A form without the field (a slash command) is the form itself.
        assert_eq!(
            s.decode(b"command=%2Fx", Some(FORM)).unwrap(),
            json!({"command": "/x"})
        );
        assert!(s.decode(b"payload=nope", Some(FORM)).is_err());
        assert!(s.decode(b"payload=1&payload=2", Some(FORM)).is_err());
    }

    #[test]
    fn base64_xml_follows_braintree_conventions() {
        let xml = r#"<notification><timestamp type="datetime">2026-12-03T19:45:53Z</timestamp>
            <kind>check</kind><count type="integer">3</count><ok type="boolean">true</ok>
            <gone nil="true"/><list type="array"><item><id>1</id></item><item><id>2</id></item></list>
            <note>a &amp; b</note></notification>"#;
        use base64::Engine as _;
        let mut encoded = base64::engine::general_purpose::STANDARD.encode(xml);
        encoded.insert(40, '\n');
        let body: String = form_urlencoded::Serializer::new(String::new())
            .append_pair("bt_signature", "x|y")
            .append_pair("bt_payload", &encoded)
            .finish();
        let s = spec("field = \"bt_payload\"\nfield_encoding = \"base64\"\nfield_format = \"xml\"");
        assert_eq!(
            s.decode(body.as_bytes(), Some(FORM)).unwrap(),
            json!({"notification": {
                "timestamp": "2026-12-03T19:45:53Z", "kind": "check", "count": 3, "ok": true,
                "gone": null, "list": [{"id": "1"}, {"id": "2"}], "note": "a & b"
            }})
        );
    }

    #[test]
    fn hostile_xml_is_an_error_not_a_panic() {
        let deep = "<a>".repeat(100) + &"</a>".repeat(100);
        assert!(xml_to_json(deep.as_bytes()).is_err());
        for bad in ["", "<a>", "<a></b>", "<a x='1></a>", "\u{0}"] {
            assert!(xml_to_json(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(
            BodySpec::from_file(Some(toml::from_str("field_format = \"xml\"").unwrap())).is_err()
        );
    }
}
