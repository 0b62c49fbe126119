//! Coupons, black-box: issuing, claiming under heavy concurrency (one instance and two
//! sharing a database), putting one on an order, and its life with the order's.

mod common;

use std::time::Duration;

use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

async fn issue(app: &TestApp, admin: &str, body: Value) -> Value {
    let (s, c) = app.post("/api/v1/admin/coupons", admin, body).await;
    assert_eq!(s, 201, "{c}");
    c
}

async fn claim(app: &TestApp, token: &str, coupon: i64) -> (u16, Value) {
    app.post(&format!("/api/v1/coupons/{coupon}/claim"), token, json!({}))
        .await
}

async fn claimed(app: &TestApp, token: &str, coupon: i64) -> i64 {
    let (s, u) = claim(app, token, coupon).await;
    assert_eq!(s, 201, "{u}");
    id_of(&u)
}

async fn order_with(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let mut b = json!({"kind": "express", "pickup": "Station A", "dropoff": "Dorm 5", "note": "", "goods_fen": 0});
    if let (Some(b), Some(extra)) = (b.as_object_mut(), body.as_object()) {
        for (k, v) in extra {
            b.insert(k.clone(), v.clone());
        }
    }
    app.post("/api/v1/orders", token, b).await
}

async fn my_coupon(app: &TestApp, token: &str, id: i64) -> Value {
    let (s, page) = app.get("/api/v1/me/coupons?limit=100", token).await;
    assert_eq!(s, 200, "{page}");
    page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|u| u["id"] == id).cloned())
        .unwrap_or_else(|| panic!("coupon {id} in {page}"))
}

/// Moves a claimed coupon's expiry to `secs` from now (negative: past).
async fn set_expiry(app: &TestApp, id: i64, secs: i64) {
    use campus_dal::schema::user_coupons;
    use diesel::prelude::*;
    let at = campus_dal::time::now() + chrono::Duration::seconds(secs);
    let n = app
        .ctx
        .db
        .write(move |c| {
            diesel::update(user_coupons::table.find(id))
                .set(user_coupons::expires_at.eq(at))
                .execute(c)
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("expiry moved");
    assert_eq!(n, 1);
}

/// Stored rows of one coupon: (claims, distinct users).
async fn stored_claims(app: &TestApp, coupon: i64) -> Vec<i64> {
    use campus_dal::schema::user_coupons;
    use diesel::prelude::*;
    app.ctx
        .db
        .read(move |c| {
            user_coupons::table
                .filter(user_coupons::coupon_id.eq(coupon))
                .select(user_coupons::user_id)
                .load::<i64>(c)
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("claims")
}

#[actix_web::test]
async fn admins_issue_stop_and_read_coupons() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let user = app.login("coupon-reader").await;
    let body = json!({"title": "新人立减", "discount_fen": 300, "min_amount_fen": 500, "stock": 100,
        "per_user_limit": 1, "valid_days": 7, "kinds": ["express", "takeout"], "keyword": null});
    let (s, b) = app.post("/api/v1/admin/coupons", &user, body.clone()).await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"), "{b}");
    let c = issue(&app, &admin, body.clone()).await;
    assert_eq!(c["status"], "active");
    assert_eq!(
        (&c["claimed"], &c["used"], &c["remaining"]),
        (&json!(0), &json!(0), &json!(100))
    );
    assert_eq!(c["discount_kind"], "fixed");
    assert_eq!(c["kinds"], json!(["express", "takeout"]));
    let id = id_of(&c);

    for bad in [
        json!({"title": "x", "discount_fen": 100, "percent_off": 10, "max_discount_fen": 50, "stock": 1, "valid_days": 1}),
        json!({"title": "x", "percent_off": 10, "stock": 1, "valid_days": 1}),
        json!({"title": "x", "percent_off": 101, "max_discount_fen": 50, "stock": 1, "valid_days": 1}),
        json!({"title": "x", "discount_fen": 100, "stock": 0, "valid_days": 1}),
        json!({"title": "x", "discount_fen": 100, "stock": 1}),
        json!({"title": "x", "discount_fen": 100, "stock": 1, "valid_days": 1, "valid_until": "2099-01-01T00:00:00Z"}),
        json!({"title": "x", "discount_fen": 100, "stock": 1, "valid_until": "2000-01-01T00:00:00Z"}),
        json!({"title": "", "discount_fen": 100, "stock": 1, "valid_days": 1}),
        json!({"title": "x", "discount_fen": 100, "stock": 1, "valid_days": 1, "per_user_limit": 0}),
        json!({"title": "x", "discount_fen": 100, "stock": 1, "valid_days": 1, "kinds": []}),
        json!({"title": "x", "discount_fen": 100, "stock": 1, "valid_days": 1, "keyword": "bind me"}),
    ] {
        let (s, b) = app.post("/api/v1/admin/coupons", &admin, bad.clone()).await;
        assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{bad}");
    }

    // The same Idempotency-Key gives the first coupon again.
    let send = |key: &'static str| {
        app.client
            .post(app.url("/api/v1/admin/coupons"))
            .bearer_auth(&admin)
            .header("Idempotency-Key", key)
            .json(&body)
            .send()
    };
    let first = send("coupon-once").await.expect("post");
    assert_eq!(first.status(), 201);
    let first: Value = first.json().await.expect("json");
    let again = send("coupon-once").await.expect("post");
    assert_eq!(again.status(), 201);
    let again: Value = again.json().await.expect("json");
    assert_eq!(first["id"], again["id"]);

    let (s, list) = app.get("/api/v1/coupons", &user).await;
    assert_eq!(s, 200, "{list}");
    let listed = list["items"].as_array().expect("items");
    assert!(
        listed
            .iter()
            .any(|c| c["id"] == id && c["remaining"] == 100)
    );
    assert!(
        listed.iter().all(|c| c["keyword"].is_null()),
        "keywords stay with admins"
    );

    let claim_once = || {
        app.client
            .post(app.url(&format!("/api/v1/coupons/{id}/claim")))
            .bearer_auth(&user)
            .header("Idempotency-Key", "claim-once")
            .send()
    };
    let r = claim_once().await.expect("post");
    assert_eq!(r.status(), 201);
    let uc = id_of(&r.json::<Value>().await.expect("json"));
    let r = claim_once().await.expect("post");
    assert_eq!(r.status(), 201, "the same key: the first claim again");
    assert_eq!(
        r.headers().get("Idempotent-Replayed").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(id_of(&r.json::<Value>().await.expect("json")), uc);
    let (s, b) = claim(&app, &user, id).await;
    assert_eq!((s, code_of(&b)), (409, "already_claimed"), "{b}");
    let (s, list) = app.get("/api/v1/coupons", &user).await;
    assert_eq!(s, 200);
    assert!(
        list["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|c| c["id"] != id),
        "claimed as often as allowed: not listed for this user"
    );
    let mine = my_coupon(&app, &user, uc).await;
    assert_eq!(mine["status"], "available");
    assert_eq!(mine["title"], "新人立减");
    assert_eq!(mine["coupon_id"], id);
    assert!(mine["expires_at"].is_string());

    let (s, b) = app
        .post(
            &format!("/api/v1/admin/coupons/{id}/stop"),
            &user,
            json!({}),
        )
        .await;
    assert_eq!(s, 403, "{b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/coupons/{id}/stop"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, &b["status"]), (200, &json!("stopped")), "{b}");
    let other = app.login("coupon-late").await;
    let (s, b) = claim(&app, &other, id).await;
    assert_eq!(s, 404, "stopped: {b}");
    let (s, b) = claim(&app, &other, 999_999).await;
    assert_eq!(s, 404, "unknown: {b}");
    let (s, c) = app
        .get(&format!("/api/v1/admin/coupons/{id}"), &admin)
        .await;
    assert_eq!(s, 200);
    assert_eq!((&c["claimed"], &c["remaining"]), (&json!(1), &json!(99)));
    let (s, _) = app.get(&format!("/api/v1/admin/coupons/{id}"), &user).await;
    assert_eq!(s, 403);
    let (s, _) = app.get("/api/v1/admin/coupons/999999", &admin).await;
    assert_eq!(s, 404);
    let (s, b) = app.get("/api/v1/me/coupons?status=bogus", &user).await;
    assert!(s == 400 || s == 422, "{b}");
}

/// `users` users each send `per_user` claims at once, spread over `apps`.
async fn stampede(
    apps: &[&TestApp],
    coupon: i64,
    users: usize,
    per_user: usize,
) -> Vec<(u16, String)> {
    let mut tokens = Vec::new();
    for i in 0..users {
        tokens.push(apps[i % apps.len()].login(&format!("stampede-{i}")).await);
    }
    let mut calls = Vec::new();
    for (i, t) in tokens.iter().enumerate() {
        for k in 0..per_user {
            let app = apps[(i + k) % apps.len()];
            calls.push(async move {
                let (s, b) = claim(app, t, coupon).await;
                (s, code_of(&b).to_string())
            });
        }
    }
    futures::future::join_all(calls).await
}

fn tally(results: &[(u16, String)]) -> (usize, usize) {
    let won = results.iter().filter(|(s, _)| *s == 201).count();
    let out = results
        .iter()
        .filter(|(s, c)| *s == 409 && c == "out_of_stock")
        .count();
    (won, out)
}

#[actix_web::test]
async fn a_thousand_claims_on_a_stock_of_ten_make_ten() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let c = issue(
        &app,
        &admin,
        json!({"title": "限量", "discount_fen": 100, "stock": 10, "per_user_limit": 10, "valid_days": 1}),
    )
    .await;
    let id = id_of(&c);
    let results = stampede(&[&app], id, 100, 10).await;
    assert_eq!(results.len(), 1000);
    let (won, out) = tally(&results);
    assert_eq!((won, out), (10, 990), "{:?}", &results[..5]);
    assert_eq!(stored_claims(&app, id).await.len(), 10);
    let (_, c) = app
        .get(&format!("/api/v1/admin/coupons/{id}"), &admin)
        .await;
    assert_eq!((&c["claimed"], &c["remaining"]), (&json!(10), &json!(0)));
}

#[actix_web::test]
async fn two_instances_on_one_database_share_the_stock() {
    let one = TestApp::spawn().await;
    let two = TestApp::spawn_with(Options {
        sim: Some(one.sim.clone()),
        database_url: Some(one.settings.database_url.clone()),
        ..Options::default()
    })
    .await;
    let admin = one.login(ADMIN_OPENID).await;
    let c = issue(
        &one,
        &admin,
        json!({"title": "两台", "discount_fen": 100, "stock": 10, "per_user_limit": 3, "valid_days": 1}),
    )
    .await;
    let id = id_of(&c);
    let results = stampede(&[&one, &two], id, 200, 5).await;
    assert_eq!(results.len(), 1000);
    let won = results.iter().filter(|(s, _)| *s == 201).count();
    assert_eq!(won, 10);
    assert!(
        results
            .iter()
            .all(|(s, c)| *s == 201
                || (*s == 409 && (c == "out_of_stock" || c == "already_claimed"))),
        "{results:?}"
    );
    let users = stored_claims(&one, id).await;
    assert_eq!(users.len(), 10);
    for u in &users {
        assert!(
            users.iter().filter(|x| *x == u).count() <= 3,
            "per-user limit"
        );
    }
    let (_, c) = two
        .get(&format!("/api/v1/admin/coupons/{id}"), &admin)
        .await;
    assert_eq!(c["claimed"], 10);
    two.stop().await;
}

async fn claim_with_key(app: &TestApp, token: &str, coupon: i64, key: &str) -> (u16, Value) {
    let r = app
        .client
        .post(app.url(&format!("/api/v1/coupons/{coupon}/claim")))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&json!({}))
        .send()
        .await
        .expect("claim");
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

/// A server with the stock gate `gate` (Redis for `redis`), its admin's token, and a coupon
/// of `stock`, one per user.
async fn gated_coupon(gate: &'static str, stock: i64) -> (TestApp, String, i64) {
    let app = TestApp::spawn_with(Options {
        redis: gate == "redis",
        tweak: Box::new(move |s| s.coupon_stock_gate = gate.into()),
        ..Options::default()
    })
    .await;
    let admin = app.login(ADMIN_OPENID).await;
    let c = issue(
        &app,
        &admin,
        json!({"title": "限量", "discount_fen": 100, "stock": stock, "per_user_limit": 1, "valid_days": 1}),
    )
    .await;
    (app, admin, id_of(&c))
}

/// Each stock gate (`COUPON_STOCK_GATE`) turns away only what the database would: a claim
/// refused for the per-user limit leaves its place to someone else, a sold-out coupon
/// still replays a retried claim that got one, and a stopped coupon is not found.
#[actix_web::test]
async fn both_stock_gates_refuse_only_what_the_database_would() {
    for gate in ["sql", "redis"] {
        let (app, admin, id) = gated_coupon(gate, 2).await;
        let (a, b, c) = (
            app.login("gate-a").await,
            app.login("gate-b").await,
            app.login("gate-c").await,
        );
        let (s, first) = claim_with_key(&app, &a, id, "gate-key-1").await;
        assert_eq!(s, 201, "{gate}: {first}");
        let (s, again) = claim(&app, &a, id).await;
        assert_eq!((s, code_of(&again)), (409, "already_claimed"), "{gate}");
        let (s, won) = claim(&app, &b, id).await;
        assert_eq!(s, 201, "{gate}: the refused claim left its place: {won}");
        let (s, late) = claim(&app, &c, id).await;
        assert_eq!((s, code_of(&late)), (409, "out_of_stock"), "{gate}");
        let (s, replay) = claim_with_key(&app, &a, id, "gate-key-1").await;
        assert_eq!((s, &replay["id"]), (201, &first["id"]), "{gate}: replayed");
        let (s, _) = app
            .post(
                &format!("/api/v1/admin/coupons/{id}/stop"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{gate}");
        let (s, stopped) = claim(&app, &c, id).await;
        assert_eq!(
            (s, code_of(&stopped)),
            (404, "not_found"),
            "{gate}: {stopped}"
        );
        assert_eq!(stored_claims(&app, id).await.len(), 2, "{gate}");
        app.stop().await;
    }
}

/// The Redis counter only spares the database work: when it says more are left than are
/// (a seed that raced a claim), the database still stops at the stock.
#[actix_web::test]
async fn a_generous_redis_counter_still_cannot_oversell() {
    let (app, _, id) = gated_coupon("redis", 3).await;
    let key = format!("coupon_left:{}:{id}", app.sim.config().appid);
    app.ctx
        .cache
        .set_ex(&key, "1000", Duration::from_secs(60))
        .await
        .expect("counter set");
    let results = stampede(&[&app], id, 50, 1).await;
    let (won, out) = tally(&results);
    assert_eq!((won, out), (3, 47), "{:?}", &results[..5]);
    assert_eq!(stored_claims(&app, id).await.len(), 3);
    app.stop().await;
}

#[actix_web::test]
async fn one_user_gets_no_more_than_the_per_user_limit() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let c = issue(
        &app,
        &admin,
        json!({"title": "每人两张", "discount_fen": 100, "stock": 100, "per_user_limit": 2, "valid_days": 1}),
    )
    .await;
    let id = id_of(&c);
    let user = app.login("greedy").await;
    let calls = (0..20).map(|_| claim(&app, &user, id));
    let results = futures::future::join_all(calls).await;
    let won = results.iter().filter(|(s, _)| *s == 201).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 409 && code_of(b) == "already_claimed")
        .count();
    assert_eq!((won, refused), (2, 18), "{results:?}");
    assert_eq!(stored_claims(&app, id).await.len(), 2);
    let (_, page) = app.get("/api/v1/me/coupons?status=available", &user).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
}

#[actix_web::test]
async fn discounts_are_computed_and_wrong_coupons_refused() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let user = app.login("discounted").await;
    let other = app.login("not-the-owner").await;
    let fixed = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "立减3元", "discount_fen": 300, "min_amount_fen": 500, "stock": 10, "per_user_limit": 5, "valid_days": 1, "kinds": ["express"]}),
        )
        .await,
    );
    let pct = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "85折", "percent_off": 15, "max_discount_fen": 100, "stock": 10, "per_user_limit": 5,
                   "valid_until": (chrono::Utc::now() + chrono::Duration::days(3)).to_rfc3339()}),
        )
        .await,
    );
    let big = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "大额", "discount_fen": 5000, "stock": 10, "per_user_limit": 5, "valid_days": 1}),
        )
        .await,
    );

    let uc = claimed(&app, &user, fixed).await;
    let (s, o) = order_with(
        &app,
        &user,
        json!({"fee_fen": 800, "goods_fen": 200, "coupon_id": uc}),
    )
    .await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(
        (&o["discount_fen"], &o["amount_fen"]),
        (&json!(300), &json!(700))
    );
    let mine = my_coupon(&app, &user, uc).await;
    assert_eq!(
        (&mine["status"], &mine["order_id"]),
        (&json!("locked"), &o["id"])
    );

    let uc = claimed(&app, &user, pct).await;
    let (s, o) = order_with(&app, &user, json!({"fee_fen": 333, "coupon_id": uc})).await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(
        (&o["discount_fen"], &o["amount_fen"]),
        (&json!(49), &json!(284)),
        "rounded down"
    );
    let uc = claimed(&app, &user, pct).await;
    let (_, o) = order_with(
        &app,
        &user,
        json!({"fee_fen": 5000, "goods_fen": 5000, "coupon_id": uc}),
    )
    .await;
    assert_eq!(o["discount_fen"], 100, "capped: {o}");

    let uc = claimed(&app, &user, big).await;
    let (s, o) = order_with(&app, &user, json!({"fee_fen": 300, "coupon_id": uc})).await;
    assert_eq!(s, 201, "{o}");
    assert_eq!(
        (&o["discount_fen"], &o["amount_fen"]),
        (&json!(299), &json!(1)),
        "1 fen is left to pay"
    );

    let not_applicable = |s: u16, b: &Value| s == 422 && code_of(b) == "coupon_not_applicable";
    let uc = claimed(&app, &user, fixed).await;
    let (s, b) = order_with(&app, &user, json!({"fee_fen": 499, "coupon_id": uc})).await;
    assert!(not_applicable(s, &b), "below the minimum: {s} {b}");
    let (s, b) = order_with(
        &app,
        &user,
        json!({"kind": "takeout", "fee_fen": 900, "coupon_id": uc}),
    )
    .await;
    assert!(not_applicable(s, &b), "wrong kind: {s} {b}");
    let (s, b) = order_with(&app, &other, json!({"fee_fen": 900, "coupon_id": uc})).await;
    assert!(not_applicable(s, &b), "not the caller's: {s} {b}");
    let (s, b) = order_with(&app, &user, json!({"fee_fen": 900, "coupon_id": 987_654})).await;
    assert!(not_applicable(s, &b), "unknown: {s} {b}");
    set_expiry(&app, uc, -5).await;
    let (s, b) = order_with(&app, &user, json!({"fee_fen": 900, "coupon_id": uc})).await;
    assert!(not_applicable(s, &b), "expired: {s} {b}");
    assert_eq!(my_coupon(&app, &user, uc).await["status"], "expired");
    // Refused requests left the coupon as it was and made no order.
    let uc = claimed(&app, &user, fixed).await;
    let (s, _) = order_with(&app, &user, json!({"fee_fen": 900, "coupon_id": uc})).await;
    assert_eq!(s, 201);
    let (s, b) = order_with(&app, &user, json!({"fee_fen": 900, "coupon_id": uc})).await;
    assert!(not_applicable(s, &b), "locked by another order: {s} {b}");
}

#[actix_web::test]
async fn one_coupon_goes_on_one_order_even_at_once() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let user = app.login("double-spender").await;
    let c = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "一张", "discount_fen": 100, "stock": 1, "valid_days": 1}),
        )
        .await,
    );
    let uc = claimed(&app, &user, c).await;
    let calls =
        (0..10).map(|i| order_with(&app, &user, json!({"fee_fen": 500 + i, "coupon_id": uc})));
    let results = futures::future::join_all(calls).await;
    let won: Vec<&Value> = results
        .iter()
        .filter(|(s, _)| *s == 201)
        .map(|(_, o)| o)
        .collect();
    assert_eq!(won.len(), 1, "{results:?}");
    assert!(
        results
            .iter()
            .all(|(s, b)| *s == 201 || (*s == 422 && code_of(b) == "coupon_not_applicable")),
        "{results:?}"
    );
    assert_eq!(won[0]["discount_fen"], 100);
    let mine = my_coupon(&app, &user, uc).await;
    assert_eq!(
        (&mine["status"], &mine["order_id"]),
        (&json!("locked"), &won[0]["id"])
    );
}

#[actix_web::test]
async fn the_coupon_follows_its_order_paid_closed_and_refunded() {
    let app = TestApp::spawn().await;
    let jobs = app.ctx.clone().start_jobs();
    let admin = app.login(ADMIN_OPENID).await;
    let user = app.login("coupon-payer").await;
    let c = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "支付券", "discount_fen": 200, "stock": 10, "per_user_limit": 5, "valid_days": 1}),
        )
        .await,
    );

    // Paid: used, and a refund of the order does not give it back.
    let uc = claimed(&app, &user, c).await;
    let (s, o) = order_with(&app, &user, json!({"fee_fen": 700, "coupon_id": uc})).await;
    assert_eq!(s, 201, "{o}");
    let id = id_of(&o);
    let params = app.pay_params(&user, id).await;
    app.sim
        .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
        .expect("sim pays");
    let paid = app.wait_status(&user, id, "paid").await;
    assert_eq!(paid["amount_fen"], 500);
    let mine = my_coupon(&app, &user, uc).await;
    assert_eq!(mine["status"], "used");
    assert!(mine["used_at"].is_string());
    let (_, cp) = app.get(&format!("/api/v1/admin/coupons/{c}"), &admin).await;
    assert_eq!(cp["used"], 1);
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &user, json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    app.wait_status(&user, id, "refunded").await;
    assert_eq!(my_coupon(&app, &user, uc).await["status"], "used");

    // Cancelled unpaid: available again, and another order may take it.
    let uc = claimed(&app, &user, c).await;
    let (_, o) = order_with(&app, &user, json!({"fee_fen": 700, "coupon_id": uc})).await;
    let id = id_of(&o);
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &user, json!({}))
        .await;
    assert_eq!((s, &b["status"]), (200, &json!("closed")), "{b}");
    let mine = my_coupon(&app, &user, uc).await;
    assert_eq!(
        (&mine["status"], &mine["order_id"]),
        (&json!("available"), &Value::Null)
    );
    let (s, o) = order_with(&app, &user, json!({"fee_fen": 700, "coupon_id": uc})).await;
    assert_eq!(s, 201, "{o}");

    // Closed unpaid by the pay timeout after the coupon's time ran out: expired.
    let id = id_of(&o);
    set_expiry(&app, uc, -1).await;
    app.set_pay_deadline(id, -1).await;
    app.wait_status(&user, id, "closed").await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let mine = my_coupon(&app, &user, uc).await;
        if mine["status"] == "expired" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "{mine}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    jobs.abort();
}

#[actix_web::test]
async fn the_expiry_job_marks_coupons_past_their_time() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let user = app.login("coupon-forgetter").await;
    let c = id_of(
        &issue(
            &app,
            &admin,
            json!({"title": "过期", "discount_fen": 100, "stock": 10, "per_user_limit": 2, "valid_days": 1}),
        )
        .await,
    );
    let old = claimed(&app, &user, c).await;
    let fresh = claimed(&app, &user, c).await;
    set_expiry(&app, old, -60).await;
    let (_, page) = app.get("/api/v1/me/coupons?status=available", &user).await;
    let ids: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(
        ids,
        vec![fresh],
        "past its time before the job ran: not available"
    );
    assert_eq!(app.ctx.promotions.expire_coupons().await.expect("job"), 1);
    assert_eq!(app.ctx.promotions.expire_coupons().await.expect("job"), 0);
    let (_, page) = app.get("/api/v1/me/coupons?status=expired", &user).await;
    let ids: Vec<i64> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(id_of)
        .collect();
    assert_eq!(ids, vec![old]);
    let (_, page) = app.get("/api/v1/me/coupons?limit=1", &user).await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(1));
    assert!(page["next_cursor"].is_string(), "{page}");
}

/// MsgIds are unique per account at WeChat; random here so runs sharing one Redis
/// (its de-duplication store) never see each other's pushes.
fn text_msg(from: &str, content: &str, n: u64) -> String {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let msg_id = BASE.get_or_init(|| rand::random::<u32>() as u64 * 1000) + n;
    format!(
        "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
}

#[actix_web::test]
async fn a_keyword_sent_to_the_official_account_claims_the_coupon() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let c = issue(
        &app,
        &admin,
        json!({"title": "公众号专享", "discount_fen": 100, "stock": 1, "valid_days": 1, "keyword": "领券"}),
    )
    .await;
    // Senders new to this run: bind attempts are counted per sender in the shared Redis
    // for ten minutes, across test runs.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let sender_a: &'static str = Box::leak(format!("mp-coupon-a-{run}").into_boxed_str());
    let sender_b: &'static str = Box::leak(format!("mp-coupon-b-{run}").into_boxed_str());
    let endpoint = app.url("/wechat/mp");
    let push = |from: &'static str, content: &'static str, n: u64| {
        let msg = text_msg(from, content, n);
        let sim = app.sim.clone();
        let endpoint = endpoint.clone();
        async move {
            let (s, reply) = sim
                .push_mp_message(&endpoint, &msg, false)
                .await
                .expect("push");
            assert_eq!(s, 200);
            reply
        }
    };

    let reply = push(sender_a, "领券", 1).await;
    assert!(reply.contains("bind <code>"), "unbound: {reply}");

    let bind = |token: String, from: &'static str, n: u64| {
        let app = &app;
        async move {
            let (_, code) = app.post("/api/v1/me/bind-code", &token, json!({})).await;
            let code = code["code"].as_str().expect("code").to_string();
            let msg = text_msg(from, &format!("bind {code}"), n);
            let (_, r) = app
                .sim
                .push_mp_message(&app.url("/wechat/mp"), &msg, false)
                .await
                .expect("push");
            assert!(r.contains("Linked"), "{r}");
        }
    };
    let a = app.login("mp-coupon-user-a").await;
    bind(a.clone(), sender_a, 2).await;
    let reply = push(sender_a, "领券", 3).await;
    assert!(
        reply.contains("公众号专享") && reply.contains("Claimed"),
        "{reply}"
    );
    let (_, page) = app.get("/api/v1/me/coupons", &a).await;
    assert_eq!(page["items"][0]["coupon_id"], c["id"]);
    let reply = push(sender_a, "领券", 4).await;
    assert!(
        reply.contains("already claimed") && reply.contains("公众号专享"),
        "{reply}"
    );

    let b = app.login("mp-coupon-user-b").await;
    bind(b, sender_b, 5).await;
    let reply = push(sender_b, "领券", 6).await;
    assert!(
        reply.contains("out of stock") && reply.contains("公众号专享"),
        "{reply}"
    );
    // Other texts are commands as before.
    let reply = push(sender_b, "领券吗", 7).await;
    assert!(reply.contains("help"), "{reply}");
}
