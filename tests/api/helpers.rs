//! The harness is the workspace's test-support crate (`tests/support`),
//! shared with the load generator's tests and the benches.

pub use token_endpoint_test_support::*;

/// One load test at a time in this binary. The load, fault and balancer
/// tests each saturate both cores; run side by side they starve each other,
/// and the rates and ratios they measure (one dead Cluster master must leave
/// the healthy ones at 0.8 of their rate or more) would measure the
/// neighbour instead. Held for the load phase of each.
#[cfg(feature = "slow-tests")]
pub static ONE_LOAD_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
