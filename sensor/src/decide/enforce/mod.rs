//! Enforcement mechanisms: how a verdict of `deny` or `kill` is carried
//! out, beside the judge that records it. One file per mechanism:
//! `fanotify` (permission events on opens, any kernel with
//! `CONFIG_FANOTIFY_ACCESS_PERMISSIONS`) and `kernel_tables` (the policy
//! compiled into kernel maps, from which the kernel programs kill a
//! process reading through a descriptor no open judged).

pub mod fanotify;
pub mod kernel_tables;
pub mod proc_subject;
