//! Adyen's standard notifications: a JSON body
//! `{"live": …, "notificationItems": [{"NotificationRequestItem": {…}}, …]}`
//! in which every item carries its own HMAC in
//! `additionalData.hmacSignature`, not a header.
//!
//! Each item's MAC is base64 HMAC-SHA256 over eight of its fields joined
//! with `:` — `pspReference`, `originalReference`, `merchantAccountCode`,
//! `merchantReference`, `amount.value`, `amount.currency`, `eventCode`,
//! `success` — an absent field standing as the empty string and nothing
//! escaped, keyed with the hex-decoded HMAC key (Adyen's libraries:
//! `Adyen.util.generate_notification_sig`, Node `HmacValidator`). The
//! request verifies only when every item does: one failing item rejects the
//! whole request, since the items are split into deliveries only after
//! verification. The MACs cover those eight fields and nothing else of an
//! item (not `reason`, `eventDate` or the rest of `additionalData`), so
//! mappings should rely on the signed fields. Nothing time-based is signed;
//! the per-item dedupe key stops replays.
//!
//! Because the signatures live in the body, the sender's side is
//! [`sign_body`], which rewrites it.

use serde::Deserialize;
use serde_json::{Map, Value};

use super::hmac::{mac_key, HmacAlgorithm, KeyEncoding};
use super::mac::{matches_any, MacKey};
use super::wire::{self, MAX_HEADER_LEN};
use super::{KeyError, RequestView, Verified, VerifyError};

/// `[signature] scheme = "adyen-items"`: the secret is the HMAC key as the
/// Customer Area shows it (hex).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdyenItemsConfig {}

/// The signed fields, in signing order, as paths into the item
/// (`amount.value` and `amount.currency` are nested).
const SIGNED_FIELDS: [&[&str]; 8] = [
    &["pspReference"],
    &["originalReference"],
    &["merchantAccountCode"],
    &["merchantReference"],
    &["amount", "value"],
    &["amount", "currency"],
    &["eventCode"],
    &["success"],
];

fn key(index: usize, secret: &str) -> Result<MacKey, KeyError> {
    mac_key(HmacAlgorithm::Sha256, KeyEncoding::Hex, index, secret)
}

/// The `NotificationRequestItem` objects of a notification, or `None` when
/// the body is not one (not JSON, no non-empty `notificationItems`, an item
/// that is not an object).
fn items(payload: &Value) -> Option<Vec<&Map<String, Value>>> {
    let list = payload.get("notificationItems")?.as_array()?;
    if list.is_empty() {
        return None;
    }
    list.iter()
        .map(|wrapper| wrapper.get("NotificationRequestItem")?.as_object())
        .collect()
}

fn items_mut(payload: &mut Value) -> Option<Vec<&mut Map<String, Value>>> {
    let list = payload.get_mut("notificationItems")?.as_array_mut()?;
    if list.is_empty() {
        return None;
    }
    list.iter_mut()
        .map(|wrapper| wrapper.get_mut("NotificationRequestItem")?.as_object_mut())
        .collect()
}

/// The string an item's MAC covers. Strings are taken as they are, numbers
/// and booleans as JSON spells them, absent or null fields as "".
fn signing_string(item: &Map<String, Value>) -> String {
    SIGNED_FIELDS
        .iter()
        .map(|path| {
            let mut found = item.get(path[0]);
            for key in &path[1..] {
                found = found.and_then(|v| v.get(key));
            }
            match found {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            }
        })
        .collect::<Vec<_>>()
        .join(":")
}

pub(super) struct AdyenVerifier {
    keys: Vec<MacKey>,
}

impl AdyenVerifier {
    pub(super) fn new(_: &AdyenItemsConfig, secrets: &[&str]) -> Result<Self, KeyError> {
        let keys = secrets
            .iter()
            .enumerate()
            .map(|(i, s)| key(i + 1, s))
            .collect::<Result<_, _>>()?;
        Ok(AdyenVerifier { keys })
    }

    pub(super) fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// Every item must carry a signature that one of the keys produced. An
    /// item without one makes the request `MissingSignature`; a body that is
    /// not a notification, or a wrong or malformed signature,
    /// `InvalidSignature`.
    pub(super) fn verify(&self, req: &RequestView<'_>) -> Result<Verified, VerifyError> {
        let payload: Value =
            serde_json::from_slice(req.body).map_err(|_| VerifyError::InvalidSignature)?;
        let items = items(&payload).ok_or(VerifyError::InvalidSignature)?;
        let mut signatures = Vec::with_capacity(items.len());
        for item in &items {
            let encoded = item
                .get("additionalData")
                .and_then(|d| d.get("hmacSignature"))
                .and_then(Value::as_str)
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .ok_or(VerifyError::MissingSignature)?;
            if encoded.len() > MAX_HEADER_LEN {
                return Err(VerifyError::InvalidSignature);
            }
            signatures.push(wire::decode_base64(encoded).ok_or(VerifyError::InvalidSignature)?);
        }
        for (item, signature) in items.iter().zip(signatures) {
            let content = signing_string(item);
            let candidates = [signature];
            // Every key is tried so timing does not tell which one matched.
            let mut ok = false;
            for key in &self.keys {
                ok |= matches_any(&key.tag(&[content.as_bytes()]), &candidates);
            }
            if !ok {
                return Err(VerifyError::InvalidSignature);
            }
        }
        Ok(Verified::new(None))
    }
}

/// The body Adyen would send: `body` with every item's
/// `additionalData.hmacSignature` set to its MAC under `secret` (other
/// fields kept; the JSON is re-serialized, which is harmless because the
/// MAC covers field values, not bytes).
pub(super) fn sign_body(
    _: &AdyenItemsConfig,
    secret: &str,
    body: &[u8],
) -> Result<Vec<u8>, KeyError> {
    let key = key(1, secret)?;
    let not_a_notification = || KeyError::CannotSign("the body is not an Adyen notification");
    let mut payload: Value = serde_json::from_slice(body).map_err(|_| not_a_notification())?;
    for item in items_mut(&mut payload).ok_or_else(not_a_notification)? {
        let signature = wire::encode_base64(&key.tag(&[signing_string(item).as_bytes()]));
        let data = item
            .entry("additionalData")
            .or_insert_with(|| Value::Object(Map::new()));
        let Value::Object(data) = data else {
            return Err(not_a_notification());
        };
        data.insert("hmacSignature".to_owned(), Value::String(signature));
    }
    serde_json::to_vec(&payload).map_err(|_| not_a_notification())
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;
    use serde_json::json;

    use super::super::{sign_full, Headers, SchemeConfig, SignInput, Verifier};
    use super::*;

    // Adyen/adyen-python-api-library test/UtilTest.py (see
    // tests/vectors/README.md).
    const KEY: &str = "44782DEF547AAA06C910C43932B1EB0C71FC68D9D0C057550C48EC2ACF6BA056";
    const SIGNATURE: &str = "coqCmt/IZ4E3CzPvMY8zTjQVL5hYJUiBRg8UU+iCWo0=";

    fn item(signature: Option<&str>) -> Value {
        let mut item = json!({
            "pspReference": "7914073381342284",
            "merchantReference": "TestPayment-1407325143704",
            "merchantAccountCode": "TestMerchant",
            "amount": {"currency": "EUR", "value": 1130},
            "eventCode": "AUTHORISATION",
            "success": "true",
            "eventDate": "2019-05-06T17:15:34.121+02:00",
            "operations": ["CANCEL", "CAPTURE", "REFUND"],
            "paymentMethod": "visa"
        });
        if let Some(s) = signature {
            item["additionalData"] = json!({ "hmacSignature": s });
        }
        item
    }

    fn notification(items: Vec<Value>) -> Vec<u8> {
        let wrapped: Vec<Value> = items
            .into_iter()
            .map(|i| json!({ "NotificationRequestItem": i }))
            .collect();
        serde_json::to_vec(&json!({"live": "false", "notificationItems": wrapped})).unwrap()
    }

    fn verifier(keys: &[&str]) -> Verifier {
        let secrets: Vec<SecretString> = keys.iter().map(|s| (*s).into()).collect();
        Verifier::new(&SchemeConfig::AdyenItems(AdyenItemsConfig {}), &secrets).unwrap()
    }

    fn check(v: &Verifier, body: &[u8]) -> Result<Verified, VerifyError> {
        v.verify(
            &RequestView {
                headers: &Headers::new(),
                body,
                path_token: None,
                url: None,
            },
            0,
        )
    }

    #[test]
    fn adyen_signing_string_follows_the_sdk() {
        let i = item(None);
        assert_eq!(
            signing_string(i.as_object().unwrap()),
            "7914073381342284::TestMerchant:TestPayment-1407325143704:1130:EUR:AUTHORISATION:true"
        );
    }

    #[test]
    fn adyen_sdk_vector_verifies_with_its_key_only() {
        let body = notification(vec![item(Some(SIGNATURE))]);
        assert!(check(&verifier(&[KEY]), &body).is_ok());
        // Hex is case-insensitive; rotation: any key will do.
        assert!(check(&verifier(&[&KEY.to_ascii_lowercase()]), &body).is_ok());
        let other = "74F490DD33F7327BAECC88B2947C011FC02D014A473AAA33A8EC93E4DC069174";
        assert!(check(&verifier(&[other, KEY]), &body).is_ok());
        assert_eq!(
            check(&verifier(&[other]), &body).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn adyen_a_changed_signed_field_fails_and_an_unsigned_one_does_not() {
        let mut changed = item(Some(SIGNATURE));
        changed["amount"]["value"] = json!(1131);
        assert_eq!(
            check(&verifier(&[KEY]), &notification(vec![changed])).unwrap_err(),
            VerifyError::InvalidSignature
        );
        let mut success = item(Some(SIGNATURE));
        success["success"] = json!("false");
        assert_eq!(
            check(&verifier(&[KEY]), &notification(vec![success])).unwrap_err(),
            VerifyError::InvalidSignature
        );
        // Not covered by the MAC: Adyen's own scheme, documented above.
        let mut reason = item(Some(SIGNATURE));
        reason["reason"] = json!("anything");
        assert!(check(&verifier(&[KEY]), &notification(vec![reason])).is_ok());
    }

    #[test]
    fn adyen_every_item_must_verify() {
        let good = item(Some(SIGNATURE));
        let mut bad = item(Some(SIGNATURE));
        bad["pspReference"] = json!("7914073381342285");
        let v = verifier(&[KEY]);
        assert!(check(&v, &notification(vec![good.clone(), good.clone()])).is_ok());
        for items in [vec![good.clone(), bad.clone()], vec![bad, good.clone()]] {
            assert_eq!(
                check(&v, &notification(items)).unwrap_err(),
                VerifyError::InvalidSignature
            );
        }
        assert_eq!(
            check(&v, &notification(vec![good.clone(), item(None)])).unwrap_err(),
            VerifyError::MissingSignature
        );
        assert_eq!(
            check(&v, &notification(vec![item(Some(""))])).unwrap_err(),
            VerifyError::MissingSignature
        );
        assert_eq!(
            check(&v, &notification(vec![item(Some("not base64!"))])).unwrap_err(),
            VerifyError::InvalidSignature
        );
    }

    #[test]
    fn adyen_bodies_that_are_not_notifications_are_invalid() {
        let v = verifier(&[KEY]);
        for body in [
            &b"not json"[..],
            b"{}",
            br#"{"notificationItems": []}"#,
            br#"{"notificationItems": [{"Other": {}}]}"#,
            br#"{"notificationItems": [{"NotificationRequestItem": []}]}"#,
            b"[]",
        ] {
            assert_eq!(
                check(&v, body).unwrap_err(),
                VerifyError::InvalidSignature,
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }

    #[test]
    fn adyen_sign_body_reproduces_the_sdk_signature_for_every_item() {
        let mut second = item(None);
        second["pspReference"] = json!("7914073381342285");
        second["additionalData"] = json!({"shopperReference": "cust-1"});
        let body = notification(vec![item(None), second]);
        let scheme = SchemeConfig::AdyenItems(AdyenItemsConfig {});
        let (signed, request) = sign_full(
            &scheme,
            KEY,
            &SignInput {
                body: &body,
                timestamp: 0,
                id: "msg",
                url: None,
            },
        )
        .unwrap();
        assert!(request.headers.is_empty() && request.path_token.is_none());
        let payload: Value = serde_json::from_slice(&signed).unwrap();
        let items = &payload["notificationItems"];
        assert_eq!(
            items[0]["NotificationRequestItem"]["additionalData"]["hmacSignature"],
            SIGNATURE
        );
        // Existing additionalData is kept.
        assert_eq!(
            items[1]["NotificationRequestItem"]["additionalData"]["shopperReference"],
            "cust-1"
        );
        assert!(check(&verifier(&[KEY]), &signed).is_ok());
        // sign() alone cannot express a body rewrite.
        assert!(matches!(
            super::super::sign(&scheme, KEY, &body, 0, "msg"),
            Err(KeyError::CannotSign(_))
        ));
        assert!(sign_body(&AdyenItemsConfig {}, KEY, b"{}").is_err());
    }

    #[test]
    fn adyen_keys_must_be_hex() {
        let secrets: Vec<SecretString> = vec![KEY.into(), "not-hex".into()];
        let err =
            Verifier::new(&SchemeConfig::AdyenItems(AdyenItemsConfig {}), &secrets).unwrap_err();
        assert!(err.to_string().starts_with("secret #2 "), "{err}");
    }
}
