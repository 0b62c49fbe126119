//! `getwxacodeunlimit`: the mini-program code for a page and a `scene` string.
//!
//! Parameters are checked here, before any call, against WeChat's documented limits, so
//! that bad input costs no quota and comes back as a validation error. WeChat answers an
//! image on success and `{"errcode", "errmsg"}` JSON on failure, both with HTTP 200: the
//! Content-Type (then the image's magic bytes) decides, so error JSON is never mistaken
//! for an image.

use bytes::Bytes;
use reqwest::header::CONTENT_TYPE;
use serde_json::json;

use super::mini::{MiniClient, WechatError};

/// WeChat's default and limits for `width`, in pixels.
pub const DEFAULT_WIDTH: u32 = 430;
pub const WIDTH_RANGE: std::ops::RangeInclusive<u32> = 280..=1280;
const MAX_SCENE_CHARS: usize = 32;
const MAX_PAGE_CHARS: usize = 256;
/// Codes are a few tens of kilobytes; anything far larger is not one.
const MAX_IMAGE_BYTES: u64 = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WxaCodeError {
    /// Input that WeChat would refuse; no call was made.
    #[error("{0}")]
    Invalid(String),
    #[error("WeChat rejected the scene (errcode 40129 or 40169)")]
    SceneRejected,
    #[error(
        "the page is not in the published mini-program (errcode 41030); publish it, or pass check_path=false"
    )]
    PageNotPublished,
    #[error("WeChat's rate limit for mini-program codes was hit (errcode {0})")]
    RateLimited(i64),
    #[error(transparent)]
    Wechat(WechatError),
}

impl From<WechatError> for WxaCodeError {
    fn from(e: WechatError) -> Self {
        match e {
            // 40129: "invalid scene"; 40169: "invalid length for scene".
            WechatError::Api {
                code: 40129 | 40169,
                ..
            } => WxaCodeError::SceneRejected,
            WechatError::Api { code: 41030, .. } => WxaCodeError::PageNotPublished,
            WechatError::RateLimited(code) => WxaCodeError::RateLimited(code),
            other => WxaCodeError::Wechat(other),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EnvVersion {
    Release,
    Trial,
    Develop,
}

impl EnvVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            EnvVersion::Release => "release",
            EnvVersion::Trial => "trial",
            EnvVersion::Develop => "develop",
        }
    }
}

/// The image formats WeChat returns: JPEG by default, PNG for transparent codes (and the
/// simulator's PNG).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageFormat {
    Png,
    Jpeg,
}

impl ImageFormat {
    pub const ALL: [ImageFormat; 2] = [ImageFormat::Png, ImageFormat::Jpeg];

    /// By magic bytes, which unlike a header cannot disagree with the data.
    pub fn sniff(b: &[u8]) -> Option<Self> {
        if b.starts_with(b"\x89PNG\r\n\x1a\n") {
            Some(ImageFormat::Png)
        } else if b.starts_with(&[0xFF, 0xD8, 0xFF]) {
            Some(ImageFormat::Jpeg)
        } else {
            None
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageFormat::Png => "png",
            ImageFormat::Jpeg => "jpg",
        }
    }

    pub fn from_extension(ext: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.extension() == ext)
    }

    pub fn content_type(self) -> &'static str {
        match self {
            ImageFormat::Png => "image/png",
            ImageFormat::Jpeg => "image/jpeg",
        }
    }
}

pub struct WxaImage {
    pub bytes: Bytes,
    pub format: ImageFormat,
}

/// Parameters that passed validation; the only way to reach `getwxacodeunlimit`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WxaCodeParams {
    scene: String,
    page: String,
    width: u32,
    env_version: EnvVersion,
    check_path: bool,
}

/// The characters WeChat allows in `scene` (no `%`: it cannot carry URL-encoding).
fn scene_char_ok(c: char) -> bool {
    c.is_ascii_alphanumeric() || "!#$&'()*+,/:;=?@-._~".contains(c)
}

impl WxaCodeParams {
    /// Raw request values in, validated parameters out. Absent values take WeChat's
    /// defaults (page: the home page, width 430, release, check_path on).
    pub fn parse(
        scene: Option<&str>,
        page: Option<&str>,
        width: Option<&str>,
        env_version: Option<&str>,
        check_path: Option<&str>,
    ) -> Result<Self, WxaCodeError> {
        let invalid = |m: &str| WxaCodeError::Invalid(m.to_string());
        let scene = scene.unwrap_or_default();
        if scene.is_empty() {
            return Err(invalid("scene is required"));
        }
        if scene.chars().count() > MAX_SCENE_CHARS {
            return Err(invalid("scene must be at most 32 characters"));
        }
        if !scene.chars().all(scene_char_ok) {
            return Err(invalid(
                "scene may only use 0-9 A-Z a-z and !#$&'()*+,/:;=?@-._~",
            ));
        }
        let page = page.unwrap_or_default();
        if page.starts_with('/') {
            return Err(invalid(
                "page must not start with '/' (e.g. pages/index/index)",
            ));
        }
        if page.contains(['?', '#']) {
            return Err(invalid(
                "page must not carry a query; put parameters in scene",
            ));
        }
        if page.len() > MAX_PAGE_CHARS
            || !page
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-./".contains(c))
        {
            return Err(invalid(
                "page must be a mini-program path of letters, digits and _-./",
            ));
        }
        let width = match width {
            None => DEFAULT_WIDTH,
            Some(w) => w
                .trim()
                .parse::<u32>()
                .ok()
                .filter(|w| WIDTH_RANGE.contains(w))
                .ok_or_else(|| invalid("width must be a whole number from 280 to 1280"))?,
        };
        let env_version = match env_version {
            None | Some("release") => EnvVersion::Release,
            Some("trial") => EnvVersion::Trial,
            Some("develop") => EnvVersion::Develop,
            Some(_) => return Err(invalid("env_version must be release, trial or develop")),
        };
        let check_path = match check_path {
            None | Some("true" | "1") => true,
            Some("false" | "0") => false,
            Some(_) => return Err(invalid("check_path must be true or false")),
        };
        Ok(Self {
            scene: scene.to_string(),
            page: page.to_string(),
            width,
            env_version,
            check_path,
        })
    }

    pub fn scene(&self) -> &str {
        &self.scene
    }

    pub fn page(&self) -> &str {
        &self.page
    }

    pub fn width(&self) -> u32 {
        self.width
    }

    pub fn env_version(&self) -> EnvVersion {
        self.env_version
    }

    pub fn check_path(&self) -> bool {
        self.check_path
    }

    /// Exactly what is sent to WeChat. Drawing options are pinned (black lines, opaque
    /// background) so that equal parameters always mean an equal picture.
    pub fn body(&self) -> serde_json::Value {
        let mut b = json!({
            "scene": self.scene,
            "width": self.width,
            "check_path": self.check_path,
            "env_version": self.env_version.as_str(),
            "auto_color": false,
            "line_color": {"r": 0, "g": 0, "b": 0},
            "is_hyaline": false,
        });
        // No page at all means the home page; an empty string is an invalid page.
        if !self.page.is_empty() {
            b["page"] = json!(self.page);
        }
        b
    }
}

impl MiniClient {
    /// `POST /wxa/getwxacodeunlimit` with the shared access token (refreshed once on 40001).
    pub async fn get_unlimited_code(
        &self,
        params: &WxaCodeParams,
    ) -> Result<WxaImage, WxaCodeError> {
        let body = params.body();
        let _turn = self.turn("getwxacodeunlimit").await;
        let started = std::time::Instant::now();
        let r = self
            .with_token(|token| {
                let body = &body;
                async move {
                    let resp = self
                        .http()
                        .post(self.url("/wxa/getwxacodeunlimit"))
                        .query(&[("access_token", token.as_str())])
                        .json(body)
                        .send()
                        .await?;
                    let content_type = resp
                        .headers()
                        .get(CONTENT_TYPE)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_ascii_lowercase();
                    if !content_type.starts_with("image/") {
                        // WeChat's error JSON (`application/json` or `text/plain`): an
                        // errcode becomes its typed error; anything else is unexpected.
                        let _: serde_json::Value = Self::json_or_error(resp).await?;
                        return Err(WechatError::BadResponse(format!(
                            "getwxacodeunlimit answered {content_type:?} without an image or errcode"
                        )));
                    }
                    if !resp.status().is_success() {
                        return Err(WechatError::BadResponse(format!(
                            "getwxacodeunlimit answered HTTP {}",
                            resp.status()
                        )));
                    }
                    if resp.content_length().is_some_and(|n| n > MAX_IMAGE_BYTES) {
                        return Err(WechatError::BadResponse("image too large".into()));
                    }
                    let bytes = resp.bytes().await?;
                    let format = ImageFormat::sniff(&bytes).ok_or_else(|| {
                        WechatError::BadResponse(format!(
                            "{content_type} body is neither PNG nor JPEG"
                        ))
                    })?;
                    Ok(WxaImage { bytes, format })
                }
            })
            .await;
        self.record("getwxacodeunlimit", started, &r);
        r.map_err(WxaCodeError::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(scene: &str, page: &str, width: Option<&str>) -> Result<WxaCodeParams, WxaCodeError> {
        WxaCodeParams::parse(Some(scene), Some(page), width, None, None)
    }

    #[test]
    fn accepts_what_wechat_accepts() {
        let p = parse("id=42&b=5", "pages/index/index", None).expect("valid");
        assert_eq!(p.width(), DEFAULT_WIDTH);
        assert_eq!(p.env_version(), EnvVersion::Release);
        assert!(p.check_path());
        parse("a-Z_9!#$&'()*+,/:;=?@.~", "", Some("280")).expect("every allowed char");
        parse(&"x".repeat(32), "pages/a", Some("1280")).expect("32 chars");
        let p = WxaCodeParams::parse(Some("s"), None, None, Some("develop"), Some("false"))
            .expect("valid");
        assert_eq!(p.body()["env_version"], "develop");
        assert_eq!(p.body()["check_path"], false);
        assert!(p.body().get("page").is_none(), "no page = home page");
    }

    #[test]
    fn rejects_what_wechat_rejects() {
        for (scene, page, width) in [
            ("", "pages/a", None),
            (&"x".repeat(33)[..], "pages/a", None),
            ("a%20b", "pages/a", None),
            ("a b", "pages/a", None),
            ("中文", "pages/a", None),
            ("ok", "/pages/a", None),
            ("ok", "pages/a?x=1", None),
            ("ok", "pages/a b", None),
            ("ok", "pages/a", Some("279")),
            ("ok", "pages/a", Some("1281")),
            ("ok", "pages/a", Some("wide")),
            ("ok", "pages/a", Some("-1")),
        ] {
            assert!(
                matches!(parse(scene, page, width), Err(WxaCodeError::Invalid(_))),
                "{scene:?} {page:?} {width:?}"
            );
        }
        assert!(WxaCodeParams::parse(Some("s"), None, None, Some("beta"), None).is_err());
        assert!(WxaCodeParams::parse(Some("s"), None, None, None, Some("yes")).is_err());
    }

    #[test]
    fn sniffs_images() {
        assert_eq!(
            ImageFormat::sniff(b"\x89PNG\r\n\x1a\nrest"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            ImageFormat::sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(ImageFormat::sniff(br#"{"errcode":40169}"#), None);
    }

    #[test]
    fn typed_errors() {
        let api = |code| WechatError::Api {
            code,
            msg: String::new(),
        };
        for code in [40129, 40169] {
            assert!(matches!(
                WxaCodeError::from(api(code)),
                WxaCodeError::SceneRejected
            ));
        }
        assert!(matches!(
            WxaCodeError::from(api(41030)),
            WxaCodeError::PageNotPublished
        ));
        assert!(matches!(
            WxaCodeError::from(WechatError::RateLimited(45009)),
            WxaCodeError::RateLimited(45009)
        ));
    }
}
