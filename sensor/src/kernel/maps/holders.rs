//! The holder prefilter's maps from the agent's side (the kernel side is
//! `sensor-ebpf/src/holders.rs`).

use aya::maps::{Array, HashMap, MapData, MapError};

/// The holder prefilter's maps, from the agent's side: the agent is the
/// only writer of `HOLDERS_AGENT`, so its read-modify-write of a value
/// races with nothing. Bits are set, never cleared: clearing one on an exit
/// record could race a reuse of the pid that a `/proc` scan just marked,
/// and a stale bit only costs the full check.
pub struct Holders {
    agent: Array<MapData, u64>,
    bypass: Array<MapData, u32>,
    /// `SENDS_OFF`: tainted processes whose sends are not followed.
    sends_off: HashMap<MapData, u32, u8>,
}

impl Holders {
    pub fn new(
        agent: Array<MapData, u64>,
        bypass: Array<MapData, u32>,
        sends_off: HashMap<MapData, u32, u8>,
    ) -> Self {
        Self {
            agent,
            bypass,
            sends_off,
        }
    }

    /// Stops following the writes and sends of `pid` (judged trusted);
    /// the kernel forgets it at the process's exit.
    pub fn stop_following_sends(&mut self, pid: u32) -> Result<(), MapError> {
        self.sends_off.insert(pid, 1, 0)
    }

    /// Marks processes found holding watched descriptors in `/proc`. A pid
    /// beyond the array needs no mark: the kernel treats it as a holder.
    pub fn seed(&mut self, pids: impl IntoIterator<Item = u32>) -> Result<usize, MapError> {
        let mut added = 0;
        for pid in pids {
            if self.set_bit(pid)? {
                added += 1;
            }
        }
        Ok(added)
    }

    /// Sets `pid`'s bit; false when the pid is beyond the array.
    fn set_bit(&mut self, pid: u32) -> Result<bool, MapError> {
        let index = pid / 64;
        if index >= self.agent.len() {
            return Ok(false);
        }
        let word = self.agent.get(&index, 0)?;
        let bit = 1u64 << (pid % 64);
        if word & bit == 0 {
            self.agent.set(index, word | bit, 0)?;
        }
        Ok(true)
    }

    /// Makes every process a holder (`true`) or lets the prefilter work.
    pub fn set_bypass(&mut self, on: bool) -> Result<(), MapError> {
        self.bypass.set(0, u32::from(on), 0)
    }
}
