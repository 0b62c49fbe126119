//! WeChat Pay's callbacks: the payment notify (signed) and the refund notify
//! (`req_info` encrypted with AES-256-ECB under md5(API key)), and the replies.

use std::collections::BTreeMap;

use aes::Aes256;
use aes::cipher::block_padding::Pkcs7;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use md5::{Digest, Md5};
use secrecy::zeroize::Zeroizing;

use super::client::{PayClient, PayConfig, RefundStatus};
use super::error::NotifyError;
use super::sign::verify_as;
use super::xml::{parse_flat, push_cdata};
use secrecy::ExposeSecret;

/// The reply that stops WeChat's retries; send it (HTTP 200) for a processed or
/// already-processed notify.
pub fn reply_success() -> &'static str {
    "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
}

/// The reply for a notify that was refused (bad signature, mismatch); WeChat retries it.
pub fn reply_fail(msg: &str) -> String {
    let mut out = String::from("<xml><return_code><![CDATA[FAIL]]></return_code><return_msg>");
    push_cdata(&mut out, msg);
    out.push_str("</return_msg></xml>");
    out
}

/// The answer to a WeChat Pay callback: SUCCESS (processed, or already processed), or
/// FAIL with the reason (nothing changed; WeChat retries).
#[derive(Clone, Debug)]
pub struct NotifyReply {
    pub ok: bool,
    pub body: String,
}

impl NotifyReply {
    pub fn success() -> Self {
        Self {
            ok: true,
            body: reply_success().to_string(),
        }
    }

    pub fn fail(reason: &str) -> Self {
        Self {
            ok: false,
            body: reply_fail(reason),
        }
    }
}

/// A verified payment notify.
#[derive(Clone, Debug)]
pub struct PayNotify {
    pub out_trade_no: String,
    /// Present whenever `paid`.
    pub transaction_id: Option<String>,
    /// Fen; compare with the order's amount before marking it paid.
    pub total_fee: i64,
    /// `result_code` is SUCCESS.
    pub paid: bool,
    pub openid: Option<String>,
    /// `yyyyMMddHHmmss`, Beijing time.
    pub time_end: Option<String>,
    /// Every field received (all of them covered by the verified signature).
    pub raw: BTreeMap<String, String>,
}

/// A decrypted refund notify. It carries no signature: decryption with the API key
/// and the outer appid / mch_id are what vouch for it.
#[derive(Clone, Debug)]
pub struct RefundNotify {
    pub out_trade_no: String,
    pub out_refund_no: String,
    pub refund_id: String,
    pub transaction_id: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    pub refund_status: RefundStatus,
    /// The decrypted `<root>` fields.
    pub raw: BTreeMap<String, String>,
}

impl PayConfig {
    /// Parses and verifies a payment notify: return_code SUCCESS, the signature over
    /// every field received with the configured sign type (a notify signed otherwise is
    /// refused), then appid and mch_id.
    pub fn verify_pay_notify(&self, body: &[u8]) -> Result<PayNotify, NotifyError> {
        let f = parse_flat(body)?;
        require_success(&f)?;
        verify_as(&f, self.key.expose_secret(), self.sign_type)
            .map_err(|_| NotifyError::BadSignature)?;
        self.check_ids(&f)?;
        let out_trade_no = required(&f, "out_trade_no")?;
        let total_fee = amount(&f, "total_fee")?;
        let paid = f.get("result_code").map(String::as_str) == Some("SUCCESS");
        let transaction_id = optional(&f, "transaction_id");
        if paid && transaction_id.is_none() {
            return Err(NotifyError::BadField("transaction_id"));
        }
        Ok(PayNotify {
            out_trade_no,
            transaction_id,
            total_fee,
            paid,
            openid: optional(&f, "openid"),
            time_end: optional(&f, "time_end"),
            raw: f,
        })
    }

    /// Parses a refund notify: outer return_code, appid and mch_id, then `req_info`
    /// decrypted and read.
    pub fn decrypt_refund_notify(&self, body: &[u8]) -> Result<RefundNotify, NotifyError> {
        let f = parse_flat(body)?;
        require_success(&f)?;
        self.check_ids(&f)?;
        let req_info = f
            .get("req_info")
            .filter(|v| !v.is_empty())
            .ok_or(NotifyError::BadField("req_info"))?;
        let plain = decrypt_req_info(req_info, self.key.expose_secret())?;
        let inner = parse_flat(&plain)?;
        Ok(RefundNotify {
            out_trade_no: required(&inner, "out_trade_no")?,
            out_refund_no: required(&inner, "out_refund_no")?,
            refund_id: required(&inner, "refund_id")?,
            transaction_id: required(&inner, "transaction_id")?,
            total_fee: amount(&inner, "total_fee")?,
            refund_fee: amount(&inner, "refund_fee")?,
            refund_status: RefundStatus::parse(&required(&inner, "refund_status")?),
            raw: inner,
        })
    }

    fn check_ids(&self, f: &BTreeMap<String, String>) -> Result<(), NotifyError> {
        if f.get("appid") != Some(&self.appid) {
            return Err(NotifyError::WrongAppid);
        }
        if f.get("mch_id") != Some(&self.mch_id) {
            return Err(NotifyError::WrongMchId);
        }
        Ok(())
    }
}

impl PayClient {
    /// See [`PayConfig::verify_pay_notify`].
    pub fn verify_pay_notify(&self, body: &[u8]) -> Result<PayNotify, NotifyError> {
        self.config().verify_pay_notify(body)
    }

    /// See [`PayConfig::decrypt_refund_notify`].
    pub fn decrypt_refund_notify(&self, body: &[u8]) -> Result<RefundNotify, NotifyError> {
        self.config().decrypt_refund_notify(body)
    }
}

fn require_success(f: &BTreeMap<String, String>) -> Result<(), NotifyError> {
    if f.get("return_code").map(String::as_str) == Some("SUCCESS") {
        Ok(())
    } else {
        let msg = f
            .get("return_msg")
            .map(|m| m.chars().take(128).collect())
            .unwrap_or_default();
        Err(NotifyError::NotSuccess { msg })
    }
}

fn required(f: &BTreeMap<String, String>, name: &'static str) -> Result<String, NotifyError> {
    f.get(name)
        .filter(|v| !v.is_empty())
        .cloned()
        .ok_or(NotifyError::BadField(name))
}

fn optional(f: &BTreeMap<String, String>, name: &str) -> Option<String> {
    f.get(name).filter(|v| !v.is_empty()).cloned()
}

fn amount(f: &BTreeMap<String, String>, name: &'static str) -> Result<i64, NotifyError> {
    match f.get(name).map(|v| v.parse::<i64>()) {
        Some(Ok(n)) if n >= 0 => Ok(n),
        _ => Err(NotifyError::BadField(name)),
    }
}

/// The AES-256 key of `req_info`: the 32 ASCII bytes of lowercase hex md5(API key).
fn req_info_key(api_key: &str) -> Zeroizing<String> {
    Zeroizing::new(hex::encode(Md5::digest(api_key.as_bytes())))
}

/// base64 → AES-256-ECB (key = lowercase hex md5(API key)) → PKCS#7 → the `<root>` XML.
pub fn decrypt_req_info(req_info: &str, api_key: &str) -> Result<Vec<u8>, NotifyError> {
    let compact: String = req_info
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let ct = B64.decode(compact).map_err(|_| NotifyError::Decrypt)?;
    if ct.is_empty() || ct.len() % 16 != 0 {
        return Err(NotifyError::Decrypt);
    }
    let key = req_info_key(api_key);
    let dec = ecb::Decryptor::<Aes256>::new_from_slice(key.as_bytes())
        .map_err(|_| NotifyError::Decrypt)?;
    dec.decrypt_padded_vec_mut::<Pkcs7>(&ct)
        .map_err(|_| NotifyError::Decrypt)
}

/// The inverse of [`decrypt_req_info`], for simulators and tests.
pub fn encrypt_req_info(plain_xml: &str, api_key: &str) -> String {
    let key = req_info_key(api_key);
    // The key is always 32 bytes (hex of a 16-byte digest).
    let Ok(enc) = ecb::Encryptor::<Aes256>::new_from_slice(key.as_bytes()) else {
        return String::new();
    };
    B64.encode(enc.encrypt_padded_vec_mut::<Pkcs7>(plain_xml.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::pay::SignType;
    use crate::wechat::pay::identity::ClientIdentity;
    use crate::wechat::pay::sign::sign;
    use crate::wechat::pay::xml::to_xml;
    use secrecy::SecretString;
    use std::time::Duration;

    const APPID: &str = "wx2421b1c4370ec43b";
    const MCH_ID: &str = "10000100";
    const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

    fn cfg(appid: &str, mch_id: &str, key: &str) -> PayConfig {
        PayConfig {
            appid: appid.into(),
            mch_id: mch_id.into(),
            key: SecretString::from(key),
            sign_type: SignType::Md5,
            api_base: "http://127.0.0.1:9".into(),
            extra_root: None,
            timeout: Duration::from_secs(1),
            identity: ClientIdentity::None,
        }
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn pay_fields() -> BTreeMap<String, String> {
        map(&[
            ("appid", APPID),
            ("bank_type", "CFT"),
            ("cash_fee", "300"),
            ("fee_type", "CNY"),
            ("is_subscribe", "N"),
            ("mch_id", MCH_ID),
            ("nonce_str", "5d2b6c2a8db53831f7eda20af46e531c"),
            ("openid", "oUpF8uMEb4qRXf22hE3X68TekukE"),
            ("out_trade_no", "1409811653"),
            ("result_code", "SUCCESS"),
            ("return_code", "SUCCESS"),
            ("time_end", "20140903131540"),
            ("total_fee", "300"),
            ("trade_type", "JSAPI"),
            ("transaction_id", "1004400740201409030005092168"),
        ])
    }

    fn signed(mut f: BTreeMap<String, String>, st: Option<SignType>, key: &str) -> Vec<u8> {
        if let Some(st) = st {
            f.insert("sign_type".into(), st.as_str().into());
        }
        let s = sign(&f, key, st.unwrap_or(SignType::Md5));
        f.insert("sign".into(), s);
        to_xml(&f).into_bytes()
    }

    /// Sign with HMAC-SHA256 but leave `sign_type` out, as WeChat's notifies may.
    fn signed_hmac_without_type(mut f: BTreeMap<String, String>) -> Vec<u8> {
        let s = sign(&f, KEY, SignType::HmacSha256);
        f.insert("sign".into(), s);
        to_xml(&f).into_bytes()
    }

    #[test]
    fn only_the_configured_sign_type_is_accepted() {
        let md5 = cfg(APPID, MCH_ID, KEY);
        let hmac = PayConfig {
            sign_type: SignType::HmacSha256,
            ..cfg(APPID, MCH_ID, KEY)
        };
        let md5_bodies = [
            signed(pay_fields(), None, KEY),
            signed(pay_fields(), Some(SignType::Md5), KEY),
        ];
        let hmac_bodies = [
            signed(pay_fields(), Some(SignType::HmacSha256), KEY),
            signed_hmac_without_type(pay_fields()),
        ];
        for body in &md5_bodies {
            assert!(md5.verify_pay_notify(body).is_ok());
            assert!(matches!(
                hmac.verify_pay_notify(body),
                Err(NotifyError::BadSignature)
            ));
        }
        for body in &hmac_bodies {
            assert!(hmac.verify_pay_notify(body).is_ok());
            assert!(matches!(
                md5.verify_pay_notify(body),
                Err(NotifyError::BadSignature)
            ));
        }
    }

    #[test]
    fn verifies_a_good_pay_notify() {
        let md5 = cfg(APPID, MCH_ID, KEY);
        let hmac = PayConfig {
            sign_type: SignType::HmacSha256,
            ..cfg(APPID, MCH_ID, KEY)
        };
        for (c, body) in [
            (&md5, signed(pay_fields(), None, KEY)),
            (&md5, signed(pay_fields(), Some(SignType::Md5), KEY)),
            (&hmac, signed(pay_fields(), Some(SignType::HmacSha256), KEY)),
            (&hmac, signed_hmac_without_type(pay_fields())),
        ] {
            let n = c.verify_pay_notify(&body).expect("valid notify");
            assert_eq!(n.out_trade_no, "1409811653");
            assert_eq!(n.total_fee, 300);
            assert!(n.paid);
            assert_eq!(
                n.transaction_id.as_deref(),
                Some("1004400740201409030005092168")
            );
            assert_eq!(n.openid.as_deref(), Some("oUpF8uMEb4qRXf22hE3X68TekukE"));
            assert_eq!(n.time_end.as_deref(), Some("20140903131540"));
            assert_eq!(n.raw["bank_type"], "CFT");
        }
    }

    #[test]
    fn coupon_fields_are_covered() {
        let c = cfg(APPID, MCH_ID, KEY);
        let mut f = pay_fields();
        f.insert("coupon_count".into(), "1".into());
        f.insert("coupon_fee_0".into(), "100".into());
        f.insert("coupon_id_0".into(), "10000".into());
        let body = signed(f.clone(), None, KEY);
        assert!(c.verify_pay_notify(&body).is_ok());
        // Changing an unknown field breaks the signature.
        let tampered = String::from_utf8(body)
            .expect("utf8")
            .replace("<![CDATA[10000]]>", "<![CDATA[10001]]>");
        assert!(matches!(
            c.verify_pay_notify(tampered.as_bytes()),
            Err(NotifyError::BadSignature)
        ));
    }

    #[test]
    fn rejects_bad_pay_notifies() {
        let c = cfg(APPID, MCH_ID, KEY);

        // No sign at all.
        let unsigned = to_xml(&pay_fields());
        assert!(matches!(
            c.verify_pay_notify(unsigned.as_bytes()),
            Err(NotifyError::BadSignature)
        ));

        // Tampered amount.
        let body = String::from_utf8(signed(pay_fields(), None, KEY)).expect("utf8");
        let cheap = body.replace("<total_fee><![CDATA[300]]>", "<total_fee><![CDATA[1]]>");
        assert_ne!(cheap, body);
        assert!(matches!(
            c.verify_pay_notify(cheap.as_bytes()),
            Err(NotifyError::BadSignature)
        ));

        // Signed with another key.
        let forged = signed(pay_fields(), None, "ffffffffffffffffffffffffffffffff");
        assert!(matches!(
            c.verify_pay_notify(&forged),
            Err(NotifyError::BadSignature)
        ));

        // Properly signed, but for another merchant or app.
        let mut other = pay_fields();
        other.insert("appid".into(), "wxother".into());
        assert!(matches!(
            c.verify_pay_notify(&signed(other, None, KEY)),
            Err(NotifyError::WrongAppid)
        ));
        let mut other = pay_fields();
        other.insert("mch_id".into(), "999".into());
        assert!(matches!(
            c.verify_pay_notify(&signed(other, None, KEY)),
            Err(NotifyError::WrongMchId)
        ));

        // return_code FAIL.
        let fail = to_xml(&map(&[("return_code", "FAIL"), ("return_msg", "x")]));
        assert!(matches!(
            c.verify_pay_notify(fail.as_bytes()),
            Err(NotifyError::NotSuccess { .. })
        ));

        // Non-integer amount, even when signed.
        let mut bad = pay_fields();
        bad.insert("total_fee".into(), "3.00".into());
        assert!(matches!(
            c.verify_pay_notify(&signed(bad, None, KEY)),
            Err(NotifyError::BadField("total_fee"))
        ));

        // Malformed XML.
        assert!(matches!(
            c.verify_pay_notify(b"<xml><a>"),
            Err(NotifyError::Malformed(_))
        ));
        assert!(matches!(
            c.verify_pay_notify(b"<!DOCTYPE x [<!ENTITY a \"b\">]><xml/>"),
            Err(NotifyError::Malformed(_))
        ));
    }

    #[test]
    fn failed_payment_is_not_paid() {
        let c = cfg(APPID, MCH_ID, KEY);
        let mut f = pay_fields();
        f.insert("result_code".into(), "FAIL".into());
        f.insert("err_code".into(), "PAYERROR".into());
        f.remove("transaction_id");
        let n = c
            .verify_pay_notify(&signed(f, None, KEY))
            .expect("verified");
        assert!(!n.paid);
        assert!(n.transaction_id.is_none());
    }

    #[test]
    fn replies() {
        assert_eq!(
            reply_success(),
            "<xml><return_code><![CDATA[SUCCESS]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
        );
        assert_eq!(
            reply_fail("bad signature"),
            "<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[bad signature]]></return_msg></xml>"
        );
        let hostile = reply_fail("x]]><y>");
        let f = parse_flat(hostile.as_bytes()).expect("still valid XML");
        assert_eq!(f["return_msg"], "x]]><y>");
        assert_eq!(f["return_code"], "FAIL");
    }

    // wechatpy's test vector (tests/test_crypto.py, test_refund_notify_decrypt_message).
    const WECHATPY_APPID: &str = "wx4f4bc4dec97d474b";
    const WECHATPY_MCH_ID: &str = "12345678";
    const WECHATPY_KEY: &str = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk";
    const WECHATPY_NOTIFY: &str = "
<xml>
<return_code>SUCCESS</return_code>
<appid><![CDATA[wx4f4bc4dec97d474b]]></appid>
<mch_id><![CDATA[12345678]]></mch_id>
<nonce_str><![CDATA[c1c237efc87ee8dfcb3f9124b63a4d94]]></nonce_str>
<req_info><![CDATA[51A27s9LxbaEv52nBOrqa0FCs3HVIM31Wc3BpNqSCP5MQlS8HL1Vl7mZ21043B7PZy7adtOZGtZv44lGl0U8JXlVFL4Ltxsw6+pACjZBB0Qi1LUDjFlP2IyTxYX4eC57kxnCphDdIyRkU67kOWW/HN/efggTUlaPJkoL5kVe9Y1MZF55IHR4lwGI7WtVLtxATX1tkAVZF+/ri0WlPXo9+GkqeB2/id6Ozw09Tqp8C/TKbmKBpRhTCRU2TzfQoLa6fjbgETFHJ795aEMyUZPQYbbsz6U9Rj9lUzEh8+Oc8KYTXa9zVk+nnFr82+yjffb3d36ylTe0y/VmYf90rf9cbiJQdM00zZ8Qa99SlMTs2wjOO4Mi4Btlg1PebsLF8TkqbSZkRJDGs61UunUB8Km1b/VeBxXuv4D3H7DiVZ9Fj7lq2j07zFDpxxlhhen7kZvMWWO3lrfFpA9c4eFOqfF9SxcU9nBmHfDD1g/dsrMl6+a71xQHJ/gn80fZOefUBv92ggqutsuJ4gd4OqkmO0XUs8e4XQyLpra+LvpmahsU5lBIZuQcMq3FHrqe8hXTfp3+3qym2wGfvPI75jx41VZwmBQy9izB1Id+A5lUeXC5QJy+ryDu/dWkhB+aMjkElaI/Epmcc/IEPaI73W6Hc58hNednOM536rPnn+GDc98PdGszpLTjmaZSu8dtqwPaym66yRqFQowzFoBbooik57iHUFBCeWya7XcXYL9WKhRF3uIZM+Kfv9/Zs2pF+w9/EJpltuzPpT1GP2VTMSHz45zwphFlS2lX8wHyZ+k9n2dptzQqpOCPedt5iQAmAe1oNQMxNdPDH9g68x9UzWD1kfK/dPO+3NPAh0XG+io4x15fIknNf7JLjpAuWicMMzCdwC4hhqeYOzQ+pC9f2xJXi5YViNKIZY69oO8eoHYRitLZrHLgx3oB2zimmqX6BI+DMklKAzAqqgGmbFxcVTvxZB6cMCx+H7TTWXnjAG+6A3SrCcxg0l5+UB93pkAYR7SVJ+VaZoiBqlqnZvb7IM17n9XaaFntlzvbbFCIa7OnOQb5Lvw=]]></req_info>
</xml>";

    #[test]
    fn decrypts_wechatpy_refund_notify_vector() {
        let c = cfg(WECHATPY_APPID, WECHATPY_MCH_ID, WECHATPY_KEY);
        let n = c
            .decrypt_refund_notify(WECHATPY_NOTIFY.as_bytes())
            .expect("decrypt");
        assert_eq!(n.out_refund_no, "1234");
        assert_eq!(n.out_trade_no, "2020010418301551404339261814");
        assert_eq!(n.transaction_id, "4200000483202001042069747825");
        assert_eq!(n.refund_id, "50300103182020010413419046597");
        assert_eq!(n.refund_fee, 1);
        assert_eq!(n.refund_status, RefundStatus::Success);
        // WeChat's own spelling.
        assert!(n.raw.contains_key("refund_recv_accout"), "{:?}", n.raw);

        // Wrong key: no plaintext comes out.
        let wrong = cfg(WECHATPY_APPID, WECHATPY_MCH_ID, KEY);
        assert!(matches!(
            wrong.decrypt_refund_notify(WECHATPY_NOTIFY.as_bytes()),
            Err(NotifyError::Decrypt | NotifyError::Malformed(_))
        ));
        // Outer ids are checked.
        let other_app = cfg("wxother", WECHATPY_MCH_ID, WECHATPY_KEY);
        assert!(matches!(
            other_app.decrypt_refund_notify(WECHATPY_NOTIFY.as_bytes()),
            Err(NotifyError::WrongAppid)
        ));
        let other_mch = cfg(WECHATPY_APPID, "1", WECHATPY_KEY);
        assert!(matches!(
            other_mch.decrypt_refund_notify(WECHATPY_NOTIFY.as_bytes()),
            Err(NotifyError::WrongMchId)
        ));
    }

    #[test]
    fn aes_256_ecb_known_answer() {
        // FIPS-197 appendix C.3 (AES-256), through the same ECB + PKCS#7 path.
        let key: Vec<u8> = (0u8..32).collect();
        let pt = hex::decode("00112233445566778899aabbccddeeff").expect("hex");
        let enc = ecb::Encryptor::<Aes256>::new_from_slice(&key).expect("key");
        let ct = enc.encrypt_padded_vec_mut::<Pkcs7>(&pt);
        assert_eq!(hex::encode(&ct[..16]), "8ea2b7ca516745bfeafc49904b496089");
        assert_eq!(ct.len(), 32, "a full padding block follows");
        // And the key derivation: lowercase hex md5, 32 ASCII bytes.
        assert_eq!(req_info_key("192006250b4c09247ec02edce69f6a2d").len(), 32);
        assert_eq!(
            req_info_key("abc").as_str(),
            "900150983cd24fb0d6963f7d28e17f72"
        );
    }

    #[test]
    fn refund_notify_round_trip_and_garbage() {
        let c = cfg(APPID, MCH_ID, KEY);
        let inner = "<root><out_refund_no><![CDATA[R1]]></out_refund_no><out_trade_no><![CDATA[T1]]></out_trade_no><refund_account><![CDATA[REFUND_SOURCE_RECHARGE_FUNDS]]></refund_account><refund_fee><![CDATA[50]]></refund_fee><refund_id><![CDATA[5000]]></refund_id><refund_recv_accout><![CDATA[支付用户零钱]]></refund_recv_accout><refund_status><![CDATA[REFUNDCLOSE]]></refund_status><total_fee><![CDATA[300]]></total_fee><transaction_id><![CDATA[4200]]></transaction_id></root>";
        let outer = |req_info: &str| {
            to_xml(&map(&[
                ("return_code", "SUCCESS"),
                ("appid", APPID),
                ("mch_id", MCH_ID),
                ("nonce_str", "n"),
                ("req_info", req_info),
            ]))
        };
        let n = c
            .decrypt_refund_notify(outer(&encrypt_req_info(inner, KEY)).as_bytes())
            .expect("round trip");
        assert_eq!(n.out_refund_no, "R1");
        assert_eq!(n.refund_fee, 50);
        assert_eq!(n.total_fee, 300);
        assert_eq!(n.refund_status, RefundStatus::Closed);

        for garbage in ["", "!!!", "AAAA", "QUJD", &B64.encode([0u8; 32])] {
            assert!(
                c.decrypt_refund_notify(outer(garbage).as_bytes()).is_err(),
                "{garbage}"
            );
        }
        // Decrypts, but is not the expected XML.
        let not_xml = encrypt_req_info("hello", KEY);
        assert!(matches!(
            c.decrypt_refund_notify(outer(&not_xml).as_bytes()),
            Err(NotifyError::Malformed(_))
        ));
        let missing = encrypt_req_info("<root><out_refund_no>R1</out_refund_no></root>", KEY);
        assert!(matches!(
            c.decrypt_refund_notify(outer(&missing).as_bytes()),
            Err(NotifyError::BadField(_))
        ));
        let fail = to_xml(&map(&[("return_code", "FAIL"), ("return_msg", "no")]));
        assert!(matches!(
            c.decrypt_refund_notify(fail.as_bytes()),
            Err(NotifyError::NotSuccess { .. })
        ));
    }
}
