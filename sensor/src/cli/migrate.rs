//! `weightwarden migrate`: brings a store to this weightwarden's schema,
//! as the agent does when it starts (`store/schema.rs`): for a copy taken
//! for forensics, which the readers refuse while it is older. It holds
//! the writer's lock meanwhile, so never migrates under a running agent.

use super::{args::MigrateArgs, exit};
use crate::{
    Chain,
    store::{
        StoreError,
        schema::{self, Access},
        writer,
    },
};

pub fn execute(args: &MigrateArgs) -> u8 {
    let db = match args.store.resolve(None) {
        Ok((db, _key)) => db,
        Err(msg) => {
            eprintln!("weightwarden: {msg}");
            return exit::USAGE;
        }
    };
    if !db.exists() {
        eprintln!("weightwarden: {}", StoreError::Missing(db));
        return exit::USAGE;
    }
    let migrated = writer::lock(&db).and_then(|_lock| {
        let before = schema::open(&db, Access::Read)
            .map(|conn| schema::version(&conn).unwrap_or(0))
            .or_else(|err| match err {
                StoreError::Older { found, .. } => Ok(found),
                err => Err(err),
            })?;
        schema::open(&db, Access::Write)?;
        Ok(before)
    });
    match migrated {
        Ok(before) if before == schema::VERSION => {
            println!(
                "{}: already at schema version {}",
                db.display(),
                schema::VERSION
            );
            exit::OK
        }
        Ok(before) => {
            println!(
                "{}: migrated from schema version {before} to {}",
                db.display(),
                schema::VERSION
            );
            exit::OK
        }
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            exit::USAGE
        }
    }
}
