//! Stripe's webhook signature: `Stripe-Signature: t=<unix>,v1=<hex>[,v1=…]`,
//! HMAC-SHA256 over `{t}.{raw body}`.
//!
//! The HMAC key is the whole endpoint secret, `whsec_` included, as UTF-8
//! bytes; unlike Standard Webhooks it is not base64-decoded (stripe-python
//! `WebhookSignature._compute_signature` does `secret.encode("utf-8")`). Only
//! `v1` entries count; `v0` and unknown schemes are ignored, as in the SDKs.
//! Several `v1` entries arrive while Stripe rolls a secret. This file knows
//! nothing about Stripe events, only about the header and the MAC; the
//! header parsing is the parameterised `timestamped` scheme's.

use serde::Deserialize;

use super::hmac::{HmacAlgorithm, KeyEncoding, SignatureEncoding};
use super::mac::MacKey;
use super::timestamped::{Compiled, TimestampUnit, TimestampedConfig};
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "stripe"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StripeConfig {
    /// Maximum distance between `t` and now, in either direction. The Stripe
    /// SDKs reject only old timestamps; we also reject ones too far in the
    /// future, which only a broken clock or a pre-computed signature produces.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
    #[serde(default = "default_header")]
    pub header: String,
}

fn default_tolerance_secs() -> u64 {
    300
}

fn default_header() -> String {
    "Stripe-Signature".to_owned()
}

impl Default for StripeConfig {
    fn default() -> Self {
        StripeConfig {
            tolerance_secs: default_tolerance_secs(),
            header: default_header(),
        }
    }
}

impl StripeConfig {
    /// Stripe's header in the terms of the parameterised scheme:
    /// `t=<unix>,v1=<hex>`, HMAC-SHA256 over `{t}.{body}`.
    fn timestamped(&self) -> TimestampedConfig {
        TimestampedConfig {
            header: self.header.clone(),
            separator: ",".to_owned(),
            timestamp_key: Some("t".to_owned()),
            signature_key: Some("v1".to_owned()),
            content: "{timestamp}.{body}".to_owned(),
            algorithm: HmacAlgorithm::Sha256,
            encoding: SignatureEncoding::Hex,
            key_encoding: KeyEncoding::Utf8,
            tolerance_secs: self.tolerance_secs,
            timestamp_unit: TimestampUnit::Seconds,
            body_unsigned: false,
        }
    }
}

const SECRET_PREFIX: &str = "whsec_";

pub(super) struct StripeVerifier {
    compiled: Compiled,
    keys: Vec<MacKey>,
}

/// Stripe endpoint secrets always start with `whsec_`; requiring it catches
/// the common mistake of configuring the API key (`sk_…`) instead.
fn key(index: usize, secret: &str) -> Result<MacKey, KeyError> {
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "Stripe endpoint secret",
        reason,
    };
    match secret.strip_prefix(SECRET_PREFIX) {
        Some(rest) if !rest.is_empty() => {}
        _ => return Err(invalid("it must start with whsec_ followed by the key")),
    }
    MacKey::new(HmacAlgorithm::Sha256, secret.as_bytes())
        .map_err(|_| invalid("it cannot be used as an HMAC key"))
}

impl StripeVerifier {
    pub(super) fn new(config: &StripeConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let compiled = Compiled::new(&config.timestamped())?;
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| key(i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(StripeVerifier { compiled, keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        self.compiled.verify(&self.keys, req, now)
    }
}

pub(super) fn sign(
    config: &StripeConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
) -> Result<SignedRequest, KeyError> {
    let key = key(1, secret)?;
    Compiled::new(&config.timestamped())?.sign(&key, body, timestamp, "", None)
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde::Deserialize;

    use super::super::wire::{self, MAX_SIGNATURES};
    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    /// tests/vectors/stripe.json, produced with Stripe's own SDKs (see the
    /// README beside it).
    #[derive(Deserialize)]
    struct Vector {
        secret: String,
        old_secret: String,
        timestamp: i64,
        payload: String,
        header: String,
        header_rotation: String,
        header_rotation_old_first: String,
    }

    fn vector() -> Vector {
        serde_json::from_str(include_str!("../../tests/vectors/stripe.json")).unwrap()
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::Stripe(StripeConfig::default()), &secrets).unwrap()
    }

    fn check(
        v: &Verifier,
        header: Option<&str>,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut headers = Headers::new();
        if let Some(h) = header {
            headers.push("stripe-signature", h);
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
    fn stripe_sdk_vector_verifies_at_its_timestamp() {
        let vec = vector();
        let v = verifier(&[&vec.secret]);
        let ok = check(&v, Some(&vec.header), vec.payload.as_bytes(), vec.timestamp).unwrap();
        assert_eq!(ok.timestamp, Some(vec.timestamp));
    }

    #[test]
    fn stripe_sdk_vector_is_rejected_outside_tolerance_both_ways() {
        let vec = vector();
        let v = verifier(&[&vec.secret]);
        let body = vec.payload.as_bytes();
        assert!(check(&v, Some(&vec.header), body, vec.timestamp + 300).is_ok());
        assert!(check(&v, Some(&vec.header), body, vec.timestamp - 300).is_ok());
        for now in [vec.timestamp + 301, vec.timestamp - 301] {
            assert_eq!(
                check(&v, Some(&vec.header), body, now).unwrap_err(),
                VerifyError::TimestampOutOfTolerance
            );
        }
    }

    #[test]
    fn stripe_sdk_rotation_header_verifies_with_either_secret() {
        let vec = vector();
        let body = vec.payload.as_bytes();
        for header in [&vec.header_rotation, &vec.header_rotation_old_first] {
            for secret in [&vec.secret, &vec.old_secret] {
                assert!(check(&verifier(&[secret]), Some(header), body, vec.timestamp).is_ok());
            }
        }
        // The single-signature header was made with the new secret only.
        assert_eq!(
            check(
                &verifier(&[&vec.old_secret]),
                Some(&vec.header),
                body,
                vec.timestamp
            )
            .unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Several configured secrets: any one is enough.
        let both = verifier(&[&vec.old_secret, &vec.secret]);
        assert!(check(&both, Some(&vec.header), body, vec.timestamp).is_ok());
    }

    #[test]
    fn stripe_sign_reproduces_sdk_header() {
        let vec = vector();
        let signed = sign(
            &StripeConfig::default(),
            &vec.secret,
            vec.payload.as_bytes(),
            vec.timestamp,
        )
        .unwrap();
        assert_eq!(
            signed.headers,
            vec![("Stripe-Signature".to_owned(), vec.header.clone())]
        );
        assert_eq!(signed.path_token, None);
    }

    #[test]
    fn stripe_key_is_the_whole_secret_not_base64_decoded() {
        // The SW-style key (base64 after whsec_) must not verify a Stripe
        // signature: guards against "fixing" the key derivation.
        let vec = vector();
        let sw_key = wire::decode_base64(vec.secret.strip_prefix("whsec_").unwrap());
        if let Some(sw_key) = sw_key {
            let mac = MacKey::new(HmacAlgorithm::Sha256, &sw_key).unwrap();
            let t = vec.timestamp.to_string();
            let tag = mac.tag(&[t.as_bytes(), b".", vec.payload.as_bytes()]);
            assert!(!vec.header.contains(&hex::encode(tag)));
        }
    }

    #[test]
    fn stripe_tampered_body_is_rejected() {
        let vec = vector();
        let v = verifier(&[&vec.secret]);
        let mut body = vec.payload.clone().into_bytes();
        body.push(b' ');
        assert_eq!(
            check(&v, Some(&vec.header), &body, vec.timestamp).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn stripe_malformed_headers_are_invalid_and_absent_is_missing() {
        let vec = vector();
        let v = verifier(&[&vec.secret]);
        let body = vec.payload.as_bytes();
        let now = vec.timestamp;
        assert_eq!(
            check(&v, None, body, now).unwrap_err(),
            VerifyError::MissingSignature
        );
        assert_eq!(
            check(&v, Some("  "), body, now).unwrap_err(),
            VerifyError::MissingSignature
        );
        let sig = vec.header.split_once(",v1=").unwrap().1;
        let t = vec.timestamp;
        let long = format!("t={t},v1={sig},{}", "x".repeat(5000));
        for bad in [
            format!("v1={sig}"),                 // no t
            format!("t={t}"),                    // no v1
            format!("t={t},v0={sig}"),           // only the test-mode scheme
            format!("t={t},v2={sig}"),           // unknown scheme
            format!("t=abc,v1={sig}"),           // t not a number
            format!("t=-{t},v1={sig}"),          // negative t
            format!("t={t}0000000000,v1={sig}"), // t overflows i64
            format!("t={t},t={t},v1={sig}"),     // t twice
            format!("t={t},v1=zz{}", &sig[2..]), // not hex
            format!("t={t},v1={}", &sig[..32]),  // truncated
            format!("t={t},v1={sig}00"),         // too long
            format!("t={t},v1="),                // empty signature
            "garbage".to_owned(),
            long, // oversized header
        ] {
            assert_eq!(
                check(&v, Some(&bad), body, now).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        // v0 and unknown entries beside a valid v1 are ignored; spaces and
        // upper-case hex are tolerated.
        let upper = sig.to_ascii_uppercase();
        for good in [
            format!("t={t},v0=00,v1={sig},v9=x"),
            format!("t={t}, v1={upper}"),
            format!("v1=00,t={t},v1={sig}"),
        ] {
            assert!(check(&v, Some(&good), body, now).is_ok(), "{good}");
        }
    }

    #[test]
    fn stripe_only_sixteen_signatures_are_considered() {
        let vec = vector();
        let v = verifier(&[&vec.secret]);
        let sig = vec.header.split_once(",v1=").unwrap().1;
        let t = vec.timestamp;
        let junk = format!(",v1={}", "00".repeat(32)).repeat(MAX_SIGNATURES);
        let late = format!("t={t}{junk},v1={sig}");
        assert_eq!(
            check(&v, Some(&late), vec.payload.as_bytes(), t).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn stripe_secret_without_whsec_prefix_is_a_key_error() {
        let secrets: Vec<SecretString> = vec!["whsec_ok".into(), "sk_test_123".into()];
        let err =
            Verifier::new(&SchemeConfig::Stripe(StripeConfig::default()), &secrets).unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("secret #2 "), "{msg}");
        assert!(!msg.contains("sk_test_123"));
        assert!(sign(&StripeConfig::default(), "whsec_", b"{}", 1).is_err());
    }

    #[test]
    fn stripe_custom_header_name_is_used() {
        let config = StripeConfig {
            header: "X-Other-Signature".to_owned(),
            ..StripeConfig::default()
        };
        let signed = sign(&config, "whsec_abc", b"{}", 1_700_000_000).unwrap();
        assert_eq!(signed.headers[0].0, "X-Other-Signature");
        let v = Verifier::new(&SchemeConfig::Stripe(config), &["whsec_abc".into()]).unwrap();
        let mut headers = Headers::new();
        headers.push("x-other-signature", &signed.headers[0].1);
        let req = RequestView {
            headers: &headers,
            body: b"{}",
            path_token: None,
            url: None,
        };
        assert!(v.verify(&req, 1_700_000_000).is_ok());
    }
}
