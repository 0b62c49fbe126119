//! The official account's template-message outbox, as a send log for operators.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::orders::Page;
use campus_impl::subscriptions::mp_outbox::{MpMessageView, MpMessagesQuery};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(MpMessagesQuery),
    responses((status = 200, body = Page<MpMessageView>, description = "Every official-account template message, newest first: `pending` (with its next try), `sending`, `sent` (with WeChat's msgid), `failed` (WeChat refused it: 43004 unfollowed, 40003 not this account's openid, ...) or `gave_up` after the last retry; attempts and the last error"),
              (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/mp-messages")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<MpMessagesQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.subscriptions
            .admin_mp_messages(&user.0, q.into_inner())
            .await?,
    ))
}
