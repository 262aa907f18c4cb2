//! From raw request bytes to a validated [`TokenRequest`]: the one place where
//! untrusted input becomes domain types (RFC 6749 §4.1.3, §2.3.1, §3.2).

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::SecretString;

use crate::dpop::DpopHeader;
use crate::grant::error::{Reason, TokenError};
use crate::grant::{GrantRequest, GrantType};

/// The parameters every token request may carry, whatever its grant type;
/// each grant type adds its own ([`GrantType::parameters`]).
const SHARED_PARAMETERS: &[&str] = &["grant_type", "client_id", "client_secret"];

/// The parameters of a token request this service reads: the shared ones
/// and those of every registered grant type. Others are ignored (RFC 6749
/// §3.2: "The authorization server MUST ignore unrecognized request
/// parameters").
#[derive(Default, Clone, PartialEq, Eq)]
pub struct TokenForm {
    /// Each recognized parameter sent with a value, at most once.
    values: Vec<(&'static str, String)>,
}

/// The recognized parameter `name` and its position in the list of every
/// recognized parameter (the shared ones, then each grant's in turn).
fn recognized(name: &str) -> Option<(usize, &'static str)> {
    SHARED_PARAMETERS
        .iter()
        .chain(GrantType::ALL.iter().flat_map(|g| g.parameters()))
        .enumerate()
        .find(|(_, known)| **known == name)
        .map(|(i, known)| (i, *known))
}

impl TokenForm {
    /// Parse an `application/x-www-form-urlencoded` body.
    ///
    /// - A parameter sent without a value counts as omitted (RFC 6749 §3.1).
    /// - A recognized parameter sent twice is an error (RFC 6749 §3.1, §3.2).
    /// - Percent-decoded bytes must be UTF-8.
    pub fn parse(body: &[u8]) -> Result<Self, TokenError> {
        let mut form = Self {
            values: Vec::with_capacity(6),
        };
        // One bit per recognized parameter, set on its first occurrence even
        // when empty: `code=&code=x` repeats `code` as much as `code=a&code=b`.
        let mut seen = 0u64;
        for pair in body.split(|&b| b == b'&') {
            if pair.is_empty() {
                continue;
            }
            let mut halves = pair.splitn(2, |&b| b == b'=');
            let name = halves.next().unwrap_or_default();
            let value = halves.next().unwrap_or_default();
            let name = decode_component(name)?;
            let Some((index, name)) = recognized(&name) else {
                continue;
            };
            let bit = 1u64.checked_shl(index as u32).unwrap_or(0);
            if seen & bit != 0 {
                return Err(TokenError::invalid_request(format!(
                    "parameter {name} is repeated (RFC 6749 section 3.2: parameters MUST NOT be included more than once)"
                )));
            }
            seen |= bit;
            let value = decode_component(value)?;
            if !value.is_empty() {
                form.values.push((name, value.into_owned()));
            }
        }
        Ok(form)
    }

    /// A form of `pairs`, as parsed from a body that sends each of them
    /// once (for benchmarks and property tests): unrecognized names and
    /// empty values are left out, as [`Self::parse`] leaves them.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Self {
        let mut form = Self::default();
        for (name, value) in pairs {
            if let Some((_, name)) = recognized(name) {
                if !value.is_empty() && form.get(name).is_none() {
                    form.values.push((name, value.to_owned()));
                }
            }
        }
        form
    }

    /// The value of `name`, taken out of the form; `None` if it was omitted
    /// (or is not a recognized parameter).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let at = self.values.iter().position(|(n, _)| *n == name)?;
        Some(self.values.swap_remove(at).1)
    }

    /// The value of `name`, if sent.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.values
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

impl std::fmt::Debug for TokenForm {
    /// Parameter names only (and the grant type): values may be secrets.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenForm")
            .field("grant_type", &self.get("grant_type"))
            .field(
                "parameters",
                &self.values.iter().map(|(n, _)| n).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// Decode one `x-www-form-urlencoded` component: `+` is a space, `%XY` a
/// byte, and the result must be UTF-8. A component with neither `+` nor `%`
/// (parameter names, most values) is borrowed, not copied.
///
/// Hand-written because `+` must be replaced before percent-decoding (so
/// that `%2B` stays a plus) and invalid UTF-8 must be refused, not replaced:
/// `percent_encoding` would take two passes, `form_urlencoded` is lossy.
pub(crate) fn decode_component(raw: &[u8]) -> Result<Cow<'_, str>, TokenError> {
    let not_utf8 = || TokenError::invalid_request("request body is not UTF-8 once percent-decoded");
    if !raw.iter().any(|&b| b == b'+' || b == b'%') {
        return std::str::from_utf8(raw)
            .map(Cow::Borrowed)
            .map_err(|_| not_utf8());
    }
    let hex = |b: Option<&u8>| b.and_then(|&b| char::from(b).to_digit(16));
    let mut out = Vec::with_capacity(raw.len());
    let mut rest = raw;
    while let Some((&b, tail)) = rest.split_first() {
        rest = tail;
        match b {
            b'+' => out.push(b' '),
            // A `%` not followed by two hex digits stands for itself.
            b'%' => match (hex(tail.first()), hex(tail.get(1))) {
                (Some(high), Some(low)) => {
                    out.push((high * 16 + low) as u8);
                    rest = tail.get(2..).unwrap_or_default();
                }
                _ => out.push(b'%'),
            },
            _ => out.push(b),
        }
    }
    String::from_utf8(out)
        .map(Cow::Owned)
        .map_err(|_| not_utf8())
}

/// How the client presented its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PresentedAuth {
    /// `client_id` in the body, no secret (a public client).
    None,
    /// `Authorization: Basic`.
    Basic,
    /// `client_id` and `client_secret` in the body.
    Post,
}

/// Who the client says it is, and the secret it offers, if any.
#[derive(Debug)]
pub struct ClientCredentials {
    pub client_id: String,
    pub secret: Option<SecretString>,
    pub method: PresentedAuth,
}

/// A token request whose parameters are all present and well-formed.
#[derive(Debug)]
pub struct TokenRequest {
    pub credentials: ClientCredentials,
    /// The grant it presents, with that grant type's parameters.
    pub grant: GrantRequest,
    /// The `Origin` a browser sent it from (CORS), if any: set by the HTTP
    /// layer, checked against the client's `allowed_cors_origins`.
    pub origin: Option<String>,
    /// Its `DPoP` header (RFC 9449): set by the HTTP layer, checked by the
    /// pipeline's sender-constraint step.
    pub dpop: DpopHeader,
}

impl TokenRequest {
    /// Validate a parsed form and the `Authorization` header, if any: the
    /// grant type and its parameters first, then the client's credentials.
    pub fn from_form(
        mut form: TokenForm,
        authorization: Option<&[u8]>,
    ) -> Result<Self, TokenError> {
        let grant_type = form
            .take("grant_type")
            .ok_or_else(|| TokenError::invalid_request("grant_type is required"))?;
        let grant_type = GrantType::named(&grant_type).ok_or_else(|| {
            TokenError::new(Reason::UnsupportedGrantType, GrantType::unsupported())
        })?;
        let grant = grant_type.parse(&mut form)?;
        let credentials = client_credentials(
            form.take("client_id"),
            form.take("client_secret"),
            authorization,
        )?;
        Ok(Self {
            credentials,
            grant,
            origin: None,
            dpop: DpopHeader::Absent,
        })
    }
}

fn invalid_client(description: &'static str, used_authorization_header: bool) -> TokenError {
    TokenError::invalid_client(Reason::AuthFailed, description, used_authorization_header)
}

/// RFC 6749 §2.3: the client's identity from the header or the body, and
/// never both mechanisms at once.
fn client_credentials(
    body_id: Option<String>,
    body_secret: Option<String>,
    authorization: Option<&[u8]>,
) -> Result<ClientCredentials, TokenError> {
    if let Some(header) = authorization {
        if body_secret.is_some() {
            return Err(TokenError::invalid_request(
                "the client authenticated with both the Authorization header and client_secret; use one (RFC 6749 section 2.3)",
            ));
        }
        let (client_id, secret) = parse_basic(header)?;
        if body_id.as_deref().is_some_and(|id| id != client_id) {
            return Err(TokenError::invalid_request(
                "client_id in the body differs from the client in the Authorization header",
            ));
        }
        return Ok(ClientCredentials {
            client_id,
            secret: Some(secret.into()),
            method: PresentedAuth::Basic,
        });
    }
    let Some(client_id) = body_id else {
        return Err(invalid_client(
            "no client authentication included: send client_id (public clients) or authenticate (RFC 6749 section 3.2.1)",
            false,
        ));
    };
    Ok(match body_secret {
        Some(secret) => ClientCredentials {
            client_id,
            secret: Some(secret.into()),
            method: PresentedAuth::Post,
        },
        None => ClientCredentials {
            client_id,
            secret: None,
            method: PresentedAuth::None,
        },
    })
}

/// `Authorization: Basic base64(urlencode(client_id) ":" urlencode(secret))`
/// (RFC 6749 §2.3.1, RFC 7617).
fn parse_basic(header: &[u8]) -> Result<(String, String), TokenError> {
    let bad = |d| invalid_client(d, true);
    let header =
        std::str::from_utf8(header).map_err(|_| bad("the Authorization header is not ASCII"))?;
    let (scheme, encoded) = header
        .split_once(' ')
        .ok_or_else(|| bad("the Authorization header must be `Basic <credentials>`"))?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(bad(
            "only the Basic authentication scheme is supported (RFC 6749 section 2.3.1)",
        ));
    }
    let decoded = STANDARD
        .decode(encoded.trim())
        .map_err(|_| bad("the Basic credentials are not valid base64"))?;
    let mut halves = decoded.splitn(2, |&b| b == b':');
    let id = halves.next().unwrap_or_default();
    let secret = halves
        .next()
        .ok_or_else(|| bad("the Basic credentials have no ':' between client_id and secret"))?;
    let decode = |part: &[u8]| {
        decode_component(part)
            .map(Cow::into_owned)
            .map_err(|_| bad("the Basic credentials are not UTF-8 once decoded"))
    };
    let (id, secret) = (decode(id)?, decode(secret)?);
    if id.is_empty() {
        return Err(bad("the Basic credentials have an empty client_id"));
    }
    Ok((id, secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(body: &str) -> Result<TokenForm, TokenError> {
        TokenForm::parse(body.as_bytes())
    }

    #[test]
    fn repeated_parameter_is_invalid_request() {
        for body in [
            "code=a&code=b",
            "code=&code=b",
            "code=a&code=",
            "code&code=b",
        ] {
            let err = form(body).unwrap_err();
            assert_eq!(err.code(), "invalid_request", "{body}");
            assert!(err.description().contains("code is repeated"), "{body}");
        }
    }

    #[test]
    fn empty_value_counts_as_omitted_and_unknown_names_are_ignored() {
        let mut f = form("code=&foo=1&foo=2&grant_type=authorization_code").unwrap();
        assert!(f.get("code").is_none());
        assert!(f.get("foo").is_none());
        assert_eq!(f.take("grant_type").as_deref(), Some("authorization_code"));
        assert_eq!(f.take("grant_type"), None);
    }

    #[test]
    fn percent_and_plus_decoding() {
        let f = form("redirect_uri=https%3A%2F%2Fa.example%2Fcb%3Fx%3D1+2").unwrap();
        assert_eq!(f.get("redirect_uri"), Some("https://a.example/cb?x=1 2"));
        assert!(form("code=%FF").is_err());
    }

    /// Every grant's parameters are recognized, and a value never shows in
    /// `Debug`.
    #[test]
    fn each_grant_parameter_is_read_and_never_shown() {
        for grant in GrantType::ALL {
            for name in grant.parameters() {
                let f = form(&format!("{name}=s3cret-value")).unwrap();
                assert_eq!(f.get(name), Some("s3cret-value"), "{name}");
                assert!(!format!("{f:?}").contains("s3cret"), "{name}");
                assert!(form(&format!("{name}=a&{name}=b")).is_err(), "{name}");
            }
        }
    }

    #[test]
    fn basic_credentials_are_form_decoded() {
        let header = format!("Basic {}", STANDARD.encode("my%3Aclient:s%26cret+x"));
        let (id, secret) = parse_basic(header.as_bytes()).unwrap();
        assert_eq!(id, "my:client");
        assert_eq!(secret, "s&cret x");
        let err = parse_basic(b"Bearer abc").unwrap_err();
        assert_eq!(err.code(), "invalid_client");
        assert!(err.used_authorization_header());
    }
}
