//! Becoming a runner: apply, then an admin approves.

use actix_web::{HttpResponse, post, web};

use campus_impl::Services;
use campus_impl::UserId;
use campus_impl::users::{Role, UserView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(apply).service(approve);
}

#[utoipa::path(post, path = "/api/v1/runners/apply", tag = "runners", security(("bearer" = [])),
    responses((status = 202, body = UserView), (status = 409, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/runners/apply")]
async fn apply(s: web::Data<Services>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Accepted().json(s.apply_runner(&user.0).await?))
}

#[utoipa::path(post, path = "/api/v1/admin/runners/{user_id}/approve", tag = "runners",
    security(("bearer" = [])), params(("user_id" = i64, Path)),
    responses((status = 200, body = UserView), (status = 403, body = ErrorBody),
              (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/admin/runners/{user_id}/approve")]
async fn approve(
    s: web::Data<Services>,
    user: Authed,
    path: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    user.require(Role::Admin)?;
    Ok(HttpResponse::Ok().json(s.approve_runner(UserId(path.into_inner())).await?))
}
