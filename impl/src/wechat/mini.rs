//! The mini-program API: login (`jscode2session`), the shared access token
//! (`stable_token`), and the calls that need it.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use secrecy::{ExposeSecret, SecretString};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cache::{Cache, CacheError};
use crate::telemetry::Metrics;
use crate::wechat::http::{Bulkhead, HttpSetupError, client_builder};

/// Refresh this long before WeChat's expiry, so a token is never used in its last minutes.
const EARLY_REFRESH: Duration = Duration::from_secs(300);
/// How long an instance may hold the refresh lock; others wait for its token meanwhile.
const REFRESH_LOCK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum WechatError {
    #[error("WeChat rejected the login code (errcode {0})")]
    InvalidCode(i64),
    #[error("WeChat rate limit hit (errcode {0})")]
    RateLimited(i64),
    /// 40226: WeChat blocks this user's login (a high-risk account); a new code will not help.
    #[error("WeChat blocked this user's login (errcode {0})")]
    LoginBlocked(i64),
    /// -1: WeChat is busy; the same request may succeed shortly.
    #[error("WeChat is busy (errcode {0})")]
    Busy(i64),
    #[error("access token rejected (errcode {0})")]
    TokenRejected(i64),
    #[error("WeChat rejected the app credentials (errcode {0})")]
    Credentials(i64),
    #[error("WeChat error {code}: {msg}")]
    Api { code: i64, msg: String },
    #[error("WeChat unreachable: {0}")]
    Transport(reqwest::Error),
    #[error("unexpected WeChat response: {0}")]
    BadResponse(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error("timed out waiting for another instance to refresh the access token")]
    TokenBusy,
}

impl From<reqwest::Error> for WechatError {
    /// Without the URL's query: it carries `secret=` or `access_token=`.
    fn from(e: reqwest::Error) -> Self {
        Self::Transport(super::http::redact(e))
    }
}

impl WechatError {
    fn from_code(code: i64, msg: String) -> Self {
        match code {
            40029 | 40163 => WechatError::InvalidCode(code),
            40226 => WechatError::LoginBlocked(code),
            -1 => WechatError::Busy(code),
            45009 | 45011 => WechatError::RateLimited(code),
            40001 | 42001 | 40014 => WechatError::TokenRejected(code),
            40013 | 40125 | 40164 | 41002 | 41004 => WechatError::Credentials(code),
            _ => WechatError::Api { code, msg },
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            WechatError::InvalidCode(_) => "invalid_code",
            WechatError::RateLimited(_) => "rate_limited",
            WechatError::LoginBlocked(_) => "login_blocked",
            WechatError::Busy(_) => "busy",
            WechatError::TokenRejected(_) => "token_rejected",
            WechatError::Credentials(_) => "credentials",
            WechatError::Api { .. } => "api",
            WechatError::Transport(_) => "transport",
            WechatError::BadResponse(_) => "bad_response",
            WechatError::Cache(_) => "cache",
            WechatError::TokenBusy => "token_busy",
        }
    }
}

#[derive(Clone)]
pub struct MiniConfig {
    pub appid: String,
    pub secret: SecretString,
    pub api_base: String,
    pub extra_root: Option<PathBuf>,
    pub timeout: Duration,
}

/// The result of a login. `session_key` is a secret: never logged, never returned.
pub struct Session {
    pub openid: String,
    pub session_key: SecretString,
    pub unionid: Option<String>,
}

#[derive(Clone)]
pub struct MiniClient {
    http: reqwest::Client,
    cfg: Arc<MiniConfig>,
    cache: Cache,
    metrics: Metrics,
    /// One refresh per process at a time; the cache lock does the same across processes.
    refresh: Arc<tokio::sync::Mutex<()>>,
    bulkhead: Bulkhead,
}

#[derive(Deserialize)]
struct ErrBody {
    #[serde(default)]
    errcode: i64,
    #[serde(default)]
    errmsg: String,
}

#[derive(Deserialize)]
struct SessionBody {
    openid: String,
    session_key: String,
    #[serde(default)]
    unionid: Option<String>,
}

#[derive(Deserialize)]
struct TokenBody {
    access_token: String,
    expires_in: u64,
}

impl MiniClient {
    pub fn new(cfg: MiniConfig, cache: Cache, metrics: Metrics) -> Result<Self, HttpSetupError> {
        let http = client_builder(cfg.extra_root.as_deref(), cfg.timeout)?.build()?;
        Ok(Self {
            http,
            cfg: Arc::new(cfg),
            cache,
            metrics,
            refresh: Arc::new(tokio::sync::Mutex::new(())),
            bulkhead: Bulkhead::default(),
        })
    }

    pub fn appid(&self) -> &str {
        &self.cfg.appid
    }

    /// A turn at `api` (see [`Bulkhead`]).
    pub(crate) async fn turn(&self, api: &'static str) -> tokio::sync::OwnedSemaphorePermit {
        self.bulkhead.enter(api).await
    }

    pub(crate) fn http(&self) -> &reqwest::Client {
        &self.http
    }

    pub(crate) fn url(&self, path: &str) -> String {
        format!("{}{}", self.cfg.api_base.trim_end_matches('/'), path)
    }

    /// Counts a call begun at `started`, success or not.
    pub(crate) fn record<T>(&self, api: &str, started: Instant, r: &Result<T, WechatError>) {
        self.metrics.wechat_call(
            api,
            started.elapsed(),
            r.as_ref().err().map(WechatError::kind),
        );
    }

    /// Parses a JSON answer that is either `T` or WeChat's `{errcode, errmsg}`.
    pub(crate) async fn json_or_error<T: DeserializeOwned>(
        resp: reqwest::Response,
    ) -> Result<T, WechatError> {
        let bytes = resp.bytes().await?;
        if let Ok(e) = serde_json::from_slice::<ErrBody>(&bytes)
            && e.errcode != 0
        {
            return Err(WechatError::from_code(e.errcode, e.errmsg));
        }
        serde_json::from_slice(&bytes).map_err(|e| WechatError::BadResponse(e.to_string()))
    }

    /// `jscode2session`: a `wx.login` code for the user's openid.
    pub async fn code_to_session(&self, code: &str) -> Result<Session, WechatError> {
        let _turn = self.turn("jscode2session").await;
        let started = Instant::now();
        let r = async {
            let resp = self
                .http
                .get(self.url("/sns/jscode2session"))
                .query(&[
                    ("appid", self.cfg.appid.as_str()),
                    ("secret", self.cfg.secret.expose_secret()),
                    ("js_code", code),
                    ("grant_type", "authorization_code"),
                ])
                .send()
                .await?;
            let body: SessionBody = Self::json_or_error(resp).await?;
            Ok(Session {
                openid: body.openid,
                session_key: SecretString::from(body.session_key),
                unionid: body.unionid,
            })
        }
        .await;
        self.record("jscode2session", started, &r);
        r
    }

    fn token_key(&self) -> String {
        format!("wx:access_token:{}", self.cfg.appid)
    }

    /// The shared access token: from the cache, or refreshed by exactly one caller
    /// across all instances while the others wait for it.
    pub async fn access_token(&self) -> Result<String, WechatError> {
        self.token_avoiding(None).await
    }

    async fn token_avoiding(&self, rejected: Option<&str>) -> Result<String, WechatError> {
        let key = self.token_key();
        if let Some(t) = self.cache.get(&key).await?
            && Some(t.as_str()) != rejected
        {
            return Ok(t);
        }
        let _local = self.refresh.lock().await;
        if let Some(t) = self.cache.get(&key).await?
            && Some(t.as_str()) != rejected
        {
            return Ok(t);
        }
        let lock_key = format!("{key}:lock");
        let me = uuid::Uuid::new_v4().to_string();
        let deadline = tokio::time::Instant::now() + REFRESH_LOCK;
        loop {
            if self.cache.set_nx_ex(&lock_key, &me, REFRESH_LOCK).await? {
                let fetched = self.fetch_token(rejected).await;
                let out = match fetched {
                    Ok((token, expires_in)) => {
                        let ttl = Duration::from_secs(expires_in)
                            .saturating_sub(EARLY_REFRESH)
                            .max(Duration::from_secs(30));
                        self.cache.set_ex(&key, &token, ttl).await?;
                        Ok(token)
                    }
                    Err(e) => Err(e),
                };
                let _ = self.cache.delete_if_equals(&lock_key, &me).await;
                return out;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            if let Some(t) = self.cache.get(&key).await?
                && Some(t.as_str()) != rejected
            {
                return Ok(t);
            }
            if tokio::time::Instant::now() > deadline {
                return Err(WechatError::TokenBusy);
            }
        }
    }

    /// `stable_token` in normal mode; force mode only when normal mode hands back the
    /// token WeChat just rejected.
    async fn fetch_token(&self, rejected: Option<&str>) -> Result<(String, u64), WechatError> {
        let normal = self.stable_token(false).await?;
        if Some(normal.0.as_str()) == rejected {
            return self.stable_token(true).await;
        }
        Ok(normal)
    }

    async fn stable_token(&self, force_refresh: bool) -> Result<(String, u64), WechatError> {
        let _turn = self.turn("stable_token").await;
        let started = Instant::now();
        let r = async {
            let resp = self
                .http
                .post(self.url("/cgi-bin/stable_token"))
                .json(&serde_json::json!({
                    "grant_type": "client_credential",
                    "appid": self.cfg.appid,
                    "secret": self.cfg.secret.expose_secret(),
                    "force_refresh": force_refresh,
                }))
                .send()
                .await?;
            let body: TokenBody = Self::json_or_error(resp).await?;
            if body.access_token.is_empty() || body.access_token.len() > 512 {
                return Err(WechatError::BadResponse("access token length".into()));
            }
            Ok((body.access_token, body.expires_in))
        }
        .await;
        self.record("stable_token", started, &r);
        r
    }

    /// Runs `call` with the access token. When WeChat rejects the token, drops it from
    /// the cache only if it is still the one used (another caller may have replaced it
    /// already), refreshes once and retries once.
    pub async fn with_token<T, F, Fut>(&self, call: F) -> Result<T, WechatError>
    where
        F: Fn(String) -> Fut,
        Fut: std::future::Future<Output = Result<T, WechatError>>,
    {
        let token = self.access_token().await?;
        match call(token.clone()).await {
            Err(WechatError::TokenRejected(code)) => {
                tracing::warn!(errcode = code, "access token rejected; refreshing once");
                let _ = self
                    .cache
                    .delete_if_equals(&self.token_key(), &token)
                    .await?;
                let fresh = self.token_avoiding(Some(&token)).await?;
                call(fresh).await
            }
            other => other,
        }
    }

    /// POSTs `body` as JSON to `path` with the access token (refreshed once when WeChat
    /// rejects it), under `api`'s turn, and reads the answer as `T` or WeChat's error;
    /// `check` turns it into the caller's value. The call is counted under `api` with
    /// `check`'s verdict, so an answer that fails it counts as a failed call.
    pub(crate) async fn post_with_token<B, T, U>(
        &self,
        api: &'static str,
        path: &str,
        body: &B,
        check: impl FnOnce(T) -> Result<U, WechatError>,
    ) -> Result<U, WechatError>
    where
        B: Serialize + ?Sized,
        T: DeserializeOwned,
    {
        let _turn = self.turn(api).await;
        // From here, a token refresh WeChat asked for is part of the call's latency.
        let started = Instant::now();
        let r = self
            .with_token(|token| async move {
                let resp = self
                    .http
                    .post(self.url(path))
                    .query(&[("access_token", token.as_str())])
                    .json(body)
                    .send()
                    .await?;
                Self::json_or_error::<T>(resp).await
            })
            .await
            .and_then(check);
        self.record(api, started, &r);
        r
    }

    /// `subscribeMessage.send`. 43101 (no credit / refused) is an expected answer.
    pub async fn send_subscribe(&self, body: &serde_json::Value) -> Result<(), WechatError> {
        self.post_with_token(
            "subscribe_send",
            "/cgi-bin/message/subscribe/send",
            body,
            |_: serde_json::Value| Ok(()),
        )
        .await
    }

    /// `wxa/business/getuserphonenumber`: the number behind a phone-number button's code.
    /// The watermark must name this mini-program: a number fetched for another app is not
    /// this user's consent.
    pub async fn phone_number(&self, code: &str) -> Result<PhoneNumber, WechatError> {
        self.post_with_token(
            "getuserphonenumber",
            "/wxa/business/getuserphonenumber",
            &serde_json::json!({ "code": code }),
            |b: PhoneBody| {
                let info = b.phone_info;
                if info.watermark.appid != self.cfg.appid {
                    return Err(WechatError::BadResponse(
                        "phone number watermark names another appid".into(),
                    ));
                }
                let country = match &info.country_code {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => String::new(),
                };
                let pure = info.pure_phone_number;
                if pure.is_empty() || pure.len() > 20 || !pure.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(WechatError::BadResponse("purePhoneNumber".into()));
                }
                if country.len() > 4 || !country.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(WechatError::BadResponse("countryCode".into()));
                }
                Ok(PhoneNumber { pure, country })
            },
        )
        .await
    }
}

impl MiniClient {
    /// `cgi-bin/getcallbackip`: the addresses WeChat's pushes come from.
    pub async fn callback_ips(&self) -> Result<Vec<ipnet::IpNet>, WechatError> {
        let _turn = self.turn("getcallbackip").await;
        let started = Instant::now();
        let r = self
            .with_token(|token| async move {
                let resp = self
                    .http
                    .get(self.url("/cgi-bin/getcallbackip"))
                    .query(&[("access_token", token.as_str())])
                    .send()
                    .await?;
                let body: CallbackIpBody = Self::json_or_error(resp).await?;
                super::callback_ips::parse_list(&body.ip_list)
            })
            .await;
        self.record("getcallbackip", started, &r);
        r
    }
}

impl MiniClient {
    /// `wxa/media_check_async` (version 2) for an image at `media_url` that `openid`
    /// uploaded; WeChat's trace id, under which the verdict is pushed to the message URL.
    /// `scene`: 1 a profile, 2 a comment, 3 a forum post, 4 a social log.
    pub async fn media_check_async(
        &self,
        media_url: &str,
        openid: &str,
        scene: u8,
    ) -> Result<String, WechatError> {
        let body = serde_json::json!({
            "media_url": media_url,
            "media_type": 2,
            "version": 2,
            "scene": scene,
            "openid": openid,
        });
        self.post_with_token(
            "media_check_async",
            "/wxa/media_check_async",
            &body,
            |b: TraceBody| {
                if b.trace_id.is_empty() || b.trace_id.len() > 128 {
                    return Err(WechatError::BadResponse("trace_id".into()));
                }
                Ok(b.trace_id)
            },
        )
        .await
    }
}

/// WeChat's verdict on a text: its `suggest` and `label`.
#[derive(Clone, Debug, Deserialize)]
pub struct TextVerdict {
    pub suggest: String,
    #[serde(default)]
    pub label: i64,
}

#[derive(Deserialize)]
struct SecCheckBody {
    result: TextVerdict,
}

impl MiniClient {
    /// `wxa/msg_sec_check` (version 2) of a text `openid` wrote. `scene`: 1 a profile, 2 a
    /// comment, 3 a forum post, 4 a social log.
    pub async fn msg_sec_check(
        &self,
        content: &str,
        openid: &str,
        scene: u8,
    ) -> Result<TextVerdict, WechatError> {
        let body = serde_json::json!({
            "content": content,
            "version": 2,
            "scene": scene,
            "openid": openid,
        });
        self.post_with_token(
            "msg_sec_check",
            "/wxa/msg_sec_check",
            &body,
            |b: SecCheckBody| Ok(b.result),
        )
        .await
    }
}

#[derive(Deserialize)]
struct TraceBody {
    trace_id: String,
}

#[derive(Deserialize)]
struct CallbackIpBody {
    ip_list: Vec<String>,
}

/// A phone number the user shared: digits without the country code, and the country code
/// (`86` for the mainland).
#[derive(Clone, Debug)]
pub struct PhoneNumber {
    pub pure: String,
    pub country: String,
}

impl PhoneNumber {
    /// As stored: the bare number on the mainland, else `+<country><number>`.
    pub fn stored_form(&self) -> String {
        if self.country == "86" || self.country.is_empty() {
            self.pure.clone()
        } else {
            format!("+{}{}", self.country, self.pure)
        }
    }
}

#[derive(Deserialize)]
struct PhoneBody {
    phone_info: PhoneInfo,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PhoneInfo {
    pure_phone_number: String,
    #[serde(default)]
    country_code: serde_json::Value,
    watermark: Watermark,
}

#[derive(Deserialize)]
struct Watermark {
    appid: String,
}
