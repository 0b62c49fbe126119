//! The merchant certificate as `WECHAT_PAY_P12`, in both profiles the simulator writes: the
//! legacy one of WeChat's real `apiclient_cert.p12` (RC2-40, SHA-1 MAC) and the modern one
//! (PBES2/AES-256), each loaded by the product's PayClient and used for a refund call over
//! mutual TLS, which the simulator only answers with a business result when the client
//! certificate verified.

mod common;

use std::time::Duration;

use campus_impl::telemetry::Metrics;
use campus_impl::wechat::pay::{
    ClientIdentity, PayClient, PayConfig, PayError, RefundRequest, SignType,
};
use secrecy::SecretString;

async fn refund_with_p12(legacy: bool) {
    let sim = common::sim_for_tests().await;
    let dir = tempfile::tempdir().expect("tempdir");
    sim.write_files(dir.path()).expect("sim files");
    let p12 = dir.path().join("merchant.p12");
    let der = if legacy {
        sim.client_p12_legacy()
    } else {
        sim.client_p12()
    };
    std::fs::write(&p12, der).expect("write p12");
    let cfg = sim.config();
    let client = PayClient::new(
        PayConfig {
            appid: cfg.appid.clone(),
            mch_id: cfg.mch_id.clone(),
            key: SecretString::from(cfg.pay_key.clone()),
            sign_type: SignType::Md5,
            api_base: sim.base_url(),
            extra_root: Some(dir.path().join("ca.pem")),
            timeout: Duration::from_secs(5),
            identity: ClientIdentity::P12 {
                path: p12,
                password: cfg.mch_id.clone(),
            },
        },
        Metrics::new(),
    )
    .expect("client");
    assert!(client.refunds_available(), "the p12 loads");
    let e = client
        .refund(&RefundRequest {
            out_trade_no: "T-NO-SUCH-ORDER".into(),
            out_refund_no: "R-NO-SUCH-ORDER".into(),
            total_fee: 100,
            refund_fee: 100,
            notify_url: "https://example.com/refund".into(),
            reason: None,
        })
        .await
        .expect_err("no such order");
    // A business answer: the handshake with the merchant certificate succeeded.
    assert!(matches!(e, PayError::OrderNotExist), "{e:?}");
    assert_eq!(sim.calls("refund"), 1);
    sim.stop();
}

#[actix_web::test]
async fn legacy_rc2_p12_makes_refund_calls() {
    refund_with_p12(true).await;
}

#[actix_web::test]
async fn modern_aes_p12_makes_refund_calls() {
    refund_with_p12(false).await;
}
