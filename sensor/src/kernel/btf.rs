//! Kernel structure offsets read from the running kernel's BTF.
//!
//! aya has no CO-RE for Rust programs, so the kernel programs read struct
//! fields at offsets the agent hands them as load-time globals. Reading them
//! here from `/sys/kernel/btf/vmlinux` keeps one build working on every
//! kernel (`struct file::f_path` moved from byte 16 on 6.1 to 64 on 6.18).

use std::path::Path;

use btf_rs::{Btf, BtfType, Type};
use sensor_common::offset_global as g;

/// Where the running kernel publishes its BTF.
pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

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
    // io_uring requests (`struct io_kiocb`, its per-opcode command data).
    (g::IO_KIOCB_FILE, "io_kiocb", "file"),
    (g::IO_KIOCB_OPCODE, "io_kiocb", "opcode"),
    (g::IO_OPEN_FILE_SLOT, "io_open", "file_slot"),
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
    /// Reads the offsets from the BTF file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, BtfError> {
        let btf = Btf::from_file(path).map_err(|source| BtfError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::from_btf(&btf)
    }

    pub fn from_btf(btf: &Btf) -> Result<Self, BtfError> {
        let mut globals = Vec::with_capacity(MEMBERS.len() + 9);
        for &(global, strukt, member) in MEMBERS {
            globals.push((global, member_offset(btf, strukt, member)?));
        }
        // x86's compat flag lives in the thread_info embedded in task_struct.
        let status = member_offset(btf, "task_struct", "thread_info")?
            + member_offset(btf, "thread_info", "status")?;
        globals.push((g::TASK_TI_STATUS, status));
        let pwd_dentry =
            member_offset(btf, "fs_struct", "pwd")? + member_offset(btf, "path", "dentry")?;
        globals.push((g::FS_PWD_DENTRY, pwd_dentry));
        let file_dentry =
            member_offset(btf, "file", "f_path")? + member_offset(btf, "path", "dentry")?;
        globals.push((g::FILE_PATH_DENTRY, file_dentry));
        let name = member_offset(btf, "dentry", "d_name")? + member_offset(btf, "qstr", "name")?;
        globals.push((g::DENTRY_NAME, name));
        let (mtime_sec, mtime_nsec) = mtime_offsets(btf)?;
        globals.push((g::INODE_MTIME_SEC, mtime_sec));
        globals.push((g::INODE_MTIME_NSEC, mtime_nsec));
        // io_uring: a request's result, and where a read request's file
        // position is (the command data starts the `io_kiocb`).
        let res = member_offset(btf, "io_kiocb", "cqe")? + member_offset(btf, "io_cqe", "res")?;
        globals.push((g::IO_KIOCB_CQE_RES, res));
        let ki_pos = member_offset(btf, "io_kiocb", "cmd")?
            + member_offset(btf, "io_rw", "kiocb")?
            + member_offset(btf, "kiocb", "ki_pos")?;
        globals.push((g::IO_RW_KI_POS, ki_pos));
        let window = [g::INODE_SB, g::INODE_INO, g::INODE_SIZE]
            .iter()
            .filter_map(|name| globals.iter().find(|(n, _)| n == name).map(|&(_, v)| v))
            .min()
            .unwrap_or(0);
        globals.push((g::INODE_WINDOW, window));
        Ok(Self { globals })
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
fn mtime_offsets(btf: &Btf) -> Result<(u64, u64), BtfError> {
    if let (Ok(sec), Ok(nsec)) = (
        member_offset(btf, "inode", "i_mtime_sec"),
        member_offset(btf, "inode", "i_mtime_nsec"),
    ) {
        return Ok((sec, nsec));
    }
    let base = member_offset(btf, "inode", "__i_mtime")
        .or_else(|_| member_offset(btf, "inode", "i_mtime"))?;
    Ok((
        base + member_offset(btf, "timespec64", "tv_sec")?,
        base + member_offset(btf, "timespec64", "tv_nsec")?,
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
        assert_eq!(offsets.globals.len(), MEMBERS.len() + 9);
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
        // io_uring: the command data (a read's kiocb, an open's slot)
        // overlays the request's first 64 bytes, the file pointer first.
        assert_eq!(offsets.get(g::IO_KIOCB_FILE), Some(0));
        assert_eq!(offsets.get(g::IO_RW_KI_POS), Some(8));
        assert!(offsets.get(g::IO_OPEN_FILE_SLOT).expect("file_slot") < 64);
        assert!(offsets.get(g::IO_KIOCB_CQE_RES).expect("res") >= 64);
        // One 128-byte read of the request fetches what a completion needs
        // (sensor-ebpf/src/uring.rs; a field outside is read on its own).
        assert!(offsets.get(g::IO_KIOCB_CQE_RES).expect("res") + 4 <= 128);
        assert!(offsets.get(g::IO_KIOCB_OPCODE).expect("opcode") < 128);
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
