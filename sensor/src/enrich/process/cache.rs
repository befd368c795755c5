//! The process table: who did it, for every record the agent writes.
//!
//! The kernel's exec, fork and exit records keep the table current; the
//! header on every record refreshes the fields that can change without an
//! exec (credentials, parent, cgroup, name); `/proc` fills in processes that
//! predate the sensor or that the table has not seen yet. When all of that
//! fails the record's header alone still names the process.
//!
//! Lifetimes: an exited process stays, marked `exited`, for a grace period
//! ([`EXIT_GRACE`]) because read summaries for it are drained after its exit
//! record. The table is bounded: when full it drops the oldest exited entry,
//! else the least recently used live one that is not a GPU process, and
//! counts the eviction. A live entry that was evicted is simply read again
//! from `/proc` when it next shows up.
//!
//! The GPU mark is sticky for the process's lifetime and kept apart from
//! the entries (so eviction cannot lose it). It survives `exec`: the device
//! descriptor usually survives too, and a serving process re-exec'ing itself
//! (a launcher `exec`ing the server) is the common case. It is not inherited
//! by `fork`: a forked child holding the parent's descriptor cannot use the
//! device (CUDA does not survive `fork`), and a child that opens the device
//! itself is marked by its own GPU-open record.
//!
//! Start times are compared at clock-tick precision ([`procfs::same_start`])
//! because `/proc` only has ticks while the kernel's records have ns.

use std::collections::{BTreeSet, HashMap, HashSet};

use hashlink::LinkedHashMap;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cgroup::CgroupResolver;
use super::container::{Container, parse_cgroup_path};
use super::procfs::{self, ProcError, ProcSnapshot};
use crate::event::Text;
use sensor_common::FileKey;

/// Default bound on the table's entries.
pub const DEFAULT_CAPACITY: usize = 65536;
/// How long an exited process stays in the table.
pub const EXIT_GRACE: Duration = Duration::from_secs(30);
/// Least recently used live entries looked at for one that is not a GPU
/// process before the oldest is evicted regardless.
const EVICTION_SCAN: usize = 64;
/// Paths of exactly this many bytes or more may have been cut by the kernel.
const FILENAME_CUT_AT: usize = sensor_common::EXEC_FILENAME_LEN - 1;

/// What the table knows about one process.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Thread group id.
    pub pid: u32,
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    pub comm: String,
    /// The executable; `None` when neither the kernel nor `/proc` told.
    pub exe: Option<Text>,
    /// `/proc` showed the executable as deleted (also a `memfd` exec).
    pub exe_deleted: bool,
    /// The executable's identity, `(device, inode)` as the kernel sees it
    /// (through `/proc/PID/exe`, so a binary replaced or deleted since is
    /// still the one that runs); for policy rules on `exe`.
    pub exe_id: Option<FileKey>,
    pub args: Vec<Text>,
    pub args_truncated: bool,
    /// cgroup v2 id; 0 when unknown.
    pub cgroup_id: u64,
    pub container: Option<Container>,
    /// CLOCK_BOOTTIME ns (tick precision when read from `/proc`); 0 when
    /// unknown.
    pub start_boot_ns: u64,
    /// Serves from a GPU: it opened a GPU device.
    pub gpu: bool,
    pub exited: bool,
}

/// One link of a process's ancestry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ancestor {
    pub pid: u32,
    pub comm: String,
    pub exe: Option<Text>,
    /// It has opened a GPU device: a model-serving process.
    pub gpu: bool,
}

/// The process fields of a record header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HeaderFields {
    pub tgid: u32,
    pub tid: u32,
    /// `real_parent->tgid`.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub cgroup_id: u64,
    /// The current thread's `comm`, NUL padded.
    pub comm: [u8; 16],
    /// CLOCK_BOOTTIME ns when the record was made.
    pub boot_ns: u64,
}

impl From<&sensor_common::EventHeader> for HeaderFields {
    fn from(h: &sensor_common::EventHeader) -> Self {
        Self {
            tgid: h.tgid,
            tid: h.tid,
            ppid: h.ppid,
            uid: h.uid,
            gid: h.gid,
            cgroup_id: h.cgroup_id,
            comm: h.comm,
            boot_ns: h.boot_ns,
        }
    }
}

/// Counters for the agent's health report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ProcessStats {
    /// Entries in the table, exited ones included.
    pub entries: usize,
    /// Entries kept only for their grace period.
    pub exited: usize,
    /// Live processes marked as GPU-serving.
    pub gpu_processes: usize,
    /// Entries dropped because the table was full.
    pub evictions: u64,
    /// `/proc` reads that left a process without its details (it exited
    /// first, or the agent may not read it).
    pub proc_read_failures: u64,
}

impl crate::metrics::Collect for ProcessStats {
    fn collect(&self, out: &mut crate::metrics::Section<'_>) {
        out.set("entries", "process table entries", self.entries as u64);
        out.set(
            "exited",
            "exited processes kept for their grace period",
            self.exited as u64,
        );
        out.set(
            "gpu_processes",
            "live GPU-serving processes",
            self.gpu_processes as u64,
        );
        out.total(
            "evictions",
            "entries dropped from a full table",
            self.evictions,
        );
        out.total(
            "proc_read_failures",
            "/proc reads that left a process without details",
            self.proc_read_failures,
        );
    }
}

#[derive(Debug)]
struct Entry {
    info: ProcessInfo,
    /// Boot ns of the exit; key in `ProcessTable::exited`.
    exited_at: Option<u64>,
    /// The cgroup id `info.container` was worked out for.
    container_for: Option<u64>,
    /// The cgroup id for which `/proc/PID/cgroup` was already consulted.
    proc_cgroup_tried: Option<u64>,
}

impl Entry {
    fn new(info: ProcessInfo) -> Self {
        Self {
            info,
            exited_at: None,
            container_for: None,
            proc_cgroup_tried: None,
        }
    }

    /// Takes the header's newer view of the fields that change without an
    /// exec, and works out the container if the cgroup is new.
    fn refresh(&mut self, h: &HeaderFields, cgroups: &mut CgroupResolver, proc_root: &Path) {
        let info = &mut self.info;
        info.ppid = h.ppid;
        info.uid = h.uid;
        info.gid = h.gid;
        // The header has the current thread's name, and worker threads are
        // often renamed; the process is named by its main thread.
        if h.tid == h.tgid {
            info.comm = comm_string(&h.comm);
        }
        if info.cgroup_id != h.cgroup_id {
            // Moving out of a known cgroup leaves its container; a container
            // learned from `/proc` for a cgroup whose id was unknown stays
            // until the new id resolves.
            if info.cgroup_id != 0 {
                info.container = None;
            }
            info.cgroup_id = h.cgroup_id;
            self.container_for = None;
        }
        self.resolve_container(cgroups, proc_root);
    }

    fn resolve_container(&mut self, cgroups: &mut CgroupResolver, proc_root: &Path) {
        let id = self.info.cgroup_id;
        if id == 0 || self.container_for == Some(id) {
            return;
        }
        let mut path = cgroups.cached(id).map(str::to_owned);
        // A cgroup made moments ago (a container starting) is not in the
        // resolver's cache yet; the process's own cgroup file is cheaper
        // than a walk of the whole hierarchy, and is read once per cgroup.
        if path.is_none() && self.exited_at.is_none() && self.proc_cgroup_tried != Some(id) {
            self.proc_cgroup_tried = Some(id);
            if let Ok(Some(own)) = procfs::read_cgroup_path(proc_root, self.info.pid)
                && cgroups.id_of(&own) == Some(id)
            {
                path = Some(own);
            }
        }
        if path.is_none() {
            path = cgroups.resolve(id).map(str::to_owned);
        }
        if let Some(path) = path {
            self.info.container = parse_cgroup_path(&path);
            self.container_for = Some(id);
        }
    }
}

/// The process table; see the module documentation.
#[derive(Debug)]
pub struct ProcessTable {
    proc_root: PathBuf,
    cgroups: CgroupResolver,
    capacity: usize,
    grace_ns: u64,
    /// Every entry, least recently used first (`hashlink` keeps the order
    /// with the map, so a touch is one move to the back).
    entries: LinkedHashMap<u32, Entry>,
    /// Exited entries by exit time.
    exited: BTreeSet<(u64, u32)>,
    /// GPU processes: pid -> start time (0 when it was unknown).
    gpu: HashMap<u32, u64>,
    evictions: u64,
    /// Atomic because `ancestors` reads `/proc` through `&self`.
    proc_read_failures: AtomicU64,
    /// Returned by `get` if an entry could not be kept (never in practice).
    scratch: ProcessInfo,
    /// Resolve `ProcessInfo::exe_id` (see [`ProcessTable::resolve_exe_identities`]).
    exe_ids: bool,
}

impl ProcessTable {
    /// An empty table reading `/proc` at `proc_root`, holding at most
    /// `capacity` processes (at least one).
    pub fn new(proc_root: PathBuf, cgroups: CgroupResolver, capacity: usize) -> Self {
        Self {
            proc_root,
            cgroups,
            capacity: capacity.max(1),
            grace_ns: duration_ns(EXIT_GRACE),
            entries: LinkedHashMap::new(),
            exited: BTreeSet::new(),
            gpu: HashMap::new(),
            evictions: 0,
            proc_read_failures: AtomicU64::new(0),
            scratch: info_from_header(&HeaderFields::default()),
            exe_ids: false,
        }
    }

    /// Also resolves each executable's identity (a `stat` per exec): only
    /// a policy matches on it, so only a policy turns it on.
    pub fn resolve_exe_identities(&mut self, on: bool) {
        self.exe_ids = on;
    }

    /// The identity of `pid`'s executable, resolved now if the table had
    /// not (no policy asked for identities at exec), and kept.
    pub fn resolve_exe_id(&mut self, pid: u32) -> Option<FileKey> {
        let entry = self.entries.get_mut(&pid)?;
        if entry.info.exe_id.is_none() {
            entry.info.exe_id = exe_identity(&self.proc_root, pid, entry.info.exe.as_ref());
        }
        entry.info.exe_id
    }

    /// The identity of the executable `pid` runs now (`/proc/PID/exe`).
    fn exe_identity_live(&self, pid: u32) -> Option<FileKey> {
        exe_identity(&self.proc_root, pid, None)
    }

    fn exe_identity(&self, pid: u32, exe: Option<&Text>) -> Option<FileKey> {
        self.exe_ids
            .then(|| exe_identity(&self.proc_root, pid, exe))
            .flatten()
    }

    /// Changes how long exited processes are kept (default [`EXIT_GRACE`]).
    pub fn set_exit_grace(&mut self, grace: Duration) {
        self.grace_ns = duration_ns(grace);
    }

    /// Loads every process in `/proc`; returns how many were loaded. Called
    /// at start-up, before the kernel's records flow.
    pub fn scan_existing(&mut self) -> usize {
        let pids = match procfs::list_pids(&self.proc_root) {
            Ok(pids) => pids,
            Err(err) => {
                tracing::warn!(err = %crate::Chain(&err), "cannot load running processes");
                return 0;
            }
        };
        let mut loaded = 0;
        for pid in pids {
            match procfs::read_process(&self.proc_root, pid) {
                Ok(snap) => {
                    let known = self.entries.get(&pid).is_some_and(|e| {
                        e.exited_at.is_none()
                            && procfs::same_start(e.info.start_boot_ns, snap.start_boot_ns)
                    });
                    if !known {
                        let entry = self.entry_from_snapshot(snap, None);
                        self.insert(entry);
                    }
                    loaded += 1;
                }
                // It exited during the scan: nothing to know.
                Err(ProcError::Gone { .. }) => {}
                Err(err) => {
                    self.count_proc_failure();
                    tracing::debug!(err = %crate::Chain(&err), "process not loaded");
                }
            }
        }
        tracing::debug!(loaded, "loaded running processes");
        loaded
    }

    /// An `exec` record: the process now runs `filename` with `args`.
    pub fn on_exec(
        &mut self,
        h: &HeaderFields,
        filename: &[u8],
        args: &[u8],
        args_truncated: bool,
        start_ns: u64,
    ) {
        self.on_exec_of(h, filename, args, args_truncated, start_ns, None);
    }

    /// [`ProcessTable::on_exec`], with the executable's identity as the
    /// kernel saw it at the exec (`None`: look it up).
    pub fn on_exec_of(
        &mut self,
        h: &HeaderFields,
        filename: &[u8],
        args: &[u8],
        args_truncated: bool,
        start_ns: u64,
        exe_id: Option<FileKey>,
    ) {
        let pid = h.tgid;
        let (mut exe, mut exe_deleted) = exec_exe(&self.proc_root, pid, filename);
        // `/proc/self/exe` run by a process already gone from `/proc`: the
        // image it ran again is the one it had.
        let reran_itself = exe
            .as_ref()
            .is_some_and(|e| matches!(e.as_bytes(), b"/proc/self/exe" | b"/proc/thread-self/exe"));
        if reran_itself
            && let Some(before) = self.entries.get(&pid).and_then(|e| e.info.exe.clone())
        {
            exe_deleted = self.entries.get(&pid).is_some_and(|e| e.info.exe_deleted);
            exe = Some(before);
        }
        // `stat()`'s identity first, the encoding the policy was compiled
        // with (on btrfs the kernel's superblock device differs from
        // `st_dev`); the kernel's when the process is already gone.
        let exe_id = self.exe_ids.then(|| {
            self.exe_identity_live(pid)
                .or(exe_id)
                .or_else(|| self.exe_identity(pid, exe.as_ref()))
        });
        let exe_id = exe_id.flatten();
        let (args, args_truncated) = procfs::split_args(args, args_truncated);
        let same_process = self.entries.get(&pid).is_some_and(|e| {
            e.exited_at.is_none()
                && (e.info.start_boot_ns == 0 || procfs::same_start(e.info.start_boot_ns, start_ns))
        });
        if !same_process {
            // Either new to the table or a reused pid whose exit was lost.
            let mut info = info_from_header(h);
            info.start_boot_ns = start_ns;
            info.gpu = self.gpu_mark_matches(pid, start_ns);
            self.insert(Entry::new(info));
        }
        self.touch(pid);
        let Self {
            entries,
            cgroups,
            proc_root,
            ..
        } = self;
        if let Some(entry) = entries.get_mut(&pid) {
            let info = &mut entry.info;
            info.exe = exe;
            info.exe_deleted = exe_deleted;
            info.exe_id = exe_id;
            info.args = args;
            info.args_truncated = args_truncated;
            // The kernel's ns value is more precise than `/proc`'s ticks.
            info.start_boot_ns = start_ns;
            entry.refresh(h, cgroups, proc_root);
        }
    }

    /// A `fork` record; `h` is the parent's header.
    pub fn on_fork(&mut self, h: &HeaderFields, child_tgid: u32, child_start_ns: u64) {
        let already_known = self.entries.get(&child_tgid).is_some_and(|e| {
            e.exited_at.is_none()
                && e.info.start_boot_ns != 0
                && procfs::same_start(e.info.start_boot_ns, child_start_ns)
        });
        if already_known {
            // The child was looked up (from `/proc`) before its fork record
            // was handled: what the table has is at least as new.
            return;
        }
        let parent = self.get(h);
        let info = ProcessInfo {
            pid: child_tgid,
            ppid: h.tgid,
            // The child is named after the thread that forked it.
            comm: comm_string(&h.comm),
            start_boot_ns: child_start_ns,
            gpu: false,
            exited: false,
            ..parent.clone()
        };
        let container_for = self.entries.get(&h.tgid).and_then(|e| e.container_for);
        self.gpu.remove(&child_tgid);
        let mut entry = Entry::new(info);
        entry.container_for = container_for;
        self.insert(entry);
    }

    /// An `exit` record: the process is gone; its entry stays for the grace
    /// period for records drained after it.
    pub fn on_exit(&mut self, tgid: u32, at_boot_ns: u64) {
        self.gpu.remove(&tgid);
        if let Some(entry) = self.entries.get_mut(&tgid)
            && entry.exited_at.is_none()
        {
            entry.exited_at = Some(at_boot_ns);
            entry.info.exited = true;
            self.exited.insert((at_boot_ns, tgid));
        }
    }

    /// Marks `tgid` as GPU-serving for the rest of its life.
    pub fn mark_gpu(&mut self, tgid: u32) {
        if !self.entries.contains_key(&tgid)
            && let Ok(snap) = self.read_process(tgid)
        {
            let entry = self.entry_from_snapshot(snap, None);
            self.insert(entry);
        }
        let start = match self.entries.get_mut(&tgid) {
            Some(entry) => {
                entry.info.gpu = true;
                if entry.exited_at.is_some() {
                    return;
                }
                entry.info.start_boot_ns
            }
            None => 0,
        };
        self.gpu.insert(tgid, start);
    }

    /// The process behind a record: the table's entry refreshed from the
    /// header, else `/proc`, else the header alone. An exited entry is
    /// replaced when a record made after the exit comes from a live process
    /// that `/proc` shows started at another time (the pid was reused).
    pub fn get(&mut self, h: &HeaderFields) -> &ProcessInfo {
        let pid = h.tgid;
        let current = match self.entries.get(&pid) {
            None => false,
            Some(Entry {
                exited_at: Some(exit_ns),
                info,
                ..
            }) if h.boot_ns > *exit_ns => !self.reused(pid, info.start_boot_ns),
            Some(_) => true,
        };
        if !current {
            let entry = self.load(h);
            self.insert(entry);
        }
        self.touch(pid);
        let Self {
            entries,
            cgroups,
            proc_root,
            scratch,
            ..
        } = self;
        match entries.get_mut(&pid) {
            Some(entry) => {
                entry.refresh(h, cgroups, proc_root);
                &entry.info
            }
            None => {
                *scratch = info_from_header(h);
                scratch
            }
        }
    }

    /// The entry for `pid` without touching `/proc` or the header, e.g. for
    /// a read summary drained from a map after the exit.
    /// The processes marked as holding a GPU device.
    pub fn gpu_pids(&self) -> std::collections::HashSet<u32> {
        self.gpu.keys().copied().collect()
    }

    /// The cgroup v2 path of a cgroup id, when the resolver knows it.
    pub fn cgroup_path(&self, cgroup_id: u64) -> Option<&str> {
        self.cgroups.cached(cgroup_id)
    }

    /// The pids of the live processes in the table.
    pub fn pids(&self) -> Vec<u32> {
        self.entries
            .iter()
            .filter(|(_, e)| !e.info.exited)
            .map(|(pid, _)| *pid)
            .collect()
    }

    pub fn lookup(&self, pid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&pid).map(|e| &e.info)
    }

    /// Up to `max` ancestors of `pid`, parent first, through the table and
    /// `/proc`. The walk ends after pid 1 (or another process whose parent
    /// is 0), on a pid already seen, and on a "parent" that started after
    /// its child (the real parent is gone and its pid was reused).
    pub fn ancestors(&self, pid: u32, max: usize) -> Vec<Ancestor> {
        let mut chain = Vec::new();
        let Some((mut current, mut child_start)) =
            self.lineage(pid).map(|(_, ppid, start, _)| (ppid, start))
        else {
            return chain;
        };
        let mut seen = HashSet::from([pid]);
        while chain.len() < max && current != 0 && seen.insert(current) {
            let Some((comm, ppid, start, exe)) = self.lineage(current) else {
                break;
            };
            if start != 0
                && child_start != 0
                && start / procfs::tick_ns() > child_start / procfs::tick_ns()
            {
                break;
            }
            chain.push(Ancestor {
                pid: current,
                comm,
                exe,
                gpu: self.has_gpu_mark(current, start),
            });
            if current == 1 {
                break;
            }
            current = ppid;
            child_start = start;
        }
        chain
    }

    /// Drops exited entries whose grace period ended by `now_boot_ns`, and
    /// GPU marks of processes that are gone.
    pub fn sweep(&mut self, now_boot_ns: u64) {
        while let Some(&(at, pid)) = self.exited.first() {
            if at.saturating_add(self.grace_ns) > now_boot_ns {
                break;
            }
            self.remove(pid);
        }
        // A mark whose exit record was lost would otherwise stay forever;
        // marks without an entry are few, so checking them is cheap.
        let orphans: Vec<(u32, u64)> = self
            .gpu
            .iter()
            .filter(|(pid, _)| !self.entries.contains_key(pid))
            .map(|(&pid, &start)| (pid, start))
            .collect();
        for (pid, start) in orphans {
            let alive = procfs::read_stat(&self.proc_root, pid)
                .is_ok_and(|stat| start == 0 || procfs::same_start(stat.start_boot_ns, start));
            if !alive {
                self.gpu.remove(&pid);
            }
        }
    }

    pub fn stats(&self) -> ProcessStats {
        ProcessStats {
            entries: self.entries.len(),
            exited: self.exited.len(),
            gpu_processes: self.gpu.len(),
            evictions: self.evictions,
            proc_read_failures: self.proc_read_failures.load(Ordering::Relaxed),
        }
    }

    /// `(comm, ppid, start_boot_ns, exe)` of `pid`, from the table or `/proc`.
    fn lineage(&self, pid: u32) -> Option<(String, u32, u64, Option<Text>)> {
        if let Some(e) = self.entries.get(&pid) {
            let i = &e.info;
            return Some((i.comm.clone(), i.ppid, i.start_boot_ns, i.exe.clone()));
        }
        match procfs::read_stat(&self.proc_root, pid) {
            Ok(stat) => {
                let exe = procfs::read_exe(&self.proc_root, pid).map(|exe| exe.path);
                Some((stat.comm, stat.ppid, stat.start_boot_ns, exe))
            }
            Err(err) => {
                self.count_proc_failure();
                tracing::debug!(err = %crate::Chain(&err), "ancestor not found");
                None
            }
        }
    }

    /// Whether `/proc` shows a live process at `pid` that is not the one
    /// that started at `start_ns`.
    fn reused(&self, pid: u32, start_ns: u64) -> bool {
        procfs::read_stat(&self.proc_root, pid)
            .is_ok_and(|stat| start_ns == 0 || !procfs::same_start(stat.start_boot_ns, start_ns))
    }

    /// A new entry for the record's process, from `/proc` or the header.
    fn load(&mut self, h: &HeaderFields) -> Entry {
        match self.read_process(h.tgid) {
            Ok(snap) => self.entry_from_snapshot(snap, Some(h.cgroup_id)),
            Err(err) => {
                let mut entry = Entry::new(info_from_header(h));
                if matches!(err, ProcError::Gone { .. }) {
                    // Already gone: keep it only for the grace period.
                    entry.exited_at = Some(h.boot_ns);
                    entry.info.exited = true;
                }
                entry
            }
        }
    }

    fn read_process(&self, pid: u32) -> Result<ProcSnapshot, ProcError> {
        procfs::read_process(&self.proc_root, pid).inspect_err(|err| {
            self.count_proc_failure();
            tracing::debug!(err = %crate::Chain(&err), "process details unavailable");
        })
    }

    /// An entry from `/proc`; `cgroup_id` is the header's, when there is one.
    fn entry_from_snapshot(&mut self, snap: ProcSnapshot, cgroup_id: Option<u64>) -> Entry {
        let cgroup_id = cgroup_id
            .or_else(|| {
                snap.cgroup_path
                    .as_deref()
                    .and_then(|p| self.cgroups.id_of(p))
            })
            .unwrap_or(0);
        let container = snap.cgroup_path.as_deref().and_then(parse_cgroup_path);
        let gpu = self.gpu_mark_matches(snap.pid, snap.start_boot_ns);
        let mut entry = Entry::new(ProcessInfo {
            pid: snap.pid,
            ppid: snap.ppid,
            uid: snap.uid,
            gid: snap.gid,
            comm: snap.comm,
            exe_id: self.exe_identity(snap.pid, snap.exe.as_ref()),
            exe: snap.exe,
            exe_deleted: snap.exe_deleted,
            args: snap.args,
            args_truncated: snap.args_truncated,
            cgroup_id,
            container,
            start_boot_ns: snap.start_boot_ns,
            gpu,
            exited: false,
        });
        if snap.cgroup_path.is_some() {
            entry.container_for = Some(cgroup_id);
        }
        entry
    }

    /// Whether `pid` started at `start_ns` is the process a GPU mark names;
    /// a mark left by an earlier process with the same pid is dropped.
    fn gpu_mark_matches(&mut self, pid: u32, start_ns: u64) -> bool {
        let matches = self.has_gpu_mark(pid, start_ns);
        if !matches {
            self.gpu.remove(&pid);
        }
        matches
    }

    /// Whether a GPU mark names `pid` started at `start_ns`.
    fn has_gpu_mark(&self, pid: u32, start_ns: u64) -> bool {
        self.gpu.get(&pid).is_some_and(|&marked| {
            marked == 0 || start_ns == 0 || procfs::same_start(marked, start_ns)
        })
    }

    /// Inserts `entry`, replacing any entry for its pid and evicting to
    /// stay within capacity.
    fn insert(&mut self, entry: Entry) {
        let pid = entry.info.pid;
        self.remove(pid);
        while self.entries.len() >= self.capacity && self.evict_one() {}
        if let Some(at) = entry.exited_at {
            self.exited.insert((at, pid));
        }
        self.entries.insert(pid, entry);
    }

    fn remove(&mut self, pid: u32) -> Option<Entry> {
        let entry = self.entries.remove(&pid)?;
        if let Some(at) = entry.exited_at {
            self.exited.remove(&(at, pid));
        }
        Some(entry)
    }

    fn evict_one(&mut self) -> bool {
        let victim = self
            .exited
            .first()
            .map(|&(_, pid)| pid)
            .or_else(|| {
                self.entries
                    .iter()
                    .take(EVICTION_SCAN)
                    .find(|(_, e)| !e.info.gpu)
                    .map(|(&pid, _)| pid)
            })
            .or_else(|| self.entries.front().map(|(&pid, _)| pid));
        match victim.and_then(|pid| self.remove(pid)) {
            Some(_) => {
                self.evictions += 1;
                true
            }
            None => false,
        }
    }

    fn touch(&mut self, pid: u32) {
        self.entries.to_back(&pid);
    }

    fn count_proc_failure(&self) {
        self.proc_read_failures.fetch_add(1, Ordering::Relaxed);
    }
}

/// The executable named by an exec record. An absolute path is taken as
/// is; a relative one, a `/dev/fd/N` (`fexecve`, `execveat`: often a
/// memfd), any `/proc` path (`/proc/self/exe`, which busybox and runc exec
/// to run themselves again, names the agent when the agent resolves it) or
/// one the kernel may have cut short is better read back from
/// `/proc/PID/exe` while the process is alive, else kept as given.
fn exec_exe(proc_root: &Path, pid: u32, filename: &[u8]) -> (Option<Text>, bool) {
    let end = filename
        .iter()
        .position(|&b| b == 0)
        .unwrap_or(filename.len());
    let given = filename.get(..end).unwrap_or_default();
    let indirect = !given.starts_with(b"/")
        || given.starts_with(b"/dev/fd/")
        || given.starts_with(b"/proc/")
        || given.len() >= FILENAME_CUT_AT;
    if indirect && let Some(exe) = procfs::read_exe(proc_root, pid) {
        return (Some(exe.path), exe.deleted);
    }
    // Report the binary that runs, not the symlink that named it
    // (`/usr/bin/python3` -> `/usr/bin/python3.11`), as /proc/PID/exe would.
    let path = Path::new(std::ffi::OsStr::from_bytes(given));
    if !indirect && let Ok(real) = std::fs::canonicalize(path) {
        return (Some(Text::from(real.as_path())), false);
    }
    ((!given.is_empty()).then(|| Text::from(given)), false)
}

/// The identity of the executable `pid` runs: `/proc/PID/exe` while the
/// process lives (the very file, even if replaced or deleted since), else
/// the path it was started from.
fn exe_identity(proc_root: &Path, pid: u32, exe: Option<&Text>) -> Option<FileKey> {
    use crate::enrich::watch::identity;
    identity(&proc_root.join(pid.to_string()).join("exe")).or_else(|| {
        // A `/proc` path names something else in the agent.
        let given = exe?.as_bytes();
        if given.starts_with(b"/proc/") {
            return None;
        }
        identity(Path::new(std::ffi::OsStr::from_bytes(given)))
    })
}

fn info_from_header(h: &HeaderFields) -> ProcessInfo {
    ProcessInfo {
        pid: h.tgid,
        ppid: h.ppid,
        uid: h.uid,
        gid: h.gid,
        comm: comm_string(&h.comm),
        exe: None,
        exe_deleted: false,
        exe_id: None,
        args: Vec::new(),
        args_truncated: false,
        cgroup_id: h.cgroup_id,
        container: None,
        start_boot_ns: 0,
        gpu: false,
        exited: false,
    }
}

/// `task->comm` up to its NUL.
fn comm_string(comm: &[u8; 16]) -> String {
    let end = comm.iter().position(|&b| b == 0).unwrap_or(comm.len());
    String::from_utf8_lossy(comm.get(..end).unwrap_or_default()).into_owned()
}

fn duration_ns(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::super::container::Runtime;
    use super::*;
    use std::fs;
    use std::os::unix::fs::{MetadataExt, symlink};

    const ID: &str = "3f4e1c2b9a8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f";
    const UID: &str = "1f2e3d4c-5b6a-4789-8abc-def012345678";
    const SEC: u64 = 1_000_000_000;

    struct Fixture {
        proc_dir: tempfile::TempDir,
        cgroup_dir: tempfile::TempDir,
    }

    impl Fixture {
        fn new() -> Self {
            let dir = || match tempfile::tempdir() {
                Ok(dir) => dir,
                Err(err) => panic!("tempdir: {err}"),
            };
            Self {
                proc_dir: dir(),
                cgroup_dir: dir(),
            }
        }

        fn table(&self, capacity: usize) -> ProcessTable {
            ProcessTable::new(
                self.proc_dir.path().to_path_buf(),
                CgroupResolver::new(self.cgroup_dir.path().to_path_buf()),
                capacity,
            )
        }

        /// Creates cgroup directory `path` and returns its id.
        fn cgroup(&self, path: &str) -> u64 {
            let dir = self.cgroup_dir.path().join(path.trim_start_matches('/'));
            if let Err(err) = fs::create_dir_all(&dir) {
                panic!("mkdir {}: {err}", dir.display());
            }
            match fs::metadata(&dir) {
                Ok(m) => m.ino(),
                Err(err) => panic!("stat: {err}"),
            }
        }

        /// A fake `/proc/<pid>`.
        fn process(&self, p: FakeProcess<'_>) {
            let dir = self.proc_dir.path().join(p.pid.to_string());
            let _ = fs::remove_dir_all(&dir);
            if let Err(err) = fs::create_dir_all(&dir) {
                panic!("mkdir: {err}");
            }
            let files = [
                (
                    "stat",
                    format!(
                        "{} ({}) S {} 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 {} 1 1\n",
                        p.pid, p.comm, p.ppid, p.start_ticks
                    ),
                ),
                (
                    "status",
                    format!(
                        "Name:\t{}\nTgid:\t{}\nUid:\t{u}\t{u}\t{u}\t{u}\nGid:\t{u}\t{u}\t{u}\t{u}\n",
                        p.comm,
                        p.pid,
                        u = p.uid
                    ),
                ),
                ("cmdline", p.cmdline.to_owned()),
                ("cgroup", format!("0::{}\n", p.cgroup)),
            ];
            for (name, contents) in files {
                if let Err(err) = fs::write(dir.join(name), contents) {
                    panic!("write {name}: {err}");
                }
            }
            if let Some(exe) = p.exe
                && let Err(err) = symlink(exe, dir.join("exe"))
            {
                panic!("symlink: {err}");
            }
        }

        fn kill(&self, pid: u32) {
            if let Err(err) = fs::remove_dir_all(self.proc_dir.path().join(pid.to_string())) {
                panic!("rm: {err}");
            }
        }
    }

    #[derive(Clone, Copy)]
    struct FakeProcess<'a> {
        pid: u32,
        ppid: u32,
        uid: u32,
        comm: &'a str,
        start_ticks: u64,
        exe: Option<&'a str>,
        cmdline: &'a str,
        cgroup: &'a str,
    }

    fn fake(pid: u32, ppid: u32, comm: &str) -> FakeProcess<'_> {
        FakeProcess {
            pid,
            ppid,
            uid: 1000,
            comm,
            start_ticks: u64::from(pid) * 10,
            exe: Some("/usr/bin/fake"),
            cmdline: "fake\0--flag\0",
            cgroup: "/user.slice/user-1000.slice/session-2.scope",
        }
    }

    fn header(tgid: u32, ppid: u32, comm: &str, boot_ns: u64) -> HeaderFields {
        let mut raw = [0u8; 16];
        for (dst, src) in raw.iter_mut().zip(comm.bytes().take(15)) {
            *dst = src;
        }
        HeaderFields {
            tgid,
            tid: tgid,
            ppid,
            uid: 1000,
            gid: 1000,
            cgroup_id: 0,
            comm: raw,
            boot_ns,
        }
    }

    fn args(v: &[&str]) -> Vec<Text> {
        v.iter().map(|s| Text::from(*s)).collect()
    }

    fn info(table: &ProcessTable, pid: u32) -> ProcessInfo {
        match table.lookup(pid) {
            Some(info) => info.clone(),
            None => panic!("pid {pid} is not in the table"),
        }
    }

    #[test]
    fn exec_fork_exec_exit_flow() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let parent = header(100, 1, "python3", 5 * SEC);
        table.on_exec(
            &parent,
            b"/opt/ww-test/bin/python3",
            b"python3\0serve.py\0",
            false,
            4 * SEC,
        );
        let got = table.get(&parent).clone();
        assert_eq!(
            got.exe.as_ref().and_then(Text::as_str),
            Some("/opt/ww-test/bin/python3")
        );
        assert_eq!(got.args, args(&["python3", "serve.py"]));
        assert_eq!(got.start_boot_ns, 4 * SEC);
        assert_eq!(got.ppid, 1);

        // The forked child runs the parent's image until it execs.
        table.on_fork(&parent, 101, 6 * SEC);
        let child = info(&table, 101);
        assert_eq!(child.ppid, 100);
        assert_eq!(
            child.exe.as_ref().and_then(Text::as_str),
            Some("/opt/ww-test/bin/python3")
        );
        assert_eq!(child.args, got.args);
        assert_eq!(child.start_boot_ns, 6 * SEC);
        assert!(!child.exited);

        let child_h = header(101, 100, "sh", 7 * SEC);
        table.on_exec(
            &child_h,
            b"/opt/ww-test/bin/sh",
            b"sh\0-c\0cat /models/x.gguf\0",
            true,
            6 * SEC,
        );
        let child = info(&table, 101);
        assert_eq!(
            child.exe.as_ref().and_then(Text::as_str),
            Some("/opt/ww-test/bin/sh")
        );
        assert_eq!(child.args, args(&["sh", "-c", "cat /models/x.gguf"]));
        assert!(child.args_truncated);
        assert_eq!(child.comm, "sh");
        assert_eq!(child.start_boot_ns, 6 * SEC);

        // Exited entries answer for the grace period, then go.
        table.on_exit(101, 8 * SEC);
        assert!(info(&table, 101).exited);
        assert_eq!(table.stats().exited, 1);
        let late = header(101, 100, "sh", 7 * SEC);
        assert_eq!(
            table.get(&late).exe.as_ref().and_then(Text::as_str),
            Some("/opt/ww-test/bin/sh")
        );
        table.sweep(8 * SEC + duration_ns(EXIT_GRACE) - 1);
        assert!(table.lookup(101).is_some());
        table.sweep(8 * SEC + duration_ns(EXIT_GRACE));
        assert!(table.lookup(101).is_none());
        assert_eq!(table.stats().entries, 1);
        assert_eq!(table.stats().exited, 0);
    }

    #[test]
    fn relative_exec_path_prefers_proc_exe() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        fx.process(FakeProcess {
            exe: Some("/home/u/bin/tool"),
            ..fake(300, 1, "tool")
        });
        table.on_exec(
            &header(300, 1, "tool", SEC),
            b"./tool",
            b"./tool\0",
            false,
            3000 * procfs::tick_ns(),
        );
        assert_eq!(
            info(&table, 300).exe.as_ref().and_then(Text::as_str),
            Some("/home/u/bin/tool")
        );

        // Gone already: keep the name as given.
        table.on_exec(
            &header(301, 1, "tool", SEC),
            b"./tool",
            b"./tool\0",
            false,
            SEC,
        );
        assert_eq!(
            info(&table, 301).exe.as_ref().and_then(Text::as_str),
            Some("./tool")
        );
    }

    #[test]
    fn fd_exec_reveals_a_memfd() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        fx.process(FakeProcess {
            exe: Some("/memfd:payload (deleted)"),
            ..fake(302, 1, "x")
        });
        table.on_exec(
            &header(302, 1, "x", SEC),
            b"/dev/fd/3",
            b"x\0",
            false,
            3020 * procfs::tick_ns(),
        );
        let got = info(&table, 302);
        assert_eq!(
            got.exe.as_ref().and_then(Text::as_str),
            Some("/memfd:payload")
        );
        assert!(got.exe_deleted);
    }

    #[test]
    fn an_exec_of_proc_self_exe_is_the_process_s_own_binary() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        fx.process(FakeProcess {
            exe: Some("/bin/busybox"),
            ..fake(304, 1, "cat")
        });
        table.on_exec(
            &header(304, 1, "cat", SEC),
            b"/proc/self/exe",
            b"cat\0",
            false,
            3040 * procfs::tick_ns(),
        );
        assert_eq!(
            info(&table, 304).exe.as_ref().and_then(Text::as_str),
            Some("/bin/busybox")
        );
    }

    #[test]
    fn a_gone_process_that_ran_proc_self_exe_ran_its_own_binary_again() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        table.on_exec(
            &header(305, 1, "sh", SEC),
            b"/opt/ww-test/busybox",
            b"sh\0",
            false,
            SEC,
        );
        // No /proc entry: the process is gone by the time its exec is read.
        table.on_exec(
            &header(305, 1, "cat", SEC),
            b"/proc/self/exe",
            b"cat\0",
            false,
            SEC,
        );
        assert_eq!(
            info(&table, 305).exe.as_ref().and_then(Text::as_str),
            Some("/opt/ww-test/busybox")
        );
    }

    #[test]
    fn long_exec_path_may_be_cut_so_proc_wins() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let long = format!("/{}", "d/".repeat(200));
        fx.process(FakeProcess {
            exe: Some("/the/real/long/path"),
            ..fake(303, 1, "x")
        });
        let cut = long.as_bytes().get(..FILENAME_CUT_AT).unwrap_or_default();
        table.on_exec(
            &header(303, 1, "x", SEC),
            cut,
            b"x\0",
            false,
            3030 * procfs::tick_ns(),
        );
        assert_eq!(
            info(&table, 303).exe.as_ref().and_then(Text::as_str),
            Some("/the/real/long/path")
        );
    }

    #[test]
    fn unknown_process_is_read_from_proc_then_refreshed_from_headers() {
        let fx = Fixture::new();
        let cgroup = format!("/system.slice/docker-{ID}.scope");
        let cgroup_id = fx.cgroup(&cgroup);
        fx.process(FakeProcess {
            comm: "my (weird) proc",
            cmdline: "vllm\0serve\0",
            cgroup: &cgroup,
            exe: Some("/usr/bin/python3.11"),
            ..fake(200, 150, "")
        });
        let mut table = fx.table(16);
        let mut h = header(200, 150, "my (weird) proc", SEC);
        h.cgroup_id = cgroup_id;
        let got = table.get(&h).clone();
        assert_eq!(
            got.exe.as_ref().and_then(Text::as_str),
            Some("/usr/bin/python3.11")
        );
        assert_eq!(got.args, args(&["vllm", "serve"]));
        assert_eq!(got.comm, "my (weird) proc");
        assert_eq!(got.start_boot_ns, 2000 * procfs::tick_ns());
        assert_eq!(got.cgroup_id, cgroup_id);
        let container = got.container.as_ref().map(|c| (c.id.as_str(), c.runtime));
        assert_eq!(container, Some((ID, Runtime::Docker)));

        // A worker thread's name is not the process's name...
        let mut thread = header(200, 150, "pt_worker", 2 * SEC);
        thread.tid = 205;
        thread.uid = 0;
        let got = table.get(&thread).clone();
        assert_eq!(got.comm, "my (weird) proc");
        // ...but its credentials and parent are the process's, and newer.
        assert_eq!(got.uid, 0);
        // Reparented to init after its parent died.
        let main = header(200, 1, "renamed", 3 * SEC);
        let got = table.get(&main).clone();
        assert_eq!((got.comm.as_str(), got.ppid), ("renamed", 1));
        // Moved out of the container's cgroup.
        assert!(
            got.container.is_none(),
            "header cgroup 0 must not keep the container"
        );
        assert_eq!(table.stats().proc_read_failures, 0);
    }

    #[test]
    fn header_alone_when_proc_has_nothing() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let got = table.get(&header(400, 399, "ghost", 10 * SEC)).clone();
        assert_eq!(got.comm, "ghost");
        assert_eq!(got.ppid, 399);
        assert_eq!(got.exe, None);
        assert!(got.exited, "a pid missing from /proc has exited");
        assert_eq!(table.stats().proc_read_failures, 1);
        // Not read again for every record...
        let _ = table.get(&header(400, 399, "ghost", 10 * SEC));
        assert_eq!(table.stats().proc_read_failures, 1);
        // ...and swept like any exited process.
        table.sweep(10 * SEC + duration_ns(EXIT_GRACE));
        assert!(table.lookup(400).is_none());
    }

    #[test]
    fn container_from_header_cgroup_id() {
        let fx = Fixture::new();
        let path = format!("/kubepods/burstable/pod{UID}/{ID}");
        let id = fx.cgroup(&path);
        let mut table = fx.table(16);
        let mut h = header(500, 1, "server", SEC);
        h.cgroup_id = id;
        table.on_exec(&h, b"/srv/server", b"server\0", false, SEC);
        let container = info(&table, 500).container;
        assert_eq!(
            container,
            Some(Container {
                id: ID.to_owned(),
                runtime: Runtime::Kubernetes,
                pod_uid: Some(UID.to_owned()),
            })
        );
        // The forked child is in the same container without another lookup.
        table.on_fork(&h, 501, 2 * SEC);
        assert_eq!(info(&table, 501).container, container);
    }

    #[test]
    fn new_cgroup_resolves_through_the_process_cgroup_file() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        // The resolver has walked an empty hierarchy.
        let mut h = header(600, 1, "runc:[2:INIT]", SEC);
        h.cgroup_id = fx.cgroup("/");
        table.on_exec(
            &h,
            b"/usr/bin/runc",
            b"runc\0init\0",
            false,
            6000 * procfs::tick_ns(),
        );
        assert_eq!(info(&table, 600).container, None);
        // runc moves itself into the fresh container cgroup, then execs.
        let path = format!("/system.slice/docker-{ID}.scope");
        let id = fx.cgroup(&path);
        fx.process(FakeProcess {
            cgroup: &path,
            ..fake(600, 1, "entrypoint")
        });
        h.cgroup_id = id;
        table.on_exec(
            &h,
            b"/entrypoint",
            b"/entrypoint\0",
            false,
            6000 * procfs::tick_ns(),
        );
        let container = info(&table, 600).container.map(|c| c.id);
        assert_eq!(container.as_deref(), Some(ID));
    }

    #[test]
    fn exec_keeps_the_gpu_mark_fork_does_not_inherit_it() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let h = header(700, 1, "launcher", SEC);
        table.on_exec(&h, b"/usr/bin/launcher", b"launcher\0", false, SEC);
        table.mark_gpu(700);
        assert!(table.get(&h).gpu);
        table.on_exec(&h, b"/usr/bin/server", b"server\0", false, SEC);
        assert!(info(&table, 700).gpu, "exec dropped the GPU mark");
        table.on_fork(&h, 701, 2 * SEC);
        assert!(!info(&table, 701).gpu);
        assert_eq!(table.stats().gpu_processes, 1);
    }

    #[test]
    fn exec_with_another_start_time_is_a_new_process() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let h = header(710, 1, "old", SEC);
        table.on_exec(&h, b"/old", b"old\0", false, SEC);
        table.mark_gpu(710);
        // Its exit record was lost and the pid reused.
        table.on_exec(&h, b"/new", b"new\0", false, 50 * SEC);
        let got = info(&table, 710);
        assert_eq!(got.exe.as_ref().and_then(Text::as_str), Some("/new"));
        assert_eq!(got.start_boot_ns, 50 * SEC);
        assert!(!got.gpu, "a reused pid inherited the GPU mark");
        assert_eq!(table.stats().gpu_processes, 0);
    }

    #[test]
    fn exited_entry_is_replaced_when_proc_shows_a_reused_pid() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let h = header(800, 1, "first", SEC);
        table.on_exec(&h, b"/first", b"first\0", false, SEC);
        table.on_exit(800, 2 * SEC);
        // A record made after the exit, but nothing at that pid: it is still
        // the exited process's (e.g. a summary drained late).
        let late = header(800, 1, "first", 3 * SEC);
        assert_eq!(
            table.get(&late).exe.as_ref().and_then(Text::as_str),
            Some("/first")
        );
        // Now another process has the pid.
        fx.process(FakeProcess {
            exe: Some("/second"),
            start_ticks: 4 * SEC / procfs::tick_ns(),
            ..fake(800, 1, "second")
        });
        let got = table.get(&header(800, 1, "second", 5 * SEC)).clone();
        assert_eq!(got.exe.as_ref().and_then(Text::as_str), Some("/second"));
        assert!(!got.exited);
        assert_eq!(table.stats().exited, 0);
        // Records made before the exit never trigger the check.
        table.on_exit(800, 6 * SEC);
        fx.kill(800);
        assert_eq!(
            table
                .get(&header(800, 1, "second", 5 * SEC))
                .exe
                .as_ref()
                .and_then(Text::as_str),
            Some("/second")
        );
    }

    #[test]
    fn capacity_evicts_exited_first_then_least_recently_used() {
        let fx = Fixture::new();
        let mut table = fx.table(3);
        for pid in [1000, 1001, 1002] {
            table.on_exec(&header(pid, 1, "p", SEC), b"/p", b"p\0", false, SEC);
        }
        table.on_exit(1001, 2 * SEC);
        table.on_exec(&header(1003, 1, "p", SEC), b"/p", b"p\0", false, SEC);
        assert!(
            table.lookup(1001).is_none(),
            "the exited entry should go first"
        );
        assert_eq!(table.stats().evictions, 1);

        // No exited entries: the least recently used goes, but GPU
        // processes are spared.
        table.mark_gpu(1000);
        let _ = table.get(&header(1002, 1, "p", 3 * SEC));
        table.on_exec(&header(1004, 1, "p", SEC), b"/p", b"p\0", false, SEC);
        assert!(table.lookup(1000).is_some(), "the GPU process was evicted");
        assert!(table.lookup(1003).is_none(), "1003 was least recently used");
        assert!(table.lookup(1002).is_some());
        assert_eq!(table.stats().evictions, 2);
        assert_eq!(table.stats().entries, 3);
    }

    #[test]
    fn gpu_mark_survives_eviction() {
        let fx = Fixture::new();
        fx.process(fake(1100, 1, "server"));
        let mut table = fx.table(1);
        table.mark_gpu(1100);
        assert!(info(&table, 1100).gpu);
        // The only slot is taken by someone else, evicting the server...
        table.on_exec(&header(1101, 1, "p", SEC), b"/p", b"p\0", false, SEC);
        assert!(table.lookup(1100).is_none());
        // ...which comes back from /proc still marked.
        assert!(table.get(&header(1100, 1, "server", 2 * SEC)).gpu);
    }

    #[test]
    fn sweep_forgets_gpu_marks_of_vanished_processes() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        table.mark_gpu(1200);
        assert_eq!(table.stats().gpu_processes, 1);
        table.sweep(SEC);
        assert_eq!(table.stats().gpu_processes, 0);
    }

    #[test]
    fn ancestors_walk_table_then_proc() {
        let fx = Fixture::new();
        fx.process(FakeProcess {
            start_ticks: 1,
            ..fake(1, 0, "systemd")
        });
        fx.process(FakeProcess {
            exe: Some("/usr/bin/containerd-shim"),
            ..fake(10, 1, "containerd-shim")
        });
        let mut table = fx.table(16);
        let tick = procfs::tick_ns();
        table.on_exec(
            &header(20, 10, "bash", SEC),
            b"/bin/bash",
            b"bash\0",
            false,
            200 * tick,
        );
        table.on_exec(
            &header(30, 20, "python", SEC),
            b"/usr/bin/python",
            b"python\0",
            false,
            300 * tick,
        );
        let chain = table.ancestors(30, 16);
        let pids: Vec<u32> = chain.iter().map(|a| a.pid).collect();
        assert_eq!(pids, [20, 10, 1]);
        assert_eq!(
            chain
                .get(1)
                .and_then(|a| a.exe.as_ref().and_then(Text::as_str)),
            Some("/usr/bin/containerd-shim")
        );
        assert_eq!(chain.get(2).map(|a| a.comm.as_str()), Some("systemd"));
        let pids: Vec<u32> = table.ancestors(30, 2).iter().map(|a| a.pid).collect();
        assert_eq!(pids, [20, 10]);
        assert!(table.ancestors(31337, 8).is_empty());
    }

    #[test]
    fn ancestors_stop_on_loops_and_on_younger_parents() {
        let fx = Fixture::new();
        let mut table = fx.table(16);
        let tick = procfs::tick_ns();
        // 40 -> 41 -> 40: impossible, but a corrupt table must not hang.
        table.on_exec(&header(40, 41, "a", SEC), b"/a", b"a\0", false, 0);
        table.on_exec(&header(41, 40, "b", SEC), b"/b", b"b\0", false, 0);
        let pids: Vec<u32> = table.ancestors(40, 16).iter().map(|a| a.pid).collect();
        assert_eq!(pids, [41]);
        // 50's recorded parent pid now belongs to a process that started
        // later: the real parent is gone.
        table.on_exec(
            &header(51, 1, "new", SEC),
            b"/new",
            b"new\0",
            false,
            900 * tick,
        );
        table.on_exec(
            &header(50, 51, "old", SEC),
            b"/old",
            b"old\0",
            false,
            500 * tick,
        );
        assert!(table.ancestors(50, 16).is_empty());
    }

    #[test]
    fn scan_existing_loads_the_fake_tree() {
        let fx = Fixture::new();
        let path = format!("/machine.slice/libpod-{ID}.scope");
        let id = fx.cgroup(&path);
        fx.process(fake(1, 0, "systemd"));
        fx.process(fake(2, 0, "kthreadd"));
        fx.process(FakeProcess {
            cgroup: &path,
            ..fake(3000, 1, "podman-ctr")
        });
        if let Err(err) = fs::create_dir(fx.proc_dir.path().join("self")) {
            panic!("mkdir: {err}");
        }
        let mut table = fx.table(16);
        assert_eq!(table.scan_existing(), 3);
        let got = info(&table, 3000);
        assert_eq!(got.cgroup_id, id);
        assert_eq!(got.container.map(|c| c.runtime), Some(Runtime::Podman));
        assert_eq!(got.args, args(&["fake", "--flag"]));
        assert_eq!(table.stats().entries, 3);
    }

    #[test]
    fn real_proc_knows_this_test() -> Result<(), Box<dyn std::error::Error>> {
        let mount =
            super::super::cgroup::cgroup2_mount().unwrap_or_else(|| PathBuf::from("/nonexistent"));
        let mut table = ProcessTable::new(
            PathBuf::from("/proc"),
            CgroupResolver::new(mount),
            DEFAULT_CAPACITY,
        );
        assert!(table.scan_existing() > 0);
        let pid = std::process::id();
        let me = info(&table, pid);
        assert_eq!(
            me.exe.as_ref().and_then(Text::as_str).map(Path::new),
            Some(std::env::current_exe()?.as_path())
        );
        let ppid = nix::unistd::getppid().as_raw().unsigned_abs();
        assert_eq!(me.ppid, ppid);
        let chain = table.ancestors(pid, 64);
        assert_eq!(chain.first().map(|a| a.pid), Some(ppid));
        Ok(())
    }
}
