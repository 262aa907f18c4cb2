//! Published metadata: the JWKS and an OpenID Connect discovery document.

use actix_web::http::header::{self, HeaderValue};
use actix_web::{web, HttpResponse};

use serde_json::json;

use super::AppState;
use crate::config::{DevEndpoints, Settings};
use crate::grant::GrantType;
use crate::tokens::keys::alg_name;
use crate::tokens::TokenMinter;

/// The documents served at `/.well-known/`, serialized once at start-up.
pub struct Published {
    pub jwks: web::Bytes,
    pub discovery: web::Bytes,
}

impl Published {
    pub fn new(settings: &Settings, minter: &TokenMinter) -> Result<Self, serde_json::Error> {
        let issuer = &settings.issuer;
        let algorithms: Vec<&str> = minter.algorithms().into_iter().map(alg_name).collect();
        let grant_types: Vec<&str> = GrantType::ALL.iter().map(|g| g.name()).collect();
        // RFC 9449 §5.1, in the order configured.
        let dpop_algorithms: Vec<&str> = settings
            .dpop
            .algorithms
            .iter()
            .map(|alg| alg.name())
            .collect();
        let mut discovery = json!({
            "issuer": issuer,
            "authorization_endpoint": settings.authorization_endpoint,
            "token_endpoint": format!("{issuer}/oauth/token"),
            "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
            "response_types_supported": ["code"],
            "grant_types_supported": grant_types,
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": algorithms,
            "token_endpoint_auth_methods_supported": ["none", "client_secret_basic", "client_secret_post"],
            "code_challenge_methods_supported": ["S256"],
            "dpop_signing_alg_values_supported": dpop_algorithms,
        });
        if let (DevEndpoints::Demo | DevEndpoints::OptIn, Some(metadata)) =
            (settings.dev_endpoints, discovery.as_object_mut())
        {
            // The stand-in login page answers with `iss` (RFC 9207 section 3).
            metadata.insert(
                "authorization_response_iss_parameter_supported".into(),
                json!(true),
            );
        }
        Ok(Self {
            jwks: serde_json::to_vec(&minter.jwks())?.into(),
            discovery: serde_json::to_vec(&discovery)?.into(),
        })
    }
}

fn cached_json(body: &web::Bytes) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        ))
        .insert_header((
            header::CACHE_CONTROL,
            HeaderValue::from_static("public, max-age=300"),
        ))
        // Public metadata: any browser app (an SPA's OIDC library fetching
        // discovery, a resource server's page fetching keys) may read it.
        .insert_header((
            header::ACCESS_CONTROL_ALLOW_ORIGIN,
            HeaderValue::from_static("*"),
        ))
        .body(body.clone())
}

/// `GET /.well-known/jwks.json`: every signing key and every key kept for
/// verification only (RFC 7517 §5).
pub async fn jwks(state: web::Data<AppState>) -> HttpResponse {
    cached_json(&state.jwks)
}

/// `GET /.well-known/openid-configuration` (OpenID Connect Discovery §4).
pub async fn discovery(state: web::Data<AppState>) -> HttpResponse {
    cached_json(&state.discovery)
}
