//! qps against wrk on a trivial local endpoint (actix-web, 2 workers), same
//! connections and duration. Ignored by default (needs `wrk`, takes ~30 s):
//!
//! ```text
//! cargo test --release -p test_demo --test qps_bench -- --ignored --nocapture
//! QPS_BENCH_SECS=10 QPS_BENCH_ROUNDS=3 cargo test --release ...   # longer
//! ```
//!
//! Prints each run and the qps/wrk ratios of requests/s and p99.

use std::net::SocketAddr;
use std::process::Command;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::Value;

fn start_plaintext() -> (SocketAddr, actix_web::dev::ServerHandle) {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let srv = HttpServer::new(|| {
                App::new().route(
                    "/",
                    web::get().to(|| async {
                        HttpResponse::Ok()
                            .content_type("text/plain")
                            .body("Hello, World!")
                    }),
                )
            })
            .workers(2)
            .backlog(4096)
            .bind(("127.0.0.1", 0))
            .expect("bind");
            let addr = srv.addrs()[0];
            let server = srv.run();
            tx.send((addr, server.handle())).expect("send");
            server.await.expect("server");
        });
    });
    rx.recv().expect("server started")
}

/// Runs `cmd` under `/usr/bin/time` when available; returns its output and
/// the user+system CPU seconds it used.
fn timed(program: &str, args: &[String]) -> (Option<std::process::Output>, Option<f64>) {
    let file = std::env::temp_dir().join(format!("qps-bench-time-{}", std::process::id()));
    let out = if std::path::Path::new("/usr/bin/time").exists() {
        Command::new("/usr/bin/time")
            .arg("-f")
            .arg("%U %S")
            .arg("-o")
            .arg(&file)
            .arg(program)
            .args(args)
            .output()
            .ok()
    } else {
        Command::new(program).args(args).output().ok()
    };
    let cpu = std::fs::read_to_string(&file).ok().and_then(|t| {
        t.lines().last().map(|l| {
            l.split_whitespace()
                .filter_map(|x| x.parse::<f64>().ok())
                .sum()
        })
    });
    let _ = std::fs::remove_file(&file);
    (out, cpu)
}

/// One tool's figures for one run.
struct Run {
    rps: f64,
    p99_ms: f64,
    cpu_us_per_req: f64,
}

/// wrk's `Requests/sec` and `99%` latency (from `--latency`).
fn run_wrk(url: &str, conns: u32, secs: u32) -> Option<Run> {
    let args = [
        "-t2".to_string(),
        format!("-c{conns}"),
        format!("-d{secs}s"),
        "--latency".into(),
        url.into(),
    ];
    let (out, cpu) = timed("wrk", &args);
    let text = String::from_utf8_lossy(&out?.stdout).into_owned();
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())?;
    let p99_ms = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("99%"))
        .and_then(|v| parse_wrk_time(v.trim()))?;
    let total = text
        .lines()
        .find_map(|l| l.trim().split_once(" requests in "))
        .and_then(|(n, _)| n.trim().parse::<f64>().ok())
        .unwrap_or(rps * f64::from(secs));
    Some(Run {
        rps,
        p99_ms,
        cpu_us_per_req: cpu.map_or(f64::NAN, |c| c * 1e6 / total),
    })
}

fn parse_wrk_time(v: &str) -> Option<f64> {
    let (num, factor) = if let Some(n) = v.strip_suffix("us") {
        (n, 0.001)
    } else if let Some(n) = v.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = v.strip_suffix('s') {
        (n, 1000.0)
    } else {
        (v, 1.0)
    };
    num.trim().parse::<f64>().ok().map(|x| x * factor)
}

fn run_qps(url: &str, conns: u32, secs: u32) -> Run {
    let args = [
        "--url".to_string(),
        url.into(),
        "-c".into(),
        conns.to_string(),
        "-d".into(),
        format!("{secs}s"),
        "--json".into(),
    ];
    let (out, cpu) = timed(env!("CARGO_BIN_EXE_qps"), &args);
    let out = out.expect("run qps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(v["errors"], 0, "{v}");
    let n = v["requests"].as_f64().expect("requests");
    Run {
        rps: v["rps"].as_f64().expect("rps"),
        p99_ms: v["latency_ms"]["p99"].as_f64().expect("p99"),
        cpu_us_per_req: cpu.map_or(f64::NAN, |c| c * 1e6 / n),
    }
}

#[test]
#[ignore = "benchmark: needs wrk and a quiet machine; run with --ignored --nocapture"]
fn qps_vs_wrk() {
    if Command::new("wrk").arg("--version").output().is_err() {
        eprintln!("wrk is not installed (apt-get install -y wrk); skipping");
        return;
    }
    let env = |k: &str, d: u32| {
        std::env::var(k)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(d)
    };
    let secs = env("QPS_BENCH_SECS", 5);
    let rounds = env("QPS_BENCH_ROUNDS", 2);
    let conns = env("QPS_BENCH_CONNS", 64);
    let (addr, handle) = start_plaintext();
    let url = format!("http://{addr}/");
    let _ = run_wrk(&url, conns, 1); // warm the server up
    let (mut w, mut q) = (Vec::new(), Vec::new());
    for round in 1..=rounds {
        // Alternate the order so a trend in background load hits both alike.
        let (wr, qr) = if round % 2 == 1 {
            let wr = run_wrk(&url, conns, secs).expect("wrk output");
            (wr, run_qps(&url, conns, secs))
        } else {
            let qr = run_qps(&url, conns, secs);
            (run_wrk(&url, conns, secs).expect("wrk output"), qr)
        };
        println!(
            "round {round}: wrk {:.0} req/s p99 {:.2} ms {:.2} us CPU/req | qps {:.0} req/s p99 {:.2} ms {:.2} us CPU/req",
            wr.rps, wr.p99_ms, wr.cpu_us_per_req, qr.rps, qr.p99_ms, qr.cpu_us_per_req
        );
        w.push(wr);
        q.push(qr);
    }
    let mean = |v: &[Run], f: fn(&Run) -> f64| v.iter().map(f).sum::<f64>() / v.len() as f64;
    println!(
        "-c {conns} -d {secs}s x{rounds}: qps/wrk req/s {:.3}; p99 qps {:.2} ms, wrk {:.2} ms ({:.2}x); CPU/req qps {:.2} us, wrk {:.2} us ({:.2}x)",
        mean(&q, |r| r.rps) / mean(&w, |r| r.rps),
        mean(&q, |r| r.p99_ms),
        mean(&w, |r| r.p99_ms),
        mean(&q, |r| r.p99_ms) / mean(&w, |r| r.p99_ms),
        mean(&q, |r| r.cpu_us_per_req),
        mean(&w, |r| r.cpu_us_per_req),
        mean(&q, |r| r.cpu_us_per_req) / mean(&w, |r| r.cpu_us_per_req),
    );
    actix_web::rt::System::new().block_on(handle.stop(true));
}

/// Serves the same trivial endpoint for `QPS_BENCH_SERVE_SECS` (default 60) and
/// prints its URL, for comparing tools by hand or profiling.
#[test]
#[ignore = "manual: a plaintext server to point qps/wrk at"]
fn serve_plaintext() {
    let secs = std::env::var("QPS_BENCH_SERVE_SECS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60);
    let (addr, handle) = start_plaintext();
    println!("serving http://{addr}/ for {secs}s");
    std::thread::sleep(std::time::Duration::from_secs(secs));
    actix_web::rt::System::new().block_on(handle.stop(true));
}
