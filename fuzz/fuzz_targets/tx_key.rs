#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &str| metaq_fuzz::tx_key(text));
