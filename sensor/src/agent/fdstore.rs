//! The service manager's file descriptor store (systemd's `FDSTORE=1`,
//! `FileDescriptorStoreMax=` in the unit): a descriptor the agent hands
//! over at a handover stop outlives it, and comes back to the next agent
//! as a passed descriptor (`LISTEN_FDS`, `LISTEN_FDNAMES`, `LISTEN_PID`).
//! The agent keeps its fanotify group there, so that opens the policy
//! judges wait for the next agent instead of going through. Written out
//! like `notify.rs`: one datagram with `SCM_RIGHTS`, and three variables.

use std::{
    io::{self, IoSlice},
    os::{
        fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd},
        unix::net::UnixDatagram,
    },
};

use nix::sys::socket::{ControlMessage, MsgFlags, UnixAddr, sendmsg};

/// The name the fanotify group is stored under.
pub const FANOTIFY: &str = "fanotify";

/// The first descriptor the service manager passes.
const LISTEN_FDS_START: RawFd = 3;

/// Stores `fd` under `name` in the service manager's store. `Ok(false)`
/// outside a service manager (`NOTIFY_SOCKET` unset): nothing is kept.
pub fn store(name: &str, fd: BorrowedFd<'_>) -> io::Result<bool> {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return Ok(false);
    };
    store_at(&socket.to_string_lossy(), name, fd)?;
    Ok(true)
}

/// Sends `fd` to the service manager's socket `socket` (a path, or
/// `@name` for an abstract one).
fn store_at(socket: &str, name: &str, fd: BorrowedFd<'_>) -> io::Result<()> {
    let addr = match socket.strip_prefix('@') {
        Some(name) => UnixAddr::new_abstract(name.as_bytes()),
        None => UnixAddr::new(std::path::Path::new(socket)),
    }
    .map_err(io::Error::from)?;
    let message = format!("FDSTORE=1\nFDNAME={name}");
    let sock = UnixDatagram::unbound()?;
    let fds = [fd.as_raw_fd()];
    sendmsg(
        sock.as_raw_fd(),
        &[IoSlice::new(message.as_bytes())],
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        Some(&addr),
    )
    .map_err(io::Error::from)?;
    Ok(())
}

/// Takes the descriptor stored under `name` that the service manager
/// passed to this process, and asks it to forget its copy (the agent
/// stores it again at its own handover stop).
pub fn take(name: &str) -> Option<OwnedFd> {
    let passed = Passed::from_env(
        std::env::var("LISTEN_PID").ok().as_deref(),
        std::env::var("LISTEN_FDS").ok().as_deref(),
        std::env::var("LISTEN_FDNAMES").ok().as_deref(),
        std::process::id(),
    )?;
    let fd = passed.fd_of(name)?;
    super::notify::notify(&format!("FDSTOREREMOVE=1\nFDNAME={name}"));
    // SAFETY: the service manager passed this descriptor to this process
    // (LISTEN_PID is ours) at this number, and nothing else claims it.
    let owned = unsafe { OwnedFd::from_raw_fd(fd) };
    // Not inherited by anything the agent starts.
    let _ = nix::fcntl::fcntl(
        &owned,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    Some(owned)
}

/// The descriptors the service manager passed, by name.
#[derive(Debug, PartialEq, Eq)]
struct Passed {
    names: Vec<String>,
}

impl Passed {
    /// `None` unless the variables are for `pid` and well formed.
    fn from_env(
        pid: Option<&str>,
        count: Option<&str>,
        names: Option<&str>,
        me: u32,
    ) -> Option<Self> {
        if pid?.trim().parse::<u32>().ok()? != me {
            return None;
        }
        let count: usize = count?.trim().parse().ok()?;
        let mut names: Vec<String> = names.unwrap_or("").split(':').map(str::to_owned).collect();
        names.resize(count, String::new());
        Some(Self { names })
    }

    fn fd_of(&self, name: &str) -> Option<RawFd> {
        let index = self.names.iter().position(|n| n == name)?;
        Some(LISTEN_FDS_START + RawFd::try_from(index).ok()?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passed_descriptors_are_found_by_name_for_this_process_only() {
        let passed = Passed::from_env(Some("42"), Some("2"), Some("spool:fanotify"), 42).unwrap();
        assert_eq!(passed.fd_of(FANOTIFY), Some(4));
        assert_eq!(passed.fd_of("spool"), Some(3));
        assert_eq!(passed.fd_of("other"), None);
        // For another process (a parent's variables leaked): not ours.
        assert_eq!(
            Passed::from_env(Some("41"), Some("2"), Some("spool:fanotify"), 42),
            None
        );
        assert_eq!(
            Passed::from_env(None, Some("1"), Some("fanotify"), 42),
            None
        );
        // Fewer names than descriptors: the rest are unnamed.
        let passed = Passed::from_env(Some("42"), Some("2"), Some("fanotify"), 42).unwrap();
        assert_eq!(passed.fd_of(FANOTIFY), Some(3));
        assert_eq!(passed.fd_of(""), Some(4));
        assert_eq!(Passed::from_env(Some("42"), Some("x"), None, 42), None);
    }

    #[test]
    fn a_stored_descriptor_arrives_with_its_name() {
        use nix::sys::socket::{ControlMessageOwned, recvmsg};
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).expect("bind");
        let file = std::fs::File::open("/dev/null").expect("open");
        let socket = path.to_str().expect("utf-8");
        store_at(socket, FANOTIFY, std::os::fd::AsFd::as_fd(&file)).expect("store");
        let mut buf = [0u8; 64];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 1]);
        let msg = recvmsg::<UnixAddr>(
            listener.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("recvmsg");
        let fds: Vec<RawFd> = msg
            .cmsgs()
            .expect("cmsgs")
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            .collect();
        let n = msg.bytes;
        assert_eq!(&buf[..n], b"FDSTORE=1\nFDNAME=fanotify");
        assert_eq!(fds.len(), 1);
        // SAFETY: received just now, owned by this test.
        drop(unsafe { OwnedFd::from_raw_fd(fds[0]) });
        assert!(
            store_at(
                "/nonexistent/notify",
                FANOTIFY,
                std::os::fd::AsFd::as_fd(&file)
            )
            .is_err()
        );
    }
}
