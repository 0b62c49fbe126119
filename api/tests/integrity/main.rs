//! Issue 10, money and message integrity: refunds that never free money on an unclear
//! answer, an official account whose signed URL is no credential, and the smaller holes.
//! One binary for all of them. Runs on SQLite, or MariaDB + Redis with
//! CAMPUS_TEST_MODE=mariadb.

#[path = "../common/mod.rs"]
mod common;

mod holes;
mod money_races;
mod official_account;
mod refunds;
