//! Open/close storms, aggregated in the kernel like reads. A process's
//! first open of a watched file (in each access mode) is an `open` record
//! at once: the detections and the policy judge key on it. Its later opens
//! of that file in a mode already written are counted in `OPEN_AGG`
//! instead, and from the first counted open on its closes of the file are
//! counted too (a process that opens a file once and closes it, or closes
//! a duplicate, keeps its `close` records). The counts leave the kernel as
//! open summaries when the flush interval has passed (here), and from the
//! agent when the process exits, goes idle on the file, or the sensor
//! stops. Without this, a tight open/close loop makes two records per
//! iteration and overruns the ring buffer.

use aya_ebpf::helpers::bpf_get_current_pid_tgid;
use sensor_common::{OpenAgg, OpenSummaryEvent, ReadAggKey, flush_reason, kind};

use crate::{
    emit::{fill_header, now_ns, reserve},
    kernel::Watched,
    maps::OPEN_AGG,
    read::{READ_FLUSH_INTERVAL_NS, mark_reader},
};

const BPF_NOEXIST: u64 = 1;
const O_ACCMODE: u32 = 3;

#[inline(always)]
fn key_of(w: &Watched) -> ReadAggKey {
    ReadAggKey {
        tgid: (bpf_get_current_pid_tgid() >> 32) as u32,
        _pad: 0,
        file: w.key,
    }
}

/// An open of the weight file `w` (kernel `f_flags`) by the current
/// process returned `fd`: true when it is to be written as an `open`
/// record, false when it was counted.
#[inline(always)]
pub fn on_open(w: &Watched, fd: i32, flags: u32) -> bool {
    let key = key_of(w);
    let mode = 1u32 << (flags & O_ACCMODE);
    let now = now_ns();
    let Some(agg) = OPEN_AGG.get_ptr_mut(&key) else {
        let fresh = OpenAgg {
            modes: mode,
            seen_ns: now,
            file_size: w.size,
            ..OpenAgg::default()
        };
        // A full map (or a racing first open on another thread) leaves
        // this open a record, like every open before aggregation: more
        // records, never a lost open.
        if OPEN_AGG.insert(&key, &fresh, BPF_NOEXIST).is_ok() {
            // The agent drains the process's entries when it exits.
            mark_reader(key.tgid);
        }
        return true;
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &mut *agg };
    agg.seen_ns = now;
    agg.file_size = w.size;
    if agg.modes & mode == 0 {
        // The first open in this mode (a write after reads): written.
        agg.modes |= mode;
        return true;
    }
    agg.summarising = 1;
    agg.flags = flags;
    crate::atomic::add(&mut agg.opens, 1);
    tally(&key, agg, now, fd);
    false
}

/// A close of a descriptor of the weight file `w` by the current process:
/// true when it is to be written as a `close` record (and flush the read
/// aggregate), false when counted (the process reopens this file).
#[inline(always)]
pub fn on_close(w: &Watched, fd: i32) -> bool {
    let key = key_of(w);
    let Some(agg) = OPEN_AGG.get_ptr_mut(&key) else {
        return true;
    };
    // SAFETY: map values stay valid for the program's run.
    let agg = unsafe { &mut *agg };
    let now = now_ns();
    agg.seen_ns = now;
    if agg.summarising == 0 {
        return true;
    }
    crate::atomic::add(&mut agg.closes, 1);
    tally(&key, agg, now, fd);
    false
}

/// Times a counted open or close, and sends the summary once the flush
/// interval has passed since its first one.
#[inline(always)]
fn tally(key: &ReadAggKey, agg: &mut OpenAgg, now: u64, fd: i32) {
    agg.last_tid = bpf_get_current_pid_tgid() as u32;
    agg.last_ns = now;
    if agg.first_ns == 0 {
        agg.first_ns = now;
        return;
    }
    if now.wrapping_sub(agg.first_ns) < READ_FLUSH_INTERVAL_NS.load() {
        return;
    }
    if emit(key, agg, fd) {
        agg.opens = 0;
        agg.closes = 0;
        agg.first_ns = 0;
    } else {
        // Ring full (counted): the counts stay for the next attempt, an
        // interval later, or the agent's drain.
        agg.first_ns = now;
    }
}

/// Sends an open summary from `agg`; false when the ring buffer was full.
#[inline(always)]
fn emit(key: &ReadAggKey, agg: &OpenAgg, fd: i32) -> bool {
    let Some(mut entry) = reserve::<OpenSummaryEvent>() else {
        return false;
    };
    // SAFETY: the reservation is valid, sized and aligned for the record.
    let ev = unsafe { &mut *entry.as_mut_ptr() };
    fill_header(
        &mut ev.header,
        kind::OPEN_SUMMARY,
        size_of::<OpenSummaryEvent>(),
    );
    ev.file = key.file;
    ev.agg = *agg;
    ev.reason = flush_reason::INTERVAL;
    ev.fd = fd;
    entry.submit(0);
    true
}
