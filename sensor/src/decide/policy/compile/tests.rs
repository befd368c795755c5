//! Compiling and deciding against real files in a temporary tree.

use std::{fs, path::Path};

use super::*;
use crate::decide::policy::{
    file::{self, Source},
    lint,
    verdict::Subject,
};

fn key(path: &Path) -> FileKey {
    identity(path).expect("stat")
}

fn build(text: &str) -> (Option<Policy>, Vec<Finding>) {
    let source = Source {
        path: Path::new("policy.toml"),
        text,
    };
    let parsed = file::parse(&source).expect("parse");
    let (policy, mut findings) = compile(&parsed, &source);
    if let Some(p) = &policy {
        findings.extend(lint::shadowed_rules(p));
    }
    (policy, findings)
}

/// A model tree, a server binary, a copy and a hard link of it.
struct Host {
    dir: tempfile::TempDir,
}

impl Host {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path();
        fs::create_dir_all(p.join("models/llama/shards")).expect("mkdir");
        fs::create_dir_all(p.join("models/mistral")).expect("mkdir");
        fs::create_dir_all(p.join("bin")).expect("mkdir");
        fs::write(p.join("models/llama/a.safetensors"), b"a").expect("write");
        fs::write(p.join("models/llama/shards/b.safetensors"), b"b").expect("write");
        fs::write(p.join("models/llama/config.json"), b"{}").expect("write");
        fs::write(p.join("models/mistral/m.gguf"), b"m").expect("write");
        fs::write(p.join("bin/vllm"), b"#!/bin/sh\n").expect("write");
        fs::write(p.join("bin/vllm-copy"), b"#!/bin/sh\n").expect("write");
        fs::hard_link(p.join("bin/vllm"), p.join("bin/vllm-link")).expect("link");
        Self { dir }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    fn p(&self, rel: &str) -> String {
        self.path(rel).display().to_string()
    }

    /// The issue's minimum shape, on this tree.
    fn minimum(&self) -> String {
        format!(
            r#"
mode = "enforce"

[weights.llama]
paths = ["{llama}"]
default = "deny"

[[rules]]
weights = ["llama"]
exe = ["{vllm}"]
operations = ["open", "read", "mmap"]
action = "allow"
"#,
            llama = self.p("models/llama"),
            vllm = self.p("bin/vllm"),
        )
    }
}

fn by_exe(exe: FileKey) -> Subject<'static> {
    Subject {
        exe: Some(exe),
        uid: 1000,
        gid: 1000,
        ..Subject::default()
    }
}

#[test]
fn the_minimum_policy_allows_the_server_and_denies_the_rest() {
    let host = Host::new();
    let (policy, findings) = build(&host.minimum());
    assert!(findings.is_empty(), "{findings:?}");
    let policy = policy.expect("policy");
    assert_eq!(policy.mode, Mode::Enforce);
    assert_eq!(policy.sets[0].files, 3, "a directory covers its tree");
    let shard = key(&host.path("models/llama/shards/b.safetensors"));
    let server = by_exe(key(&host.path("bin/vllm")));
    let v = policy
        .decide(&shard, Operation::Read, &server)
        .expect("in a set");
    assert_eq!((v.action, v.rule), (PolicyAction::Allow, Some(0)));
    // A hard link of the binary is the same file: allowed.
    let link = by_exe(key(&host.path("bin/vllm-link")));
    assert_eq!(
        policy
            .decide(&shard, Operation::Mmap, &link)
            .map(|v| v.action),
        Some(PolicyAction::Allow)
    );
    // A copy is another file: the default decides.
    let copy = by_exe(key(&host.path("bin/vllm-copy")));
    let v = policy
        .decide(&shard, Operation::Open, &copy)
        .expect("in a set");
    assert_eq!((v.action, v.rule), (PolicyAction::Deny, None));
    // The rule does not cover writes.
    assert_eq!(
        policy
            .decide(&shard, Operation::Write, &server)
            .map(|v| v.action),
        Some(PolicyAction::Deny)
    );
    // A file in no set is not the policy's business.
    let other = key(&host.path("models/mistral/m.gguf"));
    assert_eq!(policy.decide(&other, Operation::Read, &server), None);
}

#[test]
fn a_copy_is_decided_as_a_read_unless_a_rule_names_copy() {
    let host = Host::new();
    let shard = key(&host.path("models/llama/shards/b.safetensors"));
    let server = by_exe(key(&host.path("bin/vllm")));
    let other = by_exe(key(&host.path("bin/vllm-copy")));
    // The minimum policy names no copy: the read's verdict decides.
    let (policy, _) = build(&host.minimum());
    let policy = policy.expect("policy");
    let copy = |p: &Policy, s: &Subject<'_>| {
        p.decide(&shard, Operation::Copy, s)
            .map(|v| (v.action, v.rule))
    };
    assert_eq!(copy(&policy, &server), Some((PolicyAction::Allow, Some(0))));
    assert_eq!(copy(&policy, &other), Some((PolicyAction::Deny, None)));
    // A copy rule first: the server may read but not copy.
    let text = host.minimum().replace(
        "[[rules]]",
        "[[rules]]\nweights = [\"llama\"]\noperations = [\"copy\"]\naction = \"kill\"\n\n[[rules]]",
    );
    let (policy, findings) = build(&text);
    assert!(findings.is_empty(), "{findings:?}");
    let policy = policy.expect("policy");
    assert_eq!(copy(&policy, &server), Some((PolicyAction::Kill, Some(0))));
    assert_eq!(
        policy
            .decide(&shard, Operation::Read, &server)
            .map(|v| v.action),
        Some(PolicyAction::Allow)
    );
}

#[test]
fn first_matching_rule_wins_and_the_strictest_set_decides_overlaps() {
    let host = Host::new();
    let text = format!(
        r#"
[weights.all]
paths = ["{models}"]
default = "alert"

[weights.llama]
paths = ["{llama}"]
default = "kill"

[[rules]]
name = "root reads anything"
weights = ["*"]
uid = [0]
action = "allow"

[[rules]]
weights = ["all"]
gpu = true
action = "deny"
"#,
        models = host.p("models"),
        llama = host.p("models/llama"),
    );
    let (policy, findings) = build(&text);
    assert!(findings.is_empty(), "{findings:?}");
    let policy = policy.expect("policy");
    assert_eq!(policy.mode, Mode::Audit, "audit is the default");
    let shard = key(&host.path("models/llama/a.safetensors"));
    let root = Subject {
        uid: 0,
        ..Subject::default()
    };
    assert_eq!(
        policy
            .decide(&shard, Operation::Read, &root)
            .map(|v| v.action),
        Some(PolicyAction::Allow)
    );
    // A GPU process of another user: "all" says deny (rule 2), "llama"
    // says kill (its default): the strictest wins.
    let gpu = Subject {
        uid: 1000,
        gpu: true,
        ..Subject::default()
    };
    let v = policy
        .decide(&shard, Operation::Read, &gpu)
        .expect("in sets");
    assert_eq!((v.action, v.rule), (PolicyAction::Kill, None));
    assert_eq!(policy.sets[v.set].name, "llama");
    // Outside llama, rule 2 decides.
    let m = key(&host.path("models/mistral/m.gguf"));
    let v = policy.decide(&m, Operation::Read, &gpu).expect("in a set");
    assert_eq!((v.action, v.rule), (PolicyAction::Deny, Some(1)));
}

#[test]
fn globs_users_groups_containers_and_cgroups() {
    let host = Host::new();
    let text = format!(
        r#"
[weights.shards]
paths = ["{glob}"]

[[rules]]
weights = ["shards"]
user = ["root"]
group = ["root"]
container = ["0123ab"]
cgroup = ["/kubepods/**"]
action = "allow"
"#,
        glob = host.p("models/*/shards/*.safetensors"),
    );
    let (policy, findings) = build(&text);
    assert!(findings.is_empty(), "{findings:?}");
    let policy = policy.expect("policy");
    assert_eq!(policy.sets[0].files, 1);
    assert_eq!(
        policy.sets[0].default,
        PolicyAction::Alert,
        "alert when absent"
    );
    let shard = key(&host.path("models/llama/shards/b.safetensors"));
    let mut subject = Subject {
        uid: 0,
        gid: 0,
        container_id: Some("0123abcdef"),
        cgroup_path: Some("/kubepods/burstable/pod1/0123abcdef"),
        ..Subject::default()
    };
    let action = |s: &Subject<'_>| policy.decide(&shard, Operation::Open, s).map(|v| v.action);
    assert_eq!(action(&subject), Some(PolicyAction::Allow));
    subject.container_id = Some("ffff");
    assert_eq!(action(&subject), Some(PolicyAction::Alert));
    subject.container_id = Some("0123abcdef");
    subject.cgroup_path = Some("/system.slice/x.service");
    assert_eq!(action(&subject), Some(PolicyAction::Alert));
}

#[test]
fn errors_are_located_and_name_the_fix() {
    let host = Host::new();
    let text = format!(
        r#"[weights.llama]
paths = ["relative/path", "{llama}"]

[[rules]]
weights = ["lama"]
user = ["no-such-user-ww"]
exe_sha256 = ["abc"]
action = "deny"
"#,
        llama = host.p("models/llama"),
    );
    let (policy, findings) = build(&text);
    assert!(policy.is_none(), "errors make the policy unusable");
    let text_of = |f: &Finding| f.to_string();
    let all: Vec<String> = findings.iter().map(text_of).collect();
    let find = |needle: &str| {
        findings
            .iter()
            .find(|f| f.message.contains(needle))
            .unwrap_or_else(|| panic!("no finding with {needle:?}: {all:#?}"))
    };
    let relative = find("is not absolute");
    assert_eq!(
        relative.location.as_ref().map(|l| (l.line, l.column)),
        Some((2, 10))
    );
    let unknown = find("\"lama\", which is not defined (defined: llama)");
    assert_eq!(unknown.location.as_ref().map(|l| l.line), Some(5));
    assert!(unknown.fix.contains("[weights.NAME]"));
    assert_eq!(
        find("no user named").location.as_ref().map(|l| l.line),
        Some(6)
    );
    assert_eq!(
        find("is not a SHA-256").location.as_ref().map(|l| l.line),
        Some(7)
    );
    find("exe_sha256 without exe");
    assert!(
        all.iter().all(|f| f.starts_with("policy.toml:")),
        "{all:#?}"
    );
}

#[test]
fn missing_executables_and_stale_pins_match_nothing_with_a_warning() {
    let host = Host::new();
    let digest = sha256_of(&host.path("bin/vllm")).expect("hash");
    let text = format!(
        r#"[weights.llama]
paths = ["{llama}"]
default = "deny"

[[rules]]
weights = ["llama"]
exe = ["{vllm}", "{missing}"]
exe_sha256 = ["{digest}"]
action = "allow"

[[rules]]
weights = ["llama"]
exe = ["{copy}"]
exe_sha256 = ["{digest_other}"]
action = "allow"
"#,
        llama = host.p("models/llama"),
        vllm = host.p("bin/vllm"),
        missing = host.p("bin/absent"),
        copy = host.p("bin/vllm-copy"),
        digest_other = "0".repeat(64),
    );
    let (policy, findings) = build(&text);
    let policy = policy.expect("warnings only");
    assert!(
        findings.iter().all(|f| f.level == Level::Warning),
        "{findings:?}"
    );
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("absent") && f.message.contains("matches no process"))
    );
    assert!(
        findings
            .iter()
            .any(|f| f.message.contains("which no exe_sha256 lists"))
    );
    let shard = key(&host.path("models/llama/a.safetensors"));
    let allowed = by_exe(key(&host.path("bin/vllm")));
    assert_eq!(
        policy
            .decide(&shard, Operation::Read, &allowed)
            .map(|v| v.action),
        Some(PolicyAction::Allow)
    );
    let unpinned = by_exe(key(&host.path("bin/vllm-copy")));
    assert_eq!(
        policy
            .decide(&shard, Operation::Read, &unpinned)
            .map(|v| v.action),
        Some(PolicyAction::Deny)
    );
}

#[test]
fn shadowed_rules_are_reported_and_narrower_earlier_rules_are_not() {
    let host = Host::new();
    let text = format!(
        r#"[weights.llama]
paths = ["{llama}"]

[[rules]]
weights = ["*"]
uid = [0, 1000]
action = "allow"

[[rules]]
weights = ["llama"]
uid = [1000]
operations = ["read"]
action = "deny"

[[rules]]
weights = ["llama"]
operations = ["write"]
action = "deny"

[[rules]]
weights = ["llama"]
uid = [0]
operations = ["write"]
action = "allow"
"#,
        llama = host.p("models/llama"),
    );
    let (_, findings) = build(&text);
    let shadowed: Vec<&Finding> = findings
        .iter()
        .filter(|f| f.message.contains("is shadowed"))
        .collect();
    assert_eq!(shadowed.len(), 2, "{findings:#?}");
    assert!(
        shadowed[0]
            .message
            .starts_with("rule 2 is shadowed: rule 1 (line 4)")
    );
    // Rule 1 covers no write; rule 3 covers every write.
    assert!(
        shadowed[1]
            .message
            .starts_with("rule 4 is shadowed: rule 3 (line 15)"),
        "{shadowed:#?}"
    );
    assert_eq!(shadowed[1].location.as_ref().map(|l| l.line), Some(20));
}

#[test]
fn explain_lists_rules_per_set_in_decision_order() {
    let host = Host::new();
    let (policy, _) = build(&host.minimum());
    let text = lint::explain(&policy.expect("policy"));
    let vllm = host.p("bin/vllm");
    assert!(text.contains("mode: enforce"), "{text}");
    assert!(text.contains("weight set \"llama\": 3 file(s)"), "{text}");
    assert!(
        text.contains(&format!(
            "rule 1 (line 8): allow open/read/mmap by exe {vllm} (1 resolved)"
        )),
        "{text}"
    );
    assert!(
        text.contains("otherwise: deny (no rule for write)"),
        "{text}"
    );
}

#[test]
fn a_set_of_many_shards_resolves_every_file() {
    // Speed is the benchmark's to measure; this checks that nothing is
    // lost or counted twice in a big tree reached by two paths.
    let dir = tempfile::tempdir().expect("tempdir");
    for d in 0..10 {
        let sub = dir.path().join(format!("shard-{d:03}"));
        fs::create_dir(&sub).expect("mkdir");
        for f in 0..1000 {
            fs::write(sub.join(format!("{f:04}.safetensors")), b"").expect("write");
        }
    }
    let root = dir.path().display();
    let text = format!("[weights.big]\npaths = [\"{root}\", \"{root}/shard-00*\"]\n");
    let (policy, findings) = build(&text);
    assert!(findings.is_empty(), "{findings:?}");
    let policy = policy.expect("policy");
    assert_eq!(policy.sets[0].files, 10_000);
    assert_eq!(policy.files().count(), 10_000);
}

#[test]
fn more_weight_sets_than_the_kernel_tables_hold_is_an_error() {
    let host = Host::new();
    let mut text = String::new();
    for i in 0..=sensor_common::enforce::MAX_SETS {
        text.push_str(&format!(
            "[weights.s{i:02}]\npaths = [\"{}\"]\n",
            host.p("models/mistral")
        ));
    }
    let (policy, findings) = build(&text);
    assert!(policy.is_none());
    let error = findings
        .iter()
        .find(|f| f.level == Level::Error)
        .expect("an error");
    assert!(error.message.contains("\"s64\""), "{error}");
    assert!(error.message.contains("64"), "{error}");
}

#[test]
fn a_replaced_executable_is_noticed() {
    let host = Host::new();
    let text = format!(
        "[weights.llama]\npaths = [\"{}\"]\n\n[[rules]]\nweights = [\"llama\"]\nexe = [\"{}\", \"{}\"]\naction = \"allow\"\n",
        host.p("models/llama"),
        host.p("bin/vllm"),
        host.p("bin/not-yet")
    );
    let (policy, _) = build(&text);
    let policy = policy.expect("compiles");
    assert_eq!(policy.executables.len(), 2);
    assert!(!policy.executables_changed());
    // A package upgrade: the new binary is renamed over the old one.
    let staged = host.path("bin/vllm.new");
    fs::write(&staged, b"#!/bin/sh\n# v2\n").expect("write");
    fs::rename(&staged, host.path("bin/vllm")).expect("rename");
    assert!(policy.executables_changed(), "the upgrade went unnoticed");
    // So is an executable that appears after the load.
    let (policy, _) = build(&text);
    let policy = policy.expect("compiles");
    assert!(!policy.executables_changed());
    fs::write(host.path("bin/not-yet"), b"#!/bin/sh\n").expect("write");
    assert!(
        policy.executables_changed(),
        "the new executable went unnoticed"
    );
}
