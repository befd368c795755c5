//! The names the kernel's path-operation prefilter lets through
//! (`PATH_NAMES`; `sensor_common::path_filter` has the rule). A path
//! operation is resolved here only when the last component of one of its
//! paths is:
//!
//! - a name with a weight-file extension, or an Ollama blob's (`sha256...`;
//!   the kernel checks that one itself): every watched path under the roots
//!   is named so, and so is every file that would become watched;
//! - the name of a directory under the roots, of a root or of one of a
//!   root's ancestors: a directory holding weights renamed or removed;
//! - the name of a file watched outside the roots (retained, derived, a
//!   policy file), as last seen;
//! - a name the agent learned from a record: the new name of a watched
//!   file renamed or hard-linked under a name of another kind.
//!
//! Names are added as they appear; the set is rebuilt, and names no longer
//! wanted removed (the kernel's own too: it learns the new name of whatever
//! a passing rename or link moved), at start and at each rescan. A full map
//! turns the prefilter off (every path operation is sent again) until a
//! rebuild fits: more records, never fewer.

use std::collections::{HashSet, VecDeque};
use std::ffi::OsStr;

use sensor_common::path_filter::{extension_hash, name_hash};
use tracing::warn;

use super::{InodeMap, MapUpdateError};

/// How many learned names are kept for the rebuilds (the oldest go).
const LEARNED_MAX: usize = 4096;

#[derive(Debug, Default)]
pub(super) struct PathNames {
    /// The hashes in the kernel map.
    in_kernel: HashSet<u64>,
    /// Names learned from records, newest last.
    learned: VecDeque<u64>,
    /// The prefilter is on in the kernel.
    on: bool,
    /// Times the map was full (the prefilter then went off).
    pub(super) overflows: u64,
}

/// The hash of a file name.
pub(super) fn of(name: &OsStr) -> u64 {
    name_hash(name.as_encoded_bytes())
}

/// The hash of a weight-file extension.
pub(super) fn of_extension(ext: &str) -> u64 {
    extension_hash(ext.as_bytes())
}

impl PathNames {
    /// Whether the kernel filters path operations now.
    pub(super) fn is_on(&self) -> bool {
        self.on
    }

    /// Hashes in the kernel map.
    pub(super) fn len(&self) -> usize {
        self.in_kernel.len()
    }

    /// Remembers a name learned from a record and lets it through.
    pub(super) fn learn(&mut self, hash: u64, map: &mut impl InodeMap) {
        if !self.learned.contains(&hash) {
            if self.learned.len() >= LEARNED_MAX {
                self.learned.pop_front();
            }
            self.learned.push_back(hash);
        }
        self.add(std::iter::once(hash), map);
    }

    /// The learned names, for a rebuild.
    pub(super) fn learned(&self) -> impl Iterator<Item = u64> + '_ {
        self.learned.iter().copied()
    }

    /// Lets `hashes` through (those not in the kernel map yet).
    pub(super) fn add(&mut self, hashes: impl IntoIterator<Item = u64>, map: &mut impl InodeMap) {
        for hash in hashes {
            if self.in_kernel.contains(&hash) {
                continue;
            }
            match map.insert_name(hash) {
                Ok(()) => {
                    self.in_kernel.insert(hash);
                }
                Err(error) => {
                    self.overflow(&error, map);
                    return;
                }
            }
        }
    }

    /// Makes the kernel map exactly `wanted`, then turns the prefilter on
    /// if every name fit.
    pub(super) fn rebuild(&mut self, wanted: HashSet<u64>, map: &mut impl InodeMap) {
        // The kernel's learned names are in the map, not in `in_kernel`.
        let present: HashSet<u64> = match map.names() {
            Ok(names) => names
                .into_iter()
                .chain(self.in_kernel.iter().copied())
                .collect(),
            Err(error) => {
                warn!(%error, "cannot list the kernel's path-name map; the names it learned stay");
                self.in_kernel.clone()
            }
        };
        let stale: Vec<u64> = present.difference(&wanted).copied().collect();
        for hash in stale {
            match map.remove_name(hash) {
                Ok(()) => {
                    self.in_kernel.remove(&hash);
                }
                // Left in: one more name passes, nothing is missed.
                Err(error) => warn!(%error, "cannot remove a name from the kernel's path-name map"),
            }
        }
        let before = self.overflows;
        self.on = true;
        self.add(wanted, map);
        if self.overflows != before {
            return;
        }
        if let Err(error) = map.set_name_filter(true) {
            self.on = false;
            warn!(%error, "cannot turn the kernel's path-operation prefilter on; every path operation is sent");
        }
    }

    /// The map refused a name: the prefilter goes off, so that nothing is
    /// missed, until a rebuild fits.
    fn overflow(&mut self, error: &MapUpdateError, map: &mut impl InodeMap) {
        self.overflows += 1;
        if self.on {
            warn!(%error, "the kernel's path-name map is full: path operations are no longer filtered in the kernel (every one is sent to the agent) until a rescan fits them");
        }
        self.on = false;
        if let Err(error) = map.set_name_filter(false) {
            warn!(%error, "cannot turn the kernel's path-operation prefilter off");
        }
    }
}
