//! The runners' earnings ledger: append-only rows whose sum is a runner's balance.
//! `(kind, reference)` is unique, so a cause (an order completing, a refund, a
//! withdrawal) is booked once however often it is retried.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::EarningKind;
use crate::ids::{EarningId, OrderId, UserId, WithdrawalId};
use crate::schema::{earnings, users};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = earnings)]
pub struct Earning {
    pub id: EarningId,
    pub runner_id: UserId,
    pub kind: EarningKind,
    pub amount_fen: i64,
    pub basis_fen: i64,
    pub order_id: Option<OrderId>,
    pub withdrawal_id: Option<WithdrawalId>,
    pub reference: String,
    pub created_at: NaiveDateTime,
}

pub struct NewEarning<'a> {
    pub runner_id: UserId,
    pub kind: EarningKind,
    /// Signed: credits positive, debits negative.
    pub amount_fen: i64,
    /// What the row was computed from (a refund debit: the refund's amount).
    pub basis_fen: i64,
    pub order_id: Option<OrderId>,
    pub withdrawal_id: Option<WithdrawalId>,
    pub reference: &'a str,
    pub at: NaiveDateTime,
}

/// Appends a row; false when this `(kind, reference)` is already booked.
pub fn append(conn: &mut Conn, e: &NewEarning<'_>) -> QueryResult<bool> {
    let r = diesel::insert_into(earnings::table)
        .values((
            earnings::runner_id.eq(e.runner_id.0),
            earnings::kind.eq(e.kind.as_str()),
            earnings::amount_fen.eq(e.amount_fen),
            earnings::basis_fen.eq(e.basis_fen),
            earnings::order_id.eq(e.order_id.map(|o| o.0)),
            earnings::withdrawal_id.eq(e.withdrawal_id.map(|w| w.0)),
            earnings::reference.eq(e.reference),
            earnings::created_at.eq(e.at),
        ))
        .execute(conn);
    match r {
        Ok(_) => Ok(true),
        Err(err) if crate::is_unique_violation(&err) => Ok(false),
        Err(err) => Err(err),
    }
}

/// Serialises every balance-changing transaction of one runner until it ends: a no-op
/// update takes the runner's row lock on MySQL (SQLite writes are serial already). Call it
/// first in the transaction, before any plain read, so that what follows sees every
/// transaction that held the lock before. Returns whether the user exists.
pub fn lock_runner(conn: &mut Conn, runner: UserId) -> QueryResult<bool> {
    diesel::update(users::table.find(runner.0))
        .set(users::updated_at.eq(users::updated_at))
        .execute(conn)
        .map(|n| n == 1)
}

/// The runner's balance: the sum of the ledger (summed here, so both backends give an
/// integer: MySQL's SUM of BIGINT is DECIMAL).
pub fn balance(conn: &mut Conn, runner: UserId) -> QueryResult<i64> {
    let amounts: Vec<i64> = earnings::table
        .filter(earnings::runner_id.eq(runner.0))
        .select(earnings::amount_fen)
        .load(conn)?;
    Ok(amounts.iter().sum())
}

/// The runner's ledger, newest first, before `before` (a row id) when given.
pub fn list(
    conn: &mut Conn,
    runner: UserId,
    before: Option<EarningId>,
    limit: i64,
) -> QueryResult<Vec<Earning>> {
    let mut q = earnings::table
        .filter(earnings::runner_id.eq(runner.0))
        .select(Earning::as_select())
        .order(earnings::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(earnings::id.lt(b.0));
    }
    q.load(conn)
}

/// Every row about one order (its completion credit and refund debits).
pub fn for_order(conn: &mut Conn, order: OrderId) -> QueryResult<Vec<Earning>> {
    earnings::table
        .filter(earnings::order_id.eq(order.0))
        .select(Earning::as_select())
        .order(earnings::id.asc())
        .load(conn)
}
