//! `POST /auth/login`: a `wx.login` code for a session token.

use actix_web::{HttpResponse, post, web};
use serde::Deserialize;
use utoipa::ToSchema;

use campus_impl::Services;
use campus_impl::users::LoginResult;

use crate::error::{ApiError, ErrorBody};

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(login);
}

#[derive(Deserialize, ToSchema)]
pub struct LoginRequest {
    /// The code from `wx.login`.
    pub code: String,
}

#[utoipa::path(post, path = "/api/v1/auth/login", tag = "auth", request_body = LoginRequest,
    responses((status = 200, body = LoginResult),
              (status = 401, description = "WeChat rejected the code (`invalid_code`)", body = ErrorBody),
              (status = 400, body = ErrorBody)))]
#[post("/auth/login")]
async fn login(
    s: web::Data<Services>,
    body: web::Json<LoginRequest>,
) -> Result<HttpResponse, ApiError> {
    let r = s.login(&body.code).await?;
    Ok(HttpResponse::Ok().json(r))
}
