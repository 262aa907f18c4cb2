//! The token request's path, free of HTTP: one pipeline for every grant
//! type. Data flows one way:
//! [`TokenRequest`] -> [`Client`] -> the grant's [`Granted`] -> `Minted` ->
//! [`TokenResponse`]. The steps, in order (docs/architecture.md):
//!
//! 1. parse: the grant type and its parameters ([`request`], [`Grant::parse`]);
//! 2. authenticate the client ([`client_auth`], with [`abuse`]'s limits);
//! 3. check that the client is registered for the grant type (`grant_types`);
//! 4. check the browser origin (CORS);
//! 5. check the sender constraint: the DPoP proof, if any ([`crate::dpop`]),
//!    before anything is consumed; its replay key is claimed by the store
//!    with the grant's read;
//! 6. the grant's validate, then its consume ([`Grant`]);
//! 7. mint;
//! 8. respond.
//!
//! A grant type is one module implementing [`Grant`], registered in
//! [`GrantType`] and [`GrantRequest`]: `authorization_code` today.

pub mod abuse;
pub mod authorization_code;
mod client_auth;
pub mod error;
pub mod request;

pub use self::error::{Reason, TokenError};

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;

use self::abuse::AuthFailureLimiter;
use self::authorization_code::CodeGrant;
use self::error::Headers;
use self::request::{TokenForm, TokenRequest};
use crate::clients::{Client, ClientRegistry};
use crate::dpop::{DpopHeader, DpopPolicy, Proof, ProofError, ReplayClaim};
use crate::metrics::Metrics;
use crate::store::CodeStore;
use crate::tokens::{Binding, GrantIds, Granted, TokenMinter};
use crate::unix_now;

/// One grant type: its parameters, a validate step that runs before
/// anything is consumed, and a consume step that yields what the tokens are
/// minted from. Like node-oidc-provider's `lib/actions/grants/` (one file
/// per grant, with its `parameters` and `handler`) and fosite's token
/// handlers.
pub(crate) trait Grant: Sized {
    /// Its `grant_type`.
    const TYPE: GrantType;
    /// The request parameters it reads beside the shared ones.
    const PARAMETERS: &'static [&'static str];

    /// Its parameters, taken from the form: missing or malformed ones are
    /// `invalid_request`, before the client is even looked up.
    fn parse(form: &mut TokenForm) -> Result<Self, TokenError>;

    /// Checks that need nothing from the store, for the authenticated
    /// client. Nothing is consumed yet.
    fn validate(&self, client: &Client) -> Result<(), TokenError>;

    /// Consume the grant, exactly once, and say what it grants. A refusal
    /// consumes nothing unless the grant could never be redeemed anyway.
    async fn consume(
        &self,
        redeemer: &Redeemer,
        context: &Context<'_>,
    ) -> Result<Granted, TokenError>;
}

/// What the pipeline hands the consume step.
pub(crate) struct Context<'a> {
    /// The authenticated client, registered for this grant type.
    pub client: &'a Client,
    /// The tokens' key binding, from the sender-constraint step.
    pub binding: &'a Binding,
    /// The DPoP proof's replay key, for the store to claim with the grant's
    /// read: a proof is accepted once.
    pub proof: Option<&'a ReplayClaim>,
    /// The `grant_id` of the tokens it will lead to.
    pub grant_id: &'a str,
    /// Seconds since the epoch, the tokens' `iat`.
    pub now: u64,
}

/// Every grant type the token endpoint serves: the registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantType {
    AuthorizationCode,
}

impl GrantType {
    pub const ALL: &'static [GrantType] = &[Self::AuthorizationCode];

    /// The `grant_type` value (and RFC 7591 `grant_types` entry).
    pub fn name(self) -> &'static str {
        match self {
            Self::AuthorizationCode => "authorization_code",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|g| g.name() == name)
    }

    /// The parameters its requests carry beside the shared ones.
    pub fn parameters(self) -> &'static [&'static str] {
        match self {
            Self::AuthorizationCode => CodeGrant::PARAMETERS,
        }
    }

    /// Its request, from the form.
    pub fn parse(self, form: &mut TokenForm) -> Result<GrantRequest, TokenError> {
        Ok(match self {
            Self::AuthorizationCode => GrantRequest::AuthorizationCode(CodeGrant::parse(form)?),
        })
    }

    /// `unsupported_grant_type`'s description: what is supported.
    pub fn unsupported() -> String {
        let names: Vec<&str> = Self::ALL.iter().map(|g| g.name()).collect();
        format!(
            "only grant_type={} is supported",
            names.join(" or grant_type=")
        )
    }
}

/// A request's grant, with that grant type's parameters.
#[derive(Debug)]
pub enum GrantRequest {
    AuthorizationCode(CodeGrant),
}

impl GrantRequest {
    pub fn grant_type(&self) -> GrantType {
        match self {
            Self::AuthorizationCode(_) => CodeGrant::TYPE,
        }
    }

    fn validate(&self, client: &Client) -> Result<(), TokenError> {
        match self {
            Self::AuthorizationCode(grant) => grant.validate(client),
        }
    }

    async fn consume(
        &self,
        redeemer: &Redeemer,
        context: &Context<'_>,
    ) -> Result<Granted, TokenError> {
        match self {
            Self::AuthorizationCode(grant) => grant.consume(redeemer, context).await,
        }
    }
}

/// RFC 6749 §5.1 successful response, and the headers it carries.
#[derive(Serialize)]
pub struct TokenResponse {
    pub access_token: String,
    pub token_type: &'static str,
    pub expires_in: u64,
    pub scope: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id_token: Option<String>,
    #[serde(skip)]
    pub headers: Headers,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("scope", &self.scope)
            .field("headers", &self.headers)
            .finish_non_exhaustive()
    }
}

/// Everything a redemption needs. Each worker has its own (see
/// [`Redeemer::for_worker`]): the registry, keys, limiter and metrics are
/// shared, the store connection is not.
pub struct Redeemer {
    store: CodeStore,
    clients: Arc<ClientRegistry>,
    minter: Arc<TokenMinter>,
    metrics: Metrics,
    limiter: Arc<AuthFailureLimiter>,
    dpop: Arc<DpopPolicy>,
    rng: SystemRandom,
}

impl Redeemer {
    pub fn new(
        store: CodeStore,
        clients: ClientRegistry,
        minter: TokenMinter,
        metrics: Metrics,
        limiter: Arc<AuthFailureLimiter>,
        dpop: DpopPolicy,
    ) -> Self {
        Self {
            store,
            clients: Arc::new(clients),
            minter: Arc::new(minter),
            metrics,
            limiter,
            dpop: Arc::new(dpop),
            rng: SystemRandom::new(),
        }
    }

    /// The same redeemer for another worker thread: everything shared but
    /// the store's connection, which the worker opens on its own runtime so
    /// that its commands never hop threads.
    pub fn for_worker(&self) -> Self {
        Self {
            store: self.store.for_worker(),
            clients: self.clients.clone(),
            minter: self.minter.clone(),
            metrics: self.metrics.clone(),
            limiter: self.limiter.clone(),
            dpop: self.dpop.clone(),
            rng: self.rng.clone(),
        }
    }

    /// Answer one token request presented from `source` (the client's
    /// address, when known): the pipeline of the module's documentation.
    /// The caller records the outcome in the metrics, since it also sees
    /// the requests that never get this far.
    pub async fn redeem(
        &self,
        request: TokenRequest,
        source: Option<IpAddr>,
    ) -> Result<TokenResponse, TokenError> {
        let client = self.authenticate(&request.credentials, source)?;
        check_grant_type(client, request.grant.grant_type())?;
        check_origin(client, request.origin.as_deref())?;
        let now = unix_now();
        let proof = check_sender_constraint(&self.dpop, client, &request, now)?;
        let binding = match &proof {
            None => Binding::Bearer,
            Some(proof) => Binding::Dpop {
                jkt: proof.jkt.clone(),
            },
        };
        request.grant.validate(client)?;
        let [grant_id, jti] = self.random_ids()?;
        let context = Context {
            client,
            binding: &binding,
            proof: proof.as_ref().map(|proof| &proof.replay),
            grant_id: &grant_id,
            now,
        };
        let granted = request.grant.consume(self, &context).await?;

        let started = Instant::now();
        let ids = GrantIds {
            grant_id: &grant_id,
            jti: &jti,
            now,
        };
        let minted = self
            .minter
            .mint(&granted, &client.recipient(), &ids)
            .map_err(|e| {
                tracing::error!(error = %e, client_id = %client.client_id, "minting failed after the grant was consumed");
                TokenError::server_error()
            })?;
        self.metrics
            .signing_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics.access_tokens.inc();
        if matches!(granted.binding, Binding::Dpop { .. }) {
            self.metrics.dpop_bound_tokens.inc();
        }
        if minted.id_token.is_some() {
            self.metrics.id_tokens.inc();
        }
        tracing::debug!(client_id = %client.client_id, %grant_id, "tokens issued");
        let mut headers = Headers::default();
        if let Some(nonce) = proof.and_then(|proof| proof.next_nonce) {
            // §8.2: the nonce presented expires at the next step; the
            // client's next proof uses this one, without a round trip.
            headers.set("dpop-nonce", nonce);
        }
        Ok(TokenResponse {
            access_token: minted.access_token,
            token_type: granted.binding.token_type(),
            expires_in: minted.expires_in,
            scope: granted.scope,
            id_token: minted.id_token,
            headers,
        })
    }

    /// The code store, for what the HTTP layer asks of it directly: readiness
    /// and the dev endpoints' codes.
    pub fn store(&self) -> &CodeStore {
        &self.store
    }

    pub fn clients(&self) -> &ClientRegistry {
        &self.clients
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// The `iss` of every token.
    pub fn issuer(&self) -> &str {
        self.minter.issuer()
    }

    /// How DPoP proofs are checked (discovery advertises its algorithms).
    pub fn dpop(&self) -> &DpopPolicy {
        &self.dpop
    }

    /// The keys' public halves, as the JWKS publishes them, and the
    /// algorithms ID tokens can be signed with.
    pub fn minter(&self) -> &TokenMinter {
        &self.minter
    }

    /// Two independent 128-bit random ids, base64url (the `grant_id` and the
    /// `jti`), from this thread's pool of system randomness.
    fn random_ids(&self) -> Result<[String; 2], TokenError> {
        let bytes = RANDOM_POOL
            .with_borrow_mut(|pool| pool.take(&self.rng))
            .map_err(|_| {
                tracing::error!("the system RNG failed");
                TokenError::server_error()
            })?;
        let (first, second) = bytes.split_at(16);
        Ok([
            URL_SAFE_NO_PAD.encode(first),
            URL_SAFE_NO_PAD.encode(second),
        ])
    }
}

thread_local! {
    static RANDOM_POOL: std::cell::RefCell<RandomPool> = const {
        std::cell::RefCell::new(RandomPool { chunks: [[0; 32]; 32], next: 32 })
    };
}

/// System randomness fetched 1 KiB at a time: one `getrandom` call per 32
/// redemptions instead of one per redemption (measured: 0.7% of the
/// service's CPU, BENCHMARKS.md). The bytes are the kernel's, each used
/// once; the ids they become are not secrets (they travel in the tokens),
/// only unguessable.
struct RandomPool {
    chunks: [[u8; 32]; 32],
    next: usize,
}

impl RandomPool {
    fn take(&mut self, rng: &SystemRandom) -> Result<[u8; 32], ring::error::Unspecified> {
        if self.next >= self.chunks.len() {
            rng.fill(self.chunks.as_flattened_mut())?;
            self.next = 0;
        }
        let chunk = self
            .chunks
            .get_mut(self.next)
            .ok_or(ring::error::Unspecified)?;
        let out = *chunk;
        // Never handed out twice, even should a later refill fail.
        *chunk = [0; 32];
        self.next += 1;
        Ok(out)
    }
}

/// RFC 6749 §5.2 `unauthorized_client`: the client is registered for
/// other grant types only (its `grant_types`, RFC 7591 §2). Checked once
/// the client is authenticated, before anything is consumed.
fn check_grant_type(client: &Client, grant_type: GrantType) -> Result<(), TokenError> {
    if client.grant_types.contains(&grant_type) {
        return Ok(());
    }
    tracing::info!(
        client_id = %client.client_id,
        grant_type = grant_type.name(),
        "a grant type this client is not registered for"
    );
    Err(TokenError::new(
        Reason::GrantTypeNotAllowed,
        format!(
            "this client is not registered for grant_type={} (its grant_types)",
            grant_type.name()
        ),
    ))
}

/// The sender constraint of the tokens (RFC 9449): the request's DPoP
/// proof, checked before anything is consumed (all but its replay, which
/// the store claims with the grant's read). `None`: bearer tokens, unless
/// the client is registered with `dpop_bound_access_tokens` (§5.2).
fn check_sender_constraint(
    policy: &DpopPolicy,
    client: &Client,
    request: &TokenRequest,
    now: u64,
) -> Result<Option<Proof>, TokenError> {
    let value = match &request.dpop {
        DpopHeader::Absent if client.dpop_bound_access_tokens => {
            return Err(TokenError::new(
                Reason::DpopProofRequired,
                "this client must prove possession of a key: send a DPoP proof (RFC 9449) in the DPoP header (its dpop_bound_access_tokens); the code is left in place",
            ))
        }
        DpopHeader::Absent => return Ok(None),
        DpopHeader::Repeated => {
            return Err(TokenError::new(
                Reason::DpopProofInvalid,
                "more than one DPoP header: send exactly one proof (RFC 9449 section 4.3)",
            ))
        }
        DpopHeader::One(value) => value,
    };
    match policy.check(value, now) {
        Ok(proof) => Ok(Some(proof)),
        Err(ProofError::Invalid(description)) => {
            tracing::info!(client_id = %client.client_id, reason = %description, "DPoP proof refused before the take");
            Err(TokenError::new(Reason::DpopProofInvalid, description))
        }
        Err(ProofError::UseNonce { description, nonce }) => {
            Err(TokenError::new(Reason::DpopNonceRequired, description)
                .with_header("dpop-nonce", nonce))
        }
    }
}

/// CORS (docs/browser-apps.md): a browser request whose client does not
/// allow its origin is refused before anything is taken, whatever the grant.
fn check_origin(client: &Client, origin: Option<&str>) -> Result<(), TokenError> {
    let Some(origin) = origin else {
        return Ok(());
    };
    if client.allows_origin(origin) {
        return Ok(());
    }
    let shown: String = origin.chars().take(128).collect();
    tracing::warn!(
        security_event = "cors_origin_not_allowed",
        client_id = %client.client_id,
        origin = ?shown,
        "a browser request from an origin this client does not allow: refused before the take"
    );
    Err(TokenError::new(
        Reason::OriginNotAllowed,
        "this client may not be used from the Origin of this request (allowed_cors_origins); the code is left in place",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client is refused a grant type it is not registered for, with
    /// `unauthorized_client`; today's clients (the default) are not.
    #[test]
    fn a_grant_type_outside_the_clients_grant_types_is_unauthorized_client() {
        let registry = ClientRegistry::demo();
        let mut client = registry.get("demo").unwrap().as_ref().clone();
        assert!(check_grant_type(&client, GrantType::AuthorizationCode).is_ok());
        client.grant_types.clear();
        let err = check_grant_type(&client, GrantType::AuthorizationCode).unwrap_err();
        assert_eq!(err.code(), "unauthorized_client");
        assert_eq!(err.status(), 400);
        assert_eq!(err.reason(), Reason::GrantTypeNotAllowed);
        assert!(err.description().contains("grant_type=authorization_code"));
    }

    /// Every registered grant type parses by its name, and the
    /// `unsupported_grant_type` description lists them all.
    #[test]
    fn the_registration_is_consistent() {
        for grant in GrantType::ALL {
            assert_eq!(GrantType::named(grant.name()), Some(*grant));
            assert!(GrantType::unsupported().contains(grant.name()));
        }
        assert_eq!(
            GrantType::unsupported(),
            "only grant_type=authorization_code is supported"
        );
        assert_eq!(GrantType::named("password"), None);
    }

    /// Across refills, every take is fresh: no chunk handed out twice, none
    /// left zeroed.
    #[test]
    fn the_random_pool_never_repeats() {
        let rng = SystemRandom::new();
        let mut pool = RandomPool {
            chunks: [[0; 32]; 32],
            next: 32,
        };
        let mut seen = std::collections::HashSet::new();
        for _ in 0..100 {
            let bytes = pool.take(&rng).unwrap();
            assert_ne!(bytes, [0; 32]);
            assert!(seen.insert(bytes));
        }
    }
}
