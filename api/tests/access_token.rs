//! The WeChat access token is shared: two server instances on one Redis, many
//! concurrent callers, exactly one token fetch; a rejected token is replaced once.

mod common;

use common::{Options, TestApp, sim_for_tests};

#[actix_web::test]
async fn two_instances_sharing_redis_fetch_one_token() {
    let sim = sim_for_tests().await;
    let a = TestApp::spawn_with(Options {
        redis: true,
        sim: Some(sim.clone()),
        ..Options::default()
    })
    .await;
    let b = TestApp::spawn_with(Options {
        redis: true,
        sim: Some(sim.clone()),
        ..Options::default()
    })
    .await;
    assert!(a.ctx.cache.is_shared() && b.ctx.cache.is_shared());
    let calls = (0..100).map(|i| {
        let s = if i % 2 == 0 {
            a.ctx.clone()
        } else {
            b.ctx.clone()
        };
        async move { s.mini.access_token().await }
    });
    let tokens: Vec<String> = futures::future::join_all(calls)
        .await
        .into_iter()
        .map(|r| r.expect("token"))
        .collect();
    assert!(tokens.windows(2).all(|w| w[0] == w[1]), "one token for all");
    assert_eq!(
        sim.calls("stable_token") + sim.calls("token"),
        1,
        "exactly one fetch"
    );

    // WeChat invalidates it: the next call with the old token gets 40001, which is
    // replaced once, and the new token is shared again.
    sim.invalidate_access_tokens();
    // This test is about tokens: sends need no user acceptance here.
    sim.set_subscribe_auto_accept(true);
    let body = serde_json::json!({"touser": "o-someone", "template_id": "tmpl", "data": {}});
    let results = futures::future::join_all((0..10).map(|i| {
        let s = if i % 2 == 0 {
            a.ctx.clone()
        } else {
            b.ctx.clone()
        };
        let body = body.clone();
        async move { s.mini.send_subscribe(&body).await }
    }))
    .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    assert_eq!(
        sim.calls("stable_token") + sim.calls("token"),
        2,
        "exactly one refresh after invalidation"
    );
    let t1 = a.ctx.mini.access_token().await.expect("t1");
    let t2 = b.ctx.mini.access_token().await.expect("t2");
    assert_eq!(t1, t2);
    assert_ne!(t1, tokens[0]);
}

/// A private redis-server on a free port, so the test can stop and restart it.
fn start_redis(port: u16) -> std::process::Child {
    let mut child = std::process::Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server must be installed");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return child;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    panic!("redis-server did not start on {port}");
}

#[actix_web::test]
async fn redis_down_is_503_and_recovers() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let mut redis = start_redis(port);
    let url = format!("redis://127.0.0.1:{port}/0");
    let app = TestApp::spawn_with(Options {
        redis: true,
        tweak: Box::new(move |s| s.redis_url = Some(url.clone())),
        ..Options::default()
    })
    .await;
    let ready = |app: &TestApp| {
        let c = app.client.get(app.url("/readyz"));
        async move { c.send().await.expect("readyz").status().as_u16() }
    };
    assert_eq!(ready(&app).await, 200);
    assert!(app.ctx.mini.access_token().await.is_ok());

    redis.kill().expect("kill redis");
    let _ = redis.wait();
    assert_eq!(ready(&app).await, 503);
    let err = app
        .ctx
        .mini
        .access_token()
        .await
        .expect_err("cache is down");
    let api: campus_api::error::ApiError = err.into();
    assert_eq!(
        (api.status.as_u16(), api.code),
        (503, "service_unavailable")
    );

    let mut redis = start_redis(port);
    let mut back = false;
    for _ in 0..50 {
        if ready(&app).await == 200 {
            back = true;
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(back, "readiness recovers when Redis returns");
    assert!(
        app.ctx.mini.access_token().await.is_ok(),
        "token works again"
    );
    let _ = redis.kill();
    let _ = redis.wait();
}
