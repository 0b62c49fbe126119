//! Readiness check.

use diesel::connection::SimpleConnection;

use crate::conn::Conn;

pub fn ping(conn: &mut Conn) -> diesel::QueryResult<()> {
    conn.batch_execute("SELECT 1")
}
