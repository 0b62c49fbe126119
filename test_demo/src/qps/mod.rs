//! `qps`: the load-test tool operators size their servers with.
//!
//! Library entry point: [`run`] takes parsed [`Args`] and returns the
//! [`Report`] that the binary prints (human summary or `--json`).
//!
//! - [`args`]: command line and its validation.
//! - [`target`]: URL parsing and the loopback-only safety check.
//! - [`http1`]: request serialisation (once) and response parsing (httparse).
//! - [`conn`]: the engine: a current-thread runtime per core, one task per keep-alive connection.
//! - [`schedule`]: closed-loop / fixed-rate tickets (latency from the scheduled time).
//! - [`stats`]: HDR histograms, merge, report, JSON.
//! - [`scenario`]: the `order-flow` scenario through the WeChat simulator.

pub mod args;
pub mod conn;
pub mod http1;
pub mod scenario;
pub mod schedule;
pub mod stats;
pub mod target;

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};

pub use args::{Args, Scenario};
pub use stats::{LatencyMs, Report, ScenarioReport};

/// Number of event-loop threads to use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Runs what `args` describe and returns the report.
pub async fn run(args: Args) -> anyhow::Result<Report> {
    run_with_stop(args, Arc::new(AtomicBool::new(false))).await
}

/// Like [`run`]; setting `stop` (e.g. on Ctrl-C) ends the run early with a report.
pub async fn run_with_stop(args: Args, stop: Arc<AtomicBool>) -> anyhow::Result<Report> {
    args.validate()?;
    if args.scenario.is_some() {
        return scenario::run(args, stop).await;
    }
    let target = target::target(&args.url, args.allow_remote).await?;
    let body = args.body_bytes()?;
    let body_list = args.body_list_bytes()?;
    let token_list = args.token_list()?;
    let method = match &args.method {
        Some(m) => m.trim().to_ascii_uppercase(),
        None if body.is_some() || body_list.is_some() => "POST".to_string(),
        None => "GET".to_string(),
    };
    let headers = args
        .headers
        .iter()
        .map(|h| http1::parse_header(h))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let bearer = match (&args.token, &args.login_code) {
        (Some(t), _) => Some(t.trim().to_string()),
        (None, Some(code)) => Some(login(&target.origin, code, args.timeout).await?),
        (None, None) => None,
    };
    let mut spec = http1::RequestSpec {
        method: method.clone(),
        host_header: target.host_header.clone(),
        path_and_query: target.path_and_query.clone(),
        headers,
        bearer,
        body,
    };
    let requests = match (body_list, token_list) {
        (Some(bodies), _) => conn::Requests::list(
            bodies
                .into_iter()
                .map(|b| {
                    spec.body = Some(b);
                    http1::build_request(&spec)
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )?,
        (None, Some(tokens)) => conn::Requests::list(
            tokens
                .into_iter()
                .map(|t| {
                    spec.bearer = Some(t);
                    http1::build_request(&spec)
                })
                .collect::<anyhow::Result<Vec<_>>>()?,
        )?,
        (None, None) => conn::Requests::one(http1::build_request(&spec)?),
    };
    let threads = args
        .threads
        .unwrap_or_else(default_threads)
        .min(args.connections);
    let cfg = conn::EngineConfig {
        addrs: target.addrs.clone(),
        requests,
        head_request: method == "HEAD",
        connections: args.connections,
        threads,
        run: args.duration.unwrap_or(args::MAX_DURATION),
        limit: args.requests,
        rate: args.rate,
        timeout: args.timeout,
        warmup: args.warmup,
        stop,
        progress: !args.json && !args.no_progress && std::io::stderr().is_terminal(),
    };
    let out = on_own_thread("qps-engine", move || conn::run_engine(cfg)).await??;
    Ok(Report::new(
        &out.stats,
        out.measured,
        stats::RunInfo {
            mode: if args.rate.is_some() {
                "fixed-rate"
            } else {
                "closed-loop"
            },
            method,
            url: target.url.to_string(),
            connections: args.connections,
            threads: out.threads,
            target_rate: args.rate,
            warmup: args.warmup,
        },
    ))
}

/// Runs blocking `f` on a new OS thread and awaits it without blocking the
/// caller's runtime (whatever kind it is).
pub(crate) async fn on_own_thread<T: Send + 'static>(
    name: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> anyhow::Result<T> {
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let _ = tx.send(f());
        })
        .context("cannot start a thread")?;
    rx.await.context("the load thread panicked")
}

/// A reqwest client that never goes through a proxy (the target is loopback).
pub fn http_client(
    timeout: Duration,
    accept_invalid_certs: bool,
) -> anyhow::Result<reqwest::Client> {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(timeout)
        .connect_timeout(timeout)
        .danger_accept_invalid_certs(accept_invalid_certs)
        .user_agent(concat!("qps/", env!("CARGO_PKG_VERSION")))
        .build()
        .context("cannot build the HTTP client")
}

/// `POST <origin>/api/v1/auth/login {"code"}` → the session token.
pub async fn login(origin: &str, code: &str, timeout: Duration) -> anyhow::Result<String> {
    let url = format!("{origin}/api/v1/auth/login");
    let client = http_client(timeout, false)?;
    let resp = client
        .post(&url)
        .json(&serde_json::json!({ "code": code }))
        .send()
        .await
        .with_context(|| format!("login: POST {url}"))?;
    let status = resp.status();
    let body = resp
        .bytes()
        .await
        .with_context(|| format!("login: reading the reply of {url}"))?;
    if !status.is_success() {
        bail!(
            "login: POST {url} answered {status}: {}",
            String::from_utf8_lossy(&body[..body.len().min(300)])
        );
    }
    let v: serde_json::Value =
        serde_json::from_slice(&body).context("login: the reply is not JSON")?;
    match v.get("token").and_then(|t| t.as_str()) {
        Some(t) if !t.is_empty() => Ok(t.to_string()),
        _ => bail!("login: the reply has no \"token\" string"),
    }
}
