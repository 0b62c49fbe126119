//! Creating, reading and moving orders through their delivery states.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::orders::{self as q, NewOrder, Order, Scope};
use campus_dal::{ContentSubject, OrderId, OrderKind, OrderMove, OrderStatus, UserCouponId, time};

use super::view::OrderView;
use super::{OrderError, OrderNotFound, Orders, find_visible, lost_race};
use crate::content_check::Findings;
use crate::crypto::{random_alnum, random_digits};
use crate::db::DbError;
use crate::idempotency::{self, Fingerprint};
use crate::promotions;
use crate::subscriptions::OrderEvent;
use crate::text::{InvalidInput, TextRule, page_limit};
use crate::users::{CurrentUser, Role};

/// The most one order may cost: ¥100,000, far above any errand, far below overflow.
const MAX_FEN: i64 = 10_000_000;
const MAX_PICKUP_ATTEMPTS: u32 = 5;

const PICKUP: TextRule = TextRule::line("pickup", 200).required().multiline();
const DROPOFF: TextRule = TextRule::line("dropoff", 200).required().multiline();
const NOTE: TextRule = TextRule::line("note", 500).multiline();

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOrder {
    pub kind: OrderKind,
    pub pickup: String,
    pub dropoff: String,
    #[serde(default)]
    pub note: String,
    pub fee_fen: i64,
    #[serde(default)]
    pub goods_fen: i64,
    /// A coupon the caller claimed (`GET /me/coupons`); the server computes `discount_fen`.
    #[serde(default)]
    pub coupon_id: Option<i64>,
}

/// The answer to a create: the first answer again when an `Idempotency-Key` repeats.
pub struct Created {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

/// Whose orders a list shows: the caller's as customer (default) or as runner, or
/// everyone's (admins only).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Mine {
    #[default]
    Customer,
    Runner,
    All,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct ListQuery {
    #[serde(default)]
    #[param(inline)]
    pub mine: Mine,
    pub status: Option<OrderStatus>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn cursor_of(c: &Option<String>) -> Result<Option<OrderId>, InvalidInput> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(|id| Some(OrderId(id)))
            .map_err(|_| InvalidInput::new("invalid cursor")),
    }
}

fn page(mut rows: Vec<Order>, limit: i64, viewer: &CurrentUser) -> Page<OrderView> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more {
        rows.last().map(|o| o.id.to_string())
    } else {
        None
    };
    Page {
        items: rows
            .iter()
            .map(|o| OrderView::of(o, o.customer_id == viewer.id))
            .collect(),
        next_cursor,
    }
}

/// `CE` + UTC time + random: unique, 26 chars of `[0-9A-Za-z]`, sortable by creation.
fn new_out_trade_no() -> String {
    format!(
        "CE{}{}",
        Utc::now().format("%Y%m%d%H%M%S"),
        random_alnum(10)
    )
}

/// The first answer to a repeated request.
fn replay(prev: campus_dal::idempotency::Remembered) -> Created {
    Created {
        status: u16::try_from(prev.status_code).unwrap_or(201),
        body: prev.response,
        replayed: true,
    }
}

impl Orders {
    pub async fn create_order(
        &self,
        user: &CurrentUser,
        req: CreateOrder,
        idempotency_key: Option<String>,
    ) -> Result<Created, OrderError> {
        let pickup = PICKUP.clean(&req.pickup)?;
        let dropoff = DROPOFF.clean(&req.dropoff)?;
        let note = NOTE.clean(&req.note)?;
        if !(0..=MAX_FEN).contains(&req.fee_fen) || !(0..=MAX_FEN).contains(&req.goods_fen) {
            return Err(
                InvalidInput(format!("fee_fen and goods_fen must be 0 to {MAX_FEN}")).into(),
            );
        }
        let gross = req.fee_fen + req.goods_fen;
        if gross < 1 {
            return Err(InvalidInput::new("amount_fen must be at least 1").into());
        }
        let coupon = req.coupon_id.map(UserCouponId);
        let key = idempotency::Key::parse(idempotency_key)?;
        let findings = match &self.content {
            Some(cc) => {
                cc.check(
                    user,
                    2,
                    &[("pickup", &pickup), ("dropoff", &dropoff), ("note", &note)],
                )
                .await?
            }
            None => Findings::default(),
        };
        let fingerprint = Fingerprint::of("POST /orders", &req);
        let uid = user.id;
        let kind = req.kind;
        let (fee, goods) = (req.fee_fen, req.goods_fen);
        let pay_timeout = self.pay_timeout;
        let max_unpaid = self.max_unpaid;
        let (key2, fingerprint2) = (key.clone(), fingerprint.clone());
        let created = self
            .db
            .write_tx(move |c| -> Result<Created, OrderError> {
                // First, so that a user's creates (the replay check, the unpaid count and
                // the insert) are one at a time, whichever instance serves them.
                campus_dal::users::lock(c, uid)?;
                if let Some(prev) = idempotency::earlier(c, uid, key2.as_ref(), &fingerprint2)? {
                    return Ok(replay(prev));
                }
                // Each unpaid order may hold a prepay at WeChat and costs an orderquery and
                // a closeorder when it expires: a user holds only a few at once.
                if campus_dal::orders::holds_unpaid(c, uid, max_unpaid)? {
                    return Err(OrderError::TooManyUnpaid(max_unpaid));
                }
                // Read under the user's lock: no other order of theirs can take the
                // coupon between this check and the lock below.
                let discount = match coupon {
                    Some(cid) => promotions::discount_for_order(c, uid, cid, kind, gross)??,
                    None => 0,
                };
                let amount = gross - discount;
                let now = time::now();
                let out_trade_no = new_out_trade_no();
                let code = random_digits(6);
                let order = q::insert(
                    c,
                    &NewOrder {
                        out_trade_no: &out_trade_no,
                        kind,
                        status: OrderStatus::Created,
                        pickup: &pickup,
                        dropoff: &dropoff,
                        note: &note,
                        fee_fen: fee,
                        goods_fen: goods,
                        discount_fen: discount,
                        amount_fen: amount,
                        customer_id: uid,
                        pickup_code: &code,
                        pay_deadline: now + pay_timeout,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                if let Some(cid) = coupon {
                    promotions::lock_for_order(c, cid, order.id)??;
                }
                findings.record(c, uid, ContentSubject::Order, order.id.0)?;
                let body = serde_json::to_string(&OrderView::of(&order, true))
                    .map_err(|e| InvalidInput(e.to_string()))?;
                idempotency::remember(c, uid, key2.as_ref(), &fingerprint2, 201, &body, now)?;
                Ok(Created {
                    status: 201,
                    body,
                    replayed: false,
                })
            })
            .await;
        match (created, key) {
            // The same key in flight twice: on MariaDB both requests run side by side, and
            // the one whose key lands second fails on the key's primary key once the first
            // has committed (its order is rolled back with it). The first answer is its.
            (Err(OrderError::Db(DbError::Query(e))), Some(key))
                if campus_dal::is_unique_violation(&e) =>
            {
                let prev = self
                    .db
                    .read(move |c| {
                        idempotency::earlier(c, uid, Some(&key), &fingerprint)
                            .map_err(OrderError::from)
                    })
                    .await?;
                match prev {
                    Some(prev) => Ok(replay(prev)),
                    None => Err(DbError::Query(e).into()),
                }
            }
            (created, _) => created,
        }
    }

    pub async fn get_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o: Order = find_visible::<OrderError>(&self.db, user, id).await?;
        Ok(OrderView::of(&o, o.customer_id == user.id))
    }

    pub async fn list_orders(
        &self,
        user: &CurrentUser,
        query: ListQuery,
    ) -> Result<Page<OrderView>, OrderError> {
        let limit = page_limit(query.limit)?;
        let before = cursor_of(&query.cursor)?;
        let scope = match query.mine {
            Mine::Customer => Scope::Customer(user.id),
            Mine::Runner => Scope::Runner(user.id),
            Mine::All => {
                user.require(Role::Admin)?;
                Scope::All
            }
        };
        let st = query.status;
        let rows = self
            .db
            .read(move |c| q::list(c, scope, st, before, limit).map_err(OrderError::from))
            .await?;
        Ok(page(rows, limit, user))
    }

    pub async fn available_orders(
        &self,
        user: &CurrentUser,
        limit: Option<i64>,
        cursor: Option<String>,
    ) -> Result<Page<OrderView>, OrderError> {
        user.require(Role::Runner)?;
        let limit = page_limit(limit)?;
        let after = cursor_of(&cursor)?;
        let rows = self
            .db
            .read(move |c| q::list_available(c, after, limit).map_err(OrderError::from))
            .await?;
        Ok(page(rows, limit, user))
    }

    pub async fn accept_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        user.require(Role::Runner)?;
        let runner = user.id;
        let won = self
            .db
            .write(move |c| -> Result<Option<Order>, OrderError> {
                if q::accept(c, id, runner, time::now())? == 1 {
                    return Ok(q::find(c, id)?);
                }
                Ok(None)
            })
            .await?;
        match won {
            Some(o) => {
                self.subscriptions.announce(&o, OrderEvent::Accepted);
                Ok(OrderView::of(&o, o.customer_id == user.id))
            }
            None => {
                let o = self
                    .db
                    .read(move |c| q::find(c, id).map_err(OrderError::from))
                    .await?
                    .ok_or(OrderNotFound)?;
                if o.runner_id.is_some() && o.status.after(OrderMove::Accept).is_none() {
                    Err(OrderError::AlreadyTaken)
                } else {
                    Err(lost_race(&self.db, id, OrderMove::Accept.verb()).await)
                }
            }
        }
    }

    pub async fn pickup_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        user.require(Role::Runner)?;
        find_visible::<OrderError>(&self.db, user, id).await?;
        self.runner_move(user, id, OrderMove::PickUp).await
    }

    pub async fn deliver_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
        pickup_code: &str,
    ) -> Result<OrderView, OrderError> {
        user.require(Role::Runner)?;
        let o: Order = find_visible::<OrderError>(&self.db, user, id).await?;
        if o.runner_id != Some(user.id) {
            return Err(OrderNotFound.into());
        }
        if o.status.after(OrderMove::Deliver).is_none() {
            return Err(super::InvalidTransition {
                from: o.status,
                action: OrderMove::Deliver.verb(),
            }
            .into());
        }
        // Six digits are guessable by brute force: a few tries per order, then a pause.
        // Keyed by out_trade_no, unique across databases, not by the row id: several
        // deployments (or test databases) may share one Redis.
        let key = format!("pickup_attempts:{}", o.out_trade_no);
        // Counted before the comparison, atomically: parallel guesses each use one try.
        let tries = self.cache.incr_ex(&key, Duration::from_secs(600)).await?;
        if tries > i64::from(MAX_PICKUP_ATTEMPTS) {
            return Err(OrderError::TooManyAttempts);
        }
        let given = pickup_code.trim().as_bytes();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given,
            o.pickup_code.as_bytes(),
        )) {
            return Err(OrderError::WrongPickupCode);
        }
        self.runner_move(user, id, OrderMove::Deliver).await
    }

    async fn runner_move(
        &self,
        user: &CurrentUser,
        id: OrderId,
        mv: OrderMove,
    ) -> Result<OrderView, OrderError> {
        let runner = user.id;
        let moved = self
            .db
            .write(move |c| -> Result<Option<Order>, OrderError> {
                if q::runner_transition(c, id, runner, mv, time::now())? == 1 {
                    return Ok(q::find(c, id)?);
                }
                Ok(None)
            })
            .await?;
        match moved {
            Some(o) => {
                if mv == OrderMove::Deliver {
                    self.subscriptions.announce(&o, OrderEvent::Delivered);
                }
                Ok(OrderView::of(&o, o.customer_id == user.id))
            }
            None => Err(lost_race(&self.db, id, mv.verb()).await),
        }
    }

    pub async fn confirm_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o: Order = find_visible::<OrderError>(&self.db, user, id).await?;
        if o.customer_id != user.id {
            return Err(OrderNotFound.into());
        }
        let earnings = self.earnings;
        let moved = self
            .db
            .write_tx(move |c| -> Result<Option<Order>, OrderError> {
                if q::transition(c, id, OrderMove::Complete, time::now())? == 1 {
                    let o = q::find(c, id)?.ok_or(OrderNotFound)?;
                    // The runner's credit commits with the move, or neither does.
                    earnings.credit_completion(c, &o)?;
                    return Ok(Some(o));
                }
                Ok(None)
            })
            .await?;
        match moved {
            Some(o) => Ok(OrderView::of(&o, true)),
            None => Err(lost_race(&self.db, id, "confirm").await),
        }
    }

    /// Before payment: closed (WeChat's order closed too). After payment and before
    /// pickup: a full refund starts.
    pub async fn cancel_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o: Order = find_visible::<OrderError>(&self.db, user, id).await?;
        if o.customer_id != user.id && user.role != Role::Admin {
            return Err(OrderNotFound.into());
        }
        if o.status.after(OrderMove::Close).is_some() {
            self.payments.close_unpaid(&o, "cancel").await?;
        } else if o.status.after(OrderMove::StartRefund).is_some() {
            self.refunds
                .refund_in_full(&o, "cancelled by customer")
                .await?;
        } else {
            return Err(super::InvalidTransition {
                from: o.status,
                action: "cancel",
            }
            .into());
        }
        self.get_order(user, id).await
    }

    /// The delivery QR the customer shows the runner: order id and pickup code, made
    /// locally (no WeChat call).
    pub async fn order_qr_png(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<Vec<u8>, OrderError> {
        let o: Order = find_visible::<OrderError>(&self.db, user, id).await?;
        if o.customer_id != user.id {
            return Err(OrderNotFound.into());
        }
        let payload = format!("campus-errand:deliver:{}:{}", o.id, o.pickup_code);
        Ok(crate::qrcodes::local_png(&payload)?)
    }
}
