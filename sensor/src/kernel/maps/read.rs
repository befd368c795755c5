//! The kernel's read-side maps as the agent sees them: aggregates it
//! drains (on exit, when idle, at shutdown) and the set of processes that
//! have read. Draining uses the kernel's atomic
//! lookup-and-delete so a read landing mid-drain is never both reported and
//! kept, nor lost between a copy and a delete.

use std::{
    collections::HashSet,
    io,
    os::fd::{AsFd, AsRawFd},
};

use aya::{
    Pod,
    maps::{HashMap, Map, MapData, MapError},
};

/// `BPF_MAP_LOOKUP_AND_DELETE_ELEM`; hash maps support it since Linux 5.14.
/// Hand-written on purpose: aya 0.14 has the call but keeps it private
/// (only its queue and stack maps use it), and a copy-then-delete would
/// lose or double-count a read landing in between.
const BPF_MAP_LOOKUP_AND_DELETE_ELEM: libc::c_long = 21;
/// The kernel-internal `ENOTSUPP` older kernels return for unsupported map
/// operations (not in libc: it never reaches userspace elsewhere).
const ENOTSUPP: i32 = 524;

/// The map-element form of `union bpf_attr`.
#[repr(C)]
struct MapElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

/// The aggregate maps and the readers set, owned.
pub struct ReadMaps {
    aggregates: Map,
    opens: Map,
    memory: Map,
    readers: Map,
    /// Lookup-and-delete is unsupported here: fall back to lookup, delete.
    no_atomic_take: bool,
}

/// The aggregate maps the agent drains.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Aggregates {
    /// `READ_AGG`: `ReadAggKey` -> `ReadAgg`.
    Reads,
    /// `OPEN_AGG`: `ReadAggKey` -> `OpenAgg`.
    Opens,
    /// `MEM_AGG`: `MemKey` -> `MemAgg`.
    Memory,
}

fn map_data(map: &Map) -> Option<&MapData> {
    match map {
        Map::HashMap(data) => Some(data),
        _ => None,
    }
}

impl ReadMaps {
    pub fn new(aggregates: Map, opens: Map, memory: Map, readers: Map) -> Self {
        Self {
            aggregates,
            opens,
            memory,
            readers,
            no_atomic_take: false,
        }
    }

    fn map(&self, which: Aggregates) -> &Map {
        match which {
            Aggregates::Reads => &self.aggregates,
            Aggregates::Opens => &self.opens,
            Aggregates::Memory => &self.memory,
        }
    }

    fn map_mut(&mut self, which: Aggregates) -> &mut Map {
        match which {
            Aggregates::Reads => &mut self.aggregates,
            Aggregates::Opens => &mut self.opens,
            Aggregates::Memory => &mut self.memory,
        }
    }

    /// Every entry of `which` whose key and value `select` picks (`K` and
    /// `V` must be that map's key and value types).
    pub fn select<K: Pod + Eq + std::hash::Hash, V: Pod>(
        &self,
        which: Aggregates,
        select: impl Fn(&K, &V) -> bool,
    ) -> Result<Vec<K>, MapError> {
        let view = HashMap::<&MapData, K, V>::try_from(self.map(which))?;
        let mut seen = HashSet::new();
        let mut picked = Vec::new();
        for entry in view.iter() {
            let (key, value) = entry?;
            // A concurrent delete restarts the kernel's key walk: skip keys
            // already seen.
            if select(&key, &value) && seen.insert(key) {
                picked.push(key);
            }
        }
        Ok(picked)
    }

    /// Removes and returns the entry of `which` for `key`; `None` if the
    /// kernel removed it first.
    pub fn take<K: Pod, V: Pod + Default>(
        &mut self,
        which: Aggregates,
        key: &K,
    ) -> Result<Option<V>, MapError> {
        if !self.no_atomic_take {
            match self.lookup_and_delete(which, key) {
                Ok(v) => return Ok(v),
                Err(err)
                    if matches!(
                        err.raw_os_error(),
                        Some(libc::EINVAL | ENOTSUPP | libc::EOPNOTSUPP)
                    ) =>
                {
                    tracing::info!(
                        "kernel lacks lookup-and-delete on hash maps; draining with lookup then delete"
                    );
                    self.no_atomic_take = true;
                }
                Err(err) => {
                    return Err(MapError::SyscallError(aya::sys::SyscallError {
                        call: "bpf_map_lookup_and_delete_elem",
                        io_error: err,
                    }));
                }
            }
        }
        let mut view = HashMap::<&mut MapData, K, V>::try_from(self.map_mut(which))?;
        let value = match view.get(key, 0) {
            Ok(v) => v,
            Err(MapError::KeyNotFound) => return Ok(None),
            Err(err) => return Err(err),
        };
        match view.remove(key) {
            Ok(()) | Err(MapError::KeyNotFound) => Ok(Some(value)),
            Err(err) => Err(err),
        }
    }

    fn lookup_and_delete<K: Pod, V: Pod + Default>(
        &self,
        which: Aggregates,
        key: &K,
    ) -> io::Result<Option<V>> {
        let data = map_data(self.map(which))
            .ok_or_else(|| io::Error::other(format!("{which:?} aggregates are not a hash map")))?;
        let mut value = V::default();
        let attr = MapElemAttr {
            map_fd: data.fd().as_fd().as_raw_fd() as u32,
            _pad: 0,
            key: std::ptr::from_ref(key) as u64,
            value: std::ptr::from_mut(&mut value) as u64,
            flags: 0,
        };
        // SAFETY: `attr` points at a live key and a value buffer of the
        // map's value size (the caller names the map's own types); the
        // kernel reads and writes only those.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_MAP_LOOKUP_AND_DELETE_ELEM,
                std::ptr::from_ref(&attr),
                size_of::<MapElemAttr>(),
            )
        };
        if ret == 0 {
            return Ok(Some(value));
        }
        let err = io::Error::last_os_error();
        if err.raw_os_error() == Some(libc::ENOENT) {
            Ok(None)
        } else {
            Err(err)
        }
    }

    /// Forgets the reader mark of `tgid`, or of every process `gone` picks
    /// (for exits the ring buffer lost); returns how many.
    pub fn forget_processes(&mut self, gone: impl Fn(u32) -> bool) -> usize {
        let mut removed = 0;
        if let Ok(mut view) = HashMap::<&mut MapData, u32, u32>::try_from(&mut self.readers) {
            let keys: Vec<_> = view
                .keys()
                .filter_map(Result::ok)
                .filter(|&t| gone(t))
                .collect();
            for key in keys {
                if view.remove(&key).is_ok() {
                    removed += 1;
                }
            }
        }
        removed
    }
}
