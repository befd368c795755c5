//! `syslog:`: RFC 5424 messages (framed by `output/frame.rs`) to a syslog
//! server over UDP (RFC 5426), TCP (RFC 6587 octet counting), TLS (RFC
//! 5425) or a local unix socket (`/dev/log`).
//!
//! Streams connect on the first write and again after any failure; before
//! each batch the connection is checked for a peer that hung up, so that
//! records are not written into a socket the server already closed. TCP
//! syslog has no acknowledgements: records the kernel accepted just before
//! the server died can still be lost, which docs/outputs.md says (the HTTP
//! outputs are acknowledged). A datagram too large for the transport
//! (`EMSGSIZE`, a UDP record over 64 KiB) is refused and counted; a UDP
//! send that fails is lost (UDP has no spool: it cannot tell a delivered
//! record from a lost one anyway).

use std::{
    io::{self, Write},
    net::{SocketAddr, TcpStream, ToSocketAddrs, UdpSocket},
    os::{
        fd::{AsFd, AsRawFd},
        unix::net::{UnixDatagram, UnixStream},
    },
    path::Path,
    sync::Arc,
    time::Duration,
};

use rustls::{ClientConnection, StreamOwned, pki_types::ServerName};

use super::{Batch, Sink, SinkError, WriteError, Written, tls};
use crate::config::{SinkSpec, SyslogSpec, SyslogTransport, TlsOptions};

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// A server that takes no bytes for this long counts as failed.
const IO_TIMEOUT: Duration = Duration::from_secs(10);

enum Conn {
    Udp(UdpSocket),
    Tcp(TcpStream),
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
    Datagram(UnixDatagram),
    Stream(UnixStream),
}

pub struct SyslogSink {
    name: String,
    transport: SyslogTransport,
    tls: Option<(Arc<rustls::ClientConfig>, ServerName<'static>)>,
    conn: Option<Conn>,
}

impl SyslogSink {
    pub fn open(spec: &SyslogSpec, options: &TlsOptions) -> Result<Self, SinkError> {
        let name = SinkSpec::Syslog(spec.clone()).to_string();
        let tls = match &spec.transport {
            SyslogTransport::Tls(address) => {
                let config = tls::client_config(&name, options.ca.as_deref())?;
                let host = address
                    .rsplit_once(':')
                    .map_or(address.as_str(), |(h, _)| h)
                    .trim_start_matches('[')
                    .trim_end_matches(']');
                let server =
                    ServerName::try_from(host.to_owned()).map_err(|err| SinkError::Setup {
                        output: name.clone(),
                        problem: format!("{host:?} is not a host name TLS can check: {err}"),
                    })?;
                Some((config, server))
            }
            _ => None,
        };
        Ok(Self {
            name,
            transport: spec.transport.clone(),
            tls,
            conn: None,
        })
    }

    /// Whether the unix socket at `path` is a stream socket (syslog-ng
    /// may listen so); `/dev/log` is usually a datagram socket, and one
    /// that is absent at start-up is taken to be one.
    pub fn unix_is_stream(path: &Path) -> bool {
        UnixDatagram::unbound()
            .and_then(|s| s.connect(path))
            .is_err_and(|err| err.raw_os_error() == Some(libc::EPROTOTYPE))
    }

    fn connect(&self) -> io::Result<Conn> {
        match &self.transport {
            SyslogTransport::Udp(address) => {
                let addr = resolve(address)?;
                let local: SocketAddr = if addr.is_ipv4() {
                    ([0, 0, 0, 0], 0).into()
                } else {
                    ([0u16; 8], 0).into()
                };
                let socket = UdpSocket::bind(local)?;
                socket.connect(addr)?;
                Ok(Conn::Udp(socket))
            }
            SyslogTransport::Tcp(address) => Ok(Conn::Tcp(tcp(address)?)),
            SyslogTransport::Tls(address) => {
                let (config, server) = self
                    .tls
                    .as_ref()
                    .ok_or_else(|| io::Error::other("no TLS configuration"))?;
                let mut sock = tcp(address)?;
                let mut conn = ClientConnection::new(config.clone(), server.clone())
                    .map_err(io::Error::other)?;
                while conn.is_handshaking() {
                    conn.complete_io(&mut sock)?;
                }
                Ok(Conn::Tls(Box::new(StreamOwned::new(conn, sock))))
            }
            SyslogTransport::Unix(path) => {
                let datagram = UnixDatagram::unbound()?;
                match datagram.connect(path) {
                    Ok(()) => {
                        datagram.set_write_timeout(Some(IO_TIMEOUT))?;
                        Ok(Conn::Datagram(datagram))
                    }
                    Err(err) if err.raw_os_error() == Some(libc::EPROTOTYPE) => {
                        let stream = UnixStream::connect(path)?;
                        stream.set_write_timeout(Some(IO_TIMEOUT))?;
                        Ok(Conn::Stream(stream))
                    }
                    Err(err) => Err(err),
                }
            }
        }
    }

    fn udp(&self) -> bool {
        matches!(self.transport, SyslogTransport::Udp(_))
    }

    /// A failure: lost for UDP, retried for the others.
    fn failed(&self, delivered: usize, rejected: usize, source: io::Error) -> WriteError {
        let mut err = if self.udp() {
            WriteError::lost(delivered, source)
        } else {
            WriteError::retry(delivered, source)
        };
        err.rejected = rejected;
        err
    }
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::NotFound,
            format!("{address} resolves to no address"),
        )
    })
}

fn tcp(address: &str) -> io::Result<TcpStream> {
    let mut last = io::Error::new(
        io::ErrorKind::NotFound,
        format!("{address} resolves to no address"),
    );
    for addr in address.to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, CONNECT_TIMEOUT) {
            Ok(stream) => {
                stream.set_write_timeout(Some(IO_TIMEOUT))?;
                stream.set_read_timeout(Some(IO_TIMEOUT))?;
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(err) => last = err,
        }
    }
    Err(last)
}

/// The peer hung up (or the socket failed) since the last write.
fn hung_up(fd: impl AsFd) -> bool {
    let mut pfd = libc::pollfd {
        fd: fd.as_fd().as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, for the duration of the call.
    let ready = unsafe { libc::poll(&mut pfd, 1, 0) };
    ready == 1 && pfd.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) != 0
}

/// Writes all of `bytes`; on an error, how many went.
fn write_counting(out: &mut impl Write, bytes: &[u8]) -> Result<(), (usize, io::Error)> {
    let mut written = 0;
    while written < bytes.len() {
        match out.write(&bytes[written..]) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => written += n,
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            Err(err) => return Err((written, err)),
        }
    }
    out.flush().map_err(|err| (written, err))
}

impl Sink for SyslogSink {
    fn name(&self) -> &str {
        &self.name
    }

    fn write(&mut self, batch: &Batch) -> Result<Written, WriteError> {
        let stale = match &self.conn {
            Some(Conn::Tcp(s)) => hung_up(s),
            Some(Conn::Tls(s)) => hung_up(s.get_ref()),
            Some(Conn::Stream(s)) => hung_up(s),
            _ => false,
        };
        if stale {
            tracing::info!(output = %self.name, "the syslog server closed the connection: reconnecting");
            self.conn = None;
        }
        if self.conn.is_none() {
            match self.connect() {
                Ok(conn) => self.conn = Some(conn),
                Err(err) => return Err(self.failed(0, 0, err)),
            }
        }
        let streamed = match self.conn.as_mut() {
            Some(Conn::Tcp(s)) => Some(write_counting(s, &batch.bytes)),
            Some(Conn::Tls(s)) => Some(write_counting(s, &batch.bytes)),
            Some(Conn::Stream(s)) => Some(write_counting(s, &batch.bytes)),
            _ => None,
        };
        if let Some(result) = streamed {
            return match result {
                Ok(()) => Ok(Written::default()),
                Err((written, err)) => {
                    self.conn = None;
                    Err(self.failed(batch.whole_within(written), 0, err))
                }
            };
        }
        let mut written = Written::default();
        for i in 0..batch.records() {
            let record = batch.record(i);
            let sent = match &self.conn {
                Some(Conn::Udp(s)) => s.send(record),
                Some(Conn::Datagram(s)) => s.send(record),
                _ => Err(io::Error::other("not connected")),
            };
            match sent {
                Ok(_) => {}
                Err(err) if err.raw_os_error() == Some(libc::EMSGSIZE) => {
                    written.rejected += 1;
                    written.reason.get_or_insert_with(|| {
                        format!(
                            "a {} byte record is too large for one datagram",
                            record.len()
                        )
                    });
                }
                Err(err) => {
                    self.conn = None;
                    return Err(self.failed(i, written.rejected, err));
                }
            }
        }
        Ok(written)
    }
}
