//! `POST /dev/codes`: the embedded default's stand-in for a login frontend,
//! so the walk-through works without Redis. It mints a code for any client
//! and subject, so it is mounted only in the zero-configuration demo or on
//! explicit request, never with Redis ([`crate::config::DevEndpoints`]);
//! otherwise the frontend (or `token-endpoint issue-code`) writes codes.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use super::AppState;
use crate::config::DevEndpoints;
use crate::frontend::{issue_code as issue, Grant};

/// Lifetime of a code issued here: the contract's recommended 60 s.
const DEV_CODE_TTL: Duration = Duration::from_secs(60);

pub async fn issue_code(state: web::Data<AppState>, body: web::Bytes) -> HttpResponse {
    if state.dev_endpoints == DevEndpoints::OptIn {
        tracing::warn!(
            security_event = "dev_code_issued",
            "POST /dev/codes used: a code was minted without any login (TOKEN_ENDPOINT_DEV_ENDPOINTS=on)"
        );
    }
    let grant: Grant = if body.is_empty() {
        Grant::new("demo", "alice", "openid profile")
    } else {
        match serde_json::from_slice(&body) {
            Ok(grant) => grant,
            Err(e) => {
                return HttpResponse::BadRequest()
                    .json(json!({"error": "invalid_request", "error_description": e.to_string()}))
            }
        }
    };
    match issue(&state.redeemer.store, grant, DEV_CODE_TTL).await {
        Ok(issued) => HttpResponse::Ok().json(json!({
            "code": issued.code,
            "code_verifier": issued.verifier,
            "expires_in": DEV_CODE_TTL.as_secs(),
        })),
        Err(e) => HttpResponse::ServiceUnavailable()
            .json(json!({"error": "temporarily_unavailable", "error_description": e.to_string()})),
    }
}
