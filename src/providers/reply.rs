//! What a provider needs to read in the 200 it gets, when our JSON answer
//! won't do: Adyen wants the body `[accepted]`, Slack's `url_verification`
//! wants its `challenge` echoed, Discord's PING wants `{"type":1}`. A
//! `[reply]` table gives the default body and `[[reply.when]]` rules, first
//! match wins, tested against the decoded payload. The ingest path sends it
//! only after the durable commit, like every 200.

use serde::Deserialize;
use serde_json::Value;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplyFile {
    /// A fixed text body (`text/plain`).
    text: Option<String>,
    /// The text at this pointer of the payload (`text/plain`).
    echo: Option<String>,
    /// A fixed JSON body.
    json: Option<Value>,
    #[serde(default)]
    when: Vec<RuleFile>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    pointer: String,
    equals: Value,
    text: Option<String>,
    echo: Option<String>,
    json: Option<Value>,
}

/// One body's three spellings, before checking that only one is given.
struct BodyFile {
    text: Option<String>,
    echo: Option<String>,
    json: Option<Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Body {
    Text(String),
    Echo(String),
    Json(Value),
}

impl Body {
    fn from_file(f: BodyFile, field: &str) -> Result<Option<Body>, String> {
        let set = [f.text.is_some(), f.echo.is_some(), f.json.is_some()]
            .iter()
            .filter(|x| **x)
            .count();
        if set > 1 {
            return Err(format!("{field}: give one of `text`, `echo`, `json`"));
        }
        if let Some(p) = &f.echo {
            if !p.starts_with('/') {
                return Err(format!("{field}.echo: {p:?} must start with '/'"));
            }
        }
        Ok(f.text
            .map(Body::Text)
            .or(f.echo.map(Body::Echo))
            .or(f.json.map(Body::Json)))
    }
}

/// A reply body and its content type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderReply {
    pub content_type: &'static str,
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, Default)]
pub struct ReplySpec {
    default: Option<Body>,
    rules: Vec<(String, Value, Body)>,
}

impl ReplySpec {
    pub fn from_file(file: Option<ReplyFile>) -> Result<ReplySpec, String> {
        let Some(f) = file else {
            return Ok(ReplySpec::default());
        };
        let default = Body::from_file(
            BodyFile {
                text: f.text,
                echo: f.echo,
                json: f.json,
            },
            "reply",
        )?;
        let mut rules = Vec::new();
        for (i, r) in f.when.into_iter().enumerate() {
            let field = format!("reply.when[{i}]");
            if !r.pointer.starts_with('/') {
                return Err(format!(
                    "{field}.pointer: {:?} must start with '/'",
                    r.pointer
                ));
            }
            let body = Body::from_file(
                BodyFile {
                    text: r.text,
                    echo: r.echo,
                    json: r.json,
                },
                &field,
            )?
            .ok_or_else(|| format!("{field}: give one of `text`, `echo`, `json`"))?;
            rules.push((r.pointer, r.equals, body));
        }
        Ok(ReplySpec { default, rules })
    }

    /// The reply for `payload`; `None` = our own JSON answer.
    pub fn reply_for(&self, payload: &Value) -> Option<ProviderReply> {
        let body = self
            .rules
            .iter()
            .find(|(pointer, equals, _)| payload.pointer(pointer) == Some(equals))
            .map(|(_, _, body)| body)
            .or(self.default.as_ref())?;
        Some(match body {
            Body::Text(t) => ProviderReply {
                content_type: "text/plain; charset=utf-8",
                body: t.clone().into_bytes(),
            },
            Body::Echo(pointer) => ProviderReply {
                content_type: "text/plain; charset=utf-8",
                body: match payload.pointer(pointer) {
                    Some(Value::String(s)) => s.clone().into_bytes(),
                    Some(Value::Number(n)) => n.to_string().into_bytes(),
                    _ => Vec::new(),
                },
            },
            Body::Json(v) => ProviderReply {
                content_type: "application/json",
                body: serde_json::to_vec(v).unwrap_or_default(),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn spec(toml: &str) -> ReplySpec {
        ReplySpec::from_file(Some(toml::from_str(toml).unwrap())).unwrap()
    }

    #[test]
    fn rules_match_first_then_the_default() {
        let s = spec(
            r#"
            text = "[accepted]"
            [[when]]
            pointer = "/type"
            equals = "url_verification"
            echo = "/challenge"
            [[when]]
            pointer = "/type"
            equals = 1
            json = { type = 1 }
            "#,
        );
        let r = s
            .reply_for(&json!({"type": "url_verification", "challenge": "3eZbrw1a"}))
            .unwrap();
        assert_eq!(r.body, b"3eZbrw1a");
        assert_eq!(
            s.reply_for(&json!({"type": 1})).unwrap().body,
            br#"{"type":1}"#
        );
        assert_eq!(
            s.reply_for(&json!({"type": 2})).unwrap().body,
            b"[accepted]"
        );
        // "1" is not 1.
        assert_eq!(
            s.reply_for(&json!({"type": "1"})).unwrap().body,
            b"[accepted]"
        );
        assert!(spec("").reply_for(&json!({})).is_none());
    }

    #[test]
    fn bad_tables_name_their_field() {
        for (bad, field) in [
            ("text = \"a\"\njson = 1", "reply"),
            (
                "[[when]]\npointer = \"type\"\nequals = 1\ntext = \"x\"",
                "reply.when[0].pointer",
            ),
            ("[[when]]\npointer = \"/t\"\nequals = 1", "reply.when[0]"),
            ("echo = \"x\"", "reply.echo"),
        ] {
            let err = ReplySpec::from_file(Some(toml::from_str(bad).unwrap())).unwrap_err();
            assert!(err.starts_with(field), "{bad}: {err}");
        }
    }
}
