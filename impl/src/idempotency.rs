//! `Idempotency-Key` on the POSTs that create something (orders, coupons, claims, draws,
//! withdrawals, expenses, reimbursements): a retry with the same key and the same request gets the first answer, the
//! same key with another request is refused. Keys are per user and shared by every
//! endpoint, so a request's fingerprint names its endpoint.
//!
//! The look-up and the record are made inside the creating transaction, after the lock
//! that serialises the user's requests (taken first): two copies of one request in flight
//! at once, on any instances, create one thing.

use chrono::NaiveDateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};

use campus_dal::idempotency::{self as store, Remembered};
use campus_dal::{Conn, UserId};

use crate::text::InvalidInput;

/// Longest key accepted.
const MAX_LEN: usize = 128;

/// A created thing, and whether it is the first answer to a repeated key.
pub struct Made<T> {
    pub view: T,
    pub replayed: bool,
}

/// A key as the client sent it, checked: 1 to 128 ASCII characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Key(String);

impl Key {
    pub fn parse(raw: Option<String>) -> Result<Option<Self>, InvalidInput> {
        match raw {
            None => Ok(None),
            Some(k) if k.is_empty() || k.len() > MAX_LEN || !k.is_ascii() => Err(
                InvalidInput::new("Idempotency-Key must be 1 to 128 ASCII characters"),
            ),
            Some(k) => Ok(Some(Self(k))),
        }
    }
}

/// What one request is: its endpoint and its body, digested to the 64 characters stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fingerprint(String);

impl Fingerprint {
    pub fn of(endpoint: &str, body: &impl Serialize) -> Self {
        let mut d = Sha256::new();
        d.update(endpoint.as_bytes());
        d.update([0]);
        // The bodies are plain structs, which serialise; were one not to, the endpoint
        // alone would still tell requests of different endpoints apart.
        d.update(serde_json::to_vec(body).unwrap_or_default());
        Self(hex::encode(d.finalize()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum IdempotencyError {
    #[error("this Idempotency-Key was used with a different request")]
    Reused,
    #[error(transparent)]
    Db(#[from] campus_dal::DieselError),
}

/// The first answer to `key`, when this request repeats an earlier one; `None` without a
/// key or for a new one.
pub fn earlier(
    c: &mut Conn,
    user: UserId,
    key: Option<&Key>,
    fingerprint: &Fingerprint,
) -> Result<Option<Remembered>, IdempotencyError> {
    let Some(key) = key else {
        return Ok(None);
    };
    match store::find(c, user, &key.0)? {
        None => Ok(None),
        Some(prev) if prev.request_hash == fingerprint.0 => Ok(Some(prev)),
        Some(_) => Err(IdempotencyError::Reused),
    }
}

/// Like [`earlier`], for the endpoints that remember the id of what they created.
pub fn earlier_id(
    c: &mut Conn,
    user: UserId,
    key: Option<&Key>,
    fingerprint: &Fingerprint,
) -> Result<Option<i64>, IdempotencyError> {
    earlier(c, user, key, fingerprint)?
        .map(|prev| {
            prev.response
                .parse::<i64>()
                .map_err(|_| IdempotencyError::Reused)
        })
        .transpose()
}

/// Records the answer to `key` (nothing without a key), in the creating transaction.
pub fn remember(
    c: &mut Conn,
    user: UserId,
    key: Option<&Key>,
    fingerprint: &Fingerprint,
    status: u16,
    response: &str,
    now: NaiveDateTime,
) -> Result<(), campus_dal::DieselError> {
    if let Some(key) = key {
        store::insert(
            c,
            user,
            &key.0,
            &fingerprint.0,
            i32::from(status),
            response,
            now,
        )?;
    }
    Ok(())
}

/// `From<IdempotencyError>` for the errors of services that take keys: a reused key is
/// their `IdempotencyConflict`, a database error their own.
macro_rules! from_idempotency {
    ($($t:ty),+ $(,)?) => {
        $(impl From<IdempotencyError> for $t {
            fn from(e: IdempotencyError) -> Self {
                match e {
                    IdempotencyError::Reused => Self::IdempotencyConflict,
                    IdempotencyError::Db(e) => Self::from(e),
                }
            }
        })+
    };
}

from_idempotency!(
    crate::orders::OrderError,
    crate::promotions::PromotionError,
    crate::promotions::draws::DrawError,
    crate::payouts::PayoutError,
    crate::expenses::ExpenseError,
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_one_to_128_ascii_characters() {
        assert_eq!(Key::parse(None).ok(), Some(None));
        assert!(Key::parse(Some("k-1".into())).is_ok_and(|k| k.is_some()));
        assert!(Key::parse(Some("a".repeat(128))).is_ok());
        assert!(Key::parse(Some("a".repeat(129))).is_err());
        assert!(Key::parse(Some(String::new())).is_err());
        assert!(Key::parse(Some("键".into())).is_err());
    }

    #[test]
    fn a_fingerprint_names_its_endpoint_and_body() {
        let a = Fingerprint::of("orders", &serde_json::json!({"fee_fen": 300}));
        assert_eq!(
            a,
            Fingerprint::of("orders", &serde_json::json!({"fee_fen": 300}))
        );
        assert_ne!(
            a,
            Fingerprint::of("orders", &serde_json::json!({"fee_fen": 301}))
        );
        assert_ne!(
            a,
            Fingerprint::of("draws", &serde_json::json!({"fee_fen": 300}))
        );
        assert_eq!(a.0.len(), 64, "what the column holds");
    }
}
