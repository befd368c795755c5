//! The agent's identity probes: the agent opens a file with `O_PATH` and
//! the kernel programs write the identity they read from the new
//! descriptor into `IDENTITY_PROBE` (`sensor-ebpf/src/agent_probe.rs`),
//! the same read that decides whether a process's open is watched.

use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use sensor_common::{FileKey, identity_probe_key};

use crate::enrich::watch::{KernelIdentity, Probed, close_unseen, open_and_stat};

pub struct KernelIdentityProbe {
    map: BpfHashMap<MapData, u64, FileKey>,
}

impl KernelIdentityProbe {
    pub fn new(map: BpfHashMap<MapData, u64, FileKey>) -> Self {
        Self { map }
    }
}

impl KernelIdentity for KernelIdentityProbe {
    fn probe(&mut self, path: &Path) -> io::Result<Probed> {
        let (fd, st_dev, st_ino) = open_and_stat(path)?;
        // SAFETY: gettid has no preconditions.
        let tid = unsafe { libc::gettid() } as u32;
        let key = identity_probe_key(tid, fd.as_raw_fd() as u32);
        let answer = self.map.get(&key, 0);
        // The slot is this descriptor number's until the next probe of it.
        let _ = self.map.remove(&key);
        close_unseen(fd);
        match answer {
            Ok(kernel) => Ok(Probed {
                kernel,
                st_dev,
                st_ino,
            }),
            Err(MapError::KeyNotFound) => Err(io::Error::other(
                "the kernel programs reported no identity for the agent's open (are they attached, \
                 and is the agent in the host's pid namespace?)",
            )),
            Err(error) => Err(io::Error::other(crate::Chain(&error).to_string())),
        }
    }

    fn source(&self) -> &'static str {
        "kernel programs"
    }
}
