//! Order events as official-account template messages, through an outbox.
//!
//! Binding the official account promises that order updates come there. Each event
//! (paid, accepted, delivered, refunded) for a user who bound the account becomes one
//! `mp_messages` row, unique per (user, event), written after the order's own commit and
//! before anything is sent. A sender claims the row with a compare-and-set
//! (`pending` → `sending`, with a lease), so no two senders, on any number of instances,
//! send it; a sent row is never sent again. Failures that say WeChat did not send (HTTP
//! 5xx, -1 system busy, no connection, an access token WeChat keeps refusing, rate limits)
//! are retried with backoff until [`MAX_ATTEMPTS`]; WeChat's refusals (43004 the user
//! unfollowed, 40003 not an openid of this account, any other errcode) are final and
//! recorded. The template API takes no request id, so a send that may have reached WeChat
//! (a timeout, a connection lost after sending, a sender that stopped mid-send and whose
//! lease ran out) is `unclear` and never sent again: a message is lost rather than doubled.
//! The account's messages have their own `MESSAGES_PER_USER_DAY` cap beside the
//! mini-program's; one over it is recorded `capped` and not sent.

use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use campus_dal::mp_messages::{self as q, MpMessage, NewMpMessage, Outcome};
use campus_dal::orders::Order;
use campus_dal::{MessageEvent, MpMessageId, MpMessageStatus, OrderId, UserId, time};

use super::OrderEvent;
use super::daily_cap::{CapChannel, CapRefusal, DailyCaps};
use super::message::Value;
use crate::db::{Db, DbError};
use crate::jobs::{Job, every};
use crate::orders::Page;
use crate::telemetry::Metrics;
use crate::text::{InvalidInput, id_cursor, into_page, page_limit_text};
use crate::users::Forbidden;
use crate::wechat::mini::WechatError;
use crate::wechat::mp::MpClient;

/// Sends per message, the first included.
pub const MAX_ATTEMPTS: i32 = 6;
/// The wait after the n-th failed attempt.
const BACKOFF: [Duration; 5] = [
    Duration::from_secs(30),
    Duration::from_secs(120),
    Duration::from_secs(600),
    Duration::from_secs(1800),
    Duration::from_secs(7200),
];
/// A claim older than this is taken as a sender that died mid-send.
const LEASE: Duration = Duration::from_secs(120);
/// How often the job looks for due retries.
const TICK: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum MpOutboxError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// The outbox and its sender.
#[derive(Clone)]
pub struct MpOutbox {
    db: Db,
    client: MpClient,
    /// `WECHAT_MP_TEMPLATE_ORDER`.
    template: String,
    /// The mini-program the message opens (its detail page).
    mini_appid: String,
    caps: DailyCaps,
    /// `MESSAGES_PER_USER_DAY`.
    per_day: i64,
}

impl MpOutbox {
    pub fn new(
        db: Db,
        client: MpClient,
        template: String,
        mini_appid: String,
        caps: DailyCaps,
        per_day: u32,
    ) -> Self {
        Self {
            db,
            client,
            template,
            mini_appid,
            caps,
            per_day: i64::from(per_day),
        }
    }

    /// Records the event's message for `recipient` when they bound the account, then sends
    /// it, in the background (the order's transaction has committed already).
    pub(crate) fn announce(&self, recipient: UserId, order: &Order, event: OrderEvent) {
        let Some(wording) = Wording::of(event) else {
            return;
        };
        let s = self.clone();
        let order = order.clone();
        tokio::spawn(async move {
            match s.enqueue(recipient, &order, event, wording).await {
                Ok(Some(id)) => {
                    s.deliver(id).await;
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(order = %order.id, error = %e, "official-account message not recorded")
                }
            }
        });
    }

    /// The new row's id; `None` when the user did not bind the account or the event's
    /// message exists already.
    async fn enqueue(
        &self,
        recipient: UserId,
        order: &Order,
        event: OrderEvent,
        wording: Wording,
    ) -> Result<Option<MpMessageId>, MpOutboxError> {
        let template = self.template.clone();
        let mini_appid = self.mini_appid.clone();
        let order = order.clone();
        self.db
            .write(move |c| -> Result<_, MpOutboxError> {
                let Some(user) = campus_dal::users::find(c, recipient)? else {
                    return Ok(None);
                };
                let Some(touser) = user.mp_openid else {
                    return Ok(None);
                };
                let payload = payload(&touser, &template, &mini_appid, &order, wording);
                // The order's update time tells a second acceptance (after a reassignment)
                // from the same event announced twice.
                let event_key = format!(
                    "order:{}:{}:{}",
                    order.id,
                    event.message_event(),
                    order.updated_at.and_utc().timestamp_micros()
                );
                let now = time::now();
                let (row, new) = q::enqueue(
                    c,
                    &NewMpMessage {
                        user_id: recipient,
                        touser: &touser,
                        template_id: &template,
                        event: event.message_event(),
                        order_id: Some(order.id),
                        event_key: &event_key,
                        payload: &payload.to_string(),
                        status: MpMessageStatus::Pending,
                        attempts: 0,
                        next_attempt_at: now,
                        created_at: now,
                        updated_at: now,
                    },
                )?;
                Ok(new.then_some(row.id))
            })
            .await
    }

    /// One attempt at one message, if this caller wins its claim. Returns the status the
    /// row was left in (`None`: another sender holds it, or it is not due).
    pub async fn deliver(&self, id: MpMessageId) -> Option<MpMessageStatus> {
        let claimed = self
            .db
            .write(move |c| -> Result<Option<MpMessage>, MpOutboxError> {
                let now = time::now();
                if q::claim(
                    c,
                    id,
                    now,
                    now + chrono::Duration::from_std(LEASE).unwrap_or_default(),
                )? != 1
                {
                    return Ok(None);
                }
                Ok(q::find(c, id)?)
            })
            .await;
        let row = match claimed {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "could not claim an official-account message");
                return None;
            }
        };
        let (status, error, msgid) = self.attempt(&row).await;
        if status != MpMessageStatus::Sent {
            tracing::warn!(message = %id, attempt = row.attempts, %status, error, "official-account message not sent");
        }
        let attempts = row.attempts;
        let written = self
            .db
            .write(move |c| -> Result<usize, MpOutboxError> {
                let now = time::now();
                let outcome = match status {
                    MpMessageStatus::Sent => Outcome::Sent {
                        msgid: msgid.as_deref(),
                    },
                    MpMessageStatus::Pending => Outcome::Retry {
                        at: now + backoff(attempts),
                        error: &error,
                    },
                    s => Outcome::Final {
                        status: s,
                        error: &error,
                    },
                };
                Ok(q::finish(c, id, attempts, outcome, now)?)
            })
            .await;
        match written {
            Ok(1) => Some(status),
            Ok(_) => {
                tracing::warn!(message = %id, "official-account message claim was lost before its outcome was written");
                None
            }
            Err(e) => {
                tracing::warn!(message = %id, error = %e, "could not record an official-account send");
                None
            }
        }
    }

    /// Sends a claimed row within the user's cap: the status to leave it in, the error, and
    /// WeChat's msgid.
    async fn attempt(&self, row: &MpMessage) -> (MpMessageStatus, String, Option<String>) {
        let retry_or_give_up = if row.attempts >= MAX_ATTEMPTS {
            MpMessageStatus::GaveUp
        } else {
            MpMessageStatus::Pending
        };
        let taken = match self
            .caps
            .take(CapChannel::MpOrder, row.user_id, self.per_day)
            .await
        {
            Ok(t) => t,
            Err(CapRefusal::Over) => {
                let why = format!("over MESSAGES_PER_USER_DAY ({})", self.per_day);
                return (MpMessageStatus::Capped, why, None);
            }
            Err(CapRefusal::Unreadable) => {
                return (retry_or_give_up, "message cap unreadable".into(), None);
            }
        };
        let result = match serde_json::from_str::<serde_json::Value>(&row.payload) {
            Ok(body) => self.client.send_template(&body).await,
            Err(e) => Err(WechatError::Api {
                code: 0,
                msg: format!("stored payload unreadable: {e}"),
            }),
        };
        let (status, error) = match &result {
            Ok(_) => (MpMessageStatus::Sent, String::new()),
            Err(e) if permanent(e) => (MpMessageStatus::Failed, e.to_string()),
            Err(e) if maybe_sent(e) => (MpMessageStatus::Unclear, e.to_string()),
            Err(e) => (retry_or_give_up, e.to_string()),
        };
        // An unclear send keeps its place: WeChat may have taken it.
        if matches!(
            status,
            MpMessageStatus::Failed | MpMessageStatus::Pending | MpMessageStatus::GaveUp
        ) {
            self.caps.give_back(taken).await;
        }
        (status, error, result.ok().flatten())
    }

    /// Job tick (and tests): sends whose sender stopped mid-send become `unclear`; then
    /// every due message, one attempt each.
    pub async fn send_due(&self) -> Result<usize, MpOutboxError> {
        let stale = self
            .db
            .write(|c| {
                q::expire_stale_sends(c, time::now(), STOPPED_MID_SEND).map_err(MpOutboxError::from)
            })
            .await?;
        if stale > 0 {
            tracing::warn!(
                count = stale,
                "official-account messages whose sender stopped mid-send are unclear, not sent again"
            );
        }
        let due = self
            .db
            .read(|c| q::due(c, time::now(), 100).map_err(MpOutboxError::from))
            .await?;
        let mut sent = 0;
        for id in due {
            if self.deliver(id).await == Some(MpMessageStatus::Sent) {
                sent += 1;
            }
        }
        Ok(sent)
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(metrics, "mp_outbox", TICK, move || {
            let s = s.clone();
            async move { s.send_due().await }
        })]
    }
}

/// The send log, newest first.
pub(crate) async fn list(
    db: &Db,
    q: MpMessagesQuery,
) -> Result<Page<MpMessageView>, MpOutboxError> {
    let limit = page_limit_text(q.limit.as_deref())?;
    let before = id_cursor(q.cursor.as_deref())?.map(MpMessageId);
    let status = q.status;
    let rows = db
        .read(move |c| q::list(c, status, before, limit).map_err(MpOutboxError::from))
        .await?;
    Ok(into_page(rows, limit, |m| m.id.0, MpMessageView::of))
}

/// Final refusals: WeChat answered with an errcode that no retry changes.
fn permanent(e: &WechatError) -> bool {
    matches!(e, WechatError::Api { .. } | WechatError::Credentials(_))
}

/// WeChat may have sent it: the request left, and no answer says what became of it.
fn maybe_sent(e: &WechatError) -> bool {
    matches!(e, WechatError::Transport(t) if !t.is_connect() && !t.is_builder())
}

const STOPPED_MID_SEND: &str =
    "the sender stopped mid-send (its lease ran out): WeChat may have sent it";

fn backoff(attempts: i32) -> chrono::Duration {
    let i = usize::try_from(attempts.max(1) - 1).unwrap_or(0);
    let d = BACKOFF
        .get(i)
        .copied()
        .unwrap_or(BACKOFF[BACKOFF.len() - 1]);
    chrono::Duration::from_std(d).unwrap_or_default()
}

/// What the message says for an event; `None`: the event is not sent there.
#[derive(Clone, Copy)]
struct Wording {
    first: &'static str,
    remark: &'static str,
    state: &'static str,
}

impl Wording {
    fn of(event: OrderEvent) -> Option<Self> {
        let (first, remark) = match event {
            OrderEvent::Paid => (
                "订单已支付，正在等待跑腿接单",
                "Paid: waiting for a runner.",
            ),
            OrderEvent::Accepted => ("跑腿已接单", "A runner accepted your order."),
            OrderEvent::Delivered => ("订单已送达，请确认收货", "Delivered: please confirm."),
            OrderEvent::Refunded => ("订单已退款", "Refunded to your WeChat balance."),
            OrderEvent::Reassigned => return None,
        };
        Some(Self {
            first,
            remark,
            state: event.phrase().as_str(),
        })
    }
}

/// The `message/template/send` body: the classic order template's keys (`first`,
/// `keyword1` number, `keyword2` state, `keyword3` amount, `keyword4` where, `remark`),
/// opening the order in the mini-program.
fn payload(
    touser: &str,
    template: &str,
    mini_appid: &str,
    o: &Order,
    w: Wording,
) -> serde_json::Value {
    let amount = match Value::amount(o.amount_fen) {
        Ok(Value::Amount(a)) => a,
        _ => format!("{} fen", o.amount_fen),
    };
    let v = |s: &str| serde_json::json!({ "value": s });
    serde_json::json!({
        "touser": touser,
        "template_id": template,
        "miniprogram": {
            "appid": mini_appid,
            "pagepath": format!("pages/order/detail?id={}", o.id),
        },
        "data": {
            "first": v(w.first),
            "keyword1": v(&o.out_trade_no),
            "keyword2": v(w.state),
            "keyword3": v(&amount),
            "keyword4": v(&o.dropoff),
            "remark": v(w.remark),
        },
    })
}

/// `GET /admin/mp-messages` query.
#[derive(Clone, Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct MpMessagesQuery {
    pub status: Option<MpMessageStatus>,
    /// 1 to 100, default 20.
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

/// One official-account template message and where its sending stands.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct MpMessageView {
    #[schema(value_type = i64)]
    pub id: MpMessageId,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub template_id: String,
    pub event: MessageEvent,
    #[schema(value_type = Option<i64>)]
    pub order_id: Option<OrderId>,
    pub status: MpMessageStatus,
    /// Sends tried so far.
    pub attempts: i32,
    /// When `pending`: the next try.
    pub next_attempt_at: Option<chrono::DateTime<chrono::Utc>>,
    /// The last failure (`WeChat error 43004: require subscribe`, `HTTP 503`, ...).
    pub last_error: Option<String>,
    /// WeChat's id of the sent message.
    pub wechat_msgid: Option<String>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub sent_at: Option<chrono::DateTime<chrono::Utc>>,
}

impl MpMessageView {
    fn of(m: &MpMessage) -> Self {
        let at = |t: NaiveDateTime| time::to_utc(t);
        Self {
            id: m.id,
            user_id: m.user_id,
            template_id: m.template_id.clone(),
            event: m.event,
            order_id: m.order_id,
            status: m.status,
            attempts: m.attempts,
            next_attempt_at: (m.status == MpMessageStatus::Pending).then(|| at(m.next_attempt_at)),
            last_error: m.last_error.clone(),
            wechat_msgid: m.wechat_msgid.clone(),
            created_at: at(m.created_at),
            sent_at: m.sent_at.map(at),
        }
    }
}
