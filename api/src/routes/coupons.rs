//! Coupons, the user's side: the claimable list, claiming, and the caller's coupons.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::limits::Limit;
use campus_impl::orders::Page;
use campus_impl::promotions::{CouponListQuery, CouponView, MyCouponsQuery, UserCouponView};
use campus_impl::{AppContext, CouponId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list).service(claim).service(mine);
}

#[utoipa::path(tag = "coupons", security(("bearer" = [])),
    params(CouponListQuery),
    responses((status = 200, description = "Active coupons with stock left that the caller may still claim, newest first, with `remaining`", body = Page<CouponView>),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/coupons")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<CouponListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.promotions.claimable(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "coupons", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the coupon"),
           ("Idempotency-Key" = Option<String>, Header, description = "same key, same user: the first claim again")),
    responses((status = 201, description = "Claimed: `available` until `expires_at`", body = UserCouponView),
              (status = 401, body = ErrorBody),
              (status = 404, description = "unknown or stopped coupon", body = ErrorBody),
              (status = 409, description = "`out_of_stock`, `already_claimed` (the coupon's `per_user_limit`), `idempotency_conflict`", body = ErrorBody),
              (status = 422, body = ErrorBody),
              (status = 429, description = "`rate_limited` (`coupon_claim_user`), with Retry-After", body = ErrorBody)))]
#[post("/coupons/{id}/claim")]
async fn claim(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    ctx.limits
        .check(Limit::CouponClaimUser, &user.0.id.to_string())
        .await?;
    let made = ctx.promotions.claim(&user.0, CouponId(*id), key).await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header(("Idempotent-Replayed", made.replayed.to_string()))
        .json(made.view))
}

#[utoipa::path(tag = "coupons", security(("bearer" = [])),
    params(MyCouponsQuery),
    responses((status = 200, description = "The caller's coupons, newest claim first", body = Page<UserCouponView>),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/me/coupons")]
async fn mine(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<MyCouponsQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.promotions.my_coupons(&user.0, q.into_inner()).await?))
}
