//! `cargo xtask setup`: brings a machine of the project's kind (Debian 12,
//! rustup with a stable default and a preinstalled `nightly`, package
//! registries only) to the point where the sensor builds and its tests run.
//! Each step checks before it acts, so a second run only probes and prints
//! one "already ..." line per step.

use std::{
    collections::HashSet,
    env,
    fmt::Display,
    fs,
    os::unix::fs::symlink,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};
use nix::mount::MsFlags;

use crate::{process, vm_kernel, workspace::Workspace};

/// The toolchain aya-build compiles the eBPF crate with (`rustup run
/// nightly`); this machine kind cannot download one, so it must already be
/// installed.
const NIGHTLY: &str = "nightly";

/// Pinned so that a new release (which may need a newer rustc or LLVM than
/// the machine has) cannot break a fresh machine's setup. 0.13.0 has the
/// `llvm-21`, `llvm-22` and `llvm-23` features.
const BPF_LINKER_VERSION: &str = "0.13.0";

/// What the test suite needs from Debian: gcc (Rust's linker driver, and
/// with libc6-dev the compiler of small test programs), python3, the
/// everyday programs the integration tests run as workloads, and for the VM
/// tests (`tests/src/vm.rs`) QEMU, a static busybox for the guest's
/// userland and cpio (the harness writes its initramfs itself; its unit
/// tests read one back with cpio); btrfs-progs and xfsprogs for the tests
/// on loop-mounted btrfs (whose identities differ from `stat()`'s) and xfs
/// (reflinks); fio for the asynchronous I/O tests (`--ioengine=io_uring`
/// and `libaio`); sqlite3 for the audit store's tamper tests.
const PACKAGES: &[&str] = &[
    "python3",
    "gcc",
    "libc6-dev",
    "tar",
    "coreutils",
    "util-linux",
    "qemu-system-x86",
    "busybox-static",
    "cpio",
    "btrfs-progs",
    "xfsprogs",
    // Transfer tools the detection tests drive.
    "curl",
    "zip",
    "zstd",
    "fio",
    // The file system matrix (tests/tests/filesystems.rs): squashfs images,
    // a FUSE file system, debugfs for a corrupt directory.
    "squashfs-tools",
    "bindfs",
    "e2fsprogs",
    // The audit store's tamper tests edit its database as an attacker
    // would (tests/tests/store.rs).
    "sqlite3",
    // The syslog outputs' tests run a real rsyslog with TCP, TLS (its
    // OpenSSL driver) and unix inputs, and make their certificates with
    // openssl (tests/tests/syslog.rs).
    "rsyslog",
    "rsyslog-openssl",
    "openssl",
    // The validators' virtual environment (ensure_validators below).
    "python3-venv",
    // `systemd-analyze verify` for the service unit (tests/tests/deploy.rs).
    "systemd",
];

/// The validators the tests check against, pinned; PyPI is a package
/// registry these machines reach: the OCSF models the encodings test
/// validates records against (tests/tests/encodings.rs; `ocsf-pydantic`
/// needs the next three beside it), and the Kubernetes schemas the
/// DaemonSet manifest is validated against (tests/tests/deploy.rs).
const VALIDATORS: &[&str] = &[
    "ocsf-pydantic==0.0.6",
    "pydantic==2.14.4",
    "pydantic-extra-types==2.11.1",
    "email-validator",
    "kubernetes-validate==1.37.0",
];

/// Where the validators' environment lives: the integration tests'
/// `CARGO_TARGET_TMPDIR`, under the target directory.
pub fn validators_venv(target: &std::path::Path) -> std::path::PathBuf {
    target.join("tmp").join("validators-venv")
}

/// A pseudo-filesystem the sensor needs mounted.
struct FsMount {
    /// The filesystem type given to mount(2).
    fstype: &'static str,
    /// How people call it, for messages.
    name: &'static str,
    target: &'static str,
}

/// bpffs for pinning maps and links, tracefs for tracepoint ids, securityfs
/// for the active LSM list (feature detection).
const MOUNTS: &[FsMount] = &[
    FsMount {
        fstype: "bpf",
        name: "bpffs",
        target: "/sys/fs/bpf",
    },
    FsMount {
        fstype: "tracefs",
        name: "tracefs",
        target: "/sys/kernel/tracing",
    },
    FsMount {
        fstype: "securityfs",
        name: "securityfs",
        target: "/sys/kernel/security",
    },
];

pub fn execute(ws: &Workspace) -> Result<()> {
    let root = process::is_root();
    let nightly = check_nightly()?;
    ensure_rust_src()?;
    ensure_lint_tools()?;
    // Before bpf-linker: building it (and anything else) needs gcc as the
    // linker driver.
    ensure_packages(root)?;
    // After the packages: their install ran `apt-get update` if anything
    // was missing, so a fresh machine has package lists by now.
    vm_kernel::ensure(&ws.target_dir()?, root)?;
    ensure_validators(&ws.target_dir()?)?;
    ensure_bpf_linker(ws, &nightly)?;
    ensure_mounts(root)?;
    if !root {
        step(
            "not root",
            "mounts and Debian packages were checked but not changed (both need root); \
             building works without them, running the sensor and the integration tests does not",
        );
    }
    Ok(())
}

/// What building the sensor needs, and nothing for testing or running it:
/// the nightly's rust-src, gcc as the linker driver, bpf-linker.
pub fn build_only(ws: &Workspace) -> Result<()> {
    let nightly = check_nightly()?;
    ensure_rust_src()?;
    if which::which("cc").is_err() {
        bail!("no C compiler (cc): install gcc (Debian: `apt-get install gcc libc6-dev`)");
    }
    ensure_bpf_linker(ws, &nightly)
}

/// A Python environment with the validators, for the encodings and
/// deployment tests.
fn ensure_validators(target: &std::path::Path) -> Result<()> {
    const WHAT: &str = "validators (OCSF, Kubernetes)";
    let venv = validators_venv(target);
    let python = venv.join("bin/python");
    let ready = || {
        process::output(Command::new(&python).args([
            "-c",
            "import ocsf.events.system.filesystem, kubernetes_validate",
        ]))
        .is_ok_and(|out| out.status.success())
    };
    if ready() {
        step(WHAT, format!("present ({})", venv.display()));
        return Ok(());
    }
    step(WHAT, format!("creating {}...", venv.display()));
    process::run(
        Command::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&venv),
    )
    .context(
        "cannot create the validators' Python environment (Debian's python3-venv is needed)",
    )?;
    process::run(
        Command::new(venv.join("bin/pip"))
            .args(["install", "--quiet", "--disable-pip-version-check"])
            .args(VALIDATORS),
    )
    .context("cannot install the validators from PyPI (the registry must be reachable)")?;
    if !ready() {
        bail!(
            "the validators were installed in {} but do not import",
            venv.display()
        );
    }
    step(WHAT, format!("installed {}", VALIDATORS.join(" ")));
    Ok(())
}

/// Prints one set-up step's outcome: `WHAT: OUTCOME`.
pub(crate) fn step(what: &str, outcome: impl Display) {
    eprintln!("{what}: {outcome}");
}

/// What `rustc +nightly -vV` says about the nightly toolchain.
struct Nightly {
    release: String,
    llvm_version: String,
}

impl Nightly {
    fn llvm_major(&self) -> Result<u32> {
        llvm_major(&self.llvm_version)
    }
}

fn check_nightly() -> Result<Nightly> {
    const WHAT: &str = "nightly toolchain";
    let list = process::stdout(Command::new("rustup").args(["toolchain", "list"])).context(
        "cannot list the installed toolchains: rustup is needed to build the eBPF programs",
    )?;
    if !has_nightly(&list) {
        bail!(
            "the `{NIGHTLY}` toolchain is missing (`rustup toolchain list` does not list it): \
             the eBPF programs build with it and it cannot be downloaded on this machine; \
             install it where static.rust-lang.org is reachable with \
             `rustup toolchain install {NIGHTLY} --profile minimal`"
        );
    }
    let verbose = process::stdout(Command::new("rustc").args([&format!("+{NIGHTLY}"), "-vV"]))?;
    let nightly = parse_rustc_verbose(&verbose)?;
    step(
        WHAT,
        format!(
            "found (rustc {}, LLVM {})",
            nightly.release, nightly.llvm_version
        ),
    );
    Ok(nightly)
}

/// Whether `rustup toolchain list` shows the `nightly` channel itself (a
/// dated `nightly-2026-05-19-...` is not what `rustup run nightly` uses).
fn has_nightly(list: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| {
            name == NIGHTLY
                || name
                    .strip_prefix(NIGHTLY)
                    .and_then(|rest| rest.strip_prefix('-'))
                    .is_some_and(|host| !host.starts_with(|c: char| c.is_ascii_digit()))
        })
}

fn parse_rustc_verbose(verbose: &str) -> Result<Nightly> {
    let field = |key: &str| {
        verbose
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .map(|value| value.trim().to_owned())
            .with_context(|| format!("`rustc +{NIGHTLY} -vV` printed no `{key}` line:\n{verbose}"))
    };
    Ok(Nightly {
        release: field("release:")?,
        llvm_version: field("LLVM version:")?,
    })
}

fn llvm_major(version: &str) -> Result<u32> {
    version
        .split('.')
        .next()
        .and_then(|major| major.parse().ok())
        .with_context(|| format!("cannot read the LLVM major version from {version:?}"))
}

fn ensure_rust_src() -> Result<()> {
    const WHAT: &str = "rust-src (nightly)";
    let installed = || -> Result<bool> {
        let list = process::stdout(Command::new("rustup").args([
            "component",
            "list",
            "--installed",
            "--toolchain",
            NIGHTLY,
        ]))?;
        Ok(lists_component(&list, "rust-src"))
    };
    if installed()? {
        step(WHAT, "already installed");
        return Ok(());
    }
    step(WHAT, "installing (needed by -Z build-std=core)...");
    process::run(Command::new("rustup").args([
        "component",
        "add",
        "rust-src",
        "--toolchain",
        NIGHTLY,
    ]))
    .context(
        "cannot install rust-src for the nightly toolchain: rustup downloads it from \
         static.rust-lang.org, which must be reachable",
    )?;
    if !installed()? {
        bail!("rustup reported success but rust-src is still not listed for the nightly toolchain");
    }
    step(WHAT, "installed");
    Ok(())
}

/// rustfmt and clippy for the toolchain xtask runs with: `cargo xtask test`
/// needs both, and a toolchain installed with rustup's minimal profile has
/// neither.
fn ensure_lint_tools() -> Result<()> {
    const WHAT: &str = "rustfmt, clippy";
    const TOOLS: [&str; 2] = ["rustfmt", "clippy"];
    let missing = || -> Result<Vec<&'static str>> {
        let list =
            process::stdout(Command::new("rustup").args(["component", "list", "--installed"]))?;
        Ok(TOOLS
            .into_iter()
            .filter(|tool| !lists_host_component(&list, tool))
            .collect())
    };
    let absent = missing()?;
    if absent.is_empty() {
        step(WHAT, "already installed");
        return Ok(());
    }
    step(WHAT, format!("installing {}...", absent.join(", ")));
    process::run(
        Command::new("rustup")
            .args(["component", "add"])
            .args(&absent),
    )
    .context(
        "cannot install rustfmt/clippy: rustup downloads them from static.rust-lang.org, \
         which must be reachable",
    )?;
    let still = missing()?;
    if !still.is_empty() {
        bail!(
            "rustup reported success but {} is still not installed",
            still.join(", ")
        );
    }
    step(WHAT, "installed");
    Ok(())
}

/// Whether `rustup component list --installed` lists a host component
/// (`clippy-x86_64-unknown-linux-gnu` for `clippy`).
fn lists_host_component(list: &str, component: &str) -> bool {
    let prefix = format!("{component}-");
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name.starts_with(&prefix))
}

/// Whether `rustup component list --installed` lists `component` by its
/// exact name (true of rust-src, which is not tied to a target).
fn lists_component(list: &str, component: &str) -> bool {
    list.lines()
        .filter_map(|line| line.split_whitespace().next())
        .any(|name| name == component)
}

fn ensure_packages(root: bool) -> Result<()> {
    const WHAT: &str = "Debian packages";
    let wanted = PACKAGES.join(", ");
    if which::which("dpkg-query").is_err() {
        step(
            WHAT,
            format!(
                "skipped: no dpkg-query (not a Debian-based system); install {wanted} \
                 or your distribution's equivalents yourself"
            ),
        );
        return Ok(());
    }
    let missing = missing_packages()?;
    if missing.is_empty() {
        step(WHAT, format!("already installed ({wanted})"));
        return Ok(());
    }
    let missing_list = missing.join(" ");
    if !root {
        step(
            WHAT,
            format!(
                "skipped (not root: apt-get needs root): {missing_list} missing; \
                 install with `apt-get install {missing_list}`"
            ),
        );
        return Ok(());
    }
    step(WHAT, format!("installing {missing_list}..."));
    // Only now: a fresh machine's package lists may be empty, and updating
    // them costs seconds a machine that has everything need not pay.
    process::run(Command::new("apt-get").arg("update"))
        .context("cannot update the Debian package lists: the Debian mirror must be reachable")?;
    process::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends"])
            .args(&missing),
    )
    .with_context(|| {
        format!("cannot install the Debian packages {missing_list}: see apt-get's output above")
    })?;
    let still_missing = missing_packages()?;
    if !still_missing.is_empty() {
        bail!(
            "apt-get reported success but {} are still not installed",
            still_missing.join(" ")
        );
    }
    step(WHAT, format!("installed {missing_list}"));
    Ok(())
}

fn missing_packages() -> Result<Vec<&'static str>> {
    // dpkg-query exits 1 when it knows nothing about one of the packages:
    // that is part of the answer, not a failure, so its status is ignored.
    let out = process::output(
        Command::new("dpkg-query")
            .args(["-W", "-f=${Package} ${Status}\\n"])
            .args(PACKAGES),
    )?;
    Ok(missing_from_status(
        &String::from_utf8_lossy(&out.stdout),
        PACKAGES,
    ))
}

/// The packages of `wanted` that `dpkg-query -W -f='${Package} ${Status}\n'`
/// does not report as installed ("install ok installed", "hold ok
/// installed"; "deinstall ok config-files" is not).
fn missing_from_status(status: &str, wanted: &[&'static str]) -> Vec<&'static str> {
    let installed: HashSet<&str> = status
        .lines()
        .filter_map(|line| {
            let (name, state) = line.split_once(' ')?;
            (state.split_whitespace().last() == Some("installed")).then_some(name)
        })
        .collect();
    wanted
        .iter()
        .copied()
        .filter(|package| !installed.contains(package))
        .collect()
}

/// Whether a bpf-linker binary can run.
enum Health {
    Works { version: String },
    Broken { why: String },
}

fn linker_health(path: &Path) -> Result<Health> {
    let out = process::output(Command::new(path).arg("--version"))?;
    if !out.status.success() {
        return Ok(Health::Broken {
            why: format!(
                "`{} --version` failed ({}): {}",
                path.display(),
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ),
        });
    }
    let version = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let ldd = process::output(Command::new("ldd").arg(path))?;
    let unresolved: Vec<String> = String::from_utf8_lossy(&ldd.stdout)
        .lines()
        .filter(|line| line.contains("not found"))
        .map(|line| line.trim().to_owned())
        .collect();
    if !unresolved.is_empty() {
        return Ok(Health::Broken {
            why: format!("unresolved shared libraries: {}", unresolved.join("; ")),
        });
    }
    Ok(Health::Works { version })
}

fn ensure_bpf_linker(ws: &Workspace, nightly: &Nightly) -> Result<()> {
    const WHAT: &str = "bpf-linker";
    let bin_dir = install_root()?.join("bin");
    let installed = bin_dir.join("bpf-linker");
    match which::which("bpf-linker").ok() {
        Some(path) => match linker_health(&path)? {
            Health::Works { version } => {
                step(
                    WHAT,
                    format!("already installed ({version}, {})", path.display()),
                );
                return Ok(());
            }
            Health::Broken { why } => {
                step(WHAT, format!("{} is unusable ({why})", path.display()));
            }
        },
        // Rebuilding would not help: the new copy would land in the same
        // folder, still off PATH.
        None if matches!(linker_health(&installed), Ok(Health::Works { .. })) => {
            bail!(
                "bpf-linker is installed at {} but that folder is not on PATH, where the eBPF \
                 build looks for it: `export PATH=\"{}:$PATH\"`",
                installed.display(),
                bin_dir.display()
            );
        }
        None => {}
    }

    // No prebuilt bpf-linker can be downloaded here, and Debian's LLVM is a
    // different build from the one rustc emits bitcode with: linking against
    // the nightly's own libLLVM keeps the two in step by construction.
    let major = nightly.llvm_major()?;
    let sysroot = PathBuf::from(
        process::stdout(Command::new("rustc").args([
            &format!("+{NIGHTLY}"),
            "--print",
            "sysroot",
        ]))?
        .trim(),
    );
    let sysroot_lib = sysroot.join("lib");
    let libllvm = find_libllvm(&sysroot_lib, major)?;
    let prefix = ws.target_dir()?.join("xtask").join("llvm-prefix");
    link_llvm_prefix(&prefix, &libllvm)?;

    step(
        WHAT,
        format!(
            "building {BPF_LINKER_VERSION} against the nightly's LLVM {} (about 75 s)...",
            nightly.llvm_version
        ),
    );
    let feature = format!("llvm-{major}");
    let mut install = ws.cargo();
    install
        .args([
            "install",
            "bpf-linker",
            "--version",
            BPF_LINKER_VERSION,
            "--locked",
            // A broken copy is still recorded as installed: without --force
            // cargo would keep it.
            "--force",
            "--no-default-features",
            "--features",
            &feature,
        ])
        .env("LLVM_PREFIX", &prefix)
        // The rpath lets bpf-linker find libLLVM without LD_LIBRARY_PATH.
        .env(
            "RUSTFLAGS",
            format!("-C link-arg=-Wl,-rpath,{}", sysroot_lib.display()),
        )
        // It would take precedence over RUSTFLAGS.
        .env_remove("CARGO_ENCODED_RUSTFLAGS");
    process::run(&mut install).with_context(|| {
        format!(
            "cannot build bpf-linker against the nightly toolchain's LLVM; another way is \
             Debian's LLVM: `apt-get install llvm-{major}-dev` then \
             `LLVM_PREFIX=/usr/lib/llvm-{major} cargo install bpf-linker --locked \
             --no-default-features --features llvm-{major}`"
        )
    })?;

    let version = match linker_health(&installed)? {
        Health::Works { version } => version,
        Health::Broken { why } => bail!("the bpf-linker just built does not work: {why}"),
    };
    match which::which("bpf-linker").ok() {
        Some(found) if found == installed => {}
        Some(found) => bail!(
            "bpf-linker was installed to {} but {} comes first on PATH: remove it or put {} \
             first on PATH",
            installed.display(),
            found.display(),
            bin_dir.display()
        ),
        None => bail!(
            "bpf-linker was installed to {} which is not on PATH: \
             `export PATH=\"{}:$PATH\"` (the eBPF build runs it from PATH)",
            installed.display(),
            bin_dir.display()
        ),
    }
    step(
        WHAT,
        format!("built and installed ({version}, {})", installed.display()),
    );
    Ok(())
}

/// The nightly's shared LLVM, `<sysroot>/lib/libLLVM.so.<version>-rust-...`;
/// its name changes with every LLVM update, so it is looked up, not named.
fn find_libllvm(sysroot_lib: &Path, major: u32) -> Result<PathBuf> {
    let names: Vec<String> = fs::read_dir(sysroot_lib)
        .with_context(|| format!("cannot list {}", sysroot_lib.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    pick_libllvm(&names, major)
        .map(|name| sysroot_lib.join(name))
        .with_context(|| {
            format!(
                "no libLLVM.so.{major}.* in {}: this nightly ships no shared LLVM {major}; \
                 build bpf-linker against Debian's instead (`apt-get install llvm-{major}-dev`, \
                 then `LLVM_PREFIX=/usr/lib/llvm-{major} cargo install bpf-linker --locked \
                 --no-default-features --features llvm-{major}`)",
                sysroot_lib.display()
            )
        })
}

fn pick_libllvm(names: &[String], major: u32) -> Option<&str> {
    let prefix = format!("libLLVM.so.{major}.");
    let mut matching: Vec<&str> = names
        .iter()
        .map(String::as_str)
        .filter(|name| name.starts_with(&prefix))
        .collect();
    matching.sort_unstable();
    matching.first().copied()
}

/// llvm-sys looks for `<LLVM_PREFIX>/lib/libLLVM.so`; the nightly has only
/// the versioned file, so the prefix is a folder holding a link to it.
fn link_llvm_prefix(prefix: &Path, libllvm: &Path) -> Result<()> {
    let lib = prefix.join("lib");
    fs::create_dir_all(&lib).with_context(|| format!("cannot create {}", lib.display()))?;
    let link = lib.join("libLLVM.so");
    if link.symlink_metadata().is_ok() {
        fs::remove_file(&link)
            .with_context(|| format!("cannot replace the old link {}", link.display()))?;
    }
    symlink(libllvm, &link)
        .with_context(|| format!("cannot link {} -> {}", link.display(), libllvm.display()))
}

/// Where `cargo install` puts binaries (under `bin/`): `CARGO_INSTALL_ROOT`,
/// else `CARGO_HOME`, else `~/.cargo`.
fn install_root() -> Result<PathBuf> {
    if let Some(root) = env::var_os("CARGO_INSTALL_ROOT") {
        return Ok(PathBuf::from(root));
    }
    if let Some(home) = env::var_os("CARGO_HOME") {
        return Ok(PathBuf::from(home));
    }
    env::var_os("HOME")
        .map(|home| PathBuf::from(home).join(".cargo"))
        .context("cannot tell where cargo installs binaries: neither CARGO_HOME nor HOME is set")
}

fn ensure_mounts(root: bool) -> Result<()> {
    const MOUNT_TABLE: &str = "/proc/self/mounts";
    let table = fs::read_to_string(MOUNT_TABLE)
        .with_context(|| format!("cannot read {MOUNT_TABLE} (is procfs mounted on /proc?)"))?;
    for fs in MOUNTS {
        let what = format!("mount {} on {}", fs.name, fs.target);
        if is_mounted(&table, fs.target, fs.fstype) {
            step(&what, "already mounted");
            continue;
        }
        if !root {
            step(&what, "skipped (not root: mounting needs root)");
            continue;
        }
        if !Path::new(fs.target).is_dir() {
            bail!(
                "cannot {what}: {} does not exist (is sysfs mounted on /sys?)",
                fs.target
            );
        }
        nix::mount::mount(
            Some(fs.fstype),
            fs.target,
            Some(fs.fstype),
            MsFlags::empty(),
            None::<&str>,
        )
        .with_context(|| {
            format!(
                "cannot {what}: mount(2) failed (in a container, the host must allow it or \
                 mount it: `mount -t {} {} {}`)",
                fs.fstype, fs.fstype, fs.target
            )
        })?;
        step(&what, "done");
    }
    Ok(())
}

/// Whether the mount table (`/proc/self/mounts` format) has a filesystem of
/// type `fstype` on `target`.
fn is_mounted(table: &str, target: &str, fstype: &str) -> bool {
    table.lines().any(|line| {
        let mut fields = line.split_whitespace().skip(1);
        fields.next() == Some(target) && fields.next() == Some(fstype)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_nightly_channel_but_not_a_dated_nightly() {
        let list = "stable-x86_64-unknown-linux-gnu (active, default)\n\
                    nightly-x86_64-unknown-linux-gnu\n\
                    1.95.0-x86_64-unknown-linux-gnu\n";
        assert!(has_nightly(list));
        assert!(has_nightly("nightly\n"));
        assert!(!has_nightly(
            "stable-x86_64-unknown-linux-gnu (active, default)\n\
             nightly-2026-05-19-x86_64-unknown-linux-gnu\n"
        ));
        assert!(!has_nightly("no installed toolchains\n"));
    }

    #[test]
    fn reads_release_and_llvm_version_from_rustc_verbose() {
        let verbose = "rustc 1.97.0-nightly (e50aa6fba 2026-05-19)\n\
                       binary: rustc\n\
                       host: x86_64-unknown-linux-gnu\n\
                       release: 1.97.0-nightly\n\
                       LLVM version: 22.1.4\n";
        let nightly = match parse_rustc_verbose(verbose) {
            Ok(nightly) => nightly,
            Err(err) => panic!("{err:#}"),
        };
        assert_eq!(nightly.release, "1.97.0-nightly");
        assert_eq!(nightly.llvm_version, "22.1.4");
        assert_eq!(nightly.llvm_major().ok(), Some(22));
        assert!(parse_rustc_verbose("rustc 1.97.0\n").is_err());
        assert!(llvm_major("x.1").is_err());
    }

    #[test]
    fn recognises_installed_components() {
        let list = "cargo-x86_64-unknown-linux-gnu\nrust-src\nrustc-x86_64-unknown-linux-gnu\n";
        assert!(lists_component(list, "rust-src"));
        assert!(!lists_component(list, "rust-std"));
        assert!(!lists_component("rust-src-extra\n", "rust-src"));
        assert!(!lists_component("", "rust-src"));
        assert!(lists_host_component(list, "cargo"));
        assert!(!lists_host_component(list, "clippy"));
    }

    #[test]
    fn packages_count_as_installed_only_in_the_installed_state() {
        let status = "coreutils install ok installed\n\
                      gcc hold ok installed\n\
                      python3 deinstall ok config-files\n";
        assert_eq!(
            missing_from_status(status, &["coreutils", "gcc", "python3", "tar"]),
            ["python3", "tar"]
        );
        assert!(missing_from_status("", &[]).is_empty());
    }

    #[test]
    fn picks_the_versioned_libllvm_of_the_right_major() {
        let names: Vec<String> = [
            "libLLVM-22-rust-1.97.0-nightly.so",
            "libLLVM.so.22.1-rust-1.97.0-nightly",
            "librustc_driver-b5a965480ee51f9a.so",
            "rustlib",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            pick_libllvm(&names, 22),
            Some("libLLVM.so.22.1-rust-1.97.0-nightly")
        );
        assert_eq!(pick_libllvm(&names, 23), None);
    }

    #[test]
    fn finds_libllvm_on_disk_and_links_the_prefix() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        let lib = dir.join("sysroot/lib");
        fs::create_dir_all(&lib)?;
        let real = lib.join("libLLVM.so.22.1-rust-1.97.0-nightly");
        fs::write(&real, b"")?;
        assert_eq!(find_libllvm(&lib, 22)?, real);
        assert!(find_libllvm(&lib, 21).is_err());

        let prefix = dir.join("prefix");
        link_llvm_prefix(&prefix, &real)?;
        // A second run replaces the link instead of failing on it.
        link_llvm_prefix(&prefix, &real)?;
        assert_eq!(fs::read_link(prefix.join("lib/libLLVM.so"))?, real);
        Ok(())
    }

    #[test]
    fn reads_the_mount_table() {
        let table = "sysfs /sys sysfs rw,nosuid 0 0\n\
                     none /sys/kernel/tracing tracefs rw,relatime 0 0\n\
                     bpf /sys/fs/bpf/sub bpf rw 0 0\n";
        assert!(is_mounted(table, "/sys/kernel/tracing", "tracefs"));
        assert!(!is_mounted(table, "/sys/kernel/tracing", "debugfs"));
        assert!(!is_mounted(table, "/sys/fs/bpf", "bpf"));
    }
}
