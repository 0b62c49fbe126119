//! Settings: `conf/default.toml` (also embedded, so a bare binary has defaults),
//! then `conf/<CAMPUS_ENV>.toml`, then the contract's environment variables.
//!
//! Keys are the contract's environment variable names in lower case, so one
//! name means one thing in the TOML files, the environment and the README.

use std::path::{Path, PathBuf};
use std::time::Duration;

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use campus_dal::{MpMode, Switch};

use crate::client_addr::TrustedProxies;
use crate::crypto::FieldCipher;
use crate::limits::RateLimits;
use crate::promotions::GateKind;
use crate::wechat::mini::MiniConfig;
use crate::wechat::mp_crypto::MpCrypto;
use crate::wechat::pay::{ClientIdentity, PayConfig, SignType};

/// HS256 secrets shorter than the hash are guessable from a token (RFC 7518 §3.2).
const MIN_JWT_SECRET_BYTES: usize = 32;

/// Why WeChat could not call `base` back: it must be https, name a public host and carry
/// no query (notify URLs are built by appending paths).
fn callback_base_problem(base: &str) -> Result<(), String> {
    let url = url::Url::parse(base).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "https" {
        return Err("not https".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("has a query or fragment".into());
    }
    let private = match url.host() {
        None => true,
        Some(url::Host::Domain(d)) => {
            let d = d.trim_end_matches('.').to_ascii_lowercase();
            d == "localhost"
                || d.ends_with(".localhost")
                || d.ends_with(".local")
                || !d.contains('.')
        }
        Some(url::Host::Ipv4(ip)) => {
            ip.is_loopback()
                || ip.is_private()
                || ip.is_link_local()
                || ip.is_unspecified()
                || ip.is_broadcast()
                || ip.is_documentation()
                || ip.octets()[0] == 100 && (64..128).contains(&ip.octets()[1])
        }
        Some(url::Host::Ipv6(ip)) => {
            ip.is_loopback()
                || ip.is_unspecified()
                || (ip.segments()[0] & 0xfe00) == 0xfc00
                || (ip.segments()[0] & 0xffc0) == 0xfe80
                || ip
                    .to_ipv4_mapped()
                    .is_some_and(|v4| v4.is_loopback() || v4.is_private())
        }
    };
    if private {
        return Err("a loopback or private host".into());
    }
    Ok(())
}

const EMBEDDED_DEFAULTS: &str = include_str!("../../conf/default.toml");

/// Every environment variable the contract names, plus the few this project adds.
const ENV_KEYS: &[&str] = &[
    "BIND",
    "PUBLIC_BASE_URL",
    "DATABASE_URL",
    "DATABASE_POOL_SIZE",
    "REDIS_URL",
    "STORAGE_URL",
    "QR_CACHE_DIR",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "MAX_BODY_BYTES",
    "WORKERS",
    "JWT_SECRET",
    "TOKEN_TTL_SECS",
    "ADMIN_OPENIDS",
    "FIELD_ENCRYPTION_KEY",
    "WECHAT_API_BASE",
    "WECHAT_PAY_API_BASE",
    "WECHAT_CA_CERT",
    "WECHAT_APPID",
    "WECHAT_SECRET",
    "WECHAT_MCH_ID",
    "WECHAT_PAY_KEY",
    "WECHAT_PAY_SIGN_TYPE",
    "WECHAT_PAY_CLIENT_CERT",
    "WECHAT_PAY_CLIENT_KEY",
    "WECHAT_PAY_P12",
    "WECHAT_TIMEOUT_SECS",
    "WECHAT_MP_TOKEN",
    "WECHAT_MP_AES_KEY",
    "WECHAT_MP_APPID",
    "WECHAT_MP_MODE",
    "WECHAT_MP_SECRET",
    "WECHAT_MP_TEMPLATE_ORDER",
    "WECHAT_MINI_TOKEN",
    "WECHAT_MINI_AES_KEY",
    "PUBLIC_BASE_URL_CHECK",
    "WECHAT_CALLBACK_IP_CHECK",
    "METRICS_BIND",
    "METRICS_TOKEN",
    "WECHAT_TEMPLATE_ORDER",
    "WECHAT_TEMPLATE_REMINDER",
    "WECHAT_TEMPLATE_DRAW",
    "REMINDER_HOUR_BEIJING",
    "MESSAGES_PER_USER_DAY",
    "BACKUP_HOUR_BEIJING",
    "BACKUP_KEEP_DAYS",
    "ORDER_PAY_TIMEOUT_SECS",
    "PAY_RECONCILE_SECS",
    "WECHAT_CLOSEORDER_MIN_AGE_SECS",
    "ORDER_AUTO_COMPLETE_SECS",
    "IDEMPOTENCY_TTL_SECS",
    "LOG_FORMAT",
    "LOG_KEEP_DAYS",
    "CONSOLE_SESSION_SECS",
    "RUNNER_SHARE_PERCENT",
    "WITHDRAW_APPROVAL",
    "WITHDRAW_DAILY_MAX_FEN",
    "WITHDRAW_DAILY_MAX_COUNT",
    "BILL_HOUR_BEIJING",
    "TRUSTED_PROXIES",
    "RATE_LIMITS",
    "MAX_UNPAID_ORDERS",
    "DRAW_LOCK_SECS",
    "COUPON_STOCK_GATE",
];

/// The secret settings (the `SecretString` fields): each may instead be read from the file
/// that `<NAME>_FILE` names, as systemd credentials and container secrets provide them.
pub const SECRET_KEYS: &[&str] = &[
    "JWT_SECRET",
    "FIELD_ENCRYPTION_KEY",
    "WECHAT_SECRET",
    "WECHAT_PAY_KEY",
    "WECHAT_MP_TOKEN",
    "WECHAT_MP_AES_KEY",
    "WECHAT_MP_SECRET",
    "WECHAT_MINI_TOKEN",
    "WECHAT_MINI_AES_KEY",
    "AWS_SECRET_ACCESS_KEY",
];

/// How log lines are written, on the console and in the files.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log shippers.
    Json,
}

#[derive(Clone, Debug, Deserialize)]
pub struct Settings {
    pub bind: String,
    pub public_base_url: String,
    pub database_url: String,
    pub database_pool_size: u32,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub redis_url: Option<String>,
    pub storage_url: String,
    pub qr_cache_dir: PathBuf,
    /// Credentials for `s3://` storage, read here (not by the storage client) so that
    /// every setting comes from one place and tests never touch the process environment.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub aws_access_key_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub aws_secret_access_key: Option<SecretString>,
    pub max_body_bytes: usize,
    pub workers: usize,

    #[serde(default, deserialize_with = "lenient::opt")]
    pub jwt_secret: Option<SecretString>,
    pub token_ttl_secs: i64,
    #[serde(default, deserialize_with = "lenient::string")]
    pub admin_openids: String,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub field_encryption_key: Option<SecretString>,

    pub wechat_api_base: String,
    pub wechat_pay_api_base: String,
    #[serde(default)]
    pub wechat_ca_cert: Option<PathBuf>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_appid: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_secret: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mch_id: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_pay_key: Option<SecretString>,
    pub wechat_pay_sign_type: String,
    pub wechat_pay_client_cert: PathBuf,
    pub wechat_pay_client_key: PathBuf,
    #[serde(default)]
    pub wechat_pay_p12: Option<PathBuf>,
    pub wechat_timeout_secs: u64,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_token: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_aes_key: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_appid: Option<String>,
    /// The mini-program's message push (`/wechat/mini`): its token; unset, 404.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mini_token: Option<SecretString>,
    /// Its EncodingAESKey: safe-mode pushes are taken too.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mini_aes_key: Option<SecretString>,
    /// `plain`, `compatible` or `safe`; unset: `safe` with an AES key, else `plain`.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_mode: Option<String>,
    /// The official account's own secret, for its access token (template messages).
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_secret: Option<SecretString>,
    /// Official-account template for order events; with the secret, they are sent to
    /// users who bound the account.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_mp_template_order: Option<String>,
    /// `on`: `serve` refuses a `PUBLIC_BASE_URL` WeChat cannot call back.
    pub public_base_url_check: String,
    /// `on`: pushes to `/wechat/mp` come only from WeChat's callback addresses.
    pub wechat_callback_ip_check: String,
    /// A separate listener for `/metrics` (then not served on `BIND`).
    #[serde(default, deserialize_with = "lenient::opt")]
    pub metrics_bind: Option<String>,
    /// When set, `/metrics` needs `Authorization: Bearer <METRICS_TOKEN>`.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub metrics_token: Option<SecretString>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_template_order: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_template_reminder: Option<String>,
    /// A lucky draw's result to each participant; unset, none are sent.
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_template_draw: Option<String>,
    pub reminder_hour_beijing: u32,
    /// Order messages WeChat accepts per user and Beijing day; the rest are logged `capped`.
    pub messages_per_user_day: u32,
    /// Hour (Beijing time) of the daily backup; `BACKUP_KEEP_DAYS` days of backups are kept.
    pub backup_hour_beijing: u32,
    pub backup_keep_days: u32,

    pub order_pay_timeout_secs: i64,
    pub pay_reconcile_secs: u64,
    /// WeChat refuses `closeorder` this long after `unifiedorder` (300 s); a test against a
    /// simulator with a shorter rule sets it lower.
    pub wechat_closeorder_min_age_secs: i64,
    pub order_auto_complete_secs: i64,
    pub idempotency_ttl_secs: i64,

    #[serde(default)]
    pub log_format: LogFormat,
    /// Daily log files kept in the log directory; older ones are deleted.
    pub log_keep_days: usize,
    /// How long a console sign-in code may wait for an admin's approval.
    pub console_session_secs: i64,
    /// Share of `fee_fen` credited to the runner when an order completes, 0 to 100.
    pub runner_share_percent: u32,
    pub withdraw_approval: campus_dal::WithdrawApproval,
    /// Per runner and Beijing day, as WeChat's defaults for transfers to balance.
    pub withdraw_daily_max_fen: i64,
    pub withdraw_daily_max_count: i64,
    pub bill_hour_beijing: u32,

    /// CIDRs whose `X-Forwarded-For` is believed; empty: the socket peer is the client.
    #[serde(default, deserialize_with = "lenient::string")]
    pub trusted_proxies: String,
    /// `name=N/SECSs,...` overriding the default limits, or `off`; empty: the defaults.
    #[serde(default, deserialize_with = "lenient::string")]
    pub rate_limits: String,
    /// Unpaid orders a customer may hold open at once.
    pub max_unpaid_orders: i64,
    /// A lucky draw stops taking joins and leaves this long before its `draw_at`.
    pub draw_lock_secs: i64,
    /// `sql` or `redis`: what turns away claims on a coupon that has run out; empty:
    /// `redis` when `REDIS_URL` is set, else `sql`.
    #[serde(default, deserialize_with = "lenient::string")]
    pub coupon_stock_gate: String,
}

/// The secrets given as `<NAME>_FILE` (lower-cased keys, values read from the files, a
/// trailing newline trimmed), looked up with `env`. Setting both `<NAME>` and
/// `<NAME>_FILE` is an error, as is an unreadable or empty file; every problem is named.
fn secrets_from_files(
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Vec<(String, String)>, SettingsError> {
    let set = |name: &str| env(name).filter(|v| !v.trim().is_empty());
    let mut found = Vec::new();
    let mut problems = Vec::new();
    for name in SECRET_KEYS {
        let file_var = format!("{name}_FILE");
        let Some(path) = set(&file_var) else {
            continue;
        };
        if set(name).is_some() {
            problems.push(format!("{name} and {file_var} (set only one)"));
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let value = text.trim_end_matches(['\n', '\r']);
                if value.trim().is_empty() {
                    problems.push(format!("{file_var} (the file {path} is empty)"));
                } else {
                    found.push((name.to_lowercase(), value.to_string()));
                }
            }
            Err(e) => problems.push(format!("{file_var} (cannot read {path}: {e})")),
        }
    }
    if problems.is_empty() {
        Ok(found)
    } else {
        Err(SettingsError::Missing(problems))
    }
}

/// Environment values that look like numbers (a merchant id is all digits) reach serde
/// as integers; identifiers and secrets take them back as the text the operator typed.
mod lenient {
    use serde::{Deserialize, Deserializer};

    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Scalar {
        S(String),
        I(i64),
        U(u64),
        F(f64),
        B(bool),
    }

    impl Scalar {
        fn text(self) -> String {
            match self {
                Scalar::S(s) => s,
                Scalar::I(i) => i.to_string(),
                Scalar::U(u) => u.to_string(),
                Scalar::F(f) => f.to_string(),
                Scalar::B(b) => b.to_string(),
            }
        }
    }

    pub fn opt<'de, D: Deserializer<'de>, T: From<String>>(d: D) -> Result<Option<T>, D::Error> {
        Ok(Option::<Scalar>::deserialize(d)?.map(|s| T::from(s.text())))
    }

    pub fn string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
        Ok(Scalar::deserialize(d)?.text())
    }
}

/// The official account's credentials and its order template
/// (`WECHAT_MP_APPID`, `WECHAT_MP_SECRET`, `WECHAT_MP_TEMPLATE_ORDER`).
#[derive(Clone)]
pub struct MpTemplates {
    pub appid: String,
    pub secret: SecretString,
    pub order: String,
}

/// The settings a start cannot do without, checked and typed by [`Settings::resolve`].
pub struct Resolved {
    pub jwt_secret: SecretString,
    pub cipher: FieldCipher,
    pub mini: MiniConfig,
    pub pay: PayConfig,
    /// Safe mode of the official account, when its AES key is set.
    pub official_account_crypto: Option<MpCrypto>,
    /// Which pushes the official account accepts.
    pub official_account_mode: MpMode,
    /// Order events as official-account template messages; `None`: none are sent.
    pub mp_templates: Option<MpTemplates>,
    pub rate_limits: RateLimits,
    pub trusted_proxies: TrustedProxies,
    pub coupon_stock_gate: GateKind,
    /// `WECHAT_CALLBACK_IP_CHECK=on`.
    pub callback_ip_check: bool,
    /// Safe mode of the mini-program's message push, when its AES key is set.
    pub mini_push_crypto: Option<MpCrypto>,
}

#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("could not read settings: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("missing or invalid settings: {}", .0.join(", "))]
    Missing(Vec<String>),
}

impl Settings {
    /// Defaults, `conf/default.toml`, `conf/<CAMPUS_ENV>.toml`, then the process environment.
    pub fn load(conf_dir: &Path) -> Result<Self, SettingsError> {
        let mut fig = Figment::from(Toml::string(EMBEDDED_DEFAULTS))
            .merge(Toml::file(conf_dir.join("default.toml")));
        if let Ok(env) = std::env::var("CAMPUS_ENV")
            && !env.is_empty()
        {
            fig = fig.merge(Toml::file(conf_dir.join(format!("{env}.toml"))));
        }
        let mut fig = fig.merge(Env::raw().only(ENV_KEYS).lowercase(true));
        for (key, value) in secrets_from_files(&|name| std::env::var(name).ok())? {
            fig = fig.merge((key, value));
        }
        Self::extract(fig)
    }

    /// The embedded defaults alone: no files, no environment. Tests and the demo start here.
    pub fn defaults() -> Result<Self, SettingsError> {
        Self::extract(Figment::from(Toml::string(EMBEDDED_DEFAULTS)))
    }

    fn extract(fig: Figment) -> Result<Self, SettingsError> {
        let s: Settings = fig.extract().map_err(Box::new)?;
        Ok(s.normalised())
    }

    fn normalised(mut self) -> Self {
        // An empty environment variable means "unset", as operators expect from `FOO= cmd`.
        fn blank(s: &Option<String>) -> bool {
            s.as_deref().is_some_and(|v| v.trim().is_empty())
        }
        fn blank_secret(s: &Option<SecretString>) -> bool {
            s.as_ref()
                .is_some_and(|v| v.expose_secret().trim().is_empty())
        }
        for o in [
            &mut self.redis_url,
            &mut self.aws_access_key_id,
            &mut self.wechat_appid,
            &mut self.wechat_mch_id,
            &mut self.wechat_mp_appid,
            &mut self.wechat_mp_mode,
            &mut self.wechat_mp_template_order,
            &mut self.metrics_bind,
            &mut self.wechat_template_order,
            &mut self.wechat_template_reminder,
            &mut self.wechat_template_draw,
        ] {
            if blank(o) {
                *o = None;
            }
        }
        for o in [
            &mut self.jwt_secret,
            &mut self.field_encryption_key,
            &mut self.wechat_secret,
            &mut self.wechat_pay_key,
            &mut self.wechat_mp_token,
            &mut self.wechat_mp_aes_key,
            &mut self.wechat_mp_secret,
            &mut self.wechat_mini_token,
            &mut self.wechat_mini_aes_key,
            &mut self.aws_secret_access_key,
            &mut self.metrics_token,
        ] {
            if blank_secret(o) {
                *o = None;
            }
        }
        if self
            .wechat_ca_cert
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.wechat_ca_cert = None;
        }
        if self
            .wechat_pay_p12
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            self.wechat_pay_p12 = None;
        }
        self.public_base_url = self.public_base_url.trim_end_matches('/').to_string();
        self
    }

    /// The settings every start needs, checked and typed once: every missing or invalid
    /// one is named at once, so an operator fixes them in one go.
    pub fn resolve(&self) -> Result<Resolved, SettingsError> {
        let mut missing = Vec::new();
        let jwt_secret = self.jwt_secret.clone();
        if jwt_secret.is_none() {
            missing.push("JWT_SECRET".to_string());
        }
        let cipher = match &self.field_encryption_key {
            None => {
                missing.push("FIELD_ENCRYPTION_KEY".to_string());
                None
            }
            Some(k) => match FieldCipher::from_hex(k.expose_secret()) {
                Ok(c) => Some(c),
                Err(_) => {
                    missing.push("FIELD_ENCRYPTION_KEY (must be 64 hex characters)".to_string());
                    None
                }
            },
        };
        for (name, set) in [
            ("WECHAT_APPID", self.wechat_appid.is_some()),
            ("WECHAT_SECRET", self.wechat_secret.is_some()),
            ("WECHAT_MCH_ID", self.wechat_mch_id.is_some()),
        ] {
            if !set {
                missing.push(name.to_string());
            }
        }
        match &self.wechat_pay_key {
            None => missing.push("WECHAT_PAY_KEY".to_string()),
            Some(k) if k.expose_secret().len() != 32 => {
                missing.push("WECHAT_PAY_KEY (must be 32 characters)".to_string())
            }
            Some(_) => {}
        }
        if self.runner_share_percent > 100 {
            missing.push("RUNNER_SHARE_PERCENT (0 to 100)".to_string());
        }
        if self.bill_hour_beijing > 23 {
            missing.push("BILL_HOUR_BEIJING (0 to 23)".to_string());
        }
        if self.withdraw_daily_max_fen < 100 || self.withdraw_daily_max_count < 1 {
            missing.push(
                "WITHDRAW_DAILY_MAX_FEN (at least 100) / WITHDRAW_DAILY_MAX_COUNT (at least 1)"
                    .to_string(),
            );
        }
        let sign_type = SignType::parse(&self.wechat_pay_sign_type);
        if sign_type.is_none() {
            missing.push("WECHAT_PAY_SIGN_TYPE (MD5 or HMAC-SHA256)".to_string());
        }
        let pay_base = self
            .wechat_pay_api_base
            .trim()
            .trim_end_matches('/')
            .to_string();
        if !(pay_base.starts_with("http://") || pay_base.starts_with("https://")) {
            missing.push("WECHAT_PAY_API_BASE (an http(s) URL)".to_string());
        }
        let mini_push_crypto = match (&self.wechat_mini_token, &self.wechat_mini_aes_key) {
            (Some(token), Some(key)) => match MpCrypto::new(
                token.expose_secret(),
                key.expose_secret(),
                self.wechat_appid.as_deref().unwrap_or_default(),
            ) {
                Ok(c) => Some(c),
                Err(e) => {
                    missing.push(format!("WECHAT_MINI_AES_KEY ({e})"));
                    None
                }
            },
            (None, Some(_)) => {
                missing.push("WECHAT_MINI_TOKEN (WECHAT_MINI_AES_KEY is set)".into());
                None
            }
            _ => None,
        };
        let official_account = match MpCrypto::from_settings(self) {
            Ok(c) => c,
            Err(e) => {
                missing.push(format!("WECHAT_MP_AES_KEY / WECHAT_MP_APPID ({e})"));
                None
            }
        };
        let mp_mode = match self.wechat_mp_mode.as_deref().map(str::trim) {
            None if self.wechat_mp_aes_key.is_some() => Some(MpMode::Safe),
            None => Some(MpMode::Plain),
            Some(m) => match MpMode::parse(m) {
                Some(MpMode::Plain) => Some(MpMode::Plain),
                Some(mode) if self.wechat_mp_aes_key.is_some() => Some(mode),
                Some(_) => {
                    missing
                        .push("WECHAT_MP_MODE (compatible and safe need WECHAT_MP_AES_KEY)".into());
                    None
                }
                None => {
                    missing.push("WECHAT_MP_MODE (plain, compatible or safe)".into());
                    None
                }
            },
        };
        if Switch::parse(self.public_base_url_check.trim()).is_none() {
            missing.push("PUBLIC_BASE_URL_CHECK (on or off)".into());
        }
        let callback_ip_check = match Switch::parse(self.wechat_callback_ip_check.trim()) {
            Some(s) => s == Switch::On,
            None => {
                missing.push("WECHAT_CALLBACK_IP_CHECK (on or off)".into());
                false
            }
        };
        let rate_limits = RateLimits::parse(&self.rate_limits)
            .map_err(|e| missing.push(format!("RATE_LIMITS ({e})")))
            .ok();
        let trusted_proxies = TrustedProxies::parse(&self.trusted_proxies)
            .map_err(|e| missing.push(format!("TRUSTED_PROXIES ({e})")))
            .ok();
        if self.draw_lock_secs < 1 {
            missing.push("DRAW_LOCK_SECS (at least 1)".into());
        }
        let coupon_stock_gate = match (self.coupon_stock_gate.trim(), &self.redis_url) {
            ("", Some(_)) => GateKind::Redis,
            ("", None) => GateKind::Sql,
            (g, redis) => match GateKind::parse(g) {
                Some(GateKind::Redis) if redis.is_none() => {
                    missing.push("COUPON_STOCK_GATE (redis needs REDIS_URL)".into());
                    GateKind::Sql
                }
                Some(kind) => kind,
                None => {
                    missing.push("COUPON_STOCK_GATE (sql or redis)".into());
                    GateKind::Sql
                }
            },
        };
        if self.max_unpaid_orders < 1 {
            missing.push("MAX_UNPAID_ORDERS (at least 1)".into());
        }
        // Template messages need the account's own token: its appid and secret together.
        let mp_templates = match (
            &self.wechat_mp_appid,
            &self.wechat_mp_secret,
            &self.wechat_mp_template_order,
        ) {
            (Some(appid), Some(secret), Some(template)) => Some(MpTemplates {
                appid: appid.clone(),
                secret: secret.clone(),
                order: template.clone(),
            }),
            (_, None, None) => None,
            (None, _, _) => {
                missing.push(
                    "WECHAT_MP_APPID (WECHAT_MP_SECRET and WECHAT_MP_TEMPLATE_ORDER need it)"
                        .into(),
                );
                None
            }
            (_, None, Some(_)) => {
                missing.push("WECHAT_MP_SECRET (WECHAT_MP_TEMPLATE_ORDER needs it)".into());
                None
            }
            (_, Some(_), None) => None,
        };
        let (
            Some(jwt_secret),
            Some(cipher),
            Some(appid),
            Some(secret),
            Some(mch_id),
            Some(key),
            Some(sign_type),
            Some(mp_mode),
            Some(rate_limits),
            Some(trusted_proxies),
        ) = (
            jwt_secret,
            cipher,
            self.wechat_appid.clone(),
            self.wechat_secret.clone(),
            self.wechat_mch_id.clone(),
            self.wechat_pay_key.clone(),
            sign_type,
            mp_mode,
            rate_limits,
            trusted_proxies,
        )
        else {
            return Err(SettingsError::Missing(missing));
        };
        if !missing.is_empty() {
            return Err(SettingsError::Missing(missing));
        }
        let timeout = Duration::from_secs(self.wechat_timeout_secs.max(1));
        // The merchant certificate is only located here, and loaded by `PayClient::new`.
        let identity = self.pay_identity(&mch_id);
        Ok(Resolved {
            jwt_secret,
            cipher,
            mini: MiniConfig {
                appid: appid.clone(),
                secret,
                api_base: self.wechat_api_base.clone(),
                extra_root: self.wechat_ca_cert.clone(),
                timeout,
            },
            pay: PayConfig {
                appid,
                mch_id,
                key,
                sign_type,
                api_base: pay_base,
                extra_root: self.wechat_ca_cert.clone(),
                timeout,
                identity,
            },
            official_account_crypto: official_account,
            official_account_mode: mp_mode,
            mp_templates,
            rate_limits,
            trusted_proxies,
            coupon_stock_gate,
            callback_ip_check,
            mini_push_crypto,
        })
    }

    /// What `serve` needs beyond [`Settings::resolve`]: the files it names exist, and
    /// object storage has its credentials. Every problem is named at once.
    pub fn check_for_serve(&self) -> Result<(), SettingsError> {
        let mut missing = match self.resolve() {
            Ok(_) => Vec::new(),
            Err(SettingsError::Missing(m)) => m,
            Err(e) => return Err(e),
        };
        match &self.wechat_pay_p12 {
            Some(p) if !p.is_file() => {
                missing.push(format!("WECHAT_PAY_P12 (no file at {})", p.display()))
            }
            Some(_) => {}
            None => {
                for (name, p) in [
                    ("WECHAT_PAY_CLIENT_CERT", &self.wechat_pay_client_cert),
                    ("WECHAT_PAY_CLIENT_KEY", &self.wechat_pay_client_key),
                ] {
                    if !p.is_file() {
                        missing.push(format!("{name} (no file at {})", p.display()));
                    }
                }
            }
        }
        if let Err(e) = crate::storage::StorageUrl::parse(&self.storage_url) {
            missing.push(format!("STORAGE_URL ({e})"));
        } else if self.storage_url.starts_with("s3://")
            && (self.aws_access_key_id.is_none() || self.aws_secret_access_key.is_none())
        {
            missing.push("AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (for s3:// storage)".into());
        }
        if self
            .jwt_secret
            .as_ref()
            .is_some_and(|k| k.expose_secret().len() < MIN_JWT_SECRET_BYTES)
        {
            missing.push(format!(
                "JWT_SECRET (at least {MIN_JWT_SECRET_BYTES} bytes: a short HS256 secret can be guessed offline from one token)"
            ));
        }
        if Switch::parse(self.public_base_url_check.trim()) != Some(Switch::Off)
            && let Err(why) = callback_base_problem(&self.public_base_url)
        {
            missing.push(format!(
                "PUBLIC_BASE_URL ({why}; WeChat could not deliver notifies; PUBLIC_BASE_URL_CHECK=off for test rigs)"
            ));
        }
        if let Some(b) = &self.metrics_bind
            && b.parse::<std::net::SocketAddr>().is_err()
        {
            missing.push("METRICS_BIND (host:port)".into());
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Missing(missing))
        }
    }

    /// Where the merchant certificate is (a `.p12`'s password is the mch id).
    fn pay_identity(&self, mch_id: &str) -> ClientIdentity {
        match &self.wechat_pay_p12 {
            Some(path) => ClientIdentity::P12 {
                path: path.clone(),
                password: mch_id.to_string(),
            },
            None => ClientIdentity::Pem {
                cert: self.wechat_pay_client_cert.clone(),
                key: self.wechat_pay_client_key.clone(),
            },
        }
    }

    /// Everything an operator should fix before `serve`, each named once (the command
    /// `campus-errand config check`): the rules of [`Settings::check_for_serve`], then that
    /// the merchant certificate and key load and belong together, that `DATABASE_URL` is
    /// one this server speaks.
    pub fn deploy_problems(&self) -> Vec<String> {
        let mut problems = match self.check_for_serve() {
            Ok(()) => Vec::new(),
            Err(SettingsError::Missing(m)) => m,
            Err(e) => vec![e.to_string()],
        };
        let files_named = !problems
            .iter()
            .any(|p| p.starts_with("WECHAT_PAY_P12") || p.starts_with("WECHAT_PAY_CLIENT_"));
        if files_named && let Some(mch_id) = &self.wechat_mch_id {
            let name = if self.wechat_pay_p12.is_some() {
                "WECHAT_PAY_P12"
            } else {
                "WECHAT_PAY_CLIENT_CERT / WECHAT_PAY_CLIENT_KEY"
            };
            if let Err(e) = self.pay_identity(mch_id).load_pem() {
                problems.push(format!("{name} ({e})"));
            }
        }
        if let Err(e) = campus_dal::conn::Target::parse(&self.database_url) {
            problems.push(format!("DATABASE_URL ({e})"));
        }
        if self.log_keep_days == 0 {
            problems.push("LOG_KEEP_DAYS (at least 1)".into());
        }
        problems
    }

    /// Every setting by its environment variable name, as this process would use it:
    /// secrets as `set` or `unset` only, and passwords in URLs masked.
    pub fn effective(&self) -> Vec<(&'static str, String)> {
        fn opt(v: &Option<String>) -> String {
            v.clone().unwrap_or_else(|| UNSET.into())
        }
        fn secret(v: &Option<SecretString>) -> String {
            if v.is_some() { "set" } else { UNSET }.into()
        }
        fn path(v: &std::path::Path) -> String {
            v.display().to_string()
        }
        fn opt_path(v: &Option<PathBuf>) -> String {
            v.as_deref().map_or_else(|| UNSET.into(), path)
        }
        const UNSET: &str = "unset";
        vec![
            ("BIND", self.bind.clone()),
            ("PUBLIC_BASE_URL", self.public_base_url.clone()),
            ("DATABASE_URL", mask_password(&self.database_url)),
            ("DATABASE_POOL_SIZE", self.database_pool_size.to_string()),
            (
                "REDIS_URL",
                self.redis_url
                    .as_deref()
                    .map_or_else(|| UNSET.into(), mask_password),
            ),
            ("STORAGE_URL", self.storage_url.clone()),
            ("QR_CACHE_DIR", path(&self.qr_cache_dir)),
            ("AWS_ACCESS_KEY_ID", opt(&self.aws_access_key_id)),
            ("AWS_SECRET_ACCESS_KEY", secret(&self.aws_secret_access_key)),
            ("MAX_BODY_BYTES", self.max_body_bytes.to_string()),
            ("WORKERS", self.workers.to_string()),
            ("JWT_SECRET", secret(&self.jwt_secret)),
            ("TOKEN_TTL_SECS", self.token_ttl_secs.to_string()),
            ("ADMIN_OPENIDS", self.admin_openids.clone()),
            ("FIELD_ENCRYPTION_KEY", secret(&self.field_encryption_key)),
            ("WECHAT_API_BASE", self.wechat_api_base.clone()),
            ("WECHAT_PAY_API_BASE", self.wechat_pay_api_base.clone()),
            ("WECHAT_CA_CERT", opt_path(&self.wechat_ca_cert)),
            ("WECHAT_APPID", opt(&self.wechat_appid)),
            ("WECHAT_SECRET", secret(&self.wechat_secret)),
            ("WECHAT_MCH_ID", opt(&self.wechat_mch_id)),
            ("WECHAT_PAY_KEY", secret(&self.wechat_pay_key)),
            ("WECHAT_PAY_SIGN_TYPE", self.wechat_pay_sign_type.clone()),
            ("WECHAT_PAY_CLIENT_CERT", path(&self.wechat_pay_client_cert)),
            ("WECHAT_PAY_CLIENT_KEY", path(&self.wechat_pay_client_key)),
            ("WECHAT_PAY_P12", opt_path(&self.wechat_pay_p12)),
            ("WECHAT_TIMEOUT_SECS", self.wechat_timeout_secs.to_string()),
            ("WECHAT_MP_TOKEN", secret(&self.wechat_mp_token)),
            ("WECHAT_MP_AES_KEY", secret(&self.wechat_mp_aes_key)),
            ("WECHAT_MINI_TOKEN", secret(&self.wechat_mini_token)),
            ("WECHAT_MINI_AES_KEY", secret(&self.wechat_mini_aes_key)),
            ("WECHAT_MP_APPID", opt(&self.wechat_mp_appid)),
            ("WECHAT_MP_SECRET", secret(&self.wechat_mp_secret)),
            (
                "WECHAT_MP_TEMPLATE_ORDER",
                opt(&self.wechat_mp_template_order),
            ),
            ("WECHAT_TEMPLATE_ORDER", opt(&self.wechat_template_order)),
            ("WECHAT_TEMPLATE_DRAW", opt(&self.wechat_template_draw)),
            (
                "WECHAT_TEMPLATE_REMINDER",
                opt(&self.wechat_template_reminder),
            ),
            (
                "REMINDER_HOUR_BEIJING",
                self.reminder_hour_beijing.to_string(),
            ),
            (
                "MESSAGES_PER_USER_DAY",
                self.messages_per_user_day.to_string(),
            ),
            (
                "ORDER_PAY_TIMEOUT_SECS",
                self.order_pay_timeout_secs.to_string(),
            ),
            ("PAY_RECONCILE_SECS", self.pay_reconcile_secs.to_string()),
            (
                "ORDER_AUTO_COMPLETE_SECS",
                self.order_auto_complete_secs.to_string(),
            ),
            (
                "IDEMPOTENCY_TTL_SECS",
                self.idempotency_ttl_secs.to_string(),
            ),
            (
                "LOG_FORMAT",
                match self.log_format {
                    LogFormat::Text => "text",
                    LogFormat::Json => "json",
                }
                .into(),
            ),
            ("LOG_KEEP_DAYS", self.log_keep_days.to_string()),
            ("WECHAT_MP_MODE", opt(&self.wechat_mp_mode)),
            ("PUBLIC_BASE_URL_CHECK", self.public_base_url_check.clone()),
            (
                "WECHAT_CALLBACK_IP_CHECK",
                self.wechat_callback_ip_check.clone(),
            ),
            ("METRICS_BIND", opt(&self.metrics_bind)),
            ("METRICS_TOKEN", secret(&self.metrics_token)),
            ("BACKUP_HOUR_BEIJING", self.backup_hour_beijing.to_string()),
            ("BACKUP_KEEP_DAYS", self.backup_keep_days.to_string()),
            (
                "WECHAT_CLOSEORDER_MIN_AGE_SECS",
                self.wechat_closeorder_min_age_secs.to_string(),
            ),
            (
                "CONSOLE_SESSION_SECS",
                self.console_session_secs.to_string(),
            ),
            (
                "RUNNER_SHARE_PERCENT",
                self.runner_share_percent.to_string(),
            ),
            ("WITHDRAW_APPROVAL", self.withdraw_approval.to_string()),
            (
                "WITHDRAW_DAILY_MAX_FEN",
                self.withdraw_daily_max_fen.to_string(),
            ),
            (
                "WITHDRAW_DAILY_MAX_COUNT",
                self.withdraw_daily_max_count.to_string(),
            ),
            ("BILL_HOUR_BEIJING", self.bill_hour_beijing.to_string()),
            ("TRUSTED_PROXIES", self.trusted_proxies.clone()),
            (
                "RATE_LIMITS",
                RateLimits::parse(&self.rate_limits)
                    .map_or_else(|e| format!("invalid: {e}"), |l| l.describe()),
            ),
            ("MAX_UNPAID_ORDERS", self.max_unpaid_orders.to_string()),
            ("DRAW_LOCK_SECS", self.draw_lock_secs.to_string()),
            (
                "COUPON_STOCK_GATE",
                match (self.coupon_stock_gate.trim(), &self.redis_url) {
                    ("", Some(_)) => "redis (REDIS_URL is set)".into(),
                    ("", None) => "sql".into(),
                    (g, _) => g.to_string(),
                },
            ),
        ]
    }

    pub fn admin_openid_list(&self) -> Vec<String> {
        self.admin_openids
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    }

    pub fn mp_enabled(&self) -> bool {
        self.wechat_mp_token.is_some()
    }
}

/// A URL with its password, if any, replaced by `***`.
fn mask_password(raw: &str) -> String {
    match url::Url::parse(raw) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("***"));
            u.to_string()
        }
        _ => raw.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_problems(s: &Settings) -> Vec<String> {
        match s.check_for_serve() {
            Ok(()) => Vec::new(),
            Err(SettingsError::Missing(m)) => m,
            Err(e) => panic!("{e}"),
        }
    }

    #[test]
    fn serve_refuses_a_base_url_wechat_cannot_call_and_a_short_jwt_secret() {
        let mut s = Settings::defaults().expect("defaults");
        s.jwt_secret = Some(SecretString::from("short"));
        let about =
            |s: &Settings, what: &str| serve_problems(s).iter().any(|m| m.starts_with(what));
        assert!(about(&s, "JWT_SECRET"), "{:?}", serve_problems(&s));
        s.jwt_secret = Some(SecretString::from("x".repeat(32)));
        assert!(!about(&s, "JWT_SECRET"));
        for bad in [
            "http://127.0.0.1:8080",
            "http://campus.example.com",
            "https://127.0.0.1",
            "https://localhost:8443",
            "https://10.1.2.3",
            "https://192.168.0.5",
            "https://[::1]:8443",
            "https://campus.example.com/?x=1",
            "https://intranet",
        ] {
            s.public_base_url = bad.into();
            assert!(about(&s, "PUBLIC_BASE_URL"), "{bad} must be refused");
        }
        for good in [
            "https://campus.example.com",
            "https://api.example.cn/errand",
        ] {
            s.public_base_url = good.into();
            assert!(!about(&s, "PUBLIC_BASE_URL"), "{good} is fine");
        }
        s.public_base_url = "http://127.0.0.1:8080".into();
        s.public_base_url_check = "off".into();
        assert!(
            !about(&s, "PUBLIC_BASE_URL"),
            "the check can be switched off"
        );
        s.public_base_url_check = "maybe".into();
        assert!(about(&s, "PUBLIC_BASE_URL_CHECK"));
    }

    #[test]
    fn official_account_mode_defaults_to_safe_with_an_aes_key() {
        let mut s = Settings::defaults().expect("defaults");
        s.wechat_mp_mode = Some("compatible".into());
        assert!(
            serve_problems(&s)
                .iter()
                .any(|m| m.starts_with("WECHAT_MP_MODE"))
        );
        s.wechat_mp_mode = Some("sometimes".into());
        assert!(
            serve_problems(&s)
                .iter()
                .any(|m| m.starts_with("WECHAT_MP_MODE"))
        );
        s.wechat_mp_mode = Some("plain".into());
        assert!(
            !serve_problems(&s)
                .iter()
                .any(|m| m.starts_with("WECHAT_MP_MODE"))
        );
    }

    #[test]
    fn embedded_defaults_parse() {
        let s = Settings::defaults().expect("defaults");
        assert_eq!(s.bind, "127.0.0.1:8080");
        assert_eq!(s.database_url, "sqlite://data/campus.db");
        assert!(s.redis_url.is_none());
        assert_eq!(s.order_pay_timeout_secs, 900);
    }

    #[test]
    fn serve_names_every_missing_setting() {
        let s = Settings::defaults().expect("defaults");
        let Err(SettingsError::Missing(m)) = s.check_for_serve() else {
            panic!("expected missing settings");
        };
        for name in [
            "JWT_SECRET",
            "FIELD_ENCRYPTION_KEY",
            "WECHAT_APPID",
            "WECHAT_SECRET",
            "WECHAT_MCH_ID",
            "WECHAT_PAY_KEY",
        ] {
            assert!(m.iter().any(|x| x == name), "{name} not named in {m:?}");
        }
    }

    #[test]
    fn numeric_looking_identifiers_stay_text() {
        let fig = Figment::from(Toml::string(EMBEDDED_DEFAULTS)).merge(Toml::string(
            "wechat_mch_id = 1230000109\nwechat_secret = 7\nadmin_openids = 42",
        ));
        let s = Settings::extract(fig).expect("settings");
        assert_eq!(s.wechat_mch_id.as_deref(), Some("1230000109"));
        assert_eq!(s.admin_openids, "42");
        assert_eq!(
            s.wechat_secret.as_ref().map(|k| k.expose_secret()),
            Some("7")
        );
    }

    #[test]
    fn secrets_do_not_show_in_debug() {
        let mut s = Settings::defaults().expect("defaults");
        s.jwt_secret = Some(SecretString::from("very-secret-value"));
        assert!(!format!("{s:?}").contains("very-secret-value"));
    }

    fn env_of(pairs: &[(&str, String)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn secrets_come_from_files_with_the_newline_trimmed() {
        let dir = tempfile::tempdir().expect("dir");
        let jwt = dir.path().join("jwt");
        std::fs::write(&jwt, "from-a-file\n").expect("write");
        let key = dir.path().join("key");
        std::fs::write(&key, "ab".repeat(32) + "\r\n").expect("write");
        let env = env_of(&[
            ("JWT_SECRET_FILE", jwt.display().to_string()),
            ("FIELD_ENCRYPTION_KEY_FILE", key.display().to_string()),
            // Blank means unset, as for the variables themselves.
            ("WECHAT_SECRET_FILE", " ".into()),
        ]);
        let found = secrets_from_files(&env).expect("secrets");
        assert_eq!(
            found,
            vec![
                ("jwt_secret".to_string(), "from-a-file".to_string()),
                ("field_encryption_key".to_string(), "ab".repeat(32)),
            ]
        );

        // Merged like the environment: the settings resolve with them.
        let mut fig = Figment::from(Toml::string(EMBEDDED_DEFAULTS));
        for (k, v) in found {
            fig = fig.merge((k, v));
        }
        let s = Settings::extract(fig).expect("settings");
        assert_eq!(
            s.jwt_secret.as_ref().map(|v| v.expose_secret()),
            Some("from-a-file")
        );
        assert!(
            FieldCipher::from_hex(s.field_encryption_key.expect("key").expose_secret()).is_ok()
        );
    }

    #[test]
    fn every_secret_can_come_from_a_file() {
        let dir = tempfile::tempdir().expect("dir");
        let vars: Vec<(String, String)> = SECRET_KEYS
            .iter()
            .map(|name| {
                let f = dir.path().join(name);
                std::fs::write(&f, format!("value of {name}\n")).expect("write");
                (format!("{name}_FILE"), f.display().to_string())
            })
            .collect();
        let pairs: Vec<(&str, String)> =
            vars.iter().map(|(k, v)| (k.as_str(), v.clone())).collect();
        let found = secrets_from_files(&env_of(&pairs)).expect("secrets");
        assert_eq!(found.len(), SECRET_KEYS.len());
        let mut fig = Figment::from(Toml::string(EMBEDDED_DEFAULTS));
        for (k, v) in found {
            fig = fig.merge((k, v));
        }
        let s = Settings::extract(fig).expect("settings");
        let shown: std::collections::HashMap<_, _> = s.effective().into_iter().collect();
        for name in SECRET_KEYS {
            assert_eq!(shown.get(name).map(String::as_str), Some("set"), "{name}");
        }
        assert_eq!(
            s.aws_secret_access_key.as_ref().map(|v| v.expose_secret()),
            Some("value of AWS_SECRET_ACCESS_KEY")
        );
    }

    #[test]
    fn a_secret_set_twice_or_an_unreadable_file_is_named() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("jwt");
        std::fs::write(&f, "x").expect("write");
        let empty = dir.path().join("empty");
        std::fs::write(&empty, "\n").expect("write");
        let env = env_of(&[
            ("JWT_SECRET", "inline".into()),
            ("JWT_SECRET_FILE", f.display().to_string()),
            (
                "WECHAT_PAY_KEY_FILE",
                dir.path().join("absent").display().to_string(),
            ),
            ("WECHAT_MP_TOKEN_FILE", empty.display().to_string()),
        ]);
        let Err(SettingsError::Missing(m)) = secrets_from_files(&env) else {
            panic!("expected errors");
        };
        assert_eq!(m.len(), 3, "{m:?}");
        assert!(m[0].contains("JWT_SECRET and JWT_SECRET_FILE"), "{m:?}");
        assert!(
            m.iter()
                .any(|x| x.starts_with("WECHAT_PAY_KEY_FILE (cannot read"))
        );
        assert!(
            m.iter()
                .any(|x| x.starts_with("WECHAT_MP_TOKEN_FILE (the file"))
        );
    }

    #[test]
    fn effective_settings_name_every_variable_and_hide_secrets() {
        let mut s = Settings::defaults().expect("defaults");
        s.jwt_secret = Some(SecretString::from("very-secret-value"));
        s.database_url = "mysql://campus:db-password@db.internal/campus".into();
        let shown = s.effective();
        let names: Vec<&str> = shown.iter().map(|(k, _)| *k).collect();
        // Every variable this process reads has its line, once.
        let mut sorted = names.clone();
        sorted.sort_unstable();
        let mut keys = ENV_KEYS.to_vec();
        keys.sort_unstable();
        assert_eq!(sorted, keys);
        let text = format!("{shown:?}");
        assert!(!text.contains("very-secret-value"));
        assert!(!text.contains("db-password"));
        assert!(text.contains("mysql://campus:***@db.internal/campus"));
    }

    #[test]
    fn public_base_url_must_be_callback_base_problem() {
        assert!(callback_base_problem("https://errand.example.edu.cn").is_ok());
        for bad in [
            "http://errand.example.edu.cn",
            "https://127.0.0.1:8443",
            "https://localhost",
            "https://[::1]",
            "https://0.0.0.0",
            "not a url",
        ] {
            assert!(callback_base_problem(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn deploy_problems_check_the_merchant_certificate() {
        let data = |n: &str| {
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("src/wechat/pay/testdata")
                .join(n)
        };
        let mut s = Settings::defaults().expect("defaults");
        s.jwt_secret = Some(SecretString::from("j".repeat(32)));
        s.field_encryption_key = Some(SecretString::from("ab".repeat(32)));
        s.wechat_appid = Some("wx1".into());
        s.wechat_secret = Some(SecretString::from("s"));
        s.wechat_mch_id = Some("1900000109".into());
        s.wechat_pay_key = Some(SecretString::from("k".repeat(32)));
        s.wechat_pay_client_cert = data("test_merchant_cert.crt");
        s.wechat_pay_client_key = data("test_merchant_key.key");
        s.public_base_url = "https://errand.example.edu.cn".into();
        assert_eq!(s.deploy_problems(), Vec::<String>::new());

        s.wechat_pay_client_key = data("test_other_key.key");
        s.public_base_url = "http://127.0.0.1:8080".into();
        let p = s.deploy_problems();
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p.iter()
                .any(|m| m.starts_with("WECHAT_PAY_CLIENT_CERT / WECHAT_PAY_CLIENT_KEY")),
            "{p:?}"
        );
        assert!(p.iter().any(|m| m.starts_with("PUBLIC_BASE_URL")), "{p:?}");
    }
}
