//! Restarts without a gap (`kernel/pins.rs`): at start-up, adopt the
//! programs an earlier agent left pinned, or replace them (attach ours,
//! then detach theirs and read what they left in their ring buffer); at a
//! SIGTERM under `kernel.handover`, leave ours attached for the next one.

use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, Map, MapData, RingBuf};
use sensor_common::{MemAgg, MemKey, OpenAgg, ReadAgg, ReadAggKey, map_name};

use super::{Agent, AgentError};
use crate::kernel::{
    btf::KernelOffsets,
    loader::{LoadError, LoadOptions, Sensor},
    maps::ReadMaps,
    pins::{PinDir, PinError, Previous},
};

/// How this agent came by its programs.
pub enum Origin {
    /// Loaded and attached its own; nothing was pinned before.
    Fresh,
    /// Took over an earlier agent's (pid `from`), which kept capturing and
    /// enforcing while no agent ran: under `policy` (generation, digest).
    Adopted {
        from: u64,
        policy: Option<(u32, u64)>,
    },
    /// Loaded its own beside an earlier agent's of another build or other
    /// settings, which it detaches once its own are attached.
    Replacing(Previous),
}

/// Loads the sensor: adopted from `pin_dir` when an earlier agent left a
/// load this one can take over, else loaded (and pinned there, if any).
pub fn load(
    offsets: &KernelOffsets,
    opts: &LoadOptions,
    pin_dir: Option<&Path>,
) -> Result<(Sensor, Origin), LoadError> {
    let Some(path) = pin_dir else {
        return Ok((Sensor::load_best(offsets, opts)?, Origin::Fresh));
    };
    let dir = PinDir::open(path)?;
    let origin = match dir.previous()? {
        Some(previous) if Sensor::adoptable(offsets, opts, &previous) => {
            let (from, policy) = (previous.tgid, previous.policy);
            let sensor = Sensor::adopt(offsets, opts, dir, &previous)?;
            return Ok((sensor, Origin::Adopted { from, policy }));
        }
        Some(previous) => Origin::Replacing(previous),
        None => Origin::Fresh,
    };
    let mut sensor = Sensor::load_best(offsets, opts)?;
    sensor.pin(dir, matches!(origin, Origin::Replacing(_)))?;
    Ok((sensor, origin))
}

/// Says so when the kernel refused to pin the programs' links (after they
/// attached): the load runs unpinned.
pub fn report_refused(sensor: &Sensor, handover: bool) {
    let Some(refused) = sensor.pins_refused() else {
        return;
    };
    let why = crate::Chain(refused).to_string();
    if handover {
        tracing::warn!(
            reason = %why,
            "HANDOVER OFF: the kernel refused to pin a program link (see the reason), so \
             nothing is pinned: a restart or crash of the agent is a gap in capture and \
             enforcement, and a stop detaches the programs"
        );
    } else {
        tracing::info!(
            reason = %why,
            "the kernel refused to pin a program link (see the reason): nothing is pinned, so \
             a crash of the agent is a gap in capture and enforcement"
        );
    }
}

/// An earlier load being replaced, after its links are gone: its ring
/// buffer and what its maps still aggregate.
pub struct Replaced {
    previous: Previous,
    ring: Option<RingBuf<MapData>>,
    /// Its records are this build's (same object): they can be decoded.
    decodable: bool,
}

impl Origin {
    /// Logs what was found; for a replacement, detaches the earlier
    /// programs (ours are attached by now) and keeps their ring buffer.
    pub fn after_attach(self, sensor: &Sensor) -> Result<Option<Replaced>, LoadError> {
        match self {
            Origin::Fresh => Ok(None),
            Origin::Adopted { from, .. } => {
                tracing::info!(
                    previous_pid = from,
                    "adopted the programs and maps the previous agent left pinned: capture and \
                     in-kernel enforcement ran on while no agent did, and the records they made \
                     meanwhile are read now"
                );
                Ok(None)
            }
            Origin::Replacing(previous) => {
                previous.unpin_links()?;
                let ring = previous.map(map_name::EVENTS).and_then(|path| {
                    let data = MapData::from_pin(path).ok()?;
                    RingBuf::try_from(Map::RingBuf(data)).ok()
                });
                let decodable = previous.object == Some(sensor.object_digest());
                tracing::info!(
                    previous_pid = previous.tgid,
                    same_build = decodable,
                    "the programs an earlier agent left pinned are of another build or other \
                     kernel settings: this agent attached its own, then detached those (records \
                     of the moments both were attached may come twice)"
                );
                Ok(Some(Replaced {
                    previous,
                    ring,
                    decodable,
                }))
            }
        }
    }
}

impl Agent {
    /// At a handover stop: stops the fanotify thread once every open it
    /// read is answered, then gives its group to the service manager's
    /// file descriptor store, where opens of policy files wait for the next
    /// agent instead of going through.
    pub(super) fn hand_over_fanotify(&mut self) {
        let Some(enforcer) = &self.enforcer else {
            return;
        };
        if !enforcer.halt(std::time::Duration::from_secs(2)) {
            tracing::warn!(
                "the fanotify thread did not stop within 2 s: its group is not handed over, and \
                 opens of policy files go through until the next agent (the pinned programs \
                 still stop reads)"
            );
            return;
        }
        match super::fdstore::store(super::fdstore::FANOTIFY, enforcer.group()) {
            Ok(true) => tracing::info!(
                "handover: the fanotify group is in the service manager's store; opens of \
                 policy files wait for the next agent"
            ),
            Ok(false) => tracing::info!(
                "handover: no service manager to keep the fanotify group (NOTIFY_SOCKET unset): \
                 it closes with this agent, and until the next one the pinned programs enforce \
                 alone (BPF LSM, or the kill fallback)"
            ),
            Err(err) => tracing::warn!(
                error = %err,
                "cannot hand the fanotify group to the service manager (FileDescriptorStoreMax= \
                 in the unit?): opens of policy files go through until the next agent (the \
                 pinned programs still stop reads)"
            ),
        }
    }

    /// Reads what a replaced load left in its ring buffer, accounts for
    /// what it still aggregated, then unpins its maps and moves this load's
    /// pins in place.
    pub(super) fn finish_replacing(
        &mut self,
        sensor: &mut Sensor,
        mut replaced: Replaced,
    ) -> Result<(), AgentError> {
        self.health.agent.handover_replaced.inc();
        if let Some(ring) = replaced.ring.as_mut() {
            if replaced.decodable {
                self.drain_ring(ring);
            } else {
                let mut lost = 0u64;
                while let Some(item) = ring.next() {
                    drop(item);
                    lost += 1;
                }
                self.health.agent.handover_records_undecoded.inc_by(lost);
                if lost > 0 {
                    tracing::warn!(
                        records = lost,
                        "records the replaced programs (another build) made before they were \
                         detached could not be decoded: lost"
                    );
                }
            }
        }
        let unreported = if replaced.decodable {
            self.drain_replaced_aggregates(&replaced.previous)
        } else {
            unreported_aggregates(&replaced.previous)
        };
        self.health
            .agent
            .handover_aggregates_unreported
            .inc_by(unreported);
        if unreported > 0 {
            tracing::warn!(
                aggregates = unreported,
                "the replaced programs still held aggregated reads, opens or memory reads: \
                 their counts since the last report are lost"
            );
        }
        drop(replaced.ring.take());
        replaced.previous.unpin_maps().map_err(LoadError::from)?;
        sensor.settle_pins()?;
        Ok(())
    }
}

impl Agent {
    /// Reports what a replaced load of this build still aggregated (reads,
    /// opens, memory reads of the moments before it was detached), as a
    /// stop would; returns how many aggregates could not be read.
    fn drain_replaced_aggregates(&mut self, previous: &Previous) -> u64 {
        let open = |name: &str| -> Option<Map> {
            let data = MapData::from_pin(previous.map(name)?).ok()?;
            Some(Map::HashMap(data))
        };
        let maps = (
            open(map_name::READ_AGG),
            open(map_name::OPEN_AGG),
            open(map_name::MEM_AGG),
            open(map_name::READERS),
        );
        let (Some(reads), Some(opens), Some(memory), Some(readers)) = maps else {
            return unreported_aggregates(previous);
        };
        let theirs = ReadMaps::new(reads, opens, memory, readers);
        let ours = std::mem::replace(&mut self.kernel.read_maps, theirs);
        self.drain_all_aggregates();
        self.kernel.read_maps = ours;
        0
    }
}

/// The entries left in a replaced load's aggregate maps.
fn unreported_aggregates(previous: &Previous) -> u64 {
    fn count<K: aya::Pod, V: aya::Pod>(previous: &Previous, name: &str) -> u64 {
        let Some(data) = previous.map(name).and_then(|p| MapData::from_pin(p).ok()) else {
            return 0;
        };
        BpfHashMap::<MapData, K, V>::try_from(Map::HashMap(data))
            .map_or(0, |m| m.keys().filter(Result::is_ok).count() as u64)
    }
    count::<ReadAggKey, ReadAgg>(previous, map_name::READ_AGG)
        + count::<ReadAggKey, OpenAgg>(previous, map_name::OPEN_AGG)
        + count::<MemKey, MemAgg>(previous, map_name::MEM_AGG)
}

/// A load's pins, for `weightwarden unload`: unpins everything in `path`
/// (which detaches the programs left there), unless an agent runs on them.
pub fn unload(path: &Path) -> Result<usize, PinError> {
    PinDir::open(path)?.clear()
}
