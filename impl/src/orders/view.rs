//! The order as the contract shows it.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use campus_dal::orders::Order;
use campus_dal::time::to_utc;
use campus_dal::{OrderId, OrderKind, OrderStatus, UserId};

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OrderView {
    #[schema(value_type = i64)]
    pub id: OrderId,
    pub out_trade_no: String,
    pub kind: OrderKind,
    pub status: OrderStatus,
    pub pickup: String,
    pub dropoff: String,
    pub note: String,
    pub fee_fen: i64,
    pub goods_fen: i64,
    pub discount_fen: i64,
    pub amount_fen: i64,
    pub refunded_fen: i64,
    #[schema(value_type = i64)]
    pub customer_id: UserId,
    #[schema(value_type = Option<i64>)]
    pub runner_id: Option<UserId>,
    /// Shown to the customer only; `null` for everyone else.
    pub pickup_code: Option<String>,
    pub created_at: DateTime<Utc>,
    pub paid_at: Option<DateTime<Utc>>,
    pub accepted_at: Option<DateTime<Utc>>,
    pub picked_up_at: Option<DateTime<Utc>>,
    pub delivered_at: Option<DateTime<Utc>>,
    pub completed_at: Option<DateTime<Utc>>,
    pub closed_at: Option<DateTime<Utc>>,
    /// When an unpaid order closes by itself.
    pub pay_deadline: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The runner's proof of delivery; `null` until one passed WeChat's content check.
    pub delivery_photo_url: Option<String>,
}

impl OrderView {
    pub fn of(o: &Order, viewer_is_customer: bool) -> Self {
        Self {
            id: o.id,
            out_trade_no: o.out_trade_no.clone(),
            kind: o.kind,
            status: o.status,
            pickup: o.pickup.clone(),
            dropoff: o.dropoff.clone(),
            note: o.note.clone(),
            fee_fen: o.fee_fen,
            goods_fen: o.goods_fen,
            discount_fen: o.discount_fen,
            amount_fen: o.amount_fen,
            refunded_fen: o.refunded_fen,
            customer_id: o.customer_id,
            runner_id: o.runner_id,
            pickup_code: viewer_is_customer.then(|| o.pickup_code.clone()),
            created_at: to_utc(o.created_at),
            paid_at: o.paid_at.map(to_utc),
            accepted_at: o.accepted_at.map(to_utc),
            picked_up_at: o.picked_up_at.map(to_utc),
            delivered_at: o.delivered_at.map(to_utc),
            completed_at: o.completed_at.map(to_utc),
            closed_at: o.closed_at.map(to_utc),
            pay_deadline: to_utc(o.pay_deadline),
            updated_at: to_utc(o.updated_at),
            delivery_photo_url: o.delivery_photo_url.clone(),
        }
    }
}
