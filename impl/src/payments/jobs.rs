//! The payment jobs: close orders past their pay deadline, ask WeChat (`orderquery`) about
//! orders that have a prepay id and no notify yet, and close WeChat's side of orders
//! closed here before WeChat allowed it.
//!
//! Each job has its own claim on a row, so one never keeps another from its work, and a
//! row that fails is put back for later, so the next run reaches other rows first:
//! - closing: `lease_until` (30 s);
//! - `orderquery`: `query_after`, pushed back further the older the order (the
//!   schedule and the claim in one column);
//! - WeChat's close: `wechat_close_at`, pushed back one period per failed attempt.

use std::time::Duration;

use campus_dal::orders::{self as q, Order};
use campus_dal::time;

use super::{PaymentError, Payments};
use crate::jobs::{Job, every};
use crate::telemetry::Metrics;

/// Rows a job run takes at most.
const BATCH: i64 = 100;
/// How long the close job holds an order it works on.
const CLOSE_LEASE_SECS: i64 = 30;
/// An order is first asked about this long after its prepay id (its notify usually lands first).
const FIRST_QUERY_AFTER_SECS: i64 = 5;
/// The longest wait between two `orderquery` calls of one unpaid order.
const MAX_QUERY_GAP_SECS: i64 = 600;

impl Payments {
    pub(crate) fn jobs(&self, metrics: &Metrics, period: Duration) -> Vec<Job> {
        let (a, b, c) = (self.clone(), self.clone(), self.clone());
        vec![
            every(
                metrics,
                "close_expired_orders",
                period.min(Duration::from_secs(30)),
                move || {
                    let s = a.clone();
                    async move { s.close_expired().await }
                },
            ),
            every(metrics, "reconcile_payments", period, move || {
                let s = b.clone();
                async move { s.reconcile_unpaid().await }
            }),
            every(metrics, "close_at_wechat", period, move || {
                let s = c.clone();
                async move { s.close_pending_at_wechat().await }
            }),
        ]
    }

    /// Job: close orders past their pay deadline.
    async fn close_expired(&self) -> Result<usize, PaymentError> {
        let rows = self
            .db
            .read(|c| q::unpaid_expired(c, time::now(), BATCH).map_err(PaymentError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            let id = o.id;
            let claimed = self
                .db
                .write(move |c| {
                    let now = time::now();
                    q::claim(
                        c,
                        id,
                        now,
                        now + chrono::Duration::seconds(CLOSE_LEASE_SECS),
                    )
                    .map_err(PaymentError::from)
                })
                .await?;
            if !claimed {
                continue;
            }
            match self.close_unpaid(&o, "pay timeout").await {
                Ok(()) => n += 1,
                Err(PaymentError::InvalidTransition(_)) => {}
                Err(e) => {
                    tracing::warn!(order = %o.id, error = %e, "could not close expired order")
                }
            }
        }
        Ok(n)
    }

    /// Job: `orderquery` for orders that have a prepay id and no notify yet; one found
    /// unpaid past its deadline is closed on the spot.
    async fn reconcile_unpaid(&self) -> Result<usize, PaymentError> {
        let rows = self
            .db
            .read(move |c| {
                let now = time::now();
                let made_before = now - chrono::Duration::seconds(FIRST_QUERY_AFTER_SECS);
                q::unpaid_to_query(c, now, made_before, BATCH).map_err(PaymentError::from)
            })
            .await?;
        let mut n = 0;
        for o in rows {
            let id = o.id;
            let next = self.next_query(&o);
            let claimed = self
                .db
                .write(move |c| {
                    q::claim_query(c, id, time::now(), next).map_err(PaymentError::from)
                })
                .await?;
            if !claimed {
                continue;
            }
            match self.reconcile_order(&o).await {
                Ok(true) => n += 1,
                Ok(false) if o.pay_deadline < time::now() => {
                    match self.close_known_unpaid(&o, "pay timeout").await {
                        Ok(()) => n += 1,
                        Err(PaymentError::InvalidTransition(_)) => {}
                        Err(e) => {
                            tracing::warn!(order = %o.id, error = %e, "could not close expired order")
                        }
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(order = %o.id, error = %e, "orderquery failed"),
            }
        }
        Ok(n)
    }

    /// When to ask about an unpaid order again: half its age (a new order soon, an old
    /// one rarely), at least one period, at most [`MAX_QUERY_GAP_SECS`].
    fn next_query(&self, o: &Order) -> chrono::NaiveDateTime {
        let now = time::now();
        let age = now - o.prepay_at.unwrap_or(o.created_at);
        let gap = (age / 2)
            .max(self.retry_after)
            .min(chrono::Duration::seconds(MAX_QUERY_GAP_SECS));
        now + gap
    }

    /// Job: `closeorder` for orders closed here whose WeChat close is due.
    async fn close_pending_at_wechat(&self) -> Result<usize, PaymentError> {
        let rows = self
            .db
            .read(|c| q::wechat_close_due(c, time::now(), BATCH).map_err(PaymentError::from))
            .await?;
        let mut n = 0;
        for o in rows {
            let id = o.id;
            let retry = self.retry_after;
            let claimed = self
                .db
                .write(move |c| {
                    let now = time::now();
                    q::claim_wechat_close(c, id, now, now + retry).map_err(PaymentError::from)
                })
                .await?;
            if !claimed {
                continue;
            }
            match self.close_at_wechat(&o).await {
                Ok(()) => n += 1,
                Err(e) => {
                    tracing::warn!(order = %o.id, error = %e, "closeorder failed; retried later")
                }
            }
        }
        Ok(n)
    }
}
