//! Uploaded images and their content checks. A row is written when the image is stored;
//! its check is submitted to WeChat (`trace_id` set) now or later (`submit_after`), and its
//! verdict moves it out of `pending` once, by a compare-and-set on the trace id. Only a
//! verdict of `pass` copies the URL to where others see it (the user's avatar, the order's
//! photo).

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{MediaCheck, UploadPurpose};
use crate::ids::{OrderId, UploadId, UserId};
use crate::schema::{orders, uploads, users};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = uploads)]
pub struct Upload {
    pub id: UploadId,
    pub user_id: UserId,
    pub purpose: UploadPurpose,
    pub order_id: Option<OrderId>,
    /// `<sha256 of the stored bytes>.<jpg|png>`.
    pub object_key: String,
    pub url: String,
    pub byte_size: i32,
    pub width: i32,
    pub height: i32,
    pub check_status: MediaCheck,
    /// WeChat's id for the check; `None` until it took it.
    pub trace_id: Option<String>,
    /// When the check is to be submitted (again); `None` once WeChat took it.
    pub submit_after: Option<NaiveDateTime>,
    pub attempts: i32,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub checked_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = uploads, treat_none_as_default_value = false)]
pub struct NewUpload<'a> {
    pub user_id: UserId,
    pub purpose: UploadPurpose,
    pub order_id: Option<OrderId>,
    pub object_key: &'a str,
    pub url: &'a str,
    pub byte_size: i32,
    pub width: i32,
    pub height: i32,
    pub check_status: MediaCheck,
    pub submit_after: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts an upload and returns it (the user's newest row of that object: read back in the
/// caller's transaction).
pub fn insert(conn: &mut Conn, new: &NewUpload<'_>) -> QueryResult<Upload> {
    diesel::insert_into(uploads::table)
        .values(new)
        .execute(conn)?;
    uploads::table
        .filter(uploads::user_id.eq(new.user_id.0))
        .filter(uploads::object_key.eq(new.object_key))
        .order(uploads::id.desc())
        .select(Upload::as_select())
        .first(conn)
}

pub fn find(conn: &mut Conn, id: UploadId) -> QueryResult<Option<Upload>> {
    uploads::table
        .find(id.0)
        .select(Upload::as_select())
        .first(conn)
        .optional()
}

/// WeChat took the check: 0 rows when another submission already recorded one.
pub fn submitted(
    conn: &mut Conn,
    id: UploadId,
    trace_id: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        uploads::table
            .find(id.0)
            .filter(uploads::trace_id.is_null()),
    )
    .set((
        uploads::trace_id.eq(Some(trace_id)),
        uploads::submit_after.eq(None::<NaiveDateTime>),
        uploads::attempts.eq(uploads::attempts + 1),
        uploads::updated_at.eq(now),
    ))
    .execute(conn)
}

/// The submission failed; try again at `next`.
pub fn postpone(
    conn: &mut Conn,
    id: UploadId,
    next: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        uploads::table
            .find(id.0)
            .filter(uploads::trace_id.is_null()),
    )
    .set((
        uploads::submit_after.eq(Some(next)),
        uploads::attempts.eq(uploads::attempts + 1),
        uploads::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Pending uploads whose check is due to be submitted, oldest first.
pub fn due_submissions(
    conn: &mut Conn,
    now: NaiveDateTime,
    limit: i64,
) -> QueryResult<Vec<Upload>> {
    uploads::table
        .filter(uploads::submit_after.le(now))
        .filter(uploads::trace_id.is_null())
        .filter(uploads::check_status.eq(MediaCheck::Pending.as_str()))
        .order(uploads::id.asc())
        .limit(limit)
        .select(Upload::as_select())
        .load(conn)
}

/// Records WeChat's verdict on the check `trace_id`, once: `None` when no pending upload
/// has that trace id (unknown, or a repeated push).
pub fn record_verdict(
    conn: &mut Conn,
    trace_id: &str,
    verdict: MediaCheck,
    now: NaiveDateTime,
) -> QueryResult<Option<Upload>> {
    let changed = diesel::update(
        uploads::table
            .filter(uploads::trace_id.eq(trace_id))
            .filter(uploads::check_status.eq(MediaCheck::Pending.as_str())),
    )
    .set((
        uploads::check_status.eq(verdict.as_str()),
        uploads::checked_at.eq(Some(now)),
        uploads::updated_at.eq(now),
    ))
    .execute(conn)?;
    if changed == 0 {
        return Ok(None);
    }
    uploads::table
        .filter(uploads::trace_id.eq(trace_id))
        .select(Upload::as_select())
        .first(conn)
        .optional()
}

/// Shows `url` as the user's avatar.
pub fn show_avatar(
    conn: &mut Conn,
    user: UserId,
    url: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(user.0))
        .set((users::avatar_url.eq(Some(url)), users::updated_at.eq(now)))
        .execute(conn)
}

/// Shows `url` as the order's proof of delivery.
pub fn show_delivery_photo(
    conn: &mut Conn,
    order: OrderId,
    url: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(orders::table.find(order.0))
        .set((
            orders::delivery_photo_url.eq(Some(url)),
            orders::updated_at.eq(now),
        ))
        .execute(conn)
}
