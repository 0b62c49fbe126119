//! Subscribe messages: users grant sending credits, order events spend them. Every
//! send attempt is recorded. Sending never blocks the request that caused it.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use campus_dal::notify::{self as q, NewCredit, NewMessage};
use campus_dal::orders::Order;
use campus_dal::{UserId, time};

use crate::Services;
use crate::db::DbError;
use crate::users::CurrentUser;
use crate::wechat::mini::WechatError;

/// A legacy form_id may be used once within 7 days of the form submission.
const FORM_ID_LIFE_DAYS: i64 = 7;

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Db(#[from] DbError),
}

impl From<campus_dal::DieselError> for NotifyError {
    fn from(e: campus_dal::DieselError) -> Self {
        NotifyError::Db(DbError::Query(e))
    }
}

/// `POST /notify/credits`: either a legacy `form_id` or accepted subscribe `template_ids`.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditGrant {
    pub form_id: Option<String>,
    pub template_ids: Option<Vec<String>>,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct CreditsView {
    pub granted: usize,
    pub available: i64,
}

/// Order events that tell the customer something.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderEvent {
    Paid,
    Accepted,
    Delivered,
    Refunded,
}

impl OrderEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            OrderEvent::Paid => "paid",
            OrderEvent::Accepted => "accepted",
            OrderEvent::Delivered => "delivered",
            OrderEvent::Refunded => "refunded",
        }
    }

    fn label(self) -> &'static str {
        match self {
            OrderEvent::Paid => "已支付 Paid",
            OrderEvent::Accepted => "已接单 Accepted",
            OrderEvent::Delivered => "已送达 Delivered",
            OrderEvent::Refunded => "已退款 Refunded",
        }
    }
}

fn valid_id(field: &str, v: &str) -> Result<String, NotifyError> {
    let v = v.trim();
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(NotifyError::Invalid(format!(
            "{field} must be 1 to 128 visible ASCII characters"
        )));
    }
    Ok(v.to_string())
}

impl Services {
    pub async fn grant_credits(
        &self,
        user: &CurrentUser,
        g: CreditGrant,
    ) -> Result<CreditsView, NotifyError> {
        let credits: Vec<(&'static str, Option<String>, Option<String>)> =
            match (g.form_id, g.template_ids) {
                (Some(f), None) => {
                    // The developer tools hand out this placeholder; WeChat rejects it.
                    if f.contains("mock") {
                        return Err(NotifyError::Invalid("form_id is a mock one".into()));
                    }
                    vec![("form_id", None, Some(valid_id("form_id", &f)?))]
                }
                (None, Some(ids)) if (1..=10).contains(&ids.len()) => ids
                    .iter()
                    .map(|t| Ok(("subscribe", Some(valid_id("template_id", t)?), None)))
                    .collect::<Result<_, NotifyError>>()?,
                _ => {
                    return Err(NotifyError::Invalid(
                        "send either form_id or 1 to 10 template_ids".into(),
                    ));
                }
            };
        let uid = user.id;
        self.db
            .write_tx(move |c| -> Result<CreditsView, NotifyError> {
                let now = time::now();
                for (kind, template_id, form_id) in &credits {
                    q::grant(
                        c,
                        &NewCredit {
                            user: uid,
                            kind,
                            template_id: template_id.as_deref(),
                            form_id: form_id.as_deref(),
                            expires_at: (*kind == "form_id")
                                .then(|| now + chrono::Duration::days(FORM_ID_LIFE_DAYS)),
                            at: now,
                        },
                    )?;
                }
                Ok(CreditsView {
                    granted: credits.len(),
                    available: q::unused_count(c, uid, now)?,
                })
            })
            .await
    }

    /// Tells the customer about an order event, in the background.
    pub(crate) fn announce(&self, order: &Order, event: OrderEvent) {
        let Some(template) = self.settings.wechat_template_order.clone() else {
            return;
        };
        let s = self.clone();
        let order = order.clone();
        tokio::spawn(async move {
            let data = serde_json::json!({
                "character_string1": {"value": order.out_trade_no},
                "phrase2": {"value": event.label()},
                "amount3": {"value": format!("{}.{:02}", order.amount_fen / 100, order.amount_fen % 100)},
                "thing4": {"value": order.dropoff.chars().take(20).collect::<String>()},
            });
            let page = format!("pages/order/detail?id={}", order.id);
            s.send_subscribe(
                UserId(order.customer_id),
                &template,
                event.as_str(),
                Some(order.id),
                &page,
                data,
            )
            .await;
        });
    }

    /// Spends a credit and sends; records the outcome whatever it is.
    pub(crate) async fn send_subscribe(
        &self,
        user: UserId,
        template: &str,
        event: &'static str,
        order_id: Option<i64>,
        page: &str,
        data: serde_json::Value,
    ) -> &'static str {
        let t = template.to_string();
        let credit = self
            .db
            .write(move |c| -> Result<_, NotifyError> {
                let openid = campus_dal::users::find(c, user)?.map(|u| u.openid);
                let credit = q::take(c, user, &t, time::now())?;
                Ok((openid, credit))
            })
            .await;
        let outcome = match credit {
            Ok((Some(openid), Some(form_id))) => {
                let mut body = serde_json::json!({
                    "touser": openid,
                    "template_id": template,
                    "page": page,
                    "data": data,
                });
                if let Some(f) = form_id {
                    body["form_id"] = serde_json::Value::String(f);
                }
                match self.mini.send_subscribe(&body).await {
                    Ok(()) => "sent",
                    Err(WechatError::Api { code: 43101, .. }) => "refused",
                    Err(e) => {
                        tracing::warn!(error = %e, event, "subscribe message failed");
                        "error"
                    }
                }
            }
            Ok((None, _)) => "unknown_user",
            Ok((_, None)) => "no_credit",
            Err(e) => {
                tracing::warn!(error = %e, "could not take a credit");
                "error"
            }
        };
        let t = template.to_string();
        let logged = self
            .db
            .write(move |c| {
                q::log_message(
                    c,
                    &NewMessage {
                        user,
                        channel: "subscribe",
                        template_id: Some(&t),
                        event,
                        order_id,
                        outcome,
                        at: time::now(),
                    },
                )
                .map_err(NotifyError::from)
            })
            .await;
        if let Err(e) = logged {
            tracing::warn!(error = %e, "could not record a message send");
        }
        outcome
    }

    /// Daily reminder: customers with delivered orders they have not confirmed.
    pub(crate) async fn send_reminders(&self) -> Result<usize, NotifyError> {
        let Some(template) = self.settings.wechat_template_reminder.clone() else {
            return Ok(0);
        };
        let before = time::now() - chrono::Duration::hours(2);
        let rows = self
            .db
            .read(move |c| {
                campus_dal::orders::delivered_before(c, before, 500).map_err(NotifyError::from)
            })
            .await?;
        let mut n = 0;
        for o in rows {
            let data = serde_json::json!({
                "character_string1": {"value": o.out_trade_no},
                "thing2": {"value": "请确认收货 Please confirm delivery"},
            });
            let page = format!("pages/order/detail?id={}", o.id);
            if self
                .send_subscribe(
                    UserId(o.customer_id),
                    &template,
                    "reminder",
                    Some(o.id),
                    &page,
                    data,
                )
                .await
                == "sent"
            {
                n += 1;
            }
        }
        Ok(n)
    }

    pub(crate) async fn sweep_credits(&self) -> Result<usize, NotifyError> {
        self.db
            .write(|c| {
                let now = time::now();
                q::sweep(c, now, now - chrono::Duration::days(30)).map_err(NotifyError::from)
            })
            .await
    }
}
