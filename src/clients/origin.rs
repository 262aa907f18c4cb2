//! Web origins (RFC 6454) as a browser serializes them in its `Origin`
//! header: what a client's `allowed_cors_origins` lists, normalized once at
//! start-up so that a request's origin is checked by exact comparison.
//!
//! The serialization browsers send (the WHATWG URL standard's origin
//! serialization) is `scheme "://" host [ ":" port ]`: the scheme and host
//! in lowercase, an IPv6 host in brackets in its shortest form, and no port
//! when it is the scheme's default. A registry entry is accepted in any
//! case and with an explicit default port, and stored in that form.

use std::net::{Ipv4Addr, Ipv6Addr};

/// Why a string is not a web origin this service can allow. Names what is
/// wrong; the caller names the client and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OriginError {
    #[error("\"null\" is never allowed: every sandboxed iframe and file: page sends it")]
    Null,
    #[error("has a wildcard; list each origin exactly")]
    Wildcard,
    #[error("is not scheme://host[:port] with scheme http or https")]
    Scheme,
    #[error("has a path, a trailing slash, a query or a fragment: an origin is scheme://host[:port] only")]
    Path,
    #[error("has user information (user@)")]
    UserInfo,
    #[error("has no host")]
    NoHost,
    #[error("has a host that is not ASCII: write it as the browser sends it (punycode, xn--...)")]
    NotAscii,
    #[error("has a host that is not a domain name or an IP address")]
    Host,
    #[error("has an IPv4-mapped IPv6 host: write the IPv4 address")]
    Ipv4Mapped,
    #[error("has a port that is not a number from 1 to 65535")]
    Port,
}

/// `origin` in the form a browser sends, or why it is not a web origin.
pub fn normalize(origin: &str) -> Result<String, OriginError> {
    if origin.eq_ignore_ascii_case("null") {
        return Err(OriginError::Null);
    }
    if origin.contains('*') {
        return Err(OriginError::Wildcard);
    }
    let (scheme, rest) = origin.split_once("://").ok_or(OriginError::Scheme)?;
    let scheme = scheme.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return Err(OriginError::Scheme),
    };
    if rest.contains(['/', '?', '#', '\\']) {
        return Err(OriginError::Path);
    }
    if rest.contains('@') {
        return Err(OriginError::UserInfo);
    }
    if !rest.is_ascii() {
        return Err(OriginError::NotAscii);
    }
    let (host, port) = match rest.strip_prefix('[') {
        Some(v6) => {
            let (address, after) = v6.split_once(']').ok_or(OriginError::Host)?;
            let address: Ipv6Addr = address.parse().map_err(|_| OriginError::Host)?;
            if address.to_ipv4_mapped().is_some() {
                return Err(OriginError::Ipv4Mapped);
            }
            let port = match after {
                "" => None,
                _ => Some(after.strip_prefix(':').ok_or(OriginError::Host)?),
            };
            (format!("[{address}]"), port)
        }
        None => {
            let (host, port) = match rest.split_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            };
            (normalize_host(host)?, port)
        }
    };
    let port = match port {
        None => None,
        Some(digits) => {
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return Err(OriginError::Port);
            }
            let port: u16 = digits
                .trim_start_matches('0')
                .parse()
                .map_err(|_| OriginError::Port)?;
            if port == 0 {
                return Err(OriginError::Port);
            }
            (port != default_port).then_some(port)
        }
    };
    Ok(match port {
        Some(port) => format!("{scheme}://{host}:{port}"),
        None => format!("{scheme}://{host}"),
    })
}

/// A domain name in lowercase, or a dotted IPv4 address; nothing a browser
/// would rewrite (`127.1`, `0x7f.1`) into another form.
fn normalize_host(host: &str) -> Result<String, OriginError> {
    if host.is_empty() {
        return Err(OriginError::NoHost);
    }
    let host = host.to_ascii_lowercase();
    let numeric = host
        .split('.')
        .rfind(|label| !label.is_empty())
        .is_some_and(|label| label.bytes().all(|b| b.is_ascii_digit()) || label.starts_with("0x"));
    if numeric {
        // The WHATWG URL parser reads a host ending in a number as IPv4:
        // accept only the dotted quad it serializes to.
        return host
            .parse::<Ipv4Addr>()
            .map(|a| a.to_string())
            .map_err(|_| OriginError::Host);
    }
    let valid = host.split('.').enumerate().all(|(i, label)| {
        // A trailing dot (an empty last label) is a distinct origin in
        // browsers: kept as written.
        (label.is_empty() && i > 0 && host.ends_with('.'))
            || (!label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    });
    if !valid || host.starts_with('.') || host.contains("..") {
        return Err(OriginError::Host);
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_serialized_as_browsers_send_them() {
        for (written, sent) in [
            ("https://app.example", "https://app.example"),
            ("HTTPS://App.Example", "https://app.example"),
            ("https://app.example:443", "https://app.example"),
            ("http://app.example:80", "http://app.example"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("http://127.0.0.1:08080", "http://127.0.0.1:8080"),
            ("https://app.example:8443", "https://app.example:8443"),
            ("http://[::1]:3000", "http://[::1]:3000"),
            ("http://[0:0:0:0:0:0:0:1]", "http://[::1]"),
            ("http://[2001:DB8::A]:80", "http://[2001:db8::a]"),
            ("https://my_app.example", "https://my_app.example"),
            ("https://app.example.", "https://app.example."),
            (
                "https://xn--bcher-kva.example",
                "https://xn--bcher-kva.example",
            ),
        ] {
            assert_eq!(normalize(written).as_deref(), Ok(sent), "{written}");
        }
    }

    #[test]
    fn what_is_not_an_origin_is_refused_with_its_reason() {
        for (bad, why) in [
            ("null", OriginError::Null),
            ("NULL", OriginError::Null),
            ("*", OriginError::Wildcard),
            ("https://*.app.example", OriginError::Wildcard),
            ("app.example", OriginError::Scheme),
            ("ftp://app.example", OriginError::Scheme),
            ("chrome-extension://abc", OriginError::Scheme),
            ("https://app.example/", OriginError::Path),
            ("https://app.example/cb", OriginError::Path),
            ("https://app.example?x", OriginError::Path),
            ("https://app.example#x", OriginError::Path),
            ("https://user@app.example", OriginError::UserInfo),
            ("https://", OriginError::NoHost),
            ("https://:443", OriginError::NoHost),
            ("https://bücher.example", OriginError::NotAscii),
            ("https://app example", OriginError::Host),
            ("https://app..example", OriginError::Host),
            ("https://.app.example", OriginError::Host),
            ("http://127.1", OriginError::Host),
            ("http://0x7f.0.0.1", OriginError::Host),
            ("http://[::1", OriginError::Host),
            ("http://[::ffff:127.0.0.1]", OriginError::Ipv4Mapped),
            ("https://app.example:0", OriginError::Port),
            ("https://app.example:65536", OriginError::Port),
            ("https://app.example:", OriginError::Port),
            ("https://app.example:x", OriginError::Port),
        ] {
            assert_eq!(normalize(bad), Err(why), "{bad}");
        }
    }
}
