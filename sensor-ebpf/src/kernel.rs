//! Reading kernel structures with offsets taken from the running kernel's
//! BTF at load time (aya has no CO-RE for Rust programs), for any tier: the
//! current task, a descriptor's file and inode, the watch map check. The
//! agent sets every `OFF_*` global; aya freezes them in `.rodata`, so the
//! verifier sees constants. Offsets into one tier's own context (the
//! tracepoint tier's `pt_regs`) are declared in that tier.

use aya_ebpf::{
    Global,
    helpers::{bpf_get_current_task, bpf_get_current_task_btf, bpf_probe_read_kernel},
};
use sensor_common::{FileKey, FileState, WatchEntry, counter, ino_filter, watch_flag};

use crate::maps::{WATCHED, WATCHED_INO_FILTER, count};

/// Declares load-time offset globals, each named in
/// `sensor_common::offset_global` and set by the agent.
macro_rules! offsets {
    ($($name:ident),* $(,)?) => {
        $(
            #[unsafe(no_mangle)]
            pub static $name: aya_ebpf::Global<u64> = aya_ebpf::Global::new(0);
        )*
    };
}
pub(crate) use offsets;

offsets!(
    OFF_TASK_FILES,
    OFF_TASK_REAL_PARENT,
    OFF_TASK_TGID,
    OFF_TASK_PID,
    OFF_TASK_MM,
    OFF_TASK_START_TIME,
    OFF_TASK_EXIT_CODE,
    OFF_TASK_SIGNAL,
    OFF_TASK_TI_STATUS,
    OFF_SIGNAL_LIVE,
    OFF_FILES_FDT,
    OFF_FDT_MAX_FDS,
    OFF_FDT_FD,
    OFF_FILE_INODE,
    OFF_FILE_POS,
    OFF_FILE_FLAGS,
    OFF_FILE_MODE,
    OFF_INODE_INO,
    OFF_INODE_SB,
    OFF_INODE_SIZE,
    OFF_INODE_MODE,
    OFF_FILE_PRIVATE_DATA,
    OFF_SOCKET_SK,
    OFF_SKC_FAMILY,
    OFF_SKC_DADDR,
    OFF_SKC_DPORT,
    OFF_SKC_V6_DADDR,
    OFF_INODE_WINDOW,
    OFF_SB_DEV,
    OFF_MM_ARG_START,
    OFF_MM_ARG_END,
    OFF_MM_EXE_FILE,
    OFF_INODE_MTIME_SEC,
    OFF_INODE_MTIME_NSEC,
    OFF_TASK_FS,
    OFF_FS_PWD_DENTRY,
    OFF_DENTRY_INODE,
    OFF_DENTRY_PARENT,
    OFF_DENTRY_NAME,
    OFF_FILE_PATH_DENTRY,
    OFF_SB_MAGIC,
);

/// Reads a `T` at `base + offset` in kernel memory.
#[inline(always)]
pub fn read_at<T>(base: u64, offset: &Global<u64>) -> Option<T> {
    if base == 0 {
        return None;
    }
    let addr = base + offset.load();
    // SAFETY: bpf_probe_read_kernel checks the address; a bad one is an error.
    match unsafe { bpf_probe_read_kernel(addr as *const T) } {
        Ok(v) => Some(v),
        Err(_) => {
            count(counter::KERNEL_READ_FAILED);
            None
        }
    }
}

/// Reads a `T` at `base + offset` with a plain load, where `base` is a
/// BTF-typed kernel pointer (the trusted current task, a `tp_btf`
/// argument, or a pointer loaded from one). The offset is a frozen
/// constant, so the verifier checks the access against the struct's BTF;
/// a fault (a NULL or stale pointer) reads as zero instead of trapping.
/// Several times cheaper than `bpf_probe_read_kernel`.
#[inline(always)]
pub fn btf_load<T>(base: u64, offset: &Global<u64>) -> T {
    // SAFETY: see above: the verifier admits only BTF-checked accesses and
    // the JIT guards them with an exception-table entry.
    unsafe { core::ptr::read_volatile((base + offset.load()) as *const T) }
}

/// The current `task_struct` as a BTF-typed pointer, for `btf_load`.
#[inline(always)]
pub fn current_task_btf() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_current_task_btf() as u64 }
}

/// The current `task_struct`.
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: the helper has no preconditions.
    unsafe { bpf_get_current_task() }
}

/// `thread_info.status` bit the x86 entry code sets for compat syscalls.
const TS_COMPAT: u32 = 0x0002;

/// Whether the current syscall is an ia32 one (`int $0x80`, or a 32-bit
/// binary), which the kernel marks in `thread_info.status` until it returns
/// to user space.
#[inline(always)]
pub fn in_compat_syscall() -> bool {
    btf_load::<u32>(current_task_btf(), &OFF_TASK_TI_STATUS) & TS_COMPAT != 0
}

/// `real_parent->tgid` of a task.
#[inline(always)]
pub fn parent_tgid(task: u64) -> u32 {
    let Some(parent) = read_at::<u64>(task, &OFF_TASK_REAL_PARENT) else {
        return 0;
    };
    read_at::<u32>(parent, &OFF_TASK_TGID).unwrap_or(0)
}

/// The `struct file *` behind descriptor `fd` of the current process.
/// `task->files->fdt` are BTF-typed loads; the descriptor array is a
/// pointer to pointers, which BTF loads cannot follow, so the rest are
/// probe reads.
#[inline(always)]
pub fn file_of_fd(fd: u64) -> Option<u64> {
    let files: u64 = btf_load(current_task_btf(), &OFF_TASK_FILES);
    if files == 0 {
        return None;
    }
    let fdt: u64 = btf_load(files, &OFF_FILES_FDT);
    if fdt == 0 {
        return None;
    }
    let max_fds: u32 = btf_load(fdt, &OFF_FDT_MAX_FDS);
    if fd >= max_fds as u64 {
        return None;
    }
    let fd_array: u64 = btf_load(fdt, &OFF_FDT_FD);
    if fd_array == 0 {
        return None;
    }
    // SAFETY: bpf_probe_read_kernel checks the address.
    let file = unsafe { bpf_probe_read_kernel((fd_array + fd * 8) as *const u64) }.ok()?;
    if file == 0 { None } else { Some(file) }
}

/// A file and what the watch map says about it.
pub struct Watched {
    pub file_ptr: u64,
    /// `i_size` when the descriptor was resolved.
    pub size: u64,
    pub key: FileKey,
    pub entry: WatchEntry,
}

/// The inode fields the checks need. `i_sb`, `i_ino` and `i_size` sit
/// within a few words of each other (bytes 40-88 for years of kernels), so
/// one 64-byte probe read at `OFF_INODE_WINDOW` usually fetches all three;
/// a field outside the window is read on its own. The offsets are verifier
/// constants, so the untaken branches cost nothing.
struct InodeFields {
    sb: u64,
    ino: u64,
    size: u64,
}

const INODE_WINDOW_WORDS: usize = 8;

impl InodeFields {
    #[inline(always)]
    fn read(inode: u64) -> Option<Self> {
        let base = OFF_INODE_WINDOW.load();
        // SAFETY: bpf_probe_read_kernel checks the address.
        let window = match unsafe {
            bpf_probe_read_kernel((inode + base) as *const [u64; INODE_WINDOW_WORDS])
        } {
            Ok(w) => w,
            Err(_) => {
                count(counter::KERNEL_READ_FAILED);
                return None;
            }
        };
        let field = |offset: &Global<u64>| -> Option<u64> {
            let rel = offset.load().wrapping_sub(base);
            if rel % 8 == 0 && rel < (INODE_WINDOW_WORDS * 8) as u64 {
                window.get((rel / 8) as usize).copied()
            } else {
                read_at::<u64>(inode, offset)
            }
        };
        Some(Self {
            sb: field(&OFF_INODE_SB)?,
            ino: field(&OFF_INODE_INO)?,
            size: (field(&OFF_INODE_SIZE)? as i64).max(0) as u64,
        })
    }
}

/// Resolves `fd` to its inode and looks it up in the watch map: the one
/// check every hooked syscall pays.
#[inline(always)]
pub fn watched_fd(fd: u64) -> Option<Watched> {
    watched_file(file_of_fd(fd)?)
}

/// Looks the file at `file_ptr` (a `struct file *`) up in the watch map.
#[inline(always)]
pub fn watched_file(file_ptr: u64) -> Option<Watched> {
    match lookup_file(file_ptr) {
        Lookup::Watched(w) => Some(w),
        _ => None,
    }
}

/// What the watch map says of a file: watched, or not (with its
/// superblock, for the opens that go on to ask whether it is a process's
/// memory), or unreadable.
pub enum Lookup {
    Watched(Watched),
    Unwatched { sb: u64 },
    Unknown,
}

/// [`watched_file`], keeping the superblock of an unwatched file.
#[inline(always)]
pub fn lookup_file(file_ptr: u64) -> Lookup {
    let Some(inode) = read_at::<u64>(file_ptr, &OFF_FILE_INODE) else {
        return Lookup::Unknown;
    };
    let Some(fields) = InodeFields::read(inode) else {
        return Lookup::Unknown;
    };
    if !maybe_watched(fields.ino) {
        return Lookup::Unwatched { sb: fields.sb };
    }
    let Some(dev) = read_at::<u32>(fields.sb, &OFF_SB_DEV) else {
        return Lookup::Unknown;
    };
    let key = FileKey {
        dev: dev as u64,
        ino: fields.ino,
    };
    // SAFETY: the value is copied out at once.
    match unsafe { WATCHED.get(&key) } {
        Some(&entry) => Lookup::Watched(Watched {
            file_ptr,
            size: fields.size,
            key,
            entry,
        }),
        None => Lookup::Unwatched { sb: fields.sb },
    }
}

/// The identity and `i_mode` of the file behind `fd`, watched or not (a
/// copy's destination: a file, a pipe, a socket).
#[inline(always)]
pub fn fd_identity(fd: u64) -> Option<(FileKey, u32)> {
    file_kind(file_of_fd(fd)?)
}

/// The identity and `i_mode` of the file at `file_ptr`.
#[inline(always)]
pub fn file_kind(file_ptr: u64) -> Option<(FileKey, u32)> {
    let (key, inode, _) = file_identity(file_ptr)?;
    let mode = read_at::<u16>(inode, &OFF_INODE_MODE)?;
    Some((key, u32::from(mode)))
}

/// The identity of the file at `file_ptr` (a `struct file *`), with its
/// inode's address and size.
#[inline(always)]
fn file_identity(file_ptr: u64) -> Option<(FileKey, u64, u64)> {
    let inode = read_at::<u64>(file_ptr, &OFF_FILE_INODE)?;
    let (key, size) = inode_identity(inode)?;
    Some((key, inode, size))
}

/// The identity and size of `inode`.
#[inline(always)]
pub fn inode_identity(inode: u64) -> Option<(FileKey, u64)> {
    let fields = InodeFields::read(inode)?;
    let dev = read_at::<u32>(fields.sb, &OFF_SB_DEV)?;
    let key = FileKey {
        dev: dev as u64,
        ino: fields.ino,
    };
    Some((key, fields.size))
}

/// The size and modification time of `inode`.
#[inline(always)]
pub fn inode_state(inode: u64, size: u64) -> FileState {
    FileState {
        size,
        mtime_sec: read_at::<i64>(inode, &OFF_INODE_MTIME_SEC).unwrap_or(0),
        mtime_nsec: read_at::<u32>(inode, &OFF_INODE_MTIME_NSEC).unwrap_or(0),
        _pad: 0,
    }
}

/// The identity and state of the file at `file_ptr` (a `struct file *`).
#[inline(always)]
pub fn file_state(file_ptr: u64) -> Option<(FileKey, FileState)> {
    let (key, inode, size) = file_identity(file_ptr)?;
    Some((key, inode_state(inode, size)))
}

/// The identity of the file behind `fd`, watched or not.
#[inline(always)]
pub fn fd_key(fd: u64) -> Option<FileKey> {
    file_identity(file_of_fd(fd)?).map(|(key, ..)| key)
}

/// The identity of the current task's working directory
/// (`task->fs->pwd.dentry->d_inode`).
#[inline(always)]
pub fn cwd_key() -> Option<FileKey> {
    let fs = read_at::<u64>(current_task(), &OFF_TASK_FS)?;
    let dentry = read_at::<u64>(fs, &OFF_FS_PWD_DENTRY)?;
    let inode = read_at::<u64>(dentry, &OFF_DENTRY_INODE)?;
    inode_identity(inode).map(|(key, _)| key)
}

/// The peer of the socket file at `file_ptr`: family, address (network
/// order; IPv4 in the first four bytes), port (host order).
#[inline(always)]
pub fn socket_peer_of(file_ptr: u64) -> Option<(u16, [u8; 16], u16)> {
    const AF_INET: u16 = 2;
    const AF_INET6: u16 = 10;
    let socket = read_at::<u64>(file_ptr, &OFF_FILE_PRIVATE_DATA)?;
    let sk = read_at::<u64>(socket, &OFF_SOCKET_SK)?;
    let family = read_at::<u16>(sk, &OFF_SKC_FAMILY)?;
    let port = u16::from_be(read_at::<u16>(sk, &OFF_SKC_DPORT).unwrap_or(0));
    let mut addr = [0u8; 16];
    match family {
        AF_INET => {
            let v4 = read_at::<[u8; 4]>(sk, &OFF_SKC_DADDR)?;
            addr[..4].copy_from_slice(&v4);
        }
        AF_INET6 => addr = read_at::<[u8; 16]>(sk, &OFF_SKC_V6_DADDR)?,
        _ => {}
    }
    Some((family, addr, port))
}

/// The identity of the current process's executable (`mm->exe_file`).
#[inline(always)]
pub fn current_exe() -> Option<FileKey> {
    let mm = read_at::<u64>(current_task(), &OFF_TASK_MM)?;
    let file_ptr = read_at::<u64>(mm, &OFF_MM_EXE_FILE)?;
    file_identity(file_ptr).map(|(key, ..)| key)
}

/// False when `ino` is certainly not a watched inode number (the
/// filter's bit is clear); most unwatched files stop here.
#[inline(always)]
fn maybe_watched(ino: u64) -> bool {
    let bit = ino_filter::bit(ino);
    WATCHED_INO_FILTER
        .get(bit / 64)
        .is_none_or(|&word| (word >> (bit % 64)) & 1 != 0)
}

/// The weight file behind `fd`, for the hooks on descriptors a process
/// already holds (read, mmap, close), which check the holder prefilter
/// first.
#[inline(always)]
pub fn weight_fd(fd: u64) -> Option<Watched> {
    let w = watched_fd(fd)?;
    (w.entry.flags & watch_flag::WEIGHT != 0).then_some(w)
}

/// The weight file at `file_ptr`, for the LSM hooks.
#[inline(always)]
pub fn weight_file(file_ptr: u64) -> Option<Watched> {
    let w = watched_file(file_ptr)?;
    (w.entry.flags & watch_flag::WEIGHT != 0).then_some(w)
}

impl Watched {
    /// The descriptor's file position (`file->f_pos`).
    #[inline(always)]
    pub fn position(&self) -> u64 {
        read_at::<u64>(self.file_ptr, &OFF_FILE_POS).unwrap_or(0)
    }
}
