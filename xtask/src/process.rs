//! Running external programs. Every command xtask runs for its effect goes
//! through [`run`], which echoes the command line to stderr first and turns
//! a failure into an error naming the command and its exit status; probes
//! whose output xtask reads go through [`stdout`] or [`output`] and stay
//! quiet, so `setup` can print one line per step.

use std::{
    env,
    ffi::OsStr,
    io,
    os::unix::fs::PermissionsExt as _,
    path::PathBuf,
    process::{Command, Output, Stdio},
};

use anyhow::{Context as _, Result, bail};

/// Echoes `cmd` to stderr, runs it with inherited stdio and fails unless it
/// exits with status 0.
pub fn run(cmd: &mut Command) -> Result<()> {
    let line = display(cmd);
    eprintln!("+ {line}");
    let status = cmd.status().map_err(|err| spawn_error(&line, &err))?;
    if !status.success() {
        bail!("`{line}` failed ({status})");
    }
    Ok(())
}

/// Runs `cmd` quietly and returns its output whatever its exit status; fails
/// only when it cannot be started.
pub fn output(cmd: &mut Command) -> Result<Output> {
    let line = display(cmd);
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|err| spawn_error(&line, &err))
}

/// Runs `cmd` quietly and returns its stdout; fails unless it exits with
/// status 0, quoting what it printed on stderr.
pub fn stdout(cmd: &mut Command) -> Result<String> {
    let line = display(cmd);
    let out = output(cmd)?;
    if !out.status.success() {
        bail!(
            "`{line}` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    String::from_utf8(out.stdout).with_context(|| format!("`{line}` printed non-UTF-8 output"))
}

fn spawn_error(line: &str, err: &io::Error) -> anyhow::Error {
    if err.kind() == io::ErrorKind::NotFound {
        anyhow::anyhow!("cannot run `{line}`: program not found (is it installed and on PATH?)")
    } else {
        anyhow::anyhow!("cannot run `{line}`: {err}")
    }
}

/// Whether xtask runs with root privileges (mounts, apt-get and loading
/// eBPF programs need them).
pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// The first executable named `name` on PATH, as a shell would find it.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| {
            candidate
                .metadata()
                .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        })
}

/// The command line a shell would need to run `cmd`, with the environment
/// variables it sets in front, quoted where needed.
pub fn display(cmd: &Command) -> String {
    let envs = cmd.get_envs().filter_map(|(key, value)| {
        value.map(|value| format!("{}={}", key.to_string_lossy(), quote(value)))
    });
    let words = std::iter::once(cmd.get_program())
        .chain(cmd.get_args())
        .map(quote);
    envs.chain(words).collect::<Vec<_>>().join(" ")
}

fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    let plain = |c: char| c.is_ascii_alphanumeric() || "-_./=:,+@%^".contains(c);
    if !word.is_empty() && word.chars().all(plain) {
        word.into_owned()
    } else {
        format!("'{}'", word.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_only_what_a_shell_would_split() {
        let mut cmd = Command::new("cargo");
        cmd.args(["fmt", "--all", "--", "--check"]);
        assert_eq!(display(&cmd), "cargo fmt --all -- --check");

        let mut cmd = Command::new("cargo");
        cmd.env("RUSTFLAGS", "-C link-arg=-Wl,-rpath,/x y/lib")
            .env("LLVM_PREFIX", "/t/llvm-prefix")
            .args(["install", "it's", ""]);
        assert_eq!(
            display(&cmd),
            "LLVM_PREFIX=/t/llvm-prefix RUSTFLAGS='-C link-arg=-Wl,-rpath,/x y/lib' \
             cargo install 'it'\\''s' ''"
        );
    }

    #[test]
    fn run_reports_the_command_and_its_status() {
        let err = match run(Command::new("false").arg("--flag")) {
            Ok(()) => panic!("`false` should fail"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("`false --flag` failed"), "{err}");
        assert!(err.contains("exit status: 1"), "{err}");
    }

    #[test]
    fn missing_programs_get_a_hint() {
        let err = match stdout(&mut Command::new("weightwarden-no-such-program")) {
            Ok(_) => panic!("a missing program should fail"),
            Err(err) => err.to_string(),
        };
        assert!(err.contains("program not found"), "{err}");
    }

    #[test]
    fn stdout_returns_output_and_quotes_stderr_on_failure() {
        let out = stdout(Command::new("sh").args(["-c", "echo hello"]));
        assert_eq!(out.ok().as_deref(), Some("hello\n"));
        let err = match stdout(Command::new("sh").args(["-c", "echo broken >&2; exit 3"])) {
            Ok(_) => panic!("exit 3 should fail"),
            Err(err) => err.to_string(),
        };
        assert!(
            err.contains("exit status: 3") && err.contains("broken"),
            "{err}"
        );
    }

    #[test]
    fn which_finds_executables_only() {
        assert!(which("sh").is_some());
        assert!(which("weightwarden-no-such-program").is_none());
    }
}
