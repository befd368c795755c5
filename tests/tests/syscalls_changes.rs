//! Every x86-64 tampering syscall the sensor follows (sensor-ebpf/src/change.rs,
//! numbers in sensor-ebpf/src/tier/tracepoint/syscall.rs; the agent side
//! in sensor/src/enrich/change.rs), and each open syscall for writing and
//! with `O_TRUNC`, issued by number from `helpers/changes.c`: a wrong
//! number or argument register fails a test. coreutils and Python (as in
//! tamper.rs) reach only some of them: `mv` is renameat2, `rm` unlinkat,
//! `chmod` fchmodat, `chown` fchownat, `ln` linkat.
//!
//! Each test runs the helper twice under one sensor: on a 1 MiB file
//! outside the roots (the control: no tampering record), then on a watched
//! one, and asserts on the stopped sensor's records: exactly the expected
//! records by that process, in order, each with its action, syscall, file
//! (ino, path), descriptor, argument (length, mode, owner, flags, paths),
//! result and the file's size before and after.

#![allow(clippy::unwrap_used)]

use std::{
    os::unix::ffi::OsStrExt,
    path::{Path, PathBuf},
    process::Command,
};

use sensor::event::{AccessDetail, Action, ChangeDetail, ChangeSyscall, Event, SyscallAbi};
use tests::{SensorProcess, briefs, build_helper, identity, write_file};

const MIB: u64 = 1024 * 1024;
const NAME: &str = "w.safetensors";
const O_WRONLY: u32 = 0o1;
const O_RDWR: u32 = 0o2;
const O_TRUNC: u32 = 0o1000;
const O_CREAT: u32 = 0o100;
const AT_SYMLINK_NOFOLLOW: u32 = 0x100;
const AT_SYMLINK_FOLLOW: u32 = 0x400;
const RENAME_NOREPLACE: u32 = 1;

/// Where a two-path call's second path goes.
#[derive(Clone, Copy)]
enum To {
    None,
    /// Another name in the same directory (a rename within the roots).
    SameDir(&'static str),
    /// A name in a directory outside the roots (a link out of them).
    Outside(&'static str),
}

/// One test's two helper runs, the sensor stopped.
struct Tamper {
    pid: u32,
    /// The descriptor the helper printed (-1 for path operations).
    fd: i32,
    file: PathBuf,
    ino: u64,
    /// The second path of the watched run.
    to: Option<PathBuf>,
    events: Vec<Event>,
    _dirs: Vec<tempfile::TempDir>,
}

/// `changes MODE FILE [TO]`; returns its pid and printed descriptor, or
/// `None` when the syscall is not supported here (exit 77).
fn helper(helper: &Path, mode: &str, file: &Path, to: Option<&Path>) -> Option<(u32, i32)> {
    let child = Command::new(helper)
        .arg(mode)
        .arg(file)
        .args(to)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let out = child.wait_with_output().unwrap();
    if out.status.code() == Some(77) {
        return None;
    }
    assert!(out.status.success(), "changes {mode}: {:?}", out.status);
    let text = String::from_utf8(out.stdout).unwrap();
    let fd = text.trim().strip_prefix("fd=").unwrap().parse().unwrap();
    Some((pid, fd))
}

impl Tamper {
    /// Runs `mode` on an unwatched file, then on a watched one; `None`
    /// when the helper says the syscall is unsupported.
    fn try_run(mode: &str, to: To) -> Option<Self> {
        let bin = tempfile::tempdir().unwrap();
        let exe = build_helper(bin.path(), "changes");
        let root = tempfile::tempdir().unwrap();
        let elsewhere = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let file = root.path().join(NAME);
        write_file(&file, MIB as usize);
        let ino = identity(&file).1;
        let control_file = elsewhere.path().join(NAME);
        write_file(&control_file, MIB as usize);
        let (to, control_to) = match to {
            To::None => (None, None),
            To::SameDir(name) => (
                Some(root.path().join(name)),
                Some(elsewhere.path().join(name)),
            ),
            To::Outside(name) => (
                Some(outside.path().join(name)),
                Some(elsewhere.path().join(name)),
            ),
        };
        let sensor = SensorProcess::start(&[root.path()], &[]);
        let Some((control, _)) = helper(&exe, mode, &control_file, control_to.as_deref()) else {
            drop(sensor.stop_events());
            return None;
        };
        let (pid, fd) = helper(&exe, mode, &file, to.as_deref()).unwrap();
        sensor.wait_exit(control);
        sensor.wait_exit(pid);
        let (_, events) = sensor.stop_events();
        let run = Self {
            pid,
            fd,
            file,
            ino,
            to,
            events,
            _dirs: vec![bin, root, elsewhere, outside],
        };
        // The same call on a file outside the roots: no record.
        let by_control: Vec<_> = run.changes_by(control);
        assert!(by_control.is_empty(), "control {control}: {by_control:#?}");
        Some(run)
    }

    fn run(mode: &str, to: To) -> Self {
        Self::try_run(mode, to).unwrap()
    }

    fn changes_by(&self, pid: u32) -> Vec<&Event> {
        self.events
            .iter()
            .filter(|e| e.action.is_change() && tests::process(e).pid == pid)
            .collect()
    }

    fn describe(&self) -> String {
        let mine = briefs(
            self.events
                .iter()
                .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == self.pid)),
        );
        format!("records of pid {}:\n{}", self.pid, mine.join("\n"))
    }

    /// The watched run's tampering records: exactly `expected` (action,
    /// the path the record names), in order, each of the watched inode,
    /// native, its change detail returned.
    fn changes(&self, expected: &[(Action, &Path)]) -> Vec<ChangeDetail> {
        let records = self.changes_by(self.pid);
        let actions: Vec<_> = records.iter().map(|e| e.action).collect();
        let want: Vec<_> = expected.iter().map(|(a, _)| *a).collect();
        assert_eq!(actions, want, "{}", self.describe());
        records
            .iter()
            .zip(expected)
            .map(|(e, (_, path))| {
                assert_eq!(tests::path(e), *path, "{e:?}");
                assert_eq!(tests::file(e).ino, self.ino, "{e:?}");
                assert_eq!(tests::access(e).abi, SyscallAbi::Native);
                match &tests::access(e).detail {
                    AccessDetail::Change(c) => (**c).clone(),
                    other => panic!("not a change: {other:?}"),
                }
            })
            .collect()
    }

    /// The one record of a one-path operation, naming the file.
    fn one(&self, action: Action) -> ChangeDetail {
        self.changes(&[(action, &self.file)]).remove(0)
    }

    fn to(&self) -> &Path {
        self.to.as_deref().unwrap()
    }
}

fn sizes(c: &ChangeDetail) -> (Option<u64>, Option<u64>) {
    (c.before.map(|s| s.size), c.after.map(|s| s.size))
}

fn bytes_of(text: Option<&sensor::event::Text>) -> Option<&[u8]> {
    text.map(sensor::event::Text::as_bytes)
}

fn bytes(path: &Path) -> Option<&[u8]> {
    Some(path.as_os_str().as_bytes())
}

// --- Truncations. ---

#[test]
fn truncate_76() {
    let t = Tamper::run("truncate", To::None);
    let c = t.one(Action::Truncate);
    assert_eq!(
        (c.syscall, c.fd, c.length, c.result, sizes(&c)),
        (
            ChangeSyscall::Truncate,
            None,
            Some(100),
            0,
            (Some(MIB), Some(100))
        )
    );
}

#[test]
fn ftruncate_77() {
    // openat(O_RDWR) is a write open; ftruncate(fd, 10) the truncation,
    // with the inode's size read by the kernel at entry and exit.
    let t = Tamper::run("ftruncate", To::None);
    let c = t.changes(&[(Action::WriteOpen, &t.file), (Action::Truncate, &t.file)]);
    assert_eq!(
        (c[0].syscall, c[0].fd, c[0].flags, c[0].result, sizes(&c[0])),
        (
            ChangeSyscall::Openat,
            Some(t.fd),
            Some(O_RDWR),
            0,
            (Some(MIB), Some(MIB))
        )
    );
    assert_eq!(
        (
            c[1].syscall,
            c[1].fd,
            c[1].length,
            c[1].result,
            sizes(&c[1])
        ),
        (
            ChangeSyscall::Ftruncate,
            Some(t.fd),
            Some(10),
            0,
            (Some(MIB), Some(10))
        )
    );
}

// --- Renames: within the roots, to a new weight name. ---

fn assert_rename(mode: &str, syscall: ChangeSyscall, flags: Option<u32>) {
    let t = Tamper::run(mode, To::SameDir("renamed.safetensors"));
    let c = t.changes(&[(Action::Rename, t.to())]).remove(0);
    assert_eq!(
        (c.syscall, c.flags, c.result, sizes(&c)),
        (syscall, flags, 0, (Some(MIB), Some(MIB)))
    );
    assert_eq!(bytes_of(c.old_path.as_ref()), bytes(&t.file));
    assert_eq!(bytes_of(c.new_path.as_ref()), bytes(t.to()));
    assert_eq!(
        (c.before.unwrap().ino, c.after.unwrap().ino),
        (t.ino, t.ino)
    );
    assert!(c.replaced.is_none(), "{c:?}");
}

#[test]
fn rename_82() {
    assert_rename("rename", ChangeSyscall::Rename, None);
}

#[test]
fn renameat_264() {
    assert_rename("renameat", ChangeSyscall::Renameat, None);
}

// A watched file moved out of the roots by a renameat relative to a
// descriptor of an unwatched directory, by a process that has exited when
// the agent resolves the record: the directory can no longer be named from
// `/proc`, but the file stays watched outside the roots, so the record
// names where it landed. (Before the fix, the whole record was dropped as
// unresolved, although the name it left resolved.)
#[test]
fn renameat_264_out_of_the_roots() {
    let t = Tamper::run("renameat", To::Outside("renamed.safetensors"));
    // Moved away: the record names where it is now.
    let c = t.changes(&[(Action::Rename, t.to())]).remove(0);
    assert_eq!(
        (c.syscall, c.result, sizes(&c)),
        (ChangeSyscall::Renameat, 0, (Some(MIB), Some(MIB)))
    );
    assert_eq!(bytes_of(c.old_path.as_ref()), bytes(&t.file));
    assert_eq!(bytes_of(c.new_path.as_ref()), bytes(t.to()));
}

#[test]
fn renameat2_316() {
    assert_rename(
        "renameat2",
        ChangeSyscall::Renameat2,
        Some(RENAME_NOREPLACE),
    );
}

// --- Hard links: a new name outside the roots. ---

fn assert_link(mode: &str, to: To, syscall: ChangeSyscall, flags: Option<u32>) {
    let t = Tamper::run(mode, to);
    let c = t.one(Action::Link);
    assert_eq!(
        (c.syscall, c.flags, c.result, sizes(&c)),
        (syscall, flags, 0, (Some(MIB), Some(MIB)))
    );
    assert_eq!(bytes_of(c.old_path.as_ref()), bytes(&t.file));
    assert_eq!(bytes_of(c.new_path.as_ref()), bytes(t.to()));
    assert_eq!(identity(t.to()).1, t.ino, "the link is the watched inode");
}

#[test]
fn link_86() {
    // Absolute paths: the new name outside the roots.
    assert_link("link", To::Outside("linked"), ChangeSyscall::Link, None);
}

#[test]
fn linkat_265() {
    // Both names relative to a descriptor of the watched directory (a
    // name that is not a weight's: the record keeps the watched one).
    assert_link(
        "linkat",
        To::SameDir("linked"),
        ChangeSyscall::Linkat,
        Some(AT_SYMLINK_FOLLOW),
    );
}

// The new name is relative to a descriptor of a directory outside the
// roots, closed (and the helper exited) when the agent resolves the
// record: the record still goes out, for the watched file the first path
// names, with the new name as the call gave it. (Before the fix, the whole
// record was dropped as unresolved.)
#[test]
fn linkat_265_to_a_directory_outside_the_roots() {
    let t = Tamper::run("linkat", To::Outside("linked"));
    let c = t.one(Action::Link);
    assert_eq!(
        (c.syscall, c.flags, c.result, sizes(&c)),
        (
            ChangeSyscall::Linkat,
            Some(AT_SYMLINK_FOLLOW),
            0,
            (Some(MIB), Some(MIB))
        )
    );
    assert_eq!(bytes_of(c.old_path.as_ref()), bytes(&t.file));
    // Its directory could not be named any more: the name as given.
    assert_eq!(bytes_of(c.new_path.as_ref()), Some(&b"linked"[..]));
    assert_eq!(identity(t.to()).1, t.ino, "the link is the watched inode");
}

// --- Unlinks. ---

fn assert_unlink(mode: &str, syscall: ChangeSyscall) {
    let t = Tamper::run(mode, To::None);
    let c = t.one(Action::Unlink);
    assert_eq!(
        (c.syscall, c.flags, c.result, sizes(&c)),
        (syscall, None, 0, (Some(MIB), None))
    );
    assert!(!t.file.exists());
}

#[test]
fn unlink_87() {
    assert_unlink("unlink", ChangeSyscall::Unlink);
}

#[test]
fn unlinkat_263() {
    assert_unlink("unlinkat", ChangeSyscall::Unlinkat);
}

// --- Modes. ---

fn assert_chmod(t: &Tamper, syscall: ChangeSyscall, fd: Option<i32>, flags: Option<u32>) {
    let c = t.one(Action::SetAttributes);
    assert_eq!(
        (c.syscall, c.fd, c.mode, c.flags, c.result, sizes(&c)),
        (syscall, fd, Some(0o600), flags, 0, (Some(MIB), Some(MIB)))
    );
}

#[test]
fn chmod_90() {
    let t = Tamper::run("chmod", To::None);
    assert_chmod(&t, ChangeSyscall::Chmod, None, None);
}

#[test]
fn fchmod_91() {
    let t = Tamper::run("fchmod", To::None);
    assert_chmod(&t, ChangeSyscall::Fchmod, Some(t.fd), None);
}

#[test]
fn fchmodat_268() {
    let t = Tamper::run("fchmodat", To::None);
    assert_chmod(&t, ChangeSyscall::Fchmodat, None, None);
}

#[test]
fn fchmodat2_452() {
    let Some(t) = Tamper::try_run("fchmodat2", To::None) else {
        tests::skip!(
            tests::feature::FCHMODAT2,
            "fchmodat2 is ENOSYS on this kernel (before 6.6)"
        );
    };
    assert_chmod(
        &t,
        ChangeSyscall::Fchmodat2,
        None,
        Some(AT_SYMLINK_NOFOLLOW),
    );
}

// --- Owners (1:1, as root; lchown leaves the group unchanged: -1). ---

fn assert_chown(t: &Tamper, syscall: ChangeSyscall, fd: Option<i32>, gid: u32, flags: Option<u32>) {
    let c = t.one(Action::SetAttributes);
    assert_eq!(
        (c.syscall, c.fd, c.uid, c.gid, c.flags, c.result, sizes(&c)),
        (
            syscall,
            fd,
            Some(1),
            Some(gid),
            flags,
            0,
            (Some(MIB), Some(MIB))
        )
    );
}

#[test]
fn chown_92() {
    let t = Tamper::run("chown", To::None);
    assert_chown(&t, ChangeSyscall::Chown, None, 1, None);
}

#[test]
fn fchown_93() {
    let t = Tamper::run("fchown", To::None);
    assert_chown(&t, ChangeSyscall::Fchown, Some(t.fd), 1, None);
}

#[test]
fn lchown_94() {
    let t = Tamper::run("lchown", To::None);
    assert_chown(&t, ChangeSyscall::Lchown, None, u32::MAX, None);
}

#[test]
fn fchownat_260() {
    // The flags ride in the record's second argument's upper half.
    let t = Tamper::run("fchownat", To::None);
    assert_chown(
        &t,
        ChangeSyscall::Fchownat,
        None,
        1,
        Some(AT_SYMLINK_NOFOLLOW),
    );
}

// --- Opens for writing (`write_open`) and with O_TRUNC (`truncate`): the
// flags as passed, read from each syscall's own argument. ---

fn assert_open(mode: &str, syscall: ChangeSyscall, flags: u32) {
    let t = Tamper::run(mode, To::None);
    let truncates = flags & O_TRUNC != 0;
    let action = if truncates {
        Action::Truncate
    } else {
        Action::WriteOpen
    };
    let c = t.one(action);
    let after = if truncates { 0 } else { MIB };
    assert_eq!(
        (c.syscall, c.fd, c.flags, c.result, sizes(&c)),
        (
            syscall,
            Some(t.fd),
            Some(flags),
            0,
            (Some(MIB), Some(after))
        )
    );
}

#[test]
fn open_2_write_open() {
    assert_open("open_write", ChangeSyscall::Open, O_WRONLY);
}

#[test]
fn open_2_o_trunc() {
    assert_open("open_trunc", ChangeSyscall::Open, O_WRONLY | O_TRUNC);
}

#[test]
fn openat_257_write_open() {
    assert_open("openat_write", ChangeSyscall::Openat, O_WRONLY);
}

#[test]
fn openat_257_o_trunc() {
    assert_open("openat_trunc", ChangeSyscall::Openat, O_WRONLY | O_TRUNC);
}

#[test]
fn openat2_437_write_open() {
    assert_open("openat2_write", ChangeSyscall::Openat2, O_WRONLY);
}

#[test]
fn openat2_437_o_trunc() {
    assert_open("openat2_trunc", ChangeSyscall::Openat2, O_WRONLY | O_TRUNC);
}

#[test]
fn creat_85_truncates() {
    assert_open(
        "creat_trunc",
        ChangeSyscall::Creat,
        O_CREAT | O_WRONLY | O_TRUNC,
    );
}

#[test]
fn open_by_handle_at_304_write_open() {
    assert_open(
        "open_by_handle_at_write",
        ChangeSyscall::OpenByHandleAt,
        O_WRONLY,
    );
}
