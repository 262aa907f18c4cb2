//! Redis Cluster, routed by this service: one multiplexed connection per
//! node (per worker), and a slot map refreshed in the background.
//!
//! The redis crate's cluster connection drives every slot through one
//! state machine. While it recovers from a failed node (a slot refresh,
//! reconnecting) it dispatches no request at all, so one dead master stalls
//! the healthy ones too (docs/operations.md, "Redis Cluster: one shard
//! down"). A take touches the keys of one hash tag (a `GET`, then a `MULTI`), so
//! routing it is small:
//!
//! - the slot of the command's key (CRC16 of its hash tag) names a node in
//!   the slot map, and the command goes on that node's connection; which
//!   argument is the key, or that there is none, the command table says
//!   ([`super::commands`]), and a command it does not know is refused;
//! - a node that fails is marked down for [`RETRY_AFTER_FAILURE`]: its
//!   slots fail fast meanwhile (503), nobody else waits, and the first
//!   request after the pause connects again, so a node that answers again
//!   is used within that pause;
//! - `MOVED` updates the slot and retries once on the named node; `ASK`
//!   retries once there behind `ASKING`; either, and any failed node,
//!   schedules a refresh of the whole map (`CLUSTER SLOTS` from any node
//!   that answers), at most one at a time and one per
//!   [`MIN_REFRESH_INTERVAL`], off the request's path. So a replica the
//!   cluster promotes is found without waiting for a request to fail there.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::{ArcSwap, ArcSwapOption};
use futures_util::future::join_all;
use redis::aio::{ConnectionLike, MultiplexedConnection};
use redis::{
    AsyncConnectionConfig, Cmd, ConnectionAddr, ConnectionInfo, ErrorKind, RedisError, RedisResult,
    ServerErrorKind, Value,
};

use super::commands::{self, Route};

/// How long a node that failed is not tried again: its slots answer at
/// once meanwhile. Also the longest a node that answers again waits to be
/// used.
pub const RETRY_AFTER_FAILURE: Duration = Duration::from_millis(100);

/// The least time between two refreshes of the slot map.
const MIN_REFRESH_INTERVAL: Duration = Duration::from_millis(200);

/// Redis Cluster's slot count.
const SLOT_COUNT: u16 = 16384;

/// A node, as the cluster names it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct NodeAddr {
    host: Arc<str>,
    port: u16,
}

impl std::fmt::Display for NodeAddr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Which master serves each slot.
#[derive(PartialEq)]
struct SlotMap {
    masters: Vec<NodeAddr>,
    /// Per slot, an index into `masters`; [`UNASSIGNED`] for none.
    owner: Vec<u16>,
}

const UNASSIGNED: u16 = u16::MAX;

impl SlotMap {
    fn empty() -> Self {
        Self {
            masters: Vec::new(),
            owner: vec![UNASSIGNED; usize::from(SLOT_COUNT)],
        }
    }

    fn master_of(&self, slot: u16) -> Option<&NodeAddr> {
        let index = *self.owner.get(usize::from(slot))?;
        self.masters.get(usize::from(index))
    }

    /// The map with `slot` served by `node` (a `MOVED` answer).
    fn with_moved(&self, slot: u16, node: NodeAddr) -> Self {
        let mut masters = self.masters.clone();
        let index = match masters.iter().position(|m| *m == node) {
            Some(i) => i,
            None => {
                masters.push(node);
                masters.len() - 1
            }
        };
        let mut owner = self.owner.clone();
        if let Some(entry) = owner.get_mut(usize::from(slot)) {
            *entry = u16::try_from(index).unwrap_or(UNASSIGNED);
        }
        Self { masters, owner }
    }

    /// The map of a `CLUSTER SLOTS` answer from `asked`: entries of
    /// `[start, end, [host, port, ...], replicas...]`. An empty host means
    /// the node that answered.
    fn from_cluster_slots(reply: &Value, asked: &NodeAddr) -> Option<Self> {
        let Value::Array(ranges) = reply else {
            return None;
        };
        let mut map = Self::empty();
        for range in ranges {
            let Value::Array(fields) = range else {
                return None;
            };
            let mut fields = fields.iter();
            let start = int(fields.next()?)?;
            let end = int(fields.next()?)?;
            let Value::Array(master) = fields.next()? else {
                return None;
            };
            let mut master = master.iter();
            let host = match master.next()? {
                Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
                Value::SimpleString(s) => s.clone(),
                _ => return None,
            };
            let port = u16::try_from(int(master.next()?)?).ok()?;
            let node = NodeAddr {
                host: if host.is_empty() || host == "?" {
                    asked.host.clone()
                } else {
                    host.into()
                },
                port,
            };
            let index = match map.masters.iter().position(|m| *m == node) {
                Some(i) => i,
                None => {
                    map.masters.push(node);
                    map.masters.len() - 1
                }
            };
            let index = u16::try_from(index).ok()?;
            for slot in start..=end {
                *map.owner.get_mut(usize::try_from(slot).ok()?)? = index;
            }
        }
        Some(map)
    }
}

fn int(value: &Value) -> Option<i64> {
    match value {
        Value::Int(i) => Some(*i),
        _ => None,
    }
}

/// The slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the
/// first `{` and the next `}`, if not empty) or of the whole key.
pub fn slot_of(key: &[u8]) -> u16 {
    let tagged = key
        .iter()
        .position(|b| *b == b'{')
        .and_then(|open| {
            let rest = key.get(open + 1..)?;
            let close = rest.iter().position(|b| *b == b'}')?;
            rest.get(..close)
        })
        .filter(|tag| !tag.is_empty());
    crc16::State::<crc16::XMODEM>::calculate(tagged.unwrap_or(key)) % SLOT_COUNT
}

/// Where the router sends a command.
#[derive(Debug, PartialEq)]
enum Target<'a> {
    /// The master of this key's slot.
    Key(&'a [u8]),
    /// Any master.
    AnyNode,
}

/// Where `cmd`, sent alone, goes: by [`commands::COMMANDS`]. A command
/// the table does not know is an error, not a guess: it might need a node
/// of its own.
fn target_of(cmd: &Cmd) -> RedisResult<Target<'_>> {
    let command =
        commands::of(cmd).ok_or_else(|| unroutable(cmd, "is not in the command table"))?;
    match command.route {
        Route::FirstArgIsKey => commands::key_of(cmd)
            .map(Target::Key)
            .ok_or_else(|| unroutable(cmd, "names no key")),
        Route::AnyNode => Ok(Target::AnyNode),
        Route::ConnectionsNode => Err(unroutable(
            cmd,
            "acts on its connection's node, which the caller names (on_master_of)",
        )),
        Route::NotRouted => Err(unroutable(cmd, "is sent to a node by name, never routed")),
    }
}

/// The slot of a pipeline: that of its first keyed command. The commands
/// without a key that act on their connection (`MULTI`, `WAIT`) go with
/// it; any other, or none keyed, is an error.
fn slot_of_pipeline(pipeline: &redis::Pipeline) -> RedisResult<u16> {
    let mut slot = None;
    for cmd in pipeline.cmd_iter() {
        let command =
            commands::of(cmd).ok_or_else(|| unroutable(cmd, "is not in the command table"))?;
        match command.route {
            Route::FirstArgIsKey if slot.is_none() => {
                let key = commands::key_of(cmd).ok_or_else(|| unroutable(cmd, "names no key"))?;
                slot = Some(slot_of(key));
            }
            Route::FirstArgIsKey | Route::ConnectionsNode => {}
            Route::AnyNode | Route::NotRouted => {
                return Err(unroutable(cmd, "cannot go in a pipeline"))
            }
        }
    }
    slot.ok_or_else(|| {
        RedisError::from((
            ErrorKind::Client,
            "a pipeline names no key, so no Cluster node",
        ))
    })
}

/// The router's refusal of `cmd`, named by its first argument.
fn unroutable(cmd: &Cmd, why: &'static str) -> RedisError {
    let name = match cmd.args_iter().next() {
        Some(redis::Arg::Simple(name)) => String::from_utf8_lossy(name).into_owned(),
        _ => String::new(),
    };
    RedisError::from((ErrorKind::Client, why, format!("Cluster routing: {name}")))
}

/// A node's connection, opened on demand, and when it last failed.
#[derive(Default)]
struct Node {
    conn: ArcSwapOption<MultiplexedConnection>,
    opening: tokio::sync::Mutex<()>,
    failed_at: Mutex<Option<Instant>>,
}

impl Node {
    fn mark_failed(&self) {
        if let Ok(mut failed_at) = self.failed_at.lock() {
            *failed_at = Some(Instant::now());
        }
    }
}

/// What connections to the nodes are opened from.
#[derive(Clone)]
pub struct ClusterSettings {
    /// The seed nodes; the first one's user, password and database are
    /// used for every node.
    seeds: Vec<ConnectionInfo>,
    connect_timeout: Duration,
    command_timeout: Duration,
}

impl ClusterSettings {
    /// From the seed nodes, each ready to connect (password and TLS
    /// material applied).
    pub fn new(
        seeds: Vec<ConnectionInfo>,
        connect_timeout: Duration,
        command_timeout: Duration,
    ) -> RedisResult<Self> {
        if seeds.is_empty() {
            return Err((ErrorKind::InvalidClientConfig, "no seed node").into());
        }
        Ok(Self {
            seeds,
            connect_timeout,
            command_timeout,
        })
    }
}

/// One worker's view of the cluster: its slot map and node connections.
#[derive(Clone)]
pub struct ClusterRouter {
    inner: Arc<Inner>,
}

struct Inner {
    settings: ClusterSettings,
    map: ArcSwap<SlotMap>,
    nodes: Mutex<HashMap<NodeAddr, Arc<Node>>>,
    refreshing: AtomicBool,
    last_refresh: Mutex<Option<Instant>>,
}

impl ClusterRouter {
    /// Learn the slot map from the first seed that answers.
    pub async fn connect(settings: &ClusterSettings) -> RedisResult<Self> {
        let router = Self {
            inner: Arc::new(Inner {
                settings: settings.clone(),
                map: ArcSwap::from_pointee(SlotMap::empty()),
                nodes: Mutex::new(HashMap::new()),
                refreshing: AtomicBool::new(false),
                last_refresh: Mutex::new(None),
            }),
        };
        router.inner.refresh().await?;
        Ok(router)
    }

    /// Run `cmd` on the master of `key`'s slot.
    pub async fn on_master_of(&self, key: &[u8], cmd: &Cmd) -> RedisResult<Value> {
        self.inner.clone().keyed(slot_of(key), cmd).await
    }

    /// Run `cmd` where the command table sends it ([`target_of`]).
    pub async fn query(&self, cmd: &Cmd) -> RedisResult<Value> {
        match target_of(cmd)? {
            Target::Key(key) => self.inner.clone().keyed(slot_of(key), cmd).await,
            Target::AnyNode => self.inner.on_any_master(cmd).await,
        }
    }

    /// Run `pipeline` on the master of its first keyed command
    /// ([`slot_of_pipeline`]), answering its `count` values from `offset`.
    pub async fn query_pipeline(
        &self,
        pipeline: &redis::Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisResult<Vec<Value>> {
        let slot = slot_of_pipeline(pipeline)?;
        let node = self
            .inner
            .map
            .load()
            .master_of(slot)
            .cloned()
            .ok_or_else(|| {
                RedisError::from((ErrorKind::ClusterConnectionNotFound, "no master is known"))
            })?;
        let mut conn = self.inner.connection(&node).await?;
        // A redirection or a changing cluster is not followed here (the
        // request gets a 503 and is retried); the map is refreshed.
        conn.req_packed_commands(pipeline, offset, count)
            .await
            .inspect_err(|e| {
                self.inner.failed(&node, e);
                self.inner.note_topology(e);
                if e.redirect_node().is_some() {
                    self.inner.refresh_soon();
                }
            })
    }
}

impl Inner {
    /// `cmd` on the master of `slot`, following one `MOVED` or `ASK`.
    async fn keyed(self: Arc<Self>, slot: u16, cmd: &Cmd) -> RedisResult<Value> {
        let Some(node) = self.map.load().master_of(slot).cloned() else {
            self.refresh_soon();
            return Err((
                ErrorKind::Server(ServerErrorKind::ClusterDown),
                "no master is known for the slot",
                slot.to_string(),
            )
                .into());
        };
        let error = match self.send(&node, cmd).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        let Some((target, redirected_slot)) = error.redirect_node() else {
            self.note_topology(&error);
            return Err(error);
        };
        let Some(target) = parse_node(target) else {
            return Err(error);
        };
        self.refresh_soon();
        if error.kind() == ErrorKind::Server(ServerErrorKind::Moved) {
            let moved = self.map.load().with_moved(redirected_slot, target.clone());
            self.map.store(Arc::new(moved));
            return self.send(&target, cmd).await;
        }
        // ASK: this one command goes to the target, behind ASKING, on the
        // same connection and without anything between them.
        let mut asking = redis::pipe();
        asking.cmd("ASKING").ignore().add_command(cmd.clone());
        let mut conn = self.connection(&target).await?;
        let mut values = conn
            .req_packed_commands(&asking, 1, 1)
            .await
            .inspect_err(|e| {
                self.failed(&target, e);
            })?;
        values
            .pop()
            .ok_or_else(|| RedisError::from((ErrorKind::Parse, "ASKING answered nothing")))?
            .extract_error()
    }

    /// `cmd` on `node`, failing fast if the node failed moments ago.
    ///
    /// An error the server answers (`MOVED`, `READONLY`) is an `Err` here,
    /// not a value: the connection hands it over as `Value::ServerError`.
    async fn send(self: &Arc<Self>, node: &NodeAddr, cmd: &Cmd) -> RedisResult<Value> {
        let mut conn = self.connection(node).await?;
        conn.req_packed_command(cmd)
            .await
            .and_then(Value::extract_error)
            .inspect_err(|e| {
                self.failed(node, e);
            })
    }

    /// An answer that says the cluster is changing under the map: refresh.
    fn note_topology(self: &Arc<Self>, error: &RedisError) {
        if let ErrorKind::Server(
            ServerErrorKind::ClusterDown
            | ServerErrorKind::TryAgain
            | ServerErrorKind::MasterDown
            | ServerErrorKind::ReadOnly
            | ServerErrorKind::BusyLoading,
        ) = error.kind()
        {
            self.refresh_soon();
        }
    }

    /// Forget a connection that broke, and note when, so that the node's
    /// slots fail fast for a moment and the map is refreshed.
    fn failed(self: &Arc<Self>, node: &NodeAddr, error: &RedisError) {
        if !(error.is_io_error()
            || error.is_connection_dropped()
            || error.is_connection_refusal()
            || error.is_timeout())
        {
            return;
        }
        let state = self.node(node);
        state.conn.store(None);
        state.mark_failed();
        self.refresh_soon();
    }

    fn node(&self, node: &NodeAddr) -> Arc<Node> {
        let mut nodes = match self.nodes.lock() {
            Ok(nodes) => nodes,
            Err(poisoned) => poisoned.into_inner(),
        };
        nodes.entry(node.clone()).or_default().clone()
    }

    /// The connection to `node`, opened if there is none. A node that
    /// failed less than [`RETRY_AFTER_FAILURE`] ago is not tried.
    async fn connection(self: &Arc<Self>, node: &NodeAddr) -> RedisResult<MultiplexedConnection> {
        let state = self.node(node);
        if let Some(conn) = state.conn.load_full() {
            return Ok((*conn).clone());
        }
        let _opening = state.opening.lock().await;
        if let Some(conn) = state.conn.load_full() {
            return Ok((*conn).clone());
        }
        if less_than_ago(&state.failed_at, RETRY_AFTER_FAILURE) {
            return Err((
                ErrorKind::Io,
                "the node failed moments ago",
                node.to_string(),
            )
                .into());
        }
        match self.open(node).await {
            Ok(conn) => {
                state.conn.store(Some(Arc::new(conn.clone())));
                Ok(conn)
            }
            Err(e) => {
                state.mark_failed();
                self.refresh_soon();
                Err(e)
            }
        }
    }

    async fn open(&self, node: &NodeAddr) -> RedisResult<MultiplexedConnection> {
        let settings = &self.settings;
        let template = settings
            .seeds
            .first()
            .ok_or_else(|| RedisError::from((ErrorKind::InvalidClientConfig, "no seed node")))?;
        let addr = match template.addr() {
            ConnectionAddr::TcpTls {
                insecure,
                tls_params,
                ..
            } => ConnectionAddr::TcpTls {
                host: node.host.to_string(),
                port: node.port,
                insecure: *insecure,
                tls_params: tls_params.clone(),
            },
            _ => ConnectionAddr::Tcp(node.host.to_string(), node.port),
        };
        let info = template.clone().set_addr(addr);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout));
        redis::Client::open(info)?
            .get_multiplexed_async_connection_with_config(&config)
            .await
    }

    /// `cmd` (`PING`) on the first master that answers.
    async fn on_any_master(self: &Arc<Self>, cmd: &Cmd) -> RedisResult<Value> {
        let masters = self.map.load().masters.clone();
        let mut last = None;
        for node in &masters {
            match self.send(node, cmd).await {
                Ok(value) => return Ok(value),
                Err(e) => last = Some(e),
            }
        }
        Err(last
            .unwrap_or_else(|| (ErrorKind::ClusterConnectionNotFound, "no master is known").into()))
    }

    /// Refresh the map in the background, unless a refresh is running or
    /// one ran less than [`MIN_REFRESH_INTERVAL`] ago.
    fn refresh_soon(self: &Arc<Self>) {
        let recent = less_than_ago(&self.last_refresh, MIN_REFRESH_INTERVAL);
        if recent || self.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(self);
        tokio::spawn(async move {
            // However the refresh ends (done, failed, timed out, dropped
            // with its runtime), the next one may run.
            let _done = RefreshDone(&inner);
            let bound = inner.settings.connect_timeout + inner.settings.command_timeout;
            match tokio::time::timeout(bound, inner.refresh()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::debug!(error = %e, "Redis Cluster slot map refresh failed"),
                Err(_) => tracing::debug!("Redis Cluster slot map refresh timed out"),
            }
        });
    }

    /// Ask every known node (the masters of the map and the seeds) for the
    /// slot map, and take the answer most of them give: a node that has
    /// just restarted, or sits on the wrong side of a partition, can still
    /// claim slots that the others have given to its replica.
    async fn refresh(self: &Arc<Self>) -> RedisResult<()> {
        let mut candidates = self.map.load().masters.clone();
        for seed in &self.settings.seeds {
            if let ConnectionAddr::Tcp(host, port) | ConnectionAddr::TcpTls { host, port, .. } =
                seed.addr()
            {
                let node = NodeAddr {
                    host: host.as_str().into(),
                    port: *port,
                };
                if !candidates.contains(&node) {
                    candidates.push(node);
                }
            }
        }
        let mut slots = redis::cmd("CLUSTER");
        slots.arg("SLOTS");
        let answers = join_all(candidates.iter().map(|node| self.send(node, &slots))).await;
        let mut views: Vec<(SlotMap, usize)> = Vec::new();
        let mut last = None;
        for (answer, node) in answers.into_iter().zip(&candidates) {
            match answer {
                Ok(reply) => match SlotMap::from_cluster_slots(&reply, node) {
                    Some(map) => match views.iter_mut().find(|(view, _)| *view == map) {
                        Some((_, votes)) => *votes += 1,
                        None => views.push((map, 1)),
                    },
                    None => {
                        last = Some(
                            (
                                ErrorKind::Parse,
                                "CLUSTER SLOTS answered something unexpected",
                            )
                                .into(),
                        )
                    }
                },
                Err(e) => last = Some(e),
            }
        }
        // The first of the most common views (the masters' answers come first).
        let mut best: Option<(SlotMap, usize)> = None;
        for (view, votes) in views {
            if best.as_ref().is_none_or(|(_, most)| votes > *most) {
                best = Some((view, votes));
            }
        }
        match best {
            Some((map, _)) => {
                self.map.store(Arc::new(map));
                Ok(())
            }
            None => Err(last.unwrap_or_else(|| {
                (ErrorKind::ClusterConnectionNotFound, "no node is known").into()
            })),
        }
    }
}

/// Marks the end of a background refresh when dropped.
struct RefreshDone<'a>(&'a Inner);

impl Drop for RefreshDone<'_> {
    fn drop(&mut self) {
        if let Ok(mut at) = self.0.last_refresh.lock() {
            *at = Some(Instant::now());
        }
        self.0.refreshing.store(false, Ordering::Release);
    }
}

/// Whether the instant `at` holds, if any, is less than `span` ago.
fn less_than_ago(at: &Mutex<Option<Instant>>, span: Duration) -> bool {
    at.lock()
        .ok()
        .and_then(|at| *at)
        .is_some_and(|at| at.elapsed() < span)
}

fn parse_node(addr: &str) -> Option<NodeAddr> {
    let (host, port) = addr.rsplit_once(':')?;
    Some(NodeAddr {
        host: host.into(),
        port: port.parse().ok()?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The slots of Redis Cluster's specification (its examples) and of a
    /// hash tag.
    #[test]
    fn slots_follow_the_specification() {
        assert_eq!(slot_of(b"123456789"), 0x31C3 % SLOT_COUNT);
        assert_eq!(slot_of(b"{user1000}.following"), slot_of(b"user1000"));
        assert_eq!(slot_of(b"foo{}{bar}"), slot_of(b"foo{}{bar}"));
        assert_ne!(slot_of(b"foo{}{bar}"), slot_of(b"bar"));
        assert_eq!(slot_of(b"foo{{bar}}zap"), slot_of(b"{bar"));
        assert_eq!(slot_of(b"oauth:code:{abc}"), slot_of(b"oauth:used:{abc}"));
    }

    /// By the command table: a keyed command by its key, `PING` anywhere;
    /// a command that needs its connection's node, or one the table does
    /// not know, is refused rather than sent to a guess.
    #[test]
    fn commands_are_routed_by_the_table() {
        let mut set = redis::cmd("SET");
        set.arg("k").arg("v");
        assert_eq!(target_of(&set).unwrap(), Target::Key(b"k"));
        assert_eq!(target_of(&redis::cmd("PING")).unwrap(), Target::AnyNode);
        let mut wait = redis::cmd("WAIT");
        wait.arg(1).arg(100);
        let mut setex = redis::cmd("SETEX");
        setex.arg("k").arg(1).arg("v");
        for refused in [&wait, &setex, &redis::cmd("GET"), &redis::cmd("EVALSHA")] {
            assert_eq!(target_of(refused).unwrap_err().kind(), ErrorKind::Client);
        }
    }

    /// A pipeline goes to its first key's slot, with the commands that act
    /// on its connection; one that names no key, or holds a command the
    /// table does not know, is refused (it used to go to slot 0).
    #[test]
    fn pipelines_are_routed_by_their_first_key() {
        let mut take = redis::pipe();
        take.atomic()
            .cmd("GETDEL")
            .arg("code:{a}")
            .cmd("SET")
            .arg("used:{a}")
            .arg("m");
        assert_eq!(slot_of_pipeline(&take).unwrap(), slot_of(b"a"));
        let mut waited = redis::pipe();
        waited.cmd("DEL").arg("used:{b}").cmd("WAIT").arg(0).arg(0);
        assert_eq!(slot_of_pipeline(&waited).unwrap(), slot_of(b"b"));
        let mut keyless = redis::pipe();
        keyless.cmd("WAIT").arg(0).arg(0);
        let mut unknown = redis::pipe();
        unknown.cmd("SETEX").arg("k").arg(1).arg("v");
        let mut unknown_later = redis::pipe();
        unknown_later.cmd("GET").arg("k").cmd("FLUSHALL");
        for refused in [&keyless, &unknown, &unknown_later, &redis::pipe()] {
            assert_eq!(
                slot_of_pipeline(refused).unwrap_err().kind(),
                ErrorKind::Client
            );
        }
    }
}
