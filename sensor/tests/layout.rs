//! The shared types as the kernel programs were compiled, against the same
//! types as the agent is compiled: for every ring buffer record and map key
//! and value in `sensor-common`, the struct in the embedded object's BTF
//! (`.BTF`, written by bpf-linker `--btf` for the `bpfel-unknown-none`
//! target) must have the agent's size, and each member the agent's name,
//! order, offset and size. `sensor-ebpf/src/btf_types.rs` is what puts
//! these types in the BTF.
//!
//! The same list also proves that no shared struct has implicit padding:
//! a padding byte is uninitialised, and in a hash map key it makes lookups
//! miss. That check needs no object.
//!
//! The object is empty when the sensor was built with `AYA_BUILD_SKIP=1`:
//! the tests that read it then say loudly that they were skipped, and fail
//! under `CI=true`, where a skip would hide a broken check.

use btf_rs::{Btf, BtfType, Type};
use object::{Object, ObjectSection, ObjectSymbol};
use sensor_common::{
    ChangeEvent, CopyEvent, CopyKey, Coverage, EnforceEvent, EventHeader, ExeVerdict, ExecEvent,
    ExitEvent, ExitKey, FileEvent, FileKey, FileState, ForkEvent, MemAgg, MemKey, MemoryEvent,
    OpenAgg, OpenSummaryEvent, Pending, PolicyFile, PolicySlot, ProcessVerdict, ReadAgg,
    ReadAggKey, ReadEvent, SendAgg, SendEvent, SendKey, WatchEntry, map_name,
};

/// A struct as the agent lays it out.
struct Layout {
    name: &'static str,
    size: usize,
    fields: Vec<Field>,
}

struct Field {
    name: &'static str,
    offset: usize,
    size: usize,
}

/// The size of a field's type, named by an accessor.
fn size_of_field<T, F>(_field: fn(&T) -> &F) -> usize {
    size_of::<F>()
}

/// `layout!(T { a, b })`: `T`'s size and its fields' offsets and sizes, in
/// declaration order (every field must be listed: the BTF has them all).
macro_rules! layout {
    ($t:ident { $($f:ident),+ $(,)? }) => {
        Layout {
            name: stringify!($t),
            size: size_of::<$t>(),
            fields: vec![$(Field {
                name: stringify!($f),
                offset: std::mem::offset_of!($t, $f),
                size: size_of_field(|v: &$t| &v.$f),
            }),+],
        }
    };
}

/// Every struct the kernel and the agent exchange.
fn shared_layouts() -> Vec<Layout> {
    vec![
        // Ring buffer records.
        layout!(EventHeader {
            kind,
            size,
            boot_ns,
            tgid,
            tid,
            ppid,
            uid,
            gid,
            flags,
            cgroup_id,
            comm
        }),
        layout!(ExecEvent {
            header,
            start_ns,
            exe,
            filename_len,
            args_len,
            args_truncated,
            _pad,
            filename,
            args
        }),
        layout!(ForkEvent {
            header,
            child_tgid,
            _pad,
            child_start_ns
        }),
        layout!(ExitEvent {
            header,
            exit_code,
            flags
        }),
        layout!(FileEvent {
            header,
            file,
            file_size,
            fd,
            flags,
            mmap_flags,
            _pad,
            len,
            offset,
            ret
        }),
        layout!(ReadEvent {
            header,
            file,
            agg,
            reason,
            fd
        }),
        // Map keys and values (and what they contain).
        layout!(ReadAgg {
            calls,
            bytes,
            first_ns,
            last_ns,
            file_size,
            last_tid,
            copy_calls,
            covered
        }),
        layout!(ReadAggKey { tgid, _pad, file }),
        layout!(FileKey { dev, ino }),
        layout!(WatchEntry { flags, _pad }),
        layout!(Coverage { words }),
        layout!(ExitKey {
            tgid,
            _pad,
            start_ns
        }),
        layout!(Pending {
            kind,
            fd,
            file,
            file_size,
            offset,
            len,
            prot,
            flags,
            out_fd,
            syscall
        }),
        layout!(MemoryEvent {
            header,
            target,
            method,
            bytes,
            calls,
            first_ns,
            reason,
            _pad
        }),
        layout!(MemKey {
            tgid,
            target,
            method,
            _pad
        }),
        layout!(MemAgg {
            bytes,
            calls,
            first_ns,
            last_ns,
            last_tid,
            _pad
        }),
        layout!(OpenAgg {
            opens,
            closes,
            first_ns,
            last_ns,
            seen_ns,
            file_size,
            last_tid,
            modes,
            flags,
            summarising
        }),
        layout!(OpenSummaryEvent {
            header,
            file,
            agg,
            reason,
            fd
        }),
        layout!(SendKey {
            tgid,
            _pad,
            destination
        }),
        layout!(SendAgg {
            bytes,
            calls,
            reported
        }),
        layout!(SendEvent {
            header,
            destination,
            destination_mode,
            fd,
            syscall,
            _pad,
            bytes,
            calls,
            peer_addr,
            peer_family,
            peer_port,
            _pad2
        }),
        layout!(FileState {
            size,
            mtime_sec,
            mtime_nsec,
            _pad
        }),
        layout!(ChangeEvent {
            header,
            syscall,
            flags,
            file,
            base2,
            before,
            after,
            arg,
            arg2,
            fd,
            fd2,
            ret,
            path_len,
            path2_len,
            path,
            path2
        }),
        layout!(CopyKey {
            tgid,
            _pad,
            source,
            destination
        }),
        layout!(CopyEvent {
            header,
            source,
            source_size,
            destination,
            destination_mode,
            fd_in,
            fd_out,
            syscall,
            bytes,
            peer_addr,
            peer_family,
            peer_port,
            _pad
        }),
        layout!(EnforceEvent {
            header,
            file,
            file_size,
            sets,
            fd,
            op,
            generation,
            flags
        }),
        layout!(PolicyFile { sets }),
        layout!(PolicySlot {
            generation,
            flags,
            unjudged_stop
        }),
        layout!(ExeVerdict { slots }),
        layout!(ProcessVerdict {
            generation,
            uid,
            gid,
            _pad,
            stop,
            kill
        }),
    ]
}

/// Whether a skip must fail the run.
fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true") || v == "1")
}

/// The embedded object, or `None` (said on stderr; a failure in CI) when
/// the sensor was built without it.
fn kernel_object() -> Option<object::File<'static>> {
    if sensor::kernel::object::OBJECT.is_empty() {
        eprintln!(
            "SKIPPED: the embedded eBPF object is empty (the sensor was built with \
             AYA_BUILD_SKIP=1), so the kernel side's layouts cannot be checked; build without \
             AYA_BUILD_SKIP to run this test"
        );
        assert!(
            !in_ci(),
            "CI=true and the eBPF object is empty: the layout test must not be skipped in CI"
        );
        return None;
    }
    Some(
        object::File::parse(sensor::kernel::object::OBJECT)
            .expect("the embedded eBPF object is not ELF"),
    )
}

/// The object's BTF, or `None` as for [`kernel_object`].
fn kernel_btf() -> Option<Btf> {
    let object = kernel_object()?;
    let section = object
        .section_by_name(".BTF")
        .expect("the eBPF object has no .BTF section (aya-build passes --btf to bpf-linker)");
    let data = section.data().expect("the .BTF section cannot be read");
    Some(Btf::from_bytes(data).expect("the .BTF section does not parse"))
}

/// The struct named `name` in `btf`.
fn btf_struct(btf: &Btf, name: &str) -> Result<btf_rs::Struct, String> {
    let types = btf.resolve_types_by_name(name).unwrap_or_default();
    let mut structs = types.into_iter().filter_map(|t| match t {
        Type::Struct(s) => Some(s),
        _ => None,
    });
    let first = structs
        .next()
        .ok_or_else(|| format!("{name}: not in the object's BTF"))?;
    if structs.any(|other| other != first) {
        return Err(format!(
            "{name}: two different structs of that name in the BTF"
        ));
    }
    Ok(first)
}

/// The size in bytes of a BTF type, following typedefs and qualifiers.
fn btf_size(btf: &Btf, t: &Type) -> Result<usize, String> {
    Ok(match t {
        Type::Int(i) => i.size(),
        Type::Float(f) => f.size(),
        Type::Struct(s) | Type::Union(s) => s.size(),
        Type::Enum(e) => e.size(),
        Type::Enum64(e) => e.size(),
        Type::Ptr(_) => 8,
        Type::Array(a) => a.len() * btf_size(btf, &chained(btf, a)?)?,
        Type::Typedef(_) | Type::Const(_) | Type::Volatile(_) | Type::Restrict(_) => {
            let inner = t.as_btf_type().ok_or("a qualifier without a type")?;
            btf_size(btf, &chained(btf, inner)?)?
        }
        other => return Err(format!("no size for a BTF {}", other.name())),
    })
}

fn chained(btf: &Btf, t: &dyn BtfType) -> Result<Type, String> {
    btf.resolve_chained_type(t).map_err(|e| e.to_string())
}

/// Every difference between `layout` and the BTF struct of its name.
fn differences(btf: &Btf, layout: &Layout) -> Vec<String> {
    let name = layout.name;
    let s = match btf_struct(btf, name) {
        Ok(s) => s,
        Err(e) => return vec![e],
    };
    let mut diffs = Vec::new();
    if s.size() != layout.size {
        diffs.push(format!(
            "{name}: {} bytes in the kernel object, {} in the agent",
            s.size(),
            layout.size
        ));
    }
    let members: Vec<String> = s
        .members
        .iter()
        .map(|m| btf.resolve_name(m).unwrap_or_default())
        .collect();
    let fields: Vec<&str> = layout.fields.iter().map(|f| f.name).collect();
    if members != fields {
        diffs.push(format!(
            "{name}: members {members:?} in the kernel object, {fields:?} in the agent"
        ));
    }
    for (member, field) in s.members.iter().zip(&layout.fields) {
        let at = format!("{name}.{}", field.name);
        if member.bitfield_size().is_some_and(|bits| bits != 0) {
            diffs.push(format!("{at}: a bitfield in the kernel object"));
        }
        let bit_offset = member.bit_offset() as usize;
        if bit_offset != field.offset * 8 {
            diffs.push(format!(
                "{at}: at bit {bit_offset} in the kernel object, byte {} (bit {}) in the agent",
                field.offset,
                field.offset * 8
            ));
        }
        match chained(btf, member).and_then(|t| btf_size(btf, &t)) {
            Ok(size) if size == field.size => {}
            Ok(size) => diffs.push(format!(
                "{at}: {size} bytes in the kernel object, {} in the agent",
                field.size
            )),
            Err(e) => diffs.push(format!("{at}: {e}")),
        }
    }
    diffs
}

#[test]
fn shared_structs_have_no_implicit_padding() {
    let mut gaps = Vec::new();
    for layout in shared_layouts() {
        let mut end = 0;
        for field in &layout.fields {
            if field.offset != end {
                gaps.push(format!(
                    "{}: {} bytes of padding before {}",
                    layout.name,
                    field.offset - end,
                    field.name
                ));
            }
            end = field.offset + field.size;
        }
        if end != layout.size {
            gaps.push(format!(
                "{}: {} bytes of trailing padding",
                layout.name,
                layout.size - end
            ));
        }
    }
    assert!(
        gaps.is_empty(),
        "name every padding byte as a field:\n  {}",
        gaps.join("\n  ")
    );
}

#[test]
fn shared_structs_have_the_agents_layout_in_the_kernel_object() {
    let Some(btf) = kernel_btf() else { return };
    let diffs: Vec<String> = shared_layouts()
        .iter()
        .flat_map(|layout| differences(&btf, layout))
        .collect();
    assert!(
        diffs.is_empty(),
        "layouts differ:\n  {}",
        diffs.join("\n  ")
    );
}

#[test]
fn every_type_the_kernel_names_in_its_btf_is_checked() {
    let Some(btf) = kernel_btf() else { return };
    let anchor = btf_struct(&btf, "SharedTypes").expect("sensor-ebpf/src/btf_types.rs");
    let mut named: Vec<String> = anchor
        .members
        .iter()
        .map(|m| {
            let t = chained(&btf, m).expect("a member's type");
            let t = t.as_btf_type().expect("a named type");
            btf.resolve_name(t).expect("a type name")
        })
        .collect();
    let mut checked: Vec<String> = shared_layouts().iter().map(|l| l.name.to_owned()).collect();
    named.sort();
    checked.sort();
    assert_eq!(
        named, checked,
        "btf_types.rs's SharedTypes and this test's list differ"
    );
}

#[test]
fn the_agents_program_and_map_names_are_in_the_kernel_object() {
    let Some(object) = kernel_object() else {
        return;
    };
    let symbols: Vec<&str> = object.symbols().filter_map(|s| s.name().ok()).collect();
    let maps = [
        map_name::WATCHED,
        map_name::WATCHED_INO_FILTER,
        map_name::READ_AGG,
        map_name::READERS,
        map_name::EXITED,
        map_name::SENDS,
        map_name::HOLDERS_KERNEL,
        map_name::HOLDERS_AGENT,
        map_name::HOLDERS_BYPASS,
        map_name::PENDING,
        map_name::COUNTERS,
        map_name::EVENTS,
    ];
    let programs = sensor::kernel::programs::TRACEPOINT_TIER
        .iter()
        .chain(sensor::kernel::programs::IO_URING_CAPTURE)
        .map(|p| p.name);
    let missing: Vec<&str> = maps
        .into_iter()
        .chain(programs)
        .filter(|name| !symbols.contains(name))
        .collect();
    assert!(missing.is_empty(), "not in the eBPF object: {missing:?}");
}
