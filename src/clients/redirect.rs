//! Redirect URIs: where a client's codes may be sent. One matcher, used by
//! the registry when it loads a client and by the stand-in login page
//! (`/dev/authorize`) for each request, so the two can never disagree.
//!
//! A requested `redirect_uri` is allowed when it is, string for string, one
//! the client registered (RFC 6749 §3.1.2.3), or, for a registered `http`
//! redirect URI on the loopback IP literal `127.0.0.1` or `[::1]`, the same
//! URI on any port (RFC 8252 §7.3: a native app listens on whatever port
//! the operating system gives it). `localhost` never gets a free port (RFC
//! 8252 §8.3: the name can resolve elsewhere, and another program may
//! answer on it).
//!
//! The loopback comparison is done on what a browser will make of the
//! string: it is parsed with the WHATWG URL parser (the `url` crate, the
//! standard browsers implement), and it must also be that parser's own
//! serialization of itself, byte for byte. A URI a browser would rewrite
//! (user information, even an empty `@`; a `\` read as `/`; tabs or
//! newlines dropped; `127.1`; `/a/../b`; an explicit `:80`; upper case) is
//! refused rather than reasoned about, so no difference between the
//! parser checked here and the one a browser runs can send a code
//! elsewhere. A native app builds its redirect URI from its own port and
//! never writes such forms.

use std::net::{Ipv4Addr, Ipv6Addr};

use url::{Host, Url};

/// A redirect URI a client registered, checked when the registry loads.
#[derive(Debug, Clone)]
pub struct RedirectUri {
    uri: String,
    /// For an `http` URI on `127.0.0.1` or `[::1]`: the parsed URI, whose
    /// host, path and query a request must repeat on any port.
    loopback: Option<Url>,
}

/// Why a registered redirect URI cannot be used. Names what is wrong; the
/// caller names the client and the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RedirectUriError {
    #[error("is not an absolute URI without a fragment (RFC 6749 section 3.1.2)")]
    NotAbsolute,
    #[error("is not a URL a browser can follow: {0}")]
    Unparsable(url::ParseError),
    #[error("has user information (user@): a browser would go to the host after the @")]
    UserInfo,
    #[error("is a loopback redirect URI not written as browsers serialize it: write {0:?}")]
    NotCanonical(String),
}

impl RedirectUri {
    /// `uri` as registered, or why it cannot be.
    ///
    /// Every redirect URI must parse as a URL (a browser could not follow
    /// one that does not; a private-use scheme such as
    /// `com.example.app:/cb` parses), and an `http` or `https` one must have
    /// no user information: a registry entry a browser reads differently
    /// from its operator is a mistake at best. A loopback one must also be
    /// in its canonical form, because requests are compared with it after
    /// parsing.
    pub fn parse(uri: impl Into<String>) -> Result<Self, RedirectUriError> {
        let uri = uri.into();
        if !super::is_absolute_uri(&uri) {
            return Err(RedirectUriError::NotAbsolute);
        }
        let url = Url::parse(&uri).map_err(RedirectUriError::Unparsable)?;
        let web = matches!(url.scheme(), "http" | "https");
        if web && (!url.username().is_empty() || url.password().is_some()) {
            return Err(RedirectUriError::UserInfo);
        }
        let loopback = url.scheme() == "http" && is_loopback_literal(url.host());
        if loopback && url.as_str() != uri {
            return Err(RedirectUriError::NotCanonical(url.into()));
        }
        Ok(Self {
            uri,
            loopback: loopback.then_some(url),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.uri
    }

    /// Whether a code may be sent to `requested` under this registration.
    pub fn allows(&self, requested: &str) -> bool {
        if self.uri == requested {
            return true;
        }
        let (Some(registered), Some(requested)) = (&self.loopback, loopback_request(requested))
        else {
            return false;
        };
        // Any port; everything else as registered. Both are canonical, so
        // comparing the parsed parts compares what a browser will visit.
        requested.host() == registered.host()
            && requested.path() == registered.path()
            && requested.query() == registered.query()
    }
}

/// `requested` parsed, if it is an `http` URI on a loopback IP literal that
/// a browser will visit exactly as written: no user information, no `\`,
/// no fragment, and its own WHATWG serialization.
fn loopback_request(requested: &str) -> Option<Url> {
    // The WHATWG parser reads `\` as `/` in an http URL; other parsers
    // (the app's own, a proxy's) may not. The canonical check below would
    // catch it too; this says why.
    if requested.contains('\\') {
        return None;
    }
    let url = Url::parse(requested).ok()?;
    let exact = url.as_str() == requested;
    let plain = url.scheme() == "http"
        && url.username().is_empty()
        && url.password().is_none()
        && url.fragment().is_none();
    (exact && plain && is_loopback_literal(url.host())).then_some(url)
}

/// `127.0.0.1` or `[::1]`, the loopback IP literals RFC 8252 §7.3 names.
/// The rest of 127.0.0.0/8 is matched exactly only: a native app uses
/// these two.
fn is_loopback_literal(host: Option<Host<&str>>) -> bool {
    match host {
        Some(Host::Ipv4(ip)) => ip == Ipv4Addr::LOCALHOST,
        Some(Host::Ipv6(ip)) => ip == Ipv6Addr::LOCALHOST,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use proptest::sample::{select, Index};

    use super::*;

    fn registered(uri: &str) -> RedirectUri {
        RedirectUri::parse(uri).unwrap()
    }

    #[test]
    fn loopback_redirect_uris_match_on_any_port_and_nothing_else() {
        for (registered_uri, requested, allowed) in [
            ("http://127.0.0.1/cb", "http://127.0.0.1:51004/cb", true),
            ("http://127.0.0.1/cb", "http://127.0.0.1/cb", true),
            ("http://127.0.0.1:8080/cb", "http://127.0.0.1:9/cb", true),
            ("http://[::1]/cb", "http://[::1]:4000/cb", true),
            ("http://127.0.0.1/cb?a=1", "http://127.0.0.1:4/cb?a=1", true),
            (
                "http://127.0.0.1/cb?a=1",
                "http://127.0.0.1:4/cb?a=2",
                false,
            ),
            ("http://127.0.0.1/cb?a=1", "http://127.0.0.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51004/other", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:51004/cb/", false),
            ("http://localhost/cb", "http://localhost:51004/cb", false),
            ("https://127.0.0.1/cb", "https://127.0.0.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.2:4/cb", false),
            ("http://127.0.0.1/cb", "http://[::1]:4/cb", false),
            ("http://127.0.0.2/cb", "http://127.0.0.2:4/cb", false),
            // Issue 20: user information sends the browser to its host.
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:x@evil.example/cb",
                false,
            ),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:@evil.example/cb",
                false,
            ),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1@evil.example/cb",
                false,
            ),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:80@evil.example:443/cb",
                false,
            ),
            ("http://[::1]/cb", "http://[::1]:x@evil.example/cb", false),
            ("http://[::1]/cb", "http://[::1]@evil.example/cb", false),
            // User information naming the loopback host itself: still refused.
            ("http://127.0.0.1/cb", "http://x@127.0.0.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://@127.0.0.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://:@127.0.0.1:4/cb", false),
            // What a browser would rewrite before visiting.
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:4\\@evil.example/cb",
                false,
            ),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4\\cb", false),
            ("http://127.0.0.1/cb", "http://127.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://0x7f000001:4/cb", false),
            ("http://127.0.0.1/cb", "HTTP://127.0.0.1:4/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:04/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:80/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:/cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4/x/../cb", false),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4/c\tb", false),
            ("http://127.0.0.1/cb", " http://127.0.0.1:4/cb", false),
            ("http://[::1]/cb", "http://[0:0::1]:4/cb", false),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:4/cb#@evil.example",
                false,
            ),
            ("http://127.0.0.1/cb", "http://127.0.0.1:4/cb#", false),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1:4%40evil.example/cb",
                false,
            ),
            (
                "http://127.0.0.1/cb",
                "http://127.0.0.1.evil.example:4/cb",
                false,
            ),
            ("http://127.0.0.1/cb", "http://127.0.0.1:65536/cb", false),
        ] {
            assert_eq!(
                registered(registered_uri).allows(requested),
                allowed,
                "{registered_uri} for {requested}"
            );
        }
    }

    #[test]
    fn registered_redirect_uris_are_checked_at_load() {
        for ok in [
            "https://client.test/cb",
            "http://localhost:5173/",
            "http://127.0.0.1/callback",
            "http://127.0.0.1:8080/cb?x=1",
            "http://[::1]/cb",
            "com.example.app:/cb",
            "urn:ietf:wg:oauth:2.0:oob",
        ] {
            assert_eq!(registered(ok).as_str(), ok);
        }
        for (bad, why) in [
            ("/cb", RedirectUriError::NotAbsolute),
            ("https://client.test/cb#f", RedirectUriError::NotAbsolute),
            (
                "http://127.0.0.1:99999/cb",
                RedirectUriError::Unparsable(url::ParseError::InvalidPort),
            ),
            (
                "com.example.app://[bad/cb",
                RedirectUriError::Unparsable(url::ParseError::InvalidIpv6Address),
            ),
            ("https://a@client.test/cb", RedirectUriError::UserInfo),
            (
                "http://127.0.0.1:x@evil.example/cb",
                RedirectUriError::UserInfo,
            ),
            ("http://u:p@127.0.0.1/cb", RedirectUriError::UserInfo),
            (
                "http://127.0.0.1",
                RedirectUriError::NotCanonical("http://127.0.0.1/".into()),
            ),
            (
                "http://[0:0::1]/cb",
                RedirectUriError::NotCanonical("http://[::1]/cb".into()),
            ),
            (
                "http://127.0.0.1:80/cb",
                RedirectUriError::NotCanonical("http://127.0.0.1/cb".into()),
            ),
            (
                "http://@127.0.0.1/cb",
                RedirectUriError::NotCanonical("http://127.0.0.1/cb".into()),
            ),
        ] {
            assert_eq!(RedirectUri::parse(bad).unwrap_err(), why, "{bad}");
        }
    }

    /// Pieces of hostile redirect URIs: loopback and foreign hosts, every
    /// character that ends or splits an authority, their percent-encodings,
    /// and what the WHATWG parser drops or rewrites.
    const PIECES: &[&str] = &[
        "127.0.0.1",
        "[::1]",
        "[0:0::1]",
        "127.1",
        "0x7f.0.0.1",
        "localhost",
        "evil.example",
        ":",
        ":",
        "@",
        "@",
        "%40",
        "\\",
        "/",
        "/",
        "?",
        "#",
        ".",
        "..",
        "%2f",
        "%2F",
        "%5c",
        "%3a",
        "%00",
        "51004",
        "80",
        "0",
        "443",
        "65536",
        "x",
        "\t",
        "\n",
        "\r",
        " ",
        "callback",
        "/callback",
        "/callback",
        "cb",
        "?a=1",
        "a=1",
        "&",
        "[",
        "]",
        "::1",
        "%5b",
        "%5d",
        "。",
        "%E3%80%82",
        "ⓔvil.example",
        "127.0.0.1.",
    ];

    /// A requested redirect URI: either a scheme-ish prefix followed by
    /// hostile pieces, or a genuine loopback redirect URI with hostile
    /// pieces inserted anywhere (the near misses an attacker would try).
    fn requested() -> impl Strategy<Value = String> {
        let prefix = select(
            &[
                "http://",
                "http://",
                "http://",
                "HTTP://",
                "http:",
                "http:/",
                "http:\\\\",
                "https://",
                "//",
                "",
            ][..],
        );
        let built = (prefix, prop::collection::vec(select(PIECES), 0..12))
            .prop_map(|(prefix, pieces)| format!("{prefix}{}", pieces.concat()));
        let genuine = select(
            &[
                "http://127.0.0.1:51004/callback",
                "http://[::1]:51004/callback",
                "http://127.0.0.1:51004/cb?a=1",
            ][..],
        );
        let mutated = (
            genuine,
            prop::collection::vec((any::<Index>(), select(PIECES)), 1..4),
        )
            .prop_map(|(genuine, insertions)| {
                let mut uri = genuine.to_owned();
                for (at, piece) in insertions {
                    let boundaries: Vec<usize> = uri
                        .char_indices()
                        .map(|(i, _)| i)
                        .chain([uri.len()])
                        .collect();
                    uri.insert_str(*at.get(&boundaries), piece);
                }
                uri
            });
        prop_oneof![built, mutated]
    }

    /// The fast set (without the `slow-tests` feature) runs a fifth of the
    /// cases, as tests/api/hostile.rs does; `PROPTEST_CASES` overrides both.
    fn cases() -> u32 {
        let cases = if cfg!(feature = "slow-tests") {
            50_000
        } else {
            10_000
        };
        std::env::var("PROPTEST_CASES")
            .ok()
            .and_then(|n| n.parse().ok())
            .unwrap_or(cases)
    }

    const REGISTERED: &[&str] = &[
        "http://127.0.0.1/callback",
        "http://[::1]/callback",
        "http://127.0.0.1/cb?a=1",
    ];

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(cases()))]

        /// Whenever the matcher allows a URI, a browser following it
        /// visits the registered host, with no user information, at the
        /// registered path and query: the code cannot leave the machine.
        #[test]
        fn an_allowed_redirect_uri_always_visits_the_registered_host(
            requested in requested(),
            registered_uri in select(REGISTERED),
        ) {
            if registered(registered_uri).allows(&requested) {
                let visited = Url::parse(&requested);
                prop_assert!(visited.is_ok(), "an allowed URI does not parse: {:?}", visited);
                let visited = visited.expect("checked");
                let expected = Url::parse(registered_uri).expect("a registered URI parses");
                prop_assert_eq!(visited.host_str(), expected.host_str());
                prop_assert_eq!(visited.scheme(), "http");
                prop_assert_eq!(visited.username(), "");
                prop_assert_eq!(visited.password(), None);
                prop_assert_eq!(visited.path(), expected.path());
                prop_assert_eq!(visited.query(), expected.query());
                prop_assert_eq!(visited.fragment(), None);
            }
        }

        /// The freedom RFC 8252 gives is kept: any port a native app gets.
        #[test]
        fn a_loopback_redirect_uri_is_allowed_on_every_port(port in 1u16..) {
            let v4 = registered("http://127.0.0.1/callback");
            let v6 = registered("http://[::1]/callback");
            let on_port = |host: &str| if port == 80 {
                format!("http://{host}/callback")
            } else {
                format!("http://{host}:{port}/callback")
            };
            prop_assert!(v4.allows(&on_port("127.0.0.1")));
            prop_assert!(v6.allows(&on_port("[::1]")));
            prop_assert!(!v4.allows(&on_port("[::1]")));
        }
    }
}
