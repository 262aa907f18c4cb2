//! What the sentinels say, beyond "connect me to the master": when the
//! master moved (`+switch-master`, heard in the background), and whether the
//! server a worker talks to is still the master they name (asked on a miss).
//!
//! Why a miss must ask: from failover state `RECONF_SLAVES` on, the sentinels
//! name the promoted replica (`sentinelGetCurrentMasterAddress` in
//! sentinel.c) and the login frontend writes its codes there, but the old
//! master answers as a master until Sentinel demotes it, seconds later. A
//! worker still connected to it finds no such code, and a 400 is final to a
//! client: the user would have to sign in again. So behind Sentinel a miss
//! is final only once the sentinels confirm this worker's server is the
//! master they name now.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use redis::aio::MultiplexedConnection;
use redis::sentinel::SentinelClient;
use redis::{AsyncConnectionConfig, ConnectionAddr, RedisResult};

/// Where a master listens, as the sentinels name it.
pub(super) type Address = (String, u16);

/// The host and port of a connection address; `None` for a Unix socket,
/// which no sentinel names.
pub(super) fn address_of(addr: &ConnectionAddr) -> Option<Address> {
    match addr {
        ConnectionAddr::Tcp(host, port) => Some((host.clone(), *port)),
        ConnectionAddr::TcpTls { host, port, .. } => Some((host.clone(), *port)),
        _ => None,
    }
}

/// Shared by every worker of the process.
pub(super) struct Sentinels {
    /// Opens connections to the master the sentinels name.
    pub(super) client: tokio::sync::Mutex<SentinelClient>,
    master: String,
    /// One client per sentinel, in the configured order, with the
    /// sentinels' credentials and TLS.
    sentinels: Vec<redis::Client>,
    /// Bumped when the master moved: a worker holding a connection opened
    /// under an older value drops it and asks the sentinels again. One
    /// atomic load on the hit path.
    generation: AtomicU64,
    /// The last `+switch-master` target, so the same event heard from every
    /// sentinel moves the workers once.
    last_switch: std::sync::Mutex<Option<String>>,
    /// Held while asking the sentinels: one query in flight per process,
    /// however many misses want it.
    asking: tokio::sync::Mutex<Asked>,
    /// Bound on one sentinel's answer.
    per_sentinel: Duration,
}

/// The sentinels' last answer and the connections that gave it.
#[derive(Default)]
struct Asked {
    connections: Vec<Option<MultiplexedConnection>>,
    /// When the query was sent, and each sentinel's answer (`None`: it did
    /// not answer, or does not know the master).
    last: Option<(Instant, Vec<Option<Address>>)>,
}

/// Whether a miss on a connection to `ours` is final.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Verdict {
    /// Every sentinel that answered names `ours`.
    Confirmed,
    /// Some sentinel names another master. `first_elsewhere`: the first
    /// sentinel that answered (the one a new connection would follow) does,
    /// so reconnecting reaches another server.
    Moved { first_elsewhere: bool },
}

impl Sentinels {
    pub(super) fn new(
        client: SentinelClient,
        master: &str,
        sentinels: Vec<redis::Client>,
        command_timeout: Duration,
    ) -> Self {
        Self {
            client: tokio::sync::Mutex::new(client),
            master: master.to_owned(),
            asking: tokio::sync::Mutex::new(Asked {
                connections: vec![None; sentinels.len()],
                last: None,
            }),
            sentinels,
            generation: AtomicU64::new(0),
            last_switch: std::sync::Mutex::new(None),
            // Half the command timeout: a sentinel that does not answer
            // leaves the miss time to be answered from the others.
            per_sentinel: (command_timeout / 2).max(Duration::from_millis(1)),
        }
    }

    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether a connection to `ours` may answer a miss as final. Answers
    /// of a query sent after `missed_at` (the miss's `GET` had completed)
    /// are reused; otherwise this waits for the query in flight, then sends
    /// one, so concurrent misses share one query. Unbounded here: the
    /// caller bounds it by the command timeout.
    /// `None` if no sentinel answered.
    pub(super) async fn confirm(&self, ours: &Address, missed_at: Instant) -> Option<Verdict> {
        let mut asked = self.asking.lock().await;
        let answers = match &asked.last {
            Some((sent, answers)) if *sent >= missed_at => answers.clone(),
            _ => {
                let sent = Instant::now();
                let answers = self.ask(&mut asked.connections).await;
                asked.last = Some((sent, answers.clone()));
                answers
            }
        };
        drop(asked);
        let mut named = answers.iter().flatten();
        let first = named.next()?;
        if first != ours {
            return Some(Verdict::Moved {
                first_elsewhere: true,
            });
        }
        Some(if named.all(|other| other == ours) {
            Verdict::Confirmed
        } else {
            Verdict::Moved {
                first_elsewhere: false,
            }
        })
    }

    /// `SENTINEL GET-MASTER-ADDR-BY-NAME` of every sentinel at once, each
    /// bounded; a connection that failed is opened again next time.
    async fn ask(&self, connections: &mut [Option<MultiplexedConnection>]) -> Vec<Option<Address>> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.per_sentinel))
            .set_response_timeout(Some(self.per_sentinel));
        let asks = self
            .sentinels
            .iter()
            .zip(connections.iter_mut())
            .map(|(sentinel, cached)| {
                let config = config.clone();
                async move {
                    let query = async {
                        let mut conn = match cached.take() {
                            Some(conn) => conn,
                            None => {
                                sentinel
                                    .get_multiplexed_async_connection_with_config(&config)
                                    .await?
                            }
                        };
                        let named: Option<Address> = redis::cmd("SENTINEL")
                            .arg("GET-MASTER-ADDR-BY-NAME")
                            .arg(&self.master)
                            .query_async(&mut conn)
                            .await?;
                        *cached = Some(conn);
                        RedisResult::Ok(named)
                    };
                    match tokio::time::timeout(self.per_sentinel, query).await {
                        Ok(Ok(named)) => named,
                        Ok(Err(e)) => {
                            tracing::debug!(error = %e, "a sentinel did not name the master");
                            None
                        }
                        Err(_) => None,
                    }
                }
            });
        futures_util::future::join_all(asks).await
    }

    /// Listen for `+switch-master` on every sentinel, in the background, for
    /// as long as the store lives: the workers then move at once rather
    /// than on their next error or miss.
    pub(super) fn watch(self: &Arc<Self>) {
        for sentinel in &self.sentinels {
            tokio::spawn(listen(Arc::downgrade(self), sentinel.clone()));
        }
    }

    /// A `+switch-master` payload: `<name> <old ip> <old port> <new ip>
    /// <new port>`. Ours moves the workers, once per new address.
    fn heard(&self, payload: &str) {
        let mut parts = payload.split(' ');
        if parts.next() != Some(self.master.as_str()) {
            return;
        }
        let new = parts.skip(2).collect::<Vec<_>>().join(":");
        let mut last = match self.last_switch.lock() {
            Ok(last) => last,
            Err(poisoned) => poisoned.into_inner(),
        };
        if last.as_deref() == Some(new.as_str()) {
            return;
        }
        tracing::warn!(master = %self.master, new = %new, "Sentinel switched the master: every worker reconnects");
        *last = Some(new);
        self.generation.fetch_add(1, Ordering::AcqRel);
    }
}

/// One sentinel's `+switch-master` events, subscribed again after any
/// failure, until the store is gone.
async fn listen(sentinels: Weak<Sentinels>, sentinel: redis::Client) {
    // How often a quiet subscription checks whether the store still exists,
    // and how long to wait before subscribing again after a failure.
    const CHECK: Duration = Duration::from_secs(5);
    const AGAIN: Duration = Duration::from_secs(1);
    loop {
        if sentinels.strong_count() == 0 {
            return;
        }
        match sentinel.get_async_pubsub().await {
            Ok(mut pubsub) => match pubsub.subscribe("+switch-master").await {
                Ok(()) => {
                    let mut messages = pubsub.on_message();
                    loop {
                        match tokio::time::timeout(CHECK, messages.next()).await {
                            Ok(Some(message)) => {
                                let Some(sentinels) = sentinels.upgrade() else {
                                    return;
                                };
                                if let Ok(payload) = message.get_payload::<String>() {
                                    sentinels.heard(&payload);
                                }
                            }
                            // The connection closed: subscribe again.
                            Ok(None) => break,
                            Err(_) if sentinels.strong_count() == 0 => return,
                            Err(_) => {}
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "could not subscribe to +switch-master"),
            },
            Err(e) => tracing::debug!(error = %e, "could not reach a sentinel for +switch-master"),
        }
        tokio::time::sleep(AGAIN).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentinels() -> Sentinels {
        let client = redis::sentinel::SentinelClient::build(
            vec!["redis://127.0.0.1:1"],
            "mymaster",
            None,
            redis::sentinel::SentinelServerType::Master,
        )
        .unwrap();
        Sentinels::new(client, "mymaster", vec![], Duration::from_millis(100))
    }

    #[test]
    fn only_our_masters_switch_moves_the_workers_and_only_once() {
        let s = sentinels();
        s.heard("othermaster 127.0.0.1 1 127.0.0.1 2");
        assert_eq!(s.generation(), 0);
        s.heard("mymaster 127.0.0.1 1 127.0.0.1 2");
        assert_eq!(s.generation(), 1);
        // The same event from another sentinel.
        s.heard("mymaster 127.0.0.1 1 127.0.0.1 2");
        assert_eq!(s.generation(), 1);
        s.heard("mymaster 127.0.0.1 2 127.0.0.1 1");
        assert_eq!(s.generation(), 2);
    }
}
