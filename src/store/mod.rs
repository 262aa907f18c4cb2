//! Where codes live between the frontend writing them and this service
//! taking them: Redis in production, an in-process map on the embedded
//! default. Both keep the same contract:
//!
//! - [`CodeStore::take`] runs the grant's validate step (client, redirect
//!   URI, PKCE: [`TakeRequest::validate`]) on the record and, only if it
//!   passes, removes the record and leaves a "used" marker in the same
//!   atomic step. Of any number of concurrent takes of one code, exactly one
//!   gets the record.
//! - A refused take leaves the record in place.
//! - A take of a code that was already taken answers [`TakeOutcome::Replayed`]
//!   with the grant it produced, not [`TakeOutcome::Unknown`].
//! - A take of a code consumed by a take that then issued nothing (Redis:
//!   its `WAIT` fell short, answered 503) answers
//!   [`TakeOutcome::ConsumedWithoutTokens`], not a replay: there are no
//!   tokens to revoke.
//!
//! # Layout
//! By concern: what a kind of stored state means is written once, and each
//! store supplies only the primitives it is made of.
//!
//! - `codes`: authorization codes. The take's request, outcome and used
//!   marker, and the take itself, once, over a trait of primitives.
//! - `memory`: the embedded store: a map, and its primitives.
//! - `redis`: the Redis store: connections, its primitives, and what only
//!   Redis needs around a take (`WAIT` for the replicas and the put-back
//!   of a take short of them; behind Sentinel, the miss confirmed).
//! - `commands`: every command the service sends to Redis, with how Cluster
//!   routes it and when it is needed; the Cluster routing, the start-up
//!   probe and the documented ACL user follow from it.
//! - `cluster`: Redis Cluster routing, by that table.
//! - `sentinel`: what the sentinels say beyond the master's address.
//! - `keys`: the key names, all under one prefix.
//!
//! # Room to grow
//! Each new kind of state is a concern of its own beside `codes`: a module
//! with its sequence and its trait of primitives, implemented in `memory`
//! and `redis`, its keys in `keys`, and its commands in `commands`.
//!
//! - Refresh-token families go in `families`: one key per family, hash-tagged
//!   by its grant id like the grant's revocation key
//!   (`<prefix>refresh:{<grant_id>}` beside `<prefix>revoked-grant:{<grant_id>}`),
//!   so that rotating a token, and revoking its family and its grant, is one
//!   `MULTI` on one Cluster slot.
//! - DPoP proof replay rides on the take: a request's proof is claimed
//!   ([`TakeRequest::proof`]) with the record's read, in the same round trip
//!   (`SET <prefix>dpop:<key> 1 EX <window> NX`; on the embedded store an
//!   insert-if-absent with an expiry, in a bounded map), and a proof claimed
//!   before refuses the take before anything is consumed. A refresh grant
//!   will claim it the same way with its family's read.

mod cluster;
mod codes;
mod commands;
mod keys;
mod memory;
mod redis;
mod sentinel;

use std::time::Duration;

pub use self::cluster::slot_of as cluster_slot;
pub use self::codes::{GrantMarker, TakeOutcome, TakeRequest};
pub use self::commands::{acl_rules, Command, Needed, Route, COMMANDS};
pub use self::keys::KeySpace;
pub use self::memory::MemoryStore;
pub use self::redis::{ConnectionMetrics, RedisSettings, RedisStore, RedisTls, RedisTopology};

use crate::contract::record::CodeRecord;
use crate::dpop::ReplayClaim;

/// The store could not answer: Redis unreachable, timed out or refusing.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("code store unavailable: {0}")]
    Unavailable(String),
    #[error("code store timed out after {0:?}")]
    Timeout(Duration),
    #[error("an authorization code with this value already exists")]
    Conflict,
    /// No sentinel knows the master name the service asked for.
    #[error("no sentinel knows a master by this name: {0}")]
    UnknownSentinelMaster(String),
}

/// What a store operation answers: its value, or why the store could not.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// The store this process runs on.
pub enum CodeStore {
    Memory(MemoryStore),
    // Boxed: the store and its connection state dwarf the embedded handle.
    Redis(Box<RedisStore>),
}

/// Forward a call to the store in use. Both stores answer the same calls
/// with the same signatures, so an operation is written once here, not
/// once per store.
macro_rules! on_either {
    ($self:expr, $store:ident => $call:expr) => {
        match $self {
            CodeStore::Memory($store) => $call,
            CodeStore::Redis($store) => $call,
        }
    };
}

impl CodeStore {
    /// Run the request's validate step on the record and, if it passes, take
    /// the record: exactly once, atomically (the one sequence of `codes`).
    pub async fn take(&self, request: &TakeRequest<'_>) -> Result<TakeOutcome> {
        on_either!(self, store => store.take(request).await)
    }

    /// Undo the used marker a successful take of `code` left, once the
    /// record it took turns out unusable (its `resource` is not the
    /// client's): nothing was issued, so a retry must find an unknown code,
    /// not a replay. The record stays consumed: no request could redeem it.
    /// Best effort: the marker expires with the tokens' lifetime anyway.
    pub async fn forget_take(&self, code: &str) {
        on_either!(self, store => store.forget_take(code).await)
    }

    /// Forget a DPoP proof's replay key that a take claimed, best effort:
    /// its request was answered 503 and issued nothing, so the client's
    /// retry may present the proof again (RFC 9449 clients make a new one;
    /// one that resends the request as it was still succeeds).
    pub async fn release_proof(&self, claim: &ReplayClaim) {
        on_either!(self, store => store.release_proof(claim).await)
    }

    /// Record that every token carrying `grant_id` is revoked, until `ttl`
    /// from now (by then they have expired anyway).
    pub async fn revoke_grant(&self, grant_id: &str, ttl: Duration) -> Result<()> {
        on_either!(self, store => store.revoke_grant(grant_id, ttl).await)
    }

    /// Whether `grant_id` has been revoked (what a resource server asks).
    pub async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool> {
        on_either!(self, store => store.is_grant_revoked(grant_id).await)
    }

    /// Store a code record the way the login frontend does: only if no code
    /// with this value exists, expiring after `ttl`.
    pub async fn insert(&self, code: &str, record: &CodeRecord, ttl: Duration) -> Result<()> {
        self.insert_raw(code, &record.to_json(), ttl).await
    }

    /// Store raw bytes under a code, bypassing the contract: how tests and the
    /// `issue-code --raw` tool imitate a broken frontend.
    pub async fn insert_raw(&self, code: &str, raw: &str, ttl: Duration) -> Result<()> {
        on_either!(self, store => store.insert(code, raw, ttl).await)
    }

    /// The same store for another worker thread. The embedded map is
    /// shared; a Redis store gets its own connection, opened on first use on
    /// the runtime that uses it.
    pub fn for_worker(&self) -> Self {
        match self {
            Self::Memory(store) => Self::Memory(store.clone()),
            Self::Redis(store) => Self::Redis(Box::new(store.for_worker())),
        }
    }

    /// Redis connection gauges; none for the embedded store.
    pub fn connection_metrics(&self) -> Option<&ConnectionMetrics> {
        match self {
            Self::Memory(_) => None,
            Self::Redis(redis) => Some(redis.connection_metrics()),
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Memory(_) => "embedded",
            Self::Redis(_) => "redis",
        }
    }
}
