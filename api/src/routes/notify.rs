//! Sending credits the user grants in the mini-program.

use actix_web::{HttpResponse, post, web};

use campus_impl::Services;
use campus_impl::notify::{CreditGrant, CreditsView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(credits);
}

#[utoipa::path(post, path = "/api/v1/notify/credits", tag = "notifications", security(("bearer" = [])),
    request_body = CreditGrant,
    responses((status = 200, body = CreditsView), (status = 422, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/notify/credits")]
async fn credits(
    s: web::Data<Services>,
    user: Authed,
    body: web::Json<CreditGrant>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(s.grant_credits(&user.0, body.into_inner()).await?))
}
