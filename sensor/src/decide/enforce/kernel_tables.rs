//! The policy compiled into the kernel's tables (`sensor_common::enforce`),
//! from which the program that sees a read, a copy or a map through any
//! descriptor decides it on the spot and kills a process the policy stops
//! (sensor-ebpf/src/enforce.rs). This covers the routes no deny mechanism
//! judges: descriptors passed in over a socket, inherited, or opened before
//! the policy.
//!
//! A reload fills the slot the active generation does not use (files,
//! settings, the verdict of every known process), then switches the active
//! generation with one map write: the kernel decides every access under
//! the old tables or the new ones, never a mix, and never under none.

use std::{collections::HashMap, sync::Arc};

use aya::maps::MapError;
use sensor_common::{ExeVerdict, FileKey, PolicyFile, PolicySlot, ProcessVerdict, enforce};

use crate::{
    decide::policy::{Operation, Policy, PolicyAction, Subject},
    kernel::maps::{PolicyMaps, VerdictMaps},
};

/// The operations the kernel decides, by their table index.
const KERNEL_OPERATIONS: [(u32, Operation); enforce::op::COUNT] = [
    (enforce::op::READ, Operation::Read),
    (enforce::op::MMAP, Operation::Mmap),
    (enforce::op::OPEN, Operation::Open),
    (enforce::op::WRITE, Operation::Write),
    (enforce::op::COPY, Operation::Copy),
];

/// The operation a kernel table index stands for.
pub fn operation_of(op: u32) -> Operation {
    KERNEL_OPERATIONS
        .iter()
        .find(|(index, _)| *index == op)
        .map_or(Operation::Read, |(_, operation)| *operation)
}

/// A set's bit in the tables (the compiler refuses more sets than bits).
fn bit(set: usize) -> u64 {
    if set < enforce::MAX_SETS { 1 << set } else { 0 }
}

/// Whether a verdict stops the access (deny falls back to kill here).
fn stops(action: PolicyAction) -> bool {
    action >= PolicyAction::Deny
}

/// What the policy says of one process, as the kernel's verdict row:
/// per operation, the sets in which it is denied or killed. `uid`/`gid`
/// are the credentials it was judged with: the kernel treats the row as
/// absent once the process's differ.
pub fn verdict_row(policy: &Policy, subject: &Subject<'_>) -> ProcessVerdict {
    let mut stop = [0; enforce::op::COUNT];
    let mut kill = [0; enforce::op::COUNT];
    for (index, operation) in KERNEL_OPERATIONS {
        for set in 0..policy.sets.len() {
            let action = policy.decide_in_set(set, operation, subject).action;
            if stops(action) {
                stop[index as usize] |= bit(set);
            }
            if action == PolicyAction::Kill {
                kill[index as usize] |= bit(set);
            }
        }
    }
    ProcessVerdict {
        generation: policy.generation,
        uid: subject.uid,
        gid: subject.gid,
        _pad: 0,
        stop,
        kill,
    }
}

/// The sets in which a process without a verdict is stopped, per
/// operation: wherever any rule, or the default, stops someone (fail
/// closed: the process may be the one it stops).
fn unjudged_stop(policy: &Policy) -> [u64; enforce::op::COUNT] {
    let mut stop = [0; enforce::op::COUNT];
    for (index, operation) in KERNEL_OPERATIONS {
        for (set, weights) in policy.sets.iter().enumerate() {
            let some_rule_stops = policy.rules.iter().any(|rule| {
                rule.sets.contains(&set)
                    && rule.operations.contains(&operation)
                    && stops(rule.action)
            });
            if stops(weights.default) || some_rule_stops {
                stop[index as usize] |= bit(set);
            }
        }
    }
    stop
}

/// The row a process gets at exec, per executable the policy names and
/// for any other ([`enforce::ANY_OTHER_EXE`]): `None` where a rule that can
/// match that executable also looks at something else (user, parent,
/// cgroup, GPU), which only the agent can judge.
fn exe_rows(policy: &Policy) -> Vec<(FileKey, Option<ProcessVerdict>)> {
    let named: std::collections::BTreeSet<FileKey> = policy
        .rules
        .iter()
        .filter_map(|r| r.subject.exe.as_ref())
        .flatten()
        .copied()
        .collect();
    let row_for = |exe: Option<FileKey>| {
        let could_match =
            |rule: &&crate::decide::policy::compile::Rule| match (&rule.subject.exe, exe) {
                (None, _) => true,
                (Some(list), Some(key)) => list.contains(&key),
                (Some(_), None) => false,
            };
        let decided = !policy
            .rules
            .iter()
            .filter(could_match)
            .any(|r| r.subject.looks_beyond_exe());
        decided.then(|| {
            verdict_row(
                policy,
                &Subject {
                    exe,
                    ..Subject::default()
                },
            )
        })
    };
    named
        .iter()
        .map(|&key| (key, row_for(Some(key))))
        .chain(std::iter::once((enforce::ANY_OTHER_EXE, row_for(None))))
        .collect()
}

#[derive(Debug, thiserror::Error)]
pub enum TablesError {
    #[error(
        "cannot write the policy's {what} into the kernel map (a full map: raise the watch \
         set's `max_files`, or split the policy's weight sets)"
    )]
    Map {
        what: &'static str,
        #[source]
        source: MapError,
    },
}

fn map_error(what: &'static str) -> impl FnOnce(MapError) -> TablesError {
    move |source| TablesError::Map { what, source }
}

/// The agent's side of the kernel tables.
pub struct KernelTables {
    maps: PolicyMaps,
    /// An adopted generation (`adopt`) and the policy known to be the one
    /// it was compiled from (the same file, by digest).
    adopted: Option<(u32, Option<Arc<Policy>>)>,
    /// What the kernel's file table holds, per key.
    files: HashMap<FileKey, PolicyFile>,
    /// What the kernel's executable table holds, per key.
    exes: HashMap<FileKey, ExeVerdict>,
    /// The policies of the generations the kernel may have decided under
    /// (the active one last): an enforcement record names the rule of the
    /// generation that decided.
    recent: Vec<Arc<Policy>>,
    active: u32,
    /// The last generation handed out ([`KernelTables::next_generation`]).
    issued: u32,
    /// BPF LSM programs are attached: they deny, the syscall hooks do not
    /// kill.
    lsm: bool,
}

impl KernelTables {
    pub fn new(maps: PolicyMaps) -> Self {
        Self {
            maps,
            adopted: None,
            files: HashMap::new(),
            exes: HashMap::new(),
            recent: Vec::new(),
            active: 0,
            issued: 0,
            lsm: false,
        }
    }

    /// Takes over tables an earlier agent filled (programs adopted from
    /// their pins, `kernel/pins.rs`): its active generation goes on
    /// deciding until this agent installs its own policy (into the other
    /// slot) or disables it; its files and executables are known, so that
    /// the install removes those the new policy lacks.
    pub fn adopt(maps: PolicyMaps) -> Self {
        let active = maps.active.get(&0, 0).unwrap_or(0);
        let files = maps.files.iter().filter_map(Result::ok).collect();
        let exes = maps.exes.iter().filter_map(Result::ok).collect();
        Self {
            maps,
            adopted: (active != 0).then_some((active, None)),
            files,
            exes,
            recent: Vec::new(),
            active,
            issued: active,
            lsm: false,
        }
    }

    /// The adopted generation was compiled from `policy`'s file (their
    /// digests match): the kernel's stops under it are that policy's.
    pub fn adopted_is(&mut self, generation: u32, policy: &Arc<Policy>) {
        if let Some((adopted, known)) = &mut self.adopted
            && *adopted == generation
        {
            *known = Some(policy.clone());
        }
    }

    /// The generation for a policy just loaded: never used before (rows a
    /// failed install left behind cannot pass for its own), and always of
    /// the slot the active generation does not use.
    pub fn next_generation(&mut self) -> u32 {
        let mut next = self.issued.wrapping_add(1).max(1);
        if self.active != 0 && next & 1 == self.active & 1 {
            next += 1;
        }
        self.issued = next;
        next
    }

    /// BPF LSM programs decide from the next install on.
    pub fn set_lsm(&mut self, on: bool) {
        self.lsm = on;
    }

    /// Whether BPF LSM programs decide.
    pub fn lsm(&self) -> bool {
        self.lsm
    }

    /// A handle on the verdict maps for another thread.
    pub fn verdict_writer(&self) -> Result<VerdictMaps, MapError> {
        self.maps.verdicts.try_clone()
    }

    /// The active generation, 0 when the kernel enforces nothing.
    pub fn active(&self) -> u32 {
        self.active
    }

    /// The policy of `generation`, if still known.
    pub fn policy_of(&self, generation: u32) -> Option<&Arc<Policy>> {
        self.recent
            .iter()
            .rev()
            .find(|p| p.generation == generation)
            .or(match &self.adopted {
                Some((adopted, known)) if *adopted == generation => known.as_ref(),
                _ => None,
            })
    }

    /// Makes `policy` the kernel's: fills the unused slot with its files,
    /// its executables, its settings and a row for every process, then
    /// switches. On an error the active tables stay as they were.
    ///
    /// `live` lists the processes and `judge` gives one's row under
    /// `policy`, both from `/proc` at the time of the call. Rows are
    /// written only where the slot has none: the executables' rows go in
    /// first, so a process that execs during the sweep gets its row from
    /// the kernel, which a sweep that read its old image must not
    /// overwrite. After the switch, processes the old slot knows but the
    /// sweep missed (forked meanwhile) are judged too.
    pub fn install(
        &mut self,
        policy: &Arc<Policy>,
        live: impl Fn() -> Vec<u32>,
        judge: impl Fn(u32) -> Option<ProcessVerdict>,
    ) -> Result<(), TablesError> {
        let generation = policy.generation;
        let slot = (generation & 1) as usize;
        // Rows of two generations ago would block the sweep's writes.
        self.maps.verdicts.clear(slot);
        let mut wanted: HashMap<FileKey, u64> = HashMap::new();
        for key in policy.files() {
            let mask = policy.sets_of(key).iter().fold(0, |m, &set| m | bit(set));
            wanted.insert(*key, mask);
        }
        let keys: Vec<FileKey> = self.files.keys().chain(wanted.keys()).copied().collect();
        for key in keys {
            let mask = wanted.get(&key).copied().unwrap_or(0);
            let mut entry = self.files.get(&key).copied().unwrap_or_default();
            if entry.sets[slot] == mask && self.files.contains_key(&key) {
                continue;
            }
            entry.sets[slot] = mask;
            self.maps
                .files
                .insert(key, entry, 0)
                .map_err(map_error("weight files"))?;
            self.files.insert(key, entry);
        }
        let wanted_exes: HashMap<FileKey, ProcessVerdict> = exe_rows(policy)
            .into_iter()
            .map(|(key, row)| (key, row.unwrap_or_default()))
            .collect();
        let keys: Vec<FileKey> = self
            .exes
            .keys()
            .chain(wanted_exes.keys())
            .copied()
            .collect();
        for key in keys {
            let row = wanted_exes.get(&key).copied().unwrap_or_default();
            let mut entry = self.exes.get(&key).copied().unwrap_or_default();
            if entry.slots[slot] == row && self.exes.contains_key(&key) {
                continue;
            }
            entry.slots[slot] = row;
            self.maps
                .exes
                .insert(key, entry, 0)
                .map_err(map_error("executables"))?;
            self.exes.insert(key, entry);
        }
        let settings = PolicySlot {
            generation,
            flags: if self.lsm {
                enforce::slot_flag::LSM_DECIDES
            } else {
                0
            },
            unjudged_stop: unjudged_stop(policy),
        };
        self.maps
            .slots
            .set(slot as u32, settings, 0)
            .map_err(map_error("settings"))?;
        // The agent itself is never stopped: the kernel opens each fanotify
        // event's file in its name, and a refused open would end the
        // group's reads.
        let own = ProcessVerdict {
            generation,
            ..ProcessVerdict::default()
        };
        let me = std::process::id();
        let credentials = (
            nix::unistd::getuid().as_raw(),
            nix::unistd::getgid().as_raw(),
        );
        let rows: Vec<_> = std::iter::once((
            me,
            ProcessVerdict {
                uid: credentials.0,
                gid: credentials.1,
                ..own
            },
        ))
        .chain(
            live()
                .into_iter()
                .filter(|&pid| pid != me)
                .filter_map(|pid| Some((pid, judge(pid)?))),
        )
        .collect();
        self.write_absent(&rows);
        let before = self.active;
        self.maps
            .active
            .set(0, generation, 0)
            .map_err(map_error("active generation"))?;
        self.active = generation;
        let missed: Vec<_> = self
            .pids_judged_under(before)
            .into_iter()
            .filter(|&pid| !self.maps.verdicts.has(generation, pid))
            .filter_map(|pid| Some((pid, judge(pid)?)))
            .collect();
        self.write_absent(&missed);
        self.recent.push(policy.clone());
        if self.recent.len() > 2 {
            self.recent.remove(0);
        }
        self.drop_unused_files(slot);
        let unused: Vec<FileKey> = self
            .exes
            .keys()
            .filter(|key| !wanted_exes.contains_key(key))
            .copied()
            .collect();
        for key in unused {
            let _ = self.maps.exes.remove(&key);
            self.exes.remove(&key);
        }
        Ok(())
    }

    /// Writes verdict rows where their slot has none. A process that
    /// exited meanwhile is no loss; a row a full map refuses leaves its
    /// process not judged (stopped fail-closed), warned about.
    fn write_absent(&mut self, rows: &[(u32, ProcessVerdict)]) {
        let failed = rows
            .iter()
            .filter(|(pid, row)| self.maps.verdicts.write_absent(*pid, row).is_err())
            .count();
        if failed > 0 {
            tracing::warn!(
                failed,
                "the kernel verdict map refused rows: those processes count as not judged \
                 and are stopped wherever the policy stops anyone"
            );
        }
    }

    /// The processes with a row of `generation` (none for 0).
    pub fn pids_judged_under(&self, generation: u32) -> Vec<u32> {
        if generation == 0 {
            return Vec::new();
        }
        self.maps.verdicts.pids((generation & 1) as usize)
    }

    /// Files in no set of the active policy leave the table.
    fn drop_unused_files(&mut self, slot: usize) {
        let unused: Vec<FileKey> = self
            .files
            .iter()
            .filter(|(_, entry)| entry.sets[slot] == 0)
            .map(|(key, _)| *key)
            .collect();
        for key in unused {
            let _ = self.maps.files.remove(&key);
            self.files.remove(&key);
        }
    }

    /// Drops the rows of a process that exited (the kernel drops them at
    /// the exit itself; this catches a row the agent wrote after that).
    pub fn forget(&mut self, pid: u32) {
        self.maps.verdicts.remove(0, pid);
        self.maps.verdicts.remove(1, pid);
    }

    /// Drops the rows of every process `gone` says no longer exists (exit
    /// records lost, rows written after the exit): the map must not fill
    /// with the dead.
    pub fn forget_gone(&mut self, gone: impl Fn(u32) -> bool) {
        for slot in 0..2 {
            for pid in self.maps.verdicts.pids(slot) {
                if gone(pid) {
                    self.maps.verdicts.remove(slot, pid);
                }
            }
        }
    }

    /// Stops in-kernel enforcement (an audit policy, or none).
    pub fn disable(&mut self) -> Result<(), TablesError> {
        self.maps
            .active
            .set(0, 0, 0)
            .map_err(map_error("active generation"))?;
        self.active = 0;
        Ok(())
    }

    /// Writes one process's verdict under the active policy; `None` when
    /// the kernel enforces nothing.
    pub fn judge(&mut self, pid: u32, subject: &Subject<'_>) -> Option<Result<(), MapError>> {
        if pid == std::process::id() {
            return None;
        }
        let policy = self.policy_of(self.active)?.clone();
        Some(
            self.maps
                .verdicts
                .write(pid, &verdict_row(&policy, subject)),
        )
    }
}

#[cfg(test)]
mod tests;
