//! Operating the binary as a process: instances that start together on one empty
//! database, `migrate status|revert`, `serve --no-migrate`, JSON logs with the request id
//! and their retention, and `config check`. In both test modes (SQLite file, or a fresh
//! MariaDB database with Redis).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{TempDb, mariadb_mode, redis_url, sim_for_tests};
use serde_json::Value;
use test_demo::sim::SimHandle;

const BIN: &str = env!("CARGO_BIN_EXE_campus-errand");

/// Longest wait for a condition; reaching it means the test failed.
const PATIENCE: Duration = Duration::from_secs(60);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// The environment `serve` needs against the simulator, for `database_url`.
fn serve_env(sim: &SimHandle, files: &Path, database_url: &str) -> BTreeMap<String, String> {
    sim.write_files(files).expect("sim files");
    let c = sim.config();
    let mut env: BTreeMap<String, String> = [
        ("DATABASE_URL", database_url.to_string()),
        ("JWT_SECRET", "ops-test-secret-0123456789abcdefghij".into()),
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
        ("RUST_LOG", "info".into()),
        // The simulator and this server talk over loopback http.
        ("PUBLIC_BASE_URL_CHECK", "off".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    if mariadb_mode() {
        env.insert("REDIS_URL".into(), redis_url());
    }
    env
}

/// A database for this test: a fresh MariaDB database, or a file in `dir`.
fn database(dir: &Path) -> (Option<TempDb>, String) {
    if mariadb_mode() {
        let db = TempDb::create();
        let url = db.url();
        (Some(db), url)
    } else {
        (None, format!("sqlite://{}", dir.join("ops.db").display()))
    }
}

fn command(env: &BTreeMap<String, String>, dir: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--conf-dir",
        &dir.join("no-conf").display().to_string(),
        "--log-dir",
        &dir.join("log").display().to_string(),
    ])
    .args(args)
    .env_clear()
    .env("PATH", std::env::var("PATH").unwrap_or_default())
    .envs(env);
    cmd
}

/// Runs a subcommand to its end.
fn run(env: &BTreeMap<String, String>, dir: &Path, args: &[&str]) -> Output {
    command(env, dir, args).output().expect("binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// A `serve` process; killed when dropped.
struct Server {
    child: Child,
    base: String,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Server {
    fn start(env: &BTreeMap<String, String>, dir: &Path, name: &str, args: &[&str]) -> Self {
        let port = free_port();
        let base = format!("http://127.0.0.1:{port}");
        let mut env = env.clone();
        env.insert("BIND".into(), format!("127.0.0.1:{port}"));
        env.insert("PUBLIC_BASE_URL".into(), base.clone());
        let stdout = dir.join(format!("{name}.out"));
        let stderr = dir.join(format!("{name}.err"));
        let mut all = vec!["serve"];
        all.extend_from_slice(args);
        let child = command(&env, dir, &all)
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .stdin(Stdio::null())
            .spawn()
            .expect("server binary starts");
        Self {
            child,
            base,
            stdout,
            stderr,
        }
    }

    fn output(&self) -> String {
        format!(
            "stdout:\n{}\nstderr:\n{}",
            std::fs::read_to_string(&self.stdout).unwrap_or_default(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits until `/readyz` answers 200; fails if the process exits first.
    async fn ready(&mut self, client: &reqwest::Client) {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("server exited with {status}: {}", self.output());
            }
            if let Ok(r) = client.get(format!("{}/readyz", self.base)).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server never became ready: {}", self.output());
    }

    /// Waits for the process to end by itself; its exit status.
    async fn exits(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + PATIENCE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("server did not exit: {}", self.output());
    }

    /// SIGTERM: a graceful stop, which flushes the log file.
    async fn terminate(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.exits().await;
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("client")
}

/// Two instances started at the same moment on one empty database both migrate (one
/// applies, the other waits on the lock and finds nothing to do) and both serve.
#[actix_web::test]
async fn two_instances_start_together_on_one_empty_database() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = sim_for_tests().await;
    let (_db, url) = database(dir.path());
    let env = serve_env(&sim, &dir.path().join("sim"), &url);
    let client = client();
    let mut a = Server::start(&env, dir.path(), "a", &[]);
    let mut b = Server::start(&env, dir.path(), "b", &[]);
    a.ready(&client).await;
    b.ready(&client).await;
    for s in [&a, &b] {
        let r = client
            .get(format!("{}/api/v1/orders", s.base))
            .send()
            .await
            .expect("request");
        assert_eq!(r.status(), 401, "the API answers on {}", s.base);
    }
    let status = run(&env, dir.path(), &["migrate", "status"]);
    let out = text(&status.stdout);
    assert!(status.status.success(), "{out}");
    assert!(out.contains(" 0 pending"), "{out}");
}

/// `migrate status` lists applied and pending migrations, `serve --no-migrate` refuses
/// a database with pending ones, `migrate revert` runs the last down.sql, and a
/// migrated database serves with `--no-migrate`.
#[actix_web::test]
async fn migrate_status_revert_and_serve_without_migrating() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = sim_for_tests().await;
    let (_db, url) = database(dir.path());
    let env = serve_env(&sim, &dir.path().join("sim"), &url);
    let folders: Vec<String> = {
        let mut v: Vec<String> = std::fs::read_dir(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../dal/migrations/sqlite"
        ))
        .expect("migrations")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
        v.sort();
        v
    };
    let n = folders.len();
    let last = folders.last().expect("a migration").clone();

    let status = |expect_pending: usize| {
        let o = run(&env, dir.path(), &["migrate", "status"]);
        let out = text(&o.stdout);
        assert!(o.status.success(), "{out}{}", text(&o.stderr));
        for f in &folders {
            assert!(out.contains(f.as_str()), "{f} listed: {out}");
        }
        assert!(
            out.contains(&format!(
                "{} applied, {expect_pending} pending",
                n - expect_pending
            )),
            "{out}"
        );
        out
    };
    let out = status(n);
    assert!(out.contains(&format!("pending  {}", folders[0])), "{out}");

    let mut refused = Server::start(&env, dir.path(), "refused", &["--no-migrate"]);
    let code = refused.exits().await;
    assert!(!code.success());
    let why = refused.output();
    assert!(
        why.contains("pending migrations") && why.contains("campus-errand migrate"),
        "{why}"
    );

    let o = run(&env, dir.path(), &["migrate"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).matches("applied ").count(), n);
    let out = status(0);
    assert!(out.contains(&format!("applied  {last}")), "{out}");

    let o = run(&env, dir.path(), &["migrate", "revert"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(text(&o.stdout).trim(), format!("reverted {last}"));
    let out = status(1);
    assert!(out.contains(&format!("pending  {last}")), "{out}");

    let o = run(&env, dir.path(), &["migrate"]);
    assert_eq!(text(&o.stdout).trim(), format!("applied {last}"));
    let o = run(&env, dir.path(), &["migrate"]);
    assert_eq!(text(&o.stdout).trim(), "no pending migrations");

    let mut server = Server::start(&env, dir.path(), "migrated", &["--no-migrate"]);
    server.ready(&client()).await;
}

fn json_lines(text: &str, origin: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            serde_json::from_str(l).unwrap_or_else(|e| panic!("{origin}: not JSON ({e}): {l}"))
        })
        .collect()
}

/// With `LOG_FORMAT=json` every line, on the console and in the file, is one JSON object,
/// and a line logged during a request carries that request's id; `LOG_KEEP_DAYS` prunes
/// the old files.
#[actix_web::test]
async fn json_logs_carry_the_request_id_and_old_files_go() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = sim_for_tests().await;
    let (_db, url) = database(dir.path());
    let mut env = serve_env(&sim, &dir.path().join("sim"), &url);
    env.insert("LOG_FORMAT".into(), "json".into());
    env.insert("LOG_KEEP_DAYS".into(), "3".into());
    let logs = dir.path().join("log");
    std::fs::create_dir_all(&logs).expect("log dir");
    for day in 1..=9 {
        std::fs::write(
            logs.join(format!("campus-errand.log.2026-01-0{day}")),
            "old\n",
        )
        .expect("old log");
    }

    let client = client();
    let mut server = Server::start(&env, dir.path(), "json", &[]);
    server.ready(&client).await;
    // A notify WeChat did not sign is logged (warn) inside the request's span.
    let r = client
        .post(format!("{}/api/v1/pay/notify", server.base))
        .body("<xml><return_code>SUCCESS</return_code></xml>")
        .send()
        .await
        .expect("notify");
    let id = r
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id")
        .to_string();
    let has_id = |lines: &[Value]| {
        lines
            .iter()
            .any(|l| l["span"]["request_id"].as_str() == Some(id.as_str()))
    };
    let deadline = Instant::now() + PATIENCE;
    loop {
        let out = std::fs::read_to_string(&server.stdout).unwrap_or_default();
        // The last line may still be half written.
        let complete = out.rsplit_once('\n').map_or("", |(done, _)| done);
        if has_id(&json_lines(complete, "console")) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no console line with request id {id}: {}",
            server.output()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    server.terminate().await;

    let mut files: Vec<PathBuf> = std::fs::read_dir(&logs)
        .expect("log dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    assert!(
        files.len() <= 3,
        "LOG_KEEP_DAYS=3 keeps at most 3 files: {files:?}"
    );
    let today = files
        .iter()
        .find(|f| std::fs::read_to_string(f).is_ok_and(|t| t != "old\n"))
        .expect("today's log file");
    let lines = json_lines(
        &std::fs::read_to_string(today).expect("log file"),
        "log file",
    );
    assert!(has_id(&lines), "no file line with request id {id}");
    let line = lines
        .iter()
        .find(|l| l["span"]["request_id"].as_str() == Some(id.as_str()))
        .expect("line");
    assert_eq!(line["level"], "WARN", "{line}");
    assert!(
        line["timestamp"].is_string() && line["message"].is_string(),
        "{line}"
    );
}

fn lines_of(o: &Output) -> String {
    format!("{}{}", text(&o.stdout), text(&o.stderr))
}

/// `config check`: the effective settings with secrets as set/unset, every problem named,
/// the exit code non-zero when there is one.
#[actix_web::test]
async fn config_check_names_every_problem() {
    let dir = tempfile::tempdir().expect("dir");
    let sim = sim_for_tests().await;
    let files = dir.path().join("sim");

    // Nothing set: every required setting is named, and the exit code says so.
    let o = run(&BTreeMap::new(), dir.path(), &["config", "check"]);
    let out = lines_of(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    for name in [
        "JWT_SECRET",
        "FIELD_ENCRYPTION_KEY",
        "WECHAT_APPID",
        "WECHAT_SECRET",
        "WECHAT_MCH_ID",
        "WECHAT_PAY_KEY",
        "WECHAT_PAY_CLIENT_CERT",
        "PUBLIC_BASE_URL",
    ] {
        assert!(out.contains(&format!("problem: {name}")), "{name}: {out}");
    }
    assert!(out.contains("JWT_SECRET=unset"), "{out}");

    // Everything right, secrets from files: exit 0, and no secret is printed.
    let mut env = serve_env(
        &sim,
        &files,
        "mysql://campus:db-password@db.internal/campus",
    );
    let jwt = dir.path().join("jwt");
    std::fs::write(&jwt, "jwt-from-a-file-0123456789abcdefghij\n").expect("secret file");
    env.remove("JWT_SECRET");
    env.insert("JWT_SECRET_FILE".into(), jwt.display().to_string());
    env.insert(
        "PUBLIC_BASE_URL".into(),
        "https://errand.example.edu.cn".into(),
    );
    let o = run(&env, dir.path(), &["config", "check"]);
    let out = lines_of(&o);
    assert_eq!(o.status.code(), Some(0), "{out}");
    assert!(out.contains("JWT_SECRET=set"), "{out}");
    assert!(out.contains("WECHAT_PAY_KEY=set"), "{out}");
    let pay_key = sim.config().pay_key.clone();
    for secret in [
        "jwt-from-a-file-0123456789abcdefghij",
        "db-password",
        pay_key.as_str(),
        &"cd".repeat(32),
    ] {
        assert!(!out.contains(secret), "secret shown: {out}");
    }

    // A key that is not the certificate's and a loopback http base: both named.
    let other_key = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../impl/src/wechat/pay/testdata/test_other_key.key"
    );
    let mut bad = env.clone();
    bad.insert("WECHAT_PAY_CLIENT_KEY".into(), other_key.into());
    bad.insert("PUBLIC_BASE_URL".into(), "http://127.0.0.1:8080".into());
    bad.insert("PUBLIC_BASE_URL_CHECK".into(), "on".into());
    let o = run(&bad, dir.path(), &["config", "check"]);
    let out = lines_of(&o);
    assert_eq!(o.status.code(), Some(1), "{out}");
    assert!(
        out.contains("problem: WECHAT_PAY_CLIENT_CERT / WECHAT_PAY_CLIENT_KEY"),
        "{out}"
    );
    assert!(out.contains("do not belong together"), "{out}");
    assert!(out.contains("problem: PUBLIC_BASE_URL"), "{out}");
    assert!(out.contains("2 problem(s)"), "{out}");

    // A secret given twice is refused before anything else.
    let mut twice = env.clone();
    twice.insert("JWT_SECRET".into(), "inline".into());
    let o = run(&twice, dir.path(), &["config", "check"]);
    let out = lines_of(&o);
    assert_eq!(o.status.code(), Some(2), "{out}");
    assert!(out.contains("JWT_SECRET and JWT_SECRET_FILE"), "{out}");
}

/// `/metrics` shows the process, the build, WeChat latency by API and job runs by job.
#[actix_web::test]
async fn metrics_show_process_build_wechat_latency_and_jobs() {
    let app = common::TestApp::spawn().await;
    let jobs = app.ctx.start_jobs();
    app.login("metrics-user").await;
    let deadline = Instant::now() + PATIENCE;
    let body = loop {
        let body = app
            .client
            .get(app.url("/metrics"))
            .send()
            .await
            .expect("metrics")
            .text()
            .await
            .expect("text");
        // Jobs tick once at start; wait for that tick to be counted.
        if body.contains("campus_job_runs_total{job=\"close_expired_orders\"}") {
            break body;
        }
        assert!(Instant::now() < deadline, "no job run counted: {body}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    jobs.abort();
    for needle in [
        "process_cpu_seconds_total ",
        "process_resident_memory_bytes ",
        "process_open_fds ",
        "campus_build_info{git_commit=\"",
        "campus_wechat_call_duration_seconds_bucket{api=\"jscode2session\"",
        "campus_wechat_call_duration_seconds_count{api=\"jscode2session\"} 1",
    ] {
        assert!(body.contains(needle), "{needle} missing: {body}");
    }
    assert!(
        !body.contains("campus_job_failures_total{job=\"close_expired_orders\"}"),
        "a healthy job counts no failure: {body}"
    );
}
