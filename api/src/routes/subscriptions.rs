//! Subscribe-message credits: the templates a user accepted in the mini-program.

use actix_web::{HttpResponse, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::subscriptions::{CreditGrant, CreditsView};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(credits);
}

#[utoipa::path(tag = "notifications", security(("bearer" = [])),
    request_body = CreditGrant,
    responses((status = 200, body = CreditsView),
        (status = 422, description = "validation_failed; form_id_retired for a legacy form_id", body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/notify/credits")]
async fn credits(
    ctx: web::Data<AppContext>,
    user: Authed,
    body: web::Json<CreditGrant>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.subscriptions
            .grant_credits(&user.0, body.into_inner())
            .await?,
    ))
}
