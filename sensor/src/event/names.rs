//! Names for the raw numbers the kernel reports (open and mmap flags,
//! syscall results, device numbers), shared by every encoder. The event
//! model keeps the numbers; encoders decide how to spell them.

/// `major:minor` of a kernel `s_dev` (`major << 20 | minor`).
pub fn kernel_dev_text(dev: u64) -> String {
    format!("{}:{}", dev >> 20, dev & 0xfffff)
}

/// Names of the bits set in `value`; unknown bits are named `0x...`.
fn bit_names(value: u32, table: &[(u32, &'static str)]) -> Vec<&'static str> {
    let mut names = Vec::new();
    let mut rest = value;
    for &(bit, name) in table {
        if bit != 0 && value & bit == bit {
            names.push(name);
            rest &= !bit;
        }
    }
    if rest != 0 {
        names.push("UNKNOWN_BITS");
    }
    names
}

/// Decoded `open(2)` flags: the access mode first, then the flag bits.
pub fn open_flags(flags: u32) -> Vec<&'static str> {
    let mode = match flags & 0o3 {
        0 => "O_RDONLY",
        1 => "O_WRONLY",
        2 => "O_RDWR",
        _ => "O_ACCMODE",
    };
    const TABLE: &[(u32, &str)] = &[
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o10000, "O_DSYNC"),
        (0o20000, "O_ASYNC"),
        (0o40000, "O_DIRECT"),
        (0o100000, "O_LARGEFILE"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o4000000, "O_SYNC_BIT"),
        (0o10000000, "O_PATH"),
        (0o20000000, "O_TMPFILE_BIT"),
    ];
    let mut names = vec![mode];
    names.extend(bit_names(flags & !0o3, TABLE));
    names
}

/// Decoded `mmap(2)` protection.
pub fn mmap_prot(prot: u32) -> Vec<&'static str> {
    if prot == 0 {
        return vec!["PROT_NONE"];
    }
    bit_names(
        prot,
        &[(1, "PROT_READ"), (2, "PROT_WRITE"), (4, "PROT_EXEC")],
    )
}

/// Decoded `mmap(2)` flags (x86-64 values).
pub fn mmap_flags(flags: u32) -> Vec<&'static str> {
    let mut names = vec![match flags & 0x3 {
        0x1 => "MAP_SHARED",
        0x2 => "MAP_PRIVATE",
        0x3 => "MAP_SHARED_VALIDATE",
        _ => "MAP_TYPE_0",
    }];
    const TABLE: &[(u32, &str)] = &[
        (0x10, "MAP_FIXED"),
        (0x20, "MAP_ANONYMOUS"),
        (0x100, "MAP_GROWSDOWN"),
        (0x800, "MAP_DENYWRITE"),
        (0x1000, "MAP_EXECUTABLE"),
        (0x2000, "MAP_LOCKED"),
        (0x4000, "MAP_NORESERVE"),
        (0x8000, "MAP_POPULATE"),
        (0x10000, "MAP_NONBLOCK"),
        (0x20000, "MAP_STACK"),
        (0x40000, "MAP_HUGETLB"),
        (0x80000, "MAP_SYNC"),
        (0x100000, "MAP_FIXED_NOREPLACE"),
    ];
    names.extend(bit_names(flags & !0x3, TABLE));
    names
}

/// `ok` or the errno name of a syscall return value.
pub fn syscall_result(ret: i64) -> String {
    if !(-4095..0).contains(&ret) {
        return String::from("ok");
    }
    let errno = nix::errno::Errno::from_raw((-ret) as i32);
    format!("{errno:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_decode() {
        assert_eq!(open_flags(0), vec!["O_RDONLY"]);
        assert_eq!(
            open_flags(0o2000000 | 0o100000),
            vec!["O_RDONLY", "O_LARGEFILE", "O_CLOEXEC"]
        );
        assert_eq!(
            open_flags(0o1 | 0o100 | 0o1000),
            vec!["O_WRONLY", "O_CREAT", "O_TRUNC"]
        );
    }

    #[test]
    fn mmap_decode() {
        assert_eq!(mmap_prot(1), vec!["PROT_READ"]);
        assert_eq!(mmap_prot(0), vec!["PROT_NONE"]);
        assert_eq!(mmap_flags(0x2), vec!["MAP_PRIVATE"]);
        assert_eq!(mmap_flags(0x1 | 0x8000), vec!["MAP_SHARED", "MAP_POPULATE"]);
        assert_eq!(
            mmap_flags(0x2 | 0x4000_0000),
            vec!["MAP_PRIVATE", "UNKNOWN_BITS"]
        );
    }

    #[test]
    fn dev_and_result_text() {
        assert_eq!(kernel_dev_text((8 << 20) | 1), "8:1");
        assert_eq!(syscall_result(0x7f00_0000_0000), "ok");
        assert_eq!(syscall_result(-13), "EACCES");
    }
}
