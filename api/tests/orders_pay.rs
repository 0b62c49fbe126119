//! Issue 3: the order flow and WeChat Pay v2 end to end through the simulator, with
//! hostile input and races. Runs on SQLite, or MariaDB + Redis with CAMPUS_TEST_MODE=mariadb.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};
use test_demo::sim::NotifyFaults;

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn ledger(app: &TestApp, id: i64) -> Vec<(String, i64)> {
    app.ctx
        .db
        .read(move |c| {
            campus_dal::payments::for_order(c, campus_impl::OrderId(id))
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("ledger")
        .into_iter()
        .map(|e| (e.event.to_string(), e.amount_fen))
        .collect()
}

#[actix_web::test]
async fn full_flow_create_pay_accept_pickup_deliver_confirm() {
    let app = TestApp::spawn().await;
    let customer = app.login("flow-customer").await;
    let runner = app.runner("flow-runner").await;

    let o = app.create_order(&customer, 300).await;
    assert_eq!(o["status"], "created");
    assert_eq!(o["amount_fen"], 300);
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    assert!(otn.len() <= 32 && otn.bytes().all(|b| b.is_ascii_alphanumeric()));
    let code = o["pickup_code"]
        .as_str()
        .expect("customer sees the code")
        .to_string();

    let (s, p) = app
        .post(&format!("/api/v1/orders/{id}/pay"), &customer, json!({}))
        .await;
    assert_eq!(s, 200, "{p}");
    for k in [
        "appId",
        "timeStamp",
        "nonceStr",
        "package",
        "signType",
        "paySign",
    ] {
        assert!(p[k].is_string(), "{k} missing in {p}");
    }
    // A second pay reuses the prepay id: unifiedorder once.
    let (_, p2) = app
        .post(&format!("/api/v1/orders/{id}/pay"), &customer, json!({}))
        .await;
    assert_eq!(p["package"], p2["package"]);
    assert_eq!(app.sim.calls("unifiedorder"), 1);

    let prepay = p["package"]
        .as_str()
        .and_then(|s| s.strip_prefix("prepay_id="))
        .expect("pkg");
    app.sim
        .request_payment(&serde_json::from_value(p.clone()).expect("params"))
        .expect("pay");
    let paid = app.wait_status(&customer, id, "paid").await;
    assert!(paid["paid_at"].is_string());

    let (s, avail) = app.get("/api/v1/runner/orders/available", &runner).await;
    assert_eq!(s, 200);
    let seen = avail["items"]
        .as_array()
        .expect("items")
        .iter()
        .any(|x| x["id"] == id);
    assert!(seen, "paid order is available");
    assert!(
        avail["items"][0]["pickup_code"].is_null(),
        "runners never see the code"
    );

    let (s, a) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &runner, json!({}))
        .await;
    assert_eq!((s, a["status"].as_str()), (200, Some("accepted")));
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": code}),
        )
        .await;
    assert_eq!(
        (s, code_of(&b)),
        (409, "invalid_transition"),
        "deliver before pickup"
    );
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/pickup"), &runner, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": "000000x"}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (422, "wrong_pickup_code"));
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": code}),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("delivered")), "{b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/confirm"),
            &customer,
            json!({}),
        )
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("completed")), "{b}");

    assert_eq!(ledger(&app, id).await, vec![("paid".to_string(), 300)]);

    // The customer's delivery QR is a PNG made locally.
    let r = app
        .client
        .get(app.url(&format!("/api/v1/orders/{id}/qrcode")))
        .bearer_auth(&customer)
        .send()
        .await
        .expect("qr");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    assert!(r.bytes().await.expect("png").starts_with(b"\x89PNG"));

    let (s, list) = app
        .get("/api/v1/orders?mine=customer&limit=1", &customer)
        .await;
    assert_eq!(s, 200);
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));
    let (_, list) = app
        .get("/api/v1/orders?mine=runner&status=completed", &runner)
        .await;
    assert_eq!(list["items"][0]["id"], id);
}

#[actix_web::test]
async fn cancel_after_pay_refunds_in_full_and_unpaid_cancel_closes() {
    let app = TestApp::spawn().await;
    let customer = app.login("refund-customer").await;
    let o = app.paid_order(&customer, 500).await;
    let id = o["id"].as_i64().expect("id");
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    assert!(matches!(
        b["status"].as_str(),
        Some("refunding" | "refunded")
    ));
    let done = app.wait_status(&customer, id, "refunded").await;
    assert_eq!(done["refunded_fen"], 500);
    assert_eq!(app.sim.calls("refund"), 1, "refund over mutual TLS, once");
    let ev = ledger(&app, id).await;
    assert!(ev.contains(&("refunded".to_string(), 500)), "{ev:?}");
    // Cancelling again is a conflict, and nothing moves.
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!((s, code_of(&b)), (409, "invalid_transition"));

    let o = app.create_order(&customer, 100).await;
    let id = o["id"].as_i64().expect("id");
    app.prepay(&customer, id).await;
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("closed")), "{b}");
    let otn = b["out_trade_no"].as_str().expect("otn");
    assert_eq!(
        app.sim.order(otn).map(|o| o.trade_state),
        Some("CLOSED".to_string())
    );
}

#[actix_web::test]
async fn lost_notify_is_paid_by_reconcile_and_unpaid_orders_close() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.order_pay_timeout_secs = 70),
        ..Options::default()
    })
    .await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("lost-notify").await;
    app.sim.set_notify_faults(NotifyFaults {
        drop_first: 100,
        ..Default::default()
    });
    let o = app.create_order(&customer, 250).await;
    let id = o["id"].as_i64().expect("id");
    let p = app.pay_params(&customer, id).await;
    app.sim
        .request_payment(&serde_json::from_value(p).expect("params"))
        .expect("pay");
    let paid = app.wait_status(&customer, id, "paid").await;
    assert_eq!(paid["amount_fen"], 250);
    assert!(app.sim.calls("orderquery") >= 1, "paid through orderquery");
    jobs.abort();
}

#[actix_web::test]
async fn unpaid_order_closes_after_the_timeout() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.order_pay_timeout_secs = 1),
        ..Options::default()
    })
    .await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("timeout").await;
    let o = app.create_order(&customer, 100).await;
    let id = o["id"].as_i64().expect("id");
    let closed = app.wait_status(&customer, id, "closed").await;
    assert!(closed["closed_at"].is_string());
    jobs.abort();
}

#[actix_web::test]
async fn delivered_order_completes_by_itself_after_the_delay() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| {
            s.order_auto_complete_secs = 1;
            s.pay_reconcile_secs = 1;
        }),
        ..Options::default()
    })
    .await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("auto-complete").await;
    let runner = app.runner("auto-complete-runner").await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let code = app.get(&format!("/api/v1/orders/{id}"), &customer).await.1["pickup_code"]
        .as_str()
        .expect("pickup code")
        .to_string();
    for (step, body) in [
        ("accept", json!({})),
        ("pickup", json!({})),
        ("deliver", json!({"pickup_code": code})),
    ] {
        let (s, b) = app
            .post(&format!("/api/v1/orders/{id}/{step}"), &runner, body)
            .await;
        assert_eq!(s, 200, "{step}: {b}");
    }
    let done = app.wait_status(&customer, id, "completed").await;
    assert!(done["completed_at"].is_string(), "{done}");
    assert!(done["delivered_at"].is_string(), "{done}");
    jobs.abort();
}

fn sign(params: &BTreeMap<String, String>, key: &str) -> String {
    campus_impl::wechat::pay::sign::sign(params, key, campus_impl::wechat::pay::SignType::Md5)
}

fn notify_xml(
    app: &TestApp,
    otn: &str,
    fee: i64,
    tx: &str,
    key: &str,
    appid: Option<&str>,
) -> String {
    let cfg = app.sim.config();
    let mut p: BTreeMap<String, String> = [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", appid.unwrap_or(&cfg.appid)),
        ("mch_id", &cfg.mch_id),
        ("nonce_str", "n0nce"),
        ("openid", "o1"),
        ("out_trade_no", otn),
        ("transaction_id", tx),
        ("trade_type", "JSAPI"),
        ("bank_type", "CFT"),
        ("fee_type", "CNY"),
        ("time_end", "20261125120000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.insert("total_fee".into(), fee.to_string());
    p.insert("cash_fee".into(), fee.to_string());
    let s = sign(&p, key);
    p.insert("sign".into(), s);
    campus_impl::wechat::pay::xml::to_xml(&p)
}

async fn post_notify(app: &TestApp, body: String) -> String {
    app.client
        .post(app.url("/api/v1/pay/notify"))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("notify")
        .text()
        .await
        .expect("text")
}

#[actix_web::test]
async fn hostile_notifies_change_nothing_and_duplicates_pay_once() {
    let app = TestApp::spawn().await;
    let customer = app.login("hostile").await;
    let o = app.create_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    let key = app.sim.config().pay_key.clone();

    let fail = |r: &str| r.contains("FAIL") && !r.contains("SUCCESS");
    assert!(
        fail(
            &post_notify(
                &app,
                notify_xml(
                    &app,
                    &otn,
                    300,
                    "tx1",
                    "WRONGKEY0000000000000000000000000",
                    None
                )
            )
            .await
        ),
        "forged sign"
    );
    assert!(
        fail(&post_notify(&app, notify_xml(&app, &otn, 1, "tx1", &key, None)).await),
        "wrong amount"
    );
    assert!(
        fail(
            &post_notify(
                &app,
                notify_xml(&app, &otn, 300, "tx1", &key, Some("wxother"))
            )
            .await
        ),
        "wrong appid"
    );
    assert!(
        fail(
            &post_notify(
                &app,
                notify_xml(&app, "NOSUCHORDER123", 300, "tx1", &key, None)
            )
            .await
        ),
        "unknown order"
    );
    assert!(
        fail(&post_notify(&app, "<xml><return_code>SUCCESS".into()).await),
        "malformed"
    );
    let bomb = "<?xml version=\"1.0\"?><!DOCTYPE lolz [<!ENTITY lol \"lol\"><!ENTITY lol2 \"&lol;&lol;&lol;\">]><xml><a>&lol2;</a></xml>";
    let r = app
        .client
        .post(app.url("/api/v1/pay/notify"))
        .body(bomb)
        .send()
        .await
        .expect("bomb");
    assert_eq!(r.status(), 200, "never a 5xx");
    assert!(fail(&r.text().await.expect("text")));
    let unsigned = notify_xml(&app, &otn, 300, "tx1", &key, None)
        .replace("<sign>", "<x>")
        .replace("</sign>", "</x>");
    assert!(fail(&post_notify(&app, unsigned).await), "no sign");
    let (_, now) = app.get(&format!("/api/v1/orders/{id}"), &customer).await;
    assert_eq!(now["status"], "created", "nothing changed");

    // 50 identical valid notifies at once: paid once, one ledger row.
    let good = notify_xml(&app, &otn, 300, "tx-real", &key, None);
    let replies = futures::future::join_all((0..50).map(|_| post_notify(&app, good.clone()))).await;
    assert!(replies.iter().all(|r| r.contains("SUCCESS")), "{replies:?}");
    assert_eq!(ledger(&app, id).await, vec![("paid".to_string(), 300)]);
    let (_, now) = app.get(&format!("/api/v1/orders/{id}"), &customer).await;
    assert_eq!(now["status"], "paid");
    // A replay later is still SUCCESS and still changes nothing.
    assert!(post_notify(&app, good).await.contains("SUCCESS"));
    assert_eq!(ledger(&app, id).await.len(), 1);

    // Someone else's order is invisible; refunds beyond the paid amount are refused.
    let other = app.login("someone-else").await;
    let (s, _) = app.get(&format!("/api/v1/orders/{id}"), &other).await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &other, json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/pay"), &other, json!({}))
        .await;
    assert_eq!(s, 404);
    // Refund limits, on an order WeChat (the simulator) really took money for.
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let admin = app.login(ADMIN_OPENID).await;
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            &admin,
            json!({"refund_fen": 301}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (422, "refund_exceeds_paid"));
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            &customer,
            json!({"refund_fen": 1}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"));
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            &admin,
            json!({"refund_fen": 100, "reason": "late"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            &admin,
            json!({"refund_fen": 201}),
        )
        .await;
    assert_eq!(
        (s, code_of(&b)),
        (422, "refund_exceeds_paid"),
        "only 200 left"
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (_, o) = app.get(&format!("/api/v1/orders/{id}"), &customer).await;
        if o["refunded_fen"] == 100 {
            assert_eq!(
                o["status"], "paid",
                "a partial refund keeps the order going"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "partial refund never settled: {o}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn runners_race_for_one_order_and_idempotent_create() {
    let app = TestApp::spawn().await;
    let customer = app.login("race-customer").await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let mut runners = Vec::new();
    for i in 0..6 {
        runners.push(app.runner(&format!("racer-{i}")).await);
    }
    let path = format!("/api/v1/orders/{id}/accept");
    let results =
        futures::future::join_all(runners.iter().map(|t| app.post(&path, t, json!({})))).await;
    let wins = results.iter().filter(|(s, _)| *s == 200).count();
    let taken = results
        .iter()
        .filter(|(s, b)| *s == 409 && code_of(b) == "already_taken")
        .count();
    assert_eq!((wins, taken), (1, 5), "{results:?}");

    let body = json!({"kind": "takeout", "pickup": "Canteen 2", "dropoff": "Dorm 9", "fee_fen": 200, "goods_fen": 1500});
    let send = |k: &'static str, b: Value| {
        app.client
            .post(app.url("/api/v1/orders"))
            .bearer_auth(&customer)
            .header("Idempotency-Key", k)
            .json(&b)
            .send()
    };
    let a: Value = send("key-1", body.clone())
        .await
        .expect("a")
        .json()
        .await
        .expect("json");
    let r = send("key-1", body.clone()).await.expect("b");
    assert_eq!(r.status(), 201);
    let b: Value = r.json().await.expect("json");
    assert_eq!(a["id"], b["id"], "same key: the first result");
    assert_eq!(a["amount_fen"], 1700);
    let r = send(
        "key-1",
        json!({"kind": "errand", "pickup": "x", "dropoff": "y", "fee_fen": 1}),
    )
    .await
    .expect("c");
    assert_eq!(r.status(), 409);
    let (s, b) = app
        .post(
            "/api/v1/orders",
            &customer,
            json!({"kind": "express", "pickup": "a", "dropoff": "b", "fee_fen": 0}),
        )
        .await;
    assert_eq!(
        (s, code_of(&b)),
        (422, "validation_failed"),
        "amount must be >= 1"
    );
}

#[actix_web::test]
async fn hmac_sha256_merchants_pay_and_refund() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_pay_sign_type = "HMAC-SHA256".into()),
        ..Options::default()
    })
    .await;
    let customer = app.login("hmac-customer").await;
    let o = app.create_order(&customer, 420).await;
    let id = o["id"].as_i64().expect("id");
    let (s, p) = app
        .post(&format!("/api/v1/orders/{id}/pay"), &customer, json!({}))
        .await;
    assert_eq!(s, 200, "{p}");
    assert_eq!(p["signType"], "HMAC-SHA256");
    assert_eq!(p["paySign"].as_str().map(str::len), Some(64));
    let otn = o["out_trade_no"].as_str().expect("otn");
    assert_eq!(
        app.sim.order(otn).map(|o| o.sign_type),
        Some("HMAC-SHA256".to_string())
    );
    let prepay = p["package"]
        .as_str()
        .and_then(|s| s.strip_prefix("prepay_id="))
        .expect("pkg");
    app.sim
        .request_payment(&serde_json::from_value(p.clone()).expect("params"))
        .expect("pay");
    app.wait_status(&customer, id, "paid").await;
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &customer, json!({}))
        .await;
    assert_eq!(s, 200);
    let done = app.wait_status(&customer, id, "refunded").await;
    assert_eq!(done["refunded_fen"], 420);
}

#[actix_web::test]
async fn coupon_notify_fields_are_verified_too() {
    // WeChat adds coupon_fee_0, coupon_id_0... to notifies of coupon payments; the
    // signature covers them, so a verifier working from a fixed struct would fail here.
    let app = TestApp::spawn().await;
    let customer = app.login("coupon-customer").await;
    let o = app.create_order(&customer, 1000).await;
    let id = o["id"].as_i64().expect("id");
    let p = app.pay_params(&customer, id).await;
    app.sim
        .request_payment_with_coupon(&serde_json::from_value(p).expect("params"), 200)
        .expect("pay");
    let paid = app.wait_status(&customer, id, "paid").await;
    assert_eq!(
        paid["amount_fen"], 1000,
        "total_fee, not cash_fee, is the order amount"
    );
}
