//! The client-authentication header parser: the input is an `Authorization` header.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| token_endpoint_fuzz_properties::auth_header(input));
