//! Where codes live between the frontend writing them and this service
//! taking them: Redis in production, an in-process map on the embedded
//! default. Both keep the same contract:
//!
//! - [`CodeStore::take`] checks the presented client, redirect URI and
//!   verifier against the record and, only if all pass, removes the record
//!   and leaves a "used" marker in the same atomic step. Of any number of
//!   concurrent takes of one code, exactly one gets the record.
//! - A failed check leaves the record in place.
//! - A take of a code that was already taken answers [`TakeOutcome::Replayed`]
//!   with the grant it produced, not [`TakeOutcome::Unknown`].
//! - A take of a code consumed by a take that then issued nothing (Redis:
//!   its `WAIT` fell short, answered 503) answers
//!   [`TakeOutcome::ConsumedWithoutTokens`], not a replay: there are no
//!   tokens to revoke.

mod cluster;
mod keys;
mod memory;
mod redis;
mod sentinel;

use std::time::Duration;

pub use self::cluster::slot_of as cluster_slot;
pub use self::keys::KeySpace;
pub use self::memory::MemoryStore;
pub use self::redis::{ConnectionMetrics, RedisSettings, RedisStore, RedisTls, RedisTopology};

use crate::contract::record::{BadRecord, CodeRecord, Mismatch, Presented};

/// One redemption attempt, as the store sees it.
#[derive(Debug)]
pub struct TakeRequest<'a> {
    pub code: &'a str,
    pub presented: Presented<'a>,
    /// What the used marker records if this take succeeds.
    pub grant: &'a GrantMarker,
}

/// Left behind by a successful take, under the code's used-marker key, for as
/// long as the tokens issued from the code live.
#[derive(Clone, PartialEq, Eq)]
pub struct GrantMarker {
    /// The `grant_id` claim of the tokens issued from the code.
    pub grant_id: String,
    /// When the last token issued from the code expires (seconds since
    /// epoch): the access token or the ID token, whichever lives longer.
    pub tokens_expire_at: u64,
    /// The client that redeemed the code.
    pub client_id: String,
    /// `BASE64URL(SHA-256(code_verifier))` of that redemption. A later
    /// presentation of the code is the owner's replay only if it
    /// authenticates as `client_id` and its verifier has this digest;
    /// anyone else holding a leaked code must not be able to revoke the
    /// grant, nor learn that the code was ever redeemed.
    pub verifier_digest: String,
}

impl std::fmt::Debug for GrantMarker {
    /// The digest is left out: not a secret, but no help in a log either.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GrantMarker")
            .field("grant_id", &self.grant_id)
            .field("tokens_expire_at", &self.tokens_expire_at)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

impl GrantMarker {
    /// `<grant_id> <expiry> <digest> <client_id>`: the client id last, since
    /// it may hold spaces (RFC 6749 Appendix A.1 allows any VSCHAR).
    fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.grant_id, self.tokens_expire_at, self.verifier_digest, self.client_id
        )
    }

    /// The marker of a take that consumed the code but issued no tokens:
    /// the same fields behind a `!`, which no grant id (base64url) starts
    /// with. The owner's retry then learns that nothing was issued rather
    /// than being taken for a replay.
    fn encode_without_tokens(&self) -> String {
        format!("!{}", self.encode())
    }

    /// A marker of this format, or of the earlier `<grant_id> <expiry>`
    /// (written before markers named their owner: such a marker has no
    /// owner, so no replay of it revokes anything).
    fn decode(raw: &str) -> Option<Self> {
        let mut parts = raw.splitn(4, ' ');
        let grant_id = parts.next()?.to_owned();
        let tokens_expire_at = parts.next()?.parse().ok()?;
        let verifier_digest = parts.next().unwrap_or_default().to_owned();
        let client_id = parts.next().unwrap_or_default().to_owned();
        Some(Self {
            grant_id,
            tokens_expire_at,
            client_id,
            verifier_digest,
        })
    }

    /// A used marker as read back: tokens issued, or none
    /// ([`Self::encode_without_tokens`]).
    fn decode_used(raw: &str) -> Option<UsedMarker> {
        Some(match raw.strip_prefix('!') {
            Some(rest) => UsedMarker::WithoutTokens(Self::decode(rest)?),
            None => UsedMarker::Granted(Self::decode(raw)?),
        })
    }

    /// How long the marker (or a revocation of its grant) must live: as long
    /// as the tokens it can revoke, and at least a second.
    pub fn ttl(&self, now: u64) -> Duration {
        Duration::from_secs(self.tokens_expire_at.saturating_sub(now).max(1))
    }

    /// Whether a presentation by `client_id` with a verifier of digest
    /// `verifier_digest` is the owner's: both match (the digest compared in
    /// constant time).
    pub fn is_owned_by(&self, client_id: &str, verifier_digest: &str) -> bool {
        use subtle::ConstantTimeEq;
        let digest_matches: bool = self
            .verifier_digest
            .as_bytes()
            .ct_eq(verifier_digest.as_bytes())
            .into();
        !self.verifier_digest.is_empty() && self.client_id == client_id && digest_matches
    }
}

/// What a used marker says about the take that left it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum UsedMarker {
    /// Tokens were issued from the code.
    Granted(GrantMarker),
    /// The code was consumed but no tokens were issued.
    WithoutTokens(GrantMarker),
}

impl UsedMarker {
    fn into_outcome(self) -> TakeOutcome {
        match self {
            Self::Granted(marker) => TakeOutcome::Replayed(marker),
            Self::WithoutTokens(marker) => TakeOutcome::ConsumedWithoutTokens(marker),
        }
    }
}

/// What a take found.
#[derive(Debug)]
pub enum TakeOutcome {
    /// The record, now removed from the store. The caller owns the grant.
    Taken(Box<CodeRecord>),
    /// A check failed; the record is still there.
    Mismatch(Mismatch),
    /// The code was taken before: this is a replay of the grant it produced.
    Replayed(GrantMarker),
    /// The code was taken before by a request that issued no tokens (it was
    /// answered 503: the take did not reach enough replicas). Not a replay:
    /// nothing to revoke. The marker names who took it.
    ConsumedWithoutTokens(GrantMarker),
    /// No such code: never issued, or expired.
    Unknown,
    /// The frontend stored something this service cannot read. The record has
    /// been removed, since no request could ever redeem it.
    BadRecord(BadRecord),
}

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

/// The store this process runs on.
pub enum CodeStore {
    Memory(MemoryStore),
    // Boxed: the store and its connection state dwarf the embedded handle.
    Redis(Box<RedisStore>),
}

impl CodeStore {
    /// Check the presented values against the record and, if they pass, take
    /// the record: exactly once, atomically.
    pub async fn take(&self, request: &TakeRequest<'_>) -> Result<TakeOutcome, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.take(request)),
            Self::Redis(store) => store.take(request).await,
        }
    }

    /// Undo the used marker a successful take of `code` left, once the
    /// record it took turns out unusable (its `resource` is not the
    /// client's): nothing was issued, so a retry must find an unknown code,
    /// not a replay. The record stays consumed: no request could redeem it.
    /// Best effort: the marker expires with the tokens' lifetime anyway.
    pub async fn forget_take(&self, code: &str) {
        match self {
            Self::Memory(store) => store.forget_take(code),
            Self::Redis(store) => store.forget_take(code).await,
        }
    }

    /// Record that every token carrying `grant_id` is revoked, until `ttl`
    /// from now (by then they have expired anyway).
    pub async fn revoke_grant(&self, grant_id: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => {
                store.revoke_grant(grant_id, ttl);
                Ok(())
            }
            Self::Redis(store) => store.revoke_grant(grant_id, ttl).await,
        }
    }

    /// Whether `grant_id` has been revoked (what a resource server asks).
    pub async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool, StoreError> {
        match self {
            Self::Memory(store) => Ok(store.is_grant_revoked(grant_id)),
            Self::Redis(store) => store.is_grant_revoked(grant_id).await,
        }
    }

    /// Store a code record the way the login frontend does: only if no code
    /// with this value exists, expiring after `ttl`.
    pub async fn insert(
        &self,
        code: &str,
        record: &CodeRecord,
        ttl: Duration,
    ) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.insert(code, record.to_json(), ttl),
            Self::Redis(store) => store.insert(code, &record.to_json(), ttl).await,
        }
    }

    /// Store raw bytes under a code, bypassing the contract: how tests and the
    /// `issue-code --raw` tool imitate a broken frontend.
    pub async fn insert_raw(&self, code: &str, raw: &str, ttl: Duration) -> Result<(), StoreError> {
        match self {
            Self::Memory(store) => store.insert(code, raw.to_owned(), ttl),
            Self::Redis(store) => store.insert(code, raw, ttl).await,
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_name_their_owner() {
        let marker = GrantMarker {
            grant_id: "g1".into(),
            tokens_expire_at: 1_700_000_900,
            client_id: "my client".into(),
            verifier_digest: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        };
        let decoded = GrantMarker::decode(&marker.encode()).unwrap();
        assert_eq!(decoded, marker);
        assert!(decoded.is_owned_by("my client", &marker.verifier_digest));
        assert!(!decoded.is_owned_by("my", &marker.verifier_digest));
        assert!(!decoded.is_owned_by("my client", "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cX"));
        // A marker of the earlier format has no owner.
        let old = GrantMarker::decode("g2 1700000900").unwrap();
        assert_eq!(old.grant_id, "g2");
        assert!(!old.is_owned_by("", ""));
        assert!(GrantMarker::decode("g3").is_none());
        assert!(!format!("{marker:?}").contains("E9Mel"));
    }

    #[test]
    fn a_marker_without_tokens_is_told_apart_and_old_markers_still_read() {
        let marker = GrantMarker {
            grant_id: "g1".into(),
            tokens_expire_at: 1_700_000_900,
            client_id: "my client".into(),
            verifier_digest: "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM".into(),
        };
        assert_eq!(
            GrantMarker::decode_used(&marker.encode_without_tokens()),
            Some(UsedMarker::WithoutTokens(marker.clone()))
        );
        assert_eq!(
            GrantMarker::decode_used(&marker.encode()),
            Some(UsedMarker::Granted(marker))
        );
        assert!(matches!(
            GrantMarker::decode_used("g2 1700000900"),
            Some(UsedMarker::Granted(_))
        ));
        assert_eq!(GrantMarker::decode_used("!g3"), None);
    }
}
