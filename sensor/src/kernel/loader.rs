//! Loading the embedded kernel programs with this kernel's offsets and the
//! configured map sizes, attaching them, and handing out their maps.

use std::path::{Path, PathBuf};

use aya::{
    Btf, BtfError, Ebpf, EbpfLoader,
    maps::{Array, MapData, MapError, RingBuf},
    programs::{
        BtfTracePoint, FEntry, KProbe, Lsm, Program, ProgramError, RawTracePoint, TracePoint,
        links::{FdLink, PinnedLink},
    },
};
use sensor_common::{agent_slot, map_name};

use crate::kernel::{
    btf::KernelOffsets,
    maps::{
        Holders, InoFilter, KernelCounters, KernelIdentityProbe, PolicyMaps, ReadMaps, VerdictMaps,
        WatchMaps,
    },
    object as ebpf,
    pins::{self, Fingerprint, PinDir, PinError, Previous},
    preflight,
    programs::{Attach, ENFORCEMENT_LSM, ProgramSpec, TIERS, TierSpec},
    uring,
};

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(
        "this weightwarden binary carries no eBPF object (it was built with AYA_BUILD_SKIP=1); \
         rebuild it with `cargo xtask build`"
    )]
    NoObject,
    #[error("cannot load the eBPF object")]
    Object(#[source] Box<aya::EbpfError>),
    #[error(
        "cannot read the kernel's BTF for the BTF tracepoints (the kernel needs \
         CONFIG_DEBUG_INFO_BTF=y and /sys/kernel/btf/vmlinux)"
    )]
    KernelBtf(#[source] Box<BtfError>),
    #[error("the eBPF object has no program {0} (the object and the agent are out of step)")]
    NoProgram(&'static str),
    #[error("this build lists no hook tier (kernel/programs.rs)")]
    NoTier,
    #[error(
        "BPF LSM is not among the kernel's active LSMs ({active}): its programs would load and \
         never run (boot with `bpf` in the lsm= list)"
    )]
    LsmInactive { active: String },
    #[error("no empty program for {0} in the benchmark floor (add one to kernel/programs.rs)")]
    NoFloorProgram(String),
    #[error("the eBPF object has no map {0} (the object and the agent are out of step)")]
    NoMap(&'static str),
    #[error("program {program} has the wrong type")]
    ProgramType {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
    },
    #[error("the kernel refused program {program}{hint}")]
    ProgramLoad {
        program: &'static str,
        #[source]
        source: Box<ProgramError>,
        hint: &'static str,
    },
    #[error("cannot attach {program} to {target}{hint}")]
    Attach {
        program: &'static str,
        target: String,
        #[source]
        source: Box<ProgramError>,
        hint: &'static str,
    },
    #[error(
        "the kernel attached {program} to {target} without a BPF link (Linux 5.15 or newer \
         makes one), which the agent cannot hold or pin"
    )]
    NotALink {
        program: &'static str,
        target: String,
    },
    #[error(transparent)]
    Pins(#[from] PinError),
    #[error("cannot use map {map}")]
    Map {
        map: &'static str,
        #[source]
        source: Box<MapError>,
    },
}

/// Map sizes and settings chosen by the configuration.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub ring_buffer_bytes: u32,
    pub watched_max: u32,
    /// `WATCHED_DIRS`; `PATH_NAMES` holds [`LoadOptions::names_max`].
    pub dirs_max: u32,
    /// `PATH_NAMES`: the directories' names, the followed files' and a
    /// margin for extensions, root ancestors and learned names.
    pub names_max: u32,
    pub read_aggregates_max: u32,
    pub pending_max: u32,
    pub read_flush_interval_ns: u64,
    /// Capture 32-bit (ia32) syscalls.
    pub compat_syscalls: bool,
    /// Skip the descriptor walk for processes that cannot hold a watched
    /// descriptor (see `sensor-ebpf/src/holders.rs`).
    pub holder_prefilter: bool,
}

impl LoadOptions {
    /// Small maps, for probing what the kernel takes (`doctor`) and for
    /// the benchmark floor.
    pub fn probe() -> Self {
        Self {
            ring_buffer_bytes: 4096,
            watched_max: 1024,
            dirs_max: 1024,
            names_max: 1024,
            read_aggregates_max: 1024,
            pending_max: 1024,
            read_flush_interval_ns: 0,
            compat_syscalls: true,
            holder_prefilter: true,
        }
    }

    /// The sizes and settings a configuration asks for.
    pub fn from_config(config: &crate::config::Config) -> Self {
        Self {
            ring_buffer_bytes: config.kernel.ring_buffer_bytes,
            watched_max: config.watch.max_files,
            dirs_max: config.watch.max_dirs,
            names_max: config
                .watch
                .max_dirs
                .saturating_add(config.watch.max_retained)
                .saturating_add(NAMES_MARGIN),
            read_aggregates_max: config.kernel.read_aggregates_max,
            pending_max: config.kernel.pending_max,
            read_flush_interval_ns: config
                .kernel
                .read_flush_interval_secs
                .saturating_mul(1_000_000_000),
            compat_syscalls: config.kernel.compat_syscalls,
            holder_prefilter: config.kernel.holder_prefilter,
        }
    }
}

/// Room in `PATH_NAMES` beyond the directories and followed files: the
/// extensions, the roots' ancestors, names learned from records.
const NAMES_MARGIN: u32 = 4096;

/// The kernel's limit on pid_max (`PID_MAX_LIMIT` on 64-bit).
const PID_MAX_LIMIT: u32 = 4 * 1024 * 1024;

/// How many tgids the holder arrays cover: the current pid_max (a pid
/// above it, should pid_max be raised later, counts as a holder).
fn holder_capacity() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/pid_max")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(PID_MAX_LIMIT)
        .clamp(64, PID_MAX_LIMIT)
}

/// The loaded programs. Dropping it detaches every program, unless
/// [`Sensor::leave_attached`] said to leave them pinned for the next agent.
pub struct Sensor {
    /// Declared before `ebpf`: links go first.
    links: Vec<Attached>,
    ebpf: Ebpf,
    pub tier: &'static TierSpec,
    pub attached: usize,
    /// Whether the tier's io_uring programs are loaded (and attached with
    /// the rest); if not, why: capture runs without them.
    pub io_uring: Result<(), uring::Unavailable>,
    /// This load's identity (`kernel/pins.rs`).
    fingerprint: Fingerprint,
    /// Where the links and maps are pinned, when they are.
    pins: Option<Pinning>,
    /// The BPF LSM programs are attached (here, or by the adopted load).
    pub lsm: bool,
    /// A pin directory was given but the kernel refused to pin a link.
    pins_refused: Option<PinError>,
}

/// A link the sensor holds, by its pin name.
struct Attached {
    name: String,
    link: Link,
}

/// Its own (detached when dropped), or pinned (detached when unpinned
/// and dropped).
enum Link {
    Held(#[expect(dead_code, reason = "held for its drop, which detaches")] FdLink),
    Pinned(PinnedLink),
    /// Between pinned and held, or lost when an unpin failed (the pin was
    /// removed by someone else: detached).
    Unpinning,
}

impl Attached {
    /// Detaches the link, pinned or not.
    fn release(self) {
        if let Link::Pinned(pinned) = self.link {
            // Already gone (`weightwarden unload`) is as good.
            let _ = pinned.unpin();
        }
    }
}

/// The sensor's pins and where this load's go: beside an earlier load's
/// that it replaces (`maps-next/`, `links-next/`) until those are gone.
struct Pinning {
    dir: PinDir,
    staged: bool,
    /// Set by [`Sensor::leave_attached`]: the drop leaves the pins.
    keep: bool,
}

const TRACEFS_HINT: &str = " (is tracefs mounted? `mount -t tracefs none /sys/kernel/tracing`, \
                            or run `weightwarden doctor`)";
const VERIFIER_HINT: &str = " (run `weightwarden doctor` to see what this kernel supports)";

/// Loads the object into the kernel: maps created at the configured
/// sizes, globals frozen (this kernel's offsets when given), no program
/// loaded yet.
pub fn open_object(offsets: Option<&KernelOffsets>, opts: &LoadOptions) -> Result<Ebpf, LoadError> {
    open_object_with(offsets, opts, &[])
}

/// [`open_object`], with the maps named in `pinned` opened from their pins
/// instead of created.
fn open_object_with(
    offsets: Option<&KernelOffsets>,
    opts: &LoadOptions,
    pinned: &[(String, PathBuf)],
) -> Result<Ebpf, LoadError> {
    if ebpf::OBJECT.is_empty() {
        return Err(LoadError::NoObject);
    }
    let mut loader = EbpfLoader::new();
    for (name, path) in pinned {
        loader.map_pin_path(name.as_str(), path.as_path());
    }
    for (name, value) in offsets.iter().flat_map(|o| &o.globals) {
        loader.override_global(name, value, true);
    }
    loader
        .override_global(
            sensor_common::READ_FLUSH_INTERVAL_GLOBAL,
            &opts.read_flush_interval_ns,
            true,
        )
        .map_max_entries(map_name::EVENTS, opts.ring_buffer_bytes)
        .map_max_entries(map_name::WATCHED, opts.watched_max)
        .map_max_entries(map_name::WATCHED_DIRS, opts.dirs_max)
        .map_max_entries(map_name::PATH_NAMES, opts.names_max)
        // Every policy file is also in the watch map: the same bound.
        .map_max_entries(map_name::POLICY_FILES, opts.watched_max)
        .map_max_entries(map_name::READ_AGG, opts.read_aggregates_max)
        .map_max_entries(map_name::READERS, opts.read_aggregates_max)
        .map_max_entries(map_name::OPEN_AGG, opts.read_aggregates_max)
        .map_max_entries(map_name::PENDING, opts.pending_max);
    let compat_flag = u64::from(opts.compat_syscalls);
    loader.override_global(sensor_common::COMPAT_ENABLED_GLOBAL, &compat_flag, true);
    let prefilter_flag = u64::from(opts.holder_prefilter);
    let holder_pids = holder_capacity();
    loader
        .override_global(
            sensor_common::HOLDER_PREFILTER_GLOBAL,
            &prefilter_flag,
            true,
        )
        .map_max_entries(map_name::HOLDERS_KERNEL, holder_pids.div_ceil(8))
        .map_max_entries(map_name::HOLDERS_AGENT, holder_pids.div_ceil(64))
        .map_max_entries(map_name::MEM_READERS, holder_pids.div_ceil(8));
    loader
        .load(ebpf::OBJECT)
        .map_err(|e| LoadError::Object(Box::new(e)))
}

/// The identity of a load of this object with `offsets` and `opts`: what
/// an adopting agent must match (`kernel/pins.rs`).
pub fn load_fingerprint(offsets: &KernelOffsets, opts: &LoadOptions) -> Fingerprint {
    let mut inputs: Vec<(&str, Vec<u8>)> = offsets
        .globals
        .iter()
        .map(|(name, value)| (*name, value.to_le_bytes().to_vec()))
        .collect();
    inputs.push(("options", format!("{opts:?}").into_bytes()));
    inputs.push(("holders", holder_capacity().to_le_bytes().to_vec()));
    let tiers: Vec<&str> = TIERS
        .iter()
        .flat_map(|t| t.programs.iter().chain(t.io_uring).map(|p| p.name))
        .collect();
    inputs.push(("programs", tiers.join(",").into_bytes()));
    pins::fingerprint(object_sha256(), &inputs)
}

/// The embedded object's SHA-256, hashed once: the load's fingerprint and
/// the `AGENT` map's object word both derive from it.
fn object_sha256() -> &'static [u8] {
    static HASH: std::sync::OnceLock<[u8; 32]> = std::sync::OnceLock::new();
    HASH.get_or_init(|| {
        use sha2::Digest;
        sha2::Sha256::digest(ebpf::OBJECT).into()
    })
}

impl Sensor {
    /// Loads the best tier this kernel takes: the first of [`TIERS`] whose
    /// every program passes the verifier (as `doctor` reports it).
    pub fn load_best(offsets: &KernelOffsets, opts: &LoadOptions) -> Result<Self, LoadError> {
        let mut last = None;
        for tier in TIERS {
            match Self::load(offsets, opts, tier) {
                Ok(sensor) => return Ok(sensor),
                Err(err) => {
                    tracing::info!(tier = ?tier.tier, error = %crate::Chain(&err), "hook tier unavailable here; trying the next");
                    last = Some(err);
                }
            }
        }
        Err(last.unwrap_or(LoadError::NoTier))
    }

    /// Loads the object and verifies every program of `tier`, attaching
    /// nothing yet. Its io_uring programs load where this kernel has what
    /// they need; their absence is no error.
    pub fn load(
        offsets: &KernelOffsets,
        opts: &LoadOptions,
        tier: &'static TierSpec,
    ) -> Result<Self, LoadError> {
        let mut ebpf = open_object(Some(offsets), opts)?;
        let btf = kernel_btf()?;
        load_programs(&mut ebpf, tier.programs, &btf)?;
        let io_uring = offsets
            .io_uring
            .clone()
            .and_then(|()| load_all_or_none(&mut ebpf, tier.io_uring, &btf));
        Ok(Self {
            links: Vec::new(),
            ebpf,
            tier,
            attached: 0,
            io_uring,
            fingerprint: load_fingerprint(offsets, opts),
            pins: None,
            lsm: false,
            pins_refused: None,
        })
    }

    /// Takes over what an earlier agent pinned: its maps (the ring buffer
    /// goes on from where it stopped) and its attached links. Nothing is
    /// loaded into the kernel or attached: the earlier programs keep
    /// running. `previous` must carry this load's fingerprint and a link
    /// for every attach point of the tier (see [`Sensor::adoptable`]).
    pub fn adopt(
        offsets: &KernelOffsets,
        opts: &LoadOptions,
        dir: PinDir,
        previous: &Previous,
    ) -> Result<Self, LoadError> {
        let tier = TIERS.first().ok_or(LoadError::NoTier)?;
        let ebpf = open_object_with(Some(offsets), opts, &previous.maps)?;
        let mut links = Vec::with_capacity(previous.links.len());
        for (name, path) in &previous.links {
            let link = PinnedLink::from_pin(path).map_err(|source| PinError::Pin {
                what: format!("adopted link {name}"),
                path: path.clone(),
                source: Box::new(source),
            })?;
            links.push(Attached {
                name: name.clone(),
                link: Link::Pinned(link),
            });
        }
        let has = |spec: &ProgramSpec| {
            previous
                .links
                .iter()
                .any(|(name, _)| *name == pins::link_name(spec.name, 0))
        };
        let io_uring = offsets.io_uring.clone().and_then(|()| {
            match tier.io_uring.iter().find(|spec| !has(spec)) {
                None => Ok(()),
                Some(spec) => Err(uring::Unavailable::Program {
                    program: spec.name,
                    cause: String::from("not attached by the agent whose programs were adopted"),
                }),
            }
        });
        let lsm = ENFORCEMENT_LSM.iter().all(has);
        Ok(Self {
            attached: links.len(),
            links,
            ebpf,
            tier,
            io_uring,
            fingerprint: load_fingerprint(offsets, opts),
            // Left for the next agent should this one fail to start: a
            // bad configuration must not end capture that was running.
            pins: Some(Pinning {
                dir,
                staged: false,
                keep: true,
            }),
            lsm,
            pins_refused: None,
        })
    }

    /// Whether `previous` is a load this agent can adopt: the same
    /// fingerprint, and every program of the tier attached.
    pub fn adoptable(offsets: &KernelOffsets, opts: &LoadOptions, previous: &Previous) -> bool {
        let Some(tier) = TIERS.first() else {
            return false;
        };
        let complete = tier.programs.iter().all(|spec| {
            (0..spec.attach.len()).all(|i| {
                previous
                    .links
                    .iter()
                    .any(|(name, _)| *name == pins::link_name(spec.name, i))
            })
        });
        complete && previous.fingerprint == Some(load_fingerprint(offsets, opts))
    }

    /// Pins this load's maps in `dir` (beside an earlier load's, to be
    /// moved in place by [`Sensor::settle_pins`], when `staged`); its
    /// links follow as they attach. Call before any map is taken.
    pub fn pin(&mut self, dir: PinDir, staged: bool) -> Result<(), LoadError> {
        let maps = dir.path().join(if staged { "maps-next" } else { "maps" });
        std::fs::create_dir_all(&maps).map_err(|source| PinError::Io {
            path: maps.clone(),
            source,
        })?;
        if staged {
            let links = dir.path().join("links-next");
            std::fs::create_dir_all(&links).map_err(|source| PinError::Io {
                path: links,
                source,
            })?;
        }
        for (name, map) in self.ebpf.maps() {
            // Sections (.rodata, .bss) are the load's own, never shared.
            if name.starts_with('.') {
                continue;
            }
            let path = maps.join(name);
            map.pin(&path).map_err(|source| PinError::Pin {
                what: format!("map {name}"),
                path,
                source: Box::new(source),
            })?;
        }
        self.pins = Some(Pinning {
            dir,
            staged,
            keep: false,
        });
        Ok(())
    }

    /// Writes the agent's tgid and this load's fingerprint into `AGENT`.
    pub fn claim(&mut self) -> Result<(), LoadError> {
        let map_err = |source| LoadError::Map {
            map: map_name::AGENT,
            source: Box::new(source),
        };
        let map = self
            .ebpf
            .map_mut(map_name::AGENT)
            .ok_or(LoadError::NoMap(map_name::AGENT))?;
        let mut agent: Array<&mut MapData, u64> = Array::try_from(map).map_err(map_err)?;
        for (i, word) in self.fingerprint.iter().enumerate() {
            agent
                .set(agent_slot::FINGERPRINT + i as u32, *word, 0)
                .map_err(map_err)?;
        }
        agent
            .set(agent_slot::OBJECT, pins::object_digest(object_sha256()), 0)
            .map_err(map_err)?;
        agent
            .set(agent_slot::TGID, u64::from(std::process::id()), 0)
            .map_err(map_err)
    }

    /// The digest of the object this agent carries.
    pub fn object_digest(&self) -> u64 {
        pins::object_digest(object_sha256())
    }

    /// After an earlier load's pins are gone: moves this load's staged pins
    /// in place.
    pub fn settle_pins(&mut self) -> Result<(), LoadError> {
        let Some(pinning) = self.pins.as_mut().filter(|p| p.staged) else {
            return Ok(());
        };
        let root = pinning.dir.path().to_path_buf();
        for (next, dest) in [("maps-next", "maps"), ("links-next", "links")] {
            let (from, to) = (root.join(next), root.join(dest));
            let io = |path: &Path| {
                let path = path.to_path_buf();
                move |source| PinError::Io { path, source }
            };
            std::fs::remove_dir(&to).map_err(io(&to))?;
            std::fs::rename(&from, &to).map_err(io(&from))?;
        }
        pinning.staged = false;
        Ok(())
    }

    /// Why nothing is pinned although a pin directory was given.
    pub fn pins_refused(&self) -> Option<&PinError> {
        self.pins_refused.as_ref()
    }

    /// The pin directory, when the load is pinned.
    pub fn pin_dir(&self) -> Option<&PinDir> {
        self.pins.as_ref().map(|p| &p.dir)
    }

    /// The drop detaches (and unpins) the programs, adopted ones too: for
    /// an agent that went live.
    pub fn detach_on_drop(&mut self) {
        if let Some(pinning) = &mut self.pins {
            pinning.keep = false;
        }
    }

    /// The drop leaves the programs attached and the maps pinned, for the
    /// next agent (`kernel.handover`). False when nothing is pinned.
    pub fn leave_attached(&mut self) -> bool {
        match &mut self.pins {
            Some(pinning) if !pinning.staged => {
                pinning.keep = true;
                true
            }
            _ => false,
        }
    }

    /// Loads and attaches the BPF LSM enforcement programs
    /// ([`ENFORCEMENT_LSM`]) where `bpf` is an active LSM (elsewhere they
    /// may load and attach yet never run); on any failure none stays
    /// attached and the error says why.
    pub fn attach_lsm_enforcement(&mut self) -> Result<(), LoadError> {
        if !preflight::bpf_lsm_active() {
            let active = preflight::active_lsms().join(",");
            return Err(LoadError::LsmInactive {
                active: if active.is_empty() {
                    String::from("unknown: securityfs not mounted")
                } else {
                    active
                },
            });
        }
        let btf = kernel_btf()?;
        let result = ENFORCEMENT_LSM.iter().try_for_each(|spec| {
            load_program(&mut self.ebpf, spec.name, &spec.attach[0], &btf)?;
            self.attach_kept(spec.name, 0, &spec.attach[0])
        });
        match result {
            Ok(()) => {
                self.lsm = true;
                Ok(())
            }
            Err(err) => {
                self.release(ENFORCEMENT_LSM);
                Err(err)
            }
        }
    }

    /// Attaches every program of the tier, and its io_uring programs if
    /// they loaded (an attach refused there turns them off, none left
    /// attached). Capture is live when this returns.
    pub fn attach_all(&mut self) -> Result<(), LoadError> {
        for spec in self.tier.programs {
            for (i, attach) in spec.attach.iter().enumerate() {
                self.attach_kept(spec.name, i, attach)?;
            }
        }
        if self.io_uring.is_ok() {
            let specs = self.tier.io_uring;
            let attached = specs.iter().try_for_each(|spec| {
                spec.attach
                    .iter()
                    .enumerate()
                    .try_for_each(|(i, attach)| self.attach_kept(spec.name, i, attach))
                    .map_err(|err| uring::Unavailable::Program {
                        program: spec.name,
                        cause: crate::Chain(&err).to_string(),
                    })
            });
            if let Err(err) = attached {
                self.release(specs);
                self.io_uring = Err(err);
            }
        }
        Ok(())
    }

    /// Attaches `program` at `attach` (its `index`th attach point) and
    /// keeps the link: pinned when the load is, else by its descriptor.
    /// Should the kernel refuse the pin (an LSM policy can), the program
    /// is attached again and the whole load goes unpinned
    /// ([`Sensor::pins_refused`]).
    fn attach_kept(
        &mut self,
        program: &'static str,
        index: usize,
        attach: &Attach,
    ) -> Result<(), LoadError> {
        let name = pins::link_name(program, index);
        let link = attach_link(&mut self.ebpf, program, attach)?;
        self.attached += 1;
        let Some(pinning) = &self.pins else {
            self.links.push(Attached {
                name,
                link: Link::Held(link),
            });
            return Ok(());
        };
        let dir = if pinning.staged {
            "links-next"
        } else {
            "links"
        };
        let path = pinning.dir.path().join(dir).join(&name);
        match link.pin(&path) {
            Ok(pinned) => self.links.push(Attached {
                name,
                link: Link::Pinned(pinned),
            }),
            Err(source) => {
                // The refused link was consumed, and so detached.
                let link = attach_link(&mut self.ebpf, program, attach)?;
                self.links.push(Attached {
                    name: name.clone(),
                    link: Link::Held(link),
                });
                self.unpin_all(PinError::Pin {
                    what: format!("link {name}"),
                    path,
                    source: Box::new(source),
                });
            }
        }
        Ok(())
    }

    /// Holds every link by its descriptor and unpins the maps: the load
    /// goes unpinned, because of `why`.
    fn unpin_all(&mut self, why: PinError) {
        let Some(pinning) = self.pins.take() else {
            return;
        };
        for attached in &mut self.links {
            if let Link::Pinned(_) = attached.link {
                let Link::Pinned(pinned) = std::mem::replace(&mut attached.link, Link::Unpinning)
                else {
                    continue;
                };
                // Unpinned and held: still attached.
                attached.link = pinned.unpin().map_or(Link::Unpinning, Link::Held);
            }
        }
        let maps = if pinning.staged { "maps-next" } else { "maps" };
        if let Ok(entries) = std::fs::read_dir(pinning.dir.path().join(maps)) {
            for entry in entries.flatten() {
                let _ = std::fs::remove_file(entry.path());
            }
        }
        self.pins_refused = Some(why);
    }

    /// Detaches the links of `specs` (and unloads their programs): a set
    /// that must be attached whole or not at all.
    fn release(&mut self, specs: &[ProgramSpec]) {
        let of_specs = |a: &Attached| {
            specs
                .iter()
                .any(|spec| (0..spec.attach.len()).any(|i| a.name == pins::link_name(spec.name, i)))
        };
        let (gone, kept): (Vec<_>, Vec<_>) = std::mem::take(&mut self.links)
            .into_iter()
            .partition(of_specs);
        self.links = kept;
        self.attached -= gone.len();
        gone.into_iter().for_each(Attached::release);
        unload(&mut self.ebpf, specs);
    }

    fn take<T>(&mut self, name: &'static str) -> Result<T, LoadError>
    where
        T: TryFrom<aya::maps::Map, Error = MapError>,
    {
        let map = self.ebpf.take_map(name).ok_or(LoadError::NoMap(name))?;
        T::try_from(map).map_err(|source| LoadError::Map {
            map: name,
            source: Box::new(source),
        })
    }

    /// The ring buffer every record arrives on.
    pub fn take_events(&mut self) -> Result<RingBuf<MapData>, LoadError> {
        self.take(map_name::EVENTS)
    }

    /// The maps the watch set keeps current: watched inodes (and their
    /// Bloom filter), watched directories, the path prefilter's names.
    pub fn take_watch_maps(&mut self, opts: &LoadOptions) -> Result<WatchMaps, LoadError> {
        Ok(WatchMaps {
            watched: self.take(map_name::WATCHED)?,
            filter: self.take_ino_filter()?,
            watched_max: opts.watched_max,
            dirs: self.take(map_name::WATCHED_DIRS)?,
            dirs_max: opts.dirs_max,
            names: self.take(map_name::PATH_NAMES)?,
            names_max: opts.names_max,
            name_filter: self.take(map_name::PATH_FILTER)?,
        })
    }

    /// The kernel's answers to the agent's identity probes.
    pub fn take_identity_probe(&mut self) -> Result<KernelIdentityProbe, LoadError> {
        Ok(KernelIdentityProbe::new(
            self.take(map_name::IDENTITY_PROBE)?,
        ))
    }

    /// The Bloom filter in front of the watched-inode map.
    fn take_ino_filter(&mut self) -> Result<InoFilter, LoadError> {
        Ok(InoFilter::new(self.take(map_name::WATCHED_INO_FILTER)?))
    }

    /// The read aggregates and readers maps, drained by the agent.
    pub fn take_read_maps(&mut self) -> Result<ReadMaps, LoadError> {
        let mut raw = |name: &'static str| self.ebpf.take_map(name).ok_or(LoadError::NoMap(name));
        Ok(ReadMaps::new(
            raw(map_name::READ_AGG)?,
            raw(map_name::OPEN_AGG)?,
            raw(map_name::MEM_AGG)?,
            raw(map_name::READERS)?,
        ))
    }

    /// The holder prefilter's maps, with the prefilter held off (every
    /// process treated as a holder) until the agent has seeded it.
    pub fn take_holders(&mut self) -> Result<Holders, LoadError> {
        let mut holders = Holders::new(
            self.take(map_name::HOLDERS_AGENT)?,
            self.take(map_name::HOLDERS_BYPASS)?,
            self.take(map_name::SENDS_OFF)?,
        );
        holders.set_bypass(true).map_err(|source| LoadError::Map {
            map: map_name::HOLDERS_BYPASS,
            source: Box::new(source),
        })?;
        Ok(holders)
    }

    /// The policy tables, with in-kernel enforcement off until a policy is
    /// installed.
    pub fn take_policy_maps(&mut self) -> Result<PolicyMaps, LoadError> {
        Ok(PolicyMaps {
            active: self.take(map_name::POLICY_ACTIVE)?,
            slots: self.take(map_name::POLICY_SLOTS)?,
            files: self.take(map_name::POLICY_FILES)?,
            exes: self.take(map_name::EXE_VERDICTS)?,
            verdicts: VerdictMaps::new(
                self.take(map_name::VERDICTS_0)?,
                self.take(map_name::VERDICTS_1)?,
            ),
        })
    }

    /// The per-CPU loss and error counters.
    pub fn take_counters(&mut self) -> Result<KernelCounters, LoadError> {
        Ok(KernelCounters::new(self.take(map_name::COUNTERS)?))
    }

    /// The `AGENT` map, after [`Sensor::claim`].
    pub fn take_agent_slots(&mut self) -> Result<pins::AgentSlots, LoadError> {
        Ok(pins::AgentSlots::new(self.take(map_name::AGENT)?))
    }
}

impl Drop for Sensor {
    /// Detaches: unpins the links (and the maps) unless they are left for
    /// the next agent; the links' descriptors then close with the fields.
    fn drop(&mut self) {
        let Some(pinning) = &self.pins else {
            return;
        };
        if pinning.keep {
            return;
        }
        for attached in std::mem::take(&mut self.links) {
            attached.release();
        }
        let root = pinning.dir.path();
        let sub: &[&str] = if pinning.staged {
            &["maps-next", "links-next"]
        } else {
            &["maps", "links"]
        };
        for dir in sub {
            let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
                continue;
            };
            for entry in entries.flatten() {
                if let Err(err) = std::fs::remove_file(entry.path()) {
                    tracing::warn!(path = %entry.path().display(), error = %err, "cannot unpin");
                }
            }
        }
    }
}

/// Loads every program of `specs`, or (unloading any that loaded) none.
fn load_all_or_none(
    ebpf: &mut Ebpf,
    specs: &'static [ProgramSpec],
    btf: &Btf,
) -> Result<(), uring::Unavailable> {
    let loaded = specs.iter().try_for_each(|spec| {
        load_program(ebpf, spec.name, &spec.attach[0], btf).map_err(|err| {
            uring::Unavailable::Program {
                program: spec.name,
                cause: crate::Chain(&err).to_string(),
            }
        })
    });
    if loaded.is_err() {
        unload(ebpf, specs);
    }
    loaded
}

/// Unloads (and so detaches) the programs of `specs` that are loaded.
fn unload(ebpf: &mut Ebpf, specs: &[ProgramSpec]) {
    macro_rules! unload_as {
        ($ty:ty, $name:expr) => {
            program::<$ty>(ebpf, $name).map(|p| p.unload())
        };
    }
    for spec in specs {
        // A program not loaded (or not there) has nothing to undo.
        let _ = match spec.attach[0] {
            Attach::TracePoint(..) => unload_as!(TracePoint, spec.name),
            Attach::RawTracePoint(_) => unload_as!(RawTracePoint, spec.name),
            Attach::BtfTracePoint(_) => unload_as!(BtfTracePoint, spec.name),
            Attach::FEntry(_) => unload_as!(FEntry, spec.name),
            Attach::Lsm(_) => unload_as!(Lsm, spec.name),
            Attach::KProbe(_) => unload_as!(KProbe, spec.name),
        };
    }
}

/// The running kernel's BTF, which BTF tracepoints are loaded against.
pub fn kernel_btf() -> Result<Btf, LoadError> {
    Btf::from_sys_fs().map_err(|e| LoadError::KernelBtf(Box::new(e)))
}

/// The program `name` as its concrete type.
fn program<'a, T>(ebpf: &'a mut Ebpf, name: &'static str) -> Result<&'a mut T, LoadError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = ProgramError>,
{
    ebpf.program_mut(name)
        .ok_or(LoadError::NoProgram(name))?
        .try_into()
        .map_err(|source| LoadError::ProgramType {
            program: name,
            source: Box::new(source),
        })
}

/// Loads (verifies) program `name` for the kind of hook `attach` is.
pub fn load_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: &Attach,
    btf: &Btf,
) -> Result<(), LoadError> {
    let program = ebpf.program_mut(name).ok_or(LoadError::NoProgram(name))?;
    load_one(program, name, attach, btf)
}

/// Loads (verifies) every program of `specs`, on two threads: the kernel
/// verifies programs concurrently for root, and the two syscall programs
/// each take about as long as all the others together (0.4 s on 6.18),
/// so start-up waits for the longer one instead of their sum.
pub fn load_programs(ebpf: &mut Ebpf, specs: &[ProgramSpec], btf: &Btf) -> Result<(), LoadError> {
    let mut wanted: Vec<(&ProgramSpec, &mut Program)> = Vec::with_capacity(specs.len());
    let mut programs: std::collections::HashMap<&str, &mut Program> = ebpf.programs_mut().collect();
    for spec in specs {
        let program = programs
            .remove(spec.name)
            .ok_or(LoadError::NoProgram(spec.name))?;
        wanted.push((spec, program));
    }
    // Alternate in the tier's order, which lists the two heavy ones next
    // to each other.
    let (left, right): (Vec<_>, Vec<_>) = wanted
        .into_iter()
        .enumerate()
        .partition(|(i, _)| i % 2 == 0);
    let load_all = |half: Vec<(usize, (&ProgramSpec, &mut Program))>| {
        half.into_iter()
            .try_for_each(|(_, (spec, program))| load_one(program, spec.name, &spec.attach[0], btf))
    };
    std::thread::scope(|scope| {
        let other = scope.spawn(|| load_all(right));
        let mine = load_all(left);
        // A panic in the other thread is a bug; re-raise it here.
        let theirs = other
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        mine.and(theirs)
    })
}

fn load_one(
    program: &mut Program,
    name: &'static str,
    attach: &Attach,
    btf: &Btf,
) -> Result<(), LoadError> {
    let wrong_type = |source| LoadError::ProgramType {
        program: name,
        source: Box::new(source),
    };
    let loaded = match *attach {
        Attach::TracePoint(..) => <&mut TracePoint>::try_from(program)
            .map_err(wrong_type)?
            .load(),
        Attach::RawTracePoint(_) => <&mut RawTracePoint>::try_from(program)
            .map_err(wrong_type)?
            .load(),
        Attach::BtfTracePoint(tracepoint) => {
            let program = <&mut BtfTracePoint>::try_from(program).map_err(wrong_type)?;
            // A tracepoint the kernel knows by an older name: its BTF
            // lookup fails before anything is loaded, so the retry is clean.
            match (program.load(tracepoint, btf), former_name(tracepoint)) {
                (Err(ProgramError::Btf(_)), Some(former)) => program.load(former, btf),
                (loaded, _) => loaded,
            }
        }
        Attach::FEntry(function) => <&mut FEntry>::try_from(program)
            .map_err(wrong_type)?
            .load(function, btf),
        Attach::Lsm(hook) => <&mut Lsm>::try_from(program)
            .map_err(wrong_type)?
            .load(hook, btf),
        Attach::KProbe(_) => <&mut KProbe>::try_from(program).map_err(wrong_type)?.load(),
    };
    loaded.map_err(|source| LoadError::ProgramLoad {
        program: name,
        source: Box::new(source),
        hint: VERIFIER_HINT,
    })
}

/// The name older kernels give a BTF tracepoint the tables list by its
/// current one (its program reads the same arguments under either).
fn former_name(tracepoint: &str) -> Option<&'static str> {
    (tracepoint == uring::SUBMIT_TRACEPOINT).then_some(uring::SUBMIT_TRACEPOINT_BEFORE_6_3)
}

/// Attaches the loaded program `name` at `attach`; the attachment lasts
/// as long as the object.
pub fn attach_program(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: &Attach,
) -> Result<(), LoadError> {
    attach_with(ebpf, name, attach, false)
}

/// Attaches the loaded program `name` at `attach` and detaches it again:
/// proof that this kernel takes the hook.
pub fn attach_and_detach(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: &Attach,
) -> Result<(), LoadError> {
    attach_with(ebpf, name, attach, true)
}

/// Attaches the loaded program `name` at `attach` and hands its link over
/// (to pin, or to hold).
fn attach_link(ebpf: &mut Ebpf, name: &'static str, attach: &Attach) -> Result<FdLink, LoadError> {
    let attach_error = |source| attach_error(name, attach, source);
    macro_rules! take_as {
        ($ty:ty, $($arg:expr),*) => {{
            let program = program::<$ty>(ebpf, name)?;
            let link = program
                .attach($($arg),*)
                .and_then(|id| program.take_link(id))
                .map_err(attach_error)?;
            // A perf-event attachment that is no BPF link (before Linux
            // 5.15) cannot be held apart from its program.
            FdLink::try_from(link).map_err(|_| LoadError::NotALink {
                program: name,
                target: attach.describe(),
            })
        }};
    }
    match *attach {
        Attach::TracePoint(category, tracepoint) => take_as!(TracePoint, category, tracepoint),
        Attach::RawTracePoint(tracepoint) => take_as!(RawTracePoint, tracepoint),
        Attach::BtfTracePoint(_) => take_as!(BtfTracePoint,),
        Attach::FEntry(_) => take_as!(FEntry,),
        Attach::Lsm(_) => take_as!(Lsm,),
        Attach::KProbe(function) => take_as!(KProbe, function, 0),
    }
}

fn attach_with(
    ebpf: &mut Ebpf,
    name: &'static str,
    attach: &Attach,
    detach: bool,
) -> Result<(), LoadError> {
    // Each arm attaches, then detaches the link when asked to.
    macro_rules! attach_as {
        ($ty:ty, $($arg:expr),*) => {{
            let program = program::<$ty>(ebpf, name)?;
            program.attach($($arg),*).and_then(|link| {
                if detach { program.detach(link) } else { Ok(()) }
            })
        }};
    }
    let attached = match *attach {
        Attach::TracePoint(category, tracepoint) => attach_as!(TracePoint, category, tracepoint),
        Attach::RawTracePoint(tracepoint) => attach_as!(RawTracePoint, tracepoint),
        // Targets of BTF-typed programs were fixed at load time.
        Attach::BtfTracePoint(_) => attach_as!(BtfTracePoint,),
        Attach::FEntry(_) => attach_as!(FEntry,),
        Attach::Lsm(_) => attach_as!(Lsm,),
        Attach::KProbe(function) => attach_as!(KProbe, function, 0),
    };
    attached.map_err(|source| attach_error(name, attach, source))
}

/// The kernel refused to attach `program` at `attach`, with the hint for
/// that kind of hook.
fn attach_error(program: &'static str, attach: &Attach, source: ProgramError) -> LoadError {
    LoadError::Attach {
        program,
        target: attach.describe(),
        source: Box::new(source),
        hint: match attach {
            Attach::TracePoint(..) | Attach::KProbe(_) => TRACEFS_HINT,
            _ => VERIFIER_HINT,
        },
    }
}
