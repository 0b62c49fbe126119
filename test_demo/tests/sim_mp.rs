//! Official-account pushes from the simulator, plain and safe mode.

mod sim_support;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use sim_support::start_sim;
use test_demo::sim::crypto::{mp_decrypt, mp_encrypt};
use test_demo::sim::sign::sha1_sorted;
use test_demo::sim::{SimConfig, xml};

#[derive(Clone, Copy, PartialEq)]
enum ReplyMode {
    Good,
    BadSignature,
    Success,
}

/// Each push seen: its query and raw body.
type Seen = Arc<Mutex<Vec<(HashMap<String, String>, String)>>>;

#[derive(Clone)]
struct Endpoint {
    cfg: SimConfig,
    mode: ReplyMode,
    seen: Seen,
}

/// A minimal `/wechat/mp` written from the protocol, answering "echo: <Content>".
async fn handle(req: HttpRequest, body: String, ep: web::Data<Endpoint>) -> HttpResponse {
    let q: HashMap<String, String> = url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect();
    ep.seen
        .lock()
        .expect("lock")
        .push((q.clone(), body.clone()));
    let get = |k: &str| q.get(k).cloned().unwrap_or_default();
    let (token, ts, nonce) = (&ep.cfg.mp_token, get("timestamp"), get("nonce"));
    if sha1_sorted(&[token, &ts, &nonce]) != get("signature") {
        return HttpResponse::Forbidden().finish();
    }
    let safe = get("encrypt_type") == "aes";
    let msg = if safe {
        let Ok(outer) = xml::parse(body.as_bytes()) else {
            return HttpResponse::BadRequest().finish();
        };
        let enc = outer.fields.get("Encrypt").cloned().unwrap_or_default();
        if sha1_sorted(&[token, &ts, &nonce, &enc]) != get("msg_signature") {
            return HttpResponse::Forbidden().finish();
        }
        match mp_decrypt(&ep.cfg.mp_aes_key, &ep.cfg.mp_appid, &enc) {
            Ok(p) => p,
            Err(_) => return HttpResponse::BadRequest().finish(),
        }
    } else {
        body
    };
    let Ok(m) = xml::parse(msg.as_bytes()) else {
        return HttpResponse::BadRequest().finish();
    };
    let reply = xml::build(
        "xml",
        [
            ("ToUserName", m.fields["FromUserName"].as_str()),
            ("FromUserName", m.fields["ToUserName"].as_str()),
            ("CreateTime", "1700000000"),
            ("MsgType", "text"),
            ("Content", &format!("echo: {}", m.fields["Content"])),
        ],
    );
    if !safe {
        return HttpResponse::Ok().content_type("text/xml").body(reply);
    }
    if ep.mode == ReplyMode::Success {
        return HttpResponse::Ok().body("success");
    }
    let enc = mp_encrypt(&ep.cfg.mp_aes_key, &ep.cfg.mp_appid, &reply).expect("encrypts");
    let (rts, rnonce) = ("1700000001", "424242");
    let mut sig = sha1_sorted(&[token, rts, rnonce, &enc]);
    if ep.mode == ReplyMode::BadSignature {
        sig = sig.replace(|c: char| c.is_ascii_digit(), "0");
    }
    HttpResponse::Ok().content_type("text/xml").body(xml::build(
        "xml",
        [
            ("Encrypt", enc.as_str()),
            ("MsgSignature", sig.as_str()),
            ("TimeStamp", rts),
            ("Nonce", rnonce),
        ],
    ))
}

async fn endpoint(cfg: SimConfig, mode: ReplyMode) -> (String, Endpoint) {
    let ep = Endpoint {
        cfg,
        mode,
        seen: Arc::new(Mutex::new(Vec::new())),
    };
    let data = web::Data::new(ep.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .route("/wechat/mp", web::post().to(handle))
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    actix_web::rt::spawn(server);
    (format!("http://127.0.0.1:{port}/wechat/mp"), ep)
}

const MSG: &str = "<xml><ToUserName><![CDATA[gh_campus]]></ToUserName><FromUserName><![CDATA[oMpUser1]]></FromUserName><CreateTime>1700000000</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[help]]></Content><MsgId>1234567890123456</MsgId></xml>";

#[actix_web::test]
async fn plain_mode_push() {
    let sim = start_sim().await;
    let (url, ep) = endpoint(sim.config().clone(), ReplyMode::Good).await;
    let (status, body) = sim.push_mp_message(&url, MSG, false).await.expect("push");
    assert_eq!(status, 200);
    let reply = xml::parse(body.as_bytes()).expect("xml");
    assert_eq!(reply.fields["Content"], "echo: help");
    assert_eq!(reply.fields["ToUserName"], "oMpUser1");
    let seen = ep.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].0["openid"], "oMpUser1");
    assert!(!seen[0].0.contains_key("encrypt_type"));
    assert_eq!(seen[0].1, MSG);
    sim.stop();
}

#[actix_web::test]
async fn safe_mode_push_round_trip() {
    let sim = start_sim().await;
    let (url, ep) = endpoint(sim.config().clone(), ReplyMode::Good).await;
    let (status, body) = sim.push_mp_message(&url, MSG, true).await.expect("push");
    assert_eq!(status, 200);
    let reply = xml::parse(body.as_bytes()).expect("decrypted reply XML");
    assert_eq!(reply.fields["Content"], "echo: help");
    let seen = ep.seen.lock().expect("lock").clone();
    let (q, raw) = &seen[0];
    assert_eq!(q["encrypt_type"], "aes");
    assert!(q.contains_key("msg_signature"));
    let outer = xml::parse(raw.as_bytes()).expect("outer");
    assert_eq!(outer.fields["ToUserName"], "gh_campus");
    assert!(
        !outer.fields.contains_key("Content"),
        "safe mode sends no plaintext"
    );
    sim.stop();
}

#[actix_web::test]
async fn safe_mode_reply_checks() {
    let sim = start_sim().await;
    let (url, _) = endpoint(sim.config().clone(), ReplyMode::BadSignature).await;
    let err = sim
        .push_mp_message(&url, MSG, true)
        .await
        .expect_err("a reply with a bad MsgSignature is refused");
    assert!(err.to_string().contains("MsgSignature"), "{err}");
    let (url, _) = endpoint(sim.config().clone(), ReplyMode::Success).await;
    let (status, body) = sim.push_mp_message(&url, MSG, true).await.expect("push");
    assert_eq!((status, body.as_str()), (200, "success"));
    // A wrong token on our side makes the endpoint answer 403, returned as is.
    let mut other = sim.config().clone();
    other.mp_token = "another".into();
    let (url, _) = endpoint(other, ReplyMode::Good).await;
    let (status, _) = sim.push_mp_message(&url, MSG, false).await.expect("push");
    assert_eq!(status, 403);
    sim.stop();
}
