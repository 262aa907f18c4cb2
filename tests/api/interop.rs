//! Interoperability with a real OpenID Connect relying party: the
//! `openidconnect` crate (v4) redeems codes over real HTTP, with PKCE and each
//! kind of client authentication, and validates the ID tokens against the JWKS
//! the service publishes.
//!
//! The tokens' `iss` is `helpers::ISSUER`, while the app listens on
//! `http://127.0.0.1:PORT`; the clients are therefore built by hand from the
//! app's real endpoints (token endpoint and JWKS) rather than by discovery,
//! with the issuer URL set to what the tokens carry.
//!
//! `openidconnect` supports EdDSA over Ed25519 (`CoreJwsSigningAlgorithm::EdDsa`,
//! `at_hash` with SHA-512), so `eddsa-app` is covered too.

use openidconnect::core::{
    CoreClient, CoreErrorResponseType, CoreIdTokenClaims, CoreJsonWebKeySet,
    CoreJwsSigningAlgorithm, CoreProviderMetadata, CoreTokenResponse, CoreTokenType,
};
use openidconnect::{
    reqwest, AccessTokenHash, Audience, AuthType, AuthorizationCode, ClientId, ClientSecret,
    EndpointNotSet, EndpointSet, HttpClientError, IssuerUrl, JsonWebKeySetUrl, Nonce,
    OAuth2TokenResponse, PkceCodeVerifier, RedirectUrl, RequestTokenError, StandardErrorResponse,
    TokenResponse, TokenUrl,
};
use token_endpoint::contract::frontend::IssuedCode;

use crate::helpers::{self, spawn_app, Backend, TestApp};

const REDIRECT_URI: &str = "https://client.test/cb";

/// A relying party with its token endpoint set, as the tests build it.
type RelyingParty = CoreClient<
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
    EndpointNotSet,
>;

type ExchangeError = RequestTokenError<
    HttpClientError<reqwest::Error>,
    StandardErrorResponse<CoreErrorResponseType>,
>;

/// The HTTP client `openidconnect` recommends: redirects are not followed.
fn http_client() -> reqwest::Client {
    reqwest::ClientBuilder::new()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("HTTP client builds")
}

/// The JWKS the app publishes, fetched and parsed by the library.
async fn fetch_jwks(app: &TestApp, http: &reqwest::Client) -> CoreJsonWebKeySet {
    let url =
        JsonWebKeySetUrl::new(format!("{}/.well-known/jwks.json", app.address)).expect("JWKS URL");
    CoreJsonWebKeySet::fetch_async(&url, http)
        .await
        .unwrap_or_else(|e| panic!("openidconnect rejects the published JWKS: {e:?}"))
}

/// A client for `client_id` (confidential when `secret` is given), pointed at
/// the app's token endpoint and trusting the app's JWKS for `ISSUER`.
async fn relying_party(
    app: &TestApp,
    http: &reqwest::Client,
    client_id: &str,
    secret: Option<&str>,
) -> RelyingParty {
    let client = CoreClient::new(
        ClientId::new(client_id.into()),
        IssuerUrl::new(helpers::ISSUER.into()).expect("issuer URL"),
        fetch_jwks(app, http).await,
    )
    .set_token_uri(TokenUrl::new(app.token_url()).expect("token URL"))
    .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).expect("redirect URI"));
    match secret {
        Some(secret) => client.set_client_secret(ClientSecret::new(secret.into())),
        None => client,
    }
}

/// The authorization-code exchange with PKCE, through the library.
async fn exchange(
    rp: &RelyingParty,
    http: &reqwest::Client,
    issued: &IssuedCode,
) -> Result<CoreTokenResponse, ExchangeError> {
    rp.exchange_code(AuthorizationCode::new(issued.code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(issued.verifier.clone()))
        .request_async(http)
        .await
}

/// A public client's whole exchange through the library against `app`,
/// over `http` (which may speak HTTPS to a TLS listener): the JWKS fetched,
/// the code redeemed with PKCE, the ID token verified. The access token.
pub(crate) async fn exchange_with_library(app: &TestApp, http: &reqwest::Client) -> String {
    let rp = relying_party(app, http, "public-app", None).await;
    let (issued, nonce) = issue_with_nonce(app, "public-app").await;
    let response = exchange(&rp, http, &issued)
        .await
        .unwrap_or_else(|e| panic!("openidconnect's exchange fails: {e:?}"));
    verify_response(
        &rp,
        &response,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        &nonce,
    );
    response.access_token().secret().clone()
}

/// Store a code for `client_id` bound to a fresh nonce, as the frontend would
/// after an authentication request carrying that nonce.
async fn issue_with_nonce(app: &TestApp, client_id: &str) -> (IssuedCode, Nonce) {
    let nonce = Nonce::new_random();
    let mut grant = helpers::grant(client_id);
    grant.nonce = Some(nonce.secret().clone());
    (app.issue(grant).await, nonce)
}

/// Everything a relying party checks on a token response: token type and
/// lifetime, the ID token's signature (only `alg` allowed), issuer, audience,
/// expiry and nonce, and that `at_hash` binds the access token.
fn verify_response(
    rp: &RelyingParty,
    response: &CoreTokenResponse,
    alg: CoreJwsSigningAlgorithm,
    nonce: &Nonce,
) -> CoreIdTokenClaims {
    assert_eq!(*response.token_type(), CoreTokenType::Bearer);
    assert!(response.expires_in().is_some(), "no expires_in");

    let id_token = response.id_token().expect("an ID token for scope openid");
    let verifier = rp.id_token_verifier().set_allowed_algs([alg.clone()]);
    let claims = id_token
        .claims(&verifier, nonce)
        .unwrap_or_else(|e| panic!("openidconnect rejects the ID token: {e:?}"))
        .clone();
    let signing_alg = id_token.signing_alg().expect("a signed ID token");
    assert_eq!(*signing_alg, alg);

    let expected_hash = claims.access_token_hash().expect("at_hash in the ID token");
    let signing_key = id_token
        .signing_key(&verifier)
        .expect("the signing key is in the JWKS");
    let actual_hash =
        AccessTokenHash::from_token(response.access_token(), signing_alg, signing_key)
            .expect("at_hash computes");
    assert_eq!(
        actual_hash, *expected_hash,
        "at_hash does not match the access token"
    );

    let client_id = rp.client_id().as_str();
    assert_eq!(claims.issuer().as_str(), helpers::ISSUER);
    assert_eq!(claims.audiences(), &[Audience::new(client_id.into())]);
    // openidconnect leaves `azp` unchecked; a relying party may still look.
    assert_eq!(
        claims.authorized_party().map(|azp| azp.as_str()),
        Some(client_id)
    );
    assert_eq!(claims.subject().as_str(), "user-1");
    claims
}

/// What a successful exchange through the library leaves to inspect.
struct Exchanged {
    rp: RelyingParty,
    response: CoreTokenResponse,
    nonce: Nonce,
}

/// Start an app, register `client_id` with the library (confidential when
/// `secret` is given, authenticating by `auth`), redeem a fresh code bound
/// to a fresh nonce, and run every relying-party check with only `alg`
/// allowed for the ID token.
async fn exchange_and_verify(
    client_id: &str,
    secret: Option<&str>,
    auth: AuthType,
    alg: CoreJwsSigningAlgorithm,
) -> Exchanged {
    let app = spawn_app(Backend::Redis).await;
    let http = http_client();
    let rp = relying_party(&app, &http, client_id, secret)
        .await
        .set_auth_type(auth);
    let (issued, nonce) = issue_with_nonce(&app, client_id).await;
    let response = exchange(&rp, &http, &issued)
        .await
        .unwrap_or_else(|e| panic!("the exchange fails: {e:?}"));
    verify_response(&rp, &response, alg, &nonce);
    Exchanged {
        rp,
        response,
        nonce,
    }
}

/// A public client redeems with PKCE through the library; its ES256 ID token
/// verifies against the published JWKS with the nonce of the grant, `at_hash`
/// matches the access token, the token type is Bearer and `expires_in` is the
/// client's access token lifetime. The same ID token is rejected by the
/// library's default (RS256-only) verifier and under another nonce, so the
/// checks above are not vacuous.
#[tokio::test]
async fn public_client_es256_exchange_verifies_with_the_library() {
    let Exchanged {
        rp,
        response,
        nonce,
    } = exchange_and_verify(
        "public-app",
        None,
        AuthType::BasicAuth,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
    assert_eq!(
        response.expires_in(),
        Some(std::time::Duration::from_secs(600))
    );

    let id_token = response.id_token().expect("an ID token");
    assert!(
        id_token.claims(&rp.id_token_verifier(), &nonce).is_err(),
        "the default verifier allows only RS256"
    );
    let es256 = rp
        .id_token_verifier()
        .set_allowed_algs([CoreJwsSigningAlgorithm::EcdsaP256Sha256]);
    assert!(
        id_token.claims(&es256, &Nonce::new_random()).is_err(),
        "another nonce must not verify"
    );
}

/// A confidential client authenticates with `client_secret_basic`, the
/// library's default `AuthType::BasicAuth`, and the exchange succeeds.
#[tokio::test]
async fn basic_client_authenticates_with_client_secret_basic() {
    exchange_and_verify(
        "basic-app",
        Some(helpers::BASIC_SECRET),
        AuthType::BasicAuth,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
}

/// A confidential client authenticates with `client_secret_post`
/// (`AuthType::RequestBody`), and the exchange succeeds.
#[tokio::test]
async fn post_client_authenticates_with_client_secret_post() {
    exchange_and_verify(
        "post-app",
        Some(helpers::POST_SECRET),
        AuthType::RequestBody,
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
    )
    .await;
}

/// A client registered for RS256 ID tokens gets one that the library's
/// default verifier (RS256 only) accepts as it is.
#[tokio::test]
async fn rsa_client_gets_an_rs256_id_token() {
    let Exchanged {
        rp,
        response,
        nonce,
    } = exchange_and_verify(
        "rsa-app",
        None,
        AuthType::BasicAuth,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
    )
    .await;
    let id_token = response.id_token().expect("an ID token");
    id_token
        .claims(&rp.id_token_verifier(), &nonce)
        .unwrap_or_else(|e| panic!("the default verifier rejects RS256: {e:?}"));
}

/// A client registered for EdDSA ID tokens gets an Ed25519 one that the
/// library verifies, `at_hash` being the left half of SHA-512.
#[tokio::test]
async fn eddsa_client_gets_an_ed25519_id_token() {
    exchange_and_verify(
        "eddsa-app",
        None,
        AuthType::BasicAuth,
        CoreJwsSigningAlgorithm::EdDsa,
    )
    .await;
}

/// Redeeming the same code a second time through the library fails with the
/// server's `invalid_grant` (RFC 6749 §5.2), parsed as a server response.
#[tokio::test]
async fn a_second_exchange_of_the_same_code_is_invalid_grant() {
    let app = spawn_app(Backend::Redis).await;
    let http = http_client();
    let rp = relying_party(&app, &http, "public-app", None).await;
    let (issued, _) = issue_with_nonce(&app, "public-app").await;

    exchange(&rp, &http, &issued)
        .await
        .unwrap_or_else(|e| panic!("the first exchange fails: {e:?}"));
    let second = exchange(&rp, &http, &issued).await;

    match second {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), CoreErrorResponseType::InvalidGrant);
            assert!(error.error_description().is_some(), "no error_description");
        }
        other => panic!("expected invalid_grant from the server, got {other:?}"),
    }
}

/// A wrong PKCE verifier sent by the library is refused with `invalid_grant`.
#[tokio::test]
async fn a_wrong_pkce_verifier_is_invalid_grant() {
    let app = spawn_app(Backend::Redis).await;
    let http = http_client();
    let rp = relying_party(&app, &http, "public-app", None).await;
    let (issued, _) = issue_with_nonce(&app, "public-app").await;
    let forged = IssuedCode {
        code: issued.code.clone(),
        verifier: token_endpoint::contract::frontend::random_token().unwrap(),
    };

    match exchange(&rp, &http, &forged).await {
        Err(RequestTokenError::ServerResponse(error)) => {
            assert_eq!(*error.error(), CoreErrorResponseType::InvalidGrant);
        }
        other => panic!("expected invalid_grant from the server, got {other:?}"),
    }
}

/// The discovery document parses as the library's provider metadata; a
/// client built from it (JWKS and token endpoint taken from the app, as the
/// metadata's URLs name the issuer's host) allows exactly the advertised ID
/// token algorithms, and with those verifies an ES256 ID token.
#[tokio::test]
async fn discovery_document_is_accepted_by_the_library() {
    let app = spawn_app(Backend::Redis).await;
    let http = http_client();
    let body = http
        .get(format!("{}/.well-known/openid-configuration", app.address))
        .send()
        .await
        .expect("the service answers")
        .bytes()
        .await
        .expect("read body");
    let metadata: CoreProviderMetadata = serde_json::from_slice(&body)
        .unwrap_or_else(|e| panic!("openidconnect rejects the discovery document: {e}"));
    assert_eq!(metadata.issuer().as_str(), helpers::ISSUER);
    for alg in [
        CoreJwsSigningAlgorithm::EcdsaP256Sha256,
        CoreJwsSigningAlgorithm::RsaSsaPkcs1V15Sha256,
        CoreJwsSigningAlgorithm::EdDsa,
    ] {
        assert!(
            metadata
                .id_token_signing_alg_values_supported()
                .contains(&alg),
            "{alg:?} is not advertised"
        );
    }

    let metadata = metadata.set_jwks(fetch_jwks(&app, &http).await);
    let rp = CoreClient::from_provider_metadata(metadata, ClientId::new("public-app".into()), None)
        .set_token_uri(TokenUrl::new(app.token_url()).expect("token URL"))
        .set_redirect_uri(RedirectUrl::new(REDIRECT_URI.into()).expect("redirect URI"));
    let (issued, nonce) = issue_with_nonce(&app, "public-app").await;
    let response = rp
        .exchange_code(AuthorizationCode::new(issued.code.clone()))
        .set_pkce_verifier(PkceCodeVerifier::new(issued.verifier.clone()))
        .request_async(&http)
        .await
        .unwrap_or_else(|e| panic!("the exchange fails: {e:?}"));
    let id_token = response.id_token().expect("an ID token");
    let claims = id_token
        .claims(&rp.id_token_verifier(), &nonce)
        .unwrap_or_else(|e| panic!("openidconnect rejects the ID token: {e:?}"));
    assert_eq!(claims.subject().as_str(), "user-1");
}

/// RFC 8252: a native app's redirect URIs, a loopback one (any port, the one
/// the app listened on) and a private-use scheme, redeem through the library
/// exactly as the authorization request stored them; the same loopback URI
/// with another port does not.
#[tokio::test]
async fn native_app_redirect_uris_redeem_exactly_as_stored() {
    let app = spawn_app(Backend::Redis).await;
    let http = http_client();
    for redirect in [
        "http://127.0.0.1:54321/cb",
        "com.example.app:/cb",
        "http://[::1]:8400/cb",
    ] {
        let (issued, nonce) = {
            let nonce = Nonce::new_random();
            let mut grant = helpers::grant("public-app");
            grant.redirect_uri = Some(redirect.into());
            grant.nonce = Some(nonce.secret().clone());
            (app.issue(grant).await, nonce)
        };
        let rp = relying_party(&app, &http, "public-app", None)
            .await
            .set_redirect_uri(RedirectUrl::new(redirect.into()).expect("a native redirect URI"));
        let response = exchange(&rp, &http, &issued)
            .await
            .unwrap_or_else(|e| panic!("{redirect}: {e:?}"));
        verify_response(
            &rp,
            &response,
            CoreJwsSigningAlgorithm::EcdsaP256Sha256,
            &nonce,
        );

        if redirect.starts_with("http://127.0.0.1") {
            let mut grant = helpers::grant("public-app");
            grant.redirect_uri = Some(redirect.into());
            let other = app.issue(grant).await;
            let moved = relying_party(&app, &http, "public-app", None)
                .await
                .set_redirect_uri(RedirectUrl::new("http://127.0.0.1:54322/cb".into()).unwrap());
            match exchange(&moved, &http, &other).await {
                Err(RequestTokenError::ServerResponse(e)) => {
                    assert_eq!(*e.error(), CoreErrorResponseType::InvalidGrant)
                }
                other => panic!("another loopback port was accepted: {other:?}"),
            }
        }
    }
}
