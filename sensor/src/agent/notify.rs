//! The service manager's readiness protocol (`sd_notify`): under systemd's
//! `Type=notify` the agent says `READY=1` once capture is live, and
//! `STOPPING=1` when it begins to stop. Outside systemd (`NOTIFY_SOCKET`
//! unset) it does nothing. Written out rather than linked from libsystemd:
//! one datagram to a path or an abstract socket.

use std::{
    io,
    os::{linux::net::SocketAddrExt, unix::net::UnixDatagram},
};

/// Sends `state` (`KEY=VALUE` lines) to the service manager, if any.
pub fn notify(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    if let Err(err) = send(&socket.to_string_lossy(), state) {
        tracing::warn!(
            error = %err,
            socket = %socket.to_string_lossy(),
            "cannot tell the service manager the agent's state"
        );
    }
}

fn send(socket: &str, state: &str) -> io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let addr = match socket.strip_prefix('@') {
        Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?,
        None => std::os::unix::net::SocketAddr::from_pathname(socket)?,
    };
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sends_to_a_path_and_to_an_abstract_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        send(path.to_str().expect("utf-8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");

        let name = format!("weightwarden-test-{}", std::process::id());
        let addr =
            std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).expect("abstract");
        let listener = UnixDatagram::bind_addr(&addr).expect("bind abstract");
        send(&format!("@{name}"), "STOPPING=1").expect("send abstract");
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"STOPPING=1");
        assert!(send("/nonexistent/notify", "READY=1").is_err());
    }
}
