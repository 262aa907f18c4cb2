//! What makes an authorization request acceptable (RFC 6749 §4.1.1 with
//! PKCE, RFC 7636 §4.3, and RFC 8707 §2 resources), and the frontend's
//! grant it becomes once the user has signed in. The stand-in login page
//! (`GET /dev/authorize`) applies these rules; a real login frontend makes
//! the same checks before it writes a code record.
//!
//! The checks come in two steps because their failures are answered
//! differently (RFC 6749 §4.1.2.1): until the client and its redirect URI
//! are known good ([`recipient`]), an error goes back to the user agent and
//! nowhere else; after that ([`check`]), it goes back to the client in the
//! redirect.

use std::fmt;

use crate::clients::{Client, ClientRegistry};
use crate::contract::frontend::Grant;
use crate::contract::record::{check_resource, Resource, TargetMismatch};
use crate::pkce::{ChallengeError, ChallengeMethod, CodeChallenge, MethodError};

/// The parameters of an authorization request this service reads, as sent:
/// percent-decoded, a parameter sent without a value absent (RFC 6749
/// §3.1). Reading them from a query is the HTTP layer's part.
#[derive(Debug, Default)]
pub struct AuthorizationParams {
    pub response_type: Option<String>,
    pub client_id: Option<String>,
    pub redirect_uri: Option<String>,
    pub scope: Option<String>,
    pub state: Option<String>,
    pub nonce: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    /// RFC 8707: may be repeated.
    pub resource: Vec<String>,
    /// RFC 9449 §10: the thumbprint of the DPoP key the code is bound to.
    pub dpop_jkt: Option<String>,
}

/// Why a request cannot be answered with a redirect: without a registered
/// client and one of its redirect URIs, sending an error there would make
/// this server an open redirector (RFC 6749 §4.1.2.1, §10.15).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum NotRedirected {
    #[error("client_id is required")]
    MissingClientId,
    #[error("client_id names no registered client")]
    UnknownClient,
    #[error("redirect_uri is required")]
    MissingRedirectUri,
    #[error("redirect_uri is not one of this client's redirect_uris")]
    UnregisteredRedirectUri,
}

/// The client the request names, and the redirect URI its answer goes to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub client: &'a Client,
    pub redirect_uri: &'a str,
}

/// Who gets the answer to `params`: a registered client and one of its
/// redirect URIs, by the one matcher the registry validated them for
/// ([`Client::allows_redirect_uri`]: exact, or a loopback IP literal on
/// any port, never anything a browser would read as another host).
pub fn recipient<'a>(
    clients: &'a ClientRegistry,
    params: &'a AuthorizationParams,
) -> Result<Recipient<'a>, NotRedirected> {
    let client_id = params
        .client_id
        .as_deref()
        .ok_or(NotRedirected::MissingClientId)?;
    let client = clients.get(client_id).ok_or(NotRedirected::UnknownClient)?;
    let redirect_uri = params
        .redirect_uri
        .as_deref()
        .ok_or(NotRedirected::MissingRedirectUri)?;
    if !client.allows_redirect_uri(redirect_uri) {
        return Err(NotRedirected::UnregisteredRedirectUri);
    }
    Ok(Recipient {
        client,
        redirect_uri,
    })
}

/// Why a request from a known client is refused; the error goes back to
/// the client in the redirect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthorizeError {
    /// Anything but `response_type=code`.
    UnsupportedResponseType,
    /// This server requires PKCE of every client.
    MissingChallenge,
    Method(MethodError),
    Challenge(ChallengeError),
    /// RFC 8707 §2: a resource the client may not have tokens for.
    Target(TargetMismatch),
    /// A `dpop_jkt` that is not a SHA-256 JWK thumbprint.
    DpopJkt,
}

impl AuthorizeError {
    /// The RFC 6749 §4.1.2.1 (or RFC 8707 §2) `error` code.
    pub fn code(self) -> &'static str {
        match self {
            Self::UnsupportedResponseType => "unsupported_response_type",
            Self::MissingChallenge | Self::Method(_) | Self::Challenge(_) | Self::DpopJkt => {
                "invalid_request"
            }
            Self::Target(_) => "invalid_target",
        }
    }
}

impl fmt::Display for AuthorizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnsupportedResponseType => f.write_str("only response_type=code is supported"),
            Self::MissingChallenge => {
                f.write_str("code_challenge is required: this server requires PKCE (RFC 7636)")
            }
            Self::Method(e) => e.fmt(f),
            Self::Challenge(e) => e.fmt(f),
            Self::Target(mismatch) => f.write_str(mismatch.description()),
            Self::DpopJkt => f.write_str(
                "dpop_jkt is not a JWK SHA-256 thumbprint (43 characters of base64url, RFC 9449 section 10)",
            ),
        }
    }
}

impl std::error::Error for AuthorizeError {}

/// An authorization request that may be granted: what the code record will
/// carry of it.
#[derive(Debug)]
pub struct Authorization {
    scope: String,
    nonce: Option<String>,
    resource: Option<Resource>,
    challenge: CodeChallenge,
    dpop_jkt: Option<String>,
}

/// Whether `client` may be granted what `params` ask for. Checked in this
/// order, the first failure answered: the response type, the presence of a
/// challenge, its method, its syntax, the resources, then `dpop_jkt`.
pub fn check(
    client: &Client,
    params: &AuthorizationParams,
) -> Result<Authorization, AuthorizeError> {
    if params.response_type.as_deref() != Some("code") {
        return Err(AuthorizeError::UnsupportedResponseType);
    }
    let challenge = params
        .code_challenge
        .clone()
        .ok_or(AuthorizeError::MissingChallenge)?;
    let method = ChallengeMethod::requested(
        params.code_challenge_method.as_deref(),
        client.allow_plain_pkce,
    )
    .map_err(AuthorizeError::Method)?;
    let challenge = CodeChallenge::parse(challenge, method).map_err(AuthorizeError::Challenge)?;
    let resource = match params.resource.as_slice() {
        [] => None,
        [one] => Some(Resource::One(one.clone())),
        many => Some(Resource::Many(many.to_vec())),
    };
    check_resource(resource.as_ref(), &client.resource_indicators)
        .map_err(AuthorizeError::Target)?;
    if params
        .dpop_jkt
        .as_deref()
        .is_some_and(|jkt| !crate::dpop::is_thumbprint(jkt))
    {
        return Err(AuthorizeError::DpopJkt);
    }
    Ok(Authorization {
        scope: params.scope.clone().unwrap_or_default(),
        nonce: params.nonce.clone(),
        resource,
        challenge,
        dpop_jkt: params.dpop_jkt.clone(),
    })
}

impl Authorization {
    /// The grant to `sub`, who has signed in, for the request's client and
    /// redirect URI, and the challenge its code is bound to. How the user
    /// signed in (`auth_time`, `amr`, claims) is the caller's to add.
    pub fn grant(self, recipient: Recipient<'_>, sub: &str) -> (Grant, CodeChallenge) {
        let mut grant = Grant::new(&recipient.client.client_id, sub, &self.scope);
        grant.redirect_uri = Some(recipient.redirect_uri.to_owned());
        grant.nonce = self.nonce;
        grant.resource = self.resource;
        grant.dpop_jkt = self.dpop_jkt;
        grant.code_challenge_method = self.challenge.method();
        (grant, self.challenge)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pkce::s256_challenge;

    const REGISTRY: &str = r#"
        [[clients]]
        client_id = "spa"
        token_endpoint_auth_method = "none"
        audience = ["https://api.test", "https://other.test"]
        redirect_uris = ["https://app.example/cb", "http://127.0.0.1/cb"]

        [[clients]]
        client_id = "legacy"
        token_endpoint_auth_method = "none"
        audience = "https://api.test"
        allow_plain_pkce = true
        redirect_uris = ["https://legacy.example/cb"]
    "#;

    fn registry() -> ClientRegistry {
        ClientRegistry::from_toml(REGISTRY).unwrap()
    }

    fn params(client_id: &str, redirect_uri: &str) -> AuthorizationParams {
        AuthorizationParams {
            response_type: Some("code".into()),
            client_id: Some(client_id.into()),
            redirect_uri: Some(redirect_uri.into()),
            scope: Some("openid".into()),
            code_challenge: Some(s256_challenge(&"v".repeat(43))),
            code_challenge_method: Some("S256".into()),
            ..AuthorizationParams::default()
        }
    }

    /// Nothing is redirected to a client or a URI the registry does not
    /// vouch for; a loopback redirect URI may name any port (RFC 8252 §7.3).
    #[test]
    fn only_a_registered_redirect_uri_receives_the_answer() {
        let clients = registry();
        let ok = params("spa", "http://127.0.0.1:5173/cb");
        let to = recipient(&clients, &ok).unwrap();
        assert_eq!(to.client.client_id, "spa");
        assert_eq!(to.redirect_uri, "http://127.0.0.1:5173/cb");
        for (bad, why) in [
            (
                AuthorizationParams {
                    client_id: None,
                    ..params("spa", "https://app.example/cb")
                },
                NotRedirected::MissingClientId,
            ),
            (
                params("nobody", "https://app.example/cb"),
                NotRedirected::UnknownClient,
            ),
            (
                AuthorizationParams {
                    redirect_uri: None,
                    ..params("spa", "https://app.example/cb")
                },
                NotRedirected::MissingRedirectUri,
            ),
            (
                params("spa", "https://app.example/cb/other"),
                NotRedirected::UnregisteredRedirectUri,
            ),
            (
                params("spa", "https://legacy.example/cb"),
                NotRedirected::UnregisteredRedirectUri,
            ),
        ] {
            assert_eq!(recipient(&clients, &bad).unwrap_err(), why);
        }
    }

    #[test]
    fn an_acceptable_request_becomes_the_grant() {
        let clients = registry();
        let mut request = params("spa", "https://app.example/cb");
        request.nonce = Some("n-1".into());
        request.resource = vec!["https://api.test".into()];
        let to = recipient(&clients, &request).unwrap();
        let (grant, challenge) = check(to.client, &request).unwrap().grant(to, "alice");
        assert_eq!(grant.client_id, "spa");
        assert_eq!(grant.sub, "alice");
        assert_eq!(grant.scope, "openid");
        assert_eq!(
            grant.redirect_uri.as_deref(),
            Some("https://app.example/cb")
        );
        assert_eq!(grant.nonce.as_deref(), Some("n-1"));
        assert_eq!(
            grant.resource,
            Some(Resource::One("https://api.test".into()))
        );
        assert_eq!(grant.code_challenge_method, ChallengeMethod::S256);
        assert_eq!(challenge.into_string(), s256_challenge(&"v".repeat(43)));
    }

    /// Each refusal with the code it is redirected with, in the order the
    /// checks run: a request with several faults gets the first.
    #[test]
    fn refusals_and_their_codes() {
        let clients = registry();
        let spa = clients.get("spa").unwrap();
        let legacy = clients.get("legacy").unwrap();
        let base = || params("spa", "https://app.example/cb");
        let cases = [
            (
                spa,
                AuthorizationParams {
                    response_type: Some("token".into()),
                    code_challenge: None,
                    ..base()
                },
                AuthorizeError::UnsupportedResponseType,
                "unsupported_response_type",
            ),
            (
                spa,
                AuthorizationParams {
                    code_challenge: None,
                    code_challenge_method: Some("S512".into()),
                    ..base()
                },
                AuthorizeError::MissingChallenge,
                "invalid_request",
            ),
            (
                spa,
                AuthorizationParams {
                    code_challenge_method: None,
                    ..base()
                },
                AuthorizeError::Method(MethodError::PlainNotAllowed),
                "invalid_request",
            ),
            (
                legacy,
                AuthorizationParams {
                    code_challenge_method: Some("S512".into()),
                    ..base()
                },
                AuthorizeError::Method(MethodError::Unknown),
                "invalid_request",
            ),
            (
                spa,
                AuthorizationParams {
                    code_challenge: Some("a".repeat(44)),
                    resource: vec!["https://elsewhere.test".into()],
                    ..base()
                },
                AuthorizeError::Challenge(ChallengeError),
                "invalid_request",
            ),
            (
                spa,
                AuthorizationParams {
                    resource: vec!["https://elsewhere.test".into()],
                    ..base()
                },
                AuthorizeError::Target(TargetMismatch::NotAllowed),
                "invalid_target",
            ),
            (
                spa,
                AuthorizationParams {
                    resource: vec!["https://api.test".into(), "https://api.test".into()],
                    ..base()
                },
                AuthorizeError::Target(TargetMismatch::Repeated),
                "invalid_target",
            ),
            (
                spa,
                AuthorizationParams {
                    resource: vec![String::new()],
                    ..base()
                },
                AuthorizeError::Target(TargetMismatch::Empty),
                "invalid_target",
            ),
        ];
        for (client, request, why, code) in cases {
            let error = check(client, &request).unwrap_err();
            assert_eq!(error, why);
            assert_eq!(error.code(), code);
            assert!(!error.to_string().is_empty());
        }
    }

    /// `plain`, said or implied by a missing method, only for a client
    /// registered for it; the grant records the method the code is bound by.
    #[test]
    fn plain_only_for_a_client_registered_for_it() {
        let clients = registry();
        let request = AuthorizationParams {
            code_challenge: Some("p".repeat(60)),
            code_challenge_method: None,
            ..params("legacy", "https://legacy.example/cb")
        };
        let to = recipient(&clients, &request).unwrap();
        let (grant, challenge) = check(to.client, &request).unwrap().grant(to, "alice");
        assert_eq!(grant.code_challenge_method, ChallengeMethod::Plain);
        assert_eq!(challenge.method(), ChallengeMethod::Plain);
    }
}
