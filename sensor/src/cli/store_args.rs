//! Which store and key the reading subcommands (`verify`, `query`, ...)
//! open: `--db`, else the configured `store.path`.

use std::path::PathBuf;

use rusqlite::Connection;

use super::{args::StoreArgs, exit};
use crate::{
    Chain,
    config::Config,
    store::{
        StoreSettings, chain,
        schema::{self, Access},
    },
};

impl StoreArgs {
    /// The database and key to read, or the message that says why none
    /// can be named.
    pub fn resolve(&self, key: Option<&PathBuf>) -> Result<(PathBuf, PathBuf), String> {
        let configured = || -> Result<Option<StoreSettings>, String> {
            let (config, _) =
                Config::load(self.config.as_deref()).map_err(|e| Chain(&e).to_string())?;
            config
                .store
                .validate_settings()
                .map_err(|e| Chain(&e).to_string())
        };
        let db = match &self.db {
            Some(db) => db.clone(),
            None => match configured()? {
                Some(settings) => settings.path,
                None => {
                    return Err(
                        "the configuration turns the store off (store.path = \"none\"): name \
                         one with --db PATH"
                            .into(),
                    );
                }
            },
        };
        let key = match key {
            Some(key) => key.clone(),
            // A key configured beside a configured store; else beside --db.
            None if self.db.is_none() => configured()?
                .map(|s| s.key_path)
                .unwrap_or_else(|| chain::default_key_path(&db)),
            None => chain::default_key_path(&db),
        };
        Ok((db, key))
    }

    /// For a reading subcommand (`query`, `timeline`, `stats`): its other
    /// flags checked by `check`, then the database opened read-only. On
    /// failure, the problem said on stderr and the exit status (2).
    pub fn open_read<T>(
        &self,
        check: impl FnOnce() -> Result<T, String>,
    ) -> Result<(T, PathBuf, Connection), u8> {
        let usage = |msg: String| {
            eprintln!("weightwarden: {msg}");
            exit::USAGE
        };
        let checked = check().map_err(usage)?;
        let (db, _key) = self.resolve(None).map_err(usage)?;
        match schema::open(&db, Access::Read) {
            Ok(conn) => Ok((checked, db, conn)),
            Err(err) => Err(usage(Chain(&err).to_string())),
        }
    }
}
