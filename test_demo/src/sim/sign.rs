//! Signatures, written from WeChat's documentation (not shared with the app's client code).
//!
//! * Pay v2: sort the parameter names by ASCII, skip `sign` and empty values, join `k=v` with `&`,
//!   append `&key=<API key>`, then MD5 or HMAC-SHA256 (keyed with the API key), uppercase hex.
//! * Official account: `sha1` over the sorted, concatenated strings (token, timestamp, nonce
//!   [, Encrypt]), lowercase hex.

use std::collections::BTreeMap;

use hmac::{Hmac, Mac};
use md5::{Digest as _, Md5};
use sha1::Sha1;
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The two Pay v2 signature algorithms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignType {
    Md5,
    HmacSha256,
}

impl SignType {
    /// Parses the `sign_type` field; absent means MD5.
    pub fn parse(v: Option<&str>) -> Option<SignType> {
        match v {
            None | Some("") | Some("MD5") => Some(SignType::Md5),
            Some("HMAC-SHA256") => Some(SignType::HmacSha256),
            Some(_) => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            SignType::Md5 => "MD5",
            SignType::HmacSha256 => "HMAC-SHA256",
        }
    }
}

/// The string that gets hashed, `a=1&b=2&key=KEY`.
pub fn pay_sign_string<'a, I>(params: I, key: &str) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let sorted: BTreeMap<&str, &str> = params
        .into_iter()
        .filter(|(k, v)| *k != "sign" && !v.is_empty())
        .collect();
    let mut s = String::new();
    for (k, v) in sorted {
        s.push_str(k);
        s.push('=');
        s.push_str(v);
        s.push('&');
    }
    s.push_str("key=");
    s.push_str(key);
    s
}

/// Pay v2 signature of `params` (any `sign` entry is ignored).
pub fn pay_sign<'a, I>(params: I, key: &str, sign_type: SignType) -> String
where
    I: IntoIterator<Item = (&'a str, &'a str)>,
{
    let s = pay_sign_string(params, key);
    match sign_type {
        SignType::Md5 => hex::encode_upper(Md5::digest(s.as_bytes())),
        SignType::HmacSha256 => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key.as_bytes())
                .expect("HMAC accepts keys of any length");
            mac.update(s.as_bytes());
            hex::encode_upper(mac.finalize().into_bytes())
        }
    }
}

/// Pay v2 signature of a map (convenience for the handlers).
pub fn pay_sign_map(params: &BTreeMap<String, String>, key: &str, sign_type: SignType) -> String {
    pay_sign(
        params.iter().map(|(k, v)| (k.as_str(), v.as_str())),
        key,
        sign_type,
    )
}

/// Checks the `sign` field of a received map, in constant time.
pub fn pay_verify(params: &BTreeMap<String, String>, key: &str, sign_type: SignType) -> bool {
    let Some(given) = params.get("sign") else {
        return false;
    };
    let expected = pay_sign_map(params, key, sign_type);
    ct_eq(given, &expected)
}

/// Constant-time string equality.
pub fn ct_eq(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// `sha1(sorted(parts).concat())`, lowercase hex: the official account's `signature` and
/// `msg_signature`.
pub fn sha1_sorted(parts: &[&str]) -> String {
    let mut v: Vec<&str> = parts.to_vec();
    v.sort_unstable();
    let mut h = Sha1::new();
    for p in v {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

/// Lowercase hex MD5 (the refund notify key derivation).
pub fn md5_hex_lower(s: &str) -> String {
    hex::encode(Md5::digest(s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC_KEY: &str = "192006250b4c09247ec02edce69f6a2d";
    const DOC_PARAMS: [(&str, &str); 5] = [
        ("appid", "wxd930ea5d5a258f4f"),
        ("mch_id", "10000100"),
        ("device_info", "1000"),
        ("body", "test"),
        ("nonce_str", "ibuaiVcKdpRxkhJA"),
    ];

    #[test]
    fn official_example_md5() {
        assert_eq!(
            pay_sign(DOC_PARAMS, DOC_KEY, SignType::Md5),
            "9A0A8659F005D6984697E2CA0A9CF3B7"
        );
    }

    #[test]
    fn official_example_hmac_sha256() {
        assert_eq!(
            pay_sign(DOC_PARAMS, DOC_KEY, SignType::HmacSha256),
            "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
        );
    }

    #[test]
    fn official_example_sign_string() {
        assert_eq!(
            pay_sign_string(DOC_PARAMS, DOC_KEY),
            "appid=wxd930ea5d5a258f4f&body=test&device_info=1000&mch_id=10000100\
             &nonce_str=ibuaiVcKdpRxkhJA&key=192006250b4c09247ec02edce69f6a2d"
        );
    }

    #[test]
    fn official_mini_program_pay_sign() {
        let params = [
            ("appId", "wxd678efh567hg6787"),
            ("nonceStr", "5K8264ILTKCH16CQ2502SI8ZNMTM67VS"),
            ("package", "prepay_id=wx2017033010242291fcfe0db70013231072"),
            ("signType", "MD5"),
            ("timeStamp", "1490840662"),
        ];
        assert_eq!(
            pay_sign(params, "qazwsxedcrfvtgbyhnujmikolp111111", SignType::Md5),
            "22D9B4E54AB1950F51E0649E8810ACD6"
        );
    }

    #[test]
    fn wechatpy_vector_and_empty_and_sign_skipped() {
        let params = [
            ("test1", "test1"),
            ("test2", "test2"),
            ("empty", ""),
            ("sign", "WHATEVER"),
        ];
        assert_eq!(
            pay_sign(params, DOC_KEY, SignType::Md5),
            "1E3A8D73B5A4AEE787C0F68B5DAB8520"
        );
    }

    #[test]
    fn verify_includes_unknown_fields() {
        let mut m: BTreeMap<String, String> = DOC_PARAMS
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        m.insert("coupon_fee_0".into(), "5".into());
        let s = pay_sign_map(&m, DOC_KEY, SignType::HmacSha256);
        m.insert("sign".into(), s);
        assert!(pay_verify(&m, DOC_KEY, SignType::HmacSha256));
        assert!(!pay_verify(&m, DOC_KEY, SignType::Md5));
        m.insert("coupon_fee_0".into(), "6".into());
        assert!(!pay_verify(&m, DOC_KEY, SignType::HmacSha256));
        m.remove("sign");
        assert!(!pay_verify(&m, DOC_KEY, SignType::HmacSha256));
    }

    #[test]
    fn official_account_signatures() {
        assert_eq!(
            sha1_sorted(&["spamtest", "1409735669", "1320562132"]),
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        );
    }

    #[test]
    fn sign_type_parse() {
        assert_eq!(SignType::parse(None), Some(SignType::Md5));
        assert_eq!(
            SignType::parse(Some("HMAC-SHA256")),
            Some(SignType::HmacSha256)
        );
        assert_eq!(SignType::parse(Some("SHA1")), None);
    }
}
