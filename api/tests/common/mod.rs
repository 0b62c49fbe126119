//! Black-box test harness: the real server on a random port, against the WeChat
//! simulator, on SQLite + in-process cache by default or on MariaDB + Redis with
//! `CAMPUS_TEST_MODE=mariadb` (a fresh database per test app).
#![allow(dead_code)]

pub mod rig;

use std::time::Duration;

use campus_api::Application;
use campus_api::demo::use_simulator;
use campus_impl::{AppContext, Settings};
use secrecy::SecretString;
use serde_json::{Value, json};
use test_demo::sim::{self, SimConfig, SimHandle};

pub const JWT_SECRET: &str = "test-jwt-secret-0123456789";
pub const ADMIN_OPENID: &str = "admin-openid";

pub fn mariadb_mode() -> bool {
    let on = std::env::var("CAMPUS_TEST_MODE").is_ok_and(|m| m == "mariadb");
    assert!(
        !on || cfg!(feature = "mysql"),
        "CAMPUS_TEST_MODE=mariadb needs MariaDB support: cargo test --features campus-api/mysql"
    );
    on
}

pub fn mysql_base() -> String {
    std::env::var("CAMPUS_TEST_MYSQL").unwrap_or_else(|_| "mysql://root@127.0.0.1:3306".into())
}

pub fn redis_url() -> String {
    std::env::var("CAMPUS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

fn rand_suffix() -> String {
    campus_impl::crypto::random_alnum(10).to_lowercase()
}

/// A fresh MariaDB database; dropped when the guard goes.
pub struct TempDb {
    pub name: String,
}

impl TempDb {
    pub fn create() -> Self {
        let name = format!("campus_t_{}", rand_suffix());
        mysql_exec(&format!("CREATE DATABASE {name} CHARACTER SET utf8mb4"));
        Self { name }
    }

    pub fn url(&self) -> String {
        format!("{}/{}", mysql_base(), self.name)
    }
}

impl Drop for TempDb {
    fn drop(&mut self) {
        let _ = std::process::Command::new("mariadb")
            .args([
                "-h127.0.0.1",
                "-uroot",
                "-e",
                &format!("DROP DATABASE IF EXISTS {}", self.name),
            ])
            .output();
    }
}

pub fn mysql_exec(sql: &str) {
    let out = std::process::Command::new("mariadb")
        .args(["-h127.0.0.1", "-uroot", "-e", sql])
        .output()
        .expect("the mariadb client must be installed for MariaDB tests");
    assert!(
        out.status.success(),
        "MariaDB at 127.0.0.1:3306 must answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

pub struct TestApp {
    pub base: String,
    pub ctx: AppContext,
    pub sim: SimHandle,
    pub client: reqwest::Client,
    pub settings: Settings,
    handle: actix_web::dev::ServerHandle,
    _dir: tempfile::TempDir,
    _db: Option<TempDb>,
}

pub struct Options {
    pub redis: bool,
    pub sim: Option<SimHandle>,
    pub database_url: Option<String>,
    pub tweak: Box<dyn Fn(&mut Settings)>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            redis: mariadb_mode(),
            sim: None,
            database_url: None,
            tweak: Box::new(|_| {}),
        }
    }
}

pub async fn sim_for_tests() -> SimHandle {
    let cfg = SimConfig {
        // Distinct appids keep tests that share one Redis from sharing an access token
        // (the mini-program's and the official account's are cached under their appids).
        appid: format!("wxt{}", rand_suffix()),
        mp_appid: format!("wxm{}", rand_suffix()),
        ..SimConfig::for_tests()
    };
    sim::start(cfg).await.expect("simulator starts")
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Options::default()).await
    }

    pub async fn spawn_with(opts: Options) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let sim = match opts.sim {
            Some(s) => s,
            None => sim_for_tests().await,
        };
        let mut s = Settings::defaults().expect("defaults");
        // WeChat's notifies go to PUBLIC_BASE_URL, so the port is chosen before the build.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        s.bind = format!("127.0.0.1:{port}");
        s.public_base_url = format!("http://127.0.0.1:{port}");
        let (db, url) = match opts.database_url {
            Some(u) => (None, u),
            None if mariadb_mode() => {
                let db = TempDb::create();
                let u = db.url();
                (Some(db), u)
            }
            None => (
                None,
                format!("sqlite://{}", dir.path().join("test.db").display()),
            ),
        };
        s.database_url = url;
        s.redis_url = opts.redis.then(redis_url);
        s.jwt_secret = Some(SecretString::from(JWT_SECRET));
        s.field_encryption_key = Some(SecretString::from("ab".repeat(32)));
        s.admin_openids = ADMIN_OPENID.into();
        s.qr_cache_dir = dir.path().join("qr");
        s.storage_url = format!("file://{}", dir.path().join("store").display());
        s.pay_reconcile_secs = 1;
        // Tests drive single users through many orders; the limits' own tests set them.
        s.rate_limits = "off".into();
        s.max_unpaid_orders = i64::MAX;
        use_simulator(&mut s, &sim, &dir.path().join("sim")).expect("sim files");
        (opts.tweak)(&mut s);
        let app = Application::build(s.clone()).await.expect("app builds");
        let settings = s;
        let ctx = app.context().clone();
        let handle = app.server_handle();
        actix_web::rt::spawn(app.run_until_stopped());
        TestApp {
            base: format!("http://127.0.0.1:{port}"),
            ctx,
            sim,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(20))
                .build()
                .expect("client"),
            settings,
            handle,
            _dir: dir,
            _db: db,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn stop(&self) {
        self.handle.stop(false).await;
    }

    /// Logs in as `openid` through the simulator; returns the token.
    pub async fn login(&self, openid: &str) -> String {
        let code = self.sim.issue_code(openid);
        let r = self
            .client
            .post(self.url("/api/v1/auth/login"))
            .json(&json!({"code": code}))
            .send()
            .await
            .expect("login");
        assert_eq!(r.status(), 200, "login of {openid}");
        let v: Value = r.json().await.expect("json");
        v["token"].as_str().expect("token").to_string()
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        let r = self
            .client
            .get(self.url(path))
            .bearer_auth(token)
            .send()
            .await
            .expect("get");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// The served OpenAPI document (no token needed).
    pub async fn openapi(&self) -> Value {
        self.client
            .get(self.url("/api/v1/openapi.json"))
            .send()
            .await
            .expect("openapi")
            .json()
            .await
            .expect("json")
    }

    pub async fn post(&self, path: &str, token: &str, body: Value) -> (u16, Value) {
        let r = self
            .client
            .post(self.url(path))
            .bearer_auth(token)
            .json(&body)
            .send()
            .await
            .expect("post");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    /// A runner: logs in, applies, and is approved by the admin.
    pub async fn runner(&self, openid: &str) -> String {
        let t = self.login(openid).await;
        let (s, me) = self.post("/api/v1/runners/apply", &t, json!({})).await;
        assert_eq!(s, 202, "{me}");
        let admin = self.login(ADMIN_OPENID).await;
        let id = me["id"].as_i64().expect("id");
        let (s, b) = self
            .post(
                &format!("/api/v1/admin/runners/{id}/approve"),
                &admin,
                json!({}),
            )
            .await;
        assert_eq!(s, 200, "{b}");
        t
    }

    pub async fn create_order(&self, token: &str, fee: i64) -> Value {
        let (s, o) = self
            .post(
                "/api/v1/orders",
                token,
                json!({"kind": "express", "pickup": "Station A", "dropoff": "Dorm 5", "note": "", "fee_fen": fee, "goods_fen": 0}),
            )
            .await;
        assert_eq!(s, 201, "{o}");
        o
    }

    /// Creates and pays an order through the simulator, waiting for the notify.
    pub async fn paid_order(&self, token: &str, fee: i64) -> Value {
        let o = self.create_order(token, fee).await;
        let id = o["id"].as_i64().expect("id");
        let params = self.pay_params(token, id).await;
        self.sim
            .request_payment(&serde_json::from_value(params).expect("JSAPI parameters"))
            .expect("sim pays");
        self.wait_status(token, id, "paid").await
    }

    /// The JSAPI parameters `POST /orders/{id}/pay` returns for `wx.requestPayment`.
    pub async fn pay_params(&self, token: &str, id: i64) -> Value {
        let (s, p) = self
            .post(&format!("/api/v1/orders/{id}/pay"), token, json!({}))
            .await;
        assert_eq!(s, 200, "{p}");
        p
    }

    pub async fn prepay(&self, token: &str, id: i64) -> String {
        let (s, p) = self
            .post(&format!("/api/v1/orders/{id}/pay"), token, json!({}))
            .await;
        assert_eq!(s, 200, "{p}");
        p["package"]
            .as_str()
            .and_then(|p| p.strip_prefix("prepay_id="))
            .expect("package")
            .to_string()
    }

    /// Moves an order's pay deadline to `secs` from now (negative: past), standing in for
    /// the minutes a real pay window takes to run out.
    pub async fn set_pay_deadline(&self, id: i64, secs: i64) {
        use campus_dal::schema::orders;
        use diesel::prelude::*;
        let at = campus_dal::time::now() + chrono::Duration::seconds(secs);
        let n = self
            .ctx
            .db
            .write(move |c| {
                diesel::update(orders::table.find(id))
                    .set(orders::pay_deadline.eq(at))
                    .execute(c)
                    .map_err(campus_impl::db::DbError::from)
            })
            .await
            .expect("deadline moved");
        assert_eq!(n, 1, "order {id} exists");
    }

    pub async fn wait_status(&self, token: &str, id: i64, want: &str) -> Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let (_, o) = self.get(&format!("/api/v1/orders/{id}"), token).await;
            if o["status"] == want {
                return o;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "order {id} never reached {want}: {o}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}
