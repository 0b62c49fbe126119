//! The order flow: create, grab, pick up, deliver, confirm, cancel. State lives in SQL and
//! every move is a compare-and-set there by the transition table
//! ([`campus_dal::OrderMove`]), so concurrent requests and several instances cannot both
//! win. Paying is [`crate::payments`], refunding [`crate::refunds`].

mod admin;
mod flow;
mod jobs;
mod view;

pub use admin::AdminOrderQuery;
pub use flow::{CreateOrder, Created, ListQuery, Page};
pub use view::OrderView;

use campus_dal::orders::{self as q, Order};
use campus_dal::{OrderId, OrderStatus};

use crate::cache::{Cache, CacheError};
use crate::content_check::{ContentChecks, ContentRejected};
use crate::db::{Db, DbError};
use crate::payments::{PaymentError, Payments};
use crate::payouts::Earnings;
use crate::refunds::{RefundError, Refunds};
use crate::subscriptions::Subscriptions;
use crate::text::InvalidInput;
use crate::users::{CurrentUser, Forbidden, Role};

/// The order service.
#[derive(Clone)]
pub struct Orders {
    db: Db,
    cache: Cache,
    payments: Payments,
    refunds: Refunds,
    subscriptions: Subscriptions,
    pay_timeout: chrono::Duration,
    auto_complete_after: chrono::Duration,
    /// Credits the runner in the transaction that completes an order.
    earnings: Earnings,
    /// Unpaid orders a customer may hold at once (`MAX_UNPAID_ORDERS`).
    max_unpaid: i64,
    /// WeChat's check of the texts others see; `None`: not checked.
    content: Option<ContentChecks>,
}

/// How long an unpaid order waits, and when a delivered one completes by itself.
#[derive(Clone, Copy, Debug)]
pub struct OrderTimes {
    pub pay_timeout: chrono::Duration,
    pub auto_complete_after: chrono::Duration,
}

impl Orders {
    pub fn new(
        db: Db,
        cache: Cache,
        payments: Payments,
        refunds: Refunds,
        subscriptions: Subscriptions,
        times: OrderTimes,
    ) -> Self {
        Self {
            db,
            cache,
            payments,
            refunds,
            subscriptions,
            pay_timeout: times.pay_timeout,
            auto_complete_after: times.auto_complete_after,
            earnings: Earnings::default(),
            max_unpaid: i64::MAX,
            content: None,
        }
    }

    /// Pickup, dropoff and note pass WeChat's content check.
    pub fn with_content_checks(mut self, content: ContentChecks) -> Self {
        self.content = Some(content);
        self
    }

    /// The runner's share credited when orders complete (`RUNNER_SHARE_PERCENT`).
    pub fn with_earnings(mut self, earnings: Earnings) -> Self {
        self.earnings = earnings;
        self
    }

    pub fn with_max_unpaid(mut self, max_unpaid: i64) -> Self {
        self.max_unpaid = max_unpaid;
        self
    }
}

/// A move the transition table does not allow from the order's current state.
#[derive(Debug, thiserror::Error)]
#[error("cannot {action} an order that is {from}")]
pub struct InvalidTransition {
    pub from: OrderStatus,
    pub action: &'static str,
}

/// The order does not exist, or the caller may not see it (the same answer, so ids of
/// other people's orders reveal nothing).
#[derive(Debug, thiserror::Error)]
#[error("order not found")]
pub struct OrderNotFound;

#[derive(Debug, thiserror::Error)]
pub enum OrderError {
    #[error(transparent)]
    NotFound(#[from] OrderNotFound),
    #[error(transparent)]
    ContentRejected(#[from] ContentRejected),
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    InvalidTransition(#[from] InvalidTransition),
    #[error("another runner already took this order")]
    AlreadyTaken,
    #[error("wrong pickup code")]
    WrongPickupCode,
    #[error("too many wrong pickup codes; try again later")]
    TooManyAttempts,
    #[error("this Idempotency-Key was used with a different request")]
    IdempotencyConflict,
    #[error(transparent)]
    CouponNotApplicable(#[from] crate::promotions::NotApplicable),
    #[error("{0} orders are waiting for payment; pay or cancel one first")]
    TooManyUnpaid(i64),
    #[error(transparent)]
    Payment(#[from] PaymentError),
    #[error(transparent)]
    Refund(#[from] RefundError),
    #[error("could not draw the delivery QR: {0}")]
    Render(#[from] crate::qrcodes::QrRenderError),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// May `user` see `o`: its customer, its runner, or an admin.
pub(crate) fn may_see(o: &Order, user: &CurrentUser) -> bool {
    o.involves(user.id) || user.role == Role::Admin
}

/// The order, if `user` may see it.
pub(crate) async fn find_visible<E>(db: &Db, user: &CurrentUser, id: OrderId) -> Result<Order, E>
where
    E: From<OrderNotFound> + From<DbError> + Send + 'static,
{
    let o = db
        .read(move |c| q::find(c, id).map_err(DbError::from))
        .await?
        .ok_or(OrderNotFound)?;
    if may_see(&o, user) {
        Ok(o)
    } else {
        Err(OrderNotFound.into())
    }
}

/// Explains a lost compare-and-set: the order moved on (or never was in a state that
/// allows `action`), or it is gone.
pub(crate) async fn lost_race<E>(db: &Db, id: OrderId, action: &'static str) -> E
where
    E: From<InvalidTransition> + From<OrderNotFound> + From<DbError> + Send + 'static,
{
    match db
        .read(move |c| q::find(c, id).map_err(DbError::from))
        .await
    {
        Ok(Some(o)) => InvalidTransition {
            from: o.status,
            action,
        }
        .into(),
        Ok(None) => OrderNotFound.into(),
        Err(e) => e.into(),
    }
}
