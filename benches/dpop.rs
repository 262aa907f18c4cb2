//! DPoP proof verification (RFC 9449 §4.3), per algorithm and backend.
//!
//! `cargo bench --bench dpop`: the same proofs, signed once before any
//! timing by the test harness's `DpopKey`, checked by
//! - the service: `DpopPolicy::check` (its signature check is
//!   `dpop::jwk::PublicKey::verify`);
//! - a copy of the check's steps in this file (`local_check`: the same
//!   parse, key, thumbprint, claims and replay key), once with ring and once
//!   with aws-lc-rs checking the signature: the backends compared on the
//!   same work, and the copy held to the service's own figure;
//! - jsonwebtoken: the header's `jwk` as a `jsonwebtoken::jwk::Jwk`,
//!   `DecodingKey::from_jwk`, `jsonwebtoken::decode` with the validation a
//!   proof needs, through the ring provider the service installs, and the
//!   thumbprint computed as the others compute it.
//!
//! Then the pieces apart: the signature check alone (key bytes to verdict,
//! the key parsed on each call, as each proof brings its own key), and the
//! key's parse and thumbprint alone (from the `jwk`'s JSON text).
//!
//! Each proof has its own `jti`, but the check is stateless (the replay
//! check is the store's), so one proof is checked again and again.
//! Figures: BENCHMARKS.md.

// Tests and benches may panic: that is how they fail (the workspace's lints
// forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::borrow::Cow;
use std::hint::black_box;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use ring::digest::{digest, Context, SHA256};
use serde::de::IgnoredAny;
use serde::Deserialize;
use token_endpoint::dpop::htu::TargetUri;
use token_endpoint::dpop::jwk::{Alg, PublicKey};
use token_endpoint::dpop::{DpopPolicy, NonceMode, MAX_JTI_LEN, MAX_PROOF_LEN};
use token_endpoint::tokens::ring_provider;
use token_endpoint_test_support::DpopKey;

/// The token endpoint every proof is made for.
const HTU: &str = "https://id.example/oauth/token";
const MAX_AGE_SECS: u64 = 60;
const MAX_FUTURE_SECS: u64 = 5;

/// Who checks the signature.
#[derive(Debug, Clone, Copy)]
enum Backend {
    Ring,
    AwsLc,
}

impl Backend {
    fn name(self) -> &'static str {
        match self {
            Self::Ring => "ring",
            Self::AwsLc => "aws-lc-rs",
        }
    }
}

/// A proof's public key, its members decoded: what `PublicKey` holds.
enum LocalKey {
    /// `04 || x || y`.
    P256([u8; 65]),
    Ed25519([u8; 32]),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// The signature check, on `backend`, the key parsed on each call.
fn verify(backend: Backend, key: &LocalKey, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
    match backend {
        Backend::Ring => {
            use ring::signature::{
                RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
                RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
            };
            match (key, alg) {
                (LocalKey::P256(point), Alg::Es256) => {
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                        .is_ok()
                }
                (LocalKey::Ed25519(x), Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, x)
                    .verify(message, signature)
                    .is_ok(),
                (LocalKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok(),
                (LocalKey::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
                    .is_ok(),
                _ => false,
            }
        }
        Backend::AwsLc => {
            use aws_lc_rs::signature::{
                RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
                RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
            };
            match (key, alg) {
                (LocalKey::P256(point), Alg::Es256) => {
                    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                        .verify(message, signature)
                        .is_ok()
                }
                (LocalKey::Ed25519(x), Alg::EdDsa) => UnparsedPublicKey::new(&ED25519, x)
                    .verify(message, signature)
                    .is_ok(),
                (LocalKey::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok(),
                (LocalKey::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                    .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
                    .is_ok(),
                _ => false,
            }
        }
    }
}

/// The JOSE header as the service reads it: `typ`, `alg`, `jwk`, `crit`.
#[derive(Deserialize)]
struct LocalHeader<'a> {
    #[serde(borrow)]
    typ: Option<Cow<'a, str>>,
    #[serde(borrow)]
    alg: Option<Cow<'a, str>>,
    #[serde(borrow)]
    jwk: Option<LocalJwk<'a>>,
    crit: Option<IgnoredAny>,
}

/// The `jwk` as the service reads it: the public members, and the private
/// ones to refuse them.
#[derive(Deserialize)]
struct LocalJwk<'a> {
    #[serde(borrow)]
    kty: Option<Cow<'a, str>>,
    #[serde(borrow)]
    crv: Option<Cow<'a, str>>,
    #[serde(borrow)]
    x: Option<Cow<'a, str>>,
    #[serde(borrow)]
    y: Option<Cow<'a, str>>,
    #[serde(borrow)]
    n: Option<Cow<'a, str>>,
    #[serde(borrow)]
    e: Option<Cow<'a, str>>,
    d: Option<IgnoredAny>,
    p: Option<IgnoredAny>,
    q: Option<IgnoredAny>,
    dp: Option<IgnoredAny>,
    dq: Option<IgnoredAny>,
    qi: Option<IgnoredAny>,
    oth: Option<IgnoredAny>,
    k: Option<IgnoredAny>,
}

/// The claims the check reads.
#[derive(Deserialize)]
struct LocalClaims<'a> {
    #[serde(borrow)]
    jti: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htm: Option<Cow<'a, str>>,
    #[serde(borrow)]
    htu: Option<Cow<'a, str>>,
    iat: Option<f64>,
}

/// What a check yields: the service's `Proof` less the nonce.
#[derive(Debug, PartialEq, Eq)]
struct Checked {
    jkt: String,
    replay: [u8; 16],
}

type Refusal = &'static str;

fn decode(text: &str) -> Result<Vec<u8>, Refusal> {
    URL_SAFE_NO_PAD.decode(text).map_err(|_| "not base64url")
}

fn fixed<const N: usize>(text: &str) -> Result<[u8; N], Refusal> {
    <[u8; N]>::try_from(decode(text)?.as_slice()).map_err(|_| "wrong length")
}

fn unsigned(text: &str) -> Result<Vec<u8>, Refusal> {
    let bytes = decode(text)?;
    match bytes.first() {
        None | Some(0) => Err("not an RSA integer"),
        Some(_) => Ok(bytes),
    }
}

fn sha256(canonical: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, canonical.as_bytes()).as_ref());
    out
}

/// The key and its RFC 7638 thumbprint, as `PublicKey::from_jwk` makes
/// them: public, of `alg`'s key type, every member well formed, the
/// canonical JSON hashed.
fn local_key(jwk: &LocalJwk<'_>, alg: Alg) -> Result<(LocalKey, [u8; 32]), Refusal> {
    let private = [
        &jwk.d, &jwk.p, &jwk.q, &jwk.dp, &jwk.dq, &jwk.qi, &jwk.oth, &jwk.k,
    ];
    if private.iter().any(|member| member.is_some()) {
        return Err("not a public key");
    }
    let kty = jwk.kty.as_deref().ok_or("no kty")?;
    let crv = jwk.crv.as_deref();
    match (alg, kty) {
        (Alg::Es256, "EC") => {
            if crv != Some("P-256") {
                return Err("not P-256");
            }
            let (x_text, y_text) = (
                jwk.x.as_deref().ok_or("no x")?,
                jwk.y.as_deref().ok_or("no y")?,
            );
            let x: [u8; 32] = fixed(x_text)?;
            let y: [u8; 32] = fixed(y_text)?;
            let mut point = [4u8; 65];
            point[1..33].copy_from_slice(&x);
            point[33..].copy_from_slice(&y);
            let canonical =
                format!(r#"{{"crv":"P-256","kty":"EC","x":"{x_text}","y":"{y_text}"}}"#);
            Ok((LocalKey::P256(point), sha256(&canonical)))
        }
        (Alg::EdDsa, "OKP") => {
            if crv != Some("Ed25519") {
                return Err("not Ed25519");
            }
            let x_text = jwk.x.as_deref().ok_or("no x")?;
            let x: [u8; 32] = fixed(x_text)?;
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x_text}"}}"#);
            Ok((LocalKey::Ed25519(x), sha256(&canonical)))
        }
        (Alg::Rs256 | Alg::Ps256, "RSA") => {
            let (n_text, e_text) = (
                jwk.n.as_deref().ok_or("no n")?,
                jwk.e.as_deref().ok_or("no e")?,
            );
            let (n, e) = (unsigned(n_text)?, unsigned(e_text)?);
            if !(2048..=8192).contains(&(n.len() * 8)) {
                return Err("RSA key size");
            }
            let canonical = format!(r#"{{"e":"{e_text}","kty":"RSA","n":"{n_text}"}}"#);
            Ok((LocalKey::Rsa { n, e }, sha256(&canonical)))
        }
        _ => Err("kty does not fit alg"),
    }
}

fn is_dpop_jwt(typ: &str) -> bool {
    let typ = match typ.get(..12) {
        Some(prefix) if prefix.eq_ignore_ascii_case("application/") => &typ[12..],
        _ => typ,
    };
    typ.eq_ignore_ascii_case("dpop+jwt")
}

/// The claims' checks and the replay key, shared by the local and the
/// jsonwebtoken paths.
fn check_claims(
    thumbprint: &[u8; 32],
    jti: Option<&str>,
    htm: Option<&str>,
    htu: Option<&str>,
    iat: Option<f64>,
    target: &TargetUri,
    now: u64,
) -> Result<Checked, Refusal> {
    let jti = jti.ok_or("no jti")?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err("jti length");
    }
    if htm != Some("POST") {
        return Err("htm");
    }
    if !target.matches(htu.ok_or("no htu")?) {
        return Err("htu");
    }
    let iat = iat.filter(|iat| iat.is_finite()).ok_or("no iat")?;
    let now = now as f64;
    if iat < now - MAX_AGE_SECS as f64 || iat > now + MAX_FUTURE_SECS as f64 {
        return Err("iat");
    }
    let mut hashed = Context::new(&SHA256);
    hashed.update(thumbprint);
    hashed.update(jti.as_bytes());
    let mut replay = [0u8; 16];
    replay.copy_from_slice(&hashed.finish().as_ref()[..16]);
    Ok(Checked {
        jkt: URL_SAFE_NO_PAD.encode(thumbprint),
        replay,
    })
}

/// `DpopPolicy::check`'s steps, in its order, with `backend` checking the
/// signature.
fn local_check(
    proof: &str,
    backend: Backend,
    target: &TargetUri,
    now: u64,
) -> Result<Checked, Refusal> {
    if proof.len() > MAX_PROOF_LEN || !proof.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("not a compact JWS");
    }
    let mut parts = proof.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err("not three parts");
    };
    let header_json = decode(header_b64)?;
    let header: LocalHeader<'_> = serde_json::from_slice(&header_json).map_err(|_| "header")?;
    if !header.typ.as_deref().is_some_and(is_dpop_jwt) {
        return Err("typ");
    }
    if header.crit.is_some() {
        return Err("crit");
    }
    let alg = header.alg.as_deref().and_then(Alg::named).ok_or("alg")?;
    let (key, thumbprint) = local_key(header.jwk.as_ref().ok_or("no jwk")?, alg)?;
    let signature = decode(signature_b64)?;
    let signed = &proof[..header_b64.len() + 1 + claims_b64.len()];
    if !verify(backend, &key, alg, signed.as_bytes(), &signature) {
        return Err("signature");
    }
    let claims_json = decode(claims_b64)?;
    let claims: LocalClaims<'_> = serde_json::from_slice(&claims_json).map_err(|_| "claims")?;
    check_claims(
        &thumbprint,
        claims.jti.as_deref(),
        claims.htm.as_deref(),
        claims.htu.as_deref(),
        claims.iat,
        target,
        now,
    )
}

/// The claims as jsonwebtoken hands them over (`DeserializeOwned`).
#[derive(Deserialize)]
struct OwnedClaims {
    jti: Option<String>,
    htm: Option<String>,
    htu: Option<String>,
    iat: Option<f64>,
}

fn jsonwebtoken_alg(alg: Alg) -> Algorithm {
    match alg {
        Alg::Es256 => Algorithm::ES256,
        Alg::EdDsa => Algorithm::EdDSA,
        Alg::Rs256 => Algorithm::RS256,
        Alg::Ps256 => Algorithm::PS256,
    }
}

/// jsonwebtoken's key for a `Jwk`, and its thumbprint as the others
/// compute it (`Jwk::thumbprint` hashes through the installed provider's
/// `key_utils`, which the service's ring provider leaves unimplemented).
/// jsonwebtoken's `Jwk` drops unknown members, so a private key's `d`
/// goes unseen: refusing it would take a second parse.
fn jsonwebtoken_key(jwk: &Jwk, alg: Algorithm) -> Result<(DecodingKey, [u8; 32]), Refusal> {
    let canonical = match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256)
            if ec.curve == EllipticCurve::P256 =>
        {
            format!(
                r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
                ec.x, ec.y
            )
        }
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA)
            if okp.curve == EllipticCurve::Ed25519 =>
        {
            format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{}"}}"#, okp.x)
        }
        (AlgorithmParameters::RSA(rsa), Algorithm::RS256 | Algorithm::PS256) => {
            format!(r#"{{"e":"{}","kty":"RSA","n":"{}"}}"#, rsa.e, rsa.n)
        }
        _ => return Err("kty does not fit alg"),
    };
    let key = DecodingKey::from_jwk(jwk).map_err(|_| "jwk")?;
    Ok((key, sha256(&canonical)))
}

/// The check through jsonwebtoken: the header for its `jwk`, the key, then
/// `decode` (which parses the header again, checks the signature and hands
/// the claims over) with every registered-claim check off but the
/// algorithm; the rest as the service does it.
fn jsonwebtoken_check(
    proof: &str,
    allowed: &[Algorithm],
    target: &TargetUri,
    now: u64,
) -> Result<Checked, Refusal> {
    let header = jsonwebtoken::decode_header(proof).map_err(|_| "header")?;
    if !header.typ.as_deref().is_some_and(is_dpop_jwt) {
        return Err("typ");
    }
    if header.crit.is_some() {
        return Err("crit");
    }
    // One algorithm per Validation: jsonwebtoken refuses a list that mixes
    // families, so the allow-list is checked here.
    if !allowed.contains(&header.alg) {
        return Err("alg");
    }
    let (key, thumbprint) = jsonwebtoken_key(header.jwk.as_ref().ok_or("no jwk")?, header.alg)?;
    let mut validation = Validation::new(header.alg);
    validation.required_spec_claims.clear();
    validation.validate_exp = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<OwnedClaims>(proof, &key, &validation)
        .map_err(|_| "signature or claims")?
        .claims;
    check_claims(
        &thumbprint,
        claims.jti.as_deref(),
        claims.htm.as_deref(),
        claims.htu.as_deref(),
        claims.iat,
        target,
        now,
    )
}

/// One proof per algorithm, and its parts, made before any timing.
struct Fixture {
    alg: Alg,
    proof: String,
    /// The harness's own thumbprint of the key: what every path must find.
    jkt: String,
    /// The header's `jwk`, as JSON text.
    jwk_json: String,
    /// The signing input and the signature, decoded.
    message: Vec<u8>,
    signature: Vec<u8>,
    signature_b64: String,
    key: LocalKey,
}

impl Fixture {
    fn new(dpop_key: &DpopKey) -> Self {
        let alg = Alg::named(dpop_key.alg()).expect("a proof algorithm");
        let proof = dpop_key.proof(HTU);
        let (message, signature_b64) = proof.rsplit_once('.').expect("three parts");
        let header_b64 = message.split('.').next().expect("a header");
        let header: serde_json::Value =
            serde_json::from_slice(&decode(header_b64).unwrap()).unwrap();
        let jwk_json = serde_json::to_string(&header["jwk"]).unwrap();
        let jwk: LocalJwk<'_> = serde_json::from_str(&jwk_json).unwrap();
        let (key, _) = local_key(&jwk, alg).unwrap();
        Self {
            alg,
            jkt: dpop_key.thumbprint(),
            message: message.as_bytes().to_vec(),
            signature: decode(signature_b64).unwrap(),
            signature_b64: signature_b64.to_owned(),
            jwk_json,
            key,
            proof,
        }
    }

    /// jsonwebtoken's algorithm, if the service's ring provider verifies
    /// it: not PS256 (the service never needed it for its own tokens).
    fn jsonwebtoken_alg(&self) -> Option<Algorithm> {
        Some(jsonwebtoken_alg(self.alg)).filter(|alg| *alg != Algorithm::PS256)
    }
}

fn fixtures() -> Vec<Fixture> {
    [
        DpopKey::es256(),
        DpopKey::ed25519(),
        DpopKey::rsa("RS256"),
        DpopKey::rsa("PS256"),
    ]
    .iter()
    .map(Fixture::new)
    .collect()
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs()
}

const BACKENDS: [Backend; 2] = [Backend::Ring, Backend::AwsLc];

/// Every path accepts every proof and finds the harness's thumbprint, and
/// every signature check refuses a signature with one bit changed: so no
/// figure below times a refusal, or a check that checks nothing.
fn agree(fixtures: &[Fixture], policy: &DpopPolicy, target: &TargetUri, now: u64) {
    let allowed: Vec<Algorithm> = fixtures
        .iter()
        .filter_map(Fixture::jsonwebtoken_alg)
        .collect();
    for f in fixtures {
        let service = policy.check(f.proof.as_bytes(), now).expect("service");
        assert_eq!(service.jkt, f.jkt, "{:?}", f.alg);
        for backend in BACKENDS {
            let local = local_check(&f.proof, backend, target, now).expect("local");
            assert_eq!(local.jkt, f.jkt);
            assert_eq!(local.replay, service.replay.key, "the same replay key");
        }
        if f.jsonwebtoken_alg().is_some() {
            let jwt = jsonwebtoken_check(&f.proof, &allowed, target, now).expect("jsonwebtoken");
            assert_eq!(jwt.replay, service.replay.key);
        }
        let key = PublicKey::from_jwk_json(f.jwk_json.as_bytes(), f.alg).expect("service key");
        assert_eq!(key.jkt(), f.jkt);
        let mut bad = f.signature.clone();
        bad[7] ^= 1;
        assert!(key.verify(f.alg, &f.message, &f.signature));
        assert!(!key.verify(f.alg, &f.message, &bad));
        for backend in BACKENDS {
            assert!(verify(backend, &f.key, f.alg, &f.message, &f.signature));
            assert!(!verify(backend, &f.key, f.alg, &f.message, &bad));
        }
    }
}

fn dpop(c: &mut Criterion) {
    ring_provider::install();
    let fixtures = fixtures();
    let now = now();
    let target = TargetUri::parse(HTU).expect("the token endpoint's URL");
    let policy = DpopPolicy::new(
        Alg::ALL.to_vec(),
        MAX_AGE_SECS,
        MAX_FUTURE_SECS,
        NonceMode::Off,
        HTU,
    )
    .expect("a valid token endpoint URL");
    agree(&fixtures, &policy, &target, now);
    let allowed: Vec<Algorithm> = fixtures
        .iter()
        .filter_map(Fixture::jsonwebtoken_alg)
        .collect();

    // The signature check alone: key bytes and decoded signature in, the
    // key parsed on each call.
    let mut group = c.benchmark_group("dpop signature");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for f in &fixtures {
        let name = f.alg.name();
        for backend in BACKENDS {
            group.bench_function(BenchmarkId::new(backend.name(), name), |b| {
                b.iter(|| {
                    assert!(verify(
                        backend,
                        black_box(&f.key),
                        f.alg,
                        &f.message,
                        &f.signature
                    ))
                })
            });
        }
        let key = PublicKey::from_jwk_json(f.jwk_json.as_bytes(), f.alg).expect("service key");
        group.bench_function(BenchmarkId::new("PublicKey::verify (service)", name), |b| {
            b.iter(|| assert!(black_box(&key).verify(f.alg, &f.message, &f.signature)))
        });
        // From the base64url signature, as `decode` calls it: a boxed
        // verifier from the provider, then the signature decoded.
        if let Some(alg) = f.jsonwebtoken_alg() {
            let jwk: Jwk = serde_json::from_str(&f.jwk_json).expect("jsonwebtoken's Jwk");
            let (key, _) = jsonwebtoken_key(&jwk, alg).expect("jsonwebtoken's key");
            group.bench_function(
                BenchmarkId::new("jsonwebtoken::crypto::verify (ring provider)", name),
                |b| {
                    b.iter(|| {
                        assert!(jsonwebtoken::crypto::verify(
                            black_box(&f.signature_b64),
                            &f.message,
                            &key,
                            alg
                        )
                        .expect("verify"))
                    })
                },
            );
        }
    }
    group.finish();

    // The key's parse and RFC 7638 thumbprint alone, from the jwk's JSON.
    let mut group = c.benchmark_group("dpop key + thumbprint");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for f in &fixtures {
        let name = f.alg.name();
        group.bench_function(
            BenchmarkId::new("PublicKey::from_jwk_json (service)", name),
            |b| {
                b.iter(|| {
                    PublicKey::from_jwk_json(black_box(f.jwk_json.as_bytes()), f.alg)
                        .expect("key")
                        .jkt()
                })
            },
        );
        group.bench_function(BenchmarkId::new("local", name), |b| {
            b.iter(|| {
                let jwk: LocalJwk<'_> = serde_json::from_str(black_box(&f.jwk_json)).expect("jwk");
                let (key, thumbprint) = local_key(&jwk, f.alg).expect("key");
                (key, URL_SAFE_NO_PAD.encode(thumbprint))
            })
        });
        if let Some(alg) = f.jsonwebtoken_alg() {
            group.bench_function(
                BenchmarkId::new("jsonwebtoken Jwk + DecodingKey::from_jwk", name),
                |b| {
                    b.iter(|| {
                        let jwk: Jwk = serde_json::from_str(black_box(&f.jwk_json)).expect("jwk");
                        let (key, thumbprint) = jsonwebtoken_key(&jwk, alg).expect("key");
                        (key, URL_SAFE_NO_PAD.encode(thumbprint))
                    })
                },
            );
        }
    }
    group.finish();

    // The whole check, from the header's value to the thumbprint and the
    // replay key.
    let mut group = c.benchmark_group("dpop check");
    group.throughput(Throughput::Elements(1));
    group.measurement_time(Duration::from_secs(3));
    for f in &fixtures {
        let name = f.alg.name();
        group.bench_function(BenchmarkId::new("DpopPolicy::check (service)", name), |b| {
            b.iter(|| {
                policy
                    .check(black_box(f.proof.as_bytes()), now)
                    .expect("the proof passes")
            })
        });
        for backend in BACKENDS {
            group.bench_function(
                BenchmarkId::new(format!("local, {}", backend.name()), name),
                |b| {
                    b.iter(|| {
                        local_check(black_box(&f.proof), backend, &target, now)
                            .expect("the proof passes")
                    })
                },
            );
        }
        if f.jsonwebtoken_alg().is_some() {
            group.bench_function(
                BenchmarkId::new("jsonwebtoken::decode (ring provider)", name),
                |b| {
                    b.iter(|| {
                        jsonwebtoken_check(black_box(&f.proof), &allowed, &target, now)
                            .expect("the proof passes")
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, dpop);
criterion_main!(benches);
