//! WeChat Pay callbacks: XML in, XML out, HTTP 200 with SUCCESS or FAIL, always
//! within WeChat's 5 seconds. Never a 5xx: WeChat would only retry it.

use actix_web::{HttpResponse, post, web};
use futures::StreamExt;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::wechat::pay::{NotifyReply, reply_fail};

/// Notifies are a few KiB; anything larger is not from WeChat.
const MAX_NOTIFY_BYTES: usize = 64 * 1024;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(pay_notify).service(refund_notify);
}

async fn read_capped(mut payload: web::Payload) -> Result<Vec<u8>, HttpResponse> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| xml(400, reply_fail("unreadable body")))?;
        if body.len() + chunk.len() > MAX_NOTIFY_BYTES {
            return Err(xml(413, reply_fail("body too large")));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn xml(status: u16, body: String) -> HttpResponse {
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::BAD_REQUEST),
    )
    .content_type("text/xml; charset=utf-8")
    .body(body)
}

fn reply(r: NotifyReply) -> HttpResponse {
    xml(200, r.body)
}

#[utoipa::path(tag = "wechat-pay",
    request_body(content = String, content_type = "text/xml", description = "WeChat Pay v2 payment result"),
    responses((status = 200, description = "return_code SUCCESS, or FAIL with a reason; nothing changes on FAIL", content_type = "text/xml")))]
#[post("/pay/notify")]
async fn pay_notify(ctx: web::Data<AppContext>, payload: web::Payload) -> HttpResponse {
    match read_capped(payload).await {
        Ok(body) => reply(ctx.payments.handle_pay_notify(&body).await),
        Err(resp) => resp,
    }
}

#[utoipa::path(tag = "wechat-pay",
    request_body(content = String, content_type = "text/xml", description = "WeChat Pay v2 refund result (req_info encrypted)"),
    responses((status = 200, description = "return_code SUCCESS, or FAIL with a reason", content_type = "text/xml")))]
#[post("/pay/refund-notify")]
async fn refund_notify(ctx: web::Data<AppContext>, payload: web::Payload) -> HttpResponse {
    match read_capped(payload).await {
        Ok(body) => reply(ctx.refunds.handle_refund_notify(&body).await),
        Err(resp) => resp,
    }
}
