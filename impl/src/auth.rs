//! Session tokens: HS256 JWTs carrying the user id and an expiry.

use chrono::{DateTime, Utc};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use campus_dal::UserId;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("missing bearer token")]
    Missing,
    #[error("invalid or expired token")]
    Invalid,
    #[error("the user of this token no longer exists")]
    UnknownUser,
}

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

#[derive(Clone)]
pub struct TokenIssuer {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: chrono::Duration,
}

impl TokenIssuer {
    pub fn new(secret: &[u8], ttl_secs: i64) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl: chrono::Duration::seconds(ttl_secs),
        }
    }

    pub fn issue(&self, user: UserId) -> (String, DateTime<Utc>) {
        self.issue_at(user, Utc::now())
    }

    pub fn issue_at(&self, user: UserId, now: DateTime<Utc>) -> (String, DateTime<Utc>) {
        let exp = now + self.ttl;
        let claims = Claims {
            sub: user.0.to_string(),
            iat: now.timestamp(),
            exp: exp.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .expect("HS256 signing of a small claim set does not fail");
        (token, exp)
    }

    pub fn verify(&self, token: &str) -> Result<UserId, AuthError> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| AuthError::Invalid)?;
        data.claims
            .sub
            .parse::<i64>()
            .map(UserId)
            .map_err(|_| AuthError::Invalid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_expiry_and_tamper() {
        let t = TokenIssuer::new(b"secret-one", 60);
        let (tok, _) = t.issue(UserId(7));
        assert_eq!(t.verify(&tok).expect("valid"), UserId(7));
        let other = TokenIssuer::new(b"secret-two", 60);
        assert!(other.verify(&tok).is_err(), "wrong key");
        let (old, _) = t.issue_at(UserId(7), Utc::now() - chrono::Duration::seconds(120));
        assert!(t.verify(&old).is_err(), "expired");
        let mut parts: Vec<String> = tok.split('.').map(str::to_string).collect();
        parts[1] = parts[1].chars().rev().collect();
        assert!(t.verify(&parts.join(".")).is_err(), "tampered payload");
        let none = tok.replacen(
            tok.split('.').next().expect("header"),
            "eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0",
            1,
        );
        assert!(t.verify(&none).is_err(), "alg none");
    }
}
