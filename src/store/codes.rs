//! Authorization codes: what a take asks and finds, the used marker it
//! leaves, and the take itself, written once for every store.
//!
//! A store supplies [`Primitives`], the few operations on a code's record
//! and its used marker that the take is made of; [`take`] decides what
//! their answers mean. The store knows nothing of clients, redirect URIs or
//! PKCE: the grant hands its checks in as [`TakeRequest::validate`].

use std::time::Duration;

use super::Result;
use crate::contract::record::{BadRecord, CodeRecord, Mismatch};
use crate::dpop::ReplayClaim;

/// One redemption attempt, as the store sees it.
pub struct TakeRequest<'a> {
    pub code: &'a str,
    /// The grant's validate step, run on the stored record before anything is consumed
    /// (and again on what was consumed, should it differ): `Err` refuses the take and
    /// leaves the record in place.
    pub validate: &'a (dyn Fn(&CodeRecord) -> Result<(), Mismatch> + Send + Sync),
    /// What the used marker records if this take succeeds.
    pub grant: &'a GrantMarker,
    /// The request's DPoP proof, to be accepted once: claimed with the
    /// record's read, in the same round trip, and the take refused
    /// ([`TakeOutcome::ProofReplayed`]) if it was claimed before.
    pub proof: Option<&'a ReplayClaim>,
}

impl TakeRequest<'_> {
    /// The same take, its proof already claimed (a take repeated on a new
    /// master must not find its own claim and call it a replay).
    pub fn claimed(&self) -> Self {
        Self {
            proof: None,
            ..*self
        }
    }
}

impl std::fmt::Debug for TakeRequest<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TakeRequest")
            .field("code", &self.code)
            .field("grant", &self.grant)
            .field("proof", &self.proof.is_some())
            .finish_non_exhaustive()
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
    /// The request's DPoP proof was accepted before: nothing was taken.
    ProofReplayed,
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
    pub(super) fn encode(&self) -> String {
        format!(
            "{} {} {} {}",
            self.grant_id, self.tokens_expire_at, self.verifier_digest, self.client_id
        )
    }

    /// The marker of a take that consumed the code but issued no tokens:
    /// the same fields behind a `!`, which no grant id (base64url) starts
    /// with. The owner's retry then learns that nothing was issued rather
    /// than being taken for a replay.
    pub(super) fn encode_without_tokens(&self) -> String {
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

/// What a store does to a code's record and used marker, one step of
/// [`take`] each. Markers are handed over encoded; the store keeps them as
/// they are.
pub(super) trait Primitives {
    /// A record as the store holds it.
    type Raw: AsRef<[u8]>;
    /// What the store learned with a record that [`Self::settle`] needs:
    /// on Redis, what was left of the record's life.
    type Life;

    /// The record of `code`, if there is one; and, with `proof`, claim it
    /// in the same step: [`Read::ProofReplayed`] if it was claimed before.
    async fn read(
        &mut self,
        code: &str,
        proof: Option<&ReplayClaim>,
    ) -> Result<Read<Self::Raw, Self::Life>>;

    /// Remove the record of `code` (one nobody can redeem), not its marker.
    async fn remove(&mut self, code: &str) -> Result<()>;

    /// In one atomic step: remove the record of `code` and leave `marker`
    /// for `ttl`, unless a used marker is there already. Of concurrent
    /// consumes of one code, exactly one gets the record.
    async fn consume(
        &mut self,
        code: &str,
        marker: &str,
        ttl: Duration,
    ) -> Result<Consumed<Self::Raw>>;

    /// The used marker of `code`, encoded, if there is one.
    async fn read_used(&mut self, code: &str) -> Result<Option<String>>;

    /// Replace the used marker of `code` with `marker`, for `ttl`.
    async fn overwrite_used(&mut self, code: &str, marker: &str, ttl: Duration) -> Result<()>;

    /// Remove the used marker of `code`, best effort: the take that left it
    /// issued nothing, and it expires anyway.
    async fn forget(&mut self, code: &str);

    /// After a successful consume of `raw`, before the caller issues
    /// anything: whatever more the store needs for the take to hold (Redis:
    /// the replicas' acknowledgement). `Err`: no tokens; the store has put
    /// the code back or marked it as consumed without tokens.
    async fn settle(
        &mut self,
        request: &TakeRequest<'_>,
        raw: &[u8],
        life: Self::Life,
    ) -> Result<()>;
}

/// What [`Primitives::read`] found.
pub(super) enum Read<R, L> {
    /// The record, and what the store learned with it.
    Found(R, L),
    /// No record.
    Missing,
    /// The proof was claimed before (the record was not looked at).
    ProofReplayed,
}

/// What [`Primitives::consume`] did.
pub(super) struct Consumed<R> {
    /// The record it removed; `None`: there was none (expired, or another
    /// take got it).
    pub taken: Option<R>,
    /// Whether it left this take's marker. `false` beside a taken record:
    /// a marker of an earlier code of the same value was there and stays.
    /// `false` without one: another take's marker may be there.
    pub marked: bool,
}

/// Validate the record against the request and, only if it passes, take it
/// and leave the used marker: exactly once, atomically. Two steps: a read
/// (a take the grant refuses consumes nothing), then the atomic consume. Of
/// concurrent takes that all passed, exactly one consume gets the record;
/// the others find the winner's marker, and answer as its replay.
pub(super) async fn take<P: Primitives>(
    store: &mut P,
    request: &TakeRequest<'_>,
) -> Result<TakeOutcome> {
    let code = request.code;
    let (raw, life) = match store.read(code, request.proof).await? {
        Read::Found(raw, life) => (raw, life),
        Read::Missing => return after_miss(store, code).await,
        Read::ProofReplayed => return Ok(TakeOutcome::ProofReplayed),
    };
    let record = match CodeRecord::parse(raw.as_ref()) {
        Ok(record) => record,
        // No request could ever redeem it: remove it, as a take would.
        Err(bad) => {
            store.remove(code).await?;
            return Ok(TakeOutcome::BadRecord(bad));
        }
    };
    if let Err(mismatch) = (request.validate)(&record) {
        return Ok(TakeOutcome::Mismatch(mismatch));
    }
    let marker = request.grant.encode();
    let ttl = request.grant.ttl(crate::unix_now());
    match store.consume(code, &marker, ttl).await? {
        Consumed {
            taken: Some(taken),
            marked,
        } => {
            if !marked {
                // A marker of an earlier code of the same value (the
                // frontend reused one): this take's grant replaces it.
                tracing::error!("a used marker already existed for a code just taken");
                store.overwrite_used(code, &marker, ttl).await?;
            }
            if taken.as_ref() != raw.as_ref() {
                // Rewritten between the two steps: the frontend broke the
                // contract (codes are written once, with NX). Judge what
                // was taken, not what was validated.
                tracing::error!("a code's record changed between its check and its take");
                return retaken(store, request, taken, life).await;
            }
            store.settle(request, raw.as_ref(), life).await?;
            Ok(TakeOutcome::Taken(Box::new(record)))
        }
        // Nothing to take and no marker before this one: the code expired
        // between the steps. Nothing was issued; undo the marker.
        Consumed {
            taken: None,
            marked: true,
        } => {
            store.forget(code).await;
            Ok(TakeOutcome::Unknown)
        }
        // Another take won between the steps: this one is its replay.
        Consumed {
            taken: None,
            marked: false,
        } => after_miss(store, code).await,
    }
}

/// The code is not there: taken before (its used marker says by whom), or
/// unknown.
async fn after_miss<P: Primitives>(store: &mut P, code: &str) -> Result<TakeOutcome> {
    Ok(match store.read_used(code).await? {
        None => TakeOutcome::Unknown,
        Some(raw) => match GrantMarker::decode_used(&raw) {
            Some(marker) => marker.into_outcome(),
            None => TakeOutcome::BadRecord(BadRecord("used marker is unreadable".into())),
        },
    })
}

/// A record that changed between its validation and its consume, judged
/// again. It is consumed either way; tokens only if it passes.
async fn retaken<P: Primitives>(
    store: &mut P,
    request: &TakeRequest<'_>,
    taken: P::Raw,
    life: P::Life,
) -> Result<TakeOutcome> {
    let outcome = match CodeRecord::parse(taken.as_ref()) {
        Err(bad) => TakeOutcome::BadRecord(bad),
        Ok(record) => match (request.validate)(&record) {
            Err(mismatch) => TakeOutcome::Mismatch(mismatch),
            Ok(()) => {
                store.settle(request, taken.as_ref(), life).await?;
                return Ok(TakeOutcome::Taken(Box::new(record)));
            }
        },
    };
    store.forget(request.code).await;
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store as Redis behaves, one key for the record and one for the
    /// marker, with what another client does between the read and the
    /// consume.
    #[derive(Default)]
    struct Keys {
        record: Option<String>,
        used: Option<String>,
        meanwhile: Option<fn(&mut Keys)>,
        settled: usize,
    }

    impl Primitives for Keys {
        type Raw = String;
        type Life = ();

        async fn read(&mut self, _: &str, _: Option<&ReplayClaim>) -> Result<Read<String, ()>> {
            Ok(match self.record.clone() {
                Some(raw) => Read::Found(raw, ()),
                None => Read::Missing,
            })
        }

        async fn remove(&mut self, _: &str) -> Result<()> {
            self.record = None;
            Ok(())
        }

        async fn consume(
            &mut self,
            _: &str,
            marker: &str,
            _: Duration,
        ) -> Result<Consumed<String>> {
            if let Some(meanwhile) = self.meanwhile.take() {
                meanwhile(self);
            }
            let marked = self.used.is_none();
            if marked {
                self.used = Some(marker.to_owned());
            }
            Ok(Consumed {
                taken: self.record.take(),
                marked,
            })
        }

        async fn read_used(&mut self, _: &str) -> Result<Option<String>> {
            Ok(self.used.clone())
        }

        async fn overwrite_used(&mut self, _: &str, marker: &str, _: Duration) -> Result<()> {
            self.used = Some(marker.to_owned());
            Ok(())
        }

        async fn forget(&mut self, _: &str) {
            self.used = None;
        }

        async fn settle(&mut self, _: &TakeRequest<'_>, _: &[u8], (): ()) -> Result<()> {
            self.settled += 1;
            Ok(())
        }
    }

    fn record_of(client_id: &str) -> String {
        format!(
            r#"{{"client_id":"{client_id}","code_challenge":"E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM","code_challenge_method":"S256","sub":"u","scope":"openid"}}"#
        )
    }

    fn marker_of(grant_id: &str) -> GrantMarker {
        GrantMarker {
            grant_id: grant_id.into(),
            tokens_expire_at: crate::unix_now() + 600,
            client_id: "app".into(),
            verifier_digest: "d".into(),
        }
    }

    /// The take of `keys` by client `app`, leaving grant `g`.
    fn take_by_app(keys: &mut Keys) -> TakeOutcome {
        let marker = marker_of("g");
        let request = TakeRequest {
            code: "c",
            validate: &|record| match record.client_id.as_str() {
                "app" => Ok(()),
                _ => Err(Mismatch::Client),
            },
            grant: &marker,
            proof: None,
        };
        futures::executor::block_on(take(keys, &request)).unwrap()
    }

    fn with_record(client_id: &str) -> Keys {
        Keys {
            record: Some(record_of(client_id)),
            ..Keys::default()
        }
    }

    /// Validated, consumed, marked, settled; a refusal touches nothing.
    #[test]
    fn a_take_consumes_only_what_validates() {
        let mut keys = with_record("app");
        assert!(matches!(take_by_app(&mut keys), TakeOutcome::Taken(r) if r.client_id == "app"));
        assert_eq!((keys.record, keys.settled), (None, 1));
        assert_eq!(keys.used, Some(marker_of("g").encode()));

        let mut keys = with_record("other");
        assert!(matches!(
            take_by_app(&mut keys),
            TakeOutcome::Mismatch(Mismatch::Client)
        ));
        assert_eq!(keys.record, Some(record_of("other")));
        assert_eq!((keys.used, keys.settled), (None, 0));

        let mut keys = Keys {
            record: Some("not json".into()),
            ..Keys::default()
        };
        assert!(matches!(take_by_app(&mut keys), TakeOutcome::BadRecord(_)));
        assert_eq!((keys.record, keys.used), (None, None));
    }

    /// A miss is told by the used marker: a replay, a take that issued
    /// nothing, an unreadable marker, or no code at all.
    #[test]
    fn a_miss_is_judged_by_the_used_marker() {
        let earlier = marker_of("g0");
        for (used, expected) in [
            (None, "Unknown"),
            (Some(earlier.encode()), "Replayed"),
            (
                Some(earlier.encode_without_tokens()),
                "ConsumedWithoutTokens",
            ),
            (Some("?".into()), "BadRecord"),
        ] {
            let mut keys = Keys {
                used,
                ..Keys::default()
            };
            let outcome = take_by_app(&mut keys);
            assert!(format!("{outcome:?}").starts_with(expected), "{outcome:?}");
        }
    }

    /// What happens between the read and the consume: another take wins
    /// (a replay of its grant), the code expires (unknown, this take's
    /// marker undone), a stale marker was there (overwritten), the record
    /// was rewritten (judged again: consumed either way, tokens only if it
    /// passes).
    #[test]
    fn what_changes_between_the_steps_is_judged() {
        let mut keys = with_record("app");
        keys.meanwhile = Some(|k| {
            k.record = None;
            k.used = Some(marker_of("winner").encode());
        });
        assert!(
            matches!(take_by_app(&mut keys), TakeOutcome::Replayed(m) if m.grant_id == "winner")
        );
        assert_eq!(keys.settled, 0);

        let mut keys = with_record("app");
        keys.meanwhile = Some(|k| k.record = None);
        assert!(matches!(take_by_app(&mut keys), TakeOutcome::Unknown));
        assert_eq!(keys.used, None);

        let mut keys = with_record("app");
        keys.meanwhile = Some(|k| k.used = Some(marker_of("stale").encode()));
        assert!(matches!(take_by_app(&mut keys), TakeOutcome::Taken(_)));
        assert_eq!(keys.used, Some(marker_of("g").encode()));

        let mut keys = with_record("app");
        keys.meanwhile = Some(|k| k.record = Some(record_of("other")));
        assert!(matches!(
            take_by_app(&mut keys),
            TakeOutcome::Mismatch(Mismatch::Client)
        ));
        assert_eq!((keys.record, keys.used, keys.settled), (None, None, 0));

        let mut keys = with_record("app");
        keys.meanwhile =
            Some(|k| k.record = Some(record_of("app").replace("\"sub\":\"u\"", "\"sub\":\"v\"")));
        assert!(matches!(take_by_app(&mut keys), TakeOutcome::Taken(r) if r.sub == "v"));
        assert_eq!(keys.settled, 1);
    }

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
