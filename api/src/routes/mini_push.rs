//! The mini-program's message push URL: the console's URL check (GET) and pushes (POST),
//! such as WeChat's verdict on an uploaded image.

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::wechat::push::PushQuery;

use crate::error::ApiError;
use crate::extract::ClientIp;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(verify).service(message);
}

#[utoipa::path(tag = "mini-program",
    params(("signature" = String, Query), ("timestamp" = String, Query), ("nonce" = String, Query), ("echostr" = String, Query)),
    responses((status = 200, description = "echostr, when the signature holds", content_type = "text/plain"),
              (status = 403, description = "bad signature; `forbidden_address` (WECHAT_CALLBACK_IP_CHECK)"),
              (status = 404, description = "WECHAT_MINI_TOKEN not set")))]
#[get("/wechat/mini")]
async fn verify(
    ctx: web::Data<AppContext>,
    q: web::Query<PushQuery>,
    ip: ClientIp,
) -> Result<HttpResponse, ApiError> {
    ctx.callback_ips.check(ip.0).await?;
    let echo = ctx.mini_push.echo(&q)?;
    Ok(HttpResponse::Ok().content_type("text/plain").body(echo))
}

#[utoipa::path(tag = "mini-program",
    request_body(content(
        (String = "text/xml"),
        (String = "application/json"),
    )),
    responses((status = 200, description = "`success`", content_type = "text/plain"),
              (status = 400, description = "malformed message"),
              (status = 403, description = "bad signature, stale timestamp, reused nonce, refused mode; `forbidden_address`"),
              (status = 404, description = "WECHAT_MINI_TOKEN not set"),
              (status = 503, description = "the database or cache is unavailable (WeChat retries)")))]
#[post("/wechat/mini")]
async fn message(
    ctx: web::Data<AppContext>,
    q: web::Query<PushQuery>,
    ip: ClientIp,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    ctx.callback_ips.check(ip.0).await?;
    let reply = ctx.mini_push.message(&q, &body).await?;
    Ok(HttpResponse::Ok().content_type("text/plain").body(reply))
}
