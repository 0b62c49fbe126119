//! The official account's template messages (cgi-bin/message/template/send): its own access
//! token, 40003 / 43004 / 40037, and the mini-program link.

mod sim_support;

use serde_json::{Value, json};
use sim_support::{client, start_sim};
use test_demo::sim::SimHandle;

async fn stable_token(sim: &SimHandle, c: &reqwest::Client, appid: &str, secret: &str) -> Value {
    c.post(format!("{}/cgi-bin/stable_token", sim.base_url()))
        .json(&json!({"grant_type": "client_credential", "appid": appid, "secret": secret}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json")
}

async fn send(sim: &SimHandle, c: &reqwest::Client, token: &str, body: Value) -> Value {
    c.post(format!(
        "{}/cgi-bin/message/template/send?access_token={token}",
        sim.base_url()
    ))
    .json(&body)
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json")
}

#[actix_web::test]
async fn template_send_follows_the_official_accounts_rules() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    // Each app has its own credentials and tokens.
    let v = stable_token(&sim, &c, &cfg.mp_appid, &cfg.secret).await;
    assert_eq!(
        v["errcode"], 40125,
        "the mini-program's secret is not the account's: {v}"
    );
    let mp = stable_token(&sim, &c, &cfg.mp_appid, &cfg.mp_secret).await;
    let mp = mp["access_token"].as_str().expect("mp token").to_string();
    let mini = stable_token(&sim, &c, &cfg.appid, &cfg.secret).await;
    let mini = mini["access_token"]
        .as_str()
        .expect("mini token")
        .to_string();
    assert_ne!(mp, mini);

    sim.mp_follow("oMP_follower");
    sim.mp_follow("oMP_gone");
    sim.mp_unfollow("oMP_gone");
    sim.mp_add_template("TPL_ORDER");
    let msg = |to: &str, tpl: &str| {
        json!({
            "touser": to, "template_id": tpl, "url": "https://example.com/o/1",
            "miniprogram": {"appid": cfg.appid, "pagepath": "pages/order/detail?id=1"},
            "data": {"thing1": {"value": "快递代取"}, "amount2": {"value": "¥3.00"}}
        })
    };

    // The mini-program's token on the official account's API: 48001; a bogus one: 40001.
    let v = send(&sim, &c, &mini, msg("oMP_follower", "TPL_ORDER")).await;
    assert_eq!(v["errcode"], 48001, "{v}");
    let v = send(&sim, &c, "bogus", msg("oMP_follower", "TPL_ORDER")).await;
    assert_eq!(v["errcode"], 40001, "{v}");
    // And the account's token on a mini-program API: 48001.
    let r: Value = c
        .post(format!(
            "{}/cgi-bin/message/subscribe/send?access_token={mp}",
            sim.base_url()
        ))
        .json(&json!({"touser": "o", "template_id": "t", "data": {}}))
        .send()
        .await
        .expect("send")
        .json()
        .await
        .expect("json");
    assert_eq!(r["errcode"], 48001, "{r}");

    // Refusals.
    let cases = [
        (msg("oMP_gone", "TPL_ORDER"), 43004),
        (msg("oNeverSeen", "TPL_ORDER"), 40003),
        (msg("", "TPL_ORDER"), 40003),
        (msg("oMP_follower", "TPL_OTHER"), 40037),
        (msg("oMP_follower", ""), 40037),
    ];
    for (body, code) in cases {
        let v = send(&sim, &c, &mp, body.clone()).await;
        assert_eq!(v["errcode"], code, "{body} -> {v}");
    }
    let mut bad = msg("oMP_follower", "TPL_ORDER");
    bad["data"] = json!({"thing1": "not an object"});
    assert_eq!(send(&sim, &c, &mp, bad).await["errcode"], 47001);
    let mut bad = msg("oMP_follower", "TPL_ORDER");
    bad["miniprogram"]["appid"] = json!("wx0000000000000000");
    assert_eq!(send(&sim, &c, &mp, bad).await["errcode"], 40013);
    let mut bad = msg("oMP_follower", "TPL_ORDER");
    bad["url"] = json!("javascript:alert(1)");
    assert_eq!(send(&sim, &c, &mp, bad).await["errcode"], 40039);
    assert!(sim.template_messages().is_empty());

    // Accepted.
    let v = send(&sim, &c, &mp, msg("oMP_follower", "TPL_ORDER")).await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert!(v["msgid"].as_u64().is_some());
    assert_eq!(sim.template_messages().len(), 1);

    // Over HTTP: following and templates.
    for (path, body) in [
        (
            "/sim/mp/follow",
            json!({"openid": "oMP_new", "following": true}),
        ),
        ("/sim/mp/templates", json!({"template_ids": ["TPL_NEW"]})),
    ] {
        let r = c
            .post(format!("{}{path}", sim.base_url()))
            .json(&body)
            .send()
            .await
            .expect("control");
        assert_eq!(r.status(), 200);
    }
    let v = send(&sim, &c, &mp, msg("oMP_new", "TPL_NEW")).await;
    assert_eq!(v["errcode"], 0, "{v}");
    // Customer messages take either app's token.
    for t in [&mp, &mini] {
        let r: Value = c
            .post(format!(
                "{}/cgi-bin/message/custom/send?access_token={t}",
                sim.base_url()
            ))
            .json(&json!({"touser": "oMP_follower", "msgtype": "text", "text": {"content": "hi"}}))
            .send()
            .await
            .expect("send")
            .json()
            .await
            .expect("json");
        assert_eq!(r["errcode"], 0, "{r}");
    }
    sim.stop();
}
