//! Abuse limits: per-user and per-address buckets shared by instances through Redis, the
//! client address behind trusted proxies, and the cap on a user's unpaid orders.

mod common;

use common::{Options, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn with(
    limits: &'static str,
    proxies: &'static str,
    max_unpaid: i64,
) -> Box<dyn Fn(&mut campus_impl::settings::Settings)> {
    Box::new(move |s| {
        s.rate_limits = limits.into();
        s.trusted_proxies = proxies.into();
        s.max_unpaid_orders = max_unpaid;
    })
}

async fn post_order(app: &TestApp, token: &str) -> reqwest::Response {
    app.client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(token)
        .json(&json!({"kind": "express", "pickup": "A", "dropoff": "B", "note": "", "fee_fen": 100, "goods_fen": 0}))
        .send()
        .await
        .expect("create")
}

#[actix_web::test]
async fn two_instances_on_one_redis_share_a_users_budget() {
    let one = TestApp::spawn_with(Options {
        redis: true,
        tweak: with("order_user=3/3600s", "", 1000),
        ..Options::default()
    })
    .await;
    let two = TestApp::spawn_with(Options {
        redis: true,
        sim: Some(one.sim.clone()),
        database_url: Some(one.settings.database_url.clone()),
        tweak: with("order_user=3/3600s", "", 1000),
    })
    .await;
    let token = one.login("limits-two-instances").await;
    // Alternating instances: three in all, not three each.
    let mut statuses = Vec::new();
    for app in [&one, &two, &one, &two, &one] {
        statuses.push(post_order(app, &token).await);
    }
    let codes: Vec<u16> = statuses.iter().map(|r| r.status().as_u16()).collect();
    assert_eq!(codes, vec![201, 201, 201, 429, 429]);
    let limited = statuses.pop().expect("last");
    // One token back every 1,200 s.
    let retry: u64 = limited
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in seconds");
    assert!((1..=1200).contains(&retry), "{retry}");
    let body: Value = limited.json().await.expect("json");
    assert_eq!(code_of(&body), "rate_limited", "{body}");
    // Refused requests created nothing.
    let (s, page) = two.get("/api/v1/orders", &token).await;
    assert_eq!(s, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(3), "{page}");
    // Another user has a budget of their own.
    let other = two.login("limits-two-instances-other").await;
    assert_eq!(post_order(&one, &other).await.status(), 201);
}

#[actix_web::test]
async fn the_client_address_comes_from_trusted_proxies_only() {
    let behind_proxy = TestApp::spawn_with(Options {
        tweak: with("login_ip=2/60s", "127.0.0.1/32", 1000),
        ..Options::default()
    })
    .await;
    let login = |app: &TestApp, openid: &str, forwarded: Option<&str>| {
        let mut r = app
            .client
            .post(app.url("/api/v1/auth/login"))
            .json(&json!({"code": app.sim.issue_code(openid)}));
        if let Some(f) = forwarded {
            r = r.header("X-Forwarded-For", f);
        }
        async move { r.send().await.expect("login").status().as_u16() }
    };
    // The proxy (loopback) is trusted: each forwarded address has its own bucket, and
    // what a client prepends to the header does not choose its bucket.
    let a = "198.51.100.1";
    assert_eq!(login(&behind_proxy, "ip-a1", Some(a)).await, 200);
    assert_eq!(
        login(&behind_proxy, "ip-a2", Some(&format!("10.9.9.9, {a}"))).await,
        200
    );
    assert_eq!(login(&behind_proxy, "ip-a3", Some(a)).await, 429);
    assert_eq!(
        login(&behind_proxy, "ip-b1", Some("198.51.100.2")).await,
        200
    );

    // With no trusted proxy the header is ignored: every login counts for the peer.
    let direct = TestApp::spawn_with(Options {
        tweak: with("login_ip=2/60s", "", 1000),
        ..Options::default()
    })
    .await;
    assert_eq!(login(&direct, "d1", Some("198.51.100.3")).await, 200);
    assert_eq!(login(&direct, "d2", Some("198.51.100.4")).await, 200);
    assert_eq!(login(&direct, "d3", Some("198.51.100.5")).await, 429);

    // WeChat Pay is told the same address.
    let token = behind_proxy.login("ip-payer").await;
    let o = behind_proxy.create_order(&token, 150).await;
    let id = o["id"].as_i64().expect("id");
    let r = behind_proxy
        .client
        .post(behind_proxy.url(&format!("/api/v1/orders/{id}/pay")))
        .bearer_auth(&token)
        .header("X-Forwarded-For", "203.0.113.77")
        .json(&json!({}))
        .send()
        .await
        .expect("pay");
    assert_eq!(r.status(), 200);
    let otn = o["out_trade_no"].as_str().expect("otn");
    let at_wechat = behind_proxy.sim.order(otn).expect("unifiedorder made");
    assert_eq!(at_wechat.spbill_create_ip, "203.0.113.77");
}

#[actix_web::test]
async fn a_user_holds_a_bounded_number_of_unpaid_orders() {
    let app = TestApp::spawn_with(Options {
        tweak: with("off", "", 3),
        ..Options::default()
    })
    .await;
    let token = app.login("unpaid-cap").await;
    // Concurrent creates cannot slip past the cap together.
    let results = futures::future::join_all((0..10).map(|_| post_order(&app, &token))).await;
    let mut created = 0;
    for r in results {
        match r.status().as_u16() {
            201 => created += 1,
            409 => {
                let b: Value = r.json().await.expect("json");
                assert_eq!(code_of(&b), "too_many_unpaid_orders", "{b}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    assert_eq!(created, 3);
    // Cancelling one makes room; paying one does too.
    let (_, page) = app.get("/api/v1/orders", &token).await;
    let ids: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|o| o["id"].as_i64())
        .collect();
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{}/cancel", ids[0]),
            &token,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(post_order(&app, &token).await.status(), 201);
    assert_eq!(post_order(&app, &token).await.status(), 409);
    let params = app.pay_params(&token, ids[1]).await;
    app.sim
        .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
        .expect("pays");
    app.wait_status(&token, ids[1], "paid").await;
    assert_eq!(post_order(&app, &token).await.status(), 201);
}

#[actix_web::test]
async fn qr_codes_spend_the_budget_only_when_new() {
    let app = TestApp::spawn_with(Options {
        tweak: with("qrcode_user=2/3600s", "", 1000),
        ..Options::default()
    })
    .await;
    let token = app.login("qr-budget").await;
    let get = |scene: &str| {
        let r = app
            .client
            .get(app.url(&format!(
                "/api/v1/qrcode?scene={scene}&page=pages/index/index"
            )))
            .bearer_auth(&token)
            .send();
        async move { r.await.expect("qrcode").status().as_u16() }
    };
    assert_eq!(get("one").await, 200);
    assert_eq!(get("two").await, 200);
    assert_eq!(get("three").await, 429);
    // Known codes are free.
    for _ in 0..5 {
        assert_eq!(get("one").await, 200);
    }
    assert_eq!(app.sim.calls("getwxacodeunlimit"), 2);
}
