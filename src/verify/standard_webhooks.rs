//! The Standard Webhooks scheme (spec v1.0.0), which Svix and many SaaS
//! senders use: `webhook-id`, `webhook-timestamp` and a space-separated
//! `webhook-signature` list of `v1,<base64 HMAC-SHA256>` and
//! `v1a,<base64 Ed25519>` entries over `{id}.{timestamp}.{raw body}`.
//!
//! Svix's branded `svix-id` / `svix-timestamp` / `svix-signature` headers are
//! read when none of the `webhook-*` headers is present; the two sets are
//! never mixed. Secrets: `whsec_<base64>` is an HMAC key (the prefix is
//! optional and padding may be missing, as in the official libraries),
//! `whpk_<base64>` an Ed25519 public key, and `whsk_<base64>` an Ed25519
//! secret key, either the 32-byte seed or the 64-byte seed‖public key form.
//!
//! Decisions the spec leaves open, made here: the timestamp must be canonical
//! decimal Unix seconds, and anything else (letters, a sign, leading zeros,
//! a value that overflows `i64`) is `InvalidSignature`, since no conforming
//! sender produces it; the id must not be empty or contain `.`, because the
//! spec forbids it and a `.` would make the signed content ambiguous.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;

use super::hmac::HmacAlgorithm;
use super::mac::{matches_any, MacKey};
use super::wire::{self, MAX_SIGNATURES};
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "standard-webhooks"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StandardWebhooksConfig {
    /// Maximum distance between `webhook-timestamp` and now, either way.
    #[serde(default = "default_tolerance_secs")]
    pub tolerance_secs: u64,
}

fn default_tolerance_secs() -> u64 {
    300
}

impl Default for StandardWebhooksConfig {
    fn default() -> Self {
        StandardWebhooksConfig {
            tolerance_secs: default_tolerance_secs(),
        }
    }
}

const SYMMETRIC_PREFIX: &str = "whsec_";
const PUBLIC_KEY_PREFIX: &str = "whpk_";
const SECRET_KEY_PREFIX: &str = "whsk_";

const HEADER_SETS: [[&str; 3]; 2] = [
    ["webhook-id", "webhook-timestamp", "webhook-signature"],
    ["svix-id", "svix-timestamp", "svix-signature"],
];

/// A configured secret, decoded.
enum Secret {
    Symmetric(MacKey),
    Public(VerifyingKey),
    Private(SigningKey),
}

fn parse_secret(index: usize, secret: &str) -> Result<Secret, KeyError> {
    if let Some(rest) = secret.strip_prefix(PUBLIC_KEY_PREFIX) {
        let invalid = |reason| KeyError::InvalidSecret {
            index,
            expected: "whpk_ key",
            reason,
        };
        let bytes: [u8; 32] = wire::decode_base64(rest)
            .ok_or_else(|| invalid("it is not base64"))?
            .try_into()
            .map_err(|_| invalid("it is not a 32-byte Ed25519 public key"))?;
        let key =
            VerifyingKey::from_bytes(&bytes).map_err(|_| invalid("it is not an Ed25519 point"))?;
        // A small-order key would let anyone forge signatures that a lax
        // verifier accepts; verify_strict rejects them too, but a key that
        // can never verify is a configuration error worth reporting early.
        if key.is_weak() {
            return Err(invalid("it is a weak (small-order) Ed25519 key"));
        }
        return Ok(Secret::Public(key));
    }
    if let Some(rest) = secret.strip_prefix(SECRET_KEY_PREFIX) {
        let invalid = |reason| KeyError::InvalidSecret {
            index,
            expected: "whsk_ key",
            reason,
        };
        let bytes = wire::decode_base64(rest).ok_or_else(|| invalid("it is not base64"))?;
        let (seed, public) = match bytes.len() {
            32 => (&bytes[..], None),
            64 => (&bytes[..32], Some(&bytes[32..])),
            _ => {
                return Err(invalid(
                    "it is neither a 32-byte seed nor a 64-byte keypair",
                ))
            }
        };
        let seed: [u8; 32] = seed
            .try_into()
            .map_err(|_| invalid("it is not a 32-byte seed"))?;
        let key = SigningKey::from_bytes(&seed);
        if public.is_some_and(|p| p != key.verifying_key().as_bytes()) {
            return Err(invalid("its public half does not match its seed"));
        }
        return Ok(Secret::Private(key));
    }
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "whsec_ key",
        reason,
    };
    // The official libraries accept the bare base64 too.
    let encoded = secret.strip_prefix(SYMMETRIC_PREFIX).unwrap_or(secret);
    let bytes = wire::decode_base64(encoded).ok_or_else(|| invalid("it is not base64"))?;
    if bytes.is_empty() {
        return Err(invalid("it is empty"));
    }
    MacKey::new(HmacAlgorithm::Sha256, &bytes)
        .map(Secret::Symmetric)
        .map_err(|_| invalid("it cannot be used as an HMAC key"))
}

/// What a verifier holds: a signing key is reduced to its public half.
enum Key {
    Hmac(Box<MacKey>),
    Ed25519(VerifyingKey),
}

pub(super) struct StandardWebhooksVerifier {
    tolerance_secs: u64,
    keys: Vec<Key>,
}

/// The signatures found in the header, decoded, by kind.
#[derive(Default)]
struct Candidates {
    v1: Vec<Vec<u8>>,
    v1a: Vec<Signature>,
}

fn parse_signatures(value: &str) -> Candidates {
    let mut out = Candidates::default();
    let mut considered = 0;
    for entry in value.split(' ').filter(|e| !e.is_empty()) {
        let Some((version, encoded)) = entry.split_once(',') else {
            continue;
        };
        if version != "v1" && version != "v1a" {
            continue;
        }
        if considered == MAX_SIGNATURES {
            break;
        }
        considered += 1;
        let Some(bytes) = wire::decode_base64(encoded) else {
            continue;
        };
        if version == "v1" {
            out.v1.push(bytes);
        } else if let Ok(sig) = Signature::from_slice(&bytes) {
            out.v1a.push(sig);
        }
    }
    out
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && !id.contains('.')
}

impl StandardWebhooksVerifier {
    pub(super) fn new(config: &StandardWebhooksConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| {
                Ok(match parse_secret(i + 1, s)? {
                    Secret::Symmetric(mac) => Key::Hmac(Box::new(mac)),
                    Secret::Public(key) => Key::Ed25519(key),
                    Secret::Private(key) => Key::Ed25519(key.verifying_key()),
                })
            })
            .collect::<Result<_, KeyError>>()?;
        Ok(StandardWebhooksVerifier {
            tolerance_secs: config.tolerance_secs,
            keys,
        })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        let [id_name, ts_name, sig_name] = HEADER_SETS
            .into_iter()
            .find(|set| set.iter().any(|name| req.headers.get(name).is_some()))
            .ok_or(VerifyError::MissingSignature)?;
        let id = wire::required_header(req.headers, id_name)?;
        let raw_ts = wire::required_header(req.headers, ts_name)?;
        let signature = wire::required_header(req.headers, sig_name)?;
        if !valid_id(id) {
            return Err(VerifyError::InvalidSignature);
        }
        let timestamp = wire::parse_timestamp(raw_ts).ok_or(VerifyError::InvalidSignature)?;
        let candidates = parse_signatures(signature);
        if candidates.v1.is_empty() && candidates.v1a.is_empty() {
            return Err(VerifyError::InvalidSignature);
        }

        let prefix = format!("{id}.{raw_ts}.");
        let mut ok = false;
        let mut message: Option<Vec<u8>> = None;
        for key in &self.keys {
            match key {
                Key::Hmac(mac) if !candidates.v1.is_empty() => {
                    let tag = mac.tag(&[prefix.as_bytes(), req.body]);
                    ok |= matches_any(&tag, &candidates.v1);
                }
                Key::Ed25519(public) if !candidates.v1a.is_empty() => {
                    // Ed25519 needs the message in one piece; build it once.
                    let msg = message.get_or_insert_with(|| [prefix.as_bytes(), req.body].concat());
                    // Public-key verification handles no secret, so an early
                    // `any` leaks nothing.
                    ok |= candidates
                        .v1a
                        .iter()
                        .any(|sig| public.verify_strict(msg, sig).is_ok());
                }
                _ => {}
            }
        }
        if !ok {
            return Err(VerifyError::InvalidSignature);
        }
        wire::check_tolerance(timestamp, now, self.tolerance_secs)?;
        Ok(Verified::new(Some(timestamp)))
    }
}

pub(super) fn sign(
    _config: &StandardWebhooksConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<SignedRequest, KeyError> {
    let secret = parse_secret(1, secret)?;
    if !valid_id(id) {
        return Err(KeyError::CannotSign(
            "the webhook id must be non-empty and contain no '.'",
        ));
    }
    if timestamp < 0 {
        return Err(KeyError::CannotSign("the timestamp must not be negative"));
    }
    let prefix = format!("{id}.{timestamp}.");
    let signature = match secret {
        Secret::Symmetric(mac) => {
            format!(
                "v1,{}",
                wire::encode_base64(&mac.tag(&[prefix.as_bytes(), body]))
            )
        }
        Secret::Private(key) => {
            let sig = key.sign(&[prefix.as_bytes(), body].concat());
            format!("v1a,{}", wire::encode_base64(&sig.to_bytes()))
        }
        Secret::Public(_) => {
            return Err(KeyError::CannotSign(
                "a whpk_ public key cannot sign; use the whsk_ secret key",
            ))
        }
    };
    Ok(SignedRequest {
        headers: vec![
            ("webhook-id".to_owned(), id.to_owned()),
            ("webhook-timestamp".to_owned(), timestamp.to_string()),
            ("webhook-signature".to_owned(), signature),
        ],
        path_token: None,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    // standard-webhooks@b2fa7b87 libraries/{python,go,php,...} tests.
    const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const MSG_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const TS: i64 = 1614265330;
    const BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    // RFC 8032 section 7.1, test 1.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_EMPTY_SIG: &str = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b";
    /// RFC 8032 key 1 signing `{MSG_ID}.{TS}.{BODY}`; self-generated and
    /// recomputed with python `cryptography` (see tests/vectors/README.md).
    const V1A_SIG: &str = "v1a,fldxM4gAKugP6nnt1hdz3sgGfZ6d99nzrMFnZOELIxbzEHoVmAb2ADpkJK7zgPePmPsle0zV9jSeGlHFG2NVAw==";

    fn b64_of_hex(h: &str) -> String {
        wire::encode_base64(&hex::decode(h).unwrap())
    }

    pub(in super::super) fn whsk() -> String {
        format!("whsk_{}", b64_of_hex(RFC_SEED))
    }

    fn whpk() -> String {
        format!("whpk_{}", b64_of_hex(RFC_PUBLIC))
    }

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(
            &SchemeConfig::StandardWebhooks(StandardWebhooksConfig::default()),
            &secrets,
        )
        .unwrap()
    }

    fn check_with(
        v: &Verifier,
        names: [&str; 3],
        id: &str,
        ts: &str,
        sig: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let mut headers = Headers::new();
        headers.push(names[0], id);
        headers.push(names[1], ts);
        headers.push(names[2], sig);
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

    fn check(v: &Verifier, sig: &str, now: i64) -> Result<Verified, VerifyError> {
        check_with(v, HEADER_SETS[0], MSG_ID, &TS.to_string(), sig, BODY, now)
    }

    #[test]
    fn standard_webhooks_official_vector_verifies() {
        let ok = check(&verifier(&[SECRET]), SIG, TS).unwrap();
        assert_eq!(ok.timestamp, Some(TS));
    }

    #[test]
    fn standard_webhooks_sign_reproduces_official_vector() {
        let signed = sign(&StandardWebhooksConfig::default(), SECRET, BODY, TS, MSG_ID).unwrap();
        assert_eq!(
            signed.headers,
            vec![
                ("webhook-id".to_owned(), MSG_ID.to_owned()),
                ("webhook-timestamp".to_owned(), TS.to_string()),
                ("webhook-signature".to_owned(), SIG.to_owned()),
            ]
        );
    }

    #[test]
    fn standard_webhooks_rust_library_vector_verifies() {
        // libraries/rust/src/lib.rs::test_sign.
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let id = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
        let ts = 1649367553;
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let expected = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";
        let signed = sign(&StandardWebhooksConfig::default(), secret, body, ts, id).unwrap();
        assert_eq!(signed.headers[2].1, expected);
        let v = verifier(&[secret]);
        assert!(check_with(&v, HEADER_SETS[0], id, &ts.to_string(), expected, body, ts).is_ok());
        // test_no_verify: a signature made for something else.
        let wrong = "v1,R3PTzyfHASBKHH98a7yexTwaJ4yNIcGhFQc1yuN+BPU=";
        assert_eq!(
            check_with(&v, HEADER_SETS[0], id, &ts.to_string(), wrong, body, ts).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn standard_webhooks_multi_signature_header_verifies() {
        // test_multi_sig_payload_is_valid: junk v1, an unknown v2, the valid
        // one, junk v1 again.
        let header = format!(
            "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= \
             v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= \
             {SIG} \
             v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc="
        );
        assert!(check(&verifier(&[SECRET]), &header, TS).is_ok());
        // Without the valid one it fails.
        let junk = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= \
                    v2,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc=";
        assert_eq!(
            check(&verifier(&[SECRET]), junk, TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn standard_webhooks_official_invalid_signature_fails() {
        // test_invalid_signature_raises_error: last base64 character changed.
        let bad = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OA=";
        assert_eq!(
            check(&verifier(&[SECRET]), bad, TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn standard_webhooks_unpadded_secrets_are_accepted() {
        // test_signature_verification_with_unpadded_secret; expected values
        // from the official Python library (PyPI standardwebhooks 1.1.0)
        // Webhook(secret).sign(MSG_ID, TS, BODY).
        let cases = [
            ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", SIG),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS",
                "v1,LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk=",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS=",
                "v1,LVOXivKoo4FWasi/IaHvzhE/u+7/cu2AME+zS/nXqzk=",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
                "v1,yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
            ),
            (
                "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr",
                "v1,yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
            ),
            (
                "MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwBr==",
                "v1,yK2tMbA6BHPrMEJ1lLv7UlJJbgFoqGenJkiajZ29evg=",
            ),
        ];
        for (secret, expected) in cases {
            assert!(
                check(&verifier(&[secret]), expected, TS).is_ok(),
                "{secret}"
            );
            let signed =
                sign(&StandardWebhooksConfig::default(), secret, BODY, TS, MSG_ID).unwrap();
            assert_eq!(signed.headers[2].1, expected, "{secret}");
        }
    }

    #[test]
    fn standard_webhooks_svix_headers_are_read() {
        let v = verifier(&[SECRET]);
        let ts = TS.to_string();
        assert!(check_with(&v, HEADER_SETS[1], MSG_ID, &ts, SIG, BODY, TS).is_ok());
        let upper = ["Svix-Id", "Svix-Timestamp", "Svix-Signature"];
        assert!(check_with(&v, upper, MSG_ID, &ts, SIG, BODY, TS).is_ok());
    }

    #[test]
    fn standard_webhooks_header_sets_are_not_mixed() {
        let v = verifier(&[SECRET]);
        let mut headers = Headers::new();
        headers.push("webhook-id", MSG_ID);
        headers.push("svix-timestamp", &TS.to_string());
        headers.push("svix-signature", SIG);
        let req = RequestView {
            headers: &headers,
            body: BODY,
            path_token: None,
            url: None,
        };
        assert_eq!(
            v.verify(&req, TS).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn standard_webhooks_missing_headers_are_missing_signature() {
        let v = verifier(&[SECRET]);
        let all = [
            ("webhook-id", MSG_ID.to_owned()),
            ("webhook-timestamp", TS.to_string()),
            ("webhook-signature", SIG.to_owned()),
        ];
        for skip in 0..=all.len() {
            let mut headers = Headers::new();
            for (i, (n, val)) in all.iter().enumerate() {
                if i != skip {
                    headers.push(n, val);
                }
            }
            let req = RequestView {
                headers: &headers,
                body: BODY,
                path_token: None,
                url: None,
            };
            let result = v.verify(&req, TS);
            if skip == all.len() {
                assert!(result.is_ok());
            } else {
                assert_eq!(result.unwrap_err(), VerifyError::MissingSignature, "{skip}");
            }
        }
        let empty = Headers::new();
        let req = RequestView {
            headers: &empty,
            body: BODY,
            path_token: None,
            url: None,
        };
        assert_eq!(
            v.verify(&req, TS).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn standard_webhooks_tolerance_is_symmetric() {
        let v = verifier(&[SECRET]);
        assert!(check(&v, SIG, TS + 300).is_ok());
        assert!(check(&v, SIG, TS - 300).is_ok());
        for now in [TS + 301, TS - 301] {
            assert_eq!(
                check(&v, SIG, now).unwrap_err(),
                VerifyError::TimestampOutOfTolerance
            );
        }
    }

    #[test]
    fn standard_webhooks_malformed_timestamp_is_invalid_signature() {
        let v = verifier(&[SECRET]);
        for ts in [
            "hello",
            "-1614265330",
            "+1614265330",
            "01614265330",
            "1614265330.0",
            "99999999999999999999",
        ] {
            assert_eq!(
                check_with(&v, HEADER_SETS[0], MSG_ID, ts, SIG, BODY, TS).unwrap_err(),
                VerifyError::InvalidSignature,
                "{ts}"
            );
        }
    }

    #[test]
    fn standard_webhooks_malformed_signatures_are_invalid() {
        let v = verifier(&[SECRET]);
        let b64 = SIG.strip_prefix("v1,").unwrap();
        for bad in [
            "v1,".to_owned(),
            "v1".to_owned(),
            b64.to_owned(),
            format!("v1,{}", &b64[..10]),
            format!("v1,{b64}AAAA"),
            "v1,!!!!".to_owned(),
            format!("V1,{b64}"),
            format!("v1a,{b64}"),
            format!("v1,{b64}{}", " v2,AAAA".repeat(600)), // oversized
        ] {
            assert_eq!(
                check(&v, &bad, TS).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        for bad_id in ["msg.1", "."] {
            let ts = TS.to_string();
            assert_eq!(
                check_with(&v, HEADER_SETS[0], bad_id, &ts, SIG, BODY, TS).unwrap_err(),
                VerifyError::InvalidSignature
            );
        }
    }

    #[test]
    fn standard_webhooks_only_sixteen_signatures_are_considered() {
        let v = verifier(&[SECRET]);
        let junk = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ".repeat(MAX_SIGNATURES);
        assert_eq!(
            check(&v, &format!("{junk}{SIG}"), TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let fifteen = "v1,Ceo5qEr07ixe2NLpvHk3FH9bwy/WavXrAFQ/9tdO6mc= ".repeat(MAX_SIGNATURES - 1);
        assert!(check(&v, &format!("{fifteen}{SIG}"), TS).is_ok());
    }

    #[test]
    fn standard_webhooks_rfc8032_test1_key_derivation_and_signature() {
        let Secret::Private(key) = parse_secret(1, &whsk()).unwrap() else {
            panic!("whsk_ must parse as a signing key");
        };
        assert_eq!(hex::encode(key.verifying_key().as_bytes()), RFC_PUBLIC);
        assert_eq!(hex::encode(key.sign(b"").to_bytes()), RFC_EMPTY_SIG);
    }

    #[test]
    fn standard_webhooks_v1a_vector_verifies_with_whpk_and_whsk() {
        for secret in [whpk(), whsk()] {
            let ok = check(&verifier(&[&secret]), V1A_SIG, TS).unwrap();
            assert_eq!(ok.timestamp, Some(TS));
        }
        let signed = sign(
            &StandardWebhooksConfig::default(),
            &whsk(),
            BODY,
            TS,
            MSG_ID,
        )
        .unwrap();
        assert_eq!(signed.headers[2].1, V1A_SIG);
    }

    #[test]
    fn standard_webhooks_v1a_rejects_tampering_and_wrong_kind() {
        let v = verifier(&[&whpk()]);
        let ts = TS.to_string();
        assert_eq!(
            check_with(
                &v,
                HEADER_SETS[0],
                MSG_ID,
                &ts,
                V1A_SIG,
                b"{\"test\": 2432232315}",
                TS
            )
            .unwrap_err(),
            VerifyError::InvalidSignature
        );
        // A v1 HMAC signature is no use to an Ed25519-only verifier, and a v1a
        // signature is no use to an HMAC-only one.
        assert_eq!(
            check(&v, SIG, TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(&verifier(&[SECRET]), V1A_SIG, TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Mixed keys and mixed header: either kind is enough.
        let both = verifier(&[SECRET, &whpk()]);
        assert!(check(&both, &format!("{SIG} {V1A_SIG}"), TS).is_ok());
        assert!(check(&both, V1A_SIG, TS).is_ok());
        // A genuine signature by the same key, but over other content (the
        // RFC's empty message), does not verify this request.
        let other = format!("v1a,{}", b64_of_hex(RFC_EMPTY_SIG));
        assert_eq!(
            check(&v, &other, TS).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn standard_webhooks_whsk_keypair_form_is_accepted_when_consistent() {
        let pair = [
            hex::decode(RFC_SEED).unwrap(),
            hex::decode(RFC_PUBLIC).unwrap(),
        ]
        .concat();
        let good = format!("whsk_{}", wire::encode_base64(&pair));
        assert!(check(&verifier(&[&good]), V1A_SIG, TS).is_ok());
        let mut bad_pair = pair.clone();
        bad_pair[40] ^= 1;
        let bad = format!("whsk_{}", wire::encode_base64(&bad_pair));
        assert!(matches!(
            parse_secret(1, &bad),
            Err(KeyError::InvalidSecret { .. })
        ));
    }

    #[test]
    fn standard_webhooks_bad_secrets_are_key_errors_naming_the_index() {
        let small_order_point = format!("whpk_{}", wire::encode_base64(&[0u8; 32]));
        for bad in [
            "whsec_",
            "whsec_!!!",
            "whpk_AAAA",
            "whsk_AAAA",
            "plain text secret",
            small_order_point.as_str(),
        ] {
            let secrets: Vec<SecretString> = vec![SECRET.into(), bad.into()];
            let err = Verifier::new(
                &SchemeConfig::StandardWebhooks(StandardWebhooksConfig::default()),
                &secrets,
            )
            .unwrap_err();
            let msg = err.to_string();
            assert!(msg.starts_with("secret #2 is not a valid "), "{msg}");
            let key_part = bad.split_once('_').map_or(bad, |(_, rest)| rest);
            assert!(key_part.is_empty() || !msg.contains(key_part), "{msg}");
        }
    }

    #[test]
    fn standard_webhooks_sign_refuses_public_key_and_bad_ids() {
        let c = StandardWebhooksConfig::default();
        assert!(matches!(
            sign(&c, &whpk(), BODY, TS, MSG_ID),
            Err(KeyError::CannotSign(_))
        ));
        for id in ["", "msg.1"] {
            assert!(matches!(
                sign(&c, SECRET, BODY, TS, id),
                Err(KeyError::CannotSign(_))
            ));
        }
        assert!(matches!(
            sign(&c, SECRET, BODY, -1, MSG_ID),
            Err(KeyError::CannotSign(_))
        ));
    }
}
