//! Paying runners: their earnings ledger (credited when orders complete, debited when a
//! completed order is refunded), withdrawals that reserve the amount at once, and the
//! transfer that pays them, one `partner_trade_no` per withdrawal for every retry.
//!
//! Money is never paid twice: a withdrawal is marked `unclear` before its transfer goes
//! out, and an unclear one is settled only by `gettransferinfo` (NOT_FOUND: sent again
//! with the same number and parameters). Only a definite refusal returns the amount.

mod earnings;
mod jobs;
mod transfer;

pub use earnings::Earnings;
pub use transfer::Payout;

use std::sync::Arc;

use chrono::{NaiveDateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::earnings::{self as ledger, Earning, NewEarning};
use campus_dal::withdrawals::{self as wq, NewWithdrawal, Withdrawal};
use campus_dal::{
    EarningId, EarningKind, OrderId, UserId, WithdrawApproval, WithdrawalId, WithdrawalStatus, time,
};

use crate::crypto::random_alnum;
use crate::db::{Db, DbError};
use crate::idempotency::{self, Fingerprint};
use crate::text::{InvalidInput, page_limit};
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::pay::{TransferAnswer, TransferLookup, TransferRequest};

/// The smallest withdrawal (the contract's 1 yuan).
const MIN_WITHDRAW_FEN: i64 = 100;
/// What the runner sees on the transfer in WeChat. Stored with the withdrawal: a retry
/// must send the same text.
const TRANSFER_DESC: &str = "Campus Errand earnings";

/// Per runner and Beijing day (WeChat's defaults for transfers to balance: 200 yuan and
/// 10 payments per user per day; a merchant may have them raised).
#[derive(Clone, Copy, Debug)]
pub struct WithdrawCaps {
    pub daily_max_fen: i64,
    pub daily_max_count: i64,
}

/// The payout service.
#[derive(Clone)]
pub struct Payouts {
    db: Db,
    payout: Arc<dyn Payout>,
    approval: WithdrawApproval,
    caps: WithdrawCaps,
    /// How long one worker owns a withdrawal while it talks to WeChat.
    lease: chrono::Duration,
}

#[derive(Debug, thiserror::Error)]
pub enum PayoutError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("withdrawal not found")]
    NotFound,
    #[error("amount exceeds the available balance of {available_fen} fen")]
    InsufficientBalance { available_fen: i64 },
    #[error("{0}")]
    DailyLimit(String),
    #[error("withdrawal is {0}, not pending")]
    NotPending(WithdrawalStatus),
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WithdrawRequest {
    /// At least 100, at most the balance.
    pub amount_fen: i64,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RejectRequest {
    #[serde(default)]
    pub reason: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WithdrawalView {
    #[schema(value_type = i64)]
    pub id: WithdrawalId,
    #[schema(value_type = i64)]
    pub runner_id: UserId,
    pub partner_trade_no: String,
    pub amount_fen: i64,
    pub status: WithdrawalStatus,
    /// Why it failed (WeChat's refusal or the admin's rejection).
    pub reason: Option<String>,
    /// WeChat's payment number, once paid.
    pub payment_no: Option<String>,
    pub paid_at: Option<chrono::DateTime<Utc>>,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl WithdrawalView {
    fn of(w: &Withdrawal) -> Self {
        Self {
            id: w.id,
            runner_id: w.runner_id,
            partner_trade_no: w.partner_trade_no.clone(),
            amount_fen: w.amount_fen,
            status: w.status,
            reason: w.reason.clone(),
            payment_no: w.payment_no.clone(),
            paid_at: w.paid_at.map(time::to_utc),
            created_at: time::to_utc(w.created_at),
            updated_at: time::to_utc(w.updated_at),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EarningView {
    #[schema(value_type = i64)]
    pub id: EarningId,
    pub kind: EarningKind,
    /// Credits positive, debits negative.
    pub amount_fen: i64,
    #[schema(value_type = Option<i64>)]
    pub order_id: Option<OrderId>,
    #[schema(value_type = Option<i64>)]
    pub withdrawal_id: Option<WithdrawalId>,
    pub created_at: chrono::DateTime<Utc>,
}

impl EarningView {
    fn of(e: &Earning) -> Self {
        Self {
            id: e.id,
            kind: e.kind,
            amount_fen: e.amount_fen,
            order_id: e.order_id,
            withdrawal_id: e.withdrawal_id,
            created_at: time::to_utc(e.created_at),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct EarningsView {
    /// Available to withdraw: the sum of the ledger (withdrawals are debited when asked for).
    pub balance_fen: i64,
    /// Asked for and not yet paid.
    pub withdrawing_fen: i64,
    /// Paid out.
    pub withdrawn_fen: i64,
    /// The ledger, newest first.
    pub items: Vec<EarningView>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct WithdrawalPage {
    pub items: Vec<WithdrawalView>,
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct WithdrawalQuery {
    pub status: Option<WithdrawalStatus>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// The answer to a withdrawal request: the first one again when an `Idempotency-Key`
/// repeats.
pub struct Requested {
    pub withdrawal: WithdrawalView,
    pub replayed: bool,
}

fn cursor(c: &Option<String>) -> Result<Option<i64>, InvalidInput> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| InvalidInput::new("invalid cursor")),
    }
}

/// The Beijing calendar day of `t` (UTC), `yyyy-MM-dd`: WeChat's limits count per day there.
fn beijing_day(t: NaiveDateTime) -> String {
    (t + chrono::Duration::hours(8))
        .format("%Y-%m-%d")
        .to_string()
}

/// `yyyy-MM-dd HH:mm:ss` Beijing, as WeChat writes payment times, in UTC.
fn beijing_to_utc(s: Option<&str>) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(s?, "%Y-%m-%d %H:%M:%S")
        .ok()
        .map(|t| t - chrono::Duration::hours(8))
}

/// `CW` + UTC time + random: 26 letters and digits, unique per withdrawal.
fn new_partner_trade_no() -> String {
    format!(
        "CW{}{}",
        Utc::now().format("%Y%m%d%H%M%S"),
        random_alnum(10)
    )
}

/// Fails a withdrawal in state `from` and books its amount back, once.
fn fail_and_return(
    c: &mut campus_dal::Conn,
    w: &Withdrawal,
    from: WithdrawalStatus,
    reason: &str,
    decided_by: Option<UserId>,
) -> Result<bool, PayoutError> {
    let now = time::now();
    if wq::fail(c, w.id, from, reason, decided_by, now)? != 1 {
        return Ok(false);
    }
    ledger::lock_runner(c, w.runner_id)?;
    ledger::append(
        c,
        &NewEarning {
            runner_id: w.runner_id,
            kind: EarningKind::WithdrawalReturned,
            amount_fen: w.amount_fen,
            basis_fen: w.amount_fen,
            order_id: None,
            withdrawal_id: Some(w.id),
            reference: &format!("withdrawal_returned:{}", w.id),
            at: now,
        },
    )?;
    Ok(true)
}

impl Payouts {
    pub fn new(
        db: Db,
        payout: Arc<dyn Payout>,
        approval: WithdrawApproval,
        caps: WithdrawCaps,
        wechat_timeout: std::time::Duration,
    ) -> Self {
        // A query and a transfer, each up to the timeout, and some slack.
        let secs = i64::try_from(wechat_timeout.as_secs()).unwrap_or(5);
        Self {
            db,
            payout,
            approval,
            caps,
            lease: chrono::Duration::seconds(2 * secs + 5),
        }
    }

    /// `GET /runner/earnings`.
    pub async fn earnings(
        &self,
        user: &CurrentUser,
        limit: Option<i64>,
        cursor_s: Option<String>,
    ) -> Result<EarningsView, PayoutError> {
        user.require(Role::Runner)?;
        let limit = page_limit(limit)?;
        let before = cursor(&cursor_s)?.map(EarningId);
        let runner = user.id;
        let (balance, withdrawing, withdrawn, mut rows) = self
            .db
            .read(move |c| -> Result<_, PayoutError> {
                let balance = ledger::balance(c, runner)?;
                let withdrawing: i64 = wq::amounts(c, runner, &wq::OPEN)?.iter().sum();
                let withdrawn: i64 = wq::amounts(c, runner, &[WithdrawalStatus::Succeeded])?
                    .iter()
                    .sum();
                let rows = ledger::list(c, runner, before, limit)?;
                Ok((balance, withdrawing, withdrawn, rows))
            })
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(EarningsView {
            balance_fen: balance,
            withdrawing_fen: withdrawing,
            withdrawn_fen: withdrawn,
            next_cursor: if more {
                rows.last().map(|e| e.id.to_string())
            } else {
                None
            },
            items: rows.iter().map(EarningView::of).collect(),
        })
    }

    /// `POST /runner/withdrawals`: reserves the amount (under the runner's lock, so
    /// concurrent requests cannot together exceed the balance) and, in `auto` mode,
    /// transfers at once.
    pub async fn request_withdrawal(
        &self,
        user: &CurrentUser,
        req: WithdrawRequest,
        client_ip: String,
        idempotency_key: Option<String>,
    ) -> Result<Requested, PayoutError> {
        user.require(Role::Runner)?;
        let amount = req.amount_fen;
        if amount < MIN_WITHDRAW_FEN {
            return Err(
                InvalidInput(format!("amount_fen must be at least {MIN_WITHDRAW_FEN}")).into(),
            );
        }
        if amount > self.caps.daily_max_fen {
            return Err(PayoutError::DailyLimit(format!(
                "at most {} fen per day",
                self.caps.daily_max_fen
            )));
        }
        let key = idempotency::Key::parse(idempotency_key)?;
        let runner = user.id;
        let openid = user.row.openid.clone();
        let client_ip = if client_ip.parse::<std::net::IpAddr>().is_ok() {
            client_ip
        } else {
            "127.0.0.1".to_string()
        };
        let caps = self.caps;
        let auto = self.approval == WithdrawApproval::Auto;
        let lease = self.lease;
        let fingerprint = Fingerprint::of("POST /runner/withdrawals", &amount);
        let (w, replayed) = self
            .db
            .write_tx(move |c| -> Result<(Withdrawal, bool), PayoutError> {
                // First, before any read: see the note on lock_runner.
                ledger::lock_runner(c, runner)?;
                if let Some(id) = idempotency::earlier_id(c, runner, key.as_ref(), &fingerprint)? {
                    let w = wq::find(c, WithdrawalId(id))?.ok_or(PayoutError::NotFound)?;
                    return Ok((w, true));
                }
                let balance = ledger::balance(c, runner)?;
                if amount > balance {
                    return Err(PayoutError::InsufficientBalance {
                        available_fen: balance.max(0),
                    });
                }
                let now = time::now();
                let day = beijing_day(now);
                let today = wq::day_amounts(c, runner, &day)?;
                if today.len() as i64 >= caps.daily_max_count {
                    return Err(PayoutError::DailyLimit(format!(
                        "at most {} withdrawals per day",
                        caps.daily_max_count
                    )));
                }
                if today.iter().sum::<i64>() + amount > caps.daily_max_fen {
                    return Err(PayoutError::DailyLimit(format!(
                        "at most {} fen per day",
                        caps.daily_max_fen
                    )));
                }
                let no = new_partner_trade_no();
                let w = wq::insert(
                    c,
                    &NewWithdrawal {
                        runner_id: runner,
                        partner_trade_no: &no,
                        amount_fen: amount,
                        openid: &openid,
                        description: TRANSFER_DESC,
                        client_ip: &client_ip,
                        status: if auto {
                            WithdrawalStatus::Processing
                        } else {
                            WithdrawalStatus::Pending
                        },
                        beijing_day: &day,
                        // The request itself makes the first attempt in auto mode.
                        lease_until: auto.then(|| now + lease),
                        at: now,
                    },
                )?;
                ledger::append(
                    c,
                    &NewEarning {
                        runner_id: runner,
                        kind: EarningKind::Withdrawal,
                        amount_fen: -amount,
                        basis_fen: amount,
                        order_id: None,
                        withdrawal_id: Some(w.id),
                        reference: &format!("withdrawal:{}", w.id),
                        at: now,
                    },
                )?;
                idempotency::remember(
                    c,
                    runner,
                    key.as_ref(),
                    &fingerprint,
                    202,
                    &w.id.to_string(),
                    now,
                )?;
                Ok((w, false))
            })
            .await?;
        let id = w.id;
        if auto && !replayed {
            self.attempt(id).await;
        }
        Ok(Requested {
            withdrawal: self.view(id).await?,
            replayed,
        })
    }

    async fn view(&self, id: WithdrawalId) -> Result<WithdrawalView, PayoutError> {
        let w = self
            .db
            .read(move |c| wq::find(c, id).map_err(PayoutError::from))
            .await?
            .ok_or(PayoutError::NotFound)?;
        Ok(WithdrawalView::of(&w))
    }

    /// `GET /runner/withdrawals`: the caller's own.
    pub async fn my_withdrawals(
        &self,
        user: &CurrentUser,
        q: WithdrawalQuery,
    ) -> Result<WithdrawalPage, PayoutError> {
        user.require(Role::Runner)?;
        self.list(Some(user.id), q).await
    }

    /// `GET /admin/withdrawals?status=`.
    pub async fn all_withdrawals(
        &self,
        user: &CurrentUser,
        q: WithdrawalQuery,
    ) -> Result<WithdrawalPage, PayoutError> {
        user.require(Role::Admin)?;
        self.list(None, q).await
    }

    async fn list(
        &self,
        runner: Option<UserId>,
        q: WithdrawalQuery,
    ) -> Result<WithdrawalPage, PayoutError> {
        let limit = page_limit(q.limit)?;
        let before = cursor(&q.cursor)?.map(WithdrawalId);
        let status = q.status;
        let mut rows = self
            .db
            .read(move |c| wq::list(c, runner, status, before, limit).map_err(PayoutError::from))
            .await?;
        let more = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        Ok(WithdrawalPage {
            next_cursor: if more {
                rows.last().map(|w| w.id.to_string())
            } else {
                None
            },
            items: rows.iter().map(WithdrawalView::of).collect(),
        })
    }

    /// `POST /admin/withdrawals/{id}/approve`: pending → processing, then the transfer.
    pub async fn approve(
        &self,
        user: &CurrentUser,
        id: WithdrawalId,
    ) -> Result<WithdrawalView, PayoutError> {
        user.require(Role::Admin)?;
        let admin = user.id;
        let lease = self.lease;
        self.db
            .write_tx(move |c| -> Result<(), PayoutError> {
                let w = wq::find(c, id)?.ok_or(PayoutError::NotFound)?;
                let now = time::now();
                if wq::approve(c, id, admin, now, now + lease)? != 1 {
                    return Err(PayoutError::NotPending(w.status));
                }
                Ok(())
            })
            .await?;
        self.attempt(id).await;
        self.view(id).await
    }

    /// `POST /admin/withdrawals/{id}/reject`: pending → failed, the amount back.
    pub async fn reject(
        &self,
        user: &CurrentUser,
        id: WithdrawalId,
        req: RejectRequest,
    ) -> Result<WithdrawalView, PayoutError> {
        user.require(Role::Admin)?;
        let admin = user.id;
        let reason: String = req.reason.trim().chars().take(200).collect();
        let reason = if reason.is_empty() {
            "rejected by an admin".to_string()
        } else {
            format!("rejected: {reason}")
        };
        self.db
            .write_tx(move |c| -> Result<(), PayoutError> {
                let w = wq::find(c, id)?.ok_or(PayoutError::NotFound)?;
                if !fail_and_return(c, &w, WithdrawalStatus::Pending, &reason, Some(admin))? {
                    return Err(PayoutError::NotPending(w.status));
                }
                Ok(())
            })
            .await?;
        self.view(id).await
    }

    /// One step towards settling a processing withdrawal whose lease the caller holds;
    /// gives the lease back when the outcome is still open. Errors are logged: the job
    /// tries again.
    pub(crate) async fn attempt(&self, id: WithdrawalId) {
        if let Err(e) = self.try_attempt(id).await {
            tracing::warn!(withdrawal = %id, error = %e, "withdrawal attempt failed; will retry");
        }
        let _ = self
            .db
            .write(move |c| wq::release(c, id).map_err(PayoutError::from))
            .await;
    }

    async fn try_attempt(&self, id: WithdrawalId) -> Result<(), PayoutError> {
        let Some(w) = self
            .db
            .read(move |c| wq::find(c, id).map_err(PayoutError::from))
            .await?
        else {
            return Ok(());
        };
        if w.status != WithdrawalStatus::Processing {
            return Ok(());
        }
        if !self.payout.ready() {
            return self.note(id, "merchant certificate unavailable").await;
        }
        if w.unclear {
            // An earlier request may have paid: only the query may say.
            match self.payout.lookup(&w.partner_trade_no).await {
                TransferLookup::Succeeded {
                    payment_no,
                    payment_time,
                } => return self.succeed(id, &payment_no, payment_time.as_deref()).await,
                TransferLookup::Failed { reason } => return self.fail(&w, &reason).await,
                TransferLookup::Processing => return self.note(id, "transfer processing").await,
                TransferLookup::Unclear(e) => return self.note(id, &e).await,
                // Not accepted: send again, same number, same parameters.
                TransferLookup::NotFound => {}
            }
        }
        let sending = self
            .db
            .write(move |c| wq::mark_sending(c, id, time::now()).map_err(PayoutError::from))
            .await?;
        if sending != 1 {
            return Ok(());
        }
        let req = TransferRequest {
            partner_trade_no: w.partner_trade_no.clone(),
            openid: w.openid.clone(),
            amount_fen: w.amount_fen,
            desc: w.description.clone(),
            spbill_create_ip: w.client_ip.clone(),
        };
        match self.payout.transfer(&req).await {
            TransferAnswer::Paid {
                payment_no,
                payment_time,
            } => self.succeed(id, &payment_no, payment_time.as_deref()).await,
            TransferAnswer::Refused { code, description } => {
                tracing::warn!(withdrawal = %id, %code, %description, "transfer refused");
                self.fail(&w, &format!("{code}: {description}")).await
            }
            TransferAnswer::Unclear(e) => {
                tracing::warn!(withdrawal = %id, error = %e, "transfer answer unclear; will query");
                self.note(id, &e).await
            }
        }
    }

    async fn succeed(
        &self,
        id: WithdrawalId,
        payment_no: &str,
        payment_time: Option<&str>,
    ) -> Result<(), PayoutError> {
        let no = payment_no.to_string();
        let paid_at = beijing_to_utc(payment_time);
        self.db
            .write(move |c| {
                let now = time::now();
                wq::succeed(c, id, &no, paid_at.unwrap_or(now), now).map_err(PayoutError::from)
            })
            .await?;
        Ok(())
    }

    async fn fail(&self, w: &Withdrawal, reason: &str) -> Result<(), PayoutError> {
        let w = w.clone();
        let reason = reason.to_string();
        self.db
            .write_tx(move |c| fail_and_return(c, &w, WithdrawalStatus::Processing, &reason, None))
            .await?;
        Ok(())
    }

    async fn note(&self, id: WithdrawalId, error: &str) -> Result<(), PayoutError> {
        let error = error.to_string();
        self.db
            .write(move |c| wq::note_error(c, id, &error, time::now()).map_err(PayoutError::from))
            .await?;
        Ok(())
    }
}
