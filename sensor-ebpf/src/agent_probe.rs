//! The agent's own `O_PATH` opens: the kernel writes the identity it reads
//! from the new descriptor into `IDENTITY_PROBE`, so the agent can compare
//! it with the key it computed from `stat()` and the mount table (btrfs and
//! overlayfs report another device than the superblock's). Such an open is
//! never a record: an `O_PATH` descriptor reads no byte, and the agent's
//! liveness checks of retained inodes would otherwise be `open` records of
//! its own. Every other open pays one compare.
//!
//! The agent's tgid is in a map, not a frozen global: an agent that adopts
//! pinned programs (`kernel/pins.rs`) writes its own there.

use aya_ebpf::{helpers::bpf_get_current_pid_tgid, macros::map, maps::Array};
use sensor_common::identity_probe_key;

use crate::{
    kernel::{OFF_FILE_FLAGS, fd_identity, file_of_fd, read_at},
    maps::IDENTITY_PROBE,
};

/// `[0]`: the agent's tgid as the initial pid namespace numbers it (0: no
/// agent probes; `doctor`'s loads). The rest: the load's fingerprint, which
/// the kernel never reads (`sensor_common::map_name::AGENT`).
#[map]
pub static AGENT: Array<u64> = Array::with_max_entries(sensor_common::agent_slot::LEN, 0);

const O_PATH: u32 = 0o10_000_000;

/// At the exit of an open: true when it was the agent's `O_PATH` open,
/// whose identity is now in `IDENTITY_PROBE` (and which the caller must
/// not report).
#[inline(always)]
pub fn open_exit(ret: i64) -> bool {
    let pid_tgid = bpf_get_current_pid_tgid();
    let agent = AGENT
        .get(sensor_common::agent_slot::TGID)
        .copied()
        .unwrap_or(0);
    if agent == 0 || pid_tgid >> 32 != agent || ret < 0 {
        return false;
    }
    record(pid_tgid as u32, ret as u64)
}

// Inlined: a called function's frame counts toward the verifier's
// combined stack limit (512 bytes), which exit_followed's chain nearly
// fills on Linux 6.1.
#[inline(always)]
fn record(tid: u32, fd: u64) -> bool {
    let Some(file) = file_of_fd(fd) else {
        return false;
    };
    let flags = read_at::<u32>(file, &OFF_FILE_FLAGS).unwrap_or(0);
    if flags & O_PATH == 0 {
        return false;
    }
    if let Some((key, _)) = fd_identity(fd) {
        let _ = IDENTITY_PROBE.insert(&identity_probe_key(tid, fd as u32), &key, 0);
    }
    true
}
