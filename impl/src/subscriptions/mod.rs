//! Subscribe messages: users grant sending credits (the templates they accepted in
//! `wx.requestSubscribeMessage`), order events spend them. Every send attempt is
//! recorded. Sending never blocks the request that caused it. Message data is built
//! from typed values that obey WeChat's rules ([`message`]).

pub mod daily_cap;
pub mod message;
pub mod mp_outbox;

use std::time::Duration;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use campus_dal::orders::Order;
use campus_dal::subscriptions::{self as q, NewCredit, NewMessage};
use campus_dal::{CreditKind, MessageChannel, MessageEvent, MessageOutcome, OrderId, UserId, time};

use crate::cache::Cache;
use crate::db::{Db, DbError};
use crate::jobs::{Job, every};
use crate::orders::Page;
use crate::telemetry::Metrics;
use crate::text::InvalidInput;
use crate::text::{id_cursor, into_page, page_limit_text};
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::mini::{MiniClient, WechatError};

use daily_cap::{CapChannel, CapRefusal, DailyCaps, Taken};
use message::{MessageData, Phrase, Value};

/// The subscribe-message service.
#[derive(Clone)]
pub struct Subscriptions {
    db: Db,
    cache: Cache,
    caps: DailyCaps,
    mini: MiniClient,
    templates: Templates,
    /// Order events as official-account template messages; `None`: not configured.
    mp: Option<mp_outbox::MpOutbox>,
}

/// Which subscribe-message templates are configured, and when the reminder goes out.
#[derive(Clone, Debug, Default)]
pub struct Templates {
    /// `WECHAT_TEMPLATE_ORDER`: order status changes; unset, none are sent.
    pub order: Option<String>,
    /// `WECHAT_TEMPLATE_REMINDER`: the daily reminder; unset, the job is off.
    pub reminder: Option<String>,
    /// `WECHAT_TEMPLATE_DRAW`: lucky draws' results; unset, none are sent.
    pub draw: Option<String>,
    /// `REMINDER_HOUR_BEIJING`.
    pub reminder_hour_beijing: u32,
    /// `MESSAGES_PER_USER_DAY`: order messages WeChat accepts per user and Beijing day.
    pub messages_per_user_day: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum SubscriptionError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    /// WeChat retired form_id template messages for mini-programs on 2020-01-10, and
    /// `subscribe/send` takes no form_id: such a credit could never be spent.
    #[error("form_id messages were retired by WeChat; send the accepted template_ids")]
    FormIdRetired,
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// `POST /notify/credits`: accepted subscribe `template_ids` (a legacy `form_id` is
/// refused).
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreditGrant {
    /// Legacy: refused with `form_id_retired`.
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
    /// To the runner: an admin put the order back in the pool.
    Reassigned,
}

impl OrderEvent {
    pub(crate) fn message_event(self) -> MessageEvent {
        match self {
            OrderEvent::Paid => MessageEvent::Paid,
            OrderEvent::Accepted => MessageEvent::Accepted,
            OrderEvent::Delivered => MessageEvent::Delivered,
            OrderEvent::Refunded => MessageEvent::Refunded,
            OrderEvent::Reassigned => MessageEvent::Reassigned,
        }
    }

    pub(crate) fn phrase(self) -> Phrase {
        match self {
            OrderEvent::Paid => Phrase::Paid,
            OrderEvent::Accepted => Phrase::Accepted,
            OrderEvent::Delivered => Phrase::Delivered,
            OrderEvent::Refunded => Phrase::Refunded,
            OrderEvent::Reassigned => Phrase::Reassigned,
        }
    }
}

fn valid_id(field: &str, v: &str) -> Result<String, InvalidInput> {
    let v = v.trim();
    if v.is_empty() || v.len() > 128 || !v.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(InvalidInput(format!(
            "{field} must be 1 to 128 visible ASCII characters"
        )));
    }
    Ok(v.to_string())
}

impl Subscriptions {
    pub fn new(db: Db, cache: Cache, mini: MiniClient, templates: Templates) -> Self {
        Self {
            db,
            caps: DailyCaps::new(cache.clone(), mini.appid()),
            cache,
            mini,
            templates,
            mp: None,
        }
    }

    /// The per-user daily caps, shared with the official-account outbox so both count in
    /// one place.
    pub(crate) fn daily_caps(&self) -> DailyCaps {
        self.caps.clone()
    }

    pub fn with_mp_outbox(mut self, outbox: mp_outbox::MpOutbox) -> Self {
        self.mp = Some(outbox);
        self
    }

    /// The official-account outbox, when configured.
    pub fn mp_outbox(&self) -> Option<&mp_outbox::MpOutbox> {
        self.mp.as_ref()
    }

    /// `GET /admin/mp-messages`: the official-account send log (kept rows are listed
    /// even when sending is switched off).
    pub async fn admin_mp_messages(
        &self,
        caller: &CurrentUser,
        q: mp_outbox::MpMessagesQuery,
    ) -> Result<Page<mp_outbox::MpMessageView>, mp_outbox::MpOutboxError> {
        caller.require(Role::Admin)?;
        mp_outbox::list(&self.db, q).await
    }

    /// Whether order events send messages at all (callers skip work when not).
    pub fn order_messages_on(&self) -> bool {
        self.templates.order.is_some() || self.mp.is_some()
    }

    pub async fn grant_credits(
        &self,
        user: &CurrentUser,
        g: CreditGrant,
    ) -> Result<CreditsView, SubscriptionError> {
        if g.form_id.is_some() {
            return Err(SubscriptionError::FormIdRetired);
        }
        let ids: Vec<String> = match g.template_ids {
            Some(ids) if (1..=10).contains(&ids.len()) => ids
                .iter()
                .map(|t| valid_id("template_id", t))
                .collect::<Result<_, InvalidInput>>()?,
            _ => return Err(InvalidInput::new("send 1 to 10 template_ids").into()),
        };
        let uid = user.id;
        self.db
            .write_tx(move |c| -> Result<CreditsView, SubscriptionError> {
                let now = time::now();
                for template_id in &ids {
                    q::grant(
                        c,
                        &NewCredit {
                            user: uid,
                            kind: CreditKind::Subscribe,
                            template_id: Some(template_id),
                            form_id: None,
                            // An acceptance does not expire (a form_id lasted 7 days).
                            expires_at: None,
                            at: now,
                        },
                    )?;
                }
                Ok(CreditsView {
                    granted: ids.len(),
                    available: q::unused_count(c, uid, now)?,
                })
            })
            .await
    }

    /// Tells the customer about an order event, in the background.
    pub(crate) fn announce(&self, order: &Order, event: OrderEvent) {
        self.announce_to(order.customer_id, order, event);
    }

    /// Tells `recipient` (the customer, or the runner of a reassigned order) about an
    /// order event, in the background.
    pub(crate) fn announce_to(&self, recipient: UserId, order: &Order, event: OrderEvent) {
        if let Some(mp) = &self.mp {
            mp.announce(recipient, order, event);
        }
        let Some(template) = self.templates.order.clone() else {
            return;
        };
        let s = self.clone();
        let order = order.clone();
        let data = match order_message(&order, event) {
            Ok(d) => d.to_json(),
            Err(e) => {
                tracing::warn!(order = %order.id, error = %e, "order message not sent");
                return;
            }
        };
        tokio::spawn(async move {
            let page = format!("pages/order/detail?id={}", order.id);
            s.send_subscribe(
                recipient,
                &template,
                event.message_event(),
                Some(order.id),
                &page,
                data,
            )
            .await;
        });
    }

    /// Tells each participant of a drawn draw what they won (`Some(prize)`) or that
    /// they did not, in the background, after the draw committed: a failed send never
    /// touches the draw.
    pub(crate) fn announce_draw(
        &self,
        draw: i64,
        title: &str,
        drawn_at: chrono::NaiveDateTime,
        results: Vec<(UserId, Option<String>)>,
    ) {
        let Some(template) = self.templates.draw.clone() else {
            return;
        };
        let s = self.clone();
        let title = title.to_string();
        tokio::spawn(async move {
            let page = format!("pages/draw/detail?id={draw}");
            for (user, prize) in results {
                let result = match &prize {
                    Some(p) => format!("中奖：{p}"),
                    None => "未中奖".to_string(),
                };
                let data = MessageData::new()
                    .with(1, Value::thing(&title))
                    .with(2, Value::thing(&result))
                    .with(3, Value::time(drawn_at))
                    .to_json();
                s.send_subscribe(user, &template, MessageEvent::DrawResult, None, &page, data)
                    .await;
            }
        });
    }

    /// The daily cap `event` counts against, as (counter, cap): order messages share
    /// `MESSAGES_PER_USER_DAY`, the reminder has one a day; a draw's result is not capped.
    fn cap_of(&self, event: MessageEvent) -> Option<(CapChannel, i64)> {
        match event {
            MessageEvent::Paid
            | MessageEvent::Accepted
            | MessageEvent::Delivered
            | MessageEvent::Refunded
            | MessageEvent::Reassigned => Some((
                CapChannel::Order,
                i64::from(self.templates.messages_per_user_day),
            )),
            MessageEvent::Reminder => Some((CapChannel::Reminder, 1)),
            MessageEvent::DrawResult => None,
        }
    }

    /// Counts one message against the user's cap for today (Beijing). `Ok(Some(place))`:
    /// within it, and the place is given back if WeChat does not accept the message;
    /// `Ok(None)`: not capped; `Err(outcome)`: not to be sent.
    async fn count_against_cap(
        &self,
        user: UserId,
        event: MessageEvent,
    ) -> Result<Option<Taken>, MessageOutcome> {
        let Some((channel, cap)) = self.cap_of(event) else {
            return Ok(None);
        };
        match self.caps.take(channel, user, cap).await {
            Ok(taken) => Ok(Some(taken)),
            Err(CapRefusal::Over) => Err(MessageOutcome::Capped),
            Err(CapRefusal::Unreadable) => Err(MessageOutcome::Error),
        }
    }

    /// Spends a credit and sends; records the outcome whatever it is.
    async fn send_subscribe(
        &self,
        user: UserId,
        template: &str,
        event: MessageEvent,
        order_id: Option<OrderId>,
        page: &str,
        data: serde_json::Value,
    ) -> MessageOutcome {
        let outcome = match self.count_against_cap(user, event).await {
            Ok(counted) => {
                let outcome = self.spend_and_send(user, template, page, data, event).await;
                if let (Some(taken), false) = (counted, outcome == MessageOutcome::Sent) {
                    self.caps.give_back(taken).await;
                }
                outcome
            }
            Err(outcome) => outcome,
        };
        let t = template.to_string();
        let logged = self
            .db
            .write(move |c| {
                q::log_message(
                    c,
                    &NewMessage {
                        user,
                        channel: MessageChannel::Subscribe,
                        template_id: Some(&t),
                        event,
                        order_id,
                        outcome,
                        at: time::now(),
                    },
                )
                .map_err(SubscriptionError::from)
            })
            .await;
        if let Err(e) = logged {
            tracing::warn!(error = %e, "could not record a message send");
        }
        outcome
    }

    /// Takes one of the user's credits for `template` and sends the message with it.
    async fn spend_and_send(
        &self,
        user: UserId,
        template: &str,
        page: &str,
        data: serde_json::Value,
        event: MessageEvent,
    ) -> MessageOutcome {
        let t = template.to_string();
        let credit = self
            .db
            .write(move |c| -> Result<_, SubscriptionError> {
                let openid = campus_dal::users::find(c, user)?.map(|u| u.openid);
                let credit = q::take(c, user, &t, time::now())?;
                Ok((openid, credit))
            })
            .await;
        match credit {
            Ok((Some(openid), true)) => {
                let body = serde_json::json!({
                    "touser": openid,
                    "template_id": template,
                    "page": page,
                    "data": data,
                });
                match self.mini.send_subscribe(&body).await {
                    Ok(()) => MessageOutcome::Sent,
                    Err(WechatError::Api { code: 43101, .. }) => MessageOutcome::Refused,
                    Err(e) => {
                        tracing::warn!(error = %e, %event, "subscribe message failed");
                        MessageOutcome::Error
                    }
                }
            }
            Ok((None, _)) => MessageOutcome::UnknownUser,
            Ok((_, false)) => MessageOutcome::NoCredit,
            Err(e) => {
                tracing::warn!(error = %e, "could not take a credit");
                MessageOutcome::Error
            }
        }
    }

    /// Daily reminder: customers with delivered orders they have not confirmed.
    async fn send_reminders(&self) -> Result<usize, SubscriptionError> {
        let Some(template) = self.templates.reminder.clone() else {
            return Ok(0);
        };
        let before = time::now() - chrono::Duration::hours(2);
        let rows = self
            .db
            .read(move |c| {
                campus_dal::orders::delivered_before(c, before, 500)
                    .map_err(SubscriptionError::from)
            })
            .await?;
        let mut n = 0;
        for o in rows {
            let data = match Value::character_string(&o.out_trade_no) {
                Ok(no) => MessageData::new()
                    .with(1, no)
                    .with(2, Value::thing("订单已送达，请确认收货"))
                    .with(3, Value::Phrase(Phrase::ToConfirm))
                    .to_json(),
                Err(e) => {
                    tracing::warn!(order = %o.id, error = %e, "reminder not sent");
                    continue;
                }
            };
            let page = format!("pages/order/detail?id={}", o.id);
            if self
                .send_subscribe(
                    o.customer_id,
                    &template,
                    MessageEvent::Reminder,
                    Some(o.id),
                    &page,
                    data,
                )
                .await
                == MessageOutcome::Sent
            {
                n += 1;
            }
        }
        Ok(n)
    }

    async fn sweep_credits(&self) -> Result<usize, SubscriptionError> {
        self.db
            .write(|c| {
                let now = time::now();
                q::sweep(c, now, now - chrono::Duration::days(30)).map_err(SubscriptionError::from)
            })
            .await
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let (a, b) = (self.clone(), self.clone());
        let mut jobs = self
            .mp
            .as_ref()
            .map(|m| m.jobs(metrics))
            .unwrap_or_default();
        jobs.extend([
            every(
                metrics,
                "credit_expiry_sweep",
                Duration::from_secs(3600),
                move || {
                    let s = a.clone();
                    async move { s.sweep_credits().await }
                },
            ),
            every(
                metrics,
                "daily_reminder",
                Duration::from_secs(300),
                move || {
                    let s = b.clone();
                    async move { s.daily_reminder_tick().await }
                },
            ),
        ]);
        jobs
    }

    /// Runs the reminder once a day at `REMINDER_HOUR_BEIJING`, on one instance: the
    /// cache key for the day is the claim.
    async fn daily_reminder_tick(&self) -> Result<usize, String> {
        if self.templates.reminder.is_none() {
            return Ok(0);
        }
        let beijing = chrono::Utc::now() + chrono::Duration::hours(8);
        if chrono::Timelike::hour(&beijing) != self.templates.reminder_hour_beijing {
            return Ok(0);
        }
        let key = format!("job:reminder:{}", beijing.format("%Y-%m-%d"));
        let claimed = self
            .cache
            .set_nx_ex(
                &key,
                &crate::crypto::random_alnum(16),
                Duration::from_secs(26 * 3600),
            )
            .await
            .map_err(|e| e.to_string())?;
        if !claimed {
            return Ok(0);
        }
        self.send_reminders().await.map_err(|e| e.to_string())
    }
}

/// The order message: number, state, amount, where it goes.
fn order_message(o: &Order, event: OrderEvent) -> Result<MessageData, message::ValueError> {
    Ok(MessageData::new()
        .with(1, Value::character_string(&o.out_trade_no)?)
        .with(2, Value::Phrase(event.phrase()))
        .with(3, Value::amount(o.amount_fen)?)
        .with(4, Value::thing(&o.dropoff)))
}

/// One send attempt, as the admin list shows it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MessageView {
    pub id: i64,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub channel: MessageChannel,
    pub template_id: Option<String>,
    pub event: MessageEvent,
    #[schema(value_type = Option<i64>)]
    pub order_id: Option<OrderId>,
    pub outcome: MessageOutcome,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl Subscriptions {
    /// `GET /admin/messages`: the send log, newest first.
    pub async fn admin_messages(
        &self,
        caller: &CurrentUser,
        limit: Option<&str>,
        cursor: Option<&str>,
    ) -> Result<Page<MessageView>, SubscriptionError> {
        caller.require(Role::Admin)?;
        let limit = page_limit_text(limit)?;
        let before = id_cursor(cursor)?;
        let rows = self
            .db
            .read(move |c| q::list_log(c, before, limit).map_err(SubscriptionError::from))
            .await?;
        Ok(into_page(
            rows,
            limit,
            |m| m.id,
            |m| MessageView {
                id: m.id,
                user_id: m.user_id,
                channel: m.channel,
                template_id: m.template_id.clone(),
                event: m.event,
                order_id: m.order_id,
                outcome: m.outcome,
                created_at: time::to_utc(m.created_at),
            },
        ))
    }
}
