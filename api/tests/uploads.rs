//! Image uploads: checked by their bytes, metadata stripped, stored by content hash, sent to
//! WeChat's content check, and shown to others only once its verdict `pass` arrived on the
//! mini-program's message push (`/wechat/mini`). Hostile cases: a 20 MB body, a "PNG" that is
//! HTML, a damaged JPEG, an EXIF location, someone else's order, forged and replayed pushes.

mod common;

use std::time::{Duration, Instant};

use common::TestApp;
use serde_json::{Value, json};
use sha1::{Digest, Sha1};

fn code_of(v: &Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("")
}

/// A small JPEG container: JFIF, an EXIF segment holding `gps`, a comment, an 8x4 frame
/// header, a scan, EOI.
fn jpeg_with_exif(gps: &str) -> Vec<u8> {
    let mut v = vec![0xFF, 0xD8];
    let seg = |v: &mut Vec<u8>, marker: u8, body: &[u8]| {
        v.extend_from_slice(&[0xFF, marker]);
        v.extend_from_slice(&u16::try_from(body.len() + 2).expect("len").to_be_bytes());
        v.extend_from_slice(body);
    };
    seg(&mut v, 0xE0, b"JFIF\0\x01\x01\0\0\x01\0\x01\0\0");
    let mut exif = b"Exif\0\0".to_vec();
    exif.extend_from_slice(gps.as_bytes());
    seg(&mut v, 0xE1, &exif);
    seg(&mut v, 0xFE, b"shot at home");
    seg(&mut v, 0xC0, &[8, 0, 4, 0, 8, 1, 1, 0x11, 0]);
    seg(&mut v, 0xDA, &[1, 1, 0, 0, 0x3F, 0]);
    v.extend_from_slice(&[0x12, 0x34, rand::random::<u8>() & 0x7F, 0xFF, 0xD9]);
    v
}

/// A `multipart/form-data` body as `wx.uploadFile` sends it: text fields, then files.
fn multipart(texts: &[(&str, &str)], files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = format!("----campus{}", rand::random::<u64>());
    let mut body = Vec::new();
    for (name, value) in texts {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
            )
            .as_bytes(),
        );
    }
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"; filename=\"tmp.png\"\r\n\
                 Content-Type: image/png\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

async fn post_form(app: &TestApp, path: &str, token: &str, form: (String, Vec<u8>)) -> u16 {
    app.client
        .post(app.url(path))
        .bearer_auth(token)
        .header("Content-Type", form.0)
        .body(form.1)
        .send()
        .await
        .expect("post")
        .status()
        .as_u16()
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn put(app: &TestApp, path: &str, token: &str, body: Vec<u8>, ctype: &str) -> (u16, Value) {
    let r = app
        .client
        .put(app.url(path))
        .bearer_auth(token)
        .header("Content-Type", ctype)
        .body(body)
        .send()
        .await
        .expect("put");
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

/// Waits for the verdict's round trip (WeChat's download, its push, our write), which a
/// loaded machine (the whole suite at once) can stretch to seconds.
async fn wait_for(app: &TestApp, what: &str, mut done: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(45);
    while !done().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}; media checks: {:?}",
            app.sim.media_checks()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_web::test]
async fn an_avatar_is_stripped_stored_checked_and_then_shown() {
    let app = TestApp::spawn().await;
    let token = app.login("avatar-owner").await;

    let (s, b) = put(
        &app,
        "/api/v1/me/avatar",
        &token,
        jpeg_with_exif("GPS 39.9042N 116.4074E"),
        "image/jpeg",
    )
    .await;
    assert_eq!((s, b["check"].as_str()), (200, Some("pending")), "{b}");
    assert_eq!(
        (b["width"].as_i64(), b["height"].as_i64()),
        (Some(8), Some(4))
    );
    let url = b["url"].as_str().expect("url").to_string();
    // What is served has no EXIF and no comment.
    let served = app
        .client
        .get(&url)
        .send()
        .await
        .expect("get")
        .bytes()
        .await
        .expect("bytes");
    assert!(served.starts_with(&[0xFF, 0xD8]), "a JPEG");
    assert!(!contains(&served, b"GPS"), "the location is gone");
    assert!(!contains(&served, b"shot at home"), "the comment is gone");

    // WeChat downloaded it, and its verdict `pass` came back on the message push.
    wait_for(&app, "the avatar to be shown", async || {
        app.get("/api/v1/me", &token).await.1["avatar_url"] == url.as_str()
    })
    .await;
    let checks = app.sim.media_checks();
    assert_eq!(checks.len(), 1, "{checks:?}");
    assert_eq!(checks[0]["openid"], "avatar-owner");
    assert_eq!(checks[0]["fetched_bytes"], served.len());

    // A second avatar WeChat finds risky is never shown; the first stays.
    app.sim.push_media_verdicts(&["risky"]);
    let pushed = app.sim.calls("media_check_pushed");
    let png = {
        let mut out = Vec::new();
        let mut enc = png::Encoder::new(&mut out, 2, 2);
        enc.set_color(png::ColorType::Rgb);
        let mut w = enc.write_header().expect("header");
        w.write_image_data(&[0u8; 12]).expect("data");
        drop(w);
        out
    };
    // As wx.uploadFile sends it: multipart, the image in `file`.
    let form = multipart(&[("purpose", "avatar")], &[("file", &png)]);
    assert_eq!(
        post_form(&app, "/api/v1/me/avatar", &token, form).await,
        200
    );
    wait_for(&app, "the risky verdict", async || {
        app.sim.calls("media_check_pushed") > pushed
    })
    .await;
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(
        me["avatar_url"],
        url.as_str(),
        "the risky one is not shown: {me}"
    );
}

#[actix_web::test]
async fn hostile_uploads_are_refused_and_store_nothing() {
    let app = TestApp::spawn().await;
    let token = app.login("hostile-uploader").await;
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (
            vec![0xFF; 20 * 1024 * 1024],
            "image/jpeg",
            413,
            "payload_too_large",
        ),
        (
            b"<html><script>alert(1)</script></html>".to_vec(),
            "image/png",
            415,
            "unsupported_media_type",
        ),
        (
            b"\x89PNG\r\n\x1a\n<html></html>".to_vec(),
            "image/png",
            422,
            "invalid_image",
        ),
        (
            jpeg_with_exif("x")[..30].to_vec(),
            "image/jpeg",
            422,
            "invalid_image",
        ),
        (Vec::new(), "image/jpeg", 415, "unsupported_media_type"),
    ];
    for (body, ctype, want, code) in cases {
        let n = body.len();
        let (s, b) = put(&app, "/api/v1/me/avatar", &token, body, ctype).await;
        assert_eq!((s, code_of(&b)), (want, code), "{n} bytes: {b}");
    }
    // Multipart without the `file` field, and a body that is not multipart at all.
    let form = multipart(&[("other", "x")], &[]);
    assert_eq!(
        post_form(&app, "/api/v1/me/avatar", &token, form).await,
        422
    );
    let r = app
        .client
        .post(app.url("/api/v1/me/avatar"))
        .bearer_auth(&token)
        .header("Content-Type", "multipart/form-data; boundary=zzz")
        .body("not multipart")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 400);
    let (s, b) = put(
        &app,
        "/api/v1/me/avatar",
        "forged",
        jpeg_with_exif("x"),
        "image/jpeg",
    )
    .await;
    assert_eq!((s, code_of(&b)), (401, "unauthorized"), "{b}");
    assert!(
        app.sim.media_checks().is_empty(),
        "nothing was stored or checked"
    );
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert!(me["avatar_url"].is_null(), "{me}");
}

#[actix_web::test]
async fn the_runner_proves_delivery_with_a_photo_the_customer_sees_after_the_check() {
    let app = TestApp::spawn().await;
    let customer = app.login("photo-customer").await;
    let runner = app.runner("photo-runner").await;
    let other = app.runner("photo-other-runner").await;
    let o = app.paid_order(&customer, 300).await;
    let id = o["id"].as_i64().expect("id");
    let path = format!("/api/v1/orders/{id}/photo");

    // Not accepted yet: no runner holds it.
    let (s, b) = put(&app, &path, &runner, jpeg_with_exif("x"), "image/jpeg").await;
    assert_eq!((s, code_of(&b)), (404, "not_found"), "{b}");
    let (s, b) = app
        .post(&format!("/api/v1/orders/{id}/accept"), &runner, json!({}))
        .await;
    assert_eq!(s, 200, "{b}");
    // Another runner, and the customer, are not its runner.
    for t in [&other, &customer] {
        let (s, b) = put(&app, &path, t, jpeg_with_exif("x"), "image/jpeg").await;
        assert_eq!((s, code_of(&b)), (404, "not_found"), "{b}");
    }
    let (s, b) = put(
        &app,
        &path,
        &runner,
        jpeg_with_exif("GPS 31.2304N"),
        "image/jpeg",
    )
    .await;
    assert_eq!((s, b["check"].as_str()), (200, Some("pending")), "{b}");
    let url = b["url"].as_str().expect("url").to_string();
    wait_for(&app, "the photo on the order", async || {
        app.get(&format!("/api/v1/orders/{id}"), &customer).await.1["delivery_photo_url"]
            == url.as_str()
    })
    .await;
    let checks = app.sim.media_checks();
    assert_eq!(checks.last().expect("a check")["scene"], 2);

    // Delivered: no more photos.
    let code = app.get(&format!("/api/v1/orders/{id}"), &customer).await.1["pickup_code"]
        .as_str()
        .expect("pickup code")
        .to_string();
    let (s, _) = app
        .post(&format!("/api/v1/orders/{id}/pickup"), &runner, json!({}))
        .await;
    assert_eq!(s, 200);
    let (s, b) = app
        .post(
            &format!("/api/v1/orders/{id}/deliver"),
            &runner,
            json!({"pickup_code": code}),
        )
        .await;
    assert_eq!(s, 200, "{b}");
    let (s, b) = put(&app, &path, &runner, jpeg_with_exif("x"), "image/jpeg").await;
    assert_eq!((s, code_of(&b)), (409, "order_not_in_delivery"), "{b}");
}

#[actix_web::test]
async fn verdicts_in_the_xml_data_format_are_read_too() {
    let app = TestApp::spawn().await;
    app.sim.set_mini_push_xml(true);
    let token = app.login("xml-avatar").await;
    let first = jpeg_with_exif("x");
    // Stored by content: the second image must differ from the first once stripped.
    let second = loop {
        let j = jpeg_with_exif("x");
        if j != first {
            break j;
        }
    };
    let (s, b) = put(&app, "/api/v1/me/avatar", &token, first, "image/jpeg").await;
    assert_eq!(s, 200, "{b}");
    let url = b["url"].as_str().expect("url").to_string();
    wait_for(&app, "the avatar passed in XML", async || {
        app.get("/api/v1/me", &token).await.1["avatar_url"] == url.as_str()
    })
    .await;

    app.sim.push_media_verdicts(&["risky"]);
    let pushed = app.sim.calls("media_check_pushed");
    let (s, _) = put(&app, "/api/v1/me/avatar", &token, second, "image/jpeg").await;
    assert_eq!(s, 200);
    wait_for(&app, "the risky verdict in XML", async || {
        app.sim.calls("media_check_pushed") > pushed
    })
    .await;
    assert_eq!(
        app.get("/api/v1/me", &token).await.1["avatar_url"],
        url.as_str()
    );
}

/// A push to `/wechat/mini` signed with the message-push token, at `ts`.
async fn mini_push(app: &TestApp, body: &str, ts: i64, nonce: &str, token: &str) -> (u16, String) {
    let mut parts = [token, &ts.to_string(), nonce].map(str::to_string);
    parts.sort();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    let r = app
        .client
        .post(app.url(&format!(
            "/wechat/mini?signature={sig}&timestamp={ts}&nonce={nonce}"
        )))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .expect("push");
    let s = r.status().as_u16();
    (s, r.text().await.expect("text"))
}

#[actix_web::test]
async fn forged_replayed_and_unknown_verdicts_change_nothing() {
    let app = TestApp::spawn().await;
    let token = app.login("verdict-target").await;
    // WeChat cannot be reached at upload: the image waits, unshown, for the job to submit
    // its check again.
    app.sim
        .set_api_faults(test_demo::sim::api_faults::ApiFaults {
            error_percent: 100,
            ..Default::default()
        });
    let (s, b) = put(
        &app,
        "/api/v1/me/avatar",
        &token,
        jpeg_with_exif("x"),
        "image/jpeg",
    )
    .await;
    assert_eq!((s, b["check"].as_str()), (200, Some("pending")), "{b}");
    assert!(app.sim.media_checks().is_empty());
    app.sim
        .set_api_faults(test_demo::sim::api_faults::ApiFaults::default());
    let later = campus_dal::time::now() + chrono::Duration::hours(2);
    assert_eq!(
        app.ctx.uploads.resubmit_due(later).await.expect("resubmit"),
        1
    );
    let trace = app.sim.media_checks()[0]["trace_id"]
        .as_str()
        .expect("trace")
        .to_string();
    let url = b["url"].as_str().expect("url").to_string();
    wait_for(&app, "the avatar", async || {
        app.get("/api/v1/me", &token).await.1["avatar_url"] == url.as_str()
    })
    .await;

    let mini_token = app.sim.config().mini_token.clone();
    let now = chrono::Utc::now().timestamp();
    let verdict = |trace: &str, suggest: &str| {
        json!({"ToUserName": "gh_x", "FromUserName": "verdict-target", "CreateTime": now,
               "MsgType": "event", "Event": "wxa_media_check", "trace_id": trace,
               "errcode": 0, "result": {"suggest": suggest, "label": 20002}})
        .to_string()
    };
    // A forged signature, a stale timestamp: refused.
    let (s, _) = mini_push(&app, &verdict(&trace, "risky"), now, "1", "not-the-token").await;
    assert_eq!(s, 403);
    let (s, _) = mini_push(
        &app,
        &verdict(&trace, "risky"),
        now - 3600,
        "2",
        &mini_token,
    )
    .await;
    assert_eq!(s, 403);
    // A correctly signed second verdict on a decided check changes nothing; a nonce is
    // good for one body only.
    let (s, r) = mini_push(&app, &verdict(&trace, "risky"), now, "3", &mini_token).await;
    assert_eq!((s, r.as_str()), (200, "success"));
    let (s, _) = mini_push(&app, &verdict("other", "pass"), now, "3", &mini_token).await;
    assert_eq!(s, 403, "the pair was used for another body");
    // An unknown trace id, a bad suggest, a malformed or verdict-less XML: nothing happens.
    let (s, r) = mini_push(
        &app,
        &verdict("no-such-trace", "pass"),
        now,
        "4",
        &mini_token,
    )
    .await;
    assert_eq!((s, r.as_str()), (200, "success"));
    let (s, _) = mini_push(&app, &verdict(&trace, "maybe"), now, "5", &mini_token).await;
    assert_eq!(s, 400);
    let (s, _) = mini_push(&app, "<xml><MsgType>event</MsgType>", now, "6", &mini_token).await;
    assert_eq!(s, 400);
    let xml_verdict = format!(
        "<xml><MsgType>event</MsgType><Event>wxa_media_check</Event>\
         <trace_id><![CDATA[{trace}]]></trace_id><errcode>0</errcode>\
         <result><suggest>maybe</suggest></result></xml>"
    );
    let (s, _) = mini_push(&app, &xml_verdict, now, "7", &mini_token).await;
    assert_eq!(s, 400);
    let (_, me) = app.get("/api/v1/me", &token).await;
    assert_eq!(me["avatar_url"], url.as_str(), "{me}");
    // The console's URL check.
    let mut parts = [mini_token.as_str(), "1409735669", "1320562132"];
    parts.sort();
    let sig = hex::encode(Sha1::digest(parts.concat().as_bytes()));
    let r = app
        .client
        .get(app.url(&format!(
            "/wechat/mini?signature={sig}&timestamp=1409735669&nonce=1320562132&echostr=e1"
        )))
        .send()
        .await
        .expect("get");
    assert_eq!(r.text().await.expect("text"), "e1");
}
