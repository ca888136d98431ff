//! The generic, configurable HMAC scheme: one header carrying one or more
//! hex or base64 MACs, optionally prefixed (`sha256=`, `v1=`, `v0=`), over a
//! signed content built from a template of the body and an optional
//! timestamp header.
//!
//! It covers every sender whose signature is "HMAC of some concatenation of
//! the timestamp and the body": GitHub, PagerDuty v3, Slack, Shopify, Grafana
//! and many payment processors. Senders whose signed content involves the URL,
//! re-serialized JSON or other fields need a scheme of their own. The template
//! is parsed once, when the verifier is built, and every combination that
//! would make a timestamp meaningless (a timestamp header that is not signed,
//! or a signed timestamp with no header to read it from) is a configuration
//! error.

use serde::Deserialize;

use super::mac::{matches_any, MacKey};
use super::wire::{self, MAX_HEADER_LEN, MAX_SIGNATURES};
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "hmac"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HmacConfig {
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    /// Header carrying the signature(s); may also be repeated.
    pub header: String,
    /// Only entries starting with this (compared case-insensitively) are
    /// signatures; the rest of the entry is the encoded MAC.
    pub prefix: Option<String>,
    #[serde(default)]
    pub encoding: SignatureEncoding,
    /// Splits one header value into several entries (rotation); whitespace
    /// around entries is ignored.
    pub separator: Option<String>,
    /// What is signed: `{body}`, `{timestamp}` and `{url}` placeholders
    /// around literal text, e.g. `"v0:{timestamp}:{body}"`, or Square's
    /// `"{url}{body}"`.
    #[serde(default = "default_content")]
    pub content: String,
    pub timestamp_header: Option<String>,
    /// Defaults to 300 when `timestamp_header` is set.
    pub tolerance_secs: Option<u64>,
    #[serde(default)]
    pub key_encoding: KeyEncoding,
    /// For senders where signing the timestamp is an option of the sender's
    /// configuration (Grafana signs `{timestamp}:{body}` only when a
    /// timestamp header is configured, else `{body}`): what is signed when
    /// the request carries no `timestamp_header`. Must contain `{body}` and
    /// not `{timestamp}`. A request that does carry the header is always
    /// checked against `content` and the tolerance.
    pub content_without_timestamp: Option<String>,
}

fn default_content() -> String {
    "{body}".to_owned()
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HmacAlgorithm {
    Sha1,
    #[default]
    Sha256,
    Sha512,
}

/// How the MAC is written in the header. Hex is accepted in either case;
/// the two hex spellings differ only in what `sign` writes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SignatureEncoding {
    #[default]
    Hex,
    /// Hex written in upper case, as Authorize.Net sends it.
    #[serde(rename = "hex-upper")]
    HexUpper,
    Base64,
}

impl SignatureEncoding {
    /// Decodes a signature as received; shared with the timestamped scheme.
    pub(super) fn decode(self, encoded: &str) -> Option<Vec<u8>> {
        match self {
            SignatureEncoding::Hex | SignatureEncoding::HexUpper => hex::decode(encoded).ok(),
            SignatureEncoding::Base64 => wire::decode_base64(encoded),
        }
    }

    /// Encodes a MAC the way the sender writes it.
    pub(super) fn encode(self, tag: &[u8]) -> String {
        match self {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::HexUpper => hex::encode_upper(tag),
            SignatureEncoding::Base64 => wire::encode_base64(tag),
        }
    }
}

/// How the configured secret string becomes the HMAC key.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KeyEncoding {
    /// The secret's UTF-8 bytes, as GitHub, Slack and PagerDuty use it.
    #[default]
    Utf8,
    Hex,
    Base64,
}

const DEFAULT_TOLERANCE_SECS: u64 = 300;

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Part {
    Literal(String),
    Body,
    Timestamp,
    /// The URL the sender called ([`RequestView::url`]).
    Url,
    /// `{header:name}`: a request header's value ("" when absent).
    Header(String),
    /// `{query:name}` (`{query:name|lower}` lower-cases it): a query
    /// parameter of the URL the sender called, percent-decoded ("" when
    /// absent).
    Query {
        name: String,
        lower: bool,
    },
    /// `{sorted_json}`: the JSON body re-encoded compactly with the keys of
    /// every object sorted (Name.com signs that instead of the raw bytes).
    SortedJson,
}

/// The parsed `content` template; shared with the timestamped scheme.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Template {
    parts: Vec<Part>,
}

/// What a template's request-dependent placeholders stand for: the URL and,
/// in template order, the values of its `{header:…}` / `{query:…}` parts.
pub(super) struct Fill<'a> {
    url: &'a str,
    params: Vec<String>,
}

impl Template {
    pub(super) fn parse(content: &str) -> Result<Template, KeyError> {
        let mut parts = Vec::new();
        let mut rest = content;
        while !rest.is_empty() {
            let literal_end = rest.find(['{', '}']).unwrap_or(rest.len());
            if literal_end > 0 {
                parts.push(Part::Literal(rest[..literal_end].to_owned()));
            }
            rest = &rest[literal_end..];
            if rest.starts_with('}') {
                return Err(KeyError::Config(format!(
                    "unmatched '}}' in content template {content:?}"
                )));
            }
            let Some(after_brace) = rest.strip_prefix('{') else {
                break;
            };
            let Some(close) = after_brace.find('}') else {
                return Err(KeyError::Config(format!(
                    "unclosed '{{' in content template {content:?}"
                )));
            };
            let inner = &after_brace[..close];
            let unknown = || {
                KeyError::Config(format!(
                    "unknown placeholder {{{inner}}} in content template {content:?}; \
                     the placeholders are {{body}}, {{timestamp}}, {{url}}, \
                     {{sorted_json}}, {{header:<name>}} and {{query:<name>}} \
                     (or {{query:<name>|lower}})"
                ))
            };
            parts.push(match inner {
                "body" => Part::Body,
                "timestamp" => Part::Timestamp,
                "url" => Part::Url,
                "sorted_json" => Part::SortedJson,
                other => match other.split_once(':') {
                    Some(("header", name)) if !name.trim().is_empty() => {
                        Part::Header(name.trim().to_ascii_lowercase())
                    }
                    Some(("query", spec)) => {
                        let (name, lower) = match spec.strip_suffix("|lower") {
                            Some(name) => (name, true),
                            None => (spec, false),
                        };
                        if name.is_empty() || name.contains('|') {
                            return Err(unknown());
                        }
                        Part::Query {
                            name: name.to_owned(),
                            lower,
                        }
                    }
                    _ => return Err(unknown()),
                },
            });
            rest = &after_brace[close + 1..];
        }
        Ok(Template { parts })
    }

    pub(super) fn has(&self, part: &Part) -> bool {
        self.parts.contains(part)
    }

    /// Whether the body is signed, as raw bytes or as sorted JSON.
    pub(super) fn signs_body(&self) -> bool {
        self.has(&Part::Body) || self.has(&Part::SortedJson)
    }

    fn needs_url(&self) -> bool {
        self.parts
            .iter()
            .any(|p| matches!(p, Part::Url | Part::Query { .. }))
    }

    /// The signed content as slices to feed to the MAC in order.
    pub(super) fn pieces<'a>(
        &'a self,
        body: &'a [u8],
        timestamp: &'a str,
        fill: &'a Fill<'a>,
    ) -> Vec<&'a [u8]> {
        let mut params = fill.params.iter();
        self.parts
            .iter()
            .map(|p| match p {
                Part::Literal(s) => s.as_bytes(),
                Part::Body => body,
                Part::Timestamp => timestamp.as_bytes(),
                Part::Url => fill.url.as_bytes(),
                Part::Header(_) | Part::Query { .. } | Part::SortedJson => {
                    params.next().map_or(&b""[..], |v| v.as_bytes())
                }
            })
            .collect()
    }

    /// The placeholders' values for a received request. A template that
    /// signs the URL (or reads its query) can't verify a request whose URL
    /// the gateway doesn't know.
    pub(super) fn fill<'a>(&self, req: &RequestView<'a>) -> Result<Fill<'a>, VerifyError> {
        let url = match (self.needs_url(), req.url) {
            (false, _) => "",
            (true, Some(url)) => url,
            (true, None) => return Err(VerifyError::InvalidSignature),
        };
        let mut params = Vec::new();
        for part in &self.parts {
            match part {
                Part::Header(name) => params.push(req.headers.get(name).unwrap_or("").to_owned()),
                Part::Query { name, lower } => params.push(query_param(url, name, *lower)),
                Part::SortedJson => {
                    params.push(sorted_json(req.body).ok_or(VerifyError::InvalidSignature)?)
                }
                _ => {}
            }
        }
        Ok(Fill { url, params })
    }

    /// The placeholders' values when signing as the sender: `url` is the
    /// URL called (with its query), a `{header:…}` part carries `id` and
    /// is returned as a header to send.
    pub(super) fn sign_fill<'a>(
        &self,
        url: Option<&'a str>,
        id: &str,
        body: &[u8],
    ) -> Result<(Fill<'a>, Vec<(String, String)>), KeyError> {
        let url = match (self.needs_url(), url) {
            (false, _) => "",
            (true, Some(url)) => url,
            (true, None) => {
                return Err(KeyError::CannotSign(
                    "this scheme signs the URL the sender calls: give the URL",
                ))
            }
        };
        let mut headers = Vec::new();
        let mut params = Vec::new();
        for part in &self.parts {
            match part {
                Part::Header(name) => {
                    headers.push((name.clone(), id.to_owned()));
                    params.push(id.to_owned());
                }
                Part::Query { name, lower } => params.push(query_param(url, name, *lower)),
                Part::SortedJson => params.push(sorted_json(body).ok_or(KeyError::CannotSign(
                    "this scheme signs the body as JSON: the body must be JSON",
                ))?),
                _ => {}
            }
        }
        Ok((Fill { url, params }, headers))
    }
}

/// `body` as compact JSON with every object's keys sorted (by their UTF-8
/// bytes, which is code point order), strings unescaped where JSON allows
/// (`/` and non-ASCII as is): what Name.com's documented signer produces.
/// `None` when the body is not JSON.
fn sorted_json(body: &[u8]) -> Option<String> {
    fn sort(value: serde_json::Value) -> serde_json::Value {
        match value {
            serde_json::Value::Object(map) => {
                let mut entries: Vec<_> = map.into_iter().collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sort(v))).collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    let value: serde_json::Value = serde_json::from_slice(body).ok()?;
    serde_json::to_string(&sort(value)).ok()
}

/// The first value of query parameter `name` in `url`, decoded.
fn query_param(url: &str, name: &str, lower: bool) -> String {
    let query = url.split_once('?').map_or("", |(_, q)| q);
    let query = query.split('#').next().unwrap_or_default();
    let value = form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    if lower {
        value.to_lowercase()
    } else {
        value
    }
}

/// An [`HmacConfig`] checked for consistency, shared by verify and sign.
#[derive(Debug, Clone)]
struct Compiled {
    algorithm: HmacAlgorithm,
    header: String,
    prefix: Option<String>,
    encoding: SignatureEncoding,
    separator: Option<String>,
    template: Template,
    /// The timestamp header and its tolerance, when a timestamp is signed.
    timestamp: Option<(String, u64)>,
    /// What is signed when the (optional) timestamp header is absent.
    without_timestamp: Option<Template>,
    key_encoding: KeyEncoding,
}

impl Compiled {
    fn new(c: &HmacConfig) -> Result<Compiled, KeyError> {
        let config = |msg: &str| Err(KeyError::Config(msg.to_owned()));
        if c.header.trim().is_empty() {
            return config("hmac: header must not be empty");
        }
        if c.prefix.as_deref() == Some("") {
            return config("hmac: prefix must not be empty; leave it out instead");
        }
        if c.separator.as_deref() == Some("") {
            return config("hmac: separator must not be empty; leave it out instead");
        }
        let template = Template::parse(&c.content)?;
        if !template.signs_body() {
            return config(
                "hmac: content must contain {body} (or {sorted_json}), or the body is not signed",
            );
        }
        let signs_timestamp = template.has(&Part::Timestamp);
        let timestamp = match (&c.timestamp_header, signs_timestamp) {
            (Some(h), true) if !h.trim().is_empty() => Some((
                h.clone(),
                c.tolerance_secs.unwrap_or(DEFAULT_TOLERANCE_SECS),
            )),
            (Some(_), true) => return config("hmac: timestamp_header must not be empty"),
            // An unsigned timestamp can be changed by anyone, so checking it
            // would give a false sense of replay protection.
            (Some(_), false) => {
                return config(
                    "hmac: timestamp_header is set but content does not sign {timestamp}",
                )
            }
            (None, true) => {
                return config("hmac: content signs {timestamp} but no timestamp_header is set")
            }
            (None, false) => {
                if c.tolerance_secs.is_some() {
                    return config("hmac: tolerance_secs needs timestamp_header");
                }
                None
            }
        };
        let without_timestamp = match (&c.content_without_timestamp, &timestamp) {
            (None, _) => None,
            (Some(_), None) => {
                return config("hmac: content_without_timestamp needs timestamp_header")
            }
            (Some(content), Some(_)) => {
                let t = Template::parse(content)?;
                if !t.signs_body() {
                    return config("hmac: content_without_timestamp must contain {body}");
                }
                if t.has(&Part::Timestamp) {
                    return config("hmac: content_without_timestamp must not contain {timestamp}");
                }
                Some(t)
            }
        };
        Ok(Compiled {
            algorithm: c.algorithm,
            header: c.header.clone(),
            prefix: c.prefix.clone(),
            encoding: c.encoding,
            separator: c.separator.clone(),
            template,
            timestamp,
            without_timestamp,
            key_encoding: c.key_encoding,
        })
    }

    fn key(&self, index: usize, secret: &str) -> Result<MacKey, KeyError> {
        mac_key(self.algorithm, self.key_encoding, index, secret)
    }

    /// The candidate MACs in the signature header(s), at most
    /// [`MAX_SIGNATURES`]. Entries without the prefix or that do not decode
    /// are skipped: they cannot be our signature.
    fn candidates(&self, values: &[&str]) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for value in values {
            let entries: Box<dyn Iterator<Item = &str>> = match &self.separator {
                Some(sep) => Box::new(value.split(sep.as_str())),
                None => Box::new(std::iter::once(*value)),
            };
            for entry in entries.map(str::trim) {
                let encoded = match &self.prefix {
                    Some(prefix) => match strip_prefix_ignore_case(entry, prefix) {
                        Some(rest) => rest,
                        None => continue,
                    },
                    None => entry,
                };
                if out.len() == MAX_SIGNATURES {
                    return out;
                }
                if let Some(bytes) = self.encoding.decode(encoded) {
                    out.push(bytes);
                }
            }
        }
        out
    }
}

/// The HMAC key a configured secret stands for; errors name the secret by
/// its 1-based `index` only. Shared with the timestamped scheme.
pub(super) fn mac_key(
    algorithm: HmacAlgorithm,
    key_encoding: KeyEncoding,
    index: usize,
    secret: &str,
) -> Result<MacKey, KeyError> {
    let (expected, bytes) = match key_encoding {
        KeyEncoding::Utf8 => ("HMAC secret", Some(secret.as_bytes().to_vec())),
        KeyEncoding::Hex => ("hex HMAC key", hex::decode(secret).ok()),
        KeyEncoding::Base64 => ("base64 HMAC key", wire::decode_base64(secret)),
    };
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected,
        reason,
    };
    let bytes = bytes.ok_or_else(|| invalid("it does not decode"))?;
    if bytes.is_empty() {
        return Err(invalid("it is empty"));
    }
    MacKey::new(algorithm, &bytes).map_err(|_| invalid("it cannot be used as an HMAC key"))
}

fn strip_prefix_ignore_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    // `get` returns None rather than panicking when `prefix.len()` falls
    // inside a multi-byte character.
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

pub(super) struct HmacVerifier {
    compiled: Compiled,
    keys: Vec<MacKey>,
}

impl HmacVerifier {
    pub(super) fn new(config: &HmacConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let compiled = Compiled::new(config)?;
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| compiled.key(i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(HmacVerifier { compiled, keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        let c = &self.compiled;
        // Some senders repeat the header instead of using a separator, so
        // every occurrence counts, within one overall size budget.
        let values: Vec<&str> = req
            .headers
            .get_all(&c.header)
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .collect();
        if values.is_empty() {
            return Err(VerifyError::MissingSignature);
        }
        if values.iter().map(|v| v.len()).sum::<usize>() > MAX_HEADER_LEN {
            return Err(VerifyError::InvalidSignature);
        }
        // An optional timestamp that is absent: the sender signs the
        // alternative content, which has no timestamp to check.
        let timestamp_absent = |header: &str| !matches!(req.headers.get(header).map(str::trim), Some(v) if !v.is_empty());
        let (template, timestamp) = match (&c.timestamp, &c.without_timestamp) {
            (Some((header, _)), Some(without)) if timestamp_absent(header) => (without, None),
            (Some((header, tolerance)), _) => {
                let raw = wire::required_header(req.headers, header)?;
                let parsed = wire::parse_timestamp(raw).ok_or(VerifyError::InvalidSignature)?;
                (&c.template, Some((raw, parsed, *tolerance)))
            }
            (None, _) => (&c.template, None),
        };
        let candidates = c.candidates(&values);
        if candidates.is_empty() {
            return Err(VerifyError::InvalidSignature);
        }
        let raw_ts = timestamp.map_or("", |(raw, _, _)| raw);
        let fill = template.fill(req)?;
        let pieces = template.pieces(req.body, raw_ts, &fill);
        let mut ok = false;
        for key in &self.keys {
            ok |= matches_any(&key.tag(&pieces), &candidates);
        }
        if !ok {
            return Err(VerifyError::InvalidSignature);
        }
        match timestamp {
            Some((_, ts, tolerance)) => {
                wire::check_tolerance(ts, now, tolerance)?;
                Ok(Verified::new(Some(ts)))
            }
            None => Ok(Verified::new(None)),
        }
    }
}

pub(super) fn sign(
    config: &HmacConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
    url: Option<&str>,
) -> Result<SignedRequest, KeyError> {
    let c = Compiled::new(config)?;
    let key = c.key(1, secret)?;
    if c.timestamp.is_some() && timestamp < 0 {
        return Err(KeyError::CannotSign("the timestamp must not be negative"));
    }
    let ts = timestamp.to_string();
    let (fill, extra_headers) = c.template.sign_fill(url, id, body)?;
    let tag = key.tag(&c.template.pieces(body, &ts, &fill));
    let value = format!(
        "{}{}",
        c.prefix.as_deref().unwrap_or(""),
        c.encoding.encode(&tag)
    );
    let mut headers = vec![(c.header.clone(), value)];
    headers.extend(extra_headers);
    if let Some((header, _)) = &c.timestamp {
        headers.push((header.clone(), ts));
    }
    Ok(SignedRequest {
        headers,
        path_token: None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    pub(in super::super) const PD_SECRET: &str =
        "lDQHScfUeXUKaQRNF+8XIiDKZ7XX3itBAYzwU0TARw8lJqRnkKl2iB1anSb0Z+IK";
    /// Byte-exact copy of `defaultBody` in PagerDuty/go-pagerduty
    /// webhookv3/webhookv3_test.go.
    pub(in super::super) const PD_BODY: &[u8] =
        include_bytes!("../../tests/vectors/pagerduty_v3_body.json");
    pub(in super::super) const PD_VALID: &str =
        "v1=0c0b9495b893a39e70d1fea2fe11fbe0a825f88b9f67846f6cc07dd2bc5476cd";
    const PD_MISMATCH: &str = "v1=7020c8a7ec668a9b7012bc3dd82e483394b038f4230acc6785efbf2a7d8bcaf5";

    const SLACK_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
    const SLACK_TS: i64 = 1531420618;
    const SLACK_BODY: &str = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
    const SLACK_SIG: &str = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503";

    pub(in super::super) fn config(header: &str) -> HmacConfig {
        HmacConfig {
            algorithm: HmacAlgorithm::Sha256,
            header: header.to_owned(),
            prefix: None,
            encoding: SignatureEncoding::Hex,
            separator: None,
            content: default_content(),
            timestamp_header: None,
            tolerance_secs: None,
            key_encoding: KeyEncoding::Utf8,
            content_without_timestamp: None,
        }
    }

    pub(in super::super) fn pagerduty() -> HmacConfig {
        HmacConfig {
            prefix: Some("v1=".to_owned()),
            separator: Some(",".to_owned()),
            ..config("X-PagerDuty-Signature")
        }
    }

    pub(in super::super) fn slack() -> HmacConfig {
        HmacConfig {
            prefix: Some("v0=".to_owned()),
            content: "v0:{timestamp}:{body}".to_owned(),
            timestamp_header: Some("X-Slack-Request-Timestamp".to_owned()),
            ..config("X-Slack-Signature")
        }
    }

    fn github() -> HmacConfig {
        HmacConfig {
            prefix: Some("sha256=".to_owned()),
            ..config("X-Hub-Signature-256")
        }
    }

    fn verifier(config: HmacConfig, secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::Hmac(config), &secrets).unwrap()
    }

    fn check(
        v: &Verifier,
        headers: &[(&str, &str)],
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut h = Headers::new();
        for (n, val) in headers {
            h.push(n, val);
        }
        v.verify(
            &RequestView {
                headers: &h,
                body,
                path_token: None,
                url: None,
            },
            now,
        )
    }

    #[test]
    fn hmac_hex_upper_signs_in_upper_case_and_verifies_either_case() {
        let config = HmacConfig {
            algorithm: HmacAlgorithm::Sha512,
            header: "X-ANET-Signature".to_owned(),
            prefix: Some("sha512=".to_owned()),
            encoding: SignatureEncoding::HexUpper,
            separator: None,
            content: "{body}".to_owned(),
            content_without_timestamp: None,
            timestamp_header: None,
            tolerance_secs: None,
            key_encoding: KeyEncoding::Utf8,
        };
        // RFC 4231 test case 2.
        let expected = "164B7A7BFCF819E2E395FBE73B56E0A387BD64222E831FD610270CD7EA2505549758BF75C05A994A6D034F65F8F0E6FDCAEAB1A34D4A6B4B636E070A38BCE737";
        let signed = sign(
            &config,
            "Jefe",
            b"what do ya want for nothing?",
            0,
            "",
            None,
        )
        .unwrap();
        assert_eq!(
            signed.headers,
            vec![("X-ANET-Signature".to_owned(), format!("sha512={expected}"))]
        );
        let secrets: Vec<SecretString> = vec!["Jefe".into()];
        let v = Verifier::new(&SchemeConfig::Hmac(config), &secrets).unwrap();
        for value in [
            format!("sha512={expected}"),
            format!("SHA512={}", expected.to_ascii_lowercase()),
        ] {
            let mut headers = Headers::new();
            headers.push("x-anet-signature", &value);
            let req = RequestView {
                headers: &headers,
                body: b"what do ya want for nothing?",
                path_token: None,
                url: None,
            };
            assert!(v.verify(&req, 0).is_ok(), "{value}");
        }
    }

    #[test]
    fn hmac_pagerduty_vector_body_is_byte_exact() {
        assert_eq!(PD_BODY.len(), 1655);
        assert!(PD_BODY.starts_with(br#"{"event":{"id":"01BWDWL3NYY7LUFPZCC28QUCMK""#));
        assert!(PD_BODY.ends_with(b"}}}"));
    }

    #[test]
    fn hmac_pagerduty_official_signature_verifies() {
        let v = verifier(pagerduty(), &[PD_SECRET]);
        let ok = check(&v, &[("X-PagerDuty-Signature", PD_VALID)], PD_BODY, 0).unwrap();
        assert_eq!(ok.timestamp, None);
    }

    #[test]
    fn hmac_pagerduty_official_mismatch_fails() {
        let v = verifier(pagerduty(), &[PD_SECRET]);
        assert_eq!(
            check(&v, &[("X-PagerDuty-Signature", PD_MISMATCH)], PD_BODY, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn hmac_pagerduty_rotation_header_verifies() {
        let v = verifier(pagerduty(), &[PD_SECRET]);
        for header in [
            format!("{PD_MISMATCH},{PD_VALID}"),
            format!("{PD_VALID},{PD_MISMATCH}"),
            format!("{PD_MISMATCH}, {PD_VALID}"),
        ] {
            assert!(check(&v, &[("x-pagerduty-signature", &header)], PD_BODY, 0).is_ok());
        }
        // The header repeated instead of comma-joined also works.
        let repeated = [
            ("X-PagerDuty-Signature", PD_MISMATCH),
            ("X-PagerDuty-Signature", PD_VALID),
        ];
        assert!(check(&v, &repeated, PD_BODY, 0).is_ok());
    }

    #[test]
    fn hmac_pagerduty_malformed_header_is_invalid_and_absent_is_missing() {
        let v = verifier(pagerduty(), &[PD_SECRET]);
        assert_eq!(
            check(&v, &[], PD_BODY, 0).unwrap_err(),
            VerifyError::MissingSignature
        );
        let bare = PD_VALID.trim_start_matches("v1=");
        for bad in ["v2=00", bare, "v1=zz", "v1=", ",,,"] {
            assert_eq!(
                check(&v, &[("X-PagerDuty-Signature", bad)], PD_BODY, 0).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        let mut tampered = PD_BODY.to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            check(&v, &[("X-PagerDuty-Signature", PD_VALID)], &tampered, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn hmac_github_documented_vector_verifies() {
        // docs.github.com "Validating webhook deliveries".
        let v = verifier(github(), &["It's a Secret to Everybody"]);
        let sig = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(check(&v, &[("X-Hub-Signature-256", sig)], b"Hello, World!", 0).is_ok());
        // Upper-case hex and prefix are accepted too.
        let upper = sig.to_ascii_uppercase();
        assert!(check(&v, &[("X-Hub-Signature-256", &upper)], b"Hello, World!", 0).is_ok());
        assert_eq!(
            check(&v, &[("X-Hub-Signature-256", sig)], b"Hello, World?", 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let signed = sign(
            &github(),
            "It's a Secret to Everybody",
            b"Hello, World!",
            0,
            "",
            None,
        )
        .unwrap();
        assert_eq!(
            signed.headers,
            vec![("X-Hub-Signature-256".to_owned(), sig.to_owned())]
        );
    }

    #[test]
    fn hmac_slack_sdk_vector_verifies_within_tolerance() {
        let v = verifier(slack(), &[SLACK_SECRET]);
        let ts = SLACK_TS.to_string();
        let headers = [
            ("X-Slack-Signature", SLACK_SIG),
            ("X-Slack-Request-Timestamp", ts.as_str()),
        ];
        let ok = check(&v, &headers, SLACK_BODY.as_bytes(), SLACK_TS).unwrap();
        assert_eq!(ok.timestamp, Some(SLACK_TS));
        assert!(check(&v, &headers, SLACK_BODY.as_bytes(), SLACK_TS + 300).is_ok());
        for now in [SLACK_TS + 301, SLACK_TS - 301] {
            assert_eq!(
                check(&v, &headers, SLACK_BODY.as_bytes(), now).unwrap_err(),
                VerifyError::TimestampOutOfTolerance
            );
        }
        let signed = sign(
            &slack(),
            SLACK_SECRET,
            SLACK_BODY.as_bytes(),
            SLACK_TS,
            "",
            None,
        )
        .unwrap();
        assert_eq!(
            signed.headers[0],
            ("X-Slack-Signature".to_owned(), SLACK_SIG.to_owned())
        );
        assert_eq!(
            signed.headers[1],
            ("X-Slack-Request-Timestamp".to_owned(), ts)
        );
    }

    #[test]
    fn hmac_slack_timestamp_header_missing_or_malformed() {
        let v = verifier(slack(), &[SLACK_SECRET]);
        let body = SLACK_BODY.as_bytes();
        assert_eq!(
            check(&v, &[("X-Slack-Signature", SLACK_SIG)], body, SLACK_TS).unwrap_err(),
            VerifyError::MissingSignature
        );
        // The timestamp is signed: another one breaks the signature.
        let other = (SLACK_TS + 1).to_string();
        let headers = [
            ("X-Slack-Signature", SLACK_SIG),
            ("X-Slack-Request-Timestamp", other.as_str()),
        ];
        assert_eq!(
            check(&v, &headers, body, SLACK_TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
        for bad in [
            "abc",
            "-1531420618",
            "01531420618",
            "99999999999999999999999",
        ] {
            let headers = [
                ("X-Slack-Signature", SLACK_SIG),
                ("X-Slack-Request-Timestamp", bad),
            ];
            assert_eq!(
                check(&v, &headers, body, SLACK_TS).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
    }

    #[test]
    fn hmac_base64_sha1_and_sha512_with_key_encodings_round_trip() {
        for algorithm in [
            HmacAlgorithm::Sha1,
            HmacAlgorithm::Sha256,
            HmacAlgorithm::Sha512,
        ] {
            for (key_encoding, secret) in [
                (KeyEncoding::Utf8, "s3cret"),
                (KeyEncoding::Hex, "00ff10aa"),
                (KeyEncoding::Base64, "c2VjcmV0"),
            ] {
                let config = HmacConfig {
                    algorithm,
                    encoding: SignatureEncoding::Base64,
                    key_encoding,
                    ..config("X-Sig")
                };
                let signed = sign(&config, secret, b"body", 0, "", None).unwrap();
                let v = verifier(config, &[secret]);
                let (name, value) = &signed.headers[0];
                assert!(check(&v, &[(name, value)], b"body", 0).is_ok());
                assert!(check(&v, &[(name, value)], b"bodY", 0).is_err());
            }
        }
    }

    #[test]
    fn hmac_known_sha1_and_sha512_values_match() {
        // RFC 4231 test case 2 (SHA-512) and RFC 2202 test case 2 (SHA-1):
        // key "Jefe", data "what do ya want for nothing?".
        let data = b"what do ya want for nothing?";
        let sha512 = "164b7a7bfcf819e2e395fbe73b56e0a387bd64222e831fd610270cd7ea2505549758bf75c05a994a6d034f65f8f0e6fdcaeab1a34d4a6b4b636e070a38bce737";
        let sha1 = "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79";
        for (algorithm, expected) in [(HmacAlgorithm::Sha512, sha512), (HmacAlgorithm::Sha1, sha1)]
        {
            let config = HmacConfig {
                algorithm,
                ..config("X-Sig")
            };
            let v = verifier(config, &["Jefe"]);
            assert!(check(&v, &[("X-Sig", expected)], data, 0).is_ok());
        }
    }

    #[test]
    fn hmac_template_parsing_rejects_unknown_and_unbalanced() {
        assert_eq!(
            Template::parse("v0:{timestamp}:{body}").unwrap().parts,
            vec![
                Part::Literal("v0:".into()),
                Part::Timestamp,
                Part::Literal(":".into()),
                Part::Body
            ]
        );
        assert_eq!(Template::parse("{body}").unwrap().parts, vec![Part::Body]);
        for bad in [
            "{bdy}",
            "{body",
            "body}",
            "{}",
            "{{body}}",
            "{timestamp}.{Body}",
        ] {
            let err = Template::parse(bad).unwrap_err();
            assert!(matches!(err, KeyError::Config(_)), "{bad}");
        }
    }

    #[test]
    fn hmac_inconsistent_configs_are_rejected() {
        let cases = [
            HmacConfig {
                content: "{timestamp}.{body}".into(),
                ..config("X-Sig")
            },
            HmacConfig {
                timestamp_header: Some("X-Ts".into()),
                ..config("X-Sig")
            },
            HmacConfig {
                tolerance_secs: Some(10),
                ..config("X-Sig")
            },
            HmacConfig {
                content: "{timestamp}".into(),
                timestamp_header: Some("X-Ts".into()),
                ..config("X-Sig")
            },
            HmacConfig {
                prefix: Some(String::new()),
                ..config("X-Sig")
            },
            HmacConfig {
                separator: Some(String::new()),
                ..config("X-Sig")
            },
            config(" "),
        ];
        for c in cases {
            let err = Verifier::new(&SchemeConfig::Hmac(c.clone()), &["k".into()]).unwrap_err();
            assert!(matches!(err, KeyError::Config(_)), "{c:?}");
            assert!(sign(&c, "k", b"", 0, "", None).is_err());
        }
    }

    #[test]
    fn hmac_undecodable_or_empty_secret_names_its_index() {
        let hex_config = HmacConfig {
            key_encoding: KeyEncoding::Hex,
            ..config("X-Sig")
        };
        let secrets: Vec<SecretString> = vec!["00ff".into(), "not-hex-secret".into()];
        let err = Verifier::new(&SchemeConfig::Hmac(hex_config), &secrets).unwrap_err();
        assert_eq!(
            err,
            KeyError::InvalidSecret {
                index: 2,
                expected: "hex HMAC key",
                reason: "it does not decode"
            }
        );
        assert!(!err.to_string().contains("not-hex-secret"));
        let err = Verifier::new(&SchemeConfig::Hmac(config("X-Sig")), &["".into()]).unwrap_err();
        assert!(err.to_string().starts_with("secret #1 "));
    }

    #[test]
    fn hmac_oversized_header_is_invalid() {
        let v = verifier(pagerduty(), &[PD_SECRET]);
        let pad = "v2=00,".repeat(700);
        let long = format!("{pad}{PD_VALID}");
        assert!(long.len() > MAX_HEADER_LEN);
        assert_eq!(
            check(&v, &[("X-PagerDuty-Signature", &long)], PD_BODY, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Sixteen junk signatures first: the real one is never looked at.
        let junk = format!("v1={},", "00".repeat(32)).repeat(MAX_SIGNATURES);
        let late = format!("{junk}{PD_VALID}");
        assert_eq!(
            check(&v, &[("X-PagerDuty-Signature", &late)], PD_BODY, 0).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    /// Grafana's contact point signs `{ts}:{body}` when a timestamp header
    /// is configured there, else `{body}`.
    fn optional_timestamp() -> HmacConfig {
        HmacConfig {
            content: "{timestamp}:{body}".into(),
            timestamp_header: Some("X-Ts".into()),
            content_without_timestamp: Some("{body}".into()),
            ..config("X-Sig")
        }
    }

    #[test]
    fn hmac_optional_timestamp_verifies_either_form() {
        let v = verifier(optional_timestamp(), &["k"]);
        let body = br#"{"status":"firing"}"#;
        let with = sign(&optional_timestamp(), "k", body, 1_000, "", None).unwrap();
        let h: Vec<(&str, &str)> = with
            .headers
            .iter()
            .map(|(n, v)| (n.as_str(), v.as_str()))
            .collect();
        assert_eq!(h[1], ("X-Ts", "1000"));
        assert_eq!(check(&v, &h, body, 1_000).unwrap().timestamp, Some(1_000));
        assert_eq!(
            check(&v, &h, body, 1_301).unwrap_err(),
            VerifyError::TimestampOutOfTolerance
        );
        // Without the header: the body alone is signed, and no timestamp
        // is checked.
        let plain = sign(&config("X-Sig"), "k", body, 0, "", None).unwrap();
        let sig = plain.headers[0].1.as_str();
        assert_eq!(
            check(&v, &[("X-Sig", sig)], body, 99_999)
                .unwrap()
                .timestamp,
            None
        );
        assert_eq!(
            check(&v, &[("X-Sig", sig), ("X-Ts", " ")], body, 0)
                .unwrap()
                .timestamp,
            None
        );
        // A timestamped signature does not verify once its header is
        // dropped, nor a plain one once a header is added.
        assert_eq!(
            check(&v, &h[..1], body, 1_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(&v, &[("X-Sig", sig), ("X-Ts", "1000")], body, 1_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Without content_without_timestamp the header stays required.
        let strict = verifier(
            HmacConfig {
                content_without_timestamp: None,
                ..optional_timestamp()
            },
            &["k"],
        );
        assert_eq!(
            check(&strict, &[("X-Sig", sig)], body, 0).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn hmac_optional_timestamp_config_is_checked() {
        for c in [
            // No timestamp header to be optional.
            HmacConfig {
                content_without_timestamp: Some("{body}".into()),
                ..config("X-Sig")
            },
            HmacConfig {
                content_without_timestamp: Some("{timestamp}{body}".into()),
                ..optional_timestamp()
            },
            HmacConfig {
                content_without_timestamp: Some("v0:".into()),
                ..optional_timestamp()
            },
        ] {
            let err = Verifier::new(&SchemeConfig::Hmac(c.clone()), &["k".into()]).unwrap_err();
            assert!(matches!(err, KeyError::Config(_)), "{c:?}");
        }
    }

    #[test]
    fn sorted_json_sorts_every_object_and_keeps_text_as_is() {
        // Keys sorted at every depth (arrays keep their order), compact,
        // "/" and non-ASCII unescaped, as Python's
        // json.dumps(..., separators=(",", ":"), ensure_ascii=False) and
        // JavaScript's JSON.stringify write them.
        let body =
            "{ \"z\": [ {\"b\": 1, \"a\": \"x/y\"}, 2 ], \"a\": {\"d\": \"bücher\", \"c\": null} }";
        assert_eq!(
            sorted_json(body.as_bytes()).unwrap(),
            "{\"a\":{\"c\":null,\"d\":\"bücher\"},\"z\":[{\"a\":\"x/y\",\"b\":1},2]}"
        );
        assert_eq!(sorted_json(b"{\"a\":"), None);
    }

    #[test]
    fn hmac_prefix_inside_multibyte_char_does_not_panic() {
        assert_eq!(strip_prefix_ignore_case("é=abc", "v1="), None);
        assert_eq!(strip_prefix_ignore_case("V1=ab", "v1="), Some("ab"));
        assert_eq!(strip_prefix_ignore_case("v", "v1="), None);
    }
}
