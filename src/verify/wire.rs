//! Wire-level rules shared by every scheme: how much of a header we are
//! willing to read, how many signatures we try, how a timestamp is parsed and
//! checked against the tolerance window, and how base64 is decoded.
//!
//! Keeping these in one place means every scheme bounds its work the same way
//! and treats the same malformed input with the same error.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine;

use super::{Headers, VerifyError};

/// Longest header value (or sum of repeated values) we read. Real signature
/// headers are far shorter even with several rotated signatures; anything
/// longer is an attempt to make us do work.
pub(super) const MAX_HEADER_LEN: usize = 4096;

/// How many candidate signatures of the expected kind we try per request.
/// Senders send one, or two while rotating.
pub(super) const MAX_SIGNATURES: usize = 16;

/// Lenient base64 for secrets and signatures: padding optional and non-zero
/// trailing bits accepted. The official Standard Webhooks libraries accept
/// unpadded secrets whose last character carries such bits (their tests use
/// `MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaS`), and Python's decoder ignores them.
/// Leniency on a signature is harmless: a different spelling of the right MAC
/// is still the right MAC.
const LENIENT_BASE64: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

pub(super) fn decode_base64(s: &str) -> Option<Vec<u8>> {
    LENIENT_BASE64.decode(s).ok()
}

/// Standard padded base64, as every sender emits it.
pub(super) fn encode_base64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// The first value of `name`, trimmed. Absent or blank is
/// `MissingSignature`; longer than [`MAX_HEADER_LEN`] is `InvalidSignature`.
pub(super) fn required_header<'a>(
    headers: &'a Headers,
    name: &str,
) -> Result<&'a str, VerifyError> {
    let value = headers
        .get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .ok_or(VerifyError::MissingSignature)?;
    if value.len() > MAX_HEADER_LEN {
        return Err(VerifyError::InvalidSignature);
    }
    Ok(value)
}

/// Unix seconds in canonical decimal form: ASCII digits, no sign, no leading
/// zero, fits in `i64`. Anything else is not what a sender signed, so callers
/// reject it as `InvalidSignature`. Requiring the canonical form also means the
/// string we put into the signed content is exactly the one the SDKs produce
/// when they format the integer.
pub(super) fn parse_timestamp(s: &str) -> Option<i64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !canonical {
        return None;
    }
    s.parse().ok()
}

/// Rejects timestamps more than `tolerance_secs` away from `now` in either
/// direction: too old is a replay, too new is a pre-computed signature or a
/// broken clock.
pub(super) fn check_tolerance(
    timestamp: i64,
    now: i64,
    tolerance_secs: u64,
) -> Result<(), VerifyError> {
    // abs_diff cannot overflow, whatever the two values are.
    if timestamp.abs_diff(now) > tolerance_secs {
        Err(VerifyError::TimestampOutOfTolerance)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_timestamp_accepts_only_canonical_decimal() {
        assert_eq!(parse_timestamp("1614265330"), Some(1614265330));
        assert_eq!(parse_timestamp("0"), Some(0));
        for bad in [
            "",
            "-1",
            "+1",
            "01",
            " 1",
            "1 ",
            "1e9",
            "0x10",
            "１",
            "99999999999999999999",
        ] {
            assert_eq!(parse_timestamp(bad), None, "{bad:?}");
        }
        assert_eq!(parse_timestamp("9223372036854775807"), Some(i64::MAX));
        assert_eq!(parse_timestamp("9223372036854775808"), None);
    }

    #[test]
    fn check_tolerance_is_symmetric_and_inclusive() {
        assert!(check_tolerance(1000, 1300, 300).is_ok());
        assert!(check_tolerance(1000, 700, 300).is_ok());
        assert_eq!(
            check_tolerance(1000, 1301, 300),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            check_tolerance(1000, 699, 300),
            Err(VerifyError::TimestampOutOfTolerance)
        );
        assert_eq!(
            check_tolerance(i64::MAX, i64::MIN, u64::MAX - 1),
            Err(VerifyError::TimestampOutOfTolerance)
        );
    }

    #[test]
    fn decode_base64_accepts_missing_padding_and_rejects_garbage() {
        assert_eq!(decode_base64("YQ==").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("YQ").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("YR").as_deref(), Some(&b"a"[..]));
        assert_eq!(decode_base64("Y"), None);
        assert_eq!(decode_base64("Y!Q="), None);
    }
}
