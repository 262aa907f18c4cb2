//! A client's allowed CORS origin: normalization to what browsers send.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| token_endpoint_fuzz_properties::origin(input));
