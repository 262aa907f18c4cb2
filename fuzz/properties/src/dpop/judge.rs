//! The independent check: what docs/dpop.md says a policy answers to a
//! `DPoP` header, decided with `ring`, `serde_json`, `base64` and `url`,
//! never with the service's code.

use std::fmt;

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, URL_SAFE_NO_PAD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, ED25519,
    RSA_PKCS1_2048_8192_SHA256, RSA_PSS_2048_8192_SHA256,
};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use token_endpoint::dpop::{MAX_JTI_LEN, MAX_PROOF_LEN};

use super::{Policy, HTU_DIFFERENT, HTU_SAME, MAX_AGE_SECS, MAX_FUTURE_SECS, NONCE_STEP_SECS, NOW};

pub(super) struct Accepted {
    pub(super) thumbprint: [u8; 32],
    pub(super) jti: String,
    pub(super) fresh_nonce: bool,
}

#[derive(Clone, Copy)]
pub(super) enum Refusal {
    Invalid(&'static str),
    NeedsNonce,
}

use Refusal::Invalid;

/// What is decided of a header whatever the policy: refused, or a proof
/// that passes every check but the policy's (its algorithm, and `iat` or
/// the nonce). Decided once per header, for the three policies.
pub(super) struct Judged {
    proof: Result<Valid, Refusal>,
    /// The `htu` is not one whose verdict is known here ([`HTU_SAME`],
    /// [`HTU_DIFFERENT`]) but could name the endpoint: the rest is judged
    /// as if it did.
    pub(super) htu_unsure: bool,
}

struct Valid {
    alg: String,
    thumbprint: [u8; 32],
    jti: String,
    iat: f64,
    /// The `nonce` claim, if it is text.
    nonce: Option<String>,
}

/// What docs/dpop.md says of `header`, decided here.
pub(super) fn judge(header: &[u8]) -> Judged {
    let mut htu_unsure = false;
    let proof = valid(header, &mut htu_unsure);
    Judged { proof, htu_unsure }
}

impl Judged {
    /// What `policy` answers.
    pub(super) fn under(&self, policy: &Policy) -> Result<Accepted, Refusal> {
        let proof = self.proof.as_ref().map_err(|refusal| *refusal)?;
        if !policy.algorithms.contains(&proof.alg.as_str()) {
            return Err(Invalid("alg not accepted by the policy"));
        }
        let fresh_nonce = if policy.nonces {
            let Some(nonce) = &proof.nonce else {
                return Err(Refusal::NeedsNonce);
            };
            if *nonce == policy.nonce(NOW) || *nonce == policy.nonce(NOW + NONCE_STEP_SECS) {
                false
            } else if *nonce == policy.nonce(NOW - NONCE_STEP_SECS) {
                true
            } else {
                return Err(Refusal::NeedsNonce);
            }
        } else {
            let now = NOW as f64;
            if proof.iat < now - MAX_AGE_SECS as f64 || proof.iat > now + MAX_FUTURE_SECS as f64 {
                return Err(Invalid("iat outside the window"));
            }
            false
        };
        Ok(Accepted {
            thumbprint: proof.thumbprint,
            jti: proof.jti.clone(),
            fresh_nonce,
        })
    }
}

/// Every check but the policy's.
fn valid(header: &[u8], htu_unsure: &mut bool) -> Result<Valid, Refusal> {
    if header.len() > MAX_PROOF_LEN {
        return Err(Invalid("longer than the limit"));
    }
    let text = std::str::from_utf8(header).map_err(|_| Invalid("not UTF-8"))?;
    if !text.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Invalid("not printable ASCII"));
    }
    let parts: Vec<&str> = text.split('.').collect();
    let [header_b64, claims_b64, signature_b64] = parts.as_slice() else {
        return Err(Invalid("not three parts"));
    };
    let header_json = canonical_b64url(header_b64).ok_or(Invalid("header not base64url"))?;
    let claims_json = canonical_b64url(claims_b64).ok_or(Invalid("payload not base64url"))?;
    let signature = canonical_b64url(signature_b64).ok_or(Invalid("signature not base64url"))?;

    let header =
        json_object(&header_json, HEADER_READ).ok_or(Invalid("header not a JSON object"))?;
    let typ = text_member(&header, "typ")?.ok_or(Invalid("typ missing or not text"))?;
    if !matches!(
        typ.to_ascii_lowercase().as_str(),
        "dpop+jwt" | "application/dpop+jwt"
    ) {
        return Err(Invalid("typ is not dpop+jwt"));
    }
    if unique(&header, "crit")?.is_some() {
        return Err(Invalid("crit is present"));
    }
    let alg = text_member(&header, "alg")?.ok_or(Invalid("alg missing or not text"))?;
    if !["ES256", "EdDSA", "RS256", "PS256"].contains(&alg) {
        return Err(Invalid("alg not one a policy may accept"));
    }
    let jwk = match unique(&header, "jwk")? {
        Some(Json::Object(members)) => members,
        Some(Json::Null) | None => return Err(Invalid("no jwk")),
        Some(_) => return Err(Invalid("jwk not an object")),
    };
    let key = public_key(jwk, alg)?;
    let signed = format!("{header_b64}.{claims_b64}");
    if !key.verifies(alg, signed.as_bytes(), &signature) {
        return Err(Invalid("the signature does not verify with the jwk"));
    }

    let claims =
        json_object(&claims_json, CLAIMS_READ).ok_or(Invalid("payload not a JSON object"))?;
    let jti = text_member(&claims, "jti")?.ok_or(Invalid("jti missing or not text"))?;
    if jti.is_empty() || jti.len() > MAX_JTI_LEN {
        return Err(Invalid("jti not 1 to 256 bytes"));
    }
    if text_member(&claims, "htm")? != Some("POST") {
        return Err(Invalid("htm is not POST"));
    }
    let htu = text_member(&claims, "htu")?.ok_or(Invalid("htu missing or not text"))?;
    match htu_verdict(htu) {
        Htu::Same => {}
        Htu::Different => return Err(Invalid("htu does not name the token endpoint")),
        Htu::Unsure => *htu_unsure = true,
    }
    let iat = match unique(&claims, "iat")? {
        Some(Json::Number(iat)) => *iat,
        _ => return Err(Invalid("iat missing or not a number")),
    };
    let nonce = match unique(&claims, "nonce")? {
        Some(Json::Text(nonce)) => Some(nonce.clone()),
        _ => None,
    };
    Ok(Valid {
        alg: alg.to_owned(),
        thumbprint: key.thumbprint,
        jti: jti.to_owned(),
        iat,
        nonce,
    })
}

enum Htu {
    Same,
    Different,
    Unsure,
}

/// The listed spellings are known; any other is `Different` if it cannot
/// name the endpoint (what is checked here is necessary, not sufficient),
/// else `Unsure`.
fn htu_verdict(htu: &str) -> Htu {
    if HTU_SAME.contains(&htu) {
        return Htu::Same;
    }
    if HTU_DIFFERENT.contains(&htu) || !could_name_the_endpoint(htu) {
        return Htu::Different;
    }
    Htu::Unsure
}

/// Necessary for `htu` to name `https://id.test/oauth/token`: printable
/// ASCII without `\`; `https`, no user information, host `id.test`, port
/// 443; a path that, percent-decoded and without dot segments, is
/// `/oauth/token`.
fn could_name_the_endpoint(htu: &str) -> bool {
    if !htu.bytes().all(|b| b.is_ascii_graphic()) || htu.contains('\\') {
        return false;
    }
    let Ok(url) = url::Url::parse(htu) else {
        return false;
    };
    if url.scheme() != "https"
        || !url.username().is_empty()
        || url.password().is_some()
        || url.host_str() != Some("id.test")
        || url.port_or_known_default() != Some(443)
    {
        return false;
    }
    let mut path = Vec::new();
    let mut bytes = url.path().bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            path.push(b);
            continue;
        }
        let hex: Vec<u8> = bytes.by_ref().take(2).collect();
        match std::str::from_utf8(&hex)
            .ok()
            .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            Some(decoded) if hex.len() == 2 => path.push(decoded),
            _ => return false,
        }
    }
    let Ok(path) = String::from_utf8(path) else {
        return false;
    };
    let resolved = if path.contains("/.") {
        match url::Url::parse(&format!("https://id.test{path}")) {
            Ok(again) => again.path().to_owned(),
            Err(_) => return false,
        }
    } else {
        path
    };
    resolved == "/oauth/token"
}

/// Base64url decoding that accepts padding and stray bits; canonical
/// means the text is the unpadded encoding of what it decodes to.
pub(super) const LENIENT_URL_SAFE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::URL_SAFE,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);
pub(super) const LENIENT_STANDARD: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

fn canonical_b64url(text: &str) -> Option<Vec<u8>> {
    let bytes = LENIENT_URL_SAFE.decode(text).ok()?;
    (URL_SAFE_NO_PAD.encode(&bytes) == text).then_some(bytes)
}

/// A JSON value as far as the check reads it: the members it reads of an
/// object, every occurrence kept (duplicates too); what it does not read
/// is skipped as the service skips it (serde's `IgnoredAny`: any depth,
/// numbers unchecked).
#[derive(Debug, Clone, PartialEq)]
enum Json {
    Null,
    Bool,
    Number(f64),
    Text(String),
    Array,
    Object(Vec<(String, Json)>),
}

/// The members read of an object (`read`), and of the objects they hold
/// (`nested`: the `jwk`'s); nothing deeper.
#[derive(Clone, Copy)]
struct Reads {
    read: &'static [&'static str],
    nested: &'static [&'static str],
}

const HEADER_READ: Reads = Reads {
    read: &["typ", "alg", "jwk", "crit"],
    nested: &JWK_READ,
};
const CLAIMS_READ: Reads = Reads {
    read: &["jti", "htm", "htu", "iat", "nonce"],
    nested: &[],
};

impl<'de> DeserializeSeed<'de> for Reads {
    type Value = Json;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Json, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Reads {
    type Value = Json;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("JSON")
    }
    fn visit_bool<E>(self, _: bool) -> Result<Json, E> {
        Ok(Json::Bool)
    }
    fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
        Ok(Json::Number(v as f64))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
        Ok(Json::Number(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Json, E> {
        Ok(Json::Text(v.to_owned()))
    }
    fn visit_unit<E>(self) -> Result<Json, E> {
        Ok(Json::Null)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Json::Array)
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
        let mut members = Vec::new();
        while let Some(name) = map.next_key::<String>()? {
            if self.read.contains(&name.as_str()) {
                let inner = Reads {
                    read: self.nested,
                    nested: &[],
                };
                members.push((name, map.next_value_seed(inner)?));
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(Json::Object(members))
    }
}

/// The members read of a JSON document that is one object.
fn json_object(bytes: &[u8], reads: Reads) -> Option<Vec<(String, Json)>> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = reads.deserialize(&mut deserializer).ok()?;
    deserializer.end().ok()?;
    match value {
        Json::Object(members) => Some(members),
        _ => None,
    }
}

/// The member `name` of an object, refused if it is there twice.
fn unique<'j>(members: &'j [(String, Json)], name: &str) -> Result<Option<&'j Json>, Refusal> {
    let mut found = members.iter().filter(|(n, _)| n == name).map(|(_, v)| v);
    let first = found.next();
    if found.next().is_some() {
        return Err(Invalid("a member the check reads is there twice"));
    }
    Ok(first)
}

/// A text member; `None` if absent, `null` or of another type.
fn text_member<'j>(members: &'j [(String, Json)], name: &str) -> Result<Option<&'j str>, Refusal> {
    Ok(match unique(members, name)? {
        Some(Json::Text(text)) => Some(text),
        _ => None,
    })
}

/// The members of a `jwk` the check reads, whatever the key type: the
/// public ones, and the private ones it refuses.
const JWK_READ: [&str; 14] = [
    "kty", "crv", "x", "y", "n", "e", "d", "p", "q", "dp", "dq", "qi", "oth", "k",
];

struct Verifier {
    kind: VerifierKind,
    thumbprint: [u8; 32],
}

enum VerifierKind {
    P256(Vec<u8>),
    Ed25519(Vec<u8>),
    Rsa { n: Vec<u8>, e: Vec<u8> },
}

impl Verifier {
    fn verifies(&self, alg: &str, message: &[u8], signature: &[u8]) -> bool {
        match (&self.kind, alg) {
            (VerifierKind::P256(point), "ES256") => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            (VerifierKind::Ed25519(x), "EdDSA") => UnparsedPublicKey::new(&ED25519, x)
                .verify(message, signature)
                .is_ok(),
            (VerifierKind::Rsa { n, e }, "RS256") => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (VerifierKind::Rsa { n, e }, "PS256") => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// RFC 7638: the required members, in lexicographic order, no whitespace.
fn thumbprint(members: &[(&str, &str)]) -> [u8; 32] {
    let body: Vec<String> = members
        .iter()
        .map(|(name, value)| {
            let value = serde_json::to_string(value).unwrap_or_default();
            format!("\"{name}\":{value}")
        })
        .collect();
    let canonical = format!("{{{}}}", body.join(","));
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, canonical.as_bytes()).as_ref());
    out
}

/// The key of a `jwk` for a proof signed with `alg`, as docs/dpop.md
/// says: public, of `alg`'s key type, every member well formed.
fn public_key(jwk: &[(String, Json)], alg: &str) -> Result<Verifier, Refusal> {
    for name in JWK_READ {
        unique(jwk, name)?;
    }
    if ["d", "p", "q", "dp", "dq", "qi", "oth", "k"]
        .iter()
        .any(|name| jwk.iter().any(|(n, _)| n == name))
    {
        return Err(Invalid("the jwk has a private or symmetric member"));
    }
    let kty = text_member(jwk, "kty")?.ok_or(Invalid("kty missing or not text"))?;
    let needed = match alg {
        "ES256" => "EC",
        "EdDSA" => "OKP",
        _ => "RSA",
    };
    if kty != needed {
        return Err(Invalid("kty is not the algorithm's key type"));
    }
    let b64_member = |name: &str| -> Result<(&str, Vec<u8>), Refusal> {
        let text = text_member(jwk, name)?.ok_or(Invalid("a key member missing or not text"))?;
        let bytes = canonical_b64url(text).ok_or(Invalid("a key member not base64url"))?;
        Ok((text, bytes))
    };
    match alg {
        "ES256" => {
            if text_member(jwk, "crv")? != Some("P-256") {
                return Err(Invalid("crv is not P-256"));
            }
            let (x_text, x) = b64_member("x")?;
            let (y_text, y) = b64_member("y")?;
            if x.len() != 32 || y.len() != 32 {
                return Err(Invalid("x or y is not 32 bytes"));
            }
            let point = [&[4u8][..], &x, &y].concat();
            Ok(Verifier {
                kind: VerifierKind::P256(point),
                thumbprint: thumbprint(&[
                    ("crv", "P-256"),
                    ("kty", "EC"),
                    ("x", x_text),
                    ("y", y_text),
                ]),
            })
        }
        "EdDSA" => {
            if text_member(jwk, "crv")? != Some("Ed25519") {
                return Err(Invalid("crv is not Ed25519"));
            }
            let (x_text, x) = b64_member("x")?;
            if x.len() != 32 {
                return Err(Invalid("x is not 32 bytes"));
            }
            Ok(Verifier {
                kind: VerifierKind::Ed25519(x),
                thumbprint: thumbprint(&[("crv", "Ed25519"), ("kty", "OKP"), ("x", x_text)]),
            })
        }
        _ => {
            let (n_text, n) = b64_member("n")?;
            let (e_text, e) = b64_member("e")?;
            if n.first().is_none_or(|b| *b == 0) || e.first().is_none_or(|b| *b == 0) {
                return Err(Invalid("n or e empty or with a leading zero octet"));
            }
            if !(2048..=8192).contains(&(n.len() * 8)) {
                return Err(Invalid("not a 2048 to 8192-bit RSA key"));
            }
            Ok(Verifier {
                kind: VerifierKind::Rsa { n, e },
                thumbprint: thumbprint(&[("e", e_text), ("kty", "RSA"), ("n", n_text)]),
            })
        }
    }
}
