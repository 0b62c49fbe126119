//! Operators' endpoints under `/admin`.

pub mod reconciliations;
pub mod withdrawals;

use utoipa_actix_web::service_config::ServiceConfig;

pub fn config(cfg: &mut ServiceConfig) {
    withdrawals::config(cfg);
    reconciliations::config(cfg);
}
