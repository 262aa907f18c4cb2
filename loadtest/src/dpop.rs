//! DPoP proofs (RFC 9449 §4.2) for `loadgen run --dpop`, signed before the
//! measured window so the generator's own signing is not charged to the
//! service: ES256 (ring), one key per simulated client, a fresh proof with
//! its own `jti` per request.
//!
//! A proof is `BASE64URL(header) . BASE64URL(payload) . BASE64URL(r || s)`:
//! - header `{"typ":"dpop+jwt","alg":"ES256","jwk":{"kty":"EC","crv":"P-256","x":…,"y":…}}`,
//!   encoded once per key;
//! - payload `{"jti":…,"htm":"POST","htu":…,"iat":…}`, `jti` 128 random bits.
//!
//! Its `iat` is when it was signed, so the service must accept proofs as old
//! as the run is long (`TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS`; loadtest/run.sh
//! raises it, see loadtest/README.md).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};

use crate::plan::{insert_header, Job};

/// One client's key, with what every proof it signs repeats.
struct ClientKey {
    pair: EcdsaKeyPair,
    /// `BASE64URL(header)` followed by `.`: the start of every proof.
    header_dot: String,
}

/// Signs the proofs of one run.
pub struct ProofSigner {
    keys: Vec<ClientKey>,
    /// `"POST"` and the `htu`, as the payload's JSON tail after `jti`.
    payload_middle: String,
    rng: SystemRandom,
}

impl ProofSigner {
    /// `keys` fresh P-256 keys (at least one), for proofs of `POST htu`.
    pub fn new(htu: &str, keys: usize) -> Result<Self, String> {
        let rng = SystemRandom::new();
        let keys = (0..keys.max(1))
            .map(|_| {
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                    .map_err(|_| "cannot generate a P-256 key".to_owned())?;
                let pair = EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_FIXED_SIGNING,
                    pkcs8.as_ref(),
                    &rng,
                )
                .map_err(|e| format!("cannot load the generated P-256 key: {e}"))?;
                let header = format!(
                    r#"{{"typ":"dpop+jwt","alg":"ES256","jwk":{}}}"#,
                    public_jwk(&pair)?
                );
                Ok(ClientKey {
                    header_dot: format!("{}.", URL_SAFE_NO_PAD.encode(header)),
                    pair,
                })
            })
            .collect::<Result<Vec<_>, String>>()?;
        // serde_json quotes and escapes the URL as JSON wants it.
        let htu = serde_json::to_string(htu).map_err(|e| e.to_string())?;
        Ok(Self {
            keys,
            payload_middle: format!(r#","htm":"POST","htu":{htu},"iat":"#),
            rng,
        })
    }

    /// The RFC 7638 thumbprint of key `index` (modulo the key count): what
    /// the access token's `cnf.jkt` must be for a proof signed with it.
    #[cfg(test)]
    pub fn thumbprint(&self, index: usize) -> Option<String> {
        let key = self.keys.get(index % self.keys.len())?;
        thumbprint(key.pair.public_key().as_ref())
    }

    /// A fresh proof, signed by key `index` (modulo the key count), issued at
    /// `iat` (seconds since the epoch).
    pub fn proof(&self, index: usize, iat: u64) -> Result<String, String> {
        let key = self
            .keys
            .get(index % self.keys.len())
            .ok_or("no DPoP key")?;
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| "the system RNG failed".to_owned())?;
        let payload = format!(
            r#"{{"jti":"{}"{}{iat}}}"#,
            URL_SAFE_NO_PAD.encode(jti),
            self.payload_middle
        );
        let mut proof = key.header_dot.clone();
        URL_SAFE_NO_PAD.encode_string(payload, &mut proof);
        let signature = key
            .pair
            .sign(&self.rng, proof.as_bytes())
            .map_err(|_| "ES256 signing failed".to_owned())?;
        proof.push('.');
        URL_SAFE_NO_PAD.encode_string(signature.as_ref(), &mut proof);
        Ok(proof)
    }

    /// Give every job of the plan its own proof (a `DPoP` header), signed
    /// now, on every core: this is the generator's cost, and it is paid
    /// before the window opens. Job `i` uses key `i` modulo the key count,
    /// as if the connections' clients took turns.
    pub fn sign_all(&self, jobs: &mut [Job]) -> Result<(), String> {
        let iat = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_err(|e| e.to_string())?
            .as_secs();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let chunk = jobs.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = jobs
                .chunks_mut(chunk)
                .enumerate()
                .map(|(n, part)| {
                    scope.spawn(move || {
                        for (offset, job) in part.iter_mut().enumerate() {
                            let proof = self.proof(n * chunk + offset, iat)?;
                            insert_header(&mut job.request, "DPoP", &proof);
                        }
                        Ok::<_, String>(())
                    })
                })
                .collect();
            workers.into_iter().try_for_each(|w| {
                w.join()
                    .map_err(|_| "a signing thread panicked".to_owned())?
            })
        })
    }
}

/// The public JWK of `pair` (RFC 7518 §6.2.1), members in RFC 7638's order,
/// so the same text is also the thumbprint's input.
fn public_jwk(pair: &EcdsaKeyPair) -> Result<String, String> {
    let (x, y) = coordinates(pair.public_key().as_ref())?;
    Ok(format!(
        r#"{{"crv":"P-256","kty":"EC","x":"{}","y":"{}"}}"#,
        URL_SAFE_NO_PAD.encode(x),
        URL_SAFE_NO_PAD.encode(y)
    ))
}

/// `x` and `y` of an uncompressed SEC1 point (`04 || x || y`), as ring
/// gives a P-256 public key.
fn coordinates(point: &[u8]) -> Result<(&[u8], &[u8]), String> {
    match point {
        [4, rest @ ..] if rest.len() == 64 => Ok(rest.split_at(32)),
        _ => Err("not an uncompressed P-256 point".into()),
    }
}

/// RFC 7638: `BASE64URL(SHA-256({"crv","kty","x","y"} in that order))`;
/// what the service puts in `cnf.jkt`. The run does not need it (the
/// service computes it), the tests check proofs against it.
#[cfg(test)]
fn thumbprint(point: &[u8]) -> Option<String> {
    let (x, y) = coordinates(point).ok()?;
    thumbprint_of(&URL_SAFE_NO_PAD.encode(x), &URL_SAFE_NO_PAD.encode(y))
}

#[cfg(test)]
fn thumbprint_of(x: &str, y: &str) -> Option<String> {
    use ring::digest::{digest, SHA256};
    let members = format!(r#"{{"crv":"P-256","kty":"EC","x":"{x}","y":"{y}"}}"#);
    Some(URL_SAFE_NO_PAD.encode(digest(&SHA256, members.as_bytes())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{UnparsedPublicKey, ECDSA_P256_SHA256_FIXED};
    use serde_json::Value;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    }

    /// RFC 9449 §4.1's example key and the `cnf.jkt` of §6.1, made from it.
    #[test]
    fn the_thumbprint_is_rfc_9449s() {
        assert_eq!(
            thumbprint_of(
                "l8tFrhx-34tV3hRICRDY9zCkDlpBhF42UQUfWVAWBFs",
                "9VE4jf_Ok_o64zbTTlcuNJajHmt6v9TDVrU0CdvGRDA"
            )
            .as_deref(),
            Some("0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I")
        );
    }

    /// A proof is what RFC 9449 §4.2 asks for, verifies with the key in its
    /// own header, and each has its own `jti`.
    #[test]
    fn a_proof_verifies_with_its_header_key_and_has_its_own_jti() {
        let signer = ProofSigner::new("https://id.loadtest/oauth/token", 2).expect("signer");
        let mut jtis = std::collections::HashSet::new();
        for index in 0..4 {
            let proof = signer.proof(index, 1_700_000_000).expect("proof");
            let parts: Vec<&str> = proof.split('.').collect();
            assert_eq!(parts.len(), 3);
            let header = decode(parts[0]);
            assert_eq!(header["typ"], "dpop+jwt");
            assert_eq!(header["alg"], "ES256");
            let jwk = &header["jwk"];
            assert_eq!(
                jwk.as_object().expect("jwk").len(),
                4,
                "public members only"
            );
            assert_eq!(
                (jwk["kty"].as_str(), jwk["crv"].as_str()),
                (Some("EC"), Some("P-256"))
            );
            let payload = decode(parts[1]);
            assert_eq!(payload["htm"], "POST");
            assert_eq!(payload["htu"], "https://id.loadtest/oauth/token");
            assert_eq!(payload["iat"], 1_700_000_000);
            let jti = payload["jti"].as_str().expect("jti");
            assert_eq!(URL_SAFE_NO_PAD.decode(jti).expect("base64url").len(), 16);
            assert!(jtis.insert(jti.to_owned()), "a jti repeated");

            let coordinate = |name: &str| {
                URL_SAFE_NO_PAD
                    .decode(jwk[name].as_str().expect("coordinate"))
                    .expect("base64url")
            };
            let mut point = vec![4u8];
            point.extend(coordinate("x"));
            point.extend(coordinate("y"));
            let signature = URL_SAFE_NO_PAD.decode(parts[2]).expect("base64url");
            assert_eq!(signature.len(), 64, "r || s, not DER");
            UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &point)
                .verify(format!("{}.{}", parts[0], parts[1]).as_bytes(), &signature)
                .expect("the signature verifies");
            assert_eq!(thumbprint(&point), signer.thumbprint(index));
        }
        assert_ne!(signer.thumbprint(0), signer.thumbprint(1), "two keys");
        assert_eq!(signer.thumbprint(0), signer.thumbprint(2), "taken in turn");
    }

    /// `sign_all` puts one `DPoP` header in each request's head, each proof
    /// distinct.
    #[test]
    fn every_job_gets_its_own_proof_in_its_head() {
        let signer = ProofSigner::new("http://127.0.0.1:8080/oauth/token", 3).expect("signer");
        let mut jobs: Vec<Job> = (0..50)
            .map(|_| Job {
                kind: crate::plan::Kind::Redeem,
                code: None,
                request: crate::http1::post_form("h", "/oauth/token", "a=b"),
            })
            .collect();
        signer.sign_all(&mut jobs).expect("signed");
        let mut proofs = std::collections::HashSet::new();
        for job in &jobs {
            let text = String::from_utf8(job.request.clone()).expect("utf-8");
            let (head, body) = text.split_once("\r\n\r\n").expect("head");
            assert_eq!(body, "a=b");
            let lines: Vec<&str> = head.lines().filter(|l| l.starts_with("DPoP: ")).collect();
            assert_eq!(lines.len(), 1, "{head}");
            assert!(proofs.insert(lines[0].to_owned()));
        }
    }
}
