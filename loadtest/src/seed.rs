//! Codes to redeem, made exactly as the login frontend makes them
//! (`token_endpoint::contract::frontend::prepare`), and the seed file that carries them
//! to k6 or to a later run.
//!
//! Seed file: NDJSON, one object per line,
//! `{"code":"…","code_verifier":"…","client_id":"…","redirect_uri":"…"}`;
//! `client_id` and `redirect_uri` may be absent (the run's defaults apply);
//! `"redirect_uri":null` means the grant has none, so none is sent.
//! `token-endpoint issue-code --format json` prints the same lines.

use std::io::{BufRead, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use token_endpoint::contract::frontend::{prepare, Grant};
use token_endpoint::store::{CodeStore, KeySpace, RedisSettings, RedisStore, RedisTopology};

use crate::http1::{self, Connection};

/// One redeemable code, as the client holds it after `/authorize`.
#[derive(Clone, Serialize, Deserialize)]
pub struct Seed {
    pub code: String,
    pub code_verifier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `None`: absent, use the run's default; `Some(None)`: explicitly none.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub redirect_uri: Option<Option<String>>,
}

/// A member that is present, even as `null`, is `Some`.
fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

impl std::fmt::Debug for Seed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Seed([redacted])")
    }
}

/// The grant every seeded code carries.
#[derive(Debug, Clone)]
pub struct GrantTemplate {
    pub client_id: String,
    pub redirect_uri: Option<String>,
    pub sub: String,
    pub scope: String,
    pub ttl: Duration,
}

impl GrantTemplate {
    fn grant(&self) -> Grant {
        let mut grant = Grant::new(&self.client_id, &self.sub, &self.scope);
        grant.redirect_uri = self.redirect_uri.clone();
        grant
    }

    fn seed(&self, code: String, code_verifier: String) -> Seed {
        Seed {
            code,
            code_verifier,
            client_id: Some(self.client_id.clone()),
            redirect_uri: Some(self.redirect_uri.clone()),
        }
    }
}

/// Codes written per pipeline: large enough to amortise the round trip,
/// small enough to keep Redis responsive to anything else.
const PIPELINE: usize = 1_000;

/// Write `count` codes into Redis as the frontend does
/// (`SET <prefix>code:{<code>} <record> EX <ttl> NX`), pipelined.
pub async fn into_redis(
    url: &str,
    keys: &KeySpace,
    count: usize,
    template: &GrantTemplate,
) -> Result<Vec<Seed>, String> {
    let client = redis::Client::open(url).map_err(|e| format!("--redis-url: {e}"))?;
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot reach Redis: {e}"))?;
    let grant = template.grant();
    let ttl = template.ttl.as_secs().max(1);
    let mut seeds = Vec::with_capacity(count);
    while seeds.len() < count {
        let batch = PIPELINE.min(count - seeds.len());
        let mut pipe = redis::pipe();
        for _ in 0..batch {
            let (issued, record) =
                prepare(grant.clone()).map_err(|e| format!("cannot make a code: {e}"))?;
            pipe.cmd("SET")
                .arg(keys.code(&issued.code))
                .arg(record.to_json())
                .arg("EX")
                .arg(ttl)
                .arg("NX");
            seeds.push(template.seed(issued.code, issued.verifier));
        }
        let answers: Vec<Option<String>> = pipe
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("seeding Redis failed: {e}"))?;
        if answers.iter().any(|a| a.as_deref() != Some("OK")) {
            return Err("a seeded code already existed in Redis (SET NX refused)".into());
        }
    }
    Ok(seeds)
}

/// Write `count` codes into a Redis Cluster, or a master behind Sentinel,
/// through the service's own store (the same routing as a redemption's),
/// [`IN_FLIGHT`] writes at a time.
pub async fn into_store(
    url: &str,
    topology: RedisTopology,
    keys: &KeySpace,
    count: usize,
    template: &GrantTemplate,
) -> Result<Vec<Seed>, String> {
    const IN_FLIGHT: usize = 256;
    let store = RedisStore::connect(&RedisSettings {
        url: url.to_owned().into(),
        topology,
        keys: keys.clone(),
        connect_timeout: Duration::from_secs(2),
        command_timeout: Duration::from_secs(2),
        replica_acks: 0,
        password: None,
        tls: Default::default(),
    })
    .await
    .map_err(|e| format!("--redis-url: {e}"))?;
    let store = std::sync::Arc::new(CodeStore::Redis(Box::new(store)));
    let grant = template.grant();
    let ttl = template.ttl;
    let mut seeds = Vec::with_capacity(count);
    while seeds.len() < count {
        let mut writes = tokio::task::JoinSet::new();
        for _ in 0..IN_FLIGHT.min(count - seeds.len()) {
            let store = store.clone();
            let grant = grant.clone();
            writes.spawn(async move {
                token_endpoint::contract::frontend::issue_code(&store, grant, ttl).await
            });
        }
        while let Some(written) = writes.join_next().await {
            let issued = written
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("seeding Redis failed: {e}"))?;
            seeds.push(template.seed(issued.code, issued.verifier));
        }
    }
    Ok(seeds)
}

/// Ask the embedded default's `POST /dev/codes` for `count` codes, over a few
/// connections at once.
pub async fn through_server(
    addr: SocketAddr,
    host: &str,
    count: usize,
    template: &GrantTemplate,
) -> Result<Vec<Seed>, String> {
    let body = serde_json::json!({
        "client_id": template.client_id,
        "sub": template.sub,
        "scope": template.scope,
        "redirect_uri": template.redirect_uri,
    });
    let request = http1::post(host, "/dev/codes", "application/json", &body.to_string());
    let lanes = 8.min(count.max(1));
    let mut tasks = Vec::with_capacity(lanes);
    for lane in 0..lanes {
        let share = count / lanes + usize::from(lane < count % lanes);
        let request = request.clone();
        let template = template.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Connection::open(addr, None)
                .await
                .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
            let mut seeds = Vec::with_capacity(share);
            for _ in 0..share {
                let reply = conn
                    .send(&request)
                    .await
                    .map_err(|e| format!("POST /dev/codes: {e}"))?;
                if reply.status != 200 {
                    return Err(format!(
                        "POST /dev/codes answered {}: {} (is the server on the embedded default? with Redis, pass --redis-url)",
                        reply.status,
                        String::from_utf8_lossy(reply.body)
                    ));
                }
                let seed: Seed = serde_json::from_slice(reply.body)
                    .map_err(|e| format!("POST /dev/codes answered unexpected JSON: {e}"))?;
                seeds.push(template.seed(seed.code, seed.code_verifier));
            }
            Ok::<_, String>(seeds)
        }));
    }
    let mut seeds = Vec::with_capacity(count);
    for task in tasks {
        seeds.extend(task.await.map_err(|e| e.to_string())??);
    }
    Ok(seeds)
}

pub fn write_file(path: &Path, seeds: &[Seed]) -> Result<(), String> {
    let file = std::fs::File::create(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut out = BufWriter::new(file);
    for seed in seeds {
        serde_json::to_writer(&mut out, seed).map_err(|e| e.to_string())?;
        out.write_all(b"\n").map_err(|e| e.to_string())?;
    }
    out.flush().map_err(|e| format!("{}: {e}", path.display()))
}

/// Read a seed file; blank lines are skipped, and a bad line is named.
pub fn read_file(path: &Path) -> Result<Vec<Seed>, String> {
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut seeds = Vec::new();
    for (number, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let seed: Seed = serde_json::from_str(&line)
            .map_err(|e| format!("{} line {}: {e}", path.display(), number + 1))?;
        seeds.push(seed);
    }
    Ok(seeds)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_file_round_trips_and_names_a_bad_line() {
        let dir = std::env::temp_dir().join(format!("loadgen-seed-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("codes.ndjson");
        let template = GrantTemplate {
            client_id: "loadtest".into(),
            redirect_uri: Some("https://app.test/cb".into()),
            sub: "alice".into(),
            scope: "openid".into(),
            ttl: Duration::from_secs(60),
        };
        let seeds = vec![
            template.seed("c1".into(), "v1".into()),
            Seed {
                code: "c2".into(),
                code_verifier: "v2".into(),
                client_id: None,
                redirect_uri: None,
            },
            Seed {
                code: "c3".into(),
                code_verifier: "v3".into(),
                client_id: None,
                redirect_uri: Some(None),
            },
        ];
        write_file(&path, &seeds).expect("write");
        let text = std::fs::read_to_string(&path).expect("read");
        assert_eq!(
            text.lines().next(),
            Some(
                r#"{"code":"c1","code_verifier":"v1","client_id":"loadtest","redirect_uri":"https://app.test/cb"}"#
            )
        );
        assert_eq!(
            text.lines().nth(2),
            Some(r#"{"code":"c3","code_verifier":"v3","redirect_uri":null}"#)
        );
        let back = read_file(&path).expect("parse");
        assert_eq!(back.len(), 3);
        assert_eq!(back[1].code, "c2");
        assert_eq!(back[1].client_id, None);
        assert_eq!(back[1].redirect_uri, None, "absent: the run's default");
        assert_eq!(back[2].redirect_uri, Some(None), "null: none");

        std::fs::write(&path, format!("{text}\n\n{{\"code\":1}}\n")).expect("write");
        let Err(error) = read_file(&path) else {
            panic!("a bad line is refused");
        };
        assert!(error.contains("line 6"), "{error}");
        std::fs::remove_dir_all(&dir).ok();
    }
}
