//! Installing the Debian packages a benchmark needs (auditd, numpy for
//! the Python loader) when they are missing, the way `setup` does for the
//! build: probe with dpkg-query, then `apt-get update` and install.

use std::process::Command;

use anyhow::{Context as _, Result, bail};

use crate::process;

/// Installs `package` unless dpkg says it is installed.
pub fn ensure_package(package: &str) -> Result<()> {
    if which::which("dpkg-query").is_err() {
        bail!("no dpkg-query (not a Debian-based system): install {package} yourself");
    }
    if is_installed(package)? {
        return Ok(());
    }
    eprintln!("bench: installing the Debian package {package}");
    process::run(Command::new("apt-get").arg("update"))
        .context("cannot update the Debian package lists: the Debian mirror must be reachable")?;
    process::run(
        Command::new("apt-get")
            .env("DEBIAN_FRONTEND", "noninteractive")
            .args(["install", "-y", "--no-install-recommends", package]),
    )
    .with_context(|| format!("cannot install the Debian package {package}"))?;
    if !is_installed(package)? {
        bail!("apt-get reported success but {package} is still not installed");
    }
    Ok(())
}

fn is_installed(package: &str) -> Result<bool> {
    let out = process::output(Command::new("dpkg-query").args(["-W", "-f=${Status}", package]))?;
    Ok(out.status.success() && installed_status(&String::from_utf8_lossy(&out.stdout)))
}

/// Whether a dpkg `Status` (`want flag state`) is in the installed state.
fn installed_status(status: &str) -> bool {
    status.split_whitespace().nth(2) == Some("installed")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_installed_state_counts() {
        assert!(installed_status("install ok installed"));
        assert!(installed_status("hold ok installed"));
        assert!(!installed_status("deinstall ok config-files"));
        assert!(!installed_status("unknown ok not-installed"));
        assert!(!installed_status(""));
    }
}
