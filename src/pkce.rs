//! PKCE (RFC 7636): the code verifier's syntax and its check against the stored challenge.

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
}
