//! The write lock of one row, taken by primary key inside the caller's transaction, so that
//! the reads and writes that follow are one step for that row's owner.

/// `lock_row!(conn, table, id)`: `QueryResult<bool>`, false when there is no such row.
///
/// On MariaDB a `SELECT id … FOR UPDATE` by primary key: the exclusive lock a write takes,
/// found through the primary key (an UPDATE may be searched by a secondary index it
/// changes, and two of them then deadlock on that index), in a statement diesel keeps
/// prepared (it prepares every UPDATE afresh, a round trip more). On SQLite a write that
/// changes nothing: the transaction takes the database's write lock before its first read
/// (a read first could not be upgraded to a write once another instance has written),
/// kept prepared by its text (`sql_keyed`).
macro_rules! lock_row {
    ($conn:expr, $table:ident, $id:expr) => {{
        use diesel::prelude::*;
        let id: i64 = $id;
        match $conn {
            #[cfg(feature = "mysql")]
            $crate::conn::DbConn::Mysql(c) => $crate::schema::$table::table
                .find(id)
                .select($crate::schema::$table::id)
                .for_update()
                .first::<i64>(c)
                .optional()
                .map(|row| row.is_some()),
            c => $crate::sql_keyed::execute(
                c,
                diesel::update($crate::schema::$table::table.find(id))
                    .set($crate::schema::$table::id.eq($crate::schema::$table::id)),
            )
            .map(|n| n > 0),
        }
    }};
}
