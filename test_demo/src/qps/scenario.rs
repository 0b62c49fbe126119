//! `--scenario order-flow`: virtual users that log in through the WeChat
//! simulator, create an order, pay it with the simulator, and wait for the
//! server to see WeChat's pay notify (order `status` = `paid`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use url::Url;

use super::args::{Args, MAX_DURATION};
use super::stats::{
    ErrorKind, LatencyMs, Report, RunInfo, ScenarioReport, Stats, StepReport, micros, new_histogram,
};
use super::target;

/// How long a paid order may take to show `paid`.
pub const PAID_WAIT: Duration = Duration::from_secs(10);
/// Pause between order polls.
pub const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Step names, in flow order.
pub const STEPS: [&str; 8] = [
    "sim_code",
    "login",
    "create_order",
    "pay",
    "sim_pay",
    "get_order",
    "paid_wait",
    "flow_total",
];

/// Order statuses that mean the payment was seen.
const PAID_OR_LATER: [&str; 5] = ["paid", "accepted", "picked_up", "delivered", "completed"];

#[derive(Debug, Clone)]
struct Config {
    base: String,
    sim: String,
    vus: usize,
    threads: usize,
    warmup: Duration,
    run: Duration,
    limit: Option<u64>,
    timeout: Duration,
    url: String,
}

enum Outcome {
    Status(u16, u64),
    Error(ErrorKind, String),
}

struct Entry {
    step: &'static str,
    outcome: Outcome,
    latency: Duration,
}

#[derive(Default)]
struct FlowLog {
    entries: Vec<Entry>,
    timings: Vec<(&'static str, Duration)>,
}

enum FlowEnd {
    Paid,
    NotPaid,
    Failed(&'static str),
}

struct Step {
    hist: Histogram<u64>,
    count: u64,
    failures: u64,
}

struct Totals {
    all: Stats,
    steps: BTreeMap<&'static str, Step>,
    flows_started: u64,
    flows_completed: u64,
    not_paid: u64,
    failed: BTreeMap<&'static str, u64>,
}

impl Totals {
    fn new() -> Self {
        Totals {
            all: Stats::new(),
            steps: STEPS
                .iter()
                .map(|s| {
                    (
                        *s,
                        Step {
                            hist: new_histogram(),
                            count: 0,
                            failures: 0,
                        },
                    )
                })
                .collect(),
            flows_started: 0,
            flows_completed: 0,
            not_paid: 0,
            failed: BTreeMap::new(),
        }
    }

    fn add(&mut self, log: &FlowLog, end: &FlowEnd) {
        self.flows_started += 1;
        for e in &log.entries {
            let step = self.steps.get_mut(e.step);
            match &e.outcome {
                Outcome::Status(code, bytes) => {
                    self.all.record_response(*code, micros(e.latency), *bytes);
                    if let Some(st) = step {
                        st.count += 1;
                        let _ = st.hist.record(micros(e.latency));
                        if !(200..300).contains(code) {
                            st.failures += 1;
                        }
                    }
                }
                Outcome::Error(kind, msg) => {
                    self.all
                        .record_error(*kind, || format!("{}: {msg}", e.step));
                    if let Some(st) = step {
                        st.failures += 1;
                    }
                }
            }
        }
        for (name, d) in &log.timings {
            if let Some(st) = self.steps.get_mut(name) {
                st.count += 1;
                let _ = st.hist.record(micros(*d));
            }
        }
        match end {
            FlowEnd::Paid => self.flows_completed += 1,
            FlowEnd::NotPaid => self.not_paid += 1,
            FlowEnd::Failed(step) => *self.failed.entry(step).or_insert(0) += 1,
        }
    }
}

fn classify(e: &reqwest::Error) -> ErrorKind {
    if e.is_timeout() {
        return ErrorKind::Timeout;
    }
    if e.is_connect() {
        return ErrorKind::Connect;
    }
    let mut src: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(e);
    while let Some(s) = src {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            return ErrorKind::of_io(io);
        }
        if s.to_string().contains("connection closed") {
            return ErrorKind::Closed;
        }
        src = s.source();
    }
    ErrorKind::Other
}

/// Sends `req`, logs it under `step`; Some((status, body)) when a response came back.
async fn call(
    log: &mut FlowLog,
    step: &'static str,
    req: reqwest::RequestBuilder,
) -> Option<(u16, Value)> {
    let t = Instant::now();
    let res = async {
        let resp = req.send().await?;
        let status = resp.status().as_u16();
        let body = resp.bytes().await?;
        Ok::<_, reqwest::Error>((status, body))
    }
    .await;
    let latency = t.elapsed();
    match res {
        Ok((status, body)) => {
            log.entries.push(Entry {
                step,
                outcome: Outcome::Status(status, body.len() as u64),
                latency,
            });
            Some((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
        }
        Err(e) => {
            let kind = classify(&e);
            let mut msg = e.to_string();
            let mut src = std::error::Error::source(&e);
            while let Some(s) = src {
                msg.push_str(": ");
                msg.push_str(&s.to_string());
                src = s.source();
            }
            log.entries.push(Entry {
                step,
                outcome: Outcome::Error(kind, msg),
                latency,
            });
            None
        }
    }
}

fn ok(r: &Option<(u16, Value)>) -> Option<&Value> {
    match r {
        Some((s, v)) if (200..300).contains(s) => Some(v),
        _ => None,
    }
}

struct Vu {
    server: reqwest::Client,
    sim: reqwest::Client,
    cfg: Arc<Config>,
    openid: String,
}

impl Vu {
    async fn flow(&self, log: &mut FlowLog) -> FlowEnd {
        let cfg = &self.cfg;
        let flow_start = Instant::now();
        let r = call(
            log,
            "sim_code",
            self.sim
                .post(format!("{}/sim/code", cfg.sim))
                .json(&json!({ "openid": self.openid })),
        )
        .await;
        let Some(code) = ok(&r).and_then(|v| v.get("code")).and_then(Value::as_str) else {
            return FlowEnd::Failed("sim_code");
        };
        let r = call(
            log,
            "login",
            self.server
                .post(format!("{}/api/v1/auth/login", cfg.base))
                .json(&json!({ "code": code })),
        )
        .await;
        let Some(token) = ok(&r).and_then(|v| v.get("token")).and_then(Value::as_str) else {
            return FlowEnd::Failed("login");
        };
        let auth = format!("Bearer {token}");
        let r = call(
            log,
            "create_order",
            self.server
                .post(format!("{}/api/v1/orders", cfg.base))
                .header("Authorization", &auth)
                .header("Idempotency-Key", uuid::Uuid::new_v4().to_string())
                .json(&json!({
                    "kind": "express", "pickup": "Station A", "dropoff": "Dorm 5",
                    "note": "qps", "fee_fen": 300, "goods_fen": 0
                })),
        )
        .await;
        let id = match ok(&r).and_then(|v| v.get("id")) {
            Some(Value::Number(n)) => n.to_string(),
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            _ => return FlowEnd::Failed("create_order"),
        };
        let r = call(
            log,
            "pay",
            self.server
                .post(format!("{}/api/v1/orders/{id}/pay", cfg.base))
                .header("Authorization", &auth)
                .body(""),
        )
        .await;
        // The mini-program hands these parameters to wx.requestPayment as they are; the
        // simulator checks them (paySign, signType, timeStamp, prepay id) the way WeChat does.
        let Some(params) = ok(&r).filter(|v| {
            v.get("package")
                .and_then(Value::as_str)
                .and_then(|p| p.strip_prefix("prepay_id="))
                .is_some_and(|p| !p.is_empty())
        }) else {
            return FlowEnd::Failed("pay");
        };
        let params = params.clone();
        let r = call(
            log,
            "sim_pay",
            self.sim.post(format!("{}/sim/pay", cfg.sim)).json(&params),
        )
        .await;
        if ok(&r).is_none() {
            return FlowEnd::Failed("sim_pay");
        }
        let paid_from = Instant::now();
        loop {
            let r = call(
                log,
                "get_order",
                self.server
                    .get(format!("{}/api/v1/orders/{id}", cfg.base))
                    .header("Authorization", &auth),
            )
            .await;
            match &r {
                Some((200..=299, v)) => {
                    let status = v.get("status").and_then(Value::as_str).unwrap_or("");
                    if PAID_OR_LATER.contains(&status) {
                        log.timings.push(("paid_wait", paid_from.elapsed()));
                        log.timings.push(("flow_total", flow_start.elapsed()));
                        return FlowEnd::Paid;
                    }
                    if matches!(status, "closed" | "refunding" | "refunded") {
                        return FlowEnd::NotPaid;
                    }
                }
                Some(_) => return FlowEnd::Failed("get_order"),
                None => {} // transport error: keep trying until the wait is over
            }
            if paid_from.elapsed() + POLL_INTERVAL > PAID_WAIT {
                return FlowEnd::NotPaid;
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }
}

fn step_report(st: &Step) -> StepReport {
    StepReport {
        count: st.count,
        failures: st.failures,
        latency_ms: LatencyMs::of(&st.hist),
    }
}

async fn drive(cfg: Arc<Config>, stop: Arc<AtomicBool>) -> anyhow::Result<(Totals, Duration)> {
    let server = super::http_client(cfg.timeout, false)?;
    // The simulator uses a private CA; it is loopback-only (checked before).
    let sim = super::http_client(cfg.timeout, true)?;
    let totals = Arc::new(Mutex::new(Totals::new()));
    let warm = Arc::new(Mutex::new(0u64));
    let t0 = Instant::now();
    let warmup_end = t0 + cfg.warmup;
    let deadline = warmup_end + cfg.run;
    let measured_started = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::with_capacity(cfg.vus);
    for _ in 0..cfg.vus {
        let vu = Vu {
            server: server.clone(),
            sim: sim.clone(),
            cfg: cfg.clone(),
            openid: format!("qps-{}", uuid::Uuid::new_v4()),
        };
        let (totals, warm, stop, started) = (
            totals.clone(),
            warm.clone(),
            stop.clone(),
            measured_started.clone(),
        );
        let limit = cfg.limit;
        tasks.push(tokio::spawn(async move {
            loop {
                let now = Instant::now();
                if stop.load(Ordering::Relaxed) || now >= deadline {
                    break;
                }
                let measured = now >= warmup_end;
                if measured
                    && let Some(n) = limit
                    && started.fetch_add(1, Ordering::Relaxed) >= n
                {
                    break;
                }
                let mut log = FlowLog::default();
                let end = vu.flow(&mut log).await;
                let failed = matches!(end, FlowEnd::Failed(_));
                if measured {
                    if let Ok(mut t) = totals.lock() {
                        t.add(&log, &end);
                    }
                } else if let Ok(mut w) = warm.lock() {
                    *w += log.entries.len() as u64;
                }
                if failed {
                    // Do not spin on a broken endpoint.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Instant::now()
        }));
    }
    let mut end = warmup_end;
    for t in tasks {
        if let Ok(e) = t.await {
            end = end.max(e);
        }
    }
    let mut totals = Arc::try_unwrap(totals)
        .ok()
        .and_then(|m| m.into_inner().ok())
        .context("scenario tasks still hold the totals")?;
    totals.all.warmup_requests = warm.lock().map(|w| *w).unwrap_or(0);
    Ok((totals, end.saturating_duration_since(warmup_end)))
}

/// Runs the scenario described by `args` (already validated).
pub async fn run(args: Args, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    let base = target::parse_url(&args.url, "--url")?;
    target::check_host(&base, "target", args.allow_remote)?;
    target::resolve(&base, args.allow_remote).await?;
    let sim_raw = args.sim_url.clone().context("--scenario needs --sim-url")?;
    let sim = target::parse_url(&sim_raw, "--sim-url")?;
    // Certificates of the simulator are not verified, so it must be local, always.
    target::check_host(&sim, "the simulator", false)
        .context("--sim-url must be a loopback address (its certificate is not verified)")?;
    target::resolve(&sim, false).await?;
    let trim = |u: &Url| u.as_str().trim_end_matches('/').to_string();
    let cfg = Arc::new(Config {
        base: trim(&base),
        sim: trim(&sim),
        vus: args.connections,
        threads: args.threads.unwrap_or_else(super::default_threads),
        warmup: args.warmup,
        run: args.duration.unwrap_or(MAX_DURATION),
        limit: args.requests,
        timeout: args.timeout,
        url: base.to_string(),
    });
    let progress =
        !args.json && !args.no_progress && std::io::IsTerminal::is_terminal(&std::io::stderr());
    let c2 = cfg.clone();
    let (totals, measured) = super::on_own_thread("qps-scenario", move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(c2.threads)
            .enable_all()
            .build()
            .context("cannot start a tokio runtime")?;
        let spinner = progress.then(|| {
            let s = indicatif::ProgressBar::new_spinner();
            s.set_message("order-flow running");
            s.enable_steady_tick(Duration::from_millis(250));
            s
        });
        let r = rt.block_on(drive(c2, stop));
        if let Some(s) = spinner {
            s.finish_and_clear();
        }
        r
    })
    .await??;

    let mut report = Report::new(
        &totals.all,
        measured,
        RunInfo {
            mode: "scenario",
            method: "order-flow".into(),
            url: cfg.url.clone(),
            connections: cfg.vus,
            threads: cfg.threads,
            target_rate: None,
            warmup: cfg.warmup,
        },
    );
    let secs = measured.as_secs_f64();
    report.scenario = Some(ScenarioReport {
        name: "order-flow".into(),
        flows_started: totals.flows_started,
        flows_completed: totals.flows_completed,
        flows_per_sec: if secs > 0.0 {
            (totals.flows_completed as f64 / secs * 100.0).round() / 100.0
        } else {
            0.0
        },
        not_paid: totals.not_paid,
        failed: totals
            .failed
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
        steps: totals
            .steps
            .iter()
            .map(|(k, v)| (k.to_string(), step_report(v)))
            .collect(),
        step_order: STEPS.iter().map(|s| s.to_string()).collect(),
    });
    Ok(report)
}
