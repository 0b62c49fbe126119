//! Lucky draws, their prizes, participants and winners. Every status move is a
//! compare-and-set on `draws.status` whose affected-row count says whether this caller
//! made it; the move to `drawn` is the guard that makes a draw happen once.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::DrawStatus;
use crate::ids::{CouponId, DrawId, DrawPrizeId, UserCouponId, UserId};
use crate::schema::{draw_participants, draw_prizes, draw_winners, draws, users};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = draws)]
pub struct Draw {
    pub id: DrawId,
    pub title: String,
    pub status: DrawStatus,
    pub draw_at: NaiveDateTime,
    pub lock_at: NaiveDateTime,
    pub creator_id: UserId,
    /// 64 hex digits, fixed when the draw locks (before any winner is chosen).
    pub seed: Option<String>,
    pub algorithm: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub drawn_at: Option<NaiveDateTime>,
    pub cancelled_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = draws, treat_none_as_default_value = false)]
pub struct NewDraw<'a> {
    pub title: &'a str,
    pub status: DrawStatus,
    pub draw_at: NaiveDateTime,
    pub lock_at: NaiveDateTime,
    pub creator_id: UserId,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = draw_prizes)]
pub struct DrawPrize {
    pub id: DrawPrizeId,
    pub draw_id: DrawId,
    /// Prizes are drawn in this order.
    pub position: i32,
    pub name: String,
    pub count: i32,
    pub coupon_id: Option<CouponId>,
}

#[derive(Insertable)]
#[diesel(table_name = draw_prizes, treat_none_as_default_value = false)]
pub struct NewDrawPrize<'a> {
    pub draw_id: DrawId,
    pub position: i32,
    pub name: &'a str,
    pub count: i32,
    pub coupon_id: Option<CouponId>,
}

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = draw_winners)]
pub struct DrawWinner {
    pub id: i64,
    pub draw_id: DrawId,
    pub user_id: UserId,
    pub prize_id: DrawPrizeId,
    pub user_coupon_id: Option<UserCouponId>,
}

#[derive(Insertable)]
#[diesel(table_name = draw_winners, treat_none_as_default_value = false)]
pub struct NewDrawWinner {
    pub draw_id: DrawId,
    pub user_id: UserId,
    pub prize_id: DrawPrizeId,
    pub user_coupon_id: Option<UserCouponId>,
}

/// Inserts a draw and returns it. The newest draw of its creator is the one just
/// inserted: the caller holds the creator's row lock.
pub fn insert(conn: &mut Conn, new: &NewDraw<'_>) -> QueryResult<Draw> {
    diesel::insert_into(draws::table)
        .values(new)
        .execute(conn)?;
    draws::table
        .filter(draws::creator_id.eq(new.creator_id.0))
        .order(draws::id.desc())
        .select(Draw::as_select())
        .first(conn)
}

/// One statement per row: the multi-backend connection has no batch insert.
pub fn insert_prizes(conn: &mut Conn, new: &[NewDrawPrize<'_>]) -> QueryResult<usize> {
    let mut n = 0;
    for p in new {
        n += diesel::insert_into(draw_prizes::table)
            .values(p)
            .execute(conn)?;
    }
    Ok(n)
}

pub fn find(conn: &mut Conn, id: DrawId) -> QueryResult<Option<Draw>> {
    draws::table
        .find(id.0)
        .select(Draw::as_select())
        .first(conn)
        .optional()
}

/// The draw's prizes in drawing order.
pub fn prizes(conn: &mut Conn, id: DrawId) -> QueryResult<Vec<DrawPrize>> {
    draw_prizes::table
        .filter(draw_prizes::draw_id.eq(id.0))
        .order(draw_prizes::position.asc())
        .select(DrawPrize::as_select())
        .load(conn)
}

/// The participants' ids in ascending order: the order the drawing algorithm starts from.
pub fn participants(conn: &mut Conn, id: DrawId) -> QueryResult<Vec<UserId>> {
    draw_participants::table
        .filter(draw_participants::draw_id.eq(id.0))
        .order(draw_participants::user_id.asc())
        .select(draw_participants::user_id)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(UserId).collect())
}

pub fn participant_count(conn: &mut Conn, id: DrawId) -> QueryResult<i64> {
    draw_participants::table
        .filter(draw_participants::draw_id.eq(id.0))
        .count()
        .get_result(conn)
}

pub fn has_joined(conn: &mut Conn, id: DrawId, user: UserId) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        draw_participants::table
            .filter(draw_participants::draw_id.eq(id.0))
            .filter(draw_participants::user_id.eq(user.0)),
    ))
    .get_result(conn)
}

/// Touches an open draw: 1 row while it is open, 0 otherwise. Run first in a join or
/// leave transaction, it holds the draw's row lock (MariaDB) until the commit, so the
/// lock job's compare-and-set cannot slip between the status check and the change.
pub fn touch_open(conn: &mut Conn, id: DrawId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        draws::table
            .find(id.0)
            .filter(draws::status.eq(DrawStatus::Open.as_str())),
    )
    .set(draws::updated_at.eq(now))
    .execute(conn)
}

/// Adds a participant; a second join of the same user is refused by the unique key.
pub fn join(conn: &mut Conn, id: DrawId, user: UserId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::insert_into(draw_participants::table)
        .values((
            draw_participants::draw_id.eq(id.0),
            draw_participants::user_id.eq(user.0),
            draw_participants::joined_at.eq(now),
        ))
        .execute(conn)
}

pub fn leave(conn: &mut Conn, id: DrawId, user: UserId) -> QueryResult<usize> {
    diesel::delete(
        draw_participants::table
            .filter(draw_participants::draw_id.eq(id.0))
            .filter(draw_participants::user_id.eq(user.0)),
    )
    .execute(conn)
}

/// open → cancelled; 0 rows when it was not open.
pub fn cancel(conn: &mut Conn, id: DrawId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        draws::table
            .find(id.0)
            .filter(draws::status.eq(DrawStatus::Open.as_str())),
    )
    .set((
        draws::status.eq(DrawStatus::Cancelled.as_str()),
        draws::cancelled_at.eq(Some(now)),
        draws::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Takes the draw's row lock by its primary key before an UPDATE that changes `status`:
/// MariaDB may search such an UPDATE by the `draws_due (status, draw_at)` index, and two
/// of them on one draw would deadlock there.
fn hold(conn: &mut Conn, id: DrawId) -> QueryResult<()> {
    lock_row!(conn, draws, id.0).map(drop)
}

/// Open draws whose `lock_at` has come.
pub fn due_to_lock(conn: &mut Conn, now: NaiveDateTime) -> QueryResult<Vec<DrawId>> {
    draws::table
        .filter(draws::status.eq(DrawStatus::Open.as_str()))
        .filter(draws::lock_at.le(now))
        .select(draws::id)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(DrawId).collect())
}

/// open → locked with its seed, once `lock_at` has come; 0 rows when another caller
/// locked (or cancelled) it first, and then that caller's seed stands.
pub fn lock(
    conn: &mut Conn,
    id: DrawId,
    seed: &str,
    algorithm: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    hold(conn, id)?;
    diesel::update(
        draws::table
            .find(id.0)
            .filter(draws::status.eq(DrawStatus::Open.as_str()))
            .filter(draws::lock_at.le(now)),
    )
    .set((
        draws::status.eq(DrawStatus::Locked.as_str()),
        draws::seed.eq(Some(seed)),
        draws::algorithm.eq(Some(algorithm)),
        draws::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Locked draws whose `draw_at` has come.
pub fn due_to_draw(conn: &mut Conn, now: NaiveDateTime) -> QueryResult<Vec<DrawId>> {
    draws::table
        .filter(draws::status.eq(DrawStatus::Locked.as_str()))
        .filter(draws::draw_at.le(now))
        .select(draws::id)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(DrawId).collect())
}

/// locked → drawn: the exactly-once guard. Run first in the drawing transaction, it
/// takes the row lock, so a second instance's attempt waits for the first to commit
/// and then changes nothing (0 rows).
pub fn mark_drawn(conn: &mut Conn, id: DrawId, now: NaiveDateTime) -> QueryResult<usize> {
    hold(conn, id)?;
    diesel::update(
        draws::table
            .find(id.0)
            .filter(draws::status.eq(DrawStatus::Locked.as_str())),
    )
    .set((
        draws::status.eq(DrawStatus::Drawn.as_str()),
        draws::drawn_at.eq(Some(now)),
        draws::updated_at.eq(now),
    ))
    .execute(conn)
}

/// In drawing order, one statement per row (no batch insert through the multi-backend
/// connection); the ids keep that order for [`winners`].
pub fn insert_winners(conn: &mut Conn, new: &[NewDrawWinner]) -> QueryResult<usize> {
    let mut n = 0;
    for w in new {
        n += diesel::insert_into(draw_winners::table)
            .values(w)
            .execute(conn)?;
    }
    Ok(n)
}

/// The winners in the order they were drawn.
pub fn winners(conn: &mut Conn, id: DrawId) -> QueryResult<Vec<DrawWinner>> {
    draw_winners::table
        .filter(draw_winners::draw_id.eq(id.0))
        .order(draw_winners::id.asc())
        .select(DrawWinner::as_select())
        .load(conn)
}

/// Nicknames of `ids` (users without one are left out).
pub fn nicknames(conn: &mut Conn, ids: &[UserId]) -> QueryResult<Vec<(UserId, Option<String>)>> {
    let ids: Vec<i64> = ids.iter().map(|i| i.0).collect();
    users::table
        .filter(users::id.eq_any(ids))
        .select((users::id, users::nickname))
        .load::<(i64, Option<String>)>(conn)
        .map(|v| v.into_iter().map(|(i, n)| (UserId(i), n)).collect())
}

/// Draws `user` created, newest first, ids below `before`; `limit + 1` rows.
pub fn created_by(
    conn: &mut Conn,
    user: UserId,
    before: Option<DrawId>,
    limit: i64,
) -> QueryResult<Vec<Draw>> {
    let mut q = draws::table
        .filter(draws::creator_id.eq(user.0))
        .select(Draw::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(draws::id.lt(b.0));
    }
    q.order(draws::id.desc()).limit(limit + 1).load(conn)
}

/// Draws `user` joined, newest first, ids below `before`; `limit + 1` rows.
pub fn joined_by(
    conn: &mut Conn,
    user: UserId,
    before: Option<DrawId>,
    limit: i64,
) -> QueryResult<Vec<Draw>> {
    let mine = draw_participants::table
        .filter(draw_participants::user_id.eq(user.0))
        .select(draw_participants::draw_id);
    let mut q = draws::table
        .filter(draws::id.eq_any(mine))
        .select(Draw::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(draws::id.lt(b.0));
    }
    q.order(draws::id.desc()).limit(limit + 1).load(conn)
}
