//! The operators' list of refunds.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use campus_dal::refunds::{self as rq, Refund};
use campus_dal::{OrderId, RefundCause, RefundId, RefundStatus, time};

use super::{RefundError, Refunds};
use crate::orders::Page;
use crate::text::{InvalidInput, id_cursor, into_page, page_limit_text};
use crate::users::{CurrentUser, Role};

/// A refund as the admin list shows it, with why it is stuck when it is.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct AdminRefundView {
    #[schema(value_type = i64)]
    pub id: RefundId,
    #[schema(value_type = i64)]
    pub order_id: OrderId,
    pub out_refund_no: String,
    pub refund_fen: i64,
    pub reason: String,
    pub cause: RefundCause,
    pub status: RefundStatus,
    pub attempts: i32,
    pub last_error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub settled_at: Option<DateTime<Utc>>,
}

impl AdminRefundView {
    fn of(r: &Refund) -> Self {
        Self {
            id: r.id,
            order_id: r.order_id,
            out_refund_no: r.out_refund_no.clone(),
            refund_fen: r.refund_fen,
            reason: r.reason.clone(),
            cause: r.cause,
            status: r.status,
            attempts: r.attempts,
            last_error: r.last_error.clone(),
            created_at: time::to_utc(r.created_at),
            settled_at: r.settled_at.map(time::to_utc),
        }
    }
}

impl Refunds {
    /// `GET /admin/refunds?status=`: newest first.
    pub async fn admin_list_refunds(
        &self,
        caller: &CurrentUser,
        status: Option<&str>,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<AdminRefundView>, RefundError> {
        caller.require(Role::Admin)?;
        let status = match status {
            None | Some("") => None,
            Some(s) => Some(RefundStatus::parse(s).ok_or_else(|| {
                InvalidInput::new(format!(
                    "status must be one of {}",
                    RefundStatus::ALL
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?),
        };
        let limit = page_limit_text(limit)?;
        let before = id_cursor(cursor)?.map(RefundId);
        let rows = self
            .db
            .read(move |c| rq::list(c, status, before, limit).map_err(RefundError::from))
            .await?;
        Ok(into_page(rows, limit, |r| r.id.0, AdminRefundView::of))
    }
}
