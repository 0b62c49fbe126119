//! Crash safety: SIGKILL the server in the middle of a stream of orders and WeChat
//! notifies, restart it on the same database, and check that every order WeChat
//! considers paid ends up paid here (notify retries + the reconciler), none twice.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{TempDb, mariadb_mode, redis_url};
use serde_json::{Value, json};
use test_demo::sim::{self, SimConfig, SimHandle, TransferFault};

struct Server {
    child: Child,
}

impl Server {
    fn start(env: &BTreeMap<String, String>, dir: &std::path::Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_campus-errand"))
            .args([
                "--conf-dir",
                &dir.join("no-conf").display().to_string(),
                "--log-dir",
                &dir.join("log").display().to_string(),
                "serve",
            ])
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "warn")
            .envs(env)
            .stdout(Stdio::null())
            .stderr(
                std::fs::File::options()
                    .create(true)
                    .append(true)
                    .open(dir.join("server.err"))
                    .map(Stdio::from)
                    .unwrap_or_else(|_| Stdio::null()),
            )
            .spawn()
            .expect("server binary starts");
        Self { child }
    }

    fn kill9(&mut self) {
        // Child::kill sends SIGKILL on Unix: no shutdown hooks, no flushing.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

async fn wait_ready(client: &reqwest::Client, base: &str, dir: &std::path::Path) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("{base}/readyz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let err = std::fs::read_to_string(dir.join("server.err")).unwrap_or_default();
    panic!("server at {base} never became ready: {err}");
}

async fn login(client: &reqwest::Client, base: &str, sim: &SimHandle, openid: &str) -> String {
    let code = sim.issue_code(openid);
    let v: Value = client
        .post(format!("{base}/api/v1/auth/login"))
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("login")
        .json()
        .await
        .expect("json");
    v["token"].as_str().expect("token").to_string()
}

/// Creates an order and pays it through the simulator; tolerates the server being
/// down (then the order may never be created or never get a prepay id).
async fn create_and_pay(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    sim: &SimHandle,
) -> Option<String> {
    let o: Value = client
        .post(format!("{base}/api/v1/orders"))
        .bearer_auth(token)
        .json(&json!({"kind": "express", "pickup": "A", "dropoff": "B", "fee_fen": 300}))
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    let id = o["id"].as_i64()?;
    let otn = o["out_trade_no"].as_str()?.to_string();
    let p: Value = client
        .post(format!("{base}/api/v1/orders/{id}/pay"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    sim.request_payment(&serde_json::from_value(p).ok()?).ok()?;
    Some(otn)
}

#[actix_web::test]
async fn sigkill_mid_stream_loses_no_payment() {
    let dir = tempfile::tempdir().expect("dir");
    // Retries spread over ~6 s so some land while the server is down, some after.
    let cfg = SimConfig {
        appid: format!("wxc{}", campus_impl::crypto::random_alnum(8).to_lowercase()),
        notify_retry_delays: vec![Duration::from_millis(400); 15],
        ..SimConfig::for_tests()
    };
    let sim = sim::start(cfg).await.expect("sim");
    let files = dir.path().join("sim");
    std::fs::create_dir_all(&files).expect("dir");
    sim.write_files(&files).expect("files");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _db;
    let database_url = if mariadb_mode() {
        let db = TempDb::create();
        let u = db.url();
        _db = Some(db);
        u
    } else {
        _db = None;
        format!("sqlite://{}", dir.path().join("crash.db").display())
    };
    let c = sim.config();
    let mut env: BTreeMap<String, String> = [
        ("BIND", format!("127.0.0.1:{port}")),
        ("PUBLIC_BASE_URL", base.clone()),
        // The simulator calls back on loopback.
        ("PUBLIC_BASE_URL_CHECK", "off".into()),
        ("DATABASE_URL", database_url.clone()),
        (
            "JWT_SECRET",
            "crash-test-secret-of-at-least-32-bytes".into(),
        ),
        ("FIELD_ENCRYPTION_KEY", "cd".repeat(32)),
        ("WECHAT_API_BASE", sim.base_url()),
        ("WECHAT_PAY_API_BASE", sim.base_url()),
        ("WECHAT_CA_CERT", files.join("ca.pem").display().to_string()),
        ("WECHAT_APPID", c.appid.clone()),
        ("WECHAT_SECRET", c.secret.clone()),
        ("WECHAT_MCH_ID", c.mch_id.clone()),
        ("WECHAT_PAY_KEY", c.pay_key.clone()),
        (
            "WECHAT_PAY_CLIENT_CERT",
            files.join("apiclient_cert.pem").display().to_string(),
        ),
        (
            "WECHAT_PAY_CLIENT_KEY",
            files.join("apiclient_key.pem").display().to_string(),
        ),
        ("PAY_RECONCILE_SECS", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if mariadb_mode() {
        env.insert("REDIS_URL".into(), redis_url());
    }

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut server = Server::start(&env, dir.path());
    wait_ready(&client, &base, dir.path()).await;
    let token = login(&client, &base, &sim, "crash-customer").await;

    // A stream of orders and payments from 8 concurrent users; the kill lands mid-stream.
    let stream = {
        let (client, base, token, sim) = (client.clone(), base.clone(), token.clone(), sim.clone());
        actix_web::rt::spawn(async move {
            let mut paid = Vec::new();
            let deadline = Instant::now() + Duration::from_secs(4);
            while Instant::now() < deadline {
                let batch = futures::future::join_all(
                    (0..8).map(|_| create_and_pay(&client, &base, &token, &sim)),
                )
                .await;
                paid.extend(batch.into_iter().flatten());
            }
            paid
        })
    };
    tokio::time::sleep(Duration::from_millis(1500)).await;
    server.kill9();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let mut server = Server::start(&env, dir.path());
    wait_ready(&client, &base, dir.path()).await;
    let submitted = stream.await.expect("stream");
    assert!(
        submitted.len() >= 8,
        "the stream ran ({} orders paid at WeChat)",
        submitted.len()
    );

    // Every order WeChat has as SUCCESS must become paid here, exactly once.
    let pools = campus_dal::Pools::connect(&database_url, 2).expect("pools");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let mut missing = Vec::new();
        let mut conn = pools.read.get().expect("conn");
        for otn in &submitted {
            let wechat_paid = sim.order(otn).is_some_and(|o| o.trade_state == "SUCCESS");
            assert!(wechat_paid, "simulator lost {otn}");
            let o = campus_dal::orders::find_by_out_trade_no(&mut conn, otn)
                .expect("query")
                .expect("order exists");
            if o.status != campus_dal::OrderStatus::Paid {
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
    let mut conn = pools.read.get().expect("conn");
    for otn in &submitted {
        let o = campus_dal::orders::find_by_out_trade_no(&mut conn, otn)
            .expect("query")
            .expect("order");
        let events = campus_dal::payments::for_order(&mut conn, o.id).expect("ledger");
        let paid: Vec<_> = events
            .iter()
            .filter(|e| e.event == campus_dal::LedgerEvent::Paid)
            .collect();
        assert_eq!(paid.len(), 1, "{otn} paid {} times", paid.len());
        assert_eq!(paid[0].amount_fen, 300);
    }
    server.kill9();
    println!(
        "crash test: {} orders paid at WeChat, all paid here once ({} pay notifies sent, {} orderquery calls)",
        submitted.len(),
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

/// Issue 15: SIGKILL the server during a stream of auto withdrawals (some of whose answers
/// WeChat loses after paying), restart it, and check that every transfer WeChat made is one
/// withdrawal recorded as succeeded, none paid twice, and the ledger adds up.
#[actix_web::test]
async fn sigkill_mid_withdrawals_pays_each_once() {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = SimConfig {
        appid: format!("wxw{}", campus_impl::crypto::random_alnum(8).to_lowercase()),
        ..SimConfig::for_tests()
    };
    let sim = sim::start(cfg).await.expect("sim");
    let files = dir.path().join("sim");
    std::fs::create_dir_all(&files).expect("dir");
    sim.write_files(&files).expect("files");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let base = format!("http://127.0.0.1:{port}");
    let _db;
    let database_url = if mariadb_mode() {
        let db = TempDb::create();
        let u = db.url();
        _db = Some(db);
        u
    } else {
        _db = None;
        format!("sqlite://{}", dir.path().join("crash-w.db").display())
    };
    let c = sim.config();
    let mut env: BTreeMap<String, String> = [
        ("BIND", format!("127.0.0.1:{port}")),
        ("PUBLIC_BASE_URL", base.clone()),
        // The simulator calls back over loopback http.
        ("PUBLIC_BASE_URL_CHECK", "off".into()),
        ("DATABASE_URL", database_url.clone()),
        (
            "JWT_SECRET",
            "crash-test-secret-0123456789abcdefghij".into(),
        ),
        ("FIELD_ENCRYPTION_KEY", "cd".repeat(32)),
        ("ADMIN_OPENIDS", "crash-admin".into()),
        ("WECHAT_API_BASE", sim.base_url()),
        ("WECHAT_PAY_API_BASE", sim.base_url()),
        ("WECHAT_CA_CERT", files.join("ca.pem").display().to_string()),
        ("WECHAT_APPID", c.appid.clone()),
        ("WECHAT_SECRET", c.secret.clone()),
        ("WECHAT_MCH_ID", c.mch_id.clone()),
        ("WECHAT_PAY_KEY", c.pay_key.clone()),
        (
            "WECHAT_PAY_CLIENT_CERT",
            files.join("apiclient_cert.pem").display().to_string(),
        ),
        (
            "WECHAT_PAY_CLIENT_KEY",
            files.join("apiclient_key.pem").display().to_string(),
        ),
        ("PAY_RECONCILE_SECS", "1".into()),
        ("WITHDRAW_APPROVAL", "auto".into()),
        // This test is about crashes, not WeChat's daily caps.
        ("WITHDRAW_DAILY_MAX_COUNT", "100000".into()),
        ("WITHDRAW_DAILY_MAX_FEN", "100000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if mariadb_mode() {
        env.insert("REDIS_URL".into(), redis_url());
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("client");
    let mut server = Server::start(&env, dir.path());
    wait_ready(&client, &base, dir.path()).await;

    // A runner with 1,000 yuan earned: one completed order of goods.
    let customer = login(&client, &base, &sim, "crash-w-customer").await;
    let runner = login(&client, &base, &sim, "crash-w-runner").await;
    let admin = login(&client, &base, &sim, "crash-admin").await;
    let (_, me) = call(
        &client,
        &base,
        "/api/v1/runners/apply",
        &runner,
        Some(json!({})),
    )
    .await
    .expect("apply");
    let rid = me["id"].as_i64().expect("id");
    let (s, _) = call(
        &client,
        &base,
        &format!("/api/v1/admin/runners/{rid}/approve"),
        &admin,
        Some(json!({})),
    )
    .await
    .expect("approve");
    assert_eq!(s, 200);
    let runner = login(&client, &base, &sim, "crash-w-runner").await;
    let (_, o) = call(
        &client,
        &base,
        "/api/v1/orders",
        &customer,
        Some(json!({"kind": "errand", "pickup": "A", "dropoff": "B", "fee_fen": 0, "goods_fen": 100_000})),
    )
    .await
    .expect("order");
    let oid = o["id"].as_i64().expect("id");
    let code = o["pickup_code"].as_str().expect("code").to_string();
    let (_, p) = call(
        &client,
        &base,
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
            &client,
            &base,
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
            &client,
            &base,
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
        let (client, base, runner) = (client.clone(), base.clone(), runner.clone());
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
    let mut server = Server::start(&env, dir.path());
    wait_ready(&client, &base, dir.path()).await;
    let accepted = stream.await.expect("stream");
    assert!(accepted >= 4, "the stream ran ({accepted} accepted)");

    // Wait until no withdrawal is open, then compare with what WeChat paid.
    let pools = campus_dal::Pools::connect(&database_url, 2).expect("pools");
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
