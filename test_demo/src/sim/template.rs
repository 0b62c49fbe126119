//! The official account's template messages: `cgi-bin/message/template/send`.
//!
//! With the official account's access token (the mini-program's answers 48001). The account
//! knows its users ([`super::SimHandle::mp_follow`] / `mp_unfollow`) and its templates
//! ([`super::SimHandle::mp_add_template`]): a `touser` it never saw (a mini-program openid
//! is not an official-account openid) is 40003, a user who unfollowed 43004 "require
//! subscribe", an unknown `template_id` 40037. `data` must be an object of
//! `{"key": {"value": "..."}}` (47001 otherwise); `url` must be http(s); `miniprogram.appid`
//! must be the linked mini-program (40013 otherwise: our choice of code).
//! [`TemplateFault`]s queued with [`super::SimHandle::push_template_faults`] answer the next
//! sends instead: -1 "system error" or an HTTP 503, as WeChat does when it is busy.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::mini::{check_token_for, err};
use super::state::{App, Shared};

/// One injected answer for the next `message/template/send` (nothing is sent).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TemplateFault {
    /// errcode -1 "system error": WeChat is busy, try again.
    Busy,
    /// HTTP 503 with an HTML body, as a gateway in front of WeChat answers.
    Unavailable,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/cgi-bin/message/template/send", web::post().to(send));
}

async fn send(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("template_send");
    if let Err(r) = check_token_for(&req, &sh, &[App::Mp]) {
        return *r;
    }
    let fault = sh.lock().template_faults.pop_front();
    match fault {
        Some(TemplateFault::Busy) => return err(-1, "system error"),
        Some(TemplateFault::Unavailable) => {
            return HttpResponse::ServiceUnavailable()
                .content_type("text/html")
                .body("<html><body>503 Service Temporarily Unavailable</body></html>");
        }
        None => {}
    }
    let v = match serde_json::from_slice::<Value>(&body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return err(47001, "data format error"),
    };
    let touser = v.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() {
        return err(40003, "invalid openid");
    }
    let template = v.get("template_id").and_then(Value::as_str).unwrap_or("");
    if template.is_empty() {
        return err(40037, "invalid template_id");
    }
    let data_ok = match v.get("data") {
        None => true,
        Some(Value::Object(m)) => m
            .values()
            .all(|e| e.get("value").is_some_and(Value::is_string)),
        Some(_) => false,
    };
    if !data_ok {
        return err(47001, "data format error");
    }
    if let Some(u) = v.get("url") {
        let ok = u
            .as_str()
            .and_then(|s| url::Url::parse(s).ok())
            .is_some_and(|p| matches!(p.scheme(), "http" | "https"));
        if !ok {
            return err(40039, "invalid url");
        }
    }
    if let Some(mp) = v.get("miniprogram") {
        if mp.get("appid").and_then(Value::as_str) != Some(sh.cfg.appid.as_str()) {
            return err(40013, "invalid appid, miniprogram.appid is not linked");
        }
        if mp
            .get("pagepath")
            .is_some_and(|p| !p.is_string() || p.as_str().is_some_and(|p| p.starts_with('/')))
        {
            return err(40165, "invalid weapp pagepath");
        }
    }
    let mut st = sh.lock();
    match st.mp_followers.get(touser) {
        None => return err(40003, "invalid openid"),
        Some(false) => return err(43004, "require subscribe"),
        Some(true) => {}
    }
    if !st.mp_templates.contains(template) {
        return err(40037, "invalid template_id");
    }
    st.msgid_seq += 1;
    let msgid = 2_800_000_000_000_000u64 + st.msgid_seq;
    st.template_messages.push(v);
    HttpResponse::Ok()
        .content_type("application/json; encoding=utf-8")
        .json(json!({"errcode": 0, "errmsg": "ok", "msgid": msgid}))
}
