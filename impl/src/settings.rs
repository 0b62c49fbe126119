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

use crate::crypto::FieldCipher;
use crate::wechat::mini::MiniConfig;
use crate::wechat::mp_crypto::MpCrypto;
use crate::wechat::pay::{ClientIdentity, PayConfig, SignType};

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
    "WECHAT_TEMPLATE_ORDER",
    "WECHAT_TEMPLATE_REMINDER",
    "REMINDER_HOUR_BEIJING",
    "ORDER_PAY_TIMEOUT_SECS",
    "PAY_RECONCILE_SECS",
    "ORDER_AUTO_COMPLETE_SECS",
    "IDEMPOTENCY_TTL_SECS",
    "RUNNER_SHARE_PERCENT",
    "WITHDRAW_APPROVAL",
    "WITHDRAW_DAILY_MAX_FEN",
    "WITHDRAW_DAILY_MAX_COUNT",
    "BILL_HOUR_BEIJING",
];

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
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_template_order: Option<String>,
    #[serde(default, deserialize_with = "lenient::opt")]
    pub wechat_template_reminder: Option<String>,
    pub reminder_hour_beijing: u32,

    pub order_pay_timeout_secs: i64,
    pub pay_reconcile_secs: u64,
    pub order_auto_complete_secs: i64,
    pub idempotency_ttl_secs: i64,

    /// Share of `fee_fen` credited to the runner when an order completes, 0 to 100.
    pub runner_share_percent: u32,
    pub withdraw_approval: campus_dal::WithdrawApproval,
    /// Per runner and Beijing day, as WeChat's defaults for transfers to balance.
    pub withdraw_daily_max_fen: i64,
    pub withdraw_daily_max_count: i64,
    pub bill_hour_beijing: u32,
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

/// The settings a start cannot do without, checked and typed by [`Settings::resolve`].
pub struct Resolved {
    pub jwt_secret: SecretString,
    pub cipher: FieldCipher,
    pub mini: MiniConfig,
    pub pay: PayConfig,
    /// Safe mode of the official account, when its AES key is set.
    pub official_account_crypto: Option<MpCrypto>,
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
        let fig = fig.merge(Env::raw().only(ENV_KEYS).lowercase(true));
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
            &mut self.wechat_template_order,
            &mut self.wechat_template_reminder,
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
            &mut self.aws_secret_access_key,
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
        let official_account = match MpCrypto::from_settings(self) {
            Ok(c) => c,
            Err(e) => {
                missing.push(format!("WECHAT_MP_AES_KEY / WECHAT_MP_APPID ({e})"));
                None
            }
        };
        let (
            Some(jwt_secret),
            Some(cipher),
            Some(appid),
            Some(secret),
            Some(mch_id),
            Some(key),
            Some(sign_type),
        ) = (
            jwt_secret,
            cipher,
            self.wechat_appid.clone(),
            self.wechat_secret.clone(),
            self.wechat_mch_id.clone(),
            self.wechat_pay_key.clone(),
            sign_type,
        )
        else {
            return Err(SettingsError::Missing(missing));
        };
        if !missing.is_empty() {
            return Err(SettingsError::Missing(missing));
        }
        let timeout = Duration::from_secs(self.wechat_timeout_secs.max(1));
        // The merchant certificate is only located here, and loaded by `PayClient::new`.
        let identity = match &self.wechat_pay_p12 {
            Some(path) => ClientIdentity::P12 {
                path: path.clone(),
                password: mch_id.clone(),
            },
            None => ClientIdentity::Pem {
                cert: self.wechat_pay_client_cert.clone(),
                key: self.wechat_pay_client_key.clone(),
            },
        };
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
        if missing.is_empty() {
            Ok(())
        } else {
            Err(SettingsError::Missing(missing))
        }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
