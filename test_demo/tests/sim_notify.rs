//! Pay and refund notifies: delivery, retries, faults, encryption.

mod sim_support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sim_support::{
    client, create_order, pay_call, start_receiver, start_sim, unique_no, wait_until,
};
use test_demo::sim::crypto::refund_req_info_decrypt;
use test_demo::sim::sign::{self, SignType};
use test_demo::sim::{NotifyFaults, xml};

fn fields(body: &str) -> BTreeMap<String, String> {
    xml::parse(body.as_bytes()).expect("notify XML").fields
}

#[actix_web::test]
async fn pay_notify_is_retried_until_acknowledged() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(2).await;
    let no = unique_no("N");
    let prepay = create_order(&sim, &c, &no, "250", &rx.url, SignType::Md5).await;
    let t0 = Instant::now();
    sim_support::pay(&sim, &prepay).expect("pays");
    assert!(wait_until(5, || sim.calls("pay_notify_acked") == 1).await);
    // Answered FAIL twice, SUCCESS the third time: three deliveries, no more.
    actix_web::rt::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(rx.count(), 3);
    assert_eq!(sim.calls("pay_notify_sent"), 3);
    let got = rx.got.lock().expect("lock").clone();
    // Retry delays 50 ms then 100 ms.
    assert!(got[1].at.duration_since(got[0].at) >= Duration::from_millis(45));
    assert!(got[2].at.duration_since(got[1].at) >= Duration::from_millis(95));
    assert!(got[0].at.duration_since(t0) < Duration::from_secs(2));
    let key = sim.config().pay_key.clone();
    for r in &got {
        let m = fields(&r.body);
        assert!(sign::pay_verify(&m, &key, SignType::Md5), "{m:?}");
        assert_eq!(m["return_code"], "SUCCESS");
        assert_eq!(m["result_code"], "SUCCESS");
        assert_eq!(m["appid"], sim.config().appid);
        assert_eq!(m["mch_id"], sim.config().mch_id);
        assert_eq!(m["out_trade_no"], no);
        assert_eq!(m["total_fee"], "250");
        assert_eq!(m["cash_fee"], "250");
        assert_eq!(m["fee_type"], "CNY");
        assert_eq!(m["trade_type"], "JSAPI");
        assert_eq!(m["openid"], "oUser_test_1");
        assert_eq!(m["time_end"].len(), 14);
        assert!(!m.contains_key("sign_type"));
        for k in ["nonce_str", "transaction_id", "bank_type", "is_subscribe"] {
            assert!(m.contains_key(k), "{k}");
        }
    }
    let snap = sim.order(&no).expect("order");
    assert_eq!(
        fields(&got[0].body)["transaction_id"],
        snap.transaction_id.expect("txn")
    );
    rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn hmac_notify_sign_type_and_giving_up() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(usize::MAX).await;
    let no = unique_no("H");
    let prepay = create_order(&sim, &c, &no, "99", &rx.url, SignType::HmacSha256).await;
    sim_support::pay(&sim, &prepay).expect("pays");
    // 1 attempt + 5 retries (for_tests schedule), then it gives up.
    assert!(wait_until(5, || sim.calls("pay_notify_gave_up") == 1).await);
    assert_eq!(rx.count(), 6);
    assert_eq!(sim.calls("pay_notify_acked"), 0);
    let bodies = rx.bodies();
    let key = sim.config().pay_key.clone();
    for (i, b) in bodies.iter().enumerate() {
        let m = fields(b);
        assert_eq!(m["sign"].len(), 64);
        assert!(sign::pay_verify(&m, &key, SignType::HmacSha256));
        // sign_type on the first attempt only.
        assert_eq!(m.contains_key("sign_type"), i == 0, "attempt {i}");
    }
    rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn faults_drop_duplicate_delay() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(0).await;

    sim.set_notify_faults(NotifyFaults {
        drop_first: 2,
        ..Default::default()
    });
    let no = unique_no("D");
    let prepay = create_order(&sim, &c, &no, "10", &rx.url, SignType::Md5).await;
    sim_support::pay(&sim, &prepay).expect("pays");
    assert!(wait_until(5, || sim.calls("pay_notify_acked") == 1).await);
    assert_eq!(sim.calls("pay_notify_dropped"), 2);
    assert_eq!(rx.count(), 1);

    sim.set_notify_faults(NotifyFaults {
        duplicate: 2,
        delay: Duration::from_millis(300),
        ..Default::default()
    });
    let no2 = unique_no("D");
    let prepay = create_order(&sim, &c, &no2, "10", &rx.url, SignType::Md5).await;
    let t0 = Instant::now();
    sim_support::pay(&sim, &prepay).expect("pays");
    assert!(wait_until(5, || rx.count() == 4).await);
    let got = rx.got.lock().expect("lock").clone();
    assert!(got[1].at.duration_since(t0) >= Duration::from_millis(290));
    assert_eq!(got[1].body, got[2].body);
    assert_eq!(got[2].body, got[3].body);
    assert_eq!(sim.calls("pay_notify_sent"), 4);
    rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn faults_tamper_and_wrong_appid() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(0).await;
    let key = sim.config().pay_key.clone();
    let cases = [
        NotifyFaults {
            tamper_sign: true,
            ..Default::default()
        },
        NotifyFaults {
            tamper_amount: true,
            ..Default::default()
        },
        NotifyFaults {
            wrong_appid: true,
            ..Default::default()
        },
    ];
    for (i, faults) in cases.into_iter().enumerate() {
        sim.set_notify_faults(faults.clone());
        let no = unique_no("F");
        let prepay = create_order(&sim, &c, &no, "100", &rx.url, SignType::Md5).await;
        sim_support::pay(&sim, &prepay).expect("pays");
        assert!(wait_until(5, || rx.count() == i + 1).await);
        let m = fields(&rx.bodies()[i]);
        let verifies = sign::pay_verify(&m, &key, SignType::Md5);
        if faults.tamper_sign {
            assert!(!verifies);
        } else {
            assert!(verifies);
        }
        if faults.tamper_amount {
            assert_eq!(m["total_fee"], "101");
        } else {
            assert_eq!(m["total_fee"], "100");
        }
        assert_eq!(m["appid"] != sim.config().appid, faults.wrong_appid);
    }
    rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn coupon_payment_notify_has_extra_signed_fields() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(0).await;
    let no = unique_no("C");
    create_order(&sim, &c, &no, "1000", &rx.url, SignType::HmacSha256).await;
    sim_support::pay_with_coupon(&sim, &no, 200).expect("pays");
    assert!(wait_until(5, || rx.count() == 1).await);
    let m = fields(&rx.bodies()[0]);
    assert_eq!(m["total_fee"], "1000");
    assert_eq!(m["cash_fee"], "800");
    assert_eq!(m["coupon_fee_0"], "200");
    assert!(sign::pay_verify(
        &m,
        &sim.config().pay_key,
        SignType::HmacSha256
    ));
    rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn refund_notify_is_encrypted_and_retried() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let mtls = client(&sim, true);
    let pay_rx = start_receiver(0).await;
    let refund_rx = start_receiver(1).await;
    let no = unique_no("RN");
    let prepay = create_order(&sim, &c, &no, "600", &pay_rx.url, SignType::Md5).await;
    sim_support::pay(&sim, &prepay).expect("pays");
    let m = pay_call(
        &sim,
        &mtls,
        "/secapi/pay/refund",
        &[
            ("out_trade_no", &no),
            ("out_refund_no", "RN-1"),
            ("total_fee", "600"),
            ("refund_fee", "250"),
            ("notify_url", &refund_rx.url),
        ],
        SignType::Md5,
    )
    .await;
    assert_eq!(m["result_code"], "SUCCESS", "{m:?}");
    assert!(wait_until(5, || sim.calls("refund_notify_acked") == 1).await);
    assert_eq!(refund_rx.count(), 2, "answered FAIL once, then SUCCESS");
    let outer = fields(&refund_rx.bodies()[1]);
    assert_eq!(outer["return_code"], "SUCCESS");
    assert_eq!(outer["appid"], sim.config().appid);
    assert_eq!(outer["mch_id"], sim.config().mch_id);
    assert!(!outer.contains_key("sign"));
    let inner =
        refund_req_info_decrypt(&sim.config().pay_key, &outer["req_info"]).expect("decrypts");
    let r = xml::parse(inner.as_bytes()).expect("root XML");
    assert_eq!(r.root, "root");
    let r = r.fields;
    assert_eq!(r["out_trade_no"], no);
    assert_eq!(r["out_refund_no"], "RN-1");
    assert_eq!(r["refund_fee"], "250");
    assert_eq!(r["settlement_refund_fee"], "250");
    assert_eq!(r["total_fee"], "600");
    assert_eq!(r["refund_status"], "SUCCESS");
    assert_eq!(r["refund_id"], m["refund_id"]);
    for k in [
        "transaction_id",
        "success_time",
        "refund_recv_accout",
        "refund_account",
        "refund_request_source",
    ] {
        assert!(r.contains_key(k), "{k}");
    }
    let snap = sim.order(&no).expect("order");
    assert_eq!(snap.trade_state, "REFUND");
    assert_eq!(snap.refunds[0].status, "SUCCESS");
    pay_rx.stop().await;
    refund_rx.stop().await;
    sim.stop();
}

#[actix_web::test]
async fn control_endpoints() {
    let sim = start_sim().await;
    let c = client(&sim, false);
    let rx = start_receiver(0).await;
    let no = unique_no("S");
    let prepay = create_order(&sim, &c, &no, "10", &rx.url, SignType::Md5).await;
    let base = sim.base_url();
    let r = c
        .post(format!("{base}/sim/notify-faults"))
        .json(&serde_json::json!({"duplicate": 1, "delay_ms": 10}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    // /sim/pay takes what wx.requestPayment receives, not a bare prepay id.
    let r = c
        .post(format!("{base}/sim/pay"))
        .json(&serde_json::json!({"prepay_id": prepay}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 400);
    let params = sim_support::jsapi_params(&sim, &prepay, SignType::Md5);
    let r = c
        .post(format!("{base}/sim/pay"))
        .json(&params)
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(
        r.json::<serde_json::Value>().await.expect("json")["ok"],
        true
    );
    let r = c
        .post(format!("{base}/sim/pay-unchecked"))
        .json(&serde_json::json!({"out_trade_no": no}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 409, "already paid");
    let r = c
        .post(format!("{base}/sim/pay-unchecked"))
        .json(&serde_json::json!({"out_trade_no": "unknown-123"}))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 404);
    assert!(wait_until(5, || rx.count() == 2).await);
    let calls: serde_json::Value = c
        .get(format!("{base}/sim/calls"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(calls["unifiedorder"], 1);
    assert_eq!(calls["pay_notify_sent"], 2);
    let order: serde_json::Value = c
        .get(format!("{base}/sim/orders/{no}"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(order["trade_state"], "SUCCESS");
    rx.stop().await;
    sim.stop();
}
