//! Which `Host` the dev endpoints answer to. `POST /dev/codes` answers with
//! a freshly minted code and `GET /dev/authorize` redirects with one, and
//! both listen on loopback in the demo. A web page can still reach them
//! through DNS rebinding: its own name (`evil.example`) re-pointed at
//! 127.0.0.1 makes the browser treat this server as same-origin with the
//! page, and read the answer. The browser then sends `Host: evil.example`,
//! which is what is refused here.
//!
//! Allowed, whatever the port (the port is the attacker's choice too, and
//! a proxy may change it):
//! - an IP literal on loopback (127.0.0.0/8, `[::1]`), or equal to the bind
//!   address; with an unspecified bind (`0.0.0.0`, `[::]`), any IP literal.
//!   An IP literal cannot be rebound: a page that sends it was served from
//!   that address;
//! - `localhost` and names under `.localhost` (RFC 6761 §6.3: resolved to
//!   loopback and never delegated; browsers answer them themselves);
//! - the issuer's host (`TOKEN_ENDPOINT_ISSUER`): the name the operator
//!   gave this server.

use std::net::IpAddr;
use std::str::FromStr;

use actix_web::http::header;
use actix_web::http::uri::Authority;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use url::{Host, Url};

use super::response::error_json;

/// The names `/dev/*` answers to. Built once at start-up.
#[derive(Debug, Clone)]
pub struct DevHosts {
    bind: IpAddr,
    issuer: Option<Host<String>>,
}

impl DevHosts {
    pub fn new(bind: IpAddr, issuer: &str) -> Self {
        // The issuer was checked as a URL at start-up; one this parser
        // refuses simply adds no name.
        let issuer = Url::parse(issuer)
            .ok()
            .and_then(|url| url.host().map(|host| host.to_owned()));
        Self { bind, issuer }
    }

    /// `Ok` when every authority the request names (the `Host` header, and
    /// the request target's authority when it has one, as over HTTP/2) is
    /// one of this server's.
    pub fn check(&self, request: &HttpRequest) -> Result<(), ForeignHost> {
        let target = request.uri().authority().map(|a| Ok(a.clone()));
        let header = request.headers().get(header::HOST).map(|value| {
            value
                .to_str()
                .ok()
                .and_then(|value| Authority::from_str(value).ok())
                .ok_or(())
        });
        if target.is_none() && header.is_none() {
            return Err(ForeignHost::Missing);
        }
        for authority in [target, header].into_iter().flatten() {
            if !authority.is_ok_and(|authority| self.allows(&authority)) {
                tracing::warn!(
                    security_event = "dev_endpoint_foreign_host",
                    host = ?request.headers().get(header::HOST),
                    "a request to /dev/* named a host that is not this machine's: refused (DNS rebinding?)"
                );
                return Err(ForeignHost::Foreign);
            }
        }
        Ok(())
    }

    fn allows(&self, authority: &Authority) -> bool {
        // A Host names no user (RFC 9110 §7.2); `Authority` would accept
        // one and report the host after it.
        if authority.as_str().contains('@') {
            return false;
        }
        let Ok(host) = Host::parse(authority.host()) else {
            return false;
        };
        let ip = match &host {
            Host::Ipv4(ip) => Some(IpAddr::V4(*ip)),
            Host::Ipv6(ip) => Some(IpAddr::V6(*ip)),
            Host::Domain(name) => {
                if *name == "localhost" || name.ends_with(".localhost") {
                    return true;
                }
                None
            }
        };
        if let Some(ip) = ip {
            return ip.is_loopback()
                || ip == self.bind
                || self.bind.is_unspecified()
                // `[::ffff:127.0.0.1]` is 127.0.0.1.
                || matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()));
        }
        self.issuer.as_ref() == Some(&host)
    }
}

/// Why a request to `/dev/*` was refused for its host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ForeignHost {
    #[error("the request names no Host")]
    Missing,
    #[error("the Host is not a loopback address, localhost, or this server's bind address or issuer: /dev/* answers only to local names")]
    Foreign,
}

impl ForeignHost {
    /// A 400 with the RFC 6749 error shape the dev endpoints answer in.
    pub fn response(self) -> HttpResponse {
        error_json(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &self.to_string(),
        )
    }
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;

    use super::*;

    fn hosts(bind: &str) -> DevHosts {
        DevHosts::new(bind.parse().unwrap(), "http://tokens.dev.test:8080")
    }

    fn allowed(hosts: &DevHosts, host: &str) -> bool {
        let request = TestRequest::default()
            .insert_header((header::HOST, host))
            .to_http_request();
        hosts.check(&request).is_ok()
    }

    #[test]
    fn local_names_and_the_bind_address_are_allowed() {
        let loopback = hosts("127.0.0.1");
        for host in [
            "127.0.0.1:8080",
            "127.0.0.1",
            "127.0.0.2:8080",
            "[::1]:8080",
            "localhost:8080",
            "LOCALHOST",
            "app.localhost:5173",
            "tokens.dev.test:8080",
            "tokens.dev.test",
        ] {
            assert!(allowed(&loopback, host), "{host}");
        }
        for host in [
            "evil.example:8080",
            "evil.example",
            "localhost.evil.example",
            "127.0.0.1.evil.example",
            "user@127.0.0.1:8080",
            "10.0.0.5:8080",
            "",
            "[::1",
            "evil.example:8080@127.0.0.1",
        ] {
            assert!(!allowed(&loopback, host), "{host}");
        }
        assert!(allowed(&hosts("10.0.0.5"), "10.0.0.5:8080"));
        assert!(allowed(&hosts("0.0.0.0"), "192.0.2.7:8080"));
        assert!(!allowed(&hosts("0.0.0.0"), "evil.example:8080"));
    }
}
