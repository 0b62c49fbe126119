//! Order events as official-account template messages, through the outbox: sent to
//! users who bound the account, with the account's own access token; retried with
//! backoff on -1 and HTTP 5xx; 43004 and 40003 final; never sent twice; the admin send
//! log shows each row.

mod common;

use std::time::Duration;

use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};

const TEMPLATE: &str = "mp-order-template";

async fn spawn() -> TestApp {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.wechat_mp_template_order = Some(TEMPLATE.into())),
        ..Options::default()
    })
    .await;
    app.sim.mp_add_template(TEMPLATE);
    app
}

fn text_msg(from: &str, content: &str, n: u64) -> String {
    static BASE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let msg_id = BASE.get_or_init(|| rand::random::<u32>() as u64 * 1000) + n;
    format!(
        "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName>\
         <CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType>\
         <Content><![CDATA[{content}]]></Content><MsgId>{msg_id}</MsgId></xml>"
    )
}

async fn bind(app: &TestApp, token: &str, from: &str, n: u64) {
    let (_, code) = app.post("/api/v1/me/bind-code", token, json!({})).await;
    let code = code["code"].as_str().expect("code");
    let (s, r) = app
        .sim
        .push_mp_message(
            &app.url("/wechat/mp"),
            &text_msg(from, &format!("bind {code}"), n),
            false,
        )
        .await
        .expect("push");
    assert!(s == 200 && r.contains("Linked"), "{r}");
}

/// The send log's rows for an order, once none is `sending` or waiting for its first try.
async fn settled(app: &TestApp, admin: &str, order: i64, rows: usize) -> Vec<Value> {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let (s, page) = app.get("/api/v1/admin/mp-messages?limit=100", admin).await;
        assert_eq!(s, 200, "{page}");
        let mine: Vec<Value> = page["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|m| m["order_id"].as_i64() == Some(order))
            .cloned()
            .collect();
        let busy = mine
            .iter()
            .any(|m| m["status"] == "sending" || (m["status"] == "pending" && m["attempts"] == 0));
        if mine.len() >= rows && !busy {
            return mine;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "order {order}: {mine:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sent_to(app: &TestApp, touser: &str) -> Vec<Value> {
    app.sim
        .template_messages()
        .into_iter()
        .filter(|m| m["touser"] == touser)
        .collect()
}

/// Due now, then one pass of the sender (as the job's next tick would, after the backoff).
async fn retry_now(app: &TestApp, id: i64) {
    let n = app
        .ctx
        .db
        .write(move |c| {
            campus_dal::mp_messages::retry_at(
                c,
                campus_dal::MpMessageId(id),
                campus_dal::time::now(),
            )
            .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("rescheduled");
    assert_eq!(n, 1, "message {id} is pending");
    app.ctx
        .subscriptions
        .mp_outbox()
        .expect("outbox configured")
        .send_due()
        .await
        .expect("sender pass");
}

#[actix_web::test]
async fn order_events_reach_bound_users_through_the_outbox() {
    let app = spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("tm-customer").await;
    let runner = app.runner("tm-runner").await;
    let unbound = app.login("tm-unbound").await;
    bind(&app, &customer, "tm-mp-customer", 1).await;

    // Paid: one message, with the account's token, the order's number and the amount,
    // opening the order in the mini-program.
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let rows = settled(&app, &admin, id, 1).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:?}");
    assert_eq!(rows[0]["event"], "paid");
    assert_eq!(rows[0]["attempts"], 1);
    assert!(rows[0]["wechat_msgid"].is_string(), "{rows:?}");
    let sent = sent_to(&app, "tm-mp-customer");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let m = &sent[0];
    assert_eq!(m["template_id"], TEMPLATE);
    assert_eq!(m["data"]["keyword1"]["value"], o["out_trade_no"]);
    assert_eq!(m["data"]["keyword2"]["value"], "已支付");
    assert_eq!(m["data"]["keyword3"]["value"], "¥3.00");
    assert_eq!(
        m["miniprogram"]["pagepath"],
        format!("pages/order/detail?id={id}")
    );
    assert!(app.sim.calls("template_send") >= 1);
    // A user who never bound the account gets none (and no row).
    let other = app.paid_order(&unbound, 200).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, page) = app.get("/api/v1/admin/mp-messages?limit=100", &admin).await;
    assert!(
        page["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|m| m["order_id"] != other["id"]),
        "{page}"
    );

    // Accepted, while WeChat is busy (-1), then down (503): retried with backoff, sent once.
    app.sim.push_template_faults(&[
        test_demo::sim::TemplateFault::Busy,
        test_demo::sim::TemplateFault::Unavailable,
    ]);
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &runner, json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    let rows = settled(&app, &admin, id, 2).await;
    let accepted = rows
        .iter()
        .find(|m| m["event"] == "accepted")
        .expect("accepted row");
    assert_eq!(
        (accepted["status"].as_str(), accepted["attempts"].as_i64()),
        (Some("pending"), Some(1)),
        "{accepted}"
    );
    assert!(
        accepted["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("busy"),
        "{accepted}"
    );
    let next = accepted["next_attempt_at"].as_str().expect("next try");
    let next = chrono::DateTime::parse_from_rfc3339(next).expect("time");
    let wait = next.signed_duration_since(chrono::Utc::now()).num_seconds();
    assert!(
        (20..=31).contains(&wait),
        "the first backoff is 30 s: {wait}"
    );
    let aid = accepted["id"].as_i64().expect("id");
    retry_now(&app, aid).await;
    let rows = settled(&app, &admin, id, 2).await;
    let accepted = rows
        .iter()
        .find(|m| m["id"].as_i64() == Some(aid))
        .expect("row");
    assert_eq!(
        (accepted["status"].as_str(), accepted["attempts"].as_i64()),
        (Some("pending"), Some(2)),
        "{accepted}"
    );
    assert!(
        accepted["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("503"),
        "{accepted}"
    );
    retry_now(&app, aid).await;
    let rows = settled(&app, &admin, id, 2).await;
    let accepted = rows
        .iter()
        .find(|m| m["id"].as_i64() == Some(aid))
        .expect("row");
    assert_eq!(
        (accepted["status"].as_str(), accepted["attempts"].as_i64()),
        (Some("sent"), Some(3)),
        "{accepted}"
    );
    let sent = sent_to(&app, "tm-mp-customer");
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["data"]["keyword2"]["value"], "已接单");

    // Never twice: a sent row is not claimed again, whoever asks.
    let outbox = app.ctx.subscriptions.mp_outbox().expect("outbox");
    assert_eq!(outbox.deliver(campus_dal::MpMessageId(aid)).await, None);
    assert_eq!(outbox.send_due().await.expect("pass"), 0);
    assert_eq!(sent_to(&app, "tm-mp-customer").len(), 2);

    // Unfollowed (43004): final, recorded, not retried.
    app.sim.mp_unfollow("tm-mp-customer");
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/pickup"), &runner, json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": o["pickup_code"]}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let rows = settled(&app, &admin, id, 3).await;
    let delivered = rows
        .iter()
        .find(|m| m["event"] == "delivered")
        .expect("delivered row");
    assert_eq!(delivered["status"], "failed", "{delivered}");
    assert!(
        delivered["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("43004"),
        "{delivered}"
    );
    assert!(delivered["next_attempt_at"].is_null());
    assert_eq!(outbox.send_due().await.expect("pass"), 0);
    assert_eq!(sent_to(&app, "tm-mp-customer").len(), 2);

    // An openid the account does not know (40003): final too.
    let stranger = app.login("tm-stranger").await;
    bind(&app, &stranger, "tm-mp-stranger", 2).await;
    let sid = {
        let (_, me) = app.get("/api/v1/me", &stranger).await;
        me["id"].as_i64().expect("id")
    };
    app.ctx
        .db
        .write(move |c| {
            campus_dal::users::bind_mp_openid(
                c,
                campus_dal::UserId(sid),
                "tm-mp-never-followed",
                campus_dal::time::now(),
            )
            .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("openid changed");
    let o2 = app.paid_order(&stranger, 100).await;
    let rows = settled(&app, &admin, o2["id"].as_i64().expect("id"), 1).await;
    assert_eq!(rows[0]["status"], "failed", "{rows:?}");
    assert!(
        rows[0]["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("40003"),
        "{rows:?}"
    );

    // The log filters by status and is for admins only.
    let (s, page) = app
        .get("/api/v1/admin/mp-messages?status=failed", &admin)
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    let (s, _) = app.get("/api/v1/admin/mp-messages", &customer).await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get("/api/v1/admin/mp-messages?status=lost", &admin)
        .await;
    assert!(s == 400 || s == 422, "{s}");
}

/// Without WECHAT_MP_TEMPLATE_ORDER nothing goes to the official account.
#[actix_web::test]
async fn no_template_no_official_account_messages() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("tm-off-customer").await;
    bind(&app, &customer, "tm-off-mp", 201).await;
    app.paid_order(&customer, 300).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(app.ctx.subscriptions.mp_outbox().is_none());
    assert_eq!(app.sim.calls("template_send"), 0);
    let (s, page) = app.get("/api/v1/admin/mp-messages", &admin).await;
    assert_eq!(s, 200);
    assert_eq!(page["items"].as_array().map(Vec::len), Some(0));
}

/// A sender that stopped mid-send (its process died after WeChat took the message, before
/// the outcome was written) leaves the row `sending`; once its lease runs out the row is
/// `unclear` and is not sent again, since the template API cannot tell a retry from a
/// second message.
#[actix_web::test]
async fn a_send_stopped_mid_way_is_unclear_and_never_sent_again() {
    let app = spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("tm-midway").await;
    // Its own MsgId: pushes are deduplicated by (account, MsgId) in the shared cache.
    bind(&app, &customer, "tm-mp-midway", 101).await;
    let o = app.paid_order(&customer, 300).await;
    let order = o["id"].as_i64().expect("id");
    let rows = settled(&app, &admin, order, 1).await;
    assert_eq!(rows[0]["status"], "sent", "{rows:?}");
    assert_eq!(sent_to(&app, "tm-mp-midway").len(), 1);
    let id = rows[0]["id"].as_i64().expect("id");
    // As the dead sender left it: claimed, its lease over.
    app.ctx
        .db
        .write(move |c| {
            use campus_dal::schema::mp_messages;
            use diesel::prelude::*;
            diesel::update(mp_messages::table.find(id))
                .set((
                    mp_messages::status.eq("sending"),
                    mp_messages::next_attempt_at
                        .eq(campus_dal::time::now() - chrono::Duration::seconds(1)),
                ))
                .execute(c)
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("row set");
    let outbox = app
        .ctx
        .subscriptions
        .mp_outbox()
        .expect("outbox configured");
    assert_eq!(outbox.send_due().await.expect("pass"), 0);
    assert_eq!(outbox.send_due().await.expect("pass"), 0);
    assert_eq!(sent_to(&app, "tm-mp-midway").len(), 1, "not sent again");
    let (_, page) = app
        .get("/api/v1/admin/mp-messages?status=unclear", &admin)
        .await;
    let row = page["items"]
        .as_array()
        .and_then(|items| items.iter().find(|m| m["id"] == id).cloned())
        .unwrap_or_else(|| panic!("row {id} unclear in {page}"));
    assert!(
        row["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("stopped mid-send"),
        "{row}"
    );
}

#[actix_web::test]
async fn the_accounts_messages_have_their_own_daily_cap() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| {
            s.wechat_mp_template_order = Some(TEMPLATE.into());
            s.messages_per_user_day = 2;
        }),
        ..Options::default()
    })
    .await;
    app.sim.mp_add_template(TEMPLATE);
    let admin = app.login(ADMIN_OPENID).await;
    let customer = app.login("cap-customer").await;
    bind(&app, &customer, "cap-mp-customer", 50).await;
    let status_of = async |order: &Value| -> Value {
        let id = order["id"].as_i64().expect("id");
        settled(&app, &admin, id, 1).await[0].clone()
    };

    // A send WeChat did not take (busy) gives its place back.
    app.sim
        .push_template_faults(&[test_demo::sim::TemplateFault::Busy]);
    let busy = status_of(&app.paid_order(&customer, 100).await).await;
    assert_eq!(busy["status"], "pending", "{busy}");
    for _ in 0..2 {
        let m = status_of(&app.paid_order(&customer, 100).await).await;
        assert_eq!(m["status"], "sent", "{m}");
    }
    // The third of the day is recorded, not sent; so is the busy one when its retry comes.
    let over = status_of(&app.paid_order(&customer, 100).await).await;
    assert_eq!(over["status"], "capped", "{over}");
    assert!(
        over["last_error"]
            .as_str()
            .unwrap_or("")
            .contains("MESSAGES_PER_USER_DAY"),
        "{over}"
    );
    retry_now(&app, busy["id"].as_i64().expect("id")).await;
    let (_, page) = app
        .get("/api/v1/admin/mp-messages?status=capped&limit=100", &admin)
        .await;
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2), "{page}");
    assert_eq!(sent_to(&app, "cap-mp-customer").len(), 2);
}
