//! Refunds: a full refund when a paid order is cancelled, partial ones by admins, and a
//! full one for money that landed on a closed order. Each attempt has a fixed
//! `out_refund_no`, reused on every retry, and reserves its amount on the order first,
//! so the sum of refunds can never exceed what was paid.

use serde::Deserialize;
use utoipa::ToSchema;

use campus_dal::ledger::{self, NewEvent};
use campus_dal::orders::{self as q, Order};
use campus_dal::refunds::{self as rq, NewRefund, Refund};
use campus_dal::{OrderId, time};

use super::payment::NotifyReply;
use super::{OrderError, status};
use crate::Services;
use crate::notify::OrderEvent;
use crate::wechat::pay::{RefundRequest, RefundStatus};

/// WeChat allows at most 50 partial refunds per order.
const MAX_REFUNDS: usize = 50;

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdminRefund {
    pub refund_fen: i64,
    #[serde(default)]
    pub reason: String,
}

/// Statuses in which money has been received and not all of it returned.
const REFUNDABLE: [&str; 6] = [
    status::PAID,
    status::ACCEPTED,
    status::PICKED_UP,
    status::DELIVERED,
    status::COMPLETED,
    status::REFUNDING,
];

impl Services {
    /// Cancel after payment: paid|accepted → refunding, and a refund of all that is left.
    pub(super) async fn refund_in_full(
        &self,
        o: &Order,
        reason: &'static str,
    ) -> Result<(), OrderError> {
        let id = o.order_id();
        let out_refund_no = self
            .db
            .write_tx(move |c| -> Result<Option<String>, OrderError> {
                let now = time::now();
                if q::transition(
                    c,
                    id,
                    &[status::PAID, status::ACCEPTED],
                    status::REFUNDING,
                    now,
                )? != 1
                {
                    let cur = q::find(c, id)?.ok_or(OrderError::NotFound)?;
                    return Err(OrderError::InvalidTransition {
                        from: cur.status,
                        action: "cancel",
                    });
                }
                let o = q::find(c, id)?.ok_or(OrderError::NotFound)?;
                let rest = o.amount_fen - o.refund_reserved_fen;
                if rest <= 0 {
                    // Everything is already being refunded by earlier requests.
                    q::finish_refunding(c, id, now)?;
                    return Ok(None);
                }
                new_refund(c, &o, rest, reason, "cancel", &[status::REFUNDING]).map(Some)
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
        id: OrderId,
        req: AdminRefund,
    ) -> Result<Vec<RefundView>, OrderError> {
        if req.refund_fen < 1 {
            return Err(OrderError::Invalid("refund_fen must be at least 1".into()));
        }
        let reason: String = req.reason.trim().chars().take(200).collect();
        let fen = req.refund_fen;
        let no = self
            .db
            .write_tx(move |c| -> Result<String, OrderError> {
                let o = q::find(c, id)?.ok_or(OrderError::NotFound)?;
                if !REFUNDABLE.contains(&o.status.as_str()) {
                    return Err(OrderError::InvalidTransition {
                        from: o.status,
                        action: "refund",
                    });
                }
                if rq::for_order(c, id)?.len() >= MAX_REFUNDS {
                    return Err(OrderError::Invalid(format!(
                        "an order can be refunded at most {MAX_REFUNDS} times"
                    )));
                }
                let reason = if reason.is_empty() {
                    "refund by admin".to_string()
                } else {
                    reason
                };
                let no = new_refund(c, &o, fen, &reason, "admin", &REFUNDABLE)?;
                // A refund of everything on an order not yet picked up ends the errand.
                let o = q::find(c, id)?.ok_or(OrderError::NotFound)?;
                if o.refund_reserved_fen == o.amount_fen {
                    q::transition(
                        c,
                        id,
                        &[status::PAID, status::ACCEPTED],
                        status::REFUNDING,
                        time::now(),
                    )?;
                }
                Ok(no)
            })
            .await?;
        self.process_refund_by_no(&no).await;
        self.refunds_of(id).await
    }

    pub async fn refunds_of(&self, id: OrderId) -> Result<Vec<RefundView>, OrderError> {
        let rows = self
            .db
            .read(move |c| rq::for_order(c, id).map_err(OrderError::from))
            .await?;
        Ok(rows.iter().map(RefundView::of).collect())
    }

    /// Calls WeChat for a queued refund. Failures stay queued for the settle job.
    pub(super) async fn process_refund_by_no(&self, out_refund_no: &str) {
        let no = out_refund_no.to_string();
        let found = self
            .db
            .read(move |c| -> Result<Option<(Refund, Order)>, OrderError> {
                let Some(r) = rq::find_by_out_refund_no(c, &no)? else {
                    return Ok(None);
                };
                let o = q::find(c, OrderId(r.order_id))?.ok_or(OrderError::NotFound)?;
                Ok(Some((r, o)))
            })
            .await;
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

    async fn call_refund(&self, r: &Refund, o: &Order) -> Result<(), OrderError> {
        let req = RefundRequest {
            out_trade_no: o.out_trade_no.clone(),
            out_refund_no: r.out_refund_no.clone(),
            total_fee: o.amount_fen,
            refund_fee: r.refund_fen,
            notify_url: format!("{}/api/v1/pay/refund-notify", self.settings.public_base_url),
            reason: Some(r.reason.clone()),
        };
        let rid = r.id;
        match self.pay.refund(&req).await {
            Ok(acc) => {
                self.db
                    .write(move |c| {
                        rq::mark_processing(c, rid, &acc.refund_id, time::now())
                            .map_err(OrderError::from)
                    })
                    .await?;
                Ok(())
            }
            Err(e)
                if e.is_retryable()
                    || matches!(e, crate::wechat::pay::PayError::NoClientCertificate(_)) =>
            {
                let msg = e.to_string();
                self.db
                    .write(move |c| {
                        rq::note_attempt(c, rid, &msg, time::now()).map_err(OrderError::from)
                    })
                    .await?;
                Err(e.into())
            }
            Err(e) => {
                tracing::error!(out_refund_no = %r.out_refund_no, error = %e, "refund refused by WeChat");
                self.settle_refund(
                    &r.out_refund_no,
                    Settlement::Failed(e.to_string()),
                    "refund",
                )
                .await?;
                Err(e.into())
            }
        }
    }

    /// `POST /pay/refund-notify`. Never fails: every outcome is a reply for WeChat.
    pub async fn handle_refund_notify(&self, body: &[u8]) -> NotifyReply {
        let n = match self.pay.decrypt_refund_notify(body) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(reason = e.reason(), "refund notify rejected");
                self.log_notify("refund", None, &format!("rejected: {}", e.reason()), body)
                    .await;
                return NotifyReply {
                    ok: false,
                    body: crate::wechat::pay::reply_fail(e.reason()),
                };
            }
        };
        let no = n.out_refund_no.clone();
        let known = self
            .db
            .read(move |c| -> Result<Option<(Refund, Order)>, OrderError> {
                let Some(r) = rq::find_by_out_refund_no(c, &no)? else {
                    return Ok(None);
                };
                let o = q::find(c, OrderId(r.order_id))?.ok_or(OrderError::NotFound)?;
                Ok(Some((r, o)))
            })
            .await;
        let fail = |m: &str| NotifyReply {
            ok: false,
            body: crate::wechat::pay::reply_fail(m),
        };
        let (r, o) = match known {
            Ok(Some(x)) => x,
            Ok(None) => {
                self.log_notify("refund", Some(&n.out_trade_no), "unknown_refund", body)
                    .await;
                return fail("unknown out_refund_no");
            }
            Err(e) => {
                tracing::error!(error = %e, "refund notify could not be applied");
                return fail("temporarily unable to process");
            }
        };
        if o.out_trade_no != n.out_trade_no || r.refund_fen != n.refund_fee {
            self.log_notify("refund", Some(&n.out_trade_no), "mismatch", body)
                .await;
            return fail("refund does not match our records");
        }
        let outcome = match n.refund_status {
            RefundStatus::Success => Settlement::Success(Some(n.refund_id.clone())),
            RefundStatus::Processing => {
                self.log_notify("refund", Some(&n.out_trade_no), "processing", body)
                    .await;
                return NotifyReply {
                    ok: true,
                    body: crate::wechat::pay::reply_success().into(),
                };
            }
            other => Settlement::Failed(format!("{other:?}")),
        };
        match self
            .settle_refund(&r.out_refund_no, outcome, "refund_notify")
            .await
        {
            Ok(_) => {
                self.log_notify("refund", Some(&n.out_trade_no), "settled", body)
                    .await;
                NotifyReply {
                    ok: true,
                    body: crate::wechat::pay::reply_success().into(),
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "refund notify could not be applied");
                fail("temporarily unable to process")
            }
        }
    }

    /// Applies a refund's final result once: success adds to `refunded_fen` (and ends
    /// `refunding` when all is back); failure releases the reserved amount.
    pub(super) async fn settle_refund(
        &self,
        out_refund_no: &str,
        outcome: Settlement,
        source: &'static str,
    ) -> Result<bool, OrderError> {
        let no = out_refund_no.to_string();
        let settled = self
            .db
            .write_tx(move |c| -> Result<Option<Option<Order>>, OrderError> {
                let now = time::now();
                let r = rq::find_by_out_refund_no(c, &no)?.ok_or(OrderError::NotFound)?;
                let o = q::find(c, OrderId(r.order_id))?.ok_or(OrderError::NotFound)?;
                let event = |event| NewEvent {
                    order_id: o.order_id(),
                    out_trade_no: &o.out_trade_no,
                    event,
                    amount_fen: r.refund_fen,
                    source,
                    reference: &r.out_refund_no,
                    at: now,
                };
                match &outcome {
                    Settlement::Success(refund_id) => {
                        if rq::mark_success(c, r.id, refund_id.as_deref(), now)? != 1 {
                            return Ok(None);
                        }
                        q::add_refunded(c, o.order_id(), r.refund_fen, now)?;
                        ledger::append(c, &event("refunded"))?;
                        if q::finish_refunding(c, o.order_id(), now)? == 1 {
                            return Ok(Some(Some(o)));
                        }
                    }
                    Settlement::Failed(why) => {
                        if rq::mark_failed(c, r.id, why, now)? != 1 {
                            return Ok(None);
                        }
                        q::release_refund(c, o.order_id(), r.refund_fen, now)?;
                        ledger::append(c, &event("refund_failed"))?;
                    }
                }
                Ok(Some(None))
            })
            .await?;
        match settled {
            Some(Some(order)) => {
                self.announce(&order, OrderEvent::Refunded);
                Ok(true)
            }
            Some(None) => Ok(true),
            None => Ok(false),
        }
    }

    /// Job: retry queued refunds and ask WeChat about accepted ones (`refundquery`).
    pub(super) async fn settle_refunds(&self) -> Result<usize, OrderError> {
        let before = time::now() - chrono::Duration::seconds(2);
        let rows = self
            .db
            .read(move |c| rq::unsettled(c, before, 50).map_err(OrderError::from))
            .await?;
        let mut n = 0;
        for r in rows {
            let rid = r.id;
            let claimed = self
                .db
                .write(move |c| {
                    let now = time::now();
                    rq::claim(c, rid, now, now + chrono::Duration::seconds(30))
                        .map_err(OrderError::from)
                })
                .await?;
            if !claimed {
                continue;
            }
            if r.status == "requested" {
                self.process_refund_by_no(&r.out_refund_no).await;
                continue;
            }
            match self.pay.refund_query(&r.out_refund_no).await {
                Ok(q) => {
                    let outcome = match q.status {
                        RefundStatus::Success => Settlement::Success(q.refund_id),
                        RefundStatus::Processing => continue,
                        other => Settlement::Failed(format!("{other:?}")),
                    };
                    if self
                        .settle_refund(&r.out_refund_no, outcome, "refundquery")
                        .await?
                    {
                        n += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(out_refund_no = %r.out_refund_no, error = %e, "refundquery failed")
                }
            }
        }
        Ok(n)
    }
}

pub(super) enum Settlement {
    Success(Option<String>),
    Failed(String),
}

/// Reserves `fen` and records the refund request in the ledger; returns `out_refund_no`.
fn new_refund(
    c: &mut campus_dal::Conn,
    o: &Order,
    fen: i64,
    reason: &str,
    cause: &str,
    allowed: &[&str],
) -> Result<String, OrderError> {
    let now = time::now();
    if q::reserve_refund(c, o.order_id(), fen, allowed, now)? != 1 {
        return Err(OrderError::RefundExceedsPaid);
    }
    let n = rq::for_order(c, o.order_id())?.len() + 1;
    let out_refund_no = format!("{}R{n}", o.out_trade_no);
    rq::insert(
        c,
        &NewRefund {
            order_id: o.id,
            out_refund_no: &out_refund_no,
            refund_fen: fen,
            reason,
            cause,
            status: "requested",
            created_at: now,
            updated_at: now,
        },
    )?;
    ledger::append(
        c,
        &NewEvent {
            order_id: o.order_id(),
            out_trade_no: &o.out_trade_no,
            event: "refund_requested",
            amount_fen: fen,
            source: "api",
            reference: &out_refund_no,
            at: now,
        },
    )?;
    Ok(out_refund_no)
}

#[derive(Clone, Debug, serde::Serialize, ToSchema)]
pub struct RefundView {
    pub out_refund_no: String,
    pub refund_fen: i64,
    pub reason: String,
    pub cause: String,
    pub status: String,
    pub attempts: i32,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub settled_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl RefundView {
    fn of(r: &Refund) -> Self {
        Self {
            out_refund_no: r.out_refund_no.clone(),
            refund_fen: r.refund_fen,
            reason: r.reason.clone(),
            cause: r.cause.clone(),
            status: r.status.clone(),
            attempts: r.attempts,
            created_at: time::to_utc(r.created_at),
            settled_at: r.settled_at.map(time::to_utc),
        }
    }
}
