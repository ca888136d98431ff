//! Braintree: a form POST of `bt_signature` and `bt_payload` (base64 XML).
//! `bt_signature` is `public_key|hex(HMAC-SHA1(SHA1(private_key), bt_payload))`,
//! several pairs joined by `&`; the pair whose public key is ours counts. As
//! the SDKs do, the MAC of the payload followed by a newline is accepted too,
//! and a payload with characters outside base64 and `\n` is refused.
//!
//! A secret is `public_key:private_key`. The same key answers Braintree's
//! `bt_challenge` handshake ([`BraintreeVerifier::challenge`]).

use serde::Deserialize;
use sha1::{Digest, Sha1};

use super::hmac::HmacAlgorithm;
use super::mac::{matches_any, MacKey};
use super::wire;
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "braintree"`; nothing to configure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BraintreeConfig {}

struct Key {
    public_key: String,
    mac: MacKey,
}

fn key(index: usize, secret: &str) -> Result<Key, KeyError> {
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "Braintree key as public_key:private_key",
        reason,
    };
    let (public_key, private_key) = secret
        .split_once(':')
        .ok_or_else(|| invalid("it has no ':'"))?;
    if public_key.is_empty() || private_key.is_empty() {
        return Err(invalid("a part is empty"));
    }
    // The HMAC key is the SHA-1 digest of the private key.
    let mac = MacKey::new(HmacAlgorithm::Sha1, &Sha1::digest(private_key.as_bytes()))
        .map_err(|_| invalid("it cannot be used as an HMAC key"))?;
    Ok(Key {
        public_key: public_key.to_owned(),
        mac,
    })
}

/// The `bt_signature` and `bt_payload` fields of a form body.
fn fields(body: &[u8]) -> (Option<String>, Option<String>) {
    let mut signature = None;
    let mut payload = None;
    for (k, v) in form_urlencoded::parse(body) {
        match k.as_ref() {
            "bt_signature" if signature.is_none() => signature = Some(v.into_owned()),
            "bt_payload" if payload.is_none() => payload = Some(v.into_owned()),
            _ => {}
        }
    }
    (signature, payload)
}

pub(super) struct BraintreeVerifier {
    keys: Vec<Key>,
}

impl BraintreeVerifier {
    pub(super) fn new(_config: &BraintreeConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| key(i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(BraintreeVerifier { keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>) -> Result<Verified, VerifyError> {
        let (signature, payload) = fields(req.body);
        let (Some(signature), Some(payload)) = (signature, payload) else {
            return Err(VerifyError::MissingSignature);
        };
        if signature.is_empty() || payload.is_empty() {
            return Err(VerifyError::MissingSignature);
        }
        if signature.len() > wire::MAX_HEADER_LEN
            || !payload
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+=/\n".contains(&b))
        {
            return Err(VerifyError::InvalidSignature);
        }
        let with_newline = format!("{payload}\n");
        let mut ok = false;
        for key in &self.keys {
            let candidates: Vec<Vec<u8>> = signature
                .split('&')
                .filter_map(|pair| pair.split_once('|'))
                .filter(|(public, _)| *public == key.public_key)
                .filter_map(|(_, mac)| hex::decode(mac).ok())
                .take(wire::MAX_SIGNATURES)
                .collect();
            for content in [payload.as_bytes(), with_newline.as_bytes()] {
                ok |= matches_any(&key.mac.tag(&[content]), &candidates);
            }
        }
        if ok {
            Ok(Verified::new(None))
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }

    /// The answer to `GET ?bt_challenge=<hex>`: `public_key|hex(HMAC)` with
    /// the first (current) key; `None` for a challenge that isn't 20 to 32
    /// lowercase hex digits.
    pub fn challenge(&self, challenge: &str) -> Option<String> {
        let valid = (20..=32).contains(&challenge.len())
            && challenge
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        let key = self.keys.first()?;
        valid.then(|| {
            format!(
                "{}|{}",
                key.public_key,
                hex::encode(key.mac.tag(&[challenge.as_bytes()]))
            )
        })
    }
}

/// The `bt_signature` value for `payload` (the base64 text as sent).
pub fn signature_for(secret: &str, payload: &str) -> Result<String, KeyError> {
    let key = key(1, secret)?;
    Ok(format!(
        "{}|{}",
        key.public_key,
        hex::encode(key.mac.tag(&[payload.as_bytes()]))
    ))
}

/// The form body Braintree would send for the `bt_payload` of `body` (a
/// form as Braintree posts it; any `bt_signature` in it is replaced):
/// `bt_signature=…&bt_payload=…`. `hookgate sign` prints it.
pub(super) fn sign_body(secret: &str, body: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (_, payload) = fields(body);
    let payload = payload.ok_or(KeyError::CannotSign(
        "give the form body with its bt_payload field (base64 XML), as Braintree posts it",
    ))?;
    let signature = signature_for(secret, &payload)?;
    Ok(form_urlencoded::Serializer::new(String::new())
        .append_pair("bt_signature", &signature)
        .append_pair("bt_payload", &payload)
        .finish()
        .into_bytes())
}

/// Braintree's signature is a field of the body it signs, so "signing"
/// produces a new body: [`sign_body`], through `verify::sign_full`.
pub(super) fn sign() -> Result<SignedRequest, KeyError> {
    Err(KeyError::CannotSign(
        "Braintree's signature is a field of the form body: build the body with bt_signature",
    ))
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    /// Produced by PyPI braintree 4.48.0:
    /// `gateway.webhook_testing.sample_notification("subscription_went_past_due", "sub_1002")`
    /// with public key `hookgate_public_key`, private key
    /// `hookgate_private_key`, form-encoded with `urllib.parse.urlencode`;
    /// `gateway.webhook_notification.parse` accepts it.
    const SAMPLE: &[u8] =
        include_bytes!("../../providers/braintree/fixtures/subscription_went_past_due.form");
    const SECRET: &str = "hookgate_public_key:hookgate_private_key";

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::Braintree(BraintreeConfig {}), &secrets).unwrap()
    }

    fn check(v: &Verifier, body: &[u8]) -> Result<Verified, VerifyError> {
        v.verify(
            &RequestView {
                headers: &Headers::new(),
                body,
                path_token: None,
                url: None,
            },
            0,
        )
    }

    #[test]
    fn braintree_sdk_sample_verifies_with_its_key_only() {
        assert!(check(&verifier(&[SECRET]), SAMPLE).is_ok());
        assert!(check(&verifier(&["other:key", SECRET]), SAMPLE).is_ok());
        assert_eq!(
            check(&verifier(&["hookgate_public_key:wrong"]), SAMPLE).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Right private key under another public key: no pair is ours.
        assert!(check(&verifier(&["other_public:hookgate_private_key"]), SAMPLE).is_err());
        // A changed payload character breaks it.
        let text = String::from_utf8(SAMPLE.to_vec()).unwrap();
        let i = text.find("bt_payload=").unwrap() + 20;
        let mut tampered = text.into_bytes();
        tampered[i] = if tampered[i] == b'A' { b'B' } else { b'A' };
        assert!(check(&verifier(&[SECRET]), &tampered).is_err());
        assert_eq!(
            check(&verifier(&[SECRET]), b"bt_payload=abc").unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn braintree_sign_body_reproduces_the_sdk_signature() {
        let signed = sign_body(SECRET, SAMPLE).unwrap();
        assert!(check(&verifier(&[SECRET]), &signed).is_ok());
        // The SDK's own bt_signature for the same payload, byte for byte.
        assert_eq!(fields(&signed), fields(SAMPLE));
        assert!(sign_body(SECRET, b"not a form").is_err());
    }

    #[test]
    fn braintree_challenge_and_hmac_match_the_sdk_tests() {
        // braintree_python tests/unit/test_webhooks.py::test_verify_returns_a_correct_challenge_response
        let v = BraintreeVerifier::new(
            &BraintreeConfig {},
            &["integration_public_key:integration_private_key"],
        )
        .unwrap();
        assert_eq!(
            v.challenge("20f9f8ed05f77439fe955c977e4c8a53").as_deref(),
            Some("integration_public_key|d9b899556c966b3f06945ec21311865d35df3ce4")
        );
        assert_eq!(v.challenge("20f9f8ed05f77439fe955c977e4c8a5G"), None);
        assert_eq!(v.challenge("abc"), None);
        // tests/unit/util/test_crypto.py::test_sha1_hmac_hash
        assert_eq!(
            signature_for("p:secretKey", "hello world").unwrap(),
            "p|d503d7a1a6adba1e6474e9ff2c4167f9dfdf4247"
        );
    }
}
