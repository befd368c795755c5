//! `weightwarden policy check FILE`: validates a policy and explains it.
//! The explanation goes to stdout, findings to stderr; exit 0 when the
//! policy is usable (no errors, and no warnings with `--deny-warnings`),
//! 1 otherwise.

use super::{
    args::{PolicyCheckArgs, PolicyCommand},
    exit,
};
use crate::{
    Chain,
    decide::policy::{self, Level, lint},
};

pub fn execute(command: &PolicyCommand) -> u8 {
    match command {
        PolicyCommand::Check(args) => check(args),
    }
}

fn check(args: &PolicyCheckArgs) -> u8 {
    let checked = match policy::load(&args.file) {
        Ok(checked) => checked,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::FAILURE;
        }
    };
    for finding in &checked.findings {
        eprintln!("{finding}");
    }
    let errors = count(&checked.findings, Level::Error);
    let warnings = count(&checked.findings, Level::Warning);
    match &checked.policy {
        Some(policy) => {
            print!("{}", lint::explain(policy));
            eprintln!(
                "note: in enforce mode `run --policy` refuses opens (fanotify); reads through \
                 descriptors opened otherwise are only recorded so far (docs/policy.md)"
            );
        }
        None => eprintln!(
            "{}: {errors} error(s), {warnings} warning(s): the policy cannot be used",
            args.file.display()
        ),
    }
    let usable = errors == 0 && !(args.deny_warnings && warnings > 0);
    if checked.policy.is_some() {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s){}",
            args.file.display(),
            if usable { "" } else { " (--deny-warnings)" }
        );
    }
    if usable { exit::OK } else { exit::FAILURE }
}

fn count(findings: &[policy::Finding], level: Level) -> usize {
    findings.iter().filter(|f| f.level == level).count()
}
