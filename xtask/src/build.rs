//! `cargo xtask build`: set up, then build the sensor. The sensor crate's
//! build script compiles the eBPF programs with the nightly toolchain and
//! bpf-linker (through aya-build) and embeds the object, so building the
//! sensor builds everything.

use std::path::PathBuf;

use anyhow::Result;

use crate::{args::BuildArgs, process, setup, workspace::Workspace};

/// The sensor's binary target.
const BINARY: &str = "weightwarden";

pub fn execute(ws: &Workspace, args: &BuildArgs) -> Result<()> {
    setup::execute(ws)?;
    build_sensor(ws, args.release)
}

/// Builds the sensor, without setting up first.
pub fn build_sensor(ws: &Workspace, release: bool) -> Result<()> {
    let mut cargo = ws.cargo();
    cargo.args(["build", "-p", "sensor"]);
    if release {
        cargo.arg("--release");
    }
    process::run(&mut cargo)
}

/// Where `build_sensor` leaves the `weightwarden` binary.
pub fn binary_path(ws: &Workspace, release: bool) -> Result<PathBuf> {
    let profile = if release { "release" } else { "debug" };
    Ok(ws.target_dir()?.join(profile).join(BINARY))
}
