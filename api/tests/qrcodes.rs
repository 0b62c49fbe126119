//! Mini-program codes through the simulator, cached locally and in object storage
//! (`file://`, and S3 against a real S3 API served by moto). Runs on SQLite, or on
//! MariaDB + Redis with CAMPUS_TEST_MODE=mariadb.

mod common;

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use actix_web::ResponseError as _;
use campus_impl::qrcodes::mini_code::content_hash;
use campus_impl::wechat::wxacode::WxaCodeParams;
use common::{Options, TestApp};
use serde_json::Value;

const PAGE: &str = "pages/index/index";

struct Got {
    status: u16,
    body: Value,
    x_cache: String,
    retry_after: Option<String>,
}

async fn code(app: &TestApp, token: &str, query: &str) -> Got {
    let r = app
        .client
        .get(app.url(&format!("/api/v1/qrcode?{query}")))
        .bearer_auth(token)
        .send()
        .await
        .expect("qrcode request");
    let header = |name: &str| {
        r.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let x_cache = header("x-cache").unwrap_or_default();
    let retry_after = header("retry-after");
    let status = r.status().as_u16();
    let body = r.json().await.unwrap_or(Value::Null);
    Got {
        status,
        body,
        x_cache,
        retry_after,
    }
}

fn url_of(g: &Got) -> String {
    assert_eq!(g.status, 200, "{}", g.body);
    g.body["url"].as_str().expect("url").to_string()
}

fn err_code(g: &Got) -> &str {
    g.body["error"]["code"].as_str().unwrap_or("")
}

/// GETs an image URL: (status, content type, cache-control, bytes).
async fn fetch(app: &TestApp, url: &str) -> (u16, String, String, Vec<u8>) {
    let r = app.client.get(url).send().await.expect("image request");
    let h = |n: &str| {
        r.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let (ct, cc) = (h("content-type"), h("cache-control"));
    let status = r.status().as_u16();
    (status, ct, cc, r.bytes().await.expect("body").to_vec())
}

async fn metrics_of(app: &TestApp) -> String {
    let r = app.client.get(app.url("/metrics")).send().await;
    r.expect("metrics").text().await.expect("text")
}

fn assert_png(bytes: &[u8]) {
    assert!(
        bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "not a PNG: {:?}",
        &bytes[..bytes.len().min(40)]
    );
}

fn wxa_calls(app: &TestApp) -> u64 {
    app.sim.calls("getwxacodeunlimit")
}

/// Files under `dir`, recursively (the local cache and the file store).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(rd) = std::fs::read_dir(dir) else {
        return out;
    };
    for e in rd.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

fn store_dir(app: &TestApp) -> PathBuf {
    PathBuf::from(
        app.settings
            .storage_url
            .strip_prefix("file://")
            .expect("file storage"),
    )
}

fn object_name(app: &TestApp, scene: &str, page: &str) -> String {
    let p = WxaCodeParams::parse(Some(scene), Some(page), None, None, None).expect("valid");
    format!("{}.png", content_hash(&app.sim.config().appid, &p))
}

#[actix_web::test]
async fn file_storage_makes_serves_and_caches() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-file").await;

    let first = code(&app, &token, &format!("scene=order%3D42&page={PAGE}")).await;
    let url = url_of(&first);
    assert_eq!(first.x_cache, "MISS");
    assert_eq!(wxa_calls(&app), 1);
    let name = object_name(&app, "order=42", PAGE);
    assert_eq!(url, app.url(&format!("/images/{name}")));

    let (status, ct, cc, bytes) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "image/png");
    assert!(cc.contains("max-age=31536000"), "{cc}");
    assert_png(&bytes);
    assert_eq!(
        std::fs::read(store_dir(&app).join(&name)).expect("stored"),
        bytes
    );

    let cached = files_under(&app.settings.qr_cache_dir);
    assert_eq!(
        cached.len(),
        1,
        "one local copy, no pending or temporary file: {cached:?}"
    );
    assert!(cached[0].ends_with(&name));
    assert_eq!(std::fs::read(&cached[0]).expect("cached"), bytes);

    let again = code(&app, &token, &format!("scene=order%3D42&page={PAGE}")).await;
    assert_eq!(url_of(&again), url);
    assert_eq!(again.x_cache, "HIT");
    assert_eq!(wxa_calls(&app), 1, "served from the cache");

    // The same parameters spelled differently (explicit defaults) are the same code.
    let explicit = code(
        &app,
        &token,
        &format!("scene=order%3D42&page={PAGE}&width=430&env_version=release&check_path=true"),
    )
    .await;
    assert_eq!(url_of(&explicit), url);
    // Another width is another picture.
    let wide = code(
        &app,
        &token,
        &format!("scene=order%3D42&page={PAGE}&width=600"),
    )
    .await;
    assert_ne!(url_of(&wide), url);
    assert_eq!(wxa_calls(&app), 2);

    // Conditional GET: the name is the content hash.
    let etag = app
        .client
        .get(&url)
        .send()
        .await
        .expect("get")
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .expect("etag")
        .to_string();
    let r = app
        .client
        .get(&url)
        .header("If-None-Match", &etag)
        .send()
        .await
        .expect("conditional get");
    assert_eq!(r.status(), 304);

    // A restart keeps nothing in memory: the local cache answers, WeChat is not called.
    let restarted = TestApp::spawn_with(Options {
        sim: Some(app.sim.clone()),
        tweak: {
            let (store, cache) = (
                app.settings.storage_url.clone(),
                app.settings.qr_cache_dir.clone(),
            );
            Box::new(move |s| {
                s.storage_url = store.clone();
                s.qr_cache_dir = cache.clone();
            })
        },
        ..Options::default()
    })
    .await;
    let t2 = restarted.login("qr-file").await;
    let after = code(&restarted, &t2, &format!("scene=order%3D42&page={PAGE}")).await;
    assert_eq!(after.status, 200, "{}", after.body);
    assert_eq!(after.x_cache, "HIT");
    assert_eq!(wxa_calls(&app), 2);
    let heads = "storage_ops_total{op=\"head\"";
    assert!(metrics_of(&app).await.contains(heads));
    assert!(
        !metrics_of(&restarted).await.contains(heads),
        "answered by the local cache, not the store"
    );
}

#[actix_web::test]
async fn images_route_refuses_anything_but_code_names() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-paths").await;
    url_of(&code(&app, &token, "scene=x&page=pages/a").await);
    let name = object_name(&app, "x", "pages/a");
    std::fs::write(store_dir(&app).join("secret.txt"), b"not for you").expect("write");
    for path in [
        "/images/secret.txt".to_string(),
        "/images/..%2F..%2Fetc%2Fpasswd".to_string(),
        "/images/%2E%2E%2Fsecret.txt".to_string(),
        format!("/images/{}", name.to_uppercase()),
        format!("/images/{}", name.replace(".png", ".gif")),
        format!("/images/{name}%231"),
        format!("/images/{}", "0".repeat(64) + ".png"),
    ] {
        let r = app.client.get(app.url(&path)).send().await.expect("get");
        assert_eq!(r.status(), 404, "{path}");
        let v: Value = r.json().await.expect("contract shape");
        assert_eq!(v["error"]["code"], "not_found", "{path}");
    }
    let r = app
        .client
        .get(app.url("/api/v1/qrcode?scene=x&page=pages/a"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401, "a token is required");
    let doc = app.openapi().await;
    for path in ["/api/v1/qrcode", "/images/{key}"] {
        assert!(doc["paths"][path].is_object(), "{path} documented");
    }
}

#[actix_web::test]
async fn concurrent_identical_requests_make_one_call() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-herd").await;
    let q = format!("scene=poster%3Ddorm5&page={PAGE}");
    let all = futures::future::join_all((0..100).map(|_| code(&app, &token, &q))).await;
    let urls: std::collections::BTreeSet<String> = all.iter().map(url_of).collect();
    assert_eq!(urls.len(), 1, "{urls:?}");
    assert_eq!(wxa_calls(&app), 1);
    let (status, _, _, bytes) = fetch(&app, urls.first().expect("one url")).await;
    assert_eq!(status, 200);
    assert_png(&bytes);
}

#[actix_web::test]
async fn two_instances_share_the_store() {
    let shared = tempfile::tempdir().expect("tempdir");
    let store = format!("file://{}", shared.path().join("store").display());
    let sim = common::sim_for_tests().await;
    let spawn = |sim: test_demo::sim::SimHandle| {
        let store = store.clone();
        TestApp::spawn_with(Options {
            sim: Some(sim),
            tweak: Box::new(move |s| s.storage_url = store.clone()),
            ..Options::default()
        })
    };
    let a = spawn(sim.clone()).await;
    let b = spawn(sim.clone()).await;
    assert_ne!(a.settings.qr_cache_dir, b.settings.qr_cache_dir);
    let ta = a.login("qr-two-a").await;
    let tb = b.login("qr-two-b").await;

    let ua = url_of(&code(&a, &ta, &format!("scene=shared&page={PAGE}")).await);
    let gb = code(&b, &tb, &format!("scene=shared&page={PAGE}")).await;
    let ub = url_of(&gb);
    assert_eq!(gb.x_cache, "HIT");
    assert_eq!(
        sim.calls("getwxacodeunlimit"),
        1,
        "b found a's code in the store"
    );
    assert_eq!(
        ua.rsplit('/').next(),
        ub.rsplit('/').next(),
        "one object, each server's own URL"
    );
    let (sa, _, _, ba) = fetch(&a, &ua).await;
    let (sb, _, _, bb) = fetch(&b, &ub).await;
    assert_eq!((sa, sb), (200, 200));
    assert_eq!(ba, bb);
}

#[actix_web::test]
async fn bad_input_is_422_without_a_wechat_call() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-bad").await;
    let long = "x".repeat(33);
    for q in [
        format!("page={PAGE}"),
        format!("scene=&page={PAGE}"),
        format!("scene={long}&page={PAGE}"),
        format!("scene=a%25b&page={PAGE}"),
        format!("scene=a%20b&page={PAGE}"),
        format!("scene=%E4%B8%AD&page={PAGE}"),
        "scene=ok&page=/pages/index/index".to_string(),
        "scene=ok&page=pages/index/index%3Fid%3D1".to_string(),
        format!("scene=ok&page={PAGE}&width=279"),
        format!("scene=ok&page={PAGE}&width=1281"),
        format!("scene=ok&page={PAGE}&width=big"),
        format!("scene=ok&page={PAGE}&env_version=beta"),
        format!("scene=ok&page={PAGE}&check_path=maybe"),
    ] {
        let g = code(&app, &token, &q).await;
        assert_eq!(
            (g.status, err_code(&g)),
            (422, "validation_failed"),
            "{q}: {}",
            g.body
        );
        assert!(g.body["error"]["message"].is_string());
    }
    assert_eq!(wxa_calls(&app), 0);
    // The limits themselves are fine.
    let edge = format!(
        "scene={}&page={PAGE}&width=1280",
        "a-Z_9!#$&'()*+,/:;=?@.~"
            .replace('#', "%23")
            .replace('&', "%26")
            .replace('+', "%2B")
    );
    url_of(&code(&app, &token, &edge).await);
    url_of(&code(&app, &token, &format!("scene={}&width=280", "y".repeat(32))).await);
    assert_eq!(wxa_calls(&app), 2);
}

#[actix_web::test]
async fn wechat_errors_are_clear_and_never_cached() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-wechat-err").await;
    let q = "scene=s1&page=pages/unpublished";
    let g = code(&app, &token, q).await;
    assert_eq!(
        (g.status, err_code(&g)),
        (422, "page_not_published"),
        "{}",
        g.body
    );
    assert!(
        g.body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("41030")),
        "{}",
        g.body
    );
    assert!(files_under(&store_dir(&app)).is_empty(), "nothing stored");
    assert!(
        files_under(&app.settings.qr_cache_dir).is_empty(),
        "nothing cached locally"
    );
    // Not cached as a failure either: asking again asks WeChat again.
    let g = code(&app, &token, q).await;
    assert_eq!(g.status, 422);
    assert_eq!(wxa_calls(&app), 2);
    // Unpublished pages are allowed when the caller opts out of the check.
    url_of(&code(&app, &token, &format!("{q}&check_path=false")).await);

    // A rejected access token is refreshed once and the call retried: one refused call,
    // one token fetch, one call that succeeds.
    let token_fetches = |app: &TestApp| app.sim.calls("token") + app.sim.calls("stable_token");
    let (fetches, calls) = (token_fetches(&app), wxa_calls(&app));
    app.sim.invalidate_access_tokens();
    let g = code(&app, &token, "scene=after-40001&page=pages/a").await;
    assert_eq!(g.status, 200, "{}", g.body);
    assert_eq!(g.x_cache, "MISS");
    assert_eq!(token_fetches(&app), fetches + 1, "refreshed once");
    assert_eq!(
        wxa_calls(&app),
        calls + 2,
        "the refused call, then one retry"
    );
    let (s, _, _, bytes) = fetch(&app, &url_of(&g)).await;
    assert_eq!(s, 200);
    assert_png(&bytes);
}

#[test]
fn rate_limit_is_503_with_retry_after() {
    use campus_impl::qrcodes::MiniCodeError;
    use campus_impl::wechat::wxacode::WxaCodeError;
    let e: campus_api::error::ApiError =
        MiniCodeError::from(WxaCodeError::RateLimited(45009)).into();
    let r = e.error_response();
    assert_eq!(r.status(), 503);
    assert!(r.headers().get("retry-after").is_some());
    assert_eq!(e.code, "wechat_rate_limited");
}

#[actix_web::test]
async fn file_storage_down_is_503_and_recovers() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-down").await;
    let root = store_dir(&app);

    // The store cannot answer at all: no WeChat call, since the image could go nowhere.
    std::fs::remove_dir_all(&root).expect("rm store");
    std::fs::write(&root, b"not a directory").expect("break store");
    let g = code(&app, &token, "scene=down1&page=pages/a").await;
    assert_eq!(
        (g.status, err_code(&g)),
        (503, "service_unavailable"),
        "{}",
        g.body
    );
    assert!(g.retry_after.is_some());
    assert!(
        !g.body.to_string().contains("not a directory") && !g.body.to_string().contains("/tmp"),
        "causes are logged, not returned: {}",
        g.body
    );
    assert_eq!(wxa_calls(&app), 0);
    std::fs::remove_file(&root).expect("unbreak");
    std::fs::create_dir_all(&root).expect("store back");
    let g = code(&app, &token, "scene=down1&page=pages/a").await;
    let (s, _, _, bytes) = fetch(&app, &url_of(&g)).await;
    assert_eq!(s, 200);
    assert_png(&bytes);
    assert_eq!(wxa_calls(&app), 1);

    // The store answers "not found" but the upload fails (a directory squats the name):
    // 503 after the retries, and WeChat's image is kept so recovery needs no new call.
    let name = object_name(&app, "down2", "pages/a");
    std::fs::create_dir(root.join(&name)).expect("squat");
    let g = code(&app, &token, "scene=down2&page=pages/a").await;
    assert_eq!(
        (g.status, err_code(&g)),
        (503, "service_unavailable"),
        "{}",
        g.body
    );
    assert_eq!(wxa_calls(&app), 2);
    std::fs::remove_dir(root.join(&name)).expect("unsquat");
    let g = code(&app, &token, "scene=down2&page=pages/a").await;
    let url = url_of(&g);
    assert_eq!(g.x_cache, "HIT", "uploaded from the kept image");
    assert_eq!(wxa_calls(&app), 2);
    let (s, _, _, bytes) = fetch(&app, &url).await;
    assert_eq!(s, 200);
    assert_png(&bytes);
    assert!(
        files_under(&root)
            .iter()
            .all(|p| !p.to_string_lossy().contains('#')),
        "no staging file left in the store"
    );
}

/// Hits are served from the cache without asking WeChat again; how much faster a hit is
/// than a cold generation is measured by `bench/run`, not asserted here.
#[actix_web::test]
async fn cache_hits_make_no_wechat_call() {
    let app = TestApp::spawn().await;
    let token = app.login("qr-hits").await;
    let mut urls = Vec::new();
    for i in 0..15 {
        let g = code(&app, &token, &format!("scene=hit{i}&page={PAGE}")).await;
        assert_eq!(g.x_cache, "MISS");
        urls.push(url_of(&g));
    }
    for i in 0..300 {
        let g = code(&app, &token, &format!("scene=hit{}&page={PAGE}", i % 15)).await;
        assert_eq!(g.x_cache, "HIT");
        assert_eq!(url_of(&g), urls[i % 15], "the same image each time");
    }
    assert_eq!(wxa_calls(&app), 15);
}

// ---------------------------------------------------------------- S3 (moto)

const BUCKET: &str = "campus-codes";

/// A moto server (a real S3 API) on its own port, killed on drop.
struct Moto {
    port: u16,
    child: Option<Child>,
}

fn moto_binary() -> String {
    std::env::var("MOTO_SERVER").unwrap_or_else(|_| "moto_server".into())
}

impl Moto {
    async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("free port")
            .port();
        let mut m = Moto { port, child: None };
        m.restart().await;
        m
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    async fn restart(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new(moto_binary())
            .args(["-H", "127.0.0.1", "-p", &self.port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot run {} ({e}); install it with pip install 'moto[server]' (.ci/run does)",
                    moto_binary()
                )
            });
        self.child = Some(child);
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = client.put(format!("{}/{BUCKET}", self.base())).send().await
                && r.status().is_success()
            {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "moto did not come up on {}",
                self.port
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        // The URLs handed out are read anonymously (by WeChat, browsers, a CDN), as from
        // a public-read bucket in production.
        let policy = serde_json::json!({
            "Version": "2012-10-17",
            "Statement": [{"Sid": "PublicRead", "Effect": "Allow", "Principal": "*",
                "Action": "s3:GetObject", "Resource": format!("arn:aws:s3:::{BUCKET}/*")}]
        });
        let r = client
            .put(format!("{}/{BUCKET}?policy", self.base()))
            .json(&policy)
            .send()
            .await
            .expect("bucket policy");
        assert!(r.status().is_success(), "bucket policy: {}", r.status());
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        self.kill();
    }
}

fn s3_options(moto: &Moto, sim: Option<test_demo::sim::SimHandle>) -> Options {
    let url = format!(
        "s3://{BUCKET}?endpoint={base}&region=us-east-1&public_base={base}/{BUCKET}",
        base = moto.base()
    );
    Options {
        sim,
        tweak: Box::new(move |s| {
            s.storage_url = url.clone();
            s.aws_access_key_id = Some("testing".into());
            s.aws_secret_access_key = Some("testing".into());
        }),
        ..Options::default()
    }
}

#[actix_web::test]
async fn s3_storage_round_trip_shared_cache_outage_and_recovery() {
    let mut moto = Moto::start().await;
    let sim = common::sim_for_tests().await;
    let app = TestApp::spawn_with(s3_options(&moto, Some(sim.clone()))).await;
    let token = app.login("qr-s3").await;

    let first = code(&app, &token, &format!("scene=s3%3D1&page={PAGE}")).await;
    let url = url_of(&first);
    assert_eq!(first.x_cache, "MISS");
    let name = object_name(&app, "s3=1", PAGE);
    assert_eq!(url, format!("{}/{BUCKET}/{name}", moto.base()));
    let (status, ct, cc, bytes) = fetch(&app, &url).await;
    assert_eq!(status, 200);
    assert_eq!(ct, "image/png", "content type stored with the object");
    assert!(cc.contains("immutable"), "cache control stored: {cc}");
    assert_png(&bytes);

    let again = code(&app, &token, &format!("scene=s3%3D1&page={PAGE}")).await;
    assert_eq!(url_of(&again), url);
    assert_eq!(again.x_cache, "HIT");
    assert_eq!(sim.calls("getwxacodeunlimit"), 1);

    // Another instance (its own local cache) finds it in the bucket.
    let other = TestApp::spawn_with(s3_options(&moto, Some(sim.clone()))).await;
    let t2 = other.login("qr-s3-b").await;
    let g = code(&other, &t2, &format!("scene=s3%3D1&page={PAGE}")).await;
    assert_eq!(url_of(&g), url);
    assert_eq!(g.x_cache, "HIT");
    assert_eq!(sim.calls("getwxacodeunlimit"), 1);

    // S3 down: 503 quickly, and no WeChat call.
    moto.kill();
    let t = Instant::now();
    let g = code(&app, &token, &format!("scene=s3%3D2&page={PAGE}")).await;
    assert_eq!(
        (g.status, err_code(&g)),
        (503, "service_unavailable"),
        "{}",
        g.body
    );
    assert!(g.retry_after.is_some());
    assert!(t.elapsed() < Duration::from_secs(10), "{:?}", t.elapsed());
    assert_eq!(sim.calls("getwxacodeunlimit"), 1);

    // Back on the same port (moto keeps nothing: the bucket is made again).
    moto.restart().await;
    let g = code(&app, &token, &format!("scene=s3%3D2&page={PAGE}")).await;
    let url2 = url_of(&g);
    assert_eq!(sim.calls("getwxacodeunlimit"), 2);
    let (status, ct, _, bytes) = fetch(&app, &url2).await;
    assert_eq!((status, ct.as_str()), (200, "image/png"));
    assert_png(&bytes);

    // With S3 storage this server does not serve /images itself.
    let r = app
        .client
        .get(app.url(&format!("/images/{name}")))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 404);
}
