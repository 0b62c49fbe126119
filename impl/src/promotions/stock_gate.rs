//! Where a claim on a coupon that has run out is turned away.
//!
//! The database always decides: a claim that passes the gate still takes stock with the
//! compare-and-set in `claim_in`, under the unique key. The gate spares the database the
//! crowd that keeps coming after the last coupon went, which would otherwise each open a
//! write transaction and lock their user row only to be refused:
//! - `sql`: one read of the coupon's stock shards outside any transaction (none with room:
//!   claims only ever grow, so a stale read can only let a claim through, never refuse one
//!   wrongly);
//! - `redis`: a counter of what is left, shared by every instance and taken from by a
//!   script. It is seeded from the database and expires after [`COUNTER_TTL`], so it heals
//!   by itself: a process that died between taking from it and committing leaves it one
//!   too strict for at most that long; a seed that raced an uncommitted claim leaves it one
//!   too generous, which the database then refuses. When Redis does not answer, claims go
//!   to the database as with `sql`.
//!
//! `bench/run` measures both on MariaDB + Redis (README, "Coupon claims").

use std::time::Duration;

use campus_dal::coupons as cq;
use campus_dal::{CouponId, CouponStatus, time};

use crate::cache::{RedisCache, Taken};
use crate::db::Db;

use super::PromotionError;

/// How long a Redis stock counter lives before it is seeded again from the database.
const COUNTER_TTL: Duration = Duration::from_secs(10);

/// `COUPON_STOCK_GATE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateKind {
    Sql,
    Redis,
}

impl GateKind {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim() {
            "sql" => Some(Self::Sql),
            "redis" => Some(Self::Redis),
            _ => None,
        }
    }
}

#[derive(Clone)]
pub enum StockGate {
    Sql,
    Redis {
        redis: RedisCache,
        /// Tells this deployment's counters apart in a shared Redis (the appid).
        namespace: String,
    },
}

/// The gate's answer for one claim.
#[must_use]
pub enum Verdict {
    /// Go on to the database; `held` says a Redis token was taken, to give back if the
    /// claim does not commit.
    Go { held: bool },
    /// The coupon has run out (as far as the gate can tell; the database agrees by then).
    SoldOut,
}

impl StockGate {
    pub async fn check(&self, db: &Db, coupon: CouponId) -> Result<Verdict, PromotionError> {
        match self {
            Self::Sql => sql_check(db, coupon).await,
            Self::Redis { redis, namespace } => {
                let key = counter_key(namespace, coupon);
                match take(redis, db, &key, coupon).await {
                    Ok(v) => Ok(v),
                    Err(GateError::Redis(e)) => {
                        tracing::warn!(error = %e, "coupon stock counter unavailable; the database decides alone");
                        sql_check(db, coupon).await
                    }
                    Err(GateError::Claim(e)) => Err(e),
                }
            }
        }
    }

    /// The claim that passed with `held` did not commit: the token goes back.
    pub async fn give_back(&self, coupon: CouponId, held: bool) {
        if let (true, Self::Redis { redis, namespace }) = (held, self)
            && let Err(e) = redis.give_back(&counter_key(namespace, coupon)).await
        {
            tracing::warn!(error = %e, "could not give a coupon stock token back; the counter heals when it expires");
        }
    }

    /// The coupon stopped: its counter goes, so that claims reach the database's answer.
    pub async fn forget(&self, coupon: CouponId) {
        if let Self::Redis { redis, namespace } = self
            && let Err(e) = redis.delete(&counter_key(namespace, coupon)).await
        {
            tracing::warn!(error = %e, "could not drop a coupon stock counter; it expires by itself");
        }
    }
}

fn counter_key(namespace: &str, coupon: CouponId) -> String {
    format!("coupon_left:{namespace}:{coupon}")
}

enum GateError {
    Redis(crate::cache::CacheError),
    Claim(PromotionError),
}

async fn take(
    redis: &RedisCache,
    db: &Db,
    key: &str,
    coupon: CouponId,
) -> Result<Verdict, GateError> {
    match redis.take_one(key).await.map_err(GateError::Redis)? {
        Taken::One => return Ok(Verdict::Go { held: true }),
        Taken::NoneLeft => return Ok(Verdict::SoldOut),
        Taken::NoCounter => {}
    }
    let now = time::now();
    let found = db
        .read(move |c| -> Result<_, PromotionError> {
            let Some(cp) = cq::find(c, coupon)? else {
                return Ok(None);
            };
            let claimed = cq::claimed(c, coupon)?;
            Ok(Some((cp, claimed)))
        })
        .await
        .map_err(GateError::Claim)?;
    let Some((cp, claimed)) = found else {
        return Ok(Verdict::Go { held: false });
    };
    if cp.status != CouponStatus::Active || cp.valid_until.is_some_and(|u| u <= now) {
        // No counter for what cannot be claimed: the database answers not found.
        return Ok(Verdict::Go { held: false });
    }
    redis
        .seed_counter(key, (cp.stock - claimed).max(0), COUNTER_TTL)
        .await
        .map_err(GateError::Redis)?;
    match redis.take_one(key).await.map_err(GateError::Redis)? {
        Taken::One => Ok(Verdict::Go { held: true }),
        Taken::NoneLeft => Ok(Verdict::SoldOut),
        // Expired between the two calls: the database decides this one.
        Taken::NoCounter => Ok(Verdict::Go { held: false }),
    }
}

async fn sql_check(db: &Db, coupon: CouponId) -> Result<Verdict, PromotionError> {
    let shards = db
        .read(move |c| cq::active_shards(c, coupon).map_err(PromotionError::from))
        .await?;
    // No shards: unknown or not active, which the database answers.
    Ok(
        if !shards.is_empty() && !shards.iter().any(|s| s.has_room()) {
            Verdict::SoldOut
        } else {
            Verdict::Go { held: false }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gate_kinds_parse() {
        assert_eq!(GateKind::parse("sql"), Some(GateKind::Sql));
        assert_eq!(GateKind::parse(" redis "), Some(GateKind::Redis));
        assert_eq!(GateKind::parse("lua"), None);
    }
}
