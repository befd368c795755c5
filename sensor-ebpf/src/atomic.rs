//! Atomic add for map values shared between CPUs.

use core::intrinsics::{AtomicOrdering, atomic_xadd};

/// Adds `value` to `*dst` atomically (BPF_XADD); the old value is unused, so
/// it compiles on every BPF CPU version.
#[inline(always)]
pub fn add(dst: *mut u64, value: u64) {
    // SAFETY: callers pass a pointer into a live map value.
    unsafe { atomic_xadd::<u64, u64, { AtomicOrdering::Relaxed }>(dst, value) };
}
