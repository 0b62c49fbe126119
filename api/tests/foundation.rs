//! Login, tokens, profile, roles, limits and error shapes, against the real
//! server on a random port and the WeChat simulator.

mod common;

use common::{JWT_SECRET, TestApp};
use serde_json::{Value, json};
use test_demo::sim::LoginFault;

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn wechat_login_refusals_are_told_apart() {
    let app = TestApp::spawn().await;
    // 40226: WeChat blocks a high-risk user. "Invalid code, log in again" would loop.
    let code = app.sim.issue_code_with_fault("risky", LoginFault::HighRisk);
    let (s, b) = app
        .post("/api/v1/auth/login", "", json!({"code": code}))
        .await;
    assert_eq!((s, code_of(&b)), (403, "login_blocked"), "{b}");

    // -1: WeChat is busy; the same code works on a retry, so say when to retry.
    let code = app.sim.issue_code_with_fault("unlucky", LoginFault::Busy);
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let b: Value = r.json().await.expect("json");
    assert_eq!(code_of(&b), "wechat_busy", "{b}");
    let (s, b) = app
        .post("/api/v1/auth/login", "", json!({"code": code}))
        .await;
    assert_eq!(s, 200, "{b}");
}

#[actix_web::test]
async fn login_me_and_profile() {
    let app = TestApp::spawn().await;
    let code = app.sim.issue_code("student-1");
    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"code": code}))
        .send()
        .await
        .expect("login");
    assert_eq!(r.status(), 200);
    assert!(r.headers().contains_key("x-request-id"));
    let v: Value = r.json().await.expect("json");
    assert_eq!(v["user"]["role"], "customer");
    assert!(v["user"]["nickname"].is_null());
    assert!(v["expires_at"].as_str().is_some());
    let token = v["token"].as_str().expect("token");

    // The same code again: WeChat says 40163, we say invalid_code.
    let (s, b) = app
        .post("/api/v1/auth/login", "", json!({"code": code}))
        .await;
    assert_eq!((s, code_of(&b)), (401, "invalid_code"));
    let (s, b) = app
        .post("/api/v1/auth/login", "", json!({"code": "never-issued"}))
        .await;
    assert_eq!((s, code_of(&b)), (401, "invalid_code"));

    let (s, me) = app.get("/api/v1/me", token).await;
    assert_eq!(s, 200);
    assert_eq!(me["id"], v["user"]["id"]);

    let r = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(token)
        .json(&json!({"nickname": "Xiao Ming", "phone": "13800138000", "dorm": "Building 5, Room 301"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 200);
    let me: Value = r.json().await.expect("json");
    assert_eq!(me["nickname"], "Xiao Ming");
    assert_eq!(me["phone"], "13800138000");
    assert_eq!(me["dorm"], "Building 5, Room 301");

    // Encryption at rest: the raw row does not hold the phone number or the dorm.
    let id = campus_impl::UserId(me["id"].as_i64().expect("id"));
    let row = app
        .ctx
        .db
        .read(move |c| campus_dal::users::find(c, id).map_err(campus_impl::db::DbError::from))
        .await
        .expect("row")
        .expect("user");
    let raw = format!("{row:?}");
    assert!(!raw.contains("13800138000"), "phone stored in clear: {raw}");
    assert!(!raw.contains("Room 301"), "dorm stored in clear");
    assert!(
        row.phone_enc
            .as_deref()
            .is_some_and(|p| p.starts_with("v1:"))
    );

    // Bad profile input: 422, nothing changed.
    let r = app
        .client
        .patch(app.url("/api/v1/me"))
        .bearer_auth(token)
        .json(&json!({"phone": "call me"}))
        .send()
        .await
        .expect("patch");
    assert_eq!(r.status(), 422);
    let (_, me) = app.get("/api/v1/me", token).await;
    assert_eq!(me["phone"], "13800138000");

    let (s, bind) = app.post("/api/v1/me/bind-code", token, json!({})).await;
    assert_eq!(s, 200);
    assert_eq!(bind["code"].as_str().map(str::len), Some(6));
}

#[actix_web::test]
async fn bad_tokens_are_401() {
    let app = TestApp::spawn().await;
    let token = app.login("student-2").await;
    let (s, b) = app.get("/api/v1/me", "").await;
    assert_eq!((s, code_of(&b)), (401, "unauthorized"));
    let r = app
        .client
        .get(app.url("/api/v1/me"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 401);

    let mut tampered = token.clone().into_bytes();
    let mid = token.find('.').expect("jwt") + 3;
    tampered[mid] = if tampered[mid] == b'A' { b'B' } else { b'A' };
    let (s, b) = app
        .get("/api/v1/me", &String::from_utf8(tampered).expect("utf8"))
        .await;
    assert_eq!((s, code_of(&b)), (401, "unauthorized"));

    // A correctly signed but expired token.
    let issuer = campus_impl::auth::TokenIssuer::new(JWT_SECRET.as_bytes(), 60);
    let (old, _) = issuer.issue_at(
        campus_impl::UserId(1),
        chrono::Utc::now() - chrono::Duration::hours(2),
    );
    let (s, _) = app.get("/api/v1/me", &old).await;
    assert_eq!(s, 401);

    // Signed with another secret.
    let other = campus_impl::auth::TokenIssuer::new(b"someone-else", 3600);
    let (forged, _) = other.issue(campus_impl::UserId(1));
    let (s, _) = app.get("/api/v1/me", &forged).await;
    assert_eq!(s, 401);
}

#[actix_web::test]
async fn runner_application_and_roles() {
    let app = TestApp::spawn().await;
    let student = app.login("student-3").await;
    let (s, b) = app.post("/api/v1/runners/apply", &student, json!({})).await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_i64().expect("id");
    // Only admins approve.
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/runners/{id}/approve"),
            &student,
            json!({}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (403, "forbidden"));
    let (s, _) = app.get("/api/v1/runner/orders/available", &student).await;
    assert_eq!(s, 403);

    let admin = app.login(common::ADMIN_OPENID).await;
    let (_, me) = app.get("/api/v1/me", &admin).await;
    assert_eq!(me["role"], "admin");
    let (s, _) = app
        .post("/api/v1/admin/runners/999999/approve", &admin, json!({}))
        .await;
    assert_eq!(s, 404);
    let (s, b) = app
        .post(
            &format!("/api/v1/admin/runners/{id}/approve"),
            &admin,
            json!({}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["role"], "runner");
    let (s, _) = app.get("/api/v1/runner/orders/available", &student).await;
    assert_eq!(s, 200);
}

#[actix_web::test]
async fn hostile_bodies_get_the_contract_shape() {
    let app = TestApp::spawn().await;
    let token = app.login("student-4").await;

    let r = app
        .client
        .post(app.url("/api/v1/auth/login"))
        .header("content-type", "application/json")
        .body("{\"code\": ")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let b: Value = r.json().await.expect("json body");
    assert_eq!(code_of(&b), "invalid_json");

    let big = "x".repeat(app.settings.max_body_bytes + 10);
    let r = app
        .client
        .post(app.url("/api/v1/orders"))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(format!("{{\"note\": \"{big}\"}}"))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 413);
    let b: Value = r.json().await.expect("json body");
    assert_eq!(code_of(&b), "payload_too_large");

    let (s, b) = app.get("/api/v1/orders/not-a-number", &token).await;
    assert_eq!((s, code_of(&b)), (400, "invalid_path"));
    let (s, b) = app.get("/api/v1/orders?limit=abc", &token).await;
    assert_eq!((s, code_of(&b)), (400, "invalid_query"));
    let (s, b) = app.get("/api/v1/nothing-here", &token).await;
    assert_eq!((s, code_of(&b)), (404, "not_found"));
    // Wrong types inside valid JSON are a validation error.
    let (s, b) = app
        .post(
            "/api/v1/orders",
            &token,
            json!({"kind": "rocket", "pickup": "a", "dropoff": "b", "fee_fen": 1}),
        )
        .await;
    assert_eq!((s, code_of(&b)), (422, "validation_failed"));
}

#[actix_web::test]
async fn health_ready_metrics_openapi() {
    let app = TestApp::spawn().await;
    let r = app
        .client
        .get(app.url("/healthz"))
        .send()
        .await
        .expect("healthz");
    assert_eq!(r.status(), 200);
    assert_eq!(r.json::<Value>().await.expect("json")["status"], "ok");
    let r = app
        .client
        .get(app.url("/readyz"))
        .send()
        .await
        .expect("readyz");
    assert_eq!(r.status(), 200);
    app.login("student-5").await;
    let m = app
        .client
        .get(app.url("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(m.contains("campus_http_requests_total"), "{m}");
    assert!(m.contains("route=\"/api/v1/auth/login\""));
    assert!(m.contains("campus_wechat_calls_total{api=\"jscode2session\"}"));
    assert!(m.contains("campus_db_pool_connections"));
    let doc = app.openapi().await;
    assert!(doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')));
    for p in [
        "/api/v1/auth/login",
        "/api/v1/orders",
        "/api/v1/pay/notify",
        "/api/v1/me",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from OpenAPI");
    }
}

/// Every route the server registers is in the OpenAPI document, and every documented
/// operation is served: read the route attributes from the handlers' source, then ask
/// the running server for each documented path.
#[actix_web::test]
async fn every_served_route_is_documented() {
    let app = TestApp::spawn().await;
    let doc = app.openapi().await;
    let paths = doc["paths"].as_object().expect("paths");
    let documented: Vec<(String, String)> = paths
        .iter()
        .flat_map(|(p, item)| {
            item.as_object()
                .into_iter()
                .flat_map(|m| m.keys())
                .map(move |method| (method.to_string(), p.to_string()))
        })
        .collect();

    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src/routes");
    // Handler modules, including those in subfolders (routes/admin/).
    let mut served = Vec::new();
    let mut files = Vec::new();
    let mut dirs = vec![dir];
    while let Some(d) = dirs.pop() {
        for entry in std::fs::read_dir(&d).expect("routes dir") {
            let path = entry.expect("entry").path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                files.push(path);
            }
        }
    }
    for file in files {
        let src = std::fs::read_to_string(file).expect("source");
        for line in src.lines().map(str::trim) {
            for method in ["get", "post", "patch", "put", "delete"] {
                if let Some(rest) = line.strip_prefix(&format!("#[{method}(\""))
                    && let Some(path) = rest.split('"').next()
                {
                    served.push((method.to_string(), path.to_string()));
                }
            }
        }
    }
    assert!(
        served.len() >= 28,
        "found {} route attributes",
        served.len()
    );
    for (method, path) in &served {
        assert!(
            documented
                .iter()
                .any(|(m, p)| m == method && (p == path || p.ends_with(path.as_str()))),
            "{} {path} is served but not in /api/v1/openapi.json",
            method.to_uppercase()
        );
    }
    assert_eq!(documented.len(), served.len(), "documented: {documented:?}");

    for (method, path) in &documented {
        let url = app.url(
            &path
                .replace("{id}", "1")
                .replace("{user_id}", "1")
                .replace("{date}", "2026-01-02")
                .replace(
                    "{key}",
                    "0000000000000000000000000000000000000000000000000000000000000000.png",
                ),
        );
        let m = reqwest::Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
        let r = app.client.request(m, &url).send().await.expect("request");
        let status = r.status().as_u16();
        let body = r.text().await.unwrap_or_default();
        assert!(
            !(status == 404 && body.contains("no such endpoint")) && status != 405,
            "{} {path} is documented but not served ({status} {body})",
            method.to_uppercase()
        );
    }
}
