//! Keeps a statement prepared where diesel would prepare it afresh every time.
//!
//! diesel caches a prepared statement under its query's Rust type when it can, and so it
//! refuses to cache any query whose SQL can vary under one type: every UPDATE (a changeset
//! may skip `None` fields) and every `IN (…)` list (its length varies). On MariaDB each of
//! those costs a prepare round trip and a close per execution; on SQLite a parse and a
//! query plan (a profile of `POST /api/v1/orders` put a sixth of the server's CPU in
//! preparing the user's lock, a no-op UPDATE). [`execute`] hands the backend such a query
//! as its finished SQL text and binds, with no type key, so diesel keys its cache by that
//! text and the bind types, which is always sound: SQL that varies is another entry, never
//! a wrong one. Each shape of the text is one prepared statement per connection, so this is
//! for statements of few shapes.
//!
//! It walks the query the way diesel's own `MultiConnection` hands a query to a backend
//! (rendered text, then the binds collected from the query itself), through diesel's
//! backend-implementer API (the opt-in feature in Cargo.toml, pinned by Cargo.lock).
//!
//! INSERTs need none of this: the insert structs say `treat_none_as_default_value = false`,
//! so a `None` binds NULL (the default of every optional column) instead of writing
//! `DEFAULT` into the SQL, which is what made diesel refuse to cache them.

use diesel::QueryResult;
use diesel::connection::Connection;
use diesel::internal::derives::multiconnection::AstPassHelper;
use diesel::query_builder::{AstPass, QueryBuilder, QueryFragment, QueryId};
use diesel::sqlite::{Sqlite, SqliteQueryBuilder};

use crate::conn::{Conn, DbConn};

/// A query both backends can run.
#[cfg(feature = "mysql")]
pub trait OnBoth: QueryFragment<Sqlite> + QueryFragment<diesel::mysql::Mysql> + QueryId {}
#[cfg(feature = "mysql")]
impl<T: QueryFragment<Sqlite> + QueryFragment<diesel::mysql::Mysql> + QueryId> OnBoth for T {}
/// A query both backends can run.
#[cfg(not(feature = "mysql"))]
pub trait OnBoth: QueryFragment<Sqlite> + QueryId {}
#[cfg(not(feature = "mysql"))]
impl<T: QueryFragment<Sqlite> + QueryId> OnBoth for T {}

/// Executes `q` (an UPDATE, a DELETE), kept prepared by its SQL text.
pub fn execute<Q: OnBoth>(conn: &mut Conn, q: Q) -> QueryResult<usize> {
    match conn {
        DbConn::Sqlite(c) => c.execute_returning_count(&SqlKeyed(q)),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => c.execute_returning_count(&SqlKeyed(q)),
    }
}

/// `Q`, cached by its SQL text.
struct SqlKeyed<Q>(Q);

impl<Q> QueryId for SqlKeyed<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

/// `SqlKeyed` on one backend: its query builder and its backend value.
macro_rules! sql_keyed_on {
    ($backend:ty, $builder:ty, $value:expr) => {
        impl<Q: QueryFragment<$backend>> QueryFragment<$backend> for SqlKeyed<Q> {
            fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, $backend>) -> QueryResult<()> {
                // The text, rendered apart: the pass asking whether the statement may be
                // cached never walks the query, so diesel's refusal is not heard.
                let mut sql = <$builder>::new();
                self.0.to_sql(&mut sql, &$value)?;
                pass.push_sql(&sql.finish());
                if let Some((binds, lookup)) = pass.bind_collector() {
                    self.0.collect_binds(binds, lookup, &$value)?;
                }
                if let Some((formatter, backend)) = pass.debug_binds() {
                    self.0
                        .walk_ast(AstPass::collect_debug_binds_pass(formatter, backend))?;
                }
                Ok(())
            }
        }
    };
}

sql_keyed_on!(Sqlite, SqliteQueryBuilder, Sqlite);
#[cfg(feature = "mysql")]
sql_keyed_on!(
    diesel::mysql::Mysql,
    diesel::mysql::MysqlQueryBuilder,
    diesel::mysql::Mysql
);
