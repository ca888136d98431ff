//! The timestamped key=value signature header, parameterised: one header
//! carries a timestamp entry and one or more signature entries, e.g.
//! Stripe's `t=<unix>,v1=<hex>[,v1=…]` or Paddle Billing's
//! `ts=<unix>;h1=<hex>[;h1=…]`, and the MAC covers a template of the
//! timestamp and the raw body (`{timestamp}.{body}`, `{timestamp}:{body}`).
//!
//! Stripe's scheme is this one with Stripe's parameters and its own secret
//! check (`stripe.rs`); provider.toml can select it directly as
//! `scheme = "timestamped-hmac"`. The header is parsed the same way for every
//! sender: entries split on the separator, each `key=value` with whitespace
//! trimmed; a repeated timestamp is malformed rather than guessed at;
//! signature entries that do not decode and unknown keys are skipped (they
//! cannot be our MAC), and at most [`MAX_SIGNATURES`] are tried.

use serde::Deserialize;

use super::hmac::{mac_key, HmacAlgorithm, KeyEncoding, Part, SignatureEncoding, Template};
use super::mac::{matches_any, MacKey};
use super::wire::{self, MAX_SIGNATURES};
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "timestamped-hmac"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimestampedConfig {
    /// The header carrying the timestamp and the signatures.
    pub header: String,
    /// Between entries: `","` (Stripe) or `";"` (Paddle).
    #[serde(default = "default_separator")]
    pub separator: String,
    /// The entry key of the timestamp: `t` (Stripe), `ts` (Paddle).
    pub timestamp_key: String,
    /// The entry key of a signature: `v1` (Stripe), `h1` (Paddle).
    pub signature_key: String,
    /// What is signed; must contain `{timestamp}` and `{body}`.
    pub content: String,
    #[serde(default)]
    pub algorithm: HmacAlgorithm,
    #[serde(default)]
    pub encoding: SignatureEncoding,
    #[serde(default)]
    pub key_encoding: KeyEncoding,
    /// Maximum distance between the timestamp and now, either direction.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
}

fn default_separator() -> String {
    ",".to_owned()
}

fn default_tolerance_secs() -> u64 {
    300
}

/// A checked configuration; `stripe.rs` builds one with fixed parameters.
#[derive(Debug, Clone)]
pub(super) struct Compiled {
    header: String,
    separator: String,
    timestamp_key: String,
    signature_key: String,
    template: Template,
    encoding: SignatureEncoding,
    tolerance_secs: u64,
}

impl Compiled {
    pub(super) fn new(c: &TimestampedConfig) -> Result<Compiled, KeyError> {
        let config = |msg: &str| Err(KeyError::Config(format!("timestamped-hmac: {msg}")));
        if c.header.trim().is_empty() {
            return config("header must not be empty");
        }
        if c.separator.is_empty() || c.separator.contains('=') {
            return config("separator must be non-empty and must not contain '='");
        }
        for (name, key) in [
            ("timestamp_key", &c.timestamp_key),
            ("signature_key", &c.signature_key),
        ] {
            if key.trim().is_empty() || key.contains('=') || key.contains(c.separator.as_str()) {
                return config(&format!(
                    "{name} must be non-empty and contain neither '=' nor the separator"
                ));
            }
        }
        if c.timestamp_key == c.signature_key {
            return config("timestamp_key and signature_key must differ");
        }
        let template = Template::parse(&c.content)?;
        if !template.has(&Part::Body) || !template.has(&Part::Timestamp) {
            // Without the timestamp in the MAC anyone could change it, and
            // the tolerance check would protect nothing.
            return config("content must contain both {timestamp} and {body}");
        }
        Ok(Compiled {
            header: c.header.clone(),
            separator: c.separator.clone(),
            timestamp_key: c.timestamp_key.clone(),
            signature_key: c.signature_key.clone(),
            template,
            encoding: c.encoding,
            tolerance_secs: c.tolerance_secs,
        })
    }

    /// Splits the header into the timestamp (raw text and value) and the
    /// decoded candidate signatures. No usable timestamp, a repeated one, or
    /// no decodable signature is malformed.
    fn parse<'a>(&self, value: &'a str) -> Result<(&'a str, i64, Vec<Vec<u8>>), VerifyError> {
        let mut timestamp = None;
        let mut signatures = Vec::new();
        for entry in value.split(self.separator.as_str()) {
            let Some((key, val)) = entry.trim().split_once('=') else {
                continue;
            };
            let (key, val) = (key.trim(), val.trim());
            if key == self.timestamp_key {
                if timestamp.is_some() {
                    return Err(VerifyError::InvalidSignature);
                }
                let parsed = wire::parse_timestamp(val).ok_or(VerifyError::InvalidSignature)?;
                timestamp = Some((val, parsed));
            } else if key == self.signature_key && signatures.len() < MAX_SIGNATURES {
                let decoded = match self.encoding {
                    SignatureEncoding::Hex => hex::decode(val).ok(),
                    SignatureEncoding::Base64 => wire::decode_base64(val),
                };
                if let Some(bytes) = decoded.filter(|b| !b.is_empty()) {
                    signatures.push(bytes);
                }
            }
        }
        match timestamp {
            Some((raw, t)) if !signatures.is_empty() => Ok((raw, t, signatures)),
            _ => Err(VerifyError::InvalidSignature),
        }
    }

    pub(super) fn verify(
        &self,
        keys: &[MacKey],
        req: &RequestView<'_>,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let value = wire::required_header(req.headers, &self.header)?;
        let (raw_ts, timestamp, signatures) = self.parse(value)?;
        let url = self.template.url(req)?;
        let pieces = self.template.pieces(req.body, raw_ts, url);
        // Every key is tried (no early exit) so timing does not tell which
        // secret of a rotation matched.
        let mut ok = false;
        for key in keys {
            ok |= matches_any(&key.tag(&pieces), &signatures);
        }
        if !ok {
            return Err(VerifyError::InvalidSignature);
        }
        // Checked only after the MAC, so this error means "authentic but
        // stale or early", which is what an operator needs to know.
        wire::check_tolerance(timestamp, now, self.tolerance_secs)?;
        Ok(Verified::new(Some(timestamp)))
    }

    pub(super) fn sign(
        &self,
        key: &MacKey,
        body: &[u8],
        timestamp: i64,
        url: Option<&str>,
    ) -> Result<SignedRequest, KeyError> {
        if timestamp < 0 {
            return Err(KeyError::CannotSign("the timestamp must not be negative"));
        }
        let ts = timestamp.to_string();
        let url = self.template.sign_url(url)?;
        let tag = key.tag(&self.template.pieces(body, &ts, url));
        let encoded = match self.encoding {
            SignatureEncoding::Hex => hex::encode(tag),
            SignatureEncoding::Base64 => wire::encode_base64(&tag),
        };
        Ok(SignedRequest {
            headers: vec![(
                self.header.clone(),
                format!(
                    "{}={ts}{}{}={encoded}",
                    self.timestamp_key, self.separator, self.signature_key
                ),
            )],
            path_token: None,
        })
    }
}

pub(super) struct TimestampedVerifier {
    compiled: Compiled,
    keys: Vec<MacKey>,
}

impl TimestampedVerifier {
    pub(super) fn new(config: &TimestampedConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let compiled = Compiled::new(config)?;
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| mac_key(config.algorithm, config.key_encoding, i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(TimestampedVerifier { compiled, keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        self.compiled.verify(&self.keys, req, now)
    }
}

pub(super) fn sign(
    config: &TimestampedConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    url: Option<&str>,
) -> Result<SignedRequest, KeyError> {
    let compiled = Compiled::new(config)?;
    let key = mac_key(config.algorithm, config.key_encoding, 1, secret)?;
    compiled.sign(&key, body, timestamp, url)
}

#[cfg(test)]
pub(super) mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    /// Paddle Billing, as in providers/paddle/provider.toml.
    pub(in super::super) fn paddle() -> TimestampedConfig {
        TimestampedConfig {
            header: "Paddle-Signature".to_owned(),
            separator: ";".to_owned(),
            timestamp_key: "ts".to_owned(),
            signature_key: "h1".to_owned(),
            content: "{timestamp}:{body}".to_owned(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            key_encoding: KeyEncoding::Utf8,
            tolerance_secs: 300,
        }
    }

    // PaddleHQ/paddle-python-sdk tests/Unit/Notification/test_Verifier.py
    // (see tests/vectors/README.md).
    const PADDLE_TS: i64 = 1696195954;
    const PADDLE_HEADER: &str =
        "ts=1696195954;h1=dummy;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";
    const PADDLE_BODY: &[u8] = b"hello-world";
    const PADDLE_SECRET: &str =
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_WvRO0eL4Bj9rgYYIBZY6wZhG4EHy9jzh";
    const PADDLE_WRONG: [&str; 2] = [
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_TjIG2BXbm83HPXqNfziwe506sBEdqL/4",
        "pdl_ntf_01hbpjmytsa32fhr36nqgc3kgb_vB/yIOnTOCWIvpBadM5jzBZPHc7OmdSo",
    ];

    fn verifier(config: TimestampedConfig, secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::TimestampedHmac(config), &secrets).unwrap()
    }

    fn check(
        v: &Verifier,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut headers = Headers::new();
        if let Some(h) = header {
            headers.push("paddle-signature", h);
        }
        v.verify(
            &RequestView {
                headers: &headers,
                body,
                path_token: None,
                url: None,
            },
            now,
        )
    }

    #[test]
    fn timestamped_paddle_sdk_vector_verifies_with_its_secret_only() {
        let v = verifier(paddle(), &[PADDLE_SECRET]);
        let ok = check(&v, Some(PADDLE_HEADER), PADDLE_BODY, PADDLE_TS).unwrap();
        assert_eq!(ok.timestamp, Some(PADDLE_TS));
        for wrong in PADDLE_WRONG {
            assert_eq!(
                check(
                    &verifier(paddle(), &[wrong]),
                    Some(PADDLE_HEADER),
                    PADDLE_BODY,
                    PADDLE_TS
                )
                .unwrap_err(),
                VerifyError::InvalidSignature
            );
        }
        // The SDK's own list of secrets, the right one last: any one is enough.
        let rotated = verifier(paddle(), &[PADDLE_WRONG[0], PADDLE_WRONG[1], PADDLE_SECRET]);
        assert!(check(&rotated, Some(PADDLE_HEADER), PADDLE_BODY, PADDLE_TS).is_ok());
    }

    #[test]
    fn timestamped_paddle_sign_reproduces_the_sdk_signature() {
        let signed = sign(&paddle(), PADDLE_SECRET, PADDLE_BODY, PADDLE_TS, None).unwrap();
        assert_eq!(
            signed.headers,
            vec![(
                "Paddle-Signature".to_owned(),
                "ts=1696195954;h1=d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02"
                    .to_owned()
            )]
        );
    }

    #[test]
    fn timestamped_tolerance_is_checked_after_the_mac_both_ways() {
        let v = verifier(paddle(), &[PADDLE_SECRET]);
        assert!(check(&v, Some(PADDLE_HEADER), PADDLE_BODY, PADDLE_TS + 300).is_ok());
        assert!(check(&v, Some(PADDLE_HEADER), PADDLE_BODY, PADDLE_TS - 300).is_ok());
        for now in [PADDLE_TS + 301, PADDLE_TS - 301] {
            assert_eq!(
                check(&v, Some(PADDLE_HEADER), PADDLE_BODY, now).unwrap_err(),
                VerifyError::TimestampOutOfTolerance
            );
        }
        // A wrong MAC far outside the window is still "invalid", not "stale".
        assert_eq!(
            check(&v, Some(PADDLE_HEADER), b"hello-world!", PADDLE_TS + 10_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn timestamped_malformed_headers_are_invalid_and_absent_is_missing() {
        let v = verifier(paddle(), &[PADDLE_SECRET]);
        let sig = "d96299976a6eb066f484d7fde011ac56fc32b38fc9940bc419d6e537fdc6ef02";
        assert_eq!(
            check(&v, None, PADDLE_BODY, PADDLE_TS).unwrap_err(),
            VerifyError::MissingSignature
        );
        for bad in [
            format!("h1={sig}"),
            "ts=1696195954".to_owned(),
            format!("ts=1696195954,h1={sig}"), // Stripe's separator
            format!("ts=1696195954;ts=1696195954;h1={sig}"),
            format!("ts=x;h1={sig}"),
            format!("ts=1696195955;h1={sig}"), // the timestamp is signed
            format!("ts=1696195954;v1={sig}"),
            format!("ts=1696195954;h1={}", &sig[..62]),
            "ts=1696195954;h1=".to_owned(),
        ] {
            assert_eq!(
                check(&v, Some(&bad), PADDLE_BODY, PADDLE_TS).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        for good in [
            format!("h1={sig};ts=1696195954"),
            format!("ts=1696195954; h1={}", sig.to_ascii_uppercase()),
            format!("ts=1696195954;foo=bar;h1={sig}"),
        ] {
            assert!(
                check(&v, Some(&good), PADDLE_BODY, PADDLE_TS).is_ok(),
                "{good}"
            );
        }
    }

    #[test]
    fn timestamped_inconsistent_configs_are_rejected() {
        let cases = [
            TimestampedConfig {
                content: "{body}".into(),
                ..paddle()
            },
            TimestampedConfig {
                content: "{timestamp}".into(),
                ..paddle()
            },
            TimestampedConfig {
                separator: String::new(),
                ..paddle()
            },
            TimestampedConfig {
                separator: "=".into(),
                ..paddle()
            },
            TimestampedConfig {
                signature_key: "ts".into(),
                ..paddle()
            },
            TimestampedConfig {
                timestamp_key: "t;s".into(),
                ..paddle()
            },
            TimestampedConfig {
                header: " ".into(),
                ..paddle()
            },
        ];
        for c in cases {
            let err = Verifier::new(&SchemeConfig::TimestampedHmac(c.clone()), &["k".into()])
                .unwrap_err();
            assert!(matches!(err, KeyError::Config(_)), "{c:?}");
            assert!(sign(&c, "k", b"", 0, None).is_err());
        }
    }

    #[test]
    fn timestamped_base64_sha512_round_trips() {
        let config = TimestampedConfig {
            algorithm: HmacAlgorithm::Sha512,
            encoding: SignatureEncoding::Base64,
            ..paddle()
        };
        let signed = sign(&config, "s3cret", b"{}", 1_700_000_000, None).unwrap();
        let v = verifier(config, &["s3cret"]);
        assert!(check(&v, Some(&signed.headers[0].1), b"{}", 1_700_000_000).is_ok());
        assert!(check(&v, Some(&signed.headers[0].1), b"{ }", 1_700_000_000).is_err());
    }
}
