//! The payout behind a small interface: today Pay v2's transfer to balance; merchants
//! onboarded later may only get v3's 商家转账, which can implement the same two calls.

use futures::future::BoxFuture;

use crate::wechat::pay::{PayClient, TransferAnswer, TransferLookup, TransferRequest};

pub trait Payout: Send + Sync {
    /// Whether a transfer can be sent at all (the merchant certificate is loaded).
    fn ready(&self) -> bool;
    /// Sends one transfer; retries pass the same request.
    fn transfer<'a>(&'a self, req: &'a TransferRequest) -> BoxFuture<'a, TransferAnswer>;
    /// What became of the transfer with this number.
    fn lookup<'a>(&'a self, partner_trade_no: &'a str) -> BoxFuture<'a, TransferLookup>;
}

impl Payout for PayClient {
    fn ready(&self) -> bool {
        self.refunds_available()
    }

    fn transfer<'a>(&'a self, req: &'a TransferRequest) -> BoxFuture<'a, TransferAnswer> {
        Box::pin(PayClient::transfer(self, req))
    }

    fn lookup<'a>(&'a self, partner_trade_no: &'a str) -> BoxFuture<'a, TransferLookup> {
        Box::pin(self.transfer_info(partner_trade_no))
    }
}
