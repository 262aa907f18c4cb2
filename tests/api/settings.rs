//! Every documented setting (`config::SETTINGS`, which the table in
//! docs/configuration.md is generated from) has a case here: a value and the
//! effect the table promises, and a bad value that stops start-up naming
//! it. A setting added to the code without a case, or read without being
//! documented, fails these tests. The binary's own behaviour for the
//! settings that reach beyond `Settings` (Redis at start-up, connections,
//! the drain, logs) is in `cli.rs`.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::time::Duration;

use token_endpoint::config::{
    ConfigError, DevEndpoints, LogFormat, NonceSettings, RedisFiles, Settings, StoreSettings,
    SETTINGS,
};
use token_endpoint::dpop::jwk::Alg;
use token_endpoint::store::RedisTopology;

type Check = fn(&Settings) -> bool;

/// One setting's case: extra variables it needs, a value and what it must
/// do, and values that must be refused naming it.
struct Case {
    name: &'static str,
    context: &'static [(&'static str, &'static str)],
    value: &'static str,
    effect: Check,
    bad: &'static [&'static str],
}

/// A production-shaped base: Redis, issuer, registry, keys.
const REDIS: &[(&str, &str)] = &[
    ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
    ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
    ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
    ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
];

/// The same over TLS.
const REDISS: &[(&str, &str)] = &[
    ("TOKEN_ENDPOINT_REDIS_URL", "rediss://redis.example:6380"),
    ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
    ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
    ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
];

/// The Redis files of `s`, if it stores codes in Redis.
fn redis_files(s: &Settings) -> Option<&RedisFiles> {
    match &s.store {
        StoreSettings::Redis { files, .. } => Some(files),
        StoreSettings::Embedded => None,
    }
}

fn redis(s: &Settings) -> Option<(&RedisTopology, &StoreSettings)> {
    match &s.store {
        StoreSettings::Redis { topology, .. } => Some((topology, &s.store)),
        StoreSettings::Embedded => None,
    }
}

const CASES: &[Case] = &[
    Case {
        name: "TOKEN_ENDPOINT_BIND",
        context: &[],
        value: "0.0.0.0:9000",
        effect: |s| s.bind.to_string() == "0.0.0.0:9000",
        bad: &["localhost", "0.0.0.0", ":80"],
    },
    Case {
        name: "TOKEN_ENDPOINT_TLS_CERT_FILE",
        context: &[("TOKEN_ENDPOINT_TLS_KEY_FILE", "/tls.key")],
        value: "/tls.crt",
        effect: |s| {
            s.tls.as_ref().is_some_and(|t| {
                t.files.cert.as_path() == std::path::Path::new("/tls.crt")
                    && t.reload_every == Duration::from_secs(10)
            })
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_TLS_KEY_FILE",
        context: &[("TOKEN_ENDPOINT_TLS_CERT_FILE", "/tls.crt")],
        value: "/tls.key",
        effect: |s| {
            s.tls
                .as_ref()
                .is_some_and(|t| t.files.key.as_path() == std::path::Path::new("/tls.key"))
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_TLS_RELOAD_SECS",
        context: &[
            ("TOKEN_ENDPOINT_TLS_CERT_FILE", "/tls.crt"),
            ("TOKEN_ENDPOINT_TLS_KEY_FILE", "/tls.key"),
        ],
        value: "60",
        effect: |s| {
            s.tls
                .as_ref()
                .is_some_and(|t| t.reload_every == Duration::from_secs(60))
        },
        bad: &["0", "3601", "soon", "1.5"],
    },
    Case {
        name: "TOKEN_ENDPOINT_WORKERS",
        context: &[],
        value: "512",
        effect: |s| s.workers == 512,
        bad: &["0", "513", "1024", "many", "-1"],
    },
    Case {
        name: "TOKEN_ENDPOINT_ISSUER",
        context: &[],
        value: "https://id.example/tenant",
        effect: |s| s.issuer == "https://id.example/tenant",
        bad: &[
            "https://id.example/",
            "https://id.example ",
            "id.example",
            "https://u@id.example",
        ],
    },
    Case {
        name: "TOKEN_ENDPOINT_INSECURE_HTTP_ISSUER",
        context: &[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
            ("TOKEN_ENDPOINT_ISSUER", "http://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        value: "allow",
        effect: |s| s.issuer == "http://id.example",
        bad: &["yes", "true", "ALLOW"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_URL",
        context: &[
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        value: "redis://:secret@127.0.0.1:6380/2",
        effect: |s| redis(s).is_some(),
        bad: &["http://x", "127.0.0.1:6379", "redis://a:1,redis://b:2"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
        context: REDIS,
        value: "/run/secrets/redis-password",
        effect: |s| {
            redis_files(s).is_some_and(|f| {
                f.password.as_deref() == Some(std::path::Path::new("/run/secrets/redis-password"))
            })
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        context: REDISS,
        value: "/etc/redis-ca.pem",
        effect: |s| {
            redis_files(s)
                .is_some_and(|f| f.ca.as_deref() == Some(std::path::Path::new("/etc/redis-ca.pem")))
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        context: &[
            ("TOKEN_ENDPOINT_REDIS_URL", "rediss://redis.example:6380"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
            ("TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE", "/client.key"),
        ],
        value: "/client.pem",
        effect: |s| {
            redis_files(s).is_some_and(|f| {
                f.client.as_ref().is_some_and(|c| {
                    c.cert.as_path() == std::path::Path::new("/client.pem")
                        && c.key.as_path() == std::path::Path::new("/client.key")
                })
            })
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        context: &[
            ("TOKEN_ENDPOINT_REDIS_URL", "rediss://redis.example:6380"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
            ("TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE", "/client.pem"),
        ],
        value: "/client.key",
        effect: |s| {
            redis_files(s).is_some_and(|f| {
                f.client
                    .as_ref()
                    .is_some_and(|c| c.key.as_path() == std::path::Path::new("/client.key"))
            })
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_MODE",
        context: REDIS,
        value: "cluster",
        effect: |s| matches!(redis(s), Some((RedisTopology::Cluster, _))),
        bad: &["replicas", "Cluster"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER",
        context: &[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:26379"),
            ("TOKEN_ENDPOINT_REDIS_MODE", "sentinel"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        value: "tokens",
        effect: |s| matches!(redis(s), Some((RedisTopology::Sentinel { master }, _)) if master == "tokens"),
        bad: &[" "],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
        context: REDIS,
        value: "tenant-a:",
        effect: |s| matches!(&s.store, StoreSettings::Redis { keys, .. } if keys.code("c") == "tenant-a:code:{c}"),
        bad: &["{x}", "a b", "x}"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_CONNECT_TIMEOUT_MS",
        context: REDIS,
        value: "1500",
        effect: |s| matches!(&s.store, StoreSettings::Redis { connect_timeout, .. } if *connect_timeout == Duration::from_millis(1500)),
        bad: &["0", "60001", "1s"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS",
        context: REDIS,
        value: "40",
        effect: |s| matches!(&s.store, StoreSettings::Redis { command_timeout, .. } if *command_timeout == Duration::from_millis(40)),
        bad: &["0", "60001", "fast"],
    },
    Case {
        name: "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS",
        context: REDIS,
        value: "2",
        effect: |s| {
            matches!(
                &s.store,
                StoreSettings::Redis {
                    replica_acks: 2,
                    ..
                }
            )
        },
        bad: &["17", "-1", "one"],
    },
    Case {
        name: "TOKEN_ENDPOINT_CLIENTS_FILE",
        context: &[],
        value: "/etc/clients.toml",
        effect: |s| s.clients_file.as_deref() == Some(std::path::Path::new("/etc/clients.toml")),
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_SIGNING_KEYS",
        context: &[],
        value: "/a.pem, /b.pem",
        effect: |s| s.signing_keys.len() == 2 && s.signing_keys[1].to_str() == Some("/b.pem"),
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_VERIFICATION_KEYS",
        context: &[],
        value: "/old.pem",
        effect: |s| s.verification_keys.len() == 1,
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_AUTHORIZATION_ENDPOINT",
        context: &[],
        value: "https://login.example/authorize?tenant=a",
        effect: |s| s.authorization_endpoint == "https://login.example/authorize?tenant=a",
        bad: &[
            "not a url",
            "login.example/authorize",
            "https://login.example/a#b",
            "https:///authorize",
        ],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_SIGNING_ALGS",
        context: &[],
        value: "PS256, ES256",
        effect: |s| s.dpop.algorithms == [Alg::Ps256, Alg::Es256],
        bad: &["HS256", "es256", "ES256,ES256", ",", "none"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_PROOF_MAX_AGE_SECS",
        context: &[],
        value: "120",
        effect: |s| s.dpop.max_age_secs == 120,
        bad: &["0", "601", "1m"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_PROOF_MAX_FUTURE_SECS",
        context: &[],
        value: "0",
        effect: |s| s.dpop.max_future_secs == 0,
        bad: &["61", "-1"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_NONCE",
        context: &[],
        value: "required",
        effect: |s| {
            s.dpop.nonce
                == Some(NonceSettings {
                    secret_file: None,
                    step_secs: 60,
                })
        },
        bad: &["on", "Required", "optional"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_NONCE_SECRET_FILE",
        context: &[("TOKEN_ENDPOINT_DPOP_NONCE", "required")],
        value: "/run/secrets/dpop-nonce",
        effect: |s| {
            s.dpop.nonce.as_ref().and_then(|n| n.secret_file.as_deref())
                == Some(std::path::Path::new("/run/secrets/dpop-nonce"))
        },
        bad: &[],
    },
    Case {
        name: "TOKEN_ENDPOINT_DPOP_NONCE_STEP_SECS",
        context: &[("TOKEN_ENDPOINT_DPOP_NONCE", "required")],
        value: "30",
        effect: |s| s.dpop.nonce.as_ref().is_some_and(|n| n.step_secs == 30),
        bad: &["1", "3601"],
    },
    Case {
        name: "TOKEN_ENDPOINT_CORS_MAX_AGE_SECS",
        context: &[],
        value: "600",
        effect: |s| s.cors_max_age == Duration::from_secs(600),
        bad: &["86401", "-1", "2h"],
    },
    Case {
        name: "TOKEN_ENDPOINT_MAX_BODY_BYTES",
        context: &[],
        value: "4096",
        effect: |s| s.max_body_bytes == 4096,
        bad: &["10", "1048577", "8k"],
    },
    Case {
        name: "TOKEN_ENDPOINT_CLIENT_TIMEOUT_MS",
        context: &[],
        value: "1500",
        effect: |s| s.limits.client_timeout == Duration::from_millis(1500),
        bad: &["99", "60001", "5s"],
    },
    Case {
        name: "TOKEN_ENDPOINT_MAX_CONNECTIONS",
        context: &[("TOKEN_ENDPOINT_WORKERS", "4")],
        value: "64",
        effect: |s| s.limits.max_connections == 64,
        // Fewer than the 4 workers: each needs at least one.
        bad: &["3", "0", "1000001", "many"],
    },
    Case {
        name: "TOKEN_ENDPOINT_AUTH_FAILURES_PER_ADDRESS",
        context: &[],
        value: "5",
        effect: |s| s.limits.auth.per_address == 5,
        bad: &["0", "-1", "1000001"],
    },
    Case {
        name: "TOKEN_ENDPOINT_AUTH_FAILURES_PER_CLIENT",
        context: &[],
        value: "7",
        effect: |s| s.limits.auth.client_alert == 7,
        bad: &["0", "lots"],
    },
    Case {
        name: "TOKEN_ENDPOINT_AUTH_FAILURE_WINDOW_SECS",
        context: &[],
        value: "300",
        effect: |s| s.limits.auth.window == Duration::from_secs(300),
        bad: &["0", "86401"],
    },
    Case {
        name: "TOKEN_ENDPOINT_CLIENT_ADDRESS_HEADER",
        context: &[],
        value: "X-Forwarded-For",
        effect: |s| s.limits.client_address_header.as_deref() == Some("x-forwarded-for"),
        bad: &["bad header", "X-Forwarded-For:", "a\u{e9}"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DEV_ENDPOINTS",
        context: &[("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem")],
        value: "on",
        effect: |s| s.dev_endpoints == DevEndpoints::OptIn,
        bad: &["yes", "ON"],
    },
    Case {
        name: "TOKEN_ENDPOINT_LOG",
        context: &[],
        value: "token_endpoint=debug,warn",
        effect: |s| s.log_filter == "token_endpoint=debug,warn",
        bad: &["token_endpoint=verbose=1"],
    },
    Case {
        name: "TOKEN_ENDPOINT_LOG_FORMAT",
        context: &[],
        value: "json",
        effect: |s| s.log_format == LogFormat::Json,
        bad: &["xml", "JSON"],
    },
    Case {
        name: "TOKEN_ENDPOINT_SHUTDOWN_DELAY_MS",
        context: &[],
        value: "0",
        effect: |s| s.shutdown_delay == Duration::ZERO,
        bad: &["60001", "-5"],
    },
    Case {
        name: "TOKEN_ENDPOINT_DRAIN_TIMEOUT_MS",
        context: &[],
        value: "1500",
        // Milliseconds, not seconds: 1500 stays 1500 (it was 1 s once).
        effect: |s| s.drain_timeout == Duration::from_millis(1500),
        bad: &["0", "60001"],
    },
];

fn settings(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
    let map: HashMap<&str, &str> = vars.iter().copied().collect();
    Settings::from_lookup(|name| map.get(name).map(|v| v.to_string()))
}

/// Each documented setting has exactly one case, and no case names an
/// undocumented one.
#[test]
fn every_documented_setting_has_a_case() {
    let documented: BTreeSet<&str> = SETTINGS.iter().map(|s| s.name).collect();
    let cased: BTreeSet<&str> = CASES.iter().map(|c| c.name).collect();
    assert_eq!(cased.len(), CASES.len(), "a setting has two cases");
    assert_eq!(documented, cased);
}

/// Each setting does what the table says, and each bad value stops
/// start-up naming it; so does setting it to an empty value.
#[test]
fn every_setting_has_its_documented_effect_and_error() {
    for case in CASES {
        let mut vars = case.context.to_vec();
        vars.push((case.name, case.value));
        let accepted = settings(&vars)
            .unwrap_or_else(|e| panic!("{}={:?} was refused: {e}", case.name, case.value));
        assert!(
            (case.effect)(&accepted),
            "{}={:?}: no effect",
            case.name,
            case.value
        );
        for bad in case.bad.iter().chain(&["", "   "]) {
            let mut vars = case.context.to_vec();
            vars.push((case.name, bad));
            let err = match settings(&vars) {
                Ok(_) => panic!("{}={bad:?} was accepted", case.name),
                Err(e) => e,
            };
            assert_eq!(err.setting, case.name, "{}={bad:?}: {err}", case.name);
        }
    }
}

/// The settings code reads only documented variables, and, over a few
/// configurations, all of them: nothing is read that the table does not
/// list, and no row is dead.
#[test]
fn only_documented_variables_are_read() {
    let read: RefCell<BTreeSet<String>> = RefCell::default();
    for base in [
        &[][..],
        REDIS,
        &[
            ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:26379"),
            ("TOKEN_ENDPOINT_REDIS_MODE", "sentinel"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ][..],
    ] {
        let map: HashMap<&str, &str> = base.iter().copied().collect();
        Settings::from_lookup(|name| {
            read.borrow_mut().insert(name.to_owned());
            map.get(name).map(|v| v.to_string())
        })
        .unwrap_or_else(|e| panic!("{base:?}: {e}"));
    }
    let documented: BTreeSet<String> = SETTINGS.iter().map(|s| s.name.to_owned()).collect();
    assert_eq!(read.into_inner(), documented);
}

/// A `TOKEN_ENDPOINT_REDIS_*` setting without `TOKEN_ENDPOINT_REDIS_URL`
/// is a deployment that lost its URL: refused, not run on the embedded
/// store.
#[test]
fn redis_settings_without_a_redis_url_are_refused() {
    for name in [
        "TOKEN_ENDPOINT_REDIS_MODE",
        "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE",
        "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE",
        "TOKEN_ENDPOINT_REDIS_KEY_PREFIX",
        "TOKEN_ENDPOINT_REDIS_REPLICA_ACKS",
        "TOKEN_ENDPOINT_REDIS_COMMAND_TIMEOUT_MS",
    ] {
        let value = if name.ends_with("MODE") {
            "cluster"
        } else {
            "1"
        };
        let err = match settings(&[(name, value)]) {
            Ok(_) => panic!("{name} without a Redis URL was accepted"),
            Err(e) => e,
        };
        assert_eq!(err.setting, name);
        assert!(err.reason.contains("TOKEN_ENDPOINT_REDIS_URL"), "{err}");
    }
    let err = match settings(&[
        ("TOKEN_ENDPOINT_REDIS_URL", "redis://127.0.0.1:6379"),
        ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
        ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
        ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ("TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER", "tokens"),
    ]) {
        Ok(_) => panic!("a Sentinel master name without sentinel mode was accepted"),
        Err(e) => e,
    };
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_SENTINEL_MASTER");
}

/// The TLS settings that only make sense together are refused apart, and
/// nothing turns certificate verification off.
#[test]
fn tls_settings_that_cannot_work_together_are_refused() {
    let with = |base: &[(&'static str, &'static str)], more: &[(&'static str, &'static str)]| {
        let mut vars = base.to_vec();
        vars.extend_from_slice(more);
        settings(&vars)
    };
    let refused = |result: Result<Settings, ConfigError>| match result {
        Ok(_) => panic!("accepted"),
        Err(e) => e,
    };
    // A certificate without its key, either way round, for both.
    for (set, named) in [
        (
            "TOKEN_ENDPOINT_TLS_CERT_FILE",
            "TOKEN_ENDPOINT_TLS_KEY_FILE",
        ),
        (
            "TOKEN_ENDPOINT_TLS_KEY_FILE",
            "TOKEN_ENDPOINT_TLS_CERT_FILE",
        ),
        (
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
        ),
        (
            "TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE",
            "TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE",
        ),
    ] {
        let err = refused(with(REDISS, &[(set, "/f.pem")]));
        assert_eq!(err.setting, named, "{set} alone: {err}");
    }
    // A reload interval for a listener without TLS.
    let err = refused(with(&[], &[("TOKEN_ENDPOINT_TLS_RELOAD_SECS", "5")]));
    assert_eq!(err.setting, "TOKEN_ENDPOINT_TLS_RELOAD_SECS", "{err}");
    // TLS files with a plain redis:// server: it would get the password
    // in clear.
    let err = refused(with(
        REDIS,
        &[("TOKEN_ENDPOINT_REDIS_TLS_CA_FILE", "/ca.pem")],
    ));
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_TLS_CA_FILE", "{err}");
    let err = refused(with(
        &[
            (
                "TOKEN_ENDPOINT_REDIS_URL",
                "rediss://a.example:6380,redis://b.example:6379",
            ),
            ("TOKEN_ENDPOINT_REDIS_MODE", "cluster"),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        &[
            ("TOKEN_ENDPOINT_REDIS_TLS_CERT_FILE", "/c.pem"),
            ("TOKEN_ENDPOINT_REDIS_TLS_KEY_FILE", "/c.key"),
        ],
    ));
    // The mix itself is refused first, whatever the files (issue 20):
    // every Cluster node is reached the way the first seed is.
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL", "{err}");
    assert!(err.reason.contains("mixes redis:// and rediss://"), "{err}");
    // `#insecure` (redis-rs's switch that skips verification) is refused.
    let err = refused(with(
        &[
            (
                "TOKEN_ENDPOINT_REDIS_URL",
                "rediss://redis.example:6380/#insecure",
            ),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        &[],
    ));
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_URL", "{err}");
    // A password in the URL and in a file: which one is meant?
    let err = refused(with(
        &[
            (
                "TOKEN_ENDPOINT_REDIS_URL",
                "rediss://user:pw@redis.example:6380",
            ),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        &[("TOKEN_ENDPOINT_REDIS_PASSWORD_FILE", "/pw")],
    ));
    assert_eq!(err.setting, "TOKEN_ENDPOINT_REDIS_PASSWORD_FILE", "{err}");
    // A user name without a password in the URL, and the file: fine.
    with(
        &[
            (
                "TOKEN_ENDPOINT_REDIS_URL",
                "rediss://user@redis.example:6380",
            ),
            ("TOKEN_ENDPOINT_ISSUER", "https://id.example"),
            ("TOKEN_ENDPOINT_CLIENTS_FILE", "/c.toml"),
            ("TOKEN_ENDPOINT_SIGNING_KEYS", "/k.pem"),
        ],
        &[("TOKEN_ENDPOINT_REDIS_PASSWORD_FILE", "/pw")],
    )
    .unwrap();
}
