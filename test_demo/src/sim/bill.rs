//! `pay/downloadbill` (Pay v2): the day's transaction bill, built from what the simulator
//! recorded.
//!
//! As WeChat sends it: plain text (not XML), CRLF lines; a header line, one line per payment
//! (paid that Beijing day) and per refund (succeeded that day) with every field prefixed by a
//! backtick, then the summary header (总交易单数,应结订单总金额,退款总金额,充值券退款总金额,
//! 手续费总金额,订单总金额,申请退款总金额) and one summary line. Amounts are yuan with two decimals,
//! fees with five (0.6% per order, rounded to the fen). `bill_type` ALL / SUCCESS / REFUND /
//! RECHARGE_REFUND pick the rows and their columns; `tar_type=GZIP` gzips the body. Failures
//! are XML with `return_code FAIL`: `No Bill Exist` / `error_code 20002` for a day with no
//! rows, and for today (a bill exists from about 10:00 the next day; see
//! [`super::SimHandle::set_bill_same_day`]). Choices: a bad `bill_date`/`bill_type`/`tar_type`
//! answers `error_code 20001`; the text has no byte-order mark.

use std::collections::BTreeMap;
use std::io::Write as _;

use actix_web::{HttpResponse, web};
use chrono::NaiveDate;
use serde::Deserialize;

use super::state::{Order, Shared, TradeState, beijing_now};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/pay/downloadbill", web::post().to(downloadbill));
}

/// An edit of a payment's row in the bill (for reconciliation tests).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BillRowEdit {
    /// The row says this amount (fen) as 应结订单金额 and 订单金额.
    Amount(u64),
    /// The payment's row (and its refunds' rows) are missing from the bill.
    Drop,
}

const ALL_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUCCESS_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,商品名称,商户数据包,手续费,费率,订单金额,费率备注";
const REFUND_HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,退款申请时间,退款成功时间,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";
const SUMMARY_HEADER: &str =
    "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额";
const RATE: &str = "0.60%";

fn fail(msg: &str, error_code: Option<&str>) -> HttpResponse {
    let mut f: BTreeMap<String, String> = BTreeMap::new();
    f.insert("return_code".into(), "FAIL".into());
    f.insert("return_msg".into(), msg.into());
    if let Some(c) = error_code {
        f.insert("error_code".into(), c.into());
    }
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(super::xml::build_map("xml", &f))
}

/// `12.3` yuan from fen, two decimals (negative allowed).
fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// A fee in yuan with five decimals.
fn fee_yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}000", a / 100, a % 100)
}

/// 0.6% of `fen`, rounded half up to the fen.
fn fee_of(fen: u64) -> i64 {
    ((fen * 6 + 500) / 1000) as i64
}

/// `yyyyMMddHHmmss` → `yyyy-MM-dd HH:mm:ss`.
fn dashed(t: &str) -> String {
    if t.len() != 14 {
        return t.to_string();
    }
    format!(
        "{}-{}-{} {}:{}:{}",
        &t[0..4],
        &t[4..6],
        &t[6..8],
        &t[8..10],
        &t[10..12],
        &t[12..14]
    )
}

fn row(fields: &[String]) -> String {
    let mut s = fields
        .iter()
        .map(|f| format!("`{f}"))
        .collect::<Vec<_>>()
        .join(",");
    s.push_str("\r\n");
    s
}

#[derive(Default)]
struct Totals {
    count: u64,
    settled: i64,
    refunded: i64,
    fees: i64,
    ordered: i64,
    refund_applied: i64,
}

/// The bill text for `day` and `bill_type`, or None when it has no rows.
fn build(
    sh: &Shared,
    orders: &[Order],
    edits: &std::collections::HashMap<String, BillRowEdit>,
    day: NaiveDate,
    bill_type: &str,
) -> Option<String> {
    let day_str = day.format("%Y%m%d").to_string();
    let day_dashed = day.format("%Y-%m-%d").to_string();
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut t = Totals::default();
    for o in orders {
        let edit = edits.get(&o.out_trade_no);
        if edit == Some(&BillRowEdit::Drop) {
            continue;
        }
        let common = |status: &str| -> Vec<String> {
            vec![
                String::new(), // time, filled below
                o.appid.clone(),
                sh.cfg.mch_id.clone(),
                "0".into(),
                String::new(),
                o.transaction_id.clone().unwrap_or_default(),
                o.out_trade_no.clone(),
                o.openid.clone().unwrap_or_default(),
                o.trade_type.clone(),
                status.into(),
                "OTHERS".into(),
                "CNY".into(),
            ]
        };
        let body = o.fingerprint.get("body").cloned().unwrap_or_default();
        let attach = o.attach.clone().unwrap_or_default();
        let paid_that_day = o.state.is_paid()
            && o.time_end
                .as_deref()
                .is_some_and(|e| e.starts_with(&day_str));
        if paid_that_day && matches!(bill_type, "ALL" | "SUCCESS") {
            let total = match edit {
                Some(BillRowEdit::Amount(f)) => *f,
                _ => o.total_fee,
            };
            let coupon = o.coupon_fee.min(total);
            let settle = total - coupon;
            let fee = fee_of(settle);
            let mut f = common("SUCCESS");
            f[0] = dashed(o.time_end.as_deref().unwrap_or_default());
            f.push(yuan(settle as i64));
            f.push(yuan(coupon as i64));
            if bill_type == "ALL" {
                f.extend(["0".into(), "0".into(), "0.00".into(), "0.00".into()]);
                f.extend([String::new(), String::new()]);
            }
            f.extend([body.clone(), attach.clone(), fee_yuan(fee), RATE.into()]);
            f.push(yuan(total as i64));
            if bill_type == "ALL" {
                f.push("0.00".into());
            }
            f.push(String::new());
            t.count += 1;
            t.settled += settle as i64;
            t.fees += fee;
            t.ordered += total as i64;
            rows.push((f[0].clone(), row(&f)));
        }
        if !matches!(bill_type, "ALL" | "REFUND") {
            continue;
        }
        for r in &o.refunds {
            let Some(done) = r.success_time.as_deref() else {
                continue;
            };
            if !done.starts_with(&day_dashed) {
                continue;
            }
            let fee = -fee_of(r.refund_fee);
            let mut f = common("REFUND");
            f[0] = done.to_string();
            f.push("0.00".into());
            f.push("0.00".into());
            if bill_type == "REFUND" {
                f.push(r.requested_time.clone());
                f.push(done.to_string());
            }
            f.extend([
                r.refund_id.clone(),
                r.out_refund_no.clone(),
                yuan(r.refund_fee as i64),
                "0.00".into(),
                "ORIGINAL".into(),
                "SUCCESS".into(),
                body.clone(),
                attach.clone(),
                fee_yuan(fee),
                RATE.into(),
                "0.00".into(),
                yuan(r.refund_fee as i64),
                String::new(),
            ]);
            t.count += 1;
            t.refunded += r.refund_fee as i64;
            t.fees += fee;
            t.refund_applied += r.refund_fee as i64;
            rows.push((f[0].clone(), row(&f)));
        }
    }
    if rows.is_empty() {
        return None;
    }
    rows.sort();
    let header = match bill_type {
        "SUCCESS" => SUCCESS_HEADER,
        "REFUND" => REFUND_HEADER,
        _ => ALL_HEADER,
    };
    let mut out = String::new();
    out.push_str(header);
    out.push_str("\r\n");
    for (_, r) in rows {
        out.push_str(&r);
    }
    out.push_str(SUMMARY_HEADER);
    out.push_str("\r\n");
    out.push_str(&row(&[
        t.count.to_string(),
        yuan(t.settled),
        yuan(t.refunded),
        "0.00".into(),
        fee_yuan(t.fees),
        yuan(t.ordered),
        yuan(t.refund_applied),
    ]));
    Some(out)
}

async fn downloadbill(body: web::Bytes, sh: web::Data<Shared>) -> HttpResponse {
    sh.count("downloadbill");
    let r = match super::pay::verify(&sh, &body) {
        Ok(r) => r,
        Err(resp) => return *resp,
    };
    let Some(day) = r
        .get("bill_date")
        .filter(|d| d.len() == 8)
        .and_then(|d| NaiveDate::parse_from_str(d, "%Y%m%d").ok())
    else {
        return fail("invalid bill_date", Some("20001"));
    };
    let bill_type = r.get("bill_type").unwrap_or("ALL").to_string();
    if !matches!(
        bill_type.as_str(),
        "ALL" | "SUCCESS" | "REFUND" | "RECHARGE_REFUND"
    ) {
        return fail("invalid bill_type", Some("20001"));
    }
    let gzip = match r.get("tar_type") {
        None => false,
        Some("GZIP") => true,
        Some(_) => return fail("invalid tar_type", Some("20001")),
    };
    let (orders, edits, same_day) = {
        let st = sh.lock();
        (
            st.orders.values().cloned().collect::<Vec<_>>(),
            st.bill_edits.clone(),
            st.bill_same_day,
        )
    };
    let today = beijing_now().date_naive();
    if day > today || (day == today && !same_day) {
        return fail("No Bill Exist", Some("20002"));
    }
    let orders: Vec<Order> = orders
        .into_iter()
        .filter(|o| o.state != TradeState::NotPay)
        .collect();
    let Some(text) = (if bill_type == "RECHARGE_REFUND" {
        None // no recharge coupons are simulated
    } else {
        build(&sh, &orders, &edits, day, &bill_type)
    }) else {
        return fail("No Bill Exist", Some("20002"));
    };
    if gzip {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        if enc.write_all(text.as_bytes()).is_err() {
            return fail("system error", None);
        }
        match enc.finish() {
            Ok(bytes) => HttpResponse::Ok()
                .content_type("application/octet-stream")
                .body(bytes),
            Err(_) => fail("system error", None),
        }
    } else {
        HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body(text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts() {
        assert_eq!(yuan(0), "0.00");
        assert_eq!(yuan(1), "0.01");
        assert_eq!(yuan(12345), "123.45");
        assert_eq!(yuan(-300), "-3.00");
        assert_eq!(fee_of(300), 2);
        assert_eq!(fee_of(1), 0);
        assert_eq!(fee_yuan(2), "0.02000");
        assert_eq!(fee_yuan(-2), "-0.02000");
        assert_eq!(dashed("20261130081500"), "2026-11-30 08:15:00");
        assert_eq!(ALL_HEADER.split(',').count(), 27);
        assert_eq!(SUCCESS_HEADER.split(',').count(), 20);
        assert_eq!(REFUND_HEADER.split(',').count(), 29);
    }
}
