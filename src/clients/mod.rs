//! The client registry: which clients may redeem codes, how each
//! authenticates, and what its tokens look like. Loaded once at start-up from
//! a TOML file (docs/token-endpoint.md, "Client registry").

pub mod origin;
pub mod redirect;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use jsonwebtoken::Algorithm;
use ring::digest::{digest, SHA256};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use self::redirect::RedirectUri;
use crate::grant::GrantType;
use crate::tokens::keys::{alg_name, parse_alg};
use crate::tokens::Recipient;

/// How a client authenticates at the token endpoint (RFC 7591 §2
/// `token_endpoint_auth_method`).
#[derive(Clone, PartialEq, Eq)]
pub enum ClientAuth {
    /// A public client: no secret; PKCE is its only proof.
    None,
    /// `Authorization: Basic` with the client secret (RFC 6749 §2.3.1).
    SecretBasic(SecretHash),
    /// `client_secret` in the request body (RFC 6749 §2.3.1).
    SecretPost(SecretHash),
}

impl ClientAuth {
    pub fn method_name(&self) -> &'static str {
        match self {
            Self::None => "none",
            Self::SecretBasic(_) => "client_secret_basic",
            Self::SecretPost(_) => "client_secret_post",
        }
    }
}

impl std::fmt::Debug for ClientAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.method_name())
    }
}

/// SHA-256 of a client secret. Secrets are 256-bit random values generated
/// by `token-endpoint new-client-secret`, so a fast hash is enough to make a
/// leaked registry useless, and keeps authentication off the CPU profile
/// (a password hash would cost milliseconds per request).
#[derive(Clone, PartialEq, Eq)]
pub struct SecretHash([u8; 32]);

impl std::fmt::Debug for SecretHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretHash([redacted])")
    }
}

impl SecretHash {
    pub fn of(secret: &str) -> Self {
        let mut out = [0; 32];
        out.copy_from_slice(digest(&SHA256, secret.as_bytes()).as_ref());
        Self(out)
    }

    fn parse(encoded: &str) -> Result<Self, FieldError> {
        let bad = |problem: &str| FieldError::new("client_secret_sha256", problem);
        let bytes = URL_SAFE_NO_PAD
            .decode(encoded)
            .map_err(|_| bad("is not unpadded base64url"))?;
        let array: [u8; 32] = bytes
            .try_into()
            .map_err(|_| bad("is not 32 bytes (a SHA-256 digest)"))?;
        Ok(Self(array))
    }

    pub fn encoded(&self) -> String {
        URL_SAFE_NO_PAD.encode(self.0)
    }

    /// Constant-time: how long it takes says nothing about how close `secret` came.
    pub fn matches(&self, secret: &str) -> bool {
        Self::of(secret).0.ct_eq(&self.0).into()
    }
}

/// A registered client.
#[derive(Debug, Clone)]
pub struct Client {
    pub client_id: String,
    pub auth: ClientAuth,
    /// Whether codes bound with the `plain` PKCE method may be redeemed.
    pub allow_plain_pkce: bool,
    /// RFC 9449 §5.2 `dpop_bound_access_tokens`: every token request must
    /// carry a DPoP proof, so its tokens are always bound to a key.
    pub dpop_bound_access_tokens: bool,
    /// The access token's `aud` when the code carries no `resource`.
    pub audience: Vec<String>,
    /// What a code's `resource` (RFC 8707) may name: the entries of
    /// `audience` that are absolute URIs without a fragment (RFC 8707 §2).
    pub resource_indicators: Vec<String>,
    /// Web origins a browser may redeem this client's codes from (CORS), as
    /// browsers serialize them ([`crate::clients::origin::normalize`]). Empty: no
    /// browser origin may.
    pub allowed_cors_origins: Vec<String>,
    /// Where the stand-in login page (`/dev/authorize`) may send this
    /// client's codes ([`Client::allows_redirect_uri`]). The token endpoint
    /// itself compares the record's `redirect_uri`, which the real frontend
    /// checked.
    pub redirect_uris: Vec<RedirectUri>,
    pub access_token_lifetime: Duration,
    pub id_token_lifetime: Duration,
    pub id_token_alg: Algorithm,
    /// The grant types it may use at the token endpoint (RFC 7591 §2
    /// `grant_types`); others are `unauthorized_client`.
    pub grant_types: Vec<GrantType>,
}

/// Every registered client, by `client_id`.
#[derive(Debug, Clone, Default)]
pub struct ClientRegistry {
    clients: HashMap<String, Arc<Client>>,
    /// Every origin some client allows: a CORS preflight names no client.
    cors_origins: HashSet<String>,
}

/// Why the registry file was refused. Names the file, the client and the
/// field (or the line), never a secret.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("{path}: cannot read: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {error}")]
    InFile {
        path: String,
        error: Box<RegistryError>,
    },
    /// Not TOML of the registry's shape: where, and what.
    #[error("{0}")]
    Syntax(String),
    #[error("client {client_id:?}: {error}")]
    Client {
        client_id: String,
        error: FieldError,
    },
    #[error("client {0:?} is listed twice")]
    Duplicate(String),
    #[error("no clients are registered ([[clients]] tables)")]
    Empty,
}

/// One field of a client's entry that cannot be used, and why.
#[derive(Debug, thiserror::Error)]
#[error("{field} {problem}")]
pub struct FieldError {
    pub field: String,
    pub problem: String,
}

impl FieldError {
    fn new(field: impl Into<String>, problem: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            problem: problem.into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RegistryFile {
    #[serde(default)]
    clients: Vec<ClientEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClientEntry {
    client_id: String,
    token_endpoint_auth_method: String,
    client_secret_sha256: Option<String>,
    #[serde(default)]
    allow_plain_pkce: bool,
    #[serde(default)]
    dpop_bound_access_tokens: bool,
    audience: Audience,
    #[serde(default = "default_lifetime")]
    access_token_lifetime: u64,
    #[serde(default = "default_lifetime")]
    id_token_lifetime: u64,
    #[serde(default = "default_alg")]
    id_token_signed_response_alg: String,
    #[serde(default)]
    allowed_cors_origins: Vec<String>,
    #[serde(default)]
    redirect_uris: Vec<String>,
    #[serde(default = "default_grant_types")]
    grant_types: Vec<String>,
}

/// RFC 7591 §2's default for `grant_types`: the code grant alone.
fn default_grant_types() -> Vec<String> {
    vec![GrantType::AuthorizationCode.name().into()]
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Audience {
    One(String),
    Many(Vec<String>),
}

fn default_lifetime() -> u64 {
    300
}

fn default_alg() -> String {
    "ES256".into()
}

/// The origins of the usual local development servers (Vite, Create React
/// App and friends, `python3 -m http.server`), on `localhost` and on
/// `127.0.0.1`: the demo client's `allowed_cors_origins`.
pub const DEMO_ORIGINS: &[&str] = &[
    "http://localhost:5173",
    "http://127.0.0.1:5173",
    "http://localhost:3000",
    "http://127.0.0.1:3000",
    "http://localhost:4200",
    "http://127.0.0.1:4200",
    "http://localhost:8000",
    "http://127.0.0.1:8000",
];

/// Longest lifetime a token may be given: one day.
const MAX_LIFETIME_SECS: u64 = 86_400;

impl ClientRegistry {
    pub fn from_file(path: &Path) -> Result<Self, RegistryError> {
        let text = std::fs::read_to_string(path).map_err(|source| RegistryError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_toml(&text).map_err(|error| RegistryError::InFile {
            path: path.display().to_string(),
            error: Box::new(error),
        })
    }

    pub fn from_toml(text: &str) -> Result<Self, RegistryError> {
        let file: RegistryFile = toml::from_str(text).map_err(|e| locate(text, &e))?;
        let mut clients = HashMap::new();
        for entry in file.clients {
            let id = entry.client_id.clone();
            let client = entry.validate().map_err(|error| RegistryError::Client {
                client_id: id.clone(),
                error,
            })?;
            if clients.insert(id.clone(), Arc::new(client)).is_some() {
                return Err(RegistryError::Duplicate(id));
            }
        }
        if clients.is_empty() {
            return Err(RegistryError::Empty);
        }
        Ok(Self::of(clients))
    }

    fn of(clients: HashMap<String, Arc<Client>>) -> Self {
        let cors_origins = clients
            .values()
            .flat_map(|c| c.allowed_cors_origins.iter().cloned())
            .collect();
        Self {
            clients,
            cors_origins,
        }
    }

    /// The embedded default's clients: `demo` (public, for the usual local
    /// development servers' origins: [`DEMO_ORIGINS`]) and
    /// `demo-confidential` (secret `demo-secret`, `client_secret_basic`).
    pub fn demo() -> Self {
        let demo = |client_id: &str, auth, browser: bool| Client {
            client_id: client_id.into(),
            auth,
            allow_plain_pkce: false,
            dpop_bound_access_tokens: false,
            audience: vec!["https://api.example.com".into()],
            resource_indicators: vec!["https://api.example.com".into()],
            allowed_cors_origins: if browser {
                DEMO_ORIGINS.iter().map(|o| o.to_string()).collect()
            } else {
                Vec::new()
            },
            redirect_uris: if browser {
                DEMO_ORIGINS
                    .iter()
                    .map(|o| format!("{o}/"))
                    // A native app (RFC 8252): loopback, any port (section
                    // 7.3), and a private-use scheme (section 7.1).
                    .chain([
                        "http://127.0.0.1/callback".into(),
                        "com.example.demo:/callback".into(),
                    ])
                    // Constants, each parsed by a test
                    // (`the_demo_registers_every_redirect_uri`).
                    .filter_map(|uri| RedirectUri::parse(uri).ok())
                    .collect()
            } else {
                Vec::new()
            },
            access_token_lifetime: Duration::from_secs(300),
            id_token_lifetime: Duration::from_secs(300),
            id_token_alg: Algorithm::ES256,
            grant_types: vec![GrantType::AuthorizationCode],
        };
        let clients = [
            demo("demo", ClientAuth::None, true),
            demo(
                "demo-confidential",
                ClientAuth::SecretBasic(SecretHash::of("demo-secret")),
                false,
            ),
        ];
        Self::of(
            clients
                .into_iter()
                .map(|c| (c.client_id.clone(), Arc::new(c)))
                .collect(),
        )
    }

    /// Whether some client allows `origin` (a CORS preflight, or an error
    /// found before the client is known, may then be read by that origin).
    pub fn is_cors_origin(&self, origin: &str) -> bool {
        self.cors_origins.contains(origin)
    }

    pub fn get(&self, client_id: &str) -> Option<&Arc<Client>> {
        self.clients.get(client_id)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Client>> {
        self.clients.values()
    }
}

/// A parse error of the registry, with its line and, inside a `[[clients]]`
/// table, which client it is (by position, and by `client_id` when that
/// much could be read): an unknown or a missing field must say where.
fn locate(text: &str, error: &toml::de::Error) -> RegistryError {
    let Some(at) = error.span().map(|span| span.start.min(text.len())) else {
        return RegistryError::Syntax(error.message().to_owned());
    };
    let before = text.get(..at).unwrap_or_default();
    let line = before.matches('\n').count() + 1;
    // The `[[clients]]` headers before the error; a missing field is
    // reported at the table's start, the header itself.
    let headers = before.matches("[[clients]]").count()
        + usize::from(
            text.get(at..)
                .is_some_and(|rest| rest.starts_with("[[clients]]")),
        );
    let client = headers.checked_sub(1).map(|index| {
        let id = toml::from_str::<toml::Table>(text).ok().and_then(|table| {
            table
                .get("clients")?
                .as_array()?
                .get(index)?
                .get("client_id")?
                .as_str()
                .map(str::to_owned)
        });
        match id {
            Some(id) => format!(", client {id:?} (clients[{index}])"),
            None => format!(", clients[{index}]"),
        }
    });
    RegistryError::Syntax(format!(
        "line {line}{}: {}",
        client.unwrap_or_default(),
        error.message()
    ))
}

impl ClientEntry {
    fn validate(self) -> Result<Client, FieldError> {
        if self.client_id.is_empty() || !self.client_id.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            return Err(FieldError::new(
                "client_id",
                "must be non-empty printable ASCII (RFC 6749 Appendix A.1)",
            ));
        }
        let secret = || -> Result<SecretHash, FieldError> {
            SecretHash::parse(self.client_secret_sha256.as_deref().ok_or_else(|| {
                FieldError::new(
                    "client_secret_sha256",
                    "is required for a confidential client",
                )
            })?)
        };
        let auth = match self.token_endpoint_auth_method.as_str() {
            "none" => {
                if self.client_secret_sha256.is_some() {
                    return Err(FieldError::new(
                        "client_secret_sha256",
                        "is set, but a public client (token_endpoint_auth_method = \"none\") has no secret",
                    ));
                }
                ClientAuth::None
            }
            "client_secret_basic" => ClientAuth::SecretBasic(secret()?),
            "client_secret_post" => ClientAuth::SecretPost(secret()?),
            other => {
                return Err(FieldError::new(
                    "token_endpoint_auth_method",
                    format!(
                        "{other:?} is not one of none, client_secret_basic, client_secret_post"
                    ),
                ))
            }
        };
        let audience = match self.audience {
            Audience::One(one) => vec![one],
            Audience::Many(many) => many,
        };
        if audience.is_empty() || audience.iter().any(String::is_empty) {
            return Err(FieldError::new(
                "audience",
                "must name at least one non-empty resource",
            ));
        }
        let lifetime = |name: &str, secs: u64| {
            if (1..=MAX_LIFETIME_SECS).contains(&secs) {
                Ok(Duration::from_secs(secs))
            } else {
                Err(FieldError::new(
                    name,
                    format!("must be 1 to {MAX_LIFETIME_SECS} seconds, got {secs}"),
                ))
            }
        };
        let id_token_alg = parse_alg(&self.id_token_signed_response_alg).ok_or_else(|| {
            FieldError::new(
                "id_token_signed_response_alg",
                format!(
                    "{:?} is not one of ES256, EdDSA, RS256",
                    self.id_token_signed_response_alg
                ),
            )
        })?;
        let resource_indicators = audience
            .iter()
            .filter(|a| is_absolute_uri(a))
            .cloned()
            .collect();
        let mut allowed_cors_origins: Vec<String> = Vec::new();
        for (i, written) in self.allowed_cors_origins.iter().enumerate() {
            let origin = crate::clients::origin::normalize(written).map_err(|e| {
                FieldError::new(
                    format!("allowed_cors_origins[{i}]"),
                    format!("{written:?} {e}"),
                )
            })?;
            if !allowed_cors_origins.contains(&origin) {
                allowed_cors_origins.push(origin);
            }
        }
        let redirect_uris = self
            .redirect_uris
            .into_iter()
            .enumerate()
            .map(|(i, uri)| {
                RedirectUri::parse(uri.as_str()).map_err(|e| {
                    FieldError::new(format!("redirect_uris[{i}]"), format!("{uri:?} {e}"))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut grant_types: Vec<GrantType> = Vec::new();
        for (i, name) in self.grant_types.iter().enumerate() {
            let grant_type = GrantType::named(name).ok_or_else(|| {
                let supported: Vec<&str> = GrantType::ALL.iter().map(|g| g.name()).collect();
                FieldError::new(
                    format!("grant_types[{i}]"),
                    format!(
                        "{name:?} is not a grant type this token endpoint serves ({})",
                        supported.join(", ")
                    ),
                )
            })?;
            if !grant_types.contains(&grant_type) {
                grant_types.push(grant_type);
            }
        }
        if grant_types.is_empty() {
            return Err(FieldError::new(
                "grant_types",
                "is empty: the client could redeem nothing (leave it out for [\"authorization_code\"])",
            ));
        }
        Ok(Client {
            grant_types,
            resource_indicators,
            allowed_cors_origins,
            redirect_uris,
            access_token_lifetime: lifetime("access_token_lifetime", self.access_token_lifetime)?,
            id_token_lifetime: lifetime("id_token_lifetime", self.id_token_lifetime)?,
            client_id: self.client_id,
            auth,
            allow_plain_pkce: self.allow_plain_pkce,
            dpop_bound_access_tokens: self.dpop_bound_access_tokens,
            audience,
            id_token_alg,
        })
    }
}

impl Client {
    /// What the tokens issued to this client take from its registration.
    pub fn recipient(&self) -> Recipient<'_> {
        Recipient {
            client_id: &self.client_id,
            audience: &self.audience,
            access_token_lifetime: self.access_token_lifetime,
            id_token_lifetime: self.id_token_lifetime,
            id_token_alg: self.id_token_alg,
        }
    }

    pub fn id_token_alg_name(&self) -> &'static str {
        alg_name(self.id_token_alg)
    }

    /// Whether a browser at `origin` may redeem this client's codes.
    pub fn allows_origin(&self, origin: &str) -> bool {
        self.allowed_cors_origins.iter().any(|o| o == origin)
    }

    /// Whether the stand-in login page may send this client's code to
    /// `requested`: one of its redirect URIs exactly, or a loopback one on
    /// another port ([`redirect`] says exactly when).
    pub fn allows_redirect_uri(&self, requested: &str) -> bool {
        self.redirect_uris.iter().any(|r| r.allows(requested))
    }

    /// Whether the client has a secret (and so something to guess).
    pub fn is_confidential(&self) -> bool {
        !matches!(self.auth, ClientAuth::None)
    }

    /// How long anything a grant of this client can lead to stays valid:
    /// its access token, its ID token, and whatever else a grant type adds
    /// (a refresh token's absolute lifetime belongs here). A code's used
    /// marker and a grant's revocation live this long, so that a replay
    /// late in that time still revokes everything the code led to.
    pub fn longest_grant_lifetime(&self) -> Duration {
        self.access_token_lifetime.max(self.id_token_lifetime)
    }
}

/// RFC 3986 §4.3 `absolute-URI` without a fragment, as RFC 8707 §2 requires
/// of a resource indicator: a scheme (`ALPHA *( ALPHA / DIGIT / "+" / "-" /
/// "." )`), a colon and something after it, no `#`, no whitespace or control
/// characters.
pub fn is_absolute_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    let mut chars = scheme.bytes();
    chars.next().is_some_and(|b| b.is_ascii_alphabetic())
        && chars.all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'))
        && !rest.is_empty()
        && uri.bytes().all(|b| b.is_ascii_graphic() && b != b'#')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_hash_round_trip() {
        let hash = SecretHash::of("s3cret");
        assert!(hash.matches("s3cret"));
        assert!(!hash.matches("s3creT"));
        assert_eq!(SecretHash::parse(&hash.encoded()).unwrap(), hash);
    }

    #[test]
    fn registry_errors_name_the_client_and_field() {
        let err = ClientRegistry::from_toml(
            r#"
            [[clients]]
            client_id = "web"
            token_endpoint_auth_method = "client_secret_basic"
            audience = "https://api"
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("\"web\"") && err.contains("client_secret_sha256"),
            "{err}"
        );

        let err = ClientRegistry::from_toml(
            r#"
            [[clients]]
            client_id = "web"
            token_endpoint_auth_method = "none"
            audience = "https://api"
            access_token_lifetime = 0
            "#,
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("access_token_lifetime"), "{err}");
    }

    /// Unknown and missing fields name the line and the client.
    #[test]
    fn parse_errors_name_the_line_and_the_client() {
        let text = "[[clients]]\nclient_id = \"spa\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://a.test\"\n\n[[clients]]\nclient_id = \"web\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://a.test\"\nallowed_origins = []\n";
        let err = ClientRegistry::from_toml(text).unwrap_err().to_string();
        assert!(
            err.contains("line 10")
                && err.contains("client \"web\" (clients[1])")
                && err.contains("unknown field `allowed_origins`"),
            "{err}"
        );
        let text = "[[clients]]\nclient_id = \"spa\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://a.test\"\n\n[[clients]]\nclient_id = \"web\"\ntoken_endpoint_auth_method = \"none\"\n";
        let err = ClientRegistry::from_toml(text).unwrap_err().to_string();
        assert!(
            err.contains("client \"web\" (clients[1])") && err.contains("missing field `audience`"),
            "{err}"
        );
        let err = ClientRegistry::from_toml("clients = 5\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 1"), "{err}");
    }

    #[test]
    fn cors_origins_are_normalized_and_bad_ones_name_client_and_field() {
        let registry = ClientRegistry::from_toml(
            r#"
            [[clients]]
            client_id = "spa"
            token_endpoint_auth_method = "none"
            audience = "https://api.test"
            allowed_cors_origins = ["HTTPS://App.Example:443", "http://localhost:5173", "https://app.example"]
            "#,
        )
        .unwrap();
        let spa = registry.get("spa").unwrap();
        assert_eq!(
            spa.allowed_cors_origins,
            ["https://app.example", "http://localhost:5173"]
        );
        assert!(spa.allows_origin("https://app.example"));
        assert!(!spa.allows_origin("https://app.example:443"));
        assert!(registry.is_cors_origin("http://localhost:5173"));
        assert!(!registry.is_cors_origin("http://localhost:5174"));
        for (origin, why) in [
            ("https://app.example/", "path"),
            ("https://app.example/cb", "path"),
            ("https://*.app.example", "wildcard"),
            ("*", "wildcard"),
            ("null", "null"),
        ] {
            let err = ClientRegistry::from_toml(&format!(
                r#"
                [[clients]]
                client_id = "spa"
                token_endpoint_auth_method = "none"
                audience = "https://api.test"
                allowed_cors_origins = ["https://ok.example", "{origin}"]
                "#
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("\"spa\"")
                    && err.contains("allowed_cors_origins[1]")
                    && err.contains(why),
                "{origin}: {err}"
            );
        }
    }

    /// The demo's redirect URIs are constants filtered through the parser:
    /// none may be dropped on the way.
    #[test]
    fn the_demo_registers_every_redirect_uri() {
        let registry = ClientRegistry::demo();
        let demo = registry.get("demo").unwrap();
        assert_eq!(demo.redirect_uris.len(), DEMO_ORIGINS.len() + 2);
        assert!(demo.allows_redirect_uri("http://127.0.0.1:51004/callback"));
        assert!(demo.allows_redirect_uri("com.example.demo:/callback"));
        assert!(demo.allows_redirect_uri("http://localhost:5173/"));
        assert!(!demo.allows_redirect_uri("http://127.0.0.1:x@evil.example/callback"));
        assert!(!demo.allows_redirect_uri("http://localhost:5174/"));
    }

    #[test]
    fn bad_redirect_uris_name_the_client_and_field() {
        for (uri, why) in [
            ("https://client.test/cb#f", "fragment"),
            ("http://127.0.0.1:x@evil.example/cb", "user information"),
            ("http://127.0.0.1", "write \"http://127.0.0.1/\""),
            ("http://127.0.0.1:99999/cb", "invalid port"),
        ] {
            let err = ClientRegistry::from_toml(&format!(
                r#"
                [[clients]]
                client_id = "native"
                token_endpoint_auth_method = "none"
                audience = "https://api.test"
                redirect_uris = ["https://ok.test/cb", '{uri}']
                "#
            ))
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("\"native\"") && err.contains("redirect_uris[1]") && err.contains(why),
                "{uri}: {err}"
            );
        }
    }

    #[test]
    fn resource_indicators_are_the_absolute_uris_of_the_audience() {
        let registry = ClientRegistry::from_toml(
            r#"
            [[clients]]
            client_id = "web"
            token_endpoint_auth_method = "none"
            audience = ["https://api.test", "orders", "urn:example:ledger", "https://x.test/#f", "1ab:c"]
            "#,
        )
        .unwrap();
        let web = registry.get("web").unwrap();
        assert_eq!(
            web.resource_indicators,
            ["https://api.test", "urn:example:ledger"]
        );
        assert_eq!(web.audience.len(), 5);
        for bad in ["", ":x", "https:", "a b:c", "https://a.test/ x", "x"] {
            assert!(!is_absolute_uri(bad), "{bad:?}");
        }
    }

    /// `grant_types` defaults to the code grant, names only grant types the
    /// service serves (the error lists them), and may not be empty.
    #[test]
    fn grant_types_default_to_the_code_grant_and_name_only_served_ones() {
        let client = |extra: &str| {
            ClientRegistry::from_toml(&format!(
                "[[clients]]\nclient_id = \"web\"\ntoken_endpoint_auth_method = \"none\"\naudience = \"https://api\"\n{extra}"
            ))
        };
        let web = client("").unwrap();
        assert_eq!(
            web.get("web").unwrap().grant_types,
            [GrantType::AuthorizationCode]
        );
        let listed =
            client(r#"grant_types = ["authorization_code", "authorization_code"]"#).unwrap();
        assert_eq!(
            listed.get("web").unwrap().grant_types,
            [GrantType::AuthorizationCode]
        );
        let err = client(r#"grant_types = ["authorization_code", "implicit"]"#)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("grant_types[1]")
                && err.contains("implicit")
                && err.contains("authorization_code"),
            "{err}"
        );
        let err = client("grant_types = []").unwrap_err().to_string();
        assert!(err.contains("grant_types is empty"), "{err}");
    }
}
