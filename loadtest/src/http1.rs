//! A keep-alive HTTP/1.1 client connection that does as little as possible:
//! requests are prebuilt bytes, responses are parsed in place (httparse) and
//! the body is borrowed from the read buffer. One request in flight per
//! connection, as a browser-less OAuth client library does. Over TLS
//! (rustls) when the target is `https://`.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;
use tokio_rustls::rustls::pki_types::ServerName;
use tokio_rustls::TlsConnector;

/// How to speak TLS to the target: the trusted CA and the name to check.
#[derive(Clone)]
pub struct Tls {
    connector: TlsConnector,
    name: ServerName<'static>,
}

impl Tls {
    /// Trust the PEM certificates of `ca` (and nothing else); verify the
    /// server's certificate for `host` (a name or an IP address).
    pub fn new(ca: &[u8], host: &str) -> Result<Self, String> {
        use tokio_rustls::rustls::pki_types::pem::PemObject;
        use tokio_rustls::rustls::pki_types::CertificateDer;
        let mut roots = tokio_rustls::rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca) {
            let cert = cert.map_err(|e| format!("--ca-file: {e}"))?;
            roots.add(cert).map_err(|e| format!("--ca-file: {e}"))?;
        }
        let provider = Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider());
        let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(host.to_owned())
            .map_err(|e| format!("--target host {host:?}: {e}"))?;
        Ok(Self {
            connector: TlsConnector::from(Arc::new(config)),
            name,
        })
    }
}

/// A plain or TLS stream.
enum Stream {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

/// One answer, borrowed from the connection's buffer until the next request.
pub struct Reply<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

pub struct Connection {
    addr: SocketAddr,
    tls: Option<Tls>,
    stream: Stream,
    buf: Vec<u8>,
    /// The server said `Connection: close`: reconnect before the next request.
    closing: bool,
}

impl Connection {
    pub async fn open(addr: SocketAddr, tls: Option<Tls>) -> io::Result<Self> {
        Ok(Self {
            addr,
            stream: connect(addr, tls.as_ref()).await?,
            tls,
            buf: Vec::with_capacity(16 * 1024),
            closing: false,
        })
    }

    /// Send `request` (a whole HTTP/1.1 request) and read its response.
    pub async fn send(&mut self, request: &[u8]) -> io::Result<Reply<'_>> {
        if self.closing {
            self.reconnect().await?;
        }
        self.buf.clear();
        self.stream.write_all(request).await?;
        self.stream.flush().await?;
        let (status, head_len, body_len) = loop {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                self.closing = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection before answering",
                ));
            }
            if let Some(head) = self.parse_head()? {
                break head;
            }
        };
        let total = head_len + body_len;
        while self.buf.len() < total {
            if self.stream.read_buf(&mut self.buf).await? == 0 {
                self.closing = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "server closed the connection mid-body",
                ));
            }
        }
        let body = self.buf.get(head_len..total).unwrap_or_default();
        Ok(Reply { status, body })
    }

    /// Re-establish the connection (after an error or `Connection: close`).
    pub async fn reconnect(&mut self) -> io::Result<()> {
        self.stream = connect(self.addr, self.tls.as_ref()).await?;
        self.buf.clear();
        self.closing = false;
        Ok(())
    }

    /// `(status, head length, body length)` once the head is complete.
    fn parse_head(&mut self) -> io::Result<Option<(u16, usize, usize)>> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        let head_len = match response.parse(&self.buf) {
            Ok(httparse::Status::Complete(len)) => len,
            Ok(httparse::Status::Partial) => return Ok(None),
            Err(e) => return Err(io::Error::new(io::ErrorKind::InvalidData, e)),
        };
        let mut body_len = None;
        for header in response.headers.iter() {
            if header.name.eq_ignore_ascii_case("content-length") {
                body_len = std::str::from_utf8(header.value)
                    .ok()
                    .and_then(|v| v.trim().parse::<usize>().ok());
            } else if header.name.eq_ignore_ascii_case("connection")
                && header.value.eq_ignore_ascii_case(b"close")
            {
                self.closing = true;
            }
        }
        let status = response.code.unwrap_or(0);
        // Every answer of the token endpoint is sized; a chunked one would be
        // a change worth noticing, not something to measure through.
        let body_len = body_len.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("HTTP {status} without Content-Length"),
            )
        })?;
        Ok(Some((status, head_len, body_len)))
    }
}

async fn connect(addr: SocketAddr, tls: Option<&Tls>) -> io::Result<Stream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(match tls {
        None => Stream::Plain(stream),
        Some(tls) => Stream::Tls(Box::new(
            tls.connector.connect(tls.name.clone(), stream).await?,
        )),
    })
}

/// A whole `POST` request with a form body, ready to write.
pub fn post_form(host: &str, path: &str, body: &str) -> Vec<u8> {
    post(host, path, "application/x-www-form-urlencoded", body)
}

pub fn post(host: &str, path: &str, content_type: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    /// A server that answers the first request with a split head and body and
    /// `Connection: close`, to exercise partial reads and reconnection.
    #[tokio::test]
    async fn reads_split_responses_and_reconnects_after_close() {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let server = tokio::spawn(async move {
            for answer in ["first", "second"] {
                let (mut socket, _) = listener.accept().await.expect("accept");
                let mut request = vec![0u8; 1024];
                let n = socket.read(&mut request).await.expect("read");
                assert!(request[..n].starts_with(b"POST /oauth/token HTTP/1.1\r\n"));
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    answer.len()
                );
                socket.write_all(head.as_bytes()).await.expect("head");
                socket.flush().await.expect("flush");
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                socket.write_all(answer.as_bytes()).await.expect("body");
            }
        });
        let mut conn = Connection::open(addr, None).await.expect("connect");
        let request = post_form("t", "/oauth/token", "a=b");
        for expected in ["first", "second"] {
            let reply = conn.send(&request).await.expect("reply");
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, expected.as_bytes());
        }
        server.await.expect("server");
    }
}
