//! Team expenses, the members' side: record, list, void, the quarter's summary, and
//! the caller's group.

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse, get, post, web};
use utoipa_actix_web::service_config::ServiceConfig;

use campus_impl::expenses::{
    CreateExpense, ExpenseListQuery, ExpenseView, MyGroupView, Summary, SummaryQuery,
};
use campus_impl::orders::Page;
use campus_impl::{AppContext, ExpenseId, ExpenseSource};

use crate::error::{ApiError, ErrorBody};
use crate::extract::{Authed, idempotency_key};

pub fn config(cfg: &mut ServiceConfig) {
    cfg.service(create)
        .service(list)
        .service(summary)
        .service(void)
        .service(my_group);
}

#[utoipa::path(tag = "expenses", security(("bearer" = [])),
    request_body = CreateExpense,
    params(("Idempotency-Key" = Option<String>, Header, description = "same key, same user: the first expense again")),
    responses((status = 201, description = "Recorded in the caller's group, in the quarter of `spent_on`", body = ExpenseView),
              (status = 401, body = ErrorBody),
              (status = 403, description = "`not_group_member`: the caller is in no expense group", body = ErrorBody),
              (status = 409, description = "`idempotency_conflict`", body = ErrorBody),
              (status = 422, description = "`validation_failed`: amount not 1..=10000000 fen, `what` empty or over 64 characters, `spent_on` not a day or in the future", body = ErrorBody)))]
#[post("/expenses")]
async fn create(
    ctx: web::Data<AppContext>,
    user: Authed,
    req: HttpRequest,
    body: web::Json<CreateExpense>,
) -> Result<HttpResponse, ApiError> {
    let key = idempotency_key(&req)?;
    let made = ctx
        .expenses
        .record(&user.0, body.into_inner(), ExpenseSource::App, key)
        .await?;
    Ok(HttpResponse::build(StatusCode::CREATED)
        .insert_header(("Idempotent-Replayed", made.replayed.to_string()))
        .json(made.view))
}

#[utoipa::path(tag = "expenses", security(("bearer" = [])),
    params(ExpenseListQuery),
    responses((status = 200, description = "Ledger rows, newest first: expenses and their reversals", body = Page<ExpenseView>),
              (status = 401, body = ErrorBody),
              (status = 403, description = "`not_group_member`, `not_group_leader` (scope=group of a group the caller does not lead), `forbidden`", body = ErrorBody),
              (status = 404, description = "`group_id` names no group", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[get("/expenses")]
async fn list(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<ExpenseListQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.expenses.list(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "expenses", security(("bearer" = [])),
    params(SummaryQuery),
    responses((status = 200, description = "The quarter's total and unreimbursed sums, by member and by group", body = Summary),
              (status = 401, body = ErrorBody),
              (status = 403, description = "`not_group_member`, `not_group_leader`, `forbidden` (center: admins)", body = ErrorBody),
              (status = 404, description = "`group_id` names no group", body = ErrorBody),
              (status = 422, body = ErrorBody)))]
#[get("/expenses/summary")]
async fn summary(
    ctx: web::Data<AppContext>,
    user: Authed,
    q: web::Query<SummaryQuery>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.expenses.summary(&user.0, q.into_inner()).await?))
}

#[utoipa::path(tag = "expenses", security(("bearer" = [])),
    params(("id" = i64, Path, description = "the expense")),
    responses((status = 201, description = "The reversing row (the negated amount); the expense now shows `voided_by_id`", body = ExpenseView),
              (status = 401, body = ErrorBody),
              (status = 403, description = "`void_window_passed` (authors void on the day they recorded it; later, an admin), `forbidden` (a leader voiding a member's expense)", body = ErrorBody),
              (status = 404, description = "not found, or not the caller's", body = ErrorBody),
              (status = 409, description = "`already_voided`, `already_reimbursed`", body = ErrorBody),
              (status = 422, description = "a reversal cannot be voided", body = ErrorBody)))]
#[post("/expenses/{id}/void")]
async fn void(
    ctx: web::Data<AppContext>,
    user: Authed,
    id: web::Path<i64>,
) -> Result<HttpResponse, ApiError> {
    let r = ctx.expenses.void(&user.0, ExpenseId(*id)).await?;
    Ok(HttpResponse::build(StatusCode::CREATED).json(r))
}

#[utoipa::path(tag = "expenses", security(("bearer" = [])),
    responses((status = 200, description = "The caller's group, its members, and whether the caller leads it", body = MyGroupView),
              (status = 401, body = ErrorBody),
              (status = 403, description = "`not_group_member`", body = ErrorBody)))]
#[get("/groups/mine")]
async fn my_group(ctx: web::Data<AppContext>, user: Authed) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(ctx.expenses.my_group(&user.0).await?))
}
