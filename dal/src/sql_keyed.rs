//! Keeps a statement prepared on MariaDB where diesel would prepare it afresh every time.
//!
//! diesel caches a prepared statement under its query's Rust type when it can, and so it
//! refuses to cache any query whose SQL can vary under one type: every UPDATE (a changeset
//! may skip `None` fields) and every `IN (…)` list (its length varies). Each of those costs
//! MariaDB a prepare round trip and a close per execution. [`execute`] hands MariaDB such a
//! query as its finished SQL text and binds, with no type key, so diesel keys its cache by
//! that text and the bind types, which is always sound: SQL that varies is another entry,
//! never a wrong one. Each shape of the text is one prepared statement per connection, so
//! this is for statements of few shapes.
//!
//! It walks the query the way diesel's own `MultiConnection` hands a query to a backend
//! (rendered text, then the binds collected from the query itself), through diesel's
//! backend-implementer API that the `mysql` feature enables (pinned by Cargo.lock).
//!
//! INSERTs need none of this: the insert structs say `treat_none_as_default_value = false`,
//! so a `None` binds NULL (the default of every optional column) instead of writing
//! `DEFAULT` into the SQL, which is what made diesel refuse to cache them.

use diesel::QueryResult;
use diesel::connection::Connection;
use diesel::query_builder::{QueryFragment, QueryId};
use diesel::sqlite::Sqlite;

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

/// Executes `q` (an UPDATE, a DELETE), kept prepared on MariaDB by its SQL text.
pub fn execute<Q: OnBoth>(conn: &mut Conn, q: Q) -> QueryResult<usize> {
    match conn {
        DbConn::Sqlite(c) => c.execute_returning_count(&q),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => c.execute_returning_count(&mysql::SqlKeyed(q)),
    }
}

#[cfg(feature = "mysql")]
mod mysql {
    use diesel::QueryResult;
    use diesel::internal::derives::multiconnection::AstPassHelper;
    use diesel::mysql::{Mysql, MysqlQueryBuilder};
    use diesel::query_builder::{AstPass, QueryBuilder, QueryFragment, QueryId};

    /// `Q`, cached by its SQL text.
    pub struct SqlKeyed<Q>(pub Q);

    impl<Q> QueryId for SqlKeyed<Q> {
        type QueryId = ();
        const HAS_STATIC_QUERY_ID: bool = false;
    }

    impl<Q: QueryFragment<Mysql>> QueryFragment<Mysql> for SqlKeyed<Q> {
        fn walk_ast<'b>(&'b self, mut pass: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
            // The text, rendered apart: the pass asking whether the statement may be
            // cached never walks the query, so diesel's refusal is not heard.
            let mut sql = MysqlQueryBuilder::new();
            self.0.to_sql(&mut sql, &Mysql)?;
            pass.push_sql(&sql.finish());
            if let Some((binds, lookup)) = pass.bind_collector() {
                self.0.collect_binds(binds, lookup, &Mysql)?;
            }
            if let Some((formatter, backend)) = pass.debug_binds() {
                self.0
                    .walk_ast(AstPass::collect_debug_binds_pass(formatter, backend))?;
            }
            Ok(())
        }
    }
}
