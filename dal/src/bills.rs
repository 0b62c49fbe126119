//! Daily bill reconciliations (stored reports) and the ledger look-ups they match
//! WeChat's bill lines against.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{LedgerEvent, ReconciliationStatus};
use crate::payments::PaymentEvent;
use crate::schema::{payment_events, reconciliations};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = reconciliations)]
pub struct Reconciliation {
    pub bill_date: String,
    pub status: ReconciliationStatus,
    pub report: String,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

pub fn find(conn: &mut Conn, bill_date: &str) -> QueryResult<Option<Reconciliation>> {
    reconciliations::table
        .find(bill_date)
        .select(Reconciliation::as_select())
        .first(conn)
        .optional()
}

/// Stores the day's report, replacing an earlier run's (call inside a transaction).
pub fn save(
    conn: &mut Conn,
    bill_date: &str,
    status: ReconciliationStatus,
    report: &str,
    now: NaiveDateTime,
) -> QueryResult<()> {
    let updated = diesel::update(reconciliations::table.find(bill_date))
        .set((
            reconciliations::status.eq(status.as_str()),
            reconciliations::report.eq(report),
            reconciliations::updated_at.eq(now),
        ))
        .execute(conn)?;
    if updated == 0 {
        diesel::insert_into(reconciliations::table)
            .values((
                reconciliations::bill_date.eq(bill_date),
                reconciliations::status.eq(status.as_str()),
                reconciliations::report.eq(report),
                reconciliations::created_at.eq(now),
                reconciliations::updated_at.eq(now),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Ledger rows of `event` for an order number (payments: `paid`).
pub fn events_by_out_trade_no(
    conn: &mut Conn,
    out_trade_no: &str,
    event: LedgerEvent,
) -> QueryResult<Vec<PaymentEvent>> {
    payment_events::table
        .filter(payment_events::out_trade_no.eq(out_trade_no))
        .filter(payment_events::event.eq(event.as_str()))
        .select(PaymentEvent::as_select())
        .order(payment_events::id.asc())
        .load(conn)
}

/// Ledger rows of `event` with this reference (refunds: `refunded` by out_refund_no).
pub fn events_by_reference(
    conn: &mut Conn,
    reference: &str,
    event: LedgerEvent,
) -> QueryResult<Vec<PaymentEvent>> {
    payment_events::table
        .filter(payment_events::reference.eq(reference))
        .filter(payment_events::event.eq(event.as_str()))
        .select(PaymentEvent::as_select())
        .order(payment_events::id.asc())
        .load(conn)
}

/// Ledger rows of these events recorded in `[from, to)`.
pub fn events_between(
    conn: &mut Conn,
    events: &[LedgerEvent],
    from: NaiveDateTime,
    to: NaiveDateTime,
) -> QueryResult<Vec<PaymentEvent>> {
    let ev: Vec<&str> = events.iter().map(|e| e.as_str()).collect();
    payment_events::table
        .filter(payment_events::event.eq_any(ev))
        .filter(payment_events::created_at.ge(from))
        .filter(payment_events::created_at.lt(to))
        .select(PaymentEvent::as_select())
        .order(payment_events::id.asc())
        .load(conn)
}
