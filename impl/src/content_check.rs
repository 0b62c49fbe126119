//! WeChat's content check of text that other users see (`wxa/msg_sec_check`, version 2,
//! with the author's openid): pickup, dropoff and note of an order, a nickname, a draw's
//! title and prizes, an expense's description.
//!
//! Checked before the write: `risky` refuses it (422 `content_rejected`); `review` lets it
//! through and records it for admins; when WeChat cannot answer, the text is let through and
//! recorded `pending`, and the job `content_checks` asks again until WeChat answers (never
//! skipped). What is recorded is written in the same transaction as the text itself.
//!
//! A text WeChat passed is remembered for an hour per author and scene (in the cache, so
//! across instances with Redis): students type the same pickup points and dorm addresses
//! order after order, and WeChat allows an appid only so many checks a minute.

use std::time::Duration;

use chrono::NaiveDateTime;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use campus_dal::content_checks::{self as q, NewContentCheck};
use campus_dal::{ContentSubject, ContentVerdict, UserId, time};

use crate::cache::Cache;
use crate::db::{Db, DbError};
use crate::jobs::{Job, every};
use crate::orders::Page;
use crate::telemetry::Metrics;
use crate::text::{InvalidInput, id_cursor, into_page, page_limit_text};
use crate::users::{CurrentUser, Forbidden, Role};
use crate::wechat::mini::MiniClient;

/// How often the job asks again about texts WeChat could not check.
const RECHECK_EVERY: Duration = Duration::from_secs(60);
const RECHECK_BATCH: i64 = 50;
/// WeChat checks at most this many characters.
const MAX_CHARS: usize = 2500;
/// How long a write waits for WeChat's verdicts (its texts are checked side by side): past
/// it, the texts are let through as `pending`, so a slow WeChat does not stall the write.
const CHECK_BUDGET: Duration = Duration::from_millis(1500);
/// How long a passed text is taken as passed again without asking WeChat.
const PASS_REMEMBERED: Duration = Duration::from_secs(3600);

/// The text was refused by WeChat's content check.
#[derive(Debug, thiserror::Error)]
#[error("the {field} was refused by WeChat's content check; please change it")]
pub struct ContentRejected {
    pub field: &'static str,
}

#[derive(Debug, thiserror::Error)]
pub enum ContentCheckError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error(transparent)]
    Forbidden(#[from] Forbidden),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What the check found, to be recorded with the text once it has its id.
#[derive(Debug, Default)]
#[must_use]
pub struct Findings {
    items: Vec<Finding>,
}

#[derive(Debug)]
struct Finding {
    field: &'static str,
    content: String,
    verdict: ContentVerdict,
    label: Option<i32>,
}

impl Findings {
    /// Writes the findings for the text `subject_id` of `subject`, in the caller's
    /// transaction.
    pub fn record(
        &self,
        c: &mut campus_dal::Conn,
        user: UserId,
        subject: ContentSubject,
        subject_id: i64,
    ) -> campus_dal::QueryResult<usize> {
        let now = time::now();
        let rows: Vec<NewContentCheck<'_>> = self
            .items
            .iter()
            .map(|f| NewContentCheck {
                user_id: user,
                subject,
                subject_id,
                field: f.field,
                content: &f.content,
                verdict: f.verdict,
                label: f.label,
                check_after: (f.verdict == ContentVerdict::Pending).then_some(now),
                created_at: now,
                updated_at: now,
                checked_at: (f.verdict != ContentVerdict::Pending).then_some(now),
            })
            .collect();
        q::insert(c, &rows)
    }
}

/// One checked text, as admins list it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ContentCheckView {
    pub id: i64,
    #[schema(value_type = i64)]
    pub user_id: UserId,
    pub subject: ContentSubject,
    pub subject_id: i64,
    pub field: String,
    pub content: String,
    pub verdict: ContentVerdict,
    pub label: Option<i32>,
    pub created_at: chrono::DateTime<chrono::Utc>,
    pub checked_at: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Debug, Deserialize, IntoParams)]
pub struct ContentChecksQuery {
    /// `pending`, `review` or `risky` (or `pass`: rechecked and found fine).
    pub verdict: Option<String>,
    pub limit: Option<String>,
    pub cursor: Option<String>,
}

#[derive(Clone)]
pub struct ContentChecks {
    db: Db,
    mini: MiniClient,
    cache: Cache,
}

fn verdict_of(suggest: &str) -> Option<ContentVerdict> {
    ContentVerdict::parse(suggest).filter(|v| *v != ContentVerdict::Pending)
}

fn retry_at(now: NaiveDateTime, attempts: i32) -> NaiveDateTime {
    let secs = 60i64 << attempts.clamp(0, 6);
    now + chrono::Duration::seconds(secs.min(3600))
}

impl ContentChecks {
    pub fn new(db: Db, mini: MiniClient, cache: Cache) -> Self {
        Self { db, mini, cache }
    }

    /// The cache key remembering that WeChat passed `content` by `openid` in `scene`.
    fn passed_key(&self, openid: &str, scene: u8, content: &str) -> String {
        let mut h = Sha256::new();
        for part in [openid.as_bytes(), &[scene], content.as_bytes()] {
            h.update(u64::try_from(part.len()).unwrap_or(u64::MAX).to_be_bytes());
            h.update(part);
        }
        format!(
            "seccheck:{}:{}",
            self.mini.appid(),
            hex::encode(h.finalize())
        )
    }

    /// WeChat's verdict on one text (`None`: it could not answer), a recent pass remembered.
    async fn verdict(
        &self,
        openid: &str,
        scene: u8,
        content: &str,
        field: &'static str,
    ) -> Option<(ContentVerdict, Option<i32>)> {
        let key = self.passed_key(openid, scene, content);
        if let Ok(Some(_)) = self.cache.get(&key).await {
            return Some((ContentVerdict::Pass, None));
        }
        match self.mini.msg_sec_check(content, openid, scene).await {
            Ok(v) => {
                let verdict = verdict_of(&v.suggest)?;
                if verdict == ContentVerdict::Pass
                    && let Err(e) = self.cache.set_ex(&key, "pass", PASS_REMEMBERED).await
                {
                    tracing::debug!(error = %e, "could not remember a passed text");
                }
                Some((verdict, i32::try_from(v.label).ok()))
            }
            Err(e) => {
                tracing::warn!(error = %e, field, "content check unavailable; the text is checked again later");
                None
            }
        }
    }

    /// Checks the texts `author` is about to write (empty ones are skipped). `Err` names the
    /// first one WeChat found risky; the findings are to be recorded with the write.
    pub async fn check(
        &self,
        author: &CurrentUser,
        scene: u8,
        texts: &[(&'static str, &str)],
    ) -> Result<Findings, ContentRejected> {
        self.check_for(&author.row.openid, scene, texts).await
    }

    /// As [`ContentChecks::check`], for an author known by openid.
    pub async fn check_for(
        &self,
        openid: &str,
        scene: u8,
        texts: &[(&'static str, &str)],
    ) -> Result<Findings, ContentRejected> {
        let asks = texts.iter().filter_map(|(field, text)| {
            let text = text.trim();
            (!text.is_empty()).then(|| {
                let content: String = text.chars().take(MAX_CHARS).collect();
                async move {
                    let got = self.verdict(openid, scene, &content, field).await;
                    (*field, content, got)
                }
            })
        });
        let asks: Vec<_> = asks.collect();
        let fields: Vec<(&'static str, String)> = texts
            .iter()
            .filter(|(_, t)| !t.trim().is_empty())
            .map(|(f, t)| (*f, t.trim().chars().take(MAX_CHARS).collect()))
            .collect();
        let answers = match tokio::time::timeout(CHECK_BUDGET, futures::future::join_all(asks))
            .await
        {
            Ok(a) => a,
            Err(_) => {
                tracing::warn!("content check took too long; the texts are checked again later");
                fields.into_iter().map(|(f, c)| (f, c, None)).collect()
            }
        };
        let mut found = Findings::default();
        for (field, content, got) in answers {
            let (verdict, label) = got.unwrap_or((ContentVerdict::Pending, None));
            match verdict {
                ContentVerdict::Risky => return Err(ContentRejected { field }),
                ContentVerdict::Pass => {}
                ContentVerdict::Review | ContentVerdict::Pending => found.items.push(Finding {
                    field,
                    content,
                    verdict,
                    label,
                }),
            }
        }
        Ok(found)
    }

    /// Asks WeChat again about the pending texts due by `now`; how many it answered.
    pub async fn recheck_due(&self, now: NaiveDateTime) -> Result<usize, ContentCheckError> {
        let due = self
            .db
            .read(move |c| {
                let rows = q::due(c, now, RECHECK_BATCH)?;
                let mut out = Vec::with_capacity(rows.len());
                for r in rows {
                    if let Some(u) = campus_dal::users::find(c, r.user_id)? {
                        out.push((r, u.openid));
                    }
                }
                Ok::<_, ContentCheckError>(out)
            })
            .await?;
        let mut answered = 0;
        for (row, openid) in due {
            let scene = match row.subject {
                ContentSubject::Profile => 1,
                _ => 2,
            };
            let got = self.mini.msg_sec_check(&row.content, &openid, scene).await;
            let (id, attempts) = (row.id, row.attempts);
            match got
                .ok()
                .and_then(|v| Some((verdict_of(&v.suggest)?, v.label)))
            {
                Some((verdict, label)) => {
                    answered += 1;
                    if verdict != ContentVerdict::Pass {
                        tracing::warn!(check = id, user = %row.user_id, subject = %row.subject, %verdict, "text flagged on recheck");
                    }
                    let label = i32::try_from(label).ok();
                    self.db
                        .write(move |c| {
                            q::decide(c, id, verdict, label, time::now())
                                .map_err(ContentCheckError::from)
                        })
                        .await?;
                }
                None => {
                    self.db
                        .write(move |c| {
                            let now = time::now();
                            q::postpone(c, id, retry_at(now, attempts), now)
                                .map_err(ContentCheckError::from)
                        })
                        .await?;
                }
            }
        }
        Ok(answered)
    }

    /// `GET /admin/content-checks`: flagged and pending texts, newest first.
    pub async fn admin_list(
        &self,
        caller: &CurrentUser,
        query: ContentChecksQuery,
    ) -> Result<Page<ContentCheckView>, ContentCheckError> {
        caller.require(Role::Admin)?;
        let verdict = match query.verdict.as_deref() {
            None | Some("") => None,
            Some(v) => Some(ContentVerdict::parse(v).ok_or_else(|| {
                InvalidInput::new("verdict must be pending, pass, review or risky")
            })?),
        };
        let limit = page_limit_text(query.limit.as_deref())?;
        let before = id_cursor(query.cursor.as_deref())?;
        let rows = self
            .db
            .read(move |c| q::list(c, verdict, before, limit).map_err(ContentCheckError::from))
            .await?;
        Ok(into_page(
            rows,
            limit,
            |r| r.id,
            |r| ContentCheckView {
                id: r.id,
                user_id: r.user_id,
                subject: r.subject,
                subject_id: r.subject_id,
                field: r.field.clone(),
                content: r.content.clone(),
                verdict: r.verdict,
                label: r.label,
                created_at: time::to_utc(r.created_at),
                checked_at: r.checked_at.map(time::to_utc),
            },
        ))
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(metrics, "content_checks", RECHECK_EVERY, move || {
            let s = s.clone();
            async move { s.recheck_due(time::now()).await }
        })]
    }
}
