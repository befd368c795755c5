//! Names every type shared with the agent in the object's BTF, so that the
//! agent's layout test (`sensor/tests/layout.rs`) can compare the layouts
//! this crate was compiled with against its own.
//!
//! LLVM writes a type into `.BTF` only when a global variable or an emitted
//! function's signature refers to it. None does here: records are written
//! through a raw pointer into ring buffer memory, the functions that take
//! them are inlined, and aya-ebpf 0.2's maps are `bpf_map_def`s whose key
//! and value types sit behind a `PhantomData`. Without this module the
//! object's BTF holds none of the shared structs. One function that takes a
//! pointer to a struct of all of them puts them in; no program calls it, so
//! no program's instructions change (it is one `exit` in `.text`).

use sensor_common::{
    ChangeEvent, CopyEvent, CopyKey, Coverage, EnforceEvent, EventHeader, ExeVerdict, ExecEvent,
    ExitEvent, ExitKey, FileEvent, FileKey, FileState, ForkEvent, MemAgg, MemKey, MemoryEvent,
    OpenAgg, OpenSummaryEvent, Pending, PolicyFile, PolicySlot, ProcessVerdict, ReadAgg,
    ReadAggKey, ReadEvent, SendAgg, SendEvent, SendKey, WatchEntry,
};

/// One member per shared type; the layout test checks that these are the
/// types it compares.
#[repr(C)]
pub struct SharedTypes {
    pub event_header: EventHeader,
    pub exec_event: ExecEvent,
    pub fork_event: ForkEvent,
    pub exit_event: ExitEvent,
    pub file_event: FileEvent,
    pub read_event: ReadEvent,
    pub read_agg: ReadAgg,
    pub read_agg_key: ReadAggKey,
    pub file_key: FileKey,
    pub watch_entry: WatchEntry,
    pub coverage: Coverage,
    pub exit_key: ExitKey,
    pub pending: Pending,
    pub enforce_event: EnforceEvent,
    pub policy_file: PolicyFile,
    pub policy_slot: PolicySlot,
    pub process_verdict: ProcessVerdict,
    pub exe_verdict: ExeVerdict,
    pub copy_event: CopyEvent,
    pub copy_key: CopyKey,
    pub memory_event: MemoryEvent,
    pub mem_key: MemKey,
    pub mem_agg: MemAgg,
    pub open_agg: OpenAgg,
    pub open_summary_event: OpenSummaryEvent,
    pub send_event: SendEvent,
    pub send_key: SendKey,
    pub send_agg: SendAgg,
    pub change_event: ChangeEvent,
    pub file_state: FileState,
}

/// Never called; exported so that the linker keeps it and its signature.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn ww_btf_types(_types: *const SharedTypes) {}
