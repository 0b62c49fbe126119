//! Errors of the Pay v2 client and of notify handling.
//!
//! None of them carries the API key or a full signature.

use super::identity::IdentityError;
use super::xml::XmlError;

#[derive(Debug, thiserror::Error)]
pub enum PayError {
    /// Settings missing or invalid; names every problem.
    #[error("WeChat Pay is not configured: {0}")]
    Config(String),
    #[error("cannot build the WeChat Pay HTTP client: {0}")]
    Setup(String),
    /// Refunds need the merchant certificate, which could not be loaded at start-up.
    #[error("merchant certificate for mutual TLS is unavailable: {0}")]
    NoClientCertificate(String),
    #[error("request to WeChat Pay failed: {0}")]
    Transport(#[source] reqwest::Error),
    #[error("WeChat Pay answered HTTP {0}")]
    HttpStatus(u16),
    #[error("WeChat Pay answer is not usable XML: {0}")]
    Xml(#[from] XmlError),
    /// `return_code` FAIL: the request itself was refused (bad signature, bad parameters).
    #[error("WeChat Pay refused the request: {msg}")]
    Return { msg: String },
    #[error("WeChat Pay answer has a bad signature")]
    BadResponseSignature,
    #[error("WeChat Pay answer is for another {0}")]
    Mismatch(&'static str),
    #[error("WeChat Pay answer lacks or garbles {0}")]
    BadField(&'static str),
    // result_code FAIL, by err_code:
    #[error("order already paid")]
    OrderPaid,
    #[error("order already closed")]
    OrderClosed,
    #[error("order does not exist")]
    OrderNotExist,
    #[error("merchant balance not enough")]
    NotEnough,
    #[error("refund does not exist")]
    RefundNotExist,
    #[error("invalid request: {description}")]
    InvalidRequest { description: String },
    /// SYSTEMERROR, BIZERR_NEED_RETRY, FREQUENCY_LIMITED: try again with the same parameters.
    #[error("WeChat Pay system error {code}: {description}")]
    SystemError { code: String, description: String },
    #[error("WeChat Pay business error {code}: {description}")]
    Business { code: String, description: String },
}

impl PayError {
    /// Worth retrying later with the same parameters (same out_trade_no / out_refund_no).
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Transport(_) | Self::SystemError { .. } => true,
            Self::HttpStatus(s) => *s >= 500 || *s == 429,
            _ => false,
        }
    }

    /// WeChat answered, signed, that it refuses the request (`return_code` FAIL or a
    /// `result_code` FAIL other than a retry or balance code). Still to be confirmed by a
    /// query before money is released: the same number may have been accepted earlier.
    pub fn is_definite_refusal(&self) -> bool {
        matches!(
            self,
            Self::Return { .. }
                | Self::OrderPaid
                | Self::OrderClosed
                | Self::OrderNotExist
                | Self::RefundNotExist
                | Self::InvalidRequest { .. }
                | Self::Business { .. }
        )
    }

    /// A short, bounded label for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Config(_) => "config",
            Self::Setup(_) => "setup",
            Self::NoClientCertificate(_) => "no_client_cert",
            Self::Transport(e) if e.is_timeout() => "timeout",
            Self::Transport(_) => "transport",
            Self::HttpStatus(_) => "http_status",
            Self::Xml(_) => "bad_xml",
            Self::Return { .. } => "return_fail",
            Self::BadResponseSignature => "bad_signature",
            Self::Mismatch(_) => "mismatch",
            Self::BadField(_) => "bad_field",
            Self::OrderPaid => "order_paid",
            Self::OrderClosed => "order_closed",
            Self::OrderNotExist => "order_not_exist",
            Self::NotEnough => "not_enough",
            Self::RefundNotExist => "refund_not_exist",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::SystemError { .. } => "system_error",
            Self::Business { .. } => "business",
        }
    }

    /// Maps a `result_code` FAIL answer's `err_code` / `err_code_des`.
    pub fn from_err_code(code: &str, description: &str) -> Self {
        match code {
            "ORDERPAID" => Self::OrderPaid,
            "ORDERCLOSED" => Self::OrderClosed,
            "ORDERNOTEXIST" => Self::OrderNotExist,
            "NOTENOUGH" => Self::NotEnough,
            "REFUNDNOTEXIST" => Self::RefundNotExist,
            "INVALID_REQUEST" => Self::InvalidRequest {
                description: description.to_string(),
            },
            "SYSTEMERROR" | "BIZERR_NEED_RETRY" | "FREQUENCY_LIMITED" => Self::SystemError {
                code: code.to_string(),
                description: description.to_string(),
            },
            _ => Self::Business {
                code: code.to_string(),
                description: description.to_string(),
            },
        }
    }
}

impl From<IdentityError> for PayError {
    fn from(e: IdentityError) -> Self {
        Self::NoClientCertificate(e.to_string())
    }
}

/// Why a payment or refund notify was not accepted. Reply with
/// [`reply_fail`](super::notify::reply_fail)`(err.reason())` and change nothing.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("malformed notify XML: {0}")]
    Malformed(#[from] XmlError),
    #[error("notify return_code is not SUCCESS: {msg}")]
    NotSuccess { msg: String },
    #[error("notify signature is missing or wrong")]
    BadSignature,
    #[error("notify is for another appid")]
    WrongAppid,
    #[error("notify is for another mch_id")]
    WrongMchId,
    #[error("notify field {0} is missing or invalid")]
    BadField(&'static str),
    #[error("req_info cannot be decrypted")]
    Decrypt,
}

impl NotifyError {
    /// A short reason for the FAIL reply; says nothing about keys or expected values.
    pub fn reason(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "malformed XML",
            Self::NotSuccess { .. } => "return_code not SUCCESS",
            Self::BadSignature => "bad signature",
            Self::WrongAppid => "appid mismatch",
            Self::WrongMchId => "mch_id mismatch",
            Self::BadField(_) => "bad field",
            Self::Decrypt => "cannot decrypt req_info",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn err_codes_map_to_types() {
        assert!(matches!(
            PayError::from_err_code("ORDERPAID", ""),
            PayError::OrderPaid
        ));
        assert!(matches!(
            PayError::from_err_code("ORDERCLOSED", ""),
            PayError::OrderClosed
        ));
        assert!(matches!(
            PayError::from_err_code("ORDERNOTEXIST", ""),
            PayError::OrderNotExist
        ));
        assert!(matches!(
            PayError::from_err_code("NOTENOUGH", ""),
            PayError::NotEnough
        ));
        assert!(matches!(
            PayError::from_err_code("REFUNDNOTEXIST", ""),
            PayError::RefundNotExist
        ));
        assert!(matches!(
            PayError::from_err_code("INVALID_REQUEST", "x"),
            PayError::InvalidRequest { .. }
        ));
        for code in ["SYSTEMERROR", "BIZERR_NEED_RETRY", "FREQUENCY_LIMITED"] {
            let e = PayError::from_err_code(code, "busy");
            assert!(e.is_retryable(), "{code}");
            assert_eq!(e.kind(), "system_error");
        }
        let other = PayError::from_err_code("OUT_TRADE_NO_USED", "dup");
        assert!(!other.is_retryable());
        assert!(
            matches!(other, PayError::Business { ref code, .. } if code == "OUT_TRADE_NO_USED")
        );
        assert!(!PayError::OrderPaid.is_retryable());
        assert!(PayError::HttpStatus(502).is_retryable());
        assert!(!PayError::HttpStatus(404).is_retryable());
    }
}
