//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use serde_json::json;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;

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

#[utoipa::path(tag = "health",
    responses((status = 200, description = "Database (and Redis, if set) answer"),
              (status = 503, description = "A dependency does not answer")))]
#[get("/readyz")]
async fn readyz(ctx: web::Data<AppContext>) -> HttpResponse {
    match ctx.ready().await {
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

#[utoipa::path(tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
async fn metrics(ctx: web::Data<AppContext>) -> HttpResponse {
    ctx.observe_pool();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(ctx.metrics.render())
}

#[utoipa::path(tag = "health",
    responses((status = 200, description = "This document", content_type = "application/json")))]
#[get("/openapi.json")]
async fn openapi(doc: web::Data<utoipa::openapi::OpenApi>) -> HttpResponse {
    HttpResponse::Ok().json(doc.get_ref())
}
