//! Scripted refund behaviour for tests of unclear answers: the next `secapi/pay/refund`
//! calls can get a garbled, unsigned, incomplete, slow or refused reply (after WeChat has
//! accepted the refund or not), and chosen refunds can end in CHANGE or REFUNDCLOSE, or
//! stay PROCESSING, as `refundquery` reports them (no refund notify is sent for those).
//!
//! These handlers sit in front of the ordinary ones in `pay.rs` and call them for
//! everything not scripted.

use std::collections::BTreeMap;
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};

use super::pay;
use super::sign::{self, SignType};
use super::state::{Shared, random_alnum};
use super::xml;

/// What the refund call answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundReply {
    /// HTTP 200 with a body that is not XML.
    Garbled,
    /// A success reply whose signature is wrong.
    BadSign,
    /// A signed success reply without `refund_id`.
    NoRefundId,
    /// This HTTP status with an empty body.
    HttpStatus(u16),
    /// A signed `result_code` FAIL with this `err_code` (SYSTEMERROR, NOTENOUGH, ERROR, ...).
    ErrCode(String),
    /// The ordinary answer, after this delay (longer than the client's timeout).
    Slow(Duration),
}

/// One scripted refund call.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundFault {
    pub reply: RefundReply,
    /// Whether WeChat accepted the refund before answering so.
    pub accepted: bool,
}

/// How a refund ends, as `refundquery` reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefundOutcome {
    /// Stays PROCESSING.
    Hold,
    /// CHANGE: the user's account is closed; WeChat holds the money.
    Change,
    /// REFUNDCLOSE: closed, money not sent.
    Close,
}

impl RefundOutcome {
    fn status(self) -> &'static str {
        match self {
            RefundOutcome::Hold => "PROCESSING",
            RefundOutcome::Change => "CHANGE",
            RefundOutcome::Close => "REFUNDCLOSE",
        }
    }
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/secapi/pay/refund", web::post().to(refund))
        .route("/pay/refundquery", web::post().to(refundquery));
}

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn request_field(body: &[u8], k: &str) -> Option<String> {
    xml::parse(body).ok()?.fields.get(k).cloned()
}

fn sign_type_of(body: &[u8]) -> SignType {
    SignType::parse(request_field(body, "sign_type").as_deref()).unwrap_or(SignType::Md5)
}

fn signed(
    sh: &Shared,
    st: SignType,
    mut f: BTreeMap<String, String>,
    tamper: bool,
) -> HttpResponse {
    f.insert("return_code".into(), "SUCCESS".into());
    f.insert("return_msg".into(), "OK".into());
    f.insert("appid".into(), sh.cfg.appid.clone());
    f.insert("mch_id".into(), sh.cfg.mch_id.clone());
    f.insert("nonce_str".into(), random_alnum(16));
    let mut s = sign::pay_sign_map(&f, &sh.cfg.pay_key, st);
    if tamper {
        s = format!("0{}", &s[1..]);
        if s == sign::pay_sign_map(&f, &sh.cfg.pay_key, st) {
            s = format!("1{}", &s[1..]);
        }
    }
    f.insert("sign".into(), s);
    xml_response(xml::build_map("xml", &f))
}

/// No notify for refunds whose end is scripted: only `refundquery` tells.
fn silence_scripted(sh: &Shared, out_refund_no: &str) {
    let mut st = sh.lock();
    if !st.refund_outcomes.contains_key(out_refund_no) {
        return;
    }
    let Some(no) = st.by_out_refund_no.get(out_refund_no).cloned() else {
        return;
    };
    if let Some(r) = st.orders.get_mut(&no).and_then(|o| {
        o.refunds
            .iter_mut()
            .find(|r| r.out_refund_no == out_refund_no)
    }) {
        r.notify_url = None;
    }
}

async fn refund(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let fault = sh.lock().refund_faults.pop_front();
    let out_refund_no = request_field(&body, "out_refund_no").unwrap_or_default();
    let Some(fault) = fault else {
        let resp = pay::refund(req, body, sh.clone()).await;
        silence_scripted(&sh, &out_refund_no);
        return resp;
    };
    let st = sign_type_of(&body);
    let ordinary = if fault.accepted {
        let r = pay::refund(req, body.clone(), sh.clone()).await;
        silence_scripted(&sh, &out_refund_no);
        Some(r)
    } else {
        sh.count("refund");
        None
    };
    let mut ok = BTreeMap::new();
    ok.insert("out_refund_no".to_string(), out_refund_no.clone());
    ok.insert("result_code".to_string(), "SUCCESS".to_string());
    match fault.reply {
        RefundReply::Garbled => HttpResponse::Ok()
            .content_type("text/xml; charset=utf-8")
            .body("<xml><return_code>SUCC"),
        RefundReply::BadSign => {
            ok.insert("refund_id".into(), format!("50{}", random_alnum(20)));
            ok.insert(
                "refund_fee".into(),
                request_field(&body, "refund_fee").unwrap_or_default(),
            );
            signed(&sh, st, ok, true)
        }
        RefundReply::NoRefundId => signed(&sh, st, ok, false),
        RefundReply::HttpStatus(code) => HttpResponse::build(
            actix_web::http::StatusCode::from_u16(code)
                .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
        )
        .finish(),
        RefundReply::ErrCode(code) => {
            let mut f = BTreeMap::new();
            f.insert("result_code".to_string(), "FAIL".to_string());
            f.insert("err_code".to_string(), code);
            f.insert("err_code_des".to_string(), "scripted".to_string());
            signed(&sh, st, f, false)
        }
        RefundReply::Slow(d) => {
            tokio::time::sleep(d).await;
            ordinary.unwrap_or_else(|| HttpResponse::InternalServerError().finish())
        }
    }
}

/// The ordinary answer, with the status of scripted refunds replaced (and signed again).
async fn refundquery(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    let outcomes = sh.lock().refund_outcomes.clone();
    let resp = pay::refundquery(body.clone(), sh.clone()).await;
    if outcomes.is_empty() {
        return resp;
    }
    let bytes = actix_web::body::to_bytes(resp.into_body())
        .await
        .unwrap_or_default();
    let Ok(doc) = xml::parse(&bytes) else {
        return xml_response(String::from_utf8_lossy(&bytes).into_owned());
    };
    let mut f = doc.fields;
    let replace: Vec<(String, &'static str)> = f
        .iter()
        .filter_map(|(k, v)| {
            let n = k.strip_prefix("out_refund_no_")?;
            let o = outcomes.get(v)?;
            Some((format!("refund_status_{n}"), o.status()))
        })
        .collect();
    if replace.is_empty() {
        return xml_response(String::from_utf8_lossy(&bytes).into_owned());
    }
    for (k, v) in replace {
        f.insert(k, v.to_string());
    }
    f.remove("sign");
    let s = sign::pay_sign_map(&f, &sh.cfg.pay_key, sign_type_of(&body));
    f.insert("sign".into(), s);
    xml_response(xml::build_map("xml", &f))
}
