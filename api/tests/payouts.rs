//! Issue 15: runners' earnings (credited on completion, debited by a refund after it),
//! withdrawals (manual and auto, parallel requests, lost and unclear answers, definite
//! refusals), through the simulator's transfers. SQLite, or MariaDB + Redis with
//! CAMPUS_TEST_MODE=mariadb.

mod common;

use std::time::{Duration, Instant};

use common::{ADMIN_OPENID, Options, TestApp};
use serde_json::{Value, json};
use test_demo::sim::TransferFault;

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

async fn auto_app() -> TestApp {
    TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.withdraw_approval = campus_dal::WithdrawApproval::Auto),
        ..Options::default()
    })
    .await
}

/// An order with these amounts, paid, carried by `runner` to delivery. Returns its id.
async fn delivered(app: &TestApp, customer: &str, runner: &str, fee: i64, goods: i64) -> i64 {
    let (s, o) = app
        .post(
            "/api/v1/orders",
            customer,
            json!({"kind": "takeout", "pickup": "Canteen", "dropoff": "Dorm 3", "fee_fen": fee, "goods_fen": goods}),
        )
        .await;
    assert_eq!(s, 201, "{o}");
    let id = o["id"].as_i64().expect("id");
    let code = o["pickup_code"].as_str().expect("code").to_string();
    let params = app.pay_params(customer, id).await;
    app.sim
        .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
        .expect("sim pays");
    app.wait_status(customer, id, "paid").await;
    for (path, body) in [
        ("accept", json!({})),
        ("pickup", json!({})),
        ("deliver", json!({"pickup_code": code})),
    ] {
        let (s, b) = app
            .post(&format!("/api/v1/orders/{id}/{path}"), runner, body)
            .await;
        assert_eq!(s, 200, "{path}: {b}");
    }
    id
}

async fn completed(app: &TestApp, customer: &str, runner: &str, fee: i64, goods: i64) -> i64 {
    let id = delivered(app, customer, runner, fee, goods).await;
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/confirm"), customer, json!({}))
        .await;
    assert_eq!((s, b["status"].as_str()), (200, Some("completed")), "{b}");
    id
}

async fn earnings(app: &TestApp, runner: &str) -> Value {
    let (s, e) = app.get("/api/v1/runner/earnings?limit=100", runner).await;
    assert_eq!(s, 200, "{e}");
    e
}

/// The ledger's sum straight from the database.
async fn ledger_sum(app: &TestApp, runner_id: i64) -> i64 {
    app.ctx
        .db
        .read(move |c| {
            campus_dal::earnings::balance(c, campus_dal::UserId(runner_id))
                .map_err(campus_impl::db::DbError::from)
        })
        .await
        .expect("ledger")
}

async fn user_id(app: &TestApp, token: &str) -> i64 {
    let (_, me) = app.get("/api/v1/me", token).await;
    me["id"].as_i64().expect("id")
}

async fn wait_earnings(app: &TestApp, runner: &str, pred: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let e = earnings(app, runner).await;
        if pred(&e) {
            return e;
        }
        assert!(Instant::now() < deadline, "earnings never got there: {e}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_withdrawal(app: &TestApp, runner: &str, id: i64, want: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (s, page) = app
            .get("/api/v1/runner/withdrawals?limit=100", runner)
            .await;
        assert_eq!(s, 200, "{page}");
        let w = page["items"]
            .as_array()
            .and_then(|a| a.iter().find(|w| w["id"] == id).cloned())
            .expect("listed");
        if w["status"] == want {
            return w;
        }
        assert!(
            Instant::now() < deadline,
            "withdrawal {id} never became {want}: {w}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn completions_credit_and_a_refund_after_completion_debits_the_same_share() {
    let app = TestApp::spawn().await;
    let customer = app.login("earn-customer").await;
    let runner = app.runner("earn-runner").await;
    let rid = user_id(&app, &runner).await;

    // Nothing yet; customers have no earnings.
    let e = earnings(&app, &runner).await;
    assert_eq!(
        (
            e["balance_fen"].as_i64(),
            e["items"].as_array().map(Vec::len)
        ),
        (Some(0), Some(0))
    );
    let (s, b) = app.get("/api/v1/runner/earnings", &customer).await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"));

    // 80% of the fee, rounded down, plus the goods whole.
    completed(&app, &customer, &runner, 300, 0).await; // 240
    let second = completed(&app, &customer, &runner, 500, 1000).await; // 1400
    completed(&app, &customer, &runner, 199, 0).await; // 159 (159.2 rounded down)
    let e = earnings(&app, &runner).await;
    assert_eq!(e["balance_fen"], 240 + 1400 + 159, "{e}");
    let credits: Vec<i64> = e["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|i| i["kind"] == "order_completed")
        .filter_map(|i| i["amount_fen"].as_i64())
        .collect();
    assert_eq!(credits, vec![159, 1400, 240], "newest first");

    // Confirming again credits nothing more.
    let (s, _) = app
        .post(
            &format!("/api/v1/orders/{second}/confirm"),
            &customer,
            json!({}),
        )
        .await;
    assert_eq!(s, 409);

    // A refund of 700 of the 1500 paid, after completion: the runner's credit was 1400 of
    // 1500, so 700 * 1400 / 1500 = 653 (rounded down) comes back off the balance.
    let admin = app.login(ADMIN_OPENID).await;
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/orders/{second}/refund"),
            &admin,
            json!({"refund_fen": 700, "reason": "cold food"}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let e = wait_earnings(&app, &runner, |e| {
        e["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|i| i["kind"] == "refund_debit"))
    })
    .await;
    let debit = e["items"]
        .as_array()
        .and_then(|a| a.iter().find(|i| i["kind"] == "refund_debit").cloned())
        .expect("debit");
    assert_eq!(debit["amount_fen"], -653, "{debit}");
    assert_eq!(debit["order_id"], second);
    let balance = 240 + 1400 + 159 - 653;
    assert_eq!(e["balance_fen"], balance);

    // The balance is the ledger: the items' sum and the database's sum agree.
    let items_sum: i64 = e["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter_map(|i| i["amount_fen"].as_i64())
        .sum();
    assert_eq!(items_sum, balance);
    assert_eq!(ledger_sum(&app, rid).await, balance);

    // Paging walks the whole ledger.
    let (s, p) = app.get("/api/v1/runner/earnings?limit=2", &runner).await;
    assert_eq!(s, 200);
    assert_eq!(p["items"].as_array().map(Vec::len), Some(2));
    let cursor = p["next_cursor"].as_str().expect("more").to_string();
    let (_, p2) = app
        .get(
            &format!("/api/v1/runner/earnings?limit=2&cursor={cursor}"),
            &runner,
        )
        .await;
    assert_eq!(p2["items"].as_array().map(Vec::len), Some(2));
    assert!(p2["next_cursor"].is_null());
    let (s, b) = app.get("/api/v1/runner/earnings?cursor=x1", &runner).await;
    assert_eq!((s, code_of(&b)), (422, "validation_failed"));
}

#[actix_web::test]
async fn auto_complete_credits_in_the_same_transaction() {
    let app = TestApp::spawn_with(Options {
        tweak: Box::new(|s| s.order_auto_complete_secs = 0),
        ..Options::default()
    })
    .await;
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("auto-customer").await;
    let runner = app.runner("auto-runner").await;
    let id = delivered(&app, &customer, &runner, 250, 30).await;
    app.wait_status(&customer, id, "completed").await;
    // 30 + 250 * 80 / 100 = 230, visible as soon as the order is completed.
    let e = earnings(&app, &runner).await;
    assert_eq!(e["balance_fen"], 230, "{e}");
    assert_eq!(e["items"][0]["order_id"], id);
    jobs.abort();
}

#[actix_web::test]
async fn manual_withdrawals_are_approved_or_rejected_by_admins() {
    let app = TestApp::spawn().await;
    let customer = app.login("wd-customer").await;
    let runner = app.runner("wd-runner").await;
    let admin = app.login(ADMIN_OPENID).await;
    completed(&app, &customer, &runner, 1000, 0).await; // 800

    // Hostile amounts and callers.
    for (amount, status, code) in [
        (json!(99), 422, "validation_failed"),
        (json!(0), 422, "validation_failed"),
        (json!(-500), 422, "validation_failed"),
        (json!(801), 409, "insufficient_balance"),
        (json!(9_000_000_000_000_i64), 409, "withdraw_limit_reached"),
    ] {
        let (s, b) = app
            .post(
                "/api/v1/runner/withdrawals",
                &runner,
                json!({"amount_fen": amount}),
            )
            .await;
        assert_eq!((s, code_of(&b)), (status, code), "{amount}: {b}");
    }
    for bad in [
        json!({"amount_fen": "100"}),
        json!({"amount_fen": 1.5}),
        json!({}),
    ] {
        let (s, _) = app
            .post("/api/v1/runner/withdrawals", &runner, bad.clone())
            .await;
        assert!(s == 400 || s == 422, "{bad}: {s}");
    }
    let (s, b) = app
        .post(
            "/api/v1/runner/withdrawals",
            &customer,
            json!({"amount_fen": 100}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"));

    // Asked for: reserved at once, pending.
    let (s, w) = app
        .post(
            "/api/v1/runner/withdrawals",
            &runner,
            json!({"amount_fen": 300}),
        )
        .await;
    assert_eq!(s, 202, "{w}");
    assert_eq!(w["status"], "pending");
    assert!(w["reason"].is_null());
    let ptn = w["partner_trade_no"].as_str().expect("ptn").to_string();
    assert!(ptn.len() <= 32 && ptn.bytes().all(|b| b.is_ascii_alphanumeric()));
    let id = w["id"].as_i64().expect("id");
    let e = earnings(&app, &runner).await;
    assert_eq!(
        (e["balance_fen"].as_i64(), e["withdrawing_fen"].as_i64()),
        (Some(500), Some(300))
    );
    assert!(
        app.sim.transfer(&ptn).is_none(),
        "nothing paid before approval"
    );

    // Only admins see and decide.
    let (s, _) = app.get("/api/v1/admin/withdrawals", &runner).await;
    assert_eq!(s, 403);
    let (s, _) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id}/approve"),
            &runner,
            json!({}),
        )
        .await;
    assert_eq!(s, 403);
    let (s, list) = app
        .get("/api/v1/admin/withdrawals?status=pending", &admin)
        .await;
    assert_eq!(s, 200, "{list}");
    assert!(
        list["items"]
            .as_array()
            .is_some_and(|a| a.iter().any(|x| x["id"] == id))
    );
    let (s, _) = app
        .get("/api/v1/admin/withdrawals?status=nonsense", &admin)
        .await;
    assert!(s == 400 || s == 422);

    let (s, done) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{done}");
    assert_eq!(done["status"], "succeeded", "{done}");
    let t = app.sim.transfer(&ptn).expect("paid at WeChat");
    assert_eq!((t.amount, t.check_name.as_str()), (300, "NO_CHECK"));
    assert_eq!(t.openid, "wd-runner");
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (409, "withdrawal_not_pending"));
    let (s, _) = app
        .post(
            "/api/v1/admin/withdrawals/999999/approve",
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 404);
    let e = earnings(&app, &runner).await;
    assert_eq!(
        (
            e["balance_fen"].as_i64(),
            e["withdrawing_fen"].as_i64(),
            e["withdrawn_fen"].as_i64()
        ),
        (Some(500), Some(0), Some(300))
    );

    // Rejected: the amount comes back, with the reason.
    let (_, w2) = app
        .post(
            "/api/v1/runner/withdrawals",
            &runner,
            json!({"amount_fen": 200}),
        )
        .await;
    let id2 = w2["id"].as_i64().expect("id");
    let (s, r) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id2}/reject"),
            &admin,
            json!({"reason": "bank details to check"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "failed");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|m| m.contains("bank details"))
    );
    let (s, _) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id2}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 409, "a rejected withdrawal cannot be paid");
    assert_eq!(earnings(&app, &runner).await["balance_fen"], 500);

    // A definite refusal by WeChat (merchant balance short): failed, amount back.
    app.sim
        .push_transfer_faults(&[TransferFault::Refuse("NOTENOUGH".into())]);
    let (_, w3) = app
        .post(
            "/api/v1/runner/withdrawals",
            &runner,
            json!({"amount_fen": 150}),
        )
        .await;
    let id3 = w3["id"].as_i64().expect("id");
    let (s, r) = app
        .post(
            &format!("/api/v1/admin/withdrawals/{id3}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["status"], "failed", "{r}");
    assert!(
        r["reason"]
            .as_str()
            .is_some_and(|m| m.contains("NOTENOUGH")),
        "{r}"
    );
    assert!(
        app.sim
            .transfer(r["partner_trade_no"].as_str().expect("ptn"))
            .is_none()
    );
    let e = earnings(&app, &runner).await;
    assert_eq!(e["balance_fen"], 500);
    let rid = user_id(&app, &runner).await;
    assert_eq!(ledger_sum(&app, rid).await, 500);
    assert_eq!(app.sim.transfers().len(), 1, "one transfer in all");
}

#[actix_web::test]
async fn parallel_auto_withdrawals_never_exceed_the_balance() {
    let app = auto_app().await;
    let customer = app.login("par-customer").await;
    let runner = app.runner("par-runner").await;
    completed(&app, &customer, &runner, 1000, 0).await; // 800

    let results = futures::future::join_all((0..12).map(|_| {
        app.post(
            "/api/v1/runner/withdrawals",
            &runner,
            json!({"amount_fen": 100}),
        )
    }))
    .await;
    let accepted = results.iter().filter(|(s, _)| *s == 202).count();
    let refused = results
        .iter()
        .filter(|(s, b)| *s == 409 && code_of(b) == "insufficient_balance")
        .count();
    assert_eq!((accepted, refused), (8, 4), "{results:?}");
    for (_, w) in results.iter().filter(|(s, _)| *s == 202) {
        wait_withdrawal(&app, &runner, w["id"].as_i64().expect("id"), "succeeded").await;
    }
    let paid: u64 = app.sim.transfers().iter().map(|t| t.amount).sum();
    assert_eq!(paid, 800);
    let e = earnings(&app, &runner).await;
    assert_eq!(
        (e["balance_fen"].as_i64(), e["withdrawn_fen"].as_i64()),
        (Some(0), Some(800))
    );
    // WeChat's daily cap: 10 withdrawals per runner per Beijing day (8 made here).
    completed(&app, &customer, &runner, 1000, 0).await;
    for want in [202, 202, 409] {
        let (s, b) = app
            .post(
                "/api/v1/runner/withdrawals",
                &runner,
                json!({"amount_fen": 100}),
            )
            .await;
        assert_eq!(s, want, "{b}");
        if s == 409 {
            assert_eq!(code_of(&b), "withdraw_limit_reached");
        }
    }
}

#[actix_web::test]
async fn unclear_answers_are_settled_by_the_query_and_never_paid_twice() {
    let app = auto_app().await;
    // The settle job queries unclear transfers.
    let jobs = app.ctx.clone().start_jobs();
    let customer = app.login("lost-customer").await;
    let runner = app.runner("lost-runner").await;
    completed(&app, &customer, &runner, 2000, 0).await; // 1600

    let cases = [
        // Paid, the answer lost mid-way: the query finds it; no second transfer.
        (TransferFault::LostAnswerButPaid, 101, "succeeded", 1),
        // Paid, answered SYSTEMERROR: same.
        (TransferFault::SystemErrorButPaid, 102, "succeeded", 1),
        // SYSTEMERROR before anything moved: NOT_FOUND, sent again with the same number.
        (TransferFault::SystemError, 103, "succeeded", 2),
        // A definite refusal: failed, the amount back, nothing paid.
        (
            TransferFault::Refuse("AMOUNT_LIMIT".into()),
            104,
            "failed",
            1,
        ),
    ];
    let mut paid = 0;
    for (fault, amount, want, requests) in cases {
        let before = app.sim.calls("transfers");
        app.sim.push_transfer_faults(std::slice::from_ref(&fault));
        let (s, w) = app
            .post(
                "/api/v1/runner/withdrawals",
                &runner,
                json!({"amount_fen": amount}),
            )
            .await;
        assert_eq!(s, 202, "{fault:?}: {w}");
        let id = w["id"].as_i64().expect("id");
        let ptn = w["partner_trade_no"].as_str().expect("ptn").to_string();
        let done = wait_withdrawal(&app, &runner, id, want).await;
        assert_eq!(
            app.sim.calls("transfers") - before,
            requests,
            "{fault:?}: transfer requests"
        );
        match app.sim.transfer(&ptn) {
            Some(t) => {
                assert_eq!(want, "succeeded", "{fault:?}");
                assert_eq!(t.amount, amount as u64);
                assert_eq!(done["payment_no"].as_str(), Some(t.payment_no.as_str()));
                paid += amount;
            }
            None => {
                assert_eq!(want, "failed", "{fault:?}");
                assert!(
                    done["reason"]
                        .as_str()
                        .is_some_and(|r| r.contains("AMOUNT_LIMIT"))
                );
            }
        }
    }
    assert!(
        app.sim.calls("gettransferinfo") >= 3,
        "unclear answers were queried"
    );
    // Every transfer WeChat made is one succeeded withdrawal; nothing more was paid.
    let (_, page) = app
        .get("/api/v1/runner/withdrawals?limit=100", &runner)
        .await;
    let succeeded: Vec<String> = page["items"]
        .as_array()
        .expect("items")
        .iter()
        .filter(|w| w["status"] == "succeeded")
        .filter_map(|w| w["partner_trade_no"].as_str().map(str::to_string))
        .collect();
    let mut made: Vec<String> = app
        .sim
        .transfers()
        .into_iter()
        .map(|t| t.partner_trade_no)
        .collect();
    made.sort();
    let mut succeeded_sorted = succeeded.clone();
    succeeded_sorted.sort();
    assert_eq!(made, succeeded_sorted);
    let e = earnings(&app, &runner).await;
    assert_eq!(e["withdrawn_fen"], paid);
    assert_eq!(e["balance_fen"], 1600 - paid);
    let rid = user_id(&app, &runner).await;
    assert_eq!(ledger_sum(&app, rid).await, 1600 - paid);
    jobs.abort();
}

#[actix_web::test]
async fn idempotency_key_returns_the_first_withdrawal() {
    let app = TestApp::spawn().await;
    let customer = app.login("idem-w-customer").await;
    let runner = app.runner("idem-w-runner").await;
    completed(&app, &customer, &runner, 1000, 0).await;
    let send = |amount: i64| {
        app.client
            .post(app.url("/api/v1/runner/withdrawals"))
            .bearer_auth(&runner)
            .header("Idempotency-Key", "wd-1")
            .json(&json!({"amount_fen": amount}))
            .send()
    };
    let a: Value = send(200).await.expect("send").json().await.expect("json");
    let r = send(200).await.expect("send");
    assert_eq!(r.status(), 202);
    let b: Value = r.json().await.expect("json");
    assert_eq!(a["id"], b["id"]);
    let r = send(300).await.expect("send");
    assert_eq!(r.status(), 409);
    assert_eq!(earnings(&app, &runner).await["balance_fen"], 600);
}
