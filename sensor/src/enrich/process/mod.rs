//! Process context for every record: who (pid, user, executable, arguments,
//! ancestry), where (cgroup, container) and whether the process serves a
//! model from a GPU.
//!
//! [`ProcessTable`] is the entry point: the agent feeds it the kernel's
//! exec, fork and exit records and asks it for the process behind every
//! other record. [`procfs`] reads `/proc`, [`cgroup`] maps cgroup ids to
//! paths and [`container`] tells containers from those paths.

pub mod cache;
pub mod cgroup;
pub mod container;
pub mod procfs;

pub use cache::{
    Ancestor, DEFAULT_CAPACITY, EXIT_GRACE, HeaderFields, ProcessInfo, ProcessStats, ProcessTable,
};
pub use cgroup::{CgroupError, CgroupResolver, cgroup2_mount};
pub use container::{Container, Runtime, parse_cgroup_path};
pub use procfs::{ARGS_MAX_BYTES, ProcError, ProcSnapshot};
