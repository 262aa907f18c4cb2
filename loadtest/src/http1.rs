//! A keep-alive HTTP/1.1 client connection that does as little as possible:
//! requests are prebuilt bytes, responses are parsed in place (httparse) and
//! the body is borrowed from the read buffer. One request in flight per
//! connection, as a browser-less OAuth client library does.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One answer, borrowed from the connection's buffer until the next request.
pub struct Reply<'a> {
    pub status: u16,
    pub body: &'a [u8],
}

pub struct Connection {
    addr: SocketAddr,
    stream: TcpStream,
    buf: Vec<u8>,
    /// The server said `Connection: close`: reconnect before the next request.
    closing: bool,
}

impl Connection {
    pub async fn open(addr: SocketAddr) -> io::Result<Self> {
        Ok(Self {
            addr,
            stream: connect(addr).await?,
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
        self.stream = connect(self.addr).await?;
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

async fn connect(addr: SocketAddr) -> io::Result<TcpStream> {
    let stream = TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
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
        let mut conn = Connection::open(addr).await.expect("connect");
        let request = post_form("t", "/oauth/token", "a=b");
        for expected in ["first", "second"] {
            let reply = conn.send(&request).await.expect("reply");
            assert_eq!(reply.status, 200);
            assert_eq!(reply.body, expected.as_bytes());
        }
        server.await.expect("server");
    }
}
