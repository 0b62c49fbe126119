//! What the WeChat platform expects of a listed mini-program: the phone number from the
//! phone-number button, the daily cap on order messages, the official account's menu and its
//! taps. Against the simulator, which implements `getuserphonenumber` and `menu/create` with
//! their error codes.

mod common;

use std::time::{Duration, Instant};

use common::{Options, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn phone_number_by_code_is_stored_encrypted_and_shown_masked() {
    let app = TestApp::spawn().await;
    let token = app.login("phone-owner").await;

    let code = app.sim.issue_phone_code("13800138000");
    let (s, b) = app
        .post("/api/v1/me/phone", &token, json!({ "code": code }))
        .await;
    assert_eq!((s, b["phone"].as_str()), (200, Some("138****8000")), "{b}");
    let (s, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(
        (s, me["phone"].as_str()),
        (200, Some("13800138000")),
        "{me}"
    );
    assert_eq!(app.sim.calls("getuserphonenumber"), 1);

    // Stored encrypted, like the typed phone.
    let row = app
        .ctx
        .db
        .read(|c| -> Result<_, campus_impl::db::DbError> {
            Ok(campus_dal::users::find_by_openid(c, "phone-owner")?)
        })
        .await
        .expect("read")
        .expect("user");
    let stored = row.phone_enc.expect("phone stored");
    assert!(!stored.contains("13800138000"), "{stored}");

    // A code is good once; an unknown one is refused; neither changes the number.
    let (s, b) = app
        .post("/api/v1/me/phone", &token, json!({ "code": code }))
        .await;
    assert_eq!((s, code_of(&b)), (422, "invalid_phone_code"), "{b}");
    let (s, b) = app
        .post("/api/v1/me/phone", &token, json!({"code": "forged-code"}))
        .await;
    assert_eq!((s, code_of(&b)), (422, "invalid_phone_code"), "{b}");
    for bad in [
        json!({"code": ""}),
        json!({"code": "a b"}),
        json!({"code": "x".repeat(300)}),
    ] {
        let (s, b) = app.post("/api/v1/me/phone", &token, bad).await;
        assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{b}");
    }
    let (s, b) = app
        .post(
            "/api/v1/me/phone",
            &token,
            json!({"code": "x", "phone": "1"}),
        )
        .await;
    assert_eq!(
        (s, code_of(&b)),
        (422, "validation_failed"),
        "unknown fields: {b}"
    );
    let r = app
        .client
        .post(app.url("/api/v1/me/phone"))
        .bearer_auth(&token)
        .header("Content-Type", "application/json")
        .body("{\"code\":")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let (s, b) = app
        .post(
            "/api/v1/me/phone",
            "not-a-token",
            json!({"code": app.sim.issue_phone_code("13900139000")}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (401, "unauthorized"), "{b}");
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(me["phone"], "13800138000", "nothing changed: {me}");

    // A number from another region keeps its country code.
    let hk = app.sim.issue_phone_code_in("91234567", "852");
    let (s, b) = app
        .post("/api/v1/me/phone", &token, json!({ "code": hk }))
        .await;
    assert_eq!((s, b["phone"].as_str()), (200, Some("+85*****4567")), "{b}");
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(me["phone"], "+85291234567");
}

async fn outcomes(app: &TestApp, openid: &'static str) -> Vec<String> {
    app.ctx
        .db
        .read(move |c| -> Result<_, campus_impl::db::DbError> {
            let u = campus_dal::users::find_by_openid(c, openid)?.expect("user");
            Ok(campus_dal::subscriptions::messages_of(c, u.id)?)
        })
        .await
        .expect("messages")
        .into_iter()
        .map(|m| m.outcome.to_string())
        .collect()
}

async fn wait_outcomes(app: &TestApp, openid: &'static str, n: usize) -> Vec<String> {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let log = outcomes(app, openid).await;
        if log.len() >= n {
            return log;
        }
        assert!(Instant::now() < deadline, "{n} sends not recorded: {log:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn order_messages_are_capped_per_user_and_day() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| {
            s.wechat_template_order = Some("tmpl-order".into());
            s.messages_per_user_day = 3;
        }),
        ..Options::default()
    })
    .await;
    let token = app.login("capped-user").await;
    let grant = |n: usize| {
        let ids = vec!["tmpl-order"; n];
        json!({ "template_ids": ids })
    };
    // Two acceptances: the third paid order finds no credit, which WeChat never accepted,
    // so it does not count against the cap.
    app.sim
        .accept_subscribe("capped-user", &["tmpl-order", "tmpl-order"]);
    let (s, b) = app.post("/api/v1/notify/credits", &token, grant(2)).await;
    assert_eq!(s, 200, "{b}");
    for n in 1..=3 {
        app.paid_order(&token, 100).await;
        wait_outcomes(&app, "capped-user", n).await;
    }
    assert_eq!(
        outcomes(&app, "capped-user").await,
        ["sent", "sent", "no_credit"]
    );
    // Two more acceptances: one more is sent (the third of the day), then the cap holds
    // although a credit is left.
    app.sim
        .accept_subscribe("capped-user", &["tmpl-order", "tmpl-order"]);
    let (s, b) = app.post("/api/v1/notify/credits", &token, grant(2)).await;
    assert_eq!(s, 200, "{b}");
    for n in 4..=5 {
        app.paid_order(&token, 100).await;
        wait_outcomes(&app, "capped-user", n).await;
    }
    assert_eq!(
        outcomes(&app, "capped-user").await,
        ["sent", "sent", "no_credit", "sent", "capped"]
    );
    assert_eq!(app.sim.subscribe_messages().len(), 3, "WeChat got three");
    assert_eq!(
        app.sim.subscribe_credits("capped-user", "tmpl-order"),
        1,
        "a capped message spends no acceptance"
    );
    // The admins' log shows it.
    let admin = app.login(common::ADMIN_OPENID).await;
    let (s, b) = app.get("/api/v1/admin/messages", &admin).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        b["items"]
            .as_array()
            .expect("items")
            .iter()
            .any(|m| m["outcome"] == "capped"),
        "{b}"
    );
}

#[actix_web::test]
async fn the_menu_is_created_and_its_taps_answer_as_commands() {
    let app = TestApp::spawn().await;
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/mp_menu.json");
    let menu = campus_impl::mp_menu::load(&path).expect("menu file");
    campus_impl::mp_menu::create(&app.settings, &menu)
        .await
        .expect("menu created");
    let created = app.sim.mp_menu().expect("the simulator has the menu");
    assert_eq!(created, menu.json);

    // A menu WeChat refuses (four top-level buttons) is an error, and the menu stays.
    let four: Vec<Value> = (0..4)
        .map(|i| json!({"type": "click", "name": format!("b{i}"), "key": "help"}))
        .collect();
    let bad = campus_impl::mp_menu::Menu {
        json: json!({ "button": four }),
        click_keys: vec!["help".into()],
    };
    let e = campus_impl::mp_menu::create(&app.settings, &bad)
        .await
        .expect_err("refused");
    assert!(e.to_string().contains("40016"), "{e}");
    assert_eq!(app.sim.mp_menu(), Some(menu.json.clone()));

    // Taps: `help` answers the help text, `orders` asks an unbound follower to bind.
    let endpoint = app.url("/wechat/mp");
    let click = |key: &str, at: i64| {
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[menu-user]]></FromUserName>\
             <CreateTime>{at}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event>\
             <EventKey><![CDATA[{key}]]></EventKey></xml>"
        )
    };
    let base = 1_700_000_000 + i64::from(rand::random::<u16>()) * 10;
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &click("help", base), false)
        .await
        .expect("push");
    assert_eq!(s, 200);
    assert!(reply.contains("bind <code>"), "{reply}");
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &click("orders", base + 1), false)
        .await
        .expect("push");
    assert_eq!(s, 200);
    assert!(reply.contains("Not linked"), "{reply}");
}

/// A plain-mode push as WeChat signs it, sent by hand (to set `X-Forwarded-For`).
async fn signed_push(app: &TestApp, forwarded_for: &str, n: u32) -> (u16, String) {
    use sha1::{Digest, Sha1};
    let token = app.sim.config().mp_token.clone();
    let ts = chrono::Utc::now().timestamp().to_string();
    let nonce = format!("{}{n}", rand::random::<u32>());
    let mut parts = [token.as_str(), ts.as_str(), nonce.as_str()];
    parts.sort();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    let msg_id = u64::from(rand::random::<u32>()) * 1000 + u64::from(n);
    let body = format!(
        "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[ip-user]]></FromUserName>\
         <CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[help]]></Content><MsgId>{msg_id}</MsgId></xml>"
    );
    let r = app
        .client
        .post(app.url(&format!(
            "/wechat/mp?signature={sig}&timestamp={ts}&nonce={nonce}"
        )))
        .header("X-Forwarded-For", forwarded_for)
        .body(body)
        .send()
        .await
        .expect("post");
    let s = r.status().as_u16();
    (s, r.text().await.expect("body"))
}

#[actix_web::test]
async fn pushes_from_outside_wechats_addresses_are_refused() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| {
            s.wechat_callback_ip_check = "on".into();
            s.trusted_proxies = "127.0.0.1/32,::1/128".into();
        }),
        ..Options::default()
    })
    .await;
    let endpoint = app.url("/wechat/mp");
    let help = |n: u64| {
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[ip-user]]></FromUserName>\
             <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
             <Content><![CDATA[help]]></Content><MsgId>{}</MsgId></xml>",
            u64::from(rand::random::<u32>()) * 1000 + n
        )
    };
    // The simulator pushes from loopback, which its list holds.
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &help(1), false)
        .await
        .expect("push");
    assert_eq!(s, 200, "{reply}");
    assert!(reply.contains("bind <code>"), "{reply}");
    assert_eq!(app.sim.calls("getcallbackip"), 1, "fetched once");

    // Behind a trusted proxy, the forwarded address is the one checked.
    let (s, reply) = signed_push(&app, "101.226.103.9", 2).await;
    assert_eq!(s, 200, "{reply}");
    let (s, reply) = signed_push(&app, "8.8.8.8", 3).await;
    assert_eq!(s, 403, "{reply}");
    assert!(reply.contains("forbidden_address"), "{reply}");
    let r = app
        .client
        .get(app.url("/wechat/mp?signature=x&timestamp=1&nonce=2&echostr=e"))
        .header("X-Forwarded-For", "8.8.8.8")
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403, "the URL check too");

    // WeChat's list changes; after the refresh, loopback is no longer on it.
    app.sim.set_callback_ips(&["101.226.103.0/25"]);
    app.ctx.callback_ips.refresh().await.expect("refreshed");
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &help(4), false)
        .await
        .expect("push");
    assert_eq!(s, 403, "{reply}");
}
