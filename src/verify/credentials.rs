//! Static credentials, for senders that do not sign their requests: HTTP
//! Basic auth (Chargebee, Alertmanager, Grafana), a bearer token
//! (Alertmanager's `authorization`, Grafana, New Relic) and a shared token
//! in a named header (Cloudflare's `cf-webhook-auth`, Flutterwave's
//! `verif-hash`, Checkout.com's `Authorization` key). The credential proves
//! who sent the request; nothing authenticates the body, so these schemes are
//! only as strong as TLS and the secrecy of the token, and replays are
//! stopped by the event-id dedupe alone.
//!
//! As for path tokens, only SHA-256 digests of the configured credentials are
//! kept and the presented credential is hashed before a constant-time
//! comparison with every one of them, so response times reveal neither the
//! contents nor the length of a configured secret.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::wire::{self, MAX_HEADER_LEN};
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "basic"`: `Authorization: Basic base64(user:password)`.
/// Each secret is `user:password`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicConfig {}

/// `[signature] scheme = "bearer"`: `Authorization: Bearer <secret>`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BearerConfig {}

/// `[signature] scheme = "header-token"`: the header `header` carries the
/// secret verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HeaderTokenConfig {
    pub header: String,
}

const AUTHORIZATION: &str = "Authorization";

/// Which of the three forms, with what each needs at request time.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Kind {
    Basic,
    Bearer,
    Header(String),
}

impl Kind {
    pub(super) fn basic(_: &BasicConfig) -> Kind {
        Kind::Basic
    }

    pub(super) fn bearer(_: &BearerConfig) -> Kind {
        Kind::Bearer
    }

    pub(super) fn header(c: &HeaderTokenConfig) -> Result<Kind, KeyError> {
        let name = c.header.trim();
        let valid = !name.is_empty()
            && name == c.header
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
        if !valid {
            return Err(KeyError::Config(format!(
                "header-token: header {:?} is not a valid HTTP header name",
                c.header
            )));
        }
        Ok(Kind::Header(name.to_owned()))
    }

    fn header_name(&self) -> &str {
        match self {
            Kind::Basic | Kind::Bearer => AUTHORIZATION,
            Kind::Header(h) => h,
        }
    }

    fn expected(&self) -> &'static str {
        match self {
            Kind::Basic => "basic auth user:password",
            Kind::Bearer => "bearer token",
            Kind::Header(_) => "header token",
        }
    }

    /// Checks a configured secret is something this form can carry, so a
    /// typo is an error at start-up rather than a source that can never
    /// verify. Errors name the secret by position only.
    fn check_secret(&self, index: usize, secret: &str) -> Result<(), KeyError> {
        let invalid = |reason| KeyError::InvalidSecret {
            index,
            expected: self.expected(),
            reason,
        };
        if secret.is_empty() {
            return Err(invalid("it is empty"));
        }
        if secret.len() > MAX_HEADER_LEN {
            return Err(invalid("it is longer than 4096 bytes"));
        }
        match self {
            Kind::Basic => {
                // RFC 7617: the user-id cannot contain a colon, so the first
                // one separates it from the password; no control characters.
                match secret.split_once(':') {
                    Some((user, _)) if !user.is_empty() => {}
                    _ => return Err(invalid("it must be user:password with a non-empty user")),
                }
                if secret.chars().any(char::is_control) {
                    return Err(invalid("it contains control characters"));
                }
            }
            Kind::Bearer => {
                if !secret.bytes().all(|b| b.is_ascii_graphic()) {
                    return Err(invalid(
                        "only visible ASCII characters, no spaces, are allowed",
                    ));
                }
            }
            Kind::Header(_) => {
                let printable = secret.bytes().all(|b| b == b' ' || b.is_ascii_graphic());
                if !printable || secret.trim() != secret {
                    return Err(invalid(
                        "only visible ASCII characters and inner spaces are allowed",
                    ));
                }
            }
        }
        Ok(())
    }

    /// The credential in a header value, or `None` when the value is not of
    /// this form (another auth scheme, undecodable base64).
    fn credential(&self, value: &str) -> Option<Vec<u8>> {
        match self {
            Kind::Basic => {
                let encoded = auth_param(value, "Basic")?;
                wire::decode_base64(encoded)
            }
            Kind::Bearer => Some(auth_param(value, "Bearer")?.as_bytes().to_vec()),
            Kind::Header(_) => Some(value.as_bytes().to_vec()),
        }
    }

    fn header_value(&self, secret: &str) -> String {
        match self {
            Kind::Basic => format!("Basic {}", wire::encode_base64(secret.as_bytes())),
            Kind::Bearer => format!("Bearer {secret}"),
            Kind::Header(_) => secret.to_owned(),
        }
    }
}

/// `<scheme> <param>` with the scheme compared case-insensitively (RFC 9110
/// §11.1) and any run of spaces between the two.
fn auth_param<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (name, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (name.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

fn digest(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub(super) struct CredentialsVerifier {
    kind: Kind,
    digests: Vec<[u8; 32]>,
}

impl CredentialsVerifier {
    pub(super) fn new(kind: Kind, secrets: &[&str]) -> Result<Self, KeyError> {
        let digests = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| kind.check_secret(i + 1, s).map(|()| digest(s.as_bytes())))
            .collect::<Result<_, _>>()?;
        Ok(CredentialsVerifier { kind, digests })
    }

    pub(super) fn key_count(&self) -> usize {
        self.digests.len()
    }

    pub(super) fn scheme_name(&self) -> &'static str {
        match self.kind {
            Kind::Basic => "basic",
            Kind::Bearer => "bearer",
            Kind::Header(_) => "header-token",
        }
    }

    pub(super) fn verify(&self, req: &RequestView<'_>) -> Result<Verified, VerifyError> {
        let value = wire::required_header(req.headers, self.kind.header_name())?;
        let presented = self
            .kind
            .credential(value)
            .ok_or(VerifyError::InvalidSignature)?;
        let presented = digest(&presented);
        let mut found = Choice::from(0);
        for d in &self.digests {
            found |= presented.ct_eq(d);
        }
        if bool::from(found) {
            Ok(Verified::new(None))
        } else {
            Err(VerifyError::InvalidSignature)
        }
    }
}

pub(super) fn sign(kind: Kind, secret: &str) -> Result<SignedRequest, KeyError> {
    kind.check_secret(1, secret)?;
    Ok(SignedRequest {
        headers: vec![(kind.header_name().to_owned(), kind.header_value(secret))],
        path_token: None,
    })
}

/// The header that carries a secret in clear for this form: never to be
/// stored or logged.
pub(super) fn secret_header(kind: &Kind) -> &str {
    kind.header_name()
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    fn verifier(scheme: SchemeConfig, secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&scheme, &secrets).unwrap()
    }

    fn check(v: &Verifier, headers: &[(&str, &str)]) -> Result<Verified, VerifyError> {
        let mut h = Headers::new();
        for (n, val) in headers {
            h.push(n, val);
        }
        v.verify(
            &RequestView {
                headers: &h,
                body: b"{}",
                path_token: None,
                url: None,
            },
            0,
        )
    }

    fn basic() -> SchemeConfig {
        SchemeConfig::Basic(BasicConfig {})
    }

    fn bearer() -> SchemeConfig {
        SchemeConfig::Bearer(BearerConfig {})
    }

    fn cloudflare() -> SchemeConfig {
        SchemeConfig::HeaderToken(HeaderTokenConfig {
            header: "cf-webhook-auth".to_owned(),
        })
    }

    #[test]
    fn basic_rfc7617_example_verifies() {
        // RFC 7617 §2: Aladdin / open sesame.
        let v = verifier(basic(), &["Aladdin:open sesame"]);
        let ok = check(
            &v,
            &[("Authorization", "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")],
        )
        .unwrap();
        assert_eq!(ok.timestamp, None);
        // The scheme name is case-insensitive; padding is optional.
        assert!(check(
            &v,
            &[("authorization", "basic  QWxhZGRpbjpvcGVuIHNlc2FtZQ")]
        )
        .is_ok());
        let signed = sign(Kind::Basic, "Aladdin:open sesame").unwrap();
        assert_eq!(
            signed.headers,
            vec![(
                "Authorization".to_owned(),
                "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==".to_owned()
            )]
        );
    }

    #[test]
    fn basic_wrong_or_other_scheme_is_invalid_and_absent_is_missing() {
        let v = verifier(basic(), &["Aladdin:open sesame"]);
        assert_eq!(check(&v, &[]).unwrap_err(), VerifyError::MissingSignature);
        assert_eq!(
            check(&v, &[("Authorization", " ")]).unwrap_err(),
            VerifyError::MissingSignature
        );
        for bad in [
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZg==", // open sesamf
            "Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=!",
            "Basic ",
            "Basic",
            "Bearer Aladdin:open sesame",
            "QWxhZGRpbjpvcGVuIHNlc2FtZQ==",
            "Basic YWxhZGRpbjpvcGVuIHNlc2FtZQ==", // aladdin
        ] {
            assert_eq!(
                check(&v, &[("Authorization", bad)]).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
    }

    #[test]
    fn basic_any_rotated_secret_verifies() {
        let v = verifier(basic(), &["hookgate:old-password", "hookgate:new-password"]);
        for secret in ["hookgate:old-password", "hookgate:new-password"] {
            let signed = sign(Kind::Basic, secret).unwrap();
            let (n, val) = &signed.headers[0];
            assert!(check(&v, &[(n, val)]).is_ok(), "{secret}");
        }
        let other = sign(Kind::Basic, "hookgate:other").unwrap();
        let (n, val) = &other.headers[0];
        assert_eq!(
            check(&v, &[(n, val)]).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn bearer_right_wrong_missing_and_rotated() {
        let v = verifier(bearer(), &["old-token", "new-token"]);
        assert!(check(&v, &[("Authorization", "Bearer new-token")]).is_ok());
        assert!(check(&v, &[("Authorization", "bearer old-token")]).is_ok());
        assert_eq!(check(&v, &[]).unwrap_err(), VerifyError::MissingSignature);
        for bad in [
            "Bearer new-tokeN",
            "Bearer new-token2",
            "Bearer",
            "new-token",
            "Basic bmV3LXRva2Vu",
            "Token new-token",
        ] {
            assert_eq!(
                check(&v, &[("Authorization", bad)]).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        assert_eq!(
            sign(Kind::Bearer, "new-token").unwrap().headers,
            vec![("Authorization".to_owned(), "Bearer new-token".to_owned())]
        );
    }

    #[test]
    fn header_token_right_wrong_missing_and_rotated() {
        let v = verifier(cloudflare(), &["cf-old-secret", "cf-new secret"]);
        assert!(check(&v, &[("cf-webhook-auth", "cf-new secret")]).is_ok());
        assert!(check(&v, &[("CF-Webhook-Auth", "cf-old-secret")]).is_ok());
        assert_eq!(check(&v, &[]).unwrap_err(), VerifyError::MissingSignature);
        // The token in another header does not count.
        assert_eq!(
            check(&v, &[("Authorization", "cf-new secret")]).unwrap_err(),
            VerifyError::MissingSignature
        );
        // Surrounding whitespace is trimmed, as for every header value.
        assert!(check(&v, &[("cf-webhook-auth", " cf-new secret ")]).is_ok());
        for bad in ["cf-new", "CF-NEW SECRET", "Bearer cf-new secret"] {
            assert_eq!(
                check(&v, &[("cf-webhook-auth", bad)]).unwrap_err(),
                VerifyError::InvalidSignature,
                "{bad}"
            );
        }
        let long = "x".repeat(MAX_HEADER_LEN + 1);
        assert_eq!(
            check(&v, &[("cf-webhook-auth", &long)]).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let signed = sign(
            Kind::header(&HeaderTokenConfig {
                header: "verif-hash".into(),
            })
            .unwrap(),
            "abc",
        )
        .unwrap();
        assert_eq!(
            signed.headers,
            vec![("verif-hash".to_owned(), "abc".to_owned())]
        );
    }

    #[test]
    fn credentials_unusable_secrets_are_key_errors_naming_the_index() {
        let cases: [(SchemeConfig, &[&str]); 3] = [
            (basic(), &["", "nocolon", ":s3cret", "user:pa\nss"]),
            (bearer(), &["", "has space", "caf\u{e9}", "tab\t"]),
            (
                cloudflare(),
                &["", " leading", "trailing ", "new\nline", "caf\u{e9}"],
            ),
        ];
        for (scheme, bads) in cases {
            for bad in bads {
                let secrets: Vec<SecretString> = vec!["user:ok-token".into(), (*bad).into()];
                let err = Verifier::new(&scheme, &secrets).unwrap_err();
                let msg = err.to_string();
                assert!(msg.starts_with("secret #2 "), "{msg}");
                if !bad.is_empty() {
                    assert!(!msg.contains(bad), "{msg}");
                }
            }
        }
    }

    #[test]
    fn header_token_invalid_header_names_are_config_errors() {
        for bad in ["", " x", "has space", "a:b", "caf\u{e9}"] {
            let scheme = SchemeConfig::HeaderToken(HeaderTokenConfig {
                header: bad.to_owned(),
            });
            let err = Verifier::new(&scheme, &["t".into()]).unwrap_err();
            assert!(matches!(err, KeyError::Config(_)), "{bad:?}");
        }
    }
}
