//! Enforcement mechanisms: how a verdict of `deny` or `kill` is carried
//! out, beside the judge that records it. One file per mechanism:
//! `fanotify` (permission events, any kernel with
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS`). BPF LSM and the in-kernel kill
//! for descriptors the opens never showed come next.

pub mod fanotify;
