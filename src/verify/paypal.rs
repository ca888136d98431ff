//! PayPal REST webhooks: `PAYPAL-TRANSMISSION-SIG` is a base64 RSA
//! PKCS#1 v1.5 SHA-256 signature (`PAYPAL-AUTH-ALGO: SHA256withRSA`) over
//! `{transmission id}|{transmission time}|{webhook id}|{crc32(body)}`, the
//! CRC as an unsigned decimal. The webhook id is the receiver's own (the
//! source's `auth = { scheme = "paypal", webhook_id = "…" }`), never taken
//! from the request, so an event signed for another PayPal webhook fails.
//!
//! PayPal's SDKs fetch the certificate from `PAYPAL-CERT-URL` at request
//! time; the gateway does no network I/O while verifying. The operator
//! downloads PayPal's signing certificate once (after checking its chain)
//! and configures it: each secret is PEM text holding one or more
//! certificates (several while PayPal rotates). A certificate outside its
//! validity period does not verify. A `PRIVATE KEY` block in a secret lets
//! `hookgate sign` act as the sender (tests only).

use rsa::pkcs1v15::{Signature, SigningKey, VerifyingKey};
use rsa::pkcs8::{DecodePrivateKey, DecodePublicKey};
use rsa::signature::{SignatureEncoding as _, Signer as _, Verifier as _};
use rsa::{RsaPrivateKey, RsaPublicKey};
use serde::Deserialize;
use sha2::Sha256;
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use x509_cert::der::{DecodePem, Encode};
use x509_cert::Certificate;

use super::wire;
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

const ID_HEADER: &str = "PAYPAL-TRANSMISSION-ID";
const TIME_HEADER: &str = "PAYPAL-TRANSMISSION-TIME";
const SIG_HEADER: &str = "PAYPAL-TRANSMISSION-SIG";
const ALGO_HEADER: &str = "PAYPAL-AUTH-ALGO";
const ALGO: &str = "SHA256withRSA";

/// `[signature] scheme = "paypal"`; `webhook_id` is per account, so a
/// source sets it through `auth`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PaypalConfig {
    pub webhook_id: Option<String>,
    #[serde(default = "default_tolerance")]
    pub tolerance_secs: u64,
}

fn default_tolerance() -> u64 {
    300
}

struct Cert {
    key: VerifyingKey<Sha256>,
    not_before: i64,
    not_after: i64,
}

/// The certificates and private keys in one PEM secret.
fn parse_secret(
    index: usize,
    secret: &str,
) -> Result<(Vec<Cert>, Option<RsaPrivateKey>), KeyError> {
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "PEM certificate of PayPal's webhook signing key",
        reason,
    };
    let mut certs = Vec::new();
    let mut private = None;
    for block in pem_blocks(secret) {
        if block.starts_with("-----BEGIN CERTIFICATE-----") {
            let cert = Certificate::from_pem(block.as_bytes())
                .map_err(|_| invalid("a certificate does not parse"))?;
            let spki = cert
                .tbs_certificate
                .subject_public_key_info
                .to_der()
                .map_err(|_| invalid("its public key does not encode"))?;
            let public = RsaPublicKey::from_public_key_der(&spki)
                .map_err(|_| invalid("its public key is not RSA"))?;
            let validity = &cert.tbs_certificate.validity;
            certs.push(Cert {
                key: VerifyingKey::<Sha256>::new(public),
                not_before: validity.not_before.to_unix_duration().as_secs() as i64,
                not_after: validity.not_after.to_unix_duration().as_secs() as i64,
            });
        } else if block.starts_with("-----BEGIN PRIVATE KEY-----") {
            private = Some(
                RsaPrivateKey::from_pkcs8_pem(block)
                    .map_err(|_| invalid("its private key does not parse"))?,
            );
        }
    }
    if certs.is_empty() && private.is_none() {
        return Err(invalid("it holds no PEM certificate"));
    }
    Ok((certs, private))
}

/// Each `-----BEGIN …-----` … `-----END …-----` block of `text`.
fn pem_blocks(text: &str) -> Vec<&str> {
    const END: &str = "-----END ";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let from = &rest[start..];
        let Some(end_at) = from.find(END) else {
            break;
        };
        let Some(close) = from[end_at + END.len()..].find("-----") else {
            break;
        };
        let end = end_at + END.len() + close + 5;
        blocks.push(&from[..end]);
        rest = &from[end..];
    }
    blocks
}

fn webhook_id(config: &PaypalConfig) -> Result<&str, KeyError> {
    match config.webhook_id.as_deref() {
        Some(id) if !id.trim().is_empty() => Ok(id.trim()),
        _ => Err(KeyError::Config(
            "paypal: set the webhook id on the source: auth = { scheme = \"paypal\", webhook_id = \"…\" }"
                .into(),
        )),
    }
}

/// What PayPal signs.
fn message(transmission_id: &str, time: &str, webhook_id: &str, body: &[u8]) -> String {
    format!(
        "{transmission_id}|{time}|{webhook_id}|{}",
        crc32fast::hash(body)
    )
}

pub(super) struct PaypalVerifier {
    webhook_id: String,
    tolerance_secs: u64,
    certs: Vec<Cert>,
}

impl PaypalVerifier {
    pub(super) fn new(config: &PaypalConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let webhook_id = webhook_id(config)?.to_owned();
        let mut certs = Vec::new();
        for (i, s) in secrets.iter().enumerate() {
            certs.extend(parse_secret(i + 1, s)?.0);
        }
        if certs.is_empty() {
            return Err(KeyError::InvalidSecret {
                index: 1,
                expected: "PEM certificate of PayPal's webhook signing key",
                reason: "no certificate is configured",
            });
        }
        Ok(PaypalVerifier {
            webhook_id,
            tolerance_secs: config.tolerance_secs,
            certs,
        })
    }

    pub(super) fn key_count(&self) -> usize {
        self.certs.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>, now: i64) -> Result<Verified, VerifyError> {
        let id = wire::required_header(req.headers, ID_HEADER)?;
        let time = wire::required_header(req.headers, TIME_HEADER)?;
        let encoded = wire::required_header(req.headers, SIG_HEADER)?;
        if let Some(algo) = req.headers.get(ALGO_HEADER) {
            if !algo.trim().eq_ignore_ascii_case(ALGO) {
                return Err(VerifyError::InvalidSignature);
            }
        }
        if encoded.len() > wire::MAX_HEADER_LEN || id.len() > 256 || time.len() > 64 {
            return Err(VerifyError::InvalidSignature);
        }
        let bytes = wire::decode_base64(encoded).ok_or(VerifyError::InvalidSignature)?;
        let signature =
            Signature::try_from(bytes.as_slice()).map_err(|_| VerifyError::InvalidSignature)?;
        let sent_at = OffsetDateTime::parse(time, &Rfc3339)
            .map_err(|_| VerifyError::InvalidSignature)?
            .unix_timestamp();
        let message = message(id, time, &self.webhook_id, req.body);
        let ok = self.certs.iter().fold(false, |ok, cert| {
            let valid = (cert.not_before..=cert.not_after).contains(&now);
            ok | (valid && cert.key.verify(message.as_bytes(), &signature).is_ok())
        });
        if !ok {
            return Err(VerifyError::InvalidSignature);
        }
        wire::check_tolerance(sent_at, now, self.tolerance_secs)?;
        Ok(Verified::new(Some(sent_at)))
    }
}

/// Signs as PayPal would, with the `PRIVATE KEY` in `secret`; the
/// transmission id is `id`, the time `timestamp`.
pub(super) fn sign(
    config: &PaypalConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<SignedRequest, KeyError> {
    let webhook_id = webhook_id(config)?;
    let (_, private) = parse_secret(1, secret)?;
    let private = private.ok_or(KeyError::CannotSign(
        "signing needs a PRIVATE KEY block (PayPal's key; tests only)",
    ))?;
    let time = OffsetDateTime::from_unix_timestamp(timestamp)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .ok_or(KeyError::CannotSign("the timestamp is out of range"))?;
    let signature =
        SigningKey::<Sha256>::new(private).sign(message(id, &time, webhook_id, body).as_bytes());
    Ok(SignedRequest {
        headers: vec![
            (ID_HEADER.to_owned(), id.to_owned()),
            (TIME_HEADER.to_owned(), time),
            (
                SIG_HEADER.to_owned(),
                wire::encode_base64(&signature.to_bytes()),
            ),
            (ALGO_HEADER.to_owned(), ALGO.to_owned()),
        ],
        path_token: None,
    })
}

/// A PayPal-SDK-checked signature (see tests/vectors/README.md).
#[cfg(test)]
pub(super) mod vector {
    pub(in crate::verify) const CERT: &str =
        include_str!("../../tests/vectors/paypal_test_cert.pem");
    pub(in crate::verify) const KEY: &str = include_str!("../../tests/vectors/paypal_test_key.pem");
    pub(in crate::verify) const BODY: &[u8] =
        include_bytes!("../../providers/paypal/fixtures/PAYMENT.CAPTURE.COMPLETED.json");
    pub(in crate::verify) const TID: &str = "7f1e4b20-8d2c-11f0-9f6a-5b1c2d3e4f50";
    pub(in crate::verify) const TIME: &str = "2026-11-28T17:36:03Z";
    pub(in crate::verify) const WEBHOOK_ID: &str = "5GP028458E2496506";
    /// RSA-signed with tests/vectors/paypal_test_key.pem over the string
    /// PyPI paypalrestsdk 1.13.3 `WebhookEvent._get_expected_sig` builds;
    /// its `WebhookEvent._verify_signature(..., cert, sig, "sha256")`
    /// returns True for it (and False for another webhook id or body).
    pub(in crate::verify) const SIG: &str = "NGpBBDiTTkQZ5DDiI4UpxysODJ590LK6TUU10mVSR1+2TfVbg+hVPodZDHREAlGQDnxsZzjPqxWXhTU6Xg3VncZAMYc4qrIywAOV3CTO9KZRNy818aVSZB7L2hpdbrNCi4xdgowJMj9my1cri1/Ptpjv6EijnJceca8p28dFy0vp35JPcwTP5sQDp50F2wnfHu0SICXrLNoPQ6l7RuoyuZC2wQiB1uS81C78hGSNp/8KhmhVYC4h6SF/hsEIfL+rHa52MJjQbg8Ml6JVnvcmYditLnbuoG83d2owrFdkbKmxcdHRDt5hYnrvXOOHIclCylIWfXlDtTqt35Lo7OEsQw==";
    /// 2026-11-28T17:36:03Z
    pub(in crate::verify) const NOW: i64 = 1_795_887_363;
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    use super::vector::*;

    fn config(webhook_id: &str) -> PaypalConfig {
        PaypalConfig {
            webhook_id: Some(webhook_id.into()),
            tolerance_secs: 300,
        }
    }

    fn check(
        webhook_id: &str,
        secret: &str,
        body: &[u8],
        sig: &str,
        now: i64,
    ) -> Result<Verified, VerifyError> {
        let v = Verifier::new(
            &SchemeConfig::Paypal(config(webhook_id)),
            &[SecretString::from(secret.to_owned())],
        )
        .unwrap();
        let mut h = Headers::new();
        h.push(ID_HEADER, TID);
        h.push(TIME_HEADER, TIME);
        h.push(SIG_HEADER, sig);
        h.push(ALGO_HEADER, ALGO);
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
    fn paypal_crc_matches_the_sdk_and_the_message_layout() {
        // paypalrestsdk test/unit_tests/notifications_test.py's body has
        // crc32 2771810304 (shared/providers-research.md §2.2); here the
        // fixture's, as binascii.crc32 computes it.
        assert_eq!(crc32fast::hash(BODY), 5_900_106);
        assert_eq!(
            message(TID, TIME, WEBHOOK_ID, BODY),
            "7f1e4b20-8d2c-11f0-9f6a-5b1c2d3e4f50|2026-11-28T17:36:03Z|5GP028458E2496506|5900106"
        );
    }

    #[test]
    fn paypal_sdk_checked_signature_verifies_for_our_webhook_only() {
        assert_eq!(
            TIME,
            OffsetDateTime::from_unix_timestamp(NOW)
                .unwrap()
                .format(&Rfc3339)
                .unwrap()
        );
        assert!(check(WEBHOOK_ID, CERT, BODY, SIG, NOW).is_ok());
        // Another webhook's event, another body, a stale transmission.
        for (wid, body, now, err) in [
            ("OTHERWEBHOOK", BODY, NOW, VerifyError::InvalidSignature),
            (WEBHOOK_ID, &b"{}"[..], NOW, VerifyError::InvalidSignature),
            (
                WEBHOOK_ID,
                BODY,
                NOW + 301,
                VerifyError::TimestampOutOfTolerance,
            ),
        ] {
            assert_eq!(check(wid, CERT, body, SIG, now).unwrap_err(), err);
        }
        // A certificate past its validity (2035) verifies nothing.
        assert_eq!(
            check(WEBHOOK_ID, CERT, BODY, SIG, 2_100_000_000).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(WEBHOOK_ID, CERT, BODY, "bm90IGEgc2lnbmF0dXJl", NOW).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn paypal_sign_round_trips_and_config_is_required() {
        let pair = format!("{CERT}{KEY}");
        let signed = sign(&config(WEBHOOK_ID), &pair, BODY, NOW, TID).unwrap();
        // PKCS#1 v1.5 is deterministic: the same signature as the vector.
        assert_eq!(signed.headers[2].1, SIG);
        assert!(sign(&config(WEBHOOK_ID), CERT, BODY, NOW, TID).is_err());
        let none = PaypalConfig::default();
        assert!(matches!(
            Verifier::new(
                &SchemeConfig::Paypal(none),
                &[SecretString::from(CERT.to_owned())]
            ),
            Err(KeyError::Config(_))
        ));
        assert!(Verifier::new(
            &SchemeConfig::Paypal(config(WEBHOOK_ID)),
            &[SecretString::from("not pem".to_owned())]
        )
        .is_err());
    }
}
