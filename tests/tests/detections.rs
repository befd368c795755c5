//! Named detections from real processes: each detection's id, process,
//! file, bytes and the records it cites, with the benign workloads (a
//! serving process loading its model by mmap and by read, a trusted backup
//! job, a directory listing) raising none.

#![allow(clippy::unwrap_used)]

use std::{
    collections::HashSet,
    path::Path,
    process::{Command, Stdio},
};

use sensor::event::{Action, DetectionId, Event, RecordId, Severity};
use tests::{SensorProcess, python_command, run, write_file};

const SIZE: usize = 1 << 20;

/// The detections of `pid`, by id.
fn detections(events: &[Event], pid: u32) -> Vec<&Event> {
    tests::of_pid(events, Action::Detection, pid)
}

fn ids(events: &[Event], pid: u32) -> HashSet<DetectionId> {
    detections(events, pid)
        .iter()
        .map(|e| e.detection.as_ref().unwrap().id)
        .collect()
}

/// The one detection `id` of `pid`.
fn the(events: &[Event], pid: u32, id: DetectionId) -> &Event {
    let found: Vec<_> = detections(events, pid)
        .into_iter()
        .filter(|e| e.detection.as_ref().unwrap().id == id)
        .collect();
    assert_eq!(found.len(), 1, "{pid} {id}: {found:#?}");
    found[0]
}

/// The one `egress` of `pid` that carried bytes, checking that a connect
/// made after the process took weights (no byte yet) was one too, to the
/// same peer.
fn egress_with_bytes(events: &[Event], pid: u32) -> &Event {
    let all: Vec<&Event> = detections(events, pid)
        .into_iter()
        .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::Egress)
        .collect();
    let (connects, sends): (Vec<&Event>, Vec<&Event>) = all
        .iter()
        .partition(|e| e.detection.as_ref().unwrap().bytes == Some(0));
    assert_eq!(sends.len(), 1, "{all:#?}");
    assert!(connects.len() <= 1, "{all:#?}");
    for connect in connects {
        assert_eq!(
            connect.detection.as_ref().unwrap().matched,
            sends[0].detection.as_ref().unwrap().matched
        );
    }
    sends[0]
}

/// Every record's id, which must be unique and in sequence.
fn by_id(events: &[Event]) -> std::collections::HashMap<RecordId, &Event> {
    let ids: Vec<RecordId> = events
        .iter()
        .map(|e| e.id.expect("every record has an id"))
        .collect();
    let run = ids[0].run;
    for (i, id) in ids.iter().enumerate() {
        assert_eq!((id.run, id.seq), (run, i as u64 + 1), "ids in sequence");
    }
    events.iter().map(|e| (e.id.unwrap(), e)).collect()
}

/// The actions of the records a detection cites.
fn cited(events: &[Event], detection: &Event) -> Vec<Action> {
    let index = by_id(events);
    detection
        .detection
        .as_ref()
        .unwrap()
        .refs
        .iter()
        .map(|r| {
            let e = index[r];
            assert_eq!(
                e.process.as_ref().unwrap().pid,
                detection.process.as_ref().unwrap().pid,
                "a cited record is by the same process"
            );
            assert!(
                e.id.unwrap().seq < detection.id.unwrap().seq,
                "cited records come before the detection"
            );
            e.action
        })
        .collect()
}

#[test]
fn a_full_read_by_an_unexpected_process_is_bulk_read_and_unexpected_reader() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, SIZE);
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let cat = run(Command::new("cat").arg(&weights));
    // The control: the first 100 bytes are no bulk read.
    let head = run(Command::new("head").arg("-c").arg("100").arg(&weights));
    // A listing opens no weight file.
    let ls = run(Command::new("ls").arg("-lR").arg(root.path()));
    let du = run(Command::new("du").arg("-a").arg(root.path()));
    for pid in [cat, head] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();

    let bulk = the(&events, cat, DetectionId::BulkRead);
    let d = bulk.detection.as_ref().unwrap();
    assert_eq!(bulk.severity, Severity::High);
    assert_eq!(d.share, Some(1.0));
    assert_eq!(d.bytes, Some(SIZE as u64));
    assert_eq!(tests::path(bulk), weights);
    assert!(d.summary.contains("cat (pid"), "{}", d.summary);
    assert_eq!(cited(&events, bulk).last(), Some(&Action::Read));
    let unexpected = the(&events, cat, DetectionId::UnexpectedReader);
    assert_eq!(unexpected.severity, Severity::Low);
    assert_eq!(cited(&events, unexpected), vec![Action::Open]);
    assert_eq!(
        ids(&events, cat).len(),
        2,
        "{:#?}",
        detections(&events, cat)
    );

    assert_eq!(
        ids(&events, head),
        HashSet::from([DetectionId::UnexpectedReader])
    );
    assert!(ids(&events, ls).is_empty() && ids(&events, du).is_empty());
}

#[test]
fn copies_transfer_tools_and_egress_are_named() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("mistral.gguf");
    write_file(&weights, SIZE);
    let out = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);

    let cp = run(Command::new("cp")
        .arg(&weights)
        .arg(out.path().join("stolen.gguf")));
    let tar = run(Command::new("tar")
        .arg("cf")
        .arg(out.path().join("m.tar"))
        .arg("-C")
        .arg(root.path())
        .arg("mistral.gguf"));
    let zip = run(Command::new("zip")
        .arg("-q")
        .arg(out.path().join("m.zip"))
        .arg(&weights));
    let zstd = run(Command::new("zstd")
        .arg("-q")
        .arg(&weights)
        .arg("-o")
        .arg(out.path().join("m.zst")));
    // A Python sender: sendfile to a TCP peer on loopback.
    let sender = run(python_command()
        .arg("-c")
        .arg(
            "import os, socket, sys, threading\n\
         srv = socket.create_server(('127.0.0.1', 0))\n\
         port = srv.getsockname()[1]\n\
         got = []\n\
         def sink():\n\
         \x20   c, _ = srv.accept()\n\
         \x20   while (b := c.recv(1 << 16)): got.append(len(b))\n\
         t = threading.Thread(target=sink); t.start()\n\
         s = socket.create_connection(('127.0.0.1', port))\n\
         f = open(sys.argv[1], 'rb')\n\
         n = os.sendfile(s.fileno(), f.fileno(), 0, 1 << 20)\n\
         s.close(); t.join()\n\
         assert sum(got) == n == 1 << 20, (sum(got), n)\n\
         print(port)\n",
        )
        .arg(&weights));
    for pid in [cp, tar, zip, zstd, sender] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();

    let copy = the(&events, cp, DetectionId::Copy);
    let d = copy.detection.as_ref().unwrap();
    assert_eq!(d.matched.as_deref(), Some("copy_file_range"));
    // The destination by identity (its path only while cp still ran when
    // the agent looked).
    let (_, stolen_ino) = tests::identity(&out.path().join("stolen.gguf"));
    match &tests::access(copy).detail {
        sensor::event::AccessDetail::Copy(c) => assert_eq!(c.destination.ino, stolen_ino),
        other => panic!("{other:?}"),
    }
    assert!(
        d.summary.contains("stolen.gguf") || d.summary.contains(&format!("inode {stolen_ino}")),
        "{}",
        d.summary
    );
    assert!(d.bytes.unwrap() > 0 && d.bytes.unwrap() <= SIZE as u64);
    assert_eq!(cited(&events, copy).last(), Some(&Action::Copy));
    assert!(ids(&events, cp).contains(&DetectionId::BulkRead));
    assert!(
        !ids(&events, cp).contains(&DetectionId::TransferTool),
        "cp is a copy, not a transfer tool"
    );

    let tool = the(&events, tar, DetectionId::TransferTool);
    assert_eq!(
        tool.detection.as_ref().unwrap().matched.as_deref(),
        Some("tar")
    );
    assert_eq!(tests::path(tool), weights);
    assert!(ids(&events, tar).contains(&DetectionId::BulkRead));
    // Archivers and compressors by name, each having read the whole file.
    for (pid, name) in [(zip, "zip"), (zstd, "zstd")] {
        let tool = the(&events, pid, DetectionId::TransferTool);
        assert_eq!(
            tool.detection.as_ref().unwrap().matched.as_deref(),
            Some(name)
        );
        assert_eq!(tests::path(tool), weights, "{name}");
        let bulk = the(&events, pid, DetectionId::BulkRead);
        assert_eq!(
            bulk.detection.as_ref().unwrap().bytes,
            Some(SIZE as u64),
            "{name}"
        );
    }

    let egress = egress_with_bytes(&events, sender);
    let d = egress.detection.as_ref().unwrap();
    assert_eq!(egress.severity, Severity::Critical);
    assert!(
        d.matched.as_deref().unwrap().starts_with("127.0.0.1:"),
        "{d:?}"
    );
    assert_eq!(d.bytes, Some(SIZE as u64));
    assert!(ids(&events, sender).contains(&DetectionId::Copy));
}

#[test]
fn a_serving_process_loading_its_model_raises_nothing_and_its_shell_does() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("nemotron.safetensors");
    write_file(&weights, SIZE);
    let dev_dir = tempfile::tempdir().unwrap();
    let gpu = dev_dir.path().join("nvidia0");
    std::fs::write(&gpu, b"").unwrap();
    let pattern = format!("{}/nvidia*", dev_dir.path().display());
    let sensor = SensorProcess::start(&[root.path()], &["--gpu-device", &pattern]);

    // The server opens the GPU, maps the whole model and reads it, then
    // runs a Python child (a tool call gone wrong) that reads the weights.
    let server = run(python_command()
        .arg("-c")
        .arg(
            "import mmap, subprocess, sys\n\
             gpu = open(sys.argv[2], 'rb')\n\
             with open(sys.argv[1], 'rb') as f:\n\
             \x20   m = mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ)\n\
             \x20   assert len(m[:]) == 1 << 20\n\
             with open(sys.argv[1], 'rb') as f: f.read()\n\
             subprocess.run([sys.executable, '-c', 'open(__import__(\"sys\").argv[1], \"rb\").read()', sys.argv[1]], check=True)\n",
        )
        .arg(&weights)
        .arg(&gpu));
    sensor.wait_exit(server);
    let (_, events) = sensor.stop_events();

    assert!(
        ids(&events, server).is_empty(),
        "the server's own load: {:#?}",
        detections(&events, server)
    );
    assert_eq!(
        tests::of_pid(&events, Action::Mmap, server).len(),
        1,
        "the control: its map was seen"
    );
    let child = events
        .iter()
        .find(|e| e.action == Action::Read && e.process.as_ref().is_some_and(|p| p.ppid == server))
        .map(|e| e.process.as_ref().unwrap().pid)
        .expect("the child's read");
    let shell = the(&events, child, DetectionId::ServingShell);
    let d = shell.detection.as_ref().unwrap();
    assert_eq!(d.matched.as_deref(), Some("python"));
    assert!(
        d.summary.contains(&format!("(pid {server})")),
        "{}",
        d.summary
    );
}

#[test]
fn a_trusted_backup_job_raises_nothing() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("deepseek.safetensors");
    write_file(&weights, SIZE);
    // The backup job's executable: a copy of tac, trusted by identity.
    let bin = tempfile::tempdir().unwrap();
    let backup = bin.path().join("backup-models");
    std::fs::copy("/usr/bin/tac", &backup).unwrap();
    let config = format!("[detect]\ntrusted_exes = [\"{}\"]\n", backup.display());
    let sensor = SensorProcess::start_with_config(&[root.path()], &[], &config);

    let job = run(Command::new(&backup).arg(&weights).stdout(Stdio::null()));
    let cat = run(Command::new("cat").arg(&weights));
    for pid in [job, cat] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    assert!(
        !tests::of_pid(&events, Action::Read, job).is_empty(),
        "the job's reads were seen"
    );
    assert!(
        ids(&events, job).is_empty(),
        "{:#?}",
        detections(&events, job)
    );
    assert!(
        ids(&events, cat).contains(&DetectionId::BulkRead),
        "the control"
    );
}

#[test]
fn detections_can_be_turned_off_and_bad_settings_are_refused() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("phi.gguf");
    write_file(&weights, SIZE);
    let sensor = SensorProcess::start_with_config(
        &[root.path()],
        &[],
        "[detect]\ndisabled = [\"unexpected_reader\"]\nbulk_read_share = 0.25\n",
    );
    // A quarter of the file is a bulk read at this threshold.
    let dd = run(Command::new("dd")
        .arg(format!("if={}", weights.display()))
        .arg("of=/dev/null")
        .arg("bs=262144")
        .arg("count=1")
        .stderr(Stdio::null()));
    sensor.wait_exit(dd);
    let (_, events) = sensor.stop_events();
    assert_eq!(ids(&events, dd), HashSet::from([DetectionId::BulkRead]));
    assert_eq!(
        the(&events, dd, DetectionId::BulkRead)
            .detection
            .as_ref()
            .unwrap()
            .share,
        Some(0.25)
    );

    for (config, named) in [
        (
            "[detect]\nbulk_read_share = 1.5\n",
            "detect.bulk_read_share",
        ),
        ("[detect]\ndisabled = [\"bulk_reed\"]\n", "bulk_reed"),
        (
            "[detect]\negress_allowed = [\"10.0.0.0/33\"]\n",
            "egress_allowed",
        ),
        (
            "[detect]\ntrusted_exes = [\"backup\"]\n",
            "detect.trusted_exes",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("weightwarden.toml");
        std::fs::write(&file, config).unwrap();
        let out = tests::output_within(
            Command::new(tests::binary())
                .arg("run")
                .arg("--config")
                .arg(&file)
                .arg("--watch")
                .arg(root.path()),
            std::time::Duration::from_secs(20),
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}: {stderr}");
        assert!(stderr.contains(named), "{config}: {stderr}");
    }
    assert!(Path::new(&weights).exists());
}

/// A loopback TCP listener in a thread that counts what it receives.
fn listener() -> (u16, std::thread::JoinHandle<u64>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut sink = Vec::new();
        std::io::Read::read_to_end(&mut conn, &mut sink).unwrap();
        sink.len() as u64
    });
    (port, handle)
}

#[test]
fn copies_and_uploads_through_user_space_are_copy_and_egress() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("qwen.safetensors");
    write_file(&weights, SIZE);
    let out = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &[]);

    // dd: read(2) then write(2) to another file.
    let dd = run(Command::new("dd")
        .arg(format!("if={}", weights.display()))
        .arg(format!("of={}", out.path().join("dd.bin").display()))
        .arg("bs=65536")
        .stderr(Stdio::null()));
    // Python: read the file, then send it over TCP.
    let (port, received) = listener();
    let sender = run(python_command()
        .arg("-c")
        .arg(
            "import socket, sys\n\
             data = open(sys.argv[1], 'rb').read()\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[2])))\n\
             s.sendall(data)\n\
             s.close()\n",
        )
        .arg(&weights)
        .arg(port.to_string()));
    assert_eq!(received.join().unwrap(), SIZE as u64);
    // A child of a reader: the parent reads, the child connects and sends.
    let (child_port, child_received) = listener();
    let parent = run(python_command()
        .arg("-c")
        .arg(
            "import subprocess, sys\n\
             open(sys.argv[1], 'rb').read()\n\
             subprocess.run([sys.executable, '-c', \
             'import socket, sys; s = socket.create_connection((\"127.0.0.1\", int(sys.argv[1]))); \
             s.sendall(b\"x\" * 100); s.close()', sys.argv[2]], check=True)\n",
        )
        .arg(&weights)
        .arg(child_port.to_string()));
    assert_eq!(child_received.join().unwrap(), 100);
    // The control: the same send by a process that read no weights.
    let (quiet_port, quiet_received) = listener();
    let quiet = run(python_command()
        .arg("-c")
        .arg(
            "import socket, sys\n\
             s = socket.create_connection(('127.0.0.1', int(sys.argv[1])))\n\
             s.sendall(b'y' * 1048576)\n\
             s.close()\n",
        )
        .arg(quiet_port.to_string()));
    assert_eq!(quiet_received.join().unwrap(), SIZE as u64);
    for pid in [dd, sender, parent, quiet] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();

    let copy = the(&events, dd, DetectionId::Copy);
    let d = copy.detection.as_ref().unwrap();
    assert_eq!(d.matched.as_deref(), Some("write"));
    assert_eq!(d.bytes, Some(SIZE as u64));
    assert_eq!(d.share, Some(1.0));
    assert_eq!(tests::path(copy), weights, "the source is named");
    let cites = cited(&events, copy);
    assert!(
        cites.contains(&Action::Read) && cites.last() == Some(&Action::Send),
        "{cites:?}"
    );

    let egress = egress_with_bytes(&events, sender);
    let d = egress.detection.as_ref().unwrap();
    assert_eq!(egress.severity, Severity::Critical);
    assert_eq!(
        d.matched.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(d.bytes, Some(SIZE as u64));
    assert_eq!(tests::path(egress), weights);
    assert!(ids(&events, sender).contains(&DetectionId::Copy));
    // It read the weights before connecting: the connect was named first.
    let egresses = detections(&events, sender)
        .iter()
        .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::Egress)
        .count();
    assert_eq!(egresses, 2);

    let child = events
        .iter()
        .find(|e| e.action == Action::Send && e.process.as_ref().is_some_and(|p| p.ppid == parent))
        .map(|e| e.process.as_ref().unwrap().pid)
        .expect("the child's send");
    let egress = egress_with_bytes(&events, child);
    assert_eq!(
        egress.detection.as_ref().unwrap().matched.as_deref(),
        Some(format!("127.0.0.1:{child_port}").as_str())
    );
    assert_eq!(tests::path(egress), weights, "the parent's weights");

    assert!(
        tests::of_pid(&events, Action::Send, quiet).is_empty() && ids(&events, quiet).is_empty(),
        "a process that took no weights is not followed"
    );
}

#[test]
fn curl_uploading_weights_is_a_transfer_tool_and_egress() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("gemma.gguf");
    write_file(&weights, SIZE);
    // A loopback HTTP server that takes a PUT.
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        // Headers, then the body up to Content-Length.
        loop {
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
            assert!(n > 0, "curl hung up early");
            got.extend_from_slice(&buf[..n]);
            if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n")
                && got.len() - end - 4 >= SIZE
            {
                break;
            }
        }
        std::io::Write::write_all(
            &mut conn,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
    });
    let sensor = SensorProcess::start(&[root.path()], &[]);
    let curl = run(Command::new("curl")
        .arg("-sS")
        .arg("-T")
        .arg(&weights)
        .arg(format!("http://127.0.0.1:{port}/upload")));
    handle.join().unwrap();
    sensor.wait_exit(curl);
    let (_, events) = sensor.stop_events();
    let found = ids(&events, curl);
    assert!(found.contains(&DetectionId::TransferTool), "{found:?}");
    let egress = egress_with_bytes(&events, curl);
    let d = egress.detection.as_ref().unwrap();
    assert_eq!(
        d.matched.as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    // The first send's total: the request's headers, or more.
    assert!(d.bytes.unwrap() > 0, "{d:?}");
    assert_eq!(tests::path(egress), weights);
}

#[test]
fn tampering_is_named_unless_a_policy_rule_allows_the_writer() {
    let root = tempfile::tempdir().unwrap();
    let [truncated, replaced, removed, chmodded, deployed] = [
        "truncated.safetensors",
        "replaced.gguf",
        "removed.bin",
        "chmodded.pt",
        "deployed.safetensors",
    ]
    .map(|n| root.path().join(n));
    for f in [&truncated, &replaced, &removed, &chmodded, &deployed] {
        write_file(f, 4096);
    }
    let staging = root.path().join("staging.tmp");
    std::fs::write(&staging, b"evil").unwrap();
    // The deployment job: a copy of truncate that the policy lets write.
    let bin = tempfile::tempdir().unwrap();
    let deployer = bin.path().join("deploy-models");
    std::fs::copy("/usr/bin/truncate", &deployer).unwrap();
    let policy = bin.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "mode = \"audit\"\n[weights.all]\npaths = [\"{}\"]\ndefault = \"alert\"\n\n\
             [[rules]]\nname = \"deploys\"\nweights = [\"all\"]\nexe = [\"{}\"]\n\
             operations = [\"open\", \"read\", \"mmap\", \"write\"]\naction = \"allow\"\n",
            root.path().display(),
            deployer.display()
        ),
    )
    .unwrap();
    let sensor = SensorProcess::start(&[root.path()], &["--policy", policy.to_str().unwrap()]);

    let truncate = run(Command::new("truncate").args(["-s", "0"]).arg(&truncated));
    let mv = run(Command::new("mv").arg(&staging).arg(&replaced));
    let rm = run(Command::new("rm").arg(&removed));
    let chmod = run(Command::new("chmod").arg("600").arg(&chmodded));
    let deploy = run(Command::new(&deployer).args(["-s", "0"]).arg(&deployed));
    for pid in [truncate, mv, rm, chmod, deploy] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();

    let tamper = |pid: u32| -> Vec<(String, Severity)> {
        detections(&events, pid)
            .iter()
            .filter(|e| e.detection.as_ref().unwrap().id == DetectionId::Tamper)
            .map(|e| {
                (
                    e.detection.as_ref().unwrap().matched.clone().unwrap(),
                    e.severity,
                )
            })
            .collect()
    };
    let truncations = tamper(truncate);
    assert!(
        truncations.contains(&("truncate".to_owned(), Severity::High)),
        "{truncations:?}"
    );
    assert_eq!(tamper(mv), vec![("rename".to_owned(), Severity::Critical)]);
    let replaced_by = detections(&events, mv)
        .into_iter()
        .find(|e| e.detection.as_ref().unwrap().id == DetectionId::Tamper)
        .unwrap();
    assert!(
        replaced_by
            .detection
            .as_ref()
            .unwrap()
            .summary
            .contains("replaced"),
        "{replaced_by:#?}"
    );
    assert_eq!(tamper(rm), vec![("unlink".to_owned(), Severity::High)]);
    assert_eq!(
        tamper(chmod),
        vec![("set_attributes".to_owned(), Severity::Medium)]
    );
    // The allowed deployer's truncation is recorded, not named.
    assert!(
        tests::of_pid(&events, Action::Truncate, deploy).len() == 1,
        "the control: its truncation was seen"
    );
    assert!(
        tamper(deploy).is_empty(),
        "{:#?}",
        detections(&events, deploy)
    );
}

#[test]
fn a_trusted_process_s_sends_are_followed_no_further() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("mixtral.safetensors");
    write_file(&weights, SIZE);
    // A backup job: a copy of Python, trusted by identity.
    let bin = tempfile::tempdir().unwrap();
    let backup = bin.path().join("backup-python");
    std::fs::copy(tests::python_exe(), &backup).unwrap();
    let out = tempfile::tempdir().unwrap();
    let config = format!("[detect]\ntrusted_exes = [\"{}\"]\n", backup.display());
    let sensor = SensorProcess::start_with_config(&[root.path()], &[], &config);
    // It reads the weights, writes them once, waits, writes them again
    // elsewhere: the first write is a record, judged trusted; after it
    // the kernel no longer follows the process.
    let write_twice = "import sys, time\n\
         data = open(sys.argv[1], 'rb').read()\n\
         open(sys.argv[2], 'wb').write(data)\n\
         time.sleep(1)\n\
         open(sys.argv[3], 'wb').write(data)\n";
    let job = run(Command::new(&backup)
        .arg("-c")
        .arg(write_twice)
        .arg(&weights)
        .arg(out.path().join("one.bin"))
        .arg(out.path().join("two.bin")));
    // The control: an untrusted process doing the same is followed to both.
    let other = run(python_command()
        .arg("-c")
        .arg(write_twice)
        .arg(&weights)
        .arg(out.path().join("three.bin"))
        .arg(out.path().join("four.bin")));
    for pid in [job, other] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    let destinations = |pid: u32| -> HashSet<u64> {
        tests::of_pid(&events, Action::Send, pid)
            .iter()
            .filter_map(|e| match &tests::access(e).detail {
                sensor::event::AccessDetail::Send(s) => Some(s.destination.ino),
                _ => None,
            })
            .collect()
    };
    let ino = |name: &str| tests::identity(&out.path().join(name)).1;
    assert_eq!(destinations(job), HashSet::from([ino("one.bin")]));
    assert!(
        ids(&events, job).is_empty(),
        "{:#?}",
        detections(&events, job)
    );
    assert_eq!(
        destinations(other),
        HashSet::from([ino("three.bin"), ino("four.bin")])
    );
}

/// Starts a Python process that copies 1 MiB of `from` into `to` with
/// sendfile(2) and holds `to` open a second (so that the agent can name
/// the destination); returns its pid.
fn sendfile_held_open(from: &Path, to: &Path) -> u32 {
    run(python_command()
        .arg("-c")
        .arg(
            "import os, sys, time\n\
             src = open(sys.argv[1], 'rb')\n\
             dst = open(sys.argv[2], 'wb')\n\
             os.sendfile(dst.fileno(), src.fileno(), 0, 1 << 20)\n\
             time.sleep(1)\n",
        )
        .arg(from)
        .arg(to))
}

#[test]
fn a_copy_of_weights_is_watched_as_derived_from_the_original() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama-70b.safetensors");
    write_file(&weights, SIZE);
    let out = tempfile::tempdir().unwrap();
    let (user_copy, kernel_copy, second) = (
        out.path().join("stash.bin"),
        out.path().join("stash2.bin"),
        out.path().join("stash3.bin"),
    );
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // Through user space: read then write, the destination kept open a
    // moment (so the agent can name it).
    let copier = run(python_command()
        .arg("-c")
        .arg(
            "import sys, time\n\
             data = open(sys.argv[1], 'rb').read()\n\
             out = open(sys.argv[2], 'wb')\n\
             out.write(data); out.flush()\n\
             time.sleep(1)\n",
        )
        .arg(&weights)
        .arg(&user_copy));
    // In the kernel: sendfile into a file held open a moment.
    let sender = sendfile_held_open(&weights, &kernel_copy);
    // Their records were handled while they held the copies open.
    sensor.wait_exit(copier);
    sensor.wait_exit(sender);
    // Second hops: reading the user-space copy, copying the kernel one.
    let cat = run(Command::new("cat").arg(&user_copy));
    let cp = run(Command::new("cp").arg(&kernel_copy).arg(&second));
    for pid in [cat, cp] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(
        stop.counter("agent", "lineage_derived"),
        2,
        "{:#?}",
        tests::briefs(&events)
    );

    // The second hop on the user-space copy is a bulk read of it, derived
    // from the original.
    let bulk = the(&events, cat, DetectionId::BulkRead);
    let file = bulk.file.as_ref().unwrap();
    assert_eq!(tests::path(bulk), user_copy);
    let from = file.derived_from.as_ref().expect("derived_from");
    assert_eq!(
        from.path.as_ref().map(|p| p.to_lossy().into_owned()),
        Some(weights.display().to_string())
    );
    assert_eq!((from.dev, from.ino), tests::identity(&weights));
    // The copy of the kernel copy is a copy of the original's weights.
    let copy = the(&events, cp, DetectionId::Copy);
    assert_eq!(tests::path(copy), kernel_copy);
    assert_eq!(
        copy.file
            .as_ref()
            .unwrap()
            .derived_from
            .as_ref()
            .map(|d| (d.dev, d.ino)),
        Some(tests::identity(&weights))
    );
}

#[test]
fn copies_and_moved_weights_are_followed_across_a_restart() {
    let root = tempfile::tempdir().unwrap();
    let (weights, moving) = (
        root.path().join("llama-70b.safetensors"),
        root.path().join("mistral.safetensors"),
    );
    write_file(&weights, SIZE);
    write_file(&moving, SIZE);
    let out = tempfile::tempdir().unwrap();
    let (copy, doomed, moved) = (
        out.path().join("stash.bin"),
        out.path().join("doomed.bin"),
        out.path().join("moved.bin"),
    );
    let state = tempfile::tempdir().unwrap();
    let state_arg = state.path().to_str().unwrap();
    let first = SensorProcess::start(&[root.path()], &["--state-dir", state_arg]);
    // Two copies through the kernel, held open until the agent named them.
    for destination in [&copy, &doomed] {
        first.wait_exit(sendfile_held_open(&weights, destination));
    }
    std::fs::rename(&moving, &moved).unwrap();
    // Saved within a second of the last change.
    let saved = state.path().join("followed.json");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while std::fs::read_to_string(&saved).map_or(true, |s| !s.contains("moved.bin")) {
        assert!(std::time::Instant::now() < deadline, "state not saved");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let (_, before) = first.stop_events();
    let stop = before.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(stop.counter("agent", "lineage_derived"), 2);

    // While no agent runs, one copy is deleted.
    std::fs::remove_file(&doomed).unwrap();
    let second = SensorProcess::start(&[root.path()], &["--state-dir", state_arg]);
    let cat_copy = run(Command::new("cat").arg(&copy).stdout(Stdio::null()));
    let cat_moved = run(Command::new("cat").arg(&moved).stdout(Stdio::null()));
    for pid in [cat_copy, cat_moved] {
        second.wait_exit(pid);
    }
    let (_, events) = second.stop_events();
    let start = events[0].sensor.as_ref().unwrap();
    assert_eq!(events[0].action, Action::SensorStart);
    assert_eq!(start.counter("agent", "lineage_restored"), 2);
    assert_eq!(start.counter("agent", "lineage_restore_gone"), 1);
    // The restarted agent still attributes the copy to the original.
    let bulk = the(&events, cat_copy, DetectionId::BulkRead);
    assert_eq!(tests::path(bulk), copy);
    let from = bulk.file.as_ref().unwrap().derived_from.as_ref();
    assert_eq!(
        from.map(|d| (d.dev, d.ino)),
        Some(tests::identity(&weights))
    );
    // And still counts the reads of the file moved out of the roots.
    let bulk = the(&events, cat_moved, DetectionId::BulkRead);
    assert_eq!(tests::path(bulk), moved);
    assert_eq!(bulk.detection.as_ref().unwrap().bytes, Some(SIZE as u64));
}

#[test]
fn a_corrupt_state_file_is_set_aside_and_the_agent_runs() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, SIZE);
    let state = tempfile::tempdir().unwrap();
    let saved = state.path().join("followed.json");
    std::fs::write(&saved, b"{\"version\": 1, \"files\": [tru").unwrap();
    let mut sensor = SensorProcess::start(
        &[root.path()],
        &["--state-dir", state.path().to_str().unwrap()],
    );
    sensor.expect_warning("are not followed again");
    let cat = run(Command::new("cat").arg(&weights).stdout(Stdio::null()));
    sensor.wait_exit(cat);
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    assert_eq!(
        ids(&events, cat),
        HashSet::from([DetectionId::UnexpectedReader, DetectionId::BulkRead])
    );
    // Kept for inspection, not overwritten.
    let aside = std::fs::read(state.path().join("followed.json.corrupt")).unwrap();
    assert_eq!(aside, b"{\"version\": 1, \"files\": [tru");
}

/// A loopback HTTP server taking one chunked PUT (`curl -T -`): returns
/// the body's bytes.
fn chunked_put_server() -> (u16, std::thread::JoinHandle<u64>) {
    let server = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    let handle = std::thread::spawn(move || {
        let (mut conn, _) = server.accept().unwrap();
        let mut got = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        while !got.ends_with(b"\r\n0\r\n\r\n") {
            let n = std::io::Read::read(&mut conn, &mut buf).unwrap();
            assert!(n > 0, "curl hung up early");
            got.extend_from_slice(&buf[..n]);
        }
        std::io::Write::write_all(
            &mut conn,
            b"HTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
        )
        .unwrap();
        // The body's bytes: the chunks' sizes after the headers.
        let body = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
        let mut rest = &got[body..];
        let mut total = 0;
        loop {
            let line = rest.windows(2).position(|w| w == b"\r\n").unwrap();
            let size =
                u64::from_str_radix(std::str::from_utf8(&rest[..line]).unwrap(), 16).unwrap();
            if size == 0 {
                return total;
            }
            total += size;
            rest = &rest[line + 2 + size as usize + 2..];
        }
    });
    (port, handle)
}

/// The one process whose executable's path contains `exe` and whose
/// parent is `ppid`.
fn child_running(events: &[Event], ppid: u32, exe: &str) -> u32 {
    let pids: HashSet<u32> = events
        .iter()
        .filter_map(|e| e.process.as_ref())
        .filter(|p| p.ppid == ppid && p.exe.as_ref().is_some_and(|x| x.to_lossy().contains(exe)))
        .map(|p| p.pid)
        .collect();
    assert_eq!(pids.len(), 1, "{exe} under {ppid}: {pids:?}");
    pids.into_iter().next().unwrap()
}

#[test]
fn the_sibling_reading_a_pipe_weights_were_copied_into_is_followed() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("mistral.safetensors");
    write_file(&weights, 4 * SIZE);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // `curl` is `tar`'s sibling, not its child: it took no weights itself.
    // It starts reading a second later (the agent follows the pipe once
    // it sees `tar` copy into it), and then uploads what it reads.
    let (port, received) = chunked_put_server();
    let shell = run(Command::new("sh")
        .arg("-c")
        .arg(format!(
            "tar cf - -C {} mistral.safetensors | (sleep 1; exec curl -sS -T - http://127.0.0.1:{port}/up)",
            root.path().display()
        )));
    let body = received.join().unwrap();
    // The same with `dd` and a Python reader sending raw TCP. (`dd`'s
    // first write fits in the pipe, so it returns while the reader
    // sleeps; a first write larger than the pipe returns only once the
    // reader has started, and the bytes read before the agent follows the
    // pipe are not counted.)
    let (raw_port, raw_received) = listener();
    let raw = run(Command::new("sh").arg("-c").arg(format!(
        "dd if={} bs=16384 status=none | (sleep 1; exec {} -c 'import socket, sys; \
         s = socket.create_connection((\"127.0.0.1\", {raw_port})); \
         s.sendall(sys.stdin.buffer.read()); s.close()')",
        weights.display(),
        python_command().get_program().to_string_lossy()
    )));
    assert_eq!(raw_received.join().unwrap(), 4 * SIZE as u64);
    for pid in [shell, raw] {
        sensor.wait_exit(pid);
    }
    let (_, events) = sensor.stop_events();
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(
        stop.counter("agent", "lineage_pipes"),
        2,
        "{:#?}",
        tests::briefs(&events)
    );

    for (parent, reader_exe, port, bytes) in [
        (shell, "curl", port, body),
        (raw, "python", raw_port, 4 * SIZE as u64),
    ] {
        let reader = child_running(&events, parent, reader_exe);
        // Its reads of the pipe are records of a file derived from the
        // weights, every byte counted (it read after the pipe was
        // followed).
        let reads = tests::of_pid(&events, Action::Read, reader);
        assert!(
            !reads.is_empty(),
            "{reader_exe}: {:#?}",
            tests::briefs(&events)
        );
        let read = tests::read_total(reads.iter().copied());
        assert_eq!(read, bytes, "{reader_exe}");
        for r in &reads {
            assert!(
                tests::path(r).to_string_lossy().starts_with("pipe:["),
                "{r:?}"
            );
            let from = r
                .file
                .as_ref()
                .unwrap()
                .derived_from
                .as_ref()
                .expect("derived_from");
            assert_eq!((from.dev, from.ino), tests::identity(&weights));
        }
        // Its upload is an egress of the weights.
        let egress = egress_with_bytes(&events, reader);
        let d = egress.detection.as_ref().unwrap();
        assert_eq!(
            d.matched.as_deref(),
            Some(format!("127.0.0.1:{port}").as_str())
        );
        assert_eq!(
            egress
                .file
                .as_ref()
                .unwrap()
                .derived_from
                .as_ref()
                .map(|d| (d.dev, d.ino)),
            Some(tests::identity(&weights)),
            "{egress:#?}"
        );
        assert!(
            d.summary.contains(&weights.display().to_string()),
            "{}",
            d.summary
        );
    }
    // The writers' reads were reported at their first write, not at the
    // close: that is what let the pipe be followed in time.
    for (parent, writer) in [(shell, "tar"), (raw, "dd")] {
        let writer = child_running(&events, parent, writer);
        let first = tests::of_pid(&events, Action::Read, writer)[0];
        assert_eq!(
            tests::read_summary(first).reason,
            sensor::event::FlushReason::Send,
            "{first:#?}"
        );
    }
}

/// A process holding a pipe that weights were copied into, forking readers
/// all the while the agent follows the pipe: a reader forked while the
/// agent scans `/proc` (after it listed the pids, from a parent it then
/// finds) is one only the kernel's fork hook can mark, with the prefilter
/// held off. Every reader's byte must be a record.
#[test]
fn readers_forked_while_a_pipe_is_followed_are_followed() {
    let root = tempfile::tempdir().unwrap();
    let weights = root.path().join("llama.safetensors");
    write_file(&weights, SIZE);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // 64 KiB fits the pipe, so `dd` finishes without a reader. A reader
    // is forked every millisecond for half a second; at 1.5 s each reads
    // one byte.
    let parent = python_command()
        .arg("-c")
        .arg(
            "import os, subprocess, sys, time\n\
             r, w = os.pipe()\n\
             go = time.monotonic() + 1.5\n\
             subprocess.run(['dd', 'if=' + sys.argv[1], 'bs=16384', 'count=4', 'status=none'], \
                            stdout=w, check=True)\n\
             os.close(w)\n\
             pids = []\n\
             end = time.monotonic() + 0.5\n\
             while time.monotonic() < end:\n\
             \x20   pid = os.fork()\n\
             \x20   if pid == 0:\n\
             \x20       time.sleep(max(0, go - time.monotonic()))\n\
             \x20       os.read(r, 1)\n\
             \x20       os.close(r)\n\
             \x20       os._exit(0)\n\
             \x20   pids.append(pid)\n\
             \x20   time.sleep(0.001)\n\
             for pid in pids:\n\
             \x20   os.waitpid(pid, 0)\n\
             print(' '.join(map(str, pids)))",
        )
        .arg(&weights)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let parent_pid = parent.id();
    let out = parent.wait_with_output().unwrap();
    assert!(out.status.success(), "{out:?}");
    let readers: Vec<u32> = String::from_utf8(out.stdout)
        .unwrap()
        .split_whitespace()
        .map(|pid| pid.parse().unwrap())
        .collect();
    assert!(readers.len() > 100, "{readers:?}");
    // It exits after every reader it waited for.
    sensor.wait_exit(parent_pid);
    let (_, events) = sensor.stop_events();
    let stop = events.last().unwrap().sensor.as_ref().unwrap();
    assert_eq!(stop.counter("agent", "lineage_pipes"), 1);
    let unseen: Vec<u32> = readers
        .iter()
        .copied()
        .filter(|&pid| tests::read_total(tests::of_pid(&events, Action::Read, pid)) != 1)
        .collect();
    assert!(
        unseen.is_empty(),
        "{} of {} readers' byte unrecorded: {unseen:?}",
        unseen.len(),
        readers.len()
    );
}
