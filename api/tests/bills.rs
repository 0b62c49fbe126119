//! Issue 15: the daily bill, fetched from the simulator in WeChat's format (gzip) and
//! matched against the payment ledger: matched, each kind of mismatch, no bill.
//! SQLite, or MariaDB + Redis with CAMPUS_TEST_MODE=mariadb.

mod common;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use campus_impl::wechat::pay::SignType;
use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};
use test_demo::sim::{BillRowEdit, NotifyFaults};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn today_beijing() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

async fn reconcile(app: &TestApp, admin: &str, date: &str) -> Value {
    let (s, r) = app
        .post(
            "/api/v1/admin/reconciliations",
            admin,
            json!({"date": date}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let (s, stored) = app
        .get(&format!("/api/v1/admin/reconciliations/{date}"), admin)
        .await;
    assert_eq!(s, 200, "{stored}");
    assert_eq!(stored, r, "what is served is what was stored");
    r
}

fn kinds(r: &Value) -> BTreeMap<String, String> {
    r["mismatches"]
        .as_array()
        .expect("mismatches")
        .iter()
        .map(|m| {
            (
                m["out_refund_no"]
                    .as_str()
                    .or(m["out_trade_no"].as_str())
                    .unwrap_or_default()
                    .to_string(),
                m["kind"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// An order WeChat has and this server never created: unifiedorder sent straight to the
/// simulator with the merchant key, then paid.
async fn foreign_payment(app: &TestApp, openid: &str, fee: u64) -> String {
    let cfg = app.sim.config();
    let otn = format!("X{}", campus_impl::crypto::random_alnum(20));
    let mut p: BTreeMap<String, String> = [
        ("appid", cfg.appid.as_str()),
        ("mch_id", cfg.mch_id.as_str()),
        ("nonce_str", "n0nce"),
        ("body", "elsewhere"),
        ("out_trade_no", otn.as_str()),
        ("total_fee", &fee.to_string()),
        ("spbill_create_ip", "127.0.0.1"),
        ("notify_url", "http://127.0.0.1:9/notify"),
        ("trade_type", "JSAPI"),
        ("openid", openid),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let sign = campus_impl::wechat::pay::sign::sign(&p, &cfg.pay_key, SignType::Md5);
    p.insert("sign".into(), sign);
    let client = reqwest::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(app.sim.ca_cert_pem().as_bytes()).expect("ca"),
        )
        .build()
        .expect("client");
    let body = client
        .post(format!("{}/pay/unifiedorder", app.sim.base_url()))
        .body(campus_impl::wechat::pay::xml::to_xml(&p))
        .send()
        .await
        .expect("unifiedorder")
        .text()
        .await
        .expect("text");
    assert!(body.contains("prepay_id"), "{body}");
    app.sim
        .pay_skipping_client_checks(&otn)
        .expect("paid at WeChat");
    otn
}

#[actix_web::test]
async fn the_bill_matches_then_each_kind_of_mismatch_is_reported() {
    // No orderquery sweep during the test: an order whose notify is lost stays unpaid here.
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.pay_reconcile_secs = 3600),
        ..Options::default()
    })
    .await;
    app.sim.set_bill_same_day(true);
    let customer = app.login("bill-customer").await;
    let admin = app.login(ADMIN_OPENID).await;
    let today = today_beijing();

    let a = app.paid_order(&customer, 300).await;
    let b = app.paid_order(&customer, 500).await;
    let c = app.paid_order(&customer, 700).await;
    let (a_id, a_otn) = (
        a["id"].as_i64().expect("id"),
        a["out_trade_no"].as_str().expect("otn").to_string(),
    );
    let b_otn = b["out_trade_no"].as_str().expect("otn").to_string();
    let c_otn = c["out_trade_no"].as_str().expect("otn").to_string();
    // A partial refund, settled by WeChat's notify.
    let (s, r) = app
        .post(
            &format!("/api/v1/admin/orders/{a_id}/refund"),
            &admin,
            json!({"refund_fen": 100}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, o) = app.get(&format!("/api/v1/orders/{a_id}"), &customer).await;
        if o["refunded_fen"] == 100 {
            break;
        }
        assert!(Instant::now() < deadline, "refund never settled: {o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    // Matched: three payments and a refund on both sides.
    let r = reconcile(&app, &admin, &today).await;
    assert_eq!(r["status"], "matched", "{r}");
    assert_eq!(r["date"], today);
    assert_eq!(r["wechat"]["count"], 4);
    assert_eq!(r["wechat"]["paid_fen"], 1500);
    assert_eq!(r["wechat"]["refunded_fen"], 100);
    // 0.6% per line, rounded to the fen: 2 + 3 + 4 on payments, -1 on the refund.
    assert_eq!(r["wechat"]["fee_fen"], 8);
    assert_eq!(r["local"]["count"], 4);
    assert_eq!(r["local"]["paid_fen"], 1500);
    assert_eq!(r["local"]["refunded_fen"], 100);
    assert_eq!(r["mismatches"], json!([]));
    assert!(app.sim.calls("downloadbill") >= 1);

    // Each kind of mismatch.
    app.sim.edit_bill_row(&b_otn, BillRowEdit::Amount(499));
    app.sim.edit_bill_row(&c_otn, BillRowEdit::Drop);
    let foreign = foreign_payment(&app, "bill-customer", 250).await;
    // Paid at WeChat, the notify never arrives and nothing queries: unpaid here.
    app.sim.set_notify_faults(NotifyFaults {
        drop_first: 1000,
        ..NotifyFaults::default()
    });
    let d = app.create_order(&customer, 900).await;
    let d_id = d["id"].as_i64().expect("id");
    let d_otn = d["out_trade_no"].as_str().expect("otn").to_string();
    let params = app.pay_params(&customer, d_id).await;
    app.sim
        .request_payment(&serde_json::from_value(params).expect("params"))
        .expect("pays");
    let r = reconcile(&app, &admin, &today).await;
    assert_eq!(r["status"], "mismatched", "{r}");
    let k = kinds(&r);
    assert_eq!(
        k.get(&b_otn).map(String::as_str),
        Some("amount_differs"),
        "{r}"
    );
    assert_eq!(
        k.get(&c_otn).map(String::as_str),
        Some("missing_wechat"),
        "{r}"
    );
    assert_eq!(
        k.get(&foreign).map(String::as_str),
        Some("missing_local"),
        "{r}"
    );
    assert_eq!(
        k.get(&d_otn).map(String::as_str),
        Some("status_differs"),
        "{r}"
    );
    assert!(!k.contains_key(&a_otn), "{r}");
    assert_eq!(k.len(), 4, "{r}");
    let m = |otn: &str| {
        r["mismatches"]
            .as_array()
            .and_then(|a| a.iter().find(|m| m["out_trade_no"] == otn).cloned())
            .expect("mismatch")
    };
    assert_eq!(m(&b_otn)["wechat"]["amount_fen"], 499);
    assert_eq!(m(&b_otn)["local"]["amount_fen"], 500);
    assert!(m(&c_otn)["wechat"].is_null());
    assert!(m(&foreign)["local"].is_null());
    assert_eq!(m(&d_otn)["local"]["status"], "created");
    // WeChat: A, B (499), the refund, the foreign order and D; C is gone.
    assert_eq!(r["wechat"]["count"], 5);
    assert_eq!(r["wechat"]["paid_fen"], 300 + 499 + 250 + 900);
    // Here: A, B and the refund matched, plus C missing from the bill.
    assert_eq!(r["local"]["count"], 4);
    assert_eq!(r["local"]["paid_fen"], 300 + 500 + 700);
    assert_eq!(r["local"]["refunded_fen"], 100);
}

#[actix_web::test]
async fn a_day_without_bill_is_a_result_and_input_is_checked() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("nobill-customer").await;
    let r = reconcile(&app, &admin, "2026-01-02").await;
    assert_eq!(r["status"], "no_bill", "{r}");
    assert_eq!(r["wechat"]["count"], 0);
    assert_eq!(r["mismatches"], json!([]));
    // Today's bill does not exist yet at WeChat (from about 10:00 the next day).
    let r = reconcile(&app, &admin, &today_beijing()).await;
    assert_eq!(r["status"], "no_bill");

    for bad in [
        "2026-13-01",
        "yesterday",
        "2026-1-1",
        "",
        "2026-01-01T00:00:00Z",
    ] {
        let (s, b) = app
            .post(
                "/api/v1/admin/reconciliations",
                &admin,
                json!({"date": bad}),
            )
            .await;
        assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{bad:?}");
    }
    let (s, _) = app
        .get("/api/v1/admin/reconciliations/2025-05-05", &admin)
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(
            "/api/v1/admin/reconciliations",
            &customer,
            json!({"date": "2026-01-02"}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get("/api/v1/admin/reconciliations/2026-01-02", &customer)
        .await;
    assert_eq!(s, 403);
}
