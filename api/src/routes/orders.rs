//! Orders, customer and runner side, and the admin refund.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::limits::Limit;
use campus_impl::orders::{CreateOrder, ListQuery, OrderView, Page};
use campus_impl::refunds::AdminRefund;
use campus_impl::wechat::pay::JsapiParams;
use campus_impl::{AppContext, OrderId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, ClientIp, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(available)
        .service(get_one)
        .service(pay)
        .service(cancel)
        .service(confirm)
        .service(accept)
        .service(pickup)
        .service(deliver)
        .service(qrcode)
        .service(admin_refund);
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    request_body = CreateOrder,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same user: the first result again")),
    responses((status = 201, body = OrderView), (status = 422, body = ErrorBody),
              (status = 409, description = "`idempotency_conflict`, or `too_many_unpaid_orders` (MAX_UNPAID_ORDERS)", body = ErrorBody),
              (status = 429, description = "`rate_limited` (`order_user`), with Retry-After", body = ErrorBody),
              (status = 401, body = ErrorBody)))]
#[post("/orders")]
async fn create(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    body: web::Json<CreateOrder>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    ctx.limits
        .check(Limit::OrderUser, &user.0.id.to_string())
        .await?;
    let created = ctx
        .orders
        .create_order(&user.0, body.into_inner(), key)
        .await?;
    let status = StatusCode::from_u16(created.status).unwrap_or(StatusCode::CREATED);
    Ok(HttpResponse::build(status)
        .content_type("application/json")
        .insert_header(("Idempotent-Replayed", created.replayed.to_string()))
        .body(created.body))
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(ListQuery),
    responses((status = 200, body = Page<OrderView>), (status = 422, body = ErrorBody)))]
#[get("/orders")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.list_orders(&user.0, q.into_inner()).await?))
}

#[derive(Deserialize, IntoParams)]
struct PageQuery {
    limit: Option<i64>,
    cursor: Option<String>,
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(PageQuery),
    responses((status = 200, description = "Paid, unassigned orders, oldest first", body = Page<OrderView>),
              (status = 403, body = ErrorBody)))]
#[get("/runner/orders/available")]
async fn available(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let q = q.into_inner();
    Ok(HttpResponse::Ok().json(
        ctx.orders
            .available_orders(&user.0, q.limit, q.cursor)
            .await?,
    ))
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 404, description = "missing or not yours", body = ErrorBody)))]
#[get("/orders/{id}")]
async fn get_one(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.get_order(&user.0, OrderId(*id)).await?))
}

#[derive(ToSchema)]
#[allow(dead_code)]
struct JsapiParamsDoc {
    #[schema(rename = "appId")]
    app_id: String,
    #[schema(rename = "timeStamp")]
    time_stamp: String,
    #[schema(rename = "nonceStr")]
    nonce_str: String,
    package: String,
    #[schema(rename = "signType")]
    sign_type: String,
    #[schema(rename = "paySign")]
    pay_sign: String,
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "Parameters for wx.requestPayment", body = JsapiParamsDoc),
              (status = 409, body = ErrorBody), (status = 502, body = ErrorBody),
              (status = 429, description = "`rate_limited` (`pay_user`), with Retry-After", body = ErrorBody)))]
#[post("/orders/{id}/pay")]
async fn pay(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    ip: ClientIp,
) -> Result<HttpResponse, ApiError> {
    ctx.limits
        .check(Limit::PayUser, &user.0.id.to_string())
        .await?;
    let ip = ip.0.to_string();
    let params: JsapiParams = ctx.payments.pay_order(&user.0, OrderId(*id), &ip).await?;
    Ok(HttpResponse::Ok().json(params))
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "closed, or refunding after payment", body = OrderView),
              (status = 409, body = ErrorBody)))]
#[post("/orders/{id}/cancel")]
async fn cancel(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.cancel_order(&user.0, OrderId(*id)).await?))
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 409, body = ErrorBody)))]
#[post("/orders/{id}/confirm")]
async fn confirm(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.confirm_order(&user.0, OrderId(*id)).await?))
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 409, description = "`already_taken`", body = ErrorBody),
              (status = 403, body = ErrorBody)))]
#[post("/orders/{id}/accept")]
async fn accept(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.accept_order(&user.0, OrderId(*id)).await?))
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, body = OrderView), (status = 409, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[post("/orders/{id}/pickup")]
async fn pickup(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.orders.pickup_order(&user.0, OrderId(*id)).await?))
}

#[derive(Deserialize, ToSchema)]
struct DeliverBody {
    pickup_code: String,
}

#[utoipa::path(tag = "runner", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = DeliverBody,
    responses((status = 200, body = OrderView), (status = 422, description = "`wrong_pickup_code`", body = ErrorBody),
              (status = 409, body = ErrorBody), (status = 429, body = ErrorBody)))]
#[post("/orders/{id}/deliver")]
async fn deliver(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    body: web::Json<DeliverBody>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.orders
            .deliver_order(&user.0, OrderId(*id), &body.pickup_code)
            .await?,
    ))
}

#[utoipa::path(tag = "orders", security(("bearer" = [])),
    params(("id" = i64, Path)),
    responses((status = 200, description = "PNG of the delivery QR", content_type = "image/png"),
              (status = 404, body = ErrorBody)))]
#[get("/orders/{id}/qrcode")]
async fn qrcode(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let png = ctx.orders.order_qr_png(&user.0, OrderId(*id)).await?;
    Ok(HttpResponse::Ok()
        .content_type("image/png")
        .insert_header(("Cache-Control", "private, no-store"))
        .body(png))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("id" = i64, Path)), request_body = AdminRefund,
    responses((status = 200, description = "The order's refunds"),
              (status = 422, description = "`refund_exceeds_paid`", body = ErrorBody),
              (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
#[post("/admin/orders/{id}/refund")]
async fn admin_refund(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    body: web::Json<AdminRefund>,
) -> Result<HttpResponse, ApiError> {
    let id = OrderId(*id);
    let refunds = ctx
        .refunds
        .admin_refund(&user.0, id, body.into_inner())
        .await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({
        "order": ctx.orders.get_order(&user.0, id).await?,
        "refunds": refunds,
    })))
}
