//! The embedded store: an in-process map with the same exactly-once contract
//! as Redis, for running without one. Expiry is checked on every access and
//! swept periodically so memory stays bounded by the TTLs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dashmap::DashMap;

use super::{GrantMarker, StoreError, TakeOutcome, TakeRequest};
use crate::contract::record::{check, CodeRecord};

enum Slot {
    /// A code the frontend wrote, not yet redeemed: the raw record.
    Code(String),
    /// A redeemed code: the grant its tokens belong to.
    Used(GrantMarker),
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
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    pub(super) fn take(&self, request: &TakeRequest<'_>) -> TakeOutcome {
        let now = Instant::now();
        let Some(mut entry) = self.codes.get_mut(request.code) else {
            return TakeOutcome::Unknown;
        };
        if entry.expires_at <= now {
            drop(entry);
            self.codes
                .remove_if(request.code, |_, e| e.expires_at <= now);
            return TakeOutcome::Unknown;
        }
        let record = match &entry.slot {
            Slot::Used(marker) => return TakeOutcome::Replayed(marker.clone()),
            Slot::Code(raw) => match CodeRecord::parse(raw.as_bytes()) {
                Ok(record) => record,
                Err(bad) => {
                    drop(entry);
                    self.codes.remove(request.code);
                    return TakeOutcome::BadRecord(bad);
                }
            },
        };
        if let Err(mismatch) = check(&record, &request.presented) {
            return TakeOutcome::Mismatch(mismatch);
        }
        // Still under the shard's write lock: no other take can see the code
        // between the check and this replacement.
        entry.expires_at = now + request.grant.ttl(crate::unix_now());
        entry.slot = Slot::Used(request.grant.clone());
        TakeOutcome::Taken(Box::new(record))
    }

    pub(super) fn insert(&self, code: &str, raw: String, ttl: Duration) -> Result<(), StoreError> {
        let now = Instant::now();
        let fresh = Entry {
            slot: Slot::Code(raw),
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

    pub(super) fn forget_take(&self, code: &str) {
        self.codes
            .remove_if(code, |_, e| matches!(e.slot, Slot::Used(_)));
    }

    pub(super) fn revoke_grant(&self, grant_id: &str, ttl: Duration) {
        self.revoked
            .insert(grant_id.to_owned(), Instant::now() + ttl);
    }

    pub(super) fn is_grant_revoked(&self, grant_id: &str) -> bool {
        self.revoked
            .get(grant_id)
            .is_some_and(|until| *until > Instant::now())
    }

    /// Drop everything that has expired.
    pub fn sweep(&self) {
        let now = Instant::now();
        self.codes.retain(|_, e| e.expires_at > now);
        self.revoked.retain(|_, until| *until > now);
    }

    /// Sweep every `period` until the store is dropped everywhere else.
    pub fn spawn_sweeper(&self, period: Duration) {
        let codes = Arc::downgrade(&self.codes);
        let revoked = Arc::downgrade(&self.revoked);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let (Some(codes), Some(revoked)) = (codes.upgrade(), revoked.upgrade()) else {
                    return;
                };
                MemoryStore { codes, revoked }.sweep();
            }
        });
    }
}
