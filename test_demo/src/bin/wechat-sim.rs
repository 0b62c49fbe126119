//! Runs the WeChat simulator standalone.
//!
//! `cargo run -p test_demo --bin wechat-sim -- --bind 127.0.0.1:9443 --out-dir keys/sim`
//! prints the base URL and the settings the server needs, writes ca.pem, apiclient_cert.pem,
//! apiclient_key.pem and apiclient_cert.p12 to --out-dir, and runs until Ctrl-C.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use test_demo::sim::{self, SimConfig};

#[derive(Parser, Debug)]
#[command(name = "wechat-sim", about = "WeChat API / Pay v2 simulator (HTTPS)")]
struct Args {
    /// Listen address (port 0 = random).
    #[arg(long, default_value = "127.0.0.1:9443")]
    bind: SocketAddr,
    /// Directory to write ca.pem, apiclient_cert.pem, apiclient_key.pem, apiclient_cert.p12.
    #[arg(long)]
    out_dir: Option<PathBuf>,
    /// Use the test configuration's credentials and fast notify retries (50-200 ms).
    #[arg(long)]
    fast: bool,
    /// Refund settle delay in milliseconds.
    #[arg(long)]
    refund_settle_ms: Option<u64>,
    /// Where content check verdicts are pushed (the mini-program console's message push
    /// URL), e.g. http://127.0.0.1:8080/wechat/mini.
    #[arg(long)]
    mini_push_url: Option<String>,
    /// A template the official account has added (repeatable), e.g. the demo's
    /// `demo-mp-order-status`.
    #[arg(long)]
    mp_template: Vec<String>,
}

#[actix_web::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let args = Args::parse();
    let mut cfg = if args.fast {
        SimConfig::for_tests()
    } else {
        SimConfig::demo()
    };
    cfg.bind = args.bind;
    if let Some(ms) = args.refund_settle_ms {
        cfg.refund_settle_delay = Duration::from_millis(ms);
    }
    let handle = sim::start(cfg).await?;
    if let Some(url) = &args.mini_push_url {
        handle.set_mini_push_url(url);
    }
    for t in &args.mp_template {
        handle.mp_add_template(t);
    }
    let c = handle.config();
    println!("WeChat simulator at {}", handle.base_url());
    println!("WECHAT_API_BASE={}", handle.base_url());
    println!("WECHAT_PAY_API_BASE={}", handle.base_url());
    println!("WECHAT_APPID={}", c.appid);
    println!("WECHAT_SECRET={}", c.secret);
    println!("WECHAT_MCH_ID={}", c.mch_id);
    println!("WECHAT_PAY_KEY={}", c.pay_key);
    println!("WECHAT_MP_APPID={}", c.mp_appid);
    println!("WECHAT_MP_TOKEN={}", c.mp_token);
    println!("WECHAT_MP_AES_KEY={}", c.mp_aes_key);
    println!("WECHAT_MP_SECRET={}", c.mp_secret);
    println!("WECHAT_MINI_TOKEN={}", c.mini_token);
    if let Some(dir) = &args.out_dir {
        handle.write_files(dir)?;
        println!("WECHAT_CA_CERT={}", dir.join("ca.pem").display());
        println!(
            "WECHAT_PAY_CLIENT_CERT={}",
            dir.join("apiclient_cert.pem").display()
        );
        println!(
            "WECHAT_PAY_CLIENT_KEY={}",
            dir.join("apiclient_key.pem").display()
        );
        println!(
            "WECHAT_PAY_P12={}",
            dir.join("apiclient_cert.p12").display()
        );
    }
    println!(
        "control: POST {0}/sim/code {{\"openid\":\"...\"}} · POST {0}/sim/pay <the wx.requestPayment parameters> · POST {0}/sim/subscribe/accept {{\"openid\":\"...\",\"template_ids\":[...]}} · POST {0}/sim/rules · POST {0}/sim/api-faults {{\"delay_ms\":5000,\"delay_percent\":25,\"error_percent\":20,\"reset_percent\":20}} · GET {0}/sim/calls",
        handle.base_url()
    );
    tokio::signal::ctrl_c().await?;
    handle.stop();
    Ok(())
}
