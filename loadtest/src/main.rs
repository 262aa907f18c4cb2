//! `loadgen`: the token endpoint's load generator. It seeds codes through
//! the frontend contract before the measured window, redeems each exactly
//! once over keep-alive connections (closed or open loop, optionally mixed
//! with replays, wrong verifiers and unknown codes), and fails unless every
//! code got tokens exactly once. See `loadtest/README.md`.
//!
//! # Layout
//! - [`seed`]: codes from Redis (pipelined), `POST /dev/codes` or a seed file.
//! - [`plan`]: every request, prebuilt, with the mix placed among them.
//! - [`dpop`]: DPoP proofs, one per request, signed before the window.
//! - [`run`]: the connections, the open/closed loop, the tallies.
//! - [`procstat`]: CPU time and memory of the processes under test.
//! - [`report`]: the verdict, the table and the JSON summary.
//! - [`http1`]: a minimal keep-alive HTTP/1.1 client connection.

// The workspace's lints forbid panics in production code; unit tests may.
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

mod dpop;
mod http1;
mod plan;
mod procstat;
mod report;
mod run;
mod seed;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use token_endpoint::store::{KeySpace, RedisTopology};

use crate::plan::{Mix, Target};
use crate::run::{Mode, Options};
use crate::seed::{GrantTemplate, Seed};

#[derive(Parser)]
#[command(version, about = "Load generator for the token endpoint")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "parsed once at start-up; a few hundred bytes on the stack cost nothing"
)]
enum Command {
    /// Seed codes (not timed), redeem each exactly once, report.
    Run(RunArgs),
    /// Write a throwaway CA and a certificate for `localhost` and
    /// `127.0.0.1` it signed (`ca.pem`, `server.pem`, `server.key`): the TLS
    /// steps of loadtest/run.sh.
    TlsCerts {
        /// The directory to write them to.
        #[arg(long)]
        out: PathBuf,
    },
    /// Seed codes and write them to a seed file (for k6, or `run --codes-file`).
    Seed {
        #[command(flatten)]
        source: SourceArgs,
        /// Where to write the NDJSON seed file.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
struct SourceArgs {
    /// The service's base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    target: String,
    /// Seed into this Redis, as the login frontend does. Without it (and
    /// without --codes-file), codes come from the embedded default's
    /// `POST /dev/codes`.
    #[arg(long, env = "TOKEN_ENDPOINT_REDIS_URL")]
    redis_url: Option<String>,
    /// How --redis-url is shaped, as the service reads it: one server,
    /// Cluster seed nodes, or sentinels.
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
    /// The service's key prefix.
    #[arg(
        long,
        env = "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
        default_value = "oauth:"
    )]
    key_prefix: String,
    /// How many codes to seed.
    #[arg(long, default_value_t = 100_000)]
    codes: usize,
    #[arg(long, default_value = "demo")]
    client_id: String,
    /// The redirect_uri of the grants; `--redirect-uri ''` for none.
    #[arg(long, default_value = "https://app.test/cb")]
    redirect_uri: String,
    #[arg(long, default_value = "alice")]
    sub: String,
    #[arg(long, default_value = "openid profile")]
    scope: String,
    /// Code lifetime in seconds: long enough for seeding plus the run.
    #[arg(long, default_value_t = 600)]
    code_ttl: u64,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    source: SourceArgs,
    /// Redeem the codes of this seed file instead of seeding new ones.
    #[arg(long)]
    codes_file: Option<PathBuf>,
    /// Keep-alive connections.
    #[arg(long, short = 'c', default_value_t = 64)]
    connections: usize,
    /// Open loop: this many requests per second, whatever the latency.
    /// Without it, closed loop.
    #[arg(long)]
    rate: Option<f64>,
    /// Shares of other requests, e.g. `replay=0.05,wrong_verifier=0.02,unknown=0.01`.
    #[arg(long, default_value = "")]
    mix: Mix,
    /// Runtime threads of the generator itself (it shares the machine).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Also write the summary as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
    /// Send every token request with this `Origin`, as a browser app would
    /// (the client must allow it: `allowed_cors_origins`).
    #[arg(long)]
    origin: Option<String>,
    /// Every request on a new connection (`Connection: close`): over
    /// `https://`, a TLS handshake per request.
    #[arg(long)]
    close: bool,
    /// For an `https://` target: the PEM CA certificate(s) to trust.
    #[arg(long)]
    ca_file: Option<PathBuf>,
    /// Send every token request with a DPoP proof (RFC 9449) of its own,
    /// signed (ES256) before the window: the tokens must come back bound
    /// (`token_type` `DPoP`).
    #[arg(long)]
    dpop: bool,
    /// DPoP: how many client keys sign the proofs, taken in turn (default:
    /// one per connection).
    #[arg(long)]
    dpop_keys: Option<usize>,
    /// DPoP: the service's issuer; proofs are for `POST {issuer}/oauth/token`
    /// (their `htu`). Default: --target.
    #[arg(long, env = "TOKEN_ENDPOINT_ISSUER")]
    issuer: Option<String>,
    /// DPoP: the oldest proof the service accepts, in seconds
    /// (its TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS). Proofs are signed
    /// before the run, so an open-loop run longer than this is refused, and
    /// a closed-loop run that outlasts it is flagged.
    #[arg(long, default_value_t = 60)]
    dpop_max_age: u64,
    /// No progress line.
    #[arg(long)]
    quiet: bool,
    /// Report CPU time per request and memory of this process, as
    /// `name=pid` (repeatable; Linux). The generator's own is always reported.
    #[arg(long = "watch")]
    watch: Vec<procstat::Watched>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let threads = match &cli.command {
        Command::Run(args) => args.threads.max(1),
        Command::Seed { .. } | Command::TlsCerts { .. } => 1,
    };
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    };
    let result = match runtime {
        Ok(runtime) => runtime.block_on(async {
            match cli.command {
                Command::Run(args) => run(args).await,
                Command::TlsCerts { out } => tls_certs(&out).map(|()| true),
                Command::Seed { source, out } => {
                    let seeds = seed(&source).await?;
                    seed::write_file(&out, &seeds)?;
                    eprintln!("wrote {} codes to {}", seeds.len(), out.display());
                    Ok(true)
                }
            }
        }),
        Err(e) => Err(format!("cannot start the runtime: {e}")),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

async fn run(args: RunArgs) -> Result<bool, String> {
    let (addr, host) = resolve(&args.source.target).await?;
    let tls = match (args.source.target.starts_with("https://"), &args.ca_file) {
        (true, Some(ca)) => {
            let pem = std::fs::read(ca).map_err(|e| format!("--ca-file {}: {e}", ca.display()))?;
            let name = host
                .rsplit_once(':')
                .map_or(host.as_str(), |(name, _)| name);
            Some(http1::Tls::new(&pem, name.trim_matches(['[', ']']))?)
        }
        (true, None) => return Err("an https:// --target needs --ca-file".into()),
        (false, Some(_)) => return Err("--ca-file is for an https:// --target".into()),
        (false, None) => None,
    };
    let seeds = match &args.codes_file {
        Some(path) => seed::read_file(path)?,
        None => seed(&args.source).await?,
    };
    if seeds.is_empty() {
        return Err("no codes to redeem".into());
    }
    let mode = match args.rate {
        Some(rate) if rate > 0.0 && rate.is_finite() => Mode::Open { rate },
        Some(rate) => return Err(format!("--rate {rate}: must be a positive number")),
        None => Mode::Closed,
    };
    let connections = args.connections.max(1);
    let redirect = args.source.redirect_uri.as_str();
    let target = Target {
        host: &host,
        client_id: &args.source.client_id,
        redirect_uri: (!redirect.is_empty()).then_some(redirect),
        origin: args.origin.as_deref(),
        close: args.close,
    };
    // A replay goes out two rounds of connections after its redemption, so
    // it usually finds the code taken rather than racing for it.
    let mut plan = plan::build(&seeds, args.mix, &target, 2 * connections);
    drop(seeds);
    let dpop = if args.dpop {
        Some(sign_proofs(&args, &mut plan.jobs, mode, connections)?)
    } else {
        None
    };
    let options = Options {
        addr,
        tls,
        connections,
        mode,
        progress: !args.quiet,
        watch: args.watch,
        dpop: dpop.is_some(),
    };
    let outcome = run::run(plan, &options).await?;
    let mut summary = report::Summary::new(&outcome, mode, connections, args.mix.to_string());
    summary.dpop = dpop;
    summary.print();
    if let Some(dpop) = &summary.dpop {
        // The oldest proof was signed before the window opened.
        let oldest = dpop.signing_s + summary.elapsed_s;
        if !summary.passed && oldest > args.dpop_max_age as f64 {
            eprintln!(
                "note: the last proofs were {oldest:.0} s old when sent, over --dpop-max-age {} s: \
                 the service may have refused them as too old (raise its \
                 TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS and --dpop-max-age, or send fewer codes)",
                args.dpop_max_age
            );
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_string_pretty(&summary).map_err(|e| e.to_string())?;
        std::fs::write(path, json).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(summary.passed)
}

/// A DPoP proof for every job, signed now (not measured). Refuses an open
/// loop planned to outlast the proofs' age limit: its late requests would
/// be refused for it, and the run would measure that.
fn sign_proofs(
    args: &RunArgs,
    jobs: &mut [plan::Job],
    mode: Mode,
    connections: usize,
) -> Result<report::Dpop, String> {
    let issuer = args
        .issuer
        .as_deref()
        .unwrap_or(&args.source.target)
        .trim_end_matches('/');
    let htu = format!("{issuer}/oauth/token");
    if let Mode::Open { rate } = mode {
        let seconds = jobs.len() as f64 / rate;
        if seconds + 5.0 > args.dpop_max_age as f64 {
            return Err(format!(
                "--dpop: {} requests at {rate}/s take {seconds:.0} s, and proofs are signed before \
                 the run: the service accepts them for --dpop-max-age {} s. Raise its \
                 TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS (up to 600) and --dpop-max-age, or send \
                 fewer codes",
                jobs.len(),
                args.dpop_max_age
            ));
        }
    }
    let keys = args.dpop_keys.unwrap_or(connections).max(1);
    let started = std::time::Instant::now();
    let signer = dpop::ProofSigner::new(&htu, keys)?;
    signer.sign_all(jobs)?;
    let signing_s = started.elapsed().as_secs_f64();
    eprintln!(
        "signed {} DPoP proofs (ES256, {keys} keys, htu {htu}) in {signing_s:.2} s (not measured)",
        jobs.len()
    );
    Ok(report::Dpop {
        keys,
        htu,
        signing_s,
    })
}

fn tls_certs(out: &std::path::Path) -> Result<(), String> {
    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair,
        KeyUsagePurpose,
    };
    let e = |e: rcgen::Error| e.to_string();
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(e)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    // Names of their own: a leaf whose issuer name were its subject name
    // would look self-signed to OpenSSL (redis-benchmark, Python).
    ca.distinguished_name
        .push(DnType::CommonName, "token-endpoint loadtest CA");
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(e)?).map_err(e)?;
    let key = KeyPair::generate().map_err(e)?;
    let mut server =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).map_err(e)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    let server = server.signed_by(&key, &ca).map_err(e)?;
    std::fs::create_dir_all(out).map_err(|e| format!("{}: {e}", out.display()))?;
    for (name, pem) in [
        ("ca.pem", ca.pem()),
        ("server.pem", server.pem()),
        ("server.key", key.serialize_pem()),
    ] {
        let path = out.join(name);
        std::fs::write(&path, pem).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}

async fn seed(source: &SourceArgs) -> Result<Vec<Seed>, String> {
    let template = GrantTemplate {
        client_id: source.client_id.clone(),
        redirect_uri: (!source.redirect_uri.is_empty()).then(|| source.redirect_uri.clone()),
        sub: source.sub.clone(),
        scope: source.scope.clone(),
        ttl: Duration::from_secs(source.code_ttl),
    };
    token_endpoint::config::check_key_prefix(&source.key_prefix)
        .map_err(|why| format!("--key-prefix {:?} {why}", source.key_prefix))?;
    let started = std::time::Instant::now();
    let seeds = match &source.redis_url {
        Some(url) => {
            let keys = KeySpace::new(source.key_prefix.clone());
            match RedisTopology::named(&source.redis_mode, source.redis_sentinel_master.clone())
                .unwrap_or_default()
            {
                RedisTopology::Standalone => {
                    seed::into_redis(url, &keys, source.codes, &template).await?
                }
                topology => seed::into_store(url, topology, &keys, source.codes, &template).await?,
            }
        }
        None if source.target.starts_with("https://") => {
            return Err(
                "seed an https:// --target through --redis-url or --codes-file (/dev/codes is a demo over http://)"
                    .into(),
            )
        }
        None => {
            let (addr, host) = resolve(&source.target).await?;
            seed::through_server(addr, &host, source.codes, &template).await?
        }
    };
    eprintln!(
        "seeded {} codes in {:.2} s (not measured)",
        seeds.len(),
        started.elapsed().as_secs_f64()
    );
    Ok(seeds)
}

/// `http://host:port` -> the address to connect to and the `Host` header.
async fn resolve(target: &str) -> Result<(SocketAddr, String), String> {
    let (rest, default_port) = match target.strip_prefix("https://") {
        Some(rest) => (Some(rest), 443),
        None => (target.strip_prefix("http://"), 80),
    };
    let rest =
        rest.ok_or_else(|| format!("--target {target:?}: give an http:// or https:// URL"))?;
    let host = rest.trim_end_matches('/');
    if host.contains('/') {
        return Err(format!(
            "--target {target:?}: give the base URL, without a path"
        ));
    }
    let with_port = if host.contains(':') {
        host.to_owned()
    } else {
        format!("{host}:{default_port}")
    };
    let addr = tokio::net::lookup_host(&with_port)
        .await
        .map_err(|e| format!("--target {target:?}: {e}"))?
        .next()
        .ok_or_else(|| format!("--target {target:?}: no address"))?;
    Ok((addr, host.to_owned()))
}
