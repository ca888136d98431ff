//! The path-token scheme, for senders that do not sign at all (DNSimple,
//! Alertmanager, most monitoring tools): the source's secret is a token in the
//! URL, `POST /v1/webhooks/{source}/{token}`, and knowing it is the proof.
//!
//! Only SHA-256 digests of the configured tokens are kept, and the request's
//! token is hashed before a constant-time comparison, so neither the contents
//! nor the length of a configured token can be learnt from response times.
//! Tokens are limited to URL-unreserved characters so that the token a sender
//! is given can be put in a path as it is, with no percent-encoding to get
//! wrong.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::{Choice, ConstantTimeEq};

use super::wire::MAX_HEADER_LEN;
use super::{KeyError, RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "path-token"`; it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathTokenConfig {}

pub(super) struct PathTokenVerifier {
    digests: Vec<[u8; 32]>,
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// RFC 3986 unreserved characters: never altered by URL handling.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn check_token(index: usize, secret: &str) -> Result<(), KeyError> {
    let invalid = |reason| KeyError::InvalidSecret {
        index,
        expected: "path token",
        reason,
    };
    if secret.is_empty() {
        return Err(invalid("it is empty"));
    }
    if secret.len() > MAX_HEADER_LEN {
        return Err(invalid("it is longer than 4096 bytes"));
    }
    if !secret.bytes().all(is_unreserved) {
        return Err(invalid(
            "only A-Z, a-z, 0-9, '-', '.', '_' and '~' are allowed",
        ));
    }
    Ok(())
}

impl PathTokenVerifier {
    pub(super) fn new(_config: &PathTokenConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let digests = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| check_token(i + 1, s).map(|()| digest(s)))
            .collect::<Result<_, _>>()?;
        Ok(PathTokenVerifier { digests })
    }

    pub(super) fn key_count(&self) -> usize {
        self.digests.len()
    }

    pub(super) fn verify(&self, req: &RequestView<'_>) -> Result<Verified, VerifyError> {
        let token = req
            .path_token
            .filter(|t| !t.is_empty())
            .ok_or(VerifyError::MissingSignature)?;
        if token.len() > MAX_HEADER_LEN {
            return Err(VerifyError::InvalidSignature);
        }
        let presented = digest(token);
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

pub(super) fn sign(_config: &PathTokenConfig, secret: &str) -> Result<SignedRequest, KeyError> {
    check_token(1, secret)?;
    Ok(SignedRequest {
        headers: Vec::new(),
        path_token: Some(secret.to_owned()),
    })
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    const TOKEN: &str = "k3J9-pQ_x7.Lm~Za0";

    fn verifier(secrets: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = secrets.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::PathToken(PathTokenConfig {}), &secrets).unwrap()
    }

    fn check(v: &Verifier, token: Option<&str>) -> Result<Verified, VerifyError> {
        v.verify(
            &RequestView {
                headers: &Headers::new(),
                body: b"{}",
                path_token: token,
                url: None,
            },
            0,
        )
    }

    #[test]
    fn path_token_right_token_verifies() {
        let ok = check(&verifier(&[TOKEN]), Some(TOKEN)).unwrap();
        assert_eq!(ok.timestamp, None);
    }

    #[test]
    fn path_token_wrong_token_is_invalid() {
        let v = verifier(&[TOKEN]);
        let mut wrong = TOKEN.to_owned().into_bytes();
        wrong[0] ^= 1;
        let wrong = String::from_utf8(wrong).unwrap();
        assert_eq!(
            check(&v, Some(&wrong)).unwrap_err(),
            VerifyError::InvalidSignature
        );
        assert_eq!(
            check(&v, Some(&TOKEN.to_ascii_uppercase())).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn path_token_missing_token_is_missing_signature() {
        let v = verifier(&[TOKEN]);
        assert_eq!(check(&v, None).unwrap_err(), VerifyError::MissingSignature);
        assert_eq!(
            check(&v, Some("")).unwrap_err(),
            VerifyError::MissingSignature
        );
    }

    #[test]
    fn path_token_wrong_length_is_invalid() {
        let v = verifier(&[TOKEN]);
        for t in [
            &TOKEN[..TOKEN.len() - 1],
            &format!("{TOKEN}x"),
            "k",
            &"a".repeat(5000),
        ] {
            assert_eq!(
                check(&v, Some(t)).unwrap_err(),
                VerifyError::InvalidSignature
            );
        }
    }

    #[test]
    fn path_token_any_rotated_token_verifies() {
        let v = verifier(&["old-token", TOKEN]);
        assert!(check(&v, Some("old-token")).is_ok());
        assert!(check(&v, Some(TOKEN)).is_ok());
        assert!(check(&v, Some("other")).is_err());
    }

    #[test]
    fn path_token_sign_returns_the_token_and_no_headers() {
        let signed = sign(&PathTokenConfig {}, TOKEN).unwrap();
        assert!(signed.headers.is_empty());
        assert_eq!(signed.path_token.as_deref(), Some(TOKEN));
    }

    #[test]
    fn path_token_unusable_tokens_are_key_errors() {
        for bad in ["", "has/slash", "has space", "caf\u{e9}", "a?b", "%41"] {
            let secrets: Vec<SecretString> = vec![TOKEN.into(), bad.into()];
            let err =
                Verifier::new(&SchemeConfig::PathToken(PathTokenConfig {}), &secrets).unwrap_err();
            assert!(err.to_string().starts_with("secret #2 "), "{err}");
            assert!(sign(&PathTokenConfig {}, bad).is_err());
        }
    }
}
