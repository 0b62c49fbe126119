//! Official-account message security: the plain-mode signature and safe mode (AES).
//!
//! - Plain mode: `signature = sha1(sorted(token, timestamp, nonce) joined)`.
//! - Safe mode: `msg_signature = sha1(sorted(token, timestamp, nonce, Encrypt) joined)`;
//!   AES key = base64decode(EncodingAESKey + "="), AES-256-CBC with IV = key[..16],
//!   PKCS#7 padding to a multiple of 32 bytes; plaintext =
//!   16 random bytes + 4-byte big-endian length + message + appid.

use aes::Aes256;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD as B64};
use rand::RngCore;
use secrecy::ExposeSecret;
use secrecy::zeroize::Zeroize;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use crate::settings::Settings;
use crate::wechat::pay::xml::push_cdata;

/// WeChat pads to multiples of 32 bytes, not AES's 16.
const PAD_BLOCK: usize = 32;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MpCryptoError {
    #[error("EncodingAESKey must be 43 base64 characters")]
    BadKey,
    #[error("WECHAT_MP_APPID is required with WECHAT_MP_AES_KEY")]
    MissingAppid,
    #[error("msg_signature does not match")]
    BadSignature,
    #[error("Encrypt is not valid base64")]
    Base64,
    #[error("ciphertext length is not a whole number of blocks")]
    BadLength,
    #[error("bad padding")]
    BadPadding,
    #[error("decrypted message is truncated")]
    Truncated,
    #[error("message is for another appid")]
    WrongAppid,
    #[error("message is not UTF-8")]
    Utf8,
}

fn sha1_sorted(parts: &mut [&str]) -> String {
    parts.sort_unstable();
    let mut h = Sha1::new();
    for p in parts.iter() {
        h.update(p.as_bytes());
    }
    hex::encode(h.finalize())
}

fn ct_eq_hex(expected: &str, given: &str) -> bool {
    let given = given.trim().to_ascii_lowercase();
    expected.len() == given.len() && bool::from(expected.as_bytes().ct_eq(given.as_bytes()))
}

/// Plain-mode check of a push or of the URL verification (GET with `echostr`).
pub fn check_signature(token: &str, timestamp: &str, nonce: &str, signature: &str) -> bool {
    ct_eq_hex(&sha1_sorted(&mut [token, timestamp, nonce]), signature)
}

/// Safe-mode crypto for one official account.
#[derive(Clone)]
pub struct MpCrypto {
    key: [u8; 32],
    appid: String,
    token: String,
}

impl std::fmt::Debug for MpCrypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MpCrypto")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl Drop for MpCrypto {
    fn drop(&mut self) {
        self.key.zeroize();
        self.token.zeroize();
    }
}

impl MpCrypto {
    /// `encoding_aes_key` is the 43-character EncodingAESKey from the admin console.
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<Self, MpCryptoError> {
        let k = encoding_aes_key.trim();
        if k.len() != 43 {
            return Err(MpCryptoError::BadKey);
        }
        // The 43rd character carries 2 bits past the 32 bytes; WeChat does not zero them.
        let lenient = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
        );
        let mut raw = lenient
            .decode(format!("{k}="))
            .map_err(|_| MpCryptoError::BadKey)?;
        let key: [u8; 32] = raw
            .as_slice()
            .try_into()
            .map_err(|_| MpCryptoError::BadKey)?;
        raw.zeroize();
        Ok(Self {
            key,
            appid: appid.to_string(),
            token: token.to_string(),
        })
    }

    /// Safe mode from `WECHAT_MP_TOKEN`, `WECHAT_MP_AES_KEY`, `WECHAT_MP_APPID`;
    /// `None` when the token or the AES key is unset (plain mode only, or no account).
    pub fn from_settings(s: &Settings) -> Result<Option<Self>, MpCryptoError> {
        let (Some(token), Some(aes_key)) = (&s.wechat_mp_token, &s.wechat_mp_aes_key) else {
            return Ok(None);
        };
        let appid = s
            .wechat_mp_appid
            .as_deref()
            .ok_or(MpCryptoError::MissingAppid)?;
        Self::new(token.expose_secret(), aes_key.expose_secret(), appid).map(Some)
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    /// Plain-mode signature check with this account's token.
    pub fn check_signature(&self, timestamp: &str, nonce: &str, signature: &str) -> bool {
        check_signature(&self.token, timestamp, nonce, signature)
    }

    /// `sha1(sorted(token, timestamp, nonce, encrypt))`, lowercase hex.
    pub fn msg_signature(&self, timestamp: &str, nonce: &str, encrypt: &str) -> String {
        sha1_sorted(&mut [&self.token, timestamp, nonce, encrypt])
    }

    /// Checks `msg_signature`, decrypts `Encrypt` and checks the trailing appid;
    /// returns the inner message XML.
    pub fn decrypt(
        &self,
        msg_signature: &str,
        timestamp: &str,
        nonce: &str,
        encrypt_b64: &str,
    ) -> Result<String, MpCryptoError> {
        if !ct_eq_hex(
            &self.msg_signature(timestamp, nonce, encrypt_b64),
            msg_signature,
        ) {
            return Err(MpCryptoError::BadSignature);
        }
        let ct = B64
            .decode(encrypt_b64.trim())
            .map_err(|_| MpCryptoError::Base64)?;
        if ct.is_empty() || ct.len() % 16 != 0 {
            return Err(MpCryptoError::BadLength);
        }
        let dec = cbc::Decryptor::<Aes256>::new_from_slices(&self.key, &self.key[..16])
            .map_err(|_| MpCryptoError::BadKey)?;
        let plain = dec
            .decrypt_padded_vec_mut::<NoPadding>(&ct)
            .map_err(|_| MpCryptoError::BadLength)?;

        let pad = usize::from(*plain.last().ok_or(MpCryptoError::BadPadding)?);
        if pad == 0 || pad > PAD_BLOCK || pad > plain.len() {
            return Err(MpCryptoError::BadPadding);
        }
        let (content, padding) = plain.split_at(plain.len() - pad);
        if padding.iter().any(|&b| usize::from(b) != pad) {
            return Err(MpCryptoError::BadPadding);
        }
        let Some(len_bytes) = content.get(16..20) else {
            return Err(MpCryptoError::Truncated);
        };
        let mut len = [0u8; 4];
        len.copy_from_slice(len_bytes);
        let msg_len = u32::from_be_bytes(len) as usize;
        let rest = &content[20..];
        if msg_len > rest.len() {
            return Err(MpCryptoError::Truncated);
        }
        let (msg, appid) = rest.split_at(msg_len);
        if appid != self.appid.as_bytes() {
            return Err(MpCryptoError::WrongAppid);
        }
        String::from_utf8(msg.to_vec()).map_err(|_| MpCryptoError::Utf8)
    }

    /// Encrypts `msg` (base64 of the AES-256-CBC ciphertext), with fresh random bytes.
    pub fn encrypt(&self, msg: &str) -> String {
        let mut random = [0u8; 16];
        rand::rng().fill_bytes(&mut random);
        self.encrypt_with_random(msg, random)
    }

    fn encrypt_with_random(&self, msg: &str, random: [u8; 16]) -> String {
        let mut plain = Vec::with_capacity(20 + msg.len() + self.appid.len() + PAD_BLOCK);
        plain.extend_from_slice(&random);
        // A reply never comes near 4 GiB; saturate rather than wrap if one did.
        let len = u32::try_from(msg.len()).unwrap_or(u32::MAX);
        plain.extend_from_slice(&len.to_be_bytes());
        plain.extend_from_slice(msg.as_bytes());
        plain.extend_from_slice(self.appid.as_bytes());
        let pad = PAD_BLOCK - plain.len() % PAD_BLOCK;
        // 1..=32, fits in a byte.
        plain.extend(std::iter::repeat_n(pad as u8, pad));
        let Ok(enc) = cbc::Encryptor::<Aes256>::new_from_slices(&self.key, &self.key[..16]) else {
            // Key and IV lengths are fixed by the type; this cannot happen.
            return String::new();
        };
        B64.encode(enc.encrypt_padded_vec_mut::<NoPadding>(&plain))
    }

    /// The safe-mode reply envelope for `reply_xml`:
    /// `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>`.
    pub fn encrypt_reply(&self, reply_xml: &str, timestamp: &str, nonce: &str) -> String {
        self.envelope(self.encrypt(reply_xml), timestamp, nonce)
    }

    fn envelope(&self, encrypt: String, timestamp: &str, nonce: &str) -> String {
        let signature = self.msg_signature(timestamp, nonce, &encrypt);
        let mut out = String::with_capacity(encrypt.len() + 200);
        out.push_str("<xml><Encrypt>");
        push_cdata(&mut out, &encrypt);
        out.push_str("</Encrypt><MsgSignature>");
        push_cdata(&mut out, &signature);
        out.push_str("</MsgSignature><TimeStamp>");
        // Normally digits; escaped in case a caller echoes an unchecked query value.
        push_text(&mut out, timestamp);
        out.push_str("</TimeStamp><Nonce>");
        push_cdata(&mut out, nonce);
        out.push_str("</Nonce></xml>");
        out
    }
}

fn push_text(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wechat::pay::xml::parse_flat;

    // The official sample (WXBizMsgCrypt).
    const TOKEN: &str = "spamtest";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx2c2769f8efd9abc2";
    const TIMESTAMP: &str = "1409735669";
    const NONCE: &str = "1320562132";
    const MSG_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    fn sample() -> MpCrypto {
        MpCrypto::new(TOKEN, AES_KEY, APPID).expect("key")
    }

    #[test]
    fn official_plain_signature() {
        assert!(check_signature(
            TOKEN,
            TIMESTAMP,
            NONCE,
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        ));
        assert!(check_signature(
            TOKEN,
            TIMESTAMP,
            NONCE,
            "16120EC1B8DBB870F510D87CE6BC2463EAE6CA1A"
        ));
        assert!(!check_signature(
            TOKEN,
            TIMESTAMP,
            "1320562133",
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        ));
        assert!(!check_signature(TOKEN, TIMESTAMP, NONCE, ""));
        assert!(!check_signature(TOKEN, TIMESTAMP, NONCE, "16120ec1"));
        assert!(sample().check_signature(
            TIMESTAMP,
            NONCE,
            "16120ec1b8dbb870f510d87ce6bc2463eae6ca1a"
        ));
    }

    #[test]
    fn official_msg_signature() {
        assert_eq!(
            sample().msg_signature(TIMESTAMP, NONCE, ENCRYPT),
            MSG_SIGNATURE
        );
    }

    #[test]
    fn decrypts_official_sample() {
        let xml = sample()
            .decrypt(MSG_SIGNATURE, TIMESTAMP, NONCE, ENCRYPT)
            .expect("decrypt");
        let f = parse_flat(xml.as_bytes()).expect("inner XML");
        assert_eq!(f["Content"], "abcdteT");
        assert_eq!(f["MsgId"], "6054768590064713728");
        assert_eq!(f["MsgType"], "text");
        assert_eq!(f["ToUserName"], "gh_10f6c3c3ac5a");
        assert_eq!(f["FromUserName"], "oyORnuP8q7ou2gfYjqLzSIWZf0rs");
    }

    #[test]
    fn rejects_forgeries() {
        let c = sample();
        assert_eq!(
            c.decrypt(
                "0000000000000000000000000000000000000000",
                TIMESTAMP,
                NONCE,
                ENCRYPT
            ),
            Err(MpCryptoError::BadSignature)
        );
        assert_eq!(
            c.decrypt(MSG_SIGNATURE, "1409735670", NONCE, ENCRYPT),
            Err(MpCryptoError::BadSignature)
        );
        // Another appid configured: decrypts, but the trailing appid differs.
        let other = MpCrypto::new(TOKEN, AES_KEY, "wxother").expect("key");
        assert_eq!(
            other.decrypt(MSG_SIGNATURE, TIMESTAMP, NONCE, ENCRYPT),
            Err(MpCryptoError::WrongAppid)
        );
        // Another AES key: garbage padding or layout.
        let wrong_key = MpCrypto::new(TOKEN, "bbcdefghijklmnopqrstuvwxyz0123456789ABCDEFG", APPID)
            .expect("key");
        assert!(
            wrong_key
                .decrypt(MSG_SIGNATURE, TIMESTAMP, NONCE, ENCRYPT)
                .is_err()
        );
        // Correctly signed garbage.
        for garbage in ["", "!!!!", "QUJD", "AAAAAAAAAAAAAAAAAAAAAA=="] {
            let sig = c.msg_signature(TIMESTAMP, NONCE, garbage);
            assert!(c.decrypt(&sig, TIMESTAMP, NONCE, garbage).is_err());
        }
    }

    #[test]
    fn bad_keys() {
        assert_eq!(
            MpCrypto::new(TOKEN, "short", APPID).err(),
            Some(MpCryptoError::BadKey)
        );
        assert_eq!(
            MpCrypto::new(TOKEN, &"!".repeat(43), APPID).err(),
            Some(MpCryptoError::BadKey)
        );
        assert!(!format!("{:?}", sample()).contains(TOKEN));
    }

    #[test]
    fn round_trip() {
        let c = sample();
        let reply = "<xml><ToUserName><![CDATA[oyORnuP8q7ou2gfYjqLzSIWZf0rs]]></ToUserName><Content><![CDATA[你好 ]]]]><![CDATA[> bind 123456]]></Content></xml>";
        for msg in [reply, "", "x", &"y".repeat(1000)] {
            let env = c.encrypt_reply(msg, "1700000000", "abc123");
            let f = parse_flat(env.as_bytes()).expect("envelope");
            assert_eq!(f["TimeStamp"], "1700000000");
            assert_eq!(f["Nonce"], "abc123");
            let ct = B64.decode(&f["Encrypt"]).expect("base64");
            assert_eq!(ct.len() % PAD_BLOCK, 0, "padded to 32-byte blocks");
            let back = c
                .decrypt(&f["MsgSignature"], "1700000000", "abc123", &f["Encrypt"])
                .expect("decrypt own reply");
            assert_eq!(back, msg);
        }
        // Fresh random bytes each time.
        assert_ne!(c.encrypt("same"), c.encrypt("same"));
        // Hostile echoes stay inside their elements.
        let env = c.encrypt_reply("m", "1<x>&", "n]]><evil/>");
        let f = parse_flat(env.as_bytes()).expect("envelope");
        assert_eq!(f["TimeStamp"], "1<x>&");
        assert_eq!(f["Nonce"], "n]]><evil/>");
    }

    #[test]
    fn known_answer_encryption_wechatpy_work_vector() {
        // wechatpy's WeCom test vector (same scheme, corp id in place of appid),
        // with its fixed "random" prefix.
        let c = MpCrypto::new(
            "123456",
            "kWxPEV2UEDyxWpmPdKC3F4dgPDmOvfKX1HGnEUDS1aR",
            "wx49f0ab532d5d035a",
        )
        .expect("key");
        let reply = "<xml>\n<MsgType><![CDATA[text]]></MsgType>\n<Content><![CDATA[test]]></Content>\n<FromUserName><![CDATA[wx49f0ab532d5d035a]]></FromUserName>\n<ToUserName><![CDATA[messense]]></ToUserName>\n<AgentID>1</AgentID>\n<CreateTime>1411525903</CreateTime>\n</xml>";
        let encrypt = c.encrypt_with_random(reply, *b"1234567890123456");
        assert_eq!(
            encrypt,
            "9s4gMv99m88kKTh/H8IdkOiMg6bisoy3ypwy9H4hvSPe9nsGaqyw5hhSjdYbcrKk+j3nba4HMOTzHrluLBYqxgNcBqGsL8GqxlhZgURnAtObvesEl5nZ+uBE8bviY0LWke8Zy9V/QYKxNV2FqllNXcfmstttyIkMKCCmVbCFM2JTF5wY0nFhHZSjPUL2Q1qvSUCUld+/WIXrx0oyKQmpB6o8NRrrNrsDf03oxI1p9FxUgMnwKKZeOA/uu+2IEvEBtb7muXsVbwbgX05UPPJvFurDXafG0RQyPR+mf1nDnAtQmmNOuiR5MIkdQ39xn1vWwi1O5oazPoQJz0nTYjxxEE8kv3kFxtAGVRe3ypD3WeK2XeFYFMNMpatF9XiKzHo3"
        );
        let env = c.envelope(encrypt, "1411525903", "461056294");
        let f = parse_flat(env.as_bytes()).expect("envelope");
        assert_eq!(
            f["MsgSignature"],
            "407518b7649e86ef23978113f92d27afa9296533"
        );

        let incoming = "RgqEoJj5A4EMYlLvWO1F86ioRjZfaex/gePD0gOXTxpsq5Yj4GNglrBb8I2BAJVODGajiFnXBu7mCPatfjsu6IHCrsTyeDXzF6Bv283dGymzxh6ydJRvZsryDyZbLTE7rhnus50qGPMfp2wASFlzEgMW9z1ef/RD8XzaFYgm7iTdaXpXaG4+BiYyolBug/gYNx410cvkKR2/nPwBiT+P4hIiOAQqGp/TywZBtDh1yCF2KOd0gpiMZ5jSw3e29mTvmUHzkVQiMS6td7vXUaWOMZnYZlF3So2SjHnwh4jYFxdgpkHHqIrH/54SNdshoQgWYEvccTKe7FS709/5t6NMxuGhcUGAPOQipvWTT4dShyqio7mlsl5noTrb++x6En749zCpQVhDpbV6GDnTbcX2e8K9QaNWHp91eBdCRxthuL0=";
        let xml = c
            .decrypt(
                "74d92dfeb87ba7c714f89d98870ae5eb62dff26d",
                "1411525903",
                "461056294",
                incoming,
            )
            .expect("decrypt");
        let f = parse_flat(xml.as_bytes()).expect("inner");
        assert_eq!(f["Content"], "test");
        assert_eq!(f["FromUserName"], "messense");
    }

    #[test]
    fn from_settings() {
        let mut s = Settings::defaults().expect("defaults");
        s.wechat_mp_token = None;
        s.wechat_mp_aes_key = None;
        assert_eq!(MpCrypto::from_settings(&s).map(|c| c.is_some()), Ok(false));
        s.wechat_mp_token = Some(TOKEN.into());
        s.wechat_mp_aes_key = Some(AES_KEY.into());
        s.wechat_mp_appid = None;
        assert_eq!(
            MpCrypto::from_settings(&s).err(),
            Some(MpCryptoError::MissingAppid)
        );
        s.wechat_mp_appid = Some(APPID.into());
        let c = MpCrypto::from_settings(&s)
            .expect("settings")
            .expect("configured");
        assert_eq!(c.appid(), APPID);
        assert!(c.decrypt(MSG_SIGNATURE, TIMESTAMP, NONCE, ENCRYPT).is_ok());
    }
}
