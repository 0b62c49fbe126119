//! Coupons: admins issue them, users claim them (in the mini-program or by sending a
//! keyword to the official account) and put one on an order.
//!
//! The database is the record of every rule, whatever the number of instances: a claim
//! takes one unit from a shard of the stock with a compare-and-set (`taken < cap`),
//! counts the user's claims under
//! a lock on the user's row (taken first in the transaction), and numbers the claim
//! under a unique key `(coupon_id, user_id, seq)`. A claimed coupon is `locked` by the
//! transaction that creates its order, `used` by the one that marks the order paid,
//! and `available` again (or `expired`) by the one that closes it unpaid.

mod discount;
pub mod draws;
mod jobs;
pub mod stock_gate;

pub use discount::{NotApplicable, applicable, discount_fen};
use stock_gate::Verdict;
pub use stock_gate::{GateKind, StockGate};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::coupons::{self as cq, Coupon, NewCoupon, NewUserCoupon, UserCoupon};
use campus_dal::time::{self, to_utc};
use campus_dal::{
    CouponId, CouponStatus, DiscountKind, OrderId, OrderKind, UserCouponId, UserCouponStatus,
    UserId,
};

use crate::db::{Db, DbError};
pub use crate::idempotency::Made;
use crate::idempotency::{self, Fingerprint};
use crate::orders::Page;
use crate::text::{InvalidInput, TextRule, id_cursor, into_page, page_limit};
use crate::users::{CurrentUser, Forbidden, Role};

const TITLE: TextRule = TextRule::line("title", 64).required();
const KEYWORD: TextRule = TextRule::line("keyword", 32);
/// Far above any campus errand; keeps arithmetic far from overflow.
const MAX_FEN: i64 = 10_000_000;
const MAX_STOCK: i64 = 10_000_000;
const MAX_PER_USER: i32 = 100;
const MAX_VALID_DAYS: i32 = 3650;
/// The official account's own commands: a keyword that starts with one would never
/// reach the coupon.
const RESERVED_WORDS: &[&str] = &[
    "help", "bind", "orders", "status", "expense", "报销", "mine", "group", "center",
];

/// The promotions service.
#[derive(Clone)]
pub struct Promotions {
    db: Db,
    gate: StockGate,
}

#[derive(Debug, thiserror::Error)]
pub enum PromotionError {
    /// Unknown, or stopped (for claims).
    #[error("coupon not found")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("this coupon is out of stock")]
    OutOfStock,
    #[error("you have already claimed this coupon as many times as allowed")]
    AlreadyClaimed,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    Db(#[from] DbError),
}

/// `POST /admin/coupons`: a fixed `discount_fen`, or `percent_off` with
/// `max_discount_fen`; validity as `valid_days` after the claim or up to `valid_until`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateCoupon {
    pub title: String,
    #[serde(default)]
    pub discount_fen: Option<i64>,
    /// 1 to 100; needs `max_discount_fen`.
    #[serde(default)]
    pub percent_off: Option<i32>,
    #[serde(default)]
    pub max_discount_fen: Option<i64>,
    #[serde(default)]
    pub min_amount_fen: i64,
    pub stock: i64,
    #[serde(default = "one")]
    pub per_user_limit: i32,
    #[serde(default)]
    pub valid_days: Option<i32>,
    #[serde(default)]
    pub valid_until: Option<DateTime<Utc>>,
    /// The order kinds it applies to; `null`: every kind.
    #[serde(default)]
    pub kinds: Option<Vec<OrderKind>>,
    /// A text that claims it when sent to the official account.
    #[serde(default)]
    pub keyword: Option<String>,
}

fn one() -> i32 {
    1
}

/// A coupon with its counts.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct CouponView {
    #[schema(value_type = i64)]
    pub id: CouponId,
    pub title: String,
    pub discount_kind: DiscountKind,
    pub discount_fen: Option<i64>,
    pub percent_off: Option<i32>,
    pub max_discount_fen: Option<i64>,
    pub min_amount_fen: i64,
    pub stock: i64,
    pub per_user_limit: i32,
    pub valid_days: Option<i32>,
    pub valid_until: Option<DateTime<Utc>>,
    pub kinds: Option<Vec<OrderKind>>,
    /// Shown to admins only.
    pub keyword: Option<String>,
    pub status: CouponStatus,
    pub claimed: i64,
    /// Shown to admins only (`null` in the users' list).
    pub used: Option<i64>,
    pub remaining: i64,
    pub created_at: DateTime<Utc>,
    pub stopped_at: Option<DateTime<Utc>>,
}

impl CouponView {
    /// `claimed`: how many of its stock were claimed (the sum over its stock shards).
    fn of(c: &Coupon, claimed: i64, used: Option<i64>, admin: bool) -> Self {
        Self {
            id: c.id,
            title: c.title.clone(),
            discount_kind: c.discount_kind,
            discount_fen: c.discount_fen,
            percent_off: c.percent_off,
            max_discount_fen: c.max_discount_fen,
            min_amount_fen: c.min_amount_fen,
            stock: c.stock,
            per_user_limit: c.per_user_limit,
            valid_days: c.valid_days,
            valid_until: c.valid_until.map(to_utc),
            kinds: discount::parse_kinds(c.kinds.as_deref()).ok().flatten(),
            keyword: if admin { c.keyword.clone() } else { None },
            status: c.status,
            claimed,
            used,
            remaining: (c.stock - claimed).max(0),
            created_at: to_utc(c.created_at),
            stopped_at: c.stopped_at.map(to_utc),
        }
    }
}

/// A coupon a user claimed.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserCouponView {
    #[schema(value_type = i64)]
    pub id: UserCouponId,
    #[schema(value_type = i64)]
    pub coupon_id: CouponId,
    pub title: String,
    /// An `available` coupon past `expires_at` shows as `expired`.
    pub status: UserCouponStatus,
    pub discount_kind: DiscountKind,
    pub discount_fen: Option<i64>,
    pub percent_off: Option<i32>,
    pub max_discount_fen: Option<i64>,
    pub min_amount_fen: i64,
    pub kinds: Option<Vec<OrderKind>>,
    /// The order holding it (`locked`) or that used it.
    #[schema(value_type = Option<i64>)]
    pub order_id: Option<OrderId>,
    pub claimed_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub used_at: Option<DateTime<Utc>>,
}

impl UserCouponView {
    fn of(u: &UserCoupon, c: &Coupon, now: chrono::NaiveDateTime) -> Self {
        let status = if u.status == UserCouponStatus::Available && u.expires_at <= now {
            UserCouponStatus::Expired
        } else {
            u.status
        };
        Self {
            id: u.id,
            coupon_id: c.id,
            title: c.title.clone(),
            status,
            discount_kind: c.discount_kind,
            discount_fen: c.discount_fen,
            percent_off: c.percent_off,
            max_discount_fen: c.max_discount_fen,
            min_amount_fen: c.min_amount_fen,
            kinds: discount::parse_kinds(c.kinds.as_deref()).ok().flatten(),
            order_id: u.order_id,
            claimed_at: to_utc(u.claimed_at),
            expires_at: to_utc(u.expires_at),
            used_at: u.used_at.map(to_utc),
        }
    }
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct MyCouponsQuery {
    /// `available`, `locked`, `used` or `expired`; all when absent.
    pub status: Option<UserCouponStatus>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct CouponListQuery {
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// What a keyword sent to the official account came to.
#[derive(Debug, PartialEq, Eq)]
pub enum KeywordClaim {
    Claimed { title: String },
    OutOfStock { title: String },
    AlreadyClaimed { title: String },
    NotBound,
}

/// A new coupon's row, or why the request is refused.
struct Checked {
    title: String,
    kind: DiscountKind,
    kinds: Option<String>,
    keyword: Option<String>,
    valid_until: Option<chrono::NaiveDateTime>,
}

fn check_new(req: &CreateCoupon, now: chrono::NaiveDateTime) -> Result<Checked, InvalidInput> {
    let title = TITLE.clean(&req.title)?;
    let fen = |v: i64, what: &str| {
        if (1..=MAX_FEN).contains(&v) {
            Ok(())
        } else {
            Err(InvalidInput(format!("{what} must be 1 to {MAX_FEN}")))
        }
    };
    let kind = match (req.discount_fen, req.percent_off) {
        (Some(d), None) => {
            fen(d, "discount_fen")?;
            if req.max_discount_fen.is_some() {
                return Err(InvalidInput::new(
                    "max_discount_fen goes with percent_off only",
                ));
            }
            DiscountKind::Fixed
        }
        (None, Some(p)) => {
            if !(1..=100).contains(&p) {
                return Err(InvalidInput::new("percent_off must be 1 to 100"));
            }
            let cap = req
                .max_discount_fen
                .ok_or_else(|| InvalidInput::new("percent_off needs max_discount_fen"))?;
            fen(cap, "max_discount_fen")?;
            DiscountKind::Percent
        }
        _ => {
            return Err(InvalidInput::new(
                "give exactly one of discount_fen and percent_off",
            ));
        }
    };
    if !(0..=MAX_FEN).contains(&req.min_amount_fen) {
        return Err(InvalidInput(format!(
            "min_amount_fen must be 0 to {MAX_FEN}"
        )));
    }
    if !(1..=MAX_STOCK).contains(&req.stock) {
        return Err(InvalidInput(format!("stock must be 1 to {MAX_STOCK}")));
    }
    if !(1..=MAX_PER_USER).contains(&req.per_user_limit) {
        return Err(InvalidInput(format!(
            "per_user_limit must be 1 to {MAX_PER_USER}"
        )));
    }
    let valid_until = match (req.valid_days, req.valid_until) {
        (Some(d), None) if (1..=MAX_VALID_DAYS).contains(&d) => None,
        (Some(_), None) => {
            return Err(InvalidInput(format!(
                "valid_days must be 1 to {MAX_VALID_DAYS}"
            )));
        }
        (None, Some(u)) => {
            let u = u.naive_utc();
            if u <= now {
                return Err(InvalidInput::new("valid_until must be in the future"));
            }
            Some(chrono::SubsecRound::trunc_subsecs(u, 6))
        }
        _ => {
            return Err(InvalidInput::new(
                "give exactly one of valid_days and valid_until",
            ));
        }
    };
    let kinds = match &req.kinds {
        None => None,
        Some(k) if k.is_empty() => {
            return Err(InvalidInput::new(
                "kinds must name at least one kind, or be null",
            ));
        }
        Some(k) => {
            let mut k = k.clone();
            k.sort_by_key(|x| x.as_str());
            k.dedup();
            Some(discount::store_kinds(&k))
        }
    };
    let keyword = match &req.keyword {
        None => None,
        Some(w) => {
            let w = KEYWORD.clean(w)?;
            if w.is_empty() {
                return Err(InvalidInput::new("keyword must not be empty, or be null"));
            }
            let first = w
                .split_whitespace()
                .next()
                .unwrap_or_default()
                .to_ascii_lowercase();
            if RESERVED_WORDS.contains(&first.as_str()) {
                return Err(InvalidInput(format!(
                    "keyword must not start with the command {first:?}"
                )));
            }
            Some(w)
        }
    };
    Ok(Checked {
        title,
        kind,
        kinds,
        keyword,
        valid_until,
    })
}

/// One claim of `coupon` by `user`, in the caller's transaction, which has locked the
/// user's row first (so the count of their claims cannot change before the insert).
/// `then` runs after the insert (to record the answer to an `Idempotency-Key`). The stock
/// is taken before the insert: the claim's foreign key takes a shared lock on the coupon's
/// row, and the stock's compare-and-set reads that row too.
fn claim_in(
    c: &mut campus_dal::Conn,
    user: UserId,
    coupon: CouponId,
    then: impl FnOnce(&mut campus_dal::Conn, &UserCoupon) -> Result<(), PromotionError>,
) -> Result<(UserCoupon, Coupon), PromotionError> {
    let now = time::now();
    let Some(cp) = cq::find(c, coupon)? else {
        return Err(PromotionError::NotFound);
    };
    if cp.status != CouponStatus::Active || cp.valid_until.is_some_and(|u| u <= now) {
        return Err(PromotionError::NotFound);
    }
    let mine = cq::claims_by(c, coupon, user)?;
    if mine >= i64::from(cp.per_user_limit) {
        return Err(PromotionError::AlreadyClaimed);
    }
    let expires_at = match (cp.valid_days, cp.valid_until) {
        (Some(d), until) => {
            let by_days = now + chrono::Duration::days(i64::from(d));
            until.map_or(by_days, |u| u.min(by_days))
        }
        (None, Some(u)) => u,
        // The table's CHECK forbids it; a coupon with no validity would be dead at birth.
        (None, None) => now,
    };
    let seq = i32::try_from(mine + 1).map_err(|_| PromotionError::AlreadyClaimed)?;
    if !take_stock(c, &cp)? {
        // Out of stock, or stopped since the read above.
        return Err(match cq::find(c, coupon)? {
            Some(cp) if cp.status == CouponStatus::Active => PromotionError::OutOfStock,
            _ => PromotionError::NotFound,
        });
    }
    let claim = cq::insert_claim(
        c,
        &NewUserCoupon {
            coupon_id: coupon,
            user_id: user,
            seq,
            status: UserCouponStatus::Available,
            claimed_at: now,
            expires_at,
            updated_at: now,
        },
    )
    .map_err(|e| {
        if campus_dal::is_unique_violation(&e) {
            PromotionError::AlreadyClaimed
        } else {
            PromotionError::from(e)
        }
    })?;
    then(c, &claim)?;
    Ok((claim, cp))
}

/// Runs a claim's transaction `f`, again when MariaDB rolled it back as a deadlock's
/// victim (nothing was written). Claims near the end of a coupon's stock can wait for each
/// other's shards: one whose pick filled meanwhile still holds that shard's row while it
/// tries the others.
fn claim_tx<T>(
    c: &mut campus_dal::Conn,
    f: impl Fn(&mut campus_dal::Conn) -> Result<T, PromotionError>,
) -> Result<T, PromotionError> {
    const ATTEMPTS: usize = 4;
    let mut attempt = 1;
    loop {
        match campus_dal::transaction(c, &f) {
            Err(PromotionError::Db(e)) if e.is_deadlock() && attempt < ATTEMPTS => {
                tracing::debug!(attempt, "a coupon claim lost a deadlock; trying again");
                attempt += 1;
            }
            r => return r,
        }
    }
}

/// Takes one unit of the coupon's stock from a shard picked at random, so that concurrent
/// claims spread over the shards' rows instead of queueing on one; when that shard is
/// full, the others in order. False when none is left.
fn take_stock(c: &mut campus_dal::Conn, cp: &Coupon) -> Result<bool, PromotionError> {
    let pick = rand::random_range(0..cp.stock_shards.max(1));
    if cq::take_from(c, cp.id, pick)? == 1 {
        return Ok(true);
    }
    // With one shard there is nowhere else to look.
    Ok(cp.stock_shards > 1 && cq::take_any(c, cp.id)?)
}

fn cursor<T: From<i64>>(c: &Option<String>) -> Result<Option<T>, InvalidInput> {
    Ok(id_cursor(c.as_deref())?.map(T::from))
}

impl Promotions {
    pub fn new(db: Db) -> Self {
        Self {
            db,
            gate: StockGate::Sql,
        }
    }

    /// How claims on a coupon that has run out are turned away (`COUPON_STOCK_GATE`).
    pub fn with_gate(self, gate: StockGate) -> Self {
        Self { gate, ..self }
    }

    /// `POST /admin/coupons`.
    pub async fn create_coupon(
        &self,
        caller: &CurrentUser,
        req: CreateCoupon,
        idempotency_key: Option<String>,
    ) -> Result<Made<CouponView>, PromotionError> {
        caller.require(Role::Admin)?;
        let key = idempotency::Key::parse(idempotency_key)?;
        let now = time::now();
        let checked = check_new(&req, now)?;
        let fingerprint = Fingerprint::of("POST /admin/coupons", &req);
        let admin = caller.id;
        let (coupon, replayed) = self
            .db
            .write_tx(move |c| -> Result<(Coupon, bool), PromotionError> {
                // First: a repeated key is answered once, whichever instance serves it.
                campus_dal::users::lock(c, admin)?;
                if let Some(prev) = idempotency::earlier_id(c, admin, key.as_ref(), &fingerprint)? {
                    let cp = cq::find(c, CouponId(prev))?.ok_or(PromotionError::NotFound)?;
                    return Ok((cp, true));
                }
                let cp = cq::insert(
                    c,
                    &NewCoupon {
                        title: &checked.title,
                        discount_kind: checked.kind,
                        discount_fen: req.discount_fen,
                        percent_off: req.percent_off,
                        max_discount_fen: req.max_discount_fen,
                        min_amount_fen: req.min_amount_fen,
                        stock: req.stock,
                        per_user_limit: req.per_user_limit,
                        valid_days: req.valid_days,
                        valid_until: checked.valid_until,
                        kinds: checked.kinds.as_deref(),
                        keyword: checked.keyword.as_deref(),
                        status: CouponStatus::Active,
                        created_by: admin,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                idempotency::remember(
                    c,
                    admin,
                    key.as_ref(),
                    &fingerprint,
                    201,
                    &cp.id.to_string(),
                    now,
                )?;
                Ok((cp, false))
            })
            .await?;
        let view = self.admin_view(coupon).await?;
        Ok(Made { view, replayed })
    }

    async fn admin_view(&self, cp: Coupon) -> Result<CouponView, PromotionError> {
        let id = cp.id;
        let (claimed, used) = self
            .db
            .read(move |c| -> Result<_, PromotionError> {
                Ok((cq::claimed(c, id)?, cq::used_count(c, id)?))
            })
            .await?;
        Ok(CouponView::of(&cp, claimed, Some(used), true))
    }

    /// `GET /admin/coupons/{id}`.
    pub async fn get_coupon(
        &self,
        caller: &CurrentUser,
        id: CouponId,
    ) -> Result<CouponView, PromotionError> {
        caller.require(Role::Admin)?;
        let cp = self
            .db
            .read(move |c| cq::find(c, id).map_err(PromotionError::from))
            .await?
            .ok_or(PromotionError::NotFound)?;
        self.admin_view(cp).await
    }

    /// `POST /admin/coupons/{id}/stop`: no more claims; claimed coupons stay good.
    /// Stopping a stopped coupon changes nothing.
    pub async fn stop_coupon(
        &self,
        caller: &CurrentUser,
        id: CouponId,
    ) -> Result<CouponView, PromotionError> {
        caller.require(Role::Admin)?;
        let cp = self
            .db
            .write(move |c| -> Result<Option<Coupon>, PromotionError> {
                cq::stop(c, id, time::now())?;
                Ok(cq::find(c, id)?)
            })
            .await?
            .ok_or(PromotionError::NotFound)?;
        self.gate.forget(id).await;
        self.admin_view(cp).await
    }

    /// `GET /coupons`: active coupons with stock left that the caller has not claimed
    /// as often as allowed, newest first. A page may hold fewer than `limit` items
    /// while `next_cursor` says more follow.
    pub async fn claimable(
        &self,
        user: &CurrentUser,
        q: CouponListQuery,
    ) -> Result<Page<CouponView>, PromotionError> {
        let limit = page_limit(q.limit)?;
        let before = cursor::<CouponId>(&q.cursor)?;
        let uid = user.id;
        let (rows, mine, claimed) = self
            .db
            .read(move |c| -> Result<_, PromotionError> {
                let rows = cq::claimable(c, time::now(), before, limit)?;
                let ids: Vec<CouponId> = rows.iter().map(|r| r.id).collect();
                let mine = cq::claims_among(c, uid, &ids)?;
                let claimed = cq::claimed_among(c, &ids)?;
                Ok((rows, mine, claimed))
            })
            .await?;
        let mut page = into_page(rows, limit, |r| r.id.0, |r| r.clone());
        page.items.retain(|r| {
            (mine.iter().filter(|m| **m == r.id).count() as i64) < i64::from(r.per_user_limit)
        });
        Ok(Page {
            items: page
                .items
                .iter()
                .map(|r| {
                    let n = claimed
                        .iter()
                        .find(|(id, _)| *id == r.id)
                        .map_or(0, |(_, n)| *n);
                    CouponView::of(r, n, None, false)
                })
                .collect(),
            next_cursor: page.next_cursor,
        })
    }

    /// `POST /coupons/{id}/claim`.
    pub async fn claim(
        &self,
        user: &CurrentUser,
        id: CouponId,
        idempotency_key: Option<String>,
    ) -> Result<Made<UserCouponView>, PromotionError> {
        let key = idempotency::Key::parse(idempotency_key)?;
        let uid = user.id;
        let fingerprint = Fingerprint::of("POST /coupons/{id}/claim", &id);
        let held = match self.gate.check(&self.db, id).await? {
            Verdict::SoldOut if key.is_none() => {
                return Err(PromotionError::OutOfStock);
            }
            // A retry may be asking for the coupon its first attempt got: the database
            // replays that, or refuses.
            Verdict::SoldOut => false,
            Verdict::Go { held } => held,
        };
        let claimed = self
            .db
            .write(move |c| {
                claim_tx(
                    c,
                    |c| -> Result<(UserCoupon, Coupon, bool), PromotionError> {
                        // First: the replay check and the claim count are the user's, one at a time.
                        campus_dal::users::lock(c, uid)?;
                        if let Some(prev) =
                            idempotency::earlier_id(c, uid, key.as_ref(), &fingerprint)?
                        {
                            let (u, cp) = cq::find_claim(c, UserCouponId(prev))?
                                .ok_or(PromotionError::NotFound)?;
                            return Ok((u, cp, true));
                        }
                        let (u, cp) = claim_in(c, uid, id, |c, u| {
                            idempotency::remember(
                                c,
                                uid,
                                key.as_ref(),
                                &fingerprint,
                                201,
                                &u.id.to_string(),
                                time::now(),
                            )
                            .map_err(PromotionError::from)
                        })?;
                        Ok((u, cp, false))
                    },
                )
            })
            .await;
        if !matches!(claimed, Ok((_, _, false))) {
            self.gate.give_back(id, held).await;
        }
        let (u, cp, replayed) = claimed?;
        Ok(Made {
            view: UserCouponView::of(&u, &cp, time::now()),
            replayed,
        })
    }

    /// `GET /me/coupons`.
    pub async fn my_coupons(
        &self,
        user: &CurrentUser,
        q: MyCouponsQuery,
    ) -> Result<Page<UserCouponView>, PromotionError> {
        let limit = page_limit(q.limit)?;
        let before = cursor::<UserCouponId>(&q.cursor)?;
        let uid = user.id;
        let status = q.status;
        let now = time::now();
        let rows = self
            .db
            .read(move |c| {
                cq::list_claims(c, uid, status, now, before, limit).map_err(PromotionError::from)
            })
            .await?;
        Ok(into_page(
            rows,
            limit,
            |(u, _)| u.id.0,
            |(u, c)| UserCouponView::of(u, c, now),
        ))
    }

    /// A text sent to the official account: when it is an active coupon's keyword, the
    /// sender's bound user claims it. `None`: no coupon has that keyword.
    pub async fn claim_by_keyword(
        &self,
        mp_openid: &str,
        text: &str,
    ) -> Result<Option<KeywordClaim>, PromotionError> {
        let (openid, text) = (mp_openid.to_string(), text.to_string());
        // Read apart from the claim's transaction, whose first statement must be the
        // user's lock (on MariaDB a read before it would fix an older snapshot).
        let found = self
            .db
            .read(move |c| -> Result<_, PromotionError> {
                let Some(cp) = cq::find_active_by_keyword(c, &text)? else {
                    return Ok(None);
                };
                let user = campus_dal::users::find_by_mp_openid(c, &openid)?;
                Ok(Some((cp, user.map(|u| u.id))))
            })
            .await?;
        let Some((cp, user)) = found else {
            return Ok(None);
        };
        let Some(uid) = user else {
            return Ok(Some(KeywordClaim::NotBound));
        };
        let (id, title) = (cp.id, cp.title);
        let r = self
            .db
            .write(move |c| {
                claim_tx(c, |c| {
                    campus_dal::users::lock(c, uid)?;
                    claim_in(c, uid, id, |_, _| Ok(()))
                })
            })
            .await;
        Ok(Some(match r {
            Ok(_) => KeywordClaim::Claimed { title },
            Err(PromotionError::OutOfStock) => KeywordClaim::OutOfStock { title },
            Err(PromotionError::AlreadyClaimed) => KeywordClaim::AlreadyClaimed { title },
            // Stopped between the read and the claim: as if the keyword were unknown.
            Err(PromotionError::NotFound) => return Ok(None),
            Err(e) => return Err(e),
        }))
    }

    /// Job (and tests): available coupons past their time become `expired`.
    pub async fn expire_coupons(&self) -> Result<usize, PromotionError> {
        self.db
            .write(|c| cq::expire_due(c, time::now()).map_err(PromotionError::from))
            .await
    }
}

/// In the order's creation transaction (after the user's lock): the discount the
/// user's coupon gives an order of `kind` and `gross` fen.
pub(crate) fn discount_for_order(
    c: &mut campus_dal::Conn,
    user: UserId,
    coupon: UserCouponId,
    kind: OrderKind,
    gross: i64,
) -> Result<Result<i64, NotApplicable>, campus_dal::DieselError> {
    let Some((claim, cp)) = cq::find_claim(c, coupon)? else {
        return Ok(Err(NotApplicable("no such coupon")));
    };
    Ok(applicable(&claim, &cp, user, kind, gross, time::now()))
}

/// In the same transaction, once the order exists: the coupon is locked by it, or
/// another order took it first.
pub(crate) fn lock_for_order(
    c: &mut campus_dal::Conn,
    coupon: UserCouponId,
    order: OrderId,
) -> Result<Result<(), NotApplicable>, campus_dal::DieselError> {
    Ok(match cq::lock_for_order(c, coupon, order, time::now())? {
        1 => Ok(()),
        _ => Err(NotApplicable("the coupon is not available")),
    })
}
