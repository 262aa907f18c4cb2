//! DPoP (RFC 9449): the proof a client sends in the `DPoP` header to bind
//! its tokens to a key it holds. [`DpopPolicy::check`] makes every check of
//! §4.3 that needs no store, in one pass over the header, before anything
//! is consumed; what it yields ([`Proof`]) carries the key's thumbprint for
//! `cnf.jkt` and the replay key the store claims with the code's read
//! (`SET NX`, [`crate::store::ProofClaim`]), so a proof is accepted once.
//!
//! - `jwk`: the proof's key, its thumbprint and the signature check;
//! - `htu`: the token endpoint's URL, normalised;
//! - `nonce`: server nonces (§8), stateless.
//!
//! docs/dpop.md says what is checked, in which order, and why each default.

pub mod htu;
pub mod jwk;
mod member;
pub mod nonce;

use std::borrow::Cow;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest;
use serde::Deserialize;

use self::htu::TargetUri;
use self::jwk::{shown, Alg, PublicKey, RawJwk};
use self::member::{Member, Object, Present};
use self::nonce::{NonceCheck, Nonces};

/// The longest `DPoP` header accepted, in bytes: an RSA-8192 key's proof
/// fits in about 3 KiB.
pub const MAX_PROOF_LEN: usize = 8 * 1024;
/// The longest `jti` accepted, in bytes. RFC 9449 sets none; 96 random
/// bits need 16 characters, a UUID 36.
pub const MAX_JTI_LEN: usize = 256;

/// What the request's `DPoP` headers hold.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum DpopHeader {
    #[default]
    Absent,
    One(Vec<u8>),
    /// More than one `DPoP` header: refused (§4.3 check 1).
    Repeated,
}

/// When proofs must carry a server nonce.
#[derive(Debug)]
pub enum NonceMode {
    Off,
    Required(Nonces),
}

/// How proofs are checked: the settings, resolved at start-up.
#[derive(Debug)]
pub struct DpopPolicy {
    algorithms: Vec<Alg>,
    max_age_secs: u64,
    max_future_secs: u64,
    nonce: NonceMode,
    htu: TargetUri,
}

/// A proof that passed every check but the replay check, which the store
/// makes ([`Self::replay`]).
#[derive(Debug, Clone)]
pub struct Proof {
    /// The key's RFC 7638 SHA-256 thumbprint, base64url: `cnf.jkt`.
    pub jkt: String,
    /// What the store keeps to accept the proof once.
    pub replay: ReplayClaim,
    /// A fresh nonce for the answer, when the one presented is about to
    /// expire (§8.2).
    pub next_nonce: Option<String>,
}

/// The proof's replay key, the first 128 bits of
/// SHA-256(thumbprint || jti), kept for as long as the proof could be
/// accepted (the `iat` window with its skew, or a nonce's life).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayClaim {
    pub key: [u8; 16],
    pub ttl: Duration,
}

impl ReplayClaim {
    /// The key, base64url (22 characters), for a store's key name.
    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.key)
    }
}

/// Why a proof is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofError {
    /// RFC 9449 `invalid_dpop_proof`.
    Invalid(Cow<'static, str>),
    /// RFC 9449 §8 `use_dpop_nonce`: retry with this nonce.
    UseNonce {
        description: &'static str,
        nonce: String,
    },
}

fn invalid(description: impl Into<Cow<'static, str>>) -> ProofError {
    ProofError::Invalid(description.into())
}

/// The JOSE header, as far as a proof's checks need it, read from a JSON
/// object ([`Object`]). A member given twice is refused by the parser.
#[derive(Deserialize)]
struct Header<'a> {
    #[serde(borrow)]
    typ: Option<Member<'a>>,
    #[serde(borrow)]
    alg: Option<Member<'a>>,
    #[serde(borrow)]
    jwk: Option<Object<RawJwk<'a>>>,
    /// Refused whatever its value, `null` included.
    #[serde(default)]
    crit: Present,
}

/// The claims §4.2 requires, and the nonce, read from a JSON object
/// ([`Object`]). Others are ignored.
#[derive(Deserialize)]
struct Claims<'a> {
    #[serde(borrow)]
    jti: Option<Member<'a>>,
    #[serde(borrow)]
    htm: Option<Member<'a>>,
    #[serde(borrow)]
    htu: Option<Member<'a>>,
    #[serde(borrow)]
    iat: Option<Member<'a>>,
    #[serde(borrow)]
    nonce: Option<Member<'a>>,
}

/// A member that must be text: absent, or of another type, is refused
/// naming it.
fn required_text<'m>(
    member: &'m Option<Member<'_>>,
    part: &str,
    name: &str,
) -> Result<&'m str, ProofError> {
    match member {
        None => Err(invalid(format!("the DPoP proof{part} has no {name}"))),
        Some(member) => member
            .text()
            .ok_or_else(|| invalid(format!("the DPoP proof's {name} is not a string"))),
    }
}

impl DpopPolicy {
    /// Proofs signed with one of `algorithms`, for the token endpoint at
    /// `token_endpoint` (as discovery advertises it), created at most
    /// `max_age_secs` ago and `max_future_secs` ahead of this clock.
    pub fn new(
        algorithms: Vec<Alg>,
        max_age_secs: u64,
        max_future_secs: u64,
        nonce: NonceMode,
        token_endpoint: &str,
    ) -> Result<Self, String> {
        let htu = TargetUri::parse(token_endpoint).ok_or_else(|| {
            format!("the token endpoint's URL {token_endpoint} is not an absolute http(s) URL")
        })?;
        Ok(Self {
            algorithms,
            max_age_secs,
            max_future_secs,
            nonce,
            htu,
        })
    }

    /// The algorithms accepted: discovery's `dpop_signing_alg_values_supported`.
    pub fn algorithms(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.algorithms.iter().map(|alg| alg.name())
    }

    /// Whether proofs must carry a server nonce.
    pub fn nonce_required(&self) -> bool {
        matches!(self.nonce, NonceMode::Required(_))
    }

    /// How long a proof's replay key must be kept: as long as the proof
    /// could be accepted. Without nonces, from its acceptance to the end of
    /// the `iat` window: a proof dated `max_future` ahead is accepted until
    /// `max_future + max_age` from now (forgetting the skew once let
    /// Keycloak evict replay entries early). With nonces, the nonce's life.
    pub fn replay_ttl(&self) -> Duration {
        let window = self.max_age_secs + self.max_future_secs + 1;
        Duration::from_secs(match &self.nonce {
            NonceMode::Off => window,
            NonceMode::Required(nonces) => window.max(nonces.lifetime_secs() + 1),
        })
    }

    /// A nonce for a `use_dpop_nonce` answer, if nonces are required.
    pub fn fresh_nonce(&self, now: u64) -> Option<String> {
        match &self.nonce {
            NonceMode::Off => None,
            NonceMode::Required(nonces) => Some(nonces.issue(now)),
        }
    }

    /// RFC 9449 §4.3 checks 2 to 11 on one `DPoP` header value (check 1,
    /// one header, is the caller's; 12, `ath`, is for resource servers),
    /// at `now` (seconds since the epoch). In order: the header's
    /// syntax, `typ`, `alg`, the key, the signature, then the claims. The
    /// nonce comes last, so a client whose proof is wrong otherwise learns
    /// that first.
    pub fn check(&self, value: &[u8], now: u64) -> Result<Proof, ProofError> {
        if value.len() > MAX_PROOF_LEN {
            return Err(invalid(format!(
                "the DPoP header is longer than {MAX_PROOF_LEN} bytes"
            )));
        }
        let text = std::str::from_utf8(value)
            .ok()
            .filter(|text| text.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                invalid("the DPoP header is not a JWS in compact serialisation (it holds characters outside base64url and '.')")
            })?;
        let mut parts = text.split('.');
        let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                "the DPoP header is not one JWS in compact serialisation (three base64url parts separated by '.')",
            ));
        };
        let header_json = part("header", header_b64)?;
        let Object(header): Object<Header<'_>> =
            serde_json::from_slice(&header_json).map_err(|e| {
                invalid(format!(
                    "the DPoP proof's header is not a JSON object of the expected members: {}",
                    json_error(&e)
                ))
            })?;
        let typ = required_text(&header.typ, "'s header", "typ")?;
        if !is_dpop_jwt(typ) {
            return Err(invalid(format!(
                "the DPoP proof's typ is {}; it must be dpop+jwt",
                shown(typ)
            )));
        }
        if header.crit.0 {
            return Err(invalid(
                "the DPoP proof's header has crit: no extension is understood here (RFC 7515 section 4.1.11)",
            ));
        }
        let alg_name = required_text(&header.alg, "'s header", "alg")?;
        let alg = Alg::named(alg_name)
            .filter(|alg| self.algorithms.contains(alg))
            .ok_or_else(|| {
                invalid(format!(
                    "the DPoP proof's alg {} is not accepted; accepted: {}",
                    shown(alg_name),
                    self.algorithms().collect::<Vec<_>>().join(", ")
                ))
            })?;
        let Some(Object(raw_jwk)) = &header.jwk else {
            return Err(invalid("the DPoP proof's header has no jwk"));
        };
        let key = PublicKey::from_jwk(raw_jwk, alg).map_err(ProofError::Invalid)?;
        let signature = URL_SAFE_NO_PAD.decode(signature_b64).map_err(|_| {
            invalid("the DPoP proof's signature is not canonical base64url without padding")
        })?;
        let signed = text
            .get(..header_b64.len() + 1 + claims_b64.len())
            .ok_or_else(|| invalid("the DPoP header is malformed"))?;
        if !key.verify(alg, signed.as_bytes(), &signature) {
            return Err(invalid(
                "the DPoP proof's signature does not verify with the key in its header",
            ));
        }

        let claims_json = part("payload", claims_b64)?;
        let Object(claims): Object<Claims<'_>> =
            serde_json::from_slice(&claims_json).map_err(|e| {
                invalid(format!(
                    "the DPoP proof's payload is not a JSON object of the expected claims: {}",
                    json_error(&e)
                ))
            })?;
        let jti = required_text(&claims.jti, "", "jti")?;
        if jti.is_empty() || jti.len() > MAX_JTI_LEN {
            return Err(invalid(format!(
                "the DPoP proof's jti must be 1 to {MAX_JTI_LEN} bytes"
            )));
        }
        let htm = required_text(&claims.htm, "", "htm")?;
        if htm != "POST" {
            return Err(invalid(format!(
                "the DPoP proof's htm is {}; this request's method is POST",
                shown(htm)
            )));
        }
        let htu = required_text(&claims.htu, "", "htu")?;
        if !self.htu.matches(htu) {
            return Err(invalid(
                "the DPoP proof's htu is not this token endpoint's URL (token_endpoint in the discovery document)",
            ));
        }
        let iat = match &claims.iat {
            None => return Err(invalid("the DPoP proof has no iat")),
            Some(iat) => iat
                .number()
                .filter(|iat| iat.is_finite())
                .ok_or_else(|| invalid("the DPoP proof's iat is not a number (NumericDate)"))?,
        };

        let next_nonce = match &self.nonce {
            NonceMode::Off => {
                self.check_iat(iat, now)?;
                None
            }
            // The nonce is the server's own clock (§11.1): a proof that
            // carries a live one was made after it was issued, whatever the
            // client's clock says, so `iat` is not held to the window. A
            // client whose clock drifts is told to use a nonce, and its
            // retry succeeds.
            NonceMode::Required(nonces) => {
                let Some(presented) = claims.nonce.as_ref().and_then(Member::text) else {
                    return Err(ProofError::UseNonce {
                        description: "this server requires a DPoP nonce: retry with a new proof whose nonce claim is the DPoP-Nonce header's value",
                        nonce: nonces.issue(now),
                    });
                };
                match nonces.check(presented, now) {
                    NonceCheck::Current => None,
                    NonceCheck::Previous => Some(nonces.issue(now)),
                    NonceCheck::Stale => {
                        return Err(ProofError::UseNonce {
                            description: "the DPoP proof's nonce is not one this server issued, or it has expired: retry with a new proof whose nonce claim is the DPoP-Nonce header's value",
                            nonce: nonces.issue(now),
                        })
                    }
                }
            }
        };

        let mut hashed = digest::Context::new(&digest::SHA256);
        hashed.update(key.thumbprint());
        hashed.update(jti.as_bytes());
        let mut replay_key = [0u8; 16];
        for (to, from) in replay_key.iter_mut().zip(hashed.finish().as_ref()) {
            *to = *from;
        }
        Ok(Proof {
            jkt: key.jkt(),
            replay: ReplayClaim {
                key: replay_key,
                ttl: self.replay_ttl(),
            },
            next_nonce,
        })
    }

    /// §4.3 check 11 without nonces: `iat` at most `max_age` behind this
    /// clock and `max_future` ahead of it.
    fn check_iat(&self, iat: f64, now: u64) -> Result<(), ProofError> {
        // Seconds as f64 are exact far past any real date.
        let now = now as f64;
        if iat < now - self.max_age_secs as f64 {
            return Err(invalid(format!(
                "the DPoP proof's iat is more than {} seconds in the past: make a new proof (is the client's clock right?)",
                self.max_age_secs
            )));
        }
        if iat > now + self.max_future_secs as f64 {
            return Err(invalid(format!(
                "the DPoP proof's iat is more than {} seconds in the future (is the client's clock right?)",
                self.max_future_secs
            )));
        }
        Ok(())
    }
}

/// Whether `jkt` can be a key's SHA-256 thumbprint (RFC 7638): 32 bytes,
/// canonical base64url, 43 characters. What `dpop_jkt` (§10) must be.
pub fn is_thumbprint(jkt: &str) -> bool {
    let mut raw = [0u8; 33];
    jkt.len() == 43 && URL_SAFE_NO_PAD.decode_slice(jkt, &mut raw) == Ok(32)
}

/// RFC 7515 §4.1.9: `typ` is a media type, compared without case, and
/// `application/` may be left out.
fn is_dpop_jwt(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => typ.get(12..).unwrap_or(""),
        _ => typ,
    };
    typ.eq_ignore_ascii_case("dpop+jwt")
}

/// One part of the JWS, decoded.
fn part(name: &str, b64: &str) -> Result<Vec<u8>, ProofError> {
    URL_SAFE_NO_PAD.decode(b64).map_err(|_| {
        invalid(format!(
            "the DPoP proof's {name} is not canonical base64url without padding"
        ))
    })
}

/// A JSON error without the input it quotes, in the characters RFC 6749
/// section 5.2 allows.
fn json_error(error: &serde_json::Error) -> String {
    let text = error.to_string();
    // serde_json appends " at line L column C"; what came before names
    // the member at fault, never its value: serde_json's syntax errors are
    // fixed texts, and the only type errors left are [`Object`]'s and
    // `duplicate field`, which name a member the check reads.
    let text = match text.find(" at line ") {
        Some(end) => text.get(..end).unwrap_or(&text),
        None => &text,
    };
    // One syntax error names `\u0000-\u001F`.
    text.chars()
        .map(|c| match c {
            ' ' | '!' | '#'..='[' | ']'..='~' => c,
            _ => '?',
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use ring::signature::{Ed25519KeyPair, KeyPair};

    use super::*;

    const NOW: u64 = 1_800_000_000;
    const HTU: &str = "https://id.test/oauth/token";

    fn policy() -> DpopPolicy {
        DpopPolicy::new(Alg::ALL.to_vec(), 60, 5, NonceMode::Off, HTU).unwrap()
    }

    fn b64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    /// A proof of a fixed Ed25519 key whose header and claims are the
    /// given JSON texts, `{jwk}` replaced by the key's jwk.
    fn proof(header: &str, claims: &str) -> Vec<u8> {
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let jwk = format!(
            r#"{{"kty":"OKP","crv":"Ed25519","x":"{}"}}"#,
            b64(pair.public_key().as_ref())
        );
        let input = format!(
            "{}.{}",
            b64(header.replace("{jwk}", &jwk).as_bytes()),
            b64(claims.as_bytes())
        );
        let signature = b64(pair.sign(input.as_bytes()).as_ref());
        format!("{input}.{signature}").into_bytes()
    }

    const HEADER: &str = r#"{"typ":"dpop+jwt","alg":"EdDSA","jwk":{jwk}}"#;
    const CLAIMS: &str =
        r#"{"jti":"j-1","htm":"POST","htu":"https://id.test/oauth/token","iat":1800000000}"#;

    #[allow(clippy::panic)] // a test fails by panicking
    fn refused(value: &[u8]) -> String {
        match policy().check(value, NOW) {
            Err(ProofError::Invalid(description)) => description.into_owned(),
            other => panic!("not refused: {other:?}"),
        }
    }

    #[test]
    fn the_reference_proof_is_accepted() {
        assert!(policy().check(&proof(HEADER, CLAIMS), NOW).is_ok());
    }

    /// serde reads a derived struct from an array too, member by member:
    /// these were accepted (found by fuzz/properties' dpop property).
    #[test]
    fn header_claims_and_jwk_are_json_objects_only() {
        let claims = r#"["j-1","POST","https://id.test/oauth/token",1800000000,null]"#;
        let description = refused(&proof(HEADER, claims));
        assert!(description.contains("an array where a JSON object was expected"));
        refused(&proof(r#"["dpop+jwt","EdDSA",{jwk},null]"#, CLAIMS));
        let pair = Ed25519KeyPair::from_seed_unchecked(&[7; 32]).unwrap();
        let x = b64(pair.public_key().as_ref());
        let array_jwk = format!(
            r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":["OKP","Ed25519","{x}",null,null,null]}}"#
        );
        refused(&proof(&array_jwk, CLAIMS));
    }

    /// `crit` is refused whatever its value; `null` was let through.
    #[test]
    fn crit_is_refused_even_null() {
        for crit in ["null", "[]", r#"["exp"]"#] {
            let header =
                format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{{jwk}},"crit":{crit}}}"#);
            assert!(refused(&proof(&header, CLAIMS)).contains("crit"), "{crit}");
        }
    }

    /// A header or jwk that is not an object was quoted whole in the
    /// description (serde's `invalid type: string "..."`), and shown
    /// values used `"`, `\` and `…`, outside RFC 6749 section 5.2's
    /// characters.
    #[test]
    fn descriptions_never_quote_the_proof_and_keep_to_rfc_6749() {
        let secret = "SECRET".repeat(20);
        for header in [
            format!(r#""{secret}""#),
            format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":"{secret}"}}"#),
            format!(r#"{{"typ":"dpop+jwt","alg":"EdDSA","jwk":{{"kty":"{secret}"}}}}"#),
            format!(r#"{{"typ":"a\"b\\c\u00e9{secret}","alg":"EdDSA","jwk":{{jwk}}}}"#),
            "{\"typ\":\"\u{1}\"}".to_owned(),
        ] {
            let description = refused(&proof(&header, CLAIMS));
            // A shown value is cut at 32 characters.
            assert!(!description.contains(&secret[..33]), "{description}");
            assert!(
                description
                    .bytes()
                    .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
                "{description}"
            );
        }
    }

    /// `typ` is a media type: case and the `application/` prefix do not
    /// matter (RFC 7515 §4.1.9); anything else is another type.
    #[test]
    fn typ_is_compared_as_a_media_type() {
        for same in [
            "dpop+jwt",
            "DPoP+JWT",
            "application/dpop+jwt",
            "Application/DPOP+jwt",
        ] {
            assert!(is_dpop_jwt(same), "{same}");
        }
        for other in [
            "jwt",
            "at+jwt",
            "dpop",
            "application/",
            "text/dpop+jwt",
            "dpop+jwt ",
        ] {
            assert!(!is_dpop_jwt(other), "{other}");
        }
    }

    /// A thumbprint is 32 bytes of canonical base64url.
    #[test]
    fn a_thumbprint_is_43_characters_of_base64url() {
        assert!(is_thumbprint("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"));
        for not in [
            "",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4",
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I=",
            "0ZcOCORZNYy+DWpqq30jZyJGHTN0d2HglBV3uiguA4I",
            // Trailing bits set: not the canonical encoding of 32 bytes.
            "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4J",
        ] {
            assert!(!is_thumbprint(not), "{not}");
        }
    }
}
