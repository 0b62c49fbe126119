//! Remembered results of POSTs sent with an `Idempotency-Key`.

use chrono::NaiveDateTime;
use diesel::prelude::*;

use crate::conn::Conn;
use crate::ids::UserId;
use crate::schema::idempotency_keys;

#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = idempotency_keys)]
pub struct Remembered {
    pub request_hash: String,
    pub status_code: i32,
    pub response: String,
    pub created_at: NaiveDateTime,
}

pub fn find(conn: &mut Conn, user: UserId, key: &str) -> QueryResult<Option<Remembered>> {
    idempotency_keys::table
        .find((user.0, key))
        .select(Remembered::as_select())
        .first(conn)
        .optional()
}

pub fn insert(
    conn: &mut Conn,
    user: UserId,
    key: &str,
    request_hash: &str,
    status_code: i32,
    response: &str,
    now: NaiveDateTime,
) -> QueryResult<usize> {
    diesel::insert_into(idempotency_keys::table)
        .values((
            idempotency_keys::user_id.eq(user.0),
            idempotency_keys::idem_key.eq(key),
            idempotency_keys::request_hash.eq(request_hash),
            idempotency_keys::status_code.eq(status_code),
            idempotency_keys::response.eq(response),
            idempotency_keys::created_at.eq(now),
        ))
        .execute(conn)
}

pub fn delete_older_than(conn: &mut Conn, cutoff: NaiveDateTime) -> QueryResult<usize> {
    diesel::delete(idempotency_keys::table.filter(idempotency_keys::created_at.lt(cutoff)))
        .execute(conn)
}
