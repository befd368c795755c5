//! Turns typed kernel records into model events: the process behind each
//! (from the process table), the watched path of the file, the reader's
//! cumulative coverage, and wall-clock times.

use std::path::Path;

use sensor_common::{
    CopyEvent, EventHeader, ExecEvent, ExitEvent, FileKey, ForkEvent, MemoryEvent, OpenAgg,
    ReadAgg, SendEvent, copy_syscall, header_flag, memory_method, send_syscall, watch_flag,
};

use super::{
    clock::BootClock,
    coverage::{CoverageBook, coverage},
    process::{HeaderFields, ProcessTable},
    watch::WatchSet,
};
use crate::event::{
    Access, AccessDetail, Action, Ancestor, Container, CopyDetail, CopySyscall, DerivedFrom,
    Destination, DestinationKind, Event, Exit, File, FlushReason, MemoryMethod, MemorySummary,
    OpenSummary, Process, ReadSummary, SendDetail, SendSyscall, SensorStatus, Severity, SyscallAbi,
    Target, Text, Tier, Timestamp,
};

/// The weight files process `pid` maps (`/proc/PID/maps`: device and
/// inode of each mapping) or holds open (`/proc/PID/fd`), by the watch
/// set's paths.
fn held_weights(proc_root: &Path, pid: u32, watch: &WatchSet) -> Vec<Text> {
    let dir = proc_root.join(pid.to_string());
    let mut keys: Vec<FileKey> = Vec::new();
    if let Ok(maps) = std::fs::read_to_string(dir.join("maps")) {
        keys.extend(maps.lines().filter_map(map_line_key));
    }
    if let Ok(fds) = std::fs::read_dir(dir.join("fd")) {
        keys.extend(
            fds.flatten()
                .filter_map(|fd| super::watch::identity(&fd.path())),
        );
    }
    keys.sort_unstable();
    keys.dedup();
    keys.iter()
        .filter(|key| watch.flags_of(key) & watch_flag::WEIGHT != 0)
        .filter_map(|key| watch.path_of(key).map(Text::from))
        .collect()
}

/// The process (thread group) of thread `tid`, from `/proc/TID/status`.
fn thread_group(proc_root: &Path, tid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(proc_root.join(tid.to_string()).join("status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("Tgid:"))
        .and_then(|v| v.trim().parse().ok())
}

/// The file identity of one `/proc/PID/maps` line (`... fd:01 1234 /path`);
/// `None` for anonymous memory.
fn map_line_key(line: &str) -> Option<FileKey> {
    let mut fields = line.split_ascii_whitespace().skip(3);
    let (major, minor) = fields.next()?.split_once(':')?;
    let ino: u64 = fields.next()?.parse().ok()?;
    if ino == 0 {
        return None;
    }
    let major = u32::from_str_radix(major, 16).ok()?;
    let minor = u32::from_str_radix(minor, 16).ok()?;
    Some(FileKey {
        dev: (u64::from(major) << 20) | u64::from(minor),
        ino,
    })
}

/// A socket peer as records write it: `10.0.0.9:443`, `[::1]:443`,
/// `unix`; `None` for a family the kernel did not give.
fn peer_text(family: u16, addr: &[u8; 16], port: u16) -> Option<String> {
    const AF_UNIX: u16 = 1;
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    let ip = match family {
        AF_UNIX => return Some(String::from("unix")),
        AF_INET => std::net::IpAddr::from([addr[0], addr[1], addr[2], addr[3]]),
        AF_INET6 => std::net::IpAddr::from(*addr),
        _ => return None,
    };
    Some(std::net::SocketAddr::new(ip, port).to_string())
}

/// `i_mode`'s type bits (`S_IFMT`) and the types a copy goes to.
const S_IFMT: u32 = 0o170_000;
const S_IFREG: u32 = 0o100_000;
const S_IFIFO: u32 = 0o010_000;
const S_IFSOCK: u32 = 0o140_000;

/// The enrich stage's state.
pub struct Enricher {
    pub processes: ProcessTable,
    /// Each process's coverage of each file it read, until it exits.
    coverage: CoverageBook,
    clock: BootClock,
    host: String,
    tier: Tier,
    ancestors_max: usize,
}

impl Enricher {
    pub fn new(processes: ProcessTable, host: String, tier: Tier, ancestors_max: usize) -> Self {
        Self {
            processes,
            coverage: CoverageBook::default(),
            clock: BootClock::sample(),
            host,
            tier,
            ancestors_max,
        }
    }

    /// Samples the wall clock's offset again (it may have been stepped).
    pub fn resample_clock(&mut self) {
        self.clock = BootClock::sample();
    }

    fn time(&self, boot_ns: u64) -> Timestamp {
        Timestamp {
            unix_ns: self.clock.unix_ns(boot_ns),
            boot_ns: Some(boot_ns),
        }
    }

    /// An event for a kernel record with a process header.
    pub(super) fn base_event(&mut self, action: Action, h: &EventHeader) -> Event {
        self.event(action, h.boot_ns, Some(h))
    }

    /// An event with its common fields and, given a header, the process.
    fn event(&mut self, action: Action, boot_ns: u64, h: Option<&EventHeader>) -> Event {
        let mut process = h.map(|h| self.process(&HeaderFields::from(h)));
        // The detections match an executable by identity (a trusted job, a
        // renamed tool): resolved once per process that uses weights, not
        // at every exec.
        if let Some(p) = process.as_mut()
            && p.exe_id.is_none()
            && matches!(
                action,
                Action::Open
                    | Action::OpenSummary
                    | Action::Read
                    | Action::Mmap
                    | Action::Copy
                    | Action::MemoryRead
                    | Action::Send
            )
        {
            p.exe_id = self.processes.resolve_exe_id(p.pid);
        }
        Event {
            id: None,
            time: self.time(boot_ns),
            host: self.host.clone(),
            action,
            severity: Severity::Info,
            tier: self.tier,
            process,
            file: None,
            access: None,
            exit: None,
            sensor: None,
            policy: None,
            target: None,
            detection: None,
        }
    }

    /// A read of another process's memory (or an attach): a record only
    /// when that process holds weight files, which it names.
    pub fn memory(&mut self, m: &MemoryEvent, watch: &WatchSet) -> Option<Event> {
        let proc_root = Path::new("/proc");
        // `/proc/PID/task/TID/mem` and ptrace name a thread: its process
        // is the target. A process's own threads are not another process.
        let target_pid = thread_group(proc_root, m.target).unwrap_or(m.target);
        if target_pid == m.header.tgid {
            return None;
        }
        let weights = held_weights(proc_root, target_pid, watch);
        if weights.is_empty() {
            return None;
        }
        let info = self.processes.lookup(target_pid);
        let target = Target {
            pid: target_pid,
            comm: info.map(|i| i.comm.clone()).unwrap_or_default(),
            exe: info.and_then(|i| i.exe.clone()),
            gpu: info.is_some_and(|i| i.gpu),
            weights,
        };
        let method = match m.method {
            memory_method::PTRACE_ATTACH => MemoryMethod::PtraceAttach,
            memory_method::PTRACE_SEIZE => MemoryMethod::PtraceSeize,
            memory_method::PROC_MEM_OPEN => MemoryMethod::ProcMemOpen,
            memory_method::PROC_MEM_READ => MemoryMethod::ProcMemRead,
            memory_method::PTRACE_PEEK => MemoryMethod::PtracePeek,
            _ => MemoryMethod::ProcessVmReadv,
        };
        let summary =
            matches!(method, MemoryMethod::ProcMemRead | MemoryMethod::PtracePeek).then(|| {
                MemorySummary {
                    calls: m.calls,
                    reason: FlushReason::from_raw(m.reason),
                    first: self.time(m.first_ns),
                    last: self.time(m.header.boot_ns),
                }
            });
        let mut event = self.event(Action::MemoryRead, m.header.boot_ns, Some(&m.header));
        event.severity = if target.gpu {
            Severity::High
        } else {
            Severity::Medium
        };
        event.access = Some(Access {
            abi: if m.header.flags & header_flag::COMPAT_SYSCALL != 0 {
                SyscallAbi::Ia32
            } else {
                SyscallAbi::Native
            },
            detail: AccessDetail::Memory {
                method,
                bytes: m.bytes,
                summary,
            },
        });
        event.target = Some(target);
        Some(event)
    }

    fn process(&mut self, h: &HeaderFields) -> Process {
        let info = self.processes.get(h).clone();
        let parent_exe_id = self.processes.lookup(info.ppid).and_then(|p| p.exe_id);
        let cgroup_path = self.processes.cgroup_path(info.cgroup_id).map(String::from);
        let ancestors = self
            .processes
            .ancestors(info.pid, self.ancestors_max)
            .into_iter()
            .map(|a| Ancestor {
                pid: a.pid,
                comm: a.comm,
                exe: a.exe,
                gpu: a.gpu,
            })
            .collect();
        Process {
            pid: info.pid,
            tid: h.tid,
            ppid: info.ppid,
            uid: info.uid,
            gid: info.gid,
            comm: info.comm,
            exe: info.exe,
            args: info.args,
            args_truncated: info.args_truncated,
            cgroup_id: info.cgroup_id,
            container: info.container.map(|c| Container {
                id: c.id,
                runtime: c.runtime,
                pod_uid: c.pod_uid,
            }),
            start_time: (info.start_boot_ns != 0).then(|| self.time(info.start_boot_ns)),
            gpu: info.gpu,
            ancestors,
            exe_id: info.exe_id,
            parent_exe_id,
            cgroup_path,
        }
    }

    /// An exec: the table learns the new image, then the event names it.
    pub fn exec(&mut self, e: &ExecEvent) -> Event {
        let h = HeaderFields::from(&e.header);
        let filename = &e.filename[..(e.filename_len as usize).min(e.filename.len())];
        let args = &e.args[..(e.args_len as usize).min(e.args.len())];
        // The kernel's view of the new executable, for a process already
        // gone from `/proc` by now.
        let exe_id = Some(e.exe).filter(|k| *k != FileKey::default());
        self.processes.on_exec_of(
            &h,
            filename,
            args,
            e.args_truncated != 0,
            e.start_ns,
            exe_id,
        );
        self.event(Action::Exec, e.header.boot_ns, Some(&e.header))
    }

    pub fn fork(&mut self, f: &ForkEvent) {
        self.processes.on_fork(
            &HeaderFields::from(&f.header),
            f.child_tgid,
            f.child_start_ns,
        );
    }

    /// An exit: the event is built while the table still has the process.
    pub fn exit(&mut self, x: &ExitEvent) -> Event {
        let tgid = x.header.tgid;
        self.coverage.forget(tgid);
        let mut event = self.event(Action::Exit, x.header.boot_ns, Some(&x.header));
        event.exit = Some(Exit {
            wait_status: x.exit_code,
        });
        self.processes.on_exit(tgid, x.header.boot_ns);
        event
    }

    /// A process opened a GPU device: it serves models.
    pub fn gpu_open(&mut self, h: &EventHeader) {
        self.processes.get(&HeaderFields::from(h));
        self.processes.mark_gpu(h.tgid);
    }

    /// An open, close or map of a watched file.
    pub fn file_event(
        &mut self,
        action: Action,
        h: &EventHeader,
        key: FileKey,
        size: u64,
        detail: AccessDetail,
        watch: &WatchSet,
    ) -> Event {
        let mut event = self.event(action, h.boot_ns, Some(h));
        event.file = Some(File {
            path: watch.path_of(&key).map(Text::from),
            dev: key.dev,
            ino: key.ino,
            size,
            derived_from: derived_from(watch, &key),
        });
        event.access = Some(Access {
            abi: if h.flags & header_flag::COMPAT_SYSCALL != 0 {
                SyscallAbi::Ia32
            } else {
                SyscallAbi::Native
            },
            detail,
        });
        event
    }

    /// An access refused before it happened (a denied open): the process
    /// (from the table, else as the enforcer saw it) and the file, no
    /// `access`.
    pub fn refused(
        &mut self,
        opener: &crate::decide::enforce::fanotify::Enforced,
        watch: &WatchSet,
    ) -> Event {
        let (pid, key, size) = (opener.pid, opener.file, opener.size);
        let mut h = self.drained_header(pid, pid, BootClock::boot_now_ns());
        if self.processes.lookup(pid).is_none() {
            h.ppid = opener.ppid;
            h.uid = opener.uid;
            h.gid = opener.gid;
            set_comm(&mut h, &opener.comm);
        }
        let mut event = self.event(Action::Denied, h.boot_ns, Some(&h));
        event.file = Some(File {
            path: watch
                .path_of(&key)
                .or(opener.path.as_deref())
                .map(Text::from),
            dev: key.dev,
            ino: key.ino,
            size,
            derived_from: derived_from(watch, &key),
        });
        event
    }

    /// An access the kernel stopped before it happened: the process and
    /// the file, no `access`.
    pub fn refused_in_kernel(
        &mut self,
        h: &EventHeader,
        key: FileKey,
        size: u64,
        watch: &WatchSet,
    ) -> Event {
        let mut event = self.event(Action::Killed, h.boot_ns, Some(h));
        event.file = Some(File {
            path: watch.path_of(&key).map(Text::from),
            dev: key.dev,
            ino: key.ino,
            size,
            derived_from: derived_from(watch, &key),
        });
        event
    }

    /// A process's first copy of a watched file to a destination: the
    /// source as the file, where the bytes went in the access.
    pub fn copy(&mut self, c: &CopyEvent, watch: &WatchSet) -> Event {
        let destination = destination(
            c.header.tgid,
            c.fd_out,
            c.destination,
            c.destination_mode,
            (c.peer_family, &c.peer_addr, c.peer_port),
            watch,
        );
        let syscall = match c.syscall {
            copy_syscall::SENDFILE => CopySyscall::Sendfile,
            copy_syscall::SPLICE => CopySyscall::Splice,
            copy_syscall::FICLONE => CopySyscall::Ficlone,
            copy_syscall::FICLONERANGE => CopySyscall::FicloneRange,
            copy_syscall::URING_SPLICE => CopySyscall::IoUringSplice,
            _ => CopySyscall::CopyFileRange,
        };
        self.file_event(
            Action::Copy,
            &c.header,
            c.source,
            c.source_size,
            AccessDetail::Copy(CopyDetail {
                fd: c.fd_in,
                fd_out: c.fd_out,
                syscall,
                bytes: c.bytes,
                destination,
            }),
            watch,
        )
    }

    /// A write, send or connect by a process that had read watched bytes:
    /// no file (the kernel cannot tell whose bytes they are), the
    /// destination and the total so far.
    pub fn send(&mut self, e: &SendEvent, watch: &WatchSet) -> Event {
        let destination = destination(
            e.header.tgid,
            e.fd,
            e.destination,
            e.destination_mode,
            (e.peer_family, &e.peer_addr, e.peer_port),
            watch,
        );
        let syscall = send_syscall_of(e.syscall);
        let mut event = self.event(Action::Send, e.header.boot_ns, Some(&e.header));
        event.access = Some(Access {
            abi: SyscallAbi::Native,
            detail: AccessDetail::Send(SendDetail {
                fd: e.fd,
                syscall,
                bytes: e.bytes,
                calls: e.calls,
                destination,
            }),
        });
        event
    }

    /// A read summary: adds its segments to the process's coverage.
    pub fn read_summary(
        &mut self,
        h: &EventHeader,
        key: FileKey,
        agg: &ReadAgg,
        reason: u32,
        fd: Option<i32>,
        watch: &WatchSet,
    ) -> Event {
        let covered = self.coverage.add(h.tgid, key, &agg.covered);
        let summary = ReadSummary {
            fd: fd.filter(|&fd| fd >= 0),
            bytes: agg.bytes,
            calls: agg.calls,
            copies: u64::from(agg.copy_calls),
            coverage: coverage(&covered.words, agg.file_size),
            reason: FlushReason::from_raw(reason),
            first: self.time(agg.first_ns),
            last: self.time(agg.last_ns),
        };
        self.file_event(
            Action::Read,
            h,
            key,
            agg.file_size,
            AccessDetail::Read(summary),
            watch,
        )
    }

    /// An open summary: a process's counted opens and closes of a file.
    pub fn open_summary(
        &mut self,
        h: &EventHeader,
        key: FileKey,
        agg: &OpenAgg,
        reason: u32,
        fd: Option<i32>,
        watch: &WatchSet,
    ) -> Event {
        let summary = OpenSummary {
            fd: fd.filter(|&fd| fd >= 0),
            opens: agg.opens,
            closes: agg.closes,
            flags: agg.flags,
            reason: FlushReason::from_raw(reason),
            first: self.time(agg.first_ns),
            last: self.time(agg.last_ns),
        };
        self.file_event(
            Action::OpenSummary,
            h,
            key,
            agg.file_size,
            AccessDetail::OpenSummary(summary),
            watch,
        )
    }

    /// A header for a summary the agent drained from the aggregate map,
    /// filled from the process table.
    pub fn drained_header(&mut self, tgid: u32, tid: u32, boot_ns: u64) -> EventHeader {
        let mut h = EventHeader {
            tgid,
            tid,
            boot_ns,
            ..EventHeader::default()
        };
        if let Some(info) = self.processes.lookup(tgid) {
            h.ppid = info.ppid;
            h.uid = info.uid;
            h.gid = info.gid;
            h.cgroup_id = info.cgroup_id;
            set_comm(&mut h, &info.comm);
        }
        h
    }

    /// A sensor record (start, heartbeat, stop) timed now.
    pub fn sensor_event(&mut self, action: Action, status: SensorStatus) -> Event {
        let mut event = self.event(action, BootClock::boot_now_ns(), None);
        event.sensor = Some(status);
        event
    }

    /// Drops the coverage of processes that are gone (exit records lost).
    pub fn forget_processes(&mut self, gone: impl Fn(u32) -> bool) {
        self.coverage.retain_processes(|tgid| !gone(tgid));
        self.processes.sweep(BootClock::boot_now_ns());
    }
}

/// A `send` record's call, by its number (`sensor_common::send_syscall`).
fn send_syscall_of(raw: u32) -> SendSyscall {
    match raw {
        send_syscall::WRITE => SendSyscall::Write,
        send_syscall::PWRITE64 => SendSyscall::Pwrite64,
        send_syscall::WRITEV => SendSyscall::Writev,
        send_syscall::PWRITEV => SendSyscall::Pwritev,
        send_syscall::SENDTO => SendSyscall::Sendto,
        send_syscall::SENDMSG => SendSyscall::Sendmsg,
        send_syscall::SENDMMSG => SendSyscall::Sendmmsg,
        send_syscall::IO_URING_WRITE => SendSyscall::IoUringWrite,
        send_syscall::IO_URING_WRITEV => SendSyscall::IoUringWritev,
        send_syscall::IO_URING_WRITE_FIXED => SendSyscall::IoUringWriteFixed,
        send_syscall::IO_URING_WRITEV_FIXED => SendSyscall::IoUringWritevFixed,
        send_syscall::IO_URING_SEND => SendSyscall::IoUringSend,
        send_syscall::IO_URING_SENDMSG => SendSyscall::IoUringSendmsg,
        send_syscall::IO_URING_SEND_ZC => SendSyscall::IoUringSendZc,
        send_syscall::IO_URING_SENDMSG_ZC => SendSyscall::IoUringSendmsgZc,
        send_syscall::IO_URING_CONNECT => SendSyscall::IoUringConnect,
        _ => SendSyscall::Connect,
    }
}

/// What the descriptor in `fds` (a `/proc/PID/fd`) that leads to `key`
/// names. Only for io_uring writes, reported at doublings: one `stat` per
/// descriptor of the writer.
fn descriptor_of(fds: &Path, key: FileKey) -> Option<std::path::PathBuf> {
    std::fs::read_dir(fds).ok()?.flatten().find_map(|fd| {
        let meta = std::fs::metadata(fd.path()).ok()?;
        (std::os::unix::fs::MetadataExt::ino(&meta) == key.ino
            && crate::enrich::watch::kernel_dev(std::os::unix::fs::MetadataExt::dev(&meta))
                == key.dev)
            .then(|| std::fs::read_link(fd.path()).ok())
            .flatten()
    })
}

/// What a derived file (a watched copy of weights) was copied from.
pub fn derived_from(watch: &WatchSet, key: &FileKey) -> Option<DerivedFrom> {
    let source = watch.derived_from(key)?;
    Some(DerivedFrom {
        path: watch.path_of(&source).map(Text::from),
        dev: source.dev,
        ino: source.ino,
    })
}

/// Where bytes went: the kind by the destination's mode, a file's path
/// (the watch set's, else what the process's descriptor names now: the
/// writer is usually still at it; for `fd` -1, an io_uring request's, the
/// descriptor of that inode it holds, if any), a socket's peer.
fn destination(
    pid: u32,
    fd: i32,
    key: FileKey,
    mode: u32,
    (family, addr, port): (u16, &[u8; 16], u16),
    watch: &WatchSet,
) -> Destination {
    let kind = match mode & S_IFMT {
        S_IFREG => DestinationKind::File,
        S_IFIFO => DestinationKind::Pipe,
        S_IFSOCK => DestinationKind::Socket,
        _ => DestinationKind::Other,
    };
    let path = match kind {
        DestinationKind::File | DestinationKind::Other => {
            watch.path_of(&key).map(Text::from).or_else(|| {
                let fds = Path::new("/proc").join(pid.to_string()).join("fd");
                let link = if fd >= 0 {
                    std::fs::read_link(fds.join(fd.to_string())).ok()
                } else {
                    // -1: an io_uring request, which named no descriptor.
                    descriptor_of(&fds, key)
                };
                link.map(|p| Text::from(p.as_path()))
            })
        }
        DestinationKind::Pipe | DestinationKind::Socket => None,
    };
    let peer = (kind == DestinationKind::Socket)
        .then(|| peer_text(family, addr, port))
        .flatten();
    Destination {
        kind,
        dev: key.dev,
        ino: key.ino,
        path,
        peer,
    }
}

/// Puts `comm` in a header's NUL-terminated name field, cut to fit.
fn set_comm(h: &mut EventHeader, comm: &str) {
    let comm = comm.as_bytes();
    let n = comm.len().min(h.comm.len() - 1);
    h.comm[..n].copy_from_slice(&comm[..n]);
}

#[cfg(test)]
mod tests {

    #[test]
    fn an_io_uring_destination_is_named_by_the_writer_s_descriptor_of_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("out.bin");
        let held = std::fs::File::create(&path).expect("create");
        let key = crate::enrich::watch::identity(&path).expect("stat");
        let fds = Path::new("/proc/self/fd");
        assert_eq!(descriptor_of(fds, key), Some(path.clone()));
        drop(held);
        assert_eq!(descriptor_of(fds, key), None, "no descriptor leads to it");
    }

    use super::{descriptor_of, map_line_key, peer_text, send_syscall_of};
    use sensor_common::{FileKey, send_syscall};
    use std::path::Path;

    #[test]
    fn every_send_call_number_has_its_own_name() {
        let names: Vec<String> = (send_syscall::WRITE..=send_syscall::IO_URING_CONNECT)
            .map(|raw| serde_json::to_string(&send_syscall_of(raw)).unwrap_or_default())
            .collect();
        assert_eq!(
            names,
            [
                "write",
                "pwrite64",
                "writev",
                "pwritev",
                "sendto",
                "sendmsg",
                "sendmmsg",
                "connect",
                "io_uring_write",
                "io_uring_writev",
                "io_uring_write_fixed",
                "io_uring_writev_fixed",
                "io_uring_send",
                "io_uring_sendmsg",
                "io_uring_send_zc",
                "io_uring_sendmsg_zc",
                "io_uring_connect",
            ]
            .map(|n| format!("\"{n}\""))
        );
        assert!(send_syscall::is_connect(send_syscall::CONNECT));
        assert!(send_syscall::is_connect(send_syscall::IO_URING_CONNECT));
        assert!(!send_syscall::is_connect(send_syscall::IO_URING_SEND));
    }

    #[test]
    fn a_maps_line_gives_the_mapped_file_s_identity() {
        let line = "7f2c4a000000-7f2c4a100000 r--s 00000000 fd:01 1835023 /models/x.safetensors";
        assert_eq!(
            map_line_key(line),
            Some(FileKey {
                dev: (0xfd << 20) | 1,
                ino: 1_835_023
            })
        );
        let anon =
            "7ffd1c3e2000-7ffd1c403000 rw-p 00000000 00:00 0                          [stack]";
        assert_eq!(map_line_key(anon), None);
    }

    #[test]
    fn socket_peers_read_as_addresses() {
        let mut v4 = [0u8; 16];
        v4[..4].copy_from_slice(&[10, 0, 0, 9]);
        assert_eq!(peer_text(2, &v4, 443).as_deref(), Some("10.0.0.9:443"));
        let v6 = std::net::Ipv6Addr::LOCALHOST.octets();
        assert_eq!(peer_text(10, &v6, 8080).as_deref(), Some("[::1]:8080"));
        assert_eq!(peer_text(1, &[0; 16], 0).as_deref(), Some("unix"));
        assert_eq!(peer_text(0, &[0; 16], 0), None, "a family not read");
    }
}
