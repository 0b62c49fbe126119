//! Daily statistics, in Beijing days.

use actix_web::{HttpResponse, get, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::AppContext;
use campus_impl::stats::{DailyStats, StatsQuery};

use crate::error::{ApiError, ErrorBody};
use crate::extract::Authed;

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(daily);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(StatsQuery),
    responses((status = 200, body = DailyStats, description = "One entry per Beijing day from `from` to `to`, both inclusive"),
              (status = 422, body = ErrorBody, description = "`validation_failed`: a date, `to` before `from`, or more than 366 days"),
              (status = 403, body = ErrorBody), (status = 401, body = ErrorBody)))]
#[get("/admin/stats")]
async fn daily(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<StatsQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.stats.daily(&user.0, q.into_inner()).await?))
}
