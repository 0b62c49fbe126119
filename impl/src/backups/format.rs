//! The backup file: gzip'd JSON lines.
//!
//! ```text
//! {"format":"campus-errand-backup","version":1,"created_at":"…","backend":"sqlite","migrations":[…]}
//! {"table":"users","columns":["id","openid",…],"rows":2}
//! [1,"o-abc",…]
//! [2,"o-def",…]
//! {"table":"bind_codes","columns":[…],"rows":0}
//! …
//! {"trailer":{"tables":{"users":2,…},"rows":2,"sha256":"<hex of every line above, newlines included>"}}
//! ```
//!
//! Everything a reader needs to refuse a damaged file is in it: gzip's own CRC, a row
//! count per table (in its header and again in the trailer), and a SHA-256 over every
//! line before the trailer. A file cut short lacks the trailer; a changed byte breaks the
//! gzip stream, a JSON line or the checksum. [`read`] checks all of it, and the restore
//! reads the whole file once before it writes anything.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};

use campus_dal::backup::{ColumnType, Kind, TableSpec, Value};
use chrono::NaiveDateTime;
use flate2::Compression;
use flate2::read::GzDecoder;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const FORMAT: &str = "campus-errand-backup";
pub const VERSION: u32 = 1;

/// Timestamps as text: microseconds always, which both backends keep exactly.
const TIME_FORMAT: &str = "%Y-%m-%d %H:%M:%S%.6f";
const TIME_PARSE: &str = "%Y-%m-%d %H:%M:%S%.f";

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("not a readable gzip stream ({0}): the backup is damaged or cut short")]
    Gzip(std::io::Error),
    #[error("line {line}: {what}: the backup is damaged")]
    Line { line: u64, what: String },
    #[error("the backup ends before its trailer: it was cut short")]
    Truncated,
    #[error("checksum mismatch (SHA-256 {actual}, trailer says {expected}): the backup is damaged")]
    Checksum { expected: String, actual: String },
    #[error("{0}")]
    Invalid(String),
    /// The visitor failed (e.g. an insert into the target database).
    #[error("{0}")]
    Target(VisitError),
    #[error("writing the backup: {0}")]
    Write(std::io::Error),
}

/// The first line.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Header {
    pub format: String,
    pub version: u32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// `sqlite` or `mysql`: where the rows came from.
    pub backend: String,
    /// Migration versions of the source database, sorted.
    pub migrations: Vec<String>,
}

#[derive(Debug, Serialize, Deserialize)]
struct TableLine {
    table: String,
    columns: Vec<String>,
    rows: u64,
}

#[derive(Debug, Serialize, Deserialize)]
struct TrailerLine {
    trailer: Trailer,
}

#[derive(Debug, Serialize, Deserialize)]
struct Trailer {
    tables: BTreeMap<String, u64>,
    rows: u64,
    sha256: String,
}

/// What a backup holds: its header and each table's row count, in file order.
#[derive(Clone, Debug)]
pub struct Summary {
    pub header: Header,
    pub tables: Vec<(String, u64)>,
}

impl Summary {
    pub fn rows(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// Writes a backup into a gzip stream, line by line.
pub struct Writer<W: Write> {
    gz: GzEncoder<W>,
    sha: Sha256,
    tables: Vec<(String, u64)>,
    /// Rows the current table announced, and rows written so far.
    expected: u64,
    written: u64,
    line: Vec<u8>,
}

impl<W: Write> Writer<W> {
    pub fn new(out: W, header: &Header) -> Result<Self, FormatError> {
        let mut w = Self {
            // The default level: level 9 costs several times the CPU for a few percent.
            gz: GzEncoder::new(out, Compression::default()),
            sha: Sha256::new(),
            tables: Vec::new(),
            expected: 0,
            written: 0,
            line: Vec::with_capacity(1024),
        };
        w.json_line(header)?;
        Ok(w)
    }

    fn json_line<T: Serialize>(&mut self, v: &T) -> Result<(), FormatError> {
        self.line.clear();
        serde_json::to_writer(&mut self.line, v)
            .map_err(|e| FormatError::Write(std::io::Error::other(e)))?;
        self.line.push(b'\n');
        self.sha.update(&self.line);
        self.gz.write_all(&self.line).map_err(FormatError::Write)
    }

    fn close_table(&mut self) -> Result<(), FormatError> {
        if let Some((name, _)) = self.tables.last()
            && self.written != self.expected
        {
            return Err(FormatError::Invalid(format!(
                "table {name}: {} rows announced, {} written",
                self.expected, self.written
            )));
        }
        Ok(())
    }

    /// Starts a table of `rows` rows (counted in the same snapshot as the rows).
    pub fn table(&mut self, spec: &TableSpec, rows: u64) -> Result<(), FormatError> {
        self.close_table()?;
        let line = TableLine {
            table: spec.name.to_string(),
            columns: (spec.columns)().iter().map(|c| c.to_string()).collect(),
            rows,
        };
        self.json_line(&line)?;
        self.tables.push((spec.name.to_string(), rows));
        self.expected = rows;
        self.written = 0;
        Ok(())
    }

    pub fn row(&mut self, row: &[Value]) -> Result<(), FormatError> {
        let json: Vec<serde_json::Value> = row.iter().map(to_json).collect();
        self.json_line(&json)?;
        self.written += 1;
        Ok(())
    }

    /// Writes the trailer and ends the gzip stream; returns each table's row count.
    pub fn finish(mut self) -> Result<(W, Vec<(String, u64)>), FormatError> {
        self.close_table()?;
        let sha256 = hex::encode(self.sha.clone().finalize());
        let trailer = TrailerLine {
            trailer: Trailer {
                tables: self.tables.iter().cloned().collect(),
                rows: self.tables.iter().map(|(_, n)| n).sum(),
                sha256,
            },
        };
        let mut line = serde_json::to_vec(&trailer)
            .map_err(|e| FormatError::Write(std::io::Error::other(e)))?;
        line.push(b'\n');
        self.gz.write_all(&line).map_err(FormatError::Write)?;
        let out = self.gz.finish().map_err(FormatError::Write)?;
        Ok((out, self.tables))
    }
}

pub fn to_json(v: &Value) -> serde_json::Value {
    match v {
        Value::Null => serde_json::Value::Null,
        Value::Int(i) => serde_json::Value::from(*i),
        Value::Bool(b) => serde_json::Value::Bool(*b),
        Value::Text(s) => serde_json::Value::String(s.clone()),
        Value::Time(t) => serde_json::Value::String(t.format(TIME_FORMAT).to_string()),
    }
}

/// A JSON value back into a column of type `ty`; anything else is refused.
pub fn from_json(ty: ColumnType, v: serde_json::Value) -> Result<Value, String> {
    use serde_json::Value as J;
    match (ty.kind, v) {
        (_, J::Null) if ty.nullable => Ok(Value::Null),
        (_, J::Null) => Err("null in a NOT NULL column".into()),
        (Kind::BigInt, J::Number(n)) => n
            .as_i64()
            .map(Value::Int)
            .ok_or_else(|| format!("{n} is not a 64-bit integer")),
        (Kind::Integer, J::Number(n)) => n
            .as_i64()
            .filter(|i| i32::try_from(*i).is_ok())
            .map(Value::Int)
            .ok_or_else(|| format!("{n} is not a 32-bit integer")),
        (Kind::Text, J::String(s)) => Ok(Value::Text(s)),
        (Kind::Bool, J::Bool(b)) => Ok(Value::Bool(b)),
        (Kind::Timestamp, J::String(s)) => NaiveDateTime::parse_from_str(&s, TIME_PARSE)
            .map(Value::Time)
            .map_err(|e| format!("{s:?} is not a timestamp: {e}")),
        (kind, v) => Err(format!("{v} in a {kind:?} column")),
    }
}

/// The table being read: its column types, and its rows announced and seen.
struct Current {
    spec: &'static TableSpec,
    types: Vec<ColumnType>,
    announced: u64,
    seen: u64,
}

pub type VisitError = Box<dyn std::error::Error + Send + Sync>;

/// Receives a backup's contents as [`read`] goes.
pub trait Visitor {
    /// A table starts; `rows` is its announced row count.
    fn table(&mut self, spec: &'static TableSpec, rows: u64) -> Result<(), VisitError>;
    fn row(&mut self, row: Vec<Value>) -> Result<(), VisitError>;
    /// The last line was read and everything checked out.
    fn end(&mut self) -> Result<(), VisitError>;
}

/// Only checks.
pub struct Check;

impl Visitor for Check {
    fn table(&mut self, _: &'static TableSpec, _: u64) -> Result<(), VisitError> {
        Ok(())
    }
    fn row(&mut self, _: Vec<Value>) -> Result<(), VisitError> {
        Ok(())
    }
    fn end(&mut self) -> Result<(), VisitError> {
        Ok(())
    }
}

/// Reads a whole backup, checking its structure, every value against the column types
/// of this binary's tables, the row counts and the checksum, and passing tables and
/// rows to `visitor` as it goes. The checksum and trailer can only be checked at the
/// end: run it once with [`Check`] before a visitor that writes.
pub fn read(gz: impl Read, visitor: &mut dyn Visitor) -> Result<Summary, FormatError> {
    let mut input = BufReader::new(GzDecoder::new(gz));
    let mut sha = Sha256::new();
    let mut buf = Vec::with_capacity(4096);
    let mut n: u64 = 0;
    let bad = |line: u64, what: String| FormatError::Line { line, what };

    // Reads one line; `None` at the end of the stream; a last line without its newline
    // is a file cut short.
    let mut next = |buf: &mut Vec<u8>, n: &mut u64| -> Result<Option<()>, FormatError> {
        buf.clear();
        let got = input.read_until(b'\n', buf).map_err(FormatError::Gzip)?;
        if got == 0 {
            return Ok(None);
        }
        *n += 1;
        if buf.last() != Some(&b'\n') {
            return Err(FormatError::Truncated);
        }
        Ok(Some(()))
    };

    if next(&mut buf, &mut n)?.is_none() {
        return Err(FormatError::Truncated);
    }
    let header: Header =
        serde_json::from_slice(&buf).map_err(|e| bad(n, format!("not a backup header ({e})")))?;
    if header.format != FORMAT {
        return Err(FormatError::Invalid(format!(
            "not a Campus Errand backup (format {:?})",
            header.format
        )));
    }
    if header.version != VERSION {
        return Err(FormatError::Invalid(format!(
            "backup format version {} is not supported (this binary reads {VERSION})",
            header.version
        )));
    }
    sha.update(&buf);

    let mut tables: Vec<(String, u64)> = Vec::new();
    let mut current: Option<Current> = None;
    let close = |current: &Option<Current>, n: u64| -> Result<(), FormatError> {
        if let Some(Current {
            spec,
            announced,
            seen,
            ..
        }) = current
            && announced != seen
        {
            return Err(bad(
                n,
                format!(
                    "table {} announced {announced} rows but has {seen}",
                    spec.name
                ),
            ));
        }
        Ok(())
    };
    let trailer = loop {
        if next(&mut buf, &mut n)?.is_none() {
            return Err(FormatError::Truncated);
        }
        match buf.first() {
            Some(b'[') => {
                let Some(Current { types, seen, .. }) = current.as_mut() else {
                    return Err(bad(n, "a row before any table".into()));
                };
                let values: Vec<serde_json::Value> =
                    serde_json::from_slice(&buf).map_err(|e| bad(n, e.to_string()))?;
                if values.len() != types.len() {
                    return Err(bad(
                        n,
                        format!("{} values for {} columns", values.len(), types.len()),
                    ));
                }
                let row = values
                    .into_iter()
                    .zip(types.iter())
                    .map(|(v, ty)| from_json(*ty, v))
                    .collect::<Result<Vec<Value>, String>>()
                    .map_err(|e| bad(n, e))?;
                *seen += 1;
                sha.update(&buf);
                visitor.row(row).map_err(FormatError::Target)?;
            }
            Some(b'{') if buf.starts_with(b"{\"trailer\"") => {
                close(&current, n)?;
                let t: TrailerLine =
                    serde_json::from_slice(&buf).map_err(|e| bad(n, e.to_string()))?;
                break t.trailer;
            }
            Some(b'{') => {
                close(&current, n)?;
                let t: TableLine =
                    serde_json::from_slice(&buf).map_err(|e| bad(n, e.to_string()))?;
                let spec = campus_dal::backup::table(&t.table).ok_or_else(|| {
                    FormatError::Invalid(format!(
                        "the backup has a table {:?} this binary does not know",
                        t.table
                    ))
                })?;
                let ours: Vec<&str> = (spec.columns)();
                if t.columns != ours {
                    return Err(FormatError::Invalid(format!(
                        "table {}: the backup's columns {:?} differ from this binary's {:?}",
                        t.table, t.columns, ours
                    )));
                }
                if tables.iter().any(|(name, _)| *name == t.table) {
                    return Err(bad(n, format!("table {} appears twice", t.table)));
                }
                sha.update(&buf);
                visitor.table(spec, t.rows).map_err(FormatError::Target)?;
                tables.push((t.table, t.rows));
                current = Some(Current {
                    spec,
                    types: (spec.types)(),
                    announced: t.rows,
                    seen: 0,
                });
            }
            _ => return Err(bad(n, "neither a table, a row nor the trailer".into())),
        }
    };

    // Nothing may follow the trailer (which also reads gzip's own CRC and length).
    if next(&mut buf, &mut n)?.is_some() {
        return Err(bad(n, "data after the trailer".into()));
    }
    let actual = hex::encode(sha.finalize());
    if actual != trailer.sha256 {
        return Err(FormatError::Checksum {
            expected: trailer.sha256,
            actual,
        });
    }
    let counted: BTreeMap<String, u64> = tables.iter().cloned().collect();
    if counted != trailer.tables || trailer.rows != counted.values().sum::<u64>() {
        return Err(FormatError::Invalid(
            "the trailer's row counts differ from the tables': the backup is damaged".into(),
        ));
    }
    visitor.end().map_err(FormatError::Target)?;
    Ok(Summary { header, tables })
}

#[cfg(test)]
mod tests {
    use super::*;
    use campus_dal::backup::TABLES;

    fn sample() -> Vec<u8> {
        let header = Header {
            format: FORMAT.into(),
            version: VERSION,
            created_at: chrono::Utc::now(),
            backend: "sqlite".into(),
            migrations: vec!["1".into()],
        };
        let mut w = Writer::new(Vec::new(), &header).expect("writer");
        for spec in TABLES {
            let rows = if spec.name == "users" { 2 } else { 0 };
            w.table(spec, rows).expect("table");
            for id in 0..rows {
                let t = NaiveDateTime::parse_from_str("2026-11-30 08:00:00.123456", TIME_PARSE)
                    .expect("time");
                w.row(&[
                    Value::Int(id as i64 + 1),
                    Value::Text(format!("openid-{id}")),
                    Value::Text("customer".into()),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Null,
                    Value::Time(t),
                    Value::Time(t),
                    Value::Null,
                    Value::Null,
                    Value::Null,
                ])
                .expect("row");
            }
        }
        w.finish().expect("finish").0
    }

    struct Collect(Vec<Vec<Value>>);
    impl Visitor for Collect {
        fn table(&mut self, _: &'static TableSpec, _: u64) -> Result<(), VisitError> {
            Ok(())
        }
        fn row(&mut self, row: Vec<Value>) -> Result<(), VisitError> {
            self.0.push(row);
            Ok(())
        }
        fn end(&mut self) -> Result<(), VisitError> {
            Ok(())
        }
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let mut rows = Collect(Vec::new());
        let s = read(&bytes[..], &mut rows).expect("reads");
        assert_eq!(s.rows(), 2);
        assert_eq!(s.tables.len(), TABLES.len());
        assert_eq!(rows.0.len(), 2);
        assert_eq!(rows.0[1][1], Value::Text("openid-1".into()));
    }

    #[test]
    fn truncated_is_refused() {
        let bytes = sample();
        for cut in [0, 10, bytes.len() / 2, bytes.len() - 9, bytes.len() - 1] {
            let e = read(&bytes[..cut], &mut Check).expect_err("cut short");
            let msg = e.to_string();
            assert!(
                msg.contains("cut short") || msg.contains("damaged"),
                "cut at {cut}: {msg}"
            );
        }
    }

    #[test]
    fn any_changed_content_is_refused() {
        // Re-compress a changed text so that gzip itself is fine: the checksum catches it.
        let mut plain = String::new();
        GzDecoder::new(&sample()[..])
            .read_to_string(&mut plain)
            .expect("gunzip");
        let changed = plain.replacen("openid-1", "openid-X", 1);
        let mut gz = GzEncoder::new(Vec::new(), Compression::default());
        gz.write_all(changed.as_bytes()).expect("gzip");
        let e = read(&gz.finish().expect("gzip")[..], &mut Check).expect_err("changed");
        assert!(matches!(e, FormatError::Checksum { .. }), "{e}");

        // A flipped byte anywhere in the compressed stream. Where deflate itself does not
        // notice, the damage shows as a broken line, a name this binary does not know, or
        // the checksum: refused all the same.
        let sample = sample();
        for at in [sample.len() / 4, sample.len() / 2, sample.len() * 3 / 4] {
            let mut bytes = sample.clone();
            bytes[at] ^= 0x55;
            let e = read(&bytes[..], &mut Check).expect_err("corrupt");
            assert!(
                matches!(
                    e,
                    FormatError::Gzip(_)
                        | FormatError::Line { .. }
                        | FormatError::Checksum { .. }
                        | FormatError::Truncated
                        | FormatError::Invalid(_)
                ),
                "flipped at {at}: {e}"
            );
        }
    }

    #[test]
    fn values_are_checked_against_column_types() {
        let int = ColumnType {
            kind: Kind::Integer,
            nullable: false,
        };
        assert!(from_json(int, serde_json::json!(5_000_000_000i64)).is_err());
        assert!(from_json(int, serde_json::Value::Null).is_err());
        assert_eq!(from_json(int, serde_json::json!(7)), Ok(Value::Int(7)));
    }
}
