//! The caller's own profile and official-account bind code.

use actix_web::{HttpResponse, get, patch, post, web};

use campus_impl::Services;
use campus_impl::users::{BindCode, ProfilePatch, UserView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(get_me).service(patch_me).service(bind_code);
}

#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
#[get("/me")]
async fn get_me(s: web::Data<Services>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.user_view(&user.0.row, true)?))
}

#[utoipa::path(patch, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    request_body = ProfilePatch,
    responses((status = 200, body = UserView), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[patch("/me")]
async fn patch_me(
    s: web::Data<Services>,
    user: Authed,
    body: web::Json<ProfilePatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.update_profile(&user.0, body.into_inner()).await?))
}

#[utoipa::path(post, path = "/api/v1/me/bind-code", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = BindCode), (status = 401, body = ErrorBody)))]
#[post("/me/bind-code")]
async fn bind_code(s: web::Data<Services>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.issue_bind_code(&user.0).await?))
}
