//! The official account's API: its own access token (its appid and secret, cached in
//! the shared cache under its appid, refreshed once on 40001/42001 as the
//! mini-program's is) and template messages (`cgi-bin/message/template/send`).

use std::time::Instant;

use serde::Deserialize;

use crate::cache::Cache;
use crate::telemetry::Metrics;
use crate::wechat::http::HttpSetupError;
use crate::wechat::mini::{MiniClient, MiniConfig, WechatError};

/// The official account's client: the mini-program client's token machinery, under the
/// account's credentials.
#[derive(Clone)]
pub struct MpClient {
    inner: MiniClient,
}

#[derive(Deserialize)]
struct SendBody {
    #[serde(default)]
    msgid: Option<serde_json::Value>,
}

impl MpClient {
    pub fn new(cfg: MiniConfig, cache: Cache, metrics: Metrics) -> Result<Self, HttpSetupError> {
        Ok(Self {
            inner: MiniClient::new(cfg, cache, metrics)?,
        })
    }

    /// `message/template/send`; the message id WeChat gave it. An HTTP 5xx is answered as
    /// [`WechatError::BadResponse`] (worth a retry), whatever its body says.
    pub async fn send_template(
        &self,
        body: &serde_json::Value,
    ) -> Result<Option<String>, WechatError> {
        let c = &self.inner;
        let _turn = c.turn("template_send").await;
        let started = Instant::now();
        let r = c
            .with_token(|token| async move {
                let resp = c
                    .http()
                    .post(c.url("/cgi-bin/message/template/send"))
                    .query(&[("access_token", token.as_str())])
                    .json(body)
                    .send()
                    .await?;
                if resp.status().is_server_error() {
                    return Err(WechatError::BadResponse(format!("HTTP {}", resp.status())));
                }
                let b: SendBody = MiniClient::json_or_error(resp).await?;
                Ok(b.msgid.map(|m| match m {
                    serde_json::Value::String(s) => s,
                    other => other.to_string(),
                }))
            })
            .await;
        c.record("template_send", started, &r);
        r
    }

    /// `cgi-bin/menu/create`: replaces the account's menu with `menu` (WeChat's menu JSON).
    pub async fn create_menu(&self, menu: &serde_json::Value) -> Result<(), WechatError> {
        self.inner
            .post_with_token(
                "menu_create",
                "/cgi-bin/menu/create",
                menu,
                |_: serde_json::Value| Ok(()),
            )
            .await
    }
}
