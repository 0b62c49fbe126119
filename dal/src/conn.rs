//! Connections and pools over SQLite (embedded default) or MySQL/MariaDB, chosen at run
//! time from the URL scheme. MySQL/MariaDB is the `mysql` cargo feature: it links
//! libmysqlclient, which the default build (and `demo`) must not need.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel::connection::SimpleConnection;
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::prelude::*;
use diesel::sqlite::SqliteConnection;

use crate::checkout::Freshness;

/// One connection type for both backends; queries written once against it.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    Sqlite(SqliteConnection),
    #[cfg(feature = "mysql")]
    Mysql(MysqlConnection),
}

pub type Conn = DbConn;
pub type Pool = r2d2::Pool<ConnManager>;
pub type PooledConn = r2d2::PooledConnection<ConnManager>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Mysql,
}

#[derive(Debug, thiserror::Error)]
pub enum UrlError {
    #[error("unsupported database URL scheme (use sqlite:// or mysql://)")]
    Scheme,
    #[error("{MYSQL_NOT_BUILT}")]
    MysqlNotBuilt,
    #[error("cannot create the database directory {0}: {1}")]
    Dir(String, std::io::Error),
}

/// Where a parsed `DATABASE_URL` points.
#[derive(Clone, Debug)]
pub enum Target {
    /// A file path (relative to the working directory, or absolute).
    Sqlite(PathBuf),
    #[cfg(feature = "mysql")]
    Mysql(String),
}

/// What a `mysql://` URL gets from a binary built without the `mysql` feature.
pub const MYSQL_NOT_BUILT: &str = "DATABASE_URL names MySQL/MariaDB, but this binary was built \
     without MySQL/MariaDB support (cargo feature `mysql`); build it with \
     `cargo build --release --features campus-api/mysql` (needs libmariadb-dev), \
     or use a sqlite:// URL";

impl Target {
    /// `sqlite://relative/path.db`, `sqlite:///absolute/path.db`, `mysql://user:pass@host/db`.
    pub fn parse(url: &str) -> Result<Self, UrlError> {
        if let Some(rest) = url.strip_prefix("sqlite://") {
            return Ok(Target::Sqlite(PathBuf::from(rest)));
        }
        if url.starts_with("mysql://") || url.starts_with("mariadb://") {
            #[cfg(feature = "mysql")]
            return Ok(Target::Mysql(url.replacen("mariadb://", "mysql://", 1)));
            #[cfg(not(feature = "mysql"))]
            return Err(UrlError::MysqlNotBuilt);
        }
        Err(UrlError::Scheme)
    }

    pub fn backend(&self) -> Backend {
        match self {
            Target::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "mysql")]
            Target::Mysql(_) => Backend::Mysql,
        }
    }
}

/// r2d2 manager that picks the backend from the URL scheme itself, so a connection
/// failure keeps its real cause (the derived `establish` tries each backend and
/// reports only "invalid connection url").
#[derive(Clone, Debug)]
pub struct ConnManager {
    target: Target,
    /// Told by each MySQL connection when it finds its server gone.
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    freshness: Arc<Freshness>,
}

impl ConnManager {
    pub fn new(target: Target, freshness: Arc<Freshness>) -> Self {
        Self { target, freshness }
    }
}

impl r2d2::ManageConnection for ConnManager {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        match &self.target {
            Target::Sqlite(path) => {
                let path = path.to_str().ok_or_else(|| {
                    diesel::r2d2::Error::ConnectionError(ConnectionError::InvalidConnectionUrl(
                        "database path is not UTF-8".into(),
                    ))
                })?;
                let mut c = SqliteConnection::establish(path)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                // Per connection: these pragmas do not persist in the file. The busy timeout
                // comes first: switching a new file to WAL takes a lock too, and instances
                // starting together on one file would otherwise fail at once on it.
                c.batch_execute(
                    "PRAGMA busy_timeout = 5000; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;",
                )
                .map_err(diesel::r2d2::Error::QueryError)?;
                Ok(DbConn::Sqlite(c))
            }
            #[cfg(feature = "mysql")]
            Target::Mysql(url) => {
                let mut c = MysqlConnection::establish(url)
                    .map_err(diesel::r2d2::Error::ConnectionError)?;
                c.batch_execute("SET time_zone = '+00:00'")
                    .map_err(diesel::r2d2::Error::QueryError)?;
                c.set_instrumentation(self.freshness.watch());
                Ok(DbConn::Mysql(c))
            }
        }
    }

    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        crate::health::ping(conn).map_err(diesel::r2d2::Error::QueryError)
    }

    /// As diesel's own manager: a connection left inside a transaction (a panic mid-write)
    /// or with a failed transaction manager is closed instead of going back to the pool.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        use diesel::r2d2::R2D2Connection;
        std::thread::panicking()
            || match conn {
                DbConn::Sqlite(c) => c.is_broken(),
                #[cfg(feature = "mysql")]
                DbConn::Mysql(c) => c.is_broken(),
            }
    }
}

/// The longest wait for a pooled connection (and for the first ones at start).
pub const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(5);

/// The pools the services use. SQLite allows one writer at a time; giving writes one
/// dedicated connection avoids lock-retry sleeps (busy_timeout waits, which put the p99 of
/// writes in the 100 ms range with several writers), while reads use the rest. On MySQL
/// both are the same pool.
#[derive(Clone)]
pub struct Pools {
    pub read: Pool,
    pub write: Pool,
    pub backend: Backend,
    /// Checkouts for units of work go through it (`checkout`).
    pub freshness: Arc<Freshness>,
}

impl Pools {
    pub fn connect(url: &str, size: u32) -> Result<Self, crate::DalError> {
        let target = Target::parse(url)?;
        if let Target::Sqlite(path) = &target
            && let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| UrlError::Dir(dir.display().to_string(), e))?;
        }
        let freshness = Freshness::new();
        let manager = ConnManager::new(target.clone(), Arc::clone(&freshness));
        let build = |max: u32| {
            r2d2::Pool::builder()
                .max_size(max.max(1))
                .min_idle(Some(1))
                // Units of work test a MySQL connection only when it may have gone stale
                // (`checkout`); an embedded SQLite connection cannot go away.
                .test_on_check_out(false)
                // How long a unit of work waits for a connection: while the database is
                // down every request waits this long before its 503. Not shorter: a
                // stampede on one row (a thousand coupon claims) legitimately queues for
                // connections for seconds.
                .connection_timeout(CHECKOUT_TIMEOUT)
                .build(manager.clone())
        };
        match target.backend() {
            Backend::Sqlite => {
                // The writer first: it switches the file to WAL before readers open it.
                let write = build(1)?;
                let read = build(size)?;
                Ok(Self {
                    read,
                    write,
                    backend: Backend::Sqlite,
                    freshness,
                })
            }
            Backend::Mysql => {
                let pool = build(size)?;
                Ok(Self {
                    read: pool.clone(),
                    write: pool,
                    backend: Backend::Mysql,
                    freshness,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_urls() {
        assert!(matches!(
            Target::parse("sqlite:///abs/x.db"),
            Ok(Target::Sqlite(p)) if p == std::path::Path::new("/abs/x.db")
        ));
        assert!(matches!(
            Target::parse("postgres://h/db"),
            Err(UrlError::Scheme)
        ));
    }

    /// Without the feature a mysql:// URL is refused before any connection is tried, with
    /// a message naming the feature and the build command.
    #[cfg(not(feature = "mysql"))]
    #[test]
    fn mysql_url_without_the_feature_names_it() {
        for url in ["mysql://root@127.0.0.1/x", "mariadb://root@127.0.0.1/x"] {
            let e = Target::parse(url).expect_err("refused");
            let msg = e.to_string();
            assert!(msg.contains("`mysql`"), "{msg}");
            assert!(msg.contains("--features campus-api/mysql"), "{msg}");
        }
        let e = Pools::connect("mysql://root@127.0.0.1/x", 1)
            .err()
            .expect("refused");
        assert!(e.to_string().contains("campus-api/mysql"), "{e}");
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn mysql_urls() {
        assert!(matches!(
            Target::parse("mariadb://u:p@h/db"),
            Ok(Target::Mysql(u)) if u == "mysql://u:p@h/db"
        ));
    }
}
