//! An official-account push in safe mode: the signature is made to match, so the input
//! reaches the AES-CBC decryption, the length and appid checks and the XML reader.
#![no_main]

use campus_impl::wechat::mp_crypto::MpCrypto;
use campus_impl::wechat::mp_xml::parse_message;
use libfuzzer_sys::fuzz_target;

// WeChat's documented example key (43 characters) and a made-up appid.
const AES_KEY: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

fuzz_target!(|data: &[u8]| {
    let _ = parse_message(data);
    let Ok(encrypt) = std::str::from_utf8(data) else {
        return;
    };
    let crypto = MpCrypto::new("fuzztoken", AES_KEY, "wx5823bf96d3bd56c7").expect("account");
    let sig = crypto.msg_signature("1409304348", "xxxxxx", encrypt);
    if let Ok(inner) = crypto.decrypt(&sig, "1409304348", "xxxxxx", encrypt) {
        let _ = parse_message(inner.as_bytes());
    }
});
