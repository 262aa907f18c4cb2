//! Settings, from environment variables (docs/configuration.md). Every
//! setting is checked here, before anything starts; a bad one stops the
//! process with its name and the reason.

use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use crate::dpop::jwk::Alg;
use crate::grant::abuse::AuthLimits;
use crate::store::{KeySpace, RedisTopology};

mod catalogue;
mod names;
pub use catalogue::{effective, settings_table, SettingDoc, SETTINGS};
pub use names::check_names;

/// A setting that cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("{setting}: {reason}")]
pub struct ConfigError {
    /// The setting at fault: a documented one, or an unknown variable.
    pub setting: std::borrow::Cow<'static, str>,
    pub reason: String,
}

impl ConfigError {
    pub fn new(setting: &'static str, reason: impl Into<String>) -> Self {
        Self {
            setting: setting.into(),
            reason: reason.into(),
        }
    }
}

/// Whether the dev endpoints (`/dev/*`: a stand-in login frontend that
/// mints a code for any client and subject) are mounted. They are an
/// authentication bypass anywhere but a throwaway demo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DevEndpoints {
    /// Not mounted: `/dev/*` is 404.
    Off,
    /// The zero-configuration demo: embedded store, ephemeral key, demo
    /// clients, loopback bind. Nothing real can be reached through them.
    Demo,
    /// `TOKEN_ENDPOINT_DEV_ENDPOINTS=on`: mounted on purpose in another
    /// embedded configuration, with a warning at start-up and on each use.
    OptIn,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

/// Where codes are stored.
#[derive(Debug, Clone)]
pub enum StoreSettings {
    /// No Redis: an in-process map. For trying the service out and for tests;
    /// codes live in one process only, so never behind a load balancer.
    Embedded,
    Redis {
        url: SecretString,
        topology: RedisTopology,
        keys: KeySpace,
        connect_timeout: Duration,
        command_timeout: Duration,
        /// `TOKEN_ENDPOINT_REDIS_REPLICA_ACKS`; see [`crate::store::RedisSettings`].
        replica_acks: u32,
        /// The password file and the `rediss://` CA and client certificate.
        files: RedisFiles,
    },
}

/// A PEM certificate chain and its private key, as two files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Files read at start-up to reach Redis (`TOKEN_ENDPOINT_REDIS_*_FILE`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisFiles {
    /// The password, in place of one in the URL.
    pub password: Option<PathBuf>,
    /// The CA(s) that sign the servers' certificates; `None`: the system's.
    pub ca: Option<PathBuf>,
    /// The certificate the service presents (mutual TLS).
    pub client: Option<CertificateFiles>,
}

/// The listener over TLS (`TOKEN_ENDPOINT_TLS_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerTls {
    pub files: CertificateFiles,
    /// How often the files are checked for a change.
    pub reload_every: Duration,
}

#[derive(Debug, Clone)]
pub struct Settings {
    pub bind: SocketAddr,
    /// `None`: plain HTTP.
    pub tls: Option<ListenerTls>,
    pub workers: usize,
    pub issuer: String,
    pub authorization_endpoint: String,
    pub store: StoreSettings,
    /// `None` on the embedded default: the demo clients.
    pub clients_file: Option<PathBuf>,
    /// Empty on the embedded default: an ephemeral key.
    pub signing_keys: Vec<PathBuf>,
    pub verification_keys: Vec<PathBuf>,
    pub max_body_bytes: usize,
    /// On SIGTERM, how long `/readyz` says 503 while the service still
    /// serves, so load balancers stop sending before the listener closes.
    pub shutdown_delay: Duration,
    /// Then, how long in-flight requests get to finish.
    pub drain_timeout: Duration,
    pub log_filter: String,
    pub log_format: LogFormat,
    pub limits: Limits,
    pub dev_endpoints: DevEndpoints,
    /// How long a browser may cache a CORS preflight of the token endpoint
    /// (`TOKEN_ENDPOINT_CORS_MAX_AGE_SECS`).
    pub cors_max_age: Duration,
    /// How DPoP proofs are checked (RFC 9449).
    pub dpop: DpopSettings,
}

/// The DPoP settings, as configured (the policy is built from them with the
/// issuer and, where nonces are required, the nonce key's file).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DpopSettings {
    /// `TOKEN_ENDPOINT_DPOP_SIGNING_ALGS`, in the order given.
    pub algorithms: Vec<Alg>,
    pub max_age_secs: u64,
    pub max_future_secs: u64,
    /// `None`: nonces are off.
    pub nonce: Option<NonceSettings>,
}

/// Server nonces, required.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonceSettings {
    /// `None`: a random key for this process (the embedded store only).
    pub secret_file: Option<PathBuf>,
    pub step_secs: u64,
}

impl Default for DpopSettings {
    fn default() -> Self {
        Self {
            algorithms: vec![Alg::Es256, Alg::EdDsa],
            max_age_secs: 60,
            max_future_secs: 5,
            nonce: None,
        }
    }
}

/// Bounds on what one client, or all of them, can make the service hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// A client has this long to send its request head, and again this long
    /// to send its body (`TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS`).
    pub client_timeout: Duration,
    /// Open connections, all workers together
    /// (`TOKEN_ENDPOINT_MAX_CONNECTIONS`); past it, new ones wait in the
    /// listen backlog.
    pub max_connections: usize,
    /// Failed client authentications allowed per client and per address.
    pub auth: AuthLimits,
    /// The header whose last entry is the client's address, set by a trusted
    /// load balancer (`TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER`, e.g.
    /// `X-Forwarded-For`); `None`: the TCP peer's address.
    pub client_address_header: Option<String>,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            client_timeout: Duration::from_secs(5),
            max_connections: 10_000,
            auth: AuthLimits::default(),
            client_address_header: None,
        }
    }
}

/// The variables, read through `lookup`, one documented setting at a time.
struct Vars<F> {
    lookup: F,
}

impl<F: Fn(&str) -> Option<String>> Vars<F> {
    /// `name`'s value, `None` when unset. A variable that is set but empty
    /// (or only whitespace) is an error, not "unset": a deployment whose
    /// Redis URL came out empty must not start on the embedded store.
    fn get(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        debug_assert!(
            SETTINGS.iter().any(|s| s.name == name),
            "{name} is read but not documented in SETTINGS"
        );
        match (self.lookup)(name) {
            None => Ok(None),
            Some(v) if v.trim().is_empty() => Err(ConfigError::new(
                name,
                "is set but empty: unset it to take the default, or give it a value",
            )),
            Some(v) => Ok(Some(v)),
        }
    }

    /// Whether `name` is set (to anything).
    fn is_set(&self, name: &'static str) -> Result<bool, ConfigError> {
        self.get(name).map(|v| v.is_some())
    }

    /// A whole number in `range`, `default` when unset.
    fn number(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
        unit: &str,
    ) -> Result<u64, ConfigError> {
        match self.get(name)? {
            None => Ok(default),
            Some(v) => v
                .parse::<u64>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        name,
                        format!(
                            "{v:?} is not a number of {unit} from {} to {}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// Milliseconds in `range`, `default` when unset.
    fn millis(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range, "milliseconds")
            .map(Duration::from_millis)
    }

    /// Seconds in `range`, `default` when unset.
    fn seconds(
        &self,
        name: &'static str,
        default: u64,
        range: RangeInclusive<u64>,
    ) -> Result<Duration, ConfigError> {
        self.number(name, default, range, "seconds")
            .map(Duration::from_secs)
    }

    /// One of `choices`, `None` when unset.
    fn choice(
        &self,
        name: &'static str,
        choices: &[&'static str],
    ) -> Result<Option<&'static str>, ConfigError> {
        match self.get(name)? {
            None => Ok(None),
            Some(v) => choices
                .iter()
                .find(|c| **c == v)
                .copied()
                .map(Some)
                .ok_or_else(|| {
                    ConfigError::new(name, format!("{v:?} is not one of {}", choices.join(", ")))
                }),
        }
    }

    /// A certificate and key file pair: both or neither.
    fn pair(
        &self,
        cert: &'static str,
        key: &'static str,
    ) -> Result<Option<CertificateFiles>, ConfigError> {
        match (self.get(cert)?, self.get(key)?) {
            (Some(c), Some(k)) => Ok(Some(CertificateFiles {
                cert: c.into(),
                key: k.into(),
            })),
            (None, None) => Ok(None),
            (Some(_), None) => Err(ConfigError::new(key, format!("is required with {cert}"))),
            (None, Some(_)) => Err(ConfigError::new(cert, format!("is required with {key}"))),
        }
    }

    /// Comma-separated paths, empty when unset.
    fn paths(&self, name: &'static str) -> Result<Vec<PathBuf>, ConfigError> {
        Ok(self
            .get(name)?
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(PathBuf::from)
                    .collect()
            })
            .unwrap_or_default())
    }
}

impl Settings {
    /// Read the settings from the process environment, after refusing any
    /// `TOKEN_ENDPOINT_*` variable that is not a setting ([`check_names`]).
    pub fn from_env() -> Result<Self, ConfigError> {
        let vars: Vec<(String, String)> = std::env::vars_os()
            .filter_map(|(name, value)| {
                Some((
                    name.into_string().ok()?,
                    value.to_string_lossy().into_owned(),
                ))
            })
            .collect();
        check_names(vars.iter().map(|(n, v)| (n.as_str(), v.as_str())))?;
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Read the settings through `lookup` (the environment, or a test's map).
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let vars = Vars { lookup };

        let bind: SocketAddr = match vars.get("TOKEN_ENDPOINT_BIND")? {
            None => SocketAddr::from(([127, 0, 0, 1], 8080)),
            Some(v) => v.parse().map_err(|_| {
                ConfigError::new(
                    "TOKEN_ENDPOINT_BIND",
                    format!("{v:?} is not an address such as 0.0.0.0:8080"),
                )
            })?,
        };
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let workers = vars.number(
            "TOKEN_ENDPOINT_WORKERS",
            cpus.min(MAX_WORKERS) as u64,
            1..=MAX_WORKERS as u64,
            "workers",
        )? as usize;

        let tls = match vars.pair("TOKEN_ENDPOINT_TLS_CERT_FILE", "TOKEN_ENDPOINT_TLS_KEY_FILE")? {
            Some(files) => Some(ListenerTls {
                files,
                reload_every: vars.seconds("TOKEN_ENDPOINT_TLS_RELOAD_SECS", 10, 1..=3600)?,
            }),
            None if vars.is_set("TOKEN_ENDPOINT_TLS_RELOAD_SECS")? => {
                return Err(ConfigError::new(
                    "TOKEN_ENDPOINT_TLS_RELOAD_SECS",
                    "is set, but TOKEN_ENDPOINT_TLS_CERT_FILE is not: the listener speaks plain HTTP",
                ))
            }
            None => None,
        };
        let store = Self::store(&vars)?;
        let production = matches!(store, StoreSettings::Redis { .. });
        let required = |name: &'static str| {
            vars.get(name)?.ok_or_else(|| {
                ConfigError::new(name, "is required when TOKEN_ENDPOINT_REDIS_URL is set")
            })
        };

        let allow_http = vars
            .choice("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER", &["allow"])?
            .is_some();
        let refuse_http = production && !allow_http;
        let issuer = match vars.get("TOKEN_ENDPOINT_ISSUER")? {
            Some(issuer) => issuer,
            None if production => required("TOKEN_ENDPOINT_ISSUER")?,
            // The demo's issuer is its bind address, which port 0 does not
            // name yet: blame the setting that was given.
            None if bind.port() == 0 => {
                return Err(ConfigError::new(
                    "TOKEN_ENDPOINT_BIND",
                    format!("{bind}: port 0 (any free port) cannot be used without TOKEN_ENDPOINT_ISSUER, which the demo derives from this address; give a port"),
                ))
            }
            None => format!("http://{bind}"),
        };
        check_url(
            "TOKEN_ENDPOINT_ISSUER",
            &issuer,
            refuse_http,
            UrlKind::Issuer,
        )?;
        let authorization_endpoint = vars.get("TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT")?;
        if let Some(endpoint) = &authorization_endpoint {
            check_url(
                "TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT",
                endpoint,
                refuse_http,
                UrlKind::Endpoint,
            )?;
        }

        let clients_file = match vars.get("TOKEN_ENDPOINT_CLIENTS_FILE")? {
            Some(path) => Some(PathBuf::from(path)),
            None if production => Some(required("TOKEN_ENDPOINT_CLIENTS_FILE")?.into()),
            None => None,
        };
        let signing_keys = vars.paths("TOKEN_ENDPOINT_SIGNING_KEYS")?;
        if production && signing_keys.is_empty() {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_SIGNING_KEYS",
                "is required when TOKEN_ENDPOINT_REDIS_URL is set: replicas with ephemeral keys would sign tokens no other replica's JWKS can verify",
            ));
        }
        let verification_keys = vars.paths("TOKEN_ENDPOINT_VERIFICATION_KEYS")?;

        let max_body_bytes = vars.number(
            "TOKEN_ENDPOINT_MAX_BODY_BYTES",
            8192,
            1024..=1_048_576,
            "bytes",
        )? as usize;
        let shutdown_delay = vars.millis("TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS", 5000, 0..=60_000)?;
        let drain_timeout = vars.millis("TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS", 20_000, 1..=60_000)?;
        let log_filter = vars
            .get("TOKEN_ENDPOINT_LOG")?
            .unwrap_or_else(|| "info".into());
        if tracing_subscriber::EnvFilter::try_new(&log_filter).is_err() {
            return Err(ConfigError::new("TOKEN_ENDPOINT_LOG", format!("{log_filter:?} is not a tracing filter (for example info or token_endpoint=debug)")));
        }
        let log_format = match vars.choice("TOKEN_ENDPOINT_LOG_FORMAT", &["text", "json"])? {
            Some("json") => LogFormat::Json,
            _ => LogFormat::Text,
        };
        let limits = Self::limits(&vars, workers)?;

        let dev_endpoints = match vars.choice("TOKEN_ENDPOINT_DEV_ENDPOINTS", &["on", "off"])? {
            None => {
                let demo = !production
                    && clients_file.is_none()
                    && signing_keys.is_empty()
                    && verification_keys.is_empty()
                    && bind.ip().is_loopback();
                if demo {
                    DevEndpoints::Demo
                } else {
                    DevEndpoints::Off
                }
            }
            Some("on") if production => {
                return Err(ConfigError::new(
                    "TOKEN_ENDPOINT_DEV_ENDPOINTS",
                    "on is refused with TOKEN_ENDPOINT_REDIS_URL: /dev/codes mints a code for any client and subject, an authentication bypass for anything real",
                ))
            }
            Some("on") => DevEndpoints::OptIn,
            Some(_) => DevEndpoints::Off,
        };
        // The login page clients are sent to: the frontend's, or, where the
        // stand-in login page is mounted, that one.
        let authorization_endpoint = match authorization_endpoint {
            Some(endpoint) => endpoint,
            None if dev_endpoints != DevEndpoints::Off => format!("{issuer}/dev/authorize"),
            None => format!("{issuer}/authorize"),
        };
        // Chromium honours at most 7200 s, Firefox 86400 s. A preflight
        // grants nothing by itself (every request is checked against its
        // client's origins before anything is consumed), so the longest
        // time a browser keeps it costs no safety and saves a round trip.
        let cors_max_age = vars.seconds("TOKEN_ENDPOINT_CORS_MAX_AGE_SECS", 7200, 0..=86_400)?;

        let dpop = Self::dpop(&vars, production)?;

        Ok(Self {
            cors_max_age,
            dpop,
            dev_endpoints,
            bind,
            tls,
            workers,
            issuer,
            authorization_endpoint,
            store,
            clients_file,
            signing_keys,
            verification_keys,
            max_body_bytes,
            shutdown_delay,
            drain_timeout,
            log_filter,
            log_format,
            limits,
        })
    }

    /// `TOKEN_ENDPOINT_REDIS_*`. Without a Redis URL none of them may be
    /// set: a deployment that meant Redis but lost its URL must not start
    /// on the embedded store.
    fn store<F: Fn(&str) -> Option<String>>(vars: &Vars<F>) -> Result<StoreSettings, ConfigError> {
        const REDIS_ONLY: [&str; 10] = [
            "TOKEN_ENDPOINT_REDIS_MODE",
            "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
            "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
            "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
            "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
            "TOKEN_ENDPOINT_REDIS_CONNECT_TIMEOUT_MS",
            "TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS",
            "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS",
        ];
        let Some(url) = vars.get("TOKEN_ENDPOINT_REDIS_URL")? else {
            for name in REDIS_ONLY {
                if vars.is_set(name)? {
                    return Err(ConfigError::new(
                        name,
                        "is set, but TOKEN_ENDPOINT_REDIS_URL is not: the service would run on the embedded store and ignore it",
                    ));
                }
            }
            return Ok(StoreSettings::Embedded);
        };
        let mode = vars
            .choice("TOKEN_ENDPOINT_REDIS_MODE", &RedisTopology::MODES)?
            .unwrap_or("standalone");
        let master = match mode {
            "sentinel" => vars.get("TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER")?,
            _ => None,
        };
        let topology = RedisTopology::named(mode, master).unwrap_or_default();
        if !matches!(topology, RedisTopology::Sentinel { .. })
            && vars.is_set("TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER")?
        {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
                "is set, but TOKEN_ENDPOINT_REDIS_MODE is not sentinel",
            ));
        }
        let urls: Vec<&str> = url.split(',').map(str::trim).collect();
        if topology == RedisTopology::Standalone && urls.len() > 1 {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_URL",
                "lists several servers: set TOKEN_ENDPOINT_REDIS_MODE=cluster (seed nodes) or sentinel (sentinels)",
            ));
        }
        if !urls.iter().all(|u| {
            u.starts_with("redis://")
                || u.starts_with("rediss://")
                || u.starts_with("redis+unix://")
                || u.starts_with("unix://")
        }) {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_URL",
                "must start with redis://, rediss:// or unix://",
            ));
        }
        // Every node of a Cluster (the slot map names them by address only)
        // and every sentinel is reached the way the first seed is: a mix
        // would quietly turn TLS on or off for most of them.
        let schemes: std::collections::BTreeSet<String> = urls
            .iter()
            .filter_map(|u| url::Url::parse(u).ok())
            .map(|u| u.scheme().to_owned())
            .collect();
        if schemes.contains("redis") && schemes.contains("rediss") {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_URL",
                "mixes redis:// and rediss:// servers: every node is reached the same way, so use rediss:// for all (TLS) or redis:// for all",
            ));
        }
        let files = Self::redis_files(vars, &urls)?;
        let prefix = vars
            .get("TOKEN_ENDPOINT_REDIS_KEY_PREFIX")?
            .unwrap_or_else(|| "oauth:".into());
        check_key_prefix(&prefix)
            .map_err(|why| ConfigError::new("TOKEN_ENDPOINT_REDIS_KEY_PREFIX", why))?;
        // Behind Sentinel there are replicas to fail over to by definition,
        // so a take waits for one by default; a standalone server or a
        // Cluster may have none.
        let default_acks = u64::from(matches!(topology, RedisTopology::Sentinel { .. }));
        Ok(StoreSettings::Redis {
            url: url.into(),
            keys: KeySpace::new(prefix),
            connect_timeout: vars.millis(
                "TOKEN_ENDPOINT_REDIS_CONNECT_TIMEOUT_MS",
                1000,
                1..=60_000,
            )?,
            command_timeout: vars.millis(
                "TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS",
                250,
                1..=60_000,
            )?,
            replica_acks: vars.number(
                "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS",
                default_acks,
                0..=16,
                "replicas",
            )? as u32,
            topology,
            files,
        })
    }

    /// The Redis password file and TLS files, checked against the URLs:
    /// TLS files need `rediss://` everywhere (a `redis://` server would get
    /// the password in clear), and a password comes from one place only.
    fn redis_files<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
        urls: &[&str],
    ) -> Result<RedisFiles, ConfigError> {
        let tls = |u: &&str| u.starts_with("rediss://");
        if urls.iter().any(|u| tls(u) && u.contains('#')) {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_URL",
                "has a fragment (#insecure?): the server's certificate and name are always verified; give the CA with TOKEN_ENDPOINT_REDIS_TLS_CA_FILE instead",
            ));
        }
        let files = RedisFiles {
            password: vars
                .get("TOKEN_ENDPOINT_REDIS_PASSWORD_FILE")?
                .map(PathBuf::from),
            ca: vars
                .get("TOKEN_ENDPOINT_REDIS_TLS_CA_FILE")?
                .map(PathBuf::from),
            client: vars.pair(
                "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
                "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
            )?,
        };
        let setting = if files.client.is_some() {
            Some("TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE")
        } else if files.ca.is_some() {
            Some("TOKEN_ENDPOINT_REDIS_TLS_CA_FILE")
        } else {
            None
        };
        if let Some(setting) = setting {
            if !urls.iter().all(tls) {
                return Err(ConfigError::new(
                    setting,
                    "is set, but TOKEN_ENDPOINT_REDIS_URL does not use rediss:// for every server",
                ));
            }
        }
        if files.password.is_some() && urls.iter().any(|u| url_has_password(u)) {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
                "is set, but TOKEN_ENDPOINT_REDIS_URL holds a password too: give it in one place",
            ));
        }
        Ok(files)
    }

    /// RFC 9449's knobs. 60 s of age is what a client that signs a proof
    /// right before sending it needs, with room for a slow network, and
    /// what node-oidc-provider and Keycloak default to; 5 s ahead tolerates
    /// a client clock a little fast without letting a proof be made for
    /// later use. A client whose clock is further off is served by nonces
    /// (docs/dpop.md).
    fn dpop<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
        production: bool,
    ) -> Result<DpopSettings, ConfigError> {
        const ALGS: &str = "TOKEN_ENDPOINT_DPOP_SIGNING_ALGS";
        const SECRET: &str = "TOKEN_ENDPOINT_DPOP_NONCE_SECRET_FILE";
        const STEP: &str = "TOKEN_ENDPOINT_DPOP_NONCE_STEP_SECS";
        let algorithms = match vars.get(ALGS)? {
            None => DpopSettings::default().algorithms,
            Some(list) => {
                let mut algorithms = Vec::new();
                for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
                    let alg = Alg::named(name).ok_or_else(|| {
                        ConfigError::new(
                            ALGS,
                            format!("{name:?} is not one of ES256, EdDSA, RS256, PS256 (names are case-sensitive)"),
                        )
                    })?;
                    if algorithms.contains(&alg) {
                        return Err(ConfigError::new(ALGS, format!("{name} is listed twice")));
                    }
                    algorithms.push(alg);
                }
                if algorithms.is_empty() {
                    return Err(ConfigError::new(ALGS, "names no algorithm"));
                }
                algorithms
            }
        };
        let max_age_secs = vars.number(
            "TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS",
            60,
            1..=600,
            "seconds",
        )?;
        let max_future_secs = vars.number(
            "TOKEN_ENDPOINT_DPOP_PROOF_MAX_FUTURE_SECS",
            5,
            0..=60,
            "seconds",
        )?;
        let nonce = match vars.choice("TOKEN_ENDPOINT_DPOP_NONCE", &["off", "required"])? {
            Some("required") => {
                let secret_file = vars.get(SECRET)?.map(PathBuf::from);
                if production && secret_file.is_none() {
                    return Err(ConfigError::new(
                        SECRET,
                        "is required with TOKEN_ENDPOINT_DPOP_NONCE=required and Redis: every replica must accept the nonces of every other, so they share the key",
                    ));
                }
                Some(NonceSettings {
                    secret_file,
                    step_secs: vars.number(STEP, 60, 2..=3600, "seconds")?,
                })
            }
            _ => {
                for name in [SECRET, STEP] {
                    if vars.is_set(name)? {
                        return Err(ConfigError::new(
                            name,
                            "is set but nonces are off: set TOKEN_ENDPOINT_DPOP_NONCE=required, or unset it",
                        ));
                    }
                }
                None
            }
        };
        Ok(DpopSettings {
            algorithms,
            max_age_secs,
            max_future_secs,
            nonce,
        })
    }

    /// The abuse limits. The connection cap is shared out equally among the
    /// workers (actix counts per worker), so it must allow each at least one.
    fn limits<F: Fn(&str) -> Option<String>>(
        vars: &Vars<F>,
        workers: usize,
    ) -> Result<Limits, ConfigError> {
        let max_connections = vars.number(
            "TOKEN_ENDPOINT_MAX_CONNECTIONS",
            10_000,
            1..=1_000_000,
            "connections",
        )? as usize;
        if max_connections < workers {
            return Err(ConfigError::new(
                "TOKEN_ENDPOINT_MAX_CONNECTIONS",
                format!("{max_connections} is fewer than the {workers} workers (TOKEN_ENDPOINT_WORKERS): each worker needs at least one connection"),
            ));
        }
        let client_address_header = match vars.get("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER")? {
            None => None,
            Some(name) => {
                let name = name.trim();
                if name.is_empty() || !name.bytes().all(is_token_char) {
                    return Err(ConfigError::new(
                        "TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER",
                        format!("{name:?} is not an HTTP header name"),
                    ));
                }
                Some(name.to_ascii_lowercase())
            }
        };
        Ok(Limits {
            client_timeout: vars.millis("TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS", 5000, 100..=60_000)?,
            max_connections,
            auth: AuthLimits {
                client_alert: vars.number(
                    "TOKEN_ENDPOINT_AUTH_FAILURES_PER_CLIENT",
                    100,
                    1..=1_000_000,
                    "failures",
                )? as u32,
                per_address: vars.number(
                    "TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS",
                    20,
                    1..=1_000_000,
                    "failures",
                )? as u32,
                window: vars.seconds("TOKEN_ENDPOINT_AUTH_FAILURE_WINDOW_SECS", 60, 1..=86_400)?,
            },
            client_address_header,
        })
    }
}

/// actix-web refuses more workers than this.
pub const MAX_WORKERS: usize = 512;

/// RFC 9110 §5.6.2 `tchar`: the characters of a header name.
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// Whether a Redis URL carries a password (`scheme://[user]:password@`).
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    authority
        .rsplit_once('@')
        .is_some_and(|(userinfo, _)| userinfo.split_once(':').is_some_and(|(_, p)| !p.is_empty()))
}

/// A Redis key prefix: no braces (they would change the keys' Cluster hash
/// slot) and no whitespace. `issue-code` and the load generator check the
/// same.
pub fn check_key_prefix(prefix: &str) -> Result<(), &'static str> {
    if prefix.contains(['{', '}']) || prefix.chars().any(char::is_whitespace) {
        Err("must not contain braces or whitespace: braces would change the keys' hash slot")
    } else {
        Ok(())
    }
}

/// What a URL setting names.
#[derive(Clone, Copy, PartialEq, Eq)]
enum UrlKind {
    /// The issuer: no query either, and no trailing `/`, since tokens carry
    /// it verbatim and clients compare it exactly.
    Issuer,
    /// An endpoint: a query is allowed (RFC 6749 §3.1).
    Endpoint,
}

/// An `https` URL with a host, no user information and no fragment, and
/// nothing that has two spellings: no whitespace or non-ASCII, no dot
/// segments. `http` is refused where `refuse_http` (Redis without
/// `TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER=allow`). The issuer (RFC 8414 §2,
/// OpenID Connect Discovery §3) has no query and no trailing `/` either.
fn check_url(
    setting: &'static str,
    url: &str,
    refuse_http: bool,
    kind: UrlKind,
) -> Result<(), ConfigError> {
    let bad = |why: &str| Err(ConfigError::new(setting, format!("{url:?} {why}")));
    if !url.bytes().all(|b| b.is_ascii_graphic()) {
        return bad("must be printable ASCII without spaces: tokens and discovery carry it verbatim, and clients compare it exactly");
    }
    let rest = if let Some(rest) = url.strip_prefix("https://") {
        rest
    } else if let Some(rest) = url.strip_prefix("http://") {
        if refuse_http {
            return bad("is http:// with TOKEN_ENDPOINT_REDIS_URL set: use https:// (or set TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER=allow for a test set-up without TLS)");
        }
        rest
    } else {
        return bad("must be an https:// URL (http:// is accepted on the embedded store, or with TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER=allow)");
    };
    if url.contains('#') || (kind == UrlKind::Issuer && url.contains('?')) {
        return bad(match kind {
            UrlKind::Issuer => {
                "must not have a query or fragment (OpenID Connect Discovery section 3)"
            }
            UrlKind::Endpoint => "must not have a fragment (RFC 6749 section 3.1)",
        });
    }
    let (authority, path) = rest.split_at(rest.find(['/', '?']).unwrap_or(rest.len()));
    if authority.contains('@') {
        return bad("must not carry user information (user@ or user:password@)");
    }
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, after)) => (host, after.strip_prefix(':')),
            None => return bad("has an IPv6 host without its closing ]"),
        },
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    if host.is_empty() {
        return bad("has no host");
    }
    if port.is_some_and(|p| p.parse::<u16>().map_or(true, |p| p == 0)) {
        return bad("has a port that is not a number from 1 to 65535");
    }
    let path = path.split('?').next().unwrap_or_default();
    if path
        .split('/')
        .any(|segment| segment == "." || segment == "..")
    {
        return bad("must not have . or .. path segments");
    }
    if kind == UrlKind::Issuer && url.ends_with('/') {
        return bad("must not end with '/': tokens carry it verbatim in iss, and clients compare it exactly");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::from_lookup(|name| map.get(name).cloned())
    }

    #[test]
    fn embedded_default_needs_nothing() {
        let s = settings(&[]).unwrap();
        assert!(matches!(s.store, StoreSettings::Embedded));
        assert_eq!(s.issuer, "http://127.0.0.1:8080");
        assert_eq!(s.dev_endpoints, DevEndpoints::Demo);
        // The demo's login page is the stand-in one, and discovery says so.
        assert_eq!(
            s.authorization_endpoint,
            "http://127.0.0.1:8080/dev/authorize"
        );
        assert_eq!(s.cors_max_age, Duration::from_secs(7200));
        let off = settings(&[("TOKEN_ENDPOINT_DEV_ENDPOINTS", "off")]).unwrap();
        assert_eq!(
            off.authorization_endpoint,
            "http://127.0.0.1:8080/authorize"
        );
        let told = settings(&[(
            "TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT",
            "https://login.example/authorize",
        )])
        .unwrap();
        assert_eq!(
            told.authorization_endpoint,
            "https://login.example/authorize"
        );
        let err = settings(&[("TOKEN_ENDPOINT_CORS_MAX_AGE_SECS", "86401")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_CORS_MAX_AGE_SECS");
    }

    /// The demo derives its issuer from the bind address: port 0 names no
    /// port yet, and the error names the setting that was given.
    #[test]
    fn a_demo_on_port_zero_blames_the_bind_address() {
        let err = settings(&[("TOKEN_ENDPOINT_BIND", "127.0.0.1:0")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_BIND", "{err}");
        assert!(err.reason.contains("port 0"), "{err}");
        settings(&[
            ("TOKEN_ENDPOINT_BIND", "127.0.0.1:0"),
            ("TOKEN_ENDPOINT_ISSUER", "http://127.0.0.1:8080"),
        ])
        .unwrap();
    }

    #[test]
    fn dev_endpoints_only_in_the_demo_or_on_request() {
        let dev = |vars: &[(&str, &str)]| settings(vars).map(|s| s.dev_endpoints);
        assert_eq!(dev(&[]).unwrap(), DevEndpoints::Demo);
        for configured in [
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
            ("TOKEN_ENDPOINT_VERIFICATION_KEYS", "/v.pem"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_BIND", "0.0.0.0:8080"),
            ("TOKEN_ENDPOINT_BIND", "192.0.2.1:8080"),
            ("TOKEN_ENDPOINT_DEV_ENDPOINTS", "off"),
        ] {
            assert_eq!(
                dev(&[configured]).unwrap(),
                DevEndpoints::Off,
                "{configured:?}"
            );
        }
        assert_eq!(
            dev(&[("TOKEN_ENDPOINT_BIND", "[::1]:8080")]).unwrap(),
            DevEndpoints::Demo
        );
        assert_eq!(
            dev(&[
                ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
                ("TOKEN_ENDPOINT_DEV_ENDPOINTS", "on")
            ])
            .unwrap(),
            DevEndpoints::OptIn
        );
        let err = dev(&[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/x"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k"),
            ("TOKEN_ENDPOINT_DEV_ENDPOINTS", "on"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_DEV_ENDPOINTS");
        let err = dev(&[("TOKEN_ENDPOINT_DEV_ENDPOINTS", "yes")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_DEV_ENDPOINTS");
    }

    #[test]
    fn the_issuer_is_checked_strictly() {
        for good in [
            "https://id.example",
            "https://id.example:8443/tenants/a",
            "https://[2001:db8::1]:443",
            "http://127.0.0.1:8080",
            "http://[::1]:8080",
        ] {
            assert!(
                check_url("TOKEN_ENDPOINT_ISSUER", good, false, UrlKind::Issuer).is_ok(),
                "{good}"
            );
        }
        for bad in [
            "https://id.example ",
            " https://id.example",
            "https://id.example/a b",
            "https://id.example/é",
            "https://",
            "https:///x",
            "https://u:p@id.example",
            "https://id.example:0",
            "https://id.example:99999",
            "https://id.example:x",
            "https://id.example/./x",
            "https://id.example/x/..",
            "https://id.example/",
            "https://id.example?x",
            "https://[::1",
            "ftp://id.example",
            "id.example",
        ] {
            let err = check_url("TOKEN_ENDPOINT_ISSUER", bad, false, UrlKind::Issuer).unwrap_err();
            assert_eq!(err.setting, "TOKEN_ENDPOINT_ISSUER", "{bad}");
        }
        let err = check_url(
            "TOKEN_ENDPOINT_ISSUER",
            "http://id.example",
            true,
            UrlKind::Issuer,
        )
        .unwrap_err();
        assert!(
            err.reason.contains("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER"),
            "{err}"
        );
        let redis = [
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
            ("TOKEN_ENDPOINT_ISSUER", "http://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/x"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k"),
        ];
        assert_eq!(
            settings(&redis).unwrap_err().setting,
            "TOKEN_ENDPOINT_ISSUER"
        );
        let mut allowed = redis.to_vec();
        allowed.push(("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER", "allow"));
        assert!(settings(&allowed).is_ok());
        allowed.pop();
        allowed.push(("TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER", "true"));
        assert_eq!(
            settings(&allowed).unwrap_err().setting,
            "TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER"
        );
    }

    #[test]
    fn redis_requires_issuer_clients_and_keys() {
        let err = settings(&[("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_ISSUER");
        let err = settings(&[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/x"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_SIGNING_KEYS");
    }

    #[test]
    fn bad_values_name_the_setting() {
        for (name, value) in [
            ("TOKEN_ENDPOINT_BIND", "nowhere"),
            ("TOKEN_ENDPOINT_WORKERS", "0"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example/"),
            ("TOKEN_ENDPOINT_REDIS_URL", "http://x"),
            ("TOKEN_ENDPOINT_MAX_BODY_BYTES", "10"),
            ("TOKEN_ENDPOINT_LOG_FORMAT", "xml"),
        ] {
            assert_eq!(settings(&[(name, value)]).unwrap_err().setting, name);
        }
    }

    #[test]
    fn limits_have_defaults_and_bad_values_name_their_setting() {
        let limits = settings(&[]).unwrap().limits;
        assert_eq!(limits, Limits::default());
        assert_eq!(limits.auth.per_address, 20);
        assert_eq!(limits.auth.client_alert, 100);
        let set = settings(&[
            ("TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS", "1500"),
            ("TOKEN_ENDPOINT_MAX_CONNECTIONS", "64"),
            ("TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS", "5"),
            ("TOKEN_ENDPOINT_AUTH_FAILURE_WINDOW_SECS", "300"),
            ("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER", "X-Forwarded-For"),
        ])
        .unwrap()
        .limits;
        assert_eq!(set.client_timeout, Duration::from_millis(1500));
        assert_eq!(set.max_connections, 64);
        assert_eq!(set.auth.per_address, 5);
        assert_eq!(set.auth.window, Duration::from_secs(300));
        assert_eq!(
            set.client_address_header.as_deref(),
            Some("x-forwarded-for")
        );
        for (name, value) in [
            ("TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS", "0"),
            ("TOKEN_ENDPOINT_MAX_CONNECTIONS", "many"),
            ("TOKEN_ENDPOINT_AUTH_FAILURES_PER_CLIENT", "0"),
            ("TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS", "-1"),
            ("TOKEN_ENDPOINT_AUTH_FAILURE_WINDOW_SECS", "100000"),
            ("TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER", "bad header"),
        ] {
            let err = settings(&[(name, value)]).unwrap_err();
            assert_eq!(err.setting, name, "{value}");
        }
    }

    #[test]
    fn redis_mode_and_seed_nodes() {
        let base = [
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/x"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k"),
        ];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut vars = base.to_vec();
            vars.extend_from_slice(extra);
            settings(&vars)
        };
        let nodes = ("TOKEN_ENDPOINT_REDIS_URL", "redis://a:7000, redis://b:7001");
        let err = with(&[nodes]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL");
        assert!(err.reason.contains("TOKEN_ENDPOINT_REDIS_MODE=cluster"));
        let cluster = with(&[nodes, ("TOKEN_ENDPOINT_REDIS_MODE", "cluster")]).unwrap();
        assert!(matches!(
            cluster.store,
            StoreSettings::Redis {
                topology: RedisTopology::Cluster,
                ..
            }
        ));
        let err = with(&[nodes, ("TOKEN_ENDPOINT_REDIS_MODE", "replicas")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_MODE");
        let sentinel = with(&[
            nodes,
            ("TOKEN_ENDPOINT_REDIS_MODE", "sentinel"),
            ("TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER", "tokens"),
        ])
        .unwrap();
        assert!(matches!(
            sentinel.store,
            StoreSettings::Redis {
                topology: RedisTopology::Sentinel { ref master },
                ..
            } if master == "tokens"
        ));
        // A take waits for a replica behind Sentinel, unless told otherwise.
        let acks = |s: Settings| match s.store {
            StoreSettings::Redis { replica_acks, .. } => replica_acks,
            StoreSettings::Embedded => unreachable!(),
        };
        assert_eq!(acks(sentinel), 1);
        assert_eq!(acks(cluster), 0);
        let told = with(&[
            nodes,
            ("TOKEN_ENDPOINT_REDIS_MODE", "cluster"),
            ("TOKEN_ENDPOINT_REDIS_REPLICA_ACKS", "2"),
        ]);
        assert_eq!(acks(told.unwrap()), 2);
        let err = with(&[
            nodes,
            ("TOKEN_ENDPOINT_REDIS_MODE", "sentinel"),
            ("TOKEN_ENDPOINT_REDIS_REPLICA_ACKS", "one"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS");
        let err = with(&[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://a:7000,http://b"),
            ("TOKEN_ENDPOINT_REDIS_MODE", "cluster"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL");
        // Every node is reached the way the first seed is: no mix.
        for (mode, urls) in [
            ("cluster", "rediss://a:7000,redis://b:7001"),
            ("cluster", "redis://a:7000, rediss://b:7001"),
            ("sentinel", "redis://a:26379,rediss://b:26379"),
        ] {
            let err = with(&[
                ("TOKEN_ENDPOINT_REDIS_URL", urls),
                ("TOKEN_ENDPOINT_REDIS_MODE", mode),
            ])
            .unwrap_err();
            assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL", "{urls}");
            assert!(err.reason.contains("mixes redis:// and rediss://"), "{err}");
        }
        with(&[
            (
                "TOKEN_ENDPOINT_REDIS_URL",
                "rediss://a:7000,rediss://b:7001",
            ),
            ("TOKEN_ENDPOINT_REDIS_MODE", "cluster"),
        ])
        .unwrap();
    }
}
