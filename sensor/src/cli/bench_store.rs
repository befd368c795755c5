//! `weightwarden bench-store` (hidden, for `cargo xtask bench`): fills a
//! new audit store with synthetic records through the real writer, as fast
//! as it takes them, and prints what it sustained as one JSON line.
//!
//! The records look like a busy GPU host's week: processes (pids reused,
//! each with its start time) that exec, open, read and close weight files
//! of ten models, and exit; one in a hundred reads is a detection. Times
//! are spread evenly over `--days` days up to now, so that a 24-hour
//! window holds a day's share.

use std::{path::PathBuf, time::Instant};

use super::exit;
use crate::{
    Chain,
    event::{Event, RecordId, Text, Timestamp},
    output::encode::{Encoder, native},
    store::{StoreSettings, Writer},
};

#[derive(Debug, clap::Args)]
pub struct BenchStoreArgs {
    /// The store to create (must not exist).
    #[arg(long, value_name = "PATH")]
    pub db: PathBuf,
    /// Records to write.
    #[arg(long, value_name = "N")]
    pub records: u64,
    /// Days the records' times span, ending now.
    #[arg(long, value_name = "DAYS", default_value_t = 7)]
    pub days: u64,
}

/// One record of each kind, as the agent writes them; the generator
/// changes who, what and when.
const TEMPLATES: [&str; 5] = [
    r#"{"schema":"weightwarden/1","id":"0000000000000001-1","seq":1,"time":"2026-11-28T20:28:31.476904479Z","host":"gpu-node-01","action":"exec","severity":"info","tier":"tracepoint","process":{"pid":1,"tid":1,"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","args":["python3","-m","vllm.entrypoints.openai.api_server","--model","/models/m0"],"args_truncated":false,"cgroup_id":1,"container_id":null,"container_runtime":null,"pod_uid":null,"start_time":"2026-11-28T20:15:21.992389107Z","gpu":false,"ancestors":[{"pid":1,"comm":"bash","exe":"/usr/bin/bash"},{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}]}}"#,
    r#"{"schema":"weightwarden/1","id":"0000000000000001-1","seq":1,"time":"2026-11-28T20:28:31.476904479Z","host":"gpu-node-01","action":"open","severity":"info","tier":"tracepoint","process":{"pid":1,"tid":1,"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","args":["python3","-m","vllm.entrypoints.openai.api_server","--model","/models/m0"],"args_truncated":false,"cgroup_id":1,"container_id":null,"container_runtime":null,"pod_uid":null,"start_time":"2026-11-28T20:15:21.992389107Z","gpu":false,"ancestors":[{"pid":1,"comm":"bash","exe":"/usr/bin/bash"},{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}]},"file":{"path":"/models/m0/model-00001-of-00020.safetensors","dev":"254:0","ino":1,"size":4294967296},"access":{"fd":3,"flags":["O_RDONLY","O_LARGEFILE"],"flags_raw":32768}}"#,
    r#"{"schema":"weightwarden/1","id":"0000000000000001-1","seq":1,"time":"2026-11-28T20:28:31.476904479Z","host":"gpu-node-01","action":"read","severity":"info","tier":"tracepoint","process":{"pid":1,"tid":1,"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","args":["python3","-m","vllm.entrypoints.openai.api_server","--model","/models/m0"],"args_truncated":false,"cgroup_id":1,"container_id":null,"container_runtime":null,"pod_uid":null,"start_time":"2026-11-28T20:15:21.992389107Z","gpu":false,"ancestors":[{"pid":1,"comm":"bash","exe":"/usr/bin/bash"},{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}]},"file":{"path":"/models/m0/model-00001-of-00020.safetensors","dev":"254:0","ino":1,"size":4294967296},"access":{"fd":3,"bytes":4294967296,"calls":4096,"coverage":1.0,"reason":"close","first_time":"2026-11-28T20:26:45.400915790Z","last_time":"2026-11-28T20:26:47.016726694Z"}}"#,
    r#"{"schema":"weightwarden/1","id":"0000000000000001-1","seq":1,"time":"2026-11-28T20:28:31.476904479Z","host":"gpu-node-01","action":"close","severity":"info","tier":"tracepoint","process":{"pid":1,"tid":1,"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","args":["python3","-m","vllm.entrypoints.openai.api_server","--model","/models/m0"],"args_truncated":false,"cgroup_id":1,"container_id":null,"container_runtime":null,"pod_uid":null,"start_time":"2026-11-28T20:15:21.992389107Z","gpu":false,"ancestors":[{"pid":1,"comm":"bash","exe":"/usr/bin/bash"},{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}]},"file":{"path":"/models/m0/model-00001-of-00020.safetensors","dev":"254:0","ino":1,"size":4294967296},"access":{"fd":3}}"#,
    r#"{"schema":"weightwarden/1","id":"0000000000000001-1","seq":1,"time":"2026-11-28T20:28:31.476904479Z","host":"gpu-node-01","action":"detection","severity":"medium","tier":"tracepoint","process":{"pid":1,"tid":1,"ppid":1,"uid":0,"gid":0,"comm":"python3","exe":"/usr/bin/python3.11","args":["python3","-m","vllm.entrypoints.openai.api_server","--model","/models/m0"],"args_truncated":false,"cgroup_id":1,"container_id":null,"container_runtime":null,"pod_uid":null,"start_time":"2026-11-28T20:15:21.992389107Z","gpu":false,"ancestors":[{"pid":1,"comm":"bash","exe":"/usr/bin/bash"},{"pid":1,"comm":"systemd","exe":"/usr/lib/systemd/systemd"}]},"file":{"path":"/models/m0/model-00001-of-00020.safetensors","dev":"254:0","ino":1,"size":4294967296},"access":{"fd":3,"bytes":4294967296,"calls":4096,"coverage":1.0,"reason":"close","first_time":"2026-11-28T20:26:45.400915790Z","last_time":"2026-11-28T20:26:47.016726694Z"},"detection":{"id":"bulk_read","summary":"python3 read most of a model","atlas":["AML.T0035"],"refs":["0000000000000001-1"],"suppressed":0,"bytes":4294967296,"share":1.0}}"#,
];

/// Records per process: exec, then open, read, close of one file.
const PER_PROCESS: u64 = 4;
const MODELS: u64 = 10;
const FILES_PER_MODEL: u64 = 20;
const EXES: [&str; 5] = [
    "/usr/bin/python3.11",
    "/usr/local/bin/llama-server",
    "/usr/bin/cat",
    "/usr/bin/tar",
    "/opt/backup/bin/restic",
];
const UIDS: [u32; 4] = [0, 1000, 1001, 65534];

pub fn execute(args: &BenchStoreArgs) -> u8 {
    if args.db.exists() {
        eprintln!(
            "weightwarden: {} exists; bench-store fills a new store",
            args.db.display()
        );
        return exit::USAGE;
    }
    let templates: Vec<Event> = match TEMPLATES.iter().map(|t| native::decode(t)).collect() {
        Ok(t) => t,
        Err(err) => {
            eprintln!("weightwarden: bench-store template: {}", Chain(&err));
            return exit::FAILURE;
        }
    };
    let writer = match Writer::start(&StoreSettings::at(&args.db)) {
        Ok(w) => w,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::USAGE;
        }
    };
    let now = crate::enrich::clock::unix_now_ns();
    let span = i128::from(args.days.max(1)) * 86_400 * 1_000_000_000;
    let start = now - span;
    let step = span / i128::from(args.records.max(1));
    let mut encoder = native::Native;
    let mut buf = Vec::with_capacity(2048);
    let began = Instant::now();
    let mut writer = writer;
    for n in 0..args.records {
        let event = synthetic(&templates, n, start + step * i128::from(n));
        buf.clear();
        if let Err(err) = encoder.encode(&event, &mut buf) {
            eprintln!("weightwarden: bench-store: {}", Chain(&err));
            return exit::FAILURE;
        }
        writer.submit_waiting(&event, &buf);
    }
    writer.finish();
    let seconds = began.elapsed().as_secs_f64();
    let bytes = std::fs::metadata(&args.db).map_or(0, |m| m.len());
    println!(
        "{}",
        serde_json::json!({
            "records": args.records,
            "seconds": seconds,
            "records_per_sec": args.records as f64 / seconds,
            "db_bytes": bytes,
            "lost": writer.lost(),
        })
    );
    exit::OK
}

/// Record `n` of the synthetic week, at `unix_ns`.
fn synthetic(templates: &[Event], n: u64, unix_ns: i128) -> Event {
    let process = n / PER_PROCESS;
    let kind = (n % PER_PROCESS) as usize;
    // One read in a hundred processes is a detection.
    let template = if kind == 2 && process.is_multiple_of(100) {
        4
    } else {
        kind
    };
    let mut e = templates[template].clone();
    e.id = Some(RecordId { run: 1, seq: n + 1 });
    e.time = Timestamp::from_unix_ns(unix_ns);
    // Pids wrap at 4 million, so most are reused over the week; the start
    // time tells the processes apart.
    let pid = (process % 4_000_000) as u32 + 300;
    if let Some(p) = &mut e.process {
        p.pid = pid;
        p.tid = pid;
        p.ppid = 100 + (process % 200) as u32;
        p.uid = UIDS[(process % UIDS.len() as u64) as usize];
        let exe = EXES[(process / 7 % EXES.len() as u64) as usize];
        p.exe = Some(Text::from(exe));
        p.comm = exe.rsplit('/').next().unwrap_or(exe).to_owned();
        p.start_time = Some(Timestamp::from_unix_ns(
            unix_ns - i128::from(kind as u32) * 1_000_000,
        ));
    }
    if let Some(f) = &mut e.file {
        let model = process % MODELS;
        let file = process / MODELS % FILES_PER_MODEL;
        f.path = Some(Text::from(
            format!(
                "/models/m{model}/model-{:05}-of-00020.safetensors",
                file + 1
            )
            .as_str(),
        ));
        f.ino = 1000 + model * FILES_PER_MODEL + file;
    }
    e
}
