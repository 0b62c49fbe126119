//! The simulator's memory: login codes, access tokens, orders and refunds, counters, recorded
//! messages and notify fault knobs. One mutex, held only for short, non-async sections.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::future::Future;
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Utc};
use rand::Rng;
use rand::distr::Alphanumeric;
use serde::Serialize;

use super::sign::SignType;
use super::{NotifyFaults, SimConfig};

/// A wx.login code lives 5 minutes.
pub const CODE_TTL: Duration = Duration::from_secs(300);
/// A prepay id lives 2 hours.
pub const PREPAY_TTL: Duration = Duration::from_secs(2 * 3600);
/// `stable_token` force refreshes: 30 s apart, 20 a day.
pub const FORCE_REFRESH_GAP: Duration = Duration::from_secs(30);
pub const FORCE_REFRESH_PER_DAY: usize = 20;
/// At most 50 refunds per order.
pub const MAX_REFUNDS: usize = 50;

/// A random string of `n` ASCII letters and digits.
pub fn random_alnum(n: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(n)
        .map(char::from)
        .collect()
}

/// A random string of `n` decimal digits.
pub fn random_digits(n: usize) -> String {
    let mut r = rand::rng();
    (0..n)
        .map(|_| char::from(b'0' + r.random_range(0..10u8)))
        .collect()
}

/// Beijing time (UTC+8), whatever the machine's zone.
pub fn beijing_now() -> DateTime<FixedOffset> {
    Utc::now().with_timezone(&beijing())
}

pub fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("UTC+8 is a valid offset")
}

/// `yyyyMMddHHmmss` in Beijing time.
pub fn beijing_compact(t: DateTime<FixedOffset>) -> String {
    t.format("%Y%m%d%H%M%S").to_string()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum TradeState {
    #[serde(rename = "NOTPAY")]
    NotPay,
    #[serde(rename = "SUCCESS")]
    Success,
    #[serde(rename = "CLOSED")]
    Closed,
    #[serde(rename = "REFUND")]
    Refund,
}

impl TradeState {
    pub fn as_str(self) -> &'static str {
        match self {
            TradeState::NotPay => "NOTPAY",
            TradeState::Success => "SUCCESS",
            TradeState::Closed => "CLOSED",
            TradeState::Refund => "REFUND",
        }
    }

    pub fn desc(self) -> &'static str {
        match self {
            TradeState::NotPay => "订单未支付",
            TradeState::Success => "支付成功",
            TradeState::Closed => "订单已关闭",
            TradeState::Refund => "订单发生过退款",
        }
    }

    pub fn is_paid(self) -> bool {
        matches!(self, TradeState::Success | TradeState::Refund)
    }
}

#[derive(Clone, Debug)]
pub struct Refund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: u64,
    pub success: bool,
    pub success_time: Option<String>,
    pub notify_url: Option<String>,
    /// When it was accepted, `yyyy-MM-dd HH:mm:ss` Beijing (the bill's 退款申请时间).
    pub requested_time: String,
}

impl Refund {
    pub fn status(&self) -> &'static str {
        if self.success {
            "SUCCESS"
        } else {
            "PROCESSING"
        }
    }
}

#[derive(Clone, Debug)]
pub struct Order {
    pub out_trade_no: String,
    pub appid: String,
    pub openid: Option<String>,
    pub total_fee: u64,
    pub trade_type: String,
    pub attach: Option<String>,
    pub notify_url: String,
    /// The payer's address as the merchant reported it.
    pub spbill_create_ip: String,
    pub sign_type: SignType,
    /// The parameters that must not change between unifiedorder calls for the same number.
    pub fingerprint: BTreeMap<String, String>,
    pub time_expire: Option<DateTime<FixedOffset>>,
    pub prepay_id: String,
    pub prepay_expires: Instant,
    pub state: TradeState,
    pub transaction_id: Option<String>,
    pub time_end: Option<String>,
    pub cash_fee: u64,
    pub coupon_fee: u64,
    pub refunds: Vec<Refund>,
    /// When the first unifiedorder created it (closeorder's 5 minutes count from here).
    pub created_at: Instant,
    /// When the last refund of it was accepted (refunds must be a minute apart).
    pub last_refund_at: Option<Instant>,
}

impl Order {
    pub fn refunded_or_pending(&self) -> u64 {
        self.refunds.iter().map(|r| r.refund_fee).sum()
    }
}

/// What a test sees of an order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimOrder {
    pub out_trade_no: String,
    /// "NOTPAY", "SUCCESS", "CLOSED" or "REFUND".
    pub trade_state: String,
    pub total_fee: u64,
    pub cash_fee: u64,
    pub transaction_id: Option<String>,
    pub prepay_id: String,
    pub openid: Option<String>,
    pub notify_url: String,
    pub spbill_create_ip: String,
    /// "MD5" or "HMAC-SHA256", as used by the last unifiedorder.
    pub sign_type: String,
    pub time_end: Option<String>,
    pub refunds: Vec<SimRefund>,
}

/// What a test sees of a refund.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SimRefund {
    pub out_refund_no: String,
    pub refund_id: String,
    pub refund_fee: u64,
    /// "PROCESSING" or "SUCCESS".
    pub status: String,
}

impl From<&Order> for SimOrder {
    fn from(o: &Order) -> Self {
        SimOrder {
            out_trade_no: o.out_trade_no.clone(),
            trade_state: o.state.as_str().to_string(),
            total_fee: o.total_fee,
            cash_fee: o.cash_fee,
            transaction_id: o.transaction_id.clone(),
            prepay_id: o.prepay_id.clone(),
            openid: o.openid.clone(),
            notify_url: o.notify_url.clone(),
            spbill_create_ip: o.spbill_create_ip.clone(),
            sign_type: o.sign_type.as_str().to_string(),
            time_end: o.time_end.clone(),
            refunds: o
                .refunds
                .iter()
                .map(|r| SimRefund {
                    out_refund_no: r.out_refund_no.clone(),
                    refund_id: r.refund_id.clone(),
                    refund_fee: r.refund_fee,
                    status: r.status().to_string(),
                })
                .collect(),
        }
    }
}

struct CodeEntry {
    openid: String,
    used: bool,
    expires: Instant,
    fault: Option<LoginFault>,
}

/// What a wx.login code answers at `jscode2session` instead of a session (a control for
/// testing the server's handling of WeChat's refusals).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFault {
    /// errcode 40226: the user is high-risk and WeChat blocks the login. Every redeem of the
    /// code answers it.
    HighRisk,
    /// errcode -1: system busy. The first redeem answers it without consuming the code; a
    /// retry with the same code succeeds.
    Busy,
}

struct TokenEntry {
    expires: Instant,
    revoked: bool,
}

/// Why an access token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Missing,
    Invalid,
    Expired,
}

impl TokenError {
    pub fn errcode(self) -> (i64, &'static str) {
        match self {
            TokenError::Missing => (41001, "access_token missing"),
            TokenError::Invalid => (
                40001,
                "invalid credential, access_token is invalid or not latest",
            ),
            TokenError::Expired => (42001, "access_token expired"),
        }
    }
}

/// Why a code was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeError {
    Invalid,
    Used,
    HighRisk,
    Busy,
}

/// The two apps the simulator serves: the mini-program and the official account, each
/// with its own appid, secret and access tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum App {
    Mini,
    Mp,
}

/// One app's access tokens.
#[derive(Default)]
pub struct TokenBook {
    tokens: HashMap<String, TokenEntry>,
    legacy_current: Option<String>,
    stable_current: Option<String>,
    force_refreshes: VecDeque<Instant>,
}

impl TokenBook {
    fn new_token(&mut self, ttl: Duration) -> String {
        if self.tokens.len() > 10_000 {
            // Forget long-expired tokens (they would answer 40001 instead of 42001).
            let now = Instant::now();
            self.tokens
                .retain(|_, e| e.expires + Duration::from_secs(3600) > now);
        }
        // Real tokens are long opaque strings (up to 512 characters are allowed).
        let t = format!("SIM_{}", random_alnum(132));
        self.tokens.insert(
            t.clone(),
            TokenEntry {
                expires: Instant::now() + ttl,
                revoked: false,
            },
        );
        t
    }

    fn revoke(&mut self, token: Option<String>) {
        if let Some(t) = token.and_then(|t| self.tokens.get_mut(&t)) {
            t.revoked = true;
        }
    }

    /// `cgi-bin/token`: a new token every time; the previous one stops working.
    pub fn issue_legacy_token(&mut self, ttl: Duration) -> (String, u64) {
        let old = self.legacy_current.take();
        self.revoke(old);
        let t = self.new_token(ttl);
        self.legacy_current = Some(t.clone());
        (t, ttl.as_secs())
    }

    /// `cgi-bin/stable_token`. Normal mode returns the valid token (renewing it, with overlap,
    /// in the last 1/24 of its life: 5 minutes of 2 hours); force_refresh revokes it and issues
    /// a new one, at most every 30 s and 20 times a day (45009 otherwise).
    pub fn stable_token(&mut self, ttl: Duration, force: bool) -> Result<(String, u64), i64> {
        let now = Instant::now();
        if force {
            let day = Duration::from_secs(86_400);
            while self
                .force_refreshes
                .front()
                .is_some_and(|t| now.duration_since(*t) >= day)
            {
                self.force_refreshes.pop_front();
            }
            let too_soon = self
                .force_refreshes
                .back()
                .is_some_and(|t| now.duration_since(*t) < FORCE_REFRESH_GAP);
            if too_soon || self.force_refreshes.len() >= FORCE_REFRESH_PER_DAY {
                return Err(45009);
            }
            self.force_refreshes.push_back(now);
            let old = self.stable_current.take();
            self.revoke(old);
            let t = self.new_token(ttl);
            self.stable_current = Some(t.clone());
            return Ok((t, ttl.as_secs()));
        }
        let window = ttl / 24;
        if let Some(cur) = &self.stable_current
            && let Some(e) = self.tokens.get(cur)
            && !e.revoked
            && e.expires > now
        {
            let remaining = e.expires - now;
            if remaining > window {
                return Ok((cur.clone(), remaining.as_secs().max(1)));
            }
        }
        // None valid, or about to expire: a new one (the old one still works until it expires).
        let t = self.new_token(ttl);
        self.stable_current = Some(t.clone());
        Ok((t, ttl.as_secs()))
    }

    pub fn check_token(&self, token: Option<&str>) -> Result<(), TokenError> {
        let token = match token {
            None | Some("") => return Err(TokenError::Missing),
            Some(t) => t,
        };
        match self.tokens.get(token) {
            None => Err(TokenError::Invalid),
            Some(e) if e.expires <= Instant::now() => Err(TokenError::Expired),
            Some(e) if e.revoked => Err(TokenError::Invalid),
            Some(_) => Ok(()),
        }
    }

    pub fn invalidate_tokens(&mut self) {
        for t in self.tokens.values_mut() {
            t.revoked = true;
        }
        self.legacy_current = None;
        self.stable_current = None;
    }
}

#[derive(Default)]
pub struct State {
    codes: HashMap<String, CodeEntry>,
    /// The mini-program's access tokens.
    pub tokens: TokenBook,
    /// The official account's access tokens.
    pub mp_tokens: TokenBook,
    pub orders: HashMap<String, Order>,
    /// prepay_id → out_trade_no
    pub by_prepay: HashMap<String, String>,
    /// transaction_id → out_trade_no
    pub by_transaction: HashMap<String, String>,
    /// out_refund_no → out_trade_no, refund_id → out_trade_no
    pub by_out_refund_no: HashMap<String, String>,
    pub by_refund_id: HashMap<String, String>,
    pub counters: BTreeMap<String, u64>,
    pub subscribe_messages: Vec<serde_json::Value>,
    pub custom_messages: Vec<serde_json::Value>,
    pub refused_subscribe: HashSet<String>,
    /// One-time subscribe acceptances left, by (openid, template_id).
    pub subscribe_credits: HashMap<(String, String), u32>,
    /// Not WeChat: every `subscribe/send` is accepted without an acceptance (tests of
    /// products that do not track acceptances yet).
    pub subscribe_auto_accept: bool,
    /// Openids handed out by `jscode2session` (the only ones `unifiedorder` accepts).
    pub issued_openids: HashSet<String>,
    /// `closeorder` is refused until an order is this old (WeChat: 5 minutes).
    pub closeorder_min_age: Duration,
    /// Two refunds of one order must be this far apart (WeChat: 1 minute).
    pub refund_min_gap: Duration,
    /// Transfers to users' balances, by partner_trade_no.
    pub transfers: HashMap<String, super::transfers::SimTransfer>,
    /// Outcomes for the next transfers requests, one each.
    pub transfer_faults: VecDeque<super::transfers::TransferFault>,
    /// Edits of bill rows, by out_trade_no (see `bill.rs`).
    pub bill_edits: HashMap<String, super::bill::BillRowEdit>,
    /// Not WeChat: today's bill can be downloaded (WeChat has it from about 10:00 the next
    /// day).
    pub bill_same_day: bool,
    /// The official account's users: openid → following now.
    pub mp_followers: HashMap<String, bool>,
    /// Template ids the official account added.
    pub mp_templates: HashSet<String>,
    /// Bodies accepted by `message/template/send`.
    pub template_messages: Vec<serde_json::Value>,
    /// Answers for the next template sends, one each.
    pub template_faults: VecDeque<super::template::TemplateFault>,
    pub faults: NotifyFaults,
    pub msgid_seq: u64,
    /// Scripted answers of the next refund calls.
    pub refund_faults: VecDeque<super::refund_faults::RefundFault>,
    /// out_refund_no → how refundquery reports that refund.
    pub refund_outcomes: HashMap<String, super::refund_faults::RefundOutcome>,
    /// Faults on every API call (`api_faults.rs`).
    pub api_faults: super::api_faults::ApiFaults,
    /// Phone codes and the official account's menu (`platform.rs`).
    pub platform: super::platform::PlatformState,
}

impl State {
    pub fn count(&mut self, name: &str) {
        *self.counters.entry(name.to_string()).or_insert(0) += 1;
    }

    // ---- wx.login codes ----

    pub fn issue_code(&mut self, openid: &str) -> String {
        self.issue_code_with(openid, None)
    }

    pub fn issue_code_with(&mut self, openid: &str, fault: Option<LoginFault>) -> String {
        let now = Instant::now();
        if self.codes.len() > 10_000 {
            self.codes.retain(|_, c| c.expires > now && !c.used);
        }
        // Real codes are 32 characters of letters and digits.
        let code = random_alnum(32);
        self.codes.insert(
            code.clone(),
            CodeEntry {
                openid: openid.to_string(),
                used: false,
                expires: now + CODE_TTL,
                fault,
            },
        );
        code
    }

    /// Consumes a code; returns its openid.
    pub fn redeem_code(&mut self, code: &str) -> Result<String, CodeError> {
        let now = Instant::now();
        match self.codes.get_mut(code) {
            None => Err(CodeError::Invalid),
            Some(c) if c.expires <= now => Err(CodeError::Invalid),
            Some(c) if c.used => Err(CodeError::Used),
            Some(c) if c.fault == Some(LoginFault::HighRisk) => Err(CodeError::HighRisk),
            Some(c) if c.fault == Some(LoginFault::Busy) => {
                c.fault = None;
                Err(CodeError::Busy)
            }
            Some(c) => {
                c.used = true;
                let openid = c.openid.clone();
                self.issued_openids.insert(openid.clone());
                Ok(openid)
            }
        }
    }

    // ---- one-time subscribe acceptances ----

    /// The user tapped "allow" for these templates in `wx.requestSubscribeMessage`: one send
    /// each.
    pub fn accept_subscribe(&mut self, openid: &str, template_ids: &[String]) {
        for t in template_ids {
            *self
                .subscribe_credits
                .entry((openid.to_string(), t.clone()))
                .or_insert(0) += 1;
        }
    }

    /// Spends one acceptance of `template_id` by `openid`; false when there is none.
    pub fn take_subscribe_credit(&mut self, openid: &str, template_id: &str) -> bool {
        if self.subscribe_auto_accept {
            return true;
        }
        let key = (openid.to_string(), template_id.to_string());
        match self.subscribe_credits.get_mut(&key) {
            Some(n) if *n > 0 => {
                *n -= 1;
                if *n == 0 {
                    self.subscribe_credits.remove(&key);
                }
                true
            }
            _ => false,
        }
    }

    pub fn subscribe_credits_left(&self, openid: &str, template_id: &str) -> u32 {
        self.subscribe_credits
            .get(&(openid.to_string(), template_id.to_string()))
            .copied()
            .unwrap_or(0)
    }

    // ---- access tokens (the mini-program's; the official account's are `mp_tokens`) ----

    /// Every token of both apps stops working.
    pub fn invalidate_tokens(&mut self) {
        self.tokens.invalidate_tokens();
        self.mp_tokens.invalidate_tokens();
    }

    pub fn book(&mut self, app: App) -> &mut TokenBook {
        match app {
            App::Mini => &mut self.tokens,
            App::Mp => &mut self.mp_tokens,
        }
    }

    // ---- orders ----

    pub fn order_by_key(&self, key: &str) -> Option<&Order> {
        let no = self
            .by_prepay
            .get(key)
            .or_else(|| self.by_transaction.get(key))
            .map(String::as_str)
            .unwrap_or(key);
        self.orders.get(no)
    }

    pub fn order_no_by_key(&self, key: &str) -> Option<String> {
        self.order_by_key(key).map(|o| o.out_trade_no.clone())
    }
}

/// What every handler and background task shares.
pub struct Shared {
    pub cfg: SimConfig,
    state: Mutex<State>,
    /// The simulator thread's runtime: notify deliveries and timers run there.
    pub rt: OnceLock<tokio::runtime::Handle>,
    /// Client for notify deliveries and official-account pushes (used on `rt` only).
    pub http: reqwest::Client,
    /// The merchant certificate we issued (DER): the only one `/secapi/` accepts.
    pub merchant_cert_der: Vec<u8>,
}

impl Shared {
    pub fn new(cfg: SimConfig, http: reqwest::Client, merchant_cert_der: Vec<u8>) -> Self {
        let state = State {
            closeorder_min_age: cfg.closeorder_min_age,
            refund_min_gap: cfg.refund_min_gap,
            ..State::default()
        };
        Shared {
            cfg,
            state: Mutex::new(state),
            rt: OnceLock::new(),
            http,
            merchant_cert_der,
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn count(&self, name: &str) {
        self.lock().count(name);
    }

    /// Runs a background task on the simulator's runtime.
    pub fn spawn<F>(&self, fut: F) -> Option<tokio::task::JoinHandle<F::Output>>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        match self.rt.get() {
            Some(rt) => Some(rt.spawn(fut)),
            None => {
                tracing::error!(target: "wechat_sim", "simulator runtime not running");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_single_use() {
        let mut s = State::default();
        let c = s.issue_code("o1");
        assert_eq!(c.len(), 32);
        assert_eq!(s.redeem_code(&c), Ok("o1".to_string()));
        assert_eq!(s.redeem_code(&c), Err(CodeError::Used));
        assert_eq!(s.redeem_code("nope"), Err(CodeError::Invalid));
    }

    #[test]
    fn legacy_token_revokes_previous() {
        let mut s = State::default();
        let ttl = Duration::from_secs(7200);
        let (a, _) = s.tokens.issue_legacy_token(ttl);
        assert_eq!(s.tokens.check_token(Some(&a)), Ok(()));
        let (b, _) = s.tokens.issue_legacy_token(ttl);
        assert_eq!(s.tokens.check_token(Some(&a)), Err(TokenError::Invalid));
        assert_eq!(s.tokens.check_token(Some(&b)), Ok(()));
        assert_eq!(s.tokens.check_token(None), Err(TokenError::Missing));
    }

    #[test]
    fn stable_token_semantics() {
        let mut s = State::default();
        let ttl = Duration::from_secs(7200);
        let (a, ea) = s.tokens.stable_token(ttl, false).expect("token");
        assert_eq!(ea, 7200);
        let (b, eb) = s.tokens.stable_token(ttl, false).expect("token");
        assert_eq!(a, b);
        assert!(eb <= 7200);
        let (c, _) = s.tokens.stable_token(ttl, true).expect("forced");
        assert_ne!(a, c);
        assert_eq!(s.tokens.check_token(Some(&a)), Err(TokenError::Invalid));
        assert_eq!(s.tokens.stable_token(ttl, true), Err(45009));
        // A legacy refresh does not touch the stable token.
        s.tokens.issue_legacy_token(ttl);
        assert_eq!(s.tokens.check_token(Some(&c)), Ok(()));
        s.invalidate_tokens();
        assert_eq!(s.tokens.check_token(Some(&c)), Err(TokenError::Invalid));
        let (d, _) = s.tokens.stable_token(ttl, false).expect("token");
        assert_ne!(c, d);
    }

    #[test]
    fn expired_token() {
        let mut s = State::default();
        let (a, _) = s.tokens.issue_legacy_token(Duration::from_millis(1));
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(s.tokens.check_token(Some(&a)), Err(TokenError::Expired));
    }
}
