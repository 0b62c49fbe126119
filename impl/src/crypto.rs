//! Field encryption at rest (phone, dorm): AES-256-GCM, a fresh random nonce per
//! value, stored as base64(nonce || ciphertext || tag) with a version prefix so
//! the scheme can change without guessing.

use aes_gcm::aead::{Aead, KeyInit};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use rand::RngCore;

const PREFIX: &str = "v1:";

#[derive(Clone)]
pub struct FieldCipher {
    cipher: Aes256Gcm,
}

#[derive(Debug, thiserror::Error)]
pub enum CryptoError {
    #[error("field encryption key must be 64 hex characters")]
    BadKey,
    #[error("stored value could not be decrypted")]
    Corrupt,
}

impl std::fmt::Debug for FieldCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FieldCipher(..)")
    }
}

impl FieldCipher {
    pub fn from_hex(key_hex: &str) -> Result<Self, CryptoError> {
        let key = hex::decode(key_hex.trim()).map_err(|_| CryptoError::BadKey)?;
        let cipher = Aes256Gcm::new_from_slice(&key).map_err(|_| CryptoError::BadKey)?;
        Ok(Self { cipher })
    }

    pub fn encrypt(&self, plain: &str) -> String {
        let mut nonce = [0u8; 12];
        rand::rng().fill_bytes(&mut nonce);
        let ct = self
            .cipher
            .encrypt(Nonce::from_slice(&nonce), plain.as_bytes())
            .expect("AES-GCM encryption of an in-memory buffer does not fail");
        let mut out = nonce.to_vec();
        out.extend_from_slice(&ct);
        format!("{PREFIX}{}", B64.encode(out))
    }

    pub fn decrypt(&self, stored: &str) -> Result<String, CryptoError> {
        let raw = stored.strip_prefix(PREFIX).ok_or(CryptoError::Corrupt)?;
        let bytes = B64.decode(raw).map_err(|_| CryptoError::Corrupt)?;
        if bytes.len() < 12 {
            return Err(CryptoError::Corrupt);
        }
        let (nonce, ct) = bytes.split_at(12);
        let plain = self
            .cipher
            .decrypt(Nonce::from_slice(nonce), ct)
            .map_err(|_| CryptoError::Corrupt)?;
        String::from_utf8(plain).map_err(|_| CryptoError::Corrupt)
    }
}

/// Random alphanumeric string, for nonces, codes and keys.
pub fn random_alnum(len: usize) -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(len)
        .map(char::from)
        .collect()
}

/// A fresh 256-bit key as 64 hex characters (for FIELD_ENCRYPTION_KEY).
pub fn random_hex_key() -> String {
    let mut k = [0u8; 32];
    rand::rng().fill_bytes(&mut k);
    hex::encode(k)
}

/// Random decimal digits (one-time codes people type).
pub fn random_digits(len: usize) -> String {
    use rand::Rng;
    let mut rng = rand::rng();
    (0..len)
        .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_fresh_nonce() {
        let c = FieldCipher::from_hex(&"11".repeat(32)).expect("key");
        let a = c.encrypt("13800138000");
        let b = c.encrypt("13800138000");
        assert_ne!(a, b, "each value gets a fresh nonce");
        assert!(!a.contains("13800138000"));
        assert_eq!(c.decrypt(&a).expect("decrypt"), "13800138000");
    }

    #[test]
    fn tampered_value_is_rejected() {
        let c = FieldCipher::from_hex(&"11".repeat(32)).expect("key");
        let mut a = c.encrypt("room 301").into_bytes();
        let last = a.len() - 2;
        a[last] = if a[last] == b'A' { b'B' } else { b'A' };
        assert!(c.decrypt(&String::from_utf8(a).expect("utf8")).is_err());
        assert!(FieldCipher::from_hex("abcd").is_err());
    }
}
