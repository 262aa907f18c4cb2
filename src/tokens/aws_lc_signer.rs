//! Signers on `aws-lc-rs`: what the minter signs ES256 and EdDSA with,
//! chosen by measurement over `ring` (BENCHMARKS.md). `ring` still parses and
//! validates keys, signs RS256 (it measured faster there: 741 against 900 µs,
//! BENCHMARKS.md), and computes every digest.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer};
use jsonwebtoken::Algorithm;

/// A parsed private key, ready to sign.
pub enum AwsLcSigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl AwsLcSigner {
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Self, Error> {
        let rejected = |_| Error::from(ErrorKind::InvalidKeyFormat);
        Ok(match alg {
            Algorithm::ES256 => Self::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der)
                    .map_err(rejected)?,
            ),
            Algorithm::EdDSA => {
                Self::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
            }
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        })
    }
}

impl Signer<Vec<u8>> for AwsLcSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match self {
            Self::Es256(k) => k
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            Self::EdDsa(k) => Ok(k.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for AwsLcSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::ES256,
            Self::EdDsa(_) => Algorithm::EdDSA,
        }
    }
}
