//! Open/close storms (issue 9, item 6): a process's repeated opens and
//! closes of one file are counted in the kernel, not written one by one,
//! so a storm loses nothing at the default ring buffer size, and every
//! open is still accounted for: the first of each (process, file) as an
//! `open` record, the rest in `open_summary` records.

#![allow(clippy::unwrap_used)]

use std::{collections::HashMap, path::PathBuf, process::Command};

use sensor::event::{AccessDetail, Action, Event, FlushReason};
use tests::{SensorProcess, briefs, build_helper, write_file};

/// The helper's output: each storm process's pid and how many opens it did.
fn storm_pids(output: &std::process::Output) -> Vec<(u32, u64)> {
    assert!(
        output.status.success(),
        "storm failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            assert_eq!((f[0], f[2]), ("pid", "opens"), "{l}");
            (f[1].parse().unwrap(), f[3].parse().unwrap())
        })
        .collect()
}

/// Per (pid, file path): opens and closes written one by one, and those
/// counted in open summaries.
#[derive(Default, Debug)]
struct Tally {
    open_records: u64,
    close_records: u64,
    summarised_opens: u64,
    summarised_closes: u64,
}

fn tally(events: &[Event]) -> HashMap<(u32, PathBuf), Tally> {
    let mut by: HashMap<(u32, PathBuf), Tally> = HashMap::new();
    for e in events {
        let (Some(p), Some(_)) = (&e.process, &e.file) else {
            continue;
        };
        let t = by.entry((p.pid, tests::path(e).to_path_buf())).or_default();
        match &tests::access(e).detail {
            AccessDetail::Open { .. } if e.action == Action::Open => t.open_records += 1,
            AccessDetail::Close { .. } if e.action == Action::Close => t.close_records += 1,
            AccessDetail::OpenSummary(s) => {
                t.summarised_opens += s.opens;
                t.summarised_closes += s.closes;
            }
            _ => {}
        }
    }
    by
}

#[test]
fn eight_processes_storming_200_files_lose_no_open_at_the_default_ring_size() {
    const FILES: usize = 200;
    const ROUNDS: u64 = 500;
    const PROCS: usize = 8;
    let root = tempfile::tempdir().unwrap();
    let files: Vec<PathBuf> = (0..FILES)
        .map(|i| root.path().join(format!("f{i:03}.safetensors")))
        .collect();
    for f in &files {
        write_file(f, 4096);
    }
    let bin = tempfile::tempdir().unwrap();
    let helper = build_helper(bin.path(), "storm");
    // Default capture settings: the 8 MiB ring buffer, a 10 s flush
    // interval. The helper is trusted: 1,600 first opens would otherwise
    // be 1,600 `unexpected_reader` detections, over the detection rate
    // limit (that limit is not what is tested here).
    let config = format!(
        "[detect]\ntrusted_exes = [{:?}]\n",
        helper.to_str().unwrap()
    );
    let sensor = SensorProcess::start_with_config(&[root.path()], &[], &config);
    let before = tests::now_ns();
    let output = Command::new(&helper)
        .arg(root.path())
        .args([FILES.to_string(), ROUNDS.to_string(), PROCS.to_string()])
        .output()
        .unwrap();
    let after = tests::now_ns();
    let storms = storm_pids(&output);
    assert_eq!(storms.len(), PROCS);
    for &(pid, _) in &storms {
        sensor.wait_exit(pid);
    }
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    // Nothing lost (the stop's health check asserts every loss counter is
    // 0; said here too, since it is the point).
    let stop = events.last().unwrap();
    assert_eq!(stop.action, Action::SensorStop);
    let counters = &stop.sensor.as_ref().unwrap().counters;
    assert_eq!(
        counters["kernel"].get("ringbuf_full"),
        Some(&0),
        "{counters:?}"
    );

    let by = tally(&events);
    for &(pid, opens) in &storms {
        assert_eq!(opens, ROUNDS * FILES as u64, "the helper's own count");
        for file in &files {
            let t = by
                .get(&(pid, file.clone()))
                .unwrap_or_else(|| panic!("nothing of {pid} on {}", file.display()));
            // The first open is written at once, and its close (the
            // process had opened the file only once by then); every later
            // open and close is counted.
            assert_eq!(
                (t.open_records, t.close_records),
                (1, 1),
                "{pid} {}: {t:?}",
                file.display()
            );
            assert_eq!(
                t.open_records + t.summarised_opens,
                ROUNDS,
                "opens of {} by {pid}: {t:?}",
                file.display()
            );
            assert_eq!(
                t.close_records + t.summarised_closes,
                ROUNDS,
                "closes of {} by {pid}: {t:?}",
                file.display()
            );
        }
        // The summaries: sent at the process's exit (or an interval
        // flush, on a slow run), timed inside the storm.
        let summaries = tests::of_pid(&events, Action::OpenSummary, pid);
        assert!(
            summaries.len() >= FILES,
            "{:#?}",
            briefs(summaries.iter().copied())
        );
        for s in summaries {
            let AccessDetail::OpenSummary(o) = &tests::access(s).detail else {
                panic!("{s:?}");
            };
            assert!(
                matches!(o.reason, FlushReason::Exit | FlushReason::Interval),
                "{o:?}"
            );
            assert!(
                before <= o.first.unix_ns && o.first <= o.last && o.last.unix_ns <= after,
                "{o:?} outside [{before}, {after}]"
            );
        }
    }
}

#[test]
fn a_second_open_for_writing_is_a_record_and_a_reopen_is_summarised() {
    let root = tempfile::tempdir().unwrap();
    let file = root.path().join("w.safetensors");
    write_file(&file, 4096);
    let sensor = SensorProcess::start(&[root.path()], &[]);
    // Read-only three times, then read-write once, then read-only again:
    // the first open in each access mode is a record; the two reopens
    // read-only and their closes (from the first counted open on) are
    // counted.
    let pid = tests::python(
        "import os, sys\n\
         for flags in (os.O_RDONLY, os.O_RDONLY, os.O_RDONLY, os.O_RDWR, os.O_RDONLY):\n    \
         os.close(os.open(sys.argv[1], flags))\n",
        &[file.to_str().unwrap()],
    );
    sensor.wait_exit(pid);
    let (status, events) = sensor.stop_events();
    assert!(status.success());
    let opens = tests::of_pid(&events, Action::Open, pid);
    let modes: Vec<i32> = opens
        .iter()
        .map(|o| tests::access_mode(tests::open_flags(o)))
        .collect();
    assert_eq!(
        modes,
        [libc::O_RDONLY, libc::O_RDWR],
        "{:#?}",
        briefs(opens)
    );
    // Closes: the first one only (the second open was the first counted).
    assert_eq!(tests::of_pid(&events, Action::Close, pid).len(), 1);
    let summaries = tests::of_pid(&events, Action::OpenSummary, pid);
    assert_eq!(summaries.len(), 1, "{:#?}", briefs(summaries));
    let AccessDetail::OpenSummary(o) = &tests::access(summaries[0]).detail else {
        panic!("{:?}", summaries[0]);
    };
    assert_eq!(
        (o.opens, o.closes, o.reason),
        (3, 4, FlushReason::Exit),
        "{o:?}"
    );
    assert_eq!(tests::path(summaries[0]), file);
}
