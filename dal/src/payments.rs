//! The append-only payment ledger and the log of raw WeChat Pay callbacks.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{CallbackKind, CallbackOutcome, LedgerEvent, LedgerSource};
use crate::ids::OrderId;
use crate::schema::{pay_notifications, payment_events};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = payment_events)]
pub struct PaymentEvent {
    pub id: i64,
    pub order_id: OrderId,
    pub out_trade_no: String,
    pub event: LedgerEvent,
    pub amount_fen: i64,
    pub source: LedgerSource,
    pub reference: String,
    pub created_at: NaiveDateTime,
}

pub struct NewEvent<'a> {
    pub order_id: OrderId,
    pub out_trade_no: &'a str,
    pub event: LedgerEvent,
    pub amount_fen: i64,
    pub source: LedgerSource,
    pub reference: &'a str,
    pub at: NaiveDateTime,
}

/// Appends an event; false when the same (order, event, reference) is already there,
/// which makes "record once" safe under duplicate notifies.
pub fn append(conn: &mut Conn, e: &NewEvent<'_>) -> QueryResult<bool> {
    let r = diesel::insert_into(payment_events::table)
        .values((
            payment_events::order_id.eq(e.order_id.0),
            payment_events::out_trade_no.eq(e.out_trade_no),
            payment_events::event.eq(e.event.as_str()),
            payment_events::amount_fen.eq(e.amount_fen),
            payment_events::source.eq(e.source.as_str()),
            payment_events::reference.eq(e.reference),
            payment_events::created_at.eq(e.at),
        ))
        .execute(conn);
    match r {
        Ok(_) => Ok(true),
        Err(err) if crate::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

pub fn for_order(conn: &mut Conn, order: OrderId) -> QueryResult<Vec<PaymentEvent>> {
    payment_events::table
        .filter(payment_events::order_id.eq(order.0))
        .select(PaymentEvent::as_select())
        .order(payment_events::id.asc())
        .load(conn)
}

/// How many raw callbacks are stored.
pub fn notification_count(conn: &mut Conn) -> QueryResult<i64> {
    pay_notifications::table.count().get_result(conn)
}

pub fn record_notification(
    conn: &mut Conn,
    kind: CallbackKind,
    out_trade_no: Option<&str>,
    outcome: CallbackOutcome,
    body: &str,
    at: NaiveDateTime,
) -> QueryResult<usize> {
    let body: String = body.chars().take(16_000).collect();
    diesel::insert_into(pay_notifications::table)
        .values((
            pay_notifications::kind.eq(kind.as_str()),
            pay_notifications::out_trade_no.eq(out_trade_no),
            pay_notifications::outcome.eq(outcome.as_str()),
            pay_notifications::body.eq(body),
            pay_notifications::created_at.eq(at),
        ))
        .execute(conn)
}

/// `(event, amount, time)` of the ledger rows of `events` recorded in `[from, until)`.
pub fn events_between(
    conn: &mut Conn,
    events: &[LedgerEvent],
    from: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Vec<(LedgerEvent, i64, NaiveDateTime)>> {
    payment_events::table
        .filter(payment_events::event.eq_any(events.iter().map(|e| e.as_str()).collect::<Vec<_>>()))
        .filter(payment_events::created_at.ge(from))
        .filter(payment_events::created_at.lt(until))
        .select((
            payment_events::event,
            payment_events::amount_fen,
            payment_events::created_at,
        ))
        .load(conn)
}
