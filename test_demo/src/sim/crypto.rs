//! The two symmetric schemes WeChat uses, written from the documentation:
//!
//! * refund notify `req_info`: base64(AES-256-ECB, PKCS7), key = lowercase hex md5(API key)
//!   taken as 32 ASCII bytes;
//! * official account safe mode: AES-256-CBC, key = base64decode(EncodingAESKey + "="),
//!   IV = key[0..16], PKCS7 padding to 32-byte blocks, plaintext = 16 random bytes +
//!   4-byte big-endian length + message + appid.

use aes::Aes256;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use cbc::cipher::block_padding::{NoPadding, Pkcs7};
use cbc::cipher::{BlockDecryptMut, BlockEncryptMut, KeyInit, KeyIvInit};
use rand::RngCore;

use super::sign::md5_hex_lower;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("bad base64")]
    Base64,
    #[error("bad key")]
    Key,
    #[error("bad padding or ciphertext length")]
    Padding,
    #[error("bad plaintext layout")]
    Layout,
    #[error("appid mismatch: {0}")]
    AppId(String),
    #[error("plaintext is not UTF-8")]
    Utf8,
}

fn refund_key(pay_key: &str) -> [u8; 32] {
    let hex = md5_hex_lower(pay_key);
    let mut key = [0u8; 32];
    key.copy_from_slice(&hex.as_bytes()[..32]);
    key
}

/// Encrypts the `<root>` XML of a refund notify into `req_info`.
pub fn refund_req_info_encrypt(pay_key: &str, plaintext: &str) -> String {
    let key = refund_key(pay_key);
    let enc = ecb::Encryptor::<Aes256>::new(&key.into());
    B64.encode(enc.encrypt_padded_vec_mut::<Pkcs7>(plaintext.as_bytes()))
}

/// Decrypts a refund notify's `req_info` (used by the tests; the app has its own).
pub fn refund_req_info_decrypt(pay_key: &str, req_info: &str) -> Result<String, CryptoError> {
    let key = refund_key(pay_key);
    let data = B64
        .decode(req_info.trim())
        .map_err(|_| CryptoError::Base64)?;
    let dec = ecb::Decryptor::<Aes256>::new(&key.into());
    let plain = dec
        .decrypt_padded_vec_mut::<Pkcs7>(&data)
        .map_err(|_| CryptoError::Padding)?;
    String::from_utf8(plain).map_err(|_| CryptoError::Utf8)
}

/// The official account's AES key from a 43-character EncodingAESKey.
pub fn mp_aes_key(encoding_aes_key: &str) -> Result<[u8; 32], CryptoError> {
    if encoding_aes_key.len() != 43 {
        return Err(CryptoError::Key);
    }
    // WeChat's keys (the official sample's included) often have non-zero trailing bits.
    let lenient = base64::engine::GeneralPurpose::new(
        &base64::alphabet::STANDARD,
        base64::engine::GeneralPurposeConfig::new().with_decode_allow_trailing_bits(true),
    );
    let raw = lenient
        .decode(format!("{encoding_aes_key}="))
        .map_err(|_| CryptoError::Key)?;
    raw.try_into().map_err(|_| CryptoError::Key)
}

const MP_BLOCK: usize = 32;

/// Safe-mode encryption of a message (returns the base64 `Encrypt` value).
pub fn mp_encrypt(encoding_aes_key: &str, appid: &str, msg: &str) -> Result<String, CryptoError> {
    let mut random = [0u8; 16];
    rand::rng().fill_bytes(&mut random);
    mp_encrypt_with_random(encoding_aes_key, appid, msg, random)
}

fn mp_encrypt_with_random(
    encoding_aes_key: &str,
    appid: &str,
    msg: &str,
    random: [u8; 16],
) -> Result<String, CryptoError> {
    let key = mp_aes_key(encoding_aes_key)?;
    let len = u32::try_from(msg.len()).map_err(|_| CryptoError::Layout)?;
    let mut buf = Vec::with_capacity(16 + 4 + msg.len() + appid.len() + MP_BLOCK);
    buf.extend_from_slice(&random);
    buf.extend_from_slice(&len.to_be_bytes());
    buf.extend_from_slice(msg.as_bytes());
    buf.extend_from_slice(appid.as_bytes());
    let pad = MP_BLOCK - buf.len() % MP_BLOCK;
    buf.extend(std::iter::repeat_n(pad as u8, pad));
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let enc = cbc::Encryptor::<Aes256>::new(&key.into(), &iv.into());
    let out = enc.encrypt_padded_vec_mut::<NoPadding>(&buf);
    Ok(B64.encode(out))
}

/// Safe-mode decryption: returns the message after checking the trailing appid.
pub fn mp_decrypt(
    encoding_aes_key: &str,
    expected_appid: &str,
    encrypt: &str,
) -> Result<String, CryptoError> {
    let key = mp_aes_key(encoding_aes_key)?;
    let data = B64
        .decode(encrypt.trim())
        .map_err(|_| CryptoError::Base64)?;
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(CryptoError::Padding);
    }
    let mut iv = [0u8; 16];
    iv.copy_from_slice(&key[..16]);
    let dec = cbc::Decryptor::<Aes256>::new(&key.into(), &iv.into());
    let plain = dec
        .decrypt_padded_vec_mut::<NoPadding>(&data)
        .map_err(|_| CryptoError::Padding)?;
    let pad = usize::from(*plain.last().ok_or(CryptoError::Padding)?);
    if pad == 0 || pad > MP_BLOCK || pad > plain.len() {
        return Err(CryptoError::Padding);
    }
    let body = &plain[..plain.len() - pad];
    if body.len() < 20 {
        return Err(CryptoError::Layout);
    }
    let len_bytes: [u8; 4] = body[16..20].try_into().map_err(|_| CryptoError::Layout)?;
    let len = u32::from_be_bytes(len_bytes) as usize;
    let rest = &body[20..];
    if len > rest.len() {
        return Err(CryptoError::Layout);
    }
    let (msg, appid) = rest.split_at(len);
    let appid = std::str::from_utf8(appid).map_err(|_| CryptoError::Utf8)?;
    if appid != expected_appid {
        return Err(CryptoError::AppId(appid.to_string()));
    }
    String::from_utf8(msg.to_vec()).map_err(|_| CryptoError::Utf8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::sign::sha1_sorted;
    use crate::sim::xml;

    // The official sample of the official-account message encryption documentation.
    const TOKEN: &str = "spamtest";
    const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
    const APPID: &str = "wx2c2769f8efd9abc2";
    const TIMESTAMP: &str = "1409735669";
    const NONCE: &str = "1320562132";
    const MSG_SIGNATURE: &str = "5d197aaffba7e9b25a30732f161a50dee96bd5fa";
    const ENCRYPT: &str = "hyzAe4OzmOMbd6TvGdIOO6uBmdJoD0Fk53REIHvxYtJlE2B655HuD0m8KUePWB3+LrPXo87wzQ1QLvbeUgmBM4x6F8PGHQHFVAFmOD2LdJF9FrXpbUAh0B5GIItb52sn896wVsMSHGuPE328HnRGBcrS7C41IzDWyWNlZkyyXwon8T332jisa+h6tEDYsVticbSnyU8dKOIbgU6ux5VTjg3yt+WGzjlpKn6NPhRjpA912xMezR4kw6KWwMrCVKSVCZciVGCgavjIQ6X8tCOp3yZbGpy0VxpAe+77TszTfRd5RJSVO/HTnifJpXgCSUdUue1v6h0EIBYYI1BD1DlD+C0CR8e6OewpusjZ4uBl9FyJvnhvQl+q5rv1ixrcpCumEPo5MJSgM9ehVsNPfUM669WuMyVWQLCzpu9GhglF2PE=";

    #[test]
    fn official_sample_signature_and_decrypt() {
        assert_eq!(
            sha1_sorted(&[TOKEN, TIMESTAMP, NONCE, ENCRYPT]),
            MSG_SIGNATURE
        );
        let plain = mp_decrypt(AES_KEY, APPID, ENCRYPT).expect("decrypts");
        let x = xml::parse(plain.as_bytes()).expect("xml");
        assert_eq!(x.fields["Content"], "abcdteT");
        assert_eq!(x.fields["MsgId"], "6054768590064713728");
        assert_eq!(x.fields["MsgType"], "text");
        assert!(matches!(
            mp_decrypt(AES_KEY, "wxother", ENCRYPT),
            Err(CryptoError::AppId(_))
        ));
    }

    #[test]
    fn mp_round_trip_and_block_of_32() {
        for msg in ["", "a", &"x".repeat(12), &"y".repeat(100)] {
            let e = mp_encrypt(AES_KEY, APPID, msg).expect("encrypts");
            let raw = B64.decode(&e).expect("b64");
            assert_eq!(raw.len() % 32, 0);
            assert_eq!(mp_decrypt(AES_KEY, APPID, &e).expect("decrypts"), msg);
        }
        assert!(mp_decrypt(AES_KEY, APPID, "!!!").is_err());
        assert!(mp_decrypt(AES_KEY, APPID, "AAAA").is_err());
    }

    #[test]
    fn mp_deterministic_with_fixed_random() {
        let a = mp_encrypt_with_random(AES_KEY, APPID, "hi", [7; 16]).expect("enc");
        let b = mp_encrypt_with_random(AES_KEY, APPID, "hi", [7; 16]).expect("enc");
        assert_eq!(a, b);
    }

    /// Cross-checked with `openssl enc -aes-256-ecb -K <hex of md5hex(key)>`.
    #[test]
    fn refund_req_info_known_vector() {
        let key = "OF4Ne3znh8KqL0V4NqmALQa0uXMYKcEk";
        let plain = "<root><out_refund_no><![CDATA[1234]]></out_refund_no></root>";
        let enc = refund_req_info_encrypt(key, plain);
        assert_eq!(enc, REFUND_VECTOR);
        assert_eq!(refund_req_info_decrypt(key, &enc).expect("dec"), plain);
        assert!(refund_req_info_decrypt("wrongwrongwrongwrongwrongwrong12", &enc).is_err());
    }

    const REFUND_VECTOR: &str =
        "c4VF9Oes6x9KEr2vYaWe+4NOghtXdq0ZNy9TTSX0L/n2sqxcVYY+DXVQ8/4cA7J78xYUeXdn2dxzpAksfoz3Sw==";
}
