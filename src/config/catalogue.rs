//! The settings catalogue: every `TOKEN_ENDPOINT_*` variable with its
//! default and meaning, in the order of the table in docs/configuration.md,
//! which `token-endpoint settings` prints from it.

/// One documented setting: a row of the table in docs/configuration.md,
/// which is generated from [`SETTINGS`] (`token-endpoint settings`; a test
/// fails when that table and this list differ). [`Settings::from_lookup`](super::Settings::from_lookup)
/// reads no variable that is not listed here.
#[derive(Debug, Clone, Copy)]
pub struct SettingDoc {
    pub name: &'static str,
    pub default: &'static str,
    pub meaning: &'static str,
}

/// Every setting, in the order of the table.
pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        name: "TOKEN_ENDPOINT_BIND",
        default: "`127.0.0.1:8080`",
        meaning: "listen address (`0.0.0.0:8080` in containers)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_TLS_CERT_FILE",
        default: "unset: plain HTTP",
        meaning: "PEM certificate chain: with the next setting, the listener speaks HTTPS only (TLS 1.2 and 1.3, rustls' default suites), probes included. The files are re-read when they change (cert-manager rotation), without a restart",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_TLS_KEY_FILE",
        default: "unset",
        meaning: "PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_TLS_RELOAD_SECS",
        default: "`10`",
        meaning: "how often the listener's certificate and key files are checked for a change (1–3600); a changed pair that does not load is logged and the old one kept",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_WORKERS",
        default: "number of CPUs (at most 512)",
        meaning: "actix-web worker threads (1–512, actix-web's limit)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_ISSUER",
        default: "`http://<bind>` on the embedded default; **required** with Redis",
        meaning: "`iss` of every token: an `https://` URL with a host, printable ASCII without spaces, no user information, query, fragment, dot segments or trailing `/`. `http://` only on the embedded store, or with the next setting",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER",
        default: "unset",
        meaning: "`allow`: accept an `http://` issuer (and authorization endpoint) with Redis, for a test stack without TLS (`deploy/compose.yaml`). Never in production",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_URL",
        default: "unset: embedded store",
        meaning: "`redis://[[user]:password@]host:port/db`, `rediss://` (TLS, [production-redis.md](production-redis.md)), `unix://`. At start-up the service authenticates, runs `PING` and each command a redemption sends: a wrong password, a missing ACL permission, a certificate that does not verify or an unreachable server stops it, naming the setting at fault",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
        default: "unset: the URL's password, if any",
        meaning: "a file holding the Redis password (one trailing newline is ignored), e.g. a mounted Kubernetes Secret, so the URL needs none; with `user@` in the URL it is that ACL user's password. Refused together with a password in the URL",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        default: "unset: the system's trust store",
        meaning: "PEM file of the CA certificate(s) that sign the Redis servers' certificates (`rediss://` only). The server's name in the URL is always checked against its certificate; there is no switch to turn that off, and `#insecure` URLs are refused",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        default: "unset",
        meaning: "PEM certificate chain the service presents to Redis (mutual TLS, `tls-auth-clients yes`); with the next setting, never alone",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        default: "unset",
        meaning: "PEM private key of that certificate (PKCS#8, PKCS#1 or SEC1)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_MODE",
        default: "`standalone`",
        meaning: "`standalone`; `cluster` for Redis Cluster (`TOKEN_ENDPOINT_REDIS_URL` lists seed nodes, comma-separated); `sentinel` for Redis Sentinel (`TOKEN_ENDPOINT_REDIS_URL` lists the sentinels)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
        default: "`mymaster`",
        meaning: "the master's name in Sentinel mode; a name no sentinel knows stops start-up",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
        default: "`oauth:`",
        meaning: "prefix of every key (no braces, no whitespace)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_CONNECT_TIMEOUT_MS",
        default: "`1000`",
        meaning: "bound on connecting to Redis (1–60000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS",
        default: "`250`",
        meaning: "bound on one Redis command; past it, 503 (1–60000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS",
        default: "`1` with `sentinel`, else `0`",
        meaning: "replicas that must hold a take (`WAIT`, for at most half the command timeout) before tokens are issued; short of that, 503 (0–16). See [Redis durability](#redis-durability-what-exactly-once-needs-from-redis)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_CLIENTS_FILE",
        default: "demo clients on the embedded default; **required** with Redis",
        meaning: "client registry (TOML)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_SIGNING_KEYS",
        default: "ephemeral key on the embedded default; **required** with Redis",
        meaning: "comma-separated PEM paths; the first signs access tokens",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_VERIFICATION_KEYS",
        default: "none",
        meaning: "comma-separated PEM paths published in the JWKS only",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT",
        default: "`<issuer>/dev/authorize` where the dev endpoints are mounted, else `<issuer>/authorize`",
        meaning: "advertised in the discovery document: an `https://` URL with a host and no fragment (`http://` where the issuer may be)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_SIGNING_ALGS",
        default: "`ES256,EdDSA`",
        meaning: "the algorithms a DPoP proof may be signed with (RFC 9449), comma-separated, from ES256, EdDSA, RS256 and PS256; discovery's `dpop_signing_alg_values_supported` ([docs/dpop.md](dpop.md))",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS",
        default: "`60`",
        meaning: "how old a DPoP proof's `iat` may be, in seconds (1–600); a proof's replay key is kept this long plus the next setting",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_PROOF_MAX_FUTURE_SECS",
        default: "`5`",
        meaning: "how far ahead of this clock a DPoP proof's `iat` may be, in seconds (0–60): the clock skew tolerated",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_NONCE",
        default: "`off`",
        meaning: "`required`: every DPoP proof must carry a server nonce (RFC 9449 §8); a proof without a live one is answered `use_dpop_nonce` with a `DPoP-Nonce` header, and nothing is consumed",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_NONCE_SECRET_FILE",
        default: "unset: random per process on the embedded store; **required** with Redis when nonces are required",
        meaning: "a file holding the nonce key, at least 32 bytes, the same on every replica (a mounted Kubernetes Secret; `head -c 32 /dev/urandom | base64`), so that any replica accepts any replica's nonce",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DPOP_NONCE_STEP_SECS",
        default: "`60`",
        meaning: "a nonce's time step, in seconds (2–3600): a nonce is accepted during its step and both neighbours, so it lives one to two steps",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_CORS_MAX_AGE_SECS",
        default: "`7200`",
        meaning: "`Access-Control-Max-Age` of a CORS preflight (0–86400); 7200 is the most Chromium honours, and a preflight grants nothing by itself ([docs/browser-apps.md](browser-apps.md))",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_MAX_BODY_BYTES",
        default: "`8192`",
        meaning: "request body limit (1024–1048576); past it, 413",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS",
        default: "`5000`",
        meaning: "a client has at least this long to send its request head (past it actix answers 408 and closes; actix's clock steps by 500 ms, so the cut comes up to 500 ms later), and again this long for its body (408, `invalid_request`) (100–60000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_MAX_CONNECTIONS",
        default: "`10000`",
        meaning: "open connections, all workers together, rounded down to a multiple of the workers (each worker holds an equal share; at least one each, so not fewer than the workers); past it new connections wait in the listen backlog (1–1000000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS",
        default: "`20`",
        meaning: "failed client authentications from one address (IPv6: one /64) per window; past it, 429 (1–1000000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_AUTH_FAILURES_PER_CLIENT",
        default: "`100`",
        meaning: "failed secret checks of one confidential client per window, from anywhere; past it, a `client_secret_guessing` security event (an alert, never a refusal) (1–1000000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_AUTH_FAILURE_WINDOW_SECS",
        default: "`60`",
        meaning: "the window of both (1–86400)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER",
        default: "unset: the TCP peer",
        meaning: "a header a trusted load balancer sets, e.g. `X-Forwarded-For`; the last entry of its last line is the client's address. Set it behind such a balancer (without it, every request comes from the balancer and one guesser locks everyone out; the service warns when it listens beyond loopback without it), and only there: otherwise clients choose their own address",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DEV_ENDPOINTS",
        default: "unset: only in the zero-configuration demo",
        meaning: "`on` mounts `POST /dev/codes` and `GET /dev/authorize` on an embedded store that has keys, clients or a public bind, with loud warnings (refused with Redis); `off` removes them from the demo too. See [docs/security.md](security.md#dev-endpoints)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_LOG",
        default: "`info`",
        meaning: "`tracing` filter, e.g. `token_endpoint=debug`",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_LOG_FORMAT",
        default: "`text`",
        meaning: "`text` (coloured only when stderr is a terminal) or `json`",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS",
        default: "`5000`",
        meaning: "on SIGTERM, how long `/readyz` answers 503 while requests are still served (0–60000)",
    },
    SettingDoc {
        name: "TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS",
        default: "`20000`",
        meaning: "then, how long in-flight requests get to finish, to the millisecond, before the process exits (1–60000)",
    },
];

/// The settings table of docs/configuration.md, from [`SETTINGS`].
pub fn settings_table() -> String {
    let mut table = String::from("| variable | default | meaning |\n|---|---|---|\n");
    for s in SETTINGS {
        table.push_str(&format!(
            "| `{}` | {} | {} |\n",
            s.name, s.default, s.meaning
        ));
    }
    table
}

/// The settings in effect, one line each, for `token-endpoint check`:
/// `NAME=value` for those set (a password in a Redis URL redacted), and a
/// comment with the default for the others.
pub fn effective(lookup: impl Fn(&str) -> Option<String>) -> Vec<String> {
    SETTINGS
        .iter()
        .map(|s| match lookup(s.name) {
            Some(value) if s.name == "TOKEN_ENDPOINT_REDIS_URL" => {
                format!("{}={}", s.name, redact_urls(&value))
            }
            Some(value) => format!("{}={value}", s.name),
            None => format!("# {} unset: {}", s.name, s.default.replace('`', "")),
        })
        .collect()
}

/// Comma-separated Redis URLs with any password replaced; one that does
/// not parse is not printed at all (it could hold anything).
fn redact_urls(urls: &str) -> String {
    urls.split(',')
        .map(|one| match url::Url::parse(one.trim()) {
            Ok(mut parsed) => {
                if parsed.password().is_some() {
                    // Fails only for URLs that cannot have credentials,
                    // which a URL with a password is not.
                    let _ = parsed.set_password(Some("REDACTED"));
                }
                parsed.to_string()
            }
            Err(_) => "<not a URL; not printed>".to_owned(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn effective_settings_redact_redis_passwords() {
        let lines = effective(|name| match name {
            "TOKEN_ENDPOINT_REDIS_URL" => Some(
                "redis://app:s3cret@10.0.0.1:6379,redis://:other@10.0.0.2:6379,redis://10.0.0.3"
                    .into(),
            ),
            "TOKEN_ENDPOINT_WORKERS" => Some("4".into()),
            _ => None,
        });
        let text = lines.join("\n");
        assert!(
            !text.contains("s3cret") && !text.contains("other@"),
            "{text}"
        );
        assert!(text.contains("TOKEN_ENDPOINT_REDIS_URL=redis://app:REDACTED@10.0.0.1:6379,redis://:REDACTED@10.0.0.2:6379,redis://10.0.0.3"), "{text}");
        assert!(text.contains("\nTOKEN_ENDPOINT_WORKERS=4\n"), "{text}");
        assert!(
            text.contains("# TOKEN_ENDPOINT_BIND unset: 127.0.0.1:8080"),
            "{text}"
        );
        assert_eq!(lines.len(), SETTINGS.len());
    }
}
