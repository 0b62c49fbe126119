//! The operators' console: one page (`GET /admin/`, plain HTML and JavaScript built
//! into the binary: no CDN, no build step) over the admin API, and its sign-in by
//! scanning a mini-program code.

use actix_web::http::header;
use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::console::{NewSession, SessionPoll};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, ClientIp};

const PAGE: &str = include_str!("console.html");

/// At the root: the page itself.
pub fn page_config(cfg: &mut ServiceConfig) {
    cfg.service(page).service(page_without_slash);
}

/// Inside `/api/v1`: the sign-in sessions.
pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(open).service(approve).service(poll);
}

#[utoipa::path(tag = "console",
    responses((status = 200, description = "The console page", content_type = "text/html")))]
#[get("/admin/")]
async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // The page holds an admin token: no framing, no referrer to image hosts.
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
        ))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .body(PAGE)
}

#[utoipa::path(tag = "console",
    responses((status = 308, description = "To `/admin/`")))]
#[get("/admin")]
async fn page_without_slash() -> HttpResponse {
    HttpResponse::PermanentRedirect()
        .insert_header((header::LOCATION, "/admin/"))
        .finish()
}

#[utoipa::path(tag = "console",
    responses((status = 201, body = NewSession, description = "Show `qrcode_url` to be scanned; poll the session until it is approved or expired"),
              (status = 429, body = ErrorBody, description = "`rate_limited`: too many sessions from this address"),
              (status = 503, body = ErrorBody), (status = 502, body = ErrorBody)))]
#[post("/console/sessions")]
async fn open(ctx: web::Data<AppContext>, ip: ClientIp) -> Result<HttpResponse, ApiError> {
    let client = ip.0.to_string();
    Ok(HttpResponse::Created()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ctx.console.open(&client).await?))
}

#[utoipa::path(tag = "console", security(("bearer" = [])),
    params(("id" = String, Path, description = "From the scanned code's scene, `cs=<id>`")),
    responses((status = 200, body = SessionPoll, description = "Approved: the page receives a token for the approving admin"),
              (status = 403, body = ErrorBody, description = "`forbidden`: not an admin (or `banned`)"),
              (status = 404, body = ErrorBody, description = "unknown or expired"),
              (status = 409, body = ErrorBody, description = "`already_approved`"),
              (status = 401, body = ErrorBody)))]
#[post("/console/sessions/{id}/approve")]
async fn approve(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.console.approve(&user.0, &id).await?))
}

#[utoipa::path(tag = "console",
    params(("id" = String, Path)),
    responses((status = 200, body = SessionPoll, description = "`pending`, `approved` (with the token in the first answer after the approval only) or `expired`"),
              (status = 404, body = ErrorBody, description = "not a session id")))]
#[get("/console/sessions/{id}")]
async fn poll(ctx: web::Data<AppContext>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(ctx.console.poll(&id).await?))
}
