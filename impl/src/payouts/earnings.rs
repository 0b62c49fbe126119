//! Crediting and debiting runners, inside the transaction of the order move or refund
//! settlement that causes it, so a completed order is never without its credit.

use campus_dal::earnings::{self as ledger, NewEarning};
use campus_dal::orders::Order;
use campus_dal::{Conn, EarningKind, QueryResult, time};

/// The runner's cut: `goods_fen` whole plus `RUNNER_SHARE_PERCENT` of `fee_fen`.
#[derive(Clone, Copy, Debug)]
pub struct Earnings {
    share_percent: i64,
}

impl Default for Earnings {
    /// The contract's default share, 80%.
    fn default() -> Self {
        Self { share_percent: 80 }
    }
}

impl Earnings {
    pub fn new(share_percent: u32) -> Self {
        Self {
            share_percent: i64::from(share_percent.min(100)),
        }
    }

    /// `goods_fen + fee_fen * share / 100`, rounded down.
    pub fn credit_for(&self, o: &Order) -> i64 {
        o.goods_fen + o.fee_fen * self.share_percent / 100
    }

    /// Credits the runner of an order that just completed (once per order).
    pub fn credit_completion(&self, c: &mut Conn, o: &Order) -> QueryResult<bool> {
        let Some(runner) = o.runner_id else {
            return Ok(false);
        };
        let amount = self.credit_for(o);
        ledger::append(
            c,
            &NewEarning {
                runner_id: runner,
                kind: EarningKind::OrderCompleted,
                amount_fen: amount,
                basis_fen: o.amount_fen,
                order_id: Some(o.id),
                withdrawal_id: None,
                reference: &format!("order:{}", o.id),
                at: time::now(),
            },
        )
    }

    /// A refund of `refund_fen` on an order whose completion was credited takes back the
    /// same share of the refund as the credit was of the order's amount. Computed on the
    /// running total of refunds, so rounding never drifts and a full refund takes back
    /// exactly the credit. Nothing when the order was not credited (refunded before it
    /// completed). Once per `out_refund_no`.
    pub fn debit_refund(
        &self,
        c: &mut Conn,
        o: &Order,
        out_refund_no: &str,
        refund_fen: i64,
    ) -> QueryResult<bool> {
        let rows = ledger::for_order(c, o.id)?;
        let Some(credit) = rows.iter().find(|e| e.kind == EarningKind::OrderCompleted) else {
            return Ok(false);
        };
        let debits = rows.iter().filter(|e| e.kind == EarningKind::RefundDebit);
        let debited: i64 = debits.clone().map(|e| -e.amount_fen).sum();
        let refunded_before: i64 = debits.map(|e| e.basis_fen).sum();
        let base = credit.basis_fen.max(1);
        let total = (i128::from(refunded_before + refund_fen) * i128::from(credit.amount_fen)
            / i128::from(base))
        .min(i128::from(credit.amount_fen));
        let debit = i64::try_from(total).unwrap_or(credit.amount_fen) - debited;
        // Serialised with withdrawals, which read the balance under the same lock.
        ledger::lock_runner(c, credit.runner_id)?;
        ledger::append(
            c,
            &NewEarning {
                runner_id: credit.runner_id,
                kind: EarningKind::RefundDebit,
                amount_fen: -debit.max(0),
                basis_fen: refund_fen,
                order_id: Some(o.id),
                withdrawal_id: None,
                reference: &format!("refund:{out_refund_no}"),
                at: time::now(),
            },
        )
    }
}
