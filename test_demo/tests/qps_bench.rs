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

/// wrk's `Requests/sec` and `99%` latency (ms), from `--latency` output.
fn run_wrk(url: &str, conns: u32, secs: u32) -> Option<(f64, f64)> {
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{conns}"),
            &format!("-d{secs}s"),
            "--latency",
            url,
        ])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let rps = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())?;
    let p99 = text
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("99%"))
        .and_then(|v| parse_wrk_time(v.trim()))?;
    Some((rps, p99))
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

fn run_qps(url: &str, conns: u32, secs: u32) -> (f64, f64, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_qps"))
        .args([
            "--url",
            url,
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
            "--json",
        ])
        .output()
        .expect("run qps");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).expect("json");
    (
        v["rps"].as_f64().expect("rps"),
        v["latency_ms"]["p99"].as_f64().expect("p99"),
        v,
    )
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
    // Warm the server up.
    let _ = run_wrk(&url, conns, 1);
    let (mut wrk_rps, mut wrk_p99, mut qps_rps, mut qps_p99) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let (wr, wp) = run_wrk(&url, conns, secs).expect("wrk output");
        let (qr, qp, v) = run_qps(&url, conns, secs);
        println!(
            "round {round}: wrk {wr:.0} req/s p99 {wp:.2} ms | qps {qr:.0} req/s p99 {qp:.2} ms (errors {})",
            v["errors"]
        );
        wrk_rps.push(wr);
        wrk_p99.push(wp);
        qps_rps.push(qr);
        qps_p99.push(qp);
    }
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "-c {conns} -d {secs}s, {rounds} rounds: qps/wrk requests/s = {:.3}, p99 qps {:.2} ms vs wrk {:.2} ms (ratio {:.2})",
        mean(&qps_rps) / mean(&wrk_rps),
        mean(&qps_p99),
        mean(&wrk_p99),
        mean(&qps_p99) / mean(&wrk_p99)
    );
    actix_web::rt::System::new().block_on(handle.stop(true));
}
