//! `X-Request-Id`: taken from the request when it is a sane token, generated
//! otherwise, echoed on the response, and carried by every log line of the
//! request (a `request` span), so one redemption can be followed from the
//! load balancer's log to this service's security events.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use ring::rand::{SecureRandom, SystemRandom};
use tracing::Instrument;

pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Longest incoming id kept; longer ones are replaced.
const MAX_LEN: usize = 128;

pub async fn request_id(
    request: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let id = request
        .headers()
        .get(&X_REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| acceptable(v))
        .map(str::to_owned)
        .unwrap_or_else(generate);
    let span = tracing::info_span!("request", request_id = %id);
    let mut response = next.call(request).instrument(span).await?;
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(X_REQUEST_ID, value);
    }
    Ok(response)
}

/// An id from upstream is kept only if it cannot forge or break a log line:
/// 1 to 128 characters of letters, digits and `-._:/+=`.
fn acceptable(id: &str) -> bool {
    (1..=MAX_LEN).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._:/+=".contains(&b))
}

/// `<16 hex digits, random per process>-<counter>`: unique across replicas
/// without a system call per request. Not a secret, so predictable is fine.
fn generate() -> String {
    static PREFIX: OnceLock<u64> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = *PREFIX.get_or_init(|| {
        let mut bytes = [0u8; 8];
        // Should the OS RNG fail, the time still separates processes.
        if SystemRandom::new().fill(&mut bytes).is_err() {
            bytes = crate::unix_now().to_le_bytes();
        }
        u64::from_le_bytes(bytes)
    });
    format!(
        "{prefix:016x}-{:x}",
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_ids_are_kept() {
        assert!(acceptable("lb-7f3a.42:edge/1+x=="));
        assert!(!acceptable(""));
        assert!(!acceptable("two words"));
        assert!(!acceptable("line\nbreak"));
        assert!(!acceptable(&"a".repeat(129)));
        assert_ne!(generate(), generate());
    }
}
