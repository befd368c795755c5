//! The device number the kernel programs see for a file.
//!
//! The programs key a file by `inode->i_sb->s_dev` (the superblock's
//! device) and `i_ino`. `stat()`'s `st_dev` is that device on most file
//! systems, but not on all of them:
//!
//! - btrfs reports an anonymous device per subvolume (the top-level one
//!   included), never the superblock's;
//! - overlayfs whose layers are on different file systems (and `xino` is
//!   off) reports a per-layer pseudo device for files, not the overlay's.
//!
//! `/proc/self/mountinfo`'s `MAJOR:MINOR` field is the superblock's
//! `s_dev` of each mount, and `statx(STATX_MNT_ID)` names the mount a path
//! is on, so the kernel's device is `mountinfo[mnt_id]` whatever `st_dev`
//! says. This module learns `st_dev -> s_dev` from the paths the walks
//! meet (one `statx` per device, not per file) and translates every
//! `stat()` result through it ([`translate`]): a host-wide fact, shared by
//! every caller of [`super::key_of`] and [`super::identity`] (policy
//! files, executables, fanotify's opens).
//!
//! A `st_dev` can be given to another file system after an unmount; each
//! rescan starts a new generation and the walk learns every device again.
//! Whether the result really is what the kernel sees is checked by
//! `confirm.rs`, with the kernel's own view of one file per device.

use std::collections::HashMap;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::{LazyLock, Mutex, MutexGuard};

/// One mount, from `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// The superblock's device in the kernel encoding (`major << 20 | minor`).
    pub kernel_dev: u64,
    pub mount_point: PathBuf,
    pub fstype: String,
}

/// What the table knows about one `st_dev`.
#[derive(Debug, Clone)]
struct Device {
    mount: Mount,
    /// The rescan generation it was learned in.
    generation: u64,
}

#[derive(Debug, Default)]
struct Devices {
    by_st_dev: HashMap<u64, Device>,
    /// `mountinfo` by mount id, read again when an id is missing.
    mounts: HashMap<u64, Mount>,
    generation: u64,
}

static DEVICES: LazyLock<Mutex<Devices>> = LazyLock::new(Mutex::default);

fn devices() -> MutexGuard<'static, Devices> {
    // The table holds plain data; a panic elsewhere cannot leave it torn.
    DEVICES.lock().unwrap_or_else(|poison| poison.into_inner())
}

/// `stat()`'s `st_dev` in the kernel's `super_block::s_dev` encoding
/// (`major << 20 | minor`), with no mount lookup.
pub fn encode(st_dev: u64) -> u64 {
    let major = u64::from(libc::major(st_dev));
    let minor = u64::from(libc::minor(st_dev));
    (major << 20) | minor
}

/// The kernel's device for a file whose `stat()` said `st_dev`: the
/// superblock's device when this device was learned ([`learn`]), else
/// `st_dev` itself in the kernel encoding (right on every file system but
/// btrfs and multi-layer overlayfs).
pub fn translate(st_dev: u64) -> u64 {
    match devices().by_st_dev.get(&st_dev) {
        Some(device) => device.mount.kernel_dev,
        None => encode(st_dev),
    }
}

/// The mount `st_dev` was learned on, if it was.
pub fn mount_of(st_dev: u64) -> Option<Mount> {
    devices()
        .by_st_dev
        .get(&st_dev)
        .map(|device| device.mount.clone())
}

/// Starts a new generation: every device is learned again when next met
/// (a rescan), so a device number reused by a new mount is not trusted.
pub fn new_generation() {
    devices().generation += 1;
}

/// Learns the device of `path`, whose `stat()` said `st_dev`, unless it is
/// known from this generation. `follow`: `path` is resolved through a
/// final symbolic link, as the `stat()` was. Returns the kernel device.
pub fn learn(path: &Path, st_dev: u64, follow: bool) -> u64 {
    {
        let table = devices();
        if let Some(device) = table.by_st_dev.get(&st_dev)
            && device.generation == table.generation
        {
            return device.mount.kernel_dev;
        }
    }
    // Outside the lock: statx can block on a slow (FUSE) file system.
    let found = statx_mount(path, follow);
    let mut table = devices();
    let (dev, mnt_id) = match found {
        Ok(found) => found,
        Err(error) => {
            tracing::debug!(path = %path.display(), %error, "cannot tell the mount of a path; using stat's device");
            return encode(st_dev);
        }
    };
    if dev != st_dev {
        // Replaced between the two calls: learn it when next met.
        return encode(st_dev);
    }
    let Some(mount) = table.mount(mnt_id) else {
        tracing::debug!(path = %path.display(), mnt_id, "mount not in mountinfo; using stat's device");
        return encode(st_dev);
    };
    let kernel_dev = mount.kernel_dev;
    if kernel_dev != encode(st_dev) {
        tracing::debug!(
            path = %path.display(),
            st_dev = %dev_text(st_dev),
            kernel_dev = %crate::event::names::kernel_dev_text(kernel_dev),
            fstype = mount.fstype,
            "stat's device is not the superblock's; keys use the superblock's"
        );
    }
    let generation = table.generation;
    table.by_st_dev.insert(st_dev, Device { mount, generation });
    kernel_dev
}

/// `major:minor` of a `stat()` device.
pub fn dev_text(st_dev: u64) -> String {
    format!("{}:{}", libc::major(st_dev), libc::minor(st_dev))
}

impl Devices {
    fn mount(&mut self, mnt_id: u64) -> Option<Mount> {
        if !self.mounts.contains_key(&mnt_id) {
            match read_mountinfo(Path::new("/proc/self/mountinfo")) {
                Ok(mounts) => self.mounts = mounts,
                Err(error) => {
                    tracing::warn!(%error, "cannot read /proc/self/mountinfo; file identities use stat's device")
                }
            }
        }
        self.mounts.get(&mnt_id).cloned()
    }
}

/// `(st_dev, mount id)` of `path` from `statx(STATX_MNT_ID)`.
pub fn statx_mount(path: &Path, follow: bool) -> io::Result<(u64, u64)> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let flags = if follow { 0 } else { libc::AT_SYMLINK_NOFOLLOW };
    // SAFETY: an all-zero statx is a valid value to be overwritten.
    let mut stx: libc::statx = unsafe { std::mem::zeroed() };
    // SAFETY: c_path is NUL-terminated and stx is a valid out-pointer.
    let ret = unsafe {
        libc::statx(
            libc::AT_FDCWD,
            c_path.as_ptr(),
            flags,
            libc::STATX_MNT_ID,
            &mut stx,
        )
    };
    if ret != 0 {
        return Err(io::Error::last_os_error());
    }
    if stx.stx_mask & libc::STATX_MNT_ID == 0 {
        // Linux before 5.8.
        return Err(io::Error::from(io::ErrorKind::Unsupported));
    }
    let dev = libc::makedev(stx.stx_dev_major, stx.stx_dev_minor);
    Ok((dev, stx.stx_mnt_id))
}

/// Parses a mountinfo file: mount id -> superblock device, mount point,
/// file system type.
pub fn read_mountinfo(path: &Path) -> io::Result<HashMap<u64, Mount>> {
    Ok(parse_mountinfo(&std::fs::read(path)?))
}

fn parse_mountinfo(text: &[u8]) -> HashMap<u64, Mount> {
    let mut out = HashMap::new();
    for line in text.split(|&b| b == b'\n') {
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let (Some(id), Some(devno), Some(point)) = (fields.first(), fields.get(2), fields.get(4))
        else {
            continue;
        };
        let Some(sep) = fields.iter().position(|f| *f == b"-") else {
            continue;
        };
        let fstype = fields.get(sep + 1).copied().unwrap_or_default();
        let parse = |b: &[u8]| std::str::from_utf8(b).ok()?.parse::<u64>().ok();
        let Some(id) = parse(id) else { continue };
        let mut parts = devno.splitn(2, |&b| b == b':');
        let (Some(major), Some(minor)) =
            (parts.next().and_then(parse), parts.next().and_then(parse))
        else {
            continue;
        };
        out.insert(
            id,
            Mount {
                kernel_dev: (major << 20) | minor,
                mount_point: PathBuf::from(std::ffi::OsStr::from_bytes(&unescape(point))),
                fstype: String::from_utf8_lossy(fstype).into_owned(),
            },
        );
    }
    out
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape(field: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let octal = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match octal {
            Some(d) => {
                let value = d.iter().fold(0u32, |v, c| v * 8 + u32::from(c - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn mountinfo_lines_give_the_superblock_device() {
        let text = b"22 1 0:21 / /proc rw,nosuid - proc proc rw\n\
            46 29 0:40 / /tmp/b rw,relatime shared:1 - btrfs /dev/loop0 rw,subvol=/\n\
            47 29 254:1 /x /mnt/my\\040models rw - ext4 /dev/vda1 rw\n\
            garbage\n";
        let mounts = parse_mountinfo(text);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[&46],
            Mount {
                kernel_dev: 40,
                mount_point: PathBuf::from("/tmp/b"),
                fstype: "btrfs".into(),
            }
        );
        assert_eq!(mounts[&47].kernel_dev, (254 << 20) | 1);
        assert_eq!(mounts[&47].mount_point, PathBuf::from("/mnt/my models"));
        assert_eq!(mounts[&22].fstype, "proc");
    }

    #[test]
    fn a_learned_device_is_the_mount_s() {
        let dir = tempfile::tempdir().expect("tempdir");
        let meta = std::fs::metadata(dir.path()).expect("stat");
        let learned = learn(dir.path(), meta.dev(), true);
        let (dev, mnt_id) = statx_mount(dir.path(), true).expect("statx");
        assert_eq!(dev, meta.dev());
        let mounts = read_mountinfo(Path::new("/proc/self/mountinfo")).expect("mountinfo");
        assert_eq!(learned, mounts[&mnt_id].kernel_dev);
        assert_eq!(translate(meta.dev()), learned);
        assert_eq!(mount_of(meta.dev()).map(|m| m.kernel_dev), Some(learned));
        // An unknown device is encoded as it is.
        assert_eq!(translate(libc::makedev(8, 17)), (8 << 20) | 17);
    }
}
