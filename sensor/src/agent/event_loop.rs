//! The event loop: ring buffer records through enrich and decide to the
//! outputs, watch-set changes into the kernel map, periodic drains and
//! heartbeats, and signals.

use std::{
    os::{
        fd::{AsRawFd, RawFd},
        unix::ffi::OsStrExt,
    },
    path::Path,
    time::Duration,
};

use aya::maps::{MapData, RingBuf};
use sensor_common::{
    EnforceEvent, MemAgg, MemKey, MemoryEvent, OpenAgg, ReadAgg, ReadAggKey, enforce, exit_flag,
    flush_reason, kind,
};
use tokio::io::{Interest, unix::AsyncFd};

use super::{Agent, AgentError, holders, signals::Request};
use crate::{
    decide::{
        enforce::{fanotify::Enforced, kernel_tables::operation_of},
        policy::judge::{Enforcement, Judge, Outcome},
    },
    enrich::{
        clock::BootClock,
        watch::{WatchChange, WatchError},
    },
    event::{AccessDetail, Action, Event, IoUringCapture, RecordId},
    kernel::{
        decode::{KernelEvent, decode},
        maps::Aggregates,
    },
};

/// The mechanisms as records name them.
pub(super) const FANOTIFY: &str = "fanotify";
pub(super) const BPF_SEND_SIGNAL: &str = "bpf_send_signal";
pub(super) const BPF_LSM: &str = "bpf_lsm";

/// How often the agent reads the ring buffer without being woken: the most
/// an exec, fork or exit record waits.
const RING_POLL: Duration = Duration::from_millis(100);

/// Records handled per turn of the event loop at most: a ring buffer that a
/// busy host keeps from emptying must not starve the timers (the policy
/// file's poll, the loss check every second, heartbeats). The rest waits
/// for the next turn, which comes at once (`ring_behind`).
const DRAIN_TURN: usize = 1024;

/// The next decision from the enforcement thread; never, without one.
async fn next_enforced(rx: &mut Option<tokio::sync::mpsc::Receiver<Enforced>>) -> Option<Enforced> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// The next client of the metrics endpoint; never, without one.
async fn next_scrape(
    endpoint: Option<&crate::metrics::endpoint::Endpoint>,
) -> std::io::Result<tokio::net::TcpStream> {
    match endpoint {
        Some(endpoint) => endpoint.accept().await,
        None => std::future::pending().await,
    }
}

/// The inotify descriptor, borrowed from the watch set for tokio.
struct InotifyFd(RawFd);
impl AsRawFd for InotifyFd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

impl Agent {
    /// Runs until a stop signal; returns the ring buffer for the final
    /// drain, and the signal's name.
    pub(super) async fn event_loop(
        &mut self,
        events: RingBuf<MapData>,
        mut signals: super::Signals,
    ) -> Result<(RingBuf<MapData>, &'static str), AgentError> {
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
        // Also the pace of the kernel loss check (warned within a second).
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

        // Records were left in the ring at the end of a turn. The kernel
        // wakes the agent only when it has read everything before a new
        // record, and not at all for records submitted without a wakeup
        // (exec, fork, exit): nothing would wake it for these but the next
        // poll tick, so it goes on at once.
        let mut ring_behind = false;
        let metrics = self.metrics.take();
        let stop = loop {
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(io("the ring buffer poller"))?;
                    ring_behind = self.drain_ring_upto(guard.get_inner_mut(), DRAIN_TURN);
                    if !ring_behind {
                        guard.clear_ready();
                    }
                    self.out.flush();
                }
                // After a yield to the runtime, which fires the timers that
                // are due (a future that is always ready would never let
                // it: the loop would starve them); `select!` then polls
                // them in random order beside this.
                () = tokio::task::yield_now(), if ring_behind => {
                    ring_behind = self.drain_ring_upto(ring.get_mut(), DRAIN_TURN);
                    self.out.flush();
                }
                _ = ring_poll.tick() => {
                    ring_behind = self.drain_ring_upto(ring.get_mut(), DRAIN_TURN);
                    self.out.flush();
                }
                guard = inotify.readable() => {
                    let mut guard = guard.map_err(io("the inotify poller"))?;
                    let changes = self.watch.process_inotify(&mut self.kernel.watched);
                    self.log_watch_changes(changes);
                    guard.clear_ready();
                }
                _ = roots_poll.tick() => {
                    self.health.check_losses();
                    let changes = self.watch.poll_missing_roots(&mut self.kernel.watched);
                    self.log_watch_changes(changes);
                    self.save_followed();
                    if std::mem::take(&mut self.holders_rescan) {
                        holders::seed(&mut self.kernel.holders, &self.watch);
                    }
                    if self.new_policy_files.swap(false, std::sync::atomic::Ordering::Relaxed) {
                        self.policy_resolve = true;
                    }
                    if self.policy_file_changed() {
                        self.reload_policy("the policy file changed");
                    } else if self.policy_executables_changed() {
                        self.reload_policy("an executable the policy names changed");
                    } else if std::mem::take(&mut self.policy_resolve) {
                        self.resolve_policy_files();
                    }
                }
                _ = rescan.tick() => {
                    let changes = self.watch.rescan(&mut self.kernel.watched);
                    self.log_watch_changes(changes);
                    super::release_free_heap();
                }
                _ = idle_sweep.tick() => {
                    let idle_ns = self.config.kernel.read_flush_interval_secs.saturating_mul(1_000_000_000);
                    let cutoff = BootClock::boot_now_ns().saturating_sub(idle_ns);
                    self.drain_aggregates(|_, agg| agg.last_ns < cutoff, flush_reason::IDLE);
                    self.drain_opens(|_, agg| agg.seen_ns < cutoff, flush_reason::IDLE);
                    self.drain_memory(|_, agg| agg.last_ns < cutoff, flush_reason::IDLE);
                    // Processes whose exit record was lost.
                    let gone = |tgid: u32| !Path::new(&format!("/proc/{tgid}")).exists();
                    self.kernel.read_maps.forget_processes(gone);
                    self.enrich.forget_processes(gone);
                    let detectors = self.decide.detectors_mut();
                    detectors.forget_gone(gone);
                    detectors.warn_evictions();
                    self.open_entries.retain(|&tgid, _| !gone(tgid));
                    self.memory_readers.retain(|&tgid| !gone(tgid));
                    self.senders_drained.retain(|&tgid| !gone(tgid));
                    self.kernel_tables.forget_gone(gone);
                    self.out.flush();
                }
                _ = heartbeat.tick() => {
                    self.enrich.resample_clock();
                    self.emit_sensor(Action::Heartbeat);
                    self.out.flush();
                }
                client = next_scrape(metrics.as_ref()) => match client {
                    Ok(stream) => {
                        let text = self.metrics_text();
                        tokio::spawn(crate::metrics::endpoint::answer(stream, text));
                    }
                    Err(err) => tracing::debug!(error = %err, "metrics connection not accepted"),
                },
                report = super::integrity::next_report(&mut self.integrity) => {
                    self.record_integrity(report);
                }
                decision = next_enforced(&mut self.enforced) => match decision {
                    Some(decision) => {
                        self.record_enforced(decision);
                        self.out.flush();
                    }
                    None => {
                        // The thread stopped (it logged why, or panicked).
                        // Closing the group makes the kernel let pending
                        // and later opens through, rather than hold them
                        // for an answer that will never come.
                        tracing::error!("the fanotify enforcement thread stopped: the policy is no longer enforced (opens are let through)");
                        self.enforced = None;
                        self.enforcer = None;
                        if let Some(judge) = self.decide.judge_mut() {
                            judge.set_opens_enforced_by(None);
                        }
                    }
                },
                request = signals.next() => match request {
                    Request::Stop(name) => {
                        tracing::info!("{name}: stopping");
                        break name;
                    }
                    Request::Reload(name) => {
                        // After an external log rotation (logrotate's
                        // `postrotate`): new files at the outputs' paths.
                        self.out.reopen();
                        tracing::info!("{name}: outputs reopened");
                        self.reload_policy(name);
                    }
                    Request::Ignore(name) => tracing::info!(
                        "{name} received and ignored: this version has no configuration reload \
                         (stop with SIGTERM)"
                    ),
                },
            }
        };
        drop(inotify);
        Ok((ring.into_inner(), stop))
    }

    fn log_watch_changes(&mut self, changes: Result<Vec<WatchChange>, WatchError>) {
        match changes {
            Ok(changes) => {
                for change in changes {
                    if matches!(change, WatchChange::Added(_) | WatchChange::Renamed { .. }) {
                        self.holders_rescan = true;
                        self.policy_resolve = true;
                    }
                    tracing::debug!(?change, "watch set changed");
                }
            }
            Err(err) => tracing::warn!(error = %crate::Chain(&err), "watch set update failed"),
        }
    }

    /// Handles every queued record (at shutdown, after detaching).
    pub(super) fn drain_ring(&mut self, ring: &mut RingBuf<MapData>) {
        self.drain_ring_upto(ring, usize::MAX);
    }

    /// Handles queued records for at most `limit` (programs still attached
    /// keep adding some: a handover stop).
    pub(super) fn drain_ring_for(&mut self, ring: &mut RingBuf<MapData>, limit: Duration) {
        let deadline = std::time::Instant::now() + limit;
        while self.drain_ring_upto(ring, DRAIN_TURN) && std::time::Instant::now() < deadline {}
    }

    /// Handles queued records, at most `max`; true when it stopped at
    /// `max` (more may be queued).
    fn drain_ring_upto(&mut self, ring: &mut RingBuf<MapData>, max: usize) -> bool {
        let mut backlog = 0u64;
        for _ in 0..max {
            let Some(item) = ring.next() else {
                self.note_backlog(backlog);
                return false;
            };
            // A record takes its length and an 8-byte header, 8-aligned.
            backlog += (item.len() as u64 + 8).next_multiple_of(8);
            self.health.agent.kernel_records.inc();
            match decode(&item) {
                Ok(event) => {
                    drop(item);
                    self.handle(event);
                }
                Err(err) => {
                    self.health.agent.decode_errors.inc();
                    tracing::warn!(error = %crate::Chain(&err), "undecodable kernel record dropped");
                }
            }
        }
        self.note_backlog(backlog);
        true
    }

    fn note_backlog(&self, bytes: u64) {
        let peak = &self.health.agent.ring_backlog_peak_bytes;
        if bytes > peak.get() {
            peak.set(bytes);
        }
    }

    /// One kernel record through enrich and decide to the outputs.
    fn handle(&mut self, event: KernelEvent) {
        let event = match event {
            KernelEvent::Exec(e) => {
                let event = self.enrich.exec(&e);
                self.rejudge(e.header.tgid);
                event
            }
            // The kernel copies the parent's verdicts to the child; its
            // exec (if any) is judged when it comes.
            KernelEvent::Fork(f) => return self.enrich.fork(&f),
            KernelEvent::Exit(x) => {
                let tgid = x.header.tgid;
                // Reads whose descriptors the exit closed are still in the
                // kernel's aggregates: report them before the exit.
                self.drain_exited_opens(tgid);
                if self.memory_readers.remove(&tgid) {
                    self.drain_memory(|key, _| key.tgid == tgid, flush_reason::EXIT);
                }
                self.senders_drained.remove(&tgid);
                if x.flags & exit_flag::HAD_READS != 0 {
                    self.drain_aggregates(|key, _| key.tgid == tgid, flush_reason::EXIT);
                    self.kernel.read_maps.forget_processes(|t| t == tgid);
                }
                let event = self.enrich.exit(&x);
                self.kernel_tables.forget(tgid);
                self.creations.forget_process(tgid);
                // A GPU process's pid must not stay GPU for whoever reuses it.
                if self.gpu_pids.load().contains(&tgid) {
                    self.publish_gpu_pids();
                }
                event
            }
            KernelEvent::GpuOpen(f) => {
                tracing::debug!(pid = f.header.tgid, "process opened a GPU device");
                self.enrich.gpu_open(&f.header);
                self.rejudge(f.header.tgid);
                return self.publish_gpu_pids();
            }
            KernelEvent::Enforce(e) => return self.record_kernel_stop(&e),
            KernelEvent::Copy(c) => self.enrich.copy(&c, &self.watch),
            KernelEvent::Send(e) => self.enrich.send(&e, &self.watch),
            KernelEvent::Memory(m) => {
                // Only the exits of processes that made one look for
                // memory-read aggregates.
                self.memory_readers.insert(m.header.tgid);
                match self.enrich.memory(&m, &self.watch) {
                    Some(event) => event,
                    None => return,
                }
            }
            KernelEvent::Change(c) => match self.change(&c) {
                Some(event) => event,
                None => return,
            },
            KernelEvent::Open(f) => {
                self.open_entries
                    .entry(f.header.tgid)
                    .or_default()
                    .push(f.file);
                self.enrich.file_event(
                    Action::Open,
                    &f.header,
                    f.file,
                    f.file_size,
                    AccessDetail::Open {
                        fd: f.fd,
                        flags: f.flags,
                    },
                    &self.watch,
                )
            }
            KernelEvent::Close(f) => self.enrich.file_event(
                Action::Close,
                &f.header,
                f.file,
                f.file_size,
                AccessDetail::Close { fd: f.fd },
                &self.watch,
            ),
            KernelEvent::Mmap(f) => self.enrich.file_event(
                Action::Mmap,
                &f.header,
                f.file,
                f.file_size,
                AccessDetail::Mmap {
                    fd: f.fd,
                    prot: f.flags,
                    flags: f.mmap_flags,
                    offset: f.offset,
                    length: f.len,
                    result: f.ret,
                },
                &self.watch,
            ),
            KernelEvent::OpenSummary(o) => {
                let mut h = o.header;
                if o.agg.last_tid != 0 {
                    h.tid = o.agg.last_tid;
                }
                self.enrich
                    .open_summary(&h, o.file, &o.agg, o.reason, Some(o.fd), &self.watch)
            }
            KernelEvent::Read(r) => {
                // The summary is about the thread that read, not the one
                // that closed the descriptor.
                let mut h = r.header;
                if r.agg.last_tid != 0 {
                    h.tid = r.agg.last_tid;
                }
                self.enrich
                    .read_summary(&h, r.file, &r.agg, r.reason, Some(r.fd), &self.watch)
            }
        };
        self.emit(event);
    }

    /// A tampering record. A path operation, or a create, is resolved
    /// after every queued inotify event is applied: its own was queued
    /// before the kernel sent the record. A change a process makes to a
    /// file it created is folded into its `create` (`creations.rs`).
    fn change(&mut self, c: &sensor_common::ChangeEvent) -> Option<Event> {
        let event = self.resolve_change(c)?;
        if !self.creations.keep(&event) {
            self.health.agent.creator_changes_folded.inc();
            return None;
        }
        Some(event)
    }

    fn resolve_change(&mut self, c: &sensor_common::ChangeEvent) -> Option<Event> {
        use sensor_common::change_flag;
        if c.flags & change_flag::FILE != 0 {
            if c.flags & change_flag::CREATED != 0 {
                let changes = self.watch.process_inotify(&mut self.kernel.watched);
                self.log_watch_changes(changes);
            }
            return self.enrich.fd_change(c, &self.watch);
        }
        self.health.agent.path_changes.inc();
        let changes = self.watch.process_inotify(&mut self.kernel.watched);
        self.log_watch_changes(changes);
        let (event, outcome) = self.enrich.path_change(c, &mut self.watch);
        if outcome == crate::enrich::change::PathOutcome::Unresolved {
            self.health.agent.path_changes_unresolved.inc();
            tracing::debug!(
                pid = c.header.tgid,
                "relative path of a path operation not resolved"
            );
        }
        if let Some(event) = &event {
            self.learn_new_name(event);
        }
        event
    }

    /// A watched file renamed or linked under a name the kernel's path
    /// prefilter may not know (outside the roots, another kind of name):
    /// the prefilter learns it, so that the file's next rename or unlink
    /// by that name is seen.
    fn learn_new_name(&mut self, event: &Event) {
        if !matches!(event.action, Action::Rename | Action::Link) {
            return;
        }
        let Some(AccessDetail::Change(change)) = event.access.as_ref().map(|a| &a.detail) else {
            return;
        };
        let Some(new) = &change.new_path else {
            return;
        };
        let new = Path::new(std::ffi::OsStr::from_bytes(new.as_bytes()));
        if let Some(name) = new.file_name() {
            self.watch.learn_name(name, &mut self.kernel.watched);
        }
    }

    /// Hands an event, and whatever the policy and the detections make of
    /// it, to the outputs.
    fn emit(&mut self, mut event: Event) {
        self.report_reads_before_send(&event);
        self.stamp(&mut event);
        let findings = self.decide.observe(&event);
        // Shared with the encoding stages (output/offload.rs), not copied.
        let event = std::sync::Arc::new(event);
        self.write(&event);
        self.follow_lineage(&event);
        for finding in findings {
            self.follow_lineage(&finding);
            self.publish(finding);
        }
        self.recheck_written();
        for pid in self.decide.detectors_mut().take_unfollowed() {
            if let Err(err) = self.kernel.holders.stop_following_sends(pid) {
                self.health.agent.sends_off_errors.inc();
                tracing::debug!(pid, error = %crate::Chain(&err), "cannot stop following a trusted process's sends");
            }
        }
    }

    /// Gives a record its id: this run's next sequence number.
    fn stamp(&mut self, event: &mut Event) {
        self.seq += 1;
        event.id = Some(RecordId {
            run: self.run_id,
            seq: self.seq,
        });
    }

    fn write(&mut self, event: &std::sync::Arc<Event>) {
        self.health.agent.records_emitted.inc();
        self.health.count(event);
        self.out.emit(event);
    }

    /// Stamps and writes a record no detection looks at.
    pub(super) fn publish(&mut self, mut event: Event) {
        self.stamp(&mut event);
        self.write(&std::sync::Arc::new(event));
    }

    /// Emits and deletes every kernel read aggregate `select` picks.
    pub(super) fn drain_aggregates(
        &mut self,
        select: impl Fn(&ReadAggKey, &ReadAgg) -> bool,
        reason: u32,
    ) {
        for (key, agg) in self.take_selected(Aggregates::Reads, select) {
            if agg.calls == 0 {
                continue;
            }
            self.health.agent.read_summaries_drained.inc();
            let h = self
                .enrich
                .drained_header(key.tgid, agg.last_tid, agg.last_ns);
            let event = self
                .enrich
                .read_summary(&h, key.file, &agg, reason, None, &self.watch);
            self.emit(event);
        }
    }

    /// Emits (when it counted anything) and deletes every open aggregate
    /// `select` picks: the process's next open of that file is a record
    /// again.
    fn drain_opens(&mut self, select: impl Fn(&ReadAggKey, &OpenAgg) -> bool, reason: u32) {
        for (key, agg) in self.take_selected(Aggregates::Opens, select) {
            self.emit_open_summary(key, &agg, reason);
        }
    }

    /// The open summary of `agg`, when it counted anything.
    fn emit_open_summary(&mut self, key: ReadAggKey, agg: &OpenAgg, reason: u32) {
        if agg.opens == 0 && agg.closes == 0 {
            return;
        }
        self.health.agent.read_summaries_drained.inc();
        let h = self
            .enrich
            .drained_header(key.tgid, agg.last_tid, agg.last_ns);
        let event = self
            .enrich
            .open_summary(&h, key.file, agg, reason, None, &self.watch);
        self.emit(event);
    }

    /// Takes an exited process's open aggregates by key (no map scan: an
    /// exit on a busy host must stay cheap), emitting those that counted
    /// anything.
    fn drain_exited_opens(&mut self, tgid: u32) {
        let Some(mut files) = self.open_entries.remove(&tgid) else {
            return;
        };
        files.sort_unstable();
        files.dedup();
        for file in files {
            let key = ReadAggKey {
                tgid,
                _pad: 0,
                file,
            };
            match self
                .kernel
                .read_maps
                .take::<ReadAggKey, OpenAgg>(Aggregates::Opens, &key)
            {
                Ok(Some(agg)) => self.emit_open_summary(key, &agg, flush_reason::EXIT),
                Ok(None) => {}
                Err(err) => {
                    self.health.agent.aggregate_map_errors.inc();
                    tracing::warn!(error = %crate::Chain(&err), "cannot drain an open aggregate");
                }
            }
        }
    }

    /// Emits and deletes every memory-read aggregate `select` picks (kept
    /// when its target holds weights, like the kernel's own records).
    fn drain_memory(&mut self, select: impl Fn(&MemKey, &MemAgg) -> bool, reason: u32) {
        for (key, agg) in self.take_selected(Aggregates::Memory, select) {
            if agg.calls == 0 {
                continue;
            }
            self.health.agent.read_summaries_drained.inc();
            let header = self
                .enrich
                .drained_header(key.tgid, agg.last_tid, agg.last_ns);
            let record = MemoryEvent {
                header: sensor_common::EventHeader {
                    kind: kind::MEMORY,
                    ..header
                },
                target: key.target,
                method: key.method,
                bytes: agg.bytes,
                calls: agg.calls,
                first_ns: agg.first_ns,
                reason,
                _pad: 0,
            };
            if let Some(event) = self.enrich.memory(&record, &self.watch) {
                self.emit(event);
            }
        }
    }

    /// Removes and returns the entries of `which` that `select` picks.
    fn take_selected<K, V>(
        &mut self,
        which: Aggregates,
        select: impl Fn(&K, &V) -> bool,
    ) -> Vec<(K, V)>
    where
        K: aya::Pod + Eq + std::hash::Hash,
        V: aya::Pod + Default,
    {
        let maps = &mut self.kernel.read_maps;
        let keys = match maps.select::<K, V>(which, select) {
            Ok(keys) => keys,
            Err(err) => {
                self.health.agent.aggregate_map_errors.inc();
                tracing::warn!(error = %crate::Chain(&err), "cannot read the {which:?} aggregate map");
                return Vec::new();
            }
        };
        let mut taken = Vec::with_capacity(keys.len());
        for key in keys {
            match maps.take::<K, V>(which, &key) {
                Ok(Some(value)) => taken.push((key, value)),
                // The kernel flushed it since it was picked.
                Ok(None) => {}
                Err(err) => {
                    self.health.agent.aggregate_map_errors.inc();
                    tracing::warn!(error = %crate::Chain(&err), "cannot drain a {which:?} aggregate");
                }
            }
        }
        taken
    }

    /// Records a decision the enforcement thread carried out.
    fn record_enforced(&mut self, decision: Enforced) {
        let event = self.enrich.refused(&decision, &self.watch);
        let how = Enforcement {
            operation: decision.operation,
            mechanism: FANOTIFY,
            outcome: if decision.killed {
                Outcome::Killed
            } else {
                Outcome::Denied
            },
            unjudged: false,
        };
        if let Some(event) = self
            .decide
            .enforced(event, &decision.policy, decision.verdict, how)
        {
            self.publish(event);
        }
    }

    /// Records an access the kernel stopped from its policy tables.
    fn record_kernel_stop(&mut self, e: &EnforceEvent) {
        let Some(policy) = self.kernel_tables.policy_of(e.generation).cloned() else {
            tracing::warn!(
                generation = e.generation,
                pid = e.header.tgid,
                "the kernel stopped an access under a policy generation the agent no longer knows"
            );
            return;
        };
        let operation = operation_of(e.op);
        let denied = e.flags & enforce::flag::DENIED != 0;
        let mut event = self
            .enrich
            .refused_in_kernel(&e.header, e.file, e.file_size, &self.watch);
        let set = e.sets.trailing_zeros() as usize;
        let unjudged = e.flags & enforce::flag::UNJUDGED != 0;
        let verdict =
            Judge::kernel_verdict(&policy, set, operation, event.process.as_ref(), unjudged);
        event.access = None;
        let how = Enforcement {
            operation,
            mechanism: if denied { BPF_LSM } else { BPF_SEND_SIGNAL },
            outcome: if e.flags & enforce::flag::KILLED != 0 {
                Outcome::Killed
            } else if denied {
                Outcome::Denied
            } else if e.flags & enforce::flag::KILL_FAILED != 0 {
                Outcome::Failed
            } else {
                Outcome::Killed
            },
            unjudged,
        };
        if let Some(event) = self.decide.enforced(event, &policy, verdict, how) {
            self.publish(event);
        }
    }

    /// The `policy_loaded` record, once, after `sensor_start`.
    pub(super) fn emit_policy_loaded(&mut self) {
        if let Some(info) = self.policy_loaded.take() {
            let mut event = self
                .enrich
                .sensor_event(Action::PolicyLoaded, Default::default());
            event.sensor = None;
            event.policy = Some(info);
            self.publish(event);
        }
    }

    pub(super) fn emit_sensor(&mut self, action: Action) {
        // The outputs' counters then account for every record before this
        // one: at the stop they may take a while (each output's thread
        // writes or spools what it holds), on a heartbeat only briefly, so
        // that a slow destination never stalls capture.
        if action == Action::SensorStop {
            self.out.settle(crate::output::deliver::STOP_GRACE);
        } else {
            self.out.settle_briefly();
        }
        let mut status = self.gather_status();
        // Written on start, heartbeats and stop alike: what stops what.
        status.enforcement = self.decide.judge().map(|j| {
            let mode = j.shared_policy().load().mode;
            super::policy::mechanisms(mode, self.enforcer.is_some(), self.kernel_tables.lsm())
        });
        let unconfirmed = self.watch.unconfirmed();
        if action == Action::SensorStart || !unconfirmed.is_empty() {
            status.unconfirmed = Some(unconfirmed);
        }
        // A blind spot is repeated until the agent stops; "on" once.
        if action == Action::SensorStart || self.io_uring != IoUringCapture::On {
            status.io_uring = Some(self.io_uring.clone());
        }
        let event = self.enrich.sensor_event(action, status);
        self.publish(event);
    }

    /// The metrics as the endpoint serves them: every stage's figures as of
    /// now, records by action, each output's counts.
    pub(super) fn metrics_text(&mut self) -> String {
        let status = self.gather_status();
        self.health.publish_families(&status.outputs);
        self.health.encode_text()
    }

    /// Every stage's figures gathered into the registry, as a status.
    fn gather_status(&mut self) -> crate::event::SensorStatus {
        // Records still in a batch are handed over, so the outputs'
        // counters count them (as queued, at least).
        self.out.flush();
        let dropped = self
            .enforced_dropped
            .load(std::sync::atomic::Ordering::Relaxed);
        self.health.total(
            "agent",
            "enforcement_records_dropped",
            "enforced decisions whose records were lost",
            dropped,
        );
        let watch = self.watch.stats();
        let processes = self.enrich.processes.stats();
        let mut stages: Vec<(&'static str, &dyn crate::metrics::Collect)> = vec![
            ("watch", &watch),
            ("processes", &processes),
            ("detect", self.decide.detectors()),
        ];
        if let Some(store) = self.out.store() {
            stages.push(("store", store));
        }
        let mut status = self
            .health
            .status(self.watch.len(), &stages, self.out.counters());
        status.store_head = self.out.store().and_then(|s| s.head()).map(|h| h.text());
        status
    }

    /// Reports and removes every kernel aggregate (a stop's flush).
    pub(super) fn drain_all_aggregates(&mut self) {
        self.drain_opens(|_, _| true, flush_reason::SHUTDOWN);
        self.drain_memory(|_, _| true, flush_reason::SHUTDOWN);
        self.drain_aggregates(|_, _| true, flush_reason::SHUTDOWN);
    }

    /// Flush what is aggregated, report the final counters.
    pub(super) fn shutdown(&mut self) {
        super::notify::notify("STOPPING=1");
        self.drain_all_aggregates();
        self.save_followed();
        self.emit_sensor(Action::SensorStop);
        self.out.flush();
        self.out.finish();
        let t = self.health.last_kernel();
        tracing::info!(
            ringbuf_full = t.ringbuf_full,
            read_aggregates_full = t.read_aggregates_full,
            pending_full = t.pending_full,
            records = self.health.agent.records_emitted.get(),
            "stopped"
        );
    }
}
