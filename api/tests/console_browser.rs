//! The operators' console in a real browser: headless Chromium driven over WebDriver
//! (chromedriver). Signs in by scanning (the approval made through the API as the admin
//! would from the mini-program), finds an order and refunds it, bans a user, approves a
//! runner application and reads the statistics; screenshots of the main pages go to
//! `docs/console/`.
//!
//! Ignored by default so that a machine without Chromium can run the other tests;
//! `.ci/run` installs `chromium` and `chromium-driver`, starts chromedriver and runs it
//! with `--ignored` (`WEBDRIVER_URL` names the driver; unset, this test starts
//! `chromedriver` from PATH itself and fails if there is none).

mod common;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{ADMIN_OPENID, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use futures::FutureExt;
use serde_json::{Value, json};
use std::panic::AssertUnwindSafe;

const WAIT: Duration = Duration::from_secs(30);

/// chromedriver started by this test, stopped when dropped.
struct Driver(Child);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn webdriver_url() -> (String, Option<Driver>) {
    if let Ok(u) = std::env::var("WEBDRIVER_URL") {
        return (u, None);
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect(
            "chromedriver must be installed (Debian: apt-get install chromium chromium-driver) \
             or WEBDRIVER_URL must name a running WebDriver",
        );
    let driver = Driver(child);
    let url = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    let deadline = Instant::now() + WAIT;
    while client.get(format!("{url}/status")).send().await.is_err() {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (url, Some(driver))
}

async fn browser(webdriver: &str) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({"args": [
            "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--window-size=1280,800", "--lang=en-US", "--force-device-scale-factor=1",
        ]}),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(webdriver)
        .await
        .expect("a WebDriver session with headless Chromium")
}

async fn wait_for(c: &Client, css: &str) -> fantoccini::elements::Element {
    c.wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} never appeared: {e}"))
}

/// Waits until `script` (a function body) returns true in the page.
async fn wait_until(c: &Client, what: &str, script: &str) {
    let deadline = Instant::now() + WAIT;
    loop {
        if c.execute(script, vec![]).await.ok() == Some(Value::Bool(true)) {
            return;
        }
        assert!(Instant::now() < deadline, "never true: {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn screenshot(c: &Client, name: &str) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/console");
    std::fs::create_dir_all(&dir).expect("docs/console");
    let png = c.screenshot().await.expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"));
    std::fs::write(dir.join(format!("{name}.png")), png).expect("write screenshot");
}

async fn click(c: &Client, css: &str) {
    wait_for(c, css).await.click().await.expect("click");
}

async fn type_into(c: &Client, css: &str, text: &str) {
    let e = wait_for(c, css).await;
    e.clear().await.expect("clear");
    e.send_keys(text).await.expect("type");
}

#[actix_web::test]
#[ignore = "needs Chromium and chromedriver; .ci/run runs it with --ignored"]
async fn console_in_a_real_browser() {
    let app = TestApp::spawn().await;
    let admin = app.login(ADMIN_OPENID).await;

    // Some life to look at: a completed errand, a paid one, an unpaid one, a user to
    // ban and a runner application.
    let customer = app.login("browser-customer").await;
    app.post(
        "/api/v1/orders",
        &customer,
        json!({"kind": "errand", "pickup": "Library front desk", "dropoff": "Building 3, Room 210", "fee_fen": 500}),
    )
    .await;
    let runner = app.runner("browser-runner").await;
    let done = app.paid_order(&customer, 400).await;
    let done_id = done["id"].as_i64().expect("id");
    let code = done["pickup_code"].as_str().expect("code").to_string();
    for (step, body) in [
        ("accept", json!({})),
        ("pickup", json!({})),
        ("deliver", json!({"pickup_code": code})),
    ] {
        let (s, b) = app
            .post(&format!("/api/v1/orders/{done_id}/{step}"), &runner, body)
            .await;
        assert_eq!(s, 200, "{step}: {b}");
    }
    app.post(
        &format!("/api/v1/orders/{done_id}/confirm"),
        &customer,
        json!({}),
    )
    .await;
    let order = app.paid_order(&customer, 800).await;
    let order_id = order["id"].as_i64().expect("id");
    let otn = order["out_trade_no"].as_str().expect("otn").to_string();
    let victim = app.login("browser-ban-me").await;
    app.client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(&victim)
        .json(&json!({"nickname": "Ban Me"}))
        .send()
        .await
        .expect("patch");
    let (_, v) = app.get("/api/v1/me", &victim).await;
    let victim_id = v["id"].as_i64().expect("id");
    let applicant = app.login("browser-applicant").await;
    let (_, a) = app
        .post("/api/v1/runners/apply", &applicant, json!({}))
        .await;
    let applicant_id = a["id"].as_i64().expect("id");

    let f = Fixture {
        admin,
        customer,
        victim,
        victim_id,
        applicant,
        applicant_id,
        order_id,
        done_id,
        otn,
    };
    let (webdriver, _driver) = webdriver_url().await;
    let c = browser(&webdriver).await;
    // The browser is closed whatever happens (a failed step must not leave it running).
    let outcome = AssertUnwindSafe(drive(&app, &c, &f)).catch_unwind().await;
    let closed = c.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
    closed.expect("close the browser");
}

struct Fixture {
    admin: String,
    customer: String,
    victim: String,
    victim_id: i64,
    applicant: String,
    applicant_id: i64,
    order_id: i64,
    done_id: i64,
    otn: String,
}

async fn drive(app: &TestApp, c: &Client, f: &Fixture) {
    let Fixture {
        admin,
        customer,
        victim,
        victim_id,
        applicant,
        applicant_id,
        order_id,
        done_id,
        otn,
    } = f;
    let c = c.clone();
    c.goto(&app.url("/admin/")).await.expect("open the console");

    // Sign in by scanning: the page shows a code for its session; the admin approves.
    let signin = wait_for(&c, "#signin[data-session-id]").await;
    let session = signin
        .attr("data-session-id")
        .await
        .expect("attr")
        .expect("session id");
    wait_until(
        &c,
        "the mini-program code is shown",
        "return document.getElementById('signin-qr').naturalWidth > 0;",
    )
    .await;
    screenshot(&c, "sign-in").await;
    let (s, b) = app
        .post(
            &format!("/api/v1/console/sessions/{session}/approve"),
            admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    wait_for(&c, "body[data-signed-in='true']").await;
    let who = wait_for(&c, "#whoami").await.text().await.expect("text");
    assert!(who.contains("Signed in"), "{who}");

    // Orders: find the paid order by its out_trade_no and refund part of it.
    wait_for(&c, &format!("#order-{order_id}")).await;
    wait_for(&c, &format!("#order-{done_id}")).await;
    screenshot(&c, "orders").await;
    type_into(&c, "#orders-q", otn).await;
    click(&c, "#orders-search").await;
    wait_until(
        &c,
        "only the order searched for",
        &format!(
            "const rows = document.querySelectorAll('#orders-rows tr'); \
             return rows.length === 1 && rows[0].id === 'order-{order_id}';"
        ),
    )
    .await;
    type_into(&c, &format!("#order-{order_id} input.fen"), "300").await;
    type_into(
        &c,
        &format!("#order-{order_id} input.reason"),
        "arrived damaged",
    )
    .await;
    click(&c, &format!("#order-{order_id} button.refund")).await;
    wait_until(
        &c,
        "the refund is confirmed on the page",
        "const f = document.getElementById('flash'); \
         return f.className === 'ok' && f.textContent.includes('Refund');",
    )
    .await;
    let deadline = Instant::now() + WAIT;
    loop {
        let (_, o) = app
            .get(&format!("/api/v1/orders/{order_id}"), customer)
            .await;
        if o["refunded_fen"] == 300 {
            break;
        }
        assert!(Instant::now() < deadline, "the refund never settled: {o}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Users: find the user and ban them; their token is refused at once.
    click(&c, "#tab-users").await;
    type_into(&c, "#users-q", "Ban Me").await;
    click(&c, "#users-search").await;
    wait_until(
        &c,
        "only the user searched for",
        &format!(
            "const rows = document.querySelectorAll('#users-rows tr'); \
             return rows.length === 1 && rows[0].id === 'user-{victim_id}';"
        ),
    )
    .await;
    click(&c, &format!("#user-{victim_id} button.ban")).await;
    wait_for(&c, &format!("#user-{victim_id} .pill.banned")).await;
    let (s, b) = app.get("/api/v1/me", victim).await;
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("banned")),
        "{b}"
    );
    type_into(&c, "#users-q", "").await;
    click(&c, "#users-search").await;
    wait_for(&c, &format!("#user-{applicant_id}")).await;
    screenshot(&c, "users").await;

    // Runner applications: approve one.
    click(&c, "#tab-applications").await;
    wait_for(&c, &format!("#application-{applicant_id}")).await;
    screenshot(&c, "applications").await;
    click(&c, &format!("#application-{applicant_id} button.approve")).await;
    wait_until(
        &c,
        "the application is gone",
        &format!("return !document.getElementById('application-{applicant_id}');"),
    )
    .await;
    let (_, me) = app.get("/api/v1/me", applicant).await;
    assert_eq!(me["role"], "runner");

    // Refunds and the statistics.
    click(&c, "#tab-refunds").await;
    wait_for(&c, "#refunds-rows tr[id^='refund-']").await;
    screenshot(&c, "refunds").await;
    click(&c, "#tab-stats").await;
    wait_for(&c, "#stats-total").await;
    wait_until(
        &c,
        "the statistics count today's orders",
        "const t = document.getElementById('stats-total').children; \
         return t[1].textContent === '3' && t[4].textContent === '1';",
    )
    .await;
    let total = wait_for(&c, "#stats-total")
        .await
        .text()
        .await
        .expect("text");
    assert!(total.contains("¥12.00"), "paid 4 + 8 yuan: {total}");
    screenshot(&c, "stats").await;

    // Signing out forgets the token and shows a fresh code.
    click(&c, "#signout").await;
    wait_until(
        &c,
        "a new session after signing out",
        &format!(
            "const s = document.getElementById('signin').dataset.sessionId; \
             return !!s && s !== '{session}';"
        ),
    )
    .await;
}
