//! A restart without a gap, in a QEMU guest whose stock kernel pins program
//! links (the host's refuses it): agent A runs with `kernel.handover` and
//! an enforced policy, a loop of readers runs across A's SIGTERM and B's
//! start, and a denied process tries to open the weights while no agent
//! runs. Every reader's open is recorded exactly once by A or B, the
//! denial made in the gap is refused by the pinned BPF LSM programs and
//! recorded by B, and B's SIGINT detaches everything.

#![allow(clippy::unwrap_used)]

use std::{collections::BTreeMap, time::Duration};

use sensor::event::{Action, Event};
use tests::vm::{GUEST_BINARY, agent_records};

/// The guest runs two agents' start-ups under emulation beside a reader
/// loop: 110 to 165 s here.
const TIMEOUT: Duration = Duration::from_secs(420);

const POLICY: &str = r#"mode = "enforce"

[weights.llama]
paths = ["/models"]
default = "allow"

[[rules]]
name = "never this one"
weights = ["llama"]
exe = ["/usr/local/bin/doomed"]
action = "deny"
"#;

const CONFIG: &str = r#"[kernel]
pin_dir = "/sys/fs/bpf/ww"
handover = true

[detect]
max_per_minute = 1000000
"#;

/// The guest script: A, the readers, the gap, B.
const SCRIPT: &str = r#"set -e
mkdir -p /models
head -c 65536 /dev/urandom > /models/llama.safetensors
start_agent() {
    WEIGHTWARDEN_LOG=info weightwarden run --config /etc/weightwarden/run.toml \
        --watch /models --policy /etc/weightwarden/policy.toml --store none \
        --state-dir /tmp/state --output jsonl:/tmp/$1.jsonl 2> /tmp/$1.log &
    agent=$!
    tries=0
    until grep -q '"sensor_start"' /tmp/$1.jsonl 2> /dev/null; do
        tries=$((tries + 1))
        if [ $tries -gt 900 ] || ! kill -0 $agent 2> /dev/null; then
            touch /tmp/stop-load
            echo "agent $1 did not start"
            ww-emit agent-log /tmp/$1.log
            exit 1
        fi
        sleep 0.1
    done
}
start_agent a
(
    i=0
    while [ ! -e /tmp/stop-load ]; do
        cat /models/llama.safetensors > /dev/null
        sleep 0.05
        i=$((i + 1))
    done
    echo $i > /tmp/readers
) &
load=$!
sleep 1
kill -TERM $agent
status=0
wait $agent || status=$?
echo $status | ww-emit a-status
ls /sys/fs/bpf/ww/links | wc -l | ww-emit pinned-links
# While no agent runs: the pinned BPF LSM programs still decide.
doomed give-inherit /models/llama.safetensors /usr/local/bin/doomed /tmp/shm read \
    > /tmp/gap.out 2>&1 || echo "exit $?" >> /tmp/gap.out
ww-emit gap /tmp/gap.out
start_agent b
sleep 1
touch /tmp/stop-load
wait $load
ww-emit readers /tmp/readers
sleep 1
kill -INT $agent
status=0
wait $agent || status=$?
ls /sys/fs/bpf/ww/links | wc -l | ww-emit links-after
ww-emit a-events /tmp/a.jsonl
ww-emit a-log /tmp/a.log
ww-emit events /tmp/b.jsonl
ww-emit agent-log /tmp/b.log
exit $status
"#;

fn decode(text: &str) -> Vec<Event> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| sensor::output::encode::native::decode(l).unwrap())
        .collect()
}

#[test]
fn a_restart_under_load_adopts_the_pinned_programs_and_loses_nothing() {
    let vm = tests::vm_or_skip!();
    let bin = tempfile::tempdir().unwrap();
    let routes = tests::build_helper(bin.path(), "routes");
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_executable_at("/usr/local/bin/doomed", &routes)
        .add_bytes("/etc/weightwarden/policy.toml", POLICY, 0o644)
        .add_bytes("/etc/weightwarden/run.toml", CONFIG, 0o644)
        .add_bytes("/tmp/shm", "\0".repeat(4096).as_str(), 0o644)
        .script(SCRIPT);
    let run = vm.run(&image, TIMEOUT).unwrap();
    // B's run passes the usual checks: exit 0, no warning, no loss.
    let b = agent_records(&run);

    let a_log = run.expect_section("a-log");
    assert_eq!(run.expect_section("a-status").trim(), "0", "{a_log}");
    assert!(
        a_log.contains("handover: leaving the programs attached"),
        "{a_log}"
    );
    let a = decode(run.expect_section("a-events"));
    let a_stop = a.last().unwrap();
    assert_eq!(a_stop.action, Action::SensorStop);
    assert_eq!(
        tests::sensor_counter(a_stop, "agent", "handover_left_attached"),
        1
    );
    assert_eq!(tests::sensor_counter(a_stop, "kernel", "ringbuf_full"), 0);
    let pinned: usize = run.expect_section("pinned-links").trim().parse().unwrap();
    assert!(pinned >= 5, "A left {pinned} links pinned");

    let b_start = b.iter().find(|e| e.action == Action::SensorStart).unwrap();
    assert_eq!(
        tests::sensor_counter(b_start, "agent", "handover_adopted"),
        1,
        "{b_start:?}"
    );
    assert_eq!(
        run.expect_section("links-after").trim(),
        "0",
        "B's SIGINT detached everything"
    );

    // Every reader's open, exactly once, by one agent or the other.
    let mut opens: BTreeMap<u32, usize> = BTreeMap::new();
    for event in a.iter().chain(&b) {
        let is_cat = event.process.as_ref().is_some_and(|p| p.comm == "cat");
        let is_weights = event.file.as_ref().is_some_and(|f| {
            f.path
                .as_ref()
                .is_some_and(|p| p.to_lossy().ends_with("llama.safetensors"))
        });
        if event.action == Action::Open && is_cat && is_weights {
            let pid = event.process.as_ref().unwrap().pid;
            *opens.entry(pid).or_default() += 1;
        }
    }
    let twice: Vec<_> = opens.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "recorded twice: {twice:?}");
    let readers: usize = run.expect_section("readers").trim().parse().unwrap();
    assert_eq!(
        opens.len(),
        readers,
        "A recorded {} opens, B {}",
        a.iter().filter(|e| e.action == Action::Open).count(),
        b.iter().filter(|e| e.action == Action::Open).count()
    );
    let times = |events: &[Event], action: Action| -> Vec<String> {
        events
            .iter()
            .filter(|e| e.action == action)
            .map(|e| format!("{:?}", e.time))
            .collect()
    };
    assert!(
        b.iter().any(|e| e.action == Action::Open),
        "the load did not run past the restart: A stopped {:?}, B started {:?}, A's opens \
         {:?}",
        times(&a, Action::SensorStop),
        times(&b, Action::SensorStart),
        times(&a, Action::Open).last()
    );

    // The denial made while no agent ran: refused by the pinned LSM
    // programs, recorded by B with the policy that decided.
    let gap = run.expect_section("gap");
    assert!(
        gap.contains("open: Operation not permitted") && gap.contains("exit 1"),
        "{gap}"
    );
    let denied = b
        .iter()
        .find(|e| {
            e.action == Action::Denied && e.process.as_ref().is_some_and(|p| p.comm == "doomed")
        })
        .unwrap_or_else(|| {
            panic!(
                "no record of the denial in the gap: {:#?}",
                tests::briefs(&b)
            )
        });
    let v = tests::verdict(denied);
    assert_eq!(
        (v.mechanism.as_str(), v.rule_name.as_deref()),
        ("bpf_lsm", Some("never this one"))
    );
}
