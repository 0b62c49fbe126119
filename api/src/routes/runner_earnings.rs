//! A runner's earnings and withdrawals.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::limits::Limit;
use campus_impl::payouts::{
    EarningsView, WithdrawRequest, WithdrawalPage, WithdrawalQuery, WithdrawalView,
};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, ClientIp, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(earnings).service(withdraw).service(list);
}

#[derive(Deserialize, IntoParams)]
struct PageQuery {
    /// 1 to 100, default 20.
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "Balance (the ledger's sum), amounts being withdrawn and withdrawn, and the ledger newest first", body = EarningsView),
              (status = 401, body = ErrorBody), (status = 403, description = "not a runner", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[get("/runner/earnings")]
async fn earnings(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    Ok(HttpResponse::Ok().json(ctx.payouts.earnings(&user.0, q.limit, q.cursor).await?))
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    request_body = WithdrawRequest,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same user: the first withdrawal again")),
    responses((status = 202, description = "Reserved; `pending` (manual approval) or already transferred / `processing` (auto)", body = WithdrawalView),
              (status = 401, body = ErrorBody), (status = 403, description = "not a runner", body = ErrorBody),
              (status = 409, description = "`insufficient_balance`, `withdraw_limit_reached` (WeChat's daily caps), `idempotency_conflict`", body = ErrorBody),
              (status = 422, description = "amount below 100 fen", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`withdraw_user`), with Retry-After", body = ErrorBody)))]
#[post("/runner/withdrawals")]
async fn withdraw(
    ctx: web::Data<AppContext>,
    user: Authed,
    ip: ClientIp,
    req: HttpRequest,
    body: web::Json<WithdrawRequest>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    ctx.limits
        .check(Limit::WithdrawUser, &user.0.id.to_string())
        .await?;
    // WeChat takes the requesting client's or the server's IP as spbill_create_ip.
    let ip = ip.0.to_string();
    let r = ctx
        .payouts
        .request_withdrawal(&user.0, body.into_inner(), ip, key)
        .await?;
    Ok(HttpResponse::build(StatusCode::ACCEPTED)
        .insert_header(("Idempotent-Replayed", r.replayed.to_string()))
        .json(r.withdrawal))
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(WithdrawalQuery),
    responses((status = 200, description = "The caller's withdrawals, newest first", body = WithdrawalPage),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/runner/withdrawals")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<WithdrawalQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.payouts.my_withdrawals(&user.0, q.into_inner()).await?))
}
