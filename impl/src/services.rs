//! The services container: everything a request handler or job needs, built once from
//! settings by `Services::build` and shared (cheaply cloned) by every worker.

use std::ops::Deref;
use std::sync::Arc;
use std::time::Duration;

use secrecy::ExposeSecret;

use crate::auth::TokenIssuer;
use crate::cache::{Cache, CacheError};
use crate::crypto::{CryptoError, FieldCipher};
use crate::db::Db;
use crate::qr::MiniCodes;
use crate::settings::Settings;
use crate::storage::{Storage, StorageError};
use crate::telemetry::Metrics;
use crate::wechat::http::HttpSetupError;
use crate::wechat::mini::{MiniClient, MiniConfig};
use crate::wechat::pay::{PayClient, PayConfig, PayError};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("missing setting {0}")]
    Missing(&'static str),
    #[error(transparent)]
    Database(#[from] campus_dal::DalError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Crypto(#[from] CryptoError),
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    #[error(transparent)]
    Pay(#[from] PayError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

pub struct ServicesInner {
    pub settings: Settings,
    pub db: Db,
    pub cache: Cache,
    pub mini: MiniClient,
    pub pay: PayClient,
    pub tokens: TokenIssuer,
    pub cipher: FieldCipher,
    pub metrics: Metrics,
    pub storage: Storage,
    pub mini_codes: MiniCodes,
}

#[derive(Clone)]
pub struct Services(Arc<ServicesInner>);

impl Deref for Services {
    type Target = ServicesInner;
    fn deref(&self) -> &ServicesInner {
        &self.0
    }
}

impl Services {
    /// Connects the database (running pending migrations), the cache and the WeChat clients.
    pub async fn build(settings: Settings, metrics: Metrics) -> Result<Self, BuildError> {
        let jwt = settings
            .jwt_secret
            .as_ref()
            .ok_or(BuildError::Missing("JWT_SECRET"))?;
        let tokens = TokenIssuer::new(jwt.expose_secret().as_bytes(), settings.token_ttl_secs);
        let cipher = FieldCipher::from_hex(
            settings
                .field_encryption_key
                .as_ref()
                .ok_or(BuildError::Missing("FIELD_ENCRYPTION_KEY"))?
                .expose_secret(),
        )?;
        let url = settings.database_url.clone();
        let size = settings.database_pool_size;
        let pools = tokio::task::spawn_blocking(move || -> Result<_, campus_dal::DalError> {
            let pools = crate::db::connect_pools(&url, size)?;
            let applied = crate::db::migrate(&pools)?;
            if !applied.is_empty() {
                tracing::info!(?applied, "migrations applied");
            }
            Ok(pools)
        })
        .await
        .map_err(|e| BuildError::Other(e.to_string()))??;
        let db = Db::new(pools);
        let cache = Cache::connect(settings.redis_url.as_deref()).await?;
        let mini = MiniClient::new(
            MiniConfig {
                appid: settings
                    .wechat_appid
                    .clone()
                    .ok_or(BuildError::Missing("WECHAT_APPID"))?,
                secret: settings
                    .wechat_secret
                    .clone()
                    .ok_or(BuildError::Missing("WECHAT_SECRET"))?,
                api_base: settings.wechat_api_base.clone(),
                extra_root: settings.wechat_ca_cert.clone(),
                timeout: Duration::from_secs(settings.wechat_timeout_secs),
            },
            cache.clone(),
            metrics.clone(),
        )?;
        let pay = PayClient::new(PayConfig::from_settings(&settings)?, metrics.clone())?;
        let storage = Storage::build(&settings, metrics.clone())?;
        let mini_codes = MiniCodes::new(&settings.qr_cache_dir, &storage);
        Ok(Services(Arc::new(ServicesInner {
            settings,
            db,
            cache,
            mini,
            pay,
            tokens,
            cipher,
            metrics,
            storage,
            mini_codes,
        })))
    }

    /// Readiness: the database answers, and Redis when it is configured.
    pub async fn ready(&self) -> Result<(), String> {
        self.db.ping().await.map_err(|e| e.to_string())?;
        self.cache.ping().await.map_err(|e| e.to_string())?;
        Ok(())
    }

    /// Refreshes the pool gauges; called when metrics are scraped.
    pub fn observe_pool(&self) {
        let (total, idle) = self.db.pool_state();
        self.metrics
            .pool
            .with_label_values(&["open"])
            .set(i64::from(total));
        self.metrics
            .pool
            .with_label_values(&["idle"])
            .set(i64::from(idle));
        self.metrics
            .pool
            .with_label_values(&["in_use"])
            .set(i64::from(total.saturating_sub(idle)));
    }
}
