//! What a detection record says: which named theft pattern a process
//! matched, how bad it is, and the records it was built from.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The stable detection identifiers (`detection.id`). docs/detections.md
/// documents each one; a name is never reused for another meaning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DetectionId {
    /// A process not allowed to read weights read most of a file or set.
    BulkRead,
    /// A watched file's bytes were copied to another file, pipe or socket.
    Copy,
    /// A process that read weights sent data to a network peer.
    Egress,
    /// An archive, compression or transfer tool touched weights.
    TransferTool,
    /// A process read the memory of a process holding weights.
    MemoryRead,
    /// A weight file was written, truncated, renamed, unlinked or
    /// re-permissioned.
    Tamper,
    /// A weight file no longer has its baseline SHA-256.
    IntegrityMismatch,
    /// Weights opened by a process neither allowed nor GPU-serving.
    UnexpectedReader,
    /// A shell or interpreter under a GPU-serving process touched weights.
    ServingShell,
}

impl DetectionId {
    pub const ALL: [DetectionId; 9] = [
        DetectionId::BulkRead,
        DetectionId::Copy,
        DetectionId::Egress,
        DetectionId::TransferTool,
        DetectionId::MemoryRead,
        DetectionId::Tamper,
        DetectionId::IntegrityMismatch,
        DetectionId::UnexpectedReader,
        DetectionId::ServingShell,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DetectionId::BulkRead => "bulk_read",
            DetectionId::Copy => "copy",
            DetectionId::Egress => "egress",
            DetectionId::TransferTool => "transfer_tool",
            DetectionId::MemoryRead => "memory_read",
            DetectionId::Tamper => "tamper",
            DetectionId::IntegrityMismatch => "integrity_mismatch",
            DetectionId::UnexpectedReader => "unexpected_reader",
            DetectionId::ServingShell => "serving_shell",
        }
    }

    /// The MITRE ATLAS techniques the pattern is evidence of
    /// (<https://atlas.mitre.org/techniques>).
    pub fn atlas(self) -> &'static [&'static str] {
        // AML.T0035 ML Artifact Collection; AML.T0037 Data from Local
        // System; AML.T0025 Exfiltration via Cyber Means; AML.T0018
        // Manipulate AI Model; AML.T0031 Erode AI Model Integrity;
        // AML.T0010.003 AI Supply Chain Compromise: Model; AML.T0007
        // Discover AI Artifacts; AML.T0050 Command and Scripting
        // Interpreter.
        match self {
            DetectionId::BulkRead => &["AML.T0035", "AML.T0037"],
            DetectionId::Copy => &["AML.T0035"],
            DetectionId::Egress => &["AML.T0025"],
            DetectionId::TransferTool => &["AML.T0035", "AML.T0025"],
            DetectionId::MemoryRead => &["AML.T0035", "AML.T0037"],
            DetectionId::Tamper => &["AML.T0018", "AML.T0031"],
            DetectionId::IntegrityMismatch => &["AML.T0018", "AML.T0010.003"],
            DetectionId::UnexpectedReader => &["AML.T0007", "AML.T0035"],
            DetectionId::ServingShell => &["AML.T0050", "AML.T0035"],
        }
    }
}

impl fmt::Display for DetectionId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's identity: the agent run that wrote it and its place in that
/// run's sequence. Written as `id` (`RUN-SEQ`, unique across runs and
/// hosts) and `seq` (gaps in it are lost records).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RecordId {
    /// Random per agent run, so two runs' sequences never collide.
    pub run: u64,
    /// From 1, one per record the run wrote.
    pub seq: u64,
}

impl fmt::Display for RecordId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}-{}", self.run, self.seq)
    }
}

impl std::str::FromStr for RecordId {
    type Err = ();

    fn from_str(s: &str) -> Result<Self, ()> {
        let (run, seq) = s.split_once('-').ok_or(())?;
        if run.len() != 16 {
            return Err(());
        }
        Ok(RecordId {
            run: u64::from_str_radix(run, 16).map_err(|_| ())?,
            seq: seq.parse().map_err(|_| ())?,
        })
    }
}

/// The `detection` object of a `detection` record.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    pub id: DetectionId,
    /// One line for a person: who did what to which weights.
    pub summary: String,
    /// The records this detection was built from, oldest first.
    pub refs: Vec<RecordId>,
    /// Repeats of this detection for the same process and file that were
    /// not written since the last one (`detect.repeat_window_secs`).
    pub suppressed: u64,
    /// Bytes read, copied or sent, where the pattern is about bytes.
    pub bytes: Option<u64>,
    /// Share (0..=1) of the file's or the weight set's distinct bytes read.
    pub share: Option<f64>,
    /// The weight set whose share is meant, when a policy names one.
    pub weight_set: Option<String>,
    /// What matched: the tool's name (`transfer_tool`), the shell
    /// (`serving_shell`), the peer (`egress`), the operation (`tamper`).
    pub matched: Option<String>,
    /// `integrity_mismatch`: the baseline's SHA-256 and the file's now
    /// (absent when the file is gone).
    pub expected_sha256: Option<String>,
    pub sha256: Option<String>,
}

impl Detection {
    pub fn new(id: DetectionId, summary: String) -> Self {
        Self {
            id,
            summary,
            refs: Vec::new(),
            suppressed: 0,
            bytes: None,
            share: None,
            weight_set: None,
            matched: None,
            expected_sha256: None,
            sha256: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_ids_round_trip() {
        let id = RecordId {
            run: 0x00ab_cdef_0123_4567,
            seq: 42,
        };
        assert_eq!(id.to_string(), "00abcdef01234567-42");
        assert_eq!("00abcdef01234567-42".parse::<RecordId>(), Ok(id));
        assert!("abc-1".parse::<RecordId>().is_err());
        assert!("00abcdef01234567".parse::<RecordId>().is_err());
    }

    #[test]
    fn every_detection_has_a_name_and_a_technique() {
        for id in DetectionId::ALL {
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{}\"", id.as_str()));
            assert!(!id.atlas().is_empty());
            assert!(id.atlas().iter().all(|t| t.starts_with("AML.T")));
        }
    }
}
