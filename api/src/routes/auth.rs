//! `POST /auth/login`: a `wx.login` code for a session token.

use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::limits::Limit;
use campus_impl::users::LoginResult;

use crate::error::{ApiError, ErrorBody};
use crate::extract::ClientIp;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(login);
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The code from `wx.login`.
    pub code: String,
}

#[utoipa::path(tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResult),
              (status = 401, description = "WeChat rejected the code (`invalid_code`)", body = ErrorBody),
              (status = 403, description = "WeChat blocks this account's logins (`login_blocked`)", body = ErrorBody),
              (status = 503, description = "WeChat is busy (`wechat_busy`, with Retry-After): retry with the same code", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`login_ip`), with Retry-After", body = ErrorBody),
              (status = 400, body = ErrorBody)))]
#[post("/auth/login")]
async fn login(
    ctx: web::Data<AppContext>,
    ip: ClientIp,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    ctx.limits.check(Limit::LoginIp, &ip.0.to_string()).await?;
    let r = ctx.users.login(&body.code).await?;
    Ok(HttpResponse::Ok().json(r))
}
