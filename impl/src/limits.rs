//! Abuse limits: token buckets per user or per client address, by name.
//!
//! Each limit allows a burst of `count` and refills `count` every `per` (GCRA, the
//! algorithm behind `governor`). With `REDIS_URL` the buckets live in Redis, so a user
//! spread over several instances has one budget; otherwise in this process (`governor`).
//! On a campus thousands of students share one NAT address, so the per-address limit is
//! generous and the per-user limits do the real work.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

use crate::cache::{Cache, CacheError, RedisCache};

/// The limits the contract names (`RATE_LIMITS` overrides them by these names).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Limit {
    /// Logins per client address.
    LoginIp,
    /// Orders created per user.
    OrderUser,
    /// `/pay` calls per user: each may be a `unifiedorder`.
    PayUser,
    /// Mini-program codes made per user: each new one is a `getwxacodeunlimit`.
    QrcodeUser,
    /// Official-account bind codes asked per user.
    BindCodeUser,
    /// Coupon claims per user.
    CouponClaimUser,
    /// Lucky-draw entries per user.
    DrawJoinUser,
    /// Withdrawal requests per runner.
    WithdrawUser,
    /// Official-account messages per sender.
    MpOpenid,
    /// Phone numbers fetched by code per user: each `getuserphonenumber` is billed.
    PhoneUser,
    /// Images uploaded per user (avatars, delivery photos): each is stored and checked.
    UploadUser,
}

impl Limit {
    pub const ALL: [Limit; 11] = [
        Limit::LoginIp,
        Limit::OrderUser,
        Limit::PayUser,
        Limit::QrcodeUser,
        Limit::BindCodeUser,
        Limit::CouponClaimUser,
        Limit::DrawJoinUser,
        Limit::WithdrawUser,
        Limit::MpOpenid,
        Limit::PhoneUser,
        Limit::UploadUser,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Limit::LoginIp => "login_ip",
            Limit::OrderUser => "order_user",
            Limit::PayUser => "pay_user",
            Limit::QrcodeUser => "qrcode_user",
            Limit::BindCodeUser => "bind_code_user",
            Limit::CouponClaimUser => "coupon_claim_user",
            Limit::DrawJoinUser => "draw_join_user",
            Limit::WithdrawUser => "withdraw_user",
            Limit::MpOpenid => "mp_openid",
            Limit::PhoneUser => "phone_user",
            Limit::UploadUser => "upload_user",
        }
    }

    /// The defaults, and why (the README's table repeats them).
    pub fn default_rate(self) -> Rate {
        let (count, secs) = match self {
            // A campus NAT puts thousands of students behind one address, and a login is
            // once per session: 600 a minute is a crowd, not a script.
            Limit::LoginIp => (600, 60),
            // A student posts a few errands a day; 30 an hour covers a busy exam week.
            Limit::OrderUser => (30, 3600),
            // Each may call unifiedorder; a user retrying a failed payment needs a few.
            Limit::PayUser => (30, 600),
            // Hits cost nothing, but each distinct scene spends the app's shared quota.
            Limit::QrcodeUser => (60, 3600),
            // One live code at a time; asking again only replaces it.
            Limit::BindCodeUser => (10, 600),
            Limit::CouponClaimUser => (20, 60),
            Limit::DrawJoinUser => (20, 60),
            // WeChat allows 10 transfers per user per day; a few refused tries on top.
            Limit::WithdrawUser => (20, 3600),
            // A person typing; a flood from one sender is a script.
            Limit::MpOpenid => (60, 60),
            // A user sets their number once in a while; WeChat bills every call.
            Limit::PhoneUser => (10, 3600),
            // An avatar now and then, a photo per delivery: a busy runner's evening.
            Limit::UploadUser => (60, 3600),
        };
        Rate {
            count,
            per: Duration::from_secs(secs),
        }
    }
}

impl FromStr for Limit {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Limit::ALL
            .into_iter()
            .find(|l| l.name() == s)
            .ok_or_else(|| format!("unknown limit {s:?}"))
    }
}

/// `count` requests per `per`, as a burst of `count` that refills evenly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    pub count: u32,
    pub per: Duration,
}

impl Rate {
    /// The time one token takes to come back.
    fn interval(self) -> Duration {
        self.per / self.count.max(1)
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}s", self.count, self.per.as_secs())
    }
}

/// The limits in force: every name with its rate, or none at all (`RATE_LIMITS=off`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimits(Option<HashMap<Limit, Rate>>);

impl RateLimits {
    pub fn defaults() -> Self {
        RateLimits(Some(
            Limit::ALL
                .into_iter()
                .map(|l| (l, l.default_rate()))
                .collect(),
        ))
    }

    pub fn off() -> Self {
        RateLimits(None)
    }

    /// `RATE_LIMITS`: empty for the defaults, `off`, or `name=N/SECSs,...` overriding
    /// the named ones (for example `order_user=10/3600s,login_ip=1000/60s`).
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("off") {
            return Ok(Self::off());
        }
        let mut limits = Self::defaults();
        let Some(map) = limits.0.as_mut() else {
            return Ok(limits);
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, rate) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=N/SECSs"))?;
            let limit: Limit = name.trim().parse()?;
            let (count, per) = rate
                .trim()
                .split_once('/')
                .ok_or_else(|| format!("{part:?} is not name=N/SECSs"))?;
            let count: u32 = count
                .parse()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| format!("{part:?}: N must be a positive integer"))?;
            let secs: u64 = per
                .strip_suffix('s')
                .and_then(|n| n.parse().ok())
                .filter(|n| *n > 0)
                .ok_or_else(|| {
                    format!("{part:?}: the period is a positive number of seconds, like 60s")
                })?;
            map.insert(
                limit,
                Rate {
                    count,
                    per: Duration::from_secs(secs),
                },
            );
        }
        Ok(limits)
    }

    pub fn rate(&self, limit: Limit) -> Option<Rate> {
        self.0.as_ref().and_then(|m| m.get(&limit).copied())
    }

    /// As `config check` lists them.
    pub fn describe(&self) -> String {
        match &self.0 {
            None => "off".into(),
            Some(m) => Limit::ALL
                .iter()
                .filter_map(|l| m.get(l).map(|r| format!("{}={r}", l.name())))
                .collect::<Vec<_>>()
                .join(","),
        }
    }
}

/// Over a limit: try again after `retry_after`.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("too many requests ({}); try again in {} s", .limit.name(), .retry_after.as_secs().max(1))]
    Limited { limit: Limit, retry_after: Duration },
    /// The shared buckets cannot be read: refuse rather than let everything through.
    #[error(transparent)]
    Unavailable(#[from] CacheError),
}

impl LimitError {
    /// Whole seconds, rounded up, as `Retry-After` carries them.
    pub fn retry_after_secs(&self) -> u64 {
        match self {
            LimitError::Limited { retry_after, .. } => {
                let ms = retry_after.as_millis() as u64;
                ms.div_ceil(1000).max(1)
            }
            LimitError::Unavailable(_) => 1,
        }
    }
}

type Buckets = HashMap<Limit, Arc<DefaultKeyedRateLimiter<String>>>;

/// Checks and spends one token of a limit for a key (a user id, an address, an openid).
#[derive(Clone)]
pub struct Limits {
    limits: RateLimits,
    store: Store,
    /// Keeps the buckets of deployments that share one Redis apart (user ids and
    /// addresses mean nothing outside their own deployment).
    namespace: String,
}

#[derive(Clone)]
enum Store {
    Local(Arc<Buckets>),
    Shared(RedisCache),
}

/// Past this many keys in one limit, keys whose buckets are full again are forgotten.
const LOCAL_KEYS_SOFT_CAP: usize = 50_000;

impl Limits {
    /// `namespace`: what tells this deployment's buckets apart in a shared Redis (the
    /// mini-program's appid).
    pub fn new(limits: RateLimits, cache: Cache, namespace: &str) -> Self {
        let store = if let Cache::Redis(redis) = cache {
            Store::Shared(redis)
        } else {
            let buckets = Limit::ALL
                .into_iter()
                .filter_map(|l| {
                    let rate = limits.rate(l)?;
                    let burst = NonZeroU32::new(rate.count)?;
                    let quota = Quota::with_period(rate.interval())?.allow_burst(burst);
                    Some((l, Arc::new(RateLimiter::keyed(quota))))
                })
                .collect();
            Store::Local(Arc::new(buckets))
        };
        Self {
            limits,
            store,
            namespace: namespace.to_string(),
        }
    }

    pub fn limits(&self) -> &RateLimits {
        &self.limits
    }

    /// Spends one token of `limit` for `key`; `Limited` when none is left.
    pub async fn check(&self, limit: Limit, key: &str) -> Result<(), LimitError> {
        let Some(rate) = self.limits.rate(limit) else {
            return Ok(());
        };
        let wait = match &self.store {
            Store::Local(buckets) => {
                let Some(bucket) = buckets.get(&limit) else {
                    return Ok(());
                };
                if bucket.len() > LOCAL_KEYS_SOFT_CAP {
                    bucket.retain_recent();
                }
                bucket
                    .check_key(&key.to_string())
                    .err()
                    .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
            }
            Store::Shared(redis) => {
                let bucket = format!("limit:{}:{}:{key}", self.namespace, limit.name());
                redis.throttle(&bucket, rate.interval(), rate.count).await?
            }
        };
        match wait {
            None => Ok(()),
            Some(retry_after) => {
                tracing::info!(limit = limit.name(), "rate limited");
                Err(LimitError::Limited { limit, retry_after })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_overrides_off_and_refuses_nonsense() {
        let d = RateLimits::parse("").expect("empty");
        assert_eq!(d, RateLimits::defaults());
        assert_eq!(RateLimits::parse(" OFF ").expect("off"), RateLimits::off());
        let l = RateLimits::parse("order_user=3/60s, login_ip=1000/60s").expect("parse");
        assert_eq!(
            l.rate(Limit::OrderUser),
            Some(Rate {
                count: 3,
                per: Duration::from_secs(60)
            })
        );
        assert_eq!(l.rate(Limit::PayUser), Some(Limit::PayUser.default_rate()));
        for bad in [
            "order_user",
            "order_user=3",
            "order_user=0/60s",
            "order_user=3/60",
            "order_user=3/0s",
            "nobody=3/60s",
            "order_user=-1/60s",
        ] {
            assert!(RateLimits::parse(bad).is_err(), "{bad}");
        }
        assert!(d.describe().contains("order_user=30/3600s"));
    }

    #[tokio::test]
    async fn local_buckets_allow_the_burst_then_say_when() {
        let limits = RateLimits::parse("order_user=3/3600s").expect("parse");
        let l = Limits::new(limits, Cache::connect(None).await.expect("memory"), "wx1");
        for _ in 0..3 {
            l.check(Limit::OrderUser, "u1")
                .await
                .expect("within the burst");
        }
        let e = l.check(Limit::OrderUser, "u1").await.expect_err("limited");
        // One token comes back every 1200 s.
        assert!((1100..=1200).contains(&e.retry_after_secs()), "{e}");
        l.check(Limit::OrderUser, "u2").await.expect("another user");
        let off = Limits::new(
            RateLimits::off(),
            Cache::connect(None).await.expect("memory"),
            "wx1",
        );
        for _ in 0..100 {
            off.check(Limit::OrderUser, "u1").await.expect("off");
        }
    }
}
