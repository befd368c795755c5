//! `[store]`: the local audit store (docs/store.md).

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use serde::{Deserialize, Serialize};

use super::{ConfigError, invalid};
use crate::store::{DEFAULT_PATH, Retention, StoreSettings, chain};

/// The most records a store's queue may hold: about 1 KiB each, so 4 GiB.
const MAX_QUEUE: u32 = 4 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// The database, or `"none"`: no store.
    pub path: PathBuf,
    /// The chain's key; default beside the database (`audit.key`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key: Option<PathBuf>,
    /// Days a record is kept; 0: no age limit.
    pub max_age_days: u64,
    /// Bytes the records and indexes may use; 0: no size limit.
    pub max_bytes: u64,
    /// Records waiting for the writer at most; more are counted lost.
    pub queue_max: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            path: PathBuf::from(DEFAULT_PATH),
            key: None,
            // A quarter: long enough for an investigation that starts from
            // a leak noticed weeks later.
            max_age_days: 90,
            // 1 GiB: about a million records, bounded on a small disk.
            max_bytes: 1 << 30,
            // About a minute of a busy host's records while the disk
            // stalls, some 64 MiB at most.
            queue_max: 65_536,
        }
    }
}

impl StoreConfig {
    /// The store as the agent runs it; `None` when turned off.
    pub fn settings(&self) -> Option<StoreSettings> {
        if self.path.as_os_str() == "none" {
            return None;
        }
        Some(StoreSettings {
            path: self.path.clone(),
            key_path: self
                .key
                .clone()
                .unwrap_or_else(|| chain::default_key_path(&self.path)),
            retention: Retention {
                max_age: (self.max_age_days > 0)
                    .then(|| Duration::from_secs(self.max_age_days.saturating_mul(86_400))),
                max_bytes: (self.max_bytes > 0).then_some(self.max_bytes),
            },
            queue_max: self.queue_max as usize,
        })
    }

    /// [`StoreConfig::settings`] after [`StoreConfig::validate`]: for the
    /// subcommands that read the configured store.
    pub fn validate_settings(&self) -> Result<Option<StoreSettings>, ConfigError> {
        self.validate()?;
        Ok(self.settings())
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        let absolute = |key: &'static str, path: &Path, what: &str| {
            if path.is_absolute() {
                Ok(())
            } else {
                Err(invalid(
                    key,
                    format!("{:?}", path.display().to_string()),
                    format!("must be an absolute path{what}"),
                ))
            }
        };
        if self.path.as_os_str() != "none" {
            absolute(
                "store.path",
                &self.path,
                &format!(" (default {DEFAULT_PATH:?}), or \"none\" to keep no store"),
            )?;
        }
        if let Some(key) = &self.key {
            absolute("store.key", key, "")?;
        }
        if self.max_age_days > 36_500 {
            return Err(invalid(
                "store.max_age_days",
                self.max_age_days.to_string(),
                "must be at most 36500 (a century), or 0 for no age limit",
            ));
        }
        if self.max_bytes != 0 && self.max_bytes < 1 << 20 {
            return Err(invalid(
                "store.max_bytes",
                self.max_bytes.to_string(),
                "must be at least 1048576 (1 MiB), or 0 for no size limit",
            ));
        }
        if !(1..=MAX_QUEUE).contains(&self.queue_max) {
            return Err(invalid(
                "store.queue_max",
                self.queue_max.to_string(),
                format!("must be between 1 and {MAX_QUEUE}"),
            ));
        }
        Ok(())
    }
}
