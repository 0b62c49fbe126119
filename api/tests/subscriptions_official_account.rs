//! Subscribe messages on order events (credits spent, every send recorded) and the
//! official account (URL check, plain and safe mode, commands, duplicate pushes).

mod common;

use common::{Options, TestApp};
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn messages(app: &TestApp, openid: &'static str) -> Vec<(String, String)> {
    app.ctx
        .db
        .read(move |c| -> Result<_, campus_impl::db::DbError> {
            let u = campus_dal::users::find_by_openid(c, openid)?.expect("user");
            Ok(campus_dal::subscriptions::messages_of(c, u.id)?)
        })
        .await
        .expect("messages")
        .into_iter()
        .map(|m| (m.event.to_string(), m.outcome.to_string()))
        .collect()
}

#[actix_web::test]
async fn order_events_spend_credits_and_are_recorded() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_template_order = Some("tmpl-order".into())),
        ..Options::default()
    })
    .await;
    let token = app.login("notified").await;
    let (s, b) = app
        .post(
            "/api/v1/notify/credits",
            &token,
            json!({"template_ids": []}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (422, "validation_failed"));
    for legacy in [
        json!({"form_id": "x", "template_ids": ["a"]}),
        json!({"form_id": "form-123"}),
    ] {
        let (s, b) = app.post("/api/v1/notify/credits", &token, legacy).await;
        assert_eq!((s, code_of(&b)), (422, "form_id_retired"), "{b}");
    }
    // The user taps "allow" in wx.requestSubscribeMessage; the app reports it.
    app.sim.accept_subscribe("notified", &["tmpl-order"]);
    let (s, b) = app
        .post(
            "/api/v1/notify/credits",
            &token,
            json!({"template_ids": ["tmpl-order"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(
        (b["granted"].as_i64(), b["available"].as_i64()),
        (Some(1), Some(1))
    );

    // Paid: the one credit is spent on a real send; cancel → refunded: no credit left.
    // A destination longer than a `thing` takes is cut, not refused by WeChat.
    let dropoff = "北京市海淀区学院路三十七号学生公寓十二号楼三层东侧";
    let (s, o) = app
        .post(
            "/api/v1/orders",
            &token,
            json!({"kind": "express", "pickup": "Station A", "dropoff": dropoff, "note": "", "fee_fen": 300, "goods_fen": 0}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_i64().expect("id");
    let params = app.pay_params(&token, id).await;
    app.sim
        .request_payment(&serde_json::from_value(params).expect("params"))
        .expect("pays");
    app.wait_status(&token, id, "paid").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.sim.subscribe_messages().is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "no subscribe message sent"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let sent = app.sim.subscribe_messages();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["template_id"], "tmpl-order");
    assert_eq!(sent[0]["touser"], "notified");
    let data = &sent[0]["data"];
    assert_eq!(data["phrase2"]["value"], "已支付", "{data}");
    assert_eq!(data["amount3"]["value"], "¥3.00", "{data}");
    assert_eq!(
        data["character_string1"]["value"], o["out_trade_no"],
        "{data}"
    );
    let thing: String = dropoff.chars().take(20).collect();
    assert_eq!(data["thing4"]["value"], thing.as_str(), "{data}");
    assert_eq!(app.sim.subscribe_credits("notified", "tmpl-order"), 0);
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/cancel"), &token, json!({}))
        .await;
    assert_eq!(s, 200);
    app.wait_status(&token, id, "refunded").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = messages(&app, "notified").await;
        if log.len() == 2 {
            assert_eq!(log[0], ("paid".into(), "sent".into()));
            assert_eq!(log[1], ("refunded".into(), "no_credit".into()));
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "sends not recorded: {log:?}"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(app.sim.subscribe_messages().len(), 1, "no credit, no send");
}

#[actix_web::test]
async fn refused_subscriptions_are_expected_not_alarms() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_template_order = Some("tmpl-order".into())),
        ..Options::default()
    })
    .await;
    let token = app.login("refuser").await;
    app.sim.refuse_subscribe_for("refuser");
    let (s, b) = app
        .post(
            "/api/v1/notify/credits",
            &token,
            json!({"template_ids": ["tmpl-order"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    app.paid_order(&token, 100).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let log = messages(&app, "refuser").await;
        if !log.is_empty() {
            assert_eq!(log[0], ("paid".into(), "refused".into()));
            break;
        }
        assert!(std::time::Instant::now() < deadline);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
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
async fn official_account_url_check_commands_and_duplicates() {
    let app = TestApp::spawn().await;
    let token = app.sim.config().mp_token.clone();
    let mut parts = [token.as_str(), "1409735669", "1320562132"];
    parts.sort();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    let url = app.url(&format!(
        "/wechat/mp?signature={sig}&timestamp=1409735669&nonce=1320562132&echostr=hello123"
    ));
    let r = app.client.get(&url).send().await.expect("get");
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.expect("text"), "hello123");
    let r = app
        .client
        .get(app.url("/wechat/mp?signature=bad&timestamp=1&nonce=2&echostr=x"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 403);

    let endpoint = app.url("/wechat/mp");
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &text_msg("mp-user", "help", 1), false)
        .await
        .expect("push");
    assert_eq!(s, 200);
    assert!(reply.contains("bind <code>"), "{reply}");

    // Not bound yet → told how to bind; then bind with a code from the mini-program.
    let (_, reply) = app
        .sim
        .push_mp_message(&endpoint, &text_msg("mp-user", "orders", 2), false)
        .await
        .expect("push");
    assert!(reply.contains("bind"), "{reply}");
    let user = app.login("bound-student").await;
    let o = app.create_order(&user, 880).await;
    let (_, code) = app.post("/api/v1/me/bind-code", &user, json!({})).await;
    let code = code["code"].as_str().expect("code");
    let bind = text_msg("mp-user", &format!("bind {code}"), 3);
    let (_, first) = app
        .sim
        .push_mp_message(&endpoint, &bind, false)
        .await
        .expect("push");
    assert!(first.contains("Linked"), "{first}");
    // WeChat retries the same MsgId: same reply, and the one-time code is not re-spent.
    let (_, again) = app
        .sim
        .push_mp_message(&endpoint, &bind, false)
        .await
        .expect("push");
    assert!(again.contains("Linked"), "{again}");
    let (_, me) = app.get("/api/v1/me", &user).await;
    assert_eq!(me["mp_bound"], true);

    // Safe (AES) mode: the simulator encrypts the push and decrypts our reply.
    let otn = o["out_trade_no"].as_str().expect("otn");
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &text_msg("mp-user", "orders", 4), true)
        .await
        .expect("push");
    assert_eq!(s, 200);
    assert!(reply.contains(otn), "{reply}");
    let (_, reply) = app
        .sim
        .push_mp_message(
            &endpoint,
            &text_msg("mp-user", &format!("status {otn}"), 5),
            true,
        )
        .await
        .expect("push");
    assert!(reply.contains("created"), "{reply}");

    // A forged push changes nothing.
    let r = app
        .client
        .post(app.url("/wechat/mp?signature=forged&timestamp=1&nonce=2"))
        .body(text_msg("mp-user", "bind 000000", 6))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
}
