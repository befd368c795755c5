//! The agent's configuration: the TOML file schema, its built-in defaults,
//! loading with the "explicit file must exist, default file may be absent"
//! rule, command-line overrides, and validation of every value.
//!
//! Precedence is flags over file over built-in defaults. Every setting is
//! documented in `docs/configuration.md`; `etc/weightwarden.toml` is a
//! commented copy of the defaults and a unit test keeps the two equal.
//!
//! The layering is `#[serde(default)]` plus [`Config::apply`], a few lines,
//! rather than `figment`: one file and one set of flags need no provider
//! stack, and toml's own errors (line, column, the snippet, the keys
//! allowed there) reach the user unchanged.

use std::collections::BTreeSet;
use std::fmt;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use output::{
    DEFAULT_QUEUE_BYTES, DEFAULT_SPOOL_BYTES, Delivery, HttpApi, HttpSpec, OUTPUT_FORMS,
    OutputSpec, OutputSpecError, Rotation, Secret, SinkSpec, SyslogSpec, SyslogTransport,
    TlsOptions,
};

#[cfg(test)]
use crate::output::encode::Format;

mod detect;
mod output;
mod store;

pub use detect::{DEFAULT_BASELINE, DetectConfig};
pub use store::StoreConfig;

/// Where `weightwarden run` looks for its config when `--config` is not given.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/weightwarden/weightwarden.toml";

/// Model caches that ML tooling creates inside a user's home directory,
/// relative to that home. Only the ones that exist are watched (see
/// [`Config::expanded_roots`]); anything else belongs in `watch.roots`.
pub const HOME_CACHE_DIRS: &[&str] = &[
    // Hugging Face hub ($HF_HOME default; the hub cache lives under it).
    ".cache/huggingface",
    // PyTorch hub and torchvision checkpoints ($TORCH_HOME default); NeMo
    // also caches under here.
    ".cache/torch",
    // Ollama blobs when run as a user rather than the system service.
    ".ollama/models",
    // llama.cpp `-hf` downloads ($LLAMA_CACHE default).
    ".cache/llama.cpp",
    // ModelScope hub ($MODELSCOPE_CACHE default).
    ".cache/modelscope",
    // Kaggle hub ($KAGGLEHUB_CACHE default).
    ".cache/kagglehub",
    // OpenAI Whisper checkpoints.
    ".cache/whisper",
    // Keras application weights.
    ".keras/models",
    // LM Studio (current and pre-0.3 locations).
    ".lmstudio/models",
    ".cache/lm-studio",
];

/// Log levels accepted by `agent.log_level`, least to most verbose.
pub const LOG_LEVELS: &[&str] = &["error", "warn", "info", "debug", "trace"];

/// The smallest ring buffer the kernel accepts: one page. BPF ring buffers
/// must also be a power of two.
const MIN_RING_BUFFER_BYTES: u32 = 4096;

/// Pointer to the reference, appended to parse errors.
const DOCS_HINT: &str = "see docs/configuration.md for every setting";

/// The whole configuration file. Every section and key is optional: what
/// is left out keeps its built-in default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// The policy file (docs/policy.md); none by default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PathBuf>,
    pub watch: WatchConfig,
    pub gpu: GpuConfig,
    pub output: OutputConfig,
    pub kernel: KernelConfig,
    pub agent: AgentConfig,
    pub detect: DetectConfig,
    pub store: StoreConfig,
}

/// Which files count as model weights, and where to look for them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct WatchConfig {
    /// Directory trees walked (and watched with inotify) for model files.
    pub roots: Vec<PathBuf>,
    /// Also watch the well-known model caches ([`HOME_CACHE_DIRS`]) of every
    /// home directory under /home and of /root.
    pub home_caches: bool,
    /// File extensions, without the dot, that mark a model file; matched
    /// case-insensitively.
    pub extensions: Vec<String>,
    /// Seconds between full re-walks of the roots, the backstop for events
    /// inotify drops (queue overflow, watches added too late).
    pub rescan_interval_secs: u64,
    /// Capacity of the kernel's watched-inode map (model files plus GPU
    /// device nodes).
    pub max_files: u32,
    /// Capacity of the kernel's watched-directory map: every directory
    /// under the roots, where a created file is a `create` record. It also
    /// sizes the path-operation prefilter's name map (this, plus
    /// `max_retained`, plus 4096).
    pub max_dirs: u32,
    /// Most inodes followed outside the roots by file handle: watched
    /// files that left the roots while alive, and derived ones (copies).
    pub max_retained: u32,
}

/// Cap of `watch.max_retained`: each followed inode is checked every second.
pub const MAX_RETAINED: u32 = 65_536;

impl Default for WatchConfig {
    fn default() -> Self {
        Self {
            // The conventional system-wide model stores: hand-made layouts
            // (/models, /opt, /srv, /var/lib) and the Ollama service's home
            // under both package layouts (Debian-style and upstream script).
            roots: [
                "/models",
                "/var/lib/models",
                "/opt/models",
                "/srv/models",
                "/var/lib/ollama",
                "/usr/share/ollama/.ollama/models",
            ]
            .into_iter()
            .map(PathBuf::from)
            .collect(),
            // Most weights on a shared box are downloaded by users' tooling
            // into their own caches, not into a system directory.
            home_caches: true,
            // Weight and checkpoint formats of the common frameworks:
            // safetensors/HF, GGUF/GGML (llama.cpp, Ollama), PyTorch
            // (bin pt pth ckpt), ONNX, Keras/TF (h5 keras pb tflite),
            // TensorRT (engine plan), NeMo, Flax (msgpack), NumPy (npz),
            // Paddle (pdparams) and Core ML (mlmodel).
            extensions: [
                "safetensors",
                "gguf",
                "ggml",
                "bin",
                "pt",
                "pth",
                "ckpt",
                "onnx",
                "h5",
                "keras",
                "pb",
                "tflite",
                "engine",
                "plan",
                "nemo",
                "msgpack",
                "npz",
                "pdparams",
                "mlmodel",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
            // Five minutes: a full walk of a large model store is cheap next
            // to that, and inotify covers the common case in between.
            rescan_interval_secs: 300,
            // 256 Ki inodes: far more files than any real model store holds,
            // for a preallocated map of roughly 20 MiB (under 100 bytes an
            // entry).
            max_files: 262_144,
            // 64 Ki directories: a model store has a few per model (the
            // Hugging Face cache: 5), so thousands of models; 12 MiB with
            // the name map sized from it (measured).
            max_dirs: 65_536,
            // A rename or unlink away from the roots is rare; each followed
            // inode costs a file handle and a check a second.
            max_retained: crate::enrich::watch::DEFAULT_MAX_RETAINED as u32,
        }
    }
}

impl WatchConfig {
    /// Whether `path` has one of the configured model-file extensions
    /// (ASCII case-insensitive, so `model.GGUF` counts).
    pub fn is_model_path(&self, path: &Path) -> bool {
        let Some(ext) = path.extension().and_then(|e| e.to_str()) else {
            return false;
        };
        self.extensions
            .iter()
            .any(|known| known.eq_ignore_ascii_case(ext))
    }
}

/// Which device nodes identify a process as a GPU/accelerator user.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct GpuConfig {
    /// Absolute path patterns; `*` matches any run of characters within one
    /// path component and every other character matches itself.
    pub device_patterns: Vec<String>,
}

impl Default for GpuConfig {
    fn default() -> Self {
        Self {
            device_patterns: [
                // NVIDIA: nvidia0.., nvidiactl, nvidia-modeset.
                "/dev/nvidia*",
                // NVIDIA unified memory (CUDA opens it for every context).
                // The pattern above covers it too; it is spelled out so that
                // narrowing that pattern cannot silently drop it.
                "/dev/nvidia-uvm",
                // DRM render nodes: AMD, Intel and other DRM-based GPUs.
                "/dev/dri/renderD*",
                // AMD ROCm compute.
                "/dev/kfd",
                // Kernel compute accelerator subsystem (Habana Gaudi, Intel
                // NPU, ...).
                "/dev/accel/*",
            ]
            .into_iter()
            .map(String::from)
            .collect(),
        }
    }
}

/// Where events are written.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OutputConfig {
    /// Every sink receives every event, in order.
    pub sinks: Vec<OutputSpec>,
}

impl Default for OutputConfig {
    fn default() -> Self {
        Self {
            // stdout works everywhere and under systemd lands in the journal.
            sinks: vec![OutputSpec::stdout()],
        }
    }
}

/// Sizes of the kernel-side maps and of the user-space bookkeeping fed by
/// them.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct KernelConfig {
    /// Size of the BPF ring buffer carrying events to user space.
    pub ring_buffer_bytes: u32,
    /// Seconds after which a read aggregate is reported even though its
    /// file stays open, and an idle one is swept.
    pub read_flush_interval_secs: u64,
    /// Capacity of the kernel's per-(process, file) read aggregation map.
    pub read_aggregates_max: u32,
    /// Capacity of the kernel's per-thread map of reads and mmaps between
    /// syscall entry and exit.
    pub pending_max: u32,
    /// Capture 32-bit (ia32, `int $0x80`) syscalls, which fire no syscall
    /// tracepoint. Costs every syscall on the host a short program call.
    pub compat_syscalls: bool,
    /// Let processes that cannot hold a descriptor of a watched file skip
    /// the kernel's descriptor walk on every read, mmap and close.
    pub holder_prefilter: bool,
    /// The bpffs directory the programs' links and maps are pinned in while
    /// the agent runs, so that a crash or a restart leaves capture and
    /// in-kernel enforcement running for the next agent to adopt; `"none"`:
    /// nothing pinned. Unset: [`DEFAULT_PIN_DIR`] (none for an agent run
    /// with `--allow-second-agent`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pin_dir: Option<PathBuf>,
    /// At SIGTERM, leave the programs attached (pinned) for the next agent
    /// instead of detaching them: restarts and upgrades without a gap.
    /// SIGINT always detaches; so does `weightwarden unload`.
    pub handover: bool,
}

/// `kernel.pin_dir`'s default.
pub const DEFAULT_PIN_DIR: &str = "/sys/fs/bpf/weightwarden";

impl KernelConfig {
    /// Where to pin, if anywhere: the configured directory, else the
    /// default unless agents run side by side (tests).
    pub fn pin_dir(&self, beside_another: bool) -> Option<&Path> {
        match &self.pin_dir {
            Some(dir) if dir.as_os_str() == "none" => None,
            Some(dir) => Some(dir.as_path()),
            None if beside_another => None,
            None => Some(Path::new(DEFAULT_PIN_DIR)),
        }
    }
}

impl Default for KernelConfig {
    fn default() -> Self {
        Self {
            // 8 MiB absorbs a burst of tens of thousands of events while
            // user space is descheduled, at a fixed cost that is small next
            // to a GPU host's memory.
            ring_buffer_bytes: 8 * 1024 * 1024,
            // Reads of a multi-GB file are far too many to report one by
            // one; ten seconds keeps reports timely without flooding sinks.
            read_flush_interval_secs: 10,
            // One entry per (process, file) pair that read weights within a
            // flush interval; 64 Ki covers busy hosts with headroom.
            read_aggregates_max: 65_536,
            // One entry per thread inside a read or mmap of a watched file,
            // so bounded by concurrently blocked threads; the map is LRU.
            pending_max: 16_384,
            // On: a 64-bit process can read weights through `int $0x80`,
            // and nothing else sees those syscalls.
            compat_syscalls: true,
            // On: unrelated I/O pays one hash lookup instead of seven kernel
            // reads. Off only to rule it out when debugging a missed read.
            holder_prefilter: true,
            pin_dir: None,
            // Off: a stop detaches, as a user who stops a sensor expects;
            // the shipped unit and DaemonSet turn it on.
            handover: false,
        }
    }
}

/// The agent process itself.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct AgentConfig {
    /// Host name stamped on every event; `None` uses the system host name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Seconds between heartbeat events that prove the agent is alive.
    pub heartbeat_interval_secs: u64,
    /// How many ancestor processes each event records.
    pub ancestors_max: usize,
    /// Verbosity of the agent's own diagnostics, one of [`LOG_LEVELS`].
    pub log_level: String,
    /// Where the agent keeps what must outlive it (the files it follows
    /// outside the roots: copies of weights, weights moved away), or
    /// `"none"`: forgotten at each restart.
    pub state_dir: PathBuf,
    /// The Prometheus metrics endpoint's address (`HOST:PORT`), or
    /// `"none"`: no endpoint.
    pub metrics: String,
}

/// `agent.state_dir`'s default.
pub const DEFAULT_STATE_DIR: &str = "/var/lib/weightwarden";

/// `agent.metrics`'s default: loopback only, so no other host can read the
/// counters unless the operator opens it.
pub const DEFAULT_METRICS: &str = "127.0.0.1:9465";

impl AgentConfig {
    /// The state directory, `None` when turned off.
    pub fn state_dir(&self) -> Option<&Path> {
        (self.state_dir.as_os_str() != "none").then_some(self.state_dir.as_path())
    }

    /// The metrics endpoint's address, `None` when turned off (validated:
    /// anything else parses).
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        (self.metrics != "none")
            .then(|| self.metrics.parse().ok())
            .flatten()
    }
}

impl Default for AgentConfig {
    fn default() -> Self {
        Self {
            // The kernel's host name is right unless the host is known to
            // the collector under another name.
            hostname: None,
            // A minute: a silent agent is noticed quickly without the
            // heartbeats dominating a quiet host's event stream.
            heartbeat_interval_secs: 60,
            // Enough to reach from a Python worker through its launcher,
            // shell and container runtime up to the service manager.
            ancestors_max: 8,
            // Lifecycle messages and warnings, no per-event chatter.
            log_level: "info".to_owned(),
            // The FHS home of a daemon's persistent state.
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            metrics: DEFAULT_METRICS.to_owned(),
        }
    }
}

/// Which file, if any, the configuration came from; for the startup log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// Read from this file.
    File(PathBuf),
    /// No `--config` and no file at the default path: built-in defaults.
    Defaults,
}

impl fmt::Display for ConfigSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "config file {}", path.display()),
            Self::Defaults => write!(
                f,
                "built-in defaults (no config file at {DEFAULT_CONFIG_PATH})"
            ),
        }
    }
}

/// Command-line settings that take precedence over the file. Empty lists
/// and `None` leave the file's value alone.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overrides {
    /// `--watch DIR`: replaces `watch.roots` and turns `home_caches` off,
    /// so the agent watches exactly what was asked.
    pub watch: Vec<PathBuf>,
    /// `--output SPEC`: replaces `output.sinks`.
    pub outputs: Vec<OutputSpec>,
    /// `--ring-buffer-bytes`.
    pub ring_buffer_bytes: Option<u32>,
    /// `--heartbeat-interval` (seconds).
    pub heartbeat_interval_secs: Option<u64>,
    /// `--read-flush-interval` (seconds).
    pub read_flush_interval_secs: Option<u64>,
    /// `--gpu-device PATTERN`: replaces `gpu.device_patterns`.
    pub gpu_device_patterns: Vec<String>,
    /// `--policy FILE`: replaces `policy`.
    pub policy: Option<PathBuf>,
    /// `--state-dir DIR`: replaces `agent.state_dir`.
    pub state_dir: Option<PathBuf>,
    /// `--store PATH`: replaces `store.path` (`none`: no store).
    pub store: Option<PathBuf>,
    /// `--metrics ADDR`: replaces `agent.metrics` (`none`: no endpoint).
    pub metrics: Option<String>,
}

/// Why the configuration could not be loaded or is not usable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {} ({hint})", .path.display())]
    Read {
        path: PathBuf,
        #[source]
        error: io::Error,
        hint: &'static str,
    },
    /// toml's message, the source, carries the line, column, a snippet
    /// and, for an unknown key, the key and the keys expected there.
    #[error("cannot parse config file {} ({DOCS_HINT})", .path.display())]
    Parse {
        path: PathBuf,
        #[source]
        error: toml::de::Error,
    },
    #[error("invalid {key} = {value}{}: {allowed}", origin_note(.origin.as_deref(), .key))]
    Invalid {
        /// Dotted key, e.g. `kernel.ring_buffer_bytes`.
        key: &'static str,
        /// The offending value as it would be written in TOML.
        value: String,
        /// What would have been accepted.
        allowed: String,
        /// The file the value was read from, when known; `None` once
        /// command-line overrides may have been applied.
        origin: Option<PathBuf>,
    },
}

/// Says where a bad value came from: the file, or the file or the flag
/// that overrides the key.
fn origin_note(origin: Option<&Path>, key: &str) -> String {
    if let Some(path) = origin {
        return format!(" in {}", path.display());
    }
    match flag_for_key(key) {
        Some(flag) => format!(" (from the config file or {flag})"),
        None => String::new(),
    }
}

/// The command-line flag that overrides `key`, if any.
fn flag_for_key(key: &str) -> Option<&'static str> {
    Some(match key {
        "watch.roots" => "--watch",
        "output.sinks" => "--output",
        "kernel.ring_buffer_bytes" => "--ring-buffer-bytes",
        "kernel.read_flush_interval_secs" => "--read-flush-interval",
        "agent.heartbeat_interval_secs" => "--heartbeat-interval",
        "gpu.device_patterns" => "--gpu-device",
        "agent.state_dir" => "--state-dir",
        "store.path" => "--store",
        "agent.metrics" => "--metrics",
        _ => return None,
    })
}

/// Shorthand for a validation failure not yet tied to a file.
fn invalid(key: &'static str, value: impl Into<String>, allowed: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        value: value.into(),
        allowed: allowed.into(),
        origin: None,
    }
}

/// The advice that goes with an io error on the config file.
fn read_hint(kind: io::ErrorKind) -> &'static str {
    match kind {
        io::ErrorKind::NotFound => {
            "check the --config path, or omit --config to use the default file or built-in defaults"
        }
        io::ErrorKind::PermissionDenied => "run as root or fix the file's permissions",
        io::ErrorKind::IsADirectory => "--config takes a file, not a directory",
        _ => "check that the path names a readable TOML file",
    }
}

/// Rejects zero for settings where it would mean "never" or "no room".
/// The longest interval any setting takes: a week. Longer values are
/// mistakes, and timers cannot represent values near `u64::MAX` seconds.
pub const MAX_INTERVAL_SECS: u64 = 7 * 24 * 3600;

/// A kernel map sized by a setting: the kernel allocates (and locks) every
/// entry when the map is created, so a size is a memory commitment.
pub struct MapCost {
    /// Locked kernel memory per entry, measured from the map's `memlock`
    /// in `/proc/PID/fdinfo` on Linux 6.18 (1,048,576 entries).
    pub bytes_per_entry: u64,
    /// The largest size accepted.
    pub max_entries: u32,
}

/// `WATCHED` (16-byte key, 8-byte value): 88 bytes an entry; the cap,
/// 16 Mi files, is 1.4 GiB.
pub const WATCHED_MAP: MapCost = MapCost {
    bytes_per_entry: 88,
    max_entries: 1 << 24,
};
/// `WATCHED_DIRS` (16-byte key, 4-byte value: 88 bytes an entry) and
/// `PATH_NAMES` (8-byte key, 1-byte value: 94 bytes an entry, and 5,120
/// more entries), sized together by `watch.max_dirs`; the cap, 4 Mi
/// directories, is about 730 MiB.
pub const WATCHED_DIRS_MAP: MapCost = MapCost {
    bytes_per_entry: 182,
    max_entries: 1 << 22,
};
/// `READ_AGG` (168 bytes an entry), `OPEN_AGG` (152) and `READERS` (80),
/// sized together; the cap, 4 Mi concurrent readers, is about 1.5 GiB.
pub const READ_AGGREGATE_MAPS: MapCost = MapCost {
    bytes_per_entry: 400,
    max_entries: 1 << 22,
};
/// `PENDING` (an LRU map, 128 bytes an entry); the cap, 1 Mi threads in a
/// followed syscall at once, is 128 MiB.
pub const PENDING_MAP: MapCost = MapCost {
    bytes_per_entry: 128,
    max_entries: 1 << 20,
};

fn require_map_size(key: &'static str, value: u32, cost: &MapCost) -> Result<(), ConfigError> {
    require_positive(key, u64::from(value))?;
    if value > cost.max_entries {
        let cap_mib = (u64::from(cost.max_entries) * cost.bytes_per_entry) >> 20;
        return Err(invalid(
            key,
            value.to_string(),
            format!(
                "must be at most {} (each entry locks {} bytes of kernel memory when the map is \
                 created: {cap_mib} MiB at that size)",
                cost.max_entries, cost.bytes_per_entry
            ),
        ));
    }
    Ok(())
}

fn require_positive(key: &'static str, value: u64) -> Result<(), ConfigError> {
    if value == 0 {
        return Err(invalid(key, "0", "must be greater than 0"));
    }
    if key.ends_with("_secs") && value > MAX_INTERVAL_SECS {
        return Err(invalid(
            key,
            value.to_string(),
            format!("must be at most {MAX_INTERVAL_SECS} (one week)"),
        ));
    }
    Ok(())
}

impl Config {
    /// Loads the configuration. `None`: the file at [`DEFAULT_CONFIG_PATH`]
    /// if it exists, else built-in defaults. `Some(path)`: that file must
    /// exist and be valid. The result is validated; apply [`Overrides`] and
    /// call [`Config::validate`] again afterwards.
    pub fn load(path: Option<&Path>) -> Result<(Config, ConfigSource), ConfigError> {
        Self::load_from(path, Path::new(DEFAULT_CONFIG_PATH))
    }

    /// [`Config::load`] with the default path as a parameter, for tests.
    pub fn load_from(
        explicit: Option<&Path>,
        default_path: &Path,
    ) -> Result<(Config, ConfigSource), ConfigError> {
        let path = explicit.unwrap_or(default_path);
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            // Only the default file is optional: a missing explicit file is
            // almost certainly a typo and must not silently mean defaults.
            Err(error) if explicit.is_none() && error.kind() == io::ErrorKind::NotFound => {
                tracing::debug!(
                    path = %path.display(),
                    "no config file at the default path, using built-in defaults"
                );
                return Ok((Config::default(), ConfigSource::Defaults));
            }
            Err(error) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    hint: read_hint(error.kind()),
                    error,
                });
            }
        };
        let config = Self::from_toml_str(&text, path)?;
        Ok((config, ConfigSource::File(path.to_owned())))
    }

    /// Parses and validates config text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &Path) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|error| ConfigError::Parse {
            path: origin.to_owned(),
            error,
        })?;
        config.validate().map_err(|error| match error {
            ConfigError::Invalid {
                key,
                value,
                allowed,
                ..
            } => ConfigError::Invalid {
                key,
                value,
                allowed,
                origin: Some(origin.to_owned()),
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Applies command-line overrides. Call [`Config::validate`] afterwards:
    /// flags are checked by the same rules as the file.
    pub fn apply(&mut self, overrides: Overrides) {
        let Overrides {
            watch,
            outputs,
            ring_buffer_bytes,
            heartbeat_interval_secs,
            read_flush_interval_secs,
            gpu_device_patterns,
            policy,
            state_dir,
            store,
            metrics,
        } = overrides;
        if let Some(addr) = metrics {
            self.agent.metrics = addr;
        }
        if let Some(dir) = state_dir {
            self.agent.state_dir = dir;
        }
        if let Some(path) = store {
            self.store.path = path;
        }
        if policy.is_some() {
            self.policy = policy;
        }
        if !watch.is_empty() {
            self.watch.roots = watch;
            self.watch.home_caches = false;
        }
        if !outputs.is_empty() {
            self.output.sinks = outputs;
        }
        if let Some(bytes) = ring_buffer_bytes {
            self.kernel.ring_buffer_bytes = bytes;
        }
        if let Some(secs) = heartbeat_interval_secs {
            self.agent.heartbeat_interval_secs = secs;
        }
        if let Some(secs) = read_flush_interval_secs {
            self.kernel.read_flush_interval_secs = secs;
        }
        if !gpu_device_patterns.is_empty() {
            self.gpu.device_patterns = gpu_device_patterns;
        }
    }

    /// Checks every value against its allowed range; reports the first
    /// violation.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.validate_watch()?;
        self.validate_gpu()?;
        self.validate_output()?;
        self.validate_kernel()?;
        self.validate_agent()?;
        self.store.validate()?;
        self.detect.validate()
    }

    fn validate_watch(&self) -> Result<(), ConfigError> {
        let watch = &self.watch;
        if watch.roots.is_empty() && !watch.home_caches {
            return Err(invalid(
                "watch.roots",
                "[]",
                "list at least one directory, or set watch.home_caches = true: otherwise nothing is watched",
            ));
        }
        if watch.roots.iter().any(|root| root.as_os_str().is_empty()) {
            return Err(invalid(
                "watch.roots",
                "\"\"",
                "each root must be a non-empty directory path",
            ));
        }
        if watch.extensions.is_empty() {
            return Err(invalid(
                "watch.extensions",
                "[]",
                "list at least one extension, e.g. [\"safetensors\", \"gguf\"]: otherwise no file counts as a model",
            ));
        }
        for ext in &watch.extensions {
            if let Some(bare) = ext.strip_prefix('.') {
                return Err(invalid(
                    "watch.extensions",
                    format!("{ext:?}"),
                    format!("write extensions without the leading dot, e.g. {bare:?}"),
                ));
            }
            let well_formed = !ext.is_empty()
                && ext
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
            if !well_formed {
                return Err(invalid(
                    "watch.extensions",
                    format!("{ext:?}"),
                    "each extension must be non-empty ASCII letters, digits, `_` or `-` (no dots: only the part after the last dot is compared)",
                ));
            }
        }
        require_positive("watch.rescan_interval_secs", watch.rescan_interval_secs)?;
        require_map_size("watch.max_files", watch.max_files, &WATCHED_MAP)?;
        require_map_size("watch.max_dirs", watch.max_dirs, &WATCHED_DIRS_MAP)?;
        if watch.max_retained > MAX_RETAINED {
            return Err(invalid(
                "watch.max_retained",
                watch.max_retained.to_string(),
                format!(
                    "at most {MAX_RETAINED} (each is checked every second; 0 turns following off)"
                ),
            ));
        }
        Ok(())
    }

    fn validate_gpu(&self) -> Result<(), ConfigError> {
        // An empty list is allowed: it turns GPU attribution off.
        for pattern in &self.gpu.device_patterns {
            if !pattern.starts_with('/') {
                return Err(invalid(
                    "gpu.device_patterns",
                    format!("{pattern:?}"),
                    "each pattern must be an absolute path such as \"/dev/nvidia*\" (it is matched against device paths, which are absolute)",
                ));
            }
            // The watch set compiles each component on its own (`*` never
            // crosses a `/`), so each must be a glob by itself.
            if let Some(err) = pattern
                .split('/')
                .find_map(|component| globset::Glob::new(component).err())
            {
                return Err(invalid(
                    "gpu.device_patterns",
                    format!("{pattern:?}"),
                    format!(
                        "each pattern must be a valid glob (`*`, `?`, `[0-9]`, `{{a,b}}`): {err}"
                    ),
                ));
            }
        }
        Ok(())
    }

    fn validate_output(&self) -> Result<(), ConfigError> {
        let sinks = &self.output.sinks;
        if sinks.is_empty() {
            return Err(invalid(
                "output.sinks",
                "[]",
                format!("list at least one sink, {OUTPUT_FORMS}: otherwise events are discarded"),
            ));
        }
        for (i, output) in sinks.iter().enumerate() {
            // One destination, whatever the formats: two encodings in one
            // file or stream would interleave into something no reader
            // parses.
            if sinks[..i]
                .iter()
                .any(|o| o.sink.to_string() == output.sink.to_string())
            {
                return Err(invalid(
                    "output.sinks",
                    format!("{:?}", output.to_string()),
                    "each destination may be listed once (a repeated one would receive every \
                     event twice, or two encodings mixed)",
                ));
            }
        }
        Ok(())
    }

    fn validate_kernel(&self) -> Result<(), ConfigError> {
        let kernel = &self.kernel;
        let bytes = kernel.ring_buffer_bytes;
        if bytes < MIN_RING_BUFFER_BYTES || !bytes.is_power_of_two() {
            return Err(invalid(
                "kernel.ring_buffer_bytes",
                bytes.to_string(),
                "must be a power of two and at least 4096 (the page size), e.g. 8388608 (8 MiB)",
            ));
        }
        require_positive(
            "kernel.read_flush_interval_secs",
            kernel.read_flush_interval_secs,
        )?;
        require_map_size(
            "kernel.read_aggregates_max",
            kernel.read_aggregates_max,
            &READ_AGGREGATE_MAPS,
        )?;
        require_map_size("kernel.pending_max", kernel.pending_max, &PENDING_MAP)?;
        match &kernel.pin_dir {
            Some(dir) if dir.as_os_str() != "none" && !dir.starts_with("/sys/fs/bpf/") => {
                Err(invalid(
                    "kernel.pin_dir",
                    format!("{:?}", dir.display().to_string()),
                    "must be a directory under /sys/fs/bpf/ (the BPF file system), or \"none\"",
                ))
            }
            Some(dir) if dir.as_os_str() == "none" && kernel.handover => Err(invalid(
                "kernel.handover",
                "true".to_owned(),
                "needs kernel.pin_dir: a handover leaves the programs pinned there",
            )),
            _ => Ok(()),
        }
    }

    fn validate_agent(&self) -> Result<(), ConfigError> {
        let agent = &self.agent;
        if let Some(hostname) = &agent.hostname {
            let well_formed = !hostname.trim().is_empty()
                && hostname.len() <= 255
                && !hostname.chars().any(char::is_control);
            if !well_formed {
                return Err(invalid(
                    "agent.hostname",
                    format!("{hostname:?}"),
                    "must be 1 to 255 bytes without control characters; leave it out to use the system host name",
                ));
            }
        }
        require_positive(
            "agent.heartbeat_interval_secs",
            agent.heartbeat_interval_secs,
        )?;
        if !LOG_LEVELS.contains(&agent.log_level.as_str()) {
            return Err(invalid(
                "agent.log_level",
                format!("{:?}", agent.log_level),
                format!("must be one of {}", LOG_LEVELS.join(", ")),
            ));
        }
        if agent.metrics != "none" && agent.metrics.parse::<std::net::SocketAddr>().is_err() {
            return Err(invalid(
                "agent.metrics",
                format!("{:?}", agent.metrics),
                format!(
                    "must be an IP address and port (default {DEFAULT_METRICS:?}; \
                     \"0.0.0.0:9465\" for every interface), or \"none\" for no metrics endpoint"
                ),
            ));
        }
        if agent.state_dir().is_some_and(|dir| !dir.is_absolute()) {
            return Err(invalid(
                "agent.state_dir",
                format!("{:?}", agent.state_dir.display().to_string()),
                format!(
                    "must be an absolute directory path (default {DEFAULT_STATE_DIR:?}), or \"none\" to keep no state"
                ),
            ));
        }
        Ok(())
    }

    /// The directories to watch: `watch.roots` as configured (whether or
    /// not they exist yet), then, when `watch.home_caches` is on, each of
    /// [`HOME_CACHE_DIRS`] that exists in a home directory under
    /// `home_parent` (normally `/home`) or in `root_home` (normally
    /// `/root`). Without duplicates, in a stable order.
    ///
    /// Home caches appear when a user first downloads a model, so call this
    /// again on each rescan to pick up new ones.
    pub fn expanded_roots(&self, home_parent: &Path, root_home: &Path) -> Vec<PathBuf> {
        let mut seen = BTreeSet::new();
        let mut roots = Vec::new();
        let mut push = |path: PathBuf| {
            if seen.insert(path.clone()) {
                roots.push(path);
            }
        };
        for root in &self.watch.roots {
            push(root.clone());
        }
        if self.watch.home_caches {
            let mut homes = home_dirs(home_parent);
            if root_home.is_dir() {
                homes.push(root_home.to_owned());
            }
            for home in homes {
                for cache in HOME_CACHE_DIRS {
                    let dir = home.join(cache);
                    if dir.is_dir() {
                        push(dir);
                    }
                }
            }
        }
        roots
    }
}

/// The home directories directly under `parent`, sorted. Hidden entries
/// (e.g. `/home/.ecryptfs`) are not homes. An unreadable parent is logged
/// and yields none: the configured roots are still worth watching.
fn home_dirs(parent: &Path) -> Vec<PathBuf> {
    let entries = match fs::read_dir(parent) {
        Ok(entries) => entries,
        Err(error) if error.kind() == io::ErrorKind::NotFound => {
            tracing::debug!(path = %parent.display(), "no home directory parent, skipping home caches");
            return Vec::new();
        }
        Err(error) => {
            tracing::warn!(
                path = %parent.display(),
                %error,
                "cannot list home directories, skipping their model caches (run as root or fix the directory's permissions)"
            );
            return Vec::new();
        }
    };
    let mut homes: Vec<PathBuf> = entries
        .filter_map(|entry| match entry {
            Ok(entry) => Some(entry),
            Err(error) => {
                tracing::warn!(path = %parent.display(), %error, "cannot read a home directory entry, skipping it");
                None
            }
        })
        .filter(|entry| !entry.file_name().as_bytes().starts_with(b"."))
        .map(|entry| entry.path())
        // Follows symlinks on purpose: homes are often links to other disks.
        .filter(|path| path.is_dir())
        .collect();
    homes.sort();
    homes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        Config::from_toml_str(text, Path::new("/test/weightwarden.toml"))
    }

    #[test]
    fn defaults_are_valid() {
        assert!(Config::default().validate().is_ok());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let text = toml::to_string(&Config::default()).expect("serialize defaults");
        assert_eq!(
            parse(&text).expect("parse serialized defaults"),
            Config::default()
        );
    }

    #[test]
    fn empty_file_means_defaults() {
        assert_eq!(parse("").expect("empty file"), Config::default());
    }

    #[test]
    fn shipped_example_equals_defaults() {
        let text = include_str!("../../../etc/weightwarden.toml");
        assert_eq!(
            parse(text).expect("etc/weightwarden.toml"),
            Config::default()
        );
    }

    #[test]
    fn full_example_parses() {
        let config = parse(
            r#"
            policy = "/etc/weightwarden/policy.toml"

            [watch]
            roots = ["/data/models", "/mnt/weights"]
            home_caches = false
            extensions = ["safetensors", "GGUF"]
            rescan_interval_secs = 60
            max_files = 1024
            max_dirs = 2048

            [gpu]
            device_patterns = ["/dev/nvidia*"]

            [output]
            sinks = ["stdout", "jsonl:/var/log/weightwarden/events.jsonl"]

            [kernel]
            ring_buffer_bytes = 16_777_216
            read_flush_interval_secs = 5
            read_aggregates_max = 1000
            pending_max = 2000
            compat_syscalls = false
            holder_prefilter = false
            pin_dir = "/sys/fs/bpf/ww"
            handover = true

            [agent]
            hostname = "gpu-node-01"
            heartbeat_interval_secs = 30
            ancestors_max = 4
            log_level = "debug"
            state_dir = "/srv/weightwarden/state"

            [detect]
            disabled = ["unexpected_reader"]
            bulk_read_share = 0.25
            copy_share = 0.75
            repeat_window_secs = 60
            max_per_minute = 100
            trusted_exes = ["/usr/local/bin/backup"]
            egress_allowed = ["10.0.0.0/8", "::1/128"]
            transfer_tools = ["tar"]
            interpreters = ["bash"]
            baseline = "/var/lib/weightwarden/baseline.json"

            [store]
            path = "/srv/weightwarden/audit.db"
            key = "/etc/weightwarden/audit.key"
            max_age_days = 30
            max_bytes = 0
            queue_max = 1000
            "#,
        )
        .expect("full example");
        let expected = Config {
            policy: Some("/etc/weightwarden/policy.toml".into()),
            watch: WatchConfig {
                roots: vec!["/data/models".into(), "/mnt/weights".into()],
                home_caches: false,
                extensions: vec!["safetensors".into(), "GGUF".into()],
                rescan_interval_secs: 60,
                max_files: 1024,
                max_dirs: 2048,
                max_retained: crate::enrich::watch::DEFAULT_MAX_RETAINED as u32,
            },
            gpu: GpuConfig {
                device_patterns: vec!["/dev/nvidia*".into()],
            },
            output: OutputConfig {
                sinks: vec![
                    OutputSpec::stdout(),
                    OutputSpec::jsonl("/var/log/weightwarden/events.jsonl"),
                ],
            },
            kernel: KernelConfig {
                ring_buffer_bytes: 16 * 1024 * 1024,
                read_flush_interval_secs: 5,
                read_aggregates_max: 1000,
                pending_max: 2000,
                compat_syscalls: false,
                holder_prefilter: false,
                pin_dir: Some(PathBuf::from("/sys/fs/bpf/ww")),
                handover: true,
            },
            agent: AgentConfig {
                hostname: Some("gpu-node-01".into()),
                heartbeat_interval_secs: 30,
                ancestors_max: 4,
                log_level: "debug".into(),
                state_dir: PathBuf::from("/srv/weightwarden/state"),
                metrics: DEFAULT_METRICS.to_owned(),
            },
            detect: DetectConfig {
                disabled: vec![crate::event::DetectionId::UnexpectedReader],
                bulk_read_share: 0.25,
                copy_share: 0.75,
                repeat_window_secs: 60,
                max_per_minute: 100,
                trusted_exes: vec!["/usr/local/bin/backup".into()],
                egress_allowed: vec!["10.0.0.0/8".parse().unwrap(), "::1/128".parse().unwrap()],
                transfer_tools: vec!["tar".into()],
                interpreters: vec!["bash".into()],
                baseline: Some("/var/lib/weightwarden/baseline.json".into()),
            },
            store: StoreConfig {
                path: "/srv/weightwarden/audit.db".into(),
                key: Some("/etc/weightwarden/audit.key".into()),
                max_age_days: 30,
                max_bytes: 0,
                queue_max: 1000,
            },
        };
        assert_eq!(config, expected);
    }

    #[test]
    fn partial_section_keeps_other_defaults() {
        let config = parse("[kernel]\npending_max = 7\n").expect("partial");
        assert_eq!(config.kernel.pending_max, 7);
        assert_eq!(
            config.kernel.ring_buffer_bytes,
            KernelConfig::default().ring_buffer_bytes
        );
        assert_eq!(config.watch, WatchConfig::default());
    }

    #[test]
    fn unknown_top_level_key_is_rejected_by_name() {
        let err = parse("[watch]\nroots = []\n\n[wtach]\nx = 1\n").expect_err("typo section");
        let msg = crate::Chain(&err).to_string();
        assert!(matches!(err, ConfigError::Parse { .. }), "{msg}");
        assert!(msg.contains("wtach"), "{msg}");
        assert!(msg.contains("/test/weightwarden.toml"), "{msg}");
        assert!(msg.contains("line 4"), "{msg}");
        assert!(msg.contains("docs/configuration.md"), "{msg}");
    }

    #[test]
    fn unknown_key_in_section_is_rejected_by_name() {
        let err = parse("[kernel]\nring_bufer_bytes = 4096\n").expect_err("typo key");
        let msg = crate::Chain(&err).to_string();
        assert!(msg.contains("ring_bufer_bytes"), "{msg}");
        // toml lists the keys that are allowed there.
        assert!(msg.contains("ring_buffer_bytes"), "{msg}");
        assert!(msg.contains("line 2"), "{msg}");
    }

    #[test]
    fn wrong_type_is_a_parse_error() {
        let err = parse("[agent]\nheartbeat_interval_secs = \"60\"\n").expect_err("string for int");
        assert!(matches!(err, ConfigError::Parse { .. }), "{err}");
    }

    #[test]
    fn bad_ring_buffer_sizes_are_rejected() {
        for bytes in [0_u32, 1, 2048, 5000, 8 * 1024 * 1024 + 4096] {
            let err = parse(&format!("[kernel]\nring_buffer_bytes = {bytes}\n"))
                .expect_err("bad ring buffer size");
            let msg = err.to_string();
            assert!(
                matches!(&err, ConfigError::Invalid { key: "kernel.ring_buffer_bytes", value, origin: Some(_), .. } if *value == bytes.to_string()),
                "{msg}"
            );
            assert!(msg.contains("power of two"), "{msg}");
            assert!(msg.contains("4096"), "{msg}");
            assert!(msg.contains("/test/weightwarden.toml"), "{msg}");
        }
        for bytes in [4096_u32, 1 << 20, 1 << 31] {
            assert!(parse(&format!("[kernel]\nring_buffer_bytes = {bytes}\n")).is_ok());
        }
    }

    #[test]
    fn zero_intervals_and_capacities_are_rejected() {
        for (section, key) in [
            ("watch", "rescan_interval_secs"),
            ("watch", "max_files"),
            ("watch", "max_dirs"),
            ("kernel", "read_flush_interval_secs"),
            ("kernel", "read_aggregates_max"),
            ("kernel", "pending_max"),
            ("agent", "heartbeat_interval_secs"),
        ] {
            let err = parse(&format!("[{section}]\n{key} = 0\n")).expect_err("zero");
            let msg = err.to_string();
            assert!(msg.contains(&format!("{section}.{key}")), "{msg}");
            assert!(msg.contains("greater than 0"), "{msg}");
        }
    }

    #[test]
    fn map_sizes_are_capped_by_the_memory_they_lock() {
        for (section, key, cap) in [
            ("watch", "max_files", WATCHED_MAP.max_entries),
            ("watch", "max_dirs", WATCHED_DIRS_MAP.max_entries),
            (
                "kernel",
                "read_aggregates_max",
                READ_AGGREGATE_MAPS.max_entries,
            ),
            ("kernel", "pending_max", PENDING_MAP.max_entries),
        ] {
            assert!(parse(&format!("[{section}]\n{key} = {cap}\n")).is_ok());
            for too_big in [cap + 1, u32::MAX] {
                let err = parse(&format!("[{section}]\n{key} = {too_big}\n")).expect_err("cap");
                let msg = err.to_string();
                assert!(
                    msg.contains(&format!("{section}.{key} = {too_big}")),
                    "{msg}"
                );
                assert!(msg.contains(&format!("at most {cap}")), "{msg}");
                assert!(msg.contains("MiB"), "{msg}");
            }
        }
    }

    #[test]
    fn bad_output_spec_is_rejected() {
        let err = parse("[output]\nsinks = [\"syslog\"]\n").expect_err("bad sink");
        let msg = crate::Chain(&err).to_string();
        assert!(msg.contains("syslog"), "{msg}");
        assert!(msg.contains("jsonl:PATH"), "{msg}");

        assert_eq!(
            "jsonl:".parse::<OutputSpec>(),
            Err(OutputSpecError::EmptyPath {
                value: "jsonl:".into()
            })
        );
        assert_eq!(
            "file:/x".parse::<OutputSpec>(),
            Err(OutputSpecError::UnknownForm {
                value: "file:/x".into()
            })
        );
        let msg = "Stdout"
            .parse::<OutputSpec>()
            .expect_err("case")
            .to_string();
        assert!(
            msg.contains("\"Stdout\"") && msg.contains("`stdout`"),
            "{msg}"
        );
    }

    #[test]
    fn output_spec_string_forms_round_trip() {
        for text in [
            "stdout",
            "jsonl:/var/log/ww.jsonl",
            "jsonl:relative/file.jsonl",
            "jsonl:/var/log/ww.jsonl?format=ocsf",
            "stdout?format=ecs",
        ] {
            let spec: OutputSpec = text.parse().expect("valid spec");
            assert_eq!(spec.to_string(), text);
        }
        assert_eq!(
            "jsonl:/a:b".parse::<OutputSpec>(),
            Ok(OutputSpec::jsonl("/a:b"))
        );
    }

    #[test]
    fn outputs_take_a_format() {
        for (text, format) in [
            ("stdout?format=ocsf", Format::Ocsf),
            ("jsonl:/var/log/ww.jsonl?format=ecs", Format::Ecs),
            ("jsonl:/var/log/ww.jsonl?format=native", Format::Native),
            ("jsonl:/var/log/ww.jsonl", Format::Native),
        ] {
            let spec: OutputSpec = text.parse().expect("valid spec");
            assert_eq!(spec.format, format, "{text}");
        }
        // Native is the default and is not written out.
        let spec: OutputSpec = "stdout?format=native".parse().expect("spec");
        assert_eq!(spec.to_string(), "stdout");
        // A `?` with no option after it is part of the path.
        assert_eq!(
            "jsonl:/tmp/what?.jsonl".parse::<OutputSpec>(),
            Ok(OutputSpec::jsonl("/tmp/what?.jsonl"))
        );
        let err = "stdout?format=splunk"
            .parse::<OutputSpec>()
            .expect_err("format");
        assert!(
            err.to_string().contains("unknown format \"splunk\"")
                && err.to_string().contains("native, ocsf and ecs"),
            "{err}"
        );
        let err = "stdout?encoding=ocsf"
            .parse::<OutputSpec>()
            .expect_err("option");
        assert!(
            err.to_string().contains("unknown option \"encoding=ocsf\""),
            "{err}"
        );
        // One file, two encodings: refused by name.
        let msg = parse("[output]\nsinks = [\"jsonl:/tmp/a\", \"jsonl:/tmp/a?format=ocsf\"]\n")
            .expect_err("same file twice")
            .to_string();
        assert!(msg.contains("jsonl:/tmp/a?format=ocsf"), "{msg}");
        // Different files in different encodings are fine.
        let config = parse(
            "[output]\nsinks = [\"jsonl:/tmp/a\", \"jsonl:/tmp/b?format=ocsf\", \"stdout?format=ecs\"]\n",
        )
        .expect("three outputs");
        let formats: Vec<Format> = config.output.sinks.iter().map(|s| s.format).collect();
        assert_eq!(formats, [Format::Native, Format::Ocsf, Format::Ecs]);
    }

    #[test]
    fn empty_and_duplicate_sinks_are_rejected() {
        let msg = parse("[output]\nsinks = []\n")
            .expect_err("no sinks")
            .to_string();
        assert!(msg.contains("output.sinks"), "{msg}");
        let msg = parse("[output]\nsinks = [\"stdout\", \"stdout\"]\n")
            .expect_err("duplicate")
            .to_string();
        assert!(msg.contains("once"), "{msg}");
    }

    #[test]
    fn bad_extensions_are_rejected() {
        let msg = parse("[watch]\nextensions = [\".gguf\"]\n")
            .expect_err("dot")
            .to_string();
        assert!(
            msg.contains("\"gguf\"") && msg.contains("leading dot"),
            "{msg}"
        );
        for bad in ["tar.gz", "", "a b"] {
            let err = parse(&format!("[watch]\nextensions = [{bad:?}]\n")).expect_err("bad ext");
            assert!(err.to_string().contains("watch.extensions"), "{err}");
        }
        assert!(parse("[watch]\nextensions = []\n").is_err());
    }

    #[test]
    fn the_pin_directory_is_on_bpffs_and_a_handover_needs_one() {
        let msg = parse("[kernel]\npin_dir = \"/var/lib/ww\"\n")
            .expect_err("not bpffs")
            .to_string();
        assert!(
            msg.contains("kernel.pin_dir") && msg.contains("/sys/fs/bpf/"),
            "{msg}"
        );
        let msg = parse("[kernel]\npin_dir = \"none\"\nhandover = true\n")
            .expect_err("handover without pins")
            .to_string();
        assert!(
            msg.contains("kernel.handover") && msg.contains("kernel.pin_dir"),
            "{msg}"
        );
        let kernel = parse("[kernel]\nhandover = true\n")
            .expect("default dir")
            .kernel;
        assert_eq!(kernel.pin_dir(false), Some(Path::new(DEFAULT_PIN_DIR)));
        // Agents side by side (tests) pin only where told to.
        assert_eq!(kernel.pin_dir(true), None);
        let kernel = parse("[kernel]\npin_dir = \"/sys/fs/bpf/t\"\n")
            .expect("dir")
            .kernel;
        assert_eq!(kernel.pin_dir(true), Some(Path::new("/sys/fs/bpf/t")));
        let kernel = parse("[kernel]\npin_dir = \"none\"\n")
            .expect("none")
            .kernel;
        assert_eq!(kernel.pin_dir(false), None);
    }

    #[test]
    fn other_invalid_values_are_rejected() {
        let msg = parse("[agent]\nlog_level = \"verbose\"\n")
            .expect_err("level")
            .to_string();
        assert!(msg.contains("error, warn, info, debug, trace"), "{msg}");
        let msg = parse("[agent]\nstate_dir = \"state\"\n")
            .expect_err("relative state_dir")
            .to_string();
        assert!(
            msg.contains("agent.state_dir") && msg.contains("absolute"),
            "{msg}"
        );
        let msg = parse("[agent]\nmetrics = \"localhost:9465\"\n")
            .expect_err("a name, not an address")
            .to_string();
        assert!(
            msg.contains("agent.metrics") && msg.contains("\"none\""),
            "{msg}"
        );
        let metrics = parse("[agent]\nmetrics = \"[::1]:9000\"\n").expect("v6");
        assert_eq!(
            metrics.agent.metrics_addr(),
            Some("[::1]:9000".parse().expect("addr"))
        );
        assert_eq!(
            Config::default().agent.metrics_addr(),
            Some("127.0.0.1:9465".parse().expect("addr"))
        );
        let none = parse("[agent]\nstate_dir = \"none\"\n").expect("none");
        assert_eq!(none.agent.state_dir(), None);
        assert!(parse("[agent]\nhostname = \"\"\n").is_err());
        assert!(parse("[agent]\nhostname = \"a\\nb\"\n").is_err());
        let msg = parse("[gpu]\ndevice_patterns = [\"nvidia*\"]\n")
            .expect_err("relative")
            .to_string();
        assert!(msg.contains("absolute"), "{msg}");
        assert!(parse("[gpu]\ndevice_patterns = []\n").is_ok());
        let msg = parse("[watch]\nroots = []\nhome_caches = false\n")
            .expect_err("nothing to watch")
            .to_string();
        assert!(msg.contains("nothing is watched"), "{msg}");
        assert!(parse("[watch]\nroots = []\n").is_ok());
    }

    #[test]
    fn missing_explicit_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let missing = dir.path().join("nope.toml");
        let default_path = dir.path().join("default.toml");
        std::fs::write(&default_path, "").expect("write default");
        let err = Config::load_from(Some(&missing), &default_path).expect_err("missing file");
        let msg = err.to_string();
        assert!(
            matches!(&err, ConfigError::Read { path, .. } if *path == missing),
            "{msg}"
        );
        assert!(
            msg.contains("nope.toml") && msg.contains("--config"),
            "{msg}"
        );
    }

    #[test]
    fn missing_default_file_gives_defaults() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (config, source) =
            Config::load_from(None, &dir.path().join("absent.toml")).expect("defaults");
        assert_eq!(config, Config::default());
        assert_eq!(source, ConfigSource::Defaults);
    }

    #[test]
    fn existing_default_and_explicit_files_are_read() {
        let dir = tempfile::tempdir().expect("tempdir");
        let default_path = dir.path().join("default.toml");
        std::fs::write(&default_path, "[agent]\nancestors_max = 3\n").expect("write");
        let (config, source) = Config::load_from(None, &default_path).expect("default file");
        assert_eq!(config.agent.ancestors_max, 3);
        assert_eq!(source, ConfigSource::File(default_path.clone()));

        let explicit = dir.path().join("explicit.toml");
        std::fs::write(&explicit, "[agent]\nancestors_max = 5\n").expect("write");
        let (config, source) =
            Config::load_from(Some(&explicit), &default_path).expect("explicit file");
        assert_eq!(config.agent.ancestors_max, 5);
        assert_eq!(source, ConfigSource::File(explicit));
    }

    #[test]
    fn unreadable_default_file_is_an_error_not_defaults() {
        // A directory at the default path exists but cannot be read as a
        // file; only absence may fall back to defaults.
        let dir = tempfile::tempdir().expect("tempdir");
        let err = Config::load_from(None, dir.path()).expect_err("directory");
        assert!(matches!(err, ConfigError::Read { .. }), "{err}");
    }

    #[test]
    fn overrides_replace_and_leave_alone() {
        let mut config = Config::default();
        config.apply(Overrides::default());
        assert_eq!(config, Config::default());

        config.apply(Overrides {
            watch: vec!["/data".into()],
            outputs: vec![OutputSpec::jsonl("/tmp/e.jsonl")],
            ring_buffer_bytes: Some(1 << 20),
            heartbeat_interval_secs: Some(5),
            read_flush_interval_secs: Some(2),
            gpu_device_patterns: vec!["/dev/kfd".into()],
            policy: Some("/etc/ww/policy.toml".into()),
            state_dir: None,
            store: Some("none".into()),
            metrics: Some("none".into()),
        });
        assert_eq!(config.store.settings(), None);
        assert_eq!(config.agent.metrics_addr(), None);
        assert_eq!(config.policy, Some(PathBuf::from("/etc/ww/policy.toml")));
        assert_eq!(config.watch.roots, vec![PathBuf::from("/data")]);
        assert!(!config.watch.home_caches);
        assert_eq!(config.watch.extensions, WatchConfig::default().extensions);
        assert_eq!(config.output.sinks, vec![OutputSpec::jsonl("/tmp/e.jsonl")]);
        assert_eq!(config.kernel.ring_buffer_bytes, 1 << 20);
        assert_eq!(
            config.kernel.pending_max,
            KernelConfig::default().pending_max
        );
        assert_eq!(config.agent.heartbeat_interval_secs, 5);
        assert_eq!(config.kernel.read_flush_interval_secs, 2);
        assert_eq!(config.gpu.device_patterns, vec!["/dev/kfd".to_owned()]);
        assert!(config.validate().is_ok());

        config.apply(Overrides {
            ring_buffer_bytes: Some(1000),
            ..Overrides::default()
        });
        let msg = config.validate().expect_err("bad override").to_string();
        assert!(msg.contains("--ring-buffer-bytes"), "{msg}");
    }

    #[test]
    fn model_path_matching_is_case_insensitive() {
        let watch = WatchConfig::default();
        assert!(watch.is_model_path(Path::new("/m/llama.Q4_K_M.gguf")));
        assert!(watch.is_model_path(Path::new("/m/MODEL.SafeTensors")));
        assert!(!watch.is_model_path(Path::new("/m/config.json")));
        assert!(!watch.is_model_path(Path::new("/m/gguf")));
        assert!(!watch.is_model_path(Path::new("/m/.gguf")));
    }

    #[test]
    fn default_device_patterns_match_gpu_nodes_only() {
        // The watch set matches one component at a time, so `*` never
        // crosses a `/`: the same as a glob with a literal separator.
        let mut set = globset::GlobSetBuilder::new();
        for pattern in GpuConfig::default().device_patterns {
            let glob = globset::GlobBuilder::new(&pattern)
                .literal_separator(true)
                .build()
                .expect("default pattern");
            set.add(glob);
        }
        let set = set.build().expect("glob set");
        let gpu = |dev: &str| set.is_match(dev);
        for dev in [
            "/dev/nvidia0",
            "/dev/nvidiactl",
            "/dev/nvidia-uvm",
            "/dev/dri/renderD128",
            "/dev/kfd",
            "/dev/accel/accel0",
        ] {
            assert!(gpu(dev), "{dev}");
        }
        for dev in [
            "/dev/nvidia-caps/nvidia-cap1",
            "/dev/dri/card0",
            "/dev/accel",
            "/dev/null",
            "/dev/kfd/x",
            "dev/kfd",
        ] {
            assert!(!gpu(dev), "{dev}");
        }
    }

    #[test]
    fn a_device_pattern_that_is_not_a_glob_is_rejected() {
        for pattern in ["/dev/nvidia[0-9", "/dev/{a,dri/b}"] {
            let err =
                parse(&format!("[gpu]\ndevice_patterns = [\"{pattern}\"]\n")).expect_err("glob");
            let msg = err.to_string();
            assert!(msg.contains("gpu.device_patterns"), "{msg}");
            assert!(msg.contains("valid glob"), "{msg}");
        }
    }

    #[test]
    fn expanded_roots_adds_existing_home_caches() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let home = tmp.path().join("home");
        let root = tmp.path().join("root");
        let mkdir = |p: &Path| std::fs::create_dir_all(p).expect("mkdir");
        mkdir(&home.join("alice/.cache/huggingface/hub"));
        mkdir(&home.join("alice/.ollama/models"));
        mkdir(&home.join("bob/.cache/torch"));
        mkdir(&home.join("carol")); // no caches
        mkdir(&home.join(".ecryptfs/.cache/huggingface")); // not a home
        std::fs::write(home.join("notes.txt"), "").expect("file in /home");
        mkdir(&root.join(".cache/huggingface"));

        let mut config = Config::default();
        config.watch.roots = vec!["/models".into(), "/models".into(), "/not/yet".into()];
        let roots = config.expanded_roots(&home, &root);
        let expected: Vec<PathBuf> = vec![
            "/models".into(),
            "/not/yet".into(),
            home.join("alice/.cache/huggingface"),
            home.join("alice/.ollama/models"),
            home.join("bob/.cache/torch"),
            root.join(".cache/huggingface"),
        ];
        assert_eq!(roots, expected);

        config.watch.home_caches = false;
        assert_eq!(
            config.expanded_roots(&home, &root),
            vec![PathBuf::from("/models"), PathBuf::from("/not/yet")]
        );

        config.watch.home_caches = true;
        let absent = tmp.path().join("absent");
        assert_eq!(config.expanded_roots(&absent, &absent).len(), 2);
    }

    #[test]
    fn config_source_describes_itself() {
        assert_eq!(
            ConfigSource::File("/x.toml".into()).to_string(),
            "config file /x.toml"
        );
        assert!(
            ConfigSource::Defaults
                .to_string()
                .contains("built-in defaults")
        );
    }

    #[test]
    fn intervals_are_bounded() {
        let mut config = Config::default();
        config.apply(Overrides {
            heartbeat_interval_secs: Some(u64::MAX),
            ..Overrides::default()
        });
        let err = config.validate().expect_err("too long");
        assert!(
            err.to_string().contains("agent.heartbeat_interval_secs"),
            "{err}"
        );
        assert!(err.to_string().contains("at most 604800"), "{err}");
    }
}
