//! Taking a connection for one unit of work, tested only when it may have gone stale.
//!
//! A MySQL connection can die while it sits in the pool (the server's `wait_timeout`, a
//! restart, a network cut). r2d2's checkout test pings every connection before every use:
//! one round trip per unit of work, as many as a primary-key read's. Here the ping happens
//! only when it can matter: the connection has not been taken for [`TEST_WHEN_IDLE`], or a
//! query on any connection of the pool failed with a lost connection since it was last
//! taken (a dead server kills every connection at once, so one such failure makes the whole
//! pool suspect; each connection reports its failures through diesel's instrumentation). A
//! connection that fails its ping is closed and another taken. SQLite connections are
//! in-process and never tested.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use diesel::connection::{Instrumentation, InstrumentationEvent};

use crate::conn::{DbConn, Pool, PooledConn};

/// Not taken for longer than this, a connection is tested before use.
pub const TEST_WHEN_IDLE: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum CheckoutError {
    #[error("database pool: {0}")]
    Pool(#[from] r2d2::Error),
    /// Every connection tried failed its test: the server is unreachable or restarting.
    #[error(transparent)]
    Dead(diesel::result::Error),
}

/// What a pool's connections share about their health.
#[derive(Debug)]
pub struct Freshness {
    /// Time base for the atomic below.
    start: Instant,
    /// Nanoseconds after `start` of the last lost connection on the pool.
    last_loss: AtomicU64,
}

/// Kept on each pooled connection: when it was last taken, known good.
#[derive(Clone, Copy)]
struct Taken(Instant);

impl Freshness {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            start: Instant::now(),
            last_loss: AtomicU64::new(0),
        })
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.start).as_nanos()).unwrap_or(u64::MAX)
    }

    fn lost_now(&self) {
        self.last_loss
            .fetch_max(self.nanos(Instant::now()), Ordering::Relaxed);
    }

    /// Whether `conn` was taken a moment ago and no connection was lost since.
    fn fresh(&self, conn: &PooledConn) -> bool {
        r2d2::PooledConnection::extensions(conn)
            .get::<Taken>()
            .is_some_and(|t| {
                t.0.elapsed() < TEST_WHEN_IDLE
                    && self.nanos(t.0) > self.last_loss.load(Ordering::Relaxed)
            })
    }

    /// A connection from `pool`, tested first unless it is fresh.
    pub fn checkout(&self, pool: &Pool) -> Result<PooledConn, CheckoutError> {
        // A pool of n connections holds at most n dead ones; the n+1-th is newly opened.
        let mut last_error = None;
        for _ in 0..=pool.max_size() {
            let mut conn = pool.get()?;
            if !is_mysql(&conn) {
                return Ok(conn);
            }
            let taken = Instant::now();
            let good = self.fresh(&conn)
                || {
                    match crate::health::ping(&mut conn) {
                        Ok(()) => true,
                        Err(e) => {
                            tracing::warn!(error = %e, "pooled database connection failed its test; closed");
                            close(&mut conn);
                            last_error = Some(e);
                            false
                        }
                    }
                };
            if good {
                r2d2::PooledConnection::extensions_mut(&mut conn).insert(Taken(taken));
                return Ok(conn);
            }
        }
        Err(CheckoutError::Dead(
            last_error.unwrap_or(diesel::result::Error::BrokenTransactionManager),
        ))
    }

    /// The instrumentation each MySQL connection reports lost connections through.
    pub fn watch(self: &Arc<Self>) -> impl Instrumentation {
        let me = Arc::clone(self);
        move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::FinishQuery { error: Some(e), .. } = event
                && crate::is_connection_lost(e)
            {
                me.lost_now();
            }
        }
    }
}

fn is_mysql(conn: &DbConn) -> bool {
    match conn {
        DbConn::Sqlite(_) => false,
        #[cfg(feature = "mysql")]
        DbConn::Mysql(_) => true,
    }
}

/// Marks a connection broken, so the pool closes it instead of taking it back.
fn close(conn: &mut PooledConn) {
    match &mut **conn {
        DbConn::Sqlite(_) => {}
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => crate::mysql_tx::mark_broken(c),
    }
}
