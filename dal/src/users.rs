//! Users, their roles and one-time bind codes.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::domain::Role;
use crate::ids::UserId;
use crate::schema::{bind_codes, users};

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct User {
    pub id: UserId,
    pub openid: String,
    pub role: Role,
    pub nickname: Option<String>,
    pub phone_enc: Option<String>,
    pub dorm_enc: Option<String>,
    pub runner_applied_at: Option<NaiveDateTime>,
    pub mp_openid: Option<String>,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
    /// Set while the user is banned: every authenticated call is refused.
    pub banned_at: Option<NaiveDateTime>,
    /// The admin who granted `role` through the admin API; `None` when it came from
    /// `ADMIN_OPENIDS`, a runner approval or the default.
    pub role_granted_by: Option<UserId>,
    /// The newest avatar that passed WeChat's content check.
    pub avatar_url: Option<String>,
}

#[derive(Insertable)]
#[diesel(table_name = users, treat_none_as_default_value = false)]
pub struct NewUser<'a> {
    pub openid: &'a str,
    pub role: Role,
    pub created_at: NaiveDateTime,
    pub updated_at: NaiveDateTime,
}

/// Profile fields a user may change; `None` leaves a column as it is.
#[derive(AsChangeset, Default)]
#[diesel(table_name = users)]
pub struct ProfileUpdate {
    pub nickname: Option<Option<String>>,
    pub phone_enc: Option<Option<String>>,
    pub dorm_enc: Option<Option<String>>,
    pub updated_at: Option<NaiveDateTime>,
}

/// Every authenticated request runs this: on the backend's own connection (`on_backend!`).
pub fn find(conn: &mut Conn, id: UserId) -> QueryResult<Option<User>> {
    on_backend!(conn, |c| users::table
        .find(id.0)
        .select(User::as_select())
        .first(c)
        .optional())
}

pub fn find_by_openid(conn: &mut Conn, openid: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::openid.eq(openid))
        .select(User::as_select())
        .first(conn)
        .optional()
}

pub fn find_by_mp_openid(conn: &mut Conn, mp_openid: &str) -> QueryResult<Option<User>> {
    users::table
        .filter(users::mp_openid.eq(mp_openid))
        .select(User::as_select())
        .first(conn)
        .optional()
}

/// The user with this openid, created with `role` on first login. Safe under
/// concurrent first logins: a lost insert race reads the winner's row.
pub fn upsert_by_openid(
    conn: &mut Conn,
    openid: &str,
    role: Role,
    now: NaiveDateTime,
) -> QueryResult<User> {
    if let Some(u) = find_by_openid(conn, openid)? {
        return Ok(u);
    }
    let inserted = diesel::insert_into(users::table)
        .values(&NewUser {
            openid,
            role,
            created_at: now,
            updated_at: now,
        })
        .execute(conn);
    match inserted {
        Ok(_) => {}
        Err(e) if crate::is_unique_violation(&e) => {}
        Err(e) => return Err(e),
    }
    find_by_openid(conn, openid)?.ok_or(diesel::result::Error::NotFound)
}

pub fn set_role(conn: &mut Conn, id: UserId, role: Role, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set((
            users::role.eq(role.as_str()),
            users::role_granted_by.eq(None::<i64>),
            users::updated_at.eq(now),
        ))
        .execute(conn)
}

/// A role an admin gives through the admin API, recorded with who gave it.
pub fn grant_role(
    conn: &mut Conn,
    id: UserId,
    role: Role,
    by: UserId,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set((
            users::role.eq(role.as_str()),
            users::role_granted_by.eq(Some(by.0)),
            users::updated_at.eq(now),
        ))
        .execute(conn)
}

pub fn update_profile(conn: &mut Conn, id: UserId, p: &ProfileUpdate) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0)).set(p).execute(conn)
}

pub fn mark_runner_applied(conn: &mut Conn, id: UserId, now: NaiveDateTime) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set((
            users::runner_applied_at.eq(Some(now)),
            users::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Drops a user's earlier codes (a user has one live code) and every used or expired
/// code of anyone. Returns rows deleted.
pub fn drop_stale_bind_codes(
    conn: &mut Conn,
    user: UserId,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::delete(
        bind_codes::table.filter(
            bind_codes::user_id
                .eq(user.0)
                .or(bind_codes::used_at.is_not_null())
                .or(bind_codes::expires_at.le(now)),
        ),
    )
    .execute(conn)
}

/// Live (unused, unexpired) codes of a user.
pub fn live_bind_codes(
    conn: &mut Conn,
    user: UserId,
    now: NaiveDateTime,
) -> QueryResult<Vec<String>> {
    bind_codes::table
        .filter(bind_codes::user_id.eq(user.0))
        .filter(bind_codes::used_at.is_null())
        .filter(bind_codes::expires_at.gt(now))
        .select(bind_codes::code)
        .load(conn)
}

pub fn insert_bind_code(
    conn: &mut Conn,
    code: &str,
    user: UserId,
    expires_at: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::insert_into(bind_codes::table)
        .values((
            bind_codes::code.eq(code),
            bind_codes::user_id.eq(user.0),
            bind_codes::expires_at.eq(expires_at),
        ))
        .execute(conn)
}

/// Uses a bind code once: returns its user when the code existed, was unused and unexpired.
pub fn consume_bind_code(
    conn: &mut Conn,
    code: &str,
    now: NaiveDateTime,
) -> QueryResult<Option<UserId>> {
    let taken = diesel::update(
        bind_codes::table
            .filter(bind_codes::code.eq(code))
            .filter(bind_codes::used_at.is_null())
            .filter(bind_codes::expires_at.gt(now)),
    )
    .set(bind_codes::used_at.eq(Some(now)))
    .execute(conn)?;
    if taken != 1 {
        return Ok(None);
    }
    bind_codes::table
        .find(code)
        .select(bind_codes::user_id)
        .first::<i64>(conn)
        .map(|id| Some(UserId(id)))
}

/// Links an official-account openid to a user, moving it off any previous user.
pub fn bind_mp_openid(
    conn: &mut Conn,
    user: UserId,
    mp_openid: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.filter(users::mp_openid.eq(mp_openid)))
        .set(users::mp_openid.eq(None::<String>))
        .execute(conn)?;
    diesel::update(users::table.find(user.0))
        .set((
            users::mp_openid.eq(Some(mp_openid)),
            users::updated_at.eq(now),
        ))
        .execute(conn)
}

/// `LIKE '%text%'` with the wildcards in `text` taken literally (`!` escapes, as the
/// backslash means something else in MySQL's string literals).
pub fn contains_pattern(text: &str) -> String {
    let mut p = String::with_capacity(text.len() + 2);
    p.push('%');
    for c in text.chars() {
        if matches!(c, '%' | '_' | '!') {
            p.push('!');
        }
        p.push(c);
    }
    p.push('%');
    p
}

/// Users for the admin list, newest first, ids below `before`; `limit + 1` rows to tell
/// if more follow. `text` matches a part of the nickname or the openid.
pub fn list(
    conn: &mut Conn,
    role: Option<Role>,
    text: Option<&str>,
    before: Option<UserId>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut q = users::table.select(User::as_select()).into_boxed();
    if let Some(r) = role {
        q = q.filter(users::role.eq(r.as_str()));
    }
    if let Some(t) = text {
        let p = contains_pattern(t);
        // Openids are ASCII: MySQL refuses to compare its ascii column with other text.
        q = if t.is_ascii() {
            q.filter(
                users::nickname
                    .like(p.clone())
                    .escape('!')
                    .or(users::openid.like(p).escape('!')),
            )
        } else {
            q.filter(users::nickname.like(p).escape('!'))
        };
    }
    if let Some(b) = before {
        q = q.filter(users::id.lt(b.0));
    }
    q.order(users::id.desc()).limit(limit + 1).load(conn)
}

/// Pending runner applications: applied and still a customer, oldest first, ids above
/// `after`; `limit + 1` rows.
pub fn runner_applications(
    conn: &mut Conn,
    after: Option<UserId>,
    limit: i64,
) -> QueryResult<Vec<User>> {
    let mut q = users::table
        .select(User::as_select())
        .filter(users::runner_applied_at.is_not_null())
        .filter(users::role.eq(Role::Customer.as_str()))
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(users::id.gt(a.0));
    }
    q.order(users::id.asc()).limit(limit + 1).load(conn)
}

/// Bans (`Some(now)`) or unbans (`None`) a user.
pub fn set_banned(
    conn: &mut Conn,
    id: UserId,
    banned_at: Option<NaiveDateTime>,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::update(users::table.find(id.0))
        .set((users::banned_at.eq(banned_at), users::updated_at.eq(now)))
        .execute(conn)
}

/// Holds the user's row until the transaction ends, so checks on the user's other rows
/// (how many unpaid orders they have) and the write that follows are one step for that
/// user (`lock_row!`).
pub fn lock(conn: &mut Conn, id: UserId) -> QueryResult<()> {
    lock_row!(conn, users, id.0).map(drop)
}
