//! Login, profiles, runner applications and official-account bind codes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use campus_dal::users::{self as q, ProfileUpdate, User};
use campus_dal::{UserId, time};

use crate::Services;
use crate::auth::AuthError;
use crate::crypto::{CryptoError, random_digits};
use crate::db::DbError;
use crate::wechat::mini::WechatError;

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("WeChat rejected the login code")]
    InvalidCode,
    #[error(transparent)]
    Wechat(WechatError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error("{0}")]
    Invalid(String),
    #[error("user not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

impl From<campus_dal::DieselError> for UserError {
    fn from(e: campus_dal::DieselError) -> Self {
        UserError::Db(DbError::Query(e))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Customer,
    Runner,
    Admin,
}

impl Role {
    pub fn parse(s: &str) -> Role {
        match s {
            "runner" => Role::Runner,
            "admin" => Role::Admin,
            _ => Role::Customer,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Customer => "customer",
            Role::Runner => "runner",
            Role::Admin => "admin",
        }
    }
}

/// The authenticated caller, as the API layer hands it to handlers.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub id: UserId,
    pub role: Role,
    pub row: User,
}

/// A user as the contract shows it. Phone and dorm are decrypted for the owner only.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct UserView {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub role: Role,
    pub nickname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dorm: Option<String>,
    pub runner_applied: bool,
    pub mp_bound: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LoginResult {
    pub token: String,
    pub expires_at: DateTime<Utc>,
    pub user: UserView,
}

/// `PATCH /me`: absent fields stay; `null` clears.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProfilePatch {
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub nickname: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub phone: Option<Option<String>>,
    #[serde(default, with = "double_option")]
    #[schema(value_type = Option<String>)]
    pub dorm: Option<Option<String>>,
}

/// Distinguishes a missing field (outer `None`) from an explicit `null`.
mod double_option {
    use serde::{Deserialize, Deserializer};

    pub fn deserialize<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
    where
        D: Deserializer<'de>,
        T: Deserialize<'de>,
    {
        Option::<T>::deserialize(d).map(Some)
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BindCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

fn validate_text(field: &str, v: &str, max_chars: usize) -> Result<(), UserError> {
    if v.chars().count() > max_chars {
        return Err(UserError::Invalid(format!(
            "{field} must be at most {max_chars} characters"
        )));
    }
    if v.chars().any(char::is_control) {
        return Err(UserError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(())
}

fn validate_phone(v: &str) -> Result<(), UserError> {
    let digits = v.strip_prefix('+').unwrap_or(v);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(UserError::Invalid(
            "phone must be 5 to 20 digits, optionally starting with +".into(),
        ))
    }
}

impl Services {
    pub fn user_view(&self, u: &User, with_private: bool) -> Result<UserView, UserError> {
        let dec = |v: &Option<String>| -> Result<Option<String>, UserError> {
            match v {
                Some(enc) if with_private => Ok(Some(self.cipher.decrypt(enc)?)),
                _ => Ok(None),
            }
        };
        Ok(UserView {
            id: u.user_id(),
            role: Role::parse(&u.role),
            nickname: u.nickname.clone(),
            phone: dec(&u.phone_enc)?,
            dorm: dec(&u.dorm_enc)?,
            runner_applied: u.runner_applied_at.is_some(),
            mp_bound: u.mp_openid.is_some(),
            created_at: time::to_utc(u.created_at),
        })
    }

    pub async fn login(&self, code: &str) -> Result<LoginResult, UserError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 128 {
            return Err(UserError::Invalid(
                "code must be 1 to 128 characters".into(),
            ));
        }
        let session = self.mini.code_to_session(code).await.map_err(|e| match e {
            WechatError::InvalidCode(_) => UserError::InvalidCode,
            other => UserError::Wechat(other),
        })?;
        let openid = session.openid;
        let is_admin = self.settings.admin_openid_list().contains(&openid);
        let user = self
            .db
            .write(move |c| -> Result<User, UserError> {
                let now = time::now();
                let role = if is_admin { "admin" } else { "customer" };
                let mut u = q::upsert_by_openid(c, &openid, role, now)?;
                if is_admin && u.role != "admin" {
                    q::set_role(c, u.user_id(), "admin", now)?;
                    u.role = "admin".into();
                }
                Ok(u)
            })
            .await?;
        let (token, expires_at) = self.tokens.issue(user.user_id());
        Ok(LoginResult {
            token,
            expires_at,
            user: self.user_view(&user, true)?,
        })
    }

    /// Resolves a bearer token to the current user (one primary-key read).
    pub async fn authenticate(&self, token: &str) -> Result<CurrentUser, UserError> {
        let id = self.tokens.verify(token)?;
        let row = self
            .db
            .read(move |c| q::find(c, id).map_err(UserError::from))
            .await?
            .ok_or(AuthError::UnknownUser)?;
        Ok(CurrentUser {
            id,
            role: Role::parse(&row.role),
            row,
        })
    }

    pub async fn update_profile(
        &self,
        user: &CurrentUser,
        patch: ProfilePatch,
    ) -> Result<UserView, UserError> {
        let mut upd = ProfileUpdate::default();
        if let Some(n) = patch.nickname {
            if let Some(n) = &n {
                validate_text("nickname", n, 32)?;
            }
            upd.nickname = Some(n.map(|s| s.trim().to_string()).filter(|s| !s.is_empty()));
        }
        if let Some(p) = patch.phone {
            upd.phone_enc = Some(match p {
                Some(p) => {
                    let p = p.trim().to_string();
                    validate_phone(&p)?;
                    Some(self.cipher.encrypt(&p))
                }
                None => None,
            });
        }
        if let Some(d) = patch.dorm {
            upd.dorm_enc = Some(match d {
                Some(d) => {
                    let d = d.trim().to_string();
                    validate_text("dorm", &d, 64)?;
                    Some(self.cipher.encrypt(&d))
                }
                None => None,
            });
        }
        let id = user.id;
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                upd.updated_at = Some(time::now());
                q::update_profile(c, id, &upd)?;
                q::find(c, id)?.ok_or(UserError::NotFound)
            })
            .await?;
        self.user_view(&row, true)
    }

    pub async fn apply_runner(&self, user: &CurrentUser) -> Result<UserView, UserError> {
        if user.role != Role::Customer {
            return Err(UserError::Conflict(format!(
                "already {}",
                user.role.as_str()
            )));
        }
        let id = user.id;
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                q::mark_runner_applied(c, id, time::now())?;
                q::find(c, id)?.ok_or(UserError::NotFound)
            })
            .await?;
        self.user_view(&row, false)
    }

    pub async fn approve_runner(&self, target: UserId) -> Result<UserView, UserError> {
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                let u = q::find(c, target)?.ok_or(UserError::NotFound)?;
                match u.role.as_str() {
                    "runner" => return Ok(u),
                    "admin" => return Err(UserError::Conflict("user is an admin".into())),
                    _ => {}
                }
                if u.runner_applied_at.is_none() {
                    return Err(UserError::Conflict(
                        "user has not applied to be a runner".into(),
                    ));
                }
                q::set_role(c, target, "runner", time::now())?;
                q::find(c, target)?.ok_or(UserError::NotFound)
            })
            .await?;
        self.user_view(&row, false)
    }

    pub async fn issue_bind_code(&self, user: &CurrentUser) -> Result<BindCode, UserError> {
        let id = user.id;
        let expires = Utc::now() + chrono::Duration::minutes(10);
        let code = self
            .db
            .write(move |c| -> Result<String, UserError> {
                let exp = expires.naive_utc();
                // Six digits collide now and then; a fresh draw settles it.
                for _ in 0..5 {
                    let code = random_digits(6);
                    match q::insert_bind_code(c, &code, id, exp) {
                        Ok(_) => return Ok(code),
                        Err(e) if campus_dal::is_unique_violation(&e) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                Err(UserError::Conflict("could not allocate a bind code".into()))
            })
            .await?;
        Ok(BindCode {
            code,
            expires_at: expires,
        })
    }
}
