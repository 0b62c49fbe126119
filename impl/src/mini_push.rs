//! The mini-program's message push (`/wechat/mini`): the URL set in the mini-program's
//! console, verified like the official account's (`wechat::push`: signature, freshness,
//! single-use pairs, safe mode with `WECHAT_MINI_AES_KEY`), in either data format the
//! console offers (XML or JSON). Events handled: `wxa_media_check`, WeChat's verdict on an
//! uploaded image. Anything else is acknowledged with `success` and left alone.

use serde::Deserialize;
use serde::de::DeserializeOwned;

use campus_dal::MediaCheck;

use crate::cache::Cache;
use crate::db::DbError;
use crate::uploads::{UploadError, Uploads};
use crate::wechat::pay::xml::MAX_BODY_BYTES;
use crate::wechat::push::{PushError, PushKeys, PushQuery, is_json};

/// The bare answer WeChat takes as "received".
const SUCCESS: &str = "success";

/// What every push says it is.
#[derive(Debug, Deserialize)]
struct Kind {
    #[serde(rename = "MsgType", default)]
    msg_type: String,
    #[serde(rename = "Event", default)]
    event: String,
}

/// The parts of a `wxa_media_check` event the server reads; the per-strategy `detail` list
/// and the labels are left to the logs.
#[derive(Debug, Deserialize)]
struct MediaCheckEvent {
    #[serde(default)]
    trace_id: String,
    #[serde(default)]
    errcode: i64,
    result: Option<MediaCheckResult>,
}

#[derive(Debug, Deserialize)]
struct MediaCheckResult {
    #[serde(default)]
    suggest: String,
}

/// Reads a push in either format into `T`: JSON, or XML whose root's children are the same
/// keys (nested elements for nested objects, a repeated element for a list).
fn decode<T: DeserializeOwned>(text: &str) -> Result<T, MiniPushError> {
    if text.len() > MAX_BODY_BYTES {
        return Err(MiniPushError::Malformed("message too large".into()));
    }
    if is_json(text.as_bytes()) {
        serde_json::from_str(text).map_err(|e| MiniPushError::Malformed(e.to_string()))
    } else {
        // quick-xml resolves only the predefined entities, so a DTD cannot pull anything
        // in; refusing one outright keeps this parser as strict as the official account's.
        if text.contains("<!DOCTYPE") {
            return Err(MiniPushError::Malformed("DOCTYPE refused".into()));
        }
        quick_xml::de::from_str(text).map_err(|e| MiniPushError::Malformed(e.to_string()))
    }
}

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
        let kind: Kind = decode(&opened.text)?;
        if kind.msg_type == "event" && kind.event == "wxa_media_check" {
            self.media_check(decode(&opened.text)?).await?;
        }
        Ok(SUCCESS.into())
    }

    async fn media_check(&self, msg: MediaCheckEvent) -> Result<(), MiniPushError> {
        let trace = msg.trace_id.as_str();
        if trace.is_empty() || trace.len() > 128 {
            return Err(MiniPushError::Malformed("no trace_id".into()));
        }
        if msg.errcode != 0 {
            // The check itself failed at WeChat: the image stays unshown.
            tracing::warn!(
                trace_id = trace,
                errcode = msg.errcode,
                "media check failed at WeChat"
            );
            return Ok(());
        }
        let suggest = msg.result.map(|r| r.suggest).unwrap_or_default();
        let verdict = match MediaCheck::parse(&suggest) {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// WeChat's documented example of the event in the XML format: a repeated `detail`,
    /// CDATA, numbers as text.
    const XML_EVENT: &str = r#"<xml>
<ToUserName><![CDATA[gh_38cc49f9733b]]></ToUserName>
<FromUserName><![CDATA[oH1fu0FdHqpToe2T6gBj0WyB8iS1]]></FromUserName>
<CreateTime>1626959646</CreateTime>
<MsgType><![CDATA[event]]></MsgType>
<Event><![CDATA[wxa_media_check]]></Event>
<appid><![CDATA[wx8f16a5e7d63fa0d5]]></appid>
<trace_id><![CDATA[60f96f1d-3845297a-1976a3ae]]></trace_id>
<version>2</version>
<detail><strategy><![CDATA[content_model]]></strategy><errcode>0</errcode><suggest><![CDATA[pass]]></suggest><label>100</label><prob>90</prob></detail>
<detail><strategy><![CDATA[keyword]]></strategy><errcode>0</errcode><suggest><![CDATA[risky]]></suggest><label>20006</label></detail>
<errcode>0</errcode>
<errmsg><![CDATA[ok]]></errmsg>
<result><suggest><![CDATA[risky]]></suggest><label>20006</label></result>
</xml>"#;

    #[test]
    fn both_formats_read_the_same() {
        let json = r#"{"ToUserName":"gh_38cc49f9733b","MsgType":"event","Event":"wxa_media_check",
            "trace_id":"60f96f1d-3845297a-1976a3ae","version":2,
            "detail":[{"strategy":"content_model","errcode":0,"suggest":"pass","label":100,"prob":90}],
            "errcode":0,"errmsg":"ok","result":{"suggest":"risky","label":20006}}"#;
        for text in [XML_EVENT, json] {
            let kind: Kind = decode(text).expect("kind");
            assert_eq!(
                (kind.msg_type.as_str(), kind.event.as_str()),
                ("event", "wxa_media_check")
            );
            let ev: MediaCheckEvent = decode(text).expect("event");
            assert_eq!(ev.trace_id, "60f96f1d-3845297a-1976a3ae");
            assert_eq!(ev.errcode, 0);
            assert_eq!(ev.result.expect("result").suggest, "risky");
        }
        let other: Kind = decode("<xml><MsgType>text</MsgType><Content>hi</Content></xml>")
            .expect("another message");
        assert_eq!(
            (other.msg_type.as_str(), other.event.as_str()),
            ("text", "")
        );
    }

    #[test]
    fn hostile_xml_is_refused() {
        for bad in [
            "<xml><trace_id>a</trace_id><trace_id>b</trace_id></xml>",
            "<!DOCTYPE x [<!ENTITY e SYSTEM \"file:///etc/passwd\">]><xml><trace_id>&e;</trace_id></xml>",
            "<xml><trace_id>a</trace_id>",
            "<xml><errcode>zero</errcode><trace_id>a</trace_id></xml>",
            "<xml><trace_id>&unknown;</trace_id></xml>",
        ] {
            assert!(decode::<MediaCheckEvent>(bad).is_err(), "{bad}");
        }
        let huge = format!(
            "<xml><trace_id>{}</trace_id></xml>",
            "a".repeat(MAX_BODY_BYTES)
        );
        assert!(decode::<Kind>(&huge).is_err());
    }
}
