//! Signing in to the operators' console by scanning: the page asks for a session and
//! shows a mini-program code naming it (scene `cs=<id>`); an admin signed in on the
//! mini-program approves it; the page, polling, receives a session token once.
//!
//! Sessions live in the cache (Redis when `REDIS_URL` is set), so every instance sees
//! the same session; each step is one atomic cache operation, so two approvals or two
//! polls cannot both win.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use campus_dal::ConsoleSessionStatus;

use crate::auth::TokenIssuer;
use crate::cache::{Cache, CacheError};
use crate::crypto::random_alnum;
use crate::qrcodes::{MiniCodeError, QrCodes};
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::wxacode::WxaCodeParams;

/// Random characters of a session id: `cs=` and the id fill WeChat's 32-character
/// scene; 29 alphanumerics are about 172 bits, beyond guessing.
const ID_CHARS: usize = 29;
/// Sessions one client address may open per window: each costs a WeChat call.
const OPENS_PER_WINDOW: usize = 20;
const OPEN_WINDOW: Duration = Duration::from_secs(300);

/// The console sign-in service.
#[derive(Clone)]
pub struct ConsoleSessions {
    cache: Cache,
    /// Prefix of every key: the mini-program's appid, as a shared Redis may serve
    /// several.
    namespace: String,
    tokens: TokenIssuer,
    qrcodes: QrCodes,
    ttl: chrono::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum ConsoleError {
    #[error("no such console session, or it expired")]
    NotFound,
    #[error("this console session was already approved")]
    AlreadyApproved,
    #[error("too many console sessions from this address; try again in a few minutes")]
    RateLimited,
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Code(#[from] MiniCodeError),
}

/// `POST /console/sessions`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct NewSession {
    /// Unguessable; the mini-program reads it from the code's scene (`cs=<id>`).
    pub id: String,
    /// The mini-program code to scan.
    pub qrcode_url: String,
    pub expires_at: DateTime<Utc>,
}

/// `GET /console/sessions/{id}`.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct SessionPoll {
    pub status: ConsoleSessionStatus,
    /// The admin's session token: in the first answer after the approval only.
    pub token: Option<String>,
}

fn well_formed(id: &str) -> bool {
    id.len() == ID_CHARS && id.bytes().all(|b| b.is_ascii_alphanumeric())
}

impl ConsoleSessions {
    pub fn new(
        cache: Cache,
        namespace: &str,
        tokens: TokenIssuer,
        qrcodes: QrCodes,
        ttl_secs: i64,
    ) -> Self {
        Self {
            cache,
            namespace: namespace.to_string(),
            tokens,
            qrcodes,
            ttl: chrono::Duration::seconds(ttl_secs.max(1)),
        }
    }

    fn session_key(&self, id: &str) -> String {
        format!("console:{}:session:{id}", self.namespace)
    }

    fn approval_key(&self, id: &str) -> String {
        format!("console:{}:approval:{id}", self.namespace)
    }

    fn delivered_key(&self, id: &str) -> String {
        format!("console:{}:delivered:{id}", self.namespace)
    }

    /// The time left of a session, from its stored expiry; `None` once it is over.
    async fn remaining(&self, id: &str) -> Result<Option<Duration>, ConsoleError> {
        let Some(v) = self.cache.get(&self.session_key(id)).await? else {
            return Ok(None);
        };
        let left = v
            .parse::<i64>()
            .ok()
            .and_then(|exp| DateTime::<Utc>::from_timestamp(exp, 0))
            .map(|exp| exp - Utc::now())
            .and_then(|d| d.to_std().ok())
            .filter(|d| !d.is_zero());
        Ok(left)
    }

    /// Opens a session for the page at `client` (its address, for the limit).
    pub async fn open(&self, client: &str) -> Result<NewSession, ConsoleError> {
        let mut admitted = false;
        for slot in 0..OPENS_PER_WINDOW {
            let key = format!("console:{}:opens:{client}:{slot}", self.namespace);
            // A claim's value must be this caller's own (see `Cache::set_nx_ex`).
            if self
                .cache
                .set_nx_ex(&key, &random_alnum(16), OPEN_WINDOW)
                .await?
            {
                admitted = true;
                break;
            }
        }
        if !admitted {
            return Err(ConsoleError::RateLimited);
        }
        let id = random_alnum(ID_CHARS);
        let expires_at = Utc::now() + self.ttl;
        let ttl = self.ttl.to_std().unwrap_or(Duration::from_secs(300));
        self.cache
            .set_ex(
                &self.session_key(&id),
                &expires_at.timestamp().to_string(),
                ttl,
            )
            .await?;
        let params = WxaCodeParams::parse(Some(&format!("cs={id}")), None, None, None, None)
            .map_err(MiniCodeError::from)?;
        let code = self.qrcodes.mini_program_code(params).await?;
        Ok(NewSession {
            id,
            qrcode_url: code.url,
            expires_at,
        })
    }

    /// An admin, signed in on the mini-program, approves the session they scanned.
    pub async fn approve(
        &self,
        caller: &CurrentUser,
        id: &str,
    ) -> Result<SessionPoll, ConsoleError> {
        caller.require(Role::Admin)?;
        if !well_formed(id) {
            return Err(ConsoleError::NotFound);
        }
        let left = self.remaining(id).await?.ok_or(ConsoleError::NotFound)?;
        let (token, _) = self.tokens.issue(caller.id);
        // The approval and the token are one key: set once, by the first approver. Two
        // approvals by one admin in one second would issue the same token, so the claim's
        // value leads with a part of this call's own (see `Cache::set_nx_ex`).
        let claim = format!("{}.{token}", random_alnum(16));
        if !self
            .cache
            .set_nx_ex(&self.approval_key(id), &claim, left)
            .await?
        {
            return Err(ConsoleError::AlreadyApproved);
        }
        Ok(SessionPoll {
            status: ConsoleSessionStatus::Approved,
            token: None,
        })
    }

    /// What the page polls. The token is in the first answer after the approval only.
    pub async fn poll(&self, id: &str) -> Result<SessionPoll, ConsoleError> {
        if !well_formed(id) {
            return Err(ConsoleError::NotFound);
        }
        let answer = |status, token| Ok(SessionPoll { status, token });
        let Some(left) = self.remaining(id).await? else {
            return answer(ConsoleSessionStatus::Expired, None);
        };
        if self.cache.get(&self.delivered_key(id)).await?.is_some() {
            return answer(ConsoleSessionStatus::Approved, None);
        }
        let Some(claim) = self.cache.get(&self.approval_key(id)).await? else {
            // A concurrent poll may have just taken the token and dropped the approval.
            if self.cache.get(&self.delivered_key(id)).await?.is_some() {
                return answer(ConsoleSessionStatus::Approved, None);
            }
            return answer(ConsoleSessionStatus::Pending, None);
        };
        let token = claim
            .split_once('.')
            .map_or_else(|| claim.clone(), |(_, t)| t.to_string());
        // The token goes to one poll only: the claim's value is this poll's own, so a
        // second poll (this instance or another) cannot take it too.
        if !self
            .cache
            .set_nx_ex(&self.delivered_key(id), &random_alnum(16), left)
            .await?
        {
            return answer(ConsoleSessionStatus::Approved, None);
        }
        // Handed over: the cache need not keep it.
        self.cache
            .delete_if_equals(&self.approval_key(id), &claim)
            .await?;
        answer(ConsoleSessionStatus::Approved, Some(token))
    }
}
