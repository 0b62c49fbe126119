//! Coupons and the coupons users claimed. Stock and status moves are compare-and-set
//! updates whose affected-row count says whether this caller won; the per-user limit
//! has a unique key `(coupon_id, user_id, seq)` behind it.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::{Conn, DbConn};
use crate::domain::{CouponStatus, DiscountKind, UserCouponStatus};
use crate::ids::{CouponId, OrderId, UserCouponId, UserId};
use crate::schema::{coupons, user_coupons};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = coupons)]
pub struct Coupon {
    pub id: CouponId,
    pub title: String,
    pub discount_kind: DiscountKind,
    pub discount_fen: Option<i64>,
    pub percent_off: Option<i32>,
    pub max_discount_fen: Option<i64>,
    pub min_amount_fen: i64,
    pub stock: i64,
    pub claimed: i64,
    pub per_user_limit: i32,
    pub valid_days: Option<i32>,
    pub valid_until: Option<NaiveDateTime>,
    /// Comma-separated order kinds the coupon applies to; `None`: every kind.
    pub kinds: Option<String>,
    pub keyword: Option<String>,
    pub status: CouponStatus,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub stopped_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = coupons, treat_none_as_default_value = false)]
pub struct NewCoupon<'a> {
    pub title: &'a str,
    pub discount_kind: DiscountKind,
    pub discount_fen: Option<i64>,
    pub percent_off: Option<i32>,
    pub max_discount_fen: Option<i64>,
    pub min_amount_fen: i64,
    pub stock: i64,
    pub per_user_limit: i32,
    pub valid_days: Option<i32>,
    pub valid_until: Option<NaiveDateTime>,
    pub kinds: Option<&'a str>,
    pub keyword: Option<&'a str>,
    pub status: CouponStatus,
    pub created_by: UserId,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = user_coupons)]
pub struct UserCoupon {
    pub id: UserCouponId,
    pub coupon_id: CouponId,
    pub user_id: UserId,
    /// Which of the user's claims of this coupon (1..per_user_limit).
    pub seq: i32,
    pub status: UserCouponStatus,
    /// The order holding it (`locked`) or that used it; kept when it expired while held.
    pub order_id: Option<OrderId>,
    pub claimed_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub locked_at: Option<NaiveDateTime>,
    pub used_at: Option<NaiveDateTime>,
    pub updated_at: NaiveDateTime,
}

#[derive(Insertable)]
#[diesel(table_name = user_coupons, treat_none_as_default_value = false)]
pub struct NewUserCoupon {
    pub coupon_id: CouponId,
    pub user_id: UserId,
    pub seq: i32,
    pub status: UserCouponStatus,
    pub claimed_at: NaiveDateTime,
    pub expires_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// The id the last insert on this connection made (`RETURNING` is not available
/// through the MultiConnection enum).
fn last_insert_id(conn: &mut Conn) -> QueryResult<i64> {
    use diesel::dsl::sql;
    use diesel::sql_types::BigInt;
    match conn {
        DbConn::Sqlite(c) => diesel::select(sql::<BigInt>("last_insert_rowid()")).get_result(c),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => {
            diesel::select(sql::<BigInt>("CAST(LAST_INSERT_ID() AS SIGNED)")).get_result(c)
        }
    }
}

pub fn insert(conn: &mut Conn, new: &NewCoupon<'_>) -> QueryResult<Coupon> {
    diesel::insert_into(coupons::table)
        .values(new)
        .execute(conn)?;
    let id = last_insert_id(conn)?;
    find(conn, CouponId(id))?.ok_or(diesel::result::Error::NotFound)
}

pub fn find(conn: &mut Conn, id: CouponId) -> QueryResult<Option<Coupon>> {
    coupons::table
        .find(id.0)
        .select(Coupon::as_select())
        .first(conn)
        .optional()
}

/// Active coupons with stock left that have not run out of validity, newest first,
/// ids below `before`; `limit + 1` rows to tell if more follow.
pub fn claimable(
    conn: &mut Conn,
    now: NaiveDateTime,
    before: Option<CouponId>,
    limit: i64,
) -> QueryResult<Vec<Coupon>> {
    let mut q = coupons::table
        .select(Coupon::as_select())
        .filter(coupons::status.eq(CouponStatus::Active.as_str()))
        .filter(coupons::claimed.lt(coupons::stock))
        .filter(
            coupons::valid_until
                .is_null()
                .or(coupons::valid_until.gt(now)),
        )
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(coupons::id.lt(b.0));
    }
    q.order(coupons::id.desc()).limit(limit + 1).load(conn)
}

/// The newest active coupon whose keyword is exactly `keyword`.
pub fn find_active_by_keyword(conn: &mut Conn, keyword: &str) -> QueryResult<Option<Coupon>> {
    coupons::table
        .select(Coupon::as_select())
        .filter(coupons::keyword.eq(keyword))
        .filter(coupons::status.eq(CouponStatus::Active.as_str()))
        .order(coupons::id.desc())
        .first(conn)
        .optional()
}

/// Takes one unit of stock: 0 rows when none is left or the coupon is not active.
/// The `WHERE` is evaluated on the row as it is when the update locks it, so no two
/// claims, on any instance, take the last unit.
pub fn take_one(conn: &mut Conn, id: CouponId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        coupons::table
            .find(id.0)
            .filter(coupons::status.eq(CouponStatus::Active.as_str()))
            .filter(coupons::claimed.lt(coupons::stock)),
    )
    .set((
        coupons::claimed.eq(coupons::claimed + 1),
        coupons::updated_at.eq(now),
    ))
    .execute(conn)
}

/// active → stopped; 0 rows when it was not active.
pub fn stop(conn: &mut Conn, id: CouponId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        coupons::table
            .find(id.0)
            .filter(coupons::status.eq(CouponStatus::Active.as_str())),
    )
    .set((
        coupons::status.eq(CouponStatus::Stopped.as_str()),
        coupons::stopped_at.eq(Some(now)),
        coupons::updated_at.eq(now),
    ))
    .execute(conn)
}

/// How many of the coupon's claims were used by a paid order.
pub fn used_count(conn: &mut Conn, id: CouponId) -> QueryResult<i64> {
    user_coupons::table
        .filter(user_coupons::coupon_id.eq(id.0))
        .filter(user_coupons::status.eq(UserCouponStatus::Used.as_str()))
        .count()
        .get_result(conn)
}

/// How many times `user` claimed the coupon, whatever became of the claims.
pub fn claims_by(conn: &mut Conn, id: CouponId, user: UserId) -> QueryResult<i64> {
    user_coupons::table
        .filter(user_coupons::coupon_id.eq(id.0))
        .filter(user_coupons::user_id.eq(user.0))
        .count()
        .get_result(conn)
}

/// The coupon ids of `user`'s claims among `ids`, one entry per claim.
pub fn claims_among(conn: &mut Conn, user: UserId, ids: &[CouponId]) -> QueryResult<Vec<CouponId>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    user_coupons::table
        .filter(user_coupons::user_id.eq(user.0))
        .filter(user_coupons::coupon_id.eq_any(ids))
        .select(user_coupons::coupon_id)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(CouponId).collect())
}

/// Inserts a claim and returns it (read back by its unique key).
pub fn insert_claim(conn: &mut Conn, new: &NewUserCoupon) -> QueryResult<UserCoupon> {
    diesel::insert_into(user_coupons::table)
        .values(new)
        .execute(conn)?;
    user_coupons::table
        .filter(user_coupons::coupon_id.eq(new.coupon_id.0))
        .filter(user_coupons::user_id.eq(new.user_id.0))
        .filter(user_coupons::seq.eq(new.seq))
        .select(UserCoupon::as_select())
        .first(conn)
}

/// A claimed coupon with its coupon.
pub fn find_claim(conn: &mut Conn, id: UserCouponId) -> QueryResult<Option<(UserCoupon, Coupon)>> {
    user_coupons::table
        .inner_join(coupons::table)
        .filter(user_coupons::id.eq(id.0))
        .select((UserCoupon::as_select(), Coupon::as_select()))
        .first(conn)
        .optional()
}

/// A user's coupons as they stand at `now`: an `available` one past its expiry is
/// listed as expired even before the expiry job marks it.
pub fn list_claims(
    conn: &mut Conn,
    user: UserId,
    status: Option<UserCouponStatus>,
    now: NaiveDateTime,
    before: Option<UserCouponId>,
    limit: i64,
) -> QueryResult<Vec<(UserCoupon, Coupon)>> {
    let available = UserCouponStatus::Available.as_str();
    let mut q = user_coupons::table
        .inner_join(coupons::table)
        .filter(user_coupons::user_id.eq(user.0))
        .select((UserCoupon::as_select(), Coupon::as_select()))
        .into_boxed();
    q = match status {
        None => q,
        Some(UserCouponStatus::Available) => q
            .filter(user_coupons::status.eq(available))
            .filter(user_coupons::expires_at.gt(now)),
        Some(UserCouponStatus::Expired) => q.filter(
            user_coupons::status
                .eq(UserCouponStatus::Expired.as_str())
                .or(user_coupons::status
                    .eq(available)
                    .and(user_coupons::expires_at.le(now))),
        ),
        Some(s) => q.filter(user_coupons::status.eq(s.as_str())),
    };
    if let Some(b) = before {
        q = q.filter(user_coupons::id.lt(b.0));
    }
    q.order(user_coupons::id.desc()).limit(limit + 1).load(conn)
}

/// available → locked by `order`, only while unexpired: exactly one order wins a coupon.
pub fn lock_for_order(
    conn: &mut Conn,
    id: UserCouponId,
    order: OrderId,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        user_coupons::table
            .find(id.0)
            .filter(user_coupons::status.eq(UserCouponStatus::Available.as_str()))
            .filter(user_coupons::expires_at.gt(now))
            .filter(user_coupons::order_id.is_null()),
    )
    .set((
        user_coupons::status.eq(UserCouponStatus::Locked.as_str()),
        user_coupons::order_id.eq(Some(order.0)),
        user_coupons::locked_at.eq(Some(now)),
        user_coupons::updated_at.eq(now),
    ))
    .execute(conn)
}

/// locked → used: the order holding it was paid. Whether it expired meanwhile does not
/// matter; it was valid when the order took it.
pub fn use_for_order(conn: &mut Conn, order: OrderId, now: NaiveDateTime) -> QueryResult<usize> {
    let Some(held) = held_by(conn, order)? else {
        return Ok(0);
    };
    diesel::update(
        user_coupons::table
            .find(held.0)
            .filter(user_coupons::order_id.eq(order.0))
            .filter(user_coupons::status.eq(UserCouponStatus::Locked.as_str())),
    )
    .set((
        user_coupons::status.eq(UserCouponStatus::Used.as_str()),
        user_coupons::used_at.eq(Some(now)),
        user_coupons::updated_at.eq(now),
    ))
    .execute(conn)
}

/// The order holding a coupon closed unpaid: the coupon is available again (free for
/// another order), or expired when its time is up. Returns rows changed.
pub fn release_for_order(
    conn: &mut Conn,
    order: OrderId,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let Some(held) = held_by(conn, order)? else {
        return Ok(0);
    };
    let target = user_coupons::table
        .find(held.0)
        .filter(user_coupons::order_id.eq(order.0))
        .filter(user_coupons::status.eq(UserCouponStatus::Locked.as_str()));
    let back = diesel::update(target.filter(user_coupons::expires_at.gt(now)))
        .set((
            user_coupons::status.eq(UserCouponStatus::Available.as_str()),
            user_coupons::order_id.eq(None::<i64>),
            user_coupons::locked_at.eq(None::<NaiveDateTime>),
            user_coupons::updated_at.eq(now),
        ))
        .execute(conn)?;
    if back == 1 {
        return Ok(1);
    }
    diesel::update(target)
        .set((
            user_coupons::status.eq(UserCouponStatus::Expired.as_str()),
            user_coupons::updated_at.eq(now),
        ))
        .execute(conn)
}

/// The id of the coupon `order` holds, found by a plain read: the updates that follow
/// go by primary key, so that on MariaDB an order without a coupon (most of them) takes
/// no gap lock on the `order_id` index that would hold up orders locking their coupon.
fn held_by(conn: &mut Conn, order: OrderId) -> QueryResult<Option<UserCouponId>> {
    user_coupons::table
        .filter(user_coupons::order_id.eq(order.0))
        .select(user_coupons::id)
        .first::<i64>(conn)
        .optional()
        .map(|id| id.map(UserCouponId))
}

/// available → expired for every coupon whose time is up.
pub fn expire_due(conn: &mut Conn, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        user_coupons::table
            .filter(user_coupons::status.eq(UserCouponStatus::Available.as_str()))
            .filter(user_coupons::expires_at.le(now)),
    )
    .set((
        user_coupons::status.eq(UserCouponStatus::Expired.as_str()),
        user_coupons::updated_at.eq(now),
    ))
    .execute(conn)
}
