//! Backups across backends: orders are written while the backup runs, the backup is
//! restored into a fresh database of the OTHER backend, and every table's row count and
//! content checksum must match the snapshot the backup took. Damaged backups and
//! non-empty targets are refused and leave the target as it was.
//!
//! Needs MariaDB (127.0.0.1:3306, root, no password, or CAMPUS_TEST_MYSQL), so it is built
//! only with the `mysql` feature:
//! `cargo test -p campus-impl --features mysql --test backup_round_trip`.
#![cfg(feature = "mysql")]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use campus_dal::backup::{TABLES, Value};
use campus_dal::orders::{self, NewOrder};
use campus_dal::{
    CallbackKind, CallbackOutcome, Conn, CouponStatus, CreditKind, DiscountKind, DrawStatus,
    ExpenseKind, ExpenseSource, LedgerEvent, LedgerSource, MessageChannel, MessageEvent,
    MessageOutcome, MpMessageStatus, OrderKind, OrderStatus, Pools, RefundCause, RefundStatus,
    Role, UserCouponStatus, UserId,
};
use campus_impl::backups::format::{self, Visitor};
use campus_impl::backups::{BackupError, Backups, NoProgress};
use campus_impl::storage::Storage;
use sha2::{Digest, Sha256};

fn mysql_url(tag: &str) -> String {
    let base =
        std::env::var("CAMPUS_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into());
    let name = format!("campus_backup_{tag}_{}", std::process::id());
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
    format!("{base}/{name}")
}

fn sqlite_url(dir: &std::path::Path, name: &str) -> String {
    format!("sqlite://{}", dir.join(name).display())
}

fn storage(dir: &std::path::Path) -> Storage {
    let mut s = campus_impl::Settings::defaults().expect("defaults");
    s.storage_url = format!("file://{}", dir.join("store").display());
    Storage::build(&s, campus_impl::telemetry::Metrics::new()).expect("storage")
}

fn backups(pools: &Pools, storage: &Storage) -> Backups {
    Backups::new(pools.clone(), storage.clone(), 4, 30)
}

fn new_order<'a>(otn: &'a str, customer: UserId, now: chrono::NaiveDateTime) -> NewOrder<'a> {
    NewOrder {
        out_trade_no: otn,
        kind: OrderKind::Express,
        status: OrderStatus::Paid,
        pickup: "北门快递站 3 号柜",
        dropoff: "7 号楼 502",
        note: "quote \" backslash \\ newline \n tab \t",
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

/// An order and its `paid` ledger event in one transaction: a backup that is not one
/// snapshot would hold an event without its order (or the reverse).
fn paid_order(c: &mut Conn, otn: &str, customer: UserId) -> campus_dal::QueryResult<()> {
    campus_dal::transaction(c, |c| {
        let now = campus_dal::time::now();
        let o = orders::insert(c, &new_order(otn, customer, now))?;
        campus_dal::payments::append(
            c,
            &campus_dal::payments::NewEvent {
                order_id: o.id,
                out_trade_no: otn,
                event: LedgerEvent::Paid,
                amount_fen: 300,
                source: LedgerSource::Api,
                reference: otn,
                at: now,
            },
        )?;
        Ok(())
    })
}

/// Rows in every table (none left empty), `orders` of them paid orders.
fn seed(pools: &Pools, orders: usize) {
    let mut c = pools.write.get().expect("conn");
    campus_dal::migrate::run_pending(&mut c).expect("migrate");
    let now = campus_dal::time::now();
    let r: campus_dal::QueryResult<()> = campus_dal::transaction(&mut c, |c| {
        let mut users = Vec::new();
        for i in 0..20 {
            let role = if i % 5 == 0 {
                Role::Runner
            } else {
                Role::Customer
            };
            users.push(campus_dal::users::upsert_by_openid(
                c,
                &format!("openid-{i}"),
                role,
                now,
            )?);
        }
        let u = users[1].id;
        campus_dal::users::insert_bind_code(c, "123456", u, now)?;
        campus_dal::idempotency::insert(c, u, "key-1", "hash", 201, "{\"id\":1}", now)?;
        for i in 0..orders {
            paid_order(c, &format!("CE{i:010}"), users[i % users.len()].id)?;
        }
        let first = orders::find_by_out_trade_no(c, "CE0000000000")?
            .ok_or(campus_dal::DieselError::NotFound)?;
        campus_dal::refunds::insert(
            c,
            &campus_dal::refunds::NewRefund {
                order_id: first.id,
                out_refund_no: "CE0000000000R1",
                refund_fen: 100,
                reason: "cancelled",
                cause: RefundCause::Cancel,
                status: RefundStatus::Requested,
                requested_by: None,
                created_at: now,
                updated_at: now,
            },
        )?;
        campus_dal::payments::record_notification(
            c,
            CallbackKind::Pay,
            Some("CE0000000000"),
            CallbackOutcome::Paid,
            "<xml>…</xml>",
            now,
        )?;
        campus_dal::subscriptions::grant(
            c,
            &campus_dal::subscriptions::NewCredit {
                user: u,
                kind: CreditKind::Subscribe,
                template_id: Some("tpl"),
                form_id: None,
                expires_at: None,
                at: now,
            },
        )?;
        campus_dal::subscriptions::log_message(
            c,
            &campus_dal::subscriptions::NewMessage {
                user: u,
                channel: MessageChannel::Subscribe,
                template_id: Some("tpl"),
                event: MessageEvent::Paid,
                order_id: Some(first.id),
                outcome: MessageOutcome::Sent,
                at: now,
            },
        )?;
        let coupon = campus_dal::coupons::insert(
            c,
            &campus_dal::coupons::NewCoupon {
                title: "满10元85折",
                discount_kind: DiscountKind::Percent,
                discount_fen: None,
                percent_off: Some(15),
                max_discount_fen: Some(300),
                min_amount_fen: 1000,
                stock: 5,
                per_user_limit: 2,
                valid_days: None,
                valid_until: Some(now + chrono::Duration::days(7)),
                kinds: Some("express,takeout"),
                keyword: Some("领券"),
                status: CouponStatus::Active,
                created_by: u,
                created_at: now,
                updated_at: now,
            },
        )?;
        assert!(campus_dal::coupons::take_any(c, coupon.id)?);
        let claim = campus_dal::coupons::insert_claim(
            c,
            &campus_dal::coupons::NewUserCoupon {
                coupon_id: coupon.id,
                user_id: u,
                seq: 1,
                status: UserCouponStatus::Available,
                claimed_at: now,
                expires_at: now + chrono::Duration::days(7),
                updated_at: now,
            },
        )?;
        campus_dal::coupons::lock_for_order(c, claim.id, first.id, now)?;
        campus_dal::coupons::use_for_order(c, first.id, now)?;
        let draw = campus_dal::draws::insert(
            c,
            &campus_dal::draws::NewDraw {
                title: "周五抽奖",
                status: DrawStatus::Open,
                draw_at: now + chrono::Duration::hours(1),
                lock_at: now + chrono::Duration::minutes(59),
                creator_id: u,
                created_at: now,
                updated_at: now,
            },
        )?;
        campus_dal::draws::insert_prizes(
            c,
            &[campus_dal::draws::NewDrawPrize {
                draw_id: draw.id,
                position: 0,
                name: "满减券",
                count: 1,
                coupon_id: Some(coupon.id),
            }],
        )?;
        campus_dal::draws::join(c, draw.id, u, now)?;
        // Drawn by hand: a winner row needs a drawn draw's seed and a prize.
        campus_dal::draws::lock(
            c,
            draw.id,
            &"ab".repeat(32),
            "test",
            now + chrono::Duration::hours(1),
        )?;
        campus_dal::draws::mark_drawn(c, draw.id, now)?;
        let prize = campus_dal::draws::prizes(c, draw.id)?;
        campus_dal::draws::insert_winners(
            c,
            &[campus_dal::draws::NewDrawWinner {
                draw_id: draw.id,
                user_id: u,
                prize_id: prize[0].id,
                user_coupon_id: Some(claim.id),
            }],
        )?;
        // Expenses: a group, a leader, an expense voided by its reversal, one paid back.
        let group = campus_dal::expenses::insert_group(
            c,
            &campus_dal::expenses::NewGroup {
                name: "后勤组",
                created_by: u,
                created_at: now,
            },
        )?;
        campus_dal::expenses::insert_member(
            c,
            &campus_dal::expenses::NewMember {
                user_id: u,
                group_id: group.id,
                leader: true,
                added_by: u,
                added_at: now,
                updated_at: now,
            },
        )?;
        let spent =
            |what: &'static str, amount_fen: i64, reverses_id: Option<campus_dal::ExpenseId>| {
                campus_dal::expenses::NewExpense {
                    group_id: group.id,
                    user_id: u,
                    kind: if reverses_id.is_some() {
                        ExpenseKind::Reversal
                    } else {
                        ExpenseKind::Expense
                    },
                    amount_fen,
                    what,
                    spent_on: "2026-11-30",
                    quarter: "2026Q4",
                    reverses_id,
                    source: ExpenseSource::OfficialAccount,
                    recorded_by: u,
                    created_at: now,
                }
            };
        let tea = campus_dal::expenses::insert(c, &spent("下午茶", 3550, None))?;
        campus_dal::expenses::insert(c, &spent("下午茶", -3550, Some(tea.id)))?;
        let paper = campus_dal::expenses::insert(c, &spent("A4 paper, 2 reams", 4200, None))?;
        let r = campus_dal::expenses::insert_reimbursement(
            c,
            &campus_dal::expenses::NewReimbursement {
                group_id: group.id,
                quarter: "2026Q4",
                total_fen: 4200,
                expense_count: 1,
                reimbursed_by: u,
                reimbursed_at: now,
            },
        )?;
        campus_dal::expenses::mark_reimbursed(c, &[paper.id], r.id)?;
        campus_dal::mp_messages::enqueue(
            c,
            &campus_dal::mp_messages::NewMpMessage {
                user_id: u,
                touser: "mp-openid-1",
                template_id: "mp-tpl",
                event: MessageEvent::Paid,
                order_id: Some(first.id),
                event_key: "order:1:paid:1",
                payload: r#"{"touser":"mp-openid-1","data":{"first":{"value":"已支付"}}}"#,
                status: MpMessageStatus::Pending,
                attempts: 0,
                next_attempt_at: now,
                created_at: now,
                updated_at: now,
            },
        )?;
        let photo = campus_dal::uploads::insert(
            c,
            &campus_dal::uploads::NewUpload {
                user_id: u,
                purpose: campus_dal::UploadPurpose::DeliveryPhoto,
                order_id: Some(first.id),
                object_key: "3f1d.jpg",
                url: "https://cdn.example.com/3f1d.jpg",
                byte_size: 48_213,
                width: 1080,
                height: 1440,
                check_status: campus_dal::MediaCheck::Pending,
                submit_after: None,
                created_at: now,
                updated_at: now,
            },
        )?;
        campus_dal::uploads::submitted(c, photo.id, "trace-1", now)?;
        campus_dal::uploads::record_verdict(c, "trace-1", campus_dal::MediaCheck::Pass, now)?;
        campus_dal::uploads::show_delivery_photo(c, first.id, &photo.url, now)?;
        campus_dal::uploads::show_avatar(c, u, "https://cdn.example.com/av.png", now)?;
        campus_dal::content_checks::insert(
            c,
            &[campus_dal::content_checks::NewContentCheck {
                user_id: u,
                subject: campus_dal::ContentSubject::Order,
                subject_id: first.id.0,
                field: "note",
                content: "放在门口 待审",
                verdict: campus_dal::ContentVerdict::Review,
                label: Some(21000),
                check_after: None,
                created_at: now,
                updated_at: now,
                checked_at: Some(now),
            }],
        )?;
        Ok(())
    });
    r.expect("seed");
}

/// Per table: row count and SHA-256 of a canonical serialization of its rows (JSON
/// arrays in primary-key order), over the rows `keep` accepts.
type Digests = BTreeMap<String, (u64, String)>;

fn digest_rows(rows: impl IntoIterator<Item = Vec<Value>>) -> (u64, String) {
    let mut sha = Sha256::new();
    let mut n = 0;
    for row in rows {
        let json: Vec<serde_json::Value> = row.iter().map(format::to_json).collect();
        sha.update(serde_json::to_vec(&json).expect("json"));
        sha.update(b"\n");
        n += 1;
    }
    (n, hex::encode(sha.finalize()))
}

fn rows_of(pools: &Pools) -> BTreeMap<String, Vec<Vec<Value>>> {
    let mut c = pools.read.get().expect("conn");
    let mut all = BTreeMap::new();
    for t in TABLES {
        let mut rows = Vec::new();
        (t.dump)(&mut c, &mut |r| {
            rows.push(r);
            Ok(())
        })
        .expect("dump");
        all.insert(t.name.to_string(), rows);
    }
    all
}

fn digests(rows: &BTreeMap<String, Vec<Vec<Value>>>) -> Digests {
    rows.iter()
        .map(|(t, r)| (t.clone(), digest_rows(r.iter().cloned())))
        .collect()
}

/// The rows as the backup file holds them.
struct Collect(BTreeMap<String, Vec<Vec<Value>>>, String);

impl Visitor for Collect {
    fn table(
        &mut self,
        spec: &'static campus_dal::backup::TableSpec,
        _: u64,
    ) -> Result<(), format::VisitError> {
        self.1 = spec.name.to_string();
        self.0.entry(self.1.clone()).or_default();
        Ok(())
    }
    fn row(&mut self, row: Vec<Value>) -> Result<(), format::VisitError> {
        self.0.entry(self.1.clone()).or_default().push(row);
        Ok(())
    }
    fn end(&mut self) -> Result<(), format::VisitError> {
        Ok(())
    }
}

fn max_id(rows: &[Vec<Value>]) -> i64 {
    rows.iter()
        .filter_map(|r| match r.first() {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        })
        .max()
        .unwrap_or(0)
}

fn assert_empty(pools: &Pools) {
    let mut c = pools.write.get().expect("conn");
    assert_eq!(
        campus_dal::backup::first_nonempty_table(&mut c).expect("tables"),
        None,
        "the target must hold no row"
    );
}

async fn round_trip(source_url: &str, target_url: &str, spare_url: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = storage(dir.path());
    let source = Pools::connect(source_url, 4).expect("source");
    seed(&source, 3000);
    let svc = backups(&source, &store);

    // A writer adds paid orders as fast as it can while the backup runs.
    let stop = Arc::new(AtomicBool::new(false));
    let written = Arc::new(AtomicU64::new(0));
    let writer = {
        let (pools, stop, written) = (source.clone(), stop.clone(), written.clone());
        std::thread::spawn(move || {
            let mut c = pools.write.get().expect("conn");
            let mut i = 0u64;
            while !stop.load(Ordering::SeqCst) {
                paid_order(&mut c, &format!("CW{i:010}"), UserId(2)).expect("writer");
                i += 1;
                written.store(i, Ordering::SeqCst);
            }
        })
    };
    while written.load(Ordering::SeqCst) < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let before = written.load(Ordering::SeqCst);
    let made = svc.backup(Arc::new(NoProgress)).await.expect("backup");
    let during = written.load(Ordering::SeqCst) - before;
    stop.store(true, Ordering::SeqCst);
    writer.join().expect("writer thread");
    assert!(during > 0, "orders were written while the backup ran");
    assert!(made.key.starts_with("backups/"), "{}", made.key);

    // The snapshot in the file: orders and their events together, and exactly the
    // source's rows up to the snapshot (the writer only appends).
    let bytes = store.get(&made.key).await.expect("get").expect("stored");
    let mut file = Collect(BTreeMap::new(), String::new());
    let summary = format::read(&bytes[..], &mut file).expect("reads");
    let snap = file.0;
    assert_eq!(
        snap["orders"].len(),
        snap["payment_events"].len(),
        "one snapshot: every order with its ledger event"
    );
    let src = rows_of(&source);
    for (table, rows) in &snap {
        let limit = max_id(rows);
        let expected: Vec<Vec<Value>> = if table == "orders" || table == "payment_events" {
            src[table]
                .iter()
                .filter(|r| matches!(r.first(), Some(Value::Int(i)) if *i <= limit))
                .cloned()
                .collect()
        } else {
            src[table].clone()
        };
        assert_eq!(
            digest_rows(expected),
            digest_rows(rows.iter().cloned()),
            "{table}: the backup holds the source as of one moment"
        );
        // The tables of runner payouts and bills are backed up by the same generated code
        // but this fixture does not fill them yet.
        if !["earnings", "withdrawals", "reconciliations"].contains(&table.as_str()) {
            assert!(!rows.is_empty(), "{table} has rows in the test");
        }
    }
    assert!(
        src["orders"].len() > snap["orders"].len(),
        "later orders are not in the backup"
    );
    assert_eq!(
        summary.rows(),
        snap.values().map(|r| r.len() as u64).sum::<u64>()
    );

    // Restore into the other backend: every table's count and checksum match.
    let target = Pools::connect(target_url, 2).expect("target");
    let tsvc = backups(&target, &store);
    let restored = tsvc
        .restore(&made.key, Arc::new(NoProgress))
        .await
        .expect("restore");
    assert_eq!(restored.rows(), summary.rows());
    assert_eq!(digests(&rows_of(&target)), digests(&snap));

    // New rows get new ids after the restored ones (sequences were moved on).
    {
        let mut c = target.write.get().expect("conn");
        paid_order(&mut c, "CN0000000001", UserId(2)).expect("insert after restore");
        let o = orders::find_by_out_trade_no(&mut c, "CN0000000001")
            .expect("find")
            .expect("there");
        assert!(o.id.0 > max_id(&snap["orders"]), "id {} reused", o.id.0);
    }

    // A database that holds data is refused, and keeps its rows.
    let before = digests(&rows_of(&target));
    let e = tsvc
        .restore(&made.key, Arc::new(NoProgress))
        .await
        .expect_err("not empty");
    assert!(matches!(e, BackupError::NotEmpty { .. }), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(digests(&rows_of(&target)), before);

    // Damaged backups are refused before anything is written: the spare stays empty.
    let spare = Pools::connect(spare_url, 2).expect("spare");
    let ssvc = backups(&spare, &store);
    let cut = bytes.slice(..bytes.len() * 2 / 3);
    store
        .put("backups/broken/truncated.jsonl.gz", cut, "application/gzip")
        .await
        .expect("put");
    let mut flipped = bytes.to_vec();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x20;
    store
        .put(
            "backups/broken/corrupt.jsonl.gz",
            flipped.into(),
            "application/gzip",
        )
        .await
        .expect("put");
    for key in [
        "backups/broken/truncated.jsonl.gz",
        "backups/broken/corrupt.jsonl.gz",
    ] {
        let e = ssvc
            .restore(key, Arc::new(NoProgress))
            .await
            .expect_err("damaged");
        let msg = e.to_string();
        assert!(
            msg.contains("damaged") || msg.contains("cut short"),
            "{key}: {msg}"
        );
        assert_empty(&spare);
        let mut c = spare.write.get().expect("conn");
        assert!(
            !campus_dal::backup::has_schema(&mut c).expect("schema"),
            "{key}: not even the schema was created"
        );
    }
    // The same spare takes the good backup afterwards.
    ssvc.restore(&made.key, Arc::new(NoProgress))
        .await
        .expect("restore into the spare");
    assert_eq!(digests(&rows_of(&spare)), digests(&snap));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_to_mariadb_while_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(
        &sqlite_url(dir.path(), "source.db"),
        &mysql_url("s2m_target"),
        &mysql_url("s2m_spare"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_to_sqlite_while_writing() {
    let dir = tempfile::tempdir().expect("tempdir");
    round_trip(
        &mysql_url("m2s_source"),
        &sqlite_url(dir.path(), "target.db"),
        &sqlite_url(dir.path(), "spare.db"),
    )
    .await;
}
