//! `api.mch.weixin.qq.com` Pay v2: unifiedorder, orderquery, closeorder, secapi/pay/refund,
//! refundquery. XML in, signed XML out, HTTP 200.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use chrono::{NaiveDateTime, TimeZone as _};
use serde::{Deserialize, Serialize};

use super::notify::{self, PayNotice, RefundNotice};
use super::sign::{self, SignType};
use super::state::{
    MAX_REFUNDS, Order, PREPAY_TTL, Refund, Shared, TradeState, beijing, beijing_compact,
    beijing_now, random_alnum, random_digits,
};
use super::tls::PeerCert;
use super::xml;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/pay/unifiedorder", web::post().to(unifiedorder))
        .route("/pay/orderquery", web::post().to(orderquery))
        .route("/pay/closeorder", web::post().to(closeorder))
        .route("/secapi/pay/refund", web::post().to(refund))
        .route("/pay/refundquery", web::post().to(refundquery))
        .route("/secapi/{tail:.*}", web::to(secapi_other));
}

type Params = BTreeMap<String, String>;

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

/// `return_code FAIL`: the request was not processed (format, signature, certificate...).
fn return_fail(msg: &str) -> HttpResponse {
    xml_response(xml::build(
        "xml",
        [("return_code", "FAIL"), ("return_msg", msg)],
    ))
}

/// An early answer (boxed: responses are large).
type Early = Box<HttpResponse>;

fn early(msg: &str) -> Early {
    Box::new(return_fail(msg))
}

/// A verified request.
pub(super) struct PayReq {
    pub(super) params: Params,
    pub(super) sign_type: SignType,
}

impl PayReq {
    pub(super) fn get(&self, k: &str) -> Option<&str> {
        self.params
            .get(k)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// Parses and authenticates a Pay v2 request.
pub(super) fn verify(sh: &Shared, body: &[u8]) -> Result<PayReq, Early> {
    let doc = xml::parse(body).map_err(|e| {
        tracing::info!(target: "wechat_sim", error = %e, "pay request: bad XML");
        early("XML格式错误")
    })?;
    if doc.root != "xml" {
        return Err(early("XML格式错误"));
    }
    let params = doc.fields;
    for k in ["appid", "mch_id", "nonce_str", "sign"] {
        if params.get(k).is_none_or(|v| v.is_empty()) {
            return Err(early(&format!("缺少参数{k}")));
        }
    }
    let sign_type = SignType::parse(params.get("sign_type").map(String::as_str))
        .ok_or_else(|| early("sign_type参数格式错误"))?;
    if params.get("mch_id") != Some(&sh.cfg.mch_id) {
        return Err(early("mch_id参数格式错误"));
    }
    if !sign::pay_verify(&params, &sh.cfg.pay_key, sign_type) {
        tracing::info!(target: "wechat_sim", "pay request: bad signature");
        return Err(early("签名错误"));
    }
    if params.get("appid") != Some(&sh.cfg.appid) {
        return Err(early("appid和mch_id不匹配"));
    }
    if params
        .get("nonce_str")
        .is_some_and(|n| n.chars().count() > 32)
    {
        return Err(early("nonce_str参数长度有误"));
    }
    Ok(PayReq { params, sign_type })
}

/// A signed `return_code SUCCESS` answer with `fields` (which carry `result_code`).
fn signed(sh: &Shared, st: SignType, mut fields: Params) -> HttpResponse {
    fields.insert("return_code".into(), "SUCCESS".into());
    fields.insert("return_msg".into(), "OK".into());
    fields.insert("appid".into(), sh.cfg.appid.clone());
    fields.insert("mch_id".into(), sh.cfg.mch_id.clone());
    fields.insert("nonce_str".into(), random_alnum(16));
    fields.retain(|_, v| !v.is_empty());
    let s = sign::pay_sign_map(&fields, &sh.cfg.pay_key, st);
    fields.insert("sign".into(), s);
    xml_response(xml::build_map("xml", &fields))
}

fn result_ok(sh: &Shared, st: SignType, mut fields: Params) -> HttpResponse {
    fields.insert("result_code".into(), "SUCCESS".into());
    signed(sh, st, fields)
}

fn result_err(sh: &Shared, st: SignType, code: &str, des: &str) -> HttpResponse {
    let mut f = Params::new();
    f.insert("result_code".into(), "FAIL".into());
    f.insert("err_code".into(), code.into());
    f.insert("err_code_des".into(), des.into());
    signed(sh, st, f)
}

fn out_trade_no_ok(s: &str) -> bool {
    (6..=32).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*'))
}

fn out_refund_no_ok(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'|' | b'*' | b'@'))
}

/// A fen amount: decimal digits only, 1 ..= 10^10.
fn parse_fee(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 11 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse::<u64>()
        .ok()
        .filter(|v| (1..=10_000_000_000).contains(v))
}

fn parse_beijing(s: &str) -> Option<chrono::DateTime<chrono::FixedOffset>> {
    if s.len() != 14 {
        return None;
    }
    let naive = NaiveDateTime::parse_from_str(s, "%Y%m%d%H%M%S").ok()?;
    beijing().from_local_datetime(&naive).single()
}

fn notify_url_ok(u: &str) -> bool {
    if u.len() > 256 || u.contains('?') || u.contains('#') {
        return false;
    }
    match url::Url::parse(u) {
        Ok(p) => matches!(p.scheme(), "http" | "https") && p.host().is_some(),
        Err(_) => false,
    }
}

fn new_prepay_id() -> String {
    format!(
        "wx{}{}",
        beijing_compact(beijing_now()),
        hex::encode(rand::random::<[u8; 10]>())
    )
}

fn new_transaction_id() -> String {
    format!(
        "42000{}{}{}",
        random_digits(5),
        beijing_now().format("%Y%m%d"),
        random_digits(10)
    )
}

fn new_refund_id() -> String {
    format!("503{}{}", beijing_now().format("%Y%m%d"), random_digits(18))
}

/// `time_expire` must be at least this far ahead (JSAPI, NATIVE, APP, MWEB).
const TIME_EXPIRE_MIN_SECS: i64 = 300;

/// `refund_desc` is at most 80 bytes.
const REFUND_DESC_MAX_BYTES: usize = 80;

/// The fields that must be identical when unifiedorder is repeated for an out_trade_no.
const FINGERPRINT: [&str; 11] = [
    "body",
    "detail",
    "attach",
    "fee_type",
    "total_fee",
    "goods_tag",
    "trade_type",
    "product_id",
    "limit_pay",
    "openid",
    "time_expire",
];

async fn unifiedorder(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("unifiedorder");
    let r = match verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    for k in [
        "body",
        "out_trade_no",
        "total_fee",
        "spbill_create_ip",
        "notify_url",
        "trade_type",
    ] {
        if r.get(k).is_none() {
            return return_fail(&format!("缺少参数{k}"));
        }
    }
    let get = |k: &str| r.get(k).unwrap_or_default().to_string();
    let out_trade_no = get("out_trade_no");
    if !out_trade_no_ok(&out_trade_no) {
        return return_fail("out_trade_no参数格式错误");
    }
    if get("body").len() > 128 {
        return return_fail("body参数长度有误");
    }
    let Some(total_fee) = parse_fee(&get("total_fee")) else {
        return return_fail("total_fee参数格式错误");
    };
    if r.get("fee_type").is_some_and(|f| f != "CNY") {
        return return_fail("fee_type参数格式错误");
    }
    let notify_url = get("notify_url");
    if !notify_url_ok(&notify_url) {
        return return_fail("notify_url参数格式错误：须为不带参数的http(s)地址");
    }
    let trade_type = get("trade_type");
    if !matches!(trade_type.as_str(), "JSAPI" | "NATIVE" | "APP" | "MWEB") {
        return return_fail("trade_type参数格式错误");
    }
    if get("spbill_create_ip").parse::<std::net::IpAddr>().is_err() {
        return return_fail("spbill_create_ip参数格式错误");
    }
    let openid = r.get("openid").map(str::to_string);
    if trade_type == "JSAPI" && openid.is_none() {
        return return_fail("JSAPI支付必须传openid");
    }
    // An openid belongs to one appid: only those jscode2session gave out for ours exist.
    if let Some(id) = &openid
        && !sh.lock().issued_openids.contains(id)
    {
        return result_err(&sh, r.sign_type, "PARAM_ERROR", "appid和openid不匹配");
    }
    if trade_type == "NATIVE" && r.get("product_id").is_none() {
        return return_fail("NATIVE支付必须传product_id");
    }
    if let Some(ts) = r.get("time_start")
        && parse_beijing(ts).is_none()
    {
        return return_fail("time_start参数格式错误");
    }
    let time_expire = match r.get("time_expire") {
        None => None,
        Some(s) => match parse_beijing(s) {
            Some(t) => Some(t),
            None => return return_fail("time_expire参数格式错误"),
        },
    };
    let fingerprint: Params = FINGERPRINT
        .iter()
        .filter_map(|k| r.get(k).map(|v| (k.to_string(), v.to_string())))
        .collect();

    let now = std::time::Instant::now();
    let mut st = sh.lock();
    let prepay_id = if let Some(o) = st.orders.get_mut(&out_trade_no) {
        if o.state.is_paid() {
            drop(st);
            return result_err(&sh, r.sign_type, "ORDERPAID", "该订单已支付");
        }
        if o.state == TradeState::Closed {
            drop(st);
            return result_err(&sh, r.sign_type, "ORDERCLOSED", "该订单已关");
        }
        if o.fingerprint != fingerprint {
            drop(st);
            return result_err(&sh, r.sign_type, "INVALID_REQUEST", "201 商户订单号重复");
        }
        if o.time_expire.is_some_and(|t| t <= beijing_now()) {
            drop(st);
            return result_err(&sh, r.sign_type, "INVALID_REQUEST", "订单已过期");
        }
        o.notify_url = notify_url;
        o.sign_type = r.sign_type;
        if o.prepay_expires <= now {
            let old = std::mem::replace(&mut o.prepay_id, new_prepay_id());
            o.prepay_expires = now + PREPAY_TTL;
            let id = o.prepay_id.clone();
            st.by_prepay.remove(&old);
            st.by_prepay.insert(id.clone(), out_trade_no.clone());
            id
        } else {
            o.prepay_id.clone()
        }
    } else {
        // WeChat's answer (return_code level): 1 minute for MICROPAY, 5 for every other type.
        if let Some(t) = time_expire
            && t < beijing_now() + chrono::Duration::seconds(TIME_EXPIRE_MIN_SECS)
        {
            drop(st);
            return return_fail("time_expire时间过短，刷卡至少1分钟，其他5分钟");
        }
        let prepay_id = new_prepay_id();
        let order = Order {
            out_trade_no: out_trade_no.clone(),
            appid: get("appid"),
            openid,
            total_fee,
            trade_type: trade_type.clone(),
            attach: r.get("attach").map(str::to_string),
            notify_url,
            spbill_create_ip: get("spbill_create_ip"),
            sign_type: r.sign_type,
            fingerprint,
            time_expire,
            prepay_id: prepay_id.clone(),
            prepay_expires: now + PREPAY_TTL,
            state: TradeState::NotPay,
            transaction_id: None,
            time_end: None,
            cash_fee: 0,
            coupon_fee: 0,
            refunds: Vec::new(),
            created_at: now,
            last_refund_at: None,
        };
        st.orders.insert(out_trade_no.clone(), order);
        st.by_prepay.insert(prepay_id.clone(), out_trade_no.clone());
        tracing::info!(target: "wechat_sim", %out_trade_no, total_fee, %prepay_id, "unifiedorder: created");
        prepay_id
    };
    drop(st);
    let mut f = Params::new();
    f.insert("prepay_id".into(), prepay_id.clone());
    f.insert("trade_type".into(), trade_type.clone());
    if let Some(d) = r.get("device_info") {
        f.insert("device_info".into(), d.to_string());
    }
    match trade_type.as_str() {
        "NATIVE" => {
            f.insert(
                "code_url".into(),
                format!("weixin://wxpay/bizpayurl?pr={}", random_alnum(7)),
            );
        }
        "MWEB" => {
            f.insert(
                "mweb_url".into(),
                format!(
                    "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?prepay_id={prepay_id}&package={}",
                    random_digits(10)
                ),
            );
        }
        _ => {}
    }
    result_ok(&sh, r.sign_type, f)
}

/// Finds the order of a query by transaction_id (preferred) or out_trade_no.
fn find_order(st: &super::state::State, r: &PayReq) -> Option<String> {
    if let Some(t) = r.get("transaction_id") {
        return st.by_transaction.get(t).cloned();
    }
    r.get("out_trade_no")
        .filter(|n| st.orders.contains_key(*n))
        .map(str::to_string)
}

fn paid_fields(o: &Order, f: &mut Params) {
    if let Some(t) = &o.transaction_id {
        f.insert("transaction_id".into(), t.clone());
    }
    if let Some(t) = &o.time_end {
        f.insert("time_end".into(), t.clone());
    }
    f.insert("cash_fee".into(), o.cash_fee.to_string());
    f.insert("cash_fee_type".into(), "CNY".into());
    f.insert("bank_type".into(), "OTHERS".into());
    f.insert("is_subscribe".into(), "N".into());
    if o.coupon_fee > 0 {
        f.insert("coupon_fee".into(), o.coupon_fee.to_string());
        f.insert("coupon_count".into(), "1".into());
        f.insert("coupon_type_0".into(), "CASH".into());
        f.insert("coupon_id_0".into(), "10000000000001".into());
        f.insert("coupon_fee_0".into(), o.coupon_fee.to_string());
    }
}

async fn orderquery(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("orderquery");
    let r = match verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    if r.get("transaction_id").is_none() && r.get("out_trade_no").is_none() {
        return return_fail("缺少参数out_trade_no或transaction_id");
    }
    let st = sh.lock();
    let Some(o) = find_order(&st, &r).and_then(|n| st.orders.get(&n).cloned()) else {
        drop(st);
        return result_err(&sh, r.sign_type, "ORDERNOTEXIST", "order not exist");
    };
    drop(st);
    let mut f = Params::new();
    f.insert("out_trade_no".into(), o.out_trade_no.clone());
    f.insert("trade_state".into(), o.state.as_str().into());
    f.insert("trade_state_desc".into(), o.state.desc().into());
    f.insert("total_fee".into(), o.total_fee.to_string());
    f.insert("fee_type".into(), "CNY".into());
    f.insert("trade_type".into(), o.trade_type.clone());
    if let Some(a) = &o.attach {
        f.insert("attach".into(), a.clone());
    }
    if let Some(id) = &o.openid {
        f.insert("openid".into(), id.clone());
    }
    if o.state.is_paid() {
        paid_fields(&o, &mut f);
    }
    result_ok(&sh, r.sign_type, f)
}

async fn closeorder(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("closeorder");
    let r = match verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(no) = r.get("out_trade_no").map(str::to_string) else {
        return return_fail("缺少参数out_trade_no");
    };
    let mut st = sh.lock();
    let min_age = st.closeorder_min_age;
    let outcome = match st.orders.get_mut(&no) {
        None => Err(("ORDERNOTEXIST", "订单不存在")),
        Some(o) if o.state.is_paid() => Err(("ORDERPAID", "订单已支付，不能发起关单")),
        Some(o) if o.state == TradeState::Closed => {
            Err(("ORDERCLOSED", "订单已关闭，无法重复关闭"))
        }
        // WeChat documents the 5 minutes but no error code for them: SYSTEMERROR (the order
        // stays NOTPAY and payable; call again later) is this simulator's choice.
        Some(o) if o.created_at.elapsed() < min_age => Err((
            "SYSTEMERROR",
            "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟",
        )),
        Some(o) => {
            o.state = TradeState::Closed;
            Ok(())
        }
    };
    drop(st);
    match outcome {
        Ok(()) => {
            tracing::info!(target: "wechat_sim", out_trade_no = %no, "closeorder: closed");
            let mut f = Params::new();
            f.insert("result_msg".into(), "OK".into());
            result_ok(&sh, r.sign_type, f)
        }
        Err((code, des)) => result_err(&sh, r.sign_type, code, des),
    }
}

/// `/secapi/` requires the merchant certificate.
pub(super) fn require_cert(req: &HttpRequest, sh: &Shared) -> Result<(), Early> {
    let cert = req.conn_data::<PeerCert>().and_then(|p| p.0.clone());
    match cert {
        None => {
            tracing::info!(target: "wechat_sim", path = req.path(), "secapi without client certificate");
            Err(early("证书验证失败：请求未携带商户API证书"))
        }
        Some(der) if der != sh.merchant_cert_der => Err(early("证书验证失败：证书与商户号不匹配")),
        Some(_) => Ok(()),
    }
}

async fn secapi_other(req: HttpRequest, sh: web::Data<Shared>) -> HttpResponse {
    if let Err(r) = require_cert(&req, &sh) {
        return *r;
    }
    HttpResponse::NotFound()
        .content_type("text/plain")
        .body("not simulated")
}

pub(super) async fn refund(
    req: HttpRequest,
    body: web::Bytes,
    sh: web::Data<Shared>,
) -> HttpResponse {
    sh.count("refund");
    if let Err(resp) = require_cert(&req, &sh) {
        return *resp;
    }
    let r = match verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    for k in ["out_refund_no", "total_fee", "refund_fee"] {
        if r.get(k).is_none() {
            return return_fail(&format!("缺少参数{k}"));
        }
    }
    if r.get("transaction_id").is_none() && r.get("out_trade_no").is_none() {
        return return_fail("缺少参数out_trade_no或transaction_id");
    }
    let out_refund_no = r.get("out_refund_no").unwrap_or_default().to_string();
    if !out_refund_no_ok(&out_refund_no) {
        return return_fail("out_refund_no参数格式错误");
    }
    let Some(total_fee) = r.get("total_fee").and_then(parse_fee) else {
        return return_fail("total_fee参数格式错误");
    };
    let Some(refund_fee) = r.get("refund_fee").and_then(parse_fee) else {
        return return_fail("refund_fee参数格式错误");
    };
    if r.get("refund_fee_type").is_some_and(|f| f != "CNY") {
        return return_fail("refund_fee_type参数格式错误");
    }
    let notify_url = r.get("notify_url").map(str::to_string);
    if let Some(u) = &notify_url
        && !notify_url_ok(u)
    {
        return return_fail("notify_url参数格式错误：须为不带参数的http(s)地址");
    }
    if r.get("refund_desc")
        .is_some_and(|d| d.len() > REFUND_DESC_MAX_BYTES)
    {
        return result_err(
            &sh,
            r.sign_type,
            "PARAM_ERROR",
            "refund_desc参数长度有误，最长80字节",
        );
    }

    let mut st = sh.lock();
    let min_gap = st.refund_min_gap;
    let Some(no) = find_order(&st, &r) else {
        drop(st);
        return result_err(&sh, r.sign_type, "ORDERNOTEXIST", "订单号不存在");
    };
    if st
        .by_out_refund_no
        .get(&out_refund_no)
        .is_some_and(|other| *other != no)
    {
        drop(st);
        return result_err(&sh, r.sign_type, "ERROR", "退款单号已被其他订单使用");
    }
    let Some(o) = st.orders.get_mut(&no) else {
        drop(st);
        return result_err(&sh, r.sign_type, "ORDERNOTEXIST", "订单号不存在");
    };
    if !o.state.is_paid() {
        drop(st);
        return result_err(&sh, r.sign_type, "ERROR", "订单未支付，不能退款");
    }
    if total_fee != o.total_fee {
        drop(st);
        return result_err(
            &sh,
            r.sign_type,
            "PARAM_ERROR",
            "订单金额total_fee与原订单金额不一致",
        );
    }
    let (refund, fresh) =
        if let Some(existing) = o.refunds.iter().find(|x| x.out_refund_no == out_refund_no) {
            if existing.refund_fee != refund_fee {
                drop(st);
                return result_err(
                    &sh,
                    r.sign_type,
                    "REFUND_FEE_MISMATCH",
                    "订单金额或退款金额与之前请求不一致，请核实后再试",
                );
            }
            (existing.clone(), false)
        } else {
            if o.refunds.len() >= MAX_REFUNDS {
                drop(st);
                return result_err(&sh, r.sign_type, "ERROR", "一笔订单最多退款50次");
            }
            if refund_fee > o.total_fee - o.refunded_or_pending() {
                drop(st);
                return result_err(&sh, r.sign_type, "ERROR", "累计退款金额大于支付金额");
            }
            // A new refund of the same order less than a minute after the previous one.
            if o.last_refund_at.is_some_and(|t| t.elapsed() < min_gap) {
                drop(st);
                return result_err(
                    &sh,
                    r.sign_type,
                    "FREQUENCY_LIMITED",
                    "单笔订单请求频率过高，请于1分钟后重试",
                );
            }
            o.last_refund_at = Some(std::time::Instant::now());
            let refund = Refund {
                out_refund_no: out_refund_no.clone(),
                refund_id: new_refund_id(),
                refund_fee,
                success: false,
                success_time: None,
                notify_url,
                requested_time: beijing_now().format("%Y-%m-%d %H:%M:%S").to_string(),
            };
            o.refunds.push(refund.clone());
            (refund, true)
        };
    let order = o.clone();
    if fresh {
        st.by_out_refund_no
            .insert(out_refund_no.clone(), no.clone());
        st.by_refund_id.insert(refund.refund_id.clone(), no.clone());
    }
    drop(st);
    if fresh {
        tracing::info!(target: "wechat_sim", out_trade_no = %no, %out_refund_no, refund_fee, "refund accepted");
        let shared = sh.clone().into_inner();
        let (o_no, r_no) = (no.clone(), out_refund_no.clone());
        sh.spawn(async move { settle_refund(shared, o_no, r_no).await });
    }
    let mut f = Params::new();
    f.insert(
        "transaction_id".into(),
        order.transaction_id.clone().unwrap_or_default(),
    );
    f.insert("out_trade_no".into(), order.out_trade_no.clone());
    f.insert("out_refund_no".into(), refund.out_refund_no.clone());
    f.insert("refund_id".into(), refund.refund_id.clone());
    f.insert("refund_fee".into(), refund.refund_fee.to_string());
    f.insert(
        "settlement_refund_fee".into(),
        refund.refund_fee.to_string(),
    );
    f.insert("total_fee".into(), order.total_fee.to_string());
    f.insert("cash_fee".into(), order.cash_fee.to_string());
    f.insert(
        "cash_refund_fee".into(),
        refund.refund_fee.min(order.cash_fee).to_string(),
    );
    result_ok(&sh, r.sign_type, f)
}

/// After the settle delay: the refund succeeds, the order turns REFUND, the notify goes out.
async fn settle_refund(sh: std::sync::Arc<Shared>, out_trade_no: String, out_refund_no: String) {
    tokio::time::sleep(sh.cfg.refund_settle_delay).await;
    let notice = {
        let mut st = sh.lock();
        let Some(o) = st.orders.get_mut(&out_trade_no) else {
            return;
        };
        o.state = TradeState::Refund;
        let Some(rf) = o
            .refunds
            .iter_mut()
            .find(|x| x.out_refund_no == out_refund_no)
        else {
            return;
        };
        rf.success = true;
        let when = beijing_now().format("%Y-%m-%d %H:%M:%S").to_string();
        rf.success_time = Some(when.clone());
        let rf = rf.clone();
        rf.notify_url.clone().map(|url| RefundNotice {
            url,
            out_trade_no: o.out_trade_no.clone(),
            transaction_id: o.transaction_id.clone().unwrap_or_default(),
            total_fee: o.total_fee,
            out_refund_no: rf.out_refund_no.clone(),
            refund_id: rf.refund_id.clone(),
            refund_fee: rf.refund_fee,
            success_time: when,
        })
    };
    tracing::info!(target: "wechat_sim", %out_trade_no, %out_refund_no, "refund settled");
    if let Some(n) = notice {
        notify::deliver_refund(sh, n).await;
    }
}

pub(super) async fn refundquery(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("refundquery");
    let r = match verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let st = sh.lock();
    // Priority as documented: refund_id > out_refund_no > transaction_id > out_trade_no.
    let (no, only): (Option<String>, Option<&str>) = if let Some(id) = r.get("refund_id") {
        (st.by_refund_id.get(id).cloned(), Some(id))
    } else if let Some(n) = r.get("out_refund_no") {
        (st.by_out_refund_no.get(n).cloned(), Some(n))
    } else if r.get("transaction_id").is_some() || r.get("out_trade_no").is_some() {
        (find_order(&st, &r), None)
    } else {
        drop(st);
        return return_fail(
            "缺少参数：refund_id、out_refund_no、transaction_id、out_trade_no 四选一",
        );
    };
    let order = no.and_then(|n| st.orders.get(&n).cloned());
    drop(st);
    let Some(o) = order else {
        return result_err(&sh, r.sign_type, "REFUNDNOTEXIST", "not exist");
    };
    let refunds: Vec<&Refund> = o
        .refunds
        .iter()
        .filter(|x| only.is_none_or(|k| x.refund_id == k || x.out_refund_no == k))
        .collect();
    if refunds.is_empty() {
        return result_err(&sh, r.sign_type, "REFUNDNOTEXIST", "not exist");
    }
    let mut f = Params::new();
    f.insert(
        "transaction_id".into(),
        o.transaction_id.clone().unwrap_or_default(),
    );
    f.insert("out_trade_no".into(), o.out_trade_no.clone());
    f.insert("total_fee".into(), o.total_fee.to_string());
    f.insert("cash_fee".into(), o.cash_fee.to_string());
    f.insert("fee_type".into(), "CNY".into());
    f.insert("refund_count".into(), refunds.len().to_string());
    f.insert(
        "refund_fee".into(),
        refunds
            .iter()
            .map(|x| x.refund_fee)
            .sum::<u64>()
            .to_string(),
    );
    for (n, x) in refunds.iter().enumerate() {
        f.insert(format!("out_refund_no_{n}"), x.out_refund_no.clone());
        f.insert(format!("refund_id_{n}"), x.refund_id.clone());
        f.insert(format!("refund_channel_{n}"), "ORIGINAL".into());
        f.insert(format!("refund_fee_{n}"), x.refund_fee.to_string());
        f.insert(
            format!("settlement_refund_fee_{n}"),
            x.refund_fee.to_string(),
        );
        f.insert(format!("refund_status_{n}"), x.status().into());
        f.insert(
            format!("refund_account_{n}"),
            "REFUND_SOURCE_RECHARGE_FUNDS".into(),
        );
        f.insert(format!("refund_recv_accout_{n}"), "支付用户零钱".into());
        if let Some(t) = &x.success_time {
            f.insert(format!("refund_success_time_{n}"), t.clone());
        }
    }
    result_ok(&sh, r.sign_type, f)
}

/// What `wx.requestPayment` receives: the JSON the server hands the mini-program, with
/// WeChat's field names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=<prepay id>`.
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

/// Why the payment did not happen: `wx.requestPayment` fails (its `errMsg`), or the order
/// could not be paid.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PaymentRefused {
    #[error("requestPayment:fail parameter {0} is missing or empty")]
    MissingParam(&'static str),
    #[error("requestPayment:fail package must be prepay_id=<prepay id>")]
    BadPackage,
    #[error("requestPayment:fail prepay_id does not exist")]
    UnknownPrepayId,
    #[error("requestPayment:fail prepay_id expired (2 hours), call unifiedorder again")]
    PrepayExpired,
    #[error("requestPayment:fail appId is not the appid of the order")]
    WrongAppId,
    #[error("requestPayment:fail signType is not the one unifiedorder used")]
    SignTypeMismatch,
    #[error("requestPayment:fail timeStamp must be the Unix time in seconds, near now")]
    BadTimestamp,
    #[error("requestPayment:fail nonceStr longer than 32 characters")]
    BadNonce,
    #[error("requestPayment:fail 支付验证签名失败 (paySign)")]
    BadSign,
    #[error("the order is closed")]
    OrderClosed,
    #[error("the order is already paid")]
    AlreadyPaid,
    #[error("the order expired (time_expire)")]
    OrderExpired,
    #[error("coupon_fee must be below total_fee")]
    BadCoupon,
}

/// How far `timeStamp` may be ahead of the simulator's clock (the phone's clock may run fast).
const TIMESTAMP_AHEAD_SECS: i64 = 300;

/// `wx.requestPayment` in the mini-program, then the user pays: the client-side checks
/// WeChat makes on the parameters (prepay id alive, appId, signType as in unifiedorder,
/// timeStamp in seconds, paySign recomputed with the merchant key over appId, timeStamp,
/// nonceStr, package and signType), then [`simulate_payment`].
pub fn request_payment(
    sh: &std::sync::Arc<Shared>,
    p: &JsapiParams,
    coupon_fee: u64,
) -> Result<(), PaymentRefused> {
    for (name, v) in [
        ("appId", &p.app_id),
        ("timeStamp", &p.time_stamp),
        ("nonceStr", &p.nonce_str),
        ("package", &p.package),
        ("signType", &p.sign_type),
        ("paySign", &p.pay_sign),
    ] {
        if v.is_empty() {
            return Err(PaymentRefused::MissingParam(name));
        }
    }
    let prepay_id = p
        .package
        .strip_prefix("prepay_id=")
        .filter(|id| !id.is_empty())
        .ok_or(PaymentRefused::BadPackage)?;
    {
        let st = sh.lock();
        let o = st
            .by_prepay
            .get(prepay_id)
            .and_then(|no| st.orders.get(no))
            .ok_or(PaymentRefused::UnknownPrepayId)?;
        if o.prepay_expires <= std::time::Instant::now() {
            return Err(PaymentRefused::PrepayExpired);
        }
        if p.app_id != o.appid {
            return Err(PaymentRefused::WrongAppId);
        }
        let st_used = match p.sign_type.as_str() {
            "MD5" => SignType::Md5,
            "HMAC-SHA256" => SignType::HmacSha256,
            _ => return Err(PaymentRefused::SignTypeMismatch),
        };
        if st_used != o.sign_type {
            return Err(PaymentRefused::SignTypeMismatch);
        }
        let ts_ok = p.time_stamp.len() <= 10
            && p.time_stamp.bytes().all(|b| b.is_ascii_digit())
            && p.time_stamp.parse::<i64>().is_ok_and(|ts| {
                let now = chrono::Utc::now().timestamp();
                ts <= now + TIMESTAMP_AHEAD_SECS && ts >= now - PREPAY_TTL.as_secs() as i64
            });
        if !ts_ok {
            return Err(PaymentRefused::BadTimestamp);
        }
        if p.nonce_str.chars().count() > 32 {
            return Err(PaymentRefused::BadNonce);
        }
        let expected = sign::pay_sign(
            [
                ("appId", p.app_id.as_str()),
                ("timeStamp", p.time_stamp.as_str()),
                ("nonceStr", p.nonce_str.as_str()),
                ("package", p.package.as_str()),
                ("signType", p.sign_type.as_str()),
            ],
            &sh.cfg.pay_key,
            st_used,
        );
        if !sign::ct_eq(&p.pay_sign, &expected) {
            return Err(PaymentRefused::BadSign);
        }
    }
    simulate_payment(sh, prepay_id, coupon_fee)
}

/// The user pays, without the client-side checks of [`request_payment`]: NOTPAY → SUCCESS,
/// then the pay notify is delivered. `key` is a prepay id or an out_trade_no.
pub fn simulate_payment(
    sh: &std::sync::Arc<Shared>,
    key: &str,
    coupon_fee: u64,
) -> Result<(), PaymentRefused> {
    let notice = {
        let mut st = sh.lock();
        let Some(no) = st.order_no_by_key(key) else {
            return Err(PaymentRefused::UnknownPrepayId);
        };
        let by_prepay = st.by_prepay.contains_key(key);
        let Some(o) = st.orders.get_mut(&no) else {
            return Err(PaymentRefused::UnknownPrepayId);
        };
        match o.state {
            TradeState::NotPay => {}
            TradeState::Closed => return Err(PaymentRefused::OrderClosed),
            _ => return Err(PaymentRefused::AlreadyPaid),
        }
        if by_prepay && o.prepay_id != key {
            return Err(PaymentRefused::PrepayExpired);
        }
        if o.prepay_expires <= std::time::Instant::now() {
            return Err(PaymentRefused::PrepayExpired);
        }
        if o.time_expire.is_some_and(|t| t <= beijing_now()) {
            return Err(PaymentRefused::OrderExpired);
        }
        if coupon_fee >= o.total_fee {
            return Err(PaymentRefused::BadCoupon);
        }
        let txn = new_transaction_id();
        o.state = TradeState::Success;
        o.transaction_id = Some(txn.clone());
        o.time_end = Some(beijing_compact(beijing_now()));
        o.cash_fee = o.total_fee - coupon_fee;
        o.coupon_fee = coupon_fee;
        let notice = PayNotice::from_order(o);
        st.by_transaction.insert(txn, no.clone());
        tracing::info!(target: "wechat_sim", out_trade_no = %no, "paid");
        notice
    };
    let shared = sh.clone();
    sh.spawn(async move { notify::deliver_pay(shared, notice).await });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        assert!(out_trade_no_ok("abc_12-3|*"));
        assert!(!out_trade_no_ok("short"));
        assert!(!out_trade_no_ok(&"x".repeat(33)));
        assert!(!out_trade_no_ok("has space"));
        assert!(out_refund_no_ok(&"r".repeat(64)));
        assert!(!out_refund_no_ok(&"r".repeat(65)));
        assert_eq!(parse_fee("1"), Some(1));
        assert_eq!(parse_fee("0"), None);
        assert_eq!(parse_fee("1.5"), None);
        assert_eq!(parse_fee("-1"), None);
        assert_eq!(parse_fee("+1"), None);
        assert!(notify_url_ok("http://127.0.0.1:8080/api/v1/pay/notify"));
        assert!(!notify_url_ok("http://127.0.0.1:8080/n?x=1"));
        assert!(!notify_url_ok("ftp://host/x"));
        assert!(parse_beijing("20240102030405").is_some());
        assert!(parse_beijing("2024010203040").is_none());
        assert!(parse_beijing("20241302030405").is_none());
        assert_eq!(new_transaction_id().len(), 28);
        assert!(new_prepay_id().len() <= 64);
    }
}
