//! Liveness of one connection: readiness checks and the pool's checkout test.

use diesel::prelude::*;
use diesel::sql_types::Integer;

use crate::conn::{Conn, DbConn};

/// One round trip. `SELECT ?` with a bound value is a statement diesel prepares once per
/// connection and caches; a plain-text `SELECT 1` through `batch_execute` cost three on
/// MySQL (multi-statement mode switched on and off around it), once per pool checkout.
/// Run on the concrete connection: the derived multi-backend cannot bind this value.
pub fn ping(conn: &mut Conn) -> QueryResult<()> {
    let query = diesel::select(1.into_sql::<Integer>());
    match conn {
        DbConn::Sqlite(c) => query.get_result::<i32>(c),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => query.get_result::<i32>(c),
    }
    .map(|_| ())
}
