//! The code-record parser and its checks: the input is a stored code record.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| token_endpoint_fuzz_properties::code_record(input));
