//! Mini-program codes (`GET /api/v1/qrcode`) and, with `file://` storage, the stored
//! images themselves (`GET /images/<key>`).

use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, get, web};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::storage::IMMUTABLE_CACHE_CONTROL;
use campus_impl::wechat::wxacode::WxaCodeParams;

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

/// Inside `/api/v1`.
pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(mini_program_code);
}

/// At the root: `{PUBLIC_BASE_URL}/images/<key>` is what `file://` storage hands out.
pub fn images_config(cfg: &mut ServiceConfig) {
    cfg.service(image);
}

/// Everything arrives as text and is checked by the service, so that a bad width is a
/// 422 like any other bad value rather than the extractor's 400.
#[derive(Deserialize, IntoParams)]
pub struct CodeQuery {
    /// ≤ 32 characters of `0-9A-Za-z!#$&'()*+,/:;=?@-._~`; read by the page as `scene`.
    scene: Option<String>,
    /// Page path without a leading `/` or query, e.g. `pages/index/index`; absent: home page.
    page: Option<String>,
    /// 280–1280 pixels; default 430.
    width: Option<String>,
    /// `release` (default), `trial` or `develop`.
    env_version: Option<String>,
    /// `true` (default): the page must exist in the published version.
    check_path: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct CodeUrl {
    /// Public URL of the image (long-cacheable: the name is its content key).
    url: String,
}

#[utoipa::path(tag = "qrcode", security(("bearer" = [])),
    params(CodeQuery),
    responses(
        (status = 200, body = CodeUrl, description = "Made once, then served from the cache; `X-Cache: HIT` or `MISS`"),
        (status = 422, body = ErrorBody, description = "`validation_failed` (scene, page, width, ...) or `page_not_published` (WeChat 41030)"),
        (status = 503, body = ErrorBody, description = "`wechat_rate_limited` (with Retry-After) or `service_unavailable` (object storage)"),
        (status = 429, body = ErrorBody, description = "`rate_limited` (`qrcode_user`: codes not made before), with Retry-After"),
        (status = 502, body = ErrorBody, description = "`wechat_unavailable`"),
        (status = 401, body = ErrorBody)))]
#[get("/qrcode")]
async fn mini_program_code(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<CodeQuery>,
) -> Result<HttpResponse, ApiError> {
    let params = WxaCodeParams::parse(
        q.scene.as_deref(),
        q.page.as_deref(),
        q.width.as_deref(),
        q.env_version.as_deref(),
        q.check_path.as_deref(),
    )?;
    let code = ctx.qrcodes.mini_program_code_for(user.0.id, params).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("X-Cache", if code.source.is_hit() { "HIT" } else { "MISS" }))
        .json(CodeUrl { url: code.url }))
}

#[utoipa::path(tag = "qrcode",
    params(("key" = String, Path, description = "`<64 hex>.png` or `<64 hex>.jpg`")),
    responses(
        (status = 200, description = "The image, cacheable for a year", content_type = "image/png"),
        (status = 304, description = "`If-None-Match` matched"),
        (status = 404, body = ErrorBody, description = "No such image, or storage is not `file://`"),
        (status = 503, body = ErrorBody)))]
#[get("/images/{key}")]
async fn image(
    ctx: web::Data<AppContext>,
    req: HttpRequest,
    key: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let Some((bytes, format)) = ctx.qrcodes.stored_code_image(&key).await? else {
        return Err(ApiError::not_found("no such image"));
    };
    // The key is the content hash, so it is a strong validator by construction.
    let etag = format!("\"{}\"", key.split('.').next().unwrap_or_default());
    let cached = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    let mut resp = if cached {
        HttpResponse::NotModified()
    } else {
        HttpResponse::Ok()
    };
    resp.insert_header((header::CACHE_CONTROL, IMMUTABLE_CACHE_CONTROL))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"));
    if let Ok(v) = HeaderValue::from_str(&etag) {
        resp.insert_header((header::ETAG, v));
    }
    if cached {
        return Ok(resp.finish());
    }
    Ok(resp.content_type(format.content_type()).body(bytes))
}
