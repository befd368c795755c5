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
    let run = || -> Result<u64> {
        match args.workload {
            WorkerWorkload::SequentialRead => sequential_read(&args.path),
            WorkerWorkload::MmapTouch => mmap_touch(&args.path),
            WorkerWorkload::Pread => pread(&args.path, args.calls),
            WorkerWorkload::OpenClose => open_close(&args.path, args.files, args.calls),
            WorkerWorkload::OpenCloseFile => open_close_file(&args.path, args.calls),
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
        assert!(open_close_file(&dir.path().join("missing"), 1).is_err());
        assert!(sequential_read(&dir.path().join("missing")).is_err());
        assert_eq!(storm_file_name(7), "f0007.dat");
        assert_eq!(spawn(Path::new("/bin/true"), 3).unwrap(), 3);
        assert!(spawn(Path::new("/bin/false"), 1).is_err());
    }
}
