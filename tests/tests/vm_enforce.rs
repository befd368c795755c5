//! BPF LSM enforcement, in a QEMU guest whose kernel runs `bpf` among its
//! LSMs (the host's refuses BPF LSM programs): an enforced policy denies
//! with `EPERM` in the security hooks; only a `kill` rule kills. A denied open
//! fails, an allowed reader reads, a denied process's map, read and
//! io_uring read of a descriptor it inherited or received fail, and the
//! records say `denied` with mechanism `bpf_lsm`, as the host's say
//! `killed` with `bpf_send_signal`.

#![allow(clippy::unwrap_used)]

use std::time::Duration;

use sensor::{
    decide::policy::{Operation, PolicyAction},
    event::{Action, Event},
};
use tests::{
    taker_fate, verdict,
    vm::{GUEST_BINARY, agent_records, agent_script},
};

const TIMEOUT: Duration = Duration::from_secs(120);

const POLICY: &str = r#"mode = "enforce"

[weights.llama]
paths = ["/models"]
default = "deny"

[[rules]]
name = "the giver"
weights = ["llama"]
exe = ["/usr/local/bin/giver"]
action = "allow"

[[rules]]
name = "never this one"
weights = ["llama"]
exe = ["/usr/local/bin/doomed"]
action = "kill"
"#;

/// Each line runs one access and emits its outcome as a section; `|| true`
/// keeps a refused access from ending the script.
const BODY: &str = r#"
zero() { head -c 4096 /dev/zero > "$1"; }
cat /models/llama.safetensors > /tmp/cat.out 2> /tmp/cat.err || echo "exit $?" >> /tmp/cat.err
ww-emit cat-err /tmp/cat.err
wc -c < /tmp/cat.out | ww-emit cat-bytes
zero /tmp/allowed.bin
giver give-inherit /models/llama.safetensors /usr/local/bin/giver /tmp/allowed.bin read | ww-emit allowed
cmp -s /tmp/allowed.bin /tmp/first.bin && echo same | ww-emit allowed-bytes || true
zero /tmp/mmap.bin
giver give-inherit /models/llama.safetensors /usr/local/bin/routes /tmp/mmap.bin mmap > /tmp/mmap.out 2>&1 || true
ww-emit mmap /tmp/mmap.out
cmp -s /tmp/mmap.bin /tmp/zero.bin && echo zero | ww-emit mmap-bytes || true
zero /tmp/socket.bin
giver give-socket /models/llama.safetensors /usr/local/bin/routes /tmp/socket.bin > /tmp/socket.out 2>&1 || true
ww-emit socket /tmp/socket.out
cmp -s /tmp/socket.bin /tmp/zero.bin && echo zero | ww-emit socket-bytes || true
zero /tmp/uring.bin
giver give-inherit /models/llama.safetensors /usr/local/bin/routes /tmp/uring.bin uring-read > /tmp/uring.out 2>&1 || true
ww-emit uring /tmp/uring.out
cmp -s /tmp/uring.bin /tmp/zero.bin && echo zero | ww-emit uring-bytes || true
zero /tmp/doomed.bin
giver give-inherit /models/llama.safetensors /usr/local/bin/doomed /tmp/doomed.bin read > /tmp/doomed.out 2>&1 || true
ww-emit doomed /tmp/doomed.out
cmp -s /tmp/doomed.bin /tmp/zero.bin && echo zero | ww-emit doomed-bytes || true
"#;

#[test]
fn bpf_lsm_denies_with_eperm_on_every_route_and_records_it() {
    let vm = tests::vm_or_skip!();
    let bin = tempfile::tempdir().unwrap();
    let routes = tests::build_helper(bin.path(), "routes");
    let mut image = vm.image();
    image
        .add_executable_at(GUEST_BINARY, tests::binary())
        .add_executable_at("/usr/local/bin/routes", &routes)
        .add_executable_at("/usr/local/bin/giver", &routes)
        .add_executable_at("/usr/local/bin/doomed", &routes)
        .add_bytes("/etc/weightwarden/policy.toml", POLICY, 0o644)
        .script(agent_script(
            "mkdir -p /models\n\
             head -c 12288 /dev/urandom > /models/llama.safetensors\n\
             head -c 4096 /models/llama.safetensors > /tmp/first.bin\n\
             head -c 4096 /dev/zero > /tmp/zero.bin",
            "--watch /models --policy /etc/weightwarden/policy.toml",
            BODY,
        ));
    let run = vm.run(&image, TIMEOUT).unwrap();
    let events = agent_records(&run);

    let cat_err = run.expect_section("cat-err");
    assert!(
        cat_err.contains("Operation not permitted") && cat_err.contains("exit 1"),
        "{cat_err}"
    );
    assert_eq!(run.expect_section("cat-bytes").trim(), "0");
    let (_, fate) = taker_fate(run.expect_section("allowed"));
    assert_eq!(
        fate, "exit 0",
        "the allowed binary reads an inherited descriptor"
    );
    assert_eq!(run.expect_section("allowed-bytes").trim(), "same");
    // Refused, not killed: the taker reports EPERM and exits 1.
    let mmap = run.expect_section("mmap");
    let (mmap_pid, fate) = taker_fate(mmap);
    assert_eq!(fate, "exit 1", "{mmap}");
    assert!(mmap.contains("mmap: Operation not permitted"), "{mmap}");
    assert_eq!(run.expect_section("mmap-bytes").trim(), "zero");
    let socket = run.expect_section("socket");
    let (socket_pid, fate) = taker_fate(socket);
    assert_eq!(fate, "exit 1", "{socket}");
    assert!(socket.contains("read: Operation not permitted"), "{socket}");
    assert_eq!(run.expect_section("socket-bytes").trim(), "zero");
    // An io_uring read: the request fails with EPERM (its kill fallback
    // leaves a read to the LSM hook).
    let uring = run.expect_section("uring");
    let (uring_pid, fate) = taker_fate(uring);
    assert_eq!(fate, "exit 1", "{uring}");
    assert!(
        uring.contains("uring-read: Operation not permitted"),
        "{uring}"
    );
    assert_eq!(run.expect_section("uring-bytes").trim(), "zero");
    // A kill rule: refused and killed.
    let doomed = run.expect_section("doomed");
    let (doomed_pid, fate) = taker_fate(doomed);
    assert_eq!(fate, "signal 9", "{doomed}");
    assert_eq!(run.expect_section("doomed-bytes").trim(), "zero");

    let start = events
        .iter()
        .find(|e| e.action == Action::SensorStart)
        .unwrap();
    assert_eq!(
        start.sensor.as_ref().and_then(|s| s.enforcement.as_deref()),
        Some("bpf_lsm+fanotify")
    );
    let killed: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Killed)
        .collect();
    assert_eq!(killed.len(), 1, "{:#?}", tests::briefs(&events));
    assert_eq!(killed[0].process.as_ref().map(|p| p.pid), Some(doomed_pid));
    let v = verdict(killed[0]);
    assert_eq!(
        (
            v.verdict,
            v.operation,
            v.mechanism.as_str(),
            v.rule,
            v.rule_name.as_deref()
        ),
        (
            PolicyAction::Kill,
            Operation::Read,
            "bpf_lsm",
            Some(2),
            Some("never this one")
        )
    );
    let denied = |pid: u32| -> &Event {
        let found: Vec<&Event> = events
            .iter()
            .filter(|e| e.action == Action::Denied)
            .filter(|e| e.process.as_ref().is_some_and(|p| p.pid == pid))
            .collect();
        assert_eq!(found.len(), 1, "{pid}: {:#?}", tests::briefs(&events));
        found[0]
    };
    for (pid, operation) in [
        (mmap_pid, Operation::Mmap),
        (socket_pid, Operation::Read),
        (uring_pid, Operation::Read),
    ] {
        let v = verdict(denied(pid));
        assert_eq!(
            (
                v.verdict,
                v.operation,
                v.mechanism.as_str(),
                v.weight_set.as_str()
            ),
            (PolicyAction::Deny, operation, "bpf_lsm", "llama")
        );
    }
    // cat was judged at its exec (busybox is not the giver): the LSM
    // refused its open, before fanotify saw it.
    let cat_denials: Vec<&Event> = events
        .iter()
        .filter(|e| e.action == Action::Denied)
        .filter(|e| e.process.as_ref().is_some_and(|p| p.comm == "cat"))
        .collect();
    assert_eq!(cat_denials.len(), 1, "{:#?}", tests::briefs(&events));
    let v = verdict(cat_denials[0]);
    assert_eq!(
        (v.operation, v.mechanism.as_str()),
        (Operation::Open, "bpf_lsm")
    );
}
