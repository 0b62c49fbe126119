//! Pay v2 transfers to a user's balance (企业付款到零钱): `mmpaymkttransfers/promotion/transfers`
//! and `mmpaymkttransfers/gettransferinfo`, both over the merchant certificate (mutual TLS).
//!
//! As WeChat documents them: MD5 signatures over the v2 rules (a `sign_type` other than MD5
//! cannot verify), `mch_appid`/`mchid` in transfers but `appid`/`mch_id` in the query, replies
//! without `sign`, business errors as `return_code SUCCESS` + `result_code FAIL` + `err_code`.
//! `partner_trade_no` (≤ 32 letters or digits) is the idempotency key: the same number with the
//! same parameters answers the first result again, with other parameters `FATAL_ERROR`.
//! Injected faults ([`TransferFault`]) are taken one per request, in order: `SYSTEMERROR` or a
//! lost answer after the money moved (the query tells), `SYSTEMERROR` before it moved, and
//! definite refusals (`NOTENOUGH`, `AMOUNT_LIMIT`, ...) where nothing is recorded and the same
//! number may be used again later.
//!
//! Choices where the documentation is loose: the openid must be one `jscode2session` gave out
//! (else `OPENID_ERROR`); amounts below 30 fen or above 20,000 yuan are `AMOUNT_LIMIT`.

use std::collections::BTreeMap;

use actix_web::{HttpRequest, HttpResponse, web};
use serde::{Deserialize, Serialize};

use super::sign::{self, SignType};
use super::state::{Shared, beijing_now, random_alnum, random_digits};
use super::xml;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route(
        "/mmpaymkttransfers/promotion/transfers",
        web::post().to(transfers),
    )
    .route(
        "/mmpaymkttransfers/gettransferinfo",
        web::post().to(gettransferinfo),
    );
}

/// Smallest and largest single transfer, fen.
const MIN_AMOUNT: u64 = 30;
const MAX_AMOUNT: u64 = 2_000_000;

/// One injected outcome for the next transfers request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferFault {
    /// The money moves, the answer is SYSTEMERROR.
    SystemErrorButPaid,
    /// The money moves, the answer never arrives (the connection breaks mid-answer).
    LostAnswerButPaid,
    /// SYSTEMERROR and nothing happens (a retry with the same number can succeed).
    SystemError,
    /// A definite refusal with this err_code (`NOTENOUGH`, `AMOUNT_LIMIT`, `NAME_MISMATCH`,
    /// `V2_ACCOUNT_SIMPLE_BAN`, `SENDNUM_LIMIT`, `FREQ_LIMIT`, `MONEY_LIMIT`, `NO_AUTH`, ...);
    /// nothing is recorded.
    Refuse(String),
}

/// A transfer the simulator made.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimTransfer {
    pub partner_trade_no: String,
    pub mch_appid: String,
    pub openid: String,
    pub amount: u64,
    pub check_name: String,
    pub re_user_name: Option<String>,
    pub desc: String,
    pub payment_no: String,
    /// `yyyy-MM-dd HH:mm:ss`, Beijing.
    pub payment_time: String,
    /// "SUCCESS" (transfers here complete at once).
    pub status: String,
}

impl SimTransfer {
    fn same_request(&self, o: &SimTransfer) -> bool {
        self.mch_appid == o.mch_appid
            && self.openid == o.openid
            && self.amount == o.amount
            && self.check_name == o.check_name
            && self.re_user_name == o.re_user_name
            && self.desc == o.desc
    }
}

fn des_of(code: &str) -> &'static str {
    match code {
        "NOTENOUGH" => "余额不足",
        "AMOUNT_LIMIT" => "付款金额超出限制",
        "NAME_MISMATCH" => "收款人身份校验不通过",
        "V2_ACCOUNT_SIMPLE_BAN" => "无法给非实名用户付款",
        "SENDNUM_LIMIT" => "该用户今日付款次数超过限制",
        "FREQ_LIMIT" => "超过频率限制，请稍后再试",
        "MONEY_LIMIT" => "已经达到今日付款总额上限/已达到付款给此用户额度上限",
        "NO_AUTH" => "没有该接口权限",
        "SYSTEMERROR" => "系统繁忙，请稍后再试",
        _ => "付款失败",
    }
}

type Params = BTreeMap<String, String>;

fn xml_response(fields: &Params) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(xml::build_map("xml", fields))
}

/// A business refusal: `return_code SUCCESS`, `result_code FAIL`, no signature.
fn refuse(code: &str, des: &str) -> HttpResponse {
    let mut f = Params::new();
    f.insert("return_code".into(), "SUCCESS".into());
    f.insert("return_msg".into(), des.into());
    f.insert("result_code".into(), "FAIL".into());
    f.insert("err_code".into(), code.into());
    f.insert("err_code_des".into(), des.into());
    xml_response(&f)
}

fn return_fail(msg: &str) -> HttpResponse {
    let mut f = Params::new();
    f.insert("return_code".into(), "FAIL".into());
    f.insert("return_msg".into(), msg.into());
    xml_response(&f)
}

/// Mutual TLS, XML, MD5 signature. `Err` is the answer to give.
fn parse_signed(
    req: &HttpRequest,
    sh: &Shared,
    body: &[u8],
    required: &[&str],
) -> Result<Params, Box<HttpResponse>> {
    super::pay::require_cert(req, sh)?;
    let doc = xml::parse(body).map_err(|_| Box::new(return_fail("XML格式错误")))?;
    if doc.root != "xml" {
        return Err(Box::new(return_fail("XML格式错误")));
    }
    let p = doc.fields;
    for k in required {
        if p.get(*k).is_none_or(|v| v.is_empty()) {
            return Err(Box::new(refuse(
                "PARAM_ERROR",
                &format!("参数错误：缺少参数{k}"),
            )));
        }
    }
    if !sign::pay_verify(&p, &sh.cfg.pay_key, SignType::Md5) {
        return Err(Box::new(refuse("SIGN_ERROR", "签名错误")));
    }
    if p.get("nonce_str").is_some_and(|n| n.chars().count() > 32) {
        return Err(Box::new(refuse(
            "PARAM_ERROR",
            "参数错误：nonce_str长度有误",
        )));
    }
    Ok(p)
}

fn partner_trade_no_ok(s: &str) -> bool {
    (1..=32).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

async fn transfers(req: HttpRequest, body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("transfers");
    let p = match parse_signed(
        &req,
        &sh,
        &body,
        &[
            "mch_appid",
            "mchid",
            "nonce_str",
            "sign",
            "partner_trade_no",
            "openid",
            "check_name",
            "amount",
            "desc",
        ],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    let get = |k: &str| p.get(k).cloned().unwrap_or_default();
    if get("mchid") != sh.cfg.mch_id {
        return refuse("PARAM_ERROR", "参数错误：mchid与证书不匹配");
    }
    let mch_appid = get("mch_appid");
    if mch_appid != sh.cfg.appid && mch_appid != sh.cfg.mp_appid {
        return refuse("PARAM_ERROR", "参数错误：商户号和appid没有绑定关系");
    }
    let partner_trade_no = get("partner_trade_no");
    if !partner_trade_no_ok(&partner_trade_no) {
        return refuse("PARAM_ERROR", "参数错误：输入的商户订单号有误");
    }
    if let Some(ip) = p.get("spbill_create_ip")
        && ip.parse::<std::net::IpAddr>().is_err()
    {
        return refuse("PARAM_ERROR", "参数错误：spbill_create_ip格式错误");
    }
    let check_name = get("check_name");
    let re_user_name = p.get("re_user_name").filter(|v| !v.is_empty()).cloned();
    match check_name.as_str() {
        "NO_CHECK" => {}
        "FORCE_CHECK" if re_user_name.is_some() => {}
        "FORCE_CHECK" => return refuse("PARAM_ERROR", "参数错误：FORCE_CHECK时re_user_name必填"),
        _ => return refuse("PARAM_ERROR", "参数错误：check_name取值错误"),
    }
    let amount = get("amount");
    let Some(amount) = amount
        .parse::<u64>()
        .ok()
        .filter(|_| amount.bytes().all(|b| b.is_ascii_digit()))
    else {
        return refuse("PARAM_ERROR", "参数错误：amount必须为正整数（分）");
    };
    if !(MIN_AMOUNT..=MAX_AMOUNT).contains(&amount) {
        return refuse(
            "AMOUNT_LIMIT",
            "付款金额超出限制。低于最小金额0.30元或累计超过20000.00元。",
        );
    }
    let openid = get("openid");
    let request = SimTransfer {
        partner_trade_no: partner_trade_no.clone(),
        mch_appid: mch_appid.clone(),
        openid: openid.clone(),
        amount,
        check_name,
        re_user_name,
        desc: get("desc"),
        payment_no: String::new(),
        payment_time: String::new(),
        status: String::new(),
    };

    let mut st = sh.lock();
    if mch_appid == sh.cfg.appid && !st.issued_openids.contains(&openid) {
        return refuse("OPENID_ERROR", "Openid错误");
    }
    // The idempotency key first: a repeat answers what the first request got.
    if let Some(done) = st.transfers.get(&partner_trade_no) {
        if !done.same_request(&request) {
            return refuse("FATAL_ERROR", "已存在该单处理中，且两次请求参数不一致");
        }
        let done = done.clone();
        drop(st);
        return success(&sh, &done);
    }
    let fault = st.transfer_faults.pop_front();
    let pay = |st: &mut super::state::State| {
        let t = SimTransfer {
            payment_no: format!(
                "10101{}{}",
                beijing_now().format("%Y%m%d"),
                random_digits(15)
            ),
            payment_time: beijing_now().format("%Y-%m-%d %H:%M:%S").to_string(),
            status: "SUCCESS".into(),
            ..request.clone()
        };
        st.transfers.insert(t.partner_trade_no.clone(), t.clone());
        tracing::info!(target: "wechat_sim", partner_trade_no = %t.partner_trade_no, amount, "transfer paid");
        t
    };
    match fault {
        None => {
            let t = pay(&mut st);
            drop(st);
            success(&sh, &t)
        }
        Some(TransferFault::SystemErrorButPaid) => {
            pay(&mut st);
            refuse("SYSTEMERROR", des_of("SYSTEMERROR"))
        }
        Some(TransferFault::LostAnswerButPaid) => {
            pay(&mut st);
            drop(st);
            sh.count("transfers_answer_lost");
            lost_answer()
        }
        Some(TransferFault::SystemError) => refuse("SYSTEMERROR", des_of("SYSTEMERROR")),
        Some(TransferFault::Refuse(code)) => refuse(&code, des_of(&code)),
    }
}

fn success(sh: &Shared, t: &SimTransfer) -> HttpResponse {
    let mut f = Params::new();
    f.insert("return_code".into(), "SUCCESS".into());
    f.insert("return_msg".into(), String::new());
    f.insert("mch_appid".into(), t.mch_appid.clone());
    f.insert("mchid".into(), sh.cfg.mch_id.clone());
    f.insert("nonce_str".into(), random_alnum(32));
    f.insert("result_code".into(), "SUCCESS".into());
    f.insert("partner_trade_no".into(), t.partner_trade_no.clone());
    f.insert("payment_no".into(), t.payment_no.clone());
    f.insert("payment_time".into(), t.payment_time.clone());
    f.retain(|k, v| !v.is_empty() || k == "return_msg");
    xml_response(&f)
}

/// Headers go out, then the connection breaks before the body: the client never reads an
/// answer.
fn lost_answer() -> HttpResponse {
    let body = futures::stream::once(async {
        Err::<web::Bytes, std::io::Error>(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "answer lost (injected)",
        ))
    });
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .streaming(body)
}

async fn gettransferinfo(
    req: HttpRequest,
    body: web::Bytes,
    sh: web::Data<Shared>,
) -> HttpResponse {
    sh.count("gettransferinfo");
    let p = match parse_signed(
        &req,
        &sh,
        &body,
        &["nonce_str", "sign", "partner_trade_no", "mch_id", "appid"],
    ) {
        Ok(p) => p,
        Err(r) => return *r,
    };
    if p.get("mch_id") != Some(&sh.cfg.mch_id) {
        return refuse("PARAM_ERROR", "参数错误：mch_id与证书不匹配");
    }
    let appid = p.get("appid").cloned().unwrap_or_default();
    let no = p.get("partner_trade_no").cloned().unwrap_or_default();
    let t = sh.lock().transfers.get(&no).cloned();
    let Some(t) = t.filter(|t| t.mch_appid == appid) else {
        return refuse("NOT_FOUND", "指定单号数据不存在");
    };
    let mut f = Params::new();
    f.insert("return_code".into(), "SUCCESS".into());
    f.insert("return_msg".into(), "OK".into());
    f.insert("result_code".into(), "SUCCESS".into());
    f.insert("partner_trade_no".into(), t.partner_trade_no.clone());
    f.insert("appid".into(), t.mch_appid.clone());
    f.insert("mch_id".into(), sh.cfg.mch_id.clone());
    f.insert("detail_id".into(), t.payment_no.clone());
    f.insert("status".into(), t.status.clone());
    f.insert("openid".into(), t.openid.clone());
    if let Some(n) = &t.re_user_name {
        f.insert("transfer_name".into(), n.clone());
    }
    f.insert("payment_amount".into(), t.amount.to_string());
    f.insert("transfer_time".into(), t.payment_time.clone());
    f.insert("payment_time".into(), t.payment_time.clone());
    f.insert("desc".into(), t.desc.clone());
    xml_response(&f)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partner_trade_no_is_letters_and_digits() {
        assert!(partner_trade_no_ok("10000098201411111234567890"));
        assert!(partner_trade_no_ok(&"a".repeat(32)));
        assert!(!partner_trade_no_ok(&"a".repeat(33)));
        assert!(!partner_trade_no_ok("with_underscore"));
        assert!(!partner_trade_no_ok(""));
        assert_eq!(des_of("NOTENOUGH"), "余额不足");
    }
}
