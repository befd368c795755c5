//! The kernel the VM tests boot (`tests/src/vm.rs`): Debian's stock cloud
//! kernel, which has BPF LSM (with `bpf` in its default LSM list), BTF,
//! fentry trampolines and kprobes, and its serial console and initramfs
//! support built in, so it boots under QEMU with no modules. `setup` fetches
//! it once into `<target>/vm/`: `vmlinuz`, the kernel's `config`, and
//! `kernel.txt` naming the package it came from (written last, so its
//! presence means the fetch completed).
//!
//! Debian rotates the ABI number in the package name (`linux-image-6.1.0-56-
//! cloud-amd64`) with every security update and drops the old one from its
//! mirrors, so the name is resolved from the `linux-image-cloud-amd64`
//! meta-package at fetch time rather than pinned. A kernel already fetched is
//! kept (no mirror is asked again): delete `<target>/vm/` to take a newer one.

use std::{
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{process, setup::step};

/// The meta-package that always depends on the current cloud kernel.
const META_PACKAGE: &str = "linux-image-cloud-amd64";

/// The folder under the target dir; `tests/src/vm.rs` looks for the kernel
/// at the same place.
pub const DIR: &str = "vm";
/// The kernel image, in [`DIR`].
const IMAGE: &str = "vmlinuz";
/// The kernel's build configuration, in [`DIR`] (to check a `CONFIG_`).
const CONFIG: &str = "config";
/// What was fetched, in [`DIR`]; see [`KernelRecord`].
const RECORD: &str = "kernel.txt";

/// The env var that points the VM tests at another kernel image.
const KERNEL_ENV: &str = "WEIGHTWARDEN_VM_KERNEL";

const WHAT: &str = "VM test kernel";

/// Which Debian package the cached kernel came from, as `kernel.txt` holds
/// it: `key=value` lines.
#[derive(Debug, Clone, PartialEq, Eq)]
struct KernelRecord {
    /// `linux-image-6.1.0-56-cloud-amd64`
    package: String,
    /// `6.1.192-2`
    version: String,
    /// What `uname -r` prints in the guest: `6.1.0-56-cloud-amd64`.
    release: String,
}

impl KernelRecord {
    fn render(&self) -> String {
        format!(
            "package={}\nversion={}\nrelease={}\n",
            self.package, self.version, self.release
        )
    }

    fn parse(text: &str) -> Option<Self> {
        let field = |key: &str| {
            text.lines()
                .find_map(|line| line.strip_prefix(key)?.strip_prefix('='))
                .map(str::trim)
                .filter(|value| !value.is_empty())
                .map(str::to_owned)
        };
        Some(Self {
            package: field("package")?,
            version: field("version")?,
            release: field("release")?,
        })
    }
}

/// Fetches the kernel into `<target_dir>/vm/` unless it is already there.
pub fn ensure(target_dir: &Path, root: bool) -> Result<()> {
    let dir = target_dir.join(DIR);
    if let Some(record) = cached(&dir) {
        step(
            WHAT,
            format!(
                "already fetched ({} {}, in {})",
                record.package,
                record.version,
                dir.display()
            ),
        );
        return Ok(());
    }
    if which::which("apt-get").is_err() || which::which("dpkg-deb").is_err() {
        step(
            WHAT,
            format!(
                "skipped: no apt-get/dpkg-deb (not a Debian-based system); the VM tests \
                 skip unless {KERNEL_ENV} names a bzImage with CONFIG_BPF_LSM=y and \
                 CONFIG_DEBUG_INFO_BTF=y"
            ),
        );
        return Ok(());
    }
    let package = resolve_package(root)?;
    step(WHAT, format!("fetching {package} (about 27 MB)..."));
    let record = fetch(&dir, &package, root)?;
    step(
        WHAT,
        format!(
            "fetched {} {} (kernel {}) into {}",
            record.package,
            record.version,
            record.release,
            dir.display()
        ),
    );
    Ok(())
}

/// The record of a complete earlier fetch, if `dir` holds one.
fn cached(dir: &Path) -> Option<KernelRecord> {
    if !dir.join(IMAGE).is_file() {
        return None;
    }
    let text = fs::read_to_string(dir.join(RECORD)).ok()?;
    KernelRecord::parse(&text)
}

/// The versioned kernel package the meta-package depends on now.
fn resolve_package(root: bool) -> Result<String> {
    let depends = || -> Result<Option<String>> {
        // apt-cache exits 100 for a package it does not know: the empty
        // answer says the same, so only the output is read.
        let out = process::output(Command::new("apt-cache").args(["depends", META_PACKAGE]))?;
        Ok(kernel_dependency(&String::from_utf8_lossy(&out.stdout)))
    };
    if let Some(package) = depends()? {
        return Ok(package);
    }
    if !root {
        bail!(
            "apt-cache does not know {META_PACKAGE}: the package lists are missing or old; \
             run `apt-get update` as root, then `cargo xtask setup` again"
        );
    }
    // A fresh machine may have no package lists at all.
    process::run(Command::new("apt-get").arg("update"))
        .context("cannot update the Debian package lists: the Debian mirror must be reachable")?;
    depends()?.with_context(|| {
        format!(
            "apt-cache knows no kernel package that {META_PACKAGE} depends on, even after \
             `apt-get update`: is the Debian `main` component in the apt sources? \
             (or set {KERNEL_ENV} to a kernel image for the VM tests)"
        )
    })
}

/// The first real (not virtual) `linux-image-*` package among the
/// `Depends:` lines of `apt-cache depends` output (alternatives, `|Depends:`,
/// count too).
fn kernel_dependency(apt_cache_depends: &str) -> Option<String> {
    apt_cache_depends.lines().find_map(|line| {
        let (kind, name) = line.trim().split_once(':')?;
        let name = name.trim();
        let is_depends = kind.trim_start_matches('|') == "Depends";
        (is_depends
            && name.starts_with("linux-image-")
            && name != META_PACKAGE
            && !name.contains(['<', '>', ' ']))
        .then(|| name.to_owned())
    })
}

/// Downloads and unpacks `package`, then installs its kernel image and
/// config into `dir`, the record last.
fn fetch(dir: &Path, package: &str, root: bool) -> Result<KernelRecord> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    // An unreadable or stale record must not vouch for the files replaced
    // below if this fetch fails halfway.
    remove_if_present(&dir.join(RECORD))?;
    let work = tempfile::Builder::new()
        .prefix("fetch-")
        .tempdir_in(dir)
        .with_context(|| format!("cannot create a temporary folder in {}", dir.display()))?;

    let mut download = Command::new("apt-get");
    download.current_dir(work.path()).arg("download");
    if root {
        // As root, apt downloads as the `_apt` user, who cannot write into
        // this private folder: apt then warns and falls back to root
        // anyway. Saying so up front keeps the output clean.
        download.args(["-o", "APT::Sandbox::User=root"]);
    }
    download.arg(package);
    process::run(&mut download).with_context(|| {
        format!(
            "cannot download {package} with `apt-get download`: the Debian mirror must be \
             reachable and the package lists current (Debian drops superseded kernel ABIs: \
             run `apt-get update` as root, then `cargo xtask setup` again); or set \
             {KERNEL_ENV} to a kernel image for the VM tests"
        )
    })?;
    let deb = single_deb(work.path())?;

    let fields = process::stdout(
        Command::new("dpkg-deb")
            .arg("--field")
            .arg(&deb)
            .args(["Package", "Version"]),
    )?;
    let field = |key: &str| {
        control_field(&fields, key)
            .with_context(|| format!("`dpkg-deb --field` printed no {key} for {}", deb.display()))
    };
    let (name, version) = (field("Package")?, field("Version")?);

    let unpacked = work.path().join("root");
    process::run(
        Command::new("dpkg-deb")
            .arg("--extract")
            .arg(&deb)
            .arg(&unpacked),
    )
    .with_context(|| format!("cannot unpack {}", deb.display()))?;
    let boot = find_boot_files(&unpacked.join("boot"))?;

    install(&boot.image, &dir.join(IMAGE))?;
    if let Some(config) = &boot.config {
        install(config, &dir.join(CONFIG))?;
    }
    let record = KernelRecord {
        package: name,
        version,
        release: boot.release,
    };
    let record_path = dir.join(RECORD);
    let part = record_path.with_extension("part");
    fs::write(&part, record.render())
        .with_context(|| format!("cannot write {}", part.display()))?;
    fs::rename(&part, &record_path)
        .with_context(|| format!("cannot rename {} into place", part.display()))?;
    Ok(record)
}

fn remove_if_present(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(err) if err.kind() != std::io::ErrorKind::NotFound => {
            Err(err).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The one `.deb` that `apt-get download` left in `dir`.
fn single_deb(dir: &Path) -> Result<PathBuf> {
    let debs: Vec<PathBuf> = fs::read_dir(dir)
        .with_context(|| format!("cannot list {}", dir.display()))?
        .filter_map(|entry| Some(entry.ok()?.path()))
        .filter(|path| path.extension().is_some_and(|ext| ext == "deb"))
        .collect();
    match <[PathBuf; 1]>::try_from(debs) {
        Ok([deb]) => Ok(deb),
        Err(debs) => bail!(
            "`apt-get download` left {} .deb files in {}, expected exactly one",
            debs.len(),
            dir.display()
        ),
    }
}

/// A field of `dpkg-deb --field DEB F1 F2` output (`F1: value` lines).
fn control_field(fields: &str, key: &str) -> Option<String> {
    fields.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        (name == key && !value.trim().is_empty()).then(|| value.trim().to_owned())
    })
}

/// What a kernel package has in `/boot`.
#[derive(Debug, PartialEq, Eq)]
struct BootFiles {
    image: PathBuf,
    config: Option<PathBuf>,
    release: String,
}

/// The one `vmlinuz-RELEASE` in `boot`, and `config-RELEASE` beside it.
fn find_boot_files(boot: &Path) -> Result<BootFiles> {
    let names: Vec<String> = fs::read_dir(boot)
        .with_context(|| format!("the kernel package has no {}", boot.display()))?
        .filter_map(|entry| entry.ok()?.file_name().into_string().ok())
        .collect();
    let releases: Vec<&str> = names
        .iter()
        .filter_map(|name| name.strip_prefix("vmlinuz-"))
        .collect();
    let release = match releases.as_slice() {
        [release] => (*release).to_owned(),
        other => bail!(
            "expected one vmlinuz-* in {}, found {}: {names:?}",
            boot.display(),
            other.len()
        ),
    };
    let config = boot.join(format!("config-{release}"));
    Ok(BootFiles {
        image: boot.join(format!("vmlinuz-{release}")),
        config: config.is_file().then_some(config),
        release,
    })
}

/// Copies `from` to `to` through a temporary name, so `to` is either the
/// old file or the whole new one.
fn install(from: &Path, to: &Path) -> Result<()> {
    let part = to.with_extension("part");
    fs::copy(from, &part)
        .with_context(|| format!("cannot copy {} to {}", from.display(), part.display()))?;
    fs::rename(&part, to).with_context(|| format!("cannot rename {} into place", part.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_versioned_package_the_meta_package_depends_on() {
        let out = "linux-image-cloud-amd64\n  Depends: linux-image-6.1.0-56-cloud-amd64\n";
        assert_eq!(
            kernel_dependency(out).as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
    }

    #[test]
    fn skips_other_dependencies_virtual_packages_and_the_meta_package() {
        let out = "linux-image-cloud-amd64\n\
                   \x20 PreDepends: linux-image-6.1.0-1-cloud-amd64\n\
                   \x20 Depends: initramfs-tools\n\
                   \x20 Depends: <linux-image-virtual>\n\
                   \x20 Depends: linux-image-cloud-amd64\n\
                   \x20|Depends: linux-image-6.1.0-57-cloud-amd64\n\
                   \x20 Depends: linux-image-6.1.0-56-cloud-amd64\n\
                   \x20 Recommends: firmware-linux-free\n";
        assert_eq!(
            kernel_dependency(out).as_deref(),
            Some("linux-image-6.1.0-57-cloud-amd64")
        );
    }

    #[test]
    fn no_kernel_dependency_is_none() {
        assert_eq!(kernel_dependency(""), None);
        // What apt-cache prints on stdout for a package it does not know
        // (the error goes to stderr).
        assert_eq!(kernel_dependency("\n"), None);
        assert_eq!(
            kernel_dependency("linux-image-cloud-amd64\n  Depends: <linux-image>\n"),
            None
        );
    }

    #[test]
    fn reads_dpkg_deb_fields() {
        let fields = "Package: linux-image-6.1.0-56-cloud-amd64\nVersion: 6.1.192-2\n";
        assert_eq!(
            control_field(fields, "Package").as_deref(),
            Some("linux-image-6.1.0-56-cloud-amd64")
        );
        assert_eq!(
            control_field(fields, "Version").as_deref(),
            Some("6.1.192-2")
        );
        assert_eq!(control_field(fields, "Architecture"), None);
        assert_eq!(control_field("Version: \n", "Version"), None);
    }

    #[test]
    fn the_record_round_trips_and_needs_every_field() {
        let record = KernelRecord {
            package: "linux-image-6.1.0-56-cloud-amd64".into(),
            version: "6.1.192-2".into(),
            release: "6.1.0-56-cloud-amd64".into(),
        };
        assert_eq!(
            record.render(),
            "package=linux-image-6.1.0-56-cloud-amd64\nversion=6.1.192-2\n\
             release=6.1.0-56-cloud-amd64\n"
        );
        assert_eq!(KernelRecord::parse(&record.render()), Some(record));
        assert_eq!(KernelRecord::parse("package=x\nversion=1\n"), None);
        assert_eq!(
            KernelRecord::parse("package=x\nversion=1\nrelease=\n"),
            None
        );
        // `packages=` is not `package=`.
        assert_eq!(
            KernelRecord::parse("packages=x\nversion=1\nrelease=r\n"),
            None
        );
    }

    #[test]
    fn finds_the_kernel_image_and_config_in_boot() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let boot = tmp.path().join("boot");
        fs::create_dir(&boot)?;
        fs::write(boot.join("vmlinuz-6.1.0-56-cloud-amd64"), b"kernel")?;
        fs::write(boot.join("System.map-6.1.0-56-cloud-amd64"), b"")?;
        assert_eq!(
            find_boot_files(&boot)?,
            BootFiles {
                image: boot.join("vmlinuz-6.1.0-56-cloud-amd64"),
                config: None,
                release: "6.1.0-56-cloud-amd64".into(),
            }
        );
        fs::write(
            boot.join("config-6.1.0-56-cloud-amd64"),
            b"CONFIG_BPF_LSM=y\n",
        )?;
        assert_eq!(
            find_boot_files(&boot)?.config,
            Some(boot.join("config-6.1.0-56-cloud-amd64"))
        );
        fs::write(boot.join("vmlinuz-6.1.0-57-cloud-amd64"), b"kernel")?;
        assert!(find_boot_files(&boot).is_err(), "two kernels are ambiguous");
        assert!(find_boot_files(&tmp.path().join("none")).is_err());
        Ok(())
    }

    #[test]
    fn a_fetch_counts_only_with_both_the_image_and_the_record() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path();
        assert_eq!(cached(dir), None);
        fs::write(dir.join(IMAGE), b"kernel")?;
        assert_eq!(cached(dir), None, "an image without its record is partial");
        fs::write(dir.join(RECORD), "package=p\nversion=v\nrelease=r\n")?;
        assert_eq!(cached(dir).map(|r| r.release), Some("r".to_owned()));
        fs::remove_file(dir.join(IMAGE))?;
        assert_eq!(cached(dir), None);
        Ok(())
    }

    #[test]
    fn install_replaces_the_target_and_leaves_no_part_file() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        let (from, to) = (tmp.path().join("from"), tmp.path().join("vmlinuz"));
        fs::write(&from, b"new")?;
        fs::write(&to, b"old")?;
        install(&from, &to)?;
        assert_eq!(fs::read(&to)?, b"new");
        assert!(!to.with_extension("part").exists());
        assert!(install(&tmp.path().join("missing"), &to).is_err());
        assert_eq!(
            fs::read(&to)?,
            b"new",
            "a failed install keeps the old file"
        );
        Ok(())
    }

    /// apt-get refuses an unknown package without asking a mirror, so this
    /// runs offline too.
    #[test]
    fn a_failed_download_names_the_fix_and_leaves_nothing_behind() -> Result<()> {
        if which::which("apt-get").is_err() {
            eprintln!("no apt-get on this host: nothing to check");
            return Ok(());
        }
        let tmp = tempfile::tempdir()?;
        let dir = tmp.path().join("vm");
        let err = match fetch(&dir, "linux-image-weightwarden-no-such-kernel", false) {
            Ok(record) => panic!("fetched a package that does not exist: {record:?}"),
            Err(err) => format!("{err:#}"),
        };
        assert!(err.contains("`apt-get download`"), "{err}");
        assert!(err.contains("apt-get update"), "{err}");
        assert!(err.contains(KERNEL_ENV), "{err}");
        let left: Vec<_> = fs::read_dir(&dir)?.collect();
        assert!(left.is_empty(), "left behind: {left:?}");
        Ok(())
    }

    #[test]
    fn finds_exactly_one_deb() -> Result<()> {
        let tmp = tempfile::tempdir()?;
        assert!(single_deb(tmp.path()).is_err());
        let deb = tmp.path().join("linux-image_1_amd64.deb");
        fs::write(&deb, b"")?;
        fs::write(tmp.path().join("notes.txt"), b"")?;
        assert_eq!(single_deb(tmp.path())?, deb);
        fs::write(tmp.path().join("other_1_amd64.deb"), b"")?;
        assert!(single_deb(tmp.path()).is_err());
        Ok(())
    }
}
