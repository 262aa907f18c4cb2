//! The Redis store: two round trips per redemption, native commands only:
//! `GET` the record (validated by the grant, so a refused request consumes
//! nothing), then `MULTI` `GETDEL` + `SET NX` of the used marker. The take's
//! sequence is [`super::codes::take`]; here are its steps on Redis, the
//! replicas' acknowledgement after it, and the Sentinel miss check around it.

use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwapOption;
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::sentinel::{SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncCommands, ClientTlsConfig, ConnectionAddr, ConnectionInfo, IntoConnectionInfo,
    RedisFuture, RedisResult, SetExpiry, SetOptions, TlsCertificates, TlsMode, Value,
};
use secrecy::{ExposeSecret, SecretString};

use super::cluster::{ClusterRouter, ClusterSettings};
use super::codes::{self, Consumed, Primitives, Read};
use super::commands;
use super::sentinel::{address_of, Address, Sentinels, Verdict};
use super::{KeySpace, Result, StoreError, TakeOutcome, TakeRequest};
use crate::dpop::ReplayClaim;

/// The code the start-up probe's keys are named after.
const PROBE_CODE: &str = "~start-up-check~";

/// How the Redis deployment is shaped.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum RedisTopology {
    /// One server (or a proxy that looks like one).
    #[default]
    Standalone,
    /// Redis Cluster: `url` lists one or more seed nodes, comma-separated;
    /// commands go to the node owning their key's slot. Every key of one
    /// code shares a hash tag, so the take stays on one node.
    Cluster,
    /// Redis Sentinel: `url` lists the sentinels, comma-separated; they name
    /// the current master of this service. After a failover the old master
    /// answers READONLY or not at all; the connection is then dropped and
    /// the next command asks the sentinels again. Every worker also moves
    /// on the sentinels' `+switch-master`, and a code not found is final
    /// only once they confirm the worker's server is still the master they
    /// name ([`super::sentinel`]).
    Sentinel { master: String },
}

impl RedisTopology {
    /// The modes `TOKEN_ENDPOINT_REDIS_MODE` takes.
    pub const MODES: [&'static str; 3] = ["standalone", "cluster", "sentinel"];

    /// The topology of a mode of [`Self::MODES`]; behind Sentinel, the
    /// master's name (`mymaster` if none).
    pub fn named(mode: &str, sentinel_master: Option<String>) -> Option<Self> {
        match mode {
            "standalone" => Some(Self::Standalone),
            "cluster" => Some(Self::Cluster),
            "sentinel" => Some(Self::Sentinel {
                master: sentinel_master.unwrap_or_else(|| "mymaster".into()),
            }),
            _ => None,
        }
    }
}

/// How to reach Redis and how long to wait for it.
#[derive(Debug, Clone)]
pub struct RedisSettings {
    /// `redis://` or `rediss://` URL (cluster: comma-separated seed nodes).
    /// Never logged: it may hold a password.
    pub url: secrecy::SecretString,
    pub topology: RedisTopology,
    pub keys: KeySpace,
    /// Bound on establishing a connection.
    pub connect_timeout: Duration,
    /// Bound on one command, start to answer. Past it the request gets a 503.
    pub command_timeout: Duration,
    /// Replicas that must hold a take before tokens are issued (`WAIT`):
    /// a failover then cannot promote a replica on which the code is still
    /// unredeemed. 0 skips the wait.
    pub replica_acks: u32,
    /// The password, from `TOKEN_ENDPOINT_REDIS_PASSWORD_FILE`, in place of
    /// one in the URL (with the URL's user, if any). Behind Sentinel it is
    /// the master's; the sentinels get the URL's credentials.
    pub password: Option<SecretString>,
    /// What `rediss://` connections trust and present.
    pub tls: RedisTls,
}

/// What `rediss://` connections trust and present beyond the URL, as PEM.
/// The server's name is always verified against its certificate: the
/// client is built without redis-rs's `insecure` feature.
#[derive(Clone, Default)]
pub struct RedisTls {
    /// The CA certificates that sign the servers'; `None`: the system's
    /// trust store.
    pub ca: Option<Vec<u8>>,
    /// The certificate the service presents (mutual TLS).
    pub client: Option<crate::tls::ClientIdentity>,
}

impl std::fmt::Debug for RedisTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisTls")
            .field("ca_bytes", &self.ca.as_ref().map(Vec::len))
            .field("client", &self.client)
            .finish()
    }
}

impl RedisTls {
    fn certificates(&self) -> TlsCertificates {
        TlsCertificates {
            client_tls: self.client.as_ref().map(|c| ClientTlsConfig {
                client_cert: c.cert.clone(),
                client_key: c.key.expose_secret().to_vec(),
            }),
            root_cert: self.ca.clone(),
        }
    }
}

impl RedisSettings {
    /// The URL's servers, ready to connect: the password from the file in
    /// place of the URL's, and the TLS material (parsed once) on each
    /// `rediss://` address.
    fn servers(&self) -> RedisResult<Vec<ConnectionInfo>> {
        let servers = self
            .url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .map(|url| {
                let mut info = url.into_connection_info()?;
                if let Some(password) = &self.password {
                    let redis = info
                        .redis_settings()
                        .clone()
                        .set_password(password.expose_secret());
                    info = info.set_redis_settings(redis);
                }
                if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
                    let client = redis::Client::build_with_tls(info, self.tls.certificates())?;
                    info = client.get_connection_info().clone();
                }
                Ok(info)
            })
            .collect::<RedisResult<Vec<_>>>()?;
        // Cluster nodes beyond the seeds are reached the way the first seed
        // is: refuse a mix rather than quietly drop or add TLS.
        let tls = |info: &ConnectionInfo| matches!(info.addr(), ConnectionAddr::TcpTls { .. });
        if servers.iter().any(tls) && !servers.iter().all(tls) {
            return Err((
                redis::ErrorKind::InvalidClientConfig,
                "the servers mix redis:// and rediss://",
            )
                .into());
        }
        Ok(servers)
    }

    /// A Sentinel client: the URL's servers are the sentinels. The URL's
    /// user, password and database go to the master too, unless the
    /// password file gives the master's; `rediss://` sentinels mean TLS to
    /// the master as well, with the same CA and client certificate.
    fn sentinel(&self, master: &str) -> RedisResult<Sentinels> {
        let sentinels = self
            .url
            .expose_secret()
            .split(',')
            .map(str::trim)
            .map(IntoConnectionInfo::into_connection_info)
            .collect::<RedisResult<Vec<_>>>()?;
        let first = sentinels.first().ok_or_else(|| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "no sentinel"))
        })?;
        let credentials = first.redis_settings().clone();
        let tls = matches!(first.addr(), ConnectionAddr::TcpTls { .. });
        let mut builder = SentinelClientBuilder::new(
            sentinels.iter().map(|s| s.addr().clone()),
            master,
            SentinelServerType::Master,
        )?
        .set_client_to_redis_db(credentials.db());
        if let Some(user) = credentials.username() {
            builder = builder
                .set_client_to_redis_username(user)
                .set_client_to_sentinel_username(user);
        }
        if let Some(password) = credentials.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
        let master_password = self
            .password
            .as_ref()
            .map(|p| p.expose_secret())
            .or(credentials.password());
        if let Some(password) = master_password {
            builder = builder.set_client_to_redis_password(password);
        }
        if tls {
            builder = builder
                .set_client_to_sentinel_tls_mode(TlsMode::Secure)
                .set_client_to_sentinel_certificates(self.tls.certificates())
                .set_client_to_redis_tls_mode(TlsMode::Secure)
                .set_client_to_redis_certificates(self.tls.certificates());
        }
        // The same sentinels, for what the driver does not ask them: the
        // master's address on a miss, and `+switch-master`. Each with its
        // URL's credentials and, for `rediss://`, the same CA and client
        // certificate; no database (a sentinel has none).
        let clients = sentinels
            .iter()
            .map(|info| {
                let redis = info.redis_settings().clone().set_db(0);
                let info = info.clone().set_redis_settings(redis);
                if matches!(info.addr(), ConnectionAddr::TcpTls { .. }) {
                    redis::Client::build_with_tls(info, self.tls.certificates())
                } else {
                    redis::Client::open(info)
                }
            })
            .collect::<RedisResult<Vec<_>>>()?;
        Ok(Sentinels::new(
            builder.build()?,
            master,
            clients,
            self.command_timeout,
        ))
    }
}

/// How many Redis connections the workers hold. There is no pool: each
/// worker multiplexes its requests over one connection, so nothing ever waits
/// for a connection, and requests waiting on Redis show as
/// `token_requests_in_flight`.
#[derive(Clone)]
pub struct ConnectionMetrics {
    /// `redis_connections`: connections held now.
    pub open: prometheus::IntGauge,
    /// `redis_connections_opened_total`: connections opened, including
    /// those opened again after Sentinel named a new master. The driver's
    /// own reconnects of an open connection are not counted.
    pub opened: prometheus::IntCounter,
}

impl ConnectionMetrics {
    #[allow(clippy::expect_used)] // fixed, valid names; metrics_render registers them
    pub fn new() -> Self {
        Self {
            open: prometheus::IntGauge::new(
                "redis_connections",
                "Redis connections held by the workers (one multiplexed connection each, no pool)",
            )
            .expect("valid"),
            opened: prometheus::IntCounter::new(
                "redis_connections_opened_total",
                "Redis connections opened, including after a Sentinel failover",
            )
            .expect("valid"),
        }
    }
}

impl Default for ConnectionMetrics {
    fn default() -> Self {
        Self::new()
    }
}

/// Codes in Redis, through a multiplexed connection that reconnects by
/// itself. Each worker has its own ([`RedisStore::for_worker`]): a connection
/// runs its I/O on the runtime that opened it, and one shared by every worker
/// would bounce each command and its answer between threads.
pub struct RedisStore {
    client: Client,
    /// The worker's connection once opened; emptied when Sentinel mode
    /// sees a sign of failover.
    conn: ArcSwapOption<Held>,
    /// Held while opening, so concurrent first commands open one connection.
    opening: tokio::sync::Mutex<()>,
    keys: KeySpace,
    connect_timeout: Duration,
    command_timeout: Duration,
    replica_acks: u32,
    connections: ConnectionMetrics,
}

impl RedisStore {
    /// Open the first connection now and prove it works for the service: an
    /// authenticated `PING`, and every command a redemption sends, once
    /// ([`probe`]). A Redis that cannot be reached, a password
    /// it refuses, a user without the needed ACL permissions, or a master
    /// name no sentinel knows then stops start-up rather than the first
    /// request.
    pub async fn connect(settings: &RedisSettings) -> Result<Self> {
        // Before any `rediss://` connection: redis-rs builds its rustls
        // configurations from the process default.
        crate::tls::provider();
        let invalid = |e: redis::RedisError| {
            StoreError::Unavailable(format!("invalid Redis URL or TLS material: {e}"))
        };
        let manager_config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(1));
        let client = match &settings.topology {
            RedisTopology::Standalone => {
                let server = settings.servers().map_err(invalid)?.into_iter().next();
                let server = server.ok_or_else(|| {
                    invalid((redis::ErrorKind::InvalidClientConfig, "no server").into())
                })?;
                Client::Single(
                    Box::new(redis::Client::open(server).map_err(invalid)?),
                    manager_config.clone(),
                )
            }
            RedisTopology::Cluster => Client::Cluster(
                ClusterSettings::new(
                    settings.servers().map_err(invalid)?,
                    settings.connect_timeout,
                    settings.command_timeout,
                )
                .map_err(invalid)?,
            ),
            RedisTopology::Sentinel { master } => {
                let sentinels = Arc::new(settings.sentinel(master).map_err(invalid)?);
                sentinels.watch();
                Client::Sentinel(sentinels, manager_config.clone())
            }
        };
        let store = Self {
            client,
            opening: tokio::sync::Mutex::new(()),
            conn: ArcSwapOption::empty(),
            keys: settings.keys.clone(),
            connect_timeout: settings.connect_timeout,
            command_timeout: settings.command_timeout,
            replica_acks: settings.replica_acks,
            connections: ConnectionMetrics::new(),
        };
        let mut conn = store.conn().await?;
        for step in probe(&store.keys, store.replica_acks) {
            store.bounded(step.send(&mut conn)).await?;
        }
        Ok(store)
    }

    /// The same Redis, keys and timeouts, with a connection of its own that
    /// is opened on first use, on the runtime of that use.
    pub fn for_worker(&self) -> Self {
        Self {
            client: self.client.clone(),
            conn: ArcSwapOption::empty(),
            opening: tokio::sync::Mutex::new(()),
            keys: self.keys.clone(),
            connect_timeout: self.connect_timeout,
            command_timeout: self.command_timeout,
            replica_acks: self.replica_acks,
            connections: self.connections.clone(),
        }
    }

    /// The connection gauges, shared by every worker's store.
    pub fn connection_metrics(&self) -> &ConnectionMetrics {
        &self.connections
    }

    /// Forget this worker's connection: the next command opens another.
    fn drop_connection(&self) {
        if self.conn.swap(None).is_some() {
            self.connections.open.dec();
        }
    }

    /// This store's connection, opened if it is not yet. An attempt that
    /// fails is retried by the next command.
    async fn conn(&self) -> Result<Conn> {
        Ok(self.held().await?.conn.clone())
    }

    /// This store's connection and what it was opened against. Behind
    /// Sentinel, one opened before the master last moved is let go first.
    async fn held(&self) -> Result<Arc<Held>> {
        if let Some(held) = self.current() {
            return Ok(held);
        }
        let _opening = self.opening.lock().await;
        if let Some(held) = self.current() {
            return Ok(held);
        }
        // Read before opening: a move announced while opening makes this
        // connection stale at once, never a stale one look current.
        let generation = self.client.generation();
        // Bounded: establishing a connection retries inside the driver.
        let bound = self.connect_timeout * 3;
        let (conn, master) = tokio::time::timeout(bound, self.client.open())
            .await
            .map_err(|_| StoreError::Timeout(bound))?
            .map_err(unavailable)?;
        let held = Arc::new(Held {
            conn,
            master,
            generation,
        });
        self.conn.store(Some(held.clone()));
        self.connections.open.inc();
        self.connections.opened.inc();
        Ok(held)
    }

    /// The held connection, unless the sentinels have moved the master
    /// since it was opened (then it is dropped).
    fn current(&self) -> Option<Arc<Held>> {
        let held = self.conn.load_full()?;
        if held.generation == self.client.generation() {
            return Some(held);
        }
        // Only this connection: one opened meanwhile stays.
        let previous = self.conn.compare_and_swap(&held, None::<Arc<Held>>);
        if previous
            .as_ref()
            .is_some_and(|previous| Arc::ptr_eq(previous, &held))
        {
            self.connections.open.dec();
        }
        None
    }

    /// Run `fut` under the command timeout, whatever the driver does.
    async fn bounded<T>(
        &self,
        fut: impl std::future::Future<Output = redis::RedisResult<T>>,
    ) -> Result<T> {
        let result = tokio::time::timeout(self.command_timeout, fut)
            .await
            .map_err(|_| StoreError::Timeout(self.command_timeout))?;
        result.map_err(|e| {
            // Behind Sentinel, the master may have moved: READONLY from a
            // demoted master, or a dead connection. Forget the connection;
            // the next command asks the sentinels for the master again.
            if matches!(self.client, Client::Sentinel(..))
                && (e.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly)
                    || e.is_connection_dropped()
                    || e.is_connection_refusal()
                    || e.is_io_error())
            {
                self.drop_connection();
            }
            unavailable(e)
        })
    }

    /// [`codes::take`] on one connection ([`OnConnection`]): `GET` the
    /// record, then consume it in one `MULTI`: `GETDEL` the record and
    /// `SET … NX` the used marker. Of concurrent takes that all passed the
    /// grant's validation, exactly one `GETDEL` gets the record; the others
    /// find the code gone and the winner's marker in place, and answer as a
    /// replay. Native commands, not a script: under load the Lua take cost
    /// Redis 17–21 µs of CPU per redemption, these about 10 µs, for one
    /// more round trip (BENCHMARKS.md, "Against the least work a redemption
    /// needs"). Behind Sentinel a miss is final only once the sentinels
    /// confirm the master ([`super::sentinel`]).
    pub(super) async fn take(&self, request: &TakeRequest<'_>) -> Result<TakeOutcome> {
        let held = self.held().await?;
        let outcome = self.take_on(&held, request).await?;
        let Client::Sentinel(sentinels, _) = &self.client else {
            return Ok(outcome);
        };
        if !matches!(outcome, TakeOutcome::Unknown) {
            return Ok(outcome);
        }
        match self.confirm_miss(sentinels, &held).await? {
            Verdict::Confirmed => Ok(outcome),
            // The sentinels name another master, and a new connection will
            // follow them: take there, once, within this request. Only this
            // worker moves (the others on their own miss, or on
            // `+switch-master`): a miss, which anyone can cause, never
            // reconnects every worker.
            Verdict::Moved {
                first_elsewhere: true,
            } => {
                self.drop_connection();
                let moved = self.held().await?;
                if moved.master == held.master {
                    // The driver found this master again (the one the
                    // first sentinel names did not answer as a master).
                    return Err(not_confirmed());
                }
                // The proof was claimed on the master that missed: not again.
                let outcome = self.take_on(&moved, &request.claimed()).await?;
                if !matches!(outcome, TakeOutcome::Unknown) {
                    return Ok(outcome);
                }
                match self.confirm_miss(sentinels, &moved).await? {
                    Verdict::Confirmed => Ok(outcome),
                    Verdict::Moved { .. } => Err(not_confirmed()),
                }
            }
            // Another sentinel names another master, but the one a new
            // connection would follow names this one: the sentinels have
            // not agreed yet. Not final either way: 503, and the client's
            // retry asks again.
            Verdict::Moved {
                first_elsewhere: false,
            } => Err(not_confirmed()),
        }
    }

    /// Whether the sentinels, asked after this miss, name the master `held`
    /// talks to; bounded by the command timeout.
    async fn confirm_miss(&self, sentinels: &Sentinels, held: &Held) -> Result<Verdict> {
        // After the miss's GET: only a query sent from now on can vouch
        // for it.
        let missed_at = Instant::now();
        let Some(ours) = &held.master else {
            return Err(not_confirmed());
        };
        // Not `bounded`: a sentinel's failure says nothing about the
        // connection to the master, which stays.
        match tokio::time::timeout(self.command_timeout, sentinels.confirm(ours, missed_at)).await {
            Ok(Some(verdict)) => Ok(verdict),
            Ok(None) => Err(StoreError::Unavailable(
                "no sentinel answered whether a code's absence is final".into(),
            )),
            Err(_) => Err(StoreError::Timeout(self.command_timeout)),
        }
    }

    /// [`Self::take`] on one connection.
    async fn take_on(&self, held: &Held, request: &TakeRequest<'_>) -> Result<TakeOutcome> {
        let mut on = OnConnection {
            store: self,
            conn: held.conn.clone(),
        };
        codes::take(&mut on, request).await
    }

    /// Wait until `replica_acks` replicas hold this connection's writes, the
    /// take among them (`WAIT`, on the node that ran it). Short of that the
    /// take is not durable: a failover could promote a replica where the
    /// code is still unredeemed, and a second redemption there would get
    /// tokens too. So no tokens: the request gets a 503, and the take is
    /// put back on this master ([`Self::put_back`]), so the client's retry,
    /// as the 503 asks, redeems the code once a replica acknowledges (on
    /// this master or the next). Behind Sentinel a shortfall is also the
    /// first sign of a failover (a promoted replica stops acking its old
    /// master long before the sentinels demote it): the connection is
    /// dropped so the next command asks the sentinels for the master.
    ///
    /// Where the take cannot be put back (the code's time is up, or the
    /// write fails), the used marker is rewritten to say that no tokens
    /// were issued ([`Self::marked_without_tokens`]): the retry is then
    /// told so, not taken for a replay.
    async fn replicated(
        &self,
        conn: &mut Conn,
        request: &TakeRequest<'_>,
        raw: &[u8],
        expiry: Expiry,
    ) -> Result<()> {
        let code = request.code;
        if self.replica_acks == 0 {
            return Ok(());
        }
        let wait_ms = (self.command_timeout / 2).as_millis().max(1) as u64;
        let mut wait = redis::cmd("WAIT");
        wait.arg(self.replica_acks).arg(wait_ms);
        let acked: i64 = match conn {
            Conn::Single(c) => self.bounded(wait.query_async(c)).await?,
            Conn::Cluster(c) => {
                let key = self.keys.code(code);
                let value = self.bounded(c.on_master_of(key.as_bytes(), &wait)).await?;
                redis::from_redis_value(value).map_err(|e| {
                    StoreError::Unavailable(format!("WAIT answered something unexpected: {e}"))
                })?
            }
        };
        if acked >= i64::from(self.replica_acks) {
            return Ok(());
        }
        let put_back = self.put_back(conn, request, raw, expiry).await;
        if !put_back {
            self.marked_without_tokens(conn, request).await;
        }
        if matches!(self.client, Client::Sentinel(..)) {
            self.drop_connection();
        }
        Err(StoreError::Unavailable(format!(
            "the take reached {acked} of {} replicas within {wait_ms} ms; no tokens issued, {}",
            self.replica_acks,
            if put_back {
                "and the code is redeemable again"
            } else {
                "and the code stays consumed"
            }
        )))
    }

    /// Undo a take whose `WAIT` fell short, so that the client's retry (the
    /// 503 asks for one) can still redeem the code once a replica holds
    /// it: a failover, during which the new master has no replica yet, must
    /// not turn a live sign-in into a final 400. One `MULTI` on the take's
    /// node: the record again (`SET … NX`, with what was left of its life,
    /// never more) and the used marker gone. Nothing was issued, so this is
    /// the state before the take; exactly once still holds, because tokens
    /// need a take that the replicas acknowledged. `false` when the code's
    /// time is up or the write fails: the caller then marks the take as one
    /// that issued no tokens.
    async fn put_back(
        &self,
        conn: &mut Conn,
        request: &TakeRequest<'_>,
        raw: &[u8],
        expiry: Expiry,
    ) -> bool {
        let mut set = redis::cmd("SET");
        set.arg(self.keys.code(request.code)).arg(raw).arg("NX");
        match expiry {
            Expiry::Unknown => return false,
            Expiry::Never => {}
            Expiry::At(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if left < Duration::from_millis(1) {
                    return false;
                }
                set.arg("PX").arg(left.as_millis() as u64);
            }
        }
        let mut undo = redis::pipe();
        undo.atomic()
            .add_command(set)
            .ignore()
            .cmd("DEL")
            .arg(self.keys.used(request.code))
            .ignore();
        match self.bounded(undo.query_async::<()>(conn)).await {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    error = %e,
                    grant_id = %request.grant.grant_id,
                    "could not put back a take that issued no tokens"
                );
                false
            }
        }
    }

    /// Rewrite the used marker of a take that will issue nothing, keeping
    /// its expiry (`SET … XX KEEPTTL`: only a marker that exists, so one
    /// that expired meanwhile is not brought back). Best effort, and logged
    /// if it fails: the marker then still names a grant, and the owner's
    /// retry is answered as a replay of it (`code_replays_total`, a
    /// revocation of a grant no token carries) — the behaviour before
    /// markers could say "no tokens". A master that refused the take's
    /// `WAIT` may refuse this write too (`min-replicas-to-write`), but
    /// only once its replicas have lagged past `min-replicas-max-lag`, by
    /// which time it would have refused the take itself. The rewrite
    /// reaches the replicas no sooner than the take did: after a failover
    /// to a replica that holds the take but not the rewrite, the retry is
    /// again a replay.
    async fn marked_without_tokens(&self, conn: &mut Conn, request: &TakeRequest<'_>) {
        let mut rewrite = redis::cmd("SET");
        rewrite
            .arg(self.keys.used(request.code))
            .arg(request.grant.encode_without_tokens())
            .arg("XX")
            .arg("KEEPTTL");
        let result: Result<Option<String>> = self.bounded(rewrite.query_async(conn)).await;
        if let Err(e) = result {
            tracing::warn!(
                error = %e,
                grant_id = %request.grant.grant_id,
                "could not mark a take that issued no tokens: the client's retry will be answered as a replay"
            );
        }
    }

    /// Forget a DPoP proof's replay key, best effort (see
    /// [`super::CodeStore::release_proof`]).
    pub(super) async fn release_proof(&self, claim: &ReplayClaim) {
        let key = self.keys.dpop_proof(&claim.encoded());
        let released = match self.conn().await {
            Ok(mut conn) => self.bounded(conn.del::<_, ()>(key)).await,
            Err(e) => Err(e),
        };
        if let Err(e) = released {
            tracing::info!(error = %e, "could not release the DPoP proof of a request answered 503: a retry needs a new proof");
        }
    }

    /// Remove the used marker of `code` (see [`super::CodeStore::forget_take`]).
    pub(super) async fn forget_take(&self, code: &str) {
        match self.conn().await {
            Ok(mut conn) => self.forget_on(&mut conn, code).await,
            Err(e) => forget_failed(&e),
        }
    }

    /// [`Self::forget_take`] on `conn`, the connection of the take.
    async fn forget_on(&self, conn: &mut Conn, code: &str) {
        if let Err(e) = self.bounded(conn.del::<_, ()>(self.keys.used(code))).await {
            forget_failed(&e);
        }
    }

    /// The grant's revocation key, then the old, untagged one beside it
    /// for resource servers that still check that ([`KeySpace::legacy_revoked_grant`]).
    /// Two writes, not one `MULTI`: on a Cluster the keys are in different
    /// slots. The new key is written first, and its failure is the
    /// caller's; the old one's is logged.
    pub(super) async fn revoke_grant(&self, grant_id: &str, ttl: Duration) -> Result<()> {
        let mut conn = self.conn().await?;
        let secs = ttl.as_secs().max(1);
        let key = self.keys.revoked_grant(grant_id);
        self.set_expiring(&mut conn, &key, "1", secs).await?;
        let legacy = self.keys.legacy_revoked_grant(grant_id);
        if let Err(e) = self.set_expiring(&mut conn, &legacy, "1", secs).await {
            tracing::warn!(error = %e, %grant_id, "could not write the old revocation key beside the new one");
        }
        Ok(())
    }

    /// `SET <key> <value> EX <secs>`. Not `SETEX`, which does the same but
    /// is a command of its own to an ACL: the service's user may run `SET`
    /// only (docs/production-redis.md), and `SETEX` answered it `NOPERM`.
    async fn set_expiring(&self, conn: &mut Conn, key: &str, value: &str, secs: u64) -> Result<()> {
        let options = SetOptions::default().with_expiration(SetExpiry::EX(secs));
        self.bounded(conn.set_options::<_, _, ()>(key, value, options))
            .await
    }

    pub(super) async fn is_grant_revoked(&self, grant_id: &str) -> Result<bool> {
        let mut conn = self.conn().await?;
        let key = self.keys.revoked_grant(grant_id);
        self.bounded(conn.exists::<_, bool>(key)).await
    }

    /// `SET <prefix>code:{<code>} <raw> EX <ttl> NX`, as the frontend does.
    pub(super) async fn insert(&self, code: &str, raw: &str, ttl: Duration) -> Result<()> {
        let mut conn = self.conn().await?;
        let options = SetOptions::default()
            .conditional_set(redis::ExistenceCheck::NX)
            .with_expiration(SetExpiry::EX(ttl.as_secs().max(1)));
        let written: bool = self
            .bounded(conn.set_options(self.keys.code(code), raw, options))
            .await?;
        if written {
            Ok(())
        } else {
            Err(StoreError::Conflict)
        }
    }

    /// `PING`, bounded by the command timeout.
    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn().await?;
        self.bounded(redis::cmd("PING").query_async::<String>(&mut conn))
            .await
            .map(drop)
    }
}

/// The take's steps ([`Primitives`]) on one connection: the one that read
/// the record consumes it, waits for the replicas and puts it back.
struct OnConnection<'a> {
    store: &'a RedisStore,
    conn: Conn,
}

impl Primitives for OnConnection<'_> {
    type Raw = Vec<u8>;
    type Life = Expiry;

    /// `GET`. With replica acknowledgements, a take that falls short of
    /// them is put back ([`RedisStore::replicated`]), with no more life
    /// than it had: its `PTTL` is read with the record, and counted down
    /// from before the read was sent, so it can only come out shorter.
    ///
    /// With a DPoP proof, its replay key is claimed in the same round trip
    /// (`SET <prefix>dpop:<key> 1 EX <ttl> NX`): in the read's pipeline
    /// on one node; on a Cluster, where the two keys live in different
    /// slots, sent at the same time to each slot's master.
    async fn read(
        &mut self,
        code: &str,
        proof: Option<&ReplayClaim>,
    ) -> Result<Read<Vec<u8>, Expiry>> {
        let store = self.store;
        let code_key = store.keys.code(code);
        let with_life = store.replica_acks > 0;
        if proof.is_none() && !with_life {
            let raw: Option<Vec<u8>> = store.bounded(self.conn.get(&code_key)).await?;
            return Ok(raw.map_or(Read::Missing, |raw| Read::Found(raw, Expiry::Unknown)));
        }
        let claim = |claim: &ReplayClaim| {
            let mut set = redis::cmd("SET");
            set.arg(store.keys.dpop_proof(&claim.encoded()))
                .arg(1)
                .arg("EX")
                .arg(claim.ttl.as_secs().max(1))
                .arg("NX");
            set
        };
        // On one node the claim leads the read's pipeline; on a Cluster it
        // goes alone to its own slot's master, at the same time.
        let on_one_node = matches!(self.conn, Conn::Single(_));
        let leading = on_one_node && proof.is_some();
        let mut read = redis::pipe();
        if let (true, Some(proof)) = (leading, proof) {
            read.add_command(claim(proof));
        }
        read.get(&code_key);
        if with_life {
            read.cmd("PTTL").arg(&code_key);
        }
        let read_at = Instant::now();
        let (claimed, values): (bool, Vec<Value>) = match proof {
            Some(proof) if !leading => {
                let mut other = self.conn.clone();
                let (claimed, values) = futures_util::future::join(
                    store.bounded(claim(proof).query_async::<Option<String>>(&mut other)),
                    store.bounded(read.query_async::<Vec<Value>>(&mut self.conn)),
                )
                .await;
                (claimed?.is_some(), values?)
            }
            _ => (true, store.bounded(read.query_async(&mut self.conn)).await?),
        };
        let mut values = values.into_iter();
        // A claim's `SET … NX` answers nil when the key was there already.
        if !claimed || (leading && values.next().is_none_or(|set| set == Value::Nil)) {
            return Ok(Read::ProofReplayed);
        }
        let raw: Option<Vec<u8>> = match values.next() {
            Some(value) => redis::from_redis_value(value)
                .map_err(|e| StoreError::Unavailable(format!("unexpected reply: {e}")))?,
            None => None,
        };
        let expiry = match values.next() {
            None => Expiry::Unknown,
            Some(value) => {
                let pttl: i64 = redis::from_redis_value(value)
                    .map_err(|e| StoreError::Unavailable(format!("unexpected reply: {e}")))?;
                match u64::try_from(pttl) {
                    Ok(ms) => Expiry::At(read_at + Duration::from_millis(ms)),
                    // -1: written without a lifetime (against the contract).
                    Err(_) if pttl == -1 => Expiry::Never,
                    Err(_) => Expiry::Unknown,
                }
            }
        };
        Ok(raw.map_or(Read::Missing, |raw| Read::Found(raw, expiry)))
    }

    async fn remove(&mut self, code: &str) -> Result<()> {
        let code_key = self.store.keys.code(code);
        self.store.bounded(self.conn.del::<_, ()>(code_key)).await
    }

    /// One `MULTI`: `GETDEL` the record, `SET … EX … NX` the marker.
    async fn consume(
        &mut self,
        code: &str,
        marker: &str,
        ttl: Duration,
    ) -> Result<Consumed<Vec<u8>>> {
        let keys = &self.store.keys;
        let mut consume = redis::pipe();
        consume
            .atomic()
            .cmd("GETDEL")
            .arg(keys.code(code))
            .cmd("SET")
            .arg(keys.used(code))
            .arg(marker)
            .arg("EX")
            .arg(ttl.as_secs())
            .arg("NX");
        let (taken, marked): (Option<Vec<u8>>, Option<String>) = self
            .store
            .bounded(consume.query_async(&mut self.conn))
            .await?;
        Ok(Consumed {
            taken,
            marked: marked.is_some(),
        })
    }

    async fn read_used(&mut self, code: &str) -> Result<Option<String>> {
        let used_key = self.store.keys.used(code);
        self.store.bounded(self.conn.get(used_key)).await
    }

    async fn overwrite_used(&mut self, code: &str, marker: &str, ttl: Duration) -> Result<()> {
        let used_key = self.store.keys.used(code);
        self.store
            .set_expiring(&mut self.conn, &used_key, marker, ttl.as_secs())
            .await
    }

    async fn forget(&mut self, code: &str) {
        self.store.forget_on(&mut self.conn, code).await;
    }

    async fn settle(&mut self, request: &TakeRequest<'_>, raw: &[u8], life: Expiry) -> Result<()> {
        self.store
            .replicated(&mut self.conn, request, raw, life)
            .await
    }
}

/// One round trip of the start-up probe.
enum ProbeStep {
    Alone(redis::Cmd),
    Pipeline(redis::Pipeline),
}

impl ProbeStep {
    async fn send(&self, conn: &mut Conn) -> RedisResult<()> {
        match self {
            Self::Alone(cmd) => cmd.query_async(conn).await,
            Self::Pipeline(pipeline) => pipeline.query_async(conn).await,
        }
    }
}

/// The start-up probe: each command [`commands::probed`] names once, on the
/// keys of a code no code can be (`~` is not in a code's alphabet), so a
/// user without a permission the service needs is found at start-up, not
/// by the first redemption. `PING` alone (Cluster sends a keyless command
/// to any node); the take's read (`GET`, and `PTTL` with replica acks); its
/// `MULTI` (`GETDEL`, `SET … EX 1 NX`); then `DEL` of that marker and,
/// with replica acks, `WAIT 0 0` behind it on the same node: it asks for no
/// replica, so it answers at once whatever the replicas do, and proves the
/// permission only.
fn probe(keys: &KeySpace, replica_acks: u32) -> Vec<ProbeStep> {
    let code = keys.code(PROBE_CODE);
    let used = keys.used(PROBE_CODE);
    let mut read = redis::pipe();
    read.get(&code).ignore();
    let mut take = redis::pipe();
    take.atomic()
        .cmd("GETDEL")
        .arg(&code)
        .ignore()
        .cmd("SET")
        .arg(&used)
        .arg("start-up check")
        .arg("EX")
        .arg(1)
        .arg("NX")
        .ignore();
    let mut clean = redis::pipe();
    clean.cmd("DEL").arg(&used).ignore();
    // Those the table needs only on some settings, as it says.
    let needed = |name| commands::probed(replica_acks).any(|n| n == name);
    if needed("PTTL") {
        read.cmd("PTTL").arg(&code).ignore();
    }
    if needed("WAIT") {
        clean.cmd("WAIT").arg(0).arg(0).ignore();
    }
    vec![
        ProbeStep::Alone(redis::cmd("PING")),
        ProbeStep::Pipeline(read),
        ProbeStep::Pipeline(take),
        ProbeStep::Pipeline(clean),
    ]
}

/// What was left of a code's life when its record was read.
#[derive(Debug, Clone, Copy)]
enum Expiry {
    At(Instant),
    /// Written without a lifetime.
    Never,
    /// Not read (no replica acknowledgements asked), or the key had gone.
    Unknown,
}

/// What a connection is opened from.
#[derive(Clone)]
enum Client {
    /// Boxed: with TLS material a client is several hundred bytes.
    Single(Box<redis::Client>, ConnectionManagerConfig),
    Cluster(ClusterSettings),
    /// Shared by the workers: who the master is now, and since when.
    Sentinel(Arc<Sentinels>, ConnectionManagerConfig),
}

impl Client {
    /// A connection, and behind Sentinel the master's address it talks to.
    async fn open(&self) -> redis::RedisResult<(Conn, Option<Address>)> {
        Ok(match self {
            Self::Single(client, config) => (
                Conn::Single(
                    ConnectionManager::new_with_config((**client).clone(), config.clone()).await?,
                ),
                None,
            ),
            Self::Cluster(settings) => {
                (Conn::Cluster(ClusterRouter::connect(settings).await?), None)
            }
            Self::Sentinel(sentinels, config) => {
                let master = sentinels.client.lock().await.async_get_client().await?;
                let address = address_of(master.get_connection_info().addr());
                (
                    Conn::Single(ConnectionManager::new_with_config(master, config.clone()).await?),
                    address,
                )
            }
        })
    }

    /// How often the sentinels have moved the master (0 without them).
    fn generation(&self) -> u64 {
        match self {
            Self::Sentinel(sentinels, _) => sentinels.generation(),
            Self::Single(..) | Self::Cluster(..) => 0,
        }
    }
}

/// A worker's connection and what it was opened against.
struct Held {
    conn: Conn,
    /// Behind Sentinel: the master it talks to, as the sentinels named it.
    master: Option<Address>,
    /// [`Client::generation`] when it was opened.
    generation: u64,
}

/// A worker's connection: multiplexed and self-healing either way (the
/// manager reconnects; the cluster router keeps one connection per node and
/// refreshes its slot map, [`super::cluster`]).
#[derive(Clone)]
enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterRouter),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a redis::Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => Box::pin(c.query(cmd)),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => Box::pin(c.query_pipeline(pipeline, offset, count)),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            // Redis Cluster has one database.
            Self::Cluster(_) => 0,
        }
    }
}

fn forget_failed(e: &StoreError) {
    tracing::warn!(error = %e, "could not remove the used marker of a take that issued nothing");
}

/// A miss the sentinels could not confirm as final: the client retries.
fn not_confirmed() -> StoreError {
    StoreError::Unavailable(
        "the code is not on this master and the sentinels do not confirm it is the current one"
            .into(),
    )
}

fn unavailable(e: redis::RedisError) -> StoreError {
    // The driver's messages name the failure kind and address, never the
    // password of the URL.
    if e.kind() == redis::ErrorKind::MasterNameNotFoundBySentinel {
        return StoreError::UnknownSentinelMaster(e.to_string());
    }
    StoreError::Unavailable(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The probe sends each command the table says these settings need,
    /// and nothing else: a command added to the table is probed, or this
    /// fails.
    #[test]
    fn the_probe_sends_what_the_command_table_needs() {
        for replica_acks in [0, 1] {
            let mut sent: Vec<&str> = probe(&KeySpace::default(), replica_acks)
                .iter()
                .flat_map(|step| match step {
                    ProbeStep::Alone(cmd) => vec![cmd],
                    ProbeStep::Pipeline(pipeline) => pipeline.cmd_iter().collect(),
                })
                .map(|cmd| commands::of(cmd).map_or("?", |c| c.name))
                .collect();
            let transactions = probe(&KeySpace::default(), replica_acks)
                .iter()
                .filter(|step| matches!(step, ProbeStep::Pipeline(p) if p.is_transaction()))
                .count();
            sent.extend(["MULTI", "EXEC"].repeat(transactions));
            let mut needed: Vec<&str> = commands::probed(replica_acks).collect();
            sent.sort_unstable();
            needed.sort_unstable();
            assert_eq!(sent, needed, "replica acks {replica_acks}");
        }
    }
}
