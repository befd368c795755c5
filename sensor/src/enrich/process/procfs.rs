//! Reads what the agent needs to know about a process from `/proc`.
//!
//! The kernel reports exec, fork and exit as they happen; `/proc` fills in
//! processes that were running before the sensor started and any process
//! first seen mid-life. Every function takes the proc root as a parameter
//! so tests can point it at a fake tree.
//!
//! A process can exit, and its pid be reused, between two reads of its
//! `/proc` directory. [`read_process`] reads `stat` again last and rejects
//! the snapshot if the start time changed, so one snapshot never mixes two
//! processes.
//!
//! Hand-written rather than on the `procfs` crate (which also takes a fake
//! root): that crate returns arguments and link targets as lossy `String`s,
//! and records must keep an executable's and its arguments' bytes; the
//! few files read here (`stat`, `status`, `cmdline`, `cgroup`, `exe`, `fd/`)
//! are a small parser each, tested against a fake tree and the real `/proc`.

use std::fs::{self, File};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::event::Text;

/// Bytes of argument vector kept per process, NUL separators included:
/// enough to tell what a server was started with, bounded against argv
/// stuffing.
pub const ARGS_MAX_BYTES: usize = 4096;
/// What the kernel appends to `/proc/PID/exe` when the file was unlinked.
const DELETED_SUFFIX: &str = " (deleted)";
/// `USER_HZ` on every architecture the sensor runs on, if `sysconf` fails.
const DEFAULT_CLK_TCK: u64 = 100;
const NS_PER_SEC: u64 = 1_000_000_000;

/// Errors reading `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum ProcError {
    #[error("process {pid} is gone (it exited before /proc/{pid} could be read)")]
    Gone { pid: u32 },
    #[error(
        "cannot read {path} (the agent needs root, or CAP_SYS_PTRACE \
         and CAP_DAC_READ_SEARCH, to read other users' processes)"
    )]
    Read { path: PathBuf, source: io::Error },
    #[error("cannot parse {path}: {what}")]
    Parse { path: PathBuf, what: &'static str },
    #[error("cannot list processes in {path} (is procfs mounted there?)")]
    List { path: PathBuf, source: io::Error },
}

/// One process as `/proc` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProcSnapshot {
    pub pid: u32,
    pub ppid: u32,
    /// Real uid.
    pub uid: u32,
    /// Real gid.
    pub gid: u32,
    /// The main thread's `comm`.
    pub comm: String,
    /// `/proc/PID/exe` without the ` (deleted)` suffix; `None` for kernel
    /// threads, zombies, or when the agent may not read the link.
    pub exe: Option<Text>,
    /// The executable was unlinked (or is a memfd) after the process started.
    pub exe_deleted: bool,
    pub args: Vec<Text>,
    /// `args` was cut at [`ARGS_MAX_BYTES`].
    pub args_truncated: bool,
    /// The cgroup v2 path (the `0::` line of `/proc/PID/cgroup`); `None` on
    /// a cgroup v1-only host.
    pub cgroup_path: Option<String>,
    /// `task->start_boottime` at clock-tick precision (CLOCK_BOOTTIME ns).
    pub start_boot_ns: u64,
}

/// The fields of `/proc/PID/stat` the agent uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stat {
    pub ppid: u32,
    pub comm: String,
    /// CLOCK_BOOTTIME ns, at clock-tick precision.
    pub start_boot_ns: u64,
}

/// The target of `/proc/PID/exe`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exe {
    pub path: Text,
    pub deleted: bool,
}

/// Reads process `pid` from `proc_root` (normally `/proc`).
pub fn read_process(proc_root: &Path, pid: u32) -> Result<ProcSnapshot, ProcError> {
    let stat = read_stat(proc_root, pid)?;
    let StatusIds { uid, gid, .. } = read_status_ids(proc_root, pid)?;
    let exe = read_exe(proc_root, pid);
    let (args, args_truncated) = match read_cmdline(proc_root, pid) {
        Ok(args) => args,
        Err(ProcError::Gone { pid }) => return Err(ProcError::Gone { pid }),
        Err(err) => {
            tracing::debug!(err = %crate::Chain(&err), "process arguments unavailable");
            (Vec::new(), false)
        }
    };
    let cgroup_path = match read_cgroup_path(proc_root, pid) {
        Ok(path) => path,
        Err(ProcError::Gone { pid }) => return Err(ProcError::Gone { pid }),
        Err(err) => {
            tracing::debug!(err = %crate::Chain(&err), "process cgroup unavailable");
            None
        }
    };
    // The pid may have been reused while the files above were read.
    if read_stat(proc_root, pid)?.start_boot_ns != stat.start_boot_ns {
        return Err(ProcError::Gone { pid });
    }
    let (exe, exe_deleted) = match exe {
        Some(Exe { path, deleted }) => (Some(path), deleted),
        None => (None, false),
    };
    Ok(ProcSnapshot {
        pid,
        ppid: stat.ppid,
        uid,
        gid,
        comm: stat.comm,
        exe,
        exe_deleted,
        args,
        args_truncated,
        cgroup_path,
        start_boot_ns: stat.start_boot_ns,
    })
}

/// Reads `/proc/PID/stat`: parent, command name and start time.
pub fn read_stat(proc_root: &Path, pid: u32) -> Result<Stat, ProcError> {
    let path = pid_path(proc_root, pid, "stat");
    let raw = read_small(&path).map_err(|source| read_error(pid, path.clone(), source))?;
    parse_stat(&raw).map_err(|what| ProcError::Parse { path, what })
}

/// Reads `/proc/PID/exe`. `None` when there is no executable (kernel
/// threads, zombies) or the agent may not read the link.
pub fn read_exe(proc_root: &Path, pid: u32) -> Option<Exe> {
    let path = pid_path(proc_root, pid, "exe");
    match fs::read_link(&path) {
        Ok(target) => Some(exe_from_link(target.as_os_str().as_bytes())),
        Err(err) => {
            if err.kind() == io::ErrorKind::PermissionDenied {
                tracing::debug!(path = %path.display(), "executable link unreadable: the agent lacks CAP_SYS_PTRACE");
            }
            None
        }
    }
}

/// Lists the processes (thread group ids) under `proc_root`.
pub fn list_pids(proc_root: &Path) -> Result<Vec<u32>, ProcError> {
    let entries = fs::read_dir(proc_root).map_err(|source| ProcError::List {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut pids: Vec<u32> = entries
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .collect();
    pids.sort_unstable();
    Ok(pids)
}

/// Pids holding an open descriptor whose target satisfies `matches`; used
/// at start-up to find GPU-serving processes that opened the device before
/// the sensor could see it. Processes the agent may not inspect are skipped.
pub fn pids_with_open_file(proc_root: &Path, matches: impl Fn(&Path) -> bool) -> Vec<u32> {
    let pids = match list_pids(proc_root) {
        Ok(pids) => pids,
        Err(err) => {
            tracing::warn!(err = %crate::Chain(&err), "cannot look for processes holding GPU devices");
            return Vec::new();
        }
    };
    pids.into_iter()
        .filter(|&pid| {
            let Ok(fds) = fs::read_dir(pid_path(proc_root, pid, "fd")) else {
                return false;
            };
            fds.flatten()
                .any(|fd| fs::read_link(fd.path()).is_ok_and(|target| matches(&target)))
        })
        .collect()
}

/// Splits a NUL-separated argument vector, keeping at most
/// [`ARGS_MAX_BYTES`]; the flag is `truncated` or'ed with whether this cut
/// it. Arguments keep their bytes; a cut argument loses a partial UTF-8
/// character at its end (the cut made it, not the process).
pub fn split_args(raw: &[u8], truncated: bool) -> (Vec<Text>, bool) {
    let (raw, truncated) = match raw.get(..ARGS_MAX_BYTES) {
        Some(head) if raw.len() > ARGS_MAX_BYTES => (head, true),
        _ => (raw, truncated),
    };
    if raw.is_empty() {
        return (Vec::new(), truncated);
    }
    // A whole vector ends with a NUL, which does not start another argument.
    let (body, cut_mid_arg) = match raw.strip_suffix(&[0]) {
        Some(body) => (body, false),
        None => (raw, truncated),
    };
    let parts: Vec<&[u8]> = body.split(|&b| b == 0).collect();
    let last = parts.len().saturating_sub(1);
    let args = parts
        .into_iter()
        .enumerate()
        .map(|(i, part)| {
            if cut_mid_arg && i == last {
                Text::from(without_cut_char(part))
            } else {
                Text::from(part)
            }
        })
        .collect();
    (args, truncated)
}

/// Whether two start times (CLOCK_BOOTTIME ns) name the same process start,
/// at the clock-tick precision of `/proc/PID/stat`: the kernel's own
/// nanosecond value and one read back from `/proc` compare equal.
pub fn same_start(a_ns: u64, b_ns: u64) -> bool {
    a_ns / tick_ns() == b_ns / tick_ns()
}

/// Nanoseconds per clock tick (`1e9 / sysconf(_SC_CLK_TCK)`).
pub fn tick_ns() -> u64 {
    static TICK_NS: OnceLock<u64> = OnceLock::new();
    *TICK_NS.get_or_init(|| {
        // SAFETY: sysconf only reads a configuration value.
        let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        let hz = u64::try_from(hz)
            .ok()
            .filter(|&hz| hz > 0 && hz <= NS_PER_SEC)
            .unwrap_or(DEFAULT_CLK_TCK);
        NS_PER_SEC / hz
    })
}

/// A `/proc` file whole. `/proc` files report size 0, so `fs::read`
/// starts with a tiny buffer and grows it read by read (23 reads for the
/// fanotify thread's files of one opener); these fit in a page or two.
fn read_small(path: &Path) -> io::Result<Vec<u8>> {
    let mut raw = Vec::with_capacity(4096);
    File::open(path)?.read_to_end(&mut raw)?;
    Ok(raw)
}

fn read_small_text(path: &Path) -> io::Result<String> {
    String::from_utf8(read_small(path)?).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn pid_path(proc_root: &Path, pid: u32, file: &str) -> PathBuf {
    proc_root.join(pid.to_string()).join(file)
}

/// A read error, or [`ProcError::Gone`] when it says the process exited
/// (`ENOENT` for the directory, `ESRCH` for a reaped task's files).
fn read_error(pid: u32, path: PathBuf, source: io::Error) -> ProcError {
    if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
        ProcError::Gone { pid }
    } else {
        ProcError::Read { path, source }
    }
}

/// `pid (comm) state ppid ... starttime ...`: `comm` may hold spaces and
/// parentheses, so it ends at the last `)`.
fn parse_stat(raw: &[u8]) -> Result<Stat, &'static str> {
    let open = raw
        .iter()
        .position(|&b| b == b'(')
        .ok_or("no '(' before comm")?;
    let close = raw
        .iter()
        .rposition(|&b| b == b')')
        .ok_or("no ')' after comm")?;
    let comm = raw.get(open + 1..close).ok_or("')' before '('")?;
    let rest = raw.get(close + 1..).ok_or("nothing after comm")?;
    let rest = std::str::from_utf8(rest).map_err(|_| "fields after comm are not text")?;
    // Fields are numbered from 1 in proc(5); `rest` starts at field 3.
    let mut fields = rest.split_ascii_whitespace();
    let ppid = fields
        .nth(4 - 3)
        .and_then(|f| f.parse().ok())
        .ok_or("bad ppid (field 4)")?;
    let start_ticks: u64 = fields
        .nth(22 - 5)
        .and_then(|f| f.parse().ok())
        .ok_or("bad starttime (field 22)")?;
    Ok(Stat {
        ppid,
        comm: String::from_utf8_lossy(comm).into_owned(),
        start_boot_ns: start_ticks.saturating_mul(tick_ns()),
    })
}

/// The ids `/proc/PID/status` gives: the thread group, the real uid and gid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusIds {
    pub tgid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The ids from `/proc/PID/status` (`PID` may be any thread's id).
pub fn read_status_ids(proc_root: &Path, pid: u32) -> Result<StatusIds, ProcError> {
    let path = pid_path(proc_root, pid, "status");
    let text = read_small_text(&path).map_err(|source| read_error(pid, path.clone(), source))?;
    let first = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|ids| ids.split_ascii_whitespace().next())
            .and_then(|id| id.parse::<u32>().ok())
    };
    let need = |key: &str, what: &'static str| {
        first(key).ok_or(ProcError::Parse {
            path: path.clone(),
            what,
        })
    };
    Ok(StatusIds {
        tgid: need("Tgid:", "no readable Tgid line")?,
        uid: need("Uid:", "no readable Uid line")?,
        gid: need("Gid:", "no readable Gid line")?,
    })
}

/// The syscall a blocked thread is in, from `/proc/TID/syscall`: its
/// number and six arguments. `None` when the thread is running, not in a
/// syscall, or the file cannot be read.
pub fn read_syscall(proc_root: &Path, tid: u32) -> Option<[u64; 7]> {
    let text = read_small_text(&pid_path(proc_root, tid, "syscall")).ok()?;
    parse_syscall(&text)
}

/// `NR ARG0 ... ARG5 SP PC`, the number in decimal and the rest in hex.
fn parse_syscall(text: &str) -> Option<[u64; 7]> {
    let mut fields = text.split_ascii_whitespace();
    let mut out = [0; 7];
    out[0] = fields.next()?.parse().ok()?;
    for slot in &mut out[1..] {
        let field = fields.next()?;
        *slot = u64::from_str_radix(field.strip_prefix("0x")?, 16).ok()?;
    }
    Some(out)
}

fn read_cmdline(proc_root: &Path, pid: u32) -> Result<(Vec<Text>, bool), ProcError> {
    let path = pid_path(proc_root, pid, "cmdline");
    let mut raw = Vec::new();
    File::open(&path)
        .and_then(|file| {
            // One byte more than kept tells whether there was more.
            let limit = u64::try_from(ARGS_MAX_BYTES + 1).unwrap_or(u64::MAX);
            file.take(limit).read_to_end(&mut raw)
        })
        .map_err(|source| read_error(pid, path, source))?;
    Ok(split_args(&raw, false))
}

/// Reads the cgroup v2 path of `pid` (the `0::` line of `/proc/PID/cgroup`);
/// `None` on a cgroup v1-only host.
pub fn read_cgroup_path(proc_root: &Path, pid: u32) -> Result<Option<String>, ProcError> {
    let path = pid_path(proc_root, pid, "cgroup");
    let text = read_small_text(&path).map_err(|source| read_error(pid, path, source))?;
    Ok(text
        .lines()
        .find_map(|line| line.strip_prefix("0::"))
        .map(str::to_owned))
}

fn exe_from_link(target: &[u8]) -> Exe {
    match target.strip_suffix(DELETED_SUFFIX.as_bytes()) {
        Some(path) => Exe {
            path: Text::from(path),
            deleted: true,
        },
        None => Exe {
            path: Text::from(target),
            deleted: false,
        },
    }
}

/// An argument the kernel cut at a byte limit, without the partial UTF-8
/// character the cut may have left at its end.
fn without_cut_char(part: &[u8]) -> &[u8] {
    let Some(last) = part.utf8_chunks().last() else {
        return part;
    };
    let invalid = last.invalid();
    let cut_char =
        !invalid.is_empty() && std::str::from_utf8(invalid).is_err_and(|e| e.error_len().is_none());
    match cut_char {
        true => part.get(..part.len() - invalid.len()).unwrap_or(part),
        false => part,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn reads_the_syscall_of_a_blocked_thread() {
        let line = "257 0xffffff9c 0x7ffd8a2b 0x241 0x1b6 0x0 0x0 0x7ffd8a00 0x7f12\n";
        assert_eq!(
            parse_syscall(line),
            Some([257, 0xffff_ff9c, 0x7ffd_8a2b, 0x241, 0x1b6, 0, 0])
        );
        assert_eq!(parse_syscall("running\n"), None);
        assert_eq!(parse_syscall("-1 0x7ffd 0x7f12\n"), None);
    }

    #[test]
    fn a_blocked_thread_shows_its_group_and_its_syscall() {
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            let _ = tid_tx.send(nix::unistd::gettid().as_raw() as u32);
            let _ = stop_rx.recv(); // blocks in futex(2)
        });
        let tid = tid_rx.recv().expect("tid");
        let proc_root = Path::new("/proc");
        let ids = read_status_ids(proc_root, tid).expect("status");
        assert_eq!(ids.tgid, std::process::id());
        assert_eq!(ids.uid, nix::unistd::getuid().as_raw());
        // Until the worker is parked in its wait it may still be running.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let nr = loop {
            if let Some(call) = read_syscall(proc_root, tid) {
                break call[0];
            }
            assert!(std::time::Instant::now() < deadline, "never blocked");
            std::thread::sleep(std::time::Duration::from_millis(10));
        };
        assert_eq!(nr, libc::SYS_futex as u64);
        let _ = stop_tx.send(());
        worker.join().expect("worker");
    }

    fn write(path: &Path, contents: &[u8]) {
        if let Some(dir) = path.parent()
            && let Err(err) = fs::create_dir_all(dir)
        {
            panic!("mkdir {}: {err}", dir.display());
        }
        if let Err(err) = fs::write(path, contents) {
            panic!("write {}: {err}", path.display());
        }
    }

    fn stat_line(pid: u32, comm: &str, ppid: u32, start_ticks: u64) -> String {
        // Fields 3..=52 of a real stat line, with ppid (4) and starttime (22)
        // filled in.
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1234 0 0 0 12 3 0 0 20 0 1 0 \
             {start_ticks} 123456789 456 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 \
             0 0 0 0 0 0 0 0 0 0 0 0 0\n"
        )
    }

    /// A fake `/proc/<pid>` with every file the agent reads.
    fn fake_process(root: &Path, pid: u32, comm: &str, cmdline: &[u8], exe: &str) {
        let dir = root.join(pid.to_string());
        write(&dir.join("stat"), stat_line(pid, comm, 1, 250).as_bytes());
        write(
            &dir.join("status"),
            b"Name:\tx\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\n\
              Uid:\t1000\t0\t0\t0\nGid:\t1001\t0\t0\t0\nGroups:\t27\n",
        );
        write(&dir.join("cmdline"), cmdline);
        write(
            &dir.join("cgroup"),
            b"12:memory:/user.slice\n1:name=systemd:/user.slice\n0::/system.slice/docker-x.scope\n",
        );
        if let Err(err) = symlink(exe, dir.join("exe")) {
            panic!("symlink: {err}");
        }
    }

    fn tempdir() -> tempfile::TempDir {
        match tempfile::tempdir() {
            Ok(dir) => dir,
            Err(err) => panic!("tempdir: {err}"),
        }
    }

    #[test]
    fn reads_a_fake_process() -> Result<(), ProcError> {
        let root = tempdir();
        fake_process(
            root.path(),
            4242,
            "my (weird) proc",
            b"python3\0-m\0vllm.entrypoints\0--model\0/models/llama 3\0",
            "/opt/venv/bin/python3.11 (deleted)",
        );
        let snap = read_process(root.path(), 4242)?;
        assert_eq!(
            snap,
            ProcSnapshot {
                pid: 4242,
                ppid: 1,
                uid: 1000,
                gid: 1001,
                comm: "my (weird) proc".to_owned(),
                exe: Some(Text::from("/opt/venv/bin/python3.11")),
                exe_deleted: true,
                args: [
                    "python3",
                    "-m",
                    "vllm.entrypoints",
                    "--model",
                    "/models/llama 3"
                ]
                .map(Text::from)
                .to_vec(),
                args_truncated: false,
                cgroup_path: Some("/system.slice/docker-x.scope".to_owned()),
                start_boot_ns: 250 * tick_ns(),
            }
        );
        Ok(())
    }

    #[test]
    fn stat_comm_may_contain_spaces_and_parens() -> Result<(), &'static str> {
        let line = stat_line(7, ") S 99 (", 55, 1_000);
        let stat = parse_stat(line.as_bytes())?;
        assert_eq!(stat.comm, ") S 99 (");
        assert_eq!(stat.ppid, 55);
        assert_eq!(stat.start_boot_ns, 1_000 * tick_ns());
        Ok(())
    }

    #[test]
    fn bad_stat_is_a_parse_error() {
        for raw in [&b""[..], b"1 (x", b"1 (x) S", b"1 (x) S 0 1 1 0"] {
            assert!(
                parse_stat(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
        let root = tempdir();
        write(&root.path().join("9/stat"), b"9 (x) S notanumber\n");
        match read_stat(root.path(), 9) {
            Err(err @ ProcError::Parse { .. }) => {
                assert!(err.to_string().contains("bad ppid (field 4)"), "{err}");
            }
            other => panic!("expected a parse error, got {other:?}"),
        }
    }

    #[test]
    fn missing_process_is_gone() {
        let root = tempdir();
        assert!(matches!(
            read_process(root.path(), 31337),
            Err(ProcError::Gone { pid: 31337 })
        ));
    }

    #[test]
    fn kernel_thread_has_no_exe_or_args() -> Result<(), ProcError> {
        let root = tempdir();
        let dir = root.path().join("2");
        write(&dir.join("stat"), stat_line(2, "kthreadd", 0, 0).as_bytes());
        write(
            &dir.join("status"),
            b"Tgid:\t2\nUid:\t0\t0\t0\t0\nGid:\t0\t0\t0\t0\n",
        );
        write(&dir.join("cmdline"), b"");
        write(&dir.join("cgroup"), b"0::/\n");
        let snap = read_process(root.path(), 2)?;
        assert_eq!(snap.exe, None);
        assert!(!snap.exe_deleted);
        assert!(snap.args.is_empty());
        assert_eq!(snap.cgroup_path.as_deref(), Some("/"));
        Ok(())
    }

    #[test]
    fn cgroup_v1_only_host_has_no_v2_path() -> Result<(), ProcError> {
        let root = tempdir();
        fake_process(root.path(), 5, "x", b"x\0", "/bin/x");
        write(&root.path().join("5/cgroup"), b"4:memory:/docker/abc\n");
        assert_eq!(read_process(root.path(), 5)?.cgroup_path, None);
        Ok(())
    }

    #[test]
    fn long_cmdline_is_bounded() -> Result<(), ProcError> {
        let root = tempdir();
        let mut cmdline = b"server\0".to_vec();
        for _ in 0..1000 {
            cmdline.extend_from_slice(b"--flag=value\0");
        }
        fake_process(root.path(), 77, "server", &cmdline, "/usr/bin/server");
        let snap = read_process(root.path(), 77)?;
        assert!(snap.args_truncated);
        let kept: usize = snap.args.iter().map(|a| a.as_bytes().len() + 1).sum();
        assert!(kept <= ARGS_MAX_BYTES + 1, "kept {kept} bytes");
        assert_eq!(snap.args.first().and_then(Text::as_str), Some("server"));
        Ok(())
    }

    #[test]
    fn lists_numeric_entries_only() -> Result<(), ProcError> {
        let root = tempdir();
        for name in ["1", "300", "42", "self", "thread-self", "sys", "12a"] {
            if let Err(err) = fs::create_dir(root.path().join(name)) {
                panic!("mkdir: {err}");
            }
        }
        assert_eq!(list_pids(root.path())?, vec![1, 42, 300]);
        assert!(matches!(
            list_pids(&root.path().join("missing")),
            Err(ProcError::List { .. })
        ));
        Ok(())
    }

    #[test]
    fn finds_pids_holding_a_device() {
        let root = tempdir();
        for (pid, targets) in [
            (10u32, vec!["/dev/null", "/dev/nvidia0", "socket:[123]"]),
            (11, vec!["/dev/pts/0"]),
            (12, vec!["/dev/nvidiactl"]),
            (13, vec![]),
        ] {
            let fd_dir = root.path().join(pid.to_string()).join("fd");
            if let Err(err) = fs::create_dir_all(&fd_dir) {
                panic!("mkdir: {err}");
            }
            for (fd, target) in targets.iter().enumerate() {
                if let Err(err) = symlink(target, fd_dir.join(fd.to_string())) {
                    panic!("symlink: {err}");
                }
            }
        }
        // 14 has no fd directory the agent can read.
        if let Err(err) = fs::create_dir(root.path().join("14")) {
            panic!("mkdir: {err}");
        }
        let gpu = |p: &Path| p.to_str().is_some_and(|s| s.starts_with("/dev/nvidia"));
        assert_eq!(pids_with_open_file(root.path(), gpu), vec![10, 12]);
    }

    #[test]
    fn split_args_cases() {
        assert_eq!(split_args(b"", false), (vec![], false));
        assert_eq!(
            split_args(b"ls\0-l\0", false),
            (texts(&["ls", "-l"]), false)
        );
        // The kernel record may omit the final NUL.
        assert_eq!(split_args(b"ls\0-l", false), (texts(&["ls", "-l"]), false));
        // Empty arguments are arguments.
        assert_eq!(
            split_args(b"a\0\0b\0", false),
            (texts(&["a", "", "b"]), false)
        );
        assert_eq!(split_args(b"\0", false), (texts(&[""]), false));
        // A record already cut by the kernel keeps its flag.
        assert_eq!(
            split_args(b"ls\0--col", true),
            (texts(&["ls", "--col"]), true)
        );
    }

    #[test]
    fn split_args_drops_a_cut_utf8_character() {
        // "é" is 0xC3 0xA9: the kernel cut it in half.
        assert_eq!(
            split_args(b"echo\0caf\xC3", true),
            (vec![Text::from("echo"), Text::from("caf")], true)
        );
        // A complete but invalid argument keeps its bytes.
        assert_eq!(
            split_args(b"echo\0\xFFok\0", false),
            (vec![Text::from("echo"), Text::from(&b"\xFFok"[..])], false)
        );
        // Invalid bytes earlier in a cut argument are kept.
        assert_eq!(
            split_args(b"\xFFcaf\xC3", true),
            (vec![Text::from(&b"\xFFcaf"[..])], true)
        );
        // A byte that can never start a character is not a cut character.
        assert_eq!(
            split_args(b"ab\xFF", true),
            (vec![Text::from(&b"ab\xFF"[..])], true)
        );
    }

    #[test]
    fn split_args_bounds_and_flags() {
        let raw = vec![b'a'; ARGS_MAX_BYTES * 2];
        let (args, truncated) = split_args(&raw, false);
        assert!(truncated);
        assert_eq!(args, vec![Text::from("a".repeat(ARGS_MAX_BYTES))]);
        // Exactly the limit, NUL included, is not truncated.
        let mut raw = vec![b'b'; ARGS_MAX_BYTES - 1];
        raw.push(0);
        let (args, truncated) = split_args(&raw, false);
        assert!(!truncated);
        assert_eq!(
            args.first().map(|a| a.as_bytes().len()),
            Some(ARGS_MAX_BYTES - 1)
        );
    }

    #[test]
    fn start_times_compare_at_tick_precision() {
        let tick = tick_ns();
        let kernel_ns = 123 * tick + tick / 2;
        let proc_ns = 123 * tick;
        assert!(same_start(kernel_ns, proc_ns));
        assert!(!same_start(kernel_ns, proc_ns + tick));
    }

    fn texts(v: &[&str]) -> Vec<Text> {
        v.iter().map(|s| Text::from(*s)).collect()
    }

    #[test]
    fn exe_link_suffix() {
        assert_eq!(
            exe_from_link(b"/memfd:payload (deleted)"),
            Exe {
                path: Text::from("/memfd:payload"),
                deleted: true
            }
        );
        assert_eq!(
            exe_from_link(b"/usr/bin/python3"),
            Exe {
                path: Text::from("/usr/bin/python3"),
                deleted: false
            }
        );
    }

    #[test]
    fn reads_this_test_process_from_real_proc() -> Result<(), Box<dyn std::error::Error>> {
        let proc_root = Path::new("/proc");
        let pid = std::process::id();
        let snap = read_process(proc_root, pid)?;
        assert_eq!(snap.pid, pid);
        assert_eq!(snap.ppid, nix::unistd::getppid().as_raw().unsigned_abs());
        assert_eq!(snap.uid, nix::unistd::getuid().as_raw());
        assert_eq!(snap.gid, nix::unistd::getgid().as_raw());
        assert_eq!(
            snap.exe.as_ref().and_then(Text::as_str).map(Path::new),
            Some(std::env::current_exe()?.as_path())
        );
        let args: Vec<Text> = std::env::args_os()
            .map(|a| Text::from(a.as_bytes()))
            .collect();
        if args.iter().map(|a| a.as_bytes().len() + 1).sum::<usize>() <= ARGS_MAX_BYTES {
            assert_eq!(snap.args, args);
            assert!(!snap.args_truncated);
        }
        let now = nix::time::clock_gettime(nix::time::ClockId::CLOCK_BOOTTIME)?;
        let now_ns = u64::try_from(now.tv_sec())? * NS_PER_SEC + u64::try_from(now.tv_nsec())?;
        assert!(snap.start_boot_ns > 0 && snap.start_boot_ns <= now_ns);
        if let Ok(text) = fs::read_to_string("/proc/self/cgroup") {
            let v2 = text.lines().find_map(|l| l.strip_prefix("0::"));
            assert_eq!(snap.cgroup_path.as_deref(), v2);
        }
        assert!(list_pids(proc_root)?.contains(&pid));
        Ok(())
    }
}
