//! Black-box tests: a real `redis-server` started by the harness, the real
//! application on port 0, real HTTP, real keys and signatures. One binary, so
//! the suite links once.
//!
//! The load, fault and topology tests (Cluster, Sentinel, HAProxy, faults
//! under load, exactly-once under concurrency) need the `slow-tests`
//! feature, on by default: `cargo test --no-default-features` is the fast set.

// Tests and benches may panic: that is how they fail (the workspace's lints
// forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod helpers;

mod attacks;
#[cfg(feature = "slow-tests")]
mod balancer;
mod cli;
#[cfg(feature = "slow-tests")]
mod cluster;
#[cfg(feature = "slow-tests")]
mod concurrency;
mod cors;
mod dpop;
mod errors;
#[cfg(feature = "slow-tests")]
mod faults;
mod hostile;
mod interop;
mod keys;
mod limits;
mod ops;
mod redeem;
mod replay;
mod secrets;
#[cfg(feature = "slow-tests")]
mod sentinel;
mod settings;
mod tls;
