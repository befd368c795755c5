//! `[detect]`: the named detections' thresholds and allowlists
//! (docs/detections.md).

use std::path::PathBuf;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::{ConfigError, MAX_INTERVAL_SECS, invalid};
use crate::event::DetectionId;

/// Archive, compression and transfer tools (`transfer_tool`), by the
/// executable's or script's file name.
pub const TRANSFER_TOOLS: &[&str] = &[
    // archives
    "tar",
    "bsdtar",
    "zip",
    "7z",
    "7za",
    "7zz",
    "rar",
    "cpio",
    "pax",
    // compressors
    "gzip",
    "pigz",
    "bzip2",
    "pbzip2",
    "xz",
    "pixz",
    "zstd",
    "pzstd",
    "lz4",
    // copy and transfer
    "rsync",
    "scp",
    "sftp",
    "curl",
    "wget",
    "nc",
    "ncat",
    "netcat",
    "socat",
    "rclone",
    "croc",
    // object-store and hub clients (often scripts run by an interpreter)
    "aws",
    "s3cmd",
    "gsutil",
    "gcloud",
    "azcopy",
    "az",
    "huggingface-cli",
    "hf",
];

/// Where `weightwarden baseline` writes when neither `--output` nor
/// `detect.baseline` says.
pub const DEFAULT_BASELINE: &str = "/var/lib/weightwarden/baseline.json";

/// Shells and interpreters (`serving_shell`); a name matches its
/// versioned forms too (`python3.11`).
pub const INTERPRETERS: &[&str] = &[
    "sh", "ash", "bash", "dash", "zsh", "ksh", "mksh", "fish", "csh", "tcsh", "busybox", "python",
    "perl", "ruby", "node", "php", "lua",
];

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct DetectConfig {
    /// Detections not to raise.
    pub disabled: Vec<DetectionId>,
    /// `bulk_read`: the share (0 < share <= 1) of a file's or a weight
    /// set's distinct bytes a process must read (or map).
    pub bulk_read_share: f64,
    /// `copy` through user space: the share of the bytes a process took
    /// from weights that it must write to one destination.
    pub copy_share: f64,
    /// A detection for the same process, file and id is written once per
    /// this many seconds; the repeats in between are counted in the next
    /// one's `suppressed`.
    pub repeat_window_secs: u64,
    /// At most this many detection records a minute; beyond it they are
    /// counted (`detect.rate_limited`) and not written.
    pub max_per_minute: u32,
    /// Executables trusted like a policy's `allow` (a backup job): no
    /// `bulk_read`, `copy`, `transfer_tool` or `unexpected_reader` for
    /// their processes.
    pub trusted_exes: Vec<PathBuf>,
    /// `egress`: peers (CIDR) that weights may be sent to.
    pub egress_allowed: Vec<IpNet>,
    /// `transfer_tool`: tool names (executable or script file names).
    pub transfer_tools: Vec<String>,
    /// `serving_shell`: shell and interpreter names.
    pub interpreters: Vec<String>,
    /// `integrity_mismatch`: the manifest `weightwarden baseline` wrote;
    /// `run` checks every file in it at start and each tampered file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub baseline: Option<PathBuf>,
}

impl Default for DetectConfig {
    fn default() -> Self {
        Self {
            disabled: Vec::new(),
            // Half the file: more than any header or index lookup reads,
            // less than a copy that was stopped halfway.
            bulk_read_share: 0.5,
            // Half: an archive or a compressed copy is smaller than the
            // weights (though weights compress poorly).
            copy_share: 0.5,
            // Ten minutes: a loop re-reading a model is one detection per
            // window, not one per read.
            repeat_window_secs: 600,
            // Ten a second on average: a SIEM can take it, a runaway
            // pattern cannot bury the other records.
            max_per_minute: 600,
            trusted_exes: Vec::new(),
            egress_allowed: Vec::new(),
            transfer_tools: TRANSFER_TOOLS.iter().map(|s| (*s).to_owned()).collect(),
            interpreters: INTERPRETERS.iter().map(|s| (*s).to_owned()).collect(),
            baseline: None,
        }
    }
}

impl DetectConfig {
    pub fn enabled(&self, id: DetectionId) -> bool {
        !self.disabled.contains(&id)
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let share = self.bulk_read_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(invalid(
                "detect.bulk_read_share",
                share.to_string(),
                "must be a share of the file above 0 and at most 1 (0.5 is half)",
            ));
        }
        let share = self.copy_share;
        if !(share > 0.0 && share <= 1.0) {
            return Err(invalid(
                "detect.copy_share",
                share.to_string(),
                "must be a share of the bytes taken above 0 and at most 1 (0.5 is half)",
            ));
        }
        if self.repeat_window_secs > MAX_INTERVAL_SECS {
            return Err(invalid(
                "detect.repeat_window_secs",
                self.repeat_window_secs.to_string(),
                format!("must be at most {MAX_INTERVAL_SECS} (a week); 0 writes every repeat"),
            ));
        }
        if self.max_per_minute == 0 {
            return Err(invalid(
                "detect.max_per_minute",
                "0",
                "must be > 0; disable detections with `detect.disabled` instead",
            ));
        }
        if let Some(exe) = self.trusted_exes.iter().find(|p| !p.is_absolute()) {
            return Err(invalid(
                "detect.trusted_exes",
                format!("{:?}", exe.display().to_string()),
                "each must be an absolute path to an executable",
            ));
        }
        if let Some(baseline) = self.baseline.as_ref().filter(|p| !p.is_absolute()) {
            return Err(invalid(
                "detect.baseline",
                format!("{:?}", baseline.display().to_string()),
                "must be an absolute path to a manifest written by `weightwarden baseline`",
            ));
        }
        for (key, names) in [
            ("detect.transfer_tools", &self.transfer_tools),
            ("detect.interpreters", &self.interpreters),
        ] {
            if let Some(bad) = names.iter().find(|n| n.is_empty() || n.contains('/')) {
                return Err(invalid(
                    key,
                    format!("{bad:?}"),
                    "each must be a file name (no `/`), matched against executable and script names",
                ));
            }
        }
        Ok(())
    }
}
