//! The smaller holes: the configured pay sign type, atomic attempt limits, idempotent
//! claims in Redis, roles re-derived from ADMIN_OPENIDS, bounded metrics labels and where
//! `/metrics` is served, junk notifies counted not stored, a bounded SQLite writer queue.

use std::collections::BTreeMap;

use futures::FutureExt as _;
use serde_json::{Value, json};

use crate::common::{self, ADMIN_OPENID, Options, TestApp};
use campus_impl::db::DbError;
use campus_impl::wechat::pay::SignType;

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn pay_notify(app: &TestApp, otn: &str, fee: i64, st: SignType, with_sign_type: bool) -> String {
    let cfg = app.sim.config();
    let mut p: BTreeMap<String, String> = [
        ("return_code", "SUCCESS"),
        ("result_code", "SUCCESS"),
        ("appid", cfg.appid.as_str()),
        ("mch_id", cfg.mch_id.as_str()),
        ("nonce_str", "n0nce"),
        ("openid", "o1"),
        ("out_trade_no", otn),
        ("transaction_id", "4200000000000000000000000009"),
        ("trade_type", "JSAPI"),
        ("bank_type", "CFT"),
        ("fee_type", "CNY"),
        ("time_end", "20261130120000"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    p.insert("total_fee".into(), fee.to_string());
    p.insert("cash_fee".into(), fee.to_string());
    if with_sign_type {
        p.insert("sign_type".into(), st.as_str().into());
    }
    let s = campus_impl::wechat::pay::sign::sign(&p, &cfg.pay_key, st);
    p.insert("sign".into(), s);
    campus_impl::wechat::pay::xml::to_xml(&p)
}

async fn post_raw(app: &TestApp, path: &str, body: String) -> (u16, String) {
    let r = app
        .client
        .post(app.url(path))
        .header("content-type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    (s, r.text().await.expect("text"))
}

#[actix_web::test]
async fn an_md5_notify_to_an_hmac_merchant_is_refused() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_pay_sign_type = "HMAC-SHA256".into()),
        ..Options::default()
    })
    .await;
    let customer = app.login("hmac-merchant").await;
    let o = app.create_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    app.prepay(&customer, id).await;
    for with_type in [false, true] {
        let (_, reply) = post_raw(
            &app,
            "/api/v1/pay/notify",
            pay_notify(&app, &otn, 300, SignType::Md5, with_type),
        )
        .await;
        assert!(
            reply.contains("FAIL"),
            "MD5 (sign_type {with_type}): {reply}"
        );
        let (_, o) = app.get(&format!("/api/v1/orders/{id}"), &customer).await;
        assert_eq!(o["status"], "created", "{o}");
    }
    // The configured algorithm, with or without sign_type, is accepted.
    let (_, reply) = post_raw(
        &app,
        "/api/v1/pay/notify",
        pay_notify(&app, &otn, 300, SignType::HmacSha256, false),
    )
    .await;
    assert!(reply.contains("SUCCESS"), "{reply}");
    app.wait_status(&customer, id, "paid").await;
}

#[actix_web::test]
async fn parallel_pickup_code_guesses_get_five_tries_in_all() {
    let app = TestApp::spawn().await;
    let customer = app.login("pickup-customer").await;
    let runner = app.runner("pickup-runner").await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let code = o["pickup_code"].as_str().expect("code").to_string();
    for step in ["accept", "pickup"] {
        let (s, b) = app
            .post(&format!("/api/v1/orders/{id}/{step}"), &runner, json!({}))
            .await;
        assert_eq!(s, 200, "{step}: {b}");
    }
    let wrong = if code == "000000" { "111111" } else { "000000" };
    let deliver = format!("/api/v1/orders/{id}/deliver");
    let guesses = (0..20).map(|_| app.post(&deliver, &runner, json!({"pickup_code": wrong})));
    let answers = futures::future::join_all(guesses).await;
    let tried = answers
        .iter()
        .filter(|(s, b)| *s == 422 && code_of(b) == "wrong_pickup_code")
        .count();
    let limited = answers
        .iter()
        .filter(|(s, b)| *s == 429 && code_of(b) == "too_many_attempts")
        .count();
    assert_eq!((tried, limited), (5, 15), "{answers:?}");
    // The right code is refused too until the window passes.
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": code}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (429, "too_many_attempts"), "{b}");
}

#[actix_web::test]
async fn a_retried_claim_is_still_its_owners_and_counters_are_atomic() {
    let cache = campus_impl::cache::Cache::connect(
        common::mariadb_mode().then(common::redis_url).as_deref(),
    )
    .await
    .expect("cache");
    let key = format!("test:claim:{}", rand::random::<u64>());
    let ttl = std::time::Duration::from_secs(30);
    assert!(cache.set_nx_ex(&key, "owner-a", ttl).await.expect("nx"));
    // The first attempt landed and its answer was lost: the retry is still the owner's.
    assert!(cache.set_nx_ex(&key, "owner-a", ttl).await.expect("nx"));
    assert!(!cache.set_nx_ex(&key, "owner-b", ttl).await.expect("nx"));
    let counter = format!("test:count:{}", rand::random::<u64>());
    let incs = (0..50).map(|_| cache.incr_ex(&counter, ttl));
    let mut seen: Vec<i64> = futures::future::join_all(incs)
        .await
        .into_iter()
        .map(|r| r.expect("incr"))
        .collect();
    seen.sort_unstable();
    assert_eq!(seen, (1..=50).collect::<Vec<i64>>());
    // Taking counts back (a message WeChat did not accept) is atomic too, and never makes
    // a counter that has gone.
    let uncounts = (0..20).map(|_| cache.uncount(&counter));
    for r in futures::future::join_all(uncounts).await {
        r.expect("uncount");
    }
    assert_eq!(cache.incr_ex(&counter, ttl).await.expect("incr"), 31);
    let gone = format!("test:gone:{}", rand::random::<u64>());
    cache.uncount(&gone).await.expect("uncount");
    assert!(cache.get(&gone).await.expect("get").is_none());
}

#[actix_web::test]
async fn admin_role_follows_admin_openids_at_every_login() {
    let first = TestApp::spawn().await;
    let token = first.login(ADMIN_OPENID).await;
    let (_, me) = first.get("/api/v1/me", &token).await;
    assert_eq!(me["role"], "admin");
    let applicant = first.login("admin-test-applicant").await;
    let (s, b) = first
        .post("/api/v1/runners/apply", &applicant, json!({}))
        .await;
    assert_eq!(s, 202, "{b}");
    let applicant_id = b["id"].as_i64().expect("id");

    // The same database and WeChat, ADMIN_OPENIDS emptied.
    let second = TestApp::spawn_with(Options {
        sim: Some(first.sim.clone()),
        database_url: Some(first.settings.database_url.clone()),
        tweak: Box::new(|s| s.admin_openids = String::new()),
        ..Options::default()
    })
    .await;
    // The old token no longer carries admin rights.
    let approve = format!("/api/v1/admin/runners/{applicant_id}/approve");
    let (s, b) = second.post(&approve, &token, json!({})).await;
    assert_eq!(s, 403, "{b}");
    // Logging in again stores the demotion.
    let token = second.login(ADMIN_OPENID).await;
    let (_, me) = second.get("/api/v1/me", &token).await;
    assert_eq!(me["role"], "customer", "{me}");
    let (s, _) = second.post(&approve, &token, json!({})).await;
    assert_eq!(s, 403);
    // Back in the list: admin again.
    let token = first.login(ADMIN_OPENID).await;
    let (_, me) = first.get("/api/v1/me", &token).await;
    assert_eq!(me["role"], "admin");
    second.stop().await;
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

#[actix_web::test]
async fn metrics_labels_are_bounded_and_metrics_can_move_and_need_a_token() {
    let app = TestApp::spawn().await;
    for m in ["FOOBAR", "BAZQUUX"] {
        let method = reqwest::Method::from_bytes(m.as_bytes()).expect("method");
        let _ = app
            .client
            .request(method, app.url("/healthz"))
            .send()
            .await
            .expect("request");
    }
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(!text.contains("FOOBAR") && !text.contains("BAZQUUX"));

    let port = free_port();
    let moved = TestApp::spawn_with(Options {
        tweak: Box::new(move |s| {
            s.metrics_bind = Some(format!("127.0.0.1:{port}"));
            s.metrics_token = Some(secrecy::SecretString::from("metrics-secret"));
        }),
        ..Options::default()
    })
    .await;
    let r = moved
        .client
        .get(moved.url("/metrics"))
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 404, "not on the public listener");
    let url = format!("http://127.0.0.1:{port}/metrics");
    let r = moved.client.get(&url).send().await.expect("metrics");
    assert_eq!(r.status(), 401, "token needed");
    let r = moved
        .client
        .get(&url)
        .bearer_auth("wrong")
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 401);
    let r = moved
        .client
        .get(&url)
        .bearer_auth("metrics-secret")
        .send()
        .await
        .expect("metrics");
    assert_eq!(r.status(), 200);
    assert!(
        r.text()
            .await
            .expect("text")
            .contains("campus_http_requests_total")
    );
}

async fn stored_notifications(app: &TestApp) -> i64 {
    app.ctx
        .db
        .read(|c| campus_dal::payments::notification_count(c).map_err(DbError::from))
        .await
        .expect("count")
}

#[actix_web::test]
async fn junk_notifies_are_counted_not_stored_and_a_real_one_lands() {
    let app = TestApp::spawn().await;
    let customer = app.login("junk-customer").await;
    let o = app.create_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let otn = o["out_trade_no"].as_str().expect("otn").to_string();
    let params = app.pay_params(&customer, id).await;
    let before = stored_notifications(&app).await;
    let mut forged = pay_notify(&app, &otn, 300, SignType::Md5, false);
    forged = forged.replace("<sign><![CDATA[", "<sign><![CDATA[0");
    let junk = (0..40).map(|i| {
        let body = if i % 2 == 0 {
            "<xml><not closed".to_string()
        } else {
            forged.clone()
        };
        post_raw(&app, "/api/v1/pay/notify", body)
    });
    for (s, reply) in futures::future::join_all(junk).await {
        assert_eq!(s, 200);
        assert!(reply.contains("FAIL"), "{reply}");
    }
    for (s, reply) in futures::future::join_all(
        (0..10).map(|_| post_raw(&app, "/api/v1/pay/refund-notify", "junk".into())),
    )
    .await
    {
        assert_eq!(s, 200);
        assert!(reply.contains("FAIL"), "{reply}");
    }
    assert_eq!(
        stored_notifications(&app).await,
        before,
        "junk is not stored"
    );
    let text = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    let rejected: u64 = text
        .lines()
        .filter(|l| l.starts_with("campus_pay_notifies_rejected_total"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum();
    assert_eq!(rejected, 50, "{text}");
    // A real notify still lands.
    app.sim
        .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
        .expect("pay");
    app.wait_status(&customer, id, "paid").await;
    assert!(stored_notifications(&app).await > before);
}

#[actix_web::test]
async fn a_full_sqlite_writer_queue_fails_fast_with_503() {
    if common::mariadb_mode() {
        // MariaDB writes go through the pool; there is no writer queue.
        return;
    }
    let app = TestApp::spawn().await;
    let customer = app.login("busy-customer").await;
    let o = app.create_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let params = app.pay_params(&customer, id).await;

    // Hold the writer inside a write until released.
    let (inside_tx, inside_rx) = std::sync::mpsc::channel::<()>();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let db = app.ctx.db.clone();
    let blocker = actix_web::rt::spawn(async move {
        db.write(move |_c| -> Result<(), DbError> {
            let _ = inside_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        })
        .await
    });
    tokio::task::spawn_blocking(move || inside_rx.recv())
        .await
        .expect("join")
        .expect("the writer runs the blocker");
    // Fill the queue: each write is queued on its first poll.
    for _ in 0..campus_impl::db::WRITER_QUEUE {
        let queued = app
            .ctx
            .db
            .write(|c| campus_dal::health::ping(c).map_err(DbError::from))
            .now_or_never();
        assert!(queued.is_none(), "queued, waiting");
    }
    let full = app
        .ctx
        .db
        .write(|c| campus_dal::health::ping(c).map_err(DbError::from))
        .now_or_never();
    assert!(
        matches!(full, Some(Err(DbError::Busy))),
        "fails fast when full"
    );
    let (s, b) = app
        .post(
            "/api/v1/orders",
            &customer,
            json!({"kind": "express", "pickup": "A", "dropoff": "B", "note": "", "fee_fen": 100, "goods_fen": 0}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (503, "service_unavailable"), "{b}");
    // Released, the queue drains and WeChat's notify lands.
    release_tx.send(()).expect("release");
    blocker.await.expect("join").expect("blocker");
    app.sim
        .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
        .expect("pay");
    app.wait_status(&customer, id, "paid").await;
}
