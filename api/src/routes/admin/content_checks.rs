//! Texts WeChat's content check flagged for review, or could not check when they were
//! written (and what the later check said), for operators.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::content_check::{ContentCheckView, ContentChecksQuery};
use campus_impl::orders::Page;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(ContentChecksQuery),
    responses((status = 200, body = Page<ContentCheckView>, description = "Newest first: `review` (accepted, for a person to look at), `pending` (WeChat could not be asked yet), and what a later check found (`pass`, `review`, `risky`); the text, its author and what it belongs to"),
              (status = 422, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/content-checks")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<ContentChecksQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.content_checks
            .admin_list(&user.0, q.into_inner())
            .await?,
    ))
}
