//! Confirming that the keys the watch set computes are the kernel's.
//!
//! A key is computed from `stat()` and mountinfo (`devices.rs`); the kernel
//! programs read `(i_sb->s_dev, i_ino)` from the descriptor. Once per
//! device (`st_dev`) that holds a watched file, the agent opens one such
//! file itself (`O_PATH`: no byte can be read through it) and asks the
//! kernel what identity it sees ([`KernelIdentity`]: the programs, through
//! a probe map written for the agent's own opens, or procfs's fdinfo where
//! no programs run). The same open's `fstat` gives the computed key, so a
//! file replaced in between cannot make a false mismatch.
//!
//! A device whose kernel identity differs (another inode number scheme, a
//! device the mount table does not explain) or cannot be asked for is
//! *unconfirmed*: a warning, and an entry in `sensor_start`'s
//! `sensor.unconfirmed` with the root and mount, since its files may be
//! read without a record.

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, IntoRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use sensor_common::FileKey;
use tracing::{info, warn};

use super::devices;
use crate::event::UnconfirmedIdentity;

/// What the kernel and `fstat` said about one open of a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Probed {
    /// The identity the kernel read from the descriptor.
    pub kernel: FileKey,
    /// `fstat` of the same descriptor.
    pub st_dev: u64,
    pub st_ino: u64,
}

/// Asks the kernel which identity it gives a file. Implementations open
/// the path with `O_PATH` and must close the descriptor with
/// [`close_unseen`], so that the agent's own probes leave no record.
pub trait KernelIdentity: Send {
    fn probe(&mut self, path: &Path) -> io::Result<Probed>;
    /// Who answered, for the log (`kernel programs`, `procfs`).
    fn source(&self) -> &'static str;
}

/// Opens `path` with `O_PATH | O_CLOEXEC` (a final link followed, as the
/// watched path is opened by readers).
pub fn open_path(path: &Path) -> io::Result<OwnedFd> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    // SAFETY: c_path is NUL-terminated; the result is checked.
    let fd = unsafe { libc::open(c_path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fd was just opened and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Closes a probe descriptor with `close_range(2)`, which the kernel
/// programs do not follow: a `close(2)` of a watched file would be a
/// `close` record of the agent's own.
pub fn close_unseen(fd: OwnedFd) {
    let raw = fd.into_raw_fd();
    // SAFETY: raw is a descriptor we own; close_range closes only it.
    let ret = unsafe { libc::syscall(libc::SYS_close_range, raw, raw, 0) };
    if ret != 0 {
        // Before Linux 5.9: a close(2) it has to be.
        // SAFETY: raw is still ours.
        drop(unsafe { OwnedFd::from_raw_fd(raw) });
    }
}

/// `fstat` of a descriptor.
fn fstat(fd: &OwnedFd) -> io::Result<(u64, u64)> {
    // SAFETY: an all-zero stat is a valid out-value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fd is open and st a valid out-pointer.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((st.st_dev, st.st_ino))
}

/// The kernel's view through procfs: `/proc/self/fdinfo/N`'s `mnt_id` and
/// `ino` are the descriptor's mount and `file_inode(file)->i_ino`, and the
/// mount's `MAJOR:MINOR` in mountinfo is its superblock's device. Used where
/// no programs run (`weightwarden baseline`, unit tests).
#[derive(Debug, Default)]
pub struct ProcfsIdentity;

impl KernelIdentity for ProcfsIdentity {
    fn probe(&mut self, path: &Path) -> io::Result<Probed> {
        let fd = open_path(path)?;
        let result = procfs_probe(&fd);
        close_unseen(fd);
        result
    }

    fn source(&self) -> &'static str {
        "procfs"
    }
}

fn procfs_probe(fd: &OwnedFd) -> io::Result<Probed> {
    let (st_dev, st_ino) = fstat(fd)?;
    let text = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", fd.as_raw_fd()))?;
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    let (Some(mnt_id), Some(ino)) = (field("mnt_id:"), field("ino:")) else {
        return Err(io::Error::other(
            "fdinfo has no mnt_id or ino (Linux 5.14+)",
        ));
    };
    let mounts = devices::read_mountinfo(Path::new("/proc/self/mountinfo"))?;
    let mount = mounts
        .get(&mnt_id)
        .ok_or_else(|| io::Error::other(format!("mount {mnt_id} is not in mountinfo")))?;
    Ok(Probed {
        kernel: FileKey {
            dev: mount.kernel_dev,
            ino,
        },
        st_dev,
        st_ino,
    })
}

/// Opens `path` for a [`KernelIdentity`] and `fstat`s it; the caller reads
/// the kernel's side while the descriptor is open, then closes it with
/// [`close_unseen`].
pub fn open_and_stat(path: &Path) -> io::Result<(OwnedFd, u64, u64)> {
    let fd = open_path(path)?;
    match fstat(&fd) {
        Ok((dev, ino)) => Ok((fd, dev, ino)),
        Err(error) => {
            close_unseen(fd);
            Err(error)
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// Not asked yet (no probe yet, or no file to ask with).
    Pending,
    Confirmed,
    Unconfirmed(String),
}

#[derive(Debug)]
struct Entry {
    state: State,
    /// A watched file on this device to probe with.
    sample: Option<PathBuf>,
}

/// Per device: confirmed, unconfirmed or not asked yet.
#[derive(Default)]
pub(super) struct Confirmations {
    probe: Option<Box<dyn KernelIdentity>>,
    devices: HashMap<u64, Entry>,
    /// Superblock devices already warned about for sharing inode numbers
    /// between several `stat()` devices.
    shared_warned: std::collections::HashSet<u64>,
}

impl Confirmations {
    pub(super) fn set_probe(&mut self, probe: Box<dyn KernelIdentity>) {
        self.probe = Some(probe);
    }

    /// A watched file on `st_dev`: the device's sample until it is asked.
    pub(super) fn note(&mut self, st_dev: u64, path: &Path) {
        let entry = self.devices.entry(st_dev).or_insert(Entry {
            state: State::Pending,
            sample: None,
        });
        if entry.state == State::Pending && entry.sample.is_none() {
            entry.sample = Some(path.to_path_buf());
        }
    }

    /// Asks the kernel about every device not asked yet that has a file.
    /// Returns the number of devices newly found unconfirmed.
    pub(super) fn run(&mut self) -> usize {
        let Some(probe) = self.probe.as_mut() else {
            return 0;
        };
        let mut newly_unconfirmed = 0;
        for (&st_dev, entry) in &mut self.devices {
            if entry.state != State::Pending {
                continue;
            }
            let Some(sample) = entry.sample.take() else {
                continue;
            };
            let outcome = match probe.probe(&sample) {
                // The sample went away: the next file on it is asked.
                Err(error)
                    if matches!(
                        error.kind(),
                        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
                    ) =>
                {
                    continue;
                }
                Err(error) => Err(format!(
                    "the kernel's identity of {} could not be read ({}: {error})",
                    sample.display(),
                    probe.source()
                )),
                // Another device now (a mount over the path): ask later.
                Ok(probed) if probed.st_dev != st_dev => continue,
                Ok(probed) => check(&probed, &sample),
            };
            match outcome {
                Ok(()) => {
                    info!(
                        device = %devices::dev_text(st_dev),
                        kernel_dev = %crate::event::names::kernel_dev_text(devices::translate(st_dev)),
                        sample = %sample.display(),
                        source = probe.source(),
                        "file identities on this device confirmed by the kernel"
                    );
                    entry.state = State::Confirmed;
                }
                Err(reason) => {
                    let mount = devices::mount_of(st_dev);
                    warn!(
                        device = %devices::dev_text(st_dev),
                        mount = %mount.as_ref().map(|m| m.mount_point.display().to_string()).unwrap_or_default(),
                        fstype = mount.as_ref().map(|m| m.fstype.as_str()).unwrap_or(""),
                        %reason,
                        "FILE IDENTITIES UNCONFIRMED: reads of weight files on this file system may go unrecorded (listed in sensor.unconfirmed)"
                    );
                    entry.state = State::Unconfirmed(reason);
                    entry.sample = Some(sample);
                    newly_unconfirmed += 1;
                }
            }
        }
        self.warn_shared();
        newly_unconfirmed
    }

    /// btrfs subvolumes (and overlayfs layers without `xino`) each number
    /// their inodes from the same start, but the kernel programs key by the
    /// superblock's device: two files, one per subvolume, can share a key.
    /// Both are counted (noise, never a gap), and records name the first
    /// path found; say so once per file system.
    fn warn_shared(&mut self) {
        let mut by_kernel: HashMap<u64, Vec<u64>> = HashMap::new();
        for &st_dev in self.devices.keys() {
            by_kernel
                .entry(devices::translate(st_dev))
                .or_default()
                .push(st_dev);
        }
        for (kernel_dev, st_devs) in by_kernel {
            if st_devs.len() > 1 && self.shared_warned.insert(kernel_dev) {
                let mount = devices::mount_of(st_devs[0]);
                warn!(
                    kernel_dev = %crate::event::names::kernel_dev_text(kernel_dev),
                    devices = st_devs.len(),
                    mount = %mount.as_ref().map(|m| m.mount_point.display().to_string()).unwrap_or_default(),
                    fstype = mount.as_ref().map(|m| m.fstype.as_str()).unwrap_or(""),
                    "several subvolumes (or overlay layers) share one superblock: files with the same inode number in two of them share a key, so a read of either is counted and named by the first path found"
                );
            }
        }
    }

    /// Devices the kernel did not confirm, with the root (of `roots`)
    /// their sample file is under.
    pub(super) fn unconfirmed(&self, roots: &[PathBuf]) -> Vec<UnconfirmedIdentity> {
        let mut out: Vec<UnconfirmedIdentity> = self
            .devices
            .iter()
            .filter_map(|(&st_dev, entry)| {
                let State::Unconfirmed(reason) = &entry.state else {
                    return None;
                };
                let sample = entry.sample.clone().unwrap_or_default();
                let mount = devices::mount_of(st_dev);
                Some(UnconfirmedIdentity {
                    root: roots
                        .iter()
                        .find(|root| sample.starts_with(root))
                        .cloned()
                        .unwrap_or_default(),
                    mount_point: mount
                        .as_ref()
                        .map(|m| m.mount_point.clone())
                        .unwrap_or_default(),
                    fstype: mount.map(|m| m.fstype).unwrap_or_default(),
                    dev: devices::dev_text(st_dev),
                    reason: reason.clone(),
                })
            })
            .collect();
        out.sort_by(|a, b| (&a.root, &a.dev).cmp(&(&b.root, &b.dev)));
        out
    }

    /// (confirmed, unconfirmed) device counts.
    pub(super) fn counts(&self) -> (usize, usize) {
        self.devices
            .values()
            .fold((0, 0), |(c, u), entry| match entry.state {
                State::Confirmed => (c + 1, u),
                State::Unconfirmed(_) => (c, u + 1),
                State::Pending => (c, u),
            })
    }

    /// Forget every answer (a rescan learns devices again; a device number
    /// may now belong to another file system).
    pub(super) fn reset(&mut self) {
        self.devices.clear();
    }
}

/// Whether the kernel's key is the one computed from `fstat` of the same
/// descriptor.
fn check(probed: &Probed, sample: &Path) -> Result<(), String> {
    let computed = FileKey {
        dev: devices::translate(probed.st_dev),
        ino: probed.st_ino,
    };
    if probed.kernel == computed {
        return Ok(());
    }
    Err(format!(
        "for {} the kernel sees device {} inode {}, stat and the mount table say device {} inode {}",
        sample.display(),
        crate::event::names::kernel_dev_text(probed.kernel.dev),
        probed.kernel.ino,
        crate::event::names::kernel_dev_text(computed.dev),
        computed.ino,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    /// A kernel that sees another inode number than stat.
    struct Skewed;
    impl KernelIdentity for Skewed {
        fn probe(&mut self, path: &Path) -> io::Result<Probed> {
            let mut probed = ProcfsIdentity.probe(path)?;
            probed.kernel.ino += 1;
            Ok(probed)
        }
        fn source(&self) -> &'static str {
            "skewed"
        }
    }

    #[test]
    fn procfs_confirms_a_file_on_a_local_file_system() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.gguf");
        std::fs::write(&file, b"x").expect("write");
        let meta = std::fs::metadata(&file).expect("stat");
        let probed = ProcfsIdentity.probe(&file).expect("probe");
        assert_eq!(probed.st_ino, meta.ino());
        assert_eq!(probed.kernel.ino, meta.ino());

        let mut confirmations = Confirmations::default();
        confirmations.note(meta.dev(), &file);
        assert_eq!(confirmations.run(), 0, "no probe yet: nothing asked");
        assert_eq!(confirmations.counts(), (0, 0));
        confirmations.set_probe(Box::new(ProcfsIdentity));
        assert_eq!(confirmations.run(), 0);
        assert_eq!(confirmations.counts(), (1, 0));
        assert!(confirmations.unconfirmed(&[]).is_empty());
    }

    #[test]
    fn a_kernel_that_disagrees_leaves_the_device_unconfirmed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("a.gguf");
        std::fs::write(&file, b"x").expect("write");
        let meta = std::fs::metadata(&file).expect("stat");
        let mut confirmations = Confirmations::default();
        confirmations.set_probe(Box::new(Skewed));
        confirmations.note(meta.dev(), &file);
        assert_eq!(confirmations.run(), 1);
        assert_eq!(confirmations.run(), 0, "asked once");
        assert_eq!(confirmations.counts(), (0, 1));
        let listed = confirmations.unconfirmed(&[dir.path().to_path_buf()]);
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].root, dir.path());
        assert_eq!(listed[0].dev, devices::dev_text(meta.dev()));
        assert!(
            listed[0]
                .reason
                .contains(&format!("inode {}", meta.ino() + 1)),
            "{}",
            listed[0].reason
        );
    }
}
