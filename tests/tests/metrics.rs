//! The Prometheus endpoint, scraped over HTTP while a real agent runs:
//! the counters match known activity, outputs are labelled by name, and
//! only `GET /metrics` is answered.

#![allow(clippy::unwrap_used)]

use std::{
    io::{Read, Write},
    net::TcpStream,
    process::Command,
    time::{Duration, Instant},
};

use tests::{SensorProcess, run, write_file};

/// The port the agent chose for `--metrics 127.0.0.1:0`, from its log.
fn port(sensor: &SensorProcess) -> u16 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = sensor.log();
        if let Some(addr) = log
            .lines()
            .find_map(|l| l.split("metrics served at http://").nth(1))
            .and_then(|rest| rest.split('/').next())
        {
            return addr.rsplit(':').next().unwrap().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "no metrics line: {log}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn get(port: u16, path: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(stream, "GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n").unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The value of the sample named exactly `name` (labels included).
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

#[test]
fn a_scrape_reports_known_activity() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let sensor = SensorProcess::start(&[models.path()], &["--metrics", "127.0.0.1:0"]);
    let port = port(&sensor);
    for _ in 0..3 {
        let pid = run(Command::new("cat").arg(&weights));
        sensor.wait_exit(pid);
    }
    let response = get(port, "/metrics");
    let (head, text) = response.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(text.ends_with("# EOF\n"), "{text}");
    // Three processes opened and read the file once each.
    assert_eq!(
        sample(text, "weightwarden_records_total{action=\"open\"}"),
        Some(3),
        "{text}"
    );
    assert_eq!(
        sample(text, "weightwarden_records_total{action=\"read\"}"),
        Some(3),
        "{text}"
    );
    // Every record so far was written to the test's output, none lost.
    let events = sensor.events();
    let written = sample(
        text,
        &format!(
            "weightwarden_output_records_written_total{{output=\"jsonl:{}\"}}",
            sensor.output_name()
        ),
    )
    .unwrap_or_else(|| panic!("no output sample: {text}"));
    assert!(
        written >= 3 && written <= events.len() as u64,
        "{written} of {}",
        events.len()
    );
    assert_eq!(
        sample(text, "weightwarden_kernel_ringbuf_full_total"),
        Some(0),
        "{text}"
    );
    assert!(
        sample(text, "weightwarden_processes_entries").is_some_and(|n| n > 0),
        "{text}"
    );
    // Nothing else is served.
    assert!(get(port, "/").starts_with("HTTP/1.1 404"));
    let mut post = TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(post, "POST /metrics HTTP/1.1\r\n\r\n").unwrap();
    let mut answer = String::new();
    post.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 405"), "{answer}");
    // A client that connects and says nothing holds up nothing.
    let _silent = TcpStream::connect(("127.0.0.1", port)).unwrap();
    let pid = run(Command::new("cat").arg(&weights));
    sensor.wait_exit(pid);
    let text = get(port, "/metrics");
    assert!(
        text.contains("weightwarden_records_total{action=\"open\"} 4"),
        "{text}"
    );
    let (status, _) = sensor.stop();
    assert!(status.success());
}

#[test]
fn enforcements_spools_and_the_ring_buffer_are_scraped() {
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.toml");
    std::fs::write(
        &policy,
        format!(
            "mode = \"enforce\"\n[weights.llama]\npaths = [\"{}\"]\ndefault = \"deny\"\n",
            models.path().display()
        ),
    )
    .unwrap();
    // An HTTP collector that is down: its records wait in the spool.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let down = format!(
        "http:http://127.0.0.1:{}/ingest?batch_age=50ms",
        closed.local_addr().unwrap().port()
    );
    drop(closed);
    let mut sensor = SensorProcess::start(
        &[models.path()],
        &[
            "--metrics",
            "127.0.0.1:0",
            "--policy",
            policy.to_str().unwrap(),
            "--output",
            &down,
        ],
    );
    sensor.expect_error("cannot deliver to the output");
    sensor.expect_warning("records wait in the output's spool");
    let port = port(&sensor);
    for _ in 0..2 {
        let cat = Command::new("cat").arg(&weights).output().unwrap();
        assert!(!cat.status.success(), "the policy let cat read");
    }
    sensor.wait_for("two denials", Duration::from_secs(10), |r| {
        r["action"] == "denied" && r["seq"].as_u64().is_some()
    });
    let deadline = Instant::now() + Duration::from_secs(10);
    let text = loop {
        let text = get(port, "/metrics");
        let denied = sample(
            &text,
            "weightwarden_enforcements_total{mechanism=\"fanotify\",action=\"denied\"}",
        );
        // The cats' exec and exit records come through the ring buffer
        // (at the agent's next poll: the kernel sends them without a
        // wakeup).
        let drained = sample(&text, "weightwarden_agent_kernel_records_total").unwrap_or(0);
        if (denied == Some(2) && drained > 0) || Instant::now() > deadline {
            break text;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(
        sample(
            &text,
            "weightwarden_enforcements_total{mechanism=\"fanotify\",action=\"denied\"}"
        ),
        Some(2),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            "weightwarden_records_total{action=\"policy_loaded\"}"
        ),
        Some(1),
        "{text}"
    );
    let name = down.split('?').next().unwrap();
    let waiting = sample(
        &text,
        &format!("weightwarden_output_spooled_records{{output=\"{name}\"}}"),
    )
    .unwrap()
        + sample(
            &text,
            &format!("weightwarden_output_queued_records{{output=\"{name}\"}}"),
        )
        .unwrap();
    assert!(waiting > 0, "{text}");
    assert_eq!(
        sample(
            &text,
            &format!("weightwarden_output_dropped_total{{output=\"{name}\"}}")
        ),
        Some(0)
    );
    let size = sample(&text, "weightwarden_agent_ring_buffer_bytes").unwrap();
    let peak = sample(&text, "weightwarden_agent_ring_backlog_peak_bytes").unwrap();
    assert!(peak > 0 && peak <= size, "peak {peak} of {size}");
    let (status, _) = sensor.stop();
    assert!(status.success());
}

#[test]
fn a_metrics_address_in_use_stops_the_start_with_exit_2() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let models = tempfile::tempdir().unwrap();
    let out = Command::new(tests::binary())
        .args(["run", "--store", "none", "--state-dir", "none", "--watch"])
        .arg(models.path())
        .args(["--output", "stdout", "--metrics", &addr])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot serve metrics at {addr}"))
            && stderr.contains("--metrics none"),
        "{stderr}"
    );
    let out = Command::new(tests::binary())
        .args(["run", "--metrics", "localhost"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("agent.metrics") || stderr.contains("--metrics"),
        "{stderr}"
    );
}
