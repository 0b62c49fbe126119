//! The subscribe-message send log, for operators.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::orders::Page;
use campus_impl::subscriptions::MessageView;

use super::users::PageParams;
use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(PageParams),
    responses((status = 200, body = Page<MessageView>, description = "Every send attempt and its outcome, newest first"),
              (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/messages")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<PageParams>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.subscriptions
            .admin_messages(&user.0, q.limit.as_deref(), q.cursor.as_deref())
            .await?,
    ))
}
