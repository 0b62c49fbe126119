//! WeChat Pay v2: XML, signing, the API client and notify handling.

pub mod bill;
pub mod client;
pub mod error;
pub mod identity;
pub mod notify;
pub mod sign;
pub mod transfers;
pub mod xml;

pub use bill::BillDownload;
pub use client::{
    JsapiParams, OrderQuery, PayClient, PayConfig, RefundAccepted, RefundQuery, RefundRequest,
    RefundStatus, TradeState, UnifiedOrderRequest, beijing_time,
};
pub use error::{NotifyError, PayError};
pub use identity::ClientIdentity;
pub use notify::{NotifyReply, PayNotify, RefundNotify, reply_fail, reply_success};
pub use transfers::{TransferAnswer, TransferLookup, TransferRequest};

/// How Pay v2 messages are signed (`WECHAT_PAY_SIGN_TYPE`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SignType {
    Md5,
    HmacSha256,
}

impl SignType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "MD5" => Some(Self::Md5),
            "HMAC-SHA256" => Some(Self::HmacSha256),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Md5 => "MD5",
            Self::HmacSha256 => "HMAC-SHA256",
        }
    }
}
