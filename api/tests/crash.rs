//! Crash safety: SIGKILL the server in the middle of a stream of orders and WeChat
//! notifies, restart it on the same database, and check that every order WeChat
//! considers paid ends up paid here (notify retries + the reconciler), none twice.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use campus_dal::{LedgerEvent, LedgerSource, OrderStatus};
use common::rig::{Rig, rig, wait_for};
use serde_json::{Value, json};
use test_demo::sim::{JsapiParams, NotifyFaults, SimConfig, TransferFault};

const FEE_FEN: i64 = 300;
const USERS: usize = 8;
/// How long each notify attempt made around the kill waits before it is sent: far longer
/// than paying at WeChat and killing the server take, so none reaches the dying server.
const NOTIFY_HOLD: Duration = Duration::from_secs(2);

/// Creates an order and asks for its payment parameters; None when the server is down
/// or dies on the way (then the order may never be created or never get a prepay id).
async fn create_order(rig: &Rig, token: &str) -> Option<(String, JsapiParams)> {
    let o: Value = rig
        .client
        .post(format!("{}/api/v1/orders", rig.base))
        .bearer_auth(token)
        .json(&json!({"kind": "express", "pickup": "A", "dropoff": "B", "fee_fen": FEE_FEN}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let id = o["id"].as_i64()?;
    let otn = o["out_trade_no"].as_str()?.to_string();
    let p: Value = rig
        .client
        .post(format!("{}/api/v1/orders/{id}/pay", rig.base))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    Some((otn, serde_json::from_value(p).ok()?))
}

/// One user ordering and paying until `stop`; the out_trade_no of each order paid at
/// WeChat.
async fn keep_ordering(
    rig: Arc<Rig>,
    token: String,
    stop: Arc<AtomicBool>,
    paid: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut mine = Vec::new();
    while !stop.load(Ordering::SeqCst) {
        let Some((otn, params)) = create_order(&rig, &token).await else {
            // The server is down: do not spin on refused connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        rig.sim
            .request_payment(&params)
            .unwrap_or_else(|e| panic!("{otn} not paid at WeChat: {e}"));
        mine.push(otn);
        paid.fetch_add(1, Ordering::SeqCst);
    }
    mine
}

#[actix_web::test]
async fn sigkill_mid_stream_loses_no_payment() {
    // Retries 400 ms apart for ~6 s: those that fail while the server is down are retried
    // after the restart.
    let sim_cfg = SimConfig {
        notify_retry_delays: vec![Duration::from_millis(400); 15],
        ..SimConfig::for_tests()
    };
    let rig = Arc::new(rig(sim_cfg, &[]).await);
    let sim = rig.sim.clone();
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        tokens.push(rig.login(&format!("crash-customer-{i}")).await);
    }
    // A stream of orders and payments from 8 concurrent users; the kill lands mid-stream.
    let stop = Arc::new(AtomicBool::new(false));
    let paid = Arc::new(AtomicUsize::new(0));
    let stream = actix_web::rt::spawn(futures::future::join_all(
        tokens
            .iter()
            .map(|t| keep_ordering(rig.clone(), t.clone(), stop.clone(), paid.clone())),
    ));
    wait_for("the stream pays orders", 60, || {
        paid.load(Ordering::SeqCst) >= 2 * USERS
    })
    .await;
    // An order per user, paid at WeChat right before the kill with its notify held back:
    // payments the dying server cannot have heard of, whatever the stream's timing. Made
    // just now, so the reconciler does not ask orderquery about them before the kill.
    let held: Vec<(String, JsapiParams)> =
        futures::future::join_all(tokens.iter().map(|t| create_order(&rig, t)))
            .await
            .into_iter()
            .map(|o| o.expect("order with a prepay id"))
            .collect();
    sim.set_notify_faults(NotifyFaults {
        delay: NOTIFY_HOLD,
        ..NotifyFaults::default()
    });
    for (otn, params) in &held {
        sim.request_payment(params)
            .unwrap_or_else(|e| panic!("{otn} not paid at WeChat: {e}"));
    }
    server.kill9();

    // What the dead server left: payments WeChat made that it had not recorded.
    let in_flight: BTreeSet<String> = {
        let pools = rig.pools();
        let mut conn = pools.read.get().expect("conn");
        sim.paid_out_trade_nos()
            .into_iter()
            .filter(|otn| {
                let o = campus_dal::orders::find_by_out_trade_no(&mut conn, otn)
                    .expect("query")
                    .unwrap_or_else(|| panic!("{otn} paid at WeChat, unknown here"));
                o.status != OrderStatus::Paid
            })
            .collect()
    };
    for (otn, _) in &held {
        assert!(
            in_flight.contains(otn),
            "{otn} was paid here before its notify was sent"
        );
    }
    sim.set_notify_faults(NotifyFaults::default());

    tokio::time::sleep(Duration::from_millis(1000)).await;
    // Only the restarted server acknowledges notifies or asks orderquery from here on.
    let at_restart = sim.all_calls();
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let paid_at_restart = paid.load(Ordering::SeqCst);
    wait_for("the stream goes on after the restart", 60, || {
        paid.load(Ordering::SeqCst) >= paid_at_restart + USERS
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    let submitted: usize = stream.await.expect("stream").iter().map(Vec::len).sum();

    // Every order WeChat has as paid must become paid here.
    let wechat_paid = sim.paid_out_trade_nos();
    assert_eq!(wechat_paid.len(), submitted + held.len());
    let pools = rig.pools();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut conn = pools.read.get().expect("conn");
        let mut missing = Vec::new();
        for otn in &wechat_paid {
            let o = campus_dal::orders::find_by_out_trade_no(&mut conn, otn)
                .expect("query")
                .unwrap_or_else(|| panic!("{otn} paid at WeChat, unknown here"));
            if o.status != OrderStatus::Paid {
                missing.push(otn.clone());
            }
        }
        if missing.is_empty() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{} orders paid at WeChat but not here: {missing:?}",
            missing.len()
        );
        drop(conn);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Paid here exactly once with WeChat's amount and transaction, and only what WeChat
    // has as paid.
    let mut conn = pools.read.get().expect("conn");
    let ours = campus_dal::orders::list(
        &mut conn,
        campus_dal::orders::Scope::All,
        None,
        None,
        1_000_000,
    )
    .expect("orders");
    let mut recovered_by: BTreeMap<String, u64> = BTreeMap::new();
    let mut paid_here = 0;
    for o in &ours {
        let at_wechat = sim
            .order(&o.out_trade_no)
            .filter(|w| matches!(w.trade_state.as_str(), "SUCCESS" | "REFUND"));
        let events = campus_dal::payments::for_order(&mut conn, o.id).expect("ledger");
        let paid: Vec<_> = events
            .iter()
            .filter(|e| e.event == LedgerEvent::Paid)
            .collect();
        let Some(w) = at_wechat else {
            assert!(
                paid.is_empty() && o.status != OrderStatus::Paid,
                "{} paid here, not at WeChat ({:?}, {} ledger payments)",
                o.out_trade_no,
                o.status,
                paid.len()
            );
            continue;
        };
        paid_here += 1;
        assert_eq!(o.status, OrderStatus::Paid, "{}", o.out_trade_no);
        assert_eq!(
            paid.len(),
            1,
            "{} paid {} times",
            o.out_trade_no,
            paid.len()
        );
        assert_eq!(paid[0].amount_fen, FEE_FEN);
        assert_eq!(w.total_fee, FEE_FEN as u64);
        assert_eq!(o.transaction_id, w.transaction_id, "{}", o.out_trade_no);
        if in_flight.contains(&o.out_trade_no) {
            assert!(
                matches!(
                    paid[0].source,
                    LedgerSource::Notify | LedgerSource::OrderQuery
                ),
                "{} recovered by {:?}",
                o.out_trade_no,
                paid[0].source
            );
            *recovered_by
                .entry(paid[0].source.as_str().to_string())
                .or_default() += 1;
        }
    }
    assert_eq!(paid_here, wechat_paid.len());

    // The orders in flight were recovered by the restarted server: each through a notify it
    // acknowledged or an orderquery it made.
    let since_restart = |api: &str| sim.calls(api) - at_restart.get(api).copied().unwrap_or(0);
    let by_notify = recovered_by.get("notify").copied().unwrap_or(0);
    let by_query = recovered_by.get("orderquery").copied().unwrap_or(0);
    assert_eq!(by_notify + by_query, in_flight.len() as u64);
    // The simulator counts an acknowledgement once it has read the answer, which may come
    // after the order shows paid here.
    wait_for("acknowledgements of the recovering notifies", 30, || {
        since_restart("pay_notify_acked") >= by_notify
    })
    .await;
    assert!(since_restart("orderquery") >= by_query);
    server.kill9();
    println!(
        "crash test: {} orders paid at WeChat, all paid here once; {} in flight at the kill, \
         recovered by {by_notify} notifies and {by_query} orderqueries; after the restart \
         {} pay notifies sent, {} acknowledged, {} orderquery calls ({} pay notifies sent, \
         {} orderquery calls in all)",
        wechat_paid.len(),
        in_flight.len(),
        since_restart("pay_notify_sent"),
        since_restart("pay_notify_acked"),
        since_restart("orderquery"),
        sim.calls("pay_notify_sent"),
        sim.calls("orderquery")
    );
}

async fn call(
    client: &reqwest::Client,
    base: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> Option<(u16, Value)> {
    let req = match body {
        Some(b) => client.post(format!("{base}{path}")).json(&b),
        None => client.get(format!("{base}{path}")),
    };
    let r = req.bearer_auth(token).send().await.ok()?;
    let status = r.status().as_u16();
    Some((status, r.json().await.unwrap_or(Value::Null)))
}

/// SIGKILL the server during a stream of auto withdrawals (some of whose answers
/// WeChat loses after paying), restart it, and check that every transfer WeChat made is one
/// withdrawal recorded as succeeded, none paid twice, and the ledger adds up.
#[actix_web::test]
async fn sigkill_mid_withdrawals_pays_each_once() {
    let rig = rig(
        SimConfig::for_tests(),
        &[
            ("ADMIN_OPENIDS", "crash-admin"),
            ("WITHDRAW_APPROVAL", "auto"),
            // This test is about crashes, not WeChat's daily caps.
            ("WITHDRAW_DAILY_MAX_COUNT", "100000"),
            ("WITHDRAW_DAILY_MAX_FEN", "100000000"),
        ],
    )
    .await;
    let (client, base, sim) = (&rig.client, rig.base.as_str(), &rig.sim);
    let mut server = rig.start_server();
    rig.wait_ready().await;

    // A runner with 1,000 yuan earned: one completed order of goods.
    let customer = rig.login("crash-w-customer").await;
    let runner = rig.login("crash-w-runner").await;
    let admin = rig.login("crash-admin").await;
    let (_, me) = call(
        client,
        base,
        "/api/v1/runners/apply",
        &runner,
        Some(json!({})),
    )
    .await
    .expect("apply");
    let rid = me["id"].as_i64().expect("id");
    let (s, _) = call(
        client,
        base,
        &format!("/api/v1/admin/runners/{rid}/approve"),
        &admin,
        Some(json!({})),
    )
    .await
    .expect("approve");
    assert_eq!(s, 200);
    let runner = rig.login("crash-w-runner").await;
    let (_, o) = call(
        client,
        base,
        "/api/v1/orders",
        &customer,
        Some(json!({"kind": "errand", "pickup": "A", "dropoff": "B", "fee_fen": 0, "goods_fen": 100_000})),
    )
    .await
    .expect("order");
    let oid = o["id"].as_i64().expect("id");
    let code = o["pickup_code"].as_str().expect("code").to_string();
    let (_, p) = call(
        client,
        base,
        &format!("/api/v1/orders/{oid}/pay"),
        &customer,
        Some(json!({})),
    )
    .await
    .expect("pay");
    sim.request_payment(&serde_json::from_value(p).expect("params"))
        .expect("paid");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, o) = call(
            client,
            base,
            &format!("/api/v1/orders/{oid}"),
            &customer,
            None,
        )
        .await
        .expect("order");
        if o["status"] == "paid" {
            break;
        }
        assert!(Instant::now() < deadline, "never paid: {o}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for (path, tok, body) in [
        ("accept", &runner, json!({})),
        ("pickup", &runner, json!({})),
        ("deliver", &runner, json!({"pickup_code": code})),
        ("confirm", &customer, json!({})),
    ] {
        let (s, b) = call(
            client,
            base,
            &format!("/api/v1/orders/{oid}/{path}"),
            tok,
            Some(body),
        )
        .await
        .expect(path);
        assert_eq!(s, 200, "{path}: {b}");
    }

    // Some answers are lost after WeChat paid.
    sim.push_transfer_faults(&[
        TransferFault::LostAnswerButPaid,
        TransferFault::SystemErrorButPaid,
        TransferFault::LostAnswerButPaid,
        TransferFault::SystemError,
    ]);
    let stream = {
        let (client, base, runner) = (client.clone(), base.to_string(), runner.clone());
        actix_web::rt::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(3);
            let mut accepted = 0;
            while Instant::now() < deadline {
                let batch = futures::future::join_all((0..4).map(|_| {
                    call(
                        &client,
                        &base,
                        "/api/v1/runner/withdrawals",
                        &runner,
                        Some(json!({"amount_fen": 100})),
                    )
                }))
                .await;
                accepted += batch.iter().filter(|r| matches!(r, Some((202, _)))).count();
                if batch.iter().all(Option::is_none) {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            accepted
        })
    };
    tokio::time::sleep(Duration::from_millis(1200)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let accepted = stream.await.expect("stream");
    assert!(accepted >= 4, "the stream ran ({accepted} accepted)");

    // Wait until no withdrawal is open, then compare with what WeChat paid.
    let pools = rig.pools();
    let deadline = Instant::now() + Duration::from_secs(60);
    let all = loop {
        let mut conn = pools.read.get().expect("conn");
        let all = campus_dal::withdrawals::list(&mut conn, None, None, None, 10_000).expect("list");
        let open = all
            .iter()
            .filter(|w| campus_dal::withdrawals::OPEN.contains(&w.status))
            .count();
        if open == 0 {
            break all;
        }
        assert!(
            Instant::now() < deadline,
            "{open} withdrawals never settled"
        );
        drop(conn);
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    let made = sim.transfers();
    let mut by_no: BTreeMap<String, u64> = BTreeMap::new();
    for t in &made {
        *by_no.entry(t.partner_trade_no.clone()).or_default() += 1;
    }
    assert!(by_no.values().all(|n| *n == 1));
    let succeeded: Vec<_> = all
        .iter()
        .filter(|w| w.status == campus_dal::WithdrawalStatus::Succeeded)
        .collect();
    assert_eq!(
        succeeded.len(),
        made.len(),
        "one succeeded withdrawal per transfer"
    );
    for w in &succeeded {
        let t = sim.transfer(&w.partner_trade_no).expect("paid at WeChat");
        assert_eq!(t.amount as i64, w.amount_fen);
        assert_eq!(w.payment_no.as_deref(), Some(t.payment_no.as_str()));
    }
    let withdrawn: i64 = succeeded.iter().map(|w| w.amount_fen).sum();
    let mut conn = pools.read.get().expect("conn");
    let balance =
        campus_dal::earnings::balance(&mut conn, campus_dal::UserId(rid)).expect("balance");
    assert_eq!(balance, 100_000 - withdrawn, "the ledger adds up");
    server.kill9();
    println!(
        "withdrawal crash test: {} withdrawals ({} succeeded, {} transfer requests, {} queries)",
        all.len(),
        succeeded.len(),
        sim.calls("transfers"),
        sim.calls("gettransferinfo")
    );
}
