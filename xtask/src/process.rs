//! Running external programs. Every command xtask runs for its effect goes
//! through [`run`], which echoes the command line to stderr first and turns
//! a failure into an error naming the command and its exit status; probes
//! whose output xtask reads go through [`stdout`] or [`output`] and stay
//! quiet, so `setup` can print one line per step.

use std::{
    borrow::Cow,
    ffi::OsStr,
    io,
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

/// `word` as a POSIX shell would read it back (shlex quotes only what it
/// must); a word holding a NUL byte, which no command line can carry, is
/// shown as it is.
fn quote(word: &OsStr) -> String {
    let word = word.to_string_lossy();
    shlex::try_quote(&word).map_or_else(|_| word.to_string(), Cow::into_owned)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_quotes_what_a_shell_would_misread() {
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
             cargo install \"it's\" ''"
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
    fn display_quotes_spaces_quotes_and_shell_syntax() {
        let mut cmd = Command::new("/opt/my tools/run");
        cmd.args([
            "say \"hi\"",
            "a$b",
            "*",
            "~x",
            "--x=y,z",
            "plain-word_1.0:/a@b+c",
        ]);
        assert_eq!(
            display(&cmd),
            "'/opt/my tools/run' 'say \"hi\"' 'a$b' '*' '~x' '--x=y,z' plain-word_1.0:/a@b+c"
        );
        // A shell splits the line back into the same words.
        let words = std::iter::once(cmd.get_program()).chain(cmd.get_args());
        let words: Vec<String> = words.map(|w| w.to_string_lossy().into_owned()).collect();
        assert_eq!(shlex::split(&display(&cmd)), Some(words));
    }

    /// `setup` and `bench` rely on `which` to find what a shell would run:
    /// the first executable file on PATH, skipping directories and files
    /// without an execute bit.
    #[test]
    fn which_finds_executables_only() {
        use std::os::unix::fs::PermissionsExt as _;

        let dir = tempfile::tempdir().unwrap();
        let (first, second) = (dir.path().join("first"), dir.path().join("second"));
        std::fs::create_dir_all(first.join("tool")).unwrap();
        std::fs::create_dir(&second).unwrap();
        let plain = first.join("data");
        std::fs::write(&plain, "").unwrap();
        for name in ["tool", "data"] {
            let exe = second.join(name);
            std::fs::write(&exe, "#!/bin/sh\n").unwrap();
            std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
        }
        let path = std::env::join_paths([&first, &second]).unwrap();
        let find = |name| which::which_in(name, Some(&path), dir.path()).ok();
        assert_eq!(find("tool"), Some(second.join("tool")));
        assert_eq!(find("data"), Some(second.join("data")));
        std::fs::set_permissions(second.join("data"), std::fs::Permissions::from_mode(0o644))
            .unwrap();
        assert_eq!(find("data"), None);
        assert_eq!(find("weightwarden-no-such-program"), None);
        assert!(which::which("sh").is_ok());
    }
}
