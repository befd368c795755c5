//! The syslog outputs against a real rsyslog from Debian, started by the
//! test with a private configuration: TCP (octet counting), TLS (rsyslog's
//! OpenSSL driver, a CA the test makes with `openssl`), a unix socket and
//! UDP. Every record the agent writes to its JSON lines output arrives at
//! each, intact (the same JSON), as an RFC 5424 message whose MSGID is the
//! action and whose structured data carries the record id, including
//! records of several KiB (a long path and long arguments). And a server
//! that is down when the agent starts gets every record, in order, once
//! it comes up: they waited in the output's spool.

#![allow(clippy::unwrap_used)]

use std::{
    fs,
    net::{TcpListener, TcpStream, UdpSocket},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

use serde_json::Value;
use tests::{SensorProcess, write_file};

/// A free port on loopback (TCP or UDP).
fn free_port(udp: bool) -> u16 {
    if udp {
        UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    } else {
        TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port()
    }
}

/// rsyslogd with one input of each kind, each writing its messages'
/// MSGID, structured data and MSG to its own file.
struct Rsyslog {
    child: Option<Child>,
    dir: tempfile::TempDir,
    tcp: u16,
    tls: u16,
    udp: u16,
}

impl Rsyslog {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        tests::make_test_certificates(d);
        Self {
            child: None,
            tcp: free_port(false),
            tls: free_port(false),
            udp: free_port(true),
            dir,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn start(&mut self) {
        let d = self.dir.path().display();
        let conf = format!(
            r#"global(workDirectory="{d}" maxMessageSize="256k"
       defaultNetstreamDriverCAFile="{d}/ca.pem"
       defaultNetstreamDriverCertFile="{d}/server.pem"
       defaultNetstreamDriverKeyFile="{d}/server.key")
module(load="imtcp")
module(load="imudp")
module(load="imuxsock" sysSock.use="off")
template(name="msg" type="string" string="%msgid% %structured-data% %msg%\n")
ruleset(name="tcp") {{ action(type="omfile" file="{d}/tcp.log" template="msg") }}
ruleset(name="tls") {{ action(type="omfile" file="{d}/tls.log" template="msg") }}
ruleset(name="udp") {{ action(type="omfile" file="{d}/udp.log" template="msg") }}
ruleset(name="unix") {{ action(type="omfile" file="{d}/unix.log" template="msg") }}
input(type="imtcp" port="{tcp}" address="127.0.0.1" ruleset="tcp")
input(type="imtcp" port="{tls}" address="127.0.0.1" ruleset="tls" streamDriver.name="ossl" streamDriver.mode="1" streamDriver.authMode="anon")
input(type="imudp" port="{udp}" address="127.0.0.1" ruleset="udp")
input(type="imuxsock" socket="{d}/log.sock" ruleset="unix" useSpecialParser="off" ratelimit.interval="0")
"#,
            tcp = self.tcp,
            tls = self.tls,
            udp = self.udp,
        );
        fs::write(self.path("rsyslog.conf"), conf).unwrap();
        let child = Command::new("rsyslogd")
            .arg("-n")
            .arg("-f")
            .arg(self.path("rsyslog.conf"))
            .arg("-i")
            .arg(self.path("rsyslog.pid"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(fs::File::create(self.path("rsyslog.err")).unwrap())
            .spawn()
            .expect(
                "rsyslogd (Debian's rsyslog and rsyslog-openssl; cargo xtask setup installs them)",
            );
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(15);
        while !(TcpStream::connect(("127.0.0.1", self.tcp)).is_ok()
            && TcpStream::connect(("127.0.0.1", self.tls)).is_ok()
            && self.path("log.sock").exists())
        {
            assert!(
                Instant::now() < deadline,
                "rsyslogd did not start: {}",
                fs::read_to_string(self.path("rsyslog.err")).unwrap_or_default()
            );
            sleep(Duration::from_millis(50));
        }
    }

    /// The messages one input wrote: (MSGID, structured data, MSG).
    fn messages(&self, input: &str) -> Vec<(String, String, Value)> {
        let text = fs::read_to_string(self.path(&format!("{input}.log"))).unwrap_or_default();
        let whole = &text[..text.rfind('\n').map_or(0, |i| i + 1)];
        whole
            .lines()
            .map(|line| {
                let (msgid, rest) = line.split_once(' ').unwrap();
                let end = rest
                    .find("] ")
                    .unwrap_or_else(|| panic!("no structured data: {line}"));
                let msg = &rest[end + 2..];
                let record = serde_json::from_str(msg)
                    .unwrap_or_else(|e| panic!("{input}: {e}: {msg:.200}"));
                (msgid.to_owned(), rest[..=end].to_owned(), record)
            })
            .collect()
    }

    /// Waits until `input` has `n` messages.
    fn wait_for(&self, input: &str, n: usize) -> Vec<(String, String, Value)> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.messages(input);
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Rsyslog {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Every native record arrived at `input`, in order, as the same JSON,
/// framed as docs/outputs.md says.
fn assert_all_arrived(syslog: &Rsyslog, input: &str, native: &[Value]) {
    let got = syslog.wait_for(input, native.len());
    assert_eq!(
        got.len(),
        native.len(),
        "{input}: messages for {} records",
        native.len()
    );
    for ((msgid, sd, record), want) in got.iter().zip(native) {
        assert_eq!(record, want, "{input}: the record arrived changed");
        assert_eq!(msgid, want["action"].as_str().unwrap(), "{input}: MSGID");
        let id = format!("id=\"{}\"", want["id"].as_str().unwrap());
        assert!(
            sd.starts_with("[weightwarden@32473 ") && sd.contains(&id),
            "{input}: {sd}"
        );
    }
}

#[test]
fn records_arrive_intact_over_tcp_tls_a_unix_socket_and_udp() {
    let mut syslog = Rsyslog::new();
    syslog.start();
    // A long path and long arguments make records of several KiB: more
    // than a syslog receiver must take in one UDP datagram (2048 bytes,
    // RFC 5426) and than rsyslog's default message size (8 KiB) in OCSF.
    let models = tempfile::tempdir().unwrap();
    let mut deep = models.path().to_path_buf();
    for i in 0..12 {
        deep.push(format!("{i:02}-{}", "d".repeat(200)));
    }
    fs::create_dir_all(&deep).unwrap();
    let weights = deep.join("model.safetensors");
    write_file(&weights, 64 << 10);
    let ca = syslog.path("ca.pem");
    let outputs = [
        format!("syslog:tcp://127.0.0.1:{}", syslog.tcp),
        format!("syslog:tls://localhost:{}?ca={}", syslog.tls, ca.display()),
        format!("syslog:unix://{}", syslog.path("log.sock").display()),
        format!("syslog:udp://127.0.0.1:{}", syslog.udp),
    ];
    let mut args = Vec::new();
    for o in &outputs {
        args.extend(["--output", o.as_str()]);
    }
    let sensor = SensorProcess::start(&[models.path()], &args);
    let long_arg = "a".repeat(3000);
    let status = Command::new("python3")
        .arg("-c")
        .arg("import sys; open(sys.argv[1], 'rb').read()")
        .arg(&weights)
        .arg(&long_arg)
        .status()
        .unwrap();
    assert!(status.success());
    sensor.wait_for("the read", Duration::from_secs(10), |r| {
        r["action"] == "read" && r["file"]["path"] == weights.to_str().unwrap()
    });
    let (status, native) = sensor.stop();
    assert!(status.success());
    let largest = native.iter().map(|r| r.to_string().len()).max().unwrap();
    assert!(largest > 4096, "the largest record is {largest} bytes");
    for input in ["tcp", "tls", "unix", "udp"] {
        assert_all_arrived(&syslog, input, &native);
    }
    // Counted: each output wrote every record before sensor_stop.
    let stop = native.last().unwrap();
    assert_eq!(stop["action"], "sensor_stop");
    for sink in stop["sensor"]["sinks"].as_array().unwrap() {
        assert_eq!(
            sink["records_written"].as_u64(),
            Some(native.len() as u64 - 1),
            "{sink}"
        );
        assert_eq!(sink["write_failures"], 0, "{sink}");
        assert_eq!(sink["dropped"], 0, "{sink}");
    }
}

#[test]
fn a_server_that_is_down_gets_every_record_in_order_when_it_comes_up() {
    let mut syslog = Rsyslog::new();
    let models = tempfile::tempdir().unwrap();
    let weights = models.path().join("llama.safetensors");
    write_file(&weights, 1 << 20);
    let output = format!("syslog:tcp://127.0.0.1:{}", syslog.tcp);
    let mut sensor = SensorProcess::start(&[models.path()], &["--output", &output]);
    sensor.expect_error("cannot deliver to the output");
    for _ in 0..20 {
        let status = Command::new("cat")
            .arg(&weights)
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success());
    }
    // Nothing can arrive yet: the records wait in the spool.
    sensor.wait_for("the reads", Duration::from_secs(10), |r| {
        r["action"] == "read"
    });
    let before = sensor.records().len();
    assert!(before > 40);
    syslog.start();
    // Delivered from the spool once the server is up (the backoff is at
    // most 30 s).
    let early = syslog.wait_for("tcp", before);
    assert!(
        early.len() >= before,
        "{} of {before} delivered",
        early.len()
    );
    let (status, native) = sensor.stop();
    assert!(status.success());
    let got = syslog.wait_for("tcp", native.len());
    let records: Vec<&Value> = got.iter().map(|(_, _, r)| r).collect();
    let want: Vec<&Value> = native.iter().collect();
    assert_eq!(records, want, "every record, in order, once");
    let stop = native.last().unwrap();
    let sink = &stop["sensor"]["sinks"][1];
    assert_eq!(sink["name"], output.as_str());
    assert_eq!(
        sink["records_written"].as_u64(),
        Some(native.len() as u64 - 1),
        "{sink}"
    );
    assert_eq!(
        (sink["write_failures"].as_u64(), sink["dropped"].as_u64()),
        (Some(0), Some(0))
    );
}
