//! Liveness, readiness, metrics and the OpenAPI document.

use actix_web::{HttpResponse, get, web};
use serde_json::json;
use utoipa::OpenApi;

use campus_impl::Services;

pub fn config(cfg: &mut web::ServiceConfig) {
    cfg.service(healthz).service(readyz).service(metrics);
}

pub fn openapi_config(cfg: &mut web::ServiceConfig) {
    cfg.service(openapi);
}

#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The process is up", example = json!({"status": "ok"}))))]
#[get("/healthz")]
async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, description = "Database (and Redis, if set) answer"),
              (status = 503, description = "A dependency does not answer")))]
#[get("/readyz")]
async fn readyz(s: web::Data<Services>) -> HttpResponse {
    match s.ready().await {
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

#[utoipa::path(get, path = "/metrics", tag = "health",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
#[get("/metrics")]
async fn metrics(s: web::Data<Services>) -> HttpResponse {
    s.observe_pool();
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(s.metrics.render())
}

#[get("/openapi.json")]
async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(crate::openapi::ApiDoc::openapi())
}
