//! Process context beyond the event itself: processes that predate the
//! sensor, container ids from real cgroups, GPU-serving processes.

#![allow(clippy::unwrap_used)]

use std::{fs, os::unix::fs::MetadataExt, path::PathBuf, process::Command};

use tests::{RECORD_TIMEOUT, SensorProcess, write_file};

/// The cgroup v2 mount point, from /proc/self/mounts.
fn cgroup2_mount() -> Option<PathBuf> {
    fs::read_to_string("/proc/self/mounts")
        .ok()?
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("cgroup2"))
        .and_then(|l| l.split_whitespace().nth(1).map(PathBuf::from))
}

/// A process started before the sensor, holding a weight file and a fake
/// GPU device open, that reads when told to.
#[test]
fn processes_started_before_the_sensor_are_known() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("early.safetensors");
    write_file(&file, 1 << 20);
    let dev_dir = tempfile::tempdir().unwrap();
    let gpu = dev_dir.path().join("renderD128");
    fs::write(&gpu, b"").unwrap();

    let mut server = tests::Interactive::start(
        "import os, sys\ng = os.open(sys.argv[2], os.O_RDONLY)\nfd = os.open(sys.argv[1], os.O_RDONLY)\n\
         print('ready', flush=True)\nsys.stdin.readline()\n\
         while os.read(fd, 1 << 16): pass\nos.close(fd)\n",
        &[file.as_os_str(), gpu.as_os_str(), "--served-model".as_ref()],
    );
    assert_eq!(server.read_line(), "ready");

    let pattern = format!("{}/renderD*", dev_dir.path().display());
    let sensor = SensorProcess::start(&[root.path()], &["--gpu-device", &pattern]);
    server.send("go");
    let pid = server.pid();
    assert!(server.finish());
    sensor.wait_exit(pid);

    let read = sensor
        .by_pid("read", pid)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no read by {pid}: {}", sensor.log()));
    assert_eq!(read["access"]["bytes"], 1 << 20);
    assert_eq!(read["process"]["exe"], tests::python_exe_str());
    let args = read["process"]["args"].as_array().unwrap();
    assert_eq!(args.last().unwrap(), "--served-model", "{args:?}");
    assert_eq!(
        read["process"]["gpu"], true,
        "opened the GPU before the sensor started"
    );
    assert_eq!(read["process"]["ppid"], std::process::id());
}

#[test]
fn container_id_comes_from_the_cgroup_path() {
    let Some(mount) = cgroup2_mount() else {
        tests::skip!(
            tests::feature::CGROUP2,
            "no cgroup v2 hierarchy is mounted on this host"
        );
    };
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("in-container.gguf");
    write_file(&file, 65536);
    let id = "4f1c2a3b5d6e7f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6f7a8";
    let parent = mount.join(format!("ww-test-{}", std::process::id()));
    let scope = parent.join(format!("docker-{id}.scope"));
    fs::create_dir_all(&scope).unwrap();
    let cgroup_ino = fs::metadata(&scope).unwrap().ino();

    let sensor = SensorProcess::start(&[root.path()], &[]);
    // The shell moves itself into the container's cgroup, then becomes cat.
    let script = format!(
        "echo $$ > {}/cgroup.procs && exec cat {} > /dev/null",
        scope.display(),
        file.display()
    );
    let child = Command::new("sh").arg("-c").arg(&script).spawn().unwrap();
    let pid = child.id();
    let ok = child.wait_with_output().unwrap().status.success();
    let result = std::panic::catch_unwind(|| {
        assert!(ok, "moving into the test cgroup failed");
        sensor.wait_exit(pid);
        let open = sensor.wait_for("open in container", RECORD_TIMEOUT, |r| {
            r["action"] == "open" && r["process"]["pid"] == pid
        });
        assert_eq!(open["process"]["cgroup_id"], cgroup_ino);
        assert_eq!(open["process"]["container_id"], id);
        assert_eq!(open["process"]["container_runtime"], "docker");
    });
    let _ = fs::remove_dir(&scope);
    let _ = fs::remove_dir(&parent);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
