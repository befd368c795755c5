//! Deny by fanotify permission events: every file of the policy's weight
//! sets carries an inode mark for `FAN_OPEN_PERM`, so the kernel holds each
//! open of one until this thread answers `FAN_ALLOW` or `FAN_DENY`; a
//! denied open fails with `EPERM` and the caller gets no descriptor, so no
//! byte and no map. Works on any kernel with
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS` (this one), BPF LSM or not.
//!
//! Guarantees and failure behaviour:
//! - The answer comes from the compiled policy and the opener's own `/proc`
//!   entry (in memory; the opener is blocked in its open, so it is alive
//!   and its pid cannot be reused). No disk I/O, no lock the event loop
//!   holds: GPU marks are read from a lock-free snapshot.
//! - While the agent runs but this thread stalls, opens of marked files
//!   wait. When the agent exits (or dies), the kernel frees the group and
//!   lets every pending open through: the policy is not enforced while no
//!   agent runs, so run it under a supervisor that restarts it.
//! - Only opens are judged: a descriptor opened before the marks, passed
//!   in over a socket or inherited reads on (the kill fallback for those
//!   routes is not built yet, and the audit judge records them as
//!   `would_deny`).
//! - `kill`: the open is denied and the opener killed with `SIGKILL` while
//!   it is still blocked in the open.

use std::{
    collections::HashSet,
    os::{fd::AsFd, unix::fs::MetadataExt},
    path::Path,
    sync::Arc,
};

use arc_swap::ArcSwap;
use nix::sys::fanotify::{
    EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
};
use sensor_common::FileKey;

use crate::{
    decide::policy::{Operation, Policy, PolicyAction, Subject, Verdict},
    enrich::{
        process::{parse_cgroup_path, procfs},
        watch::kernel_dev,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum FanotifyError {
    #[error(
        "cannot create a fanotify group for permission events (the kernel needs \
         CONFIG_FANOTIFY_ACCESS_PERMISSIONS=y, and the agent CAP_SYS_ADMIN)"
    )]
    Init(#[source] nix::Error),
    #[error(
        "{failed} policy file(s) could not be marked for fanotify, so their opens would not be \
         enforced (first: {first}); fix their permissions or file system, or leave them out of \
         the policy"
    )]
    Marks { failed: u64, first: String },
}

/// A decision the thread made and enforced, for the event loop to record.
#[derive(Debug, Clone)]
pub struct Enforced {
    pub pid: u32,
    /// What `/proc` said of the opener when it was judged: the record
    /// needs it, and the process may be gone (killed) by then.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub file: FileKey,
    pub size: u64,
    /// The policy that decided (a reload may have swapped it since).
    pub policy: Arc<Policy>,
    pub verdict: Verdict,
    /// The opener was killed (`kill`), not only refused; `false` with a
    /// `kill` verdict means it could not be (an unknown pid): refused only.
    pub killed: bool,
}

/// Processes holding a GPU device, published by the event loop.
pub type GpuPids = Arc<ArcSwap<HashSet<u32>>>;

/// A fanotify group with a mark on every policy file. The marks are
/// shared with the event loop, which adds and removes them on reload while
/// the thread answers events.
#[derive(Clone)]
pub struct Enforcer {
    group: Arc<Fanotify>,
}

impl Enforcer {
    /// Creates the group and marks every file of `policy`.
    pub fn new(policy: &Policy) -> Result<Self, FanotifyError> {
        let group = Fanotify::init(
            InitFlags::FAN_CLASS_CONTENT | InitFlags::FAN_CLOEXEC | InitFlags::FAN_UNLIMITED_QUEUE,
            EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
        )
        .map_err(FanotifyError::Init)?;
        let enforcer = Self {
            group: Arc::new(group),
        };
        enforcer.mark(policy)?;
        Ok(enforcer)
    }

    /// Marks every file of `policy` (marking twice is harmless). A file
    /// that could not be marked would be open to anyone: an error, unless
    /// it is gone (no longer there to open).
    pub fn mark(&self, policy: &Policy) -> Result<(), FanotifyError> {
        let mut failed = 0;
        let mut first = String::new();
        for path in &policy.paths {
            match self.group.mark(
                MarkFlags::FAN_MARK_ADD,
                MaskFlags::FAN_OPEN_PERM,
                nix::fcntl::AT_FDCWD,
                Some(path.as_path()),
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(err) => {
                    if failed == 0 {
                        first = format!("{}: {err}", path.display());
                    }
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            return Err(FanotifyError::Marks { failed, first });
        }
        Ok(())
    }

    /// Removes the marks of `old`'s files that `new` does not cover (after
    /// the swap: until then the old policy still decides them).
    pub fn unmark_dropped(&self, old: &Policy, new: &Policy) {
        for path in &old.paths {
            let still = std::fs::metadata(path).ok().is_some_and(|m| {
                !new.sets_of(&FileKey {
                    dev: kernel_dev(m.dev()),
                    ino: m.ino(),
                })
                .is_empty()
            });
            if !still {
                let _ = self.group.mark(
                    MarkFlags::FAN_MARK_REMOVE,
                    MaskFlags::FAN_OPEN_PERM,
                    nix::fcntl::AT_FDCWD,
                    Some(path.as_path()),
                );
            }
        }
    }

    /// Answers permission events until the group fails; each enforced
    /// decision goes to `report`. The policy in force is read per event.
    pub fn serve(
        self,
        policy: crate::decide::policy::SharedPolicy,
        gpu: GpuPids,
        mut report: impl FnMut(Enforced),
    ) {
        loop {
            let events = match self.group.read_events() {
                Ok(events) => events,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(err) => {
                    tracing::error!(error = %err, "fanotify read failed: opens of policy files are no longer judged");
                    return;
                }
            };
            for event in events {
                let Some(fd) = event.fd() else {
                    // Overflow: with an unlimited queue, only on exhaustion.
                    tracing::error!("fanotify queue overflowed");
                    continue;
                };
                if !event.mask().contains(MaskFlags::FAN_OPEN_PERM) {
                    continue;
                }
                let raw_pid = event.pid();
                let pid = u32::try_from(raw_pid).unwrap_or(0);
                let policy = policy.load_full();
                // An audit policy swapped in stops nothing; the agent's own
                // opens are never judged (it must not deny or kill itself).
                let enforcing = policy.mode == crate::decide::policy::Mode::Enforce
                    && pid != std::process::id();
                let decision = enforcing.then(|| decide(&policy, &gpu, pid, fd)).flatten();
                let action = decision
                    .as_ref()
                    .map_or(PolicyAction::Allow, |(_, v, _, _)| v.action);
                // Kill first, while the opener is still held in its open.
                // Only a known pid: pid 0 (an opener outside the agent's
                // pid namespace) would signal the agent's own group.
                let killed = action == PolicyAction::Kill && pid > 0;
                if killed {
                    let target = nix::unistd::Pid::from_raw(raw_pid);
                    if let Err(err) = nix::sys::signal::kill(target, nix::sys::signal::SIGKILL) {
                        tracing::warn!(error = %err, pid, "cannot kill a process the policy says to kill");
                    }
                }
                let response = if action <= PolicyAction::Alert {
                    Response::FAN_ALLOW
                } else {
                    Response::FAN_DENY
                };
                if let Err(err) = self
                    .group
                    .write_response(FanotifyResponse::new(fd, response))
                {
                    tracing::error!(error = %err, pid, "cannot answer a fanotify permission event");
                }
                let Some((file, verdict, size, opener)) = decision else {
                    continue;
                };
                if action == PolicyAction::Allow {
                    continue;
                }
                report(Enforced {
                    pid,
                    ppid: opener.ppid,
                    uid: opener.uid,
                    gid: opener.gid,
                    comm: opener.comm,
                    file,
                    size,
                    policy: policy.clone(),
                    verdict,
                    killed,
                });
            }
        }
    }
}

/// The opener, as its `/proc` entry showed it.
struct Opener {
    ppid: u32,
    uid: u32,
    gid: u32,
    comm: String,
}

/// The verdict on one open: the file by its descriptor, the opener from
/// its `/proc` entry.
fn decide(
    policy: &Policy,
    gpu: &GpuPids,
    pid: u32,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Option<(FileKey, Verdict, u64, Opener)> {
    let meta = nix::sys::stat::fstat(fd.as_fd()).ok()?;
    let file = FileKey {
        dev: kernel_dev(meta.st_dev),
        ino: meta.st_ino,
    };
    if policy.sets_of(&file).is_empty() {
        return None;
    }
    let proc_root = Path::new("/proc");
    let exe_of = |pid: u32| {
        std::fs::metadata(proc_root.join(pid.to_string()).join("exe"))
            .ok()
            .map(|m| FileKey {
                dev: kernel_dev(m.dev()),
                ino: m.ino(),
            })
    };
    // An opener the agent cannot see (pid 0: another pid namespace; or its
    // /proc entry unreadable): refuse the open, fail closed, never kill.
    let ids = (pid > 0)
        .then(|| procfs::read_status_ids(proc_root, pid).ok())
        .flatten();
    let Some((uid, gid)) = ids else {
        let set = *policy.sets_of(&file).first()?;
        let verdict = Verdict {
            action: PolicyAction::Deny,
            rule: None,
            set,
        };
        let opener = Opener {
            ppid: 0,
            uid: u32::MAX,
            gid: u32::MAX,
            comm: String::from("(unknown: not in the agent's pid namespace)"),
        };
        return Some((file, verdict, meta.st_size as u64, opener));
    };
    let stat = procfs::read_stat(proc_root, pid).ok();
    let ppid = stat.as_ref().map(|s| s.ppid);
    let cgroup = procfs::read_cgroup_path(proc_root, pid).ok().flatten();
    let container = cgroup.as_deref().and_then(parse_cgroup_path);
    let subject = Subject {
        exe: exe_of(pid),
        parent_exe: ppid.and_then(exe_of),
        uid,
        gid,
        container_id: container.as_ref().map(|c| c.id.as_str()),
        cgroup_path: cgroup.as_deref(),
        gpu: gpu.load().contains(&pid),
    };
    let verdict = policy.decide(&file, Operation::Open, &subject)?;
    let opener = Opener {
        ppid: ppid.unwrap_or(0),
        uid,
        gid,
        comm: stat.map(|s| s.comm).unwrap_or_default(),
    };
    Some((file, verdict, meta.st_size as u64, opener))
}
