//! Runs data-layer functions off the async executor: the pool checkout happens inside
//! the blocking closure, because checkout itself can block.

use campus_dal::{Conn, Pools};

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("database unavailable: {0}")]
    Unavailable(#[from] r2d2::Error),
    #[error(transparent)]
    Query(#[from] campus_dal::DieselError),
    #[error("database task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

#[derive(Clone)]
pub struct Db {
    pools: Pools,
}

impl Db {
    pub fn new(pools: Pools) -> Self {
        Self { pools }
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
        run(self.pools.read.clone(), f).await
    }

    /// A unit of work that writes; on SQLite it goes to the single writer connection.
    pub async fn write<T, E, F>(&self, f: F) -> Result<T, E>
    where
        F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
        T: Send + 'static,
        E: From<DbError> + Send + 'static,
    {
        run(self.pools.write.clone(), f).await
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

async fn run<T, E, F>(pool: campus_dal::Pool, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E> + Send + 'static,
    T: Send + 'static,
    E: From<DbError> + Send + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut conn = pool.get().map_err(DbError::from)?;
        f(&mut conn)
    })
    .await
    .map_err(DbError::from)?
}

/// Opens the pools for `url` (blocking: call from a blocking context).
pub fn connect_pools(url: &str, size: u32) -> Result<Pools, campus_dal::DalError> {
    Pools::connect(url, size)
}

/// Applies pending migrations on the writer (blocking); returns the versions applied.
pub fn migrate(pools: &Pools) -> Result<Vec<String>, campus_dal::DalError> {
    let mut conn = pools.write.get()?;
    campus_dal::migrate::run_pending(&mut conn)
}
