//! Services of Campus Errand and the WeChat clients they use.
//! Layering: `api` calls these services; these call `campus_dal` for SQL.

pub mod auth;
pub mod cache;
pub mod crypto;
pub mod db;
pub mod jobs;
pub mod mp;
pub mod notify;
pub mod orders;
pub mod qr;
pub mod services;
pub mod settings;
pub mod storage;
pub mod telemetry;
pub mod users;
pub mod wechat;

pub use campus_dal::{OrderId, UserId};
pub use services::{BuildError, Services};
pub use settings::Settings;
