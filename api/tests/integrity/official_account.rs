//! The official account: a signed URL is not a credential. Stale timestamps and reused
//! nonces are refused, safe mode takes only encrypted pushes, `bind` cannot be brute-forced,
//! a user has one live bind code, and events the server does not handle (nested XML
//! included) are answered with the bare `success`. Runs on SQLite, or MariaDB + Redis with
//! CAMPUS_TEST_MODE=mariadb.

use crate::common::{Options, TestApp};
use serde_json::json;
use sha1::{Digest, Sha1};

fn text_msg(from: &str, content: &str) -> String {
    let msg_id = rand::random::<u32>() as u64 * 1000 + rand::random::<u16>() as u64;
    format!(
        "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// A plain-mode push signed like WeChat signs it, with a chosen timestamp and nonce.
async fn push_plain(app: &TestApp, timestamp: i64, nonce: &str, body: &str) -> (u16, String) {
    let token = app.sim.config().mp_token.clone();
    let ts = timestamp.to_string();
    let mut parts = [token.as_str(), ts.as_str(), nonce];
    parts.sort();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    let r = app
        .client
        .post(app.url(&format!(
            "/wechat/mp?signature={sig}&timestamp={ts}&nonce={nonce}&openid=x"
        )))
        .header("Content-Type", "text/xml")
        .body(body.to_string())
        .send()
        .await
        .expect("push");
    let status = r.status().as_u16();
    (status, r.text().await.expect("text"))
}

#[actix_web::test]
async fn stale_timestamps_and_reused_nonces_are_refused() {
    let app = TestApp::spawn().await;
    let help = text_msg("mp-replay", "help");
    // Fresh: answered, with CreateTime a plain integer.
    let (s, reply) = push_plain(&app, now(), "1111", &help).await;
    assert_eq!(s, 200, "{reply}");
    assert!(reply.contains("bind <code>"), "{reply}");
    let ct = reply
        .split("<CreateTime>")
        .nth(1)
        .and_then(|r| r.split("</CreateTime>").next())
        .expect("CreateTime");
    assert!(
        ct.parse::<i64>().is_ok(),
        "CreateTime is a plain integer: {reply}"
    );
    // The same push again (WeChat retrying): the same reply.
    let (s, again) = push_plain(&app, now(), "1111", &help).await;
    assert_eq!(s, 200);
    assert!(again.contains("bind <code>"), "{again}");
    // The same signed timestamp and nonce for another message: refused.
    let (s, body) = push_plain(&app, now(), "1111", &text_msg("victim", "bind 123456")).await;
    assert_eq!(s, 403, "{body}");
    // More than 300 s off, either way: refused; garbage timestamps too.
    let (s, _) = push_plain(&app, now() - 400, "2222", &text_msg("mp-replay", "help")).await;
    assert_eq!(s, 403);
    let (s, _) = push_plain(&app, now() + 400, "3333", &text_msg("mp-replay", "help")).await;
    assert_eq!(s, 403);
    // Within the window: fine.
    let (s, _) = push_plain(&app, now() - 200, "4444", &text_msg("mp-replay", "help")).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn safe_mode_takes_only_encrypted_pushes() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_mp_mode = Some("safe".into())),
        ..Options::default()
    })
    .await;
    let endpoint = app.url("/wechat/mp");
    let (s, _) = app
        .sim
        .push_mp_message(&endpoint, &text_msg("mp-safe", "help"), false)
        .await
        .expect("push");
    assert_eq!(s, 403, "plain push refused in safe mode");
    let (s, reply) = app
        .sim
        .push_mp_message(&endpoint, &text_msg("mp-safe", "help"), true)
        .await
        .expect("push");
    assert_eq!(s, 200);
    assert!(reply.contains("bind <code>"), "{reply}");
}

#[actix_web::test]
async fn bind_is_limited_per_sender_and_a_user_has_one_live_code() {
    let app = TestApp::spawn().await;
    // Senders unique to this run: the attempt counters live in the cache, which test runs
    // on MariaDB + Redis share.
    let run = campus_impl::crypto::random_alnum(8);
    let (owner, attacker, parallel) = (
        format!("mp-owner-{run}"),
        format!("mp-attacker-{run}"),
        format!("mp-parallel-{run}"),
    );
    let endpoint = app.url("/wechat/mp");
    let user = app.login("bind-owner").await;

    // A second code replaces the first.
    let (_, first) = app.post("/api/v1/me/bind-code", &user, json!({})).await;
    let (_, second) = app.post("/api/v1/me/bind-code", &user, json!({})).await;
    let first = first["code"].as_str().expect("code").to_string();
    let second = second["code"].as_str().expect("code").to_string();
    let (_, me) = app.get("/api/v1/me", &user).await;
    let uid = campus_impl::UserId(me["id"].as_i64().expect("id"));
    let live = app
        .ctx
        .db
        .read(move |c| {
            campus_dal::users::live_bind_codes(c, uid, campus_dal::time::now())
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("codes");
    assert_eq!(live, vec![second.clone()], "one live code per user");
    if first != second {
        let (_, r) = app
            .sim
            .push_mp_message(
                &endpoint,
                &text_msg(&owner, &format!("bind {first}")),
                false,
            )
            .await
            .expect("push");
        assert!(r.contains("invalid"), "the replaced code is dead: {r}");
    }

    // An attacker walking the codes: five tries, then refused even with the right code.
    for n in 0..5 {
        let (s, r) = app
            .sim
            .push_mp_message(
                &endpoint,
                &text_msg(&attacker, &format!("bind {:06}", 900_000 + n)),
                false,
            )
            .await
            .expect("push");
        assert_eq!(s, 200);
        assert!(!r.contains("Linked"), "{r}");
    }
    let (_, r) = app
        .sim
        .push_mp_message(
            &endpoint,
            &text_msg(&attacker, &format!("bind {second}")),
            false,
        )
        .await
        .expect("push");
    assert!(r.contains("Too many"), "{r}");
    let (_, me) = app.get("/api/v1/me", &user).await;
    assert_eq!(me["mp_bound"], false, "the attacker did not bind");

    // Parallel guesses get no extra tries.
    let pushes = (0..8).map(|n| {
        let endpoint = endpoint.clone();
        let sim = app.sim.clone();
        let msg = text_msg(&parallel, &format!("bind {:06}", 800_000 + n));
        async move {
            sim.push_mp_message(&endpoint, &msg, false)
                .await
                .expect("push")
                .1
        }
    });
    let replies = futures::future::join_all(pushes).await;
    let limited = replies.iter().filter(|r| r.contains("Too many")).count();
    assert_eq!(limited, 3, "8 parallel tries, 5 allowed: {replies:?}");

    // The owner binds from their own account.
    let (_, r) = app
        .sim
        .push_mp_message(
            &endpoint,
            &text_msg(&owner, &format!("bind {second}")),
            false,
        )
        .await
        .expect("push");
    assert!(r.contains("Linked"), "{r}");
}

#[actix_web::test]
async fn unhandled_events_with_nested_xml_are_answered_success() {
    let app = TestApp::spawn().await;
    let endpoint = app.url("/wechat/mp");
    let ct = now();
    let events = [
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[mp-events]]></FromUserName>\
             <CreateTime>{ct}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[scancode_waitmsg]]></Event>\
             <EventKey><![CDATA[6]]></EventKey><ScanCodeInfo><ScanType><![CDATA[qrcode]]></ScanType>\
             <ScanResult><![CDATA[1]]></ScanResult></ScanCodeInfo></xml>"
        ),
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[mp-events]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[pic_sysphoto]]></Event>\
             <EventKey><![CDATA[6]]></EventKey><SendPicsInfo><Count>1</Count><PicList><item>\
             <PicMd5Sum><![CDATA[1b5f7c23b5bf75682a53e7b6d163e185]]></PicMd5Sum></item></PicList></SendPicsInfo></xml>",
            ct + 1
        ),
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[mp-events]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[subscribe_msg_popup_event]]></Event>\
             <SubscribeMsgPopupEvent><List><TemplateId><![CDATA[t1]]></TemplateId>\
             <SubscribeStatusString><![CDATA[accept]]></SubscribeStatusString><PopupScene>2</PopupScene></List>\
             <List><TemplateId><![CDATA[t2]]></TemplateId><SubscribeStatusString><![CDATA[reject]]></SubscribeStatusString>\
             <PopupScene>2</PopupScene></List></SubscribeMsgPopupEvent></xml>",
            ct + 2
        ),
        format!(
            "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[mp-events]]></FromUserName>\
             <CreateTime>{}</CreateTime><MsgType><![CDATA[event]]></MsgType><Event><![CDATA[VIEW]]></Event>\
             <EventKey><![CDATA[https://example.com/menu]]></EventKey><MenuId>1</MenuId></xml>",
            ct + 3
        ),
    ];
    for (i, e) in events.iter().enumerate() {
        for safe in [false, true] {
            let (s, reply) = app
                .sim
                .push_mp_message(&endpoint, e, safe)
                .await
                .expect("push");
            assert_eq!(s, 200, "event {i} (safe {safe}): {reply}");
            assert_eq!(reply.trim(), "success", "event {i} (safe {safe})");
        }
    }
}
