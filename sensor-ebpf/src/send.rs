//! Where a process that has read watched bytes puts bytes: its writes,
//! sends and connects, per destination (a file, a pipe, a socket and its
//! peer). This is how a copy through user space (`tar`, `dd`, Python's
//! `shutil.copyfileobj`) and an upload (`curl -T`, `scp`, a socket) are
//! seen: the bytes pass through the process, so the kernel cannot tell
//! they are the weights', but it can tell a process that read weights then
//! wrote this much there.
//!
//! io_uring requests never pass the syscall hooks: their completions
//! (`uring.rs`) are accounted here by the request's file, the same way.
//!
//! Only tainted processes (`holders.rs`: read, mapped or copied watched
//! bytes, or a child of one, and not serving from a GPU) get past the one
//! array load every write on the host pays (every completed io_uring
//! write, send and connect too). A record goes to the agent on
//! the first call to each destination and each time the total there has
//! doubled: a handful per destination, whatever the volume.

use aya_ebpf::{
    bindings::BPF_NOEXIST, helpers::bpf_get_current_pid_tgid, helpers::bpf_probe_read_user,
};
use sensor_common::{SendAgg, SendEvent, SendKey, kind, send_syscall};

use crate::{
    emit::{fill_header, reserve},
    kernel::{file_kind, file_of_fd, socket_peer_of},
    maps::{SENDS, SENDS_OFF},
};

const S_IFMT: u32 = 0o170_000;
const S_IFSOCK: u32 = 0o140_000;
const S_IFCHR: u32 = 0o020_000;
const EINPROGRESS: i64 = 115;

/// The exit of a write, send or connect by a tainted process: `bytes` went
/// to `fd` (a connect: none).
#[inline(always)]
pub fn sent(fd: u64, syscall: u32, ret: i64, bytes: u64, to: u64) {
    let Some(tgid) = followed(syscall, ret) else {
        return;
    };
    let Some(file) = file_of_fd(fd) else {
        return;
    };
    account(tgid, file, fd as i32, syscall, bytes, to);
}

/// A completed io_uring write, send or connect of a tainted process: its
/// result (`res`: the bytes) went to the request's `file`, which no
/// descriptor number names here (a fixed file has none; the completion
/// has overwritten a plain one's): the record's `fd` is -1.
#[inline(always)]
pub fn request_sent(file: u64, syscall: u32, res: i64) {
    let Some(tgid) = followed(syscall, res) else {
        return;
    };
    let bytes = if res > 0 { res as u64 } else { 0 };
    account(tgid, file, -1, syscall, bytes, 0);
}

/// The current process's tgid if a call of `syscall` that returned `ret`
/// is followed: it moved bytes (or is a connect that succeeded or is
/// under way), and the agent has not stopped following the process.
#[inline(always)]
fn followed(syscall: u32, ret: i64) -> Option<u32> {
    let connected = send_syscall::is_connect(syscall) && (ret == 0 || ret == -EINPROGRESS);
    if !connected && ret <= 0 {
        return None;
    }
    let tgid = (bpf_get_current_pid_tgid() >> 32) as u32;
    // SAFETY: the value is only tested for presence.
    if unsafe { SENDS_OFF.get(&tgid) }.is_some() {
        return None;
    }
    Some(tgid)
}

/// `bytes` went to `file` (a `struct file *`; `fd` its descriptor, or -1):
/// added to the process's total there, and a record on the first call and
/// at each doubling.
#[inline(always)]
fn account(tgid: u32, file: u64, fd: i32, syscall: u32, bytes: u64, to: u64) {
    let Some((destination, mode)) = file_kind(file) else {
        return;
    };
    // Terminals and /dev/null: not a place bytes can be taken from.
    if mode & S_IFMT == S_IFCHR {
        return;
    }
    let key = SendKey {
        tgid,
        _pad: 0,
        destination,
    };
    let agg = match SENDS.get_ptr_mut(&key) {
        Some(agg) => agg,
        None => {
            let _ = SENDS.insert(&key, &SendAgg::default(), BPF_NOEXIST as u64);
            match SENDS.get_ptr_mut(&key) {
                Some(agg) => agg,
                None => return,
            }
        }
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &mut *agg };
    crate::atomic::add(&mut agg.bytes, bytes);
    crate::atomic::add(&mut agg.calls, 1);
    let first = agg.calls == 1;
    if !first && agg.bytes < agg.reported.saturating_mul(2) {
        return;
    }
    if !first && agg.reported == 0 && bytes == 0 {
        return; // another connect, still nothing sent
    }
    let call = Call {
        file,
        mode,
        fd,
        syscall,
        to,
    };
    if report(&key, &call, agg) {
        agg.reported = agg.bytes.max(1);
    }
}

/// The call a record names.
struct Call {
    file: u64,
    mode: u32,
    fd: i32,
    syscall: u32,
    /// A `sendto`'s address argument (user memory), or 0.
    to: u64,
}

/// One record; false when the ring buffer refused it (counted; the next
/// call tries again).
#[inline(always)]
fn report(key: &SendKey, call: &Call, agg: &SendAgg) -> bool {
    let Some(mut entry) = reserve::<SendEvent>() else {
        return false;
    };
    // SAFETY: the reservation is valid, sized and aligned for a SendEvent.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(&mut ev.header, kind::SEND, size_of::<SendEvent>());
    ev.destination = key.destination;
    ev.destination_mode = call.mode;
    ev.fd = call.fd;
    ev.syscall = call.syscall;
    ev._pad = 0;
    ev.bytes = agg.bytes;
    ev.calls = agg.calls;
    ev.peer_addr = [0; 16];
    ev.peer_family = 0;
    ev.peer_port = 0;
    ev._pad2 = 0;
    if call.mode & S_IFMT == S_IFSOCK {
        // An unconnected socket (UDP `sendto`) has no peer: the address
        // the call named is it.
        let peer = socket_peer_of(call.file)
            .filter(|&(_, _, port)| port != 0)
            .or_else(|| user_sockaddr(call.to));
        if let Some((family, addr, port)) = peer {
            ev.peer_family = family;
            ev.peer_addr = addr;
            ev.peer_port = port;
        }
    }
    entry.submit(0);
    true
}

/// An IPv4 or IPv6 `struct sockaddr` in user memory: family, address
/// (network order), port (host order).
#[inline(always)]
fn user_sockaddr(ptr: u64) -> Option<(u16, [u8; 16], u16)> {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    if ptr == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_user checks each address.
    let family = unsafe { bpf_probe_read_user(ptr as *const u16) }.ok()?;
    let port = u16::from_be(unsafe { bpf_probe_read_user((ptr + 2) as *const u16) }.ok()?);
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let v4 = unsafe { bpf_probe_read_user((ptr + 4) as *const [u8; 4]) }.ok()?;
            addr[..4].copy_from_slice(&v4);
        }
        AF_INET6 => addr = unsafe { bpf_probe_read_user((ptr + 8) as *const [u8; 16]) }.ok()?,
        _ => return None,
    }
    Some((family, addr, port))
}

/// `sendmmsg`'s bytes: the `msg_len` of the first messages it sent (at
/// most eight are summed; a larger batch is under-counted by the rest).
#[inline(always)]
pub fn mmsg_bytes(vec: u64, sent: i64) -> u64 {
    /// `sizeof(struct mmsghdr)` and the offset of `msg_len` in it.
    const MMSGHDR: u64 = 64;
    const MSG_LEN: u64 = 56;
    let mut total = 0u64;
    for i in 0..8u64 {
        if i as i64 >= sent {
            break;
        }
        // SAFETY: bpf_probe_read_user checks the address.
        if let Ok(len) = unsafe { bpf_probe_read_user((vec + i * MMSGHDR + MSG_LEN) as *const u32) }
        {
            total += u64::from(len);
        }
    }
    total
}
