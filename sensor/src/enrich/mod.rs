//! The enrich stage: everything the agent knows beside the kernel's record
//! that makes an event worth reading: the process behind it (`process`),
//! the watched path of the file (`watch`), the reader's cumulative coverage
//! (`coverage`), and wall-clock time for the kernel's boot-based
//! timestamps (`clock`).

pub mod change;
pub mod clock;
pub mod coverage;
pub mod events;
pub mod process;
pub mod watch;
