//! Lucky draws: a user creates one with prizes, others join until `lock_at`
//! (`draw_at - DRAW_LOCK_SECS`), and at `draw_at` the winners are drawn.
//!
//! Exactly once, whatever the number of instances: every status move is a
//! compare-and-set on the draw's row. The lock (open → locked) fixes the seed, so the
//! winners are known before anyone draws them; the draw (locked → drawn) writes the
//! winners, their coupon prizes and the status in one transaction whose first statement
//! is `UPDATE draws SET status = 'drawn' WHERE id = ? AND status = 'locked'`. A second
//! instance waits on that row and then changes nothing; a crash before the commit
//! leaves the draw `locked` with its seed, and the next tick draws the same winners.
//!
//! The algorithm ([`ALGORITHM`], [`pick_winners`]) is a pure function of the seed, the
//! participants and the prize counts, so anyone holding them can re-run it
//! (`campus-errand draw replay <id>`).

use std::collections::HashMap;

use chrono::{DateTime, NaiveDateTime, Utc};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use campus_dal::draws::{self as dq, DrawPrize, NewDraw, NewDrawPrize, NewDrawWinner};
use campus_dal::time::{self, to_utc};
use campus_dal::{
    ContentSubject, CouponId, CouponStatus, DrawId, DrawStatus, UserCouponId, UserId,
};

use crate::content_check::{ContentChecks, ContentRejected, Findings};
use crate::db::{Db, DbError};
use crate::idempotency::{self, Fingerprint};
use crate::orders::Page;
use crate::promotions::Made;
use crate::subscriptions::Subscriptions;
use crate::text::{InvalidInput, TextRule, id_cursor, into_page, page_limit};
use crate::users::{CurrentUser, Forbidden, Role};

/// The name stored with every drawn draw; [`pick_winners`] documents it.
pub const ALGORITHM: &str = "sha256-ctr Fisher-Yates over participants sorted by user id";

const TITLE: TextRule = TextRule::line("title", 64).required();
const PRIZE_NAME: TextRule = TextRule::line("prize name", 64).required();
const MAX_PRIZES: usize = 20;
const MAX_PRIZE_COUNT: i32 = 10_000;
/// Far enough that a draw is not forgotten before it is made.
const MAX_AHEAD_DAYS: i64 = 365;
/// Margin past the lock for joining: the contract's "DRAW_LOCK_SECS + 60 s".
const MIN_OPEN_SECS: i64 = 60;

#[derive(Debug, thiserror::Error)]
pub enum DrawError {
    #[error("draw not found")]
    NotFound,
    #[error(transparent)]
    ContentRejected(#[from] ContentRejected),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error("this draw no longer takes joins, leaves or cancels")]
    Locked,
    #[error("this draw was cancelled")]
    Cancelled,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    /// A stored draw that cannot be read back (or the tests' injected failure).
    #[error("draw data unusable: {0}")]
    Corrupt(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The service.
#[derive(Clone)]
pub struct Draws {
    db: Db,
    lock_secs: i64,
    /// Results to the participants; `None` in the replay command, which sends nothing.
    subscriptions: Option<Subscriptions>,
    /// WeChat's check of titles and prize names; `None`: not checked.
    content: Option<ContentChecks>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewPrize {
    pub name: String,
    pub count: i32,
    /// A coupon each winner of this prize receives (admins only).
    #[serde(default)]
    #[schema(value_type = Option<i64>)]
    pub coupon_id: Option<CouponId>,
}

/// `POST /draws`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateDraw {
    pub title: String,
    /// At least `DRAW_LOCK_SECS` + 60 s from now.
    pub draw_at: DateTime<Utc>,
    /// Drawn in this order: the first prize's winners are drawn first.
    pub prizes: Vec<NewPrize>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PrizeView {
    pub name: String,
    pub count: i32,
    #[schema(value_type = Option<i64>)]
    pub coupon_id: Option<CouponId>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct WinnerView {
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub nickname: Option<String>,
    /// The prize's name.
    pub prize: String,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DrawView {
    #[schema(value_type = i64)]
    pub id: DrawId,
    pub title: String,
    pub status: DrawStatus,
    pub draw_at: DateTime<Utc>,
    pub lock_at: DateTime<Utc>,
    pub prizes: Vec<PrizeView>,
    /// How many joined.
    pub participants: i64,
    #[schema(value_type = i64)]
    pub creator_id: UserId,
    /// Whether the caller joined.
    pub joined: bool,
    /// The name of the caller's prize, once drawn.
    pub my_prize: Option<String>,
    /// Empty until drawn.
    pub winners: Vec<WinnerView>,
    /// 64 hex digits; `null` until drawn.
    pub seed: Option<String>,
    /// How the winners follow from the seed; present once drawn.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
}

/// Which of the caller's draws to list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum MineFilter {
    Created,
    Joined,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct DrawListQuery {
    /// `created` (the default) or `joined`.
    pub mine: Option<MineFilter>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

/// What the draw made: who won what, for the replay command and the tests.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Replay {
    pub draw: DrawId,
    pub seed: String,
    pub participants: Vec<UserId>,
    /// `(user, prize name)` in drawing order, by the algorithm.
    pub computed: Vec<(UserId, String)>,
    /// The same, as stored.
    pub stored: Vec<(UserId, String)>,
}

impl Replay {
    pub fn matches(&self) -> bool {
        self.computed == self.stored
    }
}

/// The `i`-th 64-bit number of the seed's stream: the first 8 bytes (big-endian) of
/// SHA-256(seed ‖ i as 8 bytes big-endian).
fn stream_u64(seed: &[u8], counter: u64) -> u64 {
    let mut h = Sha256::new();
    h.update(seed);
    h.update(counter.to_be_bytes());
    let d = h.finalize();
    let mut b = [0u8; 8];
    b.copy_from_slice(&d[..8]);
    u64::from_be_bytes(b)
}

/// A uniform number below `n` (n ≥ 1) from the stream, by rejection: numbers at or
/// above the largest multiple of `n` that fits in 64 bits are skipped, since taking
/// them modulo `n` would favour the small results.
fn uniform_below(seed: &[u8], counter: &mut u64, n: u64) -> u64 {
    let zone = (1u128 << 64) / u128::from(n) * u128::from(n);
    loop {
        let r = stream_u64(seed, *counter);
        *counter += 1;
        if u128::from(r) < zone {
            return r % n;
        }
    }
}

/// The winners of a draw, as `(prize index, user)` in drawing order.
///
/// The algorithm ([`ALGORITHM`]): sort the participants by user id ascending; for
/// `i` in `0..min(total prizes, participants)`, pick `j` uniformly in `i..n` with
/// [`uniform_below`] over the stream SHA-256(seed ‖ counter) (counter from 0, one
/// step per 64-bit number, rejected numbers included) and swap positions `i` and `j`
/// (a partial Fisher–Yates shuffle). The first `count₀` positions win the first prize,
/// the next `count₁` the second, and so on; without replacement, so nobody wins twice.
pub fn pick_winners(seed: &[u8], participants: &[UserId], counts: &[i32]) -> Vec<(usize, UserId)> {
    let mut pool: Vec<UserId> = participants.to_vec();
    pool.sort_unstable();
    pool.dedup();
    let n = pool.len();
    let mut counter = 0u64;
    let mut out = Vec::new();
    let mut i = 0usize;
    for (prize, &count) in counts.iter().enumerate() {
        for _ in 0..count.max(0) {
            if i >= n {
                return out;
            }
            let j = i + uniform_below(seed, &mut counter, (n - i) as u64) as usize;
            pool.swap(i, j);
            out.push((prize, pool[i]));
            i += 1;
        }
    }
    out
}

fn new_seed() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    hex::encode(b)
}

fn seed_bytes(seed: &str) -> Result<Vec<u8>, DrawError> {
    hex::decode(seed).map_err(|_| DrawError::Corrupt("the draw's seed is not hex".into()))
}

/// Computes the draw's winners from its stored seed, participants and prizes, and
/// lays them beside the stored winners.
pub fn replay_in(c: &mut campus_dal::Conn, id: DrawId) -> Result<Replay, DrawError> {
    let draw = dq::find(c, id)?.ok_or(DrawError::NotFound)?;
    if draw.status != DrawStatus::Drawn {
        return Err(InvalidInput::new("the draw has not been drawn yet").into());
    }
    let seed = draw.seed.clone().ok_or(DrawError::NotFound)?;
    let prizes = dq::prizes(c, id)?;
    let participants = dq::participants(c, id)?;
    let counts: Vec<i32> = prizes.iter().map(|p| p.count).collect();
    let computed = pick_winners(&seed_bytes(&seed)?, &participants, &counts)
        .into_iter()
        .map(|(p, u)| (u, prizes[p].name.clone()))
        .collect();
    let names: HashMap<_, _> = prizes.iter().map(|p| (p.id, p.name.clone())).collect();
    let stored = dq::winners(c, id)?
        .into_iter()
        .map(|w| {
            (
                w.user_id,
                names.get(&w.prize_id).cloned().unwrap_or_default(),
            )
        })
        .collect();
    Ok(Replay {
        draw: id,
        seed,
        participants,
        computed,
        stored,
    })
}

fn cursor(c: &Option<String>) -> Result<Option<DrawId>, InvalidInput> {
    Ok(id_cursor(c.as_deref())?.map(DrawId))
}

/// The new draw's rows, or why the request is refused.
struct Checked {
    title: String,
    draw_at: NaiveDateTime,
    lock_at: NaiveDateTime,
    prizes: Vec<(String, i32, Option<CouponId>)>,
}

fn check_new(
    req: &CreateDraw,
    caller: &CurrentUser,
    lock_secs: i64,
    now: NaiveDateTime,
) -> Result<Checked, DrawError> {
    let title = TITLE.clean(&req.title)?;
    let draw_at = chrono::SubsecRound::trunc_subsecs(req.draw_at.naive_utc(), 6);
    let earliest = now + chrono::Duration::seconds(lock_secs + MIN_OPEN_SECS);
    if draw_at < earliest {
        return Err(InvalidInput(format!(
            "draw_at must be at least {} seconds from now",
            lock_secs + MIN_OPEN_SECS
        ))
        .into());
    }
    if draw_at > now + chrono::Duration::days(MAX_AHEAD_DAYS) {
        return Err(InvalidInput(format!("draw_at must be within {MAX_AHEAD_DAYS} days")).into());
    }
    if req.prizes.is_empty() || req.prizes.len() > MAX_PRIZES {
        return Err(InvalidInput(format!("give 1 to {MAX_PRIZES} prizes")).into());
    }
    let mut prizes = Vec::with_capacity(req.prizes.len());
    for p in &req.prizes {
        let name = PRIZE_NAME.clean(&p.name)?;
        if !(1..=MAX_PRIZE_COUNT).contains(&p.count) {
            return Err(InvalidInput(format!("prize count must be 1 to {MAX_PRIZE_COUNT}")).into());
        }
        if p.coupon_id.is_some() {
            caller.require(Role::Admin)?;
        }
        prizes.push((name, p.count, p.coupon_id));
    }
    Ok(Checked {
        title,
        draw_at,
        lock_at: draw_at - chrono::Duration::seconds(lock_secs),
        prizes,
    })
}

/// One coupon for a winner, in the drawing transaction: it takes stock like a claim
/// but ignores the per-user limit (a prize is not a claim). `None` when the coupon ran
/// out or was stopped since the draw was created: the winner keeps the prize's name.
fn issue_coupon(
    c: &mut campus_dal::Conn,
    user: UserId,
    coupon: CouponId,
    now: NaiveDateTime,
) -> Result<Option<UserCouponId>, DrawError> {
    use campus_dal::coupons as cq;
    let Some(cp) = cq::find(c, coupon)? else {
        return Ok(None);
    };
    if cp.valid_until.is_some_and(|u| u <= now) || !cq::take_any(c, coupon)? {
        tracing::warn!(%coupon, %user, "a draw's coupon prize could not be issued");
        return Ok(None);
    }
    let expires_at = match (cp.valid_days, cp.valid_until) {
        (Some(d), until) => {
            let by_days = now + chrono::Duration::days(i64::from(d));
            until.map_or(by_days, |u| u.min(by_days))
        }
        (None, Some(u)) => u,
        (None, None) => now,
    };
    // As a claim does: under the user's lock, so a claim at the same moment cannot take
    // the same `seq`.
    campus_dal::users::lock(c, user)?;
    let seq = i32::try_from(cq::claims_by(c, coupon, user)? + 1).unwrap_or(i32::MAX);
    let claim = cq::insert_claim(
        c,
        &cq::NewUserCoupon {
            coupon_id: coupon,
            user_id: user,
            seq,
            status: campus_dal::UserCouponStatus::Available,
            claimed_at: now,
            expires_at,
            updated_at: now,
        },
    )?;
    Ok(Some(claim.id))
}

/// The drawing transaction; `Ok(false)` when another caller drew it (or it is not due).
/// `fail_before_commit` lets the tests stop it after the winners are written.
pub fn draw_in(
    c: &mut campus_dal::Conn,
    id: DrawId,
    fail_before_commit: bool,
) -> Result<bool, DrawError> {
    let now = time::now();
    // First, so that it holds the row: whoever comes second finds `drawn` and stops.
    if dq::mark_drawn(c, id, now)? != 1 {
        return Ok(false);
    }
    let draw = dq::find(c, id)?.ok_or(DrawError::NotFound)?;
    let seed = draw.seed.as_deref().ok_or(DrawError::NotFound)?;
    let prizes = dq::prizes(c, id)?;
    let participants = dq::participants(c, id)?;
    let counts: Vec<i32> = prizes.iter().map(|p| p.count).collect();
    let mut rows = Vec::new();
    for (p, user) in pick_winners(&seed_bytes(seed)?, &participants, &counts) {
        let prize = &prizes[p];
        let user_coupon_id = match prize.coupon_id {
            Some(coupon) => issue_coupon(c, user, coupon, now)?,
            None => None,
        };
        rows.push(NewDrawWinner {
            draw_id: id,
            user_id: user,
            prize_id: prize.id,
            user_coupon_id,
        });
    }
    dq::insert_winners(c, &rows)?;
    if fail_before_commit {
        return Err(DrawError::Corrupt(
            "injected failure before the commit".into(),
        ));
    }
    Ok(true)
}

impl Draws {
    pub fn new(db: Db, lock_secs: i64) -> Self {
        Self {
            db,
            lock_secs,
            subscriptions: None,
            content: None,
        }
    }

    /// Titles and prize names pass WeChat's content check.
    pub fn with_content_checks(mut self, content: ContentChecks) -> Self {
        self.content = Some(content);
        self
    }

    pub fn with_subscriptions(mut self, s: Subscriptions) -> Self {
        self.subscriptions = Some(s);
        self
    }

    /// After the commit: each participant hears what they won. Errors here are logged
    /// only; the draw stands.
    async fn announce(&self, id: DrawId) {
        let Some(subs) = &self.subscriptions else {
            return;
        };
        let found = self
            .db
            .read(move |c| -> Result<_, DrawError> {
                let draw = dq::find(c, id)?.ok_or(DrawError::NotFound)?;
                let prizes = dq::prizes(c, id)?;
                let names: HashMap<_, _> = prizes.into_iter().map(|p| (p.id, p.name)).collect();
                let won: HashMap<UserId, String> = dq::winners(c, id)?
                    .into_iter()
                    .filter_map(|w| names.get(&w.prize_id).map(|n| (w.user_id, n.clone())))
                    .collect();
                let results = dq::participants(c, id)?
                    .into_iter()
                    .map(|u| (u, won.get(&u).cloned()))
                    .collect::<Vec<_>>();
                Ok((draw, results))
            })
            .await;
        match found {
            Ok((draw, results)) => subs.announce_draw(
                draw.id.0,
                &draw.title,
                draw.drawn_at.unwrap_or(draw.updated_at),
                results,
            ),
            Err(e) => tracing::warn!(draw = %id, error = %e, "draw results not announced"),
        }
    }

    /// `POST /draws`; a repeated `Idempotency-Key` answers with the first draw.
    pub async fn create(
        &self,
        caller: &CurrentUser,
        req: CreateDraw,
        idempotency_key: Option<String>,
    ) -> Result<Made<DrawView>, DrawError> {
        let key = idempotency::Key::parse(idempotency_key)?;
        let now = time::now();
        let checked = check_new(&req, caller, self.lock_secs, now)?;
        let findings = match &self.content {
            Some(cc) => {
                let mut texts: Vec<(&'static str, &str)> = vec![("title", &checked.title)];
                texts.extend(
                    checked
                        .prizes
                        .iter()
                        .map(|(name, _, _)| ("prize", name.as_str())),
                );
                cc.check(caller, 2, &texts).await?
            }
            None => Findings::default(),
        };
        let fingerprint = Fingerprint::of("POST /draws", &req);
        let uid = caller.id;
        let (draw, replayed) = self
            .db
            .write_tx(move |c| -> Result<(DrawId, bool), DrawError> {
                // First: a repeated key is answered once, whichever instance serves it.
                campus_dal::users::lock(c, uid)?;
                if let Some(id) = idempotency::earlier_id(c, uid, key.as_ref(), &fingerprint)? {
                    return Ok((DrawId(id), true));
                }
                for (_, _, coupon) in &checked.prizes {
                    if let Some(coupon) = coupon {
                        let ok = campus_dal::coupons::find(c, *coupon)?.is_some_and(|cp| {
                            cp.status == CouponStatus::Active
                                && cp.valid_until.is_none_or(|u| u > checked.draw_at)
                        });
                        if !ok {
                            return Err(InvalidInput(format!(
                                "coupon {coupon} is not an active coupon valid at draw_at"
                            ))
                            .into());
                        }
                    }
                }
                let draw = dq::insert(
                    c,
                    &NewDraw {
                        title: &checked.title,
                        status: DrawStatus::Open,
                        draw_at: checked.draw_at,
                        lock_at: checked.lock_at,
                        creator_id: uid,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                let prizes: Vec<NewDrawPrize<'_>> = checked
                    .prizes
                    .iter()
                    .enumerate()
                    .map(|(i, (name, count, coupon))| NewDrawPrize {
                        draw_id: draw.id,
                        position: i32::try_from(i).unwrap_or(i32::MAX),
                        name,
                        count: *count,
                        coupon_id: *coupon,
                    })
                    .collect();
                dq::insert_prizes(c, &prizes)?;
                findings.record(c, uid, ContentSubject::Draw, draw.id.0)?;
                idempotency::remember(
                    c,
                    uid,
                    key.as_ref(),
                    &fingerprint,
                    201,
                    &draw.id.to_string(),
                    now,
                )?;
                Ok((draw.id, false))
            })
            .await?;
        Ok(Made {
            view: self.view(caller.id, draw).await?,
            replayed,
        })
    }

    /// The draw as `viewer` sees it.
    pub async fn view(&self, viewer: UserId, id: DrawId) -> Result<DrawView, DrawError> {
        self.db.read(move |c| view_in(c, viewer, id)).await
    }

    /// `GET /draws/{id}`.
    pub async fn get(&self, caller: &CurrentUser, id: DrawId) -> Result<DrawView, DrawError> {
        self.view(caller.id, id).await
    }

    /// `GET /draws?mine=created|joined`.
    pub async fn list(
        &self,
        caller: &CurrentUser,
        q: DrawListQuery,
    ) -> Result<Page<DrawView>, DrawError> {
        let limit = page_limit(q.limit)?;
        let before = cursor(&q.cursor)?;
        let uid = caller.id;
        let mine = q.mine.unwrap_or(MineFilter::Created);
        self.db
            .read(move |c| -> Result<Page<DrawView>, DrawError> {
                let rows = match mine {
                    MineFilter::Created => dq::created_by(c, uid, before, limit)?,
                    MineFilter::Joined => dq::joined_by(c, uid, before, limit)?,
                };
                let page = into_page(rows, limit, |d| d.id.0, |d| d.id);
                let mut items = Vec::with_capacity(page.items.len());
                for id in page.items {
                    items.push(view_in(c, uid, id)?);
                }
                Ok(Page {
                    items,
                    next_cursor: page.next_cursor,
                })
            })
            .await
    }

    /// `POST /draws/{id}/join`: joining twice changes nothing.
    pub async fn join(&self, caller: &CurrentUser, id: DrawId) -> Result<DrawView, DrawError> {
        let uid = caller.id;
        self.db
            .write_tx(move |c| -> Result<(), DrawError> {
                open_or_why(c, id)?;
                if !dq::has_joined(c, id, uid)? {
                    dq::join(c, id, uid, time::now())?;
                }
                Ok(())
            })
            .await?;
        self.view(uid, id).await
    }

    /// `DELETE /draws/{id}/join`: leaving a draw one has not joined changes nothing.
    pub async fn leave(&self, caller: &CurrentUser, id: DrawId) -> Result<DrawView, DrawError> {
        let uid = caller.id;
        self.db
            .write_tx(move |c| -> Result<(), DrawError> {
                open_or_why(c, id)?;
                dq::leave(c, id, uid)?;
                Ok(())
            })
            .await?;
        self.view(uid, id).await
    }

    /// `POST /draws/{id}/cancel`: the creator or an admin, while open.
    pub async fn cancel(&self, caller: &CurrentUser, id: DrawId) -> Result<DrawView, DrawError> {
        let (uid, admin) = (caller.id, caller.role == Role::Admin);
        self.db
            .write(move |c| -> Result<(), DrawError> {
                let draw = dq::find(c, id)?.ok_or(DrawError::NotFound)?;
                if draw.creator_id != uid && !admin {
                    return Err(Forbidden(Role::Admin).into());
                }
                if dq::cancel(c, id, time::now())? == 1 {
                    return Ok(());
                }
                // Lost to the lock job or another cancel: say which.
                Err(closed_error(c, id)?)
            })
            .await?;
        self.view(uid, id).await
    }

    /// Locks the open draws whose `lock_at` has come, fixing each one's seed.
    pub async fn lock_due(&self) -> Result<usize, DrawError> {
        self.db
            .write(|c| -> Result<usize, DrawError> {
                let now = time::now();
                let mut n = 0;
                for id in dq::due_to_lock(c, now)? {
                    match dq::lock(c, id, &new_seed(), ALGORITHM, now) {
                        Ok(k) => n += k,
                        // Chosen as a deadlock's victim (another instance drawing holds
                        // the row's index entries): nothing was written; the next tick
                        // locks it.
                        Err(e) if campus_dal::is_deadlock(&e) => {
                            tracing::warn!(draw = %id, "draw lock lost a deadlock; retried next tick");
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Ok(n)
            })
            .await
    }

    /// Draws the locked draws whose `draw_at` has come; each in its own transaction,
    /// so that one failing does not hold up the others.
    pub async fn draw_due(&self) -> Result<usize, DrawError> {
        let due = self
            .db
            .read(|c| dq::due_to_draw(c, time::now()).map_err(DrawError::from))
            .await?;
        let mut n = 0;
        for id in due {
            match self.draw_one(id).await {
                Ok(true) => n += 1,
                Ok(false) => {}
                Err(e) => tracing::warn!(draw = %id, error = %e, "draw failed; retried next tick"),
            }
        }
        Ok(n)
    }

    /// Job tick: lock, then draw.
    pub async fn run_due(&self) -> Result<usize, DrawError> {
        let locked = self.lock_due().await?;
        Ok(locked + self.draw_due().await?)
    }

    /// Draws one locked draw (whether or not `draw_at` has come: the job decides when);
    /// `Ok(false)` when it was already drawn.
    pub async fn draw_one(&self, id: DrawId) -> Result<bool, DrawError> {
        let made = self.db.write_tx(move |c| draw_in(c, id, false)).await?;
        if made {
            self.announce(id).await;
        }
        Ok(made)
    }

    /// For the tests: the drawing transaction, failing after the winners were written.
    pub async fn draw_one_failing(&self, id: DrawId) -> Result<bool, DrawError> {
        self.db.write_tx(move |c| draw_in(c, id, true)).await
    }

    /// The algorithm's winners from the stored seed beside the stored winners.
    pub async fn replay(&self, id: DrawId) -> Result<Replay, DrawError> {
        self.db.read(move |c| replay_in(c, id)).await
    }
}

/// Holds the open draw's row for the rest of the transaction, or says why it is not
/// open.
fn open_or_why(c: &mut campus_dal::Conn, id: DrawId) -> Result<(), DrawError> {
    if dq::touch_open(c, id, time::now())? == 1 {
        return Ok(());
    }
    Err(closed_error(c, id)?)
}

fn closed_error(c: &mut campus_dal::Conn, id: DrawId) -> Result<DrawError, DrawError> {
    Ok(match dq::find(c, id)?.map(|d| d.status) {
        None => DrawError::NotFound,
        Some(DrawStatus::Cancelled) => DrawError::Cancelled,
        Some(DrawStatus::Open | DrawStatus::Locked | DrawStatus::Drawn) => DrawError::Locked,
    })
}

fn view_in(c: &mut campus_dal::Conn, viewer: UserId, id: DrawId) -> Result<DrawView, DrawError> {
    let draw = dq::find(c, id)?.ok_or(DrawError::NotFound)?;
    let prizes: Vec<DrawPrize> = dq::prizes(c, id)?;
    let participants = dq::participant_count(c, id)?;
    let joined = dq::has_joined(c, id, viewer)?;
    let drawn = draw.status == DrawStatus::Drawn;
    let winners = if drawn {
        dq::winners(c, id)?
    } else {
        Vec::new()
    };
    let ids: Vec<UserId> = winners.iter().map(|w| w.user_id).collect();
    let nicks: HashMap<UserId, Option<String>> = dq::nicknames(c, &ids)?.into_iter().collect();
    let names: HashMap<_, _> = prizes.iter().map(|p| (p.id, p.name.clone())).collect();
    let winners: Vec<WinnerView> = winners
        .iter()
        .map(|w| WinnerView {
            user_id: w.user_id,
            nickname: nicks.get(&w.user_id).cloned().flatten(),
            prize: names.get(&w.prize_id).cloned().unwrap_or_default(),
        })
        .collect();
    let my_prize = winners
        .iter()
        .find(|w| w.user_id == viewer)
        .map(|w| w.prize.clone());
    Ok(DrawView {
        id: draw.id,
        title: draw.title,
        status: draw.status,
        draw_at: to_utc(draw.draw_at),
        lock_at: to_utc(draw.lock_at),
        prizes: prizes
            .into_iter()
            .map(|p| PrizeView {
                name: p.name,
                count: p.count,
                coupon_id: p.coupon_id,
            })
            .collect(),
        participants,
        creator_id: draw.creator_id,
        joined,
        my_prize,
        winners,
        // The seed is fixed at the lock but shown only once drawn: before that it
        // would tell who is going to win.
        seed: if drawn { draw.seed } else { None },
        algorithm: if drawn { draw.algorithm } else { None },
    })
}
