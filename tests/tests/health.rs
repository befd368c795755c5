//! Health, loss accounting, GPU marking and lifecycle of the agent.

#![allow(clippy::unwrap_used)]

use std::{fs, process::Command, time::Duration};

use tests::{RECORD_TIMEOUT, SensorProcess, python, run, write_file};

#[test]
fn ring_buffer_overflow_is_counted_and_reported() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("burst.safetensors");
    write_file(&file, 4096);
    // One page: a few dozen records fit; a tight open/close loop from
    // several processes at once overruns it before the agent can drain.
    let mut sensor = SensorProcess::start(&[root.path()], &["--ring-buffer-bytes", "4096"]);
    sensor.expect_loss();
    let burst =
        "import os, sys\nfor _ in range(20000):\n    os.close(os.open(sys.argv[1], os.O_RDONLY))\n";
    let children: Vec<_> = (0..4)
        .map(|_| {
            tests::python_command()
                .arg("-c")
                .arg(burst)
                .arg(&file)
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        assert!(child.wait_with_output().unwrap().status.success());
    }
    let (status, records) = sensor.stop();
    assert!(status.success());
    let stop = records
        .iter()
        .find(|r| r["action"] == "sensor_stop")
        .expect("sensor_stop record");
    let lost = stop["sensor"]["kernel"]["ringbuf_full"].as_u64().unwrap();
    assert!(
        lost > 0,
        "160000 records through a 4 KiB ring lost none? {stop}"
    );
    let opens = records.iter().filter(|r| r["action"] == "open").count() as u64;
    // Every open/close pair either arrived or was counted as lost.
    let closes = records.iter().filter(|r| r["action"] == "close").count() as u64;
    assert!(
        opens + closes + lost >= 160_000,
        "opens {opens} closes {closes} lost {lost}"
    );
}

#[test]
fn heartbeat_reports_counters_periodically() {
    let root = tempfile::tempdir().unwrap();
    let sensor = SensorProcess::start(&[root.path()], &["--heartbeat-interval", "1"]);
    let beat = sensor.wait_for("heartbeat", Duration::from_secs(5), |r| {
        r["action"] == "heartbeat"
    });
    for key in [
        "ringbuf_full",
        "read_aggregates_full",
        "pending_full",
        "kernel_read_failures",
    ] {
        assert!(
            beat["sensor"]["kernel"][key].is_u64(),
            "{key} missing: {beat}"
        );
    }
    assert!(
        beat["sensor"]["sinks"][0]["records_written"]
            .as_u64()
            .unwrap()
            >= 1
    );
    assert_eq!(beat["sensor"]["watched_files"], 0);
}

#[test]
fn gpu_device_openers_are_marked_gpu() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("served.safetensors");
    write_file(&file, 65536);
    let dev_dir = tempfile::tempdir().unwrap();
    let fake_gpu = dev_dir.path().join("nvidia0");
    fs::write(&fake_gpu, b"").unwrap();
    let pattern = format!("{}/nvidia*", dev_dir.path().display());
    let sensor = SensorProcess::start(&[root.path()], &["--gpu-device", &pattern]);
    let server = python(
        "import sys\ng = open(sys.argv[1], 'rb')\nopen(sys.argv[2], 'rb').read()\n",
        &[fake_gpu.to_str().unwrap(), file.to_str().unwrap()],
    );
    let plain = run(Command::new("cat").arg(&file));
    sensor.wait_exit(server);
    sensor.wait_exit(plain);
    assert_eq!(sensor.by_pid("open", server)[0]["process"]["gpu"], true);
    assert_eq!(sensor.by_pid("open", plain)[0]["process"]["gpu"], false);
}

#[test]
fn sigint_flushes_long_lived_reader_and_exits_zero() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("held.gguf");
    write_file(&file, 1 << 20);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // Reads half, then holds the descriptor open past the sensor's stop.
    let mut holder = tests::Interactive::start(
        "import os, sys, time\nfd = os.open(sys.argv[1], os.O_RDONLY)\nos.read(fd, 524288)\nprint('ok', flush=True)\ntime.sleep(30)\n",
        &[file.as_os_str()],
    );
    assert_eq!(holder.read_line(), "ok");
    let pid = holder.pid();
    sensor.wait_for("open", RECORD_TIMEOUT, |r| {
        r["action"] == "open" && r["process"]["pid"] == pid
    });
    let (status, records) = sensor.stop_with(nix::sys::signal::Signal::SIGINT);
    holder.kill();
    assert!(status.success());
    let read = records
        .iter()
        .find(|r| r["action"] == "read" && r["process"]["pid"] == pid)
        .expect("the aggregate is flushed at shutdown");
    assert_eq!(read["access"]["bytes"], 524288);
    assert_eq!(read["access"]["reason"], "shutdown");
    assert_eq!(read["access"]["coverage"], 0.5);
    assert_eq!(records.last().unwrap()["action"], "sensor_stop");
}
