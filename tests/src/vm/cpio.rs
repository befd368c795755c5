//! A writer of the `newc` cpio format, the one the kernel unpacks as an
//! initramfs (`Documentation/driver-api/early-userspace/buffer-format.rst`).
//!
//! Writing it here rather than running `cpio -o` maps host files straight
//! to their guest paths (no staging copy of a 100 MB debug binary), needs no
//! root for the `/dev/console` node, and gives every entry root ownership.
//! The archive is left uncompressed: the kernel takes it as it is, and
//! compressing the debug binary would cost more host time than loading the
//! raw bytes costs the guest.

use std::io::{self, Read, Write};

/// `S_IFMT` kinds, as the header's mode field holds them.
pub const S_IFDIR: u32 = 0o040_000;
pub const S_IFREG: u32 = 0o100_000;
pub const S_IFLNK: u32 = 0o120_000;
pub const S_IFCHR: u32 = 0o020_000;

const MAGIC: &str = "070701";
const TRAILER: &[u8] = b"TRAILER!!!";
/// The fixed part of a header: the magic and 13 fields of 8 hex digits.
const HEADER_LEN: usize = 6 + 13 * 8;

/// Streams entries into `out`; [`Writer::finish`] writes the trailer.
///
/// Entry names are paths relative to the archive root (`bin/busybox`); the
/// kernel creates each entry as it reads it, so a folder must come before
/// what it holds.
pub struct Writer<W: Write> {
    out: W,
    next_ino: u32,
}

/// One entry's metadata.
struct Header<'a> {
    name: &'a [u8],
    mode: u32,
    nlink: u32,
    mtime: u32,
    size: u32,
    rdev: (u32, u32),
}

impl<W: Write> Writer<W> {
    pub fn new(out: W) -> Self {
        Self { out, next_ino: 1 }
    }

    pub fn dir(&mut self, name: &[u8], permissions: u32) -> io::Result<()> {
        self.header(&Header {
            name,
            mode: S_IFDIR | permissions,
            nlink: 2,
            mtime: 0,
            size: 0,
            rdev: (0, 0),
        })
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> io::Result<()> {
        self.header(&Header {
            name,
            mode: S_IFLNK | 0o777,
            nlink: 1,
            mtime: 0,
            size: size_field(target.len() as u64)?,
            rdev: (0, 0),
        })?;
        self.out.write_all(target)?;
        self.pad(target.len())
    }

    pub fn char_device(
        &mut self,
        name: &[u8],
        permissions: u32,
        major: u32,
        minor: u32,
    ) -> io::Result<()> {
        self.header(&Header {
            name,
            mode: S_IFCHR | permissions,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev: (major, minor),
        })
    }

    /// A regular file of `size` bytes read from `data`, which must hold
    /// exactly that many (a file that changed size since it was measured
    /// is an error, not a corrupt archive).
    pub fn file(
        &mut self,
        name: &[u8],
        permissions: u32,
        mtime: u32,
        size: u64,
        data: &mut impl Read,
    ) -> io::Result<()> {
        self.header(&Header {
            name,
            mode: S_IFREG | permissions,
            nlink: 1,
            mtime,
            size: size_field(size)?,
            rdev: (0, 0),
        })?;
        let copied = io::copy(&mut data.by_ref().take(size), &mut self.out)?;
        let mut extra = [0u8; 1];
        if copied != size || data.read(&mut extra)? != 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} changed size while being archived (expected {size} bytes)",
                    String::from_utf8_lossy(name)
                ),
            ));
        }
        self.pad(size as usize)
    }

    /// Writes the trailer and returns the output.
    pub fn finish(mut self) -> io::Result<W> {
        self.header(&Header {
            name: TRAILER,
            mode: 0,
            nlink: 1,
            mtime: 0,
            size: 0,
            rdev: (0, 0),
        })?;
        self.out.flush()?;
        Ok(self.out)
    }

    fn header(&mut self, h: &Header<'_>) -> io::Result<()> {
        if h.name.is_empty() || h.name.contains(&0) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("bad cpio entry name {:?}", String::from_utf8_lossy(h.name)),
            ));
        }
        let ino = self.next_ino;
        self.next_ino += 1;
        let namesize = h.name.len() + 1;
        let fields = [
            ino,
            h.mode,
            0, // uid
            0, // gid
            h.nlink,
            h.mtime,
            h.size,
            0, // devmajor
            0, // devminor
            h.rdev.0,
            h.rdev.1,
            size_field(namesize as u64)?,
            0, // check (only the `070702` format has one)
        ];
        let mut header = String::with_capacity(HEADER_LEN);
        header.push_str(MAGIC);
        for field in fields {
            header.push_str(&format!("{field:08X}"));
        }
        self.out.write_all(header.as_bytes())?;
        self.out.write_all(h.name)?;
        self.out.write_all(&[0])?;
        self.pad(HEADER_LEN + namesize)
    }

    /// Pads after `len` bytes to the format's 4-byte alignment.
    fn pad(&mut self, len: usize) -> io::Result<()> {
        let zeros = [0u8; 3];
        self.out.write_all(&zeros[..(4 - len % 4) % 4])
    }
}

fn size_field(size: u64) -> io::Result<u32> {
    u32::try_from(size).map_err(|_| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{size} bytes is too big for a newc cpio entry (4 GiB at most)"),
        )
    })
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _, path::Path, process::Command};

    use super::*;

    fn archive(build: impl FnOnce(&mut Writer<Vec<u8>>) -> io::Result<()>) -> Vec<u8> {
        let mut writer = Writer::new(Vec::new());
        build(&mut writer).unwrap();
        writer.finish().unwrap()
    }

    #[test]
    fn headers_follow_the_newc_layout_and_alignment() {
        let bytes = archive(|w| w.file(b"init", 0o755, 7, 5, &mut &b"hello"[..]));
        let text = String::from_utf8_lossy(&bytes);
        // magic, ino 1, mode, uid, gid, nlink, mtime, filesize, devmajor,
        // devminor, rdevmajor, rdevminor, namesize ("init\0"), check
        let header = "070701\
                      00000001\
                      000081ED\
                      00000000\
                      00000000\
                      00000001\
                      00000007\
                      00000005\
                      00000000\
                      00000000\
                      00000000\
                      00000000\
                      00000005\
                      00000000";
        assert!(text.starts_with(header), "{text:?}");
        // 110 + 5 = 115, padded to 116; data 5, padded to 8.
        assert_eq!(&bytes[110..116], b"init\0\0");
        assert_eq!(&bytes[116..124], b"hello\0\0\0");
        assert_eq!(&bytes[124..130], b"070701");
        assert!(text.contains("TRAILER!!!"));
        assert_eq!(bytes.len() % 4, 0);
    }

    #[test]
    fn a_file_that_changed_size_is_an_error() {
        let mut writer = Writer::new(Vec::new());
        let short = writer.file(b"f", 0o644, 0, 10, &mut &b"abc"[..]);
        assert_eq!(short.unwrap_err().kind(), io::ErrorKind::InvalidData);
        let mut writer = Writer::new(Vec::new());
        let long = writer.file(b"f", 0o644, 0, 2, &mut &b"abc"[..]);
        assert_eq!(long.unwrap_err().kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn names_must_be_non_empty_without_nul() {
        let mut writer = Writer::new(Vec::new());
        assert!(writer.dir(b"", 0o755).is_err());
        assert!(writer.dir(b"a\0b", 0o755).is_err());
    }

    /// GNU cpio (`cargo xtask setup` installs it) reads back what the
    /// writer wrote: folders, files with their modes, symlinks.
    #[test]
    fn gnu_cpio_extracts_the_archive() {
        let tmp = tempfile::tempdir().unwrap();
        let bytes = archive(|w| {
            w.dir(b"bin", 0o755)?;
            w.file(b"bin/tool", 0o750, 0, 3, &mut &b"abc"[..])?;
            w.symlink(b"bin/link", b"/bin/tool")?;
            w.dir(b"etc", 0o700)?;
            w.file(b"etc/empty", 0o600, 0, 0, &mut io::empty())?;
            w.file(b"etc/odd size", 0o644, 0, 7, &mut &b"1234567"[..])
        });
        let archive_path = tmp.path().join("a.cpio");
        fs::write(&archive_path, &bytes).unwrap();
        let out_dir = tmp.path().join("out");
        fs::create_dir(&out_dir).unwrap();
        let out = match Command::new("cpio")
            .args(["-i", "-d", "--quiet", "--no-absolute-filenames", "-F"])
            .arg(&archive_path)
            .current_dir(&out_dir)
            .output()
        {
            Ok(out) => out,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                panic!("cpio is not installed: run `cargo xtask setup`")
            }
            Err(err) => panic!("cpio: {err}"),
        };
        assert!(out.status.success(), "cpio: {out:?}");
        let mode = |p: &str| fs::metadata(out_dir.join(p)).unwrap().permissions().mode() & 0o7777;
        assert_eq!(fs::read(out_dir.join("bin/tool")).unwrap(), b"abc");
        assert_eq!(mode("bin/tool"), 0o750);
        assert_eq!(
            fs::read_link(out_dir.join("bin/link")).unwrap(),
            Path::new("/bin/tool")
        );
        assert_eq!(mode("etc"), 0o700);
        assert_eq!(fs::read(out_dir.join("etc/empty")).unwrap(), b"");
        assert_eq!(fs::read(out_dir.join("etc/odd size")).unwrap(), b"1234567");
    }
}
