//! The agent's views of the kernel maps, one file per map or family:
//! the watched-inode map and its Bloom filter (kept current by the watch
//! set), the read aggregates it drains, the holder prefilter it seeds, the
//! policy tables it fills, and the loss counters it reports.

mod counters;
mod holders;
mod identity;
mod ino_filter;
mod policy;
mod read;
mod watched;

pub use counters::{KernelCounterTotals, KernelCounters};
pub use holders::Holders;
pub use identity::KernelIdentityProbe;
pub use ino_filter::InoFilter;
pub use policy::{PolicyMaps, VerdictMaps};
pub use read::{Aggregates, ReadMaps};
pub use watched::{KernelInodeMap, WatchMaps};
