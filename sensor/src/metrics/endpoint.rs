//! The Prometheus metrics endpoint (`agent.metrics`, `--metrics ADDR`):
//! `GET /metrics` answers the registry as OpenMetrics text. Loopback by
//! default; `none` turns it off.
//!
//! The event loop accepts each connection and renders the text itself
//! (the stages' figures live there), then hands the connection to a task
//! that reads the request and answers it, so a slow or silent client
//! never holds up capture. A request must arrive within
//! [`REQUEST_TIMEOUT`] and fit in [`REQUEST_MAX`] bytes.

use std::{io, net::SocketAddr, time::Duration};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};

/// How long a client has to send its request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest request head read; a scrape's is a few hundred bytes.
const REQUEST_MAX: usize = 8192;

/// OpenMetrics text, as `prometheus-client` encodes it (with `# EOF`).
const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Debug, thiserror::Error)]
#[error(
    "cannot serve metrics at {addr} (is another agent or service using it?): choose another \
     address with --metrics HOST:PORT (agent.metrics), or turn the endpoint off with \
     --metrics none"
)]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: io::Error,
}

/// A bound metrics listener.
pub struct Endpoint {
    listener: TcpListener,
}

impl Endpoint {
    /// Binds `addr` (inside the runtime).
    pub fn bind(addr: SocketAddr) -> Result<Self, BindError> {
        let bind = || {
            let std = std::net::TcpListener::bind(addr)?;
            std.set_nonblocking(true)?;
            TcpListener::from_std(std)
        };
        let listener = bind().map_err(|source| BindError { addr, source })?;
        Ok(Self { listener })
    }

    /// The address it listens on (the port chosen for `:0`).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The next client.
    pub async fn accept(&self) -> io::Result<TcpStream> {
        self.listener.accept().await.map(|(stream, _)| stream)
    }
}

/// Reads one request from `stream` and answers it: `body` for
/// `GET /metrics`, 404 for any other path, 405 for another method.
pub async fn answer(mut stream: TcpStream, body: String) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        _ => return,
    };
    let response = respond(&head, &body);
    let _ = stream.write_all(response.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// The request head, up to its blank line (or [`REQUEST_MAX`] bytes).
async fn read_head(stream: &mut TcpStream) -> io::Result<String> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < REQUEST_MAX {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            break;
        }
        head.extend_from_slice(&buf[..n]);
    }
    Ok(String::from_utf8_lossy(&head).into_owned())
}

/// The HTTP/1.1 response to a request whose head is `head`.
pub fn respond(head: &str, metrics: &str) -> String {
    let mut words = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => ("200 OK", CONTENT_TYPE, metrics),
        ("GET", _) => (
            "404 Not Found",
            "text/plain; charset=utf-8",
            "weightwarden serves its metrics at /metrics\n",
        ),
        _ => (
            "405 Method Not Allowed",
            "text/plain; charset=utf-8",
            "only GET /metrics\n",
        ),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_get_metrics_and_nothing_else() {
        let ok = respond("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "a 1\n# EOF\n");
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("Content-Type: application/openmetrics-text"),
            "{ok}"
        );
        assert!(ok.contains("Content-Length: 10\r\n") && ok.ends_with("\r\n\r\na 1\n# EOF\n"));
        let query = respond("GET /metrics?x=1 HTTP/1.1\r\n\r\n", "m");
        assert!(query.starts_with("HTTP/1.1 200"), "{query}");
        assert!(respond("GET / HTTP/1.1\r\n\r\n", "m").starts_with("HTTP/1.1 404"));
        assert!(respond("POST /metrics HTTP/1.1\r\n\r\n", "m").starts_with("HTTP/1.1 405"));
        assert!(respond("", "m").starts_with("HTTP/1.1 405"));
    }
}
