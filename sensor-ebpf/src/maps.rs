//! The maps shared with the agent. Names and value types are in
//! `sensor_common::map_name`; sizes here are defaults the agent overrides
//! from its configuration.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{
    CopyKey, ExeVerdict, ExitKey, FileKey, MemAgg, MemKey, OpenAgg, Pending, PolicyFile,
    PolicySlot, ProcessVerdict, ReadAgg, ReadAggKey, SendAgg, SendKey, WatchEntry, counter,
};

/// The identity the kernel read for each of the agent's own `O_PATH`
/// opens (`agent_probe.rs`), by `sensor_common::identity_probe_key`.
#[map]
pub static IDENTITY_PROBE: LruHashMap<u64, FileKey> = LruHashMap::with_max_entries(64, 0);

/// Watched inodes, written by the agent.
#[map]
pub static WATCHED: HashMap<FileKey, WatchEntry> = HashMap::with_max_entries(262_144, 0);

/// Directories under the watch roots, written by the agent (`create.rs`);
/// sized by `watch.max_dirs`.
#[map]
pub static WATCHED_DIRS: HashMap<FileKey, u32> = HashMap::with_max_entries(65_536, 0);

/// Bloom filter of watched inode numbers (`sensor_common::ino_filter`).
#[map]
pub static WATCHED_INO_FILTER: Array<u64> =
    Array::with_max_entries(sensor_common::ino_filter::WORDS, 0);

/// Read aggregation per (process, file). A plain hash, not LRU: a full map
/// must be counted, never silently evict a half-counted entry.
#[map]
pub static READ_AGG: HashMap<ReadAggKey, ReadAgg> = HashMap::with_max_entries(65_536, 0);

/// Repeated opens and closes per (process, file) (`opens.rs`). A plain
/// hash: a full map makes every open a record again, never a lost count.
/// Sized with `READ_AGG` by the agent.
#[map]
pub static OPEN_AGG: HashMap<ReadAggKey, OpenAgg> = HashMap::with_max_entries(65_536, 0);

/// Reads of other processes' memory through `/proc/PID/mem` and
/// `PTRACE_PEEK*`, per (reader, target, method) (`proc_mem.rs`).
#[map]
pub static MEM_AGG: HashMap<MemKey, MemAgg> = HashMap::with_max_entries(4_096, 0);

/// A byte per tgid: non-zero for a process that opened another's
/// `/proc/PID/mem`. Sized like `HOLDERS_KERNEL` by the agent.
#[map]
pub static MEM_READERS: Array<u64> = Array::with_max_entries(4096, 0);

/// Processes with read aggregates: their exit tells the agent
/// to drain them.
#[map]
pub static READERS: HashMap<u32, u32> = HashMap::with_max_entries(65_536, 0);

/// Exits already reported: several exiting threads of one group can each
/// see the group dead.
#[map]
pub static EXITED: LruHashMap<ExitKey, u32> = LruHashMap::with_max_entries(4_096, 0);

/// Copies already reported, per (process, source, destination): the first
/// is a record, the rest are bytes in the read summaries. LRU: an evicted
/// entry only means one more record.
#[map]
pub static COPIES_SEEN: LruHashMap<CopyKey, u8> = LruHashMap::with_max_entries(16_384, 0);

/// What processes that read watched bytes wrote or sent, per
/// destination (`send.rs`). LRU: an evicted entry only means its next call
/// is reported as a first.
#[map]
pub static SENDS: LruHashMap<SendKey, SendAgg> = LruHashMap::with_max_entries(16_384, 0);

/// Tainted processes the agent stopped following (their sends are
/// trusted: a serving or allowed process): added by the agent, removed
/// here at exit (a reused pid starts followed).
#[map]
pub static SENDS_OFF: LruHashMap<u32, u8> = LruHashMap::with_max_entries(16_384, 0);

/// The holder prefilter's process set kept by the kernel: a byte per tgid,
/// eight to a value (see `holders.rs`). Sized by the agent from pid_max.
#[map]
pub static HOLDERS_KERNEL: Array<u64> = Array::with_max_entries(4096, 0);

/// The holder prefilter's process set seeded by the agent from `/proc`: a
/// bit per tgid. Only the agent writes it.
#[map]
pub static HOLDERS_AGENT: Array<u64> = Array::with_max_entries(512, 0);

/// Index 0 non-zero: every process counts as a holder (the agent holds this
/// until it has seeded `HOLDERS_AGENT`).
#[map]
pub static HOLDERS_BYPASS: Array<u32> = Array::with_max_entries(1, 0);

/// Per-thread state between a syscall's enter and exit. A plain hash, not
/// LRU: when it is full an insert must fail and be counted
/// (`pending_full`), not evict another thread's read in flight unseen. No
/// entry leaks: a thread killed inside a followed syscall still leaves it
/// through the exit path, where `sys_exit` removes the entry, and a reused
/// thread id overwrites its stale entry.
#[map]
pub static PENDING: HashMap<u32, Pending> = HashMap::with_max_entries(16_384, 0);

/// The policy generation enforced in the kernel (0: none); see
/// `sensor_common::enforce`.
#[map]
pub static POLICY_ACTIVE: Array<u32> = Array::with_max_entries(1, 0);

/// Each slot's generation and its verdict for processes not judged yet.
#[map]
pub static POLICY_SLOTS: Array<PolicySlot> = Array::with_max_entries(2, 0);

/// The weight sets of every policy file, per slot.
#[map]
pub static POLICY_FILES: HashMap<FileKey, PolicyFile> = HashMap::with_max_entries(262_144, 0);

/// Per-process verdicts of the policy in slot 0, by tgid. Two maps, not
/// two slots in one value: the agent's writers for different generations
/// (a reload, the fanotify thread) then never overwrite each other's slot.
#[map]
pub static VERDICTS_0: HashMap<u32, ProcessVerdict> = HashMap::with_max_entries(65_536, 0);

/// Per-process verdicts of the policy in slot 1.
#[map]
pub static VERDICTS_1: HashMap<u32, ProcessVerdict> = HashMap::with_max_entries(65_536, 0);

/// The verdict a process gets at exec, by executable.
#[map]
pub static EXE_VERDICTS: HashMap<FileKey, ExeVerdict> = HashMap::with_max_entries(4_096, 0);

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
