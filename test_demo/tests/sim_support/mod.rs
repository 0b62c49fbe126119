//! Helpers shared by the simulator's integration tests (`tests/sim_*.rs`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{App, HttpResponse, HttpServer, web};
use test_demo::sim::sign::{self, SignType};
use test_demo::sim::{self, JsapiParams, PaymentRefused, SimConfig, SimHandle, xml};

pub async fn start_sim() -> SimHandle {
    sim::start(SimConfig::for_tests())
        .await
        .expect("simulator starts")
}

/// A raw HTTPS client trusting the simulator's CA, optionally with the merchant identity.
pub fn client(sim: &SimHandle, with_cert: bool) -> reqwest::Client {
    let ca = reqwest::Certificate::from_pem(sim.ca_cert_pem().as_bytes()).expect("CA PEM");
    let mut b = reqwest::Client::builder()
        .no_proxy()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(ca)
        .timeout(Duration::from_secs(10));
    if with_cert {
        let pem = format!("{}{}", sim.client_cert_pem(), sim.client_key_pem());
        b = b.identity(reqwest::Identity::from_pem(pem.as_bytes()).expect("identity"));
    }
    b.build().expect("client")
}

/// A Pay v2 request body: adds appid, mch_id, nonce_str, sign_type (HMAC only) and sign.
pub fn signed_xml(sim: &SimHandle, fields: &[(&str, &str)], st: SignType) -> String {
    let cfg = sim.config();
    let mut m: BTreeMap<String, String> = fields
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    m.entry("appid".into()).or_insert_with(|| cfg.appid.clone());
    m.entry("mch_id".into())
        .or_insert_with(|| cfg.mch_id.clone());
    m.entry("nonce_str".into())
        .or_insert_with(|| uuid::Uuid::new_v4().simple().to_string());
    if st == SignType::HmacSha256 {
        m.insert("sign_type".into(), "HMAC-SHA256".into());
    }
    let s = sign::pay_sign_map(&m, &cfg.pay_key, st);
    m.insert("sign".into(), s);
    xml::build_map("xml", &m)
}

pub async fn post_xml(
    c: &reqwest::Client,
    url: &str,
    body: String,
) -> (u16, BTreeMap<String, String>) {
    let resp = c
        .post(url)
        .header("Content-Type", "text/xml")
        .body(body)
        .send()
        .await
        .expect("request");
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    let doc = xml::parse(&bytes).expect("XML answer");
    (status, doc.fields)
}

pub async fn pay_call(
    sim: &SimHandle,
    c: &reqwest::Client,
    path: &str,
    fields: &[(&str, &str)],
    st: SignType,
) -> BTreeMap<String, String> {
    let (status, m) = post_xml(
        c,
        &format!("{}{}", sim.base_url(), path),
        signed_xml(sim, fields, st),
    )
    .await;
    assert_eq!(status, 200, "{path}: {m:?}");
    if m.get("return_code").map(String::as_str) == Some("SUCCESS") {
        assert!(
            sign::pay_verify(&m, &sim.config().pay_key, st),
            "{path}: response signature must verify: {m:?}"
        );
    }
    m
}

pub fn f<'a>(m: &'a BTreeMap<String, String>, k: &str) -> &'a str {
    m.get(k).map(String::as_str).unwrap_or("")
}

pub fn unique_no(prefix: &str) -> String {
    format!(
        "{prefix}{}",
        &uuid::Uuid::new_v4().simple().to_string()[..20]
    )
}

/// The openid every helper order is for.
pub const OPENID: &str = "oUser_test_1";

/// The user logs in: `jscode2session` gives `openid` out, so unifiedorder accepts it.
pub async fn login_openid(sim: &SimHandle, c: &reqwest::Client, openid: &str) {
    let cfg = sim.config();
    let code = sim.issue_code(openid);
    let v: serde_json::Value = c
        .get(format!("{}/sns/jscode2session", sim.base_url()))
        .query(&[
            ("appid", cfg.appid.as_str()),
            ("secret", cfg.secret.as_str()),
            ("js_code", code.as_str()),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .expect("jscode2session")
        .json()
        .await
        .expect("json");
    assert_eq!(v["openid"], openid, "{v}");
}

/// The `wx.requestPayment` parameters a correct server builds for `prepay_id`.
pub fn jsapi_params(sim: &SimHandle, prepay_id: &str, st: SignType) -> JsapiParams {
    let cfg = sim.config();
    let mut p = JsapiParams {
        app_id: cfg.appid.clone(),
        time_stamp: chrono::Utc::now().timestamp().to_string(),
        nonce_str: uuid::Uuid::new_v4().simple().to_string(),
        package: format!("prepay_id={prepay_id}"),
        sign_type: st.as_str().to_string(),
        pay_sign: String::new(),
    };
    p.pay_sign = sign_jsapi(&p, &cfg.pay_key, st);
    p
}

/// paySign over appId, timeStamp, nonceStr, package and signType.
pub fn sign_jsapi(p: &JsapiParams, key: &str, st: SignType) -> String {
    sign::pay_sign(
        [
            ("appId", p.app_id.as_str()),
            ("timeStamp", p.time_stamp.as_str()),
            ("nonceStr", p.nonce_str.as_str()),
            ("package", p.package.as_str()),
            ("signType", p.sign_type.as_str()),
        ],
        key,
        st,
    )
}

/// The user pays an order (by prepay id or out_trade_no) through `wx.requestPayment` with
/// correctly built parameters.
pub fn pay(sim: &SimHandle, key: &str) -> Result<(), PaymentRefused> {
    pay_with_coupon(sim, key, 0)
}

pub fn pay_with_coupon(sim: &SimHandle, key: &str, coupon_fee: u64) -> Result<(), PaymentRefused> {
    let o = sim.order(key).ok_or(PaymentRefused::UnknownPrepayId)?;
    let st = SignType::parse(Some(&o.sign_type)).expect("sign type");
    sim.request_payment_with_coupon(&jsapi_params(sim, &o.prepay_id, st), coupon_fee)
}

/// Creates a JSAPI order and returns its prepay id.
pub async fn create_order(
    sim: &SimHandle,
    c: &reqwest::Client,
    out_trade_no: &str,
    total_fee: &str,
    notify_url: &str,
    st: SignType,
) -> String {
    login_openid(sim, c, OPENID).await;
    let m = pay_call(
        sim,
        c,
        "/pay/unifiedorder",
        &[
            ("body", "校园跑腿-测试"),
            ("out_trade_no", out_trade_no),
            ("total_fee", total_fee),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", notify_url),
            ("trade_type", "JSAPI"),
            ("openid", "oUser_test_1"),
        ],
        st,
    )
    .await;
    assert_eq!(f(&m, "return_code"), "SUCCESS", "{m:?}");
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    f(&m, "prepay_id").to_string()
}

/// A received notify.
#[derive(Clone, Debug)]
pub struct Received {
    pub body: String,
    pub at: Instant,
}

/// A tiny notify receiver: records bodies; answers FAIL to the first `fail_first` requests,
/// SUCCESS afterwards.
#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    pub got: Arc<Mutex<Vec<Received>>>,
    server: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub fn bodies(&self) -> Vec<String> {
        self.got
            .lock()
            .expect("lock")
            .iter()
            .map(|r| r.body.clone())
            .collect()
    }

    pub fn count(&self) -> usize {
        self.got.lock().expect("lock").len()
    }

    pub async fn stop(&self) {
        self.server.stop(false).await;
    }
}

pub async fn start_receiver(fail_first: usize) -> Receiver {
    let got: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
    let g = got.clone();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let server = HttpServer::new(move || {
        let g = g.clone();
        App::new().route(
            "/notify",
            web::post().to(move |body: String| {
                let g = g.clone();
                async move {
                    let n = {
                        let mut v = g.lock().expect("lock");
                        v.push(Received {
                            body,
                            at: Instant::now(),
                        });
                        v.len()
                    };
                    let code = if n <= fail_first { "FAIL" } else { "SUCCESS" };
                    HttpResponse::Ok().content_type("text/xml").body(format!(
                        "<xml><return_code><![CDATA[{code}]]></return_code><return_msg><![CDATA[OK]]></return_msg></xml>"
                    ))
                }
            }),
        )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    Receiver {
        url: format!("http://127.0.0.1:{port}/notify"),
        got,
        server: handle,
    }
}

/// Polls `cond` every 20 ms for up to `secs` seconds.
pub async fn wait_until<F: FnMut() -> bool>(secs: u64, mut cond: F) -> bool {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
    cond()
}
