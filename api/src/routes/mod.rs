//! One module per resource, each with a `config(cfg)` that registers its routes. Routes
//! are registered once, through `utoipa_actix_web`, which collects each handler's
//! `#[utoipa::path]` description into the OpenAPI document as it registers it: a route
//! cannot be served without being documented.

pub mod admin;
pub mod auth;
pub mod coupons;
pub mod draws;
pub mod expenses;
pub mod health;
pub mod mini_push;
pub mod official_account;
pub mod orders;
pub mod qrcodes;
pub mod runner_earnings;
pub mod runners;
pub mod subscriptions;
pub mod uploads;
pub mod users;
pub mod wechat_pay;

use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig;

use crate::error::ApiError;

pub fn config(cfg: &mut ServiceConfig) {
    health::config(cfg);
    official_account::config(cfg);
    mini_push::config(cfg);
    qrcodes::images_config(cfg);
    admin::console::page_config(cfg);
    cfg.service(
        scope("/api/v1")
            .configure(auth::config)
            .configure(users::config)
            .configure(uploads::config)
            .configure(runners::config)
            .configure(orders::config)
            .configure(coupons::config)
            .configure(draws::config)
            .configure(expenses::config)
            .configure(wechat_pay::config)
            .configure(qrcodes::config)
            .configure(subscriptions::config)
            .configure(runner_earnings::config)
            .configure(admin::config)
            .configure(health::openapi_config),
    );
}

/// Unknown routes answer in the contract's shape too.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}
