//! Transfers to a user's balance (mmpaymkttransfers/promotion/transfers, gettransferinfo):
//! mutual TLS, MD5 only, partner_trade_no idempotency, injected SYSTEMERROR / lost answers /
//! definite refusals.

mod sim_support;

use std::collections::BTreeMap;

use sim_support::{client, f, login_openid, post_xml, start_sim};
use test_demo::sim::sign::{self, SignType};
use test_demo::sim::{SimHandle, TransferFault, xml};

const USER: &str = "oPayee_1";

/// A transfers body: mch_appid, mchid, nonce_str added, MD5-signed (unless `sign_as` says
/// otherwise).
fn transfer_xml(sim: &SimHandle, fields: &[(&str, &str)], sign_as: SignType) -> String {
    let cfg = sim.config();
    let mut m: BTreeMap<String, String> = [
        ("mch_appid", cfg.appid.as_str()),
        ("mchid", cfg.mch_id.as_str()),
        ("check_name", "NO_CHECK"),
        ("openid", USER),
        ("amount", "500"),
        ("desc", "跑腿收入提现"),
        ("spbill_create_ip", "10.0.0.1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    m.insert(
        "nonce_str".into(),
        uuid::Uuid::new_v4().simple().to_string(),
    );
    for (k, v) in fields {
        if v.is_empty() {
            m.remove(*k);
        } else {
            m.insert(k.to_string(), v.to_string());
        }
    }
    let s = sign::pay_sign_map(&m, &cfg.pay_key, sign_as);
    m.insert("sign".into(), s);
    xml::build_map("xml", &m)
}

async fn transfer(
    sim: &SimHandle,
    c: &reqwest::Client,
    fields: &[(&str, &str)],
) -> BTreeMap<String, String> {
    let url = format!("{}/mmpaymkttransfers/promotion/transfers", sim.base_url());
    let (status, m) = post_xml(c, &url, transfer_xml(sim, fields, SignType::Md5)).await;
    assert_eq!(status, 200);
    assert!(!m.contains_key("sign"), "transfers answers carry no sign");
    m
}

async fn query(sim: &SimHandle, c: &reqwest::Client, no: &str) -> BTreeMap<String, String> {
    let cfg = sim.config();
    let mut m: BTreeMap<String, String> = BTreeMap::new();
    m.insert("appid".into(), cfg.appid.clone());
    m.insert("mch_id".into(), cfg.mch_id.clone());
    m.insert("partner_trade_no".into(), no.into());
    m.insert("nonce_str".into(), "q".repeat(16));
    let s = sign::pay_sign_map(&m, &cfg.pay_key, SignType::Md5);
    m.insert("sign".into(), s);
    let url = format!("{}/mmpaymkttransfers/gettransferinfo", sim.base_url());
    let (status, got) = post_xml(c, &url, xml::build_map("xml", &m)).await;
    assert_eq!(status, 200);
    got
}

fn new_no() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[actix_web::test]
async fn transfer_checks_and_idempotency() {
    let sim = start_sim().await;
    let plain = client(&sim, false);
    let mtls = client(&sim, true);
    login_openid(&sim, &plain, USER).await;
    let no = new_no();

    // No merchant certificate: refused before anything else.
    let url = format!("{}/mmpaymkttransfers/promotion/transfers", sim.base_url());
    let (_, m) = post_xml(
        &plain,
        &url,
        transfer_xml(&sim, &[("partner_trade_no", &no)], SignType::Md5),
    )
    .await;
    assert_eq!(f(&m, "return_code"), "FAIL", "{m:?}");
    // HMAC-SHA256 (with sign_type) does not verify: this API is MD5 only.
    let (_, m) = post_xml(
        &mtls,
        &url,
        transfer_xml(
            &sim,
            &[("partner_trade_no", &no), ("sign_type", "HMAC-SHA256")],
            SignType::HmacSha256,
        ),
    )
    .await;
    assert_eq!(f(&m, "err_code"), "SIGN_ERROR", "{m:?}");
    let long_no = "1".repeat(33);
    let refused: Vec<(Vec<(&str, &str)>, &str)> = vec![
        (vec![("partner_trade_no", "has_underscore1")], "PARAM_ERROR"),
        (vec![("partner_trade_no", &long_no)], "PARAM_ERROR"),
        (
            vec![("partner_trade_no", &no), ("openid", "oStranger")],
            "OPENID_ERROR",
        ),
        (
            vec![("partner_trade_no", &no), ("amount", "29")],
            "AMOUNT_LIMIT",
        ),
        (
            vec![("partner_trade_no", &no), ("amount", "5.00")],
            "PARAM_ERROR",
        ),
        (
            vec![("partner_trade_no", &no), ("check_name", "FORCE_CHECK")],
            "PARAM_ERROR",
        ),
        (vec![("partner_trade_no", &no), ("desc", "")], "PARAM_ERROR"),
        (
            vec![("partner_trade_no", &no), ("mchid", "1900000000")],
            "PARAM_ERROR",
        ),
        (
            vec![("partner_trade_no", &no), ("spbill_create_ip", "nowhere")],
            "PARAM_ERROR",
        ),
    ];
    for (fields, code) in refused {
        let m = transfer(&sim, &mtls, &fields).await;
        assert_eq!(f(&m, "return_code"), "SUCCESS", "{fields:?} {m:?}");
        assert_eq!(f(&m, "result_code"), "FAIL", "{fields:?} {m:?}");
        assert_eq!(f(&m, "err_code"), code, "{fields:?} {m:?}");
    }
    assert!(sim.transfers().is_empty());

    // Accepted, then the same request again: the same payment, not a second one.
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &no)]).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    let payment_no = f(&m, "payment_no").to_string();
    assert!(!payment_no.is_empty());
    assert_eq!(f(&m, "payment_time").len(), 19);
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &no)]).await;
    assert_eq!(f(&m, "payment_no"), payment_no);
    // Same number, other amount or openid: FATAL_ERROR.
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &no), ("amount", "501")]).await;
    assert_eq!(f(&m, "err_code"), "FATAL_ERROR", "{m:?}");
    assert_eq!(sim.transfers().len(), 1);
    assert_eq!(sim.transfer(&no).expect("made").amount, 500);

    // The query: over mutual TLS, SUCCESS with the amount; NOT_FOUND for an unknown number.
    let q = query(&sim, &mtls, &no).await;
    assert_eq!(f(&q, "result_code"), "SUCCESS", "{q:?}");
    assert_eq!(f(&q, "status"), "SUCCESS");
    assert_eq!(f(&q, "payment_amount"), "500");
    assert_eq!(f(&q, "detail_id"), payment_no);
    assert_eq!(f(&q, "openid"), USER);
    let q = query(&sim, &mtls, "nosuchnumber").await;
    assert_eq!(f(&q, "err_code"), "NOT_FOUND", "{q:?}");
    let q = query(&sim, &plain, &no).await;
    assert_eq!(f(&q, "return_code"), "FAIL", "no certificate: {q:?}");
    sim.stop();
}

#[actix_web::test]
async fn transfer_fault_injection() {
    let sim = start_sim().await;
    let plain = client(&sim, false);
    let mtls = client(&sim, true);
    login_openid(&sim, &plain, USER).await;
    sim.push_transfer_faults(&[
        TransferFault::SystemErrorButPaid,
        TransferFault::LostAnswerButPaid,
        TransferFault::SystemError,
        TransferFault::Refuse("NOTENOUGH".into()),
    ]);

    // SYSTEMERROR, but the money moved: the query says SUCCESS.
    let a = new_no();
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &a)]).await;
    assert_eq!(f(&m, "err_code"), "SYSTEMERROR", "{m:?}");
    assert_eq!(f(&query(&sim, &mtls, &a).await, "status"), "SUCCESS");

    // The answer is lost, the money moved.
    let b = new_no();
    let url = format!("{}/mmpaymkttransfers/promotion/transfers", sim.base_url());
    let res = async {
        let r = mtls
            .post(&url)
            .body(transfer_xml(
                &sim,
                &[("partner_trade_no", &b)],
                SignType::Md5,
            ))
            .send()
            .await?;
        r.bytes().await
    }
    .await;
    assert!(res.is_err(), "no readable answer: {res:?}");
    assert_eq!(sim.calls("transfers_answer_lost"), 1);
    assert!(sim.transfer(&b).is_some());
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &b)]).await;
    assert_eq!(
        f(&m, "result_code"),
        "SUCCESS",
        "retry with the same number: {m:?}"
    );
    assert_eq!(sim.transfers().len(), 2);

    // SYSTEMERROR before anything moved: NOT_FOUND, and the retry pays once.
    let c = new_no();
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &c)]).await;
    assert_eq!(f(&m, "err_code"), "SYSTEMERROR");
    assert_eq!(f(&query(&sim, &mtls, &c).await, "err_code"), "NOT_FOUND");
    // NOTENOUGH: a definite refusal; nothing recorded; later the same number goes through.
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &c)]).await;
    assert_eq!(f(&m, "err_code"), "NOTENOUGH", "{m:?}");
    assert!(sim.transfer(&c).is_none());
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &c)]).await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    assert_eq!(sim.transfers().len(), 3);

    // The HTTP control queues the same faults.
    let r = plain
        .post(format!("{}/sim/transfer-faults", sim.base_url()))
        .json(&serde_json::json!({"faults": [{"refuse": "MONEY_LIMIT"}]}))
        .send()
        .await
        .expect("control");
    assert_eq!(r.status(), 200);
    let m = transfer(&sim, &mtls, &[("partner_trade_no", &new_no())]).await;
    assert_eq!(f(&m, "err_code"), "MONEY_LIMIT");
    assert_eq!(sim.calls("transfers"), 7);
    sim.stop();
}
