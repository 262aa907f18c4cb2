//! Fuzz targets: one function per parser of untrusted input, each checking
//! properties that must hold for *any* input, not just "does not panic".
//!
//! The cargo-fuzz harness in `fuzz/` calls these with libFuzzer's inputs, and
//! `tests/corpus.rs` replays the seed corpus (`fuzz/corpus/`) through them on the
//! stable toolchain, so the corpus is checked in CI too. See `fuzz/README.md`.
//!
//! A broken property panics: that is how libFuzzer and the replay test see a
//! failure. The messages name the property, never the input (which can hold
//! a client secret); libFuzzer saves the input itself.

// This module exists to panic when a property fails (see above).
#![allow(clippy::panic)]

pub mod dpop;

pub use dpop::dpop_header;

use std::borrow::Cow;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use secrecy::ExposeSecret;

use token_endpoint::contract::record::{self, CodeRecord, Mismatch, Presented};
use token_endpoint::grant::authorization_code::CodeGrant;
use token_endpoint::grant::error::{Reason, TokenError};
use token_endpoint::grant::request::{PresentedAuth, TokenForm, TokenRequest};
use token_endpoint::grant::GrantRequest;
use token_endpoint::pkce::{ChallengeMethod, CodeVerifier};

/// The longest `error_description` any parser here produces. Descriptions
/// are fixed texts (plus a parameter name or a length), so a longer one
/// would mean the input is echoed back to the client.
const MAX_DESCRIPTION_LEN: usize = 256;

/// The form parser and request validation: `input` is a request body, sent
/// without an `Authorization` header.
///
/// - An error is one request validation may answer (`invalid_request`,
///   `invalid_client` without the header, `unsupported_grant_type`), its
///   reason maps to that same code, and its description is short, printable
///   and non-empty.
/// - An accepted form has no empty values (RFC 6749 §3.1), and re-encoded it
///   parses to the same form and validates to the same result.
/// - Unrecognized parameters, even undecodable ones, change nothing
///   (RFC 6749 §3.2).
/// - A recognized parameter added to a form that has it is refused as repeated.
/// - An accepted request holds exactly the form's values, a well-formed code
///   and verifier, and re-encoded it validates to the same request.
pub fn form(input: &[u8]) {
    let parsed = TokenForm::parse(input);
    let form = match parsed {
        Ok(form) => form,
        Err(error) => {
            check_error(&error, false);
            assert_eq!(
                error.reason(),
                Reason::MalformedRequest,
                "TokenForm::parse fails only with malformed_request"
            );
            assert_unknown_parameters_ignored(input, &Err(error));
            return;
        }
    };
    let values = fields(&form);
    assert!(
        values.iter().all(|(_, v)| v.is_none_or(|v| !v.is_empty())),
        "an empty value counts as omitted"
    );
    let reencoded = TokenForm::parse(encode_form(&values).as_bytes());
    let reencoded = match reencoded {
        Ok(reencoded) if fields(&reencoded) == values => reencoded,
        _ => panic!("an accepted form, re-encoded, parses to the same form"),
    };
    assert_unknown_parameters_ignored(input, &Ok(copy(&form)));
    for (name, value) in values {
        if value.is_some() {
            // After the value, and as an empty copy before it: `code=&code=x`
            // repeats `code` as much as `code=a&code=b` (security review,
            // finding 7).
            for repeated in [
                [input, b"&", name.as_bytes(), b"=x"].concat(),
                [name.as_bytes(), b"=&", input].concat(),
            ] {
                let refused = TokenForm::parse(&repeated);
                assert!(
                    refused.is_err_and(
                        |e| e.code() == "invalid_request" && e.description().contains("repeated")
                    ),
                    "a recognized parameter sent twice is refused as repeated, even when one copy is empty"
                );
            }
        }
    }

    let validated = TokenRequest::from_form(copy(&form), None);
    assert!(
        same_result(&validated, &TokenRequest::from_form(reencoded, None)),
        "an accepted form, re-encoded, validates to the same result"
    );
    match validated {
        Err(error) => check_error(&error, false),
        Ok(request) => {
            check_request(&request, &form);
            let body = encode_request(&request);
            let again = TokenForm::parse(body.as_bytes())
                .and_then(|form| TokenRequest::from_form(form, None));
            assert!(
                again.is_ok_and(|again| same_request(&again, &request)),
                "an accepted request, re-encoded, validates to the same request"
            );
        }
    }
}

/// The client-authentication header parser: `input` is the value of the
/// `Authorization` header of an otherwise valid request; a second reading
/// of `input` supplies a client_id and secret to encode.
///
/// - The header is decoded, or refused as `invalid_client` with the
///   `used_authorization_header` flag (so the answer carries
///   `WWW-Authenticate`), and with a body `client_id` the verdict on the
///   header is the same.
/// - A decoded header yields `client_secret_basic` credentials with a
///   non-empty client_id, and re-encoded yields the same credentials.
/// - A body `client_id` equal to the decoded one is accepted, any other is
///   refused; a body `client_secret` next to the header is always refused
///   (RFC 6749 §2.3: one mechanism only).
/// - Any client_id and secret, form-urlencoded and base64-encoded in a Basic
///   header (any case of the scheme, any surrounding spaces), decode to
///   exactly that client_id and secret.
pub fn auth_header(input: &[u8]) {
    let decoded = TokenRequest::from_form(valid_form(None, None), Some(input));
    match &decoded {
        Err(error) => {
            check_error(error, true);
            assert!(
                error.code() == "invalid_client"
                    && error.used_authorization_header()
                    && error.reason() == Reason::AuthFailed,
                "a refused Authorization header is invalid_client, flagged as from the header"
            );
            let with_id =
                TokenRequest::from_form(valid_form(Some("fuzz-client"), None), Some(input));
            assert!(
                with_id.as_ref().err() == Some(error),
                "a body client_id does not change the verdict on a bad header"
            );
        }
        Ok(request) => {
            let credentials = &request.credentials;
            assert_eq!(
                credentials.method,
                PresentedAuth::Basic,
                "header means Basic"
            );
            assert!(
                !credentials.client_id.is_empty(),
                "a decoded client_id is not empty"
            );
            let secret = credentials
                .secret
                .as_ref()
                .map(|s| s.expose_secret().to_owned());
            let Some(secret) = secret else {
                panic!("Basic credentials always carry a secret");
            };
            let header = encode_basic("Basic", &credentials.client_id, &secret, "");
            assert!(
                basic_credentials(header.as_bytes(), None)
                    .is_some_and(|(id, s)| id == credentials.client_id && s == secret),
                "decoded credentials, re-encoded, decode to the same"
            );
            assert!(
                basic_credentials(input, Some(&credentials.client_id))
                    .is_some_and(|(id, s)| id == credentials.client_id && s == secret),
                "a body client_id equal to the header's is accepted"
            );
            let other = format!("{}x", credentials.client_id);
            let mismatch = TokenRequest::from_form(valid_form(Some(&other), None), Some(input));
            assert!(
                mismatch.is_err_and(|e| e.code() == "invalid_request"),
                "a body client_id that differs from the header's is invalid_request"
            );
        }
    }
    let both = TokenRequest::from_form(valid_form(None, Some("s")), Some(input));
    assert!(
        both.is_err_and(|e| e.code() == "invalid_request"),
        "Authorization header and client_secret together are invalid_request"
    );

    let text = String::from_utf8_lossy(input);
    let (id, secret) = text.split_once(':').unwrap_or((&text, ""));
    let scheme = ["Basic", "basic", "BASIC", "bAsIc"]
        .get(input.len() % 4)
        .copied()
        .unwrap_or("Basic");
    let padding = if input.len().is_multiple_of(3) {
        "  "
    } else {
        ""
    };
    let header = encode_basic(scheme, id, secret, padding);
    let result = basic_credentials(header.as_bytes(), None);
    if id.is_empty() {
        assert!(result.is_none(), "an empty client_id is refused");
    } else {
        assert!(
            result.is_some_and(|(i, s)| i == id && s == secret),
            "a Basic header decodes to the client_id and secret encoded in it"
        );
    }
}

/// The code-record parser and the checks made against a record: `input` is
/// what the login frontend stored under a code.
///
/// - A refused record has a non-empty reason.
/// - An accepted record serializes to JSON that parses to an equal record,
///   float claims bit for bit (serde_json's `float_roundtrip`: without it,
///   the fuzzer found `3.1415900000072114` read back one ulp off).
/// - [`record::check`] passes for the record's own client and redirect URI
///   and a verifier answering its challenge, and reports each single
///   difference as its own mismatch: another client first, then another
///   redirect URI, `plain` without permission, a wrong verifier.
/// - A challenge that no verifier can produce (not a verifier under
///   `plain`, not 43 characters of base64url under `S256`) is never answered.
pub fn code_record(input: &[u8]) {
    let record = match CodeRecord::parse(input) {
        Ok(record) => record,
        Err(bad) => {
            assert!(!bad.0.is_empty(), "a refused record says why");
            return;
        }
    };
    let json = record.to_json();
    assert!(
        CodeRecord::parse(json.as_bytes()).is_ok_and(|r| r == record),
        "an accepted record, serialized, parses to an equal record"
    );

    let verifier = verifier_from(input);
    let method = record.code_challenge_method;
    let mut answered = record.clone();
    answered.code_challenge = verifier.challenge_for(method).to_owned();
    let own = Presented {
        client_id: &record.client_id,
        redirect_uri: record.redirect_uri.as_deref(),
        verifier: &verifier,
        allow_plain: true,
        dpop_jkt: None,
    };
    assert_eq!(
        record::check(&answered, &own),
        Ok(()),
        "the record's own values and a verifier answering its challenge pass"
    );
    let no_plain = Presented {
        allow_plain: false,
        ..own
    };
    let expected = match method {
        ChallengeMethod::S256 => Ok(()),
        ChallengeMethod::Plain => Err(Mismatch::PlainNotAllowed),
    };
    assert_eq!(
        record::check(&answered, &no_plain),
        expected,
        "plain is refused only to clients not allowed it"
    );
    let other_client = format!("{}x", record.client_id);
    for presented in [&own, &no_plain] {
        let other = Presented {
            client_id: &other_client,
            ..*presented
        };
        assert_eq!(
            record::check(&answered, &other),
            Err(Mismatch::Client),
            "another client is refused, before any other check"
        );
    }
    let longer_uri = record.redirect_uri.as_ref().map(|u| format!("{u}/"));
    let other_uris = match &longer_uri {
        Some(longer) => vec![None, Some(longer.as_str())],
        None => vec![Some("https://client.test/cb")],
    };
    for uri in other_uris {
        let other = Presented {
            redirect_uri: uri,
            ..own
        };
        assert_eq!(
            record::check(&answered, &other),
            Err(Mismatch::RedirectUri),
            "another redirect_uri is refused"
        );
    }
    let wrong = other_verifier(&verifier);
    let wrong_verifier = Presented {
        verifier: &wrong,
        ..own
    };
    assert_eq!(
        record::check(&answered, &wrong_verifier),
        Err(Mismatch::Pkce),
        "a verifier that does not answer the challenge is refused"
    );

    check_resource_properties(&record);

    match method {
        ChallengeMethod::Plain => match CodeVerifier::parse(record.code_challenge.clone()) {
            Ok(itself) => {
                let presented = Presented {
                    verifier: &itself,
                    ..own
                };
                assert_eq!(
                    record::check(&record, &presented),
                    Ok(()),
                    "a plain challenge is answered by itself"
                );
            }
            Err(_) => assert_eq!(
                record::check(&record, &own),
                Err(Mismatch::Pkce),
                "a plain challenge that is no verifier is never answered"
            ),
        },
        ChallengeMethod::S256 => {
            let digest_shaped = record.code_challenge.len() == 43
                && record
                    .code_challenge
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !digest_shaped {
                assert_eq!(
                    record::check(&record, &own),
                    Err(Mismatch::Pkce),
                    "an S256 challenge that is no base64url SHA-256 is never answered"
                );
            }
        }
    }
}

/// RFC 8707 as [`record::check_resource`] applies it (security review,
/// finding 3): no `resource` always passes; a `resource` passes against a
/// client registered for exactly its URIs when it is a non-empty set
/// (no empty URI, none twice), and never against a client with none, nor
/// one missing any of its URIs.
fn check_resource_properties(record: &CodeRecord) {
    use token_endpoint::contract::record::{check_resource, Resource, TargetMismatch};
    assert_eq!(
        check_resource(None, &[]),
        Ok(()),
        "no resource means the client's audience"
    );
    let Some(resource) = &record.resource else {
        return;
    };
    let uris: Vec<String> = match resource {
        Resource::One(one) => vec![one.clone()],
        Resource::Many(many) => many.clone(),
    };
    let own: Vec<String> = uris.iter().filter(|u| !u.is_empty()).cloned().collect();
    let distinct = uris
        .iter()
        .enumerate()
        .all(|(i, u)| !uris.iter().take(i).any(|earlier| earlier == u));
    let verdict = check_resource(Some(resource), &own);
    if uris.is_empty() || uris.iter().any(String::is_empty) {
        assert_eq!(
            verdict,
            Err(TargetMismatch::Empty),
            "an empty resource, or an empty URI in it, is refused"
        );
    } else if !distinct {
        assert_eq!(
            verdict,
            Err(TargetMismatch::Repeated),
            "a URI twice is refused"
        );
    } else {
        assert_eq!(verdict, Ok(()), "a set of the client's own URIs passes");
        assert!(
            check_resource(Some(resource), &[]).is_err(),
            "a client without resource indicators gets none"
        );
        let fewer = own.get(1..).unwrap_or_default();
        assert_eq!(
            check_resource(Some(resource), fewer),
            Err(TargetMismatch::NotAllowed),
            "a URI the client is not registered for is refused"
        );
    }
}

/// The properties every error of request parsing and validation has.
fn check_error(error: &TokenError, used_authorization_header: bool) {
    let code = error.code();
    assert!(
        [
            "invalid_request",
            "invalid_client",
            "unsupported_grant_type"
        ]
        .contains(&code),
        "request validation answers only invalid_request, invalid_client or unsupported_grant_type"
    );
    assert_eq!(
        error.reason().outcome(),
        code,
        "the reason's outcome label is the error code"
    );
    if code == "invalid_client" {
        assert_eq!(
            error.used_authorization_header(),
            used_authorization_header,
            "invalid_client is flagged as from the header exactly when one was sent"
        );
    }
    let description = error.description();
    assert!(!description.is_empty(), "an error has a description");
    assert!(
        description.len() <= MAX_DESCRIPTION_LEN,
        "a description is a fixed text, never the input"
    );
    // RFC 6749 §5.2: error_description "MUST NOT include characters
    // outside the set %x20-21 / %x23-5B / %x5D-7E".
    assert!(
        description
            .bytes()
            .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
        "a description uses only the characters RFC 6749 section 5.2 allows"
    );
}

/// `TokenForm::parse` gives the same answer with unrecognized parameters
/// around the body, even ones whose value is not UTF-8.
fn assert_unknown_parameters_ignored(input: &[u8], expected: &Result<TokenForm, TokenError>) {
    let wrapped = [b"fuzz_unknown=%FF%FE&".as_slice(), input, b"&fuzz_other=1"].concat();
    let actual = TokenForm::parse(&wrapped);
    let same = match (expected, &actual) {
        (Ok(a), Ok(b)) => fields(a) == fields(b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    };
    assert!(same, "unrecognized parameters are ignored");
}

/// The recognized parameters of a form, by name, in a fixed order.
fn fields(form: &TokenForm) -> [(&'static str, Option<&str>); 6] {
    [
        "grant_type",
        "code",
        "redirect_uri",
        "client_id",
        "client_secret",
        "code_verifier",
    ]
    .map(|name| (name, form.get(name)))
}

fn copy(form: &TokenForm) -> TokenForm {
    form.clone()
}

/// A form that passes every check before client authentication, with the
/// given body credentials.
fn valid_form(client_id: Option<&str>, client_secret: Option<&str>) -> TokenForm {
    let verifier = "a".repeat(43);
    TokenForm::from_pairs([
        ("grant_type", "authorization_code"),
        ("code", "fuzz-code"),
        ("redirect_uri", "https://client.test/cb"),
        ("client_id", client_id.unwrap_or_default()),
        ("client_secret", client_secret.unwrap_or_default()),
        ("code_verifier", verifier.as_str()),
    ])
}

/// The credentials a Basic header decodes to, next to an optional body
/// client_id, or `None` if refused.
fn basic_credentials(header: &[u8], body_id: Option<&str>) -> Option<(String, String)> {
    let request = TokenRequest::from_form(valid_form(body_id, None), Some(header)).ok()?;
    let secret = request.credentials.secret?.expose_secret().to_owned();
    Some((request.credentials.client_id, secret))
}

/// `<scheme> base64(urlencode(id) ":" urlencode(secret))` (RFC 6749 §2.3.1),
/// with `padding` around the credentials.
fn encode_basic(scheme: &str, id: &str, secret: &str, padding: &str) -> String {
    let credentials = format!("{}:{}", urlencode(id), urlencode(secret));
    format!(
        "{scheme} {padding}{}{padding}",
        STANDARD.encode(credentials)
    )
}

fn encode_form(values: &[(&str, Option<&str>)]) -> String {
    values
        .iter()
        .filter_map(|(name, value)| value.map(|v| format!("{name}={}", urlencode(v))))
        .collect::<Vec<_>>()
        .join("&")
}

/// The body a client would send for `request` (without a header).
fn encode_request(request: &TokenRequest) -> String {
    let credentials = &request.credentials;
    let secret = credentials.secret.as_ref().map(|s| s.expose_secret());
    let grant = code_grant(request);
    encode_form(&[
        ("grant_type", Some("authorization_code")),
        ("code", Some(grant.code())),
        ("redirect_uri", grant.redirect_uri()),
        ("client_id", Some(&credentials.client_id)),
        ("client_secret", secret),
        ("code_verifier", Some(grant.verifier().as_str())),
    ])
}

/// The code grant of an accepted request: the only grant type a fuzzed
/// form can name.
fn code_grant(request: &TokenRequest) -> &CodeGrant {
    match &request.grant {
        GrantRequest::AuthorizationCode(grant) => grant,
    }
}

/// What an accepted request must hold, given the form it came from.
fn check_request(request: &TokenRequest, form: &TokenForm) {
    assert_eq!(
        form.get("grant_type"),
        Some("authorization_code"),
        "only the authorization code grant is accepted"
    );
    let grant = code_grant(request);
    // assert!, not assert_eq!: a failure must not print the code or the verifier.
    assert!(
        Some(grant.code()) == form.get("code"),
        "the code is the form's"
    );
    let code = grant.code();
    let in_contract = !code.is_empty()
        && code.len() <= record::MAX_CODE_LEN
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    assert_eq!(
        grant.code_is_well_formed(),
        in_contract,
        "a code is well-formed exactly when it is 1 to 512 unreserved characters (the store is asked only then)"
    );
    let verifier = grant.verifier().as_str();
    assert!(
        Some(verifier) == form.get("code_verifier"),
        "the verifier is the form's"
    );
    assert!(
        CodeVerifier::parse(verifier.to_owned()).is_ok(),
        "an accepted verifier has RFC 7636 §4.1 syntax"
    );
    assert!(
        grant.verifier().s256_challenge() == token_endpoint::pkce::s256_challenge(verifier),
        "the precomputed S256 challenge is the verifier's"
    );
    assert_eq!(
        grant.redirect_uri(),
        form.get("redirect_uri"),
        "the redirect_uri is the form's"
    );
    let credentials = &request.credentials;
    assert_eq!(
        Some(credentials.client_id.as_str()),
        form.get("client_id"),
        "the client_id is the form's"
    );
    let secret = credentials.secret.as_ref().map(|s| s.expose_secret());
    assert!(
        secret == form.get("client_secret"),
        "the secret is the form's"
    );
    let method = match secret {
        Some(_) => PresentedAuth::Post,
        None => PresentedAuth::None,
    };
    assert_eq!(
        credentials.method, method,
        "a body secret means client_secret_post"
    );
}

fn same_request(a: &TokenRequest, b: &TokenRequest) -> bool {
    let secret = |r: &TokenRequest| {
        r.credentials
            .secret
            .as_ref()
            .map(|s| s.expose_secret().to_owned())
    };
    a.credentials.client_id == b.credentials.client_id
        && secret(a) == secret(b)
        && a.credentials.method == b.credentials.method
        && code_grant(a).code() == code_grant(b).code()
        && code_grant(a).redirect_uri() == code_grant(b).redirect_uri()
        && code_grant(a).verifier().as_str() == code_grant(b).verifier().as_str()
}

fn same_result(a: &Result<TokenRequest, TokenError>, b: &Result<TokenRequest, TokenError>) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => same_request(a, b),
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// `application/x-www-form-urlencoded` encoding of one value: unreserved
/// bytes as they are, space as `+`, everything else `%XY`.
fn urlencode(value: &str) -> Cow<'_, str> {
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'*');
    if value.bytes().all(plain) {
        return Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() * 3);
    for b in value.bytes() {
        match b {
            b' ' => out.push('+'),
            b if plain(b) => out.push(char::from(b)),
            b => out.push_str(&format!("%{b:02X}")),
        }
    }
    Cow::Owned(out)
}

/// A syntactically valid verifier (43 to 128 unreserved characters) made
/// from the input, so different inputs try different verifiers.
fn verifier_from(input: &[u8]) -> CodeVerifier {
    const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";
    let len = 43 + input.len() % 86;
    let text: String = (0..len)
        .map(|i| {
            let byte = input.get(i % input.len().max(1)).copied().unwrap_or(0);
            let pick = UNRESERVED.get(usize::from(byte) % UNRESERVED.len());
            char::from(pick.copied().unwrap_or(b'A'))
        })
        .collect();
    match CodeVerifier::parse(text) {
        Ok(verifier) => verifier,
        Err(_) => panic!("43 to 128 unreserved characters are a verifier"),
    }
}

/// A valid verifier other than `verifier`: its first character changed.
fn other_verifier(verifier: &CodeVerifier) -> CodeVerifier {
    let text = verifier.as_str();
    let first = if text.starts_with('A') { "B" } else { "A" };
    let other = format!("{first}{}", text.get(1..).unwrap_or_default());
    match CodeVerifier::parse(other) {
        Ok(other) => other,
        Err(_) => panic!("changing one unreserved character keeps a verifier"),
    }
}

/// A client's `allowed_cors_origins` entry, normalized to what browsers send
/// ([`token_endpoint::clients::origin::normalize`]); `input` is the entry, as UTF-8 (lossy).
///
/// - A normalized origin normalizes to itself: the registry and the
///   `Origin` header meet on one spelling.
/// - It is `http` or `https`, `://`, a host and at most a port that is not
///   the scheme's default: no path, query, fragment, user information,
///   wildcard or upper case.
/// - A refusal says why in a fixed text, never echoing the input.
pub fn origin(input: &[u8]) {
    use token_endpoint::clients::origin::normalize;
    let written = String::from_utf8_lossy(input);
    match normalize(&written) {
        Ok(origin) => {
            assert_eq!(
                normalize(&origin).as_deref(),
                Ok(origin.as_str()),
                "a normalized origin is its own normal form"
            );
            assert!(
                origin.bytes().all(|b| b.is_ascii_graphic())
                    && origin == origin.to_ascii_lowercase(),
                "a normalized origin is printable ASCII in lower case"
            );
            let (scheme, rest) = origin.split_once("://").unwrap_or_default();
            assert!(
                matches!(scheme, "http" | "https"),
                "the scheme is http or https"
            );
            assert!(
                !rest.is_empty() && !rest.contains(['/', '?', '#', '@', '*', '\\']),
                "only a host and a port follow the scheme"
            );
            let port = rest
                .rsplit_once(':')
                .filter(|(host, _)| !host.starts_with('[') || host.ends_with(']'))
                .map(|(_, port)| port);
            if let Some(port) = port {
                let default = if scheme == "http" { "80" } else { "443" };
                assert!(
                    port != default
                        && port.parse::<u16>().is_ok_and(|p| p > 0)
                        && !port.starts_with('0'),
                    "a port is 1 to 65535, written without leading zeros, and never the default"
                );
            }
        }
        Err(error) => {
            let text = error.to_string();
            assert!(!text.is_empty(), "a refusal says why");
            assert!(
                written.len() < 8 || !text.contains(written.as_ref()),
                "a refusal is a fixed text"
            );
        }
    }
}
