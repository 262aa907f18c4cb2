//! The `DPoP` header (RFC 9449 proofs): the input is a header value, and a
//! recipe for a structured mutation of a valid proof.
#![no_main]

libfuzzer_sys::fuzz_target!(|input: &[u8]| token_endpoint_fuzz_properties::dpop_header(input));
