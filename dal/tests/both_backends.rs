//! The same data-layer tests on SQLite and on MariaDB (127.0.0.1:3306, root, no
//! password, or CAMPUS_TEST_MYSQL). MariaDB must answer: CI starts it; no silent skip.

use campus_dal::orders::{self as q, NewOrder};
use campus_dal::payments as ledger;
use campus_dal::{
    LedgerEvent, LedgerSource, OrderKind, OrderMove, OrderStatus, Pools, RefundCause, RefundStatus,
    Role, migrate, refunds, time, users,
};

fn mysql_pools() -> (Pools, String) {
    let base =
        std::env::var("CAMPUS_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("campus_dal_{}", std::process::id());
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
    (
        Pools::connect(&format!("{base}/{name}"), 4).expect("mysql pool"),
        name,
    )
}

fn exercise(pools: &Pools) {
    let mut c = pools.write.get().expect("conn");
    let applied = migrate::run_pending(&mut c).expect("migrations");
    let folders = std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations/sqlite"))
        .expect("migrations folder")
        .filter(|e| e.as_ref().is_ok_and(|e| e.path().is_dir()))
        .count();
    assert_eq!(applied.len(), folders);
    assert!(migrate::run_pending(&mut c).expect("again").is_empty());
    let now = time::now();

    let u = users::upsert_by_openid(&mut c, "OpenId-A", Role::Customer, now).expect("user");
    let again = users::upsert_by_openid(&mut c, "OpenId-A", Role::Customer, now).expect("again");
    assert_eq!(u.id, again.id);
    // Identifiers are case-sensitive on both backends.
    let other = users::upsert_by_openid(&mut c, "openid-a", Role::Customer, now).expect("other");
    assert_ne!(u.id, other.id);
    assert_eq!(
        u.created_at, now,
        "timestamps round-trip to the microsecond"
    );
    let runner = users::upsert_by_openid(&mut c, "runner", Role::Runner, now).expect("runner");

    let new = |otn: &'static str| NewOrder {
        out_trade_no: otn,
        kind: OrderKind::Express,
        status: OrderStatus::Created,
        pickup: "A",
        dropoff: "B",
        note: "",
        fee_fen: 300,
        goods_fen: 0,
        discount_fen: 0,
        amount_fen: 300,
        customer_id: u.id,
        pickup_code: "123456",
        pay_deadline: now,
        created_at: now,
        updated_at: now,
    };
    let o = q::insert(&mut c, &new("CE0000000001")).expect("order");
    assert!(
        q::insert(&mut c, &new("CE0000000001")).is_err_and(|e| campus_dal::is_unique_violation(&e))
    );
    let id = o.id;
    // Compare-and-set: the second identical move affects no row.
    assert_eq!(q::mark_paid(&mut c, id, "tx1", now).expect("paid"), 1);
    assert_eq!(q::mark_paid(&mut c, id, "tx1", now).expect("again"), 0);
    assert_eq!(q::accept(&mut c, id, runner.id, now).expect("accept"), 1);
    assert_eq!(q::accept(&mut c, id, other.id, now).expect("lost"), 0);
    // Refund reservations never exceed the amount.
    assert_eq!(
        q::reserve_refund(&mut c, id, 200, &[OrderStatus::Accepted], now).expect("r1"),
        1
    );
    assert_eq!(
        q::reserve_refund(&mut c, id, 101, &[OrderStatus::Accepted], now).expect("r2"),
        0
    );
    assert_eq!(
        q::reserve_refund(&mut c, id, 100, &[OrderStatus::Accepted], now).expect("r3"),
        1
    );
    // The ledger records an event once.
    let ev = ledger::NewEvent {
        order_id: id,
        out_trade_no: "CE0000000001",
        event: LedgerEvent::Paid,
        amount_fen: 300,
        source: LedgerSource::Api,
        reference: "tx1",
        at: now,
    };
    assert!(ledger::append(&mut c, &ev).expect("first"));
    assert!(!ledger::append(&mut c, &ev).expect("dup"));
    // A failed transaction leaves nothing behind.
    let r: Result<(), campus_dal::DieselError> = campus_dal::transaction(&mut c, |c| {
        refunds::insert(
            c,
            &refunds::NewRefund {
                order_id: id,
                out_refund_no: "CE0000000001R1",
                refund_fen: 1,
                reason: "x",
                cause: RefundCause::Admin,
                status: RefundStatus::Requested,
                created_at: now,
                updated_at: now,
            },
        )?;
        Err(campus_dal::DieselError::RollbackTransaction)
    });
    assert!(r.is_err());
    assert!(refunds::for_order(&mut c, id).expect("refunds").is_empty());
    assert!(
        q::find(&mut c, campus_dal::OrderId(999_999))
            .expect("find")
            .is_none()
    );

    // The compare-and-set follows the transition table: from every state, every move
    // changes exactly the rows the table allows, and lands where the table says.
    for (i, from) in OrderStatus::ALL.iter().enumerate() {
        for (j, mv) in OrderMove::ALL.iter().enumerate() {
            let otn = format!("CET{i:02}{j:02}000000");
            let o = q::insert(
                &mut c,
                &NewOrder {
                    out_trade_no: &otn,
                    status: *from,
                    ..new("CE0000000000")
                },
            )
            .expect("order");
            let moved = q::transition(&mut c, o.id, *mv, now).expect("move");
            let after = q::find(&mut c, o.id).expect("find").expect("order").status;
            match from.after(*mv) {
                Some(to) => assert_eq!((moved, after), (1, to), "{from} {mv:?}"),
                None => assert_eq!((moved, after), (0, *from), "{from} {mv:?}"),
            }
        }
    }
}

#[test]
fn sqlite() {
    let dir = tempfile::tempdir().expect("dir");
    let pools = Pools::connect(
        &format!("sqlite://{}", dir.path().join("t.db").display()),
        2,
    )
    .expect("pool");
    exercise(&pools);
}

#[test]
fn mariadb() {
    let (pools, name) = mysql_pools();
    exercise(&pools);
    drop(pools);
    let _ = std::process::Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            "-uroot",
            "-e",
            &format!("DROP DATABASE IF EXISTS {name}"),
        ])
        .output();
}
