//! The watched-inode Bloom filter (`sensor_common::ino_filter`) from its
//! only writer. Hand-written rather than a Bloom filter crate: the kernel
//! tests the same bits with the same hash, so the layout is shared
//! bit-for-bit with `sensor-ebpf`, not chosen by a library.

use aya::maps::{Array, MapData, MapError};
use sensor_common::ino_filter;

/// The watched-inode Bloom filter (`sensor_common::ino_filter`), from its
/// only writer: a copy of the bits is kept here so that adding an inode is
/// one map update.
pub struct InoFilter {
    map: Array<MapData, u64>,
    words: Vec<u64>,
}

impl InoFilter {
    /// The filter over `map`, which the loader has just created (all bits
    /// clear).
    pub fn new(map: Array<MapData, u64>) -> Self {
        Self {
            map,
            words: vec![0; ino_filter::WORDS as usize],
        }
    }

    /// Sets the bit for `ino` (bits are never cleared).
    pub fn add(&mut self, ino: u64) -> Result<(), MapError> {
        let bit = ino_filter::bit(ino);
        let index = (bit / 64) as usize;
        let mask = 1u64 << (bit % 64);
        let Some(word) = self.words.get_mut(index) else {
            return Ok(()); // unreachable: bit() stays below WORDS * 64
        };
        if *word & mask == 0 {
            self.map.set(index as u32, *word | mask, 0)?;
            *word |= mask;
        }
        Ok(())
    }
}
