//! The watch set's kernel maps behind its [`InodeMap`] seam, so the watch
//! set is tested against a fake: the watched-inode map and its Bloom
//! filter, the watched-directory map (creates), and the path-operation
//! prefilter's names.

use aya::maps::{Array, HashMap as BpfHashMap, MapData, MapError};
use sensor_common::{FileKey, WatchEntry, path_filter};

use super::InoFilter;
use crate::enrich::watch::{InodeMap, MapUpdateError};

/// The maps, as the loader hands them out, with their capacities (for the
/// "map full" errors).
pub struct WatchMaps {
    pub watched: BpfHashMap<MapData, FileKey, WatchEntry>,
    pub filter: InoFilter,
    pub watched_max: u32,
    pub dirs: BpfHashMap<MapData, FileKey, u32>,
    pub dirs_max: u32,
    pub names: BpfHashMap<MapData, u64, u8>,
    pub names_max: u32,
    pub name_filter: Array<MapData, u32>,
}

pub struct KernelInodeMap {
    maps: WatchMaps,
}

impl KernelInodeMap {
    pub fn new(maps: WatchMaps) -> Self {
        Self { maps }
    }
}

impl InodeMap for KernelInodeMap {
    fn insert(&mut self, key: FileKey, entry: WatchEntry) -> Result<(), MapUpdateError> {
        // The filter bit first: the kernel must never see the inode in the
        // map with its bit still clear.
        self.maps
            .filter
            .add(key.ino)
            .map_err(|err| MapUpdateError::Other {
                message: format!("inode filter: {}", crate::Chain(&err)),
            })?;
        let max = self.maps.watched_max;
        self.maps
            .watched
            .insert(key, entry, 0)
            .map_err(|err| update_error(err, MapUpdateError::Full { max }))
    }

    fn remove(&mut self, key: &FileKey) -> Result<(), MapUpdateError> {
        let max = self.maps.watched_max;
        removed(self.maps.watched.remove(key), MapUpdateError::Full { max })
    }

    fn insert_dir(&mut self, key: FileKey) -> Result<(), MapUpdateError> {
        let max = self.maps.dirs_max;
        self.maps
            .dirs
            .insert(key, 1, 0)
            .map_err(|err| update_error(err, MapUpdateError::DirsFull { max }))
    }

    fn remove_dir(&mut self, key: &FileKey) -> Result<(), MapUpdateError> {
        let max = self.maps.dirs_max;
        removed(self.maps.dirs.remove(key), MapUpdateError::DirsFull { max })
    }

    fn insert_name(&mut self, hash: u64) -> Result<(), MapUpdateError> {
        let max = self.maps.names_max;
        self.maps
            .names
            .insert(hash, 1, 0)
            .map_err(|err| update_error(err, MapUpdateError::NamesFull { max }))
    }

    fn remove_name(&mut self, hash: u64) -> Result<(), MapUpdateError> {
        let max = self.maps.names_max;
        removed(
            self.maps.names.remove(&hash),
            MapUpdateError::NamesFull { max },
        )
    }

    fn names(&self) -> Result<Vec<u64>, MapUpdateError> {
        self.maps
            .names
            .keys()
            .collect::<Result<Vec<u64>, MapError>>()
            .map_err(|err| MapUpdateError::Other {
                message: crate::Chain(&err).to_string(),
            })
    }

    fn set_name_filter(&mut self, on: bool) -> Result<(), MapUpdateError> {
        let value = if on { path_filter::ON } else { 0 };
        self.maps
            .name_filter
            .set(0, value, 0)
            .map_err(|err| MapUpdateError::Other {
                message: crate::Chain(&err).to_string(),
            })
    }
}

/// A removal's result: a key already gone is what was wanted.
fn removed(result: Result<(), MapError>, full: MapUpdateError) -> Result<(), MapUpdateError> {
    match result {
        Ok(()) | Err(MapError::KeyNotFound) => Ok(()),
        Err(err) => Err(update_error(err, full)),
    }
}

/// `full` when the kernel said the map is full (`E2BIG`).
fn update_error(err: MapError, full: MapUpdateError) -> MapUpdateError {
    if let MapError::SyscallError(ref e) = err
        && e.io_error.raw_os_error() == Some(libc::E2BIG)
    {
        return full;
    }
    MapUpdateError::Other {
        message: crate::Chain(&err).to_string(),
    }
}
