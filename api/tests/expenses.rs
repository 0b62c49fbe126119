//! Team expenses: groups, recording (mini-program and official account), voids as
//! reversing rows, quarter summaries by scope, reimbursements, the CSV report, and the
//! refusals (amounts, non-members, someone else's expense, another group's leader,
//! malformed official-account commands, replayed pushes).

mod common;

use common::{ADMIN_OPENID, TestApp};
use serde_json::{Value, json};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

fn today() -> String {
    (chrono::Utc::now() + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

fn this_quarter() -> String {
    use chrono::Datelike;
    let d = (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive();
    format!("{}Q{}", d.year(), (d.month() - 1) / 3 + 1)
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    let (_, me) = app.get("/api/v1/me", token).await;
    me["id"].as_i64().expect("id")
}

async fn group(app: &TestApp, admin: &str, name: &str) -> i64 {
    let (s, g) = app
        .post("/api/v1/admin/groups", admin, json!({"name": name}))
        .await;
    assert_eq!(s, 201, "{g}");
    g["id"].as_i64().expect("id")
}

async fn join(app: &TestApp, admin: &str, group: i64, user: i64, leader: bool) {
    let (s, g) = app
        .post(
            &format!("/api/v1/admin/groups/{group}/members"),
            admin,
            json!({"user_id": user, "leader": leader}),
        )
        .await;
    assert_eq!(s, 200, "{g}");
}

async fn spend(app: &TestApp, token: &str, fen: i64, what: &str) -> (u16, Value) {
    app.post(
        "/api/v1/expenses",
        token,
        json!({"amount_fen": fen, "what": what, "spent_on": today()}),
    )
    .await
}

async fn raw_post(
    app: &TestApp,
    path: &str,
    token: &str,
    key: &str,
    body: Value,
) -> (u16, Value, String) {
    let r = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Idempotency-Key", key)
        .json(&body)
        .send()
        .await
        .expect("request");
    let status = r.status().as_u16();
    let replayed = r
        .headers()
        .get("Idempotent-Replayed")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (status, r.json().await.unwrap_or(Value::Null), replayed)
}

#[actix_web::test]
async fn members_record_void_sum_and_the_center_reimburses() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let (ma, la, mb, outsider) = (
        app.login("exp-member-a").await,
        app.login("exp-leader-a").await,
        app.login("exp-leader-b").await,
        app.login("exp-outsider").await,
    );
    let (ma_id, la_id, mb_id) = (
        user_id(&app, &ma).await,
        user_id(&app, &la).await,
        user_id(&app, &mb).await,
    );
    let r = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(&ma)
        .json(&json!({"nickname": "小明"}))
        .send()
        .await
        .expect("nickname");
    assert!(r.status().is_success());
    let a = group(&app, &admin, "后勤组").await;
    let b = group(&app, &admin, "Outreach").await;
    join(&app, &admin, a, ma_id, false).await;
    join(&app, &admin, a, la_id, true).await;
    join(&app, &admin, b, mb_id, true).await;

    // Groups: names are unique, a user is in one group, only admins manage them.
    let (s, e) = app
        .post("/api/v1/admin/groups", &admin, json!({"name": "后勤组"}))
        .await;
    assert_eq!((s, code_of(&e)), (409, "group_name_taken"));
    let (s, e) = app
        .post(
            &format!("/api/v1/admin/groups/{b}/members"),
            &admin,
            json!({"user_id": ma_id}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (409, "already_in_group"));
    let (s, _) = app
        .post("/api/v1/admin/groups", &la, json!({"name": "mine"}))
        .await;
    assert_eq!(s, 403);
    let (s, e) = app
        .post(
            &format!("/api/v1/admin/groups/{a}/members"),
            &la,
            json!({"user_id": mb_id}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (403, "forbidden"));
    let (s, mine) = app.get("/api/v1/groups/mine", &la).await;
    assert_eq!(s, 200, "{mine}");
    assert_eq!(
        (mine["name"].as_str(), mine["leader"].as_bool()),
        (Some("后勤组"), Some(true))
    );
    assert_eq!(mine["members"].as_array().map(Vec::len), Some(2));
    let (s, e) = app.get("/api/v1/groups/mine", &outsider).await;
    assert_eq!((s, code_of(&e)), (403, "not_group_member"));

    // Recording: members only; amounts and days checked with the reason.
    let (s, e) = spend(&app, &outsider, 100, "pens").await;
    assert_eq!((s, code_of(&e)), (403, "not_group_member"));
    for (fen, what, day, why) in [
        (0, "tea", today(), "positive"),
        (-1, "tea", today(), "positive"),
        (10_000_001, "tea", today(), "10000000"),
        (100, "   ", today(), "what"),
        (100, &"x".repeat(65), today(), "what"),
        (100, "tea", "2099-01-01".to_string(), "future"),
        (100, "tea", "2026-02-30".to_string(), "spent_on"),
        (100, "tea", "30/11/2026".to_string(), "spent_on"),
    ] {
        let (s, e) = app
            .post(
                "/api/v1/expenses",
                &ma,
                json!({"amount_fen": fen, "what": what, "spent_on": day}),
            )
            .await;
        assert_eq!(
            (s, code_of(&e)),
            (422, "validation_failed"),
            "{fen} {what} {e}"
        );
        assert!(
            e["error"]["message"].as_str().unwrap_or("").contains(why),
            "{e}"
        );
    }
    let (s, e) = app
        .post(
            "/api/v1/expenses",
            &ma,
            json!({"amount_fen": 1.5, "what": "tea", "spent_on": today()}),
        )
        .await;
    assert!(s == 400 || s == 422, "a fractional fen is refused: {s} {e}");
    let (s, tea) = spend(&app, &ma, 3550, "tea and cakes").await;
    assert_eq!(s, 201, "{tea}");
    assert_eq!(
        (
            tea["amount_fen"].as_i64(),
            tea["kind"].as_str(),
            tea["group_id"].as_i64(),
            tea["quarter"].as_str(),
            tea["source"].as_str()
        ),
        (
            Some(3550),
            Some("expense"),
            Some(a),
            Some(this_quarter().as_str()),
            Some("app")
        )
    );
    let (s, max) = spend(&app, &ma, 10_000_000, "=HYPERLINK(\"x\"), projector").await;
    assert_eq!(s, 201, "{max}");
    let (s, _) = spend(&app, &la, 1200, "奶茶").await;
    assert_eq!(s, 201);
    let (s, _) = spend(&app, &mb, 800, "posters").await;
    assert_eq!(s, 201);

    // The same Idempotency-Key is the first expense again; another body is a conflict.
    let body = json!({"amount_fen": 500, "what": "tape", "spent_on": today()});
    let (s, first, r1) = raw_post(&app, "/api/v1/expenses", &ma, "exp-key-1", body.clone()).await;
    let (s2, again, r2) = raw_post(&app, "/api/v1/expenses", &ma, "exp-key-1", body).await;
    assert_eq!(
        (s, s2, r1.as_str(), r2.as_str()),
        (201, 201, "false", "true")
    );
    assert_eq!(first["id"], again["id"]);
    let (s, e, _) = raw_post(
        &app,
        "/api/v1/expenses",
        &ma,
        "exp-key-1",
        json!({"amount_fen": 501, "what": "tape", "spent_on": today()}),
    )
    .await;
    assert_eq!((s, code_of(&e)), (409, "idempotency_conflict"));

    // Voids: someone else's expense is not found, a leader may not void a member's,
    // the author voids once, a reversal is not voidable.
    let tea_id = tea["id"].as_i64().expect("id");
    let void = format!("/api/v1/expenses/{tea_id}/void");
    let (s, _) = app.post(&void, &mb, json!({})).await;
    assert_eq!(s, 404, "another group's member");
    let (s, _) = app.post(&void, &outsider, json!({})).await;
    assert_eq!(s, 404);
    let (s, e) = app.post(&void, &la, json!({})).await;
    assert_eq!(
        (s, code_of(&e)),
        (403, "forbidden"),
        "the leader sees it but may not void it"
    );
    let (s, rev) = app.post(&void, &ma, json!({})).await;
    assert_eq!(s, 201, "{rev}");
    assert_eq!(
        (
            rev["kind"].as_str(),
            rev["amount_fen"].as_i64(),
            rev["reverses_id"].as_i64(),
            rev["user_id"].as_i64()
        ),
        (Some("reversal"), Some(-3550), Some(tea_id), Some(ma_id))
    );
    let (s, e) = app.post(&void, &ma, json!({})).await;
    assert_eq!((s, code_of(&e)), (409, "already_voided"));
    let (s, e) = app.post(&void, &admin, json!({})).await;
    assert_eq!((s, code_of(&e)), (409, "already_voided"));
    let (s, e) = app
        .post(
            &format!("/api/v1/expenses/{}/void", rev["id"]),
            &ma,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"));
    let (s, _) = app
        .post("/api/v1/expenses/999999/void", &ma, json!({}))
        .await;
    assert_eq!(s, 404);

    // Lists: mine shows the expense as voided; the group list is for leaders.
    let (s, page) = app.get("/api/v1/expenses?scope=me&limit=2", &ma).await;
    assert_eq!(s, 200, "{page}");
    assert_eq!(page["items"].as_array().map(Vec::len), Some(2));
    assert!(page["next_cursor"].is_string(), "{page}");
    let (_, all) = app.get("/api/v1/expenses?scope=me", &ma).await;
    let voided = all["items"]
        .as_array()
        .expect("items")
        .iter()
        .find(|e| e["id"].as_i64() == Some(tea_id))
        .expect("the expense is still listed");
    assert_eq!(voided["voided_by_id"], rev["id"]);
    let (s, e) = app.get("/api/v1/expenses?scope=group", &ma).await;
    assert_eq!((s, code_of(&e)), (403, "not_group_leader"));
    let (s, g) = app.get("/api/v1/expenses?scope=group", &la).await;
    assert_eq!(s, 200);
    assert_eq!(g["items"].as_array().map(Vec::len), Some(5), "{g}");
    let (s, e) = app
        .get(&format!("/api/v1/expenses?scope=group&group_id={a}"), &mb)
        .await;
    assert_eq!(
        (s, code_of(&e)),
        (403, "not_group_leader"),
        "another group's leader"
    );

    // Summaries by scope.
    let q = this_quarter();
    let (s, me) = app
        .get(
            &format!("/api/v1/expenses/summary?scope=me&quarter={q}"),
            &ma,
        )
        .await;
    assert_eq!(s, 200, "{me}");
    assert_eq!(
        (me["total_fen"].as_i64(), me["unreimbursed_fen"].as_i64()),
        (Some(10_000_500), Some(10_000_500))
    );
    let (s, e) = app.get("/api/v1/expenses/summary?scope=group", &ma).await;
    assert_eq!((s, code_of(&e)), (403, "not_group_leader"));
    let (s, e) = app
        .get(
            &format!("/api/v1/expenses/summary?scope=group&group_id={a}"),
            &mb,
        )
        .await;
    assert_eq!(
        (s, code_of(&e)),
        (403, "not_group_leader"),
        "another group's leader"
    );
    let (s, e) = app.get("/api/v1/expenses/summary?scope=center", &la).await;
    assert_eq!((s, code_of(&e)), (403, "forbidden"));
    let (s, e) = app
        .get("/api/v1/expenses/summary?scope=me&quarter=2026Q5", &ma)
        .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"));
    let (s, gs) = app.get("/api/v1/expenses/summary?scope=group", &la).await;
    assert_eq!(s, 200, "{gs}");
    assert_eq!(gs["total_fen"].as_i64(), Some(10_001_700));
    let by_member = gs["by_member"].as_array().expect("by_member");
    assert_eq!(by_member.len(), 2);
    let m = by_member
        .iter()
        .find(|m| m["user_id"].as_i64() == Some(ma_id))
        .expect("member a");
    assert_eq!(
        (m["nickname"].as_str(), m["total_fen"].as_i64()),
        (Some("小明"), Some(10_000_500))
    );
    let (s, center) = app
        .get("/api/v1/expenses/summary?scope=center", &admin)
        .await;
    assert_eq!(s, 200, "{center}");
    assert_eq!(center["total_fen"].as_i64(), Some(10_002_500));
    assert_eq!(center["by_group"].as_array().map(Vec::len), Some(2));

    // Reimbursement: one step for the group's quarter, with who and when.
    let (s, _) = app
        .post(
            "/api/v1/admin/reimbursements",
            &la,
            json!({"group_id": a, "quarter": q}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, e) = app
        .post(
            "/api/v1/admin/reimbursements",
            &admin,
            json!({"group_id": 999999, "quarter": q}),
        )
        .await;
    assert_eq!(s, 404, "{e}");
    let (s, r) = app
        .post(
            "/api/v1/admin/reimbursements",
            &admin,
            json!({"group_id": a, "quarter": q}),
        )
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(
        (
            r["total_fen"].as_i64(),
            r["expense_count"].as_i64(),
            r["reimbursed_by"].as_i64()
        ),
        (Some(10_001_700), Some(5), Some(user_id(&app, &admin).await))
    );
    assert!(r["reimbursed_at"].is_string());
    let (s, e) = app
        .post(
            "/api/v1/admin/reimbursements",
            &admin,
            json!({"group_id": a, "quarter": q}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (409, "nothing_to_reimburse"));
    let (_, gs) = app.get("/api/v1/expenses/summary?scope=group", &la).await;
    assert_eq!(
        (gs["total_fen"].as_i64(), gs["unreimbursed_fen"].as_i64()),
        (Some(10_001_700), Some(0))
    );
    let (_, center) = app
        .get("/api/v1/expenses/summary?scope=center", &admin)
        .await;
    assert_eq!(
        center["unreimbursed_fen"].as_i64(),
        Some(800),
        "group b is still owed"
    );
    let max_id = max["id"].as_i64().expect("id");
    let (s, e) = app
        .post(
            &format!("/api/v1/expenses/{max_id}/void"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (409, "already_reimbursed"));
    let (_, listed) = app.get("/api/v1/expenses?scope=me", &ma).await;
    assert!(
        listed["items"]
            .as_array()
            .expect("items")
            .iter()
            .all(|e| e["reimbursement_id"] == r["id"] && e["reimbursed_at"].is_string()),
        "{listed}"
    );

    // The CSV: BOM, header, amounts in fen and yuan, text quoted and not run as formulas.
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/admin/reports/expenses.csv?quarter={q}")))
        .bearer_auth(&admin)
        .send()
        .await
        .expect("csv");
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/csv; charset=utf-8")
    );
    assert!(
        resp.headers()
            .get("content-disposition")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains(&format!("expenses-{q}.csv")))
    );
    let bytes = resp.bytes().await.expect("body");
    assert_eq!(&bytes[..3], b"\xEF\xBB\xBF", "UTF-8 byte-order mark");
    let text = std::str::from_utf8(&bytes[3..]).expect("utf-8");
    let lines: Vec<&str> = text.split("\r\n").filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 1 + 6, "{text}");
    assert!(
        lines[0].starts_with(
            "id,group_id,group,user_id,member,spent_on,what,amount_fen,amount_yuan,kind"
        )
    );
    assert!(
        lines.iter().any(|l| l.contains(",3550,35.50,expense,")),
        "{text}"
    );
    assert!(
        lines.iter().any(|l| l.contains(",-3550,-35.50,reversal,")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",10000000,100000.00,expense,")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains("\"'=HYPERLINK(\"\"x\"\"), projector\"")),
        "{text}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.contains(",后勤组,") && l.contains(",小明,")),
        "{text}"
    );
    let (s, _) = app
        .get(
            &format!("/api/v1/admin/reports/expenses.csv?quarter={q}"),
            &la,
        )
        .await;
    assert_eq!(s, 403);
    let (s, _) = app
        .get("/api/v1/admin/reports/expenses.csv?quarter=Q4", &admin)
        .await;
    assert_eq!(s, 422);
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

async fn push(app: &TestApp, msg: &str) -> String {
    let (s, reply) = app
        .sim
        .push_mp_message(&app.url("/wechat/mp"), msg, false)
        .await
        .expect("push");
    assert_eq!(s, 200, "{reply}");
    reply
}

async fn bind(app: &TestApp, token: &str, from: &str, n: u64) {
    let (_, code) = app.post("/api/v1/me/bind-code", token, json!({})).await;
    let code = code["code"].as_str().expect("code");
    let r = push(app, &text_msg(from, &format!("bind {code}"), n)).await;
    assert!(r.contains("Linked"), "{r}");
}

#[actix_web::test]
async fn expenses_are_recorded_and_summed_by_typing_to_the_official_account() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;
    let member = app.login("oa-exp-member").await;
    let leader = app.login("oa-exp-leader").await;
    let g = group(&app, &admin, "Typing team").await;
    join(&app, &admin, g, user_id(&app, &member).await, false).await;
    join(&app, &admin, g, user_id(&app, &leader).await, true).await;

    let r = push(&app, &text_msg("oa-m", "mine", 1)).await;
    assert!(r.contains("bind <code>"), "unbound: {r}");
    let r = push(&app, &text_msg("oa-m", "expense 35.50 tea and cakes", 2)).await;
    assert!(r.contains("bind <code>"), "unbound: {r}");
    bind(&app, &member, "oa-m", 3).await;
    bind(&app, &leader, "oa-l", 4).await;

    let msg = text_msg("oa-m", "expense 35.50 tea and cakes", 5);
    let r = push(&app, &msg).await;
    assert!(
        r.contains("Recorded") && r.contains("35.50") && r.contains("tea and cakes"),
        "{r}"
    );
    // WeChat retrying the push (same MsgId) gets the same reply and records nothing new.
    let again = push(&app, &msg).await;
    assert_eq!(again, r);
    let r = push(&app, &text_msg("oa-m", "报销 12 奶茶", 6)).await;
    assert!(
        r.contains("Recorded") && r.contains("12.00") && r.contains("奶茶"),
        "{r}"
    );
    let (_, page) = app.get("/api/v1/expenses?scope=me", &member).await;
    let items = page["items"].as_array().expect("items");
    assert_eq!(items.len(), 2, "{page}");
    assert!(items.iter().all(|e| e["source"] == "official_account"));
    assert_eq!(items[1]["amount_fen"].as_i64(), Some(3550));
    assert_eq!(items[1]["spent_on"].as_str(), Some(today().as_str()));

    // Malformed commands get the right form (and the reason when there is one).
    for (n, text, why) in [
        (10, "expense", "Format"),
        (11, "expense 35.50", "Format"),
        (12, "expense abc tea", "such as 35.50"),
        (13, "expense 35.555 tea", "two decimals"),
        (14, "expense 0 tea", "positive"),
        (15, "expense -1 tea", "positive"),
        (16, "expense 100000.01 tea", "100000"),
        (17, "报销 1e3 奶茶", "such as 35.50"),
        (18, "expense 5 ", "Format"),
        (19, &format!("expense 5 {}", "x".repeat(65)), "what"),
        (20, "mine please", "on its own"),
    ] {
        let r = push(&app, &text_msg("oa-m", text, n)).await;
        assert!(r.contains(why), "{text}: {r}");
        if why != "on its own" {
            assert!(r.contains("Format"), "{text}: {r}");
        }
    }
    let (_, page) = app.get("/api/v1/expenses?scope=me", &member).await;
    assert_eq!(
        page["items"].as_array().map(Vec::len),
        Some(2),
        "nothing recorded by refusals"
    );

    // Totals: mine, group (leaders), center (admins).
    let r = push(&app, &text_msg("oa-m", "mine", 21)).await;
    assert!(r.contains("47.50") && r.contains(&this_quarter()), "{r}");
    let r = push(&app, &text_msg("oa-m", "group", 22)).await;
    assert!(r.contains("Only group leaders"), "{r}");
    let r = push(&app, &text_msg("oa-m", "center", 23)).await;
    assert!(r.contains("Only admins"), "{r}");
    let r = push(&app, &text_msg("oa-l", "GROUP", 24)).await;
    assert!(r.contains("47.50"), "{r}");
    bind(&app, &admin, "oa-admin", 25).await;
    let r = push(&app, &text_msg("oa-admin", "center", 26)).await;
    assert!(r.contains("Typing team") && r.contains("47.50"), "{r}");
    let r = push(&app, &text_msg("oa-admin", "expense 3 pens", 27)).await;
    assert!(r.contains("not in an expense group"), "{r}");

    // The same totals over the API.
    let (_, s) = app
        .get("/api/v1/expenses/summary?scope=group", &leader)
        .await;
    assert_eq!(s["unreimbursed_fen"].as_i64(), Some(4750), "{s}");
    // Help names the commands, and a coupon keyword may not take them.
    let r = push(&app, &text_msg("oa-m", "help", 28)).await;
    assert!(r.contains("expense 35.50") && r.contains("mine"), "{r}");
    let (s, e) = app
        .post(
            "/api/v1/admin/coupons",
            &admin,
            json!({"title": "t", "discount_fen": 100, "stock": 1, "valid_days": 1, "keyword": "报销 券"}),
        )
        .await;
    assert_eq!((s, code_of(&e)), (422, "validation_failed"));
}
