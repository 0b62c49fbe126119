//! The flat Pay v2 XML reader and the signature check over whatever it returns.
#![no_main]

use campus_impl::wechat::pay::{sign, xml};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(fields) = xml::parse_flat(data) {
        let _ = sign::verify(&fields, "192006250b4c09247ec02edce69f6a2d");
        // What we write must read back the same.
        let again = xml::parse_flat(xml::to_xml(&fields).as_bytes()).expect("own XML reads back");
        assert_eq!(again, fields);
    }
});
