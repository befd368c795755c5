//! What io_uring capture needs from the kernel (the kernel side is
//! `sensor-ebpf/src/uring.rs`, `uring_change.rs` and `uring_skip.rs`):
//! the `io_uring_complete`, `io_uring_file_get`,
//! `io_uring_queue_async_work` and `io_uring_submit_req` (before 6.3
//! `io_uring_submit_sqe`) tracepoints with the request pointer they
//! have carried since Linux 6.0, and the layout of that
//! request (`struct io_kiocb`, its per-opcode command data, the ring's
//! fixed-file table, the kernel's copy of a path), read from the kernel's
//! BTF like every other offset.
//!
//! It is optional: a kernel built without `CONFIG_IO_URING`, one older
//! than 6.0, or one whose io_uring structures were renamed still runs
//! every other program. The agent then warns, says so in `sensor_start`
//! (`sensor.io_uring`) and `doctor` shows it; io_uring requests are a
//! blind spot there (docs/detections.md).

use sensor_common::offset_global as g;

use crate::kernel::btf::{BtfError, Global, Layout};

/// How many globals [`offsets`] gives.
pub const GLOBALS: usize = 11 + TAMPER_GLOBALS + SKIP_GLOBALS;

/// Of them, the ones for tampering requests ([`tamper_offsets`]).
const TAMPER_GLOBALS: usize = 18;

/// Of them, the ones for requests submitted with `IOSQE_CQE_SKIP_SUCCESS`
/// ([`skip_offsets`]).
const SKIP_GLOBALS: usize = 6;

/// The tracepoints the io_uring programs attach to, as BTF names their
/// `btf_trace_*` typedef.
const TRACEPOINTS: [&str; 3] = [
    "io_uring_complete",
    "io_uring_file_get",
    "io_uring_queue_async_work",
];

/// The submission tracepoint: `io_uring_submit_req(req)` since 6.3,
/// `io_uring_submit_sqe(req, force_nonblock)` before (the loader attaches
/// the program to whichever the kernel has: `kernel/loader.rs`).
pub const SUBMIT_TRACEPOINT: &str = "io_uring_submit_req";
pub const SUBMIT_TRACEPOINT_BEFORE_6_3: &str = "io_uring_submit_sqe";

/// What a host needs for io_uring capture, and what to do without it.
pub const FIX: &str = "io_uring capture needs Linux 6.0 or newer built with CONFIG_IO_URING=y \
                       and CONFIG_DEBUG_INFO_BTF=y; until then keep untrusted processes off \
                       io_uring (sysctl kernel.io_uring_disabled=2 on 6.6+, or a seccomp filter)";

/// Why io_uring capture is off.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error(
        "the kernel has no {0} tracepoint (it was built without CONFIG_IO_URING, and then \
         nothing here can use io_uring, or it predates the tracepoint)"
    )]
    NoTracepoint(&'static str),
    #[error(
        "the kernel's io_uring request layout lacks {0} (weightwarden reads the layout of Linux \
         6.0 and newer)"
    )]
    Layout(String),
    #[error("the kernel refused io_uring program {program}: {cause}")]
    Program {
        program: &'static str,
        cause: String,
    },
}

impl From<BtfError> for Unavailable {
    fn from(err: BtfError) -> Self {
        Self::Layout(match err {
            BtfError::NoStruct(s) => format!("struct {s}"),
            BtfError::NoMember { strukt, member } => format!("{strukt}.{member}"),
            BtfError::Bitfield { strukt, member } => format!("{strukt}.{member} (a bitfield)"),
            BtfError::Read { path, .. } => format!("a readable BTF at {path}"),
        })
    }
}

/// [`sensor_common::offset_global::IO_FIXED_NODE_FILE`] when the
/// fixed-file table's entries are the `file_ptr` words themselves.
pub const FIXED_ENTRY_IS_FILE_PTR: u64 = u64::MAX;

/// The io_uring programs' offsets.
pub fn offsets(l: &Layout) -> Result<Vec<Global>, Unavailable> {
    for tracepoint in TRACEPOINTS {
        if !l.has_type(&format!("btf_trace_{tracepoint}")) {
            return Err(Unavailable::NoTracepoint(tracepoint));
        }
    }
    if !l.has_type(&format!("btf_trace_{SUBMIT_TRACEPOINT}"))
        && !l.has_type(&format!("btf_trace_{SUBMIT_TRACEPOINT_BEFORE_6_3}"))
    {
        return Err(Unavailable::NoTracepoint(SUBMIT_TRACEPOINT));
    }
    // The per-opcode command data (`io_kiocb_to_cmd`) overlays the
    // request from `cmd` on, its first word being the request's file.
    let cmd = l.member("io_kiocb", "cmd")?;
    let ki_pos = cmd + l.member("io_rw", "kiocb")? + l.member("kiocb", "ki_pos")?;
    let res = l.member("io_kiocb", "cqe")? + l.member("io_cqe", "res")?;
    let (table, node_file) = fixed_table(l)?;
    let tamper = tamper_offsets(l, cmd)?;
    let skip = skip_offsets(l, cmd)?;
    let mut globals = vec![
        (g::IO_KIOCB_FILE, l.member("io_kiocb", "file")?),
        (g::IO_KIOCB_OPCODE, l.member("io_kiocb", "opcode")?),
        (g::IO_KIOCB_CQE_RES, res),
        (g::IO_RW_KI_POS, ki_pos),
        (
            g::IO_OPEN_FILE_SLOT,
            cmd + l.member("io_open", "file_slot")?,
        ),
        (g::IO_KIOCB_CTX, l.member("io_kiocb", "ctx")?),
        (g::IO_CTX_FIXED_FILES, table),
        (g::IO_FIXED_NODE_FILE, node_file),
        (g::IO_SPLICE_OFF_IN, cmd + l.member("io_splice", "off_in")?),
        (
            g::IO_SPLICE_FD_IN,
            cmd + l.member("io_splice", "splice_fd_in")?,
        ),
        (g::IO_SPLICE_FLAGS, cmd + l.member("io_splice", "flags")?),
    ];
    globals.extend(tamper);
    globals.extend(skip);
    Ok(globals)
}

/// The offsets requests submitted with `IOSQE_CQE_SKIP_SUCCESS` need,
/// read as they are submitted (`uring.rs`): the length (and buffer, for
/// vectored ones) a read, write, send or splice asked for, and a pipe's
/// capacity (a splice into one moves no more).
fn skip_offsets(l: &Layout, cmd: u64) -> Result<Vec<Global>, Unavailable> {
    let at = |strukt, member| l.member(strukt, member).map(|off| cmd + off);
    let globals = vec![
        (g::IO_RW_ADDR, at("io_rw", "addr")?),
        (g::IO_RW_LEN, at("io_rw", "len")?),
        (g::IO_SPLICE_LEN, at("io_splice", "len")?),
        (g::IO_SR_MSG_BUF, at("io_sr_msg", "buf")?),
        (g::IO_SR_MSG_LEN, at("io_sr_msg", "len")?),
        (g::PIPE_MAX_USAGE, l.member("pipe_inode_info", "max_usage")?),
    ];
    debug_assert_eq!(globals.len(), SKIP_GLOBALS);
    Ok(globals)
}

/// [`sensor_common::offset_global::IO_FTRUNC_LEN`] on kernels without
/// `IORING_OP_FTRUNCATE` (before 6.9).
pub const NO_FTRUNCATE: u64 = u64::MAX;

/// The offsets tampering requests need (`uring_change.rs`): the request's
/// submitted flags and descriptor, an open's flags as passed, and the
/// command data of renames, unlinks, links and symbolic links (the
/// directories' descriptors, the `struct filename` of each path, the
/// flags) and truncations (the length), from the request's start (`cmd`).
fn tamper_offsets(l: &Layout, cmd: u64) -> Result<Vec<Global>, Unavailable> {
    let at = |strukt, member| l.member(strukt, member).map(|off| cmd + off);
    let ftrunc_len = match at("io_ftrunc", "len") {
        Ok(off) => off,
        Err(BtfError::NoStruct(_)) => NO_FTRUNCATE,
        Err(err) => return Err(err.into()),
    };
    let globals = vec![
        (g::IO_KIOCB_FLAGS, l.member("io_kiocb", "flags")?),
        (
            g::IO_KIOCB_CQE_FD,
            l.member("io_kiocb", "cqe")? + l.member("io_cqe", "fd")?,
        ),
        (
            g::IO_OPEN_HOW_FLAGS,
            at("io_open", "how")? + l.member("open_how", "flags")?,
        ),
        (g::FILENAME_NAME, l.member("filename", "name")?),
        (g::IO_RENAME_OLD_DFD, at("io_rename", "old_dfd")?),
        (g::IO_RENAME_NEW_DFD, at("io_rename", "new_dfd")?),
        (g::IO_RENAME_OLDPATH, at("io_rename", "oldpath")?),
        (g::IO_RENAME_NEWPATH, at("io_rename", "newpath")?),
        (g::IO_RENAME_FLAGS, at("io_rename", "flags")?),
        (g::IO_UNLINK_DFD, at("io_unlink", "dfd")?),
        (g::IO_UNLINK_FILENAME, at("io_unlink", "filename")?),
        (g::IO_UNLINK_FLAGS, at("io_unlink", "flags")?),
        (g::IO_LINK_OLD_DFD, at("io_link", "old_dfd")?),
        (g::IO_LINK_NEW_DFD, at("io_link", "new_dfd")?),
        (g::IO_LINK_OLDPATH, at("io_link", "oldpath")?),
        (g::IO_LINK_NEWPATH, at("io_link", "newpath")?),
        (g::IO_LINK_FLAGS, at("io_link", "flags")?),
        (g::IO_FTRUNC_LEN, ftrunc_len),
    ];
    debug_assert_eq!(globals.len(), TAMPER_GLOBALS);
    Ok(globals)
}

/// Where a ring keeps its fixed files: the offset in `io_ring_ctx` of the
/// pointer to the table's array, and the offset of `file_ptr` in what an
/// entry points to ([`FIXED_ENTRY_IS_FILE_PTR`] when the entries are
/// `file_ptr` words). Up to 6.12 the array holds `struct io_fixed_file`
/// (`file_ptr` alone); since 6.13 pointers to `struct io_rsrc_node`.
fn fixed_table(l: &Layout) -> Result<(u64, u64), Unavailable> {
    let table = l.member("io_ring_ctx", "file_table")?;
    if let Ok(files) = l.member("io_file_table", "files") {
        // Entries are indexed 8 bytes apart, `file_ptr` first.
        let size = l.struct_size("io_fixed_file")?;
        let file_ptr = l.member("io_fixed_file", "file_ptr")?;
        if (size, file_ptr) != (8, 0) {
            return Err(Unavailable::Layout(format!(
                "an 8-byte io_fixed_file holding file_ptr (it is {size} bytes, file_ptr at \
                 {file_ptr})"
            )));
        }
        return Ok((table + files, FIXED_ENTRY_IS_FILE_PTR));
    }
    let nodes = l.member("io_file_table", "data")? + l.member("io_rsrc_data", "nodes")?;
    Ok((table + nodes, l.member("io_rsrc_node", "file_ptr")?))
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use btf_rs::Btf;

    use super::*;
    use crate::kernel::btf::{Hidden, KernelOffsets, VMLINUX_BTF};

    fn running_kernel() -> Option<Btf> {
        let path = Path::new(VMLINUX_BTF);
        if !path.exists() {
            crate::test_skipped("btf", &format!("{VMLINUX_BTF} is absent on this kernel"));
            return None;
        }
        Some(Btf::from_file(path).expect("parse vmlinux BTF"))
    }

    fn offsets_hiding(btf: &Btf, hide: &str) -> KernelOffsets {
        KernelOffsets::from_layout(&Layout::new(btf, &Hidden::parse(hide))).expect("offsets")
    }

    #[test]
    fn the_running_kernel_has_the_io_uring_layout() {
        let Some(btf) = running_kernel() else { return };
        let offsets = KernelOffsets::from_btf(&btf).expect("offsets");
        assert_eq!(offsets.io_uring, Ok(()));
        let get = |name| offsets.get(name).expect(name);
        // The command data (a read's kiocb, an open's slot, a splice's
        // arguments) overlays the request's first 64 bytes, the file
        // pointer first.
        assert_eq!(get(g::IO_KIOCB_FILE), 0);
        assert_eq!(get(g::IO_RW_KI_POS), 8);
        for field in [
            g::IO_OPEN_FILE_SLOT,
            g::IO_SPLICE_OFF_IN,
            g::IO_SPLICE_FD_IN,
            g::IO_SPLICE_FLAGS,
        ] {
            assert!(get(field) < 64, "{field}");
        }
        assert!(get(g::IO_KIOCB_CQE_RES) >= 64);
        // One 128-byte read of the request fetches what a completion needs
        // (sensor-ebpf/src/uring.rs; a field outside is read on its own).
        assert!(get(g::IO_KIOCB_CQE_RES) + 4 <= 128);
        assert!(get(g::IO_KIOCB_OPCODE) < 128);
        // 6.18 keeps fixed files as resource nodes.
        assert_ne!(get(g::IO_FIXED_NODE_FILE), FIXED_ENTRY_IS_FILE_PTR);
        // The tampering requests' command data overlays the same 64 bytes
        // (after the file pointer); io_rename and io_link share a layout.
        let command = [
            g::IO_OPEN_HOW_FLAGS,
            g::IO_RENAME_OLD_DFD,
            g::IO_RENAME_NEW_DFD,
            g::IO_RENAME_OLDPATH,
            g::IO_RENAME_NEWPATH,
            g::IO_RENAME_FLAGS,
            g::IO_UNLINK_DFD,
            g::IO_UNLINK_FILENAME,
            g::IO_UNLINK_FLAGS,
            g::IO_LINK_OLD_DFD,
            g::IO_LINK_NEW_DFD,
            g::IO_LINK_OLDPATH,
            g::IO_LINK_NEWPATH,
            g::IO_LINK_FLAGS,
            // 6.18 has IORING_OP_FTRUNCATE (6.9+).
            g::IO_FTRUNC_LEN,
            // What requests without a completion ask for.
            g::IO_RW_ADDR,
            g::IO_RW_LEN,
            g::IO_SPLICE_LEN,
            g::IO_SR_MSG_BUF,
            g::IO_SR_MSG_LEN,
        ];
        for field in command {
            assert!((8..64).contains(&get(field)), "{field}");
        }
        assert_eq!(get(g::IO_RENAME_OLDPATH), get(g::IO_LINK_OLDPATH));
        assert_eq!(get(g::IO_RENAME_NEWPATH), get(g::IO_LINK_NEWPATH));
        // The kernel's copy of a path starts with the pointer to its bytes.
        assert_eq!(get(g::FILENAME_NAME), 0);
        // The request's flags and descriptor come after the opcode.
        assert!(get(g::IO_KIOCB_FLAGS) > get(g::IO_KIOCB_OPCODE));
        assert_eq!(get(g::IO_KIOCB_CQE_FD), get(g::IO_KIOCB_CQE_RES) + 4);
    }

    #[test]
    fn a_kernel_without_io_uring_ftruncate_keeps_the_rest_of_io_uring_capture() {
        let Some(btf) = running_kernel() else { return };
        let off = offsets_hiding(&btf, "io_ftrunc");
        assert_eq!(off.io_uring, Ok(()));
        assert_eq!(off.get(g::IO_FTRUNC_LEN), Some(NO_FTRUNCATE));
        // Without the kernel's path copies, io_uring capture is off whole
        // (its programs load together), and says what is missing.
        let off = offsets_hiding(&btf, "filename");
        assert_eq!(
            off.io_uring,
            Err(Unavailable::Layout("struct filename".into()))
        );
    }

    #[test]
    fn a_kernel_without_the_io_wq_tracepoint_has_no_io_uring_capture() {
        let Some(btf) = running_kernel() else { return };
        let off = offsets_hiding(&btf, "btf_trace_io_uring_queue_async_work");
        assert_eq!(
            off.io_uring,
            Err(Unavailable::NoTracepoint("io_uring_queue_async_work"))
        );
    }

    #[test]
    fn a_kernel_without_either_submission_tracepoint_has_no_io_uring_capture() {
        let Some(btf) = running_kernel() else { return };
        // 6.18 has only the newer name; hidden, neither is there.
        let off = offsets_hiding(
            &btf,
            "btf_trace_io_uring_submit_req,btf_trace_io_uring_submit_sqe",
        );
        assert_eq!(
            off.io_uring,
            Err(Unavailable::NoTracepoint("io_uring_submit_req"))
        );
    }

    #[test]
    fn a_hidden_member_turns_io_uring_off_and_nothing_else() {
        let Some(btf) = running_kernel() else { return };
        let all = KernelOffsets::from_btf(&btf).expect("offsets");
        let off = offsets_hiding(&btf, "io_kiocb.opcode");
        assert_eq!(
            off.io_uring,
            Err(Unavailable::Layout("io_kiocb.opcode".into()))
        );
        assert_eq!(off.globals.len(), all.globals.len() - GLOBALS);
        assert!(off.get(g::IO_KIOCB_FILE).is_none());
        assert_eq!(off.get(g::FILE_INODE), all.get(g::FILE_INODE));
    }

    #[test]
    fn a_kernel_without_io_uring_tracepoints_is_named_as_such() {
        let Some(btf) = running_kernel() else { return };
        let off = offsets_hiding(&btf, "btf_trace_io_uring_file_get");
        assert_eq!(
            off.io_uring,
            Err(Unavailable::NoTracepoint("io_uring_file_get"))
        );
        let off = offsets_hiding(&btf, " io_kiocb ,");
        assert_eq!(
            off.io_uring,
            Err(Unavailable::Layout("struct io_kiocb".into()))
        );
        let text = off.io_uring.expect_err("off").to_string();
        assert!(text.contains("6.0"), "{text}");
    }
}
