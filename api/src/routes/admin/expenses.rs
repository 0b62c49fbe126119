//! Team expenses, the center's side: groups and members, reimbursements, the CSV report.

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use serde::Deserialize;
use utoipa::IntoParams;
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::expenses::{AddMember, CreateGroup, GroupView, Reimburse, ReimbursementView};
use campus_impl::{AppContext, GroupId};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create_group)
        .service(list_groups)
        .service(add_member)
        .service(reimburse)
        .service(report);
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    request_body = CreateGroup,
    responses((status = 201, description = "The new group, without members", body = GroupView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 409, description = "`group_name_taken`", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[post("/admin/groups")]
async fn create_group(
    ctx: web::Data<AppContext>,
    user: Authed,
    body: web::Json<CreateGroup>,
) -> Result<HttpResponse, ApiError> {
    let g = ctx
        .expenses
        .create_group(&user.0, body.into_inner())
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(g))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    responses((status = 200, description = "Every group with its members", body = Vec<GroupView>),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
#[get("/admin/groups")]
async fn list_groups(ctx: web::Data<AppContext>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.expenses.groups(&user.0).await?))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    request_body = AddMember,
    params(("id" = i64, Path, description = "the group")),
    responses((status = 200, description = "The group with its members: the user added, or their `leader` flag set when already a member", body = GroupView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "no such group", body = ErrorBody),
              (status = 409, description = "`already_in_group`: the user is in another group", body = ErrorBody),
              (status = 422, description = "no such user", body = ErrorBody)))]
#[post("/admin/groups/{id}/members")]
async fn add_member(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
    body: web::Json<AddMember>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(
        ctx.expenses
            .add_member(&user.0, GroupId(*id), body.into_inner())
            .await?,
    ))
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    request_body = Reimburse,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same admin: the first reimbursement again")),
    responses((status = 201, description = "Every unreimbursed row of the group's quarter is marked paid back by the caller, now", body = ReimbursementView),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 404, description = "no such group", body = ErrorBody),
              (status = 409, description = "`nothing_to_reimburse`, `idempotency_conflict`", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[post("/admin/reimbursements")]
async fn reimburse(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    body: web::Json<Reimburse>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let made = ctx
        .expenses
        .reimburse(&user.0, body.into_inner(), key)
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header(("Idempotent-Replayed", made.replayed.to_string()))
        .json(made.view))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ReportQuery {
    /// `2026Q4`; default: the current quarter (Beijing time).
    pub quarter: Option<String>,
}

#[utoipa::path(tag = "admin", security(("bearer" = [])),
    params(ReportQuery),
    responses((status = 200, description = "CSV, UTF-8 with a byte-order mark, CRLF lines, one row per ledger row: id, group_id, group, user_id, member, spent_on, what, amount_fen, amount_yuan (two decimals), kind, reverses_id, source, recorded_at, reimbursement_id, reimbursed_at", content_type = "text/csv", body = String),
              (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[get("/admin/reports/expenses.csv")]
async fn report(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<ReportQuery>,
) -> Result<HttpResponse, ApiError> {
    let r = ctx.expenses.report(&user.0, q.quarter.as_deref()).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CONTENT_TYPE, "text/csv; charset=utf-8"))
        .insert_header((
            CONTENT_DISPOSITION,
            format!("attachment; filename=\"{}\"", r.filename),
        ))
        .body(r.bytes))
}
