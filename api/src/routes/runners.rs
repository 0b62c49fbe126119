//! Becoming a runner: apply, then an admin approves.

use actix_web::{HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::UserId;
use campus_impl::users::UserView;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(apply).service(approve);
}

#[utoipa::path(tag = "runners", security(("bearer" = [])),
    responses((status = 202, body = UserView), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/runners/apply")]
async fn apply(ctx: web::Data<AppContext>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(ctx.users.apply_runner(&user.0).await?))
}

#[utoipa::path(tag = "runners",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/admin/runners/{user_id}/approve")]
async fn approve(
    ctx: web::Data<AppContext>,
    user: Authed,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.users
            .approve_runner(&user.0, UserId(path.into_inner()))
            .await?,
    ))
}
