//! Every `TOKEN_ENDPOINT_*` variable in the environment must be a setting
//! the service reads: a misspelled one (`TOKEN_ENDPOINT_REDIS_URI` for
//! `_URL`) would otherwise be ignored, and the service would start on the
//! embedded demo with `/dev/codes` mounted. The exception is what
//! Kubernetes injects for a Service whose name makes the same prefix
//! (`token-endpoint`, `token-endpoint-redis`, …), recognised by both its
//! name and its value, so a pod never fails on its own namespace.

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};

use super::{ConfigError, SETTINGS};

/// The prefix of every setting.
pub const PREFIX: &str = "TOKEN_ENDPOINT_";

/// Refuse the first `TOKEN_ENDPOINT_*` variable of `vars` that is neither a
/// setting nor a Kubernetes service link, naming it and the nearest setting.
pub fn check_names<'a>(
    vars: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> Result<(), ConfigError> {
    let mut unknown: Vec<&str> = vars
        .into_iter()
        .filter(|(name, value)| {
            name.starts_with(PREFIX)
                && !SETTINGS.iter().any(|s| s.name == *name)
                && !is_service_link(name, value)
        })
        .map(|(name, _)| name)
        .collect();
    // The same answer whatever the environment's order.
    unknown.sort_unstable();
    let Some((name, others)) = unknown.split_first() else {
        return Ok(());
    };
    let nearest = nearest_setting(name);
    let mut reason = String::from("is not a setting of this service");
    if let Some(nearest) = nearest {
        reason.push_str(&format!("; did you mean {nearest}?"));
    }
    reason.push_str(" (`token-endpoint settings` lists them all)");
    if !others.is_empty() {
        reason.push_str(&format!("; also unknown: {}", others.join(", ")));
    }
    Err(ConfigError {
        setting: Cow::Owned((*name).to_owned()),
        reason,
    })
}

/// The known setting nearest to `name`: one it extends by a word
/// (`LOG_LEVEL` for `LOG`), else the closest by Damerau–Levenshtein
/// distance if that is near enough to be a typo (`REDIS_URI`, `WORKER`).
fn nearest_setting(name: &str) -> Option<&'static str> {
    let extended = SETTINGS
        .iter()
        .filter(|s| {
            name.strip_prefix(s.name)
                .is_some_and(|rest| rest.starts_with('_'))
        })
        .max_by_key(|s| s.name.len());
    if let Some(setting) = extended {
        return Some(setting.name);
    }
    let (distance, nearest) = SETTINGS
        .iter()
        .map(|s| (strsim::damerau_levenshtein(name, s.name), s.name))
        .min()?;
    let suffix = name.len().saturating_sub(PREFIX.len()).max(1);
    // A third of what follows the prefix may differ; an unrelated name is
    // not matched.
    (distance <= suffix.div_ceil(3).max(2)).then_some(nearest)
}

/// What Kubernetes sets in every pod of a namespace for each Service
/// (unless `enableServiceLinks: false`), for a Service named, say,
/// `token-endpoint` listening on 8080/TCP:
///
/// ```text
/// TOKEN_ENDPOINT_SERVICE_HOST=10.0.0.11
/// TOKEN_ENDPOINT_SERVICE_PORT=8080           (and _SERVICE_PORT_<NAME> per named port)
/// TOKEN_ENDPOINT_PORT=tcp://10.0.0.11:8080
/// TOKEN_ENDPOINT_PORT_8080_TCP=tcp://10.0.0.11:8080
/// TOKEN_ENDPOINT_PORT_8080_TCP_PROTO=tcp
/// TOKEN_ENDPOINT_PORT_8080_TCP_PORT=8080
/// TOKEN_ENDPOINT_PORT_8080_TCP_ADDR=10.0.0.11
/// ```
///
/// The Service's name may add words (`TOKEN_ENDPOINT_REDIS_PORT`), so the
/// suffix decides, and the value must have the shape Kubernetes gives it:
/// `TOKEN_ENDPOINT_PORT=9090`, set by a person, is still refused.
fn is_service_link(name: &str, value: &str) -> bool {
    let is_ip = |v: &str| v.parse::<IpAddr>().is_ok();
    let is_port = |v: &str| v.parse::<u16>().is_ok_and(|p| p > 0);
    // `tcp://10.0.0.11:8080`, `udp://[fd00::1]:53`.
    let is_link = |v: &str, port: Option<u16>| {
        ["tcp://", "udp://", "sctp://"].iter().any(|scheme| {
            v.strip_prefix(scheme)
                .and_then(|addr| addr.parse::<SocketAddr>().ok())
                .is_some_and(|addr| port.is_none_or(|p| addr.port() == p))
        })
    };
    if name.ends_with("_SERVICE_HOST") {
        return is_ip(value);
    }
    if name.ends_with("_SERVICE_PORT") {
        return is_port(value);
    }
    if let Some((_, port_name)) = name.rsplit_once("_SERVICE_PORT_") {
        return !port_name.is_empty() && is_port(value);
    }
    if name.ends_with("_PORT") && is_link(value, None) {
        return true;
    }
    // `…_PORT_<port>_<PROTO>`, and its members `_PROTO`, `_PORT`, `_ADDR`.
    [None, Some("_PROTO"), Some("_PORT"), Some("_ADDR")]
        .into_iter()
        .any(|member| {
            let Some(head) = name.strip_suffix(member.unwrap_or("")) else {
                return false;
            };
            let Some((head, proto)) = head.rsplit_once('_') else {
                return false;
            };
            let Some((head, port)) = head.rsplit_once('_') else {
                return false;
            };
            let Ok(port_number) = port.parse::<u16>() else {
                return false;
            };
            if !head.ends_with("_PORT") || !matches!(proto, "TCP" | "UDP" | "SCTP") {
                return false;
            }
            match member {
                None => is_link(value, Some(port_number)),
                Some("_PROTO") => value == proto.to_ascii_lowercase(),
                Some("_PORT") => value == port,
                _ => is_ip(value),
            }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(vars: &[(&str, &str)]) -> Result<(), ConfigError> {
        check_names(vars.iter().copied())
    }

    #[test]
    fn a_misspelled_setting_is_named_with_the_nearest() {
        for (typo, nearest) in [
            ("TOKEN_ENDPOINT_REDIS_URI", "TOKEN_ENDPOINT_REDIS_URL"),
            ("TOKEN_ENDPOINT_WORKER", "TOKEN_ENDPOINT_WORKERS"),
            ("TOKEN_ENDPOINT_LOG_LEVEL", "TOKEN_ENDPOINT_LOG"),
            ("TOKEN_ENDPOINT_SINGING_KEYS", "TOKEN_ENDPOINT_SIGNING_KEYS"),
        ] {
            let err = check(&[("PATH", "/bin"), (typo, "x")]).unwrap_err();
            assert_eq!(err.setting, typo);
            assert!(
                err.reason.contains(&format!("did you mean {nearest}?")),
                "{typo}: {err}"
            );
        }
        let err = check(&[("TOKEN_ENDPOINT_COLOUR", "blue")]).unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_COLOUR");
        assert!(!err.reason.contains("did you mean"), "{err}");
    }

    #[test]
    fn settings_and_other_variables_pass() {
        let known: Vec<(&str, &str)> = SETTINGS.iter().map(|s| (s.name, "x")).collect();
        check(&known).unwrap();
        check(&[("HOME", "/root"), ("TOKEN_ENDPOINTS", "x")]).unwrap();
    }

    #[test]
    fn kubernetes_service_links_pass() {
        for service in [
            "TOKEN_ENDPOINT",
            "TOKEN_ENDPOINT_REDIS",
            "TOKEN_ENDPOINT_ADMIN_V2",
        ] {
            let link = |suffix: &str| format!("{service}_{suffix}");
            let vars = [
                (link("SERVICE_HOST"), "10.0.0.11"),
                (link("SERVICE_PORT"), "8080"),
                (link("SERVICE_PORT_HTTP"), "8080"),
                (link("PORT"), "tcp://10.0.0.11:8080"),
                (link("PORT_8080_TCP"), "tcp://10.0.0.11:8080"),
                (link("PORT_8080_TCP_PROTO"), "tcp"),
                (link("PORT_8080_TCP_PORT"), "8080"),
                (link("PORT_8080_TCP_ADDR"), "10.0.0.11"),
                (link("PORT_53_UDP"), "udp://[fd00::1]:53"),
                (link("PORT_53_UDP_ADDR"), "fd00::1"),
            ];
            for (name, value) in &vars {
                assert!(is_service_link(name, value), "{name}={value}");
            }
            let pairs: Vec<(&str, &str)> = vars.iter().map(|(n, v)| (n.as_str(), *v)).collect();
            check(&pairs).unwrap();
        }
    }

    #[test]
    fn a_service_link_name_with_another_value_is_refused() {
        for (name, value) in [
            ("TOKEN_ENDPOINT_PORT", "9090"),
            ("TOKEN_ENDPOINT_SERVICE_HOST", "token.example"),
            ("TOKEN_ENDPOINT_SERVICE_PORT", "http"),
            ("TOKEN_ENDPOINT_PORT_8080_TCP", "tcp://10.0.0.11:9090"),
            ("TOKEN_ENDPOINT_PORT_8080_TCP_PROTO", "udp"),
            ("TOKEN_ENDPOINT_PORT_8080_TCP_PORT", "9090"),
            ("TOKEN_ENDPOINT_PORT_8080_HTTP", "tcp://10.0.0.11:8080"),
        ] {
            assert!(!is_service_link(name, value), "{name}={value}");
            assert_eq!(check(&[(name, value)]).unwrap_err().setting, name);
        }
    }

    #[test]
    fn every_unknown_name_is_listed() {
        let err = check(&[
            ("TOKEN_ENDPOINT_WORKER", "4"),
            ("TOKEN_ENDPOINT_LOG_LEVEL", "debug"),
        ])
        .unwrap_err();
        assert_eq!(err.setting, "TOKEN_ENDPOINT_LOG_LEVEL");
        assert!(
            err.reason.contains("also unknown: TOKEN_ENDPOINT_WORKER"),
            "{err}"
        );
    }
}
