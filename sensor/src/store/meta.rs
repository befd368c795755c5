//! The store's identity and chain head (`meta`): its random id (which the
//! chain's genesis covers), the id of the key it is chained with, when it
//! was made, and the head, updated in every commit.

use std::path::Path;

use rusqlite::{Connection, OptionalExtension};

use super::{
    StoreError,
    chain::{self, Head, Key},
};

/// What `meta` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    pub store_id: String,
    pub key_id: String,
    pub created_ns: i64,
    pub head: Head,
}

fn get(conn: &Connection, key: &str) -> rusqlite::Result<Option<String>> {
    conn.query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
        .optional()
}

fn put(conn: &Connection, key: &str, value: &str) -> rusqlite::Result<()> {
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, ?2) \
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        [key, value],
    )
    .map(drop)
}

/// Reads `meta`; `None` for a store no writer has opened yet.
pub fn read(conn: &Connection, path: &Path) -> Result<Option<Meta>, StoreError> {
    let at = |e| StoreError::at(path, e);
    let Some(store_id) = get(conn, "store_id").map_err(at)? else {
        return Ok(None);
    };
    let field = |name: &'static str| -> Result<String, StoreError> {
        get(conn, name)
            .map_err(at)?
            .ok_or_else(|| StoreError::Corrupt {
                path: path.to_path_buf(),
                what: format!("meta has no {name}"),
            })
    };
    let head_text = field("head")?;
    let head = Head::parse(&head_text).ok_or_else(|| StoreError::Corrupt {
        path: path.to_path_buf(),
        what: format!("meta's head is not SEQ:LINK: {head_text:?}"),
    })?;
    Ok(Some(Meta {
        store_id,
        key_id: field("key_id")?,
        created_ns: field("created_ns")?.parse().unwrap_or_default(),
        head,
    }))
}

/// The writer's start: the head to chain on from, after checking that
/// `key` is the store's; a new store gets its identity here.
pub fn open_chain(conn: &Connection, key: &Key, path: &Path) -> Result<Head, StoreError> {
    let at = |e| StoreError::at(path, e);
    let meta = match read(conn, path)? {
        Some(meta) => meta,
        None => {
            let id: [u8; 16] = chain::random().map_err(|source| StoreError::Key {
                path: "/dev/urandom".into(),
                source,
            })?;
            let store_id = hex::encode(id);
            let head = Head {
                seq: 0,
                link: key.genesis(&store_id),
            };
            let tx = conn.unchecked_transaction().map_err(at)?;
            put(&tx, "store_id", &store_id).map_err(at)?;
            put(&tx, "key_id", &key.id()).map_err(at)?;
            put(
                &tx,
                "created_ns",
                &crate::enrich::clock::unix_now_ns().to_string(),
            )
            .map_err(at)?;
            put(&tx, "head", &head.text()).map_err(at)?;
            tx.commit().map_err(at)?;
            return Ok(head);
        }
    };
    if meta.key_id != key.id() {
        return Err(StoreError::OtherKey {
            path: path.to_path_buf(),
            store_key: meta.key_id,
            key: key.id(),
        });
    }
    let last: Option<i64> = conn
        .query_row("SELECT max(seq) FROM records", [], |r| r.get(0))
        .map_err(at)?;
    let last = last.unwrap_or(0) as u64;
    if last != meta.head.seq && last != 0 {
        // Only someone editing the file makes them differ (a commit moves
        // both): carry on from the head, where `verify` will show the gap.
        tracing::error!(
            store = %path.display(),
            last_record = last,
            head = meta.head.seq,
            "the audit store's last record is not its chain head: records were removed or \
             added outside the agent (`weightwarden verify` says where)"
        );
    }
    Ok(meta.head)
}

/// Moves the head, inside the commit that adds the records.
pub fn set_head(conn: &Connection, head: &Head) -> rusqlite::Result<()> {
    put(conn, "head", &head.text())
}
