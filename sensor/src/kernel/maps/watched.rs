//! The watched-inode map (and its Bloom filter) behind the watch set's
//! [`InodeMap`] seam, so the watch set is tested against a fake.

use aya::maps::{HashMap as BpfHashMap, MapData, MapError};
use sensor_common::{FileKey, WatchEntry};

use super::InoFilter;
use crate::enrich::watch::{InodeMap, MapUpdateError};

pub struct KernelInodeMap {
    map: BpfHashMap<MapData, FileKey, WatchEntry>,
    filter: InoFilter,
    /// The map's capacity, for the "map full" error.
    max: u32,
}

impl KernelInodeMap {
    pub fn new(map: BpfHashMap<MapData, FileKey, WatchEntry>, filter: InoFilter, max: u32) -> Self {
        Self { map, filter, max }
    }
}

impl InodeMap for KernelInodeMap {
    fn insert(&mut self, key: FileKey, entry: WatchEntry) -> Result<(), MapUpdateError> {
        // The filter bit first: the kernel must never see the inode in the
        // map with its bit still clear.
        self.filter
            .add(key.ino)
            .map_err(|err| MapUpdateError::Other {
                message: format!("inode filter: {}", crate::Chain(&err)),
            })?;
        self.map
            .insert(key, entry, 0)
            .map_err(|err| map_update_error(err, self.max))
    }
    fn remove(&mut self, key: &FileKey) -> Result<(), MapUpdateError> {
        match self.map.remove(key) {
            Ok(()) => Ok(()),
            // Already gone is what we wanted.
            Err(MapError::KeyNotFound) => Ok(()),
            Err(err) => Err(map_update_error(err, self.max)),
        }
    }
}

fn map_update_error(err: MapError, max: u32) -> MapUpdateError {
    if let MapError::SyscallError(ref e) = err
        && e.io_error.raw_os_error() == Some(libc::E2BIG)
    {
        return MapUpdateError::Full { max };
    }
    MapUpdateError::Other {
        message: crate::Chain(&err).to_string(),
    }
}
