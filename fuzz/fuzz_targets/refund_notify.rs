//! A refund notify as posted to /api/v1/pay/refund-notify (req_info: AES-256-ECB under
//! md5(key)), and the decryptor alone on any text.
#![no_main]

use campus_impl::wechat::pay::notify::decrypt_req_info;
use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    for cfg in support::configs() {
        let _ = cfg.decrypt_refund_notify(data);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = decrypt_req_info(text, support::KEY);
    }
});
