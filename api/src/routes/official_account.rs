//! The official account's server URL: WeChat's URL check (GET) and message pushes (POST).

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::official_account::PushQuery;

use crate::error::ApiError;
use crate::extract::ClientIp;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(verify).service(message);
}

#[utoipa::path(tag = "official-account",
    params(("signature" = String, Query), ("timestamp" = String, Query), ("nonce" = String, Query), ("echostr" = String, Query)),
    responses((status = 200, description = "echostr, when the signature holds", content_type = "text/plain"),
              (status = 403, description = "bad signature; `forbidden_address` (WECHAT_CALLBACK_IP_CHECK: not from WeChat)"), (status = 404, description = "official account not configured")))]
#[get("/wechat/mp")]
async fn verify(
    ctx: web::Data<AppContext>,
    q: web::Query<PushQuery>,
    ip: ClientIp,
) -> Result<HttpResponse, ApiError> {
    ctx.callback_ips.check(ip.0).await?;
    let echo = ctx.official_account.echo(&q)?;
    Ok(HttpResponse::Ok().content_type("text/plain").body(echo))
}

#[utoipa::path(tag = "official-account",
    request_body(content = String, content_type = "text/xml"),
    responses((status = 200, description = "reply XML in the push's mode (or `success`)", content_type = "text/xml"),
              (status = 403, description = "bad signature; `forbidden_address` (WECHAT_CALLBACK_IP_CHECK: not from WeChat)"), (status = 400, description = "malformed message"),
              (status = 503, description = "WECHAT_CALLBACK_IP_CHECK is on and WeChat's addresses could not be fetched (WeChat retries)")))]
#[post("/wechat/mp")]
async fn message(
    ctx: web::Data<AppContext>,
    q: web::Query<PushQuery>,
    ip: ClientIp,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    ctx.callback_ips.check(ip.0).await?;
    let reply = ctx.official_account.message(&q, &body).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(reply))
}
