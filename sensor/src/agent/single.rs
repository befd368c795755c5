//! One agent per host: two would attach every program twice, write every
//! record twice and fight over enforcement. `run` takes an exclusive
//! `flock` on [`LOCK_PATH`] (on `/run`, a tmpfs: gone at reboot, and the
//! kernel drops the lock when the agent dies, however it dies) and writes
//! its pid there for the next one's message. `--allow-second-agent`
//! skips it, for tests that run agents side by side.

use std::{
    fs::File,
    io::{self, Read, Seek, Write},
    path::{Path, PathBuf},
};

/// Where the lock lives.
pub const LOCK_PATH: &str = "/run/weightwarden/agent.lock";

#[derive(Debug, thiserror::Error)]
pub enum SingleError {
    #[error(
        "another weightwarden agent{} is running on this host (it holds {path}): stop it first \
         (`systemctl stop weightwarden`, or `kill` that pid); one agent per host captures \
         everything, and two would record and enforce everything twice",
        .pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
    )]
    Running { pid: Option<u32>, path: PathBuf },
    #[error("cannot take the one-agent-per-host lock {path}")]
    Lock {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// The lock, held while the agent runs.
#[derive(Debug)]
pub struct HostLock {
    _file: File,
}

impl HostLock {
    /// Takes the lock at `path`, or says which agent has it.
    pub fn take(path: &Path) -> Result<Self, SingleError> {
        let io = |source| SingleError::Lock {
            path: path.to_path_buf(),
            source,
        };
        let mut file = match crate::lockfile::try_lock(path, 0o755).map_err(io)? {
            crate::lockfile::Lock::Held(file) => file,
            crate::lockfile::Lock::Taken(mut file) => {
                let mut text = String::new();
                let _ = file.read_to_string(&mut text);
                return Err(SingleError::Running {
                    pid: text.trim().parse().ok(),
                    path: path.to_path_buf(),
                });
            }
        };
        file.set_len(0).map_err(io)?;
        file.rewind().map_err(io)?;
        writeln!(file, "{}", std::process::id()).map_err(io)?;
        Ok(Self { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_taker_is_refused_with_the_first_one_s_pid() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("run/agent.lock");
        let first = HostLock::take(&path).expect("first");
        assert_eq!(
            std::fs::read_to_string(&path).expect("pid").trim(),
            std::process::id().to_string()
        );
        let err = HostLock::take(&path).expect_err("second");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("(pid {})", std::process::id())) && msg.contains("stop it first"),
            "{msg}"
        );
        drop(first);
        HostLock::take(&path).expect("free again once the first is gone");
    }
}
