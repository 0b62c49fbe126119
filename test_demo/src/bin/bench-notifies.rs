//! `bench-notifies`: the pay-notify workload of `bench/run`, against the `demo` server.
//!
//! * `make --count N --out FILE`: takes N of the caller's orders still `created` (listing them
//!   through the API, creating the missing ones through `POST /api/v1/orders`) and writes one
//!   WeChat Pay v2 notify per order, one per line, signed with the demo simulator's merchant
//!   key (`SimConfig::demo()`): the body list for `qps --body-list` and for wrk's `BENCH_BODY_LIST` (`bench/wrk.lua`).
//! * `count --status S`: how many of the caller's orders are in status S (to check afterwards
//!   that every notify sent was applied, since a refused notify is still HTTP 200).
//! * `users --count N --out FILE`: logs in N distinct users (wx.login codes from the
//!   simulator) and writes their session tokens, one per line: the crowd of `qps --token-list`
//!   (the coupon-claim workload, where every claim must come from another user).
//!
//! Loopback targets only; every request has a timeout.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use futures::StreamExt;
use serde_json::{Value, json};
use test_demo::qps::target;
use test_demo::sim::SimConfig;
use test_demo::sim::sign::{self, SignType};
use test_demo::sim::xml;

/// Most notifies one `make` writes.
const MAX_COUNT: usize = 2_000_000;
/// Orders per list page (the contract's maximum).
const PAGE: usize = 100;
/// Orders created concurrently when topping up.
const IN_FLIGHT: usize = 32;

#[derive(Parser)]
#[command(name = "bench-notifies", version, about)]
struct Cli {
    /// The server's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Session token of the customer whose orders are used (`make`, `count`).
    #[arg(long, env = "BENCH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Per-request timeout in seconds.
    #[arg(long, default_value_t = 10)]
    timeout: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write COUNT signed pay notifies, one per distinct `created` order, one per line.
    Make {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// The payer's openid in the notifies.
        #[arg(long, default_value = "bench-student")]
        openid: String,
    },
    /// Print how many of the caller's orders are in STATUS.
    Count {
        #[arg(long, default_value = "paid")]
        status: String,
    },
    /// Log in COUNT distinct users and write their session tokens, one per line.
    Users {
        #[arg(long)]
        count: usize,
        #[arg(long)]
        out: PathBuf,
        /// The simulator's base URL (loopback only: its certificate is not verified).
        #[arg(long, default_value = "https://127.0.0.1:9443")]
        sim_url: String,
        /// Openids are PREFIX-0, PREFIX-1, …; a new prefix gives new users.
        #[arg(long, default_value = "bench-crowd")]
        prefix: String,
    },
}

/// Most users one `users` logs in.
const MAX_USERS: usize = 200_000;

/// One order to pay.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Unpaid {
    out_trade_no: String,
    amount_fen: u64,
}

/// The signed pay notify WeChat would send for `o`, on one line.
fn notify_xml(cfg: &SimConfig, o: &Unpaid, openid: &str, transaction_id: &str) -> String {
    let time_end = chrono::Utc::now()
        .with_timezone(&chrono::FixedOffset::east_opt(8 * 3600).expect("UTC+8"))
        .format("%Y%m%d%H%M%S")
        .to_string();
    let fee = o.amount_fen.to_string();
    let mut m: BTreeMap<String, String> = [
        ("return_code", "SUCCESS"),
        ("appid", cfg.appid.as_str()),
        ("mch_id", cfg.mch_id.as_str()),
        ("nonce_str", &random_alnum(32)),
        ("openid", openid),
        ("is_subscribe", "N"),
        ("result_code", "SUCCESS"),
        ("out_trade_no", o.out_trade_no.as_str()),
        ("transaction_id", transaction_id),
        ("total_fee", fee.as_str()),
        ("cash_fee", fee.as_str()),
        ("fee_type", "CNY"),
        ("bank_type", "OTHERS"),
        ("time_end", time_end.as_str()),
        ("trade_type", "JSAPI"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let s = sign::pay_sign_map(&m, &cfg.pay_key, SignType::Md5);
    m.insert("sign".into(), s);
    xml::build_map("xml", &m)
}

fn random_alnum(n: usize) -> String {
    use rand::Rng;
    const CHARS: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| CHARS[rng.random_range(0..CHARS.len())] as char)
        .collect()
}

struct Api {
    client: reqwest::Client,
    base: String,
    auth: String,
}

impl Api {
    async fn json(&self, req: reqwest::RequestBuilder, what: &str) -> anyhow::Result<Value> {
        let resp = req
            .header("Authorization", &self.auth)
            .send()
            .await
            .with_context(|| what.to_string())?;
        let status = resp.status();
        let body = resp.bytes().await.with_context(|| what.to_string())?;
        if !status.is_success() {
            bail!(
                "{what}: {status}: {}",
                String::from_utf8_lossy(&body[..body.len().min(300)])
            );
        }
        serde_json::from_slice(&body).with_context(|| format!("{what}: the reply is not JSON"))
    }

    /// Walks the caller's orders in `status`, newest first; `f` returns false to stop.
    async fn each_order(
        &self,
        status: &str,
        mut f: impl FnMut(&Value) -> bool,
    ) -> anyhow::Result<()> {
        let mut cursor: Option<String> = None;
        loop {
            let mut url = format!(
                "{}/api/v1/orders?mine=customer&status={status}&limit={PAGE}",
                self.base
            );
            if let Some(c) = &cursor {
                url.push_str("&cursor=");
                url.push_str(c);
            }
            let page = self
                .json(self.client.get(&url), &format!("GET {url}"))
                .await?;
            for o in page["items"].as_array().context("a page has no items")? {
                if !f(o) {
                    return Ok(());
                }
            }
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => return Ok(()),
            }
        }
    }

    async fn create_order(&self) -> anyhow::Result<Value> {
        let url = format!("{}/api/v1/orders", self.base);
        let body = json!({"kind": "express", "pickup": "Express station, shelf B",
            "dropoff": "Building 5, Room 301", "note": "bench", "fee_fen": 300, "goods_fen": 0});
        self.json(self.client.post(&url).json(&body), &format!("POST {url}"))
            .await
    }
}

fn unpaid_of(o: &Value) -> anyhow::Result<Unpaid> {
    Ok(Unpaid {
        out_trade_no: o["out_trade_no"]
            .as_str()
            .context("an order has no out_trade_no")?
            .to_string(),
        amount_fen: o["amount_fen"]
            .as_u64()
            .context("an order has no amount_fen")?,
    })
}

async fn make(api: &Api, count: usize, out: &PathBuf, openid: &str) -> anyhow::Result<()> {
    if count == 0 || count > MAX_COUNT {
        bail!("--count must be between 1 and {MAX_COUNT}");
    }
    let mut orders = Vec::with_capacity(count);
    let mut bad = None;
    api.each_order("created", |o| {
        match unpaid_of(o) {
            Ok(u) => orders.push(u),
            Err(e) => bad = Some(e),
        }
        bad.is_none() && orders.len() < count
    })
    .await?;
    if let Some(e) = bad {
        return Err(e);
    }
    let listed = orders.len();
    let missing = count - listed;
    let mut created = futures::stream::iter(0..missing)
        .map(|_| api.create_order())
        .buffer_unordered(IN_FLIGHT);
    while let Some(o) = created.next().await {
        orders.push(unpaid_of(&o?)?);
    }
    let cfg = SimConfig::demo();
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {out:?}"))?;
    let mut w = std::io::BufWriter::new(file);
    let run = random_alnum(6).to_ascii_uppercase();
    for (i, o) in orders.iter().enumerate() {
        let txid = format!("4200BENCH{run}{i:012}");
        writeln!(w, "{}", notify_xml(&cfg, o, openid, &txid))?;
    }
    w.flush()?;
    eprintln!(
        "bench-notifies: {count} notifies in {} ({listed} orders listed, {missing} created)",
        out.display()
    );
    Ok(())
}

/// Logs in `n` users `prefix-i` (simulator code, then `POST /auth/login`) and writes their
/// tokens in order.
async fn users(
    base: &str,
    timeout: Duration,
    n: usize,
    out: &PathBuf,
    sim_url: &str,
    prefix: &str,
) -> anyhow::Result<()> {
    if n == 0 || n > MAX_USERS {
        bail!("--count must be between 1 and {MAX_USERS}");
    }
    let sim = target::parse_url(sim_url, "--sim-url")?;
    target::check_host(&sim, "the simulator", false)?;
    let sim_base = sim_url.trim_end_matches('/');
    let server = test_demo::qps::http_client(timeout, false)?;
    let simc = test_demo::qps::http_client(timeout, true)?;
    let login = |i: usize| {
        let (server, simc) = (server.clone(), simc.clone());
        let openid = format!("{prefix}-{i}");
        async move {
            let code: Value = simc
                .post(format!("{sim_base}/sim/code"))
                .json(&json!({ "openid": openid }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let code = code["code"]
                .as_str()
                .context("the simulator gave no code")?;
            let v: Value = server
                .post(format!("{base}/api/v1/auth/login"))
                .json(&json!({ "code": code }))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            v["token"]
                .as_str()
                .map(str::to_string)
                .with_context(|| format!("login of {openid} gave no token"))
        }
    };
    let tokens: Vec<String> = futures::stream::iter(0..n)
        .map(login)
        .buffered(IN_FLIGHT)
        .collect::<Vec<anyhow::Result<String>>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {out:?}"))?;
    let mut w = std::io::BufWriter::new(file);
    for t in &tokens {
        writeln!(w, "{t}")?;
    }
    w.flush()?;
    eprintln!(
        "bench-notifies: {n} users logged in, tokens in {}",
        out.display()
    );
    Ok(())
}

async fn count(api: &Api, status: &str) -> anyhow::Result<()> {
    let mut n = 0u64;
    api.each_order(status, |_| {
        n += 1;
        true
    })
    .await?;
    println!("{n}");
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let url = target::parse_url(&cli.url, "--url")?;
    target::check_host(&url, "server", false)?;
    let base = cli.url.trim_end_matches('/').to_string();
    let timeout = Duration::from_secs(cli.timeout.clamp(1, 600));
    let api = || -> anyhow::Result<Api> {
        let Some(token) = &cli.token else {
            bail!("--token (or BENCH_TOKEN) is required for make and count");
        };
        Ok(Api {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()?,
            base: base.clone(),
            auth: format!("Bearer {}", token.trim()),
        })
    };
    match &cli.command {
        Command::Make {
            count: n,
            out,
            openid,
        } => make(&api()?, *n, out, openid).await,
        Command::Count { status } => count(&api()?, status).await,
        Command::Users {
            count: n,
            out,
            sim_url,
            prefix,
        } => users(&base, timeout, *n, out, sim_url, prefix).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notifies_are_signed_one_line_xml() {
        let cfg = SimConfig::demo();
        let o = Unpaid {
            out_trade_no: "CE2025ABC".into(),
            amount_fen: 300,
        };
        let body = notify_xml(&cfg, &o, "bench-student", "4200000001");
        assert!(!body.contains('\n'));
        let parsed = xml::parse(body.as_bytes()).expect("well-formed XML");
        let f = parsed.fields;
        assert!(sign::pay_verify(&f, &cfg.pay_key, SignType::Md5));
        assert_eq!(f["total_fee"], "300");
        assert_eq!(f["out_trade_no"], "CE2025ABC");
        assert_eq!((&f["appid"], &f["mch_id"]), (&cfg.appid, &cfg.mch_id));
        let mut forged = f.clone();
        forged.insert("total_fee".into(), "1".into());
        assert!(!sign::pay_verify(&forged, &cfg.pay_key, SignType::Md5));
    }
}
