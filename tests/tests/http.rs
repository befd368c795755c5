//! The HTTP outputs against a real HTTP server (tests/scripts/http_sink.py:
//! an NDJSON collector, Splunk's HEC and Elastic's `_bulk` with its
//! idempotent `create`). Every record reaches each API, in its encoding,
//! with its credentials and, where asked, gzip-compressed. And an outage:
//! the server is stopped while an agent runs, that agent stops, a second
//! agent starts on the same state directory and captures more, then the
//! server comes back: every record of both runs arrives, in order, none
//! missing, from the spool the first agent left.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    io::{BufRead, BufReader},
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{SensorProcess, write_file};

/// tests/scripts/http_sink.py on a port, logging what it receives.
struct Server {
    child: Option<Child>,
    port: u16,
    log: PathBuf,
    /// HTTPS with this certificate and key.
    tls: Option<(PathBuf, PathBuf)>,
}

impl Server {
    fn new(dir: &Path) -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Self {
            child: None,
            port,
            log: dir.join("received.jsonl"),
            tls: None,
        }
    }

    fn start(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/http_sink.py");
        let mut child = tests::python_command()
            .arg(script)
            .arg(self.port.to_string())
            .arg(&self.log)
            .args(self.tls.iter().flat_map(|(c, k)| [c, k]))
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut ready = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut ready)
            .unwrap();
        assert_eq!(ready.trim(), "ready");
        self.child = Some(child);
    }

    fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn url(&self) -> String {
        match self.tls {
            Some(_) => format!("https://localhost:{}", self.port),
            None => format!("http://127.0.0.1:{}", self.port),
        }
    }

    /// Every request so far.
    fn requests(&self) -> Vec<Value> {
        fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The records requests to `path` carried, in arrival order.
    fn records(&self, path: &str) -> Vec<Value> {
        self.requests()
            .into_iter()
            .filter(|r| r["path"] == path)
            .flat_map(|r| r["records"].as_array().unwrap().clone())
            .collect()
    }

    fn wait_records(&self, path: &str, n: usize) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let got = self.records(path);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

fn cat(path: &Path, times: usize) {
    for _ in 0..times {
        let status = Command::new("cat")
            .arg(path)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
}

/// The record id each encoding carries.
fn id(record: &Value) -> &str {
    record["id"]
        .as_str()
        .or_else(|| record["metadata"]["uid"].as_str())
        .or_else(|| record["event"]["id"].as_str())
        .unwrap_or_else(|| panic!("no id: {record}"))
}

#[test]
fn every_record_reaches_ndjson_splunk_hec_and_elastic() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Server::new(dir.path());
    server.start();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("mistral.safetensors");
    write_file(&weights, 1 << 20);
    let token_file = dir.path().join("hec.token");
    fs::write(&token_file, "hec-secret\n").unwrap();
    let url = server.url();
    let outputs = [
        format!("http:{url}/ingest?gzip=on&token=bearer-secret&batch_age=200ms"),
        format!(
            "splunk-hec:{url}?format=ocsf&token_file={}",
            token_file.display()
        ),
        format!("elastic:{url}/weightwarden?format=ecs&token=es-key&batch_size=4KiB"),
    ];
    let mut args = Vec::new();
    for o in &outputs {
        args.extend(["--output", o.as_str()]);
    }
    let sensor = SensorProcess::start(&[models.path()], &args);
    cat(&weights, 10);
    sensor.wait_for("the reads", Duration::from_secs(10), |r| {
        r["action"] == "read"
    });
    let (status, native) = sensor.stop();
    assert!(status.success());
    let want: Vec<&str> = native.iter().map(id).collect();
    for (path, auth) in [
        ("/ingest", "Bearer bearer-secret"),
        ("/services/collector/event", "Splunk hec-secret"),
        ("/weightwarden/_bulk", "ApiKey es-key"),
    ] {
        let got = server.wait_records(path, native.len());
        let ids: Vec<&str> = got.iter().map(id).collect();
        assert_eq!(ids, want, "{path}: every record, in order, once");
        for request in server.requests().iter().filter(|r| r["path"] == path) {
            assert_eq!(request["authorization"], auth, "{path}");
        }
    }
    // The encodings each output asked for, and gzip where asked.
    assert_eq!(server.records("/ingest")[0], native[0]);
    assert_eq!(
        server.records("/services/collector/event")[0]["class_uid"],
        6002
    );
    assert_eq!(
        server.records("/weightwarden/_bulk")[0]["ecs"]["version"]
            .as_str()
            .map(|v| v.starts_with("8.")),
        Some(true)
    );
    let requests = server.requests();
    assert!(
        requests
            .iter()
            .filter(|r| r["path"] == "/ingest")
            .all(|r| r["encoding"] == "gzip")
    );
    // batch_size=4KiB: Elastic got several requests for this run.
    let bulk = requests
        .iter()
        .filter(|r| r["path"] == "/weightwarden/_bulk")
        .count();
    assert!(bulk > 2, "{bulk} _bulk requests");
}

#[test]
fn an_outage_across_an_agent_restart_loses_no_record() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let mut server = Server::new(dir.path());
    server.start();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("deepseek.safetensors");
    write_file(&weights, 1 << 20);
    let output = format!("http:{}/ingest?batch_age=100ms", server.url());
    let args = [
        "--output",
        output.as_str(),
        "--state-dir",
        state.to_str().unwrap(),
    ];

    let mut first = SensorProcess::start(&[models.path()], &args);
    cat(&weights, 5);
    first.wait_for("the reads", Duration::from_secs(10), |r| {
        r["action"] == "read"
    });
    // Delivered while the server is up.
    let before = first.records().len();
    assert!(server.wait_records("/ingest", before).len() >= before);
    server.stop();
    first.expect_error("cannot deliver to the output");
    first.expect_warning("records wait in the output's spool");
    cat(&weights, 5);
    sleep(Duration::from_secs(1));
    let (status, first_native) = first.stop();
    assert!(status.success());
    let stop = first_native.last().unwrap();
    let sink = &stop["sensor"]["sinks"][1];
    assert!(sink["spooled"].as_u64().unwrap() > 0, "{sink}");
    assert_eq!(
        (sink["write_failures"].as_u64(), sink["dropped"].as_u64()),
        (Some(0), Some(0)),
        "{sink}"
    );

    // A new agent, the server still down: the spool waits, new records
    // join it behind the old.
    let mut second = SensorProcess::start(&[models.path()], &args);
    second.expect_error("cannot deliver");
    cat(&weights, 5);
    second.wait_for("the reads", Duration::from_secs(10), |r| {
        r["action"] == "read"
    });
    server.start();
    let expected = first_native.len() + second.records().len();
    let got = server.wait_records("/ingest", expected);
    assert!(
        got.len() >= expected,
        "{} of {expected} delivered",
        got.len()
    );
    let (status, second_native) = second.stop();
    assert!(status.success());
    let want: Vec<&str> = first_native.iter().chain(&second_native).map(id).collect();
    let got = server.wait_records("/ingest", want.len());
    // A batch in flight when the outage began may arrive twice; nothing
    // else may.
    let mut seen = std::collections::HashSet::new();
    let ids: Vec<&str> = got.iter().map(id).filter(|i| seen.insert(*i)).collect();
    let twice = got.len() - ids.len();
    assert!(twice <= before, "{twice} duplicates");
    assert_eq!(ids, want, "every record of both runs, in order");
}

#[test]
fn https_trusts_the_given_ca_and_never_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    tests::make_test_certificates(d);
    let mut server = Server::new(d);
    server.tls = Some((d.join("server.pem"), d.join("server.key")));
    server.start();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("nemotron.safetensors");
    write_file(&weights, 1 << 20);
    let trusted = format!(
        "http:{}/trusted?ca={}&batch_age=100ms",
        server.url(),
        d.join("ca.pem").display()
    );
    // The built-in public roots do not include the test CA: the
    // connection must fail, and the records wait rather than go out.
    let untrusted = format!("http:{}/untrusted?batch_age=100ms", server.url());
    let mut sensor = SensorProcess::start(
        &[models.path()],
        &["--output", &trusted, "--output", &untrusted],
    );
    sensor.expect_error("cannot deliver to the output");
    sensor.expect_warning("records wait in the output's spool");
    cat(&weights, 3);
    sensor.wait_for("the reads", Duration::from_secs(10), |r| {
        r["action"] == "read"
    });
    let (status, native) = sensor.stop();
    assert!(status.success());
    let got = server.wait_records("/trusted", native.len());
    let ids: Vec<&str> = got.iter().map(id).collect();
    let want: Vec<&str> = native.iter().map(id).collect();
    assert_eq!(ids, want);
    assert!(server.records("/untrusted").is_empty());
    let sink = &native.last().unwrap()["sensor"]["sinks"][2];
    assert_eq!(sink["records_written"], 0, "{sink}");
    assert_eq!(
        sink["spooled"].as_u64(),
        Some(native.len() as u64 - 1),
        "{sink}"
    );
}
