//! Lucky draws, black-box: creating, joining, leaving and cancelling with their error
//! codes; drawing with more prizes than participants, none and one; two instances on
//! one database drawing once; a draw that fails before its commit; the algorithm's
//! fairness over many seeds; and the replay command as a process.

mod common;

use std::collections::{HashMap, HashSet};
use std::process::Command;

use campus_dal::{DrawId, UserId};
use campus_impl::promotions::draws::pick_winners;
use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn id_of(v: &Value) -> i64 {
    v["id"].as_i64().expect("id")
}

fn in_secs(secs: i64) -> String {
    (chrono::Utc::now() + chrono::Duration::seconds(secs)).to_rfc3339()
}

async fn create(app: &TestApp, token: &str, prizes: Value) -> Value {
    let (s, d) = app
        .post(
            "/api/v1/draws",
            token,
            json!({"title": "周五抽奖", "draw_at": in_secs(3600), "prizes": prizes}),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    d
}

async fn delete(app: &TestApp, path: &str, token: &str) -> (u16, Value) {
    let r = app
        .client
        .delete(app.url(path))
        .bearer_auth(token)
        .send()
        .await
        .expect("delete");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn join(app: &TestApp, token: &str, id: i64) -> (u16, Value) {
    app.post(&format!("/api/v1/draws/{id}/join"), token, json!({}))
        .await
}

/// Moves the draw's lock to `lock` seconds from now and its draw to `draw` (negative:
/// past), standing in for the wait.
async fn set_times(app: &TestApp, id: i64, lock: i64, draw: i64) {
    use campus_dal::schema::draws;
    use diesel::prelude::*;
    let now = campus_dal::time::now();
    let (l, d) = (
        now + chrono::Duration::seconds(lock),
        now + chrono::Duration::seconds(draw),
    );
    let n = app
        .ctx
        .db
        .write(move |c| {
            diesel::update(draws::table.find(id))
                .set((draws::lock_at.eq(l), draws::draw_at.eq(d)))
                .execute(c)
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("times moved");
    assert_eq!(n, 1, "draw {id} exists");
}

async fn drawn(app: &TestApp, token: &str, id: i64) -> Value {
    set_times(app, id, -2, -1).await;
    app.ctx.draws.run_due().await.expect("job tick");
    let (s, d) = app.get(&format!("/api/v1/draws/{id}"), token).await;
    assert_eq!((s, d["status"].as_str()), (200, Some("drawn")), "{d}");
    d
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    let (s, me) = app.get("/api/v1/me", token).await;
    assert_eq!(s, 200, "{me}");
    id_of(&me)
}

#[actix_web::test]
async fn create_validates_and_shows_the_draw() {
    let app = TestApp::spawn().await;
    let alice = app.login("draw-alice").await;
    let admin = app.login(ADMIN_OPENID).await;
    let post = |token: &str, body: Value| {
        let token = token.to_string();
        let app = &app;
        async move { app.post("/api/v1/draws", &token, body).await }
    };
    let prizes = json!([{"name": "奶茶", "count": 1, "coupon_id": null}]);
    // DRAW_LOCK_SECS (60) + 60 s is the least.
    let (s, e) = post(
        &alice,
        json!({"title": "t", "draw_at": in_secs(100), "prizes": prizes}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"), "{e}");
    let (s, e) = post(
        &alice,
        json!({"title": "t", "draw_at": in_secs(3600), "prizes": []}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"), "{e}");
    let (s, e) = post(
        &alice,
        json!({"title": "", "draw_at": in_secs(3600), "prizes": prizes}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"), "{e}");
    let bad = json!([{"name": "奶茶", "count": 0}]);
    let (s, e) = post(
        &alice,
        json!({"title": "t", "draw_at": in_secs(3600), "prizes": bad}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"), "{e}");
    let coupon = json!([{"name": "券", "count": 1, "coupon_id": 1}]);
    let (s, e) = post(
        &alice,
        json!({"title": "t", "draw_at": in_secs(3600), "prizes": coupon}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (403, "forbidden"), "{e}");
    let (s, e) = post(
        &admin,
        json!({"title": "t", "draw_at": in_secs(3600), "prizes": coupon}),
    )
    .await;
    assert_eq!(
        (s, code_of(&e)),
        (422, "validation_failed"),
        "no such coupon: {e}"
    );

    let d = create(&app, &alice, prizes.clone()).await;
    assert_eq!(d["status"], "open");
    assert_eq!(d["participants"], 0);
    assert_eq!(d["joined"], false);
    assert_eq!(d["creator_id"], user_id(&app, &alice).await);
    assert_eq!(d["winners"], json!([]));
    assert_eq!(d["seed"], Value::Null);
    assert_eq!(d["my_prize"], Value::Null);
    assert!(d.get("algorithm").is_none(), "{d}");
    assert_eq!(
        d["prizes"],
        json!([{"name": "奶茶", "count": 1, "coupon_id": null}])
    );
    let lock = chrono::DateTime::parse_from_rfc3339(d["lock_at"].as_str().expect("lock_at"))
        .expect("time");
    let at = chrono::DateTime::parse_from_rfc3339(d["draw_at"].as_str().expect("draw_at"))
        .expect("time");
    assert_eq!((at - lock).num_seconds(), 60);
    let (s, e) = app.get("/api/v1/draws/999999", &alice).await;
    assert_eq!((s, code_of(&e)), (404, "not_found"));

    // The same Idempotency-Key: the first draw again; with another body: 409.
    let body = json!({"title": "一次", "draw_at": in_secs(3600), "prizes": prizes});
    let send = |body: Value| {
        let app = &app;
        let alice = alice.clone();
        async move {
            let r = app
                .client
                .post(app.url("/api/v1/draws"))
                .bearer_auth(&alice)
                .header("Idempotency-Key", "draw-key-1")
                .json(&body)
                .send()
                .await
                .expect("post");
            let s = r.status().as_u16();
            (s, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (s1, a) = send(body.clone()).await;
    let (s2, b) = send(body).await;
    assert_eq!((s1, s2), (201, 201), "{a} {b}");
    assert_eq!(a["id"], b["id"]);
    let (s, e) = send(json!({"title": "另一次", "draw_at": in_secs(3600), "prizes": prizes})).await;
    assert_eq!((s, code_of(&e)), (409, "idempotency_conflict"), "{e}");
}

#[actix_web::test]
async fn join_leave_and_cancel_follow_the_status() {
    let app = TestApp::spawn().await;
    let alice = app.login("draw-alice").await;
    let bob = app.login("draw-bob").await;
    let admin = app.login(ADMIN_OPENID).await;
    let prizes = json!([{"name": "奶茶", "count": 1}]);

    let d = create(&app, &alice, prizes.clone()).await;
    let id = id_of(&d);
    let (s, v) = join(&app, &bob, id).await;
    assert_eq!(
        (s, &v["participants"], &v["joined"]),
        (200, &json!(1), &json!(true))
    );
    let (s, v) = join(&app, &bob, id).await;
    assert_eq!(
        (s, &v["participants"]),
        (200, &json!(1)),
        "again: nothing changes"
    );
    let (s, v) = delete(&app, &format!("/api/v1/draws/{id}/join"), &bob).await;
    assert_eq!(
        (s, &v["participants"], &v["joined"]),
        (200, &json!(0), &json!(false))
    );
    join(&app, &bob, id).await;
    let (s, v) = app.get("/api/v1/draws?mine=joined", &bob).await;
    assert_eq!((s, v["items"][0]["id"].as_i64()), (200, Some(id)), "{v}");
    let (s, v) = app.get("/api/v1/draws?mine=created", &alice).await;
    assert_eq!((s, v["items"][0]["id"].as_i64()), (200, Some(id)), "{v}");
    let (_, v) = app.get("/api/v1/draws", &bob).await;
    assert_eq!(v["items"], json!([]), "bob created none");

    let cancel = |token: String, id: i64| {
        let app = &app;
        async move {
            app.post(&format!("/api/v1/draws/{id}/cancel"), &token, json!({}))
                .await
        }
    };
    let (s, e) = cancel(bob.clone(), id).await;
    assert_eq!((s, code_of(&e)), (403, "forbidden"));
    let (s, v) = cancel(alice.clone(), id).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")), "{v}");
    let (s, e) = join(&app, &bob, id).await;
    assert_eq!((s, code_of(&e)), (409, "draw_cancelled"));
    let (s, e) = delete(&app, &format!("/api/v1/draws/{id}/join"), &bob).await;
    assert_eq!((s, code_of(&e)), (409, "draw_cancelled"));
    let (s, e) = cancel(alice.clone(), id).await;
    assert_eq!((s, code_of(&e)), (409, "draw_cancelled"));

    // An admin may cancel anyone's open draw.
    let other = id_of(&create(&app, &alice, prizes.clone()).await);
    let (s, v) = cancel(admin.clone(), other).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("cancelled")), "{v}");

    // Past lock_at: the job locks it and nothing moves any more.
    let locked = id_of(&create(&app, &alice, prizes).await);
    join(&app, &bob, locked).await;
    set_times(&app, locked, -1, 3600).await;
    app.ctx.draws.run_due().await.expect("tick");
    let (_, v) = app.get(&format!("/api/v1/draws/{locked}"), &bob).await;
    assert_eq!(v["status"], "locked", "{v}");
    assert_eq!(
        v["seed"],
        Value::Null,
        "the seed tells the winners: hidden until drawn"
    );
    let (s, e) = join(&app, &alice, locked).await;
    assert_eq!((s, code_of(&e)), (409, "draw_locked"));
    let (s, e) = delete(&app, &format!("/api/v1/draws/{locked}/join"), &bob).await;
    assert_eq!((s, code_of(&e)), (409, "draw_locked"));
    let (s, e) = cancel(admin, locked).await;
    assert_eq!((s, code_of(&e)), (409, "draw_locked"));
}

#[actix_web::test]
async fn more_prizes_than_participants_none_and_one() {
    let app = TestApp::spawn().await;
    let alice = app.login("draw-alice").await;
    let mut players = Vec::new();
    for i in 0..3 {
        let t = app.login(&format!("draw-player-{i}")).await;
        players.push((user_id(&app, &t).await, t));
    }

    // 5 prizes, 3 participants: all three win, once each, prizes in order.
    let d = create(
        &app,
        &alice,
        json!([{"name": "一等奖", "count": 2}, {"name": "二等奖", "count": 3}]),
    )
    .await;
    let id = id_of(&d);
    for (_, t) in &players {
        assert_eq!(join(&app, t, id).await.0, 200);
    }
    let d = drawn(&app, &alice, id).await;
    let winners = d["winners"].as_array().expect("winners");
    let prizes: Vec<&str> = winners.iter().filter_map(|w| w["prize"].as_str()).collect();
    assert_eq!(prizes, ["一等奖", "一等奖", "二等奖"], "{d}");
    let won: HashSet<i64> = winners
        .iter()
        .filter_map(|w| w["user_id"].as_i64())
        .collect();
    let all: HashSet<i64> = players.iter().map(|(u, _)| *u).collect();
    assert_eq!(won, all);
    assert_eq!(d["seed"].as_str().map(str::len), Some(64), "{d}");
    assert!(
        d["algorithm"]
            .as_str()
            .is_some_and(|a| a.contains("sha256")),
        "{d}"
    );
    for (u, t) in &players {
        let (_, mine) = app.get(&format!("/api/v1/draws/{id}"), t).await;
        let want = winners
            .iter()
            .find(|w| w["user_id"] == *u)
            .map(|w| w["prize"].clone());
        assert_eq!(Some(mine["my_prize"].clone()), want);
    }
    let r = app.ctx.draws.replay(DrawId(id)).await.expect("replay");
    assert!(r.matches(), "{r:?}");

    // Nobody joined: drawn with no winners.
    let none = id_of(&create(&app, &alice, json!([{"name": "奶茶", "count": 1}])).await);
    let d = drawn(&app, &alice, none).await;
    assert_eq!(d["winners"], json!([]));
    assert_eq!(d["my_prize"], Value::Null);

    // One participant, one prize: they win it.
    let one = id_of(&create(&app, &alice, json!([{"name": "奶茶", "count": 1}])).await);
    join(&app, &players[0].1, one).await;
    drawn(&app, &alice, one).await;
    let (_, d) = app
        .get(&format!("/api/v1/draws/{one}"), &players[0].1)
        .await;
    assert_eq!(d["my_prize"], "奶茶");
    assert_eq!(
        d["winners"],
        json!([{"user_id": players[0].0, "nickname": null, "prize": "奶茶"}])
    );
    // Drawing again changes nothing.
    assert!(!app.ctx.draws.draw_one(DrawId(one)).await.expect("again"));
}

#[actix_web::test]
async fn two_instances_on_one_database_draw_once_with_one_set_of_coupons() {
    let one = TestApp::spawn().await;
    let two = TestApp::spawn_with(Options {
        sim: Some(one.sim.clone()),
        database_url: Some(one.settings.database_url.clone()),
        ..Options::default()
    })
    .await;
    let admin = one.login(ADMIN_OPENID).await;
    let (s, c) = one
        .post(
            "/api/v1/admin/coupons",
            &admin,
            json!({"title": "抽奖券", "discount_fen": 100, "stock": 10, "per_user_limit": 1, "valid_days": 7}),
        )
        .await;
    assert_eq!(s, 201, "{c}");
    let coupon = id_of(&c);
    let (s, d) = one
        .post(
            "/api/v1/draws",
            &admin,
            json!({"title": "两台", "draw_at": in_secs(3600),
                   "prizes": [{"name": "满减券", "count": 2, "coupon_id": coupon}, {"name": "谢谢", "count": 1}]}),
        )
        .await;
    assert_eq!(s, 201, "{d}");
    let id = id_of(&d);
    let mut players = Vec::new();
    for i in 0..4 {
        let t = one.login(&format!("draw-two-{i}")).await;
        // One of them already claimed the coupon: a prize ignores the per-user limit.
        if i == 0 {
            let (s, u) = one
                .post(&format!("/api/v1/coupons/{coupon}/claim"), &t, json!({}))
                .await;
            assert_eq!(s, 201, "{u}");
        }
        let app = if i % 2 == 0 { &one } else { &two };
        assert_eq!(join(app, &t, id).await.0, 200);
        players.push(t);
    }
    set_times(&one, id, -2, -1).await;
    for _ in 0..3 {
        let (a, b) = tokio::join!(one.ctx.draws.run_due(), two.ctx.draws.run_due());
        a.expect("one");
        b.expect("two");
    }
    let (_, d) = two.get(&format!("/api/v1/draws/{id}"), &admin).await;
    assert_eq!(d["status"], "drawn", "{d}");
    let winners = d["winners"].as_array().expect("winners");
    assert_eq!(winners.len(), 3, "{d}");
    let (_, c) = one
        .get(&format!("/api/v1/admin/coupons/{coupon}"), &admin)
        .await;
    assert_eq!(c["claimed"], 3, "one claim and two prizes: {c}");
    let mut coupon_winners = 0;
    for t in &players {
        let (_, mine) = one.get(&format!("/api/v1/draws/{id}"), t).await;
        let (_, coupons) = one.get("/api/v1/me/coupons?limit=100", t).await;
        let n = coupons["items"]
            .as_array()
            .map_or(0, |v| v.iter().filter(|u| u["coupon_id"] == coupon).count());
        if mine["my_prize"] == "满减券" {
            coupon_winners += 1;
            assert!(n >= 1, "{coupons}");
        }
    }
    assert_eq!(coupon_winners, 2);
    assert!(
        one.ctx
            .draws
            .replay(DrawId(id))
            .await
            .expect("replay")
            .matches()
    );
}

#[actix_web::test]
async fn a_draw_that_fails_before_its_commit_is_drawn_once_with_the_same_seed() {
    let app = TestApp::spawn().await;
    let alice = app.login("draw-alice").await;
    let d = create(&app, &alice, json!([{"name": "奶茶", "count": 2}])).await;
    let id = id_of(&d);
    for i in 0..5 {
        let t = app.login(&format!("draw-crash-{i}")).await;
        join(&app, &t, id).await;
    }
    // Locked (seed fixed) but not yet due, so the background job leaves the draw to us.
    set_times(&app, id, -1, 3600).await;
    app.ctx.draws.lock_due().await.expect("lock");
    let seed_before = stored_seed(&app, id).await;
    assert!(app.ctx.draws.draw_one_failing(DrawId(id)).await.is_err());
    let (_, v) = app.get(&format!("/api/v1/draws/{id}"), &alice).await;
    assert_eq!(v["status"], "locked", "rolled back: {v}");
    assert_eq!(stored_seed(&app, id).await, seed_before);
    let (a, b) = tokio::join!(
        app.ctx.draws.draw_one(DrawId(id)),
        app.ctx.draws.draw_one(DrawId(id))
    );
    let made = [a.expect("a"), b.expect("b")];
    assert_eq!(made.iter().filter(|m| **m).count(), 1, "{made:?}");
    let (_, v) = app.get(&format!("/api/v1/draws/{id}"), &alice).await;
    assert_eq!(v["winners"].as_array().map(Vec::len), Some(2), "{v}");
    assert_eq!(v["seed"].as_str(), seed_before.as_deref());
    assert!(
        app.ctx
            .draws
            .replay(DrawId(id))
            .await
            .expect("replay")
            .matches()
    );
}

async fn stored_seed(app: &TestApp, id: i64) -> Option<String> {
    use campus_dal::schema::draws;
    use diesel::prelude::*;
    app.ctx
        .db
        .read(move |c| {
            draws::table
                .find(id)
                .select(draws::seed)
                .first::<Option<String>>(c)
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("seed")
}

/// 3 participants, 1 prize, 3,000 seeds: each wins 1/3 of the time within ±0.05
/// (about 6 standard deviations at this many draws); and with 3 prizes of 1 among
/// 3 participants nobody ever wins twice.
#[test]
fn the_draw_is_fair_and_without_replacement() {
    let users = [UserId(7), UserId(3), UserId(11)];
    let mut wins: HashMap<UserId, usize> = HashMap::new();
    const N: usize = 3000;
    for i in 0..N {
        let seed = Sha256::digest(format!("seed-{i}").as_bytes());
        let w = pick_winners(&seed, &users, &[1]);
        assert_eq!(w.len(), 1);
        *wins.entry(w[0].1).or_default() += 1;
        let all = pick_winners(&seed, &users, &[1, 1, 1]);
        let distinct: HashSet<UserId> = all.iter().map(|(_, u)| *u).collect();
        assert_eq!((all.len(), distinct.len()), (3, 3), "{all:?}");
        assert_eq!(all.iter().map(|(p, _)| *p).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(
            pick_winners(&seed, &users, &[1, 1, 1]),
            all,
            "deterministic"
        );
    }
    for u in users {
        let share = wins.get(&u).copied().unwrap_or(0) as f64 / N as f64;
        assert!((share - 1.0 / 3.0).abs() < 0.05, "{u}: {share}");
    }
    // The input order does not matter: participants are sorted first.
    let seed = Sha256::digest(b"order");
    assert_eq!(
        pick_winners(&seed, &[UserId(3), UserId(7), UserId(11)], &[2]),
        pick_winners(&seed, &users, &[2])
    );
}

#[actix_web::test]
async fn the_replay_command_prints_the_same_winners() {
    let app = TestApp::spawn().await;
    let alice = app.login("draw-alice").await;
    let id = id_of(&create(&app, &alice, json!([{"name": "奶茶", "count": 2}])).await);
    for i in 0..4 {
        let t = app.login(&format!("draw-replay-{i}")).await;
        join(&app, &t, id).await;
    }
    let d = drawn(&app, &alice, id).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let out = Command::new(env!("CARGO_BIN_EXE_campus-errand"))
        .args([
            "--conf-dir",
            &dir.path().join("no-conf").display().to_string(),
            "--log-dir",
            &dir.path().join("log").display().to_string(),
            "draw",
            "replay",
            &id.to_string(),
        ])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "warn")
        .env("DATABASE_URL", &app.settings.database_url)
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Vec<String> = stdout
        .lines()
        .filter(|l| l.starts_with("winner "))
        .map(str::to_string)
        .collect();
    let want: Vec<String> = d["winners"]
        .as_array()
        .expect("winners")
        .iter()
        .map(|w| {
            format!(
                "winner {} {}",
                w["user_id"],
                w["prize"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(printed, want, "{stdout}");
    assert!(stdout.contains(&format!("seed {}", d["seed"].as_str().unwrap_or("?"))));
    assert!(stdout.contains("matches stored winners: yes"), "{stdout}");
}

#[actix_web::test]
async fn participants_with_a_credit_hear_the_result() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_template_draw = Some("tmpl-draw".into())),
        ..Options::default()
    })
    .await;
    let alice = app.login("draw-alice").await;
    let id = id_of(&create(&app, &alice, json!([{"name": "奶茶", "count": 1}])).await);
    let with = app.login("draw-credit").await;
    let without = app.login("draw-no-credit").await;
    app.sim.accept_subscribe("draw-credit", &["tmpl-draw"]);
    let (s, b) = app
        .post(
            "/api/v1/notify/credits",
            &with,
            json!({"template_ids": ["tmpl-draw"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    join(&app, &with, id).await;
    join(&app, &without, id).await;
    let d = drawn(&app, &alice, id).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sim.subscribe_messages().is_empty() {
        assert!(std::time::Instant::now() < deadline, "no message sent");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    // Give a wrong second send the time to show up.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let sent = app.sim.subscribe_messages();
    assert_eq!(
        sent.len(),
        1,
        "only the participant with a credit: {sent:?}"
    );
    assert_eq!(sent[0]["touser"], "draw-credit");
    assert_eq!(sent[0]["template_id"], "tmpl-draw");
    let me = user_id(&app, &with).await;
    let won = d["winners"][0]["user_id"] == me;
    let want = if won { "中奖：奶茶" } else { "未中奖" };
    assert_eq!(sent[0]["data"]["thing2"]["value"], want, "{sent:?}");
    assert_eq!(sent[0]["data"]["thing1"]["value"], "周五抽奖");
}
