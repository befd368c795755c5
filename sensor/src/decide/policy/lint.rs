//! What `policy check` says beyond errors: rules an earlier rule always
//! decides first (shadowed, so they can never apply), and an explanation
//! of which rules apply to which weight sets, in decision order.

use std::fmt::Write as _;

use super::{
    compile::{Finding, Level, Policy, Rule, SubjectMatch},
    file::Operation,
};

/// Whether every process `narrow` matches is also matched by `wide`.
fn covers(wide: &SubjectMatch, narrow: &SubjectMatch) -> bool {
    fn list<T: PartialEq>(wide: &Option<Vec<T>>, narrow: &Option<Vec<T>>) -> bool {
        match (wide, narrow) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(w), Some(n)) => n.iter().all(|x| w.contains(x)),
        }
    }
    fn set<T: Ord>(
        wide: &Option<std::collections::BTreeSet<T>>,
        narrow: &Option<std::collections::BTreeSet<T>>,
    ) -> bool {
        match (wide, narrow) {
            (None, _) => true,
            (Some(_), None) => false,
            (Some(w), Some(n)) => n.is_subset(w),
        }
    }
    let containers = match (&wide.containers, &narrow.containers) {
        (None, _) => true,
        (Some(_), None) => false,
        // A narrower prefix is covered by a wider one.
        (Some(w), Some(n)) => n
            .iter()
            .all(|x| w.iter().any(|p| x.starts_with(p.as_str()))),
    };
    let cgroups = match (&wide.cgroups, &narrow.cgroups) {
        (None, _) => true,
        (Some(_), None) => false,
        // Globs are compared as written: equal lists only.
        (Some((w, _)), Some((n, _))) => n.iter().all(|x| w.contains(x)),
    };
    list(&wide.exe, &narrow.exe)
        && list(&wide.parent_exe, &narrow.parent_exe)
        && set(&wide.uids, &narrow.uids)
        && set(&wide.gids, &narrow.gids)
        && containers
        && cgroups
        && (wide.gpu.is_none() || wide.gpu == narrow.gpu)
}

/// Whether `earlier` decides every access `later` could.
fn shadows(earlier: &Rule, later: &Rule) -> bool {
    later.sets.is_subset(&earlier.sets)
        && later.operations.is_subset(&earlier.operations)
        && covers(&earlier.subject, &later.subject)
}

/// Warnings for rules that can never decide anything.
pub fn shadowed_rules(policy: &Policy) -> Vec<Finding> {
    let mut findings = Vec::new();
    for (j, later) in policy.rules.iter().enumerate() {
        if later.sets.is_empty() {
            findings.push(Finding {
                level: Level::Warning,
                location: Some(later.location.clone()),
                message: format!(
                    "rule {} covers no weight set (\"*\" with no [weights] defined)",
                    later.number
                ),
                fix: String::from("define the weight sets it is for"),
            });
            continue;
        }
        if let Some(earlier) = policy.rules[..j].iter().find(|e| shadows(e, later)) {
            findings.push(Finding {
                level: Level::Warning,
                location: Some(later.location.clone()),
                message: format!(
                    "rule {} is shadowed: rule {} (line {}) decides every access it could, first",
                    later.number, earlier.number, earlier.location.line
                ),
                fix: String::from("move it before that rule, narrow that rule, or delete it"),
            });
        }
    }
    findings
}

fn rule_label(rule: &Rule) -> String {
    match &rule.name {
        Some(name) => format!("rule {} {name:?}", rule.number),
        None => format!("rule {}", rule.number),
    }
}

fn subject_text(s: &SubjectMatch) -> String {
    let mut parts = Vec::new();
    if let Some(exe) = &s.exe {
        parts.push(format!(
            "exe {} ({} resolved)",
            s.exe_names.join("|"),
            exe.len()
        ));
    }
    if let Some(exe) = &s.parent_exe {
        parts.push(format!(
            "parent exe {} ({} resolved)",
            s.parent_exe_names.join("|"),
            exe.len()
        ));
    }
    if let Some(uids) = &s.uids {
        parts.push(format!("uid in {uids:?}"));
    }
    if let Some(gids) = &s.gids {
        parts.push(format!("gid in {gids:?}"));
    }
    if let Some(c) = &s.containers {
        parts.push(format!("container {}", c.join("|")));
    }
    if let Some((patterns, _)) = &s.cgroups {
        parts.push(format!("cgroup {}", patterns.join("|")));
    }
    if let Some(gpu) = s.gpu {
        parts.push(format!("gpu = {gpu}"));
    }
    if parts.is_empty() {
        String::from("any process")
    } else {
        parts.join(", ")
    }
}

/// Which rules apply to which weight sets, in decision order.
pub fn explain(policy: &Policy) -> String {
    let mut out = String::new();
    let mode = match policy.mode {
        super::file::Mode::Audit => "audit (nothing is stopped; would-be verdicts are recorded)",
        super::file::Mode::Enforce => "enforce",
    };
    let _ = writeln!(out, "mode: {mode}");
    let _ = writeln!(out, "policy sha256: {}", policy.hash);
    for (index, set) in policy.sets.iter().enumerate() {
        let _ = writeln!(
            out,
            "\nweight set {:?}: {} file(s) from {}",
            set.name,
            set.files,
            set.paths.join(", ")
        );
        for rule in policy.rules.iter().filter(|r| r.sets.contains(&index)) {
            let ops: Vec<&str> = rule.operations.iter().map(|o| o.as_str()).collect();
            let _ = writeln!(
                out,
                "  {} (line {}): {} {} by {}",
                rule_label(rule),
                rule.location.line,
                rule.action.as_str(),
                ops.join("/"),
                subject_text(&rule.subject)
            );
        }
        // A copy no rule names is decided as a read.
        let uncovered: Vec<&str> = Operation::ALL
            .iter()
            .filter(|op| **op != Operation::Copy)
            .filter(|op| {
                !policy
                    .rules
                    .iter()
                    .any(|r| r.sets.contains(&index) && r.operations.contains(op))
            })
            .map(|op| op.as_str())
            .collect();
        let _ = write!(out, "  otherwise: {}", set.default.as_str());
        if !uncovered.is_empty() {
            let _ = write!(out, " (no rule for {})", uncovered.join("/"));
        }
        out.push('\n');
    }
    out
}
