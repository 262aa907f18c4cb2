//! `minimal-handler`: the least work a redemption needs, for comparison
//! only (issue 16, BENCHMARKS.md "Against the least work"). Not a token
//! endpoint, never deployed: `loadtest/run.sh minimal` starts it beside the
//! service, on the same Redis, and runs the same closed-loop scenario
//! against it, so the ratio of the two comes from one run.
//!
//! Per request it does what no redemption can skip, and nothing else:
//! - read the form and find `code` (no other parameter is looked at);
//! - one `GETDEL` of the code's key, over one multiplexed connection per
//!   worker (the service's connection shape);
//! - parse the record and sign the same two ES256 tokens with the service's
//!   own minter and signer (same claims, same keys);
//! - answer the JSON of RFC 6749 §5.1.
//!
//! Left out on purpose: the Lua take (used marker, client, redirect URI and
//! PKCE checks), client authentication and its limiter, metrics, tracing,
//! request ids, CORS, random ids (a counter instead), and error detail.
//!
//! Settings: `MINIMAL_BIND` (address), `TOKEN_ENDPOINT_REDIS_URL`,
//! `TOKEN_ENDPOINT_SIGNING_KEYS` (the first key), `TOKEN_ENDPOINT_WORKERS`.

use std::cell::Cell;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use actix_web::http::header::{CacheControl, CacheDirective, ContentType};
use actix_web::{web, App, HttpResponse, HttpServer};
use redis::aio::MultiplexedConnection;
use token_endpoint::contract::record::CodeRecord;
use token_endpoint::grant::authorization_code::granted;
use token_endpoint::store::KeySpace;
use token_endpoint::tokens::keys::SigningKey;
use token_endpoint::tokens::{Binding, GrantIds, Recipient, TokenMinter};

/// What every worker shares.
struct Shared {
    client: redis::Client,
    minter: TokenMinter,
    keys: KeySpace,
    audience: Vec<String>,
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

async fn redeem(body: web::Bytes, worker: web::Data<Worker>) -> HttpResponse {
    let Some(code) = form_value(&body, b"code") else {
        return HttpResponse::BadRequest().finish();
    };
    let shared = &worker.shared;
    let conn = match worker
        .conn
        .get_or_try_init(|| shared.client.get_multiplexed_async_connection())
        .await
    {
        Ok(conn) => conn,
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    };
    let record: Option<Vec<u8>> = match redis::cmd("GETDEL")
        .arg(shared.keys.code(code))
        .query_async(&mut conn.clone())
        .await
    {
        Ok(record) => record,
        Err(_) => return HttpResponse::ServiceUnavailable().finish(),
    };
    let Some(record) = record.and_then(|raw| CodeRecord::parse(&raw).ok()) else {
        return HttpResponse::BadRequest()
            .content_type(ContentType::json())
            .body(r#"{"error":"invalid_grant"}"#);
    };
    let n = worker.counter.get() + 1;
    worker.counter.set(n);
    let id = format!("{:016x}{n:016x}", std::process::id());
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let mut record = record;
    // Moved out, not copied: the reference does no work the service skips.
    let client_id = std::mem::take(&mut record.client_id);
    let record = granted(record, Binding::Bearer);
    let recipient = Recipient {
        client_id: &client_id,
        audience: &shared.audience,
        access_token_lifetime: Duration::from_secs(600),
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
            token_type: "Bearer",
            expires_in: minted.expires_in,
            id_token: minted.id_token.as_deref(),
            scope: &record.scope,
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

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is required"))
}

fn main() -> Result<(), String> {
    let bind = setting("MINIMAL_BIND")?;
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
    let minter = TokenMinter::new("https://id.loadtest".into(), vec![key], vec![])
        .map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        client,
        minter,
        keys: KeySpace::default(),
        audience: vec!["https://api.example.com".into()],
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
