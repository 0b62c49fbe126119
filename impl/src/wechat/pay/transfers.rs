//! Pay v2 transfers to a user's balance (企业付款到零钱): `mmpaymkttransfers/promotion/transfers`
//! and `mmpaymkttransfers/gettransferinfo`, over the merchant certificate, MD5-signed
//! without `sign_type` (these APIs take none), answered without a signature.
//!
//! Answers are classified for the caller, never guessed: `Paid` and `Refused` are
//! definite; everything else (SYSTEMERROR, a timeout, a broken connection, an answer that
//! cannot be read) is `Unclear`, which only `gettransferinfo` may settle.

use std::collections::BTreeMap;

use super::client::{PayClient, RawCall};
use super::xml::{MAX_BODY_BYTES, parse_flat};

/// One transfer. Every retry must send exactly these values with the same
/// `partner_trade_no`: WeChat refuses the number with other parameters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferRequest {
    pub partner_trade_no: String,
    pub openid: String,
    pub amount_fen: i64,
    pub desc: String,
    pub spbill_create_ip: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferAnswer {
    /// The money moved.
    Paid {
        payment_no: String,
        /// `yyyy-MM-dd HH:mm:ss`, Beijing.
        payment_time: Option<String>,
    },
    /// WeChat refused and moved nothing.
    Refused { code: String, description: String },
    /// Not known whether the money moved: query.
    Unclear(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TransferLookup {
    Succeeded {
        payment_no: String,
        payment_time: Option<String>,
    },
    Failed {
        reason: String,
    },
    Processing,
    /// No transfer with this number was accepted: retry with the same number.
    NotFound,
    Unclear(String),
}

/// err_codes after which nothing was paid (WeChat's list for this API). Anything else,
/// including SYSTEMERROR, SEND_FAILED ("check the result by query") and FATAL_ERROR (this
/// number exists with other parameters), is unclear.
const DEFINITE_REFUSALS: &[&str] = &[
    "NOTENOUGH",
    "AMOUNT_LIMIT",
    "NAME_MISMATCH",
    "V2_ACCOUNT_SIMPLE_BAN",
    "SENDNUM_LIMIT",
    "FREQ_LIMIT",
    "MONEY_LIMIT",
    "PARAM_ERROR",
    "SIGN_ERROR",
    "XML_ERROR",
    "NO_AUTH",
    "OPENID_ERROR",
    "CA_ERROR",
    "RECV_ACCOUNT_NOT_ALLOWED",
    "PAY_CHANNEL_NOT_ALLOWED",
    "PAYER_ACCOUNT_ABNORMAL",
];

fn get<'a>(r: &'a BTreeMap<String, String>, k: &str) -> Option<&'a str> {
    r.get(k).map(String::as_str).filter(|v| !v.is_empty())
}

impl PayClient {
    /// `promotion/transfers`.
    pub async fn transfer(&self, req: &TransferRequest) -> TransferAnswer {
        let cfg = self.config();
        let mut p = BTreeMap::new();
        p.insert("mch_appid".to_string(), cfg.appid.clone());
        p.insert("mchid".to_string(), cfg.mch_id.clone());
        p.insert("partner_trade_no".to_string(), req.partner_trade_no.clone());
        p.insert("openid".to_string(), req.openid.clone());
        p.insert("check_name".to_string(), "NO_CHECK".to_string());
        p.insert("amount".to_string(), req.amount_fen.to_string());
        p.insert("desc".to_string(), req.desc.clone());
        p.insert("spbill_create_ip".to_string(), req.spbill_create_ip.clone());
        let body = match self
            .call_raw(
                "pay_transfers",
                "/mmpaymkttransfers/promotion/transfers",
                p,
                RawCall::MutualTlsMd5,
                MAX_BODY_BYTES,
            )
            .await
        {
            Ok(b) => b,
            // Also without the certificate: the caller checks for it before sending.
            Err(e) => return TransferAnswer::Unclear(e.to_string()),
        };
        let r = match parse_flat(&body) {
            Ok(r) => r,
            Err(e) => return TransferAnswer::Unclear(format!("unreadable answer: {e}")),
        };
        classify_transfer(&r, &req.partner_trade_no)
    }

    /// `gettransferinfo` by `partner_trade_no`.
    pub async fn transfer_info(&self, partner_trade_no: &str) -> TransferLookup {
        let cfg = self.config();
        let mut p = BTreeMap::new();
        p.insert("appid".to_string(), cfg.appid.clone());
        p.insert("mch_id".to_string(), cfg.mch_id.clone());
        p.insert("partner_trade_no".to_string(), partner_trade_no.to_string());
        let body = match self
            .call_raw(
                "pay_gettransferinfo",
                "/mmpaymkttransfers/gettransferinfo",
                p,
                RawCall::MutualTlsMd5,
                MAX_BODY_BYTES,
            )
            .await
        {
            Ok(b) => b,
            Err(e) => return TransferLookup::Unclear(e.to_string()),
        };
        match parse_flat(&body) {
            Ok(r) => classify_lookup(&r, partner_trade_no),
            Err(e) => TransferLookup::Unclear(format!("unreadable answer: {e}")),
        }
    }
}

fn classify_transfer(r: &BTreeMap<String, String>, partner_trade_no: &str) -> TransferAnswer {
    match get(r, "return_code") {
        Some("SUCCESS") => {}
        // The request itself was refused (format, signature): nothing was processed.
        Some(_) => {
            return TransferAnswer::Refused {
                code: "RETURN_FAIL".into(),
                description: get(r, "return_msg")
                    .unwrap_or("")
                    .chars()
                    .take(200)
                    .collect(),
            };
        }
        None => return TransferAnswer::Unclear("answer without return_code".into()),
    }
    match get(r, "result_code") {
        Some("SUCCESS") => {
            if get(r, "partner_trade_no").is_some_and(|n| n != partner_trade_no) {
                return TransferAnswer::Unclear("answer for another partner_trade_no".into());
            }
            match get(r, "payment_no") {
                Some(no) => TransferAnswer::Paid {
                    payment_no: no.to_string(),
                    payment_time: get(r, "payment_time").map(str::to_string),
                },
                None => TransferAnswer::Unclear("SUCCESS without payment_no".into()),
            }
        }
        Some("FAIL") => {
            let code = get(r, "err_code").unwrap_or("").to_string();
            let description: String = get(r, "err_code_des")
                .unwrap_or("")
                .chars()
                .take(200)
                .collect();
            if DEFINITE_REFUSALS.contains(&code.as_str()) {
                TransferAnswer::Refused { code, description }
            } else {
                TransferAnswer::Unclear(format!("{code}: {description}"))
            }
        }
        _ => TransferAnswer::Unclear("answer without result_code".into()),
    }
}

fn classify_lookup(r: &BTreeMap<String, String>, partner_trade_no: &str) -> TransferLookup {
    if get(r, "return_code") != Some("SUCCESS") {
        return TransferLookup::Unclear(format!(
            "query refused: {}",
            get(r, "return_msg").unwrap_or("")
        ));
    }
    match get(r, "result_code") {
        Some("SUCCESS") => {}
        Some("FAIL") if get(r, "err_code") == Some("NOT_FOUND") => return TransferLookup::NotFound,
        _ => {
            return TransferLookup::Unclear(format!(
                "query failed: {} {}",
                get(r, "err_code").unwrap_or(""),
                get(r, "err_code_des").unwrap_or("")
            ));
        }
    }
    if get(r, "partner_trade_no").is_some_and(|n| n != partner_trade_no) {
        return TransferLookup::Unclear("answer for another partner_trade_no".into());
    }
    match get(r, "status") {
        Some("SUCCESS") => match get(r, "detail_id") {
            Some(no) => TransferLookup::Succeeded {
                payment_no: no.to_string(),
                payment_time: get(r, "payment_time")
                    .or(get(r, "transfer_time"))
                    .map(str::to_string),
            },
            None => TransferLookup::Unclear("SUCCESS without detail_id".into()),
        },
        Some("FAILED") => TransferLookup::Failed {
            reason: get(r, "reason")
                .unwrap_or("transfer failed")
                .chars()
                .take(200)
                .collect(),
        },
        Some("PROCESSING") => TransferLookup::Processing,
        other => TransferLookup::Unclear(format!("unknown status {other:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn transfer_answers_are_classified_conservatively() {
        let ok = m(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("partner_trade_no", "W1"),
            ("payment_no", "P1"),
        ]);
        assert!(matches!(
            classify_transfer(&ok, "W1"),
            TransferAnswer::Paid { .. }
        ));
        assert!(matches!(
            classify_transfer(&ok, "W2"),
            TransferAnswer::Unclear(_)
        ));
        for (code, definite) in [
            ("NOTENOUGH", true),
            ("AMOUNT_LIMIT", true),
            ("SYSTEMERROR", false),
            ("SEND_FAILED", false),
            ("FATAL_ERROR", false),
            ("SOMETHING_NEW", false),
        ] {
            let r = m(&[
                ("return_code", "SUCCESS"),
                ("result_code", "FAIL"),
                ("err_code", code),
            ]);
            assert_eq!(
                matches!(classify_transfer(&r, "W1"), TransferAnswer::Refused { .. }),
                definite,
                "{code}"
            );
        }
        assert!(matches!(
            classify_transfer(&m(&[]), "W1"),
            TransferAnswer::Unclear(_)
        ));
    }

    #[test]
    fn lookups() {
        let nf = m(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "NOT_FOUND"),
        ]);
        assert_eq!(classify_lookup(&nf, "W1"), TransferLookup::NotFound);
        let failed = m(&[
            ("return_code", "SUCCESS"),
            ("result_code", "SUCCESS"),
            ("status", "FAILED"),
            ("reason", "余额不足"),
        ]);
        assert!(matches!(
            classify_lookup(&failed, "W1"),
            TransferLookup::Failed { .. }
        ));
        let busy = m(&[
            ("return_code", "SUCCESS"),
            ("result_code", "FAIL"),
            ("err_code", "SYSTEMERROR"),
        ]);
        assert!(matches!(
            classify_lookup(&busy, "W1"),
            TransferLookup::Unclear(_)
        ));
    }
}
