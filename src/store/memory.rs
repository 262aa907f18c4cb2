//! The embedded store: an in-process map with the same exactly-once contract
//! as Redis, for running without one. Expiry is checked on every access and
//! swept periodically so memory stays bounded by the TTLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::codes::{self, Consumed, Primitives, Read};
use super::{Result, StoreError, TakeOutcome, TakeRequest};
use crate::dpop::ReplayClaim;

/// The most DPoP replay keys held at once. Each lives about a minute
/// (the proof's `iat` window), so this serves some 15,000 proofs a second,
/// more than the embedded store is for, in about 66 MiB (docs/dpop.md). Past it, a proof is
/// answered 503 rather than a replay key forgotten early, which would let
/// a proof be accepted twice.
pub const MAX_LIVE_PROOFS: usize = 1_000_000;

enum Slot {
    /// A code the frontend wrote, not yet redeemed: the raw record, shared
    /// so that the take's read and consume hand it out without copying it.
    Code(Arc<[u8]>),
    /// A redeemed code: its used marker, encoded.
    Used(String),
}

struct Entry {
    slot: Slot,
    expires_at: Instant,
}

/// Codes and used markers share one map (keyed by code) so that taking a code
/// and leaving its marker happen under one shard lock: atomic, like the Redis
/// `MULTI`.
#[derive(Clone, Default)]
pub struct MemoryStore {
    codes: Arc<DashMap<String, Entry>>,
    revoked: Arc<DashMap<String, Instant>>,
    /// DPoP replay keys, and until when each is kept.
    proofs: Arc<DashMap<[u8; 16], Instant>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) async fn take(&self, request: &TakeRequest<'_>) -> Result<TakeOutcome> {
        codes::take(&mut { self }, request).await
    }

    /// What `pick` finds in the unexpired entry of `code`. An expired entry
    /// is removed on the way, so memory stays bounded between sweeps.
    fn live<T>(&self, code: &str, pick: impl FnOnce(&Slot) -> Option<T>) -> Option<T> {
        let now = Instant::now();
        let entry = self.codes.get(code)?;
        if entry.expires_at > now {
            return pick(&entry.slot);
        }
        // The read guard first: removing under it would deadlock the shard.
        drop(entry);
        self.codes.remove_if(code, |_, e| e.expires_at <= now);
        None
    }

    pub(super) async fn insert(&self, code: &str, raw: &str, ttl: Duration) -> Result<()> {
        let now = Instant::now();
        let fresh = Entry {
            slot: Slot::Code(Arc::from(raw.as_bytes())),
            expires_at: now + ttl,
        };
        match self.codes.entry(code.to_owned()) {
            dashmap::Entry::Occupied(mut occupied) if occupied.get().expires_at <= now => {
                occupied.insert(fresh);
                Ok(())
            }
            dashmap::Entry::Occupied(_) => Err(StoreError::Conflict),
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(fresh);
                Ok(())
            }
        }
    }

    pub(super) async fn forget_take(&self, code: &str) {
        self.codes
            .remove_if(code, |_, e| matches!(e.slot, Slot::Used(_)));
    }

    pub(super) async fn revoke_grant(&self, grant_id: &str, ttl: Duration) -> Result<()> {
        self.revoked
            .insert(grant_id.to_owned(), Instant::now() + ttl);
        Ok(())
    }

    pub(super) async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool> {
        Ok(self
            .revoked
            .get(grant_id)
            .is_some_and(|until| *until > Instant::now()))
    }

    /// Accept a DPoP proof once: `false` if its key is held already. A
    /// full map is swept first; still full, the store is unavailable.
    fn claim_proof(&self, claim: &ReplayClaim) -> Result<bool> {
        let now = Instant::now();
        if self.proofs.len() >= MAX_LIVE_PROOFS {
            self.proofs.retain(|_, until| *until > now);
            if self.proofs.len() >= MAX_LIVE_PROOFS {
                return Err(StoreError::Unavailable(format!(
                    "{MAX_LIVE_PROOFS} DPoP proofs are held for replay detection, the embedded store's bound"
                )));
            }
        }
        Ok(match self.proofs.entry(claim.key) {
            dashmap::Entry::Occupied(mut held) if *held.get() <= now => {
                held.insert(now + claim.ttl);
                true
            }
            dashmap::Entry::Occupied(_) => false,
            dashmap::Entry::Vacant(vacant) => {
                vacant.insert(now + claim.ttl);
                true
            }
        })
    }

    pub(super) async fn release_proof(&self, claim: &ReplayClaim) {
        self.proofs.remove(&claim.key);
    }

    /// Drop everything that has expired.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.codes.retain(|_, e| e.expires_at > now);
        self.revoked.retain(|_, until| *until > now);
        self.proofs.retain(|_, until| *until > now);
    }

    /// Sweep every `period` until the store is dropped everywhere else.
    pub fn spawn_sweeper(&self, period: Duration) {
        let codes = Arc::downgrade(&self.codes);
        let revoked = Arc::downgrade(&self.revoked);
        let proofs = Arc::downgrade(&self.proofs);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let (Some(codes), Some(revoked), Some(proofs)) =
                    (codes.upgrade(), revoked.upgrade(), proofs.upgrade())
                else {
                    return;
                };
                MemoryStore {
                    codes,
                    revoked,
                    proofs,
                }
                .sweep();
            }
        });
    }
}

/// The take's steps on the map. Nothing here can fail or wait.
impl Primitives for &MemoryStore {
    type Raw = Arc<[u8]>;
    type Life = ();

    async fn read(
        &mut self,
        code: &str,
        proof: Option<&ReplayClaim>,
    ) -> Result<Read<Arc<[u8]>, ()>> {
        if let Some(claim) = proof {
            if !self.claim_proof(claim)? {
                return Ok(Read::ProofReplayed);
            }
        }
        Ok(self
            .live(code, |slot| match slot {
                Slot::Code(raw) => Some(Read::Found(raw.clone(), ())),
                Slot::Used(_) => None,
            })
            .unwrap_or(Read::Missing))
    }

    async fn remove(&mut self, code: &str) -> Result<()> {
        self.codes
            .remove_if(code, |_, e| matches!(e.slot, Slot::Code(_)));
        Ok(())
    }

    /// Under the entry's shard lock from the look to the replacement: no
    /// other take sees the code in between.
    async fn consume(
        &mut self,
        code: &str,
        marker: &str,
        ttl: Duration,
    ) -> Result<Consumed<Arc<[u8]>>> {
        let now = Instant::now();
        let gone = Consumed {
            taken: None,
            marked: false,
        };
        let Some(mut entry) = self.codes.get_mut(code) else {
            return Ok(gone);
        };
        let Entry { slot, expires_at } = &mut *entry;
        let Slot::Code(raw) = slot else {
            return Ok(gone);
        };
        if *expires_at <= now {
            return Ok(gone);
        }
        let taken = raw.clone();
        *slot = Slot::Used(marker.to_owned());
        *expires_at = now + ttl;
        Ok(Consumed {
            taken: Some(taken),
            marked: true,
        })
    }

    async fn read_used(&mut self, code: &str) -> Result<Option<String>> {
        Ok(self.live(code, |slot| match slot {
            Slot::Used(marker) => Some(marker.clone()),
            Slot::Code(_) => None,
        }))
    }

    /// Unreached: a consume here never finds a marker beside a record, since
    /// one slot holds either.
    async fn overwrite_used(&mut self, code: &str, marker: &str, ttl: Duration) -> Result<()> {
        let used = Entry {
            slot: Slot::Used(marker.to_owned()),
            expires_at: Instant::now() + ttl,
        };
        self.codes.insert(code.to_owned(), used);
        Ok(())
    }

    async fn forget(&mut self, code: &str) {
        self.forget_take(code).await;
    }

    /// Nothing to wait for: the map is the only copy.
    async fn settle(&mut self, _: &TakeRequest<'_>, _: &[u8], (): ()) -> Result<()> {
        Ok(())
    }
}
