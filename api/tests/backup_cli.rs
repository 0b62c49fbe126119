//! The operators' commands as processes: `backup`, `backup --list`, `restore <key>`.
//! The source is SQLite; the target is SQLite, or MariaDB with `CAMPUS_TEST_MODE=mariadb`
//! (a binary built with the `mysql` feature), i.e. the documented move to MariaDB.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use campus_dal::backup::{TABLES, Value};
use campus_dal::{OrderKind, OrderStatus, Pools, Role};
use common::{TempDb, mariadb_mode};

fn run(dir: &Path, db_url: &str, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_campus-errand"))
        .args([
            "--conf-dir",
            &dir.join("no-conf").display().to_string(),
            "--log-dir",
            &dir.join("log").display().to_string(),
        ])
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", db_url)
        .env(
            "STORAGE_URL",
            format!("file://{}", dir.join("store").display()),
        )
        .output()
        .expect("the binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn seed(url: &str) {
    let pools = Pools::connect(url, 1).expect("pools");
    let mut c = pools.write.get().expect("conn");
    campus_dal::migrate::run_pending(&mut c).expect("migrate");
    let now = campus_dal::time::now();
    let u = campus_dal::users::upsert_by_openid(&mut c, "openid-cli", Role::Customer, now)
        .expect("user");
    for i in 0..50 {
        let otn = format!("CE{i:010}");
        campus_dal::orders::insert(
            &mut c,
            &campus_dal::orders::NewOrder {
                out_trade_no: &otn,
                kind: OrderKind::Takeout,
                status: OrderStatus::Created,
                pickup: "食堂",
                dropoff: "宿舍",
                note: "",
                fee_fen: 200,
                goods_fen: 1500,
                discount_fen: 0,
                amount_fen: 1700,
                customer_id: u.id,
                pickup_code: "000111",
                pay_deadline: now,
                created_at: now,
                updated_at: now,
            },
        )
        .expect("order");
    }
}

fn rows_of(url: &str) -> BTreeMap<&'static str, Vec<Vec<Value>>> {
    let pools = Pools::connect(url, 1).expect("pools");
    let mut c = pools.read.get().expect("conn");
    TABLES
        .iter()
        .map(|t| {
            let mut rows = Vec::new();
            (t.dump)(&mut c, &mut |r| {
                rows.push(r);
                Ok(())
            })
            .expect("dump");
            (t.name, rows)
        })
        .collect()
}

/// A fresh, empty target of the backend under test.
fn empty_target(dir: &Path, name: &str) -> (String, Option<TempDb>) {
    if mariadb_mode() {
        let db = TempDb::create();
        (db.url(), Some(db))
    } else {
        (format!("sqlite://{}", dir.join(name).display()), None)
    }
}

fn holds_no_row(url: &str) -> bool {
    let pools = Pools::connect(url, 1).expect("pools");
    let mut c = pools.write.get().expect("conn");
    campus_dal::backup::first_nonempty_table(&mut c)
        .expect("tables")
        .is_none()
}

#[test]
fn backup_list_and_restore_as_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!("sqlite://{}", dir.path().join("source.db").display());
    seed(&source);

    let out = run(dir.path(), &source, &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    let stdout = text(&out.stdout);
    let key = stdout
        .split('\t')
        .next()
        .expect("key first")
        .trim()
        .to_string();
    assert!(
        key.starts_with("backups/") && key.ends_with(".jsonl.gz"),
        "{stdout}"
    );
    assert!(stdout.contains("51 rows"), "{stdout}");
    // Not a terminal: plain progress lines, no bar.
    let stderr = text(&out.stderr);
    assert!(stderr.contains("backup: orders"), "{stderr}");

    let out = run(dir.path(), &source, &["backup", "--list"]);
    assert!(out.status.success(), "list: {}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&key), "{}", text(&out.stdout));

    let (target, _db) = empty_target(dir.path(), "target.db");
    let out = run(dir.path(), &target, &["restore", &key]);
    assert!(out.status.success(), "restore: {}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("51 rows"),
        "{}",
        text(&out.stdout)
    );
    assert_eq!(rows_of(&target), rows_of(&source));

    // Again into the same, now non-empty, database: refused.
    let out = run(dir.path(), &target, &["restore", "latest"]);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("not empty"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(rows_of(&target), rows_of(&source));
}

#[test]
fn damaged_backups_are_refused_and_change_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = format!("sqlite://{}", dir.path().join("source.db").display());
    seed(&source);
    let out = run(dir.path(), &source, &["backup"]);
    assert!(out.status.success(), "backup: {}", text(&out.stderr));
    let key = text(&out.stdout)
        .split('\t')
        .next()
        .unwrap_or_default()
        .to_string();
    let good = std::fs::read(dir.path().join("store").join(&key)).expect("stored file");

    let broken = dir.path().join("store/backups/broken");
    std::fs::create_dir_all(&broken).expect("dir");
    std::fs::write(broken.join("cut.jsonl.gz"), &good[..good.len() / 2]).expect("write");
    let mut flipped = good.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    std::fs::write(broken.join("flipped.jsonl.gz"), &flipped).expect("write");

    let (target, _db) = empty_target(dir.path(), "target.db");
    for key in [
        "backups/broken/cut.jsonl.gz",
        "backups/broken/flipped.jsonl.gz",
    ] {
        let out = run(dir.path(), &target, &["restore", key]);
        assert!(!out.status.success(), "{key} was restored");
        let err = text(&out.stderr);
        assert!(
            err.contains("damaged") || err.contains("cut short"),
            "{key}: {err}"
        );
        assert!(holds_no_row(&target), "{key} left rows behind");
    }
    let out = run(dir.path(), &target, &["restore", "backups/none.jsonl.gz"]);
    assert!(
        text(&out.stderr).contains("no backup"),
        "{}",
        text(&out.stderr)
    );
}
