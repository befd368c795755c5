//! Kernel structure offsets read from the running kernel's BTF.
//!
//! aya has no CO-RE for Rust programs, so the kernel programs read struct
//! fields at offsets the agent hands them as load-time globals. Reading them
//! here from `/sys/kernel/btf/vmlinux` keeps one build working on every
//! kernel (`struct file::f_path` moved from byte 16 on 6.1 to 64 on 6.18).
//!
//! The io_uring offsets are a group of their own (`kernel/uring.rs`): a
//! kernel without them still runs every other program.
//!
//! Test-only: `WEIGHTWARDEN_TEST_HIDE_BTF` ([`HIDE_ENV`]) names structs,
//! members or types to treat as absent, so that tests can make a kernel
//! look like one that lacks them.

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use sensor_common::offset_global as g;

use crate::kernel::uring;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Test-only: a comma-separated list of `struct.member` or type names the
/// offset lookups treat as absent (`io_kiocb.opcode`, `io_kiocb`,
/// `btf_trace_io_uring_complete`). Never set in production: it makes the
/// sensor believe the kernel lacks what it has.
pub const HIDE_ENV: &str = "WEIGHTWARDEN_TEST_HIDE_BTF";

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error(
        "cannot read kernel BTF at {path} (the kernel needs CONFIG_DEBUG_INFO_BTF=y; \
         weightwarden reads kernel structure layouts from it)"
    )]
    Read {
        path: String,
        #[source]
        source: btf_rs::Error,
    },
    #[error("kernel BTF has no struct {0} (this kernel is not supported)")]
    NoStruct(&'static str),
    #[error("kernel BTF struct {strukt} has no member {member} (this kernel is not supported)")]
    NoMember {
        strukt: &'static str,
        member: &'static str,
    },
    #[error("kernel BTF member {strukt}.{member} is a bitfield; the sensor cannot read it")]
    Bitfield {
        strukt: &'static str,
        member: &'static str,
    },
}

/// One load-time global: its name in the object and its value.
pub type Global = (&'static str, u64);

/// The byte offsets the kernel programs need, as `(global name, offset)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelOffsets {
    pub globals: Vec<Global>,
    /// Whether the io_uring programs' offsets are among `globals`; if
    /// not, why (those programs are then not loaded).
    pub io_uring: Result<(), uring::Unavailable>,
}

/// Names the lookups treat as absent ([`HIDE_ENV`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Hidden(Vec<String>);

impl Hidden {
    /// From [`HIDE_ENV`]; empty when it is unset.
    pub fn from_env() -> Self {
        let hidden = Self::parse(&std::env::var(HIDE_ENV).unwrap_or_default());
        if !hidden.0.is_empty() {
            tracing::warn!(
                hidden = %hidden.0.join(","),
                "{HIDE_ENV} is set (test-only): these kernel BTF names are treated as absent"
            );
        }
        hidden
    }

    pub fn parse(text: &str) -> Self {
        Self(
            text.split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .map(str::to_owned)
                .collect(),
        )
    }

    fn hides(&self, name: &str) -> bool {
        self.0.iter().any(|h| h == name)
    }
}

/// The kernel's BTF as the offset lookups see it: with the [`Hidden`]
/// names absent.
pub struct Layout<'a> {
    btf: &'a Btf,
    hidden: &'a Hidden,
}

impl<'a> Layout<'a> {
    pub fn new(btf: &'a Btf, hidden: &'a Hidden) -> Self {
        Self { btf, hidden }
    }

    /// Byte offset of `member` in `struct strukt` ([`member_offset`]).
    pub fn member(&self, strukt: &'static str, member: &'static str) -> Result<u64, BtfError> {
        if self.hidden.hides(strukt) {
            return Err(BtfError::NoStruct(strukt));
        }
        if self.hidden.hides(&format!("{strukt}.{member}")) {
            return Err(BtfError::NoMember { strukt, member });
        }
        member_offset(self.btf, strukt, member)
    }

    /// Whether the kernel has a type called `name` (a tracepoint's
    /// `btf_trace_<name>` typedef, say).
    pub fn has_type(&self, name: &str) -> bool {
        !self.hidden.hides(name)
            && self
                .btf
                .resolve_types_by_name(name)
                .is_ok_and(|types| !types.is_empty())
    }

    /// `sizeof(struct strukt)`.
    pub fn struct_size(&self, strukt: &'static str) -> Result<u64, BtfError> {
        if self.hidden.hides(strukt) {
            return Err(BtfError::NoStruct(strukt));
        }
        self.btf
            .resolve_types_by_name(strukt)
            .map_err(|_| BtfError::NoStruct(strukt))?
            .iter()
            .find_map(|t| match t {
                Type::Struct(s) if !s.members.is_empty() => Some(s.size() as u64),
                _ => None,
            })
            .ok_or(BtfError::NoStruct(strukt))
    }
}

/// `(global, struct, member)` for every offset the programs read.
const MEMBERS: &[(&str, &str, &str)] = &[
    (g::TASK_FILES, "task_struct", "files"),
    (g::TASK_REAL_PARENT, "task_struct", "real_parent"),
    (g::TASK_TGID, "task_struct", "tgid"),
    (g::TASK_PID, "task_struct", "pid"),
    (g::TASK_MM, "task_struct", "mm"),
    (g::TASK_START_TIME, "task_struct", "start_boottime"),
    (g::TASK_EXIT_CODE, "task_struct", "exit_code"),
    (g::TASK_SIGNAL, "task_struct", "signal"),
    (g::SIGNAL_LIVE, "signal_struct", "live"),
    (g::FILES_FDT, "files_struct", "fdt"),
    (g::FDT_MAX_FDS, "fdtable", "max_fds"),
    (g::FDT_FD, "fdtable", "fd"),
    (g::FILE_INODE, "file", "f_inode"),
    (g::FILE_POS, "file", "f_pos"),
    (g::FILE_FLAGS, "file", "f_flags"),
    (g::FILE_MODE, "file", "f_mode"),
    (g::INODE_INO, "inode", "i_ino"),
    (g::INODE_SB, "inode", "i_sb"),
    (g::INODE_SIZE, "inode", "i_size"),
    (g::INODE_MODE, "inode", "i_mode"),
    // A copy into a socket: its peer (`struct sock` starts with its
    // `sock_common`).
    (g::FILE_PRIVATE_DATA, "file", "private_data"),
    (g::SOCKET_SK, "socket", "sk"),
    (g::SKC_FAMILY, "sock_common", "skc_family"),
    (g::SKC_DADDR, "sock_common", "skc_daddr"),
    (g::SKC_DPORT, "sock_common", "skc_dport"),
    (g::SKC_V6_DADDR, "sock_common", "skc_v6_daddr"),
    (g::SB_DEV, "super_block", "s_dev"),
    (g::MM_ARG_START, "mm_struct", "arg_start"),
    (g::MM_ARG_END, "mm_struct", "arg_end"),
    (g::MM_EXE_FILE, "mm_struct", "exe_file"),
    // Tampering: the working directory a relative path starts from.
    (g::TASK_FS, "task_struct", "fs"),
    (g::DENTRY_INODE, "dentry", "d_inode"),
    // `/proc/PID/mem`: procfs by its magic, the file's name and its
    // parent's (the target's pid).
    (g::SB_MAGIC, "super_block", "s_magic"),
    (g::DENTRY_PARENT, "dentry", "d_parent"),
    // Syscall arguments, read from the saved registers (x86-64 and ia32).
    (g::REGS_BX, "pt_regs", "bx"),
    (g::REGS_CX, "pt_regs", "cx"),
    (g::REGS_DX, "pt_regs", "dx"),
    (g::REGS_SI, "pt_regs", "si"),
    (g::REGS_DI, "pt_regs", "di"),
    (g::REGS_BP, "pt_regs", "bp"),
    (g::REGS_R8, "pt_regs", "r8"),
    (g::REGS_R9, "pt_regs", "r9"),
    (g::REGS_R10, "pt_regs", "r10"),
    (g::REGS_ORIG_AX, "pt_regs", "orig_ax"),
];

impl KernelOffsets {
    /// Reads the offsets from the BTF file at `path`, hiding what
    /// [`HIDE_ENV`] names.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        // Read whole, then parsed from memory: btf-rs's file reader seeks
        // for every type, one lseek(2) each (0.1 s of start-up on 6.18).
        let btf = std::fs::read(path)
            .map_err(btf_rs::Error::from)
            .and_then(|bytes| Btf::from_bytes(&bytes))
            .map_err(|source| BtfError::Read {
                path: path.display().to_string(),
                source,
            })?;
        Self::from_layout(&Layout::new(&btf, &Hidden::from_env()))
    }

    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        Self::from_layout(&Layout::new(btf, &Hidden::default()))
    }

    /// Every offset the programs that always load need (an error if one
    /// is missing), and the io_uring ones if this kernel has them all.
    pub fn from_layout(l: &Layout) -> Result<Self, BtfError> {
        let mut globals = Vec::with_capacity(MEMBERS.len() + 7 + uring::GLOBALS);
        for &(global, strukt, member) in MEMBERS {
            globals.push((global, l.member(strukt, member)?));
        }
        // x86's compat flag lives in the thread_info embedded in task_struct.
        let status = l.member("task_struct", "thread_info")? + l.member("thread_info", "status")?;
        globals.push((g::TASK_TI_STATUS, status));
        let pwd_dentry = l.member("fs_struct", "pwd")? + l.member("path", "dentry")?;
        globals.push((g::FS_PWD_DENTRY, pwd_dentry));
        let file_dentry = l.member("file", "f_path")? + l.member("path", "dentry")?;
        globals.push((g::FILE_PATH_DENTRY, file_dentry));
        let name = l.member("dentry", "d_name")? + l.member("qstr", "name")?;
        globals.push((g::DENTRY_NAME, name));
        let (mtime_sec, mtime_nsec) = mtime_offsets(l)?;
        globals.push((g::INODE_MTIME_SEC, mtime_sec));
        globals.push((g::INODE_MTIME_NSEC, mtime_nsec));
        let window = [g::INODE_SB, g::INODE_INO, g::INODE_SIZE]
            .iter()
            .filter_map(|name| globals.iter().find(|(n, _)| n == name).map(|&(_, v)| v))
            .min()
            .unwrap_or(0);
        globals.push((g::INODE_WINDOW, window));
        let io_uring = uring::offsets(l).map(|more| globals.extend(more));
        Ok(Self { globals, io_uring })
    }

    /// The offset for `global`, if it is one of ours.
    pub fn get(&self, global: &str) -> Option<u64> {
        self.globals
            .iter()
            .find(|(name, _)| *name == global)
            .map(|&(_, v)| v)
    }
}

/// Where an inode keeps its modification time: `i_mtime_sec` and
/// `i_mtime_nsec` since 6.7, a `struct timespec64` called `__i_mtime`
/// (6.6) or `i_mtime` before (the nanoseconds' low 32 bits are read).
fn mtime_offsets(l: &Layout) -> Result<(u64, u64), BtfError> {
    if let (Ok(sec), Ok(nsec)) = (
        l.member("inode", "i_mtime_sec"),
        l.member("inode", "i_mtime_nsec"),
    ) {
        return Ok((sec, nsec));
    }
    let base = l
        .member("inode", "__i_mtime")
        .or_else(|_| l.member("inode", "i_mtime"))?;
    Ok((
        base + l.member("timespec64", "tv_sec")?,
        base + l.member("timespec64", "tv_nsec")?,
    ))
}

/// Byte offset of `member` in `struct strukt`, looking through anonymous
/// structs and unions (where 6.x keeps many `task_struct` and `mm_struct`
/// fields).
pub fn member_offset(
    btf: &Btf,
    strukt: &'static str,
    member: &'static str,
) -> Result<u64, BtfError> {
    let types = btf
        .resolve_types_by_name(strukt)
        .map_err(|_| BtfError::NoStruct(strukt))?;
    let candidates: Vec<_> = types
        .iter()
        .filter_map(|t| match t {
            Type::Struct(s) if !s.members.is_empty() => Some(s),
            _ => None,
        })
        .collect();
    if candidates.is_empty() {
        return Err(BtfError::NoStruct(strukt));
    }
    for s in candidates {
        if let Some(bits) = find_member(btf, s, member, 0, strukt)? {
            return Ok(u64::from(bits / 8));
        }
    }
    Err(BtfError::NoMember { strukt, member })
}

/// Depth-first search for `name` among `s`'s members; returns its bit offset
/// from the outermost struct.
fn find_member(
    btf: &Btf,
    s: &btf_rs::Struct,
    name: &'static str,
    base_bits: u32,
    strukt: &'static str,
) -> Result<Option<u32>, BtfError> {
    for m in &s.members {
        let m_name = btf.resolve_name(m).unwrap_or_default();
        if m_name == name {
            if m.bitfield_size().is_some_and(|size| size != 0) {
                return Err(BtfError::Bitfield {
                    strukt,
                    member: name,
                });
            }
            return Ok(Some(base_bits + m.bit_offset()));
        }
        if m_name.is_empty()
            && let Some(inner) = anonymous_aggregate(btf, m)
            && let Some(bits) = find_member(btf, &inner, name, base_bits + m.bit_offset(), strukt)?
        {
            return Ok(Some(bits));
        }
    }
    Ok(None)
}

/// The struct or union an anonymous member stands for, through typedefs and
/// qualifiers.
fn anonymous_aggregate(btf: &Btf, m: &dyn BtfType) -> Option<btf_rs::Struct> {
    let mut t = btf.resolve_chained_type(m).ok()?;
    for _ in 0..8 {
        t = match t {
            Type::Struct(s) | Type::Union(s) => return Some(s),
            Type::Typedef(x) => btf.resolve_chained_type(&x).ok()?,
            Type::Const(x) => btf.resolve_chained_type(&x).ok()?,
            Type::Volatile(x) => btf.resolve_chained_type(&x).ok()?,
            _ => return None,
        };
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running_kernel() -> Option<Btf> {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            crate::test_skipped("btf", &format!("{VMLINUX_BTF} is absent on this kernel"));
            return None;
        }
        Some(Btf::from_file(path).expect("parse vmlinux BTF"))
    }

    #[test]
    fn every_offset_resolves_on_the_running_kernel() {
        let Some(btf) = running_kernel() else { return };
        let offsets = KernelOffsets::from_btf(&btf).expect("offsets");
        assert_eq!(
            offsets.globals.len(),
            MEMBERS.len() + 7 + uring::GLOBALS,
            "{:?}",
            offsets.io_uring
        );
        // One 64-byte read covers i_sb, i_ino and i_size on this kernel
        // (the fast path; the kernel programs fall back field by field).
        let window = offsets.get(g::INODE_WINDOW).expect("window");
        for field in [g::INODE_SB, g::INODE_INO, g::INODE_SIZE] {
            let off = offsets.get(field).expect("inode field");
            assert!(off >= window && off + 8 <= window + 64, "{field} at {off}");
        }
        // The x86-64 pt_regs layout is user ABI (ptrace): bx is the sixth
        // saved register, r10 the eighth, orig_ax the sixteenth.
        assert_eq!(offsets.get(g::REGS_BX), Some(40));
        assert_eq!(offsets.get(g::REGS_R10), Some(56));
        assert_eq!(offsets.get(g::REGS_ORIG_AX), Some(120));
        // arg_end directly follows arg_start in every kernel since 2.6.
        let start = offsets.get(g::MM_ARG_START).expect("arg_start");
        let end = offsets.get(g::MM_ARG_END).expect("arg_end");
        assert_eq!(end, start + 8);
        // task_struct is thousands of bytes; these cannot be at its start.
        assert!(offsets.get(g::TASK_FILES).expect("files") > 64);
        assert!(offsets.get(g::TASK_TGID).expect("tgid") > 64);
        // pid and tgid are adjacent pid_t fields.
        assert_eq!(
            offsets.get(g::TASK_TGID).expect("tgid"),
            offsets.get(g::TASK_PID).expect("pid") + 4
        );
    }

    #[test]
    fn anonymous_members_are_searched() {
        let Some(btf) = running_kernel() else { return };
        // mm_struct keeps arg_start inside an anonymous struct on 6.x; a
        // search that skipped anonymous members would fail here.
        assert!(member_offset(&btf, "mm_struct", "arg_start").is_ok());
    }

    #[test]
    fn unknown_names_are_errors_that_name_them() {
        let Some(btf) = running_kernel() else { return };
        let err = member_offset(&btf, "task_struct", "no_such_member").expect_err("missing");
        assert!(
            err.to_string()
                .contains("task_struct has no member no_such_member")
        );
        let err = member_offset(&btf, "no_such_struct_ww", "x").expect_err("missing");
        assert!(err.to_string().contains("no struct no_such_struct_ww"));
    }

    #[test]
    fn unreadable_btf_names_the_path_and_cause() {
        let err = KernelOffsets::from_file(Path::new("/nonexistent/vmlinux")).expect_err("missing");
        let msg = err.to_string();
        assert!(msg.contains("/nonexistent/vmlinux"), "{msg}");
        assert!(msg.contains("CONFIG_DEBUG_INFO_BTF"), "{msg}");
    }
}
