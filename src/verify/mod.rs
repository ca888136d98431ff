//! Signature verification for inbound webhooks: decides whether a request
//! really comes from the sender that holds a source's secret.
//!
//! The module is pure. It does no I/O and never reads the clock: the caller
//! passes the raw body bytes, the headers, the path token and `now`, so
//! tolerance windows are tested with fixed times. A [`Verifier`] is built once
//! at start-up from a provider's [`SchemeConfig`] and a source's secrets; the
//! only way to obtain a [`Verified`] proof is a successful
//! [`Verifier::verify`]. [`sign`] is the sender's side of every scheme, used
//! by `hookgate sign` and by tests. Nothing here knows about HTTP status
//! codes: [`VerifyError::code`] gives a stable machine-readable code and the
//! HTTP layer maps it.
//!
//! Submodules are referred to with relative paths only, so this directory
//! also builds as a crate of its own.

mod adyen;
mod braintree;
mod credentials;
mod ed25519;
mod hmac;
mod mac;
mod none;
mod path_token;
mod paypal;
mod standard_webhooks;
mod stripe;
mod timestamped;
mod twilio;
mod wire;

use std::fmt;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

pub use self::adyen::AdyenItemsConfig;
pub use self::braintree::{signature_for as braintree_signature, BraintreeConfig};
pub use self::credentials::{BasicConfig, BearerConfig, HeaderTokenConfig};
pub use self::ed25519::Ed25519Config;
pub use self::hmac::{HmacAlgorithm, HmacConfig, KeyEncoding, SignatureEncoding};
pub use self::none::NoneConfig;
pub use self::path_token::PathTokenConfig;
pub use self::paypal::PaypalConfig;
pub use self::standard_webhooks::StandardWebhooksConfig;
pub use self::stripe::StripeConfig;
pub use self::timestamped::{TimestampUnit, TimestampedConfig};
pub use self::twilio::TwilioConfig;

/// Case-insensitive header multimap built at the HTTP edge (values that are
/// not valid UTF-8 are dropped by the caller).
///
/// Names are stored lower-cased, in arrival order, so [`Headers::get`] returns
/// the first value a sender put on the wire.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    entries: Vec<(String, String)>,
}

impl Headers {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn push(&mut self, name: &str, value: &str) {
        self.entries
            .push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name`, compared case-insensitively.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in arrival order.
    pub fn get_all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.entries
            .iter()
            .filter(move |(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// All entries with lower-cased names, in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

/// The parts of a request a scheme may need. `body` must be the raw bytes as
/// received: signatures cover bytes, and re-serialized JSON does not match.
pub struct RequestView<'a> {
    pub headers: &'a Headers,
    pub body: &'a [u8],
    /// The `{token}` segment of `POST /v1/webhooks/{source}/{token}`, if any.
    pub path_token: Option<&'a str>,
    /// The URL the sender called, as the sender saw it (scheme, host, path,
    /// query): the configured public URL behind a proxy. Only schemes that
    /// sign the URL (Square, Twilio) read it.
    pub url: Option<&'a str>,
}

/// Deserialized from the `[signature]` table of a provider.toml; `scheme` is
/// the tag (kebab-case).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "scheme", rename_all = "kebab-case", deny_unknown_fields)]
pub enum SchemeConfig {
    Stripe(StripeConfig),
    StandardWebhooks(StandardWebhooksConfig),
    Hmac(HmacConfig),
    /// A timestamp and signatures as `key=value` entries in one header
    /// (Paddle's `ts=…;h1=…`).
    TimestampedHmac(TimestampedConfig),
    PathToken(PathTokenConfig),
    /// `Authorization: Basic`; each secret is `user:password`.
    Basic(BasicConfig),
    /// `Authorization: Bearer <secret>`.
    Bearer(BearerConfig),
    /// A named header carrying the secret verbatim.
    HeaderToken(HeaderTokenConfig),
    /// An Ed25519 signature over a timestamp header and the body (Discord).
    Ed25519(Ed25519Config),
    /// Twilio's URL + sorted form parameters (or URL + body hash).
    Twilio(TwilioConfig),
    /// Braintree's `bt_signature` / `bt_payload` form fields.
    Braintree(BraintreeConfig),
    /// PayPal's RSA signature over ids, time and the body's CRC-32.
    Paypal(PaypalConfig),
    /// Explicitly no authentication: every request verifies.
    None(NoneConfig),
    /// Adyen standard notifications: an HMAC per `notificationItems[]`
    /// entry, inside the body.
    AdyenItems(AdyenItemsConfig),
}

impl SchemeConfig {
    /// The scheme's tag as written in provider.toml.
    pub fn name(&self) -> &'static str {
        match self {
            SchemeConfig::Stripe(_) => "stripe",
            SchemeConfig::StandardWebhooks(_) => "standard-webhooks",
            SchemeConfig::Hmac(_) => "hmac",
            SchemeConfig::TimestampedHmac(_) => "timestamped-hmac",
            SchemeConfig::PathToken(_) => "path-token",
            SchemeConfig::Basic(_) => "basic",
            SchemeConfig::Bearer(_) => "bearer",
            SchemeConfig::HeaderToken(_) => "header-token",
            SchemeConfig::Ed25519(_) => "ed25519",
            SchemeConfig::Twilio(_) => "twilio",
            SchemeConfig::Braintree(_) => "braintree",
            SchemeConfig::Paypal(_) => "paypal",
            SchemeConfig::None(_) => "none",
            SchemeConfig::AdyenItems(_) => "adyen-items",
        }
    }

    /// Whether a source of this scheme needs at least one secret (`none`
    /// does not).
    pub fn needs_secrets(&self) -> bool {
        !matches!(self, SchemeConfig::None(_))
    }

    /// Whether the body is authenticated (a MAC or signature covers it).
    /// The static-credential schemes, path tokens and `none` prove at most
    /// who sent the request, not what it says; Adyen's item MACs cover eight
    /// fields of each item, not the body.
    pub fn authenticates_body(&self) -> bool {
        matches!(
            self,
            SchemeConfig::Stripe(_)
                | SchemeConfig::StandardWebhooks(_)
                | SchemeConfig::Hmac(_)
                | SchemeConfig::TimestampedHmac(_)
                | SchemeConfig::Ed25519(_)
                | SchemeConfig::Twilio(_)
                | SchemeConfig::Braintree(_)
                | SchemeConfig::Paypal(_)
        )
    }

    /// Headers (lower-cased) that carry a secret in clear under this
    /// scheme: they must never be stored, logged or shown. `authorization`
    /// for basic and bearer, the configured header for header-token.
    pub fn secret_headers(&self) -> Vec<String> {
        let kind = match self {
            SchemeConfig::Basic(c) => credentials::Kind::basic(c),
            SchemeConfig::Bearer(c) => credentials::Kind::bearer(c),
            SchemeConfig::HeaderToken(c) => match credentials::Kind::header(c) {
                Ok(kind) => kind,
                // Not a valid header name: no request can carry it.
                Err(_) => return Vec::new(),
            },
            _ => return Vec::new(),
        };
        vec![credentials::secret_header(&kind).to_ascii_lowercase()]
    }
}

/// Proof that a request verified; only this module can construct it (private
/// field).
// `#[non_exhaustive]` would still let the rest of the crate build one; the
// private field is what restricts construction to this module.
#[allow(clippy::manual_non_exhaustive)]
#[derive(Debug, Clone)]
pub struct Verified {
    /// The signed timestamp, for schemes that sign one.
    pub timestamp: Option<i64>,
    _proof: (),
}

impl Verified {
    fn new(timestamp: Option<i64>) -> Self {
        Verified {
            timestamp,
            _proof: (),
        }
    }
}

/// Why a request did not verify. Deliberately coarse: telling a caller which
/// part of a signature was wrong helps only an attacker.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    /// The header (or path token) that should carry the signature, or a
    /// header the signature depends on, is absent or empty.
    #[error("the request carries no signature")]
    MissingSignature,
    /// A signature is present but malformed, oversized, or matches none of
    /// the source's secrets.
    #[error("the request signature is invalid")]
    InvalidSignature,
    /// The signature is authentic but its timestamp is outside the allowed
    /// window (too old or too far in the future).
    #[error("the request timestamp is outside the allowed tolerance")]
    TimestampOutOfTolerance,
}

impl VerifyError {
    /// A stable machine-readable code for API responses and logs.
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::MissingSignature => "missing_signature",
            VerifyError::InvalidSignature => "invalid_signature",
            VerifyError::TimestampOutOfTolerance => "timestamp_out_of_tolerance",
        }
    }
}

/// A secret or a scheme configuration that cannot be used. Messages name a
/// secret by its 1-based position in the source's list ("secret #2") and never
/// contain the secret or any part of it.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("no secret is configured")]
    NoSecrets,
    #[error("secret #{index} is not a valid {expected}: {reason}")]
    InvalidSecret {
        /// 1-based position in the list of secrets.
        index: usize,
        /// What the scheme expects, e.g. "whsec_ key".
        expected: &'static str,
        reason: &'static str,
    },
    #[error("invalid signature configuration: {0}")]
    Config(String),
    #[error("cannot sign: {0}")]
    CannotSign(&'static str),
}

/// Built once at start-up from the provider's scheme and the source's secrets
/// (several while rotating: any one verifying is enough).
pub struct Verifier {
    inner: Inner,
}

enum Inner {
    Stripe(stripe::StripeVerifier),
    StandardWebhooks(standard_webhooks::StandardWebhooksVerifier),
    Hmac(hmac::HmacVerifier),
    Timestamped(timestamped::TimestampedVerifier),
    PathToken(path_token::PathTokenVerifier),
    Credentials(credentials::CredentialsVerifier),
    Ed25519(ed25519::Ed25519Verifier),
    Twilio(twilio::TwilioVerifier),
    Braintree(braintree::BraintreeVerifier),
    Paypal(paypal::PaypalVerifier),
    Adyen(adyen::AdyenVerifier),
    None,
}

impl Verifier {
    pub fn new(scheme: &SchemeConfig, secrets: &[SecretString]) -> Result<Verifier, KeyError> {
        if let SchemeConfig::None(_) = scheme {
            return Ok(Verifier { inner: Inner::None });
        }
        if secrets.is_empty() {
            return Err(KeyError::NoSecrets);
        }
        let secrets: Vec<&str> = secrets.iter().map(|s| s.expose_secret()).collect();
        let inner = match scheme {
            SchemeConfig::Stripe(c) => Inner::Stripe(stripe::StripeVerifier::new(c, &secrets)?),
            SchemeConfig::StandardWebhooks(c) => Inner::StandardWebhooks(
                standard_webhooks::StandardWebhooksVerifier::new(c, &secrets)?,
            ),
            SchemeConfig::Hmac(c) => Inner::Hmac(hmac::HmacVerifier::new(c, &secrets)?),
            SchemeConfig::TimestampedHmac(c) => {
                Inner::Timestamped(timestamped::TimestampedVerifier::new(c, &secrets)?)
            }
            SchemeConfig::PathToken(c) => {
                Inner::PathToken(path_token::PathTokenVerifier::new(c, &secrets)?)
            }
            SchemeConfig::Basic(c) => Inner::Credentials(credentials::CredentialsVerifier::new(
                credentials::Kind::basic(c),
                &secrets,
            )?),
            SchemeConfig::Bearer(c) => Inner::Credentials(credentials::CredentialsVerifier::new(
                credentials::Kind::bearer(c),
                &secrets,
            )?),
            SchemeConfig::HeaderToken(c) => Inner::Credentials(
                credentials::CredentialsVerifier::new(credentials::Kind::header(c)?, &secrets)?,
            ),
            SchemeConfig::Ed25519(c) => Inner::Ed25519(ed25519::Ed25519Verifier::new(c, &secrets)?),
            SchemeConfig::Twilio(c) => Inner::Twilio(twilio::TwilioVerifier::new(c, &secrets)?),
            SchemeConfig::Braintree(c) => {
                Inner::Braintree(braintree::BraintreeVerifier::new(c, &secrets)?)
            }
            SchemeConfig::Paypal(c) => Inner::Paypal(paypal::PaypalVerifier::new(c, &secrets)?),
            SchemeConfig::None(_) => Inner::None,
            SchemeConfig::AdyenItems(c) => Inner::Adyen(adyen::AdyenVerifier::new(c, &secrets)?),
        };
        Ok(Verifier { inner })
    }

    /// Checks `req` against every configured secret; `now_unix` is the
    /// receiver's clock in Unix seconds.
    pub fn verify(&self, req: &RequestView<'_>, now_unix: i64) -> Result<Verified, VerifyError> {
        match &self.inner {
            Inner::Stripe(v) => v.verify(req, now_unix),
            Inner::StandardWebhooks(v) => v.verify(req, now_unix),
            Inner::Hmac(v) => v.verify(req, now_unix),
            Inner::Timestamped(v) => v.verify(req, now_unix),
            Inner::PathToken(v) => v.verify(req),
            Inner::Credentials(v) => v.verify(req),
            Inner::Ed25519(v) => v.verify(req, now_unix),
            Inner::Twilio(v) => v.verify(req),
            Inner::Braintree(v) => v.verify(req),
            Inner::Paypal(v) => v.verify(req, now_unix),
            Inner::Adyen(v) => v.verify(req),
            Inner::None => none::verify(req),
        }
    }

    /// The answer to a sender's verification handshake that is part of the
    /// scheme (Braintree's `bt_challenge`), or `None` when the scheme has
    /// none or the challenge is malformed.
    pub fn challenge(&self, challenge: &str) -> Option<String> {
        match &self.inner {
            Inner::Braintree(v) => v.challenge(challenge),
            _ => None,
        }
    }

    /// The scheme's tag, for logs.
    pub fn scheme_name(&self) -> &'static str {
        match &self.inner {
            Inner::Stripe(_) => "stripe",
            Inner::StandardWebhooks(_) => "standard-webhooks",
            Inner::Hmac(_) => "hmac",
            Inner::Timestamped(_) => "timestamped-hmac",
            Inner::PathToken(_) => "path-token",
            Inner::Credentials(v) => v.scheme_name(),
            Inner::Ed25519(_) => "ed25519",
            Inner::Twilio(_) => "twilio",
            Inner::Braintree(_) => "braintree",
            Inner::Paypal(_) => "paypal",
            Inner::Adyen(_) => "adyen-items",
            Inner::None => "none",
        }
    }

    fn key_count(&self) -> usize {
        match &self.inner {
            Inner::Stripe(v) => v.key_count(),
            Inner::StandardWebhooks(v) => v.key_count(),
            Inner::Hmac(v) => v.key_count(),
            Inner::Timestamped(v) => v.key_count(),
            Inner::PathToken(v) => v.key_count(),
            Inner::Credentials(v) => v.key_count(),
            Inner::Ed25519(v) => v.key_count(),
            Inner::Twilio(v) => v.key_count(),
            Inner::Braintree(v) => v.key_count(),
            Inner::Paypal(v) => v.key_count(),
            Inner::Adyen(v) => v.key_count(),
            Inner::None => 0,
        }
    }
}

// Hand-written so that key material (raw keys, HMAC states, token digests)
// can never reach a log line through `{:?}`.
impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Verifier")
            .field("scheme", &self.scheme_name())
            .field("keys", &self.key_count())
            .finish_non_exhaustive()
    }
}

/// What a sender would send: used by `hookgate sign` and by tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedRequest {
    pub headers: Vec<(String, String)>,
    pub path_token: Option<String>,
}

/// What a sender signs, besides its secret.
#[derive(Debug, Clone, Copy)]
pub struct SignInput<'a> {
    pub body: &'a [u8],
    pub timestamp: i64,
    /// Used only by schemes that sign a message id (Standard Webhooks).
    pub id: &'a str,
    /// The URL the request goes to; needed by schemes that sign it.
    pub url: Option<&'a str>,
}

/// Signs `body` the way a sender using `scheme` and `secret` would. `id` is
/// used only by schemes that sign a message id (Standard Webhooks). For the
/// static-credential schemes "signing" is attaching the credential; for
/// `none` it adds nothing and `secret` is ignored. Schemes that sign the
/// URL need [`sign_request`]; schemes whose signatures live in the body
/// (`adyen-items`) need [`sign_full`].
pub fn sign(
    scheme: &SchemeConfig,
    secret: &str,
    body: &[u8],
    timestamp: i64,
    id: &str,
) -> Result<SignedRequest, KeyError> {
    sign_request(
        scheme,
        secret,
        &SignInput {
            body,
            timestamp,
            id,
            url: None,
        },
    )
}

/// [`sign`] with every input a scheme may sign.
pub fn sign_request(
    scheme: &SchemeConfig,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<SignedRequest, KeyError> {
    let SignInput {
        body,
        timestamp,
        id,
        url,
    } = *input;
    match scheme {
        SchemeConfig::Stripe(c) => stripe::sign(c, secret, body, timestamp),
        SchemeConfig::StandardWebhooks(c) => {
            standard_webhooks::sign(c, secret, body, timestamp, id)
        }
        SchemeConfig::Hmac(c) => hmac::sign(c, secret, body, timestamp, id, url),
        SchemeConfig::TimestampedHmac(c) => timestamped::sign(c, secret, body, timestamp, id, url),
        SchemeConfig::PathToken(c) => path_token::sign(c, secret),
        SchemeConfig::Basic(c) => credentials::sign(credentials::Kind::basic(c), secret),
        SchemeConfig::Bearer(c) => credentials::sign(credentials::Kind::bearer(c), secret),
        SchemeConfig::HeaderToken(c) => credentials::sign(credentials::Kind::header(c)?, secret),
        SchemeConfig::Ed25519(c) => ed25519::sign(c, secret, body, timestamp, id, url),
        SchemeConfig::Twilio(_) => twilio::sign(secret, body, url),
        SchemeConfig::Braintree(_) => braintree::sign(),
        SchemeConfig::Paypal(c) => paypal::sign(c, secret, body, timestamp, id),
        SchemeConfig::None(_) => Ok(none::sign()),
        SchemeConfig::AdyenItems(_) => Err(KeyError::CannotSign(
            "adyen-items signs inside the body; use sign_full",
        )),
    }
}

/// What a sender would send: the body (rewritten only by schemes that sign
/// inside it, `adyen-items`) and the request's headers and path token.
pub fn sign_full(
    scheme: &SchemeConfig,
    secret: &str,
    input: &SignInput<'_>,
) -> Result<(Vec<u8>, SignedRequest), KeyError> {
    match scheme {
        SchemeConfig::AdyenItems(c) => Ok((
            adyen::sign_body(c, secret, input.body)?,
            SignedRequest {
                headers: Vec::new(),
                path_token: None,
            },
        )),
        SchemeConfig::Braintree(_) => Ok((
            braintree::sign_body(secret, input.body)?,
            SignedRequest {
                headers: Vec::new(),
                path_token: None,
            },
        )),
        _ => Ok((input.body.to_vec(), sign_request(scheme, secret, input)?)),
    }
}

#[cfg(test)]
mod provider_vectors;
#[cfg(test)]
mod tests;
