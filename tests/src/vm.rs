//! A QEMU virtual machine for tests of kernel features the host's kernel
//! refuses (BPF LSM, fentry) or that need another kernel: boots a kernel
//! with an initramfs built from host files, runs a shell script as the test
//! body, and hands back its exit status and what it printed.
//!
//! ```no_run
//! use std::time::Duration;
//!
//! let vm = tests::vm::Vm::find().expect("QEMU and a kernel");
//! let mut image = vm.image();
//! image
//!     .add_executable_at("/usr/local/bin/weightwarden", tests::binary())
//!     .script("set -e\nweightwarden doctor --json > /tmp/doctor.json\nww-emit doctor /tmp/doctor.json\n");
//! let run = vm.run(&image, Duration::from_secs(60)).expect("the VM ran");
//! run.assert_success();
//! let report = run.expect_section("doctor");
//! ```
//!
//! How it works: the image is an uncompressed `newc` cpio written by
//! [`Image`] (busybox and its applet links, the generated `/init`, the
//! script, host executables with the shared libraries `ldd` lists); QEMU
//! boots the kernel with it under TCG (software emulation: KVM is not
//! usable on the machines this project runs on, and TCG behaves the same
//! everywhere), with no network and the serial console as the only
//! channel. `/init` mounts proc, sysfs, devtmpfs, securityfs, tracefs,
//! debugfs, bpffs and cgroup v2, runs the script, prints its exit status as
//! a marker line and powers off. Files and command output come back as
//! marker-delimited sections (`ww-emit NAME FILE` in the script,
//! [`VmRun::section`] on the host); see `vm/console.rs` for the markers.
//!
//! Timing on this project's 2-core machines (TCG, Debian's 6.1 cloud
//! kernel): a run with a small image (busybox only) takes 1.8 s of QEMU
//! wall time, `/init` starting 1.3 to 1.5 s after boot; with the 100 MB
//! debug `weightwarden` binary in the image `/init` starts at 1.7 to 2.8 s,
//! `weightwarden doctor` makes the run 8.5 s and a short `weightwarden run`
//! 6.7 s. Writing the image takes 0.1 s; compressing it does not pay:
//! `gzip -1` takes the host 1.1 s for that image (104 MB to 34 MB) and
//! the guest, unpacking it, reaches `/init` 0.8 s later than with raw
//! bytes.
//!
//! The kernel is a parameter ([`Vm::with_kernel`]): by default Debian's
//! cloud kernel that `cargo xtask setup` fetches into `<target>/vm/vmlinuz`
//! (6.1, with BPF LSM, BTF, fentry and kprobes), or `$WEIGHTWARDEN_VM_KERNEL`.
//! A test that finds no QEMU or no kernel skips with the reason
//! ([`crate::feature::VM`]), which under `CI=true` fails it.

#![warn(clippy::unwrap_used)]

mod agent;
mod console;
mod cpio;
mod image;

pub use agent::{GUEST_BINARY, agent_records, agent_records_warning, agent_script};

use std::{
    fmt, fs, io,
    path::{Path, PathBuf},
    process::{Child, Command, ExitStatus, Stdio},
    thread::sleep,
    time::{Duration, Instant},
};

pub use image::{Image, MOUNTS};

/// The env var naming the kernel image to boot instead of the one `cargo
/// xtask setup` fetched.
pub const KERNEL_ENV: &str = "WEIGHTWARDEN_VM_KERNEL";

/// The env var naming the QEMU binary (default: `qemu-system-x86_64` on
/// `PATH`).
pub const QEMU_ENV: &str = "WEIGHTWARDEN_VM_QEMU";

/// The env var that, set to `1`, keeps each run's folder (the initramfs,
/// the console log, QEMU's stderr) and prints where it is.
pub const KEEP_ENV: &str = "WEIGHTWARDEN_VM_KEEP";

/// Where `cargo xtask setup` puts the kernel, under the target dir
/// (`xtask/src/vm_kernel.rs` writes it).
const FETCHED_KERNEL: &str = "vm/vmlinuz";

/// What the kernel is booted with. `console=ttyS0` is the one channel back
/// to the host; `panic=-1` reboots at once on a panic, which QEMU's
/// `-no-reboot` turns into an exit; `lsm=` puts `bpf` in the LSM list
/// (Debian's default list has it too, this makes it explicit for any
/// kernel); `quiet` keeps all but errors off the console.
const KERNEL_ARGS: &[&str] = &[
    "console=ttyS0",
    "panic=-1",
    "lsm=lockdown,capability,bpf",
    "quiet",
];

/// How many console lines an error shows.
const TAIL_LINES: usize = 40;

/// Why no VM can run here: no QEMU, no kernel, no busybox, or not an
/// x86-64 host. Tests skip with it ([`crate::feature::VM`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unavailable(String);

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Unavailable {}

/// Why a run failed. Its `Debug` is its `Display`, so a test's
/// `.expect(..)` prints the console tail readably.
#[derive(thiserror::Error)]
pub enum VmError {
    #[error("{what} {}: {source}", path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("`{command}` failed: {message}")]
    Tool { command: String, message: String },
    #[error("cannot start {}: {source}", qemu.display())]
    Spawn { qemu: PathBuf, source: io::Error },
    #[error(
        "the VM did not finish within {timeout:?}, so QEMU was killed\n\
         --- last console lines ---\n{tail}"
    )]
    Timeout { timeout: Duration, tail: String },
    #[error(
        "the guest stopped without reporting the test script's exit status (a kernel \
         panic, or /init died); QEMU exited with {status}\n\
         --- QEMU stderr ---\n{stderr}\n--- last console lines ---\n{tail}"
    )]
    NoExitStatus {
        status: ExitStatus,
        stderr: String,
        tail: String,
    },
}

impl VmError {
    fn io(what: &'static str, path: &Path, source: io::Error) -> Self {
        Self::Io {
            what,
            path: path.to_owned(),
            source,
        }
    }
}

impl fmt::Debug for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A virtual machine configuration: QEMU, a kernel, memory, CPUs and the
/// kernel's command line. Each [`Vm::run`] boots a fresh VM.
#[derive(Debug, Clone)]
pub struct Vm {
    qemu: PathBuf,
    kernel: PathBuf,
    busybox: PathBuf,
    memory_mib: u32,
    cpus: u32,
    kernel_args: Vec<String>,
}

impl Vm {
    /// QEMU with the default kernel ([`Vm::default_kernel`]).
    pub fn find() -> Result<Self, Unavailable> {
        Self::with_kernel(Self::default_kernel()?)
    }

    /// QEMU with the kernel image at `kernel` (a bzImage: the kernel must
    /// have its serial console, initramfs support and whatever the test
    /// needs built in, since the image holds no modules). For kernel
    /// matrix tests, one `Vm` per kernel.
    pub fn with_kernel(kernel: impl Into<PathBuf>) -> Result<Self, Unavailable> {
        if !cfg!(target_arch = "x86_64") {
            return Err(Unavailable(
                "the VM runs host executables in an x86-64 guest: this host is not x86-64".into(),
            ));
        }
        let kernel = kernel.into();
        if !kernel.is_file() {
            return Err(Unavailable(format!(
                "no kernel image at {}: `cargo xtask setup` fetches one there, or set \
                 {KERNEL_ENV} to one",
                kernel.display()
            )));
        }
        let qemu = match std::env::var_os(QEMU_ENV) {
            Some(qemu) => PathBuf::from(qemu),
            None => which::which("qemu-system-x86_64").map_err(|_| {
                Unavailable(
                    "qemu-system-x86_64 is not on PATH: `cargo xtask setup` installs it \
                     (Debian package qemu-system-x86), or set WEIGHTWARDEN_VM_QEMU"
                        .into(),
                )
            })?,
        };
        check_runs(&qemu)?;
        let busybox = which::which("busybox").map_err(|_| {
            Unavailable(
                "busybox is not on PATH: `cargo xtask setup` installs it (Debian package \
                 busybox-static)"
                    .into(),
            )
        })?;
        Ok(Self {
            qemu,
            kernel,
            busybox,
            memory_mib: 1024,
            cpus: 2,
            kernel_args: KERNEL_ARGS.iter().map(|&arg| arg.to_owned()).collect(),
        })
    }

    /// `$WEIGHTWARDEN_VM_KERNEL`, else `<target>/vm/vmlinuz` (where `cargo
    /// xtask setup` puts Debian's cloud kernel) for the target dir this
    /// test binary was built in.
    pub fn default_kernel() -> Result<PathBuf, Unavailable> {
        if let Some(kernel) = std::env::var_os(KERNEL_ENV) {
            return Ok(PathBuf::from(kernel));
        }
        // <target>/<profile>/deps/<test binary>
        let exe = std::env::current_exe()
            .map_err(|e| Unavailable(format!("cannot find this test binary: {e}")))?;
        let target = exe.ancestors().nth(3).ok_or_else(|| {
            Unavailable(format!(
                "cannot tell the target dir from {}: set {KERNEL_ENV}",
                exe.display()
            ))
        })?;
        Ok(target.join(FETCHED_KERNEL))
    }

    /// The guest's memory (default 1024 MiB; the initramfs, unpacked, lives
    /// in it twice over while the kernel unpacks it).
    #[must_use]
    pub fn memory_mib(mut self, mib: u32) -> Self {
        self.memory_mib = mib;
        self
    }

    /// The guest's CPUs (default 2).
    #[must_use]
    pub fn cpus(mut self, cpus: u32) -> Self {
        self.cpus = cpus;
        self
    }

    /// Appends a kernel command-line argument; for most parameters (`lsm=`
    /// among them) the last one given wins over the defaults.
    #[must_use]
    pub fn kernel_arg(mut self, arg: impl Into<String>) -> Self {
        self.kernel_args.push(arg.into());
        self
    }

    pub fn kernel(&self) -> &Path {
        &self.kernel
    }

    /// An image with this VM's busybox, to add to and run.
    pub fn image(&self) -> Image {
        Image::new(&self.busybox)
    }

    /// Boots the kernel with `image`, waits for the guest to power off, and
    /// returns what the script reported. `timeout` counts from QEMU's start
    /// (boot included); past it QEMU is killed and the error holds the
    /// console's last lines. A non-zero exit status is a result, not an
    /// error: check it ([`VmRun::assert_success`]).
    pub fn run(&self, image: &Image, timeout: Duration) -> Result<VmRun, VmError> {
        let started = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("ww-vm-")
            .tempdir()
            .map_err(|e| VmError::io("cannot create", &std::env::temp_dir(), e))?;
        let initrd = dir.path().join("initrd.cpio");
        let image_bytes = image.write(&initrd)?;
        let image_time = started.elapsed();

        let console_path = dir.path().join("console.log");
        let stderr_path = dir.path().join("qemu-stderr.log");
        let create =
            |path: &Path| fs::File::create(path).map_err(|e| VmError::io("cannot create", path, e));
        let mut command = self.command(&initrd);
        command
            .stdin(Stdio::null())
            .stdout(create(&console_path)?)
            .stderr(create(&stderr_path)?);
        let boot_started = Instant::now();
        let child = command.spawn().map_err(|source| VmError::Spawn {
            qemu: self.qemu.clone(),
            source,
        })?;
        let mut qemu = KillOnDrop(child);
        let status = qemu.wait_until(boot_started + timeout);
        let run_time = boot_started.elapsed();

        let raw =
            fs::read(&console_path).map_err(|e| VmError::io("cannot read", &console_path, e))?;
        let console = console::clean(&raw);
        if std::env::var_os(KEEP_ENV).is_some_and(|v| v == "1") {
            eprintln!("vm: kept {}", dir.keep().display());
        }
        let status = match status {
            Ok(status) => status,
            Err(()) => {
                return Err(VmError::Timeout {
                    timeout,
                    tail: console::tail(&console, TAIL_LINES),
                });
            }
        };
        let Some(exit_status) = console::exit_status(&console) else {
            return Err(VmError::NoExitStatus {
                status,
                stderr: fs::read_to_string(&stderr_path).unwrap_or_default(),
                tail: console::tail(&console, TAIL_LINES),
            });
        };
        let run = VmRun {
            exit_status,
            sections: console::sections(&console),
            warnings: console::warnings(&console),
            boot_time: console::boot_time(&console),
            console,
            run_time,
            image_bytes,
            image_time,
        };
        eprintln!("vm: {} ({})", run.summary(), self.kernel.display());
        Ok(run)
    }

    fn command(&self, initrd: &Path) -> Command {
        let mut command = Command::new(&self.qemu);
        command
            .args(["-accel", "tcg", "-cpu", "max"])
            .args(["-m", &self.memory_mib.to_string()])
            .args(["-smp", &self.cpus.to_string()])
            // No network, no default devices, no display: the serial
            // console on stdout is the only way out.
            .args(["-nodefaults", "-no-user-config", "-nic", "none"])
            .args(["-display", "none", "-monitor", "none", "-serial", "stdio"])
            .arg("-no-reboot")
            .arg("-kernel")
            .arg(&self.kernel)
            .arg("-initrd")
            .arg(initrd)
            .arg("-append")
            .arg(self.kernel_args.join(" "));
        command
    }
}

/// Whether `qemu --version` works.
fn check_runs(qemu: &Path) -> Result<(), Unavailable> {
    let out = Command::new(qemu)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| Unavailable(format!("cannot run {}: {e}", qemu.display())))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Unavailable(format!(
            "`{} --version` failed ({}): {}",
            qemu.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// QEMU, killed if the run ends early (an error, a panic).
struct KillOnDrop(Child);

impl KillOnDrop {
    /// Its exit status, or Err after killing it at `deadline`.
    fn wait_until(&mut self, deadline: Instant) -> Result<ExitStatus, ()> {
        loop {
            match self.0.try_wait() {
                Ok(Some(status)) => return Ok(status),
                Ok(None) if Instant::now() < deadline => sleep(Duration::from_millis(20)),
                // Out of time, or it cannot be waited for: either way it
                // is stopped here.
                Ok(None) | Err(_) => {
                    self.stop();
                    return Err(());
                }
            }
        }
    }

    fn stop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// What one boot reported.
#[derive(Debug, Clone)]
pub struct VmRun {
    exit_status: i32,
    console: String,
    sections: Vec<(String, String)>,
    warnings: Vec<String>,
    boot_time: Option<Duration>,
    run_time: Duration,
    image_bytes: u64,
    image_time: Duration,
}

impl VmRun {
    /// The test script's exit status.
    pub fn exit_status(&self) -> i32 {
        self.exit_status
    }

    pub fn success(&self) -> bool {
        self.exit_status == 0
    }

    /// The whole serial console, cleaned of escape sequences and carriage
    /// returns: firmware lines, kernel errors, the script's output, the
    /// markers.
    pub fn console(&self) -> &str {
        &self.console
    }

    /// The text of the first section `name` the script printed with
    /// `ww-emit` (carriage returns the tty added are gone; the text is
    /// otherwise as printed).
    pub fn section(&self, name: &str) -> Option<&str> {
        self.sections
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, text)| text.as_str())
    }

    /// Every section, in the order printed: `(name, text)`.
    pub fn sections(&self) -> &[(String, String)] {
        &self.sections
    }

    /// What `/init` could not set up (a mount that failed), one line each.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// How long after boot `/init` started (the guest's uptime then).
    pub fn boot_time(&self) -> Option<Duration> {
        self.boot_time
    }

    /// QEMU's wall time: boot, script, power-off.
    pub fn run_time(&self) -> Duration {
        self.run_time
    }

    /// The initramfs's size and how long writing it took.
    pub fn image(&self) -> (u64, Duration) {
        (self.image_bytes, self.image_time)
    }

    /// One line: status and times.
    pub fn summary(&self) -> String {
        let boot = self
            .boot_time
            .map_or_else(|| "?".to_owned(), |t| format!("{:.1} s", t.as_secs_f64()));
        format!(
            "script exited {} after {:.1} s in QEMU (/init at {boot}; initramfs {} MB written in {:.1} s)",
            self.exit_status,
            self.run_time.as_secs_f64(),
            self.image_bytes / 1_000_000,
            self.image_time.as_secs_f64()
        )
    }

    /// Panics with the console's tail unless the script exited 0.
    #[track_caller]
    pub fn assert_success(&self) -> &Self {
        if !self.success() {
            self.fail(&format!(
                "the guest script exited with status {}",
                self.exit_status
            ));
        }
        self
    }

    /// The section `name`; panics with the console's tail without it.
    #[track_caller]
    pub fn expect_section(&self, name: &str) -> &str {
        match self.section(name) {
            Some(text) => text,
            None => self.fail(&format!("the guest printed no section {name:?}")),
        }
    }

    /// Panics with `message`, the summary and the console's last lines.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        panic!(
            "{message} ({})\n--- last console lines ---\n{}",
            self.summary(),
            console::tail(&self.console, TAIL_LINES)
        )
    }
}

/// `let vm = tests::vm_or_skip!();`: [`Vm::find`], or skip the test (with
/// [`crate::skip!`], feature [`crate::feature::VM`]) when no VM can run.
#[macro_export]
macro_rules! vm_or_skip {
    () => {
        match $crate::vm::Vm::find() {
            Ok(vm) => vm,
            Err(why) => $crate::skip!($crate::feature::VM, "{why}"),
        }
    };
}
