//! `pay/downloadbill` (v2): the day's bill as WeChat's text, gzip accepted. A day without
//! trades is [`BillDownload::NoBill`], not an error.

use std::collections::BTreeMap;
use std::io::Read;

use chrono::NaiveDate;

use super::client::{PayClient, RawCall};
use super::error::PayError;
use super::xml::parse_flat;

/// Largest bill body accepted, compressed or not (a busy merchant's day is a few MB).
const MAX_BILL_BYTES: usize = 256 * 1024 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BillDownload {
    Text(String),
    /// `No Bill Exist` (error_code 20002): no trades that day, or not yet available.
    NoBill,
}

impl PayClient {
    /// The bill of `date` (Beijing), `bill_type=ALL`, asked for gzipped.
    pub async fn download_bill(&self, date: NaiveDate) -> Result<BillDownload, PayError> {
        let mut p = BTreeMap::new();
        p.insert("bill_date".to_string(), date.format("%Y%m%d").to_string());
        p.insert("bill_type".to_string(), "ALL".to_string());
        p.insert("tar_type".to_string(), "GZIP".to_string());
        let body = self
            .call_raw(
                "pay_downloadbill",
                "/pay/downloadbill",
                p,
                RawCall::Plain,
                MAX_BILL_BYTES,
            )
            .await?;
        decode(&body)
    }
}

/// A gzip body is unpacked; an XML body is a failure (or "no bill"); anything else is
/// the bill's text.
fn decode(body: &[u8]) -> Result<BillDownload, PayError> {
    let bytes = if body.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(body)
            .take(MAX_BILL_BYTES as u64 + 1)
            .read_to_end(&mut out)
            .map_err(|_| PayError::BadField("bill (bad gzip)"))?;
        if out.len() > MAX_BILL_BYTES {
            return Err(PayError::BadField("bill (too large)"));
        }
        out
    } else {
        body.to_vec()
    };
    let text = String::from_utf8(bytes).map_err(|_| PayError::BadField("bill (not UTF-8)"))?;
    let text = text.trim_start_matches('\u{feff}');
    if text.trim_start().starts_with("<xml") {
        let f = parse_flat(text.trim().as_bytes())?;
        let msg = f.get("return_msg").map(String::as_str).unwrap_or("");
        let code = f.get("error_code").map(String::as_str).unwrap_or("");
        if code == "20002" || msg.eq_ignore_ascii_case("No Bill Exist") {
            return Ok(BillDownload::NoBill);
        }
        return Err(PayError::Return {
            msg: format!("{msg} {code}").trim().chars().take(128).collect(),
        });
    }
    Ok(BillDownload::Text(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn no_bill_text_and_gzip() {
        let nb = b"<xml><return_code><![CDATA[FAIL]]></return_code><return_msg><![CDATA[No Bill Exist]]></return_msg><error_code><![CDATA[20002]]></error_code></xml>";
        assert_eq!(decode(nb).ok(), Some(BillDownload::NoBill));
        let other = b"<xml><return_code>FAIL</return_code><return_msg>invalid bill_date</return_msg><error_code>20001</error_code></xml>";
        assert!(decode(other).is_err());
        let text = "交易时间,商户订单号\r\n`2026-11-29 10:00:00,`CE1\r\n";
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(text.as_bytes()).expect("gzip");
        let gz = enc.finish().expect("gzip");
        assert_eq!(decode(&gz).ok(), Some(BillDownload::Text(text.into())));
        assert_eq!(
            decode(text.as_bytes()).ok(),
            Some(BillDownload::Text(text.into()))
        );
    }
}
