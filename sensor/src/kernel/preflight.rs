//! Checks made before anything is loaded, so `run` either starts or
//! stops with an error naming the problem and its fix.
//!
//! What the kernel must offer: x86-64, BTF (`CONFIG_DEBUG_INFO_BTF=y`),
//! Linux 5.11 or newer (BTF tracepoints, the ring buffer,
//! `bpf_get_current_task_btf`), tracefs. io_uring capture alone needs more
//! (Linux 6.0+ with `CONFIG_IO_URING=y`, `kernel/uring.rs`) and is left
//! off, with a warning, where the kernel lacks it; BPF LSM enforcement
//! needs `bpf` among the active LSMs and is used where it is. Tested on
//! 6.1 (Debian 12, the VM tests) and 6.18; 5.11 to 5.19 are untested.

use std::path::Path;

use crate::kernel::btf::VMLINUX_BTF;

pub const TRACEFS: &str = "/sys/kernel/tracing";
pub const BPFFS: &str = "/sys/fs/bpf";
pub const SECURITYFS: &str = "/sys/kernel/security";

#[derive(Debug, thiserror::Error)]
pub enum PreflightError {
    #[error(
        "weightwarden must run as root: loading eBPF programs needs CAP_BPF, CAP_PERFMON and \
         CAP_SYS_ADMIN (run it with sudo, or as a root systemd service)"
    )]
    NotRoot,
    #[error(
        "weightwarden runs on x86-64 only: its kernel programs decode x86-64 and ia32 syscall \
         numbers and pt_regs, and this is {arch}"
    )]
    UnsupportedArch { arch: &'static str },
    #[error(
        "this kernel has no BTF ({VMLINUX_BTF} is missing): weightwarden reads kernel structure \
         layouts from it; use a kernel built with CONFIG_DEBUG_INFO_BTF=y (every mainstream \
         distribution kernel since 2021 is)"
    )]
    NoBtf,
    #[error(
        "kernel {release} is too old: weightwarden needs Linux 5.11 or newer (BTF tracepoints \
         with bpf_get_current_task_btf; io_uring capture needs 6.0 or newer and is left off \
         before it)"
    )]
    KernelTooOld { release: String },
    #[error(
        "tracefs is not mounted at {TRACEFS} and mounting it failed \
         (mount it with `mount -t tracefs none {TRACEFS}`)"
    )]
    Tracefs {
        #[source]
        source: nix::Error,
    },
}

/// `(major, minor)` of a kernel release string such as `6.18.44-fc-v595`.
pub fn kernel_version(release: &str) -> Option<(u32, u32)> {
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next()?.parse().ok()?;
    Some((major, minor))
}

/// The running kernel's release string.
pub fn kernel_release() -> String {
    nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default()
}

pub fn is_mounted(path: &str) -> bool {
    std::fs::read_to_string("/proc/self/mounts")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(1) == Some(path)))
        .unwrap_or(false)
}

/// Mounts `fstype` on `path` if nothing is mounted there.
pub fn ensure_mounted(fstype: &str, path: &str) -> Result<bool, nix::Error> {
    if is_mounted(path) {
        return Ok(false);
    }
    nix::mount::mount(
        Some("none"),
        path,
        Some(fstype),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )?;
    Ok(true)
}

/// Everything `run` needs before loading: root, BTF, ring buffer support,
/// tracefs (mounted here if missing).
pub fn check() -> Result<(), PreflightError> {
    if !nix::unistd::geteuid().is_root() {
        return Err(PreflightError::NotRoot);
    }
    if std::env::consts::ARCH != "x86_64" {
        return Err(PreflightError::UnsupportedArch {
            arch: std::env::consts::ARCH,
        });
    }
    if !Path::new(VMLINUX_BTF).exists() {
        return Err(PreflightError::NoBtf);
    }
    let release = kernel_release();
    if kernel_version(&release).is_some_and(|v| v < (5, 11)) {
        return Err(PreflightError::KernelTooOld { release });
    }
    if !Path::new(TRACEFS).join("events").exists() {
        match ensure_mounted("tracefs", TRACEFS) {
            Ok(true) => tracing::info!("mounted tracefs on {TRACEFS}"),
            Ok(false) => {}
            Err(source) => return Err(PreflightError::Tracefs { source }),
        }
    }
    Ok(())
}

/// The kernel's active LSMs (`/sys/kernel/security/lsm`), empty when
/// securityfs is not mounted.
pub fn active_lsms() -> Vec<String> {
    std::fs::read_to_string(Path::new(SECURITYFS).join("lsm"))
        .unwrap_or_default()
        .split(',')
        .map(|l| l.trim().to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

/// Whether BPF LSM programs run here: `bpf` must be an active LSM. A
/// kernel built with `CONFIG_BPF_LSM` loads and attaches them even when
/// it is not, and then never calls them.
pub fn bpf_lsm_active() -> bool {
    active_lsms().iter().any(|l| l == "bpf")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kernel_versions() {
        assert_eq!(kernel_version("6.18.44-fc-v595"), Some((6, 18)));
        assert_eq!(kernel_version("5.4.0-150-generic"), Some((5, 4)));
        assert_eq!(kernel_version("6.1.0-27-cloud-amd64"), Some((6, 1)));
        assert_eq!(kernel_version("garbage"), None);
        assert!(kernel_version("5.10.0").is_some_and(|v| v < (5, 11)));
    }
}
