//! The client against a tiny WeChat Pay stand-in (actix-web, plain HTTP) that checks
//! the client's signatures and answers signed XML — or forged, unsigned, failing or
//! garbled XML, chosen by the out_trade_no / out_refund_no prefix.

use crate::settings::Settings;
use std::sync::Mutex;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use chrono::TimeZone;

use super::*;
use crate::wechat::pay::identity::tests::{TEST_MCH_ID, testdata};
use crate::wechat::pay::sign::{infer_sign_type, sign, verify};

const APPID: &str = "wxd930ea5d5a258f4f";
const MCH_ID: &str = "10000100";
const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

#[derive(Default)]
struct Fake {
    requests: Mutex<Vec<(String, BTreeMap<String, String>)>>,
}

impl Fake {
    fn count(&self) -> usize {
        self.requests.lock().map(|r| r.len()).unwrap_or(0)
    }

    fn last(&self) -> (String, BTreeMap<String, String>) {
        self.requests
            .lock()
            .ok()
            .and_then(|r| r.last().cloned())
            .expect("a request was made")
    }
}

fn xml_response(body: String) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/xml; charset=utf-8")
        .body(body)
}

fn fields(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn signed(mut f: BTreeMap<String, String>, key: &str, st: SignType) -> String {
    f.remove("sign");
    let s = sign(&f, key, st);
    f.insert("sign".into(), s);
    to_xml(&f)
}

async fn handle(req: HttpRequest, body: web::Bytes, fake: web::Data<Fake>) -> HttpResponse {
    let path = req.path().to_string();
    let Ok(p) = parse_flat(&body) else {
        return xml_response(to_xml(&fields(&[
            ("return_code", "FAIL"),
            ("return_msg", "XML格式错误"),
        ])));
    };
    // Like WeChat: a request with a bad signature is refused at the return_code level.
    if verify(&p, KEY).is_err() {
        return xml_response(to_xml(&fields(&[
            ("return_code", "FAIL"),
            ("return_msg", "签名错误"),
        ])));
    }
    if let Ok(mut r) = fake.requests.lock() {
        r.push((path.clone(), p.clone()));
    }
    let st = infer_sign_type(&p).unwrap_or(SignType::Md5);
    let id = p
        .get("out_refund_no")
        .or_else(|| p.get("out_trade_no"))
        .cloned()
        .unwrap_or_default();

    let mut r = fields(&[
        ("return_code", "SUCCESS"),
        ("return_msg", "OK"),
        ("appid", APPID),
        ("mch_id", MCH_ID),
        ("nonce_str", "IITRi8Iabbblz1Jc"),
        ("result_code", "SUCCESS"),
    ]);
    let fail = |r: &mut BTreeMap<String, String>, code: &str| {
        r.insert("result_code".into(), "FAIL".into());
        r.insert("err_code".into(), code.into());
        r.insert("err_code_des".into(), format!("{code} description"));
    };
    match id.split('-').next().unwrap_or("") {
        "RETFAIL" => {
            return xml_response(to_xml(&fields(&[
                ("return_code", "FAIL"),
                ("return_msg", "参数格式校验错误"),
            ])));
        }
        "HTTP500" => return HttpResponse::InternalServerError().body("oops"),
        "GARBAGE" => return xml_response("<html>not pay xml</html>".into()),
        "DOCTYPE" => {
            return xml_response(
                "<!DOCTYPE xml [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><xml><a>&x;</a></xml>"
                    .into(),
            );
        }
        "HUGE" => {
            return xml_response(format!("<xml><a>{}</a></xml>", "x".repeat(100 * 1024)));
        }
        "SLOW" => {
            actix_web::rt::time::sleep(Duration::from_secs(3)).await;
        }
        "FORGED" => {
            r.insert("prepay_id".into(), "wx_forged".into());
            return xml_response(signed(r, "ffffffffffffffffffffffffffffffff", st));
        }
        "UNSIGNED" => {
            r.insert("prepay_id".into(), "wx_unsigned".into());
            return xml_response(to_xml(&r));
        }
        "TAMPERED" => {
            r.insert("prepay_id".into(), "wx_real".into());
            let body = signed(r, KEY, st).replace("wx_real", "wx_evil");
            return xml_response(body);
        }
        "OTHERAPP" => {
            r.insert("appid".into(), "wxsomeoneelse".into());
        }
        "OTHERMCH" => {
            r.insert("mch_id".into(), "999".into());
        }
        "BUSY" => fail(&mut r, "SYSTEMERROR"),
        "RETRY" => fail(&mut r, "BIZERR_NEED_RETRY"),
        "PAID" => fail(&mut r, "ORDERPAID"),
        "CLOSED" => fail(&mut r, "ORDERCLOSED"),
        "MISSING" => fail(&mut r, "ORDERNOTEXIST"),
        "POOR" => fail(&mut r, "NOTENOUGH"),
        "NOREFUND" => fail(&mut r, "REFUNDNOTEXIST"),
        "INVALID" => fail(&mut r, "INVALID_REQUEST"),
        "ODD" => fail(&mut r, "OUT_TRADE_NO_USED"),
        _ => {}
    }
    if r.get("result_code").map(String::as_str) == Some("SUCCESS") {
        match path.as_str() {
            "/pay/unifiedorder" => {
                r.insert("trade_type".into(), "JSAPI".into());
                r.insert(
                    "prepay_id".into(),
                    "wx201411101639507cbf6ffd8b0779950874".into(),
                );
            }
            "/pay/orderquery" => {
                let state = if id.starts_with("NOTPAY") {
                    "NOTPAY"
                } else {
                    "SUCCESS"
                };
                r.insert("trade_state".into(), state.into());
                r.insert("out_trade_no".into(), id.clone());
                if state == "SUCCESS" {
                    r.insert("total_fee".into(), "300".into());
                    r.insert(
                        "transaction_id".into(),
                        "1008450740201411110005820873".into(),
                    );
                    r.insert("time_end".into(), "20141111170043".into());
                    r.insert("coupon_count".into(), "1".into());
                    r.insert("coupon_fee_0".into(), "10".into());
                }
                if id.starts_with("WRONGECHO") {
                    r.insert("out_trade_no".into(), "someone-else".into());
                }
            }
            "/secapi/pay/refund" => {
                r.insert("out_refund_no".into(), id.clone());
                r.insert(
                    "out_trade_no".into(),
                    p.get("out_trade_no").cloned().unwrap_or_default(),
                );
                r.insert("refund_id".into(), "50000408942018111907145868882".into());
                r.insert(
                    "refund_fee".into(),
                    p.get("refund_fee").cloned().unwrap_or_default(),
                );
            }
            "/pay/refundquery" => {
                r.insert("refund_count".into(), "2".into());
                r.insert("out_refund_no_0".into(), "some-earlier-refund".into());
                r.insert("refund_status_0".into(), "SUCCESS".into());
                r.insert("refund_fee_0".into(), "1".into());
                r.insert("refund_id_0".into(), "R0".into());
                r.insert("out_refund_no_1".into(), id.clone());
                let status = if id.starts_with("DONE") {
                    "SUCCESS"
                } else {
                    "PROCESSING"
                };
                r.insert("refund_status_1".into(), status.into());
                r.insert("refund_fee_1".into(), "100".into());
                r.insert("refund_id_1".into(), "R1".into());
                r.insert("refund_recv_accout_1".into(), "支付用户的零钱".into());
            }
            _ => {}
        }
    }
    xml_response(signed(r, KEY, st))
}

async fn start() -> (String, web::Data<Fake>, ServerHandle) {
    let fake = web::Data::new(Fake::default());
    let data = fake.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .workers(1)
    .disable_signals()
    .bind(("127.0.0.1", 0))
    .expect("bind");
    let addr = *server.addrs().first().expect("bound address");
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("http://{addr}"), fake, handle)
}

fn config(base: &str, st: SignType, identity: ClientIdentity) -> PayConfig {
    PayConfig {
        appid: APPID.into(),
        mch_id: MCH_ID.into(),
        key: SecretString::from(KEY),
        sign_type: st,
        api_base: base.into(),
        extra_root: None,
        timeout: Duration::from_secs(1),
        identity,
    }
}

fn pem_identity() -> ClientIdentity {
    ClientIdentity::Pem {
        cert: testdata("test_merchant_cert.crt"),
        key: testdata("test_merchant_key.key"),
    }
}

fn client(base: &str, st: SignType) -> (PayClient, Metrics) {
    let metrics = Metrics::new();
    let c = PayClient::new(config(base, st, pem_identity()), metrics.clone()).expect("client");
    (c, metrics)
}

fn order(out_trade_no: &str) -> UnifiedOrderRequest {
    UnifiedOrderRequest {
        out_trade_no: out_trade_no.into(),
        body: "校园跑腿-快递代取".into(),
        total_fee: 300,
        openid: "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o".into(),
        spbill_create_ip: "127.0.0.1".into(),
        time_expire: Utc
            .with_ymd_and_hms(2024, 1, 1, 16, 30, 0)
            .single()
            .expect("valid time"),
        notify_url: "https://example.com/api/v1/pay/notify".into(),
        attach: Some("order:42".into()),
    }
}

#[test]
fn time_expire_is_beijing_time() {
    let t = Utc
        .with_ymd_and_hms(2024, 1, 1, 16, 30, 5)
        .single()
        .expect("valid");
    // 16:30:05 UTC is 00:30:05 the next day in Beijing.
    assert_eq!(beijing_time(t), "20240102003005");
    let t = Utc
        .with_ymd_and_hms(2023, 12, 31, 23, 59, 59)
        .single()
        .expect("valid");
    assert_eq!(beijing_time(t), "20240101075959");
    // The server's own zone plays no part: the value depends on the instant only.
    let local = t.with_timezone(&chrono::Local);
    assert_eq!(beijing_time(local.with_timezone(&Utc)), "20240101075959");
}

/// Runs the Beijing-time check again in child processes under other `TZ` settings.
#[test]
fn time_expire_ignores_the_process_time_zone() {
    let t = Utc
        .with_ymd_and_hms(2024, 1, 1, 16, 30, 5)
        .single()
        .expect("valid");
    if std::env::var_os("CAMPUS_BEIJING_CHILD").is_some() {
        assert_eq!(beijing_time(t), "20240102003005");
        return;
    }
    let name = "wechat::pay::client::tests::time_expire_ignores_the_process_time_zone";
    for tz in [
        "America/Los_Angeles",
        "Pacific/Kiritimati",
        "Asia/Shanghai",
        "UTC",
    ] {
        let out = std::process::Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", name, "--test-threads", "1"])
            .env("CAMPUS_BEIJING_CHILD", "1")
            .env("TZ", tz)
            .output()
            .expect("run child");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "TZ={tz}: {stdout}");
        assert!(
            stdout.contains("1 passed"),
            "TZ={tz}: the child ran no test: {stdout}"
        );
    }
}

#[test]
fn official_pay_sign_through_jsapi_params() {
    let p = JsapiParams::build(
        "wxd678efh567hg6787",
        "qazwsxedcrfvtgbyhnujmikolp111111",
        SignType::Md5,
        "wx2017033010242291fcfe0db70013231072",
        1490840662,
        "5K8264ILTKCH16CQ2502SI8ZNMTM67VS".into(),
    );
    assert_eq!(p.pay_sign, "22D9B4E54AB1950F51E0649E8810ACD6");
    assert_eq!(p.package, "prepay_id=wx2017033010242291fcfe0db70013231072");
    let json = serde_json::to_value(&p).expect("json");
    let obj = json.as_object().expect("object");
    let mut keys: Vec<&str> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "appId",
            "nonceStr",
            "package",
            "paySign",
            "signType",
            "timeStamp"
        ]
    );
    assert_eq!(obj["timeStamp"], "1490840662");
    assert_eq!(obj["signType"], "MD5");
}

#[test]
fn settings_name_missing_and_pick_identity() {
    let mut s = Settings::defaults().expect("defaults");
    s.wechat_appid = None;
    s.wechat_mch_id = None;
    s.wechat_pay_key = None;
    s.wechat_pay_sign_type = "SHA1".into();
    let Err(crate::settings::SettingsError::Missing(msg)) = s.resolve().map(|r| r.pay) else {
        panic!("expected a config error");
    };
    let msg = msg.join(", ");
    for name in [
        "WECHAT_APPID",
        "WECHAT_MCH_ID",
        "WECHAT_PAY_KEY",
        "WECHAT_PAY_SIGN_TYPE",
    ] {
        assert!(msg.contains(name), "{name} not in {msg}");
    }

    s.wechat_appid = Some(APPID.into());
    s.wechat_mch_id = Some(MCH_ID.into());
    s.wechat_pay_key = Some(SecretString::from(KEY));
    s.wechat_pay_sign_type = "HMAC-SHA256".into();
    s.wechat_pay_api_base = "https://api.mch.weixin.qq.com/".into();
    s.wechat_secret = Some(SecretString::from("secret"));
    s.jwt_secret = Some(SecretString::from("jwt"));
    s.field_encryption_key = Some(SecretString::from(crate::crypto::random_hex_key()));
    let c = s.resolve().expect("config").pay;
    assert_eq!(c.sign_type, SignType::HmacSha256);
    assert_eq!(c.api_base, "https://api.mch.weixin.qq.com");
    assert!(matches!(c.identity, ClientIdentity::Pem { .. }));
    assert!(!format!("{c:?}").contains(KEY), "key leaks through Debug");

    s.wechat_pay_p12 = Some(testdata("test_merchant_legacy.pfx"));
    let c = s.resolve().expect("config").pay;
    assert_eq!(
        c.identity,
        ClientIdentity::P12 {
            path: testdata("test_merchant_legacy.pfx"),
            password: MCH_ID.into()
        }
    );
}

#[test]
fn missing_certificate_still_builds() {
    let cfg = config(
        "http://127.0.0.1:9",
        SignType::Md5,
        ClientIdentity::Pem {
            cert: testdata("absent.crt"),
            key: testdata("absent.key"),
        },
    );
    let c = PayClient::new(cfg, Metrics::new()).expect("builds without certificate");
    assert!(!c.refunds_available());

    let mut cfg = config("http://127.0.0.1:9", SignType::Md5, ClientIdentity::None);
    cfg.identity = ClientIdentity::P12 {
        path: testdata("test_merchant_legacy.pfx"),
        password: TEST_MCH_ID.into(),
    };
    let c = PayClient::new(cfg, Metrics::new()).expect("builds with p12");
    assert!(c.refunds_available());
}

#[actix_web::test]
async fn unified_order_and_jsapi_params() {
    let (base, fake, server) = start().await;
    for st in [SignType::Md5, SignType::HmacSha256] {
        let (c, metrics) = client(&base, st);
        let prepay = c
            .unified_order(&order("T2024000001"))
            .await
            .expect("prepay id");
        assert_eq!(prepay, "wx201411101639507cbf6ffd8b0779950874");

        let (path, req) = fake.last();
        assert_eq!(path, "/pay/unifiedorder");
        assert_eq!(req["trade_type"], "JSAPI");
        assert_eq!(req["fee_type"], "CNY");
        assert_eq!(req["total_fee"], "300");
        assert_eq!(req["openid"], "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o");
        assert_eq!(req["time_expire"], "20240102003000");
        assert_eq!(req["attach"], "order:42");
        assert_eq!(req["appid"], APPID);
        assert_eq!(req["mch_id"], MCH_ID);
        assert_eq!(req["sign_type"], st.as_str());
        assert_eq!(req["body"], "校园跑腿-快递代取");
        assert_eq!(req["nonce_str"].len(), 32);
        assert_eq!(verify(&req, KEY), Ok(st));

        let j = c.jsapi_params(&prepay);
        assert_eq!(j.app_id, APPID);
        assert_eq!(j.package, format!("prepay_id={prepay}"));
        assert_eq!(j.sign_type, st.as_str());
        assert_eq!(j.nonce_str.len(), 32);
        assert_ne!(j.pay_sign, req["sign"], "never reuse the unifiedorder sign");
        let mut signed_fields = fields(&[
            ("appId", &j.app_id),
            ("timeStamp", &j.time_stamp),
            ("nonceStr", &j.nonce_str),
            ("package", &j.package),
            ("signType", &j.sign_type),
        ]);
        assert_eq!(j.pay_sign, sign(&signed_fields, KEY, st));
        signed_fields.insert("sign".into(), j.pay_sign.clone());
        assert_eq!(verify(&signed_fields, KEY), Ok(st));
        let age = Utc::now().timestamp() - j.time_stamp.parse::<i64>().expect("number");
        assert!((0..5).contains(&age));

        let text = metrics.render();
        assert!(
            text.contains("campus_wechat_calls_total{api=\"pay_unifiedorder\"} 1"),
            "{text}"
        );
    }
    server.stop(false).await;
}

#[actix_web::test]
async fn untrustworthy_answers_are_rejected() {
    let (base, _fake, server) = start().await;
    for st in [SignType::Md5, SignType::HmacSha256] {
        let (c, metrics) = client(&base, st);
        let e = c
            .unified_order(&order("FORGED-1"))
            .await
            .expect_err("forged");
        assert!(matches!(e, PayError::BadResponseSignature), "{e:?}");
        let e = c
            .unified_order(&order("UNSIGNED-1"))
            .await
            .expect_err("unsigned");
        assert!(matches!(e, PayError::BadResponseSignature), "{e:?}");
        let e = c
            .unified_order(&order("TAMPERED-1"))
            .await
            .expect_err("tampered");
        assert!(matches!(e, PayError::BadResponseSignature), "{e:?}");
        let e = c
            .unified_order(&order("OTHERAPP-1"))
            .await
            .expect_err("appid");
        assert!(matches!(e, PayError::Mismatch("appid")), "{e:?}");
        let e = c
            .unified_order(&order("OTHERMCH-1"))
            .await
            .expect_err("mch_id");
        assert!(matches!(e, PayError::Mismatch("mch_id")), "{e:?}");
        let e = c
            .unified_order(&order("GARBAGE-1"))
            .await
            .expect_err("garbage");
        assert!(matches!(e, PayError::Xml(XmlError::BadRoot)), "{e:?}");
        let e = c
            .unified_order(&order("DOCTYPE-1"))
            .await
            .expect_err("doctype");
        assert!(matches!(e, PayError::Xml(XmlError::Doctype)), "{e:?}");
        let e = c.unified_order(&order("HUGE-1")).await.expect_err("huge");
        assert!(matches!(e, PayError::Xml(XmlError::TooLarge)), "{e:?}");

        let text = metrics.render();
        assert!(
            text.contains(
                "campus_wechat_errors_total{api=\"pay_unifiedorder\",kind=\"bad_signature\"} 3"
            ),
            "{text}"
        );
    }
    server.stop(false).await;
}

#[actix_web::test]
async fn failures_are_typed() {
    let (base, fake, server) = start().await;
    let (c, _) = client(&base, SignType::Md5);

    let e = c
        .unified_order(&order("RETFAIL-1"))
        .await
        .expect_err("fail");
    assert!(
        matches!(&e, PayError::Return { msg } if msg == "参数格式校验错误"),
        "{e:?}"
    );
    assert!(!e.is_retryable());

    let e = c.unified_order(&order("BUSY-1")).await.expect_err("busy");
    assert!(matches!(&e, PayError::SystemError { code, .. } if code == "SYSTEMERROR"));
    assert!(e.is_retryable());
    let e = c.order_query("RETRY-1").await.expect_err("retry");
    assert!(e.is_retryable(), "{e:?}");

    let e = c.unified_order(&order("HTTP500-1")).await.expect_err("500");
    assert!(matches!(e, PayError::HttpStatus(500)));
    assert!(e.is_retryable());

    let e = c
        .unified_order(&order("ODD-1"))
        .await
        .expect_err("business");
    assert!(
        matches!(&e, PayError::Business { code, description } if code == "OUT_TRADE_NO_USED" && description.contains("description"))
    );
    let e = c
        .unified_order(&order("INVALID-1"))
        .await
        .expect_err("invalid");
    assert!(matches!(e, PayError::InvalidRequest { .. }));
    let e = c.order_query("MISSING-1").await.expect_err("no order");
    assert!(matches!(e, PayError::OrderNotExist));

    let e = c
        .unified_order(&order("SLOW-1"))
        .await
        .expect_err("timeout");
    assert!(matches!(e, PayError::Transport(_)), "{e:?}");
    assert!(e.is_retryable());
    assert_eq!(e.kind(), "timeout");

    // Refused locally, WeChat never asked.
    let before = fake.count();
    let mut zero = order("T-zero");
    zero.total_fee = 0;
    assert!(matches!(
        c.unified_order(&zero).await,
        Err(PayError::InvalidRequest { .. })
    ));
    assert_eq!(fake.count(), before);

    // Nobody listening.
    let (dead, _) = client("http://127.0.0.1:9", SignType::Md5);
    let e = dead.order_query("T-1").await.expect_err("no server");
    assert!(matches!(e, PayError::Transport(_)));
    assert!(e.is_retryable());

    server.stop(false).await;
}

#[actix_web::test]
async fn order_query_and_close_order() {
    let (base, fake, server) = start().await;
    let (c, _) = client(&base, SignType::HmacSha256);

    let q = c.order_query("T2024000001").await.expect("query");
    assert_eq!(q.trade_state, TradeState::Success);
    assert!(q.trade_state.is_paid());
    assert_eq!(q.total_fee, Some(300));
    assert_eq!(
        q.transaction_id.as_deref(),
        Some("1008450740201411110005820873")
    );
    assert_eq!(q.time_end.as_deref(), Some("20141111170043"));
    assert_eq!(
        q.raw["coupon_fee_0"], "10",
        "unknown fields kept and verified"
    );
    assert_eq!(fake.last().1["out_trade_no"], "T2024000001");

    let q = c.order_query("NOTPAY-1").await.expect("query");
    assert_eq!(q.trade_state, TradeState::NotPay);
    assert_eq!(q.total_fee, None);

    let e = c.order_query("WRONGECHO-1").await.expect_err("echo");
    assert!(matches!(e, PayError::Mismatch("out_trade_no")));

    assert_eq!(TradeState::parse("CLOSED"), TradeState::Closed);
    assert_eq!(TradeState::parse("REVOKED"), TradeState::Revoked);
    assert_eq!(TradeState::parse("USERPAYING"), TradeState::UserPaying);
    assert_eq!(TradeState::parse("PAYERROR"), TradeState::PayError);
    assert_eq!(TradeState::parse("REFUND"), TradeState::Refund);
    assert_eq!(TradeState::parse("NEW"), TradeState::Other("NEW".into()));

    c.close_order("T2024000001").await.expect("closed");
    assert_eq!(fake.last().0, "/pay/closeorder");
    c.close_order("CLOSED-1")
        .await
        .expect("already closed is fine");
    let e = c.close_order("PAID-1").await.expect_err("paid");
    assert!(matches!(e, PayError::OrderPaid));

    server.stop(false).await;
}

#[actix_web::test]
async fn refund_and_refund_query() {
    let (base, fake, server) = start().await;
    let (c, metrics) = client(&base, SignType::Md5);
    assert!(c.refunds_available());

    let req = RefundRequest {
        out_trade_no: "T2024000001".into(),
        out_refund_no: "RF2024000001".into(),
        total_fee: 300,
        refund_fee: 100,
        notify_url: "https://example.com/api/v1/pay/refund-notify".into(),
        reason: Some("customer cancelled".into()),
    };
    let accepted = c.refund(&req).await.expect("refund accepted");
    assert_eq!(accepted.refund_id, "50000408942018111907145868882");
    let (path, sent) = fake.last();
    assert_eq!(path, "/secapi/pay/refund");
    assert_eq!(sent["out_refund_no"], "RF2024000001");
    assert_eq!(sent["refund_fee"], "100");
    assert_eq!(sent["total_fee"], "300");
    assert_eq!(sent["refund_desc"], "customer cancelled");
    assert_eq!(
        sent["notify_url"],
        "https://example.com/api/v1/pay/refund-notify"
    );

    let mut poor = req.clone();
    poor.out_refund_no = "POOR-1".into();
    assert!(matches!(c.refund(&poor).await, Err(PayError::NotEnough)));

    let mut too_much = req.clone();
    too_much.refund_fee = 301;
    assert!(matches!(
        c.refund(&too_much).await,
        Err(PayError::InvalidRequest { .. })
    ));

    let q = c.refund_query("RF2024000001").await.expect("query");
    assert_eq!(q.status, RefundStatus::Processing);
    assert_eq!(q.refund_fee, Some(100));
    assert_eq!(q.refund_id.as_deref(), Some("R1"));
    let q = c.refund_query("DONE-1").await.expect("query");
    assert_eq!(q.status, RefundStatus::Success);
    let e = c.refund_query("NOREFUND-1").await.expect_err("none");
    assert!(matches!(e, PayError::RefundNotExist));

    assert_eq!(RefundStatus::parse("CHANGE"), RefundStatus::Change);
    assert_eq!(RefundStatus::parse("REFUNDCLOSE"), RefundStatus::Closed);

    let text = metrics.render();
    assert!(
        text.contains("campus_wechat_calls_total{api=\"pay_refund\"} 2"),
        "{text}"
    );

    // Without a merchant certificate: a clear error, and WeChat is never asked.
    let no_cert = PayClient::new(
        config(&base, SignType::Md5, ClientIdentity::None),
        Metrics::new(),
    )
    .expect("client");
    assert!(!no_cert.refunds_available());
    let before = fake.count();
    let e = no_cert.refund(&req).await.expect_err("no certificate");
    assert!(matches!(e, PayError::NoClientCertificate(_)), "{e:?}");
    assert_eq!(fake.count(), before);
    // Everything else still works.
    no_cert.order_query("T2024000001").await.expect("query");

    server.stop(false).await;
}

/// The stand-in over HTTPS, demanding a client certificate issued by (here: equal to)
/// the test merchant certificate.
async fn start_mutual_tls() -> (String, web::Data<Fake>, ServerHandle) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};

    fn pem_certs(name: &str) -> Vec<CertificateDer<'static>> {
        CertificateDer::pem_file_iter(testdata(name))
            .expect("read cert")
            .collect::<Result<_, _>>()
            .expect("certs")
    }
    let key = PrivateKeyDer::from_pem_file(testdata("test_server_key.key")).expect("a key");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for c in pem_certs("test_merchant_cert.crt") {
        roots.add(c).expect("client root");
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots),
        provider.clone(),
    )
    .build()
    .expect("verifier");
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_client_cert_verifier(verifier)
        .with_single_cert(pem_certs("test_server_cert.crt"), key)
        .expect("server config");

    let fake = web::Data::new(Fake::default());
    let data = fake.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(handle))
    })
    .workers(1)
    .disable_signals()
    .bind_rustls_0_23(("127.0.0.1", 0), tls)
    .expect("bind");
    let addr = *server.addrs().first().expect("bound address");
    let server = server.run();
    let handle = server.handle();
    actix_web::rt::spawn(server);
    (format!("https://{addr}"), fake, handle)
}

#[actix_web::test]
async fn refund_presents_the_merchant_certificate() {
    let (base, fake, server) = start_mutual_tls().await;
    let req = RefundRequest {
        out_trade_no: "T2024000001".into(),
        out_refund_no: "RF2024000001".into(),
        total_fee: 300,
        refund_fee: 300,
        notify_url: "https://example.com/api/v1/pay/refund-notify".into(),
        reason: None,
    };
    for identity in [
        pem_identity(),
        ClientIdentity::P12 {
            path: testdata("test_merchant_legacy.pfx"),
            password: TEST_MCH_ID.into(),
        },
    ] {
        let mut cfg = config(&base, SignType::HmacSha256, identity);
        cfg.extra_root = Some(testdata("test_server_cert.crt"));
        let c = PayClient::new(cfg, Metrics::new()).expect("client");
        let accepted = c.refund(&req).await.expect("refund over mutual TLS");
        assert_eq!(accepted.refund_id, "50000408942018111907145868882");
        assert_eq!(fake.last().0, "/secapi/pay/refund");
        assert!(!fake.last().1.contains_key("refund_desc"));

        // The plain client has no certificate: the server refuses the handshake.
        let e = c
            .order_query("T2024000001")
            .await
            .expect_err("no client cert");
        assert!(matches!(e, PayError::Transport(_)), "{e:?}");
        let mut chain = String::new();
        let mut src = std::error::Error::source(&e);
        while let Some(s) = src {
            chain.push_str(&format!(" / {s}"));
            src = s.source();
        }
        assert!(chain.contains("CertificateRequired"), "{chain}");
    }
    server.stop(false).await;
}

#[test]
fn refund_desc_is_cut_on_a_character_boundary_to_80_bytes() {
    let reason = "顾客取消".repeat(10); // 40 characters, 120 bytes
    let cut = cut_to_bytes(&reason, REFUND_DESC_MAX_BYTES);
    assert_eq!(cut.len(), 78, "26 three-byte characters");
    assert!(reason.starts_with(cut));
    assert_eq!(cut_to_bytes("short", REFUND_DESC_MAX_BYTES), "short");
    let ascii = "x".repeat(200);
    assert_eq!(cut_to_bytes(&ascii, REFUND_DESC_MAX_BYTES).len(), 80);
}
