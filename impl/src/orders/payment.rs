//! Paying for an order: `unifiedorder`, the pay notify, `orderquery` and `closeorder`.
//! An order is marked paid once, from a verified notify or orderquery, after its
//! amount is checked, in the same transaction that appends the ledger row.

use chrono::Utc;

use campus_dal::ledger::{self, NewEvent};
use campus_dal::orders::{self as q, Order};
use campus_dal::refunds::{self as rq, NewRefund};
use campus_dal::{OrderId, time};

use super::{OrderError, status};
use crate::Services;
use crate::notify::OrderEvent;
use crate::users::CurrentUser;
use crate::wechat::pay::{JsapiParams, PayError, UnifiedOrderRequest, reply_fail, reply_success};

/// WeChat keeps a prepay id two hours; reuse it while it has this much life left.
const PREPAY_MARGIN_SECS: i64 = 60;

/// What to answer WeChat: `ok` is SUCCESS, else FAIL with `body` saying why.
pub struct NotifyReply {
    pub ok: bool,
    pub body: String,
}

impl NotifyReply {
    fn success() -> Self {
        Self {
            ok: true,
            body: reply_success().to_string(),
        }
    }

    fn fail(reason: &str) -> Self {
        Self {
            ok: false,
            body: reply_fail(reason),
        }
    }
}

/// What applying a confirmed payment did.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Applied {
    Paid,
    Duplicate,
    /// The money landed on an order closed meanwhile: a full refund was queued.
    LateOnClosed(String),
    AmountMismatch,
    UnknownOrder,
}

pub(super) struct Confirmed<'a> {
    pub out_trade_no: &'a str,
    pub transaction_id: &'a str,
    pub total_fee: i64,
    pub source: &'static str,
    pub raw: Option<&'a [u8]>,
}

impl Services {
    fn notify_url(&self, path: &str) -> String {
        format!("{}{}", self.settings.public_base_url, path)
    }

    /// JSAPI parameters for `wx.requestPayment`; `unifiedorder` is called once per order
    /// and its prepay id reused while valid.
    pub async fn pay_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
        client_ip: &str,
    ) -> Result<JsapiParams, OrderError> {
        let o = self.visible_order(user, id).await?;
        if o.customer_id != user.id.0 {
            return Err(OrderError::NotFound);
        }
        if o.status != status::CREATED {
            return Err(OrderError::InvalidTransition {
                from: o.status,
                action: "pay",
            });
        }
        let now = Utc::now();
        let margin = chrono::Duration::seconds(PREPAY_MARGIN_SECS);
        if let (Some(pid), Some(exp)) = (&o.prepay_id, o.prepay_expires_at)
            && exp.and_utc() > now + margin
        {
            return Ok(self.pay.jsapi_params(pid));
        }
        let deadline = o.pay_deadline.and_utc();
        if deadline <= now + margin {
            return Err(OrderError::PaymentExpired);
        }
        let req = UnifiedOrderRequest {
            out_trade_no: o.out_trade_no.clone(),
            body: format!("Campus Errand - {}", o.kind),
            total_fee: o.amount_fen,
            openid: user.row.openid.clone(),
            spbill_create_ip: client_ip.to_string(),
            time_expire: deadline,
            notify_url: self.notify_url("/api/v1/pay/notify"),
            attach: None,
        };
        let prepay_id = match self.pay.unified_order(&req).await {
            Ok(p) => p,
            Err(PayError::OrderPaid) => {
                // The notify may still be on its way: ask WeChat now rather than wait.
                self.reconcile_order(&o).await?;
                return Err(OrderError::InvalidTransition {
                    from: status::PAID.into(),
                    action: "pay",
                });
            }
            Err(PayError::OrderClosed) => {
                return Err(OrderError::InvalidTransition {
                    from: status::CLOSED.into(),
                    action: "pay",
                });
            }
            Err(e) => return Err(e.into()),
        };
        let expires = (now + chrono::Duration::hours(2)).min(deadline).naive_utc();
        let pid = prepay_id.clone();
        let stored = self
            .db
            .write(move |c| {
                q::set_prepay(c, id, &pid, expires, time::now()).map_err(OrderError::from)
            })
            .await?;
        if stored != 1 {
            return Err(self.lost_race_pay(id).await);
        }
        Ok(self.pay.jsapi_params(&prepay_id))
    }

    async fn lost_race_pay(&self, id: OrderId) -> OrderError {
        match self
            .db
            .read(move |c| q::find(c, id).map_err(OrderError::from))
            .await
        {
            Ok(Some(o)) => OrderError::InvalidTransition {
                from: o.status,
                action: "pay",
            },
            Ok(None) => OrderError::NotFound,
            Err(e) => e,
        }
    }

    /// `POST /pay/notify`. Never fails: every outcome is a reply for WeChat.
    pub async fn handle_pay_notify(&self, body: &[u8]) -> NotifyReply {
        let n = match self.pay.verify_pay_notify(body) {
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(reason = e.reason(), "pay notify rejected");
                self.log_notify("pay", None, &format!("rejected: {}", e.reason()), body)
                    .await;
                return NotifyReply::fail(e.reason());
            }
        };
        let Some(txid) = n.transaction_id.as_deref().filter(|_| n.paid) else {
            self.log_notify("pay", Some(&n.out_trade_no), "not_paid", body)
                .await;
            return NotifyReply::success();
        };
        let applied = self
            .apply_payment(Confirmed {
                out_trade_no: &n.out_trade_no,
                transaction_id: txid,
                total_fee: n.total_fee,
                source: "notify",
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

    pub(super) async fn log_notify(
        &self,
        kind: &'static str,
        out_trade_no: Option<&str>,
        outcome: &str,
        body: &[u8],
    ) {
        let otn = out_trade_no.map(str::to_string);
        let outcome = outcome.to_string();
        let body: String = String::from_utf8_lossy(&body[..body.len().min(4096)]).into_owned();
        let r = self
            .db
            .write(move |c| {
                ledger::record_notification(c, kind, otn.as_deref(), &outcome, &body, time::now())
                    .map_err(OrderError::from)
            })
            .await;
        if let Err(e) = r {
            tracing::warn!(error = %e, "could not record notify");
        }
    }

    /// Marks the order paid once (amount checked), appending the ledger row and the raw
    /// notify in the same transaction. A payment on a closed order queues a full refund.
    pub(super) async fn apply_payment(&self, p: Confirmed<'_>) -> Result<Applied, OrderError> {
        let otn = p.out_trade_no.to_string();
        let txid = p.transaction_id.to_string();
        let fee = p.total_fee;
        let source = p.source;
        let raw = p.raw.map(|b| String::from_utf8_lossy(b).into_owned());
        let applied = self
            .db
            .write_tx(move |c| -> Result<Applied, OrderError> {
                let now = time::now();
                let log = |c: &mut campus_dal::Conn, outcome: &str| {
                    match &raw {
                        Some(body) => ledger::record_notification(c, "pay", Some(&otn), outcome, body, now).map(|_| ()),
                        None => Ok(()),
                    }
                };
                let Some(o) = q::find_by_out_trade_no(c, &otn)? else {
                    log(c, "unknown_order")?;
                    return Ok(Applied::UnknownOrder);
                };
                if fee != o.amount_fen {
                    tracing::error!(out_trade_no = %otn, expected = o.amount_fen, got = fee, "paid amount mismatch");
                    log(c, "amount_mismatch")?;
                    return Ok(Applied::AmountMismatch);
                }
                let event = |event| NewEvent {
                    order_id: o.order_id(),
                    out_trade_no: &o.out_trade_no,
                    event,
                    amount_fen: fee,
                    source,
                    reference: &txid,
                    at: now,
                };
                if q::mark_paid(c, o.order_id(), &txid, now)? == 1 {
                    ledger::append(c, &event("paid"))?;
                    log(c, "paid")?;
                    return Ok(Applied::Paid);
                }
                if o.status == status::CLOSED && q::record_late_payment(c, o.order_id(), &txid, now)? == 1 {
                    ledger::append(c, &event("paid"))?;
                    let out_refund_no = format!("{}R1", o.out_trade_no);
                    if q::reserve_refund(c, o.order_id(), fee, &[status::CLOSED], now)? == 1 {
                        rq::insert(
                            c,
                            &NewRefund {
                                order_id: o.id,
                                out_refund_no: &out_refund_no,
                                refund_fen: fee,
                                reason: "paid after the order was closed",
                                cause: "paid_after_close",
                                status: "requested",
                                created_at: now,
                                updated_at: now,
                            },
                        )?;
                        ledger::append(
                            c,
                            &NewEvent {
                                reference: &out_refund_no,
                                ..event("refund_requested")
                            },
                        )?;
                    }
                    log(c, "paid_after_close")?;
                    return Ok(Applied::LateOnClosed(out_refund_no));
                }
                log(c, "duplicate")?;
                Ok(Applied::Duplicate)
            })
            .await?;
        match &applied {
            Applied::Paid => {
                tracing::info!(out_trade_no = p.out_trade_no, source, "order paid");
                // Read the order again only when order messages are on (a read per notify).
                let otn = p.out_trade_no.to_string();
                if self.settings.wechat_template_order.is_some()
                    && let Ok(Some(o)) = self
                        .db
                        .read(move |c| q::find_by_out_trade_no(c, &otn).map_err(OrderError::from))
                        .await
                {
                    self.announce(&o, OrderEvent::Paid);
                }
            }
            Applied::LateOnClosed(no) => {
                tracing::warn!(
                    out_trade_no = p.out_trade_no,
                    "payment on a closed order; refunding"
                );
                self.process_refund_by_no(no).await;
            }
            _ => {}
        }
        Ok(applied)
    }

    /// Asks WeChat about an unpaid order and applies a payment it reports.
    pub(super) async fn reconcile_order(&self, o: &Order) -> Result<bool, OrderError> {
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
                source: "orderquery",
                raw: None,
            })
            .await?;
        Ok(matches!(applied, Applied::Paid | Applied::LateOnClosed(_)))
    }

    /// Closes an unpaid order: first asks WeChat (a payment that just landed is kept),
    /// then `closeorder`, then the local compare-and-set.
    pub(super) async fn close_unpaid(
        &self,
        o: &Order,
        why: &'static str,
    ) -> Result<(), OrderError> {
        if o.prepay_id.is_some() {
            if self.reconcile_order(o).await? {
                return Err(OrderError::InvalidTransition {
                    from: status::PAID.into(),
                    action: "close",
                });
            }
            match self.pay.close_order(&o.out_trade_no).await {
                Ok(()) => {}
                Err(PayError::OrderPaid) => {
                    self.reconcile_order(o).await?;
                    return Err(OrderError::InvalidTransition {
                        from: status::PAID.into(),
                        action: "close",
                    });
                }
                Err(e) => return Err(e.into()),
            }
        }
        let id = o.order_id();
        let closed = self
            .db
            .write(move |c| {
                q::transition(c, id, &[status::CREATED], status::CLOSED, time::now())
                    .map_err(OrderError::from)
            })
            .await?;
        if closed == 1 {
            tracing::info!(order = id.0, why, "order closed");
            Ok(())
        } else {
            Err(self.lost_race_pay(id).await.with_action("close"))
        }
    }

    /// Job: close orders past their pay deadline.
    pub(super) async fn close_expired(&self) -> Result<usize, OrderError> {
        let rows = self
            .db
            .read(|c| q::unpaid(c, Some(time::now()), None, 50).map_err(OrderError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            if !self.claim_order(o.order_id()).await? {
                continue;
            }
            match self.close_unpaid(&o, "pay timeout").await {
                Ok(()) => n += 1,
                Err(OrderError::InvalidTransition { .. }) => {}
                Err(e) => tracing::warn!(order = o.id, error = %e, "could not close expired order"),
            }
        }
        Ok(n)
    }

    /// Job: `orderquery` for orders that have a prepay id and no notify yet.
    pub(super) async fn reconcile_unpaid(&self) -> Result<usize, OrderError> {
        let before = time::now() - chrono::Duration::seconds(5);
        let rows = self
            .db
            .read(move |c| q::unpaid(c, None, Some(before), 100).map_err(OrderError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            if !self.claim_order(o.order_id()).await? {
                continue;
            }
            match self.reconcile_order(&o).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(order = o.id, error = %e, "orderquery failed"),
            }
        }
        Ok(n)
    }

    /// One instance at a time works on an order (a lease that expires by itself).
    pub(super) async fn claim_order(&self, id: OrderId) -> Result<bool, OrderError> {
        self.db
            .write(move |c| {
                let now = time::now();
                q::claim(c, id, now, now + chrono::Duration::seconds(30)).map_err(OrderError::from)
            })
            .await
    }
}

impl OrderError {
    fn with_action(self, action: &'static str) -> Self {
        match self {
            OrderError::InvalidTransition { from, .. } => {
                OrderError::InvalidTransition { from, action }
            }
            other => other,
        }
    }
}
