//! Services of Campus Errand and the WeChat clients they use, one module per concern:
//! `users`, `orders`, `payments`, `refunds`, `subscriptions` (subscribe messages),
//! `official_account`, `promotions` (coupons), `qrcodes`, `stats` (daily figures for operators), `console`
//! (the operators' sign-in by scanning); `context` wires them into one [`AppContext`].
//! Infrastructure lives apart: `db`, `cache`, `storage`, `crypto`, `settings`,
//! `telemetry`, `wechat` (the clients). Layering: `api` calls these services; these
//! call `campus_dal` for SQL.

pub mod auth;
pub mod backups;
pub mod bills;
pub mod cache;
pub mod client_addr;
pub mod console;
pub mod content_check;
pub mod context;
pub mod crypto;
pub mod db;
pub mod expenses;
pub mod idempotency;
pub mod jobs;
pub mod limits;
pub mod mini_push;
pub mod mp_menu;
pub mod official_account;
pub mod orders;
pub mod payments;
pub mod payouts;
pub mod promotions;
pub mod qrcodes;
pub mod refunds;
pub mod settings;
pub mod stats;
pub mod storage;
pub mod subscriptions;
pub mod telemetry;
pub mod text;
pub mod uploads;
pub mod users;
pub mod wechat;

pub use campus_dal::{
    CouponId, DrawId, ExpenseId, ExpenseSource, GroupId, MpMode, OrderId, Switch, UserCouponId,
    UserId, WithdrawalId,
};
pub use context::{AppContext, BuildError, Migrations};
pub use settings::Settings;
