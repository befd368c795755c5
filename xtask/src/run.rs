//! `cargo xtask run`: set up, build, then replace this process with
//! `weightwarden run <args>`, so the sensor is the foreground process and
//! Ctrl-C (SIGINT) reaches it directly instead of killing xtask first.

use std::{os::unix::process::CommandExt as _, process::Command};

use anyhow::{Result, bail};

use crate::{args::RunArgs, build, process, setup, workspace::Workspace};

pub fn execute(ws: &Workspace, args: &RunArgs) -> Result<()> {
    setup::execute(ws)?;
    build::build_sensor(ws, args.release)?;
    let binary = build::binary_path(ws, args.release)?;
    let mut sensor = Command::new(&binary);
    sensor.arg("run").args(&args.args);
    eprintln!("+ {}", process::display(&sensor));
    // exec only returns on failure.
    let err = sensor.exec();
    bail!("cannot start {}: {err}", binary.display())
}
