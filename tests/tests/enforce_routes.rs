//! Enforce mode on the routes no open shows: a descriptor passed over a
//! unix socket, inherited across exec, or opened before the agent started.
//! The kernel decides each read, map and in-kernel copy (io_uring reads and
//! splices included) from the policy's tables and kills a denied process
//! before it gets a byte: the taker reads into a shared mapping, so a byte
//! it received would be visible after its death. Controls: the same routes
//! to an allowed taker deliver the bytes, and audit mode lets the denied
//! taker read and records `would_deny`.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::Write,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
};

use sensor::{
    decide::policy::{Operation, PolicyAction},
    event::{Action, Event, PolicyInfo},
};
use tests::{SensorProcess, build_helper, verdict, write_file};

const SHM_LEN: usize = 4096;

/// A weight file, the routes helper as a denied taker, a copy of it as the
/// allowed giver, and a policy allowing only the giver.
struct Host {
    models: tempfile::TempDir,
    weights: PathBuf,
    bin: tempfile::TempDir,
    giver: PathBuf,
    taker: PathBuf,
    policy: PathBuf,
    /// The weight file's first page (read before the policy is in force).
    first_page: Vec<u8>,
    /// The file system the giver lives on, when not the test's.
    _giver_fs: Option<tests::LoopFs>,
}

impl Host {
    fn new(mode: &str) -> Self {
        Self::with_giver_on(mode, None)
    }

    /// The allowed giver on `giver_fs` (a btrfs, say) instead.
    fn with_giver_on(mode: &str, giver_fs: Option<tests::LoopFs>) -> Self {
        let models = tempfile::tempdir().unwrap();
        let weights = models.path().join("llama.safetensors");
        write_file(&weights, 3 * SHM_LEN);
        let bin = tempfile::tempdir().unwrap();
        let taker = build_helper(bin.path(), "routes");
        let giver = giver_fs
            .as_ref()
            .map_or(bin.path(), |fs| fs.dir.path())
            .join("giver");
        fs::copy(&taker, &giver).unwrap();
        fs::set_permissions(&giver, fs::Permissions::from_mode(0o755)).unwrap();
        let policy = bin.path().join("policy.toml");
        fs::write(
            &policy,
            tests::policy_allowing(mode, models.path(), "the giver", &giver, ""),
        )
        .unwrap();
        let first_page = fs::read(&weights).unwrap()[..SHM_LEN].to_vec();
        Self {
            models,
            weights,
            bin,
            giver,
            taker,
            policy,
            first_page,
            _giver_fs: giver_fs,
        }
    }

    fn start(&self) -> SensorProcess {
        SensorProcess::start(
            &[self.models.path()],
            &["--policy", self.policy.to_str().unwrap()],
        )
    }

    /// A zeroed file for the taker to write what it got into.
    fn shm(&self, name: &str) -> PathBuf {
        let path = self.bin.path().join(name);
        fs::write(&path, vec![0u8; SHM_LEN]).unwrap();
        path
    }

    /// Runs the giver; returns the taker's pid and fate ("exit 0",
    /// "signal 9").
    fn give(&self, args: &[&std::ffi::OsStr]) -> (u32, String) {
        let out = Command::new(&self.giver).args(args).output().unwrap();
        assert!(out.status.success(), "giver failed: {out:?}");
        tests::taker_fate(&String::from_utf8_lossy(&out.stdout))
    }

    /// Passes the weight file over a unix socket to `taker`.
    fn over_socket(&self, taker: &Path, shm: &Path) -> (u32, String) {
        self.give(&[
            "give-socket".as_ref(),
            self.weights.as_os_str(),
            taker.as_os_str(),
            shm.as_os_str(),
        ])
    }

    /// Leaves the weight file open across `taker`'s exec, which takes it
    /// by `route`.
    fn inherited(&self, taker: &Path, shm: &Path, route: &str) -> (u32, String) {
        self.give(&[
            "give-inherit".as_ref(),
            self.weights.as_os_str(),
            taker.as_os_str(),
            shm.as_os_str(),
            route.as_ref(),
        ])
    }
}

const ROUTES: [(&str, Operation); 5] = [
    ("read", Operation::Read),
    ("mmap", Operation::Mmap),
    ("sendfile", Operation::Read),
    ("splice", Operation::Read),
    ("copy_file_range", Operation::Read),
];

#[test]
fn a_denied_process_is_killed_before_any_byte_whatever_the_descriptor_route() {
    let host = Host::new("enforce");
    let sensor = host.start();
    let zero = vec![0u8; SHM_LEN];
    let mut killed = Vec::new();

    let shm = host.shm("socket.bin");
    let (pid, fate) = host.over_socket(&host.taker, &shm);
    assert_eq!(fate, "signal 9", "the denied taker of a passed descriptor");
    assert_eq!(fs::read(&shm).unwrap(), zero, "it received bytes");
    killed.push((pid, Operation::Read));
    // Control: the allowed binary, taking the same way, gets the bytes.
    let shm = host.shm("socket-allowed.bin");
    let (_, fate) = host.over_socket(&host.giver, &shm);
    assert_eq!(fate, "exit 0");
    assert_eq!(fs::read(&shm).unwrap(), host.first_page);

    for (route, operation) in ROUTES {
        let shm = host.shm(&format!("{route}.bin"));
        let (pid, fate) = host.inherited(&host.taker, &shm, route);
        assert_eq!(fate, "signal 9", "{route} of an inherited descriptor");
        assert_eq!(fs::read(&shm).unwrap(), zero, "{route}: bytes arrived");
        killed.push((pid, operation));
        let shm = host.shm(&format!("{route}-allowed.bin"));
        let (_, fate) = host.inherited(&host.giver, &shm, route);
        assert_eq!(fate, "exit 0", "{route} by the allowed binary");
        assert_eq!(fs::read(&shm).unwrap(), host.first_page, "{route}");
    }

    let last = killed.last().unwrap().0;
    sensor.wait_for_event("the last killed record", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.pid == last)
    });
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    for (pid, operation) in killed {
        let records: Vec<&Event> = events
            .iter()
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
            .filter(|e| e.action == Action::Killed)
            .collect();
        assert_eq!(records.len(), 1, "{pid}: {records:?}");
        let v = verdict(records[0]);
        assert_eq!(
            (v.verdict, v.operation, v.mechanism.as_str(), v.rule),
            (PolicyAction::Deny, operation, "bpf_send_signal", None),
            "{pid}"
        );
        assert_eq!(v.weight_set, "llama");
        let file = records[0].file.as_ref().unwrap();
        assert_eq!(
            (file.dev, file.ino),
            tests::identity(&host.weights),
            "{pid}"
        );
        // The killed read moved nothing: no read record of it.
        assert!(
            !events
                .iter()
                .any(|e| tests::is_by(e, Action::Read, pid) || tests::is_by(e, Action::Mmap, pid)),
            "{pid} has an access record"
        );
    }
    assert!(
        !events
            .iter()
            .any(|e| matches!(e.action, Action::WouldDeny | Action::WouldKill)),
        "enforce mode left would_* records"
    );
}

/// btrfs names files by a per-subvolume `st_dev`, not the superblock's
/// device the kernel sees: the policy's identity of an executable there
/// must still be the kernel's, or the allowed binary, exec'ed with a
/// descriptor it did not open, would be taken for an unknown one and
/// killed at its first read.
#[test]
fn an_allowed_executable_on_btrfs_is_recognised_at_exec() {
    let btrfs = tests::LoopFs::mount(&["mkfs.btrfs", "-q"], 128);
    let host = Host::with_giver_on("enforce", Some(btrfs));
    let sensor = host.start();
    let shm = host.shm("btrfs-allowed.bin");
    let (_, fate) = host.inherited(&host.giver, &shm, "read");
    assert_eq!(fate, "exit 0", "the allowed binary on btrfs");
    assert_eq!(fs::read(&shm).unwrap(), host.first_page);
    // Control: the denied binary, the same way, is killed.
    let shm = host.shm("btrfs-denied.bin");
    let (pid, fate) = host.inherited(&host.taker, &shm, "read");
    assert_eq!(fate, "signal 9");
    sensor.wait_for_event("the killed taker", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.pid == pid)
    });
    let (status, _) = sensor.stop_events();
    assert!(status.success());
}

/// The io_uring routes, stopped by the kill fallback at
/// `io_uring_file_get` where BPF LSM is absent (as on these hosts; where it
/// is, its `file_permission` hook denies them instead).
const URING_ROUTES: [&str; 2] = ["uring-read", "uring-splice"];

#[test]
fn io_uring_reads_and_splices_of_a_policy_file_get_a_denied_process_killed_before_any_byte() {
    let host = Host::new("enforce");
    let sensor = host.start();
    let zero = vec![0u8; SHM_LEN];
    let mut killed = Vec::new();
    for route in URING_ROUTES {
        let shm = host.shm(&format!("{route}.bin"));
        let (pid, fate) = host.inherited(&host.taker, &shm, route);
        assert_eq!(fate, "signal 9", "{route} of an inherited descriptor");
        assert_eq!(fs::read(&shm).unwrap(), zero, "{route}: bytes arrived");
        killed.push(pid);
        // Control: the allowed binary, the same way, gets the bytes.
        let shm = host.shm(&format!("{route}-allowed.bin"));
        let (_, fate) = host.inherited(&host.giver, &shm, route);
        assert_eq!(fate, "exit 0", "{route} by the allowed binary");
        assert_eq!(fs::read(&shm).unwrap(), host.first_page, "{route}");
    }
    let last = *killed.last().unwrap();
    sensor.wait_for_event("the last killed record", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.pid == last)
    });
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    assert_eq!(
        tests::io_uring_capture(&events),
        sensor::event::IoUringCapture::On
    );
    for pid in killed {
        let records = tests::of_pid(&events, Action::Killed, pid);
        assert_eq!(records.len(), 1, "{pid}: {records:?}");
        let v = verdict(records[0]);
        assert_eq!(
            (v.verdict, v.operation, v.mechanism.as_str()),
            (PolicyAction::Deny, Operation::Read, "bpf_send_signal"),
            "{pid}"
        );
        let file = records[0].file.as_ref().unwrap();
        assert_eq!((file.dev, file.ino), tests::identity(&host.weights));
        assert!(
            !events
                .iter()
                .any(|e| tests::is_by(e, Action::Read, pid) || tests::is_by(e, Action::Copy, pid)),
            "{pid} has an access record"
        );
    }
}

#[test]
fn a_descriptor_opened_before_the_agent_is_killed_at_its_next_read() {
    let host = Host::new("enforce");
    let shm = host.shm("early.bin");
    // Opened while no agent runs; read after a line on stdin.
    let code = "import mmap, os, sys\n\
                f = open(sys.argv[1], 'rb')\n\
                print('open', flush=True)\n\
                sys.stdin.readline()\n\
                out = os.open(sys.argv[2], os.O_RDWR)\n\
                m = mmap.mmap(out, 4096)\n\
                n = os.readv(f.fileno(), [m])\n\
                print('read', n, flush=True)\n";
    let mut reader = tests::python_command()
        .args(["-c", code])
        .arg(&host.weights)
        .arg(&shm)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = std::io::BufReader::new(reader.stdout.take().unwrap());
    let mut line = String::new();
    std::io::BufRead::read_line(&mut stdout, &mut line).unwrap();
    assert_eq!(line, "open\n");

    let sensor = host.start();
    reader.stdin.as_mut().unwrap().write_all(b"go\n").unwrap();
    let status = reader.wait().unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(9), "{status:?}");
    assert_eq!(fs::read(&shm).unwrap(), vec![0u8; SHM_LEN]);
    let pid = reader.id();
    let killed = sensor.wait_for_event("the killed record", tests::RECORD_TIMEOUT, |e| {
        e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.pid == pid)
    });
    let v = verdict(&killed);
    assert_eq!(
        (v.verdict, v.operation, v.unjudged),
        (PolicyAction::Deny, Operation::Read, false),
        "python was judged when the agent started"
    );
    let (status, _) = sensor.stop_events();
    assert!(status.success());
}

#[test]
fn audit_mode_lets_every_route_through_and_records_would_deny() {
    let host = Host::new("audit");
    let sensor = host.start();
    let shm = host.shm("socket.bin");
    let (socket_pid, fate) = host.over_socket(&host.taker, &shm);
    assert_eq!(fate, "exit 0");
    assert_eq!(fs::read(&shm).unwrap(), host.first_page);
    let shm = host.shm("mmap.bin");
    let (mmap_pid, fate) = host.inherited(&host.taker, &shm, "mmap");
    assert_eq!(fate, "exit 0");
    assert_eq!(fs::read(&shm).unwrap(), host.first_page);
    for (pid, operation) in [(socket_pid, Operation::Read), (mmap_pid, Operation::Mmap)] {
        let record = sensor.wait_for_event("would_deny", tests::RECORD_TIMEOUT, |e| {
            e.action == Action::WouldDeny && e.process.as_ref().is_some_and(|p| p.pid == pid)
        });
        let v = verdict(&record);
        assert_eq!(
            (v.verdict, v.operation, v.mechanism.as_str()),
            (PolicyAction::Deny, operation, "none")
        );
    }
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    assert!(!events.iter().any(|e| e.action == Action::Killed));
}

#[test]
fn policy_files_outside_the_watch_roots_are_watched_and_enforced() {
    let host = Host::new("enforce");
    // The weight file is named like no weight and lies outside the only
    // watch root: the policy alone brings it in.
    let secret = host.models.path().join("secret.bin");
    fs::rename(&host.weights, &secret).unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let host = Host {
        weights: secret,
        ..host
    };
    let sensor = SensorProcess::start(
        &[elsewhere.path()],
        &["--policy", host.policy.to_str().unwrap()],
    );
    let shm = host.shm("outside.bin");
    let (pid, fate) = host.over_socket(&host.taker, &shm);
    assert_eq!(fate, "signal 9");
    assert_eq!(fs::read(&shm).unwrap(), vec![0u8; SHM_LEN]);
    let shm = host.shm("outside-allowed.bin");
    let (allowed, fate) = host.over_socket(&host.giver, &shm);
    assert_eq!(fate, "exit 0");
    assert_eq!(fs::read(&shm).unwrap(), host.first_page);
    sensor.wait_for_event("the allowed read", tests::RECORD_TIMEOUT, |e| {
        tests::is_by(e, Action::Read, allowed)
    });
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    let killed = events
        .iter()
        .find(|e| e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.pid == pid))
        .unwrap_or_else(|| panic!("no killed record for {pid}"));
    assert_eq!(
        killed
            .file
            .as_ref()
            .and_then(|f| f.path.as_ref())
            .map(|p| p.as_bytes().to_vec()),
        Some(host.weights.as_os_str().as_encoded_bytes().to_vec())
    );
    let start = events[0].sensor.as_ref().unwrap();
    assert_eq!(start.counters["watch"]["policy_files"], 1, "{start:?}");
    let Some(PolicyInfo::Loaded(loaded)) = events
        .iter()
        .find(|e| e.action == Action::PolicyLoaded)
        .and_then(|e| e.policy.clone())
    else {
        panic!("no policy_loaded");
    };
    assert_eq!((loaded.files, loaded.files_unwatched), (1, 0));
}

#[test]
fn a_file_that_appears_in_a_policy_directory_is_judged_at_its_first_open() {
    let host = Host::new("enforce");
    let elsewhere = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(
        &[elsewhere.path()],
        &["--policy", host.policy.to_str().unwrap()],
    );
    // Made outside, renamed in (creating it inside would be a write the
    // policy refuses), then opened at once: no window.
    let staged = host.bin.path().join("shard-2.bin");
    write_file(&staged, SHM_LEN);
    let fresh = host.models.path().join("shard-2.bin");
    fs::rename(&staged, &fresh).unwrap();
    let cat = Command::new("cat").arg(&fresh).output().unwrap();
    assert!(!cat.status.success(), "{cat:?}");
    assert!(cat.stdout.is_empty());
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Operation not permitted"),
        "{cat:?}"
    );
    // The policy takes the file in (its tables, its watch) within a
    // second or two: a descriptor of it passed to a denied process is then
    // stopped in the kernel too.
    sensor.wait_policy_loads(2);
    let fresh_host = Host {
        weights: fresh.clone(),
        ..host
    };
    let shm = fresh_host.shm("fresh.bin");
    let (_, fate) = fresh_host.over_socket(&fresh_host.taker, &shm);
    assert_eq!(fate, "signal 9");
    assert_eq!(fs::read(&shm).unwrap(), vec![0u8; SHM_LEN]);
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    let denied = events
        .iter()
        .find(|e| e.action == Action::Denied)
        .expect("cat's denied open");
    assert_eq!(
        denied
            .file
            .as_ref()
            .and_then(|f| f.path.as_ref())
            .map(|p| p.as_bytes().to_vec()),
        Some(fresh.as_os_str().as_encoded_bytes().to_vec()),
        "the record names the new file"
    );
}
