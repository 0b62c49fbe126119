//! Coupons and the coupons users claimed. Stock and status moves are compare-and-set
//! updates whose affected-row count says whether this caller won; the per-user limit
//! has a unique key `(coupon_id, user_id, seq)` behind it.
//!
//! A coupon's stock lives in `coupon_stock`, split over [`Shard`]s: each winning claim
//! holds the lock of the row it took from until its transaction commits, and with one
//! row for the whole stock every winner on MariaDB waited for the one before it (a queue
//! at a thousand claims a second). How many claimed is the sum over the shards.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::{Conn, DbConn};
use crate::domain::{CouponStatus, DiscountKind, UserCouponStatus};
use crate::ids::{CouponId, OrderId, UserCouponId, UserId};
use crate::schema::{coupon_stock, coupons, user_coupons};
use crate::sql_keyed;

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
    /// How many rows of `coupon_stock` hold the stock (numbered from 0).
    pub stock_shards: i32,
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

/// Inserts a coupon with its stock laid out in shards.
pub fn insert(conn: &mut Conn, new: &NewCoupon<'_>) -> QueryResult<Coupon> {
    let caps = shard_caps(new.stock, max_shards(conn));
    let count = i32::try_from(caps.len()).unwrap_or(1);
    diesel::insert_into(coupons::table)
        .values((new, coupons::stock_shards.eq(count)))
        .execute(conn)?;
    let id = CouponId(last_insert_id(conn)?);
    // One INSERT per shard: a multi-row INSERT is not available through the
    // MultiConnection enum, and a coupon is made once.
    for (shard, cap) in (0..).zip(caps) {
        diesel::insert_into(coupon_stock::table)
            .values((
                coupon_stock::coupon_id.eq(id.0),
                coupon_stock::shard.eq(shard),
                coupon_stock::cap.eq(cap),
                coupon_stock::taken.eq(0_i64),
            ))
            .execute(conn)?;
    }
    find(conn, id)?.ok_or(diesel::result::Error::NotFound)
}

/// How many shards a new coupon's stock is split into. SQLite has one writer at a time,
/// so more rows would only cost reads; on MariaDB enough that a thousand winning claims
/// a second rarely pick a row another claim holds.
fn max_shards(conn: &Conn) -> i64 {
    match conn {
        DbConn::Sqlite(_) => 1,
        #[cfg(feature = "mysql")]
        DbConn::Mysql(_) => 16,
    }
}

/// `stock` over at most `max` shards, as evenly as whole units go, none empty.
fn shard_caps(stock: i64, max: i64) -> Vec<i64> {
    let n = max.clamp(1, stock.max(1));
    (0..n)
        .map(|i| stock / n + i64::from(i < stock % n))
        .collect()
}

/// One shard of a coupon's stock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = coupon_stock)]
pub struct Shard {
    pub shard: i32,
    pub cap: i64,
    pub taken: i64,
}

impl Shard {
    pub fn has_room(&self) -> bool {
        self.taken < self.cap
    }
}

/// A coupon's shards, in order (a plain read: what the last commits left).
pub fn shards(conn: &mut Conn, id: CouponId) -> QueryResult<Vec<Shard>> {
    coupon_stock::table
        .filter(coupon_stock::coupon_id.eq(id.0))
        .select(Shard::as_select())
        .order(coupon_stock::shard)
        .load(conn)
}

/// How many of the coupon's stock were claimed.
pub fn claimed(conn: &mut Conn, id: CouponId) -> QueryResult<i64> {
    Ok(shards(conn, id)?.iter().map(|s| s.taken).sum())
}

/// How many were claimed of each of `ids` (coupons without stock rows are left out).
pub fn claimed_among(conn: &mut Conn, ids: &[CouponId]) -> QueryResult<Vec<(CouponId, i64)>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    let rows: Vec<(i64, i64)> = coupon_stock::table
        .filter(coupon_stock::coupon_id.eq_any(ids))
        .select((coupon_stock::coupon_id, coupon_stock::taken))
        .load(conn)?;
    let mut sums: Vec<(CouponId, i64)> = Vec::new();
    for (id, taken) in rows {
        match sums.iter_mut().find(|(c, _)| c.0 == id) {
            Some((_, n)) => *n += taken,
            None => sums.push((CouponId(id), taken)),
        }
    }
    Ok(sums)
}

/// The shards of an active coupon, none when it does not exist or is not active: the
/// stock gate's one read.
pub fn active_shards(conn: &mut Conn, id: CouponId) -> QueryResult<Vec<Shard>> {
    coupon_stock::table
        .inner_join(coupons::table)
        .filter(coupon_stock::coupon_id.eq(id.0))
        .filter(coupons::status.eq(CouponStatus::Active.as_str()))
        .select(Shard::as_select())
        .order(coupon_stock::shard)
        .load(conn)
}

pub fn find(conn: &mut Conn, id: CouponId) -> QueryResult<Option<Coupon>> {
    on_backend!(conn, |c| coupons::table
        .find(id.0)
        .select(Coupon::as_select())
        .first(c)
        .optional())
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
        .filter(
            coupons::id.eq_any(
                coupon_stock::table
                    .filter(coupon_stock::taken.lt(coupon_stock::cap))
                    .select(coupon_stock::coupon_id),
            ),
        )
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

/// Takes one unit from `shard` of the coupon: 0 rows when the shard is full (or does not
/// exist). The `WHERE` is evaluated on the row as it is when the update locks it, so no
/// two claims, on any instance, take the shard's last unit. Whether the coupon is still
/// active is the caller's read: a claim that read it active just before a stop committed
/// may still complete, as if it had come first.
pub fn take_from(conn: &mut Conn, id: CouponId, shard: i32) -> QueryResult<usize> {
    sql_keyed::execute(
        conn,
        diesel::update(
            coupon_stock::table
                .filter(coupon_stock::coupon_id.eq(id.0))
                .filter(coupon_stock::shard.eq(shard))
                .filter(coupon_stock::taken.lt(coupon_stock::cap)),
        )
        .set(coupon_stock::taken.eq(coupon_stock::taken + 1)),
    )
}

/// Takes one unit from the first shard with room, trying them in order: false when the
/// coupon has none left. For callers that take several units in one
/// transaction (a draw's coupon prizes); a claim picks its shard with [`take_from`].
pub fn take_any(conn: &mut Conn, id: CouponId) -> QueryResult<bool> {
    for s in shards(conn, id)?.iter().filter(|s| s.has_room()) {
        if take_from(conn, id, s.shard)? == 1 {
            return Ok(true);
        }
    }
    Ok(false)
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
    on_backend!(conn, |c| user_coupons::table
        .filter(user_coupons::coupon_id.eq(id.0))
        .filter(user_coupons::user_id.eq(user.0))
        .count()
        .get_result(c))
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
    on_backend!(&mut *conn, |c| diesel::insert_into(user_coupons::table)
        .values(new)
        .execute(c))?;
    on_backend!(conn, |c| user_coupons::table
        .filter(user_coupons::coupon_id.eq(new.coupon_id.0))
        .filter(user_coupons::user_id.eq(new.user_id.0))
        .filter(user_coupons::seq.eq(new.seq))
        .select(UserCoupon::as_select())
        .first(c))
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

#[cfg(test)]
mod tests {
    use super::shard_caps;

    #[test]
    fn stock_splits_evenly_into_shards_none_empty() {
        assert_eq!(shard_caps(10, 16), vec![1; 10]);
        assert_eq!(shard_caps(35, 16), [vec![3; 3], vec![2; 13]].concat());
        assert_eq!(
            shard_caps(5000, 16),
            vec![
                313, 313, 313, 313, 313, 313, 313, 313, 312, 312, 312, 312, 312, 312, 312, 312
            ]
        );
        assert_eq!(shard_caps(7, 1), vec![7]);
        for (stock, max) in [(1, 16), (17, 16), (999, 16), (3, 1)] {
            let caps = shard_caps(stock, max);
            assert_eq!(caps.iter().sum::<i64>(), stock);
            assert!(caps.iter().all(|c| *c >= 1));
            assert!(caps.len() as i64 <= max);
        }
    }
}
