//! Images users upload: avatars, and the runner's proof-of-delivery photo. Each is checked
//! by its bytes (JPEG or PNG, at most 2 MB, metadata stripped: [`image`]), stored in object
//! storage under the hash of what is stored, and sent to WeChat's content check
//! (`media_check_async`). Others see it only once WeChat's verdict `pass` arrived (a push to
//! `/wechat/mini`, [`crate::mini_push`]): then its URL is copied to the user or the order.
//! A check WeChat could not take is submitted again by the `media_checks` job, never
//! skipped.

pub mod image;

use std::time::Duration;

use bytes::Bytes;
use chrono::NaiveDateTime;
use serde::Serialize;
use sha2::{Digest, Sha256};
use utoipa::ToSchema;

use campus_dal::uploads::{self as q, NewUpload, Upload};
use campus_dal::{MediaCheck, OrderId, OrderStatus, UploadPurpose, time};

use crate::db::{Db, DbError};
use crate::jobs::{Job, every};
use crate::storage::{Storage, StorageError};
use crate::telemetry::Metrics;
use crate::users::CurrentUser;
use crate::wechat::mini::MiniClient;

use image::{CleanImage, ImageError};

/// How often the job looks for checks to submit again.
const RESUBMIT_EVERY: Duration = Duration::from_secs(60);
/// Checks submitted per tick.
const RESUBMIT_BATCH: i64 = 50;

#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("order not found")]
    OrderNotFound,
    /// A photo of an order that is not (or no longer) on its way with this runner.
    #[error("a delivery photo is taken while the order is accepted or picked up, not {0}")]
    WrongStatus(OrderStatus),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Db(#[from] DbError),
}

/// What an upload answers: where the image is, and whether others see it yet.
#[derive(Debug, Serialize, ToSchema)]
pub struct UploadView {
    pub url: String,
    /// `pending` until WeChat's content check answers; only `pass` is shown to others.
    pub check: MediaCheck,
    pub width: i32,
    pub height: i32,
}

#[derive(Clone)]
pub struct Uploads {
    db: Db,
    storage: Storage,
    mini: MiniClient,
}

/// When a failed submission is tried again: a minute, doubling, at most an hour.
fn retry_at(now: NaiveDateTime, attempts: i32) -> NaiveDateTime {
    let secs = 60i64 << attempts.clamp(0, 6);
    now + chrono::Duration::seconds(secs.min(3600))
}

fn to_i32(v: u32) -> i32 {
    i32::try_from(v).unwrap_or(i32::MAX)
}

impl Uploads {
    pub fn new(db: Db, storage: Storage, mini: MiniClient) -> Self {
        Self { db, storage, mini }
    }

    /// `PUT|POST /me/avatar`.
    pub async fn avatar(&self, user: &CurrentUser, body: Bytes) -> Result<UploadView, UploadError> {
        let img = image::clean(body)?;
        self.store(user, UploadPurpose::Avatar, None, img).await
    }

    /// `PUT|POST /orders/{id}/photo`: the assigned runner, before `deliver`.
    pub async fn delivery_photo(
        &self,
        user: &CurrentUser,
        order: OrderId,
        body: Bytes,
    ) -> Result<UploadView, UploadError> {
        let uid = user.id;
        let o = self
            .db
            .read(move |c| campus_dal::orders::find(c, order).map_err(UploadError::from))
            .await?
            // Someone else's order is as good as none: its existence is not told.
            .filter(|o| o.runner_id == Some(uid))
            .ok_or(UploadError::OrderNotFound)?;
        if !matches!(o.status, OrderStatus::Accepted | OrderStatus::PickedUp) {
            return Err(UploadError::WrongStatus(o.status));
        }
        let img = image::clean(body)?;
        self.store(user, UploadPurpose::DeliveryPhoto, Some(order), img)
            .await
    }

    async fn store(
        &self,
        user: &CurrentUser,
        purpose: UploadPurpose,
        order: Option<OrderId>,
        img: CleanImage,
    ) -> Result<UploadView, UploadError> {
        let key = format!(
            "{}.{}",
            hex::encode(Sha256::digest(&img.bytes)),
            img.kind.extension()
        );
        let size = img.bytes.len();
        self.storage
            .put(&key, img.bytes, img.kind.content_type())
            .await?;
        let url = self.storage.public_url(&key);
        let (uid, w, h) = (user.id, to_i32(img.width), to_i32(img.height));
        let row = {
            let (key, url) = (key.clone(), url.clone());
            self.db
                .write(move |c| -> Result<Upload, UploadError> {
                    let now = time::now();
                    Ok(q::insert(
                        c,
                        &NewUpload {
                            user_id: uid,
                            purpose,
                            order_id: order,
                            object_key: &key,
                            url: &url,
                            byte_size: i32::try_from(size).unwrap_or(i32::MAX),
                            width: w,
                            height: h,
                            check_status: MediaCheck::Pending,
                            submit_after: Some(now),
                            created_at: now,
                            updated_at: now,
                        },
                    )?)
                })
                .await?
        };
        // Submitted now; if WeChat cannot take it, the row says when to try again.
        self.submit(&row, &user.row.openid).await?;
        Ok(UploadView {
            url,
            check: MediaCheck::Pending,
            width: w,
            height: h,
        })
    }

    /// Sends one upload to WeChat's content check, recording the trace id, or when to try
    /// again.
    async fn submit(&self, up: &Upload, openid: &str) -> Result<(), UploadError> {
        let scene = match up.purpose {
            UploadPurpose::Avatar => 1,
            UploadPurpose::DeliveryPhoto => 2,
        };
        let (id, attempts) = (up.id, up.attempts);
        match self.mini.media_check_async(&up.url, openid, scene).await {
            Ok(trace) => {
                self.db
                    .write(move |c| {
                        q::submitted(c, id, &trace, time::now()).map_err(UploadError::from)
                    })
                    .await?;
            }
            Err(e) => {
                tracing::warn!(upload = %id, error = %e, "media check not submitted; retried later");
                self.db
                    .write(move |c| {
                        let now = time::now();
                        q::postpone(c, id, retry_at(now, attempts), now).map_err(UploadError::from)
                    })
                    .await?;
            }
        }
        Ok(())
    }

    /// WeChat's verdict on the check `trace_id` (a `wxa_media_check` push): recorded once;
    /// `pass` shows the image. False when no pending upload has that trace id.
    pub async fn record_verdict(
        &self,
        trace_id: &str,
        verdict: MediaCheck,
    ) -> Result<bool, UploadError> {
        if verdict == MediaCheck::Pending {
            return Ok(false);
        }
        let trace = trace_id.to_string();
        self.db
            .write_tx(move |c| -> Result<bool, UploadError> {
                let now = time::now();
                let Some(up) = q::record_verdict(c, &trace, verdict, now)? else {
                    return Ok(false);
                };
                if verdict == MediaCheck::Pass {
                    match (up.purpose, up.order_id) {
                        (UploadPurpose::Avatar, _) => {
                            q::show_avatar(c, up.user_id, &up.url, now)?;
                        }
                        (UploadPurpose::DeliveryPhoto, Some(order)) => {
                            q::show_delivery_photo(c, order, &up.url, now)?;
                        }
                        // The table's CHECK gives every photo an order.
                        (UploadPurpose::DeliveryPhoto, None) => {}
                    }
                } else {
                    tracing::warn!(upload = %up.id, user = %up.user_id, verdict = %verdict, "uploaded image not shown: content check");
                }
                Ok(true)
            })
            .await
    }

    /// Submits the checks due by `now` again (the job passes the time); how many.
    pub async fn resubmit_due(&self, now: NaiveDateTime) -> Result<usize, UploadError> {
        let due = self
            .db
            .read(move |c| {
                let rows = q::due_submissions(c, now, RESUBMIT_BATCH)?;
                let mut out = Vec::with_capacity(rows.len());
                for up in rows {
                    if let Some(u) = campus_dal::users::find(c, up.user_id)? {
                        out.push((up, u.openid));
                    }
                }
                Ok::<_, UploadError>(out)
            })
            .await?;
        let n = due.len();
        for (up, openid) in due {
            self.submit(&up, &openid).await?;
        }
        Ok(n)
    }

    pub(crate) fn jobs(&self, metrics: &Metrics) -> Vec<Job> {
        let s = self.clone();
        vec![every(metrics, "media_checks", RESUBMIT_EVERY, move || {
            let s = s.clone();
            async move { s.resubmit_due(time::now()).await }
        })]
    }
}
