//! Money under hostile and concurrent input: forged, garbled and replayed refund notifies,
//! a refund notify that never arrives, one Idempotency-Key sent many times at once, partial
//! refunds racing each other and a cancel, and a customer's cancel racing the payment.
//! Every outcome is checked three ways: the API, the ledger, and WeChat's (the
//! simulator's) side. Runs on SQLite, or MariaDB + Redis with CAMPUS_TEST_MODE=mariadb.

use std::future::Future;
use std::time::{Duration, Instant};

use crate::common::{ADMIN_OPENID, TestApp};
use campus_impl::db::DbError;
use serde_json::{Value, json};
use test_demo::sim::refund_faults::RefundOutcome;
use test_demo::sim::{JsapiParams, NotifyFaults, SimOrder};

/// Long enough for a loaded two-core machine; only failures ever wait this long.
const SETTLE: Duration = Duration::from_secs(30);

/// A refund refused with FREQUENCY_LIMITED is retried by the settle job, which leases each
/// refund for 30 s per attempt: a third refund of one order can need two leases.
const SETTLE_SPACED_REFUNDS: Duration = Duration::from_secs(90);

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// Polls `probe` until it answers `Ok`; `Err` carries what was seen, for the failure message.
async fn eventually<T, F, Fut>(what: &str, within: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + within;
    loop {
        match probe().await {
            Ok(v) => return v,
            Err(seen) => assert!(
                Instant::now() < deadline,
                "never: {what}; last seen: {seen}"
            ),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
struct Entry {
    event: String,
    amount: i64,
    source: String,
    reference: String,
}

async fn ledger(app: &TestApp, id: i64) -> Vec<Entry> {
    app.ctx
        .db
        .read(move |c| {
            campus_dal::payments::for_order(c, campus_impl::OrderId(id)).map_err(DbError::from)
        })
        .await
        .expect("ledger")
        .into_iter()
        .map(|e| Entry {
            event: e.event.to_string(),
            amount: e.amount_fen,
            source: e.source.to_string(),
            reference: e.reference,
        })
        .collect()
}

fn events<'a>(l: &'a [Entry], event: &str) -> Vec<&'a Entry> {
    l.iter().filter(|e| e.event == event).collect()
}

/// `(out_trade_no, outcome)` of every callback of `kind` kept for the record, oldest first.
async fn callbacks(app: &TestApp, kind: &'static str) -> Vec<(Option<String>, String)> {
    use campus_dal::schema::pay_notifications as pn;
    use diesel::prelude::*;
    app.ctx
        .db
        .read(move |c| {
            pn::table
                .filter(pn::kind.eq(kind))
                .order(pn::id.asc())
                .select((pn::out_trade_no, pn::outcome))
                .load::<(Option<String>, String)>(c)
                .map_err(DbError::from)
        })
        .await
        .expect("callbacks")
}

async fn refunds_of(app: &TestApp, id: i64) -> Vec<Value> {
    app.ctx
        .refunds
        .refunds_of(campus_impl::OrderId(id))
        .await
        .expect("refunds")
        .into_iter()
        .map(|v| serde_json::to_value(v).expect("json"))
        .collect()
}

async fn order(app: &TestApp, token: &str, id: i64) -> Value {
    let (s, o) = app.get(&format!("/api/v1/orders/{id}"), token).await;
    assert_eq!(s, 200, "{o}");
    o
}

fn sim_order(app: &TestApp, otn: &str) -> SimOrder {
    app.sim.order(otn).expect("WeChat knows the order")
}

async fn admin_refund(app: &TestApp, admin: &str, id: i64, fen: i64) -> (u16, Value) {
    app.post(
        &format!("/api/v1/admin/orders/{id}/refund"),
        admin,
        json!({"refund_fen": fen, "reason": "race"}),
    )
    .await
}

async fn cancel(app: &TestApp, token: &str, id: i64) -> (u16, Value) {
    app.post(&format!("/api/v1/orders/{id}/cancel"), token, json!({}))
        .await
}

fn str_of<'a>(v: &'a Value, k: &str) -> &'a str {
    v[k].as_str()
        .unwrap_or_else(|| panic!("{k} is a string in {v}"))
}

/// What a refund notify's `req_info` says.
#[derive(Clone)]
struct RefundNotice {
    out_trade_no: String,
    out_refund_no: String,
    refund_id: String,
    refund_fee: i64,
    total_fee: i64,
    status: &'static str,
}

impl RefundNotice {
    fn plain(&self) -> String {
        let fee = self.refund_fee.to_string();
        let total = self.total_fee.to_string();
        test_demo::sim::xml::build(
            "root",
            [
                ("out_refund_no", self.out_refund_no.as_str()),
                ("out_trade_no", self.out_trade_no.as_str()),
                ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
                ("refund_fee", fee.as_str()),
                ("refund_id", self.refund_id.as_str()),
                ("refund_recv_accout", "支付用户零钱"),
                ("refund_request_source", "API"),
                ("refund_status", self.status),
                ("settlement_refund_fee", fee.as_str()),
                ("settlement_total_fee", total.as_str()),
                ("success_time", "2026-11-30 10:00:00"),
                ("total_fee", total.as_str()),
                ("transaction_id", "4200000000000000000000000001"),
            ],
        )
    }

    /// Encrypted with `key` (WeChat uses the merchant's API key).
    fn req_info(&self, key: &str) -> String {
        test_demo::sim::crypto::refund_req_info_encrypt(key, &self.plain())
    }
}

/// The outer XML WeChat posts: ids in clear, the refund inside `req_info`.
fn refund_envelope(appid: &str, mch_id: &str, req_info: &str) -> String {
    test_demo::sim::xml::build(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", appid),
            ("mch_id", mch_id),
            ("nonce_str", "abcdefghijklmnop"),
            ("req_info", req_info),
        ],
    )
}

async fn post_refund_notify(app: &TestApp, body: String) -> (u16, String) {
    let r = app
        .client
        .post(app.url("/api/v1/pay/refund-notify"))
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("notify");
    let status = r.status().as_u16();
    (status, r.text().await.expect("text"))
}

/// The product's refusal: HTTP 200 (WeChat retries on anything else too, but a 5xx would
/// alarm) and exactly `return_code` FAIL with a reason.
fn assert_fail_reply(what: &str, status: u16, body: &str) {
    assert_eq!(status, 200, "{what}: {body}");
    let doc = test_demo::sim::xml::parse(body.as_bytes())
        .unwrap_or_else(|e| panic!("{what}: the reply is XML: {e:?}: {body}"));
    assert_eq!(doc.root, "xml", "{what}: {body}");
    assert_eq!(
        doc.fields.keys().map(String::as_str).collect::<Vec<_>>(),
        ["return_code", "return_msg"],
        "{what}: {body}"
    );
    assert_eq!(doc.fields["return_code"], "FAIL", "{what}: {body}");
    assert!(!doc.fields["return_msg"].is_empty(), "{what}: {body}");
    assert_eq!(
        body,
        campus_impl::wechat::pay::reply_fail(&doc.fields["return_msg"]),
        "{what}: the product's FAIL shape"
    );
}

#[actix_web::test]
async fn hostile_refund_notifies_change_nothing_and_a_genuine_one_lands_once() {
    // No jobs: only the notifies posted here can settle the refund.
    let app = TestApp::spawn().await;
    let customer = app.login("rn-hostile-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = str_of(&o, "out_trade_no").to_string();
    let other = app.paid_order(&customer, 200).await;
    let other_otn = str_of(&other, "out_trade_no").to_string();
    let no = format!("{otn}R1");
    // WeChat accepts the refund but sends no notify of its own.
    app.sim.set_refund_outcome(&no, Some(RefundOutcome::Hold));
    let (s, b) = admin_refund(&app, &admin, id, 120).await;
    assert_eq!(s, 200, "{b}");
    let refunds_before = refunds_of(&app, id).await;
    assert_eq!(refunds_before.len(), 1, "{refunds_before:?}");
    assert_eq!(
        refunds_before[0]["status"], "processing",
        "accepted by WeChat"
    );
    let order_before = order(&app, &customer, id).await;
    assert_eq!(
        (&order_before["status"], &order_before["refunded_fen"]),
        (&json!("paid"), &json!(0))
    );
    let ledger_before = ledger(&app, id).await;
    let callbacks_before = callbacks(&app, "refund").await;
    let refund_id = sim_order(&app, &otn).refunds[0].refund_id.clone();

    let cfg = app.sim.config().clone();
    let key = cfg.pay_key.as_str();
    let genuine = RefundNotice {
        out_trade_no: otn.clone(),
        out_refund_no: no.clone(),
        refund_id,
        refund_fee: 120,
        total_fee: 300,
        status: "SUCCESS",
    };
    let envelope = |req_info: &str| refund_envelope(&cfg.appid, &cfg.mch_id, req_info);
    let with = |f: &dyn Fn(&mut RefundNotice)| {
        let mut n = genuine.clone();
        f(&mut n);
        envelope(&n.req_info(key))
    };
    // (what, body, the outcome kept for the record: only notifies that decrypt and name
    // our refund or order are kept, as what WeChat said; junk is counted, not stored).
    let hostile: Vec<(&str, String, Option<&str>)> = vec![
        (
            "refund_fee above ours",
            with(&|n| n.refund_fee = 121),
            Some("mismatch"),
        ),
        (
            "refund_fee below ours",
            with(&|n| n.refund_fee = 119),
            Some("mismatch"),
        ),
        (
            "refund_fee of the whole order",
            with(&|n| n.refund_fee = 300),
            Some("mismatch"),
        ),
        (
            "our refund number on another order",
            with(&|n| n.out_trade_no = other_otn.clone()),
            Some("mismatch"),
        ),
        (
            "a refund number we never made",
            with(&|n| n.out_refund_no = format!("{otn}R9")),
            Some("unknown_refund"),
        ),
        (
            "encrypted with another key",
            envelope(&genuine.req_info("WrongPayKey0123456789abcdefghijk")),
            None,
        ),
        (
            "keyed with the md5 hashed twice",
            envelope(&genuine.req_info(&test_demo::sim::sign::md5_hex_lower(key))),
            None,
        ),
        (
            "another appid",
            refund_envelope("wx0000000000000000", &cfg.mch_id, &genuine.req_info(key)),
            None,
        ),
        (
            "another mch_id",
            refund_envelope(&cfg.appid, "1999999999", &genuine.req_info(key)),
            None,
        ),
        (
            "req_info not base64",
            envelope("%%% not base64 at all %%%"),
            None,
        ),
        ("req_info empty", envelope(""), None),
        (
            "req_info not a whole AES block",
            // base64 of 15 bytes.
            envelope("BwcHBwcHBwcHBwcHBwcH"),
            None,
        ),
        (
            "req_info of 64 arbitrary bytes",
            // base64 of 64 bytes of 0x5a.
            envelope(&format!("{}Wg==", "Wlpa".repeat(21))),
            None,
        ),
        (
            "req_info decrypting to no XML",
            envelope(&test_demo::sim::crypto::refund_req_info_encrypt(
                key,
                "refund_status=SUCCESS&refund_fee=120",
            )),
            None,
        ),
        (
            "req_info missing refund_status",
            envelope(&test_demo::sim::crypto::refund_req_info_encrypt(
                key,
                &genuine.plain().replace("refund_status", "x_status"),
            )),
            None,
        ),
        ("not XML", "<xml><return_code>SUCCESS".to_string(), None),
        ("empty body", String::new(), None),
    ];
    let mut kept = callbacks_before.clone();
    for (what, body, record) in &hostile {
        let (status, reply) = post_refund_notify(&app, body.clone()).await;
        assert_fail_reply(what, status, &reply);
        assert_eq!(refunds_of(&app, id).await, refunds_before, "{what}");
        assert_eq!(order(&app, &customer, id).await, order_before, "{what}");
        assert_eq!(ledger(&app, id).await, ledger_before, "{what}");
        if let Some(outcome) = record {
            let named = if *what == "our refund number on another order" {
                &other_otn
            } else {
                &otn
            };
            kept.push((Some(named.clone()), outcome.to_string()));
        }
        assert_eq!(callbacks(&app, "refund").await, kept, "{what}");
    }

    // WeChat delivers the real one several times at once, and again later.
    let body = envelope(&genuine.req_info(key));
    let replies =
        futures::future::join_all((0..10).map(|_| post_refund_notify(&app, body.clone()))).await;
    let success = campus_impl::wechat::pay::reply_success();
    for (status, reply) in &replies {
        assert_eq!((*status, reply.as_str()), (200, success), "{replies:?}");
    }
    let settled = refunds_of(&app, id).await;
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        (&settled[0]["status"], &settled[0]["refund_fen"]),
        (&json!("success"), &json!(120)),
        "{settled:?}"
    );
    let after = order(&app, &customer, id).await;
    assert_eq!(
        (&after["status"], &after["refunded_fen"]),
        (&json!("paid"), &json!(120)),
        "a partial refund keeps the order going: {after}"
    );
    let mut expected = ledger_before.clone();
    expected.push(Entry {
        event: "refunded".into(),
        amount: 120,
        source: "refund_notify".into(),
        reference: no.clone(),
    });
    assert_eq!(ledger(&app, id).await, expected, "one refund event");

    // After it landed: a replay is acknowledged and changes nothing; a forgery still fails.
    let (status, reply) = post_refund_notify(&app, body).await;
    assert_eq!((status, reply.as_str()), (200, success));
    let (status, reply) = post_refund_notify(&app, with(&|n| n.refund_fee = 180)).await;
    assert_fail_reply("a tampered amount after the real one", status, &reply);
    assert_eq!(ledger(&app, id).await, expected);
    assert_eq!(refunds_of(&app, id).await, settled);
    assert_eq!(order(&app, &customer, id).await["refunded_fen"], 120);
    // Nothing was refunded beyond the 120 at WeChat either.
    let at_wechat = sim_order(&app, &otn);
    assert_eq!(at_wechat.refunds.len(), 1, "{at_wechat:?}");
    assert_eq!(at_wechat.refunds[0].refund_fee, 120);
    assert!(sim_order(&app, &other_otn).refunds.is_empty());
}

#[actix_web::test]
async fn a_lost_refund_notify_is_settled_by_refundquery_once() {
    let app = TestApp::spawn().await;
    let customer = app.login("rn-lost-customer").await;
    let o = app.paid_order(&customer, 300).await;
    // Started after the payment so that it is the notify, not orderquery, that paid it.
    let jobs = app.ctx.clone().start_jobs();
    let id = o["id"].as_i64().expect("id");
    let otn = str_of(&o, "out_trade_no").to_string();
    let no = format!("{otn}R1");
    // The pay notify got through; every notify from now on is lost on the way.
    app.sim.set_notify_faults(NotifyFaults {
        drop_first: u32::MAX,
        ..Default::default()
    });
    let queries = app.sim.calls("refundquery");
    let (s, b) = cancel(&app, &customer, id).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("refunding")), "{b}");

    let done = eventually("the refund settled by refundquery", SETTLE, || {
        let (app, customer) = (&app, &customer);
        async move {
            let o = order(app, customer, id).await;
            if o["status"] == "refunded" {
                Ok(o)
            } else {
                Err(o.to_string())
            }
        }
    })
    .await;
    assert_eq!(done["refunded_fen"], 300, "{done}");
    assert!(app.sim.calls("refundquery") > queries, "asked WeChat");
    assert!(app.sim.calls("refund_notify_dropped") >= 1, "WeChat tried");
    assert_eq!(app.sim.calls("refund_notify_acked"), 0, "no notify came");
    assert_eq!(app.sim.calls("refund"), 1, "one refund call");
    // WeChat gives up on its notify; the settlement stays the single one.
    eventually("WeChat gave up on the refund notify", SETTLE, || {
        let app = &app;
        async move {
            match app.sim.calls("refund_notify_gave_up") {
                1 => Ok(()),
                n => Err(format!("gave up {n} times")),
            }
        }
    })
    .await;
    let expected = vec![
        Entry {
            event: "paid".into(),
            amount: 300,
            source: "notify".into(),
            reference: sim_order(&app, &otn)
                .transaction_id
                .expect("WeChat's transaction id"),
        },
        Entry {
            event: "refund_requested".into(),
            amount: 300,
            source: "api".into(),
            reference: no.clone(),
        },
        Entry {
            event: "refunded".into(),
            amount: 300,
            source: "refundquery".into(),
            reference: no.clone(),
        },
    ];
    assert_eq!(ledger(&app, id).await, expected);
    let rs = refunds_of(&app, id).await;
    assert_eq!(rs.len(), 1, "{rs:?}");
    assert_eq!(
        (&rs[0]["out_refund_no"], &rs[0]["status"], &rs[0]["cause"]),
        (&json!(no), &json!("success"), &json!("cancel")),
        "{rs:?}"
    );
    let at_wechat = sim_order(&app, &otn);
    assert_eq!(at_wechat.trade_state, "REFUND");
    assert_eq!(at_wechat.refunds.len(), 1, "{at_wechat:?}");
    assert_eq!(
        (
            at_wechat.refunds[0].refund_fee,
            at_wechat.refunds[0].status.as_str()
        ),
        (300, "SUCCESS")
    );

    // The notify turning up after all (a WeChat retry) is acknowledged and applies nothing.
    let cfg = app.sim.config().clone();
    let late = RefundNotice {
        out_trade_no: otn.clone(),
        out_refund_no: no.clone(),
        refund_id: at_wechat.refunds[0].refund_id.clone(),
        refund_fee: 300,
        total_fee: 300,
        status: "SUCCESS",
    };
    let (status, reply) = post_refund_notify(
        &app,
        refund_envelope(&cfg.appid, &cfg.mch_id, &late.req_info(&cfg.pay_key)),
    )
    .await;
    assert_eq!(
        (status, reply.as_str()),
        (200, campus_impl::wechat::pay::reply_success())
    );
    assert_eq!(ledger(&app, id).await, expected);
    assert_eq!(order(&app, &customer, id).await, done);
    jobs.abort();
}

async fn create_with_key(
    app: &TestApp,
    token: &str,
    key: &str,
    body: &Value,
) -> (u16, String, Value) {
    let r = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(body)
        .send()
        .await
        .expect("create");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("Idempotent-Replayed")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, replayed, r.json().await.unwrap_or(Value::Null))
}

async fn my_order_ids(app: &TestApp, token: &str) -> Vec<i64> {
    let (s, page) = app
        .get("/api/v1/orders?mine=customer&limit=100", token)
        .await;
    assert_eq!(s, 200, "{page}");
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|o| o["id"].as_i64().expect("id"))
        .collect()
}

#[actix_web::test]
async fn one_idempotency_key_sent_at_once_creates_one_order() {
    let app = TestApp::spawn().await;
    let customer = app.login("idem-race-customer").await;
    let body = json!({"kind": "takeout", "pickup": "Canteen 2", "dropoff": "Dorm 9", "note": "", "fee_fen": 200, "goods_fen": 1500});
    // The contract: the same key from the same user returns the first result and creates
    // nothing new. It names no "in flight" answer, so a concurrent duplicate gets the
    // first 201 too.
    for round in 0..3 {
        let key = format!("race-key-{round}");
        let before = my_order_ids(&app, &customer).await;
        let replies = futures::future::join_all(
            (0..10).map(|_| create_with_key(&app, &customer, &key, &body)),
        )
        .await;
        for (s, _, b) in &replies {
            assert_eq!(*s, 201, "round {round}: {replies:?}");
            assert_eq!(b, &replies[0].2, "round {round}: the first result for all");
        }
        let fresh = replies.iter().filter(|(_, r, _)| r == "false").count();
        assert_eq!(
            fresh, 1,
            "round {round}: one creation, the rest replayed: {replies:?}"
        );
        let after = my_order_ids(&app, &customer).await;
        assert_eq!(after.len(), before.len() + 1, "round {round}: {after:?}");
        assert_eq!(Some(after[0]), replies[0].2["id"].as_i64(), "round {round}");
        assert_eq!(replies[0].2["amount_fen"], 1700);
    }

    // Two different requests racing under one key: whichever came first is the key's
    // request; the same one again gets its 201, the other 409 idempotency_conflict.
    let other = json!({"kind": "errand", "pickup": "Library", "dropoff": "Gate", "note": "", "fee_fen": 300, "goods_fen": 0});
    let before = my_order_ids(&app, &customer).await;
    let replies = futures::future::join_all((0..10).map(|i| {
        let b = if i % 2 == 0 { &body } else { &other };
        create_with_key(&app, &customer, "mixed-key", b)
    }))
    .await;
    let winner = replies
        .iter()
        .find(|(s, r, _)| *s == 201 && r == "false")
        .map(|(_, _, b)| b.clone())
        .unwrap_or_else(|| panic!("one request created the order: {replies:?}"));
    let winner_is_body = winner["kind"] == "takeout";
    for (i, (s, _, b)) in replies.iter().enumerate() {
        if (i % 2 == 0) == winner_is_body {
            assert_eq!((*s, b), (201, &winner), "{i}: {replies:?}");
        } else {
            assert_eq!(
                (*s, code_of(b)),
                (409, "idempotency_conflict"),
                "{i}: {replies:?}"
            );
        }
    }
    let after = my_order_ids(&app, &customer).await;
    assert_eq!(after.len(), before.len() + 1, "{after:?}");
    assert_eq!(Some(after[0]), winner["id"].as_i64());
}

#[actix_web::test]
async fn concurrent_partial_refunds_never_exceed_what_was_paid() {
    let app = TestApp::spawn().await;
    // WeChat's rule that refunds of one order are spaced (a minute there), shortened.
    app.sim.set_refund_min_gap(Duration::from_secs(1));
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("partial-race-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = str_of(&o, "out_trade_no").to_string();

    let results =
        futures::future::join_all((0..8).map(|_| admin_refund(&app, &admin, id, 100))).await;
    let accepted: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 200)
        .map(|(_, b)| b)
        .collect();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 422 && code_of(b) == "refund_exceeds_paid")
        .count();
    assert_eq!((accepted.len(), refused), (3, 5), "{results:?}");
    for b in &accepted {
        let listed: i64 = b["refunds"]
            .as_array()
            .expect("refunds")
            .iter()
            .map(|r| r["refund_fen"].as_i64().expect("refund_fen"))
            .sum();
        assert!(listed <= 300, "never more than paid: {b}");
    }

    let nos: Vec<String> = (1..=3).map(|n| format!("{otn}R{n}")).collect();
    let rs = eventually("three refunds paid", SETTLE_SPACED_REFUNDS, || {
        let app = &app;
        async move {
            let rs = refunds_of(app, id).await;
            if rs.len() == 3 && rs.iter().all(|r| r["status"] == "success") {
                Ok(rs)
            } else {
                Err(format!("{rs:?}"))
            }
        }
    })
    .await;
    let mut listed: Vec<&str> = rs.iter().map(|r| str_of(r, "out_refund_no")).collect();
    listed.sort_unstable();
    assert_eq!(listed, nos, "one number each");
    assert!(
        rs.iter()
            .all(|r| r["refund_fen"] == 100 && r["cause"] == "admin")
    );
    let done = eventually("the order refunded", SETTLE, || {
        let (app, customer) = (&app, &customer);
        async move {
            let o = order(app, customer, id).await;
            if o["status"] == "refunded" {
                Ok(o)
            } else {
                Err(o.to_string())
            }
        }
    })
    .await;
    assert_eq!(done["refunded_fen"], 300);

    let l = ledger(&app, id).await;
    for event in ["refund_requested", "refunded"] {
        let mut refs: Vec<&str> = events(&l, event)
            .iter()
            .map(|e| {
                assert_eq!(e.amount, 100, "{l:?}");
                e.reference.as_str()
            })
            .collect();
        refs.sort_unstable();
        assert_eq!(refs, nos, "{event}: {l:?}");
    }
    assert!(events(&l, "refund_failed").is_empty(), "{l:?}");
    let at_wechat = sim_order(&app, &otn);
    assert_eq!(at_wechat.trade_state, "REFUND");
    assert_eq!(at_wechat.refunds.len(), 3, "{at_wechat:?}");
    assert!(
        at_wechat
            .refunds
            .iter()
            .all(|r| r.refund_fee == 100 && r.status == "SUCCESS"),
        "{at_wechat:?}"
    );
    // Fully refunded: the order holds no payment any more.
    let (s, b) = admin_refund(&app, &admin, id, 1).await;
    assert_eq!((s, code_of(&b)), (409, "invalid_transition"), "{b}");
    jobs.abort();
}

#[actix_web::test]
async fn a_cancel_racing_admin_refunds_refunds_exactly_what_was_paid() {
    let app = TestApp::spawn().await;
    app.sim.set_refund_min_gap(Duration::from_secs(1));
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("cancel-vs-admin-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = str_of(&o, "out_trade_no").to_string();
    // WeChat keeps every refund PROCESSING while the requests race, so none can finish
    // the order before the last request is answered.
    let possible: Vec<String> = (1..=4).map(|n| format!("{otn}R{n}")).collect();
    for no in &possible {
        app.sim.set_refund_outcome(no, Some(RefundOutcome::Hold));
    }
    let admins = futures::future::join_all((0..5).map(|_| admin_refund(&app, &admin, id, 100)));
    let (admins, (cs, cb)) = tokio::join!(admins, cancel(&app, &customer, id));
    for no in &possible {
        app.sim.set_refund_outcome(no, None);
    }
    let admin_ok = admins.iter().filter(|(s, _)| *s == 200).count();
    for (s, b) in &admins {
        assert!(
            *s == 200 || (*s, code_of(b)) == (422, "refund_exceeds_paid"),
            "{admins:?}"
        );
    }
    let cancelled = match (cs, cb["status"].as_str(), code_of(&cb)) {
        (200, Some("refunding"), _) => true,
        (409, _, "invalid_transition") => false,
        _ => panic!("cancel: {cs} {cb}"),
    };
    // Either the cancel took what the admins left, or the admins took everything first.
    if cancelled {
        assert!(admin_ok <= 2, "{admins:?}");
    } else {
        assert_eq!(admin_ok, 3, "{admins:?}");
    }

    let rs = eventually("every refund paid", SETTLE_SPACED_REFUNDS, || {
        let app = &app;
        async move {
            let rs = refunds_of(app, id).await;
            if !rs.is_empty() && rs.iter().all(|r| r["status"] == "success") {
                Ok(rs)
            } else {
                Err(format!("{rs:?}"))
            }
        }
    })
    .await;
    let by_admin = rs.iter().filter(|r| r["cause"] == "admin").count();
    let by_cancel: Vec<&Value> = rs.iter().filter(|r| r["cause"] == "cancel").collect();
    assert_eq!(by_admin, admin_ok, "{rs:?}");
    assert_eq!(by_cancel.len(), usize::from(cancelled), "{rs:?}");
    if let Some(c) = by_cancel.first() {
        assert_eq!(
            c["refund_fen"],
            json!(300 - 100 * admin_ok as i64),
            "{rs:?}"
        );
    }
    let total: i64 = rs
        .iter()
        .map(|r| r["refund_fen"].as_i64().expect("fen"))
        .sum();
    assert_eq!(total, 300, "exactly what was paid: {rs:?}");
    let done = eventually("the order refunded", SETTLE, || {
        let (app, customer) = (&app, &customer);
        async move {
            let o = order(app, customer, id).await;
            if o["status"] == "refunded" {
                Ok(o)
            } else {
                Err(o.to_string())
            }
        }
    })
    .await;
    assert_eq!(done["refunded_fen"], 300);
    let l = ledger(&app, id).await;
    let refunded: i64 = events(&l, "refunded").iter().map(|e| e.amount).sum();
    assert_eq!(
        (events(&l, "refunded").len(), refunded),
        (rs.len(), 300),
        "{l:?}"
    );
    let at_wechat = sim_order(&app, &otn);
    assert_eq!(at_wechat.refunds.len(), rs.len(), "{at_wechat:?}");
    assert_eq!(
        at_wechat.refunds.iter().map(|r| r.refund_fee).sum::<u64>(),
        300,
        "{at_wechat:?}"
    );
    jobs.abort();
}

/// How a round of the cancel/payment race ended, from the cancel's answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RaceEnd {
    /// Closed before the money came; the money that came anyway went back.
    ClosedThenRefunded,
    /// Paid first; the cancel refunded it.
    PaidThenCancelled,
    /// Paid first; the cancel came too late to close and was refused.
    PaidCancelRefused,
}

struct Round {
    id: i64,
    otn: String,
    amount: i64,
    end: RaceEnd,
}

/// Waits for a round's final state and checks it: the order, its refunds, its ledger and
/// WeChat's trade agree, and money WeChat took went back at most once.
async fn check_round(app: &TestApp, customer: &str, r: &Round) {
    let (id, amount) = (r.id, r.amount);
    let otn = r.otn.as_str();
    let (status, refunded_trade) = match r.end {
        RaceEnd::ClosedThenRefunded => ("closed", true),
        RaceEnd::PaidThenCancelled => ("refunded", true),
        RaceEnd::PaidCancelRefused => ("paid", false),
    };
    let want_fen = if refunded_trade { amount } else { 0 };
    let o = eventually(
        &format!("round {id} settles as {:?}", r.end),
        SETTLE,
        || async move {
            let o = order(app, customer, id).await;
            let rs = refunds_of(app, id).await;
            let settled = !refunded_trade || rs.iter().any(|x| x["status"] == "success");
            if o["status"] == status && o["refunded_fen"] == want_fen && settled {
                Ok(o)
            } else {
                let pay_callbacks: Vec<String> = callbacks(app, "pay")
                    .await
                    .into_iter()
                    .filter(|(n, _)| n.as_deref() == Some(otn))
                    .map(|(_, outcome)| outcome)
                    .collect();
                Err(format!(
                    "{o} {rs:?} pay callbacks {pay_callbacks:?} at WeChat {:?}",
                    app.sim.order(otn)
                ))
            }
        },
    )
    .await;
    let rs = refunds_of(app, id).await;
    let l = ledger(app, id).await;
    let at_wechat = sim_order(app, otn);
    let ctx = format!("round {id} {:?}: {o} {rs:?} {l:?} {at_wechat:?}", r.end);
    assert_eq!(at_wechat.total_fee, amount as u64, "{ctx}");
    let paid = events(&l, "paid");
    assert_eq!(paid.len(), 1, "{ctx}");
    assert_eq!(paid[0].amount, amount, "{ctx}");
    assert!(events(&l, "refund_failed").is_empty(), "{ctx}");
    if refunded_trade {
        let cause = if r.end == RaceEnd::ClosedThenRefunded {
            "paid_after_close"
        } else {
            "cancel"
        };
        assert_eq!(rs.len(), 1, "{ctx}");
        assert_eq!(
            (&rs[0]["cause"], &rs[0]["refund_fen"], &rs[0]["status"]),
            (&json!(cause), &json!(amount), &json!("success")),
            "{ctx}"
        );
        let back = events(&l, "refunded");
        assert_eq!(back.len(), 1, "{ctx}");
        assert_eq!(back[0].amount, amount, "{ctx}");
        assert_eq!(at_wechat.trade_state, "REFUND", "{ctx}");
        assert_eq!(at_wechat.refunds.len(), 1, "{ctx}");
        assert_eq!(
            (
                at_wechat.refunds[0].refund_fee,
                at_wechat.refunds[0].status.as_str()
            ),
            (amount as u64, "SUCCESS"),
            "{ctx}"
        );
    } else {
        assert!(rs.is_empty(), "{ctx}");
        assert!(events(&l, "refund_requested").is_empty(), "{ctx}");
        assert!(events(&l, "refunded").is_empty(), "{ctx}");
        assert_eq!(at_wechat.trade_state, "SUCCESS", "{ctx}");
        assert!(at_wechat.refunds.is_empty(), "{ctx}");
    }
}

#[actix_web::test]
async fn a_cancel_racing_the_payment_ends_paid_or_refunded_exactly_once() {
    let app = TestApp::spawn().await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("cancel-vs-pay-customer").await;
    let mut rounds = Vec::new();
    for i in 0..16u64 {
        let amount = 100 + i as i64;
        let o = app.create_order(&customer, amount).await;
        let id = o["id"].as_i64().expect("id");
        let otn = str_of(&o, "out_trade_no").to_string();
        let params: JsapiParams =
            serde_json::from_value(app.pay_params(&customer, id).await).expect("JSAPI parameters");
        // Which side starts first, and how far ahead, varies by round so that both orders
        // of arrival and the window between orderquery and the close all get their turn.
        let head_start = Duration::from_millis(3 * (i / 2));
        let (pay_after, cancel_after) = if i % 2 == 0 {
            (head_start, Duration::ZERO)
        } else {
            (Duration::ZERO, head_start)
        };
        let pay = async {
            tokio::time::sleep(pay_after).await;
            app.sim.request_payment(&params)
        };
        let cancelling = async {
            tokio::time::sleep(cancel_after).await;
            cancel(&app, &customer, id).await
        };
        let (paid, (s, b)) = tokio::join!(pay, cancelling);
        // WeChat cannot close its order within 5 minutes of unifiedorder: the user's
        // payment always goes through there.
        paid.unwrap_or_else(|e| panic!("round {i}: WeChat takes the payment: {e}"));
        let end = match (s, b["status"].as_str(), code_of(&b)) {
            (200, Some("closed"), _) => RaceEnd::ClosedThenRefunded,
            (200, Some("refunding" | "refunded"), _) => RaceEnd::PaidThenCancelled,
            (409, _, "invalid_transition") => RaceEnd::PaidCancelRefused,
            _ => panic!("round {i}: the cancel answered {s} {b}"),
        };
        rounds.push(Round {
            id,
            otn,
            amount,
            end,
        });
    }
    for r in &rounds {
        check_round(&app, &customer, r).await;
    }
    // A second look once every round has had time: nothing moved, nothing doubled.
    for r in &rounds {
        check_round(&app, &customer, r).await;
    }
    let ends: Vec<RaceEnd> = rounds.iter().map(|r| r.end).collect();
    eprintln!("cancel/payment race outcomes: {ends:?}");
    jobs.abort();
}
