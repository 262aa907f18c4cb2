//! Web origins (RFC 6454) as a browser serializes them in its `Origin`
//! header: what a client's `allowed_cors_origins` lists, normalized once at
//! start-up so that a request's origin is checked by exact comparison.
//!
//! An entry is read by the WHATWG URL parser (the `url` crate), the one
//! browsers implement, and stored as that parser's origin serialization:
//! `scheme "://" host [ ":" port ]`, the scheme and host in lowercase, an
//! IPv6 host in brackets in its shortest form, and no port when it is the
//! scheme's default. So an entry is accepted in any case and with an
//! explicit default port, and compares equal to what the browser sends.
//!
//! The parser forgives more than an origin allows: it drops spaces, reads
//! `127.1` as `127.0.0.1` and `%61` as `a`, and takes `a.example/`,
//! `a.example/.`, `a.example:` and `user@a.example` for URLs of
//! `a.example`. Those are refused here with
//! their reason, so that what the registry says is what is compared.

use std::cell::Cell;

use url::{Host, ParseError, SyntaxViolation, Url};

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
    #[error("has a space or a control character")]
    Whitespace,
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

impl OriginError {
    fn from_parse(error: ParseError) -> Self {
        match error {
            ParseError::EmptyHost => Self::NoHost,
            ParseError::InvalidPort => Self::Port,
            ParseError::IdnaError
            | ParseError::InvalidDomainCharacter
            | ParseError::InvalidIpv4Address
            | ParseError::InvalidIpv6Address => Self::Host,
            // No scheme (`app.example`), or nothing this service can read
            // as scheme://host.
            _ => Self::Scheme,
        }
    }

    /// What the parser forgave. A violation it reports in an origin's
    /// text can only come from the authority's surroundings: the parser
    /// rejects a bad host outright.
    fn from_violation(violation: SyntaxViolation) -> Self {
        match violation {
            SyntaxViolation::ExpectedDoubleSlash => Self::Scheme,
            SyntaxViolation::EmbeddedCredentials | SyntaxViolation::UnencodedAtSign => {
                Self::UserInfo
            }
            SyntaxViolation::C0SpaceIgnored | SyntaxViolation::TabOrNewlineIgnored => {
                Self::Whitespace
            }
            // A backslash, or anything else, in what follows the host.
            _ => Self::Path,
        }
    }
}

/// `origin` in the form a browser sends, or why it is not a web origin.
pub fn normalize(origin: &str) -> Result<String, OriginError> {
    if origin.eq_ignore_ascii_case("null") {
        return Err(OriginError::Null);
    }
    // The parser would take `*` for a character of a domain name.
    if origin.contains('*') {
        return Err(OriginError::Wildcard);
    }
    // The parser would turn a Unicode name into punycode; the entry is
    // written as the browser sends it, so the two can be compared by eye.
    if !origin.is_ascii() {
        return Err(OriginError::NotAscii);
    }
    let first_violation = Cell::new(None);
    let record = |violation| {
        if first_violation.get().is_none() {
            first_violation.set(Some(violation));
        }
    };
    let url = Url::options()
        .syntax_violation_callback(Some(&record))
        .parse(origin)
        .map_err(OriginError::from_parse)?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(OriginError::Scheme);
    }
    if let Some(violation) = first_violation.get() {
        return Err(OriginError::from_violation(violation));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(OriginError::UserInfo);
    }
    // The parser gives every http(s) URL the path `/`, written or not, and
    // removes dot segments (`/.`, `/..`): a path was written when the text
    // has a slash besides the two of `//` (user information, which could
    // hide one, is refused above).
    if url.path() != "/"
        || url.query().is_some()
        || url.fragment().is_some()
        || origin.matches('/').count() != 2
    {
        return Err(OriginError::Path);
    }
    // The parser percent-decodes a host (`%41` is `a`); a browser sends it
    // decoded, and so must the entry be written.
    if origin.contains('%') {
        return Err(OriginError::Host);
    }
    match url.host() {
        None => return Err(OriginError::NoHost),
        Some(Host::Domain(domain)) => check_domain(domain)?,
        Some(Host::Ipv4(address)) => {
            // The parser reads a host ending in a number as IPv4, in any of
            // its forms (`127.1`, `0x7f.1`, `2130706433`): accept only the
            // dotted quad it serializes to. The text is scheme://host[:port]
            // by now, so the host is what follows the only `//`.
            let quad = format!("//{address}");
            if !(origin.ends_with(&quad) || origin.contains(&format!("{quad}:"))) {
                return Err(OriginError::Host);
            }
        }
        Some(Host::Ipv6(address)) => {
            if address.to_ipv4_mapped().is_some() {
                return Err(OriginError::Ipv4Mapped);
            }
        }
    }
    // An empty port (`a.example:`) is no port to the parser; and port 0
    // is no port a browser connects to.
    if origin.ends_with(':') || url.port() == Some(0) {
        return Err(OriginError::Port);
    }
    Ok(url.origin().ascii_serialization())
}

/// DNS labels (RFC 1123 §2.1, with `_`, which browsers accept): the parser
/// accepts any name free of a few forbidden characters, empty labels and
/// `$` included. A trailing dot (an empty last label) is a distinct origin
/// in browsers, and kept.
fn check_domain(domain: &str) -> Result<(), OriginError> {
    let labels = domain.strip_suffix('.').unwrap_or(domain);
    let valid = labels.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    });
    if valid {
        Ok(())
    } else {
        Err(OriginError::Host)
    }
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
            ("HTTP://LOCALHOST:5173", "http://localhost:5173"),
            ("HTTPS://APP.EXAMPLE:443", "https://app.example"),
            ("https://app.example:00443", "https://app.example"),
            ("http://app.example:443", "http://app.example:443"),
            ("https://app.example:80", "https://app.example:80"),
            ("http://[::1]:80", "http://[::1]"),
            ("HTTP://[::1]", "http://[::1]"),
            (
                "https://[2001:db8:0:0:0:0:0:1]:8443",
                "https://[2001:db8::1]:8443",
            ),
            ("http://10.0.0.1:3000", "http://10.0.0.1:3000"),
            // Not a number, so a name (WHATWG's "ends in a number" test).
            ("http://app.0x7fz", "http://app.0x7fz"),
        ] {
            assert_eq!(normalize(written).as_deref(), Ok(sent), "{written}");
        }
    }

    /// What is stored is exactly the WHATWG origin serialization, the form
    /// browsers send, and normalizing it again changes nothing.
    #[test]
    fn a_normalized_origin_is_the_whatwg_serialization() {
        for written in [
            "HTTPS://App.Example:443",
            "http://127.0.0.1:08080",
            "http://[0:0:0:0:0:0:0:1]:80",
            "https://my_app.example.",
        ] {
            let normalized = normalize(written).unwrap();
            assert_eq!(
                normalized,
                Url::parse(written).unwrap().origin().ascii_serialization(),
                "{written}"
            );
            assert_eq!(normalize(&normalized).as_ref(), Ok(&normalized));
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
            ("https://app.example:443/", OriginError::Path),
            ("http://[::1]/", OriginError::Path),
            ("https://app.example\\", OriginError::Path),
            ("https://app.example/?", OriginError::Path),
            ("https://app.example/.", OriginError::Path),
            ("https://app.example/..", OriginError::Path),
            ("https://app.example/%2e", OriginError::Path),
            ("https://app%2Eexample", OriginError::Host),
            ("https://%41pp.example", OriginError::Host),
            ("https://@app.example", OriginError::UserInfo),
            ("https://user:pw@app.example", OriginError::UserInfo),
            ("https://:pw@app.example", OriginError::UserInfo),
            ("https:app.example", OriginError::Scheme),
            ("https:/app.example", OriginError::Scheme),
            ("https:///app.example", OriginError::Scheme),
            (" https://app.example", OriginError::Whitespace),
            ("https://app.example ", OriginError::Whitespace),
            ("https://app\t.example", OriginError::Whitespace),
            ("https://app.example\n", OriginError::Whitespace),
            ("http://[::1]:", OriginError::Port),
            ("http://127.0.0.1:", OriginError::Port),
            ("http://[::1]:0", OriginError::Port),
            ("http://127.0.0.1.", OriginError::Host),
            ("http://1.2.3", OriginError::Host),
            ("http://2130706433", OriginError::Host),
            ("http://127.000.0.1", OriginError::Host),
            ("http://[::1]x", OriginError::Host),
            ("https://app$.example", OriginError::Host),
            ("https://xn--a.example", OriginError::Host),
            (
                &format!("https://{}.example", "a".repeat(64)),
                OriginError::Host,
            ),
        ] {
            assert_eq!(normalize(bad), Err(why), "{bad}");
        }
    }
}
