//! The simulator's mini-program API: login codes, tokens, QR codes, messages.

mod sim_support;

use serde_json::{Value, json};
use sim_support::{client, start_sim};

async fn get_json(c: &reqwest::Client, url: &str) -> Value {
    let r = c.get(url).send().await.expect("request");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("json")
}

async fn post_json(c: &reqwest::Client, url: &str, body: &Value) -> reqwest::Response {
    c.post(url).json(body).send().await.expect("request")
}

#[actix_web::test]
async fn code_is_single_use_and_app_is_checked() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    let code = sim.issue_code("oAlice");
    let url = |appid: &str, secret: &str, code: &str| {
        format!(
            "{}/sns/jscode2session?appid={appid}&secret={secret}&js_code={code}&grant_type=authorization_code",
            sim.base_url()
        )
    };
    let v = get_json(&c, &url("wxwrong", &cfg.secret, &code)).await;
    assert_eq!(v["errcode"], 40013);
    let v = get_json(&c, &url(&cfg.appid, "wrongsecret", &code)).await;
    assert_eq!(v["errcode"], 40125);
    let v = get_json(&c, &url(&cfg.appid, &cfg.secret, &code)).await;
    assert_eq!(v["openid"], "oAlice", "{v}");
    assert!(v["session_key"].as_str().is_some_and(|s| s.len() == 24));
    assert!(v.get("errcode").is_none());
    let v = get_json(&c, &url(&cfg.appid, &cfg.secret, &code)).await;
    assert_eq!(v["errcode"], 40163, "{v}");
    let v = get_json(&c, &url(&cfg.appid, &cfg.secret, "nosuchcode")).await;
    assert_eq!(v["errcode"], 40029);
    assert!(v["errmsg"].as_str().is_some_and(|m| m.contains("rid:")));

    // The control endpoint issues codes too.
    let r = post_json(
        &c,
        &format!("{}/sim/code", sim.base_url()),
        &json!({"openid": "oBob"}),
    )
    .await;
    let code2 = r.json::<Value>().await.expect("json")["code"]
        .as_str()
        .expect("code")
        .to_string();
    let v = get_json(&c, &url(&cfg.appid, &cfg.secret, &code2)).await;
    assert_eq!(v["openid"], "oBob");
    assert_eq!(sim.calls("jscode2session"), 6);
    sim.stop();
}

#[actix_web::test]
async fn token_versus_stable_token() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    let base = sim.base_url();
    let token_url = format!(
        "{base}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
        cfg.appid, cfg.secret
    );
    let send = |t: &str| format!("{base}/cgi-bin/message/custom/send?access_token={t}");
    let msg = json!({"touser": "oMp1", "msgtype": "text", "text": {"content": "hi"}});

    let t1 = get_json(&c, &token_url).await;
    assert_eq!(t1["expires_in"], 7200);
    let t1 = t1["access_token"].as_str().expect("token").to_string();
    let t2 = get_json(&c, &token_url).await["access_token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_ne!(t1, t2);
    // The legacy call invalidated the previous token.
    let v: Value = post_json(&c, &send(&t1), &msg)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 40001, "{v}");
    let v: Value = post_json(&c, &send(&t2), &msg)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 0, "{v}");
    let v: Value = post_json(&c, &format!("{base}/cgi-bin/message/custom/send"), &msg)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 41001);
    assert_eq!(sim.custom_messages().len(), 1);

    // stable_token: same token while valid, new on force_refresh, 45009 when too frequent.
    let stable = |force: bool| json!({"grant_type": "client_credential", "appid": cfg.appid, "secret": cfg.secret, "force_refresh": force});
    let st_url = format!("{base}/cgi-bin/stable_token");
    let s1: Value = post_json(&c, &st_url, &stable(false))
        .await
        .json()
        .await
        .expect("json");
    let s2: Value = post_json(&c, &st_url, &stable(false))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s1["access_token"], s2["access_token"]);
    assert!(
        s2["expires_in"]
            .as_u64()
            .is_some_and(|e| e <= 7200 && e > 7000)
    );
    let s3: Value = post_json(&c, &st_url, &stable(true))
        .await
        .json()
        .await
        .expect("json");
    assert_ne!(s3["access_token"], s1["access_token"]);
    let s4: Value = post_json(&c, &st_url, &stable(true))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(s4["errcode"], 45009, "{s4}");
    let bad: Value = post_json(
        &c,
        &st_url,
        &json!({"grant_type": "client_credential", "appid": cfg.appid, "secret": "nope"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(bad["errcode"], 40125);
    let s3t = s3["access_token"].as_str().expect("token");
    // The stable token is unaffected by legacy refreshes, but not by invalidation.
    get_json(&c, &token_url).await;
    let v: Value = post_json(&c, &send(s3t), &msg)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 0);
    sim.invalidate_access_tokens();
    let v: Value = post_json(&c, &send(s3t), &msg)
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 40001);
    let s5: Value = post_json(&c, &st_url, &stable(false))
        .await
        .json()
        .await
        .expect("json");
    assert_ne!(s5["access_token"], s3["access_token"]);
    assert_eq!(sim.calls("stable_token"), 6);
    assert_eq!(sim.calls("token"), 3);
    sim.stop();
}

#[actix_web::test]
async fn expired_token_is_42001() {
    let mut cfg = test_demo::sim::SimConfig::for_tests();
    cfg.token_ttl = std::time::Duration::from_millis(200);
    let sim = test_demo::sim::start(cfg).await.expect("starts");
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    let t: Value = get_json(
        &c,
        &format!(
            "{}/cgi-bin/token?grant_type=client_credential&appid={}&secret={}",
            sim.base_url(),
            cfg.appid,
            cfg.secret
        ),
    )
    .await;
    let t = t["access_token"].as_str().expect("token").to_string();
    actix_web::rt::time::sleep(std::time::Duration::from_millis(300)).await;
    let v: Value = post_json(
        &c,
        &format!("{}/wxa/getwxacodeunlimit?access_token={t}", sim.base_url()),
        &json!({"scene": "a=1"}),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["errcode"], 42001);
    sim.stop();
}

async fn token(sim: &test_demo::sim::SimHandle, c: &reqwest::Client) -> String {
    let cfg = sim.config();
    let v: Value = post_json(
        c,
        &format!("{}/cgi-bin/stable_token", sim.base_url()),
        &json!({"grant_type": "client_credential", "appid": cfg.appid, "secret": cfg.secret}),
    )
    .await
    .json()
    .await
    .expect("json");
    v["access_token"].as_str().expect("token").to_string()
}

#[actix_web::test]
async fn wxacode_png_or_error_json() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let t = token(&sim, &c).await;
    let url = format!("{}/wxa/getwxacodeunlimit?access_token={t}", sim.base_url());

    let r = post_json(
        &c,
        &url,
        &json!({"scene": "order=42&x=y", "page": "pages/order/detail", "width": 430, "check_path": true, "env_version": "release"}),
    )
    .await;
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    let png_bytes = r.bytes().await.expect("body");
    let dec = png::Decoder::new(std::io::Cursor::new(png_bytes.to_vec()));
    let info = dec.read_info().expect("a real PNG");
    assert_eq!(info.info().width, 430);

    for (body, code) in [
        (json!({"scene": "x".repeat(33)}), 40169),
        (json!({"scene": "100%"}), 40169),
        (json!({"scene": ""}), 40169),
        (json!({"scene": "a", "page": "/pages/index"}), 41030),
        (json!({"scene": "a", "page": "pages/index?x=1"}), 41030),
        (json!({"scene": "a", "page": "pages/unpublished"}), 41030),
        (json!({"scene": "a", "width": 100}), 40097),
        (json!({"scene": "a", "width": 2000}), 40097),
    ] {
        let r = post_json(&c, &url, &body).await;
        assert_eq!(r.status().as_u16(), 200);
        let ct = r
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        assert!(ct.starts_with("application/json"), "{ct}");
        let v: Value = r.json().await.expect("json");
        assert_eq!(v["errcode"], code, "{body} -> {v}");
    }
    // An unpublished page is fine without check_path.
    let r = post_json(
        &c,
        &url,
        &json!({"scene": "a", "page": "pages/unpublished", "check_path": false, "width": 280}),
    )
    .await;
    assert_eq!(
        r.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("image/png")
    );
    assert_eq!(sim.calls("getwxacodeunlimit"), 10);
    sim.stop();
}

#[actix_web::test]
async fn subscribe_messages() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let t = token(&sim, &c).await;
    let url = format!(
        "{}/cgi-bin/message/subscribe/send?access_token={t}",
        sim.base_url()
    );
    let msg = |to: &str, tpl: &str| json!({"touser": to, "template_id": tpl, "page": "pages/index", "data": {"thing1": {"value": "已接单"}}});
    // The user allowed TPL1 once (acceptances and value rules: sim_strict.rs).
    sim.accept_subscribe("oA", &["TPL1"]);
    let v: Value = post_json(&c, &url, &msg("oA", "TPL1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 0);
    assert_eq!(v["errmsg"], "ok");
    assert!(v["msgid"].as_u64().is_some());
    let v: Value = post_json(&c, &url, &msg("oA", ""))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 40037);
    sim.refuse_subscribe_for("oB");
    let v: Value = post_json(&c, &url, &msg("oB", "TPL1"))
        .await
        .json()
        .await
        .expect("json");
    assert_eq!(v["errcode"], 43101);
    let got = sim.subscribe_messages();
    assert_eq!(got.len(), 1);
    assert_eq!(got[0]["data"]["thing1"]["value"], "已接单");
    let v: Value = post_json(
        &c,
        &format!(
            "{}/cgi-bin/message/subscribe/send?access_token=bogus",
            sim.base_url()
        ),
        &msg("oA", "TPL1"),
    )
    .await
    .json()
    .await
    .expect("json");
    assert_eq!(v["errcode"], 40001);
    assert_eq!(sim.calls("subscribe_send"), 4);
    sim.stop();
}

/// `start` does not need an actix System: it runs its own.
#[tokio::test]
async fn starts_under_plain_tokio() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    let code = sim.issue_code("oTokio");
    let v = get_json(
        &c,
        &format!(
            "{}/sns/jscode2session?appid={}&secret={}&js_code={code}&grant_type=authorization_code",
            sim.base_url(),
            cfg.appid,
            cfg.secret
        ),
    )
    .await;
    assert_eq!(v["openid"], "oTokio");
    sim.stop();
    sim.stop();
    // Stopped: the port no longer answers.
    let mut refused = false;
    for _ in 0..50 {
        if c.get(format!("{}/sim/calls", sim.base_url()))
            .send()
            .await
            .is_err()
        {
            refused = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert!(refused);
}
