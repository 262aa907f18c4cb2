//! DPoP proofs as a client makes them (RFC 9449 §4.2), with the test's own
//! keys, and the key's thumbprint computed here (RFC 7638), independently
//! of the service's code: what the tests hold the service's `cnf.jkt` to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
    RSA_PKCS1_SHA256, RSA_PSS_SHA256,
};
use serde_json::{json, Map, Value};

/// A client's DPoP key pair.
pub struct DpopKey {
    pair: Pair,
    alg: &'static str,
    jwk: Value,
}

enum Pair {
    Ec(EcdsaKeyPair),
    Ed(Ed25519KeyPair),
    Rsa(RsaKeyPair),
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

impl DpopKey {
    /// A fresh P-256 key, for ES256.
    pub fn es256() -> Self {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("generate P-256");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("parse P-256");
        let point = pair.public_key().as_ref();
        let jwk = json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64(&point[1..33]),
            "y": b64(&point[33..65]),
        });
        Self {
            pair: Pair::Ec(pair),
            alg: "ES256",
            jwk,
        }
    }

    /// A fresh Ed25519 key, for EdDSA.
    pub fn ed25519() -> Self {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("generate Ed25519");
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("parse Ed25519");
        let jwk = json!({"kty": "OKP", "crv": "Ed25519", "x": b64(pair.public_key().as_ref())});
        Self {
            pair: Pair::Ed(pair),
            alg: "EdDSA",
            jwk,
        }
    }

    /// The fixture RSA-2048 key, for `alg` RS256 or PS256.
    pub fn rsa(alg: &'static str) -> Self {
        let pem = std::fs::read_to_string(crate::fixture("rsa-2048.test-only.pem"))
            .expect("read the RSA fixture");
        let der = pem::parse(pem).expect("PEM").into_contents();
        let pair = RsaKeyPair::from_pkcs8(&der)
            .or_else(|_| RsaKeyPair::from_der(&der))
            .expect("RSA key");
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
        let jwk = json!({"kty": "RSA", "n": b64(&public.n), "e": b64(&public.e)});
        Self {
            pair: Pair::Rsa(pair),
            alg,
            jwk,
        }
    }

    pub fn alg(&self) -> &'static str {
        self.alg
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        self.jwk.clone()
    }

    /// RFC 7638 §3: SHA-256 over the required members, in lexicographic
    /// order, without whitespace; base64url.
    pub fn thumbprint(&self) -> String {
        thumbprint(&self.jwk)
    }

    /// The JOSE header of a proof: `typ`, `alg`, `jwk`.
    pub fn header(&self) -> Value {
        json!({"typ": "dpop+jwt", "alg": self.alg, "jwk": self.jwk})
    }

    /// A proof for `POST htu`, now, with a fresh `jti`.
    pub fn proof(&self, htu: &str) -> String {
        self.sign(&self.header(), &claims(htu))
    }

    /// A proof for `POST htu` carrying `nonce`.
    pub fn proof_with_nonce(&self, htu: &str, nonce: &str) -> String {
        let mut claims = claims(htu);
        claims["nonce"] = json!(nonce);
        self.sign(&self.header(), &claims)
    }

    /// `header` and `claims`, serialised and signed with this key, whatever
    /// they say.
    pub fn sign(&self, header: &Value, claims: &Value) -> String {
        self.sign_raw(
            serde_json::to_string(header).expect("JSON").as_bytes(),
            serde_json::to_string(claims).expect("JSON").as_bytes(),
        )
    }

    /// The raw header and payload bytes, base64url-encoded and signed.
    pub fn sign_raw(&self, header: &[u8], claims: &[u8]) -> String {
        let input = format!("{}.{}", b64(header), b64(claims));
        let rng = SystemRandom::new();
        let signature = match &self.pair {
            Pair::Ec(pair) => pair
                .sign(&rng, input.as_bytes())
                .expect("sign")
                .as_ref()
                .to_vec(),
            Pair::Ed(pair) => pair.sign(input.as_bytes()).as_ref().to_vec(),
            Pair::Rsa(pair) => {
                let mut signature = vec![0; pair.public().modulus_len()];
                let padding: &dyn ring::signature::RsaEncoding = if self.alg == "PS256" {
                    &RSA_PSS_SHA256
                } else {
                    &RSA_PKCS1_SHA256
                };
                pair.sign(padding, &rng, input.as_bytes(), &mut signature)
                    .expect("sign");
                signature
            }
        };
        format!("{input}.{}", b64(&signature))
    }
}

/// The claims of a proof for `POST htu`, now, with a fresh `jti`.
pub fn claims(htu: &str) -> Value {
    let mut jti = [0u8; 16];
    SystemRandom::new().fill(&mut jti).expect("random");
    json!({
        "jti": b64(&jti),
        "htm": "POST",
        "htu": htu,
        "iat": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs(),
    })
}

/// RFC 7638 thumbprint of a public JWK (EC, OKP or RSA).
pub fn thumbprint(jwk: &Value) -> String {
    let required: &[&str] = match jwk["kty"].as_str() {
        Some("EC") => &["crv", "kty", "x", "y"],
        Some("OKP") => &["crv", "kty", "x"],
        Some("RSA") => &["e", "kty", "n"],
        other => panic!("no thumbprint for kty {other:?}"),
    };
    // serde_json's map keeps its keys sorted: the canonical order.
    let members: Map<String, Value> = required
        .iter()
        .map(|name| ((*name).to_owned(), jwk[*name].clone()))
        .collect();
    let canonical = serde_json::to_string(&members).expect("JSON");
    b64(ring::digest::digest(&ring::digest::SHA256, canonical.as_bytes()).as_ref())
}
