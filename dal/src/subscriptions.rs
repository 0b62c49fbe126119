//! Subscribe-message credits (what users accepted) and the log of every send.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::{CreditKind, MessageChannel, MessageEvent, MessageOutcome};
use crate::ids::{OrderId, UserId};
use crate::schema::{message_log, subscription_credits};

/// A granted credit, as inserted.
pub struct NewCredit<'a> {
    pub user: UserId,
    pub kind: CreditKind,
    pub template_id: Option<&'a str>,
    pub form_id: Option<&'a str>,
    pub expires_at: Option<NaiveDateTime>,
    pub at: NaiveDateTime,
}

pub fn grant(conn: &mut Conn, c: &NewCredit<'_>) -> QueryResult<usize> {
    diesel::insert_into(subscription_credits::table)
        .values((
            subscription_credits::user_id.eq(c.user.0),
            subscription_credits::kind.eq(c.kind.as_str()),
            subscription_credits::template_id.eq(c.template_id),
            subscription_credits::form_id.eq(c.form_id),
            subscription_credits::expires_at.eq(c.expires_at),
            subscription_credits::created_at.eq(c.at),
        ))
        .execute(conn)
}

/// Takes one unused, unexpired subscribe acceptance of `template_id` and marks it used.
/// False when the user has none. The mark is a compare-and-set, so two senders never
/// spend the same credit. Old form_id rows are never taken: WeChat no longer sends them.
pub fn take(
    conn: &mut Conn,
    user: UserId,
    template_id: &str,
    now: NaiveDateTime,
) -> QueryResult<bool> {
    for _ in 0..3 {
        let candidate: Option<i64> = subscription_credits::table
            .filter(subscription_credits::user_id.eq(user.0))
            .filter(subscription_credits::used_at.is_null())
            .filter(
                subscription_credits::expires_at
                    .is_null()
                    .or(subscription_credits::expires_at.gt(now)),
            )
            .filter(subscription_credits::kind.eq(CreditKind::Subscribe.as_str()))
            .filter(subscription_credits::template_id.eq(template_id))
            .order(subscription_credits::id.asc())
            .select(subscription_credits::id)
            .first(conn)
            .optional()?;
        let Some(id) = candidate else {
            return Ok(false);
        };
        let won = diesel::update(
            subscription_credits::table
                .find(id)
                .filter(subscription_credits::used_at.is_null()),
        )
        .set(subscription_credits::used_at.eq(Some(now)))
        .execute(conn)?;
        if won == 1 {
            return Ok(true);
        }
    }
    Ok(false)
}

pub fn unused_count(conn: &mut Conn, user: UserId, now: NaiveDateTime) -> QueryResult<i64> {
    subscription_credits::table
        .filter(subscription_credits::user_id.eq(user.0))
        .filter(subscription_credits::used_at.is_null())
        .filter(
            subscription_credits::expires_at
                .is_null()
                .or(subscription_credits::expires_at.gt(now)),
        )
        .filter(subscription_credits::kind.eq(CreditKind::Subscribe.as_str()))
        .count()
        .get_result(conn)
}

/// Expiry sweep: drops credits past their life and spent ones older than `spent_before`.
pub fn sweep(
    conn: &mut Conn,
    now: NaiveDateTime,
    spent_before: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        subscription_credits::table.filter(
            subscription_credits::expires_at
                .lt(now)
                .or(subscription_credits::used_at.lt(spent_before)),
        ),
    )
    .execute(conn)
}

pub struct NewMessage<'a> {
    pub user: UserId,
    pub channel: MessageChannel,
    pub template_id: Option<&'a str>,
    pub event: MessageEvent,
    pub order_id: Option<OrderId>,
    pub outcome: MessageOutcome,
    pub at: NaiveDateTime,
}

pub fn log_message(conn: &mut Conn, m: &NewMessage<'_>) -> QueryResult<usize> {
    diesel::insert_into(message_log::table)
        .values((
            message_log::user_id.eq(m.user.0),
            message_log::channel.eq(m.channel.as_str()),
            message_log::template_id.eq(m.template_id),
            message_log::event.eq(m.event.as_str()),
            message_log::order_id.eq(m.order_id.map(i64::from)),
            message_log::outcome.eq(m.outcome.as_str()),
            message_log::created_at.eq(m.at),
        ))
        .execute(conn)
}

#[derive(Clone, Debug, Queryable)]
pub struct LoggedMessage {
    pub event: MessageEvent,
    pub template_id: Option<String>,
    pub outcome: MessageOutcome,
    pub order_id: Option<OrderId>,
}

pub fn messages_of(conn: &mut Conn, user: UserId) -> QueryResult<Vec<LoggedMessage>> {
    message_log::table
        .filter(message_log::user_id.eq(user.0))
        .order(message_log::id.asc())
        .select((
            message_log::event,
            message_log::template_id,
            message_log::outcome,
            message_log::order_id,
        ))
        .load(conn)
}

/// One row of the send log, as the admin list shows it.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = message_log)]
pub struct MessageRow {
    pub id: i64,
    pub user_id: UserId,
    pub channel: MessageChannel,
    pub template_id: Option<String>,
    pub event: MessageEvent,
    pub order_id: Option<OrderId>,
    pub outcome: MessageOutcome,
    pub created_at: NaiveDateTime,
}

/// The send log, newest first, ids below `before`; `limit + 1` rows.
pub fn list_log(conn: &mut Conn, before: Option<i64>, limit: i64) -> QueryResult<Vec<MessageRow>> {
    let mut q = message_log::table
        .select(MessageRow::as_select())
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(message_log::id.lt(b));
    }
    q.order(message_log::id.desc()).limit(limit + 1).load(conn)
}
