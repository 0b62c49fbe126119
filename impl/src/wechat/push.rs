//! Pushes from WeChat to our message URLs: the official account's (`/wechat/mp`) and the
//! mini-program's (`/wechat/mini`) share one scheme. The query signs token, timestamp and
//! nonce; safe mode adds `encrypt_type=aes` and `msg_signature` over the `Encrypt` field,
//! whose plaintext names the app. XML or JSON bodies (the mini-program's console chooses).
//!
//! A signed URL is no credential: the plain signature does not cover the body, so a push
//! must be fresh (±300 s) and, outside safe mode, a `(timestamp, nonce)` pair is good for
//! one body only.

use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};

use campus_dal::MpMode;

use crate::cache::{Cache, CacheError};
use crate::wechat::mp_crypto::{MpCrypto, MpCryptoError, check_signature};
use crate::wechat::mp_xml::parse_message;

/// A push whose timestamp is further than this from our clock is refused.
pub const MAX_SKEW_SECS: i64 = 300;
/// A `(timestamp, nonce)` pair is remembered for the whole window a timestamp is fresh.
const NONCE_TTL: Duration = Duration::from_secs(2 * MAX_SKEW_SECS as u64 + 60);

/// The query WeChat signs its pushes with.
#[derive(Clone, Debug, Default, serde::Deserialize)]
pub struct PushQuery {
    #[serde(default)]
    pub signature: String,
    #[serde(default)]
    pub timestamp: String,
    #[serde(default)]
    pub nonce: String,
    pub echostr: Option<String>,
    pub encrypt_type: Option<String>,
    pub msg_signature: Option<String>,
}

/// A message URL's server token, and its AES key when safe mode is set up.
#[derive(Clone)]
pub struct PushKeys {
    pub token: SecretString,
    pub crypto: Option<MpCrypto>,
    /// Which pushes are accepted.
    pub mode: MpMode,
}

#[derive(Debug, thiserror::Error)]
pub enum PushError {
    #[error("bad signature")]
    BadSignature,
    #[error("push timestamp missing or more than {MAX_SKEW_SECS} s off")]
    StaleTimestamp,
    #[error("this timestamp and nonce were already used for another message")]
    ReplayedNonce,
    #[error("this push mode is not accepted")]
    ModeRefused,
    #[error("safe mode is not set up (no AES key)")]
    NoKey,
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// A verified push: its plaintext, and whether it came in safe mode (the reply goes back
/// the same way).
pub struct Opened {
    pub text: String,
    pub safe: bool,
}

impl PushKeys {
    fn signed(&self, q: &PushQuery) -> Result<(), PushError> {
        let token = self.token.expose_secret();
        if check_signature(token, &q.timestamp, &q.nonce, &q.signature) {
            Ok(())
        } else {
            Err(PushError::BadSignature)
        }
    }

    /// The URL check: `echostr` when the signature holds.
    pub fn echo(&self, q: &PushQuery) -> Result<String, PushError> {
        self.signed(q)?;
        Ok(q.echostr.clone().unwrap_or_default())
    }

    /// The safe-mode key, when the push came encrypted.
    pub fn crypto_for(&self, opened: &Opened) -> Option<&MpCrypto> {
        self.crypto.as_ref().filter(|_| opened.safe)
    }

    /// Verifies a push (mode, signature, freshness, a plain pair's single use) and returns
    /// its plaintext. `scope` keeps the pairs of different URLs apart in the cache.
    pub async fn open(
        &self,
        cache: &Cache,
        scope: &str,
        q: &PushQuery,
        body: &[u8],
    ) -> Result<Opened, PushError> {
        let safe = q.encrypt_type.as_deref() == Some("aes");
        match (self.mode, safe) {
            (MpMode::Safe, false) | (MpMode::Plain, true) => return Err(PushError::ModeRefused),
            _ => {}
        }
        let crypto = if safe {
            Some(self.crypto.as_ref().ok_or(PushError::NoKey)?)
        } else {
            None
        };
        // Both modes carry the plain signature; safe mode adds msg_signature over Encrypt.
        self.signed(q)?;
        let sent = q
            .timestamp
            .trim()
            .parse::<i64>()
            .map_err(|_| PushError::StaleTimestamp)?;
        if (chrono::Utc::now().timestamp() - sent).abs() > MAX_SKEW_SECS {
            return Err(PushError::StaleTimestamp);
        }
        if !safe {
            // The signature does not cover the body: the pair it signs is good for this
            // body only. The same body again is WeChat retrying, answered by the caller.
            let digest = hex::encode(Sha256::digest(body));
            let key = format!("{scope}:nonce:{}:{}", q.timestamp.trim(), q.nonce);
            if !cache.set_nx_ex(&key, &digest, NONCE_TTL).await? {
                return Err(PushError::ReplayedNonce);
            }
        }
        let Some(c) = crypto else {
            let text =
                std::str::from_utf8(body).map_err(|_| PushError::Malformed("not UTF-8".into()))?;
            return Ok(Opened {
                text: text.to_string(),
                safe,
            });
        };
        let enc = encrypted_field(body)?;
        let sig = q.msg_signature.as_deref().unwrap_or("");
        let text = c
            .decrypt(sig, &q.timestamp, &q.nonce, &enc)
            .map_err(|e| match e {
                MpCryptoError::BadSignature => PushError::BadSignature,
                other => PushError::Malformed(other.to_string()),
            })?;
        Ok(Opened { text, safe })
    }
}

/// Whether a body is JSON (else XML).
pub fn is_json(body: &[u8]) -> bool {
    body.iter()
        .find(|b| !b.is_ascii_whitespace())
        .is_some_and(|b| *b == b'{')
}

/// The `Encrypt` field of a safe-mode body, XML or JSON.
fn encrypted_field(body: &[u8]) -> Result<String, PushError> {
    let found = if is_json(body) {
        serde_json::from_slice::<serde_json::Value>(body)
            .map_err(|e| PushError::Malformed(e.to_string()))?
            .get("Encrypt")
            .and_then(serde_json::Value::as_str)
            .map(str::to_string)
    } else {
        parse_message(body)
            .map_err(|e| PushError::Malformed(e.to_string()))?
            .remove("Encrypt")
    };
    found.ok_or_else(|| PushError::Malformed("no Encrypt".into()))
}
