//! Creating, reading and moving orders through their delivery states.

use std::time::Duration;

use chrono::Utc;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use campus_dal::orders::{self as q, NewOrder, Order, Scope};
use campus_dal::{OrderId, time};

use super::view::OrderView;
use super::{OrderError, status};
use crate::Services;
use crate::crypto::{random_alnum, random_digits};
use crate::notify::OrderEvent;
use crate::users::{CurrentUser, Role};

/// The most one order may cost: ¥100,000, far above any errand, far below overflow.
const MAX_FEN: i64 = 10_000_000;
const MAX_PICKUP_ATTEMPTS: u32 = 5;

#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum OrderKind {
    Express,
    Takeout,
    Errand,
}

impl OrderKind {
    fn as_str(self) -> &'static str {
        match self {
            OrderKind::Express => "express",
            OrderKind::Takeout => "takeout",
            OrderKind::Errand => "errand",
        }
    }
}

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
    #[serde(default)]
    pub coupon_id: Option<i64>,
}

/// The answer to a create: the first answer again when an `Idempotency-Key` repeats.
pub struct Created {
    pub status: u16,
    pub body: String,
    pub replayed: bool,
}

#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct ListQuery {
    /// `customer` (default), `runner`, or `all` (admins only).
    pub mine: Option<String>,
    pub status: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<i64>,
    pub cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

fn text(field: &str, v: &str, required: bool, max: usize) -> Result<String, OrderError> {
    let v = v.trim();
    if required && v.is_empty() {
        return Err(OrderError::Invalid(format!("{field} is required")));
    }
    if v.chars().count() > max {
        return Err(OrderError::Invalid(format!(
            "{field} must be at most {max} characters"
        )));
    }
    if v.chars().any(|c| c.is_control() && c != '\n') {
        return Err(OrderError::Invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    Ok(v.to_string())
}

pub(super) fn limit_of(l: Option<i64>) -> Result<i64, OrderError> {
    match l {
        None => Ok(20),
        Some(n) if (1..=100).contains(&n) => Ok(n),
        Some(_) => Err(OrderError::Invalid("limit must be 1 to 100".into())),
    }
}

fn cursor_of(c: &Option<String>) -> Result<Option<i64>, OrderError> {
    match c.as_deref() {
        None | Some("") => Ok(None),
        Some(s) => s
            .parse::<i64>()
            .map(Some)
            .map_err(|_| OrderError::Invalid("invalid cursor".into())),
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
            .map(|o| OrderView::of(o, o.customer_id == viewer.id.0))
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

impl Services {
    pub async fn create_order(
        &self,
        user: &CurrentUser,
        req: CreateOrder,
        idempotency_key: Option<String>,
    ) -> Result<Created, OrderError> {
        let pickup = text("pickup", &req.pickup, true, 200)?;
        let dropoff = text("dropoff", &req.dropoff, true, 200)?;
        let note = text("note", &req.note, false, 500)?;
        if !(0..=MAX_FEN).contains(&req.fee_fen) || !(0..=MAX_FEN).contains(&req.goods_fen) {
            return Err(OrderError::Invalid(format!(
                "fee_fen and goods_fen must be 0 to {MAX_FEN}"
            )));
        }
        if req.coupon_id.is_some() {
            return Err(OrderError::Invalid("unknown coupon".into()));
        }
        let discount = 0;
        let amount = req.fee_fen + req.goods_fen - discount;
        if amount < 1 {
            return Err(OrderError::Invalid("amount_fen must be at least 1".into()));
        }
        if let Some(k) = &idempotency_key
            && (k.is_empty() || k.len() > 128 || !k.is_ascii())
        {
            return Err(OrderError::Invalid(
                "Idempotency-Key must be 1 to 128 ASCII characters".into(),
            ));
        }
        let request_hash =
            hex::encode(Sha256::digest(serde_json::to_vec(&req).unwrap_or_default()));
        let uid = user.id;
        let kind = req.kind.as_str();
        let (fee, goods) = (req.fee_fen, req.goods_fen);
        let pay_timeout = chrono::Duration::seconds(self.settings.order_pay_timeout_secs);
        self.db
            .write_tx(move |c| -> Result<Created, OrderError> {
                if let Some(key) = &idempotency_key
                    && let Some(prev) = campus_dal::idempotency::find(c, uid, key)?
                {
                    if prev.request_hash != request_hash {
                        return Err(OrderError::IdempotencyConflict);
                    }
                    return Ok(Created {
                        status: u16::try_from(prev.status_code).unwrap_or(201),
                        body: prev.response,
                        replayed: true,
                    });
                }
                let now = time::now();
                let out_trade_no = new_out_trade_no();
                let code = random_digits(6);
                let order = q::insert(
                    c,
                    &NewOrder {
                        out_trade_no: &out_trade_no,
                        kind,
                        status: status::CREATED,
                        pickup: &pickup,
                        dropoff: &dropoff,
                        note: &note,
                        fee_fen: fee,
                        goods_fen: goods,
                        discount_fen: discount,
                        amount_fen: amount,
                        customer_id: uid.0,
                        pickup_code: &code,
                        pay_deadline: now + pay_timeout,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                let body = serde_json::to_string(&OrderView::of(&order, true))
                    .map_err(|e| OrderError::Invalid(e.to_string()))?;
                if let Some(key) = &idempotency_key {
                    campus_dal::idempotency::insert(c, uid, key, &request_hash, 201, &body, now)?;
                }
                Ok(Created {
                    status: 201,
                    body,
                    replayed: false,
                })
            })
            .await
    }

    /// The order, if `user` may see it (customer, assigned runner, admin); else NotFound,
    /// so ids of other people's orders reveal nothing.
    pub(super) async fn visible_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<Order, OrderError> {
        let o = self
            .db
            .read(move |c| q::find(c, id).map_err(OrderError::from))
            .await?
            .ok_or(OrderError::NotFound)?;
        let allowed = o.customer_id == user.id.0
            || o.runner_id == Some(user.id.0)
            || user.role == Role::Admin;
        if allowed {
            Ok(o)
        } else {
            Err(OrderError::NotFound)
        }
    }

    pub async fn get_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o = self.visible_order(user, id).await?;
        Ok(OrderView::of(&o, o.customer_id == user.id.0))
    }

    pub async fn list_orders(
        &self,
        user: &CurrentUser,
        query: ListQuery,
    ) -> Result<Page<OrderView>, OrderError> {
        let limit = limit_of(query.limit)?;
        let before = cursor_of(&query.cursor)?;
        let scope = match query.mine.as_deref() {
            None | Some("customer") => Scope::Customer(user.id),
            Some("runner") => Scope::Runner(user.id),
            Some("all") if user.role == Role::Admin => Scope::All,
            Some("all") => return Err(OrderError::Invalid("mine=all is for admins".into())),
            Some(_) => {
                return Err(OrderError::Invalid(
                    "mine must be customer, runner or all".into(),
                ));
            }
        };
        if let Some(s) = &query.status
            && !status::ALL.contains(&s.as_str())
        {
            return Err(OrderError::Invalid(format!("unknown status {s}")));
        }
        let st = query.status.clone();
        let rows = self
            .db
            .read(move |c| {
                q::list(c, scope, st.as_deref(), before, limit).map_err(OrderError::from)
            })
            .await?;
        Ok(page(rows, limit, user))
    }

    pub async fn available_orders(
        &self,
        user: &CurrentUser,
        limit: Option<i64>,
        cursor: Option<String>,
    ) -> Result<Page<OrderView>, OrderError> {
        let limit = limit_of(limit)?;
        let after = cursor_of(&cursor)?;
        let rows = self
            .db
            .read(move |c| q::list_available(c, after, limit).map_err(OrderError::from))
            .await?;
        Ok(page(rows, limit, user))
    }

    /// Explains a lost compare-and-set: the order moved, or it was never in that state.
    async fn lost_race(&self, id: OrderId, action: &'static str) -> OrderError {
        match self
            .db
            .read(move |c| q::find(c, id).map_err(OrderError::from))
            .await
        {
            Ok(Some(o)) => OrderError::InvalidTransition {
                from: o.status,
                action,
            },
            Ok(None) => OrderError::NotFound,
            Err(e) => e,
        }
    }

    pub async fn accept_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
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
                self.announce(&o, OrderEvent::Accepted);
                Ok(OrderView::of(&o, o.customer_id == user.id.0))
            }
            None => {
                let o = self
                    .db
                    .read(move |c| q::find(c, id).map_err(OrderError::from))
                    .await?
                    .ok_or(OrderError::NotFound)?;
                if o.runner_id.is_some() && o.status != status::PAID {
                    Err(OrderError::AlreadyTaken)
                } else {
                    Err(OrderError::InvalidTransition {
                        from: o.status,
                        action: "accept",
                    })
                }
            }
        }
    }

    pub async fn pickup_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        self.visible_order(user, id).await?;
        self.runner_move(user, id, status::ACCEPTED, status::PICKED_UP, "pick up")
            .await
    }

    pub async fn deliver_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
        pickup_code: &str,
    ) -> Result<OrderView, OrderError> {
        let o = self.visible_order(user, id).await?;
        if o.runner_id != Some(user.id.0) {
            return Err(OrderError::NotFound);
        }
        if o.status != status::PICKED_UP {
            return Err(OrderError::InvalidTransition {
                from: o.status,
                action: "deliver",
            });
        }
        // Six digits are guessable by brute force: a few tries per order, then a pause.
        let key = format!("pickup_attempts:{}", id.0);
        let tries: u32 = self
            .cache
            .get(&key)
            .await?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        if tries >= MAX_PICKUP_ATTEMPTS {
            return Err(OrderError::TooManyAttempts);
        }
        let given = pickup_code.trim().as_bytes();
        if !bool::from(subtle::ConstantTimeEq::ct_eq(
            given,
            o.pickup_code.as_bytes(),
        )) {
            self.cache
                .set_ex(&key, &(tries + 1).to_string(), Duration::from_secs(600))
                .await?;
            return Err(OrderError::WrongPickupCode);
        }
        self.runner_move(user, id, status::PICKED_UP, status::DELIVERED, "deliver")
            .await
    }

    async fn runner_move(
        &self,
        user: &CurrentUser,
        id: OrderId,
        from: &'static str,
        to: &'static str,
        action: &'static str,
    ) -> Result<OrderView, OrderError> {
        let runner = user.id;
        let moved = self
            .db
            .write(move |c| -> Result<Option<Order>, OrderError> {
                if q::runner_transition(c, id, runner, from, to, time::now())? == 1 {
                    return Ok(q::find(c, id)?);
                }
                Ok(None)
            })
            .await?;
        match moved {
            Some(o) => {
                if to == status::DELIVERED {
                    self.announce(&o, OrderEvent::Delivered);
                }
                Ok(OrderView::of(&o, o.customer_id == user.id.0))
            }
            None => Err(self.lost_race(id, action).await),
        }
    }

    pub async fn confirm_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o = self.visible_order(user, id).await?;
        if o.customer_id != user.id.0 {
            return Err(OrderError::NotFound);
        }
        let moved = self
            .db
            .write(move |c| -> Result<Option<Order>, OrderError> {
                if q::transition(c, id, &[status::DELIVERED], status::COMPLETED, time::now())? == 1
                {
                    return Ok(q::find(c, id)?);
                }
                Ok(None)
            })
            .await?;
        match moved {
            Some(o) => Ok(OrderView::of(&o, true)),
            None => Err(self.lost_race(id, "confirm").await),
        }
    }

    /// Before payment: closed (WeChat's order closed too). After payment and before
    /// pickup: a full refund starts.
    pub async fn cancel_order(
        &self,
        user: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        let o = self.visible_order(user, id).await?;
        if o.customer_id != user.id.0 && user.role != Role::Admin {
            return Err(OrderError::NotFound);
        }
        match o.status.as_str() {
            status::CREATED => self.close_unpaid(&o, "cancel").await?,
            status::PAID | status::ACCEPTED => {
                self.refund_in_full(&o, "cancelled by customer").await?
            }
            other => {
                return Err(OrderError::InvalidTransition {
                    from: other.to_string(),
                    action: "cancel",
                });
            }
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
        let o = self.visible_order(user, id).await?;
        if o.customer_id != user.id.0 {
            return Err(OrderError::NotFound);
        }
        let payload = format!("campus-errand:deliver:{}:{}", o.id, o.pickup_code);
        crate::qr::local_png(&payload).map_err(|e| OrderError::Invalid(e.to_string()))
    }
}
