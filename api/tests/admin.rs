//! The operators' side: the admin API (users, bans, runner applications, orders and
//! reassignment, refunds, the message log, daily statistics) and the console's sign-in
//! by scanning. Runs on SQLite, or MariaDB + Redis with CAMPUS_TEST_MODE=mariadb.

mod common;

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

impl TestApp {
    async fn patch(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .patch(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("patch");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    async fn user_id(&self, token: &str) -> i64 {
        let (s, me) = self.get("/api/v1/me", token).await;
        assert_eq!(s, 200, "{me}");
        me["id"].as_i64().expect("id")
    }

    async fn poll_console(&self, id: &str) -> Value {
        let (s, v) = self
            .get(&format!("/api/v1/console/sessions/{id}"), "")
            .await;
        assert_eq!(s, 200, "{v}");
        v
    }
}

/// Every admin endpoint, as (method, path, body).
fn admin_endpoints(user: i64, order: i64) -> Vec<(&'static str, String, Value)> {
    vec![
        ("GET", "/api/v1/admin/users".into(), Value::Null),
        (
            "POST",
            format!("/api/v1/admin/users/{user}/role"),
            json!({"role": "runner"}),
        ),
        ("POST", format!("/api/v1/admin/users/{user}/ban"), json!({})),
        (
            "POST",
            format!("/api/v1/admin/users/{user}/unban"),
            json!({}),
        ),
        (
            "GET",
            "/api/v1/admin/runner-applications".into(),
            Value::Null,
        ),
        ("GET", "/api/v1/admin/orders".into(), Value::Null),
        (
            "POST",
            format!("/api/v1/admin/orders/{order}/reassign"),
            json!({}),
        ),
        (
            "POST",
            format!("/api/v1/admin/orders/{order}/refund"),
            json!({"refund_fen": 1, "reason": "x"}),
        ),
        ("GET", "/api/v1/admin/refunds".into(), Value::Null),
        ("GET", "/api/v1/admin/messages".into(), Value::Null),
        ("GET", "/api/v1/admin/stats".into(), Value::Null),
    ]
}

async fn call(app: &TestApp, method: &str, path: &str, token: &str, body: &Value) -> (u16, Value) {
    match method {
        "GET" => app.get(path, token).await,
        _ => app.post(path, token, body.clone()).await,
    }
}

#[actix_web::test]
async fn non_admins_are_refused_and_bad_filters_are_422() {
    let app = TestApp::spawn().await;
    let customer = app.login("adm-nonadmin-customer").await;
    let runner = app.runner("adm-nonadmin-runner").await;
    let admin = app.login(ADMIN_OPENID).await;
    let victim = app.user_id(&customer).await;
    let order = app.paid_order(&customer, 200).await["id"]
        .as_i64()
        .expect("id");

    for token in [&customer, &runner] {
        for (m, path, body) in admin_endpoints(victim, order) {
            let (s, b) = call(&app, m, &path, token, &body).await;
            assert_eq!((s, code_of(&b)), (403, "forbidden"), "{m} {path}: {b}");
        }
    }
    for (m, path, body) in admin_endpoints(victim, order) {
        let (s, _) = call(&app, m, &path, "", &body).await;
        assert_eq!(s, 401, "{m} {path} without a token");
        let (s, _) = call(&app, m, &path, "not-a-token", &body).await;
        assert_eq!(s, 401, "{m} {path} with a bad token");
    }
    // Nothing changed behind the refusals.
    let (_, me) = app.get("/api/v1/me", &customer).await;
    assert_eq!(me["role"], "customer");
    let o = app.wait_status(&customer, order, "paid").await;
    assert_eq!(o["refunded_fen"], 0);

    for bad in [
        "/api/v1/admin/users?role=superuser",
        "/api/v1/admin/users?role=Admin",
        "/api/v1/admin/users?limit=0",
        "/api/v1/admin/users?limit=101",
        "/api/v1/admin/users?limit=ten",
        "/api/v1/admin/users?cursor=abc",
        "/api/v1/admin/users?q=%07bell",
        "/api/v1/admin/runner-applications?limit=-1",
        "/api/v1/admin/orders?status=lost",
        "/api/v1/admin/orders?from=2026-02-30",
        "/api/v1/admin/orders?to=yesterday",
        "/api/v1/admin/orders?from=2026-11-30&to=2026-11-01",
        "/api/v1/admin/orders?cursor=1;DROP",
        "/api/v1/admin/refunds?status=done",
        "/api/v1/admin/messages?limit=x",
        "/api/v1/admin/stats?from=2026-11-31",
        "/api/v1/admin/stats?from=2026-11-30&to=2026-11-29",
        "/api/v1/admin/stats?from=2024-01-01&to=2026-01-01",
    ] {
        let (s, b) = app.get(bad, &admin).await;
        assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{bad}: {b}");
    }
    let long = "x".repeat(65);
    let (s, _) = app
        .get(&format!("/api/v1/admin/orders?q={long}"), &admin)
        .await;
    assert_eq!(s, 422, "q longer than 64 characters");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/users/{victim}/role"),
            &admin,
            json!({"role": "root"}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{b}");
    let (s, _) = app
        .post(
            &format!("/api/v1/admin/users/{victim}/role"),
            &admin,
            json!({"role": "runner", "extra": 1}),
        )
        .await;
    assert_eq!(s, 422, "unknown fields are refused");
    let (s, b) = app
        .post("/api/v1/admin/users/999999/ban", &admin, json!({}))
        .await;
    assert_eq!((s, code_of(&b)), (404, "not_found"), "{b}");
}

#[actix_web::test]
async fn users_are_listed_searched_given_roles_banned_and_unbanned() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let admin_id = app.user_id(&admin).await;
    let alice = app.login("adm-openid-Alice").await;
    let bob = app.login("adm-openid-bob").await;
    let carol = app.login("adm-openid-carol").await;
    let (s, _) = app
        .patch("/api/v1/me", &alice, json!({"nickname": "Alice 100%"}))
        .await;
    assert_eq!(s, 200);
    app.patch("/api/v1/me", &bob, json!({"nickname": "小明_bob"}))
        .await;
    let (alice_id, bob_id, carol_id) = (
        app.user_id(&alice).await,
        app.user_id(&bob).await,
        app.user_id(&carol).await,
    );

    let ids = |v: &Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|u| u["id"].as_i64().expect("id"))
            .collect()
    };
    let (s, all) = app.get("/api/v1/admin/users", &admin).await;
    assert_eq!(s, 200, "{all}");
    assert_eq!(ids(&all), vec![carol_id, bob_id, alice_id, admin_id]);
    assert!(all["next_cursor"].is_null());
    let alice_row = &all["items"][2];
    assert_eq!(alice_row["openid"], "adm-openid-Alice");
    assert_eq!(alice_row["nickname"], "Alice 100%");
    assert_eq!(alice_row["banned"], false);

    // Search: nickname (any case on both backends for ASCII), openid, Chinese text, and
    // wildcards taken literally.
    for (q, want) in [
        ("alice", vec![alice_id]),
        ("openid-bob", vec![bob_id]),
        ("小明", vec![bob_id]),
        ("100%", vec![alice_id]),
        ("_bob", vec![bob_id]),
        ("%", vec![alice_id]),
        ("_", vec![bob_id]),
        ("nobody-here", vec![]),
    ] {
        let (s, v) = app
            .get(&format!("/api/v1/admin/users?q={}", url_escape(q)), &admin)
            .await;
        assert_eq!(s, 200, "{v}");
        let mut got = ids(&v);
        got.sort();
        assert_eq!(got, want, "q={q}");
    }
    let (_, admins) = app.get("/api/v1/admin/users?role=admin", &admin).await;
    assert_eq!(ids(&admins), vec![admin_id]);

    // Paging: limit and next_cursor walk every user once.
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/api/v1/admin/users?limit=1&cursor={c}"),
            None => "/api/v1/admin/users?limit=1".into(),
        };
        let (s, page) = app.get(&path, &admin).await;
        assert_eq!(s, 200, "{page}");
        seen.extend(ids(&page));
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    assert_eq!(seen, vec![carol_id, bob_id, alice_id, admin_id]);

    // Roles.
    let (s, u) = app
        .post(
            &format!("/api/v1/admin/users/{carol_id}/role"),
            &admin,
            json!({"role": "runner"}),
        )
        .await;
    assert_eq!((s, u["role"].as_str()), (200, Some("runner")), "{u}");
    let (_, me) = app.get("/api/v1/me", &carol).await;
    assert_eq!(me["role"], "runner", "takes effect on the next call");
    let (s, _) = app.get("/api/v1/runner/orders/available", &carol).await;
    assert_eq!(s, 200);
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/users/{admin_id}/role"),
            &admin,
            json!({"role": "customer"}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "conflict"), "own role: {b}");

    // Ban: the token Bob already holds is refused at once, everywhere, and so is a login.
    let order = app.create_order(&bob, 100).await["id"]
        .as_i64()
        .expect("id");
    let (s, u) = app
        .post(
            &format!("/api/v1/admin/users/{bob_id}/ban"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, u["banned"].as_bool()), (200, Some(true)), "{u}");
    assert!(u["banned_at"].is_string());
    let bob_calls: Vec<(&str, String, Value)> = vec![
        ("GET", "/api/v1/me".into(), Value::Null),
        ("GET", "/api/v1/orders".into(), Value::Null),
        ("GET", format!("/api/v1/orders/{order}"), Value::Null),
        (
            "POST",
            "/api/v1/orders".into(),
            json!({"kind": "express", "pickup": "a", "dropoff": "b", "fee_fen": 100}),
        ),
        ("POST", format!("/api/v1/orders/{order}/pay"), json!({})),
        ("POST", format!("/api/v1/orders/{order}/cancel"), json!({})),
        ("POST", "/api/v1/runners/apply".into(), json!({})),
        ("POST", "/api/v1/me/bind-code".into(), json!({})),
        (
            "POST",
            "/api/v1/notify/credits".into(),
            json!({"template_ids": ["t"]}),
        ),
        ("GET", "/api/v1/qrcode?scene=a%3D1".into(), Value::Null),
        ("GET", "/api/v1/runner/orders/available".into(), Value::Null),
    ];
    for (m, path, body) in &bob_calls {
        let (s, b) = call(&app, m, path, &bob, body).await;
        assert_eq!((s, code_of(&b)), (403, "banned"), "{m} {path}: {b}");
    }
    let (s, b) = app
        .patch("/api/v1/me", &bob, json!({"nickname": "x"}))
        .await;
    assert_eq!((s, code_of(&b)), (403, "banned"), "{b}");
    let code = app.sim.issue_code("adm-openid-bob");
    let (s, b) = app
        .post("/api/v1/auth/login", "", json!({"code": code}))
        .await;
    assert_eq!((s, code_of(&b)), (403, "banned"), "login: {b}");
    // The ban left Bob's order alone.
    let (_, o) = app.get(&format!("/api/v1/orders/{order}"), &admin).await;
    assert_eq!(o["status"], "created");
    // Banning again keeps the first time; the list shows the ban.
    let (_, again) = app
        .post(
            &format!("/api/v1/admin/users/{bob_id}/ban"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(again["banned_at"], u["banned_at"]);
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/users/{admin_id}/ban"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "conflict"), "yourself: {b}");

    // A banned admin is refused on the admin API too.
    app.post(
        &format!("/api/v1/admin/users/{alice_id}/role"),
        &admin,
        json!({"role": "admin"}),
    )
    .await;
    let (s, _) = app.get("/api/v1/admin/users", &alice).await;
    assert_eq!(s, 200, "Alice is an admin now");
    app.post(
        &format!("/api/v1/admin/users/{alice_id}/ban"),
        &admin,
        json!({}),
    )
    .await;
    for (m, path, body) in admin_endpoints(carol_id, order) {
        let (s, b) = call(&app, m, &path, &alice, &body).await;
        assert_eq!((s, code_of(&b)), (403, "banned"), "{m} {path}: {b}");
    }
    let (s, b) = app
        .post(
            "/api/v1/console/sessions/AAAAAAAAAAAAAAAAAAAAAAAAAAAAA/approve",
            &alice,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (403, "banned"), "{b}");

    // Unban: the same token works again.
    let (s, u) = app
        .post(
            &format!("/api/v1/admin/users/{bob_id}/unban"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, u["banned"].as_bool()), (200, Some(false)), "{u}");
    let (s, _) = app.get("/api/v1/me", &bob).await;
    assert_eq!(s, 200);
    app.login("adm-openid-bob").await;
}

fn url_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[actix_web::test]
async fn pending_runner_applications_are_listed_until_approved() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let a = app.login("adm-apply-a").await;
    let b = app.login("adm-apply-b").await;
    let _idle = app.login("adm-apply-idle").await;
    app.patch("/api/v1/me", &a, json!({"nickname": "Runner A"}))
        .await;
    let (a_id, b_id) = (app.user_id(&a).await, app.user_id(&b).await);
    for t in [&a, &b] {
        let (s, _) = app.post("/api/v1/runners/apply", t, json!({})).await;
        assert_eq!(s, 202);
    }
    let (s, v) = app.get("/api/v1/admin/runner-applications", &admin).await;
    assert_eq!(s, 200, "{v}");
    let items = v["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "only applicants: {v}");
    assert_eq!(items[0]["user_id"], a_id);
    assert_eq!(items[0]["nickname"], "Runner A");
    assert!(items[0]["applied_at"].is_string());
    assert_eq!(items[1]["user_id"], b_id);
    assert!(items[1]["nickname"].is_null());

    let (s, _) = app
        .post(
            &format!("/api/v1/admin/runners/{a_id}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    let (_, v) = app
        .get("/api/v1/admin/runner-applications?limit=1", &admin)
        .await;
    assert_eq!(v["items"][0]["user_id"], b_id);
    assert!(v["next_cursor"].is_null(), "{v}");
}

#[actix_web::test]
async fn orders_are_filtered_and_a_held_order_goes_back_to_the_pool() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_template_order = Some("TPL-ORDER".into())),
        ..Options::default()
    })
    .await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("adm-orders-customer").await;
    let runner = app.runner("adm-orders-runner").await;
    let other = app.runner("adm-orders-other").await;
    let runner_id = app.user_id(&runner).await;
    // The runner taps "allow" in wx.requestSubscribeMessage (WeChat's side), and the
    // mini-program tells the server which templates were accepted.
    app.sim
        .accept_subscribe("adm-orders-runner", &["TPL-ORDER"]);
    let (s, _) = app
        .post(
            "/api/v1/notify/credits",
            &runner,
            json!({"template_ids": ["TPL-ORDER"]}),
        )
        .await;
    assert_eq!(s, 200);

    let unpaid = app.create_order(&customer, 100).await;
    let (s, special) = app
        .post(
            "/api/v1/orders",
            &customer,
            json!({"kind": "takeout", "pickup": "北门 50%_off 饭堂", "dropoff": "Dorm 9", "fee_fen": 150}),
        )
        .await;
    assert_eq!(s, 201, "{special}");
    let paid = app.paid_order(&customer, 300).await;
    let id = paid["id"].as_i64().expect("id");
    let otn = paid["out_trade_no"].as_str().expect("otn").to_string();

    let ids = |v: &Value| -> Vec<i64> {
        v["items"]
            .as_array()
            .expect("items")
            .iter()
            .map(|o| o["id"].as_i64().expect("id"))
            .collect()
    };
    let uid = unpaid["id"].as_i64().expect("id");
    let sid = special["id"].as_i64().expect("id");
    let today = (Utc::now() + TimeDelta::hours(8)).date_naive();
    let (yesterday, tomorrow) = (today - TimeDelta::days(1), today + TimeDelta::days(1));
    for (q, want) in [
        ("".to_string(), vec![id, sid, uid]),
        ("?status=paid".into(), vec![id]),
        ("?status=created".into(), vec![sid, uid]),
        (format!("?q={}", &otn[14..]), vec![id]),
        (format!("?q={}", url_escape("北门")), vec![sid]),
        (format!("?q={}", url_escape("50%_")), vec![sid]),
        ("?q=dorm%209".into(), vec![sid]),
        ("?q=Station%20A&status=created".into(), vec![uid]),
        (
            format!("?from={yesterday}&to={tomorrow}"),
            vec![id, sid, uid],
        ),
        (format!("?from={tomorrow}"), vec![]),
        (format!("?to={yesterday}"), vec![]),
        ("?limit=2".into(), vec![id, sid]),
    ] {
        let (s, v) = app.get(&format!("/api/v1/admin/orders{q}"), &admin).await;
        assert_eq!(s, 200, "{q}: {v}");
        assert_eq!(ids(&v), want, "{q}");
    }
    let (_, page) = app.get("/api/v1/admin/orders?limit=2", &admin).await;
    let cursor = page["next_cursor"].as_str().expect("more").to_string();
    let (_, rest) = app
        .get(
            &format!("/api/v1/admin/orders?limit=2&cursor={cursor}"),
            &admin,
        )
        .await;
    assert_eq!(ids(&rest), vec![uid]);
    assert!(
        page["items"][0]["pickup_code"].is_null(),
        "not the customer"
    );

    // Only a held order can be reassigned.
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/reassign"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "invalid_transition"), "paid: {b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{uid}/reassign"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(
        (s, code_of(&b)),
        (409, "invalid_transition"),
        "created: {b}"
    );
    let (s, b) = app
        .post("/api/v1/admin/orders/987654/reassign", &admin, json!({}))
        .await;
    assert_eq!((s, code_of(&b)), (404, "not_found"), "{b}");

    // Accepted and picked up, then the runner vanishes: back to the pool, still paid.
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &runner, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/pickup"), &runner, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, o) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/reassign"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{o}");
    assert_eq!(o["status"], "paid");
    assert!(o["runner_id"].is_null());
    assert!(o["accepted_at"].is_null() && o["picked_up_at"].is_null());
    assert_eq!(o["paid_at"], paid["paid_at"], "the payment stays");
    assert_eq!(o["refunded_fen"], 0);
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/reassign"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "invalid_transition"), "twice: {b}");

    // The old runner has lost it; another runner takes it from the pool.
    let (s, _) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": "000000"}),
        )
        .await;
    assert!(s == 404 || s == 409, "old runner: {s}");
    let (_, avail) = app.get("/api/v1/runner/orders/available", &other).await;
    assert!(ids(&avail).contains(&id), "{avail}");
    let (s, o) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &other, json!({}))
        .await;
    assert_eq!(s, 200, "{o}");
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &runner, json!({}))
        .await;
    assert_eq!((s, code_of(&b)), (409, "already_taken"), "{b}");
    // An accepted order can be reassigned too.
    let (s, o) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/reassign"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, o["status"].as_str()), (200, Some("paid")), "{o}");

    // The first runner was told, with the credit they had granted.
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, log) = app.get("/api/v1/admin/messages", &admin).await;
        assert_eq!(s, 200, "{log}");
        let found = log["items"].as_array().expect("items").iter().any(|m| {
            m["event"] == "reassigned" && m["user_id"] == runner_id && m["order_id"] == id
        });
        if found {
            let m = log["items"]
                .as_array()
                .expect("items")
                .iter()
                .find(|m| m["event"] == "reassigned" && m["user_id"] == runner_id)
                .expect("message");
            assert_eq!(m["outcome"], "sent", "{m}");
            assert_eq!(m["template_id"], "TPL-ORDER");
            assert!(m["id"].is_i64() && m["created_at"].is_string());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no reassigned message: {log}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn refunds_are_listed_by_status() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("adm-refunds-customer").await;
    let o = app.paid_order(&customer, 500).await;
    let id = o["id"].as_i64().expect("id");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{id}/refund"),
            &admin,
            json!({"refund_fen": 120, "reason": "late"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");

    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let refund = loop {
        let (s, v) = app
            .get("/api/v1/admin/refunds?status=success", &admin)
            .await;
        assert_eq!(s, 200, "{v}");
        if let Some(r) = v["items"].as_array().and_then(|a| a.first()) {
            break r.clone();
        }
        assert!(std::time::Instant::now() < deadline, "never settled");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(refund["order_id"], id);
    assert_eq!(refund["refund_fen"], 120);
    assert_eq!(refund["reason"], "late");
    assert_eq!(refund["cause"], "admin");
    assert!(refund["out_refund_no"].is_string() && refund["id"].is_i64());
    let (_, all) = app.get("/api/v1/admin/refunds", &admin).await;
    assert_eq!(all["items"].as_array().map(Vec::len), Some(1));
    for other in ["requested", "processing", "failed"] {
        let (s, v) = app
            .get(&format!("/api/v1/admin/refunds?status={other}"), &admin)
            .await;
        assert_eq!(s, 200);
        assert_eq!(v["items"], json!([]), "{other}");
    }
}

#[actix_web::test]
async fn daily_statistics_in_beijing_days() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("adm-stats-customer").await;
    let runner = app.runner("adm-stats-runner").await;
    app.create_order(&customer, 50).await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let code = o["pickup_code"].as_str().expect("code").to_string();
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
    let (s, _) = app
        .post(
            &format!("/api/v1/orders/{id}/confirm"),
            &customer,
            json!({}),
        )
        .await;
    assert_eq!(s, 200);
    app.post(
        &format!("/api/v1/admin/orders/{id}/refund"),
        &admin,
        json!({"refund_fen": 100, "reason": "goodwill"}),
    )
    .await;

    // Around today, so a run that crosses Beijing midnight still counts everything.
    let today = (Utc::now() + TimeDelta::hours(8)).date_naive();
    let (from, to) = (today - TimeDelta::days(1), today + TimeDelta::days(1));
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, v) = app
            .get(&format!("/api/v1/admin/stats?from={from}&to={to}"), &admin)
            .await;
        assert_eq!(s, 200, "{v}");
        let days = v["days"].as_array().expect("days");
        assert_eq!(days.len(), 3);
        assert_eq!(days[0]["date"], from.to_string());
        assert_eq!(days[2]["date"], to.to_string());
        let sum = |k: &str| days.iter().map(|d| d[k].as_i64().expect(k)).sum::<i64>();
        if sum("refunded_fen") == 100 {
            assert_eq!(sum("orders"), 2);
            assert_eq!(sum("paid_fen"), 300);
            assert_eq!(sum("completed"), 1);
            assert!((1..=2).contains(&sum("active_runners")));
            assert_eq!(days[2]["orders"], 0, "tomorrow is empty");
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "refund never counted: {v}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Default range: the last 7 days, ending today.
    let (s, v) = app.get("/api/v1/admin/stats", &admin).await;
    assert_eq!(s, 200);
    let days = v["days"].as_array().expect("days");
    assert_eq!(days.len(), 7);
    assert_eq!(days[6]["date"], today.to_string());
    for k in [
        "orders",
        "paid_fen",
        "refunded_fen",
        "completed",
        "active_runners",
    ] {
        assert!(days[6][k].is_i64(), "{k}");
    }
}

#[actix_web::test]
async fn console_sign_in_by_scanning_hands_the_token_over_once() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("adm-console-customer").await;

    let (s, page) = app.get("/admin/", "").await;
    assert_eq!(s, 200);
    assert!(page.is_null(), "HTML, not JSON");
    let r = app
        .client
        .get(app.url("/admin/"))
        .send()
        .await
        .expect("page");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .is_ok_and(|c| c.starts_with("text/html"))
    );
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    let html = r.text().await.expect("html");
    assert!(html.contains("/api/v1/console/sessions"));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "nothing from elsewhere"
    );

    let (s, session) = app.post("/api/v1/console/sessions", "", json!({})).await;
    assert_eq!(s, 201, "{session}");
    let id = session["id"].as_str().expect("id").to_string();
    assert_eq!(id.len(), 29);
    assert!(session["expires_at"].is_string());
    let img = app
        .client
        .get(session["qrcode_url"].as_str().expect("url"))
        .send()
        .await
        .expect("image");
    assert_eq!(img.status(), 200);
    assert!(img.bytes().await.expect("bytes").starts_with(b"\x89PNG"));
    let (_, other) = app.post("/api/v1/console/sessions", "", json!({})).await;
    assert_ne!(other["id"], session["id"]);

    assert_eq!(
        app.poll_console(&id).await,
        json!({"status": "pending", "token": null})
    );
    let approve = format!("/api/v1/console/sessions/{id}/approve");
    let (s, _) = app.post(&approve, "", json!({})).await;
    assert_eq!(s, 401);
    let (s, b) = app.post(&approve, &customer, json!({})).await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"), "{b}");
    assert_eq!(app.poll_console(&id).await["status"], "pending");
    for bad in ["AAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "short", "..%2F..%2Fetc"] {
        let (s, b) = app
            .post(
                &format!("/api/v1/console/sessions/{bad}/approve"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(s, 404, "{bad}: {b}");
    }
    let (s, b) = app.get("/api/v1/console/sessions/not-an-id", "").await;
    assert_eq!(s, 404, "{b}");
    assert_eq!(
        app.poll_console("AAAAAAAAAAAAAAAAAAAAAAAAAAAAA").await["status"],
        "expired"
    );

    let (s, b) = app.post(&approve, &admin, json!({})).await;
    assert_eq!((s, b["status"].as_str()), (200, Some("approved")), "{b}");
    assert!(b["token"].is_null(), "the approver does not get the token");
    let (s, b) = app.post(&approve, &admin, json!({})).await;
    assert_eq!((s, code_of(&b)), (409, "already_approved"), "{b}");

    let first = app.poll_console(&id).await;
    assert_eq!(first["status"], "approved");
    let token = first["token"].as_str().expect("token once").to_string();
    let (s, me) = app.get("/api/v1/me", &token).await;
    assert_eq!((s, me["role"].as_str()), (200, Some("admin")));
    let (s, _) = app.get("/api/v1/admin/users", &token).await;
    assert_eq!(s, 200);
    assert_eq!(
        app.poll_console(&id).await,
        json!({"status": "approved", "token": null}),
        "a second poll gets no token"
    );
    // The other session is untouched.
    assert_eq!(
        app.poll_console(other["id"].as_str().expect("id")).await["status"],
        "pending"
    );
}

#[actix_web::test]
async fn console_sessions_expire_and_concurrent_polls_get_one_token() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.console_session_secs = 1),
        ..Options::default()
    })
    .await;
    let admin = app.login(ADMIN_OPENID).await;
    let (_, session) = app.post("/api/v1/console/sessions", "", json!({})).await;
    let id = session["id"].as_str().expect("id").to_string();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while app.poll_console(&id).await["status"] != "expired" {
        assert!(std::time::Instant::now() < deadline, "never expired");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (s, b) = app
        .post(
            &format!("/api/v1/console/sessions/{id}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (404, "not_found"), "expired: {b}");

    // Twenty pages poll the same approved session at once: one token.
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let (_, session) = app.post("/api/v1/console/sessions", "", json!({})).await;
    let id = session["id"].as_str().expect("id").to_string();
    app.post(
        &format!("/api/v1/console/sessions/{id}/approve"),
        &admin,
        json!({}),
    )
    .await;
    let polls = futures::future::join_all((0..20).map(|_| app.poll_console(&id))).await;
    let tokens = polls.iter().filter(|p| p["token"].is_string()).count();
    assert_eq!(tokens, 1, "{polls:?}");
    assert!(polls.iter().all(|p| p["status"] == "approved"));
}

#[actix_web::test]
async fn console_sessions_are_limited_per_address() {
    let app = TestApp::spawn().await;
    for _ in 0..20 {
        let (s, b) = app.post("/api/v1/console/sessions", "", json!({})).await;
        assert_eq!(s, 201, "{b}");
    }
    let r = app
        .client
        .post(app.url("/api/v1/console/sessions"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let b: Value = r.json().await.expect("json");
    assert_eq!(code_of(&b), "rate_limited");
}

/// Two instances sharing the database and Redis: a session opened on one is approved
/// on the other and polled on the first; a ban made on one holds on the other at once.
#[actix_web::test]
async fn instances_agree_on_console_sessions_and_bans() {
    let one = TestApp::spawn_with(Options {
        redis: true,
        ..Options::default()
    })
    .await;
    let two = TestApp::spawn_with(Options {
        redis: true,
        sim: Some(one.sim.clone()),
        database_url: Some(one.settings.database_url.clone()),
        ..Options::default()
    })
    .await;
    let admin_on_two = two.login(ADMIN_OPENID).await;
    let (s, session) = one.post("/api/v1/console/sessions", "", json!({})).await;
    assert_eq!(s, 201, "{session}");
    let id = session["id"].as_str().expect("id").to_string();
    assert_eq!(two.poll_console(&id).await["status"], "pending");
    let (s, b) = two
        .post(
            &format!("/api/v1/console/sessions/{id}/approve"),
            &admin_on_two,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = one
        .post(
            &format!("/api/v1/console/sessions/{id}/approve"),
            &admin_on_two,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "already_approved"), "{b}");
    let first = one.poll_console(&id).await;
    let token = first["token"].as_str().expect("token").to_string();
    assert!(two.poll_console(&id).await["token"].is_null());
    let (s, _) = two.get("/api/v1/admin/stats", &token).await;
    assert_eq!(s, 200);

    let user = one.login("adm-two-instances").await;
    let uid = one.user_id(&user).await;
    let (s, _) = two.get("/api/v1/me", &user).await;
    assert_eq!(s, 200);
    let (s, _) = one
        .post(&format!("/api/v1/admin/users/{uid}/ban"), &token, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = two.get("/api/v1/me", &user).await;
    assert_eq!((s, code_of(&b)), (403, "banned"), "{b}");
    two.stop().await;
}
