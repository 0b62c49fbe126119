//! `pay/downloadbill`: WeChat's text bill from what the simulator recorded.

mod sim_support;

use std::io::Read as _;
use std::time::Duration;

use sim_support::{client, create_order, pay_call, signed_xml, start_sim, unique_no, wait_until};
use test_demo::sim::sign::SignType;
use test_demo::sim::{BillRowEdit, SimHandle, xml};

const NOTIFY: &str = "http://127.0.0.1:9/api/v1/pay/notify";

/// (content type, body bytes).
async fn download(
    sim: &SimHandle,
    c: &reqwest::Client,
    fields: &[(&str, &str)],
) -> (String, Vec<u8>) {
    let r = c
        .post(format!("{}/pay/downloadbill", sim.base_url()))
        .body(signed_xml(sim, fields, SignType::Md5))
        .send()
        .await
        .expect("downloadbill");
    assert_eq!(r.status(), 200);
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    (ct, r.bytes().await.expect("body").to_vec())
}

fn failure(body: &[u8]) -> (String, String) {
    let doc = xml::parse(body).expect("an XML failure");
    assert_eq!(doc.fields["return_code"], "FAIL");
    (
        doc.fields["return_msg"].clone(),
        doc.fields.get("error_code").cloned().unwrap_or_default(),
    )
}

fn beijing_day(offset_days: i64) -> String {
    let bj = chrono::FixedOffset::east_opt(8 * 3600).expect("offset");
    (chrono::Utc::now().with_timezone(&bj) + chrono::Duration::days(offset_days))
        .format("%Y%m%d")
        .to_string()
}

/// Lines of a bill (each must end in CRLF), fields without their backtick.
fn lines(text: &str) -> Vec<String> {
    assert!(text.ends_with("\r\n"), "CRLF lines");
    assert!(!text.replace("\r\n", "").contains('\n'), "no bare LF");
    text.split("\r\n")
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn fields(line: &str) -> Vec<&str> {
    line.split(',')
        .map(|f| {
            f.strip_prefix('`')
                .unwrap_or_else(|| panic!("field without backtick in {line}"))
        })
        .collect()
}

#[actix_web::test]
async fn downloadbill_builds_wechats_text_bill() {
    let sim = start_sim().await;
    sim.set_refund_min_gap(Duration::ZERO);
    let c = client(&sim, false);
    let mtls = client(&sim, true);
    let today = beijing_day(0);

    // Nothing yet; bad parameters.
    for (fields_, msg, code) in [
        (
            vec![
                ("bill_date", beijing_day(-1)),
                ("bill_type", "ALL".to_string()),
            ],
            "No Bill Exist",
            "20002",
        ),
        (
            vec![
                ("bill_date", "2026-11-30".to_string()),
                ("bill_type", "ALL".to_string()),
            ],
            "invalid bill_date",
            "20001",
        ),
        (
            vec![
                ("bill_date", beijing_day(-1)),
                ("bill_type", "EVERYTHING".to_string()),
            ],
            "invalid bill_type",
            "20001",
        ),
    ] {
        let refs: Vec<(&str, &str)> = fields_.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let (_, body) = download(&sim, &c, &refs).await;
        assert_eq!(failure(&body), (msg.to_string(), code.to_string()));
    }

    // Two payments (one with a 2.00 coupon), one refund of 1.00.
    let a = unique_no("B");
    let pa = create_order(&sim, &c, &a, "300", NOTIFY, SignType::Md5).await;
    sim_support::pay(&sim, &pa).expect("pays");
    let b = unique_no("B");
    create_order(&sim, &c, &b, "1000", NOTIFY, SignType::Md5).await;
    sim_support::pay_with_coupon(&sim, &b, 200).expect("pays");
    let m = pay_call(
        &sim,
        &mtls,
        "/secapi/pay/refund",
        &[
            ("out_trade_no", &a),
            ("out_refund_no", "BR1"),
            ("total_fee", "300"),
            ("refund_fee", "100"),
        ],
        SignType::Md5,
    )
    .await;
    assert_eq!(f(&m, "result_code"), "SUCCESS", "{m:?}");
    assert!(
        wait_until(5, || sim
            .order(&a)
            .is_some_and(|o| o.refunds[0].status == "SUCCESS"))
        .await
    );
    // An unpaid order never shows.
    create_order(&sim, &c, &unique_no("B"), "700", NOTIFY, SignType::Md5).await;

    // Today's bill does not exist yet at WeChat.
    let (_, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "ALL")]).await;
    assert_eq!(failure(&body).1, "20002");
    sim.set_bill_same_day(true);

    // ALL: header, 2 payments and 1 refund, summary header and line.
    let (ct, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "ALL")]).await;
    assert!(ct.starts_with("text/plain"), "{ct}");
    let text = String::from_utf8(body).expect("UTF-8");
    let l = lines(&text);
    assert_eq!(l.len(), 6, "{text}");
    assert_eq!(l[0].split(',').count(), 27);
    assert!(l[0].starts_with("交易时间,公众账号ID,商户号"));
    assert!(l[0].ends_with("订单金额,申请退款金额,费率备注"));
    let rows: Vec<Vec<&str>> = l[1..4].iter().map(|r| fields(r)).collect();
    assert!(rows.iter().all(|r| r.len() == 27));
    let pay_a = rows
        .iter()
        .find(|r| r[6] == a && r[9] == "SUCCESS")
        .expect("payment a");
    assert_eq!(pay_a[12], "3.00", "应结订单金额");
    assert_eq!(pay_a[13], "0.00", "代金券金额");
    assert_eq!(pay_a[22], "0.02000", "手续费, 0.6% rounded to the fen");
    assert_eq!(pay_a[23], "0.60%");
    assert_eq!(pay_a[24], "3.00", "订单金额");
    assert_eq!(pay_a[1], sim.config().appid);
    assert_eq!(pay_a[2], sim.config().mch_id);
    assert_eq!(
        pay_a[5],
        sim.order(&a).expect("a").transaction_id.expect("txn")
    );
    let pay_b = rows.iter().find(|r| r[6] == b).expect("payment b");
    assert_eq!((pay_b[12], pay_b[13], pay_b[24]), ("8.00", "2.00", "10.00"));
    let refund = rows.iter().find(|r| r[9] == "REFUND").expect("refund");
    assert_eq!(refund[6], a);
    assert_eq!(refund[15], "BR1");
    assert_eq!(refund[16], "1.00", "退款金额");
    assert_eq!(refund[19], "SUCCESS");
    assert_eq!(refund[25], "1.00", "申请退款金额");
    assert_eq!(
        l[4],
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"
    );
    // 3 rows; 3.00 + 8.00 settled; 1.00 refunded; fees 0.02 + 0.05 - 0.01; 13.00 ordered.
    assert_eq!(
        fields(&l[5]),
        vec!["3", "11.00", "1.00", "0.00", "0.06000", "13.00", "1.00"]
    );

    // SUCCESS and REFUND bills have their own columns.
    let (_, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "SUCCESS")]).await;
    let l = lines(std::str::from_utf8(&body).expect("utf8"));
    assert_eq!(l.len(), 5);
    assert_eq!(l[0].split(',').count(), 20);
    assert!(l[1..3].iter().all(|r| fields(r).len() == 20));
    let (_, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "REFUND")]).await;
    let l = lines(std::str::from_utf8(&body).expect("utf8"));
    assert_eq!(l.len(), 4);
    assert_eq!(fields(&l[1]).len(), 29);
    assert_eq!(fields(&l[1])[17], "BR1");
    let (_, body) = download(
        &sim,
        &c,
        &[("bill_date", &today), ("bill_type", "RECHARGE_REFUND")],
    )
    .await;
    assert_eq!(failure(&body).1, "20002");

    // GZIP: the same text, compressed.
    let (ct, gz) = download(
        &sim,
        &c,
        &[
            ("bill_date", &today),
            ("bill_type", "ALL"),
            ("tar_type", "GZIP"),
        ],
    )
    .await;
    assert!(!ct.starts_with("text/"), "{ct}");
    let mut unzipped = String::new();
    flate2::read::GzDecoder::new(gz.as_slice())
        .read_to_string(&mut unzipped)
        .expect("gzip");
    assert_eq!(unzipped, text);

    // Rows altered by the test: another amount, a missing payment.
    sim.edit_bill_row(&b, BillRowEdit::Amount(999));
    let (_, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "SUCCESS")]).await;
    let text2 = String::from_utf8(body).expect("utf8");
    let l = lines(&text2);
    let row_b = l
        .iter()
        .map(|r| r.as_str())
        .find(|r| r.contains(&b))
        .expect("b");
    assert_eq!(fields(row_b)[18], "9.99");
    sim.edit_bill_row(&a, BillRowEdit::Drop);
    let (_, body) = download(&sim, &c, &[("bill_date", &today), ("bill_type", "ALL")]).await;
    let text3 = String::from_utf8(body).expect("utf8");
    assert!(!text3.contains(&a), "{text3}");
    assert_eq!(lines(&text3).len(), 4);
    sim.stop();
}

fn f<'a>(m: &'a std::collections::BTreeMap<String, String>, k: &str) -> &'a str {
    sim_support::f(m, k)
}
