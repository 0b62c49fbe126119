//! Users for operators: list and search, roles, bans, pending runner applications.

use actix_web::{HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::orders::Page;
use campus_impl::users::{AdminUserQuery, AdminUserView, RoleChange, RunnerApplication};
use campus_impl::{AppContext, UserId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list)
        .service(set_role)
        .service(ban)
        .service(unban)
        .service(applications);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(AdminUserQuery),
    responses((status = 200, body = Page<AdminUserView>, description = "Newest first"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: role, q, limit or cursor"),
              (status = 403, body = ErrorBody, description = "`forbidden` (not an admin) or `banned`"),
              (status = 401, body = ErrorBody)))]
#[get("/admin/users")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<AdminUserQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.users.admin_list(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = RoleChange,
    responses((status = 200, body = AdminUserView),
              (status = 422, body = ErrorBody, description = "unknown role"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`conflict`: your own role"),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/admin/users/{id}/role")]
async fn set_role(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    body: web::Json<RoleChange>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.users
            .set_role(&user.0, UserId(*id), body.into_inner().role)
            .await?,
    ))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AdminUserView, description = "Banned: every call with the user's tokens answers 403 `banned`, at once"),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`conflict`: yourself"),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/admin/users/{id}/ban")]
async fn ban(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.users.set_banned(&user.0, UserId(*id), true).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = AdminUserView),
              (status = 404, body = ErrorBody),
              (status = 409, body = ErrorBody, description = "`conflict`: yourself"),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/admin/users/{id}/unban")]
async fn unban(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.users.set_banned(&user.0, UserId(*id), false).await?))
}

/// The list convention's parameters, as text (a bad value is a 422).
#[derive(Deserialize, IntoParams)]
pub struct PageParams {
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<RunnerApplication>, description = "Applied and still a customer, oldest first; approve with `POST /api/v1/admin/runners/{user_id}/approve`"),
              (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/runner-applications")]
async fn applications(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.users
            .runner_applications(&user.0, q.limit.as_deref(), q.cursor.as_deref())
            .await?,
    ))
}
