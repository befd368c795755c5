//! Decoding ring buffer records into typed kernel events. The kernel writes
//! `#[repr(C)]` structs from `sensor_common`; records are read unaligned and
//! length-checked, so a short or unknown record is an error, never UB.

use sensor_common::{
    ChangeEvent, CopyEvent, EnforceEvent, EventHeader, ExecEvent, ExitEvent, FileEvent, ForkEvent,
    MemoryEvent, OpenSummaryEvent, ReadEvent, SendEvent, kind,
};

/// One record from the kernel.
#[derive(Debug, Clone)]
pub enum KernelEvent {
    Exec(Box<ExecEvent>),
    Fork(ForkEvent),
    Exit(ExitEvent),
    Open(FileEvent),
    GpuOpen(FileEvent),
    Mmap(FileEvent),
    Close(FileEvent),
    Read(ReadEvent),
    Enforce(EnforceEvent),
    Copy(CopyEvent),
    Memory(MemoryEvent),
    Send(SendEvent),
    Change(Box<ChangeEvent>),
    OpenSummary(OpenSummaryEvent),
}

impl KernelEvent {
    pub fn header(&self) -> &EventHeader {
        match self {
            KernelEvent::Exec(e) => &e.header,
            KernelEvent::Fork(e) => &e.header,
            KernelEvent::Exit(e) => &e.header,
            KernelEvent::Open(e)
            | KernelEvent::GpuOpen(e)
            | KernelEvent::Mmap(e)
            | KernelEvent::Close(e) => &e.header,
            KernelEvent::Read(e) => &e.header,
            KernelEvent::Enforce(e) => &e.header,
            KernelEvent::Copy(e) => &e.header,
            KernelEvent::Memory(e) => &e.header,
            KernelEvent::Send(e) => &e.header,
            KernelEvent::Change(e) => &e.header,
            KernelEvent::OpenSummary(e) => &e.header,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte type (kind {kind})")]
    Short { kind: u32, len: usize, need: usize },
    #[error("record of unknown kind {0} (the object and the agent are out of step)")]
    UnknownKind(u32),
}

/// Reads a `T` from the start of `bytes`.
fn read<T: Copy>(bytes: &[u8], kind: u32) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            kind,
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length was checked; every T here is a plain-old-data
    // `#[repr(C)]` struct of integers for which any bit pattern is valid.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<KernelEvent, DecodeError> {
    let header: EventHeader = read(bytes, 0)?;
    let k = header.kind;
    Ok(match k {
        kind::EXEC => KernelEvent::Exec(Box::new(read(bytes, k)?)),
        kind::FORK => KernelEvent::Fork(read(bytes, k)?),
        kind::EXIT => KernelEvent::Exit(read(bytes, k)?),
        kind::OPEN => KernelEvent::Open(read(bytes, k)?),
        kind::GPU_OPEN => KernelEvent::GpuOpen(read(bytes, k)?),
        kind::MMAP => KernelEvent::Mmap(read(bytes, k)?),
        kind::CLOSE => KernelEvent::Close(read(bytes, k)?),
        kind::READ => KernelEvent::Read(read(bytes, k)?),
        kind::ENFORCE => KernelEvent::Enforce(read(bytes, k)?),
        kind::COPY => KernelEvent::Copy(read(bytes, k)?),
        kind::MEMORY => KernelEvent::Memory(read(bytes, k)?),
        kind::SEND => KernelEvent::Send(read(bytes, k)?),
        kind::CHANGE => KernelEvent::Change(Box::new(read(bytes, k)?)),
        kind::OPEN_SUMMARY => KernelEvent::OpenSummary(read(bytes, k)?),
        other => return Err(DecodeError::UnknownKind(other)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn as_bytes<T>(v: &T) -> &[u8] {
        // SAFETY: test-only view of a POD value's bytes.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }
    }

    // Layouts are checked against the kernel object's BTF in
    // sensor/tests/layout.rs.
    #[test]
    fn short_and_unknown_records_are_errors() {
        let mut ev = FileEvent::default();
        ev.header.kind = kind::OPEN;
        let bytes = as_bytes(&ev);
        assert_eq!(
            decode(&bytes[..size_of::<EventHeader>()]).expect_err("short"),
            DecodeError::Short {
                kind: kind::OPEN,
                len: size_of::<EventHeader>(),
                need: size_of::<FileEvent>()
            }
        );
        ev.header.kind = 999;
        assert_eq!(
            decode(as_bytes(&ev)).expect_err("unknown"),
            DecodeError::UnknownKind(999)
        );
        assert!(matches!(decode(&[1, 2, 3]), Err(DecodeError::Short { .. })));
    }
}
