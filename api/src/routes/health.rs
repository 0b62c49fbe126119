//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{HttpRequest, HttpResponse, get, web};
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;

use crate::error::{ApiError, ErrorBody};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

pub fn openapi_config(cfg: &mut ServiceConfig) {
    cfg.service(openapi);
}

#[utoipa::path(tag = "health",
    responses((status = 200, description = "The process is up", example = json!({"status": "ok"}))))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// How long `/readyz` waits for the database and the cache before answering 503.
const READY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(2);

#[utoipa::path(tag = "health",
    responses((status = 200, description = "Database (and Redis, if set) answer"),
              (status = 503, description = "A dependency does not answer")))]
#[get("/readyz")]
async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    // A database that is down can hold a pool checkout for the pool's whole connection
    // timeout; a load balancer's check should hear "not ready" before its own timeout.
    let ready = tokio::time::timeout(READY_TIMEOUT, ctx.ready())
        .await
        .unwrap_or_else(|_| Err(format!("no answer within {READY_TIMEOUT:?}")));
    match ready {
        Ok(()) => HttpResponse::Ok().json(json!({"status": "ready"})),
        Err(e) => {
            tracing::warn!(error = %e, "not ready");
            HttpResponse::ServiceUnavailable().json(json!({
                "status": "unavailable",
                "error": {"code": "service_unavailable", "message": "a dependency does not answer"}
            }))
        }
    }
}

/// Where `/metrics` is served and who may read it (`METRICS_BIND`, `METRICS_TOKEN`).
#[derive(Clone)]
pub struct MetricsAccess {
    /// False on the main listener when `METRICS_BIND` names another one.
    pub served_here: bool,
    pub token: Option<SecretString>,
}

#[utoipa::path(tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain"),
              (status = 401, description = "`METRICS_TOKEN` is set and the Bearer token is not it", body = ErrorBody),
              (status = 404, description = "Served on `METRICS_BIND` instead", body = ErrorBody)))]
#[get("/metrics")]
pub async fn metrics(
    ctx: web::Data<AppContext>,
    access: Option<web::Data<MetricsAccess>>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Some(a) = access {
        if !a.served_here {
            return Err(ApiError::not_found("no such endpoint"));
        }
        if let Some(token) = &a.token {
            let given = req
                .headers()
                .get(actix_web::http::header::AUTHORIZATION)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.strip_prefix("Bearer "))
                .unwrap_or("");
            let want = token.expose_secret().as_bytes();
            if !bool::from(subtle::ConstantTimeEq::ct_eq(given.as_bytes(), want)) {
                return Err(ApiError::unauthorized(
                    "metrics need the METRICS_TOKEN bearer token",
                ));
            }
        }
    }
    ctx.observe_pool();
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(ctx.metrics.render()))
}

#[utoipa::path(tag = "health",
    responses((status = 200, description = "This document", content_type = "application/json")))]
#[get("/openapi.json")]
async fn openapi(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}
