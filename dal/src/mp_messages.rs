//! The outbox of official-account template messages. A row is inserted before anything
//! is sent; a sender claims it with a compare-and-set (`pending` → `sending`, with a
//! lease), so two senders on any number of instances never send the same row; the
//! outcome is written back by the same compare-and-set's holder.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{MessageEvent, MpMessageStatus};
use crate::ids::{MpMessageId, OrderId, UserId};
use crate::schema::mp_messages;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = mp_messages)]
pub struct MpMessage {
    pub id: MpMessageId,
    pub user_id: UserId,
    /// The user's official-account openid.
    pub touser: String,
    pub template_id: String,
    pub event: MessageEvent,
    pub order_id: Option<OrderId>,
    /// What makes the event one message per user (unique with `user_id`).
    pub event_key: String,
    /// The request body for `message/template/send`, as JSON text.
    pub payload: String,
    pub status: MpMessageStatus,
    pub attempts: i32,
    /// When `pending`: not before. When `sending`: the claim's lease ends.
    pub next_attempt_at: NaiveDateTime,
    pub last_error: Option<String>,
    pub wechat_msgid: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    pub sent_at: Option<NaiveDateTime>,
}

#[derive(Insertable)]
#[diesel(table_name = mp_messages, treat_none_as_default_value = false)]
pub struct NewMpMessage<'a> {
    pub user_id: UserId,
    pub touser: &'a str,
    pub template_id: &'a str,
    pub event: MessageEvent,
    pub order_id: Option<OrderId>,
    pub event_key: &'a str,
    pub payload: &'a str,
    pub status: MpMessageStatus,
    pub attempts: i32,
    pub next_attempt_at: NaiveDateTime,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Inserts the message unless the user already has one for this event; returns the
/// row either way and whether it was new.
pub fn enqueue(conn: &mut Conn, new: &NewMpMessage<'_>) -> QueryResult<(MpMessage, bool)> {
    let inserted = match diesel::insert_into(mp_messages::table)
        .values(new)
        .execute(conn)
    {
        Ok(_) => true,
        Err(e) if crate::is_unique_violation(&e) => false,
        Err(e) => return Err(e),
    };
    let row = mp_messages::table
        .filter(mp_messages::user_id.eq(new.user_id.0))
        .filter(mp_messages::event_key.eq(new.event_key))
        .select(MpMessage::as_select())
        .first(conn)?;
    Ok((row, inserted))
}

pub fn find(conn: &mut Conn, id: MpMessageId) -> QueryResult<Option<MpMessage>> {
    mp_messages::table
        .find(id.0)
        .select(MpMessage::as_select())
        .first(conn)
        .optional()
}

/// Claims the row for one send: `pending` and due. 1 when this caller won.
pub fn claim(
    conn: &mut Conn,
    id: MpMessageId,
    now: NaiveDateTime,
    lease_until: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(
        mp_messages::table
            .find(id.0)
            .filter(mp_messages::status.eq(MpMessageStatus::Pending.as_str()))
            .filter(mp_messages::next_attempt_at.le(now)),
    )
    .set((
        mp_messages::status.eq(MpMessageStatus::Sending.as_str()),
        mp_messages::attempts.eq(mp_messages::attempts + 1),
        mp_messages::next_attempt_at.eq(lease_until),
        mp_messages::updated_at.eq(now),
    ))
    .execute(conn)
}

/// `sending` rows whose lease ran out (their sender stopped mid-send) → `unclear`, with
/// why; they are not sent again. Returns how many.
pub fn expire_stale_sends(conn: &mut Conn, now: NaiveDateTime, why: &str) -> QueryResult<usize> {
    diesel::update(
        mp_messages::table
            .filter(mp_messages::status.eq(MpMessageStatus::Sending.as_str()))
            .filter(mp_messages::next_attempt_at.le(now)),
    )
    .set((
        mp_messages::status.eq(MpMessageStatus::Unclear.as_str()),
        mp_messages::last_error.eq(Some(clip(why))),
        mp_messages::updated_at.eq(now),
    ))
    .execute(conn)
}

/// Ids of `pending` rows due for a send, oldest first.
pub fn due(conn: &mut Conn, now: NaiveDateTime, limit: i64) -> QueryResult<Vec<MpMessageId>> {
    mp_messages::table
        .filter(mp_messages::status.eq(MpMessageStatus::Pending.as_str()))
        .filter(mp_messages::next_attempt_at.le(now))
        .order(mp_messages::next_attempt_at.asc())
        .select(mp_messages::id)
        .limit(limit)
        .load::<i64>(conn)
        .map(|v| v.into_iter().map(MpMessageId).collect())
}

/// How a claimed send ended.
pub enum Outcome<'a> {
    Sent {
        msgid: Option<&'a str>,
    },
    /// Worth another try at `at`.
    Retry {
        at: NaiveDateTime,
        error: &'a str,
    },
    /// WeChat refused it for good, or the retries ran out.
    Final {
        status: MpMessageStatus,
        error: &'a str,
    },
}

/// Writes the outcome of the claimed send (`sending` → ...); 0 when the claim was lost
/// (its lease ran out and another sender took it).
pub fn finish(
    conn: &mut Conn,
    id: MpMessageId,
    attempts: i32,
    outcome: Outcome<'_>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    let target = mp_messages::table
        .find(id.0)
        .filter(mp_messages::status.eq(MpMessageStatus::Sending.as_str()))
        .filter(mp_messages::attempts.eq(attempts));
    match outcome {
        Outcome::Sent { msgid } => diesel::update(target)
            .set((
                mp_messages::status.eq(MpMessageStatus::Sent.as_str()),
                mp_messages::wechat_msgid.eq(msgid),
                mp_messages::last_error.eq(None::<String>),
                mp_messages::sent_at.eq(Some(now)),
                mp_messages::updated_at.eq(now),
            ))
            .execute(conn),
        Outcome::Retry { at, error } => diesel::update(target)
            .set((
                mp_messages::status.eq(MpMessageStatus::Pending.as_str()),
                mp_messages::next_attempt_at.eq(at),
                mp_messages::last_error.eq(Some(clip(error))),
                mp_messages::updated_at.eq(now),
            ))
            .execute(conn),
        Outcome::Final { status, error } => diesel::update(target)
            .set((
                mp_messages::status.eq(status.as_str()),
                mp_messages::last_error.eq(Some(clip(error))),
                mp_messages::updated_at.eq(now),
            ))
            .execute(conn),
    }
}

fn clip(s: &str) -> String {
    s.chars().take(255).collect()
}

/// The send log, newest first, ids below `before`; `limit + 1` rows.
pub fn list(
    conn: &mut Conn,
    status: Option<MpMessageStatus>,
    before: Option<MpMessageId>,
    limit: i64,
) -> QueryResult<Vec<MpMessage>> {
    let mut q = mp_messages::table
        .select(MpMessage::as_select())
        .into_boxed();
    if let Some(s) = status {
        q = q.filter(mp_messages::status.eq(s.as_str()));
    }
    if let Some(b) = before {
        q = q.filter(mp_messages::id.lt(b.0));
    }
    q.order(mp_messages::id.desc()).limit(limit + 1).load(conn)
}

/// A pending message's next try moves to `at` (an operator retrying now, or a test that
/// cannot wait for the backoff); 0 rows unless it is pending.
pub fn retry_at(conn: &mut Conn, id: MpMessageId, at: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(
        mp_messages::table
            .find(id.0)
            .filter(mp_messages::status.eq(MpMessageStatus::Pending.as_str())),
    )
    .set(mp_messages::next_attempt_at.eq(at))
    .execute(conn)
}
