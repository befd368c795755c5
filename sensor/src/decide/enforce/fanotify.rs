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
//! - Only opens are judged here: a descriptor opened before the marks,
//!   passed in over a socket or inherited is the kernel tables' to decide
//!   (`kernel_tables`). So that they decide an opener's later reads as its
//!   open was, the thread writes the opener's verdict row into them before
//!   it answers; when that write fails (a full map) the open is refused
//!   rather than the reader killed later.
//! - `kill`: the open is denied and the opener killed with `SIGKILL` while
//!   it is still blocked in the open.

use std::{
    collections::HashSet,
    os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, IntoRawFd, OwnedFd},
    path::Path,
    sync::{
        Arc, Condvar, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use arc_swap::ArcSwap;
use nix::{
    poll::{PollFd, PollFlags, PollTimeout, poll},
    sys::{
        eventfd::{EfdFlags, EventFd},
        fanotify::{
            EventFFlags, Fanotify, FanotifyResponse, InitFlags, MarkFlags, MaskFlags, Response,
        },
    },
};
use sensor_common::FileKey;

use super::{kernel_tables::verdict_row, proc_subject::ProcSubject};
use crate::{
    decide::policy::{Operation, Policy, PolicyAction, Verdict},
    enrich::{
        process::procfs,
        watch::{identity, kernel_dev},
    },
    kernel::maps::VerdictMaps,
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
    /// The file's path, for a file the watch set does not know yet (one
    /// that appeared in a policy directory).
    pub path: Option<std::path::PathBuf>,
    pub size: u64,
    /// The policy that decided (a reload may have swapped it since).
    pub policy: Arc<Policy>,
    pub verdict: Verdict,
    /// `open`, or `write` for an open for writing that a write rule decided.
    pub operation: Operation,
    /// The opener was killed (`kill`), not only refused; `false` with a
    /// `kill` verdict means it could not be (an unknown pid): refused only.
    pub killed: bool,
}

/// Processes holding a GPU device, published by the event loop.
pub type GpuPids = Arc<ArcSwap<HashSet<u32>>>;

/// The enforce-mode policies the kernel tables may be using (during a
/// reload, the old and the new), published by the event loop: an opener's
/// verdict row is written for each, so that its reads are decided as its
/// open was whichever generation is active when they come.
pub type KernelPolicies = Arc<ArcSwap<Vec<Arc<Policy>>>>;

/// Writes the opener's verdict rows for the kernel tables.
fn write_rows(
    verdicts: &mut VerdictMaps,
    kernel: &KernelPolicies,
    opener: &ProcSubject,
) -> Result<(), aya::maps::MapError> {
    let subject = opener.subject();
    for policy in kernel.load().iter() {
        verdicts.write(opener.tgid, &verdict_row(policy, &subject))?;
    }
    Ok(())
}

/// A fanotify group with a mark on every policy file. The marks are
/// shared with the event loop, which adds and removes them on reload while
/// the thread answers events.
#[derive(Clone)]
pub struct Enforcer {
    group: Arc<Fanotify>,
    /// Written to stop the thread between two batches (a handover).
    halt: Arc<EventFd>,
    /// Set by the thread when it has stopped: every event it read is
    /// answered.
    stopped: Arc<(Mutex<bool>, Condvar)>,
}

impl Enforcer {
    /// Creates the group (or takes over `inherited`, an earlier agent's,
    /// whose queued opens this one answers: `agent/fdstore.rs`) and marks
    /// every file of `policy`.
    pub fn new(policy: &Policy, inherited: Option<OwnedFd>) -> Result<Self, FanotifyError> {
        let group = match inherited {
            // SAFETY: a fanotify group's descriptor, passed by the service
            // manager under the name only this agent stores it as; owned.
            Some(fd) => unsafe { Fanotify::from_raw_fd(fd.into_raw_fd()) },
            None => Fanotify::init(
                // FAN_REPORT_TID: the opening thread, whose
                // `/proc/TID/syscall` tells an open for writing from one
                // for reading.
                InitFlags::FAN_CLASS_CONTENT
                    | InitFlags::FAN_CLOEXEC
                    | InitFlags::FAN_UNLIMITED_QUEUE
                    | InitFlags::FAN_REPORT_TID,
                EventFFlags::O_RDONLY | EventFFlags::O_LARGEFILE | EventFFlags::O_CLOEXEC,
            )
            .map_err(FanotifyError::Init)?,
        };
        let halt = EventFd::from_flags(EfdFlags::EFD_CLOEXEC).map_err(FanotifyError::Init)?;
        let enforcer = Self {
            group: Arc::new(group),
            halt: Arc::new(halt),
            stopped: Arc::default(),
        };
        enforcer.mark(policy)?;
        Ok(enforcer)
    }

    /// Stops the thread after the batch it is answering and waits up to
    /// `wait` for it: then no event is read and left unanswered, and the
    /// group can be handed to the next agent. False if it did not stop.
    pub fn halt(&self, wait: std::time::Duration) -> bool {
        if self.halt.write(1).is_err() {
            return false;
        }
        let (lock, stopped) = &*self.stopped;
        let Ok(guard) = lock.lock() else {
            return false;
        };
        stopped
            .wait_timeout_while(guard, wait, |done| !*done)
            .is_ok_and(|(done, _)| *done)
    }

    /// The group, to hand over.
    pub fn group(&self) -> BorrowedFd<'_> {
        self.group.as_fd()
    }

    /// Marks every file of `policy` (marking twice is harmless). A file
    /// that could not be marked would be open to anyone: an error, unless
    /// it is gone (no longer there to open).
    pub fn mark(&self, policy: &Policy) -> Result<(), FanotifyError> {
        self.mark_beyond(policy, None)
    }

    /// Marks the files of `policy` that `marked` (an enforced policy, all
    /// of whose files carry marks) does not have: a reload of a large
    /// policy re-marks only what is new.
    pub fn mark_beyond(
        &self,
        policy: &Policy,
        marked: Option<&Policy>,
    ) -> Result<(), FanotifyError> {
        let mut failed = 0;
        let mut first = String::new();
        let already = |key: &FileKey| marked.is_some_and(|m| !m.sets_of(key).is_empty());
        for (_, path) in policy.paths.iter().filter(|(key, _)| !already(key)) {
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
        // The directories, for files that appear in them later: their
        // first open is judged by path until the policy is resolved again.
        for dir in &policy.directories {
            match self.group.mark(
                MarkFlags::FAN_MARK_ADD,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_EVENT_ON_CHILD,
                nix::fcntl::AT_FDCWD,
                Some(dir.as_path()),
            ) {
                Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
                Err(err) => {
                    if failed == 0 {
                        first = format!("{}: {err}", dir.display());
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
        for dir in old
            .directories
            .iter()
            .filter(|d| !new.directories.contains(d))
        {
            let _ = self.group.mark(
                MarkFlags::FAN_MARK_REMOVE,
                MaskFlags::FAN_OPEN_PERM | MaskFlags::FAN_EVENT_ON_CHILD,
                nix::fcntl::AT_FDCWD,
                Some(dir.as_path()),
            );
        }
        // Marks are on inodes, removal goes by path: a dropped file's path
        // may name another inode by now (one the new policy covers), whose
        // mark must stay.
        let dropped = old
            .paths
            .iter()
            .filter(|(key, _)| new.sets_of(key).is_empty());
        for (key, path) in dropped {
            let same = identity(path) == Some(*key);
            if same {
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
        kernel: KernelPolicies,
        gpu: GpuPids,
        verdicts: VerdictMaps,
        new_files: Arc<AtomicBool>,
        report: impl FnMut(Enforced),
    ) {
        self.answer(policy, kernel, gpu, verdicts, new_files, report);
        let (lock, stopped) = &*self.stopped;
        if let Ok(mut done) = lock.lock() {
            *done = true;
        }
        stopped.notify_all();
    }

    /// Whether to read the group (false: halted, or the wait failed).
    fn wait_for_events(&self) -> bool {
        loop {
            let mut fds = [
                PollFd::new(self.group.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.halt.as_fd(), PollFlags::POLLIN),
            ];
            match poll(&mut fds, PollTimeout::NONE) {
                Ok(_) => {
                    let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
                    if ready(&fds[1]) {
                        return false;
                    }
                    if ready(&fds[0]) {
                        return true;
                    }
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(err) => {
                    tracing::error!(error = %err, "fanotify poll failed: opens of policy files are no longer judged");
                    return false;
                }
            }
        }
    }

    fn answer(
        &self,
        policy: crate::decide::policy::SharedPolicy,
        kernel: KernelPolicies,
        gpu: GpuPids,
        mut verdicts: VerdictMaps,
        new_files: Arc<AtomicBool>,
        mut report: impl FnMut(Enforced),
    ) {
        while self.wait_for_events() {
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
                let tid = u32::try_from(event.pid()).unwrap_or(0);
                let policy = policy.load_full();
                // An audit policy swapped in stops nothing.
                let enforcing = policy.mode == crate::decide::policy::Mode::Enforce;
                let mut decision = enforcing.then(|| decide(&policy, &gpu, tid, fd)).flatten();
                let pid = decision
                    .as_ref()
                    .and_then(|d| d.opener.as_ref())
                    .map_or(0, |o| o.tgid);
                if let Some(d) = &mut decision
                    && let Some(opener) = &d.opener
                    && let Err(err) = write_rows(&mut verdicts, &kernel, opener)
                    && d.verdict.action <= PolicyAction::Alert
                {
                    tracing::warn!(error = %crate::Chain(&err), pid, "cannot record a verdict in the kernel: the open is refused");
                    d.verdict.action = PolicyAction::Deny;
                }
                let action = decision
                    .as_ref()
                    .map_or(PolicyAction::Allow, |d| d.verdict.action);
                // Kill first, while the opener is still held in its open.
                // Only a known pid: pid 0 (an opener outside the agent's
                // pid namespace) would signal the agent's own group.
                let killed = action == PolicyAction::Kill && pid > 0;
                if killed {
                    let target = nix::unistd::Pid::from_raw(pid as i32);
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
                let Some(Decision {
                    file,
                    operation,
                    verdict,
                    size,
                    opener,
                    path,
                }) = decision
                else {
                    continue;
                };
                if path.is_some() {
                    new_files.store(true, Ordering::Relaxed);
                }
                if action == PolicyAction::Allow {
                    continue;
                }
                let opener = opener.unwrap_or_else(|| ProcSubject {
                    tgid: 0,
                    ppid: 0,
                    uid: u32::MAX,
                    gid: u32::MAX,
                    comm: String::from("(unknown: not in the agent's pid namespace)"),
                    exe: None,
                    parent_exe: None,
                    cgroup_path: None,
                    container_id: None,
                    gpu: false,
                });
                report(Enforced {
                    pid,
                    ppid: opener.ppid,
                    uid: opener.uid,
                    gid: opener.gid,
                    comm: opener.comm,
                    file,
                    path,
                    size,
                    policy: policy.clone(),
                    verdict,
                    operation,
                    killed,
                });
            }
        }
    }
}

/// The verdict on one open by thread `tid`: the file by its descriptor,
/// the opener from its `/proc` entry. `None` for a file in no weight set
/// and for the agent's own opens (it must not deny or kill itself).
fn decide(
    policy: &Policy,
    gpu: &GpuPids,
    tid: u32,
    fd: std::os::fd::BorrowedFd<'_>,
) -> Option<Decision> {
    let meta = nix::sys::stat::fstat(fd.as_fd()).ok()?;
    if meta.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    let file = FileKey {
        dev: kernel_dev(meta.st_dev),
        ino: meta.st_ino,
    };
    // A file the policy was compiled without, in one of its directories:
    // its sets by path.
    let mut sets = policy.sets_of(&file).to_vec();
    let new_file = sets.is_empty();
    let mut path = None;
    if new_file {
        let link = std::fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).ok()?;
        sets = policy.sets_covering(&link);
        path = Some(link);
    }
    let set = *sets.first()?;
    let size = meta.st_size as u64;
    let proc_root = Path::new("/proc");
    // An opener the agent cannot see (tid 0: another pid namespace; or its
    // /proc entry unreadable): refuse the open, fail closed, never kill.
    let Some(opener) = ProcSubject::read(proc_root, tid, &gpu.load()) else {
        let verdict = Verdict {
            action: PolicyAction::Deny,
            rule: None,
            set,
        };
        return Some(Decision {
            file,
            operation: Operation::Open,
            verdict,
            size,
            opener: None,
            path,
        });
    };
    if opener.tgid == std::process::id() {
        return None;
    }
    let subject = opener.subject();
    let operations: &[Operation] = if opens_for_writing(proc_root, tid) {
        &[Operation::Open, Operation::Write]
    } else {
        &[Operation::Open]
    };
    // The strictest; on a tie the open (the first).
    let (operation, verdict) = operations
        .iter()
        .filter_map(|&op| Some((op, policy.decide_in_sets(&sets, op, &subject)?)))
        .rev()
        .max_by_key(|(_, v)| v.action)?;
    Some(Decision {
        file,
        operation,
        verdict,
        size,
        opener: Some(opener),
        path,
    })
}

/// Whether thread `tid`, blocked in an open, opens for writing or
/// truncation. The permission event does not say (its descriptor is the
/// agent's own), so the flags come from the open's arguments. An open the
/// thread's syscall does not show (an exec, io_uring) counts as a read.
fn opens_for_writing(proc_root: &Path, tid: u32) -> bool {
    procfs::read_syscall(proc_root, tid)
        .and_then(|call| open_flags(&call, tid))
        .is_some_and(|flags| {
            flags & (libc::O_ACCMODE as u64) != libc::O_RDONLY as u64
                || flags & libc::O_TRUNC as u64 != 0
        })
}

/// The flags of the open syscall in `call` (number, arguments), under
/// either ABI: the thread is known to be in an open, so a number that is an
/// open in one ABI and something else in the other is the open.
fn open_flags(call: &[u64; 7], tid: u32) -> Option<u64> {
    const O_WRONLY_CREAT_TRUNC: u64 = (libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC) as u64;
    match call[0] {
        // open(path, flags) in x86-64 (2) and ia32 (5)
        2 | 5 => Some(call[2]),
        // creat(path, mode) in x86-64 (85) and ia32 (8)
        85 | 8 => Some(O_WRONLY_CREAT_TRUNC),
        // openat(dirfd, path, flags), open_by_handle_at(mount_fd, handle,
        // flags) in x86-64 (257, 304) and ia32 (295, 342)
        257 | 295 | 304 | 342 => Some(call[3]),
        // openat2(dirfd, path, how, size): `how.flags` is its first u64
        437 => read_u64(tid, call[3]),
        _ => None,
    }
}

/// Eight bytes of thread `tid`'s memory.
fn read_u64(tid: u32, address: u64) -> Option<u64> {
    let mut buf = [0u8; 8];
    let mut local = [std::io::IoSliceMut::new(&mut buf)];
    let remote = [nix::sys::uio::RemoteIoVec {
        base: usize::try_from(address).ok()?,
        len: 8,
    }];
    let read = nix::sys::uio::process_vm_readv(
        nix::unistd::Pid::from_raw(tid as i32),
        &mut local,
        &remote,
    )
    .ok()?;
    (read == 8).then(|| u64::from_ne_bytes(buf))
}

/// The verdict on one open.
struct Decision {
    file: FileKey,
    operation: Operation,
    verdict: Verdict,
    size: u64,
    /// `None` for an opener the agent cannot see.
    opener: Option<ProcSubject>,
    /// Set for a file in no set of the compiled policy but in one of its
    /// directories (the policy's files must be resolved again): its path.
    path: Option<std::path::PathBuf>,
}
