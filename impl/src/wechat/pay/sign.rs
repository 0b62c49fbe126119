//! Pay v2 signatures: ASCII-sorted `k=v` pairs (empty values and `sign` skipped), joined
//! with `&`, then `&key=<API key>`, hashed with MD5 or HMAC-SHA256 keyed with the API key,
//! in uppercase hex over the UTF-8 bytes.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest, Md5};
use secrecy::zeroize::Zeroizing;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use super::SignType;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignError {
    #[error("message has no signature")]
    Missing,
    #[error("unknown sign_type")]
    UnknownSignType,
    #[error("signature has neither MD5 nor HMAC-SHA256 length")]
    BadLength,
    #[error("signature does not match")]
    Mismatch,
}

/// The string that is hashed: `a=1&b=2&key=KEY`. It holds the key, so it is wiped on drop.
fn string_to_sign(params: &BTreeMap<String, String>, key: &str) -> Zeroizing<String> {
    let mut s = Zeroizing::new(String::with_capacity(256));
    // BTreeMap<String, _> iterates in byte order, which for ASCII names is ASCII order.
    for (k, v) in params {
        if v.is_empty() || k == "sign" {
            continue;
        }
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(key);
    s
}

/// Signs `params` (every field except `sign`, empty values skipped) with the API key.
pub fn sign(params: &BTreeMap<String, String>, key: &str, st: SignType) -> String {
    let s = string_to_sign(params, key);
    match st {
        SignType::Md5 => hex::encode_upper(Md5::digest(s.as_bytes())),
        SignType::HmacSha256 => {
            // HMAC accepts keys of any length, so this cannot fail.
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(key.as_bytes()) else {
                return String::new();
            };
            mac.update(s.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// Which algorithm a received message claims: its `sign_type` field, or, when that is
/// absent (notifies may omit it), the signature's length: 64 hex = HMAC-SHA256, 32 = MD5.
pub fn infer_sign_type(params: &BTreeMap<String, String>) -> Result<SignType, SignError> {
    let given = params
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(SignError::Missing)?;
    match params.get("sign_type").filter(|s| !s.is_empty()) {
        Some(st) => SignType::parse(&st.to_ascii_uppercase()).ok_or(SignError::UnknownSignType),
        None => match given.len() {
            64 => Ok(SignType::HmacSha256),
            32 => Ok(SignType::Md5),
            _ => Err(SignError::BadLength),
        },
    }
}

/// Verifies a received message over every field it carries, known or not (coupon
/// payments add `coupon_fee_0`, `coupon_id_0`, ...). A message without `sign` is forged.
/// The comparison runs in constant time. Returns the algorithm that matched.
pub fn verify(params: &BTreeMap<String, String>, key: &str) -> Result<SignType, SignError> {
    let st = infer_sign_type(params)?;
    let given = params.get("sign").ok_or(SignError::Missing)?;
    let expected = sign(params, key, st);
    let given = given.to_ascii_uppercase();
    if expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(st)
    } else {
        Err(SignError::Mismatch)
    }
}

/// Verifies a received message with the merchant's configured algorithm. A message that
/// names another `sign_type`, or is signed with another algorithm, is refused: letting
/// the message choose would let an MD5 forgery through to an HMAC-SHA256 merchant.
pub fn verify_as(
    params: &BTreeMap<String, String>,
    key: &str,
    configured: SignType,
) -> Result<(), SignError> {
    if let Some(st) = params.get("sign_type").filter(|s| !s.is_empty())
        && SignType::parse(&st.to_ascii_uppercase()) != Some(configured)
    {
        return Err(SignError::UnknownSignType);
    }
    let given = params
        .get("sign")
        .filter(|s| !s.is_empty())
        .ok_or(SignError::Missing)?
        .to_ascii_uppercase();
    let expected = sign(params, key, configured);
    if expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
        Ok(())
    } else {
        Err(SignError::Mismatch)
    }
}

/// 32 random characters of `[0-9A-Za-z]`, for `nonce_str` / `nonceStr`.
pub fn nonce_str() -> String {
    use rand::Rng;
    rand::rng()
        .sample_iter(&rand::distr::Alphanumeric)
        .take(32)
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn official() -> BTreeMap<String, String> {
        map(&[
            ("appid", "wxd930ea5d5a258f4f"),
            ("mch_id", "10000100"),
            ("device_info", "1000"),
            ("body", "test"),
            ("nonce_str", "ibuaiVcKdpRxkhJA"),
        ])
    }

    #[test]
    fn official_md5_example() {
        assert_eq!(
            sign(&official(), KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn official_hmac_sha256_example() {
        assert_eq!(
            sign(&official(), KEY, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn official_mini_program_pay_sign_example() {
        let p = map(&[
            ("appId", "wxd678efh567hg6787"),
            ("nonceStr", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("package", "prepay_id=wx2017033010242291fcfe0db70013231072"),
            ("signType", "MD5"),
            ("timeStamp", "1490840662"),
        ]);
        assert_eq!(
            sign(&p, "qazwsxedcrfvtgbyhnujmikolp111111", SignType::Md5),
            "22D9B4E54AB1950F51E0649E8810ACD6"
        );
    }

    #[test]
    fn wechatpy_example_and_skipped_fields() {
        // wechatpy's own test vector.
        let mut p = map(&[("test1", "test1"), ("test2", "test2")]);
        assert_eq!(
            sign(&p, KEY, SignType::Md5),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
        // `sign` and empty values do not take part.
        p.insert("sign".into(), "whatever".into());
        p.insert("empty".into(), String::new());
        assert_eq!(
            sign(&p, KEY, SignType::Md5),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
    }

    #[test]
    fn verify_accepts_both_types_with_and_without_sign_type() {
        for st in [SignType::Md5, SignType::HmacSha256] {
            let mut p = official();
            let s = sign(&p, KEY, st);
            p.insert("sign".into(), s.clone());
            assert_eq!(verify(&p, KEY), Ok(st), "inferred {st:?}");

            let mut q = official();
            q.insert("sign_type".into(), st.as_str().into());
            let s = sign(&q, KEY, st);
            q.insert("sign".into(), s.to_ascii_lowercase());
            assert_eq!(verify(&q, KEY), Ok(st), "declared {st:?}, lowercase hex");
        }
    }

    #[test]
    fn verify_detects_tampering() {
        for st in [SignType::Md5, SignType::HmacSha256] {
            let mut p = official();
            p.insert("total_fee".into(), "100".into());
            let s = sign(&p, KEY, st);
            p.insert("sign".into(), s);
            assert!(verify(&p, KEY).is_ok());

            let mut changed = p.clone();
            changed.insert("total_fee".into(), "1".into());
            assert_eq!(verify(&changed, KEY), Err(SignError::Mismatch));

            let mut added = p.clone();
            added.insert("attach".into(), "x".into());
            assert_eq!(verify(&added, KEY), Err(SignError::Mismatch));

            let mut removed = p.clone();
            removed.remove("body");
            assert_eq!(verify(&removed, KEY), Err(SignError::Mismatch));

            assert_eq!(
                verify(&p, "00000000000000000000000000000000"),
                Err(SignError::Mismatch)
            );

            // Declaring the other algorithm does not help a forger.
            let mut other = p.clone();
            other.insert(
                "sign_type".into(),
                match st {
                    SignType::Md5 => "HMAC-SHA256",
                    SignType::HmacSha256 => "MD5",
                }
                .into(),
            );
            assert_eq!(verify(&other, KEY), Err(SignError::Mismatch));
        }
    }

    #[test]
    fn verify_covers_unknown_fields() {
        // A coupon payment notify carries fields no struct would list.
        let mut p = official();
        p.insert("coupon_fee_0".into(), "10".into());
        p.insert("coupon_id_0".into(), "123".into());
        p.insert("coupon_count".into(), "1".into());
        let s = sign(&p, KEY, SignType::HmacSha256);
        p.insert("sign".into(), s.clone());
        assert_eq!(verify(&p, KEY), Ok(SignType::HmacSha256));

        // The same signature over the known fields alone does not verify...
        let mut known_only = official();
        known_only.insert("sign".into(), s);
        assert_eq!(verify(&known_only, KEY), Err(SignError::Mismatch));
        // ...and the unknown field's value is covered too.
        p.insert("coupon_fee_0".into(), "9999".into());
        assert_eq!(verify(&p, KEY), Err(SignError::Mismatch));
    }

    #[test]
    fn verify_rejects_missing_or_odd_signatures() {
        let p = official();
        assert_eq!(verify(&p, KEY), Err(SignError::Missing));

        let mut empty = official();
        empty.insert("sign".into(), String::new());
        assert_eq!(verify(&empty, KEY), Err(SignError::Missing));

        let mut short = official();
        short.insert("sign".into(), "ABCDEF".into());
        assert_eq!(verify(&short, KEY), Err(SignError::BadLength));

        let mut unknown = official();
        unknown.insert("sign".into(), "9A0A8659F005D6984697E2CA0A9CF3B7".into());
        unknown.insert("sign_type".into(), "SHA1".into());
        assert_eq!(verify(&unknown, KEY), Err(SignError::UnknownSignType));
    }

    #[test]
    fn utf8_values_are_signed_as_utf8() {
        let mut p = map(&[("body", "校园跑腿-快递代取"), ("appid", "wx1")]);
        let s = sign(&p, KEY, SignType::Md5);
        // Independently: md5("appid=wx1&body=校园跑腿-快递代取&key=KEY") in UTF-8.
        let expected = hex::encode_upper(Md5::digest(
            format!("appid=wx1&body=校园跑腿-快递代取&key={KEY}").as_bytes(),
        ));
        assert_eq!(s, expected);
        p.insert("sign".into(), s);
        assert!(verify(&p, KEY).is_ok());
    }

    #[test]
    fn nonce_is_32_alphanumerics() {
        let a = nonce_str();
        let b = nonce_str();
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_alphanumeric()));
        assert_ne!(a, b);
    }
}
