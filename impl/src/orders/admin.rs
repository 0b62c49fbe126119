//! The operators' side of orders: the filtered list and putting a held order back in
//! the pool.

use serde::Deserialize;
use utoipa::IntoParams;

use campus_dal::orders::{self as q, AdminFilter, Order};
use campus_dal::{OrderId, OrderMove, OrderStatus, time};

use super::view::OrderView;
use super::{OrderError, OrderNotFound, Orders, Page, lost_race};
use crate::stats::{beijing_day_start, parse_day};
use crate::subscriptions::OrderEvent;
use crate::text::{InvalidInput, id_cursor, into_page, page_limit_text, search_text};
use crate::users::{CurrentUser, Role};

/// `GET /admin/orders`: every value arrives as text and is checked here (422, not 400).
#[derive(Clone, Debug, Default, Deserialize, IntoParams)]
pub struct AdminOrderQuery {
    /// One order status.
    pub status: Option<String>,
    /// A part of the out_trade_no, the pickup or the dropoff.
    pub q: Option<String>,
    /// First Beijing day (`2026-11-01`), inclusive, of the creation time.
    pub from: Option<String>,
    /// Last Beijing day, inclusive.
    pub to: Option<String>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

impl Orders {
    /// `GET /admin/orders`: newest first.
    pub async fn admin_list_orders(
        &self,
        caller: &CurrentUser,
        query: AdminOrderQuery,
    ) -> Result<Page<OrderView>, OrderError> {
        caller.require(Role::Admin)?;
        let status = match query.status.as_deref() {
            None | Some("") => None,
            Some(s) => Some(OrderStatus::parse(s).ok_or_else(|| {
                InvalidInput::new(format!(
                    "status must be one of {}",
                    OrderStatus::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?),
        };
        let from = query
            .from
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_day("from", s))
            .transpose()?;
        let to = query
            .to
            .as_deref()
            .filter(|s| !s.is_empty())
            .map(|s| parse_day("to", s))
            .transpose()?;
        if let (Some(f), Some(t)) = (from, to)
            && t < f
        {
            return Err(InvalidInput::new("to must not be before from").into());
        }
        let filter = AdminFilter {
            status,
            text: search_text(query.q.as_deref())?,
            from: from.map(beijing_day_start),
            until: to.and_then(|t| t.succ_opt()).map(beijing_day_start),
        };
        let limit = page_limit_text(query.limit.as_deref())?;
        let before = id_cursor(query.cursor.as_deref())?.map(OrderId);
        let rows = self
            .db
            .read(move |c| q::admin_list(c, &filter, before, limit).map_err(OrderError::from))
            .await?;
        Ok(into_page(
            rows,
            limit,
            |o| o.id.0,
            |o| OrderView::of(o, false),
        ))
    }

    /// `POST /admin/orders/{id}/reassign`: an accepted or picked-up order leaves its
    /// runner and is available to every runner again; the customer's payment stays.
    /// The runner is told (a subscribe message, when a template is set and they hold a
    /// credit).
    pub async fn reassign_order(
        &self,
        caller: &CurrentUser,
        id: OrderId,
    ) -> Result<OrderView, OrderError> {
        caller.require(Role::Admin)?;
        let moved = self
            .db
            .write_tx(move |c| -> Result<Option<(Order, Order)>, OrderError> {
                let Some(before) = q::find(c, id)? else {
                    return Err(OrderNotFound.into());
                };
                if q::reassign(c, id, time::now())? != 1 {
                    return Ok(None);
                }
                let after = q::find(c, id)?.ok_or(OrderNotFound)?;
                Ok(Some((before, after)))
            })
            .await?;
        match moved {
            Some((before, after)) => {
                if let Some(runner) = before.runner_id {
                    self.subscriptions
                        .announce_to(runner, &before, OrderEvent::Reassigned);
                }
                Ok(OrderView::of(&after, false))
            }
            None => Err(lost_race(&self.db, id, OrderMove::Reassign.verb()).await),
        }
    }
}
