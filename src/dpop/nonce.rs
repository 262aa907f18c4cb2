//! Server-provided DPoP nonces (RFC 9449 §8), stateless: a nonce is a time
//! step and an HMAC of it under a secret every replica shares, so any
//! replica accepts any replica's nonce and nothing is stored per nonce. A
//! nonce of the current step or of either neighbour is accepted, the step
//! computed from the clock at each check (as node-oidc-provider does, with
//! 60-second steps): a nonce lives between one and two steps, and replicas
//! whose clocks differ by less than a step agree.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use subtle::ConstantTimeEq;

/// Bytes of the HMAC kept in a nonce: 128 bits, unguessable.
const MAC_LEN: usize = 16;
/// A nonce's raw length: the step (8 bytes, big-endian) and the MAC.
const RAW_LEN: usize = 8 + MAC_LEN;

/// What a presented nonce is worth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    /// Of the current step or the next.
    Current,
    /// Of the previous step: accepted, but it expires when the next step
    /// begins, so the answer hands the client a fresh one (§8.2).
    Previous,
    /// Not a nonce of this service, or of a step no longer accepted.
    Stale,
}

/// The nonce key and the step.
pub struct Nonces {
    key: hmac::Key,
    step_secs: u64,
}

impl std::fmt::Debug for Nonces {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Nonces")
            .field("step_secs", &self.step_secs)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    /// Nonces under `secret` (shared by every replica), one per `step_secs`.
    pub fn new(secret: &[u8], step_secs: u64) -> Self {
        Self {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            step_secs: step_secs.max(1),
        }
    }

    /// The longest a nonce is accepted, in seconds: from the start of the
    /// step it names (up to a step ahead of this clock) to the end of the
    /// step after it.
    pub fn lifetime_secs(&self) -> u64 {
        3 * self.step_secs
    }

    fn step_at(&self, now: u64) -> u64 {
        now / self.step_secs
    }

    /// The nonce of the step `now` falls in.
    pub fn issue(&self, now: u64) -> String {
        let step = self.step_at(now);
        let mut raw = [0u8; RAW_LEN];
        for (to, from) in raw.iter_mut().zip(step.to_be_bytes()) {
            *to = from;
        }
        for (to, from) in raw.iter_mut().skip(8).zip(self.mac(step)) {
            *to = from;
        }
        URL_SAFE_NO_PAD.encode(raw)
    }

    /// Whether `nonce` is one of ours, of a step still accepted at `now`.
    pub fn check(&self, nonce: &str, now: u64) -> NonceCheck {
        let mut raw = [0u8; RAW_LEN];
        match URL_SAFE_NO_PAD.decode_slice(nonce.as_bytes(), &mut raw) {
            Ok(RAW_LEN) => {}
            _ => return NonceCheck::Stale,
        }
        let (step_bytes, mac) = raw.split_at(8);
        let mut step = [0u8; 8];
        step.copy_from_slice(step_bytes);
        let step = u64::from_be_bytes(step);
        let current = self.step_at(now);
        let age = if step == current || step == current.saturating_add(1) {
            NonceCheck::Current
        } else if step.saturating_add(1) == current {
            NonceCheck::Previous
        } else {
            return NonceCheck::Stale;
        };
        if bool::from(self.mac(step).as_slice().ct_eq(mac)) {
            age
        } else {
            NonceCheck::Stale
        }
    }

    fn mac(&self, step: u64) -> [u8; MAC_LEN] {
        let mut message = *b"DPoP-Nonce\0\0\0\0\0\0\0\0";
        for (to, from) in message.iter_mut().skip(10).zip(step.to_be_bytes()) {
            *to = from;
        }
        let tag = hmac::sign(&self.key, &message);
        let mut mac = [0u8; MAC_LEN];
        for (to, from) in mac.iter_mut().zip(tag.as_ref()) {
            *to = *from;
        }
        mac
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A nonce is accepted in its step and both neighbours, by any holder
    /// of the secret; not later, not under another secret, not altered.
    #[test]
    fn a_nonce_lives_across_its_steps_neighbours_only() {
        let nonces = Nonces::new(b"0123456789abcdef0123456789abcdef", 60);
        let other_replica = Nonces::new(b"0123456789abcdef0123456789abcdef", 60);
        // The start of a step (a multiple of 60).
        let t = 1_800_000_000;
        let nonce = nonces.issue(t + 10);
        assert_eq!(other_replica.check(&nonce, t), NonceCheck::Current);
        assert_eq!(other_replica.check(&nonce, t - 1), NonceCheck::Current);
        assert_eq!(other_replica.check(&nonce, t + 60), NonceCheck::Previous);
        assert_eq!(other_replica.check(&nonce, t + 119), NonceCheck::Previous);
        assert_eq!(other_replica.check(&nonce, t + 120), NonceCheck::Stale);
        assert_eq!(other_replica.check(&nonce, t - 61), NonceCheck::Stale);
        let stranger = Nonces::new(b"another secret, also 32 bytes...", 60);
        assert_eq!(stranger.check(&nonce, t), NonceCheck::Stale);
        let mut altered = nonce.clone().into_bytes();
        let last = altered.last_mut().unwrap();
        *last = if *last == b'A' { b'B' } else { b'A' };
        let altered = String::from_utf8(altered).unwrap();
        assert_eq!(nonces.check(&altered, t), NonceCheck::Stale);
        for junk in ["", "x", "not a nonce at all", &"A".repeat(32), &nonce[..31]] {
            assert_eq!(nonces.check(junk, t), NonceCheck::Stale, "{junk}");
        }
        assert_eq!(nonces.lifetime_secs(), 180);
    }
}
