//! The application container: every service, built once from settings by
//! [`AppContext::build`] and shared (cheaply cloned) by every worker and job. Each
//! service holds only what it uses; this is the one place that wires them together.

use std::time::Duration;

use secrecy::ExposeSecret;

use campus_dal::MpMode;

use crate::auth::TokenIssuer;
use crate::backups::Backups;
use crate::bills::Bills;
use crate::cache::{Cache, CacheError};
use crate::client_addr::TrustedProxies;
use crate::console::ConsoleSessions;
use crate::content_check::ContentChecks;
use crate::db::Db;
use crate::expenses::Expenses;
use crate::jobs::Jobs;
use crate::limits::Limits;
use crate::mini_push::MiniPush;
use crate::official_account::{AccountKeys, OfficialAccount};
use crate::orders::{OrderTimes, Orders};
use crate::payments::{PayTimes, Payments};
use crate::payouts::{Earnings, Payouts, WithdrawCaps};
use crate::promotions::draws::Draws;
use crate::promotions::{GateKind, Promotions, StockGate};
use crate::qrcodes::QrCodes;
use crate::refunds::Refunds;
use crate::settings::{Settings, SettingsError};
use crate::stats::Stats;
use crate::storage::{Storage, StorageError};
use crate::subscriptions::mp_outbox::MpOutbox;
use crate::subscriptions::{Subscriptions, Templates};
use crate::telemetry::Metrics;
use crate::uploads::Uploads;
use crate::users::Users;
use crate::wechat::callback_ips::CallbackIps;
use crate::wechat::http::HttpSetupError;
use crate::wechat::mini::{MiniClient, MiniConfig};
use crate::wechat::mp::MpClient;
use crate::wechat::pay::{PayClient, PayError};
use crate::wechat::push::PushKeys;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Database(#[from] campus_dal::DalError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Http(#[from] HttpSetupError),
    #[error(transparent)]
    Pay(#[from] PayError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("{0}")]
    Other(String),
}

/// What a start does about migrations.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Migrations {
    /// Apply pending ones (under the database's migration lock): the demo, tests, and
    /// `serve` by default.
    Apply,
    /// Refuse to start while any is pending (`serve --no-migrate`: a deploy runs
    /// `campus-errand migrate` once, before the instances).
    Expect,
}

/// Everything a request handler or job needs.
#[derive(Clone)]
pub struct AppContext {
    pub users: Users,
    pub orders: Orders,
    pub payments: Payments,
    pub refunds: Refunds,
    pub subscriptions: Subscriptions,
    pub official_account: OfficialAccount,
    pub qrcodes: QrCodes,
    pub stats: Stats,
    pub console: ConsoleSessions,
    pub backups: Backups,
    pub payouts: Payouts,
    pub bills: Bills,
    pub promotions: Promotions,
    pub draws: Draws,
    pub expenses: Expenses,
    pub uploads: Uploads,
    pub mini_push: MiniPush,
    pub content_checks: ContentChecks,
    /// Infrastructure, for readiness, metrics and the tests' look inside.
    pub db: Db,
    pub cache: Cache,
    pub mini: MiniClient,
    pub metrics: Metrics,
    /// Abuse limits, checked by the HTTP layer per user or address and by the services
    /// where only they know the key (a QR code that needs WeChat, an official-account sender).
    pub limits: Limits,
    /// Whose `X-Forwarded-For` names the client.
    pub trusted_proxies: TrustedProxies,
    /// Where WeChat's pushes may come from (`WECHAT_CALLBACK_IP_CHECK`).
    pub callback_ips: CallbackIps,
    /// The period of the reconcile jobs (`PAY_RECONCILE_SECS`).
    reconcile_every: Duration,
    idempotency_ttl: chrono::Duration,
    /// Largest JSON body, and HTTP workers (0: one per core): read by the HTTP layer.
    pub max_body_bytes: usize,
    pub workers: usize,
}

impl AppContext {
    /// Connects the database (running pending migrations), the cache and the WeChat
    /// clients, and wires the services.
    pub async fn build(settings: Settings, metrics: Metrics) -> Result<Self, BuildError> {
        Self::build_with(settings, metrics, Migrations::Apply).await
    }

    /// As [`AppContext::build`], with the choice of migrating at start.
    pub async fn build_with(
        settings: Settings,
        metrics: Metrics,
        migrations: Migrations,
    ) -> Result<Self, BuildError> {
        let resolved = settings.resolve()?;
        let tokens = TokenIssuer::new(
            resolved.jwt_secret.expose_secret().as_bytes(),
            settings.token_ttl_secs,
        );
        let url = settings.database_url.clone();
        let size = settings.database_pool_size;
        let pools = tokio::task::spawn_blocking(move || -> Result<_, campus_dal::DalError> {
            let pools = crate::db::connect_pools(&url, size)?;
            match migrations {
                Migrations::Apply => {
                    let applied = crate::db::migrate(&pools)?;
                    if !applied.is_empty() {
                        tracing::info!(?applied, "migrations applied");
                    }
                }
                Migrations::Expect => {
                    let pending: Vec<String> = crate::db::migration_status(&pools)?
                        .into_iter()
                        .filter(|m| !m.applied)
                        .map(|m| m.name)
                        .collect();
                    if !pending.is_empty() {
                        return Err(campus_dal::DalError::Migration(format!(
                            "pending migrations ({}): run `campus-errand migrate` first",
                            pending.join(", ")
                        )));
                    }
                }
            }
            Ok(pools)
        })
        .await
        .map_err(|e| BuildError::Other(e.to_string()))??;
        let db = Db::new(pools);
        let cache = Cache::connect(settings.redis_url.as_deref()).await?;
        let limits = Limits::new(
            resolved.rate_limits,
            cache.clone(),
            settings.wechat_appid.as_deref().unwrap_or_default(),
        );
        let mini = MiniClient::new(resolved.mini.clone(), cache.clone(), metrics.clone())?;
        let pay = PayClient::new(resolved.pay, metrics.clone())?;
        let callback_ips = CallbackIps::new(mini.clone(), resolved.callback_ip_check);
        let storage = Storage::build(&settings, metrics.clone())?;
        let base = &settings.public_base_url;

        let content_checks = ContentChecks::new(db.clone(), mini.clone(), cache.clone());
        let users = Users::new(
            db.clone(),
            mini.clone(),
            tokens.clone(),
            resolved.cipher,
            settings.admin_openid_list(),
        )
        .with_content_checks(content_checks.clone());
        let mut subscriptions = Subscriptions::new(
            db.clone(),
            cache.clone(),
            mini.clone(),
            Templates {
                order: settings.wechat_template_order.clone(),
                reminder: settings.wechat_template_reminder.clone(),
                draw: settings.wechat_template_draw.clone(),
                reminder_hour_beijing: settings.reminder_hour_beijing,
                messages_per_user_day: settings.messages_per_user_day,
            },
        );
        if let Some(t) = resolved.mp_templates {
            let client = MpClient::new(
                MiniConfig {
                    appid: t.appid,
                    secret: t.secret,
                    api_base: resolved.mini.api_base.clone(),
                    extra_root: resolved.mini.extra_root.clone(),
                    timeout: resolved.mini.timeout,
                },
                cache.clone(),
                metrics.clone(),
            )?;
            let outbox = MpOutbox::new(
                db.clone(),
                client,
                t.order,
                mini.appid().to_string(),
                subscriptions.daily_caps(),
                settings.messages_per_user_day,
            );
            subscriptions = subscriptions.with_mp_outbox(outbox);
        }
        let earnings = Earnings::new(settings.runner_share_percent);
        let refunds = Refunds::new(
            db.clone(),
            pay.clone(),
            subscriptions.clone(),
            format!("{base}/api/v1/pay/refund-notify"),
        )
        .with_earnings(earnings);
        let payouts = Payouts::new(
            db.clone(),
            std::sync::Arc::new(pay.clone()),
            settings.withdraw_approval,
            WithdrawCaps {
                daily_max_fen: settings.withdraw_daily_max_fen,
                daily_max_count: settings.withdraw_daily_max_count,
            },
            Duration::from_secs(settings.wechat_timeout_secs.max(1)),
        );
        let bills = Bills::new(
            db.clone(),
            pay.clone(),
            cache.clone(),
            settings.bill_hour_beijing,
        );
        let payments = Payments::new(
            db.clone(),
            pay,
            refunds.clone(),
            subscriptions.clone(),
            format!("{base}/api/v1/pay/notify"),
            PayTimes {
                closeorder_min_age: chrono::Duration::seconds(
                    settings.wechat_closeorder_min_age_secs,
                ),
                period: chrono::Duration::seconds(settings.pay_reconcile_secs.max(1) as i64),
            },
        );
        let orders = Orders::new(
            db.clone(),
            cache.clone(),
            payments.clone(),
            refunds.clone(),
            subscriptions.clone(),
            OrderTimes {
                pay_timeout: chrono::Duration::seconds(settings.order_pay_timeout_secs),
                auto_complete_after: chrono::Duration::seconds(settings.order_auto_complete_secs),
            },
        )
        .with_earnings(earnings)
        .with_max_unpaid(settings.max_unpaid_orders)
        .with_content_checks(content_checks.clone());
        let uploads = Uploads::new(db.clone(), storage.clone(), mini.clone());
        let mini_push = MiniPush::new(
            cache.clone(),
            settings.wechat_mini_token.clone().map(|token| PushKeys {
                token,
                mode: if resolved.mini_push_crypto.is_some() {
                    MpMode::Compatible
                } else {
                    MpMode::Plain
                },
                crypto: resolved.mini_push_crypto,
            }),
            uploads.clone(),
        );
        let account = settings.wechat_mp_token.clone().map(|token| AccountKeys {
            token,
            crypto: resolved.official_account_crypto,
            mode: resolved.official_account_mode,
        });
        let gate = match (resolved.coupon_stock_gate, &cache) {
            (GateKind::Redis, Cache::Redis(redis)) => StockGate::Redis {
                redis: redis.clone(),
                namespace: settings.wechat_appid.clone().unwrap_or_default(),
            },
            _ => StockGate::Sql,
        };
        let promotions = Promotions::new(db.clone()).with_gate(gate);
        let draws = Draws::new(db.clone(), settings.draw_lock_secs)
            .with_subscriptions(subscriptions.clone())
            .with_content_checks(content_checks.clone());
        let expenses = Expenses::new(db.clone()).with_content_checks(content_checks.clone());
        let official_account = OfficialAccount::new(db.clone(), cache.clone(), account)
            .with_limits(limits.clone())
            .with_promotions(promotions.clone())
            .with_expenses(expenses.clone());
        let backups = Backups::new(
            db.pools().clone(),
            storage.clone(),
            settings.backup_hour_beijing,
            settings.backup_keep_days,
        )
        .with_cache(cache.clone());
        let qrcodes =
            QrCodes::new(mini.clone(), storage, &settings.qr_cache_dir).with_limits(limits.clone());
        let console = ConsoleSessions::new(
            cache.clone(),
            settings.wechat_appid.as_deref().unwrap_or_default(),
            tokens,
            qrcodes.clone(),
            settings.console_session_secs,
        );
        Ok(Self {
            users,
            orders,
            payments,
            refunds,
            subscriptions,
            official_account,
            qrcodes,
            stats: Stats::new(db.clone()),
            console,
            backups,
            payouts,
            bills,
            promotions,
            draws,
            expenses,
            uploads,
            mini_push,
            content_checks,
            db,
            cache,
            mini,
            metrics,
            limits,
            trusted_proxies: resolved.trusted_proxies,
            callback_ips,
            reconcile_every: Duration::from_secs(settings.pay_reconcile_secs.max(1)),
            idempotency_ttl: chrono::Duration::seconds(settings.idempotency_ttl_secs),
            max_body_bytes: settings.max_body_bytes,
            workers: settings.workers,
        })
    }

    /// Starts every background job; each is safe with several instances running.
    pub fn start_jobs(&self) -> Jobs {
        let period = self.reconcile_every;
        let mut handles = Vec::new();
        let m = &self.metrics;
        handles.extend(self.orders.jobs(m, period, self.idempotency_ttl));
        handles.extend(self.payments.jobs(m, period));
        handles.extend(self.refunds.jobs(m, period));
        handles.extend(self.subscriptions.jobs(m));
        handles.extend(self.backups.jobs(m));
        handles.extend(self.payouts.jobs(m, period));
        handles.extend(self.bills.jobs(m));
        handles.extend(self.promotions.jobs(m));
        handles.extend(self.draws.jobs(m));
        handles.extend(self.callback_ips.jobs(m));
        handles.extend(self.uploads.jobs(m));
        handles.extend(self.content_checks.jobs(m));
        Jobs::new(handles)
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
