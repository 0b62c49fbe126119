//! The rig of the tests that kill the server: the real `campus-errand serve` binary as a
//! child process (so SIGKILL is a real crash) against an in-process WeChat simulator (so
//! WeChat's side survives the kill), on a database of its own. Used by `crash.rs` and
//! `faults.rs`.

use std::collections::BTreeMap;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_demo::sim::{self, SimConfig, SimHandle};

use super::{TempDb, mariadb_mode, redis_url};

pub struct Server {
    pub child: Child,
}

impl Server {
    pub fn start(env: &BTreeMap<String, String>, dir: &std::path::Path) -> Self {
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

    pub fn kill9(&mut self) {
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

/// A WeChat simulator and what a server needs to run against it on a database of its own
/// (a SQLite file in `dir`, or a MariaDB database dropped with this). Servers started from
/// it share that database, so a restart finds what the killed one left.
pub struct Rig {
    pub sim: SimHandle,
    pub base: String,
    pub database_url: String,
    pub env: BTreeMap<String, String>,
    pub client: reqwest::Client,
    pub dir: tempfile::TempDir,
    _db: Option<TempDb>,
}

impl Rig {
    pub fn start_server(&self) -> Server {
        Server::start(&self.env, self.dir.path())
    }

    pub async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Ok(r) = self
                .client
                .get(format!("{}/readyz", self.base))
                .send()
                .await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let err = std::fs::read_to_string(self.dir.path().join("server.err")).unwrap_or_default();
        panic!("server at {} never became ready: {err}", self.base);
    }

    pub async fn login(&self, openid: &str) -> String {
        let code = self.sim.issue_code(openid);
        let v: Value = self
            .client
            .post(format!("{}/api/v1/auth/login", self.base))
            .json(&json!({"code": code}))
            .send()
            .await
            .expect("login")
            .json()
            .await
            .expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    pub fn pools(&self) -> campus_dal::Pools {
        campus_dal::Pools::connect(&self.database_url, 2).expect("pools")
    }
}

/// Starts the simulator with `sim_cfg` and builds the server's environment, `extra_env`
/// on top of what every crash test needs. A `DATABASE_URL` in `extra_env` replaces the
/// rig's own database (a SQLite file in the rig's directory, or a fresh MariaDB database).
pub async fn rig(sim_cfg: SimConfig, extra_env: &[(&str, &str)]) -> Rig {
    let dir = tempfile::tempdir().expect("dir");
    let cfg = SimConfig {
        // Tests sharing one Redis must not share the access token cached under the appid.
        appid: format!("wxc{}", campus_impl::crypto::random_alnum(8).to_lowercase()),
        ..sim_cfg
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
    let own_url = extra_env
        .iter()
        .find(|(k, _)| *k == "DATABASE_URL")
        .map(|(_, v)| v.to_string());
    let (database_url, db) = if let Some(url) = own_url {
        (url, None)
    } else if mariadb_mode() {
        let db = TempDb::create();
        (db.url(), Some(db))
    } else {
        let path = dir.path().join("crash.db");
        (format!("sqlite://{}", path.display()), None)
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
        // A few users drive hundreds of orders and withdrawals: far past the abuse limits,
        // which have tests of their own.
        ("RATE_LIMITS", "off".into()),
        ("MAX_UNPAID_ORDERS", "1000000".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if mariadb_mode() {
        env.insert("REDIS_URL".into(), redis_url());
    }
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string())),
    );
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    Rig {
        sim,
        base,
        database_url,
        env,
        client,
        dir,
        _db: db,
    }
}

/// Polls `cond` until it holds; panics with `what` after `secs`.
pub async fn wait_for(what: &str, secs: u64, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
