//! `weightwarden bench-floor` (hidden): attaches the empty programs, says
//! so on stdout, and waits for SIGINT or SIGTERM.

use nix::sys::signal::{SigSet, Signal};

use super::exit;
use crate::{Chain, kernel::floor};

pub fn execute() -> u8 {
    let (_ebpf, attached) = match floor::attach() {
        Ok(loaded) => loaded,
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            return exit::FAILURE;
        }
    };
    println!("floor attached {attached}");
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGINT);
    signals.add(Signal::SIGTERM);
    if let Err(err) = signals.thread_block() {
        eprintln!("weightwarden: cannot block SIGINT/SIGTERM to wait for them: {err}");
        return exit::FAILURE;
    }
    let _ = signals.wait();
    exit::OK
}
