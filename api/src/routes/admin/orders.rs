//! Orders for operators: the filtered list and reassignment. (The admin refund is
//! `POST /api/v1/admin/orders/{id}/refund` in `routes/orders.rs`.)

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::orders::{AdminOrderQuery, OrderView, Page};
use campus_impl::{AppContext, OrderId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(list).service(reassign);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(AdminOrderQuery),
    responses((status = 200, body = Page<OrderView>, description = "Newest first; `from`/`to` are Beijing days of the creation time"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: status, q, from, to, limit or cursor"),
              (status = 403, body = ErrorBody, description = "`forbidden` (not an admin) or `banned`"),
              (status = 401, body = ErrorBody)))]
#[get("/admin/orders")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<AdminOrderQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.orders
            .admin_list_orders(&user.0, q.into_inner())
            .await?,
    ))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = OrderView, description = "Back in the pool: `paid`, no runner; the runner is sent a message"),
              (status = 409, body = ErrorBody, description = "`invalid_transition`: not accepted or picked up"),
              (status = 404, body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[post("/admin/orders/{id}/reassign")]
async fn reassign(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.reassign_order(&user.0, OrderId(*id)).await?))
}
