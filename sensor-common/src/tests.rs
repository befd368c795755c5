//! Unit tests of what both sides rely on without checking it at run time:
//! the inode filter's bit function, the coverage segment math the kernel
//! runs on every read, the record sizes, and the uniqueness of the
//! constants that tag records, counters and flags. Field by field layouts
//! (no implicit padding; the same offsets as the kernel crate compiled
//! them, from its BTF) are checked in `sensor/tests/layout.rs`, which has
//! the one list of every shared struct's fields.

extern crate std;

use std::{collections::BTreeSet, vec, vec::Vec};

use super::*;

// --- ino_filter -------------------------------------------------------------

const FILTER_BITS: u64 = 1 << ino_filter::BITS_LOG2;

#[test]
fn ino_filter_words_hold_exactly_its_bits() {
    assert_eq!(u64::from(ino_filter::WORDS) * 64, FILTER_BITS);
}

#[test]
fn ino_filter_bit_stays_inside_the_map() {
    let edges = [
        0,
        1,
        2,
        63,
        64,
        u64::from(u32::MAX),
        1 << 63,
        u64::MAX - 1,
        u64::MAX,
    ];
    let powers = (0..64).map(|s| 1u64 << s);
    let sweep = (0..100_000u64).map(|i| i.wrapping_mul(0x0123_4567_89ab_cdef));
    for ino in edges.into_iter().chain(powers).chain(sweep) {
        let bit = ino_filter::bit(ino);
        assert!(u64::from(bit) < FILTER_BITS, "bit({ino}) = {bit}");
        assert!(bit / 64 < ino_filter::WORDS, "bit({ino}) = {bit}");
    }
}

#[test]
fn ino_filter_bit_is_the_top_bits_of_the_fibonacci_product() {
    // Pinned: the agent fills the map and the kernel reads it with this one
    // function, so a change must be deliberate.
    assert_eq!(ino_filter::bit(0), 0);
    assert_eq!(ino_filter::bit(1), (0x9E37_79B9_7F4A_7C15u64 >> 42) as u32);
    assert_eq!(ino_filter::bit(1), 0x278_DDE);
    assert_eq!(ino_filter::bit(2), 0x0F1_BBC);
}

#[test]
fn ino_filter_spreads_sequential_inodes() {
    // A model directory's files often have sequential inode numbers; the
    // multiply must not put them on a few bits.
    let bits: BTreeSet<u32> = (1_000_000..1_004_096).map(ino_filter::bit).collect();
    assert_eq!(bits.len(), 4096);
}

#[test]
fn ino_filter_passes_about_two_percent_with_100k_watched_files() {
    // The figure in the module doc: 100k watched inode numbers set about
    // 2.4% of the 2^22 bits, so about that share of other inodes pass.
    let mut words = vec![0u64; ino_filter::WORDS as usize];
    let watched = (5_000_000u64..5_100_000).chain((0..100_000u64).map(|i| i * 7919 + 80_000_000));
    for ino in watched {
        let bit = ino_filter::bit(ino);
        words[(bit / 64) as usize] |= 1 << (bit % 64);
    }
    let probes = 200_000u64;
    let passed = (0..probes)
        .map(|i| 900_000_000 + i * 3)
        .filter(|&ino| {
            let bit = ino_filter::bit(ino);
            words[(bit / 64) as usize] >> (bit % 64) & 1 != 0
        })
        .count();
    let share = passed as f64 / probes as f64;
    assert!((0.02..0.06).contains(&share), "{share}");
}

// --- coverage ---------------------------------------------------------------

#[test]
fn coverage_words_hold_exactly_its_segments() {
    assert_eq!(COVERAGE_WORDS as u64 * 64, COVERAGE_SEGMENTS);
    assert_eq!(size_of::<Coverage>() as u64 * 8, COVERAGE_SEGMENTS);
}

/// The bits `Coverage::mark` sets, one segment at a time: bit `i` covers
/// bytes `[i * s, (i + 1) * s)` with `s = ceil(size / 256)`, and anything
/// past the last segment counts in it.
fn reference_mark(offset: u64, len: u64, size: u64) -> Coverage {
    let mut c = Coverage::default();
    if size == 0 || len == 0 {
        return c;
    }
    let s = size.div_ceil(COVERAGE_SEGMENTS);
    for i in 0..COVERAGE_SEGMENTS {
        let lo = i * s;
        let hi = if i == COVERAGE_SEGMENTS - 1 {
            u64::MAX
        } else {
            (i + 1) * s
        };
        if offset < hi && offset + len > lo {
            c.words[(i / 64) as usize] |= 1 << (i % 64);
        }
    }
    c
}

fn marked(offset: u64, len: u64, size: u64) -> Coverage {
    let mut c = Coverage::default();
    c.mark(offset, len, size);
    c
}

fn bits(c: &Coverage) -> Vec<u64> {
    (0..COVERAGE_SEGMENTS)
        .filter(|i| c.words[(*i / 64) as usize] >> (i % 64) & 1 != 0)
        .collect()
}

#[test]
fn coverage_whole_file_sets_every_used_segment() {
    for size in [1u64, 255, 256, 257, 1000, 4096, 1 << 30, 70_000_000_001] {
        let segment = size.div_ceil(COVERAGE_SEGMENTS);
        let used = size.div_ceil(segment);
        assert_eq!(
            bits(&marked(0, size, size)),
            (0..used).collect::<Vec<_>>(),
            "size {size}"
        );
    }
}

#[test]
fn coverage_marks_single_bytes_and_word_boundaries() {
    // 256 segments of 1000 bytes.
    let size = 256_000;
    assert_eq!(bits(&marked(0, 1, size)), [0]);
    assert_eq!(bits(&marked(999, 1, size)), [0]);
    assert_eq!(bits(&marked(1000, 1, size)), [1]);
    assert_eq!(bits(&marked(999, 2, size)), [0, 1]);
    // Segments 63 and 64 sit in different words.
    assert_eq!(bits(&marked(63_999, 2, size)), [63, 64]);
    assert_eq!(bits(&marked(63_000, 2000, size)), [63, 64]);
    assert_eq!(bits(&marked(size - 1, 1, size)), [255]);
    let all_but_edges = marked(1000, size - 2000, size);
    assert_eq!(bits(&all_but_edges), (1..255).collect::<Vec<_>>());
}

#[test]
fn coverage_past_the_end_counts_in_the_last_segment() {
    assert_eq!(bits(&marked(10_000, 5, 4096)), [255]);
    assert_eq!(
        bits(&marked(4000, 1000, 4096)),
        (250..256).collect::<Vec<_>>()
    );
}

#[test]
fn coverage_of_nothing_marks_nothing() {
    assert_eq!(marked(0, 0, 4096), Coverage::default());
    assert_eq!(marked(100, 0, 4096), Coverage::default());
    assert_eq!(marked(0, 4096, 0), Coverage::default());
}

#[test]
fn coverage_mark_matches_the_segment_definition() {
    // Deterministic pseudo-random cases (an LCG), small and large files.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut next = move || {
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
        x >> 11
    };
    for case in 0..20_000 {
        let size = if case % 2 == 0 {
            next() % 5000
        } else {
            next() % (1 << 40)
        };
        let offset = next() % (size + size / 8 + 2);
        let len = next() % (size / 3 + 2);
        assert_eq!(
            marked(offset, len, size),
            reference_mark(offset, len, size),
            "offset {offset} len {len} size {size}"
        );
    }
}

#[test]
fn coverage_marks_accumulate() {
    let mut c = Coverage::default();
    c.mark(0, 10, 2560);
    c.mark(2550, 10, 2560);
    assert_eq!(bits(&c), [0, 255]);
}

// --- path filter -----------------------------------------------------------

#[test]
fn path_filter_hashes_names_last_byte_first() {
    use path_filter::*;
    // FNV-1a of the reversed bytes.
    let reversed = |s: &[u8]| {
        let mut h = FNV_OFFSET;
        for &b in s.iter().rev() {
            h ^= u64::from(b);
            h = h.wrapping_mul(FNV_PRIME);
        }
        h
    };
    assert_eq!(
        name_hash(b"model.safetensors"),
        reversed(b"model.safetensors")
    );
    assert_eq!(name_hash(b""), FNV_OFFSET);
    assert_ne!(name_hash(b"llama"), name_hash(b"amall"));
    // An extension ignores case, and is the name `.` + extension.
    assert_eq!(extension_hash(b"GGUF"), extension_hash(b"gguf"));
    assert_eq!(extension_hash(b"gguf"), name_hash(b".gguf"));
    assert_ne!(extension_hash(b"gguf"), name_hash(b"gguf"));
}

// --- layouts -------------------------------------------------------------------

#[test]
fn record_sizes_are_pinned() {
    // The agent checks each record's length against these; the kernel
    // reserves this much ring buffer per record.
    assert_eq!(size_of::<EventHeader>(), 64);
    assert_eq!(size_of::<FileEvent>(), 128);
    assert_eq!(size_of::<ReadEvent>(), 168);
    assert_eq!(size_of::<ExecEvent>(), 872);
    assert_eq!(size_of::<EnforceEvent>(), 112);
    assert_eq!(size_of::<ProcessVerdict>(), 96);
    assert_eq!(size_of::<ExeVerdict>(), 192);
    assert_eq!(size_of::<PolicySlot>(), 48);
    assert_eq!(size_of::<PolicyFile>(), 16);
    assert_eq!(size_of::<ForkEvent>(), 80);
    assert_eq!(size_of::<ExitEvent>(), 72);
    assert_eq!(size_of::<ReadAgg>(), 80);
    assert_eq!(size_of::<Pending>(), 64);
    assert_eq!(size_of::<CopyEvent>(), 152);
    assert_eq!(size_of::<CopyKey>(), 40);
    assert_eq!(size_of::<MemoryEvent>(), 104);
    assert_eq!(size_of::<MemKey>(), 16);
    assert_eq!(size_of::<MemAgg>(), 40);
    assert_eq!(size_of::<OpenAgg>(), 64);
    assert_eq!(size_of::<OpenSummaryEvent>(), 152);
    assert_eq!(size_of::<SendEvent>(), 136);
    assert_eq!(size_of::<SendKey>(), 24);
    assert_eq!(size_of::<SendAgg>(), 24);
    assert_eq!(size_of::<FileState>(), 24);
    assert_eq!(size_of::<ChangeEvent>(), 704);
    assert_eq!(size_of::<EventHeader>() + 16, size_of::<ForkEvent>());
    assert_eq!(
        EXEC_FILENAME_LEN + EXEC_ARGS_LEN + 104,
        size_of::<ExecEvent>()
    );
}

// --- constants ----------------------------------------------------------------

fn assert_distinct<T: Ord + Copy + core::fmt::Debug>(what: &str, values: &[T]) {
    let set: BTreeSet<T> = values.iter().copied().collect();
    assert_eq!(set.len(), values.len(), "{what}: duplicate in {values:?}");
}

fn assert_single_bits(what: &str, flags: &[u32]) {
    for f in flags {
        assert_eq!(f.count_ones(), 1, "{what}: {f:#x} is not one bit");
    }
    assert_distinct(what, flags);
}

#[test]
fn record_kinds_are_distinct_and_non_zero() {
    let kinds = [
        kind::EXEC,
        kind::FORK,
        kind::EXIT,
        kind::OPEN,
        kind::READ,
        kind::MMAP,
        kind::CLOSE,
        kind::GPU_OPEN,
        kind::ENFORCE,
        kind::COPY,
        kind::MEMORY,
        kind::CHANGE,
    ];
    assert_distinct("kind", &kinds);
    assert_distinct(
        "copy_syscall",
        &[
            copy_syscall::SENDFILE,
            copy_syscall::SPLICE,
            copy_syscall::COPY_FILE_RANGE,
            copy_syscall::FICLONE,
            copy_syscall::FICLONERANGE,
        ],
    );
    assert!(
        !kinds.contains(&0),
        "a zeroed record must not decode as a kind"
    );
}

#[test]
fn counters_index_the_map_densely() {
    let mut counters = [
        counter::RINGBUF_FULL,
        counter::READ_AGG_FULL,
        counter::PENDING_FULL,
        counter::KERNEL_READ_FAILED,
        counter::HOLDERS_FULL,
        counter::VERDICTS_FULL,
        counter::KILL_FAILED,
        counter::URING_SKIP_SUCCESS,
    ];
    counters.sort_unstable();
    assert_eq!(counters, core::array::from_fn(|i| i as u32));
    assert_eq!(counters.len() as u32, counter::COUNT);
}

#[test]
fn flags_are_distinct_single_bits() {
    assert_single_bits("watch_flag", &[watch_flag::WEIGHT, watch_flag::GPU_DEVICE]);
    assert_single_bits("header_flag", &[header_flag::COMPAT_SYSCALL]);
    assert_single_bits("exit_flag", &[exit_flag::HAD_READS]);
    assert_single_bits(
        "enforce::flag",
        &[
            enforce::flag::UNJUDGED,
            enforce::flag::KILL_FAILED,
            enforce::flag::DENIED,
            enforce::flag::KILLED,
        ],
    );
    assert_single_bits("enforce::slot_flag", &[enforce::slot_flag::LSM_DECIDES]);
}

#[test]
fn enforcement_operations_index_the_rows_densely() {
    let mut ops = [
        enforce::op::READ,
        enforce::op::MMAP,
        enforce::op::OPEN,
        enforce::op::WRITE,
        enforce::op::COPY,
    ];
    ops.sort_unstable();
    assert_eq!(ops, core::array::from_fn(|i| i as u32));
    assert_eq!(ops.len(), enforce::op::COUNT);
    assert_eq!(enforce::MAX_SETS, u64::BITS as usize);
}

#[test]
fn reasons_and_pending_kinds_are_distinct_and_non_zero() {
    let reasons = [
        flush_reason::CLOSE,
        flush_reason::INTERVAL,
        flush_reason::EXIT,
        flush_reason::IDLE,
        flush_reason::SHUTDOWN,
    ];
    assert_distinct("flush_reason", &reasons);
    assert!(!reasons.contains(&0));
    let pending = [
        pending_kind::READ,
        pending_kind::MMAP,
        pending_kind::COPY,
        pending_kind::REFLINK,
        pending_kind::CHANGE,
    ];
    assert_distinct("pending_kind", &pending);
    assert!(!pending.contains(&0), "0 must not look like a pending read");
}

#[test]
fn object_names_are_distinct() {
    use map_name as m;
    use offset_global as g;
    let maps = [
        m::WATCHED,
        m::WATCHED_INO_FILTER,
        m::WATCHED_DIRS,
        m::PATH_NAMES,
        m::PATH_FILTER,
        m::READ_AGG,
        m::READERS,
        m::EXITED,
        m::HOLDERS_KERNEL,
        m::HOLDERS_AGENT,
        m::HOLDERS_BYPASS,
        m::PENDING,
        m::COUNTERS,
        m::EVENTS,
    ];
    let offsets = [
        g::TASK_FILES,
        g::TASK_REAL_PARENT,
        g::TASK_TGID,
        g::TASK_PID,
        g::TASK_MM,
        g::TASK_START_TIME,
        g::TASK_EXIT_CODE,
        g::TASK_SIGNAL,
        g::TASK_TI_STATUS,
        g::REGS_BX,
        g::REGS_CX,
        g::REGS_DX,
        g::REGS_SI,
        g::REGS_DI,
        g::REGS_BP,
        g::REGS_R8,
        g::REGS_R9,
        g::REGS_R10,
        g::REGS_ORIG_AX,
        g::SIGNAL_LIVE,
        g::FILES_FDT,
        g::FDT_MAX_FDS,
        g::FDT_FD,
        g::FILE_INODE,
        g::FILE_POS,
        g::FILE_FLAGS,
        g::FILE_MODE,
        g::INODE_INO,
        g::INODE_SB,
        g::INODE_SIZE,
        g::INODE_WINDOW,
        g::INODE_MTIME_SEC,
        g::INODE_MTIME_NSEC,
        g::TASK_FS,
        g::FS_PWD_DENTRY,
        g::DENTRY_INODE,
        g::SB_DEV,
        g::MM_ARG_START,
        g::MM_ARG_END,
    ];
    for name in offsets {
        assert!(name.starts_with("OFF_"), "{name}");
    }
    let globals = [
        COMPAT_ENABLED_GLOBAL,
        HOLDER_PREFILTER_GLOBAL,
        READ_FLUSH_INTERVAL_GLOBAL,
    ];
    let all: Vec<&str> = maps
        .iter()
        .chain(&offsets)
        .chain(&globals)
        .copied()
        .collect();
    assert_distinct("object names", &all);
}
