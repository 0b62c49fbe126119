//! The merchant the notify targets verify against: both sign types.

use campus_impl::wechat::pay::{ClientIdentity, PayConfig, SignType};

pub const KEY: &str = "192006250b4c09247ec02edce69f6a2d";

pub fn configs() -> [PayConfig; 2] {
    [SignType::Md5, SignType::HmacSha256].map(|sign_type| PayConfig {
        appid: "wxd930ea5d5a258f4f".into(),
        mch_id: "10000100".into(),
        key: secrecy::SecretString::from(KEY),
        sign_type,
        api_base: "https://api.mch.weixin.qq.com".into(),
        extra_root: None,
        timeout: std::time::Duration::from_secs(5),
        identity: ClientIdentity::None,
    })
}
