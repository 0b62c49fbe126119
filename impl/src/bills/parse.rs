//! WeChat's bill text (`downloadbill`, `bill_type=ALL`): a header line, one line per
//! payment or refund with every field prefixed by a backtick, then a summary header and
//! one summary line; CRLF; amounts in yuan with two (fees: five) decimals, read into fen
//! exactly, never through floats. Columns are found by their header names, so WeChat
//! adding a column does not shift what is read.

/// One payment or refund line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BillLine {
    /// `yyyy-MM-dd HH:mm:ss`, Beijing.
    pub time: String,
    pub out_trade_no: String,
    /// 交易状态: SUCCESS for a payment, REFUND for a refund, REVOKED.
    pub trade_state: String,
    /// 订单金额 (before coupons), fen.
    pub total_fen: i64,
    /// For refund lines.
    pub out_refund_no: Option<String>,
    pub refund_fen: i64,
    /// 退款状态 (refund lines): SUCCESS, PROCESSING, ...
    pub refund_status: Option<String>,
    /// 手续费, fen (negative on refunds).
    pub fee_fen: i64,
}

impl BillLine {
    pub fn is_refund(&self) -> bool {
        self.out_refund_no.is_some()
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("unreadable bill: {0}")]
pub struct BillParseError(pub String);

fn err(m: impl Into<String>) -> BillParseError {
    BillParseError(m.into())
}

/// Fields of a line: the leading backtick of each removed. Split on ",`" so that a comma
/// inside a field (a product name) does not cut it.
fn fields(line: &str) -> Vec<String> {
    let line = line.strip_prefix('`').unwrap_or(line);
    line.split(",`").map(|f| f.trim().to_string()).collect()
}

/// `"12.30"`, `"-0.02000"`, `"3"` → fen. Digits beyond the fen must be zeros.
pub fn yuan_to_fen(s: &str) -> Result<i64, BillParseError> {
    let s = s.trim();
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = !int.is_empty()
        && int.bytes().all(|b| b.is_ascii_digit())
        && frac.bytes().all(|b| b.is_ascii_digit())
        && int.len() <= 15;
    if !ok {
        return Err(err(format!("not an amount: {s:?}")));
    }
    let mut fen_digits = frac.chars().take(2).collect::<String>();
    while fen_digits.len() < 2 {
        fen_digits.push('0');
    }
    if frac.chars().skip(2).any(|c| c != '0') {
        return Err(err(format!("amount finer than a fen: {s:?}")));
    }
    let int: i64 = int
        .parse()
        .map_err(|_| err(format!("not an amount: {s:?}")))?;
    let cents: i64 = fen_digits
        .parse()
        .map_err(|_| err(format!("not an amount: {s:?}")))?;
    let v = int * 100 + cents;
    Ok(if neg { -v } else { v })
}

/// The parsed bill and the count its summary line states.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bill {
    pub lines: Vec<BillLine>,
    pub summary_count: Option<i64>,
}

pub fn parse(text: &str) -> Result<Bill, BillParseError> {
    let mut lines = text
        .trim_start_matches('\u{feff}')
        .split('\n')
        .map(|l| l.trim_end_matches('\r'))
        .filter(|l| !l.trim().is_empty());
    let header: Vec<String> = lines
        .next()
        .ok_or_else(|| err("empty"))?
        .split(',')
        .map(|h| h.trim().to_string())
        .collect();
    let col = |name: &str| -> Result<usize, BillParseError> {
        header
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| err(format!("no column {name}")))
    };
    let opt_col = |name: &str| header.iter().position(|h| h == name);
    let c_time = col("交易时间")?;
    let c_otn = col("商户订单号")?;
    let c_state = col("交易状态")?;
    let c_total = col("订单金额")?;
    let c_fee = col("手续费")?;
    let c_orn = opt_col("商户退款单号");
    let c_refund = opt_col("退款金额");
    let c_rstatus = opt_col("退款状态");
    let mut out = Vec::new();
    let mut summary_count = None;
    let mut in_summary = false;
    for line in lines {
        if line.starts_with("总交易单数") {
            in_summary = true;
            continue;
        }
        let f = fields(line);
        if in_summary {
            let n = f.first().ok_or_else(|| err("empty summary"))?;
            summary_count = Some(
                n.parse::<i64>()
                    .map_err(|_| err(format!("bad summary count {n:?}")))?,
            );
            break;
        }
        if f.len() < header.len() {
            return Err(err(format!(
                "line has {} fields, header {}",
                f.len(),
                header.len()
            )));
        }
        let trade_state = f[c_state].clone();
        let is_refund = trade_state == campus_dal::BillTradeState::Refund.as_str();
        let out_refund_no = if is_refund {
            let no = c_orn.map(|c| f[c].clone()).unwrap_or_default();
            if no.is_empty() || no == "0" {
                return Err(err("refund line without out_refund_no"));
            }
            Some(no)
        } else {
            None
        };
        out.push(BillLine {
            time: f[c_time].clone(),
            out_trade_no: f[c_otn].clone(),
            total_fen: yuan_to_fen(&f[c_total])?,
            refund_fen: match (is_refund, c_refund) {
                (true, Some(c)) => yuan_to_fen(&f[c])?,
                _ => 0,
            },
            refund_status: if is_refund {
                c_rstatus.map(|c| f[c].clone())
            } else {
                None
            },
            fee_fen: yuan_to_fen(&f[c_fee])?,
            out_refund_no,
            trade_state,
        });
    }
    if let Some(n) = summary_count
        && n != out.len() as i64
    {
        return Err(err(format!(
            "summary says {n} lines, the bill has {}",
            out.len()
        )));
    }
    Ok(Bill {
        lines: out,
        summary_count,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,手续费,费率,订单金额,申请退款金额,费率备注";

    #[test]
    fn amounts_are_exact() {
        assert_eq!(yuan_to_fen("0.00"), Ok(0));
        assert_eq!(yuan_to_fen("0.01"), Ok(1));
        assert_eq!(yuan_to_fen("123.45"), Ok(12345));
        assert_eq!(yuan_to_fen("-3.00"), Ok(-300));
        assert_eq!(yuan_to_fen("0.02000"), Ok(2));
        assert_eq!(yuan_to_fen("-0.02000"), Ok(-2));
        assert_eq!(yuan_to_fen("7"), Ok(700));
        assert_eq!(yuan_to_fen("7.5"), Ok(750));
        // 0.29 + 0.01 in floats is 0.30000000000000004; here it is 30.
        assert_eq!(yuan_to_fen("0.29").ok().map(|v| v + 1), Some(30));
        assert!(yuan_to_fen("0.001").is_err());
        assert!(yuan_to_fen("1e3").is_err());
        assert!(yuan_to_fen("").is_err());
        assert!(yuan_to_fen("--1").is_err());
    }

    #[test]
    fn payment_and_refund_lines_and_summary() {
        let text = format!(
            "{HEADER}\r\n\
`2026-11-29 10:00:00,`wx1,`1900000109,`0,`,`4200001,`CE1,`oUser,`JSAPI,`SUCCESS,`OTHERS,`CNY,`3.00,`0.00,`0,`0,`0.00,`0.00,`,`,`errand, fast,`,`0.02000,`0.60%,`3.00,`0.00,`\r\n\
`2026-11-29 11:00:00,`wx1,`1900000109,`0,`,`4200001,`CE1,`oUser,`JSAPI,`REFUND,`OTHERS,`CNY,`0.00,`0.00,`5000001,`CE1R1,`1.00,`0.00,`ORIGINAL,`SUCCESS,`errand, fast,`,`-0.01000,`0.60%,`0.00,`1.00,`\r\n\
总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额\r\n\
`2,`3.00,`1.00,`0.00,`0.01000,`3.00,`1.00\r\n"
        );
        let b = parse(&text).expect("parses");
        assert_eq!(b.summary_count, Some(2));
        assert_eq!(b.lines.len(), 2);
        assert_eq!(b.lines[0].out_trade_no, "CE1");
        assert_eq!(b.lines[0].total_fen, 300);
        assert_eq!(b.lines[0].fee_fen, 2);
        assert!(!b.lines[0].is_refund());
        assert_eq!(b.lines[1].out_refund_no.as_deref(), Some("CE1R1"));
        assert_eq!(b.lines[1].refund_fen, 100);
        assert_eq!(b.lines[1].fee_fen, -1);
        assert_eq!(b.lines[1].refund_status.as_deref(), Some("SUCCESS"));
        // A summary that disagrees with the lines is refused.
        let bad = text.replace("`2,`3.00", "`3,`3.00");
        assert!(parse(&bad).is_err());
    }
}
