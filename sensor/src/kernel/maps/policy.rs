//! The policy's tables in the kernel (`sensor_common::enforce`): the active
//! generation, each slot's settings, the weight sets of every policy file,
//! and the per-process verdicts. `decide/enforce/kernel_tables.rs` decides
//! what goes in them; this is only the access.

use std::os::fd::AsFd;

use aya::maps::{Array, HashMap, IterableMap, Map, MapData, MapError};
use sensor_common::{ExeVerdict, FileKey, PolicyFile, PolicySlot, ProcessVerdict};

/// The per-process verdict maps, one per slot. Each holder has its own
/// descriptors ([`VerdictMaps::try_clone`]), so the event loop and the
/// fanotify thread write without sharing a lock.
pub struct VerdictMaps {
    slots: [HashMap<MapData, u32, ProcessVerdict>; 2],
}

impl VerdictMaps {
    pub fn new(
        slot0: HashMap<MapData, u32, ProcessVerdict>,
        slot1: HashMap<MapData, u32, ProcessVerdict>,
    ) -> Self {
        Self {
            slots: [slot0, slot1],
        }
    }

    /// Another handle on the same kernel maps.
    pub fn try_clone(&self) -> Result<Self, MapError> {
        let reopen = |map: &HashMap<MapData, u32, ProcessVerdict>| {
            let fd = map
                .map()
                .fd()
                .as_fd()
                .try_clone_to_owned()
                .map_err(|io_error| {
                    MapError::SyscallError(aya::sys::SyscallError {
                        call: "dup",
                        io_error,
                    })
                })?;
            HashMap::try_from(Map::HashMap(MapData::from_fd(fd)?))
        };
        Ok(Self {
            slots: [reopen(&self.slots[0])?, reopen(&self.slots[1])?],
        })
    }

    /// Writes `verdict` for `pid` in the slot of its generation.
    pub fn write(&mut self, pid: u32, verdict: &ProcessVerdict) -> Result<(), MapError> {
        let slot = (verdict.generation & 1) as usize;
        self.slots[slot].insert(pid, verdict, 0)
    }

    /// Writes `verdict` for `pid` unless its slot already has a row of the
    /// same generation (one the kernel set at an exec since, say); a row of
    /// another generation is stale and replaced.
    pub fn write_absent(&mut self, pid: u32, verdict: &ProcessVerdict) -> Result<(), MapError> {
        const BPF_NOEXIST: u64 = 1;
        if self.has(verdict.generation, pid) {
            return Ok(());
        }
        let slot = (verdict.generation & 1) as usize;
        let stale = self.slots[slot].get(&pid, 0).is_ok();
        let flags = if stale { 0 } else { BPF_NOEXIST };
        match self.slots[slot].insert(pid, verdict, flags) {
            Err(MapError::SyscallError(e)) if e.io_error.raw_os_error() == Some(libc::EEXIST) => {
                Ok(())
            }
            other => other,
        }
    }

    /// Whether `pid` has a row of `generation`.
    pub fn has(&self, generation: u32, pid: u32) -> bool {
        let slot = (generation & 1) as usize;
        self.slots[slot]
            .get(&pid, 0)
            .is_ok_and(|row| row.generation == generation)
    }

    /// Removes every row of `slot`.
    pub fn clear(&mut self, slot: usize) {
        for pid in self.pids(slot) {
            self.remove(slot, pid);
        }
    }

    /// Every pid with an entry in `slot`.
    pub fn pids(&self, slot: usize) -> Vec<u32> {
        self.slots[slot & 1].keys().filter_map(Result::ok).collect()
    }

    pub fn remove(&mut self, slot: usize, pid: u32) {
        let _ = self.slots[slot & 1].remove(&pid);
    }
}

/// Every policy table.
pub struct PolicyMaps {
    pub active: Array<MapData, u32>,
    pub slots: Array<MapData, PolicySlot>,
    pub files: HashMap<MapData, FileKey, PolicyFile>,
    pub exes: HashMap<MapData, FileKey, ExeVerdict>,
    pub verdicts: VerdictMaps,
}
