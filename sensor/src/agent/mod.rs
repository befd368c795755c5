//! `weightwarden run`, as wiring only: the start-up sequence (the sensor
//! starts whole or not at all), the stages the event loop drives, and the
//! clean stop on SIGINT/SIGTERM.

mod creations;
mod event_loop;
mod fdstore;
mod handover;
mod health;
mod holders;
mod integrity;
mod lineage;
mod notify;
mod policy;
mod senders;
mod signals;
mod single;

use std::{
    path::{Path, PathBuf},
    sync::{Arc, atomic::AtomicU64},
};

use aya::maps::{MapData, RingBuf};

use crate::{
    config::Config,
    decide::{
        Decide,
        enforce::{
            fanotify::{Enforced, Enforcer, GpuPids, KernelPolicies},
            kernel_tables::KernelTables,
        },
    },
    enrich::{
        events::Enricher,
        process::{CgroupResolver, DEFAULT_CAPACITY, ProcessTable, cgroup2_mount},
        watch::{WatchSet, WatchSpec},
    },
    event::{Action, IoUringCapture},
    kernel::{
        btf::{KernelOffsets, VMLINUX_BTF},
        loader::{LoadOptions, Sensor},
        maps::{Holders, KernelInodeMap, ReadMaps},
        preflight, uring,
    },
    output::{Fanout, OpenError},
};
pub use handover::unload;
use health::Health;
use signals::Signals;

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Preflight(#[from] preflight::PreflightError),
    #[error(transparent)]
    Btf(#[from] crate::kernel::btf::BtfError),
    #[error(transparent)]
    Load(#[from] crate::kernel::loader::LoadError),
    #[error(transparent)]
    Watch(#[from] crate::enrich::watch::WatchError),
    #[error(transparent)]
    Output(#[from] OpenError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Metrics(#[from] crate::metrics::endpoint::BindError),
    #[error(transparent)]
    Single(#[from] single::SingleError),
    #[error(transparent)]
    PolicyFile(#[from] crate::decide::policy::file::ParseError),
    #[error(transparent)]
    Baseline(#[from] crate::decide::detect::integrity::ManifestError),
    #[error("the policy {} cannot be used ({} error(s); `weightwarden policy check` explains it):\n{}", .path.display(), .errors.len(), .errors.join("\n"))]
    PolicyInvalid { path: PathBuf, errors: Vec<String> },
    #[error("cannot enforce the policy {}", .path.display())]
    Enforcement {
        path: PathBuf,
        #[source]
        source: crate::decide::enforce::fanotify::FanotifyError,
    },
    #[error("cannot enforce the policy {} in the kernel", .path.display())]
    KernelTables {
        path: PathBuf,
        #[source]
        source: crate::decide::enforce::kernel_tables::TablesError,
    },
    #[error(
        "kernel.handover is on but nothing is pinned (kernel.pin_dir is \"none\", or unset \
         with --allow-second-agent): set kernel.pin_dir to a directory under /sys/fs/bpf/"
    )]
    HandoverUnpinned,
    #[error("cannot set up {what}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// When a failure happened, which decides the exit status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Before capture went live: bad input or an unsuitable host; nothing
    /// is left loaded.
    StartUp,
    /// After capture went live.
    Live,
}

/// A failure of `run` and the phase it happened in.
#[derive(Debug)]
pub struct RunError {
    pub phase: Phase,
    pub source: AgentError,
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.source.fmt(f)
    }
}

impl std::error::Error for RunError {
    // The inner error speaks for itself: its own causes follow it.
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source.source()
    }
}

impl RunError {
    fn at(phase: Phase) -> impl Fn(AgentError) -> RunError {
        move |source| RunError { phase, source }
    }
}

/// What `run` was asked to do, already validated.
pub struct RunSettings {
    pub config: Config,
    /// The user named the watch roots (flag or config file): a missing or
    /// unreadable root is then an error rather than a root to wait for.
    pub roots_required: bool,
    /// Where the configuration came from, for the log.
    pub config_origin: String,
    /// Run beside another agent (`--allow-second-agent`, for tests).
    pub allow_second_agent: bool,
}

/// The agent-side handles on the kernel's maps.
struct KernelMaps {
    watched: KernelInodeMap,
    read_maps: ReadMaps,
    holders: Holders,
}

/// The running sensor: the stages, and the settings the loop needs.
struct Agent {
    config: Config,
    kernel: KernelMaps,
    watch: WatchSet,
    enrich: Enricher,
    decide: Decide,
    /// This run's identity in record ids (random), and the last sequence
    /// number given.
    run_id: u64,
    seq: u64,
    /// The `policy_loaded` record, written after `sensor_start`.
    policy_loaded: Option<crate::event::PolicyInfo>,
    /// Decisions the enforcement thread carried out, to record.
    enforced: Option<tokio::sync::mpsc::Receiver<Enforced>>,
    /// Enforcement decisions the channel refused (it was full): counted.
    enforced_dropped: Arc<AtomicU64>,
    /// GPU processes, published for the enforcement thread.
    gpu_pids: GpuPids,
    /// The fanotify marks, when enforcing.
    enforcer: Option<Enforcer>,
    /// The policy file as last loaded, to notice edits.
    policy_stamp: Option<policy::Stamp>,
    /// A changed stamp seen at the last poll: reload once it holds.
    policy_seen: Option<Option<policy::Stamp>>,
    /// Weight files appeared or moved: resolve the policy's sets again.
    policy_resolve: bool,
    /// The executables' identities a reload was last tried for.
    policy_exes_tried: Option<Vec<Option<sensor_common::FileKey>>>,
    /// The policy compiled into the kernel's maps (the kill fallback).
    kernel_tables: KernelTables,
    /// The policies the kernel tables may use, published for the fanotify
    /// thread's verdict rows.
    kernel_policies: KernelPolicies,
    /// The fanotify thread judged a file the policy was compiled without.
    new_policy_files: Arc<std::sync::atomic::AtomicBool>,
    out: Fanout,
    health: Health,
    /// Files joined the watch set: look for processes already holding them.
    holders_rescan: bool,
    /// Each process's `OPEN_AGG` entries, known from its `open` records
    /// (the kernel makes one with each first open), so that its exit
    /// takes them by key instead of scanning the map.
    open_entries: std::collections::HashMap<u32, Vec<sensor_common::FileKey>>,
    /// Processes that made a memory record (an open of `/proc/PID/mem`, a
    /// ptrace attach): only their exits look for memory-read aggregates.
    memory_readers: std::collections::HashSet<u32>,
    /// Senders whose reads were reported early once (`report_reads_before_send`).
    senders_drained: std::collections::HashSet<u32>,
    /// Files processes created, whose own changes to them are folded
    /// into their `create` record.
    creations: creations::Creations,
    /// The baseline checker, when `detect.baseline` is set.
    integrity: Option<integrity::Integrity>,
    /// Where the inodes followed outside the roots are saved.
    followed_state: Option<PathBuf>,
    /// Whether the io_uring programs run (`sensor.io_uring`).
    io_uring: IoUringCapture,
    /// The metrics endpoint, until the event loop takes it.
    metrics: Option<crate::metrics::endpoint::Endpoint>,
    /// One agent per host, while this one runs.
    _host_lock: Option<single::HostLock>,
    /// The kernel's note of this agent and the policy it enforces, for the
    /// next agent (`kernel/pins.rs`).
    agent_slots: crate::kernel::pins::AgentSlots,
}

/// Everything `run` set up before going live.
struct Started {
    sensor: Sensor,
    agent: Agent,
    events: RingBuf<MapData>,
    signals: Signals,
}

/// How a run that stopped cleanly went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stopped {
    /// Records the outputs could not write (each also counted per output
    /// in `sensor_stop` and logged).
    pub outputs_lost: u64,
}

/// Runs the sensor until SIGINT or SIGTERM.
pub async fn run(settings: RunSettings) -> Result<Stopped, RunError> {
    let Started {
        sensor,
        mut agent,
        events,
        signals,
    } = start(settings).map_err(RunError::at(Phase::StartUp))?;
    let mut sensor = sensor;
    let result = agent.event_loop(events, signals).await;
    match result {
        Ok((mut ring, stop)) => {
            if stop == "SIGTERM" && agent.config.kernel.handover && sensor.leave_attached() {
                // The programs go on capturing into the pinned ring buffer
                // for the next agent, which reads it from where this one
                // stops: drain what is there now, not what keeps coming.
                tracing::info!(
                    "handover: leaving the programs attached and their maps pinned for the \
                     next agent"
                );
                drop(sensor);
                agent.hand_over_fanotify();
                agent.health.agent.handover_left_attached.inc();
                agent.drain_ring_for(&mut ring, HANDOVER_DRAIN);
            } else {
                // Detach first so nothing new arrives, then drain what the
                // kernel already queued, then flush aggregates: no record
                // is produced into a ring buffer nobody reads.
                drop(sensor);
                agent.drain_ring(&mut ring);
            }
            agent.shutdown();
            Ok(Stopped {
                outputs_lost: agent.out.lost(),
            })
        }
        Err(err) => {
            drop(sensor);
            agent.shutdown();
            Err(RunError::at(Phase::Live)(err))
        }
    }
}

/// How long a handover stop reads the ring buffer the programs go on
/// filling before it leaves the rest to the next agent.
const HANDOVER_DRAIN: std::time::Duration = std::time::Duration::from_secs(1);

/// The start-up sequence: every step that can fail on bad input runs
/// before the programs are attached.
fn start(settings: RunSettings) -> Result<Started, AgentError> {
    let RunSettings {
        config,
        roots_required,
        config_origin,
        allow_second_agent,
    } = settings;
    preflight::check()?;
    // Before anything is loaded: a second agent changes nothing.
    let host_lock = if allow_second_agent {
        None
    } else {
        Some(single::HostLock::take(Path::new(single::LOCK_PATH))?)
    };
    let offsets = KernelOffsets::from_file(Path::new(VMLINUX_BTF))?;
    let load_options = LoadOptions::from_config(&config);
    let pin_dir = config
        .kernel
        .pin_dir(allow_second_agent)
        .map(Path::to_path_buf);
    if config.kernel.handover && pin_dir.is_none() {
        return Err(AgentError::HandoverUnpinned);
    }
    let (mut sensor, origin) = handover::load(&offsets, &load_options, pin_dir.as_deref())?;
    // Before the agent's first O_PATH open: adopted programs must know it.
    sensor.claim()?;
    let agent_slots = sensor.take_agent_slots()?;
    let adopted = matches!(origin, handover::Origin::Adopted { .. });
    let tier = sensor.tier;
    let policy_maps = sensor.take_policy_maps()?;
    let mut kernel_tables = if adopted {
        KernelTables::adopt(policy_maps)
    } else {
        KernelTables::new(policy_maps)
    };
    let policy::StartUp {
        judge,
        enforcement,
        gpu_pids,
        kernel_policies,
        dropped: enforced_dropped,
        new_files: new_policy_files,
        findings: policy_findings,
    } = policy::start_up(
        config.policy.as_deref(),
        &mut kernel_tables,
        fdstore::take(fdstore::FANOTIFY),
    )?;
    let (enforcer, enforced) = enforcement.unzip();
    // Stops the adopted programs made while no agent ran are this policy's
    // if it is the same file.
    if let (
        handover::Origin::Adopted {
            policy: Some((generation, digest)),
            ..
        },
        Some(judge),
    ) = (&origin, &judge)
    {
        let compiled = judge.shared_policy().load_full();
        if crate::kernel::pins::policy_digest(&compiled.hash) == *digest {
            kernel_tables.adopted_is(*generation, &compiled);
        }
    }
    let mut watched = KernelInodeMap::new(sensor.take_watch_maps(&load_options)?);
    let roots = config.expanded_roots(Path::new("/home"), Path::new("/root"));
    let watch = WatchSet::new(
        WatchSpec {
            roots,
            roots_required,
            extensions: config.watch.extensions.clone(),
            gpu_patterns: config.gpu.device_patterns.clone(),
            max_retained: config.watch.max_retained as usize,
        },
        &mut watched,
    )?;
    let mut watch = watch;
    if let Some(compiled) = judge.as_ref().map(|j| j.shared_policy().load_full()) {
        let extra = watch.pin_policy_files(&compiled.paths, &mut watched);
        if extra > 0 {
            tracing::info!(
                files = extra,
                "policy files outside the watch roots (or without a weight extension) are \
                 watched too"
            );
        }
    }
    let followed_state = lineage::state_file(&config);
    let restored = lineage::restore(&mut watch, followed_state.as_deref(), &mut watched);
    // The initial walk's temporaries are freed but glibc keeps the pages;
    // give them back so resident memory reflects what the agent keeps.
    release_free_heap();
    // A baseline that cannot be read is bad input: refuse to start.
    let baseline = config
        .detect
        .baseline
        .as_deref()
        .map(crate::decide::detect::integrity::Manifest::load)
        .transpose()?;
    let spool_root = config.agent.state_dir().map(|d| d.join("spool"));
    let mut out = Fanout::open(&config.output.sinks, spool_root.as_deref())?;
    if let Some(store) = config.store.settings() {
        let writer = crate::store::Writer::start(&store)?;
        tracing::info!(store = %store.path.display(), key = %store.key_path.display(), "audit store open");
        out.attach_store(writer);
    }
    let metrics = config
        .agent
        .metrics_addr()
        .map(crate::metrics::endpoint::Endpoint::bind)
        .transpose()?;
    if let Some(addr) = metrics.as_ref().and_then(|m| m.local_addr().ok()) {
        tracing::info!(%addr, "metrics served at http://{addr}/metrics");
    }
    let events = sensor.take_events()?;
    let kernel = KernelMaps {
        watched,
        read_maps: sensor.take_read_maps()?,
        holders: sensor.take_holders()?,
    };
    let kernel_counters = sensor.take_counters()?;
    let mut processes = ProcessTable::new(
        PathBuf::from("/proc"),
        CgroupResolver::new(cgroup2_mount().unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))),
        DEFAULT_CAPACITY,
    );
    processes.resolve_exe_identities(judge.is_some());
    let host = match &config.agent.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from("unknown")),
    };
    let enrich = Enricher::new(processes, host, tier.tier, config.agent.ancestors_max);

    // From here on a signal must stop (or not stop) the agent cleanly, even
    // one that arrives while /proc is being scanned.
    let signals = Signals::install().map_err(|source| AgentError::Io {
        what: "the signal handlers",
        source,
    })?;
    // Everything that can fail on bad input has succeeded: go live (an
    // adopted load has been live all along).
    if !adopted {
        sensor.attach_all()?;
    }
    if judge.is_some() && sensor.lsm {
        kernel_tables.set_lsm(true);
    } else if judge.is_some() {
        match sensor.attach_lsm_enforcement() {
            Ok(()) => {
                kernel_tables.set_lsm(true);
                tracing::info!(
                    "BPF LSM attached: an enforced policy denies opens, reads, writes and maps \
                     of its files with EPERM, whatever the descriptor"
                );
            }
            Err(err) => tracing::info!(
                reason = %crate::Chain(&err),
                "BPF LSM unavailable: an enforced policy denies opens with fanotify and kills \
                 for reads and maps through other descriptors"
            ),
        }
    }
    handover::report_refused(&sensor, config.kernel.handover);
    let replaced = origin.after_attach(&sensor)?;
    let io_uring = io_uring_capture(&sensor, judge.is_some() && !kernel_tables.lsm());
    let policy_loaded = judge.as_ref().map(|j| {
        let mode = j.shared_policy().load().mode;
        let mechanism = policy::mechanisms(mode, enforcer.is_some(), kernel_tables.lsm());
        j.loaded(policy::unwatched(j, &watch), &policy_findings, mechanism)
    });
    // With the programs attached, the kernel can say which identity it
    // gives a file: check the keys computed from stat() and the mount
    // table, one file per device (btrfs, overlayfs: docs/architecture.md).
    let unconfirmed = watch.confirm_identities(Box::new(sensor.take_identity_probe()?));
    if unconfirmed > 0 {
        tracing::warn!(
            devices = unconfirmed,
            "file identities on some file systems under the watch roots are unconfirmed: \
             sensor_start lists them in sensor.unconfirmed"
        );
    }
    let health = Health::new(kernel_counters, sensor.attached as u64);
    health
        .agent
        .ring_buffer_bytes
        .set(u64::from(config.kernel.ring_buffer_bytes));
    health
        .agent
        .lineage_restored
        .inc_by(restored.followed as u64);
    health
        .agent
        .lineage_restore_gone
        .inc_by(restored.gone as u64);
    let decide = Decide::new(judge, &config.detect);
    let mut agent = Agent {
        config,
        kernel,
        watch,
        enrich,
        decide,
        run_id: run_id(),
        seq: 0,
        policy_loaded,
        enforced,
        enforced_dropped,
        gpu_pids,
        enforcer,
        policy_stamp: None,
        policy_seen: None,
        policy_resolve: false,
        policy_exes_tried: None,
        kernel_tables,
        kernel_policies,
        new_policy_files,
        out,
        health,
        holders_rescan: false,
        open_entries: Default::default(),
        memory_readers: Default::default(),
        senders_drained: Default::default(),
        creations: Default::default(),
        integrity: None,
        followed_state,
        io_uring,
        metrics,
        _host_lock: host_lock,
        agent_slots,
    };
    // Attach first, then read /proc: a process starting in between is seen
    // by one or the other.
    let known = agent.enrich.processes.scan_existing();
    holders::mark_gpu_processes(&mut agent.enrich.processes, &agent.watch);
    agent.publish_gpu_pids();
    // Now that every process is known, with its executable and GPU role,
    // the kernel tables go live with a verdict for each.
    if let Some(compiled) = agent.decide.policy().map(|p| p.load_full()) {
        agent
            .install_policy(&compiled)
            .map_err(|source| AgentError::KernelTables {
                path: agent.config.policy.clone().unwrap_or_default(),
                source,
            })?;
    }
    // Adopted tables enforcing a policy this agent does not have.
    if agent.decide.policy().is_none() && agent.kernel_tables.active() != 0 {
        agent
            .kernel_tables
            .disable()
            .map_err(|source| AgentError::KernelTables {
                path: PathBuf::from("(the adopted programs' policy)"),
                source,
            })?;
        agent.agent_slots.note_policy(0, "");
    }
    agent.policy_stamp = agent.decide.judge().and_then(|j| policy::stamp(j.path()));
    // The kernel has treated every process as a holder since attach; now
    // that /proc says who holds watched descriptors, let the prefilter work.
    holders::seed(&mut agent.kernel.holders, &agent.watch);
    tracing::info!(
        watched_files = agent.watch.len(),
        processes = known,
        hooks = agent.health.hooks_attached,
        config = %config_origin,
        "capture is live"
    );
    if adopted {
        agent.health.agent.handover_adopted.inc();
    }
    agent.emit_sensor(Action::SensorStart);
    agent.emit_policy_loaded();
    if let Some(replaced) = replaced {
        agent.finish_replacing(&mut sensor, replaced)?;
    }
    sensor.detach_on_drop();
    // Ready means sensor_start is out: the outputs' threads have written
    // it (a destination that is down has spooled it; one that is slow may
    // take up to this long).
    agent.out.settle(std::time::Duration::from_secs(2));
    notify::notify(&format!(
        "READY=1\nSTATUS=capture is live: {} weight files watched",
        agent.watch.len()
    ));
    agent.integrity = baseline.map(integrity::start).transpose()?;
    agent.out.flush();
    Ok(Started {
        sensor,
        agent,
        events,
        signals,
    })
}

/// Whether io_uring capture runs; if not, a loud warning with the cause
/// and the fix, and what it means for a policy enforced without BPF LSM
/// (`kill_fallback`): its io_uring kill fallback is one of the programs.
fn io_uring_capture(sensor: &Sensor, kill_fallback: bool) -> IoUringCapture {
    let Err(why) = &sensor.io_uring else {
        return IoUringCapture::On;
    };
    let policy = if kill_fallback {
        "; and with no BPF LSM, io_uring reads of policy files are not stopped by the kill \
         fallback (their opens still are, by fanotify)"
    } else {
        ""
    };
    tracing::warn!(
        reason = %why,
        fix = uring::FIX,
        "IO_URING CAPTURE OFF: io_uring reads, opens, splices and tampering (renames, \
         unlinks, links, truncations) of weight files, and the writes and sends of processes \
         that took weights, go unrecorded{policy}; the rest of \
         capture runs (sensor_start says so in sensor.io_uring)"
    );
    IoUringCapture::Off {
        reason: why.to_string(),
    }
}

/// A random run identity for record ids, so that two runs' (or two
/// hosts') sequence numbers never make the same id.
fn run_id() -> u64 {
    let mut bytes = [0u8; 8];
    // SAFETY: getrandom writes at most `bytes.len()` bytes into `bytes`.
    let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
    match got {
        8 => u64::from_ne_bytes(bytes),
        // Not random, but distinct per run on this host: the start time in
        // nanoseconds mixed with the pid.
        _ => {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            now ^ (u64::from(std::process::id()) << 48)
        }
    }
}

/// Returns freed heap pages to the kernel (glibc keeps them otherwise).
fn release_free_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Roots given by the user, for `RunSettings::roots_required`.
pub fn roots_were_named(config: &Config, flag_roots: &[PathBuf]) -> bool {
    !flag_roots.is_empty() || config.watch.roots != crate::config::WatchConfig::default().roots
}
