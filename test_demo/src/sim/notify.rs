//! Pay and refund notifies: built, signed (pay) or encrypted (refund), delivered with WeChat's
//! retry rules, with the test's fault knobs applied.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::NotifyFaults;
use super::crypto;
use super::sign::{self, SignType};
use super::state::{Order, Shared, random_alnum};
use super::xml;

/// WeChat waits this long for the acknowledgement.
pub const ACK_TIMEOUT: Duration = Duration::from_secs(5);

/// What a pay notify says.
#[derive(Clone, Debug)]
pub struct PayNotice {
    pub url: String,
    pub appid: String,
    pub openid: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total_fee: u64,
    pub cash_fee: u64,
    pub coupon_fee: u64,
    pub time_end: String,
    pub trade_type: String,
    pub attach: Option<String>,
    pub sign_type: SignType,
}

impl PayNotice {
    pub fn from_order(o: &Order) -> Self {
        PayNotice {
            url: o.notify_url.clone(),
            appid: o.appid.clone(),
            openid: o.openid.clone().unwrap_or_default(),
            out_trade_no: o.out_trade_no.clone(),
            transaction_id: o.transaction_id.clone().unwrap_or_default(),
            total_fee: o.total_fee,
            cash_fee: o.cash_fee,
            coupon_fee: o.coupon_fee,
            time_end: o.time_end.clone().unwrap_or_default(),
            trade_type: o.trade_type.clone(),
            attach: o.attach.clone(),
            sign_type: o.sign_type,
        }
    }
}

/// What a refund notify says.
#[derive(Clone, Debug)]
pub struct RefundNotice {
    pub url: String,
    pub out_trade_no: String,
    pub transaction_id: String,
    pub total_fee: u64,
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: u64,
    pub success_time: String,
}

/// Another appid of the same shape (for the wrong_appid fault).
fn other_appid(appid: &str) -> String {
    let mut s: String = appid.chars().rev().collect();
    if s == appid {
        s.push('x');
    }
    s
}

/// The pay notify XML for one copy.
pub fn pay_body(sh: &Shared, n: &PayNotice, f: &NotifyFaults, with_sign_type: bool) -> String {
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    let appid = if f.wrong_appid {
        other_appid(&n.appid)
    } else {
        n.appid.clone()
    };
    let bump = u64::from(f.tamper_amount);
    m.insert("return_code".into(), "SUCCESS".into());
    m.insert("appid".into(), appid);
    m.insert("mch_id".into(), sh.cfg.mch_id.clone());
    m.insert("nonce_str".into(), random_alnum(32));
    m.insert("openid".into(), n.openid.clone());
    m.insert("is_subscribe".into(), "N".into());
    m.insert("result_code".into(), "SUCCESS".into());
    m.insert("out_trade_no".into(), n.out_trade_no.clone());
    m.insert("transaction_id".into(), n.transaction_id.clone());
    m.insert("total_fee".into(), (n.total_fee + bump).to_string());
    m.insert("cash_fee".into(), (n.cash_fee + bump).to_string());
    m.insert("fee_type".into(), "CNY".into());
    m.insert("bank_type".into(), "OTHERS".into());
    m.insert("time_end".into(), n.time_end.clone());
    m.insert("trade_type".into(), n.trade_type.clone());
    if let Some(a) = &n.attach {
        m.insert("attach".into(), a.clone());
    }
    if n.coupon_fee > 0 {
        m.insert("coupon_fee".into(), n.coupon_fee.to_string());
        m.insert("coupon_count".into(), "1".into());
        m.insert("coupon_type_0".into(), "CASH".into());
        m.insert("coupon_id_0".into(), "10000000000001".into());
        m.insert("coupon_fee_0".into(), n.coupon_fee.to_string());
    }
    if with_sign_type && n.sign_type == SignType::HmacSha256 {
        m.insert("sign_type".into(), "HMAC-SHA256".into());
    }
    m.retain(|_, v| !v.is_empty());
    let key = if f.tamper_sign {
        // Signed with another key: a forgery.
        sh.cfg.pay_key.chars().rev().collect::<String>()
    } else {
        sh.cfg.pay_key.clone()
    };
    let s = sign::pay_sign_map(&m, &key, n.sign_type);
    m.insert("sign".into(), s);
    xml::build_map("xml", &m)
}

/// The refund notify XML for one copy.
pub fn refund_body(sh: &Shared, n: &RefundNotice, f: &NotifyFaults) -> String {
    let bump = u64::from(f.tamper_amount);
    let refund_fee = (n.refund_fee + bump).to_string();
    let total_fee = n.total_fee.to_string();
    let inner = xml::build(
        "root",
        [
            ("out_refund_no", n.out_refund_no.as_str()),
            ("out_trade_no", n.out_trade_no.as_str()),
            ("refund_account", "REFUND_SOURCE_RECHARGE_FUNDS"),
            ("refund_fee", refund_fee.as_str()),
            ("refund_id", n.refund_id.as_str()),
            ("refund_recv_accout", "支付用户零钱"),
            ("refund_request_source", "API"),
            ("refund_status", "SUCCESS"),
            ("settlement_refund_fee", refund_fee.as_str()),
            ("settlement_total_fee", total_fee.as_str()),
            ("success_time", n.success_time.as_str()),
            ("total_fee", total_fee.as_str()),
            ("transaction_id", n.transaction_id.as_str()),
        ],
    );
    let key = if f.tamper_sign {
        sh.cfg.pay_key.chars().rev().collect::<String>()
    } else {
        sh.cfg.pay_key.clone()
    };
    let req_info = crypto::refund_req_info_encrypt(&key, &inner);
    let appid = if f.wrong_appid {
        other_appid(&sh.cfg.appid)
    } else {
        sh.cfg.appid.clone()
    };
    let nonce = random_alnum(32);
    xml::build(
        "xml",
        [
            ("return_code", "SUCCESS"),
            ("appid", appid.as_str()),
            ("mch_id", sh.cfg.mch_id.as_str()),
            ("nonce_str", nonce.as_str()),
            ("req_info", req_info.as_str()),
        ],
    )
}

#[derive(Clone, Copy)]
enum Kind {
    Pay,
    Refund,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Pay => "pay_notify",
            Kind::Refund => "refund_notify",
        }
    }
}

/// Posts one copy; true when acknowledged the way WeChat requires.
async fn post_once(sh: &Shared, kind: Kind, url: &str, body: String) -> bool {
    sh.count(&format!("{}_sent", kind.name()));
    let res = sh
        .http
        .post(url)
        .header("Content-Type", "text/xml")
        .body(body)
        .timeout(ACK_TIMEOUT)
        .send()
        .await;
    let resp = match res {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(target: "wechat_sim", kind = kind.name(), %url, error = %e, "notify: no answer");
            return false;
        }
    };
    let status = resp.status().as_u16();
    let text = match tokio::time::timeout(ACK_TIMEOUT, resp.bytes()).await {
        Ok(Ok(b)) => b,
        _ => return false,
    };
    let acked = status == 200
        && xml::parse(&text)
            .ok()
            .is_some_and(|x| x.fields.get("return_code").map(String::as_str) == Some("SUCCESS"));
    if !acked {
        tracing::info!(
            target: "wechat_sim",
            kind = kind.name(),
            status,
            body = %String::from_utf8_lossy(&text[..text.len().min(200)]),
            "notify: not acknowledged"
        );
    }
    acked
}

/// Takes one dropped attempt from the fault budget, if any is left.
fn take_drop(sh: &Shared) -> bool {
    let mut st = sh.lock();
    if st.faults.drop_first > 0 {
        st.faults.drop_first -= 1;
        true
    } else {
        false
    }
}

async fn deliver<F>(sh: Arc<Shared>, kind: Kind, url: String, label: String, build: F)
where
    F: Fn(&Shared, &NotifyFaults, usize) -> String,
{
    let mut attempt = 0usize;
    loop {
        let faults = sh.lock().faults.clone();
        if !faults.delay.is_zero() {
            tokio::time::sleep(faults.delay).await;
        }
        let acked = if take_drop(&sh) {
            sh.count(&format!("{}_dropped", kind.name()));
            tracing::info!(target: "wechat_sim", kind = kind.name(), %label, attempt, "notify: dropped (fault)");
            false
        } else {
            // Duplicates are identical copies of the attempt's body.
            let body = build(&sh, &faults, attempt);
            let copies = 1 + faults.duplicate as usize;
            let sends = (0..copies).map(|_| post_once(&sh, kind, &url, body.clone()));
            futures::future::join_all(sends)
                .await
                .into_iter()
                .any(|ok| ok)
        };
        if acked {
            sh.count(&format!("{}_acked", kind.name()));
            tracing::info!(target: "wechat_sim", kind = kind.name(), %label, attempt, "notify: acknowledged");
            return;
        }
        match sh.cfg.notify_retry_delays.get(attempt) {
            Some(d) => tokio::time::sleep(*d).await,
            None => {
                sh.count(&format!("{}_gave_up", kind.name()));
                tracing::warn!(target: "wechat_sim", kind = kind.name(), %label, "notify: retry schedule exhausted, giving up");
                return;
            }
        }
        attempt += 1;
    }
}

/// Delivers a pay notify until acknowledged or the schedule ends.
pub async fn deliver_pay(sh: Arc<Shared>, n: PayNotice) {
    let url = n.url.clone();
    let label = n.out_trade_no.clone();
    deliver(sh, Kind::Pay, url, label, move |sh, f, attempt| {
        // HMAC notifies carry sign_type on the first attempt only (real WeChat sometimes
        // leaves it out).
        pay_body(sh, &n, f, attempt == 0)
    })
    .await;
}

/// Delivers a refund notify until acknowledged or the schedule ends.
pub async fn deliver_refund(sh: Arc<Shared>, n: RefundNotice) {
    let url = n.url.clone();
    let label = n.out_refund_no.clone();
    deliver(sh, Kind::Refund, url, label, move |sh, f, _| {
        refund_body(sh, &n, f)
    })
    .await;
}
