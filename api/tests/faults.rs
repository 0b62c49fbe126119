//! Fault runs, driven by `bench/faults` (each test is `#[ignore]`d: they take tens of seconds,
//! start private database servers and mount file systems). Each one runs the real server
//! binary against the in-process WeChat simulator (see `common/rig.rs`), injects one kind of
//! fault under load, checks the properties below and prints what it did as a markdown table
//! (lines starting `FAULTS `, which `bench/faults` collects):
//!
//! - `kill`: SIGKILL during a stream of orders, payments and refunds, then a restart: every
//!   order WeChat has as paid is paid here once, every refund WeChat made is recorded once.
//! - `outage`: a private MariaDB (MariaDB mode) and a private Redis are killed mid-load and
//!   restarted on the same port: `/readyz` is 503 meanwhile, requests answer 503 (never 500,
//!   never hang), and the same server process serves again once they are back.
//! - `wechat`: the simulator answers late (5 s, past the server's WeChat timeout), with 5xx,
//!   or resets the connection after acting: no request waits past its bound, no payment is
//!   lost (notifies are dropped meanwhile; the reconcile job catches up afterwards).
//! - `disk_full` (SQLite): the database's file system fills up: writes answer 503
//!   `disk_full`, reads still work, nothing committed is lost, writes work again once there
//!   is room.

mod common;

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use campus_dal::{LedgerEvent, OrderStatus, RefundStatus};
use common::mariadb_mode;
use common::rig::{Rig, rig, wait_for};
use serde_json::{Value, json};
use test_demo::sim::{ApiFaults, JsapiParams, NotifyFaults, SimConfig};

const FEE_FEN: i64 = 300;

fn backend() -> &'static str {
    if mariadb_mode() {
        "MariaDB + Redis"
    } else {
        "SQLite"
    }
}

/// One scenario's table: printed whole, before its checks are asserted, so a failing run
/// still shows its figures.
struct Report {
    title: String,
    rows: Vec<(String, String)>,
    checks: Vec<(String, bool)>,
}

impl Report {
    fn new(scenario: &str) -> Self {
        Self {
            title: format!("{scenario} — {}", backend()),
            rows: Vec::new(),
            checks: Vec::new(),
        }
    }

    fn row(&mut self, what: &str, value: impl ToString) {
        self.rows.push((what.to_string(), value.to_string()));
    }

    fn check(&mut self, what: &str, ok: bool) {
        self.checks.push((what.to_string(), ok));
    }

    fn finish(self) {
        // The test harness printed `test <name> ... ` without a newline.
        println!();
        let mut out = vec![
            format!("#### {}", self.title),
            String::new(),
            "| what | figure |".into(),
            "|---|---:|".into(),
        ];
        out.extend(self.rows.iter().map(|(k, v)| format!("| {k} | {v} |")));
        out.push(String::new());
        out.extend(
            self.checks
                .iter()
                .map(|(k, ok)| format!("- {}: {k}", if *ok { "met" } else { "**FAILED**" })),
        );
        out.push(String::new());
        for line in &out {
            println!("FAULTS {line}");
        }
        let failed: Vec<&str> = self
            .checks
            .iter()
            .filter(|(_, ok)| !ok)
            .map(|(k, _)| k.as_str())
            .collect();
        assert!(failed.is_empty(), "{}: failed: {failed:?}", self.title);
    }
}

/// The server's log lines of 500s, on stderr (`FAULTS_DEBUG=1`): their causes are logged,
/// not returned.
fn server_errors(rig: &Rig) {
    if std::env::var_os("FAULTS_DEBUG").is_none() {
        return;
    }
    let mut log = String::new();
    for e in std::fs::read_dir(rig.dir.path().join("log"))
        .into_iter()
        .flatten()
        .flatten()
    {
        log.push_str(&std::fs::read_to_string(e.path()).unwrap_or_default());
    }
    for line in log.lines().filter(|l| l.contains("internal_error")) {
        eprintln!("server: {line}");
    }
}

fn ms(d: Duration) -> String {
    format!("{} ms", d.as_millis())
}

/// What one HTTP call gave: its status (None: no answer: refused, reset, timed out), the
/// error code of the body, and how long it took.
#[derive(Clone, Debug)]
struct Outcome {
    at: Instant,
    took: Duration,
    status: Option<u16>,
    code: Option<String>,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Outcome {
    let at = Instant::now();
    let r = req.send().await;
    let (status, body) = match r {
        Ok(r) => {
            let s = r.status().as_u16();
            (Some(s), r.json::<Value>().await.unwrap_or(Value::Null))
        }
        Err(_) => (None, Value::Null),
    };
    let code = body["error"]["code"].as_str().map(str::to_string);
    Outcome {
        at,
        took: at.elapsed(),
        status,
        code,
        body,
    }
}

fn order_body() -> Value {
    json!({"kind": "express", "pickup": "A", "dropoff": "B", "fee_fen": FEE_FEN})
}

/// Creates an order and asks for its payment parameters.
async fn order_and_prepay(rig: &Rig, token: &str) -> (Outcome, Option<Outcome>) {
    let o = send(
        rig.client
            .post(format!("{}/api/v1/orders", rig.base))
            .bearer_auth(token)
            .json(&order_body()),
    )
    .await;
    let Some(id) = o.body["id"].as_i64().filter(|_| o.status == Some(201)) else {
        return (o, None);
    };
    let p = send(
        rig.client
            .post(format!("{}/api/v1/orders/{id}/pay", rig.base))
            .bearer_auth(token),
    )
    .await;
    (o, Some(p))
}

fn jsapi(p: &Outcome) -> Option<JsapiParams> {
    (p.status == Some(200))
        .then(|| serde_json::from_value(p.body.clone()).ok())
        .flatten()
}

/// What the database holds against what WeChat has: orders paid at WeChat not paid here
/// (lost), orders with more than one payment in the ledger (doubled), refunds WeChat made
/// not recorded as succeeded here, refunds recorded twice or not made at WeChat.
#[derive(Debug, Default)]
struct Tally {
    orders_here: usize,
    paid_wechat: usize,
    paid_here: usize,
    lost: Vec<String>,
    doubled: Vec<String>,
    paid_not_at_wechat: Vec<String>,
    refunds_wechat: usize,
    refunds_here: usize,
    refunds_lost: Vec<String>,
    refunds_doubled: Vec<String>,
    refunds_open_here: usize,
}

impl Tally {
    fn converged(&self) -> bool {
        self.lost.is_empty()
            && self.doubled.is_empty()
            && self.paid_not_at_wechat.is_empty()
            && self.refunds_lost.is_empty()
            && self.refunds_doubled.is_empty()
            && self.refunds_open_here == 0
    }
}

fn tally(rig: &Rig, pools: &campus_dal::Pools) -> Tally {
    let mut t = Tally::default();
    let mut conn = pools.read.get().expect("conn");
    let ours = campus_dal::orders::list(
        &mut conn,
        campus_dal::orders::Scope::All,
        None,
        None,
        1_000_000,
    )
    .expect("orders");
    t.orders_here = ours.len();
    let wechat_paid = rig.sim.paid_out_trade_nos();
    t.paid_wechat = wechat_paid.len();
    let by_otn: BTreeMap<&str, &campus_dal::orders::Order> =
        ours.iter().map(|o| (o.out_trade_no.as_str(), o)).collect();
    for otn in &wechat_paid {
        match by_otn.get(otn.as_str()) {
            Some(o) if !matches!(o.status, OrderStatus::Created | OrderStatus::Closed) => {}
            _ => t.lost.push(otn.clone()),
        }
    }
    for o in &ours {
        let events = campus_dal::payments::for_order(&mut conn, o.id).expect("ledger");
        let paid = events
            .iter()
            .filter(|e| e.event == LedgerEvent::Paid)
            .count();
        if paid > 0 {
            t.paid_here += 1;
        }
        if paid > 1 {
            t.doubled.push(o.out_trade_no.clone());
        }
        let at_wechat = rig.sim.order(&o.out_trade_no);
        if paid > 0
            && !at_wechat
                .as_ref()
                .is_some_and(|w| matches!(w.trade_state.as_str(), "SUCCESS" | "REFUND"))
        {
            t.paid_not_at_wechat.push(o.out_trade_no.clone());
        }
        let here = campus_dal::refunds::for_order(&mut conn, o.id).expect("refunds");
        t.refunds_open_here += here
            .iter()
            .filter(|r| matches!(r.status, RefundStatus::Requested | RefundStatus::Processing))
            .count();
        let refunded_events = events
            .iter()
            .filter(|e| e.event == LedgerEvent::Refunded)
            .count();
        let succeeded_here: Vec<_> = here
            .iter()
            .filter(|r| r.status == RefundStatus::Success)
            .collect();
        t.refunds_here += succeeded_here.len();
        if refunded_events > succeeded_here.len() {
            t.refunds_doubled.push(o.out_trade_no.clone());
        }
        let made: Vec<_> = at_wechat
            .map(|w| w.refunds)
            .unwrap_or_default()
            .into_iter()
            .filter(|r| r.status == "SUCCESS")
            .collect();
        t.refunds_wechat += made.len();
        for r in &made {
            let recorded = succeeded_here
                .iter()
                .filter(|h| {
                    h.out_refund_no == r.out_refund_no && h.refund_fen as u64 == r.refund_fee
                })
                .count();
            if recorded == 0 {
                t.refunds_lost.push(r.out_refund_no.clone());
            }
        }
        for h in &succeeded_here {
            if !made.iter().any(|r| r.out_refund_no == h.out_refund_no) {
                t.refunds_doubled.push(h.out_refund_no.clone());
            }
        }
    }
    t
}

/// Polls the tally until it converges; returns it, how long until every payment was
/// recorded, and how long until refunds were too.
async fn converge(rig: &Rig, secs: u64) -> (Tally, Option<Duration>, Duration) {
    let pools = rig.pools();
    let start = Instant::now();
    let mut payments = None;
    loop {
        let t = tally(rig, &pools);
        if payments.is_none() && t.lost.is_empty() && t.paid_not_at_wechat.is_empty() {
            payments = Some(start.elapsed());
        }
        if t.converged() || start.elapsed() > Duration::from_secs(secs) {
            return (t, payments, start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn money_rows(r: &mut Report, t: &Tally) {
    r.row("orders created here", t.orders_here);
    r.row("orders paid at WeChat", t.paid_wechat);
    r.row("orders paid here", t.paid_here);
    r.row("paid at WeChat, not here (lost)", t.lost.len());
    r.row("paid more than once here (doubled)", t.doubled.len());
    r.row("refunds made by WeChat", t.refunds_wechat);
    r.row("refunds recorded here", t.refunds_here);
    r.row("refunds lost", t.refunds_lost.len());
    r.row("refunds doubled", t.refunds_doubled.len());
    r.check(
        &format!(
            "every order paid at WeChat is paid here once ({:?} lost, {:?} doubled, {:?} paid only here)",
            t.lost, t.doubled, t.paid_not_at_wechat
        ),
        t.lost.is_empty() && t.doubled.is_empty() && t.paid_not_at_wechat.is_empty(),
    );
    r.check(
        &format!(
            "every refund WeChat made is recorded once ({:?} lost, {:?} doubled, {} still open)",
            t.refunds_lost, t.refunds_doubled, t.refunds_open_here
        ),
        t.refunds_lost.is_empty() && t.refunds_doubled.is_empty() && t.refunds_open_here == 0,
    );
}

// ---------------------------------------------------------------------------------------
// kill

/// One customer until `stop`: order, prepay, pay at WeChat; every other paid order is
/// cancelled (a full refund) once it shows paid here.
async fn customer_stream(
    rig: Arc<Rig>,
    token: String,
    stop: Arc<AtomicBool>,
    paid: Arc<AtomicUsize>,
    cancels: Arc<AtomicUsize>,
) {
    let mut to_cancel: Vec<i64> = Vec::new();
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        let (o, p) = order_and_prepay(&rig, &token).await;
        let Some(params) = p.as_ref().and_then(jsapi) else {
            // The server is down: do not spin on refused connections.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        if rig.sim.request_payment(&params).is_ok() {
            paid.fetch_add(1, Ordering::SeqCst);
            n += 1;
            if n.is_multiple_of(2)
                && let Some(id) = o.body["id"].as_i64()
            {
                to_cancel.push(id);
            }
        }
        // Cancel what has shown paid here by now; the rest waits for the next turn.
        let mut keep = Vec::new();
        for id in to_cancel.drain(..) {
            let c = send(
                rig.client
                    .post(format!("{}/api/v1/orders/{id}/cancel", rig.base))
                    .bearer_auth(&token),
            )
            .await;
            match c.body["status"].as_str() {
                Some("refunding" | "refunded") => {
                    cancels.fetch_add(1, Ordering::SeqCst);
                }
                _ if c.code.as_deref() == Some("invalid_transition") => {
                    // Not paid here yet, or already refunding after a lost answer.
                    let g = send(
                        rig.client
                            .get(format!("{}/api/v1/orders/{id}", rig.base))
                            .bearer_auth(&token),
                    )
                    .await;
                    if g.body["status"] == "created" {
                        keep.push(id);
                    }
                }
                _ => keep.push(id),
            }
        }
        to_cancel = keep;
    }
}

#[actix_web::test]
#[ignore = "a fault run: bench/faults"]
async fn kill() {
    let sim_cfg = SimConfig {
        // ~6 s of retries: those that fail while the server is down land after the restart.
        notify_retry_delays: vec![Duration::from_millis(400); 15],
        ..SimConfig::for_tests()
    };
    let rig = Arc::new(rig(sim_cfg, &[]).await);
    let mut server = rig.start_server();
    rig.wait_ready().await;
    const USERS: usize = 6;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        tokens.push(rig.login(&format!("faults-kill-{i}")).await);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let paid = Arc::new(AtomicUsize::new(0));
    let cancels = Arc::new(AtomicUsize::new(0));
    let stream = actix_web::rt::spawn(futures::future::join_all(tokens.iter().map(|t| {
        customer_stream(
            rig.clone(),
            t.clone(),
            stop.clone(),
            paid.clone(),
            cancels.clone(),
        )
    })));
    wait_for("the stream pays and refunds", 60, || {
        paid.load(Ordering::SeqCst) >= 4 * USERS && cancels.load(Ordering::SeqCst) >= USERS
    })
    .await;

    // Work the dying server cannot have finished, whatever the stream's timing: a payment
    // per user whose notify is held back, and a refund per user whose notify is held back.
    let held: Vec<(Outcome, Option<Outcome>)> =
        futures::future::join_all(tokens.iter().map(|t| order_and_prepay(&rig, t))).await;
    rig.sim.set_notify_faults(NotifyFaults {
        delay: Duration::from_secs(3),
        ..NotifyFaults::default()
    });
    let mut held_refunds = 0;
    for (t, (o, p)) in tokens.iter().zip(&held) {
        if let Some(params) = p.as_ref().and_then(jsapi) {
            rig.sim.request_payment(&params).expect("paid at WeChat");
        }
        let _ = o;
        // An order of this user that is paid here: cancel it now.
        let mine = send(
            rig.client
                .get(format!(
                    "{}/api/v1/orders?mine=customer&status=paid",
                    rig.base
                ))
                .bearer_auth(t),
        )
        .await;
        if let Some(id) = mine.body["items"][0]["id"].as_i64() {
            let c = send(
                rig.client
                    .post(format!("{}/api/v1/orders/{id}/cancel", rig.base))
                    .bearer_auth(t),
            )
            .await;
            if c.status == Some(200) {
                held_refunds += 1;
            }
        }
    }
    let killed_at = Instant::now();
    server.kill9();
    let at_kill = tally(&rig, &rig.pools());
    rig.sim.set_notify_faults(NotifyFaults::default());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let down = killed_at.elapsed();
    let paid_at_restart = paid.load(Ordering::SeqCst);
    wait_for("the stream goes on after the restart", 60, || {
        paid.load(Ordering::SeqCst) >= paid_at_restart + 2 * USERS
    })
    .await;
    stop.store(true, Ordering::SeqCst);
    stream.await.expect("stream");
    let (t, _, took) = converge(&rig, 90).await;
    server.kill9();

    let mut r = Report::new("SIGKILL mid-stream of orders, payments and refunds");
    r.row("customers", USERS);
    r.row(
        "cancels of paid orders (refunds asked)",
        cancels.load(Ordering::SeqCst) + held_refunds,
    );
    r.row(
        "paid at WeChat, not yet here, at the kill",
        at_kill.lost.len(),
    );
    r.row(
        "refunds made by WeChat, not yet recorded, or open here, at the kill",
        at_kill.refunds_lost.len() + at_kill.refunds_open_here,
    );
    r.row("server down (kill to ready again)", ms(down));
    r.row("settled after the stream ended", ms(took));
    money_rows(&mut r, &t);
    r.check(
        &format!(
            "payments in flight at the kill ({} ≥ {USERS})",
            at_kill.lost.len()
        ),
        at_kill.lost.len() >= USERS,
    );
    r.finish();
}

// ---------------------------------------------------------------------------------------
// outage

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

/// A database server of this run's own (the shared ones on 3306 and 6379 serve other
/// tests): killed with SIGKILL and started again on the same port and data.
struct Private {
    name: &'static str,
    cmd: Vec<String>,
    log: std::path::PathBuf,
    child: Option<Child>,
}

impl Private {
    fn start(&mut self) {
        let log = std::fs::File::options()
            .create(true)
            .append(true)
            .open(&self.log)
            .expect("log");
        let child = Command::new(&self.cmd[0])
            .args(&self.cmd[1..])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("{} does not start ({}): {e}", self.name, self.cmd[0]));
        self.child = Some(child);
    }

    fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Waits until `probe` succeeds (the server answers).
    fn wait(&self, probe: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !probe() {
            assert!(
                Instant::now() < deadline,
                "{} never answered: {}",
                self.name,
                std::fs::read_to_string(&self.log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Private {
    /// [`Private::wait`] without holding up the load on this thread.
    async fn wait_async(&self, probe: impl Fn() -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !probe() {
            assert!(
                Instant::now() < deadline,
                "{} never answered again",
                self.name
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

impl Drop for Private {
    fn drop(&mut self) {
        self.kill9();
    }
}

fn private_redis(dir: &std::path::Path) -> (Private, String) {
    let port = free_port();
    let mut p = Private {
        name: "redis-server",
        cmd: [
            "redis-server",
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir.display().to_string(),
        ]
        .map(String::from)
        .to_vec(),
        log: dir.join("redis.log"),
        child: None,
    };
    p.start();
    let ping = move || {
        Command::new("redis-cli")
            .args(["-p", &port.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    };
    p.wait(ping);
    (p, format!("redis://127.0.0.1:{port}/0"))
}

fn mariadb_probe(port: u16) -> bool {
    Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "-e",
            "SELECT 1",
        ])
        .output()
        .is_ok_and(|o| o.status.success())
}

fn private_mariadb(dir: &std::path::Path) -> (Private, String) {
    let data = dir.join("mariadb");
    std::fs::create_dir_all(&data).expect("dir");
    let user = if is_root() { "root" } else { "" };
    let mut install = Command::new("mariadb-install-db");
    install.args([
        "--no-defaults",
        &format!("--datadir={}", data.display()),
        "--auth-root-authentication-method=normal",
        "--skip-test-db",
    ]);
    if !user.is_empty() {
        install.arg(format!("--user={user}"));
    }
    let out = install.output().expect("mariadb-install-db runs");
    assert!(
        out.status.success(),
        "mariadb-install-db: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = free_port();
    let mut cmd: Vec<String> = [
        "mariadbd".to_string(),
        "--no-defaults".into(),
        format!("--datadir={}", data.display()),
        format!("--port={port}"),
        "--bind-address=127.0.0.1".into(),
        format!("--socket={}", dir.join("mariadb.sock").display()),
        format!("--pid-file={}", dir.join("mariadb.pid").display()),
        // Any user, no password: a throwaway server on loopback.
        "--skip-grant-tables".into(),
        "--skip-name-resolve".into(),
        "--innodb-buffer-pool-size=64M".into(),
        "--innodb-log-file-size=16M".into(),
    ]
    .to_vec();
    if !user.is_empty() {
        cmd.push(format!("--user={user}"));
    }
    let mut p = Private {
        name: "mariadbd",
        cmd,
        log: dir.join("mariadb.err"),
        child: None,
    };
    p.start();
    p.wait(|| mariadb_probe(port));
    let out = Command::new("mariadb")
        .args([
            "-h127.0.0.1",
            &format!("-P{port}"),
            "-uroot",
            "-e",
            "CREATE DATABASE campus CHARACTER SET utf8mb4",
        ])
        .output()
        .expect("mariadb client");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (p, format!("mysql://root@127.0.0.1:{port}/campus"))
}

/// Requests during an outage, and the readiness answers.
#[derive(Default)]
struct Log {
    api: Vec<(&'static str, Outcome)>,
    ready: Vec<Outcome>,
}

async fn load(rig: Arc<Rig>, token: String, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    let mut n = 0u64;
    while !stop.load(Ordering::SeqCst) {
        n += 1;
        let me = send(
            rig.client
                .get(format!("{}/api/v1/me", rig.base))
                .bearer_auth(&token),
        )
        .await;
        // With an Idempotency-Key the create goes through the cache as well.
        let create = send(
            rig.client
                .post(format!("{}/api/v1/orders", rig.base))
                .bearer_auth(&token)
                .header(
                    "Idempotency-Key",
                    format!("k-{}-{n}", campus_impl::crypto::random_alnum(12)),
                )
                .json(&order_body()),
        )
        .await;
        log.lock()
            .unwrap_or_else(|p| p.into_inner())
            .api
            .extend([("GET /api/v1/me", me), ("POST /api/v1/orders", create)]);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn readiness(rig: Arc<Rig>, stop: Arc<AtomicBool>, log: Arc<Mutex<Log>>) {
    while !stop.load(Ordering::SeqCst) {
        let o = send(rig.client.get(format!("{}/readyz", rig.base))).await;
        log.lock().unwrap_or_else(|p| p.into_inner()).ready.push(o);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kills `p` for `secs`, restarts it, and checks what the server answered meanwhile.
async fn outage(
    r: &mut Report,
    log: &Arc<Mutex<Log>>,
    p: &mut Private,
    probe: impl Fn() -> bool,
    secs: u64,
) {
    let name = p.name;
    let killed = Instant::now();
    p.kill9();
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let restarted = Instant::now();
    p.start();
    p.wait_async(probe).await;
    let up = Instant::now();
    // Service resumes by itself: the same server process answers again.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut back = None;
    while Instant::now() < deadline {
        let (ready_again, api_again) = {
            let l = log.lock().unwrap_or_else(|p| p.into_inner());
            let ready_again = l.ready.iter().any(|o| o.at > up && o.status == Some(200));
            let api_again = l
                .api
                .iter()
                .any(|(e, o)| *e == "POST /api/v1/orders" && o.at > up && o.status == Some(201));
            (ready_again, api_again)
        };
        if ready_again && api_again {
            back = Some(up.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    // The requests made and answered while the dependency was surely gone: sent from a
    // second after the kill (requests already past their last query finish normally),
    // answered before the restart (one still waiting then may be served after it).
    let from = killed + Duration::from_secs(1);
    let inside = |o: &Outcome| o.at >= from && o.at + o.took < restarted;
    let during: Vec<&(&str, Outcome)> = l.api.iter().filter(|(_, o)| inside(o)).collect();
    let ready: Vec<&Outcome> = l.ready.iter().filter(|o| inside(o)).collect();
    if std::env::var_os("FAULTS_DEBUG").is_some() {
        for (e, o) in l.api.iter().filter(|(_, o)| o.at + o.took > killed) {
            eprintln!(
                "{e} at {:?} after the kill: {:?} {:?} in {:?}",
                o.at.checked_duration_since(killed),
                o.status,
                o.code,
                o.took
            );
        }
        for o in &l.ready {
            eprintln!(
                "readyz at {:?} after the kill: {:?} in {:?}",
                o.at.checked_duration_since(killed),
                o.status,
                o.took
            );
        }
    }
    let n503 = during
        .iter()
        .filter(|(_, o)| o.status == Some(503) && o.code.is_some())
        .count();
    let ok = during
        .iter()
        .filter(|(_, o)| o.status.is_some_and(|s| (200..300).contains(&s)))
        .count();
    let mut bad: Vec<String> = during
        .iter()
        .filter(|(_, o)| {
            !(o.status.is_some_and(|s| (200..300).contains(&s))
                || (o.status == Some(503) && o.code.is_some()))
        })
        .map(|(e, o)| format!("{e}: {:?} {:?}", o.status, o.code))
        .collect();
    // Sent during the outage and never answered (the client gives up after 10 s): a hang.
    bad.extend(
        l.api
            .iter()
            .filter(|(_, o)| o.at >= from && o.at < restarted && o.status.is_none())
            .map(|(e, o)| format!("{e}: no answer after {}", ms(o.took))),
    );
    let codes: std::collections::BTreeSet<&str> = during
        .iter()
        .filter_map(|(_, o)| o.code.as_deref())
        .collect();
    let max = l
        .api
        .iter()
        .filter(|(_, o)| o.at >= from && o.at < restarted)
        .map(|(_, o)| o.took)
        .max()
        .unwrap_or_default();
    let ready_max = ready.iter().map(|o| o.took).max().unwrap_or_default();
    let ready_503 = ready.iter().filter(|o| o.status == Some(503)).count();
    r.row(&format!("{name} down"), ms(restarted - killed));
    r.row(
        &format!("requests during the {name} outage: 503 / 2xx / other"),
        format!("{n503} / {ok} / {}", bad.len()),
    );
    r.row(
        &format!("error codes during the {name} outage"),
        codes.into_iter().collect::<Vec<_>>().join(", "),
    );
    r.row(&format!("max latency during the {name} outage"), ms(max));
    r.row(
        &format!("/readyz during the {name} outage: 503s (max latency)"),
        format!("{ready_503} of {} ({})", ready.len(), ms(ready_max)),
    );
    r.row(
        &format!("serving again after {name} is back"),
        back.map(ms).unwrap_or_else(|| "never".into()),
    );
    r.check(
        &format!("{name} outage: every request answered 2xx or 503 with an error code ({bad:?})"),
        bad.is_empty() && n503 > 0,
    );
    // The pool's checkout timeout (5 s) bounds the wait for a database that is down.
    r.check(
        &format!("{name} outage: no request took over 6 s ({})", ms(max)),
        max <= Duration::from_secs(6),
    );
    r.check(
        &format!("{name} outage: /readyz said 503 throughout"),
        !ready.is_empty() && ready_503 == ready.len(),
    );
    r.check(
        &format!("{name} back: the same server serves again within 30 s"),
        back.is_some(),
    );
}

#[actix_web::test]
#[ignore = "a fault run: bench/faults"]
async fn outages() {
    let dir = tempfile::tempdir().expect("dir");
    let (mut redis, redis_url) = private_redis(dir.path());
    let mut mariadb = mariadb_mode().then(|| private_mariadb(dir.path()));
    let mut env: Vec<(&str, &str)> = vec![
        ("REDIS_URL", redis_url.as_str()),
        // Limits on, but far above this load: each create then spends a token in Redis, as
        // in production, so a Redis outage reaches the API and not only /readyz.
        ("RATE_LIMITS", "order_user=1000000/1s"),
    ];
    let db_url = mariadb.as_ref().map(|(_, u)| u.clone());
    if let Some(u) = &db_url {
        env.push(("DATABASE_URL", u.as_str()));
    }
    let rig = Arc::new(rig(SimConfig::for_tests(), &env).await);
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let tokens = vec![
        rig.login("faults-outage-0").await,
        rig.login("faults-outage-1").await,
        rig.login("faults-outage-2").await,
    ];
    let stop = Arc::new(AtomicBool::new(false));
    let log = Arc::new(Mutex::new(Log::default()));
    let mut tasks = vec![actix_web::rt::spawn(readiness(
        rig.clone(),
        stop.clone(),
        log.clone(),
    ))];
    for t in &tokens {
        tasks.push(actix_web::rt::spawn(load(
            rig.clone(),
            t.clone(),
            stop.clone(),
            log.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let mut r = Report::new(if mariadb_mode() {
        "MariaDB and Redis killed mid-load and restarted"
    } else {
        "Redis killed mid-load and restarted (the database is the SQLite file)"
    });
    if let Some((m, url)) = mariadb.as_mut() {
        let port: u16 = url
            .rsplit(':')
            .next()
            .and_then(|p| p.split('/').next())
            .and_then(|p| p.parse().ok())
            .expect("port");
        // Longer than Redis's: with the pool's 5 s checkout wait, a request must be sent
        // and answered inside the outage to show what it answers.
        outage(&mut r, &log, m, move || mariadb_probe(port), 12).await;
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let rport: u16 = redis_url
        .rsplit(':')
        .next()
        .and_then(|p| p.split('/').next())
        .and_then(|p| p.parse().ok())
        .expect("port");
    let probe = move || {
        Command::new("redis-cli")
            .args(["-p", &rport.to_string(), "ping"])
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains("PONG"))
    };
    outage(&mut r, &log, &mut redis, probe, 8).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("task");
    }
    let l = log.lock().unwrap_or_else(|p| p.into_inner());
    let total = l.api.len();
    let e500 = l
        .api
        .iter()
        .filter(|(_, o)| o.status.is_some_and(|s| s >= 500 && s != 503))
        .count();
    let created = l.api.iter().filter(|(_, o)| o.status == Some(201)).count();
    drop(l);
    server_errors(&rig);
    let alive = server.child.try_wait().ok().flatten().is_none();
    server.kill9();
    r.row("requests in the run", total);
    r.row("orders created (201)", created);
    r.row("answers 5xx other than 503", e500);
    r.check("no 5xx other than 503 in the whole run", e500 == 0);
    r.check("the server process was never restarted", alive);
    let pools = rig.pools();
    let mut conn = pools.read.get().expect("conn");
    let here = campus_dal::orders::list(
        &mut conn,
        campus_dal::orders::Scope::All,
        None,
        None,
        1_000_000,
    )
    .expect("orders")
    .len();
    r.row("orders in the database", here);
    r.check(
        &format!("every 201 is in the database ({created} answered, {here} stored)"),
        here >= created,
    );
    r.finish();
}

// ---------------------------------------------------------------------------------------
// wechat

/// The server's timeout of each WeChat call in this run.
const WECHAT_TIMEOUT_SECS: u64 = 2;

#[actix_web::test]
#[ignore = "a fault run: bench/faults"]
async fn wechat_slow_and_failing() {
    let timeout = WECHAT_TIMEOUT_SECS.to_string();
    let rig = Arc::new(rig(SimConfig::for_tests(), &[("WECHAT_TIMEOUT_SECS", &timeout)]).await);
    let mut server = rig.start_server();
    rig.wait_ready().await;
    const USERS: usize = 4;
    let mut tokens = Vec::new();
    for i in 0..USERS {
        tokens.push(rig.login(&format!("faults-wechat-{i}")).await);
    }
    // Paid before the faults, cancelled (refunded in full) during them.
    let mut paid_before: Vec<Vec<i64>> = Vec::new();
    for t in &tokens {
        let mut mine = Vec::new();
        for _ in 0..3 {
            let (o, p) = order_and_prepay(&rig, t).await;
            let params = p.as_ref().and_then(jsapi).expect("prepay");
            rig.sim.request_payment(&params).expect("paid");
            mine.push(o.body["id"].as_i64().expect("id"));
        }
        for id in &mine {
            let deadline = Instant::now() + Duration::from_secs(15);
            while get_order(&rig, t, *id).await.body["status"] != "paid" {
                assert!(Instant::now() < deadline, "order {id} never paid");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        paid_before.push(mine);
    }
    let faults = ApiFaults {
        delay: Duration::from_secs(5),
        delay_percent: 25,
        error_percent: 20,
        reset_percent: 20,
    };
    // Every payment made from here on has all its notifies dropped: only orderquery (the
    // reconcile job) can tell the server.
    rig.sim.set_notify_faults(NotifyFaults {
        drop_first: 1_000_000,
        ..NotifyFaults::default()
    });
    rig.sim.set_api_faults(faults.clone());
    let faults_on = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let outcomes: Arc<Mutex<Vec<(&'static str, Outcome)>>> = Arc::default();
    let paid_during = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for ((i, t), mut to_cancel) in tokens.iter().enumerate().zip(paid_before) {
        let (rig, t, stop, outcomes, paid_during) = (
            rig.clone(),
            t.clone(),
            stop.clone(),
            outcomes.clone(),
            paid_during.clone(),
        );
        tasks.push(actix_web::rt::spawn(async move {
            let mut n = 0;
            while !stop.load(Ordering::SeqCst) {
                n += 1;
                // A cancel of a paid order calls WeChat's refund; tried again after an
                // error until the order shows it is refunding.
                if let Some(id) = to_cancel.last().copied() {
                    let c = send(
                        rig.client
                            .post(format!("{}/api/v1/orders/{id}/cancel", rig.base))
                            .bearer_auth(&t),
                    )
                    .await;
                    let done = c.status == Some(200)
                        || get_order(&rig, &t, id).await.body["status"] != "paid";
                    if done {
                        to_cancel.pop();
                    }
                    outcomes
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(("POST /api/v1/orders/{id}/cancel", c));
                }
                let (o, mut p) = order_and_prepay(&rig, &t).await;
                let id = o.body["id"].as_i64();
                let mut got = vec![("POST /api/v1/orders", o)];
                // As the mini-program would: the payment button is tapped again (up to
                // three times) after an error.
                for attempt in 0..3 {
                    let Some(this) = p.take() else { break };
                    let params = jsapi(&this);
                    got.push(("POST /api/v1/orders/{id}/pay", this));
                    if let Some(params) = params {
                        if rig.sim.request_payment(&params).is_ok() {
                            paid_during.fetch_add(1, Ordering::SeqCst);
                        }
                        break;
                    }
                    if let (Some(id), true) = (id, attempt < 2) {
                        p = Some(
                            send(
                                rig.client
                                    .post(format!("{}/api/v1/orders/{id}/pay", rig.base))
                                    .bearer_auth(&t),
                            )
                            .await,
                        );
                    }
                }
                // A login calls jscode2session.
                if n % 3 == 0 {
                    let code = rig.sim.issue_code(&format!("faults-wechat-{i}"));
                    got.push((
                        "POST /api/v1/auth/login",
                        send(
                            rig.client
                                .post(format!("{}/api/v1/auth/login", rig.base))
                                .json(&json!({"code": code})),
                        )
                        .await,
                    ));
                }
                outcomes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .extend(got);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(15)).await;
    stop.store(true, Ordering::SeqCst);
    for t in tasks {
        t.await.expect("task");
    }
    let faulted_calls: u64 = ["api_fault_error", "api_fault_reset", "api_fault_delayed"]
        .iter()
        .map(|c| rig.sim.calls(c))
        .sum();
    rig.sim.set_api_faults(ApiFaults::default());
    rig.sim.set_notify_faults(NotifyFaults::default());
    let faults_off = Instant::now();
    let (t, payments_caught_up, catch_up) = converge(&rig, 120).await;
    server_errors(&rig);
    server.kill9();

    let o = outcomes.lock().unwrap_or_else(|p| p.into_inner());
    let mut r = Report::new("WeChat slow (5 s), answering 5xx, resetting connections");
    r.row(
        "faults",
        format!(
            "{} s: of WeChat's answers {}% {} s late, {}% 503 (not carried out), {}% reset after acting; every notify dropped",
            (faults_off - faults_on).as_secs(),
            faults.delay_percent,
            faults.delay.as_secs(),
            faults.error_percent,
            faults.reset_percent
        ),
    );
    r.row(
        "server's WeChat timeout",
        format!("{WECHAT_TIMEOUT_SECS} s"),
    );
    r.row("WeChat calls faulted", faulted_calls);
    // Each endpoint's bound: the timeout of each WeChat call it makes in turn, and a second
    // for the rest of the request. A cancel of a paid order calls `refund` and, when that
    // answer is unclear, `refundquery` at once; the others make one call at most.
    for (e, calls) in [
        ("POST /api/v1/orders", 1),
        ("POST /api/v1/orders/{id}/pay", 1),
        ("POST /api/v1/orders/{id}/cancel", 2),
        ("POST /api/v1/auth/login", 1),
    ] {
        let bound = Duration::from_secs(calls * WECHAT_TIMEOUT_SECS + 1);
        let mine: Vec<&Outcome> = o.iter().filter(|(k, _)| *k == e).map(|(_, v)| v).collect();
        let mut by: BTreeMap<String, usize> = BTreeMap::new();
        for x in &mine {
            let k = match (x.status, x.code.as_deref()) {
                (Some(s), Some(c)) => format!("{s} {c}"),
                (Some(s), None) => s.to_string(),
                (None, _) => "no answer".into(),
            };
            *by.entry(k).or_default() += 1;
        }
        let max = mine.iter().map(|x| x.took).max().unwrap_or_default();
        r.row(
            &format!("`{e}` answers"),
            by.iter()
                .map(|(k, n)| format!("{n}× {k}"))
                .collect::<Vec<_>>()
                .join(", "),
        );
        r.row(&format!("`{e}` max latency"), ms(max));
        let bad: Vec<&String> = by
            .keys()
            .filter(|k| !(k.starts_with('2') || k.starts_with("502 ") || k.starts_with("503 ")))
            .collect();
        r.check(
            &format!("`{e}`: every answer 2xx, or 502/503 with an error code ({bad:?})"),
            bad.is_empty() && !mine.is_empty(),
        );
        r.check(
            &format!("`{e}`: none waited past {} ({})", ms(bound), ms(max)),
            max <= bound,
        );
    }
    r.row(
        "orders paid at WeChat during the faults",
        paid_during.load(Ordering::SeqCst),
    );
    r.row(
        "every payment recorded, after the faults stopped",
        payments_caught_up.map(ms).unwrap_or_else(|| "never".into()),
    );
    r.row(
        "every refund settled too, after the faults stopped",
        ms(catch_up),
    );
    r.row("orderquery calls in all", rig.sim.calls("orderquery"));
    money_rows(&mut r, &t);
    r.check(
        "payments were made during the faults",
        paid_during.load(Ordering::SeqCst) > 0,
    );
    r.finish();
}

// ---------------------------------------------------------------------------------------
// disk full

/// A small tmpfs, unmounted when dropped.
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(at: std::path::PathBuf, size: &str) -> Self {
        std::fs::create_dir_all(&at).expect("dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&at)
            .output()
            .expect("mount runs");
        assert!(
            out.status.success(),
            "mount -t tmpfs: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self(at)
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).output();
    }
}

/// Writes `path` until the file system has no room left; returns the bytes written.
fn fill(path: &std::path::Path) -> u64 {
    use std::io::Write as _;
    let mut f = std::fs::File::create(path).expect("filler");
    let mut total = 0u64;
    for chunk in [1 << 20, 4096, 512] {
        let buf = vec![0x5a_u8; chunk];
        while f.write_all(&buf).is_ok() {
            total += chunk as u64;
        }
    }
    let _ = f.sync_all();
    total
}

async fn get_order(rig: &Rig, token: &str, id: i64) -> Outcome {
    send(
        rig.client
            .get(format!("{}/api/v1/orders/{id}", rig.base))
            .bearer_auth(token),
    )
    .await
}

#[actix_web::test]
#[ignore = "a fault run: bench/faults"]
async fn disk_full() {
    let mut r = Report::new("the disk under the SQLite file fills up");
    if mariadb_mode() {
        // MariaDB's files are the database server's business; this is about the embedded
        // database the server writes itself.
        r.row(
            "run",
            "SQLite only (the MariaDB backend's files are mariadbd's)",
        );
        r.finish();
        return;
    }
    assert!(
        is_root(),
        "the disk-full run mounts a tmpfs: run it as root (bench/faults in CI is)"
    );
    let dir = tempfile::tempdir().expect("dir");
    let mnt = Tmpfs::mount(dir.path().join("data"), "32m");
    let db = mnt.0.join("campus.db");
    let url = format!("sqlite://{}", db.display());
    let sim_cfg = SimConfig {
        // Retries over ~10 s: some land while the disk is full, later ones after.
        notify_retry_delays: vec![Duration::from_millis(700); 15],
        ..SimConfig::for_tests()
    };
    let rig = rig(sim_cfg, &[("DATABASE_URL", url.as_str())]).await;
    let mut server = rig.start_server();
    rig.wait_ready().await;
    let token = rig.login("faults-disk").await;

    // Committed before: 20 orders, 10 of them paid.
    let mut before: Vec<(i64, bool)> = Vec::new();
    for i in 0..20 {
        let (o, p) = order_and_prepay(&rig, &token).await;
        let id = o.body["id"].as_i64().expect("order");
        let pay = i % 2 == 0;
        if pay {
            let params = p.as_ref().and_then(jsapi).expect("prepay");
            rig.sim.request_payment(&params).expect("paid");
        }
        before.push((id, pay));
    }
    for (id, pay) in &before {
        if *pay {
            let deadline = Instant::now() + Duration::from_secs(15);
            while get_order(&rig, &token, *id).await.body["status"] != "paid" {
                assert!(Instant::now() < deadline, "order {id} never paid");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    // An order with a prepay id, paid at WeChat while the disk is full.
    let (o, p) = order_and_prepay(&rig, &token).await;
    let late_id = o.body["id"].as_i64().expect("order");
    let late_params = p.as_ref().and_then(jsapi).expect("prepay");

    let filled = fill(&mnt.0.join("filler"));
    let full_at = Instant::now();
    rig.sim
        .request_payment(&late_params)
        .expect("paid at WeChat");
    let mut writes = Vec::new();
    let mut accepted: Vec<i64> = Vec::new();
    for _ in 0..40 {
        let w = send(
            rig.client
                .post(format!("{}/api/v1/orders", rig.base))
                .bearer_auth(&token)
                .json(&order_body()),
        )
        .await;
        if let (Some(201), Some(id)) = (w.status, w.body["id"].as_i64()) {
            accepted.push(id);
        }
        writes.push(w);
    }
    let mut reads = Vec::new();
    for (id, _) in &before {
        reads.push(get_order(&rig, &token, *id).await);
    }
    let ready_full = send(rig.client.get(format!("{}/readyz", rig.base))).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let full_for = full_at.elapsed();

    std::fs::remove_file(mnt.0.join("filler")).expect("filler removed");
    let freed = Instant::now();
    let mut recovered = None;
    while freed.elapsed() < Duration::from_secs(30) {
        let w = send(
            rig.client
                .post(format!("{}/api/v1/orders", rig.base))
                .bearer_auth(&token)
                .json(&order_body()),
        )
        .await;
        if w.status == Some(201) {
            recovered = Some(freed.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // The payment made while the disk was full lands (notify retry or orderquery).
    let deadline = Instant::now() + Duration::from_secs(60);
    let late_paid = loop {
        let g = get_order(&rig, &token, late_id).await;
        if g.body["status"] == "paid" {
            break Some(freed.elapsed());
        }
        if Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Nothing committed is lost: every order from before and every 201 while full.
    let mut missing = Vec::new();
    for (id, pay) in &before {
        let g = get_order(&rig, &token, *id).await;
        let want = if *pay { "paid" } else { "created" };
        if g.body["status"] != want {
            missing.push(format!("{id}: {} (want {want})", g.body["status"]));
        }
    }
    for id in &accepted {
        if get_order(&rig, &token, *id).await.status != Some(200) {
            missing.push(format!("{id}: answered 201 while full, now gone"));
        }
    }
    let (t, _, _) = converge(&rig, 30).await;
    server.kill9();

    let mut by: BTreeMap<String, usize> = BTreeMap::new();
    for w in &writes {
        let k = match (w.status, w.code.as_deref()) {
            (Some(s), Some(c)) => format!("{s} {c}"),
            (Some(s), None) => s.to_string(),
            (None, _) => "no answer".into(),
        };
        *by.entry(k).or_default() += 1;
    }
    let write_max = writes.iter().map(|w| w.took).max().unwrap_or_default();
    let full_msgs: std::collections::BTreeSet<&str> = writes
        .iter()
        .filter(|w| w.code.as_deref() == Some("disk_full"))
        .filter_map(|w| w.body["error"]["message"].as_str())
        .collect();
    let reads_ok = reads.iter().filter(|x| x.status == Some(200)).count();
    r.row("file system", "tmpfs of 32 MiB under the database file");
    r.row("filler written", format!("{} KiB", filled / 1024));
    r.row(
        "committed before the disk filled",
        format!(
            "{} orders, {} paid",
            before.len(),
            before.iter().filter(|(_, p)| *p).count()
        ),
    );
    r.row(
        "`POST /api/v1/orders` while full",
        by.iter()
            .map(|(k, n)| format!("{n}× {k}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    r.row(
        "message",
        full_msgs.iter().copied().collect::<Vec<_>>().join("; "),
    );
    r.row("max write latency while full", ms(write_max));
    r.row(
        "reads of committed orders while full",
        format!("{reads_ok} of {} 200", reads.len()),
    );
    r.row(
        "/readyz while full",
        ready_full.status.map(|s| s.to_string()).unwrap_or_default(),
    );
    r.row("disk full for", ms(full_for));
    r.row(
        "first write accepted after the filler was removed",
        recovered.map(ms).unwrap_or_else(|| "never".into()),
    );
    r.row(
        "payment made while full, paid here after",
        late_paid.map(ms).unwrap_or_else(|| "never".into()),
    );
    r.row("committed orders lost", missing.len());
    money_rows(&mut r, &t);
    let bad: Vec<&String> = by
        .keys()
        .filter(|k| !(k.as_str() == "201" || k.as_str() == "503 disk_full"))
        .collect();
    r.check(
        &format!("writes while full answer 201 or 503 disk_full, and some 503 ({bad:?})"),
        bad.is_empty() && by.contains_key("503 disk_full"),
    );
    r.check(
        &format!("no write hung (max {})", ms(write_max)),
        write_max <= Duration::from_secs(5),
    );
    r.check(
        "reads of committed data work while full",
        reads_ok == reads.len(),
    );
    r.check(
        &format!("nothing committed is lost ({missing:?})"),
        missing.is_empty(),
    );
    r.check("writes work again once there is room", recovered.is_some());
    r.check(
        "the payment made while full is paid here once there is room",
        late_paid.is_some(),
    );
    r.finish();
}
