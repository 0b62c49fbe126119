//! A payment notify as posted to /api/v1/pay/notify, through every check the product makes.
#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "support.rs"]
mod support;

fuzz_target!(|data: &[u8]| {
    for cfg in support::configs() {
        let _ = cfg.verify_pay_notify(data);
    }
});
