//! Backups at the data layer: every table's rows as plain [`Value`]s, read inside one
//! consistent snapshot ([`in_snapshot`]) and written back in foreign-key order with their
//! ids ([`Table::insert`]), plus the catalog queries a restore needs (is the database
//! empty, which tables exist, sequences after explicit ids).
//!
//! The per-table code is generated from `schema.rs` (column names and SQL types come from
//! each `table!`), so covering a new table is one line in [`TABLES`]; a test fails when the
//! migrated database holds a table that is not listed there.

use chrono::NaiveDateTime;
use diesel::connection::{DefaultLoadingMode, SimpleConnection};
use diesel::deserialize::{self, FromSql};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, IsNull, Output, ToSql};
use diesel::sql_types::{BigInt, Bool, Integer, Nullable, SingleValue, SqlType, Text, Timestamp};
use diesel::sqlite::Sqlite;

#[cfg(feature = "mysql")]
use diesel::mysql::Mysql;

use crate::conn::{Backend, Conn, DbConn};

/// One column value, whatever the table. Timestamps keep their type (not text) so that
/// each backend stores them in its own format.
#[derive(Clone, Debug, PartialEq, AsExpression, diesel::deserialize::FromSqlRow)]
#[diesel(sql_type = BigInt)]
#[diesel(sql_type = Integer)]
#[diesel(sql_type = Text)]
#[diesel(sql_type = Timestamp)]
#[diesel(sql_type = Bool)]
pub enum Value {
    Null,
    Int(i64),
    Bool(bool),
    Text(String),
    Time(NaiveDateTime),
}

/// The SQL types the tables use. A table with another type does not compile in
/// [`TABLES`]: add the type here (and to `Value`) first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    BigInt,
    Integer,
    Text,
    Timestamp,
    Bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ColumnType {
    pub kind: Kind,
    pub nullable: bool,
}

/// Maps a diesel SQL type to its [`ColumnType`].
pub trait SqlKind {
    const TYPE: ColumnType;
}

macro_rules! sql_kind {
    ($($st:ident),+) => {$(
        impl SqlKind for $st {
            const TYPE: ColumnType = ColumnType { kind: Kind::$st, nullable: false };
        }
    )+};
}
sql_kind!(BigInt, Integer, Text, Timestamp, Bool);

impl<T: SqlKind> SqlKind for Nullable<T> {
    const TYPE: ColumnType = ColumnType {
        kind: T::TYPE.kind,
        nullable: true,
    };
}

// Reading: each SQL type into its variant, NULL into `Value::Null` for nullable columns.
macro_rules! from_sql {
    ($db:ty: $($st:ident => $rust:ty, $variant:expr;)+) => {$(
        impl FromSql<$st, $db> for Value {
            fn from_sql(b: <$db as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                <$rust as FromSql<$st, $db>>::from_sql(b).map($variant)
            }
        }
        impl FromSql<Nullable<$st>, $db> for Value {
            fn from_sql(b: <$db as diesel::backend::Backend>::RawValue<'_>) -> deserialize::Result<Self> {
                <Value as FromSql<$st, $db>>::from_sql(b)
            }
            fn from_nullable_sql(
                b: Option<<$db as diesel::backend::Backend>::RawValue<'_>>,
            ) -> deserialize::Result<Self> {
                match b {
                    Some(b) => <Value as FromSql<$st, $db>>::from_sql(b),
                    None => Ok(Value::Null),
                }
            }
        }
    )+};
}

from_sql!(Sqlite:
    BigInt => i64, Value::Int;
    Integer => i32, |v| Value::Int(i64::from(v));
    Text => String, Value::Text;
    Timestamp => NaiveDateTime, Value::Time;
    Bool => bool, Value::Bool;
);
#[cfg(feature = "mysql")]
from_sql!(Mysql:
    BigInt => i64, Value::Int;
    Integer => i32, |v| Value::Int(i64::from(v));
    Text => String, Value::Text;
    Timestamp => NaiveDateTime, Value::Time;
    Bool => bool, Value::Bool;
);

fn mismatch(expected: &str, v: &Value) -> Box<dyn std::error::Error + Send + Sync> {
    format!("a {expected} column cannot hold {v:?}").into()
}

fn int32(v: i64) -> Result<i32, Box<dyn std::error::Error + Send + Sync>> {
    i32::try_from(v).map_err(|_| format!("{v} does not fit a 32-bit INTEGER column").into())
}

// Writing: the variant must match the column's type (a restore checks every value
// against the column types before it writes, so a mismatch here is a bug, not bad input).
// NULL is `IsNull::Yes`; the database refuses it for a NOT NULL column.
impl ToSql<BigInt, Sqlite> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => <i64 as ToSql<BigInt, Sqlite>>::to_sql(v, out),
            v => Err(mismatch("BIGINT", v)),
        }
    }
}
impl ToSql<Integer, Sqlite> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => {
                out.set_value(int32(*v)?);
                Ok(IsNull::No)
            }
            v => Err(mismatch("INTEGER", v)),
        }
    }
}
impl ToSql<Text, Sqlite> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => <str as ToSql<Text, Sqlite>>::to_sql(s.as_str(), out),
            v => Err(mismatch("TEXT", v)),
        }
    }
}
impl ToSql<Timestamp, Sqlite> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Time(t) => <NaiveDateTime as ToSql<Timestamp, Sqlite>>::to_sql(t, out),
            v => Err(mismatch("TIMESTAMP", v)),
        }
    }
}
impl ToSql<Bool, Sqlite> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Sqlite>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) => <bool as ToSql<Bool, Sqlite>>::to_sql(b, out),
            v => Err(mismatch("BOOL", v)),
        }
    }
}

#[cfg(feature = "mysql")]
impl ToSql<BigInt, Mysql> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => <i64 as ToSql<BigInt, Mysql>>::to_sql(v, out),
            v => Err(mismatch("BIGINT", v)),
        }
    }
}
#[cfg(feature = "mysql")]
impl ToSql<Integer, Mysql> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Int(v) => {
                let v = int32(*v)?;
                <i32 as ToSql<Integer, Mysql>>::to_sql(&v, &mut out.reborrow())
            }
            v => Err(mismatch("INTEGER", v)),
        }
    }
}
#[cfg(feature = "mysql")]
impl ToSql<Text, Mysql> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Text(s) => <str as ToSql<Text, Mysql>>::to_sql(s.as_str(), out),
            v => Err(mismatch("TEXT", v)),
        }
    }
}
#[cfg(feature = "mysql")]
impl ToSql<Timestamp, Mysql> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Time(t) => <NaiveDateTime as ToSql<Timestamp, Mysql>>::to_sql(t, out),
            v => Err(mismatch("TIMESTAMP", v)),
        }
    }
}
#[cfg(feature = "mysql")]
impl ToSql<Bool, Mysql> for Value {
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, Mysql>) -> serialize::Result {
        match self {
            Value::Null => Ok(IsNull::Yes),
            Value::Bool(b) => <bool as ToSql<Bool, Mysql>>::to_sql(b, out),
            v => Err(mismatch("BOOL", v)),
        }
    }
}

/// A table's SQL row type (`table::SqlType`, a tuple) as a tuple of [`Value`]s.
pub trait SqlRow {
    type Row;
    fn types() -> Vec<ColumnType>;
    fn values(row: Self::Row) -> Vec<Value>;
}

/// A table's `all_columns` tuple: the names, and one row of values as `column = value`s.
pub trait ColumnList: Sized {
    type Assign;
    fn names() -> Vec<&'static str>;
    /// `row` has one value per column (checked by the caller).
    fn assign(self, row: Vec<Value>) -> Self::Assign;
}

macro_rules! value_for {
    ($t:ident) => {
        Value
    };
}

macro_rules! tuple_impls {
    ($($t:ident $i:tt)+) => {
        impl<$($t: SqlKind),+> SqlRow for ($($t,)+) {
            type Row = ($(value_for!($t),)+);
            fn types() -> Vec<ColumnType> {
                vec![$(<$t as SqlKind>::TYPE),+]
            }
            fn values(row: Self::Row) -> Vec<Value> {
                vec![$(row.$i),+]
            }
        }

        impl<$($t),+> ColumnList for ($($t,)+)
        where
            $($t: Column + ExpressionMethods,
              <$t as Expression>::SqlType: SqlType + SingleValue,
              Value: AsExpression<<$t as Expression>::SqlType>,)+
        {
            type Assign = ($(diesel::dsl::Eq<$t, Value>,)+);
            fn names() -> Vec<&'static str> {
                vec![$(<$t as Column>::NAME),+]
            }
            fn assign(self, row: Vec<Value>) -> Self::Assign {
                let mut it = row.into_iter();
                ($(self.$i.eq(it.next().unwrap_or(Value::Null)),)+)
            }
        }
    };
}

macro_rules! all_tuples {
    ([$($done:tt)*] []) => {};
    ([$($done:tt)*] [$t:ident $i:tt $($rest:tt)*]) => {
        tuple_impls!($($done)* $t $i);
        all_tuples!([$($done)* $t $i] [$($rest)*]);
    };
}

all_tuples!([] [
    T0 0 T1 1 T2 2 T3 3 T4 4 T5 5 T6 6 T7 7 T8 8 T9 9 T10 10 T11 11 T12 12 T13 13 T14 14 T15 15
    T16 16 T17 17 T18 18 T19 19 T20 20 T21 21 T22 22 T23 23 T24 24 T25 25 T26 26 T27 27 T28 28
    T29 29 T30 30 T31 31 T32 32 T33 33 T34 34 T35 35 T36 36 T37 37 T38 38 T39 39
]);

/// What receives the rows of a table, one at a time, in primary-key order.
pub type RowSink<'a> = dyn FnMut(Vec<Value>) -> Result<(), SinkError> + 'a;
pub type SinkError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error(transparent)]
    Query(#[from] diesel::result::Error),
    #[error("{0}")]
    Sink(SinkError),
}

/// One table of the backup: its name, columns and the code reading and writing its rows.
pub struct TableSpec {
    pub name: &'static str,
    /// Column names in `schema.rs` order, which is the order of every row's values.
    pub columns: fn() -> Vec<&'static str>,
    pub types: fn() -> Vec<ColumnType>,
    pub count: fn(&mut Conn) -> QueryResult<i64>,
    /// Streams every row, in primary-key order, to the sink; returns how many.
    pub dump: fn(&mut Conn, &mut RowSink<'_>) -> Result<u64, DumpError>,
    /// Inserts rows with their ids in as few statements as the bind limits allow.
    pub insert: fn(&mut Conn, Vec<Vec<Value>>) -> QueryResult<usize>,
}

impl std::fmt::Debug for TableSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name)
    }
}

/// Bind parameters per INSERT: under SQLite's 32766 and MySQL's 65535.
const MAX_BINDS: usize = 16_000;

/// Rows per INSERT for a table of `columns` columns.
pub fn batch_rows(columns: usize) -> usize {
    (MAX_BINDS / columns.max(1)).clamp(1, 1000)
}

/// The same code for each backend's own connection: `Value` reads from each backend's
/// types (the MultiConnection enum has no such row type).
macro_rules! dump_rows {
    ($t:ident, $c:expr, $sink:expr) => {{
        let rows = $t::table
            .select($t::all_columns)
            .order($t::table.primary_key())
            .load_iter::<<$t::SqlType as SqlRow>::Row, DefaultLoadingMode>($c)?;
        let mut n = 0u64;
        for row in rows {
            $sink(<$t::SqlType as SqlRow>::values(row?)).map_err(DumpError::Sink)?;
            n += 1;
        }
        Ok(n)
    }};
}

macro_rules! backup_tables {
    ($($table:ident),+ $(,)?) => {
        mod per_table {$(
            pub mod $table {
                use diesel::prelude::*;
                use super::super::*;
                use crate::schema::$table as t;

                pub fn columns() -> Vec<&'static str> {
                    <<t::table as diesel::Table>::AllColumns as ColumnList>::names()
                }

                pub fn types() -> Vec<ColumnType> {
                    <t::SqlType as SqlRow>::types()
                }

                pub fn count(conn: &mut Conn) -> QueryResult<i64> {
                    t::table.count().get_result(conn)
                }

                pub fn dump(conn: &mut Conn, sink: &mut RowSink<'_>) -> Result<u64, DumpError> {
                    match conn {
                        DbConn::Sqlite(c) => dump_rows!(t, c, sink),
                        #[cfg(feature = "mysql")]
                        DbConn::Mysql(c) => dump_rows!(t, c, sink),
                    }
                }

                pub fn insert(conn: &mut Conn, rows: Vec<Vec<Value>>) -> QueryResult<usize> {
                    let per = batch_rows(columns().len());
                    let mut rows = rows.into_iter().peekable();
                    let mut n = 0;
                    while rows.peek().is_some() {
                        let batch: Vec<_> = rows.by_ref().take(per).map(|r| t::all_columns.assign(r)).collect();
                        // Multi-row INSERT is not available through the MultiConnection enum.
                        n += match &mut *conn {
                            DbConn::Sqlite(c) => diesel::insert_into(t::table).values(batch).execute(c)?,
                            #[cfg(feature = "mysql")]
                            DbConn::Mysql(c) => diesel::insert_into(t::table).values(batch).execute(c)?,
                        };
                    }
                    Ok(n)
                }
            }
        )+}

        /// Every table a backup holds, in foreign-key order: a table comes after every
        /// table it references, so a restore can insert them in this order.
        pub static TABLES: &[TableSpec] = &[$(
            TableSpec {
                name: stringify!($table),
                columns: per_table::$table::columns,
                types: per_table::$table::types,
                count: per_table::$table::count,
                dump: per_table::$table::dump,
                insert: per_table::$table::insert,
            },
        )+];
    };
}

// One line per table, in foreign-key order (see `TABLES`). The test
// `every_table_is_backed_up` fails when a migration adds a table missing here.
backup_tables! {
    users,
    bind_codes,
    idempotency_keys,
    orders,
    refunds,
    payment_events,
    pay_notifications,
    subscription_credits,
    message_log,
    earnings,
    withdrawals,
    reconciliations,
    coupons,
    coupon_stock,
    user_coupons,
    draws,
    draw_prizes,
    draw_participants,
    draw_winners,
    expense_groups,
    group_members,
    reimbursements,
    expenses,
    mp_messages,
    uploads,
    content_checks,
}

/// The table of that name in [`TABLES`].
pub fn table(name: &str) -> Option<&'static TableSpec> {
    TABLES.iter().find(|t| t.name == name)
}

/// Runs `f` inside one read-only snapshot of the whole database, so that every table is
/// read as of the same moment while writes go on: on MySQL/MariaDB a single
/// REPEATABLE READ transaction started WITH CONSISTENT SNAPSHOT; on SQLite one read
/// transaction on this connection (in WAL mode its first read fixes the snapshot).
pub fn in_snapshot<T, E, F>(conn: &mut Conn, f: F) -> Result<T, E>
where
    F: FnOnce(&mut Conn) -> Result<T, E>,
    E: From<diesel::result::Error>,
{
    match conn {
        DbConn::Sqlite(_) => conn.transaction(f),
        #[cfg(feature = "mysql")]
        DbConn::Mysql(_) => {
            // Diesel's transaction builder cannot ask for a consistent snapshot, so the
            // statements are issued here; the transaction only reads, and ends with ROLLBACK.
            conn.batch_execute(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ; \
                 START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY",
            )?;
            let r = f(conn);
            let end = conn.batch_execute("ROLLBACK");
            let t = r?;
            end?;
            Ok(t)
        }
    }
}

#[derive(QueryableByName)]
struct Name {
    #[diesel(sql_type = Text)]
    name: String,
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Tables the database holds (without diesel's migration table and SQLite's own).
pub fn database_tables(conn: &mut Conn) -> QueryResult<Vec<String>> {
    let sql = match backend(conn) {
        Backend::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' \
             AND name <> '__diesel_schema_migrations' ORDER BY name"
        }
        Backend::Mysql => {
            "SELECT CAST(table_name AS CHAR) AS name FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_type = 'BASE TABLE' \
             AND table_name <> '__diesel_schema_migrations' ORDER BY table_name"
        }
    };
    Ok(diesel::sql_query(sql)
        .load::<Name>(conn)?
        .into_iter()
        .map(|n| n.name)
        .collect())
}

/// The first table (from [`database_tables`]) that holds a row, with its row count.
pub fn first_nonempty_table(conn: &mut Conn) -> QueryResult<Option<(String, i64)>> {
    for name in database_tables(conn)? {
        let sql = format!("SELECT COUNT(*) AS n FROM {}", quote(conn, &name));
        let n = diesel::sql_query(sql).get_result::<Count>(conn)?.n;
        if n > 0 {
            return Ok(Some((name, n)));
        }
    }
    Ok(None)
}

/// Whether `__diesel_schema_migrations` exists, i.e. the schema was ever created.
pub fn has_schema(conn: &mut Conn) -> QueryResult<bool> {
    let sql = match backend(conn) {
        Backend::Sqlite => {
            "SELECT COUNT(*) AS n FROM sqlite_master \
             WHERE type = 'table' AND name = '__diesel_schema_migrations'"
        }
        Backend::Mysql => {
            "SELECT COUNT(*) AS n FROM information_schema.tables \
             WHERE table_schema = DATABASE() AND table_name = '__diesel_schema_migrations'"
        }
    };
    Ok(diesel::sql_query(sql).get_result::<Count>(conn)?.n > 0)
}

/// After rows were inserted with their ids: the next generated id of every table with an
/// auto-increment key comes after the largest restored one.
pub fn fix_sequences(conn: &mut Conn) -> QueryResult<()> {
    match backend(conn) {
        Backend::Sqlite => {
            // SQLite raises `sqlite_sequence` on explicit ids already; this makes sure of
            // it for every AUTOINCREMENT table, whatever wrote the rows.
            let names = diesel::sql_query("SELECT name FROM sqlite_sequence").load::<Name>(conn)?;
            for Name { name } in names {
                let q = quote(conn, &name);
                diesel::sql_query(format!(
                    "UPDATE sqlite_sequence SET seq = max(seq, \
                     (SELECT ifnull(max(rowid), 0) FROM {q})) WHERE name = ?"
                ))
                .bind::<Text, _>(&name)
                .execute(conn)?;
            }
            Ok(())
        }
        Backend::Mysql => {
            #[derive(QueryableByName)]
            struct AutoColumn {
                #[diesel(sql_type = Text)]
                name: String,
                #[diesel(sql_type = Text)]
                col: String,
            }
            let cols = diesel::sql_query(
                "SELECT CAST(table_name AS CHAR) AS name, CAST(column_name AS CHAR) AS col \
                 FROM information_schema.columns \
                 WHERE table_schema = DATABASE() AND extra LIKE '%auto_increment%'",
            )
            .load::<AutoColumn>(conn)?;
            for AutoColumn { name, col } in cols {
                let (t, c) = (quote(conn, &name), quote(conn, &col));
                let next = diesel::sql_query(format!(
                    "SELECT CAST(COALESCE(MAX({c}), 0) + 1 AS SIGNED) AS n FROM {t}"
                ))
                .get_result::<Count>(conn)?
                .n;
                // DDL cannot take a bind parameter; `next` is a number we computed.
                conn.batch_execute(&format!("ALTER TABLE {t} AUTO_INCREMENT = {next}"))?;
            }
            Ok(())
        }
    }
}

fn backend(conn: &Conn) -> Backend {
    match conn {
        DbConn::Sqlite(_) => Backend::Sqlite,
        #[cfg(feature = "mysql")]
        DbConn::Mysql(_) => Backend::Mysql,
    }
}

/// An identifier from the catalog, quoted for this backend.
fn quote(conn: &Conn, ident: &str) -> String {
    match backend(conn) {
        Backend::Sqlite => format!("\"{}\"", ident.replace('"', "\"\"")),
        Backend::Mysql => format!("`{}`", ident.replace('`', "``")),
    }
}

/// Foreign keys of a SQLite table: the tables it references (for the order test).
pub fn sqlite_references(conn: &mut Conn, table: &str) -> QueryResult<Vec<String>> {
    #[derive(QueryableByName)]
    struct Fk {
        #[diesel(sql_type = Text, column_name = "table")]
        target: String,
    }
    Ok(
        diesel::sql_query("SELECT \"table\" FROM pragma_foreign_key_list(?)")
            .bind::<Text, _>(table)
            .load::<Fk>(conn)?
            .into_iter()
            .map(|f| f.target)
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sqlite() -> (tempfile::TempDir, crate::Pools) {
        let dir = tempfile::tempdir().expect("tempdir");
        let url = format!("sqlite://{}", dir.path().join("b.db").display());
        let pools = crate::Pools::connect(&url, 1).expect("pools");
        let mut c = pools.write.get().expect("conn");
        crate::migrate::run_pending(&mut c).expect("migrate");
        (dir, pools)
    }

    /// Other changes add tables; a table the backup does not list would silently be
    /// missing from every backup. Lists both sides so the failure says which.
    #[test]
    fn every_table_is_backed_up() {
        let (_dir, pools) = sqlite();
        let mut c = pools.write.get().expect("conn");
        let mut listed: Vec<&str> = TABLES.iter().map(|t| t.name).collect();
        listed.sort_unstable();
        let in_db = database_tables(&mut c).expect("tables");
        assert_eq!(
            in_db, listed,
            "tables in the migrated database vs. campus_dal::backup::TABLES: \
             add the missing table to `backup_tables!` in dal/src/backup.rs"
        );
    }

    /// A restore inserts in `TABLES` order with foreign keys on.
    #[test]
    fn tables_are_in_foreign_key_order() {
        let (_dir, pools) = sqlite();
        let mut c = pools.write.get().expect("conn");
        for (i, t) in TABLES.iter().enumerate() {
            for target in sqlite_references(&mut c, t.name).expect("fks") {
                let before = TABLES[..i].iter().any(|e| e.name == target);
                assert!(
                    before || target == t.name,
                    "{} references {target}, which must come before it in TABLES",
                    t.name
                );
            }
        }
    }

    #[test]
    fn columns_and_types_line_up() {
        for t in TABLES {
            assert_eq!((t.columns)().len(), (t.types)().len(), "{}", t.name);
        }
        assert!(batch_rows(29) * 29 <= MAX_BINDS);
    }
}
