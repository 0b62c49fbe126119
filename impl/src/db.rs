//! Runs data-layer functions off the async executor: the pool checkout happens inside
//! the blocking closure, because checkout itself can block. SQLite's writes go to one
//! writer thread instead (see [`Writer`]).

use std::collections::VecDeque;
use std::panic::AssertUnwindSafe;
use std::sync::mpsc;

use campus_dal::checkout::CheckoutError;
use campus_dal::{Backend, Conn, Pools};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(#[from] r2d2::Error),
    /// Every pooled connection tried failed its test at checkout.
    #[error("database unavailable: {0}")]
    Unreachable(campus_dal::DieselError),
    #[error(transparent)]
    Query(#[from] campus_dal::DieselError),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error("database write failed: it panicked, or the writer thread is gone")]
    WriterLost,
    /// The SQLite writer's queue is full: refused at once rather than queued behind
    /// everything else (the caller answers 503; WeChat retries a notify).
    #[error("database writer is busy: {WRITER_QUEUE} writes already wait")]
    Busy,
    /// The write ran, but the group commit it was part of did not happen (SQLite).
    #[error("database write not committed: {0}")]
    NotCommitted(String),
}

/// SQLite's text for SQLITE_FULL (the disk under the database file has no room left).
const SQLITE_FULL_MESSAGE: &str = "database or disk is full";

impl DbError {
    /// The write failed because the disk is full: nothing was written, and it succeeds once
    /// there is room again. (SQLite; MariaDB blocks its writers on a full disk instead.)
    pub fn is_disk_full(&self) -> bool {
        match self {
            DbError::Query(q @ campus_dal::DieselError::DatabaseError(..)) => {
                q.to_string().contains(SQLITE_FULL_MESSAGE)
            }
            DbError::NotCommitted(m) => m.contains(SQLITE_FULL_MESSAGE),
            _ => false,
        }
    }

    /// The database rolled the transaction back to break a deadlock with another one
    /// (InnoDB's ER_LOCK_DEADLOCK, which diesel reports as a serialization failure): nothing
    /// was written, and the same request again works.
    pub fn is_deadlock(&self) -> bool {
        matches!(self, DbError::Query(q) if campus_dal::is_deadlock(q))
    }

    /// The connection to the database server broke during the unit of work (MariaDB
    /// restarted, killed, or the network dropped): the database is unavailable, not the
    /// request wrong, and a retry after it is back works.
    pub fn is_connection_lost(&self) -> bool {
        match self {
            DbError::Query(q) => campus_dal::is_connection_lost(q),
            _ => false,
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pools: Pools,
    /// SQLite only; on MySQL writes use the pool like reads.
    writer: Option<Writer>,
}

impl Db {
    /// On SQLite, starts the writer thread (it ends when the last clone of this `Db` is dropped).
    pub fn new(pools: Pools) -> Self {
        let writer = (pools.backend == Backend::Sqlite).then(|| Writer::start(pools.write.clone()));
        Self { pools, writer }
    }

    pub fn pools(&self) -> &Pools {
        &self.pools
    }

    /// A read-only unit of work.
    pub async fn read<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        run(self.pools.clone(), false, f).await
    }

    /// A unit of work that writes; on SQLite it goes to the single writer connection.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        match &self.writer {
            Some(w) => w.run(f).await,
            None => run(self.pools.clone(), true, f).await,
        }
    }

    /// A write unit of work in one transaction.
    pub async fn write_tx<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + From<campus_dal::DieselError> + Send + 'static,
    {
        self.write(|c| campus_dal::transaction(c, f)).await
    }

    /// Readiness: one trivial query on each pool.
    pub async fn ping(&self) -> Result<(), DbError> {
        self.read(ping_conn).await?;
        self.write(ping_conn).await
    }

    pub fn pool_state(&self) -> (u32, u32) {
        let r = self.pools.read.state();
        let w = self.pools.write.state();
        if self.pools.backend == campus_dal::Backend::Mysql {
            (r.connections, r.idle_connections)
        } else {
            (
                r.connections + w.connections,
                r.idle_connections + w.idle_connections,
            )
        }
    }
}

fn ping_conn(c: &mut Conn) -> Result<(), DbError> {
    campus_dal::health::ping(c).map_err(DbError::Query)
}

impl From<CheckoutError> for DbError {
    fn from(e: CheckoutError) -> Self {
        match e {
            CheckoutError::Pool(p) => DbError::Unavailable(p),
            CheckoutError::Dead(d) => DbError::Unreachable(d),
        }
    }
}

async fn run<T, E, F>(pools: Pools, write: bool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let pool = if write { &pools.write } else { &pools.read };
        let mut conn = pools.freshness.checkout(pool).map_err(DbError::from)?;
        f(&mut conn)
    })
    .await
    .map_err(DbError::from)?
}

/// A queued write: runs on the writer's connection and returns whether it succeeded and
/// how to answer its caller, given whether the group commit it was part of failed.
type WriteJob = Box<dyn FnOnce(Result<&mut Conn, DbError>) -> (bool, Reply) + Send>;
type Reply = Box<dyn FnOnce(Option<DbError>)>;

/// Most writes committed together.
const MAX_GROUP: usize = 32;

/// Most writes waiting for the SQLite writer. Beyond it a write fails fast with
/// [`DbError::Busy`]: an unbounded queue turns a flood into unbounded memory and latency
/// for every write behind it.
pub const WRITER_QUEUE: usize = 1024;

/// SQLite's single writer connection, driven by one thread. Writes queue up while it works;
/// when several are waiting they run in arrival order inside one transaction (each one's own
/// transaction becomes a savepoint, so a failing write still fails alone) and are answered
/// after its COMMIT: one commit (WAL frames, locks, checkpoint share) for the group instead
/// of one each. A lone write runs in its own transaction. The connection goes back to the
/// pool when the queue is empty.
///
/// Why one thread: a blocking-pool task per write pays a pool checkout, a thread hand-off
/// and a commit for every write, which bounds SQLite writes well below what one connection
/// can do (README, Benchmarks).
#[derive(Clone)]
struct Writer {
    jobs: mpsc::SyncSender<WriteJob>,
}

impl Writer {
    fn start(pool: campus_dal::Pool) -> Self {
        let (jobs, queue) = mpsc::sync_channel::<WriteJob>(WRITER_QUEUE);
        let spawned = std::thread::Builder::new()
            .name("db-writer".into())
            .spawn(move || writer_loop(&pool, &queue));
        if let Err(e) = spawned {
            // Without the thread every write fails with WriterLost (the queue is dropped).
            tracing::error!(error = %e, "cannot start the database writer thread");
        }
        Self { jobs }
    }

    async fn run<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let job: WriteJob = Box::new(move |conn| {
            let r = match conn {
                Ok(c) => f(c),
                Err(e) => Err(E::from(e)),
            };
            let ok = r.is_ok();
            let reply: Reply = Box::new(move |not_committed: Option<DbError>| {
                let _ = tx.send(match not_committed {
                    None => r,
                    Some(e) => Err(E::from(e)),
                });
            });
            (ok, reply)
        });
        self.jobs.try_send(job).map_err(|e| match e {
            mpsc::TrySendError::Full(_) => E::from(DbError::Busy),
            mpsc::TrySendError::Disconnected(_) => E::from(DbError::WriterLost),
        })?;
        rx.await.map_err(|_| E::from(DbError::WriterLost))?
    }
}

fn writer_loop(pool: &campus_dal::Pool, queue: &mpsc::Receiver<WriteJob>) {
    let mut pending: VecDeque<WriteJob> = VecDeque::new();
    loop {
        if pending.is_empty() {
            match queue.recv() {
                Ok(job) => pending.push_back(job),
                Err(_) => return,
            }
        }
        let mut conn = match pool.get() {
            Ok(c) => c,
            Err(e) => {
                if let Some(job) = pending.pop_front() {
                    job(Err(DbError::from(e))).1(None);
                }
                continue;
            }
        };
        // Keep the connection while writes keep coming.
        loop {
            while pending.len() < MAX_GROUP {
                match queue.try_recv() {
                    Ok(job) => pending.push_back(job),
                    Err(_) => break,
                }
            }
            if pending.is_empty() || !run_group(&mut conn, &mut pending) {
                break;
            }
        }
        // Back to the pool here; one a panic left inside a transaction is closed instead
        // (`ConnManager::has_broken`), so the next writes get a clean connection.
    }
}

/// Runs the queued writes (one alone, or up to [`MAX_GROUP`] in one transaction) and answers
/// them. False when a write panicked (the connection may be left mid-transaction).
fn run_group(conn: &mut Conn, pending: &mut VecDeque<WriteJob>) -> bool {
    if pending.len() == 1 {
        let Some(job) = pending.pop_front() else {
            return true;
        };
        // A panicking write fails alone (its caller sees WriterLost), as on the blocking pool.
        return match std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(&mut *conn)))) {
            Ok((_, reply)) => {
                reply(None);
                true
            }
            Err(_) => {
                tracing::error!("a database write panicked");
                false
            }
        };
    }
    let n = pending.len().min(MAX_GROUP);
    #[cfg(test)]
    tests::GROUPS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut replies: Vec<Reply> = Vec::with_capacity(n);
    let mut panicked = false;
    let committed = campus_dal::transaction(conn, |c| -> Result<(), campus_dal::DieselError> {
        for _ in 0..n {
            let Some(job) = pending.pop_front() else {
                break;
            };
            let ok = match std::panic::catch_unwind(AssertUnwindSafe(|| job(Ok(&mut *c)))) {
                Ok((ok, reply)) => {
                    replies.push(reply);
                    ok
                }
                Err(_) => {
                    tracing::error!("a database write panicked; its group is rolled back");
                    panicked = true;
                    return Err(campus_dal::DieselError::RollbackTransaction);
                }
            };
            // A write that failed may have ended the transaction (SQLITE_FULL, IOERR, ...):
            // the next ones would commit on their own. Stop; they run in the next group.
            // (Checked after failures only: it costs two statements.)
            if !ok && !campus_dal::in_transaction(c) {
                return Err(campus_dal::DieselError::RollbackTransaction);
            }
        }
        Ok(())
    });
    let failure = committed.err().map(|e| e.to_string());
    if let Some(e) = &failure {
        tracing::error!(error = %e, writes = replies.len(), "a group of writes was not committed");
    }
    for reply in replies {
        reply(failure.clone().map(DbError::NotCommitted));
    }
    !panicked
}

/// Opens the pools for `url` (blocking: call from a blocking context).
/// Whether `url` names a backend this binary was built with (a `mysql://` URL needs the
/// `mysql` feature), without connecting.
pub fn check_url(url: &str) -> Result<(), campus_dal::DalError> {
    campus_dal::conn::Target::parse(url)?;
    Ok(())
}

pub fn connect_pools(url: &str, size: u32) -> Result<Pools, campus_dal::DalError> {
    Pools::connect(url, size)
}

/// Applies pending migrations on the writer (blocking), under the database's migration
/// lock, so instances starting together apply each one once; returns the names applied.
pub fn migrate(pools: &Pools) -> Result<Vec<String>, campus_dal::DalError> {
    let mut conn = pools.write.get()?;
    campus_dal::migrate::run_pending(&mut conn)
}

/// Every migration this binary knows, oldest first, and whether it is applied (blocking).
pub fn migration_status(
    pools: &Pools,
) -> Result<Vec<campus_dal::migrate::MigrationState>, campus_dal::DalError> {
    let mut conn = pools.write.get()?;
    campus_dal::migrate::status(&mut conn)
}

/// Runs the last applied migration's `down.sql` (blocking); `None` when none is applied.
pub fn revert_last_migration(pools: &Pools) -> Result<Option<String>, campus_dal::DalError> {
    let mut conn = pools.write.get()?;
    campus_dal::migrate::revert_last(&mut conn)
}

#[cfg(test)]
mod tests {
    use super::*;
    use campus_dal::users;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Groups of more than one write run so far (all tests of this module).
    pub(super) static GROUPS: AtomicUsize = AtomicUsize::new(0);

    fn sqlite_db() -> (tempfile::TempDir, Db) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("t.db").display());
        let pools = connect_pools(&url, 2).expect("pools");
        migrate(&pools).expect("migrate");
        (dir, Db::new(pools))
    }

    async fn user_exists(db: &Db, openid: String) -> bool {
        db.read(move |c| users::find_by_openid(c, &openid).map_err(DbError::from))
            .await
            .expect("read")
            .is_some()
    }

    /// Many concurrent writes (grouped by the writer): each failing one fails alone, and a
    /// write is committed (visible to the read pool) when its caller gets the answer.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grouped_writes_fail_alone_and_are_committed_when_answered() {
        let (_dir, db) = sqlite_db();
        let tasks: Vec<_> = (0..300)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    let openid = format!("o{i}");
                    let o = openid.clone();
                    let r = if i % 2 == 0 {
                        db.write_tx(move |c| -> Result<(), DbError> {
                            users::upsert_by_openid(
                                c,
                                &o,
                                campus_dal::Role::Customer,
                                campus_dal::time::now(),
                            )?;
                            if i % 3 == 0 {
                                return Err(DbError::NotCommitted("this one fails".into()));
                            }
                            Ok(())
                        })
                        .await
                    } else {
                        // Without a transaction of its own.
                        db.write(move |c| -> Result<(), DbError> {
                            users::upsert_by_openid(
                                c,
                                &o,
                                campus_dal::Role::Customer,
                                campus_dal::time::now(),
                            )?;
                            Ok(())
                        })
                        .await
                    };
                    let visible = user_exists(&db, openid).await;
                    (i, r.is_ok(), visible)
                })
            })
            .collect();
        for t in tasks {
            let (i, ok, visible) = t.await.expect("task");
            let should = !(i % 2 == 0 && i % 3 == 0);
            assert_eq!((ok, visible), (should, should), "write {i}");
        }
        assert!(GROUPS.load(Ordering::Relaxed) > 0, "no writes were grouped");
    }

    /// A panicking write does not take the writer down.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_panicking_write_fails_and_the_writer_goes_on() {
        let (_dir, db) = sqlite_db();
        let tasks: Vec<_> = (0..50)
            .map(|i| {
                let db = db.clone();
                tokio::spawn(async move {
                    db.write_tx(move |c| -> Result<(), DbError> {
                        users::upsert_by_openid(
                            c,
                            &format!("p{i}"),
                            campus_dal::Role::Customer,
                            campus_dal::time::now(),
                        )?;
                        assert!(i != 7, "write 7 panics");
                        Ok(())
                    })
                    .await
                })
            })
            .collect();
        let mut failed = Vec::new();
        for (i, t) in tasks.into_iter().enumerate() {
            if t.await.expect("task").is_err() {
                failed.push(i);
            }
        }
        assert!(failed.contains(&7), "{failed:?}");
        for i in 0..50 {
            let committed = user_exists(&db, format!("p{i}")).await;
            assert_eq!(
                committed,
                !failed.contains(&i),
                "write {i}: answered as {failed:?}"
            );
        }
        db.write(|c| {
            users::upsert_by_openid(
                c,
                "after",
                campus_dal::Role::Customer,
                campus_dal::time::now(),
            )
            .map_err(DbError::from)
        })
        .await
        .expect("the writer still works");
    }
}

/// Every service error carries database failures as `Db(DbError)`; query errors from
/// the dal convert into it here, once for all of them.
macro_rules! from_diesel {
    ($($t:ty),+ $(,)?) => {
        $(impl From<campus_dal::DieselError> for $t {
            fn from(e: campus_dal::DieselError) -> Self {
                Self::Db(DbError::Query(e))
            }
        })+
    };
}

from_diesel!(
    crate::users::UserError,
    crate::orders::OrderError,
    crate::payments::PaymentError,
    crate::refunds::RefundError,
    crate::subscriptions::SubscriptionError,
    crate::official_account::OfficialAccountError,
    crate::stats::StatsError,
    crate::payouts::PayoutError,
    crate::bills::BillError,
    crate::promotions::PromotionError,
    crate::promotions::draws::DrawError,
    crate::subscriptions::mp_outbox::MpOutboxError,
    crate::expenses::ExpenseError,
    crate::uploads::UploadError,
    crate::content_check::ContentCheckError,
    crate::mini_push::MiniPushError,
);
