//! Limits on failed client authentication, so a client secret cannot be
//! guessed at the speed of the service, without handing anyone a switch
//! that locks a client out for everybody (docs/security.md, "Abuse
//! limits").
//!
//! - **Per source address: a refusal.** Every failed check of a presented
//!   secret, and every request naming an unregistered client, counts
//!   against the address it came from (IPv6: its /64). Past the limit, that
//!   address's requests that present a secret or name an unknown client
//!   get 429 before any secret is looked at. An attacker can only lock out
//!   the address it sends from.
//! - **Per confidential client: an alert.** The failed secret checks of a
//!   registered confidential client are counted across addresses, and past
//!   the threshold a security event is logged (once per window) and the
//!   `client_authentication_failures_total` metric shows it. It refuses
//!   nothing: a per-client refusal is one anyone can trigger for everyone.
//! - **Not counted:** a public client sending a secret, a confidential
//!   client using another method than its registered one, or sending none.
//!   No secret was compared, so nothing was guessed; these are refused (401)
//!   and logged, and a public client's users can never be limited.
//!
//! Counters live in this process: behind a load balancer that spreads
//! requests over N replicas, an attacker gets at most N times the limit,
//! which still turns millions of guesses a second into tens a minute.
//! Keeping them in Redis would add a round trip to every failed
//! authentication and make Redis the limiter's single point of failure.

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// The limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failed secret checks of one confidential client per window, from
    /// anywhere, past which a security event is logged. Never a refusal.
    pub client_alert: u32,
    /// Failed authentications from one source address per window (IPv6:
    /// per /64, what one host usually holds), past which that address is
    /// refused.
    pub per_address: u32,
    pub window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            client_alert: 100,
            per_address: 20,
            window: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Window {
    started: Instant,
    failures: u32,
}

impl Window {
    fn live(&self, now: Instant, length: Duration) -> bool {
        now.saturating_duration_since(self.started) < length
    }
}

/// Addresses tracked at most, all shards together. Past it, a new address
/// evicts one of a few sampled entries (an ended window if there is one,
/// else the one with the fewest failures), so memory stays bounded and each
/// request does constant work however many addresses an attacker uses.
pub const MAX_ADDRESSES: usize = 100_000;

/// Shards of the address table: contention stays low with many workers.
const SHARDS: usize = 64;

/// Entries looked at to choose one to evict.
const EVICTION_SAMPLE: usize = 8;

/// Failure counts per address, bounded.
struct AddressTable {
    shards: Box<[Mutex<HashMap<IpAddr, Window>>]>,
    /// Keyed randomly per process: an attacker cannot aim addresses at one shard.
    hasher: RandomState,
    per_shard: usize,
}

impl AddressTable {
    fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| Mutex::new(HashMap::with_capacity(per_shard)))
                .collect(),
            hasher: RandomState::new(),
            per_shard,
        }
    }

    fn shard(&self, address: &IpAddr) -> MutexGuard<'_, HashMap<IpAddr, Window>> {
        let index = self.hasher.hash_one(address) as usize % SHARDS;
        // A shard holds plain data and no code panics while holding it: a
        // poisoned lock still guards a consistent map.
        match self.shards.get(index).map(Mutex::lock) {
            Some(Ok(guard)) => guard,
            Some(Err(poisoned)) => poisoned.into_inner(),
            None => unreachable_shard(),
        }
    }

    fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or_else(|p| p.into_inner().len(), |g| g.len()))
            .sum()
    }
}

/// `index % SHARDS` is always a valid index of the `SHARDS` shards.
#[allow(clippy::panic)]
fn unreachable_shard() -> ! {
    panic!("shard index out of range")
}

/// Counts failed client authentications in fixed windows.
pub struct AuthFailureLimiter {
    limits: AuthLimits,
    addresses: AddressTable,
    /// Only registered confidential clients are counted: a bounded set.
    clients: DashMap<Box<str>, Window>,
}

impl AuthFailureLimiter {
    pub fn new(limits: AuthLimits) -> Self {
        Self::with_capacity(limits, MAX_ADDRESSES)
    }

    /// A limiter tracking at most about `addresses` addresses.
    pub fn with_capacity(limits: AuthLimits, addresses: usize) -> Self {
        Self {
            limits,
            addresses: AddressTable::new(addresses),
            clients: DashMap::new(),
        }
    }

    /// `Err(retry_after)` if the address has used up its failures for the
    /// current window.
    pub fn check(&self, address: IpAddr, now: Instant) -> Result<(), Duration> {
        let address = mask(address);
        let window = self.addresses.shard(&address).get(&address).copied();
        match window {
            Some(w) if w.live(now, self.limits.window) && w.failures >= self.limits.per_address => {
                Err(self.limits.window - now.saturating_duration_since(w.started))
            }
            _ => Ok(()),
        }
    }

    /// Count one failed authentication against the address. Constant work:
    /// a full shard evicts one of a few sampled entries.
    pub fn record_address_failure(&self, address: IpAddr, now: Instant) {
        let length = self.limits.window;
        let address = mask(address);
        let mut shard = self.addresses.shard(&address);
        if let Some(window) = shard.get_mut(&address) {
            count(window, now, length);
            return;
        }
        if shard.len() >= self.addresses.per_shard {
            let victim = shard
                .iter()
                .take(EVICTION_SAMPLE)
                .min_by_key(|(_, w)| (w.live(now, length), w.failures))
                .map(|(a, _)| *a);
            if let Some(victim) = victim {
                shard.remove(&victim);
            }
        }
        shard.insert(
            address,
            Window {
                started: now,
                failures: 1,
            },
        );
    }

    /// Count one failed secret check of the registered confidential client
    /// `client_id`. True exactly once per window: when the count reaches the
    /// alert threshold (the caller logs the security event).
    pub fn record_client_failure(&self, client_id: &str, now: Instant) -> bool {
        let length = self.limits.window;
        let failures = match self.clients.get_mut(client_id) {
            Some(mut window) => {
                count(&mut window, now, length);
                window.failures
            }
            None => {
                self.clients.insert(
                    client_id.into(),
                    Window {
                        started: now,
                        failures: 1,
                    },
                );
                1
            }
        };
        failures == self.limits.client_alert
    }

    /// Drop the windows that have ended.
    pub fn sweep(&self, now: Instant) {
        let length = self.limits.window;
        self.clients.retain(|_, w| w.live(now, length));
        for shard in self.addresses.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|p| p.into_inner());
            shard.retain(|_, w| w.live(now, length));
        }
    }

    /// Sweep every `period` until the limiter is dropped everywhere else:
    /// the request path never sweeps.
    pub fn spawn_sweeper(self: &Arc<Self>, period: Duration) {
        let limiter: Weak<Self> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            loop {
                tick.tick().await;
                let Some(limiter) = limiter.upgrade() else {
                    return;
                };
                limiter.sweep(Instant::now());
            }
        });
    }

    /// Addresses tracked now.
    pub fn tracked_addresses(&self) -> usize {
        self.addresses.len()
    }
}

/// One more failure in `window`, which restarts if it has ended.
fn count(window: &mut Window, now: Instant, length: Duration) {
    if !window.live(now, length) {
        *window = Window {
            started: now,
            failures: 0,
        };
    }
    window.failures = window.failures.saturating_add(1);
}

/// IPv6 addresses count per /64; IPv4-mapped IPv6 addresses as IPv4.
fn mask(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> AuthFailureLimiter {
        AuthFailureLimiter::new(AuthLimits {
            client_alert: 3,
            per_address: 2,
            window: Duration::from_secs(60),
        })
    }

    #[test]
    fn an_address_is_limited_until_its_window_ends() {
        let limiter = limiter();
        let t0 = Instant::now();
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        for _ in 0..2 {
            assert_eq!(limiter.check(a, t0), Ok(()));
            limiter.record_address_failure(a, t0);
        }
        let later = t0 + Duration::from_secs(15);
        assert_eq!(limiter.check(a, later), Err(Duration::from_secs(45)));
        assert_eq!(limiter.check(b, later), Ok(()), "another address");
        let after = t0 + Duration::from_secs(60);
        assert_eq!(limiter.check(a, after), Ok(()));
        limiter.record_address_failure(a, after);
        assert_eq!(limiter.check(a, after), Ok(()), "a new window");
    }

    #[test]
    fn a_client_raises_one_alert_per_window_and_is_never_refused() {
        let limiter = limiter();
        let t0 = Instant::now();
        let alerts: Vec<bool> = (0..6)
            .map(|_| limiter.record_client_failure("basic-app", t0))
            .collect();
        assert_eq!(alerts, [false, false, true, false, false, false]);
        assert!(!limiter.record_client_failure("other", t0));
        let next = t0 + Duration::from_secs(60);
        let alerts: Vec<bool> = (0..3)
            .map(|_| limiter.record_client_failure("basic-app", next))
            .collect();
        assert_eq!(alerts, [false, false, true], "a new window alerts again");
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = limiter();
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.record_address_failure(one, t0);
        limiter.record_address_failure(same_64, t0);
        assert!(limiter.check(one, t0).is_err());
        assert_eq!(limiter.check(other_64, t0), Ok(()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.record_address_failure(v4, t0);
        limiter.record_address_failure(mapped, t0);
        assert!(limiter.check(v4, t0).is_err());
    }

    #[test]
    fn memory_is_bounded_by_sweeping_ended_windows() {
        let limiter = limiter();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            limiter.record_address_failure(IpAddr::from(i.to_be_bytes()), t0);
        }
        limiter.record_client_failure("basic-app", t0);
        assert_eq!(limiter.tracked_addresses(), 1000);
        limiter.sweep(t0 + Duration::from_secs(61));
        assert_eq!(limiter.tracked_addresses(), 0);
        assert!(limiter.clients.is_empty());
    }

    /// Security review, finding 6: with the table full of live windows (an
    /// attacker's many addresses), a new address is still counted and
    /// limited (before, it went uncounted after a sweep of the whole table
    /// on every failure), and the table does not grow. Addresses already
    /// at the limit survive eviction: the sample evicts the fewest failures.
    #[test]
    fn a_full_table_still_counts_new_addresses() {
        let limiter = AuthFailureLimiter::new(AuthLimits::default());
        let t0 = Instant::now();
        let limited: IpAddr = "198.51.100.1".parse().unwrap();
        for _ in 0..20 {
            limiter.record_address_failure(limited, t0);
        }
        for i in 0..MAX_ADDRESSES as u32 + 5_000 {
            let filler = IpAddr::from((0x0a00_0000 | i).to_be_bytes());
            limiter.record_address_failure(filler, t0);
        }
        assert!(limiter.tracked_addresses() <= MAX_ADDRESSES + SHARDS);
        let fresh: IpAddr = "203.0.113.9".parse().unwrap();
        for _ in 0..20 {
            assert_eq!(limiter.check(fresh, t0), Ok(()));
            limiter.record_address_failure(fresh, t0);
        }
        assert!(
            limiter.check(fresh, t0).is_err(),
            "a new address went uncounted"
        );
        assert!(
            limiter.check(limited, t0).is_err(),
            "a limited address was evicted"
        );
        assert!(limiter.tracked_addresses() <= MAX_ADDRESSES + SHARDS);
    }
}
