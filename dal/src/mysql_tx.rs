//! Top-level transactions on MySQL/MariaDB at one round trip for BEGIN and one for COMMIT.
//!
//! diesel's transaction manager sends them through `batch_execute`, which switches the
//! connection's multi-statement mode on and off around each statement: three round trips
//! for BEGIN and three for COMMIT, more than the reads and writes of a typical unit of work.
//! Here BEGIN, COMMIT and ROLLBACK are prepared statements that diesel caches per
//! connection (MariaDB prepares all three), so each is one `COM_STMT_EXECUTE`.
//!
//! diesel's bookkeeping is kept exactly as its own manager keeps it: the depth goes to one
//! after BEGIN (so a nested `transaction` inside the unit of work is a savepoint) and back
//! after COMMIT or ROLLBACK; a connection whose end of transaction failed is marked broken,
//! so the pool closes it instead of handing out a connection in an unknown state. That needs
//! diesel's transaction status, which is public behind its
//! `i-implement-a-third-party-backend-and-opt-into-breaking-changes` feature; Cargo.lock
//! pins the version this was written against, and the MariaDB test suite runs through it.

use diesel::connection::{
    AnsiTransactionManager, TransactionDepthChange, TransactionManager, TransactionManagerStatus,
};
use diesel::mysql::{Mysql, MysqlConnection};
use diesel::query_builder::{AstPass, QueryFragment, QueryId};
use diesel::{QueryResult, RunQueryDsl};

use crate::conn::{Conn, DbConn};

/// A fixed statement diesel may prepare once per connection and cache: the type is the key.
macro_rules! fixed_statement {
    ($name:ident, $sql:literal) => {
        #[derive(Debug, Clone, Copy, Default, QueryId)]
        struct $name;

        impl QueryFragment<Mysql> for $name {
            fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Mysql>) -> QueryResult<()> {
                out.push_sql($sql);
                Ok(())
            }
        }

        impl RunQueryDsl<MysqlConnection> for $name {}
    };
}

fixed_statement!(Begin, "BEGIN");
fixed_statement!(Commit, "COMMIT");
fixed_statement!(Rollback, "ROLLBACK");

/// Whether `conn` is a MySQL connection outside any transaction (where this module's
/// transactions apply; inside one, diesel's savepoints do).
pub(crate) fn applies(conn: &mut Conn) -> bool {
    match conn {
        DbConn::Mysql(c) => {
            matches!(status(c).transaction_depth(), Ok(None))
        }
        DbConn::Sqlite(_) => false,
    }
}

/// Runs `f` in a transaction on a MySQL connection for which [`applies`] holds.
pub(crate) fn run<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    with_mysql(conn, begin)?;
    match f(conn) {
        Ok(value) => {
            with_mysql(conn, end::<Commit>)?;
            Ok(value)
        }
        Err(e) => {
            with_mysql(conn, end::<Rollback>)?;
            Err(e)
        }
    }
}

fn with_mysql(conn: &mut Conn, op: fn(&mut MysqlConnection) -> QueryResult<()>) -> QueryResult<()> {
    match conn {
        DbConn::Mysql(c) => op(c),
        DbConn::Sqlite(_) => Err(diesel::result::Error::NotInTransaction),
    }
}

fn status(c: &mut MysqlConnection) -> &mut TransactionManagerStatus {
    <AnsiTransactionManager as TransactionManager<MysqlConnection>>::transaction_manager_status_mut(
        c,
    )
}

fn begin(c: &mut MysqlConnection) -> QueryResult<()> {
    Begin.execute(c)?;
    status(c)
        .transaction_state()?
        .change_transaction_depth(TransactionDepthChange::IncreaseDepth)
}

/// COMMIT or ROLLBACK. When it fails, a ROLLBACK is tried (a failed COMMIT may leave the
/// transaction open); when that fails too, the connection is marked broken.
fn end<S>(c: &mut MysqlConnection) -> QueryResult<()>
where
    S: QueryFragment<Mysql> + QueryId + RunQueryDsl<MysqlConnection> + Default,
{
    let ended = S::default().execute(c).map(|_| ());
    let ended = match ended {
        Ok(()) => Ok(()),
        Err(e) => match Rollback.execute(c) {
            Ok(_) => Err(e),
            Err(_) => {
                status(c).set_in_error();
                return Err(e);
            }
        },
    };
    status(c)
        .transaction_state()?
        .change_transaction_depth(TransactionDepthChange::DecreaseDepth)?;
    ended
}

/// Marks a connection broken (a failed test at checkout): the pool closes it.
pub(crate) fn mark_broken(c: &mut MysqlConnection) {
    status(c).set_in_error();
}
