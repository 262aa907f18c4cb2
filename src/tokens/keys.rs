//! Signing and verification keys: loaded from PEM once at start-up, published
//! as a JWKS, identified by their RFC 7638 thumbprint.

use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::Algorithm;
use ring::digest::{digest, SHA256};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

use super::aws_lc_signer::AwsLcSigner;
use super::ring_provider::RingSigner;

/// Why a key file could not be used. Never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {reason}")]
    Invalid {
        path: PathBuf,
        reason: KeyFormatError,
    },
}

/// What is wrong with a key's contents.
#[derive(Debug, thiserror::Error)]
pub enum KeyFormatError {
    #[error("not a PEM file ({0})")]
    NotPem(#[from] pem::PemError),
    #[error(
        "{0} is not PKCS#8; convert it with `openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.p8`"
    )]
    NotPkcs8(String),
    #[error("encrypted PKCS#8 keys are not supported; provide the key unencrypted, readable by the service only")]
    Encrypted,
    #[error("expected a {expected} PEM block, found {found}")]
    UnexpectedBlock {
        expected: &'static str,
        found: String,
    },
    #[error("not a P-256, Ed25519 or RSA (2048 to 8192 bits) PKCS#8 private key")]
    UnsupportedPrivateKey,
    #[error("aws-lc-rs refuses this {0} key")]
    SignerRefuses(&'static str),
    #[error("P-256 public key is not an uncompressed point")]
    NotUncompressedPoint,
    #[error("Ed25519 public key is not 32 bytes")]
    Ed25519Length,
    #[error("not a DER RSAPublicKey")]
    NotRsaPublicKey,
    #[error("not a SubjectPublicKeyInfo")]
    NotSpki,
    #[error("EC public key is not on P-256")]
    NotP256,
    #[error("public key is not P-256, Ed25519 or RSA")]
    UnsupportedPublicKey,
    #[error("unsupported algorithm {0:?}")]
    UnsupportedAlgorithm(Algorithm),
}

/// A public key in JWK form, with the algorithm it verifies.
#[derive(Clone, Debug)]
pub struct PublicJwk {
    pub kid: String,
    pub alg: Algorithm,
    /// The full JWK (`kty`, `kid`, `alg`, `use` and the key's members).
    pub jwk: Value,
}

/// A private key this service signs with, parsed once.
pub struct SigningKey {
    pub public: PublicJwk,
    signer: Box<dyn JwtSigner + Send + Sync>,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.public.kid)
            .field("alg", &self.public.alg)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// Read a PKCS#8 PEM private key (`-----BEGIN PRIVATE KEY-----`): P-256
    /// (ES256), Ed25519 (EdDSA) or RSA of at least 2048 bits (RS256).
    pub fn from_pem_file(path: &Path) -> Result<Self, KeyError> {
        let pem = read_pem(path)?;
        let invalid = |reason| invalid_key(path, reason);
        match pem.tag() {
            "PRIVATE KEY" => Self::from_pkcs8(pem.contents()).map_err(invalid),
            "EC PRIVATE KEY" | "RSA PRIVATE KEY" => {
                Err(invalid(KeyFormatError::NotPkcs8(pem.tag().to_owned())))
            }
            "ENCRYPTED PRIVATE KEY" => Err(invalid(KeyFormatError::Encrypted)),
            other => Err(invalid(KeyFormatError::UnexpectedBlock {
                expected: "PRIVATE KEY",
                found: other.to_owned(),
            })),
        }
    }

    /// A fresh P-256 key that lives as long as the process.
    pub fn ephemeral() -> Self {
        let rng = SystemRandom::new();
        // Generating a P-256 key from the system RNG fails only if the OS RNG
        // does, and then nothing in this service could work.
        #[allow(clippy::expect_used)]
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the system RNG works");
        #[allow(clippy::expect_used)]
        Self::from_pkcs8(pkcs8.as_ref()).expect("a freshly generated P-256 key parses")
    }

    pub fn from_pkcs8(der: &[u8]) -> Result<Self, KeyFormatError> {
        // ring validates the key and yields its public half. The signer is
        // the faster backend for the algorithm, by `cargo bench --bench
        // signing` (BENCHMARKS.md): ring for RS256, aws-lc-rs for EdDSA (3x)
        // and ES256 (equal or slightly ahead).
        for alg in [Algorithm::ES256, Algorithm::EdDSA, Algorithm::RS256] {
            if let Ok(parsed) = RingSigner::from_pkcs8(alg, der) {
                let public = public_jwk(alg, parsed.public_key())?;
                let signer: Box<dyn JwtSigner + Send + Sync> = match alg {
                    Algorithm::RS256 => parsed,
                    _ => Box::new(
                        AwsLcSigner::from_pkcs8(alg, der)
                            .map_err(|_| KeyFormatError::SignerRefuses(alg_name(alg)))?,
                    ),
                };
                return Ok(Self { public, signer });
            }
        }
        Err(KeyFormatError::UnsupportedPrivateKey)
    }

    pub fn kid(&self) -> &str {
        &self.public.kid
    }

    pub fn alg(&self) -> Algorithm {
        self.public.alg
    }

    pub fn signer(&self) -> &dyn JwtSigner {
        self.signer.as_ref()
    }
}

/// Read a key kept for verification only: a PKCS#8 private key (its public
/// half is published) or an SPKI public key (`-----BEGIN PUBLIC KEY-----`).
pub fn verification_key_from_pem_file(path: &Path) -> Result<PublicJwk, KeyError> {
    let pem = read_pem(path)?;
    let invalid = |reason| invalid_key(path, reason);
    match pem.tag() {
        "PUBLIC KEY" => spki_to_jwk(pem.contents()).map_err(invalid),
        "PRIVATE KEY" => SigningKey::from_pkcs8(pem.contents())
            .map(|k| k.public)
            .map_err(invalid),
        other => Err(invalid(KeyFormatError::UnexpectedBlock {
            expected: "PUBLIC KEY or PRIVATE KEY",
            found: other.to_owned(),
        })),
    }
}

/// The one PEM block of the file at `path`.
fn read_pem(path: &Path) -> Result<pem::Pem, KeyError> {
    let bytes = std::fs::read(path).map_err(|source| KeyError::Read {
        path: path.to_owned(),
        source,
    })?;
    pem::parse(&bytes).map_err(|e| invalid_key(path, e.into()))
}

fn invalid_key(path: &Path, reason: KeyFormatError) -> KeyError {
    KeyError::Invalid {
        path: path.to_owned(),
        reason,
    }
}

/// Whether `path` is a PEM file holding a private key (of any kind), as far
/// as its first block says; false if it cannot be read or parsed (loading
/// it reports that).
pub fn is_private_key_file(path: &Path) -> bool {
    std::fs::read(path)
        .ok()
        .and_then(|bytes| pem::parse(bytes).ok())
        .is_some_and(|pem| pem.tag().contains("PRIVATE KEY"))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The JWK of a public key as `ring` encodes it, with its RFC 7638 `kid`.
fn public_jwk(alg: Algorithm, public: &[u8]) -> Result<PublicJwk, KeyFormatError> {
    // RFC 7638 §3.2: the required members only, in lexicographic order, no
    // whitespace. Building the string by hand keeps that order explicit.
    let (members, canonical) = match alg {
        Algorithm::ES256 => {
            let point = public
                .strip_prefix(&[0x04])
                .filter(|p| p.len() == 64)
                .ok_or(KeyFormatError::NotUncompressedPoint)?;
            let (x, y) = point.split_at(32);
            let (x, y) = (b64(x), b64(y));
            let canonical = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
            (
                json!({"kty": "EC", "crv": "P-256", "x": x, "y": y}),
                canonical,
            )
        }
        Algorithm::EdDSA => {
            if public.len() != 32 {
                return Err(KeyFormatError::Ed25519Length);
            }
            let x = b64(public);
            let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
            (json!({"kty": "OKP", "crv": "Ed25519", "x": x}), canonical)
        }
        Algorithm::RS256 => {
            let (n, e) = rsa_public_components(public)?;
            let (n, e) = (b64(&n), b64(&e));
            let canonical = format!(r#"{{"e":"{e}","kty":"RSA","n":"{n}"}}"#);
            (json!({"kty": "RSA", "n": n, "e": e}), canonical)
        }
        other => return Err(KeyFormatError::UnsupportedAlgorithm(other)),
    };
    let kid = b64(digest(&SHA256, canonical.as_bytes()).as_ref());
    let mut jwk = members;
    if let Value::Object(map) = &mut jwk {
        map.insert("kid".into(), Value::String(kid.clone()));
        map.insert("alg".into(), json!(alg_name(alg)));
        map.insert("use".into(), json!("sig"));
    }
    Ok(PublicJwk { kid, alg, jwk })
}

/// The JOSE name of an algorithm (`ES256`, `EdDSA`, `RS256`).
pub fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::ES256 => "ES256",
        Algorithm::EdDSA => "EdDSA",
        Algorithm::RS256 => "RS256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        _ => "unsupported",
    }
}

/// Parse a supported JOSE algorithm name.
pub fn parse_alg(name: &str) -> Option<Algorithm> {
    match name {
        "ES256" => Some(Algorithm::ES256),
        "EdDSA" => Some(Algorithm::EdDSA),
        "RS256" => Some(Algorithm::RS256),
        _ => None,
    }
}

const OID_EC_PUBLIC_KEY: &[u64] = &[1, 2, 840, 10045, 2, 1];
const OID_P256: &[u64] = &[1, 2, 840, 10045, 3, 1, 7];
const OID_ED25519: &[u64] = &[1, 3, 101, 112];
const OID_RSA: &[u64] = &[1, 2, 840, 113549, 1, 1, 1];

/// `SubjectPublicKeyInfo` (RFC 5280 §4.1.2.7) to JWK.
fn spki_to_jwk(der: &[u8]) -> Result<PublicJwk, KeyFormatError> {
    use simple_asn1::{from_der, ASN1Block};
    let not_spki = || KeyFormatError::NotSpki;
    let blocks = from_der(der).map_err(|_| not_spki())?;
    let [ASN1Block::Sequence(_, outer)] = blocks.as_slice() else {
        return Err(not_spki());
    };
    let [ASN1Block::Sequence(_, algorithm), ASN1Block::BitString(_, _, key)] = outer.as_slice()
    else {
        return Err(not_spki());
    };
    let oid_of = |block: Option<&ASN1Block>| match block {
        Some(ASN1Block::ObjectIdentifier(_, oid)) => oid.as_vec::<u64>().ok(),
        _ => None,
    };
    let alg_oid = oid_of(algorithm.first()).ok_or_else(not_spki)?;
    if alg_oid == OID_EC_PUBLIC_KEY {
        if oid_of(algorithm.get(1)).as_deref() != Some(OID_P256) {
            return Err(KeyFormatError::NotP256);
        }
        public_jwk(Algorithm::ES256, key)
    } else if alg_oid == OID_ED25519 {
        public_jwk(Algorithm::EdDSA, key)
    } else if alg_oid == OID_RSA {
        public_jwk(Algorithm::RS256, key)
    } else {
        Err(KeyFormatError::UnsupportedPublicKey)
    }
}

/// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
fn rsa_public_components(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>), KeyFormatError> {
    use simple_asn1::{from_der, ASN1Block};
    let bad = || KeyFormatError::NotRsaPublicKey;
    let blocks = from_der(der).map_err(|_| bad())?;
    let [ASN1Block::Sequence(_, fields)] = blocks.as_slice() else {
        return Err(bad());
    };
    let [ASN1Block::Integer(_, n), ASN1Block::Integer(_, e)] = fields.as_slice() else {
        return Err(bad());
    };
    let unsigned =
        |i: &simple_asn1::BigInt| i.to_biguint().map(|u| u.to_bytes_be()).ok_or_else(bad);
    Ok((unsigned(n)?, unsigned(e)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7638 §3.1's example key has the thumbprint the RFC gives.
    #[test]
    fn rfc7638_example_thumbprint() {
        let n = "0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
        let n = URL_SAFE_NO_PAD.decode(n).unwrap();
        let n = simple_asn1::BigUint::from_bytes_be(&n);
        let der = simple_asn1::to_der(&simple_asn1::ASN1Block::Sequence(
            0,
            vec![
                simple_asn1::ASN1Block::Integer(0, n.into()),
                simple_asn1::ASN1Block::Integer(0, 65537.into()),
            ],
        ))
        .unwrap();
        let jwk = public_jwk(Algorithm::RS256, &der).unwrap();
        assert_eq!(jwk.kid, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
    }

    #[test]
    fn ephemeral_key_is_es256_with_a_thumbprint_kid() {
        let key = SigningKey::ephemeral();
        assert_eq!(key.alg(), Algorithm::ES256);
        assert_eq!(key.kid().len(), 43);
        assert_eq!(key.public.jwk["kid"], key.kid());
        assert!(!format!("{key:?}").contains("signer"));
    }
}
