//! Orders. Every state change is a compare-and-set (`UPDATE ... WHERE id = ? AND
//! status = ?`) whose affected-row count says whether this caller won.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{OrderKind, OrderMove, OrderStatus};
use crate::ids::{OrderId, UserId};
use crate::schema::orders;
use crate::sql_keyed;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = orders)]
pub struct Order {
    pub id: OrderId,
    pub out_trade_no: String,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub pickup: String,
    pub dropoff: String,
    pub note: String,
    pub fee_fen: i64,
    pub goods_fen: i64,
    pub discount_fen: i64,
    pub amount_fen: i64,
    pub refunded_fen: i64,
    pub refund_reserved_fen: i64,
    pub customer_id: UserId,
    pub runner_id: Option<UserId>,
    pub pickup_code: String,
    pub prepay_id: Option<String>,
    pub prepay_expires_at: Option<NaiveDateTime>,
    pub transaction_id: Option<String>,
    pub pay_deadline: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub paid_at: Option<NaiveDateTime>,
    pub accepted_at: Option<NaiveDateTime>,
    pub picked_up_at: Option<NaiveDateTime>,
    pub delivered_at: Option<NaiveDateTime>,
    pub completed_at: Option<NaiveDateTime>,
    pub closed_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
    /// The close job's lease.
    pub lease_until: Option<NaiveDateTime>,
    /// When WeChat's order was first made (`unifiedorder`).
    pub prepay_at: Option<NaiveDateTime>,
    /// Closed here while WeChat's order is still open: when `closeorder` is next due.
    pub wechat_close_at: Option<NaiveDateTime>,
    /// When the reconcile job may next ask `orderquery` (its claim and its backoff).
    pub query_after: Option<NaiveDateTime>,
    /// The newest proof-of-delivery photo that passed WeChat's content check.
    pub delivery_photo_url: Option<String>,
}

impl Order {
    /// The customer, or the runner holding it.
    pub fn involves(&self, user: UserId) -> bool {
        self.customer_id == user || self.runner_id == Some(user)
    }
}

#[derive(Insertable)]
#[diesel(table_name = orders, treat_none_as_default_value = false)]
pub struct NewOrder<'a> {
    pub out_trade_no: &'a str,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub pickup: &'a str,
    pub dropoff: &'a str,
    pub note: &'a str,
    pub fee_fen: i64,
    pub goods_fen: i64,
    pub discount_fen: i64,
    pub amount_fen: i64,
    pub customer_id: UserId,
    pub pickup_code: &'a str,
    pub pay_deadline: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

// An order create and a pay notify run these three: on the backend's own connection
// (`on_backend!`), diesel renders none of their SQL again once prepared.

/// Inserts and returns the order (read back by its unique `out_trade_no`, which works
/// the same on both backends).
pub fn insert(conn: &mut Conn, new: &NewOrder<'_>) -> QueryResult<Order> {
    on_backend!(&mut *conn, |c| diesel::insert_into(orders::table)
        .values(new)
        .execute(c))?;
    find_by_out_trade_no(conn, new.out_trade_no)?.ok_or(diesel::result::Error::NotFound)
}

pub fn find(conn: &mut Conn, id: OrderId) -> QueryResult<Option<Order>> {
    on_backend!(conn, |c| orders::table
        .find(id.0)
        .select(Order::as_select())
        .first(c)
        .optional())
}

pub fn find_by_out_trade_no(conn: &mut Conn, out_trade_no: &str) -> QueryResult<Option<Order>> {
    on_backend!(conn, |c| orders::table
        .filter(orders::out_trade_no.eq(out_trade_no))
        .select(Order::as_select())
        .first(c)
        .optional())
}

/// Whose orders a list shows.
#[derive(Clone, Copy, Debug)]
pub enum Scope {
    Customer(UserId),
    Runner(UserId),
    All,
}

/// Newest first, ids below `before` (the cursor); `limit + 1` rows to tell if more follow.
pub fn list(
    conn: &mut Conn,
    scope: Scope,
    status: Option<OrderStatus>,
    before: Option<OrderId>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    let mut q = orders::table.select(Order::as_select()).into_boxed();
    q = match scope {
        Scope::Customer(u) => q.filter(orders::customer_id.eq(u.0)),
        Scope::Runner(u) => q.filter(orders::runner_id.eq(u.0)),
        Scope::All => q,
    };
    if let Some(s) = status {
        q = q.filter(orders::status.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(orders::id.lt(b.0));
    }
    q.order(orders::id.desc()).limit(limit + 1).load(conn)
}

/// Paid orders nobody has taken, oldest first, ids above `after`.
pub fn list_available(
    conn: &mut Conn,
    after: Option<OrderId>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    let mut q = orders::table
        .select(Order::as_select())
        .filter(in_any(OrderMove::Accept.from()))
        .filter(orders::runner_id.is_null())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(orders::id.gt(a.0));
    }
    q.order(orders::id.asc()).limit(limit + 1).load(conn)
}

/// Stores the prepay id; `prepay_at` keeps the first `unifiedorder`'s time.
pub fn set_prepay(
    conn: &mut Conn,
    id: OrderId,
    prepay_id: &str,
    expires_at: NaiveDateTime,
    prepay_at: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(in_any(OrderMove::Pay.from())),
    )
    .set((
        orders::prepay_id.eq(Some(prepay_id)),
        orders::prepay_expires_at.eq(Some(expires_at)),
        orders::prepay_at.eq(Some(prepay_at)),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

/// [`OrderMove::Pay`], once. Returns rows affected (0: someone else moved it first).
pub fn mark_paid(
    conn: &mut Conn,
    id: OrderId,
    transaction_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    sql_keyed::execute(
        conn,
        diesel::update(
            orders::table
                .find(id.0)
                .filter(in_any(OrderMove::Pay.from())),
        )
        .set((
            orders::status.eq(OrderMove::Pay.to().as_str()),
            orders::transaction_id.eq(Some(transaction_id)),
            orders::paid_at.eq(Some(now)),
            orders::updated_at.eq(now),
        )),
    )
}

/// Records the transaction of a payment that landed on an order that was closed meanwhile.
pub fn record_late_payment(
    conn: &mut Conn,
    id: OrderId,
    transaction_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(orders::status.eq(OrderStatus::Closed.as_str()))
            .filter(orders::transaction_id.is_null()),
    )
    .set((
        orders::transaction_id.eq(Some(transaction_id)),
        orders::paid_at.eq(Some(now)),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

/// `status IN (..)` for a set of states.
fn in_any(states: &[OrderStatus]) -> diesel::dsl::EqAny<orders::status, Vec<&'static str>> {
    orders::status.eq_any(states.iter().map(|s| s.as_str()).collect::<Vec<_>>())
}

/// A plain move by the transition table, stamping the column of the new status.
/// Returns rows affected (0: the order was not in a state the move starts from).
pub fn transition(
    conn: &mut Conn,
    id: OrderId,
    mv: OrderMove,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = orders::table.find(id.0).filter(in_any(mv.from()));
    sql_keyed::execute(
        conn,
        diesel::update(target).set(StatusChange::new(mv.to(), now)),
    )
}

/// The columns a move to `status` sets: the status, `updated_at`, and the timestamp of the
/// milestone it marks, if any (`None` leaves a column alone).
#[derive(AsChangeset)]
#[diesel(table_name = orders)]
struct StatusChange {
    status: &'static str,
    updated_at: NaiveDateTime,
    picked_up_at: Option<NaiveDateTime>,
    delivered_at: Option<NaiveDateTime>,
    completed_at: Option<NaiveDateTime>,
    closed_at: Option<NaiveDateTime>,
}

impl StatusChange {
    fn new(status: OrderStatus, now: NaiveDateTime) -> Self {
        let at = |milestone: OrderStatus| (status == milestone).then_some(now);
        Self {
            status: status.as_str(),
            updated_at: now,
            picked_up_at: at(OrderStatus::PickedUp),
            delivered_at: at(OrderStatus::Delivered),
            completed_at: at(OrderStatus::Completed),
            closed_at: at(OrderStatus::Closed),
        }
    }
}

/// [`OrderMove::Accept`] by `runner`, only while nobody holds it: exactly one racer wins.
pub fn accept(
    conn: &mut Conn,
    id: OrderId,
    runner: UserId,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(in_any(OrderMove::Accept.from()))
            .filter(orders::runner_id.is_null()),
    )
    .set((
        orders::status.eq(OrderMove::Accept.to().as_str()),
        orders::runner_id.eq(Some(runner.0)),
        orders::accepted_at.eq(Some(now)),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

/// A move only the assigned runner may make.
pub fn runner_transition(
    conn: &mut Conn,
    id: OrderId,
    runner: UserId,
    mv: OrderMove,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = orders::table
        .find(id.0)
        .filter(in_any(mv.from()))
        .filter(orders::runner_id.eq(runner.0));
    sql_keyed::execute(
        conn,
        diesel::update(target).set(StatusChange::new(mv.to(), now)),
    )
}

/// Reserves `fen` of the paid amount for a refund; fails (0 rows) when it would exceed
/// what was paid minus what is already refunded or reserved.
pub fn reserve_refund(
    conn: &mut Conn,
    id: OrderId,
    fen: i64,
    allowed_status: &[OrderStatus],
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(in_any(allowed_status))
            .filter((orders::refund_reserved_fen + fen).le(orders::amount_fen)),
    )
    .set((
        orders::refund_reserved_fen.eq(orders::refund_reserved_fen + fen),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Reserves `fen` again for money WeChat paid out after all (a late SUCCESS for a refund
/// marked failed), whatever the order's status: the money is gone either way. The caller
/// keeps the total within the amount paid (a table constraint).
pub fn reserve_refund_regardless(
    conn: &mut Conn,
    id: OrderId,
    fen: i64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(orders::table.find(id.0))
        .set((
            orders::refund_reserved_fen.eq(orders::refund_reserved_fen + fen),
            orders::updated_at.eq(now),
        ))
        .execute(conn)
}

pub fn release_refund(
    conn: &mut Conn,
    id: OrderId,
    fen: i64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(orders::refund_reserved_fen.ge(fen)),
    )
    .set((
        orders::refund_reserved_fen.eq(orders::refund_reserved_fen - fen),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

pub fn add_refunded(
    conn: &mut Conn,
    id: OrderId,
    fen: i64,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(orders::table.find(id.0))
        .set((
            orders::refunded_fen.eq(orders::refunded_fen + fen),
            orders::updated_at.eq(now),
        ))
        .execute(conn)
}

/// [`OrderMove::FinishRefund`] once everything paid has been refunded in full.
pub fn finish_refunding(conn: &mut Conn, id: OrderId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(in_any(OrderMove::FinishRefund.from()))
            .filter(orders::refunded_fen.eq(orders::amount_fen)),
    )
    .set(StatusChange::new(OrderMove::FinishRefund.to(), now))
    .execute(conn)
}

/// The close job claims an order until `until`; false when another instance holds it.
pub fn claim(
    conn: &mut Conn,
    id: OrderId,
    now: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        orders::table.find(id.0).filter(
            orders::lease_until
                .is_null()
                .or(orders::lease_until.lt(now)),
        ),
    )
    .set(orders::lease_until.eq(Some(until)))
    .execute(conn)
    .map(|n| n == 1)
}

/// Unpaid orders past their pay deadline that no instance holds, oldest first: a row
/// whose close failed stays leased for a while, so the next run reaches the others.
pub fn unpaid_expired(conn: &mut Conn, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<Order>> {
    orders::table
        .select(Order::as_select())
        .filter(orders::status.eq(OrderStatus::Created.as_str()))
        .filter(orders::pay_deadline.lt(now))
        .filter(
            orders::lease_until
                .is_null()
                .or(orders::lease_until.lt(now)),
        )
        .order(orders::id.asc())
        .limit(limit)
        .load(conn)
}

/// Unpaid orders with a prepay id made before `made_before` whose next `orderquery` is
/// due, newest first (a flood of old unpaid orders does not hold up a new one).
pub fn unpaid_to_query(
    conn: &mut Conn,
    now: NaiveDateTime,
    made_before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .select(Order::as_select())
        .filter(orders::status.eq(OrderStatus::Created.as_str()))
        .filter(orders::prepay_id.is_not_null())
        .filter(
            orders::prepay_at
                .is_null()
                .or(orders::prepay_at.lt(made_before)),
        )
        .filter(
            orders::query_after
                .is_null()
                .or(orders::query_after.le(now)),
        )
        .order(orders::id.desc())
        .limit(limit)
        .load(conn)
}

/// The reconcile job claims its next `orderquery` of an order: moves `query_after` to
/// `next` if it is due. False when another instance claimed it first.
pub fn claim_query(
    conn: &mut Conn,
    id: OrderId,
    now: NaiveDateTime,
    next: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        orders::table.find(id.0).filter(
            orders::query_after
                .is_null()
                .or(orders::query_after.le(now)),
        ),
    )
    .set(orders::query_after.eq(Some(next)))
    .execute(conn)
    .map(|n| n == 1)
}

/// [`OrderMove::Close`]; `wechat_close_at` says when WeChat's order still has to be
/// closed (`None`: it is closed there, or never existed).
pub fn close(
    conn: &mut Conn,
    id: OrderId,
    wechat_close_at: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = orders::table
        .find(id.0)
        .filter(in_any(OrderMove::Close.from()));
    diesel::update(target)
        .set((
            StatusChange::new(OrderMove::Close.to(), now),
            orders::wechat_close_at.eq(wechat_close_at),
        ))
        .execute(conn)
}

/// Closed orders whose WeChat close is due.
pub fn wechat_close_due(
    conn: &mut Conn,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .select(Order::as_select())
        .filter(orders::status.eq(OrderStatus::Closed.as_str()))
        .filter(orders::wechat_close_at.le(now))
        .order(orders::wechat_close_at.asc())
        .limit(limit)
        .load(conn)
}

/// Claims a due WeChat close by moving it to `next` (the retry time if this attempt
/// fails). False when another instance claimed it first or nothing is pending.
pub fn claim_wechat_close(
    conn: &mut Conn,
    id: OrderId,
    now: NaiveDateTime,
    next: NaiveDateTime,
) -> QueryResult<bool> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(orders::wechat_close_at.le(now)),
    )
    .set(orders::wechat_close_at.eq(Some(next)))
    .execute(conn)
    .map(|n| n == 1)
}

/// WeChat's order is closed (or paid and refunded): nothing left pending.
pub fn wechat_closed(conn: &mut Conn, id: OrderId) -> QueryResult<usize> {
    diesel::update(orders::table.find(id.0))
        .set(orders::wechat_close_at.eq(None::<NaiveDateTime>))
        .execute(conn)
}

pub fn delivered_before(
    conn: &mut Conn,
    before: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    orders::table
        .select(Order::as_select())
        .filter(orders::status.eq(OrderStatus::Delivered.as_str()))
        .filter(orders::delivered_at.lt(before))
        .order(orders::id.asc())
        .limit(limit)
        .load(conn)
}

/// What the admin order list filters on; `None` leaves a filter out.
#[derive(Clone, Debug, Default)]
pub struct AdminFilter {
    pub status: Option<OrderStatus>,
    /// A part of the out_trade_no, the pickup or the dropoff.
    pub text: Option<String>,
    /// Created at or after.
    pub from: Option<NaiveDateTime>,
    /// Created before.
    pub until: Option<NaiveDateTime>,
}

/// Every order matching `f`, newest first, ids below `before`; `limit + 1` rows.
pub fn admin_list(
    conn: &mut Conn,
    f: &AdminFilter,
    before: Option<OrderId>,
    limit: i64,
) -> QueryResult<Vec<Order>> {
    let mut q = orders::table.select(Order::as_select()).into_boxed();
    if let Some(s) = f.status {
        q = q.filter(orders::status.eq(s.as_str()));
    }
    if let Some(t) = &f.text {
        let p = crate::users::contains_pattern(t);
        let places = orders::pickup
            .like(p.clone())
            .escape('!')
            .or(orders::dropoff.like(p.clone()).escape('!'));
        // out_trade_no is ASCII: MySQL refuses to compare its ascii column with other text.
        q = if t.is_ascii() {
            q.filter(places.or(orders::out_trade_no.like(p).escape('!')))
        } else {
            q.filter(places)
        };
    }
    if let Some(from) = f.from {
        q = q.filter(orders::created_at.ge(from));
    }
    if let Some(until) = f.until {
        q = q.filter(orders::created_at.lt(until));
    }
    if let Some(b) = before {
        q = q.filter(orders::id.lt(b.0));
    }
    q.order(orders::id.desc()).limit(limit + 1).load(conn)
}

/// [`OrderMove::Reassign`]: the order leaves its runner and is available again, still
/// paid. Returns rows affected (0: it was not held by a runner any more).
pub fn reassign(conn: &mut Conn, id: OrderId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        orders::table
            .find(id.0)
            .filter(in_any(OrderMove::Reassign.from()))
            .filter(orders::runner_id.is_not_null()),
    )
    .set((
        orders::status.eq(OrderMove::Reassign.to().as_str()),
        orders::runner_id.eq(None::<i64>),
        orders::accepted_at.eq(None::<NaiveDateTime>),
        orders::picked_up_at.eq(None::<NaiveDateTime>),
        orders::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Creation times of the orders created in `[from, until)` (for daily statistics).
pub fn created_between(
    conn: &mut Conn,
    from: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Vec<NaiveDateTime>> {
    orders::table
        .filter(orders::created_at.ge(from))
        .filter(orders::created_at.lt(until))
        .select(orders::created_at)
        .load(conn)
}

/// Completion times in `[from, until)`.
pub fn completed_between(
    conn: &mut Conn,
    from: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Vec<NaiveDateTime>> {
    orders::table
        .filter(orders::completed_at.ge(from))
        .filter(orders::completed_at.lt(until))
        .select(orders::completed_at.assume_not_null())
        .load(conn)
}

/// `(runner, time)` for every runner step (accept, pickup, delivery) in `[from, until)`
/// of orders that still name their runner.
pub fn runner_activity_between(
    conn: &mut Conn,
    from: NaiveDateTime,
    until: NaiveDateTime,
) -> QueryResult<Vec<(UserId, NaiveDateTime)>> {
    // One query per step column; a macro because the three columns are distinct types.
    macro_rules! step {
        ($at:ident) => {
            orders::table
                .filter(orders::runner_id.is_not_null())
                .filter(orders::$at.ge(from))
                .filter(orders::$at.lt(until))
                .select((
                    orders::runner_id.assume_not_null(),
                    orders::$at.assume_not_null(),
                ))
                .load::<(i64, NaiveDateTime)>(conn)?
        };
    }
    let steps = [step!(accepted_at), step!(picked_up_at), step!(delivered_at)];
    Ok(steps
        .into_iter()
        .flatten()
        .map(|(r, t)| (UserId(r), t))
        .collect())
}

/// Whether the customer holds at least `n` unpaid orders. Reads at most `n` entries of the
/// `(customer_id, status)` index, however many orders the customer has had.
pub fn holds_unpaid(conn: &mut Conn, customer: UserId, n: i64) -> QueryResult<bool> {
    if n <= 0 {
        return Ok(true);
    }
    orders::table
        .filter(orders::customer_id.eq(customer.0))
        .filter(orders::status.eq(OrderStatus::Created.as_str()))
        .select(orders::id)
        .offset(n - 1)
        .limit(1)
        .first::<i64>(conn)
        .optional()
        .map(|found| found.is_some())
}
