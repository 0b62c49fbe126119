//! The official account: WeChat pushes messages here (plain or safe mode) and we reply
//! within its 5 seconds. Text commands: `help`, `bind <code>`, `orders`, `status <no>`,
//! the team's expense commands (`expense 35.50 tea` / `报销 35.50 奶茶`, `mine`, `group`,
//! `center`); a text equal to an active coupon's keyword claims that coupon for the bound
//! user. A tap on a menu button (`CLICK`) is answered as its key typed as text.
//!
//! A signed URL is no credential: the plain signature covers token, timestamp and nonce
//! but not the body, so a push must be fresh (±300 s) and, outside safe mode, a
//! `(timestamp, nonce)` pair is good for one message only. `bind` attempts are limited
//! per sender, so the 10^6 codes cannot be walked.

use std::collections::BTreeMap;
use std::time::Duration;

use campus_dal::orders::{self as oq, Scope};
use campus_dal::{time, users};

use crate::cache::Cache;
use crate::db::{Db, DbError};
use crate::expenses::money::parse_yuan;
use crate::expenses::{ExpenseError, Expenses, Scope as ExpenseScope};
use crate::limits::{Limit, LimitError, Limits};
use crate::promotions::{KeywordClaim, PromotionError, Promotions};
use crate::wechat::mp_xml::parse_message;
pub use crate::wechat::push::PushQuery;
use crate::wechat::push::{PushError, PushKeys};

/// WeChat retries a push three times within about 15 s; remember replies a while longer.
const DEDUP_TTL: Duration = Duration::from_secs(60);
/// `bind` attempts per sender in [`BIND_WINDOW`].
const MAX_BIND_ATTEMPTS: i64 = 5;
const BIND_WINDOW: Duration = Duration::from_secs(600);
/// The bare answer WeChat takes as "received, nothing to say".
const SUCCESS: &str = "success";

/// The official-account service.
#[derive(Clone)]
pub struct OfficialAccount {
    db: Db,
    cache: Cache,
    /// `None`: no official account configured (`WECHAT_MP_TOKEN` unset).
    account: Option<AccountKeys>,
    /// `mp_openid`: messages answered per sender.
    limits: Option<Limits>,
    /// Coupon keywords: a text equal to one claims that coupon.
    promotions: Option<Promotions>,
    /// The team's expense commands.
    expenses: Option<Expenses>,
}

/// The account's server token, and its AES key when safe mode is set up.
pub type AccountKeys = PushKeys;

#[derive(Debug, thiserror::Error)]
pub enum OfficialAccountError {
    #[error("the official account is not configured")]
    NotConfigured,
    /// The push failed verification (signature, freshness, a reused pair, its mode).
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Cache(#[from] crate::cache::CacheError),
    /// A keyword claim that failed for a reason other than a refusal the reply explains.
    #[error(transparent)]
    Promotion(#[from] PromotionError),
    /// An expense command that failed for a reason other than one the reply explains.
    #[error(transparent)]
    Expense(#[from] ExpenseError),
}

/// What an unbound sender is told (the same words for every command that needs a user).
const NOT_BOUND: &str =
    "未绑定 Not linked yet: send `bind <code>` with the code from the mini-program.";

const HELP: &str = "Campus Errand 校园跑腿\n\
- bind <code>: link this account (get the code in the mini-program: Me → Link official account)\n\
- orders: your recent orders\n\
- status <order no>: one order's status\n\
- a coupon's keyword: claim that coupon\n\
- expense 35.50 tea and cakes (or 报销 35.50 奶茶): record what you advanced for your team today\n\
- mine / group / center: this quarter's unreimbursed totals (group: leaders; center: admins)\n\
- help: this text";

/// The right form, shown with every refused expense command.
const EXPENSE_FORM: &str = "格式 Format: expense 35.50 tea and cakes (或 报销 35.50 奶茶): \
the amount in yuan (positive, at most 100000, at most two decimals), then what it was for.";

/// `s` inside a CDATA section (a `]]>` in it is split across two sections).
fn cdata(s: &str) -> String {
    format!("<![CDATA[{}]]>", s.replace("]]>", "]]]]><![CDATA[>"))
}

/// A passive text reply; `CreateTime` is a plain integer as WeChat sends it.
fn text_reply(to: &str, from: &str, content: &str) -> String {
    format!(
        "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{}</CreateTime><MsgType>{}</MsgType><Content>{}</Content></xml>",
        cdata(to),
        cdata(from),
        chrono::Utc::now().timestamp(),
        cdata("text"),
        cdata(content),
    )
}

impl OfficialAccount {
    pub fn new(db: Db, cache: Cache, account: Option<AccountKeys>) -> Self {
        Self {
            db,
            cache,
            account,
            limits: None,
            promotions: None,
            expenses: None,
        }
    }

    pub fn with_expenses(mut self, expenses: Expenses) -> Self {
        self.expenses = Some(expenses);
        self
    }

    pub fn with_promotions(mut self, promotions: Promotions) -> Self {
        self.promotions = Some(promotions);
        self
    }

    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Some(limits);
        self
    }

    /// A sender over `mp_openid` is answered `success` and nothing is done: WeChat takes
    /// an error reply as a failed push and retries it, which would only add load.
    async fn within_limit(&self, from: &str) -> Result<bool, OfficialAccountError> {
        let Some(limits) = &self.limits else {
            return Ok(true);
        };
        match limits.check(Limit::MpOpenid, from).await {
            Ok(()) => Ok(true),
            Err(LimitError::Limited { .. }) => Ok(false),
            Err(LimitError::Unavailable(e)) => Err(e.into()),
        }
    }

    fn account(&self) -> Result<&AccountKeys, OfficialAccountError> {
        self.account
            .as_ref()
            .ok_or(OfficialAccountError::NotConfigured)
    }

    /// `GET /wechat/mp`: the URL check when the server is configured in WeChat's console.
    pub fn echo(&self, q: &PushQuery) -> Result<String, OfficialAccountError> {
        Ok(self.account()?.echo(q)?)
    }

    /// `POST /wechat/mp`: verifies, decrypts (safe mode), de-duplicates, answers.
    pub async fn message(
        &self,
        q: &PushQuery,
        body: &[u8],
    ) -> Result<String, OfficialAccountError> {
        let account = self.account()?;
        let opened = account.open(&self.cache, "mp", q, body).await?;
        let crypto = account.crypto_for(&opened);
        let msg = parse_message(opened.text.as_bytes())
            .map_err(|e| OfficialAccountError::Malformed(e.to_string()))?;
        let from = msg.get("FromUserName").cloned().unwrap_or_default();
        let to = msg.get("ToUserName").cloned().unwrap_or_default();
        if from.is_empty() {
            return Err(OfficialAccountError::Malformed("no FromUserName".into()));
        }
        // Keyed by the receiving account (ToUserName) too: MsgIds are unique per account
        // only, and several accounts may share one Redis.
        let dedup_key = match msg.get("MsgId") {
            Some(id) => format!("mp:msg:{to}:{id}"),
            None => format!(
                "mp:event:{to}:{from}:{}",
                msg.get("CreateTime").map(String::as_str).unwrap_or("")
            ),
        };
        // The first push does the work; a retry gets the reply it made (or `success`
        // while it is still being made), so `bind` never runs twice.
        let claim = crate::crypto::random_alnum(16);
        let plain_reply = if self.cache.set_nx_ex(&dedup_key, &claim, DEDUP_TTL).await? {
            let answer = if self.within_limit(&from).await? {
                self.answer(&from, &to, &msg).await?
            } else {
                None
            };
            let reply = match answer {
                Some(content) => text_reply(&from, &to, &content),
                None => SUCCESS.to_string(),
            };
            self.cache.set_ex(&dedup_key, &reply, DEDUP_TTL).await?;
            reply
        } else {
            match self.cache.get(&dedup_key).await? {
                Some(r) if r.starts_with('<') => r,
                _ => SUCCESS.to_string(),
            }
        };
        if plain_reply == SUCCESS {
            return Ok(plain_reply);
        }
        Ok(match crypto {
            Some(c) => c.encrypt_reply(&plain_reply, &q.timestamp, &q.nonce),
            None => plain_reply,
        })
    }

    /// The text to reply, or `None` for the bare `success` (events we do not handle).
    async fn answer(
        &self,
        from: &str,
        to: &str,
        msg: &BTreeMap<String, String>,
    ) -> Result<Option<String>, OfficialAccountError> {
        // A menu button's key is the text command it stands for (`conf/mp_menu.json`).
        let field = match msg.get("MsgType").map(String::as_str) {
            Some("event") => match msg.get("Event").map(String::as_str) {
                Some("subscribe") => return Ok(Some(format!("欢迎 Welcome!\n{HELP}"))),
                Some("CLICK") => "EventKey",
                _ => return Ok(None),
            },
            Some("text") => "Content",
            _ => return Ok(Some(HELP.into())),
        };
        let content = msg.get(field).map(|c| c.trim()).unwrap_or("");
        if let Some(p) = &self.promotions
            && !content.is_empty()
            && let Some(claim) = p.claim_by_keyword(from, content).await?
        {
            return Ok(Some(match claim {
                KeywordClaim::Claimed { title } => {
                    format!(
                        "领取成功 Claimed: {title}. Find it in the mini-program under Me → Coupons."
                    )
                }
                KeywordClaim::OutOfStock { title } => {
                    format!("已领完 {title} is out of stock.")
                }
                KeywordClaim::AlreadyClaimed { title } => {
                    format!("已领取 You have already claimed {title} as many times as allowed.")
                }
                KeywordClaim::NotBound => NOT_BOUND.into(),
            }));
        }
        let (cmd, arg) = content
            .split_once(char::is_whitespace)
            .unwrap_or((content, ""));
        let arg = arg.trim().to_string();
        let from = from.to_string();
        let text = match cmd.to_ascii_lowercase().as_str() {
            "bind" => {
                // Every attempt counts (a success ends the need to try): counted before
                // the code is looked at, atomically, so parallel guesses get no extra tries.
                let key = format!("mp:bind:{to}:{from}");
                if self.cache.incr_ex(&key, BIND_WINDOW).await? > MAX_BIND_ATTEMPTS {
                    return Ok(Some(
                        "尝试次数过多 Too many bind attempts: try again in 10 minutes.".into(),
                    ));
                }
                self.db
                    .write_tx(move |c| -> Result<String, OfficialAccountError> {
                        let now = time::now();
                        match users::consume_bind_code(c, &arg, now)? {
                            Some(uid) => {
                                users::bind_mp_openid(c, uid, &from, now)?;
                                Ok("绑定成功 Linked: order updates will come here.".into())
                            }
                            None => Ok("绑定码无效或已过期 That code is invalid or expired. Get a new one in the mini-program.".into()),
                        }
                    })
                    .await
            }
            "orders" | "status" => {
                let want = (cmd.eq_ignore_ascii_case("status")).then_some(arg);
                self.db
                    .read(move |c| -> Result<String, OfficialAccountError> {
                        let Some(u) = users::find_by_mp_openid(c, &from)? else {
                            return Ok(NOT_BOUND.into());
                        };
                        let uid = u.id;
                        if let Some(no) = want {
                            return Ok(match oq::find_by_out_trade_no(c, &no)? {
                                Some(o) if o.involves(uid) => {
                                    format!(
                                        "{}: {} ({} → {})",
                                        o.out_trade_no, o.status, o.pickup, o.dropoff
                                    )
                                }
                                _ => format!("No order {no} of yours."),
                            });
                        }
                        let rows = oq::list(c, Scope::Customer(uid), None, None, 5)?;
                        if rows.is_empty() {
                            return Ok("No orders yet.".into());
                        }
                        Ok(rows
                            .iter()
                            .take(5)
                            .map(|o| {
                                format!(
                                    "{} {} ¥{}.{:02}",
                                    o.out_trade_no,
                                    o.status,
                                    o.amount_fen / 100,
                                    o.amount_fen % 100
                                )
                            })
                            .collect::<Vec<_>>()
                            .join("\n"))
                    })
                    .await
            }
            "expense" | "报销" | "mine" | "group" | "center" if self.expenses.is_some() => {
                self.expense_command(&from, cmd, &arg).await
            }
            _ => Ok(HELP.into()),
        };
        text.map(Some)
    }

    /// The team's expense commands, for the sender's bound user.
    async fn expense_command(
        &self,
        from: &str,
        cmd: &str,
        arg: &str,
    ) -> Result<String, OfficialAccountError> {
        let Some(expenses) = &self.expenses else {
            return Ok(HELP.into());
        };
        let openid = from.to_string();
        let Some(row) = self
            .db
            .read(move |c| users::find_by_mp_openid(c, &openid).map_err(OfficialAccountError::from))
            .await?
        else {
            return Ok(NOT_BOUND.into());
        };
        if row.banned_at.is_some() {
            return Ok("此账号已被封禁 This account is banned.".into());
        }
        let user = crate::users::CurrentUser {
            id: row.id,
            role: row.role,
            row,
        };
        let scope = match cmd.to_ascii_lowercase().as_str() {
            "mine" => Some(ExpenseScope::Me),
            "group" => Some(ExpenseScope::Group),
            "center" => Some(ExpenseScope::Center),
            _ => None,
        };
        let result = match scope {
            Some(_) if !arg.is_empty() => {
                return Ok(format!(
                    "格式 Format: `{}` on its own, for this quarter's totals.",
                    cmd.to_ascii_lowercase()
                ));
            }
            Some(scope) => expenses.totals_text(&user, scope).await,
            None => {
                let (amount, what) = arg
                    .split_once(char::is_whitespace)
                    .map(|(a, w)| (a, w.trim()))
                    .unwrap_or((arg, ""));
                if amount.is_empty() || what.is_empty() {
                    return Ok(EXPENSE_FORM.into());
                }
                let fen = match parse_yuan(amount) {
                    Ok(f) => f,
                    Err(e) => return Ok(format!("{e}.\n{EXPENSE_FORM}")),
                };
                match expenses.record_from_text(&user, fen, what).await {
                    Ok(e) => {
                        let mine = expenses.totals_text(&user, ExpenseScope::Me).await?;
                        Ok(format!(
                            "已记录 Recorded #{}: ¥{} {} ({}).\n{mine}",
                            e.id,
                            crate::expenses::money::yuan(e.amount_fen),
                            e.what,
                            e.spent_on
                        ))
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(text) => Ok(text),
            Err(ExpenseError::Invalid(e)) => Ok(format!("{e}.\n{EXPENSE_FORM}")),
            Err(ExpenseError::ContentRejected(_)) => Ok(
                "内容未通过审核 The description did not pass WeChat's content check: please reword it."
                    .into(),
            ),
            Err(ExpenseError::NotMember) => Ok(
                "你还不在任何小组 You are not in an expense group: ask an admin to add you.".into(),
            ),
            Err(ExpenseError::NotLeader) => {
                Ok("仅组长可查看 Only group leaders can see their group's totals.".into())
            }
            Err(ExpenseError::Forbidden(_)) => {
                Ok("仅管理员可查看 Only admins (the center) can see the center's totals.".into())
            }
            Err(e) => Err(e.into()),
        }
    }
}
