//! Runs a query on the backend's own connection instead of through the `DbConn` enum.
//!
//! diesel's derived `MultiConnection` hands every query to the backend as rendered SQL
//! text, so each execution builds that text again (for the statement cache's key) even
//! when the statement is long prepared: a profile of `GET /api/v1/me` put a fifth of the
//! server's CPU in `users::find`, most of it rendering SQL. On the backend's own
//! connection diesel keys a statement by the query's Rust type and renders nothing.
//! For the hottest queries: each use compiles the query once per backend.

/// `on_backend!(conn, |c| query.first(c))`: the body with `c` bound to the
/// `SqliteConnection` or the `MysqlConnection` behind `conn`.
macro_rules! on_backend {
    ($conn:expr, |$c:ident| $body:expr) => {
        match $conn {
            $crate::conn::DbConn::Sqlite($c) => $body,
            #[cfg(feature = "mysql")]
            $crate::conn::DbConn::Mysql($c) => $body,
        }
    };
}
