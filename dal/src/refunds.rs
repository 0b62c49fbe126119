//! Refund attempts. `out_refund_no` is fixed per attempt and reused on every retry,
//! so WeChat never pays the same refund twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::{Conn, DbConn};
use crate::domain::{OrderStatus, RefundCause, RefundStatus};
use crate::ids::{OrderId, RefundId, UserId};
use crate::schema::{orders, refunds};

/// Refunds whose outcome is not known yet.
const UNSETTLED: [&str; 2] = [
    RefundStatus::Requested.as_str(),
    RefundStatus::Processing.as_str(),
];

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = refunds)]
pub struct Refund {
    pub id: RefundId,
    pub order_id: OrderId,
    pub out_refund_no: String,
    pub refund_fen: i64,
    pub reason: String,
    pub cause: RefundCause,
    pub status: RefundStatus,
    pub refund_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub settled_at: Option<NaiveDateTime>,
    pub lease_until: Option<NaiveDateTime>,
    /// The admin who asked for it (admin refunds only).
    pub requested_by: Option<UserId>,
}

#[derive(Insertable)]
#[diesel(table_name = refunds, treat_none_as_default_value = false)]
pub struct NewRefund<'a> {
    pub order_id: OrderId,
    pub out_refund_no: &'a str,
    pub refund_fen: i64,
    pub reason: &'a str,
    pub cause: RefundCause,
    pub status: RefundStatus,
    pub requested_by: Option<UserId>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn insert(conn: &mut Conn, new: &NewRefund<'_>) -> QueryResult<Refund> {
    diesel::insert_into(refunds::table)
        .values(new)
        .execute(conn)?;
    find_by_out_refund_no(conn, new.out_refund_no)?.ok_or(diesel::result::Error::NotFound)
}

pub fn find_by_out_refund_no(conn: &mut Conn, out_refund_no: &str) -> QueryResult<Option<Refund>> {
    refunds::table
        .filter(refunds::out_refund_no.eq(out_refund_no))
        .select(Refund::as_select())
        .first(conn)
        .optional()
}

pub fn for_order(conn: &mut Conn, order: OrderId) -> QueryResult<Vec<Refund>> {
    refunds::table
        .filter(refunds::order_id.eq(order.0))
        .select(Refund::as_select())
        .order(refunds::id.asc())
        .load(conn)
}

/// How many refunds the order has, for numbering the next one. Call it after the order
/// row is locked (by the reservation's update). On MariaDB the count is a locking read:
/// a plain read answers from the transaction's snapshot, which can predate refunds that
/// requests holding the row before this one committed, so their numbers would be handed
/// out again. SQLite has one writer, so its plain read is already current.
pub fn count_for_numbering(conn: &mut Conn, order: OrderId) -> QueryResult<usize> {
    let ids = refunds::table
        .filter(refunds::order_id.eq(order.0))
        .select(refunds::id);
    match conn {
        DbConn::Sqlite(c) => ids.load::<i64>(c),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => ids.for_update().load::<i64>(c),
    }
    .map(|v| v.len())
}

/// Refunds not yet settled (requested or processing), oldest first.
pub fn unsettled(
    conn: &mut Conn,
    created_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Refund>> {
    refunds::table
        .filter(refunds::status.eq_any(UNSETTLED))
        .filter(refunds::created_at.lt(created_before))
        .select(Refund::as_select())
        .order(refunds::id.asc())
        .limit(limit)
        .load(conn)
}

/// requested → processing once WeChat accepted the refund.
pub fn mark_processing(
    conn: &mut Conn,
    id: RefundId,
    refund_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        refunds::table
            .find(id.0)
            .filter(refunds::status.eq(RefundStatus::Requested.as_str())),
    )
    .set((
        refunds::status.eq(RefundStatus::Processing.as_str()),
        refunds::refund_id.eq(Some(refund_id)),
        refunds::attempts.eq(refunds::attempts + 1),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
}

pub fn note_attempt(
    conn: &mut Conn,
    id: RefundId,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let error: String = error.chars().take(500).collect();
    diesel::update(refunds::table.find(id.0))
        .set((
            refunds::attempts.eq(refunds::attempts + 1),
            refunds::last_error.eq(Some(error)),
            refunds::updated_at.eq(now),
        ))
        .execute(conn)
}

/// `from` → success, once (`from` is the status read in the same transaction: a late
/// SUCCESS may arrive for a refund already marked failed or manual). Returns rows affected.
pub fn mark_success(
    conn: &mut Conn,
    id: RefundId,
    from: RefundStatus,
    refund_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = refunds::table
        .find(id.0)
        .filter(refunds::status.eq(from.as_str()));
    match refund_id {
        Some(r) => diesel::update(target)
            .set((
                refunds::status.eq(RefundStatus::Success.as_str()),
                refunds::refund_id.eq(Some(r)),
                refunds::settled_at.eq(Some(now)),
                refunds::updated_at.eq(now),
            ))
            .execute(conn),
        None => diesel::update(target)
            .set((
                refunds::status.eq(RefundStatus::Success.as_str()),
                refunds::settled_at.eq(Some(now)),
                refunds::updated_at.eq(now),
            ))
            .execute(conn),
    }
}

/// requested|processing → manual (WeChat holds the money; a person must act). The amount
/// stays reserved. Returns rows affected.
pub fn mark_manual(
    conn: &mut Conn,
    id: RefundId,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    close_unsettled(conn, id, RefundStatus::Manual, error, now)
}

/// requested|processing → `to`, keeping why (the first 500 characters).
fn close_unsettled(
    conn: &mut Conn,
    id: RefundId,
    to: RefundStatus,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let error: String = error.chars().take(500).collect();
    diesel::update(
        refunds::table
            .find(id.0)
            .filter(refunds::status.eq_any(UNSETTLED)),
    )
    .set((
        refunds::status.eq(to.as_str()),
        refunds::last_error.eq(Some(error)),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Refunds a person must look at, oldest first: `manual` ones, failed ones whose order
/// still waits in `refunding` (a customer's cancel that could not be paid back), and
/// unsettled ones older than `stuck_before`.
pub fn needing_attention(
    conn: &mut Conn,
    stuck_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Refund>> {
    refunds::table
        .inner_join(orders::table)
        .filter(
            refunds::status
                .eq(RefundStatus::Manual.as_str())
                .or(refunds::status
                    .eq(RefundStatus::Failed.as_str())
                    .and(orders::status.eq(OrderStatus::Refunding.as_str())))
                .or(refunds::status
                    .eq_any(UNSETTLED)
                    .and(refunds::created_at.lt(stuck_before))),
        )
        .select(Refund::as_select())
        .order(refunds::id.asc())
        .limit(limit)
        .load(conn)
}

/// requested|processing → failed (a refusal `refundquery` confirmed): the amount is freed
/// by the caller. Returns rows affected.
pub fn mark_failed(
    conn: &mut Conn,
    id: RefundId,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    close_unsettled(conn, id, RefundStatus::Failed, error, now)
}

pub fn claim(
    conn: &mut Conn,
    id: RefundId,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        refunds::table.find(id.0).filter(
            refunds::lease_until
                .is_null()
                .or(refunds::lease_until.lt(now)),
        ),
    )
    .set(refunds::lease_until.eq(Some(until)))
    .execute(conn)
    .map(|n| n == 1)
}

/// Refunds for the admin list (all, or one status), newest first, ids below `before`;
/// `limit + 1` rows.
pub fn list(
    conn: &mut Conn,
    status: Option<RefundStatus>,
    before: Option<RefundId>,
    limit: i64,
) -> QueryResult<Vec<Refund>> {
    let mut q = refunds::table.select(Refund::as_select()).into_boxed();
    if let Some(s) = status {
        q = q.filter(refunds::status.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(refunds::id.lt(b.0));
    }
    q.order(refunds::id.desc()).limit(limit + 1).load(conn)
}
