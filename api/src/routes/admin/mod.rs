//! The operators' side: every endpoint needs role `admin` (the services decide, given
//! the caller), except the console page and its sign-in by scanning. Routes carry
//! their full path under `/api/v1` rather than a nested `/admin` scope, which would
//! swallow the admin routes other modules register (`/admin/orders/{id}/refund`).

pub mod console;
pub mod content_checks;
pub mod coupons;
pub mod expenses;
pub mod messages;
pub mod mp_messages;
pub mod orders;
pub mod reconciliations;
pub mod refunds;
pub mod stats;
pub mod users;
pub mod withdrawals;

use utoipa_actix_web::service_config::ServiceConfig;

/// Inside `/api/v1`.
pub fn config(cfg: &mut ServiceConfig) {
    users::config(cfg);
    orders::config(cfg);
    refunds::config(cfg);
    messages::config(cfg);
    stats::config(cfg);
    console::config(cfg);
    withdrawals::config(cfg);
    reconciliations::config(cfg);
    coupons::config(cfg);
    expenses::config(cfg);
    mp_messages::config(cfg);
    content_checks::config(cfg);
}
