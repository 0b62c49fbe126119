//! The caller's own profile and official-account bind code.

use actix_web::{HttpResponse, get, patch, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::limits::Limit;
use campus_impl::users::{BindCode, MaskedPhone, PhoneCode, ProfilePatch, UserView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(get_me)
        .service(patch_me)
        .service(set_phone)
        .service(bind_code);
}

#[utoipa::path(tag = "me", security(("bearer" = [])),
    responses((status = 200, body = UserView), (status = 401, body = ErrorBody)))]
#[get("/me")]
async fn get_me(ctx: web::Data<AppContext>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.users.me(&user.0)?))
}

#[utoipa::path(tag = "me", security(("bearer" = [])),
    request_body = ProfilePatch,
    responses((status = 200, body = UserView), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[patch("/me")]
async fn patch_me(
    ctx: web::Data<AppContext>,
    user: Authed,
    body: web::Json<ProfilePatch>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.users.update_profile(&user.0, body.into_inner()).await?))
}

#[utoipa::path(tag = "me", security(("bearer" = [])),
    request_body = PhoneCode,
    responses((status = 200, description = "the number WeChat gave, stored encrypted; shown masked", body = MaskedPhone),
              (status = 401, body = ErrorBody),
              (status = 422, description = "`validation_failed`; `invalid_phone_code` (unknown, used or expired: ask the user to tap the button again); `phone_refused` (WeChat refused, e.g. the app's quota)", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`phone_user`), with Retry-After", body = ErrorBody),
              (status = 502, body = ErrorBody), (status = 503, body = ErrorBody)))]
#[post("/me/phone")]
async fn set_phone(
    ctx: web::Data<AppContext>,
    user: Authed,
    body: web::Json<PhoneCode>,
) -> Result<HttpResponse, ApiError> {
    ctx.limits
        .check(Limit::PhoneUser, &user.0.id.to_string())
        .await?;
    Ok(HttpResponse::Ok().json(
        ctx.users
            .set_phone_by_code(&user.0, body.into_inner())
            .await?,
    ))
}

#[utoipa::path(tag = "me", security(("bearer" = [])),
    responses((status = 200, body = BindCode), (status = 401, body = ErrorBody),
              (status = 429, description = "`rate_limited` (`bind_code_user`), with Retry-After", body = ErrorBody)))]
#[post("/me/bind-code")]
async fn bind_code(ctx: web::Data<AppContext>, user: Authed) -> Result<HttpResponse, ApiError> {
    ctx.limits
        .check(Limit::BindCodeUser, &user.0.id.to_string())
        .await?;
    Ok(HttpResponse::Ok().json(ctx.users.issue_bind_code(&user.0).await?))
}
