//! Refunds: an unclear answer from WeChat never frees the money. Only a definite refusal
//! that `refundquery` confirms releases a reservation; NOTENOUGH is retried, CHANGE waits
//! for a person, a late SUCCESS is applied. Runs on SQLite, or MariaDB + Redis with
//! CAMPUS_TEST_MODE=mariadb.

use std::time::Duration;

use crate::common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};
use test_demo::sim::refund_faults::{RefundFault, RefundOutcome, RefundReply};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn admin_refund(app: &TestApp, admin: &str, id: i64, fen: i64) -> (u16, Value) {
    app.post(
        &format!("/api/v1/admin/orders/{id}/refund"),
        admin,
        json!({"refund_fen": fen, "reason": "test"}),
    )
    .await
}

/// The order's refunds as the admin endpoint shows them (an order's refunds are listed by
/// every admin refund reply; a refund of 0 would be refused, so read them directly).
async fn refunds_of(app: &TestApp, id: i64) -> Vec<Value> {
    let views = app
        .ctx
        .refunds
        .refunds_of(campus_impl::OrderId(id))
        .await
        .expect("refunds");
    views
        .into_iter()
        .map(|v| serde_json::to_value(v).expect("json"))
        .collect()
}

/// Waits until the order's refund `no` has status `want`.
async fn wait_refund(app: &TestApp, id: i64, no: &str, want: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let rs = refunds_of(app, id).await;
        if let Some(r) = rs.iter().find(|r| r["out_refund_no"] == no)
            && r["status"] == want
        {
            return r.clone();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refund {no} never reached {want}: {rs:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A refund notify as WeChat sends it, for a refund WeChat decided on its own.
fn refund_notify(app: &TestApp, otn: &str, no: &str, fee: i64, status: &str) -> String {
    let cfg = app.sim.config();
    let fee = fee.to_string();
    let inner = test_demo::sim::xml::build(
        "root",
        [
            ("out_refund_no", no),
            ("out_trade_no", otn),
            ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
            ("refund_fee", fee.as_str()),
            ("refund_id", "50300000000000000000000000001"),
            ("refund_recv_accout", "支付用户零钱"),
            ("refund_request_source", "API"),
            ("refund_status", status),
            ("settlement_refund_fee", fee.as_str()),
            ("settlement_total_fee", fee.as_str()),
            ("success_time", "2026-11-30 10:00:00"),
            ("total_fee", fee.as_str()),
            ("transaction_id", "4200000000000000000000000001"),
        ],
    );
    let req_info = test_demo::sim::crypto::refund_req_info_encrypt(&cfg.pay_key, &inner);
    test_demo::sim::xml::build(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", cfg.appid.as_str()),
            ("mch_id", cfg.mch_id.as_str()),
            ("nonce_str", "abcdefghijklmnop"),
            ("req_info", req_info.as_str()),
        ],
    )
}

async fn post_refund_notify(app: &TestApp, body: String) -> String {
    app.client
        .post(app.url("/api/v1/pay/refund-notify"))
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("notify")
        .text()
        .await
        .expect("text")
}

fn unclear(reply: RefundReply, accepted: bool) -> RefundFault {
    RefundFault { reply, accepted }
}

#[actix_web::test]
async fn unclear_refund_answers_keep_the_money_reserved_under_one_number() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_timeout_secs = 1),
        ..Options::default()
    })
    .await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("unclear-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let cases = [
        unclear(RefundReply::Garbled, false),
        unclear(RefundReply::Garbled, true),
        unclear(RefundReply::BadSign, true),
        unclear(RefundReply::NoRefundId, true),
        unclear(RefundReply::HttpStatus(500), false),
        unclear(RefundReply::HttpStatus(404), true),
        unclear(RefundReply::ErrCode("SYSTEMERROR".into()), false),
        unclear(RefundReply::Slow(Duration::from_millis(1500)), true),
    ];
    for fault in cases {
        let o = app.paid_order(&customer, 300).await;
        let id = o["id"].as_i64().expect("id");
        let otn = o["out_trade_no"].as_str().expect("otn").to_string();
        let no = format!("{otn}R1");
        // The refund stays PROCESSING at WeChat until the test lets it end.
        app.sim.set_refund_outcome(&no, Some(RefundOutcome::Hold));
        app.sim.script_refund_reply(fault.clone());
        let (s, b) = admin_refund(&app, &admin, id, 300).await;
        assert_eq!(s, 200, "{fault:?}: {b}");
        let r = &b["refunds"][0];
        assert_eq!(r["out_refund_no"], no.as_str());
        assert!(
            matches!(r["status"].as_str(), Some("requested" | "processing")),
            "{fault:?}: an unclear answer settles nothing: {r}"
        );
        // The money stays reserved: nothing more can be refunded.
        let (s, b) = admin_refund(&app, &admin, id, 1).await;
        assert_eq!(
            (s, code_of(&b)),
            (422, "refund_exceeds_paid"),
            "{fault:?}: {b}"
        );
        // WeChat finishes it: the same number settles, once.
        app.sim.set_refund_outcome(&no, None);
        wait_refund(&app, id, &no, "success").await;
        let o = app.wait_status(&admin, id, "refunded").await;
        assert_eq!(o["refunded_fen"], 300, "{fault:?}");
        let sim = app.sim.order(&otn).expect("sim order");
        assert_eq!(sim.refunds.len(), 1, "{fault:?}: one refund at WeChat");
        assert_eq!(refunds_of(&app, id).await.len(), 1, "{fault:?}");
    }
    jobs.abort();
}

#[actix_web::test]
async fn a_refusal_confirmed_by_refundquery_frees_the_money_and_a_late_success_is_applied() {
    let app = TestApp::spawn().await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("refused-customer").await;
    let admin = app.login(ADMIN_OPENID).await;

    // Admin refund refused with a business code; WeChat knows no such refund.
    let o = app.paid_order(&customer, 400).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    app.sim
        .script_refund_reply(unclear(RefundReply::ErrCode("ERROR".into()), false));
    let (s, b) = admin_refund(&app, &admin, id, 300).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["refunds"][0]["status"], "failed", "{b}");
    assert!(b["refunds"][0]["last_error"].is_string(), "{b}");
    assert!(
        app.sim.calls("refundquery") >= 1,
        "the refusal is confirmed before the money is released"
    );
    // Released: a new refund under a new number goes through.
    let (s, b) = admin_refund(&app, &admin, id, 100).await;
    assert_eq!(s, 200, "{b}");
    let second = format!("{otn}R2");
    wait_refund(&app, id, &second, "success").await;

    // WeChat paid the first one after all: applied (reserved again), not ignored.
    let first = format!("{otn}R1");
    let reply = post_refund_notify(&app, refund_notify(&app, &otn, &first, 300, "SUCCESS")).await;
    assert!(reply.contains("SUCCESS"), "{reply}");
    wait_refund(&app, id, &first, "success").await;
    let (_, o) = app.get(&format!("/api/v1/orders/{id}"), &admin).await;
    assert_eq!(o["refunded_fen"], 400, "both payouts are on the books: {o}");
    // Nothing is left to refund.
    let (s, b) = admin_refund(&app, &admin, id, 1).await;
    assert_eq!((s, code_of(&b)), (422, "refund_exceeds_paid"), "{b}");

    // A customer's cancel whose refund is refused: visible, and the order waits in
    // refunding where admins find it.
    let o = app.paid_order(&customer, 250).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    app.sim.script_refund_reply(unclear(
        RefundReply::ErrCode("USER_ACCOUNT_ABNORMAL".into()),
        false,
    ));
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("refunding")), "{b}");
    let r = wait_refund(&app, id, &format!("{otn}R1"), "failed").await;
    assert!(
        r["last_error"].as_str().is_some_and(|e| !e.is_empty()),
        "{r}"
    );
    let attention = app.ctx.refunds.needing_attention(100).await.expect("list");
    assert!(
        attention
            .iter()
            .any(|v| v.out_refund_no == format!("{otn}R1")),
        "{attention:?}"
    );
    jobs.abort();
}

#[actix_web::test]
async fn notenough_is_retried_change_waits_for_a_person_refundclose_frees() {
    let app = TestApp::spawn().await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("balance-customer").await;
    let admin = app.login(ADMIN_OPENID).await;

    // NOTENOUGH: kept, retried with the same number, then paid.
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    app.sim
        .script_refund_reply(unclear(RefundReply::ErrCode("NOTENOUGH".into()), false));
    let (s, b) = admin_refund(&app, &admin, id, 300).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["refunds"][0]["status"], "requested", "{b}");
    wait_refund(&app, id, &format!("{otn}R1"), "success").await;
    assert!(app.sim.calls("refund") >= 2, "retried");
    assert_eq!(app.sim.order(&otn).expect("sim").refunds.len(), 1);

    // CHANGE: the money is held by WeChat; it stays reserved and shows as manual.
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    let no = format!("{otn}R1");
    app.sim.set_refund_outcome(&no, Some(RefundOutcome::Change));
    let (s, b) = admin_refund(&app, &admin, id, 300).await;
    assert_eq!(s, 200, "{b}");
    let r = wait_refund(&app, id, &no, "manual").await;
    assert_eq!(r["refund_fen"], 300);
    let (s, b) = admin_refund(&app, &admin, id, 1).await;
    assert_eq!((s, code_of(&b)), (422, "refund_exceeds_paid"), "{b}");
    let attention = app.ctx.refunds.needing_attention(100).await.expect("list");
    assert!(
        attention.iter().any(|v| v.out_refund_no == no),
        "{attention:?}"
    );

    // REFUNDCLOSE from refundquery: definitely not paid, released.
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    let no = format!("{otn}R1");
    app.sim.set_refund_outcome(&no, Some(RefundOutcome::Close));
    let (s, b) = admin_refund(&app, &admin, id, 300).await;
    assert_eq!(s, 200, "{b}");
    wait_refund(&app, id, &no, "failed").await;
    let (s, b) = admin_refund(&app, &admin, id, 300).await;
    assert_eq!(s, 200, "released, refundable again: {b}");
    jobs.abort();
}

#[actix_web::test]
async fn an_admin_refund_records_the_admin() {
    let app = TestApp::spawn().await;
    let customer = app.login("who-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let (_, me) = app.get("/api/v1/me", &admin).await;
    let o = app.paid_order(&customer, 200).await;
    let id = o["id"].as_i64().expect("id");
    let (s, b) = admin_refund(&app, &admin, id, 50).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["refunds"][0]["requested_by"], me["id"], "{b}");
    // A customer's cancel has no admin.
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!(s, 200);
    let rs = refunds_of(&app, id).await;
    assert_eq!(rs.len(), 2, "{rs:?}");
    assert!(rs[1]["requested_by"].is_null(), "{rs:?}");
}
