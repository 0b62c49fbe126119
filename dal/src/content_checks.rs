//! Texts whose content check flagged them or could not be made when they were written.
//! A `pending` row is checked again by a job (`check_after`); its verdict is written once,
//! by a compare-and-set from `pending`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{ContentSubject, ContentVerdict};
use crate::ids::UserId;
use crate::schema::content_checks;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = content_checks)]
pub struct ContentCheck {
    pub id: i64,
    pub user_id: UserId,
    pub subject: ContentSubject,
    pub subject_id: i64,
    pub field: String,
    pub content: String,
    pub verdict: ContentVerdict,
    /// WeChat's label (100 normal, 20001 politics, 20002 porn, ...), when it answered.
    pub label: Option<i32>,
    pub attempts: i32,
    pub check_after: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub checked_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = content_checks, treat_none_as_default_value = false)]
pub struct NewContentCheck<'a> {
    pub user_id: UserId,
    pub subject: ContentSubject,
    pub subject_id: i64,
    pub field: &'a str,
    pub content: &'a str,
    pub verdict: ContentVerdict,
    pub label: Option<i32>,
    pub check_after: Option<NaiveDateTime>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub checked_at: Option<NaiveDateTime>,
}

pub fn insert(conn: &mut Conn, rows: &[NewContentCheck<'_>]) -> QueryResult<usize> {
    if rows.is_empty() {
        return Ok(0);
    }
    let mut n = 0;
    // One statement per row: a multi-row INSERT is not available through the
    // MultiConnection enum, and a write has at most a handful.
    for r in rows {
        n += diesel::insert_into(content_checks::table)
            .values(r)
            .execute(conn)?;
    }
    Ok(n)
}

/// Pending checks due by `now`, oldest first.
pub fn due(conn: &mut Conn, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<ContentCheck>> {
    content_checks::table
        .filter(content_checks::verdict.eq(ContentVerdict::Pending.as_str()))
        .filter(content_checks::check_after.le(now))
        .order(content_checks::id.asc())
        .limit(limit)
        .select(ContentCheck::as_select())
        .load(conn)
}

/// WeChat answered: 0 rows when the check was decided already.
pub fn decide(
    conn: &mut Conn,
    id: i64,
    verdict: ContentVerdict,
    label: Option<i32>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        content_checks::table
            .find(id)
            .filter(content_checks::verdict.eq(ContentVerdict::Pending.as_str())),
    )
    .set((
        content_checks::verdict.eq(verdict.as_str()),
        content_checks::label.eq(label),
        content_checks::check_after.eq(None::<NaiveDateTime>),
        content_checks::attempts.eq(content_checks::attempts + 1),
        content_checks::checked_at.eq(Some(now)),
        content_checks::updated_at.eq(now),
    ))
    .execute(conn)
}

/// WeChat could not answer again: try at `next`.
pub fn postpone(
    conn: &mut Conn,
    id: i64,
    next: NaiveDateTime,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        content_checks::table
            .find(id)
            .filter(content_checks::verdict.eq(ContentVerdict::Pending.as_str())),
    )
    .set((
        content_checks::check_after.eq(Some(next)),
        content_checks::attempts.eq(content_checks::attempts + 1),
        content_checks::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Newest first, optionally of one verdict, before the id `before`.
pub fn list(
    conn: &mut Conn,
    verdict: Option<ContentVerdict>,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<ContentCheck>> {
    let mut q = content_checks::table
        .select(ContentCheck::as_select())
        .into_boxed();
    if let Some(v) = verdict {
        q = q.filter(content_checks::verdict.eq(v.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(content_checks::id.lt(b));
    }
    q.order(content_checks::id.desc())
        .limit(limit + 1)
        .load(conn)
}
