//! The form parser and request validation: the input is a request body.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| token_endpoint_fuzz_properties::form(input));
