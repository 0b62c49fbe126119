//! Admins issue coupons, stop them, and read their counts.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::promotions::{CouponView, CreateCoupon};
use campus_impl::{AppContext, CouponId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create).service(stop).service(get_one);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    request_body = CreateCoupon,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same admin: the first coupon again")),
    responses((status = 201, description = "Issued: `active`, with `claimed`, `used` and `remaining`", body = CouponView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "`idempotency_conflict`", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[post("/admin/coupons")]
async fn create(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    body: web::Json<CreateCoupon>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let made = ctx
        .promotions
        .create_coupon(&user.0, body.into_inner(), key)
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header(("Idempotent-Replayed", made.replayed.to_string()))
        .json(made.view))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "`stopped`: no more claims; claimed coupons stay good. Stopping again changes nothing", body = CouponView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[post("/admin/coupons/{id}/stop")]
async fn stop(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.promotions.stop_coupon(&user.0, CouponId(*id)).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "The coupon with its counts", body = CouponView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/admin/coupons/{id}")]
async fn get_one(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.promotions.get_coupon(&user.0, CouponId(*id)).await?))
}
