//! The order flow: create, pay, grab, pick up, deliver, confirm; cancel and refunds.
//! State lives in SQL and every move is a compare-and-set there, so concurrent
//! requests and several instances cannot both win.

mod flow;
mod jobs;
mod payment;
mod refund;
mod view;

pub use flow::{CreateOrder, Created, ListQuery, OrderKind, Page};
pub use payment::NotifyReply;
pub use refund::AdminRefund;
pub use view::OrderView;

use crate::cache::CacheError;
use crate::db::DbError;
use crate::wechat::pay::PayError;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error("order not found")]
    NotFound,
    #[error("{0}")]
    Invalid(String),
    #[error("cannot {action} an order that is {from}")]
    InvalidTransition { from: String, action: &'static str },
    #[error("another runner already took this order")]
    AlreadyTaken,
    #[error("wrong pickup code")]
    WrongPickupCode,
    #[error("too many wrong pickup codes; try again later")]
    TooManyAttempts,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error("refund exceeds what was paid minus what is already refunded")]
    RefundExceedsPaid,
    #[error("the payment window of this order has closed")]
    PaymentExpired,
    #[error("WeChat Pay could not complete the request")]
    Pay(#[from] PayError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

impl From<campus_dal::DieselError> for OrderError {
    fn from(e: campus_dal::DieselError) -> Self {
        OrderError::Db(DbError::Query(e))
    }
}

/// Order statuses as the contract names them.
pub mod status {
    pub const CREATED: &str = "created";
    pub const PAID: &str = "paid";
    pub const ACCEPTED: &str = "accepted";
    pub const PICKED_UP: &str = "picked_up";
    pub const DELIVERED: &str = "delivered";
    pub const COMPLETED: &str = "completed";
    pub const CLOSED: &str = "closed";
    pub const REFUNDING: &str = "refunding";
    pub const REFUNDED: &str = "refunded";
    pub const ALL: [&str; 9] = [
        CREATED, PAID, ACCEPTED, PICKED_UP, DELIVERED, COMPLETED, CLOSED, REFUNDING, REFUNDED,
    ];
}
