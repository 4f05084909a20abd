#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| metaq_fuzz::zk_broker_uri(data));
