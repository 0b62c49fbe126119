//! Backups to object storage (`backups/<date>/<time>.jsonl.gz`, format in [`format`]) and
//! restores from them into an empty database of either backend.
//!
//! A backup reads every table in one consistent snapshot while the server keeps writing.
//! A restore reads the whole file first (checksum, counts, every value against the column
//! types), then refuses a database that holds any row, creates the schema, and inserts the
//! tables in foreign-key order in one transaction: a damaged backup or a failed insert
//! leaves the target without a single row.

pub mod format;

use std::sync::Arc;
use std::time::Duration;

use campus_dal::backup::{self as dal, TABLES, TableSpec, Value};
use campus_dal::{Backend, Pools};
use chrono::{NaiveDate, Utc};

use crate::cache::{Cache, CacheError};
use crate::jobs::{Job, every};
use crate::storage::{ObjectInfo, Storage, StorageError};
use crate::telemetry::Metrics;
use format::{FormatError, Header, Summary};

/// Where backups go in the object store.
pub const PREFIX: &str = "backups";

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(transparent)]
    Format(#[from] FormatError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("database unavailable: {0}")]
    Pool(#[from] r2d2::Error),
    #[error("database: {0}")]
    Query(#[from] campus_dal::DieselError),
    #[error(transparent)]
    Dal(#[from] campus_dal::DalError),
    #[error("reading the database: {0}")]
    Dump(#[from] dal::DumpError),
    #[error("no backup under the key {0} (see `campus-errand backup --list`)")]
    NotFound(String),
    #[error(
        "the target database is not empty (table {table} has {rows} rows): \
         a restore goes only into an empty database"
    )]
    NotEmpty { table: String, rows: i64 },
    #[error(
        "the backup's schema (migrations {backup:?}) differs from this binary's ({ours:?}): \
         restore it with the release that made it, then upgrade"
    )]
    Schema {
        backup: Vec<String>,
        ours: Vec<String>,
    },
    #[error("the backup lacks the table {0}: it is incomplete")]
    MissingTable(&'static str),
    #[error("backup task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// Reports how far a long backup or restore got (a progress bar on a terminal).
pub trait Progress: Send + Sync {
    /// A phase starts (`backup`, `verify`, `restore`); `rows` when known.
    fn start(&self, phase: &'static str, rows: Option<u64>);
    fn table(&self, name: &'static str);
    fn rows(&self, n: u64);
    fn finish(&self);
}

/// For the daily job: nobody watches.
pub struct NoProgress;

impl Progress for NoProgress {
    fn start(&self, _: &'static str, _: Option<u64>) {}
    fn table(&self, _: &'static str) {}
    fn rows(&self, _: u64) {}
    fn finish(&self) {}
}

/// Rows between two progress reports.
const PROGRESS_EVERY: u64 = 1000;

/// A backup that was written.
#[derive(Clone, Debug)]
pub struct Written {
    pub key: String,
    pub bytes: usize,
    pub tables: Vec<(String, u64)>,
}

impl Written {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

#[derive(Clone)]
pub struct Backups {
    pools: Pools,
    storage: Storage,
    /// The daily job's claim of the day (several instances, one backup).
    cache: Option<Cache>,
    hour_beijing: u32,
    keep_days: u32,
}

impl Backups {
    pub fn new(pools: Pools, storage: Storage, hour_beijing: u32, keep_days: u32) -> Self {
        Self {
            pools,
            storage,
            cache: None,
            hour_beijing,
            keep_days,
        }
    }

    /// With the cache that lets one instance claim the daily backup.
    pub fn with_cache(mut self, cache: Cache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Writes a backup of every table to the object store.
    pub async fn backup(&self, progress: Arc<dyn Progress>) -> Result<Written, BackupError> {
        let now = Utc::now();
        let key = format!(
            "{PREFIX}/{}/{}.jsonl.gz",
            now.format("%Y-%m-%d"),
            now.format("%Y%m%dT%H%M%S%.3fZ")
        );
        let pools = self.pools.clone();
        let p = progress.clone();
        let (bytes, tables) = tokio::task::spawn_blocking(move || dump(&pools, now, &*p)).await??;
        let size = bytes.len();
        self.storage
            .put(&key, bytes::Bytes::from(bytes), "application/gzip")
            .await?;
        progress.finish();
        Ok(Written {
            key,
            bytes: size,
            tables,
        })
    }

    /// Every backup in the store, oldest first.
    pub async fn list(&self) -> Result<Vec<ObjectInfo>, BackupError> {
        Ok(self.storage.list(PREFIX).await?)
    }

    /// Restores the backup under `key` (or the newest one for `latest`) into the database.
    pub async fn restore(
        &self,
        key: &str,
        progress: Arc<dyn Progress>,
    ) -> Result<Summary, BackupError> {
        let key = if key == "latest" {
            self.list()
                .await?
                .pop()
                .map(|o| o.key)
                .ok_or_else(|| BackupError::NotFound(key.to_string()))?
        } else {
            key.to_string()
        };
        let bytes = self
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| BackupError::NotFound(key.clone()))?;
        let pools = self.pools.clone();
        let summary =
            tokio::task::spawn_blocking(move || restore(&pools, &bytes, &*progress)).await??;
        Ok(summary)
    }

    /// Deletes the backups of days before the last `BACKUP_KEEP_DAYS` (UTC dates, from
    /// the key); returns how many.
    pub async fn prune(&self) -> Result<usize, BackupError> {
        let oldest_kept =
            Utc::now().date_naive() - chrono::Duration::days(i64::from(self.keep_days));
        let mut deleted = 0;
        for o in self.list().await? {
            let Some(day) = backup_day(&o.key) else {
                continue;
            };
            if day < oldest_kept {
                self.storage.delete(&o.key).await?;
                deleted += 1;
            }
        }
        Ok(deleted)
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let b = self.clone();
        vec![every(
            metrics,
            "daily_backup",
            Duration::from_secs(300),
            move || {
                let b = b.clone();
                async move { b.daily_tick().await }
            },
        )]
    }

    /// Once a day at `BACKUP_HOUR_BEIJING`, on one instance (the cache key for the day is
    /// the claim): a backup, then the old ones go.
    async fn daily_tick(&self) -> Result<usize, BackupError> {
        let Some(cache) = &self.cache else {
            return Ok(0);
        };
        let beijing = Utc::now() + chrono::Duration::hours(8);
        if chrono::Timelike::hour(&beijing) != self.hour_beijing {
            return Ok(0);
        }
        let claim = format!("job:backup:{}", beijing.format("%Y-%m-%d"));
        // The claim's value is this instance's own (see `Cache::set_nx_ex`).
        let me = crate::crypto::random_alnum(16);
        if !cache
            .set_nx_ex(&claim, &me, Duration::from_secs(26 * 3600))
            .await?
        {
            return Ok(0);
        }
        match self.backup(Arc::new(NoProgress)).await {
            Ok(w) => {
                tracing::info!(key = %w.key, rows = w.rows(), bytes = w.bytes, "daily backup written");
            }
            Err(e) => {
                // Let the next tick within the hour (any instance) try again.
                let _ = cache.delete_if_equals(&claim, &me).await;
                return Err(e);
            }
        }
        let pruned = self.prune().await?;
        Ok(1 + pruned)
    }
}

/// The UTC day in a key `backups/<YYYY-MM-DD>/...`.
fn backup_day(key: &str) -> Option<NaiveDate> {
    let day = key
        .strip_prefix(PREFIX)?
        .strip_prefix('/')?
        .split('/')
        .next()?;
    NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Sqlite => "sqlite",
        Backend::Mysql => "mysql",
    }
}

/// A compressed backup in memory, and each table's row count.
type Dumped = (Vec<u8>, Vec<(String, u64)>);

/// Reads every table inside one snapshot into a compressed backup in memory.
fn dump(
    pools: &Pools,
    now: chrono::DateTime<Utc>,
    progress: &dyn Progress,
) -> Result<Dumped, BackupError> {
    let mut conn = pools.read.get()?;
    dal::in_snapshot(&mut conn, |c| {
        let migrations = campus_dal::migrate::applied(c)?;
        let counts = TABLES
            .iter()
            .map(|t| (t.count)(c).map(|n| u64::try_from(n).unwrap_or(0)))
            .collect::<Result<Vec<u64>, _>>()?;
        progress.start("backup", Some(counts.iter().sum()));
        let header = Header {
            format: format::FORMAT.into(),
            version: format::VERSION,
            created_at: now,
            backend: backend_name(pools.backend).into(),
            migrations,
        };
        let mut w = format::Writer::new(Vec::new(), &header)?;
        for (spec, rows) in TABLES.iter().zip(counts) {
            progress.table(spec.name);
            w.table(spec, rows)?;
            let mut n = 0u64;
            (spec.dump)(c, &mut |row: Vec<Value>| {
                w.row(&row)?;
                n += 1;
                if n.is_multiple_of(PROGRESS_EVERY) {
                    progress.rows(PROGRESS_EVERY);
                }
                Ok(())
            })?;
            progress.rows(n % PROGRESS_EVERY);
        }
        Ok(w.finish()?)
    })
}

/// Checks the whole backup, then loads it into the (empty) database.
fn restore(pools: &Pools, bytes: &[u8], progress: &dyn Progress) -> Result<Summary, BackupError> {
    // First pass: nothing is written until the file is known to be whole and to fit.
    progress.start("verify", None);
    let summary = format::read(bytes, &mut format::Check)?;
    let ours = campus_dal::migrate::known_versions();
    if summary.header.migrations != ours {
        return Err(BackupError::Schema {
            backup: summary.header.migrations,
            ours,
        });
    }
    if let Some(t) = TABLES
        .iter()
        .find(|t| !summary.tables.iter().any(|(name, _)| name == t.name))
    {
        return Err(BackupError::MissingTable(t.name));
    }

    let mut conn = pools.write.get()?;
    if let Some((table, rows)) = dal::first_nonempty_table(&mut conn)? {
        return Err(BackupError::NotEmpty { table, rows });
    }
    campus_dal::migrate::run_pending(&mut conn)?;

    progress.start("restore", Some(summary.rows()));
    let loaded = campus_dal::transaction(&mut conn, |c| -> Result<Summary, BackupError> {
        let mut loader = Loader {
            conn: c,
            spec: None,
            batch: Vec::new(),
            progress,
        };
        Ok(format::read(bytes, &mut loader)?)
    })?;
    // After the commit: on MySQL this is DDL, which would commit the transaction itself.
    dal::fix_sequences(&mut conn)?;
    progress.finish();
    Ok(loaded)
}

/// Inserts the rows of a backup as it is read, a batch at a time.
struct Loader<'a> {
    conn: &'a mut campus_dal::Conn,
    spec: Option<&'static TableSpec>,
    batch: Vec<Vec<Value>>,
    progress: &'a dyn Progress,
}

impl Loader<'_> {
    fn flush(&mut self) -> Result<(), format::VisitError> {
        let Some(spec) = self.spec else {
            return Ok(());
        };
        if self.batch.is_empty() {
            return Ok(());
        }
        let rows = std::mem::take(&mut self.batch);
        let n = rows.len() as u64;
        (spec.insert)(self.conn, rows).map_err(|e| format!("restoring {}: {e}", spec.name))?;
        self.progress.rows(n);
        Ok(())
    }
}

impl format::Visitor for Loader<'_> {
    fn table(&mut self, spec: &'static TableSpec, _rows: u64) -> Result<(), format::VisitError> {
        self.flush()?;
        self.spec = Some(spec);
        self.progress.table(spec.name);
        Ok(())
    }

    fn row(&mut self, row: Vec<Value>) -> Result<(), format::VisitError> {
        self.batch.push(row);
        if let Some(spec) = self.spec
            && self.batch.len() >= dal::batch_rows((spec.columns)().len())
        {
            self.flush()?;
        }
        Ok(())
    }

    fn end(&mut self) -> Result<(), format::VisitError> {
        self.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_from_keys() {
        assert_eq!(
            backup_day("backups/2026-11-30/20261130T040000.000Z.jsonl.gz"),
            NaiveDate::from_ymd_opt(2026, 11, 30)
        );
        assert_eq!(backup_day("backups/notes.txt"), None);
        assert_eq!(backup_day("images/2026-11-30/x"), None);
    }
}
