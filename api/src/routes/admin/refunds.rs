//! Refunds for operators, by status.

use actix_web::{HttpResponse, get, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::orders::Page;
use campus_impl::refunds::AdminRefundView;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list);
}

#[derive(Deserialize, IntoParams)]
pub struct RefundQuery {
    /// One refund status; absent: all.
    pub status: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(RefundQuery),
    responses((status = 200, body = Page<AdminRefundView>, description = "Newest first, with attempts and the last error"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: status, limit or cursor"),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/refunds")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<RefundQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.refunds
            .admin_list_refunds(
                &user.0,
                q.status.as_deref(),
                q.limit.as_deref(),
                q.cursor.as_deref(),
            )
            .await?,
    ))
}
