//! `bench-notifies`: the pay-notify workload of `bench/run`, against the `demo` server.
//!
//! * `make --count N --out FILE`: takes N of the caller's orders still `created` (listing them
//!   through the API, creating the missing ones through `POST /api/v1/orders`) and writes one
//!   WeChat Pay v2 notify per order, one per line, signed with the demo simulator's merchant
//!   key (`SimConfig::demo()`): the body list for `qps --body-list` and for wrk's `BENCH_BODY_LIST` (`bench/wrk.lua`).
//!   With `--token-list FILE` (a crowd written by `users`) the orders come from the crowd
//!   instead: user by user, in the file's order, up to `--per-user K` orders each (their
//!   `created` ones first, then new ones), so that no user holds more unpaid orders than a
//!   real one may (`MAX_UNPAID_ORDERS`); the notify's openid is the owner's (`PREFIX-i` for
//!   the user on line i, as `users --prefix` made them), and the notifies alternate between
//!   users, so that concurrent ones pay different users' orders as real payments would.
//! * `count --status S`: how many of the caller's orders are in status S (to check afterwards
//!   that every notify sent was applied, since a refused notify is still HTTP 200); with
//!   `--token-list FILE`, the sum over the crowd.
//! * `users --count N --out FILE`: logs in N distinct users (wx.login codes from the
//!   simulator) and writes their session tokens, one per line: the crowd of `qps --token-list`,
//!   of wrk's `BENCH_TOKEN_LIST` and of `make`/`count --token-list` (creates, claims and
//!   notifies each from another user).
//!
//! Loopback targets only; every request has a timeout.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
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
/// Orders created (or users served, with `--token-list`) concurrently.
const IN_FLIGHT: usize = 32;

#[derive(Parser)]
#[command(name = "bench-notifies", version, about)]
struct Cli {
    /// The server's base URL (loopback only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Session token of the customer whose orders are used (`make`, `count` without
    /// `--token-list`).
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
        /// The payer's openid in the notifies (with `--token-list`: each owner's, from
        /// `--prefix`).
        #[arg(long, default_value = "bench-student", conflicts_with = "token_list")]
        openid: String,
        /// Take the orders from these users (session tokens, one per line, as `users` writes
        /// them) instead of the `--token` user.
        #[arg(long, value_name = "FILE")]
        token_list: Option<PathBuf>,
        /// `users --prefix` of the `--token-list` crowd: the user on line i is PREFIX-i.
        #[arg(long, default_value = "bench-crowd")]
        prefix: String,
        /// With `--token-list`: at most K orders of each user, below the server's
        /// MAX_UNPAID_ORDERS.
        #[arg(long, value_name = "K", default_value_t = 45)]
        per_user: usize,
    },
    /// Print how many of the caller's orders are in STATUS.
    Count {
        #[arg(long, default_value = "paid")]
        status: String,
        /// Sum over these users (session tokens, one per line) instead of the `--token` user.
        #[arg(long, value_name = "FILE")]
        token_list: Option<PathBuf>,
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
    /// The same server, as the user of `token` (the client and its connections shared).
    fn as_user(&self, token: &str) -> Api {
        Api {
            client: self.client.clone(),
            base: self.base.clone(),
            auth: format!("Bearer {}", token.trim()),
        }
    }

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

/// Takes `count` of the caller's `created` orders, creating the missing ones.
async fn orders_of_caller(api: &Api, count: usize) -> anyhow::Result<Taken> {
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
    Ok(Taken {
        orders: vec![orders],
        lines: vec![0],
        listed,
        created: missing,
    })
}

/// The orders `make` found, per owner, and how many of them it listed and created.
struct Taken {
    orders: Vec<Vec<Unpaid>>,
    /// Each owner's line in --token-list.
    lines: Vec<usize>,
    listed: usize,
    created: usize,
}

/// How many orders are still wanted, shared by the users served at once, so that the last
/// users create only what is still missing instead of topping up to `--per-user` each.
struct Need(Cell<usize>);

impl Need {
    /// Counts a user's `listed` orders, then reserves up to `room` new ones for that user:
    /// how many it should create.
    fn take(&self, listed: usize, room: usize) -> usize {
        let left = self.0.get().saturating_sub(listed);
        let create = left.min(room);
        self.0.set(left - create);
        create
    }
}

/// `--per-user` must be able to cover `--count` with the crowd at hand: checked before any
/// request, rather than after minutes of creating orders.
fn check_crowd(users: usize, per_user: usize, count: usize) -> anyhow::Result<()> {
    if per_user == 0 {
        bail!("--per-user must be at least 1");
    }
    if users.saturating_mul(per_user) < count {
        bail!(
            "--token-list has {users} users, at most {per_user} orders each (--per-user): \
             {} < --count {count}; log in at least {} users",
            users * per_user,
            count.div_ceil(per_user)
        );
    }
    Ok(())
}

/// Takes `count` `created` orders from the crowd, user by user in the list's order (a
/// user's own listing and creating in sequence, IN_FLIGHT users at once), at most
/// `per_user` of each user.
async fn orders_of_crowd(
    api: &Api,
    tokens: &[(usize, String)],
    per_user: usize,
    count: usize,
) -> anyhow::Result<Taken> {
    check_crowd(tokens.len(), per_user, count)?;
    let need = Need(Cell::new(count));
    let one = |(line, token): &(usize, String)| {
        let (api, need, line) = (api.as_user(token), &need, *line);
        async move {
            let what = || format!("the user on line {} of --token-list", line + 1);
            let mut mine = Vec::with_capacity(per_user);
            let mut bad = None;
            api.each_order("created", |o| {
                match unpaid_of(o) {
                    Ok(u) => mine.push(u),
                    Err(e) => bad = Some(e),
                }
                bad.is_none() && mine.len() < per_user
            })
            .await
            .with_context(what)?;
            if let Some(e) = bad {
                return Err(e.context(what()));
            }
            let listed = mine.len();
            let create = need.take(listed, per_user - listed);
            for _ in 0..create {
                let o = api.create_order().await.with_context(what)?;
                mine.push(unpaid_of(&o).with_context(what)?);
            }
            anyhow::Ok((line, mine, listed))
        }
    };
    let mut served = futures::stream::iter(tokens).map(one).buffered(IN_FLIGHT);
    let mut taken = Taken {
        orders: Vec::new(),
        lines: Vec::new(),
        listed: 0,
        created: 0,
    };
    let mut have = 0;
    // In the list's order, so that the orders used are those of the first users; the users
    // still in flight once enough are in hand are dropped.
    while have < count {
        let Some(user) = served.next().await else {
            break;
        };
        let (line, mine, listed) = user?;
        have += mine.len();
        taken.listed += listed;
        taken.created += mine.len() - listed;
        taken.orders.push(mine);
        taken.lines.push(line);
    }
    if have < count {
        bail!(
            "the {} users of --token-list gave only {have} of {count} orders",
            tokens.len()
        );
    }
    Ok(taken)
}

/// The orders in the order of their notifies: the owners' first orders, then their
/// second ones, and so on, so that notifies sent together pay different users' orders (a
/// real crowd pays its own orders, not one user's dozens back to back).
fn interleave<T: Clone>(per_owner: &[Vec<T>], count: usize) -> Vec<(usize, T)> {
    let rounds = per_owner.iter().map(Vec::len).max().unwrap_or(0);
    (0..rounds)
        .flat_map(|r| {
            per_owner
                .iter()
                .enumerate()
                .filter_map(move |(owner, v)| v.get(r).map(|o| (owner, o.clone())))
        })
        .take(count)
        .collect()
}

/// The tokens of a `users` list with their line numbers (from 0; the user on line i is
/// PREFIX-i), empty lines skipped but counted.
fn parse_tokens(text: &str) -> Vec<(usize, String)> {
    text.lines()
        .enumerate()
        .map(|(i, l)| (i, l.trim()))
        .filter(|(_, l)| !l.is_empty())
        .map(|(i, l)| (i, l.to_string()))
        .collect()
}

fn read_tokens(path: &Path) -> anyhow::Result<Vec<(usize, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read --token-list {}", path.display()))?;
    let tokens = parse_tokens(&text);
    if tokens.is_empty() || tokens.len() > MAX_USERS {
        bail!(
            "--token-list {} has {} tokens; between 1 and {MAX_USERS} are accepted",
            path.display(),
            tokens.len()
        );
    }
    Ok(tokens)
}

/// Whose orders `make` and `count` use.
enum Owners {
    /// The `--token` user.
    Caller(Api),
    /// A crowd: (line, token) of each user of `--token-list`.
    Crowd(Api, Vec<(usize, String)>),
}

/// The payer's openid in the notifies: the one given, or each crowd user's own.
enum Openid<'a> {
    Fixed(&'a str),
    Prefix(&'a str),
}

async fn make(
    owners: &Owners,
    count: usize,
    out: &Path,
    openid: Openid<'_>,
    per_user: usize,
) -> anyhow::Result<()> {
    if count == 0 || count > MAX_COUNT {
        bail!("--count must be between 1 and {MAX_COUNT}");
    }
    let taken = match owners {
        Owners::Caller(api) => orders_of_caller(api, count).await?,
        Owners::Crowd(api, tokens) => orders_of_crowd(api, tokens, per_user, count).await?,
    };
    let openid_of = |owner: usize| match openid {
        Openid::Fixed(o) => o.to_string(),
        Openid::Prefix(p) => format!("{p}-{}", taken.lines[owner]),
    };
    let orders = interleave(&taken.orders, count);
    let cfg = SimConfig::demo();
    let wrote = || format!("cannot write {}", out.display());
    let file = std::fs::File::create(out).with_context(wrote)?;
    let mut w = std::io::BufWriter::new(file);
    let run = random_alnum(6).to_ascii_uppercase();
    for (i, (owner, o)) in orders.iter().enumerate() {
        let txid = format!("4200BENCH{run}{i:012}");
        writeln!(w, "{}", notify_xml(&cfg, o, &openid_of(*owner), &txid)).with_context(wrote)?;
    }
    w.flush().with_context(wrote)?;
    let users = taken.orders.iter().filter(|v| !v.is_empty()).count();
    eprintln!(
        "bench-notifies: {count} notifies in {} ({} orders listed, {} created, of {users} user{})",
        out.display(),
        taken.listed,
        taken.created,
        if users == 1 { "" } else { "s" }
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

async fn count_of(api: &Api, status: &str) -> anyhow::Result<u64> {
    let mut n = 0u64;
    api.each_order(status, |_| {
        n += 1;
        true
    })
    .await?;
    Ok(n)
}

async fn count(owners: &Owners, status: &str) -> anyhow::Result<()> {
    let n = match owners {
        Owners::Caller(api) => count_of(api, status).await?,
        Owners::Crowd(api, tokens) => {
            let mut per_user = futures::stream::iter(tokens)
                .map(|(line, token)| {
                    let api = api.as_user(token);
                    async move {
                        count_of(&api, status).await.with_context(|| {
                            format!("the user on line {} of --token-list", line + 1)
                        })
                    }
                })
                .buffer_unordered(IN_FLIGHT);
            let mut n = 0;
            while let Some(k) = per_user.next().await {
                n += k?;
            }
            n
        }
    };
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
    let owners = |token_list: &Option<PathBuf>| -> anyhow::Result<Owners> {
        let api = Api {
            client: reqwest::Client::builder()
                .no_proxy()
                .timeout(timeout)
                .connect_timeout(timeout)
                .build()
                .context("cannot build the HTTP client")?,
            base: base.clone(),
            auth: String::new(),
        };
        match (&cli.token, token_list) {
            (Some(_), Some(_)) => {
                bail!("--token (or BENCH_TOKEN) and --token-list: use one of them")
            }
            (Some(token), None) => Ok(Owners::Caller(api.as_user(token))),
            (None, Some(path)) => Ok(Owners::Crowd(api, read_tokens(path)?)),
            (None, None) => {
                bail!("make and count need --token (or BENCH_TOKEN) or --token-list")
            }
        }
    };
    match &cli.command {
        Command::Make {
            count: n,
            out,
            openid,
            token_list,
            prefix,
            per_user,
        } => {
            let openid = match token_list {
                Some(_) => Openid::Prefix(prefix),
                None => Openid::Fixed(openid),
            };
            make(&owners(token_list)?, *n, out, openid, *per_user).await
        }
        Command::Count { status, token_list } => count(&owners(token_list)?, status).await,
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

    #[test]
    fn token_lists_keep_line_numbers() {
        let t = parse_tokens("a\n  b \n\nc\r\n");
        let want = [(0, "a"), (1, "b"), (3, "c")].map(|(i, t)| (i, t.to_string()));
        assert_eq!(t, want);
        assert!(parse_tokens("\n \n").is_empty());
    }

    #[test]
    fn crowd_must_cover_the_count() {
        assert!(check_crowd(10, 45, 450).is_ok());
        let e = check_crowd(10, 45, 451).expect_err("one order short");
        assert!(e.to_string().contains("at least 11 users"), "{e}");
        assert!(check_crowd(10, 0, 1).is_err());
    }

    #[test]
    fn users_create_only_what_is_still_missing() {
        let need = Need(Cell::new(100));
        assert_eq!(need.take(10, 35), 35, "room for 35 more");
        assert_eq!(need.take(45, 0), 0, "a full user creates none");
        assert_eq!(need.take(0, 45), 10, "the last 10");
        assert_eq!(need.take(3, 42), 0, "none once enough are reserved");
        assert_eq!(need.0.get(), 0);
    }

    #[test]
    fn notifies_alternate_between_owners() {
        let per_owner = vec![vec!['a', 'b', 'c'], vec![], vec!['x']];
        assert_eq!(
            interleave(&per_owner, 10),
            [(0, 'a'), (2, 'x'), (0, 'b'), (0, 'c')]
        );
        assert_eq!(interleave(&per_owner, 2), [(0, 'a'), (2, 'x')]);
    }
}
