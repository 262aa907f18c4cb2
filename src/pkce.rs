//! PKCE (RFC 7636): the code verifier's syntax and its check against the
//! stored challenge, and what an authorization request may ask for: a
//! challenge method the client may use, and a challenge of the right syntax.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use subtle::ConstantTimeEq;

/// A `code_verifier` that passed the syntax check of RFC 7636 §4.1:
/// 43 to 128 characters of `[A-Za-z0-9-._~]`.
///
/// The S256 challenge it answers is computed once, on construction, so the
/// store and the final check never hash twice.
pub struct CodeVerifier {
    verifier: String,
    s256_challenge: String,
}

/// Why a `code_verifier` is not one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifierError {
    #[error("code_verifier must be 43 to 128 characters long (RFC 7636 section 4.1), got {0}")]
    Length(usize),
    #[error(
        "code_verifier may contain only the characters [A-Za-z0-9-._~] (RFC 7636 section 4.1)"
    )]
    Charset,
}

impl CodeVerifier {
    pub fn parse(verifier: String) -> Result<Self, VerifierError> {
        let len = verifier.len();
        if !(43..=128).contains(&len) {
            return Err(VerifierError::Length(verifier.chars().count()));
        }
        if !verifier.bytes().all(is_unreserved) {
            return Err(VerifierError::Charset);
        }
        let s256_challenge = s256_challenge(&verifier);
        Ok(Self {
            verifier,
            s256_challenge,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.verifier
    }

    /// `BASE64URL-ENCODE(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
    pub fn s256_challenge(&self) -> &str {
        &self.s256_challenge
    }

    /// The challenge this verifier must match under `method`, or `None` when
    /// the method is not one this service knows.
    pub fn challenge_for(&self, method: ChallengeMethod) -> &str {
        match method {
            ChallengeMethod::S256 => &self.s256_challenge,
            ChallengeMethod::Plain => &self.verifier,
        }
    }
}

impl std::fmt::Debug for CodeVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("CodeVerifier([redacted])")
    }
}

/// `code_challenge_method` of RFC 7636 §4.3.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum ChallengeMethod {
    S256,
    #[serde(rename = "plain")]
    Plain,
}

impl ChallengeMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::S256 => "S256",
            Self::Plain => "plain",
        }
    }
}

/// Why an authorization request's `code_challenge_method` is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MethodError {
    /// `plain`, said or implied, for a client not registered for it.
    #[error("code_challenge_method must be S256 (RFC 7636 section 4.4.1: transform algorithm not supported)")]
    PlainNotAllowed,
    #[error("code_challenge_method must be S256 or plain")]
    Unknown,
}

impl ChallengeMethod {
    /// The method an authorization request asks for, if the client may use
    /// it. RFC 7636 §4.3: a missing method means `plain`, which only a client
    /// registered with `allow_plain` may use (S256 is mandatory to
    /// implement, and `plain` exposes the verifier to whoever sees the
    /// authorization request).
    pub fn requested(method: Option<&str>, allow_plain: bool) -> Result<Self, MethodError> {
        match method {
            Some("S256") => Ok(Self::S256),
            None | Some("plain") if allow_plain => Ok(Self::Plain),
            None | Some("plain") => Err(MethodError::PlainNotAllowed),
            Some(_) => Err(MethodError::Unknown),
        }
    }
}

/// A `code_challenge` of the right syntax for its method (RFC 7636 §4.2):
/// for S256, the base64url of a SHA-256 digest (43 characters); for
/// `plain`, a verifier itself (43 to 128 characters of `[A-Za-z0-9-._~]`).
/// A code bound to anything else could never be redeemed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeChallenge {
    challenge: String,
    method: ChallengeMethod,
}

/// Why a `code_challenge` cannot be one for its method.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("code_challenge is not the BASE64URL of a SHA-256 digest (43 characters) or a verifier (RFC 7636 section 4.2)")]
pub struct ChallengeError;

impl CodeChallenge {
    pub fn parse(challenge: String, method: ChallengeMethod) -> Result<Self, ChallengeError> {
        let lengths = match method {
            ChallengeMethod::S256 => 43..=43,
            ChallengeMethod::Plain => 43..=128,
        };
        if !lengths.contains(&challenge.len()) || !challenge.bytes().all(is_unreserved) {
            return Err(ChallengeError);
        }
        Ok(Self { challenge, method })
    }

    pub fn method(&self) -> ChallengeMethod {
        self.method
    }

    /// The challenge as the code record stores it.
    pub fn into_string(self) -> String {
        self.challenge
    }
}

/// RFC 3986 §2.3 `unreserved`: the characters of a verifier, and of a code.
pub fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// `BASE64URL-ENCODE(SHA256(ASCII(verifier)))`, computed with `ring`.
pub fn s256_challenge(verifier: &str) -> String {
    URL_SAFE_NO_PAD.encode(digest(&SHA256, verifier.as_bytes()))
}

/// RFC 7636 §4.6: does `verifier` answer `challenge` under `method`?
///
/// The comparison runs in constant time, so the time it takes says nothing
/// about how much of the challenge matched.
pub fn verify(verifier: &CodeVerifier, method: ChallengeMethod, challenge: &str) -> bool {
    verifier
        .challenge_for(method)
        .as_bytes()
        .ct_eq(challenge.as_bytes())
        .into()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7636 Appendix B: the example verifier and its S256 challenge.
    #[test]
    fn appendix_b_vector() {
        let v = CodeVerifier::parse("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk".into()).unwrap();
        assert_eq!(
            v.s256_challenge(),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
        assert!(verify(
            &v,
            ChallengeMethod::S256,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        ));
        assert!(!verify(
            &v,
            ChallengeMethod::S256,
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cN"
        ));
    }

    #[test]
    fn plain_compares_the_verifier_itself() {
        let raw = "a".repeat(43);
        let v = CodeVerifier::parse(raw.clone()).unwrap();
        assert!(verify(&v, ChallengeMethod::Plain, &raw));
        assert!(!verify(&v, ChallengeMethod::S256, &raw));
    }

    #[test]
    fn syntax_bounds() {
        assert_eq!(
            CodeVerifier::parse("a".repeat(42)).unwrap_err(),
            VerifierError::Length(42)
        );
        assert!(CodeVerifier::parse("a".repeat(43)).is_ok());
        assert!(CodeVerifier::parse("-._~".repeat(32)).is_ok());
        assert_eq!(
            CodeVerifier::parse("a".repeat(129)).unwrap_err(),
            VerifierError::Length(129)
        );
        assert_eq!(
            CodeVerifier::parse(format!("{}+", "a".repeat(42))).unwrap_err(),
            VerifierError::Charset
        );
        assert_eq!(
            CodeVerifier::parse(format!("{}é", "a".repeat(42))).unwrap_err(),
            VerifierError::Charset
        );
    }

    /// RFC 7636 §4.3: no method is `plain`; `plain` only for a client
    /// registered for it; S256 for anyone; nothing else.
    #[test]
    fn requested_methods() {
        assert_eq!(
            ChallengeMethod::requested(Some("S256"), false),
            Ok(ChallengeMethod::S256)
        );
        assert_eq!(
            ChallengeMethod::requested(None, true),
            Ok(ChallengeMethod::Plain)
        );
        assert_eq!(
            ChallengeMethod::requested(Some("plain"), true),
            Ok(ChallengeMethod::Plain)
        );
        assert_eq!(
            ChallengeMethod::requested(None, false),
            Err(MethodError::PlainNotAllowed)
        );
        assert_eq!(
            ChallengeMethod::requested(Some("plain"), false),
            Err(MethodError::PlainNotAllowed)
        );
        for other in ["s256", "S512", "PLAIN", ""] {
            assert_eq!(
                ChallengeMethod::requested(Some(other), true),
                Err(MethodError::Unknown),
                "{other}"
            );
        }
    }

    #[test]
    fn challenge_syntax_depends_on_the_method() {
        let s256 = s256_challenge(&"a".repeat(43));
        assert!(CodeChallenge::parse(s256.clone(), ChallengeMethod::S256).is_ok());
        assert!(CodeChallenge::parse(s256, ChallengeMethod::Plain).is_ok());
        for (challenge, method) in [
            ("a".repeat(42), ChallengeMethod::S256),
            ("a".repeat(44), ChallengeMethod::S256),
            ("a".repeat(42), ChallengeMethod::Plain),
            ("a".repeat(129), ChallengeMethod::Plain),
            (format!("{}=", "a".repeat(42)), ChallengeMethod::S256),
            (format!("{}+", "a".repeat(42)), ChallengeMethod::Plain),
            (format!("{}é", "a".repeat(41)), ChallengeMethod::Plain),
        ] {
            assert_eq!(
                CodeChallenge::parse(challenge.clone(), method),
                Err(ChallengeError),
                "{challenge} {method:?}"
            );
        }
        let plain = CodeChallenge::parse("-._~".repeat(32), ChallengeMethod::Plain).unwrap();
        assert_eq!(plain.method(), ChallengeMethod::Plain);
        assert_eq!(plain.into_string(), "-._~".repeat(32));
    }
}
