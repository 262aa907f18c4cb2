//! The proof's key: the JOSE header's `jwk` (RFC 7517), public only; its
//! RFC 7638 thumbprint; and the signature check, on `aws-lc-rs` for EdDSA
//! and `ring` for the others (chosen by measurement, `cargo bench --bench
//! dpop`: BENCHMARKS.md, "DPoP proof verification").

use std::borrow::Cow;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::digest::{digest, SHA256};
use ring::signature::{
    RsaPublicKeyComponents, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED, RSA_PKCS1_2048_8192_SHA256,
    RSA_PSS_2048_8192_SHA256,
};
use serde::Deserialize;

use super::member::{Member, Present};

/// A proof's signature algorithm (RFC 7518 names). Only asymmetric ones:
/// a MAC, or `none`, proves nothing about who holds the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Alg {
    Es256,
    EdDsa,
    Rs256,
    Ps256,
}

impl Alg {
    pub const ALL: [Alg; 4] = [Self::Es256, Self::EdDsa, Self::Rs256, Self::Ps256];

    pub fn name(self) -> &'static str {
        match self {
            Self::Es256 => "ES256",
            Self::EdDsa => "EdDSA",
            Self::Rs256 => "RS256",
            Self::Ps256 => "PS256",
        }
    }

    pub fn named(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|alg| alg.name() == name)
    }

    /// The key type (`kty`) this algorithm signs with.
    fn key_type(self) -> &'static str {
        match self {
            Self::Es256 => "EC",
            Self::EdDsa => "OKP",
            Self::Rs256 | Self::Ps256 => "RSA",
        }
    }
}

/// The `jwk` header member as sent: the public members of the key types a
/// proof may use, and every private member of any key type, to refuse them.
/// Other members (`kid`, `use`, `alg`, …) are ignored. A member given twice
/// is refused by the parser.
#[derive(Deserialize)]
pub(super) struct RawJwk<'a> {
    #[serde(borrow)]
    kty: Option<Member<'a>>,
    #[serde(borrow)]
    crv: Option<Member<'a>>,
    #[serde(borrow)]
    x: Option<Member<'a>>,
    #[serde(borrow)]
    y: Option<Member<'a>>,
    #[serde(borrow)]
    n: Option<Member<'a>>,
    #[serde(borrow)]
    e: Option<Member<'a>>,
    #[serde(default)]
    d: Present,
    #[serde(default)]
    p: Present,
    #[serde(default)]
    q: Present,
    #[serde(default)]
    dp: Present,
    #[serde(default)]
    dq: Present,
    #[serde(default)]
    qi: Present,
    #[serde(default)]
    oth: Present,
    #[serde(default)]
    k: Present,
}

/// A public key a proof may be signed with, its members decoded.
pub struct PublicKey {
    kind: KeyKind,
    /// RFC 7638 SHA-256 thumbprint, raw.
    thumbprint: [u8; 32],
}

enum KeyKind {
    /// P-256, as `04 || x || y`.
    P256([u8; 65]),
    Ed25519([u8; 32]),
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
}

/// Why a `jwk` cannot be a proof's key.
pub type KeyError = Cow<'static, str>;

impl PublicKey {
    /// The key `raw` describes, for a proof signed with `alg`: public, of
    /// `alg`'s key type, every member well formed (canonical base64url of
    /// the right length).
    pub(super) fn from_jwk(raw: &RawJwk<'_>, alg: Alg) -> Result<Self, KeyError> {
        let private = [
            ("d", raw.d),
            ("p", raw.p),
            ("q", raw.q),
            ("dp", raw.dp),
            ("dq", raw.dq),
            ("qi", raw.qi),
            ("oth", raw.oth),
        ];
        if let Some((name, _)) = private.iter().find(|(_, present)| present.0) {
            return Err(format!(
                "the header's jwk carries private key material ({name}): a proof's key must be a public key"
            )
            .into());
        }
        let kty = member("kty", &raw.kty)?;
        if kty == "oct" || raw.k.0 {
            return Err(
                "the header's jwk is a symmetric key (kty oct): a proof's key must be a public key"
                    .into(),
            );
        }
        if kty != alg.key_type() {
            return Err(format!(
                "the header's jwk has kty {}, which cannot sign alg {} (it needs kty {})",
                shown(kty),
                alg.name(),
                alg.key_type()
            )
            .into());
        }
        match alg {
            Alg::Es256 => {
                let crv = member("crv", &raw.crv)?;
                if crv != "P-256" {
                    return Err(format!(
                        "the header's jwk has crv {}; ES256 needs crv P-256",
                        shown(crv)
                    )
                    .into());
                }
                let (x_text, y_text) = (member("x", &raw.x)?, member("y", &raw.y)?);
                let x: [u8; 32] = fixed("x", x_text)?;
                let y: [u8; 32] = fixed("y", y_text)?;
                // SEC 1 uncompressed: 04 || x || y.
                let mut point = [4u8; 65];
                for (to, from) in point.iter_mut().skip(1).zip(x.iter().chain(&y)) {
                    *to = *from;
                }
                let canonical =
                    format!(r#"{{"crv":"P-256","kty":"EC","x":"{x_text}","y":"{y_text}"}}"#);
                Ok(Self::new(KeyKind::P256(point), &canonical))
            }
            Alg::EdDsa => {
                let crv = member("crv", &raw.crv)?;
                if crv != "Ed25519" {
                    return Err(format!(
                        "the header's jwk has crv {}; EdDSA proofs are accepted with crv Ed25519 only",
                        shown(crv)
                    )
                    .into());
                }
                let x_text = member("x", &raw.x)?;
                let x: [u8; 32] = fixed("x", x_text)?;
                let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x_text}"}}"#);
                Ok(Self::new(KeyKind::Ed25519(x), &canonical))
            }
            Alg::Rs256 | Alg::Ps256 => {
                let (n_text, e_text) = (member("n", &raw.n)?, member("e", &raw.e)?);
                let n = unsigned("n", n_text)?;
                let e = unsigned("e", e_text)?;
                let bits = n.len() * 8;
                if !(2048..=8192).contains(&bits) {
                    return Err(format!(
                        "the header's jwk is a {bits}-bit RSA key; proofs need 2048 to 8192 bits"
                    )
                    .into());
                }
                let canonical = format!(r#"{{"e":"{e_text}","kty":"RSA","n":"{n_text}"}}"#);
                Ok(Self::new(KeyKind::Rsa { n, e }, &canonical))
            }
        }
    }

    /// [`Self::from_jwk`] on a `jwk` given alone, as JSON. Not used by the
    /// service: benches/dpop.rs times the key's parse and thumbprint apart
    /// from the rest of the check, and `RawJwk` is private to the module.
    #[doc(hidden)]
    pub fn from_jwk_json(json: &[u8], alg: Alg) -> Result<Self, KeyError> {
        let raw: RawJwk<'_> = serde_json::from_slice(json)
            .map_err(|_| "the jwk is not a JSON object of the expected members")?;
        Self::from_jwk(&raw, alg)
    }

    fn new(kind: KeyKind, canonical: &str) -> Self {
        let mut thumbprint = [0u8; 32];
        thumbprint.copy_from_slice(digest(&SHA256, canonical.as_bytes()).as_ref());
        Self { kind, thumbprint }
    }

    /// RFC 7638 SHA-256 thumbprint, raw.
    pub fn thumbprint(&self) -> &[u8; 32] {
        &self.thumbprint
    }

    /// RFC 7638 SHA-256 thumbprint, base64url: the tokens' `cnf.jkt`.
    pub fn jkt(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.thumbprint)
    }

    /// Whether `signature` over `message` verifies with this key and `alg`
    /// (the key was built for `alg`: [`Self::from_jwk`]).
    pub fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match (&self.kind, alg) {
            (KeyKind::P256(point), Alg::Es256) => {
                UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
            // aws-lc-rs: about 15% less per proof than ring, with the
            // same checks (RFC 8032 section 5.1.7: S < L, then [S]B - [k]A
            // compared to R encoded, no cofactor). ES256 measured even
            // on both, so it stays on ring.
            (KeyKind::Ed25519(x), Alg::EdDsa) => {
                aws_lc_rs::signature::UnparsedPublicKey::new(&aws_lc_rs::signature::ED25519, x)
                    .verify(message, signature)
                    .is_ok()
            }
            (KeyKind::Rsa { n, e }, Alg::Rs256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PKCS1_2048_8192_SHA256, message, signature)
                .is_ok(),
            (KeyKind::Rsa { n, e }, Alg::Ps256) => RsaPublicKeyComponents { n, e }
                .verify(&RSA_PSS_2048_8192_SHA256, message, signature)
                .is_ok(),
            _ => false,
        }
    }
}

/// A required member of the `jwk`, a string.
fn member<'a>(name: &'static str, value: &'a Option<Member<'_>>) -> Result<&'a str, KeyError> {
    match value {
        None => Err(format!("the header's jwk has no {name}").into()),
        Some(value) => value
            .text()
            .ok_or_else(|| format!("the header's jwk member {name} is not a string").into()),
    }
}

/// A value of the header shown in a description: short, and within the
/// characters RFC 6749 section 5.2 allows in `error_description`
/// (printable ASCII but `"` and `\`); others are shown as `?`.
pub(super) fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(32)
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' {
                c
            } else {
                '?'
            }
        })
        .collect();
    if value.chars().count() > 32 {
        out.push_str("...");
    }
    format!("'{out}'")
}

/// A member that is canonical base64url of exactly `N` bytes.
fn fixed<const N: usize>(name: &str, text: &str) -> Result<[u8; N], KeyError> {
    let bytes = decode(name, text)?;
    <[u8; N]>::try_from(bytes.as_slice()).map_err(|_| {
        format!(
            "the header's jwk member {name} is {} bytes; it must be {N}",
            bytes.len()
        )
        .into()
    })
}

/// An RSA integer (RFC 7518 §6.3.1): canonical base64url, big-endian,
/// without a leading zero octet (which would change the key's thumbprint
/// without changing the key).
fn unsigned(name: &str, text: &str) -> Result<Vec<u8>, KeyError> {
    let bytes = decode(name, text)?;
    match bytes.first() {
        None => Err(format!("the header's jwk member {name} is empty").into()),
        Some(0) => Err(format!(
            "the header's jwk member {name} starts with a zero octet (RFC 7518 section 6.3.1 forbids it)"
        )
        .into()),
        Some(_) => Ok(bytes),
    }
}

fn decode(name: &str, text: &str) -> Result<Vec<u8>, KeyError> {
    if text.len() > 2048 {
        return Err(format!("the header's jwk member {name} is too long").into());
    }
    URL_SAFE_NO_PAD.decode(text).map_err(|_| {
        format!("the header's jwk member {name} is not canonical base64url without padding").into()
    })
}
