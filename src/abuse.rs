//! Limits on failed client authentication, per client and per source
//! address, so a client secret cannot be guessed at the speed of the
//! service.
//!
//! Counters live in this process (a [`DashMap`]): behind a load balancer
//! that spreads requests over N replicas, an attacker gets at most N times
//! the limit, which still turns millions of guesses a second into tens a
//! minute. Keeping them in Redis would add a round trip to every failed
//! authentication and make Redis the limiter's single point of failure; the
//! README says so.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use dashmap::DashMap;

/// The limits, from the settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthLimits {
    /// Failed authentications of one registered client per window.
    pub per_client: u32,
    /// Failed authentications from one source address per window (IPv6:
    /// per /64, what one host usually holds).
    pub per_address: u32,
    pub window: Duration,
}

impl Default for AuthLimits {
    fn default() -> Self {
        Self {
            per_client: 100,
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

/// Past this many tracked addresses, ended windows are swept before a new
/// one is added; if that is not enough, new addresses go uncounted (the
/// per-client limit still holds) rather than memory growing without bound.
const MAX_ADDRESSES: usize = 100_000;

/// Counts failed client authentications in fixed windows.
pub struct AuthFailureLimiter {
    limits: AuthLimits,
    /// Only registered clients are counted: a bounded set.
    clients: DashMap<Box<str>, Window>,
    addresses: DashMap<IpAddr, Window>,
}

impl AuthFailureLimiter {
    pub fn new(limits: AuthLimits) -> Self {
        Self {
            limits,
            clients: DashMap::new(),
            addresses: DashMap::new(),
        }
    }

    pub fn limits(&self) -> AuthLimits {
        self.limits
    }

    /// `Err(retry_after)` if the client or the address has used up its
    /// failures for the current window. `client` is `None` unless the
    /// client id is registered.
    pub fn check(
        &self,
        client: Option<&str>,
        address: Option<IpAddr>,
        now: Instant,
    ) -> Result<(), Duration> {
        let blocked = |window: Option<Window>, limit: u32| {
            let window = window?;
            let age = now.saturating_duration_since(window.started);
            (age < self.limits.window && window.failures >= limit).then(|| self.limits.window - age)
        };
        let by_client = client.and_then(|c| {
            let window = self.clients.get(c).map(|w| *w);
            blocked(window, self.limits.per_client)
        });
        let by_address = address.and_then(|a| {
            let window = self.addresses.get(&mask(a)).map(|w| *w);
            blocked(window, self.limits.per_address)
        });
        match by_client.max(by_address) {
            Some(retry_after) => Err(retry_after),
            None => Ok(()),
        }
    }

    /// Count one failed authentication against the client and the address.
    pub fn record_failure(&self, client: Option<&str>, address: Option<IpAddr>, now: Instant) {
        let window = self.limits.window;
        let count = |w: &mut Window| {
            if now.saturating_duration_since(w.started) >= window {
                *w = Window {
                    started: now,
                    failures: 0,
                };
            }
            w.failures = w.failures.saturating_add(1);
        };
        let first = Window {
            started: now,
            failures: 1,
        };
        if let Some(client) = client {
            match self.clients.get_mut(client) {
                Some(mut w) => count(&mut w),
                None => {
                    self.clients.insert(client.into(), first);
                }
            }
        }
        if let Some(address) = address.map(mask) {
            match self.addresses.get_mut(&address) {
                Some(mut w) => count(&mut w),
                None => {
                    if self.addresses.len() >= MAX_ADDRESSES {
                        self.sweep(now);
                    }
                    if self.addresses.len() < MAX_ADDRESSES {
                        self.addresses.insert(address, first);
                    }
                }
            }
        }
    }

    /// Drop the windows that have ended.
    pub fn sweep(&self, now: Instant) {
        let window = self.limits.window;
        let live = |w: &Window| now.saturating_duration_since(w.started) < window;
        self.clients.retain(|_, w| live(w));
        self.addresses.retain(|_, w| live(w));
    }

    /// Clients and addresses tracked now.
    pub fn tracked(&self) -> usize {
        self.clients.len() + self.addresses.len()
    }
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
            per_client: 3,
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
            assert_eq!(limiter.check(None, Some(a), t0), Ok(()));
            limiter.record_failure(None, Some(a), t0);
        }
        let later = t0 + Duration::from_secs(15);
        assert_eq!(
            limiter.check(None, Some(a), later),
            Err(Duration::from_secs(45))
        );
        assert_eq!(
            limiter.check(None, Some(b), later),
            Ok(()),
            "another address"
        );
        let after = t0 + Duration::from_secs(60);
        assert_eq!(limiter.check(None, Some(a), after), Ok(()));
        limiter.record_failure(None, Some(a), after);
        assert_eq!(limiter.check(None, Some(a), after), Ok(()), "a new window");
    }

    #[test]
    fn a_client_is_limited_across_addresses() {
        let limiter = limiter();
        let t0 = Instant::now();
        for i in 0..3u8 {
            let address = IpAddr::from([198, 51, 100, i]);
            limiter.record_failure(Some("basic-app"), Some(address), t0);
        }
        let fresh = IpAddr::from([203, 0, 113, 9]);
        assert!(limiter.check(Some("basic-app"), Some(fresh), t0).is_err());
        assert_eq!(limiter.check(Some("post-app"), Some(fresh), t0), Ok(()));
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let limiter = limiter();
        let t0 = Instant::now();
        let one: IpAddr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: IpAddr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        limiter.record_failure(None, Some(one), t0);
        limiter.record_failure(None, Some(same_64), t0);
        assert!(limiter.check(None, Some(one), t0).is_err());
        assert_eq!(limiter.check(None, Some(other_64), t0), Ok(()));
        let v4: IpAddr = "192.0.2.7".parse().unwrap();
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        limiter.record_failure(None, Some(v4), t0);
        limiter.record_failure(None, Some(mapped), t0);
        assert!(limiter.check(None, Some(v4), t0).is_err());
    }

    #[test]
    fn memory_is_bounded_by_sweeping_ended_windows() {
        let limiter = limiter();
        let t0 = Instant::now();
        for i in 0..1000u32 {
            limiter.record_failure(None, Some(IpAddr::from(i.to_be_bytes())), t0);
        }
        assert_eq!(limiter.tracked(), 1000);
        limiter.sweep(t0 + Duration::from_secs(61));
        assert_eq!(limiter.tracked(), 0);
    }
}
