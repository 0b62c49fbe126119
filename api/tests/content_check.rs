//! WeChat's content check of text other users see (msg_sec_check v2, the author's openid):
//! `risky` is refused with 422 `content_rejected` and nothing is written; `review` is written
//! and listed for admins; when WeChat cannot answer, the text is written and checked again
//! by the job. The simulator finds `违禁`/`forbidden-word` risky and `待审`/`review-word` for
//! review.

mod common;

use common::{ADMIN_OPENID, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn order(pickup: &str, dropoff: &str, note: &str) -> Value {
    json!({"kind": "express", "pickup": pickup, "dropoff": dropoff, "note": note, "fee_fen": 300, "goods_fen": 0})
}

async fn patch_me(app: &TestApp, token: &str, body: Value) -> (u16, Value) {
    let r = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .expect("patch");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn checks(app: &TestApp, admin: &str, verdict: &str) -> Vec<Value> {
    let (s, b) = app
        .get(
            &format!("/api/v1/admin/content-checks?verdict={verdict}"),
            admin,
        )
        .await;
    assert_eq!(s, 200, "{b}");
    b["items"].as_array().cloned().unwrap_or_default()
}

#[actix_web::test]
async fn risky_text_is_refused_and_review_text_is_flagged() {
    let app = TestApp::spawn().await;
    let token = app.login("writer").await;
    let admin = app.login(ADMIN_OPENID).await;

    // Risky in any field: refused, nothing written.
    for o in [
        order("Station 违禁 A", "Dorm 5", ""),
        order("Station A", "Dorm 5", "forbidden-word please"),
    ] {
        let (s, b) = app.post("/api/v1/orders", &token, o).await;
        assert_eq!((s, code_of(&b)), (422, "content_rejected"), "{b}");
    }
    let (_, list) = app.get("/api/v1/orders?mine=customer", &token).await;
    assert_eq!(list["items"].as_array().map(Vec::len), Some(0), "{list}");
    let texts = app.sim.text_checks();
    assert!(
        texts
            .iter()
            .all(|t| t["openid"] == "writer" && t["scene"] == 2),
        "{texts:?}"
    );

    // Review: written, and listed for admins with what it belongs to.
    let (s, o) = app
        .post(
            "/api/v1/orders",
            &token,
            order("Station A", "Dorm 5", "待审 note"),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let flagged = checks(&app, &admin, "review").await;
    assert_eq!(flagged.len(), 1, "{flagged:?}");
    assert_eq!(
        (flagged[0]["subject"].as_str(), flagged[0]["field"].as_str()),
        (Some("order"), Some("note"))
    );
    assert_eq!(flagged[0]["subject_id"], o["id"]);
    assert_eq!(flagged[0]["content"], "待审 note");

    // The nickname, a draw's title and prizes.
    let (s, b) = patch_me(&app, &token, json!({"nickname": "违禁 name"})).await;
    assert_eq!((s, code_of(&b)), (422, "content_rejected"), "{b}");
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert!(me["nickname"].is_null(), "unchanged: {me}");
    let (s, b) = patch_me(&app, &token, json!({"nickname": "review-word Ming"})).await;
    assert_eq!(
        (s, b["nickname"].as_str()),
        (200, Some("review-word Ming")),
        "{b}"
    );
    let draw_at = (chrono::Utc::now() + chrono::Duration::hours(2)).to_rfc3339();
    for (title, prize) in [
        ("违禁 draw", "Milk tea"),
        ("Exam week", "forbidden-word tea"),
    ] {
        let (s, b) = app
            .post(
                "/api/v1/draws",
                &token,
                json!({"title": title, "draw_at": draw_at, "prizes": [{"name": prize, "count": 1}]}),
            )
            .await;
        assert_eq!((s, code_of(&b)), (422, "content_rejected"), "{b}");
    }
    let subjects: Vec<String> = checks(&app, &admin, "review")
        .await
        .iter()
        .map(|c| c["subject"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(subjects, ["profile", "order"], "newest first");
    // Only admins see the list.
    let (s, b) = app.get("/api/v1/admin/content-checks", &token).await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"), "{b}");
    let (s, b) = app
        .get("/api/v1/admin/content-checks?verdict=maybe", &admin)
        .await;
    assert_eq!((s, code_of(&b)), (422, "validation_failed"), "{b}");
}

#[actix_web::test]
async fn text_written_while_wechat_is_down_is_checked_later() {
    let app = TestApp::spawn().await;
    let token = app.login("offline-writer").await;
    let admin = app.login(ADMIN_OPENID).await;
    app.sim
        .set_api_faults(test_demo::sim::api_faults::ApiFaults {
            error_percent: 100,
            ..Default::default()
        });
    let (s, o) = app
        .post(
            "/api/v1/orders",
            &token,
            order("Station B", "Dorm 7", "review-word"),
        )
        .await;
    assert_eq!(s, 201, "let through while WeChat cannot answer: {o}");
    let pending = checks(&app, &admin, "pending").await;
    assert_eq!(pending.len(), 3, "three texts to check: {pending:?}");
    // WeChat answers again; the job asks.
    app.sim
        .set_api_faults(test_demo::sim::api_faults::ApiFaults::default());
    let later = campus_dal::time::now() + chrono::Duration::hours(2);
    assert_eq!(
        app.ctx
            .content_checks
            .recheck_due(later)
            .await
            .expect("recheck"),
        3
    );
    assert!(checks(&app, &admin, "pending").await.is_empty());
    let review = checks(&app, &admin, "review").await;
    assert_eq!(review.len(), 1, "{review:?}");
    assert_eq!(review[0]["field"], "note");
    assert_eq!(checks(&app, &admin, "pass").await.len(), 2);
}

#[actix_web::test]
async fn a_text_passed_a_moment_ago_is_not_asked_again() {
    let app = TestApp::spawn().await;
    let token = app.login("repeat-writer").await;
    let other = app.login("other-writer").await;
    let asked = |text: &str| {
        app.sim
            .text_checks()
            .iter()
            .filter(|t| t["content"] == text)
            .count()
    };
    // The same pickup and dropoff, order after order: WeChat is asked once.
    for _ in 0..3 {
        let (s, b) = app
            .post(
                "/api/v1/orders",
                &token,
                order("Gate 3 lockers", "Dorm 12", ""),
            )
            .await;
        assert_eq!(s, 201, "{b}");
    }
    assert_eq!((asked("Gate 3 lockers"), asked("Dorm 12")), (1, 1));
    // Remembered per author: another user's same text is asked about.
    let (s, _) = app
        .post(
            "/api/v1/orders",
            &other,
            order("Gate 3 lockers", "Dorm 12", ""),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(asked("Gate 3 lockers"), 2);
    // What WeChat refused is never remembered: asked each time, refused each time.
    for _ in 0..2 {
        let (s, b) = app
            .post(
                "/api/v1/orders",
                &token,
                order("Gate 3 lockers", "Dorm 12", "forbidden-word"),
            )
            .await;
        assert_eq!((s, code_of(&b)), (422, "content_rejected"), "{b}");
    }
    assert_eq!(asked("forbidden-word"), 2);
}
