//! Daily statistics for the operators, in Beijing days (UTC+8, no daylight saving):
//! orders created, money paid and refunded (from the payment ledger), orders
//! completed, and runners who did something.

use std::collections::{BTreeMap, HashSet};

use chrono::{NaiveDate, NaiveDateTime, TimeDelta};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::{LedgerEvent, UserId};

use crate::db::{Db, DbError};
use crate::text::InvalidInput;
use crate::users::{CurrentUser, Forbidden, Role};

/// The longest range one request may ask for.
const MAX_DAYS: i64 = 366;
/// Without `from`, the last week.
const DEFAULT_DAYS: i64 = 7;

const BEIJING: TimeDelta = TimeDelta::hours(8);

/// The statistics service.
#[derive(Clone)]
pub struct Stats {
    db: Db,
}

#[derive(Debug, thiserror::Error)]
pub enum StatsError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// `GET /admin/stats`: Beijing days, both inclusive; checked here (422, not 400).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct StatsQuery {
    /// First day, `2026-11-01`; default: six days before `to`.
    pub from: Option<String>,
    /// Last day; default: today in Beijing.
    pub to: Option<String>,
}

#[derive(Clone, Debug, Default, Serialize, ToSchema, PartialEq, Eq)]
pub struct DayStats {
    /// The Beijing day, `2026-11-30`.
    pub date: String,
    /// Orders created that day.
    pub orders: i64,
    /// Payments recorded that day.
    pub paid_fen: i64,
    /// Refunds that succeeded that day.
    pub refunded_fen: i64,
    /// Orders completed that day.
    pub completed: i64,
    /// Distinct runners who accepted, picked up or delivered an order that day.
    pub active_runners: i64,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct DailyStats {
    pub days: Vec<DayStats>,
}

/// `2026-11-01`, or why not.
pub fn parse_day(field: &str, s: &str) -> Result<NaiveDate, InvalidInput> {
    NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
        .map_err(|_| InvalidInput(format!("{field} must be a date like 2026-11-01")))
}

/// The UTC time at which Beijing day `d` starts.
pub fn beijing_day_start(d: NaiveDate) -> NaiveDateTime {
    d.and_time(chrono::NaiveTime::MIN) - BEIJING
}

/// The Beijing day of a stored UTC time.
fn beijing_day(t: NaiveDateTime) -> NaiveDate {
    (t + BEIJING).date()
}

impl Stats {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// One entry per Beijing day from `from` to `to`, days without activity included.
    pub async fn daily(
        &self,
        caller: &CurrentUser,
        query: StatsQuery,
    ) -> Result<DailyStats, StatsError> {
        caller.require(Role::Admin)?;
        fn nonempty(v: &Option<String>) -> Option<&str> {
            v.as_deref().filter(|s| !s.trim().is_empty())
        }
        let to = match nonempty(&query.to) {
            Some(s) => parse_day("to", s)?,
            None => beijing_day(campus_dal::time::now()),
        };
        let from = match nonempty(&query.from) {
            Some(s) => parse_day("from", s)?,
            None => to - TimeDelta::days(DEFAULT_DAYS - 1),
        };
        if to < from {
            return Err(InvalidInput::new("to must not be before from").into());
        }
        if (to - from).num_days() >= MAX_DAYS {
            return Err(InvalidInput(format!("at most {MAX_DAYS} days at once")).into());
        }
        let start = beijing_day_start(from);
        let end = beijing_day_start(to) + TimeDelta::days(1);
        let (created, completed, money, activity) = self
            .db
            .read(move |c| -> Result<_, StatsError> {
                use campus_dal::{orders, payments};
                Ok((
                    orders::created_between(c, start, end)?,
                    orders::completed_between(c, start, end)?,
                    payments::events_between(
                        c,
                        &[LedgerEvent::Paid, LedgerEvent::Refunded],
                        start,
                        end,
                    )?,
                    orders::runner_activity_between(c, start, end)?,
                ))
            })
            .await?;

        let mut days: BTreeMap<NaiveDate, DayStats> = BTreeMap::new();
        let mut d = from;
        while d <= to {
            days.insert(
                d,
                DayStats {
                    date: d.format("%Y-%m-%d").to_string(),
                    ..DayStats::default()
                },
            );
            d += TimeDelta::days(1);
        }
        for t in created {
            if let Some(s) = days.get_mut(&beijing_day(t)) {
                s.orders += 1;
            }
        }
        for t in completed {
            if let Some(s) = days.get_mut(&beijing_day(t)) {
                s.completed += 1;
            }
        }
        for (event, fen, t) in money {
            if let Some(s) = days.get_mut(&beijing_day(t)) {
                match event {
                    LedgerEvent::Paid => s.paid_fen += fen,
                    LedgerEvent::Refunded => s.refunded_fen += fen,
                    _ => {}
                }
            }
        }
        let mut runners: HashSet<(NaiveDate, UserId)> = HashSet::new();
        for (runner, t) in activity {
            runners.insert((beijing_day(t), runner));
        }
        for (d, _) in runners {
            if let Some(s) = days.get_mut(&d) {
                s.active_runners += 1;
            }
        }
        Ok(DailyStats {
            days: days.into_values().collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn beijing_days_start_at_sixteen_utc() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 30).expect("date");
        let start = beijing_day_start(d);
        assert_eq!(start.to_string(), "2026-11-29 16:00:00");
        assert_eq!(beijing_day(start), d);
        assert_eq!(
            beijing_day(start - TimeDelta::microseconds(1)),
            d.pred_opt().expect("day before")
        );
        assert!(parse_day("from", "2026-13-01").is_err());
        assert!(parse_day("from", "yesterday").is_err());
    }
}
