//! Withdrawals of runners' earnings. Every move is a compare-and-set on `status`; the
//! transfer of a withdrawal always uses its one `partner_trade_no`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::WithdrawalStatus;
use crate::ids::{UserId, WithdrawalId};
use crate::schema::withdrawals;

/// Withdrawals whose amount is still reserved and not yet paid.
pub const OPEN: [WithdrawalStatus; 2] = [WithdrawalStatus::Pending, WithdrawalStatus::Processing];

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = withdrawals)]
pub struct Withdrawal {
    pub id: WithdrawalId,
    pub runner_id: UserId,
    pub partner_trade_no: String,
    pub amount_fen: i64,
    pub openid: String,
    pub description: String,
    pub client_ip: String,
    pub status: WithdrawalStatus,
    pub reason: Option<String>,
    pub payment_no: Option<String>,
    pub paid_at: Option<NaiveDateTime>,
    /// A transfer request went out whose answer is not known: only `gettransferinfo`
    /// may settle it.
    pub unclear: bool,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub beijing_day: String,
    pub decided_by: Option<UserId>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub lease_until: Option<NaiveDateTime>,
}

pub struct NewWithdrawal<'a> {
    pub runner_id: UserId,
    pub partner_trade_no: &'a str,
    pub amount_fen: i64,
    pub openid: &'a str,
    pub description: &'a str,
    pub client_ip: &'a str,
    pub status: WithdrawalStatus,
    pub beijing_day: &'a str,
    pub lease_until: Option<NaiveDateTime>,
    pub at: NaiveDateTime,
}

pub fn insert(conn: &mut Conn, w: &NewWithdrawal<'_>) -> QueryResult<Withdrawal> {
    diesel::insert_into(withdrawals::table)
        .values((
            withdrawals::runner_id.eq(w.runner_id.0),
            withdrawals::partner_trade_no.eq(w.partner_trade_no),
            withdrawals::amount_fen.eq(w.amount_fen),
            withdrawals::openid.eq(w.openid),
            withdrawals::description.eq(w.description),
            withdrawals::client_ip.eq(w.client_ip),
            withdrawals::status.eq(w.status.as_str()),
            withdrawals::beijing_day.eq(w.beijing_day),
            withdrawals::lease_until.eq(w.lease_until),
            withdrawals::created_at.eq(w.at),
            withdrawals::updated_at.eq(w.at),
        ))
        .execute(conn)?;
    find_by_partner_trade_no(conn, w.partner_trade_no)?.ok_or(diesel::result::Error::NotFound)
}

pub fn find(conn: &mut Conn, id: WithdrawalId) -> QueryResult<Option<Withdrawal>> {
    withdrawals::table
        .find(id.0)
        .select(Withdrawal::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_partner_trade_no(conn: &mut Conn, no: &str) -> QueryResult<Option<Withdrawal>> {
    withdrawals::table
        .filter(withdrawals::partner_trade_no.eq(no))
        .select(Withdrawal::as_select())
        .first(conn)
        .optional()
}

/// Newest first; by runner and/or status; before `before` (an id) when given.
pub fn list(
    conn: &mut Conn,
    runner: Option<UserId>,
    status: Option<WithdrawalStatus>,
    before: Option<WithdrawalId>,
    limit: i64,
) -> QueryResult<Vec<Withdrawal>> {
    let mut q = withdrawals::table
        .select(Withdrawal::as_select())
        .order(withdrawals::id.desc())
        .limit(limit + 1)
        .into_boxed();
    if let Some(r) = runner {
        q = q.filter(withdrawals::runner_id.eq(r.0));
    }
    if let Some(s) = status {
        q = q.filter(withdrawals::status.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(withdrawals::id.lt(b.0));
    }
    q.load(conn)
}

/// Amounts of the runner's withdrawals in `statuses` (summed by the caller).
pub fn amounts(
    conn: &mut Conn,
    runner: UserId,
    statuses: &[WithdrawalStatus],
) -> QueryResult<Vec<i64>> {
    let st: Vec<&str> = statuses.iter().map(|s| s.as_str()).collect();
    withdrawals::table
        .filter(withdrawals::runner_id.eq(runner.0))
        .filter(withdrawals::status.eq_any(st))
        .select(withdrawals::amount_fen)
        .load(conn)
}

/// Amounts of the runner's withdrawals asked for on `beijing_day` that did not fail
/// (they count against the day's caps).
pub fn day_amounts(conn: &mut Conn, runner: UserId, beijing_day: &str) -> QueryResult<Vec<i64>> {
    withdrawals::table
        .filter(withdrawals::runner_id.eq(runner.0))
        .filter(withdrawals::beijing_day.eq(beijing_day))
        .filter(withdrawals::status.ne(WithdrawalStatus::Failed.as_str()))
        .select(withdrawals::amount_fen)
        .load(conn)
}

/// pending → processing (approved), taking the lease for the first attempt.
pub fn approve(
    conn: &mut Conn,
    id: WithdrawalId,
    admin: UserId,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        withdrawals::table
            .find(id.0)
            .filter(withdrawals::status.eq(WithdrawalStatus::Pending.as_str())),
    )
    .set((
        withdrawals::status.eq(WithdrawalStatus::Processing.as_str()),
        withdrawals::decided_by.eq(Some(admin.0)),
        withdrawals::lease_until.eq(Some(lease_until)),
        withdrawals::updated_at.eq(now),
    ))
    .execute(conn)
}

/// `from` → failed with `reason`, once.
pub fn fail(
    conn: &mut Conn,
    id: WithdrawalId,
    from: WithdrawalStatus,
    reason: &str,
    decided_by: Option<UserId>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let reason: String = reason.chars().take(500).collect();
    let target = withdrawals::table
        .find(id.0)
        .filter(withdrawals::status.eq(from.as_str()));
    match decided_by {
        Some(admin) => diesel::update(target)
            .set((
                withdrawals::status.eq(WithdrawalStatus::Failed.as_str()),
                withdrawals::reason.eq(Some(reason)),
                withdrawals::decided_by.eq(Some(admin.0)),
                withdrawals::lease_until.eq(None::<NaiveDateTime>),
                withdrawals::updated_at.eq(now),
            ))
            .execute(conn),
        None => diesel::update(target)
            .set((
                withdrawals::status.eq(WithdrawalStatus::Failed.as_str()),
                withdrawals::reason.eq(Some(reason)),
                withdrawals::lease_until.eq(None::<NaiveDateTime>),
                withdrawals::updated_at.eq(now),
            ))
            .execute(conn),
    }
}

/// processing → succeeded, once.
pub fn succeed(
    conn: &mut Conn,
    id: WithdrawalId,
    payment_no: &str,
    paid_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        withdrawals::table
            .find(id.0)
            .filter(withdrawals::status.eq(WithdrawalStatus::Processing.as_str())),
    )
    .set((
        withdrawals::status.eq(WithdrawalStatus::Succeeded.as_str()),
        withdrawals::payment_no.eq(Some(payment_no)),
        withdrawals::paid_at.eq(Some(paid_at)),
        withdrawals::unclear.eq(false),
        withdrawals::lease_until.eq(None::<NaiveDateTime>),
        withdrawals::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Recorded before a transfer request goes out: from here on its answer may be lost
/// (a crash, a timeout), and only the query may settle it.
pub fn mark_sending(conn: &mut Conn, id: WithdrawalId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        withdrawals::table
            .find(id.0)
            .filter(withdrawals::status.eq(WithdrawalStatus::Processing.as_str())),
    )
    .set((
        withdrawals::unclear.eq(true),
        withdrawals::attempts.eq(withdrawals::attempts + 1),
        withdrawals::updated_at.eq(now),
    ))
    .execute(conn)
}

pub fn note_error(
    conn: &mut Conn,
    id: WithdrawalId,
    error: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let error: String = error.chars().take(500).collect();
    diesel::update(withdrawals::table.find(id.0))
        .set((
            withdrawals::last_error.eq(Some(error)),
            withdrawals::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Processing withdrawals whose lease is free, oldest first.
pub fn processing_due(
    conn: &mut Conn,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<WithdrawalId>> {
    withdrawals::table
        .filter(withdrawals::status.eq(WithdrawalStatus::Processing.as_str()))
        .filter(
            withdrawals::lease_until
                .is_null()
                .or(withdrawals::lease_until.lt(now)),
        )
        .select(withdrawals::id)
        .order(withdrawals::id.asc())
        .limit(limit)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(WithdrawalId).collect())
}

/// Takes the lease if it is free: true when this caller may work on the withdrawal.
pub fn claim(
    conn: &mut Conn,
    id: WithdrawalId,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        withdrawals::table.find(id.0).filter(
            withdrawals::lease_until
                .is_null()
                .or(withdrawals::lease_until.lt(now)),
        ),
    )
    .set(withdrawals::lease_until.eq(Some(until)))
    .execute(conn)
    .map(|n| n == 1)
}

/// Gives the lease back once a worker is done with the withdrawal for now.
pub fn release(conn: &mut Conn, id: WithdrawalId) -> QueryResult<usize> {
    diesel::update(withdrawals::table.find(id.0))
        .set(withdrawals::lease_until.eq(None::<NaiveDateTime>))
        .execute(conn)
}
