//! Where things are: the workspace root (so xtask works from any folder of
//! the repository) and cargo's target directory (which `CARGO_TARGET_DIR` or
//! a cargo config may have moved away from `<root>/target`).

use std::{
    env,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result};

use crate::process;

pub struct Workspace {
    root: PathBuf,
}

impl Workspace {
    /// The workspace xtask was built from: its manifest sits one level below
    /// the root.
    pub fn locate() -> Result<Self> {
        let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
        let root = manifest_dir.parent().with_context(|| {
            format!(
                "cannot find the workspace root: {} has no parent folder",
                manifest_dir.display()
            )
        })?;
        Ok(Self {
            root: root.to_path_buf(),
        })
    }

    /// A `cargo` command run from the workspace root. It goes through the
    /// rustup proxy on PATH, so it uses the toolchain `cargo xtask` was
    /// started with.
    pub fn cargo(&self) -> Command {
        let mut cmd = Command::new("cargo");
        cmd.current_dir(&self.root);
        cmd
    }

    /// Cargo's target directory for this workspace, as cargo itself resolves
    /// it.
    pub fn target_dir(&self) -> Result<PathBuf> {
        let metadata =
            process::stdout(
                self.cargo()
                    .args(["metadata", "--no-deps", "--format-version", "1"]),
            )?;
        target_dir_from_metadata(&metadata)
    }
}

fn target_dir_from_metadata(metadata: &str) -> Result<PathBuf> {
    let value: serde_json::Value =
        serde_json::from_str(metadata).context("cannot parse the output of `cargo metadata`")?;
    value
        .get("target_directory")
        .and_then(serde_json::Value::as_str)
        .map(PathBuf::from)
        .context("`cargo metadata` printed no target_directory")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_target_directory_from_cargo_metadata() {
        let json = r#"{"packages":[],"target_directory":"/w/target","version":1}"#;
        assert_eq!(
            target_dir_from_metadata(json).ok(),
            Some(PathBuf::from("/w/target"))
        );
        assert!(target_dir_from_metadata(r#"{"version":1}"#).is_err());
        assert!(target_dir_from_metadata("not json").is_err());
    }

    #[test]
    fn the_root_holds_the_workspace_manifest() {
        let ws = Workspace::locate().ok();
        let manifest = ws.map(|ws| ws.root.join("Cargo.toml"));
        assert!(manifest.is_some_and(|m| m.is_file()));
    }
}
