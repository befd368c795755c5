//! `weightwarden verify`: checks the audit store's chain (docs/store.md).
//! Exit 0 and a count when intact; 1 and where it breaks when not; 2 when
//! the store or key cannot be read.

use super::{args::VerifyArgs, exit};
use crate::{
    Chain,
    store::{
        Head, Key,
        schema::{self, Access},
        verify::{self, Intact},
    },
};

pub fn execute(args: &VerifyArgs) -> u8 {
    let given = match args.head.as_deref().map(|h| (h, Head::parse(h))) {
        Some((text, None)) => {
            eprintln!(
                "weightwarden: --head {text:?} is not SEQ:HEX (a heartbeat's sensor.store_head, \
                 such as 1234:9f86d081...)"
            );
            return exit::USAGE;
        }
        Some((_, head)) => head,
        None => None,
    };
    let (db, key_path) = match args.store.resolve(args.key.as_ref()) {
        Ok(paths) => paths,
        Err(msg) => {
            eprintln!("weightwarden: {msg}");
            return exit::USAGE;
        }
    };
    let opened = schema::open(&db, Access::Read).and_then(|conn| {
        let key = Key::load(&key_path, false)?;
        verify::verify(&conn, &db, &key, given)
    });
    match opened {
        Ok(Ok(intact)) => {
            println!("{}", describe(&db, &intact));
            exit::OK
        }
        Ok(Err(broken)) => {
            println!("{}: BROKEN: {broken}", db.display());
            exit::FAILURE
        }
        Err(err) => {
            eprintln!("weightwarden: {}", Chain(&err));
            exit::USAGE
        }
    }
}

fn describe(db: &std::path::Path, v: &Intact) -> String {
    let mut text = format!(
        "{}: intact: {} records, head {}",
        db.display(),
        v.records,
        v.head.text()
    );
    if let Some(first) = v.first {
        text.push_str(&format!(" (records {first} to {})", v.head.seq));
    }
    if let Some(through) = v.pruned_through {
        text.push_str(&format!(
            "; {} earlier records removed by retention (through {through}, sealed)",
            v.pruned
        ));
    }
    text
}
