//! The same data-layer tests on SQLite and on MariaDB (127.0.0.1:3306, root, no
//! password, or CAMPUS_TEST_MYSQL). MariaDB must answer: CI starts it; no silent skip.
//! Built without the `mysql` feature, the MariaDB test is reported as ignored.

use campus_dal::orders::{self as q, NewOrder};
use campus_dal::payments as ledger;
use campus_dal::{
    LedgerEvent, LedgerSource, OrderKind, OrderMove, OrderStatus, Pools, RefundCause, RefundStatus,
    Role, UserId, migrate, refunds, time, users,
};
use chrono::NaiveDateTime;

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

/// A 3-yuan express order of `customer`, created and due at `now`.
fn new_order(out_trade_no: &str, customer: UserId, now: NaiveDateTime) -> NewOrder<'_> {
    NewOrder {
        out_trade_no,
        kind: OrderKind::Express,
        status: OrderStatus::Created,
        pickup: "A",
        dropoff: "B",
        note: "",
        fee_fen: 300,
        goods_fen: 0,
        discount_fen: 0,
        amount_fen: 300,
        customer_id: customer,
        pickup_code: "123456",
        pay_deadline: now,
        created_at: now,
        updated_at: now,
    }
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

    let new = |otn: &'static str| new_order(otn, u.id, now);
    let o = q::insert(&mut c, &new("CE0000000001")).expect("order");
    assert!(
        q::insert(&mut c, &new("CE0000000001")).is_err_and(|e| campus_dal::is_unique_violation(&e))
    );
    let id = o.id;
    // The unpaid cap's check counts unpaid orders only, up to the cap.
    assert!(q::holds_unpaid(&mut c, u.id, 1).expect("one"));
    assert!(!q::holds_unpaid(&mut c, u.id, 2).expect("not two"));
    assert!(q::holds_unpaid(&mut c, u.id, 0).expect("a cap of 0"));
    assert!(!q::holds_unpaid(&mut c, u.id, i64::MAX).expect("no cap"));
    // Compare-and-set: the second identical move affects no row.
    assert_eq!(q::mark_paid(&mut c, id, "tx1", now).expect("paid"), 1);
    assert_eq!(q::mark_paid(&mut c, id, "tx1", now).expect("again"), 0);
    assert!(!q::holds_unpaid(&mut c, u.id, 1).expect("paid is not unpaid"));
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
                requested_by: None,
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

/// Transactions through `campus_dal::transaction`: committed, rolled back, nested as a
/// savepoint, and the connection left outside any transaction after each.
fn transactions(pools: &Pools) {
    use campus_dal::DieselError;
    let mut c = pools.write.get().expect("conn");
    let now = time::now();
    let exists = |c: &mut campus_dal::Conn, openid: &str| {
        users::find_by_openid(c, openid).expect("find").is_some()
    };
    campus_dal::transaction(&mut c, |c| {
        users::upsert_by_openid(c, "tx-commit", Role::Customer, now)
    })
    .expect("committed");
    assert!(exists(&mut c, "tx-commit"));
    let r: Result<(), DieselError> = campus_dal::transaction(&mut c, |c| {
        users::upsert_by_openid(c, "tx-rollback", Role::Customer, now)?;
        Err(DieselError::RollbackTransaction)
    });
    assert!(r.is_err());
    assert!(!exists(&mut c, "tx-rollback"));
    campus_dal::transaction(&mut c, |c| {
        users::upsert_by_openid(c, "tx-outer", Role::Customer, now)?;
        let inner: Result<(), DieselError> = campus_dal::transaction(c, |c| {
            users::upsert_by_openid(c, "tx-inner", Role::Customer, now)?;
            Err(DieselError::RollbackTransaction)
        });
        assert!(inner.is_err());
        Ok::<_, DieselError>(())
    })
    .expect("outer committed");
    assert!(exists(&mut c, "tx-outer"));
    assert!(!exists(&mut c, "tx-inner"));
    // Outside any transaction again: a unique violation ends only its own statement.
    assert!(!campus_dal::in_transaction(&mut c));
}

/// A coupon's stock over its shards: as many as the backend splits it into, every unit
/// taken once, none after the last; a stopped coupon has no stock for the gate.
fn coupon_stock(pools: &Pools, shards: usize) {
    use campus_dal::coupons as cq;
    let mut c = pools.write.get().expect("conn");
    let now = time::now();
    let admin = users::upsert_by_openid(&mut c, "coupon-admin", Role::Admin, now).expect("user");
    let new = |stock| fixed_coupon("分片", stock, admin.id, now);
    let cp = cq::insert(&mut c, &new(35)).expect("coupon");
    let layout = cq::shards(&mut c, cp.id).expect("shards");
    assert_eq!(layout.len(), shards);
    assert_eq!(cp.stock_shards as usize, shards);
    assert_eq!(layout.iter().map(|s| s.cap).sum::<i64>(), 35);
    for n in 1..=35 {
        assert!(cq::take_any(&mut c, cp.id).expect("take"), "unit {n}");
    }
    assert!(!cq::take_any(&mut c, cp.id).expect("none left"));
    assert_eq!(cq::claimed(&mut c, cp.id).expect("claimed"), 35);
    let listed = cq::claimable(&mut c, now, None, 50).expect("claimable");
    assert!(listed.iter().all(|l| l.id != cp.id), "sold out: not listed");

    let other = cq::insert(&mut c, &new(2)).expect("coupon");
    let mut sums = cq::claimed_among(&mut c, &[cp.id, other.id]).expect("sums");
    sums.sort_by_key(|(id, _)| id.0);
    assert_eq!(sums, vec![(cp.id, 35), (other.id, 0)]);
    assert_eq!(cq::stop(&mut c, other.id, now).expect("stop"), 1);
    // Taking stock does not read the status (the claim did, before); the stop shows in
    // what the gate and the list read.
    assert!(
        cq::claimable(&mut c, now, None, 50)
            .expect("claimable")
            .iter()
            .all(|l| l.id != other.id)
    );
    assert!(
        cq::active_shards(&mut c, other.id)
            .expect("shards")
            .is_empty()
    );
}

/// On MariaDB a claim holding one shard's row until it commits does not hold up a claim
/// taking from another shard of the same coupon.
#[cfg(feature = "mysql")]
fn shards_lock_apart(pools: &Pools) {
    use campus_dal::coupons as cq;
    use diesel::connection::SimpleConnection;
    let mut one = pools.write.get().expect("conn");
    let mut two = pools.write.get().expect("conn");
    let now = time::now();
    let admin =
        users::upsert_by_openid(&mut one, "coupon-admin-2", Role::Admin, now).expect("user");
    let cp = cq::insert(&mut one, &fixed_coupon("并发", 100, admin.id, now)).expect("coupon");
    two.batch_execute("SET SESSION innodb_lock_wait_timeout = 1")
        .expect("timeout");
    one.batch_execute("BEGIN").expect("begin");
    assert_eq!(cq::take_from(&mut one, cp.id, 0).expect("take"), 1);
    // Shard 0 is held: another shard is free to take, the held one is not.
    assert_eq!(cq::take_from(&mut two, cp.id, 1).expect("another shard"), 1);
    let held = cq::take_from(&mut two, cp.id, 0).expect_err("shard 0 is locked");
    assert!(held.to_string().contains("Lock wait timeout"), "{held}");
    one.batch_execute("COMMIT").expect("commit");
    two.batch_execute("SET SESSION innodb_lock_wait_timeout = DEFAULT")
        .expect("timeout");
    assert_eq!(cq::claimed(&mut one, cp.id).expect("claimed"), 2);
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
    transactions(&pools);
    coupon_stock(&pools, 1);
}

/// MariaDB's count of statements this connection sent, by kind.
#[cfg(feature = "mysql")]
fn session_counts(c: &mut campus_dal::Conn) -> std::collections::HashMap<String, i64> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[diesel(column_name = Variable_name)]
        name: String,
        #[diesel(sql_type = diesel::sql_types::Text)]
        #[diesel(column_name = Value)]
        value: String,
    }
    let campus_dal::DbConn::Mysql(m) = c else {
        panic!("a MariaDB connection");
    };
    diesel::sql_query(
        "SHOW SESSION STATUS WHERE Variable_name IN \
         ('Com_set_option', 'Com_begin', 'Com_commit', 'Com_rollback', 'Com_select', \
         'Com_stmt_prepare')",
    )
    .load::<Row>(m)
    .expect("status")
    .into_iter()
    .map(|r| (r.name, r.value.parse().expect("a count")))
    .collect()
}

/// BEGIN and COMMIT are one round trip each: no multi-statement toggles around them.
#[cfg(feature = "mysql")]
fn transaction_round_trips(pools: &Pools) {
    let mut c = pools.write.get().expect("conn");
    let before = session_counts(&mut c);
    for _ in 0..10 {
        campus_dal::transaction(&mut c, campus_dal::health::ping).expect("tx");
    }
    let after = session_counts(&mut c);
    let delta = |k: &str| after[k] - before[k];
    assert_eq!(
        (
            delta("Com_begin"),
            delta("Com_commit"),
            delta("Com_set_option")
        ),
        (10, 10, 0),
        "{before:?} -> {after:?}"
    );
}

/// The statements of an order's create and payment are prepared once per connection: the
/// user's lock, the unpaid check, the INSERT and the read back, the pay and the moves
/// (diesel prepares an INSERT with `DEFAULT`s, an UPDATE or an `IN` list afresh each time
/// unless told otherwise).
#[cfg(feature = "mysql")]
fn writes_stay_prepared(pools: &Pools) {
    let mut c = pools.write.get().expect("conn");
    let now = time::now();
    let u = users::upsert_by_openid(&mut c, "prepared-once", Role::Customer, now).expect("user");
    let write = |c: &mut campus_dal::Conn, i: usize| {
        let otn = format!("PREPARED{i:04}");
        campus_dal::transaction(c, |c| -> diesel::QueryResult<()> {
            users::lock(c, u.id)?;
            assert!(!q::holds_unpaid(c, u.id, 1000)?);
            let o = q::insert(c, &new_order(&otn, u.id, now))?;
            assert_eq!(q::mark_paid(c, o.id, &otn, now)?, 1);
            assert_eq!(q::transition(c, o.id, OrderMove::Close, now)?, 0);
            assert_eq!(q::transition(c, o.id, OrderMove::StartRefund, now)?, 1);
            Ok(())
        })
        .expect("write");
    };
    write(&mut c, 0);
    let before = session_counts(&mut c);
    for i in 1..=5 {
        write(&mut c, i);
    }
    let after = session_counts(&mut c);
    // One: the SHOW STATUS of `session_counts` (a raw query) prepares itself each time.
    assert_eq!(
        after["Com_stmt_prepare"] - before["Com_stmt_prepare"],
        1,
        "{before:?} -> {after:?}"
    );
}

/// The connection's id on the server.
#[cfg(feature = "mysql")]
fn connection_id(c: &mut campus_dal::Conn) -> diesel::QueryResult<i64> {
    use diesel::RunQueryDsl;
    #[derive(diesel::QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        id: i64,
    }
    let campus_dal::DbConn::Mysql(m) = c else {
        panic!("a MariaDB connection");
    };
    diesel::sql_query("SELECT CAST(CONNECTION_ID() AS SIGNED) AS id")
        .get_result::<Id>(m)
        .map(|r| r.id)
}

/// A connection taken a moment ago is not tested again; one the server dropped is found
/// out by the first query that fails on it, and the next checkout replaces it.
#[cfg(feature = "mysql")]
fn stale_connections_are_tested_and_replaced(url: &str) {
    let pools = Pools::connect(url, 1).expect("a pool of one");
    let f = &pools.freshness;
    let mut c = f.checkout(&pools.write).expect("conn");
    let id = connection_id(&mut c).expect("id");
    let before = session_counts(&mut c)["Com_select"];
    drop(c);
    for _ in 0..5 {
        let c = f.checkout(&pools.write).expect("conn");
        drop(c);
    }
    let mut c = f.checkout(&pools.write).expect("conn");
    // Five takes, no test (a SELECT) among them.
    assert_eq!(session_counts(&mut c)["Com_select"], before);
    drop(c);

    let out = std::process::Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "-e", &format!("KILL {id}")])
        .output()
        .expect("mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut c = f
        .checkout(&pools.write)
        .expect("the same connection, untested");
    let e = connection_id(&mut c).expect_err("the server dropped it");
    assert!(campus_dal::is_connection_lost(&e), "{e}");
    drop(c);
    let mut c = f.checkout(&pools.write).expect("a new connection");
    assert_ne!(connection_id(&mut c).expect("id"), id);
}

#[test]
#[cfg_attr(
    not(feature = "mysql"),
    ignore = "MariaDB support is the `mysql` feature: cargo test --features campus-dal/mysql"
)]
fn mariadb() {
    let (pools, name) = mysql_pools();
    exercise(&pools);
    transactions(&pools);
    coupon_stock(&pools, 16);
    #[cfg(feature = "mysql")]
    {
        shards_lock_apart(&pools);
        transaction_round_trips(&pools);
        writes_stay_prepared(&pools);
        let base = std::env::var("CAMPUS_TEST_MYSQL")
            .unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
        stale_connections_are_tested_and_replaced(&format!("{base}/{name}"));
    }
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

/// An active 1-yuan coupon of `stock`, one per user, as the coupon tests need it.
fn fixed_coupon(
    title: &'static str,
    stock: i64,
    created_by: campus_dal::UserId,
    now: NaiveDateTime,
) -> campus_dal::coupons::NewCoupon<'static> {
    campus_dal::coupons::NewCoupon {
        title,
        discount_kind: campus_dal::DiscountKind::Fixed,
        discount_fen: Some(100),
        percent_off: None,
        max_discount_fen: None,
        min_amount_fen: 0,
        stock,
        per_user_limit: 1,
        valid_days: Some(1),
        valid_until: None,
        kinds: None,
        keyword: None,
        status: campus_dal::CouponStatus::Active,
        created_by,
        created_at: now,
        updated_at: now,
    }
}
