//! WeChat's refusals the simulator must make: subscribe-message parameter rules and
//! acceptances, the client-side checks of `wx.requestPayment`, closeorder's 5 minutes,
//! unifiedorder's openid / IP / expiry checks, refund limits, jscode2session refusals.
//! Each test shows the refusal and the accepted case.

mod sim_support;

use std::time::Duration;

use serde_json::{Value, json};
use sim_support::{
    client, create_order, f, jsapi_params, login_openid, pay_call, sign_jsapi, start_sim,
    unique_no, wait_until,
};
use test_demo::sim::sign::SignType;
use test_demo::sim::{LoginFault, PaymentRefused, SimHandle};

const NOTIFY: &str = "http://127.0.0.1:9/api/v1/pay/notify";
const TEMPLATE: &str = "tmpl-order-status";

async fn access_token(sim: &SimHandle, c: &reqwest::Client) -> String {
    let cfg = sim.config();
    let v: Value = c
        .post(format!("{}/cgi-bin/stable_token", sim.base_url()))
        .json(&json!({"grant_type": "client_credential", "appid": cfg.appid, "secret": cfg.secret}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

async fn send_subscribe(
    sim: &SimHandle,
    c: &reqwest::Client,
    token: &str,
    touser: &str,
    template: &str,
    data: Value,
) -> Value {
    c.post(format!(
        "{}/cgi-bin/message/subscribe/send?access_token={token}",
        sim.base_url()
    ))
    .json(&json!({"touser": touser, "template_id": template, "page": "pages/order/detail?id=1", "data": data}))
    .send()
    .await
    .expect("send")
    .json()
    .await
    .expect("json")
}

fn errmsg(v: &Value) -> &str {
    v["errmsg"].as_str().unwrap_or("")
}

#[actix_web::test]
async fn subscribe_values_follow_wechat_parameter_rules() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let token = access_token(&sim, &c).await;
    let good = json!({
        "character_string1": {"value": "CE20261130000123"},
        "thing2": {"value": "快递代取 Station A"},
        "phrase3": {"value": "已支付"},
        "amount4": {"value": "¥3.50"},
        "time5": {"value": "2026-11-30 15:01"},
        "date6": {"value": "2026年11月30日"},
        "number7": {"value": "2"},
        "name8": {"value": "张三"},
        "phone_number9": {"value": "+86-0766-66888866"},
        "car_number10": {"value": "粤A8Z888挂"},
        "letter11": {"value": "OK"},
        "symbol12": {"value": "#"},
    });
    // The product's values today: each is refused with 47003 naming its key.
    let refused = [
        ("phrase2", json!("已支付 Paid")),
        ("thing2", json!("请确认收货 Please confirm delivery")),
        ("phrase3", json!("配送中配送中")),
        ("number1", json!("3,5")),
        ("letter1", json!("abc1")),
        ("symbol1", json!("######")),
        ("character_string1", json!("订单123")),
        ("time1", json!("3pm")),
        ("date1", json!("2026-02-30")),
        ("amount1", json!("3.50 yuan")),
        ("amount1", json!("¥12345678901")),
        ("name1", json!("张三李四王五赵六钱七孙")),
        ("phone_number1", json!("+86 0766 6688 8866 1")),
        ("car_number1", json!("粤A8Z888挂XY")),
        ("thing1", json!(3)),
        ("weird1", json!("x")),
    ];
    for (key, value) in refused {
        // An acceptance is there, so only the value can be the reason.
        sim.accept_subscribe("oSub", &[TEMPLATE]);
        let v = send_subscribe(
            &sim,
            &c,
            &token,
            "oSub",
            TEMPLATE,
            json!({ key: {"value": value} }),
        )
        .await;
        assert_eq!(v["errcode"], 47003, "{key} = {value}: {v}");
        assert!(
            errmsg(&v).starts_with(&format!("argument invalid! data.{key}.value invalid")),
            "{v}"
        );
        assert_eq!(
            sim.subscribe_credits("oSub", TEMPLATE),
            1,
            "a refused send spends nothing"
        );
        // Spend it on a good message so the next case starts from one.
        let v = send_subscribe(&sim, &c, &token, "oSub", TEMPLATE, good.clone()).await;
        assert_eq!(v["errcode"], 0, "{v}");
    }
    // An empty value has its own message.
    sim.accept_subscribe("oSub", &[TEMPLATE]);
    let v = send_subscribe(
        &sim,
        &c,
        &token,
        "oSub",
        TEMPLATE,
        json!({"thing1": {"value": ""}}),
    )
    .await;
    assert_eq!(v["errcode"], 47003);
    assert!(
        errmsg(&v).starts_with("argument invalid! data.thing1.value is empty"),
        "{v}"
    );
    // thing: 20 characters pass, 21 do not (characters, not bytes).
    let v = send_subscribe(
        &sim,
        &c,
        &token,
        "oSub",
        TEMPLATE,
        json!({"thing1": {"value": "一".repeat(21)}}),
    )
    .await;
    assert_eq!(v["errcode"], 47003);
    let v = send_subscribe(
        &sim,
        &c,
        &token,
        "oSub",
        TEMPLATE,
        json!({"thing1": {"value": "一".repeat(20)}}),
    )
    .await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert_eq!(sim.subscribe_messages().len(), 17);
    sim.stop();
}

#[actix_web::test]
async fn subscribe_send_spends_one_acceptance_per_send() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let token = access_token(&sim, &c).await;
    let data = json!({"thing1": {"value": "订单已送达"}, "phrase2": {"value": "已送达"}});

    // No acceptance: 43101, as WeChat answers when the user has not allowed the template.
    let v = send_subscribe(&sim, &c, &token, "oA", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 43101, "{v}");

    // One tap on "allow": one send, then 43101 again.
    sim.accept_subscribe("oA", &[TEMPLATE, "tmpl-reminder"]);
    assert_eq!(sim.subscribe_credits("oA", TEMPLATE), 1);
    let v = send_subscribe(&sim, &c, &token, "oA", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 0, "{v}");
    assert!(v["msgid"].as_u64().is_some());
    let v = send_subscribe(&sim, &c, &token, "oA", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 43101, "{v}");
    // Per template and per user: the reminder acceptance is still there; oB has none.
    let v = send_subscribe(&sim, &c, &token, "oB", "tmpl-reminder", data.clone()).await;
    assert_eq!(v["errcode"], 43101, "{v}");
    let v = send_subscribe(&sim, &c, &token, "oA", "tmpl-reminder", data.clone()).await;
    assert_eq!(v["errcode"], 0, "{v}");

    // Two taps, two sends; over HTTP for out-of-process use.
    for _ in 0..2 {
        let r = c
            .post(format!("{}/sim/subscribe/accept", sim.base_url()))
            .json(&json!({"openid": "oA", "template_ids": [TEMPLATE]}))
            .send()
            .await
            .expect("accept");
        assert_eq!(r.status(), 200);
    }
    for want in [0, 0, 43101] {
        let v = send_subscribe(&sim, &c, &token, "oA", TEMPLATE, data.clone()).await;
        assert_eq!(v["errcode"], want, "{v}");
    }

    // A user who refused: 43101 whatever was accepted.
    sim.accept_subscribe("oC", &[TEMPLATE]);
    sim.refuse_subscribe_for("oC");
    let v = send_subscribe(&sim, &c, &token, "oC", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 43101, "{v}");

    // The non-WeChat switch for products that do not track acceptances yet.
    sim.set_subscribe_auto_accept(true);
    let v = send_subscribe(&sim, &c, &token, "oD", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 0, "{v}");
    sim.set_subscribe_auto_accept(false);
    let v = send_subscribe(&sim, &c, &token, "oD", TEMPLATE, data.clone()).await;
    assert_eq!(v["errcode"], 43101, "{v}");
    assert_eq!(sim.subscribe_messages().len(), 5);
    sim.stop();
}

#[actix_web::test]
async fn request_payment_checks_what_wx_request_payment_checks() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let cfg = sim.config().clone();
    let no = unique_no("J");
    let prepay = create_order(&sim, &c, &no, "300", NOTIFY, SignType::HmacSha256).await;
    let good = jsapi_params(&sim, &prepay, SignType::HmacSha256);
    let resign = |mut p: test_demo::sim::JsapiParams, st: SignType| {
        p.pay_sign = sign_jsapi(&p, &cfg.pay_key, st);
        p
    };

    // A paySign that does not verify (a field changed after signing, or the unifiedorder sign
    // reused).
    let mut p = good.clone();
    p.nonce_str = "other".into();
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::BadSign));
    let mut p = good.clone();
    p.pay_sign = p.pay_sign.to_lowercase();
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::BadSign));
    // Signed with another key.
    let mut p = good.clone();
    p.pay_sign = sign_jsapi(&p, &"k".repeat(32), SignType::HmacSha256);
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::BadSign));
    // MD5, correctly signed, for an order unifiedorder placed with HMAC-SHA256.
    let mut p = good.clone();
    p.sign_type = "MD5".into();
    let p = resign(p, SignType::Md5);
    assert_eq!(
        sim.request_payment(&p),
        Err(PaymentRefused::SignTypeMismatch)
    );
    // Milliseconds, an old time, a non-decimal time (each correctly signed).
    for ts in [
        (chrono::Utc::now().timestamp_millis()).to_string(),
        (chrono::Utc::now().timestamp() - 3 * 3600).to_string(),
        (chrono::Utc::now().timestamp() + 3600).to_string(),
        "2026-11-30T08:00:00Z".to_string(),
    ] {
        let mut p = good.clone();
        p.time_stamp = ts.clone();
        let p = resign(p, SignType::HmacSha256);
        assert_eq!(
            sim.request_payment(&p),
            Err(PaymentRefused::BadTimestamp),
            "{ts}"
        );
    }
    // Another appid; a package that is not prepay_id=...; an unknown prepay id.
    let mut p = good.clone();
    p.app_id = "wx0000000000000000".into();
    let p = resign(p, SignType::HmacSha256);
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::WrongAppId));
    let mut p = good.clone();
    p.package = prepay.clone();
    let p = resign(p, SignType::HmacSha256);
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::BadPackage));
    let p = jsapi_params(&sim, "wx20261130000000unknown", SignType::HmacSha256);
    assert_eq!(
        sim.request_payment(&p),
        Err(PaymentRefused::UnknownPrepayId)
    );
    let mut p = good.clone();
    p.pay_sign.clear();
    assert_eq!(
        sim.request_payment(&p),
        Err(PaymentRefused::MissingParam("paySign"))
    );
    assert_eq!(
        sim.order(&no).map(|o| o.trade_state).as_deref(),
        Some("NOTPAY"),
        "nothing paid so far"
    );

    // The accepted case, over HTTP with the JSON the server would hand the mini-program.
    let r = c
        .post(format!("{}/sim/pay", sim.base_url()))
        .json(&json!({"prepay_id": prepay}))
        .send()
        .await
        .expect("pay");
    assert_eq!(
        r.status(),
        400,
        "a bare prepay id is not what wx.requestPayment gets"
    );
    let r = c
        .post(format!("{}/sim/pay", sim.base_url()))
        .json(&serde_json::to_value(&good).expect("json"))
        .send()
        .await
        .expect("pay");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(
        sim.order(&no).map(|o| o.trade_state).as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(sim.request_payment(&good), Err(PaymentRefused::AlreadyPaid));

    // A prepay id past its 2 hours.
    let no2 = unique_no("J");
    let prepay2 = create_order(&sim, &c, &no2, "300", NOTIFY, SignType::Md5).await;
    let p = jsapi_params(&sim, &prepay2, SignType::Md5);
    assert!(sim.expire_prepay_id(&no2));
    assert_eq!(sim.request_payment(&p), Err(PaymentRefused::PrepayExpired));

    // The unchecked entry is still there, under a name that says what it skips.
    let no3 = unique_no("J");
    create_order(&sim, &c, &no3, "300", NOTIFY, SignType::Md5).await;
    sim.pay_skipping_client_checks(&no3).expect("pays");
    let r = c
        .post(format!("{}/sim/pay-unchecked", sim.base_url()))
        .json(&json!({"out_trade_no": no3}))
        .send()
        .await
        .expect("pay");
    assert_eq!(r.status(), 409, "already paid");
    sim.stop();
}

#[actix_web::test]
async fn closeorder_is_refused_within_five_minutes_of_unifiedorder() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    assert_eq!(sim.config().closeorder_min_age, Duration::from_secs(300));
    let no = unique_no("C");
    let prepay = create_order(&sim, &c, &no, "300", NOTIFY, SignType::Md5).await;
    let close = |no: String| {
        let (sim, c) = (sim.clone(), c.clone());
        async move {
            pay_call(
                &sim,
                &c,
                "/pay/closeorder",
                &[("out_trade_no", &no)],
                SignType::Md5,
            )
            .await
        }
    };
    // At once: refused, and the order is still NOTPAY and payable.
    let m = close(no.clone()).await;
    assert_eq!(f(&m, "return_code"), "SUCCESS");
    assert_eq!(f(&m, "result_code"), "FAIL", "{m:?}");
    assert_eq!(f(&m, "err_code"), "SYSTEMERROR");
    assert!(f(&m, "err_code_des").contains("5分钟"), "{m:?}");
    assert_eq!(sim.order(&no).expect("order").trade_state, "NOTPAY");

    // A test shortens the period; after it the close goes through, and only once.
    sim.set_closeorder_min_age(Duration::from_millis(300));
    let no2 = unique_no("C");
    create_order(&sim, &c, &no2, "300", NOTIFY, SignType::Md5).await;
    let m = close(no2.clone()).await;
    assert_eq!(f(&m, "err_code"), "SYSTEMERROR");
    actix_web::rt::time::sleep(Duration::from_millis(350)).await;
    let m = close(no2.clone()).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    let m = close(no2.clone()).await;
    assert_eq!(f(&m, "err_code"), "ORDERCLOSED");
    // A paid order: ORDERPAID, at any age.
    sim_support::pay(&sim, &prepay).expect("pays");
    sim.set_closeorder_min_age(Duration::from_secs(300));
    let m = close(no.clone()).await;
    assert_eq!(f(&m, "err_code"), "ORDERPAID");
    // The HTTP control does the same.
    let v: Value = c
        .post(format!("{}/sim/rules", sim.base_url()))
        .json(&json!({"closeorder_min_age_secs": 0}))
        .send()
        .await
        .expect("rules")
        .json()
        .await
        .expect("json");
    assert_eq!(v["closeorder_min_age_secs"], 0.0);
    let no3 = unique_no("C");
    create_order(&sim, &c, &no3, "300", NOTIFY, SignType::Md5).await;
    assert_eq!(f(&close(no3).await, "result_code"), "SUCCESS");
    sim.stop();
}

#[actix_web::test]
async fn unifiedorder_checks_openid_ip_expiry_and_formats() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let bj = chrono::FixedOffset::east_opt(8 * 3600).expect("offset");
    let ahead = |secs: i64| {
        (chrono::Utc::now().with_timezone(&bj) + chrono::Duration::seconds(secs))
            .format("%Y%m%d%H%M%S")
            .to_string()
    };
    let order = |fields: Vec<(&'static str, String)>| {
        let (sim, c) = (sim.clone(), c.clone());
        async move {
            let mut all: Vec<(&str, String)> = vec![
                ("body", "校园跑腿-快递代取".to_string()),
                ("out_trade_no", unique_no("U")),
                ("total_fee", "300".into()),
                ("spbill_create_ip", "127.0.0.1".into()),
                ("notify_url", NOTIFY.into()),
                ("trade_type", "JSAPI".into()),
                ("openid", "oNeverLoggedIn".into()),
            ];
            for (k, v) in fields {
                all.retain(|(x, _)| *x != k);
                if !v.is_empty() {
                    all.push((k, v));
                }
            }
            let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
            pay_call(&sim, &c, "/pay/unifiedorder", &refs, SignType::Md5).await
        }
    };
    // An openid jscode2session never gave out for this appid.
    let m = order(vec![]).await;
    assert_eq!(f(&m, "result_code"), "FAIL", "{m:?}");
    assert_eq!(f(&m, "err_code"), "PARAM_ERROR");
    assert_eq!(f(&m, "err_code_des"), "appid和openid不匹配");
    login_openid(&sim, &c, "oNeverLoggedIn").await;
    let m = order(vec![]).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");

    let refused: Vec<(Vec<(&'static str, String)>, &str)> = vec![
        (
            vec![("spbill_create_ip", "localhost".into())],
            "spbill_create_ip",
        ),
        (
            vec![("spbill_create_ip", "256.1.1.1".into())],
            "spbill_create_ip",
        ),
        (
            vec![("spbill_create_ip", "1.2.3".into())],
            "spbill_create_ip",
        ),
        (vec![("openid", String::new())], "openid"),
        (vec![("time_expire", ahead(60))], "time_expire"),
        (vec![("time_expire", ahead(290))], "time_expire"),
        (vec![("body", "x".repeat(129))], "body"),
        (vec![("body", "跑".repeat(43))], "body"),
        (vec![("out_trade_no", "12345".into())], "out_trade_no"),
        (vec![("out_trade_no", "a".repeat(33))], "out_trade_no"),
        (vec![("out_trade_no", "订单123456".into())], "out_trade_no"),
        (vec![("total_fee", "-1".into())], "total_fee"),
        (vec![("total_fee", "0".into())], "total_fee"),
        (vec![("total_fee", "3.00".into())], "total_fee"),
        (
            vec![(
                "notify_url",
                format!("https://example.com/{}", "n".repeat(240)),
            )],
            "notify_url",
        ),
        (
            vec![("notify_url", "https://example.com/notify?id=1".into())],
            "notify_url",
        ),
        (
            vec![("notify_url", "ftp://example.com/notify".into())],
            "notify_url",
        ),
    ];
    for (fields, what) in refused {
        let m = order(fields.clone()).await;
        assert_eq!(f(&m, "return_code"), "FAIL", "{fields:?} -> {m:?}");
        assert!(f(&m, "return_msg").contains(what), "{fields:?} -> {m:?}");
    }
    let accepted: Vec<Vec<(&'static str, String)>> = vec![
        vec![("spbill_create_ip", "::1".into())],
        vec![("spbill_create_ip", "2408:8000::1".into())],
        vec![("time_expire", ahead(330))],
        vec![("body", "x".repeat(128))],
        vec![("out_trade_no", format!("{}_-|*", unique_no("A")))],
        vec![(
            "notify_url",
            format!("https://example.com/{}", "n".repeat(200)),
        )],
    ];
    for fields in accepted {
        let m = order(fields.clone()).await;
        assert_eq!(f(&m, "result_code"), "SUCCESS", "{fields:?} -> {m:?}");
    }
    sim.stop();
}

#[actix_web::test]
async fn refunds_limit_refund_desc_and_frequency() {
    let sim = start_sim().await;
    let plain = client(&sim, false);
    let mtls = client(&sim, true);
    let no = unique_no("R");
    let prepay = create_order(&sim, &plain, &no, "1000", NOTIFY, SignType::Md5).await;
    sim_support::pay(&sim, &prepay).expect("pays");
    let refund = |rno: &'static str, desc: String| {
        let (sim, c, no) = (sim.clone(), mtls.clone(), no.clone());
        async move {
            let mut fields = vec![
                ("out_trade_no", no.as_str()),
                ("out_refund_no", rno),
                ("total_fee", "1000"),
                ("refund_fee", "100"),
            ];
            if !desc.is_empty() {
                fields.push(("refund_desc", desc.as_str()));
            }
            pay_call(&sim, &c, "/secapi/pay/refund", &fields, SignType::Md5).await
        }
    };
    // 27 Chinese characters are 81 bytes: refused; 80 bytes pass.
    let m = refund("RD1", "退".repeat(27)).await;
    assert_eq!(f(&m, "result_code"), "FAIL", "{m:?}");
    assert_eq!(f(&m, "err_code"), "PARAM_ERROR");
    assert!(sim.order(&no).expect("order").refunds.is_empty());
    let m = refund("RD1", format!("{}ab", "退".repeat(26))).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");

    // A second refund of the order within the minute: FREQUENCY_LIMITED.
    let m = refund("RD2", String::new()).await;
    assert_eq!(f(&m, "result_code"), "FAIL", "{m:?}");
    assert_eq!(f(&m, "err_code"), "FREQUENCY_LIMITED");
    assert_eq!(sim.order(&no).expect("order").refunds.len(), 1);
    // A retry of the first refund (same out_refund_no) is not a new refund.
    let m = refund("RD1", String::new()).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    // After the gap (shortened by the test), the second refund goes through.
    sim.set_refund_min_gap(Duration::from_millis(300));
    actix_web::rt::time::sleep(Duration::from_millis(350)).await;
    let m = refund("RD2", String::new()).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    let m = refund("RD3", String::new()).await;
    assert_eq!(f(&m, "err_code"), "FREQUENCY_LIMITED");
    assert!(
        wait_until(5, || sim.order(&no).is_some_and(
            |o| o.refunds.len() == 2 && o.refunds.iter().all(|r| r.status == "SUCCESS")
        ))
        .await
    );
    sim.stop();
}

async fn jscode2session(sim: &SimHandle, c: &reqwest::Client, code: &str) -> Value {
    let cfg = sim.config();
    c.get(format!("{}/sns/jscode2session", sim.base_url()))
        .query(&[
            ("appid", cfg.appid.as_str()),
            ("secret", cfg.secret.as_str()),
            ("js_code", code),
            ("grant_type", "authorization_code"),
        ])
        .send()
        .await
        .expect("jscode2session")
        .json()
        .await
        .expect("json")
}

#[actix_web::test]
async fn jscode2session_answers_high_risk_and_busy_on_request() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    // A high-risk user: 40226, every time.
    let code = sim.issue_code_with_fault("oRisky", LoginFault::HighRisk);
    for _ in 0..2 {
        let v = jscode2session(&sim, &c, &code).await;
        assert_eq!(v["errcode"], 40226, "{v}");
        assert!(v.get("openid").is_none());
    }
    // Busy: -1 once, then the same code works, once.
    let code = sim.issue_code_with_fault("oBusy", LoginFault::Busy);
    let v = jscode2session(&sim, &c, &code).await;
    assert_eq!(v["errcode"], -1, "{v}");
    let v = jscode2session(&sim, &c, &code).await;
    assert_eq!(v["openid"], "oBusy", "{v}");
    let v = jscode2session(&sim, &c, &code).await;
    assert_eq!(v["errcode"], 40163, "{v}");
    // Over HTTP.
    let v: Value = c
        .post(format!("{}/sim/code", sim.base_url()))
        .json(&json!({"openid": "oRisky2", "fault": "high_risk"}))
        .send()
        .await
        .expect("code")
        .json()
        .await
        .expect("json");
    let code = v["code"].as_str().expect("code");
    assert_eq!(jscode2session(&sim, &c, code).await["errcode"], 40226);
    sim.stop();
}
