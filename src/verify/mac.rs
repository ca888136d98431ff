//! Keyed HMAC state for the three hash functions the schemes use, and the
//! constant-time "does any candidate match" check.
//!
//! Keys are turned into HMAC states once, at start-up; a request clones the
//! state instead of re-keying. This is the only file that touches the `hmac`
//! crate (spelled `::hmac` because a sibling module has the same name).

use ::hmac::digest::InvalidLength;
use ::hmac::{Hmac, Mac};
use sha1::Sha1;
use sha2::{Sha256, Sha512};
use subtle::{Choice, ConstantTimeEq};

use super::hmac::HmacAlgorithm;

#[derive(Clone)]
pub(super) enum MacKey {
    Sha1(Hmac<Sha1>),
    Sha256(Hmac<Sha256>),
    Sha512(Hmac<Sha512>),
}

impl MacKey {
    /// HMAC accepts keys of any length, so the error cannot happen in
    /// practice; it is returned rather than unwrapped so no input can panic.
    pub(super) fn new(algorithm: HmacAlgorithm, key: &[u8]) -> Result<Self, InvalidLength> {
        Ok(match algorithm {
            HmacAlgorithm::Sha1 => MacKey::Sha1(Hmac::new_from_slice(key)?),
            HmacAlgorithm::Sha256 => MacKey::Sha256(Hmac::new_from_slice(key)?),
            HmacAlgorithm::Sha512 => MacKey::Sha512(Hmac::new_from_slice(key)?),
        })
    }

    /// The MAC of the concatenation of `parts`, fed piecewise so the body is
    /// never copied.
    pub(super) fn tag(&self, parts: &[&[u8]]) -> Vec<u8> {
        fn run<M: Mac + Clone>(m: &M, parts: &[&[u8]]) -> Vec<u8> {
            let mut m = m.clone();
            for p in parts {
                m.update(p);
            }
            m.finalize().into_bytes().to_vec()
        }
        match self {
            MacKey::Sha1(m) => run(m, parts),
            MacKey::Sha256(m) => run(m, parts),
            MacKey::Sha512(m) => run(m, parts),
        }
    }
}

/// True when `tag` equals any of `candidates`. Each comparison is constant
/// time in the contents, and every candidate is compared, so timing reveals
/// neither how much of a guess was right nor which candidate matched. (A
/// length mismatch is not secret: every MAC of a scheme has the same length.)
pub(super) fn matches_any(tag: &[u8], candidates: &[Vec<u8>]) -> bool {
    let mut found = Choice::from(0);
    for c in candidates {
        found |= tag.ct_eq(c.as_slice());
    }
    found.into()
}
