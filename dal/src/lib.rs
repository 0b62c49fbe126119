//! The data layer: diesel schema, models, migrations and queries. The only crate that
//! touches SQL; it knows nothing of HTTP or WeChat.
//!
//! Query functions are plain `fn(&mut Conn, ...) -> QueryResult<T>` so that callers
//! compose them inside one transaction.
//!
//! Insert structs say `treat_none_as_default_value = false`: a `None` binds NULL (the
//! default of every optional column) instead of writing `DEFAULT` into the SQL, which
//! makes diesel prepare the INSERT afresh on MariaDB each time (a round trip more). The hot
//! UPDATEs go through `sql_keyed::execute` for the same reason.

#[macro_use]
mod on_backend;
#[macro_use]
mod row_lock;

pub mod backup;
pub mod bills;
pub mod checkout;
pub mod conn;
pub mod content_checks;
pub mod coupons;
pub mod domain;
pub mod draws;
pub mod earnings;
pub mod expenses;
pub mod health;
pub mod idempotency;
pub mod ids;
pub mod migrate;
pub mod mp_messages;
#[cfg(feature = "mysql")]
mod mysql_tx;
pub mod orders;
pub mod payments;
pub mod refunds;
pub mod schema;
mod sql_keyed;
pub mod subscriptions;
pub mod time;
pub mod uploads;
pub mod users;
pub mod withdrawals;

pub use conn::{Backend, Conn, DbConn, Pool, PooledConn, Pools};
pub use diesel::result::{DatabaseErrorKind, Error as DieselError, QueryResult};
pub use domain::{
    BillTradeState, CallbackKind, CallbackOutcome, ConsoleSessionStatus, ContentSubject,
    ContentVerdict, CouponStatus, CreditKind, DiscountKind, DrawStatus, EarningKind, ExpenseKind,
    ExpenseSource, LedgerEvent, LedgerSource, MediaCheck, MessageChannel, MessageEvent,
    MessageOutcome, MismatchKind, MpMessageStatus, MpMode, OrderKind, OrderMove, OrderStatus,
    ReconciliationStatus, RefundCause, RefundStatus, Role, Switch, UploadPurpose, UserCouponStatus,
    WithdrawApproval, WithdrawalStatus,
};
pub use ids::{
    CouponId, DrawId, DrawPrizeId, EarningId, ExpenseId, GroupId, MpMessageId, OrderId, RefundId,
    ReimbursementId, UploadId, UserCouponId, UserId, WithdrawalId,
};

/// Failures of the data layer that are not a query's own result.
#[derive(Debug, thiserror::Error)]
pub enum DalError {
    #[error(transparent)]
    Url(#[from] conn::UrlError),
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
}

/// Runs `f` in a transaction (nested calls become savepoints). On MySQL a top-level one
/// costs one round trip to begin and one to end (`mysql_tx`).
pub fn transaction<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    use diesel::Connection;
    #[cfg(feature = "mysql")]
    if mysql_tx::applies(conn) {
        return mysql_tx::run(conn, f);
    }
    conn.transaction(f)
}

/// True while a transaction is open on `conn` (for SQLite, where a statement that fails
/// with e.g. SQLITE_FULL or SQLITE_IOERR can end the whole transaction by itself): `BEGIN`
/// fails inside a transaction; outside, the transaction it opened is rolled back at once.
pub fn in_transaction(conn: &mut Conn) -> bool {
    use diesel::connection::SimpleConnection;
    if conn.batch_execute("BEGIN").is_err() {
        return true;
    }
    let _ = conn.batch_execute("ROLLBACK");
    false
}

/// True when `e` says the connection to the database is gone (MariaDB Connector/C's texts
/// of CR_SERVER_GONE_ERROR, CR_SERVER_LOST and the connect errors, which diesel reports as
/// `DatabaseErrorKind::Unknown`; or a transaction manager diesel gave up on).
pub fn is_connection_lost(e: &diesel::result::Error) -> bool {
    const LOST: [&str; 5] = [
        "server has gone away",
        "lost connection to",
        "can't connect to",
        "connection refused",
        "broken pipe",
    ];
    match e {
        diesel::result::Error::DatabaseError(..) => {
            let m = e.to_string().to_ascii_lowercase();
            LOST.iter().any(|l| m.contains(l))
        }
        diesel::result::Error::BrokenTransactionManager => true,
        _ => false,
    }
}

/// True when the database rolled the statement's transaction back to break a deadlock
/// (InnoDB's ER_LOCK_DEADLOCK, which diesel reports as a serialization failure): nothing
/// of it was written, and running it again is safe.
pub fn is_deadlock(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    )
}

/// True when `e` is a unique-key violation (same kind on both backends).
pub fn is_unique_violation(e: &diesel::result::Error) -> bool {
    matches!(
        e,
        diesel::result::Error::DatabaseError(DatabaseErrorKind::UniqueViolation, _)
    )
}
