//! Framing: what a destination needs around each encoded record, added as
//! the record joins the output's batch. The batch then holds exactly the
//! bytes that go on the wire, so the delivery thread, its disk spool and
//! a replay after a restart never need the event again.
//!
//! - files, stdout and `http:`: the record's line, as encoded;
//! - syslog: an RFC 5424 message whose structured data carries the key
//!   fields and whose MSG is the encoded record; octet-counted (RFC 6587)
//!   on streams (TCP, TLS, a stream unix socket), one per datagram on UDP
//!   and a datagram unix socket;
//! - Splunk HEC: one event envelope per record (`time`, `host`, `source`,
//!   `sourcetype`, `event`);
//! - Elastic: a `_bulk` `create` action per record whose `_id` is the
//!   record id, so a batch replayed after an outage indexes nothing twice.

use std::io::Write as _;

use crate::{
    config::{HttpApi, OutputSpec, SinkSpec, SyslogTransport},
    enrich::clock::format_unix_ns,
    event::{Event, Severity},
    output::{encode::Format, sink::Batch},
};

/// RFC 5424 structured data needs an SD-ID with a private enterprise
/// number; 32473 is the one RFC 5612 reserves for documentation, used
/// until weightwarden registers its own (docs/outputs.md).
pub const SYSLOG_SD_ID: &str = "weightwarden@32473";

/// How one output frames each record.
#[derive(Debug, Clone)]
pub enum Framer {
    /// The encoded line as it is.
    Line,
    Syslog {
        facility: u8,
        /// Octet counting (streams); without it, one message per datagram.
        counted: bool,
        procid: u32,
    },
    SplunkHec {
        sourcetype: String,
    },
    ElasticBulk,
}

impl Framer {
    pub fn for_output(spec: &OutputSpec) -> Self {
        match &spec.sink {
            SinkSpec::Stdout | SinkSpec::Jsonl(_) => Self::Line,
            SinkSpec::Syslog(syslog) => Self::Syslog {
                facility: syslog.facility,
                counted: matches!(
                    syslog.transport,
                    SyslogTransport::Tcp(_) | SyslogTransport::Tls(_)
                ),
                procid: std::process::id(),
            },
            SinkSpec::Http(http) => match http.api {
                HttpApi::Ndjson => Self::Line,
                HttpApi::SplunkHec => Self::SplunkHec {
                    sourcetype: sourcetype(spec.format),
                },
                HttpApi::Elastic => Self::ElasticBulk,
            },
        }
    }

    /// A unix socket turned out to be a stream: octet-count its messages.
    pub fn counted(self) -> Self {
        match self {
            Self::Syslog {
                facility, procid, ..
            } => Self::Syslog {
                facility,
                counted: true,
                procid,
            },
            other => other,
        }
    }

    /// Adds `record` (one encoded line, newline included) to `batch`,
    /// framed; `scratch` is reused between records.
    pub fn frame(&self, event: &Event, record: &[u8], scratch: &mut Vec<u8>, batch: &mut Batch) {
        let body = record.strip_suffix(b"\n").unwrap_or(record);
        match self {
            Self::Line => batch.push(record),
            Self::Syslog {
                facility,
                counted,
                procid,
            } => {
                scratch.clear();
                syslog_message(event, *facility, *procid, body, scratch);
                if *counted {
                    let mut framed = format!("{} ", scratch.len()).into_bytes();
                    framed.extend_from_slice(scratch);
                    batch.push(&framed);
                } else {
                    batch.push(scratch);
                }
            }
            Self::SplunkHec { sourcetype } => {
                scratch.clear();
                let secs = event.time.unix_ns as f64 / 1e9;
                let host = serde_json::to_string(&event.host).unwrap_or_else(|_| "\"\"".into());
                let _ = write!(
                    scratch,
                    "{{\"time\":{secs:.6},\"host\":{host},\"source\":\"weightwarden\",\
                     \"sourcetype\":\"{sourcetype}\",\"event\":"
                );
                scratch.extend_from_slice(body);
                scratch.extend_from_slice(b"}\n");
                batch.push(scratch);
            }
            Self::ElasticBulk => {
                scratch.clear();
                match event.id {
                    Some(id) => {
                        let _ = writeln!(scratch, "{{\"create\":{{\"_id\":\"{id}\"}}}}");
                    }
                    None => scratch.extend_from_slice(b"{\"create\":{}}\n"),
                }
                scratch.extend_from_slice(body);
                scratch.push(b'\n');
                batch.push(scratch);
            }
        }
    }
}

/// Splunk's sourcetype for an encoding (docs/outputs.md).
fn sourcetype(format: Format) -> String {
    format!("weightwarden:{}", format.name())
}

/// RFC 5424 severity for a record's severity.
fn syslog_severity(severity: Severity) -> u8 {
    match severity {
        Severity::Info => 6,
        Severity::Low => 5,
        Severity::Medium => 4,
        Severity::High => 3,
        Severity::Critical => 2,
    }
}

/// `<PRI>1 TIMESTAMP HOSTNAME APP-NAME PROCID MSGID [SD] MSG`.
fn syslog_message(event: &Event, facility: u8, procid: u32, body: &[u8], out: &mut Vec<u8>) {
    let pri = u16::from(facility) * 8 + u16::from(syslog_severity(event.severity));
    let time = format_unix_ns(event.time.unix_ns);
    // TIME-SECFRAC takes at most 6 digits.
    let time = match time.find('.') {
        Some(dot) if time.len() > dot + 7 => format!("{}Z", &time[..dot + 7]),
        _ => time,
    };
    let host = header_field(&event.host, 255);
    let _ = write!(
        out,
        "<{pri}>1 {time} {host} weightwarden {procid} {} [{SYSLOG_SD_ID}",
        event.action.name()
    );
    let mut param = |name: &str, value: &str| {
        let _ = write!(out, " {name}=\"");
        for c in value.chars() {
            if matches!(c, '"' | '\\' | ']') {
                out.push(b'\\');
            }
            let mut utf8 = [0; 4];
            out.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes());
        }
        out.push(b'"');
    };
    if let Some(id) = &event.id {
        param("id", &id.to_string());
        param("seq", &id.seq.to_string());
    }
    param("severity", event.severity.name());
    if let Some(p) = &event.process {
        param("pid", &p.pid.to_string());
        param("uid", &p.uid.to_string());
        param("comm", &p.comm);
        if let Some(exe) = &p.exe {
            param("exe", &String::from_utf8_lossy(exe.as_bytes()));
        }
        if let Some(c) = &p.container {
            param("container", &c.id);
        }
    }
    if let Some(path) = event.file.as_ref().and_then(|f| f.path.as_ref()) {
        param("path", &String::from_utf8_lossy(path.as_bytes()));
    }
    if let Some(d) = &event.detection {
        param("detection", d.id.as_str());
    }
    out.extend_from_slice(b"] ");
    out.extend_from_slice(body);
}

/// A header field: printable ASCII without spaces, at most `max` long,
/// `-` when empty (RFC 5424's NILVALUE).
fn header_field(text: &str, max: usize) -> String {
    let field: String = text
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .take(max)
        .collect();
    if field.is_empty() {
        "-".to_owned()
    } else {
        field
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{Action, RecordId, Tier, Timestamp};

    fn event() -> Event {
        Event {
            id: Some(RecordId { run: 0xab, seq: 7 }),
            time: Timestamp::from_unix_ns(1_767_225_600_123_456_789),
            host: "gpu 7".into(),
            action: Action::Heartbeat,
            severity: Severity::High,
            tier: Tier::Tracepoint,
            process: None,
            file: None,
            access: None,
            exit: None,
            sensor: None,
            policy: None,
            target: None,
            detection: None,
        }
    }

    fn framed(framer: &Framer) -> String {
        let mut batch = Batch::default();
        framer.frame(&event(), b"{\"a\":\"x]\"}\n", &mut Vec::new(), &mut batch);
        String::from_utf8(batch.bytes).expect("utf-8")
    }

    #[test]
    fn syslog_messages_are_rfc5424_with_structured_data() {
        let datagram = Framer::Syslog {
            facility: 16,
            counted: false,
            procid: 42,
        };
        // local0 (16) * 8 + error (3) = 131; microseconds; the space in
        // the host dropped; the record as MSG.
        let want = "<131>1 2026-01-01T00:00:00.123456Z gpu7 weightwarden 42 heartbeat \
                    [weightwarden@32473 id=\"00000000000000ab-7\" seq=\"7\" severity=\"high\"] \
                    {\"a\":\"x]\"}";
        assert_eq!(framed(&datagram), want);
        let stream = datagram.counted();
        assert_eq!(framed(&stream), format!("{} {want}", want.len()));
    }

    #[test]
    fn http_envelopes_carry_the_record() {
        let hec = framed(&Framer::SplunkHec {
            sourcetype: "weightwarden:ocsf".into(),
        });
        let v: serde_json::Value = serde_json::from_str(&hec).expect("json");
        assert_eq!(v["event"]["a"], "x]");
        assert_eq!(v["host"], "gpu 7");
        assert_eq!(v["time"].as_f64(), Some(1_767_225_600.123457));
        let bulk = framed(&Framer::ElasticBulk);
        assert_eq!(
            bulk,
            "{\"create\":{\"_id\":\"00000000000000ab-7\"}}\n{\"a\":\"x]\"}\n"
        );
    }
}
