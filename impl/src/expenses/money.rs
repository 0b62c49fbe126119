//! Amounts, quarters and days as team members type them, and the CSV report's cells.

use chrono::{Datelike, NaiveDate};

use crate::text::InvalidInput;

/// 100,000 yuan: the most one expense may be.
pub const MAX_FEN: i64 = 10_000_000;

/// An amount in fen from the API: positive and at most [`MAX_FEN`].
pub fn check_fen(fen: i64) -> Result<i64, InvalidInput> {
    if fen <= 0 {
        return Err(InvalidInput::new("amount_fen must be positive"));
    }
    if fen > MAX_FEN {
        return Err(InvalidInput::new(
            "amount_fen must be at most 10000000 (100000.00 yuan)",
        ));
    }
    Ok(fen)
}

/// Yuan as typed (`35.50`, `35.5`, `35`) to fen, exactly: digits with at most two
/// decimals, no sign, no exponent, no separators; positive and at most 100,000 yuan.
pub fn parse_yuan(s: &str) -> Result<i64, InvalidInput> {
    let s = s.trim();
    let (whole, frac) = match s.split_once('.') {
        Some((w, f)) => (w, Some(f)),
        None => (s, None),
    };
    let digits = |t: &str| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit());
    if s.starts_with('-') {
        return Err(InvalidInput::new("the amount must be positive"));
    }
    if !digits(whole) || frac.is_some_and(|f| !digits(f)) {
        return Err(InvalidInput::new(
            "the amount must be a number of yuan such as 35.50",
        ));
    }
    let frac = frac.unwrap_or("");
    if frac.len() > 2 {
        return Err(InvalidInput::new(
            "the amount may have at most two decimals (fen)",
        ));
    }
    // Long runs of digits are over the maximum anyway; this keeps the parse in range.
    let whole = whole.trim_start_matches('0');
    if whole.len() > 6 {
        return Err(InvalidInput::new("the amount must be at most 100000 yuan"));
    }
    let yuan: i64 = if whole.is_empty() {
        0
    } else {
        whole
            .parse()
            .map_err(|_| InvalidInput::new("the amount must be a number of yuan such as 35.50"))?
    };
    let fen_part: i64 = match frac.len() {
        0 => 0,
        1 => i64::from(frac.as_bytes()[0] - b'0') * 10,
        _ => i64::from(frac.as_bytes()[0] - b'0') * 10 + i64::from(frac.as_bytes()[1] - b'0'),
    };
    let fen = yuan * 100 + fen_part;
    if fen == 0 {
        return Err(InvalidInput::new("the amount must be positive"));
    }
    if fen > MAX_FEN {
        return Err(InvalidInput::new("the amount must be at most 100000 yuan"));
    }
    Ok(fen)
}

/// Fen as yuan with two decimals (`-35.50`), as the report and the replies show it.
pub fn yuan(fen: i64) -> String {
    let sign = if fen < 0 { "-" } else { "" };
    let a = fen.unsigned_abs();
    format!("{sign}{}.{:02}", a / 100, a % 100)
}

/// A calendar quarter, `2026Q4`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Quarter {
    pub year: i32,
    pub q: u32,
}

impl Quarter {
    pub fn parse(s: &str) -> Result<Self, InvalidInput> {
        let bad = || InvalidInput::new("quarter must look like 2026Q4");
        let s = s.trim();
        let (y, q) = s.split_once(['Q', 'q']).ok_or_else(bad)?;
        if y.len() != 4 || q.len() != 1 {
            return Err(bad());
        }
        let year: i32 = y.parse().map_err(|_| bad())?;
        let q: u32 = q.parse().map_err(|_| bad())?;
        if !(2000..=2099).contains(&year) || !(1..=4).contains(&q) {
            return Err(bad());
        }
        Ok(Self { year, q })
    }

    pub fn of(day: NaiveDate) -> Self {
        Self {
            year: day.year(),
            q: (day.month() - 1) / 3 + 1,
        }
    }

    /// The quarter of today in Beijing.
    pub fn current() -> Self {
        Self::of(beijing_today())
    }
}

impl std::fmt::Display for Quarter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}Q{}", self.year, self.q)
    }
}

pub fn beijing_today() -> NaiveDate {
    (chrono::Utc::now() + chrono::Duration::hours(8)).date_naive()
}

/// The Beijing day of a stored UTC time.
pub fn beijing_day(utc: chrono::NaiveDateTime) -> NaiveDate {
    (utc + chrono::Duration::hours(8)).date()
}

/// `spent_on` as sent: a real day, not after today in Beijing, not before 2000.
pub fn parse_day(s: &str) -> Result<NaiveDate, InvalidInput> {
    let d = NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| InvalidInput::new("spent_on must be a day such as 2026-11-30"))?;
    if d > beijing_today() {
        return Err(InvalidInput::new("spent_on must not be in the future"));
    }
    if d.year() < 2000 {
        return Err(InvalidInput::new("spent_on must be in 2000 or later"));
    }
    Ok(d)
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, quote or line break; text a
/// spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a leading
/// apostrophe so it is shown, not evaluated.
pub fn csv_text(s: &str) -> String {
    let guarded = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuan_parse_exactly() {
        assert_eq!(parse_yuan("35.50").ok(), Some(3550));
        assert_eq!(parse_yuan("35.5").ok(), Some(3550));
        assert_eq!(parse_yuan("35").ok(), Some(3500));
        assert_eq!(parse_yuan("0.01").ok(), Some(1));
        assert_eq!(parse_yuan("100000").ok(), Some(10_000_000));
        assert_eq!(parse_yuan("100000.00").ok(), Some(10_000_000));
        assert_eq!(parse_yuan("0.1").ok(), Some(10));
        assert_eq!(parse_yuan("007.10").ok(), Some(710));
        for bad in [
            "35.555",
            "0",
            "0.00",
            "-1",
            "100000.01",
            "1e3",
            "",
            "35.",
            ".5",
            "3,5",
            "+1",
            "１２",
            "99999999999999999999",
            "NaN",
            " ",
        ] {
            assert!(parse_yuan(bad).is_err(), "{bad}");
        }
        assert!(parse_yuan("35.555").is_err_and(|e| e.0.contains("two decimals")));
        assert!(parse_yuan("100000.01").is_err_and(|e| e.0.contains("100000")));
        assert!(parse_yuan("-1").is_err_and(|e| e.0.contains("positive")));
    }

    #[test]
    fn fen_bounds() {
        assert!(check_fen(1).is_ok());
        assert!(check_fen(MAX_FEN).is_ok());
        assert!(check_fen(0).is_err());
        assert!(check_fen(-1).is_err());
        assert!(check_fen(MAX_FEN + 1).is_err());
    }

    #[test]
    fn yuan_shows_two_decimals() {
        assert_eq!(yuan(3550), "35.50");
        assert_eq!(yuan(-3550), "-35.50");
        assert_eq!(yuan(5), "0.05");
        assert_eq!(yuan(0), "0.00");
    }

    #[test]
    fn quarters() {
        assert_eq!(
            Quarter::parse("2026Q4").ok(),
            Some(Quarter { year: 2026, q: 4 })
        );
        for bad in ["2026Q5", "2026Q0", "26Q4", "2026-Q4", "Q4", "2026Q44", ""] {
            assert!(Quarter::parse(bad).is_err(), "{bad}");
        }
        let d = NaiveDate::from_ymd_opt(2026, 11, 30).expect("day");
        assert_eq!(Quarter::of(d).to_string(), "2026Q4");
        let d = NaiveDate::from_ymd_opt(2026, 1, 1).expect("day");
        assert_eq!(Quarter::of(d).to_string(), "2026Q1");
        let d = NaiveDate::from_ymd_opt(2026, 6, 30).expect("day");
        assert_eq!(Quarter::of(d).to_string(), "2026Q2");
    }

    #[test]
    fn csv_cells() {
        assert_eq!(csv_text("tea"), "tea");
        assert_eq!(csv_text("tea, cakes"), "\"tea, cakes\"");
        assert_eq!(csv_text("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_text("=1+1"), "'=1+1");
        assert_eq!(csv_text("-2"), "'-2");
        assert_eq!(csv_text("奶茶"), "奶茶");
    }
}
