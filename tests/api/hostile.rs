//! Hostile input, proven by property tests (proptest).
//!
//! Requests are generated, sent over a raw TCP connection (reqwest cannot send
//! a CR inside a header value, a wrong `Content-Length`, broken chunking or
//! bytes that are not UTF-8 in a header) and the HTTP/1.1 answer is parsed
//! here, with a timeout on every read and write: a hang fails the case.
//!
//! - [`any_request_gets_a_well_formed_answer`]: whatever the request, the
//!   answer is a success or a well-formed RFC 6749 §5.2 error, never a 5xx.
//! - [`invalid_requests_never_consume_the_code`]: requests that differ from a
//!   correct redemption by one thing that makes them invalid are all refused,
//!   and the code then redeems.
//! - [`corrupt_records_are_invalid_grant`]: records a broken frontend wrote
//!   are answered `invalid_grant`, logged, counted and removed.
//! - [`hostile_dpop_headers_leave_the_code`]: huge, non-UTF-8, deeply
//!   nested, dotted and otherwise malformed `DPoP` headers are answered
//!   `invalid_dpop_proof`, and the code then redeems.
//!
//! What actix-web itself answers, before the token handler runs, when the
//! request is not valid HTTP/1.1 (actix-http 3.20; each row is asserted
//! exactly, see [`Fault`]):
//!
//! | request | answer |
//! |---|---|
//! | a request line that is not `token SP target SP HTTP/1.0 or HTTP/1.1`; a header line that is not `token: value` (CR, NUL or DEL in a value, no colon, space before the colon, a name that is not a token, obs-fold); no `Host` in HTTP/1.1, or two; two `Content-Length`, or one that is not a decimal number; `Content-Length` with `Transfer-Encoding`; a `Transfer-Encoding` other than `chunked`, or any in HTTP/1.0; an HTTP/1.0 POST without `Content-Length` | bare 400: `content-length: 0`, `connection: close`, no body, no `x-request-id`; then the connection closes (with a reset when request bytes were left unread) |
//! | more than 96 header lines, or a head far over 128 KiB (a head of up to about twice that may be read whole before actix checks, and is then parsed) | the same with 431 |
//! | a chunked body that breaks the chunk syntax; a body shorter than its `Content-Length` when the client half-closes (without the half-close the handler would wait, and answer 408 after `TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS`: tests/api/limits.rs) | the token handler's own 400 `invalid_request` ("the request body could not be read"), or its earlier refusal (405, Content-Type, 413) |
//! | bytes after the request (a body longer than its `Content-Length`, a body without a length) | the handler answers the request; the rest is parsed as another request, usually a bare 400 |
//!
//! A bare LF ends a header line as CRLF does (httparse is lenient), so a
//! header value with CRLF or LF followed by `name: value` is two headers,
//! answered by the handler like any other.
//!
//! To see the counts: `cargo test --test api hostile -- --nocapture`;
//! `PROPTEST_CASES=N` replaces every property's case count. These tests
//! install a global tracing subscriber that keeps the ERROR events of their
//! own requests (see [`capture_errors`]).

use std::collections::BTreeMap;
use std::fmt::{self, Write as _};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD as B64URL};
use base64::Engine;
use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::strategy::Union;
use proptest::test_runner::{TestCaseError, TestRunner};
use serde_json::Value as Json;
use token_endpoint::contract::frontend::{self, IssuedCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::helpers::*;
use token_endpoint_test_support::before_any_store;

/// `max_body_bytes` of the test apps (`helpers::settings`).
const MAX_BODY: usize = 8192;
/// Longer than any answer takes; a read or write that waits this long is a hang.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// RFC 6749 §5.2.
const RFC6749_ERRORS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];
const REDIRECT_URI: &str = "https://client.test/cb";

// ---------------------------------------------------------------------------
// The properties
// ---------------------------------------------------------------------------

/// One `#[test]` per store for a blocking `fn(Backend)`, as `on_every_store!`
/// does for async cases: proptest drives each case itself.
macro_rules! property_on_every_store {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[test]
                fn redis() {
                    super::$case($crate::helpers::Backend::Redis)
                }
                #[test]
                fn embedded() {
                    super::$case($crate::helpers::Backend::Embedded)
                }
            }
        )*
    };
}

property_on_every_store!(
    invalid_requests_never_consume_the_code,
    corrupt_records_are_invalid_grant,
    resources_are_granted_only_within_the_audience,
);

/// Whatever the bytes (random or huge bodies, invalid UTF-8, percent-encoding
/// tricks, repeated and missing parameters, odd content types, charsets,
/// methods and versions, header injection, broken framing), the token
/// endpoint answers 200 or a 4xx, never a 5xx, and never hangs. Every answer
/// of the handler is a well-formed RFC 6749 §5.1 or §5.2 response, and every
/// other one is exactly what actix answers for that kind of malformed HTTP
/// (module docs). No answer contains the code or the verifier.
#[test]
fn any_request_gets_a_well_formed_answer() {
    let harness = Harness::start(Backend::Redis);
    harness.run("any request", 3000, hostile_request(), |case| {
        harness.block_on(answered_well(&harness, case))
    });
}

async fn answered_well(harness: &Harness, case: Hostile) -> Result<(), TestCaseError> {
    let issued = harness
        .app
        .issue(grant(case.request.baseline.client_id()))
        .await;
    let wire = render(&case.request, &case.breaks, &issued, harness.port);
    let conversation = harness.converse(&wire).await?;
    check_conversation(&conversation, &wire, &issued)
}

/// A code is never consumed by an invalid request: each case issues a code,
/// sends one to three requests that each differ from a correct redemption by
/// one thing that makes them invalid (among variations that do not matter:
/// encodings, order, ignored parameters, framing, headers), checks that each
/// is refused, then redeems the code with a correct request (itself varied).
fn invalid_requests_never_consume_the_code(backend: Backend) {
    let harness = Harness::start(backend);
    harness.run("invalid requests", 300, invalid_attempts(), |case| {
        harness.block_on(code_survives(&harness, case))
    });
}

async fn code_survives(harness: &Harness, case: Attempts) -> Result<(), TestCaseError> {
    let issued = harness.app.issue(grant(case.baseline.client_id())).await;
    for (request, invalid) in &case.invalid {
        let wire = render(
            request,
            std::slice::from_ref(invalid),
            &issued,
            harness.port,
        );
        let conversation = harness.converse(&wire).await?;
        check_conversation(&conversation, &wire, &issued)?;
        prop_assert!(
            conversation.responses.iter().all(|r| r.status != 200),
            "an invalid request ({invalid:?}) got tokens: {conversation:?}"
        );
    }
    let wire = render(&case.valid, &[], &issued, harness.port);
    let conversation = harness.converse(&wire).await?;
    check_conversation(&conversation, &wire, &issued)?;
    let answer = &conversation.responses[0];
    if answer.status != 200 {
        // Tell a consumed code from a variation the service refuses.
        let canonical = harness.redeem_canonically(&issued, case.baseline).await;
        return Err(TestCaseError::fail(if canonical.status == 200 {
            format!("a correct request was refused ({answer:?}); its plain form redeems")
        } else {
            format!("the code no longer redeems after the invalid requests: {canonical:?}")
        }));
    }
    let body: Json = serde_json::from_slice(&answer.body).unwrap_or_default();
    prop_assert!(
        body["access_token"].is_string(),
        "no access token: {answer:?}"
    );
    Ok(())
}

/// A record that breaks the frontend contract (not JSON, not an object, a
/// required member missing or null, members of the wrong type, huge values,
/// deep nesting, strings that are not Unicode) is answered
/// 400 `invalid_grant`, counted once as `bad_record`, logged at error level
/// without the code, and removed (docs/contract.md); the service stays up
/// and redeems the next code. (A member named twice is not a corruption:
/// it counts by its last occurrence, `duplicated_member_counts_by_its_last_occurrence`.)
fn corrupt_records_are_invalid_grant(backend: Backend) {
    let harness = Harness::start(backend);
    let (template, record) = frontend::prepare(grant("public-app")).unwrap();
    let members = record_members(&record);
    harness.run(
        "corrupt records",
        300,
        corrupt_record(members, backend == Backend::Redis),
        |corrupt| harness.block_on(bad_record_refused(&harness, &template, corrupt)),
    );
    harness.block_on(async {
        let issued = harness.app.issue(grant("public-app")).await;
        let answer = harness
            .app
            .post_form(&TestApp::form(&issued, "public-app"))
            .await;
        assert_eq!(answer.status, 200, "{answer:?}");
    });
}

async fn bad_record_refused(
    harness: &Harness,
    template: &IssuedCode,
    corrupt: CorruptRecord,
) -> Result<(), TestCaseError> {
    let app = &harness.app;
    let attempt = IssuedCode {
        code: frontend::random_token().unwrap(),
        verifier: template.verifier.clone(),
    };
    harness.store_raw(&attempt.code, &corrupt.render()).await;
    let counted = app.requests("invalid_grant", "bad_record").await;
    static REQUEST_IDS: AtomicU64 = AtomicU64::new(0);
    let request_id = format!(
        "{LOGGED_ID_PREFIX}record-{}",
        REQUEST_IDS.fetch_add(1, Ordering::Relaxed)
    );
    harness.sent.fetch_add(2, Ordering::Relaxed);
    let answer = app
        .send(
            app.http
                .post(app.token_url())
                .header("x-request-id", &request_id)
                .form(&TestApp::form(&attempt, "public-app")),
        )
        .await;
    prop_assert_eq!(
        (answer.status, answer.error()),
        (400, "invalid_grant"),
        "{:?}",
        answer
    );
    prop_assert!(!answer.description().is_empty());
    prop_assert_eq!(answer.header("cache-control"), Some("no-store"));
    prop_assert_eq!(
        app.requests("invalid_grant", "bad_record").await,
        counted + 1.0
    );
    if harness.logs_captured {
        let log = ERROR_LOG.lock().unwrap_or_else(|e| e.into_inner());
        let lines: Vec<&LoggedError> = log.iter().filter(|e| e.request_id == request_id).collect();
        prop_assert!(
            lines
                .iter()
                .any(|e| e.text.contains("unreadable code record")),
            "no error logged for the bad record: {lines:?}"
        );
        prop_assert!(
            lines.iter().all(|e| !e.text.contains(&attempt.code)),
            "the code is in the log: {lines:?}"
        );
    }
    // Removed: presented again, the code is refused; the embedded store no
    // longer knows it. (Redis answers a replay, see
    // `bad_record_retried_is_unknown_not_a_replay`, so there the key is
    // looked at.)
    if app.redis.is_some() {
        prop_assert!(
            !harness.redis_has_record(&attempt.code),
            "the bad record is still stored"
        );
    }
    let unknown = app.requests("invalid_grant", "unknown_code").await;
    let again = app.post_form(&TestApp::form(&attempt, "public-app")).await;
    prop_assert_eq!((again.status, again.error()), (400, "invalid_grant"));
    if app.redis.is_none() {
        prop_assert_eq!(
            app.requests("invalid_grant", "unknown_code").await,
            unknown + 1.0,
            "the bad record is still stored"
        );
    }
    Ok(())
}

/// URIs a record's `resource` is drawn from: `public-app`'s registered
/// audience, and others that look like it or like other APIs.
const ALLOWED_RESOURCES: [&str; 2] = ["https://api.test", "https://other.test"];
const OTHER_RESOURCES: [&str; 7] = [
    "https://admin.internal.example",
    "",
    "https://API.test",
    "https://api.test/",
    "https://api.test#x",
    "urn:example:ledger",
    " https://api.test",
];

/// A `resource` member: one URI, or a list of 0 to 4.
fn resource() -> impl Strategy<Value = token_endpoint::contract::record::Resource> {
    use token_endpoint::contract::record::Resource;
    let uri = prop_oneof![
        3 => select(&ALLOWED_RESOURCES[..]),
        2 => select(&OTHER_RESOURCES[..]),
    ]
    .prop_map(str::to_owned);
    prop_oneof![
        uri.clone().prop_map(Resource::One),
        prop::collection::vec(uri, 0..=4).prop_map(Resource::Many),
    ]
}

/// Security review, finding 3: whatever `resource` the frontend stored, an
/// access token's audience is never outside the client's registered one.
/// A non-empty set of `public-app`'s own URIs, none twice, is granted as
/// exactly that `aud`; anything else is `invalid_target`, no token, and the
/// code is then unknown (consumed, not a replay).
fn resources_are_granted_only_within_the_audience(backend: Backend) {
    let harness = Harness::start(backend);
    harness.run("resources", 150, resource(), |resource| {
        harness.block_on(resource_granted_within_audience(&harness, resource))
    });
}

async fn resource_granted_within_audience(
    harness: &Harness,
    resource: token_endpoint::contract::record::Resource,
) -> Result<(), TestCaseError> {
    use token_endpoint::contract::record::Resource;
    let app = &harness.app;
    let mut g = grant("public-app");
    g.resource = Some(resource.clone());
    let issued = app.issue(g).await;
    let form = TestApp::form(&issued, "public-app");
    harness.sent.fetch_add(2, Ordering::Relaxed);
    let answer = app.post_form(&form).await;
    let uris: Vec<&str> = match &resource {
        Resource::One(one) => vec![one.as_str()],
        Resource::Many(many) => many.iter().map(String::as_str).collect(),
    };
    let distinct = uris.iter().enumerate().all(|(i, u)| !uris[..i].contains(u));
    let grantable =
        !uris.is_empty() && distinct && uris.iter().all(|u| ALLOWED_RESOURCES.contains(u));
    if grantable {
        prop_assert_eq!(answer.status, 200, "{:?}", answer);
        let (_, claims) = jwt_parts(answer.body["access_token"].as_str().unwrap_or_default());
        let aud: Vec<&str> = match &claims["aud"] {
            Json::String(one) => vec![one.as_str()],
            many => many
                .as_array()
                .map(|a| a.iter().filter_map(Json::as_str).collect())
                .unwrap_or_default(),
        };
        prop_assert_eq!(aud, uris);
    } else {
        prop_assert_eq!(
            (answer.status, answer.error()),
            (400, "invalid_target"),
            "{:?}",
            answer
        );
        prop_assert!(answer.body.get("access_token").is_none());
        let again = app.post_form(&form).await;
        prop_assert_eq!((again.status, again.error()), (400, "invalid_grant"));
        prop_assert!(
            again.description().contains("invalid"),
            "a retry is an unknown code: {:?}",
            again
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Hostile DPoP headers
// ---------------------------------------------------------------------------

before_any_store!(hostile_dpop_headers_leave_the_code);

/// Hostile `DPoP` headers over real HTTP, on one code: each is answered
/// with a well-formed 400 `invalid_dpop_proof` (JSON, `no-store`, a short
/// description in RFC 6749 section 5.2's characters that echoes no 40
/// bytes of the header), never a 5xx; none asks the store; and the code
/// then redeems with a valid proof. `DpopPolicy::check` itself meets this
/// for any bytes (fuzz/properties, the `dpop` property); this shows the
/// HTTP layer and the token endpoint keep it. The array-shaped claims and
/// header were accepted, and so redeemed the code, before the check read
/// them as JSON objects only.
async fn hostile_dpop_headers_leave_the_code(backend: Backend) {
    use reqwest::header::HeaderValue;
    use serde_json::json;
    use token_endpoint_test_support::dpop::claims as dpop_claims;

    let app = spawn_app(backend).await;
    let issued = app.issue(grant("public-app")).await;
    let form = TestApp::form(&issued, "public-app");
    let htu = format!("{ISSUER}/oauth/token");
    let key = DpopKey::es256();
    let good = key.proof(&htu);
    let header = serde_json::to_vec(&key.header()).unwrap();
    let claims = serde_json::to_vec(&dpop_claims(&htu)).unwrap();
    let secret = "SECRET".repeat(100);
    let nested = |depth: usize| format!("{}{}", "[".repeat(depth), "]".repeat(depth));
    // Values in the order of the check's structs, as serde would read
    // them from an array: the claims, then the header (`crit` null).
    let claims_array = {
        let c = dpop_claims(&htu);
        serde_json::to_vec(&json!([c["jti"], c["htm"], c["htu"], c["iat"], null])).unwrap()
    };
    let header_array =
        serde_json::to_vec(&json!(["dpop+jwt", key.alg(), key.jwk(), null])).unwrap();
    let mut private_null = key.header();
    private_null["jwk"]["d"] = Json::Null;
    let mut jwk_secret = key.header();
    jwk_secret["jwk"] = Json::String(secret.clone());
    let hostile: Vec<(&str, Vec<u8>)> = vec![
        (
            "64 KiB",
            format!("{good}{}", "A".repeat(64 * 1024)).into_bytes(),
        ),
        ("not UTF-8", b"eyJ\xff\xfe.\x80\x81.abc".to_vec()),
        (
            "not UTF-8 in a valid proof",
            [good.as_bytes(), b"\xc3\xa9"].concat(),
        ),
        ("1,000 dots", ".".repeat(1000).into_bytes()),
        (
            "1,000 dots in a valid proof",
            good.replacen('.', &".".repeat(1000), 1).into_bytes(),
        ),
        (
            "deeply nested header",
            format!("{}.e30.", B64URL.encode(nested(3000))).into_bytes(),
        ),
        (
            "deeply nested claims, signed",
            key.sign_raw(&header, nested(3000).as_bytes()).into_bytes(),
        ),
        (
            "deeply nested member in the claims, signed",
            key.sign_raw(&header, format!(r#"{{"jti":{}}}"#, nested(3000)).as_bytes())
                .into_bytes(),
        ),
        (
            "claims as an array, signed",
            key.sign_raw(&header, &claims_array).into_bytes(),
        ),
        (
            "header as an array, signed",
            key.sign_raw(&header_array, &claims).into_bytes(),
        ),
        (
            "private member null",
            key.sign(&private_null, &dpop_claims(&htu)).into_bytes(),
        ),
        (
            "jwk a long string",
            key.sign(&jwk_secret, &dpop_claims(&htu)).into_bytes(),
        ),
        (
            "header a long string",
            format!("{}.e30.", B64URL.encode(format!("\"{secret}\""))).into_bytes(),
        ),
        ("signature of another key", {
            let other = DpopKey::es256().sign(&key.header(), &dpop_claims(&htu));
            other.into_bytes()
        }),
    ];
    for (case, value) in &hostile {
        let value = HeaderValue::from_bytes(value).unwrap();
        let answer = app
            .send(
                app.http
                    .post(app.token_url())
                    .form(&form)
                    .header("DPoP", value.clone()),
            )
            .await;
        assert_eq!(
            (answer.status, answer.error()),
            (400, "invalid_dpop_proof"),
            "{case}: {answer:?}"
        );
        answer.assert_error(400, "invalid_dpop_proof");
        assert_eq!(
            answer.header("content-type"),
            Some("application/json"),
            "{case}"
        );
        let description = answer.description();
        assert!(description.len() <= 256, "{case}: {description}");
        assert!(
            description
                .bytes()
                .all(|b| matches!(b, 0x20..=0x21 | 0x23..=0x5B | 0x5D..=0x7E)),
            "{case}: {description}"
        );
        let sent = value.as_bytes();
        let decoded: Vec<Vec<u8>> = sent
            .split(|b| *b == b'.')
            .filter_map(|part| B64URL.decode(part).ok())
            .collect();
        for window in description.as_bytes().windows(40) {
            assert!(
                !sent.windows(40).any(|w| w == window)
                    && !decoded.iter().any(|d| d.windows(40).any(|w| w == window)),
                "{case}: the description echoes the header: {description}"
            );
        }
    }
    assert_eq!(
        app.store_takes().await,
        0.0,
        "no hostile header asked the store"
    );
    let answer = app.post_form_dpop(&form, &[&key.proof(&htu)]).await;
    assert_eq!(answer.status, 200, "the code survived: {answer:?}");
    assert_eq!(answer.body["token_type"], "DPoP");
}

// ---------------------------------------------------------------------------
// What the properties found, kept as plain tests
// ---------------------------------------------------------------------------

/// A bad record (here: `sub` is missing) is removed by the first
/// redemption, so a second one finds no code: `unknown_code`, not a replay
/// (docs/contract.md: the record is removed, no request could ever redeem
/// it).
mod bad_record_retried_is_unknown_not_a_replay {
    use crate::helpers::Backend;

    #[tokio::test]
    async fn embedded() {
        super::bad_record_retried(Backend::Embedded).await
    }

    /// With the earlier Lua take, Redis took the record, leaving the used
    /// marker, before the service found it broken: the retry was answered
    /// as a replay, counted in `code_replays_total`, logged as a
    /// `code_replay` security event, and a grant that was never issued was
    /// revoked (found by this test). The service now reads the record
    /// before consuming anything.
    #[tokio::test]
    async fn redis() {
        super::bad_record_retried(Backend::Redis).await
    }
}

async fn bad_record_retried(backend: Backend) {
    let app = spawn_app(backend).await;
    let (issued, record) = frontend::prepare(grant("public-app")).unwrap();
    let mut value = serde_json::to_value(&record).expect("a record is JSON");
    value.as_object_mut().expect("an object").remove("sub");
    app.insert_raw(&issued.code, &value.to_string(), Duration::from_secs(60))
        .await;
    let form = TestApp::form(&issued, "public-app");
    app.post_form(&form)
        .await
        .assert_error(400, "invalid_grant");
    app.post_form(&form)
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(app.requests("invalid_grant", "bad_record").await, 1.0);
    assert_eq!(app.metric("code_replays_total").await, 0.0);
    assert_eq!(app.requests("invalid_grant", "unknown_code").await, 1.0);
}

/// A record with a member twice is read by its last occurrence by both
/// stores, however the name is spelled (docs/contract.md, "Duplicated
/// members").
mod duplicated_member_counts_by_its_last_occurrence {
    use crate::helpers::Backend;

    #[tokio::test]
    async fn embedded() {
        super::duplicated_member(Backend::Embedded).await
    }

    #[tokio::test]
    async fn redis() {
        super::duplicated_member(Backend::Redis).await
    }
}

async fn duplicated_member(backend: Backend) {
    let app = spawn_app(backend).await;
    let with = |member: &str| {
        let (issued, record) = frontend::prepare(grant("public-app")).unwrap();
        let json = record.to_json();
        let raw = format!("{},{member}}}", json.strip_suffix('}').expect("an object"));
        (issued, raw)
    };
    // The last occurrence names another client: a mismatch, the code kept
    // for the client it names.
    let (issued, raw) = with(r#""client_id":"plain-app""#);
    app.insert_raw(&issued.code, &raw, Duration::from_secs(60))
        .await;
    app.post_form(&TestApp::form(&issued, "public-app"))
        .await
        .assert_error(400, "invalid_grant");
    assert_eq!(app.requests("invalid_grant", "client_mismatch").await, 1.0);
    let response = app.post_form(&TestApp::form(&issued, "plain-app")).await;
    assert_eq!(response.status, 200, "{response:?}");
    // The first names another client and the last, spelled with an escape,
    // the right one; a member the contract does not know comes twice.
    for member in [
        r#""client_id":"plain-app","client\u005fid":"public-app""#,
        r#""x-extra":1,"x-extra":2"#,
    ] {
        let (issued, raw) = with(member);
        app.insert_raw(&issued.code, &raw, Duration::from_secs(60))
            .await;
        let response = app.post_form(&TestApp::form(&issued, "public-app")).await;
        assert_eq!(response.status, 200, "{member}: {response:?}");
    }
    assert_eq!(app.requests("invalid_grant", "bad_record").await, 0.0);
}

// ---------------------------------------------------------------------------
// Running properties against one app
// ---------------------------------------------------------------------------

/// One app on its own runtime, and the count of requests sent to it.
struct Harness {
    app: TestApp,
    port: u16,
    sent: AtomicU64,
    /// How the first answers were, to show what the generators reach.
    outcomes: Mutex<BTreeMap<String, u64>>,
    /// Whether [`ERROR_LOG`] receives the app's error events.
    logs_captured: bool,
    // Declared last so the app is dropped while its runtime still exists.
    runtime: tokio::runtime::Runtime,
}

impl Harness {
    fn start(backend: Backend) -> Self {
        let logs_captured = capture_errors();
        // proptest calls each case synchronously: the runtime is driven by
        // `block_on` per case (actix serves from its own threads meanwhile).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime");
        let redis = (backend == Backend::Redis).then(|| Arc::new(Mutex::new(RedisServer::start())));
        let app = runtime.block_on(spawn_app_on(redis, Arc::new(AppFiles::new()), |settings| {
            // Thousands of failed authentications from one address would
            // otherwise turn most answers into the limiter's 429
            // (tests/api/limits.rs tests it); a 429 is still checked for
            // its shape should one come.
            settings.limits.auth.client_alert = u32::MAX;
            settings.limits.auth.per_address = u32::MAX;
        }));
        let port = app
            .address
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .expect("the app's port");
        Self {
            app,
            port,
            sent: AtomicU64::new(0),
            outcomes: Mutex::default(),
            logs_captured,
            runtime,
        }
    }

    fn block_on<F: Future>(&self, future: F) -> F::Output {
        self.runtime.block_on(future)
    }

    /// Check `property` on `cases` values of `strategy` (or `PROPTEST_CASES`),
    /// shrinking a failure to a minimal case, and print what was tried.
    fn run<S: Strategy>(
        &self,
        name: &str,
        cases: u32,
        strategy: S,
        property: impl Fn(S::Value) -> Result<(), TestCaseError>,
    ) {
        // The fast set (without the `slow-tests` feature) runs a fifth of
        // the cases; PROPTEST_CASES overrides either.
        let cases = if cfg!(feature = "slow-tests") {
            cases
        } else {
            (cases / 5).max(20)
        };
        let cases = std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|c| c.parse().ok())
            .unwrap_or(cases);
        let mut runner = TestRunner::new(ProptestConfig {
            cases,
            // Nothing written into the (shared) checkout; a failure prints
            // its minimal input instead.
            failure_persistence: None,
            max_shrink_iters: 512,
            max_shrink_time: 120_000,
            ..ProptestConfig::default()
        });
        let started = Instant::now();
        let tried = AtomicU64::new(0);
        let result = runner.run(&strategy, |value| {
            tried.fetch_add(1, Ordering::Relaxed);
            property(value)
        });
        eprintln!(
            "hostile: {name} on {}: {cases} cases, {} run with shrinking, {} requests sent, {:.1?}, {}",
            self.app.state.redeemer.store().kind(),
            tried.load(Ordering::Relaxed),
            self.sent.load(Ordering::Relaxed),
            started.elapsed(),
            if result.is_ok() { "0 failures" } else { "FAILED" },
        );
        let outcomes =
            std::mem::take(&mut *self.outcomes.lock().unwrap_or_else(|e| e.into_inner()));
        if !outcomes.is_empty() {
            let outcomes: Vec<String> = outcomes.iter().map(|(o, n)| format!("{o}: {n}")).collect();
            eprintln!("hostile: {name}: first answers: {}", outcomes.join(", "));
        }
        if let Err(e) = result {
            panic!("{name}: {e}");
        }
    }

    /// Send `wire` on a fresh connection and read the answers.
    async fn converse(&self, wire: &Wire) -> Result<Conversation, TestCaseError> {
        self.sent.fetch_add(1, Ordering::Relaxed);
        let conversation = converse(self.port, wire).await?;
        if let Some(first) = conversation.responses.first() {
            let error: Json = serde_json::from_slice(&first.body).unwrap_or_default();
            let outcome = match error["error"].as_str() {
                _ if is_bare(first, first.status) => format!("bare {}", first.status),
                Some(error) => format!("{} {error}", first.status),
                None => first.status.to_string(),
            };
            let mut outcomes = self.outcomes.lock().unwrap_or_else(|e| e.into_inner());
            *outcomes.entry(outcome).or_default() += 1;
        }
        Ok(conversation)
    }

    /// Redeem `issued` as a client library would: the plain correct form.
    async fn redeem_canonically(&self, issued: &IssuedCode, baseline: Baseline) -> Answer {
        let form = TestApp::form(issued, baseline.client_id());
        match baseline {
            Baseline::Public => self.app.post_form(&form).await,
            Baseline::Basic => {
                self.app
                    .post_form_basic(&form, "basic-app", BASIC_SECRET)
                    .await
            }
        }
    }

    /// Write `raw` as the record of `code`: through `insert_raw` when it is
    /// UTF-8, else (Redis only) with a `SET` of the bytes.
    async fn store_raw(&self, code: &str, raw: &[u8]) {
        match std::str::from_utf8(raw) {
            Ok(text) => {
                self.app
                    .insert_raw(code, text, Duration::from_secs(60))
                    .await
            }
            Err(_) => {
                let mut conn = self.redis_connection();
                let key = token_endpoint::store::KeySpace::default().code(code);
                let _: () = redis::cmd("SET")
                    .arg(key)
                    .arg(raw)
                    .arg("EX")
                    .arg(60)
                    .query(&mut conn)
                    .expect("SET a raw record");
            }
        }
    }

    /// Whether Redis holds a record under `code`.
    fn redis_has_record(&self, code: &str) -> bool {
        let key = token_endpoint::store::KeySpace::default().code(code);
        redis::cmd("EXISTS")
            .arg(key)
            .query::<bool>(&mut self.redis_connection())
            .expect("EXISTS")
    }

    fn redis_connection(&self) -> redis::Connection {
        let redis = self.app.redis.as_ref().expect("a Redis app");
        let client = redis.lock().unwrap_or_else(|e| e.into_inner()).client();
        client.get_connection().expect("connect to Redis")
    }
}

// ---------------------------------------------------------------------------
// What is generated: a request, made of a form, a head and breaks
// ---------------------------------------------------------------------------

/// Bytes, shown escaped (and cut short when long) in failure reports.
#[derive(Clone, PartialEq, Eq)]
struct B(Vec<u8>);

impl fmt::Debug for B {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 120;
        let shown = &self.0[..self.0.len().min(SHOWN)];
        write!(f, "b\"{}\"", shown.escape_ascii())?;
        if self.0.len() > SHOWN {
            write!(f, "...({} bytes)", self.0.len())?;
        }
        Ok(())
    }
}

fn b(bytes: impl AsRef<[u8]>) -> B {
    B(bytes.as_ref().to_vec())
}

/// Which client the code is issued to, and so what a correct request is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Baseline {
    /// `public-app`: `client_id` in the body, no secret.
    Public,
    /// `basic-app`: `Authorization: Basic`, `client_id` in the body optional.
    Basic,
}

impl Baseline {
    fn client_id(self) -> &'static str {
        match self {
            Self::Public => "public-app",
            Self::Basic => "basic-app",
        }
    }

    /// The parameters of a correct redemption.
    fn params(self) -> Vec<(Name, Value)> {
        vec![
            (Name::GrantType, text("authorization_code")),
            (Name::Code, Value::Code),
            (Name::RedirectUri, text(REDIRECT_URI)),
            (Name::ClientId, text(self.client_id())),
            (Name::CodeVerifier, Value::Verifier),
        ]
    }

    /// Parameters without which the request is invalid.
    fn required(self) -> &'static [Name] {
        match self {
            Self::Public => &[
                Name::GrantType,
                Name::Code,
                Name::RedirectUri,
                Name::ClientId,
                Name::CodeVerifier,
            ],
            Self::Basic => &[
                Name::GrantType,
                Name::Code,
                Name::RedirectUri,
                Name::CodeVerifier,
            ],
        }
    }
}

/// A parameter the service reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Name {
    GrantType,
    Code,
    RedirectUri,
    ClientId,
    ClientSecret,
    CodeVerifier,
}

impl Name {
    const ALL: [Name; 6] = [
        Name::GrantType,
        Name::Code,
        Name::RedirectUri,
        Name::ClientId,
        Name::ClientSecret,
        Name::CodeVerifier,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Self::GrantType => "grant_type",
            Self::Code => "code",
            Self::RedirectUri => "redirect_uri",
            Self::ClientId => "client_id",
            Self::ClientSecret => "client_secret",
            Self::CodeVerifier => "code_verifier",
        }
    }

    fn is_recognized(name: &str) -> bool {
        Self::ALL.iter().any(|n| n.as_str() == name)
    }
}

/// A parameter value, before encoding.
#[derive(Clone, Debug)]
enum Value {
    /// The issued code and verifier, known when the case runs.
    Code,
    Verifier,
    Text(String),
    /// `base` with its character at `at` (modulo its length) replaced by
    /// another character of `[A-Za-z0-9-._~]`: always a different value.
    OneCharChanged {
        base: Box<Value>,
        at: Index,
        to: u8,
    },
    /// `base` with `raw` inserted unencoded after its `at`-th character.
    /// Every insert decodes to something non-empty, so the value changes.
    Spliced {
        base: Box<Value>,
        at: Index,
        raw: B,
    },
    /// Sent exactly as is.
    Raw(B),
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

const UNRESERVED: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~";

impl Value {
    /// The decoded text of a value that has one (not `Spliced`, `Raw`).
    fn text(&self, issued: &IssuedCode) -> Vec<u8> {
        match self {
            Self::Code => issued.code.as_bytes().to_vec(),
            Self::Verifier => issued.verifier.as_bytes().to_vec(),
            Self::Text(t) => t.as_bytes().to_vec(),
            Self::OneCharChanged { base, at, to } => {
                let mut bytes = base.text(issued);
                if bytes.is_empty() {
                    return vec![*to];
                }
                let i = at.index(bytes.len());
                let mut replacement = *to;
                if replacement == bytes[i] {
                    let pos = UNRESERVED
                        .iter()
                        .position(|&c| c == replacement)
                        .unwrap_or(0);
                    replacement = UNRESERVED[(pos + 1) % UNRESERVED.len()];
                }
                bytes[i] = replacement;
                bytes
            }
            Self::Spliced { .. } | Self::Raw(_) => Vec::new(),
        }
    }

    fn render(&self, enc: &Enc, issued: &IssuedCode, out: &mut Vec<u8>) {
        match self {
            Self::Raw(raw) => out.extend_from_slice(&raw.0),
            Self::Spliced { base, at, raw } => {
                let bytes = base.text(issued);
                let cut = at.index(bytes.len() + 1);
                enc.encode(&bytes[..cut], 0, out);
                out.extend_from_slice(&raw.0);
                enc.encode(&bytes[cut..], cut, out);
            }
            _ => enc.encode(&self.text(issued), 0, out),
        }
    }
}

/// How a name or value is `x-www-form-urlencoded`. Every choice decodes to
/// the same text: `mask` picks further bytes to percent-encode, `lower`
/// the case of the hex digits, `plus` whether a space is `+` or `%20`.
#[derive(Clone, Copy, Debug)]
struct Enc {
    mask: u64,
    lower: bool,
    plus: bool,
}

impl Enc {
    const PLAIN: Enc = Enc {
        mask: 0,
        lower: false,
        plus: true,
    };

    /// Encode `bytes`, the first of which is at `offset` in its component.
    fn encode(&self, bytes: &[u8], offset: usize, out: &mut Vec<u8>) {
        for (i, &byte) in bytes.iter().enumerate() {
            let safe = byte.is_ascii_alphanumeric() || b"-._~:/?@!$'()*,;".contains(&byte);
            if byte == b' ' && self.plus {
                out.push(b'+');
            } else if !safe || (self.mask >> ((offset + i) % 64)) & 1 == 1 {
                let hex = if self.lower {
                    format!("%{byte:02x}")
                } else {
                    format!("%{byte:02X}")
                };
                out.extend_from_slice(hex.as_bytes());
            } else {
                out.push(byte);
            }
        }
    }
}

/// One `&`-separated piece of a form body.
#[derive(Clone, Debug)]
enum Piece {
    Param {
        name: Name,
        name_enc: Enc,
        value: Value,
        value_enc: Enc,
    },
    /// A name the service ignores (RFC 6749 §3.2), so its value, whatever
    /// its bytes but `&`, is never decoded.
    Unknown {
        name: String,
        name_enc: Enc,
        value: B,
    },
    /// `name=` or `name`: empty, so omitted (RFC 6749 §3.1), for a name the
    /// form does not otherwise carry. Next to a copy of the parameter, even
    /// an empty one is a repeat (RFC 6749 §3.2; `Break::Repeated`).
    Empty {
        name: Name,
        name_enc: Enc,
        equals: bool,
    },
    /// Nothing between two `&`.
    Nothing,
    /// A name that is not UTF-8 once decoded: names are always decoded.
    BadName { name: B, value: B },
}

impl Piece {
    fn is(&self, wanted: Name) -> bool {
        matches!(self, Piece::Param { name, .. } if *name == wanted)
    }

    fn render(&self, issued: &IssuedCode, out: &mut Vec<u8>) {
        match self {
            Piece::Param {
                name,
                name_enc,
                value,
                value_enc,
            } => {
                name_enc.encode(name.as_str().as_bytes(), 0, out);
                out.push(b'=');
                value.render(value_enc, issued, out);
            }
            Piece::Unknown {
                name,
                name_enc,
                value,
            } => {
                name_enc.encode(name.as_bytes(), 0, out);
                out.push(b'=');
                out.extend_from_slice(&value.0);
            }
            Piece::Empty {
                name,
                name_enc,
                equals,
            } => {
                name_enc.encode(name.as_str().as_bytes(), 0, out);
                if *equals {
                    out.push(b'=');
                }
            }
            Piece::Nothing => {}
            Piece::BadName { name, value } => {
                out.extend_from_slice(&name.0);
                out.push(b'=');
                out.extend_from_slice(&value.0);
            }
        }
    }
}

#[derive(Clone, Debug)]
struct Form {
    /// `Empty` pieces, first of all.
    front: Vec<Piece>,
    /// The parameters, in the generated order.
    params: Vec<Piece>,
    /// `Unknown` and `Nothing` pieces, inserted among the parameters.
    extra: Vec<(Index, Piece)>,
}

impl Form {
    fn param_mut(&mut self, wanted: Name) -> Option<&mut Piece> {
        self.params.iter_mut().find(|p| p.is(wanted))
    }

    fn render(&self, issued: &IssuedCode) -> Vec<u8> {
        let mut pieces: Vec<&Piece> = self.params.iter().collect();
        for (at, piece) in &self.extra {
            pieces.insert(at.index(pieces.len() + 1), piece);
        }
        let mut out = Vec::new();
        for (i, piece) in self.front.iter().chain(pieces).enumerate() {
            if i > 0 {
                out.push(b'&');
            }
            piece.render(issued, &mut out);
        }
        out
    }
}

#[derive(Clone, Debug)]
enum Body {
    Form(Form),
    Bytes(B),
    /// The correct parameters as a JSON object.
    Json,
    /// The correct parameters as `multipart/form-data`.
    Multipart,
}

impl Body {
    fn render(&self, issued: &IssuedCode) -> Vec<u8> {
        let fields = [
            ("grant_type", "authorization_code"),
            ("code", issued.code.as_str()),
            ("redirect_uri", REDIRECT_URI),
            ("client_id", "public-app"),
            ("code_verifier", issued.verifier.as_str()),
        ];
        match self {
            Body::Form(form) => form.render(issued),
            Body::Bytes(bytes) => bytes.0.clone(),
            Body::Json => {
                let object: serde_json::Map<String, Json> = fields
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), Json::from(v)))
                    .collect();
                serde_json::to_vec(&object).unwrap_or_default()
            }
            Body::Multipart => {
                let mut out = String::new();
                for (name, value) in fields {
                    let _ = write!(
                        out,
                        "--hostile\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n"
                    );
                }
                out.push_str("--hostile--\r\n");
                out.into_bytes()
            }
        }
    }
}

#[derive(Clone, Debug)]
enum Target {
    /// `/oauth/token`
    Origin,
    /// `/oauth/token?<query>`: the handler reads only the body.
    Query(String),
    /// `http://127.0.0.1:<port>/oauth/token`
    Absolute,
}

#[derive(Clone, Debug)]
enum Framing {
    /// `Content-Length`, with leading zeros or not.
    Length {
        zeros: bool,
    },
    Chunked(Chunking),
    /// No length at all: a request without a body, and the body bytes
    /// follow it as the next request.
    None,
}

#[derive(Clone, Debug)]
struct Chunking {
    /// Sizes of the first chunks; the rest of the body is the last one.
    sizes: Vec<usize>,
    upper: bool,
    extension: bool,
    trailer: bool,
    /// The `Transfer-Encoding` value, in some case of `chunked`.
    coding: &'static str,
}

#[derive(Clone, Debug)]
struct Head {
    method: String,
    target: Target,
    http10: bool,
    /// Every line of the head ends with LF alone.
    lf_only: bool,
    /// Before `Content-Type` and `Authorization`, so injected headers come first.
    extra_headers: Vec<(&'static str, B)>,
    /// A `Cookie` header this long: big, but the head stays under actix's
    /// 128 KiB.
    big_cookie: Option<usize>,
    content_type: Option<B>,
    authorization: Vec<B>,
    /// A browser's `Origin` (one its client allows, in a valid request).
    origin: Option<B>,
    expect_continue: bool,
    framing: Framing,
    /// Shut the sending side after the request.
    half_close: bool,
    /// Where the bytes are split into separate writes, per mille.
    splits: Vec<u16>,
}

#[derive(Clone, Debug)]
struct Request {
    baseline: Baseline,
    head: Head,
    body: Body,
    /// Pad the body with an ignored parameter to this many bytes.
    pad_to: Option<usize>,
}

/// One change to a correct request. In [`breaking`] each makes the request
/// invalid on its own, whatever else varies; [`Break::Fault`]s make it
/// malformed HTTP.
#[derive(Clone, Debug)]
enum Break {
    /// Set the parameter to a value that is not the correct one.
    Value(Name, Value),
    Missing(Name),
    /// `name=`: counts as omitted.
    Emptied(Name),
    /// A second occurrence, first or last; `None` repeats the same value.
    Repeated {
        name: Name,
        value: Option<Value>,
        first: bool,
    },
    Secret(String),
    BadName(B, B),
    ContentType(Option<B>),
    /// Replace the Authorization headers.
    Authorization(Vec<B>),
    /// A harmless header whose value goes on with these bytes.
    Injected(B),
    Method(&'static str),
    /// An `Origin` the baseline client does not allow (CORS).
    Origin(B),
    /// Pad the body past the limit.
    TooLarge(usize),
    /// Send no length, so the body is not part of the request.
    NoLength,
    Fault(Fault),
}

impl Break {
    fn apply(&self, request: &mut Request) {
        let form = match &mut request.body {
            Body::Form(form) => Some(form),
            _ => None,
        };
        match (self, form) {
            (Break::Value(name, value), Some(form)) => match form.param_mut(*name) {
                Some(Piece::Param { value: v, .. }) => *v = value.clone(),
                _ => form.params.push(param(*name, value.clone())),
            },
            (Break::Missing(name), Some(form)) => form.params.retain(|p| !p.is(*name)),
            (Break::Emptied(name), Some(form)) => {
                if let Some(Piece::Param { value, .. }) = form.param_mut(*name) {
                    *value = text("");
                }
            }
            (Break::Repeated { name, value, first }, Some(form)) => {
                let Some(Piece::Param {
                    value: original, ..
                }) = form.param_mut(*name)
                else {
                    return;
                };
                let repeat = param(*name, value.clone().unwrap_or_else(|| original.clone()));
                if *first {
                    form.params.insert(0, repeat);
                } else {
                    form.params.push(repeat);
                }
            }
            (Break::Secret(secret), Some(form)) => {
                form.params.push(param(Name::ClientSecret, text(secret)))
            }
            (Break::BadName(name, value), Some(form)) => form.front.push(Piece::BadName {
                name: name.clone(),
                value: value.clone(),
            }),
            (Break::ContentType(content_type), _) => {
                request.head.content_type = content_type.clone()
            }
            (Break::Authorization(values), _) => request.head.authorization = values.clone(),
            (Break::Injected(rest), _) => {
                let mut value = b"ok".to_vec();
                value.extend_from_slice(&rest.0);
                request.head.extra_headers.push(("X-Note", B(value)));
            }
            (Break::Method(method), _) => request.head.method = (*method).into(),
            (Break::Origin(origin), _) => request.head.origin = Some(origin.clone()),
            (Break::TooLarge(size), _) => request.pad_to = Some(*size),
            (Break::NoLength, _) => request.head.framing = Framing::None,
            // Form changes to a body that is not a form, and faults, which
            // `render` applies.
            _ => {}
        }
    }
}

fn param(name: Name, value: Value) -> Piece {
    Piece::Param {
        name,
        name_enc: Enc::PLAIN,
        value,
        value_enc: Enc::PLAIN,
    }
}

/// Malformed HTTP, and how actix answers it (module docs).
#[derive(Clone, Debug)]
enum Fault {
    Version(&'static str),
    Method(B),
    NoHost,
    TwoHosts,
    TwoLengths {
        same: bool,
    },
    BadLength(&'static str),
    LengthAndChunked,
    TransferEncoding(&'static str),
    ChunkedHttp10,
    Http10PostWithoutLength,
    /// A header line that is not `token: value`.
    HeaderLine(B),
    /// This many header lines in all (over 96).
    TooManyHeaders(usize),
    /// A header this long (the head far over 128 KiB).
    HugeHead(usize),
    /// `Content-Length` this much longer than the body; then a half-close.
    BodyCutShort(usize),
    BadChunk(ChunkFault),
    /// `Content-Length` this much shorter than the body (not invalid in
    /// itself: the handler gets a shorter body).
    LengthTooShort(usize),
    /// A header value that ends the head (`\r\n\r\n`) and starts a second
    /// request: the first is answered by the handler.
    Smuggled,
}

#[derive(Clone, Debug)]
enum ChunkFault {
    /// The first chunk size is not hexadecimal.
    Size(&'static str),
    /// A chunk's data is not followed by CRLF.
    NoCrlfAfterData,
    /// No last chunk; then a half-close.
    NoLastChunk,
}

/// What the first answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    /// The token handler's answer.
    Handler,
    /// The handler's answer, refusing a body it could not read: `invalid_request`.
    HandlerRefusesBody,
    /// actix's own answer, without body, then the connection closes.
    Bare(u16),
}

impl Fault {
    fn expect(&self) -> Expect {
        match self {
            Fault::TooManyHeaders(_) | Fault::HugeHead(_) => Expect::Bare(431),
            Fault::BodyCutShort(_) | Fault::BadChunk(_) => Expect::HandlerRefusesBody,
            Fault::LengthTooShort(_) | Fault::Smuggled => Expect::Handler,
            _ => Expect::Bare(400),
        }
    }
}

// ---------------------------------------------------------------------------
// Rendering a request to bytes
// ---------------------------------------------------------------------------

/// A request as sent, and what its answer must be.
#[derive(Debug)]
struct Wire {
    bytes: B,
    method: Vec<u8>,
    /// The `Origin` header sent, if any.
    origin: Option<Vec<u8>>,
    splits: Vec<usize>,
    half_close: bool,
    /// Read until the server closes, not just the first answer.
    read_to_eof: bool,
    /// The larger of the announced and the sent body length.
    body_len: usize,
    expect: Expect,
}

fn render(request: &Request, breaks: &[Break], issued: &IssuedCode, port: u16) -> Wire {
    let mut request = request.clone();
    let mut fault = None;
    for change in breaks {
        match change {
            Break::Fault(f) => fault = Some(f.clone()),
            other => other.apply(&mut request),
        }
    }
    let head = &request.head;
    let mut body = request.body.render(issued);
    if let Some(size) = request.pad_to {
        if !body.is_empty() {
            body.push(b'&');
        }
        body.extend_from_slice(b"pad=");
        body.resize(size.max(body.len() + 1), b'x');
    }

    let method: Vec<u8> = match &fault {
        Some(Fault::Method(m)) => m.0.clone(),
        Some(Fault::Http10PostWithoutLength) => b"POST".to_vec(),
        _ => head.method.as_bytes().to_vec(),
    };
    let version = match &fault {
        Some(Fault::Version(v)) => v,
        Some(Fault::ChunkedHttp10 | Fault::Http10PostWithoutLength) => "HTTP/1.0",
        Some(
            Fault::NoHost
            | Fault::TwoHosts
            | Fault::LengthAndChunked
            | Fault::TransferEncoding(_)
            | Fault::BadChunk(_)
            // So that the cut-off first request, which has no length, is no
            // HTTP/1.0 POST without Content-Length.
            | Fault::Smuggled,
        ) => "HTTP/1.1",
        _ if head.http10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    let eol: &[u8] = if head.lf_only { b"\n" } else { b"\r\n" };
    let mut out = Vec::with_capacity(body.len() + 512);
    let line = |out: &mut Vec<u8>, parts: &[&[u8]]| {
        for part in parts {
            out.extend_from_slice(part);
        }
        out.extend_from_slice(eol);
    };

    let target = match &head.target {
        Target::Origin => "/oauth/token".to_string(),
        Target::Query(query) => format!("/oauth/token?{query}"),
        Target::Absolute => format!("http://127.0.0.1:{port}/oauth/token"),
    };
    line(
        &mut out,
        &[&method, b" ", target.as_bytes(), b" ", version.as_bytes()],
    );
    let host = format!("127.0.0.1:{port}");
    match fault {
        Some(Fault::NoHost) => {}
        Some(Fault::TwoHosts) => {
            line(&mut out, &[b"Host: ", host.as_bytes()]);
            line(&mut out, &[b"Host: ", host.as_bytes()]);
        }
        _ => line(&mut out, &[b"Host: ", host.as_bytes()]),
    }
    // First after Host: no injected or smuggled header line can move it
    // into a second request.
    if let Some(origin) = &head.origin {
        line(&mut out, &[b"Origin: ", &origin.0]);
    }
    for (name, value) in &head.extra_headers {
        line(&mut out, &[name.as_bytes(), b": ", &value.0]);
    }
    if let Some(size) = head.big_cookie {
        line(&mut out, &[b"Cookie: ", &vec![b'c'; size]]);
    }
    if let Some(Fault::HeaderLine(bad)) = &fault {
        line(&mut out, &[&bad.0]);
    }
    if let Some(Fault::Smuggled) = &fault {
        line(
            &mut out,
            &[b"X-Note: ok\r\n\r\nGET /oauth/token HTTP/1.1\r\nX-Smuggled: 1"],
        );
    }
    if let Some(content_type) = &head.content_type {
        line(&mut out, &[b"Content-Type: ", &content_type.0]);
    }
    for authorization in &head.authorization {
        line(&mut out, &[b"Authorization: ", &authorization.0]);
    }

    let length = body.len().to_string();
    let sent_body: Vec<u8>;
    let mut announced = 0;
    let mut half_close = head.half_close;
    let plain_chunking = || Chunking {
        sizes: Vec::new(),
        upper: false,
        extension: false,
        trailer: false,
        coding: "chunked",
    };
    match &fault {
        Some(Fault::TwoLengths { same }) => {
            let second = if *same {
                length.clone()
            } else {
                (body.len() + 1).to_string()
            };
            line(&mut out, &[b"Content-Length: ", length.as_bytes()]);
            line(&mut out, &[b"Content-Length: ", second.as_bytes()]);
            sent_body = body;
        }
        Some(Fault::BadLength(value)) => {
            line(&mut out, &[b"Content-Length: ", value.as_bytes()]);
            sent_body = body;
        }
        Some(Fault::LengthAndChunked) => {
            line(&mut out, &[b"Content-Length: ", length.as_bytes()]);
            line(&mut out, &[b"Transfer-Encoding: chunked"]);
            sent_body = chunked(&body, &plain_chunking(), None);
        }
        Some(Fault::TransferEncoding(coding)) => {
            line(&mut out, &[b"Transfer-Encoding: ", coding.as_bytes()]);
            sent_body = chunked(&body, &plain_chunking(), None);
        }
        Some(Fault::ChunkedHttp10) => {
            line(&mut out, &[b"Transfer-Encoding: chunked"]);
            sent_body = chunked(&body, &plain_chunking(), None);
        }
        Some(Fault::Http10PostWithoutLength) => sent_body = body,
        Some(Fault::BodyCutShort(missing)) => {
            announced = body.len() + missing;
            line(
                &mut out,
                &[b"Content-Length: ", announced.to_string().as_bytes()],
            );
            half_close = true;
            sent_body = body;
        }
        Some(Fault::LengthTooShort(short)) => {
            let shorter = body.len().saturating_sub(*short).to_string();
            line(&mut out, &[b"Content-Length: ", shorter.as_bytes()]);
            sent_body = body;
        }
        Some(Fault::BadChunk(chunk_fault)) => {
            line(&mut out, &[b"Transfer-Encoding: chunked"]);
            half_close |= matches!(chunk_fault, ChunkFault::NoLastChunk);
            sent_body = chunked(&body, &plain_chunking(), Some(chunk_fault));
        }
        _ => match &head.framing {
            Framing::Chunked(chunking) if version != "HTTP/1.0" => {
                line(
                    &mut out,
                    &[b"Transfer-Encoding: ", chunking.coding.as_bytes()],
                );
                sent_body = chunked(&body, chunking, None);
            }
            Framing::None if method != b"POST" || version != "HTTP/1.0" => sent_body = body,
            Framing::Length { zeros: true } => {
                line(&mut out, &[b"Content-Length: 00", length.as_bytes()]);
                sent_body = body;
            }
            _ => {
                line(&mut out, &[b"Content-Length: ", length.as_bytes()]);
                sent_body = body;
            }
        },
    }
    if head.expect_continue {
        line(&mut out, &[b"Expect: 100-continue"]);
    }
    if let Some(Fault::TooManyHeaders(total)) = &fault {
        let so_far = out.iter().filter(|&&c| c == b'\n').count() - 1;
        for i in so_far..*total {
            line(&mut out, &[format!("X-Filler-{i}: {i}").as_bytes()]);
        }
    }
    if let Some(Fault::HugeHead(size)) = &fault {
        line(&mut out, &[b"X-Huge: ", &vec![b'h'; *size]]);
    }
    line(&mut out, &[]);
    let body_len = announced.max(sent_body.len());
    out.extend_from_slice(&sent_body);

    let expect = fault.as_ref().map_or(Expect::Handler, Fault::expect);
    let total = out.len();
    let mut splits: Vec<usize> = head
        .splits
        .iter()
        .map(|&p| total * usize::from(p) / 1000)
        .collect();
    splits.sort_unstable();
    Wire {
        bytes: B(out),
        method,
        origin: head.origin.as_ref().map(|o| o.0.clone()),
        splits,
        half_close,
        read_to_eof: half_close || matches!(expect, Expect::Bare(_)),
        body_len,
        expect,
    }
}

/// `body` in chunked transfer coding, broken by `fault` if given.
fn chunked(body: &[u8], chunking: &Chunking, fault: Option<&ChunkFault>) -> Vec<u8> {
    let mut out = Vec::with_capacity(body.len() + 64);
    let extension: &[u8] = if chunking.extension { b";ext=1" } else { b"" };
    let size_line = |out: &mut Vec<u8>, size: usize| {
        let size = if chunking.upper {
            format!("{size:X}")
        } else {
            format!("{size:x}")
        };
        out.extend_from_slice(size.as_bytes());
        out.extend_from_slice(extension);
        out.extend_from_slice(b"\r\n");
    };
    let mut rest = body;
    let mut first = true;
    let mut pieces = chunking.sizes.iter().copied().chain([usize::MAX]);
    while !rest.is_empty() || first {
        let size = pieces.next().unwrap_or(usize::MAX).min(rest.len());
        let (data, tail) = rest.split_at(size);
        rest = tail;
        match fault {
            Some(ChunkFault::Size(bad)) if first => {
                out.extend_from_slice(bad.as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Some(ChunkFault::NoCrlfAfterData) if first => {
                let data: &[u8] = if data.is_empty() { b"x" } else { data };
                size_line(&mut out, data.len());
                out.extend_from_slice(data);
                out.extend_from_slice(b"XX");
                first = false;
                continue;
            }
            _ if data.is_empty() => {}
            _ => size_line(&mut out, data.len()),
        }
        first = false;
        if !data.is_empty() {
            out.extend_from_slice(data);
            out.extend_from_slice(b"\r\n");
        }
    }
    if !matches!(fault, Some(ChunkFault::NoLastChunk)) {
        size_line(&mut out, 0);
        if chunking.trailer {
            out.extend_from_slice(b"X-Trailer: 1\r\n");
        }
        out.extend_from_slice(b"\r\n");
    }
    out
}

// ---------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------

fn enc() -> impl Strategy<Value = Enc> {
    prop_oneof![
        3 => Just(Enc::PLAIN),
        1 => any::<bool>().prop_map(|lower| Enc { mask: u64::MAX, lower, plus: false }),
        2 => (any::<u64>(), any::<bool>(), any::<bool>())
            .prop_map(|(mask, lower, plus)| Enc { mask, lower, plus }),
    ]
}

/// Inserts that decode to something non-empty, never `&`, and never combine
/// with what follows into an escape.
fn splice_insert() -> impl Strategy<Value = B> {
    prop_oneof![
        select(
            &[
                "%00", "%zz", "%C0%AE", "%c0%af", "%2541", "+", "%FF", "\u{ff}", "%E2%80",
                "%u0041", "%20", "%2B", "%3D", "=", "\"", "<script>",
            ][..]
        )
        .prop_map(b),
        "[A-Za-z0-9._~-]{1,4}".prop_map(b),
        Just(B(vec![0xff, 0xfe])),
    ]
}

fn changed(base: Value) -> impl Strategy<Value = Value> {
    let spliced = base.clone();
    prop_oneof![
        (any::<Index>(), select(UNRESERVED)).prop_map(move |(at, to)| Value::OneCharChanged {
            base: Box::new(base.clone()),
            at,
            to,
        }),
        (any::<Index>(), splice_insert()).prop_map(move |(at, raw)| Value::Spliced {
            base: Box::new(spliced.clone()),
            at,
            raw,
        }),
    ]
}

fn texts(values: &'static [&'static str]) -> impl Strategy<Value = Value> {
    select(values).prop_map(text)
}

/// Values of each parameter that are never the correct one.
fn wrong_value(name: Name, baseline: Baseline) -> BoxedStrategy<Value> {
    match name {
        Name::CodeVerifier => prop_oneof![
            "[A-Za-z0-9._~-]{43,128}".prop_map(Value::Text),
            "[A-Za-z0-9._~-]{1,42}".prop_map(Value::Text),
            "[A-Za-z0-9._~-]{129,160}".prop_map(Value::Text),
            "[ -~]{43,60}".prop_map(Value::Text),
            changed(Value::Verifier),
        ]
        .boxed(),
        Name::Code => prop_oneof![
            "[ -~]{1,80}".prop_map(Value::Text),
            (513usize..700).prop_map(|n| Value::Text("c".repeat(n))),
            changed(Value::Code),
            // Outside the unreserved set (security review, finding 5): a
            // brace splits a code's Redis keys over two Cluster slots.
            "[A-Za-z0-9]{0,20}[{}%+/ =?#\\[\\]][A-Za-z0-9{}]{0,20}".prop_map(Value::Text),
        ]
        .boxed(),
        Name::RedirectUri => prop_oneof![
            texts(&[
                "https://client.test/cb/",
                "https://client.test/CB",
                "https://CLIENT.test/cb",
                "HTTPS://client.test/cb",
                "https://client.test/cb?x=1",
                "https://client.test/cb#f",
                "https://client.test:443/cb",
                "http://client.test/cb",
                "https://evil.test/cb",
                "https%3A%2F%2Fclient.test%2Fcb",
                " https://client.test/cb",
                "https://client.test/cb\0",
            ]),
            changed(text(REDIRECT_URI)),
        ]
        .boxed(),
        Name::GrantType => prop_oneof![
            texts(&[
                "password",
                "refresh_token",
                "client_credentials",
                "Authorization_code",
                "AUTHORIZATION_CODE",
                "authorization_code ",
                "authorization-code",
                "urn:ietf:params:oauth:grant-type:jwt-bearer",
                "authorization_code\0",
            ]),
            changed(text("authorization_code")),
        ]
        .boxed(),
        Name::ClientId => match baseline {
            Baseline::Public => prop_oneof![
                texts(&[
                    "plain-app",
                    "rsa-app",
                    "eddsa-app",
                    "basic-app",
                    "post-app",
                    "nobody",
                    "Public-App",
                    "public-app ",
                    " public-app",
                    "public_app",
                    "public-app\0",
                ]),
                changed(text("public-app")),
            ]
            .boxed(),
            // Differs from the client in the Authorization header.
            Baseline::Basic => prop_oneof![
                texts(&["public-app", "post-app", "Basic-App", "basic-app "]),
                changed(text("basic-app")),
            ]
            .boxed(),
        },
        Name::ClientSecret => "[ -~]{1,30}".prop_map(Value::Text).boxed(),
    }
}

const GOOD_CONTENT_TYPES: &[&str] = &[
    "application/x-www-form-urlencoded",
    "application/x-www-form-urlencoded; charset=utf-8",
    "application/x-www-form-urlencoded;charset=UTF-8",
    "Application/X-WWW-Form-Urlencoded; Charset=\"UTF-8\"",
    "APPLICATION/X-WWW-FORM-URLENCODED",
    "application/x-www-form-urlencoded; foo=bar",
    "application/x-www-form-urlencoded ; charset = \"utf-8\" ; q=1",
    "application/x-www-form-urlencoded;",
];

const BAD_CONTENT_TYPES: &[&str] = &[
    "application/json",
    "text/plain",
    "multipart/form-data; boundary=hostile",
    "application/x-www-form-urlencoded; charset=latin1",
    "application/x-www-form-urlencoded; charset=iso-8859-1",
    "application/x-www-form-urlencoded; charset=utf-16",
    "application/x-www-form-urlencoded; charset=utf8",
    "application/x-www-form-urlencoded; charset=\"UTF-8 \"",
    "application/x-www-form-urlencoded; charset",
    "application/x-www-form-urlencoded; charset=utf-8; charset=latin1",
    "application/x-www-form-urlencodedx",
    "application/x-www-form-urlencoded, text/plain",
    "x-www-form-urlencoded",
    "application/*",
    "*/*",
    "",
];

fn bad_content_type() -> impl Strategy<Value = Option<B>> {
    prop_oneof![
        Just(None),
        select(BAD_CONTENT_TYPES).prop_map(|c| Some(b(c))),
        // Not visible ASCII: not a string for the handler.
        Just(Some(b(b"application/x-www-form-urlencoded\xff"))),
        Just(Some(b(b"application/x-www-form-urlencoded; charset=\xe9"))),
    ]
}

fn basic(id: &str, secret: &str) -> B {
    b(format!(
        "Basic {}",
        STANDARD.encode(format!("{id}:{secret}"))
    ))
}

/// Authorization headers a correct request carries.
fn good_authorization(baseline: Baseline) -> BoxedStrategy<Vec<B>> {
    match baseline {
        Baseline::Public => Just(Vec::new()).boxed(),
        Baseline::Basic => (
            select(&["Basic", "basic", "BASIC", "bAsIc"][..]),
            0usize..3,
            enc(),
            enc(),
            0usize..3,
        )
            .prop_map(|(scheme, spaces, id_enc, secret_enc, trailing)| {
                // RFC 6749 §2.3.1: each half form-encoded, then base64.
                let mut credentials = Vec::new();
                id_enc.encode(b"basic-app", 0, &mut credentials);
                credentials.push(b':');
                secret_enc.encode(BASIC_SECRET.as_bytes(), 0, &mut credentials);
                let value = format!(
                    "{scheme} {}{}{}",
                    " ".repeat(spaces),
                    STANDARD.encode(credentials),
                    " ".repeat(trailing)
                );
                vec![b(value)]
            })
            .boxed(),
    }
}

/// Authorization headers that make the request invalid (for `basic-app`,
/// the first one is wrong: the service reads the first).
fn bad_authorization(baseline: Baseline) -> BoxedStrategy<Vec<B>> {
    let wrong = vec![
        basic("basic-app", "wrong"),
        basic("basic-app", &format!("{BASIC_SECRET}x")),
        basic("basic-app", &BASIC_SECRET[1..]),
        basic("public-app", "x"),
        basic("public-app", ""),
        basic("post-app", POST_SECRET),
        basic("nobody", "x"),
        basic("", BASIC_SECRET),
        basic("basic-app", "%FF"),
        b(format!("Basic {}", STANDARD.encode("basic-app"))),
        b("Basic !!!not base64"),
        b("Basic"),
        b("Bearer abc"),
        b(format!(
            "Digest {}",
            STANDARD.encode(format!("basic-app:{BASIC_SECRET}"))
        )),
        b(b"Basic \xff\xfe"),
        b(""),
    ];
    let right = basic("basic-app", BASIC_SECRET);
    match baseline {
        // Any Authorization at all: a public client must not authenticate.
        Baseline::Public => {
            prop::collection::vec(select([wrong, vec![right]].concat()), 1..=2).boxed()
        }
        Baseline::Basic => prop_oneof![
            Just(Vec::new()),
            select(wrong.clone()).prop_map(|w| vec![w]),
            select(wrong).prop_map(move |w| vec![w, right.clone()]),
        ]
        .boxed(),
    }
}

/// Header injection attempts that add an Authorization header before the
/// request's own (which the service would read first).
fn bad_injection(baseline: Baseline) -> impl Strategy<Value = B> {
    let injected = match baseline {
        Baseline::Public => [
            "\r\nAuthorization: Basic cHVibGljLWFwcDp4",
            "\nAuthorization: Bearer abc",
        ],
        Baseline::Basic => [
            "\r\nAuthorization: Basic YmFzaWMtYXBwOndyb25n",
            "\nAuthorization: Bearer abc",
        ],
    };
    select(injected.to_vec()).prop_map(b)
}

const ODD_METHODS: &[&str] = &[
    "GET", "HEAD", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE", "CONNECT", "post", "Post", "FOO",
    "POST2", "M-POST", "PROPFIND", "BREW",
];

const BAD_METHODS: &[&[u8]] = &[
    b"",
    b"P(ST",
    b"PO\0ST",
    b"P\xc3\x96ST",
    b"POST\x7f",
    b"PO,ST",
    b"{POST}",
    b"POST/",
];

const BAD_HEADER_LINES: &[&[u8]] = &[
    b"X-Bad: a\rb",
    b"X-Bad: a\0b",
    b"X-Bad: a\x7fb",
    b"X-Bad: ok\r\nno colon here",
    b"X-Bad: ok\nno colon here",
    b"X-Bad a",
    b"X-Bad : a",
    b": a",
    b"X-\xffBad: a",
    b"X(Bad): a",
    b"X-Bad\0: a",
    b" folded",
    b"\tfolded",
];

/// Parameter names that are not UTF-8 once decoded.
const BAD_NAMES: &[&[u8]] = &[
    b"\xff",
    b"%FF",
    b"code%C0",
    b"%C0%AE",
    b"grant_type\xfe",
    b"%E2%82",
];

/// Malformed HTTP. `with_harmless` adds the faults after which the request
/// may still be a correct one ([`Fault::LengthTooShort`], [`Fault::Smuggled`]).
fn fault(with_harmless: bool) -> BoxedStrategy<Fault> {
    let mut faults: Vec<BoxedStrategy<Fault>> = vec![
        select(
            &[
                "HTTP/1.2",
                "HTTP/2.0",
                "HTTP/0.9",
                "http/1.1",
                "HTTP/1",
                "HTTP/11",
                "HTTPS/1.1",
                "HTTP/1.1x",
                "HTTP/3",
                "",
            ][..],
        )
        .prop_map(Fault::Version)
        .boxed(),
        select(BAD_METHODS)
            .prop_map(|m| Fault::Method(b(m)))
            .boxed(),
        Just(Fault::NoHost).boxed(),
        Just(Fault::TwoHosts).boxed(),
        any::<bool>()
            .prop_map(|same| Fault::TwoLengths { same })
            .boxed(),
        select(
            &[
                "+5",
                "-1",
                "abc",
                "0x10",
                "1.0",
                "99999999999999999999999",
                "",
                "1 2",
                "1,1",
            ][..],
        )
        .prop_map(Fault::BadLength)
        .boxed(),
        Just(Fault::LengthAndChunked).boxed(),
        select(
            &[
                "gzip",
                "chunked, gzip",
                "gzip, chunked",
                "identity",
                "chunked;q=1",
                "chunk",
                "",
                "chunked, chunked",
            ][..],
        )
        .prop_map(Fault::TransferEncoding)
        .boxed(),
        Just(Fault::ChunkedHttp10).boxed(),
        Just(Fault::Http10PostWithoutLength).boxed(),
        select(BAD_HEADER_LINES)
            .prop_map(|l| Fault::HeaderLine(b(l)))
            .boxed(),
        (97usize..=140).prop_map(Fault::TooManyHeaders).boxed(),
        // Well over actix's 128 KiB: a head of up to about twice that may have
        // been read whole before actix checks its size, and then it is parsed.
        (300_000usize..=400_000).prop_map(Fault::HugeHead).boxed(),
        (1usize..=100).prop_map(Fault::BodyCutShort).boxed(),
        prop_oneof![
            select(&["zz", "-1", "0x1", "g", "+1", "ffffffffffffffffff", ""][..])
                .prop_map(ChunkFault::Size),
            Just(ChunkFault::NoCrlfAfterData),
            Just(ChunkFault::NoLastChunk),
        ]
        .prop_map(Fault::BadChunk)
        .boxed(),
    ];
    if with_harmless {
        faults.push((1usize..=200).prop_map(Fault::LengthTooShort).boxed());
        faults.push(Just(Fault::Smuggled).boxed());
    }
    Union::new(faults).boxed()
}

/// Headers that change nothing for the service.
/// The origins some client of the test registry allows (`helpers::REGISTRY`,
/// as browsers serialize them): the answer carries CORS headers for these
/// and no other.
const CORS_ORIGINS: [&str; 3] = [
    "https://app.test",
    "http://localhost:5173",
    "https://plain.test",
];

/// The `Origin` of a valid request: none, or one its client allows
/// (`public-app`'s; `basic-app` allows none, so a browser cannot use it).
fn allowed_origin(baseline: Baseline) -> BoxedStrategy<Option<B>> {
    match baseline {
        Baseline::Public => {
            prop::option::weighted(0.3, select(&CORS_ORIGINS[..2]).prop_map(b)).boxed()
        }
        Baseline::Basic => Just(None).boxed(),
    }
}

/// An `Origin` the baseline client does not allow: another client's,
/// nobody's, the opaque `null`, an allowed one written another way, or not
/// an origin at all.
fn disallowed_origin(baseline: Baseline) -> impl Strategy<Value = B> {
    let mut origins = vec![
        "https://plain.test",
        "https://evil.test",
        "null",
        "https://app.test:443",
        "https://APP.test",
        "https://app.test/",
        "http://localhost:5174",
        "",
    ];
    if baseline == Baseline::Basic {
        origins.push("https://app.test");
    }
    prop_oneof![
        select(origins).prop_map(b),
        "[ -~]{1,60}".prop_map(b),
        prop::collection::vec(0x80u8..=0xff, 1..20).prop_map(B),
    ]
}

fn noise_header() -> impl Strategy<Value = (&'static str, B)> {
    prop_oneof![
        // A browser's preflight questions, out of place on a POST: ignored.
        "[ -~]{0,20}".prop_map(|v| ("Access-Control-Request-Method", b(v))),
        "[ -~]{0,60}".prop_map(|v| ("Access-Control-Request-Headers", b(v))),
        "[ -~]{0,60}".prop_map(|v| ("User-Agent", b(v))),
        Just(("Accept", b("application/json"))),
        "[ -~]{0,160}".prop_map(|v| ("X-Request-Id", b(v))),
        prop::collection::vec(0x80u8..=0xff, 1..40).prop_map(|v| ("X-Obs-Text", B(v))),
        select(&["close", "keep-alive", "keep-alive, close"][..])
            .prop_map(|v| ("Connection", b(v))),
        select(&["latin1", "utf-16"][..]).prop_map(|v| ("Accept-Charset", b(v))),
        // Injection attempts that only add harmless headers.
        select(
            &[
                "\r\nX-Injected: 1",
                "\nX-Injected: 1",
                "\r\nX-Request-Id: injected"
            ][..]
        )
        .prop_map(|i| ("X-Note", b(format!("ok{i}")))),
    ]
}

fn framing() -> impl Strategy<Value = Framing> {
    prop_oneof![
        3 => any::<bool>().prop_map(|zeros| Framing::Length { zeros }),
        2 => (
            prop::collection::vec(1usize..3000, 0..4),
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
            select(&["chunked", "Chunked", "CHUNKED"][..]),
        )
            .prop_map(|(sizes, upper, extension, trailer, coding)| {
                Framing::Chunked(Chunking { sizes, upper, extension, trailer, coding })
            }),
    ]
}

fn target() -> impl Strategy<Value = Target> {
    prop_oneof![
        3 => Just(Target::Origin),
        1 => "[A-Za-z0-9=&._~-]{0,40}".prop_map(Target::Query),
        1 => Just(Target::Absolute),
    ]
}

/// The head of a correct request: every choice here is one the service
/// must accept.
fn valid_head(baseline: Baseline) -> impl Strategy<Value = Head> {
    (
        target(),
        prop::bool::weighted(0.2),
        prop::bool::weighted(0.1),
        (
            prop::collection::vec(noise_header(), 0..4),
            prop::option::weighted(0.1, 1_000usize..60_000),
        ),
        select(GOOD_CONTENT_TYPES),
        good_authorization(baseline),
        (prop::bool::weighted(0.15), allowed_origin(baseline)),
        framing(),
        any::<bool>(),
        prop::collection::vec(0u16..1000, 0..3),
    )
        .prop_map(
            |(
                target,
                http10,
                lf_only,
                (extra_headers, big_cookie),
                content_type,
                authorization,
                (expect_continue, origin),
                framing,
                half_close,
                splits,
            )| Head {
                method: "POST".into(),
                target,
                http10,
                lf_only,
                extra_headers,
                big_cookie,
                content_type: Some(b(content_type)),
                authorization,
                origin,
                expect_continue,
                framing,
                half_close,
                splits,
            },
        )
}

fn unknown_piece() -> impl Strategy<Value = Piece> {
    let name = prop_oneof![
        select(
            &[
                "scope",
                "state",
                "resource",
                "nonce",
                "Code",
                "CODE",
                "code_",
                "code verifier",
                "grant type",
                "client-id",
                "x",
                "",
            ][..]
        )
        .prop_map(String::from),
        "[a-z_]{1,12}".prop_filter("a name the service reads", |n| !Name::is_recognized(n)),
    ];
    let value = prop_oneof![
        prop::collection::vec(
            any::<u8>().prop_map(|c| if c == b'&' { b'x' } else { c }),
            0..40
        )
        .prop_map(B),
        select(&["%FF", "%C0%AE", "%zz", "%", "%00", "=", "+", "%2541", "a=b=c"][..]).prop_map(b),
    ];
    prop_oneof![
        4 => (name, enc(), value).prop_map(|(name, name_enc, value)| Piece::Unknown {
            name,
            name_enc,
            value,
        }),
        1 => Just(Piece::Nothing),
    ]
}

/// The form of a correct request, in any of the ways that mean the same.
fn valid_form(baseline: Baseline) -> impl Strategy<Value = Form> {
    let params = baseline.params();
    let n = params.len();
    (
        prop::collection::vec((enc(), enc()), n),
        Just((0..n).collect::<Vec<usize>>()).prop_shuffle(),
        prop::collection::vec(
            (select(&Name::ALL[..]), enc(), any::<bool>()).prop_map(|(name, name_enc, equals)| {
                Piece::Empty {
                    name,
                    name_enc,
                    equals,
                }
            }),
            0..3,
        ),
        prop::collection::vec((any::<Index>(), unknown_piece()), 0..4),
        any::<bool>(),
    )
        .prop_map(move |(encs, order, front, extra, with_client_id)| {
            let mut params: Vec<Piece> = order
                .into_iter()
                .map(|i| {
                    let (name, value) = params[i].clone();
                    let (name_enc, value_enc) = encs[i];
                    Piece::Param {
                        name,
                        name_enc,
                        value,
                        value_enc,
                    }
                })
                .collect();
            if baseline == Baseline::Basic && !with_client_id {
                params.retain(|p| !p.is(Name::ClientId));
            }
            // An empty piece only for a name absent from the form, once.
            let mut named: Vec<Name> = Vec::new();
            let front = front
                .into_iter()
                .filter(|piece| match piece {
                    Piece::Empty { name, .. } => {
                        let fresh = !params.iter().any(|p| p.is(*name)) && !named.contains(name);
                        named.push(*name);
                        fresh
                    }
                    _ => true,
                })
                .collect();
            Form {
                front,
                params,
                extra,
            }
        })
}

fn valid_request(baseline: Baseline) -> impl Strategy<Value = Request> {
    (valid_head(baseline), valid_form(baseline)).prop_map(move |(head, form)| Request {
        baseline,
        head,
        body: Body::Form(form),
        pad_to: None,
    })
}

fn baseline() -> impl Strategy<Value = Baseline> {
    prop_oneof![Just(Baseline::Public), Just(Baseline::Basic)]
}

/// Changes that each make a correct request for `baseline` invalid, except
/// for malformed HTTP.
fn request_breaks(baseline: Baseline) -> Vec<BoxedStrategy<Break>> {
    let value_names = [
        Name::CodeVerifier,
        Name::Code,
        Name::RedirectUri,
        Name::GrantType,
        Name::ClientId,
    ];
    let mut breaks: Vec<BoxedStrategy<Break>> = value_names
        .into_iter()
        .map(|name| {
            wrong_value(name, baseline)
                .prop_map(move |v| Break::Value(name, v))
                .boxed()
        })
        .collect();
    let required = baseline.required();
    breaks.extend([
        select(required).prop_map(Break::Missing).boxed(),
        select(required).prop_map(Break::Emptied).boxed(),
        (
            select(required),
            prop_oneof![
                Just(None),
                "[A-Za-z0-9._~-]{1,50}".prop_map(|v| Some(Value::Text(v))),
                // `code=&code=<real>`: an empty copy repeats the name too
                // (security review, finding 7).
                Just(Some(text(""))),
            ],
            any::<bool>(),
        )
            .prop_map(|(name, value, first)| Break::Repeated { name, value, first })
            .boxed(),
        "[ -~]{1,30}".prop_map(Break::Secret).boxed(),
        (select(BAD_NAMES), "[ -~]{0,10}")
            .prop_map(|(name, value)| Break::BadName(b(name), b(value)))
            .boxed(),
        bad_content_type().prop_map(Break::ContentType).boxed(),
        bad_authorization(baseline)
            .prop_map(Break::Authorization)
            .boxed(),
        bad_injection(baseline).prop_map(Break::Injected).boxed(),
        select(ODD_METHODS).prop_map(Break::Method).boxed(),
        (MAX_BODY + 1..30_000).prop_map(Break::TooLarge).boxed(),
        disallowed_origin(baseline).prop_map(Break::Origin).boxed(),
    ]);
    breaks
}

/// One change that makes a correct request for `baseline` invalid.
fn breaking(baseline: Baseline) -> impl Strategy<Value = Break> {
    let mut breaks = request_breaks(baseline);
    breaks.push(fault(false).prop_map(Break::Fault).boxed());
    Union::new(breaks)
}

#[derive(Clone, Debug)]
struct Attempts {
    baseline: Baseline,
    /// Each refused, in turn.
    invalid: Vec<(Request, Break)>,
    /// Then this one redeems.
    valid: Request,
}

fn invalid_attempts() -> impl Strategy<Value = Attempts> {
    baseline().prop_flat_map(|baseline| {
        (
            prop::collection::vec((valid_request(baseline), breaking(baseline)), 1..=3),
            valid_request(baseline),
        )
            .prop_map(move |(invalid, valid)| Attempts {
                baseline,
                invalid,
                valid,
            })
    })
}

#[derive(Clone, Debug)]
struct Hostile {
    request: Request,
    breaks: Vec<Break>,
}

/// Anything: a request with any number of changes, at most one fault, and
/// sometimes a body that is not a form at all.
fn hostile_request() -> impl Strategy<Value = Hostile> {
    baseline().prop_flat_map(|baseline| {
        let mut changes = request_breaks(baseline);
        changes.push(Just(Break::NoLength).boxed());
        changes.push(
            (
                select(&Name::ALL[..]),
                prop::collection::vec(
                    any::<u8>().prop_map(|c| if c == b'&' { b'x' } else { c }),
                    0..60,
                ),
            )
                .prop_map(|(name, raw)| Break::Value(name, Value::Raw(B(raw))))
                .boxed(),
        );
        (
            valid_request(baseline),
            prop::collection::vec(Union::new(changes), 0..4),
            prop::option::weighted(0.25, fault(true)),
            prop::option::weighted(
                0.25,
                prop_oneof![
                    prop::collection::vec(any::<u8>(), 0..400).prop_map(B),
                    prop::collection::vec(any::<u8>(), MAX_BODY - 100..MAX_BODY + 4000).prop_map(B),
                    "[ -~]{0,300}".prop_map(b),
                    Just(B(Vec::new())),
                ]
                .prop_map(Body::Bytes),
            ),
            prop::option::weighted(0.05, prop_oneof![Just(Body::Json), Just(Body::Multipart)]),
        )
            .prop_map(|(mut request, mut breaks, fault, bytes, structured)| {
                if let Some(body) = bytes.or(structured) {
                    request.body = body;
                }
                breaks.extend(fault.map(Break::Fault));
                Hostile { request, breaks }
            })
    })
}

// ---------------------------------------------------------------------------
// The raw HTTP/1.1 client
// ---------------------------------------------------------------------------

struct RawResponse {
    status: u16,
    headers: Vec<(String, Vec<u8>)>,
    body: Vec<u8>,
}

impl RawResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| std::str::from_utf8(v).ok())
    }
}

impl fmt::Debug for RawResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} [", self.status)?;
        for (name, value) in &self.headers {
            write!(f, "{name}: {}; ", value.escape_ascii())?;
        }
        write!(f, "] {:?}", B(self.body.clone()))
    }
}

#[derive(Debug)]
enum End {
    /// The server closed the connection.
    Eof,
    Reset,
    /// We stopped reading after the first answer.
    Open,
}

#[derive(Debug)]
struct Conversation {
    /// Final answers, in order (`100 Continue` left out).
    responses: Vec<RawResponse>,
    end: End,
}

fn fail(message: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(message.into())
}

/// Send `wire` on a fresh connection and read answers until the first (or
/// until the server closes, when `read_to_eof`). Every read and write has a
/// timeout: a server that neither answers nor closes fails the case.
async fn converse(port: u16, wire: &Wire) -> Result<Conversation, TestCaseError> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))
        .await
        .map_err(|e| fail(format!("connect: {e}")))?;
    let mut from = 0;
    for &to in wire.splits.iter().chain([&wire.bytes.0.len()]) {
        if to <= from {
            continue;
        }
        let written = tokio::time::timeout(IO_TIMEOUT, stream.write_all(&wire.bytes.0[from..to]))
            .await
            .map_err(|_| fail("hang: the server stopped reading the request"))?;
        // The server may close early (a bare 400 while the body is still
        // coming): what it answered is read below.
        if written.is_err() {
            break;
        }
        from = to;
        if to < wire.bytes.0.len() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }
    if wire.half_close {
        let _ = stream.shutdown().await;
    }

    let head_request = wire.method == b"HEAD";
    let mut buffer = Vec::new();
    let mut responses = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        while let Some((response, used)) =
            parse_response(&buffer, head_request && responses.is_empty())?
        {
            buffer.drain(..used);
            if !(100..200).contains(&response.status) {
                responses.push(response);
            }
        }
        if !responses.is_empty() && !wire.read_to_eof {
            return Ok(Conversation {
                responses,
                end: End::Open,
            });
        }
        let read = tokio::time::timeout(IO_TIMEOUT, stream.read(&mut chunk))
            .await
            .map_err(|_| {
                fail(format!(
                    "hang: after {} answer(s) {responses:?} and {:?}, nothing for {IO_TIMEOUT:?}",
                    responses.len(),
                    B(buffer.clone())
                ))
            })?;
        let end = match read {
            Ok(0) => End::Eof,
            Ok(n) => {
                buffer.extend_from_slice(&chunk[..n]);
                continue;
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => End::Reset,
            Err(e) => return Err(fail(format!("read: {e}"))),
        };
        if !buffer.is_empty() {
            return Err(fail(format!(
                "the connection ended ({end:?}) inside an answer: {:?}",
                B(buffer)
            )));
        }
        return Ok(Conversation { responses, end });
    }
}

/// Parse one answer from the start of `buffer`: `None` until it is all
/// there. Every answer must carry `Content-Length`.
fn parse_response(
    buffer: &[u8],
    head_request: bool,
) -> Result<Option<(RawResponse, usize)>, TestCaseError> {
    let Some(head_end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
        return Ok(None);
    };
    let head = &buffer[..head_end];
    let mut lines = head
        .split(|&c| c == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let status_line = lines.next().unwrap_or_default();
    let status = std::str::from_utf8(status_line)
        .ok()
        .filter(|l| l.starts_with("HTTP/1.1 ") || l.starts_with("HTTP/1.0 "))
        .and_then(|l| l.get(9..12))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| fail(format!("bad status line {:?}", B(status_line.to_vec()))))?;
    let mut headers = Vec::new();
    for line in lines {
        let colon = line
            .iter()
            .position(|&c| c == b':')
            .ok_or_else(|| fail(format!("bad header line {:?}", B(line.to_vec()))))?;
        let name = String::from_utf8_lossy(&line[..colon]).to_ascii_lowercase();
        headers.push((name, line[colon + 1..].trim_ascii().to_vec()));
    }
    let start = head_end + 4;
    let mut response = RawResponse {
        status,
        headers,
        body: Vec::new(),
    };
    // No body: informational answers, 204 and 304 (RFC 9110 section 6.4.1),
    // and any answer to HEAD.
    if (100..200).contains(&status) || matches!(status, 204 | 304) || head_request {
        return Ok(Some((response, start)));
    }
    let length = response
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .ok_or_else(|| fail(format!("an answer without Content-Length: {response:?}")))?;
    if buffer.len() < start + length {
        return Ok(None);
    }
    response.body = buffer[start..start + length].to_vec();
    Ok(Some((response, start + length)))
}

// ---------------------------------------------------------------------------
// Checking answers
// ---------------------------------------------------------------------------

/// actix's own answer to malformed HTTP: no body, no `x-request-id` (the
/// app never saw the request).
fn is_bare(response: &RawResponse, status: u16) -> bool {
    response.status == status
        && response.body.is_empty()
        && response.header("content-length") == Some("0")
        && response.header("x-request-id").is_none()
        && response.header("content-type").is_none()
}

fn check_conversation(
    conversation: &Conversation,
    wire: &Wire,
    issued: &IssuedCode,
) -> Result<(), TestCaseError> {
    let Some(first) = conversation.responses.first() else {
        return Err(fail(format!(
            "no answer (connection {:?}) to {wire:?}",
            conversation.end
        )));
    };
    match wire.expect {
        Expect::Bare(status) => {
            prop_assert!(
                is_bare(first, status) && first.header("connection") == Some("close"),
                "expected actix's bare {}, got {:?}",
                status,
                first
            );
            prop_assert_eq!(conversation.responses.len(), 1, "{:?}", conversation);
            // Reset when actix closes with request bytes still unread.
            prop_assert!(
                matches!(conversation.end, End::Eof | End::Reset),
                "not closed after a bare {}: {:?}",
                status,
                conversation.end
            );
        }
        Expect::Handler | Expect::HandlerRefusesBody => {
            check_handler_answer(first, Some(wire))?;
            // A preflight does not read the body: its 204 is the answer.
            if wire.expect == Expect::HandlerRefusesBody
                && wire.method != b"HEAD"
                && wire.method != b"OPTIONS"
            {
                let body: Json = serde_json::from_slice(&first.body).unwrap_or_default();
                prop_assert_eq!(&body["error"], "invalid_request", "{:?}", first);
            }
            for later in &conversation.responses[1..] {
                if !is_bare(later, 400) {
                    check_handler_answer(later, None)?;
                }
            }
        }
    }
    for response in &conversation.responses {
        for secret in [&issued.code, &issued.verifier] {
            let echoed = response
                .headers
                .iter()
                // The client's own X-Request-Id is echoed by design.
                .filter(|(name, _)| name != "x-request-id")
                .map(|(_, value)| value.as_slice())
                .chain([response.body.as_slice()])
                .any(|bytes| bytes.windows(secret.len()).any(|w| w == secret.as_bytes()));
            prop_assert!(
                !echoed,
                "an answer echoes the code or verifier: {:?}",
                response
            );
        }
    }
    Ok(())
}

/// An answer of the token handler: 200 with tokens, or a 4xx with an RFC
/// 6749 §5.2 error; JSON, `no-store`. With the `wire` of the request it
/// answers (the first answer), also what follows from the request.
fn check_handler_answer(response: &RawResponse, wire: Option<&Wire>) -> Result<(), TestCaseError> {
    prop_assert!(response.status < 500, "a 5xx: {:?}", response);
    prop_assert!(
        matches!(
            response.status,
            200 | 204 | 400 | 401 | 405 | 408 | 413 | 429
        ),
        "unexpected status: {:?}",
        response
    );
    if let Some(wire) = wire {
        check_cors(response, wire)?;
        if wire.method == b"OPTIONS" {
            // A preflight, or a plain OPTIONS: 204, no body.
            prop_assert_eq!(response.status, 204, "{:?}", response);
            prop_assert_eq!(response.header("allow"), Some("OPTIONS, POST"));
            prop_assert!(response.body.is_empty(), "{:?}", response);
            return Ok(());
        }
    }
    prop_assert!(
        response.header("x-request-id").is_some(),
        "an answer the app did not make: {:?}",
        response
    );
    prop_assert_eq!(response.header("content-type"), Some("application/json"));
    prop_assert_eq!(response.header("cache-control"), Some("no-store"));
    prop_assert_eq!(response.header("pragma"), Some("no-cache"));
    if let Some(wire) = wire {
        prop_assert_eq!(
            response.status == 405,
            wire.method != b"POST",
            "405 exactly when the method is not POST (or OPTIONS): {:?}",
            response
        );
        if response.status == 413 {
            prop_assert!(
                wire.body_len > MAX_BODY,
                "413 for a small body: {:?}",
                response
            );
        }
        // Every request is sent whole (or half-closed): the service waited
        // for bytes that had come.
        prop_assert_ne!(
            response.status,
            408,
            "a complete request timed out: {:?}",
            response
        );
        // The answer to HEAD has the headers of the JSON error, not its body.
        if wire.method == b"HEAD" {
            return Ok(());
        }
    }
    let body: Json = serde_json::from_slice(&response.body)
        .map_err(|e| fail(format!("not JSON ({e}): {response:?}")))?;
    if response.status == 200 {
        prop_assert!(
            body["access_token"]
                .as_str()
                .is_some_and(|t| t.split('.').count() == 3),
            "no access token: {:?}",
            response
        );
        prop_assert_eq!(&body["token_type"], "Bearer");
        prop_assert!(body.get("error").is_none());
        return Ok(());
    }
    let error = body["error"].as_str().unwrap_or_default();
    prop_assert!(
        RFC6749_ERRORS.contains(&error),
        "not an RFC 6749 §5.2 error: {:?}",
        response
    );
    prop_assert!(
        body["error_description"]
            .as_str()
            .is_some_and(|d| !d.is_empty()),
        "no error_description: {:?}",
        response
    );
    // 429: the limiter of failed client authentications
    // (docs/token-endpoint.md, "Abuse limits").
    prop_assert_eq!(
        matches!(response.status, 401 | 429),
        error == "invalid_client",
        "401 (or 429) exactly for invalid_client: {:?}",
        response
    );
    if response.status == 429 {
        prop_assert!(response.header("retry-after").is_some());
    }
    if response.header("www-authenticate").is_some() {
        prop_assert!(matches!(response.status, 401 | 429), "{:?}", response);
    }
    if matches!(response.status, 405 | 408 | 413) {
        prop_assert_eq!(error, "invalid_request");
    }
    if response.status == 405 {
        prop_assert_eq!(response.header("allow"), Some("OPTIONS, POST"));
    }
    Ok(())
}

/// CORS on every answer of the handler: `Vary: Origin`, and
/// `Access-Control-Allow-Origin` exactly when the request came from an
/// origin some client allows, naming that origin; never credentials. An
/// answer with tokens goes only to an origin the client allows.
fn check_cors(response: &RawResponse, wire: &Wire) -> Result<(), TestCaseError> {
    prop_assert!(
        response
            .header("vary")
            .is_some_and(|v| v.contains("Origin")),
        "no Vary: Origin: {:?}",
        response
    );
    prop_assert!(response
        .header("access-control-allow-credentials")
        .is_none());
    let origin = wire
        .origin
        .as_deref()
        .and_then(|o| std::str::from_utf8(o).ok());
    let allowed = origin.filter(|o| CORS_ORIGINS.contains(o));
    prop_assert_eq!(
        response.header("access-control-allow-origin"),
        allowed,
        "CORS headers exactly for an origin some client allows: {:?}",
        response
    );
    if response.status == 200 {
        prop_assert!(
            origin.is_none() || CORS_ORIGINS[..2].contains(&origin.unwrap_or_default()),
            "tokens for an origin public-app does not allow: {:?}",
            response
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Corrupt records
// ---------------------------------------------------------------------------

/// A record's members as JSON text, in order: what corruptions edit.
type Members = Vec<(String, B)>;

fn record_members(record: &token_endpoint::contract::record::CodeRecord) -> Members {
    let value = serde_json::to_value(record).expect("a record is JSON");
    value
        .as_object()
        .expect("an object")
        .iter()
        .map(|(k, v)| (k.clone(), B(serde_json::to_vec(v).expect("JSON"))))
        .collect()
}

/// One way a frontend can break the contract. Each leaves the record
/// unreadable; none can repair what another broke.
#[derive(Clone, Debug)]
enum Corruption {
    /// A required member left out.
    Missing(&'static str),
    /// A required member `null`.
    Null(&'static str),
    /// A member of the wrong type (or `code_challenge_method` neither
    /// `S256` nor `plain`).
    Wrong(&'static str, B),
    /// A string that is not Unicode (a lone surrogate), in a member only the
    /// service reads.
    LoneSurrogate(&'static str),
    /// `claims` nested deeper than a parser allows.
    Deep { depth: usize, arrays: bool },
    /// `auth_time` with more digits than a u64 holds.
    HugeNumber(usize),
    /// A huge array of numbers where a string (or strings) go.
    HugeArray(&'static str, usize),
    /// A huge string where a number or an object goes.
    HugeString(&'static str, usize),
    /// Bytes that are not UTF-8 in a string (Redis only: the embedded
    /// store holds text).
    NotUtf8(&'static str),
}

/// What becomes of the whole record text.
#[derive(Clone, Debug)]
enum Wrap {
    /// Replaced by text that is not a record at all.
    Replaced(B),
    /// Cut short.
    Truncated(Index),
    /// A byte order mark first.
    Bom,
    /// Something after the object.
    Trailing(&'static str),
    /// Inside an array.
    InArray,
}

#[derive(Clone, Debug)]
struct CorruptRecord {
    members: Members,
    corruptions: Vec<Corruption>,
    wrap: Option<Wrap>,
}

const REQUIRED: &[&str] = &[
    "client_id",
    "code_challenge",
    "code_challenge_method",
    "sub",
    "scope",
];

const WRONG_TYPES: &[(&str, &str)] = &[
    ("client_id", "42"),
    ("client_id", "true"),
    ("client_id", "[\"public-app\"]"),
    ("client_id", "{\"id\":\"public-app\"}"),
    ("client_id", "1.5"),
    ("code_challenge", "42"),
    ("code_challenge", "[]"),
    ("code_challenge", "{}"),
    ("code_challenge", "false"),
    ("code_challenge_method", "\"s256\""),
    ("code_challenge_method", "\"S512\""),
    ("code_challenge_method", "\"\""),
    ("code_challenge_method", "\"PLAIN\""),
    ("code_challenge_method", "\"none\""),
    ("code_challenge_method", "256"),
    ("code_challenge_method", "[\"S256\"]"),
    ("code_challenge_method", "{}"),
    ("redirect_uri", "42"),
    ("redirect_uri", "[\"https://client.test/cb\"]"),
    ("redirect_uri", "{}"),
    ("redirect_uri", "true"),
    ("sub", "42"),
    ("sub", "[]"),
    ("sub", "{}"),
    ("sub", "true"),
    ("scope", "42"),
    ("scope", "[\"openid\"]"),
    ("scope", "{}"),
    ("nonce", "42"),
    ("nonce", "[]"),
    ("auth_time", "\"yesterday\""),
    ("auth_time", "\"1700000000\""),
    ("auth_time", "-1"),
    ("auth_time", "1.5"),
    ("auth_time", "1e3"),
    ("auth_time", "true"),
    ("auth_time", "18446744073709551616"),
    ("auth_time", "NaN"),
    ("acr", "1"),
    ("acr", "[]"),
    ("amr", "\"pwd\""),
    ("amr", "[1]"),
    ("amr", "[[\"pwd\"]]"),
    ("amr", "[null]"),
    ("amr", "{}"),
    ("claims", "[]"),
    ("claims", "\"x\""),
    ("claims", "42"),
    ("resource", "42"),
    ("resource", "[1]"),
    ("resource", "{}"),
    ("resource", "[[\"https://api.test\"]]"),
    ("resource", "[null]"),
];

fn corruption(not_utf8: bool) -> BoxedStrategy<Corruption> {
    let mut corruptions = vec![
        select(REQUIRED).prop_map(Corruption::Missing).boxed(),
        select(REQUIRED).prop_map(Corruption::Null).boxed(),
        select(WRONG_TYPES)
            .prop_map(|(k, v)| Corruption::Wrong(k, b(v)))
            .boxed(),
        select(&["sub", "scope", "nonce", "acr"][..])
            .prop_map(Corruption::LoneSurrogate)
            .boxed(),
        (130usize..3000, any::<bool>())
            .prop_map(|(depth, arrays)| Corruption::Deep { depth, arrays })
            .boxed(),
        (20usize..5000).prop_map(Corruption::HugeNumber).boxed(),
        (
            select(
                &[
                    "client_id",
                    "code_challenge",
                    "sub",
                    "scope",
                    "amr",
                    "resource",
                    "acr",
                ][..],
            ),
            1000usize..50_000,
        )
            .prop_map(|(k, n)| Corruption::HugeArray(k, n))
            .boxed(),
        (select(&["auth_time", "claims"][..]), 1000usize..200_000)
            .prop_map(|(k, n)| Corruption::HugeString(k, n))
            .boxed(),
    ];
    if not_utf8 {
        corruptions.push(
            select(&["sub", "scope", "nonce"][..])
                .prop_map(Corruption::NotUtf8)
                .boxed(),
        );
    }
    Union::new(corruptions).boxed()
}

fn corrupt_record(members: Members, not_utf8: bool) -> impl Strategy<Value = CorruptRecord> {
    let replaced = if not_utf8 {
        prop::collection::vec(any::<u8>(), 0..200)
            .prop_map(B)
            .boxed()
    } else {
        "[^\u{0}]{0,200}".prop_map(b).boxed()
    };
    (
        prop::collection::vec(corruption(not_utf8), 1..=3),
        prop::option::weighted(
            0.3,
            prop_oneof![
                replaced.prop_map(Wrap::Replaced),
                select(
                    &[
                        "not json",
                        "{",
                        "",
                        "null",
                        "true",
                        "42",
                        "\"public-app\"",
                        "[]",
                        "{}",
                        "{'client_id': 'public-app'}",
                    ][..]
                )
                .prop_map(|t| Wrap::Replaced(b(t))),
                any::<Index>().prop_map(Wrap::Truncated),
                Just(Wrap::Bom),
                select(&[" x", "\0", ",", "}", "{}"][..]).prop_map(Wrap::Trailing),
                Just(Wrap::InArray),
            ],
        ),
    )
        .prop_map(move |(corruptions, wrap)| CorruptRecord {
            members: members.clone(),
            corruptions,
            wrap,
        })
}

impl CorruptRecord {
    fn render(&self) -> Vec<u8> {
        let mut members = self.members.clone();
        let set = |members: &mut Members, key: &str, value: Vec<u8>| match members
            .iter_mut()
            .find(|(k, _)| k == key)
        {
            Some(member) => member.1 = B(value),
            None => members.push((key.into(), B(value))),
        };
        for corruption in &self.corruptions {
            match corruption {
                Corruption::Missing(key) => members.retain(|(k, _)| k != key),
                Corruption::Null(key) => set(&mut members, key, b"null".to_vec()),
                Corruption::Wrong(key, value) => set(&mut members, key, value.0.clone()),
                Corruption::LoneSurrogate(key) => set(&mut members, key, b"\"\\ud800x\"".to_vec()),
                Corruption::Deep { depth, arrays } => {
                    let (open, close): (&[u8], &[u8]) = if *arrays {
                        (b"[", b"]")
                    } else {
                        (b"{\"a\":", b"}")
                    };
                    let mut value = b"{\"a\":".to_vec();
                    value.extend(open.repeat(*depth));
                    value.extend_from_slice(b"1");
                    value.extend(close.repeat(*depth));
                    value.push(b'}');
                    set(&mut members, "claims", value);
                }
                Corruption::HugeNumber(digits) => {
                    set(&mut members, "auth_time", vec![b'9'; *digits])
                }
                Corruption::HugeArray(key, n) => {
                    let mut value = b"[".to_vec();
                    value.extend(b"1,".repeat(*n));
                    value.extend_from_slice(b"1]");
                    set(&mut members, key, value);
                }
                Corruption::HugeString(key, n) => {
                    let mut value = vec![b'x'; n + 2];
                    value[0] = b'"';
                    value[n + 1] = b'"';
                    set(&mut members, key, value);
                }
                Corruption::NotUtf8(key) => set(&mut members, key, b"\"ab\xff\xfe\"".to_vec()),
            }
        }
        let mut out = b"{".to_vec();
        for (i, (key, value)) in members.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(format!("\"{key}\":").as_bytes());
            out.extend_from_slice(&value.0);
        }
        out.push(b'}');
        match &self.wrap {
            None => out,
            Some(Wrap::Replaced(text)) => text.0.clone(),
            Some(Wrap::Truncated(at)) => {
                out.truncate(at.index(out.len()));
                out
            }
            Some(Wrap::Bom) => [&b"\xef\xbb\xbf"[..], &out].concat(),
            Some(Wrap::Trailing(rest)) => [&out, rest.as_bytes()].concat(),
            Some(Wrap::InArray) => [&b"["[..], &out, b"]"].concat(),
        }
    }
}

// ---------------------------------------------------------------------------
// Error log capture
// ---------------------------------------------------------------------------

/// Requests whose ERROR events are kept carry an `X-Request-Id` with this prefix.
const LOGGED_ID_PREFIX: &str = "hostile-";

/// An ERROR event logged while serving one of these tests' requests.
#[derive(Debug)]
struct LoggedError {
    request_id: String,
    text: String,
}

/// The ERROR events of requests whose id starts with [`LOGGED_ID_PREFIX`].
static ERROR_LOG: Mutex<Vec<LoggedError>> = Mutex::new(Vec::new());

/// Install, once, a global tracing subscriber that keeps in [`ERROR_LOG`]
/// the ERROR events of requests whose id starts with [`LOGGED_ID_PREFIX`].
/// The log is there to check if this returns true (false: another
/// subscriber was installed first).
fn capture_errors() -> bool {
    use tracing_subscriber::filter::filter_fn;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::Layer;

    static INSTALLED: OnceLock<bool> = OnceLock::new();
    *INSTALLED.get_or_init(|| {
        let layer = CaptureErrors.with_filter(filter_fn(|meta| {
            (meta.is_span() && meta.name() == "request") || *meta.level() == tracing::Level::ERROR
        }));
        let installed =
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(layer))
                .is_ok();
        if !installed {
            eprintln!(
                "hostile: another tracing subscriber is installed; log lines are not checked"
            );
        }
        installed
    })
}

struct CaptureErrors;

/// The `request_id` of a `request` span.
struct SpanRequestId(String);

#[derive(Default)]
struct FieldText(String);

impl tracing::field::Visit for FieldText {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        let _ = write!(self.0, "{}={value} ", field.name());
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn fmt::Debug) {
        let _ = write!(self.0, "{}={value:?} ", field.name());
    }
}

impl<S> tracing_subscriber::Layer<S> for CaptureErrors
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: tracing_subscriber::layer::Context<'_, S>,
    ) {
        let mut fields = FieldText::default();
        attrs.record(&mut fields);
        let request_id = fields
            .0
            .strip_prefix("request_id=")
            .unwrap_or_default()
            .trim_end()
            .to_string();
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(SpanRequestId(request_id));
        }
    }

    fn on_event(&self, event: &tracing::Event<'_>, ctx: tracing_subscriber::layer::Context<'_, S>) {
        let Some(request_id) = ctx.event_scope(event).and_then(|scope| {
            scope.from_root().find_map(|span| {
                span.extensions()
                    .get::<SpanRequestId>()
                    .map(|r| r.0.clone())
            })
        }) else {
            return;
        };
        if !request_id.starts_with(LOGGED_ID_PREFIX) {
            return;
        }
        let mut fields = FieldText::default();
        event.record(&mut fields);
        if let Ok(mut log) = ERROR_LOG.lock() {
            log.push(LoggedError {
                request_id,
                text: fields.0,
            });
        }
    }
}
