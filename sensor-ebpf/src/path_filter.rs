//! The prefilter on path operations (`sensor_common::path_filter` says
//! what passes and why). Without it every successful rename, unlink, ...
//! on the host is a record the agent must resolve: `cargo xtask bench
//! --only file-churn` measured 1.6x on create+rename+unlink of unwatched
//! files. Here a path costs one string read into per-CPU scratch memory, a
//! backwards scan of its last component and two or three hash lookups.

use aya_ebpf::{
    helpers::{bpf_probe_read_kernel_str_bytes, bpf_probe_read_user_str_bytes},
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
};
use sensor_common::{
    CHANGE_PATH_LEN,
    path_filter::{BLOB_PREFIX, FNV_OFFSET, ON, step},
};

/// Hashes of the names that pass, written by the agent; sized by it.
#[map]
pub static PATH_NAMES: HashMap<u64, u8> = HashMap::with_max_entries(65_536, 0);

/// Index 0: [`ON`] when the agent has filled `PATH_NAMES` (until then,
/// and after it overflowed, every path operation passes).
#[map]
pub static PATH_FILTER: Array<u32> = Array::with_max_entries(1, 0);

/// Where a path is read to be looked at: 256 bytes are too many for the
/// stack.
#[map]
static PATH_SCRATCH: PerCpuArray<[u8; CHANGE_PATH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Whether the filter is on.
#[inline(always)]
pub fn enabled() -> bool {
    PATH_FILTER.get(0).is_some_and(|&v| v == ON)
}

/// [`ww_path_name`]'s flag: learn the name instead of looking it up.
const LEARN: u64 = 1;
/// [`ww_path_name`]'s flag: the string is in kernel memory (io_uring's
/// copy of a path, `uring_change.rs`), not the user's.
const KERNEL: u64 = 2;

/// Whether the user's path at `ptr` may name something the agent follows
/// (false for no path: `ptr` 0).
#[inline(always)]
pub fn passes(ptr: u64) -> bool {
    ptr != 0 && ww_path_name(ptr, 0) != 0
}

/// [`passes`] for a path string in kernel memory.
#[inline(always)]
pub fn passes_kernel(ptr: u64) -> bool {
    ptr != 0 && ww_path_name(ptr, KERNEL) != 0
}

/// Lets the last component of the user's path at `ptr` through from now
/// on: the new name of something a rename or link that passed moved. The
/// agent learns it too, but only when it handles the record (up to 0.1 s
/// later), and the file's next rename or unlink may come first. A full
/// map turns the filter off (every path operation passes) until the
/// agent's next rebuild.
#[inline(always)]
pub fn learn(ptr: u64) {
    if ptr != 0 {
        ww_path_name(ptr, LEARN);
    }
}

/// [`learn`] for a path string in kernel memory.
#[inline(always)]
pub fn learn_kernel(ptr: u64) {
    if ptr != 0 {
        ww_path_name(ptr, LEARN | KERNEL);
    }
}

/// [`passes`] (`flags` without [`LEARN`]) or [`learn`] (with it) for a
/// path, the user's or (with [`KERNEL`]) a kernel string. A global
/// (exported) function: the verifier checks its loop once, on its own,
/// instead of at each of the path operations' call sites (which exceeds
/// its budget). Arguments and result are plain scalars, as a global
/// function's must be.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ww_path_name(ptr: u64, flags: u64) -> i64 {
    i64::from(check(ptr, flags & LEARN != 0, flags & KERNEL != 0))
}

#[inline(always)]
fn check(ptr: u64, learn: bool, kernel: bool) -> bool {
    let Some(buf) = PATH_SCRATCH.get_ptr_mut(0) else {
        return true;
    };
    // SAFETY: the per-CPU value is ours for this program's run.
    let buf = unsafe { &mut *buf };
    // SAFETY: both helpers check the address.
    let read = unsafe {
        if kernel {
            bpf_probe_read_kernel_str_bytes(ptr as *const u8, buf)
        } else {
            bpf_probe_read_user_str_bytes(ptr as *const u8, buf)
        }
    };
    let len = match read {
        Ok(s) => s.len(),
        Err(_) => return true,
    };
    // Empty (`AT_EMPTY_PATH`: the call acted on a descriptor's file) or
    // cut short: the agent decides.
    if len == 0 || len >= CHANGE_PATH_LEN - 1 {
        return true;
    }
    let name = last_component(buf, len);
    if learn {
        if PATH_NAMES.insert(&name.hash, &1, 0).is_err()
            && let Some(on) = PATH_FILTER.get_ptr_mut(0)
        {
            // SAFETY: an array value stays valid for the program's run.
            unsafe { *on = 0 };
        }
        return true;
    }
    name.passes(buf, len)
}

/// The last component of a path, as the filter looks at it.
struct Name {
    hash: u64,
    /// The hash of its extension, when it has a dot.
    ext: Option<u64>,
    /// Its length; `None` for a path ending in `/` (a directory named
    /// with a trailing slash: rare), which passes without a look.
    len: Option<usize>,
}

impl Name {
    #[inline(always)]
    fn passes(&self, buf: &[u8; CHANGE_PATH_LEN], len: usize) -> bool {
        let Some(name_len) = self.len else {
            return true;
        };
        let known = |hash: &u64| {
            // SAFETY: only the presence is used.
            unsafe { PATH_NAMES.get(hash) }.is_some()
        };
        known(&self.hash)
            || self.ext.is_some_and(|ext| known(&ext))
            || is_blob(buf, len.wrapping_sub(name_len), name_len)
    }
}

/// Scans `buf[..len]` from its end and hashes the last component, up to
/// the `/` before it.
///
/// Written for the verifier: one loop with one exit test per byte (a loop
/// in two phases, skip the slashes then hash, makes it walk the second
/// once per exit of the first), and nothing whose value range it could
/// track from byte to byte (the hashes' multiplications make them
/// unknowns); the blob prefix is read once, after the loop.
#[inline(always)]
fn last_component(buf: &[u8; CHANGE_PATH_LEN], len: usize) -> Name {
    const MASK: usize = CHANGE_PATH_LEN - 1;
    if buf.get(len.wrapping_sub(1) & MASK) == Some(&b'/') {
        return Name {
            hash: 0,
            ext: None,
            len: None,
        };
    }
    // Hidden from the optimiser: knowing `len < 256`, it drops the loop's
    // own bound, and 6.1's verifier cannot then see the loop end (it gave
    // up after 8192 jumps).
    // SAFETY: a read of a local.
    let len = unsafe { core::ptr::read_volatile(&len) };
    let mut name = FNV_OFFSET;
    let mut ext = FNV_OFFSET;
    let mut dot = false;
    let mut name_len = len;
    for k in 0..CHANGE_PATH_LEN {
        if k >= len {
            break;
        }
        // Masked: the verifier sees an index inside the buffer whatever
        // it knows of `len`.
        let Some(&b) = buf.get((len - 1 - k) & MASK) else {
            break;
        };
        if b == b'/' {
            name_len = k;
            break;
        }
        name = step(name, b);
        if !dot {
            if b == b'.' {
                ext = step(ext, b'.');
                dot = true;
            } else {
                ext = step(ext, b.to_ascii_lowercase());
            }
        }
    }
    Name {
        hash: name,
        ext: dot.then_some(ext),
        len: Some(name_len),
    }
}

/// Whether the name of `name_len` bytes at `start` begins like an Ollama
/// blob's (`sha256`).
#[inline(always)]
fn is_blob(buf: &[u8; CHANGE_PATH_LEN], start: usize, name_len: usize) -> bool {
    const MASK: usize = CHANGE_PATH_LEN - 1;
    if name_len < BLOB_PREFIX.len() {
        return false;
    }
    for (i, want) in BLOB_PREFIX.iter().enumerate() {
        if buf.get((start + i) & MASK) != Some(want) {
            return false;
        }
    }
    true
}
