//! Timestamps are stored as UTC `NaiveDateTime`, truncated to microseconds so that
//! SQLite (text) and MySQL (`DATETIME(6)`) round-trip the same value.

use chrono::{DateTime, NaiveDateTime, SubsecRound, Utc};

pub fn now() -> NaiveDateTime {
    Utc::now().naive_utc().trunc_subsecs(6)
}

pub fn to_utc(t: NaiveDateTime) -> DateTime<Utc> {
    t.and_utc()
}
