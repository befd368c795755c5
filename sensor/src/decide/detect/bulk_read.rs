//! `bulk_read`: a process not allowed to read weights read (or mapped) at
//! least `detect.bulk_read_share` of a file's distinct bytes, or of a
//! weight set's.

use std::collections::HashMap;

use sensor_common::FileKey;

use super::{About, Context, Detector, Finding, about_file, file_label, is_errno, process_name};
use crate::{
    decide::policy::Policy,
    event::{AccessDetail, Detection, DetectionId, Event, Severity},
};

/// `PROT_READ`.
const PROT_READ: u32 = 0x1;

/// What one process took of one file.
#[derive(Default)]
struct Taken {
    /// Share (0..=1) of the file's distinct bytes read or mapped.
    share: f64,
    size: u64,
    /// Bytes read (all calls, repeats included).
    bytes: u64,
}

#[derive(Default)]
pub struct BulkRead {
    by_pid: HashMap<u32, HashMap<FileKey, Taken>>,
    /// The total size of each weight set of the policy with this hash.
    set_sizes: Option<(String, Vec<u64>)>,
}

impl Detector for BulkRead {
    fn id(&self) -> DetectionId {
        DetectionId::BulkRead
    }

    fn observe(&mut self, event: &Event, ctx: &Context<'_>) -> Vec<Finding> {
        if ctx.trusted.is_some() {
            return Vec::new();
        }
        let (Some(process), Some(file)) = (&event.process, &event.file) else {
            return Vec::new();
        };
        let (share, bytes, how) = match event.access.as_ref().map(|a| &a.detail) {
            Some(AccessDetail::Read(summary)) => (summary.coverage, summary.bytes, "read"),
            Some(AccessDetail::Mmap {
                prot,
                offset,
                length,
                result,
                ..
            }) if prot & PROT_READ != 0 && !is_errno(*result) && file.size > 0 => {
                let mapped = (*length).min(file.size.saturating_sub(*offset));
                (mapped as f64 / file.size as f64, 0, "mapped")
            }
            _ => return Vec::new(),
        };
        let key = FileKey {
            dev: file.dev,
            ino: file.ino,
        };
        let taken = self
            .by_pid
            .entry(process.pid)
            .or_default()
            .entry(key)
            .or_default();
        let was = taken.share;
        taken.share = taken.share.max(share);
        taken.size = file.size;
        taken.bytes += bytes;
        let (share, bytes) = (taken.share, taken.bytes);
        let threshold = ctx.config.bulk_read_share;
        let mut findings = Vec::new();
        if share >= threshold
            && let Some(about) = about_file(event)
        {
            let mut d = Detection::new(
                DetectionId::BulkRead,
                format!(
                    "{} {how} {:.0}% of {} ({} bytes)",
                    process_name(event),
                    share * 100.0,
                    file_label(event),
                    file.size
                ),
            );
            d.refs = ctx.refs.to_vec();
            d.share = Some(share);
            d.bytes = Some(bytes);
            d.matched = Some(how.to_owned());
            findings.push(finding(about, d));
        }
        if share > was
            && let Some(policy) = ctx.policy
        {
            findings.extend(self.set_findings(event, ctx, policy, key, threshold));
        }
        findings
    }

    fn forget(&mut self, pid: u32) {
        self.by_pid.remove(&pid);
    }
}

impl BulkRead {
    /// A finding for each weight set of `key` whose share the process has
    /// now taken reaches the threshold.
    fn set_findings(
        &mut self,
        event: &Event,
        ctx: &Context<'_>,
        policy: &Policy,
        key: FileKey,
        threshold: f64,
    ) -> Vec<Finding> {
        let sets = policy.sets_of(&key).to_vec();
        if sets.is_empty() {
            return Vec::new();
        }
        let sizes = self.set_sizes(policy).to_vec();
        let Some(taken) = event.process.as_ref().and_then(|p| self.by_pid.get(&p.pid)) else {
            return Vec::new();
        };
        let mut findings = Vec::new();
        for set in sets {
            let total = sizes.get(set).copied().unwrap_or(0);
            if total == 0 {
                continue;
            }
            let covered: f64 = taken
                .iter()
                .filter(|(k, _)| policy.sets_of(k).contains(&set))
                .map(|(_, t)| t.share * t.size as f64)
                .sum();
            let share = (covered / total as f64).min(1.0);
            if share < threshold {
                continue;
            }
            let name = policy
                .sets
                .get(set)
                .map(|s| s.name.clone())
                .unwrap_or_default();
            let mut d = Detection::new(
                DetectionId::BulkRead,
                format!(
                    "{} read {:.0}% of weight set {name} ({total} bytes)",
                    process_name(event),
                    share * 100.0
                ),
            );
            d.refs = ctx.refs.to_vec();
            d.share = Some(share);
            d.bytes = Some(covered as u64);
            d.weight_set = Some(name);
            d.matched = Some("weight_set".to_owned());
            findings.push(finding(About::WeightSet(set), d));
        }
        findings
    }

    /// Each set's total size: its files' sizes now, once per policy.
    fn set_sizes(&mut self, policy: &Policy) -> &[u64] {
        let stale = self
            .set_sizes
            .as_ref()
            .is_none_or(|(hash, _)| *hash != policy.hash);
        if stale {
            let mut sizes = vec![0u64; policy.sets.len()];
            for (key, path) in &policy.paths {
                let size = std::fs::metadata(path).map_or(0, |m| m.len());
                for &set in policy.sets_of(key) {
                    if let Some(total) = sizes.get_mut(set) {
                        *total += size;
                    }
                }
            }
            self.set_sizes = Some((policy.hash.clone(), sizes));
        }
        self.set_sizes.as_ref().map_or(&[], |(_, s)| s.as_slice())
    }
}

fn finding(about: About, detection: Detection) -> Finding {
    Finding {
        severity: Severity::High,
        about,
        detection,
        file: None,
    }
}
