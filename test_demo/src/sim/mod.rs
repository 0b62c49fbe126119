//! A WeChat simulator: stands in for `api.weixin.qq.com` (mini-program and official-account
//! APIs) and `api.mch.weixin.qq.com` (Pay v2) in tests and in the server's `demo` mode.
//!
//! It implements the protocols as WeChat documents them, independently of the app's client
//! code: Pay v2 signatures (MD5 / HMAC-SHA256) and XML, signed responses, error shapes
//! (`return_code`/`result_code`/`err_code`, `{"errcode","errmsg"}`), mutual TLS on `/secapi/`
//! and the transfer APIs, pay and refund notifies with WeChat's retry schedule, encrypted
//! refund notifies, and official-account pushes in plain and safe (AES) mode.
//!
//! One HTTPS server (one port) serves both API hosts' paths plus `/sim/...` control endpoints.
//! It runs on its own thread with its own actix System, so [`start`] works from any async
//! context (`#[actix_web::test]`, `#[actix_web::main]`, plain tokio).
//!
//! Choices where WeChat's behaviour is not pinned down by its documentation:
//! * `/secapi/` without a client certificate: HTTP 200, `return_code FAIL`,
//!   `return_msg "证书验证失败：请求未携带商户API证书"` (the TLS handshake itself succeeds,
//!   client auth being optional there); a certificate other than the merchant's → FAIL too.
//! * Format problems (missing or malformed parameters, bad signature, wrong mch_id/appid)
//!   answer at the `return_code FAIL` level; business errors (ORDERPAID, ORDERCLOSED,
//!   ORDERNOTEXIST, INVALID_REQUEST, ...) at the `result_code FAIL` + `err_code` level.
//! * HMAC-SHA256 pay notifies carry `sign_type` on the first attempt (and its duplicates)
//!   and omit it on retries (real WeChat sometimes omits it): a client must tell MD5 from
//!   HMAC by the signature's length.
//! * Notify faults are read at each delivery attempt; `drop_first` is consumed by the
//!   attempts it drops. They apply to refund notifies too (`tamper_sign` there corrupts the
//!   `req_info` encryption key; `tamper_amount` changes `refund_fee`).
//! * A delivery is acknowledged by HTTP 200 within 5 s with an XML body whose `return_code`
//!   is `SUCCESS`; anything else is retried per `notify_retry_delays`, then given up.
//! * The mini-program and the official account have their own appid, secret and access
//!   tokens (`cgi-bin/token`, `stable_token`); a token used on the other app's API answers
//!   48001. `message/custom/send` takes both (it is both apps' customer-message API);
//!   `message/template/send` is the official account's (`template.rs`).
//! * `closeorder` within 5 minutes of `unifiedorder` (WeChat documents the rule, not its
//!   answer): `result_code FAIL`, `err_code SYSTEMERROR` (retry later), the order stays
//!   payable. [`SimConfig::closeorder_min_age`] / [`SimHandle::set_closeorder_min_age`].
//! * `unifiedorder` accepts only openids that `jscode2session` gave out (else `PARAM_ERROR`
//!   "appid和openid不匹配"), a valid IP literal as `spbill_create_ip`, and `time_expire` at
//!   least 5 minutes ahead (`return_code FAIL` "time_expire时间过短，刷卡至少1分钟，其他5分钟").
//! * Refunds: `refund_desc` over 80 bytes → `PARAM_ERROR`; a new refund of an order less than
//!   a minute after the previous one → `FREQUENCY_LIMITED` (a retry of the same
//!   `out_refund_no` is not a new refund).
//! * The user's payment is [`SimHandle::request_payment`] with what `wx.requestPayment`
//!   receives; the client-side checks WeChat makes there (paySign, signType, timeStamp in
//!   seconds within 2 h before and 5 min after now, appId, prepay id alive) refuse it.
//! * `subscribe/send`: values are checked by WeChat's parameter rules (47003 naming the key,
//!   see `subscribe.rs`), and each send spends one acceptance of the template by the user
//!   ([`SimHandle::accept_subscribe`]); without one, 43101.
//! * Transfers to users' balances (`mmpaymkttransfers/promotion/transfers`,
//!   `gettransferinfo`, mutual TLS, MD5): see `transfers.rs` for the rules and the injected
//!   outcomes ([`SimHandle::push_transfer_faults`]).
//! * `pay/downloadbill` builds WeChat's text bill from the recorded payments and refunds
//!   (`bill.rs`); today's bill only with [`SimHandle::set_bill_same_day`].
//! * [`SimHandle::set_api_faults`] (`/sim/api-faults`): every API call can be answered
//!   late, refused with a 503 before it is carried out, or carried out and its connection
//!   reset (`api_faults.rs`).
//! * Keys are ECDSA P-256 (ring cannot generate RSA); `client_p12` is PBES2/AES-256-CBC +
//!   HMAC-SHA256 MAC, as OpenSSL 3 writes by default (`p12::Profile::Legacy` writes the
//!   RC2-40 profile of WeChat's own files).

pub mod api_faults;
mod bill;
mod control;
pub mod crypto;
mod mini;
mod mp;
mod notify;
mod p12;
mod pay;
mod platform;
mod qr;
pub mod refund_faults;
pub mod sign;
mod state;
mod subscribe;
mod template;
mod tls;
mod transfers;
pub mod xml;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpServer, web};
use anyhow::Context as _;
use serde::{Deserialize, Serialize};

pub use api_faults::ApiFaults;
pub use bill::BillRowEdit;
pub use pay::{JsapiParams, PaymentRefused};
pub use state::{LoginFault, SimOrder, SimRefund};
pub use template::TemplateFault;
pub use transfers::{SimTransfer, TransferFault};

use state::Shared;

/// The simulator's settings.
#[derive(Clone, Debug)]
pub struct SimConfig {
    /// `127.0.0.1:0` = a random port.
    pub bind: SocketAddr,
    /// Mini-program credentials.
    pub appid: String,
    pub secret: String,
    /// Merchant id and the Pay v2 API key (32 characters).
    pub mch_id: String,
    pub pay_key: String,
    /// Official account: appid, secret (its own access tokens), token and the 43-character
    /// EncodingAESKey.
    pub mp_appid: String,
    pub mp_secret: String,
    pub mp_token: String,
    pub mp_aes_key: String,
    /// The mini-program's message-push token (media check verdicts are signed with it).
    pub mini_token: String,
    /// Delays between notify attempts; after the last one fails, delivery stops.
    pub notify_retry_delays: Vec<Duration>,
    /// Access token lifetime (7200 s at WeChat).
    pub token_ttl: Duration,
    /// Time from a refund being accepted to its SUCCESS (and refund notify).
    pub refund_settle_delay: Duration,
    /// `closeorder` is refused until this long after the order's first `unifiedorder`
    /// (WeChat: 5 minutes; [`SimHandle::set_closeorder_min_age`] shortens it for a test).
    pub closeorder_min_age: Duration,
    /// A new refund of an order is refused (FREQUENCY_LIMITED) this soon after the previous
    /// one (WeChat: 1 minute; [`SimHandle::set_refund_min_gap`]).
    pub refund_min_gap: Duration,
}

/// WeChat: "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟".
pub const CLOSEORDER_MIN_AGE: Duration = Duration::from_secs(300);
/// WeChat: "单笔订单请求频率过高，请于1分钟后重试" (FREQUENCY_LIMITED).
pub const REFUND_MIN_GAP: Duration = Duration::from_secs(60);

/// WeChat's documented notify retry schedule (about 24 hours).
pub fn wechat_retry_schedule() -> Vec<Duration> {
    [
        15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600,
    ]
    .into_iter()
    .map(Duration::from_secs)
    .collect()
}

impl SimConfig {
    /// Fixed demo credentials, bound to 127.0.0.1:9443, WeChat's real retry schedule.
    pub fn demo() -> Self {
        SimConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 9443),
            appid: "wx5e1c3d7a9b2f4e60".into(),
            secret: "3f9a1c7e5b2d4f6a8c0e1b3d5f7a9c2e".into(),
            mch_id: "1900012345".into(),
            pay_key: "CampusErrandDemoPayKey0123456789".into(),
            mp_appid: "wx8d2b4f6a1c3e5079".into(),
            mp_secret: "7b1d3f5a9c2e4b6d8f0a1c3e5b7d9f2a".into(),
            mp_token: "campuserranddemo".into(),
            mp_aes_key: "Q2FtcHVzRXJyYW5kRGVtb0FFU0tleTAxMjM0NTY3ODk".into(),
            mini_token: "campuserrandminidemo".into(),
            notify_retry_delays: wechat_retry_schedule(),
            token_ttl: Duration::from_secs(7200),
            refund_settle_delay: Duration::from_secs(3),
            closeorder_min_age: CLOSEORDER_MIN_AGE,
            refund_min_gap: REFUND_MIN_GAP,
        }
    }

    /// A random port, fixed test credentials, retry delays of 50-200 ms, refunds settling
    /// after 100 ms.
    pub fn for_tests() -> Self {
        SimConfig {
            bind: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0),
            appid: "wx1234567890abcdef".into(),
            secret: "0123456789abcdef0123456789abcdef".into(),
            mch_id: "1230000109".into(),
            pay_key: "TestPayKey0123456789abcdefghijkl".into(),
            mp_appid: "wxfedcba0987654321".into(),
            mp_secret: "fedcba9876543210fedcba9876543210".into(),
            mp_token: "testtoken".into(),
            mp_aes_key: "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG".into(),
            mini_token: "testminitoken".into(),
            notify_retry_delays: [50, 100, 150, 200, 200]
                .into_iter()
                .map(Duration::from_millis)
                .collect(),
            token_ttl: Duration::from_secs(7200),
            refund_settle_delay: Duration::from_millis(100),
            // WeChat's rules here too: a test that needs less sets it.
            closeorder_min_age: CLOSEORDER_MIN_AGE,
            refund_min_gap: REFUND_MIN_GAP,
        }
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.pay_key.len() == 32,
            "pay_key must be 32 characters (got {})",
            self.pay_key.len()
        );
        anyhow::ensure!(!self.appid.is_empty(), "appid is empty");
        anyhow::ensure!(!self.mch_id.is_empty(), "mch_id is empty");
        crypto::mp_aes_key(&self.mp_aes_key)
            .map_err(|_| anyhow::anyhow!("mp_aes_key must be a 43-character EncodingAESKey"))?;
        Ok(())
    }
}

/// Knobs for notify deliveries (see the module docs for how they are applied).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NotifyFaults {
    /// Delivery attempts not sent (counted as failed attempts, retried per the schedule).
    pub drop_first: u32,
    /// Extra identical copies sent concurrently with each attempt.
    pub duplicate: u32,
    /// Wait before each attempt.
    pub delay: Duration,
    /// Send a wrong signature (pay) / a req_info encrypted with the wrong key (refund).
    pub tamper_sign: bool,
    /// Change the amount (pay: total_fee and cash_fee + 1; refund: refund_fee + 1) and sign
    /// correctly.
    pub tamper_amount: bool,
    /// Another appid, signed correctly.
    pub wrong_appid: bool,
}

/// `NotifyFaults` as JSON (`POST /sim/notify-faults`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct NotifyFaultsJson {
    pub drop_first: u32,
    pub duplicate: u32,
    pub delay_ms: u64,
    pub tamper_sign: bool,
    pub tamper_amount: bool,
    pub wrong_appid: bool,
}

impl From<NotifyFaultsJson> for NotifyFaults {
    fn from(j: NotifyFaultsJson) -> Self {
        NotifyFaults {
            drop_first: j.drop_first,
            duplicate: j.duplicate.min(16),
            delay: Duration::from_millis(j.delay_ms.min(60_000)),
            tamper_sign: j.tamper_sign,
            tamper_amount: j.tamper_amount,
            wrong_appid: j.wrong_appid,
        }
    }
}

struct Inner {
    shared: Arc<Shared>,
    base_url: String,
    server: ServerHandle,
    stopped: AtomicBool,
    ca_cert_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
    client_p12: Vec<u8>,
    client_p12_legacy: Vec<u8>,
}

/// A running simulator. Cloning shares it. Dropping the handles does not stop it: call
/// [`SimHandle::stop`] (or let the process end).
#[derive(Clone)]
pub struct SimHandle {
    inner: Arc<Inner>,
}

/// Starts the simulator on its own thread; returns once it is listening.
pub async fn start(cfg: SimConfig) -> anyhow::Result<SimHandle> {
    cfg.validate()?;
    let pki = tls::generate(&cfg.mch_id)?;
    let tls_cfg = tls::server_config(&pki)?;
    let client_p12 = p12::write_pkcs12(
        &pki.client_cert_der,
        &pki.client_key_der,
        &[pki.ca_cert_der.as_slice()],
        &cfg.mch_id,
        "apiclient_cert",
        p12::Profile::Modern,
    )
    .context("PKCS#12")?;
    let client_p12_legacy = p12::write_pkcs12(
        &pki.client_cert_der,
        &pki.client_key_der,
        &[pki.ca_cert_der.as_slice()],
        &cfg.mch_id,
        "apiclient_cert",
        p12::Profile::Legacy,
    )
    .context("legacy PKCS#12")?;
    let listener = std::net::TcpListener::bind(cfg.bind)
        .with_context(|| format!("binding the WeChat simulator to {}", cfg.bind))?;
    let addr = listener.local_addr()?;
    let host = match addr.ip() {
        ip if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    let base_url = match host {
        IpAddr::V4(v4) => format!("https://{v4}:{}", addr.port()),
        IpAddr::V6(v6) => format!("https://[{v6}]:{}", addr.port()),
    };
    let http = reqwest::Client::builder()
        .no_proxy()
        .timeout(notify::ACK_TIMEOUT)
        .user_agent("Mozilla/4.0")
        .build()
        .context("notify HTTP client")?;
    let shared = Arc::new(Shared::new(cfg, http, pki.client_cert_der.clone()));

    let (tx, rx) = tokio::sync::oneshot::channel::<std::io::Result<ServerHandle>>();
    let thread_shared = shared.clone();
    std::thread::Builder::new()
        .name("wechat-sim".into())
        .spawn(move || run_server(thread_shared, listener, tls_cfg, tx))
        .context("spawning the simulator thread")?;
    let server = rx
        .await
        .context("simulator thread ended early")?
        .context("starting the simulator's HTTP server")?;
    tracing::info!(target: "wechat_sim", %base_url, "WeChat simulator listening");
    Ok(SimHandle {
        inner: Arc::new(Inner {
            shared,
            base_url,
            server,
            stopped: AtomicBool::new(false),
            ca_cert_pem: pki.ca_cert_pem,
            client_cert_pem: pki.client_cert_pem,
            client_key_pem: pki.client_key_pem,
            client_p12,
            client_p12_legacy,
        }),
    })
}

fn run_server(
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    tls_cfg: rustls::ServerConfig,
    tx: tokio::sync::oneshot::Sender<std::io::Result<ServerHandle>>,
) {
    let system = actix_web::rt::System::new();
    system.block_on(async move {
        let _ = shared.rt.set(tokio::runtime::Handle::current());
        let data = web::Data::from(shared);
        let built = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
                .wrap_fn(api_faults::apply)
                .app_data(web::PayloadConfig::new(xml::MAX_XML_BYTES))
                .configure(routes)
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(1)
        .on_connect(tls::on_connect)
        .listen_rustls_0_23(listener, tls_cfg);
        let server = match built {
            Ok(s) => s.run(),
            Err(e) => {
                let _ = tx.send(Err(e));
                return;
            }
        };
        let _ = tx.send(Ok(server.handle()));
        if let Err(e) = server.await {
            tracing::error!(target: "wechat_sim", error = %e, "simulator server failed");
        }
        tracing::info!(target: "wechat_sim", "WeChat simulator stopped");
    });
}

fn routes(cfg: &mut web::ServiceConfig) {
    // Before pay's: the first route registered for a path answers.
    refund_faults::routes(cfg);
    mini::routes(cfg);
    platform::routes(cfg);
    pay::routes(cfg);
    transfers::routes(cfg);
    bill::routes(cfg);
    template::routes(cfg);
    control::routes(cfg);
}

impl SimHandle {
    /// `https://127.0.0.1:PORT`.
    pub fn base_url(&self) -> String {
        self.inner.base_url.clone()
    }

    pub fn config(&self) -> &SimConfig {
        &self.inner.shared.cfg
    }

    /// The root CA a client must trust (`WECHAT_CA_CERT`).
    pub fn ca_cert_pem(&self) -> String {
        self.inner.ca_cert_pem.clone()
    }

    /// The merchant certificate (`apiclient_cert.pem`).
    pub fn client_cert_pem(&self) -> String {
        self.inner.client_cert_pem.clone()
    }

    /// The merchant key, PKCS#8 PEM (`apiclient_key.pem`).
    pub fn client_key_pem(&self) -> String {
        self.inner.client_key_pem.clone()
    }

    /// The merchant certificate and key as PKCS#12 (`apiclient_cert.p12`), password = mch_id.
    pub fn client_p12(&self) -> Vec<u8> {
        self.inner.client_p12.clone()
    }

    /// The same in the legacy profile of the files WeChat hands merchants
    /// (pbeWithSHAAnd40BitRC2-CBC, SHA-1 MAC), password = mch_id.
    pub fn client_p12_legacy(&self) -> Vec<u8> {
        self.inner.client_p12_legacy.clone()
    }

    /// Writes `ca.pem`, `apiclient_cert.pem`, `apiclient_key.pem` and `apiclient_cert.p12`.
    pub fn write_files(&self, dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::write(dir.join("ca.pem"), &self.inner.ca_cert_pem)?;
        std::fs::write(dir.join("apiclient_cert.pem"), &self.inner.client_cert_pem)?;
        write_private(
            &dir.join("apiclient_key.pem"),
            self.inner.client_key_pem.as_bytes(),
        )?;
        write_private(&dir.join("apiclient_cert.p12"), &self.inner.client_p12)?;
        Ok(())
    }

    /// A fresh single-use wx.login code for this openid.
    pub fn issue_code(&self, openid: &str) -> String {
        self.inner.shared.lock().issue_code(openid)
    }

    /// The code the phone-number button hands the mini-program when the user shares
    /// `phone` (a mainland number: country code 86); `getuserphonenumber` redeems it once.
    pub fn issue_phone_code(&self, phone: &str) -> String {
        self.inner
            .shared
            .lock()
            .platform
            .issue_phone_code(phone, "86")
    }

    /// As [`SimHandle::issue_phone_code`], for a number of another country or region.
    pub fn issue_phone_code_in(&self, phone: &str, country_code: &str) -> String {
        self.inner
            .shared
            .lock()
            .platform
            .issue_phone_code(phone, country_code)
    }

    /// The mini-program's message-push URL (set in its console): where media check verdicts
    /// go.
    pub fn set_mini_push_url(&self, url: &str) {
        self.inner.shared.lock().platform.mini_push_url = Some(url.to_string());
    }

    /// The mini-program console's data format for its push URL: XML (`true`) or JSON.
    pub fn set_mini_push_xml(&self, xml: bool) {
        self.inner.shared.lock().platform.mini_push_xml = xml;
    }

    /// The next media checks answer these verdicts (`pass`, `risky`, `review`), one each.
    pub fn push_media_verdicts(&self, verdicts: &[&str]) {
        self.inner
            .shared
            .lock()
            .platform
            .media_verdicts
            .extend(verdicts.iter().map(|v| (*v).to_string()));
    }

    /// Every text `msg_sec_check` checked so far: content, openid, scene, suggest.
    pub fn text_checks(&self) -> Vec<serde_json::Value> {
        self.inner.shared.lock().platform.text_checks.clone()
    }

    /// Every media check taken so far (see `platform.rs`).
    pub fn media_checks(&self) -> Vec<serde_json::Value> {
        self.inner.shared.lock().platform.media_checks.clone()
    }

    /// What `getcallbackip` answers from now on (ranges or addresses).
    pub fn set_callback_ips(&self, list: &[&str]) {
        self.inner.shared.lock().platform.callback_ips =
            list.iter().map(|s| (*s).to_string()).collect();
    }

    /// The official account's menu as `menu/create` last set it.
    pub fn mp_menu(&self) -> Option<serde_json::Value> {
        self.inner.shared.lock().platform.menu.clone()
    }

    /// Calls counted so far under `api` (0 when none): jscode2session, token, stable_token,
    /// unifiedorder, orderquery, closeorder, refund, refundquery, getwxacodeunlimit,
    /// subscribe_send, custom_send, pay_notify_sent, refund_notify_sent; also
    /// pay_notify_acked, refund_notify_acked, pay_notify_dropped, refund_notify_dropped,
    /// pay_notify_gave_up, refund_notify_gave_up.
    pub fn calls(&self, api: &str) -> u64 {
        self.inner
            .shared
            .lock()
            .counters
            .get(api)
            .copied()
            .unwrap_or(0)
    }

    /// All counters.
    pub fn all_calls(&self) -> std::collections::BTreeMap<String, u64> {
        self.inner.shared.lock().counters.clone()
    }

    /// A code whose `jscode2session` answers a refusal instead of a session: 40226 for a
    /// high-risk user (every time), or -1 "system error" (once; the retry succeeds).
    pub fn issue_code_with_fault(&self, openid: &str, fault: LoginFault) -> String {
        self.inner
            .shared
            .lock()
            .issue_code_with(openid, Some(fault))
    }

    /// The user pays in the mini-program: `wx.requestPayment` with the parameters the server
    /// returned (checked as WeChat does: prepay id alive, appId, signType as in unifiedorder,
    /// timeStamp, paySign), then the order becomes SUCCESS with a transaction id and the pay
    /// notify goes to its notify_url (with retries).
    pub fn request_payment(&self, params: &JsapiParams) -> Result<(), PaymentRefused> {
        pay::request_payment(&self.inner.shared, params, 0)
    }

    /// Like [`SimHandle::request_payment`], with a coupon of `coupon_fee` fen: `cash_fee` is
    /// lower than `total_fee`, and the notify carries `coupon_fee`, `coupon_count`,
    /// `coupon_id_0`, ...
    pub fn request_payment_with_coupon(
        &self,
        params: &JsapiParams,
        coupon_fee: u64,
    ) -> Result<(), PaymentRefused> {
        pay::request_payment(&self.inner.shared, params, coupon_fee)
    }

    /// NOT what WeChat allows: the order is paid by prepay id or out_trade_no, skipping every
    /// client-side check of `wx.requestPayment` (paySign, signType, timeStamp, appId). For
    /// tests of the notify machinery only; product tests use [`SimHandle::request_payment`]
    /// with the parameters the server returned.
    pub fn pay_skipping_client_checks(
        &self,
        prepay_id_or_out_trade_no: &str,
    ) -> anyhow::Result<()> {
        pay::simulate_payment(&self.inner.shared, prepay_id_or_out_trade_no, 0)
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// [`SimHandle::pay_skipping_client_checks`] with a coupon of `coupon_fee` fen.
    pub fn pay_with_coupon_skipping_client_checks(
        &self,
        prepay_id_or_out_trade_no: &str,
        coupon_fee: u64,
    ) -> anyhow::Result<()> {
        pay::simulate_payment(&self.inner.shared, prepay_id_or_out_trade_no, coupon_fee)
            .map_err(|e| anyhow::anyhow!(e))
    }

    /// The order's prepay id reaches the end of its 2 hours now (for tests that cannot wait).
    /// False when the order is unknown.
    pub fn expire_prepay_id(&self, prepay_id_or_out_trade_no: &str) -> bool {
        let mut st = self.inner.shared.lock();
        let Some(no) = st.order_no_by_key(prepay_id_or_out_trade_no) else {
            return false;
        };
        st.orders
            .get_mut(&no)
            .map(|o| o.prepay_expires = std::time::Instant::now())
            .is_some()
    }

    /// NOT WeChat (whose bill for a day exists from about 10:00 the next day): when on,
    /// `downloadbill` serves today's bill too, so a test can reconcile what it just paid.
    pub fn set_bill_same_day(&self, on: bool) {
        self.inner.shared.lock().bill_same_day = on;
    }

    /// Alters an order's rows in `downloadbill` (an amount that differs, a missing row).
    pub fn edit_bill_row(&self, out_trade_no: &str, edit: BillRowEdit) {
        self.inner
            .shared
            .lock()
            .bill_edits
            .insert(out_trade_no.to_string(), edit);
    }

    /// `openid` follows the official account (an official-account openid, not the
    /// mini-program's).
    pub fn mp_follow(&self, openid: &str) {
        self.inner
            .shared
            .lock()
            .mp_followers
            .insert(openid.to_string(), true);
    }

    /// `openid` unfollowed the official account: template messages to it answer 43004.
    pub fn mp_unfollow(&self, openid: &str) {
        self.inner
            .shared
            .lock()
            .mp_followers
            .insert(openid.to_string(), false);
    }

    /// The official account added this template (from the library) to its templates.
    pub fn mp_add_template(&self, template_id: &str) {
        self.inner
            .shared
            .lock()
            .mp_templates
            .insert(template_id.to_string());
    }

    /// Answers for the next `message/template/send` requests, one per request, in order.
    pub fn push_template_faults(&self, faults: &[TemplateFault]) {
        self.inner
            .shared
            .lock()
            .template_faults
            .extend(faults.iter().cloned());
    }

    /// Bodies accepted by `message/template/send`.
    pub fn template_messages(&self) -> Vec<serde_json::Value> {
        self.inner.shared.lock().template_messages.clone()
    }

    /// Outcomes for the next `promotion/transfers` requests, one per request, in order.
    pub fn push_transfer_faults(&self, faults: &[TransferFault]) {
        self.inner
            .shared
            .lock()
            .transfer_faults
            .extend(faults.iter().cloned());
    }

    /// A transfer the simulator made (money moved), by partner_trade_no.
    pub fn transfer(&self, partner_trade_no: &str) -> Option<SimTransfer> {
        self.inner
            .shared
            .lock()
            .transfers
            .get(partner_trade_no)
            .cloned()
    }

    /// Every transfer made.
    pub fn transfers(&self) -> Vec<SimTransfer> {
        let mut v: Vec<SimTransfer> = self
            .inner
            .shared
            .lock()
            .transfers
            .values()
            .cloned()
            .collect();
        v.sort_by(|a, b| a.payment_no.cmp(&b.payment_no));
        v
    }

    /// The user taps "allow" for these templates in `wx.requestSubscribeMessage`: one
    /// `subscribe/send` of each template to this openid (more taps, more sends).
    pub fn accept_subscribe(&self, openid: &str, template_ids: &[&str]) {
        let ids: Vec<String> = template_ids.iter().map(|t| t.to_string()).collect();
        self.inner.shared.lock().accept_subscribe(openid, &ids);
    }

    /// Sends of `template_id` to `openid` still allowed by acceptances.
    pub fn subscribe_credits(&self, openid: &str, template_id: &str) -> u32 {
        self.inner
            .shared
            .lock()
            .subscribe_credits_left(openid, template_id)
    }

    /// NOT WeChat: when on, `subscribe/send` needs no acceptance (only the parameter rules
    /// and [`SimHandle::refuse_subscribe_for`] apply). Off by default.
    pub fn set_subscribe_auto_accept(&self, on: bool) {
        self.inner.shared.lock().subscribe_auto_accept = on;
    }

    /// How old an order must be before `closeorder` accepts it (WeChat: 5 minutes, the
    /// default). For tests that cannot wait.
    pub fn set_closeorder_min_age(&self, d: Duration) {
        self.inner.shared.lock().closeorder_min_age = d;
    }

    /// How far apart two refunds of one order must be (WeChat: 1 minute, the default).
    pub fn set_refund_min_gap(&self, d: Duration) {
        self.inner.shared.lock().refund_min_gap = d;
    }

    pub fn set_notify_faults(&self, f: NotifyFaults) {
        self.inner.shared.lock().faults = f;
    }

    /// Faults on every WeChat API call from now on (a slow WeChat, 5xx answers, reset
    /// connections; see `api_faults.rs`); `ApiFaults::default()` turns them off.
    pub fn set_api_faults(&self, f: ApiFaults) {
        self.inner.shared.lock().api_faults = f;
    }

    /// Snapshot of an order (by out_trade_no, prepay_id or transaction_id).
    pub fn order(&self, out_trade_no: &str) -> Option<SimOrder> {
        self.inner
            .shared
            .lock()
            .order_by_key(out_trade_no)
            .map(SimOrder::from)
    }

    /// The out_trade_no of every order the user paid (trade state SUCCESS or REFUND), sorted.
    pub fn paid_out_trade_nos(&self) -> Vec<String> {
        let mut v: Vec<String> = self
            .inner
            .shared
            .lock()
            .orders
            .values()
            .filter(|o| o.state.is_paid())
            .map(|o| o.out_trade_no.clone())
            .collect();
        v.sort();
        v
    }

    /// Every access token stops working (40001 on the next call).
    pub fn invalidate_access_tokens(&self) {
        self.inner.shared.lock().invalidate_tokens();
    }

    /// Bodies received by `subscribe/send` (successful sends only).
    pub fn subscribe_messages(&self) -> Vec<serde_json::Value> {
        self.inner.shared.lock().subscribe_messages.clone()
    }

    /// Bodies received by `custom/send`.
    pub fn custom_messages(&self) -> Vec<serde_json::Value> {
        self.inner.shared.lock().custom_messages.clone()
    }

    /// `subscribe/send` to this openid answers 43101 (the user refused; acceptances do not
    /// help).
    pub fn refuse_subscribe_for(&self, openid: &str) {
        self.inner
            .shared
            .lock()
            .refused_subscribe
            .insert(openid.to_string());
    }

    /// Acts as WeChat pushing an official-account message to `endpoint_url`; returns the HTTP
    /// status and the reply body (decrypted and signature-checked in safe mode).
    pub async fn push_mp_message(
        &self,
        endpoint_url: &str,
        xml: &str,
        safe_mode: bool,
    ) -> anyhow::Result<(u16, String)> {
        mp::push(&self.inner.shared, endpoint_url, xml, safe_mode).await
    }

    /// The next refund call gets this answer (calls queue up in order).
    pub fn script_refund_reply(&self, fault: refund_faults::RefundFault) {
        self.inner.shared.lock().refund_faults.push_back(fault);
    }

    /// `refundquery` reports this refund with `outcome` from now on, and no refund notify
    /// is sent for it; `None` returns it to the ordinary behaviour.
    pub fn set_refund_outcome(
        &self,
        out_refund_no: &str,
        outcome: Option<refund_faults::RefundOutcome>,
    ) {
        let mut st = self.inner.shared.lock();
        match outcome {
            Some(o) => st.refund_outcomes.insert(out_refund_no.to_string(), o),
            None => st.refund_outcomes.remove(out_refund_no),
        };
    }

    /// Stops the server and every pending notify. Idempotent.
    pub fn stop(&self) {
        if !self.inner.stopped.swap(true, Ordering::SeqCst) {
            // Sends the stop command now; the returned future only waits for completion.
            drop(self.inner.server.stop(false));
        }
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}
