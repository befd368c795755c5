//! `[output] sinks` and `--output`: where records go, in which encoding,
//! how they are delivered — one string per output: a destination (`stdout`,
//! `jsonl:PATH`, `syslog:...`, `http:URL`, `splunk-hec:URL`,
//! `elastic:URL/INDEX`), then `?NAME=VALUE&...` options (docs/outputs.md).

use std::{fmt, path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Serialize};

use crate::output::encode::Format;

/// One output: where records go, in which encoding, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSpec {
    pub sink: SinkSpec,
    pub format: Format,
    /// For `jsonl:` files.
    pub rotation: Option<Rotation>,
    /// For TLS destinations: the CA certificates to trust instead of the
    /// built-in public roots (`ca=PATH`, a PEM file).
    pub tls: TlsOptions,
    pub delivery: Delivery,
}

/// Where an output writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SinkSpec {
    /// One record per line on standard output.
    Stdout,
    /// One record per line appended to the file at this path.
    Jsonl(PathBuf),
    /// RFC 5424 syslog messages.
    Syslog(SyslogSpec),
    /// Batches POSTed to an HTTP(S) endpoint.
    Http(HttpSpec),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyslogSpec {
    pub transport: SyslogTransport,
    /// RFC 5424 facility number (`facility=local0` is 16).
    pub facility: u8,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyslogTransport {
    /// `HOST:PORT`, one datagram per record (RFC 5426).
    Udp(String),
    /// `HOST:PORT`, octet-counted frames (RFC 6587).
    Tcp(String),
    /// `HOST:PORT`, octet-counted frames over TLS (RFC 5425).
    Tls(String),
    /// A local socket (`/dev/log`): datagrams, or octet-counted frames on
    /// a stream socket.
    Unix(PathBuf),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpSpec {
    pub api: HttpApi,
    /// `http://` or `https://`, as given (the index included for Elastic).
    pub url: String,
    pub token: Option<Secret>,
    /// Request bodies gzip-compressed.
    pub gzip: bool,
    /// A request is sent when its body reaches this size...
    pub batch_bytes: usize,
    /// ... or its first record has waited this long.
    pub batch_age: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpApi {
    /// `http:URL`: NDJSON, one record per line.
    Ndjson,
    /// `splunk-hec:URL`: Splunk's HTTP Event Collector.
    SplunkHec,
    /// `elastic:URL/INDEX`: Elasticsearch's `_bulk` API.
    Elastic,
}

/// A credential: given inline, or read from a file at start-up (a
/// Kubernetes Secret mounted as a file keeps it out of the config).
#[derive(Clone, PartialEq, Eq)]
pub enum Secret {
    Inline(String),
    File(PathBuf),
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Inline(_) => f.write_str("Inline(<redacted>)"),
            Self::File(path) => write!(f, "File({})", path.display()),
        }
    }
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    pub ca: Option<PathBuf>,
}

/// How an output's records wait for its destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delivery {
    /// Bytes of encoded records held in memory for the output's thread;
    /// beyond them, records are dropped (and counted).
    pub queue_bytes: u64,
    /// Bytes the output may keep on disk while its destination is down
    /// (0: no spool; records that cannot be delivered are lost).
    pub spool_bytes: u64,
}

/// When a `jsonl:` file is moved aside for a new one (`PATH` → `PATH.1` →
/// ... → `PATH.KEEP`, the oldest dropped), always between two records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rotation {
    /// When the next batch would take the file past this size.
    pub max_bytes: Option<u64>,
    /// When the agent has written to the file this long.
    pub max_age: Option<Duration>,
    /// Rotated files kept.
    pub keep: u32,
}

/// Rotated files kept when `keep` is not given.
pub const DEFAULT_KEEP: u32 = 5;
/// The most rotated files an output may keep.
const MAX_KEEP: u32 = 1000;
/// An output's memory queue when `queue` is not given.
pub const DEFAULT_QUEUE_BYTES: u64 = 16 << 20;
/// A network output's spool when `spool` is not given.
pub const DEFAULT_SPOOL_BYTES: u64 = 1 << 30;
const DEFAULT_BATCH_BYTES: usize = 1 << 20;
const DEFAULT_BATCH_AGE: Duration = Duration::from_secs(1);
/// The largest HTTP request body an output may ask for.
const MAX_BATCH_BYTES: usize = 64 << 20;
/// The facility when `facility` is not given: local0.
const DEFAULT_FACILITY: u8 = 16;
const FACILITIES: [&str; 24] = [
    "kern", "user", "mail", "daemon", "auth", "syslog", "lpr", "news", "uucp", "cron", "authpriv",
    "ftp", "ntp", "audit", "alert", "clock", "local0", "local1", "local2", "local3", "local4",
    "local5", "local6", "local7",
];

impl OutputSpec {
    /// Native records to `sink`, every option at its default.
    pub fn new(sink: SinkSpec) -> Self {
        let spool_bytes = if sink.spools() {
            DEFAULT_SPOOL_BYTES
        } else {
            0
        };
        Self {
            sink,
            format: Format::Native,
            rotation: None,
            tls: TlsOptions::default(),
            delivery: Delivery {
                queue_bytes: DEFAULT_QUEUE_BYTES,
                spool_bytes,
            },
        }
    }

    /// Native records to standard output.
    pub fn stdout() -> Self {
        Self::new(SinkSpec::Stdout)
    }

    /// Native records to a JSON lines file.
    pub fn jsonl(path: impl Into<PathBuf>) -> Self {
        Self::new(SinkSpec::Jsonl(path.into()))
    }
}

impl SinkSpec {
    /// A destination that can be down for a while and come back: its
    /// records wait in a spool. A local file or stdout fails for good (a
    /// full disk, a closed pipe), and UDP never learns of a loss.
    pub fn spools(&self) -> bool {
        match self {
            Self::Stdout | Self::Jsonl(_) => false,
            Self::Syslog(s) => !matches!(s.transport, SyslogTransport::Udp(_)),
            Self::Http(_) => true,
        }
    }

    fn uses_tls(&self) -> bool {
        match self {
            Self::Syslog(s) => matches!(s.transport, SyslogTransport::Tls(_)),
            Self::Http(h) => h.url.starts_with("https://"),
            Self::Stdout | Self::Jsonl(_) => false,
        }
    }
}

/// The string forms [`OutputSpec`] accepts, for error messages.
pub const OUTPUT_FORMS: &str = "`stdout`, `jsonl:PATH`, `syslog:udp://HOST:PORT`, \
     `syslog:tcp://HOST:PORT`, `syslog:tls://HOST:PORT`, `syslog:unix:///dev/log`, `http:URL`, \
     `splunk-hec:URL` or `elastic:URL/INDEX`, optionally followed by `?format=native|ocsf|ecs` \
     and the destination's options (docs/outputs.md)";

/// Why an output spec string was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputSpecError {
    #[error("invalid output {value:?}: expected {OUTPUT_FORMS}")]
    UnknownForm { value: String },
    #[error("invalid output {value:?}: the path after `jsonl:` is empty (expected {OUTPUT_FORMS})")]
    EmptyPath { value: String },
    #[error("invalid output {value:?}: {problem}")]
    BadDestination { value: String, problem: String },
    #[error(
        "invalid output {value:?}: unknown format {format:?} (the formats are native, ocsf and ecs)"
    )]
    UnknownFormat { value: String, format: String },
    #[error("invalid output {value:?}: unknown option {option:?} (this output takes {takes})")]
    UnknownOption {
        value: String,
        option: String,
        takes: &'static str,
    },
    #[error("invalid output {value:?}: {option}: {problem}")]
    BadOption {
        value: String,
        option: String,
        problem: String,
    },
}

/// `64MiB`, `100M`, `1G`, `4096`: bytes (K/M/G and KiB/MiB/GiB are both
/// powers of 1024).
fn parse_size(text: &str) -> Option<u64> {
    let digits = text.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let unit = &text[digits.len()..];
    let scale: u64 = match unit {
        "" | "B" => 1,
        "K" | "KiB" => 1 << 10,
        "M" | "MiB" => 1 << 20,
        "G" | "GiB" => 1 << 30,
        _ => return None,
    };
    digits.parse::<u64>().ok()?.checked_mul(scale)
}

/// `30s`, `90m`, `24h`, `7d`, and `250ms`.
fn parse_age(text: &str) -> Option<Duration> {
    if let Some(ms) = text.strip_suffix("ms") {
        return ms.parse().ok().map(Duration::from_millis);
    }
    let unit = text.chars().last()?;
    let secs: u64 = match unit {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let n: u64 = text[..text.len() - 1].parse().ok()?;
    Some(Duration::from_secs(n.checked_mul(secs)?))
}

/// Writes a size the way [`parse_size`] reads it back.
fn size_text(bytes: u64) -> String {
    for (unit, scale) in [("GiB", 1u64 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)] {
        if bytes >= scale && bytes.is_multiple_of(scale) {
            return format!("{}{unit}", bytes / scale);
        }
    }
    bytes.to_string()
}

fn age_text(age: Duration) -> String {
    if age.subsec_millis() != 0 {
        format!("{}ms", age.as_millis())
    } else {
        format!("{}s", age.as_secs())
    }
}

/// `HOST:PORT` with a host and a port above 0 (an IPv6 host in brackets).
fn valid_address(address: &str) -> bool {
    let Some((host, port)) = address.rsplit_once(':') else {
        return false;
    };
    let host_ok =
        !host.is_empty() && !host.contains('/') && (!host.contains(':') || host.starts_with('['));
    host_ok && port.parse::<u16>().is_ok_and(|p| p > 0)
}

fn parse_destination(s: &str, destination: &str) -> Result<SinkSpec, OutputSpecError> {
    let bad = |problem: &str| OutputSpecError::BadDestination {
        value: s.to_owned(),
        problem: problem.to_owned(),
    };
    if destination == "stdout" {
        return Ok(SinkSpec::Stdout);
    }
    if let Some(path) = destination.strip_prefix("jsonl:") {
        if path.is_empty() {
            return Err(OutputSpecError::EmptyPath {
                value: s.to_owned(),
            });
        }
        return Ok(SinkSpec::Jsonl(PathBuf::from(path)));
    }
    if let Some(rest) = destination.strip_prefix("syslog:") {
        let transport = if let Some(path) = rest.strip_prefix("unix://") {
            if !path.starts_with('/') {
                return Err(bad(
                    "syslog:unix:// takes an absolute socket path, as in syslog:unix:///dev/log",
                ));
            }
            SyslogTransport::Unix(PathBuf::from(path))
        } else {
            let (scheme, address) = rest.split_once("://").ok_or_else(|| {
                bad("syslog outputs are syslog:udp://HOST:PORT, syslog:tcp://HOST:PORT, syslog:tls://HOST:PORT or syslog:unix:///dev/log")
            })?;
            if !valid_address(address) {
                return Err(bad(
                    "give the syslog server as HOST:PORT, such as syslog:tcp://logs.example:514",
                ));
            }
            let address = address.to_owned();
            match scheme {
                "udp" => SyslogTransport::Udp(address),
                "tcp" => SyslogTransport::Tcp(address),
                "tls" => SyslogTransport::Tls(address),
                _ => return Err(bad("the syslog transports are udp, tcp, tls and unix")),
            }
        };
        return Ok(SinkSpec::Syslog(SyslogSpec {
            transport,
            facility: DEFAULT_FACILITY,
        }));
    }
    let apis = [
        ("http:", HttpApi::Ndjson),
        ("splunk-hec:", HttpApi::SplunkHec),
        ("elastic:", HttpApi::Elastic),
    ];
    for (prefix, api) in apis {
        let Some(url) = destination.strip_prefix(prefix) else {
            continue;
        };
        let Some(rest) = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"))
        else {
            return Err(bad(&format!(
                "the URL after `{prefix}` must start with http:// or https://"
            )));
        };
        let host = rest.split('/').next().unwrap_or_default();
        if host.is_empty() || host.contains('@') {
            return Err(bad(
                "the URL needs a host, and no user:password@ (give token= or token_file=)",
            ));
        }
        if url.parse::<ureq::http::Uri>().is_err() {
            return Err(bad("the URL is not valid"));
        }
        if api == HttpApi::Elastic && rest.trim_end_matches('/').split('/').count() < 2 {
            return Err(bad(
                "elastic:URL/INDEX needs the index (or data stream) after the URL, as in elastic:https://es.example:9200/weightwarden",
            ));
        }
        return Ok(SinkSpec::Http(HttpSpec {
            api,
            url: url.trim_end_matches('/').to_owned(),
            token: None,
            gzip: false,
            batch_bytes: DEFAULT_BATCH_BYTES,
            batch_age: DEFAULT_BATCH_AGE,
        }));
    }
    Err(OutputSpecError::UnknownForm {
        value: s.to_owned(),
    })
}

/// The options each kind of output takes, for error messages.
fn options_taken(sink: &SinkSpec) -> &'static str {
    match sink {
        SinkSpec::Stdout => "format and queue",
        SinkSpec::Jsonl(_) => "format, queue, rotate_size, rotate_age and keep",
        SinkSpec::Syslog(s) => match s.transport {
            SyslogTransport::Udp(_) => "format, queue and facility",
            SyslogTransport::Tls(_) => "format, queue, spool, facility and ca",
            _ => "format, queue, spool and facility",
        },
        SinkSpec::Http(h) if h.url.starts_with("https://") => {
            "format, queue, spool, token, token_file, gzip, batch_size, batch_age and ca"
        }
        SinkSpec::Http(_) => {
            "format, queue, spool, token, token_file, gzip, batch_size and batch_age"
        }
    }
}

impl FromStr for OutputSpec {
    type Err = OutputSpecError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        // `?name=value&...` after the destination; a `?` with no such
        // options after it is part of a path.
        let (destination, options) = match s.rsplit_once('?') {
            Some((destination, options))
                if options.split('&').all(|o| {
                    o.split_once('=')
                        .is_some_and(|(n, _)| !n.is_empty() && !n.contains('/'))
                }) =>
            {
                (destination, Some(options))
            }
            _ => (s, None),
        };
        let mut spec = OutputSpec::new(parse_destination(s, destination)?);
        let bad = |option: &str, problem: &str| OutputSpecError::BadOption {
            value: s.to_owned(),
            option: option.to_owned(),
            problem: problem.to_owned(),
        };
        let unknown = |option: &str, sink: &SinkSpec| OutputSpecError::UnknownOption {
            value: s.to_owned(),
            option: option.to_owned(),
            takes: options_taken(sink),
        };
        let (mut max_bytes, mut max_age, mut keep) = (None, None, None);
        for option in options.into_iter().flat_map(|o| o.split('&')) {
            let (name, value) = option.split_once('=').unwrap_or((option, ""));
            let size = |what: &str| {
                parse_size(value)
                    .ok_or_else(|| bad(option, &format!("give {what} such as 64MiB, 512K or 1G")))
            };
            match (name, &mut spec.sink) {
                ("format", _) => {
                    spec.format =
                        Format::named(value).ok_or_else(|| OutputSpecError::UnknownFormat {
                            value: s.to_owned(),
                            format: value.to_owned(),
                        })?;
                }
                ("queue", _) => {
                    spec.delivery.queue_bytes = size("a size")?;
                    if spec.delivery.queue_bytes < 64 << 10 {
                        return Err(bad(option, "give at least 64KiB"));
                    }
                }
                ("spool", sink) if sink.spools() => {
                    spec.delivery.spool_bytes = size("a size (0 for no spool)")?
                }
                ("rotate_size", SinkSpec::Jsonl(_)) => {
                    let bytes = parse_size(value).filter(|&b| b > 0).ok_or_else(|| {
                        bad(option, "give a size above 0 such as 100MiB, 512K or 1G")
                    })?;
                    max_bytes = Some(bytes);
                }
                ("rotate_age", SinkSpec::Jsonl(_)) => {
                    let age = parse_age(value)
                        .filter(|a| !a.is_zero())
                        .ok_or_else(|| bad(option, "give an age above 0 such as 90m, 24h or 7d"))?;
                    max_age = Some(age);
                }
                ("keep", SinkSpec::Jsonl(_)) => {
                    let n = value
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=MAX_KEEP).contains(n))
                        .ok_or_else(|| bad(option, "give 1 to 1000 rotated files to keep"))?;
                    keep = Some(n);
                }
                ("facility", SinkSpec::Syslog(syslog)) => {
                    syslog.facility = FACILITIES
                        .iter()
                        .position(|f| *f == value)
                        .ok_or_else(|| bad(option, "give a syslog facility: local0 to local7, auth, authpriv, daemon, user, ..."))?
                        as u8;
                }
                ("ca", sink) if sink.uses_tls() => {
                    if value.is_empty() {
                        return Err(bad(
                            option,
                            "give the path of a PEM file of CA certificates",
                        ));
                    }
                    spec.tls.ca = Some(PathBuf::from(value));
                }
                ("token" | "token_file", SinkSpec::Http(http)) => {
                    if value.is_empty() {
                        return Err(bad(
                            option,
                            "give the token, or the path of a file holding it",
                        ));
                    }
                    if http.token.is_some() {
                        return Err(bad(option, "give token or token_file, once"));
                    }
                    http.token = Some(if name == "token" {
                        Secret::Inline(value.to_owned())
                    } else {
                        Secret::File(PathBuf::from(value))
                    });
                }
                ("gzip", SinkSpec::Http(http)) => {
                    http.gzip = match value {
                        "on" | "true" => true,
                        "off" | "false" => false,
                        _ => return Err(bad(option, "give on or off")),
                    };
                }
                ("batch_size", SinkSpec::Http(http)) => {
                    http.batch_bytes = parse_size(value)
                        .and_then(|b| usize::try_from(b).ok())
                        .filter(|b| (1..=MAX_BATCH_BYTES).contains(b))
                        .ok_or_else(|| {
                            bad(option, "give a size from 1 byte to 64MiB, such as 1MiB")
                        })?;
                }
                ("batch_age", SinkSpec::Http(http)) => {
                    http.batch_age = parse_age(value)
                        .filter(|a| !a.is_zero() && *a <= Duration::from_secs(3600))
                        .ok_or_else(|| {
                            bad(
                                option,
                                "give a time above 0 and at most 1h, such as 500ms or 5s",
                            )
                        })?;
                }
                (_, sink) => return Err(unknown(option, sink)),
            }
        }
        let rotating = max_bytes.is_some() || max_age.is_some();
        if let Some(n) = keep.filter(|_| !rotating) {
            return Err(bad(
                &format!("keep={n}"),
                "keep says how many rotated files to keep: give rotate_size or rotate_age too",
            ));
        }
        spec.rotation = rotating.then(|| Rotation {
            max_bytes,
            max_age,
            keep: keep.unwrap_or(DEFAULT_KEEP),
        });
        Ok(spec)
    }
}

impl fmt::Display for SinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Stdout => f.write_str("stdout"),
            Self::Jsonl(path) => write!(f, "jsonl:{}", path.display()),
            Self::Syslog(syslog) => match &syslog.transport {
                SyslogTransport::Udp(a) => write!(f, "syslog:udp://{a}"),
                SyslogTransport::Tcp(a) => write!(f, "syslog:tcp://{a}"),
                SyslogTransport::Tls(a) => write!(f, "syslog:tls://{a}"),
                SyslogTransport::Unix(p) => write!(f, "syslog:unix://{}", p.display()),
            },
            Self::Http(http) => {
                let prefix = match http.api {
                    HttpApi::Ndjson => "http",
                    HttpApi::SplunkHec => "splunk-hec",
                    HttpApi::Elastic => "elastic",
                };
                write!(f, "{prefix}:{}", http.url)
            }
        }
    }
}

impl fmt::Display for OutputSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut options = Vec::new();
        if self.format != Format::Native {
            options.push(format!("format={}", self.format.name()));
        }
        if let Some(r) = &self.rotation {
            if let Some(bytes) = r.max_bytes {
                options.push(format!("rotate_size={}", size_text(bytes)));
            }
            if let Some(age) = r.max_age {
                options.push(format!("rotate_age={}", age_text(age)));
            }
            options.push(format!("keep={}", r.keep));
        }
        if self.delivery.queue_bytes != DEFAULT_QUEUE_BYTES {
            options.push(format!("queue={}", size_text(self.delivery.queue_bytes)));
        }
        if self.sink.spools() && self.delivery.spool_bytes != DEFAULT_SPOOL_BYTES {
            options.push(format!("spool={}", size_text(self.delivery.spool_bytes)));
        }
        match &self.sink {
            SinkSpec::Syslog(syslog) if syslog.facility != DEFAULT_FACILITY => {
                options.push(format!("facility={}", FACILITIES[syslog.facility as usize]));
            }
            SinkSpec::Http(http) => {
                match &http.token {
                    Some(Secret::Inline(t)) => options.push(format!("token={t}")),
                    Some(Secret::File(p)) => options.push(format!("token_file={}", p.display())),
                    None => {}
                }
                if http.gzip {
                    options.push("gzip=on".to_owned());
                }
                if http.batch_bytes != DEFAULT_BATCH_BYTES {
                    options.push(format!("batch_size={}", size_text(http.batch_bytes as u64)));
                }
                if http.batch_age != DEFAULT_BATCH_AGE {
                    options.push(format!("batch_age={}", age_text(http.batch_age)));
                }
            }
            _ => {}
        }
        if let Some(ca) = &self.tls.ca {
            options.push(format!("ca={}", ca.display()));
        }
        write!(f, "{}", self.sink)?;
        if !options.is_empty() {
            write!(f, "?{}", options.join("&"))?;
        }
        Ok(())
    }
}

impl Serialize for OutputSpec {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Display is lossy for non-UTF-8 paths; writing a config that
        // silently names a different file would be worse than failing.
        if let SinkSpec::Jsonl(path) = &self.sink
            && path.to_str().is_none()
        {
            return Err(serde::ser::Error::custom(format!(
                "output path {} is not valid UTF-8 and cannot be written to TOML",
                path.display()
            )));
        }
        serializer.serialize_str(&self.to_string())
    }
}

impl<'de> Deserialize<'de> for OutputSpec {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;

        impl serde::de::Visitor<'_> for Visitor {
            type Value = OutputSpec;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "an output string, {OUTPUT_FORMS}")
            }

            fn visit_str<E: serde::de::Error>(self, value: &str) -> Result<OutputSpec, E> {
                value.parse().map_err(E::custom)
            }
        }

        deserializer.deserialize_str(Visitor)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_rotate_by_size_age_and_keep() {
        let spec: OutputSpec = "jsonl:/var/log/ww.jsonl?format=ocsf&rotate_size=64MiB&keep=3"
            .parse()
            .expect("spec");
        assert_eq!(spec.format, Format::Ocsf);
        assert_eq!(
            spec.rotation,
            Some(Rotation {
                max_bytes: Some(64 << 20),
                max_age: None,
                keep: 3
            })
        );
        let spec: OutputSpec = "jsonl:/x?rotate_age=24h".parse().expect("age");
        assert_eq!(
            spec.rotation,
            Some(Rotation {
                max_bytes: None,
                max_age: Some(Duration::from_secs(86_400)),
                keep: DEFAULT_KEEP
            })
        );
        // Written back in a form that reads the same.
        let again: OutputSpec = spec.to_string().parse().expect("round trip");
        assert_eq!(again, spec);
        assert_eq!(parse_size("512K"), Some(512 << 10));
        assert_eq!(parse_size("1G"), Some(1 << 30));
        assert_eq!(parse_size("4096"), Some(4096));
        assert_eq!(parse_size("1T"), None);
        for (text, says) in [
            ("jsonl:/x?rotate_size=0", "above 0"),
            ("jsonl:/x?rotate_size=lots", "100MiB"),
            ("jsonl:/x?rotate_age=1w", "24h"),
            ("jsonl:/x?keep=3", "give rotate_size or rotate_age too"),
            ("jsonl:/x?rotate_size=1M&keep=0", "1 to 1000"),
            ("stdout?rotate_size=1M", "unknown option \"rotate_size=1M\""),
            ("jsonl:/x?compress=gzip", "unknown option \"compress=gzip\""),
        ] {
            let err = text.parse::<OutputSpec>().expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }

    #[test]
    fn network_outputs_parse_their_options_and_round_trip() {
        let spec: OutputSpec =
            "syslog:tls://logs.example:6514?ca=/etc/ww/ca.pem&facility=authpriv&format=ecs"
                .parse()
                .expect("syslog tls");
        assert_eq!(
            spec.sink,
            SinkSpec::Syslog(SyslogSpec {
                transport: SyslogTransport::Tls("logs.example:6514".into()),
                facility: 10,
            })
        );
        assert_eq!(
            spec.tls.ca.as_deref(),
            Some(std::path::Path::new("/etc/ww/ca.pem"))
        );
        assert_eq!(spec.delivery.spool_bytes, DEFAULT_SPOOL_BYTES);
        let udp: OutputSpec = "syslog:udp://[::1]:514".parse().expect("udp");
        assert_eq!(udp.delivery.spool_bytes, 0, "UDP has no spool");
        let hec: OutputSpec = "splunk-hec:https://splunk:8088?token_file=/run/secrets/hec&gzip=on&batch_size=512K&batch_age=250ms&spool=2GiB&queue=64MiB"
            .parse()
            .expect("hec");
        let SinkSpec::Http(http) = &hec.sink else {
            panic!("http")
        };
        assert_eq!(http.api, HttpApi::SplunkHec);
        assert_eq!(http.token, Some(Secret::File("/run/secrets/hec".into())));
        assert!(http.gzip);
        assert_eq!(
            (http.batch_bytes, http.batch_age),
            (512 << 10, Duration::from_millis(250))
        );
        assert_eq!(
            hec.delivery,
            Delivery {
                queue_bytes: 64 << 20,
                spool_bytes: 2 << 30
            }
        );
        // A secret given inline is never in Debug output.
        let inline: OutputSpec = "http:http://collector/x?token=s3cret"
            .parse()
            .expect("http");
        assert!(!format!("{inline:?}").contains("s3cret"));
        for text in [
            "syslog:tls://logs.example:6514?ca=/etc/ww/ca.pem&facility=authpriv&format=ecs",
            "splunk-hec:https://splunk:8088?token_file=/run/secrets/hec&gzip=on&batch_size=512KiB&batch_age=250ms&queue=64MiB&spool=2GiB",
            "elastic:https://es:9200/weightwarden?format=ecs&spool=0",
            "syslog:unix:///dev/log",
            "http:http://collector/x?token=s3cret",
        ] {
            let spec: OutputSpec = text.parse().expect(text);
            let again: OutputSpec = spec.to_string().parse().expect("round trip");
            assert_eq!(again, spec, "{text} -> {spec}");
        }
        for (text, says) in [
            ("syslog:tcp://logs.example", "HOST:PORT"),
            ("syslog:sctp://logs:514", "udp, tcp, tls and unix"),
            ("syslog:unix://dev/log", "absolute socket path"),
            ("syslog:udp://h:514?spool=1G", "unknown option \"spool=1G\""),
            ("syslog:tcp://h:514?ca=/x", "unknown option \"ca=/x\""),
            ("syslog:tcp://h:514?facility=local9", "syslog facility"),
            ("http:ftp://x/y", "http:// or https://"),
            ("http:https://user:pw@x/y", "token= or token_file="),
            ("elastic:https://es:9200", "needs the index"),
            ("http:http://x/y?token=a&token_file=/b", "once"),
            ("http:http://x/y?batch_size=1G", "64MiB"),
            ("http:http://x/y?gzip=yes", "on or off"),
            ("jsonl:/x?spool=1G", "unknown option \"spool=1G\""),
            ("stdout?queue=1K", "at least 64KiB"),
        ] {
            let err = text.parse::<OutputSpec>().expect_err(text).to_string();
            assert!(err.contains(says), "{text}: {err}");
        }
    }
}
