//! Signing backends and the CPU-bound steps of a redemption.
//!
//! `cargo bench --bench signing`: ring against aws-lc-rs (each with the key
//! parsed once), and `jsonwebtoken::encode`, which parses the key on every
//! call; then minting (each token alone and both, per algorithm), PKCE and
//! form parsing. The whole redemption is `benches/redemption.rs`.
//! Figures: BENCHMARKS.md.

// Tests and benches may panic: that is how they fail (the workspace's lints
// forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::hint::black_box;
use std::net::IpAddr;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::signature::Signer;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use token_endpoint::clients::{Client, ClientRegistry};
use token_endpoint::contract::frontend::{prepare, Grant};
use token_endpoint::grant::abuse::{AuthFailureLimiter, AuthLimits, MAX_ADDRESSES};
use token_endpoint::grant::authorization_code::granted;
use token_endpoint::grant::error::Reason;
use token_endpoint::grant::request::{TokenForm, TokenRequest};
use token_endpoint::metrics::Metrics;
use token_endpoint::pkce::{self, CodeVerifier};
use token_endpoint::tokens::aws_lc_signer::AwsLcSigner;
use token_endpoint::tokens::keys::SigningKey;
use token_endpoint::tokens::ring_provider::{self, RingSigner};
use token_endpoint::tokens::{Binding, GrantIds, Granted, TokenMinter};

/// PKCS#8 DER and PEM of one key per algorithm.
struct Keys {
    es256: Vec<u8>,
    eddsa: Vec<u8>,
    rs256: Vec<u8>,
}

impl Keys {
    fn new() -> Self {
        let rng = SystemRandom::new();
        let rsa_pem = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/rsa-2048.test-only.pem"
        ))
        .expect("RSA fixture");
        Self {
            es256: EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .expect("P-256")
                .as_ref()
                .to_vec(),
            eddsa: Ed25519KeyPair::generate_pkcs8(&rng)
                .expect("Ed25519")
                .as_ref()
                .to_vec(),
            rs256: pem::parse(rsa_pem).expect("PEM").contents().to_vec(),
        }
    }

    fn all(&self) -> [(Algorithm, &'static str, &[u8]); 3] {
        [
            (Algorithm::ES256, "ES256", &self.es256),
            (Algorithm::EdDSA, "EdDSA", &self.eddsa),
            (Algorithm::RS256, "RS256", &self.rs256),
        ]
    }
}

fn encoding_key(alg: Algorithm, der: &[u8]) -> EncodingKey {
    match alg {
        Algorithm::ES256 => EncodingKey::from_ec_der(der),
        Algorithm::EdDSA => EncodingKey::from_ed_der(der),
        _ => EncodingKey::from_rsa_der(der),
    }
}

/// The signing input of a typical access token (~330 bytes).
const MESSAGE: &[u8] = b"eyJhbGciOiJFUzI1NiIsImtpZCI6IjY3bDVPRHBjWkJKcnY4Q1R2SlBnYnZxS2NNWi1lN2pfbkdvNUlQdl9VQjgiLCJ0eXAiOiJhdCtqd3QifQ.eyJpc3MiOiJodHRwOi8vMTI3LjAuMC4xOjgwODAiLCJzdWIiOiJhbGljZSIsImF1ZCI6WyJodHRwczovL2FwaS5leGFtcGxlLmNvbSJdLCJjbGllbnRfaWQiOiJkZW1vIiwiZXhwIjoxNzk1NTYwODE3LCJpYXQiOjE3OTU1NjA1MTcsImp0aSI6IldiQ01VV3lBdE8zakVwVjlFdk5KUXciLCJzY29wZSI6Im9wZW5pZCBwcm9maWxlIn0";

fn signing(c: &mut Criterion) {
    ring_provider::install();
    let keys = Keys::new();
    let mut group = c.benchmark_group("sign");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for (alg, name, der) in keys.all() {
        let ring = RingSigner::from_pkcs8(alg, der).expect("ring parses the key");
        group.bench_with_input(
            BenchmarkId::new("ring, key parsed once", name),
            &ring,
            |b, s| b.iter(|| s.try_sign(black_box(MESSAGE)).expect("sign")),
        );
        // The service signs RS256 with ring (it measured faster; the
        // aws-lc-rs RS256 figures are in BENCHMARKS.md), so there is no
        // aws-lc-rs RS256 signer to compare any more.
        if let Ok(aws) = AwsLcSigner::from_pkcs8(alg, der) {
            group.bench_with_input(
                BenchmarkId::new("aws-lc-rs, key parsed once", name),
                &aws,
                |b, s| b.iter(|| s.try_sign(black_box(MESSAGE)).expect("sign")),
            );
        }
        // jsonwebtoken::encode builds a signer from the key on every call
        // (here through the ring provider the service installs).
        let key = encoding_key(alg, der);
        let header = Header::new(alg);
        let claims = serde_json::json!({"sub": "alice", "iat": 1_700_000_000u64});
        group.bench_function(
            BenchmarkId::new("jsonwebtoken::encode, key parsed per call", name),
            |b| b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &key).expect("encode")),
        );
    }
    group.finish();
}

/// The grant every minting bench signs for: the demo client's `openid
/// profile` grant, with fixed ids so each iteration signs the same claims.
struct MintFixture {
    client: Client,
    record: Granted,
    ids: GrantIds<'static>,
}

impl MintFixture {
    fn new() -> Self {
        let registry = ClientRegistry::demo();
        let client = registry.get("demo").expect("demo client").as_ref().clone();
        let (_, record) =
            prepare(Grant::new("demo", "alice", "openid profile")).expect("the system RNG works");
        let record = granted(record, Binding::Bearer);
        Self {
            client,
            record,
            ids: GrantIds {
                grant_id: "R4v2UnvCpQIPRlVfYxbB8A",
                jti: "WbCMUWyAtO3jEpV9EvNJQw",
                now: 1_700_000_000,
            },
        }
    }
}

/// Minting per algorithm, with one minter per algorithm (its only key signs
/// both tokens): the access token alone, the ID token alone, and both as
/// `TokenMinter::mint` issues them for an `openid` grant. Shows what each
/// token costs, hence what the choice of algorithm costs a redemption.
fn minting(c: &mut Criterion) {
    ring_provider::install();
    let keys = Keys::new();
    let mut fixture = MintFixture::new();
    let mut group = c.benchmark_group("mint");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for (alg, name, der) in keys.all() {
        let key = SigningKey::from_pkcs8(der).expect("the bench key parses");
        let minter = TokenMinter::new("https://id.example".into(), vec![key], vec![])
            .expect("one signing key makes a minter");
        fixture.client.id_token_alg = alg;
        let MintFixture {
            client,
            record,
            ids,
        } = &fixture;
        let client = &client.recipient();
        let access_token = minter
            .mint_access_token(record, client, ids)
            .expect("mint the access token");
        group.bench_function(BenchmarkId::new("access token", name), |b| {
            b.iter(|| {
                minter
                    .mint_access_token(black_box(record), client, ids)
                    .expect("mint the access token")
            })
        });
        group.bench_function(BenchmarkId::new("ID token", name), |b| {
            b.iter(|| {
                minter
                    .mint_id_token(black_box(record), client, ids, &access_token)
                    .expect("mint the ID token")
            })
        });
        group.bench_function(BenchmarkId::new("access + ID token", name), |b| {
            b.iter(|| {
                let minted = minter
                    .mint(black_box(record), client, ids)
                    .expect("mint both tokens");
                assert!(
                    minted.id_token.is_some(),
                    "an openid grant gets an ID token"
                );
                minted
            })
        });
    }
    group.finish();
}

/// Both tokens of one grant from one minter holding a key of each
/// algorithm, ES256 first (so it signs every access token), with the ID
/// token in the client's algorithm: a deployment whose clients ask for
/// different ID-token algorithms. How the earlier minting figures of
/// BENCHMARKS.md were measured, kept for comparison.
fn minting_es256_access(c: &mut Criterion) {
    ring_provider::install();
    let keys = Keys::new();
    let signing: Vec<SigningKey> = keys
        .all()
        .iter()
        .map(|(_, _, der)| SigningKey::from_pkcs8(der).expect("the bench key parses"))
        .collect();
    let minter = TokenMinter::new("https://id.example".into(), signing, vec![]).expect("minter");
    let mut fixture = MintFixture::new();
    let mut group = c.benchmark_group("mint access + ID token");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for (alg, name, _) in keys.all() {
        fixture.client.id_token_alg = alg;
        let MintFixture {
            client,
            record,
            ids,
        } = &fixture;
        let client = &client.recipient();
        group.bench_function(
            BenchmarkId::new("ES256 access token", format!("{name} ID token")),
            |b| b.iter(|| minter.mint(black_box(record), client, ids).expect("mint")),
        );
    }
    group.finish();
}

/// The request-side work: form parsing and validation, PKCE.
fn request_side(c: &mut Criterion) {
    let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
    let body = format!(
        "grant_type=authorization_code&code=LSKrnLWdxxJDv0HMcE91MXsPm3_lT7z_WsPOktG0MBI\
         &redirect_uri=https%3A%2F%2Fapp.example%2Fcb&client_id=demo&code_verifier={verifier}"
    );
    let mut group = c.benchmark_group("request");
    group.throughput(Throughput::Elements(1));
    group.bench_function("pkce: parse verifier + S256 + constant-time compare", |b| {
        b.iter(|| {
            let v = CodeVerifier::parse(black_box(verifier).to_owned()).expect("valid");
            pkce::verify(&v, pkce::ChallengeMethod::S256, challenge)
        })
    });
    group.bench_function("form: parse + validate (includes PKCE S256)", |b| {
        b.iter(|| {
            let form = TokenForm::parse(black_box(body.as_bytes())).expect("form");
            TokenRequest::from_form(form, None).expect("request")
        })
    });
    // What the metrics cost a redemption: every update the hot path makes
    // for one successful request (in-flight in and out, the outcome counter,
    // three histograms, two token counters), on one thread.
    let metrics = Metrics::new("redis", "kid", "ES256");
    group.bench_function("metrics: one redemption's updates", |b| {
        b.iter(|| {
            metrics.in_flight.inc();
            metrics.store_duration.observe(black_box(0.000_21));
            metrics.signing_duration.observe(black_box(0.000_047));
            metrics.access_tokens.inc();
            metrics.id_tokens.inc();
            metrics.record(Reason::Issued);
            metrics.request_duration.observe(black_box(0.000_3));
            metrics.in_flight.dec();
        })
    });
    // What the authentication limiter costs a request it looks at (one that
    // offers a secret): the check, with the failures of 1,000 other
    // addresses on record.
    let limiter = AuthFailureLimiter::new(AuthLimits::default());
    let now = std::time::Instant::now();
    for i in 0..1000u32 {
        limiter.record_address_failure(IpAddr::from(i.to_be_bytes()), now);
    }
    let address = IpAddr::from([198, 51, 100, 7]);
    group.bench_function("limiter: check of an unlimited request", |b| {
        b.iter(|| limiter.check(black_box(address), now))
    });
    // Under attack (security review, finding 6): the table full of live
    // windows from an attacker's many addresses, and every failure from a
    // new address. Each evicts one of a few sampled entries: constant work,
    // where the earlier limiter swept the whole table on every failure.
    let full = AuthFailureLimiter::new(AuthLimits::default());
    for i in 0..MAX_ADDRESSES as u32 {
        full.record_address_failure(IpAddr::from((0x0a00_0000 | i).to_be_bytes()), now);
    }
    let mut next = 0u32;
    group.bench_function("limiter: failure from a new address, table full", |b| {
        b.iter(|| {
            next = next.wrapping_add(1);
            let fresh = IpAddr::from((0x0b00_0000 | (next & 0x00ff_ffff)).to_be_bytes());
            full.record_address_failure(black_box(fresh), now)
        })
    });
    group.bench_function("limiter: check, table full", |b| {
        b.iter(|| full.check(black_box(address), now))
    });
    group.finish();
}

criterion_group!(
    benches,
    signing,
    minting,
    minting_es256_access,
    request_side
);
criterion_main!(benches);
