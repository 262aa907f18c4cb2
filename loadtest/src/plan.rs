//! What the run sends, decided before it starts: every request is prebuilt,
//! so the measured window holds no body formatting and no randomness.

use std::fmt;
use std::str::FromStr;

use crate::http1::post_form;
use crate::seed::Seed;

/// Why a request is sent, and so what answer is right for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// The one rightful redemption of a seeded code.
    Redeem,
    /// The same code and verifier again, after its redemption was sent.
    Replay,
    /// A seeded code with a verifier that does not match: must not consume it.
    WrongVerifier,
    /// A code that was never issued.
    Unknown,
}

impl Kind {
    pub const ALL: [Kind; 4] = [
        Kind::Redeem,
        Kind::Replay,
        Kind::WrongVerifier,
        Kind::Unknown,
    ];

    pub fn index(self) -> usize {
        self as usize
    }

    pub fn name(self) -> &'static str {
        match self {
            Kind::Redeem => "redeem",
            Kind::Replay => "replay",
            Kind::WrongVerifier => "wrong_verifier",
            Kind::Unknown => "unknown",
        }
    }
}

/// Shares of the requests that are not rightful redemptions (`--mix`).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Mix {
    pub replay: f64,
    pub wrong_verifier: f64,
    pub unknown: f64,
}

impl Mix {
    fn total(&self) -> f64 {
        self.replay + self.wrong_verifier + self.unknown
    }
}

impl FromStr for Mix {
    type Err = String;

    /// `replay=0.05,wrong_verifier=0.02,unknown=0.01` (shares of all requests).
    fn from_str(s: &str) -> Result<Self, String> {
        let mut mix = Mix::default();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, value) = part
                .split_once('=')
                .ok_or_else(|| format!("{part:?} is not name=share"))?;
            let share: f64 = value
                .trim()
                .parse()
                .map_err(|_| format!("{value:?} is not a number"))?;
            if !(0.0..1.0).contains(&share) {
                return Err(format!("{name}={share}: a share is in [0, 1)"));
            }
            match name.trim() {
                "replay" => mix.replay = share,
                "wrong_verifier" | "wrong-verifier" => mix.wrong_verifier = share,
                "unknown" => mix.unknown = share,
                other => {
                    return Err(format!(
                        "unknown kind {other:?} (replay, wrong_verifier, unknown)"
                    ))
                }
            }
        }
        if mix.total() >= 0.9 {
            return Err("the shares add up to 0.9 or more: leave room for redemptions".into());
        }
        Ok(mix)
    }
}

impl fmt::Display for Mix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "replay={},wrong_verifier={},unknown={}",
            self.replay, self.wrong_verifier, self.unknown
        )
    }
}

pub struct Job {
    pub kind: Kind,
    /// Index of the seeded code this request presents (`None` for unknown codes).
    pub code: Option<u32>,
    pub request: Vec<u8>,
}

pub struct Plan {
    pub jobs: Vec<Job>,
    pub codes: usize,
}

/// What every request needs besides its code.
pub struct Target<'a> {
    pub host: &'a str,
    pub client_id: &'a str,
    pub redirect_uri: Option<&'a str>,
    /// Send the requests as a browser app at this origin would (`Origin`).
    pub origin: Option<&'a str>,
    /// Ask for `Connection: close`: every request on a new connection (and,
    /// over TLS, a new handshake).
    pub close: bool,
}

/// One rightful redemption per seed, in seed order, with the mix's other
/// requests placed among them:
/// - a wrong verifier for a code goes just before its redemption;
/// - a replay presents a code whose redemption was queued `replay_lag`
///   requests earlier (so it has usually been answered);
/// - an unknown code is random.
pub fn build(seeds: &[Seed], mix: Mix, target: &Target<'_>, replay_lag: usize) -> Plan {
    let mut rng = fastrand::Rng::with_seed(0x0a07_4c0d);
    // Per rightful redemption, how many of each other kind to add so that
    // they end up with their share of all requests.
    let per_redeem = |share: f64| share / (1.0 - mix.total());
    let (p_replay, p_wrong, p_unknown) = (
        per_redeem(mix.replay),
        per_redeem(mix.wrong_verifier),
        per_redeem(mix.unknown),
    );
    let mut jobs = Vec::with_capacity(seeds.len() + seeds.len() / 4);
    for (index, seed) in seeds.iter().enumerate() {
        let code = u32::try_from(index).ok();
        if rng.f64() < p_wrong {
            jobs.push(Job {
                kind: Kind::WrongVerifier,
                code,
                request: request(target, seed, &random_token(&mut rng)),
            });
        }
        jobs.push(Job {
            kind: Kind::Redeem,
            code,
            request: request(target, seed, &seed.code_verifier),
        });
        if rng.f64() < p_unknown {
            let unknown = Seed {
                code: random_token(&mut rng),
                code_verifier: random_token(&mut rng),
                client_id: None,
                redirect_uri: None,
            };
            jobs.push(Job {
                kind: Kind::Unknown,
                code: None,
                request: request(target, &unknown, &unknown.code_verifier),
            });
        }
        if rng.f64() < p_replay && index >= replay_lag {
            let earlier = index - replay_lag;
            if let Some(seed) = seeds.get(earlier) {
                jobs.push(Job {
                    kind: Kind::Replay,
                    code: u32::try_from(earlier).ok(),
                    request: request(target, seed, &seed.code_verifier),
                });
            }
        }
    }
    Plan {
        jobs,
        codes: seeds.len(),
    }
}

/// The token request a client library sends (RFC 6749 §4.1.3, RFC 7636 §4.5).
fn request(target: &Target<'_>, seed: &Seed, verifier: &str) -> Vec<u8> {
    let client_id = seed.client_id.as_deref().unwrap_or(target.client_id);
    let redirect_uri = match &seed.redirect_uri {
        Some(explicit) => explicit.as_deref(),
        None => target.redirect_uri,
    };
    let mut body = format!(
        "grant_type=authorization_code&code={}&client_id={}&code_verifier={}",
        form_encode(&seed.code),
        form_encode(client_id),
        form_encode(verifier)
    );
    if let Some(uri) = redirect_uri {
        body.push_str("&redirect_uri=");
        body.push_str(&form_encode(uri));
    }
    let mut request = post_form(target.host, "/oauth/token", &body);
    if let Some(origin) = target.origin {
        insert_header(&mut request, "Origin", origin);
    }
    if target.close {
        insert_header(&mut request, "Connection", "close");
    }
    request
}

/// Add `name: value` to a prebuilt request's head, right after the request
/// line.
pub fn insert_header(request: &mut Vec<u8>, name: &str, value: &str) {
    let at = request
        .windows(2)
        .position(|w| w == b"\r\n")
        .map_or(0, |i| i + 2);
    let line = format!("{name}: {value}\r\n");
    request.splice(at..at, line.into_bytes());
}

/// application/x-www-form-urlencoded (WHATWG URL §5.2): unreserved bytes
/// as they are, space as `+`, everything else percent-encoded.
pub fn form_encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'*' => {
                out.push(char::from(byte))
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// 32 random bytes, base64url: the shape of a real code or verifier (RFC 7636
/// §4.1), so unknown codes and wrong verifiers pass syntax checks and reach
/// the store. Not secret: the generator's RNG is seeded for repeatable plans.
fn random_token(rng: &mut fastrand::Rng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    (0..43)
        .map(|_| char::from(rng.choice(ALPHABET.iter()).copied().unwrap_or(b'A')))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seeds(n: usize) -> Vec<Seed> {
        (0..n)
            .map(|i| Seed {
                code: format!("code{i}"),
                code_verifier: format!("verifier{i}"),
                client_id: None,
                redirect_uri: Some(Some("https://app.test/cb?x=1 2".into())),
            })
            .collect()
    }

    const TARGET: Target<'static> = Target {
        host: "127.0.0.1:8080",
        client_id: "loadtest",
        redirect_uri: None,
        origin: None,
        close: false,
    };

    #[test]
    fn without_a_mix_each_code_is_sent_once_in_order() {
        let plan = build(&seeds(100), Mix::default(), &TARGET, 10);
        assert_eq!(plan.jobs.len(), 100);
        for (i, job) in plan.jobs.iter().enumerate() {
            assert_eq!(job.kind, Kind::Redeem);
            assert_eq!(job.code, Some(i as u32));
        }
        let text = String::from_utf8(plan.jobs[3].request.clone()).expect("utf-8");
        assert!(text.starts_with("POST /oauth/token HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n"));
        assert!(text.ends_with(
            "\r\n\r\ngrant_type=authorization_code&code=code3&client_id=loadtest&code_verifier=verifier3&redirect_uri=https%3A%2F%2Fapp.test%2Fcb%3Fx%3D1+2"
        ));
    }

    #[test]
    fn a_mix_gets_its_shares_and_keeps_one_rightful_redemption_per_code() {
        let mix: Mix = "replay=0.1,wrong_verifier=0.05,unknown=0.05"
            .parse()
            .expect("mix");
        let plan = build(&seeds(20_000), mix, &TARGET, 128);
        let count = |kind| plan.jobs.iter().filter(|j| j.kind == kind).count();
        assert_eq!(count(Kind::Redeem), 20_000);
        let total = plan.jobs.len() as f64;
        for (kind, share) in [
            (Kind::Replay, 0.1),
            (Kind::WrongVerifier, 0.05),
            (Kind::Unknown, 0.05),
        ] {
            let got = count(kind) as f64 / total;
            assert!((got - share).abs() < 0.01, "{kind:?}: {got}");
        }
        // A replay always follows its code's redemption by the lag.
        let position: std::collections::HashMap<u32, usize> = plan
            .jobs
            .iter()
            .enumerate()
            .filter(|(_, j)| j.kind == Kind::Redeem)
            .filter_map(|(i, j)| Some((j.code?, i)))
            .collect();
        for (i, job) in plan.jobs.iter().enumerate() {
            if job.kind == Kind::Replay {
                assert!(position[&job.code.expect("code")] + 128 <= i);
            }
        }
    }

    #[test]
    fn mix_parsing_names_what_is_wrong() {
        assert!("replay=2".parse::<Mix>().is_err());
        assert!("bogus=0.1".parse::<Mix>().is_err());
        assert!("replay=0.5,unknown=0.45".parse::<Mix>().is_err());
        assert_eq!("".parse::<Mix>(), Ok(Mix::default()));
    }
}
