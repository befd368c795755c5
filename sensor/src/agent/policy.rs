//! The policy's life in the agent: loaded at start-up (errors stop it),
//! enforced by fanotify in enforce mode, reloaded on SIGHUP or when the
//! file changes. A reload swaps the whole policy at once for the judge and
//! the enforcement thread; a file that does not load is rejected with a
//! `policy_rejected` record, and the policy in force stays.

use std::{
    os::fd::OwnedFd,
    os::unix::fs::MetadataExt,
    path::Path,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
};

use tokio::sync::mpsc::Receiver;

use arc_swap::ArcSwap;

use super::{Agent, AgentError};
use crate::{
    Chain,
    decide::{
        enforce::{
            fanotify::{Enforced, Enforcer, GpuPids, KernelPolicies},
            kernel_tables::{KernelTables, verdict_row},
            proc_subject::ProcSubject,
        },
        policy::{self, Level, Mode, Policy, SharedPolicy, Subject, judge::Judge},
    },
    enrich::{process::procfs, watch::WatchSet},
    event::{Action, PolicyInfo, PolicyRejected, Text},
    kernel::maps::VerdictMaps,
};

/// Why a reload that only re-resolves the weight sets happened.
const WEIGHT_FILES_CHANGED: &str = "weight files changed under the watch roots";

/// What carries out a policy, as `policy_loaded` and the sensor status
/// name it, in the order they decide: `bpf_lsm` (denies in the kernel),
/// `fanotify` (answers opens), `bpf_send_signal` (kills where no deny
/// applies); `none` in audit mode.
pub fn mechanisms(mode: Mode, fanotify: bool, lsm: bool) -> String {
    if mode != Mode::Enforce {
        return String::from("none");
    }
    let mut parts = Vec::new();
    if lsm {
        parts.push(super::event_loop::BPF_LSM);
    }
    if fanotify {
        parts.push(super::event_loop::FANOTIFY);
    }
    if !lsm {
        parts.push(super::event_loop::BPF_SEND_SIGNAL);
    }
    parts.join("+")
}

/// What identifies a version of the policy file on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp {
    dev: u64,
    ino: u64,
    size: u64,
    mtime_ns: i128,
}

/// The file's stamp now; `None` when it cannot be read.
pub fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        size: m.size(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

/// What start-up sets up for the policy.
#[derive(Default)]
pub struct StartUp {
    pub judge: Option<Judge>,
    /// Enforce mode: the marks, and the decisions the thread reports.
    pub enforcement: Option<(Enforcer, Receiver<Enforced>)>,
    pub gpu_pids: GpuPids,
    pub kernel_policies: KernelPolicies,
    pub dropped: Arc<AtomicU64>,
    /// The fanotify thread judged a file the policy was compiled without.
    pub new_files: Arc<AtomicBool>,
    pub findings: Vec<policy::Finding>,
}

/// Loads the configured policy; in enforce mode marks its files and starts
/// answering at once (an open of a marked file waits for the answer), so
/// that any failure stops the start-up with nothing attached. The kernel
/// tables are filled once the processes are known ([`Agent::install_policy`]).
///
/// `inherited` is an earlier agent's fanotify group (`agent/fdstore.rs`):
/// enforcing, this agent answers the opens it holds; otherwise it is
/// closed, which lets them through.
pub fn start_up(
    path: Option<&Path>,
    tables: &mut KernelTables,
    inherited: Option<OwnedFd>,
) -> Result<StartUp, AgentError> {
    let Some(path) = path else {
        return Ok(StartUp::default());
    };
    let (mut compiled, findings) = load(path).map_err(|err| match err {
        Rejected::File(e) => AgentError::PolicyFile(e),
        Rejected::Invalid(errors) => AgentError::PolicyInvalid {
            path: path.to_path_buf(),
            errors,
        },
    })?;
    let enforcer = match compiled.mode {
        Mode::Enforce => {
            if inherited.is_some() {
                tracing::info!(
                    "took over the previous agent's fanotify group: the opens it held while no \
                     agent ran are answered now"
                );
            }
            Some(
                enforcer_for(&compiled, inherited).map_err(|source| AgentError::Enforcement {
                    path: path.to_path_buf(),
                    source,
                })?,
            )
        }
        Mode::Audit => None,
    };
    compiled.generation = tables.next_generation();
    let shared: SharedPolicy = Arc::new(ArcSwap::new(Arc::new(compiled)));
    let mechanism = enforcer.as_ref().map(|_| "fanotify");
    let gpu_pids = GpuPids::default();
    let kernel_policies = KernelPolicies::default();
    let dropped = Arc::new(AtomicU64::new(0));
    let new_files = Arc::new(AtomicBool::new(false));
    let enforcement = match enforcer {
        Some(enforcer) => {
            let verdicts = verdict_writer(tables)?;
            let rx = spawn(
                &enforcer,
                shared.clone(),
                Feeds {
                    kernel: kernel_policies.clone(),
                    gpu: gpu_pids.clone(),
                    verdicts,
                    dropped: dropped.clone(),
                    new_files: new_files.clone(),
                },
            )?;
            Some((enforcer, rx))
        }
        None => None,
    };
    Ok(StartUp {
        judge: Some(Judge::new(shared, path.to_path_buf(), mechanism)),
        enforcement,
        gpu_pids,
        kernel_policies,
        dropped,
        new_files,
        findings,
    })
}

/// What the fanotify thread reads and writes besides the policy.
struct Feeds {
    kernel: KernelPolicies,
    gpu: GpuPids,
    verdicts: VerdictMaps,
    dropped: Arc<AtomicU64>,
    /// Set when it judged a file the policy was compiled without.
    new_files: Arc<AtomicBool>,
}

/// Starts the thread that answers fanotify permission events; its
/// decisions come back on a bounded channel (a full channel drops the
/// record, never the decision, and counts it).
fn spawn(
    enforcer: &Enforcer,
    policy: SharedPolicy,
    feeds: Feeds,
) -> Result<Receiver<Enforced>, AgentError> {
    let (tx, rx) = tokio::sync::mpsc::channel(4096);
    let serving = enforcer.clone();
    let Feeds {
        kernel,
        gpu,
        verdicts,
        dropped,
        new_files,
    } = feeds;
    std::thread::Builder::new()
        .name(String::from("ww-fanotify"))
        .spawn(move || {
            serving.serve(policy, kernel, gpu, verdicts, new_files, |decision| {
                if tx.try_send(decision).is_err() {
                    dropped.fetch_add(1, Ordering::Relaxed);
                }
            });
        })
        .map_err(|source| AgentError::Io {
            what: "the fanotify enforcement thread",
            source,
        })?;
    tracing::info!("policy enforced: opens of its files are answered by fanotify");
    Ok(rx)
}

/// The fanotify thread's own handle on the kernel verdict maps.
fn verdict_writer(tables: &KernelTables) -> Result<VerdictMaps, AgentError> {
    tables.verdict_writer().map_err(|err| AgentError::Io {
        what: "the kernel verdict maps",
        source: std::io::Error::other(Chain(&err).to_string()),
    })
}

fn enforcer_for(
    compiled: &Policy,
    inherited: Option<OwnedFd>,
) -> Result<Enforcer, crate::decide::enforce::fanotify::FanotifyError> {
    Enforcer::new(compiled, inherited)
}

/// Why a policy file was not taken.
enum Rejected {
    File(policy::file::ParseError),
    Invalid(Vec<String>),
}

/// Reads, compiles and checks the policy file.
fn load(path: &Path) -> Result<(Policy, Vec<policy::Finding>), Rejected> {
    let checked = policy::load(path).map_err(Rejected::File)?;
    let errors: Vec<String> = checked
        .findings
        .iter()
        .filter(|f| f.level == Level::Error)
        .map(|f| format!("  {f}"))
        .collect();
    let Some(compiled) = checked.policy.filter(|_| errors.is_empty()) else {
        return Err(Rejected::Invalid(errors));
    };
    for finding in &checked.findings {
        tracing::warn!("policy: {finding}");
    }
    tracing::info!(
        path = %path.display(),
        sha256 = %compiled.hash,
        weight_sets = compiled.sets.len(),
        rules = compiled.rules.len(),
        mode = ?compiled.mode,
        "policy loaded"
    );
    Ok((compiled, checked.findings))
}

/// What the policy matches a known process on.
fn subject_of<'a>(
    processes: &'a crate::enrich::process::ProcessTable,
    info: &'a crate::enrich::process::ProcessInfo,
) -> Subject<'a> {
    Subject {
        exe: info.exe_id,
        parent_exe: processes.lookup(info.ppid).and_then(|p| p.exe_id),
        uid: info.uid,
        gid: info.gid,
        container_id: info.container.as_ref().map(|c| c.id.as_str()),
        cgroup_path: processes.cgroup_path(info.cgroup_id),
        gpu: info.gpu,
    }
}

/// Files of the policy the kernel's watch map could not take (it was
/// full): no record, no in-kernel decision for them; warned about.
pub fn unwatched(judge: &Judge, watch: &WatchSet) -> u64 {
    let policy = judge.shared_policy().load_full();
    let unwatched = policy
        .files()
        .filter(|key| watch.flags_of(key) & sensor_common::watch_flag::WEIGHT == 0)
        .count() as u64;
    if unwatched > 0 {
        tracing::warn!(
            unwatched,
            "files of the policy's weight sets are not in the kernel's watch map (it is full): \
             no record and no in-kernel decision for them (raise watch.max_files)"
        );
    }
    unwatched
}

impl Agent {
    /// Starts enforcing (a reload into enforce mode).
    fn start_enforcement(
        &mut self,
        enforcer: Enforcer,
        policy: SharedPolicy,
    ) -> Result<(), AgentError> {
        let verdicts = verdict_writer(&self.kernel_tables)?;
        let rx = spawn(
            &enforcer,
            policy,
            Feeds {
                kernel: self.kernel_policies.clone(),
                gpu: self.gpu_pids.clone(),
                verdicts,
                dropped: self.enforced_dropped.clone(),
                new_files: self.new_policy_files.clone(),
            },
        )?;
        self.enforced = Some(rx);
        self.enforcer = Some(enforcer);
        if let Some(judge) = self.decide.judge_mut() {
            judge.set_opens_enforced_by(Some("fanotify"));
        }
        Ok(())
    }

    /// Makes `policy` the kernel's: in enforce mode its tables, with a
    /// verdict for every process read from `/proc` (the process table may
    /// lag the kernel by a poll), switch in at once; an audit policy turns
    /// in-kernel enforcement off. The fanotify thread writes its openers'
    /// rows for both the old and the new policy from here on, so that no
    /// opener is left with a row of the old generation only.
    pub(super) fn install_policy(
        &mut self,
        policy: &Arc<Policy>,
    ) -> Result<(), crate::decide::enforce::kernel_tables::TablesError> {
        if policy.mode != Mode::Enforce {
            self.kernel_policies.store(Arc::new(Vec::new()));
            self.kernel_tables.disable()?;
            self.agent_slots.note_policy(0, "");
            return Ok(());
        }
        let active = self.kernel_tables.active();
        let mut published: Vec<Arc<Policy>> = self
            .kernel_tables
            .policy_of(active)
            .into_iter()
            .cloned()
            .collect();
        published.push(policy.clone());
        self.kernel_policies.store(Arc::new(published));

        let proc_root = Path::new("/proc");
        let gpu = self.gpu_pids.load();
        let live = || procfs::list_pids(proc_root).unwrap_or_default();
        let judge = |pid: u32| {
            ProcSubject::read(proc_root, pid, &gpu)
                .map(|process| verdict_row(policy, &process.subject()))
        };
        self.kernel_tables.install(policy, live, judge)?;
        self.agent_slots
            .note_policy(policy.generation, &policy.hash);
        Ok(())
    }

    /// Judges one process again for the kernel tables (it exec'd, forked
    /// or opened a GPU device); a no-op unless the kernel enforces.
    pub(super) fn rejudge(&mut self, pid: u32) {
        if self.kernel_tables.active() == 0 {
            return;
        }
        let processes = &self.enrich.processes;
        let Some(info) = processes.lookup(pid) else {
            return;
        };
        let subject = subject_of(processes, info);
        if let Some(Err(err)) = self.kernel_tables.judge(pid, &subject) {
            self.health.agent.verdict_write_errors.inc();
            tracing::debug!(error = %Chain(&err), pid, "cannot write a process's verdict: it counts as not judged");
        }
    }

    /// Publishes the GPU processes for the enforcement thread.
    pub(super) fn publish_gpu_pids(&self) {
        self.gpu_pids
            .store(Arc::new(self.enrich.processes.gpu_pids()));
    }

    /// Whether the policy file changed since it was last loaded, and has
    /// stayed the same for a poll since (an editor writing it in place is
    /// not read half-way).
    pub(super) fn policy_file_changed(&mut self) -> bool {
        let Some(judge) = self.decide.judge() else {
            return false;
        };
        let now = stamp(judge.path());
        if now == self.policy_stamp {
            self.policy_seen = None;
            return false;
        }
        let settled = self.policy_seen.as_ref() == Some(&now);
        self.policy_seen = Some(now);
        settled
    }

    /// Whether an executable the policy names was replaced (a package
    /// upgrade), appeared or vanished since it was compiled, and this state
    /// was not tried already (a reload that failed is not retried every
    /// poll, only when the executables change again).
    pub(super) fn policy_executables_changed(&mut self) -> bool {
        let Some(policy) = self.decide.policy().map(|p| p.load_full()) else {
            return false;
        };
        let now = policy.executable_identities();
        if !policy.executables_differ(&now) || self.policy_exes_tried.as_ref() == Some(&now) {
            return false;
        }
        self.policy_exes_tried = Some(now);
        true
    }

    /// Resolves the policy's weight sets again after files appeared or
    /// moved under the watch roots (a model downloaded, a deploy renaming
    /// new weights into place), so that they are marked and judged; a
    /// no-op when the set of files is unchanged.
    pub(super) fn resolve_policy_files(&mut self) {
        self.reload(WEIGHT_FILES_CHANGED, true);
    }

    /// Loads the policy file again; swaps it in whole when it is valid,
    /// keeps the one in force and records the rejection otherwise.
    pub(super) fn reload_policy(&mut self, why: &str) {
        self.reload(why, false);
    }

    fn reload(&mut self, why: &str, only_if_files_changed: bool) {
        let Some(judge) = self.decide.judge() else {
            tracing::info!("{why}: no policy is configured, so none is reloaded");
            return;
        };
        let path = judge.path().to_path_buf();
        let shared = judge.shared_policy();
        let now = stamp(&path);
        if only_if_files_changed && now != self.policy_stamp {
            // The policy file is being edited: the reload that follows once
            // it settles resolves the files too. Resolving now would read
            // the edit and, with the files unchanged, drop it unloaded.
            self.policy_resolve = true;
            return;
        }
        self.policy_stamp = now;
        let started = std::time::Instant::now();
        let ms = |since: std::time::Instant| since.elapsed().as_millis() as u64;
        let (new, findings) = match load(&path) {
            // Edited since the stamp was taken: the next poll sees the
            // change and reloads it (the stamp is still the old one).
            Ok((new, _)) if only_if_files_changed && new.hash != shared.load().hash => {
                self.policy_resolve = true;
                return;
            }
            Ok((new, _)) if only_if_files_changed && new.same_files(&shared.load()) => return,
            Ok((mut new, findings)) => {
                new.generation = self.kernel_tables.next_generation();
                (Arc::new(new), findings)
            }
            Err(rejected) => {
                let errors = match rejected {
                    Rejected::File(err) => vec![format!("  {}", Chain(&err))],
                    Rejected::Invalid(errors) => errors,
                };
                return self.reject_policy(&path, why, errors);
            }
        };
        let compile_ms = ms(started);
        let step = std::time::Instant::now();
        // Enforcing needs the marks before the swap: no open of a new file
        // may pass unjudged once the new policy is in force.
        if new.mode == Mode::Enforce {
            match &self.enforcer {
                Some(enforcer) => {
                    let current = shared.load_full();
                    let marked = (current.mode == Mode::Enforce).then_some(current.as_ref());
                    if let Err(err) = enforcer.mark_beyond(&new, marked) {
                        let errors = vec![format!("  {}", Chain(&err))];
                        return self.reject_policy(&path, why, errors);
                    }
                }
                None => match enforcer_for(&new, None) {
                    Ok(enforcer) => {
                        if let Err(err) = self.start_enforcement(enforcer, shared.clone()) {
                            let errors = vec![format!("  {}", Chain(&err))];
                            return self.reject_policy(&path, why, errors);
                        }
                    }
                    Err(err) => {
                        let errors = vec![format!("  {}", Chain(&err))];
                        return self.reject_policy(&path, why, errors);
                    }
                },
            }
        }
        let mark_ms = ms(step);
        let step = std::time::Instant::now();
        // The kernel tables switch before the judge and the fanotify thread
        // do: for a moment the kernel kills by the new policy while opens
        // are still answered by the old, never a moment with neither.
        // The kernel watches the files of both policies until the swap.
        let both: Vec<_> = shared
            .load()
            .paths
            .iter()
            .chain(&new.paths)
            .cloned()
            .collect();
        self.watch.pin_policy_files(&both, &mut self.kernel.watched);
        // Processes that already hold a file the policy brings in must pass
        // the holder prefilter before the kernel decides by the new tables.
        super::holders::seed(&mut self.kernel.holders, &self.watch);
        let watch_ms = ms(step);
        let step = std::time::Instant::now();
        if let Err(err) = self.install_policy(&new) {
            // The fanotify thread writes rows for the policy in force only.
            let active = self.kernel_tables.active();
            let in_force: Vec<Arc<Policy>> = self
                .kernel_tables
                .policy_of(active)
                .into_iter()
                .cloned()
                .collect();
            self.kernel_policies.store(Arc::new(in_force));
            let errors = vec![format!("  {}", Chain(&err))];
            self.watch
                .pin_policy_files(&shared.load().paths, &mut self.kernel.watched);
            return self.reject_policy(&path, why, errors);
        }
        let tables_ms = ms(step);
        let old = shared.swap(new.clone());
        self.watch
            .pin_policy_files(&new.paths, &mut self.kernel.watched);
        if let Some(enforcer) = &self.enforcer {
            enforcer.unmark_dropped(&old, &new);
        }
        // An audit policy judges opens in the records again (the fanotify
        // thread lets everything through under it).
        let enforcing = new.mode == Mode::Enforce && self.enforcer.is_some();
        if let Some(judge) = self.decide.judge_mut() {
            judge.set_opens_enforced_by(enforcing.then_some("fanotify"));
        }
        tracing::info!(
            why,
            sha256 = %new.hash,
            compile_ms,
            mark_ms,
            watch_ms,
            tables_ms,
            total_ms = ms(started),
            "policy reloaded"
        );
        if let Some(judge) = self.decide.judge() {
            let unwatched = unwatched(judge, &self.watch);
            let mechanism = mechanisms(new.mode, self.enforcer.is_some(), self.kernel_tables.lsm());
            self.policy_loaded = Some(judge.loaded(unwatched, &findings, mechanism));
        }
        self.emit_policy_loaded();
        self.out.flush();
    }

    fn reject_policy(&mut self, path: &Path, why: &str, errors: Vec<String>) {
        tracing::warn!(
            "{why}: the policy {} was rejected; the one in force stays:\n{}",
            path.display(),
            errors.join("\n")
        );
        let mut event = self
            .enrich
            .sensor_event(Action::PolicyRejected, Default::default());
        event.sensor = None;
        event.policy = Some(PolicyInfo::Rejected(PolicyRejected {
            path: Text::from(path),
            errors: errors.iter().map(|e| e.trim().to_owned()).collect(),
        }));
        self.publish(event);
        self.out.flush();
    }
}
