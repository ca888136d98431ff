//! Ed25519 signatures over a template of a timestamp header and the body,
//! with the sender's public key: Discord interactions (`X-Signature-Ed25519`
//! hex over `{timestamp}{body}`, `X-Signature-Timestamp`) and any sender that
//! signs the same way.
//!
//! A secret is the sender's key in hex: 32 bytes is the public key (all a
//! receiver needs), 64 bytes is a key pair as NaCl/libsodium write it (seed
//! then public key), which also lets `hookgate sign` act as the sender.

use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use serde::Deserialize;

use super::hmac::{Fill, Part, SignatureEncoding, Template};
use super::wire;
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "ed25519"`.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ed25519Config {
    pub header: String,
    #[serde(default)]
    pub encoding: SignatureEncoding,
    pub timestamp_header: String,
    /// What is signed; must contain `{timestamp}` and `{body}`.
    pub content: String,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

fn default_tolerance() -> u64 {
    300
}

struct Compiled {
    header: String,
    encoding: SignatureEncoding,
    timestamp_header: String,
    template: Template,
    tolerance_secs: u64,
}

impl Compiled {
    fn new(c: &Ed25519Config) -> Result<Compiled, KeyError> {
        let template = Template::parse(&c.content)?;
        if !template.has(&Part::Body) || !template.has(&Part::Timestamp) {
            return Err(KeyError::Config(
                "ed25519: content must sign both {timestamp} and {body}".into(),
            ));
        }
        if c.header.trim().is_empty() || c.timestamp_header.trim().is_empty() {
            return Err(KeyError::Config(
                "ed25519: header and timestamp_header must not be empty".into(),
            ));
        }
        Ok(Compiled {
            header: c.header.clone(),
            encoding: c.encoding,
            timestamp_header: c.timestamp_header.clone(),
            template,
            tolerance_secs: c.tolerance_secs,
        })
    }

    fn message(&self, body: &[u8], timestamp: &str, fill: &Fill<'_>) -> Vec<u8> {
        self.template.pieces(body, timestamp, fill).concat()
    }
}

fn parse_key(index: usize, secret: &str) -> Result<(VerifyingKey, Option<SigningKey>), KeyError> {
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "hex Ed25519 public key (32 bytes) or key pair (64 bytes)",
        reason,
    };
    let bytes = hex::decode(secret.trim()).map_err(|_| invalid("it is not hex"))?;
    match bytes.len() {
        32 => {
            let key: [u8; 32] = bytes.try_into().map_err(|_| invalid("wrong length"))?;
            let public = VerifyingKey::from_bytes(&key)
                .map_err(|_| invalid("it is not an Ed25519 point"))?;
            if public.is_weak() {
                return Err(invalid("it is a weak (small-order) Ed25519 key"));
            }
            Ok((public, None))
        }
        64 => {
            let seed: [u8; 32] = bytes[..32]
                .try_into()
                .map_err(|_| invalid("wrong length"))?;
            let private = SigningKey::from_bytes(&seed);
            if private.verifying_key().as_bytes()[..] != bytes[32..] {
                return Err(invalid("its public half does not belong to its seed"));
            }
            Ok((private.verifying_key(), Some(private)))
        }
        _ => Err(invalid("it must be 32 or 64 bytes")),
    }
}

pub(super) struct Ed25519Verifier {
    compiled: Compiled,
    keys: Vec<VerifyingKey>,
}

impl Ed25519Verifier {
    pub(super) fn new(config: &Ed25519Config, secrets: &[&str]) -> Result<Self, KeyError> {
        let compiled = Compiled::new(config)?;
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| parse_key(i + 1, s).map(|(public, _)| public))
            .collect::<Result<_, _>>()?;
        Ok(Ed25519Verifier { compiled, keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        let c = &self.compiled;
        let encoded = wire::required_header(req.headers, &c.header)?;
        let raw_ts = wire::required_header(req.headers, &c.timestamp_header)?;
        if encoded.len() > wire::MAX_HEADER_LEN {
            return Err(VerifyError::InvalidSignature);
        }
        let bytes = c
            .encoding
            .decode(encoded)
            .ok_or(VerifyError::InvalidSignature)?;
        let signature = Signature::from_slice(&bytes).map_err(|_| VerifyError::InvalidSignature)?;
        let timestamp = wire::parse_timestamp(raw_ts).ok_or(VerifyError::InvalidSignature)?;
        let fill = c.template.fill(req)?;
        let message = c.message(req.body, raw_ts, &fill);
        // Public-key verification has no secret to leak through timing; every
        // key is still tried so a rotation behaves like the HMAC schemes.
        let ok = self.keys.iter().fold(false, |ok, key| {
            ok | key.verify_strict(&message, &signature).is_ok()
        });
        if !ok {
            return Err(VerifyError::InvalidSignature);
        }
        wire::check_tolerance(timestamp, now, c.tolerance_secs)?;
        Ok(Verified::new(Some(timestamp)))
    }
}

pub(super) fn sign(
    config: &Ed25519Config,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
    url: Option<&str>,
) -> Result<SignedRequest, KeyError> {
    let c = Compiled::new(config)?;
    let (_, private) = parse_key(1, secret)?;
    let private = private.ok_or(KeyError::CannotSign(
        "signing needs the 64-byte key pair, not only the public key",
    ))?;
    if timestamp < 0 {
        return Err(KeyError::CannotSign("the timestamp must not be negative"));
    }
    let ts = timestamp.to_string();
    let (fill, extra_headers) = c.template.sign_fill(url, id, body)?;
    let signature = private.sign(&c.message(body, &ts, &fill)).to_bytes();
    let encoded = c.encoding.encode(&signature);
    let mut headers = vec![(c.header.clone(), encoded), (c.timestamp_header, ts)];
    headers.extend(extra_headers);
    Ok(SignedRequest {
        headers,
        path_token: None,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    /// RFC 8032 §7.1 test 1 key pair (seed then public key).
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    const RFC_PAIR: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60\
                            d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";
    /// shared/providers-research.md §1.7: RFC key 1 signing a Discord PING at
    /// 1700000000 over `{timestamp}{body}`; Discord's official library, PyPI
    /// `discord-interactions` 0.4.0, `verify_key(body, sig, "1700000000",
    /// RFC_PUBLIC)` returns True (and False for timestamp 1700000001).
    const PING: &str = r#"{"id":"787053080478613555","token":"ThisIsATokenFromDiscordThatIsVeryLong","type":1,"version":1}"#;
    const PING_SIG: &str = "f0bd878adcef1f6d475c9644421905bd02b5de38e0d3ecfc6f58a711962c69cc\
                            c8dd7c9db312f9bdf08b1e1b8182e27a844da728c5e0dbb5507bf9931c1ed80b";

    pub(in super::super) fn discord() -> Ed25519Config {
        Ed25519Config {
            header: "X-Signature-Ed25519".into(),
            encoding: SignatureEncoding::Hex,
            timestamp_header: "X-Signature-Timestamp".into(),
            content: "{timestamp}{body}".into(),
            tolerance_secs: 300,
        }
    }

    fn check(
        secret: &str,
        sig: &str,
        ts: &str,
        body: &[u8],
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let v = Verifier::new(
            &SchemeConfig::Ed25519(discord()),
            &[SecretString::from(secret.to_owned())],
        )
        .unwrap();
        let mut h = Headers::new();
        h.push("X-Signature-Ed25519", sig);
        h.push("X-Signature-Timestamp", ts);
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
    fn ed25519_discord_ping_vector_verifies_with_the_public_key_only() {
        let now = 1_700_000_000;
        assert!(check(RFC_PUBLIC, PING_SIG, "1700000000", PING.as_bytes(), now).is_ok());
        assert!(check(RFC_PAIR, PING_SIG, "1700000000", PING.as_bytes(), now).is_ok());
        // One byte of body, or a different timestamp, breaks it: the
        // timestamp is signed.
        let mut tampered = PING.as_bytes().to_vec();
        tampered[10] ^= 1;
        assert_eq!(
            check(RFC_PUBLIC, PING_SIG, "1700000000", &tampered, now).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(RFC_PUBLIC, PING_SIG, "1700000001", PING.as_bytes(), now).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Authentic but outside the window.
        assert_eq!(
            check(
                RFC_PUBLIC,
                PING_SIG,
                "1700000000",
                PING.as_bytes(),
                now + 301
            )
            .unwrap_err(),
            VerifyError::TimestampOutOfTolerance
        );
        // Malformed signatures are invalid, absent ones missing.
        assert_eq!(
            check(RFC_PUBLIC, "zz", "1700000000", PING.as_bytes(), now).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(RFC_PUBLIC, "", "1700000000", PING.as_bytes(), now).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn ed25519_sign_reproduces_the_vector_and_needs_the_pair() {
        let signed = sign(
            &discord(),
            RFC_PAIR,
            PING.as_bytes(),
            1_700_000_000,
            "",
            None,
        )
        .unwrap();
        assert_eq!(
            signed.headers[0],
            ("X-Signature-Ed25519".to_string(), PING_SIG.to_string())
        );
        assert!(sign(&discord(), RFC_PUBLIC, PING.as_bytes(), 1, "", None).is_err());
    }

    #[test]
    fn ed25519_bad_keys_are_refused_without_echoing_them() {
        for bad in [
            "",
            "xyz",
            &RFC_PUBLIC[..62],
            &format!("{}00", &RFC_PAIR[..126]),
        ] {
            let err = match Verifier::new(
                &SchemeConfig::Ed25519(discord()),
                &[SecretString::from(bad.to_owned())],
            ) {
                Err(e) => e,
                Ok(_) => panic!("{bad:?} accepted"),
            };
            assert!(!err.to_string().contains(RFC_PUBLIC), "{err}");
        }
        let mut c = discord();
        c.content = "{body}".into();
        assert!(Compiled::new(&c).is_err());
    }
}
