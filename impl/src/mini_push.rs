//! The mini-program's message push (`/wechat/mini`): the URL set in the mini-program's
//! console, verified like the official account's (`wechat::push`: signature, freshness,
//! single-use pairs, safe mode with `WECHAT_MINI_AES_KEY`). Its data format must be set to
//! JSON there. Events handled: `wxa_media_check`, WeChat's verdict on an uploaded image.
//! Anything else is acknowledged with `success` and left alone.

use serde_json::Value;

use campus_dal::MediaCheck;

use crate::cache::Cache;
use crate::db::DbError;
use crate::uploads::{UploadError, Uploads};
use crate::wechat::push::{PushError, PushKeys, PushQuery, is_json};

/// The bare answer WeChat takes as "received".
const SUCCESS: &str = "success";

#[derive(Debug, thiserror::Error)]
pub enum MiniPushError {
    #[error("the mini-program's message push is not configured")]
    NotConfigured,
    #[error(transparent)]
    Push(#[from] PushError),
    #[error("malformed message: {0}")]
    Malformed(String),
    #[error(transparent)]
    Upload(#[from] UploadError),
    #[error(transparent)]
    Db(#[from] DbError),
}

#[derive(Clone)]
pub struct MiniPush {
    cache: Cache,
    /// `None`: `WECHAT_MINI_TOKEN` unset.
    keys: Option<PushKeys>,
    uploads: Uploads,
}

impl MiniPush {
    pub fn new(cache: Cache, keys: Option<PushKeys>, uploads: Uploads) -> Self {
        Self {
            cache,
            keys,
            uploads,
        }
    }

    fn keys(&self) -> Result<&PushKeys, MiniPushError> {
        self.keys.as_ref().ok_or(MiniPushError::NotConfigured)
    }

    /// `GET /wechat/mini`: the console's URL check.
    pub fn echo(&self, q: &PushQuery) -> Result<String, MiniPushError> {
        Ok(self.keys()?.echo(q)?)
    }

    /// `POST /wechat/mini`.
    pub async fn message(&self, q: &PushQuery, body: &[u8]) -> Result<String, MiniPushError> {
        let opened = self.keys()?.open(&self.cache, "mini", q, body).await?;
        if !is_json(opened.text.as_bytes()) {
            return Err(MiniPushError::Malformed(
                "XML pushes are not taken here: set the message push's data format to JSON".into(),
            ));
        }
        let msg: Value = serde_json::from_str(&opened.text)
            .map_err(|e| MiniPushError::Malformed(e.to_string()))?;
        let field = |k: &str| msg.get(k).and_then(Value::as_str).unwrap_or("");
        if field("MsgType") == "event" && field("Event") == "wxa_media_check" {
            self.media_check(&msg).await?;
        }
        Ok(SUCCESS.into())
    }

    async fn media_check(&self, msg: &Value) -> Result<(), MiniPushError> {
        let trace = msg
            .get("trace_id")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(|| MiniPushError::Malformed("no trace_id".into()))?;
        if msg.get("errcode").and_then(Value::as_i64).unwrap_or(0) != 0 {
            // The check itself failed at WeChat: the image stays unshown.
            tracing::warn!(trace_id = trace, errcode = ?msg.get("errcode"), "media check failed at WeChat");
            return Ok(());
        }
        let suggest = msg
            .pointer("/result/suggest")
            .and_then(Value::as_str)
            .unwrap_or("");
        let verdict = match MediaCheck::parse(suggest) {
            Some(v) if v != MediaCheck::Pending => v,
            _ => {
                return Err(MiniPushError::Malformed(format!(
                    "result.suggest {suggest:?} is not pass, risky or review"
                )));
            }
        };
        if !self.uploads.record_verdict(trace, verdict).await? {
            tracing::info!(
                trace_id = trace,
                "media check verdict for no pending upload (repeated, or not ours)"
            );
        }
        Ok(())
    }
}
