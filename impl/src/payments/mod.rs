//! Paying for an order: `unifiedorder`, the pay notify, `orderquery` and `closeorder`.
//! An order is marked paid once, from a verified notify or orderquery, after its
//! amount is checked, in the same transaction that appends the ledger row.

mod jobs;

use chrono::Utc;

use campus_dal::orders::{self as q, Order};
use campus_dal::payments::{self as ledger, NewEvent};
use campus_dal::refunds::{self as rq, NewRefund};
use campus_dal::{
    CallbackKind, CallbackOutcome, LedgerEvent, LedgerSource, OrderId, OrderKind, OrderMove,
    OrderStatus, RefundCause, RefundStatus, time,
};

use crate::db::{Db, DbError};
use crate::orders::{InvalidTransition, OrderNotFound, find_visible, lost_race};
use crate::refunds::Refunds;
use crate::subscriptions::{OrderEvent, Subscriptions};
use crate::users::CurrentUser;
use crate::wechat::pay::{JsapiParams, NotifyReply, PayClient, PayError, UnifiedOrderRequest};

/// WeChat keeps a prepay id two hours; reuse it while it has this much life left.
const PREPAY_MARGIN_SECS: i64 = 60;

/// WeChat refuses a JSAPI order whose `time_expire` is less than 5 minutes away, so a pay
/// window with less left is over for paying (a prepay id made earlier is not handed out
/// either: the user would be paying into an order about to close).
const MIN_PAY_WINDOW_SECS: i64 = 300;

/// WeChat: "订单生成后不能马上调用关单接口，最短调用时间间隔为5分钟".
pub const CLOSEORDER_MIN_AGE_SECS: i64 = 300;

/// What WeChat says when `time_expire` is too near (its return_msg names the field).
const TIME_EXPIRE_FIELD: &str = "time_expire";

/// The payment service.
#[derive(Clone)]
pub struct Payments {
    db: Db,
    pay: PayClient,
    refunds: Refunds,
    subscriptions: Subscriptions,
    /// Where WeChat sends pay notifies: `{PUBLIC_BASE_URL}/api/v1/pay/notify`.
    notify_url: String,
    /// How long after the first `unifiedorder` WeChat accepts `closeorder`.
    closeorder_min_age: chrono::Duration,
    /// The period of the payment jobs: a failed WeChat close is retried after it.
    retry_after: chrono::Duration,
}

/// Timing of the payment service: WeChat's `closeorder` rule and the jobs' period.
#[derive(Clone, Copy, Debug)]
pub struct PayTimes {
    pub closeorder_min_age: chrono::Duration,
    pub period: chrono::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    #[error(transparent)]
    NotFound(#[from] OrderNotFound),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("the payment window of this order has closed")]
    PaymentExpired,
    #[error("WeChat Pay could not complete the request")]
    Pay(#[from] PayError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What applying a confirmed payment did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Applied {
    Paid,
    Duplicate,
    /// The money landed on an order closed meanwhile: a full refund was queued.
    LateOnClosed(String),
    AmountMismatch,
    UnknownOrder,
}

pub(crate) struct Confirmed<'a> {
    pub out_trade_no: &'a str,
    pub transaction_id: &'a str,
    pub total_fee: i64,
    pub source: LedgerSource,
    pub raw: Option<&'a [u8]>,
}

impl Payments {
    pub fn new(
        db: Db,
        pay: PayClient,
        refunds: Refunds,
        subscriptions: Subscriptions,
        notify_url: String,
        times: PayTimes,
    ) -> Self {
        Self {
            db,
            pay,
            refunds,
            subscriptions,
            notify_url,
            closeorder_min_age: times.closeorder_min_age,
            retry_after: times.period,
        }
    }

    /// JSAPI parameters for `wx.requestPayment`; `unifiedorder` is called once per order
    /// and its prepay id reused while valid.
    pub async fn pay_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
        client_ip: &str,
    ) -> Result<JsapiParams, PaymentError> {
        let o: Order = find_visible::<PaymentError>(&self.db, user, id).await?;
        if o.customer_id != user.id {
            return Err(OrderNotFound.into());
        }
        if o.status.after(OrderMove::Pay).is_none() {
            return Err(InvalidTransition {
                from: o.status,
                action: OrderMove::Pay.verb(),
            }
            .into());
        }
        let now = Utc::now();
        let deadline = o.pay_deadline.and_utc();
        if deadline < now + chrono::Duration::seconds(MIN_PAY_WINDOW_SECS) {
            return Err(PaymentError::PaymentExpired);
        }
        let margin = chrono::Duration::seconds(PREPAY_MARGIN_SECS);
        if let (Some(pid), Some(exp)) = (&o.prepay_id, o.prepay_expires_at)
            && exp.and_utc() > now + margin
        {
            return Ok(self.pay.jsapi_params(pid));
        }
        let req = UnifiedOrderRequest {
            out_trade_no: o.out_trade_no.clone(),
            body: pay_body(o.kind),
            total_fee: o.amount_fen,
            openid: user.row.openid.clone(),
            spbill_create_ip: client_ip.to_string(),
            time_expire: deadline,
            notify_url: self.notify_url.clone(),
            attach: None,
        };
        let prepay_id = match self.pay.unified_order(&req).await {
            Ok(p) => p,
            Err(PayError::OrderPaid) => {
                // The notify may still be on its way: ask WeChat now rather than wait.
                self.reconcile_order(&o).await?;
                return Err(InvalidTransition {
                    from: OrderStatus::Paid,
                    action: OrderMove::Pay.verb(),
                }
                .into());
            }
            Err(PayError::OrderClosed) => {
                return Err(InvalidTransition {
                    from: OrderStatus::Closed,
                    action: OrderMove::Pay.verb(),
                }
                .into());
            }
            // The window ran under WeChat's minimum between our check and its own.
            Err(PayError::Return { msg }) if msg.contains(TIME_EXPIRE_FIELD) => {
                return Err(PaymentError::PaymentExpired);
            }
            Err(e) => return Err(e.into()),
        };
        let expires = (now + chrono::Duration::hours(2)).min(deadline).naive_utc();
        let pid = prepay_id.clone();
        let first_made = o.prepay_at;
        let stored = self
            .db
            .write(move |c| {
                let now = time::now();
                q::set_prepay(c, id, &pid, expires, first_made.unwrap_or(now), now)
                    .map_err(PaymentError::from)
            })
            .await?;
        if stored != 1 {
            return Err(lost_race(&self.db, id, OrderMove::Pay.verb()).await);
        }
        Ok(self.pay.jsapi_params(&prepay_id))
    }

    /// `POST /pay/notify`. Never fails: every outcome is a reply for WeChat.
    pub async fn handle_pay_notify(&self, body: &[u8]) -> NotifyReply {
        let n = match self.pay.verify_pay_notify(body) {
            Ok(n) => n,
            Err(e) => {
                // Counted, not stored: anyone can post junk here, and a row per junk
                // post would grow the table and hold up the writer real notifies need.
                if self
                    .pay
                    .metrics()
                    .rejected_notify(CallbackKind::Pay.as_str(), e.reason())
                {
                    tracing::warn!(reason = e.reason(), error = %e, "pay notify rejected (sampled)");
                }
                return NotifyReply::fail(e.reason());
            }
        };
        let Some(txid) = n.transaction_id.as_deref().filter(|_| n.paid) else {
            self.log_callback(
                CallbackKind::Pay,
                Some(&n.out_trade_no),
                CallbackOutcome::NotPaid,
                body,
            )
            .await;
            return NotifyReply::success();
        };
        let applied = self
            .apply_payment(Confirmed {
                out_trade_no: &n.out_trade_no,
                transaction_id: txid,
                total_fee: n.total_fee,
                source: LedgerSource::Notify,
                raw: Some(body),
            })
            .await;
        match applied {
            Ok(Applied::AmountMismatch) => NotifyReply::fail("total_fee does not match the order"),
            Ok(Applied::UnknownOrder) => NotifyReply::fail("unknown out_trade_no"),
            Ok(_) => NotifyReply::success(),
            Err(e) => {
                // FAIL makes WeChat retry later, which is what a database hiccup needs.
                tracing::error!(error = %e, "pay notify could not be applied");
                NotifyReply::fail("temporarily unable to process")
            }
        }
    }

    /// Keeps the raw callback for the record (what WeChat said, whatever we made of it).
    pub(crate) async fn log_callback(
        &self,
        kind: CallbackKind,
        out_trade_no: Option<&str>,
        outcome: CallbackOutcome,
        body: &[u8],
    ) {
        log_callback(&self.db, kind, out_trade_no, outcome, body).await
    }

    /// Marks the order paid once (amount checked), appending the ledger row and the raw
    /// notify in the same transaction. A payment on a closed order queues a full refund.
    pub(crate) async fn apply_payment(&self, p: Confirmed<'_>) -> Result<Applied, PaymentError> {
        let otn = p.out_trade_no.to_string();
        let txid = p.transaction_id.to_string();
        let fee = p.total_fee;
        let source = p.source;
        let raw = p.raw.map(|b| String::from_utf8_lossy(b).into_owned());
        let applied = self
            .db
            .write_tx(move |c| -> Result<Applied, PaymentError> {
                let now = time::now();
                let log = |c: &mut campus_dal::Conn, outcome: CallbackOutcome| {
                    match &raw {
                        Some(body) => ledger::record_notification(c, CallbackKind::Pay, Some(&otn), outcome, body, now).map(|_| ()),
                        None => Ok(()),
                    }
                };
                let Some(o) = q::find_by_out_trade_no(c, &otn)? else {
                    log(c, CallbackOutcome::UnknownOrder)?;
                    return Ok(Applied::UnknownOrder);
                };
                if fee != o.amount_fen {
                    tracing::error!(out_trade_no = %otn, expected = o.amount_fen, got = fee, "paid amount mismatch");
                    log(c, CallbackOutcome::AmountMismatch)?;
                    return Ok(Applied::AmountMismatch);
                }
                let event = |event| NewEvent {
                    order_id: o.id,
                    out_trade_no: &o.out_trade_no,
                    event,
                    amount_fen: fee,
                    source,
                    reference: &txid,
                    at: now,
                };
                if q::mark_paid(c, o.id, &txid, now)? == 1 {
                    ledger::append(c, &event(LedgerEvent::Paid))?;
                    // The coupon the order holds is spent with the payment, or neither is.
                    campus_dal::coupons::use_for_order(c, o.id, now)?;
                    log(c, CallbackOutcome::Paid)?;
                    return Ok(Applied::Paid);
                }
                // The status read above may be older than the close that made `mark_paid`
                // miss (on MariaDB it is the transaction's snapshot, taken before a cancel
                // committed): an order read as still unpaid may be closed by now, and only
                // `record_late_payment`'s own condition sees that.
                let may_be_closed = matches!(o.status, OrderStatus::Created | OrderStatus::Closed);
                if may_be_closed && q::record_late_payment(c, o.id, &txid, now)? == 1 {
                    ledger::append(c, &event(LedgerEvent::Paid))?;
                    let out_refund_no = format!("{}R1", o.out_trade_no);
                    if q::reserve_refund(c, o.id, fee, &[OrderStatus::Closed], now)? == 1 {
                        rq::insert(
                            c,
                            &NewRefund {
                                order_id: o.id,
                                out_refund_no: &out_refund_no,
                                refund_fen: fee,
                                reason: "paid after the order was closed",
                                cause: RefundCause::PaidAfterClose,
                                status: RefundStatus::Requested,
                                requested_by: None,
                                created_at: now,
                                updated_at: now,
                            },
                        )?;
                        ledger::append(
                            c,
                            &NewEvent {
                                reference: &out_refund_no,
                                ..event(LedgerEvent::RefundRequested)
                            },
                        )?;
                    }
                    log(c, CallbackOutcome::PaidAfterClose)?;
                    return Ok(Applied::LateOnClosed(out_refund_no));
                }
                log(c, CallbackOutcome::Duplicate)?;
                Ok(Applied::Duplicate)
            })
            .await?;
        match &applied {
            Applied::Paid => {
                tracing::info!(out_trade_no = p.out_trade_no, %source, "order paid");
                // Read the order again only when order messages are on (a read per notify).
                let otn = p.out_trade_no.to_string();
                if self.subscriptions.order_messages_on()
                    && let Ok(Some(o)) = self
                        .db
                        .read(move |c| q::find_by_out_trade_no(c, &otn).map_err(PaymentError::from))
                        .await
                {
                    self.subscriptions.announce(&o, OrderEvent::Paid);
                }
            }
            Applied::LateOnClosed(no) => {
                tracing::warn!(
                    out_trade_no = p.out_trade_no,
                    "payment on a closed order; refunding"
                );
                self.refunds.process_refund_by_no(no).await;
            }
            _ => {}
        }
        Ok(applied)
    }

    /// Asks WeChat about an unpaid order and applies a payment it reports.
    pub(crate) async fn reconcile_order(&self, o: &Order) -> Result<bool, PaymentError> {
        let r = match self.pay.order_query(&o.out_trade_no).await {
            Ok(r) => r,
            Err(PayError::OrderNotExist) => return Ok(false),
            Err(e) => return Err(e.into()),
        };
        if !r.trade_state.is_paid() {
            return Ok(false);
        }
        let (Some(txid), Some(fee)) = (r.transaction_id.as_deref(), r.total_fee) else {
            return Err(PayError::BadField("transaction_id/total_fee").into());
        };
        let applied = self
            .apply_payment(Confirmed {
                out_trade_no: &o.out_trade_no,
                transaction_id: txid,
                total_fee: fee,
                source: LedgerSource::OrderQuery,
                raw: None,
            })
            .await?;
        Ok(matches!(applied, Applied::Paid | Applied::LateOnClosed(_)))
    }

    /// Closes an unpaid order: first asks WeChat (a payment that just landed is kept),
    /// then closes it here at once. WeChat's order is closed now when WeChat allows it
    /// (5 minutes after `unifiedorder`), else later by the payment job; a payment that
    /// lands meanwhile is refunded in full ([`Applied::LateOnClosed`]).
    pub(crate) async fn close_unpaid(
        &self,
        o: &Order,
        why: &'static str,
    ) -> Result<(), PaymentError> {
        if o.prepay_id.is_some() && self.reconcile_order(o).await? {
            return Err(paid_meanwhile().into());
        }
        self.close_known_unpaid(o, why).await
    }

    /// [`Self::close_unpaid`] once `orderquery` has said the order is not paid.
    async fn close_known_unpaid(&self, o: &Order, why: &'static str) -> Result<(), PaymentError> {
        let mut wechat_close_at = None;
        if o.prepay_id.is_some() {
            let now = time::now();
            let due = o.prepay_at.map_or(now, |at| at + self.closeorder_min_age);
            if due > now {
                wechat_close_at = Some(due);
            } else {
                match self.pay.close_order(&o.out_trade_no).await {
                    Ok(()) | Err(PayError::OrderNotExist) => {}
                    Err(PayError::OrderPaid) => {
                        self.reconcile_order(o).await?;
                        return Err(paid_meanwhile().into());
                    }
                    Err(e) => {
                        tracing::warn!(order = %o.id, error = %e, "closeorder failed; retried later");
                        wechat_close_at = Some(now + self.retry_after);
                    }
                }
            }
        }
        let id = o.id;
        let closed = self
            .db
            .write_tx(move |c| -> Result<usize, PaymentError> {
                let now = time::now();
                let closed = q::close(c, id, wechat_close_at, now)?;
                if closed == 1 {
                    // A coupon the order held goes back to its owner with the close.
                    campus_dal::coupons::release_for_order(c, id, now)?;
                }
                Ok(closed)
            })
            .await?;
        if closed == 1 {
            tracing::info!(order = %id, why, wechat_close_pending = wechat_close_at.is_some(), "order closed");
            Ok(())
        } else {
            Err(lost_race(&self.db, id, OrderMove::Close.verb()).await)
        }
    }

    /// Closes WeChat's order of an order closed here. A payment WeChat took meanwhile
    /// is applied, which refunds it.
    pub(crate) async fn close_at_wechat(&self, o: &Order) -> Result<(), PaymentError> {
        match self.pay.close_order(&o.out_trade_no).await {
            Ok(()) | Err(PayError::OrderNotExist) => {}
            Err(PayError::OrderPaid) => {
                self.reconcile_order(o).await?;
            }
            Err(e) => return Err(e.into()),
        }
        let id = o.id;
        self.db
            .write(move |c| q::wechat_closed(c, id).map_err(PaymentError::from))
            .await?;
        Ok(())
    }
}

fn paid_meanwhile() -> InvalidTransition {
    InvalidTransition {
        from: OrderStatus::Paid,
        action: OrderMove::Close.verb(),
    }
}

/// The unifiedorder `body` in WeChat's recommended form, `商家名称-销售商品类目`.
fn pay_body(kind: OrderKind) -> String {
    let category = match kind {
        OrderKind::Express => "快递代取",
        OrderKind::Takeout => "外卖代送",
        OrderKind::Errand => "跑腿代办",
    };
    format!("校园跑腿-{category}")
}

/// Records a raw WeChat Pay callback; a failure to record is logged, never fatal.
pub(crate) async fn log_callback(
    db: &Db,
    kind: CallbackKind,
    out_trade_no: Option<&str>,
    outcome: CallbackOutcome,
    body: &[u8],
) {
    let otn = out_trade_no.map(str::to_string);
    let body: String = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
    let r = db
        .write(move |c| {
            ledger::record_notification(c, kind, otn.as_deref(), outcome, &body, time::now())
                .map_err(DbError::from)
        })
        .await;
    if let Err(e) = r {
        tracing::warn!(error = %e, "could not record a WeChat Pay callback");
    }
}
