//! Twilio: `X-Twilio-Signature` is base64 HMAC (SHA-1 with the account's
//! Auth Token, or SHA-256 when `X-Twilio-Webhooks-Signature-Settings` names
//! `algorithm=HMAC_SHA256`) of the URL Twilio called followed, for a form
//! POST, by every parameter sorted by name then value as `name` + `value`.
//! For a JSON body the URL carries `bodySHA256=<hex sha256(body)>`: the
//! signature covers the URL only and the body must match that hash.
//!
//! As twilio's own validators do, the URL is tried with and without the
//! scheme's default port (Twilio's signers are inconsistent about it).

use std::collections::BTreeSet;

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::hmac::{mac_key, HmacAlgorithm, KeyEncoding};
use super::mac::{matches_any, MacKey};
use super::wire;
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

const SIGNATURE_HEADER: &str = "X-Twilio-Signature";
const SETTINGS_HEADER: &str = "X-Twilio-Webhooks-Signature-Settings";

/// `[signature] scheme = "twilio"`; nothing to configure.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {}

struct Keys {
    sha1: MacKey,
    sha256: MacKey,
}

fn keys(index: usize, secret: &str) -> Result<Keys, KeyError> {
    Ok(Keys {
        sha1: mac_key(HmacAlgorithm::Sha1, KeyEncoding::Utf8, index, secret)?,
        sha256: mac_key(HmacAlgorithm::Sha256, KeyEncoding::Utf8, index, secret)?,
    })
}

/// The algorithm `X-Twilio-Webhooks-Signature-Settings` names (absent:
/// the Auth Token's SHA-1); `None` for one we don't know.
fn algorithm(settings: Option<&str>) -> Option<HmacAlgorithm> {
    for part in settings.unwrap_or("").split(',') {
        if let Some((name, value)) = part.split_once('=') {
            if name.trim() == "algorithm" && !value.trim().is_empty() {
                return match value.trim().to_ascii_uppercase().as_str() {
                    "HMAC_SHA1" => Some(HmacAlgorithm::Sha1),
                    "HMAC_SHA256" => Some(HmacAlgorithm::Sha256),
                    _ => None,
                };
            }
        }
    }
    Some(HmacAlgorithm::Sha1)
}

/// `url` with the scheme's default port made explicit, and without any
/// port, as the two spellings Twilio may have signed.
fn url_variants(url: &str) -> Option<(String, String)> {
    let (scheme, rest) = url.split_once("://")?;
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let (userinfo, hostport) = match authority.rsplit_once('@') {
        Some((u, h)) => (format!("{u}@"), h),
        None => (String::new(), authority),
    };
    // An IPv6 literal keeps its brackets; a port follows the last ':' after them.
    let host_end = hostport.rfind(']').map_or(0, |i| i + 1);
    let (host, port) = match hostport[host_end..].rfind(':') {
        Some(i) => (
            &hostport[..host_end + i],
            Some(&hostport[host_end + i + 1..]),
        ),
        None => (hostport, None),
    };
    let without = format!("{scheme}://{userinfo}{host}{tail}");
    let with = match port {
        Some(p) => format!("{scheme}://{userinfo}{host}:{p}{tail}"),
        None => {
            let default = if scheme.eq_ignore_ascii_case("https") {
                443
            } else {
                80
            };
            format!("{scheme}://{userinfo}{host}:{default}{tail}")
        }
    };
    Some((with, without))
}

/// The `bodySHA256` query parameter of `url`, if any.
fn body_hash_param(url: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or("");
    form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == "bodySHA256")
        .map(|(_, v)| v.into_owned())
}

/// `url` followed by the form parameters, sorted by name then value, each
/// distinct (name, value) pair once.
fn signed_content(url: &str, form: Option<&[u8]>) -> String {
    let mut s = url.to_owned();
    if let Some(body) = form {
        let pairs: BTreeSet<(String, String)> = form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        for (k, v) in pairs {
            s.push_str(&k);
            s.push_str(&v);
        }
    }
    s
}

pub(super) struct TwilioVerifier {
    keys: Vec<Keys>,
}

impl TwilioVerifier {
    pub(super) fn new(_config: &TwilioConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| keys(i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(TwilioVerifier { keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>) -> Result<Verified, VerifyError> {
        let encoded = wire::required_header(req.headers, SIGNATURE_HEADER)?;
        if encoded.len() > wire::MAX_HEADER_LEN {
            return Err(VerifyError::InvalidSignature);
        }
        let candidate = wire::decode_base64(encoded).ok_or(VerifyError::InvalidSignature)?;
        let algorithm =
            algorithm(req.headers.get(SETTINGS_HEADER)).ok_or(VerifyError::InvalidSignature)?;
        // Without the URL the sender called there is nothing to check.
        let url = req.url.ok_or(VerifyError::InvalidSignature)?;
        let (with_port, without_port) = url_variants(url).ok_or(VerifyError::InvalidSignature)?;
        let (form, body_ok) = match body_hash_param(url) {
            // JSON: the URL is signed, and it names the body's hash.
            Some(expected) => {
                let actual = hex::encode(Sha256::digest(req.body));
                (
                    None,
                    bool::from(actual.as_bytes().ct_eq(expected.as_bytes())),
                )
            }
            None => (Some(req.body), true),
        };
        let contents = [
            signed_content(&without_port, form),
            signed_content(&with_port, form),
        ];
        let candidates = [candidate];
        let mut ok = false;
        for keys in &self.keys {
            let key = match algorithm {
                HmacAlgorithm::Sha256 => &keys.sha256,
                _ => &keys.sha1,
            };
            for content in &contents {
                ok |= matches_any(&key.tag(&[content.as_bytes()]), &candidates);
            }
        }
        if ok && body_ok {
            Ok(Verified::new(None))
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }
}

/// Signs like Twilio's Auth Token (SHA-1) signer: `url` as given, the body
/// as form parameters unless the URL carries `bodySHA256`.
pub(super) fn sign(
    secret: &str,
    body: &[u8],
    url: Option<&str>,
) -> Result<SignedRequest, KeyError> {
    let url = url.ok_or(KeyError::CannotSign(
        "Twilio signs the URL it calls: give the URL",
    ))?;
    let keys = keys(1, secret)?;
    let form = body_hash_param(url).is_none().then_some(body);
    let tag = keys.sha1.tag(&[signed_content(url, form).as_bytes()]);
    Ok(SignedRequest {
        headers: vec![(SIGNATURE_HEADER.to_owned(), wire::encode_base64(&tag))],
        path_token: None,
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    // twilio/twilio-python tests/unit/test_request_validator.py (token
    // "12345"); every value re-checked with PyPI twilio 9.13.0
    // `RequestValidator("12345").validate(...)`.
    const TOKEN: &str = "12345";
    const URL: &str = "https://mycompany.com/myapp.php?foo=1&bar=2";
    const PARAMS: &str = "CallSid=CA1234567890ABCDE&Digits=1234&From=%2B14158675309&To=%2B18005551212&Caller=%2B14158675309";

    fn check(
        url: &str,
        body: &[u8],
        sig: &str,
        settings: Option<&str>,
    ) -> Result<Verified, VerifyError> {
        let v = Verifier::new(
            &SchemeConfig::Twilio(TwilioConfig {}),
            &[SecretString::from(TOKEN.to_owned())],
        )
        .unwrap();
        let mut h = Headers::new();
        h.push("X-Twilio-Signature", sig);
        if let Some(s) = settings {
            h.push(SETTINGS_HEADER, s);
        }
        v.verify(
            &RequestView {
                headers: &h,
                body,
                path_token: None,
                url: Some(url),
            },
            0,
        )
    }

    #[test]
    fn twilio_official_form_vectors_verify() {
        let p = PARAMS.as_bytes();
        assert!(check(URL, p, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", None).is_ok());
        // Signed with the default port, received without it, and back.
        assert!(check(URL, p, "kvajT1Ptam85bY51eRf/AJRuM3w=", None).is_ok());
        assert!(check(
            "https://mycompany.com:443/myapp.php?foo=1&bar=2",
            p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            None
        )
        .is_ok());
        assert!(check(
            "http://mycompany.com/myapp.php?foo=1&bar=2",
            p,
            "0ZXoZLH/DfblKGATFgpif+LLRf4=",
            None
        )
        .is_ok());
        assert!(check(
            "http://mycompany.com:1234/myapp.php?foo=1&bar=2",
            p,
            "Zmvh+3yNM1Phv2jhDCwEM3q5ebU=",
            None
        )
        .is_ok());
        // Duplicate keys sort by value.
        assert!(check(
            URL,
            b"Sid=CA123&SidAccount=AC123&Digits=5678&Digits=1234",
            "IK+Dwps556ElfBT0I3Rgjkr1wJU=",
            None
        )
        .is_ok());
        // Another parameter value, another URL, or an unknown algorithm fail.
        let tampered = PARAMS.replace("1234&", "1235&");
        for (url, body) in [
            (URL, tampered.as_bytes()),
            ("https://mycompany.com/myapp.php?foo=1&bar=3", p),
        ] {
            assert_eq!(
                check(url, body, "RSOYDt4T1cUTdK1PDd93/VVr8B8=", None).unwrap_err(),
                VerifyError::InvalidSignature
            );
        }
        assert!(check(
            URL,
            p,
            "RSOYDt4T1cUTdK1PDd93/VVr8B8=",
            Some("algorithm=HMAC_MD5")
        )
        .is_err());
        assert_eq!(
            check(URL, p, "", None).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn twilio_official_json_vector_checks_the_body_hash() {
        let body = br#"{"property": "value", "boolean": true}"#;
        let url = format!(
            "{URL}&bodySHA256=0a1ff7634d9ab3b95db5c9a2dfe9416e41502b283a80c7cf19632632f96e6620"
        );
        assert!(check(&url, body, "a9nBmqA0ju/hNViExpshrM61xv4=", None).is_ok());
        // The URL is signed, but the body must still match its hash.
        assert_eq!(
            check(
                &url,
                br#"{"property": "value", "boolean": false}"#,
                "a9nBmqA0ju/hNViExpshrM61xv4=",
                None
            )
            .unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn twilio_sha256_shared_key_and_sign_round_trip() {
        let signed = sign(TOKEN, PARAMS.as_bytes(), Some(URL)).unwrap();
        assert_eq!(signed.headers[0].1, "RSOYDt4T1cUTdK1PDd93/VVr8B8=");
        // PyPI twilio 9.13.0:
        // RequestValidator("12345").compute_signature(URL, params, "HMAC_SHA256")
        let sha256 = "033hgUJA9M/hXIZsYjwkerEP/DBm35nEri5FhCYjA5s=";
        assert!(check(
            URL,
            PARAMS.as_bytes(),
            sha256,
            Some("key=k1,algorithm=HMAC_SHA256")
        )
        .is_ok());
        assert!(check(URL, PARAMS.as_bytes(), sha256, None).is_err());
    }

    #[test]
    fn twilio_url_variants_keep_userinfo_ipv6_and_tail() {
        assert_eq!(
            url_variants("https://u:p@[::1]:8443/x?y=1").unwrap(),
            (
                "https://u:p@[::1]:8443/x?y=1".into(),
                "https://u:p@[::1]/x?y=1".into()
            )
        );
        assert_eq!(
            url_variants("http://h/x").unwrap(),
            ("http://h:80/x".into(), "http://h/x".into())
        );
        assert!(url_variants("no-scheme").is_none());
    }
}
