//! `/sim/...`: control endpoints for out-of-process use (the demo walkthrough with `curl -k`,
//! the qps tool). Not part of any WeChat API.

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use super::NotifyFaultsJson;
use super::bill::BillRowEdit;
use super::pay::{JsapiParams, request_payment, simulate_payment};
use super::state::{LoginFault, Shared, SimOrder};
use super::transfers::TransferFault;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/sim/code", web::post().to(code))
        .route("/sim/pay", web::post().to(pay))
        .route("/sim/pay-unchecked", web::post().to(pay_unchecked))
        .route("/sim/subscribe/accept", web::post().to(subscribe_accept))
        .route("/sim/rules", web::post().to(rules))
        .route("/sim/transfer-faults", web::post().to(transfer_faults))
        .route("/sim/bill", web::post().to(bill))
        .route("/sim/mp/follow", web::post().to(mp_follow))
        .route("/sim/mp/templates", web::post().to(mp_templates))
        .route("/sim/mp/text", web::post().to(mp_text))
        .route("/sim/mp/click", web::post().to(mp_click))
        .route("/sim/mp/menu", web::get().to(mp_menu))
        .route("/sim/phone-code", web::post().to(phone_code))
        .route("/sim/calls", web::get().to(calls))
        .route("/sim/notify-faults", web::post().to(notify_faults))
        .route("/sim/api-faults", web::post().to(api_faults))
        .route("/sim/orders/{key}", web::get().to(order))
        .route("/sim/messages", web::get().to(messages))
        .route("/sim/invalidate-tokens", web::post().to(invalidate_tokens))
        .route("/sim/refuse-subscribe", web::post().to(refuse_subscribe));
}

fn bad(status: actix_web::http::StatusCode, msg: impl Into<String>) -> HttpResponse {
    HttpResponse::build(status).json(json!({"ok": false, "error": msg.into()}))
}

fn parse<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, Box<HttpResponse>> {
    serde_json::from_slice(body).map_err(|e| {
        Box::new(bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            format!("bad JSON: {e}"),
        ))
    })
}

#[derive(Deserialize)]
struct CodeReq {
    openid: String,
    /// `"high_risk"` (40226) or `"busy"` (-1 once).
    #[serde(default)]
    fault: Option<LoginFault>,
}

async fn code(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: CodeReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if r.openid.is_empty() || r.openid.len() > 128 {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "openid must be 1-128 characters",
        );
    }
    let code = sh.lock().issue_code_with(&r.openid, r.fault);
    HttpResponse::Ok().json(json!({"code": code}))
}

/// `POST /sim/pay`: the user pays with what `wx.requestPayment` received (the server's
/// JSAPI parameters, as returned), plus an optional `coupon_fee`.
#[derive(Deserialize)]
struct PayReq {
    #[serde(flatten)]
    params: JsapiParams,
    #[serde(default)]
    coupon_fee: u64,
}

async fn pay(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: PayReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return bad(
                actix_web::http::StatusCode::BAD_REQUEST,
                format!(
                    "send the wx.requestPayment parameters {{appId, timeStamp, nonceStr, package, \
                     signType, paySign}} ({e}); /sim/pay-unchecked pays by prepay_id without \
                     the client-side checks"
                ),
            );
        }
    };
    match request_payment(&sh.clone().into_inner(), &r.params, r.coupon_fee) {
        Ok(()) => HttpResponse::Ok().json(json!({"ok": true})),
        Err(e) => bad(actix_web::http::StatusCode::CONFLICT, e.to_string()),
    }
}

/// `POST /sim/pay-unchecked`: NOT what WeChat allows; pays by `prepay_id` or `out_trade_no`
/// skipping `wx.requestPayment`'s checks.
#[derive(Deserialize)]
struct PayUncheckedReq {
    prepay_id: Option<String>,
    out_trade_no: Option<String>,
    #[serde(default)]
    coupon_fee: u64,
}

async fn pay_unchecked(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: PayUncheckedReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let Some(key) = r.prepay_id.or(r.out_trade_no).filter(|k| !k.is_empty()) else {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "prepay_id or out_trade_no required",
        );
    };
    let known = sh.lock().order_by_key(&key).is_some();
    if !known {
        return bad(
            actix_web::http::StatusCode::NOT_FOUND,
            format!("unknown order or prepay id: {key}"),
        );
    }
    match simulate_payment(&sh.clone().into_inner(), &key, r.coupon_fee) {
        Ok(()) => HttpResponse::Ok().json(json!({"ok": true})),
        Err(e) => bad(actix_web::http::StatusCode::CONFLICT, e.to_string()),
    }
}

/// `POST /sim/subscribe/accept`: the user taps "allow" in `wx.requestSubscribeMessage`.
#[derive(Deserialize)]
struct AcceptReq {
    openid: String,
    template_ids: Vec<String>,
}

async fn subscribe_accept(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: AcceptReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if r.openid.is_empty() || r.template_ids.iter().any(String::is_empty) {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "openid and template ids must not be empty",
        );
    }
    sh.lock().accept_subscribe(&r.openid, &r.template_ids);
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/rules`: the timing rules (seconds) and the non-WeChat subscribe switch.
#[derive(Deserialize)]
struct RulesReq {
    closeorder_min_age_secs: Option<f64>,
    refund_min_gap_secs: Option<f64>,
    subscribe_auto_accept: Option<bool>,
}

async fn rules(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: RulesReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let secs = |v: f64| std::time::Duration::try_from_secs_f64(v).ok();
    let mut st = sh.lock();
    if let Some(v) = r.closeorder_min_age_secs {
        let Some(d) = secs(v) else {
            return bad(actix_web::http::StatusCode::BAD_REQUEST, "bad seconds");
        };
        st.closeorder_min_age = d;
    }
    if let Some(v) = r.refund_min_gap_secs {
        let Some(d) = secs(v) else {
            return bad(actix_web::http::StatusCode::BAD_REQUEST, "bad seconds");
        };
        st.refund_min_gap = d;
    }
    if let Some(on) = r.subscribe_auto_accept {
        st.subscribe_auto_accept = on;
    }
    HttpResponse::Ok().json(json!({
        "closeorder_min_age_secs": st.closeorder_min_age.as_secs_f64(),
        "refund_min_gap_secs": st.refund_min_gap.as_secs_f64(),
        "subscribe_auto_accept": st.subscribe_auto_accept,
    }))
}

async fn calls(sh: web::Data<Shared>) -> HttpResponse {
    let counters = sh.lock().counters.clone();
    HttpResponse::Ok().json(counters)
}

async fn notify_faults(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let f: NotifyFaultsJson = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    sh.lock().faults = f.into();
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/api-faults {"delay_ms": 5000, "delay_percent": 25, "error_percent": 20,
/// "reset_percent": 20}`:
/// faults on every API call from now on; `{}` turns them off.
async fn api_faults(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let f: super::ApiFaults = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    if !f.is_valid() {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "error_percent + reset_percent + delay_percent must not exceed 100",
        );
    }
    sh.lock().api_faults = f.clone();
    HttpResponse::Ok().json(f)
}

async fn order(path: web::Path<String>, sh: web::Data<Shared>) -> HttpResponse {
    let o = sh.lock().order_by_key(&path).map(SimOrder::from);
    match o {
        Some(o) => HttpResponse::Ok().json(o),
        None => bad(actix_web::http::StatusCode::NOT_FOUND, "unknown order"),
    }
}

async fn messages(sh: web::Data<Shared>) -> HttpResponse {
    let st = sh.lock();
    let v: Value = json!({
        "subscribe": st.subscribe_messages,
        "custom": st.custom_messages,
        "template": st.template_messages,
    });
    drop(st);
    HttpResponse::Ok().json(v)
}

async fn invalidate_tokens(sh: web::Data<Shared>) -> HttpResponse {
    sh.lock().invalidate_tokens();
    HttpResponse::Ok().json(json!({"ok": true}))
}

async fn refuse_subscribe(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: CodeReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    sh.lock().refused_subscribe.insert(r.openid);
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/transfer-faults {"faults": ["system_error_but_paid", {"refuse": "NOTENOUGH"}]}`:
/// outcomes for the next transfers requests.
#[derive(Deserialize)]
struct TransferFaultsReq {
    faults: Vec<TransferFault>,
}

async fn transfer_faults(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: TransferFaultsReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut st = sh.lock();
    st.transfer_faults.extend(r.faults);
    HttpResponse::Ok().json(json!({"ok": true, "queued": st.transfer_faults.len()}))
}

/// `POST /sim/bill {"same_day": true, "edits": {"<out_trade_no>": {"amount": 250} | "drop"}}`.
#[derive(Deserialize)]
struct BillReq {
    same_day: Option<bool>,
    #[serde(default)]
    edits: std::collections::HashMap<String, BillRowEdit>,
}

async fn bill(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: BillReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let mut st = sh.lock();
    if let Some(on) = r.same_day {
        st.bill_same_day = on;
    }
    st.bill_edits.extend(r.edits);
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/mp/follow {"openid", "following": true|false}`.
#[derive(Deserialize)]
struct FollowReq {
    openid: String,
    following: bool,
}

async fn mp_follow(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: FollowReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    sh.lock().mp_followers.insert(r.openid, r.following);
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/mp/templates {"template_ids": [...]}`: the official account adds templates.
#[derive(Deserialize)]
struct TemplatesReq {
    template_ids: Vec<String>,
}

async fn mp_templates(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: TemplatesReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    sh.lock().mp_templates.extend(r.template_ids);
    HttpResponse::Ok().json(json!({"ok": true}))
}

/// `POST /sim/mp/text {"endpoint": "http://127.0.0.1:8080/wechat/mp", "from": "<openid>",
/// "content": "mine", "safe": false}`: a follower types to the official account; WeChat
/// pushes the text message to the server and the answer is `{"status", "reply",
/// "content"}` (the reply decrypted and checked in safe mode; `content`: its text).
#[derive(Deserialize)]
struct MpTextReq {
    endpoint: String,
    from: String,
    content: String,
    #[serde(default)]
    safe: bool,
}

async fn mp_text(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: MpTextReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let cdata = |s: &str| format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"));
    let msg = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[text]]></MsgType><Content>{}</Content><MsgId>{}</MsgId></xml>",
        cdata("gh_campus_errand"),
        cdata(&r.from),
        chrono::Utc::now().timestamp(),
        cdata(&r.content),
        super::state::random_digits(18),
    );
    push_and_answer(&sh, &r.endpoint, &msg, r.safe).await
}

/// `POST /sim/mp/click`: the follower taps a `click` button of the account's menu.
#[derive(Deserialize)]
struct MpClickReq {
    endpoint: String,
    from: String,
    key: String,
    #[serde(default)]
    safe: bool,
}

async fn mp_click(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: MpClickReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let cdata = |s: &str| format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"));
    let msg = format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime>\
         <MsgType><![CDATA[event]]></MsgType><Event><![CDATA[CLICK]]></Event><EventKey>{}</EventKey></xml>",
        cdata("gh_campus_errand"),
        cdata(&r.from),
        chrono::Utc::now().timestamp(),
        cdata(&r.key),
    );
    push_and_answer(&sh, &r.endpoint, &msg, r.safe).await
}

/// `GET /sim/mp/menu`: the account's menu as `menu/create` last set it (404: none).
async fn mp_menu(sh: web::Data<Shared>) -> HttpResponse {
    match sh.lock().platform.menu.clone() {
        Some(m) => HttpResponse::Ok().json(m),
        None => bad(
            actix_web::http::StatusCode::NOT_FOUND,
            "no menu was created",
        ),
    }
}

/// `POST /sim/phone-code`: the user taps the phone-number button and allows it; the code
/// the mini-program receives (`getuserphonenumber` redeems it once, within 5 minutes).
#[derive(Deserialize)]
struct PhoneCodeReq {
    phone: String,
    #[serde(default = "mainland")]
    country_code: String,
}

fn mainland() -> String {
    "86".into()
}

async fn phone_code(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let r: PhoneCodeReq = match parse(&body) {
        Ok(r) => r,
        Err(e) => return *e,
    };
    let digits = |s: &str, n: std::ops::RangeInclusive<usize>| {
        n.contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
    };
    if !digits(&r.phone, 5..=15) || !digits(&r.country_code, 1..=4) {
        return bad(
            actix_web::http::StatusCode::BAD_REQUEST,
            "phone: 5-15 digits; country_code: 1-4 digits",
        );
    }
    let code = sh
        .lock()
        .platform
        .issue_phone_code(&r.phone, &r.country_code);
    HttpResponse::Ok().json(json!({"code": code}))
}

/// Pushes `msg` as WeChat would and answers with the account's reply (and its text).
async fn push_and_answer(sh: &Shared, endpoint: &str, msg: &str, safe: bool) -> HttpResponse {
    match super::mp::push_inner(sh, endpoint, msg, safe).await {
        Ok((status, reply)) => {
            let content = super::xml::parse(reply.as_bytes())
                .ok()
                .and_then(|x| x.fields.get("Content").cloned());
            HttpResponse::Ok().json(json!({"status": status, "reply": reply, "content": content}))
        }
        Err(e) => bad(actix_web::http::StatusCode::BAD_GATEWAY, e.to_string()),
    }
}
