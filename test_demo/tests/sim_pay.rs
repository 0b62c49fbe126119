//! The simulator's Pay v2 API: signatures, orders, mutual TLS refunds.

mod sim_support;

use sim_support::{client, create_order, f, pay_call, post_xml, start_sim, unique_no, wait_until};
use test_demo::sim::sign::SignType;
use test_demo::sim::xml;

const NOTIFY: &str = "http://127.0.0.1:9/api/v1/pay/notify";

#[actix_web::test]
async fn signature_and_envelope_checks() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let url = format!("{}/pay/orderquery", sim.base_url());

    // Wrong signature.
    let mut body = sim_support::signed_xml(&sim, &[("out_trade_no", "abcdef123")], SignType::Md5);
    body = body.replace("<nonce_str>", "<device_info>x</device_info><nonce_str>");
    let (status, m) = post_xml(&c, &url, body).await;
    assert_eq!(status, 200);
    assert_eq!(f(&m, "return_code"), "FAIL");
    assert_eq!(f(&m, "return_msg"), "签名错误");
    assert!(!m.contains_key("sign"));

    // Signed with MD5 but claiming HMAC.
    let mut body = sim_support::signed_xml(&sim, &[("out_trade_no", "abcdef123")], SignType::Md5);
    body = body.replace("<appid>", "<sign_type>HMAC-SHA256</sign_type><appid>");
    let (_, m) = post_xml(&c, &url, body).await;
    assert_eq!(f(&m, "return_msg"), "签名错误");

    // Not XML, DOCTYPE.
    let (_, m) = post_xml(&c, &url, "{\"json\":1}".into()).await;
    assert_eq!(f(&m, "return_code"), "FAIL");
    let (s, _) = {
        let r = c
            .post(&url)
            .body("<!DOCTYPE x [<!ENTITY a \"b\">]><xml><a>&a;</a></xml>")
            .send()
            .await
            .expect("request");
        (r.status().as_u16(), r.text().await.expect("text"))
    };
    assert_eq!(s, 200);

    // Wrong appid (correctly signed), wrong mch_id, long nonce.
    let m = pay_call(
        &sim,
        &c,
        "/pay/orderquery",
        &[
            ("out_trade_no", "abcdef123"),
            ("appid", "wx0000000000000000"),
        ],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "return_code"), "FAIL");
    let m = pay_call(
        &sim,
        &c,
        "/pay/orderquery",
        &[("out_trade_no", "abcdef123"), ("mch_id", "999")],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "return_code"), "FAIL");
    let long_nonce = "n".repeat(33);
    let m = pay_call(
        &sim,
        &c,
        "/pay/orderquery",
        &[("out_trade_no", "abcdef123"), ("nonce_str", &long_nonce)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "return_code"), "FAIL");

    // A good query for an unknown order: signed result FAIL ORDERNOTEXIST, in both sign types.
    for st in [SignType::Md5, SignType::HmacSha256] {
        let m = pay_call(
            &sim,
            &c,
            "/pay/orderquery",
            &[("out_trade_no", "abcdef123")],
            st,
        )
        .await;
        assert_eq!(f(&m, "return_code"), "SUCCESS");
        assert_eq!(f(&m, "result_code"), "FAIL");
        assert_eq!(f(&m, "err_code"), "ORDERNOTEXIST");
        assert_eq!(
            f(&m, "sign").len(),
            if st == SignType::Md5 { 32 } else { 64 }
        );
    }
    sim.stop();
}

#[actix_web::test]
async fn unifiedorder_orderquery_closeorder() {
    let sim = start_sim().await;
    // This test closes orders at once; WeChat's 5 minutes are tested in sim_strict.rs.
    sim.set_closeorder_min_age(std::time::Duration::ZERO);
    let c = client(&sim, false);
    for st in [SignType::Md5, SignType::HmacSha256] {
        let no = unique_no("T");
        let p1 = create_order(&sim, &c, &no, "300", NOTIFY, st).await;
        assert!(p1.starts_with("wx"));
        // Same parameters: same prepay id.
        let p2 = create_order(&sim, &c, &no, "300", NOTIFY, st).await;
        assert_eq!(p1, p2);
        // Different amount: INVALID_REQUEST.
        let m = pay_call(
            &sim,
            &c,
            "/pay/unifiedorder",
            &[
                ("body", "校园跑腿-测试"),
                ("out_trade_no", &no),
                ("total_fee", "301"),
                ("spbill_create_ip", "127.0.0.1"),
                ("notify_url", NOTIFY),
                ("trade_type", "JSAPI"),
                ("openid", "oUser_test_1"),
            ],
            st,
        )
        .await;
        assert_eq!(f(&m, "result_code"), "FAIL");
        assert_eq!(f(&m, "err_code"), "INVALID_REQUEST");

        let m = pay_call(&sim, &c, "/pay/orderquery", &[("out_trade_no", &no)], st).await;
        assert_eq!(f(&m, "result_code"), "SUCCESS");
        assert_eq!(f(&m, "trade_state"), "NOTPAY");
        assert_eq!(f(&m, "total_fee"), "300");

        let m = pay_call(&sim, &c, "/pay/closeorder", &[("out_trade_no", &no)], st).await;
        assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
        let m = pay_call(&sim, &c, "/pay/closeorder", &[("out_trade_no", &no)], st).await;
        assert_eq!(f(&m, "err_code"), "ORDERCLOSED");
        let m = pay_call(&sim, &c, "/pay/orderquery", &[("out_trade_no", &no)], st).await;
        assert_eq!(f(&m, "trade_state"), "CLOSED");
        assert!(
            sim_support::pay(&sim, &p1).is_err(),
            "a closed order cannot be paid"
        );
        let m = pay_call(
            &sim,
            &c,
            "/pay/unifiedorder",
            &[
                ("body", "校园跑腿-测试"),
                ("out_trade_no", &no),
                ("total_fee", "300"),
                ("spbill_create_ip", "127.0.0.1"),
                ("notify_url", NOTIFY),
                ("trade_type", "JSAPI"),
                ("openid", "oUser_test_1"),
            ],
            st,
        )
        .await;
        assert_eq!(f(&m, "err_code"), "ORDERCLOSED");
    }

    // Paid orders.
    let no = unique_no("P");
    let prepay = create_order(&sim, &c, &no, "500", NOTIFY, SignType::Md5).await;
    sim_support::pay(&sim, &prepay).expect("pays");
    assert!(sim_support::pay(&sim, &no).is_err(), "paying twice fails");
    let m = pay_call(
        &sim,
        &c,
        "/pay/orderquery",
        &[("out_trade_no", &no)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "trade_state"), "SUCCESS");
    assert_eq!(f(&m, "total_fee"), "500");
    assert_eq!(f(&m, "cash_fee"), "500");
    assert_eq!(f(&m, "openid"), "oUser_test_1");
    assert_eq!(f(&m, "time_end").len(), 14);
    let txn = f(&m, "transaction_id").to_string();
    assert_eq!(txn.len(), 28);
    let m = pay_call(
        &sim,
        &c,
        "/pay/orderquery",
        &[("transaction_id", &txn)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "out_trade_no"), no);
    let m = pay_call(
        &sim,
        &c,
        "/pay/closeorder",
        &[("out_trade_no", &no)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "err_code"), "ORDERPAID");
    let m = pay_call(
        &sim,
        &c,
        "/pay/unifiedorder",
        &[
            ("body", "校园跑腿-测试"),
            ("out_trade_no", &no),
            ("total_fee", "500"),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", NOTIFY),
            ("trade_type", "JSAPI"),
            ("openid", "oUser_test_1"),
        ],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "err_code"), "ORDERPAID");
    let snap = sim.order(&no).expect("order");
    assert_eq!(snap.trade_state, "SUCCESS");
    assert_eq!(snap.transaction_id.as_deref(), Some(txn.as_str()));
    assert_eq!(sim.calls("unifiedorder"), 10);
    sim.stop();
}

#[actix_web::test]
async fn unifiedorder_validation() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    fn base(no: &str) -> Vec<(&'static str, &str)> {
        vec![
            ("body", "b"),
            ("out_trade_no", no),
            ("total_fee", "1"),
            ("spbill_create_ip", "127.0.0.1"),
            ("notify_url", NOTIFY),
            ("trade_type", "JSAPI"),
            ("openid", "o1"),
        ]
    }
    sim_support::login_openid(&sim, &c, "o1").await;
    let no = unique_no("V");
    let cases: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (
            base(&no)
                .into_iter()
                .filter(|(k, _)| *k != "openid")
                .collect(),
            "return",
        ),
        (
            base(&no)
                .into_iter()
                .map(|(k, v)| {
                    if k == "total_fee" {
                        (k, "1.00")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            "return",
        ),
        (
            base(&no)
                .into_iter()
                .map(|(k, v)| if k == "total_fee" { (k, "0") } else { (k, v) })
                .collect(),
            "return",
        ),
        (
            base(&no)
                .into_iter()
                .map(|(k, v)| {
                    if k == "notify_url" {
                        (k, "http://127.0.0.1/n?order=1")
                    } else {
                        (k, v)
                    }
                })
                .collect(),
            "return",
        ),
        (base("short"), "return"),
        (base("has space 123"), "return"),
        (
            base(&no)
                .into_iter()
                .filter(|(k, _)| *k != "notify_url")
                .collect(),
            "return",
        ),
    ];
    for (fields, _) in cases {
        let m = pay_call(&sim, &c, "/pay/unifiedorder", &fields, SignType::Md5).await;
        assert_eq!(f(&m, "return_code"), "FAIL", "{fields:?} -> {m:?}");
    }
    // time_expire: Beijing time, at least 5 minutes ahead.
    let bj = chrono::FixedOffset::east_opt(8 * 3600).expect("offset");
    let soon = (chrono::Utc::now().with_timezone(&bj) + chrono::Duration::seconds(270))
        .format("%Y%m%d%H%M%S")
        .to_string();
    let later = (chrono::Utc::now().with_timezone(&bj) + chrono::Duration::minutes(15))
        .format("%Y%m%d%H%M%S")
        .to_string();
    let mut fields = base(&no);
    fields.push(("time_expire", &soon));
    let m = pay_call(&sim, &c, "/pay/unifiedorder", &fields, SignType::Md5).await;
    assert_eq!(f(&m, "return_code"), "FAIL", "{m:?}");
    assert_eq!(
        f(&m, "return_msg"),
        "time_expire时间过短，刷卡至少1分钟，其他5分钟"
    );
    let mut fields = base(&no);
    fields.push(("time_expire", &later));
    let m = pay_call(&sim, &c, "/pay/unifiedorder", &fields, SignType::Md5).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    sim.stop();
}

#[actix_web::test]
async fn refund_requires_client_certificate() {
    let sim = start_sim().await;
    // Two refunds back to back; WeChat's one-minute gap is tested in sim_strict.rs.
    sim.set_refund_min_gap(std::time::Duration::ZERO);
    let plain = client(&sim, false);
    let mtls = client(&sim, true);
    let no = unique_no("R");
    let prepay = create_order(&sim, &plain, &no, "1000", NOTIFY, SignType::HmacSha256).await;

    let refund = |rno: &'static str, fee: &'static str| {
        let no = no.clone();
        move |total: &'static str| {
            vec![
                ("out_trade_no".to_string(), no.clone()),
                ("out_refund_no".to_string(), rno.to_string()),
                ("total_fee".to_string(), total.to_string()),
                ("refund_fee".to_string(), fee.to_string()),
            ]
        }
    };
    let as_refs = |v: &Vec<(String, String)>| -> Vec<(String, String)> { v.clone() };
    let call = |c: reqwest::Client, fields: Vec<(String, String)>| {
        let sim = sim.clone();
        async move {
            let refs: Vec<(&str, &str)> = fields
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            pay_call(&sim, &c, "/secapi/pay/refund", &refs, SignType::HmacSha256).await
        }
    };

    // Without the certificate: refused, whatever the request.
    let m = call(plain.clone(), as_refs(&refund("RF1", "100")("1000"))).await;
    assert_eq!(f(&m, "return_code"), "FAIL");
    assert!(f(&m, "return_msg").contains("证书"), "{m:?}");

    // Not paid yet.
    let m = call(mtls.clone(), refund("RF1", "100")("1000")).await;
    assert_eq!(f(&m, "result_code"), "FAIL", "{m:?}");
    sim_support::pay(&sim, &prepay).expect("pays");

    // Wrong total.
    let m = call(mtls.clone(), refund("RF1", "100")("999")).await;
    assert_eq!(f(&m, "result_code"), "FAIL");

    let m = call(mtls.clone(), refund("RF1", "100")("1000")).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    let refund_id = f(&m, "refund_id").to_string();
    assert!(!refund_id.is_empty());
    assert_eq!(f(&m, "refund_fee"), "100");
    // The same out_refund_no again: the same refund, not a second one.
    let m = call(mtls.clone(), refund("RF1", "100")("1000")).await;
    assert_eq!(f(&m, "refund_id"), refund_id);
    let m = call(mtls.clone(), refund("RF1", "200")("1000")).await;
    assert_eq!(f(&m, "err_code"), "REFUND_FEE_MISMATCH");
    // More than what remains.
    let m = call(mtls.clone(), refund("RF2", "901")("1000")).await;
    assert_eq!(f(&m, "result_code"), "FAIL");
    let m = call(mtls.clone(), refund("RF2", "900")("1000")).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS");
    let snap = sim.order(&no).expect("order");
    assert_eq!(snap.refunds.len(), 2);
    assert_eq!(snap.refunds.iter().map(|r| r.refund_fee).sum::<u64>(), 1000);

    // refundquery: PROCESSING, then SUCCESS after the settle delay; the order turns REFUND.
    let q = pay_call(
        &sim,
        &plain,
        "/pay/refundquery",
        &[("out_trade_no", &no)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&q, "result_code"), "SUCCESS", "{q:?}");
    assert_eq!(f(&q, "refund_count"), "2");
    let settled = wait_until(5, || {
        sim.order(&no)
            .is_some_and(|o| o.refunds.iter().all(|r| r.status == "SUCCESS"))
    })
    .await;
    assert!(settled);
    let q = pay_call(
        &sim,
        &plain,
        "/pay/refundquery",
        &[("out_refund_no", "RF1")],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&q, "refund_count"), "1");
    assert_eq!(f(&q, "out_refund_no_0"), "RF1");
    assert_eq!(f(&q, "refund_fee_0"), "100");
    assert_eq!(f(&q, "refund_status_0"), "SUCCESS");
    assert_eq!(f(&q, "refund_id_0"), refund_id);
    let q = pay_call(
        &sim,
        &plain,
        "/pay/orderquery",
        &[("out_trade_no", &no)],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&q, "trade_state"), "REFUND");
    let q = pay_call(
        &sim,
        &plain,
        "/pay/refundquery",
        &[("out_refund_no", "NOPE")],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&q, "err_code"), "REFUNDNOTEXIST");
    assert_eq!(sim.calls("refund"), 8);
    sim.stop();
}

#[actix_web::test]
async fn key_material_is_usable() {
    let sim = start_sim().await;
    let dir = std::env::temp_dir().join(format!("wechat-sim-{}", unique_no("k")));
    sim.write_files(&dir).expect("writes");
    for name in [
        "ca.pem",
        "apiclient_cert.pem",
        "apiclient_key.pem",
        "apiclient_cert.p12",
    ] {
        assert!(dir.join(name).is_file(), "{name}");
    }
    assert!(
        sim.client_key_pem()
            .starts_with("-----BEGIN PRIVATE KEY-----")
    );
    let p12 = sim.client_p12();
    assert_eq!(p12[0], 0x30);
    // When OpenSSL is around, check that it reads the PKCS#12 with the mch_id password and
    // that the key matches the certificate.
    if std::process::Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        let out = std::process::Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(dir.join("apiclient_cert.p12"))
            .args(["-passin"])
            .arg(format!("pass:{}", sim.config().mch_id))
            .args(["-nodes"])
            .output()
            .expect("openssl runs");
        assert!(
            out.status.success(),
            "openssl pkcs12: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("BEGIN PRIVATE KEY"), "{text}");
        assert!(
            text.contains(&format!("CN = {}", sim.config().mch_id))
                || text.contains(&format!("CN={}", sim.config().mch_id)),
            "{text}"
        );
        let bad = std::process::Command::new("openssl")
            .args(["pkcs12", "-in"])
            .arg(dir.join("apiclient_cert.p12"))
            .args(["-passin", "pass:wrong", "-nodes"])
            .output()
            .expect("openssl runs");
        assert!(!bad.status.success());
    }
    // The PEM identity works for the refund endpoint (checked fully in the refund test);
    // here just the TLS handshake with it.
    let c = client(&sim, true);
    let r = c
        .post(format!("{}/secapi/pay/refund", sim.base_url()))
        .body("<xml></xml>")
        .send()
        .await
        .expect("mutual TLS handshake");
    assert_eq!(r.status().as_u16(), 200);
    let body = r.text().await.expect("text");
    let doc = xml::parse(body.as_bytes()).expect("xml");
    assert_eq!(doc.fields["return_code"], "FAIL");
    assert!(!doc.fields["return_msg"].contains("证书"), "{body}");
    let _ = std::fs::remove_dir_all(&dir);
    sim.stop();
}
