//! A form-encoded POST from a client: what `POST /oauth/token` (RFC 6749
//! §3.2) and the endpoints after it (revocation, RFC 7009 §2.1) read the
//! same way before the domain sees anything. The content type is checked,
//! the body is read whole under the size limit and the client timeout, and
//! the client's address is taken from the trusted header or the TCP peer.
//!
//! What the endpoint does with the bytes is its own business: the grant
//! layer parses them ([`crate::grant::request::TokenForm::parse`]).

use std::net::IpAddr;
use std::time::Duration;

use actix_web::http::header::{self, HeaderName};
use actix_web::web::{self, BytesMut};
use actix_web::HttpRequest;
use futures_util::StreamExt;

use super::AppState;
use crate::grant::error::{Reason, TokenError};

/// Why a form POST could not be read. Each maps to one RFC 6749 §5.2
/// answer ([`TokenError`]); the metrics tell the size and the time limits
/// apart from a malformed request.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FormError {
    /// RFC 6749 §4.1.3: "using the application/x-www-form-urlencoded
    /// format ... with a character encoding of UTF-8".
    #[error("Content-Type must be application/x-www-form-urlencoded (RFC 6749 section 4.1.3)")]
    ContentType,
    #[error("the request body must be UTF-8 (RFC 6749 Appendix B); charset says otherwise")]
    Charset,
    /// More than the limit was announced or sent.
    #[error("request body exceeds {0} bytes")]
    TooLarge(usize),
    /// The whole body did not arrive within the client timeout.
    #[error("the request body did not arrive within {} ms", .0.as_millis())]
    Slow(Duration),
    /// The connection failed mid-body.
    #[error("the request body could not be read")]
    Unreadable,
}

impl From<FormError> for TokenError {
    fn from(error: FormError) -> Self {
        let reason = match error {
            FormError::TooLarge(_) => Reason::BodyTooLarge,
            FormError::Slow(_) => Reason::SlowBody,
            FormError::ContentType | FormError::Charset | FormError::Unreadable => {
                Reason::MalformedRequest
            }
        };
        TokenError::new(reason, error.to_string())
    }
}

/// The body of a form POST, once its content type is checked: read whole
/// within `state.client_timeout`, and refused as soon as more than
/// `state.max_body_bytes` is announced or seen.
pub async fn read(
    request: &HttpRequest,
    payload: web::Payload,
    state: &AppState,
) -> Result<BytesMut, FormError> {
    check_content_type(request)?;
    read_body(request, payload, state.max_body_bytes, state.client_timeout).await
}

/// The client's address: the last entry of the last `trusted_header` line
/// when a trusted load balancer sets it (what that balancer appended:
/// entries before it, and earlier lines, came from the client and prove
/// nothing), else the TCP peer.
pub fn client_address(
    request: &HttpRequest,
    trusted_header: Option<&HeaderName>,
) -> Option<IpAddr> {
    let forwarded = trusted_header
        .and_then(|name| request.headers().get_all(name).last())
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.rsplit(',').map(str::trim).find(|s| !s.is_empty()))
        .and_then(|last| last.parse::<IpAddr>().ok());
    forwarded.or_else(|| request.peer_addr().map(|a| a.ip()))
}

/// The media type must be form-urlencoded; a `charset`, if any, UTF-8.
/// Lenient about spacing, case and quoting, as clients vary in all three
/// (tests/api/hostile.rs lists the forms accepted).
fn check_content_type(request: &HttpRequest) -> Result<(), FormError> {
    let value = request
        .headers()
        .get(header::CONTENT_TYPE)
        .ok_or(FormError::ContentType)?
        .to_str()
        .map_err(|_| FormError::ContentType)?;
    let mut parts = value.split(';');
    let media_type = parts.next().unwrap_or_default().trim();
    if !media_type.eq_ignore_ascii_case("application/x-www-form-urlencoded") {
        return Err(FormError::ContentType);
    }
    for param in parts {
        let (name, value) = param.split_once('=').unwrap_or((param, ""));
        if name.trim().eq_ignore_ascii_case("charset") {
            let charset = value.trim().trim_matches('"');
            if !charset.eq_ignore_ascii_case("utf-8") {
                return Err(FormError::Charset);
            }
        }
    }
    Ok(())
}

/// The timeout covers the whole body, not each chunk: a client that trickles
/// a byte at a time must not hold a worker's slot for longer.
async fn read_body(
    request: &HttpRequest,
    payload: web::Payload,
    limit: usize,
    timeout: Duration,
) -> Result<BytesMut, FormError> {
    tokio::time::timeout(timeout, read_body_unbounded(request, payload, limit))
        .await
        .unwrap_or(Err(FormError::Slow(timeout)))
}

async fn read_body_unbounded(
    request: &HttpRequest,
    mut payload: web::Payload,
    limit: usize,
) -> Result<BytesMut, FormError> {
    let announced = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    // Refused before a byte is read: the client said how much it will send.
    if announced.is_some_and(|len| len > limit) {
        return Err(FormError::TooLarge(limit));
    }
    let mut body = BytesMut::with_capacity(announced.unwrap_or(512));
    while let Some(chunk) = payload.next().await {
        let chunk = chunk.map_err(|_| FormError::Unreadable)?;
        if body.len() + chunk.len() > limit {
            return Err(FormError::TooLarge(limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn with_content_type(value: &str) -> HttpRequest {
        TestRequest::default()
            .insert_header((header::CONTENT_TYPE, value))
            .to_http_request()
    }

    #[test]
    fn content_type_is_form_urlencoded_in_utf8() {
        for ok in [
            "application/x-www-form-urlencoded",
            "Application/X-WWW-Form-URLEncoded; charset=UTF-8",
            "application/x-www-form-urlencoded ; charset = \"utf-8\" ; q=1",
            "application/x-www-form-urlencoded;",
        ] {
            assert_eq!(check_content_type(&with_content_type(ok)), Ok(()), "{ok}");
        }
        for (bad, why) in [
            ("application/json", FormError::ContentType),
            ("multipart/form-data", FormError::ContentType),
            (
                "application/x-www-form-urlencoded; charset=iso-8859-1",
                FormError::Charset,
            ),
        ] {
            assert_eq!(
                check_content_type(&with_content_type(bad)),
                Err(why),
                "{bad}"
            );
        }
        assert_eq!(
            check_content_type(&TestRequest::default().to_http_request()),
            Err(FormError::ContentType)
        );
    }

    /// Only what the trusted balancer appended counts: the last entry of
    /// the last line. Anything else falls back to the TCP peer.
    #[test]
    fn client_address_trusts_only_the_balancers_entry() {
        let peer: std::net::SocketAddr = "192.0.2.1:4000".parse().unwrap();
        let header = HeaderName::from_static("x-forwarded-for");
        let request = TestRequest::default()
            .peer_addr(peer)
            .append_header((header.clone(), "10.0.0.1, 10.0.0.2"))
            .append_header((header.clone(), "203.0.113.9, 198.51.100.7 ,"))
            .to_http_request();
        assert_eq!(
            client_address(&request, Some(&header)),
            Some("198.51.100.7".parse().unwrap())
        );
        assert_eq!(client_address(&request, None), Some(peer.ip()));
        let unparsable = TestRequest::default()
            .peer_addr(peer)
            .insert_header((header.clone(), "unknown"))
            .to_http_request();
        assert_eq!(client_address(&unparsable, Some(&header)), Some(peer.ip()));
    }

    /// The status and the metrics label of each failure are unchanged by
    /// the move out of the token endpoint.
    #[test]
    fn each_failure_keeps_its_reason() {
        for (error, reason) in [
            (FormError::ContentType, Reason::MalformedRequest),
            (FormError::Charset, Reason::MalformedRequest),
            (FormError::Unreadable, Reason::MalformedRequest),
            (FormError::TooLarge(10), Reason::BodyTooLarge),
            (FormError::Slow(Duration::from_millis(5)), Reason::SlowBody),
        ] {
            assert_eq!(TokenError::from(error).reason(), reason);
        }
        assert_eq!(
            TokenError::from(FormError::Slow(Duration::from_millis(250))).description(),
            "the request body did not arrive within 250 ms"
        );
    }
}
