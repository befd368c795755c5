//! The maps shared with the agent. Names and value types are in
//! `sensor_common::map_name`; sizes here are defaults the agent overrides
//! from its configuration.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{
    Coverage, ExitKey, FileKey, Pending, ReadAgg, ReadAggKey, WatchEntry, counter,
};

/// Watched inodes, written by the agent.
#[map]
pub static WATCHED: HashMap<FileKey, WatchEntry> = HashMap::with_max_entries(262_144, 0);

/// Read aggregation per (process, file). A plain hash, not LRU: a full map
/// must be counted, never silently evict a half-counted entry.
#[map]
pub static READ_AGG: HashMap<ReadAggKey, ReadAgg> = HashMap::with_max_entries(65_536, 0);

/// Segments each process has read of each file, until it exits.
#[map]
pub static COVERAGE: HashMap<ReadAggKey, Coverage> = HashMap::with_max_entries(65_536, 0);

/// Processes with read aggregates or coverage: their exit tells the agent
/// to drain them.
#[map]
pub static READERS: HashMap<u32, u32> = HashMap::with_max_entries(65_536, 0);

/// Exits already reported: several exiting threads of one group can each
/// see the group dead.
#[map]
pub static EXITED: LruHashMap<ExitKey, u32> = LruHashMap::with_max_entries(4_096, 0);

/// Processes that may hold a descriptor of a watched file (see
/// `holders.rs`).
#[map]
pub static HOLDERS: HashMap<u32, u32> = HashMap::with_max_entries(65_536, 0);

/// Index 0 non-zero: `HOLDERS` overflowed and the prefilter is off.
#[map]
pub static HOLDERS_OVERFLOW: Array<u32> = Array::with_max_entries(1, 0);

/// Per-thread state between a syscall's enter and exit. LRU so that threads
/// killed inside a syscall cannot leak entries forever.
#[map]
pub static PENDING: LruHashMap<u32, Pending> = LruHashMap::with_max_entries(16_384, 0);

/// Loss and error counters, indexed by `sensor_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Records to the agent.
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(8 * 1024 * 1024, 0);

/// Adds one to a per-CPU counter.
#[inline(always)]
pub fn count(index: u32) {
    if let Some(slot) = COUNTERS.get_ptr_mut(index) {
        // Atomic because a preempted program can share the CPU's slot.
        crate::atomic::add(slot, 1);
    }
}
