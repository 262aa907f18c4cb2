//! `htu` (RFC 9449 §4.3 check 9): the proof names the token endpoint's
//! public URL, the one discovery advertises, compared after RFC 3986
//! syntax- and scheme-based normalisation (§6.2.2, §6.2.3), without its
//! query and fragment. The service sits behind a load balancer, so the URL
//! is configuration (the issuer), never rebuilt from the request.

use url::Url;

/// A URI as the comparison sees it: scheme and host lower-case, the
/// default port made explicit, the path with its percent-encoding
/// normalised and its dot segments removed; no query, no fragment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetUri {
    scheme: String,
    host: String,
    port: Option<u16>,
    path: String,
}

impl TargetUri {
    /// `uri` normalised; `None` for what is not an absolute `http`/`https`
    /// URI with a host and without user information.
    pub fn parse(uri: &str) -> Option<Self> {
        // RFC 3986 has no room for these; the WHATWG parser would quietly
        // strip or rewrite them (tabs, newlines, `\` for `/`).
        if uri.is_empty()
            || uri.len() > 2048
            || !uri.bytes().all(|b| b.is_ascii_graphic())
            || uri.contains('\\')
        {
            return None;
        }
        let url = Url::parse(uri).ok()?;
        if !matches!(url.scheme(), "http" | "https")
            || !url.username().is_empty()
            || url.password().is_some()
        {
            return None;
        }
        Some(Self {
            scheme: url.scheme().to_owned(),
            host: url.host_str()?.to_owned(),
            port: url.port_or_known_default(),
            path: normalise_percent_encoding(url.path())?,
        })
    }

    /// Whether the proof's `htu` names this URI.
    pub fn matches(&self, htu: &str) -> bool {
        Self::parse(htu).is_some_and(|other| other == *self)
    }
}

/// RFC 3986 §6.2.2.1–2: percent-encoded octets in upper case, and those of
/// unreserved characters decoded (`%7E` is `~`, `%41` is `A`). `None` for a
/// `%` not followed by two hex digits.
fn normalise_percent_encoding(path: &str) -> Option<String> {
    let mut out = String::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b != b'%' {
            out.push(char::from(b));
            continue;
        }
        let high = hex(bytes.next()?)?;
        let low = hex(bytes.next()?)?;
        let decoded = high << 4 | low;
        if decoded.is_ascii_alphanumeric() || b"-._~".contains(&decoded) {
            out.push(char::from(decoded));
        } else {
            out.push('%');
            out.push(char::from(
                b"0123456789ABCDEF".get(usize::from(high)).copied()?,
            ));
            out.push(char::from(
                b"0123456789ABCDEF".get(usize::from(low)).copied()?,
            ));
        }
    }
    // Dot segments revealed by the decoding (`/%2E%2E/`) go as RFC 3986
    // §6.2.2.3 says: the URL parser removes them once more.
    if out.contains("/.") {
        let again = Url::parse(&format!("http://h{out}")).ok()?;
        return Some(again.path().to_owned());
    }
    Some(out)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The equivalences RFC 3986 §6.2.2 and §6.2.3 name, and what stays
    /// different.
    #[test]
    fn normalised_forms_match_and_others_do_not() {
        let endpoint = TargetUri::parse("https://login.example.com/oauth/token").unwrap();
        for same in [
            "https://login.example.com/oauth/token",
            "HTTPS://LOGIN.Example.COM/oauth/token",
            "https://login.example.com:443/oauth/token",
            "https://login.example.com/oauth/%74oken",
            "https://login.example.com/oauth/./token",
            "https://login.example.com/a/../oauth/token",
            "https://login.example.com/oauth/%2E/token",
            "https://login.example.com/oauth/token?x=1",
            "https://login.example.com/oauth/token#frag",
            "https://login.example.com/oauth/token?",
        ] {
            assert!(endpoint.matches(same), "{same} should match");
        }
        for different in [
            "http://login.example.com/oauth/token",
            "https://login.example.com:8443/oauth/token",
            "https://evil.example.com/oauth/token",
            "https://login.example.com/oauth/token/",
            "https://login.example.com/OAUTH/token",
            "https://login.example.com/oauth/revoke",
            "https://user@login.example.com/oauth/token",
            "https://login.example.com/oauth%2Ftoken",
            "https://login.example.com/oauth/token%",
            "https://login.example.com\\oauth/token",
            " https://login.example.com/oauth/token",
            "https://login.example.com/oauth/to\tken",
            "/oauth/token",
            "ftp://login.example.com/oauth/token",
            "",
        ] {
            assert!(!endpoint.matches(different), "{different} should not match");
        }
        let root = TargetUri::parse("http://127.0.0.1:8080").unwrap();
        assert!(root.matches("http://127.0.0.1:8080/"));
        let encoded = TargetUri::parse("https://h.example/a%2fb").unwrap();
        assert!(encoded.matches("https://h.example/a%2Fb"));
    }
}
