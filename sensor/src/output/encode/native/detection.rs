//! `detection` on the wire: the detection's id, summary, ATLAS techniques,
//! the ids of the records it was built from, and what it measured.

use serde::{Deserialize, Serialize};

use super::DecodeError;
use crate::event::{Detection, DetectionId, RecordId};

#[serde_with::skip_serializing_none]
#[derive(Serialize, Deserialize)]
pub(in crate::output::encode) struct WireDetection {
    id: DetectionId,
    summary: String,
    /// Written from the id's mapping; ignored when read back.
    #[serde(default)]
    atlas: Vec<String>,
    refs: Vec<String>,
    suppressed: u64,
    bytes: Option<u64>,
    share: Option<f64>,
    weight_set: Option<String>,
    matched: Option<String>,
    expected_sha256: Option<String>,
    sha256: Option<String>,
}

impl From<&Detection> for WireDetection {
    fn from(d: &Detection) -> Self {
        WireDetection {
            id: d.id,
            summary: d.summary.clone(),
            atlas: d.id.atlas().iter().map(|t| (*t).to_owned()).collect(),
            refs: d.refs.iter().map(RecordId::to_string).collect(),
            suppressed: d.suppressed,
            bytes: d.bytes,
            share: d.share,
            weight_set: d.weight_set.clone(),
            matched: d.matched.clone(),
            expected_sha256: d.expected_sha256.clone(),
            sha256: d.sha256.clone(),
        }
    }
}

impl WireDetection {
    pub(super) fn into_model(self) -> Result<Detection, DecodeError> {
        let refs = self
            .refs
            .into_iter()
            .map(|r| {
                r.parse().map_err(|()| DecodeError::Value {
                    field: "detection.refs",
                    value: r,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Detection {
            id: self.id,
            summary: self.summary,
            refs,
            suppressed: self.suppressed,
            bytes: self.bytes,
            share: self.share,
            weight_set: self.weight_set,
            matched: self.matched,
            expected_sha256: self.expected_sha256,
            sha256: self.sha256,
        })
    }
}

/// Reads a record's `id` back.
pub(super) fn parse_record_id(text: &str) -> Result<RecordId, DecodeError> {
    text.parse().map_err(|()| DecodeError::Value {
        field: "id",
        value: text.to_owned(),
    })
}
