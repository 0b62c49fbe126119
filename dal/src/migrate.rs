//! Embedded migrations, one folder per backend, kept in lockstep (a test compares them).

use diesel::migration::MigrationSource;
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::conn::DbConn;

const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "mysql")]
const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// Applies pending migrations; returns the versions applied.
pub fn run_pending(conn: &mut DbConn) -> Result<Vec<String>, crate::DalError> {
    let applied = match conn {
        DbConn::Sqlite(c) => c.run_pending_migrations(SQLITE),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(c) => c.run_pending_migrations(MYSQL),
    }
    .map_err(|e| crate::DalError::Migration(e.to_string()))?;
    Ok(applied.iter().map(|v| v.to_string()).collect())
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
pub fn known() -> Result<Vec<String>, crate::DalError> {
    let mut v: Vec<String> = MigrationSource::<diesel::sqlite::Sqlite>::migrations(&SQLITE)
        .map_err(|e| crate::DalError::Migration(e.to_string()))?
        .iter()
        .map(|m| m.name().version().to_string())
        .collect();
    v.sort();
    Ok(v)
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
}
