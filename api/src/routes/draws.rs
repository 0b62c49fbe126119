//! Lucky draws: create, join and leave, cancel, read, list, and the share code.

use actix_web::{HttpRequest, HttpResponse, delete, get, post, web};
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::limits::Limit;
use campus_impl::orders::Page;
use campus_impl::promotions::draws::{CreateDraw, DrawListQuery, DrawView};
use campus_impl::wechat::wxacode::WxaCodeParams;
use campus_impl::{AppContext, DrawId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(get_one)
        .service(join)
        .service(leave)
        .service(cancel)
        .service(qrcode);
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    request_body = CreateDraw,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same user: the first draw again")),
    responses((status = 201, description = "The new draw, `open` until `lock_at`", body = DrawView),
              (status = 409, description = "`idempotency_conflict`", body = ErrorBody),
              (status = 401, body = ErrorBody),
              (status = 403, description = "coupon prizes from a non-admin", body = ErrorBody),
              (status = 422, description = "`validation_failed`: title, prizes, `draw_at` too soon, unknown or inactive coupon", body = ErrorBody)))]
#[post("/draws")]
async fn create(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    body: web::Json<CreateDraw>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let made = ctx.draws.create(&user.0, body.into_inner(), key).await?;
    Ok(HttpResponse::Created()
        .insert_header(("Idempotent-Replayed", made.replayed.to_string()))
        .json(made.view))
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(DrawListQuery),
    responses((status = 200, description = "Draws the caller created (default) or joined, newest first", body = Page<DrawView>),
              (status = 401, body = ErrorBody), (status = 422, body = ErrorBody)))]
#[get("/draws")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<DrawListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.draws.list(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the draw")),
    responses((status = 200, description = "The draw; `winners`, `seed` and `algorithm` once drawn", body = DrawView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
#[get("/draws/{id}")]
async fn get_one(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.draws.get(&user.0, DrawId(*id)).await?))
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the draw")),
    responses((status = 200, description = "Joined (joining again changes nothing)", body = DrawView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "`draw_locked` (past `lock_at`, or drawn), `draw_cancelled`", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`draw_join_user`), with Retry-After", body = ErrorBody)))]
#[post("/draws/{id}/join")]
async fn join(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    ctx.limits
        .check(Limit::DrawJoinUser, &user.0.id.to_string())
        .await?;
    Ok(HttpResponse::Ok().json(ctx.draws.join(&user.0, DrawId(*id)).await?))
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the draw")),
    responses((status = 200, description = "Left (or was not in it)", body = DrawView),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 409, description = "`draw_locked`, `draw_cancelled`", body = ErrorBody)))]
#[delete("/draws/{id}/join")]
async fn leave(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.draws.leave(&user.0, DrawId(*id)).await?))
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the draw")),
    responses((status = 200, description = "Cancelled", body = DrawView),
              (status = 401, body = ErrorBody),
              (status = 403, description = "neither its creator nor an admin", body = ErrorBody),
              (status = 404, body = ErrorBody),
              (status = 409, description = "`draw_locked`, `draw_cancelled`", body = ErrorBody)))]
#[post("/draws/{id}/cancel")]
async fn cancel(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.draws.cancel(&user.0, DrawId(*id)).await?))
}

#[derive(Serialize, ToSchema)]
pub struct ShareCode {
    /// Public URL of the mini-program code; its scene is `d=<id>`.
    url: String,
}

#[utoipa::path(tag = "draws", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the draw")),
    responses((status = 200, description = "The draw's share code (opens the mini-program's home page with scene `d=<id>`)", body = ShareCode),
              (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
              (status = 429, description = "`rate_limited` (`qrcode_user`)", body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[get("/draws/{id}/qrcode")]
async fn qrcode(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    // Unknown draws get no code: a 404 like the draw itself.
    let draw = ctx.draws.get(&user.0, DrawId(*id)).await?;
    let scene = format!("d={}", draw.id);
    let params = WxaCodeParams::parse(Some(&scene), None, None, None, None)?;
    let code = ctx.qrcodes.mini_program_code_for(user.0.id, params).await?;
    Ok(HttpResponse::Ok().json(ShareCode { url: code.url }))
}
