//! Restarts without a gap (`kernel.pin_dir`, `kernel.handover`), with the
//! real programs on this kernel: an agent stopped with SIGTERM leaves its
//! programs attached and pinned; the next one adopts them and delivers
//! what they recorded meanwhile; the policy's kill fallback goes on
//! enforcing while no agent runs; a load of other settings is replaced
//! and its ring buffer drained; `weightwarden unload` detaches for good.

#![allow(clippy::unwrap_used)]

use std::{
    collections::BTreeMap,
    fs,
    os::unix::process::ExitStatusExt,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::Duration,
};

use nix::sys::signal::Signal;
use sensor::event::{Action, Event};
use tests::{SensorProcess, binary, identity, verdict, write_file};

/// A pin directory of this test's own, unloaded and removed at the end
/// however the test ends (pinned programs outlive every process).
struct Pins(PathBuf);

impl Pins {
    fn new(name: &str) -> Self {
        let dir = PathBuf::from(format!("/sys/fs/bpf/ww-test-{}-{name}", std::process::id()));
        let pins = Self(dir);
        pins.unload();
        pins
    }

    /// Pinned in this directory; detections unlimited (the readers are
    /// many unexpected ones).
    fn config(&self, handover: bool) -> String {
        format!(
            "[kernel]\npin_dir = \"{}\"\nhandover = {handover}\n\n[detect]\nmax_per_minute = 1000000\n",
            self.0.display()
        )
    }

    fn links(&self) -> Vec<String> {
        fs::read_dir(self.0.join("links"))
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    fn maps(&self) -> usize {
        fs::read_dir(self.0.join("maps")).map_or(0, |d| d.count())
    }

    /// `doctor`'s report on this directory.
    fn doctor(&self) -> String {
        let out = Command::new(binary())
            .args(["doctor", "--json", "--pin-dir"])
            .arg(&self.0)
            .output()
            .unwrap();
        let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        tests::doctor_check(&report, "pinned programs")["detail"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    fn unload(&self) -> std::process::Output {
        Command::new(binary())
            .args(["unload", "--pin-dir"])
            .arg(&self.0)
            .output()
            .unwrap()
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.unload();
        for sub in ["links", "maps", "links-next", "maps-next", ""] {
            let _ = fs::remove_dir(self.0.join(sub));
        }
    }
}

/// `n` `cat`s of `file` one after another, `pause` apart, in the
/// background.
fn readers(file: &Path, n: usize, pause: &str) -> std::process::Child {
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "i=0; while [ $i -lt {n} ]; do cat \"$1\" > /dev/null; sleep {pause}; i=$((i + 1)); done"
        ))
        .arg("sh")
        .arg(file)
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

/// The pids with an `open` record of `file` by `cat`, and how many each.
fn cat_opens<'a>(file: &Path, events: impl IntoIterator<Item = &'a Event>) -> BTreeMap<u32, usize> {
    let (dev, ino) = identity(file);
    let mut opens = BTreeMap::new();
    for e in events {
        let by_cat = e.process.as_ref().is_some_and(|p| p.comm == "cat");
        let of_file = e
            .file
            .as_ref()
            .is_some_and(|f| (f.dev, f.ino) == (dev, ino));
        if e.action == Action::Open && by_cat && of_file {
            *opens.entry(e.process.as_ref().unwrap().pid).or_default() += 1;
        }
    }
    opens
}

fn started(sensor: &SensorProcess) -> Event {
    sensor
        .events()
        .into_iter()
        .find(|e| e.action == Action::SensorStart)
        .unwrap()
}

#[test]
fn a_restart_under_load_adopts_the_pinned_programs_and_loses_no_record() {
    let pins = Pins::new("adopt");
    let models = tempfile::tempdir().unwrap();
    let file = models.path().join("llama.safetensors");
    write_file(&file, 256 * 1024);
    let mut a = SensorProcess::start_with_config(&[models.path()], &[], &pins.config(true));
    a.expect_handover();
    let tier_links = pins.links().len();
    assert!(tier_links >= 5, "A pinned {:?}", pins.links());

    const N: usize = 400;
    let mut load = readers(&file, N, "0.005");
    std::thread::sleep(Duration::from_millis(400));
    let (status, a_events) = a.stop_events();
    assert!(status.success());
    // A is gone; its programs are not.
    assert_eq!(pins.links().len(), tier_links, "{:?}", pins.links());
    let b = SensorProcess::start_with_config(&[models.path()], &[], &pins.config(true));
    assert!(load.wait().unwrap().success());
    let b_start = started(&b);
    assert_eq!(
        tests::sensor_counter(&b_start, "agent", "handover_adopted"),
        1
    );
    // The same hooks, not attached again.
    assert_eq!(
        b_start.sensor.as_ref().unwrap().hooks_attached,
        tier_links as u64
    );
    b.wait_for("the last reader's exit", Duration::from_secs(20), |r| {
        r["action"] == "exit" && r["process"]["comm"] == "sh"
    });
    let b_events = b.events();
    let (status, _) = b.stop_with(Signal::SIGINT);
    assert!(status.success());
    let a_stop = a_events.last().unwrap();
    assert_eq!(a_stop.action, Action::SensorStop);
    assert_eq!(
        tests::sensor_counter(a_stop, "agent", "handover_left_attached"),
        1
    );
    let opens = cat_opens(&file, a_events.iter().chain(&b_events));
    let twice: Vec<_> = opens.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "recorded twice: {twice:?}");
    assert_eq!(
        opens.len(),
        N,
        "A recorded {}, B {}",
        cat_opens(&file, &a_events).len(),
        cat_opens(&file, &b_events).len()
    );
    assert!(
        !cat_opens(&file, &b_events).is_empty() && !cat_opens(&file, &a_events).is_empty(),
        "the load did not run across the restart"
    );
    // SIGINT is a stop for good: nothing left pinned.
    assert!(pins.links().is_empty(), "{:?}", pins.links());
    assert_eq!(pins.maps(), 0);
}

#[test]
fn the_kill_fallback_enforces_while_no_agent_runs_and_the_next_agent_records_it() {
    let pins = Pins::new("enforce");
    let models = tempfile::tempdir().unwrap();
    let file = models.path().join("llama.safetensors");
    write_file(&file, 64 * 1024);
    let bin = tempfile::tempdir().unwrap();
    let doomed = bin.path().join("doomed");
    fs::copy("/usr/bin/cat", &doomed).unwrap();
    let policy = bin.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"allow\"\n\n\
             [[rules]]\nname = \"never this one\"\nweights = [\"llama\"]\nexe = [\"{}\"]\n\
             action = \"deny\"\n",
            models.path().display(),
            doomed.display()
        ),
    )
    .unwrap();
    let policy_arg = policy.to_str().unwrap();
    let mut a = SensorProcess::start_with_config(
        &[models.path()],
        &["--policy", policy_arg],
        &pins.config(true),
    );
    a.expect_handover();
    a.stop();
    // No agent runs: no fanotify group answers the open, but the kernel
    // tables and the pinned programs kill the reader before a byte.
    let out = Command::new(&doomed).arg(&file).output().unwrap();
    assert_eq!(out.status.signal(), Some(9), "{out:?}");
    assert!(out.stdout.is_empty(), "{} bytes escaped", out.stdout.len());
    let b = SensorProcess::start_with_config(
        &[models.path()],
        &["--policy", policy_arg],
        &pins.config(false),
    );
    let killed = b.wait_for_event(
        "the kill made while no agent ran",
        Duration::from_secs(10),
        |e| e.action == Action::Killed && e.process.as_ref().is_some_and(|p| p.comm == "doomed"),
    );
    let v = verdict(&killed);
    assert_eq!(
        (v.mechanism.as_str(), v.rule_name.as_deref()),
        ("bpf_send_signal", Some("never this one"))
    );
    // B ran without handover: its SIGTERM detaches everything.
    b.stop();
    assert!(pins.links().is_empty(), "{:?}", pins.links());
}

#[test]
fn a_load_of_other_settings_is_replaced_and_its_ring_buffer_drained() {
    let pins = Pins::new("replace");
    let models = tempfile::tempdir().unwrap();
    let file = models.path().join("llama.safetensors");
    write_file(&file, 64 * 1024);
    let mut a = SensorProcess::start_with_config(&[models.path()], &[], &pins.config(true));
    a.expect_handover();
    a.stop();
    // While no agent runs: recorded into A's ring buffer.
    const N: usize = 20;
    let mut gap = readers(&file, N, "0");
    assert!(gap.wait().unwrap().success());
    let b = SensorProcess::start_with_config(
        &[models.path()],
        &["--ring-buffer-bytes", "16777216"],
        &pins.config(false),
    );
    let start = started(&b);
    assert_eq!(
        tests::sensor_counter(&start, "agent", "handover_adopted"),
        0
    );
    assert!(
        b.log()
            .contains("of another build or other kernel settings"),
        "{}",
        b.log()
    );
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while cat_opens(&file, &b.events()).len() < N {
        assert!(
            std::time::Instant::now() < deadline,
            "B delivered {} of the {N} opens made while no agent ran",
            cat_opens(&file, &b.events()).len()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, events) = b.stop_events();
    assert!(status.success());
    let stop = events.last().unwrap();
    assert_eq!(tests::sensor_counter(stop, "agent", "handover_replaced"), 1);
    assert_eq!(
        tests::sensor_counter(stop, "agent", "handover_aggregates_unreported"),
        0
    );
    assert!(pins.links().is_empty(), "{:?}", pins.links());
}

#[test]
fn a_pin_directory_in_use_is_refused_and_unload_detaches_a_handover() {
    let pins = Pins::new("busy");
    let models = tempfile::tempdir().unwrap();
    write_file(&models.path().join("llama.safetensors"), 4096);
    let mut a = SensorProcess::start_with_config(&[models.path()], &[], &pins.config(true));
    a.expect_handover();
    let config = a.dir.path().join("second.toml");
    fs::write(&config, pins.config(false)).unwrap();
    let second = Command::new(binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args([
            "--allow-second-agent",
            "--metrics",
            "none",
            "--store",
            "none",
        ])
        .arg("--watch")
        .arg(models.path())
        .arg("--state-dir")
        .arg(a.dir.path().join("second-state"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("belong to a running agent") && stderr.contains("pid"),
        "{stderr}"
    );
    let refused = pins.unload();
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let pid = a.events()[0].sensor.as_ref().unwrap().pid;
    assert!(
        pins.doctor().contains(&format!(
            "pinned in {} by the running agent (pid {pid})",
            pins.0.display()
        )),
        "{}",
        pins.doctor()
    );
    a.stop();
    let links = pins.links().len();
    assert!(links >= 5);
    let doctor = pins.doctor();
    assert!(
        doctor.contains(&format!("{links} program links left attached"))
            && doctor.contains(&format!("stopped agent (pid {pid})")),
        "{doctor}"
    );
    let out = pins.unload();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(
        stdout.contains(&format!("detached {links} program link(s)")),
        "{stdout}"
    );
    assert!(pins.links().is_empty());
    assert_eq!(pins.maps(), 0);
    assert!(
        pins.doctor().starts_with("nothing attached"),
        "{}",
        pins.doctor()
    );
}

/// Receives datagrams on `socket` until one starts with `prefix`; returns
/// its text and the descriptors it carried.
fn receive(
    socket: &std::os::unix::net::UnixDatagram,
    prefix: &str,
) -> (String, Vec<std::os::fd::OwnedFd>) {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, UnixAddr, recvmsg};
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
    loop {
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let msg = recvmsg::<UnixAddr>(
            socket.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::empty(),
        )
        .expect("no message from the agent within the socket's timeout");
        let fds: Vec<OwnedFd> = msg
            .cmsgs()
            .unwrap()
            .filter_map(|c| match c {
                ControlMessageOwned::ScmRights(fds) => Some(fds),
                _ => None,
            })
            .flatten()
            // SAFETY: received just now: this test owns them.
            .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) })
            .collect();
        let n = msg.bytes;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        if text.starts_with(prefix) {
            return (text, fds);
        }
    }
}

#[test]
fn under_a_service_manager_opens_wait_for_the_next_agent_instead_of_going_through() {
    use std::os::{fd::AsRawFd, unix::process::CommandExt};
    let pins = Pins::new("fdstore");
    let models = tempfile::tempdir().unwrap();
    let file = models.path().join("llama.safetensors");
    write_file(&file, 64 * 1024);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n",
            models.path().display()
        ),
    )
    .unwrap();
    // This test is the service manager: the notify socket and the store.
    let socket_path = dir.path().join("notify");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let notify = socket_path.to_str().unwrap();
    let policy_arg = policy.to_str().unwrap();
    let mut a = SensorProcess::start_with(
        &[models.path()],
        &["--policy", policy_arg],
        &pins.config(true),
        &[("NOTIFY_SOCKET", notify)],
    );
    a.expect_handover();
    a.stop();
    let (_, mut stored) = receive(&socket, "FDSTORE=1\nFDNAME=fanotify");
    assert_eq!(stored.len(), 1);
    let group = stored.remove(0);

    // No agent runs: the open is held in the stored group.
    let mut held = Command::new("cat")
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    assert!(
        held.try_wait().unwrap().is_none(),
        "the open went through while no agent ran"
    );

    // The next agent, given the group as systemd passes it.
    let config = dir.path().join("b.toml");
    fs::write(&config, pins.config(false)).unwrap();
    let out = dir.path().join("b.jsonl");
    let raw = group.as_raw_fd();
    let mut command = Command::new("sh");
    command
        .args(["-c", "LISTEN_PID=$$ exec \"$0\" \"$@\""])
        .arg(binary())
        .arg("run")
        .arg("--config")
        .arg(&config)
        .args(["--policy", policy_arg, "--allow-second-agent"])
        .args([
            "--metrics",
            "none",
            "--store",
            "none",
            "--state-dir",
            "none",
        ])
        .arg("--watch")
        .arg(models.path())
        .arg("--output")
        .arg(format!("jsonl:{}", out.display()))
        .env("LISTEN_FDS", "1")
        .env("LISTEN_FDNAMES", "fanotify")
        .env("NOTIFY_SOCKET", notify)
        .stdin(Stdio::null())
        .stderr(Stdio::piped());
    // SAFETY: dup2 is async-signal-safe; the descriptor is open.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut b = command.spawn().unwrap();
    drop(group);
    tests::wait_live(&mut b, &out);
    let (removed, _) = receive(&socket, "FDSTOREREMOVE=1");
    assert_eq!(removed, "FDSTOREREMOVE=1\nFDNAME=fanotify");

    // Answered by B: refused with EPERM, not killed, no byte read.
    let cat = held.wait_with_output().unwrap();
    assert_eq!(cat.status.code(), Some(1), "{cat:?}");
    assert!(
        String::from_utf8_lossy(&cat.stderr).contains("Operation not permitted"),
        "{cat:?}"
    );
    assert!(cat.stdout.is_empty());
    let done = tests::stop_agent(b);
    let log = String::from_utf8_lossy(&done.stderr);
    assert!(done.status.success(), "{log}");
    assert!(
        log.contains("took over the previous agent's fanotify group"),
        "{log}"
    );
    assert!(!log.contains(" WARN ") && !log.contains(" ERROR "), "{log}");
    let records = fs::read_to_string(&out).unwrap();
    let denied = records
        .lines()
        .filter(|l| l.contains("\"action\":\"denied\"") && l.contains("\"comm\":\"cat\""))
        .count();
    assert_eq!(denied, 1, "{records}");
    assert!(pins.links().is_empty(), "{:?}", pins.links());
}
