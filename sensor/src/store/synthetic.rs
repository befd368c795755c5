//! Synthetic records that look like a busy GPU host's week: processes
//! (pids reused, each with its start time) that exec, then open, read and
//! close one weight file of ten models; one in a hundred reads is a
//! detection. For `bench-store`, and for the store's tests.

use crate::{
    event::{Event, RecordId, Text, Timestamp},
    output::encode::native::{self, DecodeError},
};

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

/// The templates, decoded.
pub fn templates() -> Result<Vec<Event>, DecodeError> {
    TEMPLATES.iter().map(|t| native::decode(t)).collect()
}

/// Record `n` of the synthetic week that starts at `start`, a record
/// every `step` ns.
pub fn event(templates: &[Event], n: u64, start: i128, step: i128) -> Event {
    let unix_ns = start + step * i128::from(n);
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
        // Started 1 ms before its first record (its exec).
        p.start_time = Some(Timestamp::from_unix_ns(
            start + step * i128::from(process * PER_PROCESS) - 1_000_000,
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
