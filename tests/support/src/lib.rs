//! The test harness, shared by the black-box tests (`tests/api`), the load
//! generator's end-to-end tests and the benches: a real `redis-server` on a
//! free port (alone, as a Cluster, or under Sentinel), the real application
//! on port 0, and typed helpers that speak HTTP to it.

// A harness fails by panicking: that is how a test fails (the workspace's
// lints forbid it in production code).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]
// `new` here starts processes or writes files: not what `Default` promises.
#![allow(clippy::new_without_default)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::web;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde_json::Value;
use token_endpoint::config::{
    DevEndpoints, Limits, LogFormat, RedisFiles, Settings, StoreSettings,
};
use token_endpoint::contract::frontend::{self, Grant, IssuedCode};
use token_endpoint::http::AppState;
use token_endpoint::http::{build_state, Application};
use token_endpoint::store::{KeySpace, RedisTopology};

pub mod dpop;
mod tls;
pub use dpop::DpopKey;
pub use tls::TestPki;

/// Which code store the app under test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Redis,
    /// The same Redis reached over TLS (`rediss://`, a private CA).
    RedisTls,
    Embedded,
}

/// Generate one `#[tokio::test]` per store for an `async fn(Backend)`, so
/// every store passes the very same cases: Redis, Redis over TLS, and the
/// embedded map.
#[macro_export]
macro_rules! on_every_store {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn redis() {
                    super::$case($crate::Backend::Redis).await
                }
                #[tokio::test]
                async fn rediss() {
                    super::$case($crate::Backend::RedisTls).await
                }
                #[tokio::test]
                async fn embedded() {
                    super::$case($crate::Backend::Embedded).await
                }
            }
        )*
    };
}

/// One `#[tokio::test]` for an `async fn(Backend)` whose requests are
/// refused before any store is asked (CORS preflights, the request's
/// syntax, its content type, body size or method): it runs on the embedded
/// store only, and starts no `redis-server`. The case keeps its `Backend`
/// parameter and its test path (`<case>::embedded`), so it can move back
/// to [`on_every_store!`] unchanged once it depends on the store. Such a
/// case checks [`TestApp::store_takes`] where it claims the store was not
/// asked.
#[macro_export]
macro_rules! before_any_store {
    ($($case:ident),* $(,)?) => {
        $(
            mod $case {
                #[tokio::test]
                async fn embedded() {
                    super::$case($crate::Backend::Embedded).await
                }
            }
        )*
    };
}

/// A port for a server a test starts: free now on both `127.0.0.1` and
/// `0.0.0.0`, never handed out twice in this process, and below Linux's
/// ephemeral range (32768-60999). A port the kernel picked for `:0` sits in
/// that range, where the suite's many outgoing connections take their local
/// ports too: a server then bound to it could meet `Address already in use`
/// (seen in CI). Falls back to an ephemeral port if the low range is full.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const LOW: u32 = 20_000;
    const SPAN: u32 = 12_000;
    // Start where another run (another test binary) is unlikely to be.
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % SPAN,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    let free = |port: u16| {
        TcpListener::bind(("127.0.0.1", port)).is_ok()
            && TcpListener::bind(("0.0.0.0", port)).is_ok()
    };
    for _ in 0..SPAN {
        let port = (LOW + NEXT.fetch_add(1, Ordering::Relaxed) % SPAN) as u16;
        if free(port) {
            return port;
        }
    }
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind an ephemeral port")
        .port()
}

/// A private `redis-server`, killed when dropped.
pub struct RedisServer {
    child: Option<Child>,
    pub port: u16,
    _dir: tempfile::TempDir,
    /// Arguments beyond the defaults (a cluster node's, say).
    extra: Vec<String>,
    /// The TLS port, beside the plain one the harness itself uses.
    pub tls_port: Option<u16>,
    /// The PKI whose files a TLS server reads (again on a restart), when
    /// the server owns it ([`Self::start_tls_owning`]).
    pki: Option<TestPki>,
}

impl RedisServer {
    pub fn start() -> Self {
        Self::start_with(Vec::new())
    }

    /// A server if `redis-server` is installed, else `None` (a bench that
    /// needs one is skipped rather than failed).
    pub fn start_if_installed() -> Option<Self> {
        let installed = Command::new("redis-server")
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        installed.then(Self::start)
    }

    pub fn start_with(extra: Vec<String>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut server = Self {
            child: None,
            port,
            _dir: dir,
            extra,
            tls_port: None,
            pki: None,
        };
        server.spawn();
        server
    }

    /// A server that also speaks TLS, on [`Self::tls_port`], with `pki`'s
    /// server certificate; `client_certs`: it requires a client certificate
    /// signed by `pki`'s CA (`tls-auth-clients yes`). The plain port stays
    /// open for the harness's own checks.
    pub fn start_tls(pki: &TestPki, client_certs: bool, extra: Vec<String>) -> Self {
        let tls_port = free_port();
        let mut args = tls_args(pki, tls_port, client_certs);
        args.extend(extra);
        let mut server = Self::start_with(args);
        server.tls_port = Some(tls_port);
        server
    }

    /// A TLS server with a PKI of its own, kept as long as the server.
    pub fn start_tls_owning(pki: TestPki) -> Self {
        let mut server = Self::start_tls(&pki, false, vec![]);
        server.pki = Some(pki);
        server
    }

    /// The PKI of a server started with [`Self::start_tls_owning`].
    pub fn pki(&self) -> Option<&TestPki> {
        self.pki.as_ref()
    }

    /// `rediss://127.0.0.1:<tls port>`.
    pub fn tls_url(&self) -> String {
        format!(
            "rediss://127.0.0.1:{}",
            self.tls_port.expect("a server started with start_tls")
        )
    }

    fn spawn(&mut self) {
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .arg("--dir")
            .arg(self._dir.path())
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): the tests need a real Redis; \
                     install Debian's package `redis-server` (apt-get install redis-server)"
                )
            });
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if self.ping() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "redis-server on port {} did not answer PING within 10 s",
            self.port
        );
    }

    fn ping(&self) -> bool {
        let Ok(mut stream) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
        let mut buf = [0u8; 7];
        // A server that requires a password answers, too: it is up.
        stream.write_all(b"PING\r\n").is_ok()
            && stream.read_exact(&mut buf).is_ok()
            && (&buf == b"+PONG\r\n" || &buf == b"-NOAUTH")
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// `INFO replication` says `role:slave`.
    pub fn is_replica(&self) -> bool {
        self.info("replication")
            .is_some_and(|info| info.contains("role:slave"))
    }

    /// A replica whose link to its master is up.
    pub fn is_synced_replica(&self) -> bool {
        self.info("replication").is_some_and(|info| {
            info.contains("role:slave") && info.contains("master_link_status:up")
        })
    }

    /// A write to this master reaches a replica within 100 ms (`WAIT`).
    /// "Link up" on the replica is not enough: after a diskless sync the
    /// master holds the stream back until the replica's first
    /// acknowledgement, up to a second later.
    pub fn replicates_writes(&self) -> bool {
        let Ok(mut conn) = self.client().get_connection() else {
            return false;
        };
        redis::pipe()
            .cmd("SET")
            .arg("replication-probe")
            .arg(1)
            .ignore()
            .cmd("WAIT")
            .arg(1)
            .arg(100)
            .query::<(i64,)>(&mut conn)
            .is_ok_and(|(acked,)| acked >= 1)
    }

    fn info(&self, section: &str) -> Option<String> {
        self.info_of("INFO", section)
    }

    /// A command's text answer, `None` if the server cannot give it.
    fn info_of(&self, command: &str, arg: &str) -> Option<String> {
        let mut conn = self.client().get_connection().ok()?;
        redis::cmd(command).arg(arg).query(&mut conn).ok()
    }

    /// Kill the server (SIGKILL): the outage tests use this.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Start again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// A synchronous client for assertions about raw keys.
    pub fn client(&self) -> redis::Client {
        redis::Client::open(self.url()).expect("valid URL")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// `redis-server` arguments for TLS on `port` with `pki`'s server
/// certificate.
fn tls_args(pki: &TestPki, port: u16, client_certs: bool) -> Vec<String> {
    let path = |p: &std::path::Path| p.display().to_string();
    vec![
        "--tls-port".into(),
        port.to_string(),
        "--tls-cert-file".into(),
        path(&pki.server.cert),
        "--tls-key-file".into(),
        path(&pki.server.key),
        "--tls-ca-cert-file".into(),
        path(&pki.ca_file),
        "--tls-auth-clients".into(),
        if client_certs { "yes" } else { "no" }.into(),
    ]
}

/// The registry the test apps load: one client of each kind.
pub const REGISTRY: &str = r#"
[[clients]]
client_id = "public-app"
token_endpoint_auth_method = "none"
audience = ["https://api.test", "https://other.test"]
access_token_lifetime = 600
id_token_lifetime = 120
allowed_cors_origins = ["https://app.test", "HTTP://LOCALHOST:5173"]
redirect_uris = ["https://client.test/cb", "http://127.0.0.1/cb", "com.example.app:/cb"]

[[clients]]
client_id = "basic-app"
token_endpoint_auth_method = "client_secret_basic"
client_secret_sha256 = "HASH_OF_BASIC_SECRET"
audience = "https://api.test"

[[clients]]
client_id = "post-app"
token_endpoint_auth_method = "client_secret_post"
client_secret_sha256 = "HASH_OF_POST_SECRET"
audience = "https://api.test"

[[clients]]
client_id = "plain-app"
token_endpoint_auth_method = "none"
allow_plain_pkce = true
audience = "https://api.test"
allowed_cors_origins = ["https://plain.test"]
redirect_uris = ["https://client.test/cb"]

[[clients]]
client_id = "rsa-app"
token_endpoint_auth_method = "none"
audience = "https://api.test"
id_token_signed_response_alg = "RS256"

[[clients]]
client_id = "eddsa-app"
token_endpoint_auth_method = "none"
audience = "https://api.test"
id_token_signed_response_alg = "EdDSA"

[[clients]]
client_id = "long-id-app"
token_endpoint_auth_method = "none"
audience = "https://api.test"
access_token_lifetime = 60
id_token_lifetime = 900

[[clients]]
client_id = "dpop-app"
token_endpoint_auth_method = "none"
dpop_bound_access_tokens = true
audience = "https://api.test"
allowed_cors_origins = ["https://dpop.test"]
"#;

pub const BASIC_SECRET: &str = "basic-secret-0123456789";
pub const POST_SECRET: &str = "post-secret-0123456789";
pub const ISSUER: &str = "https://id.test";

/// A Redis Cluster of three masters, each a real `redis-server` on free
/// ports, with the slots spread by `redis-cli --cluster create`, and
/// optionally replicas (`nodes[3..]`). Killed when dropped.
pub struct RedisCluster {
    pub nodes: Vec<RedisServer>,
}

impl RedisCluster {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Three masters whose nodes also take `extra` arguments.
    pub fn start_with(extra: &[&str]) -> Self {
        Self::start_with_replicas(0, extra)
    }

    /// Three masters with `replicas` replicas each (`nodes[0..3]` are the
    /// masters), every node taking `extra` arguments as well.
    pub fn start_with_replicas(replicas: usize, extra: &[&str]) -> Self {
        Self::start_nodes(replicas, extra, None)
    }

    /// Three masters that speak TLS to clients and to each other (the
    /// cluster bus, `tls-cluster yes`), with `pki`'s server certificate;
    /// `CLUSTER SLOTS` on a TLS connection names the TLS ports.
    pub fn start_tls(pki: &TestPki, client_certs: bool) -> Self {
        Self::start_nodes(0, &[], Some((pki, client_certs)))
    }

    fn start_nodes(replicas: usize, extra: &[&str], tls: Option<(&TestPki, bool)>) -> Self {
        let nodes: Vec<RedisServer> = (0..3 * (1 + replicas))
            .map(|_| {
                let mut args: Vec<String> = vec![
                    "--cluster-enabled".into(),
                    "yes".into(),
                    // The bus port defaults to port + 10000, which may not
                    // exist for a high ephemeral port: pick a free one.
                    "--cluster-port".into(),
                    free_port().to_string(),
                    "--cluster-config-file".into(),
                    "nodes.conf".into(),
                ];
                args.extend(extra.iter().map(|a| a.to_string()));
                match tls {
                    Some((pki, client_certs)) => {
                        args.extend(["--tls-cluster".into(), "yes".into()]);
                        args.extend(["--tls-replication".into(), "yes".into()]);
                        RedisServer::start_tls(pki, client_certs, args)
                    }
                    None => RedisServer::start_with(args),
                }
            })
            .collect();
        let addresses: Vec<String> = nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect();
        let output = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addresses)
            .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
            .output()
            .expect("run redis-cli --cluster create (Debian: redis-tools)");
        assert!(
            output.status.success(),
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&output.stdout)
        );
        let cluster = Self { nodes };
        let deadline = Instant::now() + Duration::from_secs(30);
        while !cluster.is_ok() || !cluster.replicas_synced(replicas) {
            assert!(
                Instant::now() < deadline,
                "the cluster did not reach state ok with its replicas in sync"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        cluster
    }

    /// Each master has `replicas` replicas online (`INFO replication`).
    fn replicas_synced(&self, replicas: usize) -> bool {
        replicas == 0
            || self.nodes.iter().take(3).all(|master| {
                master.info("replication").is_some_and(|info| {
                    info.contains(&format!("connected_slaves:{replicas}"))
                        && info.matches("state=online").count() == replicas
                })
            })
    }

    /// `nodes[index]` says `cluster_state:ok`: a restarted master takes
    /// writes again only then.
    pub fn node_is_ok(&self, index: usize) -> bool {
        self.nodes[index]
            .info_of("CLUSTER", "INFO")
            .is_some_and(|info| info.contains("cluster_state:ok"))
    }

    /// Give the empty `slot` of `nodes[from]` to `nodes[to]`, telling every
    /// master at once (`CLUSTER SETSLOT ... NODE`), as a resharding does
    /// once the slot's keys have moved.
    pub fn move_empty_slot(&self, slot: u16, from: usize, to: usize) {
        let id = |node: &RedisServer| -> String {
            let mut conn = node.client().get_connection().expect("node");
            redis::cmd("CLUSTER")
                .arg("MYID")
                .query(&mut conn)
                .expect("CLUSTER MYID")
        };
        let (source, target) = (id(&self.nodes[from]), id(&self.nodes[to]));
        let setslot = |node: &RedisServer, args: &[&str]| {
            let mut conn = node.client().get_connection().expect("node");
            redis::cmd("CLUSTER")
                .arg("SETSLOT")
                .arg(slot)
                .arg(args)
                .query::<()>(&mut conn)
                .expect("CLUSTER SETSLOT");
        };
        setslot(&self.nodes[to], &["IMPORTING", &source]);
        setslot(&self.nodes[from], &["MIGRATING", &target]);
        for node in self.nodes.iter().take(3) {
            setslot(node, &["NODE", &target]);
        }
    }

    /// How many nodes hold at least one key (`DBSIZE`): whether codes
    /// really spread over the masters.
    pub fn nodes_holding_keys(&self) -> usize {
        self.nodes
            .iter()
            .filter(|node| {
                let mut conn = node.client().get_connection().expect("node");
                redis::cmd("DBSIZE")
                    .query::<u64>(&mut conn)
                    .expect("DBSIZE")
                    > 0
            })
            .count()
    }

    /// The slot ranges `CLUSTER SLOTS` says the node listening on `port`
    /// serves as a master, asked of any node that answers.
    pub fn slots_of(&self, port: u16) -> Vec<(u16, u16)> {
        for node in &self.nodes {
            let Ok(mut conn) = node.client().get_connection() else {
                continue;
            };
            let Ok(ranges) = redis::cmd("CLUSTER")
                .arg("SLOTS")
                .query::<Vec<Vec<redis::Value>>>(&mut conn)
            else {
                continue;
            };
            let int = |v: &redis::Value| match v {
                redis::Value::Int(i) => *i,
                other => panic!("CLUSTER SLOTS: {other:?} is not a number"),
            };
            return ranges
                .iter()
                .filter(|range| match &range[2] {
                    redis::Value::Array(master) => int(&master[1]) == i64::from(port),
                    _ => false,
                })
                .map(|range| (int(&range[0]) as u16, int(&range[1]) as u16))
                .collect();
        }
        panic!("no node answered CLUSTER SLOTS")
    }

    /// Every node says `cluster_state:ok`.
    fn is_ok(&self) -> bool {
        self.nodes.iter().all(|node| {
            let Ok(mut conn) = node.client().get_connection() else {
                return false;
            };
            redis::cmd("CLUSTER")
                .arg("INFO")
                .query::<String>(&mut conn)
                .is_ok_and(|info| info.contains("cluster_state:ok"))
        })
    }

    /// The seed-node list over TLS.
    pub fn tls_urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::tls_url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The seed-node list the service takes in TOKEN_ENDPOINT_REDIS_URL.
    pub fn urls(&self) -> String {
        self.nodes
            .iter()
            .map(RedisServer::url)
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Settings that point an app at this cluster.
    pub fn tweak(&self) -> impl FnOnce(&mut Settings) {
        let urls = self.urls();
        move |settings: &mut Settings| {
            settings.store = StoreSettings::Redis {
                url: urls.into(),
                topology: RedisTopology::Cluster,
                keys: KeySpace::default(),
                connect_timeout: Duration::from_millis(1000),
                command_timeout: Duration::from_millis(1000),
                replica_acks: 0,
                files: RedisFiles::default(),
            }
        }
    }
}

/// A Redis Sentinel group: a master, one replica, and three sentinels
/// (quorum 2) watching it as `mymaster`. Killed when dropped.
pub struct RedisSentinelGroup {
    pub master: RedisServer,
    pub replica: RedisServer,
    /// Replicas beyond the first.
    pub more_replicas: Vec<RedisServer>,
    sentinels: Vec<(Child, u16)>,
    /// The sentinels' TLS ports, in a group started with TLS.
    sentinel_tls_ports: Vec<u16>,
    _dir: tempfile::TempDir,
}

pub const SENTINEL_MASTER: &str = "mymaster";

impl RedisSentinelGroup {
    pub fn start() -> Self {
        Self::start_with_replicas(1)
    }

    /// A master with `replicas` replicas (at least one), watched by three
    /// sentinels. Every replica must hold a write (`min-replicas-to-write`
    /// and the app's `REPLICA_ACKS` both equal `replicas`): with fewer, a
    /// failover can redeem a code twice (docs/configuration.md).
    pub fn start_with_replicas(replicas: usize) -> Self {
        Self::start_group(replicas, None)
    }

    /// A master and a replica that speak TLS to clients and to each other
    /// (`tls-replication yes`), and sentinels that speak TLS to clients and
    /// to them, all with `pki`'s server certificate. The sentinels name the
    /// master's TLS port.
    pub fn start_tls(pki: &TestPki) -> Self {
        Self::start_group(1, Some(pki))
    }

    fn start_group(replicas: usize, tls: Option<&TestPki>) -> Self {
        let min_replicas = replicas.max(1).to_string();
        // As docs/configuration.md asks of a Sentinel deployment: a master with no
        // replica refuses writes, so a take that could not be replicated
        // never consumes its code. And sync a new replica at once, not
        // after the default 5 s wait for more replicas.
        let settings = [
            "--min-replicas-to-write",
            &min_replicas,
            "--min-replicas-max-lag",
            "10",
            "--repl-diskless-sync-delay",
            "0",
        ]
        .map(String::from);
        let start = |mut args: Vec<String>| match tls {
            Some(pki) => {
                args.extend(["--tls-replication".into(), "yes".into()]);
                RedisServer::start_tls(pki, false, args)
            }
            None => RedisServer::start_with(args),
        };
        let master = start(settings.to_vec());
        // Replicas and sentinels reach the master on its TLS port, if any.
        let master_port = master.tls_port.unwrap_or(master.port);
        let mut replica_settings = settings.to_vec();
        replica_settings.extend([
            "--replicaof".into(),
            "127.0.0.1".into(),
            master_port.to_string(),
        ]);
        let replica = start(replica_settings.clone());
        let more_replicas = (1..replicas)
            .map(|_| start(replica_settings.clone()))
            .collect();
        let dir = tempfile::tempdir().expect("temp dir");
        let mut sentinel_tls_ports = Vec::new();
        let sentinels = (0..3)
            .map(|i| {
                let port = free_port();
                let tls_conf = match tls {
                    Some(pki) => {
                        let tls_port = free_port();
                        sentinel_tls_ports.push(tls_port);
                        tls_args(pki, tls_port, false)
                            .chunks(2)
                            .map(|pair| {
                                format!("{} {}\n", pair[0].trim_start_matches("--"), pair[1])
                            })
                            .collect::<String>()
                            + "tls-replication yes\n"
                    }
                    None => String::new(),
                };
                // Sentinels rewrite their configuration file: one each.
                let conf = dir.path().join(format!("sentinel-{i}.conf"));
                std::fs::write(
                    &conf,
                    format!(
                        "port {port}\nbind 127.0.0.1\ndir {dir}\n{tls_conf}\
                         sentinel monitor {SENTINEL_MASTER} 127.0.0.1 {master_port} 2\n\
                         sentinel down-after-milliseconds {SENTINEL_MASTER} 1000\n\
                         sentinel failover-timeout {SENTINEL_MASTER} 3000\n",
                        dir = dir.path().display(),
                    ),
                )
                .expect("sentinel config");
                let child = Command::new("redis-server")
                    .arg(&conf)
                    .arg("--sentinel")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("start redis-server --sentinel");
                (child, port)
            })
            .collect();
        let group = Self {
            master,
            replica,
            more_replicas,
            sentinels,
            sentinel_tls_ports,
            _dir: dir,
        };
        // Failover needs sentinels that know the replica, which they learn
        // from the master's INFO (every 10 s at first), and a replica that
        // holds the data: one still waiting for its first sync would be
        // promoted empty, and every code with it.
        let deadline = Instant::now() + Duration::from_secs(30);
        while !group.sentinels_know_the_replica() || !group.master.replicates_writes() {
            assert!(
                Instant::now() < deadline,
                "the sentinels did not discover the replica"
            );
            std::thread::sleep(Duration::from_millis(200));
        }
        group
    }

    fn sentinel(&self, index: usize) -> redis::Connection {
        let port = self.sentinels[index].1;
        redis::Client::open(format!("redis://127.0.0.1:{port}"))
            .and_then(|c| c.get_connection())
            .expect("a sentinel")
    }

    fn sentinels_know_the_replica(&self) -> bool {
        (0..self.sentinels.len()).all(|i| {
            let Ok(client) =
                redis::Client::open(format!("redis://127.0.0.1:{}", self.sentinels[i].1))
            else {
                return false;
            };
            let Ok(mut conn) = client.get_connection() else {
                return false;
            };
            redis::cmd("SENTINEL")
                .arg(&["REPLICAS", SENTINEL_MASTER])
                .query::<Vec<redis::Value>>(&mut conn)
                .is_ok_and(|replicas| replicas.len() > self.more_replicas.len())
        })
    }

    /// The port the sentinels currently name as master.
    pub fn master_port(&self) -> u16 {
        let (_host, port): (String, u16) = redis::cmd("SENTINEL")
            .arg(&["GET-MASTER-ADDR-BY-NAME", SENTINEL_MASTER])
            .query(&mut self.sentinel(0))
            .expect("master address");
        port
    }

    /// Ask the sentinels to promote the replica now.
    pub fn failover(&self) {
        let _: () = redis::cmd("SENTINEL")
            .arg(&["FAILOVER", SENTINEL_MASTER])
            .query(&mut self.sentinel(0))
            .expect("SENTINEL FAILOVER");
    }

    /// The sentinels over TLS, as TOKEN_ENDPOINT_REDIS_URL lists them.
    pub fn tls_urls(&self) -> String {
        self.sentinel_tls_ports
            .iter()
            .map(|port| format!("rediss://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Settings that point an app at this group through its sentinels.
    pub fn tweak(&self) -> impl FnOnce(&mut Settings) {
        let urls = self
            .sentinels
            .iter()
            .map(|(_, port)| format!("redis://127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",");
        let replica_acks = 1 + self.more_replicas.len() as u32;
        move |settings: &mut Settings| {
            settings.store = StoreSettings::Redis {
                url: urls.into(),
                topology: RedisTopology::Sentinel {
                    master: SENTINEL_MASTER.into(),
                },
                keys: KeySpace::default(),
                connect_timeout: Duration::from_millis(1000),
                command_timeout: Duration::from_millis(1000),
                // Every replica (1, the production default behind Sentinel,
                // for one).
                replica_acks,
                files: RedisFiles::default(),
            }
        }
    }
}

impl Drop for RedisSentinelGroup {
    fn drop(&mut self) {
        for (child, _) in &mut self.sentinels {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn fixture(name: &str) -> PathBuf {
    // This crate is tests/support; the fixtures are tests/fixtures.
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures")
        .join(name)
}

/// Files the app reads at start-up, in a private directory.
pub struct AppFiles {
    pub dir: tempfile::TempDir,
    pub registry: PathBuf,
    pub es256_key: PathBuf,
}

impl AppFiles {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let registry = dir.path().join("clients.toml");
        let toml = REGISTRY
            .replace(
                "HASH_OF_BASIC_SECRET",
                &token_endpoint::clients::SecretHash::of(BASIC_SECRET).encoded(),
            )
            .replace(
                "HASH_OF_POST_SECRET",
                &token_endpoint::clients::SecretHash::of(POST_SECRET).encoded(),
            );
        std::fs::write(&registry, toml).expect("write registry");
        let es256_key = dir.path().join("es256.pem");
        let pkcs8 = ring::signature::EcdsaKeyPair::generate_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &ring::rand::SystemRandom::new(),
        )
        .expect("generate P-256");
        std::fs::write(
            &es256_key,
            pem::encode(&pem::Pem::new("PRIVATE KEY", pkcs8.as_ref().to_vec())),
        )
        .expect("write key");
        Self {
            dir,
            registry,
            es256_key,
        }
    }

    /// The signing keys every test app loads: ES256 first (it signs access
    /// tokens), then RS256 and EdDSA for the clients that ask for them.
    pub fn signing_keys(&self) -> Vec<PathBuf> {
        vec![
            self.es256_key.clone(),
            fixture("rsa-2048.test-only.pem"),
            fixture("ed25519.test-only.pem"),
        ]
    }

    /// `TOKEN_ENDPOINT_SIGNING_KEYS` for [`Self::signing_keys`].
    pub fn signing_keys_env(&self) -> String {
        self.signing_keys()
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// The settings of a test app: every setting as in production, port 0.
pub fn settings(files: &AppFiles, redis: Option<&RedisServer>) -> Settings {
    Settings {
        bind: "127.0.0.1:0".parse().expect("address"),
        tls: None,
        workers: 2,
        issuer: ISSUER.into(),
        authorization_endpoint: format!("{ISSUER}/authorize"),
        store: match redis {
            None => StoreSettings::Embedded,
            Some(redis) => StoreSettings::Redis {
                url: redis.url().into(),
                topology: RedisTopology::Standalone,
                keys: KeySpace::default(),
                connect_timeout: Duration::from_millis(500),
                command_timeout: Duration::from_millis(250),
                replica_acks: 0,
                files: RedisFiles::default(),
            },
        },
        clients_file: Some(files.registry.clone()),
        signing_keys: files.signing_keys(),
        verification_keys: vec![fixture("ec-p256-public.test-only.pem")],
        max_body_bytes: 8192,
        shutdown_delay: Duration::ZERO,
        drain_timeout: Duration::from_secs(5),
        log_filter: "info".into(),
        log_format: LogFormat::Text,
        limits: Limits::default(),
        dev_endpoints: DevEndpoints::Off,
        cors_max_age: Duration::from_secs(7200),
        dpop: Default::default(),
    }
}

/// A running app and what a test needs to talk to it.
pub struct TestApp {
    pub address: String,
    pub state: web::Data<AppState>,
    pub http: reqwest::Client,
    pub redis: Option<Arc<std::sync::Mutex<RedisServer>>>,
    pub files: Arc<AppFiles>,
    handle: actix_web::dev::ServerHandle,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        // Stop without waiting: the runtime is going away with the test.
        drop(self.handle.stop(false));
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    let server = match backend {
        Backend::Redis => Some(RedisServer::start()),
        Backend::RedisTls => Some(RedisServer::start_tls_owning(TestPki::new())),
        Backend::Embedded => None,
    };
    // Over TLS: the server's TLS port, trusting its CA.
    let tls = server.as_ref().and_then(|s| {
        let pki = s.pki()?;
        Some((s.tls_url(), pki.ca_file.clone()))
    });
    let redis = server.map(|s| Arc::new(std::sync::Mutex::new(s)));
    spawn_app_on(redis, Arc::new(AppFiles::new()), |settings| {
        if let (Some((tls_url, ca)), StoreSettings::Redis { url, files, .. }) =
            (tls, &mut settings.store)
        {
            *url = tls_url.into();
            files.ca = Some(ca);
        }
    })
    .await
}

/// Start an app on `redis` (or the embedded store), with `tweak` applied to
/// its settings. Several apps may share one Redis and one set of files.
pub async fn spawn_app_on(
    redis: Option<Arc<std::sync::Mutex<RedisServer>>>,
    files: Arc<AppFiles>,
    tweak: impl FnOnce(&mut Settings),
) -> TestApp {
    let mut settings = {
        let guard = redis.as_ref().map(|r| r.lock().expect("redis lock"));
        settings(&files, guard.as_deref())
    };
    tweak(&mut settings);
    let state = web::Data::new(build_state(&settings).await.expect("app state builds"));
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    let app = Application::serve(state.clone(), listener, &settings).expect("serve");
    let address = format!("http://127.0.0.1:{}", app.port());
    let handle = app.handle();
    tokio::spawn(app.run_until_stopped());
    TestApp {
        address,
        state,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .expect("http client"),
        redis,
        files,
        handle,
    }
}

/// A grant as the frontend would store it for `client_id`.
pub fn grant(client_id: &str) -> Grant {
    let mut grant = Grant::new(client_id, "user-1", "openid profile");
    grant.redirect_uri = Some("https://client.test/cb".into());
    grant
}

/// An HTTP answer, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: Value,
}

impl Answer {
    pub fn error(&self) -> &str {
        self.body["error"].as_str().unwrap_or("<no error member>")
    }

    pub fn description(&self) -> &str {
        self.body["error_description"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// Assert an RFC 6749 §5.2 error response.
    #[track_caller]
    pub fn assert_error(&self, status: u16, error: &str) {
        assert_eq!(
            (self.status, self.error()),
            (status, error),
            "unexpected answer: {self:?}"
        );
        assert!(
            !self.description().is_empty(),
            "no error_description: {self:?}"
        );
        assert_eq!(self.header("cache-control"), Some("no-store"));
    }
}

impl TestApp {
    pub fn token_url(&self) -> String {
        format!("{}/oauth/token", self.address)
    }

    /// Store a code for `grant`, as the login frontend does.
    pub async fn issue(&self, grant: Grant) -> IssuedCode {
        frontend::issue_code(self.state.redeemer.store(), grant, Duration::from_secs(60))
            .await
            .expect("store the code")
    }

    /// Store raw bytes under `code`: a broken frontend.
    pub async fn insert_raw(&self, code: &str, raw: &str, ttl: Duration) {
        self.state
            .redeemer
            .store()
            .insert_raw(code, raw, ttl)
            .await
            .expect("store raw record");
    }

    /// The form of a correct redemption of `issued` by a public client.
    pub fn form(issued: &IssuedCode, client_id: &str) -> Vec<(&'static str, String)> {
        vec![
            ("grant_type", "authorization_code".into()),
            ("code", issued.code.clone()),
            ("redirect_uri", "https://client.test/cb".into()),
            ("client_id", client_id.into()),
            ("code_verifier", issued.verifier.clone()),
        ]
    }

    pub async fn post_form(&self, form: &[(&str, String)]) -> Answer {
        self.send(self.http.post(self.token_url()).form(form)).await
    }

    /// `form` with each of `proofs` as a `DPoP` header.
    pub async fn post_form_dpop(&self, form: &[(&str, String)], proofs: &[&str]) -> Answer {
        let mut request = self.http.post(self.token_url()).form(form);
        for proof in proofs {
            request = request.header("DPoP", *proof);
        }
        self.send(request).await
    }

    pub async fn post_form_basic(&self, form: &[(&str, String)], id: &str, secret: &str) -> Answer {
        self.send(
            self.http
                .post(self.token_url())
                .basic_auth(id, Some(secret))
                .form(form),
        )
        .await
    }

    pub async fn send(&self, request: reqwest::RequestBuilder) -> Answer {
        let response = request.send().await.expect("the service answers");
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let bytes = response.bytes().await.expect("read body");
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()));
        Answer {
            status,
            headers,
            body,
        }
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.http
            .get(format!("{}{}", self.address, path))
            .send()
            .await
            .expect("the service answers")
    }

    pub async fn jwks(&self) -> Value {
        self.get("/.well-known/jwks.json")
            .await
            .json()
            .await
            .expect("JWKS is JSON")
    }

    pub async fn metrics(&self) -> String {
        self.get("/metrics")
            .await
            .text()
            .await
            .expect("metrics text")
    }

    /// `token_requests_total{outcome, reason}`.
    pub async fn requests(&self, outcome: &str, reason: &str) -> f64 {
        self.metric(&format!(
            "token_requests_total{{outcome=\"{outcome}\",reason=\"{reason}\"}}"
        ))
        .await
    }

    /// How many times a redemption asked the code store to take a code
    /// (`code_store_duration_seconds_count`), on every store alike: the
    /// embedded store sends no command a test could count in Redis.
    pub async fn store_takes(&self) -> f64 {
        self.metric("code_store_duration_seconds_count").await
    }

    /// The value of one sample in the metrics text, 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        self.metrics()
            .await
            .lines()
            .find_map(|line| line.strip_prefix(sample)?.trim().parse().ok())
            .unwrap_or(0.0)
    }
}

/// The decoded (unverified) header and claims of a JWT.
pub fn jwt_parts(token: &str) -> (Value, Value) {
    let mut parts = token.split('.');
    let mut next = || {
        let part = parts.next().expect("JWT has three parts");
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).expect("base64url")).expect("JSON")
    };
    let header = next();
    let claims = next();
    (header, claims)
}

/// Verify a JWT's signature against the published JWKS, independently of the
/// minter (jsonwebtoken's decoder, the key looked up by `kid`), and return its claims.
pub fn verify_jwt(token: &str, jwks: &Value, audience: &str) -> Value {
    let (header, _) = jwt_parts(token);
    let kid = header["kid"].as_str().expect("kid");
    let jwk_json = jwks["keys"]
        .as_array()
        .expect("keys")
        .iter()
        .find(|k| k["kid"] == kid)
        .unwrap_or_else(|| panic!("kid {kid} is not in the JWKS"));
    let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(jwk_json.clone()).expect("JWK parses");
    let key = jsonwebtoken::DecodingKey::from_jwk(&jwk).expect("decoding key");
    let alg: jsonwebtoken::Algorithm = serde_json::from_value(header["alg"].clone()).expect("alg");
    let mut validation = jsonwebtoken::Validation::new(alg);
    validation.set_audience(&[audience]);
    validation.set_issuer(&[ISSUER]);
    validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<Value>(token, &key, &validation)
        .unwrap_or_else(|e| panic!("token does not verify: {e}"))
        .claims
}

/// A current-thread tokio runtime, like each actix-web worker's.
pub fn current_thread_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime builds")
}
