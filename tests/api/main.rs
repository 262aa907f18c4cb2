//! Black-box tests: a real `redis-server` started by the harness, the real
//! application on port 0, real HTTP, real keys and signatures. One binary, so
//! the suite links once.

mod helpers;

mod attacks;
mod balancer;
mod cli;
mod cluster;
mod concurrency;
mod cors;
mod errors;
mod faults;
mod fuzz_corpus;
mod hostile;
mod interop;
mod keys;
mod limits;
mod ops;
mod redeem;
mod replay;
mod secrets;
mod sentinel;
mod settings;
