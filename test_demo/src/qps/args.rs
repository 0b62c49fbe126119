//! Command-line arguments of `qps` and their validation.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{ArgGroup, Parser, ValueEnum};

/// Longest run accepted for `-d` (and the hard stop of a `-n` run).
pub const MAX_DURATION: Duration = Duration::from_secs(3600);
/// Most connections (or scenario virtual users) accepted for `-c`.
pub const MAX_CONNECTIONS: usize = 10_000;
/// Most requests accepted for `-n`.
pub const MAX_REQUESTS: u64 = 1_000_000_000;
/// Highest `--rate` accepted, in requests per second.
pub const MAX_RATE: f64 = 10_000_000.0;
/// Longest `--timeout` and `--warmup` accepted.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// Largest request body accepted (`--body`, `--body-file`, each line of `--body-list`).
pub const MAX_BODY: usize = 16 * 1024 * 1024;
/// Largest `--body-list` file accepted.
pub const MAX_BODY_LIST: u64 = 1024 * 1024 * 1024;

/// The scenarios `--scenario` can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Scenario {
    /// Each virtual user loops: sim code → login → create order → pay →
    /// simulated payment → poll the order until it is `paid`.
    OrderFlow,
}

/// HTTP load generator for the Campus Errand API (HTTP/1.1, keep-alive).
///
/// Closed loop (default): every connection sends its next request as soon as
/// the previous response arrived. Fixed rate (`--rate N`): requests are
/// scheduled at N/s in total and latency is measured from each request's
/// scheduled send time, so a stalling server shows up in the percentiles
/// (no coordinated omission).
#[derive(Debug, Clone, Parser)]
#[command(
    name = "qps",
    version,
    group(ArgGroup::new("bound").required(true).multiple(true).args(["duration", "requests"])),
    after_help = "Examples:\n  \
        qps --url http://127.0.0.1:8080/healthz -c 64 -d 10s\n  \
        qps --url http://127.0.0.1:8080/api/v1/me --login-code CODE -c 32 -d 30s --rate 2000\n  \
        qps --url http://127.0.0.1:8080/api/v1/orders --token T --body-file order.json -n 10000 --json\n  \
        qps --url http://127.0.0.1:8080/api/v1/pay/notify -H 'Content-Type: text/xml' --body-list notifies.txt -c 64 -d 10s\n  \
        qps --scenario order-flow --url http://127.0.0.1:8080 --sim-url https://127.0.0.1:9443 -c 16 -d 10s\n\n\
        `requests` counts responses (any status); transport errors are counted apart, by kind.\n\
        Targets must be loopback (127.0.0.0/8, ::1, localhost) unless --allow-remote is given."
)]
pub struct Args {
    /// Target URL (http://host:port/path?query). In scenario mode: the server's base URL.
    #[arg(long, env = "QPS_URL")]
    pub url: String,

    /// HTTP method [default: GET, or POST when a body is given].
    #[arg(short = 'X', long)]
    pub method: Option<String>,

    /// Request body (sent with `Content-Type: application/json` unless -H sets one).
    #[arg(short = 'b', long, conflicts_with = "body_file")]
    pub body: Option<String>,

    /// Read the request body from this file.
    #[arg(long, value_name = "FILE", conflicts_with = "body_list")]
    pub body_file: Option<PathBuf>,

    /// One request body per line (empty lines skipped): each request sends the next
    /// line, all connections sharing one sequence, cycling after the last line.
    /// For requests that must differ, e.g. a signed notify per order.
    #[arg(long, value_name = "FILE", conflicts_with = "body")]
    pub body_list: Option<PathBuf>,

    /// Extra request header, `Name: value` (repeatable).
    #[arg(short = 'H', long = "header", value_name = "NAME: VALUE")]
    pub headers: Vec<String>,

    /// Send `Authorization: Bearer <TOKEN>`.
    #[arg(
        long,
        env = "QPS_TOKEN",
        hide_env_values = true,
        conflicts_with = "login_code"
    )]
    pub token: Option<String>,

    /// One session token per line: each request is sent as the next user, all connections
    /// sharing one sequence, cycling after the last line. For many users doing one thing at
    /// once, e.g. a crowd claiming one coupon.
    #[arg(long, value_name = "FILE", conflicts_with_all = ["token", "login_code", "body_list"])]
    pub token_list: Option<PathBuf>,

    /// Log in first (`POST <origin>/api/v1/auth/login {"code": C}`) and use the token it returns.
    #[arg(long, value_name = "CODE")]
    pub login_code: Option<String>,

    /// Concurrent connections (scenario mode: virtual users).
    #[arg(short = 'c', long, default_value_t = 64)]
    pub connections: usize,

    /// Run for this long (e.g. 10s, 500ms, 2m; at most 1h). Warmup comes on top.
    #[arg(short = 'd', long, value_parser = parse_duration)]
    pub duration: Option<Duration>,

    /// Stop after this many measured requests (scenario mode: flows).
    #[arg(short = 'n', long = "requests")]
    pub requests: Option<u64>,

    /// Fixed total rate in requests/s (open loop); latency counts from the scheduled send time.
    #[arg(long)]
    pub rate: Option<f64>,

    /// Print exactly one JSON object on stdout instead of the human summary.
    #[arg(long)]
    pub json: bool,

    /// Per-request timeout (also the connect timeout).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Exclude requests sent during this first period from the results.
    #[arg(long, default_value = "0s", value_parser = parse_duration)]
    pub warmup: Duration,

    /// Allow targets that are not loopback addresses.
    #[arg(long)]
    pub allow_remote: bool,

    /// Event-loop threads [default: number of CPUs].
    #[arg(short = 't', long)]
    pub threads: Option<usize>,

    /// Run a multi-step scenario instead of a single request.
    #[arg(long, value_enum)]
    pub scenario: Option<Scenario>,

    /// Scenario mode: base URL of the WeChat simulator's control API (loopback only).
    #[arg(long, value_name = "URL")]
    pub sim_url: Option<String>,

    /// Hide the progress line even on a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

impl Args {
    /// Checks the bounds and combinations that clap cannot express.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.connections == 0 || self.connections > MAX_CONNECTIONS {
            bail!("-c/--connections must be between 1 and {MAX_CONNECTIONS}");
        }
        if let Some(d) = self.duration {
            if d.is_zero() {
                bail!("-d/--duration must be greater than zero");
            }
            if d > MAX_DURATION {
                bail!("-d/--duration is capped at 1h");
            }
        }
        if let Some(n) = self.requests
            && (n == 0 || n > MAX_REQUESTS)
        {
            bail!("-n/--requests must be between 1 and {MAX_REQUESTS}");
        }
        if let Some(r) = self.rate
            && !(r.is_finite() && r > 0.0 && r <= MAX_RATE)
        {
            bail!("--rate must be a number of requests/s above 0 and at most {MAX_RATE}");
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            bail!("--timeout must be above 0 and at most 10m");
        }
        if self.warmup > MAX_TIMEOUT {
            bail!("--warmup is capped at 10m");
        }
        if let Some(t) = self.threads
            && (t == 0 || t > 256)
        {
            bail!("-t/--threads must be between 1 and 256");
        }
        match self.scenario {
            Some(_) => {
                if self.sim_url.is_none() {
                    bail!(
                        "--scenario needs --sim-url (the WeChat simulator, e.g. https://127.0.0.1:9443)"
                    );
                }
                let unused = [
                    (self.rate.is_some(), "--rate"),
                    (self.method.is_some(), "--method"),
                    (
                        self.body.is_some() || self.body_file.is_some() || self.body_list.is_some(),
                        "--body/--body-file/--body-list",
                    ),
                    (!self.headers.is_empty(), "-H/--header"),
                    (self.token.is_some(), "--token"),
                    (self.token_list.is_some(), "--token-list"),
                    (self.login_code.is_some(), "--login-code"),
                ];
                for (given, name) in unused {
                    if given {
                        bail!(
                            "{name} cannot be used with --scenario (each virtual user logs in itself)"
                        );
                    }
                }
            }
            None => {
                if self.sim_url.is_some() {
                    bail!("--sim-url is only used with --scenario");
                }
            }
        }
        Ok(())
    }

    /// The request body, from `--body` or `--body-file`.
    pub fn body_bytes(&self) -> anyhow::Result<Option<Vec<u8>>> {
        let body = match (&self.body, &self.body_file) {
            (Some(b), _) => Some(b.clone().into_bytes()),
            (None, Some(path)) => Some(
                std::fs::read(path)
                    .with_context(|| format!("cannot read --body-file {}", path.display()))?,
            ),
            (None, None) => None,
        };
        if let Some(b) = &body
            && b.len() > MAX_BODY
        {
            bail!(
                "request body is {} bytes; at most {MAX_BODY} are accepted",
                b.len()
            );
        }
        Ok(body)
    }

    /// The bodies of `--body-list`, one per non-empty line (a trailing `\r` is dropped).
    pub fn body_list_bytes(&self) -> anyhow::Result<Option<Vec<Vec<u8>>>> {
        self.body_list
            .as_deref()
            .map(|path| lines_of(path, "--body-list", "body"))
            .transpose()
    }

    /// The tokens of `--token-list`, one per non-empty line, surrounding blanks dropped.
    pub fn token_list(&self) -> anyhow::Result<Option<Vec<String>>> {
        let Some(path) = self.token_list.as_deref() else {
            return Ok(None);
        };
        lines_of(path, "--token-list", "token")?
            .into_iter()
            .map(|l| {
                String::from_utf8(l)
                    .map(|t| t.trim().to_string())
                    .map_err(|_| {
                        anyhow::anyhow!("--token-list {}: a token is not UTF-8", path.display())
                    })
            })
            .collect::<anyhow::Result<Vec<_>>>()
            .map(Some)
    }
}

/// The non-empty lines of a list file (a trailing `\r` dropped), each at most [`MAX_BODY`]
/// bytes, the file at most [`MAX_BODY_LIST`].
fn lines_of(path: &std::path::Path, flag: &str, item: &str) -> anyhow::Result<Vec<Vec<u8>>> {
    let what = || format!("{flag} {}", path.display());
    let size = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", what()))?
        .len();
    if size > MAX_BODY_LIST {
        bail!(
            "{} is {size} bytes; at most {MAX_BODY_LIST} are accepted",
            what()
        );
    }
    let data = std::fs::read(path).with_context(|| format!("cannot read {}", what()))?;
    let lines: Vec<Vec<u8>> = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
        .filter(|l| !l.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if lines.is_empty() {
        bail!("{} has no {item} (one per line)", what());
    }
    if let Some(big) = lines.iter().find(|b| b.len() > MAX_BODY) {
        bail!(
            "{}: a {item} is {} bytes; at most {MAX_BODY} are accepted",
            what(),
            big.len()
        );
    }
    Ok(lines)
}

/// Parses `10s`, `500ms`, `2m`, `1h`, `1m30s`, `1.5s` or a bare number of seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty duration".into());
    }
    let bad = || format!("invalid duration `{s}` (use e.g. 10s, 500ms, 2m, 1h)");
    if let Ok(secs) = s.parse::<f64>() {
        return secs_to_duration(secs).ok_or_else(bad);
    }
    let mut total = 0.0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        if num_len == 0 {
            return Err(bad());
        }
        let value: f64 = rest[..num_len].parse().map_err(|_| bad())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let factor = match &rest[..unit_len] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" | "sec" | "secs" => 1.0,
            "m" | "min" | "mins" => 60.0,
            "h" | "hr" | "hrs" => 3600.0,
            _ => return Err(bad()),
        };
        total += value * factor;
        rest = &rest[unit_len..];
    }
    secs_to_duration(total).ok_or_else(bad)
}

fn secs_to_duration(secs: f64) -> Option<Duration> {
    // Anything past a day is rejected here; the real caps are checked in `validate`.
    (secs.is_finite() && (0.0..=86_400.0).contains(&secs)).then(|| Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("1.5"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("0s"), Ok(Duration::ZERO));
        for bad in ["", "s", "10x", "-1s", "1e999", "abc", "10 s"] {
            assert!(parse_duration(bad).is_err(), "{bad} should be rejected");
        }
    }

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut v = vec!["qps", "--url", "http://127.0.0.1:1/"];
        v.extend_from_slice(extra);
        Args::try_parse_from(v)
    }

    #[test]
    fn bounds_are_required_and_capped() {
        assert!(args(&[]).is_err(), "-d or -n is required");
        assert!(args(&["-d", "1s"]).is_ok_and(|a| a.validate().is_ok()));
        assert!(args(&["-n", "5"]).is_ok_and(|a| a.validate().is_ok()));
        assert!(args(&["-d", "2h"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-d", "1s", "-c", "0"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-d", "1s", "-c", "10001"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-d", "1s", "--rate", "0"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-d", "1s", "--rate", "NaN"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-n", "0"]).is_ok_and(|a| a.validate().is_err()));
        assert!(args(&["-d", "1s", "--token", "a", "--login-code", "b"]).is_err());
        assert!(
            args(&["-d", "1s", "--scenario", "order-flow"]).is_ok_and(|a| a.validate().is_err()),
            "scenario needs --sim-url"
        );
    }

    #[test]
    fn body_list_reads_lines_and_conflicts() {
        let path = std::env::temp_dir().join(format!("qps-body-list-{}.txt", std::process::id()));
        std::fs::write(&path, "<a/>\r\n\n<b/>\n<c/>").expect("write");
        let p = path.to_str().expect("utf-8 path");
        let a = args(&["-d", "1s", "--body-list", p]).expect("parses");
        assert!(a.validate().is_ok());
        let bodies = a.body_list_bytes().expect("reads").expect("some");
        assert_eq!(
            bodies,
            vec![b"<a/>".to_vec(), b"<b/>".to_vec(), b"<c/>".to_vec()]
        );
        assert!(args(&["-d", "1s", "--body-list", p, "--body", "x"]).is_err());
        assert!(args(&["-d", "1s", "--body-list", p, "--body-file", p]).is_err());
        std::fs::write(&path, "\n\r\n").expect("write");
        assert!(a.body_list_bytes().is_err(), "an empty list is refused");
        let _ = std::fs::remove_file(&path);
        assert!(
            args(&["-d", "1s", "--body-list", "/nonexistent/list"])
                .is_ok_and(|a| a.body_list_bytes().is_err())
        );
    }

    #[test]
    fn token_list_reads_tokens_and_conflicts() {
        let path = std::env::temp_dir().join(format!("qps-token-list-{}.txt", std::process::id()));
        std::fs::write(&path, "t1\r\n\n t2 \n").expect("write");
        let p = path.to_str().expect("utf-8 path");
        let a = args(&["-d", "1s", "--token-list", p]).expect("parses");
        assert_eq!(
            a.token_list().expect("reads"),
            Some(vec!["t1".to_string(), "t2".to_string()])
        );
        assert!(args(&["-d", "1s", "--token-list", p, "--token", "x"]).is_err());
        assert!(args(&["-d", "1s", "--token-list", p, "--login-code", "x"]).is_err());
        assert!(args(&["-d", "1s", "--token-list", p, "--body-list", p]).is_err());
        std::fs::write(&path, "\n").expect("write");
        assert!(a.token_list().is_err(), "an empty list is refused");
        let _ = std::fs::remove_file(&path);
    }
}
