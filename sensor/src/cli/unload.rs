//! `weightwarden unload`: detaches what a stopped agent left attached for
//! the next one (`kernel.handover`), or what an agent that died left
//! pinned: a stop for good, or before an uninstall.

use super::args::{UnloadArgs, exit};
use crate::{Chain, kernel::pins::PinError};

pub fn execute(args: &UnloadArgs) -> u8 {
    if !args.pin_dir.exists() {
        println!("nothing pinned: {} does not exist", args.pin_dir.display());
        return exit::OK;
    }
    match crate::agent::unload(&args.pin_dir) {
        Ok(0) => {
            println!("nothing attached in {}", args.pin_dir.display());
            exit::OK
        }
        Ok(links) => {
            println!(
                "detached {links} program link(s) and unpinned the maps in {}",
                args.pin_dir.display()
            );
            exit::OK
        }
        Err(err @ (PinError::Busy { .. } | PinError::NotBpffs(_))) => {
            eprintln!("weightwarden: {}", Chain(&err));
            exit::USAGE
        }
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            exit::FAILURE
        }
    }
}
