//! `token-endpoint`: serve (the default), or the operator's tools.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use token_endpoint::config::{CertificateFiles, RedisFiles, Settings};
use token_endpoint::contract::frontend::{self, Grant, IssueError};
use token_endpoint::contract::record::Resource;
use token_endpoint::http::Application;
use token_endpoint::pkce::ChallengeMethod;
use token_endpoint::store::{CodeStore, KeySpace, RedisSettings, RedisStore, RedisTopology};
use token_endpoint::telemetry;

#[derive(Parser)]
#[command(version, about = "OAuth 2.0 authorization code + PKCE token endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the service (configured by TOKEN_ENDPOINT_* variables; see
    /// docs/configuration.md).
    Serve,
    /// Write authorization codes as the login frontend does, and print each
    /// code with a fresh verifier.
    IssueCode(Box<IssueCode>),
    /// Print a new random client secret and the hash to put in the client registry.
    NewClientSecret,
    /// Print a new PKCS#8 PEM signing key.
    GenerateKey {
        #[arg(long, value_enum, default_value_t = KeyAlg::Es256)]
        alg: KeyAlg,
        /// Write the key to this new file (mode 0600) rather than to
        /// standard output; an existing file is never overwritten.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Check the configuration without serving: the settings, the keys, the
    /// clients file, and Redis (reachable, with every command the service
    /// sends). Prints the settings in effect, secrets redacted; exits 0 when
    /// `serve` would start, 1 otherwise.
    Check,
    /// Print the settings (TOKEN_ENDPOINT_* variables) as the table in
    /// docs/configuration.md: their defaults and what each does.
    Settings,
}

#[derive(Clone, Copy, ValueEnum)]
enum KeyAlg {
    #[value(name = "ES256")]
    Es256,
    #[value(name = "EdDSA")]
    EdDsa,
}

#[derive(Clone, Copy, ValueEnum)]
enum Method {
    /// BASE64URL(SHA-256(verifier)), RFC 7636's default for clients.
    #[value(name = "S256")]
    S256,
    /// The verifier itself, only for clients registered with allow_plain_pkce.
    #[value(name = "plain")]
    Plain,
}

#[derive(Clone, Copy, ValueEnum)]
enum Format {
    /// One JSON object per code: {"code":..,"code_verifier":..}
    Json,
    /// Shell assignments CODE=.. and CODE_VERIFIER=.. (for eval; one code only)
    Env,
}

#[derive(clap::Args)]
struct IssueCode {
    #[arg(long, default_value = "demo")]
    client_id: String,
    #[arg(long, default_value = "alice")]
    sub: String,
    #[arg(long, default_value = "openid profile")]
    scope: String,
    #[arg(long)]
    redirect_uri: Option<String>,
    #[arg(long)]
    nonce: Option<String>,
    #[arg(long)]
    auth_time: Option<u64>,
    #[arg(long)]
    acr: Option<String>,
    /// Repeat for several methods.
    #[arg(long)]
    amr: Vec<String>,
    /// Extra ID-token claims, as a JSON object.
    #[arg(long)]
    claims: Option<String>,
    /// Access token audience (RFC 8707); repeat for several.
    #[arg(long)]
    resource: Vec<String>,
    /// The PKCE method the code is bound with.
    #[arg(long, value_enum, default_value_t = Method::S256)]
    method: Method,
    /// Bind the code to this DPoP key (RFC 9449 §10): its JWK SHA-256
    /// thumbprint, as the authorization request's dpop_jkt carried it.
    #[arg(long)]
    dpop_jkt: Option<String>,
    /// Code lifetime in seconds, 1 to 3600, on every store (the bound of
    /// the embedded default's POST /dev/codes).
    #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=3600))]
    ttl: u64,
    /// How many codes to issue.
    #[arg(long, default_value_t = 1)]
    count: usize,
    #[arg(long, value_enum, default_value_t = Format::Json)]
    format: Format,
    /// Write straight to this Redis, as the service reads it (with
    /// --redis-mode). Without it, codes are issued through the embedded
    /// default's POST /dev/codes at --server.
    #[arg(long, env = "TOKEN_ENDPOINT_REDIS_URL", hide_env_values = true)]
    redis_url: Option<String>,
    /// How --redis-url is shaped: one server, Cluster seed nodes, or
    /// sentinels.
    #[arg(
        long,
        env = "TOKEN_ENDPOINT_REDIS_MODE",
        default_value = "standalone",
        value_parser = RedisTopology::MODES
    )]
    redis_mode: String,
    /// Behind Sentinel, the master's name.
    #[arg(long, env = "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER")]
    redis_sentinel_master: Option<String>,
    #[arg(
        long,
        env = "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
        default_value = "oauth:"
    )]
    key_prefix: String,
    /// The Redis password from this file, as the service reads it.
    #[arg(long, env = "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE")]
    redis_password_file: Option<PathBuf>,
    /// `rediss://`: the CA certificate(s) of the Redis servers (PEM).
    #[arg(long, env = "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE")]
    redis_tls_ca_file: Option<PathBuf>,
    /// `rediss://` with client certificates: the certificate (PEM)...
    #[arg(
        long,
        env = "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        requires = "redis_tls_key_file"
    )]
    redis_tls_cert_file: Option<PathBuf>,
    /// ...and its key.
    #[arg(
        long,
        env = "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        requires = "redis_tls_cert_file"
    )]
    redis_tls_key_file: Option<PathBuf>,
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    server: String,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(),
        Command::IssueCode(args) => runtime.block_on(issue_code(*args)),
        Command::NewClientSecret => new_client_secret(),
        Command::GenerateKey { alg, out } => generate_key(alg, out),
        Command::Check => runtime.block_on(check()),
        Command::Settings => {
            print!("{}", token_endpoint::config::settings_table());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn new_client_secret() -> Result<(), CliError> {
    let secret = frontend::random_token().map_err(|source| CliError::Rng {
        what: "client secret",
        source,
    })?;
    let hash = token_endpoint::clients::SecretHash::of(&secret).encoded();
    println!("client_secret = {secret}\nclient_secret_sha256 = \"{hash}\"");
    Ok(())
}

/// Why a command failed. Each names the setting or option at fault.
#[derive(Debug, thiserror::Error)]
enum CliError {
    #[error(transparent)]
    Config(#[from] token_endpoint::config::ConfigError),
    #[error(transparent)]
    Startup(#[from] token_endpoint::http::StartupError),
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    #[error("{option} {why}")]
    Argument { option: String, why: String },
    #[error("TOKEN_ENDPOINT_REDIS_URL: {0}")]
    Redis(token_endpoint::store::StoreError),
    #[error("cannot store the code: {0}")]
    Store(token_endpoint::store::StoreError),
    #[error("cannot make a random {what}: {source}")]
    Rng {
        what: &'static str,
        source: frontend::RngUnavailable,
    },
    #[error("cannot reach {url} (is `cargo run --release` running? with Redis, pass --redis-url): {source}")]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url}: {source}")]
    Unreadable { url: String, source: reqwest::Error },
    #[error("{url} answered {status}: {body}")]
    Refused {
        url: String,
        status: String,
        body: String,
    },
    #[error("key generation failed")]
    KeyGeneration,
    #[error("--out {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

fn serve() -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log_filter, settings.log_format);
    let scheme = if settings.tls.is_some() {
        "https"
    } else {
        "http"
    };
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(settings).await?;
        tracing::info!(port = app.port(), scheme, "listening");
        app.run_until_stopped().await.map_err(CliError::Serve)
    })
}

async fn issue_code(args: IssueCode) -> Result<(), CliError> {
    let method = match args.method {
        Method::S256 => ChallengeMethod::S256,
        Method::Plain => ChallengeMethod::Plain,
    };
    token_endpoint::config::check_key_prefix(&args.key_prefix).map_err(|why| {
        CliError::Argument {
            option: format!("--key-prefix {:?}", args.key_prefix),
            why: why.to_owned(),
        }
    })?;
    let claims = match &args.claims {
        None => None,
        Some(json) => Some(serde_json::from_str(json).map_err(|e| CliError::Argument {
            option: "--claims".into(),
            why: format!("is not a JSON object: {e}"),
        })?),
    };
    if let Some(jkt) = &args.dpop_jkt {
        if !token_endpoint::dpop::is_thumbprint(jkt) {
            return Err(CliError::Argument {
                option: "--dpop-jkt".into(),
                why: "is not a JWK SHA-256 thumbprint (43 characters of base64url, RFC 9449 section 10)".into(),
            });
        }
    }
    let resource = match args.resource.len() {
        0 => None,
        1 => args.resource.first().cloned().map(Resource::One),
        _ => Some(Resource::Many(args.resource.clone())),
    };
    let grant = Grant {
        client_id: args.client_id.clone(),
        redirect_uri: args.redirect_uri.clone(),
        sub: args.sub.clone(),
        scope: args.scope.clone(),
        nonce: args.nonce.clone(),
        auth_time: args.auth_time,
        acr: args.acr.clone(),
        amr: (!args.amr.is_empty()).then(|| args.amr.clone()),
        claims,
        resource,
        dpop_jkt: args.dpop_jkt.clone(),
        code_challenge_method: method,
    };
    if matches!(args.format, Format::Env) && args.count != 1 {
        return Err(CliError::Argument {
            option: "--format env".into(),
            why: "prints one code; use --format json with --count".into(),
        });
    }
    let ttl = Duration::from_secs(args.ttl);
    let issued = match &args.redis_url {
        Some(url) => {
            let (password, tls) = token_endpoint::service::redis_access(&RedisFiles {
                password: args.redis_password_file.clone(),
                ca: args.redis_tls_ca_file.clone(),
                client: args
                    .redis_tls_cert_file
                    .clone()
                    .zip(args.redis_tls_key_file.clone())
                    .map(|(cert, key)| CertificateFiles { cert, key }),
            })?;
            let store = CodeStore::Redis(Box::new(
                RedisStore::connect(&RedisSettings {
                    url: url.clone().into(),
                    topology: RedisTopology::named(
                        &args.redis_mode,
                        args.redis_sentinel_master.clone(),
                    )
                    .unwrap_or_default(),
                    keys: KeySpace::new(args.key_prefix.clone()),
                    connect_timeout: Duration::from_secs(2),
                    command_timeout: Duration::from_secs(2),
                    replica_acks: 0,
                    password,
                    tls,
                })
                .await
                .map_err(CliError::Redis)?,
            ));
            let mut issued = Vec::with_capacity(args.count);
            for _ in 0..args.count {
                issued.push(
                    frontend::issue_code(&store, grant.clone(), ttl)
                        .await
                        .map_err(|e| match e {
                            IssueError::Rng(source) => CliError::Rng {
                                what: "code",
                                source,
                            },
                            IssueError::Store(e) => CliError::Store(e),
                        })?,
                );
            }
            issued
                .into_iter()
                .map(|i| (i.code, i.verifier))
                .collect::<Vec<_>>()
        }
        None => issue_through_server(&args, &grant).await?,
    };
    for (code, verifier) in issued {
        match args.format {
            // One line of a seed file (loadtest/README.md): what the client
            // holds and sends.
            Format::Json => println!(
                "{}",
                serde_json::json!({
                    "code": code,
                    "code_verifier": verifier,
                    "client_id": args.client_id,
                    "redirect_uri": args.redirect_uri,
                })
            ),
            Format::Env => println!("CODE={code}\nCODE_VERIFIER={verifier}"),
        }
    }
    Ok(())
}

/// The embedded default keeps codes in its own memory: ask it to issue them.
async fn issue_through_server(
    args: &IssueCode,
    grant: &Grant,
) -> Result<Vec<(String, String)>, CliError> {
    let url = format!("{}/dev/codes", args.server.trim_end_matches('/'));
    let body = serde_json::json!({
        "client_id": grant.client_id, "redirect_uri": grant.redirect_uri, "sub": grant.sub,
        "scope": grant.scope, "nonce": grant.nonce, "auth_time": grant.auth_time, "acr": grant.acr,
        "amr": grant.amr, "claims": grant.claims, "resource": grant.resource,
        "code_challenge_method": grant.code_challenge_method, "ttl": args.ttl,
    });
    let client = reqwest::Client::new();
    let mut out = Vec::with_capacity(args.count);
    for _ in 0..args.count {
        let response = client
            .post(&url)
            .json(&body)
            .send()
            .await
            .map_err(|source| CliError::Unreachable {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let json: serde_json::Value =
            response
                .json()
                .await
                .map_err(|source| CliError::Unreadable {
                    url: url.clone(),
                    source,
                })?;
        let field = |name: &str| json.get(name).and_then(|v| v.as_str()).map(str::to_owned);
        match (status.is_success(), field("code"), field("code_verifier")) {
            (true, Some(code), Some(verifier)) => out.push((code, verifier)),
            _ => {
                return Err(CliError::Refused {
                    url,
                    status: status.to_string(),
                    body: json.to_string(),
                })
            }
        }
    }
    Ok(out)
}

/// `token-endpoint check`: what `serve` does up to binding, then the
/// settings in effect.
async fn check() -> Result<(), CliError> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log_filter, settings.log_format);
    if let Some(tls) = &settings.tls {
        token_endpoint::http::tls::server_config(tls)?;
    }
    let redeemer = token_endpoint::service::build(&settings).await?;
    let minter = redeemer.minter();
    let key = minter.access_token_key();
    println!("configuration OK: `serve` would start with these settings");
    for line in token_endpoint::config::effective(|name| std::env::var(name).ok()) {
        println!("{line}");
    }
    println!(
        "# store: {}; issuer: {}; signing key: kid {} ({}); clients: {}",
        redeemer.store().kind(),
        settings.issuer,
        key.kid(),
        token_endpoint::tokens::keys::alg_name(key.alg()),
        redeemer
            .clients()
            .iter()
            .map(|c| c.client_id.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    Ok(())
}

fn generate_key(alg: KeyAlg, out: Option<PathBuf>) -> Result<(), CliError> {
    use ring::rand::SystemRandom;
    use ring::signature::{EcdsaKeyPair, Ed25519KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
    let rng = SystemRandom::new();
    let der = match alg {
        KeyAlg::Es256 => EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| CliError::KeyGeneration)?
            .as_ref()
            .to_vec(),
        KeyAlg::EdDsa => Ed25519KeyPair::generate_pkcs8(&rng)
            .map_err(|_| CliError::KeyGeneration)?
            .as_ref()
            .to_vec(),
    };
    let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der));
    let Some(path) = out else {
        print!("{pem}");
        return Ok(());
    };
    // Created only once the key exists, private from its first byte, and
    // never over another key.
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options.open(&path)?.write_all(pem.as_bytes())
    };
    write().map_err(|source| CliError::Write {
        path: path.display().to_string(),
        source,
    })
}
