//! Login, profiles, runner applications and official-account bind codes.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use std::sync::Arc;

use campus_dal::users::{self as q, ProfileUpdate, User};
use campus_dal::{ContentSubject, time};
pub use campus_dal::{Role, UserId};

use crate::auth::{AuthError, TokenIssuer};
use crate::content_check::{ContentChecks, ContentRejected, Findings};
use crate::crypto::{CryptoError, FieldCipher, random_digits};
use crate::db::{Db, DbError};
use crate::orders::Page;
use crate::text::{InvalidInput, TextRule, id_cursor, into_page, page_limit_text, search_text};
use crate::wechat::mini::{MiniClient, WechatError};

const NICKNAME: TextRule = TextRule::line("nickname", 32);
const DORM: TextRule = TextRule::line("dorm", 64);

/// The user service: login, sessions, profiles, runner applications, bind codes.
#[derive(Clone)]
pub struct Users {
    db: Db,
    mini: MiniClient,
    tokens: TokenIssuer,
    cipher: FieldCipher,
    /// `ADMIN_OPENIDS`, read at every login.
    admin_openids: Arc<[String]>,
    /// WeChat's check of the nickname; `None`: not checked.
    content: Option<ContentChecks>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("WeChat rejected the login code")]
    InvalidCode,
    /// WeChat refuses this user's logins (a high-risk account): logging in again loops.
    #[error("WeChat blocked this account's login; the user must resolve it with WeChat")]
    LoginBlocked,
    #[error(transparent)]
    Wechat(WechatError),
    #[error(transparent)]
    Auth(#[from] AuthError),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("this account is banned")]
    Banned,
    #[error(transparent)]
    ContentRejected(#[from] ContentRejected),
    /// The phone-number button's code is unknown, used or expired (WeChat's 40029).
    #[error("the phone code is invalid, expired or already used")]
    InvalidPhoneCode,
    /// WeChat refused to give the number for another reason (its errcode).
    #[error("WeChat refused the phone number (errcode {0})")]
    PhoneRefused(i64),
    #[error("user not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
}

/// The caller lacks the role an action needs.
#[derive(Debug, thiserror::Error)]
#[error("this needs the {0} role")]
pub struct Forbidden(pub Role);

/// The authenticated caller, as the API layer hands it to the services.
#[derive(Clone, Debug)]
pub struct CurrentUser {
    pub id: UserId,
    pub role: Role,
    pub row: User,
}

impl CurrentUser {
    /// Runners' work is open to admins too; admin work to admins only.
    pub fn require(&self, role: Role) -> Result<(), Forbidden> {
        let ok = match role {
            Role::Customer => true,
            Role::Runner => matches!(self.role, Role::Runner | Role::Admin),
            Role::Admin => self.role == Role::Admin,
        };
        if ok { Ok(()) } else { Err(Forbidden(role)) }
    }
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
    /// The newest avatar that passed WeChat's content check; `null` before.
    pub avatar_url: Option<String>,
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

/// `POST /me/phone`: the code of the mini-program's phone-number button.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PhoneCode {
    pub code: String,
}

/// The number as stored, masked: the first 3 and last 4 digits (`138****8000`).
#[derive(Debug, Serialize, ToSchema)]
pub struct MaskedPhone {
    pub phone: String,
}

/// Keeps the first 3 and last 4 characters of a number and stars the rest; a number too
/// short for that shows only its last 4 (or nothing).
pub fn mask_phone(p: &str) -> String {
    let chars: Vec<char> = p.chars().collect();
    let n = chars.len();
    let (head, tail) = match n {
        0..=4 => (0, 0),
        5..=7 => (0, 4),
        _ => (3, 4),
    };
    chars
        .iter()
        .enumerate()
        .map(|(i, c)| if i < head || i >= n - tail { *c } else { '*' })
        .collect()
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BindCode {
    pub code: String,
    pub expires_at: DateTime<Utc>,
}

fn validate_phone(v: &str) -> Result<(), InvalidInput> {
    let digits = v.strip_prefix('+').unwrap_or(v);
    if (5..=20).contains(&digits.len()) && digits.bytes().all(|b| b.is_ascii_digit()) {
        Ok(())
    } else {
        Err(InvalidInput::new(
            "phone must be 5 to 20 digits, optionally starting with +",
        ))
    }
}

impl Users {
    pub fn new(
        db: Db,
        mini: MiniClient,
        tokens: TokenIssuer,
        cipher: FieldCipher,
        admin_openids: Vec<String>,
    ) -> Self {
        Self {
            db,
            mini,
            tokens,
            cipher,
            admin_openids: admin_openids.into(),
            content: None,
        }
    }

    /// Nicknames pass WeChat's content check.
    pub fn with_content_checks(mut self, content: ContentChecks) -> Self {
        self.content = Some(content);
        self
    }

    /// The caller's own profile, private fields included.
    pub fn me(&self, user: &CurrentUser) -> Result<UserView, UserError> {
        self.view(&user.row, true)
    }

    fn view(&self, u: &User, with_private: bool) -> Result<UserView, UserError> {
        let dec = |v: &Option<String>| -> Result<Option<String>, UserError> {
            match v {
                Some(enc) if with_private => Ok(Some(self.cipher.decrypt(enc)?)),
                _ => Ok(None),
            }
        };
        Ok(UserView {
            id: u.id,
            role: u.role,
            nickname: u.nickname.clone(),
            phone: dec(&u.phone_enc)?,
            dorm: dec(&u.dorm_enc)?,
            runner_applied: u.runner_applied_at.is_some(),
            mp_bound: u.mp_openid.is_some(),
            avatar_url: u.avatar_url.clone(),
            created_at: time::to_utc(u.created_at),
        })
    }

    pub async fn login(&self, code: &str) -> Result<LoginResult, UserError> {
        let code = code.trim();
        if code.is_empty() || code.len() > 128 {
            return Err(InvalidInput::new("code must be 1 to 128 characters").into());
        }
        let session = self.mini.code_to_session(code).await.map_err(|e| match e {
            WechatError::InvalidCode(_) => UserError::InvalidCode,
            WechatError::LoginBlocked(_) => UserError::LoginBlocked,
            other => UserError::Wechat(other),
        })?;
        let openid = session.openid;
        let is_admin = self.admin_openids.contains(&openid);
        let user = self
            .db
            .write(move |c| -> Result<User, UserError> {
                let now = time::now();
                let role = if is_admin {
                    Role::Admin
                } else {
                    Role::Customer
                };
                let mut u = q::upsert_by_openid(c, &openid, role, now)?;
                if u.banned_at.is_some() {
                    return Err(UserError::Banned);
                }
                // An admin role from ADMIN_OPENIDS is derived again at every login: added
                // openids are promoted, removed ones demoted to customer. One an admin
                // granted through the admin API (`role_granted_by`) is not the config's to
                // take back. Whether a demoted admin was also approved as a runner is not
                // recorded (approval sets the role), so they apply again like anyone else.
                let derived = match (is_admin, u.role) {
                    (true, _) => Role::Admin,
                    (false, Role::Admin) if u.role_granted_by.is_none() => Role::Customer,
                    (false, other) => other,
                };
                if derived != u.role || (is_admin && u.role_granted_by.is_some()) {
                    q::set_role(c, u.id, derived, now)?;
                    u.role = derived;
                }
                Ok(u)
            })
            .await?;
        let (token, expires_at) = self.tokens.issue(user.id);
        Ok(LoginResult {
            token,
            expires_at,
            user: self.view(&user, true)?,
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
        // Read with the row on every request, so a ban holds at once on every instance.
        if row.banned_at.is_some() {
            return Err(UserError::Banned);
        }
        // A token issued before the openid left ADMIN_OPENIDS carries no admin rights
        // (an admin role granted through the admin API is not the config's).
        let role = if row.role == Role::Admin
            && row.role_granted_by.is_none()
            && !self.admin_openids.contains(&row.openid)
        {
            Role::Customer
        } else {
            row.role
        };
        Ok(CurrentUser { id, role, row })
    }

    pub async fn update_profile(
        &self,
        user: &CurrentUser,
        patch: ProfilePatch,
    ) -> Result<UserView, UserError> {
        let mut upd = ProfileUpdate::default();
        if let Some(n) = patch.nickname {
            upd.nickname = Some(match n {
                Some(n) => Some(NICKNAME.clean(&n)?).filter(|s| !s.is_empty()),
                None => None,
            });
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
                Some(d) => Some(self.cipher.encrypt(&DORM.clean(&d)?)),
                None => None,
            });
        }
        let findings = match (&self.content, &upd.nickname) {
            (Some(cc), Some(Some(nick))) => cc.check(user, 1, &[("nickname", nick)]).await?,
            _ => Findings::default(),
        };
        let id = user.id;
        let row = self
            .db
            .write_tx(move |c| -> Result<User, UserError> {
                upd.updated_at = Some(time::now());
                q::update_profile(c, id, &upd)?;
                findings.record(c, id, ContentSubject::Profile, id.0)?;
                q::find(c, id)?.ok_or(UserError::NotFound)
            })
            .await?;
        self.view(&row, true)
    }

    /// `POST /me/phone`: the number WeChat gives for the phone-number button's code,
    /// stored encrypted as the profile's phone.
    pub async fn set_phone_by_code(
        &self,
        user: &CurrentUser,
        req: PhoneCode,
    ) -> Result<MaskedPhone, UserError> {
        let code = req.code.trim();
        if code.is_empty() || code.len() > 256 || !code.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(InvalidInput::new("code must be 1 to 256 visible ASCII characters").into());
        }
        let number = self.mini.phone_number(code).await.map_err(|e| match e {
            WechatError::InvalidCode(_) => UserError::InvalidPhoneCode,
            WechatError::Api { code, .. } => UserError::PhoneRefused(code),
            other => UserError::Wechat(other),
        })?;
        let phone = number.stored_form();
        let enc = self.cipher.encrypt(&phone);
        let id = user.id;
        self.db
            .write(move |c| -> Result<(), UserError> {
                let upd = ProfileUpdate {
                    phone_enc: Some(Some(enc)),
                    updated_at: Some(time::now()),
                    ..ProfileUpdate::default()
                };
                q::update_profile(c, id, &upd)?;
                Ok(())
            })
            .await?;
        Ok(MaskedPhone {
            phone: mask_phone(&phone),
        })
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
        self.view(&row, false)
    }

    /// An admin makes an applicant a runner.
    pub async fn approve_runner(
        &self,
        caller: &CurrentUser,
        target: UserId,
    ) -> Result<UserView, UserError> {
        caller.require(Role::Admin)?;
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                let u = q::find(c, target)?.ok_or(UserError::NotFound)?;
                match u.role {
                    Role::Runner => return Ok(u),
                    Role::Admin => return Err(UserError::Conflict("user is an admin".into())),
                    Role::Customer => {}
                }
                if u.runner_applied_at.is_none() {
                    return Err(UserError::Conflict(
                        "user has not applied to be a runner".into(),
                    ));
                }
                q::set_role(c, target, Role::Runner, time::now())?;
                q::find(c, target)?.ok_or(UserError::NotFound)
            })
            .await?;
        self.view(&row, false)
    }

    pub async fn issue_bind_code(&self, user: &CurrentUser) -> Result<BindCode, UserError> {
        let id = user.id;
        let expires = Utc::now() + chrono::Duration::minutes(10);
        let code = self
            .db
            .write(move |c| -> Result<String, UserError> {
                let exp = expires.naive_utc();
                // A new code replaces the user's earlier one; used and expired codes go too.
                q::drop_stale_bind_codes(c, id, campus_dal::time::now())?;
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

/// A user as the admin lists show it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AdminUserView {
    #[schema(value_type = i64)]
    pub id: UserId,
    pub openid: String,
    pub role: Role,
    pub nickname: Option<String>,
    pub runner_applied_at: Option<DateTime<Utc>>,
    pub banned: bool,
    pub banned_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

impl AdminUserView {
    fn of(u: &User) -> Self {
        Self {
            id: u.id,
            openid: u.openid.clone(),
            role: u.role,
            nickname: u.nickname.clone(),
            runner_applied_at: u.runner_applied_at.map(time::to_utc),
            banned: u.banned_at.is_some(),
            banned_at: u.banned_at.map(time::to_utc),
            created_at: time::to_utc(u.created_at),
        }
    }
}

/// `GET /admin/users`: every value arrives as text and is checked here (422, not 400).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct AdminUserQuery {
    /// `customer`, `runner` or `admin`.
    pub role: Option<String>,
    /// A part of the nickname or the openid.
    pub q: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// A pending runner application.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct RunnerApplication {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub nickname: Option<String>,
    pub applied_at: DateTime<Utc>,
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoleChange {
    pub role: Role,
}

impl Users {
    /// `GET /admin/users`.
    pub async fn admin_list(
        &self,
        caller: &CurrentUser,
        query: AdminUserQuery,
    ) -> Result<Page<AdminUserView>, UserError> {
        caller.require(Role::Admin)?;
        let role = match query.role.as_deref() {
            None | Some("") => None,
            Some(r) => Some(
                Role::parse(r)
                    .ok_or_else(|| InvalidInput::new("role must be customer, runner or admin"))?,
            ),
        };
        let text = search_text(query.q.as_deref())?;
        let limit = page_limit_text(query.limit.as_deref())?;
        let before = id_cursor(query.cursor.as_deref())?.map(UserId);
        let rows = self
            .db
            .read(move |c| {
                q::list(c, role, text.as_deref(), before, limit).map_err(UserError::from)
            })
            .await?;
        Ok(into_page(rows, limit, |u| u.id.0, AdminUserView::of))
    }

    /// `GET /admin/runner-applications`: applied and still a customer, oldest first.
    pub async fn runner_applications(
        &self,
        caller: &CurrentUser,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<RunnerApplication>, UserError> {
        caller.require(Role::Admin)?;
        let limit = page_limit_text(limit)?;
        let after = id_cursor(cursor)?.map(UserId);
        let rows = self
            .db
            .read(move |c| q::runner_applications(c, after, limit).map_err(UserError::from))
            .await?;
        Ok(into_page(
            rows,
            limit,
            |u| u.id.0,
            |u| RunnerApplication {
                user_id: u.id,
                nickname: u.nickname.clone(),
                applied_at: time::to_utc(u.runner_applied_at.unwrap_or(u.created_at)),
            },
        ))
    }

    /// `POST /admin/users/{id}/role`. An admin does not change their own role, so the
    /// console cannot lock out the last admin by a slip.
    pub async fn set_role(
        &self,
        caller: &CurrentUser,
        target: UserId,
        role: Role,
    ) -> Result<AdminUserView, UserError> {
        caller.require(Role::Admin)?;
        if target == caller.id {
            return Err(UserError::Conflict(
                "you cannot change your own role".into(),
            ));
        }
        let caller_id = caller.id;
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                q::find(c, target)?.ok_or(UserError::NotFound)?;
                q::grant_role(c, target, role, caller_id, time::now())?;
                q::find(c, target)?.ok_or(UserError::NotFound)
            })
            .await?;
        Ok(AdminUserView::of(&row))
    }

    /// `POST /admin/users/{id}/ban` and `/unban`. Takes effect on the user's next call
    /// (every authenticated call reads the row).
    pub async fn set_banned(
        &self,
        caller: &CurrentUser,
        target: UserId,
        banned: bool,
    ) -> Result<AdminUserView, UserError> {
        caller.require(Role::Admin)?;
        if target == caller.id {
            return Err(UserError::Conflict("you cannot ban yourself".into()));
        }
        let row = self
            .db
            .write(move |c| -> Result<User, UserError> {
                let u = q::find(c, target)?.ok_or(UserError::NotFound)?;
                let now = time::now();
                match (banned, u.banned_at) {
                    // Banning again keeps the first time.
                    (true, Some(_)) | (false, None) => return Ok(u),
                    (true, None) => q::set_banned(c, target, Some(now), now)?,
                    (false, Some(_)) => q::set_banned(c, target, None, now)?,
                };
                q::find(c, target)?.ok_or(UserError::NotFound)
            })
            .await?;
        Ok(AdminUserView::of(&row))
    }
}

#[cfg(test)]
mod tests {
    use super::mask_phone;

    #[test]
    fn phones_are_masked_to_first_three_and_last_four() {
        assert_eq!(mask_phone("13800138000"), "138****8000");
        assert_eq!(mask_phone("+85291234567"), "+85*****4567");
        assert_eq!(mask_phone("1234567"), "***4567");
        assert_eq!(mask_phone("1234"), "****");
        assert_eq!(mask_phone(""), "");
    }
}
