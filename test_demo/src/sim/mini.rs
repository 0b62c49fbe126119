//! `api.weixin.qq.com`: login, access tokens, mini-program codes, subscribe and customer
//! messages. JSON in and out; errors are `{"errcode": N, "errmsg": "..., rid: ..."}` with
//! HTTP 200, as WeChat answers them.

use std::collections::HashMap;

use actix_web::{HttpRequest, HttpResponse, web};
use base64::Engine as _;
use rand::RngCore;
use serde_json::{Value, json};

use super::qr;
use super::state::{App, CodeError, Shared, TokenError, random_alnum};
use super::subscribe;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sns/jscode2session", web::get().to(jscode2session))
        .route("/cgi-bin/token", web::get().to(token))
        .route("/cgi-bin/stable_token", web::post().to(stable_token))
        .route("/wxa/getwxacodeunlimit", web::post().to(getwxacodeunlimit))
        .route(
            "/cgi-bin/message/subscribe/send",
            web::post().to(subscribe_send),
        )
        .route("/cgi-bin/message/custom/send", web::post().to(custom_send));
}

/// `errmsg` with a request id, the way WeChat writes it.
pub fn err(code: i64, msg: &str) -> HttpResponse {
    let rid = format!(
        "{}-{}-{}",
        random_alnum(8).to_lowercase(),
        random_alnum(8).to_lowercase(),
        random_alnum(8).to_lowercase()
    );
    HttpResponse::Ok()
        .content_type("application/json; encoding=utf-8")
        .json(json!({"errcode": code, "errmsg": format!("{msg} rid: {rid}")}))
}

fn ok(v: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; encoding=utf-8")
        .json(v)
}

fn query(req: &HttpRequest) -> HashMap<String, String> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// An early answer (boxed: responses are large).
type Early = Box<HttpResponse>;

/// Checks appid and secret as WeChat does for login and token calls; tells which app it is.
/// The official account's credentials are accepted only where `allow_mp`.
fn check_app(
    sh: &Shared,
    appid: Option<&str>,
    secret: Option<&str>,
    allow_mp: bool,
) -> Result<App, Early> {
    let (app, want_secret) = match appid {
        None | Some("") => return Err(Box::new(err(41002, "appid missing,"))),
        Some(a) if a == sh.cfg.appid => (App::Mini, &sh.cfg.secret),
        Some(a) if allow_mp && a == sh.cfg.mp_appid => (App::Mp, &sh.cfg.mp_secret),
        Some(_) => return Err(Box::new(err(40013, "invalid appid,"))),
    };
    match secret {
        None | Some("") => Err(Box::new(err(41004, "appsecret missing,"))),
        Some(s) if s != want_secret => Err(Box::new(err(40125, "invalid appsecret,"))),
        Some(_) => Ok(app),
    }
}

async fn jscode2session(req: HttpRequest, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("jscode2session");
    let q = query(&req);
    if let Err(r) = check_app(
        &sh,
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
        false,
    ) {
        return *r;
    }
    if q.get("grant_type").map(String::as_str) != Some("authorization_code") {
        return err(40002, "invalid grant_type,");
    }
    let code = match q.get("js_code") {
        None => return err(41008, "missing code,"),
        Some(c) if c.is_empty() => return err(41008, "missing code,"),
        Some(c) => c,
    };
    let redeemed = sh.lock().redeem_code(code);
    match redeemed {
        Ok(openid) => {
            let mut key = [0u8; 16];
            rand::rng().fill_bytes(&mut key);
            let session_key = base64::engine::general_purpose::STANDARD.encode(key);
            tracing::info!(target: "wechat_sim", %openid, "jscode2session ok");
            ok(json!({"session_key": session_key, "openid": openid}))
        }
        Err(CodeError::Invalid) => err(40029, "invalid code,"),
        Err(CodeError::Used) => err(40163, "code been used,"),
        Err(CodeError::HighRisk) => err(40226, "code blocked, high risk user"),
        Err(CodeError::Busy) => err(-1, "system error"),
    }
}

async fn token(req: HttpRequest, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("token");
    let q = query(&req);
    if q.get("grant_type").map(String::as_str) != Some("client_credential") {
        return err(40002, "invalid grant_type");
    }
    let app = match check_app(
        &sh,
        q.get("appid").map(String::as_str),
        q.get("secret").map(String::as_str),
        true,
    ) {
        Ok(app) => app,
        Err(r) => return *r,
    };
    let (t, exp) = sh.lock().book(app).issue_legacy_token(sh.cfg.token_ttl);
    ok(json!({"access_token": t, "expires_in": exp}))
}

async fn stable_token(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("stable_token");
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(47001, "data format error");
    };
    if v.get("grant_type").and_then(Value::as_str) != Some("client_credential") {
        return err(40002, "invalid grant_type");
    }
    let app = match check_app(
        &sh,
        v.get("appid").and_then(Value::as_str),
        v.get("secret").and_then(Value::as_str),
        true,
    ) {
        Ok(app) => app,
        Err(r) => return *r,
    };
    let force = match v.get("force_refresh") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return err(40097, "invalid args, force_refresh must be a boolean"),
    };
    let res = sh.lock().book(app).stable_token(sh.cfg.token_ttl, force);
    match res {
        Ok((t, exp)) => ok(json!({"access_token": t, "expires_in": exp})),
        Err(code) => err(
            code,
            "reach max api daily quota limit / force_refresh too frequent",
        ),
    }
}

/// The access-token check of every token-taking API: the token says which app calls. An
/// app without the API gets 48001 (the official account's token on a mini-program API, and
/// the other way round).
pub fn check_token_for(req: &HttpRequest, sh: &Shared, allowed: &[App]) -> Result<App, Early> {
    let q = query(req);
    let token = q.get("access_token").map(String::as_str);
    let mut st = sh.lock();
    let mut first_err = None;
    for app in [App::Mini, App::Mp] {
        match st.book(app).check_token(token) {
            Ok(()) if allowed.contains(&app) => return Ok(app),
            Ok(()) => return Err(Box::new(err(48001, "api unauthorized"))),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    let (code, msg) = first_err.unwrap_or(TokenError::Missing).errcode();
    Err(Box::new(err(code, msg)))
}

/// A mini-program API.
fn check_token(req: &HttpRequest, sh: &Shared) -> Result<(), Early> {
    check_token_for(req, sh, &[App::Mini]).map(|_| ())
}

fn json_body(body: &[u8]) -> Result<Value, Early> {
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(Box::new(err(47001, "data format error"))),
    }
}

async fn getwxacodeunlimit(
    req: HttpRequest,
    body: web::Bytes,
    sh: web::Data<Shared>,
) -> HttpResponse {
    sh.count("getwxacodeunlimit");
    if let Err(r) = check_token(&req, &sh) {
        return *r;
    }
    let v = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let scene = match v.get("scene") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Number(n)) => n.to_string(),
        _ => {
            return err(
                40169,
                "invalid length for scene, or the data is not json string",
            );
        }
    };
    if scene.is_empty() || scene.chars().count() > 32 || !scene.chars().all(qr::scene_char_ok) {
        return err(
            40169,
            "invalid length for scene, or the data is not json string",
        );
    }
    let page = match v.get("page") {
        None | Some(Value::Null) => String::new(),
        Some(Value::String(s)) => s.clone(),
        Some(_) => return err(40097, "invalid args, page must be a string"),
    };
    let check_path = match v.get("check_path") {
        None | Some(Value::Null) => true,
        Some(Value::Bool(b)) => *b,
        Some(_) => return err(40097, "invalid args, check_path must be a boolean"),
    };
    let env_version = match v.get("env_version") {
        None | Some(Value::Null) => "release".to_string(),
        Some(Value::String(s)) if matches!(s.as_str(), "release" | "trial" | "develop") => {
            s.clone()
        }
        Some(_) => return err(40097, "invalid args, env_version"),
    };
    if page.starts_with('/') || page.contains('?') || page.len() > 256 {
        return err(41030, "invalid page hint");
    }
    if check_path && page == qr::UNPUBLISHED_PAGE {
        return err(41030, "invalid page hint");
    }
    let width = match v.get("width") {
        None | Some(Value::Null) => 430,
        Some(w) => match w.as_u64() {
            Some(w) if (280..=1280).contains(&w) => w as u32,
            _ => return err(40097, "invalid args, width must be 280 to 1280"),
        },
    };
    let content = qr::wxacode_content(&sh.cfg.appid, &page, &scene, &env_version);
    match qr::render_png(&content, width) {
        Ok(png) => HttpResponse::Ok()
            .content_type("image/png")
            .insert_header(("Cache-Control", "no-cache"))
            .body(png),
        Err(e) => {
            tracing::error!(target: "wechat_sim", error = %e, "QR rendering failed");
            err(-1, "system error")
        }
    }
}

async fn subscribe_send(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("subscribe_send");
    if let Err(r) = check_token(&req, &sh) {
        return *r;
    }
    let v = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    let touser = v.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() {
        return err(40003, "invalid openid");
    }
    let template = v.get("template_id").and_then(Value::as_str).unwrap_or("");
    if template.is_empty() {
        return err(40037, "invalid template_id");
    }
    if let Some(data) = v.get("data")
        && let Err(msg) = subscribe::check_data(data)
    {
        return err(47003, &msg);
    }
    if let Some(state) = v.get("miniprogram_state")
        && !matches!(state.as_str(), Some("developer" | "trial" | "formal"))
    {
        return err(40097, "invalid args, miniprogram_state");
    }
    let mut st = sh.lock();
    // One send per acceptance of this template by this user (`wx.requestSubscribeMessage`).
    if st.refused_subscribe.contains(touser) || !st.take_subscribe_credit(touser, template) {
        return err(43101, "user refuse to accept the msg");
    }
    st.msgid_seq += 1;
    let msgid = 1_700_000_000_000_000u64 + st.msgid_seq;
    st.subscribe_messages.push(v);
    ok(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}

async fn custom_send(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("custom_send");
    // The customer-message API of both the mini-program and the official account.
    if let Err(r) = check_token_for(&req, &sh, &[App::Mini, App::Mp]) {
        return *r;
    }
    let v = match json_body(&body) {
        Ok(v) => v,
        Err(r) => return *r,
    };
    if v.get("touser")
        .and_then(Value::as_str)
        .unwrap_or("")
        .is_empty()
    {
        return err(40003, "invalid openid");
    }
    let msgtype = v.get("msgtype").and_then(Value::as_str).unwrap_or("");
    let known = [
        "text",
        "image",
        "voice",
        "video",
        "music",
        "news",
        "mpnews",
        "mpnewsarticle",
        "msgmenu",
        "wxcard",
        "miniprogrampage",
        "link",
    ];
    if !known.contains(&msgtype) {
        return err(40008, "invalid message type");
    }
    if v.get(msgtype).is_none() {
        return err(44002, "empty post data");
    }
    sh.lock().custom_messages.push(v);
    ok(json!({"errcode": 0, "errmsg": "ok"}))
}
