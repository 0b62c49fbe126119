//! One module per resource, each with a `config(cfg)` that registers its routes.

pub mod auth;
pub mod health;
pub mod me;
pub mod mp;
pub mod notify;
pub mod orders;
pub mod pay;
pub mod qrcode;
pub mod runners;

use actix_web::web;

use crate::error::ApiError;

pub fn config(cfg: &mut web::ServiceConfig) {
    health::config(cfg);
    mp::config(cfg);
    qrcode::images_config(cfg);
    cfg.service(
        web::scope("/api/v1")
            .configure(auth::config)
            .configure(me::config)
            .configure(runners::config)
            .configure(orders::config)
            .configure(pay::config)
            .configure(qrcode::config)
            .configure(notify::config)
            .configure(health::openapi_config),
    );
}

/// Unknown routes answer in the contract's shape too.
pub async fn not_found() -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::not_found("no such endpoint"))
}
