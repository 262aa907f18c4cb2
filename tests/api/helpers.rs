//! The harness is the workspace's test-support crate (`tests/support`),
//! shared with the load generator's tests and the benches.

pub use token_endpoint_test_support::*;
