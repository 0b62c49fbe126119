//! The Pay v2 API client: unifiedorder, JSAPI parameters, orderquery, closeorder,
//! refund (mutual TLS) and refundquery.
//!
//! Every answer is parsed, its signature verified before anything in it is trusted,
//! its appid / mch_id echo checked, and `result_code` FAIL mapped to a typed error.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, FixedOffset, Utc};
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};

use super::SignType;
use super::error::PayError;
use super::identity::ClientIdentity;
use super::sign::{nonce_str, sign, verify};
use super::xml::{MAX_BODY_BYTES, XmlError, parse_flat, to_xml};
use crate::telemetry::Metrics;
use crate::wechat::http::client_builder;

/// Beijing time, UTC+8, whatever the server's own zone.
const BEIJING_OFFSET_SECS: i32 = 8 * 3600;

/// `yyyyMMddHHmmss` in Beijing time, as `time_start` / `time_expire` want it.
pub fn beijing_time(t: DateTime<Utc>) -> String {
    let beijing = FixedOffset::east_opt(BEIJING_OFFSET_SECS).expect("UTC+8 is a valid offset");
    t.with_timezone(&beijing).format("%Y%m%d%H%M%S").to_string()
}

/// Everything the client needs; built from [`Settings`] or by hand (tests, the demo).
#[derive(Clone, Debug)]
pub struct PayConfig {
    pub appid: String,
    pub mch_id: String,
    pub key: SecretString,
    pub sign_type: SignType,
    /// `WECHAT_PAY_API_BASE`, without a trailing `/`.
    pub api_base: String,
    /// `WECHAT_CA_CERT`: an extra trusted root, for private test servers.
    pub extra_root: Option<PathBuf>,
    pub timeout: Duration,
    pub identity: ClientIdentity,
}

/// What `unifiedorder` needs for a JSAPI (mini-program) payment.
#[derive(Clone, Debug)]
pub struct UnifiedOrderRequest {
    pub out_trade_no: String,
    pub body: String,
    /// Fen, ≥ 1.
    pub total_fee: i64,
    pub openid: String,
    pub spbill_create_ip: String,
    pub time_expire: DateTime<Utc>,
    pub notify_url: String,
    pub attach: Option<String>,
}

/// The parameters `wx.requestPayment` takes, freshly signed over
/// appId, timeStamp, nonceStr, package and signType.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JsapiParams {
    #[serde(rename = "appId")]
    pub app_id: String,
    #[serde(rename = "timeStamp")]
    pub time_stamp: String,
    #[serde(rename = "nonceStr")]
    pub nonce_str: String,
    /// `prepay_id=...`
    pub package: String,
    #[serde(rename = "signType")]
    pub sign_type: String,
    #[serde(rename = "paySign")]
    pub pay_sign: String,
}

impl JsapiParams {
    /// Signs the five fields; `timestamp` in Unix seconds.
    pub fn build(
        appid: &str,
        key: &str,
        sign_type: SignType,
        prepay_id: &str,
        timestamp: i64,
        nonce_str: String,
    ) -> Self {
        let package = format!("prepay_id={prepay_id}");
        let time_stamp = timestamp.to_string();
        let fields: BTreeMap<String, String> = [
            ("appId", appid),
            ("timeStamp", time_stamp.as_str()),
            ("nonceStr", nonce_str.as_str()),
            ("package", package.as_str()),
            ("signType", sign_type.as_str()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let pay_sign = sign(&fields, key, sign_type);
        Self {
            app_id: appid.to_string(),
            time_stamp,
            nonce_str,
            package,
            sign_type: sign_type.as_str().to_string(),
            pay_sign,
        }
    }
}

/// `trade_state` of `orderquery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TradeState {
    Success,
    Refund,
    NotPay,
    Closed,
    Revoked,
    UserPaying,
    PayError,
    Other(String),
}

impl TradeState {
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "REFUND" => Self::Refund,
            "NOTPAY" => Self::NotPay,
            "CLOSED" => Self::Closed,
            "REVOKED" => Self::Revoked,
            "USERPAYING" => Self::UserPaying,
            "PAYERROR" => Self::PayError,
            other => Self::Other(other.to_string()),
        }
    }

    /// The money arrived (a later refund does not undo that it was paid).
    pub fn is_paid(&self) -> bool {
        matches!(self, Self::Success | Self::Refund)
    }
}

#[derive(Clone, Debug)]
pub struct OrderQuery {
    pub trade_state: TradeState,
    pub total_fee: Option<i64>,
    pub transaction_id: Option<String>,
    pub time_end: Option<String>,
    /// Every verified field of the answer.
    pub raw: BTreeMap<String, String>,
}

#[derive(Clone, Debug)]
pub struct RefundRequest {
    pub out_trade_no: String,
    /// Reuse the same one when retrying (≤ 64 chars).
    pub out_refund_no: String,
    pub total_fee: i64,
    pub refund_fee: i64,
    pub notify_url: String,
    pub reason: Option<String>,
}

/// The refund was accepted; confirm it by refund notify or `refundquery`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RefundAccepted {
    pub refund_id: String,
}

/// `refund_status` of `refundquery` and of the refund notify.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RefundStatus {
    Success,
    Processing,
    /// The refund failed to reach the user's account; needs manual handling.
    Change,
    /// `REFUNDCLOSE`
    Closed,
    Other(String),
}

impl RefundStatus {
    pub fn parse(s: &str) -> Self {
        match s {
            "SUCCESS" => Self::Success,
            "PROCESSING" => Self::Processing,
            "CHANGE" => Self::Change,
            "REFUNDCLOSE" | "CLOSED" => Self::Closed,
            other => Self::Other(other.to_string()),
        }
    }
}

#[derive(Clone, Debug)]
pub struct RefundQuery {
    pub status: RefundStatus,
    pub refund_fee: Option<i64>,
    pub refund_id: Option<String>,
    /// Every verified field of the answer.
    pub raw: BTreeMap<String, String>,
}

/// The Pay v2 client. Cloning is cheap (one `Arc`).
#[derive(Clone)]
pub struct PayClient {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: PayConfig,
    plain: reqwest::Client,
    /// The mutual-TLS client, or why it could not be built.
    mtls: Result<reqwest::Client, String>,
    metrics: Metrics,
    bulkhead: crate::wechat::http::Bulkhead,
}

impl std::fmt::Debug for PayClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PayClient")
            .field("appid", &self.inner.cfg.appid)
            .field("mch_id", &self.inner.cfg.mch_id)
            .field("api_base", &self.inner.cfg.api_base)
            .field("refunds_available", &self.inner.mtls.is_ok())
            .finish()
    }
}

impl PayClient {
    /// Builds the plain client and the mutual-TLS one. A merchant certificate that
    /// cannot be loaded is logged and makes refunds fail with
    /// [`PayError::NoClientCertificate`]; everything else still works.
    pub fn new(cfg: PayConfig, metrics: Metrics) -> Result<Self, PayError> {
        let plain = client_builder(cfg.extra_root.as_deref(), cfg.timeout)
            .map_err(|e| PayError::Setup(e.to_string()))?
            .build()
            .map_err(|e| PayError::Setup(e.to_string()))?;
        let mtls = match cfg.identity.load() {
            Ok(identity) => client_builder(cfg.extra_root.as_deref(), cfg.timeout)
                .map_err(|e| e.to_string())
                .and_then(|b| b.identity(identity).build().map_err(|e| e.to_string())),
            Err(e) => Err(e.to_string()),
        };
        if let Err(reason) = &mtls {
            tracing::warn!(%reason, "WeChat Pay merchant certificate not loaded: refunds are unavailable");
        }
        Ok(Self {
            inner: Arc::new(Inner {
                cfg,
                plain,
                mtls,
                metrics,
                bulkhead: Default::default(),
            }),
        })
    }

    pub fn config(&self) -> &PayConfig {
        &self.inner.cfg
    }

    pub(crate) fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// Whether the merchant certificate was loaded, so refunds can be attempted.
    pub fn refunds_available(&self) -> bool {
        self.inner.mtls.is_ok()
    }

    pub(crate) fn key(&self) -> &str {
        self.inner.cfg.key.expose_secret()
    }

    /// `pay/unifiedorder` for a JSAPI payment; returns the prepay id (valid 2 hours).
    pub async fn unified_order(&self, req: &UnifiedOrderRequest) -> Result<String, PayError> {
        if req.total_fee < 1 {
            return Err(PayError::InvalidRequest {
                description: "total_fee must be at least 1 fen".into(),
            });
        }
        let mut p = BTreeMap::new();
        p.insert("body".to_string(), req.body.clone());
        p.insert("out_trade_no".to_string(), req.out_trade_no.clone());
        p.insert("total_fee".to_string(), req.total_fee.to_string());
        p.insert("fee_type".to_string(), "CNY".to_string());
        p.insert("spbill_create_ip".to_string(), req.spbill_create_ip.clone());
        p.insert("notify_url".to_string(), req.notify_url.clone());
        p.insert("trade_type".to_string(), "JSAPI".to_string());
        p.insert("openid".to_string(), req.openid.clone());
        p.insert("time_expire".to_string(), beijing_time(req.time_expire));
        if let Some(attach) = req.attach.as_ref().filter(|a| !a.is_empty()) {
            p.insert("attach".to_string(), attach.clone());
        }
        let r = self
            .call("pay_unifiedorder", "/pay/unifiedorder", p, false)
            .await?;
        r.get("prepay_id")
            .filter(|v| !v.is_empty())
            .cloned()
            .ok_or(PayError::BadField("prepay_id"))
    }

    /// The `wx.requestPayment` parameters for a prepay id, signed afresh now.
    pub fn jsapi_params(&self, prepay_id: &str) -> JsapiParams {
        JsapiParams::build(
            &self.inner.cfg.appid,
            self.key(),
            self.inner.cfg.sign_type,
            prepay_id,
            Utc::now().timestamp(),
            nonce_str(),
        )
    }

    /// `pay/orderquery` by out_trade_no.
    pub async fn order_query(&self, out_trade_no: &str) -> Result<OrderQuery, PayError> {
        let mut p = BTreeMap::new();
        p.insert("out_trade_no".to_string(), out_trade_no.to_string());
        let r = self
            .call("pay_orderquery", "/pay/orderquery", p, false)
            .await?;
        check_echo(&r, "out_trade_no", out_trade_no)?;
        let trade_state = r
            .get("trade_state")
            .filter(|v| !v.is_empty())
            .map(|s| TradeState::parse(s))
            .ok_or(PayError::BadField("trade_state"))?;
        Ok(OrderQuery {
            trade_state,
            total_fee: fee(&r, "total_fee", "total_fee")?,
            transaction_id: non_empty(&r, "transaction_id"),
            time_end: non_empty(&r, "time_end"),
            raw: r,
        })
    }

    /// `pay/closeorder`. An order WeChat already closed counts as closed;
    /// a paid one is [`PayError::OrderPaid`] (refund it instead).
    pub async fn close_order(&self, out_trade_no: &str) -> Result<(), PayError> {
        let mut p = BTreeMap::new();
        p.insert("out_trade_no".to_string(), out_trade_no.to_string());
        match self
            .call("pay_closeorder", "/pay/closeorder", p, false)
            .await
        {
            Ok(_) | Err(PayError::OrderClosed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// `secapi/pay/refund`, over mutual TLS with the merchant certificate.
    /// Acceptance only: confirm by refund notify or [`refund_query`](Self::refund_query).
    pub async fn refund(&self, req: &RefundRequest) -> Result<RefundAccepted, PayError> {
        if req.refund_fee < 1 || req.refund_fee > req.total_fee {
            return Err(PayError::InvalidRequest {
                description: "refund_fee must be between 1 and total_fee".into(),
            });
        }
        let mut p = BTreeMap::new();
        p.insert("out_trade_no".to_string(), req.out_trade_no.clone());
        p.insert("out_refund_no".to_string(), req.out_refund_no.clone());
        p.insert("total_fee".to_string(), req.total_fee.to_string());
        p.insert("refund_fee".to_string(), req.refund_fee.to_string());
        p.insert("refund_fee_type".to_string(), "CNY".to_string());
        p.insert("notify_url".to_string(), req.notify_url.clone());
        if let Some(reason) = req
            .reason
            .as_deref()
            .map(str::trim)
            .filter(|r| !r.is_empty())
        {
            // WeChat refuses a longer refund_desc (PARAM_ERROR) for good; the whole reason
            // stays with the refund here.
            p.insert(
                "refund_desc".to_string(),
                cut_to_bytes(reason, REFUND_DESC_MAX_BYTES).to_string(),
            );
        }
        let r = self
            .call("pay_refund", "/secapi/pay/refund", p, true)
            .await?;
        check_echo(&r, "out_refund_no", &req.out_refund_no)?;
        let refund_id = non_empty(&r, "refund_id").ok_or(PayError::BadField("refund_id"))?;
        Ok(RefundAccepted { refund_id })
    }

    /// `pay/refundquery` by out_refund_no; picks the `_$n` entry for that refund.
    pub async fn refund_query(&self, out_refund_no: &str) -> Result<RefundQuery, PayError> {
        let mut p = BTreeMap::new();
        p.insert("out_refund_no".to_string(), out_refund_no.to_string());
        let r = self
            .call("pay_refundquery", "/pay/refundquery", p, false)
            .await?;
        let n = r
            .iter()
            .filter_map(|(k, v)| {
                let n = k.strip_prefix("out_refund_no_")?;
                (v == out_refund_no && !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                    .then(|| n.to_string())
            })
            .next()
            .ok_or(PayError::BadField("out_refund_no_$n"))?;
        let status = r
            .get(&format!("refund_status_{n}"))
            .filter(|v| !v.is_empty())
            .map(|s| RefundStatus::parse(s))
            .ok_or(PayError::BadField("refund_status_$n"))?;
        Ok(RefundQuery {
            status,
            refund_fee: fee(&r, &format!("refund_fee_{n}"), "refund_fee_$n")?,
            refund_id: non_empty(&r, &format!("refund_id_{n}")),
            raw: r,
        })
    }

    /// One signed call; counts it in the metrics, success or not.
    async fn call(
        &self,
        api: &'static str,
        path: &str,
        params: BTreeMap<String, String>,
        mutual_tls: bool,
    ) -> Result<BTreeMap<String, String>, PayError> {
        // Waiting for a turn happens before anything is sent: it cannot make an answer
        // unclear.
        let _turn = self.inner.bulkhead.enter(api).await;
        let started = std::time::Instant::now();
        let result = self.call_inner(path, params, mutual_tls).await;
        let kind = result.as_ref().err().map(PayError::kind);
        self.inner.metrics.wechat_call(api, started.elapsed(), kind);
        match &result {
            Ok(_) => tracing::debug!(api, "WeChat Pay call ok"),
            Err(
                e @ (PayError::OrderPaid
                | PayError::OrderClosed
                | PayError::OrderNotExist
                | PayError::RefundNotExist),
            ) => tracing::info!(api, error = %e, "WeChat Pay call answered"),
            Err(e) => tracing::warn!(api, error = %e, "WeChat Pay call failed"),
        }
        result
    }

    async fn call_inner(
        &self,
        path: &str,
        mut params: BTreeMap<String, String>,
        mutual_tls: bool,
    ) -> Result<BTreeMap<String, String>, PayError> {
        let cfg = &self.inner.cfg;
        let client = if mutual_tls {
            self.inner
                .mtls
                .as_ref()
                .map_err(|reason| PayError::NoClientCertificate(reason.clone()))?
        } else {
            &self.inner.plain
        };
        params.insert("appid".to_string(), cfg.appid.clone());
        params.insert("mch_id".to_string(), cfg.mch_id.clone());
        params.insert("nonce_str".to_string(), nonce_str());
        params.insert("sign_type".to_string(), cfg.sign_type.as_str().to_string());
        params.remove("sign");
        let signature = sign(&params, self.key(), cfg.sign_type);
        params.insert("sign".to_string(), signature);

        let resp = client
            .post(format!("{}{}", cfg.api_base, path))
            .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
            .body(to_xml(&params))
            .send()
            .await
            .map_err(|e| PayError::Transport(crate::wechat::http::redact(e)))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(PayError::HttpStatus(status.as_u16()));
        }
        let body = read_capped(resp).await?;
        let fields = parse_flat(&body)?;
        check_response(fields, cfg, self.key())
    }
}

/// `refund_desc` takes at most 80 bytes (UTF-8).
const REFUND_DESC_MAX_BYTES: usize = 80;

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_to_bytes(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let end = (0..=max)
        .rev()
        .find(|&i| s.is_char_boundary(i))
        .unwrap_or(0);
    &s[..end]
}

/// How a raw call is signed and sent (transfers and bills do not follow the usual rules).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RawCall {
    /// Transfers: the caller names the merchant fields itself, MD5 without `sign_type`,
    /// over the merchant certificate.
    MutualTlsMd5,
    /// `appid`, `mch_id`, `nonce_str`, `sign_type` added as usual, plain TLS.
    Plain,
}

impl PayClient {
    /// One signed request whose answer the caller reads itself (transfers answer without
    /// a signature, bills answer in text); `max_bytes` caps the body.
    pub(crate) async fn call_raw(
        &self,
        api: &'static str,
        path: &str,
        mut params: BTreeMap<String, String>,
        how: RawCall,
        max_bytes: usize,
    ) -> Result<Vec<u8>, PayError> {
        let _turn = self.inner.bulkhead.enter(api).await;
        let started = std::time::Instant::now();
        let result = async {
            let cfg = &self.inner.cfg;
            let client = match how {
                RawCall::MutualTlsMd5 => self
                    .inner
                    .mtls
                    .as_ref()
                    .map_err(|reason| PayError::NoClientCertificate(reason.clone()))?,
                RawCall::Plain => &self.inner.plain,
            };
            params.insert("nonce_str".to_string(), nonce_str());
            params.remove("sign");
            let sign_type = match how {
                RawCall::MutualTlsMd5 => SignType::Md5,
                RawCall::Plain => {
                    params.insert("appid".to_string(), cfg.appid.clone());
                    params.insert("mch_id".to_string(), cfg.mch_id.clone());
                    params.insert("sign_type".to_string(), cfg.sign_type.as_str().to_string());
                    cfg.sign_type
                }
            };
            let signature = sign(&params, self.key(), sign_type);
            params.insert("sign".to_string(), signature);
            let mut resp = client
                .post(format!("{}{}", cfg.api_base, path))
                .header(reqwest::header::CONTENT_TYPE, "text/xml; charset=utf-8")
                .body(to_xml(&params))
                .send()
                .await
                .map_err(PayError::Transport)?;
            let status = resp.status();
            if !status.is_success() {
                return Err(PayError::HttpStatus(status.as_u16()));
            }
            let mut body = Vec::new();
            while let Some(chunk) = resp.chunk().await.map_err(PayError::Transport)? {
                if body.len() + chunk.len() > max_bytes {
                    return Err(PayError::Xml(XmlError::TooLarge));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(body)
        }
        .await;
        self.inner.metrics.wechat_call(
            api,
            started.elapsed(),
            result.as_ref().err().map(PayError::kind),
        );
        if let Err(e) = &result {
            tracing::warn!(api, error = %e, "WeChat Pay call failed");
        }
        result
    }
}

/// Reads a response body, refusing more than [`MAX_BODY_BYTES`].
async fn read_capped(mut resp: reqwest::Response) -> Result<Vec<u8>, PayError> {
    if resp
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(PayError::Xml(XmlError::TooLarge));
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| PayError::Transport(crate::wechat::http::redact(e)))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(PayError::Xml(XmlError::TooLarge));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// return_code, then the signature (before trusting anything else), then the
/// appid / mch_id echo, then result_code.
pub(crate) fn check_response(
    fields: BTreeMap<String, String>,
    cfg: &PayConfig,
    key: &str,
) -> Result<BTreeMap<String, String>, PayError> {
    match fields.get("return_code").map(String::as_str) {
        Some("SUCCESS") => {}
        Some(_) => {
            let msg: String = fields
                .get("return_msg")
                .map(|m| m.chars().take(128).collect())
                .unwrap_or_default();
            return Err(PayError::Return { msg });
        }
        None => return Err(PayError::BadField("return_code")),
    }
    verify(&fields, key).map_err(|_| PayError::BadResponseSignature)?;
    if fields.get("appid") != Some(&cfg.appid) {
        return Err(PayError::Mismatch("appid"));
    }
    if fields.get("mch_id") != Some(&cfg.mch_id) {
        return Err(PayError::Mismatch("mch_id"));
    }
    match fields.get("result_code").map(String::as_str) {
        Some("SUCCESS") => Ok(fields),
        Some("FAIL") => {
            let code = fields.get("err_code").map(String::as_str).unwrap_or("");
            let des = fields.get("err_code_des").map(String::as_str).unwrap_or("");
            Err(PayError::from_err_code(code, des))
        }
        _ => Err(PayError::BadField("result_code")),
    }
}

/// When the answer names the order or refund, it must be the one asked about.
fn check_echo(
    r: &BTreeMap<String, String>,
    field: &'static str,
    expected: &str,
) -> Result<(), PayError> {
    match r.get(field) {
        Some(v) if !v.is_empty() && v != expected => Err(PayError::Mismatch(field)),
        _ => Ok(()),
    }
}

fn non_empty(r: &BTreeMap<String, String>, field: &str) -> Option<String> {
    r.get(field).filter(|v| !v.is_empty()).cloned()
}

/// An amount in fen: absent is `None`, anything but a non-negative integer is an error.
fn fee(
    r: &BTreeMap<String, String>,
    field: &str,
    label: &'static str,
) -> Result<Option<i64>, PayError> {
    match r.get(field).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => match v.parse::<i64>() {
            Ok(n) if n >= 0 => Ok(Some(n)),
            _ => Err(PayError::BadField(label)),
        },
    }
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
