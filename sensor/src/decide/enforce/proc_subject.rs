//! A process as its `/proc` entry shows it, for the deciders that cannot
//! wait for the event loop's process table: the fanotify thread (the
//! opener is blocked in its open) and a reload's sweep over processes the
//! table has not seen yet. Reads memory-backed files only.

use std::{collections::HashSet, path::Path};

use sensor_common::FileKey;

use crate::{
    decide::policy::Subject,
    enrich::{
        process::{parse_cgroup_path, procfs},
        watch::identity,
    },
};

/// What the policy matches a process on, owned.
#[derive(Debug, Clone)]
pub struct ProcSubject {
    pub tgid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub comm: String,
    pub exe: Option<FileKey>,
    pub parent_exe: Option<FileKey>,
    pub cgroup_path: Option<String>,
    pub container_id: Option<String>,
    pub gpu: bool,
}

impl ProcSubject {
    /// Reads the process of thread (or process) `tid`; `None` when its
    /// entry cannot be read (gone, or in another pid namespace: tid 0).
    pub fn read(proc_root: &Path, tid: u32, gpu: &HashSet<u32>) -> Option<Self> {
        if tid == 0 {
            return None;
        }
        let ids = procfs::read_status_ids(proc_root, tid).ok()?;
        let pid = ids.tgid;
        let stat = procfs::read_stat(proc_root, pid).ok();
        let ppid = stat.as_ref().map_or(0, |s| s.ppid);
        let cgroup_path = procfs::read_cgroup_path(proc_root, pid).ok().flatten();
        let container_id = cgroup_path
            .as_deref()
            .and_then(parse_cgroup_path)
            .map(|c| c.id);
        Some(Self {
            tgid: pid,
            ppid,
            uid: ids.uid,
            gid: ids.gid,
            comm: stat.map(|s| s.comm).unwrap_or_default(),
            exe: exe_identity(proc_root, pid),
            parent_exe: (ppid > 0).then(|| exe_identity(proc_root, ppid)).flatten(),
            cgroup_path,
            container_id,
            gpu: gpu.contains(&pid),
        })
    }

    pub fn subject(&self) -> Subject<'_> {
        Subject {
            exe: self.exe,
            parent_exe: self.parent_exe,
            uid: self.uid,
            gid: self.gid,
            container_id: self.container_id.as_deref(),
            cgroup_path: self.cgroup_path.as_deref(),
            gpu: self.gpu,
        }
    }
}

/// The identity of a process's executable.
fn exe_identity(proc_root: &Path, pid: u32) -> Option<FileKey> {
    identity(&proc_root.join(pid.to_string()).join("exe"))
}
