//! Migrations on both backends: every `down.sql` works (migrate, revert all, migrate
//! again), and instances migrating one empty database at once all succeed, the lock
//! letting exactly one of them apply each migration. MariaDB must answer (no silent skip).

use campus_dal::{Pools, migrate, users};

fn folders() -> usize {
    std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("migrations")
        .count()
}

fn fresh_mysql(tag: &str) -> (String, String) {
    let base =
        std::env::var("CAMPUS_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("campus_mig_{tag}_{}", std::process::id());
    let out = std::process::Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            "-uroot",
            "-e",
            &format!("DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}"),
        ])
        .output()
        .expect("the mariadb client must be installed");
    assert!(
        out.status.success(),
        "MariaDB must answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (format!("{base}/{name}"), name)
}

fn drop_mysql(name: &str) {
    let _ = std::process::Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            "-uroot",
            "-e",
            &format!("DROP DATABASE {name}"),
        ])
        .output();
}

fn down_and_up(url: &str) {
    let pools = Pools::connect(url, 2).expect("pools");
    let mut c = pools.write.get().expect("conn");
    assert_eq!(migrate::run_pending(&mut c).expect("up").len(), folders());
    assert!(
        migrate::status(&mut c)
            .expect("status")
            .iter()
            .all(|m| m.applied)
    );
    users::upsert_by_openid(
        &mut c,
        "before",
        campus_dal::Role::Customer,
        campus_dal::time::now(),
    )
    .expect("tables exist");

    let mut reverted = Vec::new();
    while let Some(name) = migrate::revert_last(&mut c).expect("revert") {
        reverted.push(name);
    }
    let mut expected: Vec<String> = migrate::status(&mut c)
        .expect("status")
        .into_iter()
        .map(|m| {
            assert!(!m.applied, "{} still applied", m.name);
            m.name
        })
        .collect();
    expected.reverse();
    assert_eq!(reverted, expected, "newest first, each once");
    assert!(
        users::find_by_openid(&mut c, "before").is_err(),
        "down.sql left the users table"
    );

    assert_eq!(
        migrate::run_pending(&mut c).expect("up again").len(),
        folders()
    );
    assert!(
        users::find_by_openid(&mut c, "before")
            .expect("query")
            .is_none(),
        "fresh tables"
    );
}

fn concurrent_migrations(url: &str) {
    let applied: Vec<usize> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4)
            .map(|_| {
                s.spawn(|| {
                    let pools = Pools::connect(url, 1).expect("pools");
                    let mut c = pools.write.get().expect("conn");
                    migrate::run_pending(&mut c).expect("migrate").len()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(applied.iter().sum::<usize>(), folders(), "{applied:?}");
    let pools = Pools::connect(url, 1).expect("pools");
    let mut c = pools.write.get().expect("conn");
    assert!(migrate::pending(&mut c).expect("pending").is_empty());
}

#[test]
fn every_down_sql_works_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    down_and_up(&format!("sqlite://{}", dir.path().join("m.db").display()));
}

#[test]
fn every_down_sql_works_on_mariadb() {
    let (url, name) = fresh_mysql("down");
    down_and_up(&url);
    drop_mysql(&name);
}

#[test]
fn concurrent_migrations_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    concurrent_migrations(&format!("sqlite://{}", dir.path().join("c.db").display()));
}

#[test]
fn concurrent_migrations_on_mariadb() {
    let (url, name) = fresh_mysql("conc");
    concurrent_migrations(&url);
    drop_mysql(&name);
}
