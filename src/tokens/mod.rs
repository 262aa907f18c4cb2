//! Minting the access token (RFC 9068) and the ID token (OpenID Connect Core
//! §2, §3.1.3.6) of one grant.
//!
//! Each key's protected headers are encoded once, at start-up; a token is
//! then one claims serialization, one base64url pass and one signature.

pub mod aws_lc_signer;
pub mod keys;
pub mod ring_provider;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use ring::digest::{digest, SHA256, SHA512};
use serde::ser::{SerializeMap, Serializer};
use serde::Serialize;
use serde_json::{Map, Value};

use self::keys::{alg_name, PublicJwk, SigningKey};
use crate::contract::record::Resource;

/// Claims an ID token's extra `claims` may not set: registered by RFC 7519 or
/// OpenID Connect Core §2, or set by this service.
const REGISTERED_CLAIMS: &[&str] = &[
    "iss",
    "sub",
    "aud",
    "exp",
    "iat",
    "nbf",
    "jti",
    "auth_time",
    "nonce",
    "acr",
    "amr",
    "azp",
    "at_hash",
    "c_hash",
    "s_hash",
    "sid",
    "client_id",
    "scope",
    "grant_id",
    "cnf",
    "typ",
];

/// Why a token could not be minted. Only a defect or a broken key gets here.
#[derive(Debug, thiserror::Error)]
pub enum MintError {
    #[error("no signing key for {0}")]
    NoKey(&'static str),
    #[error("signing failed")]
    Sign,
    #[error("claims could not be serialized: {0}")]
    Serialize(#[from] serde_json::Error),
}

struct ActiveKey {
    key: SigningKey,
    /// `BASE64URL({"alg":..,"typ":"at+jwt","kid":..}) + "."`
    access_header: String,
    /// `BASE64URL({"alg":..,"typ":"JWT","kid":..}) + "."`
    id_header: String,
}

impl ActiveKey {
    fn new(key: SigningKey) -> Self {
        let header = |typ: &str| {
            let json =
                serde_json::json!({"alg": alg_name(key.alg()), "typ": typ, "kid": key.kid()});
            let mut out = URL_SAFE_NO_PAD.encode(json.to_string());
            out.push('.');
            out
        };
        Self {
            access_header: header("at+jwt"),
            id_header: header("JWT"),
            key,
        }
    }

    /// `header.payload.signature`, the JWS compact serialization.
    fn sign(&self, header: &str, claims: &impl Serialize) -> Result<String, MintError> {
        let payload = serde_json::to_vec(claims)?;
        // 4/3 of the payload, the header, and room for the largest (RSA-4096) signature.
        let mut token = String::with_capacity(header.len() + payload.len() * 4 / 3 + 700);
        token.push_str(header);
        URL_SAFE_NO_PAD.encode_string(&payload, &mut token);
        let signature = self
            .key
            .signer()
            .try_sign(token.as_bytes())
            .map_err(|_| MintError::Sign)?;
        token.push('.');
        URL_SAFE_NO_PAD.encode_string(&signature, &mut token);
        Ok(token)
    }
}

/// The tokens of one grant.
pub struct Minted {
    pub access_token: String,
    pub id_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: u64,
}

impl std::fmt::Debug for Minted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Minted")
            .field("access_token", &"[redacted]")
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .field("expires_in", &self.expires_in)
            .finish()
    }
}

/// What tokens are minted from, whatever the grant type: who, with what
/// scope and audience, how they authenticated, and the key the tokens are
/// bound to, if any. A code's record is one way to build it
/// (`crate::grant::authorization_code`); a refresh-token family will be
/// another. Which client, and the grant's ids, come beside it
/// ([`Recipient`], [`GrantIds`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Granted {
    pub sub: String,
    pub scope: String,
    /// RFC 8707 resource(s): the access token's `aud`, else the client's
    /// whole audience. Checked against the client before minting.
    pub resource: Option<Resource>,
    pub auth_time: Option<u64>,
    pub acr: Option<String>,
    pub amr: Option<Vec<String>>,
    /// The ID token's `nonce`, from the authorization request.
    pub nonce: Option<String>,
    /// Extra ID-token claims the login frontend set.
    pub claims: Option<Map<String, Value>>,
    /// The proof-of-possession key the tokens are bound to.
    pub binding: Binding,
}

impl Granted {
    /// Whether the scope asks for an ID token (OpenID Connect Core §3.1.2.1).
    pub fn is_openid(&self) -> bool {
        self.scope.split(' ').any(|s| s == "openid")
    }
}

/// How the access token is bound to its holder; its `token_type` follows.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Binding {
    /// Whoever holds it may use it (RFC 6750).
    #[default]
    Bearer,
    /// Bound to a DPoP key (RFC 9449 §6): the access token carries
    /// `cnf.jkt`, the key's RFC 7638 SHA-256 thumbprint, base64url.
    Dpop { jkt: String },
}

impl Binding {
    /// RFC 6749 §5.1 `token_type` (RFC 9449 §5: `DPoP` for a bound token).
    pub fn token_type(&self) -> &'static str {
        match self {
            Self::Bearer => "Bearer",
            Self::Dpop { .. } => "DPoP",
        }
    }

    fn confirmation(&self) -> Option<Confirmation<'_>> {
        match self {
            Self::Bearer => None,
            Self::Dpop { jkt } => Some(Confirmation { jkt }),
        }
    }
}

/// RFC 7800 `cnf`, as RFC 9449 §6.1 fills it.
#[derive(Serialize)]
struct Confirmation<'a> {
    jkt: &'a str,
}

/// One grant's identity, for the tokens' `jti` and `grant_id`.
pub struct GrantIds<'a> {
    pub grant_id: &'a str,
    pub jti: &'a str,
    pub now: u64,
}

/// What the tokens of one grant take from the client they are issued to.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    pub client_id: &'a str,
    /// The access token's `aud` when the code carries no `resource`.
    pub audience: &'a [String],
    pub access_token_lifetime: std::time::Duration,
    pub id_token_lifetime: std::time::Duration,
    pub id_token_alg: Algorithm,
}

/// Signs tokens with the configured keys.
pub struct TokenMinter {
    issuer: String,
    /// Signs every access token: the first key configured.
    access: ActiveKey,
    /// The first key of each other algorithm, for clients that ask for it.
    others: Vec<ActiveKey>,
    /// Everything the JWKS publishes: signing keys first, then keys kept for
    /// verification only.
    published: Vec<PublicJwk>,
}

impl TokenMinter {
    /// `signing` must not be empty: the first key signs access tokens.
    pub fn new(
        issuer: String,
        signing: Vec<SigningKey>,
        verification_only: Vec<PublicJwk>,
    ) -> Result<Self, MintError> {
        let mut published: Vec<PublicJwk> = signing.iter().map(|k| k.public.clone()).collect();
        // One JWK per kid: a key listed twice (as a signing key and again
        // for verification, as a rotation half-done may leave it) would put
        // two entries with one `kid` in the JWKS, which RFC 7517 §4.5 says
        // should differ.
        for key in verification_only {
            if published.iter().any(|p| p.kid == key.kid) {
                tracing::info!(kid = %key.kid, "a verification key is also a signing key; published once");
            } else {
                published.push(key);
            }
        }
        let mut keys = signing.into_iter().map(ActiveKey::new);
        let access = keys.next().ok_or(MintError::NoKey("access tokens"))?;
        let mut others: Vec<ActiveKey> = Vec::new();
        for key in keys {
            if key.key.alg() != access.key.alg()
                && others.iter().all(|o| o.key.alg() != key.key.alg())
            {
                others.push(key);
            }
        }
        Ok(Self {
            issuer,
            access,
            others,
            published,
        })
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The key that signs ID tokens of `alg`.
    fn key_for(&self, alg: Algorithm) -> Option<&ActiveKey> {
        std::iter::once(&self.access)
            .chain(&self.others)
            .find(|k| k.key.alg() == alg)
    }

    /// Algorithms an ID token can be signed with.
    pub fn algorithms(&self) -> Vec<Algorithm> {
        std::iter::once(&self.access)
            .chain(&self.others)
            .map(|k| k.key.alg())
            .collect()
    }

    pub fn access_token_key(&self) -> &SigningKey {
        &self.access.key
    }

    /// The public keys, as `GET /.well-known/jwks.json` serves them.
    pub fn jwks(&self) -> Value {
        serde_json::json!({ "keys": self.published.iter().map(|k| &k.jwk).collect::<Vec<_>>() })
    }

    /// The tokens of one grant: the access token, and the ID token if the
    /// grant's scope has `openid`.
    pub fn mint(
        &self,
        record: &Granted,
        client: &Recipient<'_>,
        ids: &GrantIds<'_>,
    ) -> Result<Minted, MintError> {
        let access_token = self.mint_access_token(record, client, ids)?;
        let id_token = if record.is_openid() {
            Some(self.mint_id_token(record, client, ids, &access_token)?)
        } else {
            None
        };
        Ok(Minted {
            access_token,
            id_token,
            expires_in: client.access_token_lifetime.as_secs(),
        })
    }

    /// The RFC 9068 access token of one grant, signed with the access-token
    /// key whatever the client's ID-token algorithm. Its `aud` is the
    /// grant's `resource`, which the caller has checked to be within the
    /// client's audience ([`crate::contract::record::check_resource`]), else the
    /// client's whole audience; its `cnf` the grant's key binding, if any.
    pub fn mint_access_token(
        &self,
        record: &Granted,
        client: &Recipient<'_>,
        ids: &GrantIds<'_>,
    ) -> Result<String, MintError> {
        let audience = match &record.resource {
            Some(Resource::One(one)) => Audience::One(one),
            Some(Resource::Many(many)) => Audience::Many(many),
            None => Audience::Many(client.audience),
        };
        let claims = AccessClaims {
            iss: &self.issuer,
            sub: &record.sub,
            aud: audience,
            client_id: client.client_id,
            exp: ids.now + client.access_token_lifetime.as_secs(),
            iat: ids.now,
            jti: ids.jti,
            scope: &record.scope,
            auth_time: record.auth_time,
            acr: record.acr.as_deref(),
            amr: record.amr.as_deref(),
            grant_id: ids.grant_id,
            cnf: record.binding.confirmation(),
        };
        self.access.sign(&self.access.access_header, &claims)
    }

    /// The ID token of one grant, signed with the key of the client's
    /// `id_token_signed_response_alg`; `access_token` is the one issued
    /// alongside it, whose `at_hash` the ID token carries. It carries the
    /// grant's `grant_id` too, so that a relying party can tell a revoked
    /// grant's ID token (docs/token-endpoint.md, "Replays and revocation").
    pub fn mint_id_token(
        &self,
        record: &Granted,
        client: &Recipient<'_>,
        ids: &GrantIds<'_>,
        access_token: &str,
    ) -> Result<String, MintError> {
        let now = ids.now;
        let key = self
            .key_for(client.id_token_alg)
            .ok_or(MintError::NoKey(alg_name(client.id_token_alg)))?;
        let claims = IdClaims {
            iss: &self.issuer,
            sub: &record.sub,
            aud: client.client_id,
            exp: now + client.id_token_lifetime.as_secs(),
            iat: now,
            auth_time: record.auth_time,
            nonce: record.nonce.as_deref(),
            acr: record.acr.as_deref(),
            amr: record.amr.as_deref(),
            at_hash: &at_hash(key.key.alg(), access_token),
            grant_id: ids.grant_id,
            extra: record.claims.as_ref(),
        };
        key.sign(&key.id_header, &claims)
    }
}

/// OpenID Connect Core §3.1.3.6: the left half of the hash of the access
/// token's ASCII octets, with the hash of the ID token's `alg` (SHA-512 for
/// EdDSA over Ed25519, OpenID Connect Core errata 2).
pub fn at_hash(alg: Algorithm, access_token: &str) -> String {
    let hash = match alg {
        Algorithm::EdDSA => digest(&SHA512, access_token.as_bytes()),
        _ => digest(&SHA256, access_token.as_bytes()),
    };
    let bytes = hash.as_ref();
    URL_SAFE_NO_PAD.encode(bytes.split_at(bytes.len() / 2).0)
}

#[derive(Serialize)]
#[serde(untagged)]
enum Audience<'a> {
    One(&'a str),
    Many(&'a [String]),
}

/// RFC 9068 §2.2, plus `grant_id` (see docs/security.md, "What a resource
/// server must check").
#[derive(Serialize)]
struct AccessClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: Audience<'a>,
    client_id: &'a str,
    exp: u64,
    iat: u64,
    jti: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    scope: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    auth_time: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    acr: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    amr: Option<&'a [String]>,
    grant_id: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    cnf: Option<Confirmation<'a>>,
}

/// OpenID Connect Core §2 and §3.1.3.6.
struct IdClaims<'a> {
    iss: &'a str,
    sub: &'a str,
    aud: &'a str,
    exp: u64,
    iat: u64,
    auth_time: Option<u64>,
    nonce: Option<&'a str>,
    acr: Option<&'a str>,
    amr: Option<&'a [String]>,
    at_hash: &'a str,
    grant_id: &'a str,
    extra: Option<&'a Map<String, Value>>,
}

impl Serialize for IdClaims<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("iss", self.iss)?;
        map.serialize_entry("sub", self.sub)?;
        map.serialize_entry("aud", self.aud)?;
        map.serialize_entry("exp", &self.exp)?;
        map.serialize_entry("iat", &self.iat)?;
        if let Some(auth_time) = self.auth_time {
            map.serialize_entry("auth_time", &auth_time)?;
        }
        if let Some(nonce) = self.nonce {
            map.serialize_entry("nonce", nonce)?;
        }
        if let Some(acr) = self.acr {
            map.serialize_entry("acr", acr)?;
        }
        if let Some(amr) = self.amr {
            map.serialize_entry("amr", amr)?;
        }
        map.serialize_entry("azp", self.aud)?;
        map.serialize_entry("at_hash", self.at_hash)?;
        map.serialize_entry("grant_id", self.grant_id)?;
        for (name, value) in self.extra.into_iter().flatten() {
            if !REGISTERED_CLAIMS.contains(&name.as_str()) {
                map.serialize_entry(name, value)?;
            }
        }
        map.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn payload(token: &str) -> Value {
        let part = token.split('.').nth(1).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    fn grant(binding: Binding) -> Granted {
        Granted {
            sub: "alice".into(),
            scope: "openid".into(),
            resource: None,
            auth_time: None,
            acr: None,
            amr: None,
            nonce: None,
            claims: None,
            binding,
        }
    }

    /// A bearer grant's access token has no `cnf`; a DPoP-bound one carries
    /// `cnf.jkt` (RFC 9449 §6.1), its `token_type` is `DPoP`, and the ID
    /// token is the same either way (no `cnf`).
    #[test]
    fn the_binding_sets_cnf_and_the_token_type() {
        crate::tokens::ring_provider::install();
        let minter = TokenMinter::new(
            "https://id.test".into(),
            vec![SigningKey::ephemeral()],
            vec![],
        )
        .unwrap();
        let audience = ["https://api.test".to_owned()];
        let recipient = Recipient {
            client_id: "c",
            audience: &audience,
            access_token_lifetime: std::time::Duration::from_secs(60),
            id_token_lifetime: std::time::Duration::from_secs(60),
            id_token_alg: minter.access_token_key().alg(),
        };
        let ids = GrantIds {
            grant_id: "g",
            jti: "j",
            now: 1_700_000_000,
        };
        let bearer = grant(Binding::Bearer);
        assert_eq!(bearer.binding.token_type(), "Bearer");
        let minted = minter.mint(&bearer, &recipient, &ids).unwrap();
        assert!(payload(&minted.access_token).get("cnf").is_none());

        let bound = grant(Binding::Dpop {
            jkt: "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I".into(),
        });
        assert_eq!(bound.binding.token_type(), "DPoP");
        let minted = minter.mint(&bound, &recipient, &ids).unwrap();
        assert_eq!(
            payload(&minted.access_token)["cnf"],
            serde_json::json!({"jkt": "0ZcOCORZNYy-DWpqq30jZyJGHTN0d2HglBV3uiguA4I"})
        );
        assert!(payload(&minted.id_token.unwrap()).get("cnf").is_none());
    }
}
