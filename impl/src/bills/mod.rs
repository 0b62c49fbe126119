//! The daily bill: WeChat's bill of a Beijing day, matched line by line against the
//! payment ledger by `out_trade_no` (payments) and `out_refund_no` (refunds), whatever day
//! each was recorded here; the report is stored and served to admins. `no_bill` is a
//! result: a day without trades has none.

mod jobs;
pub mod parse;

use std::collections::{BTreeMap, BTreeSet};

use chrono::{NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use campus_dal::bills as bq;
use campus_dal::payments::PaymentEvent;
use campus_dal::{BillTradeState, LedgerEvent, MismatchKind, ReconciliationStatus, time};

use crate::cache::{Cache, CacheError};
use crate::db::{Db, DbError};
use crate::text::InvalidInput;
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::pay::{BillDownload, PayClient, PayError};

use parse::{BillLine, BillParseError};

/// The bill service.
#[derive(Clone)]
pub struct Bills {
    db: Db,
    pay: PayClient,
    cache: Cache,
    /// `BILL_HOUR_BEIJING`.
    hour_beijing: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum BillError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("no reconciliation for that date")]
    NotFound,
    #[error("WeChat Pay could not deliver the bill")]
    Pay(#[from] PayError),
    #[error(transparent)]
    Unreadable(#[from] BillParseError),
    #[error("stored report is unreadable: {0}")]
    Stored(String),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunReconciliation {
    /// `yyyy-MM-dd`, a Beijing day.
    pub date: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Totals {
    /// Lines (payments and refunds).
    pub count: i64,
    pub paid_fen: i64,
    pub refunded_fen: i64,
    /// WeChat's fees; the local ledger records none (null).
    pub fee_fen: Option<i64>,
}

/// One side of a mismatch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Side {
    pub amount_fen: i64,
    /// WeChat: the bill's trade or refund state; here: the ledger's, the order's or the
    /// refund's status.
    pub status: String,
    /// The bill line's time (Beijing), or when the ledger row was recorded (UTC, RFC 3339).
    pub at: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Mismatch {
    pub out_trade_no: String,
    /// For refund lines.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub out_refund_no: Option<String>,
    pub kind: MismatchKind,
    pub wechat: Option<Side>,
    pub local: Option<Side>,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReconciliationView {
    pub date: String,
    pub status: ReconciliationStatus,
    pub wechat: Totals,
    /// Ledger rows matched to the bill's lines, plus those whose day it is but that the
    /// bill lacks (`missing_wechat`).
    pub local: Totals,
    pub mismatches: Vec<Mismatch>,
    pub generated_at: chrono::DateTime<Utc>,
}

fn parse_date(s: &str) -> Result<NaiveDate, InvalidInput> {
    if s.len() != 10 {
        return Err(InvalidInput::new("date must be yyyy-MM-dd"));
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| InvalidInput::new("date must be yyyy-MM-dd"))
}

fn side(e: &PaymentEvent) -> Side {
    Side {
        amount_fen: e.amount_fen,
        status: e.event.as_str().to_string(),
        at: Some(time::to_utc(e.created_at).to_rfc3339()),
    }
}

impl Bills {
    pub fn new(db: Db, pay: PayClient, cache: Cache, hour_beijing: u32) -> Self {
        Self {
            db,
            pay,
            cache,
            hour_beijing,
        }
    }

    /// `POST /admin/reconciliations`: runs the day now (again, if it ran before).
    pub async fn run_now(
        &self,
        user: &CurrentUser,
        req: RunReconciliation,
    ) -> Result<ReconciliationView, BillError> {
        user.require(Role::Admin)?;
        let day = parse_date(&req.date)?;
        self.reconcile(day).await
    }

    /// `GET /admin/reconciliations/{date}`.
    pub async fn get(
        &self,
        user: &CurrentUser,
        date: &str,
    ) -> Result<ReconciliationView, BillError> {
        user.require(Role::Admin)?;
        let day = parse_date(date)?.format("%Y-%m-%d").to_string();
        let row = self
            .db
            .read(move |c| bq::find(c, &day).map_err(BillError::from))
            .await?
            .ok_or(BillError::NotFound)?;
        serde_json::from_str(&row.report).map_err(|e| BillError::Stored(e.to_string()))
    }

    /// Fetches the day's bill, matches it, stores and returns the report.
    pub(crate) async fn reconcile(&self, day: NaiveDate) -> Result<ReconciliationView, BillError> {
        let download = self.pay.download_bill(day).await?;
        let lines = match &download {
            BillDownload::Text(t) => Some(parse::parse(t)?.lines),
            BillDownload::NoBill => None,
        };
        let date = day.format("%Y-%m-%d").to_string();
        // The Beijing day in UTC, for the ledger rows recorded that day.
        let from = day.and_hms_opt(0, 0, 0).unwrap_or_default() - chrono::Duration::hours(8);
        let to = from + chrono::Duration::days(1);
        self.db
            .write_tx(move |c| -> Result<ReconciliationView, BillError> {
                let report = match_bill(c, &date, lines.as_deref(), from, to)?;
                let json =
                    serde_json::to_string(&report).map_err(|e| BillError::Stored(e.to_string()))?;
                bq::save(c, &date, report.status, &json, time::now())?;
                Ok(report)
            })
            .await
    }
}

/// The matching itself; `lines` is None when WeChat has no bill for the day.
fn match_bill(
    c: &mut campus_dal::Conn,
    date: &str,
    lines: Option<&[BillLine]>,
    from: chrono::NaiveDateTime,
    to: chrono::NaiveDateTime,
) -> Result<ReconciliationView, BillError> {
    let success = BillTradeState::Success.as_str();
    let mut wechat = Totals {
        fee_fen: Some(0),
        ..Totals::default()
    };
    let mut local = Totals::default();
    let mut mismatches = Vec::new();
    let mut seen_payments = BTreeSet::new();
    let mut seen_refunds = BTreeSet::new();
    for l in lines.unwrap_or_default() {
        wechat.count += 1;
        wechat.fee_fen = Some(wechat.fee_fen.unwrap_or(0) + l.fee_fen);
        let mut mismatch = |kind, w: Side, lo: Option<Side>| {
            mismatches.push(Mismatch {
                out_trade_no: l.out_trade_no.clone(),
                out_refund_no: l.out_refund_no.clone(),
                kind,
                wechat: Some(w),
                local: lo,
            })
        };
        if let Some(orn) = &l.out_refund_no {
            wechat.refunded_fen += l.refund_fen;
            seen_refunds.insert(orn.clone());
            let w = Side {
                amount_fen: l.refund_fen,
                status: l.refund_status.clone().unwrap_or_default(),
                at: Some(l.time.clone()),
            };
            let done = bq::events_by_reference(c, orn, LedgerEvent::Refunded)?;
            match done.first() {
                Some(e) => {
                    local.count += 1;
                    local.refunded_fen += e.amount_fen;
                    if l.refund_status.as_deref() != Some(success) {
                        mismatch(MismatchKind::StatusDiffers, w, Some(side(e)));
                    } else if e.amount_fen != l.refund_fen {
                        mismatch(MismatchKind::AmountDiffers, w, Some(side(e)));
                    }
                }
                None => match campus_dal::refunds::find_by_out_refund_no(c, orn)? {
                    // Known here but not refunded in the ledger (still processing, failed).
                    Some(r) => mismatch(
                        MismatchKind::StatusDiffers,
                        w,
                        Some(Side {
                            amount_fen: r.refund_fen,
                            status: r.status.as_str().to_string(),
                            at: Some(time::to_utc(r.updated_at).to_rfc3339()),
                        }),
                    ),
                    None => mismatch(MismatchKind::MissingLocal, w, None),
                },
            }
        } else {
            wechat.paid_fen += l.total_fen;
            seen_payments.insert(l.out_trade_no.clone());
            let w = Side {
                amount_fen: l.total_fen,
                status: l.trade_state.clone(),
                at: Some(l.time.clone()),
            };
            let paid = bq::events_by_out_trade_no(c, &l.out_trade_no, LedgerEvent::Paid)?;
            match paid.first() {
                Some(e) => {
                    local.count += 1;
                    local.paid_fen += e.amount_fen;
                    if l.trade_state != success {
                        mismatch(MismatchKind::StatusDiffers, w, Some(side(e)));
                    } else if e.amount_fen != l.total_fen {
                        mismatch(MismatchKind::AmountDiffers, w, Some(side(e)));
                    }
                }
                None => match campus_dal::orders::find_by_out_trade_no(c, &l.out_trade_no)? {
                    // Known here, never recorded as paid.
                    Some(o) => mismatch(
                        MismatchKind::StatusDiffers,
                        w,
                        Some(Side {
                            amount_fen: o.amount_fen,
                            status: o.status.as_str().to_string(),
                            at: Some(time::to_utc(o.updated_at).to_rfc3339()),
                        }),
                    ),
                    None => mismatch(MismatchKind::MissingLocal, w, None),
                },
            }
        }
    }
    // What the ledger recorded that day and the bill lacks.
    let mut ours: BTreeMap<i64, PaymentEvent> = BTreeMap::new();
    for e in bq::events_between(c, &[LedgerEvent::Paid, LedgerEvent::Refunded], from, to)? {
        ours.insert(e.id, e);
    }
    for e in ours.values() {
        let (missing, out_refund_no) = match e.event {
            LedgerEvent::Paid => (!seen_payments.contains(&e.out_trade_no), None),
            _ => (
                !seen_refunds.contains(&e.reference),
                Some(e.reference.clone()),
            ),
        };
        if !missing {
            continue;
        }
        local.count += 1;
        if e.event == LedgerEvent::Paid {
            local.paid_fen += e.amount_fen;
        } else {
            local.refunded_fen += e.amount_fen;
        }
        mismatches.push(Mismatch {
            out_trade_no: e.out_trade_no.clone(),
            out_refund_no,
            kind: MismatchKind::MissingWechat,
            wechat: None,
            local: Some(side(e)),
        });
    }
    let status = match (lines, mismatches.is_empty()) {
        (None, _) => ReconciliationStatus::NoBill,
        (Some(_), true) => ReconciliationStatus::Matched,
        (Some(_), false) => ReconciliationStatus::Mismatched,
    };
    if lines.is_none() {
        wechat.fee_fen = Some(0);
    }
    Ok(ReconciliationView {
        date: date.to_string(),
        status,
        wechat,
        local,
        mismatches,
        generated_at: Utc::now(),
    })
}
