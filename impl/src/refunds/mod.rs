//! Refunds: a full refund when a paid order is cancelled, partial ones by admins, and a
//! full one for money that landed on a closed order. Each attempt has a fixed
//! `out_refund_no`, reused on every retry, and reserves its amount on the order first,
//! so the sum of refunds can never exceed what was paid.
//!
//! An unclear answer never frees the money: only a definite refusal that `refundquery`
//! confirms (no such refund at WeChat, or REFUNDCLOSE) releases the reservation. Garbled,
//! unsigned or oversized replies, HTTP errors, timeouts and SYSTEMERROR leave the refund
//! queued under the same `out_refund_no` until `refundquery` or the refund notify settles
//! it; NOTENOUGH is retried later; CHANGE keeps the amount reserved as `manual`.

mod admin;
mod jobs;

pub use admin::AdminRefundView;

use serde::Deserialize;
use utoipa::ToSchema;

use campus_dal::orders::{self as q, Order};
use campus_dal::payments::{self as ledger, NewEvent};
use campus_dal::refunds::{self as rq, NewRefund, Refund};
use campus_dal::{
    CallbackKind, CallbackOutcome, LedgerEvent, LedgerSource, OrderId, OrderMove, OrderStatus,
    RefundCause, RefundStatus, UserId, time,
};

use crate::db::{Db, DbError};
use crate::orders::{InvalidTransition, OrderNotFound};
use crate::payments::log_callback;
use crate::payouts::Earnings;
use crate::subscriptions::{OrderEvent, Subscriptions};
use crate::text::InvalidInput;
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::pay::{
    NotifyReply, PayClient, PayError, RefundRequest, RefundStatus as WechatRefundStatus,
};

/// WeChat allows at most 50 partial refunds per order.
const MAX_REFUNDS: usize = 50;

/// The refund service.
#[derive(Clone)]
pub struct Refunds {
    db: Db,
    pay: PayClient,
    subscriptions: Subscriptions,
    /// Where WeChat sends refund notifies: `{PUBLIC_BASE_URL}/api/v1/pay/refund-notify`.
    notify_url: String,
    /// Debits the runner when a completed order's refund succeeds.
    earnings: Earnings,
}

#[derive(Debug, thiserror::Error)]
pub enum RefundError {
    #[error(transparent)]
    NotFound(#[from] OrderNotFound),
    #[error("no such refund")]
    UnknownRefund,
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("refund exceeds what was paid minus what is already refunded")]
    RefundExceedsPaid,
    #[error("WeChat Pay could not complete the request")]
    Pay(#[from] PayError),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRefund {
    pub refund_fen: i64,
    #[serde(default)]
    pub reason: String,
}

impl Refunds {
    pub fn new(db: Db, pay: PayClient, subscriptions: Subscriptions, notify_url: String) -> Self {
        Self {
            db,
            pay,
            subscriptions,
            notify_url,
            earnings: Earnings::default(),
        }
    }

    /// The runner's share taken back when a completed order is refunded.
    pub fn with_earnings(mut self, earnings: Earnings) -> Self {
        self.earnings = earnings;
        self
    }

    /// Cancel after payment: paid|accepted → refunding, and a refund of all that is left.
    pub(crate) async fn refund_in_full(
        &self,
        o: &Order,
        reason: &'static str,
    ) -> Result<(), RefundError> {
        let id = o.id;
        let out_refund_no = self
            .db
            .write_tx(move |c| -> Result<Option<String>, RefundError> {
                let now = time::now();
                if q::transition(c, id, OrderMove::StartRefund, now)? != 1 {
                    let cur = q::find(c, id)?.ok_or(OrderNotFound)?;
                    return Err(InvalidTransition {
                        from: cur.status,
                        action: "cancel",
                    }
                    .into());
                }
                let o = q::find(c, id)?.ok_or(OrderNotFound)?;
                let rest = o.amount_fen - o.refund_reserved_fen;
                if rest <= 0 {
                    // Everything is already being refunded by earlier requests.
                    q::finish_refunding(c, id, now)?;
                    return Ok(None);
                }
                new_refund(
                    c,
                    &o,
                    rest,
                    reason,
                    RefundCause::Cancel,
                    None,
                    &[OrderStatus::Refunding],
                )
                .map(Some)
            })
            .await?;
        if let Some(no) = out_refund_no {
            self.process_refund_by_no(&no).await;
        }
        Ok(())
    }

    /// `POST /admin/orders/{id}/refund`: partial or full, never above paid minus refunded.
    pub async fn admin_refund(
        &self,
        caller: &CurrentUser,
        id: OrderId,
        req: AdminRefund,
    ) -> Result<Vec<RefundView>, RefundError> {
        caller.require(Role::Admin)?;
        if req.refund_fen < 1 {
            return Err(InvalidInput::new("refund_fen must be at least 1").into());
        }
        let reason: String = req.reason.trim().chars().take(200).collect();
        let fen = req.refund_fen;
        let admin = caller.id;
        let no = self
            .db
            .write_tx(move |c| -> Result<String, RefundError> {
                let o = q::find(c, id)?.ok_or(OrderNotFound)?;
                if !o.status.holds_payment() {
                    return Err(InvalidTransition {
                        from: o.status,
                        action: "refund",
                    }
                    .into());
                }
                if rq::for_order(c, id)?.len() >= MAX_REFUNDS {
                    return Err(InvalidInput(format!(
                        "an order can be refunded at most {MAX_REFUNDS} times"
                    ))
                    .into());
                }
                let reason = if reason.is_empty() {
                    "refund by admin".to_string()
                } else {
                    reason
                };
                let no = new_refund(
                    c,
                    &o,
                    fen,
                    &reason,
                    RefundCause::Admin,
                    Some(admin),
                    OrderStatus::HOLDING_PAYMENT,
                )?;
                // A refund of everything on an order not yet picked up ends the errand.
                let o = q::find(c, id)?.ok_or(OrderNotFound)?;
                if o.refund_reserved_fen == o.amount_fen {
                    q::transition(c, id, OrderMove::StartRefund, time::now())?;
                }
                Ok(no)
            })
            .await?;
        self.process_refund_by_no(&no).await;
        self.refunds_of(id).await
    }

    /// Refunds an admin must look at (see [`rq::needing_attention`]): `manual` ones, failed
    /// ones of orders still `refunding`, and ones unsettled for more than a day.
    pub async fn needing_attention(&self, limit: i64) -> Result<Vec<RefundView>, RefundError> {
        let stuck_before = time::now() - chrono::Duration::days(1);
        let rows = self
            .db
            .read(move |c| rq::needing_attention(c, stuck_before, limit).map_err(RefundError::from))
            .await?;
        Ok(rows.iter().map(RefundView::of).collect())
    }

    pub async fn refunds_of(&self, id: OrderId) -> Result<Vec<RefundView>, RefundError> {
        let rows = self
            .db
            .read(move |c| rq::for_order(c, id).map_err(RefundError::from))
            .await?;
        Ok(rows.iter().map(RefundView::of).collect())
    }

    /// Calls WeChat for a queued refund. Failures stay queued for the settle job.
    pub(crate) async fn process_refund_by_no(&self, out_refund_no: &str) {
        let no = out_refund_no.to_string();
        let found = self.db.read(move |c| refund_and_order(c, &no)).await;
        match found {
            Ok(Some((r, o))) => {
                if let Err(e) = self.call_refund(&r, &o).await {
                    tracing::warn!(out_refund_no, error = %e, "refund call failed; will retry");
                }
            }
            Ok(None) => tracing::error!(out_refund_no, "queued refund vanished"),
            Err(e) => tracing::warn!(out_refund_no, error = %e, "could not load refund"),
        }
    }

    async fn call_refund(&self, r: &Refund, o: &Order) -> Result<(), RefundError> {
        let req = RefundRequest {
            out_trade_no: o.out_trade_no.clone(),
            out_refund_no: r.out_refund_no.clone(),
            total_fee: o.amount_fen,
            refund_fee: r.refund_fen,
            notify_url: self.notify_url.clone(),
            reason: Some(r.reason.clone()),
        };
        let rid = r.id;
        let e = match self.pay.refund(&req).await {
            Ok(acc) => {
                self.db
                    .write(move |c| {
                        rq::mark_processing(c, rid, &acc.refund_id, time::now())
                            .map_err(RefundError::from)
                    })
                    .await?;
                return Ok(());
            }
            Err(e) => e,
        };
        let msg = e.to_string();
        self.db
            .write(move |c| rq::note_attempt(c, rid, &msg, time::now()).map_err(RefundError::from))
            .await?;
        if matches!(e, PayError::NotEnough | PayError::NoClientCertificate(_)) {
            // The merchant's balance is short (or the certificate is missing): the same
            // out_refund_no is tried again by the settle job.
            return Err(e.into());
        }
        // Whatever the answer was, WeChat may have accepted the refund: ask it.
        let definite = e.is_definite_refusal();
        match self.pay.refund_query(&r.out_refund_no).await {
            Ok(q) => {
                self.apply_query(r, q.status, q.refund_id).await?;
            }
            Err(PayError::RefundNotExist) if definite => {
                tracing::error!(
                    out_refund_no = %r.out_refund_no, cause = %r.cause, error = %e,
                    "refund refused by WeChat and confirmed unknown by refundquery; amount released"
                );
                self.settle_refund(
                    &r.out_refund_no,
                    Settlement::Failed(e.to_string()),
                    LedgerSource::RefundQuery,
                )
                .await?;
            }
            Err(qe) => {
                tracing::warn!(
                    out_refund_no = %r.out_refund_no, error = %e, query_error = %qe,
                    "refund answer unclear; kept for the settle job"
                );
            }
        }
        Err(e.into())
    }

    /// Applies a `refundquery` (or notify) status. PROCESSING marks an accepted refund
    /// `processing`; unknown statuses change nothing.
    async fn apply_query(
        &self,
        r: &Refund,
        status: WechatRefundStatus,
        refund_id: Option<String>,
    ) -> Result<bool, RefundError> {
        let outcome = match status {
            WechatRefundStatus::Success => Settlement::Success(refund_id),
            WechatRefundStatus::Processing => {
                if let Some(wid) = refund_id.filter(|_| r.status == RefundStatus::Requested) {
                    let rid = r.id;
                    self.db
                        .write(move |c| {
                            rq::mark_processing(c, rid, &wid, time::now())
                                .map_err(RefundError::from)
                        })
                        .await?;
                }
                return Ok(false);
            }
            WechatRefundStatus::Closed => Settlement::Failed("REFUNDCLOSE".into()),
            WechatRefundStatus::Change => Settlement::Manual("CHANGE".into()),
            WechatRefundStatus::Other(s) => {
                tracing::warn!(out_refund_no = %r.out_refund_no, status = %s, "unknown refund status; kept");
                return Ok(false);
            }
        };
        self.settle_refund(&r.out_refund_no, outcome, LedgerSource::RefundQuery)
            .await
    }

    /// `POST /pay/refund-notify`. Never fails: every outcome is a reply for WeChat.
    pub async fn handle_refund_notify(&self, body: &[u8]) -> NotifyReply {
        let n = match self.pay.decrypt_refund_notify(body) {
            Ok(n) => n,
            Err(e) => {
                // Counted, not stored (see the pay notify).
                if self
                    .pay
                    .metrics()
                    .rejected_notify(CallbackKind::Refund.as_str(), e.reason())
                {
                    tracing::warn!(reason = e.reason(), "refund notify rejected (sampled)");
                }
                return NotifyReply::fail(e.reason());
            }
        };
        let no = n.out_refund_no.clone();
        let known = self.db.read(move |c| refund_and_order(c, &no)).await;
        let fail = |m: &str| NotifyReply {
            ok: false,
            body: crate::wechat::pay::reply_fail(m),
        };
        let (r, o) = match known {
            Ok(Some(x)) => x,
            Ok(None) => {
                self.log_callback(Some(&n.out_trade_no), CallbackOutcome::UnknownRefund, body)
                    .await;
                return fail("unknown out_refund_no");
            }
            Err(e) => {
                tracing::error!(error = %e, "refund notify could not be applied");
                return fail("temporarily unable to process");
            }
        };
        if o.out_trade_no != n.out_trade_no || r.refund_fen != n.refund_fee {
            self.log_callback(Some(&n.out_trade_no), CallbackOutcome::Mismatch, body)
                .await;
            return fail("refund does not match our records");
        }
        let outcome = match n.refund_status {
            WechatRefundStatus::Success => Settlement::Success(Some(n.refund_id.clone())),
            WechatRefundStatus::Processing => {
                self.log_callback(Some(&n.out_trade_no), CallbackOutcome::Processing, body)
                    .await;
                return NotifyReply::success();
            }
            WechatRefundStatus::Closed => Settlement::Failed("REFUNDCLOSE".into()),
            WechatRefundStatus::Change => Settlement::Manual("CHANGE".into()),
            WechatRefundStatus::Other(status) => {
                // Not an outcome we know: refundquery settles it later.
                tracing::warn!(out_refund_no = %r.out_refund_no, %status, "refund notify with an unknown status");
                self.log_callback(Some(&n.out_trade_no), CallbackOutcome::Processing, body)
                    .await;
                return NotifyReply::success();
            }
        };
        match self
            .settle_refund(&r.out_refund_no, outcome, LedgerSource::RefundNotify)
            .await
        {
            Ok(_) => {
                self.log_callback(Some(&n.out_trade_no), CallbackOutcome::Settled, body)
                    .await;
                NotifyReply::success()
            }
            Err(e) => {
                tracing::error!(error = %e, "refund notify could not be applied");
                fail("temporarily unable to process")
            }
        }
    }

    /// Applies a refund's result once: success adds to `refunded_fen` (and ends
    /// `refunding` when all is back), also for a refund already marked failed (WeChat paid
    /// after all: its amount is reserved again and an alert logged); failure releases the
    /// reserved amount; manual keeps it reserved.
    async fn settle_refund(
        &self,
        out_refund_no: &str,
        outcome: Settlement,
        source: LedgerSource,
    ) -> Result<bool, RefundError> {
        let no = out_refund_no.to_string();
        let earnings = self.earnings;
        let settled = self
            .db
            .write_tx(move |c| -> Result<Option<Settled>, RefundError> {
                let now = time::now();
                let (r, o) = refund_and_order(c, &no)?.ok_or(RefundError::UnknownRefund)?;
                let event = |event| NewEvent {
                    order_id: o.id,
                    out_trade_no: &o.out_trade_no,
                    event,
                    amount_fen: r.refund_fen,
                    source,
                    reference: &r.out_refund_no,
                    at: now,
                };
                match &outcome {
                    Settlement::Success(refund_id) => {
                        if r.status == RefundStatus::Success
                            || rq::mark_success(c, r.id, r.status, refund_id.as_deref(), now)? != 1
                        {
                            return Ok(None);
                        }
                        let mut late = None;
                        let mut counted = r.refund_fen;
                        if r.status == RefundStatus::Failed {
                            // Its reservation was released: take it again. More than was
                            // paid cannot be on the books; the alert says how much more.
                            let cur = q::find(c, o.id)?.ok_or(OrderNotFound)?;
                            let room = (cur.amount_fen - cur.refund_reserved_fen).max(0);
                            counted = r.refund_fen.min(room);
                            late = Some(r.refund_fen - counted);
                            q::reserve_refund_regardless(c, o.id, counted, now)?;
                        }
                        q::add_refunded(c, o.id, counted, now)?;
                        ledger::append(c, &event(LedgerEvent::Refunded))?;
                        // A completed order's runner gives back the same share (payouts).
                        earnings.debit_refund(c, &o, &r.out_refund_no, counted)?;
                        let finished = q::finish_refunding(c, o.id, now)? == 1;
                        Ok(Some(Settled {
                            order: finished.then_some(o.clone()),
                            late_over_paid: late,
                            refund: r.clone(),
                        }))
                    }
                    Settlement::Failed(why) => {
                        if rq::mark_failed(c, r.id, why, now)? != 1 {
                            return Ok(None);
                        }
                        q::release_refund(c, o.id, r.refund_fen, now)?;
                        ledger::append(c, &event(LedgerEvent::RefundFailed))?;
                        if o.status == OrderStatus::Refunding {
                            // The customer's cancel could not be paid back: the order stays
                            // `refunding` and shows in `refunds::needing_attention`.
                            tracing::error!(
                                out_refund_no = %r.out_refund_no, order_id = %o.id, why = %why,
                                "refund failed; the order waits in refunding for an admin"
                            );
                        }
                        Ok(Some(Settled {
                            order: None,
                            late_over_paid: None,
                            refund: r.clone(),
                        }))
                    }
                    Settlement::Manual(why) => {
                        if rq::mark_manual(c, r.id, why, now)? != 1 {
                            return Ok(None);
                        }
                        tracing::error!(
                            out_refund_no = %r.out_refund_no, order_id = %o.id, why = %why,
                            "refund needs manual handling in the merchant platform; amount kept reserved"
                        );
                        Ok(Some(Settled {
                            order: None,
                            late_over_paid: None,
                            refund: r.clone(),
                        }))
                    }
                }
            })
            .await?;
        let Some(s) = settled else {
            return Ok(false);
        };
        if let Some(over) = s.late_over_paid {
            tracing::error!(
                out_refund_no = %s.refund.out_refund_no, order_id = %s.refund.order_id,
                refund_fen = s.refund.refund_fen, paid_out_beyond_payment_fen = over,
                "ALERT: WeChat paid a refund we had marked failed; applied and reserved again"
            );
        }
        if let Some(order) = s.order {
            self.subscriptions.announce(&order, OrderEvent::Refunded);
        }
        Ok(true)
    }

    async fn log_callback(
        &self,
        out_trade_no: Option<&str>,
        outcome: CallbackOutcome,
        body: &[u8],
    ) {
        log_callback(&self.db, CallbackKind::Refund, out_trade_no, outcome, body).await
    }
}

enum Settlement {
    Success(Option<String>),
    /// Definitely not paid: the amount is released.
    Failed(String),
    /// WeChat holds the money (CHANGE): kept reserved for a person.
    Manual(String),
}

struct Settled {
    /// The order, when this settlement finished its `refunding`.
    order: Option<Order>,
    /// For a late SUCCESS on a failed refund: how many fen were paid out beyond what
    /// the order received (not on the order's books).
    late_over_paid: Option<i64>,
    refund: Refund,
}

/// Reserves `fen` and records the refund request in the ledger; returns `out_refund_no`.
fn new_refund(
    c: &mut campus_dal::Conn,
    o: &Order,
    fen: i64,
    reason: &str,
    cause: RefundCause,
    requested_by: Option<UserId>,
    allowed: &[OrderStatus],
) -> Result<String, RefundError> {
    let now = time::now();
    if q::reserve_refund(c, o.id, fen, allowed, now)? != 1 {
        return Err(RefundError::RefundExceedsPaid);
    }
    let n = rq::count_for_numbering(c, o.id)? + 1;
    let out_refund_no = format!("{}R{n}", o.out_trade_no);
    rq::insert(
        c,
        &NewRefund {
            order_id: o.id,
            out_refund_no: &out_refund_no,
            refund_fen: fen,
            reason,
            cause,
            status: RefundStatus::Requested,
            requested_by,
            created_at: now,
            updated_at: now,
        },
    )?;
    ledger::append(
        c,
        &NewEvent {
            order_id: o.id,
            out_trade_no: &o.out_trade_no,
            event: LedgerEvent::RefundRequested,
            amount_fen: fen,
            source: LedgerSource::Api,
            reference: &out_refund_no,
            at: now,
        },
    )?;
    Ok(out_refund_no)
}

#[derive(Clone, Debug, serde::Serialize, ToSchema)]
pub struct RefundView {
    pub order_id: i64,
    pub out_refund_no: String,
    pub refund_fen: i64,
    pub reason: String,
    pub cause: RefundCause,
    pub status: RefundStatus,
    pub attempts: i32,
    /// Why the last call or outcome was not a success, for admins.
    pub last_error: Option<String>,
    /// The admin who asked (admin refunds).
    pub requested_by: Option<i64>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub settled_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RefundView {
    pub fn of(r: &Refund) -> Self {
        Self {
            order_id: r.order_id.0,
            out_refund_no: r.out_refund_no.clone(),
            refund_fen: r.refund_fen,
            reason: r.reason.clone(),
            cause: r.cause,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            requested_by: r.requested_by.map(|u| u.0),
            created_at: time::to_utc(r.created_at),
            settled_at: r.settled_at.map(time::to_utc),
        }
    }
}

/// A refund by its number, with its order.
fn refund_and_order(
    c: &mut campus_dal::Conn,
    out_refund_no: &str,
) -> Result<Option<(Refund, Order)>, RefundError> {
    let Some(r) = rq::find_by_out_refund_no(c, out_refund_no)? else {
        return Ok(None);
    };
    let o = q::find(c, r.order_id)?.ok_or(OrderNotFound)?;
    Ok(Some((r, o)))
}
