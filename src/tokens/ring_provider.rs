//! A `ring`-backed [`CryptoProvider`] for `jsonwebtoken`, and the signers it
//! builds. The minter holds one signer per key, built once at start-up:
//! `jsonwebtoken::encode` would re-parse the PKCS#8 key on every call, which
//! for RSA costs more than the signature itself (see BENCHMARKS.md).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind};
use jsonwebtoken::signature::{self, Signer, Verifier};
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, RsaPublicKeyComponents, UnparsedPublicKey,
    ECDSA_P256_SHA256_FIXED, ECDSA_P256_SHA256_FIXED_SIGNING, ED25519, RSA_PKCS1_2048_8192_SHA256,
    RSA_PKCS1_SHA256,
};

/// Install [`RING_PROVIDER`] as `jsonwebtoken`'s process default, unless one
/// is installed already (tests start many apps in one process).
pub fn install() {
    let _already_installed = RING_PROVIDER.install_default();
}

/// `jsonwebtoken`'s crypto on `ring`: ES256, EdDSA (Ed25519) and RS256.
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory,
    verifier_factory,
    key_utils: KeyUtils::new_unimplemented(),
};

fn signer_factory(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>, Error> {
    let signer: Box<dyn JwtSigner> = RingSigner::from_pkcs8(*alg, key.as_bytes())?;
    Ok(signer)
}

/// A parsed private key, ready to sign.
pub enum RingSigner {
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
    Rs256(RsaKeyPair),
}

impl RingSigner {
    pub fn from_pkcs8(alg: Algorithm, der: &[u8]) -> Result<Box<Self>, Error> {
        let rejected = |_| Error::from(ErrorKind::InvalidKeyFormat);
        Ok(Box::new(match alg {
            Algorithm::ES256 => Self::Es256(
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    der,
                    &SystemRandom::new(),
                )
                .map_err(rejected)?,
            ),
            Algorithm::EdDSA => {
                Self::EdDsa(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(rejected)?)
            }
            // PKCS#8, or PKCS#1 as `EncodingKey::from_rsa_pem` may hold it.
            Algorithm::RS256 => Self::Rs256(
                RsaKeyPair::from_pkcs8(der)
                    .or_else(|_| RsaKeyPair::from_der(der))
                    .map_err(rejected)?,
            ),
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        }))
    }

    /// The public key, as ring encodes it: the uncompressed point for P-256,
    /// the 32 raw bytes for Ed25519, DER `RSAPublicKey` for RSA.
    pub fn public_key(&self) -> &[u8] {
        match self {
            Self::Es256(k) => k.public_key().as_ref(),
            Self::EdDsa(k) => k.public_key().as_ref(),
            Self::Rs256(k) => k.public_key().as_ref(),
        }
    }
}

impl Signer<Vec<u8>> for RingSigner {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, signature::Error> {
        match self {
            Self::Es256(k) => k
                .sign(&SystemRandom::new(), msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| signature::Error::new()),
            Self::EdDsa(k) => Ok(k.sign(msg).as_ref().to_vec()),
            Self::Rs256(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), msg, &mut sig)
                    .map_err(|_| signature::Error::new())?;
                Ok(sig)
            }
        }
    }
}

impl JwtSigner for RingSigner {
    fn algorithm(&self) -> Algorithm {
        match self {
            Self::Es256(_) => Algorithm::ES256,
            Self::EdDsa(_) => Algorithm::EdDSA,
            Self::Rs256(_) => Algorithm::RS256,
        }
    }
}

fn verifier_factory(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>, Error> {
    let public = match key.kind() {
        DecodingKeyKind::SecretOrDer(bytes) => PublicKey::Bytes(bytes.clone()),
        DecodingKeyKind::RsaModulusExponent { n, e } => PublicKey::RsaComponents {
            n: n.clone(),
            e: e.clone(),
        },
    };
    match alg {
        Algorithm::ES256 | Algorithm::EdDSA | Algorithm::RS256 => {
            Ok(Box::new(RingVerifier { alg: *alg, public }))
        }
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

enum PublicKey {
    Bytes(Vec<u8>),
    RsaComponents { n: Vec<u8>, e: Vec<u8> },
}

struct RingVerifier {
    alg: Algorithm,
    public: PublicKey,
}

impl Verifier<Vec<u8>> for RingVerifier {
    fn verify(&self, msg: &[u8], sig: &Vec<u8>) -> Result<(), signature::Error> {
        let result = match (&self.public, self.alg) {
            (PublicKey::Bytes(b), Algorithm::ES256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, b).verify(msg, sig)
            }
            (PublicKey::Bytes(b), Algorithm::EdDSA) => {
                UnparsedPublicKey::new(&ED25519, b).verify(msg, sig)
            }
            (PublicKey::Bytes(b), Algorithm::RS256) => {
                UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, b).verify(msg, sig)
            }
            (PublicKey::RsaComponents { n, e }, Algorithm::RS256) => {
                RsaPublicKeyComponents { n, e }.verify(&RSA_PKCS1_2048_8192_SHA256, msg, sig)
            }
            _ => return Err(signature::Error::new()),
        };
        result.map_err(|_| signature::Error::new())
    }
}

impl JwtVerifier for RingVerifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}
