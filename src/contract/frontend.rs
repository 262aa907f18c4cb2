//! The login frontend's side of the contract, as a library: mint a code and
//! a PKCE pair, and build the record to store under it. Used by the
//! `issue-code` subcommand, the embedded default's `/dev/codes`, the tests and
//! the load generator.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Deserialize;
use serde_json::{Map, Value};

use crate::contract::record::{CodeRecord, Resource};
use crate::pkce::{s256_challenge, ChallengeMethod, CodeChallenge};

/// What the frontend knows about a grant once the user has authenticated.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Grant {
    pub client_id: String,
    #[serde(default)]
    pub redirect_uri: Option<String>,
    pub sub: String,
    #[serde(default)]
    pub scope: String,
    #[serde(default)]
    pub nonce: Option<String>,
    #[serde(default)]
    pub auth_time: Option<u64>,
    #[serde(default)]
    pub acr: Option<String>,
    #[serde(default)]
    pub amr: Option<Vec<String>>,
    #[serde(default)]
    pub claims: Option<Map<String, Value>>,
    #[serde(default)]
    pub resource: Option<Resource>,
    /// RFC 9449 §10: the authorization request's `dpop_jkt`, binding the
    /// code to that DPoP key.
    #[serde(default)]
    pub dpop_jkt: Option<String>,
    /// `S256` unless the client was registered for `plain`.
    #[serde(default = "default_method")]
    pub code_challenge_method: ChallengeMethod,
}

fn default_method() -> ChallengeMethod {
    ChallengeMethod::S256
}

impl Grant {
    pub fn new(client_id: &str, sub: &str, scope: &str) -> Self {
        Self {
            client_id: client_id.into(),
            redirect_uri: None,
            sub: sub.into(),
            scope: scope.into(),
            nonce: None,
            auth_time: None,
            acr: None,
            amr: None,
            claims: None,
            resource: None,
            dpop_jkt: None,
            code_challenge_method: ChallengeMethod::S256,
        }
    }
}

/// A freshly minted code and the verifier that redeems it: what the client
/// would hold after the authorization response.
#[derive(Clone)]
pub struct IssuedCode {
    pub code: String,
    pub verifier: String,
}

impl std::fmt::Debug for IssuedCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("IssuedCode([redacted])")
    }
}

/// The system random number generator failed, so no code, verifier or
/// secret can be made. Nothing is issued: the caller answers 503, or exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the system random number generator failed")]
pub struct RngUnavailable;

/// 256 random bits, base64url (43 characters): a code or a verifier.
pub fn random_token() -> Result<String, RngUnavailable> {
    token_from(|bytes| SystemRandom::new().fill(bytes))
}

/// `ring`'s generators cannot be implemented outside it, so the one source
/// of randomness is passed as a function: a test can make it fail.
fn token_from(
    fill: impl FnOnce(&mut [u8]) -> Result<(), ring::error::Unspecified>,
) -> Result<String, RngUnavailable> {
    let mut bytes = [0u8; 32];
    fill(&mut bytes).map_err(|_| RngUnavailable)?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// Why a code was not issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    #[error(transparent)]
    Rng(#[from] RngUnavailable),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// A new code, a new verifier, and the record that binds them to `grant`.
pub fn prepare(grant: Grant) -> Result<(IssuedCode, CodeRecord), RngUnavailable> {
    let issued = IssuedCode {
        code: random_token()?,
        verifier: random_token()?,
    };
    let code_challenge = match grant.code_challenge_method {
        ChallengeMethod::S256 => s256_challenge(&issued.verifier),
        ChallengeMethod::Plain => issued.verifier.clone(),
    };
    Ok((issued, record(grant, code_challenge)))
}

/// The record that binds a code to `grant` and `code_challenge`.
fn record(grant: Grant, code_challenge: String) -> CodeRecord {
    CodeRecord {
        client_id: grant.client_id,
        redirect_uri: grant.redirect_uri,
        code_challenge,
        code_challenge_method: grant.code_challenge_method,
        sub: grant.sub,
        scope: grant.scope,
        nonce: grant.nonce,
        auth_time: grant.auth_time,
        acr: grant.acr,
        amr: grant.amr,
        claims: grant.claims,
        resource: grant.resource,
        dpop_jkt: grant.dpop_jkt,
    }
}

/// Mint a code for `grant`, bound to a challenge the client sent (as a real
/// authorization endpoint does), and store it as the frontend would. The
/// client holds the verifier; the code is returned.
pub async fn issue_code_for_challenge(
    store: &crate::store::CodeStore,
    mut grant: Grant,
    code_challenge: CodeChallenge,
    ttl: std::time::Duration,
) -> Result<String, IssueError> {
    let code = random_token()?;
    // The challenge knows its method: the record cannot name another.
    grant.code_challenge_method = code_challenge.method();
    let record = record(grant, code_challenge.into_string());
    store.insert(&code, &record, ttl).await?;
    Ok(code)
}

/// Mint a code for `grant` and store it as the frontend would:
/// `SET <prefix>code:{<code>} <record> EX <ttl> NX`.
pub async fn issue_code(
    store: &crate::store::CodeStore,
    grant: Grant,
    ttl: std::time::Duration,
) -> Result<IssuedCode, IssueError> {
    let (issued, record) = prepare(grant)?;
    store.insert(&issued.code, &record, ttl).await?;
    Ok(issued)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_256_random_bits_in_base64url() {
        let token = random_token().unwrap();
        assert_eq!(token.len(), 43);
        assert!(token.bytes().all(crate::pkce::is_unreserved), "{token}");
        assert_ne!(token, random_token().unwrap());
    }

    /// A failing generator is an error to answer, not a panic.
    #[test]
    fn a_failing_generator_makes_no_token() {
        assert_eq!(
            token_from(|_| Err(ring::error::Unspecified)),
            Err(RngUnavailable)
        );
        assert_eq!(
            token_from(|bytes| {
                bytes.fill(0);
                Ok(())
            })
            .unwrap(),
            "A".repeat(43)
        );
    }
}
