//! Embedded migrations, one folder per backend, kept in lockstep (a test compares them).
//!
//! Several instances may start at once against one database, each wanting to migrate:
//! every operation here holds the database's migration lock while it reads what is applied
//! and changes it, so the second instance waits and then finds nothing pending. On MariaDB
//! the lock is `GET_LOCK` on the migrating connection; on SQLite it is the database's single
//! writer, taken up front (`BEGIN IMMEDIATE`) so the list of applied migrations cannot go
//! stale before they run.

#[cfg(feature = "mysql")]
use diesel::sql_types::{Integer, Nullable, Text};
#[cfg(feature = "mysql")]
use diesel::{QueryableByName, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::DalError;
use crate::conn::DbConn;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "mysql")]
const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// The name of MariaDB's user lock that serialises migrations across instances.
#[cfg(feature = "mysql")]
const LOCK_NAME: &str = "campus_migrations";
/// How long an instance waits for another one's migrations (seconds).
#[cfg(feature = "mysql")]
const LOCK_WAIT_SECS: i32 = 300;

/// One migration this binary knows, and whether the database has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationState {
    /// The folder name, e.g. `2026-11-25-000001_init`.
    pub name: String,
    pub applied: bool,
}

fn failed(e: impl std::fmt::Display) -> DalError {
    DalError::Migration(e.to_string())
}

/// Runs `$body` with `$c` the backend's connection and `$src` its migrations, holding the
/// migration lock (see the module's comment).
macro_rules! locked {
    ($conn:expr, |$c:ident, $src:ident| $body:expr) => {
        match $conn {
            DbConn::Sqlite($c) => {
                let $src = SQLITE;
                // Diesel runs each migration in a transaction of its own; inside this one
                // they become savepoints (SQLite's DDL is transactional).
                $c.immediate_transaction(|$c| -> Result<_, DalError> { $body })
            }
            #[cfg(feature = "mysql")]
            DbConn::Mysql($c) => {
                let $src = MYSQL;
                mysql_lock($c)?;
                // The closure keeps the body's `?` and `return` from skipping the unlock.
                #[allow(clippy::redundant_closure_call)]
                let r: Result<_, DalError> = (|| $body)();
                mysql_unlock($c);
                r
            }
        }
    };
}

/// Applies pending migrations; returns the names applied.
pub fn run_pending(conn: &mut DbConn) -> Result<Vec<String>, DalError> {
    let versions = locked!(conn, |c, src| c
        .run_pending_migrations(src)
        .map(owned)
        .map_err(failed))?;
    Ok(names_of(&versions))
}

/// Every migration this binary knows, oldest first, with whether it is applied.
pub fn status(conn: &mut DbConn) -> Result<Vec<MigrationState>, DalError> {
    let applied = locked!(conn, |c, _src| c
        .applied_migrations()
        .map(owned)
        .map_err(failed))?;
    Ok(known()
        .into_iter()
        .map(|(name, version)| MigrationState {
            applied: applied.contains(&version),
            name,
        })
        .collect())
}

/// The names of the migrations this binary knows that the database lacks.
pub fn pending(conn: &mut DbConn) -> Result<Vec<String>, DalError> {
    Ok(status(conn)?
        .into_iter()
        .filter(|m| !m.applied)
        .map(|m| m.name)
        .collect())
}

/// Runs the `down.sql` of the last applied migration; returns its name, or `None` when
/// nothing is applied.
pub fn revert_last(conn: &mut DbConn) -> Result<Option<String>, DalError> {
    let reverted = locked!(conn, |c, src| {
        if c.applied_migrations().map_err(failed)?.is_empty() {
            return Ok(None);
        }
        c.revert_last_migration(src)
            .map(|v| Some(v.to_string()))
            .map_err(failed)
    })?;
    Ok(reverted.map(|v| names_of(std::slice::from_ref(&v)).remove(0)))
}

fn owned(v: Vec<diesel::migration::MigrationVersion<'_>>) -> Vec<String> {
    v.iter().map(|v| v.to_string()).collect()
}

/// (folder name, version) of every migration this binary knows, oldest first. The two
/// backends' folders have the same names (a test checks it).
fn known() -> Vec<(String, String)> {
    use diesel::migration::MigrationSource;
    let mut list: Vec<(String, String)> =
        MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE)
            .map(|ms| {
                ms.iter()
                    .map(|m| (m.name().to_string(), m.name().version().to_string()))
                    .collect()
            })
            .unwrap_or_default();
    list.sort_by(|a, b| a.1.cmp(&b.1));
    list
}

/// Folder names for versions (a version this binary does not know stays as it is).
fn names_of(versions: &[String]) -> Vec<String> {
    let known = known();
    versions
        .iter()
        .map(|v| {
            known
                .iter()
                .find(|(_, kv)| kv == v)
                .map_or_else(|| v.clone(), |(n, _)| n.clone())
        })
        .collect()
}

#[cfg(feature = "mysql")]
fn mysql_lock(c: &mut diesel::mysql::MysqlConnection) -> Result<(), DalError> {
    let got = diesel::sql_query("SELECT GET_LOCK(?, ?) AS got")
        .bind::<Text, _>(LOCK_NAME)
        .bind::<Integer, _>(LOCK_WAIT_SECS)
        .get_result::<LockAnswer>(c)?;
    if got.got == Some(1) {
        Ok(())
    } else {
        Err(DalError::Migration(format!(
            "another instance held the migration lock for {LOCK_WAIT_SECS} s"
        )))
    }
}

#[cfg(feature = "mysql")]
fn mysql_unlock(c: &mut diesel::mysql::MysqlConnection) {
    // A closed connection releases the lock by itself, so a failure here only delays
    // the next instance until this connection goes.
    if let Err(e) = diesel::sql_query("SELECT RELEASE_LOCK(?) AS got")
        .bind::<Text, _>(LOCK_NAME)
        .get_result::<LockAnswer>(c)
    {
        tracing::warn!(error = %e, "could not release the migration lock");
    }
}

#[cfg(feature = "mysql")]
#[derive(QueryableByName)]
struct LockAnswer {
    #[diesel(sql_type = Nullable<Integer>)]
    got: Option<i32>,
}

/// Versions applied to this database, sorted (a backup records them with its rows).
/// A plain SELECT: diesel's `applied_migrations` first creates its table if missing,
/// which is DDL and on MySQL would end a backup's snapshot transaction.
pub fn applied(conn: &mut DbConn) -> Result<Vec<String>, crate::DalError> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Version {
        #[diesel(sql_type = diesel::sql_types::Text)]
        version: String,
    }
    let mut v: Vec<String> = diesel::sql_query("SELECT version FROM __diesel_schema_migrations")
        .load::<Version>(conn)?
        .into_iter()
        .map(|v| v.version)
        .collect();
    v.sort();
    Ok(v)
}

/// Versions this binary carries, sorted; the same list on both backends (lockstep).
pub fn known_versions() -> Vec<String> {
    known().into_iter().map(|(_, version)| version).collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn migration_folders_are_in_lockstep() {
        let list = |dir: &str| {
            let mut v: Vec<String> =
                std::fs::read_dir(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir))
                    .expect("migrations dir")
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect();
            v.sort();
            v
        };
        assert_eq!(list("migrations/sqlite"), list("migrations/mysql"));
    }

    #[test]
    fn every_folder_is_known() {
        let known: Vec<String> = super::known().into_iter().map(|(n, _)| n).collect();
        assert!(!known.is_empty());
        assert!(known.windows(2).all(|w| w[0] < w[1]), "{known:?}");
    }
}
