//! `cargo xtask bench-worker` (hidden): runs one workload once to warm up
//! (page cache, code, allocator), then `--timed` times timed with
//! `Instant`, and prints the work done and each timed run's nanoseconds on
//! stdout. `bench` starts a fresh
//! worker for every measurement so the process is created after the
//! configuration under test (auditd only audits processes created while
//! auditing is on).
//!
//! The loops call libc directly: xtask is built without optimisation, and
//! every nanosecond of wrapper code per call would dilute the ratios.

use std::{
    ffi::CString,
    fs::File,
    os::{fd::AsRawFd as _, unix::ffi::OsStrExt as _},
    path::Path,
    time::Instant,
};

use anyhow::{Context as _, Result, bail, ensure};
use nix::libc;

use crate::args::{BenchWorkerArgs, WorkerWorkload};

/// Read size of the weight-load workload.
const READ_CHUNK: usize = 1 << 20;
/// Page size the mmap workload touches and the pread size.
pub const PAGE: usize = 4096;

pub fn execute(args: &BenchWorkerArgs) -> Result<()> {
    if let Some(taint) = &args.taint {
        std::hint::black_box(
            std::fs::read(taint).with_context(|| format!("cannot read {}", taint.display()))?,
        );
    }
    let run = || -> Result<u64> {
        match args.workload {
            WorkerWorkload::SequentialRead => sequential_read(&args.path),
            WorkerWorkload::MmapTouch => mmap_touch(&args.path),
            WorkerWorkload::Pread => pread(&args.path, args.calls),
            WorkerWorkload::UringRead => uring_read(&args.path, args.calls),
            WorkerWorkload::Pwrite => pwrite(&args.path, args.calls),
            WorkerWorkload::OpenClose => open_close(&args.path, args.files, args.calls),
            WorkerWorkload::OpenCloseFile => open_close_file(&args.path, args.calls),
            WorkerWorkload::FileChurn => file_churn(&args.path, args.files, args.calls),
            WorkerWorkload::Spawn => spawn(&args.path, args.calls),
        }
    };
    // The work figure keeps the result observable, so no loop can be
    // optimised away, and lets the parent check the run did everything.
    let work = run().context("warm-up run failed")?;
    let mut line = work.to_string();
    for _ in 0..args.timed {
        let start = Instant::now();
        let again = run()?;
        let elapsed = start.elapsed();
        ensure!(
            again == work,
            "a timed run did {again} units of work, the warm-up {work}"
        );
        line.push_str(&format!(" {}", elapsed.as_nanos()));
    }
    println!("{line}");
    Ok(())
}

/// Reads the whole file with 1 MiB `read` calls; returns the bytes read.
fn sequential_read(path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; READ_CHUNK];
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let fd = file.as_raw_fd();
    let mut total = 0u64;
    loop {
        // SAFETY: `buf` is valid for READ_CHUNK bytes and outlives the call.
        let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), READ_CHUNK) };
        match n {
            0 => break,
            n if n < 0 => {
                return Err(std::io::Error::last_os_error())
                    .with_context(|| format!("cannot read {}", path.display()));
            }
            n => total += n as u64,
        }
    }
    Ok(total)
}

/// Maps the whole file MAP_PRIVATE read-only (how safetensors loads) and
/// reads one byte of every 4 KiB page; returns the pages touched.
fn mmap_touch(path: &Path) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let len = usize::try_from(file.metadata()?.len())?;
    ensure!(len > 0, "{} is empty", path.display());
    // SAFETY: a fresh private read-only mapping of a file we hold open;
    // nothing else aliases it.
    let addr = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            len,
            libc::PROT_READ,
            libc::MAP_PRIVATE,
            file.as_raw_fd(),
            0,
        )
    };
    if addr == libc::MAP_FAILED {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot mmap {}", path.display()));
    }
    let base = addr.cast::<u8>();
    let mut sum = 0u64;
    let mut pages = 0u64;
    let mut offset = 0;
    while offset < len {
        // SAFETY: offset < len, inside the mapping; volatile so every page
        // is really faulted in.
        sum = sum.wrapping_add(u64::from(unsafe { base.add(offset).read_volatile() }));
        pages += 1;
        offset += PAGE;
    }
    // SAFETY: the mapping made above, unmapped once.
    unsafe { libc::munmap(addr, len) };
    std::hint::black_box(sum);
    Ok(pages)
}

/// `calls` 4 KiB `pread`s at page offsets cycling through the file;
/// returns the calls made.
fn pread(path: &Path, calls: u64) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let pages = file.metadata()?.len() / PAGE as u64;
    ensure!(pages > 0, "{} is smaller than one page", path.display());
    let fd = file.as_raw_fd();
    let mut buf = [0u8; PAGE];
    for i in 0..calls {
        let offset = ((i % pages) * PAGE as u64) as libc::off_t;
        // SAFETY: `buf` is valid for PAGE bytes.
        let n = unsafe { libc::pread(fd, buf.as_mut_ptr().cast(), PAGE, offset) };
        if n != PAGE as isize {
            bail!(
                "pread of {} at {offset} returned {n}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(calls)
}

/// `calls` 4 KiB `pwrite`s at page offsets cycling through the file (its
/// size stays); returns the calls made.
fn pwrite(path: &Path, calls: u64) -> Result<u64> {
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {} for writing", path.display()))?;
    let pages = file.metadata()?.len() / PAGE as u64;
    ensure!(pages > 0, "{} is smaller than one page", path.display());
    let fd = file.as_raw_fd();
    let buf = [0x5au8; PAGE];
    for i in 0..calls {
        let offset = ((i % pages) * PAGE as u64) as libc::off_t;
        // SAFETY: `buf` is valid for PAGE bytes.
        let n = unsafe { libc::pwrite(fd, buf.as_ptr().cast(), PAGE, offset) };
        if n != PAGE as isize {
            bail!(
                "pwrite of {} at {offset} returned {n}: {}",
                path.display(),
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(calls)
}

/// The name of storm file `i` in its folder.
/// Spawns `program` `count` times, waiting for each; returns the spawns.
fn spawn(program: &Path, count: u64) -> Result<u64> {
    for _ in 0..count {
        let status = std::process::Command::new(program)
            .status()
            .with_context(|| format!("cannot run {}", program.display()))?;
        ensure!(status.success(), "{} failed: {status}", program.display());
    }
    Ok(count)
}

pub fn storm_file_name(i: u32) -> String {
    format!("f{i:04}.dat")
}

/// `calls` open+close pairs cycling through `files` files of `dir`;
/// returns the pairs made.
fn open_close(dir: &Path, files: u32, calls: u64) -> Result<u64> {
    ensure!(files > 0, "the open/close storm needs at least one file");
    let paths = (0..files)
        .map(|i| c_path(&dir.join(storm_file_name(i))))
        .collect::<Result<Vec<_>>>()?;
    for i in 0..calls {
        open_close_once(&paths[(i % u64::from(files)) as usize])?;
    }
    Ok(calls)
}

/// `calls` open+close pairs of the one file `path`; returns the pairs
/// made.
fn open_close_file(path: &Path, calls: u64) -> Result<u64> {
    let path = c_path(path)?;
    for _ in 0..calls {
        open_close_once(&path)?;
    }
    Ok(calls)
}

/// `calls` rounds, over `files` names in `dir`, of: create a file
/// (`open(O_CREAT | O_EXCL)` + close), rename it, unlink the new name;
/// returns the rounds made. Absolute paths, as build tools and package
/// managers mostly use.
fn file_churn(dir: &Path, files: u32, calls: u64) -> Result<u64> {
    ensure!(files > 0, "the file churn needs at least one name");
    let names = (0..files)
        .map(|i| {
            let created = c_path(&dir.join(format!("c{i:04}.tmp")))?;
            let renamed = c_path(&dir.join(format!("r{i:04}.tmp")))?;
            Ok((created, renamed))
        })
        .collect::<Result<Vec<_>>>()?;
    let fail = |what: &str, path: &CString| {
        Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot {what} {}", path.to_string_lossy()))
    };
    for i in 0..calls {
        let (created, renamed) = &names[(i % u64::from(files)) as usize];
        // SAFETY: `created` is NUL-terminated.
        let fd = unsafe {
            libc::open(
                created.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o600,
            )
        };
        if fd < 0 {
            return fail("create", created);
        }
        // SAFETY: closes the descriptor opened above, once.
        unsafe { libc::close(fd) };
        // SAFETY: both paths are NUL-terminated.
        if unsafe { libc::rename(created.as_ptr(), renamed.as_ptr()) } != 0 {
            return fail("rename", created);
        }
        // SAFETY: `renamed` is NUL-terminated.
        if unsafe { libc::unlink(renamed.as_ptr()) } != 0 {
            return fail("unlink", renamed);
        }
    }
    Ok(calls)
}

pub fn c_path(path: &Path) -> Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .with_context(|| format!("{} holds a NUL byte", path.display()))
}

/// One `open(O_RDONLY)` + `close` of `path`.
pub fn open_close_once(path: &CString) -> Result<()> {
    // SAFETY: `path` is NUL-terminated.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("cannot open {}", path.to_string_lossy()));
    }
    // SAFETY: closes the descriptor opened above, once.
    unsafe { libc::close(fd) };
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn workloads_do_all_their_work() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.safetensors");
        std::fs::write(&file, vec![1u8; 3 * PAGE + 10]).unwrap();
        assert_eq!(sequential_read(&file).unwrap(), 3 * PAGE as u64 + 10);
        assert_eq!(mmap_touch(&file).unwrap(), 4);
        assert_eq!(pread(&file, 7).unwrap(), 7);
        for i in 0..3 {
            std::fs::write(dir.path().join(storm_file_name(i)), b"").unwrap();
        }
        assert_eq!(open_close(dir.path(), 3, 10).unwrap(), 10);
        assert!(open_close(dir.path(), 4, 10).is_err());
        assert_eq!(open_close_file(&file, 5).unwrap(), 5);
        let churn = dir.path().join("churn");
        std::fs::create_dir(&churn).unwrap();
        assert_eq!(file_churn(&churn, 3, 10).unwrap(), 10);
        assert_eq!(
            std::fs::read_dir(&churn).unwrap().count(),
            0,
            "leaves nothing"
        );
        assert!(open_close_file(&dir.path().join("missing"), 1).is_err());
        assert!(sequential_read(&dir.path().join("missing")).is_err());
        assert_eq!(storm_file_name(7), "f0007.dat");
        assert_eq!(spawn(Path::new("/bin/true"), 3).unwrap(), 3);
        assert!(spawn(Path::new("/bin/false"), 1).is_err());
    }
}

/// `calls` 4 KiB io_uring `IORING_OP_READ`s at page offsets cycling
/// through the file, one request submitted and waited for per
/// `io_uring_enter` (raw syscalls, as `pread` is one syscall per read);
/// returns the calls made.
fn uring_read(path: &Path, calls: u64) -> Result<u64> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let pages = file.metadata()?.len() / PAGE as u64;
    ensure!(pages > 0, "{} is smaller than one page", path.display());
    let ring = uring::Ring::new().context("cannot set up an io_uring")?;
    let mut buf = [0u8; PAGE];
    for i in 0..calls {
        let offset = (i % pages) * PAGE as u64;
        let res = ring.read(file.as_raw_fd(), &mut buf, offset)?;
        ensure!(res == PAGE as i32, "an io_uring read returned {res}");
    }
    Ok(calls)
}

/// The least of io_uring for one request at a time: setup, the three
/// mappings, submit-and-wait. The layouts are the kernel's ABI
/// (include/uapi/linux/io_uring.h).
mod uring {
    use std::{
        io,
        os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        sync::atomic::{AtomicU32, Ordering},
    };

    use nix::libc;

    const IORING_OFF_SQ_RING: i64 = 0;
    const IORING_OFF_CQ_RING: i64 = 0x800_0000;
    const IORING_OFF_SQES: i64 = 0x1000_0000;
    const IORING_ENTER_GETEVENTS: u32 = 1;
    const IORING_OP_READ: u8 = 22;

    #[repr(C)]
    #[derive(Default)]
    struct Params {
        sq_entries: u32,
        cq_entries: u32,
        flags: u32,
        sq_thread_cpu: u32,
        sq_thread_idle: u32,
        features: u32,
        wq_fd: u32,
        resv: [u32; 3],
        sq_off: [u32; 10],
        cq_off: [u32; 10],
    }

    #[repr(C)]
    #[derive(Default, Clone, Copy)]
    struct Sqe {
        opcode: u8,
        flags: u8,
        ioprio: u16,
        fd: i32,
        off: u64,
        addr: u64,
        len: u32,
        rw_flags: u32,
        user_data: u64,
        buf_index: u16,
        personality: u16,
        splice_fd_in: i32,
        addr3: u64,
        pad: u64,
    }

    #[repr(C)]
    struct Cqe {
        user_data: u64,
        res: i32,
        flags: u32,
    }

    pub struct Ring {
        fd: OwnedFd,
        sq: *mut u8,
        cq: *mut u8,
        sqes: *mut Sqe,
        p: Params,
    }

    fn map(fd: i32, len: usize, offset: i64) -> io::Result<*mut u8> {
        // SAFETY: a fresh shared mapping of the ring's memory.
        let addr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                fd,
                offset,
            )
        };
        if addr == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(addr.cast())
    }

    impl Ring {
        pub fn new() -> io::Result<Self> {
            let mut p = Params::default();
            // SAFETY: `p` is a valid io_uring_params for the call.
            let fd = unsafe { libc::syscall(libc::SYS_io_uring_setup, 4u32, &mut p) };
            if fd < 0 {
                return Err(io::Error::last_os_error());
            }
            // SAFETY: the syscall returned a new descriptor we own.
            let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
            let raw = fd.as_raw_fd();
            // sq_off.array is its 7th word; cq_off.cqes its 6th.
            let sq_len = p.sq_off[6] as usize + p.sq_entries as usize * 4;
            let cq_len = p.cq_off[5] as usize + p.cq_entries as usize * size_of::<Cqe>();
            let sq = map(raw, sq_len, IORING_OFF_SQ_RING)?;
            let cq = map(raw, cq_len, IORING_OFF_CQ_RING)?;
            let sqes = map(
                raw,
                p.sq_entries as usize * size_of::<Sqe>(),
                IORING_OFF_SQES,
            )?
            .cast();
            Ok(Self {
                fd,
                sq,
                cq,
                sqes,
                p,
            })
        }

        /// The ring word at `offset` of the mapping at `base`.
        fn word(base: *mut u8, offset: u32) -> &'static AtomicU32 {
            // SAFETY: the offsets come from the kernel and lie inside the
            // mapping, which lives as long as the process (never unmapped).
            unsafe { &*base.add(offset as usize).cast::<AtomicU32>() }
        }

        /// Reads `buf.len()` bytes at `offset` of `fd`; the result.
        pub fn read(&self, fd: i32, buf: &mut [u8], offset: u64) -> io::Result<i32> {
            let (sq_off, cq_off) = (&self.p.sq_off, &self.p.cq_off);
            let tail = Self::word(self.sq, sq_off[1]);
            let mask = Self::word(self.sq, sq_off[2]).load(Ordering::Relaxed);
            let t = tail.load(Ordering::Relaxed);
            let idx = t & mask;
            let sqe = Sqe {
                opcode: IORING_OP_READ,
                fd,
                off: offset,
                addr: buf.as_mut_ptr() as u64,
                len: buf.len() as u32,
                ..Sqe::default()
            };
            // SAFETY: idx is masked into the SQE array and the SQ index
            // array, both of sq_entries entries.
            unsafe {
                self.sqes.add(idx as usize).write(sqe);
                self.sq
                    .add(sq_off[6] as usize)
                    .cast::<u32>()
                    .add(idx as usize)
                    .write(idx);
            }
            tail.store(t.wrapping_add(1), Ordering::Release);
            // SAFETY: plain syscall on our ring.
            let n = unsafe {
                libc::syscall(
                    libc::SYS_io_uring_enter,
                    self.fd.as_raw_fd(),
                    1u32,
                    1u32,
                    IORING_ENTER_GETEVENTS,
                    std::ptr::null::<u8>(),
                    0usize,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            let head = Self::word(self.cq, cq_off[0]);
            let h = head.load(Ordering::Relaxed);
            if h == Self::word(self.cq, cq_off[1]).load(Ordering::Acquire) {
                return Err(io::Error::other("no completion after io_uring_enter"));
            }
            let cmask = Self::word(self.cq, cq_off[2]).load(Ordering::Relaxed);
            // SAFETY: the CQE array starts at cq_off.cqes; the index is masked.
            let res = unsafe {
                (*self
                    .cq
                    .add(cq_off[5] as usize)
                    .cast::<Cqe>()
                    .add((h & cmask) as usize))
                .res
            };
            head.store(h.wrapping_add(1), Ordering::Release);
            Ok(res)
        }
    }
}
