//! `weightwarden run`: start the sensor whole (or not at all), turn kernel
//! records into audit records, keep the watch set current, report health,
//! and stop cleanly on SIGINT/SIGTERM.

use std::{
    os::fd::{AsRawFd, RawFd},
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use sensor_common::{
    Coverage, EventHeader, FileKey, ReadAgg, ReadAggKey, exit_flag, flush_reason, header_flag,
};
use serde_json::json;
use tokio::{
    io::{Interest, unix::AsyncFd},
    signal::unix::{SignalKind, signal},
};

use crate::{
    config::{Config, OutputSpec},
    enrich::{
        clock::{BootClock, now_rfc3339},
        coverage::CoverageBook,
        process::{HeaderFields, ProcessTable},
        watch::{WatchSet, WatchSpec, kernel_dev},
    },
    event::{
        AccessRecord, Action, AncestorRecord, ExitRecord, FileRecord, ProcessRecord, Record,
        SCHEMA, Severity, coverage, kernel_dev_text, mmap_flags, mmap_prot, open_flags,
        syscall_result,
    },
    kernel::{
        btf::{KernelOffsets, VMLINUX_BTF},
        decode::{KernelEvent, decode},
        loader::{LoadOptions, Sensor},
        maps::{Holders, KernelCounterTotals, KernelCounters, KernelInodeMap, ReadMaps},
        preflight,
        programs::Tier,
    },
    output::{Fanout, JsonlSink, Sink, SinkError, StdoutSink},
};

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
    Sink(#[from] SinkError),
    #[error("cannot set up {what}: {source}")]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
}

/// How often the agent reads the ring buffer without being woken: the most
/// an exec, fork or exit record waits.
const RING_POLL: Duration = Duration::from_millis(100);

/// What `run` was asked to do, already validated.
pub struct RunSettings {
    pub config: Config,
    /// The user named the watch roots (flag or config file): a missing or
    /// unreadable root is then an error rather than a root to wait for.
    pub roots_required: bool,
    pub config_origin: String,
}

/// The inotify descriptor, borrowed from the watch set for tokio.
struct InotifyFd(RawFd);
impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// Agent-side counters, reported in heartbeats.
#[derive(Debug, Default, Clone, serde::Serialize)]
struct AgentCounters {
    kernel_records: u64,
    decode_errors: u64,
    records_emitted: u64,
    read_summaries_drained: u64,
    aggregate_map_errors: u64,
}

/// The running sensor.
struct Agent {
    config: Config,
    host: String,
    clock: BootClock,
    tier: Tier,
    started: Instant,
    watch: WatchSet,
    watched: KernelInodeMap,
    read_maps: ReadMaps,
    /// Each process's coverage of each file it read, until it exits.
    coverage: CoverageBook,
    holders: Holders,
    /// Files joined the watch set: look for processes already holding them.
    holders_rescan: bool,
    counters: KernelCounters,
    processes: ProcessTable,
    out: Fanout,
    stats: AgentCounters,
    last_kernel_totals: KernelCounterTotals,
    programs_attached: usize,
}

/// Runs the sensor until SIGINT or SIGTERM.
pub async fn run(settings: RunSettings) -> Result<(), AgentError> {
    let RunSettings {
        config,
        roots_required,
        config_origin,
    } = settings;
    preflight::check()?;
    let offsets = KernelOffsets::from_file(Path::new(VMLINUX_BTF))?;
    let mut sensor = Sensor::load(
        &offsets,
        &LoadOptions {
            ring_buffer_bytes: config.kernel.ring_buffer_bytes,
            watched_max: config.watch.max_files,
            read_aggregates_max: config.kernel.read_aggregates_max,
            pending_max: config.kernel.pending_max,
            read_flush_interval_ns: config
                .kernel
                .read_flush_interval_secs
                .saturating_mul(1_000_000_000),
            compat_syscalls: config.kernel.compat_syscalls,
            holder_prefilter: config.kernel.holder_prefilter,
        },
    )?;
    let mut watched = KernelInodeMap::new(
        sensor.take_watched()?,
        sensor.take_ino_filter()?,
        config.watch.max_files,
    );
    let roots = config.expanded_roots(Path::new("/home"), Path::new("/root"));
    let watch = WatchSet::new(
        WatchSpec {
            roots,
            roots_required,
            extensions: config.watch.extensions.clone(),
            gpu_patterns: config.gpu.device_patterns.clone(),
        },
        &mut watched,
    )?;
    // The initial walk's temporaries are freed but glibc keeps the pages;
    // give them back so resident memory reflects what the agent keeps.
    release_free_heap();
    let out = Fanout::new(open_sinks(&config.output.sinks)?);
    let events = sensor.take_events()?;
    let read_maps = sensor.take_read_maps()?;
    let counters = sensor.take_counters()?;
    let holders = sensor.take_holders()?;
    let processes = ProcessTable::new(
        PathBuf::from("/proc"),
        crate::enrich::process::CgroupResolver::new(
            crate::enrich::process::cgroup2_mount()
                .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup")),
        ),
        65_536,
    );
    let host = match &config.agent.hostname {
        Some(h) => h.clone(),
        None => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| String::from("unknown")),
    };

    // From here on a SIGINT/SIGTERM must stop the agent cleanly, even one
    // that arrives while /proc is being scanned.
    let signals = Signals::install()?;
    // Everything that can fail on bad input has succeeded: go live.
    sensor.attach_all()?;
    let mut agent = Agent {
        config,
        host,
        clock: BootClock::sample(),
        tier: Tier::Tracepoint,
        started: Instant::now(),
        watch,
        watched,
        read_maps,
        coverage: CoverageBook::default(),
        holders,
        holders_rescan: false,
        counters,
        processes,
        out,
        stats: AgentCounters::default(),
        last_kernel_totals: KernelCounterTotals::default(),
        programs_attached: sensor.attached,
    };
    // Attach first, then read /proc: a process starting in between is seen
    // by one or the other.
    let known = agent.processes.scan_existing();
    agent.mark_existing_gpu_processes();
    // The kernel has treated every process as a holder since attach; now
    // that /proc says who holds watched descriptors, let the prefilter work.
    agent.seed_holders();
    tracing::info!(
        watched_files = agent.watch.len(),
        processes = known,
        hooks = agent.programs_attached,
        config = %config_origin,
        "capture is live"
    );
    agent.emit_sensor(Action::SensorStart);
    agent.out.flush();

    let result = agent.event_loop(events, signals).await;
    // Detach first so nothing new arrives, then drain what the kernel
    // already queued, then flush aggregates: no record is produced into a
    // ring buffer nobody reads.
    drop(sensor);
    match result {
        Ok(mut ring) => {
            agent.drain_ring(&mut ring);
            agent.shutdown();
            Ok(())
        }
        Err(err) => {
            agent.shutdown();
            Err(err)
        }
    }
}

/// SIGINT and SIGTERM, installed before capture goes live.
struct Signals {
    interrupt: tokio::signal::unix::Signal,
    terminate: tokio::signal::unix::Signal,
}

impl Signals {
    fn install() -> Result<Self, AgentError> {
        let io = |what| move |source| AgentError::Io { what, source };
        Ok(Self {
            interrupt: signal(SignalKind::interrupt()).map_err(io("the SIGINT handler"))?,
            terminate: signal(SignalKind::terminate()).map_err(io("the SIGTERM handler"))?,
        })
    }
}

/// Returns freed heap pages to the kernel (glibc keeps them otherwise).
fn release_free_heap() {
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}

fn open_sinks(specs: &[OutputSpec]) -> Result<Vec<Box<dyn Sink>>, AgentError> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for spec in specs {
        match spec {
            OutputSpec::Stdout => sinks.push(Box::new(StdoutSink::new())),
            OutputSpec::Jsonl(path) => sinks.push(Box::new(JsonlSink::open(path)?)),
        }
    }
    Ok(sinks)
}

impl Agent {
    /// Runs until a signal; returns the ring buffer for the final drain.
    async fn event_loop(
        &mut self,
        events: RingBuf<MapData>,
        mut signals: Signals,
    ) -> Result<RingBuf<MapData>, AgentError> {
        let io = |what| move |source| AgentError::Io { what, source };
        // SAFETY: the ring buffer owns its descriptor and moves into the
        // AsyncFd, so it stays open while registered.
        let mut ring = unsafe { AsyncFd::register_with_interest(events, Interest::READABLE) }
            .map_err(|e| AgentError::Io {
                what: "the ring buffer poller",
                source: e.into(),
            })?;
        // SAFETY: the watch set owns the inotify descriptor and outlives this
        // AsyncFd, which is dropped at the end of this function.
        let inotify = unsafe {
            AsyncFd::register_with_interest(
                InotifyFd(self.watch.inotify_fd().as_raw_fd()),
                Interest::READABLE,
            )
        }
        .map_err(|e| AgentError::Io {
            what: "the inotify poller",
            source: e.into(),
        })?;
        let secs = Duration::from_secs;
        let mut heartbeat = tokio::time::interval(secs(self.config.agent.heartbeat_interval_secs));
        let mut idle_sweep =
            tokio::time::interval(secs(self.config.kernel.read_flush_interval_secs));
        let mut roots_poll = tokio::time::interval(secs(1));
        let mut rescan = tokio::time::interval(secs(self.config.watch.rescan_interval_secs));
        // Process lifecycle records do not wake the agent (see
        // sensor-ebpf/src/emit.rs): poll for them.
        let mut ring_poll = tokio::time::interval(RING_POLL);
        for timer in [
            &mut ring_poll,
            &mut heartbeat,
            &mut idle_sweep,
            &mut roots_poll,
            &mut rescan,
        ] {
            timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            timer.reset(); // the first tick after one period, not now
        }

        loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(io("the ring buffer poller"))?;
                    self.drain_ring(guard.get_inner_mut());
                    guard.clear_ready();
                    self.out.flush();
                }
                _ = ring_poll.tick() => {
                    self.drain_ring(ring.get_mut());
                    self.out.flush();
                }
                guard = inotify.readable() => {
                    let mut guard = guard.map_err(io("the inotify poller"))?;
                    let changes = self.watch.process_inotify(&mut self.watched);
                    self.log_watch_changes(changes);
                    guard.clear_ready();
                }
                _ = roots_poll.tick() => {
                    let changes = self.watch.poll_missing_roots(&mut self.watched);
                    self.log_watch_changes(changes);
                    if std::mem::take(&mut self.holders_rescan) {
                        self.seed_holders();
                    }
                }
                _ = rescan.tick() => {
                    let changes = self.watch.rescan(&mut self.watched);
                    self.log_watch_changes(changes);
                    release_free_heap();
                }
                _ = idle_sweep.tick() => {
                    let idle_ns = self.config.kernel.read_flush_interval_secs.saturating_mul(1_000_000_000);
                    let cutoff = BootClock::boot_now_ns().saturating_sub(idle_ns);
                    self.drain_aggregates(|_, agg| agg.last_ns < cutoff, flush_reason::IDLE);
                    // Processes whose exit record was lost.
                    let gone = |tgid: u32| !Path::new(&format!("/proc/{tgid}")).exists();
                    self.read_maps.forget_processes(gone);
                    self.coverage.retain_processes(|tgid| !gone(tgid));
                    self.processes.sweep(BootClock::boot_now_ns());
                    self.out.flush();
                }
                _ = heartbeat.tick() => {
                    self.clock = BootClock::sample();
                    self.emit_sensor(Action::Heartbeat);
                    self.out.flush();
                }
                _ = signals.interrupt.recv() => { tracing::info!("SIGINT: stopping"); break; }
                _ = signals.terminate.recv() => { tracing::info!("SIGTERM: stopping"); break; }
            }
        }
        drop(inotify);
        Ok(ring.into_inner())
    }

    fn log_watch_changes<E: std::fmt::Display>(
        &mut self,
        changes: Result<Vec<crate::enrich::watch::WatchChange>, E>,
    ) {
        match changes {
            Ok(changes) => {
                for change in changes {
                    if matches!(
                        change,
                        crate::enrich::watch::WatchChange::Added(_)
                            | crate::enrich::watch::WatchChange::Renamed { .. }
                    ) {
                        self.holders_rescan = true;
                    }
                    tracing::debug!(?change, "watch set changed");
                }
            }
            Err(err) => tracing::warn!(error = %err, "watch set update failed"),
        }
    }

    fn drain_ring(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            self.stats.kernel_records += 1;
            match decode(&item) {
                Ok(event) => {
                    drop(item);
                    self.handle(event);
                }
                Err(err) => {
                    self.stats.decode_errors += 1;
                    tracing::warn!(error = %err, "undecodable kernel record dropped");
                }
            }
        }
    }

    fn handle(&mut self, event: KernelEvent) {
        match event {
            KernelEvent::Exec(e) => {
                let h = HeaderFields::from(&e.header);
                let filename = &e.filename[..(e.filename_len as usize).min(e.filename.len())];
                let args = &e.args[..(e.args_len as usize).min(e.args.len())];
                self.processes
                    .on_exec(&h, filename, args, e.args_truncated != 0, e.start_ns);
                let record = self.base_record(Action::Exec, e.header.boot_ns, Some(&e.header));
                self.out.emit(&record);
            }
            KernelEvent::Fork(f) => {
                self.processes.on_fork(
                    &HeaderFields::from(&f.header),
                    f.child_tgid,
                    f.child_start_ns,
                );
            }
            KernelEvent::Exit(x) => {
                let tgid = x.header.tgid;
                // Reads whose descriptors the exit closed are still in the
                // kernel's aggregates: report them before the exit.
                if x.flags & exit_flag::HAD_READS != 0 {
                    self.drain_aggregates(|key, _| key.tgid == tgid, flush_reason::EXIT);
                    self.read_maps.forget_processes(|t| t == tgid);
                }
                self.coverage.forget(tgid);
                let mut record = self.base_record(Action::Exit, x.header.boot_ns, Some(&x.header));
                record.exit = Some(ExitRecord::from_wait_status(x.exit_code));
                self.out.emit(&record);
                self.processes.on_exit(tgid, x.header.boot_ns);
            }
            KernelEvent::GpuOpen(f) => {
                tracing::debug!(pid = f.header.tgid, "process opened a GPU device");
                self.processes.get(&HeaderFields::from(&f.header));
                self.processes.mark_gpu(f.header.tgid);
            }
            KernelEvent::Open(f) => {
                let access = AccessRecord {
                    fd: Some(f.fd),
                    flags: Some(open_flags(f.flags)),
                    flags_raw: Some(f.flags),
                    ..AccessRecord::default()
                };
                self.emit_file(Action::Open, &f.header, f.file, f.file_size, access);
            }
            KernelEvent::Close(f) => {
                let access = AccessRecord {
                    fd: Some(f.fd),
                    ..AccessRecord::default()
                };
                self.emit_file(Action::Close, &f.header, f.file, f.file_size, access);
            }
            KernelEvent::Mmap(f) => {
                let access = AccessRecord {
                    fd: Some(f.fd),
                    prot: Some(mmap_prot(f.flags)),
                    prot_raw: Some(f.flags),
                    map_flags: Some(mmap_flags(f.mmap_flags)),
                    map_flags_raw: Some(f.mmap_flags),
                    offset: Some(f.offset),
                    length: Some(f.len),
                    result: Some(syscall_result(f.ret)),
                    ..AccessRecord::default()
                };
                self.emit_file(Action::Mmap, &f.header, f.file, f.file_size, access);
            }
            KernelEvent::Read(r) => {
                let covered = self.coverage.add(r.header.tgid, r.file, &r.agg.covered);
                let access = self.read_access(&r.agg, &covered, r.reason, Some(r.fd));
                // The summary is about the thread that read, not the one
                // that closed the descriptor.
                let mut h = r.header;
                if r.agg.last_tid != 0 {
                    h.tid = r.agg.last_tid;
                }
                self.emit_file(Action::Read, &h, r.file, r.agg.file_size, access);
            }
        }
    }

    fn read_access(
        &self,
        agg: &ReadAgg,
        covered: &Coverage,
        reason: u32,
        fd: Option<i32>,
    ) -> AccessRecord {
        AccessRecord {
            fd: fd.filter(|&fd| fd >= 0),
            bytes: Some(agg.bytes),
            calls: Some(agg.calls),
            coverage: Some(coverage(&covered.words, agg.file_size)),
            reason: Some(reason_text(reason)),
            first_time: Some(self.clock.format_boot_ns(agg.first_ns)),
            last_time: Some(self.clock.format_boot_ns(agg.last_ns)),
            ..AccessRecord::default()
        }
    }

    fn emit_file(
        &mut self,
        action: Action,
        h: &EventHeader,
        key: FileKey,
        size: u64,
        access: AccessRecord,
    ) {
        let mut access = access;
        if h.flags & header_flag::COMPAT_SYSCALL != 0 {
            access.syscall_abi = Some("ia32");
        }
        let mut record = self.base_record(action, h.boot_ns, Some(h));
        record.file = Some(self.file_record(key, size));
        record.access = Some(access);
        self.out.emit(&record);
    }

    fn file_record(&self, key: FileKey, size: u64) -> FileRecord {
        FileRecord {
            path: self.watch.path_of(&key).map(|p| p.display().to_string()),
            dev: kernel_dev_text(key.dev),
            ino: key.ino,
            size,
        }
    }

    /// A record with its common fields and, given a header, process context.
    fn base_record(&mut self, action: Action, boot_ns: u64, h: Option<&EventHeader>) -> Record {
        self.stats.records_emitted += 1;
        Record {
            schema: SCHEMA,
            time: self.clock.format_boot_ns(boot_ns),
            host: self.host.clone(),
            action,
            severity: Severity::Info,
            tier: self.tier.as_str(),
            process: h.map(|h| self.process_record(&HeaderFields::from(h))),
            file: None,
            access: None,
            exit: None,
            sensor: None,
        }
    }

    fn process_record(&mut self, h: &HeaderFields) -> ProcessRecord {
        let max = self.config.agent.ancestors_max;
        let info = self.processes.get(h).clone();
        let ancestors = self
            .processes
            .ancestors(info.pid, max)
            .into_iter()
            .map(|a| AncestorRecord {
                pid: a.pid,
                comm: a.comm,
                exe: a.exe,
            })
            .collect();
        ProcessRecord {
            pid: info.pid,
            tid: h.tid,
            ppid: info.ppid,
            uid: info.uid,
            gid: info.gid,
            comm: info.comm,
            exe: info.exe,
            args: info.args,
            args_truncated: info.args_truncated,
            cgroup_id: info.cgroup_id,
            container_id: info.container.as_ref().map(|c| c.id.clone()),
            container_runtime: info.container.as_ref().map(|c| c.runtime.as_str()),
            pod_uid: info.container.as_ref().and_then(|c| c.pod_uid.clone()),
            start_time: (info.start_boot_ns != 0)
                .then(|| self.clock.format_boot_ns(info.start_boot_ns)),
            gpu: info.gpu,
            ancestors,
        }
    }

    /// Emits and deletes every kernel read aggregate `select` picks.
    fn drain_aggregates(&mut self, select: impl Fn(&ReadAggKey, &ReadAgg) -> bool, reason: u32) {
        let keys = match self.read_maps.select_aggregates(select) {
            Ok(keys) => keys,
            Err(err) => {
                self.stats.aggregate_map_errors += 1;
                tracing::warn!(error = %err, "cannot read the read-aggregate map");
                return;
            }
        };
        for key in keys {
            let agg = match self.read_maps.take_aggregate(&key) {
                Ok(Some(agg)) => agg,
                // The kernel flushed it (a close) since it was picked.
                Ok(None) => continue,
                Err(err) => {
                    self.stats.aggregate_map_errors += 1;
                    tracing::warn!(error = %err, "cannot drain a read aggregate");
                    continue;
                }
            };
            if agg.calls == 0 {
                continue;
            }
            self.stats.read_summaries_drained += 1;
            let covered = self.coverage.add(key.tgid, key.file, &agg.covered);
            let h = self.synthetic_header(key.tgid, agg.last_tid, agg.last_ns);
            let access = self.read_access(&agg, &covered, reason, None);
            self.emit_file(Action::Read, &h, key.file, agg.file_size, access);
        }
    }

    /// A header for a record the agent makes itself (from the aggregate map),
    /// filled from the process table.
    fn synthetic_header(&mut self, tgid: u32, tid: u32, boot_ns: u64) -> EventHeader {
        let mut h = EventHeader {
            tgid,
            tid,
            boot_ns,
            ..EventHeader::default()
        };
        if let Some(info) = self.processes.lookup(tgid) {
            h.ppid = info.ppid;
            h.uid = info.uid;
            h.gid = info.gid;
            h.cgroup_id = info.cgroup_id;
            let comm = info.comm.as_bytes();
            let n = comm.len().min(h.comm.len() - 1);
            h.comm[..n].copy_from_slice(&comm[..n]);
        }
        h
    }

    /// Marks processes whose `/proc/PID/fd` holds a watched weight file as
    /// holders, then lets the prefilter work. On any failure the prefilter
    /// stays off: costlier, never blind.
    fn seed_holders(&mut self) {
        // Everyone counts as a holder until the bits are written: a process
        // forked after the scan passed its parent is then marked by the
        // kernel's fork hook.
        if let Err(err) = self.holders.set_bypass(true) {
            tracing::warn!(error = %err, "cannot hold the prefilter off to rescan /proc");
        }
        let pids = self.pids_holding(sensor_common::watch_flag::WEIGHT);
        let seeded = self.holders.seed(pids);
        let result = seeded.and_then(|n| self.holders.set_bypass(false).map(|()| n));
        match result {
            Ok(n) => tracing::debug!(holders = n, "holder prefilter seeded from /proc"),
            Err(err) => {
                tracing::warn!(error = %err, "holder prefilter stays off: every read pays the descriptor walk")
            }
        }
    }

    fn mark_existing_gpu_processes(&mut self) {
        for pid in self.pids_holding(sensor_common::watch_flag::GPU_DEVICE) {
            self.processes.mark_gpu(pid);
        }
    }

    /// Processes with a descriptor, in `/proc/PID/fd`, of a watched file
    /// whose watch flags include `flag`.
    fn pids_holding(&self, flag: u32) -> Vec<u32> {
        use std::os::unix::fs::MetadataExt;
        let watch = &self.watch;
        crate::enrich::process::procfs::pids_with_open_file(Path::new("/proc"), |path| {
            std::fs::metadata(path).is_ok_and(|m| {
                let key = FileKey {
                    dev: kernel_dev(m.dev()),
                    ino: m.ino(),
                };
                watch.flags_of(&key) & flag != 0
            })
        })
    }

    fn sensor_status(&mut self) -> serde_json::Value {
        let kernel = match self.counters.totals() {
            Ok(t) => t,
            Err(err) => {
                tracing::warn!(error = %err, "cannot read the kernel's loss counters");
                self.last_kernel_totals
            }
        };
        let lost = kernel.ringbuf_full
            - self
                .last_kernel_totals
                .ringbuf_full
                .min(kernel.ringbuf_full);
        if lost > 0 {
            tracing::warn!(
                lost,
                "the kernel could not queue {lost} records since the last report: the ring \
                 buffer was full (raise kernel.ring_buffer_bytes)"
            );
        }
        let agg_full = kernel
            .read_aggregates_full
            .saturating_sub(self.last_kernel_totals.read_aggregates_full);
        if agg_full > 0 {
            tracing::warn!(
                agg_full,
                "reads went uncounted: the read aggregate map was full (raise kernel.read_aggregates_max)"
            );
        }
        self.last_kernel_totals = kernel;
        json!({
            "version": env!("CARGO_PKG_VERSION"),
            "pid": std::process::id(),
            "uptime_secs": self.started.elapsed().as_secs(),
            "hooks_attached": self.programs_attached,
            "watched_files": self.watch.len(),
            "watch": self.watch.stats(),
            "processes": self.processes.stats(),
            "kernel": kernel,
            "agent": self.stats,
            "sinks": self.out.stats(),
            "status_time": now_rfc3339(),
        })
    }

    fn emit_sensor(&mut self, action: Action) {
        let status = self.sensor_status();
        let mut record = self.base_record(action, BootClock::boot_now_ns(), None);
        record.sensor = Some(status);
        self.out.emit(&record);
    }

    /// Flush what is aggregated, report the final counters.
    fn shutdown(&mut self) {
        self.drain_aggregates(|_, _| true, flush_reason::SHUTDOWN);
        self.emit_sensor(Action::SensorStop);
        self.out.flush();
        let t = self.last_kernel_totals;
        tracing::info!(
            ringbuf_full = t.ringbuf_full,
            read_aggregates_full = t.read_aggregates_full,
            pending_full = t.pending_full,
            records = self.stats.records_emitted,
            "stopped"
        );
    }
}

fn reason_text(reason: u32) -> &'static str {
    match reason {
        flush_reason::CLOSE => "close",
        flush_reason::INTERVAL => "interval",
        flush_reason::EXIT => "exit",
        flush_reason::IDLE => "idle",
        flush_reason::SHUTDOWN => "shutdown",
        _ => "unknown",
    }
}

/// Roots given by the user, for `RunSettings::roots_required`.
pub fn roots_were_named(config: &Config, flag_roots: &[PathBuf]) -> bool {
    !flag_roots.is_empty() || config.watch.roots != crate::config::WatchConfig::default().roots
}

impl AgentError {
    /// True for failures after capture went live (as opposed to bad input
    /// or an unsuitable host, which stop the agent before it starts).
    pub fn is_runtime(&self) -> bool {
        matches!(self, AgentError::Io { .. })
    }
}
