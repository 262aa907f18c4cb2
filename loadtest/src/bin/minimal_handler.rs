//! `minimal-handler`: the least work a redemption needs, for comparison
//! only (issue 16, BENCHMARKS.md "Against the least work"). Not a token
//! endpoint, never deployed: `loadtest/run.sh` starts it beside the service,
//! on the same Redis, and runs the same steps against it, so the ratio of
//! the two comes from one run.
//!
//! Three modes (`MINIMAL_MODE`), each the least work for one thing:
//!
//! - `getdel` (default; run.sh `@minimal`): what no redemption can skip.
//!   Find `code` in the form (nothing else is looked at), one `GETDEL` of its
//!   key, parse the record, sign the same two ES256 tokens with the
//!   service's own minter and signer (same claims, same keys), answer the
//!   JSON of RFC 6749 §5.1.
//! - `checked` (`@minimal-checked`): the service's guarantees, at least
//!   cost. `GET` the record; check it with the service's own
//!   `contract::record::check` (client, redirect URI, PKCE S256 with ring's
//!   SHA-256, compared in constant time), so a refused request consumes
//!   nothing; then one `MULTI`: `GETDEL` of the code and
//!   `SET <used-key> <marker> EX <ttl> NX`, so of concurrent takes exactly
//!   one gets the record and the code is marked as used. Two round trips.
//! - `dpop` (`@minimal-dpop`): `checked`, after one DPoP proof check
//!   (RFC 9449 §4.3): parse the JWS and its `jwk`, verify the ES256
//!   signature with ring, check `typ`, `alg`, `htm`, `htu` (exact; the
//!   service also normalises it) and the `iat` window, compute the RFC 7638
//!   thumbprint; the `jti` is recorded with
//!   `SET <prefix>dpop:<hash> 1 NX EX <window>` pipelined with the `GET`
//!   (no extra round trip). The tokens are bound (`cnf.jkt`, `token_type`
//!   `DPoP`).
//!
//! Left out on purpose, in every mode: client authentication and its
//! limiter, metrics, tracing, request ids, CORS, replay detection and
//! revocation (a missing code is simply `invalid_grant`), DPoP nonces,
//! random ids (a counter instead), and error detail.
//!
//! Settings: `MINIMAL_BIND` (address), `MINIMAL_MODE`,
//! `TOKEN_ENDPOINT_REDIS_URL`, `TOKEN_ENDPOINT_SIGNING_KEYS` (the first
//! key), `TOKEN_ENDPOINT_WORKERS`, `TOKEN_ENDPOINT_ISSUER` (default
//! `https://id.loadtest`, run.sh's), and for `dpop`
//! `TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS` (60) and
//! `TOKEN_ENDPOINT_DPOP_PROOF_MAX_FUTURE_SECS` (5), as the service reads
//! them.

use std::borrow::Cow;
use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use redis::aio::MultiplexedConnection;
use ring::digest::{digest, SHA256};
use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
use token_endpoint::contract::record::{check, CodeRecord, Presented};
use token_endpoint::grant::authorization_code::granted;
use token_endpoint::pkce::CodeVerifier;
use token_endpoint::store::KeySpace;
use token_endpoint::tokens::keys::SigningKey;
use token_endpoint::tokens::{Binding, GrantIds, Recipient, TokenMinter};

/// How long the tokens live, and so the used marker.
const ACCESS_TOKEN_LIFETIME: Duration = Duration::from_secs(600);

/// The service's default key prefix, which run.sh keeps.
const KEY_PREFIX: &str = "oauth:";

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    GetDel,
    Checked,
    Dpop,
}

/// What a DPoP proof is checked against.
struct DpopSettings {
    /// `{issuer}/oauth/token`.
    htu: String,
    max_age: u64,
    max_future: u64,
}

impl DpopSettings {
    /// How long a `jti` is remembered: as long as a proof carrying it could
    /// be accepted (past and future window), and a second more.
    fn replay_ttl(&self) -> u64 {
        self.max_age + self.max_future + 1
    }
}

/// What every worker shares.
struct Shared {
    client: redis::Client,
    minter: TokenMinter,
    keys: KeySpace,
    audience: Vec<String>,
    mode: Mode,
    dpop: DpopSettings,
}

/// One worker's connection, opened on its first request.
struct Worker {
    shared: Arc<Shared>,
    conn: tokio::sync::OnceCell<MultiplexedConnection>,
    counter: Cell<u64>,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    access_token: &'a str,
    token_type: &'static str,
    expires_in: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    id_token: Option<&'a str>,
    scope: &'a str,
}

fn refused(error: &'static str) -> HttpResponse {
    HttpResponse::BadRequest()
        .content_type(ContentType::json())
        .body(format!(r#"{{"error":"{error}"}}"#))
}

fn unavailable() -> HttpResponse {
    HttpResponse::ServiceUnavailable().finish()
}

async fn redeem(request: HttpRequest, body: web::Bytes, worker: web::Data<Worker>) -> HttpResponse {
    let Some(code) = form_value(&body, b"code") else {
        return HttpResponse::BadRequest().finish();
    };
    let shared = &worker.shared;
    // A proof is checked before the store is touched (no I/O in it).
    let proof = match shared.mode {
        Mode::Dpop => match verify_proof(&request, &shared.dpop) {
            Ok(proof) => Some(proof),
            Err(_why) => return refused("invalid_dpop_proof"),
        },
        Mode::GetDel | Mode::Checked => None,
    };
    let conn = match worker
        .conn
        .get_or_try_init(|| shared.client.get_multiplexed_async_connection())
        .await
    {
        Ok(conn) => conn,
        Err(_) => return unavailable(),
    };
    let n = worker.counter.get() + 1;
    worker.counter.set(n);
    let id = format!("{:016x}{n:016x}", std::process::id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let taken = match shared.mode {
        Mode::GetDel => getdel(conn, shared, code).await,
        Mode::Checked | Mode::Dpop => {
            checked_take(conn, shared, code, &body, proof.as_ref(), &id, now).await
        }
    };
    let (mut record, client_id) = match taken {
        Ok(taken) => taken,
        Err(answer) => return answer,
    };
    let binding = match proof {
        Some(proof) => Binding::Dpop { jkt: proof.jkt },
        None => Binding::Bearer,
    };
    // Moved out, not copied: the reference does no work the service skips.
    let client_id = client_id.unwrap_or_else(|| std::mem::take(&mut record.client_id));
    let record = granted(record, binding);
    let recipient = Recipient {
        client_id: &client_id,
        audience: &shared.audience,
        access_token_lifetime: ACCESS_TOKEN_LIFETIME,
        id_token_lifetime: Duration::from_secs(300),
        id_token_alg: shared.minter.access_token_key().alg(),
    };
    let ids = GrantIds {
        grant_id: &id,
        jti: &id,
        now,
    };
    let Ok(minted) = shared.minter.mint(&record, &recipient, &ids) else {
        return HttpResponse::InternalServerError().finish();
    };
    HttpResponse::Ok()
        .insert_header(CacheControl(vec![CacheDirective::NoStore]))
        .json(Answer {
            access_token: &minted.access_token,
            token_type: record.binding.token_type(),
            expires_in: minted.expires_in,
            id_token: minted.id_token.as_deref(),
            scope: &record.scope,
        })
}

/// A taken record, and the client it was checked against (`None`: not
/// checked; the record's own).
type Taken = (CodeRecord, Option<String>);

/// `getdel`: one `GETDEL`, no checks.
async fn getdel(
    conn: &MultiplexedConnection,
    shared: &Shared,
    code: &str,
) -> Result<Taken, HttpResponse> {
    let record: Option<Vec<u8>> = redis::cmd("GETDEL")
        .arg(shared.keys.code(code))
        .query_async(&mut conn.clone())
        .await
        .map_err(|_| unavailable())?;
    let record = record
        .and_then(|raw| CodeRecord::parse(&raw).ok())
        .ok_or_else(|| refused("invalid_grant"))?;
    Ok((record, None))
}

/// `checked` and `dpop`: read and check, then take and mark in one `MULTI`.
async fn checked_take(
    conn: &MultiplexedConnection,
    shared: &Shared,
    code: &str,
    form: &[u8],
    proof: Option<&Proof>,
    grant_id: &str,
    now: u64,
) -> Result<Taken, HttpResponse> {
    let client_id = form_text(form, b"client_id").ok_or_else(|| refused("invalid_request"))?;
    let redirect_uri = form_text(form, b"redirect_uri");
    let verifier = form_text(form, b"code_verifier")
        .and_then(|v| CodeVerifier::parse(v.into_owned()).ok())
        .ok_or_else(|| refused("invalid_request"))?;
    let code_key = shared.keys.code(code);
    let raw: Option<Vec<u8>> = match proof {
        None => redis::cmd("GET")
            .arg(&code_key)
            .query_async(&mut conn.clone())
            .await
            .map_err(|_| unavailable())?,
        // The jti is recorded in the same round trip as the read.
        Some(proof) => {
            let (raw, fresh): (Option<Vec<u8>>, Option<String>) = redis::pipe()
                .cmd("GET")
                .arg(&code_key)
                .cmd("SET")
                .arg(&proof.replay_key)
                .arg(1)
                .arg("NX")
                .arg("EX")
                .arg(shared.dpop.replay_ttl())
                .query_async(&mut conn.clone())
                .await
                .map_err(|_| unavailable())?;
            if fresh.is_none() {
                return Err(refused("invalid_dpop_proof"));
            }
            raw
        }
    };
    let raw = raw.ok_or_else(|| refused("invalid_grant"))?;
    let record = CodeRecord::parse(&raw).map_err(|_| refused("invalid_grant"))?;
    let presented = Presented {
        client_id: &client_id,
        redirect_uri: redirect_uri.as_deref(),
        verifier: &verifier,
        allow_plain: false,
        dpop_jkt: proof.map(|p| p.jkt.as_str()),
    };
    check(&record, &presented).map_err(|_| refused("invalid_grant"))?;
    // The service's used marker: `<grant_id> <expiry> <digest> <client_id>`.
    let marker = format!(
        "{grant_id} {} {} {client_id}",
        now + ACCESS_TOKEN_LIFETIME.as_secs(),
        verifier.s256_challenge()
    );
    let (taken, _marked): (Option<Vec<u8>>, Option<String>) = redis::pipe()
        .atomic()
        .cmd("GETDEL")
        .arg(&code_key)
        .cmd("SET")
        .arg(shared.keys.used(code))
        .arg(marker)
        .arg("EX")
        .arg(ACCESS_TOKEN_LIFETIME.as_secs())
        .arg("NX")
        .query_async(&mut conn.clone())
        .await
        .map_err(|_| unavailable())?;
    // Another take won, or the record changed after its check.
    if taken.as_deref() != Some(raw.as_slice()) {
        return Err(refused("invalid_grant"));
    }
    Ok((record, Some(client_id.into_owned())))
}

/// A verified proof: what binds the tokens, and the key that records its
/// `jti`.
struct Proof {
    jkt: String,
    replay_key: String,
}

#[derive(serde::Deserialize)]
struct ProofHeader {
    typ: String,
    alg: String,
    jwk: Jwk,
}

#[derive(serde::Deserialize)]
struct Jwk {
    kty: String,
    crv: String,
    x: String,
    y: String,
    /// A private key: refused.
    d: Option<serde::de::IgnoredAny>,
}

#[derive(serde::Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: u64,
}

/// RFC 9449 §4.3 for ES256 proofs, without nonces.
fn verify_proof(request: &HttpRequest, settings: &DpopSettings) -> Result<Proof, &'static str> {
    let mut values = request.headers().get_all("dpop");
    let (Some(value), None) = (values.next(), values.next()) else {
        return Err("exactly one DPoP header");
    };
    let jws = value.to_str().map_err(|_| "not text")?;
    let mut parts = jws.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not a compact JWS");
    };
    let decode = |part: &str| URL_SAFE_NO_PAD.decode(part).map_err(|_| "not base64url");
    let header: ProofHeader = serde_json::from_slice(&decode(header)?).map_err(|_| "bad header")?;
    if header.typ != "dpop+jwt" || header.alg != "ES256" {
        return Err("typ or alg");
    }
    let jwk = header.jwk;
    if jwk.kty != "EC" || jwk.crv != "P-256" || jwk.d.is_some() {
        return Err("not a public P-256 key");
    }
    // The uncompressed SEC1 point ring takes: 04 || x || y.
    let mut point = Vec::with_capacity(65);
    point.push(4u8);
    point.extend(decode(&jwk.x)?);
    point.extend(decode(&jwk.y)?);
    if point.len() != 65 {
        return Err("bad coordinates");
    }
    let signed = jws
        .get(..jws.len() - signature.len() - 1)
        .ok_or("not a compact JWS")?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
        .verify(signed.as_bytes(), &decode(signature)?)
        .map_err(|_| "bad signature")?;
    let claims: ProofClaims =
        serde_json::from_slice(&decode(payload)?).map_err(|_| "bad claims")?;
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    if claims.htm != "POST" || claims.htu != settings.htu {
        return Err("htm or htu");
    }
    if claims.iat.saturating_add(settings.max_age) < now
        || claims.iat > now.saturating_add(settings.max_future)
    {
        return Err("iat out of the window");
    }
    if claims.jti.is_empty() || claims.jti.len() > 256 {
        return Err("jti");
    }
    // RFC 7638: the required members, in lexicographic order, no spaces.
    let members = format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        jwk.x, jwk.y
    );
    let thumbprint = digest(&SHA256, members.as_bytes());
    // Keyed on the key and the jti together (two clients may pick one jti),
    // as the service keys it: the first 128 bits of SHA-256(thumbprint || jti).
    let mut replay = ring::digest::Context::new(&SHA256);
    replay.update(thumbprint.as_ref());
    replay.update(claims.jti.as_bytes());
    let replay = replay.finish();
    let hash = URL_SAFE_NO_PAD.encode(replay.as_ref().get(..16).ok_or("short digest")?);
    Ok(Proof {
        replay_key: format!("{KEY_PREFIX}dpop:{hash}"),
        jkt: URL_SAFE_NO_PAD.encode(thumbprint),
    })
}

/// The value of `name` in an `application/x-www-form-urlencoded` body, as
/// is (codes need no decoding).
fn form_value<'a>(body: &'a [u8], name: &[u8]) -> Option<&'a str> {
    body.split(|b| *b == b'&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix(b"=")?;
        std::str::from_utf8(value).ok()
    })
}

/// The value of `name`, form-decoded (`+` and `%XX`); borrowed when there
/// is nothing to decode.
fn form_text<'a>(body: &'a [u8], name: &[u8]) -> Option<Cow<'a, str>> {
    let raw = form_value(body, name)?;
    if !raw.contains(['+', '%']) {
        return Some(Cow::Borrowed(raw));
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut bytes = raw.bytes();
    while let Some(b) = bytes.next() {
        out.push(match b {
            b'+' => b' ',
            b'%' => {
                let hex = [bytes.next()?, bytes.next()?];
                u8::from_str_radix(std::str::from_utf8(&hex).ok()?, 16).ok()?
            }
            b => b,
        });
    }
    String::from_utf8(out).ok().map(Cow::Owned)
}

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is required"))
}

fn number(name: &str, default: u64) -> Result<u64, String> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(value) => value
            .parse()
            .map_err(|_| format!("{name}={value:?}: expected a number of seconds")),
    }
}

fn main() -> Result<(), String> {
    let bind = setting("MINIMAL_BIND")?;
    let mode = match std::env::var("MINIMAL_MODE").as_deref() {
        Err(_) | Ok("getdel") => Mode::GetDel,
        Ok("checked") => Mode::Checked,
        Ok("dpop") => Mode::Dpop,
        Ok(other) => {
            return Err(format!(
                "MINIMAL_MODE={other:?}: expected getdel, checked or dpop"
            ))
        }
    };
    let client = redis::Client::open(setting("TOKEN_ENDPOINT_REDIS_URL")?)
        .map_err(|e| format!("TOKEN_ENDPOINT_REDIS_URL: {e}"))?;
    let key_path = setting("TOKEN_ENDPOINT_SIGNING_KEYS")?;
    let key_path = key_path.split(',').next().unwrap_or_default();
    let key = SigningKey::from_pem_file(std::path::Path::new(key_path))
        .map_err(|e| format!("TOKEN_ENDPOINT_SIGNING_KEYS: {e}"))?;
    let workers = std::env::var("TOKEN_ENDPOINT_WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let issuer = std::env::var("TOKEN_ENDPOINT_ISSUER")
        .unwrap_or_else(|_| "https://id.loadtest".into())
        .trim_end_matches('/')
        .to_owned();
    let dpop = DpopSettings {
        htu: format!("{issuer}/oauth/token"),
        max_age: number("TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS", 60)?,
        max_future: number("TOKEN_ENDPOINT_DPOP_PROOF_MAX_FUTURE_SECS", 5)?,
    };
    let minter = TokenMinter::new(issuer, vec![key], vec![]).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        client,
        minter,
        keys: KeySpace::new(KEY_PREFIX),
        audience: vec!["https://api.example.com".into()],
        mode,
        dpop,
    });
    actix_web::rt::System::new()
        .block_on(async move {
            HttpServer::new(move || {
                App::new()
                    .app_data(web::Data::new(Worker {
                        shared: shared.clone(),
                        conn: tokio::sync::OnceCell::new(),
                        counter: Cell::new(0),
                    }))
                    .route("/oauth/token", web::post().to(redeem))
                    .route("/readyz", web::get().to(HttpResponse::Ok))
            })
            .workers(workers)
            .bind(bind)?
            .run()
            .await
        })
        .map_err(|e| e.to_string())
}
