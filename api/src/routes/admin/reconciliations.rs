//! The daily bill reconciliation, run now or read.

use actix_web::{HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::bills::{ReconciliationView, RunReconciliation};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(run).service(get_one);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    request_body = RunReconciliation,
    responses((status = 200, description = "The day's bill fetched and matched now; `no_bill` when WeChat has none", body = ReconciliationView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, description = "bad date", body = ErrorBody),
              (status = 502, description = "WeChat Pay could not deliver a readable bill", body = ErrorBody)))]
#[post("/admin/reconciliations")]
async fn run(
    ctx: web::Data<AppContext>,
    user: Authed,
    body: web::Json<RunReconciliation>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.bills.run_now(&user.0, body.into_inner()).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(("date" = String, Path, description = "yyyy-MM-dd (Beijing)")),
    responses((status = 200, description = "The stored reconciliation of that day", body = ReconciliationView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "not reconciled yet", body = ErrorBody),
              (status = 422, description = "bad date", body = ErrorBody)))]
#[get("/admin/reconciliations/{date}")]
async fn get_one(
    ctx: web::Data<AppContext>,
    user: Authed,
    date: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.bills.get(&user.0, &date).await?))
}
