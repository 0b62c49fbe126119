//! Refund attempts. `out_refund_no` is fixed per attempt and reused on every retry,
//! so WeChat never pays the same refund twice.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::ids::OrderId;
use crate::schema::refunds;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = refunds)]
pub struct Refund {
    pub id: i64,
    pub order_id: i64,
    pub out_refund_no: String,
    pub refund_fen: i64,
    pub reason: String,
    pub cause: String,
    pub status: String,
    pub refund_id: Option<String>,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub settled_at: Option<NaiveDateTime>,
    pub lease_until: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = refunds)]
pub struct NewRefund<'a> {
    pub order_id: i64,
    pub out_refund_no: &'a str,
    pub refund_fen: i64,
    pub reason: &'a str,
    pub cause: &'a str,
    pub status: &'a str,
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

/// Refunds not yet settled (requested or processing), oldest first.
pub fn unsettled(
    conn: &mut Conn,
    created_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Refund>> {
    refunds::table
        .filter(refunds::status.eq_any(["requested", "processing"]))
        .filter(refunds::created_at.lt(created_before))
        .select(Refund::as_select())
        .order(refunds::id.asc())
        .limit(limit)
        .load(conn)
}

/// requested → processing once WeChat accepted the refund.
pub fn mark_processing(
    conn: &mut Conn,
    id: i64,
    refund_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        refunds::table
            .find(id)
            .filter(refunds::status.eq("requested")),
    )
    .set((
        refunds::status.eq("processing"),
        refunds::refund_id.eq(Some(refund_id)),
        refunds::attempts.eq(refunds::attempts + 1),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
}

pub fn note_attempt(
    conn: &mut Conn,
    id: i64,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let error: String = error.chars().take(500).collect();
    diesel::update(refunds::table.find(id))
        .set((
            refunds::attempts.eq(refunds::attempts + 1),
            refunds::last_error.eq(Some(error)),
            refunds::updated_at.eq(now),
        ))
        .execute(conn)
}

/// requested|processing → success, once. Returns rows affected.
pub fn mark_success(
    conn: &mut Conn,
    id: i64,
    refund_id: Option<&str>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = refunds::table
        .find(id)
        .filter(refunds::status.eq_any(["requested", "processing"]));
    match refund_id {
        Some(r) => diesel::update(target)
            .set((
                refunds::status.eq("success"),
                refunds::refund_id.eq(Some(r)),
                refunds::settled_at.eq(Some(now)),
                refunds::updated_at.eq(now),
            ))
            .execute(conn),
        None => diesel::update(target)
            .set((
                refunds::status.eq("success"),
                refunds::settled_at.eq(Some(now)),
                refunds::updated_at.eq(now),
            ))
            .execute(conn),
    }
}

pub fn mark_failed(
    conn: &mut Conn,
    id: i64,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let error: String = error.chars().take(500).collect();
    diesel::update(
        refunds::table
            .find(id)
            .filter(refunds::status.eq_any(["requested", "processing"])),
    )
    .set((
        refunds::status.eq("failed"),
        refunds::last_error.eq(Some(error)),
        refunds::updated_at.eq(now),
    ))
    .execute(conn)
}

pub fn claim(
    conn: &mut Conn,
    id: i64,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        refunds::table.find(id).filter(
            refunds::lease_until
                .is_null()
                .or(refunds::lease_until.lt(now)),
        ),
    )
    .set(refunds::lease_until.eq(Some(until)))
    .execute(conn)
    .map(|n| n == 1)
}
