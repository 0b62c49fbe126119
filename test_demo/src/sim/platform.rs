//! The platform APIs a listed mini-program and its official account rely on besides login and
//! payments: phone numbers from the phone-number button (`wxa/business/getuserphonenumber`),
//! the official account's menu (`cgi-bin/menu/create`, `menu/get`) and the addresses WeChat's
//! pushes come from (`cgi-bin/getcallbackip`: the simulator pushes from loopback, so its list
//! holds loopback beside a range of WeChat's own; tests change it), and image content checks
//! (`wxa/media_check_async`: the image is downloaded from its URL, and the verdict is pushed
//! as a `wxa_media_check` event, in the data format set with
//! [`super::SimHandle::set_mini_push_xml`] (JSON unless set), signed with the message-push
//! token, to the URL set with [`super::SimHandle::set_mini_push_url`]; verdicts are `pass`
//! unless queued).
//!
//! Rules as WeChat documents them:
//! * A phone code (`getPhoneNumber`'s `e.detail.code`) is good once, for 5 minutes, for the
//!   mini-program that asked (40029 otherwise); the answer carries `phone_info` with
//!   `phoneNumber`, `purePhoneNumber`, `countryCode` and a `watermark` naming the appid.
//! * A menu has 1 to 3 buttons, each 1 to 5 sub-buttons or none; names at most 16 bytes
//!   (top) and 60 bytes (sub); `click` needs a `key` of at most 128 bytes, `view` a `url` of
//!   at most 1024 bytes, `miniprogram` an `appid`, a `pagepath` and a fallback `url`. The
//!   official account's token only (48001 for the mini-program's).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::{Value, json};

use super::mini::{check_token_for, err};
use super::sign::sha1_sorted;
use super::state::{App, Shared, random_alnum, random_digits};

/// How long a phone code is good for.
pub const PHONE_CODE_TTL: Duration = Duration::from_secs(300);

/// What the platform APIs remember.
pub struct PlatformState {
    phone_codes: HashMap<String, PhoneCode>,
    /// The official account's menu as last created (`None`: none).
    pub menu: Option<Value>,
    /// What `getcallbackip` answers.
    pub callback_ips: Vec<String>,
    /// The mini-program's message-push URL (the console setting).
    pub mini_push_url: Option<String>,
    /// The console's data format for that URL: XML when set, else JSON.
    pub mini_push_xml: bool,
    /// Verdicts (`pass`, `risky`, `review`) for the next media checks, one each.
    pub media_verdicts: VecDeque<String>,
    /// Every media check taken: trace_id, media_url, openid, scene, suggest, and once the
    /// image was fetched, `fetched_bytes` (or `fetch_error`).
    pub media_checks: Vec<Value>,
    /// `msg_sec_check`: a text holding one of these is `risky`; else one of `review_words`,
    /// `review`; else `pass`.
    pub risky_words: Vec<String>,
    pub review_words: Vec<String>,
    /// Every text checked: content, openid, scene, suggest.
    pub text_checks: Vec<Value>,
}

impl Default for PlatformState {
    fn default() -> Self {
        Self {
            phone_codes: HashMap::new(),
            menu: None,
            callback_ips: vec!["101.226.103.0/25".into(), "127.0.0.1".into(), "::1".into()],
            mini_push_url: None,
            mini_push_xml: false,
            media_verdicts: VecDeque::new(),
            media_checks: Vec::new(),
            risky_words: vec!["违禁".into(), "forbidden-word".into()],
            review_words: vec!["待审".into(), "review-word".into()],
            text_checks: Vec::new(),
        }
    }
}

struct PhoneCode {
    pure: String,
    country: String,
    expires: Instant,
    used: bool,
}

impl PlatformState {
    /// A code as the phone-number button hands it to the mini-program.
    pub fn issue_phone_code(&mut self, pure: &str, country: &str) -> String {
        let now = Instant::now();
        if self.phone_codes.len() > 10_000 {
            self.phone_codes.retain(|_, c| c.expires > now && !c.used);
        }
        let code = random_alnum(64).to_lowercase();
        self.phone_codes.insert(
            code.clone(),
            PhoneCode {
                pure: pure.to_string(),
                country: country.to_string(),
                expires: now + PHONE_CODE_TTL,
                used: false,
            },
        );
        code
    }

    fn redeem_phone_code(&mut self, code: &str) -> Option<(String, String)> {
        let c = self.phone_codes.get_mut(code)?;
        if c.used || c.expires <= Instant::now() {
            return None;
        }
        c.used = true;
        Some((c.pure.clone(), c.country.clone()))
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/wxa/business/getuserphonenumber",
        web::post().to(getuserphonenumber),
    )
    .route("/cgi-bin/menu/create", web::post().to(menu_create))
    .route("/cgi-bin/menu/get", web::get().to(menu_get))
    .route("/cgi-bin/getcallbackip", web::get().to(getcallbackip))
    .route("/wxa/media_check_async", web::post().to(media_check_async))
    .route("/wxa/msg_sec_check", web::post().to(msg_sec_check));
}

/// Longest text `msg_sec_check` takes, in characters.
const MAX_TEXT_CHARS: usize = 2500;

async fn msg_sec_check(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("msg_sec_check");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mini]) {
        return *r;
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return err(47001, "data format error");
    };
    let content = match v.get("content").and_then(Value::as_str) {
        Some(c) if !c.is_empty() && c.chars().count() <= MAX_TEXT_CHARS => c.to_string(),
        _ => return err(40097, "invalid args, content"),
    };
    if v.get("version").and_then(Value::as_u64) != Some(2) {
        return err(40097, "invalid args, version");
    }
    let scene = match v.get("scene").and_then(Value::as_u64) {
        Some(s @ 1..=4) => s,
        _ => return err(40097, "invalid args, scene"),
    };
    let openid = v.get("openid").and_then(Value::as_str).unwrap_or("");
    let mut st = sh.lock();
    if !st.issued_openids.contains(openid) {
        return err(40003, "invalid openid");
    }
    let p = &mut st.platform;
    let hit = |words: &[String]| words.iter().any(|w| content.contains(w.as_str()));
    let (suggest, label) = if hit(&p.risky_words) {
        ("risky", 20001)
    } else if hit(&p.review_words) {
        ("review", 21000)
    } else {
        ("pass", 100)
    };
    p.text_checks.push(json!({
        "content": content, "openid": openid, "scene": scene, "suggest": suggest,
    }));
    let trace_id = random_alnum(26).to_lowercase();
    ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "trace_id": trace_id,
        "result": {"suggest": suggest, "label": label},
        "detail": [{"strategy": "content_model", "errcode": 0, "suggest": suggest, "label": label, "prob": 90}],
    }))
}

async fn media_check_async(
    req: HttpRequest,
    body: web::Bytes,
    sh: web::Data<Shared>,
) -> HttpResponse {
    sh.count("media_check_async");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mini]) {
        return *r;
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return err(47001, "data format error");
    };
    let url = match v.get("media_url").and_then(Value::as_str) {
        Some(u) if (u.starts_with("http://") || u.starts_with("https://")) && u.len() <= 2048 => {
            u.to_string()
        }
        _ => return err(40097, "invalid args, media_url"),
    };
    if !matches!(v.get("media_type").and_then(Value::as_u64), Some(1 | 2)) {
        return err(40097, "invalid args, media_type");
    }
    if v.get("version").and_then(Value::as_u64) != Some(2) {
        return err(40097, "invalid args, version");
    }
    let scene = match v.get("scene").and_then(Value::as_u64) {
        Some(s @ 1..=4) => s,
        _ => return err(40097, "invalid args, scene"),
    };
    let openid = v.get("openid").and_then(Value::as_str).unwrap_or("");
    let trace_id = random_alnum(26).to_lowercase();
    let suggest = {
        let mut st = sh.lock();
        // Only a user who used the mini-program (logged in) can be named.
        if !st.issued_openids.contains(openid) {
            return err(40003, "invalid openid");
        }
        let suggest = st
            .platform
            .media_verdicts
            .pop_front()
            .unwrap_or_else(|| "pass".into());
        st.platform.media_checks.push(json!({
            "trace_id": trace_id, "media_url": url, "openid": openid, "scene": scene,
            "suggest": suggest,
        }));
        suggest
    };
    let shared: Arc<Shared> = sh.into_inner();
    let (t, o) = (trace_id.clone(), openid.to_string());
    actix_web::rt::spawn(async move { check_and_push(shared, t, url, o, suggest).await });
    ok(json!({"errcode": 0, "errmsg": "ok", "trace_id": trace_id}))
}

/// Downloads the image as WeChat does, then pushes the verdict (three tries).
async fn check_and_push(
    sh: Arc<Shared>,
    trace_id: String,
    url: String,
    openid: String,
    suggest: String,
) {
    let fetched = match sh.http.get(&url).send().await {
        Ok(r) if r.status().is_success() => {
            r.bytes().await.map(|b| b.len()).map_err(|e| e.to_string())
        }
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => Err(e.to_string()),
    };
    let (errcode, errmsg) = match &fetched {
        Ok(_) => (0, "ok".to_string()),
        Err(e) => (-1, format!("media download failed: {e}")),
    };
    let push_url = {
        let mut st = sh.lock();
        if let Some(rec) = st
            .platform
            .media_checks
            .iter_mut()
            .find(|r| r["trace_id"] == trace_id.as_str())
        {
            match &fetched {
                Ok(n) => rec["fetched_bytes"] = json!(n),
                Err(e) => rec["fetch_error"] = json!(e),
            }
        }
        (st.platform.mini_push_url.clone(), st.platform.mini_push_xml)
    };
    let (Some(push_url), xml) = push_url else {
        tracing::warn!(target: "wechat_sim", "no mini-program push URL set; media check verdict dropped");
        return;
    };
    let label = if suggest == "pass" { 100 } else { 20002 };
    let body = json!({
        "ToUserName": "gh_campus_errand_mini",
        "FromUserName": openid,
        "CreateTime": chrono::Utc::now().timestamp(),
        "MsgType": "event",
        "Event": "wxa_media_check",
        "appid": sh.cfg.appid,
        "trace_id": trace_id,
        "version": 2,
        "detail": [{"strategy": "content_model", "errcode": errcode, "suggest": suggest, "label": label, "prob": 90}],
        "errcode": errcode,
        "errmsg": errmsg,
        "result": {"suggest": suggest, "label": label},
    });
    let (body, content_type) = if xml {
        (to_xml(&body), "text/xml")
    } else {
        (body.to_string(), "application/json")
    };
    // WeChat pushes again when a push is not answered with 200 in time: here after 0.2,
    // 0.5, 1, 2 and 4 s (its own gaps are longer).
    let mut outcomes = Vec::new();
    for pause_ms in [200, 500, 1000, 2000, 4000, 0] {
        let timestamp = chrono::Utc::now().timestamp().to_string();
        let nonce = random_digits(10);
        let signature = sha1_sorted(&[&sh.cfg.mini_token, &timestamp, &nonce]);
        let sent = sh
            .http
            .post(&push_url)
            .query(&[
                ("signature", &signature),
                ("timestamp", &timestamp),
                ("nonce", &nonce),
            ])
            .header("Content-Type", content_type)
            .body(body.clone())
            .send()
            .await;
        let outcome = match &sent {
            Ok(r) => r.status().to_string(),
            Err(e) => e.to_string(),
        };
        tracing::info!(target: "wechat_sim", %trace_id, outcome, "media check verdict pushed");
        outcomes.push(outcome);
        let done = matches!(&sent, Ok(r) if r.status().is_success());
        {
            let mut st = sh.lock();
            if let Some(rec) = st
                .platform
                .media_checks
                .iter_mut()
                .find(|r| r["trace_id"] == trace_id.as_str())
            {
                rec["pushes"] = json!(outcomes);
            }
        }
        if done {
            sh.count("media_check_pushed");
            return;
        }
        tokio::time::sleep(Duration::from_millis(pause_ms)).await;
    }
}

/// A push in WeChat's XML data format: the JSON's keys as elements under `<xml>`, strings
/// in CDATA, an object as nested elements, a list as the element repeated.
fn to_xml(v: &Value) -> String {
    fn element(out: &mut String, name: &str, v: &Value) {
        match v {
            Value::Array(items) => items.iter().for_each(|i| element(out, name, i)),
            Value::Object(m) => {
                out.push_str(&format!("<{name}>"));
                m.iter().for_each(|(k, v)| element(out, k, v));
                out.push_str(&format!("</{name}>"));
            }
            Value::String(s) => out.push_str(&format!("<{name}><![CDATA[{s}]]></{name}>")),
            other => out.push_str(&format!("<{name}>{other}</{name}>")),
        }
    }
    let mut out = String::new();
    element(&mut out, "xml", v);
    out
}

async fn getcallbackip(req: HttpRequest, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("getcallbackip");
    // Both apps' tokens: it is a basic API of each.
    if let Err(r) = check_token_for(&req, &sh, &[App::Mini, App::Mp]) {
        return *r;
    }
    let list = sh.lock().platform.callback_ips.clone();
    ok(json!({ "ip_list": list }))
}

fn ok(v: Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json; encoding=utf-8")
        .json(v)
}

async fn getuserphonenumber(
    req: HttpRequest,
    body: web::Bytes,
    sh: web::Data<Shared>,
) -> HttpResponse {
    sh.count("getuserphonenumber");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mini]) {
        return *r;
    }
    let Ok(Value::Object(v)) = serde_json::from_slice::<Value>(&body) else {
        return err(47001, "data format error");
    };
    let code = match v.get("code") {
        Some(Value::String(c)) if !c.is_empty() => c.clone(),
        _ => return err(40029, "invalid code"),
    };
    let Some((pure, country)) = sh.lock().platform.redeem_phone_code(&code) else {
        return err(40029, "invalid code");
    };
    let phone = if country == "86" {
        pure.clone()
    } else {
        format!("+{country} {pure}")
    };
    ok(json!({
        "errcode": 0,
        "errmsg": "ok",
        "phone_info": {
            "phoneNumber": phone,
            "purePhoneNumber": pure,
            "countryCode": country,
            "watermark": {"timestamp": chrono::Utc::now().timestamp(), "appid": sh.cfg.appid},
        }
    }))
}

async fn menu_create(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("menu_create");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mp]) {
        return *r;
    }
    let Ok(v) = serde_json::from_slice::<Value>(&body) else {
        return err(47001, "data format error");
    };
    if let Err((code, msg)) = check_menu(&v) {
        return err(code, msg);
    }
    sh.lock().platform.menu = Some(v);
    ok(json!({"errcode": 0, "errmsg": "ok"}))
}

async fn menu_get(req: HttpRequest, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("menu_get");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mp]) {
        return *r;
    }
    match sh.lock().platform.menu.clone() {
        Some(m) => ok(json!({"menu": m})),
        None => err(46003, "menu no exist"),
    }
}

type MenuError = (i64, &'static str);

fn check_menu(v: &Value) -> Result<(), MenuError> {
    let buttons = v
        .get("button")
        .and_then(Value::as_array)
        .ok_or((40016, "invalid button size"))?;
    if buttons.is_empty() || buttons.len() > 3 {
        return Err((40016, "invalid button size"));
    }
    for b in buttons {
        check_name(b, 16, (40018, "invalid button name size"))?;
        match b.get("sub_button").and_then(Value::as_array) {
            Some(subs) if !subs.is_empty() => {
                if subs.len() > 5 {
                    return Err((40023, "invalid sub button size"));
                }
                for s in subs {
                    check_name(s, 60, (40025, "invalid sub button name size"))?;
                    check_action(s)?;
                }
            }
            _ => check_action(b)?,
        }
    }
    Ok(())
}

fn check_name(b: &Value, max: usize, e: MenuError) -> Result<(), MenuError> {
    match b.get("name").and_then(Value::as_str) {
        Some(n) if !n.is_empty() && n.len() <= max => Ok(()),
        _ => Err(e),
    }
}

fn str_field<'a>(b: &'a Value, k: &str) -> Option<&'a str> {
    b.get(k).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn check_action(b: &Value) -> Result<(), MenuError> {
    let url_ok = |u: Option<&str>| u.is_some_and(|u| u.len() <= 1024 && u.starts_with("http"));
    match b.get("type").and_then(Value::as_str) {
        Some(
            "click" | "scancode_push" | "scancode_waitmsg" | "pic_sysphoto" | "pic_photo_or_album"
            | "pic_weixin" | "location_select",
        ) => match str_field(b, "key") {
            Some(k) if k.len() <= 128 => Ok(()),
            _ => Err((40019, "invalid button key size")),
        },
        Some("view") => {
            if url_ok(str_field(b, "url")) {
                Ok(())
            } else {
                Err((40020, "invalid button url size"))
            }
        }
        Some("miniprogram") => {
            if str_field(b, "appid").is_none() || str_field(b, "pagepath").is_none() {
                return Err((40027, "invalid sub button url size"));
            }
            if url_ok(str_field(b, "url")) {
                Ok(())
            } else {
                Err((40020, "invalid button url size"))
            }
        }
        _ => Err((40017, "invalid button type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn menu_rules() {
        let ok = json!({"button": [
            {"type": "click", "name": "我的订单", "key": "orders"},
            {"name": "更多", "sub_button": [
                {"type": "click", "name": "帮助", "key": "help"},
                {"type": "view", "name": "官网", "url": "https://example.com"}
            ]}
        ]});
        assert!(check_menu(&ok).is_ok());
        let four = json!({"button": [
            {"type": "click", "name": "a", "key": "a"},
            {"type": "click", "name": "b", "key": "b"},
            {"type": "click", "name": "c", "key": "c"},
            {"type": "click", "name": "d", "key": "d"}
        ]});
        assert_eq!(check_menu(&four).err().map(|e| e.0), Some(40016));
        let long_name = json!({"button": [{"type": "click", "name": "一二三四五六", "key": "k"}]});
        assert_eq!(check_menu(&long_name).err().map(|e| e.0), Some(40018));
        let no_key = json!({"button": [{"type": "click", "name": "x"}]});
        assert_eq!(check_menu(&no_key).err().map(|e| e.0), Some(40019));
        let bad_type = json!({"button": [{"type": "tap", "name": "x", "key": "k"}]});
        assert_eq!(check_menu(&bad_type).err().map(|e| e.0), Some(40017));
    }

    #[test]
    fn phone_codes_are_single_use() {
        let mut p = PlatformState::default();
        assert!(p.callback_ips.iter().any(|i| i == "127.0.0.1"));
        let c = p.issue_phone_code("13800138000", "86");
        assert_eq!(
            p.redeem_phone_code(&c),
            Some(("13800138000".into(), "86".into()))
        );
        assert_eq!(p.redeem_phone_code(&c), None);
        assert_eq!(p.redeem_phone_code("nope"), None);
    }
}
