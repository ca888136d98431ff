//! `scheme = "none"`: explicitly no authentication. Every request verifies.
//!
//! For senders that can neither sign nor carry a credential (some monitoring
//! tools' fixed webhook forms). It exists so that the absence of
//! authentication is written down in a provider definition rather than
//! implied; anyone who can reach the URL can post events, so such a source
//! belongs behind an IP allowlist, and start-up warns about it (not this
//! module's job). Secrets, if a source configures any, are ignored.

use serde::Deserialize;

use super::{RequestView, SignedRequest, Verified, VerifyError};

/// `[signature] scheme = "none"`; it has no settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoneConfig {}

pub(super) fn verify(_req: &RequestView<'_>) -> Result<Verified, VerifyError> {
    Ok(Verified::new(None))
}

pub(super) fn sign() -> SignedRequest {
    SignedRequest {
        headers: Vec::new(),
        path_token: None,
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::super::{Headers, SchemeConfig, Verifier};
    use super::*;

    fn check(
        v: &Verifier,
        headers: &[(&str, &str)],
        token: Option<&str>,
    ) -> Result<Verified, VerifyError> {
        let mut h = Headers::new();
        for (n, val) in headers {
            h.push(n, val);
        }
        v.verify(
            &RequestView {
                headers: &h,
                body: b"anything",
                path_token: token,
                url: None,
            },
            i64::MIN,
        )
    }

    #[test]
    fn none_verifies_every_request_with_or_without_secrets() {
        let scheme = SchemeConfig::None(NoneConfig {});
        let secrets: [&[SecretString]; 2] = [&[], &["ignored".into(), "also ignored".into()]];
        for secrets in secrets {
            let v = Verifier::new(&scheme, secrets).unwrap();
            assert!(check(&v, &[], None).is_ok());
            assert!(check(&v, &[("Authorization", "Basic garbage")], Some("x")).is_ok());
            assert_eq!(check(&v, &[], None).unwrap().timestamp, None);
        }
        assert_eq!(
            sign(),
            SignedRequest {
                headers: vec![],
                path_token: None
            }
        );
    }
}
