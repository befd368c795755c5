//! `transfer_tool`: an archive, compression or transfer tool used a
//! watched file's bytes. Matched by the executable's name, by its identity
//! (a hard link or a renamed binary is still `tar`), and by the script an
//! interpreter runs (`aws`, `huggingface-cli` are Python scripts).

use std::path::Path;

use sensor_common::FileKey;

use super::{
    Context, Detector, Finding, about_file, file_label, file_name, process_name, uses_bytes,
};
use crate::{
    enrich::watch::identity,
    event::{Detection, DetectionId, Event, Process, Severity},
};

/// Where the tools' binaries are looked up for their identities.
const BIN_DIRS: &[&str] = &[
    "/usr/bin",
    "/bin",
    "/usr/sbin",
    "/sbin",
    "/usr/local/bin",
    "/usr/local/sbin",
];

pub struct TransferTool {
    names: Vec<String>,
    /// The installed tools' identities, with their names.
    identities: Vec<(FileKey, String)>,
}

impl TransferTool {
    pub fn new(names: &[String]) -> Self {
        let identities = names
            .iter()
            .flat_map(|name| {
                BIN_DIRS.iter().filter_map(move |dir| {
                    Some((identity(&Path::new(dir).join(name))?, name.clone()))
                })
            })
            .collect();
        Self {
            names: names.to_vec(),
            identities,
        }
    }

    /// The tool the process is, if any.
    fn tool(&self, p: &Process) -> Option<String> {
        if let Some(exe) = p.exe_id
            && let Some((_, name)) = self.identities.iter().find(|(key, _)| *key == exe)
        {
            return Some(name.clone());
        }
        let named = |bytes: &[u8]| {
            let name = file_name(bytes);
            self.names.iter().find(|n| n.as_bytes() == name).cloned()
        };
        p.exe
            .as_ref()
            .and_then(|exe| named(exe.as_bytes()))
            .or_else(|| named(p.comm.as_bytes()))
            // The script an interpreter runs: `python3 /usr/bin/aws s3 cp`.
            .or_else(|| p.args.get(1).and_then(|script| named(script.as_bytes())))
    }
}

impl Detector for TransferTool {
    fn id(&self) -> DetectionId {
        DetectionId::TransferTool
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if ctx.trusted.is_some() || !uses_bytes(event) {
            return Vec::new();
        }
        let (Some(process), Some(about)) = (&event.process, about_file(event)) else {
            return Vec::new();
        };
        let Some(tool) = self.tool(process) else {
            return Vec::new();
        };
        let mut d = Detection::new(
            DetectionId::TransferTool,
            format!("{tool}: {} used {}", process_name(event), file_label(event)),
        );
        d.refs = ctx.refs.to_vec();
        d.matched = Some(tool);
        vec![Finding {
            severity: Severity::High,
            about,
            detection: d,
            file: None,
        }]
    }
}
