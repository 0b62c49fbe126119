//! The official account's menu: `campus-errand mp-menu` sends `conf/mp_menu.json` (WeChat's
//! menu JSON) to `cgi-bin/menu/create` with the account's own access token (shared with the
//! running servers through the cache). A `click` button's `key` is the text command it
//! stands for; the account answers its tap as that text (`official_account`).

use std::path::Path;

use serde_json::Value;

use crate::cache::{Cache, CacheError};
use crate::settings::{Settings, SettingsError};
use crate::telemetry::Metrics;
use crate::wechat::http::HttpSetupError;
use crate::wechat::mini::{MiniConfig, WechatError};
use crate::wechat::mp::MpClient;

/// Longest `click` key WeChat takes, in bytes.
const MAX_KEY_BYTES: usize = 128;

#[derive(Debug, thiserror::Error)]
pub enum MenuError {
    #[error("cannot read {0}: {1}")]
    Read(String, std::io::Error),
    #[error("{0} is not JSON: {1}")]
    Json(String, serde_json::Error),
    #[error("{0}")]
    Invalid(String),
    #[error("the official account's {0} is not set")]
    NotConfigured(&'static str),
    #[error(transparent)]
    Settings(#[from] SettingsError),
    #[error(transparent)]
    Cache(#[from] CacheError),
    #[error(transparent)]
    Setup(#[from] HttpSetupError),
    #[error("WeChat refused the menu: {0}")]
    Wechat(#[from] WechatError),
}

/// A menu read and checked: the JSON as WeChat takes it, and the commands its buttons send.
#[derive(Debug)]
pub struct Menu {
    pub json: Value,
    pub click_keys: Vec<String>,
}

/// Reads the menu file; refuses one without buttons or with a `click` button whose key is
/// empty or too long (WeChat's own limits on names and counts are WeChat's to enforce).
pub fn load(path: &Path) -> Result<Menu, MenuError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| MenuError::Read(shown.clone(), e))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| MenuError::Json(shown.clone(), e))?;
    let buttons = json
        .get("button")
        .and_then(Value::as_array)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| {
            MenuError::Invalid(format!("{shown}: \"button\" must be a non-empty list"))
        })?;
    let mut click_keys = Vec::new();
    let subs = buttons.iter().flat_map(|b| {
        b.get("sub_button")
            .and_then(Value::as_array)
            .filter(|s| !s.is_empty())
            .map_or_else(|| vec![b], |s| s.iter().collect())
    });
    for b in subs {
        if b.get("type").and_then(Value::as_str) != Some("click") {
            continue;
        }
        match b.get("key").and_then(Value::as_str).map(str::trim) {
            Some(k) if !k.is_empty() && k.len() <= MAX_KEY_BYTES => click_keys.push(k.to_string()),
            _ => {
                return Err(MenuError::Invalid(format!(
                    "{shown}: a click button needs a key of 1 to {MAX_KEY_BYTES} bytes (the command it sends)"
                )));
            }
        }
    }
    Ok(Menu { json, click_keys })
}

/// Creates the menu at WeChat with the account's credentials (`WECHAT_MP_APPID`,
/// `WECHAT_MP_SECRET`).
pub async fn create(settings: &Settings, menu: &Menu) -> Result<(), MenuError> {
    let appid = settings
        .wechat_mp_appid
        .clone()
        .ok_or(MenuError::NotConfigured("WECHAT_MP_APPID"))?;
    let secret = settings
        .wechat_mp_secret
        .clone()
        .ok_or(MenuError::NotConfigured("WECHAT_MP_SECRET"))?;
    let mini = settings.resolve()?.mini;
    let cache = Cache::connect(settings.redis_url.as_deref()).await?;
    let client = MpClient::new(
        MiniConfig {
            appid,
            secret,
            api_base: mini.api_base,
            extra_root: mini.extra_root,
            timeout: mini.timeout,
        },
        cache,
        Metrics::default(),
    )?;
    client.create_menu(&menu.json).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("menu.json");
        std::fs::write(&p, text).expect("write");
        (dir, p)
    }

    #[test]
    fn the_shipped_menu_loads() {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../conf/mp_menu.json");
        let m = load(&p).expect("conf/mp_menu.json");
        assert!(
            m.click_keys.iter().any(|k| k == "orders"),
            "{:?}",
            m.click_keys
        );
    }

    #[test]
    fn bad_menus_are_refused() {
        for bad in [
            "not json",
            "{}",
            r#"{"button": []}"#,
            r#"{"button": [{"type": "click", "name": "x"}]}"#,
            r#"{"button": [{"name": "m", "sub_button": [{"type": "click", "name": "x", "key": " "}]}]}"#,
        ] {
            let (_d, p) = write(bad);
            assert!(load(&p).is_err(), "{bad}");
        }
    }
}
