//! Admins approve or reject runners' withdrawals (`WITHDRAW_APPROVAL=manual`).

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::WithdrawalId;
use campus_impl::payouts::{RejectRequest, WithdrawalPage, WithdrawalQuery, WithdrawalView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list).service(approve).service(reject);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(WithdrawalQuery),
    responses((status = 200, description = "Withdrawals, newest first, by status", body = WithdrawalPage),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/admin/withdrawals")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<WithdrawalQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.payouts.all_withdrawals(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "Approved and transferred: `succeeded`, `processing` (outcome pending) or `failed` (refused; amount returned)", body = WithdrawalView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "`withdrawal_not_pending`", body = ErrorBody)))]
#[post("/admin/withdrawals/{id}/approve")]
async fn approve(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.payouts.approve(&user.0, WithdrawalId(*id)).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    request_body(content = inline(RejectDoc), description = "optional `reason`"),
    responses((status = 200, description = "Rejected: `failed`, the amount back in the runner's balance", body = WithdrawalView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, description = "`withdrawal_not_pending`", body = ErrorBody)))]
#[post("/admin/withdrawals/{id}/reject")]
async fn reject(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    body: Option<web::Json<RejectRequest>>,
) -> Result<HttpResponse, ApiError> {
    let req = body.map(web::Json::into_inner).unwrap_or_default();
    Ok(HttpResponse::Ok().json(ctx.payouts.reject(&user.0, WithdrawalId(*id), req).await?))
}

#[derive(utoipa::ToSchema)]
#[allow(dead_code)]
struct RejectDoc {
    reason: Option<String>,
}
