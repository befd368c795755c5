//! `verify`: walks the chain from its start (the genesis, or the last
//! retention cut) to its head and names the first place it breaks.

use std::path::Path;

use rusqlite::Connection;

use super::{
    StoreError,
    chain::{Head, Key, Link},
    meta,
};

/// An intact chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Intact {
    /// Records checked.
    pub records: u64,
    /// The first record kept (retention removed those before), if any.
    pub first: Option<u64>,
    /// Records retention removed, and where the last cut was.
    pub pruned: u64,
    pub pruned_through: Option<u64>,
    pub head: Head,
}

/// Where the chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Broken {
    #[error(
        "record {seq} does not match its chain link: it was changed, or records before it were \
         changed, inserted or reordered"
    )]
    Altered { seq: u64 },
    #[error("records {from} to {to} are missing: removed outside retention")]
    Missing { from: u64, to: u64 },
    #[error(
        "the chain ends at record {last} but its head says {head}: the records after {last} were \
         removed"
    )]
    Truncated { last: u64, head: u64 },
    #[error("the store's head ({store}) is not the head given ({given}): {why}")]
    HeadMismatch {
        store: String,
        given: String,
        why: &'static str,
    },
    #[error(
        "the retention cut through record {through} is not sealed by this key: it was forged or altered"
    )]
    ForgedCut { through: u64 },
}

/// Verifies the store at `path` (open read-only in `conn`) with `key`;
/// `given`: a head from outside (a heartbeat the SIEM kept), which the
/// chain must contain.
pub fn verify(
    conn: &Connection,
    path: &Path,
    key: &Key,
    given: Option<Head>,
) -> Result<Result<Intact, Broken>, StoreError> {
    let at = |e| StoreError::at(path, e);
    let Some(meta) = meta::read(conn, path)? else {
        return Err(StoreError::NotAStore(path.to_path_buf()));
    };
    if meta.key_id != key.id() {
        return Err(StoreError::OtherKey {
            path: path.to_path_buf(),
            store_key: meta.key_id,
            key: key.id(),
        });
    }
    // Where the chain starts: the genesis, or the last sealed cut.
    let mut prev: Link = key.genesis(&meta.store_id);
    let mut expect = 1u64;
    let mut pruned = 0u64;
    let mut pruned_through = None;
    {
        let mut cuts = conn
            .prepare("SELECT through_seq, mac, removed, seal FROM prunes ORDER BY through_seq")
            .map_err(at)?;
        let mut rows = cuts.query([]).map_err(at)?;
        while let Some(row) = rows.next().map_err(at)? {
            let through = row.get::<_, i64>(0).map_err(at)? as u64;
            let link = blob32(row.get(1).map_err(at)?);
            let removed = row.get::<_, i64>(2).map_err(at)? as u64;
            let seal = blob32(row.get(3).map_err(at)?);
            match (link, seal) {
                (Some(link), Some(seal)) if key.seal(through, &link, removed) == seal => {
                    prev = link;
                    expect = through + 1;
                    pruned += removed;
                    pruned_through = Some(through);
                }
                _ => return Ok(Err(Broken::ForgedCut { through })),
            }
        }
    }
    let mut stmt = conn
        .prepare("SELECT seq, record, mac FROM records WHERE seq >= ?1 ORDER BY seq")
        .map_err(at)?;
    // Records at or before the last cut are checked by nothing: they
    // should not exist.
    let stale: i64 = conn
        .query_row(
            "SELECT count(*) FROM records WHERE seq < ?1",
            [expect as i64],
            |r| r.get(0),
        )
        .map_err(at)?;
    if stale > 0 {
        return Ok(Err(Broken::Altered { seq: 1 }));
    }
    let mut rows = stmt.query([expect as i64]).map_err(at)?;
    let mut records = 0u64;
    let mut first = None;
    let mut head = Head {
        seq: expect - 1,
        link: prev,
    };
    while let Some(row) = rows.next().map_err(at)? {
        let seq = row.get::<_, i64>(0).map_err(at)? as u64;
        let record = row
            .get_ref(1)
            .map_err(at)?
            .as_bytes()
            .map_err(|e| at(e.into()))?;
        let link = blob32(row.get(2).map_err(at)?);
        if seq != expect {
            return Ok(Err(Broken::Missing {
                from: expect,
                to: seq - 1,
            }));
        }
        let want = key.link(&head.link, seq, record);
        if link != Some(want) {
            return Ok(Err(Broken::Altered { seq }));
        }
        first.get_or_insert(seq);
        head = Head { seq, link: want };
        records += 1;
        expect = seq + 1;
    }
    if head.seq < meta.head.seq {
        return Ok(Err(Broken::Truncated {
            last: head.seq,
            head: meta.head.seq,
        }));
    }
    if head != meta.head {
        return Ok(Err(Broken::HeadMismatch {
            store: meta.head.text(),
            given: head.text(),
            why: "meta's head is not the chain's last link",
        }));
    }
    if let Some(given) = given
        && !contains(conn, path, &head, &given, pruned_through)?
    {
        return Ok(Err(if given.seq > head.seq {
            Broken::Truncated {
                last: head.seq,
                head: given.seq,
            }
        } else {
            Broken::HeadMismatch {
                store: head.text(),
                given: given.text(),
                why: "the record at that sequence number has another link: the chain was rewritten",
            }
        }));
    }
    Ok(Ok(Intact {
        records,
        first,
        pruned,
        pruned_through,
        head,
    }))
}

/// Whether the verified chain (ending at `head`) has `given` as a link.
fn contains(
    conn: &Connection,
    path: &Path,
    head: &Head,
    given: &Head,
    pruned_through: Option<u64>,
) -> Result<bool, StoreError> {
    if given.seq > head.seq {
        return Ok(false);
    }
    if pruned_through.is_some_and(|t| given.seq <= t) {
        // Removed by retention: nothing left to compare (the cut's own
        // link, when it is that one).
        return Ok(true);
    }
    let link: Option<Vec<u8>> = rusqlite::OptionalExtension::optional(conn.query_row(
        "SELECT mac FROM records WHERE seq = ?1",
        [given.seq as i64],
        |r| r.get(0),
    ))
    .map_err(|e| StoreError::at(path, e))?;
    Ok(link.and_then(blob32) == Some(given.link) || (given.seq == 0))
}

fn blob32(bytes: Vec<u8>) -> Option<Link> {
    bytes.try_into().ok()
}
