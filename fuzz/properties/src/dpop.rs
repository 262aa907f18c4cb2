//! The `DPoP` header (RFC 9449): [`dpop_header`] for the fuzzer's bytes,
//! [`dpop_case`] for a structured mutation of a valid proof ([`DpopCase`]).
//!
//! Every header is checked by [`DpopPolicy::check`] under three policies
//! (the default algorithms; all four; all four with nonces required) and
//! judged here, independently of the service's code (with `ring`,
//! `serde_json`, `base64` and `url`), by what docs/dpop.md promises:
//!
//! - An accepted proof is one this module accepts too: one JWS of three
//!   canonical base64url parts; a header and claims that are JSON objects
//!   naming no member the check reads twice; `typ` `dpop+jwt`; no `crit`;
//!   an `alg` of the policy; a public `jwk` of that algorithm's key type,
//!   without any private member (even `null`) and not symmetric, whose key
//!   verifies the signature (`ring`); `jti` of 1 to 256 bytes, `htm`
//!   `POST`, `htu` naming the token endpoint, `iat` in the window (or,
//!   with nonces, a live nonce). Its `jkt` is the RFC 7638 thumbprint
//!   computed here, its replay key the first 128 bits of
//!   SHA-256(thumbprint || jti), and it carries a fresh nonce exactly when
//!   its own is of the previous step.
//! - A proof this module accepts is accepted (the property is not met by
//!   refusing everything), unless its `htu` is a spelling whose verdict is
//!   not known here (only the ones listed below are).
//! - `use_dpop_nonce` only when nonces are required, for a proof that passes
//!   every other check, with a nonce of the current step.
//! - Any other refusal is `invalid_dpop_proof` with a description that is
//!   short, non-empty, within RFC 6749 §5.2's characters, and never echoes
//!   a long piece of the input: no 40 bytes of the header, of a part of
//!   it, of a part decoded, or of a JSON string in a part (unescaped).
//!
//! The independent check is `judge.rs`; the keys, the structured cases and
//! the menus they pick from, `case.rs`.

mod case;
mod judge;

use std::sync::OnceLock;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};

use token_endpoint::dpop::jwk::Alg;
use token_endpoint::dpop::nonce::Nonces;
use token_endpoint::dpop::{DpopPolicy, NonceMode, ProofError};

use self::case::{base_claims, keys, object};
pub use self::case::{
    key_member, values, values_for, DpopCase, Edit, Shape, SignWith, Signer, Wire, CLAIM_NAMES,
    HEADER_NAMES, JWK_NAMES,
};
use self::judge::{judge, Judged, Refusal, LENIENT_STANDARD, LENIENT_URL_SAFE};

/// The clock of every check: a multiple of the nonce step (60 s).
pub const NOW: u64 = 1_800_000_000;
/// The token endpoint's URL, as discovery advertises it.
pub const HTU: &str = "https://id.test/oauth/token";
const MAX_AGE_SECS: u64 = 60;
const MAX_FUTURE_SECS: u64 = 5;
const NONCE_STEP_SECS: u64 = 60;
const NONCE_SECRET: &[u8] = b"fuzz-dpop-nonce-secret, 32 bytes or more";
/// The longest `error_description` accepted (as for the other parsers).
const MAX_DESCRIPTION_LEN: usize = 256;
/// A description may show a value of the proof (at most 32 characters,
/// between quotes or followed by `...`: 36 bytes); never 40 bytes of the
/// input.
const ECHO_WINDOW: usize = 40;

/// Spellings of the token endpoint's URL that name it (RFC 3986 §6.2.2,
/// §6.2.3; query and fragment ignored).
pub const HTU_SAME: &[&str] = &[
    "https://id.test/oauth/token",
    "HTTPS://ID.TEST/oauth/token",
    "https://id.test:443/oauth/token",
    "https://id.test/oauth/%74oken",
    "https://id.test/oauth/./token",
    "https://id.test/a/../oauth/token",
    "https://id.test/oauth/%2E/token",
    "https://id.test/oauth/token?x=1",
    "https://id.test/oauth/token#frag",
    "https://id.test/oauth/token?",
];

/// Spellings of other URLs, or of none.
pub const HTU_DIFFERENT: &[&str] = &[
    "http://id.test/oauth/token",
    "https://id.test:8443/oauth/token",
    "https://evil.test/oauth/token",
    "https://id.test/oauth/token/",
    "https://id.test/OAUTH/token",
    "https://id.test/oauth/revoke",
    "https://user@id.test/oauth/token",
    "https://id.test/oauth%2Ftoken",
    "https://id.test/oauth/token%",
    "https://id.test\\oauth/token",
    " https://id.test/oauth/token",
    "https://id.test/oauth/to\tken",
    "/oauth/token",
    "ftp://id.test/oauth/token",
    "",
];

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// What one policy answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Accepted,
    Refused,
    NonceAsked,
}

/// The `DPoP` header parser on the fuzzer's bytes: `input` as a header
/// value; as the payload of a proof signed with a valid header, and as the
/// header of a proof with valid claims (so that the fuzzer's bytes reach
/// the checks behind the signature); and read as a [`DpopCase`], a
/// structured mutation of a valid proof.
pub fn dpop_header(input: &[u8]) {
    check_header(input);
    let signer = keys().get(Signer::EdDsa, false);
    let header = object(&signer.header_members(), &Shape::default());
    check_header(&signer.sign_parts(&header, input, &SignWith::Own));
    let claims = object(&base_claims(), &Shape::default());
    check_header(&signer.sign_parts(input, &claims, &SignWith::Own));
    dpop_case(&DpopCase::from_bytes(input));
}

/// A structured mutation of a valid proof, rendered and checked under each
/// policy: what each answered (default algorithms, all, with nonces).
pub fn dpop_case(case: &DpopCase) -> [Outcome; 3] {
    check_header(&case.render())
}

/// `header` checked under every policy.
pub fn check_header(header: &[u8]) -> [Outcome; 3] {
    let pieces = Pieces::of(header);
    let judged = judge(header);
    let policies = policies();
    [
        check_one(header, &pieces, &judged, &policies.default),
        check_one(header, &pieces, &judged, &policies.all),
        check_one(header, &pieces, &judged, &policies.nonces),
    ]
}

fn check_one(header: &[u8], pieces: &Pieces, judged: &Judged, policy: &Policy) -> Outcome {
    let expected = judged.under(policy);
    match policy.check.check(header, NOW) {
        Ok(proof) => {
            let accepted = match expected {
                Ok(accepted) => accepted,
                Err(Refusal::Invalid(why)) => panic!(
                    "a proof is accepted only if it passes every check; this one fails the independent check: {why} (policy {})",
                    policy.name
                ),
                Err(Refusal::NeedsNonce) => panic!(
                    "a proof without a live nonce is not accepted when nonces are required"
                ),
            };
            assert!(
                proof.jkt == URL_SAFE_NO_PAD.encode(accepted.thumbprint),
                "jkt is the RFC 7638 SHA-256 thumbprint of the proof's jwk, computed independently"
            );
            let mut hashed = accepted.thumbprint.to_vec();
            hashed.extend_from_slice(accepted.jti.as_bytes());
            assert!(
                digest(&SHA256, &hashed).as_ref().get(..16) == Some(proof.replay.key.as_slice()),
                "the replay key is the first 128 bits of SHA-256(thumbprint || jti)"
            );
            let ttl = if policy.nonces {
                3 * NONCE_STEP_SECS + 1
            } else {
                MAX_AGE_SECS + MAX_FUTURE_SECS + 1
            };
            assert_eq!(
                proof.replay.ttl.as_secs(),
                ttl,
                "the replay key lives as long as the proof could be accepted"
            );
            let fresh = accepted.fresh_nonce.then(|| policy.nonce(NOW));
            assert!(
                proof.next_nonce == fresh,
                "a fresh nonce comes with the answer exactly when the proof's is of the previous step"
            );
            Outcome::Accepted
        }
        Err(ProofError::Invalid(description)) => {
            check_description(&description, pieces);
            match expected {
                Err(Refusal::Invalid(_)) => {}
                _ if judged.htu_unsure => {}
                Ok(_) => panic!(
                    "a proof that passes every check (independent check) is accepted (policy {})",
                    policy.name
                ),
                Err(Refusal::NeedsNonce) => panic!(
                    "a proof that passes every check but the nonce is answered use_dpop_nonce"
                ),
            }
            Outcome::Refused
        }
        Err(ProofError::UseNonce { description, nonce }) => {
            assert!(
                policy.nonces,
                "use_dpop_nonce only when nonces are required"
            );
            check_description(description, pieces);
            assert!(
                nonce == policy.nonce(NOW),
                "use_dpop_nonce hands out a nonce of the current step"
            );
            assert!(
                matches!(expected, Err(Refusal::NeedsNonce)),
                "use_dpop_nonce only for a proof that passes every other check and lacks a live nonce"
            );
            Outcome::NonceAsked
        }
    }
}

/// Short, non-empty, RFC 6749 §5.2's characters, no echo of the input.
fn check_description(description: &str, pieces: &Pieces) {
    assert!(!description.is_empty(), "a refusal says why");
    assert!(
        description.len() <= MAX_DESCRIPTION_LEN,
        "a description is a fixed text, never the input"
    );
    // RFC 6749 §5.2: error_description "MUST NOT include characters
    // outside the set %x20-21 / %x23-5B / %x5D-7E".
    assert!(
        description
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "a description uses only the characters RFC 6749 section 5.2 allows"
    );
    // Windows are compared by a rolling hash first, and by their bytes
    // only when the hashes match: a byte comparison of every window would
    // hand libFuzzer the description's text (its memcmp hooks feed what an
    // input is compared with back into inputs), and it then puts 40 bytes
    // of it in the proof, an "echo" the service never made (seen on the
    // first run). The pieces' hashes are computed once per header, and
    // looked up in a bitmap first: this check took most of the fuzzer's
    // time.
    let own = window_hashes(description.as_bytes());
    let mut bitmap = [0u64; 1024];
    for hash in &own {
        let (word, bit) = bitmap_position(*hash);
        if let Some(word) = bitmap.get_mut(word) {
            *word |= bit;
        }
    }
    let echoed = |piece: &[u8], start: usize| {
        let window = piece.get(start..start + ECHO_WINDOW).unwrap_or_default();
        description
            .as_bytes()
            .windows(ECHO_WINDOW)
            .any(|own| own == window)
    };
    for (piece, hashes) in pieces.pieces.iter().zip(&pieces.hashes) {
        for (start, hash) in hashes.iter().enumerate() {
            let (word, bit) = bitmap_position(*hash);
            if bitmap.get(word).is_some_and(|word| word & bit != 0)
                && own.contains(hash)
                && echoed(piece, start)
            {
                panic!("a description never echoes more than a short piece of the proof");
            }
        }
    }
}

/// Where a window's hash sits in a 65,536-bit bitmap.
fn bitmap_position(hash: u64) -> (usize, u64) {
    let index = (hash >> 48) as usize;
    (index / 64, 1 << (index % 64))
}

/// A polynomial hash of each [`ECHO_WINDOW`]-byte window of `bytes`, in
/// order (none if `bytes` is shorter), rolled in one pass.
fn window_hashes(bytes: &[u8]) -> Vec<u64> {
    const BASE: u64 = 0x0100_0000_01b3;
    let Some(first) = bytes.get(..ECHO_WINDOW) else {
        return Vec::new();
    };
    let top = BASE.wrapping_pow(ECHO_WINDOW as u32 - 1);
    let mut hash = first.iter().fold(0u64, |hash, b| {
        hash.wrapping_mul(BASE).wrapping_add(u64::from(*b))
    });
    let mut hashes = Vec::with_capacity(bytes.len() - ECHO_WINDOW + 1);
    hashes.push(hash);
    let entering = bytes.get(ECHO_WINDOW..).unwrap_or_default();
    for (out, into) in bytes.iter().zip(entering) {
        hash = hash
            .wrapping_sub(u64::from(*out).wrapping_mul(top))
            .wrapping_mul(BASE)
            .wrapping_add(u64::from(*into));
        hashes.push(hash);
    }
    hashes
}

/// What a description must not echo: the header, its parts, the parts
/// decoded, and every JSON string in them, unescaped; with the hashes of
/// their windows.
struct Pieces {
    pieces: Vec<Vec<u8>>,
    hashes: Vec<Vec<u64>>,
}

impl Pieces {
    fn of(header: &[u8]) -> Self {
        let mut pieces = vec![header.to_vec()];
        for part in header.split(|b| *b == b'.') {
            pieces.push(part.to_vec());
            let decoded = LENIENT_URL_SAFE
                .decode(part)
                .or_else(|_| LENIENT_STANDARD.decode(part));
            if let Ok(decoded) = decoded {
                pieces.extend(json_strings(&decoded));
                pieces.push(decoded);
            }
        }
        pieces.retain(|piece| piece.len() >= ECHO_WINDOW);
        let hashes = pieces.iter().map(|piece| window_hashes(piece)).collect();
        Self { pieces, hashes }
    }
}

/// Every well-formed JSON string literal in `bytes`, unescaped.
fn json_strings(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut found = Vec::new();
    let mut rest = bytes;
    while let Some(start) = rest.iter().position(|b| *b == b'"') {
        let after = rest.get(start + 1..).unwrap_or_default();
        let mut escaped = false;
        let end = after.iter().position(|b| {
            let closes = *b == b'"' && !escaped;
            escaped = *b == b'\\' && !escaped;
            closes
        });
        let Some(end) = end else { break };
        if let Some(literal) = rest.get(start..start + end + 2) {
            if let Ok(text) = serde_json::from_slice::<String>(literal) {
                found.push(text.into_bytes());
            }
        }
        rest = after.get(end + 1..).unwrap_or_default();
    }
    found
}

// ---------------------------------------------------------------------------
// The policies
// ---------------------------------------------------------------------------

struct Policy {
    name: &'static str,
    algorithms: Vec<&'static str>,
    nonces: bool,
    check: DpopPolicy,
    issuer: Nonces,
}

impl Policy {
    fn new(name: &'static str, algorithms: &[Alg], nonces: bool) -> Self {
        let mode = if nonces {
            NonceMode::Required(Nonces::new(NONCE_SECRET, NONCE_STEP_SECS))
        } else {
            NonceMode::Off
        };
        let check = match DpopPolicy::new(
            algorithms.to_vec(),
            MAX_AGE_SECS,
            MAX_FUTURE_SECS,
            mode,
            HTU,
        ) {
            Ok(check) => check,
            Err(_) => panic!("the token endpoint's URL is a URL"),
        };
        Self {
            name,
            algorithms: algorithms.iter().map(|alg| alg.name()).collect(),
            nonces,
            check,
            issuer: Nonces::new(NONCE_SECRET, NONCE_STEP_SECS),
        }
    }

    /// The nonce the service issues at `now` (a server's opaque value: a
    /// live one is one it issued, compared here as a string).
    fn nonce(&self, now: u64) -> String {
        self.issuer.issue(now)
    }
}

struct Policies {
    default: Policy,
    all: Policy,
    nonces: Policy,
}

fn policies() -> &'static Policies {
    static POLICIES: OnceLock<Policies> = OnceLock::new();
    POLICIES.get_or_init(|| Policies {
        default: Policy::new("default", &[Alg::Es256, Alg::EdDsa], false),
        all: Policy::new("all algorithms", &Alg::ALL, false),
        nonces: Policy::new("nonces required", &Alg::ALL, true),
    })
}

/// A nonce of the step `steps` away from [`NOW`]'s, as a JSON string.
pub fn nonce_json(steps: i64) -> String {
    let at = NOW.saturating_add_signed(steps * NONCE_STEP_SECS as i64);
    format!("\"{}\"", policies().nonces.nonce(at))
}
